#!/bin/sh
# GGUF models: inspect, merges from GGUF inputs to GGUF and safetensors,
# convert, verify, diff; the refusal of a merge that mixes GGUF and
# safetensors models. Input fixtures come from gguf_fixture.py (NumPy,
# independent of weld's writer); weld's GGUF output is checked against
# ggml's reference quantisers (gguf_check.py) and read back by the npm
# package @huggingface/gguf (gguf_list.mjs), installed on first use into
# build/npm (WELD_NPM_DIR), skipped when npm cannot install it.
. "$(dirname "$0")/harness.sh"
FIX="$HERE/gguf_fixture.py"

# same A B: weld diff finds every tensor of A and B equal
same() { "$WELD" diff "$1" "$2" >"$T/diff.out" && grep -q '^# [0-9]* identical, 0 different, 0 only in A, 0 only in B$' "$T/diff.out"; }

if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	skip "GGUF tests (no NumPy for $PYTHON)"
	summary
	exit
fi
for t in Q8_0 Q4_K Q6_K F16 Q4_0; do
	"$PYTHON" "$FIX" "$T/$t.gguf" 1 "$t" || exit 1
done
"$PYTHON" "$FIX" "$T/a.gguf" 2 Q8_0 && "$PYTHON" "$FIX" "$T/b.gguf" 3 Q8_0 || exit 1

# inspect
expect "inspect shows the block type" sh -c "'$WELD' inspect '$T/Q4_K.gguf' | grep -q '^blk.0.ffn_up.weight	Q4_K	\[512, 256\]	73728	Q4_K.gguf$'"
expect "inspect lists the metadata" sh -c "'$WELD' inspect '$T/Q8_0.gguf' | grep -q '^# tokenizer.chat_template = {% for m in messages %}'"
expect "inspect --json has metadata and offsets" sh -c "'$WELD' inspect --json '$T/Q8_0.gguf' | '$PYTHON' -c 'import json,sys; d=json.load(sys.stdin); assert d[\"format\"]==\"gguf\" and d[\"metadata\"][\"general.architecture\"]==\"llama\" and all(t[\"offset\"]%32==0 for t in d[\"tensors\"])'"

