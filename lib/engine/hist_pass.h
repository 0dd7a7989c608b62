/*
 * hist_pass.h - exact order statistics of a tensor-sized quantity (|delta|,
 * pcb's beta, sce's variance) from two histogram passes over the unit,
 * shared by pcb_pass.c and sce_pass.c (private to lib/engine).
 *
 * Each source has two statistic slots. A HI pass counts the high 16 bits
 * of the keys (one histogram per source, slot 0); the wanted ranks (0-based,
 * ascending) then give each slot's bin; a LO pass counts the low 16 bits of
 * the keys in each slot's bin; the rank inside the bin gives the key.
 * Counts are integers, kept per thread and folded in any order: the result
 * does not depend on threads or chunks, and plateaus of equal keys cost
 * nothing more.
 */
#ifndef WELD_HIST_PASS_H
#define WELD_HIST_PASS_H

#include "kernels.h"
#include "pcb.h"

#include <stdbool.h>

#define WELD_HP_BINS 65536
#define WELD_HP_RANGES 3

struct exec;
struct weld_job;
struct weld_error;

struct hist_exec {
	uint32_t **thread_hist;         /* per thread: max_src * 2 histograms */
	uint64_t *hist;                 /* their totals */
	uint64_t *thread_count;         /* per thread: a count the pass keeps (sce: zeros) */
	/* per thread, WELD_HP_RANGES each: keys below recorded ranges (sce's
	 * one, arcee_fusion's three) */
	uint64_t *thread_below;
	uint32_t bin[WELD_K_MAX_SRC][2];     /* after a HI pass: the bin of each slot */
	uint64_t rank[WELD_K_MAX_SRC][2];    /* the wanted rank; after HI, inside its bin */
	uint64_t pending;               /* elements counted in the threads' histograms */
	size_t width;                   /* sources the histograms are for (at least 2) */
	/* after a LO pass: keys below each slot's key, and equal to it */
	uint64_t below[WELD_K_MAX_SRC][2], equal[WELD_K_MAX_SRC][2];
	/* what the methods found */
	struct weld_pcb_unit unit[WELD_K_MAX_SRC];   /* pcb */
	uint32_t thr;                   /* sce: key of the k-th largest variance */
	uint64_t keep_equal, n_equal;   /* sce: of the keys equal to it, kept and all */
	bool keep_all, keep_none;       /* sce: no selection, or nothing kept */
	uint64_t *eq_run;               /* sce: per slice, equal keys seen before its next element */
	uint64_t eq_seen;               /* sce: equal keys in the chunks before */
	/* sce: variances recorded by a pass when they fit (sce_pass.c): those
	 * in the threshold's bin, or those equal to the threshold; position,
	 * key and squares of each */
	uint32_t *eq_rec;
	size_t eq_n;
	uint64_t eq_cut;                /* the equal ones kept are those before it */
	bool bin_record;                /* the LO pass records a range of keys and sums */
	uint32_t rec_lo, rec_hi;        /* that range's first and last keys */
	bool eq_record;                 /* the energies' pass records the equal ones */
	bool eq_known;                  /* APPLY keeps the equal ones before eq_cut */
	float a[WELD_K_MAX_SRC];     /* sce: each model's share */
	double fence;                   /* arcee_fusion: Q(.5) + 1.5 (Q(.75) - Q(.25)) */
	uint32_t range_lo[3], range_hi[3];      /* arcee_fusion: the keys recorded */
	/* arcee_fusion: each row's float(kl), taken in the first pass and
	 * read by the others (kl_rows > 0: rows of the current tensor) */
	float *kl;
	uint64_t kl_rows, kl_cap;
	bool kl_known;
};

/* Buffers (when the plan needs them; -1 if out of memory), and their end. */
int weld_exec_hist_alloc(struct exec *e);
void weld_exec_hist_free(struct exec *e);
/* One pass over every job of the unit with the totals cleared first and
 * the threads' counts folded in at the end. */
int weld_exec_hist_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			int pass, struct weld_error *err);
/* A pass over the sample (sample.h) of job j's tensor, its own unit: the
 * keys counted in the histogram of source 0 into *ns, and the threads'
 * thread_count into *count. */
int weld_exec_hist_sample(struct exec *e, const struct weld_job *j, int pass, uint64_t *ns,
			  uint64_t *count, struct weld_error *err);
/* After a sample's pass: the bins [*lo, *hi] of the histogram of source
 * 0 that hold its ranks rank - margin to rank + margin; returns the keys
 * they hold. */
uint64_t weld_exec_hist_bins_around(const struct exec *e, double rank, double margin,
				    uint32_t *lo, uint32_t *hi);
/* After a HI pass: the bin of each slot's rank (nslots slots of nsrc
 * sources), and the rank inside it. */
void weld_exec_hist_pick_bins(struct exec *e, size_t nsrc, int nslots);
/* The same for slot q of source s from the HI histogram of source from. */
void weld_exec_hist_pick_bin(struct exec *e, size_t from, size_t s, int q);
/* After a LO pass: the key of slot q of source s (and how many keys are
 * below it and equal to it, in below[s][q] and equal[s][q]). */
uint32_t weld_exec_hist_pick_key(struct exec *e, size_t s, int q);
/* This thread's histograms (inside the slice loop). */
uint32_t *weld_exec_hist_mine(struct exec *e);
/* The record room (the plan's rec_bytes, eq_rec), taken at the first call
 * of an execution; NULL if out of memory. */
uint32_t *weld_exec_hist_records(struct exec *e);
/* Of n records of stride words from keys (a key in the first word of
 * each), those whose key lies in [lo, hi]: the key at rank r (0-based,
 * ascending) among them, and in *below and *equal how many of them lie
 * below it and equal it. By histograms of the high, then the low 16 bits,
 * in the room of the totals. */
uint32_t weld_exec_hist_key_at(struct exec *e, const uint32_t *keys, size_t stride, size_t n,
			       uint32_t lo, uint32_t hi, uint64_t r, uint64_t *below,
			       uint64_t *equal);

#endif
