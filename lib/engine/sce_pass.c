/*
 * sce_pass.c - sce in the streaming engine (METHODS 5), tensor by tensor.
 *
 * With 0 < select_topk < 1 the positions kept are those of the k largest
 * variances across the models (k = floor(c * select_topk), c the number of
 * non-zero variances; ties to the lowest position, DESIGN 4.1). The
 * energy of each model (the mean of its selected t^2) is a sum over the
 * selected positions, exact (struct weld_xsum) and so in any order.
 *
 * A 1/16 sample (sample.h) of the high bits of the variances' keys
 * guesses a range of bins that holds the threshold (select_in_range); one
 * pass then records the variances in the range (flat index, key, each
 * model's t^2), counts those below it and the zeros, and sums the squares
 * of those above it, which are selected whatever the threshold inside
 * the range. When the threshold's rank falls in the range, the records
 * give it, and join the sums: those above it, and of those equal to it
 * the first keep_equal in position order; APPLY then keeps the equal ones
 * before the position after the last of those (eq_cut). The sample
 * decides only which passes run, never a value.
 *
 * When the guess misses, a HI pass counts the high bits of all the keys
 * and the zeros, a LO pass gives the exact k-th largest key (hist_pass.c).
 * When the record room holds every variance of the threshold's bin (known
 * after HI), the LO pass takes the sums too, as above with the bin for
 * the range. Otherwise a pass of its own takes the sums; when only some
 * of the equal variances are kept, it records them when they fit, and
 * when they do not, a counting pass over each chunk first tells each
 * slice how many come before it, for that pass and for APPLY. Passes: 2
 * and the sample; when the guess misses, 3 more, 4 when the bin does not
 * fit, 6 when the equal ones do not either; 2 with select_topk >= 1 (no
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

static void tile_mask(struct exec *e, struct slice_ctx *c, const float *v, uint64_t g, size_t len)
{
	struct hist_exec *h = e->hs;

	if (h->eq_known) {
		weld_k_sce_mask_cut(v, len, h->thr, g, h->eq_cut, c->keep);
		return;
	}
	weld_k_sce_mask(v, len, h->thr, h->keep_equal, &h->eq_run[c - e->slices], h->keep_all,
			h->keep_none, c->keep);
}

/* Words of a record: the flat index (2), the variance's key, then each
 * model's t^2. */
static size_t rec_words(const struct weld_job *j)
{
	return 3 + j->nsrc;
}

/* Records the room holds. */
static size_t rec_cap(const struct exec *e, const struct weld_job *j)
{
	return (size_t)(e->plan->rec_bytes / 4 / rec_words(j));
}

/* Record the elements of the tile at flat index g whose key lies in
 * [lo, hi] (and count the low bits of their keys in hh, when given); and
 * count the zeros and the keys below lo in *zeros and *below, when given.
 * The positions recorded are listed first in idx (len of room), without a
 * branch: which ones are is a coin toss; the room for the tile's records
 * is then taken at once. */
static void record(struct exec *e, const struct weld_job *j, const float *const *t,
		   const float *v, uint64_t g, size_t len, uint32_t lo, uint32_t hi, uint32_t *hh,
		   uint64_t *zeros, uint64_t *below, uint32_t *idx)
{
	struct hist_exec *h = e->hs;
	size_t cap = rec_cap(e, j), wd = rec_words(j), n = 0, at;
	uint64_t z = 0, b = 0;

	for (size_t i = 0; i < len; i++) {
		uint32_t k = weld_pcb_abs_key(v[i]);

		idx[n] = (uint32_t)i;
		n += k >= lo && k <= hi;
		z += k == 0;
		b += k < lo;
	}
	if (zeros)
		*zeros += z;
	if (below)
		*below += b;
	if (!n)
		return;
#pragma omp atomic capture
	{
		at = h->eq_n;
		h->eq_n += n;
	}
	for (size_t x = 0; x < n; x++) {
		size_t i = idx[x];
		uint32_t k = weld_pcb_abs_key(v[i]), *r;
		uint64_t pos = g + i;

		if (hh)
			hh[k & 0xFFFF]++;
		if (at >= cap)
			continue;       /* the caller sees eq_n > cap */
		r = h->eq_rec + at++ * wd;
		memcpy(r, &pos, sizeof(pos));
		r[2] = k;
		for (size_t s = 0; s < j->nsrc; s++) {
			float sq = t[s][i] * t[s][i];

			memcpy(r + 3 + s, &sq, sizeof(sq));
		}
	}
}

