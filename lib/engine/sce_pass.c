/*
 * sce_pass.c - sce in the streaming engine (METHODS 5), tensor by tensor.
 *
 * With 0 < select_topk < 1 the positions kept are those of the k largest
 * variances across the models (k = floor(c * select_topk), c the number of
 * non-zero variances; ties to the lowest position, DESIGN 4.1). A HI pass
 * counts the high bits of the variances' keys and the zeros, a LO pass
 * gives the exact k-th largest key (hist_pass.c). The energy of each model
 * (the mean of its selected t^2) needs one more pass, whose sums are exact
 * (struct weld_xsum); APPLY then writes. When only some of the variances
 * equal to the threshold are kept, the lowest positions are: the energies'
 * pass records the equal ones (chunk, slice and place in the slice, and
 * each model's t^2) when WELD_SCE_EQ_BYTES hold them, the first keep_equal
 * in that order join the sums, and APPLY tells each slice how many come
 * before it from the record. When they do not fit, a counting pass over
 * each chunk first tells each slice, for that pass and for APPLY. Passes:
 * 4, or 6 with such ties that do not fit; 2 with select_topk >= 1 (no
 * selection); 1 when nothing is kept.
 */
#include "exec.h"
#include "hist_pass.h"
#include "sce.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The variances of the tile's len elements, in scratch. */
static const float *tile_var(const struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			     size_t len, const float **t)
{
	for (size_t s = 0; s < j->nsrc; s++)
		t[s] = c->vals + s * e->tile_elems;
	weld_k_sce_var(t, j->nsrc, len, c->scratch);
	return c->scratch;
}

static void tile_mask(struct exec *e, struct slice_ctx *c, const float *v, size_t len)
{
	struct hist_exec *h = e->hs;

	weld_k_sce_mask(v, len, h->thr, h->keep_equal, &h->eq_run[c - e->slices], h->keep_all,
			h->keep_none, c->keep);
}

/* Words of a record of an equal variance: the order key (chunk, slice,
 * place in the slice: 24, 8 and 32 bits), then each model's t^2. */
static size_t rec_words(const struct weld_job *j)
{
	return 2 + j->nsrc;
}

static void record_equal(struct exec *e, const struct weld_job *j, const float *const *t,
			 const float *v, size_t len, size_t ti)
{
	struct hist_exec *h = e->hs;
	size_t cap = WELD_SCE_EQ_BYTES / 4 / rec_words(j);

	for (size_t i = 0; i < len; i++) {
		uint64_t key = h->eq_chunk << 40 | (uint64_t)ti << 32 | h->eq_run[ti];
		uint32_t *r;
		size_t at;

		if (weld_pcb_abs_key(v[i]) != h->thr)
			continue;
		h->eq_run[ti]++;
#pragma omp atomic capture
		at = h->eq_n++;
		if (at >= cap)
			continue;       /* not reached: the unit checked there is room */
		r = h->eq_rec + at * rec_words(j);
		memcpy(r, &key, sizeof(key));
		for (size_t s = 0; s < j->nsrc; s++) {
			float sq = t[s][i] * t[s][i];

			memcpy(r + 2 + s, &sq, sizeof(sq));
		}
	}
}

