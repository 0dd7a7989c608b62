#!/usr/bin/python3
"""Reference implementation of weld's merge methods in NumPy.

Written from DESIGN.md sections 3 (numerics), 4.1-4.7 (methods) and 4.9
(randomness), independently of weld's C code, so that weld's output can be
checked against it. Models are dicts {tensor name: float32 array}; the base
is one such dict, the models a list of them in command-line order.

Arithmetic follows DESIGN section 3:
  * inputs are converted exactly to float32 (F64 with round-to-nearest-even);
  * the task vector delta_i = X_i - B is a float32 subtraction;
  * per-element sums over models are float32 additions in model order,
    starting with model 1; weights, densities and lambdas are rounded to
    float32 before they multiply float32 values;
  * norms (the L1 sums of --rescale l1) are accumulated in float64;
  * counts k = floor(d * m) are computed in double precision.

Comparison tolerance. weld and this file evaluate the same formulas, but a
correct implementation may associate them differently (multiply by 1/d
instead of dividing by d, fold lambda or 1/sum(w) into the weights, sum the
weights in double, ...). For such formulas of at most ~n + 6 float32
operations (n <= 4 models), first-order rounding analysis bounds the
difference between two evaluation orders by about (n + 6) * u * M, where
u = 2^-24 and M is the magnitude of the computation at that element,
    M = |B| + |lambda| * (sum_i |w_i delta_i| / |div| + |tau| * sum_i |w_i m_i| / |div|)
(div = the normalising divisor, 1 when there is none; for `average`, X_i
takes the place of delta_i and B is 0). Each method returns M along with the
result when asked (with_bound=True) and TOL_ULPS * u * M is the tolerance the
check script uses: TOL_ULPS = 16 leaves a margin of about 1.6 over that
bound. Any semantic slip (an element kept that should be dropped, a wrong
sign election, a wrong rescale factor) moves an element by at least
min |w_i delta_i| / |div|, which in the generated test families is 1e-3 or
more, three orders of magnitude above 16 * u * M (about 3e-6 for M = 3).
Discrete decisions (top-k, signs, DARE keep bits, TALL masks) are therefore
checked exactly through their effect on the values.

As a command, it takes weld's merge syntax and writes model.safetensors:
    weld_ref.py ties --base B -o OUT --density 0.3 --scope row --dtype f32 A C D
(methods average, task-arithmetic, ties, dare, breadcrumbs, consensus; the
options of DESIGN 2 and 4, MODEL:weight=W,density=D; options that only
affect speed, such as -j or --max-memory, are accepted and ignored). It holds
every model in memory: it is meant for small test models.
"""

import math
import os
import re
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
    sys.path.insert(0, HERE)
import safetensors_io as stio  # noqa: E402
import ref_rank  # noqa: E402
import weld_ref_swap  # noqa: E402
import weld_ref_interp  # noqa: E402
import weld_ref_svd  # noqa: E402

F32 = np.float32
U64 = np.uint64
M64 = (1 << 64) - 1
U = 2.0 ** -24
TOL_ULPS = 16
GOLDEN = 0x9E3779B97F4A7C15


class RefError(Exception):
    """A merge that weld must refuse (bad option value, zero weight sum...)."""


# ---------------------------------------------------------------------------
# XXH64 (from the published algorithm description)

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc, lane):
    acc = (acc + lane * _P2) & M64
    return (_rotl(acc, 31) * _P1) & M64


def _merge(acc, v):
    acc ^= _round(0, v)
    return (acc * _P1 + _P4) & M64


