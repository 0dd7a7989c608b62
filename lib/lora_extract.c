/*
 * lora_extract.c - weld extract-lora: a PEFT adapter folder from a
 * fine-tune and its base (METHODS 17).
 *
 * Plan: every tensor of the fine-tune gets a role, from its name and shape
 * alone (mergekit asks transformers for module types; weld has only the
 * checkpoint): a 2-D .weight is a Linear, decomposed; the input embedding
 * and the output head are saved whole unless --embed-lora; --save-module
 * modules are saved whole; a Linear's .bias becomes lora_B.bias (its
 * delta); anything else (norms, other biases, 3-D and more) is saved
 * whole, or dropped with --skip-undecomposable. Regexes skip modules.
 * Memory: the bound, computed before any data is read
 * (lora_extract_memory.c), decides how many matrices are decomposed at
 * once: up to `threads`, each counted at the size of the largest. BLAS
 * then runs on one thread per matrix, so that no result depends on -j
 * (OpenBLAS's bits depend on its thread count).
 * Then the folder is written (lora_extract_write.c): the factors, the
 * saved tensors streamed from the fine-tune, adapter_config.json.
 */
#include "lora_extract_impl.h"
#include "linalg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const EMBED_IN[] = { "embed_tokens", "wte", "word_embeddings", "embed_in",
					"tok_embeddings" };
static const char *const HEAD[] = { "lm_head", "embed_out", "output" };

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static bool any_match(const regex_t *re, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (regexec(&re[i], s, 0, NULL, 0) == 0)
			return true;
	return false;
}

static void warn(const struct ctx *c, const char *fmt, ...) WELD_PRINTF(2, 3);

static void warn(const struct ctx *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!c->o->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->o->warn(c->o->cb_ctx, msg);
}

static int compile(const char *const *src, size_t n, regex_t **out, size_t *nout,
		   const char *opt, struct weld_error *err)
{
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++, (*nout)++)
		if (regcomp(&(*out)[i], src[i], REG_EXTENDED | REG_NOSUB) != 0)
			return weld_fail(err, WELD_ERR_ARG, "%s '%s': not a valid regular expression",
					 opt, src[i]);
	return 0;
}

static void suffix(const char *name, bool *weight, bool *bias)
{
	size_t n = strlen(name);

	*weight = n > 7 && strcmp(name + n - 7, ".weight") == 0;
	*bias = n > 5 && strcmp(name + n - 5, ".bias") == 0;
}

/* The module a tensor belongs to: its name without its last part
 * (.weight, .bias or another parameter's name), or the name itself. */
static char *module_of(const char *name)
{
	const char *dot = strrchr(name, '.');

	return strndup(name, dot ? (size_t)(dot - name) : strlen(name));
}

/* Does the base hold a tensor of the fine-tune's shape? Its index, or -1. */
static int64_t base_twin(const struct ctx *c, const struct weld_tensor_info *t)
{
	int64_t j = weld_model_find(c->base, t->name);
	const struct weld_tensor_info *b = j >= 0 ? weld_model_tensor(c->base, (size_t)j) : NULL;

	if (!b || b->ndim != t->ndim || memcmp(b->shape, t->shape, (size_t)t->ndim * sizeof(t->shape[0])) ||
	    !weld_dtype_is_float(b->dtype))
		return -1;
	return j;
}

static enum weld_dtype out_dtype(enum weld_dtype d)
{
	return d == WELD_F64 || d == WELD_F16 || d == WELD_BF16 ? d : WELD_F32;
}

/* The role of a weight (or other non-bias tensor) of the fine-tune. */
static int role_weight(struct ctx *c, size_t i, struct xent *e, bool weight)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	bool saved = in_list(e->module, c->o->save, c->o->nsave) ||
		     in_list(e->leaf, c->o->save, c->o->nsave);
	bool emb_in = in_list(e->leaf, EMBED_IN, 5), head = in_list(e->leaf, HEAD, 3);
	bool linear = weight && t->ndim == 2 && weld_dtype_is_float(t->dtype);

	if (!weld_dtype_is_float(t->dtype))
		return R_SKIP;  /* a buffer (position_ids): an adapter holds parameters */
	if (any_match(c->exc, c->nexc, e->module) ||
	    (!saved && !emb_in && !head && c->ninc && !any_match(c->inc, c->ninc, e->module)))
		return R_SKIP;
	if (saved)
		return R_SAVE;
	if (emb_in || head) {
		if (!c->o->embed_lora || !linear)
			return R_SAVE;
		if ((e->base = base_twin(c, t)) < 0) {
			warn(c, "tensor '%s': the base's differs in shape (vocabulary size?): saved whole, not as LoRA",
			     t->name);
			return R_SAVE;
		}
		return emb_in ? R_EMBED : R_LINEAR;
	}
	if (!linear)
		return c->o->skip_undecomposable ? R_SKIP : R_SAVE;
	if ((e->base = base_twin(c, t)) < 0)
		return weld_fail(c->err, WELD_ERR_MISMATCH,
				 "'%s': tensor '%s' [%lld, %lld]: the base model '%s' has no floating tensor of that name and shape",
				 weld_model_path(c->ft), t->name, (long long)t->shape[0],
				 (long long)t->shape[1], weld_model_path(c->base));
	return R_LINEAR;
}

