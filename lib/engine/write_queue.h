/*
 * write_queue.h - the engine's output write queue (weld_outq): output
 * chunks are written from a thread of their own, so that writing chunk k
 * (pwrite and its XXH3) overlaps computing chunk k + 1.
 *
 * A ring of buffers: weld_outq_buffer() returns the one the next chunk may
 * fill (waiting until the writer is done with it), weld_outq_submit() hands
 * it over. Several chunks may wait, so that the writer, which shares the
 * cores with the computing threads, never holds up the next chunk while it
 * catches up. Chunks are written in the order they are submitted.
 */
#ifndef WELD_WRITE_QUEUE_H
#define WELD_WRITE_QUEUE_H

#include "model.h"

#define WELD_OUTQ_BUFS 4

struct weld_outq;

/* Start the writer thread with WELD_OUTQ_BUFS buffers of `bytes` each; NULL
 * on failure. */
struct weld_outq *weld_outq_new(size_t bytes);
/* The buffer for the next chunk, or NULL (err filled) if a write failed. */
unsigned char *weld_outq_buffer(struct weld_outq *q, struct weld_error *err);
/* Write the first len bytes of that buffer as the next bytes of tensor i. */
int weld_outq_submit(struct weld_outq *q, weld_writer *w, size_t i, size_t len,
		     struct weld_error *err);
/* Wait until every submitted chunk is written; -1 if one failed. */
int weld_outq_drain(struct weld_outq *q, struct weld_error *err);
/* Stop the thread (after the chunk in progress) and free; NULL is a no-op. */
void weld_outq_free(struct weld_outq *q);

#endif
