/*
 * test_pcb.c - PCB-Merging's pieces on plain arrays (lib/engine/pcb.c):
 * the indices of the order statistics, the keys and their k-th smallest,
 * beta and the combination on hand-computed cases, the degenerate rules of
 * METHODS 12 (a constant unit, top = thr), and the bound of beta that
 * spares most elements their exp and tanh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "pcb.h"

/* METHODS 12: lo = s[floor(d rho)], hi = s[trunc(d (1 - rho) - 1)],
 * thr = s[floor(d (1 - r))] */
static void test_indices(void **state)
{
	(void)state;
	assert_int_equal(weld_pcb_lo_index(10, 0.0001), 0);
	assert_int_equal(weld_pcb_hi_index(10, 0.0001), 8);
	assert_int_equal(weld_pcb_lo_index(100000, 0.0001), 10);
	assert_int_equal(weld_pcb_hi_index(100000, 0.0001), 99989);
	assert_int_equal(weld_pcb_hi_index(1, 0.0001), 0);      /* trunc(-1e-4) = 0 */
	assert_int_equal(weld_pcb_lo_index(1, 0.0001), 0);
	assert_int_equal(weld_pcb_thr_index(10, 0.1), 9);       /* = top: nothing kept */
	assert_int_equal(weld_pcb_thr_index(10, 0.3), 7);
	assert_int_equal(weld_pcb_thr_index(10, 1), 0);
	assert_int_equal(weld_pcb_thr_index(7, 1e-300), 6);     /* never past the end */
}

/* signed keys sort like the values, -0 just below +0; the k-th smallest of
 * a plateau is the plateau's value */
