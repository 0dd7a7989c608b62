#!/bin/sh
# test_exp.sh - weld's own exp, log and tanh (lib/common/elementary.h) and
# their NumPy twin (tests/ref/ref_exp.py), which the references of
# arcee_fusion and pcb use: the twin's tables are elementary.c's, its special values are the
# definitions', and its bits at a million points sum to the known answers
# that tests/unit/test_elementary.c asserts for the C code.
. "$(dirname "$0")/harness.sh"

if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	skip "ref_exp: needs NumPy"
else
	"$PYTHON" "$ROOT/tests/ref/ref_exp.py" >"$T/out" 2>"$T/stderr"
	grep -q '^8 passed, 0 failed$' "$T/out" || not_ok "ref_exp: the self-test ran to its end"
	while read -r line; do
		case $line in
		"ok - "*) ok "${line#ok - }" ;;
		"not ok - "*) not_ok "${line#not ok - }" ;;
		esac
	done <"$T/out"
fi
summary
