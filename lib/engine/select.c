/*
 * select.c - exact top-k selection by magnitude, without sorting.
 *
 * The order used everywhere (DESIGN 4.1): larger |x| first, and among equal
 * magnitudes the lower position first. For non-negative floats the bit
 * pattern of |x| orders like the value, so selection is a radix select on
 * those 32-bit keys: a histogram of one digit (11, then 8, 8 and 4 bits)
 * narrows the candidates to one bin, then the next digit, until the k-th largest key is known exactly.
 * The result is the threshold key T and how many elements equal to T are
 * kept; the elements kept are then those above T plus the first ones equal
 * to T, in position order. When the candidates left are all one key (a
 * plateau of equal magnitudes), that key is T and the digits stop.
 */
#include "merge.h"
#include "select.h"
#include "target_clones.h"

#include <string.h>

/* Whether the m >= 1 keys are all the same. */
static bool all_equal(const uint32_t *keys, size_t m)
{
	uint32_t a = keys[0], o = keys[0];

	for (size_t j = 1; j < m; j++) {
		a &= keys[j];
		o |= keys[j];
	}
	return a == o;
}

/*
 * The first digit is 11 bits (the exponent and three bits of the mantissa;
 * the key's bit 31 is 0), which on the magnitudes of a row of weights or
 * deltas, packed into a few octaves, leaves a small part of the row as
 * candidates after one scan; then digits of 8 bits, and the last 4.
 */
static const int digit_shift = 20;

static size_t filter_digit(const float *x, uint32_t *scratch, size_t m, int shift, uint32_t mask,
			   uint32_t b);

/* c0[d] + c1[d] = the keys of x (scratch when x is NULL) whose digit is d,
 * even and odd positions counted apart, so that a run of one digit (a row
 * packed into a few octaves) does not wait on its own increments; returns
 * the largest key. */
static uint32_t count_digits(const float *x, const uint32_t *scratch, size_t m, int shift,
			     uint32_t mask, uint32_t *c0, uint32_t *c1)
{
	uint32_t top0 = 0, top1 = 0;
	size_t j = 0;

	for (; j + 2 <= m; j += 2) {
		uint32_t k0 = x ? weld_key(x[j]) : scratch[j];
		uint32_t k1 = x ? weld_key(x[j + 1]) : scratch[j + 1];

		c0[k0 >> shift & mask]++;
		c1[k1 >> shift & mask]++;
		top0 = k0 > top0 ? k0 : top0;
		top1 = k1 > top1 ? k1 : top1;
	}
	if (j < m) {
		uint32_t k0 = x ? weld_key(x[j]) : scratch[j];

		c0[k0 >> shift & mask]++;
		top0 = k0 > top0 ? k0 : top0;
	}
	return top0 > top1 ? top0 : top1;
}

void weld_topk_count(const float *x, size_t n, struct weld_topk_counts *c)
{
	const uint32_t mask = (1u << (32 - digit_shift)) - 1;

	memset(c->c0, 0, sizeof(c->c0));
	memset(c->c1, 0, sizeof(c->c1));
	c->top = count_digits(x, NULL, n, digit_shift, mask, c->c0, c->c1);
}

void weld_topk_select(const float *x, size_t n, uint64_t k, uint32_t *scratch,
		      struct weld_topk *out)
{
	struct weld_topk_counts c;

	if (k == 0 || k >= n) {
		weld_topk_select_counted(x, n, k, NULL, scratch, out);
		return;
	}
	weld_topk_count(x, n, &c);
	weld_topk_select_counted(x, n, k, &c, scratch, out);
}

/* The bin of the need-th largest key counted in c0 + c1, from the bin of
 * the largest key down (the bins above it are empty); *need becomes the
 * rank inside the bin, *cb its count. */
static uint32_t pick_bin(const uint32_t *c0, const uint32_t *c1, uint32_t from, uint64_t *need,
			 uint64_t *cb)
{
	uint64_t acc = 0;
	uint32_t b;

	for (b = from; b > 0; b--) {
		*cb = (uint64_t)c0[b] + c1[b];
		if (acc + *cb >= *need)
			break;
		acc += *cb;
	}
	*cb = (uint64_t)c0[b] + c1[b];
	*need -= acc;
	return b;
}

