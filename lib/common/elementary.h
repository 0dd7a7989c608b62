/*
 * elementary.h - weld's own exp, log and tanh, whose bits are the same on
 * every machine.
 *
 * The C library's exp (and log) differs between libraries, their versions and their
 * variants for one machine (glibc before 2.28 had another; glibc picks an
 * FMA or a non-FMA code path at run time). Where a result's bits must be
 * a definition's (arcee_fusion's kl, pcb's intra and inter), weld uses
 * weld_exp, weld_log and weld_tanh instead: each is
 * made of IEEE 754 basic operations only (+ - * in double, rounded to
 * nearest, never fused; conversions; bit operations for powers of 2), in
 * a fixed order, so a call and any lane of weld_exp_lanes give the same
 * bits on every instruction set, and a NumPy twin (tests/ref/ref_exp.py)
 * can repeat them.
 *
 * The definition, for a double x:
 *  - NaN: x + x. Every other x is first clamped to [-746, 710] (outside,
 *    exp rounds to 0 or overflows to +inf anyway).
 *  - k = the integer nearest x * (16 / ln 2), found with the shifter
 *    1.5 * 2^52: kd = x * INVLN2N + 1.5 * 2^52 (two roundings; INVLN2N =
 *    16 / ln 2 rounded), k = its low bits, kd -= 1.5 * 2^52.
 *  - r = (x - kd * LN2HI) - kd * LN2LO: LN2HI = ln(2)/16 to 35 bits, LN2LO
 *    = the rest rounded, so that kd * LN2HI (|k| < 2^15) and the first
 *    subtraction are exact; |r| <= ln(2)/32 and a little.
 *  - j = k mod 16, e = floor(k / 16); hi = 2^(j/16) rounded to double,
 *    tail = (2^(j/16) - hi) / hi rounded (the tables, in elementary.c).
 *  - t = ((tail + r) + r^2 (c2 + r c3)) + r^4 ((c4 + r c5) + r^2 (c6 + r c7)),
 *    c_i = 1/i! rounded to double, each product and sum rounded in that
 *    order (Taylor's series: the first term left out is below 2^-59).
 *  - y = hi + hi * t, in [0.97, 1.97]; the result is (y * 2^e1) * 2^e2
 *    with e1 = floor(e / 2), e2 = e - e1: the first product is exact, the
 *    second rounds once, also where the result is subnormal, 0 or +inf.
 * So exp(+-0) = 1, exp(-inf) = 0, exp(+inf) = +inf. Within 0.6 ulp of e^x
 * (the last rounding 0.5, the table's and the series' the rest; 0.57 at
 * most on 2 * 10^7 points against expl), so at most 1 ulp from any exp
 * whose error is below 1.4 ulp (glibc's is below 0.52).
 *
 * weld_log, for a double x:
 *  - NaN: x + x; x < 0: the quiet NaN WELD_LOG_NAN; +-0: -inf; +inf: +inf.
 *  - A subnormal x is first scaled by 2^54 (exact). x = 2^e m with m in
 *    [0.75, 1.5) (m from the significand's bits, halved when >= 1.5).
 *  - i = (int)(m * 128 + 0.5), c = i / 128 (i in 96..192; both exact), and
 *    u = (m - c) / c rounded; m - c is exact, and so is the division's rest
 *    d - u c, computed with u split so that each part times c is exact:
 *    uh = u with its low 8 bits cleared, ul = u - uh, rest = ((m - c) -
 *    uh c) - ul c, its share rest / c rounded.
 *  - (s, err) = two-sum(e LN2HI, loghi[i]) and (h, err2) = two-sum(s, u)
 *    (Knuth's: s + err is the exact sum); LN2HI = ln 2 to 42 bits, so that
 *    e LN2HI is exact; loghi/loglo = log(i / 128) rounded and its rest
 *    rounded (the tables, in elementary.c); LN2LO = ln 2 - LN2HI rounded.
 *  - p = u^2 (-1/2 + u (1/3 + u (-1/4 + u (1/5 + u (-1/6 + u / 7))))),
 *    the coefficients rounded to double (|u| < 2^-7.5: the first term left
 *    out is below 2^-60 |u|), each operation rounded in that order.
 *  - The result is h + ((((err2 + err) + (e LN2LO + loglo[i])) + rest / c) + p).
 * So log(1) = +0. Within 0.52 ulp of log x (0.510 at most on 6 * 10^4
 * points against Python's decimal module to 60 digits, across the whole
 * range of doubles and near 1).
 *
 * weld_tanh, for a double x:
 *  - NaN: x + x. Otherwise a = |x|, and the result takes x's sign (so
 *    tanh(-0) = -0).
 *  - a < 2^-5: s = a * a, t = a + a (s (T3 + s (T5 + s (T7 + s T9)))),
 *    T3..T9 = -1/3, 2/15, -17/315, 62/2835 rounded to double, each
 *    product and sum rounded in that order (Taylor's series: the first
 *    term left out is below 2^-56 a).
 *  - Else e = weld_exp(-2 a) (0 for a > 373), t = (1 - e) / (1 + e).
 * Within 2^-48 of tanh x relative to it (the subtraction 1 - e loses at
 * most 5 bits at a = 2^-5); so tanh rounded to float is the correctly
 * rounded float but where tanh lies within 2^-48 of a midpoint.
 */
