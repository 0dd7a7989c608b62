/*
 * pcb_scores.c - step 5's scores of one model over a tile (METHODS 12)
 * from the window's flags (pcb.h), with AVX-512: the flagged elements are
 * packed, and their beta taken 16 at a time with exp on vectors instead
 * of a memo looked up element by element.
 *
 * beta = float(weld_exp(x)) * tanh_f(p): weld_exp is taken on the
 * vectors themselves (weld_exp_lanes, the same bits as a call); the
 * elements whose tanh is not p itself (|p| >= 2^-13) take weld_tanh as
 * pcb.c does.
 */
#include "pcb.h"
#include "elementary.h"
#include "target_clones.h"

#include <math.h>
#include <string.h>

#if WELD_AVX512
#include <immintrin.h>

/* weld_exp of 8 doubles (weld_exp_lanes_normal where it serves: the
 * same bits) */
__attribute__((target("avx512f,avx512dq"))) static inline __m512d exp8(__m512d x)
{
	weld_vexp v;

	_Static_assert(sizeof(v) == sizeof(x), "8 lanes of double");
	memcpy(&v, &x, sizeof(v));
	if (_mm512_cmp_pd_mask(_mm512_abs_pd(x), _mm512_set1_pd(WELD_EXP_NORMAL), _CMP_LE_OQ) == 0xFF)
		weld_exp_lanes_normal(&v);
	else
		weld_exp_lanes(&v);
	memcpy(&x, &v, sizeof(x));
	return x;
}

/* beta of 16 packed elements: deltas x, products p; the lanes of lm. */
__attribute__((target("avx512f,avx512dq"))) static __m512 beta16(__m512 x, __m512 p, __mmask16 lm,
								 float lo, float hi, float mn,
								 float span, float fn)
{
	__m512 a = _mm512_abs_ps(x), nn, xx, intra, t = p;
	__mmask16 big;
	float pv[16];

	/* clip_abs(): a NaN stays NaN, lo > hi gives hi */
	a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, _mm512_set1_ps(lo), _CMP_LT_OQ),
			       _mm512_set1_ps(lo));
	a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, _mm512_set1_ps(hi), _CMP_GT_OQ),
			       _mm512_set1_ps(hi));
	nn = span > 0 ? _mm512_div_ps(_mm512_sub_ps(a, _mm512_set1_ps(mn)), _mm512_set1_ps(span))
		      : _mm512_setzero_ps();
	xx = _mm512_mul_ps(_mm512_set1_ps(fn), _mm512_mul_ps(nn, nn));
	intra = _mm512_insertf32x8(
		_mm512_castps256_ps512(_mm512_cvtpd_ps(exp8(_mm512_cvtps_pd(
			_mm512_castps512_ps256(xx))))),
		_mm512_cvtpd_ps(exp8(_mm512_cvtps_pd(_mm512_extractf32x8_ps(xx, 1)))), 1);
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
 * Pack the flagged elements (deltas into tmp, products into sc: m <= j, so
 * nothing is overwritten before it is read), take their beta and score,
 * then put the scores in place, 0 elsewhere.
 */
__attribute__((target("avx512f,avx512dq")))
static void scores_avx512(const float *d, const float *sum, size_t n,
			  const struct weld_pcb_unit *u, size_t len, const uint64_t *in_bits,
			  float *tmp, float *sc)
{
	float mn = u->lo < u->hi ? u->lo : u->hi, span = u->hi - mn, fn = (float)n;
	float thr = u->thr, width = u->top - u->thr;
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
	/* the scores back in place: each 16's packed ones expanded over the
	 * lanes of their flags, 0 elsewhere */
	m = 0;
	for (size_t j = 0; j < len; j += 16) {
		__mmask16 lm = len - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - j)) - 1);
		__mmask16 in = (__mmask16)(in_bits[j / 64] >> (j % 64)) & lm;
		int c = __builtin_popcount(in);

		_mm512_mask_storeu_ps(sc + j, lm,
				      _mm512_maskz_expand_ps(in, _mm512_maskz_loadu_ps(
					      (__mmask16)((1u << c) - 1), tmp + m)));
		m += (size_t)c;
	}
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
			     float *tmp, float *sc)
{
	if (!vectors(n, len))
		return false;
	scores_avx512(d, sum, n, u, len, in_bits, tmp, sc);
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
			     float *tmp, float *sc)
{
	(void)d, (void)sum, (void)n, (void)u, (void)len, (void)in_bits, (void)tmp, (void)sc;
	return false;
}
#endif
