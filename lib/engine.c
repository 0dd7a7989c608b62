/*
 * engine.c - execute a finished plan: stream every job chunk by chunk.
 *
 * A job runs in passes over its unit (DESIGN 4.1: the tensor, each row, or
 * the whole model):
 *   - an L1 pass (dare --rescale l1): sums of |delta| and of the kept part;
 *   - two histogram passes (any top-k): the high then the low 16 bits of
 *     the magnitude keys, which give the exact k-th largest magnitude;
 *   - a slerp pass: norms and the dot product of the two tensors;
 *   - the apply pass, which computes and writes the output.
 * Rows fit in a chunk, so with --scope row every statistic is taken in
 * memory inside the apply pass; with --scope model the statistics passes run
 * over every job before the first apply pass. Within a chunk each thread owns
 * a fixed slice; integer counts are combined in slice order and floating
 * sums per fixed block, so the bytes never depend on the thread count.
 */
#include "merge.h"
#include "kernels.h"
#include "plan_impl.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEL 2

struct sel_state {
	uint64_t k;             /* elements to keep in the current unit */
	uint64_t *hhi, *hlo;    /* histogram totals */
	uint32_t bin;
	uint64_t above;
	struct weld_topk sel;
	uint64_t eq_before;     /* elements equal to the threshold seen so far */
};

struct exec {
	weld_plan *p;
	const struct weld_merge_opts *o;
	int T;
	uint64_t C;
	size_t S;               /* most sources of any job */
	float *base, *out, **v;
	unsigned char *outraw, **keep;
	unsigned char **raw;    /* per thread read buffer */
	uint32_t **th;          /* per thread histograms, S * MAX_SEL * BINS */
	uint32_t **rowtmp;      /* per thread scratch for row selection */
	struct sel_state *sel;  /* S * MAX_SEL */
	double *l1_all, *l1_kept, *blocksum;
	float *factor;          /* per source rescale factor */
	uint64_t *rng_key;
	uint64_t *eqcnt;        /* T * S * MAX_SEL */
	unsigned char *maskbits;/* S * C/8 */
	double slerp_s0, slerp_s1;
	weld_writer *w, *mw;
	uint64_t done;
	int failed;
	struct weld_error terr;
};

/* ------------------------------------------------------------------ helpers */

static void slice(uint64_t n, int t, int nt, uint64_t *lo, uint64_t *hi)
{
	uint64_t nb = (n + WELD_BLOCK - 1) / WELD_BLOCK;

	*lo = nb * (uint64_t)t / (uint64_t)nt * WELD_BLOCK;
	*hi = nb * (uint64_t)(t + 1) / (uint64_t)nt * WELD_BLOCK;
	if (*lo > n)
		*lo = n;
	if (*hi > n)
		*hi = n;
}

static void thread_fail(struct exec *e, const struct weld_error *err)
{
#pragma omp critical(weld_fail)
	{
		if (!e->failed) {
			e->failed = 1;
			e->terr = *err;
		}
	}
}

static const struct weld_tensor_info *src_info(const struct exec *e, const struct weld_source *s)
{
	return weld_model_tensor(e->p->models[s->model], (size_t)s->tensor);
}

static int nsel(const struct exec *e, const struct weld_job *j)
{
	switch (j->method) {
	case WELD_METHOD_TIES:
		return 1;
	case WELD_METHOD_BREADCRUMBS:
		return 2;
	case WELD_METHOD_DARE:
		return e->o->combine == WELD_COMBINE_TIES && e->o->trim > 0 ? 1 : 0;
	case WELD_METHOD_CONSENSUS:
		return e->o->from == WELD_FROM_TIES ? 1 : 0;
	default:
		return 0;
	}
}

static bool needs_l1(const struct exec *e, const struct weld_job *j)
{
	return j->method == WELD_METHOD_DARE && e->o->rescale == WELD_RESCALE_L1;
}

static bool task_vectors(const struct weld_job *j)
{
	return j->method != WELD_METHOD_AVERAGE && j->method != WELD_METHOD_SLERP &&
	       j->method != WELD_METHOD_APPLY_MASK && j->method != WELD_METHOD_COPY;
}

/* k of selection q of source s over a unit of m elements (DESIGN 4.1, 4.6). */
static uint64_t unit_k(const struct exec *e, const struct weld_job *j, size_t s, int q,
		       uint64_t m)
{
	double d = j->method == WELD_METHOD_DARE ? e->o->trim : j->src[s].density;
	uint64_t keep = d >= 1 ? m : (uint64_t)floor(d * (double)m), top;

	if (j->method != WELD_METHOD_BREADCRUMBS)
		return keep;
	top = (uint64_t)floor(j->gamma * (double)m);
	if (top + keep > m)
		top = m - keep;
	return q == 0 ? top + keep : top;
}