/* Roles: weights first, then each bias after its module's weight. */
static int plan(struct ctx *c)
{
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < c->n; i++) {
			struct xent *e = &c->e[i];
			const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
			bool weight, bias;
			int r;

			if (!pass && !(e->module = module_of(t->name)))
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
			suffix(t->name, &weight, &bias);
			if (pass != bias)
				continue;
			e->leaf = strrchr(e->module, '.') ? strrchr(e->module, '.') + 1 : e->module;
			e->base = -1;
			e->dt = out_dtype(t->dtype);
			if (bias) {
				char *wn = weld_strfmt("%s.weight", e->module);
				int64_t w = wn ? weld_model_find(c->ft, wn) : -1;

				free(wn);
				if (w >= 0 && c->e[w].role == R_LINEAR && t->ndim == 1 &&
				    (e->base = base_twin(c, t)) >= 0) {
					e->role = R_BIAS;
					continue;
				}
				weight = false;
			}
			r = role_weight(c, i, e, weight);
			if (r < 0)
				return -1;
			e->role = (enum role)r;
		}
	return 0;
}

/* ---------------------------------------------------------------- the SVDs */

/*
 * d = ft − base of tensor i [rows × cols] in double, row-major, or its
 * transpose [cols × rows] (an embedding: Δᵀ is decomposed).
 */
static int read_delta(struct ctx *c, size_t i, int64_t j, bool transpose, double *d,
		      struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	uint64_t cols = t->ndim == 2 ? (uint64_t)t->shape[1] : 1, rows = t->nelem / (cols ? cols : 1);
	size_t step = weld_extract_read_step(t->nelem);
	float *x = malloc((step + 1) * sizeof(float)), *y = malloc((step + 1) * sizeof(float));
	int r = 0;

	if (!x || !y)
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (uint64_t first = 0; first < t->nelem && !r; first += step) {
		size_t n = t->nelem - first < step ? (size_t)(t->nelem - first) : step;

		r = weld_model_read_f32(c->ft, i, first, n, x, NULL, err);
		if (!r)
			r = weld_model_read_f32(c->base, (size_t)j, first, n, y, NULL, err);
		for (size_t k = 0; k < n && !r; k++) {
			uint64_t e = first + k;

			d[transpose ? (e % cols) * rows + e / cols : e] = (double)x[k] - (double)y[k];
		}
	}
	free(x);
	free(y);
	return r;
}

/* Encode n doubles in dt (through float32, as every weld output). */
static void *encode(const double *v, size_t n, enum weld_dtype dt)
{
	void *out = malloc(n * weld_dtype_size(dt) + 1);
	float *f = malloc(n * sizeof(float) + 1);

	if (out && f) {
		for (size_t k = 0; k < n; k++)
			f[k] = (float)v[k];
		if (dt == WELD_F64)
			memcpy(out, v, n * sizeof(double));
		else
			weld_encode_f32(dt, f, out, n);
	}
	free(f);
	if (!f) {
		free(out);
		return NULL;
	}
	return out;
}

/* Decompose entry i (its rows and cols set by the plan); errors in err.
 * Runs on any thread: it touches only its entry. */
static int decompose(struct ctx *c, size_t i, struct weld_error *err)
{
	struct xent *e = &c->e[i];
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	bool tr = e->role == R_EMBED;
	struct weld_lora_svd_opts so = weld_extract_svd_opts(c, t->name);
	struct weld_lora_factors f = { 0 };
	struct weld_extract_module rep;
	double *d;
	int r = -1;

	if (!(d = malloc((size_t)t->nelem * sizeof(double) + 1)))
		return weld_fail(err, WELD_ERR_NOMEM,
				 "tensor '%s': out of memory for its %llu-element delta in double",
				 t->name, (unsigned long long)t->nelem);
	if (read_delta(c, i, e->base, tr, d, err) < 0)
		goto out;
	if (weld_lora_svd(d, (size_t)e->rows, (size_t)e->cols, &so, &f, err) < 0) {
		snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg),
			 " (tensor '%s')", t->name);
		goto out;
	}
	e->rank = f.rank;
	if (f.rank && (!(e->a = encode(f.a, f.rank * (size_t)e->cols, e->dt)) ||
		       !(e->b = encode(f.b, (size_t)e->rows * f.rank, e->dt)))) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	rep = (struct weld_extract_module){ e->module, tr ? "embedding" : "lora", t->shape[0],
					    t->shape[1], f.rank, f.rel_err, f.lapack_seconds };
	#pragma omp critical(weld_extract_report)
	{
		c->st->lapack_seconds += f.lapack_seconds;
		c->st->decomposed += f.rank > 0;
		if (c->o->module)
			c->o->module(c->o->cb_ctx, &rep);
	}
	r = 0;
