#!/bin/sh
# make demo: build small example models with weld's own writer, then
# inspect, convert, verify and merge them with every method.
set -eu
W=${WELD:-./weld}
MK=${MKMODEL:-build/mkmodel}
D=demo
say() { printf '\n$ %s\n' "$*"; "$@"; }

rm -rf "$D"
mkdir -p "$D"
echo "creating example models in $D/ (a base and three fine-tunes, 2 layers, bf16)"
$MK "$D/base" --layers 2 --hidden 64 --inter 128 --vocab 256 --int
$MK "$D/math" --layers 2 --hidden 64 --inter 128 --vocab 256 --int --seed 1 --noise 0.5
$MK "$D/code" --layers 2 --hidden 64 --inter 128 --vocab 256 --int --seed 2 --noise 0.5
$MK "$D/chat" --layers 2 --hidden 64 --inter 128 --vocab 256 --int --seed 3 --noise 0.5

say $W inspect "$D/base"
say $W convert "$D/base" -o "$D/base-f32" --dtype f32 -q
say $W convert "$D/base-f32" -o "$D/base-bf16" --dtype bf16 -q
say $W verify "$D/base-bf16"
say $W plan ties --base "$D/base" -o "$D/ties" --density 0.3 "$D/math" "$D/code" "$D/chat"

F="$D/math $D/code $D/chat"
say $W average -o "$D/average" -q $F
say $W task-arithmetic --base "$D/base" -o "$D/task-arithmetic" --lambda 0.8 -q $F
say $W ties --base "$D/base" -o "$D/ties" --density 0.3 -q $F
say $W dare --base "$D/base" -o "$D/dare" --density 0.5 --seed 7 -q $F
say $W breadcrumbs --base "$D/base" -o "$D/breadcrumbs" --density 0.8 --gamma 0.02 -q $F
say $W consensus --base "$D/base" -o "$D/consensus" --k 2 --save-masks "$D/masks.safetensors" -q $F
say $W della --base "$D/base" -o "$D/della" --density 0.5 --epsilon 0.1 --seed 7 -q $F
say $W pcb --base "$D/base" -o "$D/pcb" --density 0.2 -q $F
say $W sce --base "$D/base" -o "$D/sce" --select-topk 0.3 -q $F
say $W arcee-fusion --base "$D/base" -o "$D/arcee-fusion" -q "$D/math"

say $W model-stock --base "$D/base" -o "$D/model-stock" -q $F
say $W nuslerp --base "$D/base" -o "$D/nuslerp" --weights 1,3 -q "$D/math" "$D/code"
say $W karcher -o "$D/karcher" -q $F

echo
echo "how far each merge moved the model.layers.0.mlp.up_proj weights from the base:"
for m in average task-arithmetic ties dare breadcrumbs consensus della pcb sce arcee-fusion model-stock nuslerp karcher; do
	printf '%-16s ' "$m"
	$W diff "$D/base" "$D/$m" | grep 'layers.0.mlp.up_proj' | cut -f2-4 |
		awk -F'\t' '{ printf "max |diff| %s  rms %s  cosine %s\n", $1, $2, $3 }'
done
echo
echo "an 8-expert Mixtral-style MoE merged into 4 experts per layer (M-SMoE):"
$MK "$D/moe" --layers 2 --hidden 64 --inter 96 --vocab 256 --experts 8
say $W expert-merge "$D/moe" -o "$D/moe-4" --groups 4 --layout compact -q
grep '"num_local_experts"' "$D/moe-4/config.json"
$W inspect "$D/moe-4" | tail -1
echo
echo "demo done: the models and merges are in $D/"
