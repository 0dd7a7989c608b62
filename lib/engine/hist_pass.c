/*
 * hist_pass.c - the histogram passes of exact order statistics (see
 * hist_pass.h): buffers, one pass over a unit, picking bins and keys.
 */
#include "exec.h"
#include "hist_pass.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BINS WELD_HP_BINS

int weld_exec_hist_alloc(struct exec *e)
{
	size_t width = e->max_src < 2 ? 2 : e->max_src, per = width * 2 * BINS;
	struct hist_exec *h;

	if (!e->plan->hist_stats)
		return 0;
	if (!(h = e->hs = calloc(1, sizeof(*h))))
		return -1;
	h->width = width;
	h->hist = calloc(per, sizeof(uint64_t));
	h->thread_hist = calloc((size_t)e->n_threads, sizeof(*h->thread_hist));
	h->thread_count = calloc((size_t)e->n_threads, sizeof(uint64_t));
	h->thread_below = calloc((size_t)e->n_threads * WELD_HP_RANGES, sizeof(uint64_t));
	h->eq_run = calloc((size_t)e->n_slices, sizeof(uint64_t));
	if (!h->hist || !h->thread_hist || !h->thread_count || !h->thread_below || !h->eq_run)
		return -1;
	for (int t = 0; t < e->n_threads; t++)
		if (!(h->thread_hist[t] = calloc(per, sizeof(uint32_t))))
			return -1;
	return 0;
}

void weld_exec_hist_free(struct exec *e)
{
	struct hist_exec *h = e->hs;

	if (!h)
		return;
	for (int t = 0; h->thread_hist && t < e->n_threads; t++)
		free(h->thread_hist[t]);
	free(h->thread_hist);
	free(h->thread_count);
	free(h->thread_below);
	free(h->eq_run);
	free(h->eq_rec);
	free(h->kl);
	free(h->hist);
	free(h);
	e->hs = NULL;
}

uint32_t *weld_exec_hist_mine(struct exec *e)
{
	return e->hs->thread_hist[omp_get_thread_num()];
}

/* Elements a pass hands to the team at once, at most: with the 2^31 that
 * may be pending before a fold, no thread's uint32 count can wrap. */
#define HIST_BATCH (1ull << 30)

/* Add the threads' counts to the totals and clear them. */
static void fold(struct exec *e, size_t nsrc)
{
	struct hist_exec *h = e->hs;

	for (int t = 0; t < e->n_threads; t++) {
		uint32_t *th = h->thread_hist[t];

		for (size_t i = 0; i < nsrc * 2 * BINS; i++) {
			h->hist[i] += th[i];
			th[i] = 0;
		}
	}
	h->pending = 0;
}

int weld_exec_hist_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			int pass, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	size_t nsrc = jobs[0]->nsrc < h->width ? h->width : jobs[0]->nsrc;

	memset(h->hist, 0, nsrc * 2 * BINS * sizeof(uint64_t));
	memset(h->thread_count, 0, (size_t)e->n_threads * sizeof(uint64_t));
	memset(h->thread_below, 0, (size_t)e->n_threads * WELD_HP_RANGES * sizeof(uint64_t));
	for (size_t i = 0; i < nj; i++) {
		/* with rows in memory, chunks are whole groups of 8 rows */
		uint64_t g = row_scope(e, jobs[i]) ? 8 * row_len(jobs[i]) : 1;
		uint64_t step = e->chunk_elems / g * g;
		/* the counts are per thread, whatever slice it takes: the chunks
		 * of a batch go to the team at once */
		uint64_t batch = (HIST_BATCH > step ? HIST_BATCH / step : 1) * step;

		for (uint64_t first = 0; first < jobs[i]->nelem; first += batch) {
			uint64_t n = jobs[i]->nelem - first;

			n = n < batch ? n : batch;
			if (weld_exec_run_pass(e, jobs[i], first, n, step, (enum pass)pass, err) < 0)
				return -1;
			weld_exec_progress(e, jobs[i], sampled(pass) ? n / SAMPLE_STRIDE : n);
			/* uint32 per-thread counts: fold them in before they could wrap */
			if ((h->pending += n) > (1ull << 31))
				fold(e, nsrc);
		}
	}
	fold(e, nsrc);
	return 0;
}

