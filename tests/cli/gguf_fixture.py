"""gguf_fixture.py - write small GGUF files for the tests, independently of
weld's writer (NumPy only).

    gguf_fixture.py OUT.gguf SEED [TYPE]   a llama-like model: tokenizer and
                                           chat-template keys, 2-D weights in
                                           TYPE (F32 F16 BF16 Q8_0 Q4_0 Q4_K
                                           Q6_K ...), norms in F32

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


def llama(path, seed, wtype):
    rng = np.random.default_rng(seed)
    h, ff, vocab = 256, 512, 64
    tensors = [("token_embd.weight", wtype, [vocab, h]), ("output_norm.weight", "F32", [h])]
    for layer in range(2):
        p = "blk.%d." % layer
        tensors += [(p + "attn_norm.weight", "F32", [h]), (p + "attn_q.weight", wtype, [h, h]),
                    (p + "attn_k.weight", wtype, [h, h]), (p + "ffn_up.weight", wtype, [ff, h]),
                    (p + "ffn_down.weight", wtype, [h, ff]), (p + "ffn_norm.weight", "F32", [h])]
    toks = [("<t%d>" % i).encode() for i in range(vocab)]
    kvs = [kv("general.architecture", 8, gstr("llama")),
           kv("general.name", 8, gstr("fixture")),
           kv("general.file_type", 4, struct.pack("<I", 7 if wtype == "Q8_0" else 1)),
           kv("llama.block_count", 4, struct.pack("<I", 2)),
           kv("llama.embedding_length", 4, struct.pack("<I", h)),
           kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
           kv("tokenizer.ggml.add_bos_token", 7, b"\x01"),
           kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, vocab) +
              b"".join(struct.pack("<Q", len(t)) + t for t in toks)),
           kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, vocab) +
              np.arange(vocab, dtype="<f4").tobytes()),
           kv("tokenizer.chat_template", 8, gstr("{% for m in messages %}{{ m.content }}{% endfor %}"))]
    write(path, [(n, t, s, tensor_bytes(rng, t, s)) for n, t, s in tensors], kvs)


if __name__ == "__main__":
    llama(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "Q8_0")
