#!/bin/sh
# LoRA adapters in PEFT's layout (tests/data/lora, made by make_fixtures.py
# with python3-torch) applied as BASE+ADAPTER: against a PEFT-free NumPy
# reference (lora_ref.py), in merges from the command line and from a
# recipe, through the Hugging Face cache, and hostile adapters refused.
. "$(dirname "$0")/harness.sh"
D=$ROOT/tests/data/lora
REF="$PYTHON $HERE/lora_ref.py"

# identical: weld diff A B finds every tensor identical
identical() {
	"$WELD" diff "$1" "$2" >"$T/diff" 2>&1 && tail -1 "$T/diff" | grep -q ' 0 different, 0 only in A, 0 only in B'
}

for a in plain rslora_st; do
	$REF apply "$D/base" "$D/$a" "$T/ref-$a" || not_ok "reference for $a"
	expect "$a: convert BASE+ADAPTER" "$WELD" convert -q "$D/base+$D/$a" -o "$T/cv-$a"
	expect "$a: equals the NumPy reference, every tensor" identical "$T/cv-$a" "$T/ref-$a"
done
$REF apply "$D/gpt2base" "$D/conv1d" "$T/ref-conv1d" || not_ok "reference for conv1d"
expect "fan_in_fan_out: convert BASE+ADAPTER" "$WELD" convert -q "$D/gpt2base+$D/conv1d" -o "$T/cv-conv1d"
expect "fan_in_fan_out: equals the NumPy reference" identical "$T/cv-conv1d" "$T/ref-conv1d"
expect "adapter_model.bin (torch.save) reads as its safetensors twin" \
	identical "$D/base+$D/rslora_bin" "$D/base+$D/rslora_st"
expect "inspect BASE+ADAPTER lists the base's tensors" sh -c \
	"'$WELD' inspect '$D/base+$D/plain' | grep -q 'model.layers.1.mlp.down_proj.weight'"

# a BASE+ADAPTER merge is the merge of the reference model
expect "ties of BASE+ADAPTER models" "$WELD" ties -q --base "$D/base" -o "$T/ties-lora" \
	"$D/base+$D/plain" "$D/base+$D/rslora_st"
expect "ties of the reference models" "$WELD" ties -q --base "$D/base" -o "$T/ties-ref" \
	"$T/ref-plain" "$T/ref-rslora_st"
expect "ties: BASE+ADAPTER merge = merge of the adapters merged in" \
	identical "$T/ties-lora" "$T/ties-ref"

mkdir -p "$T/recipes"
cat >"$T/recipes/ties.json" <<JSON
{"merge_method": "ties", "base_model": "$D/base",
 "parameters": {"density": 0.5, "weight": 1},
 "models": [{"model": "$D/base+$D/plain"}, {"model": {"model": {"path": "$D/base"}, "lora": {"path": "$D/rslora_st"}}}]}
JSON
sed -e "s|$D/base+$D/plain|$T/ref-plain|" -e "s|{\"model\": {\"path\": \"$D/base\"}, \"lora\": {\"path\": \"$D/rslora_st\"}}|\"$T/ref-rslora_st\"|" \
	"$T/recipes/ties.json" >"$T/recipes/ties-ref.json"
expect "recipe: ties with BASE+ADAPTER and the object form" "$WELD" run -q "$T/recipes/ties.json" -o "$T/run-lora"
expect "recipe: ties of the reference models" "$WELD" run -q "$T/recipes/ties-ref.json" -o "$T/run-ref"
expect "recipe: same tensors as the reference merge" identical "$T/run-lora" "$T/run-ref"

# both sides found in the Hugging Face cache
for n in base plain; do
	mkdir -p "$T/hf/models--org--$n/snapshots/abc1" "$T/hf/models--org--$n/refs"
	cp -r "$D/$n/." "$T/hf/models--org--$n/snapshots/abc1/"
	printf abc1 >"$T/hf/models--org--$n/refs/main"
done
expect "Hugging Face cache: org/base+org/plain on the command line" \
	env HF_HUB_CACHE="$T/hf" "$WELD" convert -q "org/base+org/plain" -o "$T/hf-cv"
