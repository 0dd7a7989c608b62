/*
 * pcb_hold.h - a pcb unit's inputs held in memory between its passes
 * (private to lib/engine; see pcb_hold.c).
 */
#ifndef WELD_PCB_HOLD_H
#define WELD_PCB_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct exec;
struct weld_job;
struct weld_plan;

/* Bytes of job j's inputs (base and sources, as read: file dtype),
 * UINT64_MAX if they overflow. */
uint64_t weld_pcb_job_inputs_bytes(const struct weld_plan *p, const struct weld_job *j);

/* What a unit of m elements, nsrc sources and in_bytes of inputs (one job
 * or several) holds within grant bytes: its inputs when they fit (else 0),
 * and the window's flags (a bit per element and source, pcb_window.c) when
 * it has a window, is one job and they fit beside. */
void weld_pcb_hold_sizes(const struct weld_plan *p, uint64_t m, size_t nsrc, uint64_t in_bytes,
			 bool one_job, uint64_t grant, uint64_t *inputs, uint64_t *flags);

/* Begin a unit: its inputs are held when they fit the plan's hold (the
 * first pass reads them into it): 1; 0 when they are read every pass; -1
 * out of memory. */
int weld_pcb_hold_begin(struct exec *e, const struct weld_job *const *jobs, size_t nj);
/* After a whole pass over the unit: later passes read from memory. */
void weld_pcb_hold_filled(struct exec *e);
/* Where input s (0: the base, 1 + k: source k) of job j, from element at,
 * is kept; NULL when the job is not held. *filled: already read. */
unsigned char *weld_pcb_hold_at(const struct exec *e, const struct weld_job *j, size_t s,
				uint64_t at, bool *filled);
/* The window pass: the flags of source s from element g (a multiple of
 * 64) of job j, to be written; NULL when the unit keeps none. */
uint64_t *weld_pcb_hold_flags_out(const struct exec *e, const struct weld_job *j, size_t s,
				  uint64_t g);
/* After the window pass over the unit, with cut[s] the window's cut. */
void weld_pcb_hold_flags_done(struct exec *e, const float *cut, size_t nsrc);
/* APPLY: the flags of source s from element g of job j, when they were
 * written for a cut at most thr (a bit set wherever beta may exceed thr);
 * else NULL. */
const uint64_t *weld_pcb_hold_flags(const struct exec *e, const struct weld_job *j, size_t s,
				    uint64_t g, float thr);
/* Whether job j's inputs are served from memory (its reads are done). */
bool weld_pcb_hold_serves(const struct exec *e, const struct weld_job *j);
void weld_pcb_hold_free(struct exec *e);

#endif
