/*
 * rank.c - per-row ranks (a stable radix sort) and exact sums of
 * magnitudes: the statistics of della. See rank.h.
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

WELD_HOT void weld_xsum_add_abs(struct weld_xsum *s, const float *x, size_t len)
{
	for (size_t b = 0; b < len; b += XBLOCK) {
		const float *y = x + b;
		size_t n = len - b < XBLOCK ? len - b : XBLOCK, small = 0;
		uint32_t kmax = 0, e0;
		uint64_t v = 0;

		for (size_t i = 0; i < n; i++) {
			uint32_t k = mag_key(y[i]);

			kmax = k > kmax ? k : kmax;
		}
		if (kmax >> 23 < XSPAN + 1 || kmax >> 23 > 200) {
			for (size_t i = 0; i < n; i++)
				xsum_one(s->m, &s->nan, mag_key(y[i]));
			continue;
		}
		e0 = (kmax >> 23) - XSPAN;
		for (size_t i = 0; i < n; i++) {
			uint32_t k = mag_key(y[i]), e = k >> 23;
			uint64_t sig = (k & 0x7FFFFFu) | 0x800000u;

			v += e >= e0 ? sig << (e - e0) : 0;
			small += (e < e0) & (k != 0);
		}
		s->m[e0] += v & 0xFFFFFFu;
		s->m[e0 + 24] += v >> 24 & 0xFFFFFFu;
		s->m[e0 + 48] += v >> 48;
		for (size_t i = 0; i < n && small; i++) {
			uint32_t k = mag_key(y[i]);

			if (k >> 23 < e0 && k) {
				xsum_one(s->m, &s->nan, k);
				small--;
			}
		}
	}
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

/* Buckets of a row: at most this many (uint16 indices, stack tables). */
#define MAX_BINS 4096

/*
 * Linear buckets of a row's magnitudes, for rows of at least 64 elements
 * whose largest magnitude (key kmax) is finite and not tiny: bucket 0
 * holds the zeros, buckets 1 .. nb - 1 |x| * scale (nb - 1 buckets up to
 * 4 times the mean magnitude of the nz nonzero elements, or the largest),
 * the larger ones in the last. A larger magnitude never goes to a lower
 * bucket, and a row of deltas puts one or two elements in each. Returns
 * nb, or 0 when the row does not qualify.
 */
static inline __attribute__((always_inline)) size_t linear_buckets(const float *v, size_t w,
							    uint32_t kmax, uint32_t nz, float *scale)
{
	float sum[16] = { 0 }, mean = 0, mx;
	size_t nb = 16;

	if (w < 64 || kmax < 0x0D800000u || kmax >= 0x7F800000u)
		return 0;
	for (size_t i = 0; i + 16 <= w; i += 16)
		for (size_t l = 0; l < 16; l++)
			sum[l] += fabsf(v[i + l]);
	for (size_t l = 0; l < 16; l++)
		mean += sum[l];
	mean /= (float)nz;
	while (nb < MAX_BINS && 2 * nb < w)
		nb *= 2;
	memcpy(&mx, &kmax, sizeof(mx));
	*scale = (float)(nb - 1) / (mx < 4 * mean || !(mean > 0) ? mx : 4 * mean);
	return nb;
}

/* The bucket of key k (magnitude |x|) among nb linear buckets. */
static inline uint32_t linear_bucket(float x, uint32_t k, float scale, size_t nb)
{
	float y = fabsf(x) * scale;
	uint32_t b = y < (float)(nb - 2) ? (uint32_t)y : (uint32_t)nb - 2;

	return k ? b + 1 : 0;
}

/*
 * Bucket order and the tie rule: the positions from the last, so that a
 * stable sort puts equal magnitudes in descending position (the lower
 * position later: the higher rank); then each bucket of more than one
 * sorted on its keys (sort_msd). Linear buckets when the row qualifies
 * (a few elements each: insertion sorts), else buckets of the high bits
 * of the keys (up to 12: the exponent and the first mantissa bits).
 */
