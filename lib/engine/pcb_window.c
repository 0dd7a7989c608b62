/*
 * pcb_window.c - pcb's drop threshold and largest beta (METHODS 12 step 5)
 * over a large unit, from a sample and one pass instead of two histogram
 * passes that need beta at every element.
 *
 * While the clip bounds' high bits are counted, every stride-th delta of
 * each tile is kept (at most SAMPLE_CAP tuples of all sources). Once the
 * clip bounds are known the sample's beta gives, per source, a window of
 * high-16-bit bins that surely holds the threshold's rank if the sample is
 * any good: its rank plus or minus six standard deviations of a sampled
 * quantile. One pass then counts the keys above the window and records
 * those inside it (when twice the sample's share of them fits; else it
 * counts their low 16 bits per thread and bin); only elements whose bounds
 * of beta reach into the window need beta itself (pcb.h), those surely
 * above it are counted. If the rank falls in the window the threshold is
 * selected from the recorded keys or read off the counts; the largest key
 * is the largest beta computed. Otherwise the caller takes the histogram passes:
 * the sample only decides how fast, never what comes out.
 */
#include "exec.h"
#include "hist_pass.h"
#include "pcb_window.h"
#include "pcb_hold.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BINS WELD_HP_BINS
#define WINDOW_MIN (1u << 20)   /* smaller units take the histogram passes */
#define SAMPLE_CAP (1u << 17)   /* tuples of the sample */
#define WIDTH_MAX 32            /* bins of a window */
#define REC_BATCH 2048          /* recorded keys a thread gathers before it adds them to rec */

/* A unit large enough for the histogram passes to cost more, and small
 * enough for uint32 counts per thread. */
static bool big_unit(uint64_t m)
{
	return m >= WINDOW_MIN && m < (1ull << 32);
}

/* What a window holds besides the threads' fine counts. */
static uint64_t fixed_bytes(size_t nsrc, int threads)
{
	return sizeof(struct pcb_window) +
	       (uint64_t)threads * (sizeof(struct pcb_thread) + nsrc * WIDTH_MAX * sizeof(uint64_t)) +
	       (uint64_t)threads * nsrc * (SAMPLE_CAP * sizeof(float) + REC_BATCH * sizeof(uint32_t));
}

uint64_t weld_pcb_window_bytes(uint64_t m, size_t nsrc, int threads, uint64_t grant)
{
	uint64_t fixed = fixed_bytes(nsrc, threads), most = grant - grant / 8;
	uint64_t temps = 2 * SAMPLE_CAP * (sizeof(float) + sizeof(uint32_t));
	uint64_t counts = (uint64_t)threads * nsrc * WIDTH_MAX * BINS * sizeof(uint32_t);
	uint64_t one = (uint64_t)threads * nsrc * BINS * sizeof(uint32_t);

	/* room for the temporaries of plan_window(), freed before the counts
	 * are made, and for counts of one bin at least */
	if (!big_unit(m) || fixed + (temps > one ? temps : one) > most)
		return 0;
	counts = counts < most - fixed ? counts : most - fixed;
	return fixed + (temps > counts ? temps : counts);
}

struct pcb_window *weld_pcb_window_new(const struct exec *e, size_t nsrc, uint64_t m)
{
	struct pcb_window *w;
	uint64_t bytes = weld_pcb_window_bytes(m, nsrc, e->n_threads, e->plan->pcb_grant);

	if (!bytes || !(w = calloc(1, sizeof(*w))))
		return NULL;
	w->nsrc = nsrc;
	w->m = m;
	w->cap = SAMPLE_CAP;
	/* the counts or the recorded keys: what the plan counted */
	w->counts_max = bytes - fixed_bytes(nsrc, e->n_threads);
	for (w->stride = 1; m / w->stride > SAMPLE_CAP; w->stride *= 2)
		;
	w->n_threads = e->n_threads;
	w->sample = malloc(nsrc * (size_t)e->n_threads * w->cap * sizeof(float));
	w->th = calloc((size_t)e->n_threads, sizeof(*w->th));
	if (!w->sample || !w->th) {
		weld_pcb_window_free(w);
		return NULL;
	}
	w->sampling = true;
	return w;
}

void weld_pcb_window_free(struct pcb_window *w)
{
	if (!w)
		return;
	for (int t = 0; w->th && t < w->n_threads; t++) {
		free(w->th[t].batch);
		free(w->th[t].fine);
		free(w->th[t].coarse);
	}
	free(w->th);
	free(w->rec);
	free(w->sample);
	free(w);
}