static void test_keys(void **state)
{
	const float v[] = { 2.0f, -1.0f, 0.0f, 0.5f, -0.0f, -3.5f };
	const float want[] = { -3.5f, -1.0f, -0.0f, 0.0f, 0.5f, 2.0f };
	uint32_t keys[6], tmp[6], plateau[1000], ptmp[1000];

	(void)state;
	for (size_t k = 0; k < 6; k++) {
		float f;

		for (size_t i = 0; i < 6; i++)
			keys[i] = weld_pcb_signed_key(v[i]);
		f = weld_pcb_key_float(weld_pcb_kth_key(keys, 6, k, tmp), 1);
		assert_memory_equal(&f, &want[k], sizeof(f));
	}
	for (size_t i = 0; i < 6; i++)
		keys[i] = weld_pcb_abs_key(v[i]);
	assert_true(weld_pcb_key_float(weld_pcb_kth_key(keys, 6, 4, tmp), 0) == 2.0f);
	for (size_t i = 0; i < 1000; i++)
		plateau[i] = weld_pcb_signed_key(i < 10 ? -1.0f : 0.25f);
	assert_true(weld_pcb_key_float(weld_pcb_kth_key(plateau, 1000, 500, ptmp), 1) == 0.25f);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* the k-th smallest is the sorted array's k-th, for keys that share their
 * high bytes, that differ in every byte, and that repeat */
static void test_kth_random(void **state)
{
	enum { N = 3000 };
	static uint32_t v[N], sorted[N], keys[N], tmp[N], ks[N];
	static float x[N];
	uint64_t z = 3;

	(void)state;
	for (int c = 0; c < 3; c++) {
		for (size_t i = 0; i < N; i++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			v[i] = c == 0 ? 0xBC000000u | (uint32_t)(z >> 40 & 0xFFFFF)
			     : c == 1 ? (uint32_t)(z >> 32) : (uint32_t)(z >> 60) << 20;
		}
		memcpy(sorted, v, sizeof(v));
		qsort(sorted, N, sizeof(*sorted), cmp_u32);
		for (size_t k = 0; k < N; k += 7) {
			memcpy(keys, v, sizeof(v));
			assert_int_equal(weld_pcb_kth_key(keys, N, k, tmp), sorted[k]);
			memcpy(keys, v, sizeof(v));
			assert_int_equal(weld_pcb_kth_floor(keys, N, k, tmp), sorted[k] & 0xFFFF0000u);
		}
		memcpy(keys, v, sizeof(v));
		assert_int_equal(weld_pcb_kth_key(keys, N, N - 1, tmp), sorted[N - 1]);
		/* near either end (a small list instead of the radix select),
		 * also over a few keys */
		for (size_t k = 0; k < 12; k++) {
			memcpy(keys, v, sizeof(v));
			assert_int_equal(weld_pcb_kth_key(keys, N, k, tmp), sorted[k]);
			memcpy(keys, v, sizeof(v));
			assert_int_equal(weld_pcb_kth_key(keys, N, N - 1 - k, tmp), sorted[N - 1 - k]);
		}
		/* both clip bounds of a row in one pass: keys of |x| */
		for (size_t i = 0; i < N; i++) {
			uint32_t u = (v[i] & 0x7FFFFFFFu) | (uint32_t)(i & 1u) << 31;  /* signs mixed */

			memcpy(&x[i], &u, sizeof(u));
			ks[i] = v[i] & 0x7FFFFFFFu;
		}
		qsort(ks, N, sizeof(*ks), cmp_u32);
		for (size_t k = 0; k < 8; k++) {
			uint32_t klo, khi;

			assert_true(weld_pcb_clip_keys(x, N, k, N - 1 - (7 - k), &klo, &khi));
			assert_int_equal(klo, ks[k]);
			assert_int_equal(khi, ks[N - 1 - (7 - k)]);
		}
		assert_false(weld_pcb_clip_keys(x, N, 8, N - 1, &keys[0], &keys[1]));
		for (size_t k = 0; k < 5; k++) {
			uint32_t few[5], fs[5];

			memcpy(few, v, sizeof(few));
			memcpy(fs, v, sizeof(fs));
			qsort(fs, 5, sizeof(*fs), cmp_u32);
			assert_int_equal(weld_pcb_kth_key(few, 5, k, tmp), fs[k]);
		}
	}
}

/* the sum of the deltas in model order, one rounding after each model, for
 * 1 to 5 models and rows across the kernel's blocks: 2^24 + 1 - 2^24 is 0
 * in that order (1 in another), a -0 alone stays -0 */
static void test_sum_model_order(void **state)
{
	enum { LEN = 5000 };
	static float x[5][LEN], sum[LEN];
	const float *d[5] = { x[0], x[1], x[2], x[3], x[4] };

	(void)state;
	for (size_t j = 0; j < LEN; j++) {
		x[0][j] = 0x1p24f;
		x[1][j] = 1.0f;
		x[2][j] = -0x1p24f;
		x[3][j] = (float)j;
		x[4][j] = 0.5f;
	}
	for (size_t n = 1; n <= 5; n++) {
		weld_k_pcb_sum(d, n, LEN, sum);
		for (size_t j = 0; j < LEN; j++) {
			float want = x[0][j];

			for (size_t s = 1; s < n; s++)
				want += x[s][j];
			assert_true(sum[j] == want);
		}
		assert_true(n < 3 || sum[7] == (n == 3 ? 0.0f : n == 4 ? 7.0f : 7.5f));
	}
	x[0][3] = -0.0f;
	weld_k_pcb_sum(d, 1, LEN, sum);
	assert_true(sum[3] == 0.0f && signbit(sum[3]));
}

/* n = 2, delta = (0.5, -0.25) at one element: S = 0.25; lo = 0.25, hi = 0.5
 * make N = 1 for the first, 0 for the second */
static void test_beta(void **state)
{
	const float d0[] = { 0.5f }, d1[] = { -0.25f };
	const float *d[] = { d0, d1 };
	float sum[1], b[1];

	(void)state;
	weld_k_pcb_sum(d, 2, 1, sum);
	assert_true(sum[0] == 0.25f);
	weld_k_pcb_beta(d0, sum, 2, 0.25f, 0.5f, 1, b);
	assert_true(b[0] == (float)exp(2.0) * (float)tanh(0.125));
	weld_k_pcb_beta(d1, sum, 2, 0.25f, 0.5f, 1, b);
	assert_true(b[0] == 1.0f * (float)tanh(-0.0625));
	/* a constant unit (lo = hi): N = 0, intra = 1 */
	weld_k_pcb_beta(d0, sum, 2, 0.5f, 0.5f, 1, b);
	assert_true(b[0] == (float)tanh(0.125));
}

/* beta as METHODS 12 writes it, element by element, for products
 * delta * sum on both sides of 2^-13 (where tanh of a float rounds to the
 * float itself) and magnitudes that repeat (the memo of intra) or collide
 * in it */
static void test_beta_fast_paths(void **state)
{
	enum { N = 4096 };
	static float d[N], sum[N], b[N];
	uint64_t z = 99;

	(void)state;
	for (size_t j = 0; j < N; j++) {
		z = z * 6364136223846793005ULL + 1442695040888963407ULL;
		d[j] = j % 3 ? (float)((int)(z >> 59) - 16) * 0x1p-9f
			     : ((float)(z >> 40) * 0x1p-24f - 0.5f) * 0.05f;
		sum[j] = ldexpf((float)(z >> 44 & 0xFFFF) * 0x1p-16f + 0.5f, -(int)(z >> 36 & 15));
	}
	d[7] = 0x1p-13f;        /* d * sum = 2^-13 * sum, at and near the bound */
	sum[7] = 1.0f;
	d[8] = -0x1p-13f;
	sum[8] = 0.99999994f;
	weld_k_pcb_beta(d, sum, 3, 0.001f, 0.02f, N, b);
	for (size_t j = 0; j < N; j++) {
		float a = fabsf(d[j]), nn;

		a = a < 0.001f ? 0.001f : a > 0.02f ? 0.02f : a;
		nn = (a - 0.001f) / (0.02f - 0.001f);
		assert_true(b[j] == (float)exp((double)(3.0f * (nn * nn))) *
				    (float)tanh((double)(d[j] * sum[j])));
	}
}

/* steps 5 and 6 from beta: the scores, then the combination */
static void combine(const float *const *d, const float *const *b, size_t n,
		    const struct weld_pcb_unit *u, const float *w, const float *base, float lambda,
		    size_t len, float *out)
{
	float sc[4][8], num[8], den[8];
	const float *scp[4];

	assert_true(n <= 4 && len <= 8);
	for (size_t s = 0; s < n; s++) {
		weld_k_pcb_beta_scores(b[s], &u[s], len, sc[s]);
		scp[s] = sc[s];
	}
	weld_k_pcb_mix(d, scp, n, u, w, base, lambda, len, num, den, out);
}

/* step 6 for one to four models against its definition, bit for bit:
 * each model's term (w clip(delta)) score added in model order, the
 * scores' sum floored at 1e-12; scores of 0 (signed zeros of the terms,
 * a -0 base), deltas of +-0, inside and outside the clip bounds */
static void test_mix_definition(void **state)
{
	enum { LEN = 67 };
	static float x[4][LEN], c[4][LEN], base[LEN], num[LEN], den[LEN], out[LEN];
	const float *d[4] = { x[0], x[1], x[2], x[3] }, *sc[4] = { c[0], c[1], c[2], c[3] };
	const struct weld_pcb_unit u[4] = { { .lo = 0.01f, .hi = 0.5f }, { .lo = 0.02f, .hi = 0.3f },
					    { .lo = 0.0f, .hi = 1.0f }, { .lo = 0.05f, .hi = 0.2f } };
	const float w[4] = { 1.0f, -0.5f, 2.0f, 0.75f }, lambda = 1.5f;
	uint64_t z = 5;

	(void)state;
	for (size_t j = 0; j < LEN; j++) {
		for (size_t s = 0; s < 4; s++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			x[s][j] = (z >> 61) == 0 ? ((z >> 40) & 1 ? -0.0f : 0.0f)
				  : ((float)(z >> 40 & 0xFFFFF) * 0x1p-19f - 1.0f);
			/* 24 significant bits over 16 binades: the sums round */
			c[s][j] = (z >> 58 & 3) == 0 ? 0.0f
				  : ldexpf((float)(z >> 8 & 0xFFFFFF) * 0x1p-24f, -(int)(z >> 4 & 15));
		}
		base[j] = j % 5 == 0 ? -0.0f : (float)j * 0.125f - 3.0f;
	}
	for (size_t n = 1; n <= 4; n++) {
		weld_k_pcb_mix(d, sc, n, u, w, base, lambda, LEN, num, den, out);
		for (size_t j = 0; j < LEN; j++) {
			float nm = 0, dn = 0, want;

			for (size_t s = 0; s < n; s++) {
				float a = fabsf(x[s][j]), t;

				a = a < u[s].lo ? u[s].lo : a > u[s].hi ? u[s].hi : a;
				t = (w[s] * (x[s][j] > 0 ? a : x[s][j] < 0 ? -a : 0.0f)) * c[s][j];
				nm = s ? nm + t : t;
				dn = s ? dn + c[s][j] : c[s][j];
			}
			want = base[j] + lambda * (nm / (dn > 1e-12f ? dn : 1e-12f));
			assert_memory_equal(&out[j], &want, sizeof(want));
		}
	}
}

/* one model, w = 2, lambda = 0.5: scores 0.5 and 1 */
static void test_combine(void **state)
{
	const float d0[] = { 1.0f, -2.0f }, b0[] = { 0.5f, 0.9f }, base[] = { 10, 10 };
	const float *d[] = { d0 }, *b[] = { b0 };
	const struct weld_pcb_unit u = { .lo = 1, .hi = 2, .thr = 0.1f, .top = 0.9f };
	const float w[] = { 2 };
	float out[2];

	(void)state;
	combine(d, b, 1, &u, w, base, 0.5f, 2, out);
	assert_true(out[0] == 10 + 0.5f * ((2 * 1.0f * ((0.5f - 0.1f) / (0.9f - 0.1f))) /
					   ((0.5f - 0.1f) / (0.9f - 0.1f))));
	assert_true(out[1] == 8.0f);
}

/* top = thr: the model gives nothing (METHODS 12: 0/0 in the reference
 * code); with every model so, out = base */
static void test_top_equals_thr(void **state)
{
	const float d0[] = { 1.0f, -2.0f }, d1[] = { 3.0f, 4.0f };
	const float b0[] = { 0.7f, 0.7f }, b1[] = { 0.2f, 0.9f }, base[] = { 1.5f, -0.5f };
	const float *d[] = { d0, d1 }, *b[] = { b0, b1 };
	struct weld_pcb_unit u[2] = {
		{ .lo = 0, .hi = 10, .thr = 0.7f, .top = 0.7f },
		{ .lo = 0, .hi = 10, .thr = 0.9f, .top = 0.9f },
	};
	const float w[] = { 1, 1 };
	float out[2];

	(void)state;
	combine(d, b, 2, u, w, base, 1.0f, 2, out);
	assert_true(out[0] == 1.5f && out[1] == -0.5f);
	/* the second model alone counts once its top differs: score 1 at
	 * element 1, 0 at element 0 (0.2 is below thr) */
	u[1].thr = 0.5f;
	combine(d, b, 2, u, w, base, 1.0f, 2, out);
	assert_true(out[0] == 1.5f && out[1] == -0.5f + 4.0f);
}

/* clip: |delta| is clamped to [lo, hi] before the sign is put back; a zero
 * delta stays 0 */
static void test_clip_sign(void **state)
{
	const float d0[] = { 0.01f, -5.0f, 0.0f }, b0[] = { 1, 1, 1 }, base[] = { 0, 0, 0 };
	const float *d[] = { d0 }, *b[] = { b0 };
	const struct weld_pcb_unit u = { .lo = 0.1f, .hi = 2.0f, .thr = 0.0f, .top = 1.0f };
	const float w[] = { 1 };
	float out[3];

	(void)state;
	combine(d, b, 1, &u, w, base, 1.0f, 3, out);
	assert_true(out[0] == 0.1f && out[1] == -2.0f && out[2] == 0.0f);
}

/* random deltas of three models over a few units: the upper bound is never
 * below beta nor the lower bound above it, and the scores from deltas (exact beta only where the bound
 * reaches thr) are the scores from beta, bit for bit */
static void test_bound_scores(void **state)
{
	enum { N = 4096, M = 3 };
	static float d[M][N], sum[N], beta[N], tmp[N], sa[N], sb[N];
	static uint32_t idx[N];
	static struct weld_pcb_memo_entry entries[1 << 10];
	struct weld_pcb_memo memo;
	const float *dp[M] = { d[0], d[1], d[2] };
	const float scale[] = { 2e-3f, 0.05f, 3.0f, 1e-30f };
	uint64_t z = 7;

	(void)state;
	size_t lower = 0;

	/* one memo for every unit: it must clear itself when the bounds change */
	weld_pcb_memo_init(&memo, entries, 10);
	for (size_t c = 0; c < 4 * 4; c++) {
		struct weld_pcb_unit u = { 0 };

		for (size_t s = 0; s < M; s++)
			for (size_t j = 0; j < N; j++) {
				z = z * 6364136223846793005ULL + 1442695040888963407ULL;
				d[s][j] = ((float)(z >> 40) * 0x1p-24f - 0.5f) * scale[c % 4];
				if ((z >> 20 & 15) == 0)
					d[s][j] = 0.0f;         /* zeros: p = 0 */
			}
		weld_k_pcb_sum(dp, M, N, sum);
		u.lo = c / 4 == 3 ? scale[c % 4] : 0.01f * scale[c % 4];    /* lo = hi: N = 0 */
		u.hi = c / 4 == 3 ? scale[c % 4] : 0.4f * scale[c % 4];
		weld_pcb_bound_init(&u.bound, M, u.lo, u.hi);
		weld_k_pcb_beta(d[0], sum, M, u.lo, u.hi, N, beta);
		/* every j is a candidate for a cut below min(beta) */
		assert_int_equal(weld_k_pcb_candidates(d[0], sum, &u.bound, u.lo, u.hi, 0.0f, N, tmp,
						       idx), N);
		weld_k_pcb_bounds(d[0], sum, &u.bound, u.lo, u.hi, N, tmp, sa);
		for (size_t j = 0; j < N; j++) {
			assert_true(tmp[j] >= beta[j] || beta[j] <= 0);
			assert_true(sa[j] <= beta[j]);
			lower += sa[j] > -INFINITY;
		}
		for (size_t q = 0; q < 4; q++) {
			uint32_t keys[N], kt[N];

			for (size_t j = 0; j < N; j++)
				keys[j] = weld_pcb_signed_key(beta[j]);
			u.thr = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N * (5 + q) / 10, kt), 1);
			u.top = q == 3 ? u.thr : weld_pcb_key_float(weld_pcb_kth_key(keys, N, N - 1, kt), 1);
			weld_k_pcb_beta_scores(beta, &u, N, sa);
			weld_k_pcb_scores(d[0], sum, M, &u, &u.bound, N, &memo, NULL, tmp, idx, sb);
			assert_memory_equal(sa, sb, sizeof(sa));
		}
	}
	assert_true(lower > 1000);      /* the lower bound was put to the test */
}

