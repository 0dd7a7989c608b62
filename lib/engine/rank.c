/*
 * rank.c - per-row ranks (a stable radix sort) and exact sums of
 * magnitudes: the statistics of della. See rank.h.
 */
#include "rank.h"
#include "merge.h"

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

void weld_k_row_order(const float *v, size_t w, uint32_t *order, uint32_t *scratch)
{
	uint32_t *key = scratch, *key2 = scratch + w, *idx2 = scratch + 2 * w;
	uint32_t *ka = key, *kb = key2, *ia = order, *ib = idx2;

	/* positions from the last: a stable sort then puts equal magnitudes in
	 * descending position, so the lower position comes later (higher rank) */
	for (size_t i = 0; i < w; i++) {
		ka[i] = mag_key(v[w - 1 - i]);
		ia[i] = (uint32_t)(w - 1 - i);
	}
	for (int shift = 0; shift < 32; shift += 8) {
		size_t cnt[256] = { 0 }, pos = 0;

		for (size_t i = 0; i < w; i++)
			cnt[ka[i] >> shift & 0xFF]++;
		if (cnt[ka[0] >> shift & 0xFF] == w)
			continue;       /* one digit for all: nothing moves */
		for (int b = 0; b < 256; b++) {
			size_t c = cnt[b];

			cnt[b] = pos;
			pos += c;
		}
		for (size_t i = 0; i < w; i++) {
			size_t p = cnt[ka[i] >> shift & 0xFF]++;

			kb[p] = ka[i];
			ib[p] = ia[i];
		}
		{
			uint32_t *t = ka;

			ka = kb;
			kb = t;
			t = ia;
			ia = ib;
			ib = t;
		}
	}
	if (ia != order)
		memcpy(order, ia, w * sizeof(*order));
}

void weld_k_della_row(float *v, size_t w, uint64_t key, uint64_t first, double d, double eps,
		      bool inverse, float factor, uint32_t *scratch)
{
	uint32_t *order = scratch + 3 * w;

	if (d >= 1 || !w)
		return;
	weld_k_row_order(v, w, order, scratch);
	for (size_t i = 0; i < w; i++) {
		uint32_t j = order[i];
		double t = w > 1 ? (double)i / (double)(w - 1) : 0;
		double p = w > 1 ? (d - eps) + (2 * t) * eps : d;

		if (weld_rng_uniform(key, first + j) < p)
			v[j] = inverse ? v[j] / (float)p : v[j] * factor;
		else
			v[j] = 0.0f;
	}
}