void weld_pcb_window_sample(struct pcb_window *w, const struct exec *e, const struct slice_ctx *c,
			    size_t len)
{
	int t = omp_get_thread_num();
	uint64_t cnt = (len + w->stride - 1) / w->stride, at = w->th[t].taken;
	float *mine = w->sample + (size_t)t * w->cap;
	size_t per_src = (size_t)w->n_threads * w->cap;

	/* each thread in its own part: nothing shared while the pass runs */
	w->th[t].taken += cnt;
	for (uint64_t k = 0; k < cnt && at + k < w->cap; k++)
		for (size_t s = 0; s < w->nsrc; s++)
			mine[s * per_src + at + k] = c->vals[s * e->tile_elems + k * w->stride];
}

/* The threads' parts of the sample, one after the other (at most cap
 * tuples, which the stride leaves room for): how many. The tuples' order
 * depends on the threads; their set does not, and only the set is used. */
static size_t gather_sample(struct pcb_window *w)
{
	size_t n = 0, per_src = (size_t)w->n_threads * w->cap;

	for (int t = 0; t < w->n_threads; t++) {
		size_t c = w->th[t].taken < w->cap ? (size_t)w->th[t].taken : (size_t)w->cap;

		c = c < w->cap - n ? c : (size_t)w->cap - n;
		for (size_t s = 0; s < w->nsrc; s++)
			memmove(w->sample + s * per_src + n, w->sample + s * per_src + (size_t)t * w->cap,
				c * sizeof(float));
		n += c;
	}
	return n;
}

/* The keys of beta[0..n). */
static void sample_keys(const float *beta, size_t n, uint32_t *keys)
{
	for (size_t i = 0; i < n; i++)
		keys[i] = weld_pcb_beta_key(beta[i]);
}

/* The window of every source from the sample; false if it is too wide or
 * out of memory. */
static bool plan_window(struct pcb_window *w, const struct exec *e, const struct weld_job *j0)
{
	size_t n = gather_sample(w), width = 1, most = 0;
	const struct weld_pcb_unit *u = e->hs->unit;
	const float *d[WELD_K_MAX_SRC];
	float *sum = malloc(2 * n * sizeof(float)), *beta = sum + n;
	uint32_t *keys = malloc(2 * n * sizeof(uint32_t)), hi[WELD_K_MAX_SRC];
	bool ok = sum && keys && n >= 1024;

	for (size_t s = 0; ok && s < w->nsrc; s++)
		d[s] = w->sample + s * (size_t)w->n_threads * w->cap;
	if (ok)
		weld_k_pcb_sum(d, w->nsrc, n, sum);
	for (size_t s = 0; ok && s < w->nsrc; s++) {
		double r = (double)weld_pcb_thr_index(w->m, j0->src[s].density);
		double f = r / (double)w->m, q = f * (double)n;
		double margin = 5 * sqrt((double)n * f * (1 - f)) + 32;
		size_t a = q - margin > 0 ? (size_t)(q - margin) : 0;
		size_t b = q + margin < (double)(n - 1) ? (size_t)(q + margin) : n - 1;
		size_t in = 0;
		float v;

		weld_k_pcb_beta(d[s], sum, w->nsrc, u[s].lo, u[s].hi, n, beta);
		/* the keys of ranks a and b (a select reorders its keys) */
		sample_keys(beta, n, keys);
		w->lo[s] = weld_pcb_kth_key(keys, n, a, keys + n) >> 16;
		sample_keys(beta, n, keys);
		hi[s] = weld_pcb_kth_key(keys, n, b, keys + n) >> 16;
		width = hi[s] - w->lo[s] + 1 > width ? hi[s] - w->lo[s] + 1 : width;
		/* the sample's keys in the window: ranks a and up whose bin is at
		 * most hi's */
		for (size_t i = 0; i < n; i++)
			in += weld_pcb_beta_key(beta[i]) >> 16 <= hi[s];
		most = in - a > most ? in - a : most;
		v = weld_pcb_key_float(w->lo[s] << 16, 1);
		w->cut[s] = v > 0 ? nextafterf(v, 0) : 0.0f;
	}
	free(sum);
	free(keys);
	/* few keys expected in the windows (twice the sample's share): record
	 * them, with room for that many (and as many for the select) */
	w->rec_cap = w->counts_max / sizeof(uint32_t) / (w->nsrc + 1);
	if (ok && 2 * (double)most / (double)n * (double)w->m <= (double)w->rec_cap) {
		uint64_t want = (uint64_t)(2 * (double)most / (double)n * (double)w->m) + 1024;

		/* no more than that: a buffer the allocator can keep from one
		 * unit to the next, not fresh pages every unit */
		w->rec_cap = want < w->rec_cap ? want : w->rec_cap;
		w->record = true;
		for (size_t s = 0; s < w->nsrc; s++) {
			w->hi_key[s] = hi[s] << 16 | 0xFFFF;
			w->over[s] = weld_pcb_key_float(w->hi_key[s], 1);
		}
		w->rec = malloc((w->nsrc + 1) * w->rec_cap * sizeof(uint32_t));
		for (int t = 0; w->rec && t < w->n_threads; t++)
			if (!(w->th[t].batch = malloc(w->nsrc * REC_BATCH * sizeof(uint32_t))))
				return false;
		return w->rec != NULL;
	}
	/* else counts of the threads within the window's share */
	if (!ok || width > WIDTH_MAX ||
	    (uint64_t)w->n_threads * w->nsrc * width * BINS * sizeof(uint32_t) > w->counts_max)
		return false;
	w->width = (uint32_t)width;
	/* the largest value in each window (none past the last bin) */
	for (size_t s = 0; s < w->nsrc; s++)
		w->over[s] = w->lo[s] + width <= 0xFFFF
			? weld_pcb_key_float((uint32_t)((w->lo[s] + width) << 16) - 1, 1) : NAN;
	for (int t = 0; t < w->n_threads; t++)
		if (!(w->th[t].fine = calloc(w->nsrc * width * BINS, sizeof(uint32_t))) ||
		    !(w->th[t].coarse = calloc(w->nsrc * WIDTH_MAX, sizeof(uint64_t))))
			return false;
	return true;
}