void weld_topk_narrow(uint32_t *scratch, size_t m, uint64_t need, int bits, struct weld_topk *out)
{
	uint32_t prefix = bits < 32 ? scratch[0] >> bits << bits : 0;

	memset(out, 0, sizeof(*out));
	if (all_equal(scratch, m)) {
		prefix = scratch[0];
		bits = 0;
	}
	/* digits of 8 bits, the last one what is left */
	while (bits > 0) {
		int shift = bits > 8 ? bits - 8 : 0;
		uint32_t mask = (1u << (bits - shift)) - 1;
		uint32_t c0[1u << 8], c1[1u << 8], top, b;
		uint64_t cb;

		memset(c0, 0, (mask + 1) * sizeof(c0[0]));
		memset(c1, 0, (mask + 1) * sizeof(c1[0]));
		top = count_digits(NULL, scratch, m, shift, mask, c0, c1);
		b = pick_bin(c0, c1, top >> shift & mask, &need, &cb);
		prefix |= b << shift;
		if (cb < m)
			m = filter_digit(NULL, scratch, m, shift, mask, b);
		bits = shift;
		if (bits && all_equal(scratch, m)) {
			prefix = scratch[0];
			break;
		}
	}
	out->thresh = prefix;
	out->keep_equal = need;
}

void weld_topk_select_counted(const float *x, size_t n, uint64_t k,
			      const struct weld_topk_counts *first, uint32_t *scratch,
			      struct weld_topk *out)
{
	const int shift = digit_shift, bits = 32 - digit_shift;
	uint64_t need = k, cb;
	size_t m;
	uint32_t b;

	memset(out, 0, sizeof(*out));
	if (k == 0) {
		out->none = true;
		return;
	}
	if (k >= n) {
		out->all = true;
		return;
	}
	/* the first digit from the counts, then the keys of its bin */
	b = pick_bin(first->c0, first->c1, first->top >> shift, &need, &cb);
	m = filter_digit(x, scratch, n, shift, (1u << bits) - 1, b);
	weld_topk_narrow(scratch, m, need, shift, out);
}

WELD_HOT void weld_hist_hi(const float *x, size_t n, uint32_t *h)
{
	for (size_t j = 0; j < n; j++)
		h[weld_key(x[j]) >> 16]++;
}

WELD_HOT void weld_hist_range(const float *x, size_t n, uint32_t lo, uint32_t hi, int shift,
			      uint32_t *h)
{
	for (size_t j = 0; j < n; j++) {
		uint32_t d = weld_key(x[j]) - lo;

		if (d <= hi - lo)
			h[d >> shift]++;
	}
}

/* Keys of the range minus the plateaus (the plateau keys lie in the range). */
size_t weld_record_keys_generic(const float *x, size_t n, const struct weld_record_range *r,
				uint32_t *out, uint64_t *pc, uint64_t *above)
{
	const uint32_t *p = r->plateau;
	uint64_t ab = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
	size_t w = 0;

	/* every key is stored; the length grows only for those kept */
	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);
		uint32_t e0 = key == p[0], e1 = key == p[1], e2 = key == p[2], e3 = key == p[3];

		out[w] = key;
		w += (key - r->lo <= r->width) & !(e0 | e1 | e2 | e3);
		ab += key > r->lo + r->width;
		c0 += e0;
		c1 += e1;
		c2 += e2;
		c3 += e3;
	}
	pc[0] += c0;
	pc[1] += c1;
	pc[2] += c2;
	pc[3] += c3;
	*above += ab;
	return w;
}

/* The keys of x in [lo, hi] but p, in order; counts those equal to p
 * and those above hi. */
static size_t window_generic(const float *x, size_t n, uint32_t lo, uint32_t hi, uint32_t p,
			     uint32_t *out, uint64_t *eq, uint64_t *above)
{
	uint64_t e = 0, ab = 0;
	size_t w = 0;

	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);
		bool is_p = key == p;

		out[w] = key;
		w += key - lo <= hi - lo && !is_p;
		e += is_p;
		ab += key > hi;
	}
	*eq += e;
	*above += ab;
	return w;
}

