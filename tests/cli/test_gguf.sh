#!/bin/sh
# GGUF models: inspect, merges from GGUF inputs, convert, verify, diff;
# the refusal of a merge that mixes GGUF and safetensors models.
# Fixtures come from gguf_fixture.py (NumPy, independent of weld's writer).
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
expect "convert GGUF to safetensors" "$WELD" convert "$T/Q8_0.gguf" -o "$T/q8" --dtype f32 -q
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
"$WELD" convert "$T/Q4_K.gguf" -o "$T/q4k" --dtype f32 -q
expect "diff of a GGUF and its f32 copy is zero" same "$T/Q4_K.gguf" "$T/q4k"
expect "inspect --hash of a GGUF" sh -c "'$WELD' inspect --hash '$T/Q4_K.gguf' | grep -q '^blk.0.attn_q.weight	Q4_K.*	[0-9a-f]\{16\}$'"

# merges from GGUF inputs (to safetensors: same merge as on the decoded values)
for m in a b Q8_0; do
	"$WELD" convert "$T/$m.gguf" -o "$T/$m.f32" --dtype f32 -q || exit 1
done
expect "ties of three GGUF models" "$WELD" ties --base "$T/Q8_0.gguf" "$T/a.gguf" "$T/b.gguf" -o "$T/t1" --density 0.5 --dtype f32 -q
expect "ties of their decoded copies" "$WELD" ties --base "$T/Q8_0.f32" "$T/a.f32" "$T/b.f32" -o "$T/t2" --density 0.5 --dtype f32 -q
expect "the two merges are equal" same "$T/t1" "$T/t2"
expect "mixed block types merge (Q8_0, Q4_K, Q6_K)" "$WELD" average "$T/Q8_0.gguf" "$T/Q4_K.gguf" "$T/Q6_K.gguf" -o "$T/avg" -q

# mixing formats is refused, with the reason
refuse "GGUF and safetensors do not mix" 1 "GGUF models merge only with GGUF models" "$T/mix" "$WELD" average "$T/Q8_0.gguf" "$T/a.f32" -o "$T/mix"

# a hostile file
printf 'GGUF\001\000\000\000' >"$T/v1.gguf"
refuse "GGUF v1 is refused by name" 1 "version: GGUF v1 is not supported" - "$WELD" inspect "$T/v1.gguf"
summary
