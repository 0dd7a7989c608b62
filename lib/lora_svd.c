/*
 * lora_svd.c - LoRA factors of a delta by truncated SVD, exact (LAPACK
 * dgesdd on the whole matrix) or randomized (Halko, Martinsson & Tropp
 * 2011, algorithm 4.4: a Gaussian sketch of l = ρ + oversample columns,
 * q power iterations with a QR after every product, then the exact SVD of
 * the small l × n matrix Qᵀ·Δ). Every LAPACK and BLAS call goes through
 * linalg.h, on row-major arrays.
 */
#include "lora_svd.h"
#include "linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double sum_sq(const double *x, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += x[i] * x[i];
	return s;
}

/* ρ from the k singular values s (descending). */
static size_t choose_rank(const double *s, size_t k, const struct weld_lora_svd_opts *o)
{
	size_t r = o->max_rank < k ? o->max_rank : k;

	if (o->eps > 0)
		while (r && !(s[r - 1] > o->eps))
			r--;
	return r;
}

/*
 * Build A and B from s, u (element (i, r) at u[i * us + r * ur]) and vt
 * (element (r, j) at vt[r * n + j]).
 */
static int build(const double *s, const double *u, size_t us, size_t ur, const double *vt,
		 size_t m, size_t n, double norm2, const struct weld_lora_svd_opts *o, size_t k,
		 struct weld_lora_factors *f, struct weld_error *err)
{
	double kept = 0;

	f->rank = choose_rank(s, k, o);
	for (size_t r = 0; r < f->rank; r++)
		kept += s[r] * s[r];
	f->rel_err = norm2 > 0 ? sqrt(fmax(0, norm2 - kept) / norm2) : 0;
	if (!f->rank)
		return 0;
	f->a = malloc(f->rank * n * sizeof(double));
	f->b = malloc(m * f->rank * sizeof(double));
	if (!f->a || !f->b) {
		weld_lora_factors_free(f);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (size_t r = 0; r < f->rank; r++) {
		double sa = o->distribute ? sqrt(s[r]) : s[r], sb = o->distribute ? sqrt(s[r]) : 1;

		for (size_t j = 0; j < n; j++)
			f->a[r * n + j] = sa * vt[r * n + j];
		for (size_t i = 0; i < m; i++)
			f->b[i * f->rank + r] = sb * u[i * us + r * ur];
	}
	return 0;
}

static int exact(double *delta, size_t m, size_t n, const struct weld_lora_svd_opts *o,
		 struct weld_lora_factors *f, struct weld_error *err)
{
	size_t k = m < n ? m : n;
	double norm2 = sum_sq(delta, m * n), t0;
	double *s = malloc(k * sizeof(double)), *u = malloc(m * k * sizeof(double));
	double *vt = malloc(k * n * sizeof(double));
	int info, r = -1;

	if (!s || !u || !vt) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	t0 = now();
	info = weld_svd(m, n, delta, s, u, vt);
	f->lapack_seconds += now() - t0;
	if (info != 0) {
		weld_fail(err, info < 0 ? WELD_ERR_NOMEM : WELD_ERR_ARG,
			  info < 0 ? "out of memory" : "the SVD did not converge (LAPACK dgesdd)");
		goto out;
	}
	r = build(s, u, k, 1, vt, m, n, norm2, o, k, f, err);
out:
	free(s);
	free(u);
	free(vt);
	return r;
}

/* splitmix64, then Box-Muller: the Gaussian test matrix, fixed by seed. */
static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void gaussian(double *x, size_t n, uint64_t seed)
{
	uint64_t st = seed;

	for (size_t i = 0; i < n; i += 2) {
		double u1 = ((double)(splitmix(&st) >> 11) + 1) * 0x1p-53;
		double u2 = (double)(splitmix(&st) >> 11) * 0x1p-53;
		double rad = sqrt(-2 * log(u1));

		x[i] = rad * cos(2 * M_PI * u2);
		if (i + 1 < n)
			x[i + 1] = rad * sin(2 * M_PI * u2);
	}
}

/*
 * delta is Δ [m × n] row-major. Q: an orthonormal basis (the l rows of q,
 * [l × m]) of the range of Δ·Ω, refined by power_iters products with Δᵀ
 * and Δ, each followed by a QR. Then W = Qᵀ·Δ [l × n] = U_W·Σ·V_Wᵀ, so
 * Δ ≈ (Q·U_W)·Σ·V_Wᵀ: the left vectors Uᵀ = U_Wᵀ·q [l × m].
 * Products of row-major transposes: q = (Δ·Ω)ᵀ = Ωᵀ·Δᵀ with Ωᵀ in w,
 * and w = (Δᵀ·Q)ᵀ = q·Δ.
 */
static int randomized(const double *delta, size_t m, size_t n, const struct weld_lora_svd_opts *o,
		      struct weld_lora_factors *f, struct weld_error *err)
{
	size_t l = o->max_rank + o->oversample;
	double norm2 = sum_sq(delta, m * n), t0 = now();
	double *q = malloc(l * m * sizeof(double)), *w = malloc(l * n * sizeof(double));
	double *s = malloc(l * sizeof(double)), *uw = malloc(l * l * sizeof(double));
	double *vtw = malloc(l * n * sizeof(double)), *ut = malloc(l * m * sizeof(double));
	int r = -1, info = 0;

