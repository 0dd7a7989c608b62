/*
 * linalg.h - double-precision linear algebra on plain arrays, through
 * LAPACK (LAPACKE) and BLAS (OpenBLAS): the thin SVD and the matrix
 * product the SVD-based methods and LoRA need.
 *
 * Every matrix is a packed row-major array of doubles: element (i, j) of
 * an m x n matrix at a[i * n + j]. Nothing here prints, exits or knows of
 * files. BLAS runs with the threads weld_linalg_threads() set (one until
 * then); on one machine a result does not depend on that number (see
 * tests/unit/test_linalg.c), across machines it may differ in the last
 * bits (BLAS kernels differ by CPU).
 */
#ifndef WELD_LINALG_H
#define WELD_LINALG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest m or n (LAPACK's int) and m * n these functions accept. */
#define WELD_LINALG_MAX_DIM 2147483647ull

/* Let BLAS use n threads (n >= 1); returns the number it used before. Call
 * it outside any OpenMP parallel region: weld's own threads are then idle,
 * so the cores are not oversubscribed. */
int weld_linalg_threads(int n);

/* Bytes of scratch weld_svd(m, n, ...) allocates (LAPACK's workspace for
 * that shape, asked from LAPACK itself), or UINT64_MAX if too large. */
uint64_t weld_svd_scratch_bytes(size_t m, size_t n);

/*
 * Thin SVD a = u diag(s) vt of the m x n matrix a, k = min(m, n):
 * u is m x k, s has k values in descending order, vt is k x n. a is
 * destroyed. Returns 0; -1 when out of memory or a dimension is too large;
 * 1 when LAPACK did not converge (the outputs are then undefined).
 */
int weld_svd(size_t m, size_t n, double *a, double *s, double *u, double *vt);

/*
 * c = alpha * op(a) * op(b) + beta * c, c m x n, op(a) m x k, op(b) k x n,
 * where op(x) is x, or its transpose when the flag is set (a is then
 * stored k x m, b n x k). All packed row-major. beta 0 ignores c's values.
 */
void weld_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
	       const double *a, const double *b, double beta, double *c);

#endif
