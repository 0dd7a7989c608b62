"""Minimal safetensors reader and writer in pure Python + NumPy.

Used by the reference implementation, the check script and the benchmark
scripts. It reads single files, Hugging Face folders (model.safetensors, or
shards listed in model.safetensors.index.json, or any *.safetensors set) and
writes files the way the reference writer does: tensors ordered by dtype
(widest first) then name, compact JSON header padded with spaces to a
multiple of 8, "__metadata__" = {"format": "pt"}.

Float conversions:
  * BF16 -> F32 and F16 -> F32 are exact.
  * F32 -> BF16 and F32 -> F16 round to nearest, ties to even; NaN stays
    NaN, values beyond the largest finite number become +-inf.
  * F64 -> F32 rounds to nearest even (NumPy's cast).
"""

import json
import os
import struct

import numpy as np

# dtype string -> (numpy storage dtype, bytes per element)
STORAGE = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "I64": (np.dtype("<i8"), 8),
    "U64": (np.dtype("<u8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "U32": (np.dtype("<u4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "U16": (np.dtype("<u2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("u1"), 1),
    "F8_E4M3": (np.dtype("u1"), 1),  # codes; fp8_fixture.py decodes them
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
_INT_NAMES = {("i", 8): "I64", ("u", 8): "U64", ("i", 4): "I32", ("u", 4): "U32",
              ("i", 2): "I16", ("u", 2): "U16", ("i", 1): "I8", ("u", 1): "U8"}

# The reference writer orders tensors by dtype, widest first; this is that
# order (first = written first).
_WRITER_ORDER = ["U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16",
                 "U16", "I16", "F8_E5M2FNUZ", "F8_E4M3FNUZ", "F8_E8M0",
                 "F8_E4M3", "F8_E5M2", "I8", "U8", "F6_E3M2", "F6_E2M3", "F4",
                 "BOOL"]
MAX_HEADER = 100_000_000


# --------------------------------------------------------------------------
# conversions

def bf16_bits_to_f32(bits):
    """uint16 array of bf16 bit patterns -> float32 array (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    lsb = (u >> np.uint32(16)) & np.uint32(1)
    r = ((u + np.uint32(0x7FFF) + lsb) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        # keep the sign and the top payload bits, force a quiet NaN
        r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return r


def to_f32(raw, dtype):
    """Storage array in safetensors dtype `dtype` -> float32 array."""
    if dtype == "BF16":
        return bf16_bits_to_f32(raw)
    if dtype in ("F16", "F32", "F64"):
        return raw.astype(np.float32)
    raise ValueError("not a float dtype: %s" % dtype)


def from_f32(x, dtype):
    """float32 array -> storage array of `dtype` (RNE)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "BF16":
        return f32_to_bf16_bits(x)
    if dtype == "F16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16)
    if dtype == "F32":
        return x
    if dtype == "F64":
        return x.astype(np.float64)
    raise ValueError("not a float dtype: %s" % dtype)


def round_f32(x, dtype):
    """float32 array rounded to `dtype` and back to float32."""
    if dtype == "F32":
        return np.asarray(x, dtype=np.float32)
    return to_f32(from_f32(x, dtype), dtype)


# --------------------------------------------------------------------------
# reading

class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "path", "offset", "nbytes")

    def __init__(self, name, dtype, shape, path, offset, nbytes):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)
        self.path, self.offset, self.nbytes = path, offset, nbytes

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


def read_header(path):
    """Return (metadata dict, {name: TensorInfo}) of one safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("%s: file shorter than 8 bytes" % path)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise ValueError("%s: header length %d too large" % (path, n))
        hdr = json.loads(f.read(n).decode("utf-8"))
    meta = hdr.pop("__metadata__", {}) or {}
    infos = {}
    for name, t in hdr.items():
        b, e = t["data_offsets"]
        infos[name] = TensorInfo(name, t["dtype"], t["shape"], path, 8 + n + b, e - b)
    return meta, infos


def model_files(path):
    """Safetensors files of a model given as a file or a folder."""
    if os.path.isfile(path):
        return [path]
    idx = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        return [os.path.join(path, s) for s in sorted(set(wm.values()))]
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return [single]
    files = sorted(os.path.join(path, p) for p in os.listdir(path)
                   if p.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError("%s: no safetensors file" % path)
    return files


def model_index(path):
    """{name: TensorInfo} over all files of a model."""
    infos = {}
    for f in model_files(path):
        _, part = read_header(f)
        for k, v in part.items():
            if k in infos:
                raise ValueError("%s: tensor %r in two files" % (path, k))
            infos[k] = v
    return infos


def read_raw(info):
    """Storage array (numpy, shaped) of one tensor."""
    dt, _ = STORAGE[info.dtype]
    with open(info.path, "rb") as f:
        f.seek(info.offset)
        buf = f.read(info.nbytes)
    if len(buf) != info.nbytes:
        raise ValueError("%s: tensor %r truncated" % (info.path, info.name))
    return np.frombuffer(buf, dtype=dt).reshape(info.shape)


def read_f32(info):
    return to_f32(read_raw(info), info.dtype).reshape(info.shape)


def load_model(path, floats_only=True):
    """{name: float32 array} of every floating tensor of a model."""
    out = {}
    for name, info in model_index(path).items():
        if info.dtype in FLOAT_DTYPES:
            out[name] = read_f32(info)
        elif not floats_only:
            out[name] = read_raw(info)
    return out


# --------------------------------------------------------------------------
# writing

def _writer_key(item):
    name, dtype = item[0], item[1]
    return (_WRITER_ORDER.index(dtype), name.encode("utf-8"))


def build_header(specs, metadata=None):
    """specs: list of (name, dtype, shape). Returns (header bytes incl. the
    8-byte length, ordered specs with their byte offsets)."""
    if metadata is None:
        metadata = {"format": "pt"}
    ordered = sorted(specs, key=_writer_key)
    hdr = {"__metadata__": metadata} if metadata else {}
    off = 0
    placed = []
    for name, dtype, shape in ordered:
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        n = 1
        for s in shape:
            n *= s
        nbytes = n * STORAGE[dtype][1]
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nbytes]}
        placed.append((name, dtype, tuple(shape), off, nbytes))
        off += nbytes
    text = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, placed


class StreamWriter:
    """Write one safetensors file whose tensor list is known in advance;
    tensors may be given in any order (each lands at its planned offset)."""

    def __init__(self, path, specs, metadata=None):
        self.header, placed = build_header(specs, metadata)
        self.slots = {p[0]: p for p in placed}
        self.path = path
        self.f = open(path, "wb")
        self.f.write(self.header)
        total = len(self.header) + sum(p[4] for p in placed)
        self.f.truncate(total)
        self.done = set()

    def write(self, name, storage_array):
        _, dtype, shape, off, nbytes = self.slots[name]
        a = np.ascontiguousarray(storage_array, dtype=STORAGE[dtype][0])
        if a.nbytes != nbytes:
            raise ValueError("tensor %r: %d bytes, expected %d" % (name, a.nbytes, nbytes))
        self.f.seek(len(self.header) + off)
        self.f.write(memoryview(a.reshape(-1)).cast("B"))
        self.done.add(name)

    def close(self):
        missing = set(self.slots) - self.done
        self.f.close()
        if missing:
            raise ValueError("%s: tensors never written: %s" % (self.path, sorted(missing)[:5]))


def save_file(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: array}. Float arrays are written in `dtype` (or a
    per-tensor dtype given as {name: (array, dtype)}); integer arrays keep
    their own dtype."""
    items = {}
    for name, v in tensors.items():
        if isinstance(v, tuple):
            arr, dt = v
        else:
            arr, dt = v, dtype
        arr = np.asarray(arr)
        if arr.dtype.kind == "f":
            items[name] = (from_f32(arr, dt) if dt != "F64" else arr.astype(np.float64), dt)
        elif arr.dtype == np.bool_:
            items[name] = (arr.astype(np.uint8), "BOOL")
        else:
            items[name] = (arr, _INT_NAMES[(arr.dtype.kind, arr.dtype.itemsize)])
    specs = [(n, dt, a.shape) for n, (a, dt) in items.items()]
    w = StreamWriter(path, specs, metadata)
    for n, (a, dt) in items.items():
        w.write(n, a)
    w.close()


def plan_shards(specs, max_bytes):
    """Split (name, dtype, shape) specs, in the given order, into shards the
    way huggingface_hub does: greedy, a new shard when the next tensor would
    pass max_bytes, an oversized tensor alone. Returns a list of spec lists."""
    shards, cur, size = [], [], 0
    for spec in specs:
        n = STORAGE[spec[1]][1]
        for s in spec[2]:
            n *= s
        if cur and size + n > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(spec)
        size += n
    if cur:
        shards.append(cur)
    return shards


def shard_names(count):
    if count == 1:
        return ["model.safetensors"]
    return ["model-%05d-of-%05d.safetensors" % (i + 1, count) for i in range(count)]


def write_index(folder, shards, names):
    wm, total = {}, 0
    for specs, fname in zip(shards, names):
        for name, dtype, shape in specs:
            n = STORAGE[dtype][1]
            for s in shape:
                n *= s
            total += n
            wm[name] = fname
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": wm},
                           indent=2, sort_keys=True) + "\n")


def save_model(folder, tensors, dtype="F32", shard_bytes=0, order=None):
    """Write {name: float32 array} as a Hugging Face folder; shard_bytes 0
    means one file. `order` is the state-dict order used for sharding."""
    os.makedirs(folder, exist_ok=True)
    order = order or list(tensors)
    specs = [(n, dtype, tuple(np.shape(tensors[n]))) for n in order]
    shards = plan_shards(specs, shard_bytes) if shard_bytes else [specs]
    names = shard_names(len(shards))
    for sp, fname in zip(shards, names):
        save_file(os.path.join(folder, fname), {n: tensors[n] for n, _, _ in sp}, dtype)
    if len(shards) > 1:
        write_index(folder, shards, names)
