/*
 * test_recipe.c - merge recipes (lib/recipe, through recipe.h): a recipe
 * parses into the method, models and settings it names; each class of
 * mistake (unknown key, unknown method, wrong type, value out of range,
 * parameter the method does not take, invalid JSON, missing model) is
 * refused with a message naming the recipe and the JSON path; parameters
 * are evaluated per tensor as DESIGN 5 says (gradients over the layers,
 * filter lists where the first match wins, the precedence of the levels);
 * mergekit's method names take mergekit's defaults and weld's take weld's;
 * relative model paths are resolved against the recipe's folder. The
 * models are tiny 4-layer folders written by the library's own writer.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weld.h"
#include "recipe.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- fixtures */

#define LAYERS 4
#define EMBED "model.embed_tokens.weight"
#define NORM "model.norm.weight"

static char *up_name(char *buf, size_t len, int layer)
{
	snprintf(buf, len, "model.layers.%d.mlp.up_proj.weight", layer);
	return buf;
}

static char *q_name(char *buf, size_t len, int layer)
{
	snprintf(buf, len, "model.layers.%d.self_attn.q_proj.weight", layer);
	return buf;
}

/* dir/name: a model with an embedding, LAYERS layers of an MLP and an
 * attention matrix (rows x 4 each), and a final norm; all zeros. */
static void write_model(const char *dir, const char *name, int64_t rows)
{
	struct weld_out_tensor t[2 + 2 * LAYERS];
	char names[2 * LAYERS][64];
	struct weld_writer_opts wo = { 0 };
	struct weld_error err = { 0 };
	char *path = fixture_path(dir, name);
	weld_writer *w = NULL;
	size_t n = 0;
	float zeros[64] = { 0 };

	t[n++] = (struct weld_out_tensor){ EMBED, WELD_F32, 2, { 8, 4 } };
	t[n++] = (struct weld_out_tensor){ NORM, WELD_F32, 1, { 4 } };
	for (int l = 0; l < LAYERS; l++) {
		t[n++] = (struct weld_out_tensor){ up_name(names[2 * l], 64, l), WELD_F32, 2,
						   { rows, 4 } };
		t[n++] = (struct weld_out_tensor){ q_name(names[2 * l + 1], 64, l), WELD_F32, 2,
						   { 4, 4 } };
	}
	if (weld_writer_open(&w, path, t, n, &wo, &err) != 0)
		print_error("weld_writer_open('%s'): %s\n", path, err.msg);
	assert_non_null(w);
	for (size_t k = 0; k < n; k++) {
		size_t nb = 4;

		for (int d = 0; d < t[k].ndim; d++)
			nb *= (size_t)t[k].shape[d];
		assert_true(nb <= sizeof(zeros));
		assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, t[k].name), zeros,
						   nb, &err), 0);
	}
	assert_int_equal(weld_writer_commit(w, &err), 0);
	weld_writer_close(w);
	free(path);
}

/* *state: a folder holding m/base, m/math, m/code, m/wide (math with wider
 * MLP rows) and an empty r/ for the recipes, which name the models
 * ../m/NAME. */
