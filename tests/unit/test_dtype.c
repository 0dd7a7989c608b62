/*
 * test_dtype.c - dtype names and the float conversions of lib/dtype.c.
 *
 * Wherever the input space is small the tests are exhaustive: every 16-bit
 * pattern is decoded and re-encoded, every rounding boundary between two
 * neighbouring bf16 or f16 values is probed on both sides, and every 8-bit
 * code is decoded. Expected values come from formulas written here with
 * ldexp() and from the hardware's double to float cast, not from the code
 * under test.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "weld.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static double u2d(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

static bool bf16_is_nan(uint16_t h)
{
	return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0;
}

static bool f16_is_nan(uint16_t h)
{
	return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0;
}

/* xorshift64*: reproducible test data without depending on rand() */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fill_random(void *p, size_t n, uint64_t seed)
{
	unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(next_random(&seed) >> 56);
}

/* ---------------------------------------------------------------- names */

static void test_names_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < WELD_DTYPE_COUNT; i++) {
		enum weld_dtype t = WELD_DTYPE_COUNT;

		assert_int_equal(weld_dtype_parse(weld_dtype_name((enum weld_dtype)i), &t), 0);
		assert_int_equal(t, i);
	}
	assert_string_equal(weld_dtype_name(WELD_BF16), "BF16");
	assert_string_equal(weld_dtype_name(WELD_F8_E4M3), "F8_E4M3");
}

static void test_parse_rejects_unknown(void **state)
{
	static const char *const bad[] = {
		"", "f32", "bf16", "F32 ", " F32", "F4", "C64", "F8_E4M3FNUZ",
		"F8_E8M0", "FLOAT", "F3",
	};
	enum weld_dtype t = WELD_F32;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(weld_dtype_parse(bad[i], &t), -1);
	assert_int_equal(t, WELD_F32);
}

static void test_sizes_and_kinds(void **state)
{
	static const struct {
		enum weld_dtype t;
		size_t size;
		bool is_float;
	} want[] = {
		{ WELD_F64, 8, true }, { WELD_F32, 4, true }, { WELD_F16, 2, true },
		{ WELD_BF16, 2, true }, { WELD_F8_E4M3, 1, true }, { WELD_F8_E5M2, 1, true },
		{ WELD_I64, 8, false }, { WELD_I32, 4, false }, { WELD_I16, 2, false },
		{ WELD_I8, 1, false }, { WELD_U64, 8, false }, { WELD_U32, 4, false },
		{ WELD_U16, 2, false }, { WELD_U8, 1, false }, { WELD_BOOL, 1, false },
	};

	(void)state;
	assert_int_equal(sizeof(want) / sizeof(want[0]), WELD_DTYPE_COUNT);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(weld_dtype_size(want[i].t), want[i].size);
		assert_int_equal(weld_dtype_is_float(want[i].t), want[i].is_float);
	}
}

static void test_write_rank_order(void **state)
{
	/* formats.md §1.5, first written first, restricted to weld's dtypes */
	static const enum weld_dtype order[] = {
		WELD_U64, WELD_I64, WELD_F64, WELD_F32, WELD_U32, WELD_I32,
		WELD_BF16, WELD_F16, WELD_U16, WELD_I16, WELD_F8_E4M3,
		WELD_F8_E5M2, WELD_I8, WELD_U8, WELD_BOOL,
	};

	(void)state;
	assert_int_equal(sizeof(order) / sizeof(order[0]), WELD_DTYPE_COUNT);
	for (size_t i = 1; i < sizeof(order) / sizeof(order[0]); i++)
		assert_true(weld_dtype_write_rank(order[i - 1]) > weld_dtype_write_rank(order[i]));
}

/* ---------------------------------------------------------------- bf16 */

static void test_bf16_round_trip_all(void **state)
{
	(void)state;
	for (uint32_t h = 0; h <= 0xffffu; h++) {
		const float f = weld_bf16_to_f32((uint16_t)h);
		const uint16_t back = weld_f32_to_bf16(f);

		assert_int_equal(f2u(f), h << 16);
		if (bf16_is_nan((uint16_t)h)) {
			assert_int_equal(back, 0x7fc0);
		} else {
			assert_int_equal(back, h);
		}
	}
}

