/*
 * rank.c - per-row ranks (by counting) and exact sums of magnitudes: the
 * statistics of della, and its drop. See rank.h.
 */
#include "rank.h"
#include "merge.h"
#include "target_clones.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if WELD_AVX512
#include <immintrin.h>

#define AVX512_DRAWS "avx512f,avx512bw,avx512dq,avx512vl,popcnt"

/* Whether the processor runs the AVX-512 loops below. */
static bool avx512_draws(void)
{
	return __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl");
}
#endif

/* |x| as an integer key that orders like |x| (NaN above infinity). */
static inline uint32_t mag_key(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u & 0x7FFFFFFFu;
}

/* One value into the sums of its exponent field. */
static inline void xsum_one(uint64_t *m, uint64_t *nan, uint32_t k)
{
	uint32_t e = k >> 23, f = k & 0x7FFFFFu;

	if (e == 255) {
		*nan += f != 0;
		m[255] += f == 0;
	} else {
		m[e] += e ? f | 0x800000u : f;
	}
}

/* A block of values whose exponent fields are within XSPAN of the block's
 * largest, E, is summed as integers of the unit of exponent field E -
 * XSPAN: each below 2^(XSPAN + 24) of them, XBLOCK of them below 2^53; the
 * sum then goes to the tables in 24-bit parts, as three significands
 * would. Others (smaller values in the block, blocks near the ends of the
 * exponent range) go one by one. In 64-bit integers, each significand
 * shifted; with AVX-512 in double lanes, where every partial sum, an
 * integer of units below 2^53, is exact in any order. */
#define XBLOCK 128
#define XSPAN 22
_Static_assert(XSPAN + 24 + 7 <= 53 && XBLOCK <= 128, "a block's sum must be exact in double");

#if WELD_AVX512
/* Sixteen at a time, values x (floats or keys: the sign bit is cleared
 * either way) of keys at least lo in double lanes, into *v and, where
 * keep[i] (keep not NULL), *vk; the others but zeros counted in *small.
 * Returns where it stopped. */
__attribute__((target(AVX512_DRAWS)))
static size_t xsum_avx512(const uint32_t *x, const unsigned char *keep, size_t n, uint32_t lo,
			  double *v, double *vk, size_t *small)
{
	const __m512i vlo = _mm512_set1_epi32((int)lo), mag = _mm512_set1_epi32(0x7FFFFFFF);
	__m512d s0 = _mm512_setzero_pd(), s1 = s0, k0 = s0, k1 = s0;
	size_t i = 0, few = 0;

	for (; i + 16 <= n; i += 16) {
		__m512i key = _mm512_and_si512(_mm512_loadu_si512(x + i), mag);
		__mmask16 big = _mm512_cmpge_epu32_mask(key, vlo);
		__m512 f = _mm512_castsi512_ps(key);
		__m512d a0 = _mm512_maskz_cvtps_pd((__mmask8)big, _mm512_castps512_ps256(f));
		__m512d a1 = _mm512_maskz_cvtps_pd((__mmask8)(big >> 8),
						   _mm512_extractf32x8_ps(f, 1));

		s0 = _mm512_add_pd(s0, a0);
		s1 = _mm512_add_pd(s1, a1);
		if (keep) {
			__m128i kb = _mm_loadu_si128((const __m128i *)(const void *)(keep + i));
			__mmask16 k = _mm_test_epi8_mask(kb, kb);

			k0 = _mm512_mask_add_pd(k0, (__mmask8)k, k0, a0);
			k1 = _mm512_mask_add_pd(k1, (__mmask8)(k >> 8), k1, a1);
		}
		few += (size_t)__builtin_popcount(_mm512_mask_test_epi32_mask((__mmask16)~big, key,
									       key));
	}
	*v = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
	*vk = _mm512_reduce_add_pd(_mm512_add_pd(k0, k1));
	*small = few;
	return i;
}
#endif

/* The key of value i of x: floats, or keys already. Callers pass floats
 * as a constant, so that each loop below is compiled for one kind (and
 * on vectors): a test of the kind inside the loop would keep it scalar. */
static inline __attribute__((always_inline)) uint32_t key_at(const void *x, bool floats,
							     size_t i)
{
	return floats ? mag_key(((const float *)x)[i]) : ((const uint32_t *)x)[i];
}

/* One block of n values x (floats, or keys), whose magnitudes' keys are at
 * most kmax. With keep (else NULL), those whose flag keep[i] is 1 go into
 * kept as well, from the same pass. */
static inline __attribute__((always_inline)) void xsum_block_of(struct weld_xsum *s,
								struct weld_xsum *kept,
								const void *x, bool floats,
								const unsigned char *keep,
								size_t n, uint32_t kmax)
{
	size_t small = 0, i0 = 0;
	uint32_t e0;
	uint64_t v = 0, vk = 0;

	if (kmax >> 23 < XSPAN + 1 || kmax >> 23 > 200) {
		for (size_t i = 0; i < n; i++) {
			xsum_one(s->m, &s->nan, key_at(x, floats, i));
			if (keep && keep[i])
				xsum_one(kept->m, &kept->nan, key_at(x, floats, i));
		}
		return;
	}
	e0 = (kmax >> 23) - XSPAN;
#if WELD_AVX512
	if (avx512_draws()) {
		double dv, dk, unit;
		/* in units of exponent field e0: times 2^(150 - e0), exactly */
		uint64_t unit_bits = (uint64_t)(1023 + 150 - e0) << 52;

		i0 = xsum_avx512(x, keep, n, e0 << 23, &dv, &dk, &small);
		memcpy(&unit, &unit_bits, sizeof(unit));
		v = (uint64_t)(dv * unit);
		vk = (uint64_t)(dk * unit);
	}
#endif
	for (size_t i = i0; i < n; i++) {
		uint32_t key = key_at(x, floats, i), e = key >> 23;
		uint64_t sig = (key & 0x7FFFFFu) | 0x800000u, a = e >= e0 ? sig << (e - e0) : 0;

		v += a;
		if (keep)
			vk += a & ((uint64_t)0 - keep[i]);
		small += (e < e0) & (key != 0);
	}
	s->m[e0] += v & 0xFFFFFFu;
	s->m[e0 + 24] += v >> 24 & 0xFFFFFFu;
	s->m[e0 + 48] += v >> 48;
	if (keep) {
		kept->m[e0] += vk & 0xFFFFFFu;
		kept->m[e0 + 24] += vk >> 24 & 0xFFFFFFu;
		kept->m[e0 + 48] += vk >> 48;
	}
	for (size_t i = 0; i < n && small; i++) {
		uint32_t key = key_at(x, floats, i);

		if (key >> 23 < e0 && key) {
			xsum_one(s->m, &s->nan, key);
			if (keep && keep[i])
				xsum_one(kept->m, &kept->nan, key);
			small--;
		}
	}
}

static inline __attribute__((always_inline)) void xsum_block(struct weld_xsum *s, const float *y,
							     size_t n, uint32_t kmax)
{
	xsum_block_of(s, NULL, y, true, NULL, n, kmax);
}

