/*
 * exec.h - the state of one execution of a plan, shared by the files of the
 * streaming engine (all private to lib/engine):
 *   engine.c       the driver: set-up, the passes of each job, progress
 *   select_pass.c  the statistics passes: top-k thresholds from histograms
 *                  and recorded keys, dare's L1 sums, slerp's dot products
 *   tiles.c        one chunk: its slices over the threads, the reads into
 *                  tiles, and what each pass does with a tile
 *   output.c       the output: writers, encoding tiles, copied tensors,
 *                  consensus masks
 *   team.c         the threads that run a chunk's slices
 *
 * A job runs in passes over its unit (DESIGN 4.1: the tensor, each row, or
 * the whole model):
 *   L1      dare --rescale l1: sums of |delta| and of its kept part (the
 *           draws are kept as bits for APPLY when they fit);
 *   SAMPLE  any top-k: a histogram of 1/16 of the magnitude keys, from which
 *           a range of keys around the k-th largest is guessed;
 *   SAMPLE_FINE  when the keys of that range did not fit the recorder: a
 *           finer histogram of the same sample inside the range, which
 *           narrows it to whole keys (and HI records again);
 *   HI      the keys above that range are counted and those in it recorded,
 *           which gives the exact threshold and the positions of the ties
 *           (or, when the guess missed or the keys do not fit, a histogram
 *           of the high 16 bits, and then LO for the low 16 bits);
 *   COUNT   without recorded keys: the elements equal to the threshold
 *           before each slice, when only some of them are kept;
 *   SLERP   norms and dot product of the two tensors;
 *   STATS   a method's own sums over the tensor (weld_job_stats(), e.g.
 *           ramplus_tl's counts), folded into coefficients before APPLY;
 *   APPLY   compute the output and write it.
 * With --scope row every statistic is taken in memory, row by row, inside
 * APPLY; with --scope model the statistics passes run over every job
 * before the first APPLY.
 *
 * The whole execution runs inside one OpenMP parallel region (engine.c):
 * parallel work goes through weld_team_run(), since a nested `omp
 * parallel` there would run on one thread.
 *
 * Inside the batch of slices of a chunk (weld_team_run), a slice writes only
 * its own struct slice_ctx, the histograms of the thread running it, and
 * the parts of the chunk buffers (block_sums, out_chunk, mask_bits,
 * draw_bits) that cover its elements; everything else is written between
 * batches. Integer counts are combined in slice order and floating
 * sums per fixed block of WELD_BLOCK elements, so no byte depends on the
 * thread count or the chunk size.
 */
#ifndef WELD_EXEC_H
#define WELD_EXEC_H

#include "merge.h"
#include "method.h"
#include "kernels.h"
#include "plan_impl.h"
#include "rank.h"
#include "sample.h"
#include "select.h"
#include "team.h"
#include "write_queue.h"

#include <math.h>

#define MAX_SEL 2               /* most top-k selections per source */
#define RANK_SCRATCH 8          /* uint32 per element of a slice's rank scratch */

enum pass { P_L1, P_SAMPLE, P_SAMPLE_FINE, P_HI, P_LO, P_SLERP, P_COUNT, P_APPLY,
	    P_RANK_L1, /* della --rescale l1: exact sums of |delta| and of its kept part */
	    /* pcb: histograms of the high, then the low bits of |delta|, then of beta */
	    P_PCB_CLIP_HI, P_PCB_CLIP_LO, P_PCB_BETA_HI, P_PCB_BETA_LO,
	    /* sce: the variances' histograms (of a sample, or of all: HI), the
	     * equal ones per slice, the energies */
	    P_SCE_SAMPLE, P_SCE_HI, P_SCE_LO, P_SCE_COUNT, P_SCE_SUM,
	    /* arcee_fusion: the importances' high bits in a sample, the keys
	     * near the quantiles (recorded), or histograms of all */
	    P_ARCEE_SAMPLE, P_ARCEE_RANGE, P_ARCEE_HI, P_ARCEE_LO,
	    P_STATS,   /* the sums of stats_pass.c (slerp's family, model_stock, ram+) */
};