/* ------------------------------------------------------------------ loading */

/* Read elements [lo, hi) of a source (relative to chunk start `first`) into dst. */
static int read_range(struct exec *e, int t, int model, int64_t tensor, uint64_t first,
		      uint64_t lo, uint64_t hi, float *dst, struct weld_error *err)
{
	const weld_model *m = e->p->models[model];
	size_t es = weld_dtype_size(weld_model_tensor(m, (size_t)tensor)->dtype);
	uint64_t step = WELD_RAW_BUF / es;

	for (uint64_t a = lo; a < hi; a += step) {
		uint64_t n = hi - a < step ? hi - a : step;

		if (weld_model_read_f32(m, (size_t)tensor, first + a, (size_t)n, dst + a,
					e->raw[t], err) < 0)
			return -1;
	}
	return 0;
}

enum drop_mode {
	DROP_NONE,      /* dare's drop is left to the caller (rows with l1) */
	DROP_PLAIN,     /* drop, no rescale (the l1 pass) */
	DROP_RESCALE,   /* drop and multiply by the source's factor */
};

/*
 * Fill base and v[s] for elements [first, first + n) of job j: the inputs
 * decoded to f32, then delta = x - base for the task-vector methods, then
 * dare's drop. With l1 != NULL, per-block sums of |delta| and |kept delta|
 * go to l1[(block * S + s) * 2 + {0,1}].
 */
static void prepare(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
		    enum drop_mode mode, double *l1)
{
#pragma omp parallel num_threads(e->T)
	{
		int t = omp_get_thread_num(), nt = omp_get_num_threads();
		struct weld_error err = { 0 };
		uint64_t lo, hi;

		slice(n, t, nt, &lo, &hi);
		if (lo < hi && j->base_model >= 0 &&
		    read_range(e, t, j->base_model, j->base_tensor, first, lo, hi, e->base, &err) < 0)
			thread_fail(e, &err);
		for (size_t s = 0; s < j->nsrc && lo < hi && !e->failed; s++) {
			float *v = e->v[s];

			if (read_range(e, t, j->src[s].model, j->src[s].tensor, first, lo, hi, v, &err) < 0) {
				thread_fail(e, &err);
				break;
			}
			if (task_vectors(j))
				weld_k_sub(v + lo, e->base + lo, (size_t)(hi - lo));
			if (j->method != WELD_METHOD_DARE || mode == DROP_NONE)
				continue;
			for (uint64_t b = lo; b < hi; b += WELD_BLOCK) {
				uint64_t bn = hi - b < WELD_BLOCK ? hi - b : WELD_BLOCK;
				double sums[2];

				weld_k_dare_drop(v + b, (size_t)bn, e->rng_key[s], first + b,
						 j->src[s].density,
						 mode == DROP_RESCALE ? e->factor[s] : 1.0f,
						 l1 ? sums : NULL);
				if (l1) {
					uint64_t blk = b / WELD_BLOCK;

					l1[(blk * e->S + s) * 2] = sums[0];
					l1[(blk * e->S + s) * 2 + 1] = sums[1];
				}
			}
		}
	}
}

/* ------------------------------------------------------------------ writing */

static int emit(struct exec *e, const struct weld_job *j, uint64_t n, struct weld_error *err)
{
	size_t es = weld_dtype_size(j->dtype);
	int64_t wi = weld_writer_find(e->w, j->name);

#pragma omp parallel num_threads(e->T)
	{
		uint64_t lo, hi;

		slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		if (lo < hi)
			weld_encode_f32(j->dtype, e->out + lo, e->outraw + lo * es, (size_t)(hi - lo));
	}
	return weld_writer_write(e->w, (size_t)wi, e->outraw, (size_t)(n * es), err);
}

static void progress(struct exec *e, const struct weld_job *j, uint64_t n)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->done += n * weld_dtype_size(src_info(e, &j->src[s])->dtype);
	if (j->base_model >= 0)
		e->done += n * weld_dtype_size(weld_model_tensor(e->p->models[j->base_model],
								 (size_t)j->base_tensor)->dtype);
	if (e->o->progress)
		e->o->progress(e->o->cb_ctx, e->done, e->p->input_bytes);
}

/* ------------------------------------------------------------------ copy */

