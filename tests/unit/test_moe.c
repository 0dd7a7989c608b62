/*
 * test_moe.c - M-SMoE math: stats validation, group-count allocation,
 * grouping, similarity, the weighted merge, the linear-assignment solver
 * (against brute force) and neuron alignment, plus MoE layout detection on
 * hand-made tensor lists. Expected values are worked out by hand in the
 * comments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "moe_impl.h"
#include "lap.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 12345;

static double rnd(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static const int layers_3_5[] = { 3, 5 };

/* Parse text for MoE layers 3 and 5 with 4 experts; return the status. */
static int parse4(const char *text, struct weld_moe_stats *st, struct weld_error *err)
{
	return weld_moe_stats_parse(st, text, strlen(text), "stats.json", layers_3_5, 2, 4, err);
}

static void expect_stats_error(const char *text, const char *msg)
{
	struct weld_moe_stats st;
	struct weld_error err = { 0 };

	assert_int_equal(parse4(text, &st, &err), -1);
	if (strcmp(err.msg, msg) != 0)
		print_error("got  '%s'\nwant '%s'\n", err.msg, msg);
	assert_string_equal(err.msg, msg);
	assert_null(st.freq);
}

/* ---------------------------------------------------------------- stats */

static void test_stats_valid_normalised(void **state)
{
	const char *text =
		"{\"metadata\": {\"samples\": 256}, \"layers\": {"
		"\"5\": {\"frequency\": [2, 2, 4, 0]},"
		"\"3\": {\"frequency\": [0.5, 0.25, 0.125, 0.125],"
		"       \"similarity\": [[1,0.5,0.25,0],[0.5,1,0,0],[0.25,0,1,0.75],[0,0,0.75,1]]}}}";
	struct weld_moe_stats st;
	struct weld_error err = { 0 };

	(void)state;
	assert_int_equal(parse4(text, &st, &err), 0);
	assert_int_equal(st.n_layers, 2);
	/* layer 3 (first in caller order) already sums to 1 */
	assert_true(st.freq[0] == 0.5 && st.freq[1] == 0.25 && st.freq[3] == 0.125);
	/* layer 5: counts 2, 2, 4, 0 become 0.25, 0.25, 0.5, 0 */
	assert_true(st.freq[4] == 0.25 && st.freq[5] == 0.25 && st.freq[6] == 0.5 &&
		    st.freq[7] == 0.0);
	assert_non_null(st.sim[0]);
	assert_true(st.sim[0][2 * 4 + 3] == 0.75);
	assert_null(st.sim[1]);
	weld_moe_stats_release(&st);
	weld_moe_stats_release(&st);   /* harmless twice */
	weld_moe_stats_release(NULL);
}

static void test_stats_negative_value(void **state)
{
	(void)state;
	expect_stats_error("{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, -1]},"
			   "\"5\": {\"frequency\": [1, 1, 1, 1]}}}",
			   "stats.json: layers.3.frequency[3]: negative value -1");
}

static void test_stats_path_errors(void **state)
{
	const char *ok5 = "\"5\": {\"frequency\": [1, 1, 1, 1]}";
	char buf[512];

	(void)state;
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, 1, 1]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequency: 3 values, expected 4 (one per expert)");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, \"x\", 1, 1]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequency[1]: not a number");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, 1, 1e999, 1]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequency[2]: value is not finite");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [0, 0, 0, 0]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequency: all values are zero");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": 7}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequency: expected an array of 4 numbers");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequencies\": [1, 1, 1, 1]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.frequencies: unknown key "
			   "(expected 'frequency' or 'similarity')");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"similarity\": []}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3: missing 'frequency'");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, 1], "
		 "\"similarity\": [[1,0,0,0],[0,1,0,0],[0,0,1],[0,0,0,1]]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.similarity[2]: 3 values, expected 4 (one per expert)");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, 1], "
		 "\"similarity\": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,null,1]]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.similarity[3][2]: not a number");
	snprintf(buf, sizeof(buf), "{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, 1], "
		 "\"similarity\": [[1,0,0,0]]}, %s}}", ok5);
	expect_stats_error(buf, "stats.json: layers.3.similarity: 1 rows, expected 4 (one per expert)");
}

static void test_stats_layer_errors(void **state)
{
	(void)state;
	expect_stats_error("{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, 1]}}}",
			   "stats.json: layers: no entry for MoE layer 5");
	expect_stats_error("{\"layers\": {\"9\": {\"frequency\": [1, 1, 1, 1]}}}",
			   "stats.json: layers.9: layer 9 has no experts (MoE layers: 3, 5)");
	expect_stats_error("{\"layers\": {\"03\": {\"frequency\": [1, 1, 1, 1]}}}",
			   "stats.json: layers.03: not a layer index");
	expect_stats_error("{\"layers\": {\"3\": {\"frequency\": [1, 1, 1, 1]},"
			   "\"3\": {\"frequency\": [1, 1, 1, 1]}}}",
			   "stats.json: layers.3: duplicate entry");
	expect_stats_error("{\"layers\": {\"3\": [1, 1, 1, 1]}}",
			   "stats.json: layers.3: expected an object with 'frequency'");
	expect_stats_error("{\"layer\": {}}", "stats.json: layer: unknown key (expected 'layers')");
	expect_stats_error("{}", "stats.json: missing 'layers'");
	expect_stats_error("[1, 2]", "stats.json: expected a JSON object with 'layers'");
	expect_stats_error("{\"layers\": {\n  \"3\": {\"frequency\": [1, 1,, 1]}}}",
			   "stats.json: invalid JSON at line 2, column 28");
}

