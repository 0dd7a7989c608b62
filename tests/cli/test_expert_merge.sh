#!/bin/sh
# test_expert_merge.sh - weld expert-merge end to end on tiny MoE checkpoints
# written by expert_merge_fixture.py (4 experts in two known clusters, 2 MoE
# layers, F = 6, H = 8). Each output is compared with the M-SMoE formulas
# worked out in float64 by the fixture's 'check'.
#
# usage: WELD=./weld sh tests/cli/test_expert_merge.sh
set -eu

. "$(dirname "$0")/harness.sh"
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "test_expert_merge: needs $PYTHON with NumPy (make deps, or apt-get install python3-numpy)" >&2
	exit 1
fi
FIX="$HERE/expert_merge_fixture.py"

fixture() {
	"$PYTHON" "$FIX" "$@"
}

# ---------------------------------------------------------------- fixtures

fixture make "$T/mix"
fixture make "$T/mix16" --dtype bf16
fixture make "$T/perm" --permuted
fixture make "$T/qwen" --style qwen
fixture make "$T/deepseek" --style qwen --dense-first
fixture make "$T/dense" --style dense
fixture make "$T/v3" --style deepseek_v3
for x in fused stacked stacked3; do
	fixture make "$T/v3$x" --style deepseek_v3 --experts $x
	fixture make "$T/perm$x" --style qwen --experts $x --permuted
done
fixture stats "$T/balanced.json" balanced
fixture stats "$T/balanced12.json" balanced --layers 1,2
fixture stats "$T/skewed.json" skewed
fixture stats "$T/negative.json" negative
printf '{"layers": {"0": {"frequency": [1, 1, 1, 1]},}}' >"$T/broken.json"
# similarities that contradict the router clusters: layer 0 (dominants 0, 2)
# sends 1 to 0 and 3 to 2; layer 1 (dominants 3, 2) sends 1 to 3 and 0 to 2
cat >"$T/similar.json" <<'EOF'
{"layers": {
  "0": {"frequency": [0.4, 0.1, 0.3, 0.2],
        "similarity": [[1, 0, 0, 0], [0.8, 1, 0.2, 0], [0, 0, 1, 0], [0.1, 0, 0.9, 1]]},
  "1": {"frequency": [0.1, 0.2, 0.3, 0.4],
        "similarity": [[1, 0, 0.9, 0.1], [0, 1, 0.2, 0.9], [0, 0, 1, 0], [0, 0, 0, 1]]}}}
EOF

# ---------------------------------------------------------------- alias layout

alias_stats() {
	"$WELD" expert-merge -q -o "$T/a1" --groups 2 --stats "$T/balanced.json" "$T/mix" &&
	fixture check "$T/mix" "$T/a1" --layout alias --stats "$T/balanced.json" --groups 2 &&
	test -f "$T/a1/tokenizer.json" &&
	grep -q '"num_local_experts":[[:space:]]*4' "$T/a1/config.json"
}
expect "alias: shapes kept, members hold the frequency-weighted mean" alias_stats

alias_uniform() {
	"$WELD" expert-merge -q -o "$T/a2" --groups 2 "$T/mix" &&
	fixture check "$T/mix" "$T/a2" --layout alias --groups 2
}
expect "alias without stats: uniform usage, dominants 0..G-1" alias_uniform

# the same bytes for any -j, --max-memory and output name: the recorded
# recipe holds the settings, not the command line
same_any_threads() {
	"$WELD" expert-merge -q -j 1 --max-memory 64M -o "$T/j1" --groups 2 --align "$T/mix" &&
	"$WELD" expert-merge -q -j 2 -o "$T/j2-other-name" --groups 2 --align "$T/mix" &&
	diff -r "$T/j1" "$T/j2-other-name" >/dev/null
}
expect "same output for -j 1 and -j 2, and any -o" same_any_threads
mkdir "$T/holder" && cp -R "$T/mix" "$T/holder/mix"
refuse "-f refuses a folder holding the input" 1 "holds the input" - "$WELD" expert-merge -q -f --groups 2 -o "$T/holder" "$T/holder/mix"
expect "... and leaves it whole" test -f "$T/holder/mix/config.json"

