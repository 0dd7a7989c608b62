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
 * Memory: the bound (each matrix's delta in double, its SVD's arrays and
 * workspace, read buffers; every module's factors, kept until written) is
 * computed before any data is read, and decides how many matrices are
 * decomposed at once: up to `threads`, each counted at the size of the
 * largest. BLAS then runs on one thread per matrix, so that no result
 * depends on -j (OpenBLAS's bits depend on its thread count).
 * Then the folder is written: the factors, the saved tensors streamed from
 * the fine-tune, adapter_config.json.
 */
#include "lora_extract.h"
#include "linalg.h"
#include "lora_svd.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "base_model.model."
#define STEP (1u << 20)
/* the binary, the models' headers, stacks and BLAS's own buffers */
#define EXTRACT_RESERVE (16ull << 20)

enum role { R_SKIP, R_SAVE, R_LINEAR, R_EMBED, R_BIAS };

struct xent {
	enum role role;
	char *module;
	const char *leaf;       /* inside module */
	int64_t base;           /* the base's tensor, for a delta */
	enum weld_dtype dt;     /* of the output tensors */
	size_t rank;
	int64_t rows, cols;     /* of what is decomposed (Δᵀ for an embedding) */
	void *a, *b;            /* factors (or the bias delta in a), encoded in dt */
};

struct ctx {
	const weld_model *ft, *base;
	const struct weld_extract_opts *o;
	struct weld_extract_stats *st;
	struct xent *e;         /* one per tensor of ft */
	size_t n;
	regex_t *inc, *exc;
	size_t ninc, nexc;
	int threads;            /* matrices at once (the plan's) */
	struct weld_error *err;
};

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

/* ---------------------------------------------------------------- memory */

static struct weld_lora_svd_opts svd_opts(const struct ctx *c, const char *name)
{
	return (struct weld_lora_svd_opts){
		.max_rank = c->o->max_rank, .eps = c->o->sv_epsilon,
		.distribute = c->o->distribute_scale, .fast = c->o->fast,
		.oversample = c->o->oversample, .power_iters = c->o->power_iters,
		.seed = weld_xxh3(name, strlen(name)),
	};
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Elements read at once from a tensor of nelem elements. */
static size_t read_step(uint64_t nelem)
{
	return nelem < STEP ? (size_t)nelem : STEP;
}

/* What one read_delta() call of nelem elements allocates: two float
 * buffers, a model's conversion buffer, and what a BASE+ADAPTER model
 * computes per read. */
static uint64_t read_bytes(const struct ctx *c, uint64_t nelem)
{
	uint64_t pe[2], pf[2];

	weld_model_read_cost(c->ft, &pe[0], &pf[0]);
	weld_model_read_cost(c->base, &pe[1], &pf[1]);
	return (uint64_t)read_step(nelem) * (2 * sizeof(float) + sizeof(double) + pe[0] + pe[1]) +
	       pf[0] + pf[1];
}

/* Memory of decomposing entry i: delta, reads, SVD, encoding; UINT64_MAX
 * if too large. Sets the entry's rows and cols. */
static uint64_t job_bytes(const struct ctx *c, size_t i)
{
	struct xent *e = &c->e[i];
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	struct weld_lora_svd_opts so = svd_opts(c, t->name);
	uint64_t svd, rank = c->o->max_rank;
	bool tr = e->role == R_EMBED;

	e->rows = tr ? t->shape[1] : t->shape[0];
	e->cols = tr ? t->shape[0] : t->shape[1];
	svd = weld_lora_svd_bytes((size_t)e->rows, (size_t)e->cols, &so);
	if (svd == UINT64_MAX || t->nelem > UINT64_MAX / 16 || rank > UINT32_MAX)
		return UINT64_MAX;
	/* the float32 copy of a factor that encode() makes */
	rank *= (uint64_t)(e->rows > e->cols ? e->rows : e->cols) * sizeof(float);
	return sat_add(sat_add(svd, 8 * t->nelem + read_bytes(c, t->nelem)), rank);
}

/* Bytes of an entry's output tensors, kept from its SVD to the writer. */
static uint64_t kept_bytes(const struct ctx *c, size_t i)
{
	const struct xent *e = &c->e[i];
	uint64_t es = weld_dtype_size(e->dt), k = (uint64_t)(e->rows < e->cols ? e->rows : e->cols);

	if (e->role == R_BIAS)
		return es * weld_model_tensor(c->ft, i)->nelem;
	k = c->o->max_rank < k ? c->o->max_rank : k;
	return es * k * (uint64_t)(e->rows + e->cols);
}

/*
 * The plan's bound: fixed + the kept factors + in_flight matrices, each
 * counted at the largest one's size; in_flight = min(threads, matrices,
 * what the budget holds). A budget without room for one is an error.
 */
static int plan_memory(struct ctx *c)
{
	uint64_t kept = 0, largest = 0, bias = 0, fixed, room;
	size_t big = 0, jobs = 0, want;

	for (size_t i = 0; i < c->n; i++) {
		const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
		uint64_t b;

		if (c->e[i].role == R_BIAS) {
			kept = sat_add(kept, kept_bytes(c, i));
			b = sat_add(8 * t->nelem, read_bytes(c, t->nelem));
			bias = b > bias ? b : bias;
			continue;
		}
		if (c->e[i].role != R_LINEAR && c->e[i].role != R_EMBED)
			continue;
		if ((b = job_bytes(c, i)) == UINT64_MAX)
			return weld_fail(c->err, WELD_ERR_ARG,
					 "tensor '%s': %lld x %lld is too large to decompose (LAPACK's dimensions are 32-bit)",
					 t->name, (long long)t->shape[0], (long long)t->shape[1]);
		kept = sat_add(kept, kept_bytes(c, i));
		jobs++;
		if (b > largest) {
			largest = b;
			big = i;
		}
	}
	/* the copy buffer of a saved tensor, or a bias delta, after the SVDs */
	fixed = EXTRACT_RESERVE + (bias > (uint64_t)STEP * 8 ? bias : (uint64_t)STEP * 8);
	fixed = sat_add(fixed, kept);
	if (!jobs) {
		c->threads = 1;
		c->st->memory = fixed;
		return 0;
	}
	if (c->o->max_memory < sat_add(fixed, largest)) {
		const struct weld_tensor_info *t = weld_model_tensor(c->ft, big);

		return weld_fail(c->err, WELD_ERR_ARG,
				 "--max-memory %llu is too small: tensor '%s' (its %lld x %lld delta is decomposed whole, in double) needs at least %llu bytes",
				 (unsigned long long)c->o->max_memory, t->name, (long long)t->shape[0],
				 (long long)t->shape[1], (unsigned long long)sat_add(fixed, largest));
	}
	room = (c->o->max_memory - fixed) / largest;
	want = c->o->threads > 0 ? (size_t)c->o->threads : (size_t)omp_get_max_threads();
	want = want < jobs ? want : jobs;
	c->threads = (int)(room < want ? room : want);
	c->st->in_flight = (size_t)c->threads;
	c->st->memory = fixed + (uint64_t)c->threads * largest;
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
	size_t step = read_step(t->nelem);
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
	struct weld_lora_svd_opts so = svd_opts(c, t->name);
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

/* ---------------------------------------------------------------- the folder */

/* The output tensors: per entry, up to two. */
static int layout(struct ctx *c, struct weld_out_tensor *t, size_t *nt)
{
	*nt = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct xent *e = &c->e[i];
		const struct weld_tensor_info *ft = weld_model_tensor(c->ft, i);
		bool emb = e->role == R_EMBED;
		const char *sa = emb ? ".lora_embedding_A" : ".lora_A.weight";
		const char *sb = emb ? ".lora_embedding_B" : ".lora_B.weight";

		if (e->role == R_SAVE) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s", ft->name), ft->dtype,
							   ft->ndim, { 0 } };
			memcpy(t[*nt].shape, ft->shape, sizeof(ft->shape));
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		} else if (e->role == R_BIAS) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s.lora_B.bias", e->module),
							   e->dt, 1, { ft->shape[0] } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		} else if ((e->role == R_LINEAR || emb) && e->rank) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s%s", e->module, sa), e->dt, 2,
							   { (int64_t)e->rank, e->cols } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s%s", e->module, sb), e->dt, 2,
							   { e->rows, (int64_t)e->rank } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		}
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, unique leaf names of the entries whose role is in mask. */
static cJSON *leaf_list(const struct ctx *c, unsigned mask, bool need_rank)
{
	const char **v = calloc(c->n + 1, sizeof(*v));
	cJSON *arr = cJSON_CreateArray();
	size_t k = 0;

	if (!v || !arr) {
		free(v);
		cJSON_Delete(arr);
		return NULL;
	}
	for (size_t i = 0; i < c->n; i++)
		if ((mask >> c->e[i].role & 1) && (!need_rank || c->e[i].rank))
			v[k++] = c->e[i].leaf;
	qsort(v, k, sizeof(*v), cmp_str);
	for (size_t i = 0; i < k; i++)
		if (!i || strcmp(v[i], v[i - 1]))
			cJSON_AddItemToArray(arr, cJSON_CreateString(v[i]));
	free(v);
	return arr;
}

static char *config_json(struct ctx *c)
{
	cJSON *j = cJSON_CreateObject(), *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject();
	cJSON *tm = leaf_list(c, 1u << R_LINEAR | 1u << R_EMBED, true);
	cJSON *ms = leaf_list(c, 1u << R_SAVE, false);
	bool bias = false;
	char *text = NULL;

	if (!j || !rp || !ap || !tm || !ms)
		goto out;
	for (size_t i = 0; i < c->n; i++) {
		const struct xent *e = &c->e[i];

		bias |= e->role == R_BIAS;
		if ((e->role == R_LINEAR || e->role == R_EMBED) && e->rank && e->rank != c->st->rank) {
			cJSON_AddNumberToObject(rp, e->module, (double)e->rank);
			cJSON_AddNumberToObject(ap, e->module, (double)e->rank);
		}
	}
	cJSON_AddStringToObject(j, "peft_type", "LORA");
	cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
	cJSON_AddStringToObject(j, "base_model_name_or_path", c->o->base_name ? c->o->base_name : "");
	cJSON_AddNumberToObject(j, "r", (double)c->st->rank);
	cJSON_AddNumberToObject(j, "lora_alpha", (double)c->st->rank);
	cJSON_AddItemToObject(j, "rank_pattern", rp);
	cJSON_AddItemToObject(j, "alpha_pattern", ap);
	rp = ap = NULL;
	cJSON_AddItemToObject(j, "target_modules", tm);
	tm = NULL;
	if (cJSON_GetArraySize(ms))
		cJSON_AddItemToObject(j, "modules_to_save", ms);
	else
		cJSON_AddNullToObject(j, "modules_to_save");
	if (cJSON_GetArraySize(ms) == 0)
		cJSON_Delete(ms);
	ms = NULL;
	cJSON_AddNumberToObject(j, "lora_dropout", 0);
	cJSON_AddStringToObject(j, "bias", "none");
	cJSON_AddBoolToObject(j, "lora_bias", bias);
	cJSON_AddBoolToObject(j, "use_rslora", false);
	cJSON_AddBoolToObject(j, "use_dora", false);
	cJSON_AddBoolToObject(j, "fan_in_fan_out", false);
	cJSON_AddBoolToObject(j, "inference_mode", true);
	cJSON_AddBoolToObject(j, "init_lora_weights", true);
	text = cJSON_Print(j);
out:
	cJSON_Delete(j);
	cJSON_Delete(rp);
	cJSON_Delete(ap);
	cJSON_Delete(tm);
	cJSON_Delete(ms);
	return text;
}

/* Stream a saved tensor from the fine-tune into the writer. */
static int copy_tensor(struct ctx *c, weld_writer *w, size_t i, int64_t wi)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	size_t es = weld_dtype_size(t->dtype);
	unsigned char *buf = malloc(STEP * es);
	int r = buf ? 0 : weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");

	for (uint64_t first = 0; first < t->nelem && !r; first += STEP) {
		size_t n = t->nelem - first < STEP ? (size_t)(t->nelem - first) : STEP;

		r = weld_model_read(c->ft, i, first, n, buf, c->err);
		if (!r)
			r = weld_writer_write(w, (size_t)wi, buf, n * es, c->err);
	}
	free(buf);
	return r;
}

