/*
 * recipe_impl.h - the inside of a weld_recipe, shared by the files of
 * lib/recipe and by nothing else.
 *
 * Checking happens in two rounds, both before anything is written. Parsing
 * (recipe_parse.c, with recipe_refs.c for model references and
 * recipe_values.c for parameters and the weld object) walks the JSON once
 * and refuses every unknown key, wrong type or value out of range with the
 * JSON path of the culprit; it also resolves every model reference to an
 * absolute path (recipe folder, then the Hugging Face cache). Planning
 * (recipe_plan.c) opens the models, checks layer ranges and depths, then
 * evaluates each parameter for each tensor (recipe_eval.c: gradients over
 * layers, filter lists, the precedence source > slice > top level > method
 * default) into the engine's jobs. The normalised recipe stored in the
 * output (recipe_json.c) is printed from the parsed tree with every default
 * written out, so reading it back gives the same plan and the same bytes.
 */
#ifndef WELD_RECIPE_IMPL_H
#define WELD_RECIPE_IMPL_H

#include "recipe.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define WHERE_LEN 256                       /* room for a JSON path */
#define MAX_SEED_EXACT 9007199254740992.0   /* 2^53: larger seeds go in strings */

/* ---------------------------------------------------------------- the recipe */

struct rmodel {
	char *label;    /* as the recipe names it */
	char *path;     /* resolved, absolute */
	char *where;    /* JSON path of its first mention */
	int layers;     /* 1 + its largest layer index; 0 without layers */
};

struct rsource {
	int model;              /* index in recipe.models */
	int a, b;               /* layer_range [a, b), or -1 with models: */
	const cJSON *params;    /* borrowed from the tree, may be NULL */
	char where[64];         /* "models[1]", "slices[0].sources[2]" */
};

struct rslice {
	struct rsource *src;
	size_t nsrc;
	const cJSON *params;
	int base;               /* base model (recipe.models index) or -1 */
	bool base_given;        /* the slice names its own base_model */
	int base_src;           /* index in src of the base, or -1 */
	char where[32];
};

struct weld_recipe {
	char *label, *dir;
	cJSON *root;
	const struct weld_method_spelling *m;
	struct rmodel *models;
	size_t nmodels;
	struct rslice *slices;  /* models: is kept as one slice without ranges */
	size_t nslices;
	bool use_slices;
	int base;               /* top-level base_model, or -1 */
	const cJSON *params;    /* top-level parameters, or NULL */
	const char *dtype_name, *out_dtype_name, *tokenizer_source;
	struct weld_merge_opts o;
	bool rescale_set, sign_set, trim_set;
	char *json;             /* the normalised recipe */
	char *config_from;
	const char **labels;
	size_t nlabels;
	int *layer_map;         /* output layer -> its source layer (slices) */
	size_t nlayers_out;
	char gamma_where[WHERE_LEN];  /* where the current tensor's gamma came from */
};

/* ---------------------------------------------------------------- messages */

static inline void set_where(char *dst, size_t len, const char *fmt, ...) WELD_PRINTF(3, 4);

static inline void set_where(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

/* Fill err with "<recipe>: <JSON path>: <message>" and return -1. */
static inline int rfail(const weld_recipe *r, struct weld_error *err, const char *where,
			const char *fmt, ...) WELD_PRINTF(4, 5);

static inline int rfail(const weld_recipe *r, struct weld_error *err, const char *where,
			const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (where && *where)
		return weld_fail(err, WELD_ERR_ARG, "%s: %s: %s", r->label, where, msg);
	return weld_fail(err, WELD_ERR_ARG, "%s: %s", r->label, msg);
}

static inline const char *json_type(const cJSON *v)
{
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsArray(v))
		return "a list";
	if (cJSON_IsObject(v))
		return "an object";
	return "null";
}

/* ---------------------------------------------------------------- what the recipe uses */

/* Does slice sl merge against its base (which is then not a source)? */
static inline bool merges_on_base(const weld_recipe *r, const struct rslice *sl)
{
	return r->m->base == WELD_BASE_REQUIRED || (r->m->base == WELD_BASE_OPTIONAL && sl->base >= 0);
}

/* A whole-merge switch (normalize, rescale, ...): true, or a number but 0. */
static inline bool setting_true(const cJSON *v)
{
	return cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble != 0);
}

/* Is parameter p used by this recipe (given its weld settings)? */
static inline bool param_in_use(const weld_recipe *r, enum weld_param p)
{
	if (!(r->m->params & WELD_PB(p)))
		return false;
	return p != WELD_P_DENSITY || weld_method_uses(&r->o, r->m->method, p);
}

/* Does the merge elect signs as ties does (what weld.sign is for)? */
static inline bool combines_ties(const weld_recipe *r)
{
	return weld_method_elects_signs(&r->o, r->m->method);
}

/* The method's default for p, or false when it has none (t, scale). */
static inline bool param_default(const weld_recipe *r, enum weld_param p, double *out)
{
	return weld_method_default(r->m, p, out);
}

/* Where a parameters object sits, which decides what it may hold. */
enum level { LV_TOP, LV_SLICE, LV_SOURCE };

/* ---------------------------------------------------------------- across lib/recipe */

/* Not part of the library's interface: only the files of lib/recipe see
 * these. Each is defined in the file named before it. */

/* recipe_parse.c: refuse a key of obj that repeats an earlier one. */
int weld_recipe_check_dups(const weld_recipe *r, const cJSON *obj, const char *where,
			   struct weld_error *err);
/* recipe_parse.c: every key of obj must be one of the n names (the message
 * suggests the nearest); duplicates are refused too. */
int weld_recipe_check_keys(const weld_recipe *r, const cJSON *obj, const char *where,
			   const char *const *names, size_t n, struct weld_error *err);

/* recipe_refs.c: resolve the model reference v (a string or mergekit's
 * object form) and set *idx to its index in r->models. */
int weld_recipe_add_model(weld_recipe *r, const cJSON *v, const char *where, int *idx,
			  struct weld_error *err);

/* recipe_values.c: check a parameters object found at level lv. */
int weld_recipe_parse_params(const weld_recipe *r, const cJSON *obj, enum level lv,
			     const char *where, struct weld_error *err);
/* recipe_values.c: check the weld object and set r->o from it. */
int weld_recipe_parse_weld(weld_recipe *r, const cJSON *obj, struct weld_error *err);

/* recipe_eval.c: fill one source of a job, and the job's own values, for
 * one tensor. */
int weld_recipe_eval_source(weld_recipe *r, const struct rsource *rs, const struct rslice *sl,
			    const char *out_name, const char *in_name, double t,
			    struct weld_source *src, struct weld_job *job, struct weld_error *err);

/* recipe_json.c: print the normalised recipe into r->json. */
int weld_recipe_build_json(weld_recipe *r, struct weld_error *err);

#endif