void weld_exec_sce_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			size_t len, enum pass pass)
{
	struct hist_exec *h = e->hs;
	const float *t[WELD_K_MAX_SRC], *v = tile_var(e, j, c, len, t);
	uint32_t *hh = weld_exec_hist_mine(e);
	size_t ti = (size_t)(c - e->slices);
	uint64_t n = 0;

	switch (pass) {
	case P_SCE_HI:
		for (size_t i = 0; i < len; i++) {
			uint32_t k = weld_pcb_abs_key(v[i]);

			hh[k >> 16]++;
			n += k == 0;
		}
		h->thread_count[omp_get_thread_num()] += n;
		return;
	case P_SCE_LO: {
		/* few keys fall in the bin: a test, then the count */
		uint32_t bin = (uint32_t)h->bin[0][0];

		for (size_t i = 0; i < len; i++) {
			uint32_t k = weld_pcb_abs_key(v[i]);

			if ((k >> 16) == bin)
				hh[k & 0xFFFF]++;
		}
		return;
	}
	case P_SCE_COUNT:
		for (size_t i = 0; i < len; i++)
			n += weld_pcb_abs_key(v[i]) == h->thr;
		h->eq_run[ti] += n;
		return;
	default:        /* P_SCE_SUM: each model's sum of its selected t^2 */
		if (h->eq_record) {
			/* those above the threshold; the equal ones recorded */
			weld_k_sce_mask(v, len, h->thr, 0, &n, false, false, c->keep);
			if (n)
				record_equal(e, j, t, v, len, ti);
		} else {
			tile_mask(e, c, v, len);
		}
		for (size_t s = 0; s < j->nsrc; s++) {
			weld_k_sce_square(t[s], c->keep, len, c->out);
			weld_xsum_add_abs(&e->rank_sums[(ti * e->max_src + s) * 2], c->out, len);
		}
		return;
	}
}

void weld_exec_sce_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len)
{
	const float *t[WELD_K_MAX_SRC], *v = tile_var(e, j, c, len, t);

	tile_mask(e, c, v, len);
	weld_k_sce_combine(t, c->keep, j->nsrc, e->hs->a, c->base, len, c->out);
	weld_exec_put_tile(e, j, c, first, g, len);
}

/* Each slice's count of equal variances becomes the count before it, in
 * slice order after those of the earlier chunks (run). */
static void eq_runs_to_starts(struct exec *e, uint64_t run)
{
	struct hist_exec *h = e->hs;

	for (int t = 0; t < e->n_slices; t++) {
		uint64_t mine = h->eq_run[t];

		h->eq_run[t] = run;
		run += mine;
	}
	h->eq_seen = run;
}

int weld_exec_sce_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
			struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	uint64_t run = h->eq_seen;

	memset(h->eq_run, 0, (size_t)e->n_slices * sizeof(uint64_t));
	if (h->keep_all || h->keep_none || h->keep_equal == 0 || h->keep_equal == h->n_equal)
		return 0;       /* all or none of the equal ones: their order does not matter */
	if (h->eq_record)
		return 0;       /* the pass records them, each slice from 0 */
	if (h->eq_known) {
		/* the records of this chunk (sorted) give each slice's count */
		size_t wd = rec_words(j);

		for (; h->eq_cursor < h->eq_n; h->eq_cursor++) {
			uint64_t key;

			memcpy(&key, h->eq_rec + h->eq_cursor * wd, sizeof(key));
			if (key >> 40 != h->eq_chunk)
				break;
			h->eq_run[key >> 32 & 0xFF]++;
		}
		h->eq_chunk++;
		eq_runs_to_starts(e, run);
		return 0;
	}
	if (weld_exec_run_chunk(e, j, first, n, P_SCE_COUNT, DROP_NONE, err) < 0)
		return -1;
	weld_exec_progress(e, j, n);
	eq_runs_to_starts(e, run);
	return 0;
}

/* The k-th largest variance: its key, how many equal to it are kept. */
static int select_variance(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	uint64_t m = j->nelem, zeros = 0, k;

	if (weld_exec_hist_pass(e, &j, 1, P_SCE_HI, err) < 0)
		return -1;
	for (int t = 0; t < e->n_threads; t++)
		zeros += h->thread_count[t];
	k = (uint64_t)floor((double)(m - zeros) * e->opts->select_topk);
	if (k == 0) {
		h->keep_none = true;
		return 0;
	}
	h->rank[0][0] = m - k;
	weld_exec_hist_pick_bins(e, 1, 1);
	if (weld_exec_hist_pass(e, &j, 1, P_SCE_LO, err) < 0)
		return -1;
	h->thr = weld_exec_hist_pick_key(e, 0, 0);
	h->n_equal = h->equal[0][0];
	/* k = those above the threshold + the equal ones kept */
	h->keep_equal = k - (m - h->below[0][0] - h->n_equal);
	return 0;
}

