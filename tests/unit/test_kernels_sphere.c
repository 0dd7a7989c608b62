/*
 * test_kernels_sphere.c - nuslerp, multislerp and karcher (METHODS 6-8) on
 * hand-computed cases: their coefficients from a Gram matrix and the
 * outputs, with each degenerate rule (colinear and opposite vectors, a zero
 * vector, weights that cancel, inputs whose weighted mean vanishes, no
 * valid input); the linear combination for every input count against its
 * element-by-element formula.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "fixtures.h"

#include <math.h>

#include "weld.h"
#include "kernels.h"

#define PI 3.14159265358979323846

static void test_nuslerp_t(void **state)
{
	(void)state;
	assert_true(weld_k_nuslerp_t(1, 1) == 0.5);
	assert_true(weld_k_nuslerp_t(1, 3) == 0.75);
	assert_true(weld_k_nuslerp_t(1, -1) == 0.5);    /* |w0 + w1| < 1e-6 */
}

static void test_nuslerp_coeffs(void **state)
{
	const double orth[] = { 1, 0, 1 }, colinear[] = { 1, 2, 4 }, opposite[] = { 1, -1, 1 };
	const double zero[] = { 0, 0, 1 };
	float c[3];

	(void)state;
	/* orthogonal: theta = pi/2, sin theta = 1 */
	weld_k_nuslerp_coeffs(orth, 0.5, c);
	assert_true(c[0] == (float)sin(PI / 4) && c[1] == (float)sin(PI / 4) && c[2] == 1);
	weld_k_nuslerp_coeffs(orth, 0.25, c);
	assert_true(c[0] == (float)sin(0.75 * PI / 2) && c[1] == (float)sin(0.25 * PI / 2));
	/* colinear and opposite: |sin theta| < 1e-8, the lerp */
	weld_k_nuslerp_coeffs(colinear, 0.25, c);
	assert_true(c[0] == 0.75f && c[1] == 0.25f && c[2] == 1);
	weld_k_nuslerp_coeffs(opposite, 0.25, c);
	assert_true(c[0] == 0.75f && c[1] == 0.25f && c[2] == 1);
	/* a zero vector: cosine 0, theta = pi/2, no lerp */
	weld_k_nuslerp_coeffs(zero, 0.5, c);
	assert_true(c[0] == (float)sin(PI / 4) && c[2] == 1);
}

static void test_nuslerp_output(void **state)
{
	const float b[] = { 1, 1 }, v0[] = { 2, 1 }, v1[] = { 1, 2 };
	const float coef[] = { 0.5f, 0.25f, 0.5f };
	float out[2];

	(void)state;
	/* task vectors (1, 0) and (0, 1): b + (0.5 d0 + 0.25 d1) / 0.5 */
	weld_k_nuslerp(b, v0, v1, 2, coef, out);
	assert_true(out[0] == 2 && out[1] == 1.5f);
	/* no base: (0.5 v0 + 0.25 v1) / 0.5 */
	weld_k_nuslerp(NULL, v0, v1, 2, coef, out);
	assert_true(out[0] == 2.5f && out[1] == 2);
}

static void test_multislerp(void **state)
{
	const double orth[] = { 1, 0, 1 }, opposite[] = { 1, -1, 1 };
	const double third[] = { 1, -0.5, -0.5, 1, -0.5, 1 };   /* three at 120 degrees */
	const double w2[] = { 0.5, 0.5 }, w3[] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 };
	double beta[3];

	(void)state;
	/* two orthogonal unit vectors: the unit bisector */
	assert_int_equal(weld_k_multislerp_coeffs(orth, 2, w2, 0, beta), 0);
	assert_true(fabs(beta[0] - sqrt(0.5)) < 1e-15 && fabs(beta[1] - sqrt(0.5)) < 1e-15);
	/* two that cancel: the linear fallback, beta = w */
	assert_int_equal(weld_k_multislerp_coeffs(opposite, 2, w2, 1e-8, beta), 1);
	assert_true(beta[0] == 0.5 && beta[1] == 0.5);
	/* three whose weighted mean vanishes: an error */
	assert_int_equal(weld_k_multislerp_coeffs(third, 3, w3, 1e-8, beta), -1);
}