int weld_exec_hist_sample(struct exec *e, const struct weld_job *j, int pass, uint64_t *ns,
			  uint64_t *count, struct weld_error *err)
{
	struct hist_exec *h = e->hs;

	*ns = *count = 0;
	e->sample_at = 0;       /* the tensor is the sample's unit */
	if (weld_exec_hist_pass(e, &j, 1, pass, err) < 0)
		return -1;
	for (uint32_t b = 0; b < BINS; b++)
		*ns += h->hist[b];
	for (int t = 0; t < e->n_threads; t++)
		*count += h->thread_count[t];
	return 0;
}

uint64_t weld_exec_hist_bins_around(const struct exec *e, double rank, double margin,
				    uint32_t *lo, uint32_t *hi)
{
	const uint64_t *hs = e->hs->hist;
	uint64_t cum = 0, in = 0;
	uint32_t b = 0, t;

	while (b < BINS - 1 && (double)(cum + hs[b]) <= rank - margin)
		cum += hs[b++];
	for (t = b; t < BINS - 1 && (double)(cum + in + hs[t]) <= rank + margin; t++)
		in += hs[t];
	*lo = b;
	*hi = t;
	return in + hs[t];
}

void weld_exec_hist_pick_bin(struct exec *e, size_t from, size_t s, int q)
{
	struct hist_exec *h = e->hs;
	const uint64_t *hs = h->hist + from * 2 * BINS;
	uint64_t below = 0;
	uint32_t b = 0;

	while (b < BINS - 1 && below + hs[b] <= h->rank[s][q])
		below += hs[b++];
	h->bin[s][q] = b;
	h->rank[s][q] -= below;
	h->below[s][q] = below;
}

void weld_exec_hist_pick_bins(struct exec *e, size_t nsrc, int nslots)
{
	for (size_t s = 0; s < nsrc; s++)
		for (int q = 0; q < nslots; q++)
			weld_exec_hist_pick_bin(e, s, s, q);
}

uint32_t weld_exec_hist_pick_key(struct exec *e, size_t s, int q)
{
	struct hist_exec *h = e->hs;
	const uint64_t *hs = h->hist + (s * 2 + (size_t)q) * BINS;
	uint64_t below = 0;
	uint32_t b = 0;

	while (b < BINS - 1 && below + hs[b] <= h->rank[s][q])
		below += hs[b++];
	h->below[s][q] += below;
	h->equal[s][q] = hs[b];
	return h->bin[s][q] << 16 | b;
}

uint32_t *weld_exec_hist_records(struct exec *e)
{
	struct hist_exec *h = e->hs;

	if (!h->eq_rec)
		h->eq_rec = malloc(e->plan->rec_bytes);
	return h->eq_rec;
}

uint32_t weld_exec_hist_key_at(struct exec *e, const uint32_t *keys, size_t stride, size_t n,
			       uint32_t lo, uint32_t hi, uint64_t r, uint64_t *below,
			       uint64_t *equal)
{
	uint64_t *hs = e->hs->hist, *low = e->hs->hist + BINS, under = 0;
	uint32_t b = 0, l = 0;

	memset(hs, 0, 2 * BINS * sizeof(*hs));
	for (size_t i = 0; i < n; i++) {
		uint32_t k = keys[i * stride];

		hs[k >> 16] += k >= lo && k <= hi;
	}
	while (b < BINS - 1 && under + hs[b] <= r)
		under += hs[b++];
	for (size_t i = 0; i < n; i++) {
		uint32_t k = keys[i * stride];

		low[k & 0xFFFF] += k >> 16 == b && k >= lo && k <= hi;
	}
	while (l < BINS - 1 && under + low[l] <= r)
		under += low[l++];
	*below = under;
	*equal = low[l];
	return b << 16 | l;
}