/* A selection's scan: its threshold key, and how many of the elements
 * equal to it are still to be kept (the first ones). */
struct run {
	uint32_t t;
	uint64_t left;
};

/* keep[j] = key > t, or key == t for the first r->left of those; returns
 * how many keys are t, r->left less those kept. */
static uint64_t mask_generic(const float *x, size_t n, struct run *r, unsigned char *keep)
{
	uint64_t eq = 0, left = r->left;

	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);
		bool e = key == r->t, take = e && left;

		keep[j] = key > r->t || take;
		left -= take;
		eq += e;
	}
	r->left = left;
	return eq;
}

/* keep[j] = kept by a and not by b. */
static void pair_generic(const float *x, size_t n, struct run *a, struct run *b,
			 unsigned char *keep)
{
	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);
		bool ta = key == a->t && a->left, tb = key == b->t && b->left;

		keep[j] = (key > a->t || ta) && !(key > b->t || tb);
		a->left -= ta;
		b->left -= tb;
	}
}

/* scratch[0..w) = the keys of x (scratch itself when x is NULL, in place:
 * w <= j) whose digit (key >> shift & mask) is b; returns w. */
static size_t filter_generic(const float *x, uint32_t *scratch, size_t m, int shift,
			     uint32_t mask, uint32_t b)
{
	size_t w = 0;

	for (size_t j = 0; j < m; j++) {
		uint32_t key = x ? weld_key(x[j]) : scratch[j];

		scratch[w] = key;
		w += (key >> shift & mask) == b;
	}
	return w;
}

/* One key's threshold and whether its equal keys are kept, for the scans
 * of two selections. */
struct cut {
	uint32_t t;
	bool keep_eq;
};

/* keep[j] = kept by a and not by b; eq[0], eq[1] += keys equal to each
 * threshold. */
WELD_HOT static void between_generic(const float *x, size_t n, struct cut a, struct cut b,
				     unsigned char *keep, uint64_t eq[2])
{
	uint64_t ea = 0, eb = 0;

	for (size_t j = 0; j < n; j++) {
		uint32_t key = weld_key(x[j]);
		bool ka = key > a.t || (a.keep_eq && key == a.t);
		bool kb = key > b.t || (b.keep_eq && key == b.t);

		keep[j] = ka && !kb;
		ea += key == a.t;
		eb += key == b.t;
	}
	eq[0] += ea;
	eq[1] += eb;
}

#if WELD_AVX512
#include <immintrin.h>

/* Take r's plateau keys out of the m keys at out (order kept), counting
 * them in pc; returns how many keys are left. 16 keys at a time, stored
 * compressed behind those read; a free slot (WELD_NO_KEY) matches no key. */
__attribute__((target("avx512f,popcnt")))
static size_t strip_avx512(uint32_t *out, size_t m, const struct weld_record_range *r,
			   uint64_t *pc)
{
	const __m512i p0 = _mm512_set1_epi32((int)r->plateau[0]);
	const __m512i p1 = _mm512_set1_epi32((int)r->plateau[1]);
	const __m512i p2 = _mm512_set1_epi32((int)r->plateau[2]);
	const __m512i p3 = _mm512_set1_epi32((int)r->plateau[3]);
	uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
	size_t w = 0, j = 0;

	for (; j + 16 <= m; j += 16) {
		__m512i key = _mm512_loadu_si512(out + j);
		__mmask16 e0 = _mm512_cmpeq_epi32_mask(key, p0), e1 = _mm512_cmpeq_epi32_mask(key, p1);
		__mmask16 e2 = _mm512_cmpeq_epi32_mask(key, p2), e3 = _mm512_cmpeq_epi32_mask(key, p3);
		__mmask16 keep = (__mmask16)~(e0 | e1 | e2 | e3);

		c0 += (uint64_t)__builtin_popcount(e0);
		c1 += (uint64_t)__builtin_popcount(e1);
		c2 += (uint64_t)__builtin_popcount(e2);
		c3 += (uint64_t)__builtin_popcount(e3);
		/* w <= j: the 16 lanes stored end before the next keys read */
		_mm512_storeu_si512(out + w, _mm512_maskz_compress_epi32(keep, key));
		w += (size_t)__builtin_popcount(keep);
	}
	for (; j < m; j++) {
		uint32_t key = out[j];
		uint32_t e0 = key == r->plateau[0], e1 = key == r->plateau[1];
		uint32_t e2 = key == r->plateau[2], e3 = key == r->plateau[3];

		c0 += e0;
		c1 += e1;
		c2 += e2;
		c3 += e3;
		out[w] = key;
		w += !(e0 | e1 | e2 | e3);
	}
	pc[0] += c0;
	pc[1] += c1;
	pc[2] += c2;
	pc[3] += c3;
	return w;
}