static void test_karcher(void **state)
{
	const double orth[] = { 1, 0, 1 }, norms[] = { 4, 0, 16 }, none[] = { 0, 0, 0 };
	/* x = (1, 0), (1, 0), (0, 1): the mean angle is 30 degrees */
	const double plane[] = { 1, 1, 0, 1, 0, 1 };
	double beta[3];

	(void)state;
	weld_k_karcher_coeffs(orth, 2, 10, 1e-5, beta);
	assert_true(fabs(beta[0] - sqrt(0.5)) < 1e-12 && fabs(beta[1] - sqrt(0.5)) < 1e-12);
	/* (2, 0) and (0, 4): the bisector times the mean norm 3 */
	weld_k_karcher_coeffs(norms, 2, 10, 1e-5, beta);
	assert_true(fabs(2 * beta[0] - 3 * sqrt(0.5)) < 1e-12 && fabs(4 * beta[1] - 3 * sqrt(0.5)) < 1e-12);
	/* no input above tol: zeros */
	weld_k_karcher_coeffs(none, 2, 10, 1e-5, beta);
	assert_true(beta[0] == 0 && beta[1] == 0);
	/* out = (beta0 + beta1, beta2) = (cos 30, sin 30) */
	weld_k_karcher_coeffs(plane, 3, 10, 1e-5, beta);
	assert_true(fabs(beta[0] + beta[1] - cos(PI / 6)) < 1e-9 && fabs(beta[2] - 0.5) < 1e-9);
	/* no iteration: the normalised mean, at atan(1/2) */
	weld_k_karcher_coeffs(plane, 3, 0, 1e-5, beta);
	assert_true(fabs(beta[2] / (beta[0] + beta[1]) - 0.5) < 1e-12);
}

static void test_lincomb(void **state)
{
	const float b[] = { 1 }, x0[] = { 3 }, x1[] = { 5 }, beta[] = { 0.5f, 0.25f };
	const float *x[] = { x0, x1 };
	float out[1];

	(void)state;
	weld_k_lincomb(b, x, 2, 1, beta, out);
	assert_true(out[0] == 1 + (0.5f * 2 + 0.25f * 4));
	weld_k_lincomb(NULL, x, 2, 1, beta, out);
	assert_true(out[0] == 0.5f * 3 + 0.25f * 5);
}

/* lincomb for 1-6 inputs, with and without a base, is bit for bit the sum
 * from 0 in source order of beta_s (x_s - b), then b + it. */
static void test_lincomb_order(void **state)
{
	enum { LEN = 1500, N = 6 };
	static float b[LEN], x[N][LEN], out[LEN];
	const float beta[N] = { 0.3f, -1.7f, 2.1f, 0.9f, 1.1f, -0.2f };
	const float *v[N];

	(void)state;
	fixture_near_base(b, &x[0][0], N, LEN, 1e-2f, 0, 7);
	for (size_t s = 0; s < N; s++)
		v[s] = x[s];
	for (size_t n = 1; n <= N; n++)
		for (int base = 0; base < 2; base++) {
			weld_k_lincomb(base ? b : NULL, v, n, LEN, beta, out);
			for (size_t j = 0; j < LEN; j++) {
				float acc = 0;

				for (size_t s = 0; s < n; s++)
					acc += beta[s] * (base ? x[s][j] - b[j] : x[s][j]);
				assert_true(out[j] == (base ? b[j] + acc : acc));
			}
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nuslerp_t),
		cmocka_unit_test(test_nuslerp_coeffs),
		cmocka_unit_test(test_nuslerp_output),
		cmocka_unit_test(test_multislerp),
		cmocka_unit_test(test_karcher),
		cmocka_unit_test(test_lincomb),
		cmocka_unit_test(test_lincomb_order),
	};
	return cmocka_run_group_tests_name("spherical kernels", tests, NULL, NULL);
}