/* ---------------------------------------------------------------- allocation */

static void test_allocate_global_with_ties(void **state)
{
	/*
	 * G = 2, L = 2: the threshold is the 4th largest of
	 * 0.4 0.3 0.25 0.25 0.25 0.25 0.2 0.1, i.e. 0.25. Layer 0 has two
	 * experts >= 0.25; layer 1 has four (all tied at the threshold).
	 */
	const double f[] = { 0.4, 0.3, 0.2, 0.1, 0.25, 0.25, 0.25, 0.25 };
	struct weld_error err = { 0 };
	int out[2];

	(void)state;
	assert_int_equal(weld_moe_allocate(f, 2, 4, 2, false, out, &err), 0);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 4);
	assert_int_equal(weld_moe_allocate(f, 2, 4, 2, true, out, &err), 0);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 2);
}

static void test_allocate_at_least_one(void **state)
{
	/* G = 1: the 2nd largest is 0.5; layer 1 has none >= 0.5 but gets 1 */
	const double f[] = { 0.5, 0.5, 0.0, 0.0, 0.3, 0.3, 0.2, 0.2 };
	/* G = 2, L = 3: the 6th largest of 1 0.7 0.6 0.2 0.1 0.1 ... is 0.1 */
	const double g[] = { 0.7, 0.1, 0.1, 0.1, 0.6, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0, 1.0 };
	struct weld_error err = { 0 };
	int out[3];

	(void)state;
	assert_int_equal(weld_moe_allocate(f, 2, 4, 1, false, out, &err), 0);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 1);
	assert_int_equal(weld_moe_allocate(g, 3, 4, 2, false, out, &err), 0);
	assert_int_equal(out[0], 4);
	assert_int_equal(out[1], 4);
	assert_int_equal(out[2], 1);
}

static void test_allocate_uniform_and_errors(void **state)
{
	struct weld_error err = { 0 };
	int out[3];

	(void)state;
	/* no statistics: every layer gets G */
	assert_int_equal(weld_moe_allocate(NULL, 3, 8, 3, false, out, &err), 0);
	assert_int_equal(out[0], 3);
	assert_int_equal(out[2], 3);
	assert_int_equal(weld_moe_allocate(NULL, 3, 8, 9, false, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "--groups 9"));
	assert_int_equal(weld_moe_allocate(NULL, 3, 8, 0, false, out, &err), -1);
}

/* ---------------------------------------------------------------- grouping */

static void test_group_frequency_ties(void **state)
{
	/*
	 * Usage order of 0.2 0.3 0.3 0.2 is 1, 2, 0, 3 (ties: lower index).
	 * Dominants 1 (group 0) and 2 (group 1). Expert 0 is as similar to 1
	 * as to 2: the first dominant in usage order (1) wins. Expert 3 is
	 * closer to 2.
	 */
	const double f[] = { 0.2, 0.3, 0.3, 0.2 };
	const double s[] = {
		1.0, 0.5, 0.5, 0.0,
		0.5, 1.0, 0.0, 0.2,
		0.5, 0.0, 1.0, 0.9,
		0.0, 0.2, 0.9, 1.0,
	};
	struct weld_error err = { 0 };
	int label[4], dom[4];

	(void)state;
	assert_int_equal(weld_moe_group(f, s, 4, 2, label, dom, &err), 0);
	assert_int_equal(dom[0], 1);
	assert_int_equal(dom[1], 2);
	assert_int_equal(label[0], 0);
	assert_int_equal(label[1], 0);
	assert_int_equal(label[2], 1);
	assert_int_equal(label[3], 1);
}

static void test_group_similarity_tie_uses_usage_order(void **state)
{
	/*
	 * Usage order of 0.1 0.3 0.2 0.4 is 3, 1, 2, 0: dominant 3 founds
	 * group 0 and dominant 1 group 1. Expert 2 is tied (0.7) between them
	 * and joins group 0 (dominant 3, first in usage order, though its index
	 * is higher). Expert 0 prefers dominant 1 (0.6 > 0.1).
	 */
	const double f[] = { 0.1, 0.3, 0.2, 0.4 };
	const double s[] = {
		1.0, 0.6, 0.0, 0.1,
		0.6, 1.0, 0.7, 0.0,
		0.0, 0.7, 1.0, 0.7,
		0.1, 0.0, 0.7, 1.0,
	};
	struct weld_error err = { 0 };
	int label[4], dom[4];

	(void)state;
	assert_int_equal(weld_moe_group(f, s, 4, 2, label, dom, &err), 0);
	assert_int_equal(dom[0], 3);
	assert_int_equal(dom[1], 1);
	assert_int_equal(label[3], 0);
	assert_int_equal(label[1], 1);
	assert_int_equal(label[2], 0);
	assert_int_equal(label[0], 1);
}

