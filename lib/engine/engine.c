/*
 * engine.c - execute a finished plan: stream every job chunk by chunk.
 *
 * A job runs in passes over its unit (DESIGN 4.1: the tensor, each row, or
 * the whole model):
 *   L1      dare --rescale l1: sums of |delta| and of its kept part (the
 *           draws are kept as bits for APPLY when they fit);
 *   SAMPLE  any top-k: a histogram of 1/16 of the magnitude keys, from which
 *           a range of keys around the k-th largest is guessed;
 *   HI      the keys above that range are counted and those in it recorded,
 *           which gives the exact threshold and the positions of the ties
 *           (or, when the guess missed or the keys do not fit, a histogram
 *           of the high 16 bits, and then LO for the low 16 bits);
 *   COUNT   without recorded keys: the elements equal to the threshold
 *           before each slice, when only some of them are kept;
 *   SLERP   norms and dot product of the two tensors;
 *   APPLY   compute the output and write it.
 * With --scope row every statistic is taken in memory, row by row, inside
 * APPLY; with --scope model the statistics passes run over every job
 * before the first APPLY.
 *
 * A chunk is split into n_slices slices (one or four per thread, see plan.c),
 * which the threads take as they become free; a slice is read super-tile by
 * super-tile with pread and computed tile by tile in buffers that stay in
 * cache. Histograms are per thread (integer counts: any order gives the
 * same totals); recorded keys and counts are per slice.
 * Integer counts are combined in slice order and floating sums per fixed
 * block of WELD_BLOCK elements, so no byte depends on the thread count or
 * the chunk size.
 */
#include "merge.h"
#include "kernels.h"
#include "write_queue.h"
#include "plan_impl.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define MAX_SEL 2

enum pass { P_L1, P_SAMPLE, P_HI, P_LO, P_SLERP, P_COUNT, P_APPLY };

/* P_SAMPLE reads one super-tile in SAMPLE_STRIDE. */
#define SAMPLE_STRIDE 16

enum drop_mode {
	DROP_NONE,      /* dare's drop is left to the row code (row + l1) */
	DROP_PLAIN,     /* drop, no rescale (the L1 pass) */
	DROP_RESCALE,   /* drop and multiply by the source's factor */
};

/* One top-k selection of one source over the current unit. */
struct sel_state {
	uint64_t k;             /* elements to keep in the current unit */
	uint64_t *hist;         /* histogram totals: high bits, then low bits */
	uint32_t hi_bin;        /* after HI: the high-bits bin of the threshold */
	uint64_t n_above;       /* after HI: keys in the bins above hi_bin */
	struct weld_topk sel;   /* the threshold and how many equal to it are kept */
	uint64_t eq_before;     /* elements equal to the threshold seen so far */
};

/* What one slice (one value of t) owns. */
struct slice_ctx {
	unsigned char *raw;     /* (max_src + 1) super-tiles of raw input: base, sources */
	float *base;            /* the tile's base values */
	float *out;             /* the tile's output values */
	float *vals;            /* max_src tiles: x, or delta, of each source */
	float *scratch;         /* (4 + max_src) tiles for weld_k_combine */
	unsigned char *keep;    /* max_src * MAX_SEL tiles of top-k masks */
	uint32_t *hist;         /* the running thread's histograms */
	uint32_t *row_keys;     /* one tile of keys for weld_topk_select (--scope row) */
	/* per selection: the elements equal to its threshold before this slice
	 * (COUNT first counts those of the slice; APPLY advances it) */
	uint64_t n_equal[WELD_K_MAX_SRC * MAX_SEL];
	/* keys recorded in a statistics pass, per selection, in position order */
	uint32_t *rec_keys[WELD_K_MAX_SRC * MAX_SEL];
	size_t rec_len[WELD_K_MAX_SRC * MAX_SEL], rec_cap[WELD_K_MAX_SRC * MAX_SEL];
	bool rec_overflow;      /* ran out of room: the recorded keys are not usable */
	uint64_t rec_above[WELD_K_MAX_SRC * MAX_SEL]; /* keys above the range */
	struct weld_error err;
	bool failed;
};

/*
 * Recording lets one statistics pass stand for up to three. While the high
 * bits are counted, the keys whose high bits fall in a range guessed from a
 * sample are kept; if the k-th largest falls in that range, the exact
 * threshold comes from those keys (no pass over the low bits), and so do
 * the positions of the elements equal to it (no counting pass). Anything
 * that does not fit the memory set aside for it falls back to the passes.
 * Per-chunk tables are indexed [(chunk * n_slices + t) * sel_slots + q].
 */
struct recorder {
	bool on;                /* keys are being recorded */
	bool overflow;          /* a slice ran out of room: not usable */
	bool valid;             /* chunk_eq holds this unit's counts */
	/* per selection: the range of high-bits bins recorded */
	uint32_t bin_lo[WELD_K_MAX_SRC * MAX_SEL], bin_hi[WELD_K_MAX_SRC * MAX_SEL];
	size_t per_slice;       /* keys a slice may hold, all selections */
	uint64_t *chunk_start;  /* where each chunk's keys start in a slice's list */
	uint64_t *chunk_eq;     /* each chunk's keys equal to the threshold */
	uint64_t n_chunks, chunks_cap;  /* chunks recorded, room in the tables */
	uint64_t apply_chunk;   /* the next chunk APPLY takes its counts from */
};

/* The state of one execution. */
struct exec {
	weld_plan *plan;
	const struct weld_merge_opts *opts;
	int n_slices;           /* slices of a chunk */
	int n_threads;          /* threads */
	uint64_t chunk_elems;   /* chunk capacity (elements) */
	size_t max_src;         /* most sources of any job */
	size_t tile_elems;      /* tile capacity (elements) */
	size_t super_elems;     /* super-tile capacity (elements) */
	size_t raw_elem_size;   /* largest input element size */
	size_t hists_per_src;   /* histograms per source (plan->maxsel) */
	size_t sel_slots;       /* selections of all sources: max_src * MAX_SEL */
	struct slice_ctx *slices;       /* n_slices */
	unsigned char *out_chunk;       /* the output buffer of the current chunk */
	/* consensus masks of the chunk (max_src rows of mask_stride bytes), or
	 * the mask read by apply-mask */
	unsigned char *mask_bits;
	size_t mask_stride;
	struct sel_state *sel;  /* sel_slots: source s, selection q at s * MAX_SEL + q */
	double *l1_all, *l1_kept;       /* dare --rescale l1: per source sums of the L1 pass */
	double *block_sums;     /* per block of a chunk: L1 sums, or SLERP dots and totals */
	float *factor;          /* dare: per source rescale factor */
	uint64_t *rng_key;      /* dare: per source key of the draws */
	/* dare --rescale l1: the L1 pass's draws, per source, for APPLY */
	unsigned char *draw_bits;
	enum { DRAWS_NONE, DRAWS_STORE, DRAWS_KNOWN } draws;
	double slerp_s0, slerp_s1;      /* slerp: the coefficients of the current job */
	weld_writer *writer, *mask_writer;
	uint64_t bytes_done, bytes_total;       /* progress: bytes read over all passes */
	uint32_t **thread_hist; /* per thread: max_src * hists_per_src * BINS counts */
	bool hist_used;         /* thread_hist holds counts not yet merged */
	uint64_t hist_pending;  /* elements counted in the threads' histograms */
	struct recorder rec;
	struct weld_outq *queue;        /* writes the output chunks */
};