/* the window's candidates of one unit (n sources in intra, bound b,
 * chords or not): every element whose beta exceeds cut is either a
 * candidate or counted, and a counted one surely lies in (above, top] */
static void window_case(const float *d, const float *sum, size_t n, struct weld_pcb_unit *u,
			const float *beta)
{
	enum { N = 8192 };
	static uint32_t idx[N], keys[N], kt[N];
	static unsigned char picked[N];
	static uint64_t bits[N / 64], part[N / 64];
	static float sa[N], sb[N], tmp[N];

	for (int q = 0; q < 3; q++) {
		/* cut near the 80th percentile, above a little higher, top the largest
		 * beta or one below it */
		float cut, above, top;
		uint64_t n_above = 0, counted = 0;
		size_t m;

		for (size_t j = 0; j < N; j++)
			keys[j] = weld_pcb_signed_key(beta[j]);
		cut = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N * 8 / 10, kt), 1);
		above = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N * (82 + 5 * q) / 100, kt), 1);
		top = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N - 1 - (size_t)q * 50, kt), 1);
		m = weld_k_pcb_window_candidates(d, sum, &u->bound, u->lo, u->hi, cut, above, top, N,
						 idx, &n_above, bits);
		memset(picked, 0, sizeof(picked));
		for (size_t k = 0; k < m; k++) {
			assert_true(k == 0 || idx[k] > idx[k - 1]);
			picked[idx[k]] = 1;
		}
		for (size_t j = 0; j < N; j++)
			if (!picked[j] && beta[j] > cut) {
				assert_true(beta[j] > above && beta[j] <= top);
				counted++;
			}
		assert_int_equal(counted, n_above);
		assert_true(n_above > N / 50);  /* the lower bound was put to use */
		/* the bits: set wherever beta exceeds cut (counted or not), and
		 * few more; scores above a threshold >= cut from them are those
		 * the bounds give */
		counted = 0;
		for (size_t j = 0; j < N; j++) {
			unsigned bit = bits[j / 64] >> (j % 64) & 1;

			assert_true(bit || !(beta[j] > cut));
			counted += bit;
		}
		assert_true(counted < N / 4);
		/* a length that ends inside a vector and a word */
		n_above = 0;
		m = weld_k_pcb_window_candidates(d, sum, &u->bound, u->lo, u->hi, cut, above, top,
						 N - 37, idx, &n_above, part);
		for (size_t k = 0; k < m; k++)
			assert_true(idx[k] < N - 37 && picked[idx[k]]);
		assert_int_equal(part[(N - 37) / 64] >> ((N - 37) % 64), 0);
		assert_memory_equal(part, bits, (N - 37) / 64 * sizeof(*bits));
		u->thr = above;
		u->top = top;
		weld_k_pcb_scores(d, sum, n, u, &u->bound, N, NULL, NULL, tmp, idx, sa);
		weld_k_pcb_scores(d, sum, n, u, &u->bound, N, NULL, bits, tmp, idx, sb);
		assert_memory_equal(sa, sb, sizeof(sa));
	}
}