def xxh64(data, seed=0):
    """64-bit XXH64 of the bytes `data` with a 64-bit seed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    seed &= M64
    n = len(data)
    p = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & M64
        v2 = (seed + _P2) & M64
        v3 = seed
        v4 = (seed - _P1) & M64
        while p + 32 <= n:
            v1 = _round(v1, int.from_bytes(data[p:p + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[p + 8:p + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[p + 16:p + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[p + 24:p + 32], "little"))
            p += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & M64
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & M64
    h = (h + n) & M64
    while p + 8 <= n:
        h ^= _round(0, int.from_bytes(data[p:p + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & M64
        p += 8
    if p + 4 <= n:
        h ^= (int.from_bytes(data[p:p + 4], "little") * _P1) & M64
        h = (_rotl(h, 23) * _P2 + _P3) & M64
        p += 4
    while p < n:
        h ^= (data[p] * _P5) & M64
        h = (_rotl(h, 11) * _P1) & M64
        p += 1
    h ^= h >> 33
    h = (h * _P2) & M64
    h ^= h >> 29
    h = (h * _P3) & M64
    h ^= h >> 32
    return h


# ---------------------------------------------------------------------------
# Randomness (DESIGN 4.9)

def splitmix64(x):
    """splitmix64 finaliser of a Python int (the value after `z += golden`
    is mixed); returns a Python int."""
    z = (x + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_key(name, seed, i):
    """Key of model i (1-based, command-line order) for tensor `name`."""
    return xxh64(name.encode("utf-8"), seed) ^ ((GOLDEN * i) & M64)


def rng_uniform(name, seed, i, n):
    """u_j = (splitmix64(key + j) >> 11) * 2^-53 for j = 0..n-1 (float64)."""
    z = np.arange(n, dtype=U64)
    with np.errstate(over="ignore"):
        z += U64(rng_key(name, seed, i))
        z += U64(GOLDEN)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        z ^= z >> U64(31)
    return (z >> U64(11)).astype(np.float64) * (2.0 ** -53)


def dare_keep(name, seed, i, shape, d):
    """Keep mask of DARE's drop step for model i, tensor `name`."""
    n = int(np.prod(shape, dtype=np.int64))
    return (rng_uniform(name, seed, i, n) < d).reshape(shape)


# ---------------------------------------------------------------------------
# Units and top-k (DESIGN 4.1)

def count_floor(frac, m):
    """floor(frac * m) in double precision, clamped to [0, m]."""
    k = math.floor(float(frac) * m)
    return max(0, min(m, k))


def _band_rows(a, lo, hi):
    """a: 2-D array of magnitudes, one unit per row. Keep, in each row, the
    elements of rank lo..hi-1 (rank 0 = largest; equal magnitudes ranked by
    lowest position)."""
    keep = np.zeros(a.shape, dtype=bool)
    if hi <= lo or a.size == 0:
        return keep
    order = np.argsort(-a, axis=1, kind="stable")
    rows = np.arange(a.shape[0])[:, None]
    keep[rows, order[:, lo:hi]] = True
    return keep


def _name_order(names):
    return sorted(names, key=lambda s: s.encode("utf-8"))


def band_masks(deltas, scope, band):
    """deltas: {name: array} of one model; band(m) -> (lo, hi), the ranks kept
    in a unit of m elements. Returns {name: bool mask}."""
    out = {}
    if scope == "tensor":
        for name, d in deltas.items():
            a = np.abs(d).reshape(1, -1)
            lo, hi = band(a.shape[1])
            out[name] = _band_rows(a, lo, hi).reshape(d.shape)
    elif scope == "row":
        for name, d in deltas.items():
            cols = d.shape[-1] if d.ndim >= 1 else 1
            if d.size == 0:
                out[name] = np.zeros(d.shape, dtype=bool)
                continue
            a = np.abs(d).reshape(-1, cols)
            lo, hi = band(cols)
            out[name] = _band_rows(a, lo, hi).reshape(d.shape)
    elif scope == "model":
        names = _name_order(deltas)
        flat = np.concatenate([np.abs(deltas[n]).reshape(-1) for n in names]) if names else np.zeros(0, F32)
        lo, hi = band(flat.size)
        keep = _band_rows(flat.reshape(1, -1), lo, hi).reshape(-1)
        p = 0
        for n in names:
            sz = deltas[n].size
            out[n] = keep[p:p + sz].reshape(deltas[n].shape)
            p += sz
    else:
        raise RefError("unknown scope %r" % scope)
    return out


def topk_masks(deltas, scope, density):
    """Exactly floor(d * m) largest |delta| per unit (DESIGN 4.1)."""
    return band_masks(deltas, scope, lambda m: (0, count_floor(density, m)))


def breadcrumbs_masks(deltas, scope, density, gamma):
    """Ranks n_top+1 .. n_top+n_keep per unit (DESIGN 4.6)."""
    def band(m):
        n_top = count_floor(gamma, m)
        n_keep = count_floor(density, m)
        if n_top + n_keep > m:
            n_top = m - n_keep
        return n_top, n_top + n_keep
    return band_masks(deltas, scope, band)


def unit_l1(deltas, scope):
    """float64 L1 norm of every unit, broadcastable against each tensor."""
    out = {}
    if scope == "tensor":
        for n, d in deltas.items():
            out[n] = np.float64(np.abs(d, dtype=np.float64).sum()) if d.size else np.float64(0)
    elif scope == "row":
        for n, d in deltas.items():
            if d.ndim == 0:
                out[n] = np.float64(abs(float(d)))
            else:
                out[n] = np.abs(d.astype(np.float64)).sum(axis=-1, keepdims=True)
    elif scope == "model":
        total = np.float64(0)
        for n in _name_order(deltas):
            total += np.abs(deltas[n].astype(np.float64)).sum()
        for n in deltas:
            out[n] = total
    else:
        raise RefError("unknown scope %r" % scope)
    return out


