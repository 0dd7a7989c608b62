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
 * one pass, with the same result; returns how many x[j] are NaN or +-Inf
 * (as weld_k_count_nonfinite_bf16 would, in the same pass) */
size_t weld_k_delta_bf16(const unsigned char *x, const float *b, float *v, size_t n);

/* How many of x[0..n) are NaN or +-Inf (float, or little-endian bf16). */
size_t weld_k_count_nonfinite(const float *x, size_t n);
size_t weld_k_count_nonfinite_bf16(const unsigned char *x, size_t n);
/* nan[j] |= x[j] is NaN (float, or little-endian bf16). */
void weld_k_mark_nan(const float *x, size_t n, unsigned char *nan);
void weld_k_mark_nan_bf16(const unsigned char *x, size_t n, unsigned char *nan);

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
	 * model_stock's t in coef[0]; nuslerp's three, or three per column */
	const float *coef;
	uint64_t ncols, col0;           /* nuslerp along dim 0: columns, and the tile's first */
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
 * products and sums in double; d_s = x_s when b is NULL): its upper
 * triangle row by row, g[0] = <d_0, d_0>, g[1] = <d_0, d_1>, ...,
 * n (n + 1) / 2 values. */
void weld_k_gram(const float *b, const float *const *x, size_t n, size_t len, double *g);
/* Model Stock's t = n c / (1 + (n - 1) c) from the Gram matrix, c the mean
 * over pairs of <d_i, d_j> / max(|d_i| |d_j|, 1e-6) clamped to [-1, 1];
 * 0 with *degenerate set when 1 + (n - 1) c = 0. */
double weld_k_model_stock_t(const double *g, size_t n, bool *degenerate);
/* out = t * (sum x_s / n) + (1 - t) * b. */
void weld_k_model_stock(const float *b, const float *const *x, size_t n, size_t len,
			float t, float *out);

/* kernels_sphere.c (METHODS 6-8); g is a Gram matrix from weld_k_gram */

/* nuslerp's t = w1 / (w0 + w1), 0.5 when |w0 + w1| < 1e-6. */
double weld_k_nuslerp_t(double w0, double w1);
/* coef = {sin((1 - t) theta), sin(t theta), sin theta} for the two vectors
 * of g (theta from their normalised dot product), or {1 - t, t, 1} where
 * |sin theta| < 1e-8. */
void weld_k_nuslerp_coeffs(const double *g, double t, float *coef);
/* out = (c0 v0 + c1 v1) / s, or b + the same on v - b when b != NULL. */
void weld_k_nuslerp(const float *b, const float *v0, const float *v1, size_t len,
		    const float *coef, float *out);
/* The same with the three coefficients of each column: element j belongs
 * to column (col0 + j) % ncols. */
void weld_k_nuslerp_cols(const float *b, const float *v0, const float *v1, size_t len,
			 const float *coef, uint64_t ncols, uint64_t col0, float *out);
/* nuslerp along dim 0, the sums of one block of len <= 4096 elements whose
 * first has flat index g: for each column c it touches, <v0,v0>, <v0,v1>,
 * <v1,v1> (v = x - b, or x when b is NULL) at out[3 * slot], slot = c when
 * ncols < 4096, else the element's place in the block (every element is
 * then a column of its own). */
void weld_k_col_dots(const float *b, const float *v0, const float *v1, size_t len, uint64_t g,
		     uint64_t ncols, double *out);
/* multislerp's closed form: out = sum beta_i F_i with beta_i =
 * (sum_j w_j |F_j|) a_i / |mu|, a_i = w_i / (|F_i| + eps), mu = sum a_i F_i.
 * Returns 0, 1 when |mu| < eps with n = 2 (beta = w, the linear fallback),
 * -1 when |mu| < eps with n > 2 (an error). */
int weld_k_multislerp_coeffs(const double *g, size_t n, const double *w, double eps, double *beta);
/* karcher: the Riemannian mean of the n inputs on the sphere, each counting
 * 1/n, iterated on the coefficients of u = sum gamma_i x_i / |x_i| (u stays
 * in their span); out = sum beta_i x_i (METHODS 8). */
void weld_k_karcher_coeffs(const double *g, size_t n, int max_iter, double tol, double *beta);
/* out = sum beta_s x_s, or b + sum beta_s (x_s - b) when b != NULL (float32,
 * source order). */
void weld_k_lincomb(const float *b, const float *const *x, size_t n, size_t len,
		    const float *beta, float *out);

#endif