/* ------------------------------------------------------------------ helpers */

static const struct weld_tensor_info *src_info(const struct exec *e, const struct weld_source *s)
{
	return weld_model_tensor(e->plan->models[s->model], (size_t)s->tensor);
}

static int nsel(const struct exec *e, const struct weld_job *j)
{
	return weld_job_selections(e->opts, j);
}

static bool needs_l1(const struct exec *e, const struct weld_job *j)
{
	return j->method == WELD_METHOD_DARE && e->opts->rescale == WELD_RESCALE_L1;
}

static bool task_vectors(const struct weld_job *j)
{
	return j->method != WELD_METHOD_AVERAGE && j->method != WELD_METHOD_SLERP &&
	       j->method != WELD_METHOD_APPLY_MASK && j->method != WELD_METHOD_COPY;
}

static bool row_scope(const struct exec *e, const struct weld_job *j)
{
	return e->opts->scope == WELD_SCOPE_ROW && j->method != WELD_METHOD_COPY &&
	       j->method != WELD_METHOD_APPLY_MASK && j->method != WELD_METHOD_SLERP;
}

static uint64_t row_len(const struct weld_job *j)
{
	return j->ndim && j->shape[j->ndim - 1] ? (uint64_t)j->shape[j->ndim - 1] : 1;
}

/* k of selection q of source s over a unit of m elements (DESIGN 4.1, 4.6). */
static uint64_t unit_k(const struct exec *e, const struct weld_job *j, size_t s, int q,
		       uint64_t m)
{
	double d = j->method == WELD_METHOD_DARE ? e->opts->trim : j->src[s].density;
	uint64_t keep = d >= 1 ? m : (uint64_t)floor(d * (double)m), top;

	if (j->method != WELD_METHOD_BREADCRUMBS)
		return keep;
	top = (uint64_t)floor(j->gamma * (double)m);
	if (top + keep > m)
		top = m - keep;
	return q == 0 ? top + keep : top;
}

/* Granule of slices: whole blocks, or 8 whole rows (mask bytes never
 * straddle two slices). Tiles: one block, or as many rows as fit. */
static uint64_t granule(const struct exec *e, const struct weld_job *j)
{
	return row_scope(e, j) ? 8 * row_len(j) : WELD_BLOCK;
}

static uint64_t tile_len(const struct exec *e, const struct weld_job *j)
{
	uint64_t rl = row_len(j);

	if (!row_scope(e, j))
		return WELD_BLOCK;
	return rl >= e->tile_elems ? rl : e->tile_elems / rl * rl;
}

static void slice(uint64_t n, uint64_t g, int t, int nt, uint64_t *lo, uint64_t *hi)
{
	uint64_t ng = (n + g - 1) / g;

	*lo = ng * (uint64_t)t / (uint64_t)nt * g;
	*hi = ng * (uint64_t)(t + 1) / (uint64_t)nt * g;
	*lo = *lo > n ? n : *lo;
	*hi = *hi > n ? n : *hi;
}

/* slerp: after the per-block dots of a chunk, the job's running totals. */
static double *slerp_totals(const struct exec *e)
{
	return e->block_sums + 3 * (e->chunk_elems / WELD_BLOCK + 1);
}

static void set_keys(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->rng_key[s] = weld_rng_key(j->name, j->src[s].rng_index, e->opts->seed);
}

/* dare's rescale factor when it needs no L1 pass. */
static void set_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->factor[s] = e->opts->rescale == WELD_RESCALE_INVERSE
			? (float)(1.0 / j->src[s].density) : 1.0f;
}

/* ------------------------------------------------------------------ one slice */

/* Inputs of one tile: b, and v[s] = x (or delta), after dare's drop. */
static void tile_inputs(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			const unsigned char *const *raw, size_t off, uint64_t g, size_t len,
			enum drop_mode mode, double *l1)
{
	if (j->base_model >= 0) {
		enum weld_dtype t = weld_model_tensor(e->plan->models[j->base_model],
						      (size_t)j->base_tensor)->dtype;

		weld_decode_f32(t, raw[0] + off * weld_dtype_size(t), c->base, len);
	}
	for (size_t s = 0; s < j->nsrc; s++) {
		enum weld_dtype t = src_info(e, &j->src[s])->dtype;
		float *v = c->vals + s * e->tile_elems;

		if (task_vectors(j) && t == WELD_BF16) {
			weld_k_delta_bf16(raw[s + 1] + off * 2, c->base, v, len);
		} else {
			weld_decode_f32(t, raw[s + 1] + off * weld_dtype_size(t), v, len);
			if (task_vectors(j))
				weld_k_sub(v, c->base, len);
		}
		if (j->method == WELD_METHOD_DARE && mode != DROP_NONE) {
			double sums[2];
			unsigned char *bits = e->draws == DRAWS_NONE ? NULL
				: e->draw_bits + s * e->plan->drop_stride + g / 8;

			weld_k_dare_drop(v, len, e->rng_key[s], g, j->src[s].density,
					 mode == DROP_RESCALE ? e->factor[s] : 1.0f,
					 l1 ? sums : NULL, bits, e->draws == DRAWS_KNOWN);
			if (l1) {
				l1[s * 2] = sums[0];
				l1[s * 2 + 1] = sums[1];
			}
		}
	}
}

/* --scope row: dare's l1 and the top-k of each row of the tile. */
static void tile_rows(struct exec *e, const struct weld_job *j, struct slice_ctx *c, uint64_t g,
		      size_t len)
{
	uint64_t rl = row_len(j);
	int ns = nsel(e, j);

	for (uint64_t r = 0; r < len; r += rl)
		for (size_t s = 0; s < j->nsrc; s++) {
			float *v = c->vals + s * e->tile_elems + r;

			if (needs_l1(e, j))
				weld_k_dare_row_l1(v, (size_t)rl, e->rng_key[s], g + r,
						   j->src[s].density);
			for (int q = 0; q < ns; q++) {
				size_t sq = s * MAX_SEL + (size_t)q;
				struct weld_topk sel;

				weld_topk_select(v, (size_t)rl, unit_k(e, j, s, q, rl), c->row_keys,
						 &sel);
				weld_topk_mask(v, (size_t)rl, &sel, 0, c->keep + sq * e->tile_elems + r);
			}
		}
}

