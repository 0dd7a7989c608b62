# lib.sh - sourced by the command-line tests: counters, checks and a
# scratch folder. Each check prints one line; summary prints the total.
set -u
WELD=${WELD:-$(pwd)/weld}
MKMODEL=${MKMODEL:-$(pwd)/build/mkmodel}
PASS=0
FAIL=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/weld-cli-XXXXXX")
trap 'rm -rf "$TMP"' EXIT

ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$1"; }
bad() { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$1"; [ -f "$TMP/err" ] && sed 's/^/     | /' "$TMP/err" | head -5; }

# check NAME CMD...: CMD must succeed
check() {
	name=$1; shift
	if "$@" >"$TMP/out" 2>"$TMP/err"; then ok "$name"; else bad "$name"; fi
}

# fails NAME CODE PATTERN CMD...: CMD must exit CODE with PATTERN (grep -E)
# on stderr, in a single line
fails() {
	name=$1 code=$2 pat=$3; shift 3
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" -ne "$code" ]; then
		bad "$name (exit $rc, wanted $code)"
	elif ! grep -Eq -- "$pat" "$TMP/err"; then
		bad "$name (stderr does not match '$pat')"
	elif [ "$code" = 1 ] && [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
		bad "$name (error is not one line)"
	else
		ok "$name"
	fi
}

# same NAME A B: the two files have the same contents
same() {
	if cmp -s "$2" "$3"; then ok "$1"; else bad "$1"; fi
}

# hashes DIR: the XXH3 of every tensor of a model, one per line
hashes() { "$WELD" inspect --hash "$1" | grep -v '^#' | cut -f1,6; }

summary() {
	printf '%d passed, %d failed\n' "$PASS" "$FAIL"
	[ "$FAIL" -eq 0 ]
}