alias_three() {
	"$WELD" expert-merge -q -o "$T/a3" --groups 3 "$T/qwen" &&
	fixture check "$T/qwen" "$T/a3" --layout alias --groups 3
}
expect "alias, Qwen2-MoE names, 3 groups, shared expert untouched" alias_three

alias_weight() {
	"$WELD" expert-merge -q -o "$T/a4" --groups 2 --similarity weight "$T/mix" &&
	fixture check "$T/mix" "$T/a4" --layout alias --groups 2
}
expect "--similarity weight finds the same clusters" alias_weight

alias_bf16() {
	"$WELD" expert-merge -q -o "$T/a5" --groups 2 --stats "$T/balanced.json" "$T/mix16" &&
	fixture check "$T/mix16" "$T/a5" --layout alias --stats "$T/balanced.json" --groups 2
}
expect "bf16 input stays bf16" alias_bf16

dtype_option() {
	"$WELD" expert-merge -q -o "$T/a6" --groups 2 --dtype bf16 "$T/mix" &&
	fixture check "$T/mix" "$T/a6" --layout alias --groups 2 &&
	grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$T/a6/config.json"
}
expect "--dtype bf16 converts every floating tensor and config.json" dtype_option

global_allocation() {
	"$WELD" expert-merge -q --json -o "$T/a7" --groups 2 --stats "$T/skewed.json" "$T/mix" >"$T/a7.json" &&
	"$PYTHON" -c '
import json, sys
s = json.load(open(sys.argv[1]))
g = [l["groups"] for l in s["layers"]]
assert g == [1, 4], g
assert s["layers"][0]["expert_to_group"] == [0, 0, 0, 0]
assert s["layers"][1]["expert_to_group"] == [0, 1, 2, 3]
' "$T/a7.json"
}
expect "global allocation: skewed usage gives 1 and 4 groups (--json)" global_allocation

stats_similarity() {
	"$WELD" expert-merge -q --json -o "$T/a9" --groups 2 --stats "$T/similar.json" "$T/mix" \
		>"$T/a9.json" &&
	"$PYTHON" -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["similarity"] == "stats", s["similarity"]
assert [l["expert_to_group"] for l in s["layers"]] == [[0, 0, 1, 1], [1, 0, 1, 0]], s
assert [l["dominant"] for l in s["layers"]] == [[0, 2], [3, 2]], s
' "$T/a9.json"
}
expect "similarity matrices from --stats override the router" stats_similarity

uniform_groups() {
	"$WELD" expert-merge -q -o "$T/a8" --groups 2 --uniform-groups --stats "$T/skewed.json" \
		--layout compact "$T/mix" &&
	fixture check "$T/mix" "$T/a8" --layout compact --stats "$T/skewed.json" --groups 2
}
expect "--uniform-groups forces G with skewed stats" uniform_groups

# ---------------------------------------------------------------- compact layout

compact_mixtral() {
	"$WELD" expert-merge -q -o "$T/c1" --groups 2 --stats "$T/balanced.json" --layout compact \
		"$T/mix" &&
	fixture check "$T/mix" "$T/c1" --layout compact --stats "$T/balanced.json" --groups 2 &&
	grep -q '"num_local_experts":[[:space:]]*2' "$T/c1/config.json" &&
	grep -q '"num_hidden_layers":[[:space:]]*2' "$T/c1/config.json"
}
expect "compact: consistent Mixtral folder, experts 0..G-1, router [G, H]" compact_mixtral

compact_deepseek() {
	"$WELD" expert-merge -q -o "$T/c2" --groups 2 --stats "$T/balanced12.json" \
		--layout compact "$T/deepseek" &&
	fixture check "$T/deepseek" "$T/c2" --layout compact --stats "$T/balanced12.json" --groups 2 &&
	grep -q '"n_routed_experts":[[:space:]]*2' "$T/c2/config.json"
}
expect "compact DeepSeek-MoE: dense first layer copied, n_routed_experts updated" compact_deepseek

