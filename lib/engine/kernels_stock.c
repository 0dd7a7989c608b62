/*
 * kernels_stock.c - Model Stock (METHODS 4): the Gram matrix of the task
 * vectors, the interpolation factor t from their mean pairwise cosine, and
 * the output t * mean(X) + (1 - t) * B.
 *
 * The task vectors are float32 differences (as everywhere); their products
 * are exact in double and summed in double in element order.
 */
#include "kernels.h"

#include <math.h>

WELD_HOT void weld_k_gram(const float *b, const float *const *x, size_t n, size_t len, double *g)
{
	size_t np = n * (n + 1) / 2;
	double d[WELD_K_MAX_SRC];

	for (size_t k = 0; k < np; k++)
		g[k] = 0;
	for (size_t j = 0; j < len; j++) {
		size_t k = 0;

		for (size_t s = 0; s < n; s++)
			d[s] = b ? (double)(x[s][j] - b[j]) : (double)x[s][j];
		for (size_t s = 0; s < n; s++)
			for (size_t q = s; q < n; q++)
				g[k++] += d[s] * d[q];
	}
}

double weld_k_model_stock_t(const double *g, size_t n, bool *degenerate)
{
	double norm[WELD_K_MAX_SRC], sum = 0, mean, den;
	size_t pairs = n * (n - 1) / 2, k = 0;

	*degenerate = false;
	for (size_t s = 0; s < n; s++) {
		norm[s] = sqrt(g[k]);
		k += n - s;
	}
	k = 0;
	for (size_t s = 0; s < n; s++) {
		k++;            /* the diagonal entry */
		for (size_t q = s + 1; q < n; q++, k++) {
			double p = norm[s] * norm[q], c = g[k] / (p > 1e-6 ? p : 1e-6);

			sum += c < -1 ? -1 : c > 1 ? 1 : c;
		}
	}
	if (!pairs)
		return 0;
	mean = sum / (double)pairs;
	den = 1 + (double)(n - 1) * mean;
	if (den == 0) {
		*degenerate = true;
		return 0;
	}
	return (double)n * mean / den;
}

WELD_HOT void weld_k_model_stock(const float *b, const float *const *x, size_t n, size_t len,
				 float t, float *out)
{
	float fn = (float)n, u = 1.0f - t;

	for (size_t j = 0; j < len; j++) {
		float acc = 0;

		for (size_t s = 0; s < n; s++)
			acc += x[s][j];
		out[j] = t * (acc / fn) + u * b[j];
	}
}
