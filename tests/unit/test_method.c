/*
 * test_method.c - the method table (lib/method.c): every spelling names a
 * real method once per place, commands and recipes keep their own defaults
 * (DESIGN 5: `weld ties` trims to 0.2, a recipe's `ties` keeps mergekit's
 * density 1), and the questions the planner, the engine and the commands
 * ask (needs a base, reads density, elects signs, takes an option) get the
 * answers the design card gives. Also the name tables and the output dtype
 * names, which live in one place each.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "weld.h"
#include "method.h"

static void test_spellings_unique_per_place(void **state)
{
	const struct weld_method_spelling *a, *b;

	(void)state;
	for (unsigned where = WELD_IN_COMMAND; where <= WELD_IN_RECIPE; where <<= 1)
		for (size_t i = 0; (a = weld_method_spelling_at(i, where)); i++) {
			assert_non_null(a->name);
			assert_string_not_equal(weld_method_name(a->method), "?");
			for (size_t k = i + 1; (b = weld_method_spelling_at(k, where)); k++)
				assert_string_not_equal(a->name, b->name);
			assert_ptr_equal(weld_method_find(a->name, where), a);
		}
}

static void test_commands_have_a_summary(void **state)
{
	static const char *const commands[] = {
		"average", "task-arithmetic", "ties", "dare", "breadcrumbs", "consensus",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct weld_method_spelling *s = weld_method_find(commands[i], WELD_IN_COMMAND);

		assert_non_null(s);
		assert_non_null(s->summary);
	}
	assert_null(weld_method_find("linear", WELD_IN_COMMAND));
	assert_null(weld_method_find("dare_ties", WELD_IN_COMMAND));
}

static void test_command_and_recipe_defaults_differ(void **state)
{
	const struct weld_method_spelling *cmd, *rec;
	double d;

	(void)state;
	cmd = weld_method_find("ties", WELD_IN_COMMAND);
	rec = weld_method_find("ties", WELD_IN_RECIPE);
	assert_non_null(cmd);
	assert_non_null(rec);
	assert_ptr_not_equal(cmd, rec);
	assert_true(weld_method_default(cmd, WELD_P_DENSITY, &d));
	assert_true(d == 0.2);
	assert_true(weld_method_default(rec, WELD_P_DENSITY, &d));
	assert_true(d == 1);
	cmd = weld_method_find("breadcrumbs", WELD_IN_COMMAND);
	assert_true(weld_method_default(cmd, WELD_P_DENSITY, &d) && d == 0.9);
	assert_true(weld_method_default(cmd, WELD_P_GAMMA, &d) && d == 0.01);
	/* dare_linear rescales by L1 as mergekit does; weld's dare by 1/d */
	assert_int_equal(weld_method_find("dare_linear", WELD_IN_RECIPE)->rescale, WELD_RESCALE_L1);
	assert_int_equal(weld_method_find("dare", WELD_IN_COMMAND)->rescale, WELD_RESCALE_INVERSE);
	assert_false(weld_method_default(rec, WELD_P_T, &d));
}

static void test_opts_init_from_spelling(void **state)
{
	struct weld_merge_opts o;

	(void)state;
	weld_merge_opts_init(&o, weld_method_find("dare_ties", WELD_IN_RECIPE));
	assert_int_equal(o.method, WELD_METHOD_DARE);
	assert_int_equal(o.combine, WELD_COMBINE_TIES);
	assert_int_equal(o.rescale, WELD_RESCALE_L1);
	assert_int_equal(o.dtype, -1);
	assert_int_equal(o.k, WELD_DEFAULT_K);
	assert_true(o.max_memory == WELD_DEFAULT_MAX_MEMORY);
	assert_true(o.shard_size == WELD_DEFAULT_SHARD_SIZE);
	assert_true(o.copy_files);
}

static void test_base_rules(void **state)
{
	(void)state;
	assert_int_equal(weld_method_base(WELD_METHOD_AVERAGE), WELD_BASE_NONE);
	assert_int_equal(weld_method_base(WELD_METHOD_COPY), WELD_BASE_NONE);
	assert_int_equal(weld_method_base(WELD_METHOD_TIES), WELD_BASE_REQUIRED);
	assert_int_equal(weld_method_find("passthrough", WELD_IN_RECIPE)->base, WELD_BASE_DONOR);
	assert_int_equal(weld_method_find("linear", WELD_IN_RECIPE)->base, WELD_BASE_NONE);
}

static void test_sources(void **state)
{
	size_t lo, hi;

	(void)state;
	weld_method_sources(WELD_METHOD_SLERP, &lo, &hi);
	assert_true(lo == 1 && hi == 1);
	weld_method_sources(WELD_METHOD_TIES, &lo, &hi);
	assert_true(lo == 1 && hi == WELD_MAX_MODELS);
}

