#!/bin/sh
# Compare weld's merge commands with the NumPy reference implementation.
# WELD names the binary (default ./weld); extra arguments go to check_ref.py
# (--filter TEXT, --keep, --list). Prints one line per case and
# "N passed, M failed"; exits non-zero if any case failed.
set -eu
PYTHON=${PYTHON:-/usr/bin/python3}
here=$(dirname "$0")
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "check_ref: installing python3-numpy" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-numpy >&2
	else
		echo "check_ref: needs python3-numpy (apt-get install python3-numpy)" >&2
		exit 1
	fi
fi
exec "$PYTHON" "$here/check_ref.py" --weld "${WELD:-./weld}" "$@"
