/*
 * test_merge_kernels.c - the pieces of the merge methods on plain arrays:
 * top-k selection and its tie rule, the random numbers of DESIGN 4.9, and
 * the per-element formulas on hand-computed cases.
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
#include "kernels.h"
#include "select.h"

static void select_mask(const float *x, size_t n, uint64_t k, unsigned char *keep)
{
	uint32_t *scratch = malloc(n * sizeof(uint32_t) + 4);
	struct weld_topk sel;

	weld_topk_select(x, n, k, scratch, &sel);
	weld_topk_mask(x, n, &sel, 0, keep);
	free(scratch);
}

static size_t count(const unsigned char *k, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += k[i];
	return c;
}

static void test_topk_distinct(void **state)
{
	const float x[] = { 0.5f, -3, 2, -0.25f, 1, 4, -1.5f, 0 };
	unsigned char keep[8];
	const unsigned char want[] = { 0, 1, 1, 0, 0, 1, 0, 0 };

	(void)state;
	select_mask(x, 8, 3, keep);
	assert_memory_equal(keep, want, 8);
}

/* Among equal magnitudes the lowest positions are kept, exactly k in all. */
static void test_topk_ties_lowest_position(void **state)
{
	const float x[] = { 1, -2, 2, 1, -2, 0.5f, 2, 1 };
	unsigned char keep[8];
	const unsigned char want2[] = { 0, 1, 1, 0, 0, 0, 0, 0 };
	const unsigned char want5[] = { 1, 1, 1, 0, 1, 0, 1, 0 };

	(void)state;
	select_mask(x, 8, 2, keep);
	assert_memory_equal(keep, want2, 8);
	select_mask(x, 8, 5, keep);
	assert_memory_equal(keep, want5, 8);
}

static void test_topk_edges(void **state)
{
	const float x[] = { 3, 1, 2 };
	unsigned char keep[3];

	(void)state;
	select_mask(x, 3, 0, keep);
	assert_int_equal(count(keep, 3), 0);
	select_mask(x, 3, 3, keep);
	assert_int_equal(count(keep, 3), 3);
	select_mask(x, 3, 9, keep);
	assert_int_equal(count(keep, 3), 3);
}

/* Many equal bf16 magnitudes: always exactly k kept, and they are the
 * first ones, in position order. */
static void test_topk_bf16_exact_k(void **state)
{
	enum { N = 10000 };
	float *x = malloc(N * sizeof(float));
	unsigned char *keep = malloc(N);

	(void)state;
	for (int i = 0; i < N; i++)
		x[i] = weld_bf16_to_f32((uint16_t)(0x3C00 + (i * 7919) % 5)) * (i % 2 ? -1 : 1);
	for (uint64_t k = 0; k <= N; k += 997) {
		float thr;
		size_t kept_eq = 0, seen_gap = 0;

		select_mask(x, N, k, keep);
		assert_int_equal(count(keep, N), k);
		if (!k)
			continue;
		thr = INFINITY;
		for (int i = 0; i < N; i++)
			if (keep[i] && fabsf(x[i]) < thr)
				thr = fabsf(x[i]);
		/* kept equal elements form a prefix of the equal ones */
		for (int i = 0; i < N; i++) {
			if (fabsf(x[i]) > thr)
				assert_true(keep[i]);
			if (fabsf(x[i]) == thr) {
				if (keep[i]) {
					assert_int_equal(seen_gap, 0);
					kept_eq++;
				} else {
					seen_gap = 1;
				}
			}
			if (fabsf(x[i]) < thr)
				assert_false(keep[i]);
		}
	}
	free(x);
	free(keep);
}

/* Masking in pieces with the count of equal elements before each piece
 * gives the same mask as one call over the whole unit. */
