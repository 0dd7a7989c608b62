#!/bin/sh
# test_fp8.sh - FP8 checkpoints with scales (weld(1), FP8 WITH SCALES):
# block-scaled (weight_scale_inv) and compressed-tensors (weight_scale)
# weights are decoded on read, so a merge of FP8 models is the same merge
# of their decoded float32 values, byte for byte, for any -j and
# --max-memory; scale tensors are never output tensors; --dtype auto
# writes BF16 without quantization_config; hostile scales are refused
# with the file, the tensor and the field.
#
# The models are tests/data/fp8/{a,b,ct}, written by tests/cli/fp8_fixture.py
# (which also decodes them, independently of weld).
#
# usage: WELD=./weld sh tests/cli/test_fp8.sh
set -eu

. "$(dirname "$0")/harness.sh"
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "test_fp8: needs $PYTHON with NumPy (make deps, or apt-get install python3-numpy)" >&2
	exit 1
fi
FIX="$HERE/fp8_fixture.py"
D="$ROOT/tests/data/fp8"
same() { "$PYTHON" "$FIX" same "$@"; }

# ---------------------------------------------------------------- fixtures

"$PYTHON" "$FIX" make "$T/gen"
for m in a b ct; do
	expect "fixture $m is what fp8_fixture.py writes" \
		cmp "$D/$m/model.safetensors" "$T/gen/$m/model.safetensors"
	"$PYTHON" "$FIX" decode "$D/$m" "$T/$m.f32"
done

# ---------------------------------------------------------------- inspect

"$WELD" inspect "$D/a" >"$T/inspect" 2>&1 || true
if grep -q "^model.layers.0.mlp.down_proj.weight	F8_E4M3	\[12, 16\]	192	model.safetensors	scale: block \[4, 8\] BF16 'model.layers.0.mlp.down_proj.weight_scale_inv'$" "$T/inspect" &&
   ! grep -q "_scale_inv	" "$T/inspect" && grep -q "^# 7 tensors" "$T/inspect"; then
	ok "inspect shows F8_E4M3 with its scales' layout; the scales are not tensors"
else
	not_ok "inspect shows F8_E4M3 with its scales' layout; the scales are not tensors"
fi
"$WELD" inspect --json "$D/ct" >"$T/inspect" 2>&1 || true
if grep -q '"scale":{"layout":"channel","block":\[1,20\],"dtype":"BF16","tensor":"model.layers.0.self_attn.q_proj.weight_scale"}' "$T/inspect" &&
   grep -q '"layout":"tensor"' "$T/inspect" && ! grep -q input_scale "$T/inspect"; then
	ok "inspect --json: channel and tensor scales; the input_scale is dropped"
else
	not_ok "inspect --json: channel and tensor scales; the input_scale is dropped"
fi

# ---------------------------------------------------------------- merges

check_same() {
	_name=$1 _x=$2 _y=$3
	if same "$_x" "$_y" >"$T/stdout" 2>"$T/stderr"; then ok "$_name"; else not_ok "$_name"; fi
}

expect "convert a --dtype f32" "$WELD" convert -q --dtype f32 -o "$T/conv-a" "$D/a"
check_same "... equals its float32 decoding (code x block scale, F32 and BF16 scales, 3-D)" \
	"$T/conv-a" "$T/a.f32"
expect "convert ct --dtype f32" "$WELD" convert -q --dtype f32 -o "$T/conv-ct" "$D/ct"
check_same "... compressed-tensors: channel and tensor scales" "$T/conv-ct" "$T/ct.f32"
for cmd in "average" "task-arithmetic --base" "ties --density 0.5 --base" "dare --seed 3 --base"; do
	"$WELD" $cmd "$D/a" "$D/b" -q --dtype f32 -o "$T/m8" 2>"$T/stderr" || true
	"$WELD" $cmd "$T/a.f32" "$T/b.f32" -q --dtype f32 -o "$T/m32" 2>>"$T/stderr" || true
	check_same "$cmd: FP8 inputs = the same merge of their decoded values" "$T/m8" "$T/m32"
	rm -rf "$T/m8" "$T/m32"
done
same_bytes 16M "ties of two FP8 models" ties --base "$D/a" "$D/b"

# ---------------------------------------------------------------- --dtype auto

"$WELD" average -o "$T/auto" "$D/a" "$D/b" 2>"$T/says" || true
if [ "$(grep -c "quantization_config is removed" "$T/says")" = 1 ] &&
   grep -q "FP8 weights with scales are written as BF16" "$T/says"; then
	ok "... says once on stderr that it writes BF16 without quantization_config"
else
	not_ok "... says once on stderr that it writes BF16 without quantization_config"
fi
"$WELD" inspect "$T/auto" >"$T/stdout"
if ! grep -q quantization_config "$T/auto/config.json" &&
   grep -q '"torch_dtype":.*"bfloat16"' "$T/auto/config.json" &&
   [ "$(cut -f2 "$T/stdout" | grep -v '^#' | sort -u)" = BF16 ] &&
   ! grep -q _scale "$T/stdout"; then
	ok "... every tensor BF16, no scale tensor, config.json without quantization_config"
else
	not_ok "... every tensor BF16, no scale tensor, config.json without quantization_config"
fi
"$WELD" average -q --dtype bf16 -o "$T/auto32" "$T/a.f32" "$T/b.f32"
check_same "... the values of the same merge of the decoded models" "$T/auto" "$T/auto32"

