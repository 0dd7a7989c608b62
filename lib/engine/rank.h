/*
 * rank.h - per-row ranks and exact sums, on plain arrays: the kernels of
 * della (METHODS 3). Nothing here knows about files, tensors or threads.
 */
#ifndef WELD_RANK_H
#define WELD_RANK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The exact sum of |x| over float32 values, whatever the order of the
 * additions: per exponent field, the sum of the significands as an
 * integer (exact for up to 2^40 values). Partial sums of any split of the
 * values merge into the same state, so a sum taken over threads and chunks
 * is the same number for any -j and --max-memory.
 */
struct weld_xsum {
	uint64_t m[256];        /* [e]: sum of the significands of exponent field e (255: infinities) */
	uint64_t nan;           /* NaNs seen */
};

void weld_xsum_add_abs(struct weld_xsum *s, const float *x, size_t n);
void weld_xsum_merge(struct weld_xsum *dst, const struct weld_xsum *src);
/* The sum, rounded once to double (to nearest, ties to even); inf or NaN
 * if an infinity or a NaN was added. */
double weld_xsum_value(const struct weld_xsum *s);

/* uint32_t of scratch per element of a row, for the functions below */
#define WELD_RANK_SCRATCH 8

/*
 * Ranks of |v| in a row of w elements (DESIGN 4.1's order counted from the
 * bottom): rank[i] is the rank - 1 of element i, 0 for the smallest
 * magnitude, w - 1 for the largest; among equal magnitudes the lower
 * position has the higher rank. By counting (see rank.c): linear in w, the
 * same time on plateaus of equal values. scratch holds WELD_RANK_SCRATCH * w.
 */
void weld_k_row_ranks(const float *v, size_t w, uint32_t *rank, uint32_t *scratch);

struct weld_della_memo;

/*
 * della's drop on one row (METHODS 3 steps 2-5): v[0..w) are the deltas of
 * the elements whose flat indices are first..first+w-1, key the source's
 * DESIGN 4.9 key. The element of rank r + 1 keeps with p = (d - eps) +
 * (2 t) eps, t = r/(w - 1) (p = d for w = 1), in double, iff its draw u <
 * p; a kept element becomes v / float(p) when inverse, else v * factor; a
 * dropped one +0. scratch holds WELD_RANK_SCRATCH * w; memo is a
 * weld_della_memo or NULL (below). With bits, the keep flags go there
 * too: bit i % 8 of byte i / 8, (w + 7) / 8 bytes (a +0 that the factor
 * leaves +0 may be flagged either way: it is +0 kept or dropped). With
 * sums, |v| of the row is added to sums[0] and of the row after the drop
 * to sums[1] (inverse false and factor 1: the kept part). (d >= 1 keeps
 * the row as it is: the caller does not call this.)
 */
void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first, double d, double eps,
		      bool inverse, float factor, uint32_t *scratch, unsigned char *bits,
		      struct weld_xsum *sums, struct weld_della_memo *memo);

/*
 * The drop by inverse takes, for each rank, a threshold of the draws and
 * float(p): a memo keeps them for rows of one width and one (d, eps), so
 * that the rows after the first need no division per element. Optional
 * (memo NULL: every p taken again), one per thread; the same bytes either
 * way. new returns NULL when out of memory; room for rows of up to cap
 * elements (wider ones go without). free takes NULL.
 */
struct weld_della_memo *weld_della_memo_new(size_t cap);
void weld_della_memo_free(struct weld_della_memo *m);

/* The drop again from those bits: v[i] * factor where bit i is set, else
 * +0 (the same values as weld_k_della_row with that factor, when the
 * factor leaves +0 as +0). */
void weld_k_della_apply_bits(float *v, size_t w, const unsigned char *bits, float factor);

#endif