static void test_topk_mask_in_pieces(void **state)
{
	enum { N = 1000 };
	float x[N];
	unsigned char whole[N], part[N];
	uint32_t scratch[N];
	struct weld_topk sel;
	uint64_t before = 0;

	(void)state;
	for (int i = 0; i < N; i++)
		x[i] = (float)((i * 37) % 11);
	weld_topk_select(x, N, 400, scratch, &sel);
	weld_topk_mask(x, N, &sel, 0, whole);
	for (int a = 0; a < N; a += 77) {
		int n = N - a < 77 ? N - a : 77;

		before += weld_topk_mask(x + a, (size_t)n, &sel, before, part + a);
	}
	assert_memory_equal(whole, part, N);
	assert_int_equal(count(whole, N), 400);
	/* against a plain loop: above the threshold, or among its first equals */
	for (int i = 0, eq = 0; i < N; i++) {
		uint32_t key = weld_key(x[i]);

		assert_int_equal(whole[i], key > sel.thresh ||
					   (key == sel.thresh && (uint64_t)eq < sel.keep_equal));
		eq += key == sel.thresh;
	}
}

/* weld_record_keys against a plain loop: blocks with and without keys in
 * range, a ragged tail, keys just outside both ends of the range (which
 * starts and ends inside a high-bits bin), and two plateau keys (one
 * frequent, one absent) counted instead of stored. */
static void test_record_keys(void **state)
{
	enum { N = 1000 };
	float x[N];
	uint32_t got[N], want[N];
	struct weld_record_range r = { .lo = 0x3F7F8000u, .width = 0x2FFFFu,
				       .plateau = { WELD_NO_KEY, 0x3F810000u, WELD_NO_KEY,
						    0x3F820001u } };
	uint64_t above = 0, want_above = 0, pc[WELD_PLATEAUS], want_pc = 0;
	size_t n, m = 0;

	(void)state;
	for (int i = 0; i < N; i++) {
		uint32_t u = (uint32_t)(0x3F7E + (i * 7) % 8) << 16 | (uint32_t)(i * 2654435761u >> 16);

		if (i >= 160 && i < 480)
			u = 0x3F000000u;  /* whole blocks with nothing in range */
		if (i % 5 == 1)
			u = 0x3F810000u;  /* a plateau */
		if (i % 3 == 0)
			u |= 0x80000000u; /* the sign is not part of the key */
		memcpy(&x[i], &u, sizeof(u));
	}
	for (int i = 0; i < N; i++) {
		uint32_t key = weld_key(x[i]);

		if (key == 0x3F810000u)
			want_pc++;
		else if (key >= 0x3F7F8000u && key <= 0x3F827FFFu)
			want[m++] = key;
		want_above += key > 0x3F827FFFu;
	}
	assert_true(m > 100 && want_above > 100 && want_pc == 200);
	for (int generic = 0; generic < 2; generic++) {
		size_t (*rec)(const float *, size_t, const struct weld_record_range *, uint32_t *,
			      uint64_t *, uint64_t *) =
			generic ? weld_record_keys_generic : weld_record_keys;

		above = 0;
		memset(pc, 0, sizeof(pc));
		n = rec(x, N - 5, &r, got, pc, &above);
		n += rec(x + N - 5, 5, &r, got + n, pc, &above);
		assert_int_equal(n, m);
		assert_memory_equal(got, want, m * sizeof(uint32_t));
		assert_int_equal(above, want_above);
		assert_int_equal(pc[1], want_pc);
		assert_int_equal(pc[0] + pc[2] + pc[3], 0);
	}
}

/* weld_hist_range: bins of 2^shift keys from lo; keys below lo and above
 * hi are not counted (the last bin may end past hi), the sign is not part
 * of the key. */
