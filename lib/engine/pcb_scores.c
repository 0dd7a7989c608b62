/*
 * pcb_scores.c - step 5's scores of one model over a tile (METHODS 12)
 * from the window's flags (pcb.h), with AVX-512: the flagged elements are
 * packed, and their beta taken 16 at a time with exp on vectors instead
 * of a memo looked up element by element.
 *
 * beta = float(exp(x)) * tanh_f(p) needs libm's exp rounded to float, bit
 * for bit. exp(x) for x = n N^2 in [0, 16.5] is taken in double: x = k ln 2
 * + r (ln 2 in two parts, |r| <= 0.3466), Taylor's polynomial of degree
 * 13 in r (its remainder below 2^-57 relative), scaled by 2^k: within a
 * few units of the last place of double (2^-50 relative; every power of r
 * below 0.35 in size), as libm's exp is within one. Both then round to the same float unless the double lies
 * within 2^10 units of the last place of a midpoint between two floats:
 * such elements (one in 2^18), those outside the range (a NaN, more than
 * 16 sources) and those whose tanh is not p itself (|p| >= 2^-13) take
 * libm's functions as pcb.c does.
 */
#include "pcb.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

#define X_MAX 16.5      /* the largest x = n N^2 taken on vectors (n <= 16) */

/* 1 / i! */
static const double inv_fact[14] = { 1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
			      1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800,
			      1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0 };

/* a + b r */
__attribute__((target("avx512f"))) static inline __m512d lin(int i, __m512d r)
{
	return _mm512_fmadd_pd(_mm512_set1_pd(inv_fact[i + 1]), r, _mm512_set1_pd(inv_fact[i]));
}

/* exp(x) of 8 doubles in [0, X_MAX] (see above; the polynomial by
 * Estrin's scheme, a short chain of operations); *near gets the lanes
 * whose rounding to float is in doubt. */
__attribute__((target("avx512f,avx512dq"))) static inline __m512d exp8(__m512d x,
								       __mmask8 *near)
{
	const __m512d ln2hi = _mm512_set1_pd(6.93147180369123816490e-01);
	const __m512d ln2lo = _mm512_set1_pd(1.90821492927058770002e-10);
	__m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
					 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512d r = _mm512_fnmadd_pd(k, ln2lo, _mm512_fnmadd_pd(k, ln2hi, x));
	__m512d r2 = _mm512_mul_pd(r, r), r4 = _mm512_mul_pd(r2, r2), r8 = _mm512_mul_pd(r4, r4);
	__m512d p0 = _mm512_fmadd_pd(r2, lin(2, r), lin(0, r));
	__m512d p4 = _mm512_fmadd_pd(r2, lin(6, r), lin(4, r));
	__m512d p8 = _mm512_fmadd_pd(r4, lin(12, r), _mm512_fmadd_pd(r2, lin(10, r), lin(8, r)));
	__m512d y = _mm512_scalef_pd(_mm512_fmadd_pd(r8, p8, _mm512_fmadd_pd(r4, p4, p0)), k);
	__m512i low;

	/* the 29 bits a float drops, against half of them */
	low = _mm512_and_si512(_mm512_castpd_si512(y), _mm512_set1_epi64((1 << 29) - 1));
	low = _mm512_abs_epi64(_mm512_sub_epi64(low, _mm512_set1_epi64(1 << 28)));
	*near = _mm512_cmple_epi64_mask(low, _mm512_set1_epi64(1 << 10));
	return y;
}

