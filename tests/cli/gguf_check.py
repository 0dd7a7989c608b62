"""gguf_check.py - checks of weld's GGUF output with NumPy and an
independent reader.

    gguf_check.py quant F32.gguf OUT.gguf TYPE   OUT's TYPE (Q8_0, Q4_0) tensors are
                                             byte for byte ggml's reference
                                             quantisation of F32.gguf's values,
                                             and decode within the format's error
    gguf_check.py npm NPM.json WELD.json      the npm reader's listing (gguf_list.mjs)
                                             and weld inspect --json agree on every
                                             key, tensor name, shape, type and offset
    gguf_check.py split ONE.gguf SET-00001-of-0000N.gguf ...
                                             the files of a split set hold ONE's
                                             tensors, in order, with the same bytes,
                                             ONE's keys in the first file, and the
                                             split.* keys of llama.cpp's gguf-split
"""
import json
import struct
import sys

import numpy as np

import gguf_fixture as g

NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 10: "Q2_K", 12: "Q4_K", 14: "Q6_K", 30: "BF16"}


def quant(src, out, tname):
    a, _ = g.read(src)
    b, _ = g.read(out)
    tid = g.BLOCK[tname][0]
    n = 0
    for name, (shape, ty, raw) in b.items():
        x = g.f32_values(*a[name])
        if ty != tid:
            assert ty == 0 and (len(shape) == 1 or shape[-1] % 32), name
            continue
        want = g.quant_q8_0(x) if tid == 8 else g.quant_q4_0(x)
        assert raw == want, "%s: %s bytes differ from ggml's reference quantiser" % (name, tname)
        y = g.f32_values(shape, ty, raw)
        blocks = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True)
        err = np.abs((y - x).reshape(-1, 32))
        bound = blocks / 127 * 0.6 if tid == 8 else blocks / 8 * 1.1
        assert (err <= bound + 1e-30).all(), "%s: decoded values off by more than the format's error" % name
        n += 1
    assert n > 0, "no %s tensor" % tname


def npm(npm_json, weld_json):
    a = json.load(open(npm_json))
    w = json.load(open(weld_json))
    assert a["version"] == 3
    assert list(a["keys"]) == list(w["metadata"]), (list(a["keys"]), list(w["metadata"]))
    wt = {t["name"]: t for t in w["tensors"]}
    assert sorted(wt) == sorted(t["name"] for t in a["tensors"])
    for t in a["tensors"]:
        x = wt[t["name"]]
        assert x["shape"] == t["shape"], t["name"]
        assert x["dtype"] == NAMES[t["dtype"]], t["name"]
        assert x["offset"] == t["offset"], t["name"]


def split_keys(path):
    """split.no, split.count, split.tensors.count of a file, with their
    GGUF value types, read at the start of its key/value pairs."""
    raw = open(path, "rb").read(4096)
    nkv = struct.unpack("<Q", raw[16:24])[0]
    pos, found = 24, {}
    fmt = {2: "<H", 4: "<I", 5: "<i"}
    for _ in range(min(nkv, 3)):
        n = struct.unpack("<Q", raw[pos:pos + 8])[0]
        key = raw[pos + 8:pos + 8 + n].decode()
        vt = struct.unpack("<I", raw[pos + 8 + n:pos + 12 + n])[0]
        val = struct.unpack(fmt[vt], raw[pos + 12 + n:pos + 12 + n + struct.calcsize(fmt[vt])])[0]
        found[key] = (vt, val)
        pos += 12 + n + struct.calcsize(fmt[vt])
    return found, nkv


def split(one, *files):
    want, keys = g.read(one)
    got, names = {}, []
    for k, f in enumerate(files):
        t, fkeys = g.read(f)
        sk, nkv = split_keys(f)
        assert f.endswith("-%05d-of-%05d.gguf" % (k + 1, len(files))), f
        assert sk == {"split.no": (2, k), "split.count": (2, len(files)),
                      "split.tensors.count": (5, len(want))}, (f, sk)
        if k == 0:
            assert fkeys[3:] == keys, (fkeys, keys)
        else:
            assert nkv == 3 and fkeys == ["split.no", "split.count", "split.tensors.count"], fkeys
        assert t, "%s holds no tensor" % f
        names += list(t)
        got.update(t)
    assert names == list(want), (names, list(want))
    for name in want:
        assert got[name] == want[name], name


if __name__ == "__main__":
    {"quant": quant, "npm": npm, "split": split}[sys.argv[1]](*sys.argv[2:])
