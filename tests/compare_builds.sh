#!/bin/sh
# Same bytes from two builds of weld: gcc's optimised one (whose hot loops
# may run as AVX-512 or AVX2 clones, and AVX-512 intrinsics) and another:
# the sanitizer one (no clones) or clang's (plain loops only).
# Usage: compare_builds.sh WELD_A WELD_B
set -u
A=$1
B=$2
MKMODEL=${MKMODEL:-$(pwd)/build/mkmodel}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/weld-builds-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
G="--layers 2 --hidden 96 --inter 640 --vocab 300"
"$MKMODEL" "$TMP/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$TMP/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
FT="$TMP/ft1 $TMP/ft2 $TMP/ft3"
# float32 fine-tunes too: della ranks their rows by another path
"$MKMODEL" "$TMP/b32" $G --dtype f32 >/dev/null
for s in 1 2; do "$MKMODEL" "$TMP/f32_$s" $G --dtype f32 --seed $s --noise 0.5 >/dev/null; done
for cmd in "average" "task-arithmetic --lambda 0.7" "ties --density 0.3" "ties --scope row" \
	   "dare --rescale l1 --combine ties --trim 0.5" "breadcrumbs --gamma 0.05" \
	   "consensus --from ties" "convert" "nearswap --t 0.05" "ram --plus --epsilon 0.01" \
	   "model-stock" "model-stock --filter-wise" "nuslerp --no-flatten --row-wise" \
	   "multislerp --weights 1,2,3" "karcher" "della --rescale l1" "della" "pcb --density 0.2" \
	   "sce --select-topk 0.3" "arcee-fusion" "della --rescale l1 --dtype f32" \
	   "della --rescale none --dtype f32"; do
	case $cmd in
	*f32) args="--base $TMP/b32 $TMP/f32_1 $TMP/f32_2" ;;
	average|karcher) args="$FT" ;;
	convert) args="$TMP/ft1 --dtype f16" ;;
	nearswap*|arcee-fusion) args="--base $TMP/base $TMP/ft1" ;;
	nuslerp*) args="--base $TMP/base $TMP/ft1 $TMP/ft2" ;;
	*) args="--base $TMP/base $FT" ;;
	esac
	if "$A" $cmd -q -o "$TMP/a" $args && "$B" $cmd -q -o "$TMP/b" $args &&
	   cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"; then
		pass=$((pass + 1)); echo "ok - $cmd: same file from both builds"
	else
		fail=$((fail + 1)); echo "not ok - $cmd: the builds differ"
	fi
	rm -rf "$TMP/a" "$TMP/b"
done
echo "builds: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
