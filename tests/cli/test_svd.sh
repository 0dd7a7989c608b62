#!/bin/sh
# weld tsv-m, iso-c, iso-cts and their recipes (METHODS 13-15): the same
# bytes for any -j and --max-memory; the plan's memory bound of the whole
# matrices (printed, the smallest budget works, one byte less is refused
# naming the tensor and the budget it needs); --svd-exclude; a command and
# its recipe give the same tensors; the option errors; inputs that are not
# finite. (Values are compared with the NumPy float64 reference in
# tests/ref.)
. "$(dirname "$0")/harness.sh"
G="--layers 2 --hidden 128 --inter 512 --vocab 384 --int"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"


# the smallest --max-memory the plan of ARGS accepts, from the refusal of 1M
need() {
	"$WELD" plan "$@" --max-memory 1M 2>&1 | sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p'
}

for m in tsv-m iso-c iso-cts; do
	n=$(need $m $B $FT)
	if [ -n "$n" ] && [ "$n" -gt 1000000 ]; then
		ok "$m: a budget of 1M is refused with the bytes needed ($n)"
	else
		not_ok "$m: a budget of 1M is refused with the bytes needed"
	fi
	same_bytes "$n" "$m (smallest budget)" $m $B $FT
	expect "$m: the plan runs in exactly that budget" "$WELD" plan $m $B --max-memory "$n" $FT
	refuse "$m: one byte less is refused, naming the tensor" 1 \
		"--max-memory $((n - 1)) is too small: tensor 'model.layers.0.mlp." "$T/small-$m" \
		"$WELD" $m $B --max-memory $((n - 1)) -o "$T/small-$m" $FT
	expect "$m: plan prints the largest matrix" \
		sh -c '"$1" plan $2 --base "$3" "$4" "$5" | grep -q "^matrix .* for the largest matrix decomposed whole, .model.layers.0.mlp.*_proj.weight."' \
		sh "$WELD" $m "$T/base" "$T/ft1" "$T/ft2"
	expect "$m: plan --json has matrix_bytes" \
		sh -c '"$1" plan $2 --json --base "$3" "$4" | "$5" -c "import json,sys; d=json.load(sys.stdin); assert d[\"matrix_bytes\"] > 0 and d[\"matrix_bytes\"] <= d[\"memory_bytes\"]"' \
		sh "$WELD" $m "$T/base" "$T/ft1" "$PYTHON"
done
# -j N: up to N matrices at once, as many as --max-memory holds
# jfield ARGS...: matrices_at_once of weld plan --json ARGS
jfield() {
	_m=$1
	shift
	"$WELD" plan "$_m" --json "$@" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['matrices_at_once'])"
}
n=$(need tsv-m $B $FT)
expect "tsv-m -j 2 --max-memory 1G: two matrices at once" test "$(jfield tsv-m $B -j 2 --max-memory 1G $FT)" = 2
expect "tsv-m -j 2 in the smallest budget ($n): one at a time" test "$(jfield tsv-m $B -j 2 --max-memory "$n" $FT)" = 1
expect "tsv-m -j 1: one at a time" test "$(jfield tsv-m $B -j 1 --max-memory 1G $FT)" = 1
"$WELD" tsv-m -q $B -j 2 --max-memory 1G -o "$T/j2big" $FT &&
"$WELD" tsv-m -q $B -j 2 --max-memory "$n" -o "$T/j2small" $FT &&
"$WELD" tsv-m -q $B -j 1 --max-memory 1G -o "$T/j1big" $FT || not_ok "tsv-m -j 1/2 runs"
expect "tsv-m: same bytes for -j 2 (two at once), -j 2 in $n (one at once) and -j 1" sh -c \
	"cmp '$T/j2big/model.safetensors' '$T/j2small/model.safetensors' && cmp '$T/j2big/model.safetensors' '$T/j1big/model.safetensors'"
# (a sanitizer's shadow memory is not the program's: no RSS check there)
if ldd "$WELD" 2>/dev/null | grep -q 'libasan'; then
	skip "peak RSS within the plan's bound (a sanitized build)"
