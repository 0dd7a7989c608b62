/*
 * test_elementary.c - weld's own exp, log and tanh (lib/common/elementary.c):
 * one call and the lanes of weld_exp_array (compiled for the machine's
 * widest vectors) give the same bits, and so do weld_exp_lanes_normal's
 * in its range; within 1 ulp of the C library's exp;
 * weld_log within 0.52 ulp of long double's log, weld_tanh within 2^-48 of
 * long double's tanh; the special values; the
 * known answers of their NumPy twin; the tables against long double.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "elementary.h"

#define POINTS 1200000
#define LOG_KNOWN_ANSWER 0x6cb502d1b0792d78u
#define TANH_KNOWN_ANSWER 0x89970d46fe8e926bu

static uint64_t bits(double x)
{
	uint64_t u;

	memcpy(&u, &x, sizeof(u));
	return u;
}

/* the distance in ulps of two finite doubles of one sign, or of zero */
static uint64_t ulps(double a, double b)
{
	uint64_t x = bits(a), y = bits(b);

	return x > y ? x - y : y - x;
}

/* the next double in [0, 1) of the 64-bit LCG *s */
static double next_unit(uint64_t *s)
{
	*s = *s * 6364136223846793005u + 1442695040888963407u;
	return (double)(*s >> 11) * 0x1p-53;
}

/* POINTS arguments: arcee's range (x <= 0, mostly near 0), the subnormal
 * results (-708 .. -746), the whole range, tiny ones, and the edges */
static double *points(void)
{
	static const double edge[] = {
		0.0, -0.0, 0x1p-1074, -0x1p-1074, 1e-300, -1e-300, 0x1p-60, -0x1p-60,
		-708.0, -708.39641853226408, -708.4, -709.0, -720.0, -740.0, -744.44007192138126,
		-745.0, -745.13321910194110, -745.13321910194122, -745.2, -746.0, -746.5, -1000.0,
		-1e300, -DBL_MAX, -INFINITY, INFINITY, NAN, -NAN, 709.78271289338397, 709.8, 710.0,
		1e300, 1.0, -1.0, 0.5, -0.5, 0x1.62e42fefa39efp-5, -0x1.62e42fefa39efp-6,
	};
	const size_t ne = sizeof(edge) / sizeof(edge[0]);
	double *x = malloc(POINTS * sizeof(double));
	uint64_t s = 42;

	assert_non_null(x);
	memcpy(x, edge, sizeof(edge));
	for (size_t i = ne; i < POINTS; i++) {
		double u = next_unit(&s);

		switch (i % 5) {
		case 0: x[i] = -40 * u; break;
		case 1: x[i] = -0.05 * u; break;
		case 2: x[i] = -708 - 40 * u; break;
		case 3: x[i] = 1420 * u - 710; break;
		default: x[i] = (u - 0.5) * ldexp(1.0, -(int)(i % 60)); break;
		}
	}
	return x;
}

/* a call and the array's lanes: the same bits, NaN's included */
static void test_scalar_is_vector(void **state)
{
	double *x = points(), *y = malloc(POINTS * sizeof(double));
	size_t bad = 0;

	(void)state;
	assert_non_null(y);
	/* an odd count: the array's last values go through one call each */
	weld_exp_array(x, y, POINTS - 3);
	for (size_t i = 0; i < POINTS - 3; i++) {
		double z = weld_exp(x[i]);

		bad += memcmp(&z, &y[i], sizeof(z)) != 0;
	}
	assert_int_equal(bad, 0);
	/* in place */
	weld_exp_array(x, x, POINTS);
	assert_memory_equal(x, y, (POINTS - 3) * sizeof(double));
	free(x);
	free(y);
}

/* weld_exp_lanes_normal: the bits of a call wherever it may be used,
 * [-WELD_EXP_NORMAL, WELD_EXP_NORMAL], its ends and the edges of the
 * scaling included */
