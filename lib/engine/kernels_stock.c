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
#include <string.h>

/* Elements taken at a time: the task vectors of a piece, in double. */
#define PIECE 64
typedef double dvec __attribute__((vector_size(4 * sizeof(double))));

/*
 * Each product d_s[j] d_q[j] is exact in double; a piece's products go to
 * lane j % 4 of a vector sum, the lanes are added in order and the piece's
 * total to g, piece after piece: a fixed pattern that vectorises.
 */
WELD_HOT void weld_k_gram(const float *b, const float *const *x, size_t n, size_t len, double *g)
{
	size_t np = n * (n + 1) / 2;
	double d[WELD_K_MAX_SRC][PIECE];

	for (size_t k = 0; k < np; k++)
		g[k] = 0;
	for (size_t a = 0; a < len; a += PIECE) {
		size_t m = len - a < PIECE ? len - a : PIECE, k = 0;

		for (size_t s = 0; s < n; s++) {
			for (size_t j = 0; j < m; j++)
				d[s][j] = b ? (double)(x[s][a + j] - b[a + j]) : (double)x[s][a + j];
			for (size_t j = m; j < PIECE; j++)
				d[s][j] = 0;
		}
		for (size_t s = 0; s < n; s++)
			for (size_t q = s; q < n; q++, k++) {
				dvec acc = { 0, 0, 0, 0 };

				for (size_t j = 0; j < PIECE; j += 4) {
					dvec p, r;

					memcpy(&p, &d[s][j], sizeof(p));
					memcpy(&r, &d[q][j], sizeof(r));
					acc += p * r;
				}
				g[k] += (acc[0] + acc[1]) + (acc[2] + acc[3]);
			}
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
	float fn = (float)n, u = 1.0f - t, acc[1024];

	/* source by source over pieces, the sum in model order per element */
	for (size_t a = 0; a < len; a += 1024) {
		size_t m = len - a < 1024 ? len - a : 1024;

		for (size_t j = 0; j < m; j++)
			acc[j] = 0;
		for (size_t s = 0; s < n; s++)
			for (size_t j = 0; j < m; j++)
				acc[j] += x[s][a + j];
		for (size_t j = 0; j < m; j++)
			out[a + j] = t * (acc[j] / fn) + u * b[a + j];
	}
}