WELD_HOT void weld_xsum_add_abs(struct weld_xsum *s, const float *x, size_t len)
{
	for (size_t b = 0; b < len; b += XBLOCK) {
		const float *y = x + b;
		size_t n = len - b < XBLOCK ? len - b : XBLOCK;
		uint32_t kmax = 0;

		for (size_t i = 0; i < n; i++) {
			uint32_t k = mag_key(y[i]);

			kmax = k > kmax ? k : kmax;
		}
		xsum_block(s, y, n, kmax);
	}
}

/* The same when every key is known to be at most kmax: each block is
 * scaled to it (the sum is exact either way). */
static inline __attribute__((always_inline)) void xsum_add_below(struct weld_xsum *s,
								 const float *x, size_t len,
								 uint32_t kmax)
{
	for (size_t b = 0; b < len; b += XBLOCK)
		xsum_block(s, x + b, len - b < XBLOCK ? len - b : XBLOCK, kmax);
}

void weld_xsum_merge(struct weld_xsum *dst, const struct weld_xsum *src)
{
	for (int e = 0; e < 256; e++)
		dst->m[e] += src->m[e];
	dst->nan += src->nan;
}

/* Limbs of the exact sum in units of 2^-149: exponent field e (e >= 1)
 * weighs 2^(e - 1) units, e = 0 (subnormal) 1 unit; 254 + 64 bits, and the
 * carries, fit in 6 limbs. */
#define LIMBS 6

static void limbs_add(uint64_t *l, uint64_t v, unsigned shift)
{
	unsigned __int128 c = (unsigned __int128)v << (shift % 64);

	for (unsigned i = shift / 64; i < LIMBS && c; i++) {
		c += l[i];
		l[i] = (uint64_t)c;
		c >>= 64;
	}
}

double weld_xsum_value(const struct weld_xsum *s)
{
	uint64_t l[LIMBS] = { 0 }, top, sticky = 0;
	int hi = LIMBS - 1, bit;

	if (s->nan)
		return NAN;
	if (s->m[255])
		return INFINITY;
	for (unsigned e = 0; e < 255; e++)
		if (s->m[e])
			limbs_add(l, s->m[e], e ? e - 1 : 0);
	while (hi >= 0 && !l[hi])
		hi--;
	if (hi < 0)
		return 0;
	/* the 64 bits from the highest set bit down, and whether any below is set */
	bit = 63 - __builtin_clzll(l[hi]);
	top = bit == 63 ? l[hi] : l[hi] << (63 - bit);
	if (hi > 0 && bit < 63)
		top |= l[hi - 1] >> (bit + 1);
	if (hi > 0)
		sticky = bit == 63 ? l[hi - 1] != 0 : (l[hi - 1] << (63 - bit)) != 0;
	for (int i = hi - 2; i >= 0 && !sticky; i--)
		sticky = l[i] != 0;
	/* bit 0 of top is below double's precision: or-ing the sticky bit into
	 * it breaks an exact half the way the whole number would */
	return ldexp((double)(top | sticky), 64 * hi + bit - 63 - 149);
}

/* Sort n (key, index) pairs by key, stably, by insertion: for a few. */
#define FEW_SORT 24

static inline void insertion_sort(uint32_t *k, uint32_t *ix, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t kk = k[i], ii = ix[i];
		size_t j = i;

		for (; j > 0 && k[j - 1] > kk; j--) {
			k[j] = k[j - 1];
			ix[j] = ix[j - 1];
		}
		k[j] = kk;
		ix[j] = ii;
	}
}

/*
 * Sort n (key, index) pairs by their low `bits` bits (the bits above are
 * the same in all of them), stably: nothing to do when all keys are equal
 * (a plateau), insertion for a few, else one counting pass on the next
 * digit (about log2(n) bits), a stable scatter through tk, ti, and the
 * same for each group.
 */
static void sort_msd(uint32_t *k, uint32_t *ix, size_t n, int bits, uint32_t *tk, uint32_t *ti)
{
	uint32_t cnt[257], diff = 0;
	int shift, dbits = 4, nbins;

	for (size_t i = 1; i < n; i++)
		diff |= k[i] ^ k[0];
	if (!diff)
		return;
	if (n <= FEW_SORT) {
		insertion_sort(k, ix, n);
		return;
	}
	/* the digit: about log2(n) bits (at most 8) below the highest bit in
	 * which the keys differ */
	while (dbits < 8 && ((size_t)1 << dbits) < n)
		dbits++;
	nbins = 1 << dbits;
	bits = 32 - __builtin_clz(diff) < bits ? 32 - __builtin_clz(diff) : bits;
	shift = bits > dbits ? bits - dbits : 0;
	memset(cnt, 0, (size_t)(nbins + 1) * sizeof(cnt[0]));
	for (size_t i = 0; i < n; i++)
		cnt[(k[i] >> shift & (uint32_t)(nbins - 1)) + 1]++;
	for (int d = 1; d <= nbins; d++)
		cnt[d] += cnt[d - 1];
	for (size_t i = 0; i < n; i++) {
		uint32_t p = cnt[k[i] >> shift & (uint32_t)(nbins - 1)]++;

		tk[p] = k[i];
		ti[p] = ix[i];
	}
	memcpy(k, tk, n * sizeof(*k));
	memcpy(ix, ti, n * sizeof(*ix));
	if (!shift)
		return;
	for (int d = 0, lo = 0; d < nbins; d++) {
		int hi = (int)cnt[d];

		if (hi - lo > 1)
			sort_msd(k + lo, ix + lo, (size_t)(hi - lo), shift, tk, ti);
		lo = hi;
	}
}

/*
 * Ranks of a row by counting. A bucket per value of the high 16 bits of a
 * magnitude (its exponent and first 7 mantissa bits), over the 2 * span
 * values below the row's largest (span from half the row's width up to
 * SPAN_MAX): such a bucket holds one magnitude when the low 16 bits are
 * zero, as they are for the difference of two bf16 numbers of one binade,
 * so its members rank by position alone. The others (low bits set) count
 * in a bucket of their own beside it, zeros in ZERO_BUCKETS, magnitudes
 * below the span in one more: a bucket of those that gets two members or
 * more is sorted (few elements on bf16 deltas; any float32 still ranks,
 * more slowly). The counting pass gives each element its position among
 * the members of its bucket before it: the rank of a one-magnitude bucket's
 * member is the bucket's last rank minus that position (the lower position
 * ranks higher). Every step is linear in the row, plateaus included.
 */
#define SPAN_MAX 1024
#define ZERO_BUCKETS 4  /* zeros by position mod 4: fewer counts in a row on one counter */
#define B_LOW (2 * ZERO_BUCKETS - 1)    /* below the span (odd: sorted) */
#define B_FIRST (2 * ZERO_BUCKETS)      /* the span: 2 buckets per high-bits value */
#define NB_MAX (B_FIRST + 2 * SPAN_MAX)

/* Where a row's scratch (8 w uint32_t) keeps what: keys and ranks by
 * position; the elements of odd buckets (or those the band lists); keys
 * and positions by rank for the buckets to sort (or the band's draws),
 * the sort's temporaries; the buckets (uint16) and keep flags (bytes) by
 * position. */
enum { R_KEY, R_RANK, R_LIST, R_SKEY, R_SPOS, R_TK, R_TI, R_BUCKET };