# DeepSeek-V3: dense layer 0, shared experts and the router's
# e_score_correction_bias (rows of the dominants when compact), and
# group-limited routing made valid for 2 experts (n_group 2 -> 1: noaux_tc
# scores a group by its best 2 experts)
v3_alias() {
	"$WELD" expert-merge -q -o "$T/v3a" --groups 2 --stats "$T/balanced12.json" "$T/v3" &&
	fixture check "$T/v3" "$T/v3a" --layout alias --stats "$T/balanced12.json" --groups 2 &&
	"$PYTHON" -c 'import json, sys; assert json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))' \
		"$T/v3/config.json" "$T/v3a/config.json"
}
expect "DeepSeek-V3 alias: shared experts, dense layer, bias copied, config.json unchanged" v3_alias
# FP8 experts with block scales (DESIGN 6.2): merged as their decoded
# values, written BF16, quantization_config removed from config.json
"$PYTHON" "$HERE/fp8_fixture.py" quantize "$T/v3" "$T/v3fp8" || exit 1
"$WELD" convert -q "$T/v3fp8" -o "$T/v3dec" --dtype f32 || exit 1
v3_fp8() {
	"$WELD" expert-merge -q -o "$T/v3f-$1" --groups 2 --stats "$T/balanced12.json" --layout compact --dtype bf16 "$T/$1"
}
expect "FP8 experts merge" v3_fp8 v3fp8
expect "... and so do their decoded values" v3_fp8 v3dec
expect "... the same tensors as from the decoded model" sh -c "'$WELD' diff '$T/v3f-v3fp8' '$T/v3f-v3dec' | tail -1 | grep -q ' 0 different, 0 only in A, 0 only in B$'"
v3_fp8_alias() {
	"$WELD" expert-merge -q -o "$T/v3fa" --groups 2 --stats "$T/balanced12.json" "$T/v3fp8" &&
	"$WELD" inspect "$T/v3fa" | grep 'experts\.0\.down_proj' | grep -q '	BF16	' &&
	"$PYTHON" -c 'import json, sys; a = json.load(open(sys.argv[1])); del a["quantization_config"]; assert a == json.load(open(sys.argv[2]))' \
		"$T/v3fp8/config.json" "$T/v3fa/config.json"
}
expect "FP8 experts: BF16 out, config.json without quantization_config" v3_fp8_alias
v3_compact() {
	"$WELD" expert-merge -o "$T/v3c" --groups 2 --stats "$T/balanced12.json" --layout compact \
		"$T/v3" 2>"$T/v3c.err" &&
	fixture check "$T/v3" "$T/v3c" --layout compact --stats "$T/balanced12.json" --groups 2 &&
	"$PYTHON" -c '
import json, sys
c = json.load(open(sys.argv[1]))
assert (c["n_routed_experts"], c["n_group"], c["topk_group"]) == (2, 1, 1), c
assert (c["first_k_dense_replace"], c["num_experts_per_tok"]) == (1, 2), c
' "$T/v3c/config.json" &&
	grep -q "n_group 2 -> 1, topk_group 1 -> 1" "$T/v3c.err"
}
expect "DeepSeek-V3 compact: bias rows of the dominants, n_group/topk_group made valid" v3_compact
v3_same() {
	"$WELD" expert-merge -q -j 1 --max-memory 4K -o "$T/v3c1" --groups 2 \
		--stats "$T/balanced12.json" --layout compact --align "$T/v3" &&
	"$WELD" expert-merge -q -j 3 -o "$T/v3c3" --groups 2 \
		--stats "$T/balanced12.json" --layout compact --align "$T/v3" &&
	fixture same "$T/v3c1" "$T/v3c3"
}
expect "DeepSeek-V3 compact --align: same bytes for -j 1 --max-memory 4K and -j 3" v3_same
# fused gate_up_proj [2F, H] per expert, and transformers' stacked
# experts.gate_up_proj [E, 2F, H] / experts.down_proj [E, H, F]: the same
# groups and merged values as the per-expert checkpoint, both layouts
fused_stacked() {
	for x in fused stacked stacked3; do
		for lay in alias compact; do
			"$WELD" expert-merge -q -o "$T/$x-$lay" --groups 2 --stats "$T/balanced12.json" \
				--layout $lay "$T/v3$x" &&
			fixture check "$T/v3$x" "$T/$x-$lay" --layout $lay --stats "$T/balanced12.json" \
				--groups 2 || return 1
		done
	done
}
expect "fused gate_up, stacked 3-D experts (fused or not), alias and compact: hand-checked groups and merges" fused_stacked
stacked_shapes() {
	"$WELD" inspect --json "$T/stacked-compact" >"$T/sc.json" &&
	"$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x["shape"] for x in d["tensors"]}
assert t["model.layers.1.mlp.experts.gate_up_proj"] == [2, 12, 8], t
assert t["model.layers.2.mlp.experts.down_proj"] == [2, 8, 6], t
assert t["model.layers.1.mlp.gate.weight"] == [2, 8], t
assert t["model.layers.1.mlp.gate.e_score_correction_bias"] == [2], t
assert not any(".experts.0." in n for n in t), t
' "$T/sc.json"
}
expect "stacked compact: [G, 2F, H] and [G, H, F] tensors, routers [G, H] and [G]" stacked_shapes
plan_forms() {
	"$WELD" plan expert-merge --groups 3 --layout compact "$T/v3stacked" >"$T/pf.txt" &&
	grep -q "(qwen layout, stacked fused experts, 4 experts, 2 MoE layers, hidden 8)" "$T/pf.txt" &&
	grep -q "^routing     config.json: n_group 2 -> 1, topk_group 1 -> 1" "$T/pf.txt" &&
	"$WELD" plan expert-merge --json --groups 2 "$T/v3fused" >"$T/pf.json" &&
	"$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["experts_form"], d["n_group"], d["topk_group"]) == ("fused", 2, 1), d
' "$T/pf.json"
}
expect "weld plan names the experts' form and the routing the output gets" plan_forms
fused_align() {
	for x in fused stacked stacked3; do
		"$WELD" expert-merge -q -o "$T/pa-$x" --groups 2 --align "$T/perm$x" &&
		fixture check "$T/perm$x" "$T/pa-$x" --layout alias --groups 2 --aligned || return 1
	done
}
expect "--align undoes planted permutations in fused and stacked experts (both halves of gate_up)" fused_align
stacked_same() {
	"$WELD" expert-merge -q -j 1 --max-memory 4K -o "$T/ss1" --groups 2 --align "$T/permstacked" &&
	"$WELD" expert-merge -q -j 3 -o "$T/ss3" --groups 2 --align "$T/permstacked" &&
	fixture same "$T/ss1" "$T/ss3" &&
	"$WELD" expert-merge -q -j 1 --max-memory 1K -o "$T/sw1" --groups 2 --similarity weight "$T/v3stacked" &&
	"$WELD" expert-merge -q -j 3 -o "$T/sw3" --groups 2 --similarity weight "$T/v3stacked" &&
	fixture same "$T/sw1" "$T/sw3" &&
	fixture check "$T/v3stacked" "$T/sw1" --layout alias --groups 2
}
expect "stacked: same bytes for any -j and --max-memory (--align, --similarity weight)" stacked_same
stacked_parts() {
	"$WELD" expert-merge -q -o "$T/sp" --groups 2 --layout compact --shard-size 1K "$T/v3stacked" &&
	parts_join "$T/sp3" 3 --groups 2 --layout compact --shard-size 1K "$T/v3stacked" &&
	diff -r "$T/sp" "$T/sp3" >/dev/null
}
# DeepSeek-V3's real manifest (BF16, sparse files: no disk): 256 experts in
# layers 3-61 (the MTP layer 61 included), 100 groups keep group-limited
# routing as 5 groups, 3 chosen
v3_real() {
	"$PYTHON" "$ROOT/tests/tools/deepseek_sparse.py" "$T/dsv3" --bf16 >/dev/null &&
	"$WELD" plan expert-merge --json --groups 100 --layout compact "$T/dsv3" >"$T/dsv3.json" &&
	"$PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["experts"], d["moe_layers"], d["hidden"]) == (256, 59, 7168), d
assert [l["layer"] for l in d["layers"]] == list(range(3, 62)), d["layers"][0]
assert (d["n_group"], d["topk_group"]) == (5, 3), d
assert all(l["groups"] == 100 and len(l["expert_to_group"]) == 256 for l in d["layers"])
' "$T/dsv3.json"
	_r=$?
	rm -rf "$T/dsv3"
	return $_r
}
expect "DeepSeek-V3-shaped checkpoint: 59 MoE layers of 256 experts, compact 100 -> n_group 5, topk_group 3" v3_real
# v3_config NAME PYTHON-EDIT: a copy of the DeepSeek-V3 fixture whose
# config.json c is edited
v3_config() {
	cp -R "$T/v3" "$T/$1" &&
	"$PYTHON" -c "import json, sys; c = json.load(open(sys.argv[1])); $2; json.dump(c, open(sys.argv[1], 'w'))" \
		"$T/$1/config.json"
}
v3_config v3g3 'c["n_group"] = 3'
refuse "n_group that does not divide the experts is refused" 1 \
	"config.json: n_group 3 does not divide the 4 routed experts" "$T/e10" \
	"$WELD" expert-merge -o "$T/e10" --groups 2 "$T/v3g3"