static int run_copy(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	const struct weld_source *s = &j->src[0];
	const weld_model *m = e->p->models[s->model];
	enum weld_dtype in = src_info(e, s)->dtype;
	size_t es = weld_dtype_size(in), oes = weld_dtype_size(j->dtype);
	int64_t wi = weld_writer_find(e->w, j->name);
	uint64_t step = e->C;
	bool differs = false;

	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		if (in == j->dtype) {
			if (weld_model_read(m, (size_t)s->tensor, first, (size_t)n, e->outraw, err) < 0)
				return -1;
			/* integer tensors: warn if another model's copy differs */
			for (size_t k = 1; k < j->nsrc && !differs; k++) {
				const struct weld_tensor_info *o = src_info(e, &j->src[k]);

				if (o->dtype != in || o->nelem != j->nelem) {
					differs = true;
					break;
				}
				if (weld_model_read(e->p->models[j->src[k].model], (size_t)j->src[k].tensor,
						    first, (size_t)n, e->outraw + n * es, err) < 0)
					return -1;
				differs = memcmp(e->outraw, e->outraw + n * es, (size_t)(n * es)) != 0;
			}
		} else {
			if (weld_model_read_f32(m, (size_t)s->tensor, first, (size_t)n, e->out,
						e->outraw, err) < 0)
				return -1;
			weld_encode_f32(j->dtype, e->out, e->outraw, (size_t)n);
		}
		if (weld_writer_write(e->w, (size_t)wi, e->outraw, (size_t)(n * oes), err) < 0)
			return -1;
		e->done += n * es;
		if (e->o->progress)
			e->o->progress(e->o->cb_ctx, e->done, e->p->input_bytes);
	}
	if (differs)
		weld_plan_warn(e->p, "tensor '%s': %s tensor differs between models; copied from '%s'",
			       j->name, weld_dtype_name(in), weld_model_path(m));
	return 0;
}

/* ------------------------------------------------------------------ statistics */

static void sel_reset(struct exec *e, const struct weld_job *j, uint64_t unit)
{
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < nsel(e, j); q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + q];

			st->k = unit_k(e, j, s, q, unit);
			memset(st->hhi, 0, WELD_HIST_BINS * sizeof(uint64_t));
			memset(st->hlo, 0, WELD_HIST_BINS * sizeof(uint64_t));
			memset(&st->sel, 0, sizeof(st->sel));
			st->eq_before = 0;
		}
}

/* One histogram pass over a chunk already prepared: lo = false for the
 * high 16 bits, true for the low 16 bits within the chosen bin. */
static void hist_chunk(struct exec *e, const struct weld_job *j, uint64_t n, bool low)
{
	int ns = nsel(e, j);

#pragma omp parallel num_threads(e->T)
	{
		int t = omp_get_thread_num(), nt = omp_get_num_threads();
		uint64_t lo, hi;

		slice(n, t, nt, &lo, &hi);
		for (size_t s = 0; s < j->nsrc; s++)
			for (int q = 0; q < ns; q++) {
				struct sel_state *st = &e->sel[s * MAX_SEL + q];
				uint32_t *h = e->th[t] + (s * MAX_SEL + (size_t)q) * WELD_HIST_BINS;

				if (st->k == 0 || st->sel.all)
					continue;
				memset(h, 0, WELD_HIST_BINS * sizeof(uint32_t));
				if (!low)
					weld_hist_hi(e->v[s] + lo, (size_t)(hi - lo), h);
				else
					weld_hist_lo(e->v[s] + lo, (size_t)(hi - lo), st->bin, h);
			}
#pragma omp barrier
		/* merge: thread t adds its share of the bins over all threads */
		for (size_t s = 0; s < j->nsrc; s++)
			for (int q = 0; q < ns; q++) {
				struct sel_state *st = &e->sel[s * MAX_SEL + q];
				uint64_t *tot = low ? st->hlo : st->hhi;
				size_t b0 = WELD_HIST_BINS * (size_t)t / (size_t)nt;
				size_t b1 = WELD_HIST_BINS * (size_t)(t + 1) / (size_t)nt;

				if (st->k == 0 || st->sel.all)
					continue;
				for (int u = 0; u < nt; u++) {
					const uint32_t *h = e->th[u] + (s * MAX_SEL + (size_t)q) * WELD_HIST_BINS;

					for (size_t b = b0; b < b1; b++)
						tot[b] += h[b];
				}
			}
	}
}

/* After the high pass: choose each selection's bin. After the low pass:
 * the exact threshold and the number of equal elements to keep. */
