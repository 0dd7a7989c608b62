#!/bin/sh
# check_layers.sh - fail on an #include that points up the layering.
#
# weld's source is layered; a file may include headers of its own layer
# and of the layers below it, never above:
#
#   0 lib/common/        errors, dtypes, hashing, sizes, file helpers
#   1 formats/           one reader/writer per file format, the model API
#   2 lib/engine/, lib/*.{c,h} (but weld.h)
#                        the method table, the planner and the streaming engine
#   3 lib/recipe/, lib/moe/
#                        recipes and expert merging, built on the engine
#   4 lib/weld.h         the umbrella header, for commands and tests
#   5 cmd/               the command-line front end
#
# An include is resolved as the compiler does (the including file's folder,
# then the Makefile's include folders in order); one that names a project
# header that does not exist is an error too. Prints each bad edge and
# exits 1 if there is any. Usage: sh tests/check_layers.sh (from anywhere).
set -u
cd "$(dirname "$0")/.." || exit 1
DIRS="lib/common formats lib lib/engine lib/recipe lib/moe"

layer() {
	case $1 in
	lib/common/*) echo 0 ;;
	formats/*) echo 1 ;;
	lib/weld.h) echo 4 ;;
	lib/recipe/* | lib/moe/*) echo 3 ;;
	lib/engine/* | lib/*) echo 2 ;;
	cmd/*) echo 5 ;;
	*) echo 9 ;;
	esac
}

resolve() { # FILE NAME: the path an include of NAME from FILE reaches
	for d in "$(dirname "$1")" $DIRS; do
		if [ -f "$d/$2" ]; then
			# normalise a/b/../c
			(cd "$(dirname "$d/$2")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$2")") |
				sed "s#^$(pwd -P)/##"
			return 0
		fi
	done
	return 1
}

bad=0 edges=0
for f in $(find lib formats cmd -name '*.[ch]' | sort); do
	lf=$(layer "$f")
	for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
		edges=$((edges + 1))
		if ! to=$(resolve "$f" "$inc"); then
			echo "$f: includes \"$inc\", which is not a header of the project"
			bad=$((bad + 1))
			continue
		fi
		lt=$(layer "$to")
		if [ "$lt" -gt "$lf" ]; then
			echo "$f (layer $lf) includes $to (layer $lt): an upward edge"
			bad=$((bad + 1))
		fi
	done
done
if [ "$bad" -ne 0 ]; then
	echo "check-layers: $bad bad include(s) of $edges"
	exit 1
fi
echo "check-layers: $edges includes, none upward"
