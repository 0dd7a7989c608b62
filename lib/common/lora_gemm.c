/*
 * lora_gemm.c - rows of a LoRA delta B·A in double, through BLAS.
 *
 * The products are small (a read's rows times the rank) and run inside
 * weld's own worker threads, several at once: BLAS threads of its own
 * would only contend with them (OpenBLAS's pthread build serialises
 * concurrent threaded calls), so BLAS is asked for one thread.
 */
#include "lora_gemm.h"
#include "linalg.h"

static void one_thread(void)
{
	static int done;

	if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		weld_linalg_threads(1);
		__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	}
}

void weld_lora_rows(size_t m, size_t n, size_t k, const double *b, const double *a,
		    double *out)
{
	one_thread();
	weld_gemm(false, false, m, n, k, 1.0, b, a, 0.0, out);
}

void weld_lora_rows_t(size_t m, size_t n, size_t k, const double *a, const double *b,
		      double *out)
{
	one_thread();
	weld_gemm(true, true, m, n, k, 1.0, a, b, 0.0, out);
}
