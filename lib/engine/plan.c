/*
 * plan.c - build and check a merge plan before any tensor data is read.
 *
 * Everything a user can get wrong is found here: missing tensors, shape and
 * dtype mismatches, parameters out of range, a row too long for the memory
 * budget. Only when the plan is complete does weld_plan_execute() create
 * the output folder.
 */
#include "merge.h"
#include "method.h"
#include "write_queue.h"
#include "plan_impl.h"
#include "rank.h"
#include "svd_merge.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RESERVE_BYTES (4ull << 20)    /* binary, headers, stacks */
#define WELD_MAX_CHUNK (1ull << 20)   /* elements: larger only costs page faults */

void weld_plan_warn(const weld_plan *p, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!p->o.warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->o.warn(p->o.cb_ctx, msg);
}

weld_plan *weld_plan_new(const struct weld_merge_opts *o)
{
	weld_plan *p = calloc(1, sizeof(*p));

	if (p)
		p->o = *o;
	return p;
}

void weld_plan_free(weld_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->njobs; i++) {
		free((char *)p->jobs[i].name);
		free(p->jobs[i].src);
	}
	for (size_t i = 0; i < p->nmodels; i++)
		weld_model_close(p->models[i]);
	if (p->svd_exclude_set)
		regfree(&p->svd_exclude);
	free(p->models);
	free(p->jobs);
	free(p);
}

int weld_plan_add_model(weld_plan *p, const char *path, struct weld_error *err)
{
	weld_model **nm = realloc(p->models, (p->nmodels + 1) * sizeof(*nm));

	if (!nm)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	p->models = nm;
	if (weld_model_open(&nm[p->nmodels], path, err) < 0)
		return -1;
	if (weld_model_warning(nm[p->nmodels]))
		weld_plan_warn(p, "%s", weld_model_warning(nm[p->nmodels]));
	return (int)p->nmodels++;
}

size_t weld_plan_model_count(const weld_plan *p)
{
	return p->nmodels;
}

const weld_model *weld_plan_model(const weld_plan *p, int i)
{
	return p->models[i];
}

size_t weld_plan_job_count(const weld_plan *p)
{
	return p->njobs;
}

const struct weld_job *weld_plan_job(const weld_plan *p, size_t i)
{
	return &p->jobs[i];
}

const struct weld_merge_opts *weld_plan_opts(const weld_plan *p)
{
	return &p->o;
}

void weld_plan_set_recipe(weld_plan *p, const char *recipe_json)
{
	p->o.recipe_json = recipe_json;
}

uint64_t weld_plan_memory(const weld_plan *p)
{
	return p->memory;
}

uint64_t weld_plan_matrix_memory(const weld_plan *p, const char **tensor)
{
	if (tensor)
		*tensor = p->matrix_bytes ? p->jobs[p->matrix_job].name : NULL;
	return p->matrix_bytes;
}

uint64_t weld_plan_chunk_elems(const weld_plan *p)
{
	return p->chunk;
}

uint64_t weld_plan_input_bytes(const weld_plan *p)
{
	return p->input_bytes;
}

uint64_t weld_plan_bytes_read(const weld_plan *p)
{
	return p->bytes_read;
}