/* the window's candidates with intra for 1 to 16 sources, from the
 * polynomial bounds and from the chords (pcb_chords.c); none for more */
static void test_window_candidates(void **state)
{
	enum { N = 8192, M = 3 };
	static float d[M][N], sum[N], beta[N];
	const float *dp[M] = { d[0], d[1], d[2] };
	const size_t ns[] = { 1, 3, 8, 16 };
	uint64_t z = 11;

	(void)state;
	for (size_t s = 0; s < M; s++)
		for (size_t j = 0; j < N; j++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			d[s][j] = ((float)(z >> 40) * 0x1p-24f - 0.5f) * 1e-2f;
		}
	weld_k_pcb_sum(dp, M, N, sum);
	for (size_t c = 0; c < 2 * sizeof(ns) / sizeof(ns[0]); c++) {
		struct weld_pcb_unit u = { .lo = 1e-4f, .hi = 4e-3f };

		weld_pcb_bound_init(&u.bound, ns[c / 2], u.lo, u.hi);
		if (c % 2) {
			weld_pcb_bound_chords(&u.bound);
			assert_true(u.bound.chords);
		}
		weld_k_pcb_beta(d[0], sum, ns[c / 2], u.lo, u.hi, N, beta);
		window_case(d[0], sum, ns[c / 2], &u, beta);
	}
	{
		struct weld_pcb_bound b;

		weld_pcb_bound_init(&b, 17, 1e-4f, 4e-3f);
		weld_pcb_bound_chords(&b);
		assert_false(b.chords);
	}
}

