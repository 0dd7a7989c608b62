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

/*
 * Ranks of |v| in a row of w elements (DESIGN 4.1's order counted from the
 * bottom): on return order[i] is the position of the element of rank i + 1,
 * rank 1 the smallest magnitude, rank w the largest; among equal
 * magnitudes the lower position has the higher rank. A stable sort over
 * the bits of |v|: a counting pass into buckets of |v| (linear ones, a
 * few elements each, when the row allows), then each bucket sorted
 * (O(w), the same time on plateaus of equal values).
 * scratch holds 3 * w uint32_t; order holds w.
 */
void weld_k_row_order(const float *v, size_t w, uint32_t *order, uint32_t *scratch);

/*
 * della's keep probabilities for rows of width w (METHODS 3 step 3): the
 * element of rank i + 1 keeps with p = (d - eps) + (2 t) eps, t = i/(w - 1)
 * (p = d for w = 1), in double; thr[i] = weld_rng_threshold(p) (a draw is
 * kept iff its 53 bits are below it: u < p) and pf[i] = float(p).
 */
void weld_k_della_table(size_t w, double d, double eps, uint64_t *thr, float *pf);

/*
 * della's drop on one row (METHODS 3 steps 2-5): v[0..w) are the deltas of
 * the elements whose flat indices are first..first+w-1, key the source's
 * DESIGN 4.9 key, thr and pf its weld_k_della_table. A kept element
 * becomes v / pf[rank] when inverse, else v * factor; a dropped one +0.
 * scratch holds 4 * w uint32_t. (d >= 1 keeps the row as it is: the caller
 * does not call this.)
 */
void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first, const uint64_t *thr,
		      const float *pf, bool inverse, float factor, uint32_t *scratch);

/*
 * The same drop when every kept element is multiplied by one factor
 * (--rescale l1 or none), with the same result: the rank is taken only
 * where the draw falls between the keep thresholds of the lowest and the
 * highest rank the element's magnitude could have (see rank.c), so most
 * of a row is never sorted. No table; scratch holds 7 * w uint32_t. With
 * bits, the row's keep flags go there too: bit i % 8 of byte i / 8,
 * (w + 7) / 8 bytes (a +0 that the factor leaves +0 may be flagged
 * dropped whatever its draw: it is +0 either way).
 */
void weld_k_della_row_scaled(float *v, size_t w, uint64_t key, uint64_t first, double d,
			     double eps, float factor, uint32_t *scratch, unsigned char *bits);
/* The drop again from those bits: v[i] * factor where bit i is set, else
 * +0 (the same values as weld_k_della_row_scaled with that factor). */
void weld_k_della_apply_bits(float *v, size_t w, const unsigned char *bits, float factor);

#endif
