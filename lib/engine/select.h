/*
 * select.h - pieces of top-k selection shared by the engine's passes.
 */
#ifndef WELD_SELECT_H
#define WELD_SELECT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "merge.h"

#define WELD_HIST_BINS 65536

/* The sortable key of |x|: its bit pattern without the sign. */
static inline uint32_t weld_key(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u & 0x7FFFFFFFu;
}

/* h[key >> 16]++ for each x. */
void weld_hist_hi(const float *x, size_t n, uint32_t *h);
/* h[(key - lo) >> shift]++ for each x whose key is in [lo, hi], which
 * (hi - lo) >> shift < 65536 bins cover; the low 16 bits of one high-bits
 * bin b are lo = b << 16, hi = lo | 0xFFFF, shift 0. */
void weld_hist_range(const float *x, size_t n, uint32_t lo, uint32_t hi, int shift, uint32_t *h);
/*
 * Plateaus: keys shared by a large part of the elements (exact zeros, a
 * delta of one unit in the last place). A recorder counts up to
 * WELD_PLATEAUS such keys instead of storing each of them; a key that
 * stands for no plateau is WELD_NO_KEY (no magnitude key has bit 31 set).
 */
#define WELD_PLATEAUS 4
#define WELD_NO_KEY 0xFFFFFFFFu
/* A recorded list holds keys, and runs of a plateau key as two entries:
 * (WELD_RUN_FLAG | count, key). */
#define WELD_RUN_FLAG 0x80000000u

struct weld_record_range {
	uint32_t lo, width;     /* keys with key - lo <= width (unsigned) */
	uint32_t plateau[WELD_PLATEAUS];        /* keys counted, not stored */
};

/*
 * Append to out, in order, the keys of x in range r that are none of r's
 * plateau keys; add to pc[i] how many equal plateau key i, and to *above
 * how many are above the range.
 * out must have room for n keys; returns how many were appended.
 */
size_t weld_record_keys(const float *x, size_t n, const struct weld_record_range *r,
			uint32_t *out, uint64_t *pc, uint64_t *above);
/* The same in plain C (what weld_record_keys runs without AVX-512). */
size_t weld_record_keys_generic(const float *x, size_t n, const struct weld_record_range *r,
				uint32_t *out, uint64_t *pc, uint64_t *above);
/*
 * Append to out, in order, the keys of x in [lo, hi] other than p (a key
 * in that range); add to *eq how many equal p, and to *above how many are
 * above hi. out must have room for n keys; returns how many were appended.
 */
size_t weld_window_keys(const float *x, size_t n, uint32_t lo, uint32_t hi, uint32_t p,
			uint32_t *out, uint64_t *eq, uint64_t *above);
/*
 * Among the m keys of seg, find keys held by at least an eighth of them and
 * make them plateau keys of r, in the slots whose pc is 0 (slots counted
 * nothing yet for this stretch of keys); their keys are taken out of seg
 * (order kept) and counted in pc. Returns the new length of seg.
 */
size_t weld_plateau_learn(uint32_t *seg, size_t m, struct weld_record_range *r, uint64_t *pc);
/* The bin holding the need-th largest key (need >= 1), and in *above how
 * many keys lie in higher bins. */
uint32_t weld_hist_pick(const uint64_t *h, uint64_t need, uint64_t *above);
/* The same with the bins above `from` taken as empty (not read). */
uint32_t weld_hist_pick_from(const uint64_t *h, uint32_t from, uint64_t need, uint64_t *above);
/*
 * Two selections of x at once, the elements a keeps and b does not
 * (breadcrumbs: kept, minus the top outliers): keep[j] = 1 for those; a
 * before and b before elements equal to each threshold came before x[0].
 * Only when the equal elements of a tile are all kept or all not, for
 * each selection: returns false otherwise (and when a selection keeps all
 * or none, or both still keep equal elements: two scans are as fast), with
 * keep undefined; then weld_topk_mask on each. Returns true
 * with *eq_a and *eq_b the elements equal to each threshold, except that
 * the count of a selection that keeps no more equal elements (its before
 * is at its keep_equal already) may be short: it matters no more.
 */
bool weld_topk_mask_between(const float *x, size_t n, const struct weld_topk *a,
			    uint64_t a_before, const struct weld_topk *b, uint64_t b_before,
			    unsigned char *keep, uint64_t *eq_a, uint64_t *eq_b);
/* keep[j] = 1 for the elements of a whole unit x (no equal elements
 * before it) that selection a keeps and b does not (breadcrumbs: kept,
 * minus the top outliers), in one scan. */
void weld_topk_mask_pair(const float *x, size_t n, const struct weld_topk *a,
			 const struct weld_topk *b, unsigned char *keep);
/*
 * The rest of a radix select: the need-th largest (1 <= need <= m) of the
 * m >= 1 keys at scratch, which share all but their low `bits` bits, as
 * out's threshold and its equal keys kept; scratch is overwritten.
 */
void weld_topk_narrow(uint32_t *scratch, size_t m, uint64_t need, int bits, struct weld_topk *out);

/*
 * --scope row: the selections of one row after another (select_row.c).
 * A hint is a guess of the next row's threshold, per source and
 * selection, and the width of the window of keys around it tried first;
 * all zero: no guess yet.
 */
struct weld_topk_hint {
	uint32_t key, width;
	bool set;
};
/* One row, the keys' room (n of them) and its first digit's counts, once
 * taken (counted: set counted false for a new row, counts untouched). */
struct weld_topk_row {
	const float *x;
	size_t n;
	uint32_t *scratch;
	bool counted;
	struct weld_topk_counts counts;
};
/* weld_topk_select of the row, its result the same; tries the hint's
 * window first, and updates the hint. */
void weld_topk_select_row(struct weld_topk_row *row, uint64_t k, struct weld_topk_hint *h,
			  struct weld_topk *out);

/* How many x have this key. */
uint64_t weld_count_equal(const float *x, size_t n, uint32_t key);
/* How many of the keys are this key. */
uint64_t weld_count_keys(const uint32_t *keys, size_t n, uint32_t key);

#endif