/* beta by METHODS 12's formulas, element by element (pcb.c's rules:
 * exp and tanh in double rounded once, tanh(p) = p below 2^-13) */
static float ref_beta(float x, float s, size_t n, float lo, float hi)
{
	float a = fabsf(x), mn = lo < hi ? lo : hi, span = hi - mn, nn, p = x * s;

	a = a < lo ? lo : a;
	a = a > hi ? hi : a;
	nn = span > 0 ? (a - mn) / span : 0.0f;
	return (float)exp((double)((float)n * (nn * nn))) *
	       (fabsf(p) < 0x1p-13f ? p : (float)tanh((double)p));
}

/* beta for 1 to 16 sources and magnitudes over the whole clip range (exp
 * of n N^2 over [0, n], on vectors where the processor has them) is the
 * formulas', bit for bit, and so are the scores from bits set everywhere */
static void test_scores_flags(void **state)
{
	enum { N = 1 << 15 };
	static float d[N], sum[N], beta[N], tmp[N], sa[N], sb[N];
	static uint32_t idx[N], keys[N], kt[N];
	static uint64_t bits[N / 64];
	uint64_t z = 17;

	(void)state;
	memset(bits, 0xFF, sizeof(bits));
	for (size_t n = 1; n <= 16; n++) {
		struct weld_pcb_unit u = { .lo = 1e-3f, .hi = 0.75f + 0.01f * (float)n };

		for (size_t j = 0; j < N; j++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			d[j] = ((float)(z >> 40) * 0x1p-24f - 0.5f) * 2.0f;
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			/* products mostly below 2^-13 (tanh is p), some above */
			sum[j] = ((float)(z >> 40) * 0x1p-24f) * (j % 8 ? 1e-4f : 1e-2f);
			if (j % 97 == 0)
				d[j] = 0.0f;
		}
		weld_pcb_bound_init(&u.bound, n, u.lo, u.hi);
		weld_k_pcb_beta(d, sum, n, u.lo, u.hi, N, beta);
		for (size_t j = 0; j < N; j++) {
			float want = ref_beta(d[j], sum[j], n, u.lo, u.hi);

			assert_memory_equal(&beta[j], &want, sizeof(want));
			keys[j] = weld_pcb_signed_key(beta[j]);
		}
		/* and at positions (every third, 21 of them: a vector and a part) */
		for (size_t k = 0; k < 21; k++)
			idx[k] = (uint32_t)(3 * k * n);
		weld_k_pcb_beta_at(d, sum, n, u.lo, u.hi, idx, 21, NULL, tmp);
		for (size_t k = 0; k < 21; k++)
			assert_memory_equal(&tmp[k], &beta[idx[k]], sizeof(*tmp));
		u.thr = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N / 100, kt), 1);
		u.top = weld_pcb_key_float(weld_pcb_kth_key(keys, N, N - 1, kt), 1);
		weld_k_pcb_beta_scores(beta, &u, N, sa);
		weld_k_pcb_scores(d, sum, n, &u, &u.bound, N, NULL, bits, tmp, idx, sb);
		assert_memory_equal(sa, sb, sizeof(sa));
		/* a length that ends inside a vector */
		weld_k_pcb_beta_scores(beta, &u, N - 5, sa);
		weld_k_pcb_scores(d, sum, n, &u, &u.bound, N - 5, NULL, bits, tmp, idx, sb);
		assert_memory_equal(sa, sb, (N - 5) * sizeof(*sa));
	}
}

