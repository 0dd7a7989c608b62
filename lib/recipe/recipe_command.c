/*
 * recipe_command.c - a merge given on the command line, written as the
 * normalised recipe that weld stores in its output (DESIGN 5), so that
 * `weld run --from-output` can run it again. What goes in is what the
 * method table says the command takes: every value that changes the bytes
 * written, nothing that does not (-j, --max-memory, -o).
 */
#include "recipe.h"
#include "method.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* An absolute path for the stored recipe (the path itself if that fails). */
static void add_path(cJSON *obj, const char *key, const char *path)
{
	char *abs = realpath(path, NULL);

	cJSON_AddStringToObject(obj, key, abs ? abs : path);
	free(abs);
}

static void add_models(cJSON *r, const struct weld_command_merge *c)
{
	const struct weld_method_spelling *s = c->spelling;
	const struct weld_merge_opts *o = c->o;
	cJSON *models = cJSON_AddArrayToObject(r, "models");

	for (size_t i = 0; models && i < c->n; i++) {
		cJSON *e = cJSON_CreateObject(), *mp;

		if (!e)
			return;
		cJSON_AddItemToArray(models, e);
		add_path(e, "model", c->models[i]);
		mp = cJSON_AddObjectToObject(e, "parameters");
		if (s->params & WELD_PB(WELD_P_WEIGHT))
			cJSON_AddNumberToObject(mp, "weight", c->mp[i].weight);
		if ((s->params & WELD_PB(WELD_P_DENSITY)) && weld_method_uses(o, s->method, WELD_P_DENSITY))
			cJSON_AddNumberToObject(mp, "density", c->mp[i].density);
		if (s->params & WELD_PB(WELD_P_GAMMA))
			cJSON_AddNumberToObject(mp, "gamma", c->gamma);
		if (s->params & WELD_PB(WELD_P_MASK_LAMBDA))
			cJSON_AddNumberToObject(mp, "mask_lambda", c->mp[i].mask_lambda);
		if (s->params & WELD_PB(WELD_P_EPSILON))
			cJSON_AddNumberToObject(mp, "epsilon", c->mp[i].epsilon);
	}
}

static void add_weld(cJSON *r, const struct weld_command_merge *c)
{
	const struct weld_method_spelling *s = c->spelling;
	const struct weld_merge_opts *o = c->o;
	cJSON *w = cJSON_AddObjectToObject(r, "weld");

	if (!w)
		return;
	if (s->keys & WELD_KB(WELD_K_SCOPE))
		cJSON_AddStringToObject(w, "scope", weld_scope_names[o->scope]);
	if ((s->keys & WELD_KB(WELD_K_SIGN)) && weld_method_elects_signs(o, s->method))
		cJSON_AddStringToObject(w, "sign", weld_sign_names[o->sign]);
	if (s->keys & WELD_KB(WELD_K_SEED))
		cJSON_AddNumberToObject(w, "seed", (double)o->seed);
	if (s->keys & WELD_KB(WELD_K_RESCALE))
		cJSON_AddStringToObject(w, "rescale", weld_rescale_names[o->rescale]);
	if (s->keys & WELD_KB(WELD_K_COMBINE))
		cJSON_AddStringToObject(w, "combine", weld_combine_names[o->combine]);
	if ((s->keys & WELD_KB(WELD_K_TRIM)) && o->trim > 0)
		cJSON_AddNumberToObject(w, "trim", o->trim);
	if (s->keys & WELD_KB(WELD_K_FROM))
		cJSON_AddStringToObject(w, "from", weld_from_names[o->from]);
	if (s->keys & WELD_KB(WELD_K_K))
		cJSON_AddNumberToObject(w, "k", o->k);
	if (s->keys & WELD_KB(WELD_K_CLIP))
		cJSON_AddNumberToObject(w, "clip", o->clip);
	if ((s->keys & WELD_KB(WELD_K_SVD_EXCLUDE)) && o->svd_exclude)
		cJSON_AddStringToObject(w, "svd_exclude", o->svd_exclude);
	cJSON_AddNumberToObject(w, "shard_size", (double)o->shard_size);
	cJSON_AddBoolToObject(w, "allow_missing", o->allow_missing);
	cJSON_AddBoolToObject(w, "copy_files", o->copy_files);
	if (o->allow_nonfinite)
		cJSON_AddBoolToObject(w, "allow_nonfinite", true);
}