struct span {
	uint32_t lo;    /* high bits of the first value with its own buckets */
	size_t nb;      /* buckets in all */
};

static inline struct span row_span(size_t w, uint32_t kmax)
{
	uint32_t hmax = kmax >> 16, span = w / 2 < 1 ? 1 : w / 2 > SPAN_MAX ? SPAN_MAX : (uint32_t)(w / 2);
	uint32_t lo = hmax >= span - 1 ? hmax - (span - 1) : 0;

	return (struct span){ lo, B_FIRST + 2 * (size_t)(hmax - lo + 1) };
}

#define INLINE static inline __attribute__((always_inline))

/* The bucket of a nonzero key. */
INLINE uint32_t key_bucket(uint32_t k, uint32_t lo)
{
	uint32_t h = k >> 16;

	return h < lo ? B_LOW : B_FIRST + 2 * (h - lo) + ((k & 0xFFFFu) != 0);
}

/* Each element's bucket; zeros by position mod ZERO_BUCKETS, or all in
 * bucket 0 (zmask 0). */
INLINE void buckets_of(const uint32_t *restrict k, uint32_t w, uint32_t lo, uint32_t zmask,
		       uint16_t *restrict bk)
{
#pragma omp simd
	for (uint32_t i = 0; i < w; i++) {
		uint32_t b = key_bucket(k[i], lo), z = 2 * i & zmask;

		bk[i] = (uint16_t)(k[i] ? b : z);
	}
}

/* The counting pass: cnt[b] members of bucket b, pos[i] the members of
 * element i's bucket before it. A store per element would bound the loop:
 * in a row of at most 2^16, where positions fit 16 bits, they go four to
 * a store into p16 (w of them), then to pos on vectors. */
INLINE void count_buckets(const uint16_t *restrict bk, uint32_t w, uint32_t *restrict cnt,
			  uint32_t *restrict pos, uint16_t *restrict p16)
{
	uint32_t i = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (w <= 1u << 16) {
		for (; i + 4 <= w; i += 4) {
			uint64_t a = cnt[bk[i]]++, b = cnt[bk[i + 1]]++;
			uint64_t c = cnt[bk[i + 2]]++, d = cnt[bk[i + 3]]++;
			uint64_t x = a | b << 16 | c << 32 | d << 48;

			memcpy(p16 + i, &x, sizeof(x));
		}
		for (uint32_t j = 0; j < i; j++)
			pos[j] = p16[j];
	}
#else
	(void)p16;
#endif
	for (; i < w; i++)
		pos[i] = cnt[bk[i]]++;
}

/* The positions of the elements of odd buckets (one < 0), or of bucket
 * one, ascending, into li; returns how many. No branch: some are picked,
 * most are not. */
static uint32_t pick_generic(const uint16_t *bk, uint32_t i0, uint32_t w, int one, uint32_t *li)
{
	uint32_t m = 0;

	for (uint32_t i = i0; i < w; i++) {
		li[m] = i;
		m += one < 0 ? bk[i] & 1 : bk[i] == one;
	}
	return m;
}

#if WELD_AVX512
/* 32 buckets at a time: the positions of the picked ones compressed into
 * a register, 16 at a time, and all 16 lanes stored (li has room: no more
 * are picked than looked at). */
__attribute__((target("avx512f,avx512bw,popcnt")))
static uint32_t pick_avx512(const uint16_t *bk, uint32_t w, int one, uint32_t *li)
{
	const __m512i odd = _mm512_set1_epi16(1), b = _mm512_set1_epi16((short)one);
	const __m512i step = _mm512_set1_epi32(16);
	__m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	uint32_t m = 0, i = 0;

	for (; i + 32 <= w; i += 32) {
		__m512i x = _mm512_loadu_si512((const void *)(bk + i));
		__mmask32 p = one < 0 ? _mm512_test_epi16_mask(x, odd) : _mm512_cmpeq_epi16_mask(x, b);

		_mm512_storeu_si512(li + m, _mm512_maskz_compress_epi32((__mmask16)p, at));
		m += (uint32_t)__builtin_popcount(p & 0xFFFFu);
		at = _mm512_add_epi32(at, step);
		_mm512_storeu_si512(li + m, _mm512_maskz_compress_epi32((__mmask16)(p >> 16), at));
		m += (uint32_t)__builtin_popcount(p >> 16);
		at = _mm512_add_epi32(at, step);
	}
	return m + pick_generic(bk, i, w, one, li + m);
}

static uint32_t pick(const uint16_t *bk, uint32_t w, int one, uint32_t *li)
{
	if (__builtin_cpu_supports("avx512bw"))
		return pick_avx512(bk, w, one, li);
	return pick_generic(bk, 0, w, one, li);
}
#else
static uint32_t pick(const uint16_t *bk, uint32_t w, int one, uint32_t *li)
{
	return pick_generic(bk, 0, w, one, li);
}
#endif

/* The members of odd buckets of two members or more: those sort_odd sorts. */
INLINE uint32_t odd_to_sort(const uint32_t *restrict cnt, size_t nb)
{
	uint32_t n = 0;

#pragma omp simd reduction(+ : n)
	for (uint32_t b = 1; b < nb; b += 2)
		n += cnt[b] > 1 ? cnt[b] : 0;
	return n;
}

/* A prefix sum on vectors: gcc does it, clang does not (and says so). */
#if defined(__GNUC__) && !defined(__clang__)
#define SCAN_LOOP _Pragma("omp simd reduction(inscan, + : acc)")
#define SCAN_INCLUSIVE _Pragma("omp scan inclusive(acc)")
#else
#define SCAN_LOOP
#define SCAN_INCLUSIVE
#endif

/* last[b]: the rank - 1 of bucket b's last element (a prefix sum). */
INLINE void last_ranks(const uint32_t *restrict cnt, size_t nb, uint32_t *restrict last)
{
	uint32_t acc = 0;

	SCAN_LOOP
	for (size_t b = 0; b < nb; b++) {
		acc += cnt[b];
		SCAN_INCLUSIVE
		last[b] = acc - 1;
	}
}

/*
 * The ranks of keys k[0..w) (DESIGN 4.1's order from the bottom), bk their
 * buckets (row_buckets, in the scratch; R_LIST its temporary). The count
 * fills cnt, pos and last[0..NB_MAX): the element at position i has rank
 * - 1 last[bk[i]] - pos[i], exactly but in odd buckets of two or more,
 * where it is one of its bucket's ranks (sort_odd makes those exact too).
 */
INLINE void row_count(const uint16_t *restrict bk, uint32_t w, struct span sp,
		      uint32_t *restrict cnt, uint32_t *restrict pos, uint32_t *restrict last,
		      uint32_t *scratch)
{
	memset(cnt, 0, sp.nb * sizeof(cnt[0]));
	count_buckets(bk, w, cnt, pos, (uint16_t *)(void *)(scratch + R_LIST * (size_t)w));
	last_ranks(cnt, sp.nb, last);
}

/* Then the odd buckets of two or more (when odd_to_sort finds some): their members, in their bucket's
 * ranks from the last position to the first, sorted on the keys, stably,
 * rank by magnitude and equal ones the lower position higher; pos then
 * says their ranks. */
