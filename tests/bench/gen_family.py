#!/usr/bin/python3
"""Create a Llama-shaped model family for the benchmark: a base and three
fine-tunes (base + small random deltas), bf16, Hugging Face layout (shards
of at most 500 MB + model.safetensors.index.json, config.json).

Usage: gen_family.py OUTDIR [--size full|small] [--kind KIND] [--seed N]

KIND says what the deltas look like (real bf16 fine-tunes are rarely dense
Gaussian numbers):
  gauss      Gaussian deltas, sigma 2e-3 (the default)
  zeros      70 % of each delta exactly zero, the rest Gaussian, sigma 2e-3
  few        f32 updates of sigma 1e-4 rounded back to bf16: most deltas are
             0 or +-1 unit in the last place, on few distinct values
  heavytail  Student-t deltas with 3 degrees of freedom, scaled to sigma 2e-3
  eight      Gaussian deltas, eight fine-tunes instead of three
  huge       one 152064 x 4096 embedding (1.25 GB bf16) and a norm,
             Gaussian deltas: one tensor many times the memory budget

  full   hidden 2048, intermediate 5632, 8 layers, 32 heads / 4 KV heads,
         vocab 32000: 0.48 G parameters, about 0.97 GB per model
  small  hidden 256, intermediate 704, 2 layers, vocab 2000: about 5 MB per
         model, sharded at 2 MB (for trying the benchmark out)

Writes OUTDIR/{base,ft1,ft2,ft3}; does nothing if OUTDIR already holds a
complete family of the same size and seed. Data are generated tensor by
tensor from per-(model, tensor) seeded NumPy generators, so the output does
not depend on the order of generation and memory stays near one tensor.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import safetensors_io as stio  # noqa: E402

SIZES = {
    "full": dict(hidden=2048, intermediate=5632, layers=8, heads=32, kv_heads=4,
                 vocab=32000, shard=500_000_000),
    "small": dict(hidden=256, intermediate=704, layers=2, heads=8, kv_heads=2,
                  vocab=2000, shard=2_000_000),
}
KINDS = ("gauss", "zeros", "few", "heavytail", "eight", "huge")
WEIGHT_STD = 0.02
DELTA_STD = 0.002
FEW_STD = 1e-4          # kind "few": the f32 update before rounding to bf16
ZERO_SHARE = 0.7        # kind "zeros": share of each delta that is exactly 0
NORM_DELTA_STD = 0.01
# The deltas are windows, at a random offset per (model, tensor), into one
# pool of normal numbers: drawing 1.5 G fresh normals would dominate the run.
POOL = 16_777_259


def pool_slice(pool, off, n):
    """n consecutive values of `pool` from `off`, wrapping around (a copy)."""
    out = np.empty(n, dtype=pool.dtype)
    p = 0
    while p < n:
        take = min(n - p, pool.size - off)
        out[p:p + take] = pool[off:off + take]
        p += take
        off = 0
    return out


def model_names(kind):
    """The base and its fine-tunes."""
    return ("base",) + tuple("ft%d" % i for i in range(1, (8 if kind == "eight" else 3) + 1))


def tensor_list(c, kind):
    """(name, shape) in the state-dict order of LlamaForCausalLM; for kind
    huge, one Qwen2-sized embedding (or a tenth of it, small) and a norm."""
    h, i, v = c["hidden"], c["intermediate"], c["vocab"]
    if kind == "huge":
        rows = 152064 if c["vocab"] == 32000 else 15206
        return [("model.embed_tokens.weight", (rows, 4096 if rows > 20000 else 256)),
                ("model.norm.weight", (4096 if rows > 20000 else 256,))]
    kv = h // c["heads"] * c["kv_heads"]
    out = [("model.embed_tokens.weight", (v, h))]
    for L in range(c["layers"]):
        p = "model.layers.%d." % L
        out += [(p + "self_attn.q_proj.weight", (h, h)),
                (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)),
                (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (i, h)),
                (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i)),
                (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def config_json(c):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c["hidden"], "intermediate_size": c["intermediate"],
        "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"], "vocab_size": c["vocab"],
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2,
    }


def delta_pool(kind, seed):
    """The pool the deltas are windows into (unit variance), and for kind
    zeros a pool of keep flags (30 % true)."""
    g = np.random.default_rng([seed, 99])
    if kind == "heavytail":
        pool = (g.standard_t(3, POOL) / np.sqrt(3.0)).astype(np.float32)
    else:
        pool = g.standard_normal(POOL, dtype=np.float32)
    flags = None
    if kind == "zeros":
        flags = np.random.default_rng([seed, 98]).random(POOL, dtype=np.float32) >= ZERO_SHARE
    return pool, flags


def fine_tune(kind, b, x, dstd, keep):
    """The fine-tune of base values b (f32 of bf16) from the unit deltas x
    (overwritten), as bf16 bits."""
    if kind == "few":
        x *= np.float32(FEW_STD)
    else:
        x *= np.float32(dstd)
    if keep is not None:
        x *= keep
    x += b
    out = stio.f32_to_bf16_bits(x)
    if keep is not None:   # exactly zero where not kept, whatever the rounding
        out[~keep] = stio.f32_to_bf16_bits(b[~keep])
    return out


def write_shard(job):
    """Write one shard file of every model of the family."""
    tmp, fname, sp, seed, index, kind = job
    pool, flags = delta_pool(kind, seed)
    models = model_names(kind)
    writers = [stio.StreamWriter(os.path.join(tmp, m, fname), sp) for m in models]
    for name, _, shape in sp:
        k = index[name]
        n = int(np.prod(shape))
        g = np.random.default_rng([seed, 0, k])
        if name.endswith("norm.weight"):
            b = np.float32(1) + g.standard_normal(n, dtype=np.float32) * np.float32(0.05)
            dstd = NORM_DELTA_STD
        else:
            b = g.standard_normal(n, dtype=np.float32) * np.float32(WEIGHT_STD)
            dstd = DELTA_STD
        bb = stio.f32_to_bf16_bits(b)
        writers[0].write(name, bb.reshape(shape))
        b = stio.bf16_bits_to_f32(bb)
        del bb
        for mi in range(1, len(models)):
            off = int(np.random.default_rng([seed, mi, k]).integers(POOL))
            x = pool_slice(pool, off, n)
            keep = None
            if flags is not None:
                off = int(np.random.default_rng([seed, mi, k, 1]).integers(POOL))
                keep = pool_slice(flags, off, n)
            writers[mi].write(name, fine_tune(kind, b, x, dstd, keep).reshape(shape))
            del x, keep
    for w in writers:
        w.close()


def generate(out, size, kind, seed):
    c = SIZES[size]
    tensors = tensor_list(c, kind)
    specs = [(n, "BF16", s) for n, s in tensors]
    shards = stio.plan_shards(specs, c["shard"])
    names = stio.shard_names(len(shards))
    tmp = out.rstrip("/") + ".tmp-%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    for m in model_names(kind):
        os.makedirs(os.path.join(tmp, m))
        with open(os.path.join(tmp, m, "config.json"), "w") as f:
            json.dump(config_json(c), f, indent=2)
            f.write("\n")
        if len(shards) > 1:
            stio.write_index(os.path.join(tmp, m), shards, names)
    jobs = [(tmp, fname, sp, seed, {n: k for k, (n, _) in enumerate(tensors)}, kind)
            for sp, fname in zip(shards, names)]
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    if workers > 1:
        with multiprocessing.Pool(workers) as p:
            p.map(write_shard, jobs, chunksize=1)
    else:
        for j in jobs:
            write_shard(j)
    with open(os.path.join(tmp, ".complete"), "w") as f:
        json.dump({"size": size, "kind": kind, "seed": seed}, f)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def main(argv):
    ap = argparse.ArgumentParser(description="create the benchmark model family")
    ap.add_argument("outdir")
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--kind", choices=KINDS, default="gauss")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args(argv)
    marker = os.path.join(a.outdir, ".complete")
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
            done.setdefault("kind", "gauss")
            if done == {"size": a.size, "kind": a.kind, "seed": a.seed}:
                print("gen_family: %s is complete, skipped" % a.outdir)
                return 0
    t = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(a.outdir)), exist_ok=True)
    generate(a.outdir, a.size, a.kind, a.seed)
    c = SIZES[a.size]
    n = sum(int(np.prod(s)) for _, s in tensor_list(c, a.kind))
    print("gen_family: %s: %d models of %.1f M parameters (%.1f MB bf16 each) in %.1f s"
          % (a.outdir, len(model_names(a.kind)), n / 1e6, 2 * n / 1e6, time.time() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
