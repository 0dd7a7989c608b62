#!/usr/bin/python3
"""Compare weld's merge commands with the NumPy reference (weld_ref.py).

Usage: check_ref.py [--weld PATH] [--keep] [--filter TEXT] [--list]
       (WELD in the environment also names the binary; default ./weld)

Generates a small family (a base + 3 fine-tunes) in f32 and in bf16, writes
it with the Python safetensors writer, runs weld for every method over a
spread of options with `--dtype f32` (a few cases keep the input dtype),
reads weld's output and compares it with the reference within the tolerance
explained in weld_ref.py (16 float32 ulps of the computation's magnitude;
for bf16 output, weld's value must be the bf16 rounding of a value inside
that tolerance). It also checks that bad option values are refused before
anything is written, and that -j 1 and -j 2 give the same bytes.

Prints one line per case and then `N passed, M failed`; exits 1 if any case
failed. A command that fails, crashes or hangs is a failed case.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, HERE)
import safetensors_io as stio  # noqa: E402
import weld_ref as R  # noqa: E402

F32 = np.float32
TIMEOUT = 120

# State-dict order (as a real checkpoint would list them); byte order of the
# names differs (layers.10 sorts before layers.2), and sharded layouts keep
# state-dict order across shards, so "tensors in name order" is tested.
SHAPES = [
    ("model.embed_tokens.weight", (16, 24)),
    ("model.layers.0.input_layernorm.weight", (24,)),
    ("model.layers.0.mlp.down_proj.weight", (7, 5)),
    ("model.layers.2.mlp.experts.weight", (2, 3, 8)),
    ("model.layers.10.self_attn.q_proj.weight", (8, 12)),
    ("model.norm.bias", (5,)),
]
NAME_ORDER = [n for n, _ in SHAPES]
# tensors whose values are a few dyadic numbers: many exactly equal
# magnitudes (inside a tensor and across tensors) and exact zeros
TIE_TENSORS = ("model.layers.10.self_attn.q_proj.weight", "model.layers.2.mlp.experts.weight")
TIE_VALUES = np.array([0, 0.125, -0.125, 0.25, -0.25, 0.5, -0.5], F32)
TIE_PROBS = [0.1, 0.15, 0.15, 0.2, 0.2, 0.1, 0.1]


# ---------------------------------------------------------------------------
# the test family

def make_family(root, dtype, seed=20240601):
    """Write base, m1, m2, m3 under root/ in `dtype`. Deltas are bounded away
    from 0 (|delta| in [0.02, 0.1]) so that any wrongly kept or dropped
    element shows far above the tolerance; in the tie tensors base and
    deltas are multiples of 1/64 (exact in bf16 too), so that many
    magnitudes are exactly equal and exact zeros occur."""
    rng = np.random.default_rng(seed)
    base = {}
    for name, shape in SHAPES:
        if name in TIE_TENSORS:
            base[name] = (rng.integers(-96, 97, shape) / 64.0).astype(F32)
        else:
            base[name] = stio.round_f32(rng.standard_normal(shape).astype(F32), dtype)
    models = []
    for _ in range(3):
        m = {}
        for name, shape in SHAPES:
            if name in TIE_TENSORS:
                d = rng.choice(TIE_VALUES, size=shape, p=TIE_PROBS)
            else:
                d = (rng.uniform(0.02, 0.1, shape) * rng.choice([-1.0, 1.0], shape)).astype(F32)
            m[name] = stio.round_f32((base[name] + d).astype(F32), dtype)
        models.append(m)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "torch_dtype": "bfloat16" if dtype == "BF16" else "float32"}
    paths = {}
    for tag, t in [("base", base), ("m1", models[0]), ("m2", models[1]), ("m3", models[2])]:
        d = os.path.join(root, tag)
        stio.save_model(d, t, dtype, order=NAME_ORDER)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        paths[tag] = d
    return paths


def make_layouts(root, src):
    """The f32 family again in other on-disk layouts: base and m3 sharded
    (state-dict order, with an index), m1 given as a bare file, m2 as a
    folder holding one oddly named file."""
    paths = {}
    for tag in ("base", "m3"):
        t = stio.load_model(src[tag])
        stio.save_model(os.path.join(root, tag), t, "F32", shard_bytes=400, order=NAME_ORDER)
        paths[tag] = os.path.join(root, tag)
    os.makedirs(os.path.join(root, "m1"))
    paths["m1"] = os.path.join(root, "m1", "weights.safetensors")
    shutil.copy(os.path.join(src["m1"], "model.safetensors"), paths["m1"])
    os.makedirs(os.path.join(root, "m2"))
    shutil.copy(os.path.join(src["m2"], "model.safetensors"),
                os.path.join(root, "m2", "consolidated.safetensors"))
    paths["m2"] = os.path.join(root, "m2")
    return paths


# ---------------------------------------------------------------------------
# cases: (name, family, argv with B/M1/M2/M3 placeholders, out dtype)

BIT_EXACT = ("della", "pcb", "sce", "arcee-fusion")

def cases():
    C = []

    def add(name, argv, fam="f32", dtype="f32", kind="compare"):
        C.append({"name": "%s/%s" % (name, fam), "fam": fam, "argv": argv.split(),
                  "dtype": dtype, "kind": kind,
                  # methods whose reference follows weld's order of operations
                  # exactly must match it bit for bit, not only within tolerance
                  "exact": argv.split()[0] in BIT_EXACT})

    TV = "--base B"
    M = "M1 M2 M3"
    # average
    add("average/default", "average " + M)
    add("average/weights", "average --weights 0.3,0.5,0.2 " + M)
    add("average/no-normalize", "average --weights 0.5,0.25,1 --no-normalize " + M)
    add("average/base-as-model", "average B " + M)
    add("average/model-spec", "average M1:weight=2 M2 M3:weight=0.5")
    # task arithmetic
    add("task-arithmetic/default", "task-arithmetic %s %s" % (TV, M))
    add("task-arithmetic/weights-lambda", "task-arithmetic %s --weights 0.5,1,-0.5 --lambda 0.7 %s" % (TV, M))
    add("task-arithmetic/normalize", "task-arithmetic %s --weights 1,2,3 --normalize %s" % (TV, M))
    # ties
    for scope in ("tensor", "row", "model"):
        add("ties/scope-%s" % scope, "ties %s --density 0.3 --scope %s %s" % (TV, scope, M))
        add("ties/scope-%s-per-model" % scope,
            "ties %s --density 0.2,0.5,0.9 --scope %s %s" % (TV, scope, M))
    add("ties/default-density", "ties %s %s" % (TV, M))
    add("ties/sign-count", "ties %s --density 0.4 --sign count %s" % (TV, M))
    add("ties/no-normalize", "ties %s --density 0.5 --no-normalize %s" % (TV, M))
    add("ties/weights-lambda", "ties %s --density 0.3 --weights 1,0.5,2 --lambda 1.5 %s" % (TV, M))
    add("ties/negative-weight", "ties %s --density 0.6 --weights 1,-0.5,0.8 %s" % (TV, M))
    add("ties/model-spec", "ties %s --density 0.3 M1:density=0.6,weight=0.5 M2 M3" % TV)
    add("ties/density-1", "ties %s --density 1 %s" % (TV, M))
    # dare
    for rescale in ("inverse", "l1", "none"):
        for combine in ("sum", "ties"):
            add("dare/%s-%s" % (rescale, combine),
                "dare %s --density 0.5 --rescale %s --combine %s %s" % (TV, rescale, combine, M))
    add("dare/default", "dare %s %s" % (TV, M))
    add("dare/seed-42", "dare %s --seed 42 --density 0.6 %s" % (TV, M))
    add("dare/big-seed", "dare %s --seed 18446744073709551615 %s" % (TV, M))
    add("dare/per-model-density", "dare %s --density 0.3,0.6,0.9 %s" % (TV, M))
    add("dare/l1-scope-row", "dare %s --density 0.4 --rescale l1 --scope row %s" % (TV, M))
    add("dare/l1-scope-model", "dare %s --density 0.4 --rescale l1 --scope model %s" % (TV, M))
    add("dare/ties-trim", "dare %s --density 0.7 --combine ties --trim 0.5 %s" % (TV, M))
    add("dare/ties-trim-model", "dare %s --density 0.7 --combine ties --trim 0.4 --scope model %s" % (TV, M))
    add("dare/ties-normalize", "dare %s --density 0.5 --combine ties --normalize %s" % (TV, M))
    add("dare/ties-sign-count", "dare %s --density 0.5 --combine ties --sign count %s" % (TV, M))
    add("dare/weights-lambda", "dare %s --density 0.5 --weights 0.5,1,1.5 --lambda 0.8 %s" % (TV, M))
    # della (ranks in each row; the tie tensors hold many equal magnitudes)
    for rescale in ("inverse", "l1", "none"):
        for combine in ("sum", "ties"):
            add("della/%s-%s" % (rescale, combine),
                "della %s --density 0.5 --rescale %s --combine %s %s" % (TV, rescale, combine, M))
    add("della/default", "della %s %s" % (TV, M))
    add("della/per-model", "della %s --density 0.3,0.6,1 --epsilon 0.2,0.1,0.1 --seed 7 %s" % (TV, M))
    add("della/model-spec", "della %s --rescale l1 M1:density=0.4,epsilon=0.3 M2 M3:weight=0.5" % TV)
    add("della/no-normalize", "della %s --density 0.6 --no-normalize --lambda 0.8 %s" % (TV, M))
    add("della/sign-count", "della %s --density 0.5 --sign count --weights 1,2,0.5 %s" % (TV, M))
    # pcb (exact order statistics of |delta| and beta per unit)
    for scope in ("tensor", "row", "model"):
        add("pcb/scope-%s" % scope, "pcb %s --density 0.3 --scope %s %s" % (TV, scope, M))
    add("pcb/default", "pcb %s %s" % (TV, M))
    add("pcb/clip-weights", "pcb %s --density 0.2,0.5,1 --clip 0.1 --weights 1,0.5,2 --lambda 1.5 %s" % (TV, M))
    add("pcb/row-clip", "pcb %s --density 0.5 --clip 0.2 --scope row %s" % (TV, M))
    add("pcb/model-spec", "pcb %s --scope model M1:density=0.4,weight=0.7 M2 M3" % TV)
    # sce (the tie tensors give plateaus of equal variances at the threshold)
    for tau in ("1", "0.7", "0.3", "0.1", "0.01", "0"):
        add("sce/topk-%s" % tau, "sce %s --select-topk %s %s" % (TV, tau, M))
    add("sce/default", "sce %s %s" % (TV, M))
    add("sce/one-model", "sce %s --select-topk 0.5 M2" % TV)
    # arcee_fusion (base and one model)
    for m in ("M1", "M2", "M3"):
        add("arcee-fusion/%s" % m.lower(), "arcee-fusion %s %s" % (TV, m))
    # breadcrumbs
    for scope in ("tensor", "row", "model"):
        add("breadcrumbs/scope-%s" % scope,
            "breadcrumbs %s --density 0.5 --gamma 0.1 --scope %s %s" % (TV, scope, M))
    add("breadcrumbs/default", "breadcrumbs %s %s" % (TV, M))
    add("breadcrumbs/gamma-0", "breadcrumbs %s --density 0.3 --gamma 0 %s" % (TV, M))
    add("breadcrumbs/clamp", "breadcrumbs %s --density 0.95 --gamma 0.2 --scope row %s" % (TV, M))
    add("breadcrumbs/ties-normalize",
        "breadcrumbs %s --density 0.5 --gamma 0.1 --combine ties --normalize %s" % (TV, M))
    add("breadcrumbs/ties-no-normalize",
        "breadcrumbs %s --density 0.5 --gamma 0.1 --combine ties --no-normalize %s" % (TV, M))
    add("breadcrumbs/weights-lambda",
        "breadcrumbs %s --density 0.6 --gamma 0.05 --weights 1,2,0.5 --lambda 0.5 %s" % (TV, M))
    # consensus
    add("consensus/ta-default", "consensus %s %s" % (TV, M))
    add("consensus/ta-k1", "consensus %s --mask-lambda 0.4 --k 1 %s" % (TV, M))
    add("consensus/ta-per-model-lambda", "consensus %s --mask-lambda 0.3,0.6,0.9 --k 2 %s" % (TV, M))
    add("consensus/ta-k3-weights", "consensus %s --k 3 --mask-lambda 0.2 --weights 0.5,1,2 --lambda 0.8 %s" % (TV, M))
    add("consensus/ta-lambda-0.5", "consensus %s --mask-lambda 0.5 %s" % (TV, M))
    add("consensus/ta-lambda-1-k1", "consensus %s --mask-lambda 1 --k 1 %s" % (TV, M))
    add("consensus/ties-tensor", "consensus %s --from ties --density 0.3 %s" % (TV, M))
    add("consensus/ties-row", "consensus %s --from ties --density 0.5 --scope row --k 1 %s" % (TV, M))
    add("consensus/ties-model", "consensus %s --from ties --density 0.4 --scope model %s" % (TV, M))
    # nearswap (METHODS 9): |delta| is in [0.02, 0.1], so t = 0.05 mixes the
    # model, the base and interpolations; the tie tensors hold exact zeros
    add("nearswap/t-0.05", "nearswap %s --t 0.05 M1" % TV)
    add("nearswap/t-1", "nearswap %s --t 1 M2" % TV)
    add("nearswap/t-0", "nearswap %s --t 0 M3" % TV)
    add("nearswap/t-negative", "nearswap %s --t -0.5 M1" % TV)
    add("nearswap/t-0.05", "nearswap %s --t 0.05 M1" % TV, fam="bf16")
    # ram, ramplus_tl (METHODS 10): epsilon 0.05 leaves 0 to 3 survivors
    add("ram/default", "ram %s %s" % (TV, M))
    add("ram/epsilon-0.05", "ram %s --epsilon 0.05 %s" % (TV, M))
    add("ram/one-model", "ram %s --epsilon 0.05 M2" % TV)
    add("ram/plus", "ram %s --plus --epsilon 0.05 %s" % (TV, M))
    add("ram/plus-r-alpha", "ram %s --plus --epsilon 0.06 --r 0.5 --alpha 1 %s" % (TV, M))
    add("ram/plus-default", "ram %s --plus %s" % (TV, M))
    add("ram/plus", "ram %s --plus --epsilon 0.05 %s" % (TV, M), fam="bf16")
    add("ram/plus", "ram %s --plus --epsilon 0.05 %s" % (TV, M), fam="layouts")
    # model_stock (METHODS 4): per tensor and per row (filter_wise), 2 and 3 models
    add("model-stock/three", "model-stock %s %s" % (TV, M))
    add("model-stock/two", "model-stock %s M1 M3" % TV)
    add("model-stock/filter-wise", "model-stock %s --filter-wise %s" % (TV, M))
    add("model-stock/filter-wise-two", "model-stock %s --filter-wise M2 M3" % TV)
    add("model-stock/three", "model-stock %s %s" % (TV, M), fam="bf16")
    add("model-stock/filter-wise", "model-stock %s --filter-wise %s" % (TV, M), fam="layouts")
    add("model-stock/threads", "model-stock %s %s" % (TV, M), kind="threads")
    add("model-stock/filter-wise-threads", "model-stock %s --filter-wise %s" % (TV, M), kind="threads")
    add("model-stock/one-model", "model-stock %s M1" % TV, kind="refuse")
    add("model-stock/weights", "model-stock %s --weights 1,2 M1 M2" % TV, kind="refuse")
    # nuslerp (METHODS 6): per tensor and per row, with and without a base
    add("nuslerp/base", "nuslerp %s M1 M2" % TV)
    add("nuslerp/base-weights", "nuslerp %s --weights 0.3,0.7 M1 M3" % TV)
    add("nuslerp/no-base", "nuslerp --weights 2,1 M1 M2")
    add("nuslerp/rows-base", "nuslerp %s --no-flatten --weights 1,3 M2 M3" % TV)
    add("nuslerp/rows-no-base", "nuslerp --no-flatten M1 M3")
    add("nuslerp/columns-base", "nuslerp %s --no-flatten --row-wise --weights 1,2 M1 M3" % TV)
    add("nuslerp/columns-no-base", "nuslerp --no-flatten --row-wise M2 M3")
    add("nuslerp/columns-base", "nuslerp %s --no-flatten --row-wise M1 M2" % TV, fam="layouts")
    add("nuslerp/columns-threads", "nuslerp %s --no-flatten --row-wise M1 M2" % TV, kind="threads")
    add("nuslerp/row-wise-flattened", "nuslerp %s --row-wise M1 M2" % TV, kind="refuse")
    add("nuslerp/zero-weights", "nuslerp %s --weights 1,-1 M1 M2" % TV)
    add("nuslerp/base", "nuslerp %s M1 M2" % TV, fam="bf16")
    add("nuslerp/rows-base", "nuslerp %s --no-flatten M1 M2" % TV, fam="layouts")
    # multislerp (METHODS 7)
    add("multislerp/base", "multislerp %s %s" % (TV, M))
    add("multislerp/base-weights", "multislerp %s --weights 0.2,0.5,0.3 %s" % (TV, M))
    add("multislerp/no-base", "multislerp --weights 1,2,3 %s" % M)
    add("multislerp/no-normalize", "multislerp %s --no-normalize --weights 0.5,0.25,1 %s" % (TV, M))
    add("multislerp/one", "multislerp %s M2" % TV)
    add("multislerp/base", "multislerp %s %s" % (TV, M), fam="bf16")
    # karcher (METHODS 8): the reference iterates on the vectors themselves
    add("karcher/three", "karcher %s" % M)
    add("karcher/four", "karcher B %s" % M)
    add("karcher/iter-tol", "karcher --max-iter 3 --tol 1e-3 M1 M2")
    add("karcher/no-iteration", "karcher --max-iter 0 %s" % M)
    add("karcher/three", "karcher %s" % M, fam="bf16")
    add("nuslerp/threads", "nuslerp %s --no-flatten M1 M2" % TV, kind="threads")
    add("multislerp/threads", "multislerp %s %s" % (TV, M), kind="threads")
    add("karcher/threads", "karcher %s" % M, kind="threads")
    add("nuslerp/three-models", "nuslerp %s %s" % (TV, M), kind="refuse")
    add("multislerp/zero-weight-sum", "multislerp --weights 1,-1,0 %s" % M, kind="refuse")
    add("karcher/weights", "karcher --weights 1,2,3 %s" % M, kind="refuse")
    add("karcher/max-iter", "karcher --max-iter 1.5 %s" % M, kind="refuse")
    # the SVD merges (METHODS 13-15): 2-D tensors decomposed whole, within
    # one float32 ulp of the float64 reference
    add("tsv-m/three", "tsv-m %s %s" % (TV, M))
    add("tsv-m/weights-lambda", "tsv-m %s --weights 0.5,1,2 --lambda 0.7 %s" % (TV, M))
    add("tsv-m/two", "tsv-m %s M1 M3" % TV)
    add("tsv-m/exclude", "tsv-m %s --svd-exclude embed %s" % (TV, M))
    add("iso-c/three", "iso-c %s %s" % (TV, M))
    add("iso-c/weights-lambda", "iso-c %s --weights 1,0.5,-1 --lambda 1.3 %s" % (TV, M))
    add("iso-c/one", "iso-c %s M2" % TV)
    add("iso-cts/three", "iso-cts %s %s" % (TV, M))
    add("iso-cts/fraction-0.5", "iso-cts %s --common-space-fraction 0.5 --lambda 0.9 %s" % (TV, M))
    add("iso-cts/fraction-1", "iso-cts %s --common-space-fraction 1 %s" % (TV, M))
    add("iso-cts/exclude", "iso-cts %s --svd-exclude q_proj|down %s" % (TV, M))
    for meth in ("tsv-m", "iso-c", "iso-cts"):
        add(meth + "/three", "%s %s %s" % (meth, TV, M), fam="bf16")
        add(meth + "/threads", "%s %s %s" % (meth, TV, M), kind="threads")
        add(meth + "/no-base", "%s %s" % (meth, M), kind="refuse")
        add(meth + "/bad-regex", "%s %s --svd-exclude ( %s" % (meth, TV, M), kind="refuse")
    add("iso-cts/fraction-0", "iso-cts %s --common-space-fraction 0 %s" % (TV, M), kind="refuse")
    add("iso-cts/fraction-2", "iso-cts %s --common-space-fraction 2 %s" % (TV, M), kind="refuse")
    add("nearswap/threads", "nearswap %s --t 0.05 M1" % TV, kind="threads")
    add("ram/plus-threads", "ram %s --plus --epsilon 0.05 %s" % (TV, M), kind="threads")
    add("nearswap/no-t", "nearswap %s M1" % TV, kind="refuse")
    add("nearswap/two-models", "nearswap %s --t 0.1 M1 M2" % TV, kind="refuse")
    add("nearswap/no-base", "nearswap --t 0.1 M1", kind="refuse")
    add("ram/r-without-plus", "ram %s --r 0.2 %s" % (TV, M), kind="refuse")
    add("ram/negative-epsilon", "ram %s --epsilon -1 %s" % (TV, M), kind="refuse")
    add("ram/weights", "ram %s --weights 1,2,3 %s" % (TV, M), kind="refuse")
    # the same on bf16 inputs (f32 output), and with the input dtype kept
    for name, argv in [("average/default", "average " + M),
                       ("task-arithmetic/weights-lambda",
                        "task-arithmetic %s --weights 0.5,1,-0.5 --lambda 0.7 %s" % (TV, M)),
                       ("ties/scope-row", "ties %s --density 0.3 --scope row %s" % (TV, M)),
                       ("ties/scope-model", "ties %s --density 0.3 --scope model %s" % (TV, M)),
                       ("dare/l1-ties", "dare %s --density 0.5 --rescale l1 --combine ties %s" % (TV, M)),
                       ("breadcrumbs/scope-tensor", "breadcrumbs %s --density 0.5 --gamma 0.1 %s" % (TV, M)),
                       ("consensus/ties-tensor", "consensus %s --from ties --density 0.3 %s" % (TV, M)),
                       ("della/l1-ties", "della %s --density 0.5 --rescale l1 %s" % (TV, M)),
                       ("pcb/scope-model", "pcb %s --density 0.3 --scope model %s" % (TV, M)),
                       ("sce/topk-0.3", "sce %s --select-topk 0.3 %s" % (TV, M)),
                       ("arcee-fusion/m1", "arcee-fusion %s M1" % TV)]:
        add(name, argv, fam="bf16")
    add("average/dtype-auto", "average --weights 0.3,0.5,0.2 " + M, fam="bf16", dtype=None)
    add("ties/dtype-auto", "ties %s --density 0.3 %s" % (TV, M), fam="bf16", dtype=None)
    add("dare/dtype-bf16", "dare %s --density 0.5 %s" % (TV, M), fam="f32", dtype="bf16")
    # other on-disk layouts of the f32 family
    # other on-disk layouts of the f32 family; at density 0.1 the model-scope
    # threshold falls among equal magnitudes of two tensors, so the name
    # order of the concatenation decides which are kept
    add("average/layouts", "average B " + M, fam="layouts")
    for fam in ("f32", "layouts"):
        add("ties/scope-model-ties", "ties %s --density 0.1 --scope model %s" % (TV, M), fam=fam)
        add("breadcrumbs/scope-model-ties",
            "breadcrumbs %s --density 0.1 --gamma 0.05 --scope model %s" % (TV, M), fam=fam)
        add("consensus/ties-model-ties",
            "consensus %s --from ties --density 0.1 --scope model --k 1 %s" % (TV, M), fam=fam)
    add("dare/l1-scope-model", "dare %s --density 0.4 --rescale l1 --scope model %s" % (TV, M),
        fam="layouts")
    # same bytes for any thread count
    add("ties/threads", "ties %s --density 0.3 --scope model %s" % (TV, M), kind="threads")
    add("dare/threads", "dare %s --density 0.5 --rescale l1 %s" % (TV, M), kind="threads")
    add("consensus/threads", "consensus %s --from ties %s" % (TV, M), kind="threads")
    add("della/threads", "della %s --density 0.4 --rescale l1 %s" % (TV, M), kind="threads")
    add("pcb/threads", "pcb %s --density 0.3 %s" % (TV, M), kind="threads")
    add("pcb/threads-model", "pcb %s --density 0.3 --scope model %s" % (TV, M), kind="threads")
    add("sce/threads", "sce %s --select-topk 0.3 %s" % (TV, M), kind="threads")
    add("arcee-fusion/threads", "arcee-fusion %s M2" % TV, kind="threads")
    # refused before anything is written
    add("average/zero-weight-sum", "average --weights 1,-1,0 " + M, kind="refuse")
    add("ties/density-0", "ties %s --density 0 %s" % (TV, M), kind="refuse")
    add("ties/density-1.5", "ties %s --density 1.5 %s" % (TV, M), kind="refuse")
    add("dare/weights-count", "dare %s --weights 1,2 %s" % (TV, M), kind="refuse")
    add("ties/no-base", "ties --density 0.3 " + M, kind="refuse")
    add("ties/bad-scope", "ties %s --scope layer %s" % (TV, M), kind="refuse")
    add("della/epsilon-too-big", "della %s --density 0.8 --epsilon 0.2 %s" % (TV, M), kind="refuse")
    add("della/scope", "della %s --scope row %s" % (TV, M), kind="refuse")
    add("pcb/clip-0.5", "pcb %s --clip 0.5 %s" % (TV, M), kind="refuse")
    add("pcb/density-0", "pcb %s --density 0 %s" % (TV, M), kind="refuse")
    add("sce/weights", "sce %s --weights 1,2,3 %s" % (TV, M), kind="refuse")
    add("arcee-fusion/two-models", "arcee-fusion %s M1 M2" % TV, kind="refuse")
    return C


# ---------------------------------------------------------------------------
# running and comparing

def substitute(argv, paths):
    out = []
    for a in argv:
        for tag, key in (("M1", "m1"), ("M2", "m2"), ("M3", "m3"), ("B", "base")):
            if a == tag or a.startswith(tag + ":"):
                a = paths[key] + a[len(tag):]
                break
        out.append(a)
    return out


def run_weld(weld, argv, out, extra=()):
    cmd = [weld] + argv + ["-o", out, "-q"] + list(extra)
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return cmd, None, "timed out after %d s" % TIMEOUT
    except OSError as e:
        return cmd, None, "cannot run: %s" % e
    err = p.stderr.decode("utf-8", "replace").strip().splitlines()
    return cmd, p.returncode, (err[0] if err else "")


def compare(out_dir, ref, bound, out_dtype):
    """Return (ok, message)."""
    try:
        infos = stio.model_index(out_dir)
    except Exception as e:  # a broken output is a failed case
        return False, "cannot read output: %s" % e
    if set(infos) != set(ref):
        miss = sorted(set(ref) - set(infos))
        extra = sorted(set(infos) - set(ref))
        return False, "tensor names differ: missing %s, unexpected %s" % (miss[:3], extra[:3])
    total = exact = bad = 0
    worst = 0.0
    first = None
    for name in sorted(ref):
        info = infos[name]
        want_dt = out_dtype
        if info.dtype != want_dt:
            return False, "tensor %r has dtype %s, expected %s" % (name, info.dtype, want_dt)
        try:
            got = stio.read_f32(info).astype(np.float64)
        except Exception as e:
            return False, "tensor %r unreadable: %s" % (name, e)
        if got.shape != ref[name].shape:
            return False, "tensor %r has shape %s, expected %s" % (name, got.shape, ref[name].shape)
        r = ref[name].astype(np.float64)
        tol = R.TOL_ULPS * R.U * bound[name]
        if want_dt == "F32":
            lo, hi = r - tol, r + tol
            exact += int(np.sum(got == r))
        else:
            lo = stio.round_f32((r - tol).astype(F32), want_dt).astype(np.float64)
            hi = stio.round_f32((r + tol).astype(F32), want_dt).astype(np.float64)
            exact += int(np.sum(got == stio.round_f32(r.astype(F32), want_dt)))
        bad_mask = ~((got >= lo) & (got <= hi))
        if want_dt == "F32" and r.size:
            scale = np.where(bound[name] > 0, R.U * bound[name], 1.0)
            worst = max(worst, float(np.max(np.abs(got - r) / scale)))
        nb = int(bad_mask.sum())
        if nb and first is None:
            idx = tuple(int(v) for v in np.argwhere(bad_mask)[0])
            first = "%s%s: weld %.9g, reference %.9g" % (name, list(idx), got[idx], r[idx])
        bad += nb
        total += r.size
    if bad:
        return False, "%d of %d elements outside tolerance; first %s" % (bad, total, first)
    if out_dtype != "F32":
        return True, "%d elements, %d equal to the rounded reference" % (total, exact)
    return True, "%d elements, %d bit-exact, max error %.1f u*M" % (total, exact, worst)


def tensor_bytes(out_dir):
    infos = stio.model_index(out_dir)
    return {n: stio.read_raw(i).tobytes() for n, i in infos.items()}


def run_case(case, weld, fams, work):
    paths = fams[case["fam"]]
    argv = substitute(case["argv"], paths)
    out = os.path.join(work, "out-" + case["name"].replace("/", "-"))
    kind = case["kind"]
    extra = ["--dtype", case["dtype"]] if case["dtype"] else []
    if kind == "refuse":
        cmd, rc, err = run_weld(weld, argv, out, extra)
        if rc is None:
            return False, err, cmd
        if rc == 0:
            return False, "accepted (exit 0); expected a refusal", cmd
        if rc < 0:
            return False, "killed by signal %d" % -rc, cmd
        if os.path.exists(out):
            return False, "exit %d but the output folder was created" % rc, cmd
        return True, "refused with exit %d: %s" % (rc, err), cmd
    if kind == "threads":
        outs = []
        for j in ("1", "2"):
            o = out + "-j" + j
            cmd, rc, err = run_weld(weld, argv, o, extra + ["-j", j])
            if rc != 0:
                return False, "exit %s with -j %s: %s" % (rc, j, err), cmd
            try:
                outs.append(tensor_bytes(o))
            except Exception as e:
                return False, "cannot read output: %s" % e, cmd
        if outs[0] != outs[1]:
            diff = sorted(n for n in outs[0] if outs[0].get(n) != outs[1].get(n))
            return False, "-j 1 and -j 2 differ in %s" % diff[:3], cmd
        return True, "-j 1 and -j 2 give the same tensor bytes", cmd
    try:
        ref, bound = R.run(argv)
    except R.RefError as e:
        return False, "reference refused the case: %s" % e, argv
    cmd, rc, err = run_weld(weld, argv, out, extra)
    if rc != 0:
        return False, ("exit %s: %s" % (rc, err)) if rc is not None else err, cmd
    want = (case["dtype"] or ("bf16" if case["fam"] == "bf16" else "f32")).upper()
    ok, msg = compare(out, ref, bound, want)
    if ok and case["exact"]:
        total, exact = [int(w) for w in msg.replace(",", "").split()[0:3:2]]
        if total != exact:
            return False, "not bit-exact: " + msg, cmd
    return ok, msg, cmd


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weld", default=os.environ.get("WELD", "./weld"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--filter", default="", help="run only cases whose name contains TEXT")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    todo = [c for c in cases() if args.filter in c["name"]]
    if args.list:
        for c in todo:
            print("%-40s %s" % (c["name"], " ".join(c["argv"])))
        return 0
    weld = args.weld
    if os.sep in weld:
        weld = os.path.abspath(weld)
    work = tempfile.mkdtemp(prefix="weld-check-ref.")
    passed = failed = 0
    try:
        fams = {"f32": make_family(os.path.join(work, "f32"), "F32"),
                "bf16": make_family(os.path.join(work, "bf16"), "BF16")}
        fams["layouts"] = make_layouts(os.path.join(work, "layouts"), fams["f32"])
        for case in todo:
            try:
                ok, msg, cmd = run_case(case, weld, fams, work)
            except Exception as e:  # never let one case stop the run
                ok, msg, cmd = False, "checker error: %r" % (e,), case["argv"]
            if ok:
                passed += 1
                print("ok   %-40s %s" % (case["name"], msg))
            else:
                failed += 1
                print("FAIL %-40s %s" % (case["name"], msg))
                print("     $ %s" % " ".join(cmd))
            sys.stdout.flush()
    finally:
        if args.keep:
            print("work folder kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
