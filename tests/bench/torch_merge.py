#!/usr/bin/python3
"""The benchmark's PyTorch baseline: a merge done tensor by tensor the way
mergekit's per-tensor code does it, computed in float32.

Usage: torch_merge.py METHOD OUT BASE MODEL... [options]

METHOD is a mergekit name (linear, task_arithmetic, ties, dare_linear,
dare_ties, breadcrumbs, breadcrumbs_ties, della, della_linear, sce,
arcee_fusion, model_stock, nuslerp, multislerp, karcher, nearswap, ram,
ramplus_tl) or weld's (average, task-arithmetic, dare = dare_linear,
arcee-fusion, model-stock, ramplus = ramplus_tl), or `consensus` (TALL
masks + consensus over the task-arithmetic vector) or `pcb` (PCB-Merging,
following the authors' pcb-merging.py with each tensor as the unit), both
written the same tensor-by-tensor way.
BASE may be `-` for linear, nuslerp, multislerp and karcher; a BASE given to
linear or karcher is one more input, put last as mergekit does.

Options: --weights W[,W...] (default 1), --density D (mergekit default 1;
pcb: 0.1), --gamma G (0.01), --epsilon E (della: 0.15, ram: 1e-5,
multislerp's eps: 1e-8), --select-topk T (sce: 1), --t T (nearswap,
required), --r R (0.1) and --alpha A (0.2) (ramplus_tl), --max-iter N (10)
and --tol T (1e-5) (karcher), --clip C (pcb: 0.0001),
--lambda L (1), --normalize/--no-normalize (mergekit's
per-method default), --mask-lambda L (0.6), --k K (2), --seed N (0),
--threads N (default: all cores), --out-dtype bf16|f16|f32 (default: the
base's dtype), --stable (equal magnitudes ranked by lowest position, as weld
does, instead of torch's unspecified order).

Per output tensor, in lexicographic name order (mergekit's schedule): read
the tensor of every input (pread of its bytes, torch.frombuffer), convert to
float32, merge with torch operations following mergekit's code (argsort for
the magnitude top-k, torch.sort for breadcrumbs, torch.bernoulli and the L1
rescale for DARE, sign election on weighted deltas, 0 divisors -> 1; the
slerps, karcher and model_stock with torch.dot and norms over the flattened
tensor in float32, karcher's iterations on whole tensors), cast to
the output dtype and write it into model.safetensors under OUT. Output is
written as each tensor is done (mergekit buffers a whole shard in memory, so
this baseline's peak memory is lower than mergekit's).
"""

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import safetensors_io as stio  # noqa: E402

TORCH_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32,
                "F64": torch.float64}
ALIASES = {"average": "linear", "task-arithmetic": "task_arithmetic", "dare": "dare_linear",
           "arcee-fusion": "arcee_fusion", "model-stock": "model_stock", "ramplus": "ramplus_tl"}
# method -> (sparsifier, consensus, normalize default, rescale default)
GTA = {
    "task_arithmetic": (None, False, False, False),
    "ties": ("magnitude", True, True, False),
    "dare_ties": ("random", True, False, True),
    "dare_linear": ("random", False, False, True),
    "breadcrumbs": ("magnitude_outliers", False, False, False),
    "breadcrumbs_ties": ("magnitude_outliers", True, False, False),
    "della": ("magprune", True, True, True),
    "della_linear": ("magprune", False, False, True),
}
# methods of their own (not the GTA family)
OTHERS = ("linear", "consensus", "sce", "arcee_fusion", "pcb", "model_stock", "nuslerp",
          "multislerp", "karcher", "nearswap", "ram", "ramplus_tl")
# the methods that take no base (BASE `-`), or treat a given one as an input
NO_BASE = ("linear", "karcher")
OPTIONAL_BASE = ("nuslerp", "multislerp")
# per-method defaults of the shared options (mergekit's, or the authors')
DEFAULTS = {"density": {"pcb": [0.1]},
            "epsilon": {"della": 0.15, "della_linear": 0.15, "ram": 1e-5, "ramplus_tl": 1e-5,
                        "multislerp": 1e-8}}


