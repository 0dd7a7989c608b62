#!/bin/sh
# test_pcb_nonfinite.sh - pcb --allow-nonfinite (weld-pcb(1), NON-FINITE
# VALUES): a NaN beta ranks above every value, whatever its sign, in every
# path that finds the drop threshold and the largest beta (the window of a
# large unit, the histogram passes, the rows in memory). So the output is
# the same for any -j and --max-memory in each scope, and the NumPy
# reference's, NaN where it is NaN and bit for bit elsewhere.
#
# usage: WELD=./weld sh tests/cli/test_pcb_nonfinite.sh
set -eu

. "$(dirname "$0")/harness.sh"
REF="$ROOT/tests/ref/weld_ref.py"
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "test_pcb_nonfinite: needs $PYTHON with NumPy (make deps, or apt-get install python3-numpy)" >&2
	exit 1
fi

# One f32 tensor of 1200 x 1024 (a unit above 2^20 elements: its threshold
# comes from a window with room for one, from histogram passes without);
# each fine-tune has 50 NaN and 20 infinities at random, and on purpose:
# +inf and -inf at one element (inf - inf: a NaN of the machine's sign),
# +inf where another delta is 0 (0 * inf), two NaN in a row and two +inf
# in another (NaN and infinite clip bounds with --scope row).
fixture_py "$T" <<'PY'
rng = np.random.default_rng(12)
shape = (1200, 1024)
base = rng.standard_normal(shape).astype(np.float32)
fts = []
for i in range(3):
    ft = (base + np.float32(0.01) * rng.standard_normal(shape)).astype(np.float32).ravel()
    pos = rng.choice(ft.size, 70, replace=False)
    ft[pos[:50]] = np.nan
    ft[pos[50:]] = np.where(rng.random(20) < 0.5, np.inf, -np.inf)
    fts.append(ft.reshape(shape))
fts[0][10, 5], fts[1][10, 5] = np.inf, -np.inf
fts[0][11, 7], fts[1][11, 7] = np.inf, base[11, 7]
fts[0][20, 3] = fts[0][20, 900] = np.nan
fts[1][21, 8] = fts[1][21, 600] = np.inf
for name, t in [("base", base)] + [("ft%d" % (i + 1), f) for i, f in enumerate(fts)]:
    stio.save_model(os.path.join(sys.argv[1], name), {"w": t})
PY
IN="--base $T/base $T/ft1 $T/ft2 $T/ft3"

# like_ref WELD_OUT REF_OUT: NaN at the same elements, except that weld's is
# also NaN wherever an input is (the reference's need not be), and the same
# bits at every other element (a NaN's sign and payload come from the
# machine's arithmetic, not from the method)
like_ref() {
	"$PYTHON" - "$1" "$2" "$T" "$ROOT/tests/ref" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[4])
import numpy as np
import safetensors_io as stio
w, r = (np.asarray(stio.load_model(p)["w"], np.float32) for p in sys.argv[1:3])
inputs = [np.asarray(stio.load_model(os.path.join(sys.argv[3], n))["w"], np.float32)
          for n in ("base", "ft1", "ft2", "ft3")]
in_nan = np.logical_or.reduce([np.isnan(x) for x in inputs])
assert np.isnan(w[in_nan]).all(), "weld is not NaN where an input is"
rest = ~in_nan
assert (np.isnan(w) == np.isnan(r))[rest].all(), "NaN at other elements than the reference's"
fin = rest & ~np.isnan(w)
assert (w[fin].view(np.uint32) == r[fin].view(np.uint32)).all(), \
    "%d values differ" % int((w[fin].view(np.uint32) != r[fin].view(np.uint32)).sum())
PY
}

for sc in tensor row model; do
	_all=true
	for cfg in "1 16M" "2 16M" "1 256M" "2 256M"; do
		set -- $cfg
		if ! "$WELD" pcb $IN --scope $sc --allow-nonfinite -q -j $1 --max-memory $2 \
			-o "$T/w-$sc-$1-$2" 2>>"$T/stderr"; then
			_all=false
		fi
	done
	if ! $_all; then
		not_ok "pcb --scope $sc --allow-nonfinite ran"
		continue
	fi
	_same=true
	for o in "$T/w-$sc-2-16M" "$T/w-$sc-1-256M" "$T/w-$sc-2-256M"; do
		cmp -s "$T/w-$sc-1-16M/model.safetensors" "$o/model.safetensors" || _same=false
	done
	if $_same; then
		ok "pcb --scope $sc --allow-nonfinite: same file for -j 1/2 and --max-memory 16M/256M"
	else
		not_ok "pcb --scope $sc --allow-nonfinite: outputs differ between -j / --max-memory"
	fi
	if "$PYTHON" "$REF" pcb $IN --scope $sc -o "$T/r-$sc" 2>/dev/null &&
	   like_ref "$T/w-$sc-1-16M" "$T/r-$sc" 2>"$T/stderr"; then
		ok "pcb --scope $sc --allow-nonfinite: the reference's NaN and values"
	else
		not_ok "pcb --scope $sc --allow-nonfinite: the reference's NaN and values"
	fi
	rm -rf "$T/w-$sc-"* "$T/r-$sc"
done

# the two budgets take different paths to the threshold (the window reads
# the unit once less when its guess holds, or more when it misses): the
# test above compares them, not one path twice
for sc in tensor model; do
	small=$(bytes_read "$T/b1" pcb --allow-nonfinite $IN --scope $sc --max-memory 16M)
	large=$(bytes_read "$T/b2" pcb --allow-nonfinite $IN --scope $sc --max-memory 256M)
	if [ -n "$small" ] && [ -n "$large" ] && [ "$small" != "$large" ]; then
		ok "pcb --scope $sc: 16M and 256M read the unit a different number of times"
	else
		echo "bytes read: '$small' at 16M, '$large' at 256M" >>"$T/stderr"
		not_ok "pcb --scope $sc: 16M and 256M read the unit a different number of times"
	fi
done

summary