int weld_plan_add_job(weld_plan *p, const struct weld_job *j, struct weld_error *err)
{
	struct weld_job *nj;

	if (p->njobs == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;

		nj = realloc(p->jobs, cap * sizeof(*nj));
		if (!nj)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		p->jobs = nj;
		p->cap = cap;
	}
	nj = &p->jobs[p->njobs];
	*nj = *j;
	nj->name = strdup(j->name);
	nj->src = malloc((j->nsrc ? j->nsrc : 1) * sizeof(*nj->src));
	if (!nj->name || !nj->src) {
		free((char *)nj->name);
		free(nj->src);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	memcpy(nj->src, j->src, j->nsrc * sizeof(*nj->src));
	if (!nj->nelem) {
		nj->nelem = 1;
		for (int d = 0; d < nj->ndim; d++)
			nj->nelem *= (uint64_t)nj->shape[d];
	}
	p->njobs++;
	return 0;
}

/* Embedding-like tensors may have more rows than the base (added tokens). */
static bool is_embedding(const char *name)
{
	static const char *const keys[] = {
		"embed_tokens", "lm_head", "wte", "word_embeddings",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strstr(name, keys[i]))
			return true;
	return false;
}

void weld_shape_text(const struct weld_tensor_info *t, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");

	for (int d = 0; d < t->ndim && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "",
				      (long long)t->shape[d]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

int weld_shape_fit(const char *name, const struct weld_tensor_info *t,
		   const struct weld_tensor_info *ref)
{
	bool same = t->ndim == ref->ndim, rest = true;

	for (int d = 0; same && d < t->ndim; d++)
		same = t->shape[d] == ref->shape[d];
	if (same)
		return 0;
	if (!is_embedding(name) || t->ndim != ref->ndim || t->ndim < 1 ||
	    t->shape[0] <= ref->shape[0])
		return -1;
	for (int d = 1; d < t->ndim; d++)
		rest = rest && t->shape[d] == ref->shape[d];
	return rest ? 1 : -1;
}

/* Output dtype for a float tensor of dtype t. */
static enum weld_dtype out_dtype(const weld_plan *p, enum weld_dtype t)
{
	if (p->o.dtype >= 0 && p->o.dtype != WELD_F8_E4M3)     /* fp8: weld_plan_fp8_job */
		return (enum weld_dtype)p->o.dtype;
	return weld_dtype_merged(t);
}

/* Can model m's tensor `ti` feed an output shaped like `ref`? 0 yes,
 * 1 yes after cropping rows, -1 no (err filled). */
static int check_shape(const weld_plan *p, int m, const struct weld_tensor_info *ti,
		       int refm, const struct weld_tensor_info *ref,
		       struct weld_error *err)
{
	char a[128], b[128];
	int r = weld_shape_fit(ref->name, ti, ref);

	if (r >= 0)
		return r;
	weld_shape_text(ti, a, sizeof(a));
	weld_shape_text(ref, b, sizeof(b));
	return weld_fail(err, WELD_ERR_MISMATCH,
			 "tensor '%s': shape %s in '%s' but %s in '%s'", ref->name, a,
			 weld_model_path(p->models[m]), b, weld_model_path(p->models[refm]));
}

/*
 * GGUF models merge only with GGUF models (DESIGN 6.1): llama.cpp renames
 * the tensors and permutes the Q/K rows of llama-family models, so a
 * tensor of one format is not the same-named tensor of the other.
 */
static int check_formats(const weld_plan *p, int a, int b, struct weld_error *err)
{
	const weld_model *x = p->models[a], *y = p->models[b];
	bool gx = strcmp(weld_model_format(x), "gguf") == 0;
	bool gy = strcmp(weld_model_format(y), "gguf") == 0;

	if (gx == gy)
		return 0;
	return weld_fail(err, WELD_ERR_MISMATCH,
			 "'%s' is a GGUF model and '%s' is not: GGUF models merge only with GGUF models "
			 "(llama.cpp renames tensors and permutes the Q/K rows of llama-family models)",
			 weld_model_path(gx ? x : y), weld_model_path(gx ? y : x));
}

int weld_plan_standard(weld_plan *p, int base, const int *models, size_t n,
		       const struct weld_model_params *mp, double lambda, double gamma,
		       weld_param_fn fn, void *fn_ctx, struct weld_error *err)
{
	int refm = base >= 0 ? base : models[0];
	const weld_model *ref = p->models[refm];
	struct weld_source *src;
	int ret = -1;

	for (size_t i = 0; i < n; i++)
		if (check_formats(p, refm, models[i], err) < 0)
			return -1;
	src = malloc((n + 1) * sizeof(*src));
	if (!src)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < weld_model_count(ref); i++) {
		const struct weld_tensor_info *rt = weld_model_tensor(ref, i);
		struct weld_job j = { 0 };

		j.name = rt->name;
		j.ndim = rt->ndim;
		memcpy(j.shape, rt->shape, sizeof(j.shape));
		j.nelem = rt->nelem;
		j.base_model = -1;
		j.base_tensor = -1;
		j.lambda = lambda;
		j.gamma = gamma;
		j.src = src;
		j.mask_model = -1;
		j.mask_tensor = -1;
		if (!weld_dtype_is_float(rt->dtype)) {
			/* integers are copied from the reference; the others only
			 * compared, to warn about a difference */
			j.method = WELD_METHOD_COPY;
			j.dtype = rt->dtype;
			src[j.nsrc++] = (struct weld_source){ .model = refm, .tensor = (int64_t)i };
			for (size_t k = 0; k < n; k++) {
				int64_t ti = weld_model_find(p->models[models[k]], rt->name);

				if (models[k] == refm || ti < 0)
					continue;
				src[j.nsrc++] = (struct weld_source){ .model = models[k], .tensor = ti };
			}
			if (weld_plan_add_job(p, &j, err) < 0)
				goto out;
			continue;
		}
		j.method = p->o.method;
		j.dtype = out_dtype(p, weld_tensor_stored_dtype(rt));
		weld_plan_fp8_job(p, &j, rt);
		if (base >= 0) {
			j.base_model = base;
			j.base_tensor = (int64_t)i;
		}
		for (size_t k = 0; k < n; k++) {
			const weld_model *m = p->models[models[k]];
			int64_t ti = weld_model_find(m, rt->name);
			const struct weld_tensor_info *t;
			int r;

			if (ti < 0) {
				if (p->o.allow_missing)
					continue;
				weld_fail(err, WELD_ERR_MISMATCH,
					  "tensor '%s': missing from '%s' (--allow-missing merges it over the models that have it)",
					  rt->name, weld_model_path(m));
				goto out;
			}
			t = weld_model_tensor(m, (size_t)ti);
			if (!weld_dtype_is_float(t->dtype)) {
				weld_fail(err, WELD_ERR_MISMATCH,
					  "tensor '%s': dtype %s in '%s' but %s in '%s'", rt->name,
					  weld_dtype_name(t->dtype), weld_model_path(m),
					  weld_dtype_name(rt->dtype), weld_model_path(ref));
				goto out;
			}
			r = check_shape(p, models[k], t, refm, rt, err);
			if (r < 0)
				goto out;
			if (r == 1 && !weld_method_crops_vocab(j.method)) {
				weld_fail(err, WELD_ERR_MISMATCH,
					  "tensor '%s': '%s' has %lld rows, '%s' %lld: %s needs the same vocabulary size in every model",
					  rt->name, weld_model_path(m), (long long)t->shape[0],
					  weld_model_path(ref), (long long)rt->shape[0],
					  weld_method_name(j.method));
				goto out;
			}
			if (r == 1)
				weld_plan_warn(p, "tensor '%s': '%s' has %lld rows, '%s' %lld: using the first %lld",
					       rt->name, weld_model_path(m), (long long)t->shape[0],
					       weld_model_path(ref), (long long)rt->shape[0],
					       (long long)rt->shape[0]);
			src[j.nsrc] = (struct weld_source){
				.model = models[k], .tensor = ti, .rng_index = (int)k + 1,
				.weight = mp[k].weight, .density = mp[k].density,
				.mask_lambda = mp[k].mask_lambda,
				.epsilon = mp[k].epsilon,
			};
			if (fn && fn(fn_ctx, rt->name, (int)k, &src[j.nsrc], &j, err) < 0)
				goto out;
			j.nsrc++;
		}
		if (!j.nsrc && base < 0) {
			weld_fail(err, WELD_ERR_MISMATCH, "tensor '%s': in no model", rt->name);
			goto out;
		}
		if (!j.nsrc) {
			/* only the base has it: the merged task vector is zero */
			j.method = WELD_METHOD_COPY;
			src[j.nsrc++] = (struct weld_source){ .model = base, .tensor = (int64_t)i };
		}
		if (weld_plan_add_job(p, &j, err) < 0)
			goto out;
	}
	/* tensors the reference lacks are not merged: say so, once per model */
	for (size_t k = 0; k < n; k++) {
		const weld_model *m = p->models[models[k]];
		const char *example = NULL;
		size_t extra = 0;

		for (size_t i = 0; i < weld_model_count(m); i++)
			if (weld_model_find(ref, weld_model_tensor(m, i)->name) < 0) {
				if (!extra++)
					example = weld_model_tensor(m, i)->name;
			}
		if (extra && models[k] != refm)
			weld_plan_warn(p, "'%s' has %zu tensor(s) that '%s' lacks (e.g. '%s'); they are not in the output",
				       weld_model_path(m), extra, weld_model_path(ref), example);
	}
	ret = 0;
out:
	free(src);
	return ret;
}

/* Parameters are used in float32: a value that is not finite there is
 * refused (1e39 would turn every element into inf or NaN). */
static bool f32_finite(double v)
{
	return isfinite(v) && fabs(v) <= FLT_MAX;
}

static int check_job(const weld_plan *p, const struct weld_job *j, struct weld_error *err)
{
	bool needs_base = weld_method_base(j->method) == WELD_BASE_REQUIRED;
	size_t min_src, max_src;

	weld_method_sources(j->method, &min_src, &max_src);
	if (needs_base && j->base_model < 0)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': %s needs a base model",
				 j->name, weld_method_name(j->method));
	if (j->nsrc < min_src && j->method == WELD_METHOD_COPY)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': nothing to copy", j->name);
	if ((j->nsrc < min_src || j->nsrc > max_src) && needs_base && max_src == 1)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': %s takes exactly two models (base and one other), not %zu",
				 j->name, weld_method_name(j->method), j->nsrc + 1);
	if ((j->nsrc < min_src || j->nsrc > max_src) && min_src == max_src)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': %s takes exactly %zu models, not %zu",
				 j->name, weld_method_name(j->method), min_src, j->nsrc);
	if (j->nsrc < min_src || j->nsrc > max_src)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': %s takes %zu to %zu models, not %zu",
				 j->name, weld_method_name(j->method), min_src, max_src, j->nsrc);
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_source *src = &j->src[s];
		const char *mp = weld_model_path(p->models[src->model]);

		if (!f32_finite(src->weight))
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': weight %g of '%s' is not a finite float32 number",
					 j->name, src->weight, mp);
		if (!f32_finite(src->weight * j->lambda))
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': weight %g of '%s' times lambda %g is not a finite float32 number",
					 j->name, src->weight, mp, j->lambda);
		if (weld_method_uses(&p->o, j->method, WELD_P_DENSITY) && !(src->density > 0 && src->density <= 1))
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': density %g of '%s' is outside (0, 1]",
					 j->name, src->density, mp);
		if (weld_method_uses(&p->o, j->method, WELD_P_MASK_LAMBDA) && !(src->mask_lambda >= 0 && f32_finite(src->mask_lambda)))
			return weld_fail(err, WELD_ERR_ARG, "tensor '%s': mask lambda %g of '%s' must be >= 0",
					 j->name, src->mask_lambda, mp);
		if (weld_method_uses(&p->o, j->method, WELD_P_EPSILON) && src->density < 1 &&
		    !(src->epsilon >= 0 && src->density - src->epsilon > 0 && src->density + src->epsilon < 1))
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': density %g and epsilon %g of '%s' give keep probabilities outside (0, 1) (need epsilon < density < 1 - epsilon)",
					 j->name, src->density, src->epsilon, mp);
	}
	if (!f32_finite(j->lambda))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': lambda %g is not a finite float32 number",
				 j->name, j->lambda);
	if (weld_method_uses(&p->o, j->method, WELD_P_GAMMA) && !(j->gamma >= 0 && j->gamma < 1))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': gamma %g is outside [0, 1)",
				 j->name, j->gamma);
	if (weld_method_uses(&p->o, j->method, WELD_P_T) && !isfinite(j->t))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': t %g is not finite", j->name, j->t);
	if (weld_method_uses(&p->o, j->method, WELD_P_T) && !f32_finite(j->t))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': t %g is not a finite float32 number",
				 j->name, j->t);
	if (weld_method_uses(&p->o, j->method, WELD_P_RAM_EPSILON) && !(j->epsilon >= 0 && f32_finite(j->epsilon)))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': epsilon %g must be a finite number >= 0",
				 j->name, j->epsilon);
	if (weld_method_uses(&p->o, j->method, WELD_P_R) && !f32_finite(j->ram_r))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': r %g is not a finite float32 number",
				 j->name, j->ram_r);
	if (weld_method_uses(&p->o, j->method, WELD_P_ALPHA) && !(j->ram_alpha >= 0 && f32_finite(j->ram_alpha)))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': alpha %g must be a finite number >= 0",
				 j->name, j->ram_alpha);
	if (weld_method_uses(&p->o, j->method, WELD_P_MAX_ITER) &&
	    !(j->max_iter >= 0 && j->max_iter == floor(j->max_iter) && j->max_iter <= 1e6))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': max_iter %g is not an integer in [0, 1000000]",
				 j->name, j->max_iter);
	if (weld_method_uses(&p->o, j->method, WELD_P_TOL) && !(j->tol >= 0 && isfinite(j->tol)))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': tol %g must be a finite number >= 0",
				 j->name, j->tol);
	if (weld_method_uses(&p->o, j->method, WELD_P_EPS) && !(j->epsilon >= 0 && isfinite(j->epsilon)))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': eps %g must be a finite number >= 0",
				 j->name, j->epsilon);
	if ((j->method == WELD_METHOD_AVERAGE || j->method == WELD_METHOD_MULTISLERP) && p->o.normalize) {
		double sw = 0;

		for (size_t s = 0; s < j->nsrc; s++)
			sw += j->src[s].weight;
		if (sw == 0)
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': the weights sum to 0 (use --no-normalize for a plain sum)",
					 j->name);
	}
	return 0;
}