static void sel_pick(struct exec *e, const struct weld_job *j, uint64_t unit, bool low)
{
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < nsel(e, j); q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + q];
			uint64_t above;

			if (st->k == 0) {
				st->sel.none = true;
				continue;
			}
			if (st->k >= unit) {
				st->sel.all = true;
				continue;
			}
			if (!low) {
				st->bin = weld_hist_pick(st->hhi, st->k, &st->above);
				continue;
			}
			st->sel.thresh = st->bin << 16 |
					 weld_hist_pick(st->hlo, st->k - st->above, &above);
			st->sel.keep_equal = st->k - st->above - above;
		}
}

static bool sel_needed(const struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < nsel(e, j); q++) {
			const struct sel_state *st = &e->sel[s * MAX_SEL + q];

			if (st->k && !st->sel.all)
				return true;
		}
	return false;
}

/* dare l1 factors from unit totals (DESIGN 4.5: skip if either < 1e-7). */
static void l1_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++) {
		double a = e->l1_all[s], k = e->l1_kept[s];

		e->factor[s] = a < 1e-7 || k < 1e-7 ? 1.0f : (float)(a / k);
	}
}

static void l1_add_chunk(struct exec *e, const struct weld_job *j, uint64_t n)
{
	uint64_t nb = (n + WELD_BLOCK - 1) / WELD_BLOCK;

	for (uint64_t b = 0; b < nb; b++)
		for (size_t s = 0; s < j->nsrc; s++) {
			e->l1_all[s] += e->blocksum[(b * e->S + s) * 2];
			e->l1_kept[s] += e->blocksum[(b * e->S + s) * 2 + 1];
		}
}

static void set_keys(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->rng_key[s] = weld_rng_key(j->name, j->src[s].rng_index, e->o->seed);
}

/* dare's rescale factor when it does not need an l1 pass. */
static void set_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->factor[s] = e->o->rescale == WELD_RESCALE_INVERSE
			? (float)(1.0 / j->src[s].density) : 1.0f;
}

/* Statistics passes of one job (tensor scope) or one pass of every job
 * (model scope, called per job with the shared state). */
static int stats_l1(struct exec *e, const struct weld_job *j)
{
	set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem && !e->failed; first += e->C) {
		uint64_t n = j->nelem - first < e->C ? j->nelem - first : e->C;

		prepare(e, j, first, n, DROP_PLAIN, e->blocksum);
		l1_add_chunk(e, j, n);
	}
	return e->failed ? -1 : 0;
}

static int stats_hist(struct exec *e, const struct weld_job *j, bool low)
{
	set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem && !e->failed; first += e->C) {
		uint64_t n = j->nelem - first < e->C ? j->nelem - first : e->C;

		prepare(e, j, first, n, DROP_RESCALE, NULL);
		if (!e->failed)
			hist_chunk(e, j, n, low);
	}
	return e->failed ? -1 : 0;
}

static int stats_slerp(struct exec *e, const struct weld_job *j)
{
	double nb0 = 0, nb1 = 0, dot = 0, t = j->t;

	for (uint64_t first = 0; first < j->nelem && !e->failed; first += e->C) {
		uint64_t n = j->nelem - first < e->C ? j->nelem - first : e->C;
		uint64_t nb = (n + WELD_BLOCK - 1) / WELD_BLOCK;

		prepare(e, j, first, n, DROP_NONE, NULL);
#pragma omp parallel for num_threads(e->T) schedule(static)
		for (uint64_t b = 0; b < nb; b++) {
			uint64_t lo = b * WELD_BLOCK, hi = lo + WELD_BLOCK < n ? lo + WELD_BLOCK : n;

			weld_k_dots(e->base + lo, e->v[0] + lo, (size_t)(hi - lo),
				    &e->blocksum[b * 3]);
		}
		for (uint64_t b = 0; b < nb; b++) {
			nb0 += e->blocksum[b * 3];
			nb1 += e->blocksum[b * 3 + 1];
			dot += e->blocksum[b * 3 + 2];
		}
	}
	weld_k_slerp_coeffs(nb0, nb1, dot, t, &e->slerp_s0, &e->slerp_s1);
	return e->failed ? -1 : 0;
}

/* ------------------------------------------------------------------ apply */