static void test_group_uniform_and_all(void **state)
{
	const double s[9] = { 1, 0.9, 0.1, 0.9, 1, 0.2, 0.1, 0.2, 1 };
	struct weld_error err = { 0 };
	int label[3], dom[3];

	(void)state;
	/* no usage: dominants are experts 0..G-1; expert 2 is closer to 1 */
	assert_int_equal(weld_moe_group(NULL, s, 3, 2, label, dom, &err), 0);
	assert_int_equal(dom[0], 0);
	assert_int_equal(dom[1], 1);
	assert_int_equal(label[2], 1);
	/* G = E needs no similarity */
	assert_int_equal(weld_moe_group(NULL, NULL, 3, 3, label, dom, &err), 0);
	assert_int_equal(label[0], 0);
	assert_int_equal(label[2], 2);
	assert_int_equal(weld_moe_group(NULL, NULL, 3, 2, label, dom, &err), -1);
	assert_int_equal(weld_moe_group(NULL, s, 3, 4, label, dom, &err), -1);
}

/* ---------------------------------------------------------------- similarity */

static void test_row_similarity(void **state)
{
	/* rows (1,0) (0,1) (1,1) (-1,0) (0,0) */
	const float rows[] = { 1, 0, 0, 1, 1, 1, -1, 0, 0, 0 };
	struct weld_error err = { 0 };
	double s[25];

	(void)state;
	assert_int_equal(weld_moe_row_similarity(rows, 5, 2, s, &err), 0);
	assert_true(s[0] == 1.0);
	assert_float_equal(s[0 * 5 + 1], 0.5, 1e-15);                      /* cos 0 */
	assert_float_equal(s[0 * 5 + 2], (1.0 / sqrt(2.0) + 1.0) / 2, 1e-15); /* cos 45 deg */
	assert_float_equal(s[0 * 5 + 3], 0.0, 1e-15);                      /* cos 180 deg */
	assert_float_equal(s[0 * 5 + 4], 0.5, 1e-15);                      /* zero row: eps */
	assert_true(s[2 * 5 + 0] == s[0 * 5 + 2]);
}

static void test_gram_independent_of_chunking(void **state)
{
	enum { N = 3, LEN = 5000 };
	float *x = malloc(N * LEN * sizeof(float));
	const float *whole[N], *part[N];
	double g1[N * N] = { 0 }, g2[N * N] = { 0 }, g3[N * N] = { 0 };

	(void)state;
	assert_non_null(x);
	for (int k = 0; k < N * LEN; k++)
		x[k] = (float)(rnd() * 2 - 1);
	for (int i = 0; i < N; i++)
		whole[i] = x + i * LEN;
	weld_moe_gram_update(g1, N, whole, LEN);
	for (size_t off = 0; off < LEN; off += WELD_MOE_BLOCK) {
		for (int i = 0; i < N; i++)
			part[i] = x + i * LEN + off;
		weld_moe_gram_update(g2, N, part, LEN - off < WELD_MOE_BLOCK ? LEN - off : WELD_MOE_BLOCK);
	}
	for (size_t off = 0; off < LEN; off += 3 * WELD_MOE_BLOCK) {
		for (int i = 0; i < N; i++)
			part[i] = x + i * LEN + off;
		weld_moe_gram_update(g3, N, part,
				     LEN - off < 3 * WELD_MOE_BLOCK ? LEN - off : 3 * WELD_MOE_BLOCK);
	}
	assert_memory_equal(g1, g2, sizeof(g1));
	assert_memory_equal(g1, g3, sizeof(g1));
	free(x);
}

/* ---------------------------------------------------------------- merge */

static void test_merge_weighted(void **state)
{
	/*
	 * f = 0.5 0.25 0.125 0.125, group {0, 2}: sum 0.625, so
	 * W = (0.5 W0 + 0.125 W2) / (0.625 + 1e-7).
	 */
	const double f[] = { 0.5, 0.25, 0.125, 0.125 };
	const int members[] = { 0, 2 };
	const float w0[] = { 1, 2, 3 }, w2[] = { 5, 6, -7 };
	const float *src[] = { w0, w2 };
	float coef[2], out[3];

	(void)state;
	weld_moe_merge_coefs(f, 0.25, members, 2, coef);
	assert_true(coef[0] == (float)(0.5 / (0.625 + 1e-7)));
	assert_true(coef[1] == (float)(0.125 / (0.625 + 1e-7)));
	weld_moe_merge(out, src, coef, 2, 3);
	for (int k = 0; k < 3; k++) {
		const double want = (0.5 * w0[k] + 0.125 * w2[k]) / (0.625 + 1e-7);

		assert_float_equal(out[k], want, 1e-6);
		/* float32, in member order */
		assert_true(out[k] == coef[0] * w0[k] + coef[1] * w2[k]);
	}
}

static void test_merge_uniform_zero_and_single(void **state)
{
	const double zero[] = { 0.0, 0.0, 0.5, 0.5 };
	const int members[] = { 0, 1 }, single[] = { 2 };
	float coef[2];

	(void)state;
	/* no statistics: uniform 1/E each, (1/4) / (2/4 + 1e-7) */
	weld_moe_merge_coefs(NULL, 0.25, members, 2, coef);
	assert_true(coef[0] == (float)(0.25 / (0.5 + 1e-7)));
	assert_true(coef[0] == coef[1]);
	/* an unused group: the plain mean */
	weld_moe_merge_coefs(zero, 0.25, members, 2, coef);
	assert_true(coef[0] == 0.5f && coef[1] == 0.5f);
	/* a group of one: f / (f + 1e-7) */
	weld_moe_merge_coefs(zero, 0.25, single, 1, coef);
	assert_true(coef[0] == (float)(0.5 / (0.5 + 1e-7)));
}

/* ---------------------------------------------------------------- linear assignment */

