"""NumPy reference of weld's nearswap, ram and ramplus_tl (METHODS.md 9, 10).

Written from METHODS.md, independently of weld's C code; imported by
weld_ref.py, whose conventions it keeps (float32 inputs and arithmetic in
the order of the formulas, counts and ratios in double, a magnitude bound
per element for the comparison tolerance).
"""

import numpy as np

F32 = np.float32


def _f32(x):
    return np.asarray(x, dtype=F32)


def nearswap(base, models, t, names):
    """a = clamp(t / max(|B - X|, 1e-6), 0, 1); out = a X + (1 - a) B."""
    if len(models) != 1:
        raise ValueError("nearswap takes exactly one model besides the base")
    out, bound = {}, {}
    for n in names:
        b, x = _f32(base[n]), _f32(models[0][n])
        d = np.abs(b - x)
        d = np.maximum(d, F32(1e-6))
        a = np.clip((F32(t) / d).astype(F32), F32(0), F32(1))
        out[n] = (a * x + (F32(1) - a) * b).astype(F32)
        b64, x64 = b.astype(np.float64), x.astype(np.float64)
        bound[n] = np.abs(b64) + np.abs(x64) + np.abs(x64 - b64)
    return out, bound


def ram_lambdas(deltas, eps, r, alpha):
    """ramplus_tl: lambda_i = 1 + r * clamp(S_i / max(U_i, eps), 0, alpha)
    from the counts over the whole tensor, in double, used in float32."""
    z = [np.abs(d) > F32(eps) for d in deltas]
    c = sum(zi.astype(np.int64) for zi in z)
    lam = []
    for zi in z:
        s = float(np.sum(zi & (c > 1)))
        u = float(np.sum(zi & (c == 1)))
        rho = min(max(s / max(u, eps), 0.0), alpha)
        lam.append(F32(1 + r * rho))
    return lam


def ram(base, models, eps, plus, r, alpha, names):
    """B + the one surviving delta (times lambda_i with plus), or the mean
    of several survivors (|delta| > eps); B where none survives."""
    out, bound = {}, {}
    for n in names:
        b = _f32(base[n])
        ds = [(_f32(m[n]) - b).astype(F32) for m in models]
        lam = ram_lambdas(ds, eps, r, alpha) if plus else [F32(1)] * len(ds)
        c = np.zeros(b.shape, F32)
        acc = np.zeros(b.shape, F32)
        one = np.zeros(b.shape, F32)
        mag = np.abs(b.astype(np.float64))
        for d, li in zip(ds, lam):
            z = np.abs(d) > F32(eps)
            c = (c + z.astype(F32)).astype(F32)
            acc = (acc + np.where(z, d, F32(0))).astype(F32)
            one = (one + np.where(z, (d * li) if plus else d, F32(0))).astype(F32)
            mag = mag + np.abs(d.astype(np.float64)) * max(1.0, abs(float(li)))
        tau = np.where(c > 1, (acc / np.maximum(c, F32(1))).astype(F32), one)
        out[n] = (b + tau).astype(F32)
        bound[n] = mag
    return out, bound