static void test_hist_range(void **state)
{
	static uint32_t h[WELD_HIST_BINS];
	const uint32_t keys[] = { 0x3F7FFFFFu, 0x3F800000u, 0x3F800007u, 0x3F800008u,
				  0xBF800009u, 0x3F87FFFFu, 0x3F880000u, 0x00000000u };
	float x[8];

	(void)state;
	memcpy(x, keys, sizeof(x));
	weld_hist_range(x, 8, 0x3F800000u, 0x3F87FFFFu, 3, h);      /* 2^19 keys from lo */
	assert_int_equal(h[0], 2);
	assert_int_equal(h[1], 2);
	assert_int_equal(h[WELD_HIST_BINS - 1], 1);
	assert_int_equal(h[0] + h[1] + h[WELD_HIST_BINS - 1], 5);
	memset(h, 0, sizeof(h));
	weld_hist_range(x, 8, 0x3F800000u, 0x3F87FFFEu, 3, h);      /* the last key left out */
	assert_int_equal(h[WELD_HIST_BINS - 1], 0);
	assert_int_equal(h[0] + h[1], 4);
	memset(h, 0, sizeof(h));
	weld_hist_range(x, 8, 0x3F800000u, 0x3F80FFFFu, 0, h);      /* one high-bits bin */
	assert_int_equal(h[0], 1);
	assert_int_equal(h[7], 1);
	assert_int_equal(h[8], 1);
	assert_int_equal(h[9], 1);
	assert_int_equal(h[0xFFFF], 0);
}

/* Learning plateaus: keys held by an eighth of a stretch become plateau
 * keys in free slots and leave the stretch, the others stay in order. */
static void test_plateau_learn(void **state)
{
	enum { N = 800 };
	uint32_t seg[N], rest[N];
	struct weld_record_range r = { .plateau = { 7, WELD_NO_KEY, WELD_NO_KEY, WELD_NO_KEY } };
	uint64_t pc[WELD_PLATEAUS] = { 3, 0, 0, 0 };
	size_t m, nrest = 0;

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		seg[i] = i % 2 ? 0 : i % 4 == 0 ? 1000 + i : 5;   /* 400 zeros, 200 fives */
		if (seg[i] >= 1000)
			rest[nrest++] = seg[i];
	}
	m = weld_plateau_learn(seg, N, &r, pc);
	assert_int_equal(m, nrest);
	assert_memory_equal(seg, rest, m * sizeof(uint32_t));
	assert_int_equal(r.plateau[0], 7);  /* a slot that counted something stays */
	assert_int_equal(pc[0], 3);
	for (int i = 1; i < WELD_PLATEAUS; i++)
		if (r.plateau[i] == 0)
			assert_int_equal(pc[i], 400);
		else if (r.plateau[i] == 5)
			assert_int_equal(pc[i], 200);
		else
			assert_true(r.plateau[i] == WELD_NO_KEY && pc[i] == 0);
	assert_int_equal(pc[0] + pc[1] + pc[2] + pc[3], 603);
}

/* A plateau of equal magnitudes around the threshold: exactly k kept, the
 * equal ones by lowest position, whether 3 or all but 5 elements are equal. */
static void test_topk_plateau(void **state)
{
	enum { N = 4096 };
	float x[N];
	unsigned char keep[N];
	uint32_t scratch[N];
	struct weld_topk sel;

	(void)state;
	for (int plateau = 3; plateau <= N - 5; plateau = plateau * 8 + 5) {
		for (int i = 0; i < N; i++)
			x[i] = i < plateau ? (i % 2 ? -0.0f : 0.0f) : 1.0f + (float)(i % 7);
		for (uint64_t k = 1; k < N; k = k * 3 + 1) {
			uint64_t kept_eq = 0, above = (uint64_t)(N - plateau), cut;

			weld_topk_select(x, N, k, scratch, &sel);
			weld_topk_mask(x, N, &sel, 0, keep);
			assert_int_equal(count(keep, N), k);
			if (k <= above)
				continue;
			/* the elements above the plateau, then its first k - above */
			cut = k - above;
			for (int i = 0; i < plateau; i++) {
				assert_int_equal(keep[i], (uint64_t)i < cut);
				kept_eq += keep[i];
			}
			assert_int_equal(kept_eq, cut);
			assert_int_equal(sel.thresh, 0);
		}
	}
}

/* weld_hist_pick and weld_hist_pick_from against a bin-by-bin walk, on sparse and
 * dense histograms, for ranks at bin edges, inside bins and past the
 * total (bin 0 then). */
