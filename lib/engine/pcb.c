/*
 * pcb.c - PCB-Merging's formulas (METHODS 12) in float32, in the order
 * METHODS gives them; exp and tanh in double, rounded once, so that every
 * machine and a float64 reference agree. See pcb.h.
 */
#include "pcb.h"

#include <math.h>
#include <string.h>

uint64_t weld_pcb_lo_index(uint64_t m, double clip)
{
	uint64_t i = (uint64_t)floor((double)m * clip);

	return i < m ? i : m - 1;
}

uint64_t weld_pcb_hi_index(uint64_t m, double clip)
{
	double x = (double)m * (1 - clip) - 1;

	/* truncation toward zero: a unit of 1 gives index 0 */
	return x <= 0 ? 0 : (uint64_t)x < m ? (uint64_t)x : m - 1;
}

uint64_t weld_pcb_thr_index(uint64_t m, double ratio)
{
	uint64_t i = (uint64_t)floor((double)m * (1 - ratio));

	return i < m ? i : m - 1;
}

uint32_t weld_pcb_kth_key(uint32_t *keys, size_t n, size_t k, uint32_t *tmp)
{
	uint32_t *a = keys, *b = tmp;

	for (int shift = 0; shift < 32; shift += 8) {
		size_t cnt[256] = { 0 }, pos = 0;

		for (size_t i = 0; i < n; i++)
			cnt[a[i] >> shift & 0xFF]++;
		if (cnt[a[0] >> shift & 0xFF] == n)
			continue;
		for (int d = 0; d < 256; d++) {
			size_t c = cnt[d];

			cnt[d] = pos;
			pos += c;
		}
		for (size_t i = 0; i < n; i++)
			b[cnt[a[i] >> shift & 0xFF]++] = a[i];
		{
			uint32_t *t = a;

			a = b;
			b = t;
		}
	}
	return a[k];
}

void weld_k_pcb_sum(const float *const *d, size_t n, size_t len, float *sum)
{
	for (size_t j = 0; j < len; j++)
		sum[j] = d[0][j];
	for (size_t s = 1; s < n; s++)
		for (size_t j = 0; j < len; j++)
			sum[j] += d[s][j];
}

/* min(max(|x|, lo), hi): the clipped magnitude */
static inline float clip_abs(float x, float lo, float hi)
{
	float a = fabsf(x);

	a = a < lo ? lo : a;
	return a > hi ? hi : a;
}

/*
 * float(tanh(x)) of a float x. For |x| < 2^-13, tanh(x) = x (1 - x^2/3 + ...)
 * lies within x * 2^-27.5 of x, well inside half the spacing of the floats
 * around x (at least x * 2^-25), so it rounds to x itself: no libm call.
 */
static inline float tanh_f(float x)
{
	return fabsf(x) < 0x1p-13f ? x : (float)tanh((double)x);
}

/* Entries of the memo of intra (a power of two). */
#define INTRA_MEMO 2048

void weld_k_pcb_beta(const float *d, const float *sum, size_t n, float lo, float hi, size_t len,
		     float *beta)
{
	/* the clipped magnitudes range from min(lo, hi) to hi */
	float mn = lo < hi ? lo : hi, span = hi - mn, fn = (float)n;
	/* intra depends on the clipped magnitude alone, and deltas of
	 * low-precision models take few distinct magnitudes: a memo by its
	 * bits (0xFFFFFFFF, a negative NaN, is no fabsf result) */
	uint32_t tag[INTRA_MEMO];
	float val[INTRA_MEMO];

	memset(tag, 0xFF, sizeof(tag));
	for (size_t j = 0; j < len; j++) {
		float a = clip_abs(d[j], lo, hi), intra;
		uint32_t ab, slot;

		memcpy(&ab, &a, sizeof(ab));
		slot = (ab ^ ab >> 9 ^ ab >> 18) & (INTRA_MEMO - 1);
		if (tag[slot] == ab) {
			intra = val[slot];
		} else {
			float nn = span > 0 ? (a - mn) / span : 0.0f;

			intra = (float)exp((double)(fn * (nn * nn)));
			tag[slot] = ab;
			val[slot] = intra;
		}
		beta[j] = intra * tanh_f(d[j] * sum[j]);
	}
}

void weld_k_pcb_combine(const float *const *d, const float *const *beta, size_t n,
			const struct weld_pcb_unit *u, const float *w, const float *base,
			float lambda, size_t len, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float num = 0, den = 0;

		for (size_t s = 0; s < n; s++) {
			float x = d[s][j], a = clip_abs(x, u[s].lo, u[s].hi);
			float t = x > 0 ? a : x < 0 ? -a : 0.0f;
			float b = beta[s][j], sc = 0.0f;

			if (u[s].top != u[s].thr && b > u[s].thr)
				sc = (b - u[s].thr) / (u[s].top - u[s].thr);
			num = s ? num + (w[s] * t) * sc : (w[s] * t) * sc;
			den = s ? den + sc : sc;
		}
		out[j] = base[j] + lambda * (num / (den > 1e-12f ? den : 1e-12f));
	}
}