/* 16 keys at a time, without branches (whether a block holds keys of the
 * range is as good as random): compress those in the range into a
 * register and store all 16 lanes (out has room for n), which is fast on
 * every AVX-512 core, unlike a compressing store to memory; the keys
 * above the range are counted per lane (the top bit of top - key, top
 * clamped to the largest key). The plateau keys, which lie in the range,
 * are taken out of the few keys kept afterwards. */
__attribute__((target("avx512f,popcnt")))
static size_t record_avx512(const float *x, size_t n, const struct weld_record_range *r,
			    uint32_t *out, uint64_t *pc, uint64_t *above)
{
	uint32_t top = r->lo + r->width;
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), vlo = _mm512_set1_epi32((int)r->lo);
	const __m512i vw = _mm512_set1_epi32((int)r->width);
	const __m512i vtop = _mm512_set1_epi32((int)(top < 0x7FFFFFFFu ? top : 0x7FFFFFFFu));
	__m512i ab = _mm512_setzero_si512();
	size_t w = 0, j = 0;
	bool plateaus = false;

	for (; j + 16 <= n; j += 16) {
		__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j), abs);
		__mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(key, vlo), vw);

		ab = _mm512_add_epi32(ab, _mm512_srli_epi32(_mm512_sub_epi32(vtop, key), 31));
		_mm512_storeu_si512(out + w, _mm512_maskz_compress_epi32(in, key));
		w += (size_t)__builtin_popcount(in);
	}
	*above += (uint64_t)(uint32_t)_mm512_reduce_add_epi32(ab);
	for (int i = 0; i < WELD_PLATEAUS; i++)
		plateaus = plateaus || r->plateau[i] != WELD_NO_KEY;
	if (plateaus)
		w = strip_avx512(out, w, r, pc);
	return w + weld_record_keys_generic(x + j, n - j, r, out + w, pc, above);
}

/* Four masks of 16 lanes as one of 64, the first in the low bits. */
#define JOIN64(m) _mm512_kunpackd(_mm512_kunpackw((m)[3], (m)[2]), _mm512_kunpackw((m)[1], (m)[0]))

/*
 * between_generic, 64 keys at a time, the masks joined in mask registers:
 * a selection keeps key >= t + 1, or key >= t when it keeps its equal keys
 * (keys are at most 0x7FFFFFFF: t + 1 does not wrap), and only such a
 * selection counts them (one at most); the count of one that keeps none
 * matters no more (0).
 */
__attribute__((target("avx512f,avx512bw,popcnt"), always_inline))
static inline void between_lanes(const float *x, size_t n, struct cut a, struct cut b,
				 unsigned char *keep, uint64_t eq[2], bool count_a, bool count_b)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), one = _mm512_set1_epi8(1);
	const __m512i ta = _mm512_set1_epi32((int)a.t), tb = _mm512_set1_epi32((int)b.t);
	const __m512i ga = _mm512_set1_epi32((int)(a.t + !a.keep_eq));
	const __m512i gb = _mm512_set1_epi32((int)(b.t + !b.keep_eq));
	uint64_t ca = 0, cb = 0;
	size_t j = 0;

	for (; j + 64 <= n; j += 64) {
		__mmask16 k[4], qa[4], qb[4];

		for (int i = 0; i < 4; i++) {
			__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j + 16 * i), abs);

			k[i] = _kandn_mask16(_mm512_cmpge_epu32_mask(key, gb),
					     _mm512_cmpge_epu32_mask(key, ga));
			if (count_a)
				qa[i] = _mm512_cmpeq_epi32_mask(key, ta);
			if (count_b)
				qb[i] = _mm512_cmpeq_epi32_mask(key, tb);
		}
		_mm512_storeu_si512(keep + j, _mm512_maskz_mov_epi8(JOIN64(k), one));
		if (count_a)
			ca += (uint64_t)__builtin_popcountll(_cvtmask64_u64(JOIN64(qa)));
		if (count_b)
			cb += (uint64_t)__builtin_popcountll(_cvtmask64_u64(JOIN64(qb)));
	}
	eq[0] += ca;
	eq[1] += cb;
	between_generic(x + j, n - j, a, b, keep + j, eq);
}