/* P_SAMPLE and P_SAMPLE_FINE read one super-tile in SAMPLE_STRIDE
 * (sample.h). */
static inline bool sample_pass(int pass)
{
	return pass == P_SAMPLE || pass == P_SAMPLE_FINE;
}

/* Passes over the sample only: the top-k's, sce's and arcee_fusion's. */
static inline bool sampled(int pass)
{
	return sample_pass(pass) || pass == P_SCE_SAMPLE || pass == P_ARCEE_SAMPLE;
}

enum drop_mode {
	DROP_NONE,      /* dare's drop is left to the row code (row + l1) */
	DROP_PLAIN,     /* drop, no rescale (the L1 pass) */
	DROP_RESCALE,   /* drop and multiply by the source's factor */
};

/* One top-k selection of one source over the current unit. */
struct sel_state {
	uint64_t k;             /* elements to keep in the current unit */
	uint64_t *hist;         /* histogram totals: high bits, then low bits */
	uint32_t hi_bin;        /* after HI: the high-bits bin of the threshold */
	uint64_t n_above;       /* after HI: keys in the bins above hi_bin */
	struct weld_topk sel;   /* the threshold and how many equal to it are kept */
	uint64_t eq_before;     /* elements equal to the threshold seen so far */
	bool located;           /* after HI: the threshold lies in the recorded range */
};

/* What one slice (one value of t) owns. */
struct slice_ctx {
	unsigned char *raw;     /* (max_src + 1) super-tiles of raw input: base, sources */
	float *base;            /* the tile's base values */
	float *out;             /* the tile's output values */
	float *vals;            /* max_src tiles: x, or delta, of each source */
	float *scratch;         /* (4 + max_src) tiles for weld_k_combine */
	unsigned char *keep;    /* max_src * MAX_SEL tiles of top-k masks */
	uint32_t *hist;         /* the running thread's histograms */
	uint32_t *row_keys;     /* one tile of keys for weld_topk_select (--scope row) */
	struct weld_topk_hint row_hint[WELD_K_MAX_SRC * MAX_SEL]; /* --scope row: per selection */
	/* per selection: the elements equal to its threshold before this slice
	 * (COUNT first counts those of the slice; APPLY advances it) */
	uint64_t n_equal[WELD_K_MAX_SRC * MAX_SEL];
	/* keys recorded in a statistics pass, per selection, in position order */
	uint32_t *rec_keys[WELD_K_MAX_SRC * MAX_SEL];
	size_t rec_len[WELD_K_MAX_SRC * MAX_SEL], rec_cap[WELD_K_MAX_SRC * MAX_SEL];
	/* per selection: the keys counted as plateaus instead of recorded, how
	 * many of each the current chunk holds (its run entries, written when
	 * the chunk ends), and where the keys not yet offered to
	 * weld_plateau_learn start */
	uint32_t rec_plateau[WELD_K_MAX_SRC * MAX_SEL][WELD_PLATEAUS];
	uint64_t rec_pc[WELD_K_MAX_SRC * MAX_SEL][WELD_PLATEAUS];
	size_t rec_unlearned[WELD_K_MAX_SRC * MAX_SEL];
	bool rec_overflow;      /* ran out of room: the recorded keys are not usable */
	uint64_t rec_above[WELD_K_MAX_SRC * MAX_SEL]; /* keys above the range */
	/* --allow-nonfinite: nan[i] = some input is NaN at element i of the
	 * tile, when tile_nan */
	unsigned char *nan;
	bool tile_nan;
	bool nonfinite;         /* an input of the tile holds NaN or +-Inf */
	struct weld_error err;
	bool failed;
	uint64_t notes;         /* APPLY: rows with a degenerate statistic (model_stock) */
};

