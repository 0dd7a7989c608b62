#!/usr/bin/python3
"""Check that the benchmark's PyTorch baseline (torch_merge.py) computes the
merges the NumPy reference (tests/ref/weld_ref.py) defines, on the small
benchmark family: linear, task_arithmetic and consensus must agree bit for
bit; ties and breadcrumbs too when torch_merge ranks equal magnitudes by
lowest position (--stable); dare_linear only in distribution (torch's RNG):
its keep fraction and its mean delta are compared. pcb, model_stock,
nuslerp, multislerp, karcher, nearswap, ram and ramplus_tl follow mergekit's
float32 expressions (and pcb the authors') where the reference computes its
coefficients in double and its formulas in another order: each must agree
within a stated fraction of the reference's magnitude bound per element.

Usage: check_torch_ref.py [WORKDIR]   (default: a temporary folder)
Prints one line per check and `N passed, M failed`.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import safetensors_io as stio  # noqa: E402
import weld_ref as R  # noqa: E402

PY = sys.executable or "/usr/bin/python3"


def torch_run(method, out, base, models, *opts):
    cmd = [PY, os.path.join(HERE, "torch_merge.py"), method, out, base] + models + \
          ["--out-dtype", "f32", "--threads", "2"] + list(opts)
    subprocess.run(cmd, check=True, capture_output=True)
    return stio.load_model(out)


def exact(got, ref):
    bad = [n for n in ref if not np.array_equal(got.get(n), ref[n])]
    if bad or set(got) != set(ref):
        return False, "differs in %d tensors, e.g. %s" % (len(bad), bad[:2])
    return True, "bit-identical (%d tensors)" % len(ref)


def close(got, ref, rtol):
    """got within rtol of the reference (out, bound) in every element."""
    out, bound = ref
    worst = 0.0
    for n in out:
        if n not in got or got[n].shape != out[n].shape:
            return False, "tensor %s missing or of another shape" % n
        err = np.abs(got[n].astype(np.float64) - out[n]) / np.maximum(bound[n], 1e-30)
        worst = max(worst, float(err.max()) if err.size else 0.0)
    return worst <= rtol, "largest |torch - reference| / bound %.2g (allowed %g)" % (worst, rtol)


def main(argv):
    work = argv[0] if argv else tempfile.mkdtemp(prefix="weld-torch-ref.")
    fam = os.path.join(work, "family")
    subprocess.run([PY, os.path.join(HERE, "gen_family.py"), fam, "--size", "small"],
                   check=True, capture_output=True)
    b, fts = os.path.join(fam, "base"), [os.path.join(fam, m) for m in ("ft1", "ft2", "ft3")]
    base = stio.load_model(b)
    ms = [stio.load_model(p) for p in fts]
    checks = []
    try:
        checks.append(("linear", exact(torch_run("linear", work + "/lin", "-", [b] + fts),
                                       R.average([base] + ms))))
        checks.append(("linear weights", exact(
            torch_run("linear", work + "/linw", "-", fts, "--weights", "0.5,0.25,1"),
            R.average(ms, [0.5, 0.25, 1]))))
        checks.append(("task_arithmetic", exact(
            torch_run("task_arithmetic", work + "/ta", b, fts, "--lambda", "0.5", "--weights", "1,2,0.5"),
            R.task_arithmetic(base, ms, [1, 2, 0.5], lam=0.5))))
        checks.append(("ties --stable", exact(
            torch_run("ties", work + "/ties", b, fts, "--density", "0.2", "--stable"),
            R.ties(base, ms, density=0.2))))
        checks.append(("breadcrumbs --stable", exact(
            torch_run("breadcrumbs", work + "/bc", b, fts, "--density", "0.2", "--gamma", "0.01", "--stable"),
            R.breadcrumbs(base, ms, density=0.2, gamma=0.01))))
        checks.append(("consensus", exact(torch_run("consensus", work + "/cons", b, fts),
                                          R.consensus(base, ms))))
        # DARE: same law, different generator
        got = torch_run("dare_linear", work + "/dare", b, fts[:1], "--density", "0.3",
                        "--no-normalize")
        ref = R.dare(base, ms[:1], density=0.3, rescale="l1")
        kg = np.mean(np.concatenate([(got[n] != base[n]).ravel() for n in base]))
        kr = np.mean(np.concatenate([(ref[n] != base[n]).ravel() for n in base]))
        d = np.concatenate([(ms[0][n] - base[n]).ravel() for n in base])
        mg = np.concatenate([(got[n] - base[n]).ravel() for n in base])
        mr = np.concatenate([(ref[n] - base[n]).ravel() for n in base])
        ok = abs(kg - kr) < 0.01 and abs(np.abs(mg).sum() / np.abs(d).sum() - 1) < 1e-3 \
            and abs(np.abs(mr).sum() / np.abs(d).sum() - 1) < 1e-3
        checks.append(("dare_linear (distribution)",
                       (ok, "keep fraction torch %.4f, reference %.4f; L1 of the delta kept" % (kg, kr))))
        # float32 coefficients (torch, as mergekit) against double ones (the
        # reference). Element-wise methods: a few float32 roundings of the
        # bound. The slerps and model_stock take cosines of nearly orthogonal
        # task vectors (c ~ 1e-3 on this family) from float32 dot products,
        # right to ~1e-7 absolute, so ~1e-4 relative in c and in t or the
        # angles. karcher's stop test may end one iteration apart (METHODS
        # 8), within its tol. pcb's scores in float32 move elements near the
        # clip and drop thresholds, whose weights then mix the clipped
        # vectors otherwise.
        for name, tm, tb, tms, topts, rargs, rtol in (
                ("pcb", "pcb", b, fts, ["--density", "0.1"],
                 ["pcb", "--base", b, "--density", "0.1"] + fts, 1e-2),
                ("model_stock", "model_stock", b, fts, [], ["model-stock", "--base", b] + fts, 2e-4),
                ("nuslerp", "nuslerp", b, fts[:2], ["--weights", "1,3"],
                 ["nuslerp", "--base", b, "--weights", "1,3"] + fts[:2], 2e-4),
                ("nuslerp without base", "nuslerp", "-", fts[:2], ["--weights", "1,3"],
                 ["nuslerp", "--weights", "1,3"] + fts[:2], 2e-4),
                ("multislerp", "multislerp", b, fts, [], ["multislerp", "--base", b] + fts, 2e-4),
                ("karcher", "karcher", "-", fts, [], ["karcher"] + fts, 5e-5),
                ("nearswap", "nearswap", b, fts[:1], ["--t", "0.001"],
                 ["nearswap", "--base", b, "--t", "0.001"] + fts[:1], 1e-6),
                ("ram", "ram", b, fts, ["--epsilon", "1e-4"],
                 ["ram", "--base", b, "--epsilon", "1e-4"] + fts, 1e-6),
                ("ramplus_tl", "ramplus_tl", b, fts, ["--epsilon", "1e-4"],
                 ["ram", "--plus", "--base", b, "--epsilon", "1e-4"] + fts, 1e-6)):
            got = torch_run(tm, work + "/" + name.replace(" ", "-"), tb, tms, *topts)
            checks.append((name, close(got, R.run(rargs), rtol)))
    except subprocess.CalledProcessError as e:
        checks.append(("torch_merge", (False, e.stderr.decode()[-300:])))
    finally:
        if not argv:
            shutil.rmtree(work, ignore_errors=True)
    failed = 0
    for name, (ok, msg) in checks:
        failed += not ok
        print("%s %-28s %s" % ("ok  " if ok else "FAIL", name, msg))
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
