"""Reference of weld's della (METHODS.md section 3) in NumPy, for weld_ref.py.

Written from METHODS.md 3 and 1 (the GTA combination), DESIGN 4.9 (draws)
and 4.1 (the tie order), independently of weld's C code:
  * a row is a slice along the last dimension (1-D: one row; 0-D: one row
    of 1); the rank of |delta| in its row is 1 for the smallest, w for the
    largest, and among equal magnitudes the lower position ranks higher;
  * keep probability in double: p = (d - eps) + (2 t) eps, t = (r-1)/(w-1),
    p = d for a row of width 1; kept iff u_j < p (u of DESIGN 4.9);
  * rescale: 'inverse' divides the kept value by float32(p); 'l1' multiplies
    it by float32(sum|delta| / sum|kept|) over the whole tensor, the sums
    exact (math.fsum) and skipped when either is below 1e-7; 'none';
  * d >= 1 leaves delta as it is.
"""

import math

import numpy as np

import ref_exp

F32 = np.float32


def row_ranks(a):
    """0-based ranks (r - 1) of |a| along the last axis, ties: lower
    position ranks higher."""
    x = np.abs(a.astype(F32)).reshape(-1, a.shape[-1] if a.ndim else 1)
    w = x.shape[1]
    pos = np.broadcast_to(np.arange(w), x.shape)
    # sort by magnitude ascending, then position descending
    order = np.lexsort((-pos, x), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(w)[None, :].repeat(x.shape[0], 0), axis=1)
    return ranks.reshape(a.shape), w


def della_drop(delta, u, d, eps, rescale):
    """One model's tensor: (sparsified delta as float32)."""
    delta = np.asarray(delta, F32)
    if d >= 1:
        return delta.copy()
    ranks, w = row_ranks(delta)
    if w > 1:
        t = ranks.astype(np.float64) / float(w - 1)
        p = (d - eps) + (2 * t) * eps
    else:
        p = np.full(delta.shape, float(d))
    keep = u.reshape(delta.shape) < p
    if rescale == "inverse":
        return np.where(keep, delta / p.astype(F32), F32(0)).astype(F32)
    kept = np.where(keep, delta, F32(0)).astype(F32)
    if rescale == "l1":
        before = math.fsum(abs(float(v)) for v in delta.ravel())
        after = math.fsum(abs(float(v)) for v in kept.ravel())
        if before >= 1e-7 and after >= 1e-7:
            kept = (kept * F32(before / after)).astype(F32)
    return kept


# ---------------------------------------------------------------------------
# PCB-Merging (METHODS.md section 12), weld's order of float32 operations:
#   clip bounds lo = s[floor(m rho)], hi = s[trunc(m (1 - rho) - 1)] of |delta|
#   sorted ascending over the unit (indices in double, clamped to m - 1);
#   a = min(max(|delta|, lo), hi); N = (a - min(lo, hi)) / (hi - min(lo, hi))
#   (0 when hi = min(lo, hi)); intra = f32(exp(f64(f32(n) * (N * N))));
#   inter = f32(tanh(f64(delta * S))), S = the deltas summed in model order;
#   beta = intra * inter; thr = b[floor(m (1 - r))], top = b[m - 1], b = beta
#   sorted ascending by its bits (-0 below +0; every NaN, whatever its sign,
#   above +inf: the positive quiet NaN); a NaN clip bound clips nothing on
#   its side (the clamp is made of comparisons); score = (beta - thr) / (top -
#   thr) where beta > thr (0 elsewhere, and everywhere when top = thr);
#   tau = sum_i (w_i * sign(delta_i) a_i) * score_i / max(sum_i score_i,
#   1e-12), sums starting with model 1's term; out = B + lambda * tau.


def _signed_keys(x):
    u = np.ascontiguousarray(x, F32).view(np.uint32).astype(np.uint64)
    return np.where(u & 0x80000000, (~u) & 0xFFFFFFFF, u | 0x80000000)


def _beta_keys(x):
    # every NaN beta, whatever its sign, takes one key above +inf
    x = np.asarray(x, F32)
    return np.where(np.isnan(x), 0xFFC00000, _signed_keys(x))


def _key_float(k):
    k = int(k)
    u = k & 0x7FFFFFFF if k & 0x80000000 else (~k) & 0xFFFFFFFF
    return np.array([u], np.uint32).view(F32)[0]