v3_config v3tk 'c["topk_group"] = 3'
refuse "topk_group above n_group is refused" 1 "topk_group 3 is more than the n_group 2 groups" "$T/e11" \
	"$WELD" expert-merge -o "$T/e11" --groups 2 "$T/v3tk"
v3_config v3str 'c["n_group"] = "2"'
refuse "a routing key that is not an integer is refused" 1 "config.json: 'n_group' is not an integer" "$T/e12" \
	"$WELD" expert-merge -o "$T/e12" --groups 2 "$T/v3str"
v3_config v3fk 'c["first_k_dense_replace"] = 2'
refuse "first_k_dense_replace above an MoE layer is refused" 1 \
	"first_k_dense_replace is 2 (layers 0-1 dense) but layer 1 has experts" "$T/e13" \
	"$WELD" expert-merge -o "$T/e13" --groups 2 "$T/v3fk"
v3_config v3k 'c["num_experts_per_tok"] = 3'
refuse "routing that cannot pick num_experts_per_tok experts is refused" 1 \
	"cannot pick num_experts_per_tok 3 experts from topk_group 1 of n_group 2 groups of 2" "$T/e14" \
	"$WELD" expert-merge -o "$T/e14" --groups 2 "$T/v3k"
v3_config v3one 'c["num_experts_per_tok"] = 1'
refuse "compact to 1 expert cannot keep noaux_tc group routing: the reason" 1 \
	"1 experts per layer cannot keep group-limited routing" "$T/e15" \
	"$WELD" expert-merge -o "$T/e15" --groups 1 --layout compact "$T/v3one"