/* Best sum over all permutations of n <= 7, by Heap's algorithm. */
static double brute_force(const double *c, int n, bool maximize)
{
	int p[8], k[8] = { 0 }, i = 1;
	double best, s = 0;

	for (int r = 0; r < n; r++) {
		p[r] = r;
		s += c[r * n + r];
	}
	best = s;
	while (i < n) {
		if (k[i] < i) {
			const int j = i % 2 ? k[i] : 0, t = p[j];

			p[j] = p[i];
			p[i] = t;
			s = 0;
			for (int r = 0; r < n; r++)
				s += c[r * n + p[r]];
			if (maximize ? s > best : s < best)
				best = s;
			k[i]++;
			i = 1;
		} else {
			k[i] = 0;
			i++;
		}
	}
	return best;
}

static void check_lap(const double *c, int n, bool maximize)
{
	struct weld_error err = { 0 };
	int assign[8], seen[8] = { 0 };
	double total, s = 0;

	assert_int_equal(weld_lap_solve(c, n, maximize, assign, &total, &err), 0);
	for (int r = 0; r < n; r++) {
		assert_in_range(assign[r], 0, n - 1);
		assert_int_equal(seen[assign[r]]++, 0);
		s += c[r * n + assign[r]];
	}
	assert_true(s == total);
	assert_float_equal(total, brute_force(c, n, maximize), 1e-9);
}

static void test_lap_brute_force(void **state)
{
	double c[49];

	(void)state;
	for (int n = 1; n <= 7; n++) {
		for (int trial = 0; trial < 30; trial++) {
			for (int k = 0; k < n * n; k++)
				c[k] = rnd() * 200 - 100;
			check_lap(c, n, false);
			check_lap(c, n, true);
			/* small integers: many ties between assignments */
			for (int k = 0; k < n * n; k++)
				c[k] = (double)(int)(rnd() * 4);
			check_lap(c, n, false);
			check_lap(c, n, true);
		}
	}
}

static void test_lap_hand_and_errors(void **state)
{
	/* rows pick 1, 0, 2: 1 + 2 + 2 = 5 is the only minimum */
	const double c[9] = { 4, 1, 3, 2, 0, 5, 3, 2, 2 };
	const double bad[4] = { 1, NAN, 0, 1 };
	struct weld_error err = { 0 };
	int a[3];
	double total;

	(void)state;
	assert_int_equal(weld_lap_solve(c, 3, false, a, &total, &err), 0);
	assert_int_equal(a[0], 1);
	assert_int_equal(a[1], 0);
	assert_int_equal(a[2], 2);
	assert_true(total == 5.0);
	/* maximum: 4 + 5 + 2 = 11 (rows pick 0, 2, 1) */
	assert_int_equal(weld_lap_solve(c, 3, true, a, &total, &err), 0);
	assert_true(total == 11.0);
	assert_int_equal(weld_lap_solve(bad, 2, false, a, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "cost[0][1] is not finite"));
	assert_int_equal(weld_lap_solve(c, 0, false, a, NULL, &err), -1);
}

/* ---------------------------------------------------------------- alignment */

static void test_align_recovers_planted_permutation(void **state)
{
	enum { F = 9, H = 5 };
	const int pi[F] = { 4, 0, 7, 2, 8, 1, 6, 3, 5 };
	float g[F * H], u[F * H], d[H * F], tg[F * H], tu[F * H], td[H * F];
	struct weld_moe_ffn ref = { g, u, d }, tgt = { tg, tu, td };
	struct weld_error err = { 0 };
	int perm[F];

	(void)state;
	for (int k = 0; k < F * H; k++) {
		g[k] = (float)(rnd() * 2 - 1);
		u[k] = (float)(rnd() * 2 - 1);
		d[k] = (float)(rnd() * 2 - 1);
	}
	/* target neuron pi[r] is reference neuron r */
	for (int r = 0; r < F; r++) {
		memcpy(tg + pi[r] * H, g + r * H, H * sizeof(float));
		memcpy(tu + pi[r] * H, u + r * H, H * sizeof(float));
		for (int h = 0; h < H; h++)
			td[h * F + pi[r]] = d[h * F + r];
	}
	assert_int_equal(weld_moe_align(&ref, &tgt, F, H, perm, &err), 0);
	for (int r = 0; r < F; r++) {
		assert_int_equal(perm[r], pi[r]);
		assert_memory_equal(tg + perm[r] * H, g + r * H, H * sizeof(float));
		for (int h = 0; h < H; h++)
			assert_true(td[h * F + perm[r]] == d[h * F + r]);
	}
	/* without up (W3) it still finds it */
	ref.up = NULL;
	tgt.up = NULL;
	assert_int_equal(weld_moe_align(&ref, &tgt, F, H, perm, &err), 0);
	assert_memory_equal(perm, pi, sizeof(pi));
	/* mismatched arguments */
	tgt.up = tu;
	assert_int_equal(weld_moe_align(&ref, &tgt, F, H, perm, &err), -1);
}

/* ---------------------------------------------------------------- layout */

struct fake_model {
	struct weld_tensor_info info[64];
	const struct weld_tensor_info *ptr[64];
	char names[64][96];
	size_t n;
};

static void add_tensor(struct fake_model *m, const char *name, int ndim, int64_t d0, int64_t d1)
{
	struct weld_tensor_info *t = &m->info[m->n];

	memset(t, 0, sizeof(*t));
	snprintf(m->names[m->n], sizeof(m->names[0]), "%s", name);
	t->name = m->names[m->n];
	t->dtype = WELD_BF16;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->nelem = (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1);
	t->nbytes = t->nelem * 2;
	m->ptr[m->n] = t;
	m->n++;
}