static int setup_models(void **state)
{
	char *m, *r;

	if (fixture_setup_dir(state) < 0)
		return -1;
	m = fixture_path(*state, "m");
	r = fixture_path(*state, "r");
	if (mkdir(m, 0777) < 0 || mkdir(r, 0777) < 0)
		return -1;
	write_model(m, "base", 4);
	write_model(m, "math", 4);
	write_model(m, "code", 4);
	write_model(m, "wide", 6);
	free(m);
	free(r);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

/* The recipes are written with ' for " to keep them readable. */
static char *json(const char *text)
{
	char *s = strdup(text);

	assert_non_null(s);
	for (char *c = s; *c; c++)
		if (*c == '\'')
			*c = '"';
	return s;
}

/* Parse a recipe (label "r.json", models resolved against dir/r). */
static int parse(void **state, const char *text, weld_recipe **r, struct weld_error *err)
{
	char *dir = fixture_path(*state, "r"), *s = json(text);
	int ret = weld_recipe_parse(r, s, strlen(s), "r.json", dir, err);

	free(s);
	free(dir);
	return ret;
}

static weld_recipe *parse_ok(void **state, const char *text)
{
	struct weld_error err = { 0 };
	weld_recipe *r = NULL;

	if (parse(state, text, &r, &err) != 0)
		print_error("weld_recipe_parse: %s\n", err.msg);
	assert_non_null(r);
	return r;
}

/* The recipe must be refused while parsing, with a WELD_ERR_ARG message
 * "r.json: <where>: <what>..." (what is the start of the message). */
static void parse_fails(void **state, const char *text, const char *where, const char *what)
{
	struct weld_error err = { 0 };
	weld_recipe *r = (weld_recipe *)&err;
	char want[512];

	assert_int_equal(parse(state, text, &r, &err), -1);
	assert_null(r);
	assert_int_equal(err.status, WELD_ERR_ARG);
	snprintf(want, sizeof(want), "r.json: %s%s%s", where, *where ? ": " : "", what);
	if (strncmp(err.msg, want, strlen(want)) != 0)
		print_error("message '%s'\n   expected '%s...'\n", err.msg, want);
	assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
}

/* Plan a parsed recipe with one thread; fails the test on an error. */
static weld_plan *plan_ok(weld_recipe *r)
{
	struct weld_recipe_settings s = { .threads = 1 };
	struct weld_error err = { 0 };
	weld_plan *p = NULL;

	if (weld_recipe_plan(r, &s, &p, &err) != 0)
		print_error("weld_recipe_plan: %s\n", err.msg);
	assert_non_null(p);
	return p;
}

static const struct weld_job *job_named(const weld_plan *p, const char *name)
{
	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		if (strcmp(weld_plan_job(p, i)->name, name) == 0)
			return weld_plan_job(p, i);
	print_error("no job '%s'\n", name);
	fail();
	return NULL;
}

/* Plan index of the model the recipe calls label. */
static int model_index(const weld_recipe *r, const weld_plan *p, const char *label)
{
	for (size_t i = 0; i < weld_plan_model_count(p); i++)
		if (strcmp(weld_recipe_model_label(r, i), label) == 0)
			return (int)i;
	print_error("no model '%s'\n", label);
	fail();
	return -1;
}

/* The source of job `tensor` taken from model `label`. */
static const struct weld_source *source_of(const weld_recipe *r, const weld_plan *p,
					   const char *tensor, const char *label)
{
	const struct weld_job *j = job_named(p, tensor);
	int m = model_index(r, p, label);

	for (size_t s = 0; s < j->nsrc; s++)
		if (j->src[s].model == m)
			return &j->src[s];
	print_error("job '%s' has no source from '%s'\n", tensor, label);
	fail();
	return NULL;
}

static void assert_near(double got, double want, const char *what)
{
	if (!(fabs(got - want) < 1e-12))
		print_error("%s: %.17g, expected %.17g\n", what, got, want);
	assert_true(fabs(got - want) < 1e-12);
}

static void assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		print_error("'%s' lacks '%s'\n", text, part);
	assert_non_null(strstr(text, part));
}

#define TA_MATH "{'merge_method': 'task_arithmetic', 'base_model': '../m/base', " \
		"'models': [{'model': '../m/math', 'parameters': {'weight': "

/* ---------------------------------------------------------------- parsing */