elif [ -x /usr/bin/time ]; then
	mem=$("$WELD" plan tsv-m --json $B -j 2 --max-memory 1G $FT | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['memory_bytes'])")
	/usr/bin/time -f '%M' -o "$T/rss" "$WELD" tsv-m -q $B -j 2 --max-memory 1G -o "$T/j2rss" $FT ||
		not_ok "tsv-m under /usr/bin/time"
	expect "tsv-m -j 2: peak RSS within the plan's memory plus 16 MB for the program ($mem bytes)" \
		sh -c "[ \$(( \$(tail -1 '$T/rss') * 1024 )) -le \$(( $mem + 16 * 1048576 )) ]"
else
	skip "tsv-m -j 2: peak RSS within the plan's memory (no /usr/bin/time)"
fi

same_bytes 64M "tsv-m weights lambda exclude" tsv-m $B --weights 1,0.5,2 --lambda 0.8 --svd-exclude 'embed|lm_head' $FT
same_bytes 64M "iso-cts fraction 0.5" iso-cts $B --common-space-fraction 0.5 $T/ft1 $T/ft2

# the methods differ, and --svd-exclude changes only the tensors it names
"$WELD" tsv-m -q $B -o "$T/tsv" $FT
"$WELD" iso-c -q $B -o "$T/isoc" $FT
"$WELD" iso-cts -q $B -o "$T/isocts" $FT
"$WELD" tsv-m -q $B --svd-exclude 'q_proj' -o "$T/tsv-x" $FT
if ! differ "$T/tsv" "$T/isoc" || ! differ "$T/isoc" "$T/isocts"; then
	not_ok "tsv-m, iso-c and iso-cts give different merges"
else
	ok "tsv-m, iso-c and iso-cts give different merges"
fi
"$WELD" inspect --hash "$T/tsv" | grep -v '^#' >"$T/a"
"$WELD" inspect --hash "$T/tsv-x" | grep -v '^#' >"$T/b"
diff "$T/a" "$T/b" | grep '^<' >"$T/changed" || true
if [ "$(wc -l <"$T/changed")" -eq 2 ] && [ "$(grep -c q_proj "$T/changed")" -eq 2 ]; then
	ok "--svd-exclude q_proj changes exactly the two q_proj tensors"
else
	not_ok "--svd-exclude q_proj changes exactly the two q_proj tensors"
fi
expect "tsv-m stores a tsv_m recipe with svd_exclude" \
	grep -qF 'svd_exclude\":\"q_proj\"' "$T/tsv-x/model.safetensors"
expect "tsv-m --svd-exclude: run --from-output gives the same bytes" \
	sh -c '"$1" run -q --from-output "$2" -o "$3" && cmp -s "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/tsv-x" "$T/tsv-x-again"

# a recipe is the command
cat >"$T/cts.json" <<JSON
{"merge_method": "iso_cts", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 0.5}}, {"model": "$T/ft2"}],
 "parameters": {"lambda": 1.5, "common_space_fraction": 0.6},
 "weld": {"svd_exclude": "lm_head"}}
JSON
"$WELD" iso-cts -q $B --weights 0.5,1 --lambda 1.5 --common-space-fraction 0.6 --svd-exclude lm_head \
	-o "$T/cts-cmd" "$T/ft1" "$T/ft2"
expect "recipe iso_cts runs" "$WELD" run -q "$T/cts.json" -o "$T/cts-r"
expect "recipe iso_cts = weld iso-cts with the same values" same_tensors "$T/cts-cmd" "$T/cts-r"
expect "plan shows common_space_fraction" \
	sh -c '"$1" plan "$2" | grep "^options" | grep -q "common_space_fraction=0.6"' sh "$WELD" "$T/cts.json"

