#!/bin/sh
# Run every tests/cli/test_*.sh (and the reference comparison), show what
# is not "ok", and add up their "N passed, M failed[, K skipped]" lines.
# "quick" skips the slow Python ones (used for the sanitizer build).
# WELD, MKMODEL and PYTHON are passed on to the scripts (see harness.sh).
cd "$(dirname "$0")/../.." || exit 1
export WELD="${WELD:-$(pwd)/weld}" MKMODEL="${MKMODEL:-$(pwd)/build/mkmodel}"
export PYTHON="${PYTHON:-/usr/bin/python3}"
quick=${1:-}
pass=0 fail=0 skipped=0 status=0
for t in tests/cli/test_*.sh tests/ref/check_ref.sh; do
	[ -f "$t" ] || continue
	case "$quick:$t" in quick:*recipes*|quick:*check_ref*) continue ;; esac
	echo "== $t"
	out=$(sh "$t" 2>&1) || status=1
	printf '%s\n' "$out" | grep -v '^ok '
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
	if [ -z "$line" ]; then
		echo "not ok - $t printed no summary"
		fail=$((fail + 1)) status=1
		continue
	fi
	pass=$((pass + ${line%% passed*}))
	f=${line#*passed, }
	fail=$((fail + ${f%% failed*}))
	case $line in
	*skipped*)
		s=${line#*failed, }
		skipped=$((skipped + ${s%% skipped*}))
		;;
	esac
done
echo "cli: $pass passed, $fail failed, $skipped skipped"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
