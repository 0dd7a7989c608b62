#!/bin/sh
# weld extract-lora: the adapter follows PEFT's naming rules and each
# module's B·A is the rank-r truncation of FT - BASE (numpy.linalg.svd in
# float64, lora_ref.py), for every option of mergekit-extract-lora; the
# round trip BASE+ADAPTER gives BASE + the truncation; --fast on a
# low-rank delta; the same bytes for any -j; errors.
. "$(dirname "$0")/harness.sh"
REF="$PYTHON $HERE/lora_ref.py"
$REF pair "$T/p64" F64 || not_ok "F64 pair"
$REF pair "$T/p32" F32 || not_ok "F32 pair"
B64=$T/p64/base F64=$T/p64/ft

# extract OPTIONS...: into $T/x (replaced), then check it and its round trip
n=0
extract() {
	n=$((n + 1))
	rm -rf "$T/x" "$T/y"
	expect "extract-lora $*" "$WELD" extract-lora "$F64" --base "$B64" -o "$T/x" -q "$@"
	expect "  PEFT names, shapes and config; B·A = the rank-r truncation" \
		$REF check-extract "$T/x" "$B64" "$F64" 1e-12
	expect "  round trip: BASE+ADAPTER = BASE + the truncation" sh -c \
		"'$WELD' convert -q '$B64+$T/x' -o '$T/y' && $REF check-roundtrip '$T/y' '$B64' '$F64' '$T/x' 1e-12"
}
extract
extract --max-rank 3
extract --max-rank 3 --no-distribute-scale
extract --max-rank 3 --embed-lora
extract --max-rank 5 --sv-epsilon 0.3
extract --max-rank 2 --save-module up_proj --skip-undecomposable
expect "mergekit's spelling: --model --base-model --out-path" sh -c \
	"'$WELD' extract-lora -q --model '$F64' --base-model '$B64' --out-path '$T/mk' --max-rank 4 &&
	 $REF check-extract '$T/mk' '$B64' '$F64' 1e-12"
expect "--max-rank 128: full rank, the model itself comes back" sh -c \
	"'$WELD' extract-lora -q '$F64' --base '$B64' -o '$T/full' && '$WELD' convert -q '$B64+$T/full' -o '$T/fullc' &&
	 $REF check-roundtrip '$T/fullc' '$B64' '$F64' '$T/full' 1e-12"
expect "an F32 pair (factors in F32)" sh -c \
	"'$WELD' extract-lora -q '$T/p32/ft' --base '$T/p32/base' -o '$T/x32' --max-rank 3 &&
	 $REF check-extract '$T/x32' '$T/p32/base' '$T/p32/ft' 1e-6"

# what is decomposed, saved and skipped
rm -rf "$T/x"
"$WELD" extract-lora -q "$F64" --base "$B64" -o "$T/x" -i q_proj >/dev/null 2>&1
expect "-i q_proj: only q_proj factored, embeddings still saved" sh -c \
	"grep -q '\"target_modules\":[[:space:]]*\\[\"q_proj\"\\]' '$T/x/adapter_config.json' &&
	 '$WELD' inspect '$T/x' | grep -q '^base_model.model.model.embed_tokens.weight' &&
	 ! '$WELD' inspect '$T/x' | grep -q 'layernorm'"
rm -rf "$T/x"
"$WELD" extract-lora -q "$F64" --base "$B64" -o "$T/x" -e 'layers\.1\.' -e embed_tokens >/dev/null 2>&1
expect "-e: excluded modules and embeddings are absent" sh -c \
	"! '$WELD' inspect '$T/x' | grep -q 'layers\\.1\\.\\|embed_tokens' && '$WELD' inspect '$T/x' | grep -q 'layers.0.mlp.up_proj.lora_A'"
rm -rf "$T/x"
"$WELD" extract-lora -q "$F64" --base "$B64" -o "$T/x" --skip-undecomposable >/dev/null 2>&1
expect "--skip-undecomposable: no norm saved, lm_head and q_proj's bias delta kept" sh -c \
	"! '$WELD' inspect '$T/x' | grep -q 'norm' && '$WELD' inspect '$T/x' | grep -q 'lm_head.weight' &&
	 '$WELD' inspect '$T/x' | grep -q 'q_proj.lora_B.bias' && grep -q '\"lora_bias\":[[:space:]]*true' '$T/x/adapter_config.json'"

# --fast on a rank-8 delta of a 400 x 1200 weight
$REF big "$T/big" 400 1200 8 || not_ok "big fixture"
"$WELD" convert -q "$T/big/base+$T/big/adapter" -o "$T/big/ft" || not_ok "big fine-tune"
expect "--fast: -v prints the relative error" sh -c \
	"'$WELD' extract-lora -v '$T/big/ft' --base '$T/big/base' -o '$T/big/x' --fast --max-rank 8 2>&1 | grep -q 'layer.proj: lora \\[400, 1200\\] rank 8, relative error'"
expect "--fast: B·A = the rank-8 truncation" $REF check-extract "$T/big/x" "$T/big/base" "$T/big/ft" 1e-5
for mode in "" "--fast"; do
	"$WELD" extract-lora -q $mode "$T/big/ft" --base "$T/big/base" -o "$T/j1$mode" -j 1 --max-rank 8 &&
	"$WELD" extract-lora -q $mode "$T/big/ft" --base "$T/big/base" -o "$T/j2$mode" -j 2 --max-rank 8
	expect "extract-lora $mode: same bytes for -j 1 and -j 2" \
		cmp -s "$T/j1$mode/adapter_model.safetensors" "$T/j2$mode/adapter_model.safetensors"
done

# errors
refuse "no --base" 2 "the base model is required" "$T/e" "$WELD" extract-lora "$F64" -o "$T/e"
refuse "a bad --max-rank" 2 "--max-rank" "$T/e" "$WELD" extract-lora "$F64" --base "$B64" -o "$T/e" --max-rank 0
refuse "a bad regex" 1 "--exclude-regex '(': not a valid regular expression" "$T/e" \
	"$WELD" extract-lora "$F64" --base "$B64" -o "$T/e" -e '('
refuse "nothing to factor" 1 "no module to write as LoRA" "$T/e" \
	"$WELD" extract-lora "$F64" --base "$B64" -o "$T/e" -i nothing-matches
refuse "a base of other shapes" 1 "has no floating tensor of that name and shape" "$T/e" \
	"$WELD" extract-lora "$T/big/ft" --base "$B64" -o "$T/e"
refuse "an existing output" 1 "exists" "$T/x" "$WELD" extract-lora "$F64" --base "$B64" -o "$T/x"
summary
