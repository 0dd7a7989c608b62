/*
 * plan_impl.h - the inside of a weld_plan, shared by plan.c (building and
 * checking) and engine.c (execution).
 */
#ifndef WELD_PLAN_IMPL_H
#define WELD_PLAN_IMPL_H

#include "merge.h"
#include "select.h"

/* Sums in double are taken per block of WELD_BLOCK elements from the start
 * of their unit, then over blocks in order: the same result for any chunk
 * size and thread count. Chunks are whole blocks. */
#define WELD_BLOCK 4096
#define WELD_MIN_CHUNK (16 * WELD_BLOCK)
#define WELD_RAW_BUF (256u << 10)   /* per-thread read buffer */

struct weld_plan {
	struct weld_merge_opts o;
	weld_model **models;
	size_t nmodels;
	struct weld_job *jobs;
	size_t njobs, cap;
	uint64_t chunk;        /* elements per chunk */
	uint64_t memory;       /* bytes of buffers at that chunk size */
	uint64_t input_bytes;
	bool finished;
};

void weld_plan_warn(const weld_plan *p, const char *fmt, ...) WELD_PRINTF(2, 3);

#endif