INLINE void sort_odd(const uint32_t *k, uint32_t w, uint32_t *cnt,
		     uint32_t *pos, const uint32_t *last, uint32_t *scratch)
{
	uint32_t *li = scratch + R_LIST * (size_t)w, *sk = scratch + R_SKEY * (size_t)w;
	uint32_t *si = scratch + R_SPOS * (size_t)w;
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w);
	uint32_t m = pick(bk, w, -1, li), n = 0;

	for (uint32_t j = 0; j < m; j++) {
		li[n] = li[j];
		n += cnt[bk[li[j]]] > 1;
	}
	for (uint32_t j = 0; j < n; j++) {
		uint32_t i = li[j], r = last[bk[i]] - pos[i];

		sk[r] = k[i];
		si[r] = i;
	}
	for (uint32_t j = 0; j < n; j++) {
		uint32_t b = bk[li[j]], c = cnt[b], first = last[b] + 1 - c;

		if (c < 2)
			continue;       /* sorted already */
		sort_msd(sk + first, si + first, c, 32, scratch + R_TK * (size_t)w,
			 scratch + R_TI * (size_t)w);
		for (uint32_t r = first; r < first + c; r++)
			pos[si[r]] = last[b] - r;
		cnt[b] = 0;
	}
}

INLINE void row_ranks(const uint32_t *k, uint32_t w, struct span sp, uint32_t *pos,
		      uint32_t *last, uint32_t *scratch)
{
	uint32_t cnt[NB_MAX];

	row_count((const uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w), w, sp, cnt, pos,
		  last, scratch);
	if (odd_to_sort(cnt, sp.nb))
		sort_odd(k, w, cnt, pos, last, scratch);
}

/* Keys (|x| as integers that order like |x|, NaN above infinity) and
 * their largest; returns what zeros the row holds: bit 0 any, bit 1 a -0. */
INLINE uint32_t keys_of(const float *restrict v, uint32_t w, uint32_t *restrict k,
			uint32_t *kmax_out)
{
	uint32_t kmax = 0, zeros = 0, signed0 = 0;

#pragma omp simd reduction(max : kmax) reduction(| : zeros, signed0)
	for (uint32_t i = 0; i < w; i++) {
		uint32_t u;

		memcpy(&u, &v[i], sizeof(u));
		k[i] = u & 0x7FFFFFFFu;
		kmax = k[i] > kmax ? k[i] : kmax;
		zeros |= k[i] == 0;
		signed0 |= u == 0x80000000u;
	}
	*kmax_out = kmax;
	return zeros | signed0 << 1;
}

/* Each element's bucket into the scratch, and the row's span. Zeros rank
 * among themselves by position only when exact_zeros (else each holds
 * some rank among the zeros': the caller does not need theirs). */
INLINE struct span row_buckets(const uint32_t *k, uint32_t w, uint32_t kmax, bool exact_zeros,
			       uint32_t *scratch)
{
	struct span sp = row_span(w, kmax);

	buckets_of(k, w, sp.lo, exact_zeros ? 0 : 2 * (ZERO_BUCKETS - 1),
		   (uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w));
	return sp;
}

WELD_HOT void weld_k_row_ranks(const float *v, size_t w, uint32_t *rank, uint32_t *scratch)
{
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * w);
	uint32_t kmax, last[NB_MAX];

	if (w < 2) {
		memset(rank, 0, w * sizeof(*rank));
		return;
	}
	keys_of(v, (uint32_t)w, scratch + R_KEY * w, &kmax);
	row_ranks(scratch + R_KEY * w, (uint32_t)w,
		  row_buckets(scratch + R_KEY * w, (uint32_t)w, kmax, true, scratch), rank, last,
		  scratch);
	for (size_t i = 0; i < w; i++)
		rank[i] = last[bk[i]] - rank[i];
}

/* The constants of DESIGN 4.9's draws (rng.c), for the loops below */
#define DRAW_ADD 0x9E3779B97F4A7C15ULL
#define DRAW_MUL1 0xBF58476D1CE4E5B9ULL
#define DRAW_MUL2 0x94D049BB133111EBULL

/* The 53 bits of element first + j's draw (DESIGN 4.9), to compare with a
 * weld_rng_threshold. */
static inline uint64_t draw53(uint64_t key, uint64_t j)
{
	uint64_t z = key + j + DRAW_ADD;

	z = (z ^ (z >> 30)) * DRAW_MUL1;
	z = (z ^ (z >> 27)) * DRAW_MUL2;
	z ^= z >> 31;
	return z >> 11;
}

/* x kept (y) or dropped (+0), by a bit mask: no branch on the draw */
static inline float keep_or_zero(float y, bool keep)
{
	uint32_t u;

	memcpy(&u, &y, sizeof(u));
	u &= (uint32_t)0 - (uint32_t)keep;
	memcpy(&y, &u, sizeof(y));
	return y;
}

/* The keep flags kb[0..w) (bytes 0 or 1) as bits, bit i % 8 of byte i / 8:
 * eight flags at a time, each moved to its bit of the top byte by one
 * multiplication (no two products meet, so nothing carries). */
static inline void pack_bits(const unsigned char *kb, size_t w, unsigned char *bits)
{
	size_t b = 0;

	for (; b < w / 8; b++) {
		uint64_t x;

		memcpy(&x, kb + 8 * b, sizeof(x));
		bits[b] = (unsigned char)((x * 0x0102040810204080ULL) >> 56);
	}
	if (w % 8) {
		unsigned char x = 0;

		for (size_t l = 0; l < w % 8; l++)
			x |= (unsigned char)(kb[8 * b + l] << l);
		bits[b] = x;
	}
}

/* The draw of element j against the threshold of p, when p is known to
 * lie in (0, 1) (no clamp: the loop then runs on vectors). */
static inline int64_t threshold_inside(double p)
{
	double x = p * 0x1p53;
	int64_t t = (int64_t)x;

	return t + ((double)t < x);
}

static inline bool keeps_inside(uint64_t key, uint64_t j, double p)
{
	return (int64_t)draw53(key, j) < threshold_inside(p);
}

/* p of the element of rank r + 1 in a row of w = wm1 + 1 (METHODS 3 step 3) */
static inline double p_of(uint32_t r, double lo, double wm1, double eps)
{
	return lo + (2 * ((double)r / wm1)) * eps;
}

/*
 * The drop by the band (no inverse, p known to lie in (0, 1)), for rows
 * whose odd buckets would take long to sort. An element keeps iff u <
 * p(rank), and p grows with the rank: u below p of the row's lowest rank
 * keeps whatever the rank, u at or above p of its highest drops. A pass
 * over the draws settles those (about 1 - 2 eps of the row) and lists the
 * others; each of these is settled by its bucket's range of ranks [f, l],
 * u against the line lo + r s that p lies on: below the line at f keeps,
 * at or above it at l drops, each with BAND_MARGIN to spare. The few
 * left ("open") take their exact rank, and step 3's p. Any margin above
 * p's rounding error (2^-50 or so) gives the same bytes; this one leaves
 * about one draw in 2000 open beside those of the ranges.
 */
#define BAND_MARGIN 0x1p-12

/* The draws that keep whatever the rank (below sure) and that keep for
 * none (never and above), and the slope s of lo + r s. */