static int write_data(struct ctx *c, weld_writer *w, const struct weld_out_tensor *t, size_t nt)
{
	size_t k = 0;

	for (size_t i = 0; i < c->n; i++) {
		struct xent *e = &c->e[i];
		bool two = (e->role == R_LINEAR || e->role == R_EMBED) && e->rank;

		if (e->role == R_SAVE) {
			if (copy_tensor(c, w, i, weld_writer_find(w, t[k++].name)) < 0)
				return -1;
		} else if (e->role == R_BIAS) {
			size_t len = (size_t)weld_model_tensor(c->ft, i)->nelem * weld_dtype_size(e->dt);

			if (weld_writer_write(w, (size_t)weld_writer_find(w, t[k++].name), e->a, len,
					      c->err) < 0)
				return -1;
		} else if (two) {
			if (weld_writer_write(w, (size_t)weld_writer_find(w, t[k].name), e->a,
					      e->rank * (size_t)e->cols * weld_dtype_size(e->dt), c->err) < 0 ||
			    weld_writer_write(w, (size_t)weld_writer_find(w, t[k + 1].name), e->b,
					      (size_t)e->rows * e->rank * weld_dtype_size(e->dt), c->err) < 0)
				return -1;
			k += 2;
		}
	}
	return k == nt ? 0 : weld_fail(c->err, WELD_ERR_ARG, "internal: %zu of %zu tensors written", k, nt);
}

