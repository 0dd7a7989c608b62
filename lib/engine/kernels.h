/*
 * kernels.h - the element-wise arithmetic of the merge methods, on plain
 * float arrays. Nothing here knows about files, tensors or threads: the
 * engine hands each thread its own slice.
 */
#ifndef WELD_KERNELS_H
#define WELD_KERNELS_H

#include "merge.h"

#define WELD_K_MAX_SRC 64

/* v[j] -= b[j] */
void weld_k_sub(float *v, const float *b, size_t n);
/* v[j] = x[j] - b[j] for little-endian bf16 x: decoding and weld_k_sub in
 * one pass, with the same result */
void weld_k_delta_bf16(const unsigned char *x, const float *b, float *v, size_t n);

/*
 * dare's drop for elements whose flat indices are first..first+n-1: keep
 * v[j] when the DESIGN 4.9 draw is below density, times factor; zero it
 * otherwise. With sums != NULL, sums[0] = sum |v| and sums[1] = sum of the
 * kept |v| (before the factor): float within groups of 64 elements, double
 * across them, in a fixed pattern (see kernels.c). With bits != NULL the
 * draws are stored there (bit j % 8 of byte j / 8), or, when known, taken
 * from there instead of drawn again.
 */
void weld_k_dare_drop(float *v, size_t n, uint64_t key, uint64_t first, double density,
		      float factor, double sums[2], unsigned char *bits, bool known);
/* The same over one row with --rescale l1 measured on that row. */
void weld_k_dare_row_l1(float *v, size_t n, uint64_t key, uint64_t first, double density);

/* out[0] = sum b^2, out[1] = sum x^2, out[2] = sum b*x, summed like the
 * dare sums above. */
void weld_k_dots(const float *b, const float *x, size_t n, double out[3]);
/* slerp coefficients (mergekit's, with its 0.9995 lerp fallback). */
void weld_k_slerp_coeffs(double n0sq, double n1sq, double dot, double t,
			 double *s0, double *s1);

/*
 * The combining step of every method over one tile of n elements. Arrays
 * are the tile's own (index 0 = the tile's first element).
 */
struct weld_combine_args {
	enum weld_method method;
	size_t n;                       /* sources */
	const float *w;                 /* weights */
	const float *const *v;          /* per source: x (average, slerp) or delta */
	const unsigned char *const *keep; /* per source top-k mask, or NULL */
	const unsigned char *const *drop; /* breadcrumbs: the top outliers, or NULL */
	const float *mask_lambda;       /* consensus */
	const float *base;              /* NULL for average */
	float lambda;
	bool normalize, ties, sign_count;
	int k;                          /* consensus */
	double s0, s1;                  /* slerp */
	/* consensus: bit (bitpos + j) of maskbits[s * maskstride] is set for a
	 * true mask (bits are only ORed in: the caller zeroes them), or NULL */
	unsigned char *maskbits;
	size_t maskstride;
	uint64_t bitpos;
	float t;                        /* nearswap */
	float epsilon;                  /* ram */
	/* from the STATS pass, or NULL: ramplus_tl's lambda_i per source;
	 * model_stock's t in coef[0] */
	const float *coef;
};

/* out[0..len) for one tile; scratch holds (4 + n) * len floats. */
void weld_k_combine(const struct weld_combine_args *a, size_t len, float *out, float *scratch);

/* kernels_swap.c (METHODS 9, 10) */

/* nearswap: a = clamp(t / max(|b - x|, 1e-6), 0, 1); out = a x + (1 - a) b. */
void weld_k_nearswap(const float *b, const float *x, size_t len, float t, float *out);
/* ram: out = b + the delta that alone has |delta| > eps (times lam[i]
 * when lam != NULL: ramplus_tl), or the mean of several; b where none. */
void weld_k_ram(const float *b, const float *const *v, size_t n, size_t len, float eps,
		const float *lam, float *out);
/* ramplus_tl's statistics of len elements: counts[2i] = S_i (elements
 * where delta_i and another survive), counts[2i + 1] = U_i (delta_i
 * alone). */
void weld_k_ram_counts(const float *const *v, size_t n, size_t len, float eps, double *counts);
/* lam[i] = 1 + r * clamp(S_i / max(U_i, eps), 0, alpha), in double. */
void weld_k_ram_lambdas(const double *counts, size_t n, double eps, double r, double alpha,
			float *lam);

/* kernels_stock.c (METHODS 4) */

/* g = the Gram matrix of d_s = x_s - b over len elements (d_s in float32,
 * products and sums in double): its upper triangle row by row, g[0] =
 * <d_0, d_0>, g[1] = <d_0, d_1>, ..., n (n + 1) / 2 values. */
void weld_k_gram(const float *b, const float *const *x, size_t n, size_t len, double *g);
/* Model Stock's t = n c / (1 + (n - 1) c) from the Gram matrix, c the mean
 * over pairs of <d_i, d_j> / max(|d_i| |d_j|, 1e-6) clamped to [-1, 1];
 * 0 with *degenerate set when 1 + (n - 1) c = 0. */
double weld_k_model_stock_t(const double *g, size_t n, bool *degenerate);
/* out = t * (sum x_s / n) + (1 - t) * b. */
void weld_k_model_stock(const float *b, const float *const *x, size_t n, size_t len,
			float t, float *out);

#endif
