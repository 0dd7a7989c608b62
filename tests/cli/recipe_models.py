#!/usr/bin/python3
"""Small models for the recipes in recipes/, and checks of weld's outputs.

usage:
  recipe_models.py make DIR [--layers N] [--only NAME]
      write DIR/base, DIR/math and DIR/code: tiny llama-shaped F32 models
      (N layers, default 4) with config.json and tokenizer_config.json;
      math and code are the base plus small, different deltas
  recipe_models.py check-ta RECIPE OUT
      OUT must be the task_arithmetic merge the recipe describes, with every
      parameter evaluated here by hand (gradients over layers, filter lists)
  recipe_models.py check-slerp RECIPE OUT
      the same for slerp (mergekit's formula, in float64)
  recipe_models.py check-slices RECIPE OUT
      a passthrough frankenmerge: each output layer is a byte copy of its
      source layer, the layers are renumbered, the embeddings come from the
      first slice's model and the final norm and lm_head from the last one's,
      and config.json counts the new layers
  recipe_models.py weights RECIPE OUT TENSOR MODEL
      print the weight of MODEL (a recipe path) that OUT shows for TENSOR,
      solved from OUT = base + sum of weight * delta (task_arithmetic)

Exit status 0 when the check holds, 1 with a message otherwise.
"""

import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io as sio  # noqa: E402

H, V, FF = 8, 32, 16


def layer_tensors(n_layers):
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,),
              "lm_head.weight": (V, H)}
    for i in range(n_layers):
        p = "model.layers.%d." % i
        shapes[p + "input_layernorm.weight"] = (H,)
        shapes[p + "post_attention_layernorm.weight"] = (H,)
        shapes[p + "self_attn.q_proj.weight"] = (H, H)
        shapes[p + "self_attn.o_proj.weight"] = (H, H)
        shapes[p + "mlp.up_proj.weight"] = (FF, H)
        shapes[p + "mlp.down_proj.weight"] = (H, FF)
    return shapes


def write_model(folder, tensors, n_layers):
    sio.save_model(folder, tensors, "F32")
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": H, "intermediate_size": FF, "vocab_size": V,
              "num_hidden_layers": n_layers, "num_attention_heads": 2,
              "torch_dtype": "float32",
              "layer_types": ["full_attention"] * n_layers}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 64}, f)


def make(root, n_layers, only):
    shapes = layer_tensors(n_layers)
    rng = np.random.default_rng(20240611 + n_layers)
    base = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in sorted(shapes.items())}
    models = {"base": base}
    for seed, name in ((1, "math"), (2, "code")):
        r = np.random.default_rng(seed + 100 * n_layers)
        models[name] = {k: (v + r.normal(0, 0.05, v.shape)).astype(np.float32)
                        for k, v in base.items()}
    for name, tensors in models.items():
        if not only or name == only:
            write_model(os.path.join(root, name), tensors, n_layers)


# --------------------------------------------------------------------------
# parameter evaluation, written from the recipe schema (DESIGN 5)

def layer_of(name):
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return None


def gradient(values, t):
    n = len(values)
    if n == 1:
        return float(values[0])
    x = t * (n - 1)
    i0 = min(int(np.floor(x)), n - 1)
    i1 = min(n - 1, i0 + 1)
    frac = x - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def evaluate(setting, name, t):
    """The value of a setting for a tensor, or None (no filter matched)."""
    if isinstance(setting, bool):
        return float(setting)
    if isinstance(setting, (int, float)):
        return float(setting)
    if all(isinstance(v, (int, float)) for v in setting):
        return gradient(setting, t)
    for entry in setting:
        f = entry.get("filter")
        if f is None or f == "*" or f in name:
            v = entry["value"]
            return float(v) if isinstance(v, (int, float)) else gradient(v, t)
    return None


def param(levels, key, name, t, default):
    for lv in levels:
        if lv and key in lv:
            v = evaluate(lv[key], name, t)
            if v is not None:
                return v
    return default


def resolve(recipe_path, p):
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(recipe_path)), p))


def load(recipe_path):
    with open(recipe_path) as f:
        return json.load(f)


def fail(msg):
    print(msg)
    sys.exit(1)


def compare(out, want, name, tol):
    if out.shape != want.shape:
        fail("%s: shape %s, expected %s" % (name, out.shape, want.shape))
    err = float(np.max(np.abs(out.astype(np.float64) - want))) if out.size else 0.0
    if err > tol:
        fail("%s: differs from the hand computation by %g" % (name, err))


def check_ta(recipe_path, out_dir):
    r = load(recipe_path)
    assert r["merge_method"] == "task_arithmetic" and "models" in r
    base_path = resolve(recipe_path, r["base_model"])
    base = sio.load_model(base_path)
    top = r.get("parameters", {})
    entries = [(resolve(recipe_path, m["model"]), m.get("parameters", {})) for m in r["models"]]
    entries = [(p, prm, sio.load_model(p)) for p, prm in entries if p != base_path]
    out = sio.load_model(out_dir)
    n_layers = 1 + max(layer_of(k) for k in base if layer_of(k) is not None)
    if sorted(out) != sorted(base):
        fail("output tensors differ from the base's")
    for name, b in base.items():
        li = layer_of(name)
        t = 0.0 if li is None else (li / (n_layers - 1) if n_layers > 1 else 1.0)
        lam = param([top], "lambda", name, t, 1.0)
        acc = np.zeros(b.shape, np.float64)
        for _, prm, x in entries:
            w = param([prm, top], "weight", name, t, 1.0)
            acc += w * (x[name].astype(np.float64) - b)
        compare(out[name], b + lam * acc, name, 1e-5)
    print("%d tensors match" % len(base))


