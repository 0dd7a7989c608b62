#!/bin/sh
# nearswap, ram and ramplus_tl (METHODS 9, 10) from the command line and
# from recipes: the same bytes for any -j and --max-memory, a command and
# its recipe give the same tensors, and every error names what is wrong.
# (Their values are compared with the NumPy reference in tests/ref.)
. "$(dirname "$0")/harness.sh"
G="--layers 2 --hidden 128 --inter 1536 --vocab 512 --int"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
"$MKMODEL" "$T/big" --layers 2 --hidden 128 --inter 1536 --vocab 640 --int --seed 4 >/dev/null
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"


# same bytes for any -j and --max-memory (16M makes several chunks per
# tensor; ramplus_tl's counts are taken per block and added in order)
for cmd in "nearswap $B --t 0.02 $T/ft1" "ram $B --epsilon 0.01 $FT" \
	   "ram $B --plus --epsilon 0.01 --r 0.3 --alpha 2 $FT"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd
done

# --plus changes the result where a delta survives alone; the stored recipe
# is ramplus_tl, and running it again gives the same tensors
"$WELD" ram -q $B --epsilon 0.01 -o "$T/ram" $FT
"$WELD" ram -q $B --plus --epsilon 0.01 --r 0.3 --alpha 2 -o "$T/plus" $FT
expect "--plus changes the merge" differ "$T/ram" "$T/plus"
expect "ram --plus stores a ramplus_tl recipe" grep -qF 'merge_method\":\"ramplus_tl' "$T/plus/model.safetensors"
expect "ram --plus: run --from-output gives the same tensors" \
	sh -c '"$1" run -q --from-output "$2" -o "$3" && cmp -s "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/plus" "$T/plus-again"
"$WELD" nearswap -q $B --t 0.02 -o "$T/ns" "$T/ft1"
expect "nearswap: run --from-output gives the same bytes" \
	sh -c '"$1" run -q --from-output "$2" -o "$3" && cmp -s "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/ns" "$T/ns-again"
"$WELD" nearswap -q $B --t 0 -o "$T/t0" "$T/ft1"
expect "nearswap --t 0 gives the base" same_tensors "$T/base" "$T/t0"

# a recipe and its command: the same tensors
cat >"$T/ns.json" <<JSON
{"merge_method": "nearswap", "base_model": "$T/base", "models": [{"model": "$T/ft1"}],
 "parameters": {"t": 0.02}}
JSON
cat >"$T/plus.json" <<JSON
{"merge_method": "ramplus_tl", "base_model": "$T/base",
 "models": [{"model": "$T/ft1"}, {"model": "$T/ft2"}, {"model": "$T/ft3"}],
 "parameters": {"epsilon": 0.01, "r": 0.3, "alpha": 2}}
JSON
expect "recipe nearswap = weld nearswap" sh -c '"$1" run -q "$2" -o "$3" && "$4" "$3" "$5"' \
	sh "$WELD" "$T/ns.json" "$T/ns-r" true "$T/ns"
expect "recipe nearswap: same tensors as the command" same_tensors "$T/ns" "$T/ns-r"
expect "recipe ramplus_tl runs" "$WELD" run -q "$T/plus.json" -o "$T/plus-r"
expect "recipe ramplus_tl = weld ram --plus" same_tensors "$T/plus" "$T/plus-r"
expect "plan shows t per tensor" sh -c '"$1" plan "$2" | grep -q "nearswap t=0.02"' sh "$WELD" "$T/ns.json"
expect "plan shows ramplus_tl's values and its two passes" \
	sh -c '"$1" plan "$2" | grep -q "ram epsilon=0.01 r=0.3 alpha=2 passes=2"' sh "$WELD" "$T/plus.json"

# errors of the command line (exit 2) and of the plan (exit 1)
refuse "nearswap needs --t" 2 "--t is required by 'weld nearswap'" "$T/e1" \
	"$WELD" nearswap $B -o "$T/e1" "$T/ft1"
refuse "nearswap merges one model with the base" 1 "nearswap takes exactly two models" "$T/e2" \
	"$WELD" nearswap $B --t 1 -o "$T/e2" "$T/ft1" "$T/ft2"
refuse "nearswap takes no weights" 2 "option '--weights' is not used by 'weld nearswap'" "$T/e3" \
	"$WELD" nearswap $B --t 1 --weights 2 -o "$T/e3" "$T/ft1"
refuse "ram --r needs --plus" 2 "--r is used by 'weld ram' only with --plus" "$T/e4" \
	"$WELD" ram $B --r 0.2 -o "$T/e4" $FT
refuse "ram --alpha >= 0" 2 "invalid value '-1' for '--alpha'" "$T/e5" \
	"$WELD" ram $B --plus --alpha -1 -o "$T/e5" $FT
refuse "ram needs a base" 2 "--base is required" "$T/e6" "$WELD" ram -o "$T/e6" $FT
refuse "ram: a larger vocabulary is an error" 1 "ram needs the same vocabulary size in every model" \
	"$T/e7" "$WELD" ram $B -o "$T/e7" "$T/ft1" "$T/big"
refuse "nearswap: a larger vocabulary is an error" 1 "nearswap needs the same vocabulary size" \
	"$T/e8" "$WELD" nearswap $B --t 1 -o "$T/e8" "$T/big"

# errors of recipes: the JSON path and the reason
bad() {
	printf '%s\n' "$2" >"$T/bad.json"
	refuse "recipe: $1" 1 "$3" "$T/bad-out" "$WELD" run -q "$T/bad.json" -o "$T/bad-out"
}
M1="{\"model\": \"$T/ft1\"}"
M2="{\"model\": \"$T/ft2\"}"
bad "nearswap needs t" "{\"merge_method\": \"nearswap\", \"base_model\": \"$T/base\", \"models\": [$M1]}" \
	"parameters.t: nearswap needs t"
bad "nearswap takes no weight" "{\"merge_method\": \"nearswap\", \"base_model\": \"$T/base\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}], \"parameters\": {\"t\": 1}}" \
	"models[0].parameters.weight: 'weight' is not a parameter of nearswap"
bad "nearswap: one model" "{\"merge_method\": \"nearswap\", \"base_model\": \"$T/base\", \"models\": [$M1, $M2], \"parameters\": {\"t\": 1}}" \
	"nearswap merges exactly two models"
bad "ram takes no r" "{\"merge_method\": \"ram\", \"base_model\": \"$T/base\", \"models\": [$M1, $M2], \"parameters\": {\"r\": 0.5}}" \
	"parameters.r: 'r' is not a parameter of ram"
bad "ramplus_tl: alpha >= 0" "{\"merge_method\": \"ramplus_tl\", \"base_model\": \"$T/base\", \"models\": [$M1, $M2], \"parameters\": {\"alpha\": -0.5}}" \
	"parameters.alpha: alpha -0.5 must be >= 0"
bad "ram: epsilon per model" "{\"merge_method\": \"ram\", \"base_model\": \"$T/base\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"epsilon\": 0.1}}]}" \
	"models[0].parameters.epsilon: 'epsilon' is not a per-model parameter"
bad "ram needs a base" "{\"merge_method\": \"ram\", \"models\": [$M1, $M2]}" "base_model"

summary
