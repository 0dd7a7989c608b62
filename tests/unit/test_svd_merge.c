/*
 * test_svd_merge.c - the linear-algebra wrappers (lib/common/linalg.h) and
 * the SVD merges of one matrix (METHODS 13-15) on hand-computed cases:
 * SVD and products of small matrices, TSV-M on orthogonal, identical and
 * zero task vectors, Iso-C's flat spectrum, Iso-CTS's split of the
 * dimensions (Python's half-to-even rounding) and its task-specific part,
 * and the same bits from run to run with one BLAS thread (OpenBLAS's bits
 * depend on its thread count, which is why weld fixes it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "weld.h"
#include "linalg.h"
#include "svd_merge.h"

#define EPS 1e-12

static void assert_matrix(const double *got, const double *want, size_t len, double eps)
{
	for (size_t i = 0; i < len; i++)
		if (fabs(got[i] - want[i]) > eps)
			fail_msg("element %zu: got %.17g, want %.17g", i, got[i], want[i]);
}

static void test_svd_of_a_3x2(void **state)
{
	/* columns 2 e1 and 1 e2 in R^3: singular values 2 and 1 */
	double a[6] = { 0, 2, 1, 0, 0, 0 }, copy[6], s[2], u[6], vt[4], us[6], back[6];

	(void)state;
	memcpy(copy, a, sizeof(a));
	assert_int_equal(weld_svd(3, 2, copy, s, u, vt), 0);
	assert_true(fabs(s[0] - 2) < EPS && fabs(s[1] - 1) < EPS);
	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < 2; j++)
			us[i * 2 + j] = u[i * 2 + j] * s[j];
	weld_gemm(false, false, 3, 2, 2, 1.0, us, vt, 0.0, back);
	assert_matrix(back, a, 6, EPS);
	assert_true(weld_svd_scratch_bytes(3, 2) > 0 && weld_svd_scratch_bytes(3, 2) < UINT64_MAX);
}

static void test_svd_of_a_wide_matrix(void **state)
{
	/* 2 x 3 with orthogonal rows of norms 5 and 3 */
	double a[6] = { 3, 4, 0, 0, 0, 3 }, copy[6], s[2], u[4], vt[6], us[4], back[6];

	(void)state;
	memcpy(copy, a, sizeof(a));
	assert_int_equal(weld_svd(2, 3, copy, s, u, vt), 0);
	assert_true(fabs(s[0] - 5) < EPS && fabs(s[1] - 3) < EPS);
	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < 2; j++)
			us[i * 2 + j] = u[i * 2 + j] * s[j];
	weld_gemm(false, false, 2, 3, 2, 1.0, us, vt, 0.0, back);
	assert_matrix(back, a, 6, EPS);
}

static void test_gemm_transposes(void **state)
{
	/* a = [1 2; 3 4; 5 6] (3 x 2), b = [1 0 2; 0 1 3] (2 x 3) */
	const double a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 1, 0, 2, 0, 1, 3 };
	const double ab[9] = { 1, 2, 8, 3, 4, 18, 5, 6, 28 };
	const double ata[4] = { 35, 44, 44, 56 };        /* a^T a */
	const double bbt[4] = { 5, 6, 6, 10 };           /* b b^T */
	double c[9];

	(void)state;
	weld_gemm(false, false, 3, 3, 2, 1.0, a, b, 0.0, c);
	assert_matrix(c, ab, 9, 0);
	weld_gemm(true, false, 2, 2, 3, 1.0, a, a, 0.0, c);
	assert_matrix(c, ata, 4, 0);
	weld_gemm(false, true, 2, 2, 3, 1.0, b, b, 0.0, c);
	assert_matrix(c, bbt, 4, 0);
	/* beta: c = 2 c - a^T a = a^T a */
	weld_gemm(true, false, 2, 2, 3, -1.0, a, a, 0.0, c);
	weld_gemm(true, false, 2, 2, 3, 2.0, a, a, 1.0, c);
	assert_matrix(c, ata, 4, 0);
}

/* Rows [3 0 4; 1 1 1]: Gram-Schmidt gives [3 0 4]/5, then the rest of
 * [1 1 1] (minus 7/25 of [3 0 4]) normalised: [4 25 -3]/sqrt(650), each
 * up to its sign. */
static void test_orthonormal_rows(void **state)
{
	double a[6] = { 3, 0, 4, 1, 1, 1 };
	const double want[6] = { 0.6, 0, 0.8, 4 / sqrt(650), 25 / sqrt(650), -3 / sqrt(650) };

	(void)state;
	assert_int_equal(weld_orthonormal_rows(2, 3, a), 0);
	for (size_t r = 0; r < 2; r++) {
		double sign = a[r * 3] * want[r * 3] + a[r * 3 + 1] * want[r * 3 + 1] < 0 ? -1 : 1;

		for (size_t j = 0; j < 3; j++)
			assert_float_equal(sign * a[r * 3 + j], want[r * 3 + j], EPS);
	}
	assert_true(weld_orthonormal_rows_scratch_bytes(2, 3) >= 2 * sizeof(double));
	assert_int_equal(weld_orthonormal_rows(3, 2, a), -1);  /* more rows than columns */
}