# decoding: convert to f32 safetensors, then compare with a NumPy decoding of Q8_0
expect "convert GGUF to safetensors" "$WELD" convert "$T/Q8_0.gguf" -o "$T/q8" --dtype f32 --format safetensors -q
cat >"$T/q8.py" <<'PYEOF'
import json, struct, sys
import numpy as np
gguf, st = sys.argv[1:3]
raw = open(st, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
t = hdr["blk.1.ffn_down.weight"]
b, e = t["data_offsets"]
got = np.frombuffer(raw[8 + n + b:8 + n + e], "<f4").reshape(t["shape"])
g = open(gguf, "rb").read()
# find the tensor's data: parse just enough of the header
pos = 24
nt, nkv = struct.unpack("<QQ", g[8:24])
def string(p):
    l = struct.unpack("<Q", g[p:p + 8])[0]
    return g[p + 8:p + 8 + l].decode(), p + 8 + l
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
for _ in range(nkv):
    _, pos = string(pos)
    vt = struct.unpack("<I", g[pos:pos + 4])[0]; pos += 4
    if vt == 8:
        _, pos = string(pos)
    elif vt == 9:
        et, cnt = struct.unpack("<IQ", g[pos:pos + 12]); pos += 12
        for _ in range(cnt):
            if et == 8:
                _, pos = string(pos)
            else:
                pos += sizes[et]
    else:
        pos += sizes[vt]
infos = {}
for _ in range(nt):
    name, pos = string(pos)
    nd = struct.unpack("<I", g[pos:pos + 4])[0]; pos += 4
    ne = struct.unpack("<%dQ" % nd, g[pos:pos + 8 * nd]); pos += 8 * nd
    ty, off = struct.unpack("<IQ", g[pos:pos + 12]); pos += 12
    infos[name] = (ne, ty, off)
start = (pos + 31) // 32 * 32
ne, ty, off = infos["blk.1.ffn_down.weight"]
nb = ne[0] * ne[1] // 32
blocks = np.frombuffer(g[start + off:start + off + 34 * nb], np.uint8).reshape(nb, 34)
d = blocks[:, :2].copy().view("<f2").astype(np.float32)
q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
want = (q * d).reshape(ne[1], ne[0])
assert got.shape == want.shape and np.array_equal(got, want), "Q8_0 values differ"
PYEOF
expect "Q8_0 decodes as q * d" "$PYTHON" "$T/q8.py" "$T/Q8_0.gguf" "$T/q8/model.safetensors"
"$WELD" convert "$T/Q4_K.gguf" -o "$T/q4k" --dtype f32 --format safetensors -q
expect "diff of a GGUF and its f32 copy is zero" same "$T/Q4_K.gguf" "$T/q4k"
expect "inspect --hash of a GGUF" sh -c "'$WELD' inspect --hash '$T/Q4_K.gguf' | grep -q '^blk.0.attn_q.weight	Q4_K.*	[0-9a-f]\{16\}$'"

# merges from GGUF inputs (to safetensors: same merge as on the decoded values)
for m in a b Q8_0; do
	"$WELD" convert "$T/$m.gguf" -o "$T/$m.f32" --dtype f32 --format safetensors -q || exit 1
done
expect "ties of three GGUF models" "$WELD" ties --base "$T/Q8_0.gguf" "$T/a.gguf" "$T/b.gguf" -o "$T/t1" --density 0.5 --dtype f32 --format safetensors -q
expect "ties of their decoded copies" "$WELD" ties --base "$T/Q8_0.f32" "$T/a.f32" "$T/b.f32" -o "$T/t2" --density 0.5 --dtype f32 -q
expect "the two merges are equal" same "$T/t1" "$T/t2"
expect "mixed block types merge (Q8_0, Q4_K, Q6_K)" "$WELD" average "$T/Q8_0.gguf" "$T/Q4_K.gguf" "$T/Q6_K.gguf" -o "$T/avg" --format safetensors -q
expect "GGUF to safetensors says the names are GGUF's" sh -c "'$WELD' convert '$T/Q6_K.gguf' -o '$T/q6st' --format safetensors 2>&1 | grep -q 'note: the safetensors output keeps the GGUF tensor names'"

# mixing formats is refused, with the reason
refuse "GGUF and safetensors do not mix" 1 "GGUF models merge only with GGUF models" "$T/mix" "$WELD" average "$T/Q8_0.gguf" "$T/a.f32" -o "$T/mix"

# GGUF output: fine-tunes written by weld's writer (Q8_0, Q4_0) from F32 GGUF files
for m in f0 f1 f2; do
	"$PYTHON" "$FIX" "$T/$m.gguf" "${m#f}0" F32 || exit 1
done
expect "convert F32 to Q8_0" "$WELD" convert "$T/f0.gguf" -o "$T/f0q8.gguf" --dtype q8_0 -q
expect "Q8_0 blocks are ggml's reference quantisation" sh -c "cd '$HERE' && '$PYTHON' gguf_check.py quant '$T/f0.gguf' '$T/f0q8.gguf' Q8_0"
expect "convert F32 to Q4_0" "$WELD" convert "$T/f1.gguf" -o "$T/f1q4.gguf" --dtype q4_0 -q
expect "Q4_0 blocks are ggml's reference quantisation" sh -c "cd '$HERE' && '$PYTHON' gguf_check.py quant '$T/f1.gguf' '$T/f1q4.gguf' Q4_0"
"$WELD" convert "$T/f2.gguf" -o "$T/f2q8.gguf" --dtype q8_0 -q || exit 1
expect "1-D tensors stay F32 in a Q8_0 output" sh -c "'$WELD' inspect '$T/f0q8.gguf' | grep -q '^output_norm.weight	F32	\[256\]'"
# the same merge on GGUF inputs and on their decoded values
expect "ties of GGUF fine-tunes to a GGUF file" "$WELD" ties --base "$T/f0q8.gguf" "$T/f1q4.gguf" "$T/f2q8.gguf" "$T/Q4_K.gguf" -o "$T/m.gguf" --density 0.4 -q
expect "the merge is Q8_0 like its base" sh -c "'$WELD' inspect '$T/m.gguf' | grep -q '^blk.0.attn_q.weight	Q8_0	'"
for m in f0q8 f1q4 f2q8 Q4_K; do
	"$WELD" convert "$T/$m.gguf" -o "$T/$m.dec" --dtype f32 --format safetensors -q || exit 1
done
"$WELD" ties --base "$T/f0q8.dec" "$T/f1q4.dec" "$T/f2q8.dec" "$T/Q4_K.dec" -o "$T/m.dec" --density 0.4 --dtype f32 -q || exit 1
"$WELD" ties --base "$T/f0q8.gguf" "$T/f1q4.gguf" "$T/f2q8.gguf" "$T/Q4_K.gguf" -o "$T/m32.gguf" --density 0.4 --dtype f32 -q || exit 1
expect "an F32 GGUF merge equals the merge of the decoded values" same "$T/m32.gguf" "$T/m.dec"
"$WELD" convert "$T/m32.gguf" -o "$T/m32q8.gguf" --dtype q8_0 -q || exit 1
expect "the Q8_0 merge is the F32 merge quantised" sh -c "'$WELD' inspect --hash '$T/m.gguf' | grep -v '^#' | cut -f1,6 >'$T/h1' && '$WELD' inspect --hash '$T/m32q8.gguf' | grep -v '^#' | cut -f1,6 >'$T/h2' && cmp -s '$T/h1' '$T/h2'"
expect "verify a GGUF output" "$WELD" verify "$T/m.gguf"
expect "same bytes for any -j and --max-memory" sh -c "'$WELD' ties --base '$T/f0q8.gguf' '$T/f1q4.gguf' '$T/f2q8.gguf' '$T/Q4_K.gguf' -o '$T/m1.gguf' --density 0.4 -q -j 1 --max-memory 10M && cmp '$T/m.gguf' '$T/m1.gguf'"
expect "metadata carried over, weld keys added" sh -c "'$WELD' inspect '$T/m.gguf' | grep -q '^# tokenizer.chat_template = ' && '$WELD' inspect '$T/m.gguf' | grep -q '^# weld.recipe = {\"merge_method\":\"ties\"' && '$WELD' inspect '$T/m.gguf' | grep -q '^# general.file_type = 7$'"
expect "tensors in the base's order" sh -c "cd '$HERE' && '$PYTHON' -c 'import gguf_fixture as g, sys; a = list(g.read(sys.argv[1])[0]); b = list(g.read(sys.argv[2])[0]); assert a == b, (a, b)' '$T/f0.gguf' '$T/m.gguf'"
cp "$T/m.gguf" "$T/bad.gguf"
printf 'x' | dd of="$T/bad.gguf" bs=1 seek=40000 conv=notrunc 2>/dev/null
refuse "verify finds a changed byte" 1 "XXH3" - "$WELD" verify "$T/bad.gguf"
expect "a K-quant base gives F16, with a note" sh -c "'$WELD' average '$T/Q4_K.gguf' '$T/Q4_K.gguf' -o '$T/k.gguf' 2>'$T/k.err' && grep -q 'note: .*Q4_K tensors, which weld does not encode: they are written as F16 (llama.cpp.s llama-quantize' '$T/k.err' && '$WELD' inspect '$T/k.gguf' | grep -q '^blk.0.attn_q.weight	F16	' && '$WELD' inspect '$T/k.gguf' | grep -q '^# general.file_type = 1$'"
expect "an F16 base gives F16" sh -c "'$WELD' average '$T/F16.gguf' '$T/F16.gguf' -o '$T/h.gguf' -q && '$WELD' inspect '$T/h.gguf' | grep -q '^blk.0.attn_q.weight	F16	' && '$WELD' inspect '$T/h.gguf' | grep -q '^# general.file_type = 1$'"
expect "averaging a model with itself gives it back" same "$T/F16.gguf" "$T/h.gguf"
expect "--dtype bf16 writes BF16" sh -c "'$WELD' convert '$T/Q8_0.gguf' -o '$T/bf.gguf' --dtype bf16 -q && '$WELD' inspect '$T/bf.gguf' | grep -q '^blk.0.attn_q.weight	BF16	' && '$WELD' inspect '$T/bf.gguf' | grep -q '^output_norm.weight	F32	' && '$WELD' inspect '$T/bf.gguf' | grep -q '^# general.file_type = 32$'"
expect "weld plan shows the GGUF types" sh -c "'$WELD' plan ties --base '$T/f0q8.gguf' '$T/f1q4.gguf' -o '$T/p.gguf' | grep -q '^blk.0.attn_q.weight Q8_0 \[256, 256\] ties' && test ! -e '$T/p.gguf'"
refuse "no GGUF from safetensors" 1 "GGUF output needs GGUF models" "$T/x.gguf" "$WELD" convert "$T/q8" -o "$T/x.gguf" --format gguf
refuse "no Q8_0 in safetensors" 1 "--dtype q8_0 is a GGUF type" "$T/x" "$WELD" average "$T/Q8_0.gguf" -o "$T/x" --dtype q8_0 --format safetensors
refuse "--format is checked" 2 "invalid value 'onnx' for '--format'" - "$WELD" average "$T/Q8_0.gguf" -o "$T/x" --format onnx
refuse "an existing output is kept" 1 "exists" - "$WELD" average "$T/Q8_0.gguf" -o "$T/m.gguf"
expect "-f replaces it" "$WELD" average "$T/Q8_0.gguf" "$T/a.gguf" -o "$T/m.gguf" -f -q

# a split set (--shard-size): llama.cpp's file names and split.* keys, the
# same tensors and bytes as the one file (m1.gguf), verify, -f, a recipe
# run again
split_m() { "$WELD" ties --base "$T/f0q8.gguf" "$T/f1q4.gguf" "$T/f2q8.gguf" "$T/Q4_K.gguf" --density 0.4 -q "$@"; }
expect "--shard-size splits a GGUF output" split_m -o "$T/s.gguf" --shard-size 150K
expect "the set has llama.cpp's names, and no file OUT" sh -c "ls '$T' | grep -c '^s-0000[1-7]-of-00007.gguf$' | grep -qx 7 && test ! -e '$T/s.gguf'"
S1="$T/s-00001-of-00007.gguf"
expect "the set holds the one file's tensors and keys" sh -c "cd '$HERE' && '$PYTHON' gguf_check.py split '$T/m1.gguf' '$T'/s-0000?-of-00007.gguf"
expect "weld reads the set as the one file" same "$T/m1.gguf" "$S1"
expect "verify a split set" sh -c "'$WELD' verify '$S1' | grep -q ': 14 tensors OK$'"
expect "the one file records shard_size 0" sh -c "'$WELD' inspect '$T/m1.gguf' | grep -q '^# weld.recipe = .*\"shard_size\":0,'"
cat "$T"/s-0000?-of-00007.gguf | xxhsum >"$T/s.sum"
refuse "an existing set is kept" 1 "s-00001-of-00007.gguf' already exists; not overwritten (use -f to replace it)" - split_m -o "$T/s.gguf" --shard-size 150K
expect "... whole" sh -c "cat '$T'/s-0000?-of-00007.gguf | xxhsum | cmp -s - '$T/s.sum' && ! ls -a '$T' | grep -q '^.weld-tmp'"
"$WELD" inspect --json "$S1" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["weld.recipe"])' >"$T/s.json"
expect "-f replaces a set with the same set, from its recipe" sh -c "'$WELD' run '$T/s.json' -o '$T/s.gguf' -f -q && cat '$T'/s-0000?-of-00007.gguf | xxhsum | cmp -s - '$T/s.sum'"
expect "same set for any -j and --max-memory" sh -c "'$WELD' run '$T/s.json' -o '$T/s2.gguf' -q -j 1 --max-memory 10M && for k in 1 2 3 4 5 6 7; do cmp '$T/s-0000'\$k'-of-00007.gguf' '$T/s2-0000'\$k'-of-00007.gguf' || exit 1; done"
expect "a set of one file" sh -c "'$WELD' convert '$T/m1.gguf' -q -o '$T/one.gguf' --shard-size 10G && test -f '$T/one-00001-of-00001.gguf' && '$WELD' verify '$T/one-00001-of-00001.gguf' >/dev/null"