/* n keys of source s into rec (the keys' order depends on the threads;
 * only their set is used), or rec_full when they do not fit. */
static void add_keys(struct pcb_window *w, size_t s, const uint32_t *keys, size_t n)
{
	uint64_t at;

#pragma omp atomic capture
	{
		at = w->rec_n[s];
		w->rec_n[s] += n;
	}
	if (at + n <= w->rec_cap)
		memcpy(w->rec + s * w->rec_cap + at, keys, n * sizeof(*keys));
	else
#pragma omp atomic write
		w->rec_full = true;
}

/* Thread t's batch of source s into rec. */
static void flush_keys(struct pcb_window *w, size_t s, struct pcb_thread *t)
{
	add_keys(w, s, t->batch + s * REC_BATCH, t->n_batch[s]);
	t->n_batch[s] = 0;
}

/* Record mode: the keys of beta[0..m) in source s's window go into rec
 * (through keys, which holds m), those above it are counted. */
static void record_keys(struct pcb_window *w, size_t s, const float *beta, size_t m,
			uint32_t *keys, struct pcb_thread *t)
{
	uint32_t lo = w->lo[s] << 16, hi = w->hi_key[s], top = t->top[s];
	uint64_t above = 0;
	size_t n = 0;

	for (size_t i = 0; i < m; i++) {
		uint32_t k = weld_pcb_beta_key(beta[i]);

		top = k > top ? k : top;
		keys[n] = k;
		n += k >= lo && k <= hi;
		above += k > hi;
	}
	/* gathered per thread, added to rec a batch at a time: the threads
	 * share no cache line while the pass runs */
	if (t->n_batch[s] + n > REC_BATCH)
		flush_keys(w, s, t);
	if (n > REC_BATCH)
		add_keys(w, s, keys, n);
	else
		memcpy(t->batch + s * REC_BATCH + t->n_batch[s], keys, n * sizeof(*keys));
	t->n_batch[s] += n <= REC_BATCH ? (uint32_t)n : 0;
	t->top[s] = top;
	t->above[s] += above;
	t->inside[s] += n;
}

/* Count mode: the keys of beta[0..m) in source s's window are counted
 * by their low 16 bits, those above it counted. */
static void count_keys(struct pcb_window *w, size_t s, const float *beta, size_t m,
		       struct pcb_thread *t)
{
	uint32_t *fine = t->fine + s * w->width * BINS, lo = w->lo[s], top = t->top[s];
	uint64_t *coarse = t->coarse + s * WIDTH_MAX, above = 0, inside = 0;

	for (size_t i = 0; i < m; i++) {
		uint32_t k = weld_pcb_beta_key(beta[i]), b = (k >> 16) - lo;

		top = k > top ? k : top;
		if (b < w->width) {
			fine[b * BINS + (k & 0xFFFF)]++;
			coarse[b]++;
			inside++;
		} else {
			above += (k >> 16) > lo;
		}
	}
	t->top[s] = top;
	t->above[s] += above;
	t->inside[s] += inside;
}

