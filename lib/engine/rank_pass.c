/*
 * rank_pass.c - della's rows (METHODS 3): the keep probability of each
 * element from its magnitude's rank in its row, the drop, and, with
 * --rescale l1, a pass before APPLY that takes each source's exact sums of
 * |delta| and of its kept part over the whole tensor.
 *
 * A row is a slice along the last dimension, and every row is whole in one
 * tile (the plan sizes tiles and chunks to hold the longest row, or says
 * how much memory that needs), so ranks are taken in memory, row by row,
 * by counting (weld_k_della_row). The sums are exact (struct weld_xsum), so
 * what each slice adds up does not depend on how the tensor was cut. When the plan
 * set memory aside for them, the L1 pass keeps each row's keep flags as
 * bits (a row from a byte of its own, so slices never share a byte) and
 * APPLY drops from them instead of ranking the rows again.
 */
#include "exec.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* a slice's rank scratch holds a row's of weld_k_della_row */
_Static_assert(RANK_SCRATCH >= WELD_RANK_SCRATCH, "rank scratch too small for della's rows");

int weld_exec_rank_alloc(struct exec *e)
{
	size_t n = (size_t)e->n_slices;

	/* the sums serve sce too */
	if (!e->plan->ranks && !e->plan->hist_stats)
		return 0;
	if (e->plan->ranks &&
	    !(e->rank_scratch = malloc(n * RANK_SCRATCH * e->tile_elems * sizeof(uint32_t))))
		return -1;
	if (weld_plan_della_memos(e->plan)) {
		if (!(e->della_memo = calloc((size_t)e->n_threads, sizeof(*e->della_memo))))
			return -1;
		for (int t = 0; t < e->n_threads; t++)
			if (!(e->della_memo[t] = weld_della_memo_new(e->tile_elems)))
				return -1;
	}
	e->rank_sums = calloc(n * e->max_src * 2, sizeof(struct weld_xsum));
	return e->rank_sums ? 0 : -1;
}

void weld_exec_rank_free(struct exec *e)
{
	for (int t = 0; e->della_memo && t < e->n_threads; t++)
		weld_della_memo_free(e->della_memo[t]);
	free(e->della_memo);
	free(e->rank_scratch);
	free(e->rank_sums);
}

/* A +0 kept and a +0 dropped are the same value after the factor: the
 * keep flags of the L1 pass then decide every element (its zeros' flags
 * are not exact, see weld_k_della_row). */
static bool zero_stays(float factor)
{
	float z = 0.0f * factor;
	uint32_t u;

	memcpy(&u, &z, sizeof(u));
	return u == 0;
}

void weld_exec_rank_rows(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t g, size_t len, enum pass pass)
{
	size_t t = (size_t)(c - e->slices), rl = (size_t)row_len(j);
	uint32_t *scratch = e->rank_scratch + t * RANK_SCRATCH * e->tile_elems;
	bool inverse = e->opts->rescale == WELD_RESCALE_INVERSE, sums = pass == P_RANK_L1;
	/* the L1 pass's keep flags, kept for APPLY when they fit */
	bool store = sums && e->draws == DRAWS_STORE, known = !sums && e->draws == DRAWS_KNOWN;
	size_t rb = (rl + 7) / 8;
	struct weld_della_memo *memo = e->della_memo ? e->della_memo[omp_get_thread_num()] : NULL;

	for (size_t s = 0; s < j->nsrc; s++) {
		struct weld_xsum *x = e->rank_sums + (t * e->max_src + s) * 2;
		double d = j->src[s].density, eps = j->src[s].epsilon;
		float factor = sums || inverse ? 1.0f : e->factor[s];
		bool all = d >= 1, from_bits = known && zero_stays(factor);

		for (size_t r = 0; r < len; r += rl) {
			float *v = c->vals + s * e->tile_elems + r;
			unsigned char *bits = !e->draw_bits ? NULL
				: e->draw_bits + s * e->plan->drop_stride + (g + r) / rl * rb;

			if (!all && from_bits)
				weld_k_della_apply_bits(v, rl, bits, factor);
			else if (!all)  /* the L1 pass's sums come with the drop */
				weld_k_della_row(v, rl, e->rng_key[s], g + r, d, eps, inverse, factor,
						 scratch, store ? bits : NULL, sums ? x : NULL, memo);
			if (sums && all) {
				weld_xsum_add_abs(&x[0], v, rl);
				weld_xsum_add_abs(&x[1], v, rl);
			}
		}
	}
}

/* The L1 pass: every chunk (whole rows), then each source's factor. */
static int l1_pass(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	uint64_t g = 8 * row_len(j), step = e->chunk_elems / g * g;
	size_t ns = (size_t)e->n_slices;

	memset(e->rank_sums, 0, ns * e->max_src * 2 * sizeof(struct weld_xsum));
	/* the sums are exact and the keep bits go by row: any thread may take
	 * any slice, so the whole pass is one batch */
	if (weld_exec_run_pass(e, j, 0, j->nelem, step, P_RANK_L1, err) < 0)
		return -1;
	weld_exec_progress(e, j, j->nelem);
	for (size_t s = 0; s < j->nsrc; s++) {
		struct weld_xsum all, kept;
		double a, k;

		all = e->rank_sums[s * 2];
		kept = e->rank_sums[s * 2 + 1];
		for (size_t t = 1; t < ns; t++) {
			weld_xsum_merge(&all, &e->rank_sums[(t * e->max_src + s) * 2]);
			weld_xsum_merge(&kept, &e->rank_sums[(t * e->max_src + s) * 2 + 1]);
		}
		a = weld_xsum_value(&all);
		k = weld_xsum_value(&kept);
		/* mergekit's rescaled_masked_tensor: no rescale when either is tiny */
		e->factor[s] = a < 1e-7 || k < 1e-7 ? 1.0f : (float)(a / k);
	}
	return 0;
}

uint64_t weld_della_bit_bytes(const struct weld_job *j)
{
	uint64_t w = row_len(j);

	return j->nelem / w * ((w + 7) / 8);
}

int weld_exec_rank_stats(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->factor[s] = 1.0f;
	weld_exec_set_keys(e, j);
	if (e->opts->rescale != WELD_RESCALE_L1)
		return 0;
	if (e->draw_bits && weld_della_bit_bytes(j) <= e->plan->drop_stride)
		e->draws = DRAWS_STORE;
	if (l1_pass(e, j, err) < 0)
		return -1;
	if (e->draws == DRAWS_STORE)
		e->draws = DRAWS_KNOWN;
	return 0;
}
