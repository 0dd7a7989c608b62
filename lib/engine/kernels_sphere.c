/*
 * kernels_sphere.c - the spherical interpolations of METHODS 6-8: nuslerp,
 * multislerp and karcher. Each needs only inner products of its inputs, so
 * its coefficients come from the Gram matrix of one statistics pass
 * (weld_k_gram, in double) and the output is a linear combination of the
 * inputs (or of their task vectors), computed in float32 in source order.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

static double clamp1(double c)
{
	return c < -1 ? -1 : c > 1 ? 1 : c;
}

double weld_k_nuslerp_t(double w0, double w1)
{
	return fabs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
}

void weld_k_nuslerp_coeffs(const double *g, double t, float *coef)
{
	double n0 = sqrt(g[0]), n1 = sqrt(g[2]), th, s;

	n0 = n0 > 1e-7 ? n0 : 1e-7;
	n1 = n1 > 1e-7 ? n1 : 1e-7;
	th = acos(clamp1(g[1] / (n0 * n1)));
	s = sin(th);
	if (fabs(s) < 1e-8) {
		/* (nearly) colinear: the straight line */
		coef[0] = (float)(1 - t);
		coef[1] = (float)t;
		coef[2] = 1;
		return;
	}
	coef[0] = (float)sin((1 - t) * th);
	coef[1] = (float)sin(t * th);
	coef[2] = (float)s;
}

WELD_HOT void weld_k_nuslerp(const float *b, const float *v0, const float *v1, size_t len,
			     const float *coef, float *out)
{
	float c0 = coef[0], c1 = coef[1], s = coef[2];

	if (!b) {
		for (size_t j = 0; j < len; j++)
			out[j] = (c0 * v0[j] + c1 * v1[j]) / s;
		return;
	}
	for (size_t j = 0; j < len; j++) {
		float d0 = v0[j] - b[j], d1 = v1[j] - b[j];

		out[j] = b[j] + (c0 * d0 + c1 * d1) / s;
	}
}

WELD_HOT void weld_k_nuslerp_cols(const float *b, const float *v0, const float *v1, size_t len,
				  const float *coef, uint64_t ncols, uint64_t col0, float *out)
{
	uint64_t c = col0;

	for (size_t j = 0; j < len; j++) {
		const float *k = coef + 3 * c;
		float d0 = b ? v0[j] - b[j] : v0[j], d1 = b ? v1[j] - b[j] : v1[j];
		float s = (k[0] * d0 + k[1] * d1) / k[2];

		out[j] = b ? b[j] + s : s;
		if (++c == ncols)
			c = 0;
	}
}

void weld_k_col_dots(const float *b, const float *v0, const float *v1, size_t len, uint64_t g,
		     uint64_t ncols, double *out)
{
	bool own = ncols >= 4096;       /* each element its own slot */
	uint64_t c = g % ncols;

	memset(out, 0, 3 * (own ? len : ncols) * sizeof(*out));
	for (size_t j = 0; j < len; j++) {
		double p = b ? (double)(v0[j] - b[j]) : (double)v0[j];
		double q = b ? (double)(v1[j] - b[j]) : (double)v1[j];
		double *o = out + 3 * (own ? j : c);

		o[0] += p * p;
		o[1] += p * q;
		o[2] += q * q;
		if (++c == ncols)
			c = 0;
	}
}

/* <x_i, x_j> from the packed upper triangle of n inputs. */
static double gram_at(const double *g, size_t n, size_t i, size_t j)
{
	size_t lo = i < j ? i : j, hi = i < j ? j : i;

	/* rows 0..lo-1 hold n, n-1, ... entries */
	return g[lo * n - lo * (lo - 1) / 2 + (hi - lo)];
}

