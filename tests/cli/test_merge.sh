#!/bin/sh
# The merge commands: determinism, copies, errors, cleanup, masks.
. "$(dirname "$0")/harness.sh"
G="--layers 2 --hidden 128 --inter 1536 --vocab 512 --int"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"

# same bytes for any -j and --max-memory (16M makes several chunks per tensor)
for cmd in "average" "task-arithmetic $B --lambda 0.7" "ties $B --density 0.3" \
	   "ties $B --density 0.3 --scope model" "ties $B --density 0.3 --scope row" \
	   "dare $B --density 0.4 --seed 5" "dare $B --rescale l1 --combine ties --trim 0.5" \
	   "breadcrumbs $B --density 0.8 --gamma 0.05" "consensus $B --from ties --density 0.3"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd $FT
done

# top-k with keys recorded (the default), with too little room to record
# them (64K), and without recording (0): the same bytes
for cmd in "ties $B --density 0.3" "ties $B --density 0.3 --scope model" \
	   "breadcrumbs $B --density 0.8 --gamma 0.05" "dare $B --combine ties --trim 0.5" \
	   "consensus $B --from ties"; do
	name=$(echo "$cmd" | sed "s|$T/||g")
	"$WELD" $cmd -q -o "$T/a" $FT 2>"$T/stderr" &&
	WELD_RECORD_MEMORY=64K "$WELD" $cmd -q -o "$T/b" $FT 2>>"$T/stderr" &&
	WELD_RECORD_MEMORY=0 "$WELD" $cmd -q -o "$T/c" $FT 2>>"$T/stderr"
	if [ $? -eq 0 ] && cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors" &&
	   cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"; then
		ok "$name: same file with and without recorded keys"
	else
		not_ok "$name: same file with and without recorded keys"
	fi
	rm -rf "$T/a" "$T/b" "$T/c"
done