/* --scope model needs one density per model and the same sources in every
 * merged job, because each model is one selection unit. */
static int check_model_scope(const weld_plan *p, struct weld_error *err)
{
	const struct weld_job *first = NULL;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];

		if (j->method == WELD_METHOD_COPY)
			continue;
		if (!first) {
			first = j;
			continue;
		}
		if (j->nsrc != first->nsrc)
			return weld_fail(err, WELD_ERR_ARG,
					 "--scope model: tensor '%s' has %zu sources but '%s' has %zu (all tensors must come from the same models)",
					 j->name, j->nsrc, first->name, first->nsrc);
		for (size_t s = 0; s < j->nsrc; s++) {
			if (j->src[s].model != first->src[s].model)
				return weld_fail(err, WELD_ERR_ARG,
						 "--scope model: tensor '%s' takes its sources from other models than '%s'",
						 j->name, first->name);
			if (j->src[s].density != first->src[s].density)
				return weld_fail(err, WELD_ERR_ARG,
						 "--scope model: density of '%s' is %g for '%s' but %g for '%s' (one value per model)",
						 weld_model_path(p->models[j->src[s].model]),
						 j->src[s].density, j->name, first->src[s].density,
						 first->name);
		}
	}
	return 0;
}

int weld_plan_threads(const weld_plan *p)
{
	/* OMP_NUM_THREADS, else every core */
	return p->o.threads > 0 ? p->o.threads : omp_get_max_threads();
}

