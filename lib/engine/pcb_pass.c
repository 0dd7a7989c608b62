/*
 * pcb_pass.c - PCB-Merging in the streaming engine (METHODS 12).
 *
 * Per model and unit (the tensor, each row, or the whole model) PCB needs
 * four order statistics: the clip bounds of |delta| (the lo-th and hi-th
 * smallest), then, from scores beta that depend on those bounds and on
 * every model's delta, the drop threshold and the largest beta. With
 * --scope tensor or model each pair is exact from two passes over the
 * unit: a histogram of the keys' high 16 bits finds the bin holding each
 * wanted rank, a histogram of the low 16 bits inside that bin the key
 * itself. Counts are integers (per thread, folded in any order), so the
 * statistics do not depend on threads or chunks, and a plateau of equal
 * values costs what any other data costs. Four statistics passes, then
 * APPLY; fewer with the tails (pcb_tails.c) and the window (pcb_window.c).
 * beta needs exp and tanh only where its bounds (pcb.h) cannot decide,
 * and a memo per thread and source (kept over units) spares most exp
 * calls. A unit whose inputs fit the plan's hold is read from the files
 * by its first pass only (pcb_hold.c). With --scope row each row is whole
 * in one tile and its statistics come from radix selects of its keys,
 * inside APPLY.
 */
#include "exec.h"
#include "hist_pass.h"
#include "pcb.h"
#include "pcb_hold.h"
#include "pcb_tails.h"
#include "pcb_window.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BINS WELD_HP_BINS
#define MEMO_BITS 12            /* entries of a memo: 2^12 (32 KiB, near the cores), if they fit */

/* The memos of intra (pcb.h), one per thread and source: kept from the
 * statistics passes of a unit to its APPLY, and over units. */
struct pcb_memos {
	size_t nsrc;
	struct weld_pcb_memo *m;        /* [thread][source] */
	struct weld_pcb_memo_entry *entries;
};

/* Entries of a memo (log2): as many as fit a sixteenth of the grant, 0 if
 * not even 2^8 do. */
static unsigned memo_bits(int threads, size_t nsrc, uint64_t grant)
{
	unsigned bits = MEMO_BITS;
	uint64_t per = sizeof(struct weld_pcb_memo_entry);

	while (bits >= 8 && (uint64_t)threads * nsrc * ((per << bits) + sizeof(struct weld_pcb_memo)) >
	       grant / 16)
		bits--;
	return bits >= 8 ? bits : 0;
}

uint64_t weld_pcb_memo_bytes(int threads, size_t nsrc, uint64_t grant)
{
	unsigned bits = memo_bits(threads, nsrc, grant);
	uint64_t per = sizeof(struct weld_pcb_memo_entry);

	return bits ? (uint64_t)threads * nsrc * ((per << bits) + sizeof(struct weld_pcb_memo)) : 0;
}

/* The memos, once per execution; none when they do not fit. */
static int memos_alloc(struct exec *e)
{
	struct pcb_memos *pm;
	size_t n = (size_t)e->n_threads * e->max_src;
	unsigned bits = memo_bits(e->n_threads, e->max_src, e->plan->pcb_grant);

	if (e->pm || !bits)
		return 0;
	if (!(pm = e->pm = calloc(1, sizeof(*pm))))
		return -1;
	pm->nsrc = e->max_src;
	pm->m = malloc(n * sizeof(*pm->m));
	pm->entries = malloc((n << bits) * sizeof(*pm->entries));
	if (!pm->m || !pm->entries)
		return -1;
	for (size_t i = 0; i < n; i++)
		weld_pcb_memo_init(&pm->m[i], pm->entries + (i << bits), bits);
	return 0;
}

void weld_exec_pcb_free(struct exec *e)
{
	weld_pcb_hold_free(e);
	if (!e->pm)
		return;
	free(e->pm->m);
	free(e->pm->entries);
	free(e->pm);
	e->pm = NULL;
}

/* This thread's memo for source s. */
struct weld_pcb_memo *weld_exec_pcb_memo(const struct exec *e, size_t s)
{
	return e->pm ? &e->pm->m[(size_t)omp_get_thread_num() * e->pm->nsrc + s] : NULL;
}

/* beta of every source over len elements of the tile at offset r, with the
 * clip bounds of u: scratch holds the sum, then beta of source s at
 * scratch + (1 + s) * tile_elems. */
