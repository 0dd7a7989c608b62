/*
 * linalg.c - the LAPACK and BLAS calls behind linalg.h.
 *
 * LAPACK works on column-major arrays. A row-major m x n array is the
 * column-major n x m array of its transpose, so the SVD of a is taken as
 * that of a^T = v s u^T: LAPACK's "u" of a^T is our vt and its "vt" our u,
 * both already in row-major order, with no copy of a.
 */
#include "linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <stdlib.h>

int weld_linalg_threads(int n)
{
	int before = openblas_get_num_threads();

	openblas_set_num_threads(n > 0 ? n : 1);
	return before;
}

/* Does an m x n matrix fit LAPACK's int dimensions? */
static bool dims_ok(size_t m, size_t n)
{
	return m >= 1 && n >= 1 && m <= WELD_LINALG_MAX_DIM && n <= WELD_LINALG_MAX_DIM &&
	       (uint64_t)m <= UINT64_MAX / 8 / (uint64_t)n;
}

/* dgesdd's optimal workspace (doubles) for a^T, n x m column-major; -1 if
 * LAPACK refuses. */
static int64_t svd_lwork(size_t m, size_t n)
{
	lapack_int cm = (lapack_int)n, cn = (lapack_int)m, k = cm < cn ? cm : cn;
	double q = 0, dummy = 0;
	lapack_int iq = 0;

	if (LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'S', cm, cn, &dummy, cm, &dummy, &dummy, cm,
				&dummy, k, &q, -1, &iq) != 0)
		return -1;
	return (int64_t)q + 1;
}

uint64_t weld_svd_scratch_bytes(size_t m, size_t n)
{
	int64_t lw;
	uint64_t k = m < n ? m : n;

	if (!dims_ok(m, n) || (lw = svd_lwork(m, n)) < 0)
		return UINT64_MAX;
	return (uint64_t)lw * sizeof(double) + 8 * k * sizeof(lapack_int);
}

int weld_svd(size_t m, size_t n, double *a, double *s, double *u, double *vt)
{
	lapack_int cm = (lapack_int)n, cn = (lapack_int)m, k;
	lapack_int *iwork = NULL;
	double *work = NULL;
	int64_t lw;
	int r = -1;

	if (!dims_ok(m, n) || (lw = svd_lwork(m, n)) < 0 || lw > INT32_MAX)
		return -1;
	k = cm < cn ? cm : cn;
	work = malloc((size_t)lw * sizeof(double));
	iwork = malloc(8 * (size_t)k * sizeof(lapack_int));
	if (!work || !iwork)
		goto out;
	/* a^T = U' S VT': U' (n x k, column-major) is vt, VT' (k x m) is u */
	r = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'S', cm, cn, a, cm, s, vt, cm, u, k, work,
				(lapack_int)lw, iwork) == 0 ? 0 : 1;
out:
	free(work);
	free(iwork);
	return r;
}

/* The optimal workspace (doubles) of dgeqrf and dorgqr for a^T, n x k
 * column-major; -1 if LAPACK refuses. */
static int64_t qr_lwork(size_t k, size_t n)
{
	lapack_int cm = (lapack_int)n, cn = (lapack_int)k;
	double q1 = 0, q2 = 0, dummy = 0;

	if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, cm, cn, &dummy, cm, &dummy, &q1, -1) != 0 ||
	    LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, cm, cn, cn, &dummy, cm, &dummy, &q2, -1) != 0)
		return -1;
	return (int64_t)(q1 > q2 ? q1 : q2) + 1;
}

uint64_t weld_orthonormal_rows_scratch_bytes(size_t k, size_t n)
{
	int64_t lw;

	if (!dims_ok(k, n) || k > n || (lw = qr_lwork(k, n)) < 0)
		return UINT64_MAX;
	return ((uint64_t)lw + k) * sizeof(double);
}

int weld_orthonormal_rows(size_t k, size_t n, double *a)
{
	lapack_int cm = (lapack_int)n, cn = (lapack_int)k;
	double *work = NULL, *tau = NULL;
	int64_t lw;
	int r = -1;

	if (!dims_ok(k, n) || k > n || (lw = qr_lwork(k, n)) < 0 || lw > INT32_MAX)
		return -1;
	work = malloc((size_t)lw * sizeof(double));
	tau = malloc(k * sizeof(double));
	if (!work || !tau)
		goto out;
	/* the rows of a are the columns of a^T, n x k column-major */
	r = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, cm, cn, a, cm, tau, work, (lapack_int)lw) == 0 &&
	    LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, cm, cn, cn, a, cm, tau, work, (lapack_int)lw) == 0
		? 0 : 1;
out:
	free(work);
	free(tau);
	return r;
}

void weld_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
	       const double *a, const double *b, double beta, double *c)
{
	if (!m || !n)
		return;
	if (!k) {
		for (size_t i = 0; i < m * n; i++)
			c[i] = beta == 0 ? 0 : beta * c[i];
		return;
	}
	cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
		    a, (blasint)(trans_a ? m : k), b, (blasint)(trans_b ? k : n), beta, c,
		    (blasint)n);
}