__attribute__((target("avx512f,avx512bw,popcnt")))
static void between_avx512(const float *x, size_t n, struct cut a, struct cut b,
			   unsigned char *keep, uint64_t eq[2])
{
	if (a.keep_eq)
		between_lanes(x, n, a, b, keep, eq, true, false);
	else if (b.keep_eq)
		between_lanes(x, n, a, b, keep, eq, false, true);
	else
		between_lanes(x, n, a, b, keep, eq, false, false);
}

static void between(const float *x, size_t n, struct cut a, struct cut b, unsigned char *keep,
		    uint64_t eq[2])
{
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
		between_avx512(x, n, a, b, keep, eq);
	else
		between_generic(x, n, a, b, keep, eq);
}

/* filter_generic, 16 keys at a time: the matching ones compressed to the
 * front of a vector, all 16 lanes stored at w (w + 16 <= j + 16: only keys
 * already loaded are overwritten). */
__attribute__((target("avx512f,popcnt")))
static size_t filter_avx512(const float *x, uint32_t *scratch, size_t m, int shift,
			    uint32_t mask, uint32_t b)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), vm = _mm512_set1_epi32((int)mask);
	const __m512i vb = _mm512_set1_epi32((int)b);
	const __m128i sh = _mm_cvtsi32_si128(shift);
	size_t w = 0, j = 0;

	for (; j + 16 <= m; j += 16) {
		__m512i key = x ? _mm512_and_si512(_mm512_loadu_si512(x + j), abs)
				: _mm512_loadu_si512(scratch + j);
		__mmask16 k = _mm512_cmpeq_epi32_mask(
			_mm512_and_si512(_mm512_srl_epi32(key, sh), vm), vb);

		_mm512_storeu_si512(scratch + w, _mm512_maskz_compress_epi32(k, key));
		w += (size_t)__builtin_popcount(k);
	}
	for (; j < m; j++) {
		uint32_t key = x ? weld_key(x[j]) : scratch[j];

		scratch[w] = key;
		w += (key >> shift & mask) == b;
	}
	return w;
}

/* The first r of the set bits of m (all of them when it has no more). */
__attribute__((target("bmi2"), always_inline))
static inline uint64_t first_bits(uint64_t m, uint64_t r)
{
	return r >= 64 ? m : _pdep_u64((1ull << r) - 1, m);
}

/* mask_generic, 64 keys at a time: their masks make 64 bytes of 0/1, the
 * equal keys kept picked from their mask by a bit deposit. */
__attribute__((target("avx512f,avx512bw,bmi2,popcnt")))
static uint64_t mask_avx512(const float *x, size_t n, struct run *r, unsigned char *keep)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), vt = _mm512_set1_epi32((int)r->t);
	const __m512i one = _mm512_set1_epi8(1);
	uint64_t c = 0, left = r->left;
	size_t j = 0;

	for (; j + 64 <= n; j += 64) {
		uint64_t gt = 0, e = 0, take;

		for (int i = 0; i < 4; i++) {
			__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j + 16 * i), abs);

			gt |= (uint64_t)_cvtmask16_u32(_mm512_cmpgt_epu32_mask(key, vt)) << (16 * i);
			e |= (uint64_t)_cvtmask16_u32(_mm512_cmpeq_epi32_mask(key, vt)) << (16 * i);
		}
		take = first_bits(e, left);
		left -= (uint64_t)__builtin_popcountll(take);
		c += (uint64_t)__builtin_popcountll(e);
		_mm512_storeu_si512(keep + j, _mm512_maskz_mov_epi8(_cvtu64_mask64(gt | take), one));
	}
	r->left = left;
	return c + mask_generic(x + j, n - j, r, keep + j);
}

