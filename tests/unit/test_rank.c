/*
 * test_rank.c - della's pieces on plain arrays (lib/engine/rank.c): the
 * rank order in a row and its tie rule, the keep probability and the
 * rescale of one row (width 1 included), and the exact sums.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "weld.h"
#include "rank.h"

/* order[r] = the position of the element of rank r + 1 */
static void order_of(const float *v, size_t w, uint32_t *order)
{
	uint32_t *scratch = malloc(WELD_RANK_SCRATCH * w * sizeof(uint32_t));
	uint32_t *rank = malloc(w * sizeof(uint32_t));

	weld_k_row_ranks(v, w, rank, scratch);
	for (size_t i = 0; i < w; i++)
		order[i] = (uint32_t)w;
	for (size_t i = 0; i < w; i++) {
		assert_true(rank[i] < w && order[rank[i]] == w);
		order[rank[i]] = (uint32_t)i;
	}
	free(scratch);
	free(rank);
}

/* x rounded to bf16 (to nearest even) */
static float bf16(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	u = (u + 0x7FFFu + (u >> 16 & 1)) & 0xFFFF0000u;
	memcpy(&x, &u, sizeof(x));
	return x;
}

/* a fine-tune's delta in bf16: bf16(b + d) - b for a bf16 weight b and a
 * small d, as the benchmark families have them */
static float bf16_delta(float r, uint64_t z)
{
	float b = bf16(((float)(z >> 44 & 0xFFFF) * 0x1p-16f - 0.5f) * 0.08f);

	return bf16(b + (r - 0.5f) * 0.008f) - b;
}

/* rank 1 = smallest |v|; equal magnitudes: the lower position ranks higher */
static void test_row_order_ties(void **state)
{
	const float v[] = { 0.5f, -0.25f, -0.5f, 0.1f, 0.0f, -0.0f };
	const uint32_t want[] = { 5, 4, 3, 1, 2, 0 };
	uint32_t order[6];

	(void)state;
	order_of(v, 6, order);
	assert_memory_equal(order, want, sizeof(want));
}

/* a plateau: every element equal, ranks follow positions backwards */
static void test_row_order_plateau(void **state)
{
	enum { W = 1000 };
	float v[W];
	uint32_t order[W];

	(void)state;
	for (size_t i = 0; i < W; i++)
		v[i] = (i % 2) ? -3.0f : 3.0f;
	order_of(v, W, order);
	for (size_t i = 0; i < W; i++)
		assert_int_equal(order[i], W - 1 - i);
}

/* magnitudes that differ in each byte of their bits sort by value */
static void test_row_order_bytes(void **state)
{
	enum { W = 257 };
	float v[W];
	uint32_t order[W];

	(void)state;
	for (size_t i = 0; i < W; i++)
		v[i] = ((i * 7919) % W + 1) * 1.0009765625f * ((i & 1) ? -1.0f : 1.0f);
	order_of(v, W, order);
	for (size_t i = 1; i < W; i++)
		assert_true(fabsf(v[order[i - 1]]) < fabsf(v[order[i]]));
}

/* the rank order against its definition, counted pair by pair: float32
 * magnitudes (every bucket sorted), deltas on few distinct values, zeros
 * of both signs, an outlier (everything else below the buckets' span), a
 * heavy tail, NaN and infinity, differences of bf16 numbers (one
 * magnitude a bucket, some with low bits set), magnitudes over 20 binades */
