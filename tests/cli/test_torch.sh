#!/bin/sh
# PyTorch checkpoints (written by torch.save, tests/data/torch) through the
# commands: convert, inspect, diff and merges mixing .bin and safetensors.
. "$(dirname "$0")/harness.sh"
D=$ROOT/tests/data/torch

for f in basic views nested wrapped proto4 params; do
	expect "convert $f.bin" "$WELD" convert "$D/$f.bin" -o "$T/$f" -q
	expect "$f: safetensors copy has the same values" sh -c "'$WELD' diff '$D/$f.bin' '$T/$f' | tail -1 | grep -q ' 0 different, 0 only in A, 0 only in B'"
done
expect "convert a sharded .bin folder" "$WELD" convert "$D/sharded" -o "$T/sharded" -q
expect "inspect a sharded .bin folder" sh -c "'$WELD' inspect '$D/sharded' | tail -1 | grep -q '4 tensors.*2 pytorch file'"
# x and its safetensors copy average to x exactly
expect "average of a .bin folder and its safetensors copy" "$WELD" average -q -o "$T/avg" "$D/sharded" "$T/sharded"
expect "that average equals the input" sh -c "'$WELD' diff '$D/sharded' '$T/avg' | tail -1 | grep -q '4 identical, 0 different'"
expect "ties with a .bin base and safetensors models" "$WELD" ties -q --base "$D/sharded" -o "$T/ties" "$T/sharded" "$T/avg"
expect "its output verifies" "$WELD" verify -q "$T/ties"
refuse "legacy checkpoint refused" 1 "legacy PyTorch (pre-1.6) checkpoint" - "$WELD" inspect "$D/legacy.bin"
refuse "TorchScript archive refused" 1 "TorchScript" - "$WELD" inspect "$D/torchscript.pt"
summary