# ---------------------------------------------------------------- alignment

align_recovers() {
	"$WELD" expert-merge -q -o "$T/p1" --groups 2 --align "$T/perm" &&
	fixture check "$T/perm" "$T/p1" --layout alias --groups 2 --aligned &&
	"$WELD" expert-merge -q -o "$T/p2" --groups 2 "$T/perm" &&
	! fixture check "$T/perm" "$T/p2" --layout alias --groups 2 --aligned 2>/dev/null
}
expect "--align undoes planted neuron permutations before merging" align_recovers

align_warning() {
	fixture make "$T/wide" --ffn 4100 &&
	"$WELD" plan expert-merge --groups 2 --align "$T/wide" >/dev/null 2>"$T/wide.err" &&
	grep -q 'warning: --align on FFN width 4100' "$T/wide.err" &&
	"$WELD" plan expert-merge --groups 2 --align "$T/mix" >/dev/null 2>"$T/narrow.err" &&
	! grep -q warning "$T/narrow.err"
}
expect "--align warns before a large run (F > 4096)" align_warning

# ---------------------------------------------------------------- determinism

same_expert_bytes() {
	"$WELD" expert-merge -q -o "$T/d1" --groups 2 --similarity weight -j1 "$T/mix" &&
	"$WELD" expert-merge -q -o "$T/d2" --groups 2 --similarity weight -j4 --max-memory 1K "$T/mix" &&
	fixture same "$T/d1" "$T/d2" &&
	"$WELD" expert-merge -q -o "$T/d3" --groups 2 --align -j3 --max-memory 4K "$T/perm" &&
	fixture same "$T/p1" "$T/d3"
}
expect "same tensors for any -j and --max-memory" same_expert_bytes

sharded() {
	"$WELD" expert-merge -q -o "$T/s1" --groups 2 --shard-size 2K "$T/mix" &&
	test -f "$T/s1/model.safetensors.index.json" &&
	fixture check "$T/mix" "$T/s1" --layout alias --groups 2
}
expect "--shard-size splits the output" sharded

