/*
 * recipe_plan.c - a checked recipe made into a finished weld_plan: every
 * model opened, then either whole models merged tensor by tensor (models:)
 * or slices stacked, their layers renumbered from 0, between the
 * embeddings of the first slice's models and the final norm and lm_head of
 * the last (slices:, as mergekit plans a frankenmerge), with config.json
 * given the new layer count. A tensor's layer is the first all-digit
 * component of its name; its place among the layers of its slice or model
 * is the t at which the recipe's gradients are read.
 */
#include "recipe_impl.h"

#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- layers */

/*
 * The layer of a tensor: its first dot-separated component made only of
 * digits ("model.layers.12.mlp.up_proj.weight" -> 12), or -1. *at and *len
 * locate that component in the name.
 */
static long name_layer(const char *name, size_t *at, size_t *len)
{
	const char *part = name;

	for (const char *c = name;; c++) {
		if (*c != '.' && *c)
			continue;
		if (c > part && c - part <= 9) {
			const char *d = part;

			while (d < c && *d >= '0' && *d <= '9')
				d++;
			if (d == c) {
				if (at)
					*at = (size_t)(part - name);
				if (len)
					*len = (size_t)(c - part);
				return strtol(part, NULL, 10);
			}
		}
		if (!*c)
			return -1;
		part = c + 1;
	}
}

/* The name with its layer component replaced by `layer` (caller frees). */
static char *rename_layer(const char *name, long layer)
{
	size_t at, len;

	if (name_layer(name, &at, &len) < 0)
		return strdup(name);
	return weld_strfmt("%.*s%ld%s", (int)at, name, layer, name + at + len);
}

/* 1 + the largest layer of m's tensors; 0 when none has a layer. */
static int model_layers(const weld_model *m)
{
	long top = -1;

	for (size_t i = 0; i < weld_model_count(m); i++) {
		long l = name_layer(weld_model_tensor(m, i)->name, NULL, NULL);

		if (l > top)
			top = l;
	}
	return (int)(top + 1);
}

/* t of the gradients for a layer at offset o of n layers (mergekit: a
 * slice of one layer gives 1); tensors outside the layers use 0. */
static double layer_t(long o, long n)
{
	if (o < 0)
		return 0;
	return n > 1 ? (double)o / (double)(n - 1) : 1;
}

/* ---------------------------------------------------------------- engine messages */

/* Put the recipe's name before an engine message, whose hints name the
 * command-line options: say them as recipe keys. */
static void prefix_label(const weld_recipe *r, struct weld_error *err)
{
	static const char *const hints[][2] = {
		{ "--no-normalize", "\"normalize\": false" },
		{ "--allow-missing", "weld.allow_missing" },
		{ "--allow-nonfinite", "weld.allow_nonfinite" },
		{ "--scope model", "weld.scope 'model'" },
		{ "--scope row", "weld.scope 'row'" },
	};
	char msg[sizeof(err->msg)];
	size_t o = 0;
	int saved_errno;

	if (!err)
		return;
	for (const char *c = err->msg; *c && o + 1 < sizeof(msg);) {
		size_t h = 0;

		while (h < sizeof(hints) / sizeof(hints[0]) &&
		       strncmp(c, hints[h][0], strlen(hints[h][0])) != 0)
			h++;
		if (h < sizeof(hints) / sizeof(hints[0])) {
			o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s", hints[h][1]);
			c += strlen(hints[h][0]);
		} else {
			msg[o++] = *c++;
		}
	}
	msg[o < sizeof(msg) ? o : sizeof(msg) - 1] = 0;
	saved_errno = err->sys_errno;
	weld_fail(err, err->status, "%s: %s", r->label, msg);
	err->sys_errno = saved_errno;
}

int weld_recipe_execute(const weld_recipe *r, weld_plan *p, const char *out,
			struct weld_error *err)
{
	if (weld_plan_execute(p, out, err) == 0)
		return 0;
	if (err && err->status != WELD_ERR_INTERRUPTED)
		prefix_label(r, err);
	return -1;
}

/* ---------------------------------------------------------------- models: */

struct models_ctx {
	weld_recipe *r;
	const struct rsource **slot;
	int layers;
};

