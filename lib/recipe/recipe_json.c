/*
 * recipe_json.c - the normalised recipe stored in the output of a recipe:
 * the same keys, every model path absolute, every default the method uses
 * written out, compact JSON. Parsing it again gives the same plan and the
 * same text.
 */
#include "recipe_impl.h"

#include <string.h>

static cJSON *dup_or_new(const cJSON *v)
{
	return v ? cJSON_Duplicate(v, 1) : cJSON_CreateObject();
}

static cJSON *source_json(const weld_recipe *r, const struct rsource *s)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "model", r->models[s->model].path);
	if (s->a >= 0) {
		int range[2] = { s->a, s->b };

		cJSON_AddItemToObject(o, "layer_range", cJSON_CreateIntArray(range, 2));
	}
	if (s->params)
		cJSON_AddItemToObject(o, "parameters", cJSON_Duplicate(s->params, 1));
	return o;
}

static cJSON *weld_json(const weld_recipe *r)
{
	const struct weld_method_spelling *m = r->m;
	cJSON *w = cJSON_CreateObject();

	if (!w)
		return NULL;
	if (m->keys & WELD_KB(WELD_K_SCOPE))
		cJSON_AddStringToObject(w, "scope", weld_scope_names[r->o.scope]);
	if (m->keys & WELD_KB(WELD_K_SEED)) {
		if ((double)r->o.seed <= MAX_SEED_EXACT) {
			cJSON_AddNumberToObject(w, "seed", (double)r->o.seed);
		} else {
			char buf[24];

			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->o.seed);
			cJSON_AddStringToObject(w, "seed", buf);
		}
	}
	if (m->keys & WELD_KB(WELD_K_SIGN) && combines_ties(r))
		cJSON_AddStringToObject(w, "sign", weld_sign_names[r->o.sign]);
	if (m->keys & WELD_KB(WELD_K_RESCALE))
		cJSON_AddStringToObject(w, "rescale", weld_rescale_names[r->o.rescale]);
	if (m->keys & WELD_KB(WELD_K_COMBINE))
		cJSON_AddStringToObject(w, "combine", weld_combine_names[r->o.combine]);
	if (r->trim_set)
		cJSON_AddNumberToObject(w, "trim", r->o.trim);
	if (m->keys & WELD_KB(WELD_K_FROM))
		cJSON_AddStringToObject(w, "from", weld_from_names[r->o.from]);
	if (m->keys & WELD_KB(WELD_K_K))
		cJSON_AddNumberToObject(w, "k", r->o.k);
	if (m->keys & WELD_KB(WELD_K_CLIP))
		cJSON_AddNumberToObject(w, "clip", r->o.clip);
	if ((m->keys & WELD_KB(WELD_K_SVD_EXCLUDE)) && r->o.svd_exclude)
		cJSON_AddStringToObject(w, "svd_exclude", r->o.svd_exclude);
	cJSON_AddNumberToObject(w, "shard_size", (double)r->o.shard_size);
	cJSON_AddBoolToObject(w, "allow_missing", r->o.allow_missing);
	cJSON_AddBoolToObject(w, "copy_files", r->o.copy_files);
	if (r->o.allow_nonfinite)
		cJSON_AddBoolToObject(w, "allow_nonfinite", true);
	return w;
}

/*
 * The recipe as stored in the output: the same keys, every model path made
 * absolute, every default the method uses written into the top-level
 * parameters and the weld object (max_memory and threads are left out:
 * they never change the bytes). Parsing it again gives the same plan and
 * the same text.
 */
int weld_recipe_build_json(weld_recipe *r, struct weld_error *err)
{
	cJSON *o = cJSON_CreateObject(), *params, *list;
	bool ok = o != NULL;

	if (ok) {
		cJSON_AddStringToObject(o, "merge_method", r->m->name);
		if (r->base >= 0)
			cJSON_AddStringToObject(o, "base_model", r->models[r->base].path);
		list = cJSON_AddArrayToObject(o, r->use_slices ? "slices" : "models");
		for (size_t k = 0; list && k < r->nslices; k++) {
			const struct rslice *sl = &r->slices[k];
			cJSON *so, *srcs;

			if (!r->use_slices) {
				for (size_t j = 0; j < sl->nsrc; j++)
					cJSON_AddItemToArray(list, source_json(r, &sl->src[j]));
				continue;
			}
			so = cJSON_CreateObject();
			srcs = so ? cJSON_AddArrayToObject(so, "sources") : NULL;
			for (size_t j = 0; srcs && j < sl->nsrc; j++)
				cJSON_AddItemToArray(srcs, source_json(r, &sl->src[j]));
			if (so && sl->params)
				cJSON_AddItemToObject(so, "parameters", cJSON_Duplicate(sl->params, 1));
			if (so && sl->base_given)
				cJSON_AddStringToObject(so, "base_model", r->models[sl->base].path);
			cJSON_AddItemToArray(list, so);
		}
		params = dup_or_new(r->params);
		for (int p = 0; params && p < WELD_P_COUNT; p++) {
			double v;

			if (!param_in_use(r, (enum weld_param)p) || p == WELD_P_RESCALE || p == WELD_P_INT8_MASK ||
			    cJSON_GetObjectItemCaseSensitive(params, weld_param_defs[p].name) ||
			    (p == WELD_P_LAMBDA && r->m->lambda_alias &&
			     cJSON_GetObjectItemCaseSensitive(params, r->m->lambda_alias)) ||
			    !param_default(r, (enum weld_param)p, &v))
				continue;
			if (weld_param_defs[p].range == WELD_RANGE_BOOL)
				cJSON_AddBoolToObject(params, weld_param_defs[p].name, v != 0);
			else
				cJSON_AddNumberToObject(params, weld_param_defs[p].name, v);
		}
		cJSON_AddItemToObject(o, "parameters", params);
		if (r->dtype_name)
			cJSON_AddStringToObject(o, "dtype", r->dtype_name);
		if (r->out_dtype_name)
			cJSON_AddStringToObject(o, "out_dtype", r->out_dtype_name);
		if (r->tokenizer_source)
			cJSON_AddStringToObject(o, "tokenizer_source", r->tokenizer_source);
		cJSON_AddItemToObject(o, "weld", weld_json(r));
		cJSON_free(r->json);
		r->json = cJSON_PrintUnformatted(o);
		ok = r->json != NULL;
	}
	cJSON_Delete(o);
	return ok ? 0 : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
}

char *weld_recipe_normalise(const char *text, struct weld_error *err)
{
	weld_recipe *r;
	char *out = NULL;

	if (weld_recipe_parse(&r, text, strlen(text), "recipe", NULL, err) < 0)
		return NULL;
	if (weld_recipe_build_json(r, err) == 0) {
		out = strdup(r->json);
		if (!out)
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	weld_recipe_free(r);
	return out;
}

const char *weld_recipe_json(const weld_recipe *r)
{
	return r->json;
}
