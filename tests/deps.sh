#!/bin/sh
# Install the Debian packages weld needs to build and test, if any is
# missing (make deps, run by make demo and make check).
set -u
need=""
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
have_hdr() { printf '#include <%s>\nint main(void){return 0;}\n' "$1" | ${CC:-cc} -x c - -o /dev/null 2>/dev/null; }
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
command -v gcc >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"
have_pc zlib || have_hdr zlib.h || need="$need zlib1g-dev"
have_pc libzip || have_hdr zip.h || need="$need libzip-dev"
have_pc libcjson || have_hdr cjson/cJSON.h || need="$need libcjson-dev"
have_hdr xxhash.h || need="$need libxxhash-dev"
# the SVD methods and LoRA: BLAS and LAPACK through their C interfaces
have_pc openblas || need="$need libopenblas-dev"
have_pc lapacke || have_hdr lapacke.h || need="$need liblapacke-dev"
have_hdr stdarg.h && printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <cmocka.h>\nint main(void){return 0;}\n' | ${CC:-cc} -x c - -o /dev/null 2>/dev/null || need="$need libcmocka-dev"
# tests: a second build with clang (no gcc clones, no AVX-512 intrinsics)
# must write the same bytes, so clang and its OpenMP runtime
printf '#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n' |
	clang -fopenmp -x c - -o /dev/null 2>/dev/null || need="$need clang libomp-dev"
# tests: the NumPy reference implementation (in $PYTHON, as the tests run
# it) and xxhsum for known answers
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c 'import numpy' 2>/dev/null || need="$need python3 python3-numpy"
command -v xxhsum >/dev/null 2>&1 || need="$need xxhash"
[ -x /usr/bin/time ] || need="$need time"
# tests: GNU parallel runs the parts of a split merge (test_parts.sh), and
# so does a one-node Slurm cluster (tests/slurm, which needs root to run
# jobs: others get no Slurm, and a skip line)
command -v parallel >/dev/null 2>&1 || need="$need parallel"
if [ "$(id -u)" = 0 ] || [ "${WITH_SLURM:-0}" = 1 ]; then
	PATH=$PATH:/usr/sbin
	command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
		command -v sbatch >/dev/null 2>&1 || need="$need slurm-wlm"
	command -v munged >/dev/null 2>&1 || need="$need munge"
fi
if [ -z "$need" ]; then
	exit 0
fi
echo "deps: installing:$need"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed" >&2; exit 1; }
$SUDO apt-get install -y -qq --no-install-recommends $need || { echo "deps: apt-get install failed:$need" >&2; exit 1; }