static int models_param(void *ctx, const char *tensor, int slot, struct weld_source *src,
			struct weld_job *job, struct weld_error *err)
{
	const struct models_ctx *c = ctx;
	double t = layer_t(name_layer(tensor, NULL, NULL), c->layers);

	return weld_recipe_eval_source(c->r, c->slot[slot], &c->r->slices[0], tensor, tensor, t,
				       src, job, err);
}

/* models: every tensor of the base (else the first model), matched by name. */
static int plan_models(weld_recipe *r, weld_plan *p, struct weld_error *err)
{
	const struct rslice *sl = &r->slices[0];
	const struct rsource **slot = calloc(sl->nsrc, sizeof(*slot));
	struct weld_model_params *mp = calloc(sl->nsrc, sizeof(*mp));
	int *idx = calloc(sl->nsrc, sizeof(*idx)), base = -1, ref;
	struct models_ctx c = { r, slot, 0 };
	size_t n = 0;
	int ret = -1;

	if (!slot || !mp || !idx) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (merges_on_base(r, sl))
		base = r->base;
	for (size_t j = 0; j < sl->nsrc; j++) {
		const struct rsource *s = &sl->src[j];

		if (s->model == base) {
			if (s->params && s->params->child && r->o.warn) {
				char msg[512];

				snprintf(msg, sizeof(msg), "%s: %s.parameters: the base model's parameters are not used",
					 r->label, s->where);
				r->o.warn(r->o.cb_ctx, msg);
			}
			continue;
		}
		slot[n] = s;
		idx[n] = s->model;
		mp[n].weight = 1;
		mp[n].density = r->m->density;
		mp[n].mask_lambda = 0.6;
		mp[n].epsilon = WELD_DEFAULT_EPSILON;
		n++;
	}
	ref = base >= 0 ? base : slot[0]->model;
	c.layers = r->models[ref].layers;
	for (size_t k = 0; k < n; k++) {
		const struct rmodel *mk = &r->models[slot[k]->model];

		if (mk->layers != c.layers) {
			char where[WHERE_LEN];

			set_where(where, sizeof(where), "%s.model", slot[k]->where);
			rfail(r, err, where, "'%s' has %d layers but '%s' has %d: whole models merge layer by layer (slices can pick layers)",
			      mk->label, mk->layers, r->models[ref].label, c.layers);
			goto out;
		}
	}
	ret = weld_plan_standard(p, base, idx, n, mp, 1.0, r->m->gamma, models_param, &c, err);
	if (ret < 0 && err && err->status != WELD_ERR_ARG)
		prefix_label(r, err);
out:
	free(slot);
	free(mp);
	free(idx);
	return ret;
}

/* ---------------------------------------------------------------- slices: */

/* Tensors outside the layers that come before them (embeddings); the
 * others (final norm, lm_head) come after, as mergekit plans them. */
static bool is_pre_weight(const char *name)
{
	return (strstr(name, "embed") && !strstr(name, "lm_head")) || strstr(name, "wte") ||
	       strstr(name, "wpe");
}

/* 0: same shape; 1: an embedding with more rows (its first rows are used);
 * -1: a mismatch (err filled). */
static int slice_shape(const weld_recipe *r, const struct rsource *s, const char *in_name,
		       const struct weld_tensor_info *t, const struct weld_tensor_info *ref,
		       const char *ref_label, struct weld_error *err)
{
	char a[128], b[128];
	int fit = weld_shape_fit(in_name, t, ref);

	if (fit >= 0)
		return fit;
	weld_shape_text(t, a, sizeof(a));
	weld_shape_text(ref, b, sizeof(b));
	return rfail(r, err, s->where, "tensor '%s': shape %s in '%s' but %s in '%s'", in_name, a,
		     r->models[s->model].label, b, ref_label);
}

static enum weld_dtype output_dtype(const weld_recipe *r, enum weld_dtype t)
{
	if (r->o.dtype >= 0 && r->o.dtype != WELD_F8_E4M3)     /* fp8: weld_plan_fp8_job */
		return (enum weld_dtype)r->o.dtype;
	return weld_dtype_merged(t);
}

