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

void weld_xsum_add_abs(struct weld_xsum *s, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t k = mag_key(x[i]), e = k >> 23, m = k & 0x7FFFFFu;

		if (e == 255) {
			if (m)
				s->nan++;
			else
				s->m[255]++;
		} else {
			s->m[e] += e ? m | 0x800000u : m;
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
	if (n <= 24) {
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
 * One bucket pass on the high bits of the keys (up to 12: the exponent and
 * the first mantissa bits, about one bucket per element), then each bucket
 * sorted on the bits below (sort_msd).
 */
void weld_k_row_order(const float *v, size_t w, uint32_t *order, uint32_t *scratch)
{
	uint32_t *key = scratch, *k2 = scratch + w, *i2 = scratch + 2 * w;
	uint32_t cnt[(1 << 12) + 1];
	int bits = 4;
	size_t nb;

	while (bits < 12 && ((size_t)1 << bits) < w)
		bits++;
	nb = (size_t)1 << bits;
	memset(cnt, 0, (nb + 1) * sizeof(cnt[0]));
	for (size_t i = 0; i < w; i++)
		cnt[(mag_key(v[i]) >> (31 - bits)) + 1]++;
	for (size_t b = 1; b <= nb; b++)
		cnt[b] += cnt[b - 1];
	/* positions from the last: a stable sort then puts equal magnitudes in
	 * descending position, so the lower position comes later (higher rank) */
	for (size_t i = w; i-- > 0;) {
		uint32_t k = mag_key(v[i]), p = cnt[k >> (31 - bits)]++;

		key[p] = k;
		order[p] = (uint32_t)i;
	}
	/* cnt[b] is now the end of bucket b, the start of bucket b + 1 */
	for (size_t b = 0, lo = 0; b < nb; b++) {
		size_t hi = cnt[b];

		if (hi - lo > 1)
			sort_msd(key + lo, order + lo, hi - lo, 31 - bits, k2, i2);
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
 * order, the sort's temporaries, the undecided positions and their values. */
enum { S_KEY, S_BKEY, S_ORDER, S_TK, S_TI, S_AMB, S_AX };

/* A bucket with at most this many undecided elements is not sorted: each
 * of them counts the elements of the bucket below it. */
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

/*
 * A draw below the threshold of the lowest rank in its element's bucket is
 * kept, one at or above that of the highest is dropped, whatever the rank
 * inside the bucket (thresholds grow with the rank); only a draw between
 * the two needs the rank, and only that bucket is sorted. Buckets are the
 * high bits of the keys (as weld_k_row_order), so a row's sorting work is
 * a small part of the row's. The loops over the row do not branch on the
 * data.
 */
WELD_HOT void weld_k_della_row_scaled(float *v, size_t w, uint64_t key, uint64_t first, double d,
				      double eps, float factor, uint32_t *scratch)
{
	uint32_t *k = scratch + S_KEY * w, *bk = scratch + S_BKEY * w, *rank = k;
	uint32_t *order = scratch + S_ORDER * w, *amb = scratch + S_AMB * w;
	float *ax = (float *)(void *)(scratch + S_AX * w);
	uint32_t start[(1 << 12) + 1], end[1 << 12];
	uint64_t tlo[1 << 12], thi[1 << 12];
	uint32_t need[1 << 12];
	size_t nb, na = 0;
	int bits = 4, sh;

	while (bits < 12 && ((size_t)1 << bits) < w)
		bits++;
	nb = (size_t)1 << bits;
	sh = 31 - bits;
	memset(start, 0, (nb + 1) * sizeof(start[0]));
	for (size_t i = 0; i < w; i++) {
		k[i] = mag_key(v[i]);
		start[(k[i] >> sh) + 1]++;
	}
	for (size_t b = 0; b < nb; b++) {
		uint32_t c = start[b + 1];

		start[b + 1] += start[b];
		if (c) {
			tlo[b] = weld_rng_threshold(keep_p(start[b], w, d, eps));
			thi[b] = weld_rng_threshold(keep_p(start[b + 1] - 1, w, d, eps));
		}
	}
	memset(need, 0, nb * sizeof(need[0]));
	for (size_t i = 0; i < w; i++) {
		uint32_t b = k[i] >> sh;
		uint64_t u = draw53(key, first + i);
		bool open = (u >= tlo[b]) & (u < thi[b]);

		/* an undecided element is noted with its value, and zeroed for now */
		amb[na] = (uint32_t)i;
		ax[na] = v[i];
		na += open;
		need[b] += open;
		v[i] = keep_or_zero(v[i] * factor, u < tlo[b]);
	}
	if (!na)
		return;
	/* the row in bucket order, each bucket from its last position
	 * (weld_k_row_order's tie rule); the needed buckets sorted, and the
	 * rank of each of their elements */
	memcpy(end, start, nb * sizeof(end[0]));
	for (size_t i = w; i-- > 0;) {
		uint32_t b = k[i] >> sh, p = end[b]++;

		bk[p] = k[i];
		order[p] = (uint32_t)i;
	}
	for (size_t b = 0; b < nb; b++) {
		if (need[b] <= FEW_OPEN)
			continue;
		sort_msd(bk + start[b], order + start[b], end[b] - start[b], sh,
			 scratch + S_TK * w, scratch + S_TI * w);
		for (uint32_t p = start[b]; p < end[b]; p++)
			rank[order[p]] = p;
	}
	for (size_t a = 0; a < na; a++) {
		uint32_t i = amb[a], b = mag_key(ax[a]) >> sh;
		uint32_t r = need[b] <= FEW_OPEN ? start[b] + rank_in(bk, order, start[b], end[b],
								      mag_key(ax[a]), i)
						 : rank[i];
		uint64_t t = weld_rng_threshold(keep_p(r, w, d, eps));

		v[i] = keep_or_zero(ax[a] * factor, draw53(key, first + i) < t);
	}
}