static void test_normal_lanes(void **state)
{
	static const double edge[] = {
		-WELD_EXP_NORMAL, WELD_EXP_NORMAL, 0.0, -0.0, 0x1p-1074, -0x1p-1074, -0x1p-60,
		-1.0, 1.0, -699.999, 699.999, -0x1.62e42fefa39efp-5, 0x1.62e42fefa39efp-5,
		-693.1471805599453, 693.1471805599453, -0.04332169878499658, 0.04332169878499658,
	};
	const size_t ne = sizeof(edge) / sizeof(edge[0]), n = POINTS / 8 * 8;
	double *x = malloc(n * sizeof(double));
	uint64_t s = 7;
	size_t bad = 0;

	(void)state;
	assert_non_null(x);
	memcpy(x, edge, sizeof(edge));
	for (size_t i = ne; i < n; i++) {
		double u = next_unit(&s);

		x[i] = i % 3 == 0 ? -40 * u : i % 3 == 1 ? (2 * u - 1) * WELD_EXP_NORMAL :
			(u - 0.5) * ldexp(1.0, -(int)(i % 60));
	}
	for (size_t i = 0; i < n; i += WELD_EXP_LANES) {
		weld_vexp v;

		memcpy(&v, x + i, sizeof(v));
		weld_exp_lanes_normal(&v);
		for (size_t l = 0; l < WELD_EXP_LANES; l++)
			bad += bits(v[l]) != bits(weld_exp(x[i + l]));
	}
	assert_int_equal(bad, 0);
	free(x);
}

/* within 1 ulp of the C library's exp everywhere */
static void test_within_one_ulp(void **state)
{
	double *x = points();
	size_t bad = 0, differ = 0;

	(void)state;
	for (size_t i = 0; i < POINTS; i++) {
		double a = weld_exp(x[i]), b = exp(x[i]);

		if (isnan(x[i])) {
			bad += !isnan(a);
			continue;
		}
		if (ulps(a, b) > 1) {
			print_message("exp(%a): weld %a, C library %a\n", x[i], a, b);
			bad++;
		}
		differ += a != b;
	}
	assert_int_equal(bad, 0);
	/* most are the same value (1 ulp apart: about one in 200) */
	assert_true(differ < POINTS / 50);
	free(x);
}

static void test_special_values(void **state)
{
	(void)state;
	assert_true(bits(weld_exp(0.0)) == bits(1.0));
	assert_true(bits(weld_exp(-0.0)) == bits(1.0));
	assert_true(bits(weld_exp(-INFINITY)) == bits(0.0));
	assert_true(weld_exp(INFINITY) == INFINITY);
	assert_true(weld_exp(710.0) == INFINITY);
	assert_true(weld_exp(709.78) < INFINITY);
	assert_true(isnan(weld_exp(NAN)));
	/* the smallest subnormal, and below half of it 0 */
	assert_true(weld_exp(-745.0) == 0x1p-1074);
	assert_true(bits(weld_exp(-745.2)) == bits(0.0));
	assert_true(bits(weld_exp(-1e300)) == bits(0.0));
	/* exact where e^x is a power of 2 within the range of k */
	assert_true(weld_exp(0x1p-60) == 1.0);
	assert_true(weld_exp(1.0) == 0x1.5bf0a8b145769p+1);
}

/* the sum modulo 2^64 of the bits of weld_exp at 2^20 points (v = (i
 * 2654435761 mod 2^32) 2^-32; by i mod 3: -750 v, -0.1 v, 1420 v - 710):
 * tests/ref/ref_exp.py, the NumPy twin, must give the same (test_exp.sh) */
static void test_known_answer(void **state)
{
	uint64_t sum = 0;

	(void)state;
	for (uint64_t i = 0; i < 1u << 20; i++) {
		double v = (double)(uint32_t)(i * 2654435761u) * 0x1p-32;
		double x = i % 3 == 0 ? -750.0 * v : i % 3 == 1 ? -0.1 * v : 1420.0 * v - 710.0;

		sum += bits(weld_exp(x));
	}
	assert_true(sum == 0x2f9bcfa68db78bb1u);
}

/* hi = 2^(j/16) rounded; hi (1 + tail) within 2^-62 of it (long double
 * holds 2^(j/16) within 2^-63) */
static void test_tables(void **state)
{
	(void)state;
	for (int j = 0; j < WELD_EXP_N; j++) {
		long double v = exp2l((long double)j / 16);

		assert_true(weld_exp_hi[j] == (double)v);
		assert_true(fabsl(((long double)weld_exp_hi[j] * (1 + (long double)weld_exp_tail[j]) - v) /
				  v) < 0x1p-62L);
	}
}

