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

size_t weld_record_keys_generic(const float *x, size_t n, uint32_t lo, uint32_t width,
				uint32_t *out, uint64_t *above)
{
	size_t w = 0;
	uint64_t ab = 0;

	/* every key is stored; the length grows only for those in range */
	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);

		out[w] = key;
		w += (key >> 16) - lo <= width;
		ab += (key >> 16) > lo + width;
	}
	*above += ab;
	return w;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

/* 16 keys at a time: compress those in range into a register and store all
 * 16 lanes (out has room for n), which is fast on every AVX-512 core, unlike
 * a compressing store to memory. */
__attribute__((target("avx512f,popcnt")))
static size_t record_avx512(const float *x, size_t n, uint32_t lo, uint32_t width,
			    uint32_t *out, uint64_t *above)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), vlo = _mm512_set1_epi32((int)lo);
	const __m512i vw = _mm512_set1_epi32((int)width);
	const __m512i vtop = _mm512_set1_epi32((int)(lo + width));
	__m512i ab = _mm512_setzero_si512();
	size_t w = 0, j = 0;

	for (; j + 16 <= n; j += 16) {
		__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j), abs);
		__m512i hi = _mm512_srli_epi32(key, 16);
		__mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(hi, vlo), vw);
		__mmask16 up = _mm512_cmpgt_epu32_mask(hi, vtop);

		ab = _mm512_mask_sub_epi32(ab, up, ab, _mm512_set1_epi32(-1));
		if (in) {
			_mm512_storeu_si512(out + w, _mm512_maskz_compress_epi32(in, key));
			w += (size_t)__builtin_popcount(in);
		}
	}
	*above += (uint64_t)_mm512_reduce_add_epi32(ab);
	return w + weld_record_keys_generic(x + j, n - j, lo, width, out + w, above);
}

size_t weld_record_keys(const float *x, size_t n, uint32_t lo, uint32_t width,
			uint32_t *out, uint64_t *above)
{
	if (__builtin_cpu_supports("avx512f") && n < (1ull << 35))  /* lane counts fit */
		return record_avx512(x, n, lo, width, out, above);
	return weld_record_keys_generic(x, n, lo, width, out, above);
}
#else
size_t weld_record_keys(const float *x, size_t n, uint32_t lo, uint32_t width,
			uint32_t *out, uint64_t *above)
{
	return weld_record_keys_generic(x, n, lo, width, out, above);
}
#endif

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

WELD_HOT uint64_t weld_count_equal(const float *x, size_t n, uint32_t key)
{
	uint64_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += weld_key(x[j]) == key;
	return c;
}