static void test_hist_pick(void **state)
{
	static uint64_t h[WELD_HIST_BINS];
	uint32_t r = 7;

	(void)state;
	for (int round = 0; round < 4; round++) {
		uint64_t total = 0;

		for (size_t b = 0; b < WELD_HIST_BINS; b++) {
			r = r * 1664525u + 1013904223u;
			h[b] = round % 2 ? r >> 28 : ((r >> 20) % 997 == 0) * (r >> 24);
			total += h[b];
		}
		for (uint64_t need = 1; need <= total + 1; need += 1 + need / 3) {
			uint64_t acc = 0, above;
			uint32_t want;

			for (want = WELD_HIST_BINS - 1; want > 0 && acc + h[want] < need; want--)
				acc += h[want];
			assert_int_equal(weld_hist_pick(h, need, &above), want);
			assert_int_equal(above, acc);
			/* from a lower bin, the bins above it left out */
			acc = 0;
			for (want = 40000; want > 0 && acc + h[want] < need; want--)
				acc += h[want];
			assert_int_equal(weld_hist_pick_from(h, 40000, need, &above), want);
			assert_int_equal(above, acc);
		}
	}
}

/* Two selections in one scan (breadcrumbs: kept by a, not among b's top
 * outliers) against weld_topk_mask on each, over tiles of n elements at
 * the start of a unit of 8 BETWEEN_N whose few distinct magnitudes make
 * plateaus at both thresholds (in the second unit, the lower one at key
 * 0, the zeros of a bf16 fine-tune), for numbers of equal elements before the tile from
 * none to past each cut: the same mask when it takes the tile, and the
 * equal counts of the selections that still keep equal elements. */
static int key_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* One count of a row serves several selections: weld_topk_select_counted
 * from weld_topk_count's counts, used again and again for k from 0 to n on
 * a plateau-heavy row, against a sort: the threshold is the k-th largest
 * key and keep_equal the k minus the keys above it. */
static void test_topk_counted(void **state)
{
	enum { N = 2053 };
	static float x[N];
	static uint32_t scratch[N], sorted[N];
	struct weld_topk_counts counts;

	(void)state;
	for (int i = 0; i < N; i++) {
		x[i] = i % 3 ? (float)((i * 37) % 13) * (i % 2 ? -0.125f : 0.125f) : 1e-3f * (float)i;
		sorted[i] = weld_key(x[i]);
	}
	qsort(sorted, N, sizeof(sorted[0]), key_desc);
	weld_topk_count(x, N, &counts);
	for (uint64_t k = 0; k <= N; k += k < 20 ? 1 : 97) {
		struct weld_topk b;
		uint64_t above = 0;

		weld_topk_select_counted(x, N, k, &counts, scratch, &b);
		assert_int_equal(b.none, k == 0);
		assert_int_equal(b.all, k >= N);
		if (b.none || b.all)
			continue;
		while (sorted[above] > sorted[k - 1])
			above++;
		assert_int_equal(b.thresh, sorted[k - 1]);
		assert_int_equal(b.keep_equal, k - above);
	}
}

enum { BETWEEN_N = 1000 };

/* The checks of test_topk_mask_between on one unit x of 8 BETWEEN_N
 * values; counts the tiles the one scan took and refused. */