/*
 * Encode a tile into the output chunk. The chunk's lines were last read by
 * the writer thread, on another core: ordinary stores would first fetch
 * each line back (a fifth of the time of a consensus merge went there), so
 * the tile is encoded in cache and streamed out with non-temporal stores.
 */
static void out_encode(enum weld_dtype t, const float *src, unsigned char *dst, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
	_Alignas(64) unsigned char tmp[WELD_BLOCK * 8];
	size_t bytes = len * weld_dtype_size(t);

	if (bytes <= sizeof(tmp) && (uintptr_t)dst % 16 == 0) {
		size_t i = 0;

		weld_encode_f32(t, src, tmp, len);
		for (; i + 16 <= bytes; i += 16)
			_mm_stream_si128((__m128i *)(void *)(dst + i),
					 _mm_load_si128((const __m128i *)(const void *)(tmp + i)));
		memcpy(dst + i, tmp + i, bytes - i);
		return;
	}
#endif
	weld_encode_f32(t, src, dst, len);
}

static void tile_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		       uint64_t first, uint64_t g, size_t len)
{
	struct weld_combine_args a = { 0 };
	float w[WELD_K_MAX_SRC], ml[WELD_K_MAX_SRC];
	const float *v[WELD_K_MAX_SRC];
	const unsigned char *k1[WELD_K_MAX_SRC], *k2[WELD_K_MAX_SRC];
	int ns = nsel(e, j);
	size_t oes = weld_dtype_size(j->dtype);

	if (j->method == WELD_METHOD_APPLY_MASK) {
		for (size_t i = 0; i < len; i++) {
			uint64_t bit = g - first + i;
			float b = c->base[i];

			c->out[i] = e->mask_bits[bit / 8] >> (bit % 8) & 1 ? b + (c->vals[i] - b)
									    : b;
		}
		out_encode(j->dtype, c->out, e->out_chunk + (g - first) * oes, len);
		return;
	}
	if (row_scope(e, j)) {
		tile_rows(e, j, c, g, len);
	} else {
		for (size_t s = 0; s < j->nsrc; s++)
			for (int q = 0; q < ns; q++) {
				size_t sq = s * MAX_SEL + (size_t)q;
				const float *vs = c->vals + s * e->tile_elems;
				uint64_t *eq = &c->n_equal[sq];

				*eq += weld_topk_mask(vs, len, &e->sel[sq].sel, *eq,
						      c->keep + sq * e->tile_elems);
			}
	}
	for (size_t s = 0; s < j->nsrc; s++) {
		w[s] = (float)j->src[s].weight;
		ml[s] = (float)j->src[s].mask_lambda;
		v[s] = c->vals + s * e->tile_elems;
		k1[s] = ns >= 1 ? c->keep + s * MAX_SEL * e->tile_elems : NULL;
		k2[s] = ns >= 2 ? c->keep + (s * MAX_SEL + 1) * e->tile_elems : NULL;
	}
	a.method = j->method;
	a.n = j->nsrc;
	a.w = w;
	a.v = v;
	a.keep = k1;
	a.drop = k2;
	a.mask_lambda = ml;
	a.base = j->base_model >= 0 ? c->base : NULL;
	a.lambda = (float)j->lambda;
	a.normalize = e->opts->normalize;
	a.ties = j->method == WELD_METHOD_TIES ||
		 (j->method == WELD_METHOD_CONSENSUS && e->opts->from == WELD_FROM_TIES) ||
		 ((j->method == WELD_METHOD_DARE || j->method == WELD_METHOD_BREADCRUMBS) &&
		  e->opts->combine == WELD_COMBINE_TIES);
	a.sign_count = e->opts->sign == WELD_SIGN_COUNT;
	a.k = e->opts->k;
	a.s0 = e->slerp_s0;
	a.s1 = e->slerp_s1;
	a.maskbits = e->mask_writer ? e->mask_bits : NULL;
	a.maskstride = e->mask_stride;
	a.bitpos = g - first;
	weld_k_combine(&a, len, c->out, c->scratch);
	out_encode(j->dtype, c->out, e->out_chunk + (g - first) * oes, len);
}

/* Append the keys of vs whose high bits are in selection q's range
 * (branch-free: every key is stored, the length grows only for those in
 * range). */
static void record_keys(struct exec *e, struct slice_ctx *c, size_t q, const float *vs, size_t len)
{
	uint32_t lo = e->rec.bin_lo[q], width = e->rec.bin_hi[q] - e->rec.bin_lo[q];
	size_t n = c->rec_len[q];
	uint64_t above = 0;

	if (n + len > c->rec_cap[q]) {
		size_t used = 0, cap = c->rec_cap[q] ? 2 * c->rec_cap[q] : 8192;
		uint32_t *nb;

		for (size_t k = 0; k < e->sel_slots; k++)
			used += c->rec_cap[k];
		while (cap < n + len)
			cap *= 2;
		if (used - c->rec_cap[q] + cap > e->rec.per_slice ||
		    !(nb = realloc(c->rec_keys[q], cap * sizeof(uint32_t)))) {
			c->rec_overflow = true;
			return;
		}
		c->rec_keys[q] = nb;
		c->rec_cap[q] = cap;
	}
	n += weld_record_keys(vs, len, lo, width, c->rec_keys[q] + n, &above);
	c->rec_len[q] = n;
	c->rec_above[q] += above;
}

static void tile_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		       enum pass pass, size_t len)
{
	int ns = nsel(e, j);

	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < ns; q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];
			const float *vs = c->vals + s * e->tile_elems;
			uint32_t *hist = c->hist + (s * e->hists_per_src + (size_t)q) *
						   WELD_HIST_BINS;

			if (st->sel.all || st->sel.none)
				continue;
			if (e->rec.on && !c->rec_overflow)
				record_keys(e, c, s * MAX_SEL + (size_t)q, vs, len);
			if (pass == P_HI && e->rec.on)
				continue;   /* the recorded keys and the count above stand for it */
			if (pass == P_HI || pass == P_SAMPLE)
				weld_hist_hi(vs, len, hist);
			else if (pass == P_LO)
				weld_hist_lo(vs, len, st->hi_bin, hist);
			else
				c->n_equal[s * MAX_SEL + (size_t)q] +=
					weld_count_equal(vs, len, st->sel.thresh);
		}
}

/* Read elements [lo, hi) of the chunk and run one pass over them. */
static void run_slice(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		      uint64_t first, uint64_t lo, uint64_t hi, enum pass pass,
		      enum drop_mode mode)
{
	const unsigned char *rawp[WELD_K_MAX_SRC + 1];
	uint64_t tl = tile_len(e, j), sl = e->super_elems / tl * tl;