/* E experts of F x H with the given naming, in layer L. */
static void add_moe_layer(struct fake_model *m, bool mixtral, int layer, int e_n, int64_t f,
			  int64_t h)
{
	const char *blk = mixtral ? "block_sparse_moe" : "mlp";
	const char *p[3] = { mixtral ? "w1" : "gate_proj", mixtral ? "w3" : "up_proj",
			     mixtral ? "w2" : "down_proj" };
	char name[96];

	for (int e = 0; e < e_n; e++)
		for (int k = 0; k < 3; k++) {
			snprintf(name, sizeof(name), "model.layers.%d.%s.experts.%d.%s.weight",
				 layer, blk, e, p[k]);
			add_tensor(m, name, 2, k < 2 ? f : h, k < 2 ? h : f);
		}
	snprintf(name, sizeof(name), "model.layers.%d.%s.gate.weight", layer, blk);
	add_tensor(m, name, 2, e_n, h);
}

static void test_layout_mixtral(void **state)
{
	static struct fake_model m;
	const char *config = "{\"model_type\": \"mixtral\", \"num_local_experts\": 4, "
			     "\"num_experts_per_tok\": 2}";
	struct weld_moe_layout lo;
	struct weld_error err = { 0 };

	(void)state;
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "model.embed_tokens.weight", 2, 32, 8);
	add_moe_layer(&m, true, 1, 4, 6, 8);
	add_moe_layer(&m, true, 0, 4, 6, 8);
	add_tensor(&m, "model.norm.weight", 1, 8, 0);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, config, strlen(config), &err), 0);
	assert_string_equal(lo.style, "mixtral");
	assert_string_equal(lo.cfg.model_type, "mixtral");
	assert_int_equal(lo.n_experts, 4);
	assert_int_equal(lo.n_layers, 2);
	assert_int_equal(lo.layers[0].index, 0);
	assert_string_equal(lo.layers[0].prefix, "model.layers.0.block_sparse_moe.");
	assert_int_equal(lo.layers[0].ffn, 6);
	assert_int_equal(lo.hidden, 8);
	assert_int_equal(lo.cfg.experts_per_tok, 2);
	assert_int_equal(lo.n_suffix, 3);
	assert_string_equal(lo.suffix[lo.gate_suffix], "w1.weight");
	assert_string_equal(lo.suffix[lo.up_suffix], "w3.weight");
	assert_string_equal(lo.suffix[lo.down_suffix], "w2.weight");
	assert_int_equal(lo.axis[lo.down_suffix], WELD_MOE_AXIS_COLS);
	assert_int_equal(lo.axis[lo.gate_suffix], WELD_MOE_AXIS_ROWS);
	assert_int_equal(lo.roles[0].role, WELD_MOE_OTHER);
	assert_int_equal(lo.roles[1].role, WELD_MOE_EXPERT);
	assert_int_equal(lo.roles[1].layer, 1);   /* layer index 1 sorts second */
	assert_int_equal(lo.roles[13].role, WELD_MOE_ROUTER);
	assert_int_equal(lo.layers[1].router, 13);
	weld_moe_layout_release(&lo);
	weld_moe_layout_release(&lo);
}

static void test_layout_deepseek_dense_and_shared(void **state)
{
	static struct fake_model m;
	const char *config = "{\"model_type\": \"deepseek\", \"n_routed_experts\": 2}";
	struct weld_moe_layout lo;
	struct weld_error err = { 0 };

	(void)state;
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "model.layers.0.mlp.gate_proj.weight", 2, 12, 8);
	add_tensor(&m, "model.layers.0.mlp.up_proj.weight", 2, 12, 8);
	add_tensor(&m, "model.layers.0.mlp.down_proj.weight", 2, 8, 12);
	add_moe_layer(&m, false, 1, 2, 4, 8);
	add_tensor(&m, "model.layers.1.mlp.shared_experts.gate_proj.weight", 2, 4, 8);
	add_tensor(&m, "model.layers.1.mlp.shared_expert_gate.weight", 2, 1, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, config, strlen(config), &err), 0);
	assert_string_equal(lo.style, "qwen");
	assert_int_equal(lo.n_layers, 1);
	assert_int_equal(lo.layers[0].index, 1);
	assert_int_equal(lo.roles[0].role, WELD_MOE_OTHER);
	assert_int_equal(lo.roles[m.n - 2].role, WELD_MOE_OTHER);
	assert_int_equal(lo.roles[m.n - 1].role, WELD_MOE_OTHER);
	assert_int_equal(lo.roles[m.n - 3].role, WELD_MOE_ROUTER);
	weld_moe_layout_release(&lo);
}

/* add_tensor() with a third dimension. */
static void add_tensor3(struct fake_model *m, const char *name, int64_t d0, int64_t d1, int64_t d2)
{
	struct weld_tensor_info *t;

	add_tensor(m, name, 3, d0, d1);
	t = &m->info[m->n - 1];
	t->shape[2] = d2;
	t->nelem = (uint64_t)d0 * (uint64_t)d1 * (uint64_t)d2;
	t->nbytes = t->nelem * 2;
}