/* The task vectors of a test, row-major 2 x 2 each. */
struct tv {
	const double *d[4];
	size_t len;
	int calls;
};

static int load(void *ctx, size_t i, double *d)
{
	struct tv *t = ctx;

	t->calls++;
	memcpy(d, t->d[i], t->len * sizeof(double));
	return 0;
}

static void merge2(enum weld_method meth, const double *const *d, size_t nd, double lambda,
		   double f, double *out, int *calls)
{
	struct tv t = { .len = 4 };
	struct weld_svd_merge a = { .method = meth, .m = 2, .n = 2, .models = nd,
				    .lambda = lambda, .common_fraction = f, .load = load, .ctx = &t };

	for (size_t i = 0; i < nd; i++)
		t.d[i] = d[i];
	assert_int_equal(weld_svd_merge(&a, out), 0);
	if (calls)
		*calls = t.calls;
}

static void test_tsv_m_orthogonal_tasks(void **state)
{
	/* rank-one tasks on orthogonal directions: r = 1 each, U = [e1 e2],
	 * s = [2 5]: out = lambda diag(2, 5) */
	const double d1[4] = { 2, 0, 0, 0 }, d2[4] = { 0, 0, 0, 5 }, *d[2] = { d1, d2 };
	const double want[4] = { 3, 0, 0, 7.5 };
	double out[4];
	int calls;

	(void)state;
	merge2(WELD_METHOD_TSV_M, d, 2, 1.5, 0, out, &calls);
	assert_matrix(out, want, 4, EPS);
	assert_int_equal(calls, 2);
}

static void test_tsv_m_identical_models(void **state)
{
	/* METHODS 13: two identical models give their common rank-r
	 * truncation: diag(3, 1) -> diag(3, 0) */
	const double d1[4] = { 3, 0, 0, 1 }, *d[2] = { d1, d1 };
	const double want[4] = { 3, 0, 0, 0 };
	double out[4];

	(void)state;
	merge2(WELD_METHOD_TSV_M, d, 2, 1, 0, out, NULL);
	assert_matrix(out, want, 4, EPS);
}

static void test_tsv_m_zero_task_takes_no_part(void **state)
{
	/* a zero task vector has only numerically-zero triplets: dropped */
	const double d1[4] = { 0, 0, 0, 4 }, z[4] = { 0 }, *d[2] = { z, d1 };
	const double want[4] = { 0, 0, 0, 4 };
	double out[4];

	(void)state;
	merge2(WELD_METHOD_TSV_M, d, 2, 1, 0, out, NULL);
	assert_matrix(out, want, 4, EPS);
	d[1] = z;
	merge2(WELD_METHOD_TSV_M, d, 2, 1, 0, out, NULL);
	assert_matrix(out, z, 4, 0);
}

static void test_tsv_m_more_models_than_rank(void **state)
{
	/* k = 2, T = 3: r = 0, nothing is kept, out = 0 */
	const double d1[4] = { 1, 2, 3, 4 }, *d[3] = { d1, d1, d1 }, z[4] = { 0 };
	double out[4];

	(void)state;
	merge2(WELD_METHOD_TSV_M, d, 3, 1, 0, out, NULL);
	assert_matrix(out, z, 4, 0);
}

static void test_iso_c_flat_spectrum(void **state)
{
	/* M = diag(1, 3): mean singular value 2, out = 2 lambda I */
	const double d1[4] = { 1, 0, 0, 0 }, d2[4] = { 0, 0, 0, 3 }, *d[2] = { d1, d2 };
	const double want[4] = { 1, 0, 0, 1 };
	double out[4];

	(void)state;
	merge2(WELD_METHOD_ISO_C, d, 2, 0.5, 0, out, NULL);
	assert_matrix(out, want, 4, EPS);
}

static void test_iso_c_rank_deficient_sum(void **state)
{
	/* M = [1 1; 1 1] (rank 1, sigma 2 and 0): mean 1, only the first
	 * direction kept: out = 1 * (1/2) [1 1; 1 1]; M = 0 gives 0 */
	const double d1[4] = { 1, 1, 1, 1 }, z[4] = { 0 }, *d[2] = { d1, z };
	const double want[4] = { 0.5, 0.5, 0.5, 0.5 };
	double out[4];

	(void)state;
	merge2(WELD_METHOD_ISO_C, d, 2, 1, 0, out, NULL);
	assert_matrix(out, want, 4, EPS);
	d[0] = z;
	merge2(WELD_METHOD_ISO_C, d, 2, 1, 0, out, NULL);
	assert_matrix(out, z, 4, 0);
}

