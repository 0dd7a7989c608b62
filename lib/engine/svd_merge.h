/*
 * svd_merge.h - the data-free SVD merges of one matrix (METHODS 13-15):
 * TSV-M (Task Singular Vectors, Merge), Iso-C and Iso-CTS (isotropic
 * merging in the common, and in the common and task-specific subspaces).
 *
 * Math on plain arrays, in double: the caller hands the weighted task
 * vectors D_i = w_i * delta_i of one m x n matrix through a callback (so
 * that they need not all be in memory at once) and gets back the merged
 * update, lambda times the low-rank matrix the method builds; the output
 * is base + update. The allocations of weld_svd_merge() never exceed
 * weld_svd_merge_bytes() of the same arguments, so the plan can state the
 * memory bound of each matrix before any data is read.
 */
#ifndef WELD_SVD_MERGE_H
#define WELD_SVD_MERGE_H

#include "merge.h"

struct weld_svd_merge {
	enum weld_method method;   /* WELD_METHOD_TSV_M, _ISO_C or _ISO_CTS */
	size_t m, n;               /* the matrix: m x n, row-major */
	size_t models;             /* T: the task vectors merged */
	double lambda;
	double common_fraction;    /* iso_cts: f, the common space's share */
	/* fill d (m x n) with D_i, 0 <= i < models; 0, or -1 with the error
	 * left in the caller's context. Called for i = 0 .. T - 1 in order,
	 * once (tsv_m, iso_c) or twice (iso_cts: for the sum, then for the
	 * task-specific parts). */
	int (*load)(void *ctx, size_t i, double *d);
	void *ctx;
};

/* iso_cts's split of k = min(m, n) dimensions among T models with common
 * fraction f (METHODS 15 step 1): *c common dimensions, *p per model.
 * -1 when the task-specific dimensions round to more than k. */
int weld_iso_cts_dims(size_t k, size_t models, double f, size_t *c, size_t *p);

/* The numerically-zero threshold of a matrix of Frobenius norm fro
 * (METHODS 0): sqrt(max(m, n)) * 2^-23 * fro. */
double weld_svd_zero_tol(size_t m, size_t n, double fro);

/* Upper bound of the bytes weld_svd_merge() allocates for these shapes
 * (UINT64_MAX if a dimension is too large for LAPACK). */
uint64_t weld_svd_merge_bytes(enum weld_method method, size_t m, size_t n, size_t models,
			      double common_fraction);

/*
 * The update of one matrix into out (m x n). Returns 0; -1 when out of
 * memory; -2 when a load failed; 1 when an SVD did not converge.
 */
int weld_svd_merge(const struct weld_svd_merge *a, double *out);

#endif
