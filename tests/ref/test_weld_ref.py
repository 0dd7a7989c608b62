#!/usr/bin/python3
"""Self-test of the reference implementation (weld_ref.py) and the
safetensors helper on small hand-computed cases.

Run: /usr/bin/python3 tests/ref/test_weld_ref.py
Prints one line per test and `N passed, M failed`; exits 1 on a failure.
"""

import ctypes
import ctypes.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, HERE)
import safetensors_io as stio  # noqa: E402
import weld_ref as R  # noqa: E402

F32 = np.float32
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def close(a, b, tol=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.all(np.abs(a - b) <= tol), "got %s, expected %s" % (a.tolist(), b.tolist())


def family(base, *deltas):
    """Base dict and model dicts X_i = B + delta_i, all float32 exactly."""
    b = {k: np.asarray(v, F32) for k, v in base.items()}
    return b, [{k: (b[k] + np.asarray(d[k], F32)).astype(F32) for k in d} for d in deltas]


# the task vectors of algorithms.md 4.3 (3 models, 10 entries)
T1 = [0.5, -0.1, 0.05, 0.9, -0.7, 0.02, 0.3, -0.01, 0.0, 0.2]
T2 = [-0.4, 0.2, 0.06, 0.8, 0.6, -0.03, -0.35, 0.04, 0.1, -0.05]
T3 = [0.3, -0.25, -0.07, -0.2, 0.65, 0.01, 0.0, 0.5, -0.45, 0.15]


def toy():
    return family({"t": np.zeros(10)}, {"t": T1}, {"t": T2}, {"t": T3})


# ---------------------------------------------------------------------------
# hashing and randomness

# XXH64 values printed by Debian's `xxhsum -H1` (xxHash 0.8.1) for these inputs
XXH64_KNOWN = [
    (b"", 0xef46db3751d8e999),
    (b"a", 0xd24ec4f1a98c6e5b),
    (b"abc", 0x44bc2cf5ad770999),
    (b"model.layers.0.self_attn.q_proj.weight", 0x076c90217961a060),
    (bytes(range(200)), 0x50dc1079b99e879c),
]


@test
def xxh64_known_answers():
    for data, h in XXH64_KNOWN:
        assert R.xxh64(data, 0) == h, (data[:20], hex(R.xxh64(data, 0)), hex(h))


@test
def xxh64_against_xxhsum():
    exe = shutil.which("xxhsum")
    if not exe:
        return "skipped: xxhsum not installed (apt-get install -y xxhash)"
    rnd = np.random.default_rng(7)
    for n in (1, 3, 4, 7, 8, 15, 31, 32, 33, 63, 64, 65, 100, 257):
        data = rnd.integers(0, 256, n, dtype=np.uint8).tobytes()
        out = subprocess.run([exe, "-H1", "-"], input=data, capture_output=True, check=True)
        assert int(out.stdout.split()[0], 16) == R.xxh64(data, 0), n


@test
def xxh64_seeded_against_libxxhash():
    name = ctypes.util.find_library("xxhash")
    if not name:
        return "skipped: libxxhash not found"
    lib = ctypes.CDLL(name)
    lib.XXH64.restype = ctypes.c_uint64
    lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    rnd = np.random.default_rng(8)
    for n in (0, 1, 5, 9, 31, 32, 47, 96, 131):
        data = rnd.integers(0, 256, n, dtype=np.uint8).tobytes()
        for seed in (0, 1, 12345, 2 ** 63, 2 ** 64 - 1):
            assert R.xxh64(data, seed) == lib.XXH64(data, n, seed), (n, seed)


@test
def splitmix64_standard_outputs():
    # the first three outputs of the sequential splitmix64 generator seeded
    # with 0 are mix(golden), mix(2 golden), mix(3 golden)
    g = R.GOLDEN
    assert R.splitmix64(0) == 0xE220A8397B1DCDAF
    assert R.splitmix64(g) == 0x6E789E6AA1B965F4
    assert R.splitmix64((2 * g) & R.M64) == 0x06C45D188009454F


@test
def rng_vectorised_equals_scalar():
    for name, seed, i in (("a.weight", 0, 1), ("model.layers.3.mlp.up_proj.weight", 42, 3),
                          ("x", 2 ** 64 - 1, 2)):
        key = R.xxh64(name.encode(), seed) ^ ((R.GOLDEN * i) & R.M64)
        assert key == R.rng_key(name, seed, i)
        u = R.rng_uniform(name, seed, i, 300)
        for j in (0, 1, 2, 99, 299):
            z = R.splitmix64((key + j) & R.M64)
            assert u[j] == (z >> 11) * 2.0 ** -53, (name, j)


@test
def dare_keep_rate_and_independence():
    n = 200000
    k1 = R.dare_keep("w", 0, 1, (n,), 0.3)
    k2 = R.dare_keep("w", 0, 2, (n,), 0.3)
    k3 = R.dare_keep("w", 1, 1, (n,), 0.3)
    k4 = R.dare_keep("v", 0, 1, (n,), 0.3)
    sd = (0.3 * 0.7 / n) ** 0.5
    for k in (k1, k2, k3, k4):
        assert abs(k.mean() - 0.3) < 6 * sd, k.mean()
    for other in (k2, k3, k4):
        both = (k1 & other).mean()
        assert abs(both - 0.09) < 6 * (0.09 * 0.91 / n) ** 0.5, both
    assert R.dare_keep("w", 0, 1, (1000,), 1.0).all()
    assert np.array_equal(R.dare_keep("w", 0, 1, (4, 5), 0.5).reshape(-1),
                          R.dare_keep("w", 0, 1, (20,), 0.5))


# ---------------------------------------------------------------------------
# top-k selection (DESIGN 4.1)

@test
def topk_exact_count_lowest_position_wins():
    d = {"t": np.array([0.5, -0.5, 0.5, 0.25, -0.5, 0.75], F32)}
    m = R.topk_masks(d, "tensor", 0.5)["t"]        # k = 3: 0.75, then 0.5 at 0, 1
    assert m.tolist() == [True, True, False, False, False, True]
    m = R.topk_masks(d, "tensor", 0.34)["t"]       # k = floor(2.04) = 2
    assert m.tolist() == [True, False, False, False, False, True]
    assert not R.topk_masks(d, "tensor", 0.1)["t"].any()   # k = 0
    assert R.topk_masks(d, "tensor", 1.0)["t"].all()


@test
def topk_row_scope():
    d = {"w": np.array([[1, -3, 3], [2, 2, 2], [0, 0, 0]], F32),
         "b": np.array([1, 2, 3, 4], F32)}
    m = R.topk_masks(d, "row", 0.34)               # k = 1 per row of 3; 1-D = one row
    assert m["w"].tolist() == [[False, True, False], [True, False, False], [True, False, False]]
    assert m["b"].tolist() == [False, False, False, True]     # k = floor(1.36) = 1


@test
def topk_model_scope_uses_name_order():
    # inserted b before a: the concatenation must still be a, then b
    d = {"b": np.array([0.5, 0.5], F32), "a": np.array([0.5, 0.1], F32)}
    m = R.topk_masks(d, "model", 0.5)              # m = 4, k = 2: a[0], b[0]
    assert m["a"].tolist() == [True, False] and m["b"].tolist() == [True, False]
    m = R.topk_masks(d, "model", 0.75)             # k = 3: a[0], b[0], b[1]
    assert m["a"].tolist() == [True, False] and m["b"].tolist() == [True, True]


@test
def count_floor_is_double_precision():
    assert R.count_floor(0.29, 100) == 28          # 0.29 * 100 = 28.999999999999996
    assert R.count_floor(0.3, 10) == 3
    assert R.count_floor(1.0, 7) == 7 and R.count_floor(0.01, 99) == 0


# ---------------------------------------------------------------------------
# methods

@test
def average_weights_and_normalize():
    a = {"x": np.array([1.0, 2.0], F32)}
    b = {"x": np.array([3.0, -2.0], F32)}
    close(R.average([a, b])["x"], [2.0, 0.0])
    close(R.average([a, b], [1, 3])["x"], [2.5, -1.0])
    close(R.average([a, b], [1, 3], normalize=False)["x"], [10.0, -4.0])
    try:
        R.average([a, b], [1, -1])
    except R.RefError:
        pass
    else:
        raise AssertionError("zero weight sum accepted")


@test
def task_arithmetic_lambda_and_normalize():
    base, ms = family({"x": [1.0, 1.0]}, {"x": [0.5, -0.25]}, {"x": [0.25, 0.25]})
    close(R.task_arithmetic(base, ms)["x"], [1.75, 1.0])
    close(R.task_arithmetic(base, ms, [2, 1], lam=0.5)["x"], [1.625, 0.875])
    close(R.task_arithmetic(base, ms, [2, 1], normalize=True)["x"], [1.0 + 1.25 / 3, 1.0 - 0.25 / 3])
    close(R.task_arithmetic(base, ms, [1, -1], normalize=True)["x"], [1.25, 0.5])  # |sum w| < 1e-8


@test
def ties_toy_density_0_2():
    # k = floor(0.2 * 10) = 2 per model: t1 {0.9, -0.7}, t2 {0.8, 0.6}, t3 {0.65, 0.5}
    base, ms = toy()
    close(R.ties(base, ms, density=0.2)["t"], [0, 0, 0, 0.85, 0.625, 0, 0, 0.5, 0, 0])


@test
def ties_toy_density_0_3():
    # k = 3: t1 {0.5, 0.9, -0.7}, t2 {-0.4, 0.8, 0.6}, t3 {0.65, 0.5, -0.45}
    # (the algorithms.md toy result: the reference code keeps int(D*K)+1 = 3 at K = 20 %)
    base, ms = toy()
    exp = [0.5, 0, 0, 0.85, 0.625, 0, 0, 0.5, -0.45, 0]
    close(R.ties(base, ms, density=0.3)["t"], exp)
    close(R.ties(base, ms, density=0.3, normalize=False)["t"], [0.5, 0, 0, 1.7, 1.25, 0, 0, 0.5, -0.45, 0])
    close(R.ties(base, ms, density=0.3, lam=2.0)["t"], 2 * np.array(exp))


@test
def ties_sign_count_and_weights():
    base, ms = family({"t": [0.0, 0.0]},
                      {"t": [1.0, 0.25]}, {"t": [-0.25, -0.5]}, {"t": [-0.25, 1.0]})
    # sum: +0.5 -> +1 ; count: -1 -> -1 (element 0); element 1 sum 0.75 count +1
    close(R.ties(base, ms, density=1.0)["t"], [1.0, 0.625])
    close(R.ties(base, ms, density=1.0, sign="count")["t"], [-0.25, 0.625])
    # weights 1, 4, 4: element 0 sum = 1 - 1 - 1 < 0 -> negative models, (w*d)/(w) = -0.25
    close(R.ties(base, ms, [1, 4, 4], density=1.0)["t"], [-0.25, (0.25 + 4.0) / 5])
    # an exact zero never agrees, a zero sum elects +
    base, ms = family({"t": [0.0]}, {"t": [0.5]}, {"t": [-0.5]}, {"t": [0.0]})
    close(R.ties(base, ms, density=1.0)["t"], [0.5])


@test
def ties_per_model_density_and_scope_model():
    base, ms = family({"a": [0.0, 0.0], "b": [0.0, 0.0]},
                      {"a": [0.5, 0.1], "b": [0.5, 0.5]},
                      {"a": [0.2, 0.3], "b": [0.1, 0.4]})
    # model 1 density 0.5 over the model (a then b): k = 2 -> a[0], b[0];
    # model 2 density 0.25: k = 1 -> b[1]
    out = R.ties(base, ms, density=[0.5, 0.25], scope="model")
    close(out["a"], [0.5, 0.0])
    close(out["b"], [0.5, 0.4])


@test
def dare_inverse_and_l1_rescale():
    name = "w"
    base, ms = family({name: np.zeros(40)}, {name: np.linspace(0.05, 2.0, 40)})
    d = 0.4
    keep = np.array([R.splitmix64((R.rng_key(name, 5, 1) + j) & R.M64) >> 11 for j in range(40)],
                    dtype=np.float64) * 2.0 ** -53 < d
    delta = ms[0][name]
    close(R.dare(base, ms, density=d, seed=5)[name], np.where(keep, delta / F32(d), 0), 1e-6)
    fac = float(np.abs(delta.astype(np.float64)).sum() / np.abs(delta[keep].astype(np.float64)).sum())
    close(R.dare(base, ms, density=d, seed=5, rescale="l1")[name], np.where(keep, delta * fac, 0), 1e-5)
    close(R.dare(base, ms, density=d, seed=5, rescale="none")[name], np.where(keep, delta, 0))
    # density 1 keeps everything unchanged
    close(R.dare(base, ms, density=1.0)[name], delta)


@test
def dare_combine_ties_and_trim():
    base, ms = toy()
    # density 1 drops nothing: combine ties = election + disjoint sum, no trimming
    out = R.dare(base, ms, density=1.0, combine="ties")["t"]
    s = np.where(np.sum([T1, T2, T3], axis=0) >= 0, 1, -1)
    exp = sum(np.where(np.sign(t) == s, t, 0) for t in (np.array(T1), np.array(T2), np.array(T3)))
    close(out, exp)
    # with --trim 0.3 it is TIES at density 0.3 without normalisation
    close(R.dare(base, ms, density=1.0, combine="ties", trim=0.3)["t"],
          R.ties(base, ms, density=0.3, normalize=False)["t"])


@test
def breadcrumbs_toy_row():
    # algorithms.md 6.3: remove the top 1, keep the next 3
    base, ms = family({"t": np.zeros(10)}, {"t": T1})
    exp = [0.5, 0, 0, 0, -0.7, 0, 0.3, 0, 0, 0]
    for scope in ("row", "tensor", "model"):
        close(R.breadcrumbs(base, ms, density=0.3, gamma=0.1, scope=scope)["t"], exp)


@test
def breadcrumbs_clamp_and_gamma_zero():
    base, ms = family({"t": np.zeros(10)}, {"t": T1})
    # n_keep = 9, n_top = 2 -> 11 > 10 -> n_top = 1: everything but 0.9
    exp = np.array(T1, F32)
    exp[3] = 0
    close(R.breadcrumbs(base, ms, density=0.95, gamma=0.2)["t"], exp)
    # gamma 0 (n_top = 0) keeps the top n_keep; weld does not zero the tensor
    close(R.breadcrumbs(base, ms, density=0.2, gamma=0.0)["t"], [0, 0, 0, 0.9, -0.7, 0, 0, 0, 0, 0])


@test
def consensus_toy_masks():
    # algorithms.md 7.3 at lambda 0.4: masks t1 1111111001, t2 1111111000,
    # t3 1110110111; consensus k = 2 -> 1111111001
    base, ms = toy()
    tau, _ = R.consensus_tau(base, ms)
    close(tau["t"], [0.4, -0.15, 0.04, 1.5, 0.55, 0, -0.05, 0.53, -0.35, 0.3])
    masks = R.tall_masks(base, ms, tau, 0.4)
    got = ["".join("1" if v else "0" for v in m["t"]) for m in masks]
    assert got == ["1111111001", "1111111000", "1110110111"], got
    keep = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1], bool)
    close(R.consensus(base, ms, mask_lambda=0.4, k=2)["t"], np.where(keep, tau["t"], 0))
    # k = 3 keeps where all three agree: 1110110000
    keep3 = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    close(R.consensus(base, ms, mask_lambda=0.4, k=3, lam=0.5)["t"], 0.5 * np.where(keep3, tau["t"], 0))
    # per-model lambdas: a huge lambda for model 3 empties its mask
    m = R.tall_masks(base, ms, tau, [0.4, 0.4, 1e9])
    assert not m[2]["t"].any()