/*
 * For each pair of neighbouring non-negative bf16 values lo < hi, the
 * midpoint (exact in float32) goes to the even one of the two, and the
 * floats just below and above it go to lo and hi. The value above the
 * largest finite bf16 is taken as 2^128, so the last pair checks overflow.
 */
static void test_bf16_rounding_boundaries(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x7f80u; h++) {
		const double lo = weld_bf16_to_f32((uint16_t)h);
		const double hi = h + 1 == 0x7f80u ? ldexp(1, 128) :
				  weld_bf16_to_f32((uint16_t)(h + 1));
		const float mid = (float)((lo + hi) / 2);

		assert_true((double)mid == (lo + hi) / 2);
		for (int neg = 0; neg <= 1; neg++) {
			const float sgn = neg ? -1.0f : 1.0f;
			const uint16_t s = neg ? 0x8000u : 0;

			assert_int_equal(weld_f32_to_bf16(sgn * mid), s | (h & 1u ? h + 1 : h));
			assert_int_equal(weld_f32_to_bf16(sgn * nextafterf(mid, 0)), s | h);
			assert_int_equal(weld_f32_to_bf16(sgn * nextafterf(mid, INFINITY)), s | (h + 1));
		}
	}
}

static void test_bf16_ties(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	assert_int_equal(weld_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	assert_int_equal(weld_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	assert_int_equal(weld_f32_to_bf16(-(1.0f + 3 * 0x1p-8f)), 0xbf82);
}

static void test_bf16_specials(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_bf16(0.0f), 0x0000);
	assert_int_equal(weld_f32_to_bf16(-0.0f), 0x8000);
	assert_int_equal(weld_f32_to_bf16(INFINITY), 0x7f80);
	assert_int_equal(weld_f32_to_bf16(-INFINITY), 0xff80);
	assert_true(bf16_is_nan(weld_f32_to_bf16(NAN)));
	/* every NaN becomes the canonical one: a signalling NaN whose payload
	 * is all in the dropped bits, a negative one, one with a payload */
	assert_int_equal(weld_f32_to_bf16(u2f(0x7f800001u)), 0x7fc0);
	assert_int_equal(weld_f32_to_bf16(u2f(0xff800001u)), 0x7fc0);
	assert_int_equal(weld_f32_to_bf16(u2f(0xffc00000u)), 0x7fc0);
	assert_int_equal(weld_f32_to_bf16(u2f(0x7fa50000u)), 0x7fc0);
	/* overflow by rounding */
	assert_int_equal(weld_f32_to_bf16(u2f(0x7f7f7fffu)), 0x7f7f);
	assert_int_equal(weld_f32_to_bf16(u2f(0x7f7f8000u)), 0x7f80);
	assert_int_equal(weld_f32_to_bf16(3.4e38f), 0x7f80);
	assert_int_equal(weld_f32_to_bf16(FLT_MAX), 0x7f80);
	assert_int_equal(weld_f32_to_bf16(-FLT_MAX), 0xff80);
	assert_true(isinf(weld_bf16_to_f32(0x7f80)));
	assert_true(isnan(weld_bf16_to_f32(0x7f81)));
}

static void test_bf16_from_f32_subnormals(void **state)
{
	(void)state;
	/* bf16 keeps float32's exponent range: subnormals round, not flush */
	assert_int_equal(weld_f32_to_bf16(u2f(0x00000001u)), 0x0000);
	assert_int_equal(weld_f32_to_bf16(u2f(0x00008000u)), 0x0000);
	assert_int_equal(weld_f32_to_bf16(u2f(0x00008001u)), 0x0001);
	assert_int_equal(weld_f32_to_bf16(u2f(0x00010000u)), 0x0001);
	assert_int_equal(weld_f32_to_bf16(u2f(0x00018000u)), 0x0002);
	assert_int_equal(weld_f32_to_bf16(u2f(0x007fffffu)), 0x0080);
	assert_int_equal(weld_f32_to_bf16(u2f(0x80000001u)), 0x8000);
	assert_int_equal(weld_f32_to_bf16(u2f(0x807f0000u)), 0x807f);
	assert_true(weld_bf16_to_f32(0x0001) == ldexpf(1, -133));
	assert_true(weld_bf16_to_f32(0x8001) == -ldexpf(1, -133));
}

/* ---------------------------------------------------------------- f16 */

/* The value of a binary16 pattern, from the IEEE 754 definition. */
static double f16_reference(uint16_t h)
{
	const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	const double s = h & 0x8000u ? -1 : 1;

	if (e == 0x1f)
		return m ? NAN : s * INFINITY;
	if (e == 0)
		return s * ldexp(m, -24);
	return s * ldexp(1024 + m, e - 25);
}

static void test_f16_round_trip_all(void **state)
{
	(void)state;
	for (uint32_t h = 0; h <= 0xffffu; h++) {
		const float f = weld_f16_to_f32((uint16_t)h);
		const uint16_t back = weld_f32_to_f16(f);

		assert_int_equal(!!signbit(f), !!(h & 0x8000u));
		if (f16_is_nan((uint16_t)h)) {
			assert_true(isnan(f));
			assert_int_equal(back, 0x7e00);
		} else {
			assert_true((double)f == f16_reference((uint16_t)h));
			assert_int_equal(back, h);
		}
	}
}

/* As test_bf16_rounding_boundaries, with 2^16 above the largest f16. */
static void test_f16_rounding_boundaries(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x7c00u; h++) {
		const double lo = f16_reference((uint16_t)h);
		const double hi = h + 1 == 0x7c00u ? 65536.0 : f16_reference((uint16_t)(h + 1));
		const float mid = (float)((lo + hi) / 2);

		assert_true((double)mid == (lo + hi) / 2);
		for (int neg = 0; neg <= 1; neg++) {
			const float sgn = neg ? -1.0f : 1.0f;
			const uint16_t s = neg ? 0x8000u : 0;

			assert_int_equal(weld_f32_to_f16(sgn * mid), s | (h & 1u ? h + 1 : h));
			assert_int_equal(weld_f32_to_f16(sgn * nextafterf(mid, 0)), s | h);
			assert_int_equal(weld_f32_to_f16(sgn * nextafterf(mid, INFINITY)), s | (h + 1));
		}
	}
}