/*
 * Recording lets one statistics pass stand for up to three. While the high
 * bits are counted, the keys whose high bits fall in a range guessed from a
 * sample are kept; if the k-th largest falls in that range, the exact
 * threshold comes from those keys (no pass over the low bits), and so do
 * the counts of the elements equal to it per chunk and slice (no counting
 * pass). Only those counts matter, not the order of the keys inside a
 * chunk's slice: a key that many of the keys recorded share (a plateau) is
 * counted instead, and kept as one run entry per chunk and slice
 * (select.h), so plateaus take neither room nor passes. Anything that does not fit the memory set aside for it falls
 * back to the passes.
 * Per-chunk tables are indexed [(chunk * n_slices + t) * sel_slots + q].
 */
struct recorder {
	bool on;                /* keys are being recorded */
	bool overflow;          /* a slice ran out of room: not usable */
	bool valid;             /* chunk_eq holds this unit's counts */
	/* per selection: the range of keys recorded, key_lo..key_hi */
	uint32_t key_lo[WELD_K_MAX_SRC * MAX_SEL], key_hi[WELD_K_MAX_SRC * MAX_SEL];
	/* per selection, from the sample: its keys, the ranks (from the top)
	 * the range must hold, its keys above the range, and for SAMPLE_FINE
	 * the shift of its bins (-1: none) */
	uint64_t sample_n[WELD_K_MAX_SRC * MAX_SEL];
	uint64_t rank_top[WELD_K_MAX_SRC * MAX_SEL], rank_bottom[WELD_K_MAX_SRC * MAX_SEL];
	uint64_t sample_above[WELD_K_MAX_SRC * MAX_SEL];
	int fine_shift[WELD_K_MAX_SRC * MAX_SEL];
	size_t per_slice;       /* keys a slice may hold, all selections */
	uint64_t *chunk_start;  /* where each chunk's keys start in a slice's list */
	uint64_t *chunk_eq;     /* each chunk's keys equal to the threshold */
	uint64_t n_chunks, chunks_cap;  /* chunks recorded, room in the tables */
	uint64_t apply_chunk;   /* the next chunk APPLY takes its counts from */
};

/* The state of one execution. */
struct exec {
	weld_plan *plan;
	const struct weld_merge_opts *opts;
	int n_slices;           /* slices of a chunk */
	int n_threads;          /* threads */
	uint64_t chunk_elems;   /* chunk capacity (elements) */
	size_t max_src;         /* most sources of any job */
	size_t tile_elems;      /* tile capacity (elements) */
	size_t super_elems;     /* super-tile capacity (elements) */
	size_t raw_elem_size;   /* largest input element size */
	size_t hists_per_src;   /* histograms per source (plan->maxsel) */
	size_t sel_slots;       /* selections of all sources: max_src * MAX_SEL */
	struct slice_ctx *slices;       /* n_slices */
	unsigned char *out_chunk;       /* the output buffer of the current chunk */
	/* consensus masks of the chunk (max_src rows of mask_stride bytes), or
	 * the mask read by apply-mask */
	unsigned char *mask_bits;
	size_t mask_stride;
	struct sel_state *sel;  /* sel_slots: source s, selection q at s * MAX_SEL + q */
	double *l1_all, *l1_kept;       /* dare --rescale l1: per source sums of the L1 pass */
	double *block_sums;     /* per block of a chunk: L1 sums, or SLERP dots and totals */
	float *factor;          /* dare: per source rescale factor */
	uint64_t *rng_key;      /* dare: per source key of the draws */
	/* dare --rescale l1: the L1 pass's draws, per source, for APPLY */
	unsigned char *draw_bits;
	enum { DRAWS_NONE, DRAWS_STORE, DRAWS_KNOWN } draws;
	double slerp_s0, slerp_s1;      /* slerp: the coefficients of the current job */
	weld_writer *writer, *mask_writer;
	uint64_t bytes_done, bytes_total;       /* progress: bytes read over all passes */
	uint32_t **thread_hist; /* per thread: max_src * hists_per_src * BINS counts */
	bool hist_used;         /* thread_hist holds counts not yet merged */
	/* P_HI and P_SAMPLE: the selections of a source count the same keys,
	 * once, in the slot of its first selection that counts (sel_counter) */
	bool hist_shared;
	uint64_t hist_pending;  /* elements counted in the threads' histograms */
	/* SAMPLE and SAMPLE_FINE: elements of the unit before the current job,
	 * so that the sample takes one super-tile in SAMPLE_STRIDE of the whole
	 * unit, not the first of every tensor (--scope model) */
	uint64_t sample_at;
	struct recorder rec;
	struct weld_outq *queue;        /* writes the output chunks */
	struct weld_team *team;         /* runs the slices of each chunk (team.h) */
	/* della (rank_pass.c): per slice, RANK_SCRATCH tiles of rank scratch,
	 * and the exact sums of each source (all, kept); with --rescale
	 * inverse, per thread, the memo of its rows' p (rank.h) */
	uint32_t *rank_scratch;
	struct weld_xsum *rank_sums;
	struct weld_della_memo **della_memo;
	struct hist_exec *hs;   /* order statistics by histograms (hist_pass.c), or NULL */
	struct pcb_window *pw;  /* pcb: the current unit's window (pcb_window.c), or NULL */
	struct pcb_tails *pt;   /* pcb: the current unit's tails of |delta| (pcb_tails.c), or NULL */
	struct pcb_memos *pm;   /* pcb: memos of intra per thread and source (pcb_pass.c), or NULL */
	struct pcb_hold *ph;    /* pcb: a unit's inputs and flags in memory (pcb_hold.c), or NULL */
	size_t stats_max;       /* most sums per block of any job's STATS pass */
	size_t stats_total_max; /* most totals of any job's STATS pass */
	double *stats;          /* STATS: the current job's totals */
	float *coef;            /* STATS: per source coefficients for APPLY */
	bool note;              /* STATS: the tensor's statistic is degenerate */
	struct svd_batch *svd;  /* whole-matrix jobs computed, not all written (svd_pass.c) */
};