/* Each model's selected t^2 (by c->keep) into the slice's sums. */
static void add_squares(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			const float *const *t, size_t len)
{
	size_t ti = (size_t)(c - e->slices);

	for (size_t s = 0; s < j->nsrc; s++) {
		weld_k_sce_square(t[s], c->keep, len, c->out);
		weld_xsum_add_abs(&e->rank_sums[(ti * e->max_src + s) * 2], c->out, len);
	}
}

void weld_exec_sce_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t g, size_t len, enum pass pass)
{
	struct hist_exec *h = e->hs;
	const float *t[WELD_K_MAX_SRC], *v = tile_var(e, j, c, len, t);
	uint32_t *hh = weld_exec_hist_mine(e);
	size_t ti = (size_t)(c - e->slices);
	uint64_t n = 0;

	switch (pass) {
	case P_SCE_SAMPLE:
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

		if (h->bin_record) {
			/* the keys above the range are selected, the range
			 * recorded; the zeros and the keys below it counted */
			int th = omp_get_thread_num();

			weld_k_sce_mask(v, len, h->rec_hi, 0, &n, false, false, c->keep);
			add_squares(e, j, c, t, len);
			record(e, j, t, v, g, len, h->rec_lo, h->rec_hi,
			       h->rec_lo >> 16 == h->rec_hi >> 16 ? hh : NULL, &h->thread_count[th],
			       &h->thread_below[WELD_HP_RANGES * th], (uint32_t *)(void *)c->out);
			return;
		}
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
				record(e, j, t, v, g, len, h->thr, h->thr, NULL, NULL, NULL,
				       (uint32_t *)(void *)c->out);
		} else {
			tile_mask(e, c, v, g, len);
		}
		add_squares(e, j, c, t, len);
		return;
	}
}

void weld_exec_sce_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len)
{
	const float *t[WELD_K_MAX_SRC], *v = tile_var(e, j, c, len, t);

	tile_mask(e, c, v, g, len);
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
	if (h->eq_record || h->eq_known)
		return 0;       /* the pass records them, or they are known by position */
	if (weld_exec_run_chunk(e, j, first, n, P_SCE_COUNT, DROP_NONE, err) < 0)
		return -1;
	weld_exec_progress(e, j, n);
	eq_runs_to_starts(e, run);
	return 0;
}

static void clear_sums(struct exec *e)
{
	memset(e->rank_sums, 0, (size_t)e->n_slices * e->max_src * 2 * sizeof(struct weld_xsum));
}

static int by_position(const void *a, const void *b)
{
	uint64_t x, y;

	memcpy(&x, a, sizeof(x));
	memcpy(&y, b, sizeof(y));
	return (x > y) - (x < y);
}

static void add_record(struct exec *e, const struct weld_job *j, const uint32_t *r)
{
	for (size_t s = 0; s < j->nsrc; s++) {
		float sq;

		memcpy(&sq, r + 3 + s, sizeof(sq));
		weld_xsum_add_abs(&e->rank_sums[s * 2], &sq, 1);
	}
}

/*
 * After a pass that recorded variances (the threshold's bin, or those
 * equal to the threshold): the squares of those above the threshold join
 * the sums; the equal ones, in position order, the first keep_equal of
 * them, and APPLY keeps the equal ones before the position after the last.
 */