	if (!q || !w || !s || !uw || !vtw || !ut) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	gaussian(w, l * n, o->seed);
	weld_gemm(false, true, l, m, n, 1, w, delta, 0, q);
	info = weld_orthonormal_rows(l, m, q);
	for (unsigned it = 0; it < o->power_iters && !info; it++) {
		weld_gemm(false, false, l, n, m, 1, q, delta, 0, w);
		if (!(info = weld_orthonormal_rows(l, n, w))) {
			weld_gemm(false, true, l, m, n, 1, w, delta, 0, q);
			info = weld_orthonormal_rows(l, m, q);
		}
	}
	if (info) {
		weld_fail(err, info < 0 ? WELD_ERR_NOMEM : WELD_ERR_ARG,
			  info < 0 ? "out of memory" : "QR factorisation failed (LAPACK)");
		goto out;
	}
	weld_gemm(false, false, l, n, m, 1, q, delta, 0, w);
	/* W [l × n] = U_W [l × l, in uw] · Σ · V_Wᵀ [l × n, in vtw] */
	if ((info = weld_svd(l, n, w, s, uw, vtw)) != 0) {
		weld_fail(err, info < 0 ? WELD_ERR_NOMEM : WELD_ERR_ARG,
			  info < 0 ? "out of memory" : "the SVD did not converge (LAPACK dgesdd)");
		goto out;
	}
	weld_gemm(true, false, l, m, l, 1, uw, q, 0, ut);
	f->lapack_seconds += now() - t0;
	/* U (i, r) at ut[r * m + i] */
	r = build(s, ut, 1, m, vtw, m, n, norm2, o, l < o->max_rank ? l : o->max_rank, f, err);
out:
	free(q);
	free(w);
	free(s);
	free(uw);
	free(vtw);
	free(ut);
	return r;
}

/* Sizes that saturate at UINT64_MAX instead of overflowing. */
static uint64_t add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul(uint64_t a, uint64_t b)
{
	return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

static bool use_fast(size_t m, size_t n, const struct weld_lora_svd_opts *o)
{
	return o->fast && o->max_rank + o->oversample < (m < n ? m : n);
}

uint64_t weld_lora_svd_bytes(size_t m, size_t n, const struct weld_lora_svd_opts *o)
{
	uint64_t k = m < n ? m : n, rank = o->max_rank < k ? o->max_rank : k, l, work, b;

	if (m > INT32_MAX || n > INT32_MAX)
		return UINT64_MAX;
	/* the factors A and B (build) */
	b = mul(8 * rank, (uint64_t)m + n);
	if (!use_fast(m, n, o)) {
		/* s, u, vt and dgesdd's workspace */
		work = weld_svd_scratch_bytes(m, n);
		return add(add(b, work), mul(8, add(k, mul(k, (uint64_t)m + n))));
	}
	/* q, ut [l × m]; w, vtw [l × n]; uw [l × l]; s; the largest workspace */
	l = o->max_rank + o->oversample;
	work = weld_svd_scratch_bytes(l, n);
	if (weld_orthonormal_rows_scratch_bytes(l, m) > work)
		work = weld_orthonormal_rows_scratch_bytes(l, m);
	if (weld_orthonormal_rows_scratch_bytes(l, n) > work)
		work = weld_orthonormal_rows_scratch_bytes(l, n);
	return add(add(b, work), mul(8 * l, 2 * (uint64_t)m + 2 * (uint64_t)n + l + 1));
}

int weld_lora_svd(double *delta, size_t m, size_t n, const struct weld_lora_svd_opts *o,
		  struct weld_lora_factors *out, struct weld_error *err)
{
	memset(out, 0, sizeof(*out));
	if (m > INT32_MAX || n > INT32_MAX)
		return weld_fail(err, WELD_ERR_ARG, "matrix [%zu, %zu] too large for LAPACK", m, n);
	if (use_fast(m, n, o))
		return randomized(delta, m, n, o, out, err);
	return exact(delta, m, n, o, out, err);
}

void weld_lora_factors_free(struct weld_lora_factors *f)
{
	free(f->a);
	free(f->b);
	f->a = f->b = NULL;
	f->rank = 0;
}