/* pair_generic, 64 keys at a time, as mask_avx512 does each selection. */
__attribute__((target("avx512f,avx512bw,bmi2,popcnt")))
static void pair_avx512(const float *x, size_t n, struct run *a, struct run *b,
			unsigned char *keep)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), one = _mm512_set1_epi8(1);
	const __m512i ta = _mm512_set1_epi32((int)a->t), tb = _mm512_set1_epi32((int)b->t);
	uint64_t la = a->left, lb = b->left;
	size_t j = 0;

	for (; j + 64 <= n; j += 64) {
		uint64_t ga = 0, qa = 0, gb = 0, qb = 0;

		for (int i = 0; i < 4; i++) {
			__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j + 16 * i), abs);

			ga |= (uint64_t)_cvtmask16_u32(_mm512_cmpgt_epu32_mask(key, ta)) << (16 * i);
			qa |= (uint64_t)_cvtmask16_u32(_mm512_cmpeq_epi32_mask(key, ta)) << (16 * i);
			gb |= (uint64_t)_cvtmask16_u32(_mm512_cmpgt_epu32_mask(key, tb)) << (16 * i);
			qb |= (uint64_t)_cvtmask16_u32(_mm512_cmpeq_epi32_mask(key, tb)) << (16 * i);
		}
		qa = first_bits(qa, la);
		qb = first_bits(qb, lb);
		la -= (uint64_t)__builtin_popcountll(qa);
		lb -= (uint64_t)__builtin_popcountll(qb);
		_mm512_storeu_si512(keep + j, _mm512_maskz_mov_epi8(_cvtu64_mask64((ga | qa) & ~(gb | qb)),
								    one));
	}
	a->left = la;
	b->left = lb;
	pair_generic(x + j, n - j, a, b, keep + j);
}

static bool mask_lanes(void)
{
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("bmi2");
}

static uint64_t mask_run(const float *x, size_t n, struct run *r, unsigned char *keep)
{
	return mask_lanes() ? mask_avx512(x, n, r, keep) : mask_generic(x, n, r, keep);
}

static void pair_run(const float *x, size_t n, struct run *a, struct run *b, unsigned char *keep)
{
	if (mask_lanes())
		pair_avx512(x, n, a, b, keep);
	else
		pair_generic(x, n, a, b, keep);
}

static size_t filter_digit(const float *x, uint32_t *scratch, size_t m, int shift, uint32_t mask,
			   uint32_t b)
{
	if (__builtin_cpu_supports("avx512f"))
		return filter_avx512(x, scratch, m, shift, mask, b);
	return filter_generic(x, scratch, m, shift, mask, b);
}

/* window_generic, 16 keys at a time, compressed into a register and all
 * 16 lanes stored (as record_avx512 does); the counts kept per lane. */
__attribute__((target("avx512f,popcnt")))
static size_t window_avx512(const float *x, size_t n, uint32_t lo, uint32_t hi, uint32_t p,
			    uint32_t *out, uint64_t *eq, uint64_t *above)
{
	const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), one = _mm512_set1_epi32(1);
	const __m512i vlo = _mm512_set1_epi32((int)lo), vw = _mm512_set1_epi32((int)(hi - lo));
	const __m512i vhi = _mm512_set1_epi32((int)hi), vp = _mm512_set1_epi32((int)p);
	__m512i ce = _mm512_setzero_si512(), ca = _mm512_setzero_si512();
	size_t w = 0, j = 0;

	for (; j + 16 <= n; j += 16) {
		__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + j), abs);
		__mmask16 in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(key, vlo), vw);
		__mmask16 e = _mm512_cmpeq_epi32_mask(key, vp);

		ce = _mm512_mask_add_epi32(ce, e, ce, one);
		ca = _mm512_mask_add_epi32(ca, _mm512_cmpgt_epu32_mask(key, vhi), ca, one);
		in = _kandn_mask16(e, in);
		_mm512_storeu_si512(out + w, _mm512_maskz_compress_epi32(in, key));
		w += (size_t)__builtin_popcount(in);
	}
	*eq += (uint64_t)(uint32_t)_mm512_reduce_add_epi32(ce);
	*above += (uint64_t)(uint32_t)_mm512_reduce_add_epi32(ca);
	return w + window_generic(x + j, n - j, lo, hi, p, out + w, eq, above);
}

