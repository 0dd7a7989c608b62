#!/bin/sh
# The man pages: one per command, they render without warnings, they name
# every option that 'weld <command> -h' prints, and the command lines of
# their EXAMPLES run on small generated models.
. "$(dirname "$0")/harness.sh"
MAN=$ROOT/man

# Pages whose EXAMPLES this test runs: their model names are the fixtures
# made below. (weld-run.1, weld-plan.1 and weld-expert-merge.1 use recipes,
# statistics files and MoE checkpoints this test does not build.)
RUN_EXAMPLES="weld weld-average weld-task-arithmetic weld-ties weld-dare
weld-breadcrumbs weld-consensus weld-della weld-pcb weld-sce weld-arcee-fusion weld-inspect weld-convert weld-verify
weld-extract-lora
weld-diff weld-help weld-join weld-nearswap weld-ram weld-model-stock
weld-nuslerp weld-multislerp weld-karcher weld-tsv-m weld-iso-c weld-iso-cts"

# src PAGE: the page's text with roff escapes for '-', '\' and fonts undone
src() {
	sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\-/-/g' -e 's/\\e/\\/g' \
	    -e 's/\\&//g' -e "s/\\\\(aq/'/g" "$1"
}

# The commands, from the table 'weld help' prints.
"$WELD" help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' >"$T/commands"
expect "weld help lists the commands" test -s "$T/commands"

# 1. every cmd/cmd_*.c, and every command weld lists, has its page
for f in "$ROOT"/cmd/cmd_*.c; do
	c=$(basename "$f" .c | sed -e 's/^cmd_//' -e 's/_/-/g')
	expect "cmd/$(basename "$f") has man/weld-$c.1" test -f "$MAN/weld-$c.1"
done
expect "man/weld.1 exists" test -f "$MAN/weld.1"
src "$MAN/weld.1" >"$T/weld1" 2>/dev/null
while read -r c; do
	expect "command '$c' has man/weld-$c.1" test -f "$MAN/weld-$c.1"
	expect "weld.1 lists '$c' and refers to weld-$c(1)" \
		sh -c "grep -qxF '.B $c' '$T/weld1' && grep -qF '.BR weld-$c (1)' '$T/weld1'"
done <"$T/commands"

# 2. every page renders without a warning (man runs tbl and the like when a
# page asks for them; groff is the fallback)
if command -v man >/dev/null 2>&1; then
	render() { MAN_DISABLE_SECCOMP=1 man --warnings=w -l "$1"; }
	renderer=man
elif command -v groff >/dev/null 2>&1; then
	render() { groff -man -t -Tutf8 -ww "$1"; }
	renderer=groff
else
	renderer=""
fi
for p in "$MAN"/*.1; do
	n=$(basename "$p")
	if [ -z "$renderer" ]; then
		skip "$n renders without warnings (neither man nor groff is installed)"
		continue
	fi
	if render "$p" >/dev/null 2>"$T/stderr" && ! [ -s "$T/stderr" ]; then
		ok "$n renders without warnings"
	else
		not_ok "$n renders without warnings"
	fi
done

# 3. the sections every page of this set has
for n in $RUN_EXAMPLES; do
	p=$MAN/$n.1
	[ -f "$p" ] || continue
	miss=""
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" ENVIRONMENT EXAMPLES "SEE ALSO"; do
		grep -qE "^\\.SH \"?$s\"?\$" "$p" || miss="$miss [$s]"
	done
	if head -1 "$p" | grep -q '^\.TH [A-Z-]* 1 ' && [ -z "$miss" ]; then
		ok "$n.1: .TH in section 1 and the usual sections"
	else
		not_ok "$n.1: sections missing:${miss:- .TH}"
	fi
done

# 4. every option of 'weld <command> -h' appears in the command's page
while read -r c; do
	p=$MAN/weld-$c.1
	[ -f "$p" ] || continue
	if [ "$c" = help ]; then
		# 'weld help' takes no option: its usage is the list of commands
		"$WELD" help >"$T/usage" 2>&1
	else
		"$WELD" "$c" -h >"$T/usage" 2>&1
	fi
	src "$p" >"$T/page"
	missing=""
	for o in $(grep -oE -- '(^|[] [(/|,])--?[a-zA-Z][a-zA-Z0-9-]*' "$T/usage" |
		   sed 's/^[^-]*//' | sort -u); do
		grep -qE -- "(^|[^a-zA-Z0-9-])$o([^a-zA-Z0-9-]|\$)" "$T/page" || missing="$missing $o"
	done
	if [ -z "$missing" ]; then
		ok "weld-$c.1 names every option of 'weld $c -h'"
	else
		not_ok "weld-$c.1 lacks:$missing"
	fi
done <"$T/commands"

# 5. the EXAMPLES run. Fixtures under the names the pages use; each page's
# examples run in order in a folder of their own, with 'weld' on the PATH.
F=$T/fix
mkdir -p "$F" "$T/bin"
ln -s "$WELD" "$T/bin/weld"
G="--layers 2 --hidden 64 --inter 96 --vocab 128 --int"
"$MKMODEL" "$F/llama-base" $G >/dev/null
"$MKMODEL" "$F/llama-math" $G --seed 1 --noise 0.5 >/dev/null
"$MKMODEL" "$F/llama-code" $G --seed 2 --noise 0.5 >/dev/null
"$MKMODEL" "$F/llama-chat" $G --seed 3 --noise 0.5 >/dev/null
"$MKMODEL" "$F/v2:final" $G --seed 4 --noise 0.5 >/dev/null
cp "$ROOT/tests/data/torch/basic.bin" "$F/pytorch_model.bin"
cp -r "$ROOT/tests/data/torch/sharded" "$F/torch-shards"

# a failure anywhere in a pipeline fails the example, where the shell can
if command -v bash >/dev/null 2>&1; then
	exsh() { bash -o pipefail -c "$1"; }
else
	exsh() { sh -c "$1"; }
fi

# examples PAGE: the command lines of the EXAMPLES section that start with
# 'weld ', continuation lines joined, one per line
examples() {
	src "$1" | awk '
		/^\.SH / { inex = ($0 ~ /^\.SH "?EXAMPLES"?$/); next }
		!inex || /^\./ { next }
		{
			line = cont ? cont " " $0 : $0
			if (line ~ /\\$/) { sub(/[ \t]*\\$/, "", line); cont = line; next }
			cont = ""
			gsub(/[ \t]+/, " ", line)
			sub(/^ /, "", line)
			if (line ~ /^weld /) print line
		}'
}

for n in $RUN_EXAMPLES; do
	p=$MAN/$n.1
	if ! [ -f "$p" ]; then
		not_ok "$n.1 exists (its examples cannot run)"
		continue
	fi
	d=$T/ex/$n
	mkdir -p "$d"
	for m in "$F"/*; do ln -s "$m" "$d/$(basename "$m")"; done
	examples "$p" >"$T/cmds"
	if ! [ -s "$T/cmds" ]; then
		not_ok "$n.1 has example command lines"
		continue
	fi
	while IFS= read -r line; do
		if (cd "$d" && PATH="$T/bin:$PATH" exsh "$line") >"$T/stdout" 2>"$T/stderr" </dev/null; then
			ok "$n.1 example: $line"
		else
			not_ok "$n.1 example: $line"
		fi
	done <"$T/cmds"
done
for n in weld-run weld-plan weld-expert-merge; do
	printf '# %s.1: examples not run here (need recipes, statistics or MoE models)\n' "$n"
done
summary