# ---------------------------------------------------------------- --dtype fp8

"$WELD" ties -q --base "$D/a" "$D/b" --density 0.5 --dtype f32 -o "$T/t32"
expect "ties --dtype fp8 of FP8 models" "$WELD" ties -q --base "$D/a" "$D/b" --density 0.5 --dtype fp8 -o "$T/t8"
# check_fp8 OUT NAME REF: OUT's FP8 tensors are REF's values encoded
check_fp8() {
	if "$PYTHON" "$FIX" check-fp8 "$1" "$3" >"$T/stdout" 2>"$T/stderr"; then ok "$2"; else not_ok "$2"; fi
}
check_fp8 "$T/t8" "... scales amax/448 of each [4, 8] block and codes clamped and rounded to nearest even, from the float32 merge" "$T/t32"
"$WELD" inspect "$T/t8" >"$T/inspect"
if [ "$(grep -c "F8_E4M3	.*scale: block \[4, 8\] F32" "$T/inspect")" = 4 ] &&
   grep -q "^lm_head.weight	BF16" "$T/inspect" &&
   "$PYTHON" -c "import json, sys; c = json.load(open(sys.argv[1]));
assert c['quantization_config'] == json.load(open(sys.argv[2]))['quantization_config']
assert c['torch_dtype'] == 'bfloat16'" "$T/t8/config.json" "$D/a/config.json"; then
	ok "... the base's FP8 weights FP8 again (weight_scale_inv F32), the rest BF16, its quantization_config kept"
else
	not_ok "... the base's FP8 weights FP8 again (weight_scale_inv F32), the rest BF16, its quantization_config kept"
fi
expect "... verify checks it" "$WELD" verify -q "$T/t8"
cp -r "$T/t8" "$T/t8bad"
"$PYTHON" "$FIX" flip "$T/t8bad/model.safetensors" model.layers.0.mlp.down_proj.weight_scale_inv
refuse "... and finds a changed scale" 1 "tensor 'model.layers.0.mlp.down_proj.weight_scale_inv': XXH3" \
	- "$WELD" verify -q "$T/t8bad"
"$WELD" convert -q --dtype f32 -o "$T/t8back" "$T/t8"
"$PYTHON" "$FIX" decode "$T/t8" "$T/t8.f32"
check_same "round trip: weld reads its FP8 output as the codes times its scales" "$T/t8back" "$T/t8.f32"
expect "convert --dtype fp8 of an FP8 model" "$WELD" convert -q --dtype fp8 -o "$T/c8" "$D/a"
check_fp8 "$T/c8" "... re-encodes the decoded values" "$T/a.f32"
same_bytes 16M "ties --dtype fp8" ties --base "$D/a" "$D/b" --dtype fp8
refuse "--dtype fp8 needs a block-scaled FP8 base" 1 "--dtype fp8 writes FP8 in the block size of a block-scaled FP8 model" \
	"$T/o" "$WELD" average -q --dtype fp8 -o "$T/o" "$D/ct"
refuse "--dtype fp8 is not written in parts" 1 "FP8 output is not written in parts (--part)" \
	"$T/o.part-1-of-2" "$WELD" average -q --dtype fp8 --part 1/2 -o "$T/o" "$D/a" "$D/b"

# ---------------------------------------------------------------- hostile

hostile() {
	"$PYTHON" "$FIX" hostile "$1" "$D/a" "$T/h-$1"
}
for k in scale-shape scale-dtype no-scale block-size inf-scale orphan-scale bad-block-config; do
	hostile $k
done
Q=model.layers.0.self_attn.q_proj.weight
refuse "a scale of the wrong shape" 1 \
	"'$T/h-scale-shape/model.safetensors': tensor '${Q}_scale_inv': shape: [3, 2], but blocks of [4, 8] (quantization_config.weight_block_size) divide weight '$Q' [10, 20] into [3, 3]" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-scale-shape" "$D/b"
refuse "a scale of the wrong dtype" 1 \
	"'$T/h-scale-dtype/model.safetensors': tensor '${Q}_scale_inv': dtype: I8 (scales must be F32, BF16 or F16)" \
	"$T/o" "$WELD" average -q -o "$T/o" "$D/b" "$T/h-scale-dtype"
refuse "a missing scale" 1 \
	"'$T/h-no-scale/model.safetensors': tensor '$Q': F8_E4M3 weight without its scale tensor '${Q}_scale_inv'" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-no-scale" "$D/b"
refuse "a block size that does not divide the weight into the scale's grid" 1 \
	"blocks of [5, 8] (quantization_config.weight_block_size) divide weight" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-block-size" "$D/b"
refuse "an infinite scale" 1 \
	"'$T/h-inf-scale/model.safetensors': tensor '${Q}_scale_inv': value[1][2] is infinite: scales must be finite" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-inf-scale" "$D/b"
refuse "a scale without its FP8 weight" 1 \
	"tensor '${Q}_scale_inv': a scale without its F8_E4M3 weight '$Q'" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-orphan-scale" "$D/b"
refuse "a weight_block_size of 0" 1 \
	"'$T/h-bad-block-config/config.json': quantization_config.weight_block_size: must be two positive integers" \
	"$T/o" "$WELD" average -q -o "$T/o" "$T/h-bad-block-config" "$D/b"
refuse "inspect refuses them too" 1 "F8_E4M3 weight without its scale tensor" \
	- "$WELD" inspect "$T/h-no-scale"

summary
