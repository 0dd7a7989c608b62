#!/bin/sh
# test_della_plateaus.sh - della's ranks where many deltas share one
# magnitude (bf16 fine-tunes: exact zeros, one unit in the last place,
# differences of two bf16 numbers, a few of them with more bits than bf16
# holds): every rescale matches the NumPy reference bit for bit (float32
# output, before any rounding to bf16), and gives the same bytes for any
# -j and --max-memory, its keep bits kept between the passes or not.
. "$(dirname "$0")/harness.sh"
REF="$ROOT/tests/ref/weld_ref.py"
GEN="$ROOT/tests/bench/gen_family.py"

for k in zeros few gauss; do
	"$PYTHON" "$GEN" "$T/$k" --size small --kind $k >/dev/null 2>"$T/stderr" ||
		not_ok "the $k family is generated"
done

# 1. the NumPy reference, bit for bit
for k in zeros few gauss; do
	M="--base $T/$k/base $T/$k/ft1 $T/$k/ft2 $T/$k/ft3"
	for opts in "--rescale l1" "--rescale inverse --epsilon 0.2" \
		    "--rescale l1 --combine sum --no-normalize --density 0.3 --seed 4"; do
		rm -rf "$T/w" "$T/r"
		if "$WELD" della $opts $M --dtype f32 -q -o "$T/w" 2>"$T/stderr" &&
		   "$PYTHON" "$REF" della $opts $M --dtype f32 -o "$T/r" 2>>"$T/stderr" &&
		   same_tensors "$T/w" "$T/r" 2>>"$T/stderr"; then
			ok "$k: della $opts = the NumPy reference"
		else
			not_ok "$k: della $opts = the NumPy reference"
		fi
	done
done

# 2. the same bytes for any -j and --max-memory (16M: several chunks per
# tensor, the keep bits of --rescale l1 not kept between its passes)
for k in zeros few; do
	M="--base $T/$k/base $T/$k/ft1 $T/$k/ft2 $T/$k/ft3"
	for opts in "--rescale l1" "--rescale inverse"; do
		rm -rf "$T/a" "$T/b"
		if "$WELD" della $opts $M -q -o "$T/a" -j 2 --max-memory 256M 2>"$T/stderr" &&
		   "$WELD" della $opts $M -q -o "$T/b" -j 1 --max-memory 16M 2>>"$T/stderr" &&
		   same_tensors "$T/a" "$T/b" 2>>"$T/stderr"; then
			ok "$k: della $opts: -j 2 --max-memory 256M = -j 1 --max-memory 16M"
		else
			not_ok "$k: della $opts: -j 2 --max-memory 256M = -j 1 --max-memory 16M"
		fi
	done
done

summary