no_copy() {
	"$WELD" expert-merge -q -o "$T/n1" --groups 2 --no-copy-files "$T/mix" &&
	test ! -e "$T/n1/config.json" && test ! -e "$T/n1/tokenizer.json" &&
	test -f "$T/n1/expert_groups.json"
}
expect "--no-copy-files writes only tensors and expert_groups.json" no_copy

force() {
	mkdir "$T/f1" && : >"$T/f1/expert_groups.json" && : >"$T/f1/model-00009-of-00009.safetensors" &&
	! "$WELD" expert-merge -q -o "$T/f1" --groups 2 "$T/mix" 2>/dev/null &&
	test -f "$T/f1/model-00009-of-00009.safetensors" &&
	"$WELD" expert-merge -q -f -o "$T/f1" --groups 2 "$T/mix" &&
	test ! -e "$T/f1/model-00009-of-00009.safetensors" && test -s "$T/f1/expert_groups.json" &&
	fixture check "$T/mix" "$T/f1" --layout alias --groups 2
}
expect "an existing output needs -f, then is replaced" force

plan_only() {
	"$WELD" plan expert-merge -o "$T/pl" --groups 2 --stats "$T/balanced.json" "$T/mix" >"$T/plan.txt" &&
	test ! -e "$T/pl" &&
	grep -q '^layer 0: 2 groups, expert->group 0 1 1 0, dominant 0 2$' "$T/plan.txt" &&
	grep -q '^layer 1: 2 groups, expert->group 0 1 1 0, dominant 3 2$' "$T/plan.txt"
}
expect "weld plan expert-merge prints the groups and writes nothing" plan_only

help_text() {
	"$WELD" expert-merge -h | grep -q '^usage: weld expert-merge'
}
expect "-h prints the usage on stdout" help_text

# ---------------------------------------------------------------- --part I/N and weld join

# parts_join OUT N ARGS...: expert-merge ARGS in N parts (each with its own
# -j and --max-memory), joined into OUT
parts_join() {
	_o=$1 _n=$2 _i=1
	shift 2
	while [ "$_i" -le "$_n" ]; do
		"$WELD" expert-merge -q -j $((_i % 3 + 1)) --max-memory $((_i * 8))K -o "$_o" \
			--part "$_i/$_n" "$@" || return 1
		_i=$((_i + 1))
	done
	"$WELD" join -q -o "$_o" "$_o".part-*-of-"$_n"
}
parts_alias() {
	"$WELD" expert-merge -q -o "$T/pa" --groups 2 --align --shard-size 2K \
		--stats "$T/balanced.json" "$T/perm" &&
	test "$(ls "$T/pa" | grep -c safetensors$)" -gt 3 &&
	for n in 1 2 3 9; do
		parts_join "$T/pa$n" $n --groups 2 --align --shard-size 2K --stats "$T/balanced.json" \
			"$T/perm" && diff -r "$T/pa" "$T/pa$n" >/dev/null || return 1
	done
}
expect "--part I/N, alias --align --stats: joined output cmp-identical for N = 1, 2, 3, 9" parts_alias
parts_compact() {
	"$WELD" expert-merge -q -o "$T/pc" --groups 2 --layout compact --shard-size 1K \
		"$T/deepseek" &&
	parts_join "$T/pc3" 3 --groups 2 --layout compact --shard-size 1K "$T/deepseek" &&
	diff -r "$T/pc" "$T/pc3" >/dev/null && "$WELD" verify -q "$T/pc3"
}
expect "--part I/N, compact DeepSeek-MoE in 3 parts: cmp-identical, verify passes" parts_compact
parts_empty() {
	"$WELD" expert-merge -q -o "$T/pe" --groups 2 --shard-size 0 --part 1/2 "$T/mix" &&
	test ! -e "$T/pe.part-1-of-2/model.safetensors" && test -f "$T/pe.part-1-of-2/expert_groups.json" &&
	"$WELD" verify -q "$T/pe.part-1-of-2" &&
	"$WELD" expert-merge -q -o "$T/pe" --groups 2 --shard-size 0 --part 2/2 "$T/mix" &&
	"$WELD" join -q -o "$T/pe" "$T"/pe.part-*-of-2 &&
	fixture check "$T/mix" "$T/pe" --layout alias --groups 2
}
expect "--part 1/2 of a one-file output holds no shard, verifies, and joins" parts_empty
parts_auto() {
	SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=2 \
		"$WELD" expert-merge -q -o "$T/pu" --groups 2 --shard-size 2K --part auto "$T/mix" &&
	test -f "$T/pu.part-2-of-2/weld-part.json"
}
expect "--part auto reads Slurm's array variables" parts_auto
expect "--part I/N of stacked experts in 3 parts: cmp-identical" stacked_parts
refuse "--parts without --part auto is a usage error" 2 "--parts goes with --part auto" "$T/u6" \
	"$WELD" expert-merge -o "$T/u6" --groups 2 --parts 2 "$T/mix"
