/*
 * arcee.c - arcee_fusion's formulas (METHODS 11). See arcee.h.
 *
 * float(kl) decides which elements are taken, so it must have the bits of
 * the definition: weld's own exp and log (elementary.h: the same bits on
 * every machine and C library, unlike the C library's), in double, the sums
 * in row order. Done literally that costs two
 * exp and one log per element; here:
 *
 *  - The exponentials are weld_exp's, in vector lanes, summed in row
 *    order: the softmaxes p and q are the definition's bits (two running
 *    sums, one loop: the additions of one do not wait for the other's).
 *  - Each term t_j = p_j log(p_j / q_j) is taken with a series for the log
 *    where p/q is within 2^-6 of 1 (in lanes, vectorised), within 4 units
 *    of 2^-53 of the true log relative to it; weld_log is within 0.52 ulp
 *    (2 units). So each of our terms is within 16 units of
 *    the definition's relative to it, and our sum (in lanes, any order) and
 *    the definition's (in row order) each within (w - 1) units of sum |t|
 *    of the exact sum of their terms: the definition's kl lies within
 *    B = (2w + 48) 2^-53 sum |t| of ours (with room for the rounding of the
 *    bounds themselves). When everything within B rounds to one float,
 *    that is float(kl); otherwise (about one fine-tuned row in a hundred)
 *    the row is summed as the definition says, from the same p and q.
 *    The lanes are exact operations only, so every instruction set gives
 *    the same sums.
 */
#include "arcee.h"
#include "elementary.h"
#include "target_clones.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define LANES 8
typedef double vdouble __attribute__((vector_size(LANES * sizeof(double))));
typedef int64_t vlong __attribute__((vector_size(LANES * sizeof(int64_t))));
#define FLANES 16                /* lanes of the maxima */
typedef float vfloat8 __attribute__((vector_size(WELD_EXP_LANES * sizeof(float))));
#define SERIES_MAX 0x1p-6       /* |p/q - 1| up to which the series serves */

static uint32_t float_bits(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u;
}

/* The largest of the row's w values, -inf if none (NaN is never larger):
 * in lanes, since any order gives the same value but the sign of a zero,
 * and x - (+0) and x - (-0) have the same exponential. *normal: whether
 * every x - max lies in [-WELD_EXP_NORMAL, 0] (no NaN, no infinity). */
WELD_HOT static float row_max(const float *x, size_t w, bool *normal)
{
	float m[FLANES], n[FLANES], mx = -INFINITY, mn = INFINITY;
	int nan[FLANES], any = 0;
	size_t j = 0;

	for (size_t l = 0; l < FLANES; l++) {
		m[l] = -INFINITY;
		n[l] = INFINITY;
		nan[l] = 0;
	}
	for (; j + FLANES <= w; j += FLANES)
		for (size_t l = 0; l < FLANES; l++) {
			m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
			n[l] = x[j + l] < n[l] ? x[j + l] : n[l];
			nan[l] |= x[j + l] != x[j + l];
		}
	for (size_t l = 0; l < FLANES; l++) {
		mx = m[l] > mx ? m[l] : mx;
		mn = n[l] < mn ? n[l] : mn;
		any |= nan[l];
	}
	for (; j < w; j++) {
		mx = x[j] > mx ? x[j] : mx;
		mn = x[j] < mn ? x[j] : mn;
		any |= x[j] != x[j];
	}
	*normal = !any && (double)mn - (double)mx >= -WELD_EXP_NORMAL;
	return mx;
}

/* e[j] = weld_exp(x[j] - mx) for the lanes of block j of x (normal: by
 * weld_exp_lanes_normal, the same bits). */
static inline __attribute__((always_inline)) void exp_block(const float *x, double mx,
							    bool normal, double *e)
{
	vfloat8 f;
	weld_vexp v;

	memcpy(&f, x, sizeof(f));
	v = __builtin_convertvector(f, weld_vexp) - mx;
	if (normal)
		weld_exp_lanes_normal(&v);
	else
		weld_exp_lanes(&v);
	memcpy(e, &v, sizeof(v));
}

/* exps for each kind of row: normal (both rows within WELD_EXP_NORMAL of
 * their largest) a constant at each call, so that each loop is compiled
 * for its case. */
static inline __attribute__((always_inline)) void exps_of(const float *b, const float *a,
							  size_t w, double mb, double ma, bool normal,
							  double *eb, double *ea, double *sb, double *sa)
{
	double tb = 0, ta = 0;
	size_t j = 0, done = 0;

	for (; j + WELD_EXP_LANES <= w; j += WELD_EXP_LANES) {
		exp_block(b + j, mb, normal, eb + j);
		exp_block(a + j, ma, normal, ea + j);
		for (; done < j; done++) {
			tb += eb[done];
			ta += ea[done];
		}
	}
	for (; j < w; j++) {
		eb[j] = weld_exp((double)b[j] - mb);
		ea[j] = weld_exp((double)a[j] - ma);
	}
	for (; done < w; done++) {
		tb += eb[done];
		ta += ea[done];
	}
	*sb = tb;
	*sa = ta;
}

