/*
 * pcb_hold.c - a pcb unit's inputs held in memory between its passes.
 *
 * pcb passes over a unit two to four times before APPLY (pcb_pass.c).
 * When the unit's inputs, as read from the files, fit the hold the plan
 * grants (plan.c: three quarters of the memory left after the chunk
 * buffers), the first pass reads each super-tile straight into the hold
 * and every later pass and APPLY takes its tiles from there: one read of
 * the files instead of one per pass, and the same bytes by construction.
 *
 * The window pass (pcb_window.c) of a one-job unit also leaves, when they
 * fit beside, flags for APPLY: a bit per element and source, set where
 * beta may exceed the window's cut; where thr >= cut they are a superset
 * of the elements that score, so APPLY computes beta there and takes no
 * bounds.
 *
 * Layout: the unit's jobs one after the other; in a job the base, then
 * each source, nelem elements of its file dtype each; then the flags, per
 * source a word of 64 bits per 64 elements. The buffer is taken once, at
 * the size of the most a unit keeps, and kept over units.
 */
#include "pcb_hold.h"
#include "exec.h"
#include "pcb_window.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_BYTES (2u << 20)

struct pcb_hold {
	unsigned char *buf;
	uint64_t *at;           /* per job of the plan: its offset, UINT64_MAX if not held */
	bool filled;            /* a whole pass has read the unit */
	/* the window's flags of a one-job unit: words per source, after the
	 * inputs (or at the start); whether written, and for which cuts */
	uint64_t *flags;
	const struct weld_job *flags_job;
	size_t words;
	bool flags_done;
	float cut[WELD_K_MAX_SRC];
};

/* The element size of input s of job j (0: the base), 0 if it has none. */
static uint64_t input_es(const weld_plan *p, const struct weld_job *j, size_t s)
{
	int m = s ? j->src[s - 1].model : j->base_model;
	int64_t t = s ? j->src[s - 1].tensor : j->base_tensor;

	if (m < 0)
		return 0;
	return weld_dtype_size(weld_model_tensor(p->models[m], (size_t)t)->dtype);
}

/* The hold's buffer: on huge pages where the system gives them on request
 * (the passes stream through it, and 4 KiB pages would stop the
 * processor's prefetch at every page); NULL if out of memory. */