	for (size_t s = 0; s <= j->nsrc; s++)
		rawp[s] = c->raw + s * e->super_elems * e->raw_elem_size;
	for (uint64_t a = lo; a < hi && !c->failed; a += sl) {
		uint64_t an = hi - a < sl ? hi - a : sl;

		if (pass == P_SAMPLE && (first + a) / sl % SAMPLE_STRIDE)
			continue;
		/* one pread per input per super-tile */
		for (size_t s = 0; s <= j->nsrc && !c->failed; s++) {
			int m = s ? j->src[s - 1].model : j->base_model;
			int64_t t = s ? j->src[s - 1].tensor : j->base_tensor;

			if (m < 0)
				continue;
			if (weld_model_read(e->plan->models[m], (size_t)t, first + a, (size_t)an,
					    (void *)rawp[s], &c->err) < 0)
				c->failed = true;
		}
		for (uint64_t b = a; b < a + an && !c->failed; b += tl) {
			size_t len = (size_t)(a + an - b < tl ? a + an - b : tl);
			uint64_t blk = b / WELD_BLOCK;
			double *l1 = pass == P_L1 ? e->block_sums + blk * e->max_src * 2 : NULL;

			tile_inputs(e, j, c, rawp, (size_t)(b - a), first + b, len, mode, l1);
			switch (pass) {
			case P_L1:
				break;
			case P_SLERP:
				weld_k_dots(c->base, c->vals, len, &e->block_sums[blk * 3]);
				break;
			case P_APPLY:
				tile_apply(e, j, c, first, first + b, len);
				break;
			default:
				tile_stats(e, j, c, pass, len);
				break;
			}
		}
	}
#if defined(__x86_64__) && defined(__GNUC__)
	if (pass == P_APPLY)
		_mm_sfence();   /* the streamed output is complete before the writer reads it */
#endif
}

/* ------------------------------------------------------------------ recording */

static void rec_clear(struct exec *e)
{
	for (int t = 0; t < e->n_slices; t++) {
		for (size_t q = 0; q < e->sel_slots; q++) {
			free(e->slices[t].rec_keys[q]);
			e->slices[t].rec_keys[q] = NULL;
			e->slices[t].rec_len[q] = e->slices[t].rec_cap[q] = 0;
			e->slices[t].rec_above[q] = 0;
		}
		e->slices[t].rec_overflow = false;
	}
	e->rec.on = e->rec.overflow = false;
	e->rec.n_chunks = 0;
}

/* Start recording, for each active selection, the high bins lo[q]..hi[q]. */
static void rec_start(struct exec *e)
{
	rec_clear(e);
	e->rec.on = e->rec.per_slice > 0;
}

/* Where the recorder's tables hold chunk `chunk`, slice t, selection q. */
static uint64_t rec_index(const struct exec *e, uint64_t chunk, int t, size_t q)
{
	return (chunk * (uint64_t)e->n_slices + (uint64_t)t) * e->sel_slots + q;
}

/* A new chunk: note where its keys start in every list. */
static int rec_chunk(struct exec *e)
{
	struct recorder *r = &e->rec;
	size_t per = (size_t)e->n_slices * e->sel_slots;

	if (r->n_chunks == r->chunks_cap) {
		uint64_t cap = r->chunks_cap ? 2 * r->chunks_cap : 64;
		uint64_t *start = realloc(r->chunk_start, cap * per * sizeof(*start));
		uint64_t *eq = start ? realloc(r->chunk_eq, cap * per * sizeof(*eq)) : NULL;

		if (start)
			r->chunk_start = start;
		if (!start || !eq)
			return -1;
		r->chunk_eq = eq;
		r->chunks_cap = cap;
	}
	for (int t = 0; t < e->n_slices; t++)
		for (size_t q = 0; q < e->sel_slots; q++)
			r->chunk_start[rec_index(e, r->n_chunks, t, q)] = e->slices[t].rec_len[q];
	r->n_chunks++;
	return 0;
}

/* Stop recording; true if every list is complete. */
static bool rec_stop(struct exec *e)
{
	bool ok = e->rec.on;

	for (int t = 0; t < e->n_slices; t++)
		ok = ok && !e->slices[t].rec_overflow;
	e->rec.on = false;
	e->rec.overflow = !ok;
	return ok;
}

/*
 * After a recording pass (no histogram): if the k-th largest key of
 * selection q is among the recorded ones, set its bin and the count of
 * keys above that bin, and return true.
 */
static bool rec_locate(struct exec *e, size_t q)
{
	struct sel_state *st = &e->sel[q];
	uint64_t above = 0, n = 0, above2;

	if (e->rec.overflow)
		return false;
	for (int t = 0; t < e->n_slices; t++) {
		above += e->slices[t].rec_above[q];
		n += e->slices[t].rec_len[q];
	}
	if (above >= st->k || above + n < st->k)
		return false;
	memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
	for (int t = 0; t < e->n_slices; t++)
		for (size_t i = 0; i < e->slices[t].rec_len[q]; i++)
			st->hist[e->slices[t].rec_keys[q][i] >> 16]++;
	st->hi_bin = weld_hist_pick(st->hist, st->k - above, &above2);
	st->n_above = above + above2;
	return true;
}

/* The low-bit histogram of the chosen bin, from the recorded keys. */
static void rec_low_hist(struct exec *e, size_t q)
{
	struct sel_state *st = &e->sel[q];

	memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
	for (int t = 0; t < e->n_slices; t++)
		for (size_t i = 0; i < e->slices[t].rec_len[q]; i++) {
			uint32_t key = e->slices[t].rec_keys[q][i];

			if (key >> 16 == st->hi_bin)
				st->hist[key & 0xFFFF]++;
		}
}

/* Keys equal to each threshold, per chunk and slice; then drop the keys. */
static void rec_counts(struct exec *e)
{
	struct recorder *r = &e->rec;

#pragma omp parallel for schedule(dynamic, 1) num_threads(e->n_threads)
	for (size_t q = 0; q < e->sel_slots; q++)
		for (uint64_t sq = 0; sq < r->n_chunks; sq++)
			for (int t = 0; t < e->n_slices; t++) {
				uint64_t i = rec_index(e, sq, t, q);
				uint64_t end = sq + 1 < r->n_chunks
					? r->chunk_start[rec_index(e, sq + 1, t, q)]
					: e->slices[t].rec_len[q];
				const struct sel_state *st = &e->sel[q];
				const uint32_t *keys = e->slices[t].rec_keys[q];
				uint64_t cnt = 0;

				if (!st->sel.all && !st->sel.none && keys)
					for (uint64_t k = r->chunk_start[i]; k < end; k++)
						cnt += keys[k] == st->sel.thresh;
				r->chunk_eq[i] = cnt;
			}
	r->valid = true;
	r->apply_chunk = 0;
	for (int t = 0; t < e->n_slices; t++)
		for (size_t q = 0; q < e->sel_slots; q++) {
			free(e->slices[t].rec_keys[q]);
			e->slices[t].rec_keys[q] = NULL;
			e->slices[t].rec_len[q] = e->slices[t].rec_cap[q] = 0;
		}
}