/* The input tensor of source s. */
static inline const struct weld_tensor_info *src_info(const struct exec *e,
						      const struct weld_source *s)
{
	return weld_model_tensor(e->plan->models[s->model], (size_t)s->tensor);
}

/* Top-k selections per source of job j (0 to MAX_SEL). */
static inline int nsel(const struct exec *e, const struct weld_job *j)
{
	return weld_job_selections(e->opts, j);
}

/* Whether job j needs dare's L1 sums (--rescale l1). */
static inline bool needs_l1(const struct exec *e, const struct weld_job *j)
{
	return weld_method_l1_rescale(e->opts, j->method);
}

/* Whether job j's selections are taken row by row, inside APPLY. */
static inline bool row_scope(const struct exec *e, const struct weld_job *j)
{
	return weld_method_row_units(e->opts, j->method);
}

/* Elements of a row: the last dimension (1-D tensors are one row). */
static inline uint64_t row_len(const struct weld_job *j)
{
	return j->ndim && j->shape[j->ndim - 1] ? (uint64_t)j->shape[j->ndim - 1] : 1;
}

/* k of selection q of source s over a unit of m elements (DESIGN 4.1, 4.6). */
static inline uint64_t unit_k(const struct exec *e, const struct weld_job *j, size_t s, int q,
			      uint64_t m)
{
	return weld_method_unit_k(e->opts, j, s, q, m);
}

/* slerp: after the per-block dots of a chunk, the job's running totals. */
static inline double *slerp_totals(const struct exec *e)
{
	return e->block_sums + 3 * (e->chunk_elems / WELD_BLOCK + 1);
}

/* engine.c */

/* dare: the key of each source's draws for job j. */
void weld_exec_set_keys(struct exec *e, const struct weld_job *j);
/* Count the input bytes of n elements of job j as read; report progress. */
void weld_exec_progress(struct exec *e, const struct weld_job *j, uint64_t n);

/* select_pass.c */

/* dare: each source's rescale factor when there is no L1 pass. */
void weld_exec_set_factors(struct exec *e, const struct weld_job *j);
/* The statistics pass of one tile of len elements: histogram, record or
 * count the keys of each active selection. Runs inside the slice loop. */
