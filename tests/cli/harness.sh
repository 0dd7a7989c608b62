# harness.sh - sourced by the command-line tests that keep their scratch
# files in $T: WELD made absolute, PY, the scratch folder $T (named after
# $NAME, removed on exit), pass/fail counters, ok, not_ok and refuse.
WELD=${WELD:-./weld}
case $WELD in
*/*) WELD=$(cd "$(dirname "$WELD")" && pwd)/$(basename "$WELD") ;;
esac
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/weld-$NAME-XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0

ok() {
	pass=$((pass + 1))
	echo "ok - $1"
}

not_ok() {
	fail=$((fail + 1))
	echo "not ok - $1"
	sed 's/^/#   /' "$T/stderr" "$T/stdout" 2>/dev/null | head -20
}

# refuse NAME STATUS TEXT OUT CMD...: CMD exits with STATUS, says TEXT on
# stderr, and leaves neither OUT nor a temporary folder beside it
refuse() {
	name=$1 want=$2 text=$3 out=$4
	shift 4
	set +e
	"$@" >"$T/stdout" 2>"$T/stderr"
	rc=$?
	set -e
	if [ "$rc" -ne "$want" ]; then
		echo "#   exit status $rc, expected $want" >>"$T/stderr"
		not_ok "$name"
	elif ! grep -qF -- "$text" "$T/stderr"; then
		echo "#   stderr lacks: $text" >>"$T/stderr"
		not_ok "$name"
	elif [ -e "$out" ] || ls -d "$out".weld-tmp-* >/dev/null 2>&1; then
		echo "#   '$out' was created" >>"$T/stderr"
		not_ok "$name"
	else
		ok "$name"
	fi
}