/* LOG_POINTS positive arguments: the whole range of doubles (random bits),
 * arcee's ratios (1e-8 .. 1e8), near 1 from both sides at every scale,
 * around each table entry's edges, subnormals */
#define LOG_POINTS 1200000
static double *log_points(void)
{
	double *x = malloc(LOG_POINTS * sizeof(double));
	uint64_t s = 7;

	assert_non_null(x);
	for (size_t i = 0; i < LOG_POINTS; i++) {
		double u = next_unit(&s);
		uint64_t b;

		switch (i % 5) {
		case 0:
			b = (uint64_t)(u * 0x1p63);     /* below +inf's bits */
			b = b < 0x7FF0000000000000u ? b : b - 0x7FF0000000000000u;
			memcpy(&x[i], &b, sizeof(b));
			break;
		case 1: x[i] = exp((u - 0.5) * 36.8); break;
		case 2: x[i] = 1 + (u - 0.5) * ldexp(1.0, -(int)(i % 53)); break;
		case 3: x[i] = (96 + (double)(i % 97) + (u - 0.5) * 0x1p-20) / 128 *
			       ldexp(1.0, (int)(i % 7) - 3); break;
		default: x[i] = u * 0x1p-1022; break;
		}
		if (!(x[i] > 0))
			x[i] = 1.5;
	}
	return x;
}

/* within 0.52 ulp of log x (long double's log, within 2^-63 of it, is the
 * truth here), so within 1 ulp of the C library's */
static void test_log_accuracy(void **state)
{
	double *x = log_points(), worst = 0;
	size_t bad = 0;

	(void)state;
	for (size_t i = 0; i < LOG_POINTS; i++) {
		long double v = logl((long double)x[i]);
		double a = weld_log(x[i]), r = fabs((double)v), ulp, err;

		if (r == 0) {
			bad += a != 0;
			continue;
		}
		ulp = nextafter(r, INFINITY) - r;
		if (fabsl(v) < (long double)r)       /* r rounded up: the ulp below it */
			ulp = r - nextafter(r, 0);
		err = (double)(fabsl((long double)a - v) / ulp);
		if (err > worst)
			worst = err;
		bad += ulps(a, log(x[i])) > 1;
	}
	print_message("weld_log: %.4f ulp at most\n", worst);
	assert_int_equal(bad, 0);
	assert_true(worst < 0.52);
	free(x);
}

static void test_log_special_values(void **state)
{
	(void)state;
	assert_true(bits(weld_log(1.0)) == bits(0.0));
	assert_true(weld_log(0.0) == -INFINITY);
	assert_true(weld_log(-0.0) == -INFINITY);
	assert_true(weld_log(INFINITY) == INFINITY);
	assert_true(bits(weld_log(-1.0)) == 0x7FF8000000000000u);
	assert_true(bits(weld_log(-INFINITY)) == 0x7FF8000000000000u);
	assert_true(isnan(weld_log(NAN)));
	assert_true(weld_log(2.0) == 0x1.62e42fefa39efp-1);
	assert_true(weld_log(0x1p-1074) == -0x1.74385446d71c3p+9);
	assert_true(weld_log(DBL_MAX) == 0x1.62e42fefa39efp+9);
	/* near 1: log(1 + 2^-52) = 2^-52 - 2^-105 + ..., a double */
	assert_true(weld_log(1 + 0x1p-52) == 0x1.fffffffffffffp-53);
}

/* the sum modulo 2^64 of the bits of weld_log at 2^20 points (v as in
 * test_known_answer; by i mod 3: 2 v, 1 + (v - 0.5) 2^-5, (v + 0.5)
 * 2^((i mod 2001) - 1000)): tests/ref/ref_exp.py must give the same */
static void test_log_known_answer(void **state)
{
	uint64_t sum = 0;

	(void)state;
	for (uint64_t i = 0; i < 1u << 20; i++) {
		double v = (double)(uint32_t)(i * 2654435761u) * 0x1p-32;
		double x = i % 3 == 0 ? 2 * v : i % 3 == 1 ? 1 + (v - 0.5) * 0x1p-5 :
			   ldexp(v + 0.5, (int)(i % 2001) - 1000);

		sum += bits(weld_log(x));
	}
	print_message("weld_log known answer: 0x%016llx\n", (unsigned long long)sum);
	assert_true(sum == LOG_KNOWN_ANSWER);
}