void weld_exec_tile_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			  enum pass pass, size_t len);
/* Recording, before a chunk: note where its keys start; -1 if out of
 * memory. */
int weld_exec_rec_chunk(struct exec *e);
/* Recording: drop every recorded key and stop. */
void weld_exec_rec_clear(struct exec *e);
/* APPLY with recorded keys: set each slice's equal elements before it from
 * the counts of the next chunk (instead of a COUNT pass). */
void weld_exec_rec_apply_counts(struct exec *e);
/* Add the threads' histograms to the selections' totals. */
void weld_exec_hist_merge(struct exec *e, const struct weld_job *j);
/* Start every selection of job j over a unit of `unit` elements. */
void weld_exec_sel_reset(struct exec *e, const struct weld_job *j, uint64_t unit);
/* Whether some selection keeps part of its unit. */
bool weld_exec_sel_active(const struct exec *e, const struct weld_job *j);
/* Whether APPLY needs the counts of the elements equal to a threshold. */
bool weld_exec_sel_partial(const struct exec *e, const struct weld_job *j);
/* One pass (not APPLY) over every chunk of job j, with the folding of its
 * histograms and block sums. */
int weld_exec_over_chunks(struct exec *e, const struct weld_job *j, enum pass pass,
			  enum drop_mode mode, struct weld_error *err);
/* The statistics of one unit: the nj jobs `jobs`, which are one tensor, or
 * with --scope model all merged jobs in name order. */
int weld_exec_unit_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			 struct weld_error *err);

/* stats_pass.c */

/* STATS on one tile of len elements (one block): its sums into out. */
void weld_exec_tile_job_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			      uint64_t g, size_t len, double *out);
/* The STATS pass of job j, if its method makes one, and the coefficients
 * APPLY takes from it. */
int weld_exec_job_stats(struct exec *e, const struct weld_job *j, struct weld_error *err);
/* Row units whose statistic is taken inside APPLY, row by row (model_stock
 * filter_wise): compute and combine the tile (a filled for it); false if
 * the method has no such statistic. */
bool weld_exec_row_stats_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			       struct weld_combine_args *a, size_t len);
/* After APPLY: report the degenerate statistics of job j as a warning. */
void weld_exec_job_notes(struct exec *e, const struct weld_job *j);

/* svd_pass.c */

/* A whole-matrix job (weld_plan_svd_matrix), decomposed and written. */
int weld_exec_svd_job(struct exec *e, const struct weld_job *j, struct weld_error *err);

/* tiles.c */

/* Run one pass over elements [first, first + n) of job j: the chunk's
 * slices in parallel, then the slice-order folding of their counts. */
int weld_exec_run_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
			enum pass pass, enum drop_mode mode, struct weld_error *err);
/* One pass (DROP_NONE) over elements [first, first + n) of job j in
 * chunks of step, handed to the team at once: no wait at the end of each
 * chunk. Only for passes whose results do not depend on which thread or
 * slice context computes a slice (per-thread histograms, exact sums; no
 * per-slice counts or recorded keys). */
int weld_exec_run_pass(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
		       uint64_t step, enum pass pass, struct weld_error *err);
/* The tile at flat index g, computed in c->out: NaN where an input is NaN
 * (--allow-nonfinite), then encoded into the output chunk that starts at
 * first. Every APPLY ends with it. */
void weld_exec_put_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t first, uint64_t g, size_t len);

/* nonfinite.c */

/* The error for job j, some input of which holds NaN or +-Inf: the first
 * such input (the base, then the sources in order) and its count over the
 * whole tensor. Returns -1. */
int weld_exec_nonfinite_error(const struct exec *e, const struct weld_job *j,
			      struct weld_error *err);
/* rank_pass.c */

/* della, before APPLY: each source's factor (the L1 pass when --rescale
 * l1). */