WELD_HOT void weld_k_row_order(const float *v, size_t w, uint32_t *order, uint32_t *scratch)
{
	uint32_t *key = scratch, *k2 = scratch + w, *i2 = scratch + 2 * w;
	uint32_t cnt[MAX_BINS + 1], kmax = 0, nz = 0;
	int bits = 4;
	size_t nb;
	float scale = 0;
	bool linear;

	for (size_t i = 0; i < w; i++) {
		uint32_t k = mag_key(v[i]);

		kmax = k > kmax ? k : kmax;
		nz += k != 0;
	}
	nb = linear_buckets(v, w, kmax, nz, &scale);
	linear = nb > 0;
	if (!linear) {
		while (bits < 12 && ((size_t)1 << bits) < w)
			bits++;
		nb = (size_t)1 << bits;
	}
	/* the buckets by position, in i2 until the sort needs it */
	for (size_t i = 0; i < w; i++) {
		uint32_t k = mag_key(v[i]);

		i2[i] = linear ? linear_bucket(v[i], k, scale, nb) : k >> (31 - bits);
	}
	memset(cnt, 0, (nb + 1) * sizeof(cnt[0]));
	for (size_t i = 0; i < w; i++)
		cnt[i2[i] + 1]++;
	for (size_t b = 1; b <= nb; b++)
		cnt[b] += cnt[b - 1];
	for (size_t i = w; i-- > 0;) {
		uint32_t p = cnt[i2[i]]++;

		key[p] = mag_key(v[i]);
		order[p] = (uint32_t)i;
	}
	/* cnt[b] is now the end of bucket b, the start of bucket b + 1 */
	for (size_t b = 0, lo = 0; b < nb; b++) {
		size_t hi = cnt[b];

		if (hi - lo > FEW_SORT)
			sort_msd(key + lo, order + lo, hi - lo, linear ? 31 : 31 - bits, k2, i2);
		else if (hi - lo > 1)
			insertion_sort(key + lo, order + lo, hi - lo);
		lo = hi;
	}
}

/* The keep probability of the element of rank i + 1 in a row of w
 * (METHODS 3 step 3), in double. */
static inline double keep_p(size_t i, size_t w, double d, double eps)
{
	double t = w > 1 ? (double)i / (double)(w - 1) : 0;

	return w > 1 ? (d - eps) + (2 * t) * eps : d;
}

void weld_k_della_table(size_t w, double d, double eps, uint64_t *thr, float *pf)
{
	for (size_t i = 0; i < w; i++) {
		double p = keep_p(i, w, d, eps);

		thr[i] = weld_rng_threshold(p);
		pf[i] = (float)p;
	}
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

WELD_HOT void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first,
			       const uint64_t *thr, const float *pf, bool inverse, float factor,
			       uint32_t *scratch)
{
	uint32_t *order = scratch + 3 * w;

	weld_k_row_order(v, w, order, scratch);
	for (size_t i = 0; i < w; i++) {
		uint32_t j = order[i];
		float x = v[j];

		v[j] = keep_or_zero(inverse ? x / pf[i] : x * factor,
				    draw53(key, first + j) < thr[i]);
	}
}

/* Row scratch of weld_k_della_row_scaled (w uint32 each): the keys by
 * position (then the ranks, by position), the keys and positions in bucket
 * order, the sort's temporaries, and the buckets (uint16) and the
 * undecided flags (bytes) by position. */
enum { S_KEY, S_BKEY, S_ORDER, S_TK, S_TI, S_BIN };

/* Undecided elements up to this many are ranked by a count over the whole
 * row each; more, and the row is put in bucket order and the buckets that
 * hold many of them sorted (a bucket with at most FEW_OPEN is counted). */
#define FEW_ROW 32
#define FEW_OPEN 8

/* The rank (0-based) of the element at position i, of key ki, among the
 * elements [lo, hi) of bucket order: those of smaller key, and those of
 * equal key at a higher position. */
static inline uint32_t rank_in(const uint32_t *bk, const uint32_t *order, uint32_t lo,
			       uint32_t hi, uint32_t ki, uint32_t i)
{
	uint32_t n = 0;

	for (uint32_t p = lo; p < hi; p++)
		n += (bk[p] < ki) | ((bk[p] == ki) & (order[p] > i));
	return n;
}

