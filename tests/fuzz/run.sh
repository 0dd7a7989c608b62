#!/bin/sh
# Build every libFuzzer target tests/fuzz/fuzz_<name>.c with clang
# (-fsanitize=fuzzer,address,undefined) against the library sources, then
# run each for FUZZ_SECONDS (default 60) seconds, seeded from
# tests/fuzz/corpus_<name>/ when that folder exists. New inputs go to
# build-fuzz/corpus_<name>/, crash reproducers to build-fuzz/. Exits 1 if
# any target fails to build or finds a crash. Called by `make fuzz`.
# FUZZ_SECONDS=0 only builds the targets and runs each seed once.
#
#   FUZZ_SECONDS=600 sh tests/fuzz/run.sh            # all targets
#   sh tests/fuzz/run.sh safetensors                  # only fuzz_safetensors.c
set -u
cd "$(dirname "$0")/../.." || exit 1

SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=${FUZZ_BUILD:-build-fuzz}
CLANG=${FUZZ_CC:-}

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

# A tiny target: does this clang link libFuzzer with ASan and UBSan?
probe() {
	printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' |
		"$1" -x c - -fsanitize=fuzzer,address,undefined -o "$OUT/probe" 2>/dev/null
}

find_clang() {
	for c in $CLANG clang clang-14 clang-15 clang-16 clang-17 clang-18 clang-19; do
		if command -v "$c" >/dev/null 2>&1 && probe "$c"; then
			CLANG=$c
			return 0
		fi
	done
	return 1
}

mkdir -p "$OUT" || exit 1
if ! find_clang; then
	echo "fuzz: installing clang libclang-rt-14-dev"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq &&
		$SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev ||
		{ echo "fuzz: apt-get install failed" >&2; exit 1; }
	find_clang || { echo "fuzz: no clang that can build libFuzzer targets" >&2; exit 1; }
fi

PKGS=$(make -s --no-print-directory print-pkgs)
PKG_CFLAGS=$(pkg-config --cflags $PKGS 2>/dev/null)
PKG_LIBS=$(pkg-config --libs $PKGS 2>/dev/null || echo -lzip -lcjson -lxxhash -lz -lopenblas -llapacke)
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fno-fast-math -ffp-contract=off
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -Ilib/common -Iformats -Ilib -Ilib/engine -Ilib/recipe -Ilib/moe"

# OpenMP if this clang has libomp; otherwise the library is built serial
# and only the objects the targets use are linked (from an archive), so the
# omp_* calls of the merge engine never need resolving.
OMP=""
if printf '#include <omp.h>\nint main(void){return omp_get_num_procs() < 0;}\n' |
	"$CLANG" -x c - -fopenmp -o "$OUT/probe" 2>/dev/null; then
	OMP="-fopenmp"
fi

echo "fuzz: building the library with $CLANG ${OMP:-(no OpenMP)}"
mkdir -p "$OUT/obj" || exit 1
rm -f "$OUT/libweld-fuzz.a"
objs=""
for src in lib/*.c lib/*/*.c formats/*.c; do
	obj="$OUT/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
	if ! "$CLANG" $CFLAGS $OMP $PKG_CFLAGS -c -o "$obj" "$src" 2>"$obj.log"; then
		if [ -z "$OMP" ] && grep -q omp "$src"; then
			echo "fuzz: skipping $src (needs OpenMP)"
			continue
		fi
		cat "$obj.log" >&2
		echo "fuzz: cannot compile $src" >&2
		exit 1
	fi
	objs="$objs $obj"
done
ar rcs "$OUT/libweld-fuzz.a" $objs || exit 1

status=0
ran=0
for src in tests/fuzz/fuzz_*.c; do
	[ -f "$src" ] || continue
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	if [ $# -gt 0 ]; then
		case " $* " in *" $name "*) ;; *) continue ;; esac
	fi
	bin="$OUT/fuzz_$name"
	echo "fuzz: building $bin"
	if ! "$CLANG" $CFLAGS $OMP $PKG_CFLAGS -fsanitize=fuzzer -o "$bin" "$src" \
		"$OUT/libweld-fuzz.a" $PKG_LIBS -lm $OMP; then
		echo "fuzz: cannot build $src" >&2
		status=1
		continue
	fi
	work="$OUT/corpus_$name"
	seeds="tests/fuzz/corpus_$name"
	mkdir -p "$work" || exit 1
	[ -d "$seeds" ] || seeds=""
	if [ "$SECONDS_EACH" = 0 ]; then
		limit="-runs=0"
		echo "fuzz: running the seeds of fuzz_$name once (seeds: ${seeds:-none})"
	else
		limit="-max_total_time=$SECONDS_EACH"
		echo "fuzz: running fuzz_$name for $SECONDS_EACH s (seeds: ${seeds:-none})"
	fi
	if "$bin" "$limit" -timeout=20 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$OUT/fuzz_$name-" \
		"$work" $seeds >"$OUT/fuzz_$name.log" 2>&1; then
		grep -E '^stat::number_of_executed_units|^Done ' "$OUT/fuzz_$name.log"
		echo "fuzz: fuzz_$name: no crash"
	else
		tail -n 60 "$OUT/fuzz_$name.log" >&2
		echo "fuzz: fuzz_$name: FAILED (log $OUT/fuzz_$name.log; reproducers $OUT/fuzz_$name-*)" >&2
		status=1
	fi
	ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "fuzz: no target ran" >&2; status=1; }
exit $status
