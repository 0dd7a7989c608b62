#!/usr/bin/python3
"""A PEFT-free NumPy reference for LoRA adapters, and hostile adapters.

usage:
  lora_ref.py apply BASE ADAPTER OUT
      write OUT: BASE with the adapter merged in, as PEFT's merge_and_unload
      computes it (METHODS 16), every element in float64 then rounded once
      to float32: W + s*B@A (transposed for fan_in_fan_out and embeddings),
      bias + s*lora_B.bias when lora_bias, modules_to_save tensors replaced
  lora_ref.py bad ADAPTER KIND OUT
      copy the adapter folder ADAPTER to OUT, damaged as KIND says (see BAD)
  lora_ref.py big OUT ROWS COLS RANK
      OUT/base (one ROWS x COLS F32 weight and a bias) and OUT/adapter (a
      rank-RANK LoRA of it), for chunking and benchmark runs
  lora_ref.py pair OUT DTYPE
      OUT/base and OUT/ft, a llama-shaped pair in DTYPE (F64 or F32) whose
      deltas have full rank, with a q_proj bias, for extract-lora
  lora_ref.py check-extract ADAPTER BASE FT RTOL [--embed-lora]
      ADAPTER, written by weld extract-lora, follows PEFT's naming rules
      (PREFIX names, lora_A [r x in] / lora_B [out x r] with r from
      rank_pattern or r, target_modules and modules_to_save covering every
      module, config keys and types), and each module's B@A is the rank-r
      truncation of FT - BASE (numpy.linalg.svd in float64) within
      RTOL * max|delta|; saved tensors equal FT's
  lora_ref.py check-roundtrip APPLIED BASE FT ADAPTER RTOL
      APPLIED (BASE+ADAPTER written out by weld) is BASE plus, for each module
      of ADAPTER, the rank-r truncation of FT - BASE (embeddings transposed
      back), BASE's bias plus the bias delta, FT's tensor for a saved one,
      BASE's elsewhere; within RTOL * max|delta|

Exit status 0, or 1 with a message.
"""
import json
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io as sio  # noqa: E402

P = "base_model.model."


def pattern(patterns, module, default):
    for key, value in patterns.items():
        if re.match(r"(.*\.)?(%s)$" % key, module):
            return value
    return default


def apply(base_dir, adapter_dir, out):
    base = sio.load_model(base_dir)
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    ad = sio.load_model(os.path.join(adapter_dir, "adapter_model.safetensors"))
    merged = {k: v.astype(np.float64) for k, v in base.items()}
    for name, a in ad.items():
        m = re.match(r"(.*)\.(lora_A\.weight|lora_embedding_A)$", name[len(P):])
        if not m:
            continue
        module, emb = m.group(1), m.group(2) == "lora_embedding_A"
        b = ad[P + module + (".lora_embedding_B" if emb else ".lora_B.weight")]
        r = pattern(cfg.get("rank_pattern") or {}, module, cfg["r"])
        alpha = pattern(cfg.get("alpha_pattern") or {}, module, cfg["lora_alpha"])
        s = alpha / (np.sqrt(r) if cfg.get("use_rslora") else r)
        delta = b.astype(np.float64) @ a.astype(np.float64)
        if emb or cfg.get("fan_in_fan_out"):
            delta = delta.T
        merged[module + ".weight"] += s * delta
        bias = ad.get(P + module + ".lora_B.bias")
        if bias is not None and cfg.get("lora_bias"):
            merged[module + ".bias"] += s * bias.astype(np.float64)
    for name, v in ad.items():
        if ".lora_" not in name:
            merged[name[len(P):]] = v.astype(np.float64)
    sio.save_model(out, {k: v.astype(np.float32) for k, v in merged.items()}, "F32")
    shutil.copy(os.path.join(base_dir, "config.json"), out)


