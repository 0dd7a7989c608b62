#!/usr/bin/python3
"""Tiny MoE checkpoints for tests/cli/test_expert_merge.sh, and the checks
that compare weld's output with the M-SMoE formulas worked out here in
float64.

    expert_merge_fixture.py make DIR [--style mixtral|qwen|deepseek_v3|dense] [--ffn F]
                                     [--dense-first] [--permuted] [--dtype f32|bf16]
                                     [--experts per|fused|stacked|stacked3]
    expert_merge_fixture.py stats FILE {balanced|skewed|negative}
    expert_merge_fixture.py check MODEL OUT --layout alias|compact
                                     [--stats FILE] [--groups G] [--aligned]
    expert_merge_fixture.py same OUT1 OUT2

The experts of every layer form two clusters, {0, 3} and {1, 2}: their
router rows and weights are a cluster centre plus small noise, so both
router and weight similarity group them that way. With --permuted the
members of a cluster are exact FFN-neuron permutations of its first
expert (what --align must undo). Safetensors files are written and read
by hand (8-byte header length, JSON header, raw little-endian data).

deepseek_v3 is the Qwen naming with DeepSeek-V3's extras: a dense first
layer (first_k_dense_replace 1), shared experts (mlp.shared_experts.*),
the router's e_score_correction_bias and group-limited routing (n_group 2,
topk_group 1, topk_method noaux_tc). --experts fused writes each expert's
gate and up projections as one gate_up_proj [2F, H] (gate rows first);
--experts stacked writes a layer's experts as two 3-D tensors,
mlp.experts.gate_up_proj [E, 2F, H] and mlp.experts.down_proj [E, H, F]
(transformers' layout); stacked3 stacks gate_proj, up_proj and down_proj
separately. The checks read any of them back as per-expert
gate/up/down matrices.
"""
import json
import os
import struct
import sys

import numpy as np

E, L, H, F, V = 4, 2, 8, 6, 16
CLUSTERS = [[0, 3], [1, 2]]
EPS = 1e-7


# ------------------------------------------------------------- safetensors