# ---------------------------------------------------------------------------
# helpers

def per_model(value, n, what):
    """Expand an option value (None, a number or a list) to n floats."""
    if value is None:
        return None
    if np.isscalar(value):
        return [float(value)] * n
    value = [float(v) for v in value]
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise RefError("%s: %d values for %d models" % (what, len(value), n))
    return value


def _check_names(base, models):
    ref = base if base is not None else models[0]
    for i, m in enumerate(models):
        if set(m) != set(ref):
            raise RefError("model %d has different tensor names" % (i + 1))
        for k in ref:
            if m[k].shape != ref[k].shape:
                raise RefError("tensor %r: shape %s vs %s" % (k, m[k].shape, ref[k].shape))
    return list(ref)


def _f32(x):
    return np.asarray(x, dtype=F32)


def _deltas(base, models):
    return [{k: (_f32(m[k]) - _f32(base[k])) for k in base} for m in models]


def _sum_f32(terms):
    """Element-wise float32 sum in the given order, starting with terms[0]."""
    acc = np.array(terms[0], dtype=F32, copy=True)
    for t in terms[1:]:
        acc = acc + t
    return acc


def _sign(x):
    return np.sign(x).astype(np.int8)


def elect_merge(dlist, w, sign="sum", normalize=True):
    """Steps 2-3 of DESIGN 4.4 for one tensor: dlist = the (trimmed) deltas
    of every model, w = float weights. Returns (tau, magnitude bound)."""
    wd = [F32(wi) * d for wi, d in zip(w, dlist)]
    if sign == "sum":
        s = np.where(_sum_f32(wd) >= 0, 1, -1).astype(np.int8)
    elif sign == "count":
        c = np.zeros(dlist[0].shape, dtype=np.int32)
        for t in wd:
            c += _sign(t)
        s = np.where(c >= 0, 1, -1).astype(np.int8)
    else:
        raise RefError("unknown sign method %r" % sign)
    agree = [_sign(t) == s for t in wd]
    num = _sum_f32([np.where(a, t, F32(0)).astype(F32) for a, t in zip(agree, wd)])
    absnum = sum(np.where(a, np.abs(t.astype(np.float64)), 0.0) for a, t in zip(agree, wd))
    if not normalize:
        return num, absnum
    div = _sum_f32([np.where(a, F32(wi), F32(0)).astype(F32) for a, wi in zip(agree, w)])
    absdiv = sum(np.where(a, abs(float(F32(wi))), 0.0) for a, wi in zip(agree, w))
    div = np.where(div == 0, F32(1), div).astype(F32)
    tau = (num / div).astype(F32)
    ad = np.abs(div.astype(np.float64))
    return tau, absnum / ad + np.abs(tau.astype(np.float64)) * absdiv / ad


def _finish(base, tau, mag, lam, names, with_bound):
    out, bound = {}, {}
    for n in names:
        t = tau[n] if lam == 1.0 else F32(lam) * tau[n]
        out[n] = (_f32(base[n]) + t).astype(F32)
        bound[n] = np.abs(base[n].astype(np.float64)) + abs(lam) * mag[n]
    return (out, bound) if with_bound else out


def _weighted_sum(dlist, w, normalize):
    """sum_i w_i d_i (float32, model order), optionally / sum w_i (|sum| <
    1e-8 -> 1). Returns (tau, magnitude bound)."""
    tau = _sum_f32([F32(wi) * d for wi, d in zip(w, dlist)])
    mag = sum(abs(float(F32(wi))) * np.abs(d.astype(np.float64)) for wi, d in zip(w, dlist))
    if normalize:
        sw = F32(0)
        for wi in w:
            sw = F32(sw + F32(wi))
        if abs(float(sw)) < 1e-8:
            sw = F32(1)
        tau = (tau / sw).astype(F32)
        mag = mag / abs(float(sw)) + np.abs(tau.astype(np.float64)) * sum(abs(wi) for wi in w) / abs(float(sw))
    return tau, mag


# ---------------------------------------------------------------------------
# methods

