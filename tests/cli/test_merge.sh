#!/bin/sh
# The merge commands: determinism, copies, errors, cleanup, masks.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
G="--layers 2 --hidden 128 --inter 1536 --vocab 512 --int"
"$MKMODEL" "$TMP/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$TMP/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
B="--base $TMP/base"
FT="$TMP/ft1 $TMP/ft2 $TMP/ft3"

# same bytes for any -j and --max-memory (16M makes several chunks per tensor)
for cmd in "average" "task-arithmetic $B --lambda 0.7" "ties $B --density 0.3" \
	   "ties $B --density 0.3 --scope model" "ties $B --density 0.3 --scope row" \
	   "dare $B --density 0.4 --seed 5" "dare $B --rescale l1 --combine ties --trim 0.5" \
	   "breadcrumbs $B --density 0.8 --gamma 0.05" "consensus $B --from ties --density 0.3"; do
	name=$(echo "$cmd" | sed "s|$TMP/||g")
	"$WELD" $cmd -q -j 1 --max-memory 16M -o "$TMP/a" $FT 2>"$TMP/err" &&
	"$WELD" $cmd -q -j 2 --max-memory 1G -o "$TMP/b" $FT 2>>"$TMP/err" &&
	"$WELD" $cmd -q -j 3 --max-memory 64M -o "$TMP/c" $FT 2>>"$TMP/err"
	if [ $? -ne 0 ]; then
		bad "$name ran"
	else
		if cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors" &&
		   cmp -s "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"; then
			ok "$name: same file for -j 1/2/3 and --max-memory 16M/64M/1G"
		else
			bad "$name: outputs differ between -j / --max-memory"
		fi
	fi
	rm -rf "$TMP/a" "$TMP/b" "$TMP/c"
done

# top-k with keys recorded (the default), with too little room to record
# them (64K), and without recording (0): the same bytes
for cmd in "ties $B --density 0.3" "ties $B --density 0.3 --scope model" \
	   "breadcrumbs $B --density 0.8 --gamma 0.05" "dare $B --combine ties --trim 0.5" \
	   "consensus $B --from ties"; do
	name=$(echo "$cmd" | sed "s|$TMP/||g")
	"$WELD" $cmd -q -o "$TMP/a" $FT 2>"$TMP/err" &&
	WELD_RECORD_MEMORY=64K "$WELD" $cmd -q -o "$TMP/b" $FT 2>>"$TMP/err" &&
	WELD_RECORD_MEMORY=0 "$WELD" $cmd -q -o "$TMP/c" $FT 2>>"$TMP/err"
	if [ $? -eq 0 ] && cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors" &&
	   cmp -s "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"; then
		ok "$name: same file with and without recorded keys"
	else
		bad "$name: same file with and without recorded keys"
	fi
	rm -rf "$TMP/a" "$TMP/b" "$TMP/c"
done

