/*
 * recipe.h - merge recipes: mergekit's configuration schema written as JSON.
 *
 * A recipe is read in two steps. weld_recipe_load() (or _parse, or
 * _from_output) checks the JSON itself: every key, type and range, every
 * parameter against the method, every model reference (local paths are
 * resolved against the recipe's folder, `org/model[@rev]` names in the local
 * Hugging Face cache). weld_recipe_plan() then opens the models, checks
 * layer ranges and layer counts, evaluates every parameter for every tensor
 * and returns a finished weld_plan. Both steps fail with a message that
 * names the recipe and the JSON path of the culprit
 * ("r.json: models[1].parameters.desnity: unknown parameter (did you mean
 * 'density'?)"); neither writes anything.
 *
 * Ownership: a weld_recipe owns every string it hands out; they stay valid
 * until weld_recipe_free(). A plan made by weld_recipe_plan() borrows from
 * the recipe (its recipe_json, config hooks and labels), so free the plan
 * first. weld_recipe_free(NULL) is a no-op.
 */
#ifndef WELD_RECIPE_H
#define WELD_RECIPE_H

#include "method.h"
#include "suggest.h"   /* weld_edit_distance and the other did-you-mean hints */

typedef struct weld_recipe weld_recipe;

/* Settings from the command line; they override the recipe's `weld`
 * object. Zero / false / NULL leaves the recipe's value. */
struct weld_recipe_settings {
	int threads;
	bool has_max_memory, has_shard_size;
	uint64_t max_memory, shard_size;
	bool force;
	unsigned part, parts;   /* --part I/N (0: the whole output) */
	void (*warn)(void *ctx, const char *msg);
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *cb_ctx;
};

/* Parse and check len bytes of JSON. label names the recipe in messages;
 * dir is the folder relative model paths are resolved against (NULL: the
 * current folder). Returns 0 and a new recipe in *out, or -1 (err filled,
 * status WELD_ERR_ARG for a recipe error, WELD_ERR_IO for a file that
 * cannot be read). */
int weld_recipe_parse(weld_recipe **out, const char *text, size_t len, const char *label,
		      const char *dir, struct weld_error *err);
/* The same for the file at path (label = path, dir = its folder). */
int weld_recipe_load(weld_recipe **out, const char *path, struct weld_error *err);
/* The recipe stored in a weld output's __metadata__.weld_recipe. */
int weld_recipe_from_output(weld_recipe **out, const char *dir, struct weld_error *err);
void weld_recipe_free(weld_recipe *r);

/* Open the models and build a finished plan. Returns 0 and the plan in
 * *out (free it with weld_plan_free before the recipe), or -1. */
int weld_recipe_plan(weld_recipe *r, const struct weld_recipe_settings *s, weld_plan **out,
		     struct weld_error *err);

/* Execute the plan of r into out (weld_plan_execute); an error is put in
 * the recipe's terms: its name first, the hints as recipe keys. */
int weld_recipe_execute(const weld_recipe *r, weld_plan *p, const char *out,
			struct weld_error *err);

/* The normalised recipe, as stored in the output (valid after a successful
 * weld_recipe_plan): every model path absolute, every default written out,
 * compact JSON. Running it again gives the same bytes. */
const char *weld_recipe_json(const weld_recipe *r);
/* Parse a recipe (paths resolved against the current folder) and return
 * its normalised form, as weld_recipe_json() would after planning, without
 * opening any model. The caller frees the string; NULL on error. */
char *weld_recipe_normalise(const char *text, struct weld_error *err);
/* merge_method as the recipe spells it. */
const char *weld_recipe_method(const weld_recipe *r);
/* How the recipe names the plan's model i (valid after weld_recipe_plan). */
const char *weld_recipe_model_label(const weld_recipe *r, size_t i);

/* A merge given on the command line (see weld_recipe_of_command). */
struct weld_command_merge {
	const struct weld_method_spelling *spelling;  /* the command's row of the method table */
	const char *base;                    /* or NULL */
	size_t n;
	const char *const *models;           /* model paths, n */
	const struct weld_model_params *mp;  /* their weight, density, mask_lambda, n */
	double lambda, gamma;
	const struct weld_merge_opts *o;
	double t, epsilon, ram_r, ram_alpha;  /* per-tensor values the method may take */
	double tol, max_iter;
};

/* The normalised recipe of a command-line merge, as weld_recipe_json()
 * would give for the same merge written as a recipe (caller frees). If it
 * cannot be normalised, the plain recipe is returned and *err says why (a
 * warning); NULL when out of memory. */
char *weld_recipe_of_command(const struct weld_command_merge *c, struct weld_error *err);
/* What `weld consensus --apply-mask` stores: it has no recipe form (caller
 * frees; NULL when out of memory). */
char *weld_recipe_of_apply_mask(const char *base, const char *merged, const char *masks,
				long task);

#endif
