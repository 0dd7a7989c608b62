/*
 * tiles.c - one chunk of a job: one pass over its elements.
 *
 * A chunk is split into n_slices slices (one or four per thread, see
 * plan.c), which the threads take as they become free; a slice is read
 * super-tile by super-tile with pread (one read per input) and computed
 * tile by tile in buffers that stay in cache. A tile's inputs are decoded
 * to float (the base, then each source's x or delta after dare's drop);
 * the statistics passes then hand the tile to select_pass.c, and APPLY
 * masks it (the top-k of each row first with --scope row), combines it
 * (kernels.c) and encodes it into the output chunk.
 * Histograms are per thread; recorded keys and counts are per slice. A
 * pass whose results do not depend on which thread computes a slice may
 * hand all of a tensor's chunks to the team at once (weld_exec_run_pass).
 */
#include "exec.h"
#include "pcb_hold.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* Whether job j merges task vectors (delta = x - base) rather than x. */
static bool task_vectors(const struct weld_job *j)
{
	return weld_method_task_vectors(j->method);
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

/* Slice t of nt of a chunk of n elements: [lo, hi), in whole granules g. */
static void slice(uint64_t n, uint64_t g, int t, int nt, uint64_t *lo, uint64_t *hi)
{
	uint64_t ng = (n + g - 1) / g;

	*lo = ng * (uint64_t)t / (uint64_t)nt * g;
	*hi = ng * (uint64_t)(t + 1) / (uint64_t)nt * g;
	*lo = *lo > n ? n : *lo;
	*hi = *hi > n ? n : *hi;
}

/*
 * APPLY: an input of the tile that holds NaN or +-Inf, as floats x or, when
 * it is bf16, as its raw bits: false if the merge refuses them; with
 * --allow-nonfinite, its NaN positions are marked instead.
 */
static bool nonfinite_input(const struct exec *e, struct slice_ctx *c, const float *x,
			    const unsigned char *bf16, size_t len)
{
	if (!e->opts->allow_nonfinite) {
		c->nonfinite = true;
		c->failed = true;
		return false;
	}
	if (!c->tile_nan)
		memset(c->nan, 0, len);
	c->tile_nan = true;
	if (bf16)
		weld_k_mark_nan_bf16(bf16, len, c->nan);
	else
		weld_k_mark_nan(x, len, c->nan);
	return true;
}

/* APPLY: an input of the tile (bf16: its raw bits, half the bytes to look
 * at); false if it holds NaN or +-Inf and the merge refuses them. */
static bool check_input(const struct exec *e, struct slice_ctx *c, const float *x,
			const unsigned char *bf16, size_t len)
{
	size_t nf = bf16 ? weld_k_count_nonfinite_bf16(bf16, len) : weld_k_count_nonfinite(x, len);

	return !nf || nonfinite_input(e, c, x, bf16, len);
}

/* Inputs of one tile: b, and v[s] = x (or delta), after dare's drop; APPLY
 * (check) also looks for NaN and +-Inf. */
static void tile_inputs(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			const unsigned char *const *raw, size_t off, uint64_t g, size_t len,
			enum drop_mode mode, double *l1, bool check)
{
	c->tile_nan = false;
	if (j->base_model >= 0) {
		enum weld_dtype t = weld_model_tensor(e->plan->models[j->base_model],
						      (size_t)j->base_tensor)->dtype;

		weld_decode_f32(t, raw[0] + off * weld_dtype_size(t), c->base, len);
		if (check && !check_input(e, c, c->base, t == WELD_BF16 ? raw[0] + off * 2 : NULL,
					  len))
			return;
	}
	for (size_t s = 0; s < j->nsrc; s++) {
		enum weld_dtype t = src_info(e, &j->src[s])->dtype;
		const unsigned char *x = raw[s + 1] + off * weld_dtype_size(t);
		float *v = c->vals + s * e->tile_elems;

		if (task_vectors(j) && t == WELD_BF16) {
			size_t nf = weld_k_delta_bf16(x, c->base, v, len);

			if (check && nf && !nonfinite_input(e, c, NULL, x, len))
				return;
		} else {
			weld_decode_f32(t, x, v, len);
			if (check && !check_input(e, c, v, t == WELD_BF16 ? x : NULL, len))
				return;
			if (task_vectors(j))
				weld_k_sub(v, c->base, len);
		}
		if (weld_method_random_drop(j->method) && mode != DROP_NONE) {
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

/* --scope row: dare's l1 and the top-k of each row of the tile; with two
 * selections (breadcrumbs), the first mask without the second's elements,
 * merged[s] set. */
static void tile_rows(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		      uint64_t g, size_t len, bool *merged)
{
	uint64_t rl = row_len(j);
	int ns = nsel(e, j);

	if (weld_method_rank_drop(j->method)) {
		weld_exec_rank_rows(e, j, c, g, len, P_APPLY);
		return;
	}
	for (uint64_t r = 0; r < len; r += rl)
		for (size_t s = 0; s < j->nsrc; s++) {
			float *v = c->vals + s * e->tile_elems + r;
			unsigned char *keep = c->keep + s * MAX_SEL * e->tile_elems + r;
			struct weld_topk sel[MAX_SEL];
			struct weld_topk_row row;

			if (needs_l1(e, j))
				weld_k_dare_row_l1(v, (size_t)rl, e->rng_key[s], g + r,
						   j->src[s].density);
			/* the row's count, if one is needed, serves every selection */
			row.x = v;
			row.n = (size_t)rl;
			row.scratch = c->row_keys;
			row.counted = false;
			for (int q = 0; q < ns; q++)
				weld_topk_select_row(&row, unit_k(e, j, s, q, rl),
						     &c->row_hint[s * MAX_SEL + (size_t)q], &sel[q]);
			if (ns == 2) {
				weld_topk_mask_pair(v, (size_t)rl, &sel[0], &sel[1], keep);
				merged[s] = true;
			} else if (ns == 1) {
				weld_topk_mask(v, (size_t)rl, &sel[0], 0, keep);
			}
		}
}

/*
 * APPLY at tensor or model scope: each source's top-k masks of the tile.
 * With two selections (the second one drops: breadcrumbs), one scan makes
 * the first mask without the second's elements, and merged[s] is set,
 * unless a selection's kept equal elements run out inside the tile.
 */
static void tile_masks(struct exec *e, const struct weld_job *j, struct slice_ctx *c, size_t len,
		       bool *merged)
{
	int ns = nsel(e, j);

	for (size_t s = 0; s < j->nsrc; s++) {
		const float *vs = c->vals + s * e->tile_elems;
		size_t s0 = s * MAX_SEL;
		uint64_t ea, eb;

		if (ns == 2 && weld_topk_mask_between(vs, len, &e->sel[s0].sel, c->n_equal[s0],
						      &e->sel[s0 + 1].sel, c->n_equal[s0 + 1],
						      c->keep + s0 * e->tile_elems, &ea, &eb)) {
			c->n_equal[s0] += ea;
			c->n_equal[s0 + 1] += eb;
			merged[s] = true;
			continue;
		}
		for (int q = 0; q < ns; q++) {
			size_t sq = s0 + (size_t)q;
			uint64_t *eq = &c->n_equal[sq];

			*eq += weld_topk_mask(vs, len, &e->sel[sq].sel, *eq,
					      c->keep + sq * e->tile_elems);
		}
	}
}

void weld_exec_put_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t first, uint64_t g, size_t len)
{
	/* --allow-nonfinite: NaN wherever some input is NaN (weld(1)) */
	if (c->tile_nan)
		for (size_t i = 0; i < len; i++)
			if (c->nan[i])
				c->out[i] = NAN;
	weld_exec_encode_tile(j->dtype, c->out, e->out_chunk + (g - first) * weld_dtype_size(j->dtype),
			      len);
}

/* APPLY on the tile of len elements at flat index g (the chunk starts at
 * first): the top-k masks, the method's combination, the encoding into the
 * output chunk. */
static void tile_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		       uint64_t first, uint64_t g, size_t len)
{
	struct weld_combine_args a = { 0 };
	float w[WELD_K_MAX_SRC], ml[WELD_K_MAX_SRC];
	const float *v[WELD_K_MAX_SRC];
	const unsigned char *k1[WELD_K_MAX_SRC], *k2[WELD_K_MAX_SRC];
	bool merged[WELD_K_MAX_SRC] = { false };
	int ns = nsel(e, j);

	if (weld_method_pcb(j->method)) {
		weld_exec_pcb_apply(e, j, c, first, g, len);
		return;
	}
	if (weld_method_sce(j->method)) {
		weld_exec_sce_apply(e, j, c, first, g, len);
		return;
	}
	if (weld_method_arcee(j->method)) {
		weld_exec_arcee_apply(e, j, c, first, g, len);
		return;
	}
	if (j->method == WELD_METHOD_APPLY_MASK) {
		for (size_t i = 0; i < len; i++) {
			uint64_t bit = g - first + i;
			float b = c->base[i];

			c->out[i] = e->mask_bits[bit / 8] >> (bit % 8) & 1 ? b + (c->vals[i] - b)
									    : b;
		}
		weld_exec_put_tile(e, j, c, first, g, len);
		return;
	}
	if (row_scope(e, j))
		tile_rows(e, j, c, g, len, merged);
	else
		tile_masks(e, j, c, len, merged);
	for (size_t s = 0; s < j->nsrc; s++) {
		w[s] = (float)j->src[s].weight;
		ml[s] = (float)j->src[s].mask_lambda;
		v[s] = c->vals + s * e->tile_elems;
		k1[s] = ns >= 1 ? c->keep + s * MAX_SEL * e->tile_elems : NULL;
		k2[s] = ns >= 2 && !merged[s] ? c->keep + (s * MAX_SEL + 1) * e->tile_elems : NULL;
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
	a.ties = weld_method_elects_signs(e->opts, j->method);
	a.sign_count = e->opts->sign == WELD_SIGN_COUNT;
	a.k = e->opts->k;
	a.s0 = e->slerp_s0;
	a.s1 = e->slerp_s1;
	a.maskbits = e->mask_writer ? e->mask_bits : NULL;
	a.maskstride = e->mask_stride;
	a.bitpos = g - first;
	a.t = (float)j->t;
	a.epsilon = (float)j->epsilon;
	a.coef = weld_job_stats(e->opts, j) ? e->coef : NULL;
	if (j->method == WELD_METHOD_NUSLERP && e->opts->nuslerp_columns) {
		a.ncols = weld_job_columns(j);
		a.col0 = g % a.ncols;
	}
	if (!(row_scope(e, j) && weld_exec_row_stats_apply(e, j, c, &a, len)))
		weld_k_combine(&a, len, c->out, c->scratch);
	weld_exec_put_tile(e, j, c, first, g, len);
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

		if (sampled(pass) && !sample_takes((e->sample_at + first + a) / sl))
			continue;
		if (pass == P_HI && e->rec.on && c->rec_overflow)
			break;  /* recording failed: the rest is of no use */
		/* one pread per input per super-tile */
		for (size_t s = 0; s <= j->nsrc && !c->failed; s++) {
			int m = s ? j->src[s - 1].model : j->base_model;
			int64_t t = s ? j->src[s - 1].tensor : j->base_tensor;
			bool held;      /* pcb: already in memory (pcb_hold.c) */
			unsigned char *dst = weld_pcb_hold_at(e, j, s, first + a, &held);

			if (m < 0)
				continue;
			rawp[s] = dst ? dst : c->raw + s * e->super_elems * e->raw_elem_size;
			if (held)
				continue;
			if (weld_model_read(e->plan->models[m], (size_t)t, first + a, (size_t)an,
					    (void *)rawp[s], &c->err) < 0)
				c->failed = true;
		}
		for (uint64_t b = a; b < a + an && !c->failed; b += tl) {
			size_t len = (size_t)(a + an - b < tl ? a + an - b : tl);
			uint64_t blk = b / WELD_BLOCK;
			double *l1 = pass == P_L1 ? e->block_sums + blk * e->max_src * 2 : NULL;

			tile_inputs(e, j, c, rawp, (size_t)(b - a), first + b, len, mode, l1,
				    pass == P_APPLY);
			if (c->failed)
				break;
			switch (pass) {
			case P_L1:
				break;
			case P_SLERP:
				weld_k_dots(c->base, c->vals, len, &e->block_sums[blk * 3]);
				break;
			case P_RANK_L1:
				weld_exec_rank_rows(e, j, c, first + b, len, pass);
				break;
			case P_PCB_CLIP_HI:
			case P_PCB_CLIP_LO:
			case P_PCB_BETA_HI:
			case P_PCB_BETA_LO:
				weld_exec_pcb_tile(e, j, c, first + b, len, pass);
				break;
			case P_SCE_SAMPLE:
			case P_SCE_HI:
			case P_SCE_LO:
			case P_SCE_COUNT:
			case P_SCE_SUM:
				weld_exec_sce_tile(e, j, c, first + b, len, pass);
				break;
			case P_ARCEE_SAMPLE:
			case P_ARCEE_RANGE:
			case P_ARCEE_HI:
			case P_ARCEE_LO:
				weld_exec_arcee_tile(e, j, c, first + b, len, pass);
				break;
			case P_STATS:
				weld_exec_tile_job_stats(e, j, c, first + b, len,
							 &e->block_sums[blk * weld_job_stats(e->opts, j)]);
				break;
			case P_APPLY:
				tile_apply(e, j, c, first, first + b, len);
				break;
			default:
				weld_exec_tile_stats(e, j, c, pass, len);
				break;
			}
		}
	}
#if defined(__x86_64__) && defined(__GNUC__)
	if (pass == P_APPLY)
		_mm_sfence();   /* the streamed output is complete before the writer reads it */
#endif
}

/* One chunk's pass, as handed to the team: slice t of it is item t. */
struct chunk_run {
	struct exec *e;
	const struct weld_job *j;
	uint64_t first, n, g;
	enum pass pass;
	enum drop_mode mode;
};

static void slice_item(void *ctx, int t)
{
	const struct chunk_run *r = ctx;
	struct exec *e = r->e;
	uint64_t lo, hi;

	slice(r->n, r->g, t, e->n_slices, &lo, &hi);
	e->slices[t].hist = e->thread_hist[omp_get_thread_num()];
	if (lo < hi)
		run_slice(e, r->j, &e->slices[t], r->first, lo, hi, r->pass, r->mode);
}

/* After a batch of the team: the error of a slice that failed, if any. */
static int slices_ok(const struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	for (int t = 0; t < e->n_slices; t++)
		if (e->slices[t].nonfinite)
			return weld_exec_nonfinite_error(e, j, err);
	for (int t = 0; t < e->n_slices; t++)
		if (e->slices[t].failed) {
			*err = e->slices[t].err;
			return -1;
		}
	return 0;
}

static void slices_reset(struct exec *e)
{
	for (int t = 0; t < e->n_slices; t++) {
		e->slices[t].failed = false;
		e->slices[t].nonfinite = false;
	}
}

/* A pass handed to the team at once, not chunk by chunk: item i is slice
 * i % n_slices of the chunk at first + (i / n_slices) step (elements
 * before end), run in the context of the thread that takes it; after a
 * slice fails, the items left do nothing. */
struct pass_run {
	struct exec *e;
	const struct weld_job *j;
	uint64_t first, end, step, g;
	enum pass pass;
	atomic_bool failed;
};

static void pass_item(void *ctx, int i)
{
	struct pass_run *r = ctx;
	struct exec *e = r->e;
	struct slice_ctx *c = &e->slices[omp_get_thread_num()];
	uint64_t first = r->first + (uint64_t)(i / e->n_slices) * r->step, n, lo, hi;

	if (atomic_load_explicit(&r->failed, memory_order_relaxed))
		return;
	n = r->end - first < r->step ? r->end - first : r->step;
	slice(n, r->g, i % e->n_slices, e->n_slices, &lo, &hi);
	c->hist = e->thread_hist[omp_get_thread_num()];
	if (lo < hi)
		run_slice(e, r->j, c, first, lo, hi, r->pass, DROP_NONE);
	if (c->failed)
		atomic_store_explicit(&r->failed, true, memory_order_relaxed);
}

/* Chunks per batch of the team, which counts its items in an int. */
#define PASS_CHUNKS (1u << 16)

int weld_exec_run_pass(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
		       uint64_t step, enum pass pass, struct weld_error *err)
{
	struct pass_run r = { e, j, first, first + n, step, granule(e, j), pass, false };
	uint64_t most = INT_MAX / (uint64_t)e->n_slices;

	slices_reset(e);
	while (r.first < r.end) {
		uint64_t chunks = (r.end - r.first + step - 1) / step;

		chunks = chunks < most ? chunks : most;
		chunks = chunks < PASS_CHUNKS ? chunks : PASS_CHUNKS;
		weld_team_run(e->team, (int)(chunks * (uint64_t)e->n_slices), pass_item, &r);
		if (slices_ok(e, j, err) < 0)
			return -1;
		r.first = r.end - r.first > chunks * step ? r.first + chunks * step : r.end;
	}
	return 0;
}

int weld_exec_run_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
			enum pass pass, enum drop_mode mode, struct weld_error *err)
{
	uint64_t g = granule(e, j);
	size_t nq = j->nsrc * MAX_SEL;

	slices_reset(e);
	for (int t = 0; pass == P_COUNT && t < e->n_slices; t++)
		memset(e->slices[t].n_equal, 0, sizeof(e->slices[t].n_equal));
	if (e->rec.on && weld_exec_rec_chunk(e) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (sample_pass(pass) || pass == P_LO || (pass == P_HI && !e->rec.on)) {
		e->hist_used = true;
		e->hist_shared = pass == P_HI || pass == P_SAMPLE;
	}
	weld_team_run(e->team, e->n_slices, slice_item,
		      &(struct chunk_run){ e, j, first, n, g, pass, mode });
	if (slices_ok(e, j, err) < 0)
		return -1;
	if (pass == P_HI || pass == P_LO || sample_pass(pass)) {
		/* uint32 per-thread counts: fold them in before they could wrap */
		e->hist_pending += n;
		if (e->hist_pending > (1ull << 31))
			weld_exec_hist_merge(e, j);
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