int weld_k_multislerp_coeffs(const double *g, size_t n, const double *w, double eps, double *beta)
{
	double a[WELD_K_MAX_SRC], mu2 = 0, mu, scale = 0;

	for (size_t i = 0; i < n; i++) {
		double nrm = sqrt(gram_at(g, n, i, i));

		a[i] = w[i] / (nrm + eps);
		scale += w[i] * nrm;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			mu2 += a[i] * a[j] * gram_at(g, n, i, j);
	mu = sqrt(mu2 > 0 ? mu2 : 0);
	if (mu < eps) {
		if (n != 2)
			return -1;
		/* two inputs that cancel: mergekit's linear fallback */
		beta[0] = w[0];
		beta[1] = w[1];
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		beta[i] = scale * a[i] / mu;
	return 0;
}

/* |x|^2 of x = sum c_i u_i, with h the Gram matrix of the u_i. */
static double quad(const double *h, size_t n, const double *c)
{
	double q = 0;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			q += c[i] * c[j] * h[i * n + j];
	return q > 0 ? q : 0;
}

void weld_k_karcher_coeffs(const double *g, size_t n, int max_iter, double tol, double *beta)
{
	double nrm[WELD_K_MAX_SRC], h[WELD_K_MAX_SRC * WELD_K_MAX_SRC], a[WELD_K_MAX_SRC];
	double u[WELD_K_MAX_SRC], tv[WELD_K_MAX_SRC], alpha = 1.0 / (double)n, sum = 0, scale = 0;
	bool valid[WELD_K_MAX_SRC];
	int first = -1;

	for (size_t i = 0; i < n; i++) {
		nrm[i] = sqrt(gram_at(g, n, i, i));
		valid[i] = nrm[i] > tol;
		if (valid[i] && first < 0)
			first = (int)i;
		sum += valid[i] ? alpha : 0;
		scale += alpha * nrm[i];
		beta[i] = 0;
	}
	if (first < 0)
		return;         /* no valid input: zeros */
	/* h: the Gram matrix of the unit inputs u_i = x_i / |x_i| (0 if not valid) */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			h[i * n + j] = valid[i] && valid[j] ? gram_at(g, n, i, j) / (nrm[i] * nrm[j]) : 0;
	for (size_t i = 0; i < n; i++)
		u[i] = a[i] = valid[i] ? alpha / sum : 0;
	{
		double un = sqrt(quad(h, n, u));

		if (un >= tol) {
			for (size_t i = 0; i < n; i++)
				u[i] /= un;
		} else {
			memset(u, 0, n * sizeof(u[0]));
			u[first] = 1;
		}
	}
	for (int it = 0; it < max_iter; it++) {
		double tn, un, ct, st;

		memset(tv, 0, n * sizeof(tv[0]));
		for (size_t i = 0; i < n; i++) {
			double c = 0, th, k;

			if (!valid[i])
				continue;
			for (size_t j = 0; j < n; j++)
				c += h[i * n + j] * u[j];
			c = clamp1(c);
			th = acos(c);
			if (th < tol)
				continue;
			/* a_i (theta / sin theta) (u_i - c u) */
			k = a[i] * (th / sin(th));
			tv[i] += k;
			for (size_t j = 0; j < n; j++)
				tv[j] -= k * c * u[j];
		}
		tn = sqrt(quad(h, n, tv));
		if (tn < tol)
			break;
		ct = cos(tn);
		st = sin(tn);
		for (size_t i = 0; i < n; i++)
			u[i] = ct * u[i] + st * tv[i] / tn;
		un = sqrt(quad(h, n, u));
		if (un > tol)
			for (size_t i = 0; i < n; i++)
				u[i] /= un;
	}
	for (size_t i = 0; i < n; i++)
		beta[i] = valid[i] ? scale * u[i] / nrm[i] : 0;
}

/*
 * out = b + sum_s beta_s (x_s - b), or sum_s beta_s x_s without b: per
 * element a sum from 0 in source order, each term rounded to float as
 * written. Up to four sources in one loop (n a constant in each copy),
 * more source by source over pieces; the same operations either way.
 */
static inline __attribute__((always_inline)) void lincomb_sweep(const float *b,
								const float *const *x, size_t n,
								size_t len, const float *beta,
								float *out)
{
	if (!b) {
		for (size_t j = 0; j < len; j++) {
			float acc = 0;

#pragma GCC unroll 4
			for (size_t s = 0; s < n; s++)
				acc += beta[s] * x[s][j];
			out[j] = acc;
		}
		return;
	}
	for (size_t j = 0; j < len; j++) {
		float acc = 0;

#pragma GCC unroll 4
		for (size_t s = 0; s < n; s++)
			acc += beta[s] * (x[s][j] - b[j]);
		out[j] = b[j] + acc;
	}
}

WELD_HOT void weld_k_lincomb(const float *b, const float *const *x, size_t n, size_t len,
			     const float *beta, float *out)
{
	float acc[1024];

	switch (n) {
	case 2:
		lincomb_sweep(b, x, 2, len, beta, out);
		return;
	case 3:
		lincomb_sweep(b, x, 3, len, beta, out);
		return;
	case 4:
		lincomb_sweep(b, x, 4, len, beta, out);
		return;
	default:
		break;
	}
	for (size_t a = 0; a < len; a += 1024) {
		size_t m = len - a < 1024 ? len - a : 1024;
		const float *bb = b ? b + a : NULL;

		memset(acc, 0, m * sizeof(*acc));
		for (size_t s = 0; s < n; s++) {
			const float *xs = x[s] + a;
			float bs = beta[s];

			if (bb)
				for (size_t j = 0; j < m; j++)
					acc[j] += bs * (xs[j] - bb[j]);
			else
				for (size_t j = 0; j < m; j++)
					acc[j] += bs * xs[j];
		}
		if (bb)
			for (size_t j = 0; j < m; j++)
				out[a + j] = bb[j] + acc[j];
		else
			memcpy(out + a, acc, m * sizeof(*acc));
	}
}
