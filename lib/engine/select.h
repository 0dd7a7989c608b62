/*
 * select.h - pieces of top-k selection shared by the engine's passes.
 */
#ifndef WELD_SELECT_H
#define WELD_SELECT_H

#include <stdint.h>
#include <string.h>

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
/* h[key & 0xFFFF]++ for each x whose key >> 16 == bin. */
void weld_hist_lo(const float *x, size_t n, uint32_t bin, uint32_t *h);
/*
 * Append to out, in order, the keys of x whose high 16 bits h satisfy
 * h - lo <= width (unsigned), and add to *above how many have h > lo + width.
 * out must have room for n keys; returns how many were appended.
 */
size_t weld_record_keys(const float *x, size_t n, uint32_t lo, uint32_t width,
			uint32_t *out, uint64_t *above);
/* The same in plain C (what weld_record_keys runs without AVX-512). */
size_t weld_record_keys_generic(const float *x, size_t n, uint32_t lo, uint32_t width,
				uint32_t *out, uint64_t *above);
/* The bin holding the need-th largest key (need >= 1), and in *above how
 * many keys lie in higher bins. */
uint32_t weld_hist_pick(const uint64_t *h, uint64_t need, uint64_t *above);
/* How many x have this key. */
uint64_t weld_count_equal(const float *x, size_t n, uint32_t key);

#endif