/* Instead of a counting pass: each slice's equal elements before it. */
static void rec_apply_counts(struct exec *e)
{
	struct recorder *r = &e->rec;
	uint64_t sq = r->apply_chunk++;

	for (size_t q = 0; q < e->sel_slots; q++) {
		uint64_t run = e->sel[q].eq_before;

		for (int t = 0; t < e->n_slices; t++) {
			uint64_t mine = sq < r->n_chunks ? r->chunk_eq[rec_index(e, sq, t, q)] : 0;

			e->slices[t].n_equal[q] = run;
			run += mine;
		}
		e->sel[q].eq_before = run;
	}
}

/*
 * The range of high bins to record for selection q: around the rank of the
 * k-th largest in the sample, widened so that the true bin is almost always
 * inside (if not, the passes of the fallback give the same result).
 */
static void rec_guess(struct exec *e, size_t q, uint64_t unit)
{
	struct sel_state *st = &e->sel[q];
	uint64_t ns = 0, above;
	double ks, d;
	uint64_t r_hi, r_lo;

	for (size_t b = 0; b < WELD_HIST_BINS; b++)
		ns += st->hist[b];
	if (!ns) {
		e->rec.bin_lo[q] = 1;
		e->rec.bin_hi[q] = 0;
		return;
	}
	ks = (double)st->k * (double)ns / (double)unit;
	d = 4 * sqrt(ks) + 0.002 * (double)ns + 8;
	r_lo = ks - d < 1 ? 1 : (uint64_t)(ks - d);
	r_hi = ks + d > (double)ns ? ns : (uint64_t)(ks + d) + 1;
	e->rec.bin_hi[q] = weld_hist_pick(st->hist, r_lo, &above);
	e->rec.bin_lo[q] = weld_hist_pick(st->hist, r_hi, &above);
	if (e->rec.bin_hi[q] < WELD_HIST_BINS - 1)
		e->rec.bin_hi[q]++;
	if (e->rec.bin_lo[q] > 0)
		e->rec.bin_lo[q]--;
}

/* ------------------------------------------------------------------ one chunk */

static void hist_zero(struct exec *e, const struct weld_job *j)
{
	if (e->hist_used)
		for (int t = 0; t < e->n_threads; t++)
			memset(e->thread_hist[t], 0,
			       j->nsrc * e->hists_per_src * WELD_HIST_BINS * sizeof(uint32_t));
	e->hist_used = false;
	e->hist_pending = 0;
}

/* Add the threads' histograms to the totals (integer sums: any order). */
static void hist_merge(struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; e->hist_used && q < j->nsrc * MAX_SEL; q++) {
		struct sel_state *st = &e->sel[q];
		size_t s = q / MAX_SEL, k = q % MAX_SEL;

		if (st->sel.all || st->sel.none || (int)k >= nsel(e, j))
			continue;
		for (int t = 0; t < e->n_threads; t++) {
			const uint32_t *h =
				e->thread_hist[t] + (s * e->hists_per_src + k) * WELD_HIST_BINS;

			for (size_t b = 0; b < WELD_HIST_BINS; b++)
				st->hist[b] += h[b];
		}
	}
	hist_zero(e, j);
}

static int run_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
		     enum pass pass, enum drop_mode mode, struct weld_error *err)
{
	uint64_t g = granule(e, j);
	size_t nq = j->nsrc * MAX_SEL;

