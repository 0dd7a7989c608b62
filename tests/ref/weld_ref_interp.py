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


def _units(b, flatten):
    """(rows, width) of the vectors of a tensor: one when flattened, else
    the rows along the last dimension (a 0-D or 1-D tensor is one row)."""
    if flatten or b.ndim == 0:
        return 1, b.size
    return b.size // b.shape[-1], b.shape[-1]


def nuslerp(base, models, weights, flatten, names, row_wise=False):
    """Slerp of two models (task vectors with a base) at t = w2/(w1 + w2),
    per tensor, per row, or (row_wise, not flattened) per vector along
    dim 0; the lerp where |sin theta| < 1e-8."""
    if len(models) != 2:
        raise ValueError("nuslerp takes exactly two models")
    w0, w1 = weights or (1.0, 1.0)
    t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
    out, bound = {}, {}
    for name in names:
        x0, x1 = _f32(models[0][name]), _f32(models[1][name])
        b = _f32(base[name]) if base is not None else None
        v0 = (x0 - b).astype(F32) if b is not None else x0
        v1 = (x1 - b).astype(F32) if b is not None else x1
        cols = row_wise and not flatten and x0.ndim >= 1
        if cols:
            # vectors along dim 0: the columns of (d0, rest)
            d0 = x0.shape[0]
            v0r, v1r = v0.reshape(d0, -1).T, v1.reshape(d0, -1).T
            rows = v0r.shape[0]
        else:
            rows, w = _units(x0, flatten)
            v0r, v1r = v0.reshape(rows, w), v1.reshape(rows, w)
        c = np.zeros((rows, 3), F32)
        for r in range(rows):
            p, q = v0r[r].astype(np.float64), v1r[r].astype(np.float64)
            n0 = max(float(np.sqrt(np.dot(p, p))), 1e-7)
            n1 = max(float(np.sqrt(np.dot(q, q))), 1e-7)
            th = float(np.arccos(min(max(float(np.dot(p, q)) / (n0 * n1), -1.0), 1.0)))
            s = float(np.sin(th))
            if abs(s) < 1e-8:
                c[r] = (1 - t, t, 1)
            else:
                c[r] = (np.sin((1 - t) * th), np.sin(t * th), s)
        res = ((c[:, 0:1] * v0r + c[:, 1:2] * v1r) / c[:, 2:3]).astype(F32)
        mag = ((np.abs(c[:, 0:1].astype(np.float64)) * np.abs(v0r) + np.abs(c[:, 1:2].astype(np.float64))
                * np.abs(v1r)) / np.abs(c[:, 2:3].astype(np.float64)))
        if cols:
            res, mag = res.T, mag.T
        res, mag = np.ascontiguousarray(res).reshape(x0.shape), np.ascontiguousarray(mag).reshape(x0.shape)
        if b is not None:
            res = (b + res).astype(F32)
            mag = mag + np.abs(b.astype(np.float64))
        out[name], bound[name] = res, mag
    return out, bound


def multislerp(base, models, weights, normalize, eps, names):
    """METHODS 7 in its closed form: (sum w_i |F_i|) mu / |mu|, mu = sum
    w_i F_i / (|F_i| + eps); the linear fallback for two inputs whose mu
    vanishes; one input: itself."""
    n = len(models)
    w = list(weights or [1.0] * n)
    if normalize:
        sw = sum(w)
        if sw == 0:
            raise ValueError("multislerp: the weights sum to 0")
        w = [wi / sw for wi in w]
    out, bound = {}, {}
    for name in names:
        xs = [_f32(m[name]) for m in models]
        b = _f32(base[name]) if base is not None else None
        if n == 1:
            out[name], bound[name] = xs[0], np.abs(xs[0].astype(np.float64))
            continue
        fs = [(x - b).astype(F32) if b is not None else x for x in xs]
        f64 = [f.astype(np.float64).ravel() for f in fs]
        nrm = [float(np.sqrt(np.dot(f, f))) for f in f64]
        a = [wi / (ni + eps) for wi, ni in zip(w, nrm)]
        mu2 = 0.0
        for i in range(n):
            for j in range(n):
                mu2 += a[i] * a[j] * float(np.dot(f64[i], f64[j]))
        mu = np.sqrt(max(mu2, 0.0))
        if mu < eps:
            if n != 2:
                raise ValueError("multislerp: the weighted sum is zero")
            beta = w
        else:
            scale = sum(wi * ni for wi, ni in zip(w, nrm))
            beta = [scale * ai / mu for ai in a]
        acc = np.zeros(fs[0].shape, F32)
        mag = np.zeros(fs[0].shape, np.float64)
        for bi, f in zip(beta, fs):
            acc = (acc + F32(bi) * f).astype(F32)
            mag = mag + abs(bi) * np.abs(f.astype(np.float64))
        if b is not None:
            acc = (b + acc).astype(F32)
            mag = mag + np.abs(b.astype(np.float64))
        out[name], bound[name] = acc, 2 * mag
    return out, bound


def karcher(models, max_iter, tol, names):
    """METHODS 8 step by step on the flattened tensors in float64 (not
    through the Gram matrix, as weld does): every input counts 1/N."""
    n = len(models)
    alpha = 1.0 / n
    out, bound = {}, {}
    for name in names:
        xs = [_f32(m[name]).astype(np.float64).ravel() for m in models]
        shape = np.shape(models[0][name])
        if n == 1:
            out[name] = _f32(models[0][name])
            bound[name] = np.abs(out[name].astype(np.float64))
            continue
        nrm = [float(np.sqrt(np.dot(x, x))) for x in xs]
        us = [x / ni if ni > 0 else np.zeros_like(x) for x, ni in zip(xs, nrm)]
        valid = [i for i in range(n) if nrm[i] > tol]
        scale = sum(alpha * ni for ni in nrm)
        if not valid:
            out[name] = np.zeros(shape, F32)
            bound[name] = np.zeros(shape)
            continue
        sa = sum(alpha for _ in valid)
        a = {i: alpha / sa for i in valid}
        u = sum(a[i] * us[i] for i in valid)
        un = float(np.sqrt(np.dot(u, u)))
        u = u / un if un >= tol else us[valid[0]].copy()
        for _ in range(max_iter):
            T = np.zeros_like(u)
            for i in valid:
                c = min(max(float(np.dot(u, us[i])), -1.0), 1.0)
                th = float(np.arccos(c))
                if th < tol:
                    continue
                T = T + a[i] * (th / np.sin(th)) * (us[i] - c * u)
            tn = float(np.sqrt(np.dot(T, T)))
            if tn < tol:
                break
            u = np.cos(tn) * u + np.sin(tn) * T / tn
            un = float(np.sqrt(np.dot(u, u)))
            if un > tol:
                u = u / un
        res = scale * u
        out[name] = res.astype(F32).reshape(shape)
        bound[name] = (sum(np.abs(x) for x in xs) * scale / max(min(nrm), 1e-30)).reshape(shape)
    return out, bound