/* Fused gate_up per expert, and transformers' stacked 3-D experts. */
static void test_layout_fused_and_stacked(void **state)
{
	static struct fake_model m;
	struct weld_moe_layout lo;
	struct weld_error err = { 0 };

	(void)state;
	memset(&m, 0, sizeof(m));
	for (int e = 0; e < 3; e++) {
		char name[96];

		snprintf(name, sizeof(name), "model.layers.2.mlp.experts.%d.gate_up_proj.weight", e);
		add_tensor(&m, name, 2, 12, 8);
		snprintf(name, sizeof(name), "model.layers.2.mlp.experts.%d.down_proj.weight", e);
		add_tensor(&m, name, 2, 8, 6);
	}
	add_tensor(&m, "model.layers.2.mlp.gate.weight", 2, 3, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), 0);
	assert_true(lo.fused);
	assert_false(lo.stacked);
	assert_int_equal(lo.n_experts, 3);
	assert_int_equal(lo.gate_suffix, lo.up_suffix);
	assert_string_equal(lo.suffix[lo.gate_suffix], "gate_up_proj.weight");
	assert_int_equal(lo.axis[lo.gate_suffix], WELD_MOE_AXIS_HALVES);
	assert_int_equal(lo.axis[lo.down_suffix], WELD_MOE_AXIS_COLS);
	assert_int_equal(lo.layers[0].ffn, 6);
	assert_int_equal(lo.hidden, 8);
	assert_int_equal(lo.layers[0].slice[lo.gate_suffix], 96);
	weld_moe_layout_release(&lo);

	/* fused and separate gate projections together */
	add_tensor(&m, "model.layers.2.mlp.experts.0.gate_proj.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "'model.layers.2.mlp.experts': both fused 'gate_up_proj' and "
			    "separate 'gate_proj' tensors");

	memset(&m, 0, sizeof(m));
	add_tensor3(&m, "model.layers.0.mlp.experts.gate_up_proj", 4, 12, 8);
	add_tensor3(&m, "model.layers.0.mlp.experts.down_proj", 4, 8, 6);
	add_tensor(&m, "model.layers.0.mlp.gate.weight", 2, 4, 8);
	add_tensor3(&m, "model.layers.1.mlp.experts.gate_up_proj", 4, 12, 8);
	add_tensor3(&m, "model.layers.1.mlp.experts.down_proj", 4, 8, 6);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), 0);
	assert_true(lo.fused);
	assert_true(lo.stacked);
	assert_int_equal(lo.n_experts, 4);
	assert_int_equal(lo.n_layers, 2);
	assert_int_equal(lo.roles[0].expert, -1);
	assert_int_equal(weld_moe_tensor_of(&lo, 1, 3, lo.down_suffix), 4);
	assert_int_equal(weld_moe_first_of(&lo, 1, 3, lo.down_suffix), 3 * 48);
	assert_int_equal(lo.layers[1].rows[lo.gate_suffix], 12);
	weld_moe_layout_release(&lo);

	/* a layer with another expert count; a 2-D "stacked" tensor; mixed forms */
	m.info[4].shape[0] = 3;
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "tensor 'model.layers.1.mlp.experts.down_proj': first dimension 3 "
			    "is not the 4 experts of the model");
	m.info[4].shape[0] = 4;
	m.info[4].ndim = 1;
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "stacked experts need a shape [E, ...]"));
	m.info[4].ndim = 3;
	add_tensor(&m, "model.layers.1.mlp.experts.0.gate_proj.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "stacked experts ('model.layers.1.mlp.experts.down_proj') mixed with "
			       "per-expert tensors"));
	/* gate_up that is not twice down's width */
	m.n--;
	m.info[3].shape[1] = 10;
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "layer 1: expert shapes do not form an FFN"));
	assert_non_null(strstr(err.msg, "after the leading expert dimension"));
}

static void test_layout_errors(void **state)
{
	static struct fake_model m;
	const char *config = "{\"model_type\": \"mixtral\", \"num_local_experts\": 8}";
	struct weld_moe_layout lo;
	struct weld_error err = { 0 };

	(void)state;
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "model.embed_tokens.weight", 2, 32, 8);
	add_tensor(&m, "model.layers.0.mlp.gate_proj.weight", 2, 12, 8);
	add_tensor(&m, "lm_head.weight", 2, 32, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "not a recognised MoE checkpoint: no expert tensors matching "
			    "'...block_sparse_moe.experts.E.w1...' or '...mlp.experts.E.gate_proj...'; "
			    "found 0 expert tensors among 3");

	/* stacked gate_up without its down projection */
	add_tensor(&m, "model.layers.0.mlp.experts.gate_up_proj", 3, 4, 24);
	m.info[m.n - 1].shape[2] = 8;
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "no 'model.layers.0.mlp.experts.down_proj' tensors in 'qwen' MoE");
	/* GPT-OSS-style extras are named, not guessed at */
	add_tensor(&m, "model.layers.0.mlp.experts.gate_up_proj_bias", 2, 4, 24);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "unknown expert tensor 'gate_up_proj_bias'"));

	/* config disagrees with the tensors */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 4, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, config, strlen(config), &err), -1);
	assert_string_equal(err.msg, "config.json: num_local_experts is 8 but layer 0 has 4 experts");

	/* a missing expert tensor */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 4, 6, 8);
	add_moe_layer(&m, true, 1, 3, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "layer 1: missing 'model.layers.1.block_sparse_moe.experts.3.w1.weight' "
			    "(the model has 4 experts per layer)");

	/* an expert index with a leading zero would share expert 1's slot */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 2, 6, 8);
	add_tensor(&m, "model.layers.0.block_sparse_moe.experts.01.w1.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "tensor 'model.layers.0.block_sparse_moe.experts.01.w1.weight': "
			    "expert index '01' has a leading zero (the same number as expert 1)");

	/* wrong shapes */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 2, 6, 8);
	m.info[1].shape[0] = 5;   /* experts.0.w3 */
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "do not form an FFN"));

	/* an unknown expert tensor */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 2, 6, 8);
	add_tensor(&m, "model.layers.0.block_sparse_moe.experts.0.w4.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "unknown expert tensor 'w4.weight'"));
}