	for (int t = 0; t < e->n_slices; t++) {
		struct slice_ctx *c = &e->slices[t];

		c->failed = false;
		if (pass == P_COUNT)
			memset(c->n_equal, 0, sizeof(c->n_equal));
	}
	if (e->rec.on && rec_chunk(e) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (pass == P_SAMPLE || pass == P_LO || (pass == P_HI && !e->rec.on))
		e->hist_used = true;
#pragma omp parallel for schedule(dynamic, 1) num_threads(e->n_threads)
	for (int t = 0; t < e->n_slices; t++) {
		uint64_t lo, hi;

		slice(n, g, t, e->n_slices, &lo, &hi);
		e->slices[t].hist = e->thread_hist[omp_get_thread_num()];
		if (lo < hi)
			run_slice(e, j, &e->slices[t], first, lo, hi, pass, mode);
	}
	for (int t = 0; t < e->n_slices; t++)
		if (e->slices[t].failed) {
			*err = e->slices[t].err;
			return -1;
		}
	if (pass == P_HI || pass == P_LO || pass == P_SAMPLE) {
		/* uint32 per-thread counts: fold them in before they could wrap */
		e->hist_pending += n;
		if (e->hist_pending > (1ull << 31))
			hist_merge(e, j);
	} else if (pass == P_COUNT) {
		/* each slice starts with the equal elements of the slices before it */
		for (size_t q = 0; q < nq; q++) {
			uint64_t run = e->sel[q].eq_before;

			for (int t = 0; t < e->n_slices; t++) {
				uint64_t mine = e->slices[t].n_equal[q];

				e->slices[t].n_equal[q] = run;
				run += mine;
			}
			e->sel[q].eq_before = run;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ writing */

static uint64_t job_bytes(const struct exec *e, const struct weld_job *j, uint64_t n)
{
	uint64_t b = 0;

	for (size_t s = 0; s < j->nsrc; s++)
		b += n * weld_dtype_size(src_info(e, &j->src[s])->dtype);
	if (j->base_model >= 0)
		b += n * weld_dtype_size(weld_model_tensor(e->plan->models[j->base_model],
							   (size_t)j->base_tensor)->dtype);
	return b;
}

static void progress(struct exec *e, const struct weld_job *j, uint64_t n)
{
	e->bytes_done += job_bytes(e, j, n);
	if (e->bytes_done > e->bytes_total)
		e->bytes_total = e->bytes_done;
	if (e->opts->progress)
		e->opts->progress(e->opts->cb_ctx, e->bytes_done, e->bytes_total);
}

/* Bytes all passes will read: the statistics passes count too. */
static uint64_t total_bytes(const struct exec *e)
{
	uint64_t t = 0;

	for (size_t i = 0; i < e->plan->njobs; i++) {
		const struct weld_job *j = &e->plan->jobs[i];
		uint64_t passes = 1;

		if (j->method == WELD_METHOD_SLERP)
			passes++;
		if (needs_l1(e, j) && e->opts->scope != WELD_SCOPE_ROW)
			passes++;
		t += passes * job_bytes(e, j, j->nelem);
		/* top-k: a 1/16 sample and one pass (more only if the guess misses) */
		if (nsel(e, j) && e->opts->scope != WELD_SCOPE_ROW)
			t += job_bytes(e, j, j->nelem) + job_bytes(e, j, j->nelem) / SAMPLE_STRIDE;
	}
	return t;
}

static int run_copy(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	const struct weld_source *s = &j->src[0];
	const weld_model *m = e->plan->models[s->model];
	enum weld_dtype in = src_info(e, s)->dtype;
	size_t es = weld_dtype_size(in), oes = weld_dtype_size(j->dtype);
	int64_t wi = weld_writer_find(e->writer, j->name);
	uint64_t step = e->chunk_elems;
	unsigned char *other = NULL;
	bool differs = false;
	float *f = NULL;
	int r = -1;

	if (j->nsrc > 1 && !(other = malloc(step * es)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (in != j->dtype && !(f = malloc(step * sizeof(float)))) {
		free(other);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			goto out;
		if (in == j->dtype) {
			if (weld_model_read(m, (size_t)s->tensor, first, (size_t)n, e->out_chunk,
					    err) < 0)
				goto out;
			/* integer tensors: warn if another model's copy differs */
			for (size_t k = 1; k < j->nsrc && !differs; k++) {
				const struct weld_source *sk = &j->src[k];
				const struct weld_tensor_info *o = src_info(e, sk);

				if (o->dtype != in || o->nelem != j->nelem) {
					differs = true;
					break;
				}
				if (weld_model_read(e->plan->models[sk->model], (size_t)sk->tensor,
						    first, (size_t)n, other, err) < 0)
					goto out;
				differs = memcmp(e->out_chunk, other, (size_t)(n * es)) != 0;
			}
		} else {
			if (weld_model_read_f32(m, (size_t)s->tensor, first, (size_t)n, f,
						e->out_chunk, err) < 0)
				goto out;
			weld_encode_f32(j->dtype, f, e->out_chunk, (size_t)n);
		}
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi, (size_t)(n * oes), err) < 0)
			goto out;
		progress(e, j, n);
	}
	if (differs)
		weld_plan_warn(e->plan,
			       "tensor '%s': %s tensor differs between models; copied from '%s'",
			       j->name, weld_dtype_name(in), weld_model_path(m));
	r = 0;
out:
	free(other);
	free(f);
	return r;
}

static int write_masks(struct exec *e, const struct weld_job *j, uint64_t n,
		       struct weld_error *err)
{
	char name[4096];

	for (size_t s = 0; s < j->nsrc; s++) {
		snprintf(name, sizeof(name), "%s.mask.%zu", j->name, s + 1);
		int64_t wi = weld_writer_find(e->mask_writer, name);

		if (weld_writer_write(e->mask_writer, (size_t)wi, e->mask_bits + s * e->mask_stride,
				      (size_t)((n + 7) / 8), err) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ statistics */

static void sel_reset(struct exec *e, const struct weld_job *j, uint64_t unit)
{
	for (size_t s = 0; s < e->max_src; s++)
		for (int q = 0; q < MAX_SEL; q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];

			memset(&st->sel, 0, sizeof(st->sel));
			st->eq_before = 0;
			if (s >= j->nsrc || q >= nsel(e, j)) {
				st->sel.none = true;
				continue;
			}
			st->k = unit_k(e, j, s, q, unit);
			st->sel.none = st->k == 0;
			st->sel.all = st->k >= unit;
			if (!st->sel.all && !st->sel.none)
				memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
		}
}

/* After HI: each selection's bin. After LO: the exact threshold and how
 * many of the elements equal to it are kept. */
static void sel_pick(struct exec *e, const struct weld_job *j, bool low)
{
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < nsel(e, j); q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];
			uint64_t above;
			uint32_t lo;

			if (st->sel.all || st->sel.none)
				continue;
			if (!low) {
				st->hi_bin = weld_hist_pick(st->hist, st->k, &st->n_above);
				/* the same totals now count the low bits */
				memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
				continue;
			}
			lo = weld_hist_pick(st->hist, st->k - st->n_above, &above);
			st->sel.thresh = st->hi_bin << 16 | lo;
			st->sel.keep_equal = st->k - st->n_above - above;
		}
}

static bool sel_active(const struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; q < j->nsrc * MAX_SEL; q++)
		if (!e->sel[q].sel.all && !e->sel[q].sel.none)
			return true;
	(void)j;
	return false;
}

/* A COUNT pass is needed only when some elements equal to a threshold are
 * kept and others are not. */
static bool sel_partial(const struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; q < j->nsrc * MAX_SEL; q++) {
		const struct sel_state *st = &e->sel[q];

		if (!st->sel.all && !st->sel.none &&
		    st->sel.keep_equal < st->hist[st->sel.thresh & 0xFFFF])
			return true;
	}
	return false;
}

static int over_chunks(struct exec *e, const struct weld_job *j, enum pass pass,
		       enum drop_mode mode, struct weld_error *err)
{
	if (pass == P_HI || pass == P_LO || pass == P_SAMPLE)
		hist_zero(e, j);
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (run_chunk(e, j, first, n, pass, mode, err) < 0)
			return -1;
		progress(e, j, pass == P_SAMPLE ? n / SAMPLE_STRIDE : n);
		if (pass == P_L1)
			for (uint64_t b = 0; b < (n + WELD_BLOCK - 1) / WELD_BLOCK; b++)
				for (size_t s = 0; s < j->nsrc; s++) {
					const double *sums =
						e->block_sums + (b * e->max_src + s) * 2;

					e->l1_all[s] += sums[0];
					e->l1_kept[s] += sums[1];
				}
		if (pass == P_SLERP)
			for (uint64_t b = 0; b < (n + WELD_BLOCK - 1) / WELD_BLOCK; b++)
				for (int k = 0; k < 3; k++)
					slerp_totals(e)[k] += e->block_sums[b * 3 + (size_t)k];
	}
	if (pass == P_HI || pass == P_LO || pass == P_SAMPLE)
		hist_merge(e, j);
	return 0;
}

static void l1_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++) {
		double a = e->l1_all[s], k = e->l1_kept[s];

		e->factor[s] = a < 1e-7 || k < 1e-7 ? 1.0f : (float)(a / k);
	}
}

/* One statistics pass over every job of the unit. */
static int stats_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		      enum pass pass, struct weld_error *err)
{
	for (size_t i = 0; i < nj; i++) {
		set_keys(e, jobs[i]);
		if (over_chunks(e, jobs[i], pass, DROP_RESCALE, err) < 0)
			return -1;
	}
	return 0;
}

/* The statistics of one unit. With --scope model, `jobs` are all merged
 * jobs (in name order) and the unit is their union. */