expect "Hugging Face cache: same model" identical "$T/hf-cv" "$T/ref-plain"
printf '{"merge_method": "task_arithmetic", "base_model": "org/base", "models": [{"model": "org/base+org/plain", "parameters": {"weight": 1}}]}\n' >"$T/recipes/hf.json"
printf '{"merge_method": "task_arithmetic", "base_model": "%s", "models": [{"model": "%s", "parameters": {"weight": 1}}]}\n' "$D/base" "$T/ref-plain" >"$T/recipes/hf-ref.json"
expect "Hugging Face cache: org/base+org/plain in a recipe" \
	env HF_HUB_CACHE="$T/hf" "$WELD" run -q "$T/recipes/hf.json" -o "$T/hf-run"
expect "Hugging Face cache: the same merge of the reference model" "$WELD" run -q "$T/recipes/hf-ref.json" -o "$T/hf-ref"
expect "Hugging Face cache: recipe outputs agree" identical "$T/hf-run" "$T/hf-ref"

# chunks that cut rows: same bytes for any -j / --max-memory, and the reference
$REF big "$T/big" 1000 3000 8 || not_ok "big fixture"
$REF apply "$T/big/base" "$T/big/adapter" "$T/big/ref" || not_ok "big reference"
same_bytes 16M "task-arithmetic of a 1000x3000 BASE+ADAPTER" task-arithmetic --base "$T/big/base" "$T/big/base+$T/big/adapter"
expect "1000x3000, 16M chunks: equals the reference" sh -c \
	"'$WELD' convert -q -j 2 --max-memory 16M '$T/big/base+$T/big/adapter' -o '$T/big/cv' && '$WELD' diff '$T/big/cv' '$T/big/ref' | tail -1 | grep -q ' 0 different'"

# refused, by name
bad() { # KIND: a damaged copy of plain
	rm -rf "$T/bad-$1"
	$REF bad "$D/plain" "$1" "$T/bad-$1"
}
for k in dora-config ia3 rank bad-pattern dora-vector conv missing-module shape lone-b not-peft no-weights no-bias-flag; do
	bad $k || not_ok "make bad adapter $k"
done
refuse "DoRA (use_dora) refused" 1 "use_dora: DoRA adapters are not supported" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-dora-config" -o "$T/o"
refuse "DoRA (magnitude vector) refused" 1 "DoRA magnitude vector" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-dora-vector" -o "$T/o"
refuse "other PEFT types refused" 1 "peft_type: 'IA3' adapters are not supported" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-ia3" -o "$T/o"
refuse "conv LoRA refused" 1 "4-D factor: convolution LoRA is not supported" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-conv" -o "$T/o"
refuse "rank other than r refused" 1 "but adapter_config.json gives r = 3" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-rank" -o "$T/o"
refuse "bad rank_pattern key refused" 1 "rank_pattern.(: the key is not a valid regular expression" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-bad-pattern" -o "$T/o"
refuse "module missing from the base refused" 1 "has no tensor 'model.layers.0.self_attn.k_proj.weight'" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-missing-module" -o "$T/o"
refuse "shape mismatch refused" 1 "but the adapter's B·A is [8, 5]" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-shape" -o "$T/o"
refuse "lora_B without lora_A refused" 1 "no matching lora_A" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-lone-b" -o "$T/o"
refuse "a name outside PEFT's layout refused" 1 "tensor 'stray.weight': not a PEFT adapter name" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-not-peft" -o "$T/o"
refuse "no adapter weights refused" 1 "no adapter_model.safetensors or adapter_model.bin" "$T/o" \
	"$WELD" convert "$D/base+$T/bad-no-weights" -o "$T/o"
refuse "no such BASE+ADAPTER" 1 "no '+' splits it into a BASE and an ADAPTER" "$T/o" \
	"$WELD" convert "$D/base+$T/absent" -o "$T/o"
expect "lora_B.bias without lora_bias: ignored with a warning" sh -c \
	"'$WELD' convert '$D/base+$T/bad-no-bias-flag' -o '$T/nb' 2>&1 | grep -q 'lora_B.bias ignored' &&
	 '$WELD' diff '$T/nb' '$D/base' | grep -q '^model.layers.0.self_attn.q_proj.bias	0	0	'"
summary
