#!/bin/sh
# Benchmark weld's merge methods against the I/O floor (cat of the inputs)
# and against the same merge done by PyTorch following mergekit's per-tensor
# code (torch_merge.py), on the same machine and thread count.
#
# Environment:
#   WELD                 binary to measure (default ./weld; nothing is built)
#   BENCH_DIR            work folder (default /tmp/weld-bench); the family is
#                        generated once under it and reused
#   BENCH_SIZE           full (4 x ~1 GB bf16, default) or small (4 x 5 MB)
#   FAMILY               what the deltas look like (tests/bench/gen_family.py
#                        --kind): gauss (default), zeros, few, heavytail,
#                        eight (eight fine-tunes), huge (one 1.25 GB tensor);
#                        make bench runs each in turn, one table each
#   WELD_BENCH_METHODS   methods to run (default: average task-arithmetic ties
#                        dare breadcrumbs consensus della della-inverse pcb
#                        sce arcee-fusion nearswap ram ramplus model-stock
#                        nuslerp multislerp karcher, then expert-merge on an 8-expert MoE made by
#                        tests/tools/mkmodel.c, then gguf: ties of four Q8_0
#                        GGUF models into Q8_0, these two with FAMILY gauss
#                        only; tsv-m and iso-c, and iso-cts when named, run
#                        in a table of their own on a smaller family (see
#                        below): time and peak RSS against the plan's memory
#                        bound, one matrix and -j matrices at once; then lora:
#                        tests/bench/lora.sh; these too with FAMILY gauss
#                        only); every method of the first table has a PyTorch
#                        row (mergekit's per-tensor code; pcb the authors'
#                        pcb-merging.py with the tensor as the unit), but
#                        della-inverse (della with weld's default rescale,
#                        which mergekit does not have) and the scoped rows
#                        (a method of the first table, one that selects, with
#                        @row or @model: ties@row runs ties --scope row;
#                        mergekit has tensor scope only), except
#                        on FAMILY huge (PyTorch would hold its 1.25 GB
#                        tensor in f32 for each of four inputs)
#   MKMODEL              that generator (make bench passes it)
#   BENCH_THREADS        threads for weld (-j) and torch (default: nproc)
#   BENCH_REPEAT         runs of each merge, weld and torch alike; the best
#                        time is reported, and the largest peak RSS (default 3)
#   BENCH_NO_TORCH=1     skip the PyTorch runs
#   BENCH_VERIFY=1       also compare weld's and torch's outputs where they
#                        must agree (average, task-arithmetic, consensus,
#                        pcb, nearswap, ram, ramplus, model-stock, nuslerp,
#                        multislerp, karcher): elements that differ, the
#                        largest difference and in steps of bf16
#   PYTHON               Python with numpy and torch (default /usr/bin/python3)
#   BENCH_OUT            folder the merged models are written to (default
#                        BENCH_DIR; /dev/shm takes the disk out of the timing)
#
# Shared machines are noisy: each timed run starts after a sync (no writeback
# left from the run before) with its inputs in the page cache, and every
# figure is the best of several runs.
# The I/O floor is measured in the same run: cat of the inputs to /dev/null,
# and separately the same plus writing one model-sized output (cp of the
# base into BENCH_OUT, then sync), since every merge also writes its output.
#
# Prints a table: method, weld wall s, weld user CPU s, GB/s of input, ratio
# to cat and to the read + write floor, torch wall s, speed-up of weld over
# torch, peak RSS of each (MB), with the load average before and after; the
# table is also saved to $BENCH_DIR/results-$FAMILY-$BENCH_SIZE.txt.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
WELD=${WELD:-./weld}
BENCH_DIR=${BENCH_DIR:-/tmp/weld-bench}
BENCH_SIZE=${BENCH_SIZE:-full}
FAMILY=${FAMILY:-gauss}
METHODS=${WELD_BENCH_METHODS:-"average task-arithmetic ties dare breadcrumbs consensus della della-inverse pcb sce arcee-fusion nearswap ram ramplus model-stock nuslerp multislerp karcher tsv-m iso-c"}
THREADS=${BENCH_THREADS:-$(nproc)}
REPEAT=${BENCH_REPEAT:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
NO_TORCH=${BENCH_NO_TORCH:-0}
VERIFY=${BENCH_VERIFY:-0}
BENCH_OUT=${BENCH_OUT:-}

say() { printf '%s\n' "bench: $*" >&2; }

case $WELD in
/*) ;;
*) WELD=$(pwd)/$WELD ;;
esac
if [ ! -x "$WELD" ]; then
	say "no weld binary at $WELD (run make first)"
	exit 1
fi
case $BENCH_SIZE in
full|small) ;;
*) say "BENCH_SIZE must be full or small"; exit 2 ;;
esac
case $FAMILY in
gauss|zeros|few|heavytail|eight|huge) ;;
*) say "FAMILY must be gauss, zeros, few, heavytail, eight or huge"; exit 2 ;;
esac
[ "$FAMILY" = huge ] && NO_TORCH=1

# tools: GNU time, and numpy/torch for the family and the baseline
need=""
[ -x /usr/bin/time ] || need="$need time"
"$PYTHON" -c 'import numpy' 2>/dev/null || need="$need python3-numpy"
if [ "$NO_TORCH" != 1 ]; then
	"$PYTHON" -c 'import torch' 2>/dev/null || need="$need python3-torch"
fi
if [ -n "$need" ]; then
	say "installing:$need"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >&2
fi

mkdir -p "$BENCH_DIR"
if [ "$FAMILY" = gauss ]; then
	fam=$BENCH_DIR/family-$BENCH_SIZE
else
	fam=$BENCH_DIR/family-$FAMILY-$BENCH_SIZE
fi
logs=$BENCH_DIR/logs-$FAMILY
mkdir -p "$logs"
"$PYTHON" "$here/gen_family.py" "$fam" --size "$BENCH_SIZE" --kind "$FAMILY" >&2

B=$fam/base
MODELS=$(ls -d "$fam"/ft? | tr '\n' ' ')
MODELS=${MODELS% }
n_models=$(($(echo $MODELS | wc -w) + 1))
files=$(for d in "$B" $MODELS; do ls "$d"/*.safetensors; done)
input_bytes=$(cat $files | wc -c)

# run LOG CMD...: run CMD under /usr/bin/time -v; sets WALL (s), USER (s),
# RSS (MB), ST
run() {
	log=$1
	shift
	ST=0
	/usr/bin/time -v -o "$log.time" "$@" >"$log.out" 2>"$log.err" || ST=$?
	WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$log.time" |
		awk -F: '{ if (NF == 3) printf "%.2f", $1 * 3600 + $2 * 60 + $3;
		           else printf "%.2f", $1 * 60 + $2 }')
	RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%d", $2 / 1024 }' "$log.time")
	USER=$(awk -F': ' '/User time \(seconds\)/ { print $2 }' "$log.time")
}

# best OUT LOG CMD...: BENCH_REPEAT runs of CMD, each after removing OUT, a
# sync (this disk discards freed blocks: a deleted output costs the next run
# otherwise), and a cat of the inputs ($warm) so that they are in the page
# cache whatever ran before; WALL is the best time, USER the user CPU time
# of that run, RSS the largest peak, ST the first failure
best() {
	bout=$1
	blog=$2
	shift 2
	bw=""
	bu=""
	bm=0
	bst=0
	i=0
	while [ "$i" -lt "$REPEAT" ]; do
		rm -rf "$bout"
		sync
		cat $warm >/dev/null
		sync
		run "$blog" "$@"
		if [ "$ST" != 0 ]; then
			bst=$ST
			break
		fi
		if [ -z "$bw" ] || awk -v a="$bw" -v b="$WALL" 'BEGIN { exit !(b + 0 < a + 0) }'; then
			bw=$WALL
			bu=$USER
		fi
		bm=$(awk -v a="$bm" -v b="$RSS" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
		i=$((i + 1))
	done
	WALL=$bw
	USER=$bu
	RSS=$bm
	ST=$bst
}

warm=$files
# warm the page cache, then take the best of three cats as the I/O floor
cat $files >/dev/null
cat $files >/dev/null
cat_s=""
for i in 1 2 3; do
	run "$logs/cat" sh -c 'cat "$@" >/dev/null' sh $files
	cat_s=$(awk -v a="$cat_s" -v b="$WALL" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }')
done
# a floor of 0.00 s (tiny family) would make every ratio infinite
cat_s=$(awk -v c="$cat_s" 'BEGIN { if (c + 0 < 0.01) c = 0.01; print c }')
# writing one output: copy the base where the merges write, and flush it
OUT=${BENCH_OUT:-$BENCH_DIR}
mkdir -p "$OUT"
wr_s=""
for i in 1 2 3; do
	rm -rf "$OUT/floor-copy"
	sync
	run "$logs/write" sh -c 'cp -r "$1" "$2" && sync' sh "$B" "$OUT/floor-copy"
	wr_s=$(awk -v a="$wr_s" -v b="$WALL" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }')
done
rm -rf "$OUT/floor-copy"
floor_s=$(awk -v c="$cat_s" -v w="$wr_s" 'BEGIN { print c + w }')

weld_version=$("$WELD" --version 2>/dev/null | head -n 1 || true)
result=$BENCH_DIR/results-$FAMILY-$BENCH_SIZE.txt
{
	echo "weld bench: ${weld_version:-weld}, $FAMILY $BENCH_SIZE family ($fam), $(nproc) cores, $THREADS threads"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	awk -v b="$input_bytes" -v c="$cat_s" -v m="$n_models" 'BEGIN {
		printf "input: %d models, %.3f GB; cat of the inputs (page cache warm): %.2f s = %.2f GB/s\n",
		       m, b / 1e9, c, b / 1e9 / c }'
	echo "writing one output to $OUT (cp of the base + sync): $wr_s s; read + write floor: $floor_s s"
	echo "weld runs with --max-memory 256M -q -f -j $THREADS; torch with torch.set_num_threads($THREADS)"
	echo "each time is the best of $REPEAT runs, each run after a sync; RSS is the largest of them"
	echo
	printf '%-18s %8s %7s %7s %7s %7s %9s %9s %8s %9s\n' method "weld s" "user s" "GB/s" "x cat" "x floor" "torch s" "speed-up" "weld MB" "torch MB"
} | tee "$result"

for m in $METHODS; do
	case $m in
	*@row|*@model) scope=${m##*@} ;;
	*) scope= ;;
	esac
	case ${m%@*} in
	average)         wargs="average $B $MODELS";         targs="linear - $B $MODELS" ;;
	task-arithmetic) wargs="task-arithmetic --base $B $MODELS"; targs="task_arithmetic $B $MODELS" ;;
	ties)            wargs="ties --base $B --density 0.2 $MODELS"; targs="ties $B $MODELS --density 0.2" ;;
	dare)            wargs="dare --base $B --density 0.5 --rescale l1 --seed 0 $MODELS"
	                 targs="dare_linear $B $MODELS --density 0.5 --seed 0" ;;
	breadcrumbs)     wargs="breadcrumbs --base $B --density 0.9 --gamma 0.01 $MODELS"
	                 targs="breadcrumbs $B $MODELS --density 0.9 --gamma 0.01" ;;
	consensus)       wargs="consensus --base $B $MODELS"; targs="consensus $B $MODELS" ;;
	della)           wargs="della --base $B --density 0.5 --rescale l1 $MODELS"
	                 targs="della $B $MODELS --density 0.5" ;;
	della-inverse)   wargs="della --base $B --density 0.5 --rescale inverse $MODELS"
	                 targs="" ;;   # mergekit has only the l1 rescale
	pcb)             wargs="pcb --base $B --density 0.1 $MODELS"; targs="pcb $B $MODELS --density 0.1" ;;
	sce)             wargs="sce --base $B --select-topk 0.3 $MODELS"
	                 targs="sce $B $MODELS --select-topk 0.3" ;;
	arcee-fusion)    wargs="arcee-fusion --base $B $fam/ft1"; targs="arcee_fusion $B $fam/ft1" ;;
	nearswap)        wargs="nearswap --base $B --t 0.001 ${MODELS%% *}"
	                 targs="nearswap $B ${MODELS%% *} --t 0.001" ;;
	ram)             wargs="ram --base $B --epsilon 1e-4 $MODELS"; targs="ram $B $MODELS --epsilon 1e-4" ;;
	ramplus)         wargs="ram --plus --base $B --epsilon 1e-4 $MODELS"
	                 targs="ramplus_tl $B $MODELS --epsilon 1e-4" ;;
	model-stock)     wargs="model-stock --base $B $MODELS"; targs="model_stock $B $MODELS" ;;
	nuslerp)         wargs="nuslerp --base $B --weights 1,3 $(echo $MODELS | cut -d' ' -f1-2)"
	                 targs="nuslerp $B $(echo $MODELS | cut -d' ' -f1-2) --weights 1,3" ;;
	multislerp)      wargs="multislerp --base $B $MODELS"; targs="multislerp $B $MODELS" ;;
	karcher)         wargs="karcher $MODELS"; targs="karcher - $MODELS" ;;
	expert-merge|gguf) continue ;;   # after the loop: they need other models
	tsv-m|iso-c|iso-cts) continue ;; # after the loop: a table of their own
	*) say "unknown method $m"; continue ;;
	esac
	if [ -n "$scope" ]; then
		wargs="$wargs --scope $scope"
		targs=""
	fi
	wout=$OUT/out-weld-$m
	tout=$OUT/out-torch-$m
	rm -rf "$wout" "$tout"

	set -- $wargs
	cmd=$1
	shift
	best "$wout" "$logs/weld-$m" "$WELD" "$cmd" -o "$wout" --max-memory 256M -q -f -j "$THREADS" "$@"
	if [ "$ST" = 0 ]; then
		w_s=$WALL
		w_u=$USER
		w_mb=$RSS
	else
		w_s=failed
		w_u=-
		w_mb=-
		say "weld $m failed (exit $ST): $(head -n 1 "$logs/weld-$m.err")"
	fi

	t_s=-
	t_mb=-
	if [ "$NO_TORCH" != 1 ] && [ -n "$targs" ]; then
		set -- $targs
		tm=$1
		shift
		tb=$1
		shift
		best "$tout" "$logs/torch-$m" "$PYTHON" "$here/torch_merge.py" "$tm" "$tout" "$tb" "$@" --threads "$THREADS"
		if [ "$ST" = 0 ]; then
			t_s=$WALL
			t_mb=$RSS
		else
			t_s=failed
			say "torch $m failed (exit $ST): $(tail -n 1 "$logs/torch-$m.err")"
		fi
	fi

	if [ "$VERIFY" = 1 ] && [ "$w_s" != failed ] && [ "$t_s" != failed ] && [ "$t_s" != - ]; then
		case $m in
		average|task-arithmetic|consensus|pcb|nearswap|ram|ramplus|model-stock|nuslerp|multislerp|karcher)
			BENCH_REF="$here/../ref" "$PYTHON" - "$wout" "$tout" "$m" >&2 <<'EOF'
import sys, os
sys.path.insert(0, os.environ["BENCH_REF"])
import numpy as np, safetensors_io as st
a, b = st.model_index(sys.argv[1]), st.model_index(sys.argv[2])
worst, diff, total, ulps = 0.0, 0, 0, 0.0
for n in b:
    x, y = st.read_f32(a[n]), st.read_f32(b[n])
    diff += int(np.sum(x != y))
    total += x.size
    worst = max(worst, float(np.max(np.abs(x - y))) if x.size else 0.0)
    if x.size and b[n].dtype == "BF16":
        # the largest difference in steps of bf16 at the tensor's largest
        # value (a result near 0 from B + delta carries the error of B)
        top = max(float(np.max(np.abs(y))), 2.0 ** -133)
        step = 2.0 ** (np.floor(np.log2(top)) - 7)
        ulps = max(ulps, float(np.max(np.abs(x.astype(np.float64) - y))) / step)
print("bench: %s: weld vs torch: %d of %d elements differ, max |diff| %.3g, max %.3g bf16 steps of its tensor's largest value"
      % (sys.argv[3], diff, total, worst, ulps))
EOF
			;;
		esac
	fi
	rm -rf "$wout" "$tout"

	awk -v m="$m" -v ws="$w_s" -v wu="$w_u" -v ts="$t_s" -v wm="$w_mb" -v tmb="$t_mb" \
	    -v b="$input_bytes" -v c="$cat_s" -v f="$floor_s" 'BEGIN {
		if (ws == "failed") { gbs = "-"; xc = "-"; xf = "-"; su = "-" }
		else {
			s = ws + 0; if (s < 0.01) s = 0.01
			gbs = sprintf("%.2f", b / 1e9 / s); xc = sprintf("%.1f", s / c)
			xf = sprintf("%.1f", s / f)
			su = (ts == "-" || ts == "failed") ? "-" : sprintf("%.1fx", (ts + 0) / s)
		}
		printf "%-18s %8s %7s %7s %7s %7s %9s %9s %8s %9s\n", m, ws, wu, gbs, xc, xf, ts, su, wm, tmb
	}' | tee -a "$result"
done
# expert-merge works on one MoE checkpoint (made by tests/tools/mkmodel.c);
# there is no PyTorch baseline for it, only the floors of that model
MKMODEL=${MKMODEL:-$(pwd)/build/mkmodel}
[ "$FAMILY" = gauss ] || METHODS=""
case " $METHODS " in
*" expert-merge "*|*" average task-arithmetic ties dare breadcrumbs consensus "*|*" consensus della pcb sce arcee-fusion "*)
	if [ -x "$MKMODEL" ]; then
		moe=$BENCH_DIR/moe-$BENCH_SIZE
		if [ ! -f "$moe/config.json" ]; then
			if [ "$BENCH_SIZE" = full ]; then
				"$MKMODEL" "$moe" --experts 8 --layers 4 --hidden 1024 --inter 3584 --vocab 32000 --shard-size 500M
			else
				"$MKMODEL" "$moe" --experts 8 --layers 2 --hidden 64 --inter 96 --vocab 256
			fi
		fi
		mfiles=$(ls "$moe"/*.safetensors)
		mbytes=$(cat $mfiles | wc -c)
		warm=$mfiles
		cat $mfiles >/dev/null
		run "$logs/cat-moe" sh -c 'cat "$@" >/dev/null' sh $mfiles
		mcat=$(awk -v c="$WALL" 'BEGIN { if (c + 0 < 0.01) c = 0.01; print c }')
		best "$OUT/out-weld-moe" "$logs/weld-expert-merge" "$WELD" expert-merge "$moe" -o "$OUT/out-weld-moe" \
			--groups 4 --layout compact --max-memory 256M -q -f -j "$THREADS"
		if [ "$ST" = 0 ]; then
			awk -v ws="$WALL" -v wm="$RSS" -v b="$mbytes" -v c="$mcat" -v f="$(awk -v a="$mcat" -v w="$wr_s" 'BEGIN { print a + w / 2 }')" 'BEGIN {
				s = ws + 0; if (s < 0.01) s = 0.01
				printf "%-18s %8s %7s %7.2f %7.1f %7.1f %9s %9s %8s %9s\n", "expert-merge", ws, "-",
				       b / 1e9 / s, s / c, s / f, "-", "-", wm, "-" }' | tee -a "$result"
			echo "(expert-merge: one $(awk -v b="$mbytes" 'BEGIN { printf "%.2f", b / 1e9 }') GB 8-expert MoE to 4 experts per layer, --layout compact; its floor is cat of that model plus writing half a model)" | tee -a "$result"
		else
			say "weld expert-merge failed (exit $ST): $(head -n 1 "$logs/weld-expert-merge.err")"
		fi
		rm -rf "$OUT/out-weld-moe"
	fi
	;;
esac
# GGUF: ties of four Q8_0 GGUF models (tests/cli/gguf_fixture.py) into a
# Q8_0 GGUF file; its floor is cat of those inputs plus writing one of them
case " $METHODS " in
*" gguf "*|*" average task-arithmetic ties dare breadcrumbs consensus "*)
	gfam=$BENCH_DIR/gguf-$BENCH_SIZE
	"$PYTHON" "$here/../cli/gguf_fixture.py" --family "$gfam" "$BENCH_SIZE" >&2
	gfiles="$gfam/base.gguf $gfam/ft1.gguf $gfam/ft2.gguf $gfam/ft3.gguf"
	gbytes=$(cat $gfiles | wc -c)
	warm=$gfiles
	cat $gfiles >/dev/null
	gcat=""
	gwr=""
	for i in 1 2 3; do
		run "$logs/cat-gguf" sh -c 'cat "$@" >/dev/null' sh $gfiles
		gcat=$(awk -v a="$gcat" -v b="$WALL" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }')
		rm -f "$OUT/floor-copy.gguf"
		sync
		run "$logs/write-gguf" sh -c 'cp "$1" "$2" && sync' sh "$gfam/base.gguf" "$OUT/floor-copy.gguf"
		gwr=$(awk -v a="$gwr" -v b="$WALL" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }')
	done
	rm -f "$OUT/floor-copy.gguf"
	gcat=$(awk -v c="$gcat" 'BEGIN { if (c + 0 < 0.01) c = 0.01; print c }')
	best "$OUT/out-weld.gguf" "$logs/weld-gguf" "$WELD" ties --base "$gfam/base.gguf" --density 0.2 \
		"$gfam/ft1.gguf" "$gfam/ft2.gguf" "$gfam/ft3.gguf" -o "$OUT/out-weld.gguf" \
		--max-memory 256M -q -f -j "$THREADS"
	if [ "$ST" = 0 ]; then
		awk -v ws="$WALL" -v wm="$RSS" -v b="$gbytes" -v c="$gcat" -v f="$(awk -v a="$gcat" -v w="$gwr" 'BEGIN { print a + w }')" 'BEGIN {
			s = ws + 0; if (s < 0.01) s = 0.01
			printf "%-18s %8s %7s %7.2f %7.1f %7.1f %9s %9s %8s %9s\n", "ties gguf q8_0", ws, "-",
			       b / 1e9 / s, s / c, s / f, "-", "-", wm, "-" }' | tee -a "$result"
		echo "(ties gguf q8_0: 4 Q8_0 GGUF models, $(awk -v b="$gbytes" 'BEGIN { printf "%.2f", b / 1e9 }') GB, decoded, merged and written as Q8_0; its floor is cat of them ($gcat s) plus writing one ($gwr s))" | tee -a "$result"
	else
		say "weld ties on GGUF failed (exit $ST): $(head -n 1 "$logs/weld-gguf.err")"
	fi
	rm -f "$OUT/out-weld.gguf"
	;;
esac
# The SVD methods decompose every 2-D tensor whole, in double: on the full
# bench family (2048 x 5632 MLP matrices, a 32000 x 2048 embedding) a run
# takes about 10 minutes per layer, so their rows use a family of their own,
# made by tests/tools/mkmodel.c: hidden 1024, intermediate 2816, 2 layers,
# vocabulary 8000, bf16 (81 MB per model, embedding and head 8000 x 1024
# included), a base and three fine-tunes (--noise 0.1); small: hidden 128,
# intermediate 352. Each method runs twice: in the smallest budget the plan
# accepts (at least 256M), where one matrix is decomposed at a time, and in
# a budget that holds -j matrices at once (the smallest plus -j - 1 times
# the largest matrix). A row: wall and CPU seconds, peak RSS, the plan's
# bound (weld plan --json memory_bytes: the buffers and every matrix in
# flight), the largest matrix's bytes, the matrices at once, the budget and
# whether the peak held under the bound; the outputs of the two runs must
# be the same bytes.
svd_header=false
svd=$BENCH_DIR/svd-family-$BENCH_SIZE
for m in $METHODS; do
	case $m in tsv-m|iso-c|iso-cts) ;; *) continue ;; esac
	if ! $svd_header; then
		if [ ! -f "$svd/ft3/config.json" ]; then
			rm -rf "$svd"
			mkdir -p "$svd"
			if [ "$BENCH_SIZE" = full ]; then
				g="--layers 2 --hidden 1024 --inter 2816 --vocab 8000 --dtype bf16"
			else
				g="--layers 2 --hidden 128 --inter 352 --vocab 1000 --dtype bf16"
			fi
			"$MKMODEL" "$svd/base" $g >/dev/null
			for s in 1 2 3; do "$MKMODEL" "$svd/ft$s" $g --seed $s --noise 0.1 >/dev/null; done
		fi
		SB=$svd/base
		SMODELS="$svd/ft1 $svd/ft2 $svd/ft3"
		warm=$(ls "$svd"/*/*.safetensors)
		printf '\n%-16s %8s %8s %8s %10s %10s %5s %12s %6s\n' "svd-family" "weld s" "CPU s" "weld MB" "bound MB" "matrix MB" "at" "--max-memory" holds | tee -a "$result"
		svd_header=true
	fi
	need=$("$WELD" plan "$m" --base "$SB" $SMODELS --max-memory 1M 2>&1 |
		sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p')
	budget=$(awk -v n="${need:-0}" 'BEGIN { b = 256e6; if (n + 0 > b) b = n; printf "%.0f", b }')
	for pass in one many; do
		if [ $pass = many ]; then
			budget=$("$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%.0f" % (int(sys.argv[2]) + (int(sys.argv[3]) - 1) * d["matrix_bytes"]))' \
				"$logs/plan-$m.json" "$budget" "$THREADS")
		fi
		"$WELD" plan "$m" --base "$SB" $SMODELS --max-memory "$budget" -j "$THREADS" --json >"$logs/plan-$m.json"
		bound=$("$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print("%.0f %.0f %d" % (d["memory_bytes"] / 1e6, d.get("matrix_bytes", 0) / 1e6, d.get("matrices_at_once", 0)))' "$logs/plan-$m.json")
		wout=$OUT/out-weld-$m-$pass
		saved=$REPEAT
		REPEAT=1
		best "$wout" "$logs/weld-$m-$pass" "$WELD" "$m" --base "$SB" -o "$wout" --max-memory "$budget" -q -f -j "$THREADS" $SMODELS
		REPEAT=$saved
		if [ "$ST" != 0 ]; then
			say "weld $m failed (exit $ST): $(head -n 1 "$logs/weld-$m-$pass.err")"
			continue
		fi
		cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$logs/weld-$m-$pass.time")
		awk -v m="$m" -v ws="$WALL" -v cpu="$cpu" -v wm="$RSS" -v bd="$bound" -v bu="$budget" 'BEGIN {
			split(bd, x, " ")
			printf "%-16s %8s %8s %8s %10s %10s %5s %12.0f %6s\n", m, ws, cpu, wm, x[1], x[2], x[3], bu / 1e6,
			       (wm * 1048576 <= x[1] * 1e6) ? "yes" : "NO" }' | tee -a "$result"
	done
	if [ -f "$OUT/out-weld-$m-one/model.safetensors" ] && ! cmp -s "$OUT/out-weld-$m-one/model.safetensors" "$OUT/out-weld-$m-many/model.safetensors"; then
		say "weld $m: the outputs of one and of several matrices at once differ"
	fi
	rm -rf "$OUT/out-weld-$m-one" "$OUT/out-weld-$m-many"
done
$svd_header && echo "(SVD methods: MB of RSS are MiB; bound MB = the plan's buffers including every matrix in flight, decimal; at = matrices decomposed at once; holds = peak RSS <= bound)" | tee -a "$result"

# LoRA: BASE+ADAPTER merges and extract-lora (tests/bench/lora.sh)
case " $METHODS " in
*" lora "*|*" average task-arithmetic ties dare breadcrumbs consensus "*)
	WELD=$WELD BENCH_DIR=$BENCH_DIR BENCH_SIZE=$BENCH_SIZE BENCH_THREADS=$THREADS PYTHON=$PYTHON \
		BENCH_RESULT=$result sh "$here/lora.sh" || say "the LoRA rows failed"
	;;
esac
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$result"
echo "(x cat = weld time / cat time; x floor = weld time / (cat + write) time; speed-up = torch time / weld time; logs in $logs)" | tee -a "$result"