def pcb_lo_index(m, clip):
    return min(int(math.floor(m * clip)), m - 1)


def pcb_hi_index(m, clip):
    x = m * (1 - clip) - 1
    return 0 if x <= 0 else min(int(x), m - 1)


def pcb_thr_index(m, ratio):
    return min(int(math.floor(m * (1 - ratio))), m - 1)


def _clip_abs(d, lo, hi):
    # by comparisons: a NaN bound (a unit with more NaN deltas than the
    # clip fraction) clips nothing on its side
    a = np.abs(d).astype(F32)
    a = np.where(a < lo, F32(lo), a)
    return np.where(a > hi, F32(hi), a).astype(F32)


def pcb_beta(d, s, n, lo, hi):
    mn = min(lo, hi)
    span = F32(F32(hi) - F32(mn))
    a = _clip_abs(d, lo, hi)
    if span > 0:
        nn = ((a - F32(mn)) / span).astype(F32)
    else:
        nn = np.zeros_like(a)
    # weld's own exp and tanh (elementary.h); tanh(p) rounds to p itself
    # where |p| < 2^-13, and weld takes p there
    intra = ref_exp.weld_exp((F32(n) * (nn * nn)).astype(np.float64)).astype(F32)
    p = (d * s).astype(F32)
    inter = np.where(np.abs(p) < F32(2.0 ** -13), p,
                     ref_exp.weld_tanh(p.astype(np.float64)).astype(F32)).astype(F32)
    return (intra * inter).astype(F32)


def pcb_unit(deltas, ratios, clip):
    """deltas[i] = model i's flat float32 deltas over one unit (a list of
    pieces each: the tensors of a --scope model unit). Returns, per model,
    (lo, hi, thr, top)."""
    n = len(deltas)
    m = sum(p.size for p in deltas[0])
    bounds = []
    for pieces in deltas:
        a = np.sort(np.abs(np.concatenate(pieces)).astype(F32))
        bounds.append((a[pcb_lo_index(m, clip)], a[pcb_hi_index(m, clip)]))
    sums = [None] * len(deltas[0])
    for k in range(len(deltas[0])):
        acc = deltas[0][k].copy()
        for p in deltas[1:]:
            acc = (acc + p[k]).astype(F32)
        sums[k] = acc
    out = []
    for i, pieces in enumerate(deltas):
        lo, hi = bounds[i]
        beta = np.concatenate([pcb_beta(p, sums[k], n, lo, hi) for k, p in enumerate(pieces)])
        keys = np.sort(_beta_keys(beta))
        out.append((lo, hi, _key_float(keys[pcb_thr_index(m, ratios[i])]), _key_float(keys[m - 1])))
    return out, sums


def pcb_combine(d, sum_, stats, w, base, lam):
    n = len(d)
    num = den = None
    for i in range(n):
        lo, hi, thr, top = stats[i]
        a = _clip_abs(d[i], lo, hi)
        t = np.where(d[i] > 0, a, np.where(d[i] < 0, -a, F32(0))).astype(F32)
        b = pcb_beta(d[i], sum_, n, lo, hi)
        if top != thr:
            sc = np.where(b > thr, ((b - F32(thr)) / F32(F32(top) - F32(thr))).astype(F32),
                          F32(0)).astype(F32)
        else:
            sc = np.zeros_like(b)
        term = ((F32(w[i]) * t).astype(F32) * sc).astype(F32)
        num = term if num is None else (num + term).astype(F32)
        den = sc if den is None else (den + sc).astype(F32)
    return (base + F32(lam) * (num / np.maximum(den, F32(1e-12)))).astype(F32)


# ---------------------------------------------------------------------------
# sce (METHODS.md section 5), weld's order of float32 operations: the
# variance v = sum_i (t_i - mean)^2 / n, mean = (sum_i t_i) / n; with
# 0 < select_topk < 1, the k = floor(c * select_topk) largest v kept (c = the
# non-zero v; ties to the lowest position), every t_i zeroed elsewhere;
# energies e_i = fsum(float32(t_i * t_i)) / L, shares a_i = e_i / sum e
# (1/n when that sum is below 1e-6); the elected sign s = +1 where
# sum_i t_i >= 0; out = B + sum_i [agree] a_i t_i / max(sum_i [agree] a_i,
# 1e-6), sums from 0 in model order.


