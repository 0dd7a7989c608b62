#!/bin/sh
# Run each cmocka test binary given on the command line; fail if any fails.
status=0
for t in "$@"; do
	"$t" || status=1
done
exit $status
