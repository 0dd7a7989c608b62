/*
 * arcee.c - arcee_fusion's formulas (METHODS 11). See arcee.h.
 */
#include "arcee.h"

#include <math.h>

/* e[j] = exp(x[j] - max x) and their sum, in double, in row order. */
static double exps(const float *x, size_t w, double *e)
{
	double mx = -INFINITY, sum = 0;

	for (size_t j = 0; j < w; j++)
		mx = (double)x[j] > mx ? (double)x[j] : mx;
	for (size_t j = 0; j < w; j++) {
		e[j] = exp((double)x[j] - mx);
		sum += e[j];
	}
	return sum;
}

float weld_k_arcee_kl(const float *a, const float *b, size_t w, double *scratch)
{
	double *eb = scratch, *ea = scratch + w, sb = exps(b, w, eb), sa = exps(a, w, ea), kl = 0;

	for (size_t j = 0; j < w; j++) {
		double p = eb[j] / sb + 1e-8, q = ea[j] / sa + 1e-8;

		kl += p * log(p / q);
	}
	return (float)kl;
}

void weld_k_arcee_scale(const float *a, const float *b, size_t w, float k, float *imp)
{
	for (size_t j = 0; j < w; j++)
		imp[j] = fabsf(b[j] - a[j]) * k;
}

void weld_k_arcee_importance(const float *a, const float *b, size_t w, double *scratch,
			     float *imp)
{
	weld_k_arcee_scale(a, b, w, weld_k_arcee_kl(a, b, w, scratch), imp);
}

void weld_k_arcee_apply(const float *a, const float *b, const float *imp, double fence,
			size_t len, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float m = (double)imp[j] >= fence ? 1.0f : 0.0f;

		out[j] = a[j] + (b[j] - a[j]) * m;
	}
}