/* Keep masks of a prepared chunk from the unit-wide selections. */
static void mask_chunk(struct exec *e, const struct weld_job *j, uint64_t n)
{
	int ns = nsel(e, j);
	size_t nq = e->S * MAX_SEL;

#pragma omp parallel num_threads(e->T)
	{
		int t = omp_get_thread_num(), nt = omp_get_num_threads();
		uint64_t lo, hi;

		slice(n, t, nt, &lo, &hi);
		for (size_t s = 0; s < j->nsrc; s++)
			for (int q = 0; q < ns; q++) {
				const struct sel_state *st = &e->sel[s * MAX_SEL + q];

				e->eqcnt[(size_t)t * nq + s * MAX_SEL + (size_t)q] =
					st->sel.all || st->sel.none ? 0
					: weld_count_equal(e->v[s] + lo, (size_t)(hi - lo), st->sel.thresh);
			}
#pragma omp barrier
		for (size_t s = 0; s < j->nsrc; s++)
			for (int q = 0; q < ns; q++) {
				const struct sel_state *st = &e->sel[s * MAX_SEL + q];
				uint64_t before = st->eq_before;

				for (int u = 0; u < t; u++)
					before += e->eqcnt[(size_t)u * nq + s * MAX_SEL + (size_t)q];
				weld_topk_mask(e->v[s] + lo, (size_t)(hi - lo), &st->sel, before,
					       e->keep[s * MAX_SEL + (size_t)q] + lo);
			}
	}
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < ns; q++)
			for (int u = 0; u < e->T; u++)
				e->sel[s * MAX_SEL + q].eq_before += e->eqcnt[(size_t)u * nq + s * MAX_SEL + (size_t)q];
}

/* --scope row: every statistic in memory, one row at a time. */
static void rows_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n)
{
	uint64_t rl = j->ndim ? (uint64_t)j->shape[j->ndim - 1] : 1;
	uint64_t nrows = rl ? n / rl : 0;
	int ns = nsel(e, j);
	bool l1 = needs_l1(e, j);

#pragma omp parallel for num_threads(e->T) schedule(static)
	for (uint64_t r = 0; r < nrows; r++) {
		uint32_t *tmp = e->rowtmp[omp_get_thread_num()];
		uint64_t lo = r * rl;

		for (size_t s = 0; s < j->nsrc; s++) {
			float *v = e->v[s] + lo;

			if (l1)
				weld_k_dare_row_l1(v, (size_t)rl, e->rng_key[s], first + lo,
						   j->src[s].density);
			for (int q = 0; q < ns; q++) {
				struct weld_topk sel;

				weld_topk_select(v, (size_t)rl, unit_k(e, j, s, q, rl), tmp, &sel);
				weld_topk_mask(v, (size_t)rl, &sel, 0,
					       e->keep[s * MAX_SEL + (size_t)q] + lo);
			}
		}
	}
}

static void combine_chunk(struct exec *e, const struct weld_job *j, uint64_t n)
{
	struct weld_combine_args a = { 0 };
	float w[WELD_K_MAX_SRC], ml[WELD_K_MAX_SRC];
	const float *v[WELD_K_MAX_SRC];
	const unsigned char *k1[WELD_K_MAX_SRC], *k2[WELD_K_MAX_SRC];
	int ns = nsel(e, j);

	for (size_t s = 0; s < j->nsrc; s++) {
		w[s] = (float)j->src[s].weight;
		ml[s] = (float)j->src[s].mask_lambda;
		v[s] = e->v[s];
		k1[s] = ns >= 1 ? e->keep[s * MAX_SEL] : NULL;
		k2[s] = ns >= 2 ? e->keep[s * MAX_SEL + 1] : NULL;
	}
	a.method = j->method;
	a.n = j->nsrc;
	a.w = w;
	a.v = v;
	a.keep = k1;
	a.drop = k2;
	a.mask_lambda = ml;
	a.base = j->base_model >= 0 ? e->base : NULL;
	a.lambda = (float)j->lambda;
	a.normalize = e->o->normalize;
	a.ties = j->method == WELD_METHOD_TIES ||
		 (j->method == WELD_METHOD_CONSENSUS && e->o->from == WELD_FROM_TIES) ||
		 ((j->method == WELD_METHOD_DARE || j->method == WELD_METHOD_BREADCRUMBS) &&
		  e->o->combine == WELD_COMBINE_TIES);
	a.sign_count = e->o->sign == WELD_SIGN_COUNT;
	a.k = e->o->k;
	a.s0 = e->slerp_s0;
	a.s1 = e->slerp_s1;
	a.maskbits = e->maskbits;
	a.maskstride = (size_t)(e->C / 8 + 1);
#pragma omp parallel num_threads(e->T)
	{
		uint64_t lo, hi;

		/* slices are whole blocks, so mask bytes are never shared */
		slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
		if (lo < hi)
			weld_k_combine(&a, (size_t)lo, (size_t)hi, e->out);
	}
}