static int unit_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		      struct weld_error *err)
{
	const struct weld_job *j0 = jobs[0];
	uint64_t unit = 0;

	for (size_t i = 0; i < nj; i++)
		unit += jobs[i]->nelem;
	if (needs_l1(e, j0)) {
		memset(e->l1_all, 0, e->max_src * sizeof(double));
		memset(e->l1_kept, 0, e->max_src * sizeof(double));
		/* one tensor whose draws fit: keep them for the apply pass */
		if (nj == 1 && e->draw_bits && j0->nelem <= 8 * e->plan->drop_stride)
			e->draws = DRAWS_STORE;
		for (size_t i = 0; i < nj; i++) {
			set_keys(e, jobs[i]);
			if (over_chunks(e, jobs[i], P_L1, DROP_PLAIN, err) < 0)
				return -1;
		}
		if (e->draws == DRAWS_STORE)
			e->draws = DRAWS_KNOWN;
		l1_factors(e, j0);
	} else {
		set_factors(e, j0);
	}
	sel_reset(e, j0, unit);
	e->rec.valid = false;
	if (!sel_active(e, j0))
		return 0;
	if (e->rec.per_slice) {
		bool covered = true;

		/* a sample of the unit guesses where each threshold lies */
		if (stats_pass(e, jobs, nj, P_SAMPLE, err) < 0)
			return -1;
		for (size_t q = 0; q < e->sel_slots; q++)
			if (!e->sel[q].sel.all && !e->sel[q].sel.none) {
				rec_guess(e, q, unit);
				memset(e->sel[q].hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
			}
		/* one pass: count the keys above each range, record those in it */
		rec_start(e);
		if (stats_pass(e, jobs, nj, P_HI, err) < 0)
			return -1;
		rec_stop(e);
		/* selections are independent: one thread each */
#pragma omp parallel for schedule(dynamic, 1) num_threads(e->n_threads) reduction(&& : covered)
		for (size_t q = 0; q < e->sel_slots; q++)
			if (!e->sel[q].sel.all && !e->sel[q].sel.none)
				covered = rec_locate(e, q) && covered;
		if (covered) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(e->n_threads)
			for (size_t q = 0; q < e->sel_slots; q++)
				if (!e->sel[q].sel.all && !e->sel[q].sel.none)
					rec_low_hist(e, q);
		} else {
			/* the guess missed: count the high bits, then record just the
			 * chosen bins while counting their low bits */
			rec_clear(e);
			for (size_t q = 0; q < e->sel_slots; q++)
				if (!e->sel[q].sel.all && !e->sel[q].sel.none)
					memset(e->sel[q].hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
			if (stats_pass(e, jobs, nj, P_HI, err) < 0)
				return -1;
			sel_pick(e, j0, false);
			for (size_t q = 0; q < e->sel_slots; q++)
				e->rec.bin_lo[q] = e->rec.bin_hi[q] = e->sel[q].hi_bin;
			rec_start(e);
			if (stats_pass(e, jobs, nj, P_LO, err) < 0)
				return -1;
			rec_stop(e);
		}
		sel_pick(e, j0, true);
		if (!e->rec.overflow)
			rec_counts(e);
		else
			rec_clear(e);
		return 0;
	}
	for (int low = 0; low < 2; low++) {
		if (stats_pass(e, jobs, nj, low ? P_LO : P_HI, err) < 0)
			return -1;
		sel_pick(e, j0, low);
	}
	return 0;
}

/* ------------------------------------------------------------------ jobs */

static int apply_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	bool row = row_scope(e, j);
	enum drop_mode mode = row && needs_l1(e, j) ? DROP_NONE : DROP_RESCALE;
	bool count = !row && sel_active(e, j) && sel_partial(e, j);
	int64_t wi = weld_writer_find(e->writer, j->name);
	uint64_t step = e->chunk_elems;

	if (row) {
		uint64_t g = 8 * row_len(j);

		step = e->chunk_elems / g * g;
	}
	set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		if (j->method == WELD_METHOD_APPLY_MASK &&
		    weld_model_read(e->plan->models[j->mask_model], (size_t)j->mask_tensor,
				    first / 8, (size_t)((n + 7) / 8), e->mask_bits, err) < 0)
			return -1;
		if (e->mask_writer)
			memset(e->mask_bits, 0, j->nsrc * e->mask_stride);
		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			return -1;
		if (count && e->rec.valid) {
			rec_apply_counts(e);
		} else if (count) {
			if (run_chunk(e, j, first, n, P_COUNT, mode, err) < 0)
				return -1;
		} else {
			for (int t = 0; t < e->n_slices; t++)
				memset(e->slices[t].n_equal, 0, sizeof(e->slices[t].n_equal));
		}
		if (run_chunk(e, j, first, n, P_APPLY, mode, err) < 0)
			return -1;
		if (e->mask_writer && j->method == WELD_METHOD_CONSENSUS &&
		    write_masks(e, j, n, err) < 0)
			return -1;
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi,
				     (size_t)(n * weld_dtype_size(j->dtype)), err) < 0)
			return -1;
		progress(e, j, n);
	}
	return 0;
}

static int run_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	if (j->method == WELD_METHOD_COPY)
		return run_copy(e, j, err);
	if (j->method == WELD_METHOD_SLERP) {
		double *tot = slerp_totals(e);

		tot[0] = tot[1] = tot[2] = 0;
		if (over_chunks(e, j, P_SLERP, DROP_NONE, err) < 0)
			return -1;
		weld_k_slerp_coeffs(tot[0], tot[1], tot[2], j->t, &e->slerp_s0, &e->slerp_s1);
	}
	e->draws = DRAWS_NONE;
	if (e->opts->scope == WELD_SCOPE_ROW) {
		if (!needs_l1(e, j))
			set_factors(e, j);
		sel_reset(e, j, 0);
	} else if (e->opts->scope == WELD_SCOPE_TENSOR && unit_stats(e, &j, 1, err) < 0) {
		return -1;
	}
	return apply_job(e, j, err);
}

/* --scope model: the statistics of all merged jobs, before any output. */
static int model_stats(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->plan;
	const struct weld_job **jobs = malloc((p->njobs + 1) * sizeof(*jobs));
	size_t nj = 0;
	int r = 0;

	if (!jobs)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].method != WELD_METHOD_COPY)
			jobs[nj++] = &p->jobs[i];
	if (nj)
		r = unit_stats(e, jobs, nj, err);
	free(jobs);
	return r;
}

/* ------------------------------------------------------------------ set-up */

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

static int open_mask_writer(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->plan;
	size_t nm = 0, k = 0;
	struct weld_out_tensor *t;
	struct weld_writer_opts mo = { 0 };
	char **names;
	int r;

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

			if (!(names[k] = malloc(len)))
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
	r = k == nm ? weld_writer_open(&e->mask_writer, p->o.masks_out, t, nm, &mo, err)
		    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < nm; i++)
		free(names[i]);
	free(names);
	free(t);
	return r;
}

