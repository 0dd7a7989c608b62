/*
 * sce.c - sce's formulas (METHODS 5) in float32, sums in model order
 * starting with the first model. See sce.h.
 *
 * The loops run over blocks of elements, one model at a time inside a
 * block, so that they vectorise across elements while each element sees
 * the same operations in the same order as one written element by element.
 */
#include "sce.h"
#include "pcb.h"
#include "target_clones.h"

#define BLOCK 256

WELD_HOT void weld_k_sce_var(const float *const *t, size_t n, size_t len, float *v)
{
	float fn = (float)n, mean[BLOCK], acc[BLOCK];

	for (size_t j0 = 0; j0 < len; j0 += BLOCK) {
		size_t m = len - j0 < BLOCK ? len - j0 : BLOCK;

		const float *x0 = t[0] + j0;

		for (size_t j = 0; j < m; j++)
			mean[j] = x0[j];
		for (size_t s = 1; s < n; s++) {
			const float *x = t[s] + j0;

			for (size_t j = 0; j < m; j++)
				mean[j] += x[j];
		}
		for (size_t j = 0; j < m; j++) {
			float d;

			mean[j] /= fn;
			d = x0[j] - mean[j];
			acc[j] = d * d;
		}
		for (size_t s = 1; s < n; s++) {
			const float *x = t[s] + j0;

			for (size_t j = 0; j < m; j++) {
				float d = x[j] - mean[j];

				acc[j] += d * d;
			}
		}
		for (size_t j = 0; j < m; j++)
			v[j0 + j] = acc[j] / fn;
	}
}

WELD_HOT void weld_k_sce_mask(const float *v, size_t len, uint32_t thr, uint64_t keep_equal,
			      uint64_t *run, bool keep_all, bool keep_none, unsigned char *keep)
{
	if (keep_all || keep_none) {
		for (size_t j = 0; j < len; j++)
			keep[j] = keep_all;
		return;
	}
	if (*run >= keep_equal) {
		/* no equal one is kept any more: a comparison, and a count */
		uint64_t n = 0;

		for (size_t j = 0; j < len; j++) {
			uint32_t k = weld_pcb_abs_key(v[j]);

			keep[j] = k > thr;
			n += k == thr;
		}
		*run += n;
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

WELD_HOT void weld_k_sce_mask_cut(const float *v, size_t len, uint32_t thr, uint64_t first,
				  uint64_t cut, unsigned char *keep)
{
	/* the positions before cut: a count, whatever first is */
	size_t before = first >= cut ? 0 : cut - first < len ? (size_t)(cut - first) : len;

	for (size_t j = 0; j < len; j++) {
		uint32_t k = weld_pcb_abs_key(v[j]);

		keep[j] = (k > thr) | ((k == thr) & (j < before));
	}
}

WELD_HOT void weld_k_sce_square(const float *t, const unsigned char *keep, size_t len, float *sq)
{
	for (size_t j = 0; j < len; j++) {
		float x = t[j];

		x = keep[j] ? x : 0.0f;
		sq[j] = x * x;
	}
}

/* Where !keep every t_i counts as 0: no model agrees with the elected
 * sign, and out = base + 0 / 1e-6. */
WELD_HOT void weld_k_sce_combine(const float *const *t, const unsigned char *keep, size_t n,
				 const float *a, const float *base, size_t len, float *out)
{
	float sum[BLOCK], num[BLOCK], den[BLOCK];

	for (size_t j0 = 0; j0 < len; j0 += BLOCK) {
		size_t m = len - j0 < BLOCK ? len - j0 : BLOCK;
		const unsigned char *kp = keep + j0;
		const float *x0 = t[0] + j0;

		for (size_t j = 0; j < m; j++) {
			float y = x0[j];

			sum[j] = kp[j] ? y : 0.0f;
			num[j] = den[j] = 0.0f;
		}
		for (size_t s = 1; s < n; s++) {
			const float *x = t[s] + j0;

			for (size_t j = 0; j < m; j++) {
				float y = x[j];

				sum[j] += kp[j] ? y : 0.0f;
			}
		}
		for (size_t s = 0; s < n; s++) {
			const float *x = t[s] + j0;
			float as = a[s];

			for (size_t j = 0; j < m; j++) {
				float y = kp[j] ? x[j] : 0.0f, p = as * y;
				bool pos = sum[j] >= 0;
				bool agree = (pos & (y > 0)) | (!pos & (y < 0));

				num[j] += agree ? p : 0.0f;
				den[j] += agree ? as : 0.0f;
			}
		}
		for (size_t j = 0; j < m; j++)
			out[j0 + j] = base[j0 + j] + num[j] / (den[j] > 1e-6f ? den[j] : 1e-6f);
	}
}