static int apply_mask_chunk(struct exec *e, const struct weld_job *j, uint64_t first,
			    uint64_t n, struct weld_error *err)
{
	const weld_model *mm = e->p->models[j->mask_model];
	uint64_t nbytes = (n + 7) / 8;

	if (weld_model_read(mm, (size_t)j->mask_tensor, first / 8, (size_t)nbytes,
			    e->maskbits, err) < 0)
		return -1;
#pragma omp parallel for num_threads(e->T) schedule(static)
	for (uint64_t i = 0; i < n; i++) {
		float b = e->base[i];

		e->out[i] = e->maskbits[i / 8] >> (i % 8) & 1 ? b + (e->v[0][i] - b) : b;
	}
	return 0;
}

static int write_masks(struct exec *e, const struct weld_job *j, uint64_t n,
		       struct weld_error *err)
{
	char name[4096];

	for (size_t s = 0; s < j->nsrc; s++) {
		int64_t mi;

		snprintf(name, sizeof(name), "%s.mask.%zu", j->name, s + 1);
		mi = weld_writer_find(e->mw, name);
		if (weld_writer_write(e->mw, (size_t)mi, e->maskbits + s * (e->C / 8 + 1),
				      (size_t)((n + 7) / 8), err) < 0)
			return -1;
	}
	return 0;
}

static int apply_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	bool row = e->o->scope == WELD_SCOPE_ROW;

	/* with --scope row and --rescale l1, dare drops and rescales per row */
	enum drop_mode mode = row && needs_l1(e, j) ? DROP_NONE : DROP_RESCALE;

	uint64_t step = e->C;

	if (row) {
		/* whole rows, a multiple of 8 of them (mask bytes stay aligned) */
		uint64_t rl = j->ndim ? (uint64_t)j->shape[j->ndim - 1] : 1;

		step = rl ? e->C / rl / 8 * 8 * rl : e->C;
		if (!step)
			step = e->C;
	}
	set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		prepare(e, j, first, n, mode, NULL);
		if (e->failed)
			break;
		if (j->method == WELD_METHOD_APPLY_MASK) {
			if (apply_mask_chunk(e, j, first, n, err) < 0)
				return -1;
		} else {
			if (row)
				rows_chunk(e, j, first, n);
			else if (nsel(e, j))
				mask_chunk(e, j, n);
			combine_chunk(e, j, n);
			if (e->mw && write_masks(e, j, n, err) < 0)
				return -1;
		}
		if (emit(e, j, n, err) < 0)
			return -1;
		progress(e, j, n);
	}
	if (e->failed) {
		*err = e->terr;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ driver */

static int run_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	if (j->method == WELD_METHOD_COPY)
		return run_copy(e, j, err);
	if (j->method == WELD_METHOD_SLERP && stats_slerp(e, j) < 0)
		goto fail;
	if (e->o->scope != WELD_SCOPE_MODEL && !needs_l1(e, j))
		set_factors(e, j);
	if (e->o->scope == WELD_SCOPE_TENSOR) {
		if (needs_l1(e, j)) {
			for (size_t s = 0; s < j->nsrc; s++)
				e->l1_all[s] = e->l1_kept[s] = 0;
			if (stats_l1(e, j) < 0)
				goto fail;
			l1_factors(e, j);
		}
		sel_reset(e, j, j->nelem);
		sel_pick(e, j, j->nelem, false);
		if (sel_needed(e, j)) {
			if (stats_hist(e, j, false) < 0)
				goto fail;
			sel_pick(e, j, j->nelem, false);
			if (stats_hist(e, j, true) < 0)
				goto fail;
			sel_pick(e, j, j->nelem, true);
		}
	}
	return apply_job(e, j, err);
fail:
	*err = e->terr;
	return -1;
}

/* --scope model: each statistics pass runs over every merged job. */
static int model_stats(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->p;
	const struct weld_job *first = NULL;
	uint64_t unit = 0;

	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].method != WELD_METHOD_COPY) {
			if (!first)
				first = &p->jobs[i];
			unit += p->jobs[i].nelem;
		}
	if (!first)
		return 0;
	if (needs_l1(e, first)) {
		for (size_t s = 0; s < first->nsrc; s++)
			e->l1_all[s] = e->l1_kept[s] = 0;
		for (size_t i = 0; i < p->njobs; i++)
			if (p->jobs[i].method != WELD_METHOD_COPY && stats_l1(e, &p->jobs[i]) < 0)
				goto fail;
		l1_factors(e, first);
	} else {
		set_factors(e, first);
	}
	sel_reset(e, first, unit);
	sel_pick(e, first, unit, false);
	if (!sel_needed(e, first))
		return 0;
	for (int low = 0; low < 2; low++) {
		for (size_t i = 0; i < p->njobs; i++)
			if (p->jobs[i].method != WELD_METHOD_COPY &&
			    stats_hist(e, &p->jobs[i], low) < 0)
				goto fail;
		sel_pick(e, first, unit, low);
	}
	return 0;