static void test_parse_reads_method_models_and_settings(void **state)
{
	weld_recipe *r = parse_ok(state,
		"{'merge_method': 'dare_ties', 'base_model': '../m/base',"
		" 'models': [{'model': '../m/math', 'parameters': {'weight': 1}},"
		" {'model': '../m/code', 'parameters': {'weight': 0.5}}],"
		" 'parameters': {'density': 0.7}, 'out_dtype': 'bfloat16',"
		" 'weld': {'seed': 7, 'scope': 'row', 'sign': 'count', 'shard_size': '2K'}}");
	const struct weld_merge_opts *o;
	weld_plan *p;

	assert_string_equal(weld_recipe_method(r), "dare_ties");
	p = plan_ok(r);
	o = weld_plan_opts(p);
	assert_int_equal(o->method, WELD_METHOD_DARE);
	assert_int_equal(o->combine, WELD_COMBINE_TIES);
	assert_true(o->seed == 7);
	assert_int_equal(o->scope, WELD_SCOPE_ROW);
	assert_int_equal(o->sign, WELD_SIGN_COUNT);
	assert_true(o->shard_size == 2000);
	assert_int_equal(o->dtype, WELD_BF16);
	/* models in order of first mention: the base, then the list */
	assert_int_equal(weld_plan_model_count(p), 3);
	assert_string_equal(weld_recipe_model_label(r, 0), "../m/base");
	assert_string_equal(weld_recipe_model_label(r, 1), "../m/math");
	assert_string_equal(weld_recipe_model_label(r, 2), "../m/code");
	assert_null(weld_recipe_model_label(r, 3));
	/* one job per tensor of the base, merged against it */
	assert_int_equal(weld_plan_job_count(p), 2 + 2 * LAYERS);
	for (size_t i = 0; i < weld_plan_job_count(p); i++) {
		const struct weld_job *j = weld_plan_job(p, i);

		assert_int_equal(j->base_model, 0);
		assert_int_equal(j->nsrc, 2);
		assert_int_equal(j->dtype, WELD_BF16);
		assert_near(j->src[0].weight, 1, "math's weight");
		assert_near(j->src[1].weight, 0.5, "code's weight");
		assert_near(j->src[0].density, 0.7, "density");
	}
	weld_plan_free(p);
	weld_recipe_free(r);
	weld_recipe_free(NULL);
}

/* An unknown key anywhere: its JSON path and the nearest known key. */
static void test_unknown_key_names_path_and_suggestion(void **state)
{
	parse_fails(state, "{'merge_methd': 'ties', 'models': [{'model': '../m/math'}]}",
		    "merge_methd", "unknown key (did you mean 'merge_method'?)");
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'},"
		    " {'model': '../m/code', 'parameters': {'desnity': 0.5}}]}",
		    "models[1].parameters.desnity", "unknown parameter (did you mean 'density'?)");
	parse_fails(state,
		    "{'merge_method': 'dare_ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'weld': {'sed': 1}}",
		    "weld.sed", "unknown key (did you mean 'seed'?)");
	parse_fails(state,
		    TA_MATH "[{'filtre': 'mlp', 'value': 1}]}}]}",
		    "models[0].parameters.weight[0].filtre", "unknown key (did you mean 'filter'?)");
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math', 'colour': 1}]}",
		    "models[0].colour", "unknown key (expected one of: model, parameters)");
}

static void test_unknown_method_suggests_nearest(void **state)
{
	parse_fails(state, "{'merge_method': 'tie', 'base_model': '../m/base', 'models': [{'model': '../m/math'}]}",
		    "merge_method", "unknown method 'tie' (did you mean 'ties'?)");
	parse_fails(state, "{'merge_method': 'frobnicate', 'models': [{'model': '../m/math'}]}",
		    "merge_method", "unknown method 'frobnicate' (one of: ");
}

static void test_wrong_type_names_path(void **state)
{
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'parameters': {'lambda': 'high'}}",
		    "parameters.lambda", "expected a number");
	parse_fails(state, TA_MATH "[1, 'x']}}]}",
		    "models[0].parameters.weight[1]", "a gradient holds numbers only, not a string");
	parse_fails(state, TA_MATH "{'filter': 'mlp', 'value': 1}}}]}",
		    "models[0].parameters.weight", "a {\"filter\", \"value\"} entry must be inside a list");
	parse_fails(state, "{'merge_method': 'linear', 'models': {'model': '../m/math'}}",
		    "models", "expected a non-empty list");
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'weld': {'allow_missing': 1}}",
		    "weld.allow_missing", "expected true or false, not a number");
	parse_fails(state, "{'merge_method': 7, 'models': [{'model': '../m/math'}]}",
		    "merge_method", "expected a method name (a string), not a number");
}

static void test_value_out_of_range_names_path(void **state)
{
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base',"
		    " 'models': [{'model': '../m/math', 'parameters': {'density': 1.5}}]}",
		    "models[0].parameters.density", "density 1.5 is outside (0, 1]");
	parse_fails(state,
		    "{'merge_method': 'slerp', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'parameters': {'t': [{'filter': 'mlp', 'value': [0, 2]}, {'value': 0.5}]}}",
		    "parameters.t[0].value[1]", "t 2 is outside [0, 1]");
	parse_fails(state,
		    "{'merge_method': 'dare_ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'weld': {'trim': 0}}",
		    "weld.trim", "expected a density in (0, 1]");
}

