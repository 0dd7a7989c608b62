#!/bin/sh
# nuslerp, multislerp and karcher (METHODS 6-8) from the command line and
# from recipes: the same bytes for any -j and --max-memory (their Gram
# sums are added block by block in order), a command and its recipe give
# the same tensors, and the errors name what is wrong. (Values are compared
# with the NumPy reference in tests/ref.)
. "$(dirname "$0")/harness.sh"
G="--layers 2 --hidden 128 --inter 1536 --vocab 512 --int"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
"$MKMODEL" "$T/big" --layers 2 --hidden 128 --inter 1536 --vocab 640 --int --seed 4 >/dev/null
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"


for cmd in "nuslerp $B --weights 1,3 $T/ft1 $T/ft2" "nuslerp --no-flatten $T/ft1 $T/ft2" \
	   "multislerp $B --weights 1,2,3 $FT" "multislerp $FT" "karcher $FT"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd
done

# commands, their stored recipes and the same merges written as recipes
"$WELD" nuslerp -q $B --weights 1,3 -o "$T/nu" "$T/ft1" "$T/ft2"
"$WELD" nuslerp -q --no-flatten -o "$T/nur" "$T/ft1" "$T/ft2"
"$WELD" multislerp -q $B --weights 1,2,3 -o "$T/ms" $FT
"$WELD" karcher -q --max-iter 5 --tol 1e-4 -o "$T/ka" $FT
for o in nu nur ms ka; do
	expect "$o: run --from-output gives the same bytes" \
		sh -c '"$1" run -q --from-output "$2" -o "$3" && cmp -s "$2/model.safetensors" "$3/model.safetensors"' \
		sh "$WELD" "$T/$o" "$T/$o-again"
done
expect "--no-flatten changes nuslerp" differ "$T/nu" "$T/nur"
cat >"$T/nu.json" <<JSON
{"merge_method": "nuslerp", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 1}}, {"model": "$T/ft2", "parameters": {"weight": 3}}]}
JSON
cat >"$T/ms.json" <<JSON
{"merge_method": "multislerp", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 1}}, {"model": "$T/ft2", "parameters": {"weight": 2}},
            {"model": "$T/ft3", "parameters": {"weight": 3}}]}
JSON
cat >"$T/ka.json" <<JSON
{"merge_method": "karcher", "models": [{"model": "$T/ft1"}, {"model": "$T/ft2"}, {"model": "$T/ft3"}],
 "parameters": {"max_iter": 5, "tol": 1e-4}}
JSON
for o in nu ms ka; do
	expect "recipe $o runs" "$WELD" run -q "$T/$o.json" -o "$T/$o-r"
	expect "recipe $o = its command" same_tensors "$T/$o" "$T/$o-r"
done
expect "plan: nuslerp's statistics pass" \
	sh -c '"$1" plan "$2" | grep -q "nuslerp passes=2"' sh "$WELD" "$T/nu.json"
expect "plan: karcher's values" \
	sh -c '"$1" plan "$2" | grep -q "karcher max_iter=5 tol=0.0001 passes=2"' sh "$WELD" "$T/ka.json"
expect "plan: multislerp's values" \
	sh -c '"$1" plan "$2" | grep -q "multislerp eps=1e-08 passes=2"' sh "$WELD" "$T/ms.json"

refuse "nuslerp merges two models" 1 "nuslerp takes exactly 2 models, not 3" "$T/e1" \
	"$WELD" nuslerp $B -o "$T/e1" $FT
refuse "karcher takes no weights" 2 "option '--weights' is not used by 'weld karcher'" "$T/e2" \
	"$WELD" karcher --weights 1,2,3 -o "$T/e2" $FT
refuse "karcher: --max-iter is an integer" 2 "invalid value '2.5' for '--max-iter'" "$T/e3" \
	"$WELD" karcher --max-iter 2.5 -o "$T/e3" $FT
refuse "multislerp: a larger vocabulary is an error" 1 "multislerp needs the same vocabulary size" "$T/e4" \
	"$WELD" multislerp -o "$T/e4" "$T/ft1" "$T/big"
refuse "multislerp: weights summing to 0" 1 "the weights sum to 0" "$T/e5" \
	"$WELD" multislerp --weights 1,-1 -o "$T/e5" "$T/ft1" "$T/ft2"
bad() {
	printf '%s\n' "$2" >"$T/bad.json"
	refuse "recipe: $1" 1 "$3" "$T/bad-out" "$WELD" run -q "$T/bad.json" -o "$T/bad-out"
}
bad "nuslerp needs every weight" "{\"merge_method\": \"nuslerp\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}, {\"model\": \"$T/ft2\"}]}" \
	"models[1].parameters.weight: nuslerp needs a weight for every model"
bad "multislerp needs every weight" "{\"merge_method\": \"multislerp\", \"models\": [{\"model\": \"$T/ft1\"}, {\"model\": \"$T/ft2\"}]}" \
	"models[0].parameters.weight: multislerp needs a weight for every model"
