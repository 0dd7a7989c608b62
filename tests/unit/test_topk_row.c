/*
 * test_topk_row.c - --scope row's selection kernels against plain ones: the
 * selection of one row after another from a guess (weld_topk_select_row)
 * against a sort, its window's scan (weld_window_keys) against a loop, and
 * the mask of two selections in one scan (weld_topk_mask_pair) against
 * weld_topk_mask on each.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "select.h"

enum { MAX_N = 6000 };

static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng_state >> 33);
}

/* Roughly normal, from the sum of four uniforms. */
static float gauss(void)
{
	float s = 0;

	for (int i = 0; i < 4; i++)
		s += (float)rnd() / 2147483648.0f - 0.5f;
	return s;
}

/* Rounded to bf16, as the inputs of a merge are. */
static float bf16(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	u &= 0xFFFF0000u;
	memcpy(&x, &u, sizeof(u));
	return x;
}

/*
 * Row kinds: Gaussian deltas of a fixed scale; the same with the scale
 * jumping from row to row (the guess misses); bf16 deltas of a fine-tune,
 * mostly zeros and one unit in the last place (plateaus at the
 * thresholds); a few distinct values, with ties everywhere.
 */
enum kind { STEADY, JUMPS, PLATEAUS, FEW, KINDS };

static void make_row(enum kind kind, int r, float *x, size_t n)
{
	float scale = kind == JUMPS ? ldexpf(1.0f, (int)(rnd() % 9) - 4) : 1e-3f;

	(void)r;
	for (size_t i = 0; i < n; i++) {
		float b = bf16(0.02f * gauss());

		switch (kind) {
		case STEADY:
		case JUMPS:
			x[i] = scale * gauss();
			break;
		case PLATEAUS:
			x[i] = bf16(b + 2e-4f * gauss()) - b;
			break;
		default:
			x[i] = (float)(rnd() % 5) * (rnd() % 2 ? 0.5f : -0.5f);
		}
	}
}

static int key_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* The selection by a sort: the k-th largest key, and k minus those above. */
static void select_sorted(const float *x, size_t n, uint64_t k, struct weld_topk *out)
{
	static uint32_t sorted[MAX_N];
	uint64_t above = 0;

	memset(out, 0, sizeof(*out));
	out->none = k == 0;
	out->all = k >= n;
	if (out->none || out->all)
		return;
	for (size_t i = 0; i < n; i++)
		sorted[i] = weld_key(x[i]);
	qsort(sorted, n, sizeof(sorted[0]), key_desc);
	while (sorted[above] > sorted[k - 1])
		above++;
	out->thresh = sorted[k - 1];
	out->keep_equal = k - above;
}

/* Rows of each kind and length, one after another with one hint per k as
 * in a tensor (lengths not a multiple of 16 or 64 too), for small, middle
 * and large k: the same selection as a sort; both the guess and the full
 * count are taken. */
static void test_select_row(void **state)
{
	static const size_t lens[] = { 1, 7, 100, 2048, 2051, 5632 };
	static const double dens[] = { 0.0, 0.01, 0.2, 0.5, 0.91, 1.0 };
	static float x[MAX_N];
	static uint32_t scratch[MAX_N];
	int guessed = 0, counted = 0;

	(void)state;
	rng_state = 1;
	for (int kind = 0; kind < KINDS; kind++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			struct weld_topk_hint h[sizeof(dens) / sizeof(dens[0])] = { { 0 } };
			size_t n = lens[l];

			for (int r = 0; r < 40; r++) {
				struct weld_topk_row row = { .x = x, .n = n, .scratch = scratch };

				make_row((enum kind)kind, r, x, n);
				for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
					uint64_t k = (uint64_t)floor(dens[d] * (double)n);
					struct weld_topk got, want;
					bool before = row.counted;

					weld_topk_select_row(&row, k, &h[d], &got);
					select_sorted(x, n, k, &want);
					assert_int_equal(got.none, want.none);
					assert_int_equal(got.all, want.all);
					assert_int_equal(got.thresh, want.thresh);
					assert_int_equal(got.keep_equal, want.keep_equal);
					if (k > 0 && k < n && !before)
						*(row.counted ? &counted : &guessed) += 1;
				}
			}
		}
	/* most rows from the guess, but not all */
	assert_true(guessed > 4 * counted);
	assert_true(counted > 0);
}