/* One failure per detection step, each with its message, and nothing
 * left allocated in the layout. */
static void test_layout_step_errors(void **state)
{
	static struct fake_model m;
	struct weld_moe_layout lo;
	struct weld_error err = { 0 };

	(void)state;
	/* config.json that is not an object */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, "[1]", 3, &err), -1);
	assert_string_equal(err.msg, "config.json: not a JSON object");
	assert_null(lo.layers);

	/* scan: two naming styles */
	add_moe_layer(&m, false, 1, 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "tensor 'model.layers.1.mlp.experts.0.gate_proj.weight': mixes "
			    "'mlp.experts' with 'block_sparse_moe.experts' (in "
			    "'model.layers.0.block_sparse_moe.experts.1.w2.weight')");
	assert_null(lo.suffix);

	/* scan: an expert index beyond the limit */
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "model.layers.0.mlp.experts.70000.gate_proj.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "tensor 'model.layers.0.mlp.experts.70000.gate_proj.weight': "
			    "expert index 70000 is too large");

	/* suffixes: a main weight missing */
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "model.layers.0.mlp.experts.0.gate_proj.weight", 2, 6, 8);
	add_tensor(&m, "model.layers.0.mlp.experts.0.down_proj.weight", 2, 8, 6);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "no 'model.layers.0.mlp.experts.0.up_proj.weight' tensors "
			    "in 'qwen' MoE");

	/* layers: no layer index in the prefix */
	memset(&m, 0, sizeof(m));
	add_tensor(&m, "encoder.mlp.experts.0.gate_proj.weight", 2, 6, 8);
	add_tensor(&m, "encoder.mlp.experts.0.up_proj.weight", 2, 6, 8);
	add_tensor(&m, "encoder.mlp.experts.0.down_proj.weight", 2, 8, 6);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "'encoder.mlp.experts': cannot tell which layer this is");

	/* layers: two prefixes with the same index */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, false, 3, 2, 6, 8);
	add_tensor(&m, "vision.layers.3.mlp.experts.0.gate_proj.weight", 2, 6, 8);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "'model.layers.3.mlp.experts' and 'vision.layers.3.mlp.experts' "
			    "both look like layer 3");

	/* checks: a router with the wrong number of rows */
	memset(&m, 0, sizeof(m));
	add_moe_layer(&m, true, 0, 2, 6, 8);
	add_tensor(&m, "model.layers.0.block_sparse_moe.gate.bias", 1, 3, 0);
	assert_int_equal(weld_moe_layout_detect(&lo, m.ptr, m.n, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "router 'model.layers.0.block_sparse_moe.gate.bias': first "
			    "dimension 3, expected the 2 experts");
	assert_null(lo.roles);
}

/* DeepSeek's routing keys: parsed strictly, checked against the experts,
 * kept or adjusted for a compact output, worked out by hand. */