static void tile_beta(const struct exec *e, const struct weld_job *j, struct slice_ctx *c,
		      size_t r, size_t len, const struct weld_pcb_unit *u)
{
	const float *d[WELD_K_MAX_SRC];
	float *sum = c->scratch + r;

	for (size_t s = 0; s < j->nsrc; s++)
		d[s] = c->vals + s * e->tile_elems + r;
	weld_k_pcb_sum(d, j->nsrc, len, sum);
	for (size_t s = 0; s < j->nsrc; s++)
		weld_k_pcb_beta(d[s], sum, j->nsrc, u[s].lo, u[s].hi, len,
				c->scratch + (1 + s) * e->tile_elems + r);
}

/* A LO pass over beta counts only the keys in two bins: the elements whose
 * beta is surely below both need no exp or tanh. */
static void tile_beta_lo(const struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 size_t len, const struct hist_exec *p)
{
	const float *d[WELD_K_MAX_SRC];
	float *sum = c->scratch, *tmp = c->scratch + (1 + j->nsrc) * e->tile_elems;
	uint32_t *idx = (uint32_t *)(void *)(c->scratch + (2 + j->nsrc) * e->tile_elems);
	uint32_t *h = weld_exec_hist_mine((struct exec *)e);

	for (size_t s = 0; s < j->nsrc; s++)
		d[s] = c->vals + s * e->tile_elems;
	weld_k_pcb_sum(d, j->nsrc, len, sum);
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_pcb_unit *u = &p->unit[s];
		uint32_t b0 = p->bin[s][0], b1 = p->bin[s][1], *h0 = h + s * 2 * BINS, *h1 = h0 + BINS;
		float v = weld_pcb_key_float((b0 < b1 ? b0 : b1) << 16, 1);
		size_t m = weld_k_pcb_candidates(d[s], sum, &u->bound, u->lo, u->hi,
						 v > 0 ? nextafterf(v, 0) : 0.0f, len, tmp, idx);

		weld_k_pcb_beta_at(d[s], sum, j->nsrc, u->lo, u->hi, idx, m, weld_exec_pcb_memo(e, s), tmp);
		for (size_t i = 0; i < m; i++) {
			uint32_t k = weld_pcb_beta_key(tmp[i]);

			h0[k & 0xFFFF] += (k >> 16) == b0;
			h1[k & 0xFFFF] += (k >> 16) == b1;
		}
	}
}

/* Whether x[0..n) holds a NaN (no branch: on vectors). */
static bool any_nan(const float *x, size_t n)
{
	unsigned any = 0;

	for (size_t i = 0; i < n; i++)
		any |= x[i] != x[i];
	return any;
}

void weld_exec_pcb_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t g, size_t len, enum pass pass)
{
	struct hist_exec *p = e->hs;
	uint32_t *h = weld_exec_hist_mine(e);
	bool beta = pass == P_PCB_BETA_HI;
	bool hi = pass == P_PCB_CLIP_HI || pass == P_PCB_BETA_HI;

	if (pass == P_PCB_BETA_LO) {
		if (e->pw && e->pw->counting)
			weld_pcb_window_tile(e->pw, e, j, c, g, len);
		else
			tile_beta_lo(e, j, c, len, p);
		return;
	}
	if (pass == P_PCB_CLIP_HI && e->pw && e->pw->sampling)
		weld_pcb_window_sample(e->pw, e, c, len);
	if (pass == P_PCB_CLIP_HI && e->pt) {
		weld_pcb_tails_tile(e->pt, e, c, len);
		return;
	}
	if (beta)
		tile_beta(e, j, c, 0, len, p->unit);
	for (size_t s = 0; s < j->nsrc; s++) {
		const float *x = beta ? c->scratch + (1 + s) * e->tile_elems
				      : c->vals + s * e->tile_elems;
		uint32_t *h0 = h + s * 2 * BINS, *h1 = h0 + BINS;
		uint32_t b0 = p->bin[s][0], b1 = p->bin[s][1];

		if (beta) {
			/* beta's HI pass (its LO pass is tile_beta_lo()); the
			 * NaN key only in a tile that holds a NaN */
			if (any_nan(x, len))
				for (size_t i = 0; i < len; i++)
					h0[weld_pcb_beta_key(x[i]) >> 16]++;
			else
				for (size_t i = 0; i < len; i++)
					h0[weld_pcb_signed_key(x[i]) >> 16]++;
			continue;
		}
		for (size_t i = 0; i < len; i++) {
			uint32_t k = weld_pcb_abs_key(x[i]);

			/* few keys fall in the two bins of a LO pass: a branch
			 * costs less than two counts per element */
			if (hi) {
				h0[k >> 16]++;
			} else if ((k >> 16) == b0 || (k >> 16) == b1) {
				h0[k & 0xFFFF] += (k >> 16) == b0;
				h1[k & 0xFFFF] += (k >> 16) == b1;
			}
		}
	}
}