static void take_records(struct exec *e, const struct weld_job *j)
{
	struct hist_exec *h = e->hs;
	size_t wd = rec_words(j), ne = 0;
	uint32_t *rec = h->eq_rec;

	for (size_t r = 0; r < h->eq_n; r++) {
		const uint32_t *x = rec + r * wd;

		if (x[2] > h->thr)
			add_record(e, j, x);
		else if (x[2] == h->thr && ne++ < r)
			memcpy(rec + (ne - 1) * wd, x, wd * 4);
	}
	qsort(rec, ne, wd * 4, by_position);
	for (size_t r = 0; r < h->keep_equal && r < ne; r++)
		add_record(e, j, rec + r * wd);
	h->eq_cut = 0;
	if (h->keep_equal > 0 && h->keep_equal <= ne) {
		memcpy(&h->eq_cut, rec + (h->keep_equal - 1) * wd, sizeof(h->eq_cut));
		h->eq_cut++;
	}
	h->eq_record = h->bin_record = false;
	h->eq_known = true;
}

/* Each model's share a_i of the energy (METHODS 5 step 3), from the sums. */
static void shares(struct exec *e, const struct weld_job *j)
{
	struct hist_exec *h = e->hs;
	double en[WELD_K_MAX_SRC], total = 0;

	for (size_t s = 0; s < j->nsrc; s++) {
		struct weld_xsum x = e->rank_sums[s * 2];

		for (size_t t = 1; t < (size_t)e->n_slices; t++)
			weld_xsum_merge(&x, &e->rank_sums[(t * e->max_src + s) * 2]);
		en[s] = weld_xsum_value(&x) / (double)j->nelem;
		total += en[s];
	}
	for (size_t s = 0; s < j->nsrc; s++)
		h->a[s] = (float)(fabs(total) < 1e-6 ? 1.0 / (double)j->nsrc : en[s] / total);
}

/*
 * A guess from a sample: a pass over one super-tile in SAMPLE_STRIDE
 * (sample.h) counts the high bits of the variances' keys and the zeros;
 * the threshold's rank is guessed from them, with a margin of four
 * standard errors of the sample for the rank and for the zeros (which
 * move k), and the whole bins around it become the range that one pass
 * records, counting the keys below it and the zeros, and summing the
 * squares of those above it. When the threshold's rank falls inside the
 * range, the records give the threshold and the rest of the sums: one
 * pass and a sixteenth instead of two. *done false: it missed (or the
 * range would not fit the room), and the sums are cleared.
 */
static int select_in_range(struct exec *e, const struct weld_job *j, bool *done,
			   struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	double tau = e->opts->select_topk, f, q, p, rank, margin;
	uint64_t m = j->nelem, ns, zs, zeros = 0, below = 0, k, r, in, eqb, eq;
	uint32_t lo, hi;
	size_t cap = rec_cap(e, j);

	*done = false;
	if (weld_exec_hist_sample(e, j, P_SCE_SAMPLE, &ns, &zs, err) < 0)
		return -1;
	if (!ns || !weld_exec_hist_records(e))
		return 0;
	f = (double)m / (double)ns;
	q = (double)zs / (double)ns;
	rank = ((double)m - floor(((double)m - (double)zs * f) * tau)) / f;    /* in the sample */
	p = rank / (double)ns;
	p = p < 0 ? 0 : p > 1 ? 1 : p;
	margin = 4 * sqrt((double)ns * p * (1 - p)) + 4 * tau * sqrt((double)ns * q * (1 - q)) + 16;
	in = weld_exec_hist_bins_around(e, rank, margin, &lo, &hi);
	/* zeros in the range, or more records than a quarter to spare */
	if (lo == 0 || (double)in * f * 1.25 + 1024 > (double)cap)
		return 0;
	h->bin_record = true;
	h->rec_lo = lo << 16;
	h->rec_hi = hi << 16 | 0xFFFF;
	h->eq_n = 0;
	clear_sums(e);
	if (weld_exec_hist_pass(e, &j, 1, P_SCE_LO, err) < 0)
		return -1;
	h->bin_record = false;
	for (int t = 0; t < e->n_threads; t++) {
		zeros += h->thread_count[t];
		below += h->thread_below[WELD_HP_RANGES * t];
	}
	k = (uint64_t)floor((double)(m - zeros) * tau);
	if (k == 0) {
		h->keep_none = true;
		*done = true;
		return 0;
	}
	r = m - k;
	if (h->eq_n > cap || r < below || r - below >= h->eq_n) {
		clear_sums(e);
		return 0;
	}
	h->thr = weld_exec_hist_key_at(e, h->eq_rec + 2, rec_words(j), h->eq_n, h->rec_lo,
				       h->rec_hi, r - below, &eqb, &eq);
	h->n_equal = eq;
	/* k = those above the threshold + the equal ones kept */
	h->keep_equal = k - (m - (below + eqb) - eq);
	take_records(e, j);
	shares(e, j);
	*done = true;
	return 0;
}

