#!/bin/sh
# A merge split in parts (--part I/N) and joined again (weld join): the
# joined output is byte for byte the output of the merge run whole, for any
# N, for a plain method, a --scope model one (statistics over the whole
# model in every part) and a recipe; --part auto reads Slurm's and
# Kubernetes' variables; GNU parallel runs the parts; join refuses what is
# not the complete set of parts of one merge.
. "$(dirname "$0")/harness.sh"

G="--layers 2 --hidden 64 --inter 128 --vocab 100"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
"$PYTHON" "$HERE/parts_fixture.py" "$T/tie"

# same A B: A and B hold the same files with the same bytes
same() {
	[ "$(cd "$1" && ls)" = "$(cd "$2" && ls)" ] || return 1
	for f in "$1"/*; do cmp "$f" "$2/$(basename "$f")" || return 1; done
}

# split_join OUT N CMD...: run CMD -o OUT --part I/N for every I, then join
split_join() {
	_o=$1 _n=$2
	shift 2
	_i=1
	while [ "$_i" -le "$_n" ]; do
		"$@" -q -o "$_o" --part "$_i/$_n" || return 1
		_i=$((_i + 1))
	done
	"$WELD" join -q -o "$_o" "$_o".part-*-of-"$_n"
}

TA="$WELD task-arithmetic --base $T/base $T/ft1 $T/ft2 --weights 0.7,0.4 --shard-size 40K"
TIES="$WELD ties --base $T/tie/base $T/tie/a $T/tie/b $T/tie/c --density 0.37 --scope model --shard-size 8K --max-memory 16M"
cat >"$T/recipe.json" <<JSON
{"merge_method": "dare_ties", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 0.6, "density": 0.5}},
            {"model": "$T/ft2", "parameters": {"weight": 0.4, "density": 0.7}}],
 "weld": {"seed": 3, "shard_size": 30000}}
JSON
RUN="$WELD run $T/recipe.json"

$TA -q -o "$T/ta" && $TIES -q -o "$T/ties" && $RUN -q -o "$T/run" ||
	echo "not ok - the one-machine outputs"
nta=$(ls "$T/ta" | grep -c safetensors$)
nties=$(ls "$T/ties" | grep -c safetensors$)
expect "the outputs have several shards ($nta, $nties)" test "$nta" -gt 3 -a "$nties" -gt 3

# 1. joined = whole, for several N (and more parts than shards)
for n in 1 2 3 $((nta + 2)); do
	split_join "$T/ta$n" "$n" $TA && same "$T/ta" "$T/ta$n" && ok "task-arithmetic in $n parts, joined: every file cmp-identical" ||
		not_ok "task-arithmetic in $n parts, joined: every file cmp-identical"
done
for n in 1 2 3 $((nties + 3)); do
	split_join "$T/ties$n" "$n" $TIES && same "$T/ties" "$T/ties$n" &&
		ok "ties --scope model (ties at the threshold) in $n parts: cmp-identical" ||
		not_ok "ties --scope model (ties at the threshold) in $n parts: cmp-identical"
done
# the statistics are the same with few recorded keys and small chunks
WELD_RECORD_MEMORY=0 split_join "$T/tiesc" 3 $TIES && same "$T/ties" "$T/tiesc" &&
	ok "ties --scope model in 3 parts, counting passes instead of recorded keys: cmp-identical" ||
	not_ok "ties --scope model in 3 parts, counting passes instead of recorded keys: cmp-identical"
# every method with whole-model statistics, and dare's draws
TB="--base $T/tie/base $T/tie/a $T/tie/b $T/tie/c --shard-size 8K --max-memory 16M"
for m in "dare --density 0.5 --combine ties --trim 0.3 --scope model --seed 5" \
	 "dare --density 0.5 --rescale l1 --scope model --seed 5" \
	 "breadcrumbs --density 0.6 --gamma 0.1 --scope model" \
	 "consensus --from ties --density 0.4 --scope model" "ties --density 0.4 --scope row"; do
	rm -rf "$T/m1" "$T/m3"
	"$WELD" $m $TB -q -o "$T/m1" && split_join "$T/m3" 3 "$WELD" $m $TB && same "$T/m1" "$T/m3" &&
		ok "$m in 3 parts: cmp-identical" || not_ok "$m in 3 parts: cmp-identical"
done
for n in 1 2 4; do
	split_join "$T/run$n" "$n" $RUN && same "$T/run" "$T/run$n" &&
		ok "weld run of a recipe in $n parts: cmp-identical" ||
		not_ok "weld run of a recipe in $n parts: cmp-identical"
done
# one file (no index): part 1 holds it, part 2 nothing
$TA --shard-size 0 -q -o "$T/single"
split_join "$T/single2" 2 $TA --shard-size 0 && same "$T/single" "$T/single2" &&
	ok "a one-file output in 2 parts (part 2 empty): cmp-identical" ||
	not_ok "a one-file output in 2 parts (part 2 empty): cmp-identical"

# 2. what a part holds; weld verify of a part and of the joined output
$TA -q -o "$T/p" --part 2/3
expect "a part holds its shards, config.json and weld-part.json, no index" \
	sh -c "cd '$T/p.part-2-of-3' && test -f weld-part.json -a -f config.json -a ! -e model.safetensors.index.json && ls model-*-of-*.safetensors"
expect "weld verify checks a part's tensors" "$WELD" verify "$T/p.part-2-of-3"
expect "weld verify checks the joined output" "$WELD" verify "$T/ta3"
$TA --shard-size 0 -q -o "$T/e" --part 1/2
verify_empty() {
	"$WELD" verify "$T/e.part-1-of-2" >"$T/e.out" && test ! -e "$T/e.part-1-of-2/model.safetensors" &&
	grep -q "part 1 of 2 holds none of the 1 shards: 0 tensors OK" "$T/e.out"
}
expect "weld verify of a part that holds no shard: nothing to hash, exit 0" verify_empty
cp "$T/p.part-2-of-3"/model-*.safetensors "$T/e.part-1-of-2/"
refuse "weld verify refuses a part holding a shard of another part" 1 "which is not a file of part 1 of 2" - \
	"$WELD" verify "$T/e.part-1-of-2"
expect "the parts are removed once joined" test ! -e "$T/ta3.part-1-of-3"
refuse "a part is refused if it exists (no -f)" 1 "already exists" - $TA -q -o "$T/p" --part 2/3
expect "-f replaces a part" $TA -q -f -o "$T/p" --part 2/3

# parts on another file system: the join copies what it cannot link
S=$(mktemp -d /dev/shm/weld-parts-XXXXXX 2>/dev/null) || S=""
if [ -n "$S" ] && [ "$(stat -c %d "$S")" != "$(stat -c %d "$T")" ]; then
	for i in 1 2; do $TA -q -o "$S/x" --part $i/2; done
	"$WELD" join --json -o "$T/xdev" "$S"/x.part-*-of-2 >"$T/xdev.json" &&
		grep -q '"copied":[1-9]' "$T/xdev.json" && same "$T/ta" "$T/xdev" &&
		ok "parts on another file system are copied into the output: cmp-identical" ||
		not_ok "parts on another file system are copied into the output: cmp-identical"
else
	skip "parts on another file system (no /dev/shm on another device here)"
fi
[ -n "$S" ] && rm -rf "$S"

# 3. --part auto
auto() { env -u SLURM_ARRAY_TASK_ID -u JOB_COMPLETION_INDEX "$@"; }
(export SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_STEP=1
 $TA -q -o "$T/a0" --part auto) && expect "Slurm 0-based task 0 of 3 writes part 1 of 3" test -d "$T/a0.part-1-of-3"
(export SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3
 $TA -q -o "$T/a1" --part auto) && expect "Slurm 1-based task 3 of 3 writes part 3 of 3" test -d "$T/a1.part-3-of-3"
(export SLURM_ARRAY_TASK_ID=8 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_STEP=2
 $TA -q -o "$T/a2" --part auto) && expect "Slurm --array=4-8:2 task 8 writes part 3 of 3" test -d "$T/a2.part-3-of-3"
(export JOB_COMPLETION_INDEX=1; $TA -q -o "$T/k" --part auto --parts 4) &&
	expect "Kubernetes JOB_COMPLETION_INDEX=1 with --parts 4 writes part 2 of 4" test -d "$T/k.part-2-of-4"
refuse "--part auto without Slurm or Kubernetes is a usage error" 2 "neither SLURM_ARRAY_TASK_ID" "$T/x" \
	auto $TA -o "$T/x" --part auto
refuse "JOB_COMPLETION_INDEX needs --parts" 2 "needs --parts N" "$T/x" \
	env JOB_COMPLETION_INDEX=0 $TA -o "$T/x" --part auto
refuse "JOB_COMPLETION_INDEX must be below --parts" 2 "JOB_COMPLETION_INDEX='4'" "$T/x" \
	env JOB_COMPLETION_INDEX=4 $TA -o "$T/x" --part auto --parts 4
refuse "a Slurm task outside its array is refused" 2 "is not one of the 3 tasks" "$T/x" \
	env SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=3 $TA -o "$T/x" --part auto
for bad in 0/3 4/3 3 a/b 1/0 -1/2 2/3x; do
	refuse "--part $bad is a usage error" 2 "for '--part'" "$T/x" $TA -o "$T/x" --part "$bad"
done
refuse "--parts without --part auto is a usage error" 2 "--parts goes with --part auto" "$T/x" \
	$TA -o "$T/x" --part 1/2 --parts 2
refuse "--save-masks does not go with --part" 2 "does not go with --part" "$T/x" \
	"$WELD" consensus --base "$T/base" "$T/ft1" "$T/ft2" -o "$T/x" --save-masks "$T/m" --part 1/2

# 4. GNU parallel runs the parts
if command -v parallel >/dev/null 2>&1; then
	expect "GNU parallel runs 3 parts" \
		parallel --will-cite -j 3 $TIES -q -o "$T/par" --part {}/3 ::: 1 2 3
	"$WELD" join -q -o "$T/par" "$T"/par.part-*-of-3 && same "$T/ties" "$T/par" &&
		ok "the parts GNU parallel ran, joined: cmp-identical" ||
		not_ok "the parts GNU parallel ran, joined: cmp-identical"
else
	skip "GNU parallel runs 3 parts (parallel is not installed: make deps)"
fi

# 5. DeepSeek-V3's shape (sparse files, no disk): the plan of a TIES merge
# of three such models, and which shards part 37 of 163 writes
D=$T/ds
for m in base a b; do "$PYTHON" "$ROOT/tests/tools/deepseek_sparse.py" "$D/$m" >/dev/null; done
"$WELD" plan ties --base "$D/base" "$D/a" "$D/b" --density 0.5 --dtype bf16 --json >"$T/ds.json" 2>"$T/ds.err"
expect "weld plan of a ties merge of three DeepSeek-V3-shaped models: 46182 tensors (FP8 weights with their scales), 2.06 TB read, 1.37 TB written, buffers within 1G" \
	"$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1]));
assert len(d['tensors']) == 46182 and d['input_bytes'] == 2060164423008, d['input_bytes']
assert d['output_bytes'] == 1367126332928 and d['memory_bytes'] <= 1 << 30" "$T/ds.json"
rm -rf "$D"

# 6. join refuses what is not the complete set of parts of one merge
split3() { for i in 1 2 3; do $TA -q -o "$T/$1" --part $i/3 || return 1; done; }
split3 j
refuse "a missing part is named" 1 "2 parts given, but" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/j.part-1-of-3" "$T/j.part-3-of-3"
refuse "a missing part is named: which one" 1 "missing part 2" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/j.part-1-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-2-of-3" "$T/j2copy"
refuse "a part given twice is refused" 1 "are both part 2 of 3" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/j.part-1-of-3" "$T/j.part-2-of-3" "$T/j2copy"
$TA -q -o "$T/other" --part 2/3 --lambda 0.5
refuse "parts of different merges are refused" 1 "are parts of different merges" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/j.part-1-of-3" "$T/other.part-2-of-3" "$T/j.part-3-of-3"
$TA -q -o "$T/four" --part 2/4
refuse "parts of a different split are refused" 1 "is part 2 of 4" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/j.part-1-of-3" "$T/four.part-2-of-4" "$T/j.part-3-of-3"
refuse "a model folder is not a part" 1 "is not a part of a weld merge" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/ft1"
refuse "a joined output is not a part" 1 "is not a part of a weld merge" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/ta"
cp -r "$T/j.part-1-of-3" "$T/h1"
sed -i 's/"part":\t1/"part":\t2/' "$T/h1/weld-part.json"
refuse "a part whose number was changed is refused (its shards are not its own)" 1 "which is not a file of part 2 of 3" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h1" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-1-of-3" "$T/h2"
sed -i 's/\("bytes":\t\)\([0-9]\)/\19\2/' "$T/h2/weld-part.json"
refuse "a changed shard size is caught by the plan hash" 1 "the file was changed" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h2" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-1-of-3" "$T/h3"
sed -i 's/model-00001-of/..\/..\/x-00001-of/' "$T/h3/weld-part.json"
refuse "a shard name that is not the writer's is refused" 1 "is not named 'model-00001-of-" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h3" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-1-of-3" "$T/h4"
printf '{"format": "weld-part", "parts": 1e300}' >"$T/h4/weld-part.json"
refuse "an absurd part count is refused" 1 "field 'parts' is" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h4"
printf '[1,' >"$T/h4/weld-part.json"
refuse "a description that is not JSON is refused" 1 "not a JSON object" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h4"
cp -r "$T/j.part-1-of-3" "$T/h5"
f=$(cd "$T/h5" && ls model-*.safetensors | head -1)
truncate -s -8 "$T/h5/$f"
refuse "a truncated shard is refused" 1 "incomplete or changed" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h5" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-1-of-3" "$T/h6"
cp "$T/j.part-2-of-3"/model-*.safetensors "$T/h6/"
refuse "a shard of another part inside a part is refused" 1 "which is not a file of part 1 of 3" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h6" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
cp -r "$T/j.part-1-of-3" "$T/h7"
echo '{}' >"$T/h7/config.json"
refuse "parts whose copied files differ are refused" 1 "differ" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T/h7" "$T/j.part-2-of-3" "$T/j.part-3-of-3"
mkdir "$T/jo"
touch "$T/jo/notes.txt"
refuse "join does not replace an existing folder without -f" 1 "already exists" "$T/jo" \
	"$WELD" join -o "$T/jo" "$T"/j.part-*-of-3
refuse "join -f replaces only a model folder" 1 "not a model, config or tokenizer file" "$T/jo" \
	"$WELD" join -f -o "$T/jo" "$T"/j.part-*-of-3
refuse "join -o a part is refused" 1 "is an input" - \
	"$WELD" join -f -o "$T/j.part-1-of-3" "$T"/j.part-*-of-3
expect "the parts are intact after the refusals" \
	sh -c "ls '$T'/j.part-*-of-3/weld-part.json | wc -l | grep -qx 3"
refuse "join without parts is a usage error" 2 "expected the part folders" - "$WELD" join -o "$T/jo"
expect "join --keep-parts" "$WELD" join -q --keep-parts -o "$T/jk" "$T"/j.part-*-of-3
expect "--keep-parts leaves the parts" test -f "$T/j.part-2-of-3/weld-part.json"
expect "join -f replaces a joined output" "$WELD" join -q -f -o "$T/jk" "$T"/j.part-*-of-3
expect "... and removes the parts" test ! -e "$T/j.part-2-of-3"
expect "the join of parts joined twice = one machine" same "$T/ta" "$T/jk"
summary
