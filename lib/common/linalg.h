/*
 * linalg.h - double-precision linear algebra on plain arrays, through
 * LAPACK (LAPACKE) and BLAS (OpenBLAS): the thin SVD, the orthonormal
 * basis of a QR factorisation and the matrix product that the SVD-based
 * methods and LoRA need. The one place weld calls LAPACK and BLAS.
 *
 * Every matrix is a packed row-major array of doubles: element (i, j) of
 * an m x n matrix at a[i * n + j]. Nothing here prints, exits or knows of
 * files. BLAS runs with the threads weld_linalg_threads() sets. OpenBLAS's
 * results depend on that number (its products and SVDs with 1 and with 4
 * threads differ in the last bits of doubles), and across machines on the
 * CPU (its kernels differ by CPU); with a fixed number they are the same
 * from run to run on one machine. A caller whose output must not depend on
 * -j therefore fixes the number (weld's merges use one thread).
 */
#ifndef WELD_LINALG_H
#define WELD_LINALG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest m or n (LAPACK's int) and m * n these functions accept. */
#define WELD_LINALG_MAX_DIM 2147483647ull

/* Let BLAS use n threads (n >= 1); returns the number it used before. Call
 * it outside any OpenMP parallel region. */
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

/* Bytes of scratch weld_orthonormal_rows(k, n, ...) allocates, or
 * UINT64_MAX if too large. */
uint64_t weld_orthonormal_rows_scratch_bytes(size_t k, size_t n);

/*
 * Replace the k rows of the k x n matrix a (k <= n) by an orthonormal
 * basis of their span, the Q of the QR factorisation of a^T (LAPACK
 * dgeqrf and dorgqr): row i of the result spans the same space as rows
 * 0..i of a. Returns 0; -1 when out of memory or a dimension is too
 * large; 1 when LAPACK refused the arguments.
 */
int weld_orthonormal_rows(size_t k, size_t n, double *a);

/*
 * c = alpha * op(a) * op(b) + beta * c, c m x n, op(a) m x k, op(b) k x n,
 * where op(x) is x, or its transpose when the flag is set (a is then
 * stored k x m, b n x k). All packed row-major. beta 0 ignores c's values.
 */
void weld_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
	       const double *a, const double *b, double beta, double *c);

#endif
