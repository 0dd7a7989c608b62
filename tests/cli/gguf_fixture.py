"""gguf_fixture.py - write small GGUF files for the tests, independently of
weld's writer (NumPy only).

    gguf_fixture.py OUT.gguf SEED [TYPE]   a llama-like model: tokenizer and
                                           chat-template keys, 2-D weights in
                                           TYPE (F32 F16 BF16 Q8_0 Q4_0 Q4_K
                                           Q6_K ...), norms in F32
    gguf_fixture.py --family DIR small|full
                                           base.gguf, ft1.gguf, ft2.gguf and
                                           ft3.gguf in Q8_0 (full: about 0.5 GB
                                           each), for make bench

Quantised tensors are random blocks (every bit pattern is a valid block)
with finite fp16 scales, so that any decoder must follow the formulas.
"""
import struct
import sys

import numpy as np

BLOCK = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
         "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
         "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176),
         "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}
# where each block type keeps its fp16 scales (byte offsets)
SCALES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
          "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


def tensor_bytes(rng, tname, shape):
    gid, blk, size = BLOCK[tname]
    n = int(np.prod(shape))
    if tname == "F32":
        return rng.standard_normal(n).astype("<f4").tobytes()
    if tname == "F16":
        return rng.standard_normal(n).astype("<f2").tobytes()
    if tname == "BF16":
        f = rng.standard_normal(n).astype("<f4").view("<u4")
        return (f >> 16).astype("<u2").tobytes()
    nb = n // blk
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off in SCALES[tname]:
        d = (rng.uniform(0.001, 0.05, nb) * rng.choice([-1, 1], nb)).astype("<f2")
        raw[:, off:off + 2] = d.view(np.uint8).reshape(nb, 2)
    return raw.tobytes()


def write(path, tensors, kvs, align=32):
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(kvs)
    data = b""
    for name, tname, shape, blob in tensors:
        ne = list(reversed(shape))
        head += gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        head += struct.pack("<IQ", BLOCK[tname][0], len(data))
        data += blob + b"\0" * (-len(blob) % align)
    head += b"\0" * (-len(head) % align)
    with open(path, "wb") as f:
        f.write(head + data)


def llama(path, seed, wtype, h=256, ff=512, vocab=64, layers=2):
    rng = np.random.default_rng(seed)
    tensors = [("token_embd.weight", wtype, [vocab, h]), ("output_norm.weight", "F32", [h])]
    for layer in range(layers):
        p = "blk.%d." % layer
        tensors += [(p + "attn_norm.weight", "F32", [h]), (p + "attn_q.weight", wtype, [h, h]),
                    (p + "attn_k.weight", wtype, [h, h]), (p + "ffn_up.weight", wtype, [ff, h]),
                    (p + "ffn_down.weight", wtype, [h, ff]), (p + "ffn_norm.weight", "F32", [h])]
    toks = [("<t%d>" % i).encode() for i in range(vocab)]
    kvs = [kv("general.architecture", 8, gstr("llama")),
           kv("general.name", 8, gstr("fixture")),
           kv("general.file_type", 4, struct.pack("<I", 7 if wtype == "Q8_0" else 1)),
           kv("llama.block_count", 4, struct.pack("<I", layers)),
           kv("llama.embedding_length", 4, struct.pack("<I", h)),
           kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
           kv("tokenizer.ggml.add_bos_token", 7, b"\x01"),
           kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, vocab) +
              b"".join(struct.pack("<Q", len(t)) + t for t in toks)),
           kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, vocab) +
              np.arange(vocab, dtype="<f4").tobytes()),
           kv("tokenizer.chat_template", 8, gstr("{% for m in messages %}{{ m.content }}{% endfor %}"))]
    write(path, [(n, t, s, tensor_bytes(rng, t, s)) for n, t, s in tensors], kvs)


def family(folder, size):
    import os
    os.makedirs(folder, exist_ok=True)
    dims = dict(h=2048, ff=5632, vocab=32000, layers=10) if size == "full" else {}
    for seed, name in enumerate(["base", "ft1", "ft2", "ft3"]):
        path = os.path.join(folder, name + ".gguf")
        if not os.path.exists(path):
            llama(path + ".tmp", seed, "Q8_0", **dims)
            os.rename(path + ".tmp", path)


