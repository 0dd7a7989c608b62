/*
 * test_team.c - the engine's worker team (lib/engine/team.c): every item of
 * a batch runs exactly once, on the team's threads and the driver, and the
 * driver returns only when all of them have returned; a batch after a batch
 * and a team of one thread alike.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <omp.h>
#include <cmocka.h>

#include "team.h"

#define ITEMS 200

struct tally {
	int runs[ITEMS];
	int by_thread[8];
	int early;      /* batches after which the driver saw items unfinished */
};

static void count_item(void *ctx, int item)
{
	struct tally *t = ctx;
	double x = item;

	/* enough work for the other threads to join in (strict floating
	 * point: the loop cannot be folded away) */
	for (int i = 0; i < 20000; i++)
		x = x * 0.5 + i;
	t->runs[item] += x >= 0;
	__atomic_fetch_add(&t->by_thread[omp_get_thread_num() & 7], 1, __ATOMIC_RELAXED);
}

/* batches batches of ITEMS on a team of `threads`; each item's count */
static void run_batches(int threads, int batches, struct tally *t)
{
	struct weld_team team;

	memset(t, 0, sizeof(*t));
	assert_int_equal(weld_team_init(&team), 0);
#pragma omp parallel num_threads(threads)
	{
		if (omp_get_thread_num() == 0) {
			for (int b = 0; b < batches; b++) {
				int done = 0;

				weld_team_run(&team, ITEMS, count_item, t);
				for (int k = 0; k < 8; k++)
					done += __atomic_load_n(&t->by_thread[k], __ATOMIC_RELAXED);
				t->early += done != (b + 1) * ITEMS;
			}
			weld_team_stop(&team);
		} else {
			weld_team_serve(&team);
		}
	}
	weld_team_destroy(&team);
}

static void test_every_item_once_per_batch(void **state)
{
	struct tally t;
	int total = 0;

	(void)state;
	run_batches(4, 50, &t);
	for (int i = 0; i < ITEMS; i++)
		assert_int_equal(t.runs[i], 50);
	for (int k = 0; k < 8; k++)
		total += t.by_thread[k];
	assert_int_equal(total, 50 * ITEMS);
	assert_int_equal(t.early, 0);
}

static void test_driver_alone(void **state)
{
	struct tally t;

	(void)state;
	run_batches(1, 3, &t);
	for (int i = 0; i < ITEMS; i++)
		assert_int_equal(t.runs[i], 3);
	assert_int_equal(t.by_thread[0], 3 * ITEMS);
}

static void test_empty_batch(void **state)
{
	struct tally t;
	struct weld_team team;

	(void)state;
	memset(&t, 0, sizeof(t));
	assert_int_equal(weld_team_init(&team), 0);
	weld_team_run(&team, 0, count_item, &t);
	weld_team_destroy(&team);
	assert_int_equal(t.by_thread[0], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_item_once_per_batch),
		cmocka_unit_test(test_driver_alone),
		cmocka_unit_test(test_empty_batch),
	};
	return cmocka_run_group_tests_name("engine worker team", tests, NULL, NULL);
}