bool weld_plan_della_memos(const weld_plan *p)
{
	if (p->o.rescale != WELD_RESCALE_INVERSE)
		return false;
	for (size_t i = 0; i < p->njobs; i++)
		if (weld_method_rank_drop(p->jobs[i].method))
			return true;
	return false;
}

const char *weld_plan_config_dir(const weld_plan *p)
{
	const struct weld_job *j0;

	if (!p->o.copy_files || !p->njobs)
		return NULL;
	if (p->o.config_from)
		return p->o.config_from;
	j0 = &p->jobs[0];
	return weld_model_dir(p->models[j0->base_model >= 0 ? j0->base_model : j0->src[0].model]);
}

/* The config.json the output copies must be readable JSON now, not only
 * when the merge is done. */
static int check_config(const weld_plan *p, struct weld_error *err)
{
	const char *dir = weld_plan_config_dir(p);
	char *path, *text = NULL;
	cJSON *root = NULL;
	struct stat st;
	int r = 0;

	if (!dir)
		return 0;
	if (!(path = weld_path_join(dir, "config.json")))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (lstat(path, &st) == 0 || errno != ENOENT) {
		r = weld_read_small_file(path, WELD_CONFIG_MAX_BYTES, &text, NULL, err);
		if (r == 0 && !cJSON_IsObject(root = cJSON_Parse(text)))
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", path);
	}
	cJSON_Delete(root);
	free(text);
	free(path);
	return r;
}