/* The window's scan against a plain loop, over rows of each kind and
 * windows around keys of the row, narrow to wide (the whole key range
 * too), lengths not a multiple of 16. */
static void test_window_keys(void **state)
{
	static const size_t lens[] = { 5, 16, 2051 };
	static float x[MAX_N];
	static uint32_t got[MAX_N], want[MAX_N];

	(void)state;
	rng_state = 3;
	for (int kind = 0; kind < KINDS; kind++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t n = lens[l];

			make_row((enum kind)kind, 0, x, n);
			for (uint32_t shift = 0; shift <= 31; shift += 3) {
				uint32_t p = weld_key(x[rnd() % n]), w = (1u << shift) - 1;
				uint32_t lo = p > w ? p - w : 0;
				uint32_t hi = (uint64_t)p + w < 0x7FFFFFFFu ? p + w : 0x7FFFFFFFu;
				uint64_t eq = 1, above = 2, weq = 1, wabove = 2;
				size_t m = weld_window_keys(x, n, lo, hi, p, got, &eq, &above), wm = 0;

				for (size_t i = 0; i < n; i++) {
					uint32_t key = weld_key(x[i]);

					weq += key == p;
					wabove += key > hi;
					if (key >= lo && key <= hi && key != p)
						want[wm++] = key;
				}
				assert_int_equal(m, wm);
				assert_memory_equal(got, want, m * sizeof(got[0]));
				assert_int_equal(eq, weq);
				assert_int_equal(above, wabove);
			}
		}
}

/* keep = a's mask and not b's, from weld_topk_mask on each. */
static void pair_plain(const float *x, size_t n, const struct weld_topk *a,
		       const struct weld_topk *b, unsigned char *keep)
{
	static unsigned char kb[MAX_N];

	weld_topk_mask(x, n, a, 0, keep);
	weld_topk_mask(x, n, b, 0, kb);
	for (size_t i = 0; i < n; i++)
		keep[i] = keep[i] && !kb[i];
}

/* The k after k up to last: one by one below small, then by step, last
 * itself included. */
static uint64_t next_k(uint64_t k, uint64_t last, uint64_t small, uint64_t step)
{
	if (k == last)
		return last + 1;
	k += k < small ? 1 : step;
	return k < last ? k : last;
}

/* Breadcrumbs' two selections of a row (a: the top ka, b: the top kb <= ka
 * outliers) over rows with plateaus at both thresholds, the same one at
 * times, and ka or kb of none or all: the one scan's mask is the plain
 * one's, and the cuts inside the plateaus are tried. */
static void test_mask_pair(void **state)
{
	static const size_t lens[] = { 1, 63, 64, 130, 2048, 2053 };
	static float x[MAX_N];
	static uint32_t scratch[MAX_N];
	static unsigned char got[MAX_N], want[MAX_N];
	int same_thresh = 0, cut_a = 0, cut_b = 0;

	(void)state;
	rng_state = 7;
	for (int kind = 0; kind < KINDS; kind++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t n = lens[l];

			make_row((enum kind)kind, 0, x, n);
			for (uint64_t ka = 0; ka <= n; ka = next_k(ka, n, 8, n / 7 + 1))
				for (uint64_t kb = 0; kb <= ka; kb = next_k(kb, ka, 4, n / 11 + 1)) {
					struct weld_topk a, b;
					uint64_t eq_a = 0, eq_b = 0;

					weld_topk_select(x, n, ka, scratch, &a);
					weld_topk_select(x, n, kb, scratch, &b);
					weld_topk_mask_pair(x, n, &a, &b, got);
					pair_plain(x, n, &a, &b, want);
					assert_memory_equal(got, want, n);
					for (size_t i = 0; i < n; i++) {
						eq_a += weld_key(x[i]) == a.thresh;
						eq_b += weld_key(x[i]) == b.thresh;
					}
					if (a.none || a.all || b.none || b.all)
						continue;
					same_thresh += a.thresh == b.thresh;
					cut_a += eq_a > a.keep_equal;
					cut_b += eq_b > b.keep_equal;
				}
		}
	assert_true(same_thresh > 0);
	assert_true(cut_a > 0);
	assert_true(cut_b > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_select_row),
		cmocka_unit_test(test_window_keys),
		cmocka_unit_test(test_mask_pair),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
