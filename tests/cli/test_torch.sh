#!/bin/sh
# PyTorch checkpoints (written by torch.save, tests/data/torch) through the
# commands: convert, inspect, diff and merges mixing .bin and safetensors.
. "$(dirname "$0")/lib.sh"
D=$(cd "$(dirname "$0")/../data/torch" && pwd)

for f in basic views nested wrapped proto4 params; do
	check "convert $f.bin" "$WELD" convert "$D/$f.bin" -o "$TMP/$f" -q
	check "$f: safetensors copy has the same values" sh -c "'$WELD' diff '$D/$f.bin' '$TMP/$f' | tail -1 | grep -q ' 0 different, 0 only in A, 0 only in B'"
done
check "convert a sharded .bin folder" "$WELD" convert "$D/sharded" -o "$TMP/sharded" -q
check "inspect a sharded .bin folder" sh -c "'$WELD' inspect '$D/sharded' | tail -1 | grep -q '4 tensors.*2 pytorch file'"
# x and its safetensors copy average to x exactly
check "average of a .bin folder and its safetensors copy" "$WELD" average -q -o "$TMP/avg" "$D/sharded" "$TMP/sharded"
check "that average equals the input" sh -c "'$WELD' diff '$D/sharded' '$TMP/avg' | tail -1 | grep -q '4 identical, 0 different'"
check "ties with a .bin base and mixed models" "$WELD" ties -q --base "$D/sharded" -o "$TMP/ties" "$TMP/sharded" "$D/sharded"
check "its output verifies" "$WELD" verify -q "$TMP/ties"
fails "legacy checkpoint refused" 1 "legacy PyTorch \(pre-1.6\) checkpoint" "$WELD" inspect "$D/legacy.bin"
fails "TorchScript archive refused" 1 "TorchScript" "$WELD" inspect "$D/torchscript.pt"
summary