/* Top-k: a quarter of the budget left may hold recorded keys, never more
 * than every key of the largest unit. With --scope model, where every
 * selection of every model records at once, what a chunk of the largest
 * size leaves, up to three quarters. Sets and returns p->record_bytes. */
static uint64_t record_budget(weld_plan *p, uint64_t budget, uint64_t maxsrc, uint64_t maxsel,
			      uint64_t slices, uint64_t per_elem)
{
	uint64_t unit = 0, most, spare = budget > WELD_MAX_CHUNK * per_elem
		? budget - WELD_MAX_CHUNK * per_elem : 0;

	for (size_t i = 0; i < p->njobs; i++) {
		uint64_t n = p->jobs[i].method == WELD_METHOD_COPY ? 0 : p->jobs[i].nelem;

		if (p->o.scope == WELD_SCOPE_MODEL)
			unit += n;
		else if (n > unit)
			unit = n;
	}
	most = unit * maxsrc * maxsel * sizeof(uint32_t) + slices * 8192 * 4 * maxsrc * maxsel;
	p->record_bytes = budget / 4;
	if (p->o.scope == WELD_SCOPE_MODEL && spare > p->record_bytes)
		p->record_bytes = spare < budget / 4 * 3 ? spare : budget / 4 * 3;
	if (p->record_bytes > most)
		p->record_bytes = most;
	if (p->o.record_memory < p->record_bytes)
		p->record_bytes = p->o.record_memory;
	return p->record_bytes;
}

/* dare --rescale l1 per tensor: the L1 pass keeps its draws as bits for
 * the apply pass, where an eighth of the budget left holds them; della
 * --rescale l1 keeps its drops so, in up to a quarter (ranking a row again
 * costs far more than a draw). Sets p->drop_stride and returns the bytes
 * taken (0: the draws are made again). */
static uint64_t draws_budget(weld_plan *p, uint64_t budget, uint64_t maxsrc, uint64_t per_elem)
{
	uint64_t largest = 0, share = 8;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		uint64_t n = 0;

		if (weld_method_l1_rescale(&p->o, j->method))
			n = j->nelem;
		if (weld_method_rank_drop(j->method) && p->o.rescale == WELD_RESCALE_L1) {
			n = 8 * weld_della_bit_bytes(j);
			share = 4;
		}
		largest = n > largest ? n : largest;
	}
	largest = (largest + WELD_BLOCK - 1) / WELD_BLOCK * WELD_BLOCK;
	if (!largest || maxsrc * (largest / 8) > budget / share ||
	    budget - maxsrc * (largest / 8) < WELD_MIN_CHUNK * per_elem)
		return 0;
	p->drop_stride = largest / 8;
	return maxsrc * p->drop_stride;
}

