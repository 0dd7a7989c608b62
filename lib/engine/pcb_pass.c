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
 * APPLY. With --scope row each row is whole in one tile and its
 * statistics come from a radix sort of its keys, inside APPLY.
 */
#include "exec.h"
#include "pcb.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BINS 65536

struct pcb_exec {
	struct weld_pcb_unit unit[WELD_K_MAX_SRC];
	uint32_t **thread_hist;         /* per thread: max_src * 2 histograms */
	uint64_t *hist;                 /* their totals */
	uint32_t bin[WELD_K_MAX_SRC][2];        /* after a HI pass: the bin of each statistic */
	uint64_t rank[WELD_K_MAX_SRC][2];       /* the wanted index; after HI, inside its bin */
	uint64_t pending;               /* elements counted in the threads' histograms */
};

int weld_exec_pcb_alloc(struct exec *e)
{
	size_t per = e->max_src * 2 * BINS;
	struct pcb_exec *p;

	if (!e->plan->pcb_stats)
		return 0;
	if (!(p = e->pcb = calloc(1, sizeof(*p))))
		return -1;
	p->hist = calloc(per, sizeof(uint64_t));
	p->thread_hist = calloc((size_t)e->n_threads, sizeof(*p->thread_hist));
	if (!p->hist || !p->thread_hist)
		return -1;
	for (int t = 0; t < e->n_threads; t++)
		if (!(p->thread_hist[t] = calloc(per, sizeof(uint32_t))))
			return -1;
	return 0;
}

void weld_exec_pcb_free(struct exec *e)
{
	struct pcb_exec *p = e->pcb;

	if (!p)
		return;
	for (int t = 0; p->thread_hist && t < e->n_threads; t++)
		free(p->thread_hist[t]);
	free(p->thread_hist);
	free(p->hist);
	free(p);
	e->pcb = NULL;
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

void weld_exec_pcb_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			size_t len, enum pass pass)
{
	struct pcb_exec *p = e->pcb;
	uint32_t *h = p->thread_hist[omp_get_thread_num()];
	bool beta = pass == P_PCB_BETA_HI || pass == P_PCB_BETA_LO;
	bool hi = pass == P_PCB_CLIP_HI || pass == P_PCB_BETA_HI;

	if (beta)
		tile_beta(e, j, c, 0, len, p->unit);
	for (size_t s = 0; s < j->nsrc; s++) {
		const float *x = beta ? c->scratch + (1 + s) * e->tile_elems
				      : c->vals + s * e->tile_elems;
		uint32_t *h0 = h + s * 2 * BINS, *h1 = h0 + BINS;
		uint32_t b0 = p->bin[s][0], b1 = p->bin[s][1];

		for (size_t i = 0; i < len; i++) {
			uint32_t k = beta ? weld_pcb_signed_key(x[i]) : weld_pcb_abs_key(x[i]);

			if (hi) {
				h0[k >> 16]++;
			} else {
				h0[k & 0xFFFF] += (k >> 16) == b0;
				h1[k & 0xFFFF] += (k >> 16) == b1;
			}
		}
	}
}

/* Add the threads' counts to the totals and clear them. */
static void fold(struct exec *e, size_t nsrc)
{
	struct pcb_exec *p = e->pcb;

	for (int t = 0; t < e->n_threads; t++) {
		uint32_t *h = p->thread_hist[t];

		for (size_t i = 0; i < nsrc * 2 * BINS; i++) {
			p->hist[i] += h[i];
			h[i] = 0;
		}
	}
	p->pending = 0;
}

/* One statistics pass over every job of the unit. */
static int stats_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		      enum pass pass, struct weld_error *err)
{
	struct pcb_exec *p = e->pcb;
	size_t nsrc = jobs[0]->nsrc;

	memset(p->hist, 0, nsrc * 2 * BINS * sizeof(uint64_t));
	for (size_t i = 0; i < nj; i++)
		for (uint64_t first = 0; first < jobs[i]->nelem; first += e->chunk_elems) {
			uint64_t n = jobs[i]->nelem - first;

			n = n < e->chunk_elems ? n : e->chunk_elems;
			if (weld_exec_run_chunk(e, jobs[i], first, n, pass, DROP_NONE, err) < 0)
				return -1;
			weld_exec_progress(e, jobs[i], n);
			/* uint32 per-thread counts: fold them in before they could wrap */
			if ((p->pending += n) > (1ull << 31))
				fold(e, nsrc);
		}
	fold(e, nsrc);
	return 0;
}

/* After a HI pass: the bin of each wanted rank, and the rank inside it. */
static void pick_bins(struct pcb_exec *p, size_t nsrc)
{
	for (size_t s = 0; s < nsrc; s++)
		for (int q = 0; q < 2; q++) {
			const uint64_t *h = p->hist + s * 2 * BINS;
			uint64_t below = 0;
			uint32_t b = 0;

			while (b < BINS - 1 && below + h[b] <= p->rank[s][q])
				below += h[b++];
			p->bin[s][q] = b;
			p->rank[s][q] -= below;
		}
}

/* After a LO pass: the key of each statistic. */
static uint32_t pick_key(const struct pcb_exec *p, size_t s, int q)
{
	const uint64_t *h = p->hist + (s * 2 + (size_t)q) * BINS;
	uint64_t below = 0;
	uint32_t b = 0;

	while (b < BINS - 1 && below + h[b] <= p->rank[s][q])
		below += h[b++];
	return p->bin[s][q] << 16 | b;
}