void weld_pcb_window_tile(struct pcb_window *w, const struct exec *e, const struct weld_job *j,
			  struct slice_ctx *c, uint64_t g, size_t len)
{
	struct pcb_thread *t = &w->th[omp_get_thread_num()];
	const float *d[WELD_K_MAX_SRC];
	size_t te = e->tile_elems;
	float *sum = c->scratch, *tmp = c->scratch + (1 + j->nsrc) * te;
	uint32_t *idx = (uint32_t *)(void *)(c->scratch + (2 + j->nsrc) * te);

	for (size_t s = 0; s < j->nsrc; s++)
		d[s] = c->vals + s * te;
	weld_k_pcb_sum(d, j->nsrc, len, sum);
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_pcb_unit *u = &e->hs->unit[s];
		uint64_t above = 0;
		/* nothing exceeds a NaN, the largest of all (pcb.h) */
		float top = t->top[s] == WELD_PCB_NAN_KEY ? INFINITY : weld_pcb_key_float(t->top[s], 1);
		size_t m = weld_k_pcb_window_candidates(d[s], sum, &u->bound, u->lo, u->hi, w->cut[s],
							w->over[s], top, len, idx, &above,
							weld_pcb_hold_flags_out(e, j, s, g));

		weld_k_pcb_beta_at(d[s], sum, j->nsrc, u->lo, u->hi, idx, m, weld_exec_pcb_memo(e, s),
				   tmp);
		/* those surely above the window, counted without beta */
		t->above[s] += above;
		if (w->record)
			record_keys(w, s, tmp, m, idx, t);
		else
			count_keys(w, s, tmp, m, t);
	}
}

/* The key of rank r (ascending) of source s, if the window holds it. */
static bool pick(const struct pcb_window *w, size_t s, uint64_t r, uint32_t *key)
{
	uint64_t above = 0, inside = 0, below;

	for (int t = 0; t < w->n_threads; t++) {
		above += w->th[t].above[s];
		inside += w->th[t].inside[s];
	}
	below = w->m - above - inside;
	if (r < below || r - below >= inside)
		return false;
	r -= below;
	if (w->record) {
		if (w->rec_full)
			return false;
		*key = weld_pcb_kth_key(w->rec + s * w->rec_cap, (size_t)inside, (size_t)r,
					w->rec + w->nsrc * w->rec_cap);
		return true;
	}
	for (uint32_t b = 0; b < w->width; b++) {
		uint64_t in_bin = 0;

		for (int t = 0; t < w->n_threads; t++)
			in_bin += w->th[t].coarse[s * WIDTH_MAX + b];
		if (r >= in_bin) {
			r -= in_bin;
			continue;
		}
		for (uint32_t low = 0; low < BINS; low++) {
			uint64_t cnt = 0;

			for (int t = 0; t < w->n_threads; t++)
				cnt += w->th[t].fine[(s * w->width + b) * BINS + low];
			if (r < cnt) {
				*key = (w->lo[s] + b) << 16 | low;
				return true;
			}
			r -= cnt;
		}
	}
	return false;
}

int weld_pcb_window_stats(struct pcb_window *w, struct exec *e,
			  const struct weld_job *const *jobs, size_t nj, struct weld_error *err)
{
	uint32_t thr[WELD_K_MAX_SRC], top[WELD_K_MAX_SRC];

	if (!plan_window(w, e, jobs[0]))
		return 0;
	w->counting = true;
	if (weld_exec_pcb_pass(e, jobs, nj, P_PCB_BETA_LO, err) < 0)
		return -1;
	w->counting = false;
	for (int t = 0; w->record && t < w->n_threads; t++)
		for (size_t s = 0; s < w->nsrc; s++)
			flush_keys(w, s, &w->th[t]);
	weld_pcb_hold_flags_done(e, w->cut, w->nsrc);
	for (size_t s = 0; s < w->nsrc; s++) {
		if (!pick(w, s, weld_pcb_thr_index(w->m, jobs[0]->src[s].density), &thr[s]))
			return 0;
		top[s] = 0;
		for (int t = 0; t < w->n_threads; t++)
			top[s] = w->th[t].top[s] > top[s] ? w->th[t].top[s] : top[s];
	}
	for (size_t s = 0; s < w->nsrc; s++) {
		e->hs->unit[s].thr = weld_pcb_key_float(thr[s], 1);
		e->hs->unit[s].top = weld_pcb_key_float(top[s], 1);
	}
	return 1;
}
