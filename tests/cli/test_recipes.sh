#!/bin/sh
# test_recipes.sh - weld run and weld plan on every recipe of recipes/, on
# tiny models written by recipe_models.py (demo/base, demo/math, demo/code:
# the layout the recipes name as ../demo/...), then every class of recipe
# error. Each error must exit 1, name the recipe and the JSON path, and
# leave no output folder behind.
#
# usage: WELD=./weld sh tests/cli/test_recipes.sh
set -eu

. "$(dirname "$0")/harness.sh"
FIX="$HERE/recipe_models.py"

# refuse_recipe NAME JSON TEXT: a recipe (written to recipes/bad.json,
# beside the worked recipes, so ../demo/... resolves) that weld plan and
# weld run must refuse with exit 1 and TEXT (which names the JSON path) in
# the message
refuse_recipe() {
	printf '%s\n' "$2" >"$T/recipes/bad.json"
	refuse "plan refuses: $1" 1 "bad.json: $3" "$T/bad-out" "$WELD" plan "$T/recipes/bad.json"
	refuse "run refuses: $1" 1 "bad.json: $3" "$T/bad-out" "$WELD" run -q "$T/recipes/bad.json" -o "$T/bad-out"
}

names_shapes() {
	"$WELD" inspect "$1" | grep -v '^#' | cut -f1,3
}

# ---------------------------------------------------------------- fixtures

cp -R "$ROOT/recipes" "$T/recipes"
"$PYTHON" "$FIX" make "$T/demo"
"$PYTHON" "$FIX" make "$T/deep" --layers 6 --only math
names_shapes "$T/demo/base" >"$T/base.shapes"
mkdir "$T/out" "$T/again"

# ---------------------------------------------------------------- every recipe