def load(info):
    """float32 torch tensor of one stored tensor."""
    buf = bytearray(info.nbytes)
    fd = os.open(info.path, os.O_RDONLY)
    try:
        view = memoryview(buf)
        got = 0
        while got < info.nbytes:
            n = os.preadv(fd, [view[got:]], info.offset + got)
            if n <= 0:
                raise IOError("%s: short read of %r" % (info.path, info.name))
            got += n
    finally:
        os.close(fd)
    if info.nbytes == 0:
        return torch.zeros(info.shape, dtype=torch.float32)
    t = torch.frombuffer(buf, dtype=TORCH_DTYPES[info.dtype]).reshape(info.shape)
    return t.to(torch.float32)


# --- sparsifiers (mergekit sparsify.py, per tensor) ---------------------------

def rescaled_masked(t, mask, rescale):
    masked = t * mask
    if not rescale:
        return masked
    before = t.abs().sum()
    after = masked.abs().sum()
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * (before / after)


# mergekit's sorts leave the order of equal magnitudes unspecified; with
# --stable, equal magnitudes rank by lowest position first (weld's rule), so
# that the output can be compared with weld's bit for bit.
STABLE = False


def order_desc(w):
    """Indices of w by decreasing value."""
    if STABLE:
        return torch.sort(w, descending=True, stable=True)[1]
    return torch.argsort(w, descending=True)


def order_asc(w):
    """Indices of w by increasing value."""
    if STABLE:
        return torch.sort(w, descending=True, stable=True)[1].flip(0)
    return torch.sort(w)[1]


def magnitude(t, density):
    if density >= 1:
        return t
    k = int(density * t.numel())
    assert k > 0, "density %g keeps no element of a %d-element tensor" % (density, t.numel())
    w = t.abs().view(-1)
    idx = order_desc(w)[:k]
    mask = torch.zeros_like(w)
    mask[idx] = 1
    return t * mask.view_as(t)


def bernoulli(t, density, rescale):
    if density >= 1:
        return t
    mask = torch.bernoulli(torch.full_like(t, density))
    return rescaled_masked(t, mask, rescale)


def magnitude_outliers(t, density, gamma):
    if density >= 1:
        return t
    n = t.numel()
    target_n = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - target_n - n_top
    if n_bot < 0:
        n_top += n_bot
        n_bot = 0
    idx = order_asc(t.abs().view(-1))
    mask = torch.zeros(n, dtype=t.dtype)
    # the Python slice [n_bot:-n_top] is empty when n_top == 0, as in mergekit
    mask[idx[n_bot:-n_top]] = 1
    return t * mask.view_as(t)


def magprune(t, density, epsilon, rescale):
    """mergekit's della_magprune: keep probability from the rank of |t| in
    its row (dim 1; a 1-D tensor is one row), Bernoulli draws, L1 rescale."""
    if density >= 1:
        return t
    if density <= 0:
        return torch.zeros_like(t)
    x = t if t.dim() >= 2 else t.reshape(1, -1)
    ranks = torch.argsort(x.abs(), dim=1).argsort(dim=1).to(torch.float32) + 1
    lo = ranks.min(dim=1, keepdim=True).values
    hi = ranks.max(dim=1, keepdim=True).values
    norm = ((ranks - lo) / (hi - lo)).clamp(0, 1)
    mask = torch.bernoulli((density - epsilon) + norm * 2 * epsilon)
    return rescaled_masked(x, mask, rescale).reshape(t.shape)


def sparsify(kind, t, density, gamma, rescale, epsilon=0.15):
    if kind == "magprune":
        return magprune(t, density, epsilon, rescale)
    if kind == "magnitude":
        return magnitude(t, density)
    if kind == "random":
        return bernoulli(t, density, rescale)
    if kind == "magnitude_outliers":
        return magnitude_outliers(t, density, gamma)
    return t


# --- methods --------------------------------------------------------------------

def expand(w, n):
    return w * n if len(w) == 1 else w