/* The source a slice's tensor list comes from: the base, else the first. */
static const struct rsource *slice_ref(const weld_recipe *r, const struct rslice *sl)
{
	if (merges_on_base(r, sl) && sl->base_src >= 0)
		return &sl->src[sl->base_src];
	return &sl->src[0];
}

/*
 * The tensor in_name of source s of a slice, checked against the reference
 * tensor rt (of the model ref_label): 1 with its index in *ti, 0 when it is
 * missing and weld.allow_missing lets the merge go on without it, -1 on
 * error.
 */
static int source_tensor(const weld_recipe *r, const weld_plan *p, const struct rsource *s,
			 const char *in_name, const struct weld_tensor_info *rt,
			 const char *ref_label, int64_t *ti, struct weld_error *err)
{
	const weld_model *m = weld_plan_model(p, s->model);
	const char *label = r->models[s->model].label;
	int shape;

	*ti = weld_model_find(m, in_name);
	if (*ti < 0) {
		if (r->o.allow_missing)
			return 0;
		return rfail(r, err, s->where, "tensor '%s' is missing from '%s' (\"weld\": {\"allow_missing\": true} merges it over the models that have it)",
			     in_name, label);
	}
	if (!weld_dtype_is_float(weld_model_tensor(m, (size_t)*ti)->dtype))
		return rfail(r, err, s->where, "tensor '%s': dtype %s in '%s' but %s in '%s'", in_name,
			     weld_dtype_name(weld_model_tensor(m, (size_t)*ti)->dtype), label,
			     weld_dtype_name(rt->dtype), ref_label);
	shape = slice_shape(r, s, in_name, weld_model_tensor(m, (size_t)*ti), rt, ref_label, err);
	if (shape == 1 && r->o.warn) {
		char msg[1024];

		snprintf(msg, sizeof(msg), "tensor '%s': '%s' has more rows than '%s': using the first %lld",
			 in_name, label, ref_label, (long long)rt->shape[0]);
		r->o.warn(r->o.cb_ctx, msg);
	}
	return shape < 0 ? -1 : 1;
}

/*
 * One output tensor of a slice: ref_name is the reference source's tensor,
 * offset the layer offset inside the slice (-1 for tensors outside the
 * layers, read under the same name from every source).
 */
static int slice_job(weld_recipe *r, weld_plan *p, const struct rslice *sl, long offset,
		     const char *ref_name, const char *out_name, double t, struct weld_error *err)
{
	const struct rsource *ref = slice_ref(r, sl);
	const weld_model *refm = weld_plan_model(p, ref->model);
	int64_t ri = weld_model_find(refm, ref_name);
	const struct weld_tensor_info *rt = weld_model_tensor(refm, (size_t)ri);
	struct weld_source *src = calloc(sl->nsrc + 1, sizeof(*src));
	struct weld_job j = { 0 };
	int number = 0, ret = -1;

	if (!src)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	j.name = out_name;
	j.ndim = rt->ndim;
	memcpy(j.shape, rt->shape, sizeof(j.shape));
	j.nelem = rt->nelem;
	j.base_model = -1;
	j.base_tensor = -1;
	j.mask_model = -1;
	j.mask_tensor = -1;
	j.lambda = 1;
	j.gamma = r->m->gamma;
	j.src = src;
	if (!weld_dtype_is_float(rt->dtype)) {
		j.method = WELD_METHOD_COPY;
		j.dtype = rt->dtype;
		src[j.nsrc++] = (struct weld_source){ .model = ref->model, .tensor = ri };
		ret = weld_plan_add_job(p, &j, err);
		goto out;
	}
	j.method = r->o.method;
	j.dtype = output_dtype(r, weld_tensor_stored_dtype(rt));
	weld_plan_fp8_job(p, &j, rt);
	if (merges_on_base(r, sl)) {
		j.base_model = ref->model;
		j.base_tensor = ri;
	}
	for (size_t k = 0; k < sl->nsrc; k++) {
		const struct rsource *s = &sl->src[k];
		char *in_name;
		int64_t ti;
		int found;

		if (merges_on_base(r, sl) && s->model == sl->base)
			continue;
		number++;
		in_name = offset >= 0 ? rename_layer(ref_name, s->a + offset)
				      : strdup(ref_name);
		if (!in_name) {
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto out;
		}
		found = source_tensor(r, p, s, in_name, rt, r->models[ref->model].label, &ti, err);
		if (found > 0) {
			src[j.nsrc] = (struct weld_source){
				.model = s->model, .tensor = ti, .rng_index = number, .weight = 1,
				.density = r->m->density, .mask_lambda = 0.6,
				.epsilon = WELD_DEFAULT_EPSILON,
			};
			if (weld_recipe_eval_source(r, s, sl, out_name, in_name, t, &src[j.nsrc], &j,
						    err) < 0)
				found = -1;
			else
				j.nsrc++;
		}
		free(in_name);
		if (found < 0)
			goto out;
	}
	if (!j.nsrc) {
		if (j.base_model < 0) {
			rfail(r, err, sl->where, "tensor '%s' is in none of this slice's models", ref_name);
			goto out;
		}
		j.method = WELD_METHOD_COPY;
		src[j.nsrc++] = (struct weld_source){ .model = j.base_model, .tensor = j.base_tensor };
		j.base_model = -1;
		j.base_tensor = -1;
	}
	ret = weld_plan_add_job(p, &j, err);
out:
	free(src);
	return ret;
}