static int by_key(const void *a, const void *b)
{
	uint64_t x, y;

	memcpy(&x, a, sizeof(x));
	memcpy(&y, b, sizeof(y));
	return (x > y) - (x < y);
}

/* After the energies' pass: the recorded equal variances in position
 * order, the squares of the first keep_equal added to the sums, and APPLY
 * told to count them from the records. */
static void take_recorded(struct exec *e, const struct weld_job *j)
{
	struct hist_exec *h = e->hs;
	size_t wd = rec_words(j);

	qsort(h->eq_rec, h->eq_n, wd * 4, by_key);
	for (size_t r = 0; r < h->keep_equal; r++)
		for (size_t s = 0; s < j->nsrc; s++) {
			float sq;

			memcpy(&sq, h->eq_rec + r * wd + 2 + s, sizeof(sq));
			weld_xsum_add_abs(&e->rank_sums[s * 2], &sq, 1);
		}
	h->eq_record = false;
	h->eq_known = true;
}

/* Each model's share a_i of the energy (METHODS 5 step 3). */
static int energies(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	double en[WELD_K_MAX_SRC], total = 0;
	size_t ns = (size_t)e->n_slices;

	memset(e->rank_sums, 0, ns * e->max_src * 2 * sizeof(struct weld_xsum));
	h->eq_seen = 0;
	h->eq_n = 0;
	h->eq_chunk = 0;
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (weld_exec_sce_chunk(e, j, first, n, err) < 0 ||
		    weld_exec_run_chunk(e, j, first, n, P_SCE_SUM, DROP_NONE, err) < 0)
			return -1;
		h->eq_chunk++;
		weld_exec_progress(e, j, n);
	}
	if (h->eq_record)
		take_recorded(e, j);
	for (size_t s = 0; s < j->nsrc; s++) {
		struct weld_xsum x = e->rank_sums[s * 2];

		for (size_t t = 1; t < ns; t++)
			weld_xsum_merge(&x, &e->rank_sums[(t * e->max_src + s) * 2]);
		en[s] = weld_xsum_value(&x) / (double)j->nelem;
		total += en[s];
	}
	for (size_t s = 0; s < j->nsrc; s++)
		h->a[s] = (float)(fabs(total) < 1e-6 ? 1.0 / (double)j->nsrc : en[s] / total);
	return 0;
}

int weld_exec_sce_unit(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	double tau = e->opts->select_topk;

	h->keep_all = !(tau < 1);
	h->keep_none = tau <= 0;
	h->keep_equal = h->n_equal = 0;
	h->thr = 0;
	h->eq_record = h->eq_known = false;
	if (!h->keep_all && !h->keep_none && select_variance(e, j, err) < 0)
		return -1;
	/* only some of the equal variances are kept: recorded in the
	 * energies' pass when they fit, else counted before each pass */
	if (!h->keep_none && h->keep_equal > 0 && h->keep_equal < h->n_equal &&
	    h->n_equal <= WELD_SCE_EQ_BYTES / 4 / rec_words(j) && e->n_slices <= 256 &&
	    j->nelem / e->chunk_elems < (1u << 23) &&
	    (h->eq_rec || (h->eq_rec = malloc(WELD_SCE_EQ_BYTES))))
		h->eq_record = true;
	if (h->keep_none) {
		/* every t is 0: the shares do not matter */
		for (size_t s = 0; s < j->nsrc; s++)
			h->a[s] = (float)(1.0 / (double)j->nsrc);
	} else if (energies(e, j, err) < 0) {
		return -1;
	}
	h->eq_seen = 0;         /* APPLY counts the equal ones again */
	h->eq_cursor = 0;
	h->eq_chunk = 0;
	return 0;
}
