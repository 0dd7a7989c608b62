/*
 * test_method_select.c - the method table's rows of della, pcb, sce and
 * arcee_fusion: their spellings, the values they read and the passes
 * their properties imply.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "method.h"

static void test_spellings(void **state)
{
	const struct weld_method_spelling *s;

	(void)state;
	for (const char *const *n = (const char *const[]){ "della", "della_linear", "pcb", "sce",
							     "arcee_fusion", "arcee-fusion", NULL };
	     *n; n++) {
		assert_non_null(weld_method_find(*n, WELD_IN_RECIPE));
		assert_false(weld_method_mergekit_only(*n));
	}
	for (const char *const *n = (const char *const[]){ "della", "pcb", "sce", "arcee-fusion", NULL };
	     *n; n++)
		assert_non_null(weld_method_find(*n, WELD_IN_COMMAND));
	/* mergekit's defaults in recipes, the paper's on the command line */
	s = weld_method_find("della", WELD_IN_RECIPE);
	assert_true(s->density == 1 && s->rescale == WELD_RESCALE_L1 && s->normalize &&
		    s->combine == WELD_COMBINE_TIES && s->weight_required);
	s = weld_method_find("della_linear", WELD_IN_RECIPE);
	assert_true(!s->normalize && s->combine == WELD_COMBINE_SUM && s->combine_fixed);
	s = weld_method_find("della", WELD_IN_COMMAND);
	assert_true(s->density == 0.5 && s->rescale == WELD_RESCALE_INVERSE);
	assert_true(weld_method_find("pcb", WELD_IN_COMMAND)->density == 0.1);
}

static void test_values_read(void **state)
{
	struct weld_merge_opts o;

	(void)state;
	weld_merge_opts_init(&o, weld_method_find("della", WELD_IN_COMMAND));
	assert_true(weld_method_uses(&o, WELD_METHOD_DELLA, WELD_P_EPSILON));
	assert_true(weld_method_uses(&o, WELD_METHOD_DELLA, WELD_P_DENSITY));
	assert_false(weld_method_uses(&o, WELD_METHOD_DELLA, WELD_P_GAMMA));
	assert_true(weld_method_elects_signs(&o, WELD_METHOD_DELLA));
	assert_true(weld_method_row_units(&o, WELD_METHOD_DELLA));  /* whatever the scope */
	assert_true(weld_method_rescales(WELD_METHOD_DELLA));
	assert_false(weld_method_random_drop(WELD_METHOD_DELLA));   /* not dare's drop */
	assert_false(weld_method_uses(&o, WELD_METHOD_SCE, WELD_P_WEIGHT));
	assert_true(weld_method_uses(&o, WELD_METHOD_SCE, WELD_P_SELECT_TOPK));
	for (int p = 0; p < WELD_P_COUNT; p++)
		assert_false(weld_method_uses(&o, WELD_METHOD_ARCEE_FUSION, (enum weld_param)p));
	assert_true(weld_method_row_units(&o, WELD_METHOD_ARCEE_FUSION));
	assert_true(weld_method_takes(WELD_METHOD_PCB, WELD_K_CLIP));
	assert_true(weld_method_takes(WELD_METHOD_PCB, WELD_K_SCOPE));
	assert_false(weld_method_takes(WELD_METHOD_DELLA, WELD_K_SCOPE));
	assert_false(weld_method_row_units(&o, WELD_METHOD_PCB));   /* scope tensor */
	o.scope = WELD_SCOPE_ROW;
	assert_true(weld_method_row_units(&o, WELD_METHOD_PCB));
	assert_true(o.clip == WELD_DEFAULT_CLIP && o.select_topk == WELD_DEFAULT_SELECT_TOPK);
	assert_string_equal(weld_key_names[WELD_K_CLIP], "clip");
	assert_string_equal(weld_param_defs[WELD_P_EPSILON].name, "epsilon");
	assert_int_equal(weld_param_defs[WELD_P_SELECT_TOPK].kind, WELD_WHOLE_MERGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spellings),
		cmocka_unit_test(test_values_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