static unsigned char *hold_alloc(size_t n)
{
	void *b = NULL;

	if (posix_memalign(&b, HUGE_BYTES, n) != 0)
		return NULL;
#ifdef MADV_HUGEPAGE
	(void)madvise(b, (n + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES, MADV_HUGEPAGE);
#endif
	return b;
}

uint64_t weld_pcb_job_inputs_bytes(const weld_plan *p, const struct weld_job *j)
{
	uint64_t b = 0;

	for (size_t s = 0; s <= j->nsrc; s++) {
		uint64_t es = input_es(p, j, s);

		if (es && j->nelem > (UINT64_MAX - b) / es)
			return UINT64_MAX;
		b += j->nelem * es;
	}
	return b;
}

/* Bytes of the inputs of nj jobs, UINT64_MAX if they overflow. */
static uint64_t inputs_bytes(const weld_plan *p, const struct weld_job *const *jobs, size_t nj)
{
	uint64_t b = 0;

	for (size_t i = 0; i < nj; i++) {
		uint64_t one = weld_pcb_job_inputs_bytes(p, jobs[i]);

		if (one > UINT64_MAX - b)
			return UINT64_MAX;
		b += one;
	}
	return b;
}

void weld_pcb_hold_sizes(const weld_plan *p, uint64_t m, size_t nsrc, uint64_t in_bytes,
			 bool one_job, uint64_t grant, uint64_t *inputs, uint64_t *flags)
{
	uint64_t f = (m + 63) / 64 * 8 * nsrc;

	*inputs = in_bytes <= grant ? in_bytes : 0;
	*flags = 0;
	if (one_job && weld_pcb_window_bytes(m, nsrc, weld_plan_threads(p), p->pcb_grant) &&
	    f <= grant - *inputs)
		*flags = f;
}

int weld_pcb_hold_begin(struct exec *e, const struct weld_job *const *jobs, size_t nj)
{
	const weld_plan *p = e->plan;
	struct pcb_hold *h = e->ph;
	uint64_t off = 0, m = 0, in, fl;

	for (size_t i = 0; i < nj; i++)
		m += jobs[i]->nelem;
	weld_pcb_hold_sizes(p, m, jobs[0]->nsrc, inputs_bytes(p, jobs, nj), nj == 1, p->pcb_hold,
			    &in, &fl);
	if (!in && !fl)
		goto out;
	if (!h) {
		if (!(h = calloc(1, sizeof(*h))))
			return -1;
		e->ph = h;
		h->at = malloc(p->njobs * sizeof(*h->at));
		h->buf = hold_alloc((size_t)p->pcb_hold + 8);  /* + the flags' alignment */
		if (!h->at || !h->buf) {
			weld_pcb_hold_free(e);
			return -1;
		}
	}
	for (size_t i = 0; i < p->njobs; i++)
		h->at[i] = UINT64_MAX;
	for (size_t i = 0; in && i < nj; i++) {
		h->at[jobs[i] - p->jobs] = off;
		off += weld_pcb_job_inputs_bytes(p, jobs[i]);
	}
	h->filled = false;
	h->flags_done = false;
	h->flags_job = fl ? jobs[0] : NULL;
	/* the flags after the inputs, on a word boundary */
	h->flags = (uint64_t *)(void *)(h->buf + (in + 7) / 8 * 8);
	h->words = (size_t)((m + 63) / 64);
	return in ? 1 : 0;
out:
	/* a unit that does not fit: nothing of the last one is served */
	if (h) {
		for (size_t i = 0; i < p->njobs; i++)
			h->at[i] = UINT64_MAX;
		h->flags_job = NULL;
	}
	return 0;
}

uint64_t *weld_pcb_hold_flags_out(const struct exec *e, const struct weld_job *j, size_t s,
				  uint64_t g)
{
	const struct pcb_hold *h = e->ph;

	if (!h || h->flags_job != j || h->flags_done)
		return NULL;
	return h->flags + s * h->words + g / 64;
}

void weld_pcb_hold_flags_done(struct exec *e, const float *cut, size_t nsrc)
{
	struct pcb_hold *h = e->ph;

	if (!h || !h->flags_job)
		return;
	h->flags_done = true;
	for (size_t s = 0; s < nsrc; s++)
		h->cut[s] = cut[s];
}

const uint64_t *weld_pcb_hold_flags(const struct exec *e, const struct weld_job *j, size_t s,
				    uint64_t g, float thr)
{
	const struct pcb_hold *h = e->ph;

	/* thr >= cut: every beta above thr is above cut (false for a NaN) */
	if (!h || h->flags_job != j || !h->flags_done || !(thr >= h->cut[s]))
		return NULL;
	return h->flags + s * h->words + g / 64;
}

void weld_pcb_hold_filled(struct exec *e)
{
	if (e->ph)
		e->ph->filled = true;
}

unsigned char *weld_pcb_hold_at(const struct exec *e, const struct weld_job *j, size_t s,
				uint64_t at, bool *filled)
{
	const struct pcb_hold *h = e->ph;
	uint64_t off;

	*filled = false;
	if (!h || (off = h->at[j - e->plan->jobs]) == UINT64_MAX)
		return NULL;
	for (size_t k = 0; k < s; k++)
		off += j->nelem * input_es(e->plan, j, k);
	*filled = h->filled;
	return h->buf + off + at * input_es(e->plan, j, s);
}

bool weld_pcb_hold_serves(const struct exec *e, const struct weld_job *j)
{
	const struct pcb_hold *h = e->ph;

	return h && h->filled && h->at[j - e->plan->jobs] != UINT64_MAX;
}

void weld_pcb_hold_free(struct exec *e)
{
	if (!e->ph)
		return;
	free(e->ph->buf);
	free(e->ph->at);
	free(e->ph);
	e->ph = NULL;
}
