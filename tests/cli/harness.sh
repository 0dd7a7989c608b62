# harness.sh - sourced by every tests/cli/test_*.sh. It sets:
#
#   HERE, ROOT   tests/cli and the repository, as absolute paths
#   WELD         the binary under test (default ROOT/weld), made absolute
#   MKMODEL      the example-model generator (default ROOT/build/mkmodel)
#   PYTHON       the Python with NumPy the fixtures use (/usr/bin/python3)
#   T            a scratch folder, removed on exit
#
# and gives one vocabulary of checks. Each check prints one line, "ok - ",
# "not ok - " or "skip - " and its name, and adds to pass, fail or skipped;
# summary prints "N passed, M failed, K skipped" (what tests/cli/run.sh
# adds up) and fails if any check failed. A failure also prints the stderr
# and stdout the check captured in $T/stderr and $T/stdout, as "#" lines.
#
#   expect NAME CMD...                   CMD succeeds
#   refuse [-E] NAME STATUS TEXT OUT CMD...
#                                        CMD fails as it should (see below)
#   same_bytes SMALL NAME ARGS...        weld ARGS gives one file for any -j
#                                        and --max-memory (SMALL, 64M, 1G)
#   ok NAME / not_ok NAME / skip NAME    record a result worked out by hand
#   summary                              the totals; last line of a script
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WELD=${WELD:-$ROOT/weld}
case $WELD in
*/*) WELD=$(cd "$(dirname "$WELD")" && pwd)/$(basename "$WELD") ;;
esac
MKMODEL=${MKMODEL:-$ROOT/build/mkmodel}
case $MKMODEL in
/*) ;;
*) MKMODEL=$(pwd)/$MKMODEL ;;
esac
PYTHON=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/weld-$(basename "$0" .sh)-XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
pass=0
fail=0
skipped=0

# The captured output belongs to one check: forget it once reported.
forget_output() {
	rm -f "$T/stdout" "$T/stderr"
}

ok() {
	pass=$((pass + 1))
	echo "ok - $1"
	forget_output
}

not_ok() {
	fail=$((fail + 1))
	echo "not ok - $1"
	sed 's/^/#   /' "$T/stderr" "$T/stdout" 2>/dev/null | head -20
	forget_output
}

# skip NAME: a check that cannot run here; never counted as passed
skip() {
	skipped=$((skipped + 1))
	echo "skip - $1"
	forget_output
}

# expect NAME CMD...: CMD (a command or a shell function) exits 0
expect() {
	_name=$1
	shift
	if "$@" >"$T/stdout" 2>"$T/stderr"; then ok "$_name"; else not_ok "$_name"; fi
}

# refuse [-E] NAME STATUS TEXT OUT CMD...: CMD exits with STATUS and says
# TEXT on stderr (a fixed string; with -E an extended regular expression);
# an error (STATUS 1) is one line. OUT is the output CMD must not write: if
# it did not exist before, it does not exist after, and no temporary folder
# .weld-tmp-* is left in OUT's folder ("-" for a command that writes nothing).
refuse() {
	_grep=-F
	if [ "$1" = -E ]; then
		_grep=-E
		shift
	fi
	_name=$1 _want=$2 _text=$3 _out=$4
	shift 4
	_existed=false
	[ "$_out" != - ] && [ -e "$_out" ] && _existed=true
	case $- in *e*) _errexit=true ;; *) _errexit=false ;; esac
	set +e
	"$@" >"$T/stdout" 2>"$T/stderr"
	_rc=$?
	if $_errexit; then set -e; fi
	if [ "$_rc" -ne "$_want" ]; then
		echo "exit status $_rc, expected $_want" >>"$T/stderr"
		not_ok "$_name"
	elif ! grep -q "$_grep" -- "$_text" "$T/stderr"; then
		echo "stderr lacks: $_text" >>"$T/stderr"
		not_ok "$_name"
	elif [ "$_want" = 1 ] && [ "$(wc -l <"$T/stderr")" -ne 1 ]; then
		echo "the error is not one line" >>"$T/stderr"
		not_ok "$_name"
	elif [ "$_out" != - ] && ! $_existed && [ -e "$_out" ]; then
		echo "'$_out' was created" >>"$T/stderr"
		not_ok "$_name"
	elif [ "$_out" != - ] && ls -d "$(dirname "$_out")"/.weld-tmp-* >/dev/null 2>&1; then
		echo "a temporary folder '$(dirname "$_out")/.weld-tmp-*' was left" >>"$T/stderr"
		not_ok "$_name"
	else
		ok "$_name"
	fi
}

# same_bytes SMALL NAME ARGS...: weld ARGS (a merge, without -o) writes the
# same model.safetensors with -j 1 --max-memory SMALL, -j 2 --max-memory 1G
# and -j 3 --max-memory 64M (DESIGN 3: the bytes never depend on them)
same_bytes() {
	_small=$1 _name=$2
	shift 2
	if ! "$WELD" "$@" -q -j 1 --max-memory "$_small" -o "$T/sb1" 2>"$T/stderr" ||
	   ! "$WELD" "$@" -q -j 2 --max-memory 1G -o "$T/sb2" 2>>"$T/stderr" ||
	   ! "$WELD" "$@" -q -j 3 --max-memory 64M -o "$T/sb3" 2>>"$T/stderr"; then
		not_ok "$_name ran"
	elif cmp -s "$T/sb1/model.safetensors" "$T/sb2/model.safetensors" &&
	     cmp -s "$T/sb1/model.safetensors" "$T/sb3/model.safetensors"; then
		ok "$_name: same file for -j 1/2/3 and --max-memory $_small/64M/1G"
	else
		not_ok "$_name: outputs differ between -j / --max-memory"
	fi
	rm -rf "$T/sb1" "$T/sb2" "$T/sb3"
}

# same_tensors A B: models A and B hold the same tensors, names, dtypes and
# stored bytes (read by tests/ref's reader, not by weld), whatever their
# files, shards and metadata
same_tensors() {
	"$PYTHON" - "$1" "$2" "$ROOT/tests/ref" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import safetensors_io as stio
a, b = (stio.model_index(p) for p in sys.argv[1:3])
if set(a) != set(b):
    sys.exit("same_tensors: other names: %s vs %s" % (sorted(a), sorted(b)))
for n in a:
    if a[n].dtype != b[n].dtype or stio.read_raw(a[n]).tobytes() != stio.read_raw(b[n]).tobytes():
        sys.exit("same_tensors: tensor %s differs" % n)
PY
}

# differ A B: A and B do not hold the same tensors (quietly)
differ() {
	! same_tensors "$1" "$2" 2>/dev/null
}

# bytes_read OUT ARGS...: the bytes `weld ARGS` read over all its passes
# (its --json summary), the output in OUT
bytes_read() {
	_o=$1
	shift
	"$WELD" "$@" -q -f --json -o "$_o" 2>>"$T/stderr" |
		sed -n 's/.*"bytes_read":\([0-9]*\).*/\1/p'
}

# fixture_py DIR: run the Python script on standard input with DIR as
# sys.argv[1], after os, sys, numpy (np) and tests/ref's safetensors_io
# (stio) are imported: the preamble of every script that writes a fixture
fixture_py() {
	{
		printf 'import os, sys\nsys.path.insert(0, %s)\n' "'$ROOT/tests/ref'"
		printf 'import numpy as np\nimport safetensors_io as stio\n'
		cat
	} | "$PYTHON" - "$1"
}

summary() {
	echo "$pass passed, $fail failed, $skipped skipped"
	[ "$fail" -eq 0 ]
}
