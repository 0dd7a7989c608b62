/*
 * test_output_parts.c - which shards a part holds, and the plan hash of a
 * part's description (formats/output_parts.c). The join is tested from
 * the command line (tests/cli/test_parts.sh).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "output_parts.h"

/* For every S and N: the parts 1..N take the shards 0..S-1 in order, each
 * once, in runs whose lengths differ by at most one. */
static void test_parts_cover_the_shards_once(void **state)
{
	(void)state;
	for (size_t s = 1; s <= 40; s++)
		for (unsigned n = 1; n <= 50; n++) {
			size_t next = 0, lo = SIZE_MAX, hi = 0;

			for (unsigned i = 1; i <= n; i++) {
				size_t first, count = weld_part_shards(s, i, n, &first);

				assert_int_equal(first, next);
				next += count;
				lo = count < lo ? count : lo;
				hi = count > hi ? count : hi;
			}
			assert_int_equal(next, s);
			assert_true(hi - lo <= 1);
			if (n > s)
				assert_int_equal(lo, 0);
		}
}

static void test_part_out_of_range_holds_nothing(void **state)
{
	size_t first = 7;

	(void)state;
	assert_int_equal(weld_part_shards(10, 0, 3, &first), 0);
	assert_int_equal(first, 0);
	assert_int_equal(weld_part_shards(10, 4, 3, &first), 0);
	assert_int_equal(weld_part_shards(10, 1, 0, &first), 0);
	assert_int_equal(weld_part_shards(999999, WELD_MAX_PARTS, WELD_MAX_PARTS, &first), 10);
	assert_int_equal(first, 999989);
}

/* The "plan" field of a description, as a new string. */
static char *plan_of(const char *text)
{
	cJSON *root = cJSON_Parse(text);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "plan");
	char *r = cJSON_IsString(p) ? strdup(p->valuestring) : NULL;

	cJSON_Delete(root);
	return r;
}

/* The plan hash describes the output, not the split: the same for any
 * part and N, different when the recipe, the index or a shard differs. */
static void test_plan_hash_names_the_output_not_the_split(void **state)
{
	struct weld_part_shard s[2] = { { "model-00001-of-00002.safetensors", 100 },
					{ "model-00002-of-00002.safetensors", 200 } };
	const char *index = "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}";
	char *d1 = weld_part_describe(1, 2, "{\"merge_method\":\"ties\"}", index, s, 2);
	char *d2 = weld_part_describe(3, 5, "{\"merge_method\":\"ties\"}", index, s, 2);
	char *d3 = weld_part_describe(1, 2, "{\"merge_method\":\"dare\"}", index, s, 2);
	char *d4, *p1, *p2, *p3, *p4;

	(void)state;
	s[1].bytes = 201;
	d4 = weld_part_describe(1, 2, "{\"merge_method\":\"ties\"}", index, s, 2);
	assert_non_null(d1);
	assert_non_null(d4);
	p1 = plan_of(d1);
	p2 = plan_of(d2);
	p3 = plan_of(d3);
	p4 = plan_of(d4);
	assert_non_null(p1);
	assert_int_equal(strlen(p1), 16);
	assert_string_equal(p1, p2);
	assert_string_not_equal(p1, p3);
	assert_string_not_equal(p1, p4);
	free(p1);
	free(p2);
	free(p3);
	free(p4);
	free(d1);
	free(d2);
	free(d3);
	free(d4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_cover_the_shards_once),
		cmocka_unit_test(test_part_out_of_range_holds_nothing),
		cmocka_unit_test(test_plan_hash_names_the_output_not_the_split),
	};
	return cmocka_run_group_tests_name("output_parts", tests, NULL, NULL);
}
