/*
 * select.c - exact top-k selection by magnitude, without sorting.
 *
 * The order used everywhere (DESIGN 4.1): larger |x| first, and among equal
 * magnitudes the lower position first. For non-negative floats the bit
 * pattern of |x| orders like the value, so selection is a radix select on
 * those 32-bit keys: a histogram of one digit narrows the candidates to one
 * bin, then the next digit, until the k-th largest key is known exactly.
 * The result is the threshold key T and how many elements equal to T are
 * kept; the elements kept are then those above T plus the first ones equal
 * to T, in position order.
 */
#include "merge.h"
#include "select.h"

#include <string.h>

void weld_topk_select(const float *x, size_t n, uint64_t k, uint32_t *scratch,
		      struct weld_topk *out)
{
	uint64_t need = k;
	uint32_t prefix = 0;
	size_t m = n;
	bool filtered = false;

	memset(out, 0, sizeof(*out));
	if (k == 0) {
		out->none = true;
		return;
	}
	if (k >= n) {
		out->all = true;
		return;
	}
	for (int shift = 24; shift >= 0; shift -= 8) {
		uint64_t cnt[256] = { 0 }, acc = 0;
		size_t w = 0;
		int b;

		if (!filtered)
			for (size_t j = 0; j < m; j++)
				cnt[weld_key(x[j]) >> shift & 255]++;
		else
			for (size_t j = 0; j < m; j++)
				cnt[scratch[j] >> shift & 255]++;
		for (b = 255; b > 0; b--) {
			if (acc + cnt[b] >= need)
				break;
			acc += cnt[b];
		}
		need -= acc;
		prefix |= (uint32_t)b << shift;
		/* keep only the candidates of bin b (in place: w <= j) */
		if (!filtered) {
			for (size_t j = 0; j < m; j++) {
				uint32_t key = weld_key(x[j]);

				if ((key >> shift & 255) == (uint32_t)b)
					scratch[w++] = key;
			}
			filtered = true;
		} else {
			for (size_t j = 0; j < m; j++)
				if ((scratch[j] >> shift & 255) == (uint32_t)b)
					scratch[w++] = scratch[j];
		}
		m = w;
	}
	out->thresh = prefix;
	out->keep_equal = need;
}

WELD_HOT uint64_t weld_topk_mask(const float *x, size_t n, const struct weld_topk *sel,
			uint64_t equal_before, unsigned char *keep)
{
	uint32_t t = sel->thresh;
	uint64_t eq;
	bool keep_eq;

	if (sel->all || sel->none) {
		memset(keep, sel->all, n);
		return 0;
	}
	eq = weld_count_equal(x, n, t);
	/* only the range where the kept equal elements run out needs order */
	if (equal_before >= sel->keep_equal || equal_before + eq <= sel->keep_equal) {
		keep_eq = equal_before < sel->keep_equal;
		for (size_t j = 0; j < n; j++) {
			uint32_t key = weld_key(x[j]);

			keep[j] = key > t || (keep_eq && key == t);
		}
		return eq;
	}
	for (size_t j = 0, seen = (size_t)equal_before; j < n; j++) {
		uint32_t key = weld_key(x[j]);

		keep[j] = key > t || (key == t && seen++ < sel->keep_equal);
	}
	return eq;
}

WELD_HOT void weld_hist_hi(const float *x, size_t n, uint32_t *h)
{
	for (size_t j = 0; j < n; j++)
		h[weld_key(x[j]) >> 16]++;
}

WELD_HOT void weld_hist_lo(const float *x, size_t n, uint32_t bin, uint32_t *h)
{
	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);

		if (key >> 16 == bin)
			h[key & 0xFFFF]++;
	}
}

WELD_HOT size_t weld_record_keys(const float *x, size_t n, uint32_t lo, uint32_t width,
				 uint32_t *out, uint64_t *above)
{
	size_t w = 0, j = 0;
	uint64_t ab = 0;

	/* most blocks hold no key in range: test a block, store only if one is */
	for (; j + 16 <= n; j += 16) {
		uint32_t in = 0, a = 0;

		for (size_t i = 0; i < 16; i++) {
			uint32_t h = weld_key(x[j + i]) >> 16;

			in |= h - lo <= width;
			a += h > lo + width;
		}
		ab += a;
		if (in)
			for (size_t i = 0; i < 16; i++) {
				uint32_t key = weld_key(x[j + i]);

				out[w] = key;
				w += (key >> 16) - lo <= width;
			}
	}
	for (; j < n; j++) {
		uint32_t key = weld_key(x[j]);

		out[w] = key;
		w += (key >> 16) - lo <= width;
		ab += (key >> 16) > lo + width;
	}
	*above += ab;
	return w;
}

uint32_t weld_hist_pick(const uint64_t *h, uint64_t need, uint64_t *above)
{
	uint64_t acc = 0;
	uint32_t b;

	for (b = 0xFFFF; b > 0; b--) {
		if (acc + h[b] >= need)
			break;
		acc += h[b];
	}
	*above = acc;
	return b;
}

uint64_t weld_count_equal(const float *x, size_t n, uint32_t key)
{
	uint64_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += weld_key(x[j]) == key;
	return c;
}