static void test_f16_ties(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(weld_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
	assert_int_equal(weld_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
	assert_int_equal(weld_f32_to_f16(2049.0f), 0x6800);
	assert_int_equal(weld_f32_to_f16(2051.0f), 0x6802);
	assert_int_equal(weld_f32_to_f16(-2051.0f), 0xe802);
}

static void test_f16_subnormals(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_f16(6e-8f), 0x0001);
	assert_int_equal(weld_f32_to_f16(-6e-8f), 0x8001);
	assert_int_equal(weld_f32_to_f16(0x1p-25f), 0x0000);
	assert_int_equal(weld_f32_to_f16(-0x1p-25f), 0x8000);
	assert_int_equal(weld_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
	assert_int_equal(weld_f32_to_f16(0x1p-26f), 0x0000);
	assert_int_equal(weld_f32_to_f16(0x1p-24f), 0x0001);
	assert_int_equal(weld_f32_to_f16(3 * 0x1p-25f), 0x0002);
	assert_int_equal(weld_f32_to_f16(1023 * 0x1p-24f), 0x03ff);
	assert_int_equal(weld_f32_to_f16(1023.5f * 0x1p-24f), 0x0400);
	assert_int_equal(weld_f32_to_f16(0x1p-14f), 0x0400);
	assert_int_equal(weld_f32_to_f16(FLT_MIN), 0x0000);
	assert_int_equal(weld_f32_to_f16(u2f(0x00000001u)), 0x0000);
	assert_true(weld_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(weld_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
	assert_true(weld_f16_to_f32(0x8200) == -0x1p-15f);
}

static void test_f16_overflow(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(weld_f32_to_f16(65519.0f), 0x7bff);
	assert_int_equal(weld_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
	assert_int_equal(weld_f32_to_f16(65520.0f), 0x7c00);
	assert_int_equal(weld_f32_to_f16(-65520.0f), 0xfc00);
	assert_int_equal(weld_f32_to_f16(1e6f), 0x7c00);
	assert_int_equal(weld_f32_to_f16(-1e6f), 0xfc00);
	assert_int_equal(weld_f32_to_f16(FLT_MAX), 0x7c00);
	assert_int_equal(weld_f32_to_f16(INFINITY), 0x7c00);
	assert_int_equal(weld_f32_to_f16(-INFINITY), 0xfc00);
}

static void test_f16_specials(void **state)
{
	(void)state;
	assert_int_equal(weld_f32_to_f16(0.0f), 0x0000);
	assert_int_equal(weld_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(weld_f32_to_f16(u2f(0x7fc00000u)), 0x7e00);
	/* every NaN, negative or signalling, becomes the canonical one */
	assert_int_equal(weld_f32_to_f16(u2f(0xffc00000u)), 0x7e00);
	assert_int_equal(weld_f32_to_f16(u2f(0x7f800001u)), 0x7e00);
	assert_int_equal(weld_f32_to_f16(u2f(0xff800001u)), 0x7e00);
	assert_true(isinf(weld_f16_to_f32(0x7c00)) && weld_f16_to_f32(0x7c00) > 0);
	assert_true(isinf(weld_f16_to_f32(0xfc00)) && weld_f16_to_f32(0xfc00) < 0);
	assert_true(isnan(weld_f16_to_f32(0x7c01)));
	assert_true(isnan(weld_f16_to_f32(0xfe00)));
	assert_true(weld_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(weld_f16_to_f32(0x3c00) == 1.0f);
}

/* ---------------------------------------------------------------- fp8 */

static void test_e4m3_all_codes(void **state)
{
	(void)state;
	for (unsigned b = 0; b < 256; b++) {
		const int e = (b >> 3) & 0xf, m = b & 7;
		const float s = b & 0x80u ? -1.0f : 1.0f;
		const float f = weld_e4m3_to_f32((uint8_t)b);

		if (e == 15 && m == 7) {
			assert_true(isnan(f));
			continue;
		}
		/* E4M3FN: bias 7, no infinity, subnormals m * 2^-9 */
		assert_true(f == s * (e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10)));
		assert_int_equal(!!signbit(f), !!(b & 0x80u));
	}
	assert_true(weld_e4m3_to_f32(0x7e) == 448.0f);
	assert_true(weld_e4m3_to_f32(0xfe) == -448.0f);
	assert_true(weld_e4m3_to_f32(0x08) == 0x1p-6f);
	assert_true(weld_e4m3_to_f32(0x01) == 0x1p-9f);
	assert_true(weld_e4m3_to_f32(0x38) == 1.0f);
	assert_true(isnan(weld_e4m3_to_f32(0xff)));
	assert_false(isinf(weld_e4m3_to_f32(0x78)));
}

static void test_e5m2_all_codes(void **state)
{
	(void)state;
	for (unsigned b = 0; b < 256; b++) {
		const int e = (b >> 2) & 0x1f, m = b & 3;
		const float s = b & 0x80u ? -1.0f : 1.0f;
		const float f = weld_e5m2_to_f32((uint8_t)b);

		if (e == 31) {
			if (m)
				assert_true(isnan(f));
			else
				assert_true(f == s * INFINITY);
			continue;
		}
		/* bias 15, subnormals m * 2^-16 */
		assert_true(f == s * (e == 0 ? ldexpf((float)m, -16) : ldexpf((float)(4 + m), e - 17)));
		assert_int_equal(!!signbit(f), !!(b & 0x80u));
	}
	assert_true(weld_e5m2_to_f32(0x7b) == 57344.0f);
	assert_true(weld_e5m2_to_f32(0x3c) == 1.0f);
	assert_true(weld_e5m2_to_f32(0x01) == 0x1p-16f);
}

/* ---------------------------------------------------------------- f64 */

static void test_f64_rounding(void **state)
{
	(void)state;
	assert_true(weld_f64_to_f32(1.0 + 0x1p-24) == 1.0f);
	assert_true(weld_f64_to_f32(1.0 + 3 * 0x1p-24) == 1.0f + 0x1p-22f);
	assert_true(weld_f64_to_f32(1.0 + 0x1p-24 + 0x1p-50) == 1.0f + 0x1p-23f);
	assert_true(weld_f64_to_f32(1.0 + 0x1p-24 - 0x1p-50) == 1.0f);
	assert_true(weld_f64_to_f32(0.1) == 0.1f);
	assert_true(weld_f64_to_f32(-0.1) == -0.1f);
	assert_true(weld_f64_to_f32((double)FLT_MAX) == FLT_MAX);
	/* the tie above FLT_MAX goes to the even neighbour, infinity */
	assert_true(isinf(weld_f64_to_f32(ldexp(2 - 0x1p-24, 127))));
	assert_true(weld_f64_to_f32(ldexp(2 - 0x1p-24, 127) - ldexp(1, 80)) == FLT_MAX);
	assert_true(isinf(weld_f64_to_f32(DBL_MAX)));
	assert_true(weld_f64_to_f32(-DBL_MAX) == -INFINITY);
	assert_true(weld_f64_to_f32(INFINITY) == INFINITY);
	assert_true(isnan(weld_f64_to_f32(NAN)));
	assert_true(signbit(weld_f64_to_f32(-NAN)));
	assert_int_equal(f2u(weld_f64_to_f32(-0.0)), 0x80000000u);
	/* float32 subnormals, and the ties at their bottom */
	assert_true(weld_f64_to_f32(0x1p-149) == ldexpf(1, -149));
	assert_int_equal(f2u(weld_f64_to_f32(0x1p-150)), 0);
	assert_int_equal(f2u(weld_f64_to_f32(0x1p-150 + 0x1p-200)), 1);
	assert_int_equal(f2u(weld_f64_to_f32(3 * 0x1p-150)), 2);
	assert_int_equal(f2u(weld_f64_to_f32(-3 * 0x1p-150)), 0x80000002u);
	assert_int_equal(f2u(weld_f64_to_f32(0x1p-126 - 0x1p-151)), 0x00800000u);
	assert_int_equal(f2u(weld_f64_to_f32(u2d(1))), 0);
	assert_int_equal(f2u(weld_f64_to_f32(DBL_MIN)), 0);
}

/* The hardware cast rounds to nearest even; compare over many doubles. */
static void test_f64_matches_cast(void **state)
{
	uint64_t seed = 42;

	(void)state;
	for (int i = 0; i < 2000000; i++) {
		const uint64_t r = next_random(&seed);
		double d;

		switch (i % 4) {
		case 0:
			/* any pattern */
			d = u2d(r);
			break;
		case 1:
			/* around float32's range, where rounding happens */
			d = u2d((r & 0x800fffffffffffffull) |
				((uint64_t)(860 + (r >> 52) % 300) << 52));
			break;
		case 2: {
			/* exact midpoints between neighbouring floats */
			const float f = u2f((uint32_t)r & 0x7f7fffffu);

			d = ((double)f + (double)nextafterf(f, INFINITY)) / 2;
			break;
		}
		default:
			/* one unit of the double away from a midpoint */
			d = u2d(((r & 0x7fffffffe0000000ull) | 0x10000000ull) +
				((r & 1) ? 1 : (uint64_t)-1));
			break;
		}
		if (isnan(d)) {
			assert_true(isnan(weld_f64_to_f32(d)));
			continue;
		}
		if (f2u(weld_f64_to_f32(d)) != f2u((float)d))
			fail_msg("f64 %a: got %a, want %a", d, (double)weld_f64_to_f32(d), (double)(float)d);
	}
}

/* ---------------------------------------------------------------- bulk */

static const enum weld_dtype float_types[] = {
	WELD_F64, WELD_F32, WELD_F16, WELD_BF16, WELD_F8_E4M3, WELD_F8_E5M2,
};

static const size_t lengths[] = { 0, 1, 15, 16, 17, 33, 1003 };

static float scalar_decode(enum weld_dtype t, const unsigned char *p)
{
	uint64_t d;
	uint32_t u;
	uint16_t h;

	switch (t) {
	case WELD_F64:
		memcpy(&d, p, 8);
		return weld_f64_to_f32(u2d(d));
	case WELD_F32:
		memcpy(&u, p, 4);
		return u2f(u);
	case WELD_F16:
		memcpy(&h, p, 2);
		return weld_f16_to_f32(h);
	case WELD_BF16:
		memcpy(&h, p, 2);
		return weld_bf16_to_f32(h);
	case WELD_F8_E4M3:
		return weld_e4m3_to_f32(*p);
	case WELD_F8_E5M2:
		return weld_e5m2_to_f32(*p);
	default:
		fail();
		return 0;
	}
}

static void test_bulk_decode_matches_scalar(void **state)
{
	(void)state;
	for (size_t ti = 0; ti < sizeof(float_types) / sizeof(float_types[0]); ti++) {
		const enum weld_dtype t = float_types[ti];
		const size_t w = weld_dtype_size(t);

		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			const size_t n = lengths[li];
			unsigned char *raw = malloc(n * w + 1);
			float *dst = malloc((n + 1) * sizeof(float));

			assert_non_null(raw);
			assert_non_null(dst);
			/* one byte in: misaligned for every width above 1 */
			fill_random(raw + 1, n * w, 1000 + n + ti);
			dst[n] = 12345.0f;
			weld_decode_f32(t, raw + 1, dst, n);
			for (size_t i = 0; i < n; i++) {
				const float want = scalar_decode(t, raw + 1 + i * w);

				if (f2u(dst[i]) != f2u(want))
					fail_msg("%s element %zu of %zu: %08x, want %08x",
						 weld_dtype_name(t), i, n, f2u(dst[i]), f2u(want));
			}
			assert_true(dst[n] == 12345.0f);
			free(raw);
			free(dst);
		}
	}
}

static void test_bulk_encode_matches_scalar(void **state)
{
	static const enum weld_dtype types[] = { WELD_F64, WELD_F32, WELD_F16, WELD_BF16 };

	(void)state;
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
		const enum weld_dtype t = types[ti];
		const size_t w = weld_dtype_size(t);

		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			const size_t n = lengths[li];
			float *src = malloc((n + 1) * sizeof(float));
			unsigned char *raw = malloc(n * w + 2);

			assert_non_null(src);
			assert_non_null(raw);
			fill_random(src, n * sizeof(float), 2000 + n + ti);
			/* a few values that hit every branch of the kernels */
			if (n > 8) {
				src[0] = 65520.0f;
				src[1] = 0x1p-25f;
				src[2] = 3 * 0x1p-25f;
				src[3] = -0.0f;
				src[4] = NAN;
				src[5] = -INFINITY;
				src[6] = 1.0f + 0x1p-8f;
				src[7] = u2f(0x00000001u);
			}
			raw[n * w + 1] = 0xa5;
			assert_int_equal(weld_encode_f32(t, src, raw + 1, n), 0);
			assert_int_equal(raw[n * w + 1], 0xa5);
			for (size_t i = 0; i < n; i++) {
				const unsigned char *p = raw + 1 + i * w;
				uint64_t d;
				uint32_t u;
				uint16_t h;

				switch (t) {
				case WELD_F64:
					memcpy(&d, p, 8);
					if (isnan(src[i]))
						assert_true(d == 0x7ff8000000000000ull);
					else
						assert_true(u2d(d) == (double)src[i] &&
							    !signbit(u2d(d)) == !signbit(src[i]));
					break;
				case WELD_F32:
					memcpy(&u, p, 4);
					assert_int_equal(u, isnan(src[i]) ? WELD_NAN_F32 : f2u(src[i]));
					break;
				case WELD_F16:
					memcpy(&h, p, 2);
					assert_int_equal(h, weld_f32_to_f16(src[i]));
					break;
				default:
					memcpy(&h, p, 2);
					assert_int_equal(h, weld_f32_to_bf16(src[i]));
					break;
				}
			}
			free(src);
			free(raw);
		}
	}
}

static void test_f64_encode_subnormals(void **state)
{
	const float src[4] = { u2f(0x00000001u), u2f(0x807fffffu), FLT_MIN, -0x1p-140f };
	unsigned char raw[4 * 8];

	(void)state;
	assert_int_equal(weld_encode_f32(WELD_F64, src, raw, 4), 0);
	for (int i = 0; i < 4; i++) {
		uint64_t d;

		memcpy(&d, raw + 8 * i, 8);
		assert_true(u2d(d) == (double)src[i]);
	}
}

/* Decoding from the tail of the destination itself, as a reader may. */
/* A merged tensor keeps a dtype weld writes and becomes BF16 otherwise. */
static void test_merged_dtype(void **state)
{
	(void)state;
	assert_int_equal(weld_dtype_merged(WELD_F64), WELD_F64);
	assert_int_equal(weld_dtype_merged(WELD_F32), WELD_F32);
	assert_int_equal(weld_dtype_merged(WELD_F16), WELD_F16);
	assert_int_equal(weld_dtype_merged(WELD_BF16), WELD_BF16);
	assert_int_equal(weld_dtype_merged(WELD_F8_E4M3), WELD_BF16);
	assert_int_equal(weld_dtype_merged(WELD_F8_E5M2), WELD_BF16);
}

static void test_decode_in_place(void **state)
{
	const size_t n = 1001;
	float *buf = malloc(n * sizeof(float));
	float *want = malloc(n * sizeof(float));
	unsigned char *tail;

	(void)state;
	assert_non_null(buf);
	assert_non_null(want);
	tail = (unsigned char *)buf + n * sizeof(float) - n * 2;
	fill_random(tail, n * 2, 7);
	weld_decode_f32(WELD_BF16, tail, want, n);
	weld_decode_f32(WELD_BF16, tail, buf, n);
	assert_memory_equal(buf, want, n * sizeof(float));
	free(buf);
	free(want);
}

static void test_bulk_other_types(void **state)
{
	const float src[2] = { 1.0f, 2.0f };
	unsigned char raw[16] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	float dst[2] = { 7.0f, 7.0f };

	(void)state;
	assert_int_equal(weld_encode_f32(WELD_F8_E4M3, src, raw, 2), -1);
	assert_int_equal(weld_encode_f32(WELD_F8_E5M2, src, raw, 2), -1);
	assert_int_equal(weld_encode_f32(WELD_I32, src, raw, 2), -1);
	assert_int_equal(weld_encode_f32(WELD_BOOL, src, raw, 2), -1);
	weld_decode_f32(WELD_I32, raw, dst, 2);
	weld_decode_f32(WELD_U8, raw, dst, 2);
	assert_true(dst[0] == 7.0f && dst[1] == 7.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip),
		cmocka_unit_test(test_parse_rejects_unknown),
		cmocka_unit_test(test_sizes_and_kinds),
		cmocka_unit_test(test_write_rank_order),
		cmocka_unit_test(test_bf16_round_trip_all),
		cmocka_unit_test(test_bf16_rounding_boundaries),
		cmocka_unit_test(test_bf16_ties),
		cmocka_unit_test(test_bf16_specials),
		cmocka_unit_test(test_bf16_from_f32_subnormals),
		cmocka_unit_test(test_f16_round_trip_all),
		cmocka_unit_test(test_f16_rounding_boundaries),
		cmocka_unit_test(test_f16_ties),
		cmocka_unit_test(test_f16_subnormals),
		cmocka_unit_test(test_f16_overflow),
		cmocka_unit_test(test_f16_specials),
		cmocka_unit_test(test_e4m3_all_codes),
		cmocka_unit_test(test_e5m2_all_codes),
		cmocka_unit_test(test_f64_rounding),
		cmocka_unit_test(test_f64_matches_cast),
		cmocka_unit_test(test_bulk_decode_matches_scalar),
		cmocka_unit_test(test_bulk_encode_matches_scalar),
		cmocka_unit_test(test_f64_encode_subnormals),
		cmocka_unit_test(test_merged_dtype),
		cmocka_unit_test(test_decode_in_place),
		cmocka_unit_test(test_bulk_other_types),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