struct band {
	int64_t sure, never;
	double lo, s;
};

static inline struct band band_of(uint32_t w, double lo, double eps)
{
	double wm1 = (double)(w - 1);

	return (struct band){ threshold_inside(p_of(0, lo, wm1, eps)),
			      threshold_inside(p_of(w - 1, lo, wm1, eps)), lo, 2 * eps / wm1 };
}

/* Elements i0..w of the draw pass, one at a time: v and kb of the settled
 * ones, the others' positions into li and draws into lu (kb 0, v as it
 * was); returns how many are listed, from m listed before. */
static uint32_t draws_generic(float *restrict v, uint32_t i0, uint32_t w, uint64_t key,
			      struct band bd, float factor, unsigned char *restrict kb,
			      uint32_t *restrict li, int64_t *restrict lu, uint32_t m)
{
	for (uint32_t i = i0; i < w; i++) {
		int64_t u = (int64_t)draw53(key, i);
		bool keep = u < bd.sure, mid = !keep && u < bd.never;

		if (!mid)
			v[i] = keep_or_zero(v[i] * factor, keep);
		kb[i] = keep;
		li[m] = i;
		lu[m] = u;
		m += mid;
	}
	return m;
}

#if WELD_AVX512
/* The lanes' counters for elements 0..7 of key, then draw53 of eight
 * elements from them (advanced to the next eight). */
__attribute__((target(AVX512_DRAWS))) static inline __m512i draws_from(uint64_t key)
{
	return _mm512_add_epi64(_mm512_set1_epi64((long long)(key + DRAW_ADD)),
				_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The 64 bits of splitmix64 for eight elements (their top 53 are draw53's). */
__attribute__((target(AVX512_DRAWS))) static inline __m512i mix8(__m512i *at)
{
	__m512i z = *at;

	z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
			       _mm512_set1_epi64((long long)DRAW_MUL1));
	z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
			       _mm512_set1_epi64((long long)DRAW_MUL2));
	*at = _mm512_add_epi64(*at, _mm512_set1_epi64(8));
	return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

__attribute__((target(AVX512_DRAWS))) static inline __m512i draws8(__m512i *at)
{
	return _mm512_srli_epi64(mix8(at), 11);
}

/* Eight at a time, the draws in 64-bit lanes. */
__attribute__((target(AVX512_DRAWS)))
static uint32_t draws_avx512(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			     unsigned char *kb, uint32_t *li, int64_t *lu)
{
	const __m512i sure = _mm512_set1_epi64(bd.sure), never = _mm512_set1_epi64(bd.never);
	const __m256 fac = _mm256_set1_ps(factor);
	__m512i at = draws_from(key);
	__m256i pos = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	uint32_t i = 0, m = 0;

	for (; i + 8 <= w; i += 8) {
		__m512i u = draws8(&at);
		__mmask8 keep, mid;
		__m256 y;

		keep = _mm512_cmplt_epi64_mask(u, sure);
		mid = _mm512_cmplt_epi64_mask(u, never) & (__mmask8)~keep;
		y = _mm256_loadu_ps(v + i);
		y = _mm256_mask_blend_ps(keep, _mm256_maskz_mov_ps(mid, y), _mm256_mul_ps(y, fac));
		_mm256_storeu_ps(v + i, y);
		_mm_storel_epi64((__m128i *)(void *)(kb + i), _mm_maskz_set1_epi8(keep, 1));
		/* all lanes stored, the listed ones first (li and lu have room) */
		_mm256_storeu_si256((__m256i *)(void *)(li + m), _mm256_maskz_compress_epi32(mid, pos));
		_mm512_storeu_si512(lu + m, _mm512_maskz_compress_epi64(mid, u));
		m += (uint32_t)__builtin_popcount(mid);
		pos = _mm256_add_epi32(pos, _mm256_set1_epi32(8));
	}
	return draws_generic(v, i, w, key, bd, factor, kb, li, lu, m);
}

static uint32_t draws_listed(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			     unsigned char *kb, uint32_t *li, int64_t *lu)
{
	if (avx512_draws())
		return draws_avx512(v, w, key, bd, factor, kb, li, lu);
	return draws_generic(v, 0, w, key, bd, factor, kb, li, lu, 0);
}
#else
static uint32_t draws_listed(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			     unsigned char *kb, uint32_t *li, int64_t *lu)
{
	return draws_generic(v, 0, w, key, bd, factor, kb, li, lu, 0);
}
#endif

/*
 * Whether a row with more than w / BAND_ODD members of odd buckets to sort
 * (float32 deltas) goes by the band rather than sort_odd: when about
 * BAND_PICKS odd buckets at most are expected to hold an open element,
 * and about w / BAND_OPEN elements at most are expected open (each a few
 * dozen instructions). One element of bucket b is open with chance at
 * most q (cnt[b] - 1), q = 2 eps / (w - 1), the line's slope.
 */
#define BAND_ODD 16
#define BAND_PICKS 4
#define BAND_OPEN 16

INLINE bool band_pays(const uint32_t *restrict cnt, size_t nb, uint32_t w, struct band bd)
{
	float q = (float)bd.s, picks = 0, open = 0;

#pragma omp simd reduction(+ : picks, open)
	for (size_t b = 0; b < nb; b++) {
		float c = (float)cnt[b], x = q * c * (c - 1);

		open += x;
		picks += b & 1 ? (x < 1 ? x : 1) : 0;
	}
	return picks <= BAND_PICKS && open <= (float)(w / BAND_OPEN);
}

/* The exact ranks - 1 of odd bucket b's members, as pos[i] = last[b] -
 * rank: sorted on their keys, from the last position to the first,
 * stably. */
static void odd_ranks(const uint32_t *k, const uint16_t *bk, uint32_t w, uint32_t b,
		      uint32_t *pos, uint32_t *scratch)
{
	uint32_t *li = scratch + R_LIST * (size_t)w, *sk = scratch + R_SKEY * (size_t)w;
	uint32_t *si = scratch + R_SPOS * (size_t)w, m = pick(bk, w, (int)b, li);

	for (uint32_t j = 0; j < m; j++) {
		sk[j] = k[li[m - 1 - j]];
		si[j] = li[m - 1 - j];
	}
	sort_msd(sk, si, m, 32, scratch + R_TK * (size_t)w, scratch + R_TI * (size_t)w);
	for (uint32_t j = 0; j < m; j++)
		pos[si[j]] = m - 1 - j;
}

#define RANKED (1u << 31)       /* in cnt[b]: odd_ranks ranked bucket b */

/* Element i, open, from its exact rank - 1 r and step 3's p. */
static inline void settle_one(float *v, unsigned char *kb, uint32_t i, uint64_t key, uint32_t r,
			      double d, double eps, double wm1, float factor)
{
	bool keep = keeps_inside(key, i, p_of(r, d - eps, wm1, eps));

	v[i] = keep_or_zero(v[i] * factor, keep);
	kb[i] = keep;
}

/* The band's open elements (flag 2 in kb, v as it was): last[b] - pos[i],
 * in an odd bucket once odd_ranks has sorted it (the first time one of
 * its members is open). */
static void settle_band(float *v, uint32_t w, uint64_t key, double d, double eps, float factor,
			const uint32_t *k, uint32_t *cnt, uint32_t *pos, const uint32_t *last,
			unsigned char *kb, uint32_t *scratch)
{
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w);
	double wm1 = (double)(w - 1);

	for (uint32_t i8 = 0; i8 < w; i8 += 8) {
		uint64_t x = 0;

		memcpy(&x, kb + i8, w - i8 < 8 ? w - i8 : 8);
		for (x &= 0x0202020202020202ULL; x; x &= x - 1) {
			uint32_t i = i8 + (uint32_t)__builtin_ctzll(x) / 8, b = bk[i];

			if ((b & 1) && !(cnt[b] & RANKED)) {
				odd_ranks(k, bk, w, b, pos, scratch);
				cnt[b] |= RANKED;
			}
			settle_one(v, kb, i, key, last[b] - pos[i], d, eps, wm1, factor);
		}
	}
}

/*
 * The drop of a row counted but not sorted (row_count): the draw pass,
 * then the listed ones one at a time (two lookups each: on vectors,
 * gathers cost more than they save). The open ones (flag 2 in kb, v as
 * it was) take their exact rank: last[b] - pos[i] in a bucket of one
 * magnitude, and in an odd one once odd_ranks has sorted it (the first
 * time one of its members is open).
 */
static void della_band(float *restrict v, uint32_t w, uint64_t key, struct band bd, double d,
		       double eps, float factor, const uint32_t *restrict k, uint32_t *restrict cnt,
		       uint32_t *restrict pos, const uint32_t *restrict last, unsigned char *kb,
		       uint32_t *scratch)
{
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w);
	uint32_t *li = scratch + R_LIST * (size_t)w;
	/* the draws on 8 bytes (as the scratch is): R_SKEY w made even, one
	 * slot into R_TK at most, unused while the list is */
	int64_t *lu = (int64_t *)(void *)(scratch + R_SKEY * (size_t)w + R_SKEY * (size_t)w % 2);
	uint32_t m = draws_listed(v, w, key, bd, factor, kb, li, lu), n = 0;

	for (uint32_t j = 0; j < m; j++) {
		uint32_t i = li[j], b = bk[i], l = last[b], f = l + 1 - cnt[b];
		double x = (double)lu[j] * 0x1p-53;
		unsigned keep = x < bd.lo + (double)f * bd.s - BAND_MARGIN;
		unsigned open = !keep & (x < bd.lo + (double)l * bd.s + BAND_MARGIN);
		uint32_t y, z;
		float vy = v[i] * factor;

		memcpy(&y, &vy, sizeof(y));
		memcpy(&z, &v[i], sizeof(z));
		y = (y & (0u - keep)) | (z & (0u - open));
		memcpy(&v[i], &y, sizeof(y));
		kb[i] = (unsigned char)(keep | open << 1);
		n += open;
	}
	if (n)
		settle_band(v, w, key, d, eps, factor, k, cnt, pos, last, kb, scratch);
}

