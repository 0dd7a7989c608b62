#!/bin/sh
# weld model-stock and the model_stock recipe (METHODS 4): the same bytes
# for any -j and --max-memory (per tensor, the Gram sums are added block by
# block in order; per row they are taken inside the output pass), a command
# and its recipe give the same tensors, the degenerate rule, the errors.
# (Values are compared with the NumPy reference in tests/ref.)
. "$(dirname "$0")/harness.sh"
G="--layers 2 --hidden 128 --inter 1536 --vocab 512 --int"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"


for cmd in "model-stock $B $FT" "model-stock $B --filter-wise $FT" "model-stock $B $T/ft1 $T/ft2"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd
done

"$WELD" model-stock -q $B -o "$T/ms" $FT
"$WELD" model-stock -q $B --filter-wise -o "$T/msf" $FT
expect "--filter-wise changes the merge" differ "$T/ms" "$T/msf"
expect "model-stock stores a model_stock recipe with filter_wise" \
	grep -qF 'merge_method\":\"model_stock\",' "$T/msf/model.safetensors"
expect "model-stock --filter-wise: run --from-output gives the same bytes" \
	sh -c '"$1" run -q --from-output "$2" -o "$3" && cmp -s "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/msf" "$T/msf-again"
cat >"$T/ms.json" <<JSON
{"merge_method": "model_stock", "base_model": "$T/base",
 "models": [{"model": "$T/base"}, {"model": "$T/ft1"}, {"model": "$T/ft2"}, {"model": "$T/ft3"}],
 "parameters": {"filter_wise": true}}
JSON
expect "recipe model_stock runs" "$WELD" run -q "$T/ms.json" -o "$T/msf-r"
expect "recipe model_stock filter_wise = weld model-stock --filter-wise" same_tensors "$T/msf" "$T/msf-r"
expect "plan: a statistics pass per tensor" \
	sh -c '"$1" plan model-stock --base "$2" "$3" "$4" | grep -q "model-stock passes=2"' sh "$WELD" "$T/base" "$T/ft1" "$T/ft2"
expect "plan: filter_wise takes its statistics in the output pass" \
	sh -c '"$1" plan "$2" | grep "^options" | grep -q "filter_wise=true" && ! "$1" plan "$2" | grep -q passes=' sh "$WELD" "$T/ms.json"

# two models with exactly opposite task vectors: 1 + (n - 1) c = 0, t = 0
# (the base) and a warning naming the tensor
"$PYTHON" - "$T/opp" "$ROOT/tests/ref" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import safetensors_io as sio
rng = np.random.default_rng(7)
b = {"w": (rng.integers(-64, 64, (4, 8)) / 64).astype(np.float32),
     "v": (rng.integers(-64, 64, (8,)) / 64).astype(np.float32)}
d = {k: (rng.integers(1, 8, v.shape) / 64).astype(np.float32) for k, v in b.items()}
d["v"][:4] = 0  # per row: "v" is one row, still opposite
sio.save_model(os.path.join(sys.argv[1], "base"), b, "F32")
sio.save_model(os.path.join(sys.argv[1], "up"), {k: b[k] + d[k] for k in b}, "F32")
sio.save_model(os.path.join(sys.argv[1], "down"), {k: b[k] - d[k] for k in b}, "F32")
PY
refuse "opposite task vectors: a warning" 0 "tensor 'w': 1 + (n - 1) * mean cosine = 0: t = 0 (the base)" - \
	"$WELD" model-stock --base "$T/opp/base" -o "$T/opp/out" "$T/opp/up" "$T/opp/down"
expect "opposite task vectors: the base" same_tensors "$T/opp/base" "$T/opp/out"
refuse "opposite task vectors per row: a warning with the count" 0 "tensor 'w': 4 of 4 rows have" - \
	"$WELD" model-stock --filter-wise --base "$T/opp/base" -o "$T/opp/outf" "$T/opp/up" "$T/opp/down"
expect "opposite task vectors per row: the base" same_tensors "$T/opp/base" "$T/opp/outf"

refuse "one model is too few" 1 "model-stock takes 2 to 64 models, not 1" "$T/e1" \
	"$WELD" model-stock $B -o "$T/e1" "$T/ft1"
refuse "no weights" 2 "option '--weights' is not used by 'weld model-stock'" "$T/e2" \
	"$WELD" model-stock $B --weights 1,2 -o "$T/e2" "$T/ft1" "$T/ft2"
refuse "no --scope" 2 "option '--scope' is not used by 'weld model-stock'" "$T/e3" \
	"$WELD" model-stock $B --scope row -o "$T/e3" "$T/ft1" "$T/ft2"
bad() {
	printf '%s\n' "$2" >"$T/bad.json"
	refuse "recipe: $1" 1 "$3" "$T/bad-out" "$WELD" run -q "$T/bad.json" -o "$T/bad-out"
}
M="[{\"model\": \"$T/ft1\"}, {\"model\": \"$T/ft2\"}]"
bad "model_stock takes no weight" "{\"merge_method\": \"model_stock\", \"base_model\": \"$T/base\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"weight\": 1}}, {\"model\": \"$T/ft2\"}]}" \
	"models[0].parameters.weight: 'weight' is not a parameter of model_stock"
bad "filter_wise is a boolean" "{\"merge_method\": \"model_stock\", \"base_model\": \"$T/base\", \"models\": $M, \"parameters\": {\"filter_wise\": 0.5}}" \
	"parameters.filter_wise: expected true or false"
bad "filter_wise holds for the whole merge" "{\"merge_method\": \"model_stock\", \"base_model\": \"$T/base\", \"models\": [{\"model\": \"$T/ft1\", \"parameters\": {\"filter_wise\": true}}, {\"model\": \"$T/ft2\"}]}" \
	"models[0].parameters.filter_wise: 'filter_wise' holds for the whole merge"
bad "model_stock needs a base" "{\"merge_method\": \"model_stock\", \"models\": $M}" "base_model"

summary
