#!/bin/sh
# test_nonfinite.sh - inputs holding NaN or infinities (weld(1), NON-FINITE
# VALUES): every merge refuses them, naming the model, its file, the tensor
# and the count, and writes nothing; --allow-nonfinite merges them, NaN
# wherever an input is NaN and nowhere else; a copy never looks.
#
# usage: WELD=./weld sh tests/cli/test_nonfinite.sh
set -eu

. "$(dirname "$0")/harness.sh"
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "test_nonfinite: needs $PYTHON with NumPy (make deps, or apt-get install python3-numpy)" >&2
	exit 1
fi
FIX="$HERE/nonfinite_fixture.py"
"$PYTHON" "$FIX" make "$T"
B="--base $T/base"

# ---------------------------------------------------------------- refused

refuse "average: a NaN and an inf in a float32 model" 1 \
	"tensor 'w' in '$T/a' ($T/a/model.safetensors): 2 of its 384 values are NaN or infinite" \
	"$T/o1" "$WELD" average -q -o "$T/o1" "$T/a" "$T/clean"
refuse "... with the option that lets them through" 1 "(--allow-nonfinite merges them anyway" \
	"$T/o1" "$WELD" average -q -o "$T/o1" "$T/a" "$T/clean"
refuse "ties: a NaN and a -inf in a bf16 model" 1 \
	"tensor 'w' in '$T/b' ($T/b/model.safetensors): 2 of its 384 values" \
	"$T/o1" "$WELD" ties -q --base "$T/clean" -o "$T/o1" "$T/b" "$T/a"
refuse "the base first, then the models in order, whatever the chunk" 1 "tensor 'w' in '$T/b'" \
	"$T/o1" "$WELD" ties -q -j 1 --max-memory 9M --base "$T/clean" -o "$T/o1" "$T/b" "$T/a"
refuse "a NaN in the base" 1 "tensor 'bias' in '$T/base' ($T/base/model.safetensors): 1 of its 24 values is NaN" \
	"$T/o1" "$WELD" task-arithmetic -q $B -o "$T/o1" "$T/clean"
refuse "a statistics pass first, then the refusal" 1 "2 of its 384 values" \
	"$T/o1" "$WELD" breadcrumbs -q --base "$T/clean" -o "$T/o1" "$T/a"
"$WELD" average -q -o "$T/old" "$T/clean" "$T/clean"
refuse "-f keeps the old output when the merge is refused" 1 "NaN or infinite" \
	- "$WELD" average -q -f -o "$T/old" "$T/a" "$T/clean"
expect "... which still verifies" "$WELD" verify -q "$T/old"
cat >"$T/r.json" <<JSON
{"merge_method": "ties", "base_model": "$T/clean",
 "models": [{"model": "$T/a", "parameters": {"weight": 1, "density": 0.5}},
            {"model": "$T/clean", "parameters": {"weight": 1, "density": 0.5}}]}
JSON
refuse "a recipe: the hint names the recipe key" 1 "weld.allow_nonfinite merges them anyway" \
	"$T/o1" "$WELD" run -q "$T/r.json" -o "$T/o1"

# ---------------------------------------------------------------- merged

# nan_only OUT: OUT is NaN exactly where some input is (the base or a model)
nan_only() {
	"$PYTHON" "$FIX" nan-at "$1" >"$T/nan-got" && cmp -s "$T/nan-got" "$T/nan-union"
}
# nan_covers OUT: OUT is NaN at least where some input is (pcb, sce and the
# spherical methods scale by statistics of the whole tensor, which a NaN
# makes NaN)
nan_covers() {
	"$PYTHON" "$FIX" nan-at "$1" | sort >"$T/nan-got" && sort "$T/nan-union" >"$T/nan-want" &&
		[ -z "$(comm -13 "$T/nan-got" "$T/nan-want")" ]
}
for m in average task-arithmetic ties dare breadcrumbs consensus della pcb sce ram model-stock \
	nuslerp multislerp karcher; do
	case $m in average | karcher) in="$T/base $T/a $T/b" ;; *) in="$B $T/a $T/b" ;; esac
	expect "$m --allow-nonfinite merges" "$WELD" $m -q --allow-nonfinite -o "$T/m-$m" $in
	case $m in
	pcb | sce | model-stock | nuslerp | multislerp | karcher)
		expect "... NaN wherever an input is NaN" nan_covers "$T/m-$m" ;;
	*) expect "... NaN where an input is NaN, nowhere else" nan_only "$T/m-$m" ;;
	esac