static void test_parameter_not_taken_by_method(void **state)
{
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'parameters': {'gamma': 0.1}}",
		    "parameters.gamma", "'gamma' is not a parameter of ties");
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base',"
		    " 'models': [{'model': '../m/math', 'parameters': {'lambda': 0.5}}]}",
		    "models[0].parameters.lambda", "'lambda' is not a per-model parameter");
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base', 'models': [{'model': '../m/math'}],"
		    " 'weld': {'seed': 3}}",
		    "weld.seed", "'seed' is not used by ties");
}

static void test_invalid_json_names_line(void **state)
{
	parse_fails(state, "{'merge_method': 'ties',\n 'models': [{'model': '../m/math'},]}", "",
		    "invalid JSON at line 2");
	parse_fails(state, "merge_method: ties\n", "", "not a JSON object");
}

/* A model that is not there: the JSON path, the name as written and the
 * path it was looked for at (beside the recipe). */
static void test_missing_model_names_path(void **state)
{
	char where[PATH_MAX + 64], *m = fixture_path(*state, "m");

	snprintf(where, sizeof(where), "model '../m/nope' not found: no file or folder '%s/nope'", m);
	parse_fails(state,
		    "{'merge_method': 'ties', 'base_model': '../m/base',"
		    " 'models': [{'model': '../m/math'}, {'model': '../m/nope'}]}",
		    "models[1].model", where);
	parse_fails(state, "{'merge_method': 'ties', 'models': [{'model': '../m/math'}]}",
		    "base_model", "ties needs a base_model");
	free(m);
}

/* Relative model paths are resolved against the recipe file's folder,
 * whatever the current folder is; the plan opens them by absolute path
 * and the normalised recipe records those. */
static void test_relative_paths_resolved_against_recipe_folder(void **state)
{
	char cwd[PATH_MAX], *top = realpath(*state, NULL), want[PATH_MAX + 64];
	char *sub = fixture_path(*state, "r/deeper"), *file = fixture_path(sub, "recipe.json");
	char *text = json("{'merge_method': 'linear',"
			  " 'models': [{'model': '../../m/math', 'parameters': {'weight': 1}},"
			  " {'model': '../../m/code', 'parameters': {'weight': 1}}]}");
	struct weld_error err = { 0 };
	weld_recipe *r = NULL;
	weld_plan *p;

	assert_non_null(top);
	assert_int_equal(mkdir(sub, 0777), 0);
	free(fixture_write(sub, "recipe.json", text, strlen(text)));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	/* from the top folder, ../../m/math would be outside it */
	assert_int_equal(chdir(top), 0);
	if (weld_recipe_load(&r, "r/deeper/recipe.json", &err) != 0)
		print_error("weld_recipe_load: %s\n", err.msg);
	assert_int_equal(chdir(cwd), 0);
	assert_non_null(r);
	p = plan_ok(r);
	snprintf(want, sizeof(want), "%s/m/math", top);
	assert_string_equal(weld_model_path(weld_plan_model(p, 0)), want);
	snprintf(want, sizeof(want), "\"model\":\"%s/m/code\"", top);
	assert_contains(weld_recipe_json(r), want);
	assert_string_equal(weld_recipe_model_label(r, 0), "../../m/math");
	weld_plan_free(p);
	weld_recipe_free(r);

	/* an absolute path stays as it is */
	free(text);
	snprintf(want, sizeof(want), "{'merge_method': 'linear', 'models': [{'model': '%s/m/math',"
		 " 'parameters': {'weight': 1}}]}", top);
	r = parse_ok(state, want);
	p = plan_ok(r);
	snprintf(want, sizeof(want), "%s/m/math", top);
	assert_string_equal(weld_model_path(weld_plan_model(p, 0)), want);
	weld_plan_free(p);
	weld_recipe_free(r);
	free(file);
	free(sub);
	free(top);
}

/* ---------------------------------------------------------------- values per tensor */

/* A list of numbers is a gradient: piecewise linear over t = layer/(L-1),
 * t = 0 for the tensors outside the layers. */
