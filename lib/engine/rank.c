/*
 * rank.c - per-row ranks (by counting) and exact sums of magnitudes: the
 * statistics of della, and its drop. See rank.h.
 */
#include "rank.h"
#include "merge.h"
#include "target_clones.h"

#include <math.h>
#include <string.h>

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
 * largest, E, is summed in integers: each significand shifted to the
 * scale of exponent field E - XSPAN (at most 2^56), XBLOCK of them (at
 * most 2^63 in all); the sum then goes to the tables in 24-bit parts, as
 * three significands would. Others (smaller values in the block, blocks
 * near the ends of the exponent range) go one by one. */
#define XBLOCK 128
#define XSPAN 32

/* The key of value i: of the float y[i], or k[i] itself (y NULL). */
static inline uint32_t key_at(const float *y, const uint32_t *k, size_t i)
{
	return y ? mag_key(y[i]) : k[i];
}

/* One block of n values, whose magnitudes' keys are at most kmax: the
 * floats y, or the keys k (y NULL). With keep (else NULL), those whose
 * flag keep[i] is 1 go into kept as well, from the same pass. */
static inline __attribute__((always_inline)) void xsum_block_of(struct weld_xsum *s,
								struct weld_xsum *kept,
								const float *y, const uint32_t *k,
								const unsigned char *keep,
								size_t n, uint32_t kmax)
{
	size_t small = 0;
	uint32_t e0;
	uint64_t v = 0, vk = 0;

	if (kmax >> 23 < XSPAN + 1 || kmax >> 23 > 200) {
		for (size_t i = 0; i < n; i++) {
			xsum_one(s->m, &s->nan, key_at(y, k, i));
			if (keep && keep[i])
				xsum_one(kept->m, &kept->nan, key_at(y, k, i));
		}
		return;
	}
	e0 = (kmax >> 23) - XSPAN;
	for (size_t i = 0; i < n; i++) {
		uint32_t key = key_at(y, k, i), e = key >> 23;
		uint64_t sig = (key & 0x7FFFFFu) | 0x800000u, x = e >= e0 ? sig << (e - e0) : 0;

		v += x;
		if (keep)
			vk += x & ((uint64_t)0 - keep[i]);
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
		uint32_t key = key_at(y, k, i);

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
	xsum_block_of(s, NULL, y, NULL, NULL, n, kmax);
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
 * position; the elements of odd buckets; keys and positions by rank for
 * the buckets to sort, the sort's temporaries; the buckets (uint16) and
 * keep flags (bytes) by position. */
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
 * element i's bucket before it. */
INLINE void count_buckets(const uint16_t *restrict bk, uint32_t w, uint32_t *restrict cnt,
			  uint32_t *restrict pos)
{
	for (uint32_t i = 0; i < w; i++)
		pos[i] = cnt[bk[i]]++;
}

/* The positions of the elements of odd buckets, ascending, into li;
 * returns how many. No branch: some are odd, most are not. */
static uint32_t odd_generic(const uint16_t *bk, uint32_t i0, uint32_t w, uint32_t *li)
{
	uint32_t m = 0;

	for (uint32_t i = i0; i < w; i++) {
		li[m] = i;
		m += bk[i] & 1;
	}
	return m;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

/* 32 buckets at a time: the positions of the odd ones compressed into a
 * register, 16 at a time, and all 16 lanes stored (li has room: no more
 * are picked than looked at). */
__attribute__((target("avx512f,avx512bw,popcnt")))
static uint32_t odd_avx512(const uint16_t *bk, uint32_t w, uint32_t *li)
{
	const __m512i one = _mm512_set1_epi16(1), step = _mm512_set1_epi32(16);
	__m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	uint32_t m = 0, i = 0;

	for (; i + 32 <= w; i += 32) {
		__mmask32 odd = _mm512_test_epi16_mask(_mm512_loadu_si512((const void *)(bk + i)),
						       one);

		_mm512_storeu_si512(li + m, _mm512_maskz_compress_epi32((__mmask16)odd, at));
		m += (uint32_t)__builtin_popcount(odd & 0xFFFFu);
		at = _mm512_add_epi32(at, step);
		_mm512_storeu_si512(li + m, _mm512_maskz_compress_epi32((__mmask16)(odd >> 16), at));
		m += (uint32_t)__builtin_popcount(odd >> 16);
		at = _mm512_add_epi32(at, step);
	}
	return m + odd_generic(bk, i, w, li + m);
}

static uint32_t odd_members(const uint16_t *bk, uint32_t w, uint32_t *li)
{
	if (__builtin_cpu_supports("avx512bw"))
		return odd_avx512(bk, w, li);
	return odd_generic(bk, 0, w, li);
}
#else
static uint32_t odd_members(const uint16_t *bk, uint32_t w, uint32_t *li)
{
	return odd_generic(bk, 0, w, li);
}
#endif

/* Whether some odd bucket has two members or more. */
INLINE bool odd_to_sort(const uint32_t *restrict cnt, size_t nb)
{
	uint32_t any = 0;

#pragma omp simd reduction(| : any)
	for (uint32_t b = 1; b < nb; b += 2)
		any |= cnt[b] > 1;
	return any;
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
 * The ranks of keys k[0..w) (DESIGN 4.1's order from the bottom): the
 * element at position i has rank - 1 last[bk[i]] - pos[i], bk the buckets
 * (in the scratch), last[0..NB_MAX) and pos[0..w) filled here. Zeros rank
 * among themselves by position only when exact_zeros (else each holds
 * some rank among the zeros': the caller does not need theirs).
 */
INLINE void row_ranks(const uint32_t *k, uint32_t w, uint32_t kmax, bool exact_zeros,
		      uint32_t *pos, uint32_t *last, uint32_t *scratch)
{
	uint32_t *li = scratch + R_LIST * (size_t)w, *sk = scratch + R_SKEY * (size_t)w;
	uint32_t *si = scratch + R_SPOS * (size_t)w;
	uint16_t *bk = (uint16_t *)(void *)(scratch + R_BUCKET * (size_t)w);
	uint32_t cnt[NB_MAX], m = 0, n = 0;
	struct span sp = row_span(w, kmax);

	buckets_of(k, w, sp.lo, exact_zeros ? 0 : 2 * (ZERO_BUCKETS - 1), bk);
	memset(cnt, 0, sp.nb * sizeof(cnt[0]));
	count_buckets(bk, w, cnt, pos);
	if (odd_to_sort(cnt, sp.nb))
		m = odd_members(bk, w, li);
	last_ranks(cnt, sp.nb, last);
	/* odd buckets of two or more: their members, in their bucket's ranks
	 * from the last position to the first, sorted on the keys, stably,
	 * rank by magnitude and equal ones the lower position higher; pos
	 * then says their ranks */
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

WELD_HOT void weld_k_row_ranks(const float *v, size_t w, uint32_t *rank, uint32_t *scratch)
{
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * w);
	uint32_t kmax, last[NB_MAX];

	if (w < 2) {
		memset(rank, 0, w * sizeof(*rank));
		return;
	}
	keys_of(v, (uint32_t)w, scratch + R_KEY * w, &kmax);
	row_ranks(scratch + R_KEY * w, (uint32_t)w, kmax, true, rank, last, scratch);
	for (size_t i = 0; i < w; i++)
		rank[i] = last[bk[i]] - rank[i];
}

/* The 53 bits of element first + j's draw (DESIGN 4.9), to compare with a
 * weld_rng_threshold. */
static inline uint64_t draw53(uint64_t key, uint64_t j)
{
	uint64_t z = key + j + 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
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
static inline bool keeps_inside(uint64_t key, uint64_t j, double p)
{
	double x = p * 0x1p53;
	int64_t t = (int64_t)x;

	return (int64_t)draw53(key, j) < t + ((double)t < x);
}

/*
 * The drop of a ranked row (METHODS 3 steps 3-5), rows of two or more: p
 * from the rank in double exactly as step 3 writes it, the draw against
 * its threshold, the kept element divided by float(p) or multiplied by the
 * factor. inside: every p is known to lie in (0, 1).
 */
INLINE void della_ranked(float *restrict v, uint32_t w, uint64_t key, double d, double eps,
			 bool inverse, bool inside, float factor, const uint16_t *restrict bk,
			 const uint32_t *restrict pos, const uint32_t *restrict last,
			 unsigned char *restrict kb)
{
	double lo = d - eps, wm1 = (double)(w - 1);

	if (!inside) {
		for (uint32_t i = 0; i < w; i++) {
			double t = (double)(last[bk[i]] - pos[i]) / wm1, p = lo + (2 * t) * eps;
			bool keep = draw53(key, i) < weld_rng_threshold(p);

			v[i] = keep_or_zero(inverse ? v[i] / (float)p : v[i] * factor, keep);
			kb[i] = keep;
		}
		return;
	}
#pragma omp simd
	for (uint32_t i = 0; i < w; i++) {
		double t = (double)(last[bk[i]] - pos[i]) / wm1, p = lo + (2 * t) * eps;
		bool keep = keeps_inside(key, i, p);

		v[i] = keep_or_zero(inverse ? v[i] / (float)p : v[i] * factor, keep);
		kb[i] = keep;
	}
}

WELD_HOT void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first, double d,
			       double eps, bool inverse, float factor, uint32_t *scratch,
			       unsigned char *bits, struct weld_xsum *sums)
{
	uint32_t *k = scratch + R_KEY * w, *pos = scratch + R_RANK * w, kmax, zeros, zbits;
	uint32_t last[NB_MAX];
	const uint16_t *bk = (const uint16_t *)(void *)(scratch + R_BUCKET * w);
	unsigned char *kb = (unsigned char *)(scratch + R_BUCKET * w) + (w + 1) / 2 * 4;
	float zf = 0.0f * factor;
	bool inside, fused;

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
	row_ranks(k, (uint32_t)w, kmax, zeros >> 1 || (zeros && !inverse && zbits), pos, last,
		  scratch);
	/* the draws of elements first + i: key + first is the key of element 0 */
	/* p runs from about d - eps to d + eps: well inside (0, 1), no clamp */
	inside = eps >= 0 && d - eps > 0 && d + eps < 0.999;
	if (inverse && inside)
		della_ranked(v, (uint32_t)w, key + first, d, eps, true, true, 1.0f, bk, pos, last,
			     kb);
	else if (inside)
		della_ranked(v, (uint32_t)w, key + first, d, eps, false, true, factor, bk, pos,
			     last, kb);
	else
		della_ranked(v, (uint32_t)w, key + first, d, eps, inverse, false, factor, bk, pos,
			     last, kb);
	if (fused)
		for (size_t b = 0; b < w; b += XBLOCK)
			xsum_block_of(&sums[0], &sums[1], NULL, k + b, kb + b,
				      w - b < XBLOCK ? w - b : XBLOCK, kmax);
	else if (sums)
		weld_xsum_add_abs(&sums[1], v, w);
	if (bits)
		pack_bits(kb, w, bits);
}

WELD_HOT void weld_k_della_apply_bits(float *v, size_t w, const unsigned char *bits, float factor)
{
	size_t b = 0;

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
