#!/bin/sh
# inspect, convert, verify, diff, help: output, files and exit codes.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
M=$TMP/m
"$MKMODEL" "$M" --layers 2 --hidden 32 --inter 48 --vocab 64 --int >/dev/null

check "version" sh -c "'$WELD' --version | grep -q '^weld [0-9]'"
check "help lists the commands" sh -c "'$WELD' help | grep -q ties && '$WELD' help | grep -q inspect"
check "help CMD prints its usage" sh -c "'$WELD' help convert | grep -q 'usage: weld convert'"
fails "unknown command" 2 "not a weld command" "$WELD" frobnicate
fails "unknown option" 2 "unknown option" "$WELD" inspect --frob "$M"
fails "option without its value" 2 "option '--max-memory' needs a value" "$WELD" convert "$M" -o "$TMP/nv" --max-memory
fails "merge option without its value" 2 "option '--density' needs a value" "$WELD" ties --base "$M" "$M" -o "$TMP/nv" --density
fails "missing -o" 2 "output folder is required" "$WELD" convert "$M"

# inspect
check "inspect lists every tensor" sh -c "'$WELD' inspect '$M' | grep -c 'model.layers' | grep -qx 18"
check "inspect shows dtype and shape" sh -c "'$WELD' inspect '$M' | grep -q 'model.embed_tokens.weight	BF16	\[64, 32\]	4096	model.safetensors'"
check "inspect --json is JSON" sh -c "'$WELD' inspect --json --hash '$M' | $PY -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"tensors\"])==22 and len(d[\"tensors\"][0][\"xxh3\"])==16'"
fails "inspect of a missing model" 1 "cannot open model" "$WELD" inspect "$TMP/nope"

# --hash equals xxhsum -H3 of the tensor's bytes, cut from the file by hand
cat >"$TMP/cut.py" <<'PYEOF'
import json, struct, sys
path, name, out = sys.argv[1:4]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    b, e = h[name]["data_offsets"]
    f.seek(8 + n + b)
    open(out, "wb").write(f.read(e - b))
PYEOF
$PY "$TMP/cut.py" "$M/model.safetensors" model.layers.1.mlp.up_proj.weight "$TMP/t.bin"
want=$(xxhsum -H3 "$TMP/t.bin" | awk '{print $NF}')
got=$("$WELD" inspect --hash "$M" | grep '^model.layers.1.mlp.up_proj.weight	' | cut -f6)
check "inspect --hash matches xxhsum -H3 ($got)" test "$want" = "$got"

# convert: bf16 -> f32 -> bf16 is exact; shards; config
check "convert to f32" "$WELD" convert "$M" -o "$TMP/f32" --dtype f32 -q
check "f32 output is F32" sh -c "'$WELD' inspect '$TMP/f32' | grep -q 'model.norm.weight	F32'"
check "integer tensor kept I64" sh -c "'$WELD' inspect '$TMP/f32' | grep -q 'model.position_ids	I64'"
check "config torch_dtype updated" grep -q '"torch_dtype":[[:space:]]*"float32"' "$TMP/f32/config.json"
check "convert back to bf16" "$WELD" convert "$TMP/f32" -o "$TMP/bf16" --dtype bf16 -q
hashes "$M" >"$TMP/h1"
hashes "$TMP/bf16" >"$TMP/h2"
same "bf16 -> f32 -> bf16 gives byte-identical tensors" "$TMP/h1" "$TMP/h2"
check "convert with shards" "$WELD" convert "$M" -o "$TMP/sh" --shard-size 10K -q
check "shards named like Hugging Face" test -f "$TMP/sh/model-00001-of-00005.safetensors" -a -f "$TMP/sh/model.safetensors.index.json"
hashes "$TMP/sh" >"$TMP/h3"
same "sharded copy has the same tensors" "$TMP/h1" "$TMP/h3"
check "index lists every tensor" sh -c "$PY -c 'import json; d=json.load(open(\"$TMP/sh/model.safetensors.index.json\")); assert len(d[\"weight_map\"])==22 and d[\"metadata\"][\"total_size\"]>0'"
fails "existing output refused" 1 "already exists" "$WELD" convert "$M" -o "$TMP/sh" -q
check "existing output replaced with -f" "$WELD" convert "$M" -o "$TMP/sh" -f -q --shard-size 0
check "-f replaced the old shards" sh -c "test -f '$TMP/sh/model.safetensors' && ! test -e '$TMP/sh/model-00001-of-00004.safetensors'"
check "no temporary folder left" sh -c "! ls -d '$TMP'/*weld-tmp* 2>/dev/null"

# verify
check "verify a weld output" "$WELD" verify "$TMP/sh"
cp -r "$TMP/sh" "$TMP/flip"
$PY -c "
import sys
p='$TMP/flip/model.safetensors'
b=bytearray(open(p,'rb').read()); b[-3]^=0x40; open(p,'wb').write(b)"
fails "verify names a flipped byte" 1 "tensor '.*': XXH3 [0-9a-f]{16}, recorded" "$WELD" verify "$TMP/flip"

# diff
check "diff of identical models" sh -c "'$WELD' diff '$M' '$TMP/sh' | tail -1 | grep -q '22 identical, 0 different'"
check "diff --json" sh -c "'$WELD' diff --json '$M' '$TMP/f32' | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d[\"different\"]==0'"

# malformed inputs: exit 1, one line naming the file, nothing written
printf 'abc' >"$TMP/short.safetensors"
fails "file shorter than 8 bytes" 1 "short.safetensors': not a safetensors or PyTorch checkpoint" "$WELD" convert "$TMP/short.safetensors" -o "$TMP/x1"
$PY -c "import struct; open('$TMP/big.safetensors','wb').write(struct.pack('<Q', 10**9) + b'{}')"
fails "header length over the limit" 1 "big.safetensors': header length 1000000000 is over" "$WELD" convert "$TMP/big.safetensors" -o "$TMP/x2"
$PY -c "
import struct; h=b'{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}'
open('$TMP/dt.safetensors','wb').write(struct.pack('<Q', len(h)) + h + b'1234')"
fails "unknown dtype" 1 "tensor 'a': dtype: unknown" "$WELD" convert "$TMP/dt.safetensors" -o "$TMP/x3"
# control characters in names reach no terminal raw: written as \xNN
cat >"$TMP/ctl.py" <<'PYEOF'
import json, struct, sys
for path, n in ((sys.argv[1], 2), (sys.argv[2], 3)):
    h = json.dumps({"w\u001b]0;x\u0007": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + bytes(4 * n))
PYEOF
$PY "$TMP/ctl.py" "$TMP/ctl2.safetensors" "$TMP/ctl3.safetensors"
check "inspect escapes control characters" sh -c "'$WELD' inspect '$TMP/ctl2.safetensors' | grep -qF 'w\\x1b]0;x\\x07' && ! '$WELD' inspect '$TMP/ctl2.safetensors' | grep -q \"\$(printf '\\033')\""
fails "errors escape control characters" 1 "tensor 'w\\\\x1b\\]0;x\\\\x07'" "$WELD" average -o "$TMP/x4" "$TMP/ctl2.safetensors" "$TMP/ctl3.safetensors"
check "nothing written for malformed inputs" sh -c "! ls -d '$TMP'/x1* '$TMP'/x2* '$TMP'/x3* 2>/dev/null"
summary