/* The same over a whole row of keys k[0..w) by position: the smaller keys
 * before position i, the smaller or equal ones after it. */
static inline __attribute__((always_inline)) uint32_t rank_in_row(const uint32_t *k, size_t w,
								   uint32_t ki, size_t i)
{
	uint32_t n = 0;

	for (size_t p = 0; p < i; p++)
		n += k[p] < ki;
	for (size_t p = i + 1; p < w; p++)
		n += k[p] <= ki;
	return n;
}

/* The exact decision for the element at position i of rank r: v[i] kept
 * (times the factor) or +0, and kb[i] whether it was kept. */
static inline void decide(float *v, unsigned char *kb, size_t i, size_t w, uint64_t key,
			  uint64_t first, uint32_t r, double d, double eps, float factor)
{
	bool keep = draw53(key, first + i) < weld_rng_threshold(keep_p(r, w, d, eps));

	v[i] = keep_or_zero(v[i] * factor, keep);
	kb[i] = keep;
}

/* Every rank by weld_k_row_order, every threshold from it: for rows the
 * buckets cannot serve (narrow, all zero, not finite, odd parameters). */
static void della_row_ranked(float *v, size_t w, uint64_t key, uint64_t first, double d,
			     double eps, float factor, uint32_t *scratch, unsigned char *kb)
{
	uint32_t *order = scratch + S_TI * w;

	weld_k_row_order(v, w, order, scratch);
	for (size_t r = 0; r < w; r++)
		decide(v, kb, order[r], w, key, first, (uint32_t)r, d, eps, factor);
}

/* Many undecided elements (still holding their deltas in v, flagged in
 * open): the row in bucket order, each bucket from its last position
 * (weld_k_row_order's tie rule); a bucket with many of them sorted and
 * ranked, one with few counted. */
static void resolve_sorted(float *v, size_t w, uint64_t key, uint64_t first, double d,
			   double eps, float factor, uint32_t *scratch, const uint16_t *bin,
			   const unsigned char *open, unsigned char *kb, const uint32_t *start,
			   size_t nb)
{
	uint32_t *k = scratch + S_KEY * w, *bk = scratch + S_BKEY * w, *rank = k;
	uint32_t *order = scratch + S_ORDER * w;
	uint32_t end[MAX_BINS], need[MAX_BINS];

	memcpy(end, start, nb * sizeof(end[0]));
	memset(need, 0, nb * sizeof(need[0]));
	for (size_t i = w; i-- > 0;) {
		uint32_t b = bin[i], p = end[b]++;

		bk[p] = k[i];
		order[p] = (uint32_t)i;
		need[b] += open[i];
	}
	for (size_t b = 0; b < nb; b++) {
		if (need[b] <= FEW_OPEN)
			continue;
		sort_msd(bk + start[b], order + start[b], end[b] - start[b], 32,
			 scratch + S_TK * w, scratch + S_TI * w);
	}
	/* ranks go where the keys were: first every open key of a few-open
	 * bucket is counted, then the sorted buckets write theirs */
	for (size_t i = 0; i < w; i++) {
		uint32_t b = bin[i];

		if (open[i] && need[b] <= FEW_OPEN)
			decide(v, kb, i, w, key, first,
			       start[b] + rank_in(bk, order, start[b], end[b], k[i], (uint32_t)i),
			       d, eps, factor);
	}
	for (size_t b = 0; b < nb; b++) {
		if (need[b] <= FEW_OPEN)
			continue;
		for (uint32_t p = start[b]; p < end[b]; p++)
			rank[order[p]] = p;
	}
	for (size_t i = 0; i < w; i++)
		if (open[i] && need[bin[i]] > FEW_OPEN)
			decide(v, kb, i, w, key, first, rank[i], d, eps, factor);
}