#ifndef WELD_ELEMENTARY_H
#define WELD_ELEMENTARY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* no fused multiply-add, whatever the compiler's default */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define WELD_EXP_LANES 8
#define WELD_EXP_N 16   /* table entries: 2^(j/16) */

typedef double weld_vexp __attribute__((vector_size(WELD_EXP_LANES * sizeof(double))));
typedef int64_t weld_vexp_mask __attribute__((vector_size(WELD_EXP_LANES * sizeof(int64_t))));
typedef uint64_t weld_vexp_bits __attribute__((vector_size(WELD_EXP_LANES * sizeof(uint64_t))));

#define WELD_LOG_FIRST 96 /* the tables of log(i / 128): i = 96..192 */
#define WELD_LOG_N 97
#define WELD_LOG_LN2HI 0x1.62e42fefa3800p-1
#define WELD_LOG_LN2LO 0x1.ef35793c76730p-45
#define WELD_LOG_NAN __builtin_nan("")

/* hi and tail of 2^(j/16), j = 0..15 */
extern const double weld_exp_hi[WELD_EXP_N], weld_exp_tail[WELD_EXP_N];

/* log(i / 128) rounded (hi) and its rest rounded (lo), i = 96..192 */
extern const double weld_log_hi[WELD_LOG_N], weld_log_lo[WELD_LOG_N];

/* The natural log of x as defined above. */
double weld_log(double x);

/* e^x as defined above, one value. */
double weld_exp(double x);

/* tanh x as defined above. */
double weld_tanh(double x);

/* y[i] = weld_exp(x[i]) for n values (x and y may be the same array). */
void weld_exp_array(const double *x, double *y, size_t n);

/* a where the mask m is all ones, else b (lanes of weld_vexp) */
#define WELD_VEXP_PICK(m, a, b) \
	((weld_vexp)(((weld_vexp_mask)(a) & (m)) | ((weld_vexp_mask)(b) & ~(m))))

/* *hi, *tail = the table's entries at the low 4 bits of each lane of m:
 * a permutation of two vectors where the compiler has one (one
 * instruction with AVX-512), else loads. */
static inline void weld_exp_table_lookup(const weld_vexp_bits *m, weld_vexp *hi, weld_vexp *tail)
{
#if defined(__GNUC__) && !defined(__clang__)
	const weld_vexp_mask j = (weld_vexp_mask)(*m & (WELD_EXP_N - 1));
	weld_vexp h0, h1, t0, t1;

	memcpy(&h0, weld_exp_hi, sizeof(h0));
	memcpy(&h1, weld_exp_hi + WELD_EXP_LANES, sizeof(h1));
	memcpy(&t0, weld_exp_tail, sizeof(t0));
	memcpy(&t1, weld_exp_tail + WELD_EXP_LANES, sizeof(t1));
	*hi = __builtin_shuffle(h0, h1, j);
	*tail = __builtin_shuffle(t0, t1, j);
#else
	for (int l = 0; l < WELD_EXP_LANES; l++) {
		size_t j = (size_t)((*m)[l] & (WELD_EXP_N - 1));

		(*hi)[l] = weld_exp_hi[j];
		(*tail)[l] = weld_exp_tail[j];
	}
#endif
}

