/*
 * test_kernels_stock.c - Model Stock (METHODS 4) on hand-computed cases:
 * the Gram matrix, t from the mean cosine with each degenerate rule (a zero
 * task vector, colinear and opposite task vectors, 1 + (n - 1) c = 0, a
 * cosine beyond 1), and the output; the Gram matrix's summation pattern
 * for every input count and length, with and without a base; the output
 * for every model count against its element-by-element formula.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "fixtures.h"

#include "weld.h"
#include "kernels.h"

static void test_gram(void **state)
{
	const float b[] = { 1, 1, 1 }, x0[] = { 2, 1, 1 }, x1[] = { 1, 3, 0 }, x2[] = { 1, 1, 1 };
	const float *x[] = { x0, x1, x2 };
	double g[6];

	(void)state;
	/* d0 = (1, 0, 0), d1 = (0, 2, -1), d2 = 0 */
	weld_k_gram(b, x, 3, 3, g);
	assert_true(g[0] == 1 && g[1] == 0 && g[2] == 0);    /* <d0,d0> <d0,d1> <d0,d2> */
	assert_true(g[3] == 5 && g[4] == 0);                 /* <d1,d1> <d1,d2> */
	assert_true(g[5] == 0);                              /* <d2,d2> */
}

/* The pattern weld_k_gram states, written out element by element: pieces
 * of 64, lane j % 4 of each piece summed in order, (l0 + l1) + (l2 + l3). */
static double pattern_sum(const float *b, const float *x, const float *y, size_t len)
{
	double g = 0;

	for (size_t a = 0; a < len; a += 64) {
		double lane[4] = { 0, 0, 0, 0 };

		for (size_t j = a; j < a + 64; j++) {
			double p = 0, q = 0;

			if (j < len) {
				p = b ? (double)(x[j] - b[j]) : (double)x[j];
				q = b ? (double)(y[j] - b[j]) : (double)y[j];
			}
			lane[j % 4] += p * q;
		}
		g += (lane[0] + lane[1]) + (lane[2] + lane[3]);
	}
	return g;
}

static void test_gram_pattern(void **state)
{
	enum { LEN = 300, N = 6 };
	static float b[LEN], x[N][LEN];
	const float *v[N];
	double g[N * (N + 1) / 2];

	(void)state;
	/* values whose products do not sum exactly: any other order shows */
	fixture_near_base(b, &x[0][0], N, LEN, 1e-3f, 1, 1);
	for (size_t s = 0; s < N; s++)
		v[s] = x[s];
	/* n = 1..4 take one sweep over all pairs, n = 5, 6 the pairs one by one;
	 * lengths with and without a short last piece */
	for (size_t n = 1; n <= N; n++)
		for (size_t len = 1; len <= LEN; len += 37)
			for (int base = 0; base < 2; base++) {
				size_t k = 0;

				weld_k_gram(base ? b : NULL, v, n, len, g);
				for (size_t s = 0; s < n; s++)
					for (size_t q = s; q < n; q++, k++)
						assert_true(g[k] == pattern_sum(base ? b : NULL, x[s], x[q], len));
			}
}

static void test_stock_t(void **state)
{
	bool deg;
	/* packed upper triangles */
	const double orth[] = { 1, 0, 4 };            /* n = 2, c = 0 */
	const double same[] = { 4, 6, 9 };            /* (2,0) and (3,0): c = 1 */
	const double opposite[] = { 1, -3, 9 };       /* (1,0) and (-3,0): c = -1 */
	const double zero[] = { 0, 0, 4 };            /* a zero task vector: c = 0 */
	const double beyond[] = { 1, 1.5, 1 };        /* c = 1.5, clamped to 1 */
	const double half[] = { 1, 0.5, 0.5, 1, 0.5, 1 };       /* n = 3, c = 0.5 */
	const double minus_half[] = { 1, -0.5, -0.5, 1, -0.5, 1 }; /* n = 3, c = -0.5 */

	(void)state;
	assert_true(weld_k_model_stock_t(orth, 2, &deg) == 0 && !deg);
	assert_true(weld_k_model_stock_t(same, 2, &deg) == 1 && !deg);
	assert_true(weld_k_model_stock_t(zero, 2, &deg) == 0 && !deg);
	assert_true(weld_k_model_stock_t(beyond, 2, &deg) == 1 && !deg);
	/* t = 3 * 0.5 / (1 + 2 * 0.5) */
	assert_true(weld_k_model_stock_t(half, 3, &deg) == 0.75 && !deg);
	/* 1 + (n - 1) c = 0: t = 0 and the flag */
	assert_true(weld_k_model_stock_t(opposite, 2, &deg) == 0 && deg);
	assert_true(weld_k_model_stock_t(minus_half, 3, &deg) == 0 && deg);
}

static void test_stock_output(void **state)
{
	const float b[] = { 1, 2 }, x0[] = { 3, 4 }, x1[] = { 5, 6 };
	const float *x[] = { x0, x1 };
	float out[2];

	(void)state;
	/* mean (4, 5); t = 0.5 */
	weld_k_model_stock(b, x, 2, 2, 0.5f, out);
	assert_true(out[0] == 2.5f && out[1] == 3.5f);
	/* t = 0: the base; t = 1: the mean; t = 2 extrapolates */
	weld_k_model_stock(b, x, 2, 2, 0, out);
	assert_true(out[0] == 1 && out[1] == 2);
	weld_k_model_stock(b, x, 2, 2, 1, out);
	assert_true(out[0] == 4 && out[1] == 5);
	weld_k_model_stock(b, x, 2, 2, 2, out);
	assert_true(out[0] == 7 && out[1] == 8);
}

/* The output for 2-6 models is bit for bit t (sum / n) + (1 - t) b, the
 * sum from 0 in model order. */
static void test_stock_order(void **state)
{
	enum { LEN = 1500, N = 6 };
	static float b[LEN], x[N][LEN], out[LEN];
	const float *v[N];
	const float t = 0.37f;

	(void)state;
	fixture_near_base(b, &x[0][0], N, LEN, 1e-2f, 0, 3);
	for (size_t s = 0; s < N; s++)
		v[s] = x[s];
	for (size_t n = 2; n <= N; n++) {
		weld_k_model_stock(b, v, n, LEN, t, out);
		for (size_t j = 0; j < LEN; j++) {
			float acc = 0;

			for (size_t s = 0; s < n; s++)
				acc += x[s][j];
			assert_true(out[j] == t * (acc / (float)n) + (1.0f - t) * b[j]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gram),
		cmocka_unit_test(test_gram_pattern),
		cmocka_unit_test(test_stock_t),
		cmocka_unit_test(test_stock_output),
		cmocka_unit_test(test_stock_order),
	};
	return cmocka_run_group_tests_name("model_stock kernels", tests, NULL, NULL);
}