static void between_unit(const float *x, int *taken, int *refused, bool *zero_cut)
{
	enum { N = BETWEEN_N };
	static uint32_t scratch[8 * N];
	unsigned char k1[N], k2[N], both[N];
	struct weld_topk a, b;

	weld_topk_select(x, 8 * N, 8 * N * 9 / 10, scratch, &a);
	weld_topk_select(x, 8 * N, 8 * N / 10 + 1, scratch, &b);
	*zero_cut = a.thresh == 0;
	for (size_t n = 1; n <= N; n += n < 70 ? 63 : 311)
		/* equal keys counted before the tile: none, some, all but one,
		 * all (the selection keeps no more of them), past all */
		for (int ia = 0; ia < 5; ia++)
			for (int ib = 0; ib < 5; ib++) {
				const uint64_t ka = a.keep_equal, kb = b.keep_equal;
				uint64_t ab = (uint64_t[]){ 0, ka / 3, ka ? ka - 1 : 0, ka, ka + 1 }[ia];
				uint64_t bb = (uint64_t[]){ 0, kb / 3, kb ? kb - 1 : 0, kb, kb + 1 }[ib];
				uint64_t ea, eb, wa, wb;

				if (!weld_topk_mask_between(x, n, &a, ab, &b, bb, both, &ea, &eb)) {
					(*refused)++;
					continue;
				}
				(*taken)++;
				wa = weld_topk_mask(x, n, &a, ab, k1);
				wb = weld_topk_mask(x, n, &b, bb, k2);
				for (size_t i = 0; i < n; i++)
					assert_int_equal(both[i], k1[i] && !k2[i]);
				if (ab < a.keep_equal)
					assert_int_equal(ea, wa);
				if (bb < b.keep_equal)
					assert_int_equal(eb, wb);
			}
}

static void test_topk_mask_between(void **state)
{
	static float x[8 * BETWEEN_N];
	int taken = 0, refused = 0;
	bool zero_cut[2];

	(void)state;
	/* plateaus; then half zeros too, so that the lower cut's key is 0 */
	for (int zeros = 0; zeros < 2; zeros++) {
		for (int i = 0; i < 8 * BETWEEN_N; i++)
			x[i] = zeros && i % 2 ? 0.0f
					      : (float)((i * 37) % 11) * (i % 4 > 1 ? -0.25f : 0.25f);
		between_unit(x, &taken, &refused, &zero_cut[zeros]);
	}
	/* both ways are tried: the one scan, and the refusals at a cut; and a
	 * lower cut at key 0 */
	assert_true(taken > 0);
	assert_true(refused > 0);
	assert_false(zero_cut[0]);
	assert_true(zero_cut[1]);
}

/* Values computed by an independent implementation of DESIGN 4.9
 * (tests/ref/weld_ref.py, its XXH64 checked against xxhsum -H1). */
static void test_rng_known_values(void **state)
{
	(void)state;
	assert_true(weld_rng_key("model.layers.0.mlp.up_proj.weight", 1, 0) == 0x11241eb5149233b2ULL);
	assert_true(weld_rng_key("a", 3, 42) == 0x52429375d028c4f3ULL);
	assert_true(weld_rng_key("", 2, 7) == 0xa99e911d919ebc23ULL);
	assert_true(weld_rng_uniform(0x11241eb5149233b2ULL, 0) == 0x1.6d504ff598640p-4);
	assert_true(weld_rng_uniform(0x11241eb5149233b2ULL, 3) == 0x1.714bfe796ccf2p-2);
	assert_true(weld_rng_uniform(0x52429375d028c4f3ULL, 1) == 0x1.e36886fe0c600p-1);
	assert_true(weld_rng_uniform(0xa99e911d919ebc23ULL, 2) == 0x1.58542be305ea3p-1);
}

static void test_rng_keep_rate(void **state)
{
	uint64_t key = weld_rng_key("t", 1, 0), kept = 0;

	(void)state;
	for (uint64_t j = 0; j < 100000; j++)
		kept += weld_rng_uniform(key, j) < 0.3;
	assert_in_range(kept, 29500, 30500);
}

/* The integer keep decision agrees with u < d, also at the edges of d. */
static void test_rng_keep_matches_uniform(void **state)
{
	const double ds[] = { 1e-9, 0.1, 0.3, 0.5, 0.7, 0x1.fffffffffffffp-1, 1, 0.6 };
	uint64_t key = weld_rng_key("x", 2, 5);
	unsigned char keep[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
		weld_rng_keep(key, 1000, sizeof(keep), weld_rng_threshold(ds[i]), keep);
		for (size_t j = 0; j < sizeof(keep); j++)
			assert_int_equal(keep[j], weld_rng_uniform(key, 1000 + j) < ds[i]);
	}
}