/* Each element's rank - 1 in place of its position in its bucket
 * (elements i0..w, one at a time: loads from the bucket table). */
static void ranks_generic(const uint16_t *restrict bk, uint32_t i0, uint32_t w,
			  const uint32_t *restrict last, uint32_t *restrict pos)
{
	for (uint32_t i = i0; i < w; i++)
		pos[i] = last[bk[i]] - pos[i];
}

#if WELD_AVX512
/* Sixteen at a time, the table's entries gathered. */
__attribute__((target(AVX512_DRAWS)))
static void ranks_avx512(const uint16_t *bk, uint32_t w, const uint32_t *last, uint32_t *pos)
{
	uint32_t i = 0;

	for (; i + 16 <= w; i += 16) {
		__m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(bk + i)));

		_mm512_storeu_si512(pos + i, _mm512_sub_epi32(_mm512_i32gather_epi32(b, last, 4),
							      _mm512_loadu_si512(pos + i)));
	}
	ranks_generic(bk, i, w, last, pos);
}

static void ranks_in_place(const uint16_t *bk, uint32_t w, const uint32_t *last, uint32_t *pos)
{
	if (avx512_draws())
		ranks_avx512(bk, w, last, pos);
	else
		ranks_generic(bk, 0, w, last, pos);
}
#else
static void ranks_in_place(const uint16_t *bk, uint32_t w, const uint32_t *last, uint32_t *pos)
{
	ranks_generic(bk, 0, w, last, pos);
}
#endif

/* The drop of a ranked row (no inverse, p known to lie in (0, 1)) without
 * step 3's p for every element: u against the line lo + r s, r = last[bk[i]]
 * - pos[i] the rank - 1 of element i, with BAND_MARGIN to spare; the few
 * within it are left open (v as it was) and listed in li. Returns how
 * many, from n listed before. Elements i0..w, one at a time. */
static uint32_t line_generic(float *restrict v, uint32_t i0, uint32_t w, uint64_t key,
			     struct band bd, float factor, const uint16_t *restrict bk,
			     const uint32_t *restrict last, const uint32_t *restrict pos,
			     unsigned char *restrict kb, uint32_t *restrict li, uint32_t n)
{
	for (uint32_t i = i0; i < w; i++) {
		double x = (double)(int64_t)draw53(key, i) * 0x1p-53;
		double line = bd.lo + (double)(last[bk[i]] - pos[i]) * bd.s;
		unsigned keep = x < line - BAND_MARGIN;
		unsigned open = !keep & (x < line + BAND_MARGIN);

		if (!open)
			v[i] = keep_or_zero(v[i] * factor, keep);
		kb[i] = (unsigned char)keep;
		li[n] = i;
		n += open;
	}
	return n;
}

#if WELD_AVX512
/*
 * Sixteen at a time, in float lanes scaled by 2^32: the top 32 bits of
 * each draw (two vectors of eight, their high halves) against the line.
 * Each of the float values is within 2^11 of what it stands for (the
 * draw's 53 bits, lo + r s; roundings of 2^-24 relative, all below 2^32),
 * far inside BAND_MARGIN's 2^20: what keeps here keeps, what drops drops,
 * and the others are left open as in line_generic. The ranks' last[bk[i]]
 * are gathered.
 */