# dare --rescale l1 keeps the draws of its L1 pass for the apply pass when
# they fit (1G), and draws again when they do not (8 KB above the least
# memory the merge accepts leaves no room for them)
for cmd in "dare $B --rescale l1 --density 0.4 --seed 2" "dare $B --rescale l1 --combine ties"; do
	name=$(echo "$cmd" | sed "s|$T/||g")
	least=$("$WELD" plan $cmd -j 1 --max-memory 1M -o "$T/a" $FT 2>&1 |
		sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p')
	if [ -n "$least" ] &&
	   "$WELD" $cmd -q -j 1 --max-memory $((least + 8192)) -o "$T/a" $FT 2>"$T/stderr" &&
	   "$WELD" $cmd -q -j 2 --max-memory 1G -o "$T/b" $FT 2>>"$T/stderr" &&
	   cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"; then
		ok "$name: same file with draws kept and drawn again"
	else
		not_ok "$name: same file with draws kept and drawn again"
	fi
	rm -rf "$T/a" "$T/b"
done

# the recipe stored in the output runs again to the same file
for cmd in "ties $B --density 0.3 --scope row" "dare $B --rescale l1 --combine ties --trim 0.5 --seed 9" \
	   "breadcrumbs $B --combine ties --sign count" "consensus $B --k 1 --mask-lambda 0.4,0.5,0.6" \
	   "task-arithmetic $B --weights 1,0.5,0.25 --normalize --dtype f32" "average --no-normalize"; do
	name=$(echo "$cmd" | sed "s|$T/||g")
	if "$WELD" $cmd -q -o "$T/r1" $FT 2>"$T/stderr" &&
	   "$WELD" run --from-output "$T/r1" -q -o "$T/r2" 2>>"$T/stderr" &&
	   cmp -s "$T/r1/model.safetensors" "$T/r2/model.safetensors"; then
		ok "$name: weld run --from-output rebuilds the same file"
	else
		not_ok "$name: weld run --from-output rebuilds the same file"
	fi
	rm -rf "$T/r1" "$T/r2"
done

# integer tensors are copied from the base
"$WELD" ties $B -q -o "$T/t" $FT
expect "ties output verifies" "$WELD" verify -q "$T/t"
expect "integer tensor copied from the base" sh -c "'$WELD' inspect --hash '$T/base' | grep position_ids | cut -f6 > '$T/p1'; '$WELD' inspect --hash '$T/t' | grep position_ids | cut -f6 > '$T/p2'; cmp -s '$T/p1' '$T/p2'"
expect "recipe stored in the metadata" sh -c "head -c 4000 '$T/t/model.safetensors' | grep -q weld_recipe"
expect "plan writes nothing" sh -c "'$WELD' plan ties $B -o '$T/planned' $FT | grep -q 'memory' && ! test -e '$T/planned'"

# errors before anything is written
refuse "ties without --base" 2 "--base is required" "$T/e1" "$WELD" ties -o "$T/e1" $FT
refuse "density 0" 2 "invalid value '0' for '--density': outside (0, 1]" "$T/e2" "$WELD" ties $B --density 0 -o "$T/e2" $FT
refuse "per-model density 1.5" 2 "invalid value '1.5' for 'density': outside (0, 1]" "$T/e2" "$WELD" ties $B -o "$T/e2" "$T/ft1:density=1.5" "$T/ft2"
refuse "per-model value the method does not use" 2 "'density' is not used by 'weld average'" "$T/e2" "$WELD" average -o "$T/e2" "$T/ft1:density=0.5" "$T/ft2"
refuse "a per-model key is named, not garbage" 2 "unknown key 'wieght'" "$T/e2" "$WELD" ties $B -o "$T/e2" "$T/ft1:wieght=2" "$T/ft2"
refuse "lambda beyond float32" 2 "invalid value '1e39' for '--lambda': outside the float32 range" "$T/e2" "$WELD" task-arithmetic $B --lambda 1e39 -o "$T/e2" $FT
refuse "empty output path" 2 "output path given to '-o' is empty" - "$WELD" average -o "" $FT

# every output weld publishes can be read again, whatever the input paths
odd="$T/odd dir \"q\" back\\slash ü
nl"
mkdir -p "$odd"
"$MKMODEL" "$odd/m1" --layers 1 --hidden 32 --inter 64 --vocab 50 >/dev/null
"$MKMODEL" "$odd/m2" --layers 1 --hidden 32 --inter 64 --vocab 50 --seed 2 >/dev/null
expect "merge of oddly named inputs" "$WELD" average -q -o "$odd/out" "$odd/m1" "$odd/m2"
expect "... whose output verifies" "$WELD" verify -q "$odd/out"
expect "... and runs again from its recipe" "$WELD" run -q --from-output "$odd/out" -o "$odd/again"
bad=$(printf 'bad\377')
mkdir -p "$T/$bad"
"$MKMODEL" "$T/$bad/m" --layers 1 --hidden 32 --inter 64 --vocab 50 >/dev/null
refuse "an input path that is not UTF-8 is refused" 1 "is not valid UTF-8" "$T/u8out" "$WELD" average -q -o "$T/u8out" "$T/$bad/m" "$odd/m2"

# a base whose config.json is not JSON is refused at plan time
"$MKMODEL" "$T/badcfg" --layers 1 --hidden 32 --inter 64 --vocab 50 >/dev/null
echo '{broken' >"$T/badcfg/config.json"
refuse "plan refuses a config.json that is not JSON" 1 "badcfg/config.json': not a JSON object" - "$WELD" plan task-arithmetic --base "$T/badcfg" "$odd/m2"
refuse "... and so does the merge, writing nothing" 1 "badcfg/config.json': not a JSON object" "$T/cfgout" "$WELD" task-arithmetic -q --base "$T/badcfg" -o "$T/cfgout" "$odd/m2"

# an output whose header a reader would refuse (over 100 MB: 3,000 names of
# 20,000 bytes, written twice, with the checksums) is refused by the plan
"$PYTHON" -c "
import json, struct
h = {('%05d' % i) + 'n' * 19995: {'dtype': 'F32', 'shape': [1], 'data_offsets': [4 * i, 4 * i + 4]}
     for i in range(3000)}
b = json.dumps(h, separators=(',', ':')).encode()
open('$T/long.safetensors', 'wb').write(struct.pack('<Q', len(b)) + b + bytes(4 * 3000))"
refuse "plan refuses an output header over 100 MB" 1 "over the 100000000 a reader accepts (split the output" - "$WELD" plan average "$T/long.safetensors" "$T/long.safetensors"
refuse "... and so does the merge, before reading any tensor" 1 "over the 100000000" "$T/longout" "$WELD" average -q -o "$T/longout" "$T/long.safetensors" "$T/long.safetensors"
expect "... which shards small enough pass" "$WELD" plan average --shard-size 1K "$T/long.safetensors" "$T/long.safetensors"
rm -f "$T/long.safetensors"

refuse "the base given as a model too is refused" 1 "'$T/ft1/' is the base model: its task vector is zero" "$T/bm" "$WELD" task-arithmetic -q --base "$T/ft1" -o "$T/bm" "$T/ft1/" "$T/ft2"

refuse "plan refuses a command that is not a merge" 2 "'convert' is not a merge command" "$T/cv" "$WELD" plan convert "$T/ft1" -o "$T/cv"

# the summary counts what every pass read, as the progress bar does: ties
# reads its inputs again for its statistics, average once
reads_all_passes() {
	"$WELD" plan ties --json $B "$T/ft1" "$T/ft2" >"$T/pl.json" &&
	"$WELD" ties -q --json $B -o "$T/rd" "$T/ft1" "$T/ft2" >"$T/rd.json" &&
	"$PYTHON" -c 'import json, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
assert r["bytes_read"] > p["input_bytes"], (r["bytes_read"], p["input_bytes"])' "$T/pl.json" "$T/rd.json"
}
expect "the summary counts the statistics passes" reads_all_passes
# --save-masks is not published when the merge is not
refuse "no masks file from a merge that fails" 1 "" "$T/masks.st" "$WELD" consensus -q $B --save-masks "$T/masks.st" -o "$T/no/such/dir/out" "$T/ft1" "$T/ft2"

# a usage error is the error and one line pointing to -h, not the whole usage
usage_error_is_two_lines() {
	"$WELD" ties $B --density 1.5 -o "$T/e2" $FT 2>"$T/usage-err"
	[ "$(wc -l <"$T/usage-err")" -eq 2 ] && grep -qx "try 'weld ties -h'" "$T/usage-err"
}
expect "usage error: two lines, the second points to -h" usage_error_is_two_lines

# -f replaces only a model output that is not an input, inside one or holding one
mkdir -p "$T/P"
"$MKMODEL" "$T/P/a" --layers 1 --hidden 32 --inter 64 --vocab 50 >/dev/null
"$MKMODEL" "$T/P/b" --layers 1 --hidden 32 --inter 64 --vocab 50 --seed 2 >/dev/null
echo keep >"$T/P/notes.txt"
refuse "-f refuses a folder holding the inputs" 1 "holds the input" - "$WELD" average -q -f -o "$T/P" "$T/P/a" "$T/P/b"
expect "... and leaves it whole" test -f "$T/P/notes.txt" -a -f "$T/P/a/model.safetensors"
refuse "-f refuses an input as the output" 1 "is an input of this merge" - "$WELD" average -q -f -o "$T/P/a" "$T/P/a" "$T/P/b"
mkdir "$T/P/a/sub"
refuse "-f refuses a folder inside an input" 1 "is inside the input" - "$WELD" average -q -f -o "$T/P/a/sub" "$T/P/a" "$T/P/b"
mkdir "$T/other" && echo x >"$T/other/data.csv"
refuse "-f refuses a folder that is not a model output" 1 "holds 'data.csv', which is not a model" - "$WELD" average -q -f -o "$T/other" "$T/P/a" "$T/P/b"
expect "... and leaves it whole" test -f "$T/other/data.csv"
"$WELD" average -q -o "$T/prev" "$T/P/a" "$T/P/b"
expect "-f replaces an earlier output" "$WELD" average -q -f --weights 1,2 -o "$T/prev" "$T/P/a" "$T/P/b"
refuse "plan says the output exists" 1 "already exists; not overwritten" - "$WELD" plan average -o "$T/prev" "$T/P/a" "$T/P/b"
refuse "density 1.5" 2 "outside (0, 1]" "$T/e3" "$WELD" dare $B --density 1.5 -o "$T/e3" $FT
refuse "no models" 2 "no models to merge" "$T/e4" "$WELD" average -o "$T/e4"
refuse "option of another method" 2 "'--gamma' is not used by 'weld ties'" "$T/e5" "$WELD" ties $B --gamma 0.1 -o "$T/e5" $FT
refuse "weights count" 2 "--weights has 2 values for 3 models" "$T/e6" "$WELD" average --weights 1,2 -o "$T/e6" $FT
refuse "missing model" 1 "cannot open model" "$T/e7" "$WELD" ties $B -o "$T/e7" "$T/ft1" "$T/nope"
"$MKMODEL" "$T/wide" --layers 2 --hidden 64 --inter 1536 --vocab 512 >/dev/null
refuse -E "shape mismatch names both shapes and files" 1 "tensor '.*': shape \[.*\] in '.*wide' but \[.*\] in '.*base'" "$T/e8" "$WELD" ties $B -o "$T/e8" "$T/ft1" "$T/wide"
"$MKMODEL" "$T/short" --layers 1 --hidden 128 --inter 1536 --vocab 512 >/dev/null
refuse -E "missing tensor" 1 "tensor 'model.layers.1.*missing from '.*short'" "$T/e9" "$WELD" task-arithmetic $B -o "$T/e9" "$T/ft1" "$T/short"
expect "--allow-missing merges over the models that have it" "$WELD" task-arithmetic $B --allow-missing -q -o "$T/am" "$T/ft1" "$T/short"
"$MKMODEL" "$T/bigvocab" --layers 2 --hidden 128 --inter 1536 --vocab 640 --seed 4 --noise 0.5 >/dev/null
expect "larger embeddings are cropped to the base" sh -c "'$WELD' task-arithmetic $B -o '$T/crop' '$T/bigvocab' 2>'$T/crop.err' && grep -q 'using the first 512' '$T/crop.err' && '$WELD' inspect '$T/crop' | grep -q 'embed_tokens.weight	BF16	\[512, 128\]'"
expect "no output folder after the errors" sh -c "! ls -d '$T'/e[0-9]* 2>/dev/null"

# an interrupted merge leaves neither the output nor its temporary folder
"$MKMODEL" "$T/L0" --layers 6 --hidden 512 --inter 2048 --vocab 8192 >/dev/null
"$MKMODEL" "$T/L1" --layers 6 --hidden 512 --inter 2048 --vocab 8192 --seed 1 --noise 0.3 >/dev/null
"$WELD" ties --base "$T/L0" -j 1 --max-memory 16M -q -o "$T/int" "$T/L1" "$T/L1" "$T/L1" &
pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if ls -d "$T"/.weld-tmp-* >/dev/null 2>&1; then
	not_ok "SIGINT left a temporary folder"
elif [ $rc -ne 0 ] && [ -e "$T/int" ]; then
	not_ok "SIGINT left a partial output"
else
	ok "SIGINT removes the temporary folder (exit $rc)"
fi

# consensus masks: saved bit-packed, and apply-mask rebuilds B + m * (M - B)
expect "consensus --save-masks" "$WELD" consensus $B --dtype f32 -q -o "$T/cons" --save-masks "$T/masks.safetensors" $FT
expect "masks are U8, one per model" sh -c "'$WELD' inspect '$T/masks.safetensors' | grep -c 'mask\.[123]	U8' | grep -qx 63"
expect "apply-mask" "$WELD" consensus --apply-mask 2 --masks "$T/masks.safetensors" --base "$T/base" --merged "$T/cons" --dtype f32 -q -o "$T/task2"
cat >"$T/chk.py" <<PYEOF
import sys
sys.path.insert(0, "$ROOT/tests/ref")
import numpy as np, safetensors_io as st
base = st.load_model("$T/base"); merged = st.load_model("$T/cons"); out = st.load_model("$T/task2")
masks = st.load_model("$T/masks.safetensors", floats_only=False)
for name, b in base.items():
    m = np.unpackbits(masks[name + ".mask.2"].astype(np.uint8), bitorder="little")[: b.size].reshape(b.shape).astype(bool)
    want = np.where(m, b + (merged[name] - b), b).astype(np.float32)
    assert np.array_equal(want.view(np.uint32), out[name].view(np.uint32)), name
print("ok")
PYEOF
expect "apply-mask reproduces B + m * (M - B) exactly" "$PYTHON" "$T/chk.py"
summary