if __name__ == "__main__":
    if sys.argv[1] == "--family":
        family(sys.argv[2], sys.argv[3])
    else:
        llama(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "Q8_0")


def read(path):
    """The tensors of a GGUF file: name -> (shape in PyTorch order, ggml
    type id, stored bytes); and its keys in order."""
    g = open(path, "rb").read()
    nt, nkv = struct.unpack("<QQ", g[8:24])
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def string(p):
        n = struct.unpack("<Q", g[p:p + 8])[0]
        return g[p + 8:p + 8 + n].decode(), p + 8 + n
    keys, align = [], 32
    for _ in range(nkv):
        key, pos = string(pos)
        keys.append(key)
        vt = struct.unpack("<I", g[pos:pos + 4])[0]
        pos += 4
        if vt == 8:
            _, pos = string(pos)
        elif vt == 9:
            et, cnt = struct.unpack("<IQ", g[pos:pos + 12])
            pos += 12
            for _ in range(cnt):
                if et == 8:
                    _, pos = string(pos)
                else:
                    pos += sizes[et]
        else:
            if key == "general.alignment":
                align = struct.unpack("<I", g[pos:pos + 4])[0]
            pos += sizes[vt]
    infos = []
    for _ in range(nt):
        name, pos = string(pos)
        nd = struct.unpack("<I", g[pos:pos + 4])[0]
        pos += 4
        ne = struct.unpack("<%dQ" % nd, g[pos:pos + 8 * nd])
        pos += 8 * nd
        ty, off = struct.unpack("<IQ", g[pos:pos + 12])
        pos += 12
        infos.append((name, ne, ty, off))
    start = (pos + align - 1) // align * align
    out = {}
    for name, ne, ty, off in infos:
        blk, size = {v[0]: (v[1], v[2]) for v in BLOCK.values()}[ty]
        nbytes = int(np.prod(ne)) // blk * size
        out[name] = (list(reversed(ne)), ty, g[start + off:start + off + nbytes])
    return out, keys


def f32_values(shape, ty, raw):
    """Decode F32 / F16 / Q8_0 / Q4_0 data to float32 (NumPy, as ggml)."""
    n = int(np.prod(shape))
    if ty == 0:
        return np.frombuffer(raw, "<f4").reshape(shape)
    if ty == 1:
        return np.frombuffer(raw, "<f2").astype(np.float32).reshape(shape)
    if ty == 8:
        b = np.frombuffer(raw, np.uint8).reshape(n // 32, 34)
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        return (b[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(shape)
    if ty == 2:
        b = np.frombuffer(raw, np.uint8).reshape(n // 32, 18)
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        q = np.concatenate([b[:, 2:] & 15, b[:, 2:] >> 4], axis=1).astype(np.float32) - 8
        return (q * d).reshape(shape)
    raise ValueError("type %d" % ty)


def quant_q8_0(x):
    """ggml's quantize_row_q8_0_ref, as gguf-py's quants.py writes it."""
    b = x.reshape(-1, 32).astype(np.float32)
    d = (np.abs(b).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.trunc(b * idv + np.copysign(np.float32(0.5), b * idv)).astype(np.int8)   # roundf
    return np.concatenate([d.astype("<f2").view(np.uint8), q.view(np.uint8)], axis=1).tobytes()


def quant_q4_0(x):
    """ggml's quantize_row_q4_0_ref with the fused multiply-add gguf-py
    emulates (f64 product and sum, one rounding to f32, truncation)."""
    b = x.reshape(-1, 32).astype(np.float32)
    i = np.abs(b).argmax(axis=1)
    mx = b[np.arange(len(b)), i][:, None]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (b.astype(np.float64) * idv.astype(np.float64) + 8.5).astype(np.float32)
    q = np.minimum(15, np.trunc(v)).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([d.astype("<f2").view(np.uint8), qs], axis=1).tobytes()
