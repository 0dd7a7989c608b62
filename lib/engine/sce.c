/*
 * sce.c - sce's formulas (METHODS 5) in float32, sums in model order
 * starting with the first model. See sce.h.
 */
#include "sce.h"
#include "pcb.h"

void weld_k_sce_var(const float *const *t, size_t n, size_t len, float *v)
{
	float fn = (float)n;

	for (size_t j = 0; j < len; j++) {
		float sum = t[0][j], mean, acc, d;

		for (size_t s = 1; s < n; s++)
			sum += t[s][j];
		mean = sum / fn;
		d = t[0][j] - mean;
		acc = d * d;
		for (size_t s = 1; s < n; s++) {
			d = t[s][j] - mean;
			acc += d * d;
		}
		v[j] = acc / fn;
	}
}

void weld_k_sce_mask(const float *v, size_t len, uint32_t thr, uint64_t keep_equal,
		     uint64_t *run, bool keep_all, bool keep_none, unsigned char *keep)
{
	if (keep_all || keep_none) {
		for (size_t j = 0; j < len; j++)
			keep[j] = keep_all;
		return;
	}
	for (size_t j = 0; j < len; j++) {
		uint32_t k = weld_pcb_abs_key(v[j]);

		if (k == thr)
			keep[j] = (*run)++ < keep_equal;
		else
			keep[j] = k > thr;
	}
}

void weld_k_sce_combine(const float *const *t, const unsigned char *keep, size_t n,
			const float *a, const float *base, size_t len, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float sum, num = 0.0f, den = 0.0f;

		if (!keep[j]) {
			/* every t_i is 0: no model agrees with the elected sign */
			out[j] = base[j] + num / 1e-6f;
			continue;
		}
		sum = t[0][j];
		for (size_t s = 1; s < n; s++)
			sum += t[s][j];
		for (size_t s = 0; s < n; s++) {
			float x = t[s][j];
			bool agree = sum >= 0 ? x > 0 : x < 0;

			num += agree ? a[s] * x : 0.0f;
			den += agree ? a[s] : 0.0f;
		}
		out[j] = base[j] + num / (den > 1e-6f ? den : 1e-6f);
	}
}