/* sce and arcee_fusion: room for their records beyond the WELD_REC_BYTES
 * of the fixed buffers, enough for the ranges of a large tensor (a pass
 * fewer): WELD_REC_MORE, at most an eighth of the budget left, what the
 * largest tensor could record, and the whole room at most the record
 * memory. Sets p->rec_bytes and returns the bytes added. */
static uint64_t rec_budget(weld_plan *p, uint64_t budget, uint64_t per_elem)
{
	uint64_t most = 0, extra = budget / 8 < WELD_REC_MORE ? budget / 8 : WELD_REC_MORE;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		uint64_t n = 0;

		if (weld_method_sce(j->method))
			n = j->nelem * (3 + j->nsrc) * 4;   /* a position, a key, the squares */
		if (weld_method_arcee(j->method))
			n = j->nelem * 4;                   /* a key */
		most = n > most ? n : most;
	}
	if (!most)
		return 0;
	most = most > WELD_REC_BYTES ? most - WELD_REC_BYTES : 0;
	extra = extra < most ? extra : most;
	extra = extra < p->o.record_memory ? extra : p->o.record_memory;
	if (budget - extra < WELD_MIN_CHUNK * per_elem)
		extra = 0;
	p->rec_bytes = WELD_REC_BYTES + extra;
	if (p->rec_bytes > p->o.record_memory)
		p->rec_bytes = p->o.record_memory;
	return extra;
}

/*
 * The SVD methods (svd_pass.c): compile --svd-exclude, check iso_cts's
 * split of each matrix, and find the largest whole-matrix job's memory,
 * which the execution holds on top of the streaming buffers.
 */
static int plan_matrices(weld_plan *p, struct weld_error *err)
{
	int rc;

	if (p->o.svd_exclude && !p->svd_exclude_set) {
		if ((rc = regcomp(&p->svd_exclude, p->o.svd_exclude, REG_EXTENDED | REG_NOSUB)) != 0) {
			char msg[256];

			regerror(rc, &p->svd_exclude, msg, sizeof(msg));
			return weld_fail(err, WELD_ERR_ARG, "--svd-exclude '%s': %s", p->o.svd_exclude, msg);
		}
		p->svd_exclude_set = true;
	}
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		size_t k, c, per;
		uint64_t b;

		if (!weld_plan_svd_matrix(p, j))
			continue;
		k = (size_t)(j->shape[0] < j->shape[1] ? j->shape[0] : j->shape[1]);
		if (j->method == WELD_METHOD_ISO_CTS &&
		    weld_iso_cts_dims(k, j->nsrc, p->o.common_fraction, &c, &per) < 0)
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': common_space_fraction %g leaves %zu dimensions to %zu models, which round to more than %zu (raise it)",
					 j->name, p->o.common_fraction,
					 k - (size_t)((double)k * p->o.common_fraction), j->nsrc, k);
		b = weld_svd_job_bytes(p, j);
		if (b == UINT64_MAX)
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': %lld x %lld is too large to decompose (LAPACK's dimensions are 32-bit)",
					 j->name, (long long)j->shape[0], (long long)j->shape[1]);
		if (b > p->matrix_bytes) {
			p->matrix_bytes = b;
			p->matrix_job = i;
		}
	}
	return 0;
}