/* The two statistics of every source over the unit (indices in p->rank). */
static int two_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		     enum pass hi, enum pass lo, uint32_t key[][2], struct weld_error *err)
{
	size_t nsrc = jobs[0]->nsrc;

	if (weld_exec_hist_pass(e, jobs, nj, hi, err) < 0)
		return -1;
	weld_pcb_hold_filled(e);
	weld_exec_hist_pick_bins(e, nsrc, 2);
	if (weld_exec_hist_pass(e, jobs, nj, lo, err) < 0)
		return -1;
	for (size_t s = 0; s < nsrc; s++)
		for (int q = 0; q < 2; q++)
			key[s][q] = weld_exec_hist_pick_key(e, s, q);
	return 0;
}

/* The statistics of the unit, with a window for the threshold when it
 * pays (pcb_window.c). */
static int unit_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj, uint64_t m,
		      struct weld_error *err)
{
	struct hist_exec *p = e->hs;
	const struct weld_job *j0 = jobs[0];
	uint32_t key[WELD_K_MAX_SRC][2];
	int r = 0;

	for (size_t s = 0; s < j0->nsrc; s++) {
		p->rank[s][0] = weld_pcb_lo_index(m, e->opts->clip);
		p->rank[s][1] = weld_pcb_hi_index(m, e->opts->clip);
	}
	if (e->pt) {
		if (weld_exec_pcb_pass(e, jobs, nj, P_PCB_CLIP_HI, err) < 0)
			return -1;
		for (size_t s = 0; s < j0->nsrc; s++)
			weld_pcb_tails_keys(e->pt, s, &key[s][0], &key[s][1]);
	} else if (two_stats(e, jobs, nj, P_PCB_CLIP_HI, P_PCB_CLIP_LO, key, err) < 0) {
		return -1;
	}
	if (e->pw)
		e->pw->sampling = false;
	for (size_t s = 0; s < j0->nsrc; s++) {
		p->unit[s].lo = weld_pcb_key_float(key[s][0], 0);
		p->unit[s].hi = weld_pcb_key_float(key[s][1], 0);
		weld_pcb_bound_init(&p->unit[s].bound, j0->nsrc, p->unit[s].lo, p->unit[s].hi);
		weld_pcb_bound_chords(&p->unit[s].bound);
		p->rank[s][0] = weld_pcb_thr_index(m, j0->src[s].density);
		p->rank[s][1] = m - 1;
	}
	if (e->pw && (r = weld_pcb_window_stats(e->pw, e, jobs, nj, err)) != 0)
		return r < 0 ? -1 : 0;
	if (two_stats(e, jobs, nj, P_PCB_BETA_HI, P_PCB_BETA_LO, key, err) < 0)
		return -1;
	for (size_t s = 0; s < j0->nsrc; s++) {
		p->unit[s].thr = weld_pcb_key_float(key[s][0], 1);
		p->unit[s].top = weld_pcb_key_float(key[s][1], 1);
	}
	return 0;
}

