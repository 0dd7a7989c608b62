#!/bin/sh
# inspect, convert, verify, diff, help: output, files and exit codes.
. "$(dirname "$0")/harness.sh"
M=$T/m

# hashes DIR: the XXH3 of every tensor of a model, one per line
hashes() { "$WELD" inspect --hash "$1" | grep -v '^#' | cut -f1,6; }

"$MKMODEL" "$M" --layers 2 --hidden 32 --inter 48 --vocab 64 --int >/dev/null

expect "version" sh -c "'$WELD' --version | grep -q '^weld [0-9]'"
expect "help lists the commands" sh -c "'$WELD' help | grep -q ties && '$WELD' help | grep -q inspect"
expect "help CMD prints its usage" sh -c "'$WELD' help convert | grep -q 'usage: weld convert'"
refuse "unknown command" 2 "not a weld command" - "$WELD" frobnicate
refuse "unknown option" 2 "unknown option" - "$WELD" inspect --frob "$M"
refuse "option without its value" 2 "option '--max-memory' needs a value" "$T/nv" "$WELD" convert "$M" -o "$T/nv" --max-memory
refuse "merge option without its value" 2 "option '--density' needs a value" "$T/nv" "$WELD" ties --base "$M" "$M" -o "$T/nv" --density
refuse "missing -o" 2 "output folder is required" - "$WELD" convert "$M"

# inspect
expect "inspect lists every tensor" sh -c "'$WELD' inspect '$M' | grep -c 'model.layers' | grep -qx 18"
expect "inspect shows dtype and shape" sh -c "'$WELD' inspect '$M' | grep -q 'model.embed_tokens.weight	BF16	\[64, 32\]	4096	model.safetensors'"
expect "inspect --json is JSON" sh -c "'$WELD' inspect --json --hash '$M' | '$PYTHON' -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"tensors\"])==22 and len(d[\"tensors\"][0][\"xxh3\"])==16'"
refuse "inspect of a missing model" 1 "cannot open model" - "$WELD" inspect "$T/nope"

# --hash equals xxhsum -H3 of the tensor's bytes, cut from the file by hand
cat >"$T/cut.py" <<'PYEOF'
import json, struct, sys
path, name, out = sys.argv[1:4]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    b, e = h[name]["data_offsets"]
    f.seek(8 + n + b)
    open(out, "wb").write(f.read(e - b))
PYEOF
"$PYTHON" "$T/cut.py" "$M/model.safetensors" model.layers.1.mlp.up_proj.weight "$T/t.bin"
want=$(xxhsum -H3 "$T/t.bin" 2>/dev/null | awk '{print $NF}')
got=$("$WELD" inspect --hash "$M" | grep '^model.layers.1.mlp.up_proj.weight	' | cut -f6)
expect "inspect --hash matches xxhsum -H3 ($got)" test "$want" = "$got"

# convert: bf16 -> f32 -> bf16 is exact; shards; config
expect "convert to f32" "$WELD" convert "$M" -o "$T/f32" --dtype f32 -q
expect "f32 output is F32" sh -c "'$WELD' inspect '$T/f32' | grep -q 'model.norm.weight	F32'"
expect "integer tensor kept I64" sh -c "'$WELD' inspect '$T/f32' | grep -q 'model.position_ids	I64'"
expect "config torch_dtype updated" grep -q '"torch_dtype":[[:space:]]*"float32"' "$T/f32/config.json"
expect "convert back to bf16" "$WELD" convert "$T/f32" -o "$T/bf16" --dtype bf16 -q
hashes "$M" >"$T/h1"
hashes "$T/bf16" >"$T/h2"
expect "bf16 -> f32 -> bf16 gives byte-identical tensors" cmp "$T/h1" "$T/h2"
expect "convert with shards" "$WELD" convert "$M" -o "$T/sh" --shard-size 10K -q
expect "shards named like Hugging Face" test -f "$T/sh/model-00001-of-00005.safetensors" -a -f "$T/sh/model.safetensors.index.json"
hashes "$T/sh" >"$T/h3"
expect "sharded copy has the same tensors" cmp "$T/h1" "$T/h3"
expect "index lists every tensor" sh -c "'$PYTHON' -c 'import json; d=json.load(open(\"$T/sh/model.safetensors.index.json\")); assert len(d[\"weight_map\"])==22 and d[\"metadata\"][\"total_size\"]>0'"
refuse "existing output refused" 1 "already exists" "$T/sh" "$WELD" convert "$M" -o "$T/sh" -q
expect "existing output replaced with -f" "$WELD" convert "$M" -o "$T/sh" -f -q --shard-size 0
expect "-f replaced the old shards" sh -c "test -f '$T/sh/model.safetensors' && ! test -e '$T/sh/model-00001-of-00004.safetensors'"
expect "no temporary folder left" sh -c "! ls -d '$T'/.weld-tmp-* 2>/dev/null"

