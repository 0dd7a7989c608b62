/*
 * pcb_tails.h - pcb's clip bounds from one pass that keeps the tails of
 * |delta| (private to lib/engine; see pcb_tails.c).
 */
#ifndef WELD_PCB_TAILS_H
#define WELD_PCB_TAILS_H

#include "kernels.h"

#include <stddef.h>
#include <stdint.h>

struct exec;
struct slice_ctx;

/* One thread's tails: per source the smallest and the largest keys seen
 * (at most cap of each; k = cap / 2 after each compaction). */
struct pcb_tail_thread {
	uint32_t *small, *large;        /* [source][cap] */
	uint32_t *tmp;                  /* cap keys */
	size_t n_small[WELD_K_MAX_SRC], n_large[WELD_K_MAX_SRC];
	int64_t below[WELD_K_MAX_SRC];  /* a key is kept in small if below this */
	int64_t above[WELD_K_MAX_SRC];  /* and in large if above this */
};

struct pcb_tails {
	size_t nsrc;
	uint64_t m, lo_rank, hi_rank;   /* the unit and the wanted ranks */
	size_t k, cap;                  /* keys each tail needs, and room */
	int n_threads;
	struct pcb_tail_thread *th;
	uint32_t *all;                  /* 2 n_threads cap keys: the union, sorted */
};

/* Tails for a unit of m elements with clip fraction clip, or NULL when
 * they would not fit (then the histogram passes find the bounds). */
struct pcb_tails *weld_pcb_tails_new(const struct exec *e, size_t nsrc, uint64_t m, double clip);
void weld_pcb_tails_free(struct pcb_tails *t);
/* The tails of one tile's deltas (slice loop). */
void weld_pcb_tails_tile(struct pcb_tails *t, const struct exec *e, const struct slice_ctx *c,
			 size_t len);
/* After the pass: the keys of |delta| at the two ranks, for source s. */
void weld_pcb_tails_keys(const struct pcb_tails *t, size_t s, uint32_t *lo, uint32_t *hi);

#endif