/* beta of 16 packed elements: deltas x, products p; the lanes of lm. */
__attribute__((target("avx512f,avx512dq"))) static __m512 beta16(__m512 x, __m512 p, __mmask16 lm,
								 float lo, float hi, float mn,
								 float span, float fn)
{
	__m512 a = _mm512_abs_ps(x), nn, xx, intra, t = p;
	__m512d y0, y1;
	__mmask8 n0, n1;
	__mmask16 slow, big;
	float av[16], iv[16], pv[16];

	/* clip_abs(): a NaN stays NaN, lo > hi gives hi */
	a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, _mm512_set1_ps(lo), _CMP_LT_OQ),
			       _mm512_set1_ps(lo));
	a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, _mm512_set1_ps(hi), _CMP_GT_OQ),
			       _mm512_set1_ps(hi));
	nn = span > 0 ? _mm512_div_ps(_mm512_sub_ps(a, _mm512_set1_ps(mn)), _mm512_set1_ps(span))
		      : _mm512_setzero_ps();
	xx = _mm512_mul_ps(_mm512_set1_ps(fn), _mm512_mul_ps(nn, nn));
	slow = _mm512_mask_cmp_ps_mask(lm, xx, _mm512_set1_ps((float)X_MAX), _CMP_NLE_UQ);
	y0 = exp8(_mm512_cvtps_pd(_mm512_castps512_ps256(xx)), &n0);
	y1 = exp8(_mm512_cvtps_pd(_mm512_extractf32x8_ps(xx, 1)), &n1);
	intra = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(y0)), _mm512_cvtpd_ps(y1),
				   1);
	slow |= (__mmask16)(((unsigned)n1 << 8 | n0) & lm);
	if (slow) {
		_mm512_storeu_ps(av, a);
		_mm512_storeu_ps(iv, intra);
		for (unsigned m = slow; m; m &= m - 1) {
			int l = __builtin_ctz(m);

			iv[l] = weld_pcb_intra(av[l], mn, span, fn);
		}
		intra = _mm512_loadu_ps(iv);
	}
	/* tanh_f(): p itself where |p| < 2^-13 */
	big = _mm512_mask_cmp_ps_mask(lm, _mm512_abs_ps(p), _mm512_set1_ps(0x1p-13f), _CMP_NLT_UQ);
	if (big) {
		_mm512_storeu_ps(pv, p);
		for (unsigned m = big; m; m &= m - 1) {
			int l = __builtin_ctz(m);

			pv[l] = weld_pcb_tanh(pv[l]);
		}
		t = _mm512_loadu_ps(pv);
	}
	return _mm512_mul_ps(intra, t);
}

/*
 * Pack the flagged elements (positions into idx, deltas into tmp, products
 * into sc: m <= j, so nothing is overwritten before it is read), take their
 * beta and score, then clear sc and put the scores in place.
 */
__attribute__((target("avx512f,avx512dq")))
static void scores_avx512(const float *d, const float *sum, size_t n,
			  const struct weld_pcb_unit *u, size_t len, const uint64_t *in_bits,
			  float *tmp, uint32_t *idx, float *sc)
{
	float mn = u->lo < u->hi ? u->lo : u->hi, span = u->hi - mn, fn = (float)n;
	float thr = u->thr, width = u->top - u->thr;
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	size_t m = 0;

	for (size_t j = 0; j < len; j += 16) {
		__mmask16 lm = len - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - j)) - 1);
		__mmask16 in = (__mmask16)(in_bits[j / 64] >> (j % 64)) & lm, first;
		__m512 x, p;
		int c;

		if (!in)
			continue;
		x = _mm512_maskz_loadu_ps(in, d + j);
		p = _mm512_mul_ps(x, _mm512_maskz_loadu_ps(in, sum + j));
		c = __builtin_popcount(in);
		first = (__mmask16)((1u << c) - 1);
		/* packed in registers, then stored: a compressing store to
		 * memory is slow on some processors */
		_mm512_mask_storeu_epi32(idx + m, first,
					 _mm512_maskz_compress_epi32(in, _mm512_add_epi32(
						 iota, _mm512_set1_epi32((int)j))));
		_mm512_mask_storeu_ps(tmp + m, first, _mm512_maskz_compress_ps(in, x));
		_mm512_mask_storeu_ps(sc + m, first, _mm512_maskz_compress_ps(in, p));
		m += (size_t)c;
	}
	for (size_t i = 0; i < m; i += 16) {
		__mmask16 lm = m - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (m - i)) - 1);
		__m512 beta = beta16(_mm512_maskz_loadu_ps(lm, tmp + i), _mm512_maskz_loadu_ps(lm, sc + i),
				     lm, u->lo, u->hi, mn, span, fn);
		__mmask16 keep = _mm512_cmp_ps_mask(beta, _mm512_set1_ps(thr), _CMP_GT_OQ);

		/* (beta - thr) / (top - thr) where beta > thr, else 0 */
		_mm512_mask_storeu_ps(tmp + i, lm,
				      _mm512_maskz_div_ps(keep, _mm512_sub_ps(beta, _mm512_set1_ps(thr)),
							  _mm512_set1_ps(width)));
	}
	memset(sc, 0, len * sizeof(*sc));
	for (size_t i = 0; i < m; i++)
		sc[idx[i]] = tmp[i];
}