def sce_tensor(base, ts, tau):
    n = len(ts)
    shape = base.shape
    t = [np.asarray(x, F32).ravel() for x in ts]
    size = t[0].size
    if tau < 1:
        keep = np.zeros(size, bool)
        if tau > 0:
            acc = t[0].copy()
            for x in t[1:]:
                acc = (acc + x).astype(F32)
            mean = (acc / F32(n)).astype(F32)
            var = ((t[0] - mean) * (t[0] - mean)).astype(F32)
            for x in t[1:]:
                var = (var + (x - mean) * (x - mean)).astype(F32)
            var = (var / F32(n)).astype(F32)
            k = int(math.floor(np.count_nonzero(var) * tau))
            if k > 0:
                key = var.view(np.uint32) & 0x7FFFFFFF
                order = np.lexsort((np.arange(size), -key.astype(np.int64)))
                keep[order[:k]] = True
        t = [np.where(keep, x, F32(0)).astype(F32) for x in t]
    en = [math.fsum(float(v) for v in (x * x).astype(F32)) / size for x in t]
    total = 0.0
    for v in en:
        total += v
    a = [F32(1.0 / n if abs(total) < 1e-6 else v / total) for v in en]
    s = t[0].copy()
    for x in t[1:]:
        s = (s + x).astype(F32)
    num = np.zeros(size, F32)
    den = np.zeros(size, F32)
    for ai, x in zip(a, t):
        agree = np.where(s >= 0, x > 0, x < 0)
        num = (num + np.where(agree, (ai * x).astype(F32), F32(0))).astype(F32)
        den = (den + np.where(agree, ai, F32(0))).astype(F32)
    out = (np.asarray(base, F32).ravel() + num / np.maximum(den, F32(1e-6))).astype(F32)
    return out.reshape(shape)


# ---------------------------------------------------------------------------
# arcee_fusion (METHODS.md section 11), weld's order of operations: per row
# (the last dimension), e = exp(x - max x) in double with weld's own exp
# (ref_exp.py, the NumPy twin of lib/common/elementary.h: the same bits on
# every machine), s = the e summed in row order, p = e_b/s_b + 1e-8,
# q = e_a/s_a + 1e-8, kl = sum in row order of p log(p/q) (weld's own log,
# also from ref_exp.py); importance = float32(|b - a|) * float32(kl);
# the fence Q(.5) + 1.5 (Q(.75) - Q(.25)) in double, Q(x) = the
# floor(x (L - 1))-th smallest importance of the whole tensor;
# out = a + (b - a) * [importance >= fence]; 0-D: b.


def _row_exps(x):
    mx = -math.inf
    for v in x:
        mx = float(v) if float(v) > mx else mx
    e = ref_exp.weld_exp(np.asarray(x, np.float64) - mx).tolist()
    s = 0.0
    for v in e:
        s += v
    return e, s


def arcee_tensor(a, b):
    a = np.asarray(a, F32)
    b = np.asarray(b, F32)
    if a.ndim == 0:
        return b.copy()
    w = a.shape[-1]
    ra, rb = a.reshape(-1, w), b.reshape(-1, w)
    imp = np.empty_like(ra)
    for r in range(ra.shape[0]):
        eb, sb = _row_exps(rb[r])
        ea, sa = _row_exps(ra[r])
        p = np.asarray(eb) / sb + 1e-8
        q = np.asarray(ea) / sa + 1e-8
        kl = 0.0
        for t in (p * ref_exp.weld_log(p / q)).tolist():
            kl += t
        imp[r] = (np.abs((rb[r] - ra[r]).astype(F32)) * F32(kl)).astype(F32)
    keys = np.sort(_signed_keys(imp.ravel()))
    n = keys.size
    q25, q50, q75 = (float(_key_float(keys[int(math.floor(x * (n - 1)))])) for x in (0.25, 0.5, 0.75))
    fence = q50 + 1.5 * (q75 - q25)
    m = np.where(imp.astype(np.float64) >= fence, F32(1), F32(0)).astype(F32)
    return (ra + ((rb - ra).astype(F32) * m).astype(F32)).astype(F32).reshape(a.shape)
