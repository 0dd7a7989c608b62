"""NumPy reference of weld's model_stock (METHODS.md 4).

Written from METHODS.md, independently of weld's C code; imported by
weld_ref.py, whose conventions it keeps: task vectors are float32
differences, dot products and norms are float64, the output arithmetic is
float32 in the order of the formula, and each method returns a magnitude
bound per element for the comparison tolerance.
"""

import numpy as np

F32 = np.float32


def _f32(x):
    return np.asarray(x, dtype=F32)


def stock_t(deltas):
    """t = n c / (1 + (n - 1) c) for one unit (a list of float64 vectors);
    returns (t, degenerate)."""
    n = len(deltas)
    norms = [float(np.sqrt(np.dot(d, d))) for d in deltas]
    cs = []
    for i in range(n):
        for j in range(i + 1, n):
            c = float(np.dot(deltas[i], deltas[j])) / max(norms[i] * norms[j], 1e-6)
            cs.append(min(max(c, -1.0), 1.0))
    c = sum(cs) / len(cs)
    den = 1 + (n - 1) * c
    if den == 0:
        return 0.0, True
    return n * c / den, False


def model_stock(base, models, filter_wise, names):
    """out = t * mean(X) + (1 - t) * B; t per tensor, or per row (last
    dimension; a 1-D tensor is one row) with filter_wise."""
    n = len(models)
    if n < 2:
        raise ValueError("model_stock needs at least two models besides the base")
    out, bound = {}, {}
    for name in names:
        b = _f32(base[name])
        xs = [_f32(m[name]) for m in models]
        w = b.shape[-1] if (filter_wise and b.ndim >= 1) else b.size
        rows = b.size // w if w else 0
        ds = [(x - b).astype(np.float64).reshape(rows, w) for x in xs]
        ts = np.zeros(rows, np.float64)
        for r in range(rows):
            ts[r] = stock_t([d[r] for d in ds])[0]
        acc = np.zeros(b.shape, F32)
        for x in xs:
            acc = (acc + x).astype(F32)
        mean = (acc / F32(n)).astype(F32).reshape(rows, w)
        t = ts.astype(F32)[:, None]
        res = (t * mean + (F32(1) - t) * b.reshape(rows, w)).astype(F32)
        out[name] = res.reshape(b.shape)
        mag = (np.abs(ts)[:, None] * (sum(np.abs(x.astype(np.float64)) for x in xs) / n).reshape(rows, w)
               + np.abs(1 - ts)[:, None] * np.abs(b.astype(np.float64)).reshape(rows, w))
        bound[name] = mag.reshape(b.shape)
    return out, bound