done
# canonical OUT: every NaN of OUT is the one quiet, positive NaN of its
# dtype; +inf + -inf makes the processor's own NaN (negative on x86-64,
# positive on ARM), which must not reach the file
canonical() {
	"$PYTHON" "$FIX" nan-bits "$1" >"$T/nan-bits" && [ -s "$T/nan-bits" ] &&
		! grep -v -x -e 'F32 7fc00000' -e 'BF16 7fc0' -e 'F16 7e00' -e 'F64 7ff8000000000000' "$T/nan-bits"
}
for d in f32 bf16 f16 f64; do
	expect "+inf and -inf averaged in $d" \
		"$WELD" average -q --allow-nonfinite --dtype $d -o "$T/inf-$d" "$T/pinf" "$T/ninf"
	expect "... give the canonical NaN" canonical "$T/inf-$d"
done
expect "ties --allow-nonfinite with -j 1" \
	"$WELD" ties -q --allow-nonfinite $B -j 1 -o "$T/m-ties-j1" "$T/a" "$T/b"
expect "... the same as -j 2" cmp -s "$T/m-ties/model.safetensors" "$T/m-ties-j1/model.safetensors"
# della --rescale l1 over an infinite delta: the factor is not finite, so
# the writing pass ranks the rows again instead of taking the keep bits
# of the L1 pass (weld-della(1)); the bytes do not depend on which
expect "della --rescale l1 --allow-nonfinite, -j 2 --max-memory 256M" \
	"$WELD" della -q --allow-nonfinite --rescale l1 $B -j 2 --max-memory 256M -o "$T/dl-a" "$T/a" "$T/b"
expect "... and -j 1 --max-memory 16M" \
	"$WELD" della -q --allow-nonfinite --rescale l1 $B -j 1 --max-memory 16M -o "$T/dl-b" "$T/a" "$T/b"
expect "... give the same bytes" cmp -s "$T/dl-a/model.safetensors" "$T/dl-b/model.safetensors"
expect "... NaN where an input is NaN, nowhere else" nan_only "$T/dl-a"
expect "the stored recipe says allow_nonfinite" sh -c \
	"head -c 4000 '$T/m-ties/model.safetensors' | grep -q 'allow_nonfinite'"
expect "... and runs again from it" "$WELD" run -q --from-output "$T/m-ties" -o "$T/m-again"
expect "... to the same bytes" cmp -s "$T/m-ties/model.safetensors" "$T/m-again/model.safetensors"
expect "a merge of finite models does not store the key" sh -c \
	"! head -c 4000 '$T/old/model.safetensors' | grep -q allow_nonfinite"
sed 's/"models"/"weld": {"allow_nonfinite": true}, "models"/' "$T/r.json" >"$T/r2.json"
expect "a recipe with weld.allow_nonfinite merges" "$WELD" run -q "$T/r2.json" -o "$T/m-r2"
sed 's/"models"/"weld": {"allow_nonfinite": 1}, "models"/' "$T/r.json" >"$T/r3.json"
refuse "weld.allow_nonfinite must be a boolean" 1 "expected true or false" - "$WELD" plan "$T/r3.json"

# ---------------------------------------------------------------- copies

expect "convert copies NaN and inf unchanged" "$WELD" convert -q "$T/a" -o "$T/conv"
expect "... bit for bit" sh -c "'$WELD' inspect --hash '$T/a' | cut -f1,6 > '$T/h1'; '$WELD' inspect --hash '$T/conv' | cut -f1,6 > '$T/h2'; cmp -s '$T/h1' '$T/h2'"

# ---------------------------------------------------------------- expert-merge

"$PYTHON" "$HERE/expert_merge_fixture.py" make "$T/moe"
"$PYTHON" "$FIX" poison "$T/moe/model.safetensors" model.layers.1.block_sparse_moe.experts.2.w2.weight
refuse "expert-merge refuses an expert holding a NaN" 1 \
	"tensor 'model.layers.1.block_sparse_moe.experts.2.w2.weight' in '$T/moe' ($T/moe/model.safetensors): 1 of its 48 values is NaN" \
	"$T/em" "$WELD" expert-merge -q --groups 2 -o "$T/em" "$T/moe"
expect "expert-merge --allow-nonfinite merges it" "$WELD" expert-merge -q --groups 2 --allow-nonfinite -o "$T/em" "$T/moe"

summary
