/*
 * kernels_swap.c - the element-wise formulas of mergekit's nearswap and
 * ram / ramplus_tl (METHODS 9, 10), and the per-block counts of
 * ramplus_tl's statistics pass.
 *
 * As in kernels.c: float32, the operations in the order the formulas give
 * them, no contraction, sums over models in model order.
 */
#include "kernels.h"

#include <math.h>

WELD_HOT void weld_k_nearswap(const float *b, const float *x, size_t len, float t, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float d = fabsf(b[j] - x[j]), a;

		d = d > 1e-6f ? d : 1e-6f;
		a = t / d;
		a = a < 0 ? 0.0f : a > 1 ? 1.0f : a;
		out[j] = a * x[j] + (1.0f - a) * b[j];
	}
}

/*
 * The survivors of element j: |delta_i| > eps; c of them, acc their sum in
 * model order, one the same sum with lambda_i (it is the survivor when
 * c = 1).
 */
WELD_HOT void weld_k_ram(const float *b, const float *const *v, size_t n, size_t len, float eps,
			 const float *lam, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float acc = 0, one = 0, c = 0;

		for (size_t s = 0; s < n; s++) {
			float x = v[s][j];
			bool z = fabsf(x) > eps;

			c += (float)z;
			acc += z ? x : 0.0f;
			one += z ? (lam ? x * lam[s] : x) : 0.0f;
		}
		out[j] = b[j] + (c > 1 ? acc / c : one);
	}
}

void weld_k_ram_counts(const float *const *v, size_t n, size_t len, float eps, double *counts)
{
	uint32_t sh[WELD_K_MAX_SRC] = { 0 }, un[WELD_K_MAX_SRC] = { 0 };

	for (size_t j = 0; j < len; j++) {
		unsigned c = 0;

		for (size_t s = 0; s < n; s++)
			c += fabsf(v[s][j]) > eps;
		if (!c)
			continue;
		for (size_t s = 0; s < n; s++)
			if (fabsf(v[s][j]) > eps) {
				sh[s] += c > 1;
				un[s] += c == 1;
			}
	}
	for (size_t s = 0; s < n; s++) {
		counts[2 * s] = sh[s];
		counts[2 * s + 1] = un[s];
	}
}

void weld_k_ram_lambdas(const double *counts, size_t n, double eps, double r, double alpha,
			float *lam)
{
	for (size_t s = 0; s < n; s++) {
		double su = counts[2 * s], un = counts[2 * s + 1];
		double rho = su / (un > eps ? un : eps);

		rho = rho < 0 ? 0 : rho > alpha ? alpha : rho;
		lam[s] = (float)(1 + r * rho);
	}
}
