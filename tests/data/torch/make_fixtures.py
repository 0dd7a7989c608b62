#!/usr/bin/python3
"""Write the PyTorch checkpoints that tests/unit/test_torch.c reads.

Run from anywhere with Debian's python3-torch (torch 1.13):
    /usr/bin/python3 tests/data/torch/make_fixtures.py
It rewrites, next to itself:
  <name>.bin / .pt   checkpoints made by torch.save (and one torch.jit.save)
  <name>.json        what torch says each tensor holds: dtype, shape, and
                     the values in C order (floats exact, as JSON numbers)
  sharded/           pytorch_model-0000k-of-00002.bin + the index
and the fuzzer's seed corpus tests/fuzz/corpus_pickle/<name>.pkl (each
checkpoint's data.pkl). Values are small integers or dyadic fractions so
that every dtype holds them exactly and the files stay a few KB.
"""
import collections
import io
import json
import os
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus_pickle")

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def seq(n, scale=0.25, start=-1.0):
    """n values start, start+scale, ... (exact in every float dtype)."""
    return torch.arange(n, dtype=torch.float64) * scale + start


def expected(sd):
    """Flatten sd the way weld names tensors, with torch's view of values."""
    out = collections.OrderedDict()

    def walk(prefix, d):
        for k, v in d.items():
            name = prefix + k
            if isinstance(v, dict):
                walk(name + ".", v)
                continue
            vals = v.detach().reshape(-1)
            if v.dtype == torch.bool:
                vals = [int(x) for x in vals.tolist()]
            elif v.dtype.is_floating_point:
                vals = [float(x) for x in vals.double().tolist()]
            else:
                vals = [int(x) for x in vals.tolist()]
            out[name] = {"dtype": DTYPES[v.dtype], "shape": list(v.shape),
                         "contiguous": v.is_contiguous(), "values": vals}

    walk("", sd)
    return out


def write_json(name, tensors):
    # One tensor a line: short files, readable diffs.
    lines = ["  %s: %s" % (json.dumps(k), json.dumps(v, separators=(",", ":")))
             for k, v in tensors.items()]
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        f.write('{"tensors": {\n' + ",\n".join(lines) + "\n}}\n")


def save_corpus(path, name):
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        with open(os.path.join(CORPUS, name + ".pkl"), "wb") as f:
            f.write(z.read(pkl))


def save(name, sd, weights=None, to_buffer=False, **kw):
    """torch.save sd as <name>.bin; `weights` is what weld should list."""
    path = os.path.join(HERE, name + ".bin")
    if to_buffer:
        # Saved through a file object: the zip prefix is "archive".
        buf = io.BytesIO()
        torch.save(sd, buf, **kw)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
    else:
        # Saved by path: the prefix is the file name's stem.
        torch.save(sd, path, **kw)
    write_json(name, expected(weights if weights is not None else sd))
    save_corpus(path, name)


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3, 4))
        self.bias = torch.nn.Parameter(torch.zeros(3))


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = Mlp()


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([Layer()])
        self.norm = torch.nn.LayerNorm(4)
        self.register_buffer("position_ids", torch.zeros(1, 5, dtype=torch.int64))
        self.register_buffer("scale", torch.zeros(()))