# dare --rescale l1 keeps the draws of its L1 pass for the apply pass when
# they fit (1G), and draws again when they do not (8 KB above the least
# memory the merge accepts leaves no room for them)
for cmd in "dare $B --rescale l1 --density 0.4 --seed 2" "dare $B --rescale l1 --combine ties"; do
	name=$(echo "$cmd" | sed "s|$TMP/||g")
	least=$("$WELD" plan $cmd -j 1 --max-memory 1M -o "$TMP/a" $FT 2>&1 |
		sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p')
	if [ -n "$least" ] &&
	   "$WELD" $cmd -q -j 1 --max-memory $((least + 8192)) -o "$TMP/a" $FT 2>"$TMP/err" &&
	   "$WELD" $cmd -q -j 2 --max-memory 1G -o "$TMP/b" $FT 2>>"$TMP/err" &&
	   cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"; then
		ok "$name: same file with draws kept and drawn again"
	else
		bad "$name: same file with draws kept and drawn again"
	fi
	rm -rf "$TMP/a" "$TMP/b"
done

# the recipe stored in the output runs again to the same file
for cmd in "ties $B --density 0.3 --scope row" "dare $B --rescale l1 --combine ties --trim 0.5 --seed 9" \
	   "breadcrumbs $B --combine ties --sign count" "consensus $B --k 1 --mask-lambda 0.4,0.5,0.6" \
	   "task-arithmetic $B --weights 1,0.5,0.25 --normalize --dtype f32" "average --no-normalize"; do
	name=$(echo "$cmd" | sed "s|$TMP/||g")
	if "$WELD" $cmd -q -o "$TMP/r1" $FT 2>"$TMP/err" &&
	   "$WELD" run --from-output "$TMP/r1" -q -o "$TMP/r2" 2>>"$TMP/err" &&
	   cmp -s "$TMP/r1/model.safetensors" "$TMP/r2/model.safetensors"; then
		ok "$name: weld run --from-output rebuilds the same file"
	else
		bad "$name: weld run --from-output rebuilds the same file"
	fi
	rm -rf "$TMP/r1" "$TMP/r2"
done

# integer tensors are copied from the base
"$WELD" ties $B -q -o "$TMP/t" $FT
check "ties output verifies" "$WELD" verify -q "$TMP/t"
check "integer tensor copied from the base" sh -c "'$WELD' inspect --hash '$TMP/base' | grep position_ids | cut -f6 > '$TMP/p1'; '$WELD' inspect --hash '$TMP/t' | grep position_ids | cut -f6 > '$TMP/p2'; cmp -s '$TMP/p1' '$TMP/p2'"
check "recipe stored in the metadata" sh -c "head -c 4000 '$TMP/t/model.safetensors' | grep -q weld_recipe"
check "plan writes nothing" sh -c "'$WELD' plan ties $B -o '$TMP/planned' $FT | grep -q 'memory' && ! test -e '$TMP/planned'"

# errors before anything is written
fails "ties without --base" 2 "--base is required" "$WELD" ties -o "$TMP/e1" $FT
fails "density 0" 2 "invalid value '0' for '--density': outside \(0, 1\]" "$WELD" ties $B --density 0 -o "$TMP/e2" $FT
fails "per-model density 1.5" 2 "invalid value '1.5' for 'density': outside \(0, 1\]" "$WELD" ties $B -o "$TMP/e2" "$TMP/ft1:density=1.5" "$TMP/ft2"
fails "per-model value the method does not use" 2 "'density' is not used by 'weld average'" "$WELD" average -o "$TMP/e2" "$TMP/ft1:density=0.5" "$TMP/ft2"
fails "lambda beyond float32" 2 "invalid value '1e39' for '--lambda': outside the float32 range" "$WELD" task-arithmetic $B --lambda 1e39 -o "$TMP/e2" $FT
fails "empty output path" 2 "output path given to '-o' is empty" "$WELD" average -o "" $FT
fails "a per-model key is named, not garbage" 2 "unknown key 'wieght'" "$WELD" ties $B -o "$TMP/e2" "$TMP/ft1:wieght=2" "$TMP/ft2"

# -f replaces only a model output that is not an input, inside one or holding one
mkdir -p "$TMP/P"
"$MKMODEL" "$TMP/P/a" --layers 1 --hidden 32 --inter 64 --vocab 50 >/dev/null
"$MKMODEL" "$TMP/P/b" --layers 1 --hidden 32 --inter 64 --vocab 50 --seed 2 >/dev/null
echo keep >"$TMP/P/notes.txt"
fails "-f refuses a folder holding the inputs" 1 "holds the input" "$WELD" average -q -f -o "$TMP/P" "$TMP/P/a" "$TMP/P/b"
check "... and leaves it whole" test -f "$TMP/P/notes.txt" -a -f "$TMP/P/a/model.safetensors"
fails "-f refuses an input as the output" 1 "is an input of this merge" "$WELD" average -q -f -o "$TMP/P/a" "$TMP/P/a" "$TMP/P/b"
mkdir "$TMP/P/a/sub"
fails "-f refuses a folder inside an input" 1 "is inside the input" "$WELD" average -q -f -o "$TMP/P/a/sub" "$TMP/P/a" "$TMP/P/b"
mkdir "$TMP/other" && echo x >"$TMP/other/data.csv"
fails "-f refuses a folder that is not a model output" 1 "holds 'data.csv', which is not a model" "$WELD" average -q -f -o "$TMP/other" "$TMP/P/a" "$TMP/P/b"
check "... and leaves it whole" test -f "$TMP/other/data.csv"
"$WELD" average -q -o "$TMP/prev" "$TMP/P/a" "$TMP/P/b"
check "-f replaces an earlier output" "$WELD" average -q -f --weights 1,2 -o "$TMP/prev" "$TMP/P/a" "$TMP/P/b"
fails "plan says the output exists" 1 "already exists; not overwritten" "$WELD" plan average -o "$TMP/prev" "$TMP/P/a" "$TMP/P/b"

# a usage error is the error and one line pointing to -h, not the whole usage
"$WELD" ties $B --density 1.5 -o "$TMP/e2" $FT 2>"$TMP/err"
if [ "$(wc -l <"$TMP/err")" -eq 2 ] && grep -qx "try 'weld ties -h'" "$TMP/err"; then
	ok "usage error: two lines, the second points to -h"
else
	bad "usage error: two lines, the second points to -h"
fi
fails "density 1.5" 2 "outside \(0, 1\]" "$WELD" dare $B --density 1.5 -o "$TMP/e3" $FT
fails "no models" 2 "no models to merge" "$WELD" average -o "$TMP/e4"
fails "option of another method" 2 "'--gamma' is not used by 'weld ties'" "$WELD" ties $B --gamma 0.1 -o "$TMP/e5" $FT
fails "weights count" 2 "--weights has 2 values for 3 models" "$WELD" average --weights 1,2 -o "$TMP/e6" $FT
fails "missing model" 1 "cannot open model" "$WELD" ties $B -o "$TMP/e7" "$TMP/ft1" "$TMP/nope"
"$MKMODEL" "$TMP/wide" --layers 2 --hidden 64 --inter 1536 --vocab 512 >/dev/null
fails "shape mismatch names both shapes and files" 1 "tensor '.*': shape \[.*\] in '.*wide' but \[.*\] in '.*base'" "$WELD" ties $B -o "$TMP/e8" "$TMP/ft1" "$TMP/wide"
"$MKMODEL" "$TMP/short" --layers 1 --hidden 128 --inter 1536 --vocab 512 >/dev/null
fails "missing tensor" 1 "tensor 'model.layers.1.*missing from '.*short'" "$WELD" task-arithmetic $B -o "$TMP/e9" "$TMP/ft1" "$TMP/short"
check "--allow-missing merges over the models that have it" "$WELD" task-arithmetic $B --allow-missing -q -o "$TMP/am" "$TMP/ft1" "$TMP/short"
"$MKMODEL" "$TMP/bigvocab" --layers 2 --hidden 128 --inter 1536 --vocab 640 --seed 4 --noise 0.5 >/dev/null
check "larger embeddings are cropped to the base" sh -c "'$WELD' task-arithmetic $B -o '$TMP/crop' '$TMP/bigvocab' 2>'$TMP/crop.err' && grep -q 'using the first 512' '$TMP/crop.err' && '$WELD' inspect '$TMP/crop' | grep -q 'embed_tokens.weight	BF16	\[512, 128\]'"
check "no output folder after the errors" sh -c "! ls -d '$TMP'/e[0-9]* 2>/dev/null"

# an interrupted merge leaves neither the output nor its temporary folder
"$MKMODEL" "$TMP/L0" --layers 6 --hidden 512 --inter 2048 --vocab 8192 >/dev/null
"$MKMODEL" "$TMP/L1" --layers 6 --hidden 512 --inter 2048 --vocab 8192 --seed 1 --noise 0.3 >/dev/null
"$WELD" ties --base "$TMP/L0" -j 1 --max-memory 16M -q -o "$TMP/int" "$TMP/L1" "$TMP/L1" "$TMP/L1" &
pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if ls -d "$TMP"/int.weld-tmp-* >/dev/null 2>&1; then
	bad "SIGINT left a temporary folder"
elif [ $rc -ne 0 ] && [ -e "$TMP/int" ]; then
	bad "SIGINT left a partial output"
else
	ok "SIGINT removes the temporary folder (exit $rc)"
fi

# consensus masks: saved bit-packed, and apply-mask rebuilds B + m * (M - B)
check "consensus --save-masks" "$WELD" consensus $B --dtype f32 -q -o "$TMP/cons" --save-masks "$TMP/masks.safetensors" $FT
check "masks are U8, one per model" sh -c "'$WELD' inspect '$TMP/masks.safetensors' | grep -c 'mask\.[123]	U8' | grep -qx 63"
check "apply-mask" "$WELD" consensus --apply-mask 2 --masks "$TMP/masks.safetensors" --base "$TMP/base" --merged "$TMP/cons" --dtype f32 -q -o "$TMP/task2"
cat >"$TMP/chk.py" <<PYEOF
import sys
sys.path.insert(0, "$(cd "$(dirname "$0")/../ref" && pwd)")
import numpy as np, safetensors_io as st
base = st.load_model("$TMP/base"); merged = st.load_model("$TMP/cons"); out = st.load_model("$TMP/task2")
masks = st.load_model("$TMP/masks.safetensors", floats_only=False)
for name, b in base.items():
    m = np.unpackbits(masks[name + ".mask.2"].astype(np.uint8), bitorder="little")[: b.size].reshape(b.shape).astype(bool)
    want = np.where(m, b + (merged[name] - b), b).astype(np.float32)
    assert np.array_equal(want.view(np.uint32), out[name].view(np.uint32)), name
print("ok")
PYEOF
check "apply-mask reproduces B + m * (M - B) exactly" $PY "$TMP/chk.py"
summary
