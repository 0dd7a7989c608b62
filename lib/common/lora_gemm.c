/*
 * lora_gemm.c - rows of a LoRA delta B·A in double, through BLAS.
 *
 * The products are small (a read's rows times the rank) and run inside
 * weld's own worker threads, several at once: BLAS threads of its own
 * would only contend with them (OpenBLAS's pthread build serialises
 * concurrent threaded calls), so BLAS is asked for one thread.
 */
#include "lora_gemm.h"

#include <cblas.h>

static void one_thread(void)
{
	static int done;

	if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		openblas_set_num_threads(1);
		__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	}
}

void weld_lora_rows(size_t m, size_t n, size_t k, const double *b, const double *a,
		    double *out)
{
	one_thread();
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0,
		    b, (int)k, a, (int)n, 0.0, out, (int)n);
}

void weld_lora_rows_t(size_t m, size_t n, size_t k, const double *a, const double *b,
		      double *out)
{
	one_thread();
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0,
		    a, (int)m, b, (int)k, 0.0, out, (int)n);
}