static void test_row_order_counted(void **state)
{
	const size_t widths[] = { 1, 2, 3, 63, 64, 100, 2048, 5000 };
	uint64_t z = 777;

	(void)state;
	for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++) {
		size_t w = widths[wi];
		float *v = malloc(w * sizeof(float));
		uint32_t *order = malloc(w * sizeof(uint32_t));

		for (int kind = 0; kind < 8; kind++) {
			for (size_t i = 0; i < w; i++) {
				z = z * 6364136223846793005ULL + 1442695040888963407ULL;
				float r = (float)(z >> 40) * 0x1p-24f;

				v[i] = kind == 0 ? (r - 0.5f) * 1e-3f
				       : kind == 1 ? (float)((int)(r * 300) - 150) * 0x1p-14f
				       : kind == 2 ? (r < 0.5f ? 0.0f : r < 0.6f ? -0.0f : r - 0.6f)
				       : kind == 3 ? (i == w / 3 ? 1e6f : r - 0.5f)
				       : kind == 4 ? (r - 0.5f) / (r * r * r + 1e-3f)
				       : kind == 5 ? (i == 5 ? NAN : i == 9 ? -INFINITY : r)
				       : kind == 6 ? bf16_delta(r, z)
				       : ldexpf(r, -(int)(z >> 59) - (int)(z >> 61));
			}
			order_of(v, w, order);
			for (size_t i = 0; i < w; i++) {
				uint32_t ki, kp, n = 0;
				float a = fabsf(v[i]);

				memcpy(&ki, &a, sizeof(ki));
				for (size_t p = 0; p < w; p++) {
					float b = fabsf(v[p]);

					memcpy(&kp, &b, sizeof(kp));
					n += kp < ki || (kp == ki && p > i);
				}
				assert_int_equal(order[n], i);
			}
		}
		free(v);
		free(order);
	}
}

static void della_row(float *v, size_t w, uint64_t key, uint64_t first, double d, double eps,
		      bool inverse, float factor)
{
	uint32_t *scratch = malloc(WELD_RANK_SCRATCH * w * sizeof(uint32_t));

	/* d >= 1 keeps the row: the engine does not call the kernel */
	if (d < 1)
		weld_k_della_row(v, w, key, first, d, eps, inverse, factor, scratch, NULL, NULL, NULL);
	free(scratch);
}

/* the keys of qsort's reference: |v| as bits, the position */
static const float *wide_v;

static int by_rank(const void *a, const void *b)
{
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b, ki, kj;
	float x = fabsf(wide_v[i]), y = fabsf(wide_v[j]);

	memcpy(&ki, &x, sizeof(ki));
	memcpy(&kj, &y, sizeof(kj));
	if (ki != kj)
		return ki < kj ? -1 : 1;
	return i > j ? -1 : i < j;      /* equal: the lower position ranks higher */
}

/* rows around 2^16 wide, where the counted positions in a bucket stop
 * fitting 16 bits: a plateau (one bucket of all), zeros, bf16 deltas;
 * against a sort */
static void test_row_order_wide(void **state)
{
	const size_t widths[] = { 65535, 65536, 65537, 70000 };
	uint64_t z = 99;

	(void)state;
	for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++) {
		size_t w = widths[wi];
		float *v = malloc(w * sizeof(float));
		uint32_t *order = malloc(w * sizeof(uint32_t)), *want = malloc(w * sizeof(uint32_t));

		for (int kind = 0; kind < 3; kind++) {
			for (size_t i = 0; i < w; i++) {
				z = z * 6364136223846793005ULL + 1442695040888963407ULL;
				v[i] = kind == 0 ? -0.5f : kind == 1 ? 0.0f
				       : bf16_delta((float)(z >> 40) * 0x1p-24f, z);
				want[i] = (uint32_t)i;
			}
			wide_v = v;
			qsort(want, w, sizeof(*want), by_rank);
			order_of(v, w, order);
			assert_memory_equal(order, want, w * sizeof(*order));
		}
		free(v);
		free(order);
		free(want);
	}
}

/* three elements, d = 0.5, eps = 0.2: p = 0.3, 0.5, 0.7 by rank; each kept
 * iff its draw is below its p, divided by float(p) */