/* The two statistics of every source over the unit (indices in p->rank). */
static int two_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		     enum pass hi, enum pass lo, uint32_t key[][2], struct weld_error *err)
{
	struct pcb_exec *p = e->pcb;
	size_t nsrc = jobs[0]->nsrc;

	if (stats_pass(e, jobs, nj, hi, err) < 0)
		return -1;
	pick_bins(p, nsrc);
	if (stats_pass(e, jobs, nj, lo, err) < 0)
		return -1;
	for (size_t s = 0; s < nsrc; s++)
		for (int q = 0; q < 2; q++)
			key[s][q] = pick_key(p, s, q);
	return 0;
}

int weld_exec_pcb_unit(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       struct weld_error *err)
{
	struct pcb_exec *p = e->pcb;
	const struct weld_job *j0 = jobs[0];
	uint32_t key[WELD_K_MAX_SRC][2];
	uint64_t m = 0;

	for (size_t i = 0; i < nj; i++)
		m += jobs[i]->nelem;
	if (!m)
		return 0;
	for (size_t s = 0; s < j0->nsrc; s++) {
		p->rank[s][0] = weld_pcb_lo_index(m, e->opts->clip);
		p->rank[s][1] = weld_pcb_hi_index(m, e->opts->clip);
	}
	if (two_stats(e, jobs, nj, P_PCB_CLIP_HI, P_PCB_CLIP_LO, key, err) < 0)
		return -1;
	for (size_t s = 0; s < j0->nsrc; s++) {
		p->unit[s].lo = weld_pcb_key_float(key[s][0], 0);
		p->unit[s].hi = weld_pcb_key_float(key[s][1], 0);
		p->rank[s][0] = weld_pcb_thr_index(m, j0->src[s].density);
		p->rank[s][1] = m - 1;
	}
	if (two_stats(e, jobs, nj, P_PCB_BETA_HI, P_PCB_BETA_LO, key, err) < 0)
		return -1;
	for (size_t s = 0; s < j0->nsrc; s++) {
		p->unit[s].thr = weld_pcb_key_float(key[s][0], 1);
		p->unit[s].top = weld_pcb_key_float(key[s][1], 1);
	}
	return 0;
}

/* --scope row: the statistics of the row at offset r of the tile, in
 * memory. */
static void row_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c, size_t r,
		      size_t w, struct weld_pcb_unit *u)
{
	size_t t = (size_t)(c - e->slices);
	uint32_t *keys = e->rank_scratch + t * 4 * e->tile_elems, *tmp = keys + w;

	for (size_t s = 0; s < j->nsrc; s++) {
		const float *d = c->vals + s * e->tile_elems + r;

		for (size_t i = 0; i < w; i++)
			keys[i] = weld_pcb_abs_key(d[i]);
		u[s].lo = weld_pcb_key_float(weld_pcb_kth_key(keys, w, weld_pcb_lo_index(w, e->opts->clip),
							      tmp), 0);
		for (size_t i = 0; i < w; i++)
			keys[i] = weld_pcb_abs_key(d[i]);
		u[s].hi = weld_pcb_key_float(weld_pcb_kth_key(keys, w, weld_pcb_hi_index(w, e->opts->clip),
							      tmp), 0);
	}
	tile_beta(e, j, c, r, w, u);
	for (size_t s = 0; s < j->nsrc; s++) {
		const float *b = c->scratch + (1 + s) * e->tile_elems + r;
		uint32_t top = 0;

		for (size_t i = 0; i < w; i++) {
			keys[i] = weld_pcb_signed_key(b[i]);
			top = keys[i] > top ? keys[i] : top;
		}
		u[s].top = weld_pcb_key_float(top, 1);
		u[s].thr = weld_pcb_key_float(weld_pcb_kth_key(keys, w, weld_pcb_thr_index(w,
								j->src[s].density), tmp), 1);
	}
}

void weld_exec_pcb_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len)
{
	const float *d[WELD_K_MAX_SRC], *beta[WELD_K_MAX_SRC];
	float w[WELD_K_MAX_SRC];
	size_t rl = row_scope(e, j) ? (size_t)row_len(j) : len;

	for (size_t s = 0; s < j->nsrc; s++)
		w[s] = (float)j->src[s].weight;
	for (size_t r = 0; r < len; r += rl) {
		struct weld_pcb_unit row[WELD_K_MAX_SRC];
		const struct weld_pcb_unit *u = e->pcb ? e->pcb->unit : row;

		if (row_scope(e, j)) {
			row_stats(e, j, c, r, rl, row);
			u = row;
		} else {
			tile_beta(e, j, c, r, rl, u);
		}
		for (size_t s = 0; s < j->nsrc; s++) {
			d[s] = c->vals + s * e->tile_elems + r;
			beta[s] = c->scratch + (1 + s) * e->tile_elems + r;
		}
		weld_k_pcb_combine(d, beta, j->nsrc, u, w, c->base + r, (float)j->lambda, rl,
				   c->out + r);
	}
	weld_exec_encode_tile(j->dtype, c->out, e->out_chunk + (g - first) * weld_dtype_size(j->dtype),
			      len);
}
