#!/usr/bin/python3
"""Models whose task vectors are full of ties, for tests/cli/test_parts.sh.

    parts_fixture.py DIR      DIR/base, DIR/a, DIR/b, DIR/c (f32, 13 tensors, one of them larger than a chunk of --max-memory 16M)

The base is zero and each model's values are small integers, so that a
top-k selection over the whole model (--scope model) has a threshold that
many elements equal: only some of them are kept, and which ones depends on
their position over the whole model, tensors of other parts included.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io as sio  # noqa: E402


def main(d):
    rng = np.random.default_rng(16)
    shapes = {f"layers.{i}.w": (24, 40) for i in range(10)}
    shapes["embed.weight"] = (50, 24)
    shapes["norm.weight"] = (24,)
    shapes["big.weight"] = (600, 400)
    sio.save_model(os.path.join(d, "base"),
                   {k: np.zeros(s, np.float32) for k, s in shapes.items()})
    for name in ("a", "b", "c"):
        sio.save_model(os.path.join(d, name),
                       {k: rng.integers(-3, 4, s).astype(np.float32) for k, s in shapes.items()})


if __name__ == "__main__":
    main(sys.argv[1])