def edit_config(out, **kw):
    path = os.path.join(out, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(kw)
    with open(path, "w") as f:
        json.dump(cfg, f)


def edit_tensors(out, change):
    path = os.path.join(out, "adapter_model.safetensors")
    t = sio.load_model(path)
    change(t)
    sio.save_file(path, t, "F32")


def first_a(t):
    return sorted(k for k in t if k.endswith("lora_A.weight"))[0]


BAD = {
    "dora-config": lambda o: edit_config(o, use_dora=True),
    "ia3": lambda o: edit_config(o, peft_type="IA3"),
    "rank": lambda o: edit_config(o, r=3, rank_pattern={}),
    "bad-pattern": lambda o: edit_config(o, rank_pattern={"(": 2}),
    "no-bias-flag": lambda o: edit_config(o, lora_bias=False),
    "dora-vector": lambda o: edit_tensors(o, lambda t: t.__setitem__(
        first_a(t).replace("lora_A.weight", "lora_magnitude_vector"), np.ones(8, np.float32))),
    "conv": lambda o: edit_tensors(o, lambda t: t.__setitem__(
        first_a(t), t[first_a(t)].reshape(t[first_a(t)].shape + (1, 1)))),
    "missing-module": lambda o: edit_tensors(o, lambda t: [t.__setitem__(
        k.replace("q_proj", "k_proj"), t.pop(k)) for k in sorted(t) if "layers.0.self_attn.q_proj.lora" in k]),
    "shape": lambda o: edit_tensors(o, lambda t: t.__setitem__(
        first_a(t), np.zeros((t[first_a(t)].shape[0], 5), np.float32))),
    "lone-b": lambda o: edit_tensors(o, lambda t: t.pop(first_a(t))),
    "not-peft": lambda o: edit_tensors(o, lambda t: t.__setitem__("stray.weight", np.ones(2, np.float32))),
    "no-weights": lambda o: os.remove(os.path.join(o, "adapter_model.safetensors")),
}


def bad(adapter, kind, out):
    shutil.copytree(adapter, out)
    BAD[kind](out)


def big(out, rows, cols, rank):
    rng = np.random.default_rng(7)
    w = {"layer.proj.weight": rng.standard_normal((rows, cols)).astype(np.float32),
         "layer.proj.bias": rng.standard_normal(rows).astype(np.float32)}
    sio.save_model(os.path.join(out, "base"), w, "F32")
    with open(os.path.join(out, "base", "config.json"), "w") as f:
        json.dump({"architectures": ["Test"]}, f)
    a = os.path.join(out, "adapter")
    os.makedirs(a)
    with open(os.path.join(a, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank}, f)
    sio.save_file(os.path.join(a, "adapter_model.safetensors"), {
        P + "layer.proj.lora_A.weight": (rng.standard_normal((rank, cols)) * 0.1).astype(np.float32),
        P + "layer.proj.lora_B.weight": (rng.standard_normal((rows, rank)) * 0.1).astype(np.float32),
    }, "F32")


def load64(path):
    """{name: float64 array} of a model, exactly (F64 kept)."""
    out = {}
    for name, info in sio.model_index(path).items():
        if info.dtype == "F64":
            out[name] = sio.read_raw(info).astype(np.float64)
        elif info.dtype in sio.FLOAT_DTYPES:
            out[name] = sio.read_f32(info).astype(np.float64)
    return out


def pair(out, dtype):
    rng = np.random.default_rng(17)
    shapes = {"model.embed_tokens.weight": (32, 8), "model.norm.weight": (8,),
              "lm_head.weight": (32, 8)}
    for i in range(2):
        p = "model.layers.%d." % i
        shapes[p + "input_layernorm.weight"] = (8,)
        shapes[p + "self_attn.q_proj.weight"] = (8, 8)
        shapes[p + "self_attn.q_proj.bias"] = (8,)
        shapes[p + "mlp.up_proj.weight"] = (12, 8)
        shapes[p + "mlp.down_proj.weight"] = (8, 12)
    base = {k: rng.standard_normal(v) for k, v in shapes.items()}
    ft = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in base.items()}
    for name, t in (("base", base), ("ft", ft)):
        d = os.path.join(out, name)
        os.makedirs(d)
        sio.save_file(os.path.join(d, "model.safetensors"), t, dtype)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"architectures": ["LlamaForCausalLM"], "vocab_size": 32}, f)


CONFIG_TYPES = {"peft_type": str, "r": int, "lora_alpha": (int, float), "target_modules": list,
                "rank_pattern": dict, "alpha_pattern": dict, "use_rslora": bool,
                "fan_in_fan_out": bool, "lora_dropout": (int, float), "task_type": str,
                "inference_mode": bool, "base_model_name_or_path": str, "bias": str,
                "lora_bias": bool, "use_dora": bool}


def fail(msg):
    raise SystemExit("lora_ref: " + msg)