static void test_iso_cts_dims(void **state)
{
	size_t c, p;

	(void)state;
	/* k 16, T 2, f .8: c 12, (16 - 12) / 2 = 2 */
	assert_int_equal(weld_iso_cts_dims(16, 2, 0.8, &c, &p), 0);
	assert_true(c == 12 && p == 2);
	/* half to even: 1.5 -> 2, 2.5 -> 2, 0.5 -> 0 */
	assert_int_equal(weld_iso_cts_dims(10, 2, 0.7, &c, &p), 0);
	assert_true(c == 6 && p == 2);
	assert_int_equal(weld_iso_cts_dims(10, 2, 0.5, &c, &p), 0);
	assert_true(c == 6 && p == 2);
	assert_int_equal(weld_iso_cts_dims(10, 4, 0.8, &c, &p), 0);
	assert_true(c == 10 && p == 0);
	/* k 5, T 3, f 0: round(5/3) * 3 = 6 > 5 */
	assert_int_equal(weld_iso_cts_dims(5, 3, 0, &c, &p), -1);
}

static void test_iso_cts_task_specific_part(void **state)
{
	/* k 2, T 1, f .5: c 1, p 1. D = diag(3, 1): common e1 (3), the rest
	 * D - e1 e1^T D = diag(0, 1) gives e2 (1); mean (3 + 1) / 2 = 2:
	 * out = 2 I. The model is loaded twice (sum, then its own part). */
	const double d1[4] = { 3, 0, 0, 1 }, *d[1] = { d1 };
	const double want[4] = { 2, 0, 0, 2 };
	double out[4];
	int calls;

	(void)state;
	merge2(WELD_METHOD_ISO_CTS, d, 1, 1, 0.5, out, &calls);
	assert_matrix(out, want, 4, EPS);
	assert_int_equal(calls, 2);
}

static void test_iso_cts_common_only(void **state)
{
	/* f = 1: only the common part, the top k directions: Iso-C */
	const double d1[4] = { 1, 2, 0, 1 }, d2[4] = { 0, 1, 3, 1 }, *d[2] = { d1, d2 };
	double a[4], b[4];

	(void)state;
	merge2(WELD_METHOD_ISO_CTS, d, 2, 1, 1, a, NULL);
	merge2(WELD_METHOD_ISO_C, d, 2, 1, 0, b, NULL);
	assert_matrix(a, b, 4, 1e-12);
}

/* A random-looking m x n task vector, the same on every call. */
static int load_big(void *ctx, size_t i, double *d)
{
	size_t *mn = ctx;

	for (size_t e = 0; e < mn[0] * mn[1]; e++)
		d[e] = sin((double)(e * 7 + i * 13 + 1)) * ((e + i) % 5 + 1);
	return 0;
}

static void test_same_bits_run_to_run(void **state)
{
	size_t mn[2] = { 300, 200 };
	enum weld_method ms[3] = { WELD_METHOD_TSV_M, WELD_METHOD_ISO_C, WELD_METHOD_ISO_CTS };
	double *a = malloc(300 * 200 * sizeof(double)), *b = malloc(300 * 200 * sizeof(double));
	int before;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	before = weld_linalg_threads(1);
	for (int k = 0; k < 3; k++) {
		struct weld_svd_merge x = { .method = ms[k], .m = 300, .n = 200, .models = 3,
					    .lambda = 1, .common_fraction = 0.8,
					    .load = load_big, .ctx = mn };

		assert_int_equal(weld_svd_merge(&x, a), 0);
		assert_int_equal(weld_svd_merge(&x, b), 0);
		assert_memory_equal(a, b, 300 * 200 * sizeof(double));
		assert_true(weld_svd_merge_bytes(ms[k], 300, 200, 3, 0.8) > 8 * 300 * 200);
	}
	weld_linalg_threads(before);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_svd_of_a_3x2),
		cmocka_unit_test(test_svd_of_a_wide_matrix),
		cmocka_unit_test(test_gemm_transposes),
		cmocka_unit_test(test_orthonormal_rows),
		cmocka_unit_test(test_tsv_m_orthogonal_tasks),
		cmocka_unit_test(test_tsv_m_identical_models),
		cmocka_unit_test(test_tsv_m_zero_task_takes_no_part),
		cmocka_unit_test(test_tsv_m_more_models_than_rank),
		cmocka_unit_test(test_iso_c_flat_spectrum),
		cmocka_unit_test(test_iso_c_rank_deficient_sum),
		cmocka_unit_test(test_iso_cts_dims),
		cmocka_unit_test(test_iso_cts_task_specific_part),
		cmocka_unit_test(test_iso_cts_common_only),
		cmocka_unit_test(test_same_bits_run_to_run),
	};
	return cmocka_run_group_tests_name("svd_merge", tests, NULL, NULL);
}