def linear(xs, weights, normalize):
    stacked = torch.stack(xs, dim=0)
    w = torch.tensor(expand(weights, len(xs)), dtype=stacked.dtype)
    while w.dim() < stacked.dim():
        w = w.unsqueeze(-1)
    res = (stacked * w).sum(dim=0)
    if normalize:
        res = res / w.sum(dim=0)
    return res


def gta(method, b, xs, a):
    kind, consensus, norm_default, rescale = GTA[method]
    normalize = norm_default if a.normalize is None else a.normalize
    deltas = []
    for x, d in zip(xs, expand(a.density, len(xs))):
        deltas.append(sparsify(kind, x - b, d, a.gamma, rescale, a.epsilon))
    deltas = torch.stack(deltas, dim=0)
    w = torch.tensor(expand(a.weights, len(xs)), dtype=deltas.dtype)
    while w.dim() < deltas.dim():
        w = w.unsqueeze(-1)
    wd = deltas * w
    if consensus:
        sign = wd.sign()
        majority = (wd.sum(dim=0) >= 0).to(wd.dtype) * 2 - 1
        mask = sign == majority
        mixed = (wd * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = wd.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    if a.lam != 1:
        mixed = mixed * a.lam
    return b + mixed


def consensus(b, xs, a):
    """TALL masks over the task-arithmetic vector, keep where >= k agree."""
    w = expand(a.weights, len(xs))
    deltas = [x - b for x in xs]
    tau = deltas[0] * w[0]
    for wi, d in zip(w[1:], deltas[1:]):
        tau = tau + wi * d
    lams = expand(a.mask_lambda, len(xs))
    count = torch.zeros(b.shape, dtype=torch.int32)
    for d, lm in zip(deltas, lams):
        count += (d.abs() > lm * (tau - d).abs()).to(torch.int32)
    return b + a.lam * (tau * (count >= a.k))


def sce(b, xs, a):
    """mergekit's sce: top-k variance positions, TIES election on the
    unweighted task vectors, weights from their mean squares."""
    tv = torch.stack([x - b for x in xs], dim=0)
    if a.select_topk < 1:
        mask = torch.zeros(b.shape, dtype=tv.dtype)
        if a.select_topk > 0:
            var = torch.var(tv, dim=0, unbiased=False)
            k = int(torch.count_nonzero(var).item() * a.select_topk)
            if k > 0:
                idx = torch.topk(var.abs().view(-1), k).indices
                mask.view(-1)[idx] = 1
        tv = tv * mask
    majority = (tv.sum(dim=0) >= 0).to(tv.dtype) * 2 - 1
    erase = (tv.sign() == majority).to(tv.dtype)
    w = tv.pow(2).reshape(len(xs), -1).mean(dim=1)
    total = w.sum()
    w = torch.full_like(w, 1.0 / len(xs)) if total.abs() < 1e-6 else w / total
    while w.dim() < tv.dim():
        w = w.unsqueeze(-1)
    merged = (tv * w * erase).sum(dim=0) / (w * erase).sum(dim=0).clamp(min=1e-6)
    return b + merged


def arcee_fusion(b, x):
    """mergekit's arcee_fusion: importance |x - b| times the rows' KL of
    the softmaxes, kept above a fence of sampled quantiles."""
    diff = (x - b).abs()
    p = torch.softmax(x, dim=-1) + 1e-8
    q = torch.softmax(b, dim=-1) + 1e-8
    kl = torch.sum(p * torch.log(p / q), dim=-1)
    imp = diff * kl.unsqueeze(-1)
    flat = imp.reshape(-1)
    if flat.numel() > 1_000_000:
        flat = flat[torch.randperm(flat.numel())[:1_000_000]]
    s = torch.sort(flat).values
    n = s.numel()
    qs = [s[int(f * (n - 1))] for f in (0.25, 0.5, 0.75)]
    fence = qs[1] + 1.5 * (qs[2] - qs[0])
    return b + (x - b) * (imp >= fence).to(x.dtype)


def model_stock(b, xs):
    """mergekit's model_stock (filter_wise false): t from the mean pairwise
    cosine of the task vectors, out = t mean(X) + (1 - t) B."""
    offs = [(x - b).view(-1) for x in xs]
    norms = [torch.linalg.vector_norm(o) for o in offs]
    cos = []
    for i in range(len(offs)):
        for j in range(i + 1, len(offs)):
            c = torch.dot(offs[i], offs[j]) / torch.clamp(norms[i] * norms[j], min=1e-6)
            cos.append(torch.clamp(c, -1, 1))
    c = torch.stack(cos).mean()
    n = len(xs)
    den = 1 + (n - 1) * c
    # weld's rule where mergekit divides by zero: t = 0, the base
    t = n * c / den if den != 0 else torch.zeros(())
    return t * torch.stack(xs, dim=0).mean(dim=0) + (1 - t) * b


def nuslerp_pair(t, v0, v1):
    """mergekit's nuslerp of two flattened vectors (nuslerp_flatten true)."""
    shape = v0.shape
    v0, v1 = v0.reshape(-1), v1.reshape(-1)
    u0 = v0 / torch.clamp(torch.linalg.vector_norm(v0), min=1e-7)
    u1 = v1 / torch.clamp(torch.linalg.vector_norm(v1), min=1e-7)
    theta = torch.acos(torch.clamp(torch.dot(u0, u1), -1, 1))
    s = torch.sin(theta)
    if s.abs() < 1e-8:
        res = (1 - t) * v0 + t * v1
    else:
        res = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / s
    return res.reshape(shape)


def nuslerp(b, xs, a):
    w = expand(a.weights, 2)
    t = 0.5 if abs(w[0] + w[1]) < 1e-6 else w[1] / (w[0] + w[1])
    if b is None:
        return nuslerp_pair(t, xs[0], xs[1])
    return b + nuslerp_pair(t, xs[0] - b, xs[1] - b)


def multislerp(b, xs, a):
    """mergekit's multislerp: weighted mean direction on the sphere (one
    exponential-map step), scaled by the weighted mean norm."""
    if len(xs) == 1:
        return xs[0]
    eps = a.epsilon
    f = torch.stack([(x - b if b is not None else x).reshape(-1) for x in xs], dim=0)
    w = torch.tensor(expand(a.weights, len(xs)), dtype=f.dtype)
    if a.normalize is not False:
        w = w / w.sum()
    norms = torch.linalg.vector_norm(f, dim=1)
    u = f / (norms.unsqueeze(1) + eps)
    mu = (w.unsqueeze(1) * u).sum(dim=0)
    mu_norm = torch.linalg.vector_norm(mu)
    if mu_norm < eps:
        if len(xs) != 2:
            raise ValueError("the weighted sum of the input tensors is zero")
        res = w[0] * f[0] + w[1] * f[1]
    else:
        m = mu / mu_norm
        g = u - (u @ m).unsqueeze(1) * m.unsqueeze(0)
        v = (w.unsqueeze(1) * g).sum(dim=0)
        L = torch.linalg.vector_norm(v) + eps
        res = (m * torch.cos(L) + v * (torch.sin(L) / L)) * (w * norms).sum()
    res = res.reshape(xs[0].shape)
    return res if b is None else b + res


def karcher(xs, a):
    """mergekit's karcher: the Riemannian mean of the directions, on whole
    flattened tensors, scaled by the mean norm; every input counts 1/N."""
    if len(xs) == 1:
        return xs[0]
    tol = a.tol
    alphas = [1.0 / len(xs)] * len(xs)
    flat = [x.reshape(-1) for x in xs]
    norms = [float(torch.linalg.vector_norm(x)) for x in flat]
    units = [x / n if n > 0 else torch.zeros_like(x) for x, n in zip(flat, norms)]
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return torch.zeros_like(xs[0])
    total = sum(alphas[i] for i in valid)
    aw = {i: alphas[i] / total for i in valid}
    u = torch.zeros_like(flat[0])
    for i in valid:
        u = u + aw[i] * units[i]
    un = torch.linalg.vector_norm(u)
    u = u / un if un >= tol else units[valid[0]].clone()
    for _ in range(a.max_iter):
        tv = torch.zeros_like(u)
        for i in valid:
            c = torch.clamp(torch.dot(u, units[i]), -1, 1)
            th = torch.acos(c)
            if th < tol:
                continue
            tv = tv + aw[i] * (th / torch.sin(th)) * (units[i] - c * u)
        tn = torch.linalg.vector_norm(tv)
        if tn < tol:
            break
        u = torch.cos(tn) * u + torch.sin(tn) * (tv / tn)
        un = torch.linalg.vector_norm(u)
        if un > tol:
            u = u / un
    scale = sum(al * n for al, n in zip(alphas, norms))
    return (scale * u).reshape(xs[0].shape)


def nearswap(b, x, t):
    """mergekit's nearswap: take x where it is within t of the base."""
    a = torch.clamp(t / torch.clamp((b - x).abs(), min=1e-6), 0, 1)
    return a * x + (1 - a) * b


def ram(b, xs, a, plus):
    """mergekit's ram / ramplus_tl: unique task-vector entries kept (times
    lambda_i with ramplus_tl), overlapping ones averaged."""
    tv = torch.stack([(x - b).reshape(-1) for x in xs], dim=0)
    nz = tv.abs() > a.epsilon
    count = nz.sum(dim=0)
    overlap = count > 1
    unique = count == 1
    if plus:
        over_n = (nz & overlap).sum(dim=1).to(torch.float32)
        uniq_n = (nz & unique).sum(dim=1).to(torch.float32)
        rho = over_n / torch.clamp(uniq_n, min=a.epsilon)
        lam = (1 + a.r * torch.clamp(rho, 0, a.alpha)).unsqueeze(1)
    else:
        lam = 1
    merged = (tv * nz * unique * lam + tv * nz * overlap / torch.clamp(count, min=1)).sum(dim=0)
    return b + merged.reshape(b.shape)


def clamp_rows(x, min_ratio, max_ratio):
    """pcb-merging.py's clamp: per row, between the sorted values at
    int(d min_ratio) and int(d (1 - max_ratio) - 1)."""
    d = x.shape[1]
    s = torch.sort(x, dim=1).values
    lo = s[:, int(d * min_ratio)].unsqueeze(1)
    hi = s[:, int(d * (1 - max_ratio) - 1)].unsqueeze(1)
    return torch.minimum(torch.maximum(x, lo), hi)


def minmax_rows(x):
    """Per-row min-max normalisation; a constant row gives 0 (weld's rule,
    where the authors' code divides by zero)."""
    lo = x.min(dim=1, keepdim=True).values
    span = x.max(dim=1, keepdim=True).values - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(x))