static float combine1(enum weld_method m, const float *const *v, const float *w, size_t n,
		      const float *base, bool ties, bool normalize,
		      const unsigned char *const *keep)
{
	struct weld_combine_args a = { 0 };
	float out[1], scratch[(4 + 8) * 1];

	a.method = m;
	a.n = n;
	a.w = w;
	a.v = v;
	a.keep = keep;
	a.base = base;
	a.lambda = 1;
	a.ties = ties;
	a.normalize = normalize;
	weld_k_combine(&a, 1, out, scratch);
	return out[0];
}

static void test_average_and_task_arithmetic(void **state)
{
	const float x0[] = { 1 }, x1[] = { 3 }, x2[] = { 8 }, b[] = { 2 };
	const float *v[] = { x0, x1, x2 };
	const float w[] = { 1, 1, 2 };
	const float d0[] = { -1 }, d1[] = { 1 }, d2[] = { 6 };
	const float *d[] = { d0, d1, d2 };

	(void)state;
	/* (1 + 3 + 16) / 4 */
	assert_float_equal(combine1(WELD_METHOD_AVERAGE, v, w, 3, NULL, false, true, NULL), 5, 0);
	assert_float_equal(combine1(WELD_METHOD_AVERAGE, v, w, 3, NULL, false, false, NULL), 20, 0);
	/* 2 + (-1 + 1 + 12) */
	assert_float_equal(combine1(WELD_METHOD_TASK_ARITHMETIC, d, w, 3, b, false, false, NULL), 14, 0);
	assert_float_equal(combine1(WELD_METHOD_TASK_ARITHMETIC, d, w, 3, b, false, true, NULL), 5, 0);
}

/* DESIGN 4.4 on one element: deltas 0.5, -0.3, 0.2, 0 with weights 1:
 * sum 0.4 >= 0 elects +; agreeing 0.5 and 0.2 -> mean 0.35; the exact zero
 * never agrees. With count: +2 vs -1 -> +. */
static void test_ties_one_element(void **state)
{
	const float a0[] = { 0.5f }, a1[] = { -0.3f }, a2[] = { 0.2f }, a3[] = { 0 }, b[] = { 1 };
	const float *v[] = { a0, a1, a2, a3 };
	const float w[] = { 1, 1, 1, 1 };
	const unsigned char k1[] = { 1 }, k0[] = { 0 };
	const unsigned char *keep[] = { k1, k1, k1, k1 };
	const unsigned char *keep_trim[] = { k0, k1, k1, k1 };

	(void)state;
	assert_float_equal(combine1(WELD_METHOD_TIES, v, w, 4, b, true, true, keep), 1 + 0.35f, 1e-7);
	assert_float_equal(combine1(WELD_METHOD_TIES, v, w, 4, b, true, false, keep), 1 + 0.7f, 1e-7);
	/* 0.5 trimmed: -0.3 + 0.2 < 0 elects -, only -0.3 agrees */
	assert_float_equal(combine1(WELD_METHOD_TIES, v, w, 4, b, true, true, keep_trim), 1 - 0.3f, 1e-7);
}

/* consensus over a tile that is no multiple of the kernel's steps: every
 * element as METHODS gives it, tau = sum w_i d_i, mask_i = |d_i| >
 * l_i |tau - d_i|, out = b + lambda tau where at least k masks hold; the
 * same bits whether the masks are also saved or not. */
