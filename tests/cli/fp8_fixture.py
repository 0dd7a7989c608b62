#!/usr/bin/python3
"""Small FP8 checkpoints with scales, for tests/cli/test_fp8.sh. The codes
are decoded here from the E4M3 bit layout (sign, 4 exponent bits of bias
7, 3 mantissa bits), independently of weld.

    fp8_fixture.py make DIR         DIR/a, DIR/b: block-scaled (DeepSeek
                                    style, weight_block_size [4, 8], F32 and
                                    BF16 weight_scale_inv, a 3-D fused expert
                                    tensor); DIR/ct: compressed-tensors
                                    (channel and tensor weight_scale, an
                                    input_scale)
    fp8_fixture.py decode M OUT     OUT: model M with every FP8 weight
                                    decoded (code x scale, in float32) and
                                    written as F32, scales dropped
    fp8_fixture.py hostile KIND M OUT
                                    OUT: a copy of M broken one way (KIND:
                                    scale-shape, scale-dtype, no-scale,
                                    block-size, inf-scale, orphan-scale,
                                    bad-block-config)
    fp8_fixture.py quantize M OUT   OUT: model M (one file) with every
                                    floating tensor of 2 or more dimensions
                                    whose name has "proj" block-scaled (F32
                                    weight_scale_inv, blocks [4, 8]; its
                                    config.json kept, quantization_config
                                    added)
    fp8_fixture.py same X Y         exit 0 if models X and Y hold the same
                                    tensor names and the same float32 values
                                    bit for bit
    fp8_fixture.py flip FILE NAME   flip the lowest bit of the first byte of
                                    tensor NAME of safetensors FILE, in place
    fp8_fixture.py check-fp8 OUT REF
                                    OUT (written with --dtype fp8) against
                                    REF (float32): every FP8 weight's scale
                                    is the amax of its block / 448 and its
                                    codes are REF / scale clamped to +-448
                                    and rounded to nearest even
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io as sio  # noqa: E402

BLOCK = [4, 8]
FP8_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
              "weight_block_size": BLOCK}
CT_CONFIG = {"quant_method": "compressed-tensors", "format": "float-quantized",
             "quantization_status": "compressed", "ignore": ["lm_head"],
             "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                           "weights": {"num_bits": 8, "type": "float",
                                                       "strategy": "channel",
                                                       "symmetric": True}}}}


def e4m3_to_f32(codes):
    c = np.asarray(codes, dtype=np.uint8).astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e, m = (c >> 3) & 15, c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((c & 0x7F) == 0x7F, np.nan, v)
    return (sign * v).astype(np.float32)


POSITIVE = e4m3_to_f32(np.arange(0x7F))   # codes 0 .. 0x7E, increasing


def f32_to_e4m3_sat(x):
    """Clamp to +-448, then the nearest code, ties to the even code."""
    x = np.clip(np.asarray(x, dtype=np.float32), -448.0, 448.0)
    a = np.abs(x).astype(np.float64)
    hi = np.clip(np.searchsorted(POSITIVE, a), 0, 0x7E)
    lo = np.clip(hi - 1, 0, 0x7E)
    dlo, dhi = a - POSITIVE[lo], POSITIVE[hi] - a
    code = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    code = np.where(a == POSITIVE[hi], hi, code)
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def codes(rng, shape):
    c = rng.integers(0, 256, size=shape, dtype=np.uint8)
    c[(c & 0x7F) == 0x7F] = 0x7E        # no NaN codes
    return c


def scales(rng, shape, dtype):
    s = (2.0 ** rng.integers(-9, -3, size=shape)) * rng.uniform(1, 2, size=shape)
    s = s.astype(np.float32)
    return (sio.f32_to_bf16_bits(s), "BF16") if dtype == "BF16" else (s, "F32")


def grid(shape, block):
    return list(shape[:-2]) + [-(-shape[-2] // block[0]), -(-shape[-1] // block[1])]


def write(folder, tensors, quant):
    """tensors: {name: (storage array, dtype)}; config.json with `quant`."""
    os.makedirs(folder, exist_ok=True)
    specs = [(n, dt, tuple(a.shape)) for n, (a, dt) in tensors.items()]
    w = sio.StreamWriter(os.path.join(folder, "model.safetensors"), specs)
    for n, (a, dt) in tensors.items():
        w.write(n, a)
    w.close()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "torch_dtype": "bfloat16"}
    if quant:
        config["quantization_config"] = quant
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def bf16(rng, shape):
    return sio.f32_to_bf16_bits(rng.standard_normal(shape).astype(np.float32)), "BF16"


def block_model(seed):
    rng = np.random.default_rng(seed)
    t = {}
    for name, shape, sdt in (("model.layers.0.self_attn.q_proj.weight", (10, 20), "F32"),
                             ("model.layers.0.mlp.down_proj.weight", (12, 16), "BF16"),
                             ("model.layers.0.mlp.up_proj.weight", (132, 512), "F32"),
                             ("model.layers.0.mlp.experts.gate_up_proj", (2, 6, 20), "F32")):
        t[name] = (codes(rng, shape), "F8_E4M3")
        t[name + "_scale_inv"] = scales(rng, grid(shape, BLOCK), sdt)
    t["model.layers.0.input_layernorm.weight"] = bf16(rng, (20,))
    t["model.embed_tokens.weight"] = bf16(rng, (16, 20))
    t["lm_head.weight"] = bf16(rng, (16, 20))
    return t


def ct_model(seed):
    rng = np.random.default_rng(seed)
    t = {"model.layers.0.self_attn.q_proj.weight": (codes(rng, (10, 20)), "F8_E4M3"),
         "model.layers.0.self_attn.q_proj.weight_scale": scales(rng, (10, 1), "BF16"),
         "model.layers.0.self_attn.q_proj.input_scale": scales(rng, (1,), "F32"),
         "model.layers.0.mlp.down_proj.weight": (codes(rng, (12, 16)), "F8_E4M3"),
         "model.layers.0.mlp.down_proj.weight_scale": scales(rng, (1,), "BF16"),
         "model.embed_tokens.weight": bf16(rng, (16, 20))}
    return t


def make(d):
    write(os.path.join(d, "a"), block_model(1), FP8_CONFIG)
    write(os.path.join(d, "b"), block_model(2), FP8_CONFIG)
    write(os.path.join(d, "ct"), ct_model(3), CT_CONFIG)


def load(folder):
    """{name: (storage array, dtype)} and config of a one-file model."""
    path = os.path.join(folder, "model.safetensors")
    _, infos = sio.read_header(path)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    return {n: (sio.read_raw(i), i.dtype) for n, i in infos.items()}, config


def to_f32(a, dt):
    return e4m3_to_f32(a) if dt == "F8_E4M3" else sio.to_f32(a, dt)


def expand(s, shape, block):
    """Scale of every element: the block grid repeated and cropped."""
    for ax, b in ((-2, block[0]), (-1, block[1])):
        s = np.repeat(s, b, axis=ax)
    return s[..., :shape[-2], :shape[-1]]


def decode(src, out):
    t, config = load(src)
    q = config.pop("quantization_config")
    block = q.get("weight_block_size")
    dec = {}
    for n, (a, dt) in t.items():
        if n.endswith("_scale_inv") or n.endswith("_scale"):
            continue
        if dt != "F8_E4M3":
            dec[n] = (sio.to_f32(a, dt), "F32")
            continue
        sname = n + "_scale_inv" if n + "_scale_inv" in t else n + "_scale"
        s = to_f32(*t[sname])
        if sname.endswith("_scale_inv"):
            s = expand(s, a.shape, block)
        elif s.size == 1:
            s = np.full(a.shape, s.reshape(()), dtype=np.float32)
        else:
            s = np.broadcast_to(s.reshape(-1, 1), a.shape)
        dec[n] = ((e4m3_to_f32(a) * s).astype(np.float32), "F32")
    write(out, dec, None)


def quantize(src, out):
    t, config = load(src)
    q = {}
    for n, (a, dt) in t.items():
        if "proj" not in n or a.ndim < 2 or dt not in ("F32", "BF16", "F16"):
            q[n] = (a, dt)
            continue
        x = sio.to_f32(a, dt)
        g = grid(x.shape, BLOCK)
        amax = np.zeros(g, dtype=np.float32)
        for i in range(g[-2]):
            for j in range(g[-1]):
                blk = x[..., i * BLOCK[0]:(i + 1) * BLOCK[0], j * BLOCK[1]:(j + 1) * BLOCK[1]]
                amax[..., i, j] = np.abs(blk).max(axis=(-2, -1))
        scale = (amax / np.float32(448)).astype(np.float32)
        scale[scale == 0] = 1
        q[n] = (f32_to_e4m3_sat(x / expand(scale, x.shape, BLOCK)), "F8_E4M3")
        q[n + "_scale_inv"] = (scale, "F32")
    config["quantization_config"] = FP8_CONFIG
    os.makedirs(out, exist_ok=True)
    specs = [(n, dt, tuple(a.shape)) for n, (a, dt) in q.items()]
    w = sio.StreamWriter(os.path.join(out, "model.safetensors"), specs)
    for n, (a, dt) in q.items():
        w.write(n, a)
    w.close()
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def hostile(kind, src, out):
    t, config = load(src)
    q = config.get("quantization_config")
    w = "model.layers.0.self_attn.q_proj.weight"
    s = w + "_scale_inv"
    if kind == "scale-shape":
        t[s] = (np.ones((3, 2), dtype=np.float32), "F32")
    elif kind == "scale-dtype":
        t[s] = (np.ones(t[s][0].shape, dtype=np.int8), "I8")
    elif kind == "no-scale":
        del t[s]
    elif kind == "block-size":
        q["weight_block_size"] = [5, 8]
    elif kind == "inf-scale":
        a = t[s][0].copy()
        a[1, 2] = np.inf
        t[s] = (a, "F32")
    elif kind == "orphan-scale":
        t[w] = (sio.f32_to_bf16_bits(e4m3_to_f32(t[w][0])), "BF16")
    elif kind == "bad-block-config":
        q["weight_block_size"] = [0, 128]
    else:
        raise SystemExit("unknown kind %s" % kind)
    write(out, t, q)


def same(x, y):
    a, b = sio.load_model(x), sio.load_model(y)
    if sorted(a) != sorted(b):
        print("names differ:", sorted(set(a) ^ set(b)))
        return 1
    for n in sorted(a):
        if a[n].shape != b[n].shape or not np.array_equal(a[n].view(np.uint32),
                                                          b[n].view(np.uint32)):
            print("tensor %s differs" % n)
            return 1
    return 0


def check_fp8(out, ref):
    with open(os.path.join(out, "config.json")) as f:
        block = json.load(f)["quantization_config"]["weight_block_size"]
    _, infos = sio.read_header(os.path.join(out, "model.safetensors"))
    r = sio.load_model(ref)
    for n, i in infos.items():
        if i.dtype != "F8_E4M3":
            continue
        x = r[n]
        s = sio.read_f32(infos[n + "_scale_inv"])
        amax = np.zeros(s.shape, dtype=np.float32)
        full = expand(np.zeros(s.shape, dtype=np.float32), x.shape, block)
        idx = np.indices(x.shape)
        key = tuple(list(idx[:-2]) + [idx[-2] // block[0], idx[-1] // block[1]])
        np.maximum.at(amax, key, np.abs(x))
        want = np.where(amax > 0, amax / np.float32(448), np.float32(1)).astype(np.float32)
        if not np.array_equal(want.view(np.uint32), s.view(np.uint32)):
            print("%s: scales differ" % n)
            return 1
        full = expand(want, x.shape, block)
        codes_want = f32_to_e4m3_sat(x / full)
        if not np.array_equal(codes_want, sio.read_raw(i)):
            print("%s: codes differ" % n)
            return 1
    return 0


def flip(path, name):
    info = sio.read_header(path)[1][name]
    with open(path, "r+b") as f:
        f.seek(info.offset)
        b = f.read(1)
        f.seek(info.offset)
        f.write(bytes([b[0] ^ 1]))


def main(argv):
    if len(argv) == 3 and argv[1] == "make":
        make(argv[2])
    elif len(argv) == 4 and argv[1] == "decode":
        decode(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "quantize":
        quantize(argv[2], argv[3])
    elif len(argv) == 5 and argv[1] == "hostile":
        hostile(argv[2], argv[3], argv[4])
    elif len(argv) == 4 and argv[1] == "same":
        return same(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "flip":
        flip(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "check-fp8":
        return check_fp8(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
