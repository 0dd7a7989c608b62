/*
 * test_kernels_swap.c - nearswap and ram / ramplus_tl (METHODS 9, 10) on
 * hand-computed cases, with every degenerate rule: a zero distance, t <= 0,
 * no survivor, |delta| equal to epsilon, U_i = 0; ram for every model count
 * against its element-by-element formula.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "fixtures.h"

#include <math.h>

#include "weld.h"
#include "kernels.h"

static void test_nearswap(void **state)
{
	/* distances 0.5, 0.1, 0 (clamped to 1e-6), 0.5, 8 */
	const float b[] = { 0, 0, 1, 2, 5 }, x[] = { 0.5f, 0.1f, 1, 2.5f, -3 };
	const float want[] = { 0.25f, 0.1f, 1, 2.25f, 4.75f };
	float out[5];

	(void)state;
	weld_k_nearswap(b, x, 5, 0.25f, out);
	for (int j = 0; j < 5; j++)
		assert_true(out[j] == want[j]);
	/* t <= 0: a = 0, the base everywhere */
	weld_k_nearswap(b, x, 5, 0, out);
	assert_memory_equal(out, b, sizeof(b));
	weld_k_nearswap(b, x, 5, -1, out);
	assert_memory_equal(out, b, sizeof(b));
	/* t beyond every distance: the model */
	weld_k_nearswap(b, x, 5, 100, out);
	assert_memory_equal(out, x, sizeof(x));
}

/* deltas of three models over five elements, epsilon 0.1:
 * element 0 no survivor, 1 two that cancel, 2 one (model 2's 0.2),
 * 3 two (model 2's 0.1 equals epsilon: not strictly above), 4 three */
static const float v0[] = { 0, 0.5f, 0.05f, 0.2f, 0.3f };
static const float v1[] = { 0, -0.5f, 0.2f, 0.1f, 0.5f };
static const float v2[] = { 0, 0, 0, 0.4f, 0.4f };
static const float ones[] = { 1, 1, 1, 1, 1 };

static void test_ram(void **state)
{
	const float *v[] = { v0, v1, v2 };
	const float want[] = { 1, 1, 1.2f, 1 + (0.2f + 0.4f) / 2, 1 + (0.3f + 0.5f + 0.4f) / 3 };
	float out[5];

	(void)state;
	weld_k_ram(ones, v, 3, 5, 0.1f, NULL, out);
	for (int j = 0; j < 5; j++)
		assert_true(out[j] == want[j]);
	/* epsilon 0: every nonzero delta survives, zeros never do */
	weld_k_ram(ones, v, 3, 5, 0, NULL, out);
	assert_true(out[0] == 1);
	assert_true(out[2] == 1 + (0.05f + 0.2f) / 2);
}

static void test_ramplus(void **state)
{
	const float *v[] = { v0, v1, v2 };
	const float lam[] = { 2.5f, 2, 2.5f };
	double counts[6];
	float l[3], out[5];

	(void)state;
	weld_k_ram_counts(v, 3, 5, 0.1f, counts);
	/* S_i, U_i: model 1 shares elements 1, 3, 4; model 2 shares 1 and 4
	 * and is alone at 2; model 3 shares 3 and 4 */
	assert_true(counts[0] == 3 && counts[1] == 0);
	assert_true(counts[2] == 2 && counts[3] == 1);
	assert_true(counts[4] == 2 && counts[5] == 0);
	/* rho = S / max(U, eps): 30, 2, 20; clamped to alpha 3 */
	weld_k_ram_lambdas(counts, 3, 0.1, 0.5, 3, l);
	assert_true(l[0] == 2.5f && l[1] == 2 && l[2] == 2.5f);
	/* alpha 0: lambda 1 */
	weld_k_ram_lambdas(counts, 3, 0.1, 0.5, 0, l);
	assert_true(l[0] == 1 && l[1] == 1 && l[2] == 1);
	/* only the lone survivor is scaled */
	weld_k_ram(ones, v, 3, 5, 0.1f, lam, out);
	assert_true(out[0] == 1 && out[1] == 1);
	assert_true(out[2] == 1 + 0.2f * 2);
	assert_true(out[3] == 1 + (0.2f + 0.4f) / 2);
	assert_true(out[4] == 1 + (0.3f + 0.5f + 0.4f) / 3);
}

/* ram for 1-6 models, with and without lambdas, is bit for bit its
 * formula: c, the sum and the lambda-weighted sum from 0 in model order;
 * and ramplus_tl's counts are its counts. */
static void test_ram_order(void **state)
{
	enum { LEN = 1500, N = 6 };
	static float b[LEN], d[N][LEN], out[LEN];
	const float lam[N] = { 1.1f, 1.02f, 1.3f, 1.0f, 1.05f, 1.2f }, eps = 1e-4f;
	const float *v[N];
	uint32_t r = 5;

	(void)state;
	for (size_t j = 0; j < LEN; j++) {
		b[j] = fixture_uniform(&r);
		for (size_t s = 0; s < N; s++) {
			float u;

			u = fixture_uniform(&r) + 0.5f;
			/* zeros, values at epsilon and small deltas */
			d[s][j] = u < 0.3f ? 0.0f : u < 0.35f ? eps : (u - 0.675f) * 1e-2f;
		}
	}
	for (size_t s = 0; s < N; s++)
		v[s] = d[s];
	for (size_t n = 1; n <= N; n++)
		for (int with = 0; with < 2; with++) {
			weld_k_ram(b, v, n, LEN, eps, with ? lam : NULL, out);
			for (size_t j = 0; j < LEN; j++) {
				float acc = 0, one = 0, c = 0;

				for (size_t s = 0; s < n; s++)
					if (fabsf(d[s][j]) > eps) {
						c += 1;
						acc += d[s][j];
						one += d[s][j] * (with ? lam[s] : 1.0f);
					}
				assert_true(out[j] == b[j] + (c > 1 ? acc / c : one));
			}
		}
	/* ramplus_tl's counts: S_i and U_i element by element */
	for (size_t n = 1; n <= N; n++) {
		double counts[2 * N];

		weld_k_ram_counts(v, n, LEN, eps, counts);
		for (size_t s = 0; s < n; s++) {
			double sh = 0, un = 0;

			for (size_t j = 0; j < LEN; j++) {
				int c = 0;

				for (size_t q = 0; q < n; q++)
					c += fabsf(d[q][j]) > eps;
				sh += fabsf(d[s][j]) > eps && c > 1;
				un += fabsf(d[s][j]) > eps && c == 1;
			}
			assert_true(counts[2 * s] == sh && counts[2 * s + 1] == un);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nearswap),
		cmocka_unit_test(test_ram),
		cmocka_unit_test(test_ramplus),
		cmocka_unit_test(test_ram_order),
	};
	return cmocka_run_group_tests_name("nearswap and ram kernels", tests, NULL, NULL);
}
