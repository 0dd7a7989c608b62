#!/bin/sh
# LoRA rows of the benchmark (run.sh calls this when WELD_BENCH_METHODS has
# "lora"; it also runs alone). On the bench family ($BENCH_DIR/family-SIZE,
# made by gen_family.py):
#  1. ties of ft2, ft3 and base+ADAPTER (a rank-16 adapter extracted from
#     ft1) against the same ties with the adapter merged into a full model
#     first (weld convert base+ADAPTER): the cost of applying an adapter
#     while streaming (target: at most 1.5x);
#  2. extract-lora of ft1 at rank 64, exact (LAPACK dgesdd) against --fast
#     (target: at least 10x faster), and the time of the SVDs alone
#     (lapack_seconds of --json) against the whole command. The exact SVD
#     of the full family takes minutes per layer, so these rows factor the
#     modules of the first LORA_LAYERS layers (default 2: -i 'layers\.(0|1)\.',
#     14 matrices of the family's shapes, 2048 x 2048 to 5632 x 2048; the
#     embeddings and the head are saved whole as always), at -j 1, where the
#     SVDs' time (summed over modules) and the command's wall time compare.
# Environment: WELD, BENCH_DIR, BENCH_SIZE, BENCH_THREADS, PYTHON as in
# run.sh; BENCH_RESULT, a file the rows are appended to (default: none).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
WELD=${WELD:-./weld}
BENCH_DIR=${BENCH_DIR:-/tmp/weld-bench}
BENCH_SIZE=${BENCH_SIZE:-full}
THREADS=${BENCH_THREADS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
RESULT=${BENCH_RESULT:-/dev/null}
fam=$BENCH_DIR/family-$BENCH_SIZE
work=$BENCH_DIR/lora-$BENCH_SIZE
"$PYTHON" "$here/gen_family.py" "$fam" --size "$BENCH_SIZE" >&2
rm -rf "$work"
mkdir -p "$work"

# timed LOG CMD...: WALL and CPU (user + system) seconds and RSS (MB) of
# CMD, after a sync. On a shared machine the CPU time is the steadier
# figure: the ratios are given for both.
timed() {
	log=$1
	shift
	sync
	/usr/bin/time -v -o "$log.time" "$@" >"$log.out" 2>"$log.err"
	WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$log.time" |
		awk -F: '{ if (NF == 3) printf "%.2f", $1 * 3600 + $2 * 60 + $3;
		           else printf "%.2f", $1 * 60 + $2 }')
	RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%d", $2 / 1024 }' "$log.time")
	CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$log.time")
}

# ratio A B: A / B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 0.01) }'; }

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }

B=$fam/base
"$WELD" extract-lora "$fam/ft1" --base "$B" -o "$work/lora16" --max-rank 16 --fast -q -j "$THREADS"
"$WELD" convert "$B+$work/lora16" -o "$work/full16" -q -j "$THREADS"
cat "$B"/*.safetensors "$work/full16"/*.safetensors "$fam"/ft2/*.safetensors "$fam"/ft3/*.safetensors >/dev/null
best_full="" best_lora="" cpu_full="" cpu_lora="" rss_full=0 rss_lora=0
for i in 1 2 3; do
	rm -rf "$work/ties"
	timed "$work/ties-full" "$WELD" ties --base "$B" -o "$work/ties" --max-memory 256M -q -j "$THREADS" \
		"$fam/ft2" "$fam/ft3" "$work/full16"
	best_full=$(awk -v a="$best_full" -v b="$WALL" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }')
	cpu_full=$(awk -v a="$cpu_full" -v b="$CPU" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }')
	rss_full=$RSS
	rm -rf "$work/ties"
	timed "$work/ties-lora" "$WELD" ties --base "$B" -o "$work/ties" --max-memory 256M -q -j "$THREADS" \
		"$fam/ft2" "$fam/ft3" "$B+$work/lora16"
	best_lora=$(awk -v a="$best_lora" -v b="$WALL" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }')
	cpu_lora=$(awk -v a="$cpu_lora" -v b="$CPU" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }')
	rss_lora=$RSS
done
rm -rf "$work/ties"
out "lora: ties of 3 models, one a full model:   $best_full s wall, $cpu_full s CPU, peak $rss_full MB (--max-memory 256M, -j $THREADS)"
out "lora: the same with base+ADAPTER (rank 16): $best_lora s wall, $cpu_lora s CPU, peak $rss_lora MB: $(ratio "$best_lora" "$best_full")x wall, $(ratio "$cpu_lora" "$cpu_full")x CPU (target <= 1.5x)"

LORA_LAYERS=${LORA_LAYERS:-2}
only="layers\.($(seq -s '|' 0 $((LORA_LAYERS - 1))))\."
timed "$work/extract-exact" "$WELD" extract-lora "$fam/ft1" --base "$B" -o "$work/x64" --max-rank 64 --json -q -j 1 -i "$only"
exact=$WALL exact_cpu=$CPU rss_exact=$RSS
lapack=$(sed -n 's/.*"lapack_seconds":\([0-9.]*\).*/\1/p' "$work/extract-exact.out")
whole=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$work/extract-exact.out")
timed "$work/extract-fast" "$WELD" extract-lora "$fam/ft1" --base "$B" -o "$work/f64" --max-rank 64 --fast --json -q -j 1 -i "$only"
bound=$(sed -n 's/.*"memory_bound":\([0-9]*\).*/\1/p' "$work/extract-exact.out")
holds=$(awk -v r="$rss_exact" -v b="$bound" 'BEGIN { print (r * 1048576 <= b) ? "yes" : "NO" }')
out "lora: extract-lora of $LORA_LAYERS layers (-i '$only', -j 1); exact: the plan's bound $(awk -v b="$bound" 'BEGIN { printf "%.0f", b / 1e6 }') MB, peak RSS $rss_exact MiB, holds: $holds"
out "lora: extract-lora rank 64, exact SVD: $exact s wall, $exact_cpu s CPU, peak $rss_exact MB; the SVDs (LAPACK) $lapack s of $whole s: whole command / SVDs $(ratio "$whole" "$lapack")x (target <= 1.3x)"
out "lora: extract-lora rank 64, --fast:    $WALL s wall, $CPU s CPU, peak $RSS MB: $(ratio "$exact" "$WALL")x faster wall, $(ratio "$exact_cpu" "$CPU")x CPU (target >= 10x)"
rm -rf "$work"
