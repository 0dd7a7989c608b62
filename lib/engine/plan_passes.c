/*
 * plan_passes.c - how many times the execution reads each job's inputs,
 * for `weld plan` (the counts engine.c's passes make; see exec.h).
 */
#include "plan_impl.h"
#include "method.h"
#include "pcb_hold.h"
#include "pcb_window.h"

/* pcb's unit: the tensor, or with --scope model every merged tensor. */
static uint64_t pcb_unit(const weld_plan *p, const struct weld_job *j)
{
	uint64_t m = 0;

	if (p->o.scope != WELD_SCOPE_MODEL)
		return j->nelem;
	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].method != WELD_METHOD_COPY)
			m += p->jobs[i].nelem;
	return m;
}

/* The bytes of the inputs of job j's pcb unit, UINT64_MAX if they overflow. */
static uint64_t pcb_unit_bytes(const weld_plan *p, const struct weld_job *j)
{
	uint64_t b = 0;

	if (p->o.scope != WELD_SCOPE_MODEL)
		return weld_pcb_job_inputs_bytes(p, j);
	for (size_t i = 0; i < p->njobs; i++) {
		uint64_t one;

		if (p->jobs[i].method == WELD_METHOD_COPY)
			continue;
		one = weld_pcb_job_inputs_bytes(p, &p->jobs[i]);
		if (one > UINT64_MAX - b)
			return UINT64_MAX;
		b += one;
	}
	return b;
}

/* Whether job j's pcb unit is held in memory between its passes. */
static bool pcb_held(const weld_plan *p, const struct weld_job *j)
{
	return p->pcb_hold && pcb_unit_bytes(p, j) <= p->pcb_hold;
}

uint64_t weld_plan_pcb_hold(const weld_plan *p, uint64_t grant)
{
	uint64_t most = 0;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		uint64_t in, flags;

		if (!weld_method_pcb(j->method) || weld_method_row_units(&p->o, j->method))
			continue;
		weld_pcb_hold_sizes(p, pcb_unit(p, j), j->nsrc, pcb_unit_bytes(p, j),
				    p->o.scope != WELD_SCOPE_MODEL, grant, &in, &flags);
		most = in + flags > most ? in + flags : most;
	}
	return most;
}

void weld_plan_job_passes(const weld_plan *p, size_t i, int *lo, int *hi)
{
	const struct weld_job *j = &p->jobs[i];
	bool row = weld_method_row_units(&p->o, j->method);
	int n = 1;

	*lo = *hi = 1;
	if (j->method == WELD_METHOD_COPY)
		return;
	if (j->method == WELD_METHOD_SLERP)
		n++;            /* the dot products */
	if (weld_method_l1_rescale(&p->o, j->method) && !row)
		n++;            /* dare's L1 sums */
	if (weld_method_rank_drop(j->method) && p->o.rescale == WELD_RESCALE_L1)
		n++;            /* della's L1 sums (its ranks are taken in memory, row by row) */
	*lo = *hi = n;
	/* pcb: passes over the unit; one read when it is held in memory */
	if (weld_method_pcb(j->method) && !row && !pcb_held(p, j))
		weld_pcb_passes(pcb_unit(p, j), p->o.clip, j->nsrc, weld_plan_threads(p), p->pcb_grant,
				lo, hi);
	if (weld_method_arcee(j->method) && j->ndim > 0) {
		/* a 1/16 sample and one pass that records the keys near the
		 * quantiles; histograms of the importance's high, then low
		 * bits when the ranges do not fit (3) or a guess misses (4) */
		*lo = 2;
		*hi = 4;
	}
	if (weld_method_sce(j->method)) {
		double tau = p->o.select_topk;

		/* a 1/16 sample and one pass that records the variances near
		 * the threshold and takes the energies (sce_pass.c); when the
		 * guess misses, two histogram passes for the threshold, the
		 * second taking the energies when the threshold's bin can be
		 * recorded, else a pass for the energies, and a counting pass
		 * before each of the last two when the threshold splits more
		 * equal variances than it records; nothing but APPLY when
		 * nothing is kept */
		*lo = tau <= 0 ? 1 : 2;
		*hi = tau <= 0 ? 1 : tau < 1 ? 7 : 2;
	}
	if (weld_job_selections(&p->o, j) && !row) {
		/* a 1/16 sample and one pass that records the keys near the
		 * threshold (when they do not fit, the pass stops there and a
		 * second look at the sample narrows the range for another); when
		 * the guess misses, passes over the high and the low bits and one
		 * counting the elements equal to the threshold */
		*lo = n + 1;
		*hi = n + 4;
	}
}

uint64_t weld_plan_pcb_bytes(const weld_plan *p)
{
	int threads = weld_plan_threads(p);
	uint64_t most = 0;
	size_t nsrc = 0;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		uint64_t m, b;

		if (!weld_method_pcb(j->method) || weld_method_row_units(&p->o, j->method))
			continue;
		m = pcb_unit(p, j);
		b = weld_pcb_window_bytes(m, j->nsrc, threads, p->pcb_grant) +
		    weld_pcb_tails_bytes(m, j->nsrc, threads, p->o.clip, p->pcb_grant);
		most = b > most ? b : most;
		nsrc = j->nsrc > nsrc ? j->nsrc : nsrc;
	}
	return nsrc ? most + weld_pcb_memo_bytes(threads, nsrc, p->pcb_grant) : 0;
}