int weld_exec_pcb_unit(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       struct weld_error *err)
{
	uint64_t m = 0;
	int r;

	for (size_t i = 0; i < nj; i++)
		m += jobs[i]->nelem;
	if (!m)
		return 0;
	if (memos_alloc(e) < 0 || weld_pcb_hold_begin(e, jobs, nj) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e->pw = weld_pcb_window_new(e, jobs[0]->nsrc, m);
	e->pt = weld_pcb_tails_new(e, jobs[0]->nsrc, m, e->opts->clip);
	r = unit_stats(e, jobs, nj, m, err);
	weld_pcb_window_free(e->pw);
	weld_pcb_tails_free(e->pt);
	e->pw = NULL;
	e->pt = NULL;
	return r;
}

void weld_pcb_passes(uint64_t m, double clip, size_t nsrc, int threads, uint64_t grant, int *lo,
		     int *hi)
{
	bool window = weld_pcb_window_bytes(m, nsrc, threads, grant) > 0;
	bool tails = weld_pcb_tails_bytes(m, nsrc, threads, clip, grant) > 0;

	/* the clip bounds: tails, or two histogram passes; the threshold: a
	 * window, or two histogram passes (also after a window that missed) */
	*lo = 1 + (tails ? 1 : 2) + (window ? 1 : 2);
	*hi = *lo + (window ? 2 : 0);
}

int weld_exec_pcb_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       enum pass pass, struct weld_error *err)
{
	/* the tails, the window and the sample are per thread: each job's
	 * chunks go to the team at once */
	for (size_t i = 0; i < nj; i++) {
		if (weld_exec_run_pass(e, jobs[i], 0, jobs[i]->nelem, e->chunk_elems, pass, err) < 0)
			return -1;
		weld_exec_progress(e, jobs[i], jobs[i]->nelem);
	}
	weld_pcb_hold_filled(e);
	return 0;
}

/* --scope row, source s: beta of the row at offset r of the tile (sum
 * at scratch + r) everywhere, into its scores' place; the threshold and
 * the largest beta. */
static void row_full(struct exec *e, const struct weld_job *j, struct slice_ctx *c, size_t r,
		     size_t w, size_t s, struct weld_pcb_unit *u, uint32_t *keys, uint32_t *tmp)
{
	size_t te = e->tile_elems;
	float *beta = c->scratch + (1 + s) * te + r;
	uint32_t top = 0;

	weld_k_pcb_beta(c->vals + s * te + r, c->scratch + r, j->nsrc, u->lo, u->hi, w, beta);
	for (size_t i = 0; i < w; i++) {
		keys[i] = weld_pcb_beta_key(beta[i]);
		top = keys[i] > top ? keys[i] : top;
	}
	u->top = weld_pcb_key_float(top, 1);
	u->thr = weld_pcb_key_float(weld_pcb_kth_key(keys, w, weld_pcb_thr_index(w,
							j->src[s].density), tmp), 1);
}

/*
 * The same with beta exact only where its upper bound reaches low, the
 * threshold's rank among the lower bounds with the low 16 bits of its key
 * cleared (low <= thr: order statistics keep the order of the values),
 * -inf elsewhere: every other beta is below low (a NaN beta, which ranks
 * above every value, has the upper bound +inf: it is always exact). The threshold
 * is then the rank minus those among the exact ones, the largest beta one
 * of them. Checked: if thr came out below low (NaNs break the order), the
 * row is done whole.
 */
static void row_drop(struct exec *e, const struct weld_job *j, struct slice_ctx *c, size_t r,
		     size_t w, size_t s, struct weld_pcb_unit *u, uint32_t *keys, uint32_t *tmp)
{
	size_t te = e->tile_elems, n = j->nsrc, m = 0;
	size_t rank = (size_t)weld_pcb_thr_index(w, j->src[s].density);
	const float *d = c->vals + s * te + r, *sum = c->scratch + r;
	float *beta = c->scratch + (1 + s) * te + r, *lb = c->scratch + (3 + n) * te + r;
	float *exact = c->scratch + (1 + n) * te + r, lowf;
	uint32_t *idx = (uint32_t *)(void *)(c->scratch + (2 + n) * te) + r, top = 0, low;

	weld_pcb_bound_init(&u->bound, n, u->lo, u->hi);
	/* the upper bounds go where beta will be */
	weld_k_pcb_bounds(d, sum, &u->bound, u->lo, u->hi, w, beta, lb);
	for (size_t i = 0; i < w; i++)
		keys[i] = weld_pcb_beta_key(lb[i]);
	low = weld_pcb_kth_floor(keys, w, rank, tmp);
	lowf = weld_pcb_key_float(low, 1);
	for (size_t i = 0; i < w; i++) {
		idx[m] = (uint32_t)i;
		m += !(beta[i] < lowf);
	}
	if (w - m > rank) {
		row_full(e, j, c, r, w, s, u, keys, tmp);
		return;
	}
	weld_k_pcb_beta_at(d, sum, n, u->lo, u->hi, idx, m, NULL, exact);
	for (size_t i = 0; i < w; i++)
		beta[i] = -INFINITY;
	for (size_t k = 0; k < m; k++) {
		beta[idx[k]] = exact[k];
		keys[k] = weld_pcb_beta_key(exact[k]);
		top = keys[k] > top ? keys[k] : top;
	}
	u->top = weld_pcb_key_float(top, 1);
	u->thr = weld_pcb_key_float(weld_pcb_kth_key(keys, m, rank - (w - m), tmp), 1);
	if (weld_pcb_beta_key(u->thr) < low)
		row_full(e, j, c, r, w, s, u, keys, tmp);
}