# the independent reader: @huggingface/gguf agrees on every key, tensor,
# shape, type and offset
NPM_DIR=${WELD_NPM_DIR:-$ROOT/build/npm}
if [ ! -f "$NPM_DIR/node_modules/@huggingface/gguf/package.json" ] && command -v npm >/dev/null 2>&1; then
	mkdir -p "$NPM_DIR" && (cd "$NPM_DIR" && npm install --prefix "$NPM_DIR" --no-audit --no-fund \
		--loglevel=error @huggingface/gguf@0.4.6 >/dev/null 2>&1)
fi
if command -v node >/dev/null 2>&1 && [ -f "$NPM_DIR/node_modules/@huggingface/gguf/package.json" ]; then
	for f in m k f1q4; do
		expect "@huggingface/gguf reads $f.gguf as weld does" sh -c "node '$HERE/gguf_list.mjs' '$NPM_DIR' '$T/$f.gguf' >'$T/n.json' && '$WELD' inspect --json '$T/$f.gguf' >'$T/w.json' && cd '$HERE' && '$PYTHON' gguf_check.py npm '$T/n.json' '$T/w.json'"
	done
else
	skip "@huggingface/gguf reads weld's GGUF output (npm or node unavailable)"
fi

# a hostile file
printf 'GGUF\001\000\000\000' >"$T/v1.gguf"
refuse "GGUF v1 is refused by name" 1 "version: GGUF v1 is not supported" - "$WELD" inspect "$T/v1.gguf"
summary