static void test_uses_and_signs(void **state)
{
	struct weld_merge_opts o = { 0 };

	(void)state;
	o.from = WELD_FROM_TA;
	assert_false(weld_method_uses(&o, WELD_METHOD_CONSENSUS, WELD_P_DENSITY));
	assert_false(weld_method_elects_signs(&o, WELD_METHOD_CONSENSUS));
	o.from = WELD_FROM_TIES;
	assert_true(weld_method_uses(&o, WELD_METHOD_CONSENSUS, WELD_P_DENSITY));
	assert_true(weld_method_elects_signs(&o, WELD_METHOD_CONSENSUS));
	assert_true(weld_method_uses(&o, WELD_METHOD_TIES, WELD_P_DENSITY));
	assert_false(weld_method_uses(&o, WELD_METHOD_AVERAGE, WELD_P_DENSITY));
	assert_false(weld_method_uses(&o, WELD_METHOD_AVERAGE, WELD_P_LAMBDA));
	assert_true(weld_method_uses(&o, WELD_METHOD_BREADCRUMBS, WELD_P_GAMMA));
	assert_false(weld_method_uses(&o, WELD_METHOD_SLERP, WELD_P_WEIGHT));
	assert_true(weld_method_uses(&o, WELD_METHOD_SLERP, WELD_P_T));
	o.combine = WELD_COMBINE_SUM;
	assert_false(weld_method_elects_signs(&o, WELD_METHOD_DARE));
	o.combine = WELD_COMBINE_TIES;
	assert_true(weld_method_elects_signs(&o, WELD_METHOD_DARE));
	assert_true(weld_method_elects_signs(&o, WELD_METHOD_TIES));
	assert_false(weld_method_elects_signs(&o, WELD_METHOD_TASK_ARITHMETIC));
}

static void test_takes(void **state)
{
	(void)state;
	assert_true(weld_method_takes(WELD_METHOD_DARE, WELD_K_RESCALE));
	assert_false(weld_method_takes(WELD_METHOD_TIES, WELD_K_RESCALE));
	assert_true(weld_method_takes(WELD_METHOD_CONSENSUS, WELD_K_MASKS));
	assert_false(weld_method_takes(WELD_METHOD_AVERAGE, WELD_K_SCOPE));
	/* every method of mergekit's has a recipe name */
	for (const char *const *n = (const char *const[]){ "linear", "passthrough", "slerp",
		"nuslerp", "multislerp", "karcher", "task_arithmetic", "ties", "dare_ties",
		"dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear",
		"model_stock", "sce", "nearswap", "arcee_fusion", "ram", "ramplus_tl", NULL };
	     *n; n++) {
		assert_non_null(weld_method_find(*n, WELD_IN_RECIPE));
		assert_false(weld_method_mergekit_only(*n));
	}
}

static void test_name_tables(void **state)
{
	(void)state;
	assert_int_equal(weld_name_index(weld_scope_names, "row"), WELD_SCOPE_ROW);
	assert_int_equal(weld_name_index(weld_sign_names, "count"), WELD_SIGN_COUNT);
	assert_int_equal(weld_name_index(weld_rescale_names, "none"), WELD_RESCALE_NONE);
	assert_int_equal(weld_name_index(weld_combine_names, "ties"), WELD_COMBINE_TIES);
	assert_int_equal(weld_name_index(weld_from_names, "ta"), WELD_FROM_TA);
	assert_int_equal(weld_name_index(weld_scope_names, "Row"), -1);
	assert_null(weld_key_names[WELD_K_MASKS]);
	assert_string_equal(weld_key_names[WELD_K_SHARD_SIZE], "shard_size");
	assert_string_equal(weld_param_defs[WELD_P_MASK_LAMBDA].name, "mask_lambda");
}

static void test_output_dtype_names(void **state)
{
	int t;

	(void)state;
	assert_int_equal(weld_dtype_parse_output("bfloat16", false, &t), 0);
	assert_int_equal(t, WELD_BF16);
	assert_int_equal(weld_dtype_parse_output("torch.float16", false, &t), 0);
	assert_int_equal(t, WELD_F16);
	assert_int_equal(weld_dtype_parse_output("FP32", false, &t), 0);
	assert_int_equal(t, WELD_F32);
	assert_int_equal(weld_dtype_parse_output("auto", true, &t), 0);
	assert_int_equal(t, -1);
	assert_int_equal(weld_dtype_parse_output("auto", false, &t), -1);
	assert_int_equal(weld_dtype_parse_output("int64", false, &t), -1);
	assert_string_equal(weld_dtype_torch_name(WELD_BF16), "bfloat16");
	assert_string_equal(weld_dtype_torch_name(WELD_F64), "float64");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spellings_unique_per_place),
		cmocka_unit_test(test_commands_have_a_summary),
		cmocka_unit_test(test_command_and_recipe_defaults_differ),
		cmocka_unit_test(test_opts_init_from_spelling),
		cmocka_unit_test(test_base_rules),
		cmocka_unit_test(test_sources),
		cmocka_unit_test(test_uses_and_signs),
		cmocka_unit_test(test_takes),
		cmocka_unit_test(test_name_tables),
		cmocka_unit_test(test_output_dtype_names),
	};
	return cmocka_run_group_tests_name("method", tests, NULL, NULL);
}