refuse "--part 3/2 is a usage error" 2 "for '--part'" "$T/u7.part-3-of-2" \
	"$WELD" expert-merge -o "$T/u7" --groups 2 --part 3/2 "$T/mix"

# ---------------------------------------------------------------- man page examples

# Each command of the man page's EXAMPLES runs verbatim, on fixtures given
# the names the page uses.
man_examples() (
	man="$HERE/../../man/weld-expert-merge.1"
	mkdir -p "$T/ex" && cd "$T/ex" &&
	ln -s ../mix mixtral-8x7b && ln -s ../qwen qwen-moe && ln -s ../perm small-moe &&
	cp ../balanced.json stats.json &&
	sed -n '/^\.SH EXAMPLES/,/^\.SH/p' "$man" | sed -e 's/\\-/-/g' |
		sed -e ':a' -e '/\\e$/{N;s/\\e\n */ /;ba' -e '}' | grep '^weld ' >cmds &&
	test "$(wc -l <cmds)" -eq 4 &&
	while read -r line; do
		# shellcheck disable=SC2086
		"$WELD" ${line#weld } >/dev/null || { echo "failed: $line" >&2; return 1; }
	done <cmds &&
	test -f mixtral-m4/expert_groups.json && test -f moe-2e/expert_groups.json &&
	test -f merged/expert_groups.json
)
expect "the man page examples run" man_examples

# ---------------------------------------------------------------- errors

refuse "unknown MoE layout" 1 "found 0 expert tensors among 13" "$T/e1" \
	"$WELD" expert-merge -o "$T/e1" --groups 2 "$T/dense"
# hostile stacked tensors: rewrite the header of a copy
hostile_stacked() {
	hostile_header v3stacked "$@"
}
# hostile_header SRC NAME EDIT: a copy NAME of fixture SRC whose
# safetensors header h is edited by the Python statement EDIT
hostile_header() {
	_src=$1
	shift
	cp -R "$T/$_src" "$T/$1" &&
	"$PYTHON" -c "
import json, struct, sys
path = sys.argv[1] + '/model.safetensors'
data = open(path, 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
h = json.loads(data[8:8 + n])
$2
text = json.dumps(h).encode()
text += b' ' * (-len(text) % 8)
open(path, 'wb').write(struct.pack('<Q', len(text)) + text + data[8 + n:])
" "$T/$1"
}
hostile_stacked hs1 "h['model.layers.2.mlp.experts.gate_up_proj']['shape'] = [3, 16, 8]; h['model.layers.2.mlp.experts.down_proj']['shape'] = [3, 8, 8]"
refuse "a stacked tensor with another expert count is refused" 1 \
	"tensor 'model.layers.2.mlp.experts.down_proj': first dimension 3 is not the 4 experts" "$T/e16" \
	"$WELD" expert-merge -o "$T/e16" --groups 2 "$T/hs1"
hostile_stacked hs2 "t = h['model.layers.1.mlp.experts.gate_up_proj']; t['shape'] = [4, 8, 12]"
refuse "stacked gate_up in the transposed [E, H, 2F] order is refused" 1 \
	"layer 1: expert shapes do not form an FFN" "$T/e17" \
	"$WELD" expert-merge -o "$T/e17" --groups 2 "$T/hs2"
hostile_stacked hs3 "h['model.layers.1.mlp.experts.gate_up_proj_bias'] = {'dtype': 'F32', 'shape': [0], 'data_offsets': [0, 0]}"
hostile_header v3 hs4 "h['model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv'] = {'dtype': 'F32', 'shape': [0], 'data_offsets': [0, 0]}"
refuse "a scale beside an F32 expert weight is refused, not merged apart" 1 \
	"tensor 'model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv': a scale without its F8_E4M3 weight" "$T/e19" \
	"$WELD" expert-merge -o "$T/e19" --groups 2 "$T/hs4"
refuse "an unknown stacked expert tensor is named" 1 "unknown expert tensor 'gate_up_proj_bias'" "$T/e18" \
	"$WELD" expert-merge -o "$T/e18" --groups 2 "$T/hs3"
refuse "negative frequency names its JSON path" 1 \
	"negative.json: layers.1.frequency[2]: negative value -1" "$T/e2" \
	"$WELD" expert-merge -o "$T/e2" --groups 2 --stats "$T/negative.json" "$T/mix"
refuse "stats for the wrong layers" 1 "layers.2: layer 2 has no experts (MoE layers: 0-1)" \
	"$T/e3" "$WELD" expert-merge -o "$T/e3" --groups 2 --stats "$T/balanced12.json" "$T/mix"
refuse "stats that are not JSON" 1 "broken.json: invalid JSON at line 1" "$T/e4" \
	"$WELD" expert-merge -o "$T/e4" --groups 2 --stats "$T/broken.json" "$T/mix"
refuse "missing stats file" 1 "cannot open" "$T/e5" \
	"$WELD" expert-merge -o "$T/e5" --groups 2 --stats "$T/nope.json" "$T/mix"
refuse "compact with unequal group counts" 1 \
	"--layout compact needs the same number of groups in every layer" "$T/e6" \
	"$WELD" expert-merge -o "$T/e6" --groups 2 --stats "$T/skewed.json" --layout compact "$T/mix"
refuse "compact with fewer groups than experts per token" 1 "num_experts_per_tok" "$T/e7" \
	"$WELD" expert-merge -o "$T/e7" --groups 1 --layout compact "$T/mix"
refuse "more groups than experts" 1 "--groups 5: the model has 4 experts per layer" "$T/e8" \
	"$WELD" expert-merge -o "$T/e8" --groups 5 "$T/mix"
# a BF16 model with an activation scale on an expert: not a weight to merge
"$PYTHON" - "$T/mix16" "$T/scaled" "$FIX" <<'EOF' || exit 1
import importlib.util, os, shutil, sys
import numpy as np
spec = importlib.util.spec_from_file_location("fx", sys.argv[3])
fx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fx)
shutil.copytree(sys.argv[1], sys.argv[2])
t = {k: v for k, (d, v) in fx.read_model(sys.argv[2]).items()}
t["model.layers.0.block_sparse_moe.experts.1.w1.input_scale"] = np.ones(1, np.float32)
os.remove(os.path.join(sys.argv[2], "model.safetensors"))
fx.write_safetensors(os.path.join(sys.argv[2], "model.safetensors"), t, "BF16")
EOF
refuse "an expert's activation scale in an unquantised model is refused" 1 \
	"experts.1.w1.input_scale': expert weights stored with scales" "$T/e12" \
	"$WELD" expert-merge -q -o "$T/e12" --groups 2 "$T/scaled"
refuse "--align beyond --max-memory" 1 "--align needs about" "$T/e9" \
	"$WELD" expert-merge -o "$T/e9" --groups 2 --align --max-memory 1K "$T/mix"
refuse "missing --groups is a usage error" 2 "--groups is required" "$T/u1" \
	"$WELD" expert-merge -o "$T/u1" "$T/mix"
refuse "bad --layout is a usage error" 2 "invalid value 'wide' for '--layout'" "$T/u2" \
	"$WELD" expert-merge -o "$T/u2" --groups 2 --layout wide "$T/mix"
refuse "--groups 0 is a usage error" 2 "invalid value '0' for '--groups'" "$T/u3" \
	"$WELD" expert-merge -o "$T/u3" --groups 0 "$T/mix"
refuse "two models is a usage error" 2 "takes one model" "$T/u4" \
	"$WELD" expert-merge -o "$T/u4" --groups 2 "$T/mix" "$T/qwen"
refuse "an option of other merges is a usage error" 2 "unknown option '--base'" "$T/u5" \
	"$WELD" expert-merge -o "$T/u5" --groups 2 --base "$T/mix" "$T/mix"

summary
