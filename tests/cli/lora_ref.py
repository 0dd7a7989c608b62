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


def main(argv):
    if len(argv) == 4 and argv[0] == "apply":
        apply(*argv[1:])
    elif len(argv) == 4 and argv[0] == "bad":
        bad(*argv[1:])
    elif len(argv) == 5 and argv[0] == "big":
        big(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