# verify
expect "verify a weld output" "$WELD" verify "$T/sh"
cp -r "$T/sh" "$T/flip"
"$PYTHON" -c "
import sys
p='$T/flip/model.safetensors'
b=bytearray(open(p,'rb').read()); b[-3]^=0x40; open(p,'wb').write(b)"
refuse -E "verify names a flipped byte" 1 "tensor '.*': XXH3 [0-9a-f]{16}, recorded" - "$WELD" verify "$T/flip"

# diff
expect "diff of identical models" sh -c "'$WELD' diff '$M' '$T/sh' | tail -1 | grep -q '22 identical, 0 different'"
expect "diff --json" sh -c "'$WELD' diff --json '$M' '$T/f32' | '$PYTHON' -c 'import json,sys; d=json.load(sys.stdin); assert d[\"different\"]==0'"

# malformed inputs: exit 1, one line naming the file, nothing written
printf 'abc' >"$T/short.safetensors"
refuse "file shorter than 8 bytes" 1 "short.safetensors': not a safetensors or PyTorch checkpoint" "$T/x1" "$WELD" convert "$T/short.safetensors" -o "$T/x1"
"$PYTHON" -c "import struct; open('$T/big.safetensors','wb').write(struct.pack('<Q', 10**9) + b'{}')"
refuse "header length over the limit" 1 "big.safetensors': header length 1000000000 is over" "$T/x2" "$WELD" convert "$T/big.safetensors" -o "$T/x2"
"$PYTHON" -c "
import struct; h=b'{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}'
open('$T/dt.safetensors','wb').write(struct.pack('<Q', len(h)) + h + b'1234')"
refuse "unknown dtype" 1 "tensor 'a': dtype: unknown" "$T/x3" "$WELD" convert "$T/dt.safetensors" -o "$T/x3"
# control characters in names reach no terminal raw: written as \xNN
cat >"$T/ctl.py" <<'PYEOF'
import json, struct, sys
for path, n in ((sys.argv[1], 2), (sys.argv[2], 3)):
    h = json.dumps({"w\u001b]0;x\u0007": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + bytes(4 * n))
PYEOF
"$PYTHON" "$T/ctl.py" "$T/ctl2.safetensors" "$T/ctl3.safetensors"
expect "inspect escapes control characters" sh -c "'$WELD' inspect '$T/ctl2.safetensors' | grep -qF 'w\\x1b]0;x\\x07' && ! '$WELD' inspect '$T/ctl2.safetensors' | grep -q \"\$(printf '\\033')\""
refuse "errors escape control characters" 1 "tensor 'w\\x1b]0;x\\x07'" "$T/x4" "$WELD" average -o "$T/x4" "$T/ctl2.safetensors" "$T/ctl3.safetensors"
expect "nothing written for malformed inputs" sh -c "! ls -d '$T'/x1* '$T'/x2* '$T'/x3* 2>/dev/null"
# the temporary folder: ".weld-tmp-XXXXXX" in the output's parent, whatever its name
long=$(printf '%0250d' 0)
expect "an output name of 250 characters" "$WELD" convert "$M" -o "$T/$long" -q
expect "no .weld-tmp-* left beside the outputs" sh -c "! ls -d '$T'/.weld-tmp-* 2>/dev/null"
mkdir -p "$T/.weld-tmp-stale1/new" "$T/.weld-tmp-stale2/new"
printf 'weld temporary output\noutput: st\npid: 1\n' >"$T/.weld-tmp-stale1/owner"
printf 'weld temporary output\noutput: other\npid: 1\n' >"$T/.weld-tmp-stale2/owner"
expect "a killed run's temporary folder goes at the next run for its output" sh -c "'$WELD' convert '$M' -o '$T/st' -q && ! test -e '$T/.weld-tmp-stale1' && test -e '$T/.weld-tmp-stale2'"
rm -rf "$T/.weld-tmp-stale2"
refuse "an output in a missing folder is named as such" 1 "cannot create a temporary folder for '$T/nodir/out' in '$T/nodir'" "$T/nodir/out" "$WELD" convert "$M" -o "$T/nodir/out"
refuse "a write error names the output, not its temporary folder" 1 "'$T/fz/model.safetensors'" "$T/fz" sh -c "trap '' XFSZ; ulimit -f 1; exec '$WELD' convert '$M' -o '$T/fz' -q"
expect "no .weld-tmp-* left after a failed write" sh -c "! ls -d '$T'/.weld-tmp-* 2>/dev/null"

# inputs that are not model files
mkfifo "$T/fifo.safetensors"
refuse "a FIFO as a model is refused at once" 1 "fifo.safetensors' is a FIFO, not a regular file" "$T/x5" timeout 20 "$WELD" convert "$T/fifo.safetensors" -o "$T/x5"
refuse "a text file is not a checkpoint" 1 "cut.py': not a safetensors or PyTorch checkpoint" "$T/x6" "$WELD" convert "$T/cut.py" -o "$T/x6"
mkdir -p "$T/dm/model.safetensors"
refuse "a folder named model.safetensors is named as such" 1 "dm/model.safetensors' is a folder, not a regular file" "$T/x7" "$WELD" convert "$T/dm" -o "$T/x7"
summary