/* Tensors of a slice's reference model outside the layers, before (pre) or
 * after them. */
static int slice_outer(weld_recipe *r, weld_plan *p, const struct rslice *sl, bool pre,
		       struct weld_error *err)
{
	const weld_model *m = weld_plan_model(p, slice_ref(r, sl)->model);

	for (size_t i = 0; i < weld_model_count(m); i++) {
		const char *name = weld_model_tensor(m, i)->name;

		if (name_layer(name, NULL, NULL) < 0 && is_pre_weight(name) == pre &&
		    slice_job(r, p, sl, -1, name, name, 0, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * slices: the embeddings from the first slice's models, then each slice's
 * layers renumbered from 0 in order, then the final norm and lm_head from
 * the last slice's models, as mergekit plans a frankenmerge.
 */
static int plan_slices(weld_recipe *r, weld_plan *p, struct weld_error *err)
{
	size_t total = 0, out_layer = 0;

	for (size_t k = 0; k < r->nslices; k++) {
		const struct rslice *sl = &r->slices[k];

		for (size_t j = 0; j < sl->nsrc; j++) {
			const struct rsource *s = &sl->src[j];
			const struct rmodel *mm = &r->models[s->model];
			char where[WHERE_LEN];

			set_where(where, sizeof(where), "%s.layer_range", s->where);
			if (mm->layers == 0 && s->b > 0)
				return rfail(r, err, where, "'%s' has no numbered layers (no tensor name with an integer component)",
					     mm->label);
			if (s->b > mm->layers)
				return rfail(r, err, where, "[%d, %d] is outside '%s', which has %d layers (a range within [0, %d])",
					     s->a, s->b, mm->label, mm->layers, mm->layers);
		}
		total += (size_t)(sl->src[0].b - sl->src[0].a);
	}
	free(r->layer_map);
	r->layer_map = calloc(total + 1, sizeof(*r->layer_map));
	if (!r->layer_map)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (slice_outer(r, p, &r->slices[0], true, err) < 0)
		return -1;
	for (size_t k = 0; k < r->nslices; k++) {
		const struct rslice *sl = &r->slices[k];
		const struct rsource *ref = slice_ref(r, sl);
		const weld_model *m = weld_plan_model(p, ref->model);
		long n = ref->b - ref->a;

		for (long o = 0; o < n; o++, out_layer++) {
			r->layer_map[out_layer] = ref->a + (int)o;
			for (size_t i = 0; i < weld_model_count(m); i++) {
				const char *name = weld_model_tensor(m, i)->name;
				char *out_name;
				int rc;

				if (name_layer(name, NULL, NULL) != ref->a + o)
					continue;
				out_name = rename_layer(name, (long)out_layer);
				if (!out_name)
					return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
				rc = slice_job(r, p, sl, o, name, out_name, layer_t(o, n), err);
				free(out_name);
				if (rc < 0)
					return -1;
			}
		}
	}
	r->nlayers_out = out_layer;
	return slice_outer(r, p, &r->slices[r->nslices - 1], false, err);
}

/* config.json of a frankenmerge: the new layer count (and per-layer lists). */
static int edit_config(void *ctx, void *cjson_root, struct weld_error *err)
{
	static const char *const keys[] = { "num_hidden_layers", "n_layer", "num_layers" };
	const weld_recipe *r = ctx;
	cJSON *root = cjson_root, *objs[2], *lt;
	long old = -1;

	(void)err;
	objs[0] = root;
	objs[1] = cJSON_GetObjectItemCaseSensitive(root, "text_config");
	for (int o = 0; o < 2; o++) {
		if (!cJSON_IsObject(objs[o]))
			continue;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[o], keys[k]);

			if (!cJSON_IsNumber(v))
				continue;
			if (old < 0)
				old = (long)v->valuedouble;
			cJSON_SetNumberValue(v, (double)r->nlayers_out);
		}
	}
	lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
	if (cJSON_IsArray(lt) && cJSON_GetArraySize(lt) == old && old > 0) {
		cJSON *nl = cJSON_CreateArray();

		for (size_t i = 0; nl && i < r->nlayers_out; i++) {
			int from = r->layer_map[i] < old ? r->layer_map[i] : (int)old - 1;

			cJSON_AddItemToArray(nl, cJSON_Duplicate(cJSON_GetArrayItem(lt, from), 1));
		}
		if (nl)
			cJSON_ReplaceItemInObjectCaseSensitive(root, "layer_types", nl);
	}
	return 0;
}

/* ---------------------------------------------------------------- the plan */

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The folder config.json & co come from: the base model, else the first. */
static char *donor_dir(const weld_recipe *r)
{
	const char *path = r->models[r->base >= 0 ? r->base : r->slices[0].src[0].model].path;
	char *copy, *d;

	if (is_dir(path))
		return strdup(path);
	copy = strdup(path);
	d = copy ? strdup(dirname(copy)) : NULL;
	free(copy);
	return d;
}

int weld_recipe_plan(weld_recipe *r, const struct weld_recipe_settings *s, weld_plan **out,
		     struct weld_error *err)
{
	weld_plan *p = NULL;

	*out = NULL;
	if (s) {
		r->o.threads = s->threads;
		if (s->has_max_memory)
			r->o.max_memory = s->max_memory;
		if (s->has_shard_size) {
			r->o.shard_size = s->shard_size;
			r->o.shard_size_set = true;
		}
		r->o.force = s->force;
		r->o.part = s->part;
		r->o.parts = s->parts;
		r->o.warn = s->warn;
		r->o.progress = s->progress;
		r->o.cb_ctx = s->cb_ctx;
	}
	if (weld_recipe_build_json(r, err) < 0)
		return -1;
	free(r->config_from);
	r->config_from = donor_dir(r);
	free(r->labels);
	r->labels = calloc(r->nmodels + 1, sizeof(*r->labels));
	if (!r->config_from || !r->labels)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->o.recipe_json = r->json;
	r->o.config_from = r->config_from;
	r->o.edit_config = r->use_slices ? edit_config : NULL;
	r->o.edit_config_ctx = r;
	p = weld_plan_new(&r->o);
	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	/* every model, in order of first mention: plan index = recipe index */
	for (size_t i = 0; i < r->nmodels; i++) {
		struct weld_error e = { 0 };

		if (weld_plan_add_model(p, r->models[i].path, &e) < 0) {
			weld_fail(err, e.status, "%s: %s: %s", r->label, r->models[i].where, e.msg);
			if (err)
				err->sys_errno = e.sys_errno;
			goto fail;
		}
		r->labels[i] = r->models[i].label;
		r->models[i].layers = model_layers(weld_plan_model(p, (int)i));
	}
	r->nlabels = r->nmodels;
	if ((r->use_slices ? plan_slices(r, p, err) : plan_models(r, p, err)) < 0)
		goto fail;
	if (weld_plan_finish(p, err) < 0) {
		prefix_label(r, err);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	weld_plan_free(p);
	return -1;
}

const char *weld_recipe_model_label(const weld_recipe *r, size_t i)
{
	return i < r->nlabels ? r->labels[i] : NULL;
}
