/*
 * lora_gemm.c - rows of a LoRA delta B·A in double, through BLAS.
 */
#include "lora_gemm.h"

#include <cblas.h>

void weld_lora_rows(size_t m, size_t n, size_t k, const double *b, const double *a,
		    double *out)
{
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0,
		    b, (int)k, a, (int)n, 0.0, out, (int)n);
}

void weld_lora_rows_t(size_t m, size_t n, size_t k, const double *a, const double *b,
		      double *out)
{
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0,
		    a, (int)m, b, (int)k, 0.0, out, (int)n);
}