/* eb[j] = weld_exp(b[j] - max b), ea likewise, in lanes, and their sums
 * in row order (two running sums, one loop: the additions of one do not
 * wait for the other's). Each block's values are added from memory while
 * the next block's are computed: loads, not lane extractions. */
WELD_HOT static void exps(const float *b, const float *a, size_t w, double *eb, double *ea,
			  double *sb, double *sa)
{
	bool nb, na;
	double mb = row_max(b, w, &nb), ma = row_max(a, w, &na);

	if (nb && na)
		exps_of(b, a, w, mb, ma, true, eb, ea, sb, sa);
	else
		exps_of(b, a, w, mb, ma, false, eb, ea, sb, sa);
}

/* The definition's term of element j. */
static inline double term(const double *eb, const double *ea, double sb, double sa, size_t j)
{
	double p = eb[j] / sb + 1e-8, q = ea[j] / sa + 1e-8;

	return p * weld_log(p / q);
}

/* Our sum of the terms (*s) and of their magnitudes (*t). */
WELD_HOT static void kl_terms(const double *eb, const double *ea, double sb, double sa, size_t w,
			      double *s, double *t)
{
	const vlong sign = (vlong){ 0 } + INT64_MIN;
	vdouble acc = { 0 }, mag = { 0 };
	vlong near = { 0 };
	double ss = 0, tt = 0;
	int64_t nn = 0;
	size_t j = 0;

	for (; j + LANES <= w; j += LANES) {
		vdouble vb, va, p, q, z, h, tj;
		vlong in;

		memcpy(&vb, eb + j, sizeof(vb));
		memcpy(&va, ea + j, sizeof(va));
		p = vb / sb + 1e-8;
		q = va / sa + 1e-8;
		z = p / q - 1;
		in = (vdouble)((vlong)z & ~sign) <= SERIES_MAX;
		/* the far elements count as 0 here */
		z = (vdouble)((vlong)z & in);
		/* log(1 + z) = z (1 - z/2 + z^2/3 - ... - z^10/11) for |z| <=
		 * SERIES_MAX: the first term left out is below 2^-69 |z| */
		h = z * (1.0 / 11) + -1.0 / 10;
		h = z * h + 1.0 / 9;
		h = z * h + -1.0 / 8;
		h = z * h + 1.0 / 7;
		h = z * h + -1.0 / 6;
		h = z * h + 1.0 / 5;
		h = z * h + -1.0 / 4;
		h = z * h + 1.0 / 3;
		h = z * h + -1.0 / 2;
		h = z * h + 1.0;
		tj = p * (z * h);
		acc += tj;
		mag += (vdouble)((vlong)tj & ~sign);
		near += in;
	}
	for (size_t l = 0; l < LANES; l++) {
		ss += acc[l];
		tt += mag[l];
		nn -= near[l];
	}
	/* the lanes' far elements (0 there), if any, and the tail: the
	 * definition's terms */
	for (size_t i = (uint64_t)nn < j ? 0 : j; i < w; i++) {
		double p = eb[i] / sb + 1e-8, q = ea[i] / sa + 1e-8, tj;

		if (i < j && fabs(p / q - 1) <= SERIES_MAX)
			continue;
		tj = term(eb, ea, sb, sa, i);
		ss += tj;
		tt += fabs(tj);
	}
	*s = ss;
	*t = tt;
}

float weld_k_arcee_kl(const float *a, const float *b, size_t w, double *scratch)
{
	double *eb = scratch, *ea = scratch + w, sb, sa, s, t, bound, kl = 0;
	float lo, hi;

	exps(b, a, w, eb, ea, &sb, &sa);
	kl_terms(eb, ea, sb, sa, w, &s, &t);
	bound = (2.0 * (double)w + 48) * 0x1p-53 * t * 1.0625;
	lo = (float)(s - bound);
	hi = (float)(s + bound);
	if (isfinite(s) && isfinite(bound) && float_bits(lo) == float_bits(hi))
		return lo;
	for (size_t j = 0; j < w; j++)
		kl += term(eb, ea, sb, sa, j);
	return (float)kl;
}

WELD_HOT void weld_k_arcee_scale(const float *a, const float *b, size_t w, float k, float *imp)
{
	for (size_t j = 0; j < w; j++)
		imp[j] = fabsf(b[j] - a[j]) * k;
}

void weld_k_arcee_importance(const float *a, const float *b, size_t w, double *scratch,
			     float *imp)
{
	weld_k_arcee_scale(a, b, w, weld_k_arcee_kl(a, b, w, scratch), imp);
}

WELD_HOT void weld_k_arcee_apply(const float *a, const float *b, const float *imp, double fence,
			size_t len, float *out)
{
	for (size_t j = 0; j < len; j++) {
		float m = (double)imp[j] >= fence ? 1.0f : 0.0f;

		out[j] = a[j] + (b[j] - a[j]) * m;
	}
}