@test
def consensus_from_ties_is_disjoint_sum():
    base, ms = toy()
    tau, _ = R.consensus_tau(base, ms, source="ties", density=0.3)
    close(tau["t"], [0.5, 0, 0, 1.7, 1.25, 0, 0, 0.5, -0.45, 0])


@test
def cli_parse_and_model_options():
    a = R.parse_args(["ties", "--base", "B", "-o", "O", "--density", "0.3,0.4",
                      "--scope=row", "A:weight=0.5,density=0.7", "C", "./x:y"])
    assert a["models"] == ["A", "C", "./x:y"] and a["scope"] == "row"
    assert a["model_opts"][0] == {"weight": 0.5, "density": 0.7}
    a["density"] = "0.3"
    assert R._model_values(a, "density", "density", 0.2) == [0.7, 0.3, 0.3]


# ---------------------------------------------------------------------------
# safetensors helper

@test
def bf16_round_to_nearest_even():
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5,
                  3.4028235e38, np.inf, -np.inf, 1e-40, -0.0], F32)
    b = stio.f32_to_bf16_bits(x)
    assert b.tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020, 0x7F80, 0x7F80, 0xFF80,
                          0x0001, 0x8000], [hex(v) for v in b]
    nan = stio.f32_to_bf16_bits(np.array([np.nan, -np.nan], F32))
    assert np.isnan(stio.bf16_bits_to_f32(nan)).all()
    # a NaN whose payload sits only in the low 16 bits must stay NaN
    low = np.array([0x7F800001], np.uint32).view(F32)
    assert np.isnan(stio.bf16_bits_to_f32(stio.f32_to_bf16_bits(low)))[0]
    try:
        import torch
    except ImportError:
        return None
    r = np.random.default_rng(3).standard_normal(100000).astype(F32) * 10.0 ** np.random.default_rng(4).integers(-30, 30, 100000)
    r = r.astype(F32)
    t = torch.from_numpy(r).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(t, stio.f32_to_bf16_bits(r))


