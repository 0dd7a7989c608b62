/*
 * test_arcee.c - arcee_fusion's pieces on plain arrays (lib/engine/arcee.c):
 * the KL divergence of a row's softmaxes and the importance, a width-1
 * row, and the choice at the fence.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "arcee.h"

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
		cmocka_unit_test(test_apply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