def average(models, weights=None, normalize=True, with_bound=False):
    """DESIGN 4.2: sum w_i X_i / sum w_i, or sum w_i X_i with normalize=False."""
    names = _check_names(None, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    sw = F32(0)
    for wi in w:
        sw = F32(sw + F32(wi))
    if normalize and sw == 0:
        raise RefError("weights sum to 0")
    out, bound = {}, {}
    for name in names:
        xs = [_f32(m[name]) for m in models]
        acc = _sum_f32([F32(wi) * x for wi, x in zip(w, xs)])
        mag = sum(abs(float(F32(wi))) * np.abs(x.astype(np.float64)) for wi, x in zip(w, xs))
        if normalize:
            acc = (acc / sw).astype(F32)
            mag = (mag + np.abs(acc.astype(np.float64)) * sum(abs(wi) for wi in w)) / abs(float(sw))
        out[name], bound[name] = acc, mag
    return (out, bound) if with_bound else out


def task_arithmetic(base, models, weights=None, lam=1.0, normalize=False, with_bound=False):
    """DESIGN 4.3: B + lambda * sum w_i delta_i (optionally / sum w_i)."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    deltas = _deltas(base, models)
    tau, mag = {}, {}
    for name in names:
        tau[name], mag[name] = _weighted_sum([d[name] for d in deltas], w, normalize)
    return _finish(base, tau, mag, lam, names, with_bound)


def ties(base, models, weights=None, density=0.2, lam=1.0, scope="tensor",
         sign="sum", normalize=True, with_bound=False):
    """DESIGN 4.4: trim to the top-k per unit, elect signs, disjoint mean."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    dens = per_model(density, n, "density")
    deltas = _deltas(base, models)
    trimmed = []
    for d, di in zip(deltas, dens):
        keep = topk_masks(d, scope, di)
        trimmed.append({k: np.where(keep[k], d[k], F32(0)).astype(F32) for k in d})
    tau, mag = {}, {}
    for name in names:
        tau[name], mag[name] = elect_merge([t[name] for t in trimmed], w, sign, normalize)
    return _finish(base, tau, mag, lam, names, with_bound)


def dare(base, models, weights=None, density=0.5, lam=1.0, seed=0,
         rescale="inverse", combine="sum", trim=None, scope="tensor",
         sign="sum", normalize=False, with_bound=False):
    """DESIGN 4.5: random drop (RNG of 4.9), rescale, then sum or TIES-style
    election; `trim` (with combine='ties') trims the rescaled deltas."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    dens = per_model(density, n, "density")
    trims = per_model(trim, n, "trim")
    deltas = _deltas(base, models)
    dropped = []
    for i, (d, di) in enumerate(zip(deltas, dens), start=1):
        kept = {k: np.where(dare_keep(k, seed, i, d[k].shape, di), d[k], F32(0)).astype(F32)
                for k in d}
        if rescale == "inverse":
            kept = {k: (v / F32(di)).astype(F32) for k, v in kept.items()}
        elif rescale == "l1":
            before = unit_l1(d, scope)
            after = unit_l1(kept, scope)
            res = {}
            for k, v in kept.items():
                b, a = np.asarray(before[k], np.float64), np.asarray(after[k], np.float64)
                ok = (b >= 1e-7) & (a >= 1e-7)
                with np.errstate(divide="ignore", invalid="ignore"):
                    fac = np.where(ok, b / np.where(ok, a, 1.0), 1.0).astype(F32)
                res[k] = (v * fac).astype(F32)
            kept = res
        elif rescale != "none":
            raise RefError("unknown rescale %r" % rescale)
        if trims is not None:
            keep = topk_masks(kept, scope, trims[i - 1])
            kept = {k: np.where(keep[k], kept[k], F32(0)).astype(F32) for k in kept}
        dropped.append(kept)
    tau, mag = {}, {}
    for name in names:
        dl = [t[name] for t in dropped]
        if combine == "sum":
            tau[name], mag[name] = _weighted_sum(dl, w, normalize)
        elif combine == "ties":
            tau[name], mag[name] = elect_merge(dl, w, sign, normalize)
        else:
            raise RefError("unknown combine %r" % combine)
    return _finish(base, tau, mag, lam, names, with_bound)


def breadcrumbs(base, models, weights=None, density=0.9, gamma=0.01, lam=1.0,
                scope="tensor", combine="sum", sign="sum", normalize=False,
                with_bound=False):
    """DESIGN 4.6: keep ranks n_top+1 .. n_top+n_keep per unit, then sum (or
    election + disjoint merge with combine='ties')."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    dens = per_model(density, n, "density")
    gams = per_model(gamma, n, "gamma")
    deltas = _deltas(base, models)
    kept = []
    for d, di, gi in zip(deltas, dens, gams):
        keep = breadcrumbs_masks(d, scope, di, gi)
        kept.append({k: np.where(keep[k], d[k], F32(0)).astype(F32) for k in d})
    tau, mag = {}, {}
    for name in names:
        dl = [t[name] for t in kept]
        if combine == "sum":
            tau[name], mag[name] = _weighted_sum(dl, w, normalize)
        elif combine == "ties":
            tau[name], mag[name] = elect_merge(dl, w, sign, normalize)
        else:
            raise RefError("unknown combine %r" % combine)
    return _finish(base, tau, mag, lam, names, with_bound)


def tall_masks(base, models, tau_mtl, mask_lambda):
    """TALL mask of each model: |delta_i| > lambda_i * |tau - delta_i|."""
    deltas = _deltas(base, models)
    lams = per_model(mask_lambda, len(models), "mask-lambda")
    return [{k: np.abs(d[k]) > (F32(li) * np.abs((tau_mtl[k] - d[k]).astype(F32))).astype(F32)
             for k in d} for d, li in zip(deltas, lams)]


def consensus_tau(base, models, weights=None, source="ta", density=0.2,
                  scope="tensor", sign="sum"):
    """tau_MTL of DESIGN 4.7 step 1 and its magnitude bound."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    deltas = _deltas(base, models)
    tau, mag = {}, {}
    if source == "ta":
        for name in names:
            tau[name], mag[name] = _weighted_sum([d[name] for d in deltas], w, False)
    elif source == "ties":
        dens = per_model(density, n, "density")
        trimmed = []
        for d, di in zip(deltas, dens):
            keep = topk_masks(d, scope, di)
            trimmed.append({k: np.where(keep[k], d[k], F32(0)).astype(F32) for k in d})
        for name in names:
            tau[name], mag[name] = elect_merge([t[name] for t in trimmed], w, sign, False)
    else:
        raise RefError("unknown --from %r" % source)
    return tau, mag


def consensus(base, models, weights=None, source="ta", density=0.2,
              mask_lambda=0.6, k=2, lam=1.0, scope="tensor", sign="sum",
              with_bound=False):
    """DESIGN 4.7: TALL masks, keep where at least k models use the weight."""
    names = _check_names(base, models)
    tau, mag = consensus_tau(base, models, weights, source, density, scope, sign)
    masks = tall_masks(base, models, tau, mask_lambda)
    masked = {}
    for name in names:
        c = sum(m[name].astype(np.int32) for m in masks)
        masked[name] = np.where(c >= k, tau[name], F32(0)).astype(F32)
    return _finish(base, masked, mag, lam, names, with_bound)


def della(base, models, weights=None, density=0.5, epsilon=0.15, lam=1.0, seed=0,
          rescale="inverse", combine="ties", sign="sum", normalize=True, with_bound=False):
    """METHODS 3: per-row rank keep probability (ref_rank.py), rescale, then
    the GTA combination of METHODS 1 (election + normalize, or a sum)."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    dens = per_model(density, n, "density")
    eps = per_model(epsilon, n, "epsilon")
    for di, ei in zip(dens, eps):
        if di < 1 and not (ei >= 0 and di - ei > 0 and di + ei < 1):
            raise RefError("density %g and epsilon %g: keep probability outside (0, 1)" % (di, ei))
    deltas = _deltas(base, models)
    dropped = []
    for i, (d, di, ei) in enumerate(zip(deltas, dens, eps), start=1):
        dropped.append({k: ref_rank.della_drop(v, rng_uniform(k, seed, i, v.size), di, ei, rescale)
                        for k, v in d.items()})
    tau, mag = {}, {}
    for name in names:
        dl = [t[name] for t in dropped]
        if combine == "sum":
            tau[name], mag[name] = _weighted_sum(dl, w, normalize)
        else:
            tau[name], mag[name] = elect_merge(dl, w, sign, normalize)
    return _finish(base, tau, mag, lam, names, with_bound)


def pcb(base, models, weights=None, density=0.1, lam=1.0, clip=0.0001, scope="tensor",
        with_bound=False):
    """METHODS 12 (PCB-Merging), unit by unit (ref_rank.py)."""
    names = _check_names(base, models)
    n = len(models)
    w = per_model(weights, n, "weights") or [1.0] * n
    ratios = per_model(density, n, "density")
    deltas = _deltas(base, models)
    out, mag = {}, {}
    if scope == "model":
        flat = [[d[k].ravel() for k in names] for d in deltas]
        stats, sums = ref_rank.pcb_unit(flat, ratios, clip)
        for k, name in enumerate(names):
            b = _f32(base[name]).ravel()
            out[name] = ref_rank.pcb_combine([f[k] for f in flat], sums[k], stats, w, b,
                                             lam).reshape(base[name].shape)
    else:
        for name in names:
            shape = base[name].shape
            width = shape[-1] if (scope == "row" and len(shape)) else max(1, int(np.prod(shape)))
            rows = [d[name].reshape(-1, width) for d in deltas]
            b = _f32(base[name]).reshape(-1, width)
            res = np.empty_like(b)
            for r in range(b.shape[0]):
                dr = [x[r] for x in rows]
                stats, sums = ref_rank.pcb_unit([[x] for x in dr], ratios, clip)
                res[r] = ref_rank.pcb_combine(dr, sums[0], stats, w, b[r], lam)
            out[name] = res.reshape(shape)
    for name in names:
        mag[name] = np.abs(out[name].astype(np.float64))
    return (out, mag) if with_bound else out


def sce(base, models, select_topk=1.0, with_bound=False):
    """METHODS 5 (Select, Calculate, Erase), tensor by tensor (ref_rank.py)."""
    names = _check_names(base, models)
    deltas = _deltas(base, models)
    out = {k: ref_rank.sce_tensor(_f32(base[k]), [d[k] for d in deltas], select_topk)
           for k in names}
    mag = {k: np.abs(v.astype(np.float64)) for k, v in out.items()}
    return (out, mag) if with_bound else out


def arcee_fusion(base, models, with_bound=False):
    """METHODS 11 (mergekit's arcee_fusion): base and one model."""
    names = _check_names(base, models)
    if len(models) != 1:
        raise RefError("arcee-fusion takes exactly one model besides the base")
    out = {k: ref_rank.arcee_tensor(_f32(base[k]), _f32(models[0][k])) for k in names}
    mag = {k: np.abs(v.astype(np.float64)) for k, v in out.items()}
    return (out, mag) if with_bound else out


# ---------------------------------------------------------------------------
# command line with weld's syntax (DESIGN 2)

METHODS = ("average", "task-arithmetic", "ties", "dare", "breadcrumbs", "consensus", "della", "pcb", "sce", "arcee-fusion",
           "nearswap", "ram", "model-stock", "nuslerp", "multislerp", "karcher",
           "tsv-m", "iso-c", "iso-cts")
_VALUED = {"-o": "output", "--output": "output", "--base": "base", "--weights": "weights",
           "--density": "density", "--lambda": "lambda", "--dtype": "dtype",
           "--scope": "scope", "--seed": "seed", "-j": "threads", "--threads": "threads",
           "--max-memory": "max_memory", "--shard-size": "shard_size", "--sign": "sign",
           "--rescale": "rescale", "--combine": "combine", "--trim": "trim",
           "--gamma": "gamma", "--from": "from", "--mask-lambda": "mask_lambda",
           "--k": "k", "--save-masks": "save_masks", "--apply-mask": "apply_mask",
           "--epsilon": "epsilon", "--clip": "clip", "--select-topk": "select_topk",
           "--t": "t", "--r": "r", "--alpha": "alpha",
           "--eps": "eps", "--max-iter": "max_iter", "--tol": "tol",
           "--svd-exclude": "svd_exclude", "--common-space-fraction": "common_fraction"}
_FLAGS = {"-f": "force", "--force": "force", "--allow-missing": "allow_missing",
          "--no-copy-files": "no_copy_files", "-q": "quiet", "--quiet": "quiet",
          "-v": "verbose", "--verbose": "verbose", "--json": "json", "--plus": "plus",
          "--filter-wise": "filter_wise",
          "--no-flatten": "no_flatten", "--row-wise": "row_wise"}
_MODEL_SPEC = re.compile(r"^(.*):((?:[a-z_]+=[^,:=]+)(?:,[a-z_]+=[^,:=]+)*)$")


def _floats(text):
    return [float(v) for v in text.split(",")]


def parse_args(argv):
    """Parse `METHOD [options] MODEL...` as weld does. Returns a dict."""
    if not argv or argv[0] not in METHODS:
        raise RefError("usage: weld_ref.py {%s} [options] MODEL..." % "|".join(METHODS))
    a = {"method": argv[0], "models": [], "model_opts": [], "normalize": None}
    i = 1
    while i < len(argv):
        arg = argv[i]
        key, val = arg, None
        if arg.startswith("--") and "=" in arg:
            key, val = arg.split("=", 1)
        if key in _VALUED:
            if val is None:
                i += 1
                if i >= len(argv):
                    raise RefError("%s needs a value" % key)
                val = argv[i]
            a[_VALUED[key]] = val
        elif key in _FLAGS:
            a[_FLAGS[key]] = True
        elif key == "--normalize":
            a["normalize"] = True
        elif key == "--no-normalize":
            a["normalize"] = False
        elif arg.startswith("-") and arg != "-":
            raise RefError("unknown option %s" % arg)
        else:
            m = _MODEL_SPEC.match(arg)
            opts = {}
            if m:
                arg = m.group(1)
                for kv in m.group(2).split(","):
                    k, v = kv.split("=")
                    opts[k] = float(v)
            a["models"].append(arg)
            a["model_opts"].append(opts)
        i += 1
    return a


def _model_values(a, key, opt, default):
    """Per-model list from the list option `opt` and MODEL:key=v overrides."""
    n = len(a["models"])
    vals = per_model(_floats(a[opt]) if opt in a else default, n, opt)
    if vals is None:
        return None
    return [mo.get(key, v) for mo, v in zip(a["model_opts"], vals)]


def _check_values(a):
    """Refuse option values that DESIGN rules out."""
    def frac(opt, ok):
        for v in _floats(a[opt]) if opt in a else []:
            if not ok(v):
                raise RefError("--%s %s: out of range" % (opt, v))
    frac("density", lambda v: 0 < v <= 1)
    frac("trim", lambda v: 0 < v <= 1)
    frac("gamma", lambda v: 0 <= v < 1)
    for mo in a["model_opts"]:
        if "density" in mo and not 0 < mo["density"] <= 1:
            raise RefError("density %s: out of range" % mo["density"])
    for opt, allowed in (("scope", ("tensor", "row", "model")), ("sign", ("sum", "count")),
                         ("rescale", ("inverse", "l1", "none")), ("combine", ("sum", "ties")),
                         ("from", ("ta", "ties")), ("dtype", ("auto", "bf16", "f16", "f32"))):
        if opt in a and a[opt] not in allowed:
            raise RefError("--%s %s: expected one of %s" % (opt, a[opt], "|".join(allowed)))


def run(argv, loader=stio.load_model, with_bound=True):
    """Merge as `weld ARGV` would. Returns (out, bound) dicts."""
    a = parse_args(argv)
    _check_values(a)
    meth = a["method"]
    models = [loader(p) for p in a["models"]]
    if not models:
        raise RefError("no models")
    base = None
    if meth in ("nuslerp", "multislerp", "karcher"):
        return _sphere(meth, a, models, loader, with_bound)
    if meth != "average":
        if "base" not in a:
            raise RefError("--base is required")
        base = loader(a["base"])
    lam = float(a.get("lambda", 1.0))
    scope = a.get("scope", "tensor")
    sign = a.get("sign", "sum")
    w = _model_values(a, "weight", "weights", 1.0)
    if meth == "average":
        norm = True if a["normalize"] is None else a["normalize"]
        return average(models, w, norm, with_bound=with_bound)
    if meth == "task-arithmetic":
        norm = bool(a["normalize"])
        return task_arithmetic(base, models, w, lam, norm, with_bound=with_bound)
    if meth == "ties":
        d = _model_values(a, "density", "density", 0.2)
        norm = True if a["normalize"] is None else a["normalize"]
        return ties(base, models, w, d, lam, scope, sign, norm, with_bound=with_bound)
    if meth == "dare":
        d = _model_values(a, "density", "density", 0.5)
        trim = _floats(a["trim"]) if "trim" in a else None
        return dare(base, models, w, d, lam, int(a.get("seed", 0)) & M64,
                    a.get("rescale", "inverse"), a.get("combine", "sum"), trim, scope,
                    sign, bool(a["normalize"]), with_bound=with_bound)
    if meth == "breadcrumbs":
        d = _model_values(a, "density", "density", 0.9)
        g = _floats(a["gamma"]) if "gamma" in a else 0.01
        return breadcrumbs(base, models, w, d, g, lam, scope, a.get("combine", "sum"), sign,
                           bool(a["normalize"]), with_bound=with_bound)
    if meth == "consensus":
        d = _model_values(a, "density", "density", 0.2)
        ml = _floats(a["mask_lambda"]) if "mask_lambda" in a else 0.6
        return consensus(base, models, w, a.get("from", "ta"), d, ml, int(a.get("k", 2)),
                         lam, scope, sign, with_bound=with_bound)
    if meth == "della":
        d = _model_values(a, "density", "density", 0.5)
        e = _model_values(a, "epsilon", "epsilon", 0.15)
        norm = True if a["normalize"] is None else a["normalize"]
        return della(base, models, w, d, e, lam, int(a.get("seed", 0)) & M64,
                     a.get("rescale", "inverse"), a.get("combine", "ties"), sign, norm,
                     with_bound=with_bound)
    if meth == "arcee-fusion":
        return arcee_fusion(base, models, with_bound=with_bound)
    if meth == "sce":
        return sce(base, models, float(a.get("select_topk", 1.0)), with_bound=with_bound)
    if meth == "pcb":
        d = _model_values(a, "density", "density", 0.1)
        return pcb(base, models, w, d, lam, float(a.get("clip", 0.0001)), scope,
                   with_bound=with_bound)
    if meth == "nearswap":
        if "t" not in a:
            raise RefError("--t is required")
        if len(models) != 1:
            raise RefError("nearswap takes one model besides the base")
        return _bounded(weld_ref_swap.nearswap(base, models, float(a["t"]),
                                               _check_names(base, models)), with_bound)
    if meth == "ram":
        if not a.get("plus") and ("r" in a or "alpha" in a):
            raise RefError("--r and --alpha need --plus")
        eps, alpha = float(a.get("epsilon", 1e-5)), float(a.get("alpha", 0.2))
        if eps < 0 or alpha < 0:
            raise RefError("epsilon and alpha must be >= 0")
        return _bounded(weld_ref_swap.ram(base, models, eps, bool(a.get("plus")),
                                          float(a.get("r", 0.1)), alpha,
                                          _check_names(base, models)), with_bound)
    if meth in ("tsv-m", "iso-c", "iso-cts"):
        f = float(a.get("common_fraction", 0.8))
        if not 0 <= f <= 1:
            raise RefError("--common-space-fraction %s: outside [0, 1]" % f)
        try:
            res = weld_ref_svd.merge(meth, base, models, w, lam, f, a.get("svd_exclude"),
                                     _check_names(base, models))
        except ValueError as e:
            raise RefError(str(e))
        return _bounded(res, with_bound)
    if meth == "model-stock":
        if len(models) < 2:
            raise RefError("model-stock needs two models or more")
        return _bounded(weld_ref_interp.model_stock(base, models, bool(a.get("filter_wise")),
                                                    _check_names(base, models)), with_bound)
    raise RefError("unknown method %r" % meth)


def _sphere(meth, a, models, loader, with_bound):
    """nuslerp, multislerp (optional base), karcher (no base)."""
    base = loader(a["base"]) if "base" in a and meth != "karcher" else None
    names = _check_names(base, models)
    w = _model_values(a, "weight", "weights", 1.0)
    try:
        if meth == "nuslerp":
            if len(models) != 2:
                raise RefError("nuslerp takes two models")
            res = weld_ref_interp.nuslerp(base, models, w, not a.get("no_flatten"), names,
                                          bool(a.get("row_wise")))
        elif meth == "multislerp":
            norm = True if a["normalize"] is None else a["normalize"]
            res = weld_ref_interp.multislerp(base, models, w, norm, float(a.get("eps", 1e-8)), names)
        else:
            res = weld_ref_interp.karcher(models, int(a.get("max_iter", 10)),
                                          float(a.get("tol", 1e-5)), names)
    except ValueError as e:
        raise RefError(str(e))
    return _bounded(res, with_bound)


def _bounded(result, with_bound):
    return result if with_bound else result[0]


def main(argv):
    try:
        a = parse_args(argv)
        if "output" not in a:
            raise RefError("-o OUT is required")
        if os.path.exists(a["output"]) and not a.get("force"):
            raise RefError("'%s' already exists; not overwritten" % a["output"])
        out, _ = run(argv)
    except (RefError, OSError, ValueError) as e:
        sys.stderr.write("weld_ref: %s\n" % e)
        return 1
    dtype = a.get("dtype", "auto").upper()
    src = a.get("base") or a["models"][0]
    infos = stio.model_index(src)
    tensors = {}
    for n, v in out.items():
        dt = infos[n].dtype if dtype == "AUTO" else dtype
        tensors[n] = (v, dt)
    tmp = a["output"].rstrip("/") + ".tmp-%d" % os.getpid()
    os.makedirs(tmp)
    stio.save_file(os.path.join(tmp, "model.safetensors"), tensors)
    if os.path.exists(a["output"]):
        shutil.rmtree(a["output"])
    os.rename(tmp, a["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