static void test_consensus_tile(void **state)
{
	enum { N = 8, LEN = 1000 };
	static float d[N][LEN], b[LEN], out[LEN], out_saved[LEN], scratch[(4 + N) * LEN];
	static unsigned char bits[N][LEN / 8 + 1];
	const float *v[N];
	float w[N], ml[N];
	struct weld_combine_args a = { 0 };
	uint32_t r = 12345;

	(void)state;
	for (size_t s = 0; s < N; s++) {
		v[s] = d[s];
		w[s] = 0.5f + 0.25f * (float)s;
		ml[s] = 0.4f + 0.05f * (float)s;
		for (size_t j = 0; j < LEN; j++) {
			r = r * 1664525u + 1013904223u;
			/* a quarter of the deltas are exactly zero */
			d[s][j] = (r >> 30) == 0 ? 0.0f : ((float)(r >> 8) / 16777216.0f - 0.5f);
		}
	}
	for (size_t j = 0; j < LEN; j++)
		b[j] = (float)j / LEN;
	a.method = WELD_METHOD_CONSENSUS;
	a.n = N;
	a.w = w;
	a.v = v;
	a.base = b;
	a.mask_lambda = ml;
	a.lambda = -0.75f;
	a.k = 3;
	weld_k_combine(&a, LEN, out, scratch);
	memset(bits, 0, sizeof(bits));
	a.maskbits = &bits[0][0];
	a.maskstride = sizeof(bits[0]);
	a.bitpos = 0;
	weld_k_combine(&a, LEN, out_saved, scratch);
	for (size_t j = 0; j < LEN; j++) {
		float tau = 0, want;
		int agree = 0;

		for (size_t s = 0; s < N; s++)
			tau += w[s] * d[s][j];
		for (size_t s = 0; s < N; s++) {
			bool m = fabsf(d[s][j]) > ml[s] * fabsf(tau - d[s][j]);

			agree += m;
			assert_int_equal(bits[s][j / 8] >> (j % 8) & 1, m);
		}
		want = b[j] + a.lambda * (agree >= a.k ? tau : 0.0f);
		assert_memory_equal(&out[j], &want, sizeof(want));
		assert_memory_equal(&out_saved[j], &want, sizeof(want));
	}
}

static void test_dare_drop_rescale(void **state)
{
	enum { N = 64 };
	float v[N];
	uint64_t key = weld_rng_key("w", 1, 9);
	double sums[2];

	(void)state;
	for (int i = 0; i < N; i++)
		v[i] = 1;
	weld_k_dare_drop(v, N, key, 100, 0.5, 2.0f, sums, NULL, false);
	for (int i = 0; i < N; i++) {
		bool keep = weld_rng_uniform(key, 100 + (uint64_t)i) < 0.5;

		assert_float_equal(v[i], keep ? 2.0f : 0.0f, 0);
	}
	assert_float_equal(sums[0], N, 0);
}

/* Draws stored as bits, then taken from them, give what fresh draws give;
 * the bits are the draws (and a key that draws differently is ignored). */
static void test_dare_drop_bits(void **state)
{
	enum { N = 2500 };
	static float a[N], b[N], c[N];
	static unsigned char bits[(N + 7) / 8];
	uint64_t key = weld_rng_key("w", 2, 5);

	(void)state;
	for (int i = 0; i < N; i++)
		a[i] = b[i] = c[i] = (float)(i % 17) - 8.5f;
	weld_k_dare_drop(a, N, key, 4096, 0.3, 1.5f, NULL, NULL, false);
	weld_k_dare_drop(b, N, key, 4096, 0.3, 1.5f, NULL, bits, false);
	weld_k_dare_drop(c, N, key ^ 1, 4096, 0.3, 1.5f, NULL, bits, true);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_equal(a, c, sizeof(a));
	for (int i = 0; i < N; i++)
		assert_int_equal(bits[i / 8] >> (i % 8) & 1,
				 weld_rng_uniform(key, 4096 + (uint64_t)i) < 0.3);
}

static void test_slerp_coefficients(void **state)
{
	double s0, s1;

	(void)state;
	/* orthogonal unit vectors: theta = pi/2, t = 0.5 -> sin(pi/4) each */
	weld_k_slerp_coeffs(1, 1, 0, 0.5, &s0, &s1);
	assert_float_equal(s0, sqrt(0.5), 1e-12);
	assert_float_equal(s1, sqrt(0.5), 1e-12);
	/* nearly parallel: linear interpolation */
	weld_k_slerp_coeffs(1, 1, 0.9999, 0.25, &s0, &s1);
	assert_float_equal(s0, 0.75, 0);
	assert_float_equal(s1, 0.25, 0);
}

