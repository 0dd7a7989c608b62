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

# the memory plan: a model of 2 layers (largest factored matrix 256 x 768)
"$MKMODEL" "$T/mb" --layers 2 --hidden 256 --inter 768 --vocab 512 --dtype f32 >/dev/null &&
"$MKMODEL" "$T/mf" --layers 2 --hidden 256 --inter 768 --vocab 512 --dtype f32 --seed 3 --noise 0.01 >/dev/null ||
	not_ok "mkmodel pair"
# field NAME FILE: a number of the --json summary
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2"; }
"$WELD" extract-lora "$T/mf" --base "$T/mb" -o "$T/mj1" -j 1 --json >"$T/mj1.json" || not_ok "extract-lora -j 1"
one=$(field memory_bound "$T/mj1.json")
expect "--json: the plan's bound, one matrix at a time with -j 1" \
	sh -c "[ '$one' -gt 0 ] && [ '$(field matrices_at_once "$T/mj1.json")' = 1 ]"
"$WELD" extract-lora "$T/mf" --base "$T/mb" -o "$T/mj2" -j 2 --json >"$T/mj2.json" || not_ok "extract-lora -j 2"
expect "-j 2 with room for two: two matrices at once, a bound above -j 1's" \
	sh -c "[ '$(field matrices_at_once "$T/mj2.json")' = 2 ] && [ '$(field memory_bound "$T/mj2.json")' -gt '$one' ]"
"$WELD" extract-lora "$T/mf" --base "$T/mb" -o "$T/mjs" -j 2 --max-memory "$one" --json >"$T/mjs.json" ||
	not_ok "extract-lora -j 2 --max-memory $one"
expect "-j 2 in a budget that holds one matrix: one at a time" \
	sh -c "[ '$(field matrices_at_once "$T/mjs.json")' = 1 ] && [ '$(field memory_bound "$T/mjs.json")' = '$one' ]"
expect "same bytes for -j 1, -j 2 and -j 2 --max-memory $one" sh -c \
	"cmp '$T/mj1/adapter_model.safetensors' '$T/mj2/adapter_model.safetensors' &&
	 cmp '$T/mj1/adapter_model.safetensors' '$T/mjs/adapter_model.safetensors'"
expect "-v prints the bound and the matrices at once" sh -c \
	"'$WELD' extract-lora -v '$T/mf' --base '$T/mb' -o '$T/mjv' -j 2 2>&1 | grep -q 'memory bound .*, 2 matrices at once'"
# (a sanitizer's shadow memory is not the program's: no RSS check there)
if ldd "$WELD" 2>/dev/null | grep -q 'libasan'; then
	skip "peak RSS within the plan's bound (a sanitized build)"
elif [ -x /usr/bin/time ]; then
	/usr/bin/time -f '%M' -o "$T/rss" "$WELD" extract-lora -q "$T/mf" --base "$T/mb" -o "$T/mjr" -j 2 \
		--max-memory "$one" || not_ok "extract-lora under /usr/bin/time"
	expect "peak RSS within the plan's bound ($one bytes)" sh -c "[ \$(( \$(tail -1 '$T/rss') * 1024 )) -le '$one' ]"
else
	skip "peak RSS within the plan's bound (no /usr/bin/time)"
fi
refuse "a budget below the largest matrix's need" 1 \
	"--max-memory $((one - 1)) is too small: tensor 'model.layers.0.mlp.down_proj.weight' (its 256 x 768 delta is decomposed whole, in double) needs at least $one bytes" \
	"$T/e" "$WELD" extract-lora "$T/mf" --base "$T/mb" -o "$T/e" --max-memory "$((one - 1))"
expect "-f replaces an adapter folder" "$WELD" extract-lora -q "$T/mf" --base "$T/mb" -o "$T/mj1" -f --max-rank 4
refuse "--max-memory 0" 2 "--max-memory must be more than 0" "$T/e" \
	"$WELD" extract-lora "$T/mf" --base "$T/mb" -o "$T/e" --max-memory 0

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