static int write_folder(struct ctx *c, const char *out)
{
	struct weld_out_tensor *t = calloc(2 * c->n + 1, sizeof(*t));
	char *config = NULL;
	weld_writer *w = NULL;
	size_t nt = 0;
	int r = -1;

	if (!t)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < c->n; i++)
		if ((c->e[i].role == R_LINEAR || c->e[i].role == R_EMBED) && c->e[i].rank > c->st->rank)
			c->st->rank = c->e[i].rank;
	if (!c->st->rank) {
		weld_fail(c->err, WELD_ERR_ARG,
			  "no module to write as LoRA: no 2-D weight was decomposed to a rank above 0 (see -i, -e, --sv-epsilon)");
		goto out;
	}
	if (layout(c, t, &nt) < 0)
		goto out;
	if (!(config = config_json(c))) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		struct weld_writer_opts wo = { .force = c->o->force, .recipe_json = c->o->recipe_json,
					       .file_name = "adapter_model.safetensors",
					       .extra_name = "adapter_config.json",
					       .extra_data = config };

		if (weld_writer_open(&w, out, t, nt, &wo, c->err) < 0)
			goto out;
	}
	for (size_t k = 0; k < nt; k++)
		c->st->bytes += (uint64_t)weld_dtype_size(t[k].dtype) *
				(uint64_t)t[k].shape[0] * (uint64_t)(t[k].ndim > 1 ? t[k].shape[1] : 1);
	if (write_data(c, w, t, nt) < 0 || weld_writer_commit(w, c->err) < 0)
		goto out;
	r = 0;
out:
	weld_writer_close(w);
	for (size_t k = 0; k < nt; k++)
		free((char *)t[k].name);
	free(t);
	free(config);
	return r;
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
	    plan(&c) == 0 && plan_memory(&c) == 0 && compute(&c) == 0)
		r = write_folder(&c, out);
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