fail:
	*err = e->terr;
	return -1;
}

static const char *torch_dtype_name(enum weld_dtype t)
{
	switch (t) {
	case WELD_F64: return "float64";
	case WELD_F32: return "float32";
	case WELD_F16: return "float16";
	case WELD_BF16: return "bfloat16";
	default: return NULL;
	}
}

static int open_writers(struct exec *e, const char *out, struct weld_error *err)
{
	weld_plan *p = e->p;
	struct weld_out_tensor *t = calloc(p->njobs + 1, sizeof(*t));
	struct weld_writer_opts wo = { 0 };
	const struct weld_job *ref = NULL;
	int r;

	if (!t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];

		t[i].name = j->name;
		t[i].dtype = j->dtype;
		t[i].ndim = j->ndim;
		memcpy(t[i].shape, j->shape, sizeof(t[i].shape));
		if (!ref && weld_dtype_is_float(j->dtype))
			ref = j;
	}
	wo.shard_size = p->o.shard_size;
	wo.force = p->o.force;
	wo.recipe_json = p->o.recipe_json;
	if (p->o.copy_files && p->nmodels) {
		const struct weld_job *j0 = &p->jobs[0];
		int m = j0->base_model >= 0 ? j0->base_model : j0->src[0].model;

		wo.copy_from = weld_model_dir(p->models[m]);
	}
	wo.torch_dtype = ref ? torch_dtype_name(ref->dtype) : NULL;
	r = weld_writer_open(&e->w, out, t, p->njobs, &wo, err);
	free(t);
	if (r < 0 || !p->o.masks_out)
		return r;
	/* consensus --save-masks: one U8 tensor of packed bits per model */
	{
		size_t nm = 0, k = 0;
		char **names;
		struct weld_writer_opts mo = { 0 };

		for (size_t i = 0; i < p->njobs; i++)
			if (p->jobs[i].method == WELD_METHOD_CONSENSUS)
				nm += p->jobs[i].nsrc;
		t = calloc(nm + 1, sizeof(*t));
		names = calloc(nm + 1, sizeof(*names));
		if (!t || !names) {
			free(t);
			free(names);
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
		for (size_t i = 0; i < p->njobs; i++) {
			const struct weld_job *j = &p->jobs[i];

			if (j->method != WELD_METHOD_CONSENSUS)
				continue;
			for (size_t s = 0; s < j->nsrc; s++, k++) {
				size_t len = strlen(j->name) + 32;

				names[k] = malloc(len);
				if (!names[k])
					break;
				snprintf(names[k], len, "%s.mask.%zu", j->name, s + 1);
				t[k].name = names[k];
				t[k].dtype = WELD_U8;
				t[k].ndim = 1;
				t[k].shape[0] = (int64_t)((j->nelem + 7) / 8);
			}
		}
		mo.force = p->o.force;
		mo.recipe_json = p->o.recipe_json;
		mo.single_file = true;
		r = k == nm ? weld_writer_open(&e->mw, p->o.masks_out, t, nm, &mo, err)
			    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		for (size_t i = 0; i < nm; i++)
			free(names[i]);
		free(names);
		free(t);
	}
	return r;
}

static void exec_free(struct exec *e)
{
	for (size_t s = 0; s < e->S; s++)
		free(e->v ? e->v[s] : NULL);
	for (size_t q = 0; q < e->S * MAX_SEL; q++) {
		free(e->keep ? e->keep[q] : NULL);
		if (e->sel) {
			free(e->sel[q].hhi);
			free(e->sel[q].hlo);
		}
	}
	for (int t = 0; t < e->T; t++) {
		free(e->raw ? e->raw[t] : NULL);
		free(e->th ? e->th[t] : NULL);
		free(e->rowtmp ? e->rowtmp[t] : NULL);
	}
	free(e->v);
	free(e->keep);
	free(e->sel);
	free(e->raw);
	free(e->th);
	free(e->rowtmp);
	free(e->base);
	free(e->out);
	free(e->outraw);
	free(e->l1_all);
	free(e->l1_kept);
	free(e->blocksum);
	free(e->factor);
	free(e->rng_key);
	free(e->eqcnt);
	free(e->maskbits);
	weld_writer_close(e->w);
	weld_writer_close(e->mw);
}