for recipe in "$T"/recipes/*.json; do
	n=$(basename "$recipe" .json)
	out="$T/out/$n"
	expect "plan $n" "$WELD" plan "$recipe"
	expect "plan --json $n is JSON" sh -c '"$1" plan --json "$2" | "$3" -m json.tool' \
		sh "$WELD" "$recipe" "$PYTHON"
	expect "run $n" "$WELD" run -q "$recipe" -o "$out"
	if [ "$n" != frankenmerge ]; then
		names_shapes "$out" >"$T/out.shapes" 2>/dev/null || true
		expect "$n keeps the base's tensor names and shapes" cmp "$T/base.shapes" "$T/out.shapes"
	fi
	expect "run --from-output $n" "$WELD" run -q --from-output "$out" -o "$T/again/$n"
	expect "--from-output $n: same weld inspect --hash" \
		sh -c '"$1" inspect --hash "$2" >"$4/h1" && "$1" inspect --hash "$3" >"$4/h2" && cmp -s "$4/h1" "$4/h2"' \
		sh "$WELD" "$out" "$T/again/$n" "$T"
	expect "--from-output $n: same bytes" cmp "$out/model.safetensors" "$T/again/$n/model.safetensors"
done

# ---------------------------------------------------------------- what the outputs hold

expect "task_arithmetic matches the hand computation" \
	"$PYTHON" "$FIX" check-ta "$T/recipes/task_arithmetic.json" "$T/out/task_arithmetic"
expect "gradient matches the hand computation" \
	"$PYTHON" "$FIX" check-ta "$T/recipes/gradient.json" "$T/out/gradient"
expect "filter matches the hand computation" \
	"$PYTHON" "$FIX" check-ta "$T/recipes/filter.json" "$T/out/filter"
expect "slerp matches mergekit's formula (filters and gradients of t)" \
	"$PYTHON" "$FIX" check-slerp "$T/recipes/slerp.json" "$T/out/slerp"
expect "frankenmerge: renumbered byte copies, num_hidden_layers and layer_types updated" \
	"$PYTHON" "$FIX" check-slices "$T/recipes/frankenmerge.json" "$T/out/frankenmerge"

# gradient.json gives math the weight [0, 1] over 4 layers: 0, 1/3, 2/3, 1
grad_ok=true
for l in 0 1 2 3; do
	w=$("$PYTHON" "$FIX" weights "$T/recipes/gradient.json" "$T/out/gradient" \
		"model.layers.$l.mlp.up_proj.weight" ../demo/math)
	want=$(awk "BEGIN { printf \"%.4f\", $l / 3 }")
	[ "$w" = "$want" ] || { grad_ok=false; echo "#   layer $l: weight $w, expected $want"; }
done
if $grad_ok; then ok "gradient: a different weight on each layer (0, 1/3, 2/3, 1)"; else
	not_ok "gradient: a different weight on each layer"; fi

# filter.json: math weighs 1 on mlp tensors and 0.25 elsewhere
w1=$("$PYTHON" "$FIX" weights "$T/recipes/filter.json" "$T/out/filter" model.layers.2.mlp.down_proj.weight ../demo/math)
w2=$("$PYTHON" "$FIX" weights "$T/recipes/filter.json" "$T/out/filter" model.layers.2.self_attn.q_proj.weight ../demo/math)
if [ "$w1" = 1.0000 ] && [ "$w2" = 0.2500 ]; then ok "filter: the first matching filter wins, else the fallback"; else
	echo "mlp $w1 (want 1.0000), self_attn $w2 (want 0.2500)" >"$T/stderr"
	not_ok "filter: the first matching filter wins, else the fallback"; fi

(cd "$T/recipes" && "$WELD" plan frankenmerge.json) >"$T/plan1.txt" 2>&1 || true
expect "frankenmerge plan shows renamed sources" grep -qxF \
	"model.layers.2.mlp.up_proj.weight F32 [16, 8] copy model1:model.layers.1.mlp.up_proj.weight" "$T/plan1.txt"
(cd "$T/recipes" && "$WELD" plan gradient.json) >"$T/plan2.txt" 2>&1 || true
expect "gradient plan shows the weight of each layer" grep -qxF \
	"model.layers.1.mlp.up_proj.weight F32 [16, 8] task-arithmetic lambda=1 base=model0 model1(w=0.333333) model2(w=0.666667)" \
	"$T/plan2.txt"
expect "ties recipe = weld ties --density 0.5 --dtype bf16" sh -c '
	"$1" ties -q --base "$2/demo/base" --density 0.5 --dtype bf16 -o "$2/cli-ties" "$2/demo/math" "$2/demo/code" &&
	"$1" inspect --hash "$2/cli-ties" >"$2/h1" && "$1" inspect --hash "$2/out/ties" >"$2/h2" && cmp -s "$2/h1" "$2/h2"' sh "$WELD" "$T"
expect "dare_ties recipe = weld dare --combine ties --rescale l1" sh -c '
	"$1" dare -q --base "$2/demo/base" --density 0.5 --combine ties --rescale l1 --seed 7 -o "$2/cli-dare" "$2/demo/math" "$2/demo/code" &&
	"$1" inspect --hash "$2/cli-dare" >"$2/h1" && "$1" inspect --hash "$2/out/dare_ties" >"$2/h2" && cmp -s "$2/h1" "$2/h2"' sh "$WELD" "$T"
expect "the stored recipe has absolute paths and the defaults" sh -c '
	"$1" plan --json "$2/recipes/ties.json" | "$3" -c "
import json, sys
r = json.load(sys.stdin)[\"recipe\"]
assert r[\"base_model\"] == \"$2/demo/base\", r
assert r[\"parameters\"][\"density\"] == 1 and r[\"parameters\"][\"lambda\"] == 1, r
assert r[\"weld\"][\"sign\"] == \"sum\" and r[\"weld\"][\"scope\"] == \"tensor\", r"' sh "$WELD" "$(cd "$T" && pwd -P)" "$PYTHON"
expect "--shard-size is recorded and reused by --from-output" sh -c '
	"$1" run -q --shard-size 4K "$2/recipes/linear.json" -o "$2/sharded" &&
	"$1" run -q --from-output "$2/sharded" -o "$2/sharded2" &&
	test -f "$2/sharded2/model.safetensors.index.json" &&
	cmp "$2/sharded/model-00001-of-00003.safetensors" "$2/sharded2/model-00001-of-00003.safetensors"' sh "$WELD" "$T"

# ---------------------------------------------------------------- models found in the Hugging Face cache

H="$T/hf/models--demo--base"
mkdir -p "$H/refs" "$H/snapshots/1111aaaa" "$H/snapshots/2222bbbb"
cp "$T/demo/base/"* "$H/snapshots/1111aaaa/"
cp "$T/demo/math/"* "$H/snapshots/2222bbbb/"
echo 1111aaaa >"$H/refs/main"
echo 2222bbbb >"$H/refs/v2"
hf_recipe() {
	printf '{"merge_method": "task_arithmetic", "base_model": "%s", "models": [{"model": "../demo/math", "parameters": {"weight": 1}}]}\n' \
		"$1" >"$T/recipes/hf.json"
	HF_HUB_CACHE="$T/hf" "$WELD" plan --json "$T/recipes/hf.json" |
		"$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["recipe"]["base_model"])'
}
for spec in demo/base:1111aaaa demo/base@v2:2222bbbb demo/base@2222bbbb:2222bbbb; do
	name=${spec%:*}
	snap=${spec##*:}
	if got=$(hf_recipe "$name" 2>"$T/stderr") && [ "$got" = "$(cd "$H/snapshots/$snap" && pwd -P)" ]; then
		ok "Hugging Face cache: $name is snapshot $snap"
	else
		echo "got '${got:-}'" >>"$T/stderr"
		not_ok "Hugging Face cache: $name is snapshot $snap"
	fi
done
rm "$H/refs/main"
touch -t 200101010000 "$H/snapshots/1111aaaa"
if got=$(hf_recipe demo/base 2>"$T/stderr") && [ "$got" = "$(cd "$H/snapshots/2222bbbb" && pwd -P)" ]; then
	ok "Hugging Face cache: without refs/main, the newest snapshot"
else
	not_ok "Hugging Face cache: without refs/main, the newest snapshot"
fi
printf '{"merge_method": "task_arithmetic", "base_model": "demo/base@nope", "models": [{"model": "../demo/math"}]}\n' >"$T/recipes/hf.json"
refuse "Hugging Face cache: an unknown revision" 1 "hf.json: base_model: model 'demo/base@nope' not found" \
	"$T/hf-out" env HF_HUB_CACHE="$T/hf" "$WELD" run "$T/recipes/hf.json" -o "$T/hf-out"
printf '{"merge_method": "task_arithmetic", "base_model": "org/absent", "models": [{"model": "../demo/math"}]}\n' >"$T/recipes/hf.json"
refuse "Hugging Face cache: a missing model names every place looked at" 1 \
	"no file or folder '$(cd "$T/recipes" && pwd -P)/org/absent'; not in the Hugging Face cache: no folder '$T/nohome/hub/models--org--absent'" \
	"$T/hf-out" env -u HF_HUB_CACHE HF_HOME="$T/nohome" "$WELD" run "$T/recipes/hf.json" -o "$T/hf-out"

# ---------------------------------------------------------------- recipe errors (exit 1)

M='"base_model": "../demo/base", "merge_method"'
refuse_recipe "unknown parameter, with a suggestion" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}, {\"model\": \"../demo/code\", \"parameters\": {\"desnity\": 0.5}}]}" \
	"models[1].parameters.desnity: unknown parameter (did you mean 'density'?)"
refuse_recipe "unknown top-level key" \
	'{"merge_methd": "ties", "models": [{"model": "../demo/math"}]}' \
	"merge_methd: unknown key (did you mean 'merge_method'?)"
refuse_recipe "unknown key in the weld object" \
	"{$M: \"dare_ties\", \"models\": [{\"model\": \"../demo/math\"}], \"weld\": {\"sed\": 1}}" \
	"weld.sed: unknown key (did you mean 'seed'?)"
refuse_recipe "unknown key in a filter entry" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\", \"parameters\": {\"weight\": [{\"filtre\": \"mlp\", \"value\": 1}]}}]}" \
	"models[0].parameters.weight[0].filtre: unknown key (did you mean 'filter'?)"
refuse_recipe "unknown method" \
	"{$M: \"tie\", \"models\": [{\"model\": \"../demo/math\"}]}" \
	"merge_method: unknown method 'tie' (did you mean 'ties'?)"
refuse_recipe "a parameter the method does not take" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}], \"parameters\": {\"gamma\": 0.1}}" \
	"parameters.gamma: 'gamma' is not a parameter of ties"
refuse_recipe "a whole-tensor parameter given per model" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\", \"parameters\": {\"lambda\": 0.5}}]}" \
	"models[0].parameters.lambda: 'lambda' is not a per-model parameter"
refuse_recipe "wrong type" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}], \"parameters\": {\"lambda\": \"high\"}}" \
	"parameters.lambda: expected a number"
refuse_recipe "wrong type in a gradient" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\", \"parameters\": {\"weight\": [1, \"x\"]}}]}" \
	"models[0].parameters.weight[1]: a gradient holds numbers only"
refuse_recipe "a filter entry outside a list" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}], \"parameters\": {\"weight\": {\"filter\": \"mlp\", \"value\": 1}}}" \
	"parameters.weight: a {\"filter\", \"value\"} entry must be inside a list"
refuse_recipe "value out of range" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\", \"parameters\": {\"density\": 1.5}}]}" \
	"models[0].parameters.density: density 1.5 is outside (0, 1]"
refuse_recipe "value out of range in a filter list" \
	"{$M: \"slerp\", \"models\": [{\"model\": \"../demo/math\"}], \"parameters\": {\"t\": [{\"filter\": \"mlp\", \"value\": [0, 2]}, {\"value\": 0.5}]}}" \
	"parameters.t[0].value[1]: t 2 is outside [0, 1]"
refuse_recipe "weld value out of range" \
	"{$M: \"dare_ties\", \"models\": [{\"model\": \"../demo/math\"}], \"weld\": {\"trim\": 0}}" \
	"weld.trim: expected a density in (0, 1]"
refuse_recipe "missing model folder" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}, {\"model\": \"../demo/nope\"}]}" \
	"models[1].model: model '../demo/nope' not found: no file or folder"
refuse_recipe "missing base model" \
	'{"merge_method": "ties", "models": [{"model": "../demo/math"}]}' \
	"base_model: ties needs a base_model"
refuse_recipe "layer_range outside the model" \
	'{"merge_method": "passthrough", "slices": [{"sources": [{"model": "../demo/math", "layer_range": [0, 2]}]}, {"sources": [{"model": "../demo/code", "layer_range": [2, 9]}]}]}' \
	"slices[1].sources[0].layer_range: [2, 9] is outside '../demo/code', which has 4 layers"
refuse_recipe "unequal layer counts in a slice" \
	'{"merge_method": "linear", "slices": [{"sources": [{"model": "../demo/math", "layer_range": [0, 2]}, {"model": "../demo/code", "layer_range": [0, 3]}]}]}' \
	"slices[0].sources[1].layer_range: 3 layers, but slices[0].sources[0] has 2"
refuse_recipe "unequal layer counts between whole models" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"}, {\"model\": \"../deep/math\"}]}" \
	"models[1].model: '../deep/math' has 6 layers but '../demo/base' has 4"
refuse_recipe "passthrough with two sources in a slice" \
	'{"merge_method": "passthrough", "slices": [{"sources": [{"model": "../demo/math", "layer_range": [0, 2]}, {"model": "../demo/code", "layer_range": [0, 2]}]}]}' \
	"slices[0].sources: passthrough takes one source per slice"
refuse_recipe "slerp without t" \
	"{$M: \"slerp\", \"models\": [{\"model\": \"../demo/math\"}]}" \
	"parameters.t: slerp needs t"
refuse_recipe "invalid JSON" \
	"{$M: \"ties\", \"models\": [{\"model\": \"../demo/math\"},]}" \
	"invalid JSON at line 1"
many=$("$PYTHON" -c 'import json; print(json.dumps({"merge_method": "linear", "models": [{"model": "../demo/math", "parameters": {"weight": 1}}] * 65}))')
refuse_recipe "more models than a merge takes" "$many" "tensor 'lm_head.weight': average takes 1 to 64 models, not 65"

printf '{"merge_method": "ties"}\n' >"$T/recipes/bad.json"
mkdir "$T/exists"
echo keep >"$T/exists/file"
refuse "an existing output without -f" 1 "exists" "$T/exists" \
	"$WELD" run -q "$T/recipes/task_arithmetic.json" -o "$T/exists"
expect "the existing output is untouched" sh -c 'test "$(cat "$1/file")" = keep' sh "$T/exists"
refuse "--from-output of a folder without a recipe" 1 "no weld_recipe" "$T/fo-out" \
	"$WELD" run --from-output "$T/demo/base" -o "$T/fo-out"

# ---------------------------------------------------------------- usage errors (exit 2)

refuse "run without -o" 2 "an output folder is required" "$T/u-out" \
	"$WELD" run "$T/recipes/linear.json"
refuse "run with an unknown option" 2 "unknown option '--bogus'" "$T/u-out" \
	"$WELD" run --bogus "$T/recipes/linear.json" -o "$T/u-out"
refuse "run with a recipe and --from-output" 2 "not both" "$T/u-out" \
	"$WELD" run "$T/recipes/linear.json" --from-output "$T/out/linear" -o "$T/u-out"
refuse "run with a bad --shard-size" 2 "invalid value 'lots' for '--shard-size'" "$T/u-out" \
	"$WELD" run --shard-size lots "$T/recipes/linear.json" -o "$T/u-out"
refuse "plan with -o" 2 "'--output' is not used by 'weld plan'" "$T/u-out" \
	"$WELD" plan -o "$T/u-out" "$T/recipes/linear.json"

refuse_recipe "\u0000 in a model path" '{"merge_method": "linear", "models": [{"model": "../demo/math\u0000x"}]}' \
	'models[0].model: \u0000 in a string'

mkfifo "$T/fifo.json"
refuse "a recipe that is a FIFO is refused without blocking" 1 "is a FIFO, not a regular file" - timeout 10 "$WELD" plan "$T/fifo.json"

summary