def pcb(b, xs, a):
    """PCB-Merging (pcb-merging.py's PCB_merge) with the tensor as the unit:
    clipped task vectors weighted by the dropped, min-max normalised
    product of intra (exp(n N^2)) and inter (tanh(tau_i sum tau)) scores."""
    n = len(xs)
    tv = torch.stack([(x - b).reshape(-1) for x in xs], dim=0)
    clipped = clamp_rows(tv.abs(), a.clip, a.clip)
    signed = tv.sign() * clipped
    intra = torch.exp(n * minmax_rows(clipped) ** 2)
    inter = torch.tanh(tv * tv.sum(dim=0, keepdim=True))
    ratios = expand(a.density, n)
    scores = intra * inter
    keep = torch.cat([minmax_rows(clamp_rows(scores[i:i + 1], 1 - r, 0))
                      for i, r in enumerate(ratios)], dim=0)
    w = torch.tensor(expand(a.weights, n), dtype=tv.dtype).unsqueeze(1)
    merged = (w * signed * keep).sum(dim=0) / torch.clamp(keep.sum(dim=0), min=1e-12)
    return b + a.lam * merged.reshape(b.shape)


def floats(text):
    return [float(v) for v in text.split(",")]


def main(argv):
    ap = argparse.ArgumentParser(description="mergekit-style per-tensor merge in PyTorch")
    ap.add_argument("method")
    ap.add_argument("out")
    ap.add_argument("base")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--weights", type=floats, default=[1.0])
    ap.add_argument("--density", type=floats)
    ap.add_argument("--gamma", type=float, default=0.01)
    ap.add_argument("--epsilon", type=float)
    ap.add_argument("--t", type=float)
    ap.add_argument("--r", type=float, default=0.1)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--clip", type=float, default=0.0001)
    ap.add_argument("--select-topk", type=float, default=1.0)
    ap.add_argument("--lambda", dest="lam", type=float, default=1.0)
    ap.add_argument("--normalize", dest="normalize", action="store_true", default=None)
    ap.add_argument("--no-normalize", dest="normalize", action="store_false")
    ap.add_argument("--mask-lambda", type=floats, default=[0.6])
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out-dtype", choices=["bf16", "f16", "f32"])
    ap.add_argument("--stable", action="store_true",
                    help="rank equal magnitudes by lowest position (weld's rule)")
    a = ap.parse_args(argv)
    global STABLE
    STABLE = a.stable
    method = ALIASES.get(a.method, a.method)
    if method not in GTA and method not in OTHERS:
        ap.error("unknown method %r" % a.method)
    if a.density is None:
        a.density = DEFAULTS["density"].get(method, [1.0])
    if a.epsilon is None:
        a.epsilon = DEFAULTS["epsilon"].get(method, 0.15)
    if method == "nearswap" and a.t is None:
        ap.error("nearswap needs --t")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    paths = list(a.models)
    if method in NO_BASE:
        if a.base != "-":
            paths.append(a.base)
        base = None
    elif method in OPTIONAL_BASE and a.base == "-":
        base = None
    else:
        if a.base == "-":
            ap.error("%s needs a base" % method)
        base = stio.model_index(a.base)
    inputs = [stio.model_index(p) for p in paths]
    ref = base if base is not None else inputs[0]
    names = sorted(n for n, i in ref.items() if i.dtype in TORCH_DTYPES)
    out_dt = a.out_dtype.upper() if a.out_dtype else None
    specs = [(n, out_dt or ref[n].dtype, ref[n].shape) for n in names]
    os.makedirs(a.out, exist_ok=True)
    writer = stio.StreamWriter(os.path.join(a.out, "model.safetensors"), specs)
    t0 = time.time()
    for n in names:
        xs = [load(m[n]) for m in inputs]
        if method == "linear":
            res = linear(xs, a.weights, True if a.normalize is None else a.normalize)
        elif method == "consensus":
            res = consensus(load(base[n]), xs, a)
        elif method == "sce":
            res = sce(load(base[n]), xs, a)
        elif method == "arcee_fusion":
            res = arcee_fusion(load(base[n]), xs[0])
        elif method == "karcher":
            res = karcher(xs, a)
        elif method in OPTIONAL_BASE:
            b = load(base[n]) if base is not None else None
            res = nuslerp(b, xs, a) if method == "nuslerp" else multislerp(b, xs, a)
        elif method == "model_stock":
            res = model_stock(load(base[n]), xs)
        elif method == "nearswap":
            res = nearswap(load(base[n]), xs[0], a.t)
        elif method in ("ram", "ramplus_tl"):
            res = ram(load(base[n]), xs, a, method == "ramplus_tl")
        elif method == "pcb":
            res = pcb(load(base[n]), xs, a)
        else:
            res = gta(method, load(base[n]), xs, a)
        dt = out_dt or ref[n].dtype
        res = res.to(TORCH_DTYPES[dt]).contiguous()
        if dt == "BF16":
            arr = res.view(torch.int16).numpy().view("<u2")
        else:
            arr = res.numpy()
        writer.write(n, arr)
        del xs, res, arr
    writer.close()
    sys.stderr.write("torch_merge: %s: %d tensors in %.1f s with %d threads\n"
                     % (method, len(names), time.time() - t0, a.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
