/*
 * pcb_window.h - pcb's drop threshold from a sample and one pass (private
 * to lib/engine; see pcb_window.c).
 */
#ifndef WELD_PCB_WINDOW_H
#define WELD_PCB_WINDOW_H

#include "kernels.h"
#include "pcb.h"

#include <stdbool.h>
#include <stdint.h>

struct exec;
struct weld_job;
struct slice_ctx;
struct weld_error;

/* What one thread counts in the window pass. */
struct pcb_thread {
	uint64_t above[WELD_K_MAX_SRC];     /* keys above the window */
	uint64_t inside[WELD_K_MAX_SRC];    /* keys in it */
	uint32_t top[WELD_K_MAX_SRC];       /* the largest key of the candidates */
	uint64_t taken;                     /* tuples of the sample it took */
	uint32_t *batch;                    /* [source][REC_BATCH] recorded keys not yet in rec */
	uint32_t n_batch[WELD_K_MAX_SRC];
	uint32_t *fine;                     /* [source][bin - lo][low 16 bits] counts */
	uint64_t *coarse;                   /* [source][bin - lo] counts */
};

struct pcb_window {
	size_t nsrc;
	uint64_t m;                 /* elements of the unit */
	/* the sample, taken while the clip bounds' high bits are counted:
	 * tuples of nsrc deltas at every stride-th element of a tile, each
	 * thread into its own cap of them ([source][thread][cap]) */
	bool sampling;
	uint64_t stride, cap;
	float *sample;
	/* the window: per source the bins [lo, lo + width) of the keys' high
	 * 16 bits, and the cut below which no beta is in it */
	bool counting;
	uint32_t lo[WELD_K_MAX_SRC];
	uint32_t width;
	uint64_t counts_max;        /* bytes the threads' counts may take */
	/* or, when few keys are expected in the windows, the keys themselves:
	 * per source [lo << 16, hi_key], up to rec_cap of them in rec (then
	 * rec_cap more for the select), rec_n[s] so far */
	bool record, rec_full;
	uint32_t hi_key[WELD_K_MAX_SRC];
	uint32_t *rec;
	uint64_t rec_cap, rec_n[WELD_K_MAX_SRC];
	float cut[WELD_K_MAX_SRC];
	float over[WELD_K_MAX_SRC];     /* the largest value in the window */
	struct pcb_thread *th;      /* one per thread */
	int n_threads;
};

/*
 * What pcb holds per unit comes out of the plan's grant (plan_impl.h):
 * the tails and the memos at most a sixteenth of it each, the window the
 * rest;
 * each is left out (histogram passes, or a memo per tile) when it does not
 * fit. The functions below give the most bytes each holds at once, 0 when
 * it is left out.
 */
uint64_t weld_pcb_window_bytes(uint64_t m, size_t nsrc, int threads, uint64_t grant);
uint64_t weld_pcb_tails_bytes(uint64_t m, size_t nsrc, int threads, double clip, uint64_t grant);
uint64_t weld_pcb_memo_bytes(int threads, size_t nsrc, uint64_t grant);
/* The passes over a unit of m elements, APPLY included: lo if the
 * sample's guess holds, hi if not. */
void weld_pcb_passes(uint64_t m, double clip, size_t nsrc, int threads, uint64_t grant, int *lo,
		     int *hi);
/* This thread's memo of intra for source s (pcb_pass.c), or NULL. */
struct weld_pcb_memo *weld_exec_pcb_memo(const struct exec *e, size_t s);
/* A window for a unit of m elements and nsrc sources, or NULL when it does
 * not fit or is out of memory. */
struct pcb_window *weld_pcb_window_new(const struct exec *e, size_t nsrc, uint64_t m);
void weld_pcb_window_free(struct pcb_window *w);
/* In the clip bounds' HI pass: sample the tile's deltas. */
void weld_pcb_window_sample(struct pcb_window *w, const struct exec *e, const struct slice_ctx *c,
			    size_t len);
/* The thresholds of every source (p->unit[s].thr and top) from the sample
 * and one pass over the unit; 1 if found, 0 if the sample's guess missed
 * (then nothing is set), -1 on a read error. */
int weld_pcb_window_stats(struct pcb_window *w, struct exec *e,
			  const struct weld_job *const *jobs, size_t nj, struct weld_error *err);
/* The window pass over the tile at flat index g (slice loop); the
 * candidates' flags kept for APPLY when the unit holds them (pcb_hold.c). */
void weld_pcb_window_tile(struct pcb_window *w, const struct exec *e, const struct weld_job *j,
			  struct slice_ctx *c, uint64_t g, size_t len);

#endif
