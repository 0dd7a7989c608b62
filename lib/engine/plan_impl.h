/*
 * plan_impl.h - the inside of a weld_plan, shared by plan.c (building and
 * checking) and the engine's files (execution, see exec.h).
 */
#ifndef WELD_PLAN_IMPL_H
#define WELD_PLAN_IMPL_H

#include "merge.h"
#include "select.h"

#include <regex.h>

/* Sums in double are taken per block of WELD_BLOCK elements from the start
 * of their unit, then over blocks in order: the same result for any chunk
 * size and thread count. Chunks are whole blocks. */
#define WELD_BLOCK 4096
#define WELD_MIN_CHUNK (16 * WELD_BLOCK)
#define WELD_SUPER (16 * WELD_BLOCK)  /* elements read per input per pread */

struct weld_plan {
	struct weld_merge_opts o;
	weld_model **models;
	size_t nmodels;
	struct weld_job *jobs;
	size_t njobs, cap;     /* jobs, and room for them */
	uint64_t chunk;        /* elements per chunk */
	uint64_t tile;         /* tile capacity of a thread (elements) */
	uint64_t super;        /* elements read per input per pread */
	int slices;            /* a chunk's slices (>= threads) */
	uint64_t raw_es;       /* largest input element size */
	int maxsel;            /* most top-k selections per source of any job */
	uint64_t record_bytes; /* keys a statistics pass may keep (select_pass.c) */
	uint64_t drop_stride;  /* dare --rescale l1: bytes of draws kept per source */
	uint64_t rec_bytes;      /* sce: room for the variances it records (sce_pass.c) */
	uint64_t memory;       /* bytes of buffers at that chunk size */
	uint64_t pcb_grant;    /* pcb: the most its statistics may hold (pcb_pass.c) */
	uint64_t pcb_hold;     /* pcb: the most a unit holds between its passes (pcb_hold.c), 0: none */
	uint64_t input_bytes;
	uint64_t bytes_read;     /* over all passes: estimated, then counted by the execution */
	bool finished;
	bool ranks;              /* some job ranks its rows (della): rank_pass.c's buffers */
	bool hist_stats;         /* order statistics by histograms (pcb, sce): hist_pass.c's buffers */
	regex_t svd_exclude;     /* --svd-exclude, compiled when svd_exclude_set */
	bool svd_exclude_set;
	uint64_t matrix_bytes;   /* the largest whole-matrix job's memory (svd_pass.c), */
	size_t matrix_job;       /* and its job */
	size_t matrices;         /* whole-matrix jobs computed at once (svd_pass.c) */
};

/* sce_pass.c and arcee_pass.c: the least room for the keys they record
 * (those in ranges around the wanted ranks, or equal to sce's threshold)
 * instead of passing over the tensor again; the plan may add up to
 * WELD_REC_MORE (rec_bytes). */
#define WELD_REC_BYTES (1u << 20)
#define WELD_REC_MORE (15u << 20)

/* rank_pass.c: bytes of della's keep flags for job j, one bit an element,
 * each row from a byte of its own. */
uint64_t weld_della_bit_bytes(const struct weld_job *j);

/* svd_pass.c: is job j a whole-matrix job (an SVD method's 2-D tensor not
 * excluded by --svd-exclude)? Its memory, UINT64_MAX if too large. */
bool weld_plan_svd_matrix(const weld_plan *p, const struct weld_job *j);
uint64_t weld_svd_job_bytes(const weld_plan *p, const struct weld_job *j);
/* How many whole-matrix jobs run at once when the streaming buffers need
 * at least stream_min bytes: up to the threads, as many as --max-memory
 * holds counted at matrix_bytes each, at least 1 (0 when there is none). */
size_t weld_plan_svd_at_once(const weld_plan *p, uint64_t stream_min);

/* plan_passes.c: the most bytes pcb's statistics hold at once beside the
 * buffers (window, tails and memos: pcb_window.h), within p->pcb_grant; 0
 * without pcb. */
uint64_t weld_plan_pcb_bytes(const weld_plan *p);
/* plan_passes.c: the most bytes a pcb unit holds in memory between its
 * passes within grant (its inputs, the window's flags: pcb_hold.c); 0 if
 * none. */
uint64_t weld_plan_pcb_hold(const weld_plan *p, uint64_t grant);

/* Threads the execution uses (the option, else every core). */
int weld_plan_threads(const weld_plan *p);

/* Whether della's drop by --rescale inverse runs, with its memos of p per
 * thread (rank.h). */
bool weld_plan_della_memos(const weld_plan *p);

void weld_plan_warn(const weld_plan *p, const char *fmt, ...) WELD_PRINTF(2, 3);

/* fp8_out.c: the most memory the writer's FP8 encoding holds at once, one
 * band of blocks (values, codes and scales) of the widest FP8 job; 0 if
 * none. */
uint64_t weld_plan_fp8_band_bytes(const weld_plan *p);

#endif