static void test_della_row_probabilities(void **state)
{
	const float in[] = { 0.2f, -0.9f, 0.4f };  /* ranks 1, 3, 2 */
	const double p[] = { 0.3, 0.7, 0.5 };
	uint64_t key = weld_rng_key("t", 1, 0);
	int kept = 0, dropped = 0;

	(void)state;
	for (uint64_t first = 0; first < 200; first += 3) {
		float v[3];

		memcpy(v, in, sizeof(v));
		della_row(v, 3, key, first, 0.5, 0.2, true, 1.0f);
		for (size_t j = 0; j < 3; j++) {
			bool keep = weld_rng_uniform(key, first + j) < p[j];

			if (keep)
				assert_true(v[j] == in[j] / (float)p[j]);
			else
				assert_true(v[j] == 0.0f && !signbit(v[j]));
			kept += keep;
			dropped += !keep;
		}
	}
	assert_true(kept > 0 && dropped > 0);
}

/* width 1: p = d (mergekit's 0/0); the l1 form multiplies by the factor */
static void test_della_row_width_one(void **state)
{
	uint64_t key = weld_rng_key("w1", 2, 5);
	int kept = 0, dropped = 0;

	(void)state;
	for (uint64_t j = 0; j < 64; j++) {
		float v = -0.75f, f = 1.5f;
		bool keep = weld_rng_uniform(key, j) < 0.4;

		della_row(&v, 1, key, j, 0.4, 0.3, false, f);
		assert_true(v == (keep ? -0.75f * f : 0.0f));
		kept += keep;
		dropped += !keep;
	}
	assert_true(kept > 0 && dropped > 0);
}

/* d >= 1: nothing dropped, nothing rescaled */
static void test_della_row_density_one(void **state)
{
	float v[] = { 1, -2, 3, 0 };
	const float want[] = { 1, -2, 3, 0 };

	(void)state;
	della_row(v, 4, 99, 0, 1.0, 0.15, true, 3.0f);
	assert_memory_equal(v, want, sizeof(want));
}

static double xsum_of(const float *x, size_t n, size_t split)
{
	struct weld_xsum a = { 0 }, b = { 0 };

	weld_xsum_add_abs(&a, x, split);
	weld_xsum_add_abs(&b, x + split, n - split);
	weld_xsum_merge(&a, &b);
	return weld_xsum_value(&a);
}

/* |x| as the integer that orders like it */
static uint32_t mag(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u & 0x7FFFFFFFu;
}

/* The row's drop from METHODS 3 as written: each rank counted pair by
 * pair, p in double, u < p, then v / float(p) or v * factor. */
static void della_by_definition(float *v, size_t w, uint64_t key, uint64_t first, double d,
				double eps, bool inverse, float factor, unsigned char *kept)
{
	float *in = malloc(w * sizeof(float));

	memcpy(in, v, w * sizeof(float));
	for (size_t i = 0; i < w; i++) {
		size_t r = 0;
		double p;

		for (size_t q = 0; q < w; q++)
			r += mag(in[q]) < mag(in[i]) || (mag(in[q]) == mag(in[i]) && q > i);
		p = w > 1 ? (d - eps) + (2 * ((double)r / (double)(w - 1))) * eps : d;
		kept[i] = weld_rng_uniform(key, first + i) < p;
		v[i] = kept[i] ? (inverse ? in[i] / (float)p : in[i] * factor) : 0.0f;
	}
	free(in);
}

/* the kernel against the definition, bit for bit, with both rescales, on
 * float32 magnitudes, few distinct ones (long plateaus), one plateau,
 * bf16 deltas, zeros of both signs (with a NaN factor a +0 kept is NaN,
 * one dropped +0), an outlier, a heavy tail; probabilities reaching 0 and
 * 1; its keep flags, the drop again from them, and its exact sums. One
 * memo serves every row, filled anew as the width and (d, eps) change;
 * rows wider than its room go without */
