/*
 * lora_gemm.h - the one matrix product LoRA input needs, in double:
 * rows of B·A (or of (B·A)ᵀ) for the rows of a weight a chunk covers.
 * Plain arrays, row-major; BLAS (cblas_dgemm) does the work. For a given
 * element, the sum over the rank runs in the same order whatever rows are
 * asked for, so a chunk's values do not depend on where it starts.
 * Depends only on base.h.
 */
#ifndef WELD_LORA_GEMM_H
#define WELD_LORA_GEMM_H

#include "base.h"

/* out[m × n] = b[m × k] · a[k × n]. */
void weld_lora_rows(size_t m, size_t n, size_t k, const double *b, const double *a,
		    double *out);

/* out[m × n] = a[k × m]ᵀ · b[n × k]ᵀ: rows of (B·A)ᵀ, a holding columns of A. */
void weld_lora_rows_t(size_t m, size_t n, size_t k, const double *a, const double *b,
		      double *out);

#endif
