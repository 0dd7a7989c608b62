#!/bin/sh
# Run every tests/cli/test_*.sh (and the reference comparison), add up
# their "N passed, M failed" lines. "quick" skips the slow Python ones
# (used for the sanitizer build).
cd "$(dirname "$0")/../.." || exit 1
export WELD="${WELD:-$(pwd)/weld}" MKMODEL="${MKMODEL:-$(pwd)/build/mkmodel}"
quick=${1:-}
pass=0 fail=0 status=0
for t in tests/cli/test_*.sh tests/ref/check_ref.sh; do
	[ -f "$t" ] || continue
	case "$quick:$t" in quick:*recipes*|quick:*check_ref*) continue ;; esac
	echo "== $t"
	out=$(sh "$t" 2>&1) || status=1
	printf '%s\n' "$out" | grep -v '^ok ' 
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
	if [ -z "$line" ]; then
		echo "FAIL $t printed no summary"
		fail=$((fail + 1)) status=1
		continue
	fi
	pass=$((pass + ${line%% passed*}))
	f=${line#*passed, }
	fail=$((fail + ${f%% failed*}))
done
echo "cli: $pass passed, $fail failed"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