/* The k-th largest variance: its key, how many equal to it are kept; and
 * the sums too. From a sample's guess when it holds, else from a HI pass
 * and a LO pass that also takes the sums when the bin fits the record
 * room. */
static int select_variance(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	uint64_t m = j->nelem, zeros = 0, k;
	bool done;

	if (select_in_range(e, j, &done, err) < 0)
		return -1;
	if (done)
		return 0;
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
	/* the HI totals say how many keys the bin holds */
	if (h->hist[h->bin[0][0]] <= rec_cap(e, j) && weld_exec_hist_records(e)) {
		h->bin_record = true;
		h->rec_lo = h->bin[0][0] << 16;
		h->rec_hi = h->bin[0][0] << 16 | 0xFFFF;
		h->eq_n = 0;
		clear_sums(e);
	}
	if (weld_exec_hist_pass(e, &j, 1, P_SCE_LO, err) < 0)
		return -1;
	h->thr = weld_exec_hist_pick_key(e, 0, 0);
	h->n_equal = h->equal[0][0];
	/* k = those above the threshold + the equal ones kept */
	h->keep_equal = k - (m - h->below[0][0] - h->n_equal);
	if (h->bin_record) {
		take_records(e, j);
		shares(e, j);
	}
	return 0;
}

/* The energies' pass: each model's sum of its selected t^2, then the
 * shares. */
static int energies(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;

	clear_sums(e);
	h->eq_seen = 0;
	h->eq_n = 0;
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (weld_exec_sce_chunk(e, j, first, n, err) < 0 ||
		    weld_exec_run_chunk(e, j, first, n, P_SCE_SUM, DROP_NONE, err) < 0)
			return -1;
		weld_exec_progress(e, j, n);
	}
	if (h->eq_record)
		take_records(e, j);
	shares(e, j);
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
	h->eq_record = h->eq_known = h->bin_record = false;
	if (!h->keep_all && !h->keep_none && select_variance(e, j, err) < 0)
		return -1;
	/* only some of the equal variances are kept: recorded in the
	 * energies' pass when they fit, else counted before each pass */
	if (!h->keep_none && !h->eq_known && h->keep_equal > 0 && h->keep_equal < h->n_equal &&
	    h->n_equal <= rec_cap(e, j) && weld_exec_hist_records(e))
		h->eq_record = true;
	if (h->keep_none) {
		/* every t is 0: the shares do not matter */
		for (size_t s = 0; s < j->nsrc; s++)
			h->a[s] = (float)(1.0 / (double)j->nsrc);
	} else if (!h->eq_known && energies(e, j, err) < 0) {
		return -1;
	}
	h->eq_seen = 0;         /* APPLY counts the equal ones again */
	return 0;
}