__attribute__((target(AVX512_DRAWS)))
static uint32_t line_avx512(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			    const uint16_t *bk, const uint32_t *last, const uint32_t *pos,
			    unsigned char *kb, uint32_t *li)
{
	const __m512 lo = _mm512_set1_ps((float)(bd.lo * 0x1p32));
	const __m512 s = _mm512_set1_ps((float)(bd.s * 0x1p32));
	const __m512 margin = _mm512_set1_ps((float)(BAND_MARGIN * 0x1p32));
	const __m512 fac = _mm512_set1_ps(factor);
	const __m512i high = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
					       29, 31);
	__m512i at = draws_from(key);
	__m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	uint32_t i = 0, n = 0;

	for (; i + 16 <= w; i += 16) {
		__m512i z0 = mix8(&at), z1 = mix8(&at);
		__m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(bk + i)));
		__m512i r = _mm512_sub_epi32(_mm512_i32gather_epi32(b, last, 4),
					     _mm512_loadu_si512((const void *)(pos + i)));
		__m512 x = _mm512_cvtepu32_ps(_mm512_permutex2var_epi32(z0, high, z1)), line, y;
		__mmask16 keep, open;

		line = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_cvtepu32_ps(r), s));
		keep = _mm512_cmp_ps_mask(x, _mm512_sub_ps(line, margin), _CMP_LT_OQ);
		open = _mm512_mask_cmp_ps_mask((__mmask16)~keep, x, _mm512_add_ps(line, margin),
					       _CMP_LT_OQ);
		y = _mm512_loadu_ps(v + i);
		y = _mm512_mask_blend_ps(keep, _mm512_maskz_mov_ps(open, y), _mm512_mul_ps(y, fac));
		_mm512_storeu_ps(v + i, y);
		_mm_storeu_si128((__m128i *)(void *)(kb + i), _mm_maskz_set1_epi8(keep, 1));
		if (open) {
			/* all lanes stored, the listed ones first (li has room) */
			_mm512_storeu_si512(li + n, _mm512_maskz_compress_epi32(open, idx));
			n += (uint32_t)__builtin_popcount(open);
		}
		idx = _mm512_add_epi32(idx, _mm512_set1_epi32(16));
	}
	return line_generic(v, i, w, key, bd, factor, bk, last, pos, kb, li, n);
}

static uint32_t della_line(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			   const uint16_t *bk, const uint32_t *last, const uint32_t *pos,
			   unsigned char *kb, uint32_t *li)
{
	if (avx512_draws())
		return line_avx512(v, w, key, bd, factor, bk, last, pos, kb, li);
	return line_generic(v, 0, w, key, bd, factor, bk, last, pos, kb, li, 0);
}
#else
static uint32_t della_line(float *v, uint32_t w, uint64_t key, struct band bd, float factor,
			   const uint16_t *bk, const uint32_t *last, const uint32_t *pos,
			   unsigned char *kb, uint32_t *li)
{
	return line_generic(v, 0, w, key, bd, factor, bk, last, pos, kb, li, 0);
}
#endif

/* The drop of a ranked row by the line (no inverse, p known to lie in
 * (0, 1)), pos[i] the position of element i in its bucket. */
INLINE void della_lined(float *restrict v, uint32_t w, uint64_t key, struct band bd, double d,
			double eps, float factor, const uint32_t *restrict pos,
			const uint32_t *restrict last, unsigned char *restrict kb, uint32_t *scratch)
{
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w);
	uint32_t *li = scratch + R_LIST * (size_t)w, n;

	n = della_line(v, w, key, bd, factor, bk, last, pos, kb, li);
	for (uint32_t j = 0; j < n; j++)
		settle_one(v, kb, li[j], key, last[bk[li[j]]] - pos[li[j]], d, eps, (double)(w - 1),
			   factor);
}

/*
 * The drop of a ranked row by --rescale inverse when every p is known to
 * lie in (0, 1) (METHODS 3 steps 3-5), rank[i] the rank - 1 of element i:
 * p from the rank in double exactly as step 3 writes it, the draw against
 * its threshold, the kept element divided by float(p). Elements i0..w.
 */
INLINE void inverse_generic(float *restrict v, uint32_t i0, uint32_t w, uint64_t key, double lo,
			    double eps, const uint32_t *restrict rank, unsigned char *restrict kb)
{
	double wm1 = (double)(w - 1);

#pragma omp simd
	for (uint32_t i = i0; i < w; i++) {
		double p = p_of(rank[i], lo, wm1, eps);
		bool keep = keeps_inside(key, i, p);

		v[i] = keep_or_zero(v[i] / (float)p, keep);
		kb[i] = keep;
	}
}

/* The memo of the drop by inverse (rank.h): per rank r - 1 of rows of w,
 * for lo = d - eps and eps, the threshold of p and float(p). */
struct weld_della_memo {
	size_t cap;     /* ranks it has room for */
	uint32_t w;     /* the rows it holds, 0 for none */
	double lo, eps;
	int64_t *thr;
	float *pf;
};

struct weld_della_memo *weld_della_memo_new(size_t cap)
{
	struct weld_della_memo *m;

	if (!cap || cap > SIZE_MAX / sizeof(int64_t) || !(m = calloc(1, sizeof(*m))))
		return NULL;
	m->cap = cap;
	m->thr = malloc(cap * sizeof(*m->thr));
	m->pf = malloc(cap * sizeof(*m->pf));
	if (!m->thr || !m->pf) {
		weld_della_memo_free(m);
		return NULL;
	}
	return m;
}

void weld_della_memo_free(struct weld_della_memo *m)
{
	if (!m)
		return;
	free(m->thr);
	free(m->pf);
	free(m);
}

/* The memo for rows of w (filled anew when it held others), or NULL. */
INLINE const struct weld_della_memo *memo_for(struct weld_della_memo *m, uint32_t w, double lo,
					      double eps)
{
	double wm1 = (double)(w - 1);

	if (!m || w > m->cap)
		return NULL;
	if (m->w == w && m->lo == lo && m->eps == eps)
		return m;
	for (uint32_t r = 0; r < w; r++) {
		double p = p_of(r, lo, wm1, eps);

		m->thr[r] = threshold_inside(p);
		m->pf[r] = (float)p;
	}
	m->w = w;
	m->lo = lo;
	m->eps = eps;
	return m;
}

/* della_inverse from a memo, elements i0..w, one at a time. */
INLINE void inverse_memo_generic(float *restrict v, uint32_t i0, uint32_t w, uint64_t key,
				 const struct weld_della_memo *m, const uint32_t *restrict rank,
				 unsigned char *restrict kb)
{
	for (uint32_t i = i0; i < w; i++) {
		bool keep = (int64_t)draw53(key, i) < m->thr[rank[i]];

		v[i] = keep_or_zero(v[i] / m->pf[rank[i]], keep);
		kb[i] = keep;
	}
}

#if WELD_AVX512
/* Eight at a time, the memo's entries gathered. Returns where it stopped. */
__attribute__((target(AVX512_DRAWS)))
static uint32_t inverse_memo_avx512(float *v, uint32_t w, uint64_t key,
				    const struct weld_della_memo *m, const uint32_t *rank,
				    unsigned char *kb)
{
	__m512i at = draws_from(key);
	uint32_t i = 0;

	for (; i + 8 <= w; i += 8) {
		__m256i r = _mm256_loadu_si256((const void *)(rank + i));
		__m512i thr = _mm512_i32gather_epi64(r, (const long long *)m->thr, 8);
		__m256 y = _mm256_div_ps(_mm256_loadu_ps(v + i), _mm256_i32gather_ps(m->pf, r, 4));
		__mmask8 keep = _mm512_cmplt_epi64_mask(draws8(&at), thr);

		_mm256_storeu_ps(v + i, _mm256_maskz_mov_ps(keep, y));
		_mm_storel_epi64((__m128i *)(void *)(kb + i), _mm_maskz_set1_epi8(keep, 1));
	}
	return i;
}

