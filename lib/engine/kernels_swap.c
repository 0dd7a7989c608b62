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
#include <string.h>

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

/* Elements a kernel below takes at a time (its scratch arrays). */
#define PIECE 1024

/*
 * The survivors of element j: |delta_i| > eps; c of them, acc their sum in
 * model order, one the same sum with lambda_i (it is the survivor when
 * c = 1). Up to four models in one loop per element (n a constant in each
 * copy); more source by source over a piece of the tile, so that the loops
 * vectorise. For each element the additions come in model order either way.
 */
static inline __attribute__((always_inline)) void ram_sweep(const float *b, const float *const *v,
							    size_t n, size_t len, float eps,
							    const float *lam, float *out)
{
	const float *p[4];
	float l[4];

	for (size_t s = 0; s < n; s++) {
		p[s] = v[s];
		l[s] = lam ? lam[s] : 1.0f;
	}
	for (size_t j = 0; j < len; j++) {
		float acc = 0, one = 0, c = 0;

#pragma GCC unroll 4
		for (size_t s = 0; s < n; s++) {
			float x = p[s][j];
			bool z = fabsf(x) > eps;

			c += z ? 1.0f : 0.0f;
			acc += z ? x : 0.0f;
			one += z ? x * l[s] : 0.0f;
		}
		out[j] = b[j] + (c > 1 ? acc / c : one);
	}
}

WELD_HOT void weld_k_ram(const float *b, const float *const *v, size_t n, size_t len, float eps,
			 const float *lam, float *out)
{
	float acc[PIECE], one[PIECE], c[PIECE];

	switch (n) {
	case 1:
		ram_sweep(b, v, 1, len, eps, lam, out);
		return;
	case 2:
		ram_sweep(b, v, 2, len, eps, lam, out);
		return;
	case 3:
		ram_sweep(b, v, 3, len, eps, lam, out);
		return;
	case 4:
		ram_sweep(b, v, 4, len, eps, lam, out);
		return;
	default:
		break;
	}
	for (size_t a = 0; a < len; a += PIECE) {
		size_t m = len - a < PIECE ? len - a : PIECE;

		for (size_t j = 0; j < m; j++)
			acc[j] = one[j] = c[j] = 0;
		for (size_t s = 0; s < n; s++) {
			const float *x = v[s] + a;
			float l = lam ? lam[s] : 1.0f;

			for (size_t j = 0; j < m; j++) {
				bool z = fabsf(x[j]) > eps;

				c[j] += z ? 1.0f : 0.0f;
				acc[j] += z ? x[j] : 0.0f;
				one[j] += z ? x[j] * l : 0.0f;
			}
		}
		for (size_t j = 0; j < m; j++)
			out[a + j] = b[a + j] + (c[j] > 1 ? acc[j] / c[j] : one[j]);
	}
}

/* ramplus_tl's counts for up to four models: one loop per element, each
 * input read once (n a constant in each copy). */
static inline __attribute__((always_inline)) void counts_sweep(const float *const *v, size_t n,
							       size_t len, float eps,
							       uint64_t *sh, uint64_t *un)
{
	const float *p[4];

	for (size_t s = 0; s < n; s++)
		p[s] = v[s];
	for (size_t a = 0; a < len; a += PIECE) {
		size_t m = len - a < PIECE ? len - a : PIECE;
		uint32_t ss[4] = { 0 }, uu[4] = { 0 };

		for (size_t j = a; j < a + m; j++) {
			unsigned z[4], c = 0;

#pragma GCC unroll 4
			for (size_t s = 0; s < n; s++) {
				z[s] = fabsf(p[s][j]) > eps;
				c += z[s];
			}
#pragma GCC unroll 4
			for (size_t s = 0; s < n; s++) {
				ss[s] += z[s] & (c > 1);
				uu[s] += z[s] & (c == 1);
			}
		}
		for (size_t s = 0; s < n; s++) {
			sh[s] += ss[s];
			un[s] += uu[s];
		}
	}
}

WELD_HOT void weld_k_ram_counts(const float *const *v, size_t n, size_t len, float eps,
				double *counts)
{
	uint64_t sh[WELD_K_MAX_SRC] = { 0 }, un[WELD_K_MAX_SRC] = { 0 };
	unsigned char c[PIECE];

	switch (n) {
	case 1:
		counts_sweep(v, 1, len, eps, sh, un);
		goto out;
	case 2:
		counts_sweep(v, 2, len, eps, sh, un);
		goto out;
	case 3:
		counts_sweep(v, 3, len, eps, sh, un);
		goto out;
	case 4:
		counts_sweep(v, 4, len, eps, sh, un);
		goto out;
	default:
		break;
	}
	for (size_t a = 0; a < len; a += PIECE) {
		size_t m = len - a < PIECE ? len - a : PIECE;

		memset(c, 0, m);
		for (size_t s = 0; s < n; s++)
			for (size_t j = 0; j < m; j++)
				c[j] = (unsigned char)(c[j] + (fabsf(v[s][a + j]) > eps));
		for (size_t s = 0; s < n; s++) {
			uint32_t ss = 0, uu = 0;

			for (size_t j = 0; j < m; j++) {
				unsigned z = fabsf(v[s][a + j]) > eps;

				ss += z & (c[j] > 1);
				uu += z & (c[j] == 1);
			}
			sh[s] += ss;
			un[s] += uu;
		}
	}
out:
	for (size_t s = 0; s < n; s++) {
		counts[2 * s] = (double)sh[s];
		counts[2 * s + 1] = (double)un[s];
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
