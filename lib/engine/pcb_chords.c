/*
 * pcb_chords.c - bounds of intra = exp(n N^2) from chords and tangents of
 * the curve over 32 pieces of N, for the window pass over a unit (pcb.h):
 * a few operations per element where the polynomial of pcb.c takes dozens.
 *
 * f(N) = exp(fn N^2) is convex on [0, 1]. On piece i, N = (i + r) / 32
 * with r in [0, 1]:
 *   f(N) <= at[i] + rise[i] r     (the chord: convexity)
 *   f(N) >= at[i] + slope[i] r    (the tangent at i / 32: convexity)
 * with at[i] = f(i/32), rise[i] = f((i+1)/32) - f(i/32) and slope[i] =
 * f'(i/32) / 32, taken in double and rounded to float (a relative error
 * below 2^-22 on the line: f rises at most by e^0.99 over a piece for
 * fn <= 16; more sources take pcb.c's polynomial). N here is (a - mn) * (1 / span) and 32 N is exact, so the
 * piece and r are exact; intra_of()'s N, (a - mn) / span, is within
 * 2^-22 of it (and at most 1), which moves exp(fn N^2) by less than
 * 2^-16 for fn <= 16; its x = fn N^2 in float and the rounding of exp to
 * float move it by less than 2^-16 more. The float evaluation of the
 * lines (every term positive) adds 3 roundings. All of it stays inside
 * the margin of 2^-12 the bounds take:
 *   dn = (at + slope r) (1 - 2^-12) <= intra <= (at + rise r) (1 + 2^-12) = up.
 * beta's bounds then follow as in pcb.c's beta_bounds(): beta <= up p for
 * p = delta * sum > 0 (beta <= 0 else), beta >= dn p where 0 < p < 2^-13,
 * and nothing is known where p or N is NaN or N is infinite (an infinite
 * delta at an infinite clip bound, a span whose inverse overflows).
 */
#include "pcb.h"
#include "elementary.h"
#include "target_clones.h"

#include <math.h>

void weld_pcb_bound_chords(struct weld_pcb_bound *b)
{
	double f[WELD_PCB_CHORDS + 1];

	b->chords = false;
	/* the chords' width grows with fn^2: more sources take pcb.c's
	 * polynomial */
	if (!(b->fn <= 16))
		return;
	for (int i = 0; i <= WELD_PCB_CHORDS; i++) {
		double nn = (double)i / WELD_PCB_CHORDS;

		f[i] = weld_exp((double)b->fn * nn * nn);
	}
	for (int i = 0; i < WELD_PCB_CHORDS; i++) {
		double nn = (double)i / WELD_PCB_CHORDS;

		b->at[i] = (float)f[i];
		b->rise[i] = (float)(f[i + 1] - f[i]);
		b->slope[i] = (float)(2 * (double)b->fn * nn * f[i] / WELD_PCB_CHORDS);
	}
	b->chords = true;
}

#if WELD_AVX512
#include <immintrin.h>

/*
 * The window's flags of 16 elements (lanes of lm) from the chords: in
 * where beta may exceed cut, *over where it surely exceeds above and
 * cannot exceed top (count_over: above > cut). u = 32 N is taken as
 * (a - mn) * (32 / span). Where nothing is known the upper bound comes out
 * NaN, which in takes as "may exceed": p NaN (max(0, NaN) is NaN), N NaN
 * or infinite (its piece's r is NaN or infinite, rise > 0); N above 1 by a
 * rounding gives r a little above 1 on the last piece, and the chord
 * beyond its end only grows.
 */
/* What the flags of a unit and source take, in registers. */
struct chord_regs {
	__m512 lo, hi, mn, inv32, cut, above, top;
	__m512 at[2], rise[2], slope[2];
	bool count_over;
};