out:
	weld_lora_factors_free(&f);
	free(d);
	return r;
}

/*
 * Every decomposition, c->threads at a time, BLAS on one thread each. The
 * first error in plan order is reported; after an error no new matrix is
 * started.
 */
static int decompose_all(struct ctx *c)
{
	size_t *idx = malloc((c->n + 1) * sizeof(*idx)), nj = 0;
	struct weld_error *errs = NULL;
	int *rc = NULL, blas, stop = 0, r = 0;

	for (size_t i = 0; idx && i < c->n; i++)
		if (c->e[i].role == R_LINEAR || c->e[i].role == R_EMBED)
			idx[nj++] = i;
	if (idx) {
		errs = calloc(nj + 1, sizeof(*errs));
		rc = calloc(nj + 1, sizeof(*rc));
	}
	if (!idx || !errs || !rc) {
		free(idx);
		free(errs);
		free(rc);
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	}
	blas = weld_linalg_threads(1);
	#pragma omp parallel for schedule(dynamic, 1) num_threads(c->threads)
	for (size_t k = 0; k < nj; k++) {
		int s;

		#pragma omp atomic read
		s = stop;
		if (s)
			continue;
		if ((rc[k] = decompose(c, idx[k], &errs[k])) < 0) {
			#pragma omp atomic write
			stop = 1;
		}
	}
	weld_linalg_threads(blas);
	for (size_t k = 0; k < nj && !r; k++)
		if (rc[k] < 0) {
			*c->err = errs[k];
			r = -1;
		}
	free(idx);
	free(errs);
	free(rc);
	return r;
}

static int bias_delta(struct ctx *c, size_t i)
{
	struct xent *e = &c->e[i];
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	double *d = malloc((size_t)t->nelem * sizeof(double) + 1);
	int r = -1;

	if (!d)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	if (read_delta(c, i, e->base, false, d, c->err) == 0) {
		e->a = encode(d, (size_t)t->nelem, e->dt);
		r = e->a ? 0 : weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	}
	free(d);
	return r;
}

static int compute(struct ctx *c)
{
	if (decompose_all(c) < 0)
		return -1;
	for (size_t i = 0; i < c->n; i++) {
		struct xent *e = &c->e[i];

		if (e->role == R_BIAS) {
			/* a module written with no factor (ρ = 0) has no lora_B for it */
			char *wn = weld_strfmt("%s.weight", e->module);
			int64_t w = wn ? weld_model_find(c->ft, wn) : -1;

			free(wn);
			if (w < 0 || !c->e[w].rank)
				e->role = R_SKIP;
			else if (bias_delta(c, i) < 0)
				return -1;
		}
		c->st->saved += e->role == R_SAVE;
		c->st->skipped += e->role == R_SKIP;
		if (e->role == R_SAVE || e->role == R_SKIP) {
			const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
			struct weld_extract_module rep = { e->module, e->role == R_SAVE ? "saved" : "skipped",
							   t->shape[0], t->ndim > 1 ? t->shape[1] : 1,
							   0, 0, 0 };

			if (c->o->module)
				c->o->module(c->o->cb_ctx, &rep);
		}
	}
	return 0;
}

int weld_extract_lora(const weld_model *ft, const weld_model *base, const char *out,
		      const struct weld_extract_opts *o, struct weld_extract_stats *st,
		      struct weld_error *err)
{
	struct ctx c = { .ft = ft, .base = base, .o = o, .st = st, .n = weld_model_count(ft),
			 .err = err };
	int r = -1;

	memset(st, 0, sizeof(*st));
	c.e = calloc(c.n + 1, sizeof(*c.e));
	if (!c.e)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (compile(o->include, o->ninclude, &c.inc, &c.ninc, "--include-regex", err) == 0 &&
	    compile(o->exclude, o->nexclude, &c.exc, &c.nexc, "--exclude-regex", err) == 0 &&
	    plan(&c) == 0 && weld_extract_plan_memory(&c) == 0 && compute(&c) == 0)
		r = weld_extract_write_folder(&c, out);
	for (size_t i = 0; i < c.n; i++) {
		free(c.e[i].module);
		free(c.e[i].a);
		free(c.e[i].b);
	}
	for (size_t i = 0; i < c.ninc; i++)
		regfree(&c.inc[i]);
	for (size_t i = 0; i < c.nexc; i++)
		regfree(&c.exc[i]);
	free(c.inc);
	free(c.exc);
	free(c.e);
	return r;
}
