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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_variance),
		cmocka_unit_test(test_mask_ties),
		cmocka_unit_test(test_combine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
