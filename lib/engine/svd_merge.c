/*
 * svd_merge.c - TSV-M, Iso-C and Iso-CTS on one matrix (METHODS 13-15),
 * in double, through linalg.h.
 *
 * Singular triplets are kept in "concatenations": an m x K matrix of left
 * vectors (stored with a row stride of the most columns it may get, then
 * packed), a K x n matrix of right vectors (rows) and K values. A triplet
 * whose value is numerically zero (METHODS 0) is never kept, and the polar
 * factor drops those of its own SVD, so rank-deficient inputs give a
 * defined result.
 */
#include "svd_merge.h"
#include "linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double weld_svd_zero_tol(size_t m, size_t n, double fro)
{
	return sqrt((double)(m > n ? m : n)) * ldexp(1.0, -23) * fro;
}

/* Frobenius norm of len values, summed in order. */
static double fro_norm(const double *a, size_t len)
{
	double s = 0;

	for (size_t i = 0; i < len; i++)
		s += a[i] * a[i];
	return sqrt(s);
}

int weld_iso_cts_dims(size_t k, size_t models, double f, size_t *c, size_t *p)
{
	size_t c0 = (size_t)((double)k * f);
	/* Python's round(): half to even, which rint() does in the default mode */
	double g = rint((double)(k - c0) / (double)models) * (double)models;

	if (g > (double)k)
		return -1;
	*c = k - (size_t)g;
	*p = (size_t)g / models;
	return 0;
}

/* A concatenation of singular triplets with room for cap of them. */
struct triplets {
	size_t m, n, cap, k;
	double *u;      /* m x cap (row stride cap until packed) */
	double *vt;     /* cap x n */
	double *s;      /* cap */
};

static int trip_init(struct triplets *t, size_t m, size_t n, size_t cap)
{
	size_t c = cap ? cap : 1;

	*t = (struct triplets){ .m = m, .n = n, .cap = cap };
	t->u = malloc(m * c * sizeof(double));
	t->vt = malloc(c * n * sizeof(double));
	t->s = malloc(c * sizeof(double));
	return t->u && t->vt && t->s ? 0 : -1;
}

static void trip_free(struct triplets *t)
{
	free(t->u);
	free(t->vt);
	free(t->s);
}

/* Append triplet j of an SVD with k values (u m x k, vt k x n). */
static void trip_add(struct triplets *t, const double *u, const double *s, const double *vt,
		     size_t k, size_t j)
{
	for (size_t i = 0; i < t->m; i++)
		t->u[i * t->cap + t->k] = u[i * k + j];
	memcpy(t->vt + t->k * t->n, vt + j * t->n, t->n * sizeof(double));
	t->s[t->k++] = s[j];
}

/* Append the first `first` triplets of an SVD whose values exceed tol. */
static void trip_add_top(struct triplets *t, const double *u, const double *s, const double *vt,
			 size_t k, size_t first, double tol)
{
	for (size_t j = 0; j < first && j < k; j++)
		if (s[j] > tol)
			trip_add(t, u, s, vt, k, j);
}

