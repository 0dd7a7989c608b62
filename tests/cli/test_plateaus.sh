#!/bin/sh
# test_plateaus.sh - top-k selection when many deltas share one magnitude
# (exact zeros, one unit in the last place): the tie rule of DESIGN 4.1
# (exactly k, equal magnitudes by lowest position) holds for every method
# and scope, the output is the same with recorded keys and with counting
# passes (WELD_RECORD_MEMORY=0) and in parts, and a plateau at the
# threshold costs no extra pass over the inputs, in small tensors or in
# one large one.
. "$(dirname "$0")/harness.sh"
REF="$ROOT/tests/ref/weld_ref.py"
GEN="$ROOT/tests/bench/gen_family.py"

for k in zeros few; do
	"$PYTHON" "$GEN" "$T/$k" --size small --kind $k >/dev/null 2>"$T/stderr" ||
		not_ok "the $k family is generated"
done
Z="--base $T/zeros/base $T/zeros/ft1 $T/zeros/ft2 $T/zeros/ft3"
F="--base $T/few/base $T/few/ft1 $T/few/ft2 $T/few/ft3"

# 1. recorded keys (with plateau runs) = counting passes, for every scope
for fam in Z F; do
	eval "M=\$$fam"
	for m in "breadcrumbs" "breadcrumbs --density 0.5 --gamma 0.2" "ties --density 0.2" \
		 "ties --density 0.9" "consensus --from ties --density 0.8" \
		 "dare --density 1 --combine ties --trim 0.85 --seed 2"; do
		for sc in tensor model row; do
			rm -rf "$T/a" "$T/b"
			if "$WELD" $m --scope $sc $M -q -o "$T/a" --max-memory 32M 2>"$T/stderr" &&
			   WELD_RECORD_MEMORY=0 "$WELD" $m --scope $sc $M -q -o "$T/b" -j 1 \
				--max-memory 16M 2>>"$T/stderr" &&
			   same_tensors "$T/a" "$T/b" 2>>"$T/stderr"; then
				ok "$fam: $m --scope $sc: recorded keys = counting passes"
			else
				not_ok "$fam: $m --scope $sc: recorded keys = counting passes"
			fi
		done
	done
done

# 2. the NumPy reference: exactly k, equal magnitudes by lowest position
for m in "breadcrumbs" "ties --density 0.9" "breadcrumbs --scope row --density 0.8 --gamma 0.05"; do
	rm -rf "$T/w" "$T/r"
	if "$WELD" $m $Z --dtype f32 -q -o "$T/w" 2>"$T/stderr" &&
	   "$PYTHON" "$REF" $m $Z --dtype f32 -o "$T/r" 2>>"$T/stderr" &&
	   same_tensors "$T/w" "$T/r" 2>>"$T/stderr"; then
		ok "zeros: $m = the NumPy reference"
	else
		not_ok "zeros: $m = the NumPy reference"
	fi
done

# 3. --scope model in parts: the ties of other parts' tensors are counted
TB="--scope model --shard-size 1M --max-memory 32M"
for m in "breadcrumbs" "ties --density 0.9"; do
	rm -rf "$T/whole" "$T/p"*
	"$WELD" $m $Z $TB -q -o "$T/whole" 2>"$T/stderr" &&
	"$WELD" $m $Z $TB -q -o "$T/p" --part 1/2 2>>"$T/stderr" &&
	"$WELD" $m $Z $TB -q -o "$T/p" --part 2/2 2>>"$T/stderr" &&
	"$WELD" join -q -o "$T/joined" "$T"/p.part-*-of-2 2>>"$T/stderr"
	if [ $? -eq 0 ] && diff -r "$T/whole" "$T/joined" >/dev/null; then
		ok "zeros: $m $TB in 2 parts, joined: the same files"
	else
		not_ok "zeros: $m $TB in 2 parts, joined: the same files"
	fi
	rm -rf "$T/joined"
done

# 4. a plateau at the threshold costs no pass: breadcrumbs' lower cut lies
# among the zeros, yet with room (2M) for a third of the zeros' keys it
# reads the inputs 2 + 1/16 times, as for distinct magnitudes
ta=$(bytes_read "$T/o" task-arithmetic $Z)
bc=$(WELD_RECORD_MEMORY=2M bytes_read "$T/o" breadcrumbs $Z --max-memory 64M -j 2)
hist=$(WELD_RECORD_MEMORY=0 bytes_read "$T/o" breadcrumbs $Z --max-memory 64M -j 2)
expect "breadcrumbs on 70 % zeros reads 2 + 1/16 times the inputs ($bc bytes; once: $ta)" \
	awk -v b="$bc" -v t="$ta" 'BEGIN { exit !(t > 0 && b <= t * (2 + 1 / 16) * 1.001) }'
expect "without recorded keys it reads more ($hist bytes)" \
	awk -v b="$bc" -v h="$hist" 'BEGIN { exit !(h > b) }'

# 5. a plateau that is a small share of one large tensor but most of the
# keys near the threshold (a bf16 embedding: the deltas of one unit in the
# last place of the common weights) is counted too: with room (2M) for a
# fraction of those keys, ties and breadcrumbs read the inputs 2 + 1/16
# times and give the output of the counting passes
"$PYTHON" "$GEN" "$T/huge" --size small --kind huge >/dev/null 2>"$T/stderr" ||
	not_ok "the huge family is generated"
H="--base $T/huge/base $T/huge/ft1 $T/huge/ft2 $T/huge/ft3"
ta=$(bytes_read "$T/o" task-arithmetic $H)
for m in ties breadcrumbs; do
	rm -rf "$T/a" "$T/b"
	b=$(WELD_RECORD_MEMORY=2M bytes_read "$T/a" $m $H --max-memory 64M -j 2)
	expect "$m on one embedding reads 2 + 1/16 times the inputs ($b bytes; once: $ta)" \
		awk -v b="$b" -v t="$ta" 'BEGIN { exit !(t > 0 && b <= t * (2 + 1 / 16) * 1.001) }'
	if WELD_RECORD_MEMORY=0 "$WELD" $m $H -q -o "$T/b" -j 1 --max-memory 16M 2>>"$T/stderr" &&
	   same_tensors "$T/a" "$T/b" 2>>"$T/stderr"; then
		ok "huge: $m with 2M of recorded keys = counting passes"
	else
		not_ok "huge: $m with 2M of recorded keys = counting passes"
	fi
done

summary