class Top(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = Model()
        self.bn = torch.nn.BatchNorm1d(2)


def basic():
    """A module's state_dict (OrderedDict with _metadata, BUILD) in f32,
    f16, bf16, int64, with 0-d tensors and nested names."""
    sd = Top().state_dict()
    sd["model.layers.0.mlp.weight"] = seq(12).reshape(3, 4).float()
    sd["model.layers.0.mlp.bias"] = seq(3, 0.5).half()
    sd["model.norm.weight"] = seq(4, 0.125, 1.0).bfloat16()
    sd["model.norm.bias"] = seq(4, -0.5, 0.0).double()
    sd["model.position_ids"] = torch.arange(5, dtype=torch.int64).reshape(1, 5) - 2
    sd["model.scale"] = torch.tensor(2.5)
    sd["bn.weight"] = torch.tensor([1.0, 2.0])
    sd["bn.bias"] = torch.tensor([0.0, -1.0])
    sd["bn.running_mean"] = torch.tensor([0.5, 0.25])
    sd["bn.running_var"] = torch.tensor([1.0, 4.0])
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    assert hasattr(sd, "_metadata")
    save("basic", sd)


def views():
    """Tensors viewing each other's storage, saved to a buffer."""
    base = seq(12).reshape(3, 4).float()
    big = seq(24, 0.5, -4.0).reshape(2, 3, 4).float()
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["transposed"] = base.t()                  # stride (1, 4)
    sd["row"] = base[1]                          # storage_offset 4
    sd["column"] = base[:, 2]                    # offset 2, stride (4,)
    sd["tied"] = base                            # same tensor twice
    sd["permuted"] = big.permute(2, 0, 1)        # 3-d, non-contiguous
    sd["slice"] = big[1, 1:, ::2]                # offset 16, stride (4, 2)
    sd["expanded"] = torch.tensor([3.0, -3.0]).reshape(2, 1).expand(2, 3)  # stride 0
    sd["empty"] = torch.zeros(0, 4)
    sd["f16_t"] = seq(6, 0.5).half().reshape(2, 3).t()
    save("views", sd, to_buffer=True)


def wrapped():
    """A training checkpoint: weights under 'state_dict' beside the
    optimizer state (which holds a tensor weld must ignore)."""
    weights = collections.OrderedDict()
    weights["encoder.weight"] = seq(6).reshape(2, 3).float()
    weights["encoder.bias"] = torch.tensor([1, -1], dtype=torch.int32)
    ckpt = {
        "epoch": 3,
        "lr": 0.001,
        "name": "run-7",
        "state_dict": weights,
        "optimizer": {"state": {0: {"step": 4, "exp_avg": torch.ones(2)}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999),
                                        "params": [0, 1], "amsgrad": False}]},
    }
    save("wrapped", ckpt, weights=weights)


def nested():
    """Plain nested dicts: names are the keys joined with '.'."""
    sd = {
        "transformer": {"h": {"0": {"attn": {"weight": seq(4).reshape(2, 2).float()},
                                    "ln": {"bias": torch.tensor([0.5, 1.5])}}}},
        "lm_head.weight": torch.tensor([[1.0, 2.0]]).half(),
        "flags": torch.tensor([True, False, True]),
        "small": torch.tensor([-3, 0, 7], dtype=torch.int8),
    }
    save("nested", sd)


def proto4():
    """pickle protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL."""
    sd = collections.OrderedDict()
    sd["a"] = seq(5).float()
    sd["b"] = seq(6).reshape(3, 2).bfloat16().t()
    save("proto4", sd, pickle_protocol=4)


def params():
    """nn.Parameter values go through torch._utils._rebuild_parameter."""
    lin = torch.nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(seq(6).reshape(3, 2))
        lin.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    sd = collections.OrderedDict(lin.named_parameters())
    save("params", sd)


def sharded():
    """The Hugging Face layout of a two-shard .bin checkpoint."""
    d = os.path.join(HERE, "sharded")
    os.makedirs(d, exist_ok=True)
    shards = [
        collections.OrderedDict([("model.embed.weight", seq(8).reshape(4, 2).float()),
                                 ("model.layers.0.weight", seq(4, 1.0).reshape(2, 2).float())]),
        collections.OrderedDict([("model.layers.1.weight", seq(4, -1.0).reshape(2, 2).float()),
                                 ("lm_head.weight", seq(8, 0.5).reshape(4, 2).half())]),
    ]
    weight_map, total, everything = {}, 0, collections.OrderedDict()
    for i, sd in enumerate(shards):
        fname = "pytorch_model-%05d-of-%05d.bin" % (i + 1, len(shards))
        torch.save(sd, os.path.join(d, fname))
        for k, v in sd.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
            everything[k] = v
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                  indent=2, sort_keys=True)
        f.write("\n")
    write_json("sharded", expected(everything))


def refused():
    """Files weld must refuse with a clear message. Unlike the others, these
    two differ from run to run (legacy keys are object ids, TorchScript
    records carry random names); only their refusal is tested."""
    sd = collections.OrderedDict(w=torch.ones(2))
    torch.save(sd, os.path.join(HERE, "legacy.bin"), _use_new_zipfile_serialization=False)
    script = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(script, os.path.join(HERE, "torchscript.pt"))


def main():
    torch.manual_seed(0)
    os.makedirs(CORPUS, exist_ok=True)
    basic()
    views()
    wrapped()
    nested()
    proto4()
    params()
    sharded()
    refused()


if __name__ == "__main__":
    main()
