#!/usr/bin/python3
"""Models holding NaN and infinities, for tests/cli/test_nonfinite.sh.

    nonfinite_fixture.py make DIR      DIR/base (f32, a NaN in 'bias'),
                                       DIR/a (f32: a NaN and +inf in 'w'),
                                       DIR/b (bf16: a NaN and -inf in 'w'),
                                       DIR/clean (f32, all finite),
                                       DIR/pinf and DIR/ninf (f32: +inf and
                                       -inf at the same element of 'w')
    nonfinite_fixture.py nan-at OUT    the positions where OUT is NaN, one
                                       "tensor index" per line, sorted
    nonfinite_fixture.py nan-bits OUT  the bit patterns of OUT's NaN
                                       elements, "dtype hex" per line, sorted,
                                       each once
    nonfinite_fixture.py poison FILE NAME
                                       make element 0 of tensor NAME of the
                                       safetensors FILE a NaN, in place

The NaN positions of make's models, in the same form as nan-at, are
written to DIR/nan-union.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io as sio  # noqa: E402


def make(d):
    rng = np.random.default_rng(7)
    base = {"w": rng.standard_normal((16, 24)).astype(np.float32),
            "bias": rng.standard_normal(24).astype(np.float32)}
    models = {}
    for name in ("a", "b", "clean", "pinf", "ninf"):
        models[name] = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
                        for k, v in base.items()}
    base["bias"][2] = np.nan
    models["a"]["w"][3, 4] = np.nan
    models["a"]["w"][5, 6] = np.inf
    models["b"]["w"][3, 5] = np.nan
    models["b"]["w"][7, 7] = -np.inf
    models["pinf"]["w"][9, 9] = np.inf
    models["ninf"]["w"][9, 9] = -np.inf
    for name in ("pinf", "ninf"):
        sio.save_model(os.path.join(d, name), models[name], "F32")
    sio.save_model(os.path.join(d, "base"), base, "F32")
    sio.save_model(os.path.join(d, "a"), models["a"], "F32")
    sio.save_model(os.path.join(d, "b"), models["b"], "BF16")
    sio.save_model(os.path.join(d, "clean"), models["clean"], "F32")
    with open(os.path.join(d, "nan-union"), "w") as f:
        f.write("bias 2\nw %d\nw %d\n" % (3 * 24 + 4, 3 * 24 + 5))


def nan_at(out):
    m = sio.load_model(out)
    for name in sorted(m):
        for j in np.flatnonzero(np.isnan(np.asarray(m[name], dtype=np.float32).ravel())):
            print(name, int(j))


def nan_bits(out):
    seen = set()
    for info in sio.model_index(out).values():
        if info.dtype not in ("F32", "BF16", "F16", "F64"):
            continue
        raw = sio.read_raw(info).ravel()
        for j in np.flatnonzero(np.isnan(sio.to_f32(raw, info.dtype).ravel())):
            seen.add("%s %x" % (info.dtype, int(raw.view(np.dtype("u%d" % raw.itemsize))[j])))
    for line in sorted(seen):
        print(line)


def poison(path, name):
    info = sio.read_header(path)[1][name]
    nan = {"F32": b"\x00\x00\xc0\x7f", "BF16": b"\xc0\x7f", "F16": b"\x00\x7e"}[info.dtype]
    with open(path, "r+b") as f:
        f.seek(info.offset)
        f.write(nan)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "nan-at":
        nan_at(sys.argv[2])
    elif cmd == "nan-bits":
        nan_bits(sys.argv[2])
    elif cmd == "poison":
        poison(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: nonfinite_fixture.py make DIR | nan-at OUT | nan-bits OUT | poison FILE NAME")