size_t weld_window_keys(const float *x, size_t n, uint32_t lo, uint32_t hi, uint32_t p,
			uint32_t *out, uint64_t *eq, uint64_t *above)
{
	if (__builtin_cpu_supports("avx512f") && n < (1ull << 32))  /* lane totals fit */
		return window_avx512(x, n, lo, hi, p, out, eq, above);
	return window_generic(x, n, lo, hi, p, out, eq, above);
}

size_t weld_record_keys(const float *x, size_t n, const struct weld_record_range *r,
			uint32_t *out, uint64_t *pc, uint64_t *above)
{
	if (__builtin_cpu_supports("avx512f") && n < (1ull << 32))  /* lane totals fit */
		return record_avx512(x, n, r, out, pc, above);
	return weld_record_keys_generic(x, n, r, out, pc, above);
}
#else
size_t weld_window_keys(const float *x, size_t n, uint32_t lo, uint32_t hi, uint32_t p,
			uint32_t *out, uint64_t *eq, uint64_t *above)
{
	return window_generic(x, n, lo, hi, p, out, eq, above);
}

static uint64_t mask_run(const float *x, size_t n, struct run *r, unsigned char *keep)
{
	return mask_generic(x, n, r, keep);
}

static void pair_run(const float *x, size_t n, struct run *a, struct run *b, unsigned char *keep)
{
	pair_generic(x, n, a, b, keep);
}

static size_t filter_digit(const float *x, uint32_t *scratch, size_t m, int shift, uint32_t mask,
			   uint32_t b)
{
	return filter_generic(x, scratch, m, shift, mask, b);
}

static void between(const float *x, size_t n, struct cut a, struct cut b, unsigned char *keep,
		    uint64_t eq[2])
{
	between_generic(x, n, a, b, keep, eq);
}

size_t weld_record_keys(const float *x, size_t n, const struct weld_record_range *r,
			uint32_t *out, uint64_t *pc, uint64_t *above)
{
	return weld_record_keys_generic(x, n, r, out, pc, above);
}

#endif

uint64_t weld_topk_mask(const float *x, size_t n, const struct weld_topk *sel,
			uint64_t equal_before, unsigned char *keep)
{
	struct run r = { sel->thresh,
			 equal_before < sel->keep_equal ? sel->keep_equal - equal_before : 0 };

	if (sel->all || sel->none) {
		memset(keep, sel->all, n);
		return 0;
	}
	return mask_run(x, n, &r, keep);
}

bool weld_topk_mask_between(const float *x, size_t n, const struct weld_topk *a,
			    uint64_t a_before, const struct weld_topk *b, uint64_t b_before,
			    unsigned char *keep, uint64_t *eq_a, uint64_t *eq_b)
{
	struct cut ca = { a->thresh, a_before < a->keep_equal };
	struct cut cb = { b->thresh, b_before < b->keep_equal };
	uint64_t eq[2] = { 0, 0 };

	/* while both count their equal keys, two scans are as fast */
	if (a->all || a->none || b->all || b->none || (ca.keep_eq && cb.keep_eq))
		return false;
	between(x, n, ca, cb, keep, eq);
	/* the kept equal elements of a selection run out inside the tile */
	if ((ca.keep_eq && a_before + eq[0] > a->keep_equal) ||
	    (cb.keep_eq && b_before + eq[1] > b->keep_equal))
		return false;
	*eq_a = eq[0];
	*eq_b = eq[1];
	return true;
}

/* A selection of a whole unit as a scan: all, as key >= 0; none, as key
 * > KEY_MAX (keys are at most that). */