/*
 * A draw below the keep threshold of the lowest rank its element could
 * have keeps it, one at or above that of the highest drops it (thresholds
 * grow with the rank); only a draw between the two needs the rank. The
 * ranks an element could have come from buckets of its magnitude: any
 * mapping that never puts a larger magnitude in a lower bucket will do,
 * and a linear one, |x| * nb / max, spreads the magnitudes of a row of
 * deltas over the buckets well enough that an element's bucket holds one
 * or two others: its draw is undecided with a probability of about
 * 2 eps * (bucket size - 1) / w, so about one element per row is ranked.
 */
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

WELD_HOT void weld_k_della_row_scaled(float *v, size_t w, uint64_t key, uint64_t first, double d,
				      double eps, float factor, uint32_t *scratch,
				      unsigned char *bits)
{
	uint32_t *k = scratch + S_KEY * w, kmax = 0, nz = 0;
	uint16_t *bin = (uint16_t *)(void *)(scratch + S_BIN * w);
	unsigned char *open = (unsigned char *)(bin + w);
	uint32_t start[MAX_BINS + 1], zbits, fbits;
	double base, slope, margin;
	size_t nb, na = 0;
	float scale, zf = 0.0f * factor;
	/* the keep flags, after the buckets and the undecided flags */
	unsigned char *kb = open + w;

	for (size_t i = 0; i < w; i++) {
		k[i] = mag_key(v[i]);
		kmax = k[i] > kmax ? k[i] : kmax;
		nz += k[i] != 0;
	}
	/* all zero or tiny (no useful scale), not finite, narrow rows, keep
	 * probabilities not all inside (0, 1): every rank */
	nb = linear_buckets(v, w, kmax, nz, &scale);
	if (!nb || !(eps >= 0) || !(d - eps > 0) || !(d + eps < 1)) {
		della_row_ranked(v, w, key, first, d, eps, factor, scratch, kb);
		goto out;
	}
	for (size_t i = 0; i < w; i++)
		bin[i] = (uint16_t)linear_bucket(v[i], k[i], scale, nb);
	memset(start, 0, (nb + 1) * sizeof(start[0]));
	for (size_t i = 0; i < w; i++)
		start[bin[i] + 1]++;
	for (size_t b = 0; b < nb; b++)
		start[b + 1] += start[b];
	/* a +0 stays +0 kept or dropped, unless the factor makes it another
	 * zero or a NaN: then its rank is needed as any other's */
	memcpy(&fbits, &zf, sizeof(fbits));
	zbits = fbits ? 0xFFFFFFFFu : 0;
	/* the keep threshold of rank r, in units of 2^-53, is about base +
	 * r slope: evaluated without keep_p's rounding order, the bounds are
	 * widened by far more than the few units the roundings move it */
	base = (d - eps) * 0x1p53;
	slope = 2 * eps / (double)(w - 1) * 0x1p53;
	margin = 0x1p16;
	for (size_t i = 0; i < w; i++) {
		uint32_t b = bin[i];
		double u = (double)draw53(key, first + i);
		double lo = base + (double)start[b] * slope - margin;
		double hi = base + (double)(start[b + 1] - 1) * slope + margin;
		uint32_t x;
		bool keep = u < lo, op;

		memcpy(&x, &v[i], sizeof(x));
		op = (u >= lo) & (u < hi) & ((x | zbits) != 0);

		/* an undecided element keeps its delta for now */
		open[i] = op;
		kb[i] = keep;
		na += op;
		v[i] = keep_or_zero(op ? v[i] : v[i] * factor, keep | op);
	}
	if (na > FEW_ROW) {
		resolve_sorted(v, w, key, first, d, eps, factor, scratch, bin, open, kb, start,
			       nb);
		goto out;
	}
	/* the flags eight at a time: most words are zero */
	for (size_t i0 = 0; i0 < w && na; i0 += 8) {
		uint64_t word = 0;

		if (w - i0 >= 8)
			memcpy(&word, open + i0, 8);
		else
			memcpy(&word, open + i0, w - i0);
		for (size_t i = i0; word; i++, word >>= 8) {
			if (!(word & 0xFF))
				continue;
			decide(v, kb, i, w, key, first, rank_in_row(k, w, k[i], i), d, eps, factor);
			na--;
		}
	}
out:
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
