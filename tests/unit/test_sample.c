/*
 * test_sample.c - the super-tiles the top-k sample takes (sample.h): one
 * per group of SAMPLE_STRIDE (the first group: its first), and each phase
 * of data repeating every SAMPLE_STRIDE super-tiles about equally often.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "sample.h"

#define GROUPS 4096

/* The first group gives its first super-tile, every other group one. */
static void test_one_per_group(void **state)
{
	(void)state;
	assert_true(sample_takes(0));
	for (uint64_t i = 1; i < SAMPLE_STRIDE; i++)
		assert_false(sample_takes(i));
	for (uint64_t g = 1; g < GROUPS; g++) {
		int taken = 0;

		for (uint64_t i = g * SAMPLE_STRIDE; i < (g + 1) * SAMPLE_STRIDE; i++)
			taken += sample_takes(i);
		assert_int_equal(taken, 1);
	}
}

/* Data repeating every SAMPLE_STRIDE super-tiles: each phase is taken in
 * about 1/SAMPLE_STRIDE of the groups (within 5 standard deviations of a
 * fair draw), not always the same one. */
static void test_phases_even(void **state)
{
	uint64_t count[SAMPLE_STRIDE] = { 0 };
	double mean = (double)(GROUPS - 1) / SAMPLE_STRIDE;
	double sd = sqrt(mean * (1 - 1.0 / SAMPLE_STRIDE));

	(void)state;
	for (uint64_t i = SAMPLE_STRIDE; i < (uint64_t)GROUPS * SAMPLE_STRIDE; i++)
		count[i % SAMPLE_STRIDE] += sample_takes(i);
	for (int c = 0; c < SAMPLE_STRIDE; c++) {
		assert_true((double)count[c] > mean - 5 * sd);
		assert_true((double)count[c] < mean + 5 * sd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_per_group),
		cmocka_unit_test(test_phases_even),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
