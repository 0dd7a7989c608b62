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

/* Elements taken at a time: a piece, whose sums go to g one after another. */
#define PIECE 64
/* Inputs up to which all pairs of a piece are summed in one sweep. */
#define SWEEP_MAX 4
typedef double dvec __attribute__((vector_size(4 * sizeof(double))));
typedef float fvec __attribute__((vector_size(4 * sizeof(float))));

/*
 * The sums of a piece follow one pattern, whatever computes them: each
 * product d_s[j] d_q[j] is exact in double and goes to lane j % 4 of the
 * pair's vector sum, in element order; the lanes are added as
 * (l0 + l1) + (l2 + l3) and the piece's total to g, piece after piece. A
 * short last piece is padded with zeros. The bytes do not depend on n, on
 * the instruction set or on which of the two ways below runs.
 */

/* Elements j..j+3 of a task vector (or of an input), exactly in double. */
static inline __attribute__((always_inline)) void diff4(const float *b, const float *x, size_t j,
							dvec *d)
{
	fvec p, q;

	memcpy(&p, x + j, sizeof(p));
	if (b) {
		memcpy(&q, b + j, sizeof(q));
		p = p - q;
	}
	*d = __builtin_convertvector(p, dvec);
}

/* n <= SWEEP_MAX: every pair in one sweep over the piece at a, each input
 * read and converted once; with n a constant the sums stay in registers. */
static inline __attribute__((always_inline)) void sweep_piece(const float *b, const float *const *x,
							      size_t n, size_t a, double *g)
{
	dvec acc[SWEEP_MAX * (SWEEP_MAX + 1) / 2], d[SWEEP_MAX];
	size_t np = n * (n + 1) / 2;

#pragma GCC unroll 16
	for (size_t k = 0; k < np; k++)
		acc[k] = (dvec){ 0, 0, 0, 0 };
	for (size_t j = a; j < a + PIECE; j += 4) {
		size_t k = 0;

#pragma GCC unroll 16
		for (size_t s = 0; s < n; s++)
			diff4(b, x[s], j, &d[s]);
#pragma GCC unroll 16
		for (size_t s = 0; s < n; s++)
#pragma GCC unroll 16
			for (size_t q = s; q < n; q++, k++)
				acc[k] += d[s] * d[q];
	}
#pragma GCC unroll 16
	for (size_t k = 0; k < np; k++)
		g[k] += (acc[k][0] + acc[k][1]) + (acc[k][2] + acc[k][3]);
}

static inline __attribute__((always_inline)) void sweep(const float *b, const float *const *x,
							size_t n, size_t len, double *g)
{
	float pad[SWEEP_MAX + 1][PIECE];
	const float *px[SWEEP_MAX];
	size_t full = len / PIECE * PIECE, m = len - full;

	for (size_t a = 0; a < full; a += PIECE)
		sweep_piece(b, x, n, a, g);
	if (!m)
		return;
	for (size_t s = 0; s <= n; s++) {
		const float *src = s < n ? x[s] : b;

		if (!src)
			continue;
		memcpy(pad[s], src + full, m * sizeof(float));
		memset(pad[s] + m, 0, (PIECE - m) * sizeof(float));
		if (s < n)
			px[s] = pad[s];
	}
	sweep_piece(b ? pad[n] : NULL, px, n, 0, g);
}

/* Any n: a piece's task vectors in double first, then pair after pair. */
static WELD_HOT void by_pairs(const float *b, const float *const *x, size_t n, size_t len, double *g)
{
	double d[WELD_K_MAX_SRC][PIECE];

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

WELD_HOT void weld_k_gram(const float *b, const float *const *x, size_t n, size_t len, double *g)
{
	for (size_t k = 0; k < n * (n + 1) / 2; k++)
		g[k] = 0;
	/* each case its own copy with n a constant */
	switch (n) {
	case 1:
		sweep(b, x, 1, len, g);
		return;
	case 2:
		sweep(b, x, 2, len, g);
		return;
	case 3:
		sweep(b, x, 3, len, g);
		return;
	case 4:
		sweep(b, x, 4, len, g);
		return;
	default:
		by_pairs(b, x, n, len, g);
		return;
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

/*
 * out = t (sum_s x_s / n) + (1 - t) b, the sum from 0 in model order. Up to
 * four models in one loop (n a constant in each copy), more model by model
 * over pieces; the same operations either way.
 */
static inline __attribute__((always_inline)) void stock_sweep(const float *b, const float *const *x,
							      size_t n, size_t len, float t,
							      float *out)
{
	float fn = (float)n, u = 1.0f - t;

	for (size_t j = 0; j < len; j++) {
		float acc = 0;

#pragma GCC unroll 4
		for (size_t s = 0; s < n; s++)
			acc += x[s][j];
		out[j] = t * (acc / fn) + u * b[j];
	}
}

WELD_HOT void weld_k_model_stock(const float *b, const float *const *x, size_t n, size_t len,
				 float t, float *out)
{
	float fn = (float)n, u = 1.0f - t, acc[1024];

	switch (n) {
	case 2:
		stock_sweep(b, x, 2, len, t, out);
		return;
	case 3:
		stock_sweep(b, x, 3, len, t, out);
		return;
	case 4:
		stock_sweep(b, x, 4, len, t, out);
		return;
	default:
		break;
	}
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
