/*
 * test_arcee.c - arcee_fusion's pieces on plain arrays (lib/engine/arcee.c):
 * the KL divergence of a row's softmaxes and the importance, a width-1
 * row, the bits of float(kl) against its definition computed literally,
 * and the choice at the fence.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "arcee.h"
#include "elementary.h"
#include "fixtures.h"

/* a = (0, 0): q = (1/2, 1/2); b = (ln 3, 0): p = (3/4, 1/4);
 * kl = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308122 (the 1e-8 moves it by less
 * than 1e-7); importance = |b - a| kl */
static void test_importance(void **state)
{
	const float a[] = { 0, 0 }, b[] = { (float)log(3.0), 0 };
	double scratch[4];
	float imp[2];

	(void)state;
	weld_k_arcee_importance(a, b, 2, scratch, imp);
	assert_true(fabs(imp[0] / b[0] - 0.1308122) < 1e-6);
	assert_true(imp[1] == 0.0f);
}

/* a row of one: both softmaxes are 1, kl = 0, importance 0 */
static void test_width_one(void **state)
{
	const float a[] = { -3 }, b[] = { 5 };
	double scratch[2];
	float imp[1];

	(void)state;
	weld_k_arcee_importance(a, b, 1, scratch, imp);
	assert_true(imp[0] == 0.0f);
}

/* float(kl) by its definition, literally: weld_exp and weld_log in double,
 * summed in row order */
static float definition_kl(const float *a, const float *b, size_t w)
{
	double mb = -INFINITY, ma = -INFINITY, sb = 0, sa = 0, kl = 0;

	for (size_t j = 0; j < w; j++) {
		mb = (double)b[j] > mb ? (double)b[j] : mb;
		ma = (double)a[j] > ma ? (double)a[j] : ma;
	}
	for (size_t j = 0; j < w; j++) {
		sb += weld_exp((double)b[j] - mb);
		sa += weld_exp((double)a[j] - ma);
	}
	for (size_t j = 0; j < w; j++) {
		double p = weld_exp((double)b[j] - mb) / sb + 1e-8,
		       q = weld_exp((double)a[j] - ma) / sa + 1e-8;

		kl += p * weld_log(p / q);
	}
	return (float)kl;
}

/* x rounded to bf16 (the inputs of most checkpoints) */
static float bf16(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
	memcpy(&x, &u, sizeof(x));
	return x;
}

/* rows of width w: base ~ U(-.02, .02), model = base + U(-d, d), in bf16;
 * float(kl) must have the bits of the definition (n rows) */
static int same_bits_rows(size_t w, size_t n, float d, uint32_t *r)
{
	float *a = malloc(w * sizeof(float)), *b = malloc(w * sizeof(float));
	double *scratch = malloc(2 * w * sizeof(double));
	int bad = 0;

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(scratch);
	for (size_t i = 0; i < n; i++) {
		float k, want;

		for (size_t j = 0; j < w; j++) {
			a[j] = bf16(0.04f * fixture_uniform(r));
			b[j] = bf16(a[j] + 2 * d * fixture_uniform(r));
		}
		k = weld_k_arcee_kl(a, b, w, scratch);
		want = definition_kl(a, b, w);
		bad += memcmp(&k, &want, sizeof(k)) != 0;
	}
	free(a);
	free(b);
	free(scratch);
	return bad;
}

/* fine-tuned rows (p/q near 1: the series), of every width around the
 * lanes, and wide rows, where some rows need the definition's sum */
static void test_kl_bits(void **state)
{
	uint32_t r = 12345;

	(void)state;
	for (size_t w = 1; w <= 40; w++)
		assert_int_equal(same_bits_rows(w, 50, 2e-3f, &r), 0);
	assert_int_equal(same_bits_rows(2048, 400, 2e-3f, &r), 0);
	assert_int_equal(same_bits_rows(5632, 100, 2e-3f, &r), 0);
	/* tiny deltas: kl near 1e-10, and unrelated rows: p/q far from 1 */
	assert_int_equal(same_bits_rows(1000, 50, 1e-5f, &r), 0);
	assert_int_equal(same_bits_rows(1000, 50, 1.0f, &r), 0);
	assert_int_equal(same_bits_rows(33, 200, 30.0f, &r), 0);
}

/* rows with infinities, NaN, signed zeros, equal rows, and values whose
 * exponentials underflow: the bits of the definition still */
static void test_kl_special(void **state)
{
	static const float rows[][2][9] = {
		{ { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, { 0, 0, 0, 0, 0, 0, 0, 0, 0 } },
		{ { -0.0f, 0, -0.0f, 0, 0, -0.0f, 0, 0, 1 }, { 0, -0.0f, 0, -0.0f, 0, 0, -0.0f, 0, 1 } },
		{ { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, { 1, 2, 3, 4, 5, 6, 7, 8, 9 } },
		{ { 1, 2, 3, 4, 5, 6, 7, 8, INFINITY }, { 1, 2, 3, 4, 5, 6, 7, 8, 9 } },
		{ { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, { -INFINITY, 2, 3, 4, 5, 6, 7, 8, 9 } },
		{ { 1, 2, 3, 4, NAN, 6, 7, 8, 9 }, { 1, 2, 3, 4, 5, 6, 7, 8, 9 } },
		{ { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, { 1e30f, 0, 0, 0, 0, 0, 0, 0, -1e30f } },
		{ { -800, 0, 0, 0, 0, 0, 0, 0, 0 }, { 0, 0, 0, 0, 0, 0, 0, 0, 800 } },
	};
	double scratch[18];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		float k = weld_k_arcee_kl(rows[i][0], rows[i][1], 9, scratch),
		      want = definition_kl(rows[i][0], rows[i][1], 9);

		assert_memory_equal(&k, &want, sizeof(k));
	}
}

/* at or above the fence: a + (b - a); below: a */
static void test_apply(void **state)
{
	const float a[] = { 1, 1, 1 }, b[] = { 2, 3, 4 }, imp[] = { 0.5f, 0.25f, 0.0f };
	float out[3];

	(void)state;
	weld_k_arcee_apply(a, b, imp, 0.25, 3, out);
	assert_true(out[0] == 2 && out[1] == 3 && out[2] == 1);
	weld_k_arcee_apply(a, b, imp, 0.0, 3, out);     /* Q(.25) = Q(.75) = 0 */
	assert_true(out[0] == 2 && out[1] == 3 && out[2] == 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_importance),
		cmocka_unit_test(test_width_one),
		cmocka_unit_test(test_kl_bits),
		cmocka_unit_test(test_kl_special),
		cmocka_unit_test(test_apply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