def f32_to_bf16(a):
    """Round-to-nearest-even float32 -> bf16 bits (no NaN in the fixtures)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "BF16":
            raw = f32_to_bf16(arr).tobytes()
        else:
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_file(path, out):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        if info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit("unexpected dtype %s" % info["dtype"])
        out[name] = (info["dtype"], arr.reshape(info["shape"]).copy())


def read_model(folder):
    """name -> (dtype, array) for a single file or a sharded folder."""
    out = {}
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        for name in files:
            read_file(os.path.join(folder, name), out)
    else:
        read_file(os.path.join(folder, "model.safetensors"), out)
    return out


# ------------------------------------------------------------- names

def names(style):
    if style == "mixtral":
        return "block_sparse_moe", ("w1", "w3", "w2")
    return "mlp", ("gate_proj", "up_proj", "down_proj")


def expert_name(style, layer, e, k):
    block, proj = names(style)
    return "model.layers.%d.%s.experts.%d.%s.weight" % (layer, block, e, proj[k])


def router_name(style, layer):
    return "model.layers.%d.%s.gate.weight" % (layer, names(style)[0])


def bias_name(layer):
    return "model.layers.%d.mlp.gate.e_score_correction_bias" % layer


def moe_layers(style, dense_first):
    if style == "dense":
        return []
    return [1, 2] if dense_first or style == "deepseek_v3" else [0, 1]


def pack_experts(t, layers, kind):
    """Per-expert gate/up/down (Qwen names) -> fused or stacked tensors."""
    if kind == "per":
        return t
    out = {}
    for name, arr in t.items():
        if ".mlp.experts." not in name:
            out[name] = arr
    for layer in layers:
        gu = [np.concatenate([t[expert_name("qwen", layer, e, 0)],
                              t[expert_name("qwen", layer, e, 1)]]) for e in range(E)]
        down = [t[expert_name("qwen", layer, e, 2)] for e in range(E)]
        p = "model.layers.%d.mlp.experts." % layer
        if kind == "fused":
            for e in range(E):
                out[p + "%d.gate_up_proj.weight" % e] = gu[e]
                out[p + "%d.down_proj.weight" % e] = down[e]
        elif kind == "stacked3":
            for k, proj in enumerate(("gate_proj", "up_proj", "down_proj")):
                out[p + proj] = np.stack([t[expert_name("qwen", layer, e, k)] for e in range(E)])
        else:
            out[p + "gate_up_proj"] = np.stack(gu)
            out[p + "down_proj"] = np.stack(down)
    return out


def unpack_experts(model):
    """Fused or stacked expert tensors read back as per-expert gate/up/down
    (Qwen names); (dtype, array) values; other tensors as they are."""
    out = {}
    for name, (dt, arr) in model.items():
        head, _, tail = name.partition(".mlp.experts.")
        if not tail:
            out[name] = (dt, arr)
            continue
        layer = int(head.split(".")[2])
        if "." not in tail:
            mats = [(e, arr[e]) for e in range(arr.shape[0])]
            proj = tail
        else:
            e, proj = tail.split(".", 1)
            mats = [(int(e), arr)]
            proj = proj[:-len(".weight")]
        for e, m in mats:
            if proj == "gate_up_proj":
                f = m.shape[0] // 2
                out[expert_name("qwen", layer, e, 0)] = (dt, m[:f])
                out[expert_name("qwen", layer, e, 1)] = (dt, m[f:])
            else:
                k = {"gate_proj": 0, "up_proj": 1, "down_proj": 2}[proj]
                out[expert_name("qwen", layer, e, k)] = (dt, m)
    return out


# ------------------------------------------------------------- make

def make(folder, style, dense_first, permuted, dtype, experts="per"):
    rng = np.random.default_rng(7)
    t = {"model.embed_tokens.weight": rng.standard_normal((V, H))}
    layers = moe_layers(style, dense_first)
    nlayers = max(layers) + 1 if layers else 2
    for layer in range(nlayers):
        p = "model.layers.%d." % layer
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        t[p + "self_attn.q_proj.weight"] = rng.standard_normal((H, H))
        if layer not in layers:
            t[p + "mlp.gate_proj.weight"] = rng.standard_normal((F, H))
            t[p + "mlp.up_proj.weight"] = rng.standard_normal((F, H))
            t[p + "mlp.down_proj.weight"] = rng.standard_normal((H, F))
            continue
        centre_r = [rng.standard_normal(H) for _ in CLUSTERS]
        centre_w = [[rng.standard_normal((F, H)), rng.standard_normal((F, H)),
                     rng.standard_normal((H, F))] for _ in CLUSTERS]
        router = np.zeros((E, H))
        for c, members in enumerate(CLUSTERS):
            for e in members:
                router[e] = centre_r[c] + 0.05 * rng.standard_normal(H)
                if permuted:
                    perm = rng.permutation(F) if e != members[0] else np.arange(F)
                    w = centre_w[c]
                    mats = [w[0][perm], w[1][perm], w[2][:, perm]]
                else:
                    mats = [m + 0.05 * rng.standard_normal(m.shape) for m in centre_w[c]]
                for k in range(3):
                    t[expert_name(style, layer, e, k)] = mats[k]
        t[router_name(style, layer)] = router
        if style == "deepseek_v3":
            t[bias_name(layer)] = rng.standard_normal(E)
            for k, proj in enumerate(("gate_proj", "up_proj", "down_proj")):
                shape = (H, F) if k == 2 else (F, H)
                t[p + "mlp.shared_experts.%s.weight" % proj] = rng.standard_normal(shape)
        if style == "qwen":
            t[p + "mlp.shared_expert.gate_proj.weight"] = rng.standard_normal((F, H))
            t[p + "mlp.shared_expert.up_proj.weight"] = rng.standard_normal((F, H))
            t[p + "mlp.shared_expert.down_proj.weight"] = rng.standard_normal((H, F))
            t[p + "mlp.shared_expert_gate.weight"] = rng.standard_normal((1, H))
    t["model.norm.weight"] = np.ones(H)
    t["lm_head.weight"] = rng.standard_normal((V, H))
    t = {k: v.astype(np.float32) for k, v in t.items()}
    t = pack_experts(t, layers, experts)

    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), t,
                      "BF16" if dtype == "bf16" else "F32")
    if style == "dense":
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    elif style == "mixtral":
        config = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
                  "num_local_experts": E}
    elif style == "deepseek_v3":
        config = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                  "n_routed_experts": E, "n_shared_experts": 1, "first_k_dense_replace": 1,
                  "n_group": 2, "topk_group": 1, "topk_method": "noaux_tc",
                  "moe_intermediate_size": F}
    elif dense_first:
        config = {"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek",
                  "n_routed_experts": E, "first_k_dense_replace": 1}
    else:
        config = {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
                  "num_experts": E}
    config.update({"hidden_size": H, "intermediate_size": F, "num_hidden_layers": nlayers,
                   "num_experts_per_tok": 2, "vocab_size": V,
                   "torch_dtype": "bfloat16" if dtype == "bf16" else "float32"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0"}\n')


# ------------------------------------------------------------- stats

STATS = {
    # 4th largest of 0.4 0.4 0.3 0.3 0.2 0.2 0.1 0.1 is 0.3: 2 groups per layer
    "balanced": [[0.4, 0.1, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]],
    # 4th largest of 0.7 0.3 0.3 0.2 0.2 0.1 0.1 0.1 is 0.2: 1 group, then 4
    "skewed": [[0.7, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]],
    "negative": [[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, -1, 0.0]],
}


def write_stats(path, kind, layers=(0, 1)):
    freq = STATS[kind]
    doc = {"layers": {str(layers[i]): {"frequency": freq[i]} for i in range(2)}}
    with open(path, "w") as f:
        json.dump(doc, f)


def read_stats(path, layers):
    if not path:
        return None
    with open(path) as f:
        doc = json.load(f)["layers"]
    out = []
    for layer in layers:
        v = np.array(doc[str(layer)]["frequency"], dtype=np.float64)
        out.append(v / v.sum())
    return out


# ------------------------------------------------------------- expected grouping

def expected_groups(freq, g):
    """M-SMoE grouping where the similarity is known to follow CLUSTERS:
    dominants = the g most used (ties: lower index); every other expert
    joins the dominant of its cluster (if its cluster has one)."""
    f = freq if freq is not None else np.full(E, 1.0 / E)
    order = sorted(range(E), key=lambda e: (-f[e], e))
    dom = order[:g]
    label = [0] * E
    for k, e in enumerate(dom):
        label[e] = k
    cluster = {e: c for c, ms in enumerate(CLUSTERS) for e in ms}
    for e in order[g:]:
        same = [k for k, d in enumerate(dom) if cluster[d] == cluster[e]]
        if not same:
            raise SystemExit("fixture: expert %d has no dominant in its cluster" % e)
        label[e] = same[0]
    return label, dom


def merged(model, style, layer, members, freq, k):
    f = [freq[e] if freq is not None else 1.0 / E for e in members]
    total = sum(f)
    acc = sum(fe * model[expert_name(style, layer, e, k)][1].astype(np.float64)
              for fe, e in zip(f, members))
    return acc / (total + EPS) if total > 0 else acc / len(members)


# ------------------------------------------------------------- checks

def fail(msg):
    print("check failed: " + msg, file=sys.stderr)
    sys.exit(1)


def close(a, b, what, tol):
    err = np.max(np.abs(a.astype(np.float64) - b)) if a.size else 0.0
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    if a.shape != b.shape or err > tol * scale:
        fail("%s: differs from the expected value (max error %g)" % (what, err))


def detect_style(model):
    return "mixtral" if any("block_sparse_moe" in n for n in model) else "qwen"


def check(model_dir, out_dir, layout, stats, groups, aligned):
    src = unpack_experts(read_model(model_dir))
    out = unpack_experts(read_model(out_dir))
    style = detect_style(src)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    dense_first = "first_k_dense_replace" in config
    layers = moe_layers(style, dense_first)
    freqs = read_stats(stats, layers)
    with open(os.path.join(out_dir, "expert_groups.json")) as f:
        eg = json.load(f)
    if eg["layout"] != layout or eg["num_experts"] != E:
        fail("expert_groups.json: layout %s, %d experts" % (eg["layout"], eg["num_experts"]))
    out_dtype = next(iter(out.values()))[0]
    tol = 1e-6 if out_dtype == "F32" else 1e-2
    tol_copy = 0 if out_dtype == "F32" else 1e-2

    expert_names = set()
    for li, layer in enumerate(layers):
        freq = freqs[li] if freqs else None
        label, dom = expected_groups(freq, groups)
        entry = eg["layers"][str(layer)]
        if entry["expert_to_group"] != label or entry["dominant"] != dom:
            fail("layer %d: groups %s dominant %s, expected %s %s" %
                 (layer, entry["expert_to_group"], entry["dominant"], label, dom))
        for g in range(groups):
            members = [e for e in range(E) if label[e] == g]
            for k in range(3):
                want = merged(src, style, layer, members, freq, k)
                if aligned:
                    # members are permutations of the dominant: aligned,
                    # the merge gives back the dominant's matrix
                    want = src[expert_name(style, layer, dom[g], k)][1].astype(np.float64)
                    want = want * (sum(freq[e] for e in members) if freq is not None
                                   else len(members) / E)
                    want /= ((sum(freq[e] for e in members) if freq is not None
                              else len(members) / E) + EPS)
                slots = members if layout == "alias" else [g]
                for e in slots:
                    name = expert_name(style, layer, e, k)
                    expert_names.add(name)
                    if name not in out:
                        fail("missing tensor '%s'" % name)
                    close(out[name][1], want, name, tol)
        router = src[router_name(style, layer)][1]
        got = out[router_name(style, layer)][1]
        if layout == "alias":
            close(got, router.astype(np.float64), "router of layer %d" % layer, tol_copy)
        else:
            close(got, router[dom].astype(np.float64), "compact router of layer %d" % layer,
                  tol_copy)
        if bias_name(layer) in src:
            bias = src[bias_name(layer)][1].astype(np.float64)
            close(out[bias_name(layer)][1], bias if layout == "alias" else bias[dom],
                  "e_score_correction_bias of layer %d" % layer, tol_copy)

    # every other tensor is copied unchanged, and nothing else is written
    routers = {router_name(style, layer) for layer in layers}
    routers |= {bias_name(layer) for layer in layers}
    for name, (_, arr) in src.items():
        if ".experts." in name or name in routers:
            continue
        if name not in out:
            fail("missing tensor '%s'" % name)
        close(out[name][1], arr.astype(np.float64), name, tol_copy)
    extra = set(out) - set(src) - expert_names
    if extra:
        fail("unexpected tensors: %s" % sorted(extra))
    if layout == "compact":
        n_out = sum(1 for n in out if ".experts." in n)
        if n_out != groups * 3 * len(layers):
            fail("compact output has %d expert tensors, expected %d" %
                 (n_out, groups * 3 * len(layers)))
        with open(os.path.join(out_dir, "config.json")) as f:
            oc = json.load(f)
        for key in ("num_local_experts", "num_experts", "n_routed_experts"):
            if key in config and oc.get(key) != groups:
                fail("config.json: %s is %s, expected %d" % (key, oc.get(key), groups))
        if oc.get("num_hidden_layers") != config["num_hidden_layers"]:
            fail("config.json: num_hidden_layers changed")
    else:
        for name, (_, arr) in src.items():
            if out[name][1].shape != arr.shape:
                fail("%s: shape %s, expected %s" % (name, out[name][1].shape, arr.shape))


def same(a, b):
    x, y = read_model(a), read_model(b)
    if sorted(x) != sorted(y):
        fail("different tensor names")
    for name in x:
        if x[name][0] != y[name][0] or x[name][1].tobytes() != y[name][1].tobytes():
            fail("tensor '%s' differs" % name)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]

    def opt(name, default=None):
        return args[args.index(name) + 1] if name in args else default

    if cmd == "make":
        global F
        F = int(opt("--ffn", F))
        make(args[0], opt("--style", "mixtral"), "--dense-first" in args,
             "--permuted" in args, opt("--dtype", "f32"), opt("--experts", "per"))
    elif cmd == "stats":
        layers = [int(x) for x in opt("--layers", "0,1").split(",")]
        write_stats(args[0], args[1], layers)
    elif cmd == "check":
        check(args[0], args[1], opt("--layout", "alias"), opt("--stats"),
              int(opt("--groups", "2")), "--aligned" in args)
    elif cmd == "same":
        same(args[0], args[1])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
