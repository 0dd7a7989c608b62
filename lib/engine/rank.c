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

void weld_k_della_table(size_t w, double d, double eps, uint64_t *thr, float *pf)
{
	for (size_t i = 0; i < w; i++) {
		double t = w > 1 ? (double)i / (double)(w - 1) : 0;
		double p = w > 1 ? (d - eps) + (2 * t) * eps : d;

		thr[i] = weld_rng_threshold(p);
		pf[i] = (float)p;
	}
}

WELD_HOT void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first,
			       const uint64_t *thr, const float *pf, bool inverse, float factor,
			       uint32_t *scratch)
{
	uint32_t *order = scratch + 3 * w;

	weld_k_row_order(v, w, order, scratch);
	for (size_t i = 0; i < w; i++) {
		uint32_t j = order[i];
		/* the draw of DESIGN 4.9, compared in integers (weld_rng_threshold) */
		uint64_t z = key + first + j + 0x9E3779B97F4A7C15ULL;
		float x = v[j], y;
		uint32_t u, m;

		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		z ^= z >> 31;
		y = inverse ? x / pf[i] : x * factor;
		/* kept: y; dropped: +0 (a bit mask: no branch on the draw) */
		memcpy(&u, &y, sizeof(u));
		m = (uint32_t)0 - (uint32_t)((z >> 11) < thr[i]);
		u &= m;
		memcpy(&y, &u, sizeof(y));
		v[j] = y;
	}
}