/* The common part of the lanes' exp: *y = hi + hi t in [0.97, 1.97] for
 * each lane of *xc (already clamped), and *m, whose bits 4 and up give e
 * (pointers: see weld_exp_lanes). */
static inline void weld_exp_lanes_y(const weld_vexp *xcp, weld_vexp *y, weld_vexp_bits *m)
{
	const weld_vexp zero = { 0 }, shift = zero + 0x1.8p52;
	const weld_vexp_bits low52 = (weld_vexp_bits){ 0 } + 0xFFFFFFFFFFFFFu;
	weld_vexp xc = *xcp, kd, r, r2, hi, tail, t;

	kd = xc * 0x1.71547652b82fep+4 + shift;
	/* the low 52 bits of kd are 2^51 + k (|k| < 2^15) */
	*m = (weld_vexp_bits)kd & low52;
	kd = kd - shift;
	r = xc - kd * 0x1.62e42fefc0000p-5;
	r = r - kd * -0x1.c610ca86c3899p-41;
	weld_exp_table_lookup(m, &hi, &tail);
	r2 = r * r;
	t = ((tail + r) + r2 * (0.5 + r * 0x1.5555555555555p-3)) +
	    (r2 * r2) * ((0x1.5555555555555p-5 + r * 0x1.1111111111111p-7) +
			 r2 * (0x1.6c16c16c16c17p-10 + r * 0x1.a01a01a01a01ap-13));
	*y = hi + hi * t;
}

/* *v = weld_exp of each lane of *v: inline, so that a caller compiled for
 * another instruction set (a target clone) runs it in its own vectors (a
 * pointer, not a value: vectors as arguments change the ABI between
 * instruction sets). */
static inline void weld_exp_lanes(weld_vexp *v)
{
	const weld_vexp zero = { 0 };
	weld_vexp x = *v, xc, y;
	weld_vexp_bits m, eb, e1b;

	xc = WELD_VEXP_PICK(x < -746.0, zero - 746.0, x);
	xc = WELD_VEXP_PICK(xc > 710.0, zero + 710.0, xc);
	weld_exp_lanes_y(&xc, &y, &m);
	/* e = floor(k / 16) = (m >> 4) - 2^47; eb = e + 2048 > 0, e1 = floor(e / 2) */
	eb = (m >> 4) - (((weld_vexp_bits){ 0 } + 1) << 47) + 2048;
	e1b = eb >> 1;                  /* e1 + 1024 */
	/* 2^e1 has exponent bits e1 + 1023 = e1b - 1; 2^e2 has e - e1 + 1023 */
	y = (y * (weld_vexp)((e1b - 1) << 52)) * (weld_vexp)((eb - e1b - 1) << 52);
	*v = WELD_VEXP_PICK(x != x, x + x, y);
}

/* The same bits when every lane of *v is known to lie in [-WELD_EXP_NORMAL,
 * WELD_EXP_NORMAL]: no clamp or NaN to take care of, |e| <= 1010, so that
 * 2^e and y 2^e are normal and the two products of the scaling are one,
 * exact. */
#define WELD_EXP_NORMAL 700.0

static inline void weld_exp_lanes_normal(weld_vexp *v)
{
	weld_vexp_bits m;
	weld_vexp y;

	weld_exp_lanes_y(v, &y, &m);
	/* 2^e has exponent bits e + 1023 = (m >> 4) - 2^47 + 1023 */
	*v = y * (weld_vexp)(((m >> 4) - (((weld_vexp_bits){ 0 } + 1) << 47) + 1023) << 52);
}

#endif