__attribute__((target("avx512f"))) static inline __mmask16
chord_flags(__m512 x, __m512 s, __mmask16 lm, const struct chord_regs *c, __mmask16 *over)
{
	const __m512 zero = _mm512_setzero_ps();
	__m512 p = _mm512_mul_ps(x, s);
	__m512 a = _mm512_min_ps(_mm512_max_ps(_mm512_abs_ps(x), c->lo), c->hi);
	__m512 u = _mm512_mul_ps(_mm512_sub_ps(a, c->mn), c->inv32);
	__m512i i = _mm512_min_epi32(_mm512_cvttps_epi32(u), _mm512_set1_epi32(WELD_PCB_CHORDS - 1));
	__m512 r = _mm512_sub_ps(u, _mm512_cvtepi32_ps(i));
	__m512 at = _mm512_permutex2var_ps(c->at[0], i, c->at[1]);
	__m512 rise = _mm512_permutex2var_ps(c->rise[0], i, c->rise[1]);
	__m512 up = _mm512_mul_ps(_mm512_add_ps(at, _mm512_mul_ps(rise, r)),
				  _mm512_set1_ps(1.0f + 0x1p-12f));
	__m512 ub = _mm512_mul_ps(up, _mm512_max_ps(zero, p));
	__mmask16 in = _mm512_mask_cmp_ps_mask(lm, ub, c->cut, _CMP_NLE_UQ);

	*over = 0;
	if (c->count_over) {
		__m512 slope = _mm512_permutex2var_ps(c->slope[0], i, c->slope[1]);
		__m512 dn = _mm512_mul_ps(_mm512_add_ps(at, _mm512_mul_ps(slope, r)),
					  _mm512_set1_ps(1.0f - 0x1p-12f));
		__mmask16 tiny = _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ), p,
							 _mm512_set1_ps(0x1p-13f), _CMP_LT_OQ);
		__mmask16 lb_over = _mm512_mask_cmp_ps_mask(tiny, _mm512_mul_ps(dn, p), c->above,
							    _CMP_GT_OQ);

		/* lb > above > cut: in, unless the bounds were wrong */
		*over = _mm512_mask_cmp_ps_mask(lb_over & in, ub, c->top, _CMP_LE_OQ);
	}
	return in;
}

__attribute__((target("avx512f,popcnt")))
static size_t window_avx512(const float *d, const float *sum, const struct weld_pcb_bound *b,
			    float lo, float hi, float cut, float above, float top, size_t len,
			    uint32_t *idx, uint64_t *n_above, uint64_t *in_bits)
{
	const struct chord_regs c = {
		.lo = _mm512_set1_ps(lo), .hi = _mm512_set1_ps(hi), .mn = _mm512_set1_ps(b->mn),
		.inv32 = _mm512_set1_ps(b->inv * WELD_PCB_CHORDS), .cut = _mm512_set1_ps(cut),
		.above = _mm512_set1_ps(above), .top = _mm512_set1_ps(top),
		.at = { _mm512_loadu_ps(b->at), _mm512_loadu_ps(b->at + 16) },
		.rise = { _mm512_loadu_ps(b->rise), _mm512_loadu_ps(b->rise + 16) },
		.slope = { _mm512_loadu_ps(b->slope), _mm512_loadu_ps(b->slope + 16) },
		.count_over = above > cut,
	};
	const __m512i step = _mm512_set1_epi32(16);
	__m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	uint64_t na = 0, word = 0;
	size_t m = 0;

	for (size_t j = 0; j < len; j += 16) {
		__mmask16 lm = len - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - j)) - 1);
		__m512 x = _mm512_maskz_loadu_ps(lm, d + j), s = _mm512_maskz_loadu_ps(lm, sum + j);
		__mmask16 over, in = chord_flags(x, s, lm, &c, &over);
		__mmask16 need = (__mmask16)(in & ~over);

		/* the positions of the needed ones packed in a register (a
		 * compressing store to memory is slow on some processors), with
		 * no branch: whether any is needed is hard to foresee */
		_mm512_mask_storeu_epi32(idx + m, (__mmask16)((1u << __builtin_popcount(need)) - 1),
					 _mm512_maskz_compress_epi32(need, pos));
		m += (size_t)__builtin_popcount(need);
		na += (uint64_t)__builtin_popcount(over);
		pos = _mm512_add_epi32(pos, step);
		word |= (uint64_t)in << (j % 64);
		if (in_bits && (j % 64 == 48 || j + 16 >= len)) {
			in_bits[j / 64] = word;
			word = 0;
		}
	}
	*n_above += na;
	return m;
}

size_t weld_k_pcb_window_chords(const float *d, const float *sum, const struct weld_pcb_bound *b,
				float lo, float hi, float cut, float above, float top, size_t len,
				uint32_t *idx, uint64_t *n_above, uint64_t *in_bits)
{
	/* positions fit int32 lanes */
	if (!b->chords || !(cut > 0) || len >= (1u << 31) || !__builtin_cpu_supports("avx512f"))
		return SIZE_MAX;
	return window_avx512(d, sum, b, lo, hi, cut, above, top, len, idx, n_above, in_bits);
}
#else
size_t weld_k_pcb_window_chords(const float *d, const float *sum, const struct weld_pcb_bound *b,
				float lo, float hi, float cut, float above, float top, size_t len,
				uint32_t *idx, uint64_t *n_above, uint64_t *in_bits)
{
	(void)d, (void)sum, (void)b, (void)lo, (void)hi, (void)cut, (void)above, (void)top;
	(void)len, (void)idx, (void)n_above, (void)in_bits;
	return SIZE_MAX;
}
#endif
