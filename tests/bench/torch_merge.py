#!/usr/bin/python3
"""The benchmark's PyTorch baseline: a merge done tensor by tensor the way
mergekit's per-tensor code does it, computed in float32.

Usage: torch_merge.py METHOD OUT BASE MODEL... [options]

METHOD is a mergekit name (linear, task_arithmetic, ties, dare_linear,
dare_ties, breadcrumbs, breadcrumbs_ties, della, della_linear, sce,
arcee_fusion) or weld's (average, task-arithmetic, dare = dare_linear,
arcee-fusion), or `consensus` (TALL masks + consensus over the
task-arithmetic vector, written the same tensor-by-tensor way).
BASE may be `-` for linear; a BASE given to linear is one more input, put
last as mergekit does.

Options: --weights W[,W...] (default 1), --density D (mergekit default 1),
--gamma G (0.01), --epsilon E (della: 0.15), --select-topk T (sce: 1),
--lambda L (1), --normalize/--no-normalize (mergekit's
per-method default), --mask-lambda L (0.6), --k K (2), --seed N (0),
--threads N (default: all cores), --out-dtype bf16|f16|f32 (default: the
base's dtype), --stable (equal magnitudes ranked by lowest position, as weld
does, instead of torch's unspecified order).

Per output tensor, in lexicographic name order (mergekit's schedule): read
the tensor of every input (pread of its bytes, torch.frombuffer), convert to
float32, merge with torch operations following mergekit's code (argsort for
the magnitude top-k, torch.sort for breadcrumbs, torch.bernoulli and the L1
rescale for DARE, sign election on weighted deltas, 0 divisors -> 1), cast to
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
           "arcee-fusion": "arcee_fusion"}
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
OTHERS = ("linear", "consensus", "sce", "arcee_fusion")


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


def floats(text):
    return [float(v) for v in text.split(",")]


def main(argv):
    ap = argparse.ArgumentParser(description="mergekit-style per-tensor merge in PyTorch")
    ap.add_argument("method")
    ap.add_argument("out")
    ap.add_argument("base")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--weights", type=floats, default=[1.0])
    ap.add_argument("--density", type=floats, default=[1.0])
    ap.add_argument("--gamma", type=float, default=0.01)
    ap.add_argument("--epsilon", type=float, default=0.15)
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
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    paths = list(a.models)
    if method == "linear":
        if a.base != "-":
            paths.append(a.base)
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
