/*
 * test_lora_svd.c - LoRA factors by truncated SVD (lib/lora_svd.c): a
 * diagonal delta whose truncation is known by hand, the two ways of
 * spreading the singular values, sv_epsilon, and the randomized path
 * recovering a low-rank delta exactly.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "weld.h"

/* max |B·A - want| over [m × n] */
static double product_err(const struct weld_lora_factors *f, size_t m, size_t n,
			  const double *want)
{
	double e = 0;

	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			double s = 0;

			for (size_t r = 0; r < f->rank; r++)
				s += f->b[i * f->rank + r] * f->a[r * n + j];
			e = fmax(e, fabs(s - want[i * n + j]));
		}
	return e;
}

/* Δ = [[0, 3, 0], [2, 0, 0]] (2 × 3): σ = 3, 2; rank 1 keeps the 3. */
static void test_hand_truncation(void **state)
{
	const double want1[] = { 0, 3, 0, 0, 0, 0 }, want2[] = { 0, 3, 0, 2, 0, 0 };
	struct weld_lora_svd_opts o = { .max_rank = 1, .distribute = true };
	struct weld_lora_factors f;
	struct weld_error err = { 0 };
	double d[6];

	(void)state;
	memcpy(d, (double[]){ 0, 3, 0, 2, 0, 0 }, sizeof(d));
	assert_int_equal(weld_lora_svd(d, 2, 3, &o, &f, &err), 0);
	assert_int_equal(f.rank, 1);
	assert_true(product_err(&f, 2, 3, want1) < 1e-14);
	/* distributed: |A| = |B| = sqrt(3) */
	assert_true(fabs(fabs(f.b[0]) - sqrt(3)) < 1e-14 && fabs(f.b[1]) < 1e-14);
	assert_true(fabs(fabs(f.a[1]) - sqrt(3)) < 1e-14);
	assert_true(fabs(f.rel_err - 2 / sqrt(13)) < 1e-14);
	weld_lora_factors_free(&f);

	o.distribute = false;
	o.max_rank = 5;         /* more than min(m, n): full rank */
	memcpy(d, (double[]){ 0, 3, 0, 2, 0, 0 }, sizeof(d));
	assert_int_equal(weld_lora_svd(d, 2, 3, &o, &f, &err), 0);
	assert_int_equal(f.rank, 2);
	assert_true(product_err(&f, 2, 3, want2) < 1e-14);
	/* not distributed: B = U has unit columns */
	assert_true(fabs(f.b[0] * f.b[0] + f.b[2] * f.b[2] - 1) < 1e-14);
	assert_true(f.rel_err < 1e-14);
	weld_lora_factors_free(&f);

	o.eps = 2.5;            /* σ = 2 is not above 2.5 */
	memcpy(d, (double[]){ 0, 3, 0, 2, 0, 0 }, sizeof(d));
	assert_int_equal(weld_lora_svd(d, 2, 3, &o, &f, &err), 0);
	assert_int_equal(f.rank, 1);
	weld_lora_factors_free(&f);

	o.eps = 5;              /* nothing left */
	memcpy(d, (double[]){ 0, 3, 0, 2, 0, 0 }, sizeof(d));
	assert_int_equal(weld_lora_svd(d, 2, 3, &o, &f, &err), 0);
	assert_int_equal(f.rank, 0);
	assert_null(f.a);
	assert_true(fabs(f.rel_err - 1) < 1e-14);
}

/* A rank-2 delta [40 × 60]: the randomized path recovers it. */
static void test_fast_low_rank(void **state)
{
	enum { M = 40, N = 60 };
	struct weld_lora_svd_opts o = { .max_rank = 2, .distribute = true, .fast = true,
					.oversample = 4, .power_iters = 1, .seed = 7 };
	struct weld_lora_factors f, g;
	struct weld_error err = { 0 };
	double *d = malloc(M * N * sizeof(double)), *want = malloc(M * N * sizeof(double));

	(void)state;
	for (size_t i = 0; i < M; i++)
		for (size_t j = 0; j < N; j++)
			want[i * N + j] = sin((double)i) * cos(0.3 * (double)j) + 0.5 * (double)(i % 3) * sin((double)j);
	memcpy(d, want, M * N * sizeof(double));
	assert_int_equal(weld_lora_svd(d, M, N, &o, &f, &err), 0);
	assert_int_equal(f.rank, 2);
	assert_true(product_err(&f, M, N, want) < 1e-12);
	assert_true(f.rel_err < 1e-7);
	/* the same seed gives the same factors */
	memcpy(d, want, M * N * sizeof(double));
	assert_int_equal(weld_lora_svd(d, M, N, &o, &g, &err), 0);
	assert_memory_equal(f.a, g.a, 2 * N * sizeof(double));
	weld_lora_factors_free(&f);
	weld_lora_factors_free(&g);
	free(d);
	free(want);
}

/* The bound covers the arrays the SVD keeps (u, vt, s and the factors for
 * the exact path; q, w and the small SVD for --fast), and --fast needs far
 * less than the exact SVD when the rank is far below the size. */
static void test_memory_bound(void **state)
{
	struct weld_lora_svd_opts o = { .max_rank = 8, .distribute = true };
	uint64_t exact, fast, m = 400, n = 1200;

	(void)state;
	exact = weld_lora_svd_bytes(400, 1200, &o);
	assert_true(exact >= 8 * (m * m + m * n + m + 8 * (m + n)));
	o.fast = true;
	o.oversample = 10;
	fast = weld_lora_svd_bytes(400, 1200, &o);
	assert_true(fast >= 8 * 18 * 2 * (m + n));
	assert_true(fast * 4 < exact);
	/* l >= min(m, n): the exact SVD, and its bound */
	o.max_rank = 395;
	assert_int_equal(weld_lora_svd_bytes(400, 1200, &o), exact + 8 * (395 - 8) * (m + n));
	assert_int_equal(weld_lora_svd_bytes((size_t)1 << 32, 2, &o), UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_truncation),
		cmocka_unit_test(test_fast_low_rank),
		cmocka_unit_test(test_memory_bound),
	};

	return cmocka_run_group_tests_name("lora_svd", tests, NULL, NULL);
}