bad "karcher takes no weight" "{\"merge_method\": \"karcher\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}]}" \
	"models[0].parameters.weight: 'weight' is not a parameter of karcher"
bad "karcher: max_iter is an integer" "{\"merge_method\": \"karcher\", \"models\": [{\"model\": \"$T/ft1\"}], \"parameters\": {\"max_iter\": 2.5}}" \
	"parameters.max_iter: max_iter 2.5 must be an integer"
refuse "nuslerp --row-wise needs --no-flatten" 2 "--row-wise needs --no-flatten" "$T/e6" \
	"$WELD" nuslerp --row-wise -o "$T/e6" "$T/ft1" "$T/ft2"

# nuslerp along dim 0 (columns): with 4608 columns every element of a block
# is a column of its own; the NumPy reference gives the same bytes, and so
# does the recipe
W="--layers 1 --hidden 64 --inter 4608 --vocab 128"
"$MKMODEL" "$T/wb" $W >/dev/null
"$MKMODEL" "$T/w1" $W --seed 1 --noise 0.5 >/dev/null
"$MKMODEL" "$T/w2" $W --seed 2 --noise 0.5 >/dev/null
"$WELD" nuslerp -q --base "$T/wb" --no-flatten --row-wise --dtype f32 -j 1 --max-memory 16M \
	-o "$T/col1" "$T/w1" "$T/w2"
"$WELD" nuslerp -q --base "$T/wb" --no-flatten --row-wise --dtype f32 -j 3 -o "$T/col3" "$T/w1" "$T/w2"
expect "nuslerp columns: same file for -j 1/3 and --max-memory 16M/1G" \
	cmp "$T/col1/model.safetensors" "$T/col3/model.safetensors"
if "$PYTHON" -c 'import numpy' 2>/dev/null; then
	"$PYTHON" "$ROOT/tests/ref/weld_ref.py" nuslerp --base "$T/wb" --no-flatten --row-wise --dtype f32 \
		-o "$T/colref" "$T/w1" "$T/w2"
	expect "nuslerp columns: the same tensors as the NumPy reference" \
		sh -c '"$1" diff "$2" "$3" | grep -q "^# 12 identical, 0 different"' sh "$WELD" "$T/col1" "$T/colref"
else
	skip "nuslerp columns against the NumPy reference (no numpy)"
fi
cat >"$T/col.json" <<JSON
{"merge_method": "nuslerp", "base_model": "$T/wb", "out_dtype": "float32",
 "models": [{"model": "$T/w1", "parameters": {"weight": 1}}, {"model": "$T/w2", "parameters": {"weight": 1}}],
 "parameters": {"nuslerp_flatten": false, "nuslerp_row_wise": true}}
JSON
expect "recipe nuslerp_row_wise runs" "$WELD" run -q "$T/col.json" -o "$T/col-r"
expect "recipe nuslerp_row_wise = weld nuslerp --no-flatten --row-wise" same_tensors "$T/col1" "$T/col-r"
# linear (METHODS 2) keeps the rules mergekit's recipes have: a weight per
# model, and a weight sum of 0 with normalize is refused (mergekit: NaN)
bad "linear needs every weight" "{\"merge_method\": \"linear\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}, {\"model\": \"$T/ft2\"}]}" \
	"models[1].parameters.weight: linear needs a weight for every model"
# so do the GTA family's mergekit names (METHODS 1): weld's own names
# (task-arithmetic, dare, consensus) default a weight to 1 as the commands do
for m in task_arithmetic ties dare_ties dare_linear breadcrumbs breadcrumbs_ties; do
	bad "$m needs every weight" "{\"merge_method\": \"$m\", \"base_model\": \"$T/wb\", \"models\": [{\"model\": \"$T/w1\"}]}" \
		"models[0].parameters.weight: $m needs a weight for every model"
done
expect "dare (weld's name) takes weight 1 by default" sh -c "printf '{\"merge_method\": \"dare\", \"base_model\": \"$T/wb\", \"models\": [{\"model\": \"$T/w1\"}]}' >'$T/dw.json' && '$WELD' plan '$T/dw.json' >/dev/null"
bad "linear: weights summing to 0" "{\"merge_method\": \"linear\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}, {\"model\": \"$T/ft2\", \"parameters\": {\"weight\": -1}}]}" \
	"the weights sum to 0"
cat >"$T/lin0.json" <<JSON
{"merge_method": "linear", "parameters": {"normalize": false},
 "models": [{"model": "$T/ft1", "parameters": {"weight": 1}}, {"model": "$T/ft2", "parameters": {"weight": -1}}]}
JSON
expect "linear: weights summing to 0 are fine without normalize" "$WELD" run -q "$T/lin0.json" -o "$T/lin0"
summary