static void test_gradient_interpolated_over_layers(void **state)
{
	static const double three[LAYERS] = { 0, 2.0 / 3, 1 - 0.5 / 3, 0.5 };
	weld_recipe *r = parse_ok(state, TA_MATH "[0, 1]}},"
				  " {'model': '../m/code', 'parameters': {'weight': [0, 1, 0.5]}}],"
				  " 'parameters': {'lambda': [2, 1]}}");
	weld_plan *p = plan_ok(r);
	char name[64], what[128];

	for (int l = 0; l < LAYERS; l++) {
		snprintf(what, sizeof(what), "layer %d", l);
		assert_near(source_of(r, p, up_name(name, sizeof(name), l), "../m/math")->weight,
			    l / 3.0, what);
		assert_near(source_of(r, p, q_name(name, sizeof(name), l), "../m/math")->weight,
			    l / 3.0, what);
		assert_near(source_of(r, p, up_name(name, sizeof(name), l), "../m/code")->weight,
			    three[l], what);
		assert_near(job_named(p, up_name(name, sizeof(name), l))->lambda, 2 - l / 3.0, what);
	}
	assert_near(source_of(r, p, EMBED, "../m/math")->weight, 0, "embedding");
	assert_near(source_of(r, p, NORM, "../m/code")->weight, 0, "final norm");
	assert_near(job_named(p, NORM)->lambda, 2, "final norm's lambda");
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* In a filter list the first entry whose filter is in the tensor's name
 * wins, even when a later one matches too. */
static void test_filter_first_match_wins(void **state)
{
	weld_recipe *r = parse_ok(state, TA_MATH
				  "[{'filter': 'mlp', 'value': 1}, {'filter': 'up_proj', 'value': 2},"
				  " {'filter': 'self_attn', 'value': 3}, {'filter': 'q_proj', 'value': 4},"
				  " {'value': 0.25}]}}]}");
	weld_plan *p = plan_ok(r);
	char name[64];

	assert_near(source_of(r, p, up_name(name, sizeof(name), 1), "../m/math")->weight, 1, "mlp");
	assert_near(source_of(r, p, q_name(name, sizeof(name), 1), "../m/math")->weight, 3,
		    "self_attn");
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* An entry without a filter is the fallback for the tensors no filter
 * names; its value may be a gradient too. */
static void test_filter_fallback_without_filter(void **state)
{
	weld_recipe *r = parse_ok(state, TA_MATH
				  "[{'filter': 'mlp', 'value': 1}, {'value': [0, 0.9]}]}}]}");
	weld_plan *p = plan_ok(r);
	char name[64];

	assert_near(source_of(r, p, up_name(name, sizeof(name), 3), "../m/math")->weight, 1, "mlp");
	assert_near(source_of(r, p, q_name(name, sizeof(name), 3), "../m/math")->weight, 0.9,
		    "fallback, last layer");
	assert_near(source_of(r, p, q_name(name, sizeof(name), 0), "../m/math")->weight, 0,
		    "fallback, first layer");
	assert_near(source_of(r, p, NORM, "../m/math")->weight, 0, "fallback, outside the layers");
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* A filter list with no entry for a tensor leaves it to the next level:
 * the model's parameters, then the top level's, then the default. */
static void test_filter_without_match_falls_to_next_level(void **state)
{
	weld_recipe *r = parse_ok(state, TA_MATH "[{'filter': 'self_attn', 'value': 3}]}},"
				  " {'model': '../m/code', 'parameters': {'weight': [{'filter': 'self_attn', 'value': 4}]}}],"
				  " 'parameters': {'weight': [{'filter': 'up_proj', 'value': 0.5}, {'value': 1}]}}");
	weld_plan *p = plan_ok(r);
	char name[64];

	assert_near(source_of(r, p, q_name(name, sizeof(name), 2), "../m/math")->weight, 3,
		    "the model's own filter");
	assert_near(source_of(r, p, q_name(name, sizeof(name), 2), "../m/code")->weight, 4,
		    "the model's own filter");
	assert_near(source_of(r, p, up_name(name, sizeof(name), 2), "../m/math")->weight, 0.5,
		    "the top level's filter");
	assert_near(source_of(r, p, NORM, "../m/code")->weight, 1, "the top level's fallback");
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* ---------------------------------------------------------------- defaults */

#define TWO_MODELS "'base_model': '../m/base', 'models': [{'model': '../m/math', 'parameters': {'weight': 1}}," \
		   " {'model': '../m/code', 'parameters': {'weight': 1}}]"

/* Every source of every merged job has this density, gamma and mask lambda. */
static void assert_sources(const weld_plan *p, double density, double gamma, double mask_lambda)
{
	for (size_t i = 0; i < weld_plan_job_count(p); i++) {
		const struct weld_job *j = weld_plan_job(p, i);

		assert_near(j->lambda, 1, "lambda");
		if (j->method == WELD_METHOD_BREADCRUMBS)
			assert_near(j->gamma, gamma, "gamma");
		for (size_t s = 0; s < j->nsrc; s++) {
			assert_near(j->src[s].weight, 1, "weight");
			if (density > 0)
				assert_near(j->src[s].density, density, "density");
			if (mask_lambda > 0)
				assert_near(j->src[s].mask_lambda, mask_lambda, "mask_lambda");
		}
	}
}

/* mergekit's names mean mergekit's defaults: no trimming (density 1), ties
 * normalised, the dare pair rescaled by L1 (DESIGN 5). */
static void test_mergekit_names_take_mergekit_defaults(void **state)
{
	weld_recipe *r = parse_ok(state, "{'merge_method': 'ties', " TWO_MODELS "}");
	weld_plan *p = plan_ok(r);

	assert_true(weld_plan_opts(p)->normalize);
	assert_int_equal(weld_plan_opts(p)->sign, WELD_SIGN_SUM);
	assert_int_equal(weld_plan_opts(p)->scope, WELD_SCOPE_TENSOR);
	assert_sources(p, 1, 0, 0);
	assert_contains(weld_recipe_json(r), "\"density\":1");
	weld_plan_free(p);
	weld_recipe_free(r);

	r = parse_ok(state, "{'merge_method': 'dare_ties', " TWO_MODELS "}");
	p = plan_ok(r);
	assert_int_equal(weld_plan_opts(p)->rescale, WELD_RESCALE_L1);
	assert_int_equal(weld_plan_opts(p)->combine, WELD_COMBINE_TIES);
	assert_false(weld_plan_opts(p)->normalize);
	assert_sources(p, 1, 0, 0);
	weld_plan_free(p);
	weld_recipe_free(r);

	r = parse_ok(state, "{'merge_method': 'breadcrumbs', " TWO_MODELS "}");
	p = plan_ok(r);
	assert_int_equal(weld_plan_opts(p)->combine, WELD_COMBINE_SUM);
	assert_sources(p, 1, 0.01, 0);
	weld_plan_free(p);
	weld_recipe_free(r);

	r = parse_ok(state, "{'merge_method': 'task_arithmetic', " TWO_MODELS "}");
	p = plan_ok(r);
	assert_false(weld_plan_opts(p)->normalize);
	assert_sources(p, 0, 0, 0);
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* weld's own names take the defaults of weld's commands (DESIGN 4). */
static void test_weld_names_take_weld_defaults(void **state)
{
	weld_recipe *r = parse_ok(state, "{'merge_method': 'dare', " TWO_MODELS "}");
	weld_plan *p = plan_ok(r);

	assert_int_equal(weld_plan_opts(p)->method, WELD_METHOD_DARE);
	assert_int_equal(weld_plan_opts(p)->rescale, WELD_RESCALE_INVERSE);
	assert_int_equal(weld_plan_opts(p)->combine, WELD_COMBINE_SUM);
	assert_sources(p, 0.5, 0, 0);
	weld_plan_free(p);
	weld_recipe_free(r);

	r = parse_ok(state, "{'merge_method': 'consensus', " TWO_MODELS ", 'weld': {'from': 'ties'}}");
	p = plan_ok(r);
	assert_int_equal(weld_plan_opts(p)->k, 2);
	assert_int_equal(weld_plan_opts(p)->from, WELD_FROM_TIES);
	assert_sources(p, 0.2, 0, 0.6);
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* The normalised recipe writes every default out, and reads back to the
 * same text. */
static void test_normalised_recipe_reads_back_the_same(void **state)
{
	char *top = realpath(*state, NULL), text[2 * PATH_MAX + 256], *once, *twice;
	struct weld_error err = { 0 };
	weld_recipe *r;
	weld_plan *p;

	assert_non_null(top);
	snprintf(text, sizeof(text),
		 "{\"merge_method\": \"ties\", \"base_model\": \"%s/m/base\","
		 " \"models\": [{\"model\": \"%s/m/math\", \"parameters\": {\"weight\": [0, 1]}}]}",
		 top, top);
	once = weld_recipe_normalise(text, &err);
	if (!once)
		print_error("weld_recipe_normalise: %s\n", err.msg);
	assert_non_null(once);
	assert_contains(once, "\"density\":1");
	assert_contains(once, "\"lambda\":1");
	assert_contains(once, "\"normalize\":true");
	assert_contains(once, "\"weight\":[0,1]");
	assert_contains(once, "\"sign\":\"sum\"");
	twice = weld_recipe_normalise(once, &err);
	assert_non_null(twice);
	assert_string_equal(twice, once);

	/* and the recipe a plan stores is that text */
	assert_int_equal(weld_recipe_parse(&r, text, strlen(text), "r.json", NULL, &err), 0);
	p = plan_ok(r);
	assert_string_equal(weld_recipe_json(r), once);
	assert_string_equal(weld_plan_opts(p)->recipe_json, once);
	weld_plan_free(p);
	weld_recipe_free(r);
	assert_null(weld_recipe_normalise("{\"merge_method\": \"tie\"}", &err));
	assert_int_equal(err.status, WELD_ERR_ARG);
	free(once);
	free(twice);
	free(top);
}

/* What the command line sets wins over the recipe's weld object. */
static void test_settings_override_the_recipe(void **state)
{
	weld_recipe *r = parse_ok(state, "{'merge_method': 'ties', " TWO_MODELS ","
				  " 'weld': {'max_memory': '64M', 'shard_size': '1G'}}");
	struct weld_recipe_settings s = { .threads = 1, .has_max_memory = true,
					  .max_memory = 32000000 };
	struct weld_error err = { 0 };
	weld_plan *p = NULL;

	assert_int_equal(weld_recipe_plan(r, &s, &p, &err), 0);
	assert_true(weld_plan_opts(p)->max_memory == 32000000);
	assert_true(weld_plan_opts(p)->shard_size == 1000000000);
	assert_int_equal(weld_plan_opts(p)->threads, 1);
	weld_plan_free(p);
	weld_recipe_free(r);
}

/* ---------------------------------------------------------------- planning errors */

/* Errors found when the models are opened name the recipe too. */
static void test_shape_mismatch_names_recipe(void **state)
{
	weld_recipe *r = parse_ok(state, "{'merge_method': 'ties', 'base_model': '../m/base',"
				  " 'models': [{'model': '../m/math'}, {'model': '../m/wide'}],"
				  " 'parameters': {'weight': 1}}");
	struct weld_recipe_settings s = { .threads = 1 };
	struct weld_error err = { 0 };
	weld_plan *p = (weld_plan *)&err;
	char name[64];

	assert_int_equal(weld_recipe_plan(r, &s, &p, &err), -1);
	assert_null(p);
	assert_int_equal(err.status, WELD_ERR_MISMATCH);
	assert_int_equal(strncmp(err.msg, "r.json: ", 8), 0);
	assert_contains(err.msg, up_name(name, sizeof(name), 0));
	assert_contains(err.msg, "[6, 4] in '");
	assert_contains(err.msg, "[4, 4] in '");
	weld_recipe_free(r);
}

int main(void)
{
#define M(f) cmocka_unit_test_setup_teardown(f, setup_models, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		M(test_parse_reads_method_models_and_settings),
		M(test_unknown_key_names_path_and_suggestion),
		M(test_unknown_method_suggests_nearest),
		M(test_wrong_type_names_path),
		M(test_value_out_of_range_names_path),
		M(test_parameter_not_taken_by_method),
		M(test_invalid_json_names_line),
		M(test_missing_model_names_path),
		M(test_relative_paths_resolved_against_recipe_folder),
		M(test_gradient_interpolated_over_layers),
		M(test_filter_first_match_wins),
		M(test_filter_fallback_without_filter),
		M(test_filter_without_match_falls_to_next_level),
		M(test_mergekit_names_take_mergekit_defaults),
		M(test_weld_names_take_weld_defaults),
		M(test_normalised_recipe_reads_back_the_same),
		M(test_settings_override_the_recipe),
		M(test_shape_mismatch_names_recipe),
	};
#undef M
	return cmocka_run_group_tests_name("recipe", tests, NULL, NULL);
}