char *weld_recipe_of_command(const struct weld_command_merge *c, struct weld_error *err)
{
	const struct weld_method_spelling *s = c->spelling;
	cJSON *r = cJSON_CreateObject(), *params;
	char *text, *norm;

	if (!r)
		return NULL;
	cJSON_AddStringToObject(r, "merge_method", weld_method_recipe_name(s, c->o));
	if (c->base && s->base != WELD_BASE_NONE)
		add_path(r, "base_model", c->base);
	add_models(r, c);
	params = cJSON_AddObjectToObject(r, "parameters");
	if (s->params & WELD_PB(WELD_P_LAMBDA))
		cJSON_AddNumberToObject(params, "lambda", c->lambda);
	if (s->params & WELD_PB(WELD_P_NORMALIZE))
		cJSON_AddBoolToObject(params, "normalize", c->o->normalize);
	if (s->params & WELD_PB(WELD_P_SELECT_TOPK))
		cJSON_AddNumberToObject(params, "select_topk", c->o->select_topk);
	if (s->params & WELD_PB(WELD_P_COMMON_SPACE_FRACTION))
		cJSON_AddNumberToObject(params, "common_space_fraction", c->o->common_fraction);
	if (s->params & WELD_PB(WELD_P_T))
		cJSON_AddNumberToObject(params, "t", c->t);
	if (s->params & WELD_PB(WELD_P_FILTER_WISE))
		cJSON_AddBoolToObject(params, "filter_wise", c->o->scope == WELD_SCOPE_ROW);
	if (s->params & WELD_PB(WELD_P_NUSLERP_FLATTEN)) {
		cJSON_AddBoolToObject(params, "nuslerp_flatten",
				      c->o->scope != WELD_SCOPE_ROW && !c->o->nuslerp_columns);
		cJSON_AddBoolToObject(params, "nuslerp_row_wise", c->o->nuslerp_columns);
	}
	if (s->params & WELD_PB(WELD_P_NORMALIZE_WEIGHTS))
		cJSON_AddBoolToObject(params, "normalize_weights", c->o->normalize);
	if (s->params & WELD_PB(WELD_P_EPS))
		cJSON_AddNumberToObject(params, "eps", c->epsilon);
	if (s->params & WELD_PB(WELD_P_MAX_ITER))
		cJSON_AddNumberToObject(params, "max_iter", c->max_iter);
	if (s->params & WELD_PB(WELD_P_TOL))
		cJSON_AddNumberToObject(params, "tol", c->tol);
	if (weld_method_uses(c->o, s->method, WELD_P_RAM_EPSILON))
		cJSON_AddNumberToObject(params, "epsilon", c->epsilon);
	if (weld_method_uses(c->o, s->method, WELD_P_R))
		cJSON_AddNumberToObject(params, "r", c->ram_r);
	if (weld_method_uses(c->o, s->method, WELD_P_ALPHA))
		cJSON_AddNumberToObject(params, "alpha", c->ram_alpha);
	if (c->o->dtype >= 0)
		cJSON_AddStringToObject(r, "out_dtype", weld_dtype_torch_name((enum weld_dtype)c->o->dtype));
	add_weld(r, c);
	text = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	if (!text)
		return NULL;
	/* exactly the text `weld run` would store for this recipe */
	norm = weld_recipe_normalise(text, err);
	if (!norm)
		return text;
	cJSON_free(text);
	return norm;
}

char *weld_recipe_of_apply_mask(const char *base, const char *merged, const char *masks, long task)
{
	cJSON *r = cJSON_CreateObject();
	char *text;

	if (!r)
		return NULL;
	/* no recipe form: record what was done */
	cJSON_AddStringToObject(r, "weld_command", "consensus --apply-mask");
	cJSON_AddNumberToObject(r, "task", (double)task);
	add_path(r, "base_model", base);
	add_path(r, "merged", merged);
	add_path(r, "masks", masks);
	text = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return text;
}