/* beta of every element, 16 at a time. */
__attribute__((target("avx512f,avx512dq")))
static void beta_avx512(const float *d, const float *sum, size_t n, float lo, float hi, size_t len,
			float *beta)
{
	float mn = lo < hi ? lo : hi, span = hi - mn;

	for (size_t j = 0; j < len; j += 16) {
		__mmask16 lm = len - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - j)) - 1);
		__m512 x = _mm512_maskz_loadu_ps(lm, d + j);

		_mm512_mask_storeu_ps(beta + j, lm,
				      beta16(x, _mm512_mul_ps(x, _mm512_maskz_loadu_ps(lm, sum + j)), lm,
					     lo, hi, mn, span, (float)n));
	}
}

/* beta at the m positions idx, 16 at a time (each 16 gathered first). */
__attribute__((target("avx512f,avx512dq")))
static void beta_at_avx512(const float *d, const float *sum, size_t n, float lo, float hi,
			   const uint32_t *idx, size_t m, float *beta)
{
	float mn = lo < hi ? lo : hi, span = hi - mn, xv[16], sv[16];

	for (size_t k = 0; k < m; k += 16) {
		size_t c = m - k < 16 ? m - k : 16;
		__mmask16 lm = (__mmask16)((1u << c) - 1);
		__m512 x;

		for (size_t l = 0; l < c; l++) {
			xv[l] = d[idx[k + l]];
			sv[l] = sum[idx[k + l]];
		}
		x = _mm512_maskz_loadu_ps(lm, xv);
		_mm512_mask_storeu_ps(beta + k, lm,
				      beta16(x, _mm512_mul_ps(x, _mm512_maskz_loadu_ps(lm, sv)), lm, lo,
					     hi, mn, span, (float)n));
	}
}

/* Whether the vectors serve n sources here. */
static bool vectors(size_t n, size_t len)
{
	return n <= 16 && len < (1u << 31) && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512dq");
}

bool weld_k_pcb_beta_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			 size_t len, float *beta)
{
	if (!vectors(n, len))
		return false;
	beta_avx512(d, sum, n, lo, hi, len, beta);
	return true;
}

bool weld_k_pcb_beta_at_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			    const uint32_t *idx, size_t m, float *beta)
{
	if (!vectors(n, m))
		return false;
	beta_at_avx512(d, sum, n, lo, hi, idx, m, beta);
	return true;
}

bool weld_k_pcb_scores_flags(const float *d, const float *sum, size_t n,
			     const struct weld_pcb_unit *u, size_t len, const uint64_t *in_bits,
			     float *tmp, uint32_t *idx, float *sc)
{
	if (!vectors(n, len))
		return false;
	scores_avx512(d, sum, n, u, len, in_bits, tmp, idx, sc);
	return true;
}
#else
bool weld_k_pcb_beta_at_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			    const uint32_t *idx, size_t m, float *beta)
{
	(void)d, (void)sum, (void)n, (void)lo, (void)hi, (void)idx, (void)m, (void)beta;
	return false;
}

bool weld_k_pcb_beta_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			 size_t len, float *beta)
{
	(void)d, (void)sum, (void)n, (void)lo, (void)hi, (void)len, (void)beta;
	return false;
}

bool weld_k_pcb_scores_flags(const float *d, const float *sum, size_t n,
			     const struct weld_pcb_unit *u, size_t len, const uint64_t *in_bits,
			     float *tmp, uint32_t *idx, float *sc)
{
	(void)d, (void)sum, (void)n, (void)u, (void)len, (void)in_bits, (void)tmp, (void)idx;
	(void)sc;
	return false;
}
#endif