def check_extract(adapter, base_dir, ft_dir, rtol):
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    for k, t in CONFIG_TYPES.items():
        if not isinstance(cfg.get(k), t) or (t is int and isinstance(cfg.get(k), bool)):
            fail("adapter_config.json: %s missing or not %s" % (k, t))
    if cfg["peft_type"] != "LORA" or cfg["use_rslora"] or cfg["fan_in_fan_out"] or cfg["use_dora"]:
        fail("adapter_config.json: not a plain LoRA config")
    if cfg["r"] != cfg["lora_alpha"] or cfg["rank_pattern"] != cfg["alpha_pattern"]:
        fail("scale is not 1 (r != lora_alpha or the patterns differ)")
    files = sorted(os.listdir(adapter))
    if files != ["adapter_config.json", "adapter_model.safetensors"]:
        fail("folder holds %s" % files)
    ad = load64(os.path.join(adapter, "adapter_model.safetensors"))
    # weld computes on float32 values (DESIGN 3): F64 inputs rounded first
    base = {k: v.astype(np.float32).astype(np.float64) for k, v in load64(base_dir).items()}
    ft = {k: v.astype(np.float32).astype(np.float64) for k, v in load64(ft_dir).items()}
    targets, saves = set(cfg["target_modules"]), set(cfg.get("modules_to_save") or [])
    seen = set()
    for name, a in sorted(ad.items()):
        if not name.startswith(P):
            fail("%s: not under %s" % (name, P))
        rest = name[len(P):]
        m = re.match(r"(.*)\.(lora_A\.weight|lora_embedding_A)$", rest)
        if not m:
            continue
        module, emb = m.group(1), m.group(2) != "lora_A.weight"
        bname = P + module + (".lora_embedding_B" if emb else ".lora_B.weight")
        if bname not in ad:
            fail("%s: no %s" % (name, bname))
        b = ad[bname]
        seen.update((name, bname))
        r = pattern(cfg["rank_pattern"], module, cfg["r"])
        w = ft[module + ".weight"] - base[module + ".weight"]
        if emb:
            w = w.T
        if a.shape != (r, w.shape[1]) or b.shape != (w.shape[0], r):
            fail("%s: A %s, B %s, but r %d and the weight is %s" % (module, a.shape, b.shape, r, w.shape))
        if module.rsplit(".", 1)[-1] not in targets:
            fail("%s: its leaf is not in target_modules" % module)
        u, sv, vt = np.linalg.svd(w, full_matrices=False)
        trunc = (u[:, :r] * sv[:r]) @ vt[:r]
        err = np.abs(b @ a - trunc).max()
        if err > rtol * max(np.abs(w).max(), 1e-30):
            fail("%s: B@A differs from the rank-%d truncation by %g" % (module, r, err))
        bias = ad.get(P + module + ".lora_B.bias")
        if bias is not None:
            seen.add(P + module + ".lora_B.bias")
            if not cfg["lora_bias"]:
                fail("lora_B.bias written without lora_bias")
            want = ft[module + ".bias"] - base[module + ".bias"]
            if np.abs(bias - want).max() > rtol * max(np.abs(want).max(), 1e-30):
                fail("%s: lora_B.bias is not the bias delta" % module)
    for name, v in ad.items():
        if name in seen:
            continue
        rest = name[len(P):]
        module = rest.rsplit(".", 1)[0]
        if module.rsplit(".", 1)[-1] not in saves:
            fail("%s: a whole tensor whose module is not in modules_to_save" % name)
        if rest not in ft or not np.array_equal(v.astype(np.float32), ft[rest]):
            fail("%s: not the fine-tuned model's tensor" % name)


def check_roundtrip(applied, base_dir, ft_dir, adapter, rtol):
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    ad = load64(os.path.join(adapter, "adapter_model.safetensors"))
    base64 = load64(base_dir)
    base = {k: v.astype(np.float32).astype(np.float64) for k, v in base64.items()}
    ft64 = load64(ft_dir)
    ft = {k: v.astype(np.float32).astype(np.float64) for k, v in ft64.items()}
    want = dict(base64)
    for name in ad:
        rest = name[len(P):]
        m = re.match(r"(.*)\.(lora_A\.weight|lora_embedding_A|lora_B\.bias)$", rest)
        if not m:
            if ".lora_" not in rest:
                want[rest] = ft64[rest]
            continue
        module, kind = m.group(1), m.group(2)
        if kind == "lora_B.bias":
            want[module + ".bias"] = base64[module + ".bias"] + ft[module + ".bias"] - base[module + ".bias"]
            continue
        r = pattern(cfg["rank_pattern"], module, cfg["r"])
        d = ft[module + ".weight"] - base[module + ".weight"]
        d = d.T if kind == "lora_embedding_A" else d
        u, sv, vt = np.linalg.svd(d, full_matrices=False)
        t = (u[:, :r] * sv[:r]) @ vt[:r]
        want[module + ".weight"] = base64[module + ".weight"] + (t.T if kind == "lora_embedding_A" else t)
    got = load64(applied)
    if set(got) != set(want):
        fail("tensors differ: %s" % sorted(set(got) ^ set(want))[:4])
    for k in sorted(want):
        scale = max(np.abs(want[k] - base64[k]).max(), 1e-30)
        err = np.abs(got[k] - want[k]).max()
        if err > rtol * scale:
            fail("%s: %g from the truncation (scale %g)" % (k, err, scale))


def main(argv):
    if len(argv) == 4 and argv[0] == "apply":
        apply(*argv[1:])
    elif len(argv) == 4 and argv[0] == "bad":
        bad(*argv[1:])
    elif len(argv) == 5 and argv[0] == "big":
        big(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif len(argv) == 3 and argv[0] == "pair":
        pair(argv[1], argv[2])
    elif len(argv) == 6 and argv[0] == "check-roundtrip":
        check_roundtrip(argv[1], argv[2], argv[3], argv[4], float(argv[5]))
    elif len(argv) == 5 and argv[0] == "check-extract":
        check_extract(argv[1], argv[2], argv[3], float(argv[4]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