static int exec_alloc(struct exec *e)
{
	weld_plan *p = e->p;
	uint64_t C = e->C, max_row = 1;
	size_t S = e->S, nb = (size_t)((C + WELD_BLOCK - 1) / WELD_BLOCK);
	bool ok;

	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].ndim && (uint64_t)p->jobs[i].shape[p->jobs[i].ndim - 1] > max_row)
			max_row = (uint64_t)p->jobs[i].shape[p->jobs[i].ndim - 1];
	if (max_row > C)
		max_row = C;
	e->base = malloc(C * sizeof(float));
	e->out = malloc(C * sizeof(float));
	e->outraw = malloc(C * 8 * 2);
	e->v = calloc(S, sizeof(*e->v));
	e->keep = calloc(S * MAX_SEL, sizeof(*e->keep));
	e->sel = calloc(S * MAX_SEL, sizeof(*e->sel));
	e->raw = calloc((size_t)e->T, sizeof(*e->raw));
	e->th = calloc((size_t)e->T, sizeof(*e->th));
	e->rowtmp = calloc((size_t)e->T, sizeof(*e->rowtmp));
	e->l1_all = calloc(S, sizeof(double));
	e->l1_kept = calloc(S, sizeof(double));
	e->blocksum = calloc(nb * (S > 2 ? S : 2) * 2 + 3 * nb, sizeof(double));
	e->factor = calloc(S, sizeof(float));
	e->rng_key = calloc(S, sizeof(uint64_t));
	e->eqcnt = calloc((size_t)e->T * S * MAX_SEL, sizeof(uint64_t));
	e->maskbits = calloc(S * (C / 8 + 1), 1);
	ok = e->base && e->out && e->outraw && e->v && e->keep && e->sel && e->raw &&
	     e->th && e->rowtmp && e->l1_all && e->l1_kept && e->blocksum && e->factor &&
	     e->rng_key && e->eqcnt && e->maskbits;
	for (size_t s = 0; ok && s < S; s++)
		ok = (e->v[s] = malloc(C * sizeof(float))) != NULL;
	for (size_t q = 0; ok && q < S * MAX_SEL; q++)
		ok = (e->keep[q] = malloc(C)) && (e->sel[q].hhi = malloc(WELD_HIST_BINS * 8)) &&
		     (e->sel[q].hlo = malloc(WELD_HIST_BINS * 8));
	for (int t = 0; ok && t < e->T; t++)
		ok = (e->raw[t] = malloc(WELD_RAW_BUF)) &&
		     (e->th[t] = malloc(S * MAX_SEL * WELD_HIST_BINS * sizeof(uint32_t))) &&
		     (e->rowtmp[t] = malloc(max_row * sizeof(uint32_t)));
	return ok ? 0 : -1;
}

int weld_plan_execute(weld_plan *p, const char *out, struct weld_error *err)
{
	struct exec e = { 0 };
	int ret = -1;

	if (!p->finished)
		return weld_fail(err, WELD_ERR_ARG, "plan not finished");
	e.p = p;
	e.o = &p->o;
	e.T = p->o.threads > 0 ? p->o.threads : omp_get_num_procs();
	e.C = p->chunk;
	e.S = 1;
	for (size_t i = 0; i < p->njobs; i++)
		e.S = p->jobs[i].nsrc > e.S ? p->jobs[i].nsrc : e.S;
	if (e.S > WELD_K_MAX_SRC) {
		return weld_fail(err, WELD_ERR_ARG, "at most %d models can be merged at once",
				 WELD_K_MAX_SRC);
	}
	if (exec_alloc(&e) < 0) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory for %llu-element chunks (lower --max-memory)",
			  (unsigned long long)e.C);
		goto out;
	}
	if (open_writers(&e, out, err) < 0)
		goto out;
	if (p->o.scope == WELD_SCOPE_MODEL && model_stats(&e, err) < 0)
		goto out;
	for (size_t i = 0; i < p->njobs; i++)
		if (run_job(&e, &p->jobs[i], err) < 0)
			goto out;
	if (e.mw && weld_writer_commit(e.mw, err) < 0)
		goto out;
	if (weld_writer_commit(e.w, err) < 0)
		goto out;
	ret = 0;
out:
	exec_free(&e);
	return ret;
}