static void test_della_row_definition(void **state)
{
	const size_t widths[] = { 1, 2, 3, 17, 100, 1000, 2048, 5000 };
	const double dd[] = { 0.45, 0.5, 0.3 }, ee[] = { 0.3, 0.5, 0.0 };
	uint64_t key = weld_rng_key("scaled", 3, 7), z = 12345;
	struct weld_della_memo *memo = weld_della_memo_new(4096);

	(void)state;
	assert_non_null(memo);
	for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++) {
		size_t w = widths[wi];
		float *a = malloc(w * sizeof(float)), *b = malloc(w * sizeof(float));
		float *c = malloc(w * sizeof(float));
		unsigned char *bits = malloc((w + 7) / 8), *kept = malloc(w);
		uint32_t *scratch = malloc(WELD_RANK_SCRATCH * w * sizeof(uint32_t));
		struct weld_xsum sums[2];
		double want[2], got[2];

		for (int run = 0; run < 18; run++) {
			/* every kind with the rescale by one factor (most of its
			 * decisions from the buckets' bounds), then with other
			 * parameters; a NaN factor keeps a +0 kept apart from one
			 * dropped */
			int kind = run / 2;
			float f = kind == 7 ? NAN : 1.25f;
			double d = run % 2 ? dd[kind % 3] : 0.45, eps = run % 2 ? ee[kind % 3] : 0.3;
			bool inverse = run % 2 && kind % 2;

			for (size_t i = 0; i < w; i++) {
				z = z * 6364136223846793005ULL + 1442695040888963407ULL;
				float r = (float)(z >> 40) * 0x1p-24f;

				a[i] = kind == 0 ? (r - 0.5f) * 1e-3f
				       : kind == 1 ? (float)((int)(r * 16) - 8) * 0x1p-12f
				       : kind == 2 ? 0.25f
				       : kind == 3 ? bf16_delta(r, z)
				       /* mostly zeros, some of them -0 */
				       : kind == 4 || kind == 7 ? (r < 0.6f ? 0.0f : r < 0.7f ? -0.0f : r - 0.7f)
				       /* one outlier, a heavy tail */
				       : kind == 5 ? (i == w / 2 ? 1e6f : (r - 0.5f))
				       : kind == 6 ? (r - 0.5f) / (r * r * r + 1e-3f)
				       : bf16_delta(r, z) * 0x1p-100f;
			}
			memcpy(b, a, w * sizeof(float));
			memcpy(c, a, w * sizeof(float));
			memset(sums, 0, sizeof(sums));
			weld_k_della_row(a, w, key, 1000 * w, d, eps, inverse, f, scratch, bits, sums,
					 memo);
			della_by_definition(b, w, key, 1000 * w, d, eps, inverse, f, kept);
			assert_memory_equal(a, b, w * sizeof(float));
			/* the exact sums of |v| before and after the drop */
			want[0] = xsum_of(c, w, w / 3);
			want[1] = xsum_of(b, w, w / 2);
			got[0] = weld_xsum_value(&sums[0]);
			got[1] = weld_xsum_value(&sums[1]);
			assert_memory_equal(got, want, sizeof(want));
			/* the flags, but for a +0 that the factor leaves +0 (kept or
			 * not); and the same row again from them */
			for (size_t i = 0; i < w; i++)
				if (!(c[i] == 0 && !signbit(c[i]) && (inverse || !isnan(f))))
					assert_int_equal(bits[i / 8] >> (i % 8) & 1, kept[i]);
			if (!inverse && !isnan(f)) {
				weld_k_della_apply_bits(c, w, bits, f);
				assert_memory_equal(c, b, w * sizeof(float));
			}
		}
		free(a);
		free(b);
		free(c);
		free(bits);
		free(kept);
		free(scratch);
	}
	weld_della_memo_free(memo);
}

/* Many rows, so that the draws that fall near the keep probability of
 * their rank (within 2^-12: about one in 2000, so dozens here) and those
 * whose bucket's range of ranks straddles it are settled one by one, on
 * bf16 deltas (the ranks known for every element) and on float32 ones
 * (the band): the kernel against the definition, row by row, with its
 * flags and sums. */