# FusionBench's names of lambda: tsv_m's alpha, iso's scaling_factor
for mr in "tsv-m tsv_m alpha 0.7" "iso-c iso_c scaling_factor 1.3" "iso-cts iso_cts scaling_factor 0.6"; do
	set -- $mr
	printf '{"merge_method": "%s", "base_model": "%s", "models": [{"model": "%s"}, {"model": "%s"}], "parameters": {"%s": %s}}\n' \
		"$2" "$T/base" "$T/ft1" "$T/ft2" "$3" "$4" >"$T/alias-$2.json"
	"$WELD" $1 -q $B --lambda "$4" -o "$T/alias-cmd-$2" "$T/ft1" "$T/ft2" || not_ok "$1 --lambda $4"
	expect "recipe $2 with $3 $4 = weld $1 --lambda $4" sh -c \
		"'$WELD' run -q '$T/alias-$2.json' -o '$T/alias-r-$2' && cmp '$T/alias-cmd-$2/model.safetensors' '$T/alias-r-$2/model.safetensors' >/dev/null ||
		 { '$WELD' inspect --hash '$T/alias-cmd-$2' | grep -v '^#' >'$T/ha' && '$WELD' inspect --hash '$T/alias-r-$2' | grep -v '^#' >'$T/hb' && cmp -s '$T/ha' '$T/hb'; }"
	expect "recipe $2 with $3: run --from-output gives the same bytes" sh -c \
		"'$WELD' run -q --from-output '$T/alias-r-$2' -o '$T/alias-again-$2' && cmp -s '$T/alias-r-$2/model.safetensors' '$T/alias-again-$2/model.safetensors'"
	printf '{"merge_method": "%s", "base_model": "%s", "models": [{"model": "%s"}], "parameters": {"lambda": 1, "%s": %s}}\n' \
		"$2" "$T/base" "$T/ft1" "$3" "$4" >"$T/alias-both.json"
	refuse "recipe $2: $3 and lambda together are refused" 1 \
		"parameters.$3: '$3' is $2's other name for 'lambda', which this object sets too: give one" "$T/x" \
		"$WELD" run "$T/alias-both.json" -o "$T/x"
done
printf '{"merge_method": "iso_c", "base_model": "%s", "models": [{"model": "%s"}], "parameters": {"alpha": 2}}\n' \
	"$T/base" "$T/ft1" >"$T/alias-bad.json"
refuse "recipe iso_c: alpha is tsv_m's name, not iso_c's" 1 "parameters.alpha: 'alpha' is not a parameter of iso_c" "$T/x" \
	"$WELD" run "$T/alias-bad.json" -o "$T/x"

# errors
refuse "--svd-exclude: a bad regex is a usage error" 2 "invalid value '(' for '--svd-exclude'" "$T/x" \
	"$WELD" tsv-m $B --svd-exclude '(' -o "$T/x" $FT
refuse "--svd-exclude is not a ties option" 2 "option '--svd-exclude' is not used by 'weld ties'" "$T/x" \
	"$WELD" ties $B --svd-exclude q -o "$T/x" $FT
refuse "--common-space-fraction is iso-cts's" 2 "option '--common-space-fraction' is not used by 'weld iso-c'" "$T/x" \
	"$WELD" iso-c $B --common-space-fraction 0.5 -o "$T/x" $FT
refuse "--common-space-fraction 0 with 3 models of 128 dimensions" 1 \
	"common_space_fraction 0 leaves 128 dimensions to 3 models" "$T/x" \
	"$WELD" iso-cts $B --common-space-fraction 0 -o "$T/x" $FT
refuse "--density is not taken" 2 "option '--density' is not used by 'weld tsv-m'" "$T/x" \
	"$WELD" tsv-m $B --density 0.5 -o "$T/x" $FT
printf '{"merge_method": "iso_c", "base_model": "%s", "models": [{"model": "%s"}], "weld": {"svd_exclude": 3}}\n' \
	"$T/base" "$T/ft1" >"$T/bad.json"
refuse "recipe: svd_exclude must be a string" 1 "weld.svd_exclude: expected a regular expression" "$T/x" \
	"$WELD" run "$T/bad.json" -o "$T/x"
printf '{"merge_method": "tsv_m", "base_model": "%s", "models": [{"model": "%s"}], "parameters": {"density": 0.5}}\n' \
	"$T/base" "$T/ft1" >"$T/bad2.json"
refuse -E "recipe: tsv_m takes no density" 1 "density" "$T/x" "$WELD" run "$T/bad2.json" -o "$T/x"

# a NaN in a decomposed matrix is an error naming the model and tensor
"$PYTHON" - "$T/nan" "$ROOT/tests/ref" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import safetensors_io as sio
rng = np.random.default_rng(3)
b = {"w": rng.standard_normal((6, 4)).astype(np.float32)}
x = {"w": (b["w"] + 0.1).astype(np.float32)}
x["w"][2, 1] = np.nan
sio.save_model(os.path.join(sys.argv[1], "base"), b, "F32")
sio.save_model(os.path.join(sys.argv[1], "nan"), x, "F32")
PY
refuse "a NaN in a matrix is refused" 1 "tensor 'w'" "$T/nan/out" \
	"$WELD" tsv-m --base "$T/nan/base" -o "$T/nan/out" "$T/nan/nan"
summary