/* --scope row: the statistics of the row at offset r of the tile, in
 * memory; beta in the scores' place. */
static void row_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c, size_t r,
		      size_t w, struct weld_pcb_unit *u)
{
	size_t t = (size_t)(c - e->slices);
	uint32_t *keys = e->rank_scratch + t * RANK_SCRATCH * e->tile_elems, *tmp = keys + w;
	const float *d[WELD_K_MAX_SRC];

	for (size_t s = 0; s < j->nsrc; s++) {
		uint64_t lo = weld_pcb_lo_index(w, e->opts->clip), hi = weld_pcb_hi_index(w, e->opts->clip);
		uint32_t klo, khi;

		d[s] = c->vals + s * e->tile_elems + r;
		if (weld_pcb_clip_keys(d[s], w, lo, hi, &klo, &khi)) {
			u[s].lo = weld_pcb_key_float(klo, 0);
			u[s].hi = weld_pcb_key_float(khi, 0);
			continue;
		}
		for (size_t i = 0; i < w; i++)
			keys[i] = weld_pcb_abs_key(d[s][i]);
		u[s].lo = weld_pcb_key_float(weld_pcb_kth_key(keys, w, (size_t)lo, tmp), 0);
		for (size_t i = 0; i < w; i++)
			keys[i] = weld_pcb_abs_key(d[s][i]);
		u[s].hi = weld_pcb_key_float(weld_pcb_kth_key(keys, w, (size_t)hi, tmp), 0);
	}
	weld_k_pcb_sum(d, j->nsrc, w, c->scratch + r);
	for (size_t s = 0; s < j->nsrc; s++)
		row_drop(e, j, c, r, w, s, &u[s], keys, tmp);
}

void weld_exec_pcb_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len)
{
	const float *d[WELD_K_MAX_SRC], *sc[WELD_K_MAX_SRC];
	float w[WELD_K_MAX_SRC];
	size_t n = j->nsrc, rl = row_scope(e, j) ? (size_t)row_len(j) : len, te = e->tile_elems;
	float *tmp = c->scratch + (1 + n) * te;
	uint32_t *idx = (uint32_t *)(void *)(c->scratch + (2 + n) * te);

	for (size_t s = 0; s < n; s++)
		w[s] = (float)j->src[s].weight;
	for (size_t r = 0; r < len; r += rl) {
		struct weld_pcb_unit row[WELD_K_MAX_SRC];
		const struct weld_pcb_unit *u = e->hs ? e->hs->unit : row;

		for (size_t s = 0; s < n; s++) {
			d[s] = c->vals + s * te + r;
			sc[s] = c->scratch + (1 + s) * te + r;
		}
		if (row_scope(e, j)) {
			/* the row's beta, in memory: scores from it */
			row_stats(e, j, c, r, rl, row);
			u = row;
			for (size_t s = 0; s < n; s++)
				weld_k_pcb_beta_scores(sc[s], &u[s], rl, (float *)sc[s]);
		} else {
			weld_k_pcb_sum(d, n, rl, c->scratch + r);
			for (size_t s = 0; s < n; s++)
				weld_k_pcb_scores(d[s], c->scratch + r, n, &u[s], &u[s].bound, rl,
						  weld_exec_pcb_memo(e, s),
						  weld_pcb_hold_flags(e, j, s, g + r, u[s].thr), tmp,
						  idx, (float *)sc[s]);
		}
		weld_k_pcb_mix(d, sc, n, u, w, c->base + r, (float)j->lambda, rl, c->scratch + r,
			       tmp, c->out + r);
	}
	weld_exec_put_tile(e, j, c, first, g, len);
}
