"""Reference of the SVD merges (METHODS 13-15: tsv-m, iso-c, iso-cts) in
NumPy, with numpy.linalg in float64, written from METHODS.md.

D_i = w_i * delta_i, delta_i = X_i - B in float32 (DESIGN 3), then float64.
A 2-D tensor not matched by the exclude regex is decomposed; the output is
float32(B + update) with the update computed in float64, so weld and this
reference may differ only where the two float64 updates round to different
float32 neighbours: the bound returned makes the checker's tolerance one
float32 ulp of the output. Other tensors are the mean of the weighted task
vectors in float32 arithmetic (weld's order: the weighted sum, divided by
T, times lambda, plus B), with the usual 16-ulp tolerance of weld_ref.py.
"""

import math
import re

import numpy as np

F32 = np.float32
U = 2.0 ** -24
TOL_ULPS = 16


def zero_tol(a):
    """METHODS 0: sqrt(max(m, n)) * 2^-23 * ||A||_F."""
    return math.sqrt(max(a.shape)) * 2.0 ** -23 * float(np.sqrt(np.sum(a * a)))


def svd(a):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return u, s, vt


def polar(m):
    """Sum of p_j q_j^T over the triplets above the numerically-zero threshold."""
    if m.size == 0:
        return m
    p, mu, qt = svd(m)
    keep = mu > zero_tol(m)
    return p[:, keep] @ qt[keep, :]


def tsv_m(ds):
    t = len(ds)
    m, n = ds[0].shape
    r = min(m, n) // t
    us, ss, vs = [], [], []
    for d in ds:
        if r == 0:
            break
        u, s, vt = svd(d)
        keep = [j for j in range(min(r, len(s))) if s[j] > zero_tol(d)]
        us.append(u[:, keep])
        ss.append(s[keep])
        vs.append(vt[keep, :].T)
    if not us or sum(len(s) for s in ss) == 0:
        return np.zeros((m, n))
    uc, sc, vc = np.hstack(us), np.concatenate(ss), np.hstack(vs)
    return polar(uc) @ np.diag(sc) @ polar(vc).T


def iso_c(ds):
    msum = np.sum(ds, axis=0)
    u, s, vt = svd(msum)
    mean = float(np.sum(s)) / len(s)
    keep = s > zero_tol(msum)
    return mean * (u[:, keep] @ vt[keep, :])


def cts_dims(k, t, f):
    c = int(k * f)
    g = round((k - c) / t) * t
    if g > k:
        raise ValueError("common_space_fraction %g: %d task dimensions exceed k = %d" % (f, g, k))
    return k - g, g // t


def iso_cts(ds, f):
    t = len(ds)
    m, n = ds[0].shape
    k = min(m, n)
    c, p = cts_dims(k, t, f)
    msum = np.sum(ds, axis=0)
    u, s, vt = svd(msum)
    ck = [j for j in range(c) if s[j] > zero_tol(msum)]
    uc, sc, vcs = u[:, ck], s[ck], vt[ck, :]
    us, ss, vs = [], [], []
    for d in ds:
        if p == 0:
            break
        r = d - uc @ (uc.T @ d)
        ur, sr, vtr = svd(r)
        keep = [j for j in range(min(p, len(sr))) if sr[j] > zero_tol(d)]
        us.append(ur[:, keep])
        ss.append(sr[keep])
        vs.append(vtr[keep, :].T)
    us.append(uc)
    ss.append(sc)
    vs.append(vcs.T)
    uall, sall, vall = np.hstack(us), np.concatenate(ss), np.hstack(vs)
    if sall.size == 0:
        return np.zeros((m, n))
    mean = float(np.sum(sall)) / k
    return mean * (polar(uall) @ polar(vall).T)


def merge(meth, base, models, weights, lam, common_fraction=0.8, exclude=None, names=None):
    """Returns (out, bound) dicts of float32 outputs and tolerance magnitudes."""
    out, bound = {}, {}
    rx = re.compile(exclude) if exclude else None
    t = len(models)
    for name in names or base:
        b = base[name]
        deltas = [(m[name] - b).astype(F32) for m in models]
        if b.ndim == 2 and not (rx and rx.search(name)):
            ds = [float(w) * d.astype(np.float64) for w, d in zip(weights, deltas)]
            if meth == "tsv-m":
                upd = tsv_m(ds)
            elif meth == "iso-c":
                upd = iso_c(ds)
            else:
                upd = iso_cts(ds, common_fraction)
            r = (b.astype(np.float64) + float(lam) * upd).astype(F32)
            out[name] = r
            # one float32 ulp of the output
            ulp = np.spacing(np.maximum(np.abs(r), F32(2.0 ** -100))).astype(np.float64)
            bound[name] = ulp / (TOL_ULPS * U)
            continue
        acc = np.zeros(b.shape, F32)
        mag = np.zeros(b.shape, np.float64)
        for w, d in zip(weights, deltas):
            acc = (acc + F32(w) * d).astype(F32)
            mag += np.abs(float(w) * d.astype(np.float64))
        res = (b + F32(lam) * (acc / F32(t))).astype(F32)
        out[name] = res
        bound[name] = np.abs(b.astype(np.float64)) + abs(float(lam)) * mag / t
    return out, bound
