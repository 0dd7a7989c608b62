/*
 * kernels.c - the per-element formulas of DESIGN section 4.
 *
 * Everything is float32, in source order, with the operations written in
 * the order the formulas give them, and without contraction into fused
 * multiply-adds (-ffp-contract=off), so that the same inputs give the same
 * bits on every machine.
 */
#include "kernels.h"

#include <math.h>

void weld_k_sub(float *v, const float *b, size_t n)
{
	for (size_t j = 0; j < n; j++)
		v[j] -= b[j];
}

void weld_k_dare_drop(float *v, size_t n, uint64_t key, uint64_t first, double density,
		      float factor, double sums[2])
{
	double all = 0, kept = 0;

	for (size_t j = 0; j < n; j++) {
		bool keep = weld_rng_uniform(key, first + j) < density;

		if (sums) {
			all += fabs((double)v[j]);
			kept += keep ? fabs((double)v[j]) : 0;
		}
		v[j] = keep ? v[j] * factor : 0.0f;
	}
	if (sums) {
		sums[0] = all;
		sums[1] = kept;
	}
}

void weld_k_dare_row_l1(float *v, size_t n, uint64_t key, uint64_t first, double density)
{
	double s[2];
	float f;

	weld_k_dare_drop(v, n, key, first, density, 1.0f, s);
	f = s[0] < 1e-7 || s[1] < 1e-7 ? 1.0f : (float)(s[0] / s[1]);
	for (size_t j = 0; j < n; j++)
		v[j] *= f;
}

void weld_k_dots(const float *b, const float *x, size_t n, double out[3])
{
	double bb = 0, xx = 0, bx = 0;

	for (size_t j = 0; j < n; j++) {
		bb += (double)b[j] * b[j];
		xx += (double)x[j] * x[j];
		bx += (double)b[j] * x[j];
	}
	out[0] = bb;
	out[1] = xx;
	out[2] = bx;
}

void weld_k_slerp_coeffs(double n0sq, double n1sq, double dot, double t,
			 double *s0, double *s1)
{
	const double eps = 1e-8;
	double n0 = sqrt(n0sq), n1 = sqrt(n1sq), d, th, sn;

	d = dot / ((n0 > eps ? n0 : 1) * (n1 > eps ? n1 : 1));
	if (fabs(d) > 0.9995) {
		*s0 = 1 - t;
		*s1 = t;
		return;
	}
	th = acos(d);
	sn = sin(th);
	*s0 = sin(th - th * t) / sn;
	*s1 = sin(th * t) / sn;
}

static inline float kept(const struct weld_combine_args *a, size_t s, size_t j)
{
	if (a->keep && a->keep[s] && !a->keep[s][j])
		return 0.0f;
	if (a->drop && a->drop[s] && a->drop[s][j])
		return 0.0f;
	return a->v[s][j];
}

/* TIES election and disjoint merge of the kept values at element j. */
static float ties_at(const struct weld_combine_args *a, size_t j, bool normalize)
{
	float p[WELD_K_MAX_SRC], num = 0, den = 0, sum = 0;
	int count = 0, sign;

	for (size_t s = 0; s < a->n; s++) {
		p[s] = a->w[s] * kept(a, s, j);
		sum += p[s];
		count += (p[s] > 0) - (p[s] < 0);
	}
	sign = (a->sign_count ? count >= 0 : sum >= 0) ? 1 : -1;
	for (size_t s = 0; s < a->n; s++)
		if ((sign > 0 && p[s] > 0) || (sign < 0 && p[s] < 0)) {
			num += p[s];
			den += a->w[s];
		}
	if (!normalize)
		return num;
	return num / (den == 0 ? 1.0f : den);
}

void weld_k_combine(const struct weld_combine_args *a, size_t lo, size_t hi, float *out)
{
	float sw = 0;

	for (size_t s = 0; s < a->n; s++)
		sw += a->w[s];
	for (size_t j = lo; j < hi; j++) {
		float acc = 0;

		switch (a->method) {
		case WELD_METHOD_AVERAGE:
			for (size_t s = 0; s < a->n; s++)
				acc += a->w[s] * a->v[s][j];
			out[j] = a->normalize ? acc / sw : acc;
			break;
		case WELD_METHOD_SLERP:
			out[j] = (float)a->s0 * a->base[j] + (float)a->s1 * a->v[0][j];
			break;
		case WELD_METHOD_CONSENSUS: {
			int cnt = 0;

			if (a->ties)
				acc = ties_at(a, j, false);
			else
				for (size_t s = 0; s < a->n; s++)
					acc += a->w[s] * a->v[s][j];
			for (size_t s = 0; s < a->n; s++) {
				float d = a->v[s][j];
				bool m = fabsf(d) > a->mask_lambda[s] * fabsf(acc - d);

				cnt += m;
				if (a->maskbits) {
					unsigned char *byte = a->maskbits + s * a->maskstride + j / 8;

					if (j % 8 == 0)
						*byte = 0;
					*byte |= (unsigned char)(m << (j % 8));
				}
			}
			out[j] = a->base[j] + a->lambda * (cnt >= a->k ? acc : 0.0f);
			break;
		}
		default:
			if (a->ties) {
				acc = ties_at(a, j, a->normalize);
			} else {
				for (size_t s = 0; s < a->n; s++)
					acc += a->w[s] * kept(a, s, j);
				if (a->normalize && fabsf(sw) >= 1e-8f)
					acc /= sw;
			}
			out[j] = a->base[j] + a->lambda * acc;
			break;
		}
	}
}
