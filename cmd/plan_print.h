/*
 * plan_print.h - the text and JSON forms of a plan (weld plan).
 */
#ifndef WELD_PLAN_PRINT_H
#define WELD_PLAN_PRINT_H

#include "weld.h"

/* How a recipe names things, for plan_print (all may be NULL). */
struct plan_labels {
	const char *recipe;          /* the recipe file */
	const char *method;          /* merge_method as the recipe spells it */
	const char *const *models;   /* model i as the recipe names it */
	const char *recipe_json;     /* the normalised recipe, added to --json */
};

/*
 * Print a finished plan on stdout: a header (method, options, models,
 * memory bound), then one line per output tensor with its dtype, shape,
 * method, evaluated parameters, base and sources (a source tensor whose
 * name differs from the output's is shown as modelN:name). Stable text,
 * fit for diffing; json gives one JSON object instead. labels may be NULL.
 */
void plan_print(const weld_plan *p, bool json, const struct plan_labels *labels);

#endif