int weld_exec_rank_stats(struct exec *e, const struct weld_job *j, struct weld_error *err);
/* della on the rows of one tile at flat index g: the drop (APPLY), or the
 * drop and its sums (P_RANK_L1). Runs inside the slice loop. */
void weld_exec_rank_rows(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t g, size_t len, enum pass pass);
/* Buffers for della's rows; -1 if out of memory. free: all of them (a
 * partial set-up is fine). */
int weld_exec_rank_alloc(struct exec *e);
void weld_exec_rank_free(struct exec *e);

/* pcb_pass.c */

/* pcb: the clip bounds and drop thresholds of every source over the unit
 * (the nj jobs `jobs`: one tensor, or with --scope model the whole model). */
int weld_exec_pcb_unit(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       struct weld_error *err);
/* One pass of pcb over the unit, without histograms. */
int weld_exec_pcb_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       enum pass pass, struct weld_error *err);
/* A statistics pass of pcb over the tile of len elements at flat index g
 * (slice loop). */
void weld_exec_pcb_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t g, size_t len, enum pass pass);
/* pcb's APPLY of the tile at flat index g (its rows' statistics first with
 * --scope row), encoded into the output chunk that starts at first. */
void weld_exec_pcb_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len);
/* Free what pcb keeps across units. */
void weld_exec_pcb_free(struct exec *e);

/* sce_pass.c */

/* sce: the threshold of the variances and each model's share. */
int weld_exec_sce_unit(struct exec *e, const struct weld_job *j, struct weld_error *err);
/* sce, before a pass over the chunk [first, first + n): the equal
 * variances before each slice (a counting pass when only some are kept). */
int weld_exec_sce_chunk(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n,
			struct weld_error *err);
/* A statistics pass of sce over the tile at flat index g (slice loop). */
void weld_exec_sce_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			uint64_t g, size_t len, enum pass pass);
/* sce's APPLY of the tile at flat index g. */
void weld_exec_sce_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			 uint64_t first, uint64_t g, size_t len);

/* arcee_pass.c */

/* arcee_fusion: the importance fence of the tensor. */
int weld_exec_arcee_unit(struct exec *e, const struct weld_job *j, struct weld_error *err);
/* A statistics pass of arcee_fusion over one tile of whole rows. */
void weld_exec_arcee_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			  uint64_t g, size_t len, enum pass pass);
/* arcee_fusion's APPLY of the tile at flat index g. */
void weld_exec_arcee_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			   uint64_t first, uint64_t g, size_t len);

/* output.c */

/* Open the output (and --save-masks) writers for every job of the plan. */
int weld_exec_open_writers(struct exec *e, const char *out, struct weld_error *err);
/* For a GGUF output (output_format.c): the model the writer follows and
 * the type asked for, into wo; nothing for a safetensors output. */
void weld_exec_gguf_opts(const weld_plan *p, struct weld_writer_opts *wo);
/* fp8_out.c: the first job that reads FP8 weights with scales from its
 * reference model and writes them decoded, or NULL; and the config.json
 * edit such an output takes (ctx: the plan): the plan's own edit, then
 * quantization_config removed. */
const struct weld_job *weld_plan_decodes_fp8(const weld_plan *p);
/* --dtype fp8 is refused unless some job writes FP8 (a block-scaled FP8
 * base), and with a GGUF output. */
int weld_plan_check_fp8(const weld_plan *p, struct weld_error *err);
int weld_fp8_edit_config(void *ctx, void *cjson_root, struct weld_error *err);
/* Encode len floats of a tile as dtype t at dst, in the output chunk; a
 * chunk with streamed stores needs an _mm_sfence() before it is written. */
void weld_exec_encode_tile(enum weld_dtype t, const float *src, unsigned char *dst, size_t len);
/* A copied (unmerged) tensor, chunk by chunk. */
int weld_exec_copy_job(struct exec *e, const struct weld_job *j, struct weld_error *err);
/* Write the consensus masks of the current chunk (n elements) of job j. */
int weld_exec_write_masks(struct exec *e, const struct weld_job *j, uint64_t n,
			  struct weld_error *err);

#endif
