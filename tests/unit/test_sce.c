/*
 * test_sce.c - sce's pieces on plain arrays (lib/engine/sce.c): the
 * variance, the selection mask and its tie rule, the sign erase and the
 * energy-weighted mean, on hand-computed cases (k = 0 included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "pcb.h"
#include "sce.h"

/* t = (1, 3): mean 2, v = ((1-2)^2 + (3-2)^2)/2 = 1; equal t: v = 0 */
static void test_variance(void **state)
{
	const float t0[] = { 1, 0.5f, -2 }, t1[] = { 3, 0.5f, 2 };
	const float *t[] = { t0, t1 };
	float v[3];

	(void)state;
	weld_k_sce_var(t, 2, 3, v);
	assert_true(v[0] == 1.0f && v[1] == 0.0f && v[2] == 4.0f);
}

/* keys above the threshold are kept; of the equal ones the first
 * keep_equal, counting across calls through *run */
static void test_mask_ties(void **state)
{
	const float v[] = { 1, 2, 1, 0, 1, 3 };
	unsigned char keep[6];
	uint64_t run = 0;

	(void)state;
	/* the 4 largest: 3, 2, and the first two 1s */
	weld_k_sce_mask(v, 3, weld_pcb_abs_key(1.0f), 2, &run, false, false, keep);
	weld_k_sce_mask(v + 3, 3, weld_pcb_abs_key(1.0f), 2, &run, false, false, keep + 3);
	assert_int_equal(run, 3);
	assert_true(keep[0] && keep[1] && keep[2] && !keep[3] && !keep[4] && keep[5]);
	/* a slice that starts after both kept 1s keeps none of its 1s */
	run = 2;
	weld_k_sce_mask(v, 3, weld_pcb_abs_key(1.0f), 2, &run, false, false, keep);
	assert_true(!keep[0] && keep[1] && !keep[2]);
	weld_k_sce_mask(v, 6, 0, 0, &run, false, true, keep);   /* k = 0: nothing */
	for (int i = 0; i < 6; i++)
		assert_false(keep[i]);
	weld_k_sce_mask(v, 6, 0, 0, &run, true, false, keep);   /* no selection */
	for (int i = 0; i < 6; i++)
		assert_true(keep[i]);
}

/* the equal keys kept known by position: those before cut, whatever
 * tile the positions fall in */
static void test_mask_cut(void **state)
{
	const float v[] = { 1, 2, 1, 0, 1, 3 };
	uint32_t one = weld_pcb_abs_key(1.0f);
	unsigned char keep[6];

	(void)state;
	/* cut after position 2: the 1s at 0 and 2 are kept, the one at 4 not */
	weld_k_sce_mask_cut(v, 3, one, 100, 103, keep);
	weld_k_sce_mask_cut(v + 3, 3, one, 103, 103, keep + 3);
	assert_true(keep[0] && keep[1] && keep[2] && !keep[3] && !keep[4] && keep[5]);
	/* a tile past the cut keeps none of its 1s; one before it, all */
	weld_k_sce_mask_cut(v, 6, one, 200, 103, keep);
	assert_true(!keep[0] && keep[1] && !keep[2] && !keep[3] && !keep[4] && keep[5]);
	weld_k_sce_mask_cut(v, 6, one, 0, 103, keep);
	assert_true(keep[0] && keep[1] && keep[2] && !keep[3] && keep[4] && keep[5]);
	/* cut 0: no equal one */
	weld_k_sce_mask_cut(v, 6, one, 0, 0, keep);
	assert_true(!keep[0] && keep[1] && !keep[2] && !keep[3] && !keep[4] && keep[5]);
}

/* two models, a = (0.25, 0.75): at j = 0 both positive, the mean weighted
 * by a; at j = 1 the sum is negative, only model 1 agrees; j = 2 is not
 * kept; at j = 3 the sum is 0 (elected +) and neither entry is positive */
static void test_combine(void **state)
{
	const float t0[] = { 2, 1, 5, 0 }, t1[] = { 4, -3, 5, 0 };
	const float *t[] = { t0, t1 };
	const unsigned char keep[] = { 1, 1, 0, 1 };
	const float a[] = { 0.25f, 0.75f }, base[] = { 10, 10, 10, -1 };
	float out[4];

	(void)state;
	weld_k_sce_combine(t, keep, 2, a, base, 4, out);
	assert_true(out[0] == 10 + (0.25f * 2 + 0.75f * 4) / (0.25f + 0.75f));
	assert_true(out[1] == 10 + (0.75f * -3) / 0.75f);
	assert_true(out[2] == 10.0f);
	assert_true(out[3] == -1.0f);
}

/* the blocked kernels against the formulas written element by element,
 * over more than one block, with ties in sign and exact zeros */
static void test_blocks(void **state)
{
	enum { N = 3, LEN = 1000 };
	static float x[N][LEN], base[LEN], v[LEN], out[LEN], sq[LEN];
	const float *t[N] = { x[0], x[1], x[2] }, a[N] = { 0.5f, 0.3f, 0.2f };
	unsigned char keep[LEN];
	uint64_t z = 7;

	(void)state;
	for (size_t j = 0; j < LEN; j++) {
		for (size_t s = 0; s < N; s++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			x[s][j] = (z >> 60) < 3 ? 0.0f : (float)((int)(z >> 40 & 0xFF) - 128) * 0.37f;
		}
		base[j] = (float)j * 0.01f;
		keep[j] = (z >> 20 & 3) != 0;
	}
	weld_k_sce_var(t, N, LEN, v);
	weld_k_sce_combine(t, keep, N, a, base, LEN, out);
	weld_k_sce_square(x[1], keep, LEN, sq);
	for (size_t j = 0; j < LEN; j++) {
		float sum = x[0][j] + x[1][j] + x[2][j], mean = sum / 3, acc = 0, num = 0, den = 0;

		for (size_t s = 0; s < N; s++)
			acc += (x[s][j] - mean) * (x[s][j] - mean);
		assert_true(v[j] == acc / 3);
		assert_true(sq[j] == (keep[j] ? x[1][j] * x[1][j] : 0.0f));
		for (size_t s = 0; s < N && keep[j]; s++) {
			bool agree = sum >= 0 ? x[s][j] > 0 : x[s][j] < 0;

			num += agree ? a[s] * x[s][j] : 0.0f;
			den += agree ? a[s] : 0.0f;
		}
		assert_true(out[j] == base[j] + num / (den > 1e-6f ? den : 1e-6f));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_variance),
		cmocka_unit_test(test_mask_ties),
		cmocka_unit_test(test_mask_cut),
		cmocka_unit_test(test_combine),
		cmocka_unit_test(test_blocks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