/*
 * --allow-nonfinite: a NaN beta, whatever its sign (inf - inf and 0 * inf
 * give a negative NaN on x86), takes one key above +inf; every element
 * whose beta is NaN is a candidate for any cut and inside any window, so
 * no path leaves it out of the threshold's rank or the largest beta.
 */
static void test_nan_beta(void **state)
{
	float pos = NAN, neg = -NAN, inf = INFINITY, payload;
	uint32_t u = 0x7FC0FFFFu, idx[8];
	/* model 0: a NaN delta, +inf against -inf, 0 against +inf, an
	 * infinite delta at an infinite clip bound (intra NaN, p = -inf),
	 * then finite elements */
	float d0[8] = { NAN, INFINITY, 0.0f, -INFINITY, 0.5f, 0.25f, -0.5f, 0.125f };
	float d1[8] = { 1.0f, -INFINITY, INFINITY, 1.0f, 0.5f, -0.25f, 0.5f, 0.125f };
	const float *dp[2] = { d0, d1 };
	float sum[8], beta[8], ub[8], lb[8];
	struct weld_pcb_bound b;
	uint64_t above = 0;
	size_t m;

	(void)state;
	memcpy(&payload, &u, sizeof(payload));
	assert_int_equal(weld_pcb_beta_key(pos), WELD_PCB_NAN_KEY);
	assert_int_equal(weld_pcb_beta_key(neg), WELD_PCB_NAN_KEY);
	assert_int_equal(weld_pcb_beta_key(payload), WELD_PCB_NAN_KEY);
	assert_true(weld_pcb_beta_key(inf) < WELD_PCB_NAN_KEY);
	assert_true(weld_pcb_beta_key(-inf) < weld_pcb_beta_key(-1.0f));
	assert_true(isnan(weld_pcb_key_float(WELD_PCB_NAN_KEY, 1)));
	assert_true(weld_pcb_beta_key(1.0f) == weld_pcb_signed_key(1.0f));

	weld_k_pcb_sum(dp, 2, 8, sum);
	/* hi = +inf: the infinite delta's N is inf / inf */
	weld_pcb_bound_init(&b, 2, 0.125f, INFINITY);
	weld_k_pcb_beta(d0, sum, 2, 0.125f, INFINITY, 8, beta);
	for (size_t j = 0; j < 4; j++)
		assert_true(isnan(beta[j]));
	for (size_t j = 4; j < 8; j++)
		assert_false(isnan(beta[j]));
	weld_k_pcb_bounds(d0, sum, &b, 0.125f, INFINITY, 8, ub, lb);
	for (size_t j = 0; j < 4; j++)
		assert_true(ub[j] == INFINITY);
	/* a cut above every finite beta: the NaN ones alone */
	m = weld_k_pcb_candidates(d0, sum, &b, 0.125f, INFINITY, 4.0f, 8, NULL, idx);
	assert_int_equal(m, 4);
	for (size_t k = 0; k < m; k++)
		assert_int_equal(idx[k], k);
	/* a window above every finite beta: the same, none counted without beta */
	m = weld_k_pcb_window_candidates(d0, sum, &b, 0.125f, INFINITY, 4.0f, 8.0f, INFINITY, 8,
					 idx, &above, NULL);
	assert_int_equal(m, 4);
	assert_int_equal(above, 0);
	/* and from the chords */
	weld_pcb_bound_chords(&b);
	m = weld_k_pcb_window_candidates(d0, sum, &b, 0.125f, INFINITY, 4.0f, 8.0f, INFINITY, 8,
					 idx, &above, NULL);
	assert_int_equal(m, 4);
	for (size_t k = 0; k < m; k++)
		assert_int_equal(idx[k], k);
	assert_int_equal(above, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_indices),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_kth_random),
		cmocka_unit_test(test_sum_model_order),
		cmocka_unit_test(test_beta),
		cmocka_unit_test(test_beta_fast_paths),
		cmocka_unit_test(test_combine),
		cmocka_unit_test(test_mix_definition),
		cmocka_unit_test(test_top_equals_thr),
		cmocka_unit_test(test_clip_sign),
		cmocka_unit_test(test_bound_scores),
		cmocka_unit_test(test_window_candidates),
		cmocka_unit_test(test_scores_flags),
		cmocka_unit_test(test_nan_beta),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
