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