def slerp(t, v0, v1):
    a, b = v0.astype(np.float64).ravel(), v1.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua = a / na if na > 1e-8 else a
    ub = b / nb if nb > 1e-8 else b
    dot = float(np.sum(ua * ub))
    if abs(dot) > 0.9995:
        res = (1 - t) * a + t * b
    else:
        th = np.arccos(dot)
        s = np.sin(th)
        res = np.sin(th - th * t) / s * a + np.sin(th * t) / s * b
    return res.reshape(v0.shape)


def check_slerp(recipe_path, out_dir):
    r = load(recipe_path)
    assert r["merge_method"] == "slerp" and "models" in r
    base_path = resolve(recipe_path, r["base_model"])
    others = [resolve(recipe_path, m["model"]) for m in r["models"]]
    others = [p for p in others if p != base_path]
    base, other = sio.load_model(base_path), sio.load_model(others[0])
    out = sio.load_model(out_dir)
    n_layers = 1 + max(layer_of(k) for k in base if layer_of(k) is not None)
    for name, b in base.items():
        li = layer_of(name)
        t = 0.0 if li is None else li / (n_layers - 1)
        tv = param([r.get("parameters", {})], "t", name, t, None)
        compare(out[name], slerp(tv, b, other[name]), name, 1e-5)
    print("%d tensors match" % len(base))


def check_slices(recipe_path, out_dir):
    r = load(recipe_path)
    assert r["merge_method"] == "passthrough"
    out = sio.model_index(out_dir)
    models = {}

    def model(p):
        if p not in models:
            models[p] = sio.model_index(resolve(recipe_path, p))
        return models[p]

    expected = {}
    first = model(r["slices"][0]["sources"][0]["model"])
    last = model(r["slices"][-1]["sources"][0]["model"])
    for name, info in first.items():
        if layer_of(name) is None and "embed" in name:
            expected[name] = info
    j = 0
    for sl in r["slices"]:
        src = sl["sources"][0]
        m = model(src["model"])
        a, b = src["layer_range"]
        for layer in range(a, b):
            for name, info in m.items():
                if layer_of(name) == layer:
                    out_name = re.sub(r"(^|\.)%d(\.|$)" % layer, r"\g<1>%d\g<2>" % j, name, count=1)
                    expected[out_name] = info
            j += 1
    for name, info in last.items():
        if layer_of(name) is None and "embed" not in name:
            expected[name] = info
    if sorted(out) != sorted(expected):
        fail("output tensors %s, expected %s" % (sorted(set(out) ^ set(expected))[:6], "the slices' layers"))
    for name, info in expected.items():
        if sio.read_raw(out[name]).tobytes() != sio.read_raw(info).tobytes():
            fail("%s: not a copy of its source tensor" % name)
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("num_hidden_layers") != j:
        fail("config.json: num_hidden_layers %s, expected %d" % (cfg.get("num_hidden_layers"), j))
    if len(cfg.get("layer_types", [])) != j:
        fail("config.json: layer_types has %d entries, expected %d" % (len(cfg.get("layer_types", [])), j))
    print("%d layers, %d tensors copied" % (j, len(expected)))


def solved_weight(recipe_path, out_dir, tensor, model_path):
    """Least-squares weight of one model in OUT - base, the other models'
    contributions removed with the weights the recipe gives them."""
    r = load(recipe_path)
    base_path = resolve(recipe_path, r["base_model"])
    base = sio.load_model(base_path)
    n_layers = 1 + max(layer_of(k) for k in base if layer_of(k) is not None)
    li = layer_of(tensor)
    t = 0.0 if li is None else li / (n_layers - 1)
    b = base[tensor].astype(np.float64)
    rest = sio.load_model(out_dir)[tensor].astype(np.float64) - b
    x = sio.load_model(resolve(recipe_path, model_path))[tensor].astype(np.float64)
    lam = param([r.get("parameters", {})], "lambda", tensor, t, 1.0)
    for m in r["models"]:
        p = resolve(recipe_path, m["model"])
        if p in (base_path, resolve(recipe_path, model_path)):
            continue
        w = param([m.get("parameters", {}), r.get("parameters", {})], "weight", tensor, t, 1.0)
        rest -= lam * w * (sio.load_model(p)[tensor].astype(np.float64) - b)
    d = (x - b).ravel()
    w = float(np.dot(rest.ravel(), d)) / float(np.dot(d, d)) / lam
    print("%.4f" % (w + 0.0 if abs(w) >= 5e-5 else 0.0))


def main(argv):
    if len(argv) >= 2 and argv[0] == "make":
        layers = 4
        only = None
        rest = argv[2:]
        while rest:
            if rest[0] == "--layers":
                layers = int(rest[1])
            elif rest[0] == "--only":
                only = rest[1]
            else:
                fail(__doc__)
            rest = rest[2:]
        make(argv[1], layers, only)
    elif len(argv) == 3 and argv[0] == "check-ta":
        check_ta(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check-slerp":
        check_slerp(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "check-slices":
        check_slices(argv[1], argv[2])
    elif len(argv) == 5 and argv[0] == "weights":
        solved_weight(argv[1], argv[2], argv[3], argv[4])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