static struct run unit_run(const struct weld_topk *sel)
{
	if (sel->all)
		return (struct run){ 0, UINT64_MAX };
	if (sel->none)
		return (struct run){ 0x7FFFFFFFu, 0 };
	return (struct run){ sel->thresh, sel->keep_equal };
}

void weld_topk_mask_pair(const float *x, size_t n, const struct weld_topk *a,
			 const struct weld_topk *b, unsigned char *keep)
{
	struct run ra = unit_run(a), rb = unit_run(b);

	pair_run(x, n, &ra, &rb, keep);
}

/* A free slot for a new plateau key: one that counted nothing yet. */
static int plateau_slot(const struct weld_record_range *r, const uint64_t *pc)
{
	for (int i = 0; i < WELD_PLATEAUS; i++)
		if (r->plateau[i] == WELD_NO_KEY)
			return i;
	for (int i = 0; i < WELD_PLATEAUS; i++)
		if (!pc[i])
			return i;
	return -1;
}

/* Make key cand, held by c of the m keys of seg, plateau key `slot`:
 * count it and take it out of seg (order kept); returns the new length. */
static size_t plateau_take(uint32_t *seg, size_t m, uint32_t cand, uint64_t c,
			   struct weld_record_range *r, uint64_t *pc, int slot)
{
	size_t w = 0;

	r->plateau[slot] = cand;
	pc[slot] += c;
	for (size_t i = 0; i < m; i++) {
		seg[w] = seg[i];
		w += seg[i] != cand;
	}
	return w;
}

size_t weld_plateau_learn(uint32_t *seg, size_t m, struct weld_record_range *r, uint64_t *pc)
{
	enum { PROBES = 64, TRIES = 8 };
	uint32_t probe[PROBES];
	size_t np = m < PROBES ? m : PROBES;
	int tries = 0;

	/* probes spread over seg: a key held by an eighth of seg shows up at
	 * two of them with high probability (a miss only costs room) */
	for (size_t i = 0; i < np; i++)
		probe[i] = seg[i * m / np + (i * 7) % (m / np)];
	for (size_t i = 0; i < np && tries < TRIES; i++) {
		uint32_t cand = probe[i];
		size_t seen = 0;
		uint64_t c;
		int slot;

		for (size_t j = 0; j < np; j++)
			seen += probe[j] == cand;
		if (seen < 2 || weld_count_keys(probe, i, cand))
			continue;       /* rare, or tried already */
		tries++;
		c = weld_count_keys(seg, m, cand);
		if (c * 8 < m)
			continue;
		if ((slot = plateau_slot(r, pc)) < 0)
			break;
		m = plateau_take(seg, m, cand, c, r, pc, slot);
	}
	return m;
}

/* Bins weld_hist_pick passes over at a time while their sum falls short. */
#define PICK_BLOCK 64

uint32_t weld_hist_pick(const uint64_t *h, uint64_t need, uint64_t *above)
{
	return weld_hist_pick_from(h, WELD_HIST_BINS - 1, need, above);
}

uint32_t weld_hist_pick_from(const uint64_t *h, uint32_t from, uint64_t need, uint64_t *above)
{
	uint64_t acc = 0;
	uint32_t b, top = from + 1;

	/* whole blocks from the top (most high bins are empty), exactly */
	for (; top > PICK_BLOCK; top -= PICK_BLOCK) {
		uint64_t sum = 0;

		for (uint32_t i = top - PICK_BLOCK; i < top; i++)
			sum += h[i];
		if (acc + sum >= need)
			break;
		acc += sum;
	}
	for (b = top - 1; b > 0; b--) {
		if (acc + h[b] >= need)
			break;
		acc += h[b];
	}
	*above = acc;
	return b;
}

WELD_HOT uint64_t weld_count_keys(const uint32_t *keys, size_t n, uint32_t key)
{
	uint64_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += keys[j] == key;
	return c;
}

WELD_HOT uint64_t weld_count_equal(const float *x, size_t n, uint32_t key)
{
	uint64_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += weld_key(x[j]) == key;
	return c;
}