/* loghi = log(i / 128) rounded; loghi + loglo within 2^-62 of it */
static void test_log_tables(void **state)
{
	(void)state;
	for (int i = 0; i < WELD_LOG_N; i++) {
		long double v = logl((long double)(i + WELD_LOG_FIRST) / 128);

		assert_true(weld_log_hi[i] == (double)v);
		assert_true(fabsl((long double)weld_log_hi[i] + (long double)weld_log_lo[i] - v) <=
			    0x1p-62L * fabsl(v));
	}
	assert_true((long double)WELD_LOG_LN2HI + (long double)WELD_LOG_LN2LO - logl(2.0L) <= 0x1p-62L);
	assert_true((bits(WELD_LOG_LN2HI) & 0x7FF) == 0);     /* 42 bits */
}

/* within 2^-48 of tanh relative to it: both branches, their border, the
 * range where it rounds to +-1, and the tiny */
static void test_tanh_accuracy(void **state)
{
	uint64_t s = 7;
	long double worst = 0;

	(void)state;
	for (int i = 0; i < POINTS / 4; i++) {
		double u = next_unit(&s), x;

		switch (i % 4) {
		case 0: x = (u - 0.5) * 0x1p-3; break;
		case 1: x = (u - 0.5) * 50; break;
		case 2: x = 0x1p-5 * (1 + (u - 0.5) * 0x1p-10); break;
		default: x = ldexp(u + 0.5, -(int)(i % 1060)); break;
		}
		{
			long double t = tanhl((long double)x), err = fabsl(((long double)weld_tanh(x) - t) / t);

			if (t != 0)
				worst = err > worst ? err : worst;
		}
	}
	print_message("weld_tanh: worst relative error 2^%.2f\n", (double)log2l(worst));
	assert_true(worst < 0x1p-48L);
}

static void test_tanh_special_values(void **state)
{
	(void)state;
	assert_true(bits(weld_tanh(0.0)) == bits(0.0));
	assert_true(bits(weld_tanh(-0.0)) == bits(-0.0));
	assert_true(weld_tanh(INFINITY) == 1.0 && weld_tanh(-INFINITY) == -1.0);
	assert_true(weld_tanh(400.0) == 1.0 && weld_tanh(-DBL_MAX) == -1.0);
	assert_true(isnan(weld_tanh(NAN)));
	assert_true(weld_tanh(0x1p-1074) == 0x1p-1074 && weld_tanh(-1e-300) == -1e-300);
	/* odd: -x gives exactly -tanh x */
	assert_true(weld_tanh(-0.75) == -weld_tanh(0.75) && weld_tanh(-0.01) == -weld_tanh(0.01));
}

/* the sum modulo 2^64 of the bits of weld_tanh at 2^20 points (v as in
 * test_known_answer; by i mod 3: (v - 0.5) 2^-3, (v - 0.5) 50, (v + 0.5)
 * 2^((i mod 64) - 60)): tests/ref/ref_exp.py must give the same */
static void test_tanh_known_answer(void **state)
{
	uint64_t sum = 0;

	(void)state;
	for (uint64_t i = 0; i < 1u << 20; i++) {
		double v = (double)(uint32_t)(i * 2654435761u) * 0x1p-32;
		double x = i % 3 == 0 ? (v - 0.5) * 0x1p-3 : i % 3 == 1 ? (v - 0.5) * 50 :
			   ldexp(v + 0.5, (int)(i % 64) - 60);

		sum += bits(weld_tanh(x));
	}
	print_message("weld_tanh known answer: 0x%016llx\n", (unsigned long long)sum);
	assert_true(sum == TANH_KNOWN_ANSWER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalar_is_vector),
		cmocka_unit_test(test_normal_lanes),
		cmocka_unit_test(test_within_one_ulp),
		cmocka_unit_test(test_special_values),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_log_accuracy),
		cmocka_unit_test(test_log_special_values),
		cmocka_unit_test(test_log_known_answer),
		cmocka_unit_test(test_log_tables),
		cmocka_unit_test(test_tanh_accuracy),
		cmocka_unit_test(test_tanh_special_values),
		cmocka_unit_test(test_tanh_known_answer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