/* Pack u to m x k (row stride k). */
static void trip_pack(struct triplets *t)
{
	for (size_t i = 1; i < t->m; i++)
		memmove(t->u + i * t->k, t->u + i * t->cap, t->k * sizeof(double));
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Bytes polar() allocates for an r x c matrix. */
static uint64_t polar_bytes(size_t r, size_t c)
{
	uint64_t k = min_sz(r, c), sb = weld_svd_scratch_bytes(r, c);

	if (sb == UINT64_MAX)
		return UINT64_MAX;
	return 8 * ((uint64_t)r * c + (uint64_t)r * k + k + k * c) + sb;
}

/*
 * In place: a (r x c) becomes its polar factor sum p_j q_j^T over the
 * triplets of its SVD whose value exceeds the numerically-zero threshold
 * (P Q^T, the nearest matrix with orthonormal columns, when a has full
 * column rank). 0, -1, or 1 (no convergence).
 */
static int polar(double *a, size_t r, size_t c)
{
	size_t k = min_sz(r, c);
	double *w = malloc(r * c * sizeof(double)), *p = malloc(r * k * sizeof(double));
	double *mu = malloc(k * sizeof(double)), *q = malloc(k * c * sizeof(double));
	double tol;
	int ret = -1;

	if (!w || !p || !mu || !q)
		goto out;
	memcpy(w, a, r * c * sizeof(double));
	tol = weld_svd_zero_tol(r, c, fro_norm(a, r * c));
	if ((ret = weld_svd(r, c, w, mu, p, q)) != 0)
		goto out;
	for (size_t j = 0; j < k; j++)
		if (!(mu[j] > tol))
			for (size_t i = 0; i < r; i++)
				p[i * k + j] = 0;
	weld_gemm(false, false, r, c, k, 1.0, p, q, 0.0, a);
out:
	free(w);
	free(p);
	free(mu);
	free(q);
	return ret;
}

/* out = scale * polar(U) polar(V)^T (iso), or lambda * polar(U) diag(s)
 * polar(V)^T (tsv: scale_by_s). Zero when no triplet was kept. */
static int combine(struct triplets *t, double scale, bool scale_by_s, double *out)
{
	int r;

	if (!t->k) {
		memset(out, 0, t->m * t->n * sizeof(double));
		return 0;
	}
	trip_pack(t);
	if ((r = polar(t->u, t->m, t->k)) != 0 || (r = polar(t->vt, t->k, t->n)) != 0)
		return r;
	if (scale_by_s)
		for (size_t i = 0; i < t->m; i++)
			for (size_t j = 0; j < t->k; j++)
				t->u[i * t->k + j] *= t->s[j];
	weld_gemm(false, false, t->m, t->n, t->k, scale, t->u, t->vt, 0.0, out);
	return 0;
}

/* The SVD buffers of an m x n matrix. */
struct svd_bufs {
	double *u, *s, *vt;
	size_t k;
};

static int svd_bufs_init(struct svd_bufs *b, size_t m, size_t n)
{
	b->k = min_sz(m, n);
	b->u = malloc(m * b->k * sizeof(double));
	b->s = malloc(b->k * sizeof(double));
	b->vt = malloc(b->k * n * sizeof(double));
	return b->u && b->s && b->vt ? 0 : -1;
}

static void svd_bufs_free(struct svd_bufs *b)
{
	free(b->u);
	free(b->s);
	free(b->vt);
}

/* TSV-M (METHODS 13). */
static int tsv_m(const struct weld_svd_merge *a, double *out)
{
	size_t m = a->m, n = a->n, k = min_sz(m, n), r = k / a->models;
	struct svd_bufs b = { 0 };
	struct triplets t = { 0 };
	double *d = malloc(m * n * sizeof(double));
	int ret = -1;

	if (!d || svd_bufs_init(&b, m, n) < 0 || trip_init(&t, m, n, r * a->models) < 0)
		goto out;
	for (size_t i = 0; i < a->models && r; i++) {
		double tol;

		if (a->load(a->ctx, i, d) < 0) {
			ret = -2;
			goto out;
		}
		tol = weld_svd_zero_tol(m, n, fro_norm(d, m * n));
		if ((ret = weld_svd(m, n, d, b.s, b.u, b.vt)) != 0)
			goto out;
		ret = -1;
		trip_add_top(&t, b.u, b.s, b.vt, b.k, r, tol);
	}
	free(d);
	d = NULL;
	svd_bufs_free(&b);
	b = (struct svd_bufs){ 0 };
	ret = combine(&t, a->lambda, true, out);
out:
	free(d);
	svd_bufs_free(&b);
	trip_free(&t);
	return ret;
}

/* M = sum of the D_i, into msum (d: scratch). */
static int sum_models(const struct weld_svd_merge *a, double *msum, double *d)
{
	size_t len = a->m * a->n;

	memset(msum, 0, len * sizeof(double));
	for (size_t i = 0; i < a->models; i++) {
		if (a->load(a->ctx, i, d) < 0)
			return -2;
		for (size_t e = 0; e < len; e++)
			msum[e] += d[e];
	}
	return 0;
}

/* Iso-C (METHODS 14). */
static int iso_c(const struct weld_svd_merge *a, double *out)
{
	size_t m = a->m, n = a->n;
	double *msum = malloc(m * n * sizeof(double)), *d = malloc(m * n * sizeof(double));
	struct svd_bufs b = { 0 };
	double tol, mean = 0;
	int ret = -1;

	if (!msum || !d || svd_bufs_init(&b, m, n) < 0)
		goto out;
	if ((ret = sum_models(a, msum, d)) != 0)
		goto out;
	free(d);
	d = NULL;
	tol = weld_svd_zero_tol(m, n, fro_norm(msum, m * n));
	if ((ret = weld_svd(m, n, msum, b.s, b.u, b.vt)) != 0)
		goto out;
	for (size_t j = 0; j < b.k; j++)
		mean += b.s[j];
	mean /= (double)b.k;
	for (size_t j = 0; j < b.k; j++)
		if (!(b.s[j] > tol))
			for (size_t i = 0; i < m; i++)
				b.u[i * b.k + j] = 0;
	weld_gemm(false, false, m, n, b.k, a->lambda * mean, b.u, b.vt, 0.0, out);
out:
	free(msum);
	free(d);
	svd_bufs_free(&b);
	return ret;
}

/* Iso-CTS (METHODS 15). */
static int iso_cts(const struct weld_svd_merge *a, double *out)
{
	size_t m = a->m, n = a->n, k = min_sz(m, n), c, p;
	double *msum = malloc(m * n * sizeof(double)), *d = malloc(m * n * sizeof(double));
	double *tmp = NULL, tol, total = 0;
	struct svd_bufs b = { 0 };
	struct triplets common = { 0 }, t = { 0 };
	int ret = -1;

	if (weld_iso_cts_dims(k, a->models, a->common_fraction, &c, &p) < 0)
		goto out;
	if (!msum || !d || svd_bufs_init(&b, m, n) < 0 || trip_init(&common, m, n, c) < 0 ||
	    trip_init(&t, m, n, a->models * p + c) < 0 || !(tmp = malloc((c ? c : 1) * n * sizeof(double))))
		goto out;
	if ((ret = sum_models(a, msum, d)) != 0)
		goto out;
	tol = weld_svd_zero_tol(m, n, fro_norm(msum, m * n));
	if ((ret = weld_svd(m, n, msum, b.s, b.u, b.vt)) != 0)
		goto out;
	trip_add_top(&common, b.u, b.s, b.vt, b.k, c, tol);
	trip_pack(&common);
	for (size_t i = 0; i < a->models && p; i++) {
		if (a->load(a->ctx, i, d) < 0) {
			ret = -2;
			goto out;
		}
		tol = weld_svd_zero_tol(m, n, fro_norm(d, m * n));
		/* R_i = D_i - Uc (Uc^T D_i) */
		weld_gemm(true, false, common.k, n, m, 1.0, common.u, d, 0.0, tmp);
		weld_gemm(false, false, m, n, common.k, -1.0, common.u, tmp, 1.0, d);
		if ((ret = weld_svd(m, n, d, b.s, b.u, b.vt)) != 0)
			goto out;
		trip_add_top(&t, b.u, b.s, b.vt, b.k, p, tol);
	}
	for (size_t j = 0; j < common.k; j++)
		trip_add(&t, common.u, common.s, common.vt, common.k, j);
	for (size_t j = 0; j < t.k; j++)
		total += t.s[j];
	ret = combine(&t, a->lambda * (total / (double)k), false, out);
out:
	free(msum);
	free(d);
	free(tmp);
	svd_bufs_free(&b);
	trip_free(&common);
	trip_free(&t);
	return ret;
}

int weld_svd_merge(const struct weld_svd_merge *a, double *out)
{
	switch (a->method) {
	case WELD_METHOD_TSV_M: return tsv_m(a, out);
	case WELD_METHOD_ISO_C: return iso_c(a, out);
	case WELD_METHOD_ISO_CTS: return iso_cts(a, out);
	default: return -1;
	}
}

/* a + b, or UINT64_MAX on overflow. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t weld_svd_merge_bytes(enum weld_method method, size_t m, size_t n, size_t models,
			      double common_fraction)
{
	uint64_t mn, k = min_sz(m, n), svd = weld_svd_scratch_bytes(m, n), b;
	uint64_t bufs, trip, pol;

	(void)common_fraction;
	if (svd == UINT64_MAX || !models)
		return UINT64_MAX;
	mn = (uint64_t)m * n;
	bufs = 8 * ((uint64_t)m * k + k + k * n);          /* one SVD's outputs */
	trip = 8 * ((uint64_t)m * k + k * n + k);          /* a concatenation, at most k */
	pol = add_sat(polar_bytes(m, min_sz(k, m)), polar_bytes(min_sz(k, n), n));
	switch (method) {
	case WELD_METHOD_TSV_M:
		b = 8 * mn + bufs + trip + svd;
		return add_sat(b, pol);
	case WELD_METHOD_ISO_C:
		return 16 * mn + bufs + svd;
	case WELD_METHOD_ISO_CTS:
		/* the sum, D_i, one SVD, the common part, Uc^T D_i, the rest */
		b = 16 * mn + bufs + trip + 8 * k * n + trip + svd;
		return add_sat(b, pol);
	default:
		return UINT64_MAX;
	}
}
