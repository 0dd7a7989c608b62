# harness.sh - sourced by the command-line tests that keep their scratch
# files in $T: pass/fail counters, ok, not_ok and refuse.
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