static int open_writers(struct exec *e, const char *out, struct weld_error *err)
{
	weld_plan *p = e->plan;
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
	wo.edit_config = p->o.edit_config;
	wo.edit_config_ctx = p->o.edit_config_ctx;
	if (p->o.copy_files) {
		const struct weld_job *j0 = &p->jobs[0];
		int m = j0->base_model >= 0 ? j0->base_model : j0->src[0].model;

		wo.copy_from = p->o.config_from ? p->o.config_from : weld_model_dir(p->models[m]);
	}
	wo.torch_dtype = ref ? torch_dtype_name(ref->dtype) : NULL;
	r = weld_writer_open(&e->writer, out, t, p->njobs, &wo, err);
	free(t);
	if (r < 0 || !p->o.masks_out)
		return r;
	return open_mask_writer(e, err);
}

static void exec_free(struct exec *e)
{
	/* the writer thread first: it may still be writing a chunk */
	weld_outq_free(e->queue);
	e->queue = NULL;
	if (e->slices)
		rec_clear(e);
	for (int t = 0; e->slices && t < e->n_slices; t++) {
		struct slice_ctx *c = &e->slices[t];

		free(c->raw);
		free(c->base);
		free(c->out);
		free(c->vals);
		free(c->scratch);
		free(c->keep);
		free(c->row_keys);
	}
	for (size_t q = 0; e->sel && q < e->max_src * MAX_SEL; q++) {
		free(e->sel[q].hist);
	}
	for (int t = 0; e->thread_hist && t < e->n_threads; t++)
		free(e->thread_hist[t]);
	free(e->thread_hist);
	free(e->slices);
	free(e->sel);
	free(e->rec.chunk_start);
	free(e->rec.chunk_eq);
	free(e->mask_bits);
	free(e->l1_all);
	free(e->l1_kept);
	free(e->block_sums);
	free(e->factor);
	free(e->rng_key);
	free(e->draw_bits);
	weld_writer_close(e->writer);
	weld_writer_close(e->mask_writer);
}

static int exec_alloc(struct exec *e)
{
	size_t n_src = e->max_src, nb = (size_t)(e->chunk_elems / WELD_BLOCK + 2);
	bool ok;

	e->slices = calloc((size_t)e->n_slices, sizeof(*e->slices));
	e->sel = calloc(n_src * MAX_SEL, sizeof(*e->sel));
	e->mask_stride = (size_t)(e->chunk_elems / 8 + 1);
	e->mask_bits = calloc(n_src * e->mask_stride, 1);
	e->l1_all = calloc(n_src, sizeof(double));
	e->l1_kept = calloc(n_src, sizeof(double));
	e->block_sums = calloc(nb * (n_src > 2 ? n_src : 2) * 2 + 3 * nb + 8, sizeof(double));
	e->factor = calloc(n_src, sizeof(float));
	e->rng_key = calloc(n_src, sizeof(uint64_t));
	if (e->plan->drop_stride)
		e->draw_bits = malloc(n_src * e->plan->drop_stride);
	ok = (e->queue = weld_outq_new((size_t)e->chunk_elems * 8)) != NULL;
	ok = ok && (e->draw_bits || !e->plan->drop_stride);
	ok = ok && e->slices && e->sel && e->mask_bits && e->l1_all && e->l1_kept &&
	     e->block_sums && e->factor && e->rng_key;
	for (size_t q = 0; ok && q < n_src * MAX_SEL; q++)
		if (q % MAX_SEL < e->hists_per_src)
			ok = (e->sel[q].hist = calloc(WELD_HIST_BINS, 8)) != NULL;
	ok = ok && (e->thread_hist = calloc((size_t)e->n_threads, sizeof(*e->thread_hist)));
	for (int t = 0; ok && t < e->n_threads; t++)
		ok = (e->thread_hist[t] = calloc(n_src * e->hists_per_src * WELD_HIST_BINS + 1,
						 sizeof(uint32_t))) != NULL;
	for (int t = 0; ok && t < e->n_slices; t++) {
		struct slice_ctx *c = &e->slices[t];

		ok = (c->raw = malloc((n_src + 1) * e->super_elems * e->raw_elem_size)) &&
		     (c->base = malloc(e->tile_elems * sizeof(float))) &&
		     (c->out = malloc(e->tile_elems * sizeof(float))) &&
		     (c->vals = malloc(n_src * e->tile_elems * sizeof(float))) &&
		     (c->scratch = malloc((4 + n_src) * e->tile_elems * sizeof(float))) &&
		     (c->keep = malloc(n_src * MAX_SEL * e->tile_elems)) &&
		     (c->row_keys = malloc(e->tile_elems * sizeof(uint32_t)));
	}
	return ok ? 0 : -1;
}

int weld_plan_execute(weld_plan *p, const char *out, struct weld_error *err)
{
	struct exec e = { 0 };
	int ret = -1;

	if (!p->finished)
		return weld_fail(err, WELD_ERR_ARG, "plan not finished");
	e.plan = p;
	e.opts = &p->o;
	e.n_slices = p->slices;
	e.n_threads = weld_plan_threads(p);
	e.chunk_elems = p->chunk;
	e.tile_elems = (size_t)p->tile;
	e.super_elems = (size_t)p->super;
	e.raw_elem_size = (size_t)p->raw_es;
	e.hists_per_src = (size_t)p->maxsel;
	e.rec.per_slice = (size_t)(p->record_bytes / sizeof(uint32_t) / (uint64_t)e.n_slices);
	e.max_src = 1;
	for (size_t i = 0; i < p->njobs; i++)
		e.max_src = p->jobs[i].nsrc > e.max_src ? p->jobs[i].nsrc : e.max_src;
	if (e.max_src > WELD_K_MAX_SRC)
		return weld_fail(err, WELD_ERR_ARG, "at most %d models can be merged at once",
				 WELD_K_MAX_SRC);
	e.sel_slots = e.max_src * MAX_SEL;
	if (exec_alloc(&e) < 0) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory for %llu-element chunks (lower --max-memory)",
			  (unsigned long long)e.chunk_elems);
		goto out;
	}
	if (open_writers(&e, out, err) < 0)
		goto out;
	e.bytes_total = total_bytes(&e);
	if (p->o.scope == WELD_SCOPE_MODEL && model_stats(&e, err) < 0)
		goto out;
	for (size_t i = 0; i < p->njobs; i++)
		if (run_job(&e, &p->jobs[i], err) < 0)
			goto out;
	if (weld_outq_drain(e.queue, err) < 0)
		goto out;
	if (e.mask_writer && weld_writer_commit(e.mask_writer, err) < 0)
		goto out;
	if (weld_writer_commit(e.writer, err) < 0)
		goto out;
	ret = 0;
out:
	exec_free(&e);
	return ret;
}