int weld_plan_finish(weld_plan *p, struct weld_error *err)
{
	uint64_t threads = (uint64_t)weld_plan_threads(p), maxsrc = 1, max_row = 1;
	uint64_t slices, per_slice, shared, avail, read_elem = 0, read_fixed = 0;
	uint64_t fixed, per_elem, budget, tile = WELD_BLOCK, super, raw_es = 1, maxsel = 0, pcb_bytes;
	uint64_t sce_extra;
	bool row = p->o.scope == WELD_SCOPE_ROW;
	const struct weld_job *widest = NULL;  /* the job whose rows are longest */
	char why[512] = "";
	size_t maxstats = 0;

	if (!p->njobs)
		return weld_fail(err, WELD_ERR_ARG, "nothing to merge: no tensors");
	for (size_t i = 0; i < p->njobs; i++) {
		bool pcb = weld_method_pcb(p->jobs[i].method);

		p->ranks = p->ranks || weld_method_rank_drop(p->jobs[i].method) || (pcb && row);
		p->hist_stats = p->hist_stats || (pcb && !row) || weld_method_sce(p->jobs[i].method) ||
				weld_method_arcee(p->jobs[i].method);
		p->ranks = p->ranks || weld_method_arcee(p->jobs[i].method);
	}
	row = row || p->ranks;
	if (check_config(p, err) < 0)
		return -1;
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];

		if (check_job(p, j, err) < 0)
			return -1;
		for (size_t s = 0; s < j->nsrc; s++)
			if (check_formats(p, j->base_model >= 0 ? j->base_model : j->src[0].model,
					  j->src[s].model, err) < 0)
				return -1;
		maxsrc = j->nsrc > maxsrc ? j->nsrc : maxsrc;
		if ((uint64_t)weld_job_selections(&p->o, j) > maxsel)
			maxsel = (uint64_t)weld_job_selections(&p->o, j);
		maxstats = weld_job_stats(&p->o, j) > maxstats ? weld_job_stats(&p->o, j) : maxstats;
		if (row && weld_method_row_units(&p->o, j->method) && j->ndim > 0 &&
		    (uint64_t)j->shape[j->ndim - 1] > max_row) {
			max_row = (uint64_t)j->shape[j->ndim - 1];
			widest = j;
		}
		for (size_t s = 0; s < j->nsrc; s++) {
			const struct weld_tensor_info *t =
				weld_model_tensor(p->models[j->src[s].model], (size_t)j->src[s].tensor);
			uint64_t es = weld_dtype_size(t->dtype);

			p->input_bytes += weld_tensor_stored_bytes(t, j->nelem);
			raw_es = es > raw_es ? es : raw_es;
		}
		if (j->base_model >= 0)
			p->input_bytes += weld_tensor_stored_bytes(
				weld_model_tensor(p->models[j->base_model], (size_t)j->base_tensor),
				j->nelem);
	}
	if (p->o.scope == WELD_SCOPE_MODEL && check_model_scope(p, err) < 0)
		return -1;
	if (plan_matrices(p, err) < 0)
		return -1;
	if (weld_plan_output_format(p, err) < 0)
		return -1;
	if (p->o.parts && weld_plan_output_format(p, NULL) == WELD_FORMAT_GGUF)
		return weld_fail(err, WELD_ERR_ARG,
				 "--part splits an output by its safetensors shards; a GGUF output is one file (add --format safetensors, or merge on one machine)");
	/*
	 * Per slice: raw super-tiles of every input, f32 tiles (sources, base,
	 * output, scratch), keep masks, a row buffer (and with --allow-nonfinite
	 * a NaN mask); per thread: histograms.
	 * Shared: the encoded output chunk, the packed masks and the histogram
	 * totals.
	 */
	/* a row's top-k counts its keys in 32 bits (weld_topk_select) */
	if (row && widest && max_row > UINT32_MAX)
		return weld_fail(err, WELD_ERR_ARG,
				 "--scope row: tensor '%s' has rows of %llu elements, more than the %lu a row may hold",
				 widest->name, (unsigned long long)max_row, (unsigned long)UINT32_MAX);
	if (row && max_row > tile)
		tile = max_row;
	super = tile > WELD_SUPER ? tile : WELD_SUPER;
	per_slice = (maxsrc + 1) * super * raw_es + (maxsrc + 6) * tile * 4 + 2 * maxsrc * tile +
		    tile * 4 + (p->o.allow_nonfinite ? tile : 0);
	if (p->ranks)   /* della: rank scratch (rank_pass.c) and exact sums */
		per_slice += 8 * tile * 4 + maxsrc * 2 * sizeof(struct weld_xsum);
	else if (p->hist_stats) /* sce: exact sums */
		per_slice += maxsrc * 2 * sizeof(struct weld_xsum);
	shared = threads * maxsrc * maxsel * WELD_HIST_BINS * 4 +
		 maxsrc * maxsel * WELD_HIST_BINS * 8 + RESERVE_BYTES;
	if (weld_plan_della_memos(p))     /* della --rescale inverse: its memos, per thread */
		shared += threads * tile * (sizeof(int64_t) + sizeof(float));
	if (p->hist_stats)      /* two histograms per source, per thread and in total */
		shared += (threads * 4 + 8) * (maxsrc < 2 ? 2 : maxsrc) * 2 * WELD_HIST_BINS;
	for (size_t i = 0; i < p->njobs; i++)
		if (weld_method_sce(p->jobs[i].method) || weld_method_arcee(p->jobs[i].method)) {
			shared += WELD_REC_BYTES;    /* sce's and arcee_fusion's records */
			break;
		}
	shared += weld_plan_fp8_band_bytes(p);  /* --dtype fp8: the writer's band */
	/*
	 * A chunk is cut into more slices than there are threads, handed out as
	 * threads become free: a thread that the system preempts (for the
	 * writer, say) then holds up the chunk by one small slice, not by a
	 * whole share. Four per thread, where their buffers take at most an
	 * eighth of the memory; else one per thread.
	 */
	/* models with a LoRA adapter compute the delta rows of each read */
	for (size_t i = 0; i < p->nmodels; i++) {
		uint64_t pe, pf;

		weld_model_read_cost(p->models[i], &pe, &pf);
		read_elem = pe > read_elem ? pe : read_elem;
		read_fixed = pf > read_fixed ? pf : read_fixed;
	}
	per_slice += read_elem * super + read_fixed;
	shared += read_fixed;
	per_elem = WELD_OUTQ_BUFS * 8 + maxsrc / 8 + 1 + read_elem; /* output buffers, packed masks */
	/* a STATS pass's sums per block */
	per_elem += (maxstats * 8 + WELD_BLOCK - 1) / WELD_BLOCK;
	/* whole matrices at once: as many as fit beside the least streaming needs */
	p->matrices = weld_plan_svd_at_once(p, threads * per_slice + shared + WELD_MIN_CHUNK * per_elem);
	slices = threads > 1 ? 4 * threads : 1;
	avail = p->o.max_memory > p->matrices * p->matrix_bytes
		? p->o.max_memory - p->matrices * p->matrix_bytes : 0;
	if (slices * per_slice > avail / 8 ||
	    avail < slices * per_slice + shared + WELD_MIN_CHUNK * per_elem)
		slices = threads;
	fixed = slices * per_slice + shared;
	if (p->ranks && widest)
		snprintf(why, sizeof(why), " (%s holds whole rows in memory; tensor '%s' has rows of %llu elements)",
			 weld_method_name(widest->method), widest->name, (unsigned long long)max_row);
	else if (row)
		snprintf(why, sizeof(why), " (--scope row holds whole rows in memory)");
	if (avail < fixed + WELD_MIN_CHUNK * per_elem && p->matrix_bytes) {
		const struct weld_job *mj = &p->jobs[p->matrix_job];

		return weld_fail(err, WELD_ERR_ARG,
				 "--max-memory %llu is too small: tensor '%s' (%s decomposes its %lld x %lld matrix whole) needs at least %llu bytes",
				 (unsigned long long)p->o.max_memory, mj->name, weld_method_name(mj->method),
				 (long long)mj->shape[0], (long long)mj->shape[1],
				 (unsigned long long)(fixed + WELD_MIN_CHUNK * per_elem + p->matrix_bytes));
	}
	if (avail < fixed + WELD_MIN_CHUNK * per_elem)
		return weld_fail(err, WELD_ERR_ARG,
				 "--max-memory %llu is too small: this merge needs at least %llu bytes%s",
				 (unsigned long long)p->o.max_memory,
				 (unsigned long long)(fixed + WELD_MIN_CHUNK * per_elem), why);
	budget = avail - fixed;
	if (maxsel && !row)
		budget -= record_budget(p, budget, maxsrc, maxsel, slices, per_elem);
	if ((!row || p->ranks) && p->o.scope == WELD_SCOPE_TENSOR)
		budget -= draws_budget(p, budget, maxsrc, per_elem);
	sce_extra = rec_budget(p, budget, per_elem);
	budget -= sce_extra;
	/* pcb: at most three quarters of what is left, and a quarter of the memory */
	p->pcb_grant = budget / 4 * 3 < p->o.max_memory / 4 ? budget / 4 * 3 : p->o.max_memory / 4;
	pcb_bytes = weld_plan_pcb_bytes(p);
	budget -= pcb_bytes;
	p->chunk = budget / per_elem / WELD_BLOCK * WELD_BLOCK;
	if (p->chunk > WELD_MAX_CHUNK)
		p->chunk = WELD_MAX_CHUNK;
	{
		uint64_t largest = WELD_MIN_CHUNK;

		for (size_t i = 0; i < p->njobs; i++)
			largest = p->jobs[i].nelem > largest ? p->jobs[i].nelem : largest;
		largest = (largest + WELD_BLOCK - 1) / WELD_BLOCK * WELD_BLOCK;
		if (p->chunk > largest)
			p->chunk = largest;
	}
	if (row && p->chunk < 8 * max_row)
		p->chunk = (8 * max_row + WELD_BLOCK - 1) / WELD_BLOCK * WELD_BLOCK;
	/* pcb: a unit's inputs held between its passes, in three quarters of what is left */
	budget = budget > p->chunk * per_elem ? budget - p->chunk * per_elem : 0;
	p->pcb_hold = weld_plan_pcb_hold(p, budget / 4 * 3);
	p->tile = tile;
	p->super = super;
	p->slices = (int)slices;
	p->raw_es = raw_es;
	p->maxsel = (int)maxsel;
	p->memory = fixed - RESERVE_BYTES + p->chunk * per_elem + p->record_bytes +
		    maxsrc * p->drop_stride + p->matrices * p->matrix_bytes + pcb_bytes + sce_extra +
		    p->pcb_hold;
	p->finished = true;
	return 0;
}