/* NaN (quiet, signalling, negative), +-inf count; the largest finite
 * values, subnormals and zeros do not. */
static void test_count_nonfinite(void **state)
{
	const uint32_t bits[] = {
		0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7f800000u, 0xff800000u, /* non-finite */
		0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u, 0x00000000u, 0x3f800000u,
	};
	float x[sizeof(bits) / sizeof(bits[0])];
	unsigned char nan[sizeof(bits) / sizeof(bits[0])] = { 0 };
	const unsigned char want[] = { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0 };
	(void)state;

	memcpy(x, bits, sizeof(x));
	assert_int_equal(weld_k_count_nonfinite(x, 11), 5);
	assert_int_equal(weld_k_count_nonfinite(x + 5, 6), 0);
	assert_int_equal(weld_k_count_nonfinite(x, 0), 0);
	weld_k_mark_nan(x, 11, nan);
	assert_memory_equal(nan, want, sizeof(want));
}

static void test_count_nonfinite_bf16(void **state)
{
	/* little-endian bf16: NaN, -NaN, +inf, -inf, then max finite, 1, 0 */
	const unsigned char x[] = { 0xc0, 0x7f, 0xc1, 0xff, 0x80, 0x7f, 0x80, 0xff,
				    0x7f, 0x7f, 0x80, 0x3f, 0x00, 0x00 };
	unsigned char nan[7] = { 0 };
	const unsigned char want[7] = { 1, 1, 0, 0, 0, 0, 0 };
	(void)state;

	assert_int_equal(weld_k_count_nonfinite_bf16(x, 7), 4);
	assert_int_equal(weld_k_count_nonfinite_bf16(x + 8, 3), 0);
	/* the delta counts them in the same pass */
	{
		const float b[7] = { 0, 0, 0, 0, 0, 0.5f, 1 };
		float v[7];

		assert_int_equal(weld_k_delta_bf16(x, b, v, 7), 4);
		assert_true(isnan(v[0]) && isinf(v[2]) && v[2] > 0 && isinf(v[3]) && v[3] < 0);
		assert_true(v[4] == 0x1.fep127f && v[5] == 0.5f && v[6] == -1);
		assert_int_equal(weld_k_delta_bf16(x + 8, b + 4, v, 3), 0);
	}
	weld_k_mark_nan_bf16(x, 7, nan);
	assert_memory_equal(nan, want, sizeof(want));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topk_distinct),
		cmocka_unit_test(test_topk_ties_lowest_position),
		cmocka_unit_test(test_topk_edges),
		cmocka_unit_test(test_topk_bf16_exact_k),
		cmocka_unit_test(test_topk_mask_in_pieces),
		cmocka_unit_test(test_record_keys),
		cmocka_unit_test(test_hist_range),
		cmocka_unit_test(test_plateau_learn),
		cmocka_unit_test(test_topk_plateau),
		cmocka_unit_test(test_hist_pick),
		cmocka_unit_test(test_topk_mask_between),
		cmocka_unit_test(test_topk_counted),
		cmocka_unit_test(test_rng_known_values),
		cmocka_unit_test(test_rng_keep_rate),
		cmocka_unit_test(test_rng_keep_matches_uniform),
		cmocka_unit_test(test_average_and_task_arithmetic),
		cmocka_unit_test(test_ties_one_element),
		cmocka_unit_test(test_consensus_tile),
		cmocka_unit_test(test_dare_drop_rescale),
		cmocka_unit_test(test_dare_drop_bits),
		cmocka_unit_test(test_slerp_coefficients),
		cmocka_unit_test(test_count_nonfinite),
		cmocka_unit_test(test_count_nonfinite_bf16),
	};
	return cmocka_run_group_tests_name("merge kernels", tests, NULL, NULL);
}