static void test_della_row_open_draws(void **state)
{
	const size_t w = 4096, rows = 24;
	float *a = malloc(w * sizeof(float)), *b = malloc(w * sizeof(float));
	unsigned char *bits = malloc((w + 7) / 8), *kept = malloc(w);
	uint32_t *scratch = malloc(WELD_RANK_SCRATCH * w * sizeof(uint32_t));
	uint64_t key = weld_rng_key("open", 1, 11), z = 99;

	(void)state;
	for (size_t r = 0; r < 2 * rows; r++) {
		struct weld_xsum sums[2];

		for (size_t i = 0; i < w; i++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			float u = (float)(z >> 40) * 0x1p-24f;

			a[i] = r < rows ? bf16_delta(u, z) : (u - 0.5f) * 1e-3f;
		}
		memcpy(b, a, w * sizeof(float));
		memset(sums, 0, sizeof(sums));
		weld_k_della_row(a, w, key, r * w, 0.5, 0.15, false, 1.0f, scratch, bits, sums, NULL);
		della_by_definition(b, w, key, r * w, 0.5, 0.15, false, 1.0f, kept);
		assert_memory_equal(a, b, w * sizeof(float));
		assert_true(weld_xsum_value(&sums[1]) == xsum_of(b, w, w / 2));
		for (size_t i = 0; i < w; i++)
			if (a[i] != 0)
				assert_int_equal(bits[i / 8] >> (i % 8) & 1, kept[i]);
	}
	free(a);
	free(b);
	free(bits);
	free(kept);
	free(scratch);
}

/* the exact sum, rounded once: the same for any split of the values */
static void test_xsum_exact(void **state)
{
	float tenth[10], big[] = { 1e30f, 1.0f, -1e30f };
	float half[] = { 1.0f, 0x1p-53f }, above[] = { 1.0f, 0x1p-53f, 0x1p-80f };
	float tiny[] = { 0x1p-149f, -0x1p-149f, 0x1p-148f };
	float special[] = { 1.0f, INFINITY }, nan_[] = { 1.0f, NAN, -INFINITY };

	(void)state;
	for (size_t i = 0; i < 10; i++)
		tenth[i] = 0.1f;
	for (size_t s = 0; s <= 10; s++)
		assert_true(xsum_of(tenth, 10, s) == 10.0 * (double)0.1f);
	/* 2e30 + 1 rounds to 2e30 in double, whatever the order */
	for (size_t s = 0; s <= 3; s++)
		assert_true(xsum_of(big, 3, s) == 2.0 * (double)1e30f);
	/* 1 + 2^-53 is half an ulp: to even; a little more rounds up */
	assert_true(xsum_of(half, 2, 1) == 1.0);
	assert_true(xsum_of(above, 3, 1) == 1.0 + 0x1p-52);
	/* subnormal floats */
	assert_true(xsum_of(tiny, 3, 2) == 0x1p-147);
	assert_true(xsum_of(tiny, 0, 0) == 0.0);
	assert_true(isinf(xsum_of(special, 2, 1)));
	assert_true(isnan(xsum_of(nan_, 3, 1)));
}

/* values over 36 binades (more than a block sums in integers at once),
 * whose exact sum a double holds: the same sum for any split */
static void test_xsum_wide(void **state)
{
	float x[1000];
	double want = 0;

	(void)state;
	for (size_t i = 0; i < 1000; i++) {
		x[i] = ldexpf((float)((i * 37) % 255 + 1), -(int)(i * 7 % 36)) * (i & 1 ? -1 : 1);
		want += fabs((double)x[i]);
	}
	for (size_t s = 0; s <= 1000; s += 37)
		assert_true(xsum_of(x, 1000, s) == want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_row_order_ties),
		cmocka_unit_test(test_row_order_plateau),
		cmocka_unit_test(test_row_order_bytes),
		cmocka_unit_test(test_row_order_counted),
		cmocka_unit_test(test_row_order_wide),
		cmocka_unit_test(test_della_row_probabilities),
		cmocka_unit_test(test_della_row_width_one),
		cmocka_unit_test(test_della_row_density_one),
		cmocka_unit_test(test_della_row_definition),
		cmocka_unit_test(test_della_row_open_draws),
		cmocka_unit_test(test_xsum_exact),
		cmocka_unit_test(test_xsum_wide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