static void test_config_group_routing(void **state)
{
	const char *v3 = "{\"n_routed_experts\": 256, \"num_experts_per_tok\": 8, \"n_group\": 8, "
			 "\"topk_group\": 4, \"topk_method\": \"noaux_tc\", \"first_k_dense_replace\": 3}";
	struct weld_moe_config c;
	struct weld_moe_compact out;
	struct weld_error err = { 0 };

	(void)state;
	assert_int_equal(weld_moe_config_parse(&c, v3, strlen(v3), &err), 0);
	assert_int_equal(c.n_group, 8);
	assert_int_equal(c.topk_group, 4);
	assert_int_equal(c.first_dense, 3);
	assert_true(c.group_top2);
	assert_int_equal(weld_moe_config_check(&c, 256, 3, &err), 0);
	assert_int_equal(weld_moe_config_check(&c, 256, 2, &err), -1);
	assert_string_equal(err.msg, "config.json: first_k_dense_replace is 3 (layers 0-2 dense) "
			    "but layer 2 has experts");
	/* 64 = 8 groups of 8, 8 <= 4 * 8: kept */
	assert_int_equal(weld_moe_config_compact(&c, 64, &out, &err), 0);
	assert_int_equal(out.experts, 64);
	assert_int_equal(out.n_group, 8);
	assert_int_equal(out.topk_group, 4);
	/* 100: 8, 7, 6 do not divide it; 5 groups of 20, ceil(4 * 5 / 8) = 3 */
	assert_int_equal(weld_moe_config_compact(&c, 100, &out, &err), 0);
	assert_int_equal(out.n_group, 5);
	assert_int_equal(out.topk_group, 3);
	/* 8: 8 groups of 1 cannot score their best 2; 4 groups of 2, topk 2
	 * gives 4 experts < 8, raised to 4 groups */
	assert_int_equal(weld_moe_config_compact(&c, 8, &out, &err), 0);
	assert_int_equal(out.n_group, 4);
	assert_int_equal(out.topk_group, 4);
	/* 12 with 8 per token: 6 groups of 2 with topk ceil(4*6/8) = 3 -> 6
	 * experts, raised to 4 groups (8 experts) */
	assert_int_equal(weld_moe_config_compact(&c, 12, &out, &err), 0);
	assert_int_equal(out.n_group, 6);
	assert_int_equal(out.topk_group, 4);
	weld_moe_config_release(&c);

	/* one expert per token, one expert left: no group holds 2 */
	{
		const char *t = "{\"num_experts_per_tok\": 1, \"n_group\": 2, \"topk_group\": 1, "
				"\"topk_method\": \"noaux_tc\"}";

		assert_int_equal(weld_moe_config_parse(&c, t, strlen(t), &err), 0);
		assert_int_equal(weld_moe_config_compact(&c, 1, &out, &err), -1);
		assert_non_null(strstr(err.msg, "1 experts per layer cannot keep group-limited routing"));
		/* without noaux_tc (DeepSeek-V2's greedy), 1 group of 1 is valid */
		c.group_top2 = false;
		assert_int_equal(weld_moe_config_compact(&c, 1, &out, &err), 0);
		assert_int_equal(out.n_group, 1);
		assert_int_equal(out.topk_group, 1);
		weld_moe_config_release(&c);
	}
	/* hostile values */
	{
		static const char *const bad[][2] = {
			{ "{\"n_group\": 2.5, \"topk_group\": 1}", "'n_group' is not an integer" },
			{ "{\"n_group\": \"8\", \"topk_group\": 1}", "'n_group' is not an integer" },
			{ "{\"n_group\": 0, \"topk_group\": 1}", "'n_group' is not an integer in [1, 65536]" },
			{ "{\"n_group\": 2, \"topk_group\": 3}", "topk_group 3 is more than the n_group 2" },
			{ "{\"n_group\": 2}", "'n_group' is set but not 'topk_group'" },
			{ "{\"first_k_dense_replace\": -1}", "'first_k_dense_replace' is not an integer" },
		};

		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			assert_int_equal(weld_moe_config_parse(&c, bad[k][0], strlen(bad[k][0]), &err), -1);
			assert_non_null(strstr(err.msg, bad[k][1]));
		}
	}
	{
		const char *t = "{\"num_experts_per_tok\": 6, \"n_group\": 4, \"topk_group\": 1}";

		assert_int_equal(weld_moe_config_parse(&c, t, strlen(t), &err), 0);
		assert_int_equal(weld_moe_config_check(&c, 6, 0, &err), -1);
		assert_string_equal(err.msg, "config.json: n_group 4 does not divide the 6 routed experts");
		assert_int_equal(weld_moe_config_check(&c, 16, 0, &err), -1);
		assert_non_null(strstr(err.msg, "cannot pick num_experts_per_tok 6 experts from topk_group 1 of n_group 4 groups of 4"));
		weld_moe_config_release(&c);
	}
}

/* What the command prints of a plan: its group range, widest FFN and
 * layout name, on a plan filled by hand. */
static void test_plan_summaries(void **state)
{
	struct weld_moe_layer layers[3] = { { .ffn = 6 }, { .ffn = 14 }, { .ffn = 10 } };
	int groups[3] = { 3, 1, 2 };
	struct weld_moe_plan p;
	int lo_g, hi_g;
	long total;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.layout.n_layers = 3;
	p.layout.layers = layers;
	p.groups = groups;
	weld_moe_plan_group_range(&p, &lo_g, &hi_g, &total);
	assert_int_equal(lo_g, 1);
	assert_int_equal(hi_g, 3);
	assert_int_equal(total, 6);
	assert_int_equal(weld_moe_plan_max_ffn(&p), 14);
	assert_string_equal(weld_moe_out_layout_name(WELD_MOE_OUT_ALIAS), "alias");
	assert_string_equal(weld_moe_out_layout_name(WELD_MOE_OUT_COMPACT), "compact");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stats_valid_normalised),
		cmocka_unit_test(test_stats_negative_value),
		cmocka_unit_test(test_stats_path_errors),
		cmocka_unit_test(test_stats_layer_errors),
		cmocka_unit_test(test_allocate_global_with_ties),
		cmocka_unit_test(test_allocate_at_least_one),
		cmocka_unit_test(test_allocate_uniform_and_errors),
		cmocka_unit_test(test_group_frequency_ties),
		cmocka_unit_test(test_group_similarity_tie_uses_usage_order),
		cmocka_unit_test(test_group_uniform_and_all),
		cmocka_unit_test(test_row_similarity),
		cmocka_unit_test(test_gram_independent_of_chunking),
		cmocka_unit_test(test_merge_weighted),
		cmocka_unit_test(test_merge_uniform_zero_and_single),
		cmocka_unit_test(test_lap_brute_force),
		cmocka_unit_test(test_lap_hand_and_errors),
		cmocka_unit_test(test_align_recovers_planted_permutation),
		cmocka_unit_test(test_layout_mixtral),
		cmocka_unit_test(test_layout_deepseek_dense_and_shared),
		cmocka_unit_test(test_layout_fused_and_stacked),
		cmocka_unit_test(test_layout_errors),
		cmocka_unit_test(test_layout_step_errors),
		cmocka_unit_test(test_plan_summaries),
		cmocka_unit_test(test_config_group_routing),
	};
	return cmocka_run_group_tests_name("moe", tests, NULL, NULL);
}