static uint32_t inverse_memo_fast(float *v, uint32_t w, uint64_t key,
				  const struct weld_della_memo *m, const uint32_t *rank,
				  unsigned char *kb)
{
	return avx512_draws() ? inverse_memo_avx512(v, w, key, m, rank, kb) : 0;
}
#else
static uint32_t inverse_memo_fast(float *v, uint32_t w, uint64_t key,
				  const struct weld_della_memo *m, const uint32_t *rank,
				  unsigned char *kb)
{
	(void)v, (void)w, (void)key, (void)m, (void)rank, (void)kb;
	return 0;
}
#endif

/* The drop by inverse of a counted row, pos[i] the position of element i
 * in its bucket (made its rank - 1 here): from the memo when there is one. */
INLINE void della_inverse(float *v, uint32_t w, uint64_t key, double lo, double eps,
			  const uint16_t *bk, const uint32_t *last, uint32_t *pos, unsigned char *kb,
			  struct weld_della_memo *memo)
{
	const struct weld_della_memo *m = memo_for(memo, w, lo, eps);

	ranks_in_place(bk, w, last, pos);
	if (m)
		inverse_memo_generic(v, inverse_memo_fast(v, w, key, m, pos, kb), w, key, m, pos,
				     kb);
	else
		inverse_generic(v, 0, w, key, lo, eps, pos, kb);
}

/* The drop of a ranked row (METHODS 3 steps 3-5), rows of two or more,
 * whatever p: as della_inverse, p clamped to [0, 1] by its threshold, the
 * kept element divided by float(p) (inverse) or multiplied by the factor. */
INLINE void della_ranked(float *restrict v, uint32_t w, uint64_t key, double d, double eps,
			 bool inverse, float factor, const uint16_t *restrict bk,
			 const uint32_t *restrict pos, const uint32_t *restrict last,
			 unsigned char *restrict kb)
{
	double lo = d - eps, wm1 = (double)(w - 1);

	for (uint32_t i = 0; i < w; i++) {
		double t = (double)(last[bk[i]] - pos[i]) / wm1, p = lo + (2 * t) * eps;
		bool keep = draw53(key, i) < weld_rng_threshold(p);

		v[i] = keep_or_zero(inverse ? v[i] / (float)p : v[i] * factor, keep);
		kb[i] = keep;
	}
}

WELD_HOT void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first, double d,
			       double eps, bool inverse, float factor, uint32_t *scratch,
			       unsigned char *bits, struct weld_xsum *sums,
			       struct weld_della_memo *memo)
{
	uint32_t *k = scratch + R_KEY * w, *pos = scratch + R_RANK * w, kmax, zeros, zbits, odd;
	uint32_t last[NB_MAX], cnt[NB_MAX];
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * w);
	unsigned char *kb = (unsigned char *)(scratch + R_BUCKET * w) + (w + 1) / 2 * 4;
	float zf = 0.0f * factor;
	bool inside, fused, lined;
	struct band bd = { 0 };
	struct span sp;

	if (w == 1) {
		bool keep = draw53(key, first) < weld_rng_threshold(d);

		if (sums)
			weld_xsum_add_abs(&sums[0], v, 1);
		v[0] = keep_or_zero(inverse ? v[0] / (float)d : v[0] * factor, keep);
		if (sums)
			weld_xsum_add_abs(&sums[1], v, 1);
		if (bits)
			bits[0] = keep;
		return;
	}
	zeros = keys_of(v, (uint32_t)w, k, &kmax);
	/* the L1 pass (factor 1): both sums from the keys and keep flags, after the drop */
	fused = sums && !inverse && factor == 1.0f;
	if (sums && !fused)
		xsum_add_below(&sums[0], v, w, kmax);
	/* a zero's rank matters when a kept one differs from a dropped one:
	 * -0, or a factor that makes +0 another zero or a NaN */
	memcpy(&zbits, &zf, sizeof(zbits));
	sp = row_buckets(k, (uint32_t)w, kmax, zeros >> 1 || (zeros && !inverse && zbits), scratch);
	/* the draws of elements first + i: key + first is the key of element 0 */
	/* p runs from about d - eps to d + eps: well inside (0, 1), no clamp */
	inside = eps >= 0 && d - eps > 0 && d + eps < 0.999;
	row_count(bk, (uint32_t)w, sp, cnt, pos, last, scratch);
	odd = odd_to_sort(cnt, sp.nb);
	/* p only decides the drop: the draws go against its line */
	lined = !inverse && inside;
	if (lined)
		bd = band_of((uint32_t)w, d - eps, eps);
	if (lined && odd > w / BAND_ODD && band_pays(cnt, sp.nb, (uint32_t)w, bd)) {
		/* many odd buckets to sort (float32 deltas): the band ranks
		 * only some of their members */
		della_band(v, (uint32_t)w, key + first, bd, d, eps, factor, k, cnt, pos, last, kb,
			   scratch);
	} else {
		if (odd)
			sort_odd(k, (uint32_t)w, cnt, pos, last, scratch);
		if (lined)
			della_lined(v, (uint32_t)w, key + first, bd, d, eps, factor, pos, last, kb,
				    scratch);
		else if (inside)        /* and inverse */
			della_inverse(v, (uint32_t)w, key + first, d - eps, eps, bk, last, pos, kb,
				      memo);
		else
			della_ranked(v, (uint32_t)w, key + first, d, eps, inverse, factor, bk, pos,
				     last, kb);
	}
	if (fused)
		for (size_t b = 0; b < w; b += XBLOCK)
			xsum_block_of(&sums[0], &sums[1], k + b, false, kb + b,
				      w - b < XBLOCK ? w - b : XBLOCK, kmax);
	else if (sums)
		weld_xsum_add_abs(&sums[1], v, w);
	if (bits)
		pack_bits(kb, w, bits);
}

/* Elements 8 b0..w of weld_k_della_apply_bits, eight at a time. */
INLINE void apply_bits_generic(float *v, size_t b0, size_t w, const unsigned char *bits,
			       float factor)
{
	size_t b = b0;

	for (; b < w / 8; b++) {
		unsigned m = bits[b];

		for (int l = 0; l < 8; l++) {
			float y = v[8 * b + l] * factor;

			v[8 * b + l] = m >> l & 1 ? y : 0.0f;
		}
	}
	for (size_t i = 8 * b; i < w; i++)
		v[i] = keep_or_zero(v[i] * factor, bits[b] >> (i % 8) & 1);
}

#if WELD_AVX512
/* Sixteen at a time, two bytes of flags as the mask of a multiply that
 * zeroes the others. Returns the bytes of flags done. */
__attribute__((target("avx512f")))
static size_t apply_bits_avx512(float *v, size_t w, const unsigned char *bits, float factor)
{
	const __m512 f = _mm512_set1_ps(factor);
	size_t i = 0;

	for (; i + 16 <= w; i += 16) {
		uint16_t m;

		memcpy(&m, bits + i / 8, sizeof(m));
		_mm512_storeu_ps(v + i, _mm512_maskz_mul_ps((__mmask16)m, _mm512_loadu_ps(v + i), f));
	}
	return i / 8;
}
#endif

WELD_HOT void weld_k_della_apply_bits(float *v, size_t w, const unsigned char *bits, float factor)
{
	size_t b = 0;

#if WELD_AVX512
	if (__builtin_cpu_supports("avx512f"))
		b = apply_bits_avx512(v, w, bits, factor);
#endif
	apply_bits_generic(v, b, w, bits, factor);
}