@test
def f16_round_to_nearest_even():
    x = np.array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504.0, 65520.0, 1e6, -1e6], F32)
    h = stio.from_f32(x, "F16").view(np.uint16)
    assert h.tolist() == [0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x7C00, 0xFC00], [hex(v) for v in h]


@test
def safetensors_round_trip_and_layout():
    tmp = tempfile.mkdtemp()
    try:
        p = os.path.join(tmp, "m.safetensors")
        t = {"b.weight": np.arange(6, dtype=F32).reshape(2, 3) / 3,
             "a.bias": np.array([0.5, -1.25], F32),
             "ids": np.array([1, 2, 3], np.int64)}
        stio.save_file(p, {"b.weight": (t["b.weight"], "BF16"), "a.bias": (t["a.bias"], "F32"),
                           "ids": t["ids"]})
        with open(p, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        assert n % 8 == 0 and raw[8:9] == b"{"
        hdr = raw[8:8 + n].decode()
        # writer order: I64, F32, BF16 (widest first); metadata first
        assert hdr.index("__metadata__") < hdr.index('"ids"') < hdr.index('"a.bias"') < hdr.index('"b.weight"')
        m = stio.load_model(p, floats_only=False)
        assert m["ids"].tolist() == [1, 2, 3]
        close(m["a.bias"], t["a.bias"], 0)
        close(m["b.weight"], stio.round_f32(t["b.weight"], "BF16"), 0)
        assert len(raw) == 8 + n + 3 * 8 + 2 * 4 + 6 * 2
        # a sharded folder reads back the same
        big = {"x.%d" % i: np.full((100,), i, F32) for i in range(5)}
        folder = os.path.join(tmp, "sh")
        stio.save_model(folder, big, "F32", shard_bytes=900)
        files = sorted(os.listdir(folder))
        assert "model.safetensors.index.json" in files and "model-00001-of-00003.safetensors" in files, files
        back = stio.load_model(folder)
        assert sorted(back) == sorted(big) and all(np.array_equal(back[k], big[k]) for k in big)
    finally:
        shutil.rmtree(tmp)


@test
def run_reads_a_family_from_disk():
    tmp = tempfile.mkdtemp()
    try:
        base, ms = toy()
        paths = []
        for i, m in enumerate([base] + ms):
            p = os.path.join(tmp, "m%d" % i)
            stio.save_model(p, m, "F32")
            paths.append(p)
        out, bound = R.run(["ties", "--base", paths[0], "--density", "0.3", "-o", "x"] + paths[1:])
        close(out["t"], [0.5, 0, 0, 0.85, 0.625, 0, 0, 0.5, -0.45, 0])
        assert bound["t"].shape == (10,) and (bound["t"] >= np.abs(out["t"])).all()
        rc = R.main(["average", "-o", os.path.join(tmp, "o"), "--dtype", "bf16"] + paths[1:])
        assert rc == 0
        info = stio.model_index(os.path.join(tmp, "o"))
        assert info["t"].dtype == "BF16"
    finally:
        shutil.rmtree(tmp)


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            note = fn()
        except Exception:
            failed += 1
            print("FAIL %s" % fn.__name__)
            traceback.print_exc(limit=3, file=sys.stdout)
            continue
        passed += 1
        print("ok   %s%s" % (fn.__name__, (" (%s)" % note) if note else ""))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
