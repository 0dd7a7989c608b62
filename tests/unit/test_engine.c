/*
 * test_engine.c - the streaming engine's failures (lib/engine): an input
 * that loses its data while a merge runs stops the merge with an error
 * naming the file and leaves no output folder, whichever pass reads the
 * missing bytes. The passes run slices in any thread (della's L1 pass,
 * pcb's and sce's statistics passes) and chunk by chunk (APPLY, ties).
 * The truncation happens from the progress callback, once the first
 * tensor's first pass is done, so the failing read is the second tensor's
 * first one. Models are small folders written by the library's writer.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures.h"
#include "method.h"
#include "weld.h"

/* ---------------------------------------------------------------- helpers */

#define ROWS_A 64
#define ROWS_B 600
#define COLS 512
#define NSRC 2

/* Write dir/name holding "a.weight" [ROWS_A, COLS] and "b.weight" [ROWS_B,
 * COLS], float32, from x; returns the path (caller frees). */
static char *write_model(const char *dir, const char *name, const float *x)
{
	const struct weld_out_tensor t[] = {
		{ "a.weight", WELD_F32, 2, { ROWS_A, COLS } },
		{ "b.weight", WELD_F32, 2, { ROWS_B, COLS } },
	};
	struct weld_writer_opts wo = { 0 };
	struct weld_error err = { 0 };
	char *path = fixture_path(dir, name);
	weld_writer *w = NULL;

	assert_int_equal(weld_writer_open(&w, path, t, 2, &wo, &err), 0);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "a.weight"), x,
					   ROWS_A * COLS * sizeof(float), &err), 0);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "b.weight"),
					   x + ROWS_A * COLS, ROWS_B * COLS * sizeof(float), &err),
			 0);
	assert_int_equal(weld_writer_commit(w, &err), 0);
	weld_writer_close(w);
	return path;
}

struct models {
	char *base, *ft[NSRC];
	char *victim;           /* ft[1]'s safetensors file */
};

static void models_write(const char *dir, struct models *m)
{
	size_t len = (ROWS_A + ROWS_B) * COLS;
	float *b = malloc(len * sizeof(float)), *x = malloc(NSRC * len * sizeof(float));

	assert_non_null(b);
	assert_non_null(x);
	fixture_near_base(b, x, NSRC, len, 0.01f, 1, 7);
	m->base = write_model(dir, "base", b);
	m->ft[0] = write_model(dir, "ft1", x);
	m->ft[1] = write_model(dir, "ft2", x + len);
	m->victim = fixture_path(m->ft[1], "model.safetensors");
	assert_true(fixture_exists(m->victim));
	free(b);
	free(x);
}

static void models_free(struct models *m)
{
	free(m->base);
	for (int s = 0; s < NSRC; s++)
		free(m->ft[s]);
	free(m->victim);
}

/* The progress callback: the first call cuts the victim file 4 KiB into
 * "b.weight" (written after "a.weight"), so that every pass over b,
 * sampled or not, reads past the end. */
struct cut {
	const char *path;
	int calls;
	uint64_t done;          /* bytes read, as last reported */
};

static void cut_on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct cut *c = ctx;
	struct stat st;

	(void)total;
	c->done = done;
	if (c->calls++)
		return;
	assert_int_equal(stat(c->path, &st), 0);
	assert_int_equal(truncate(c->path, st.st_size - ROWS_B * COLS * (off_t)sizeof(float) + 4096),
			 0);
}

/* Merge the models by `method` (a command's spelling) with the victim cut
 * after the first progress: the merge fails naming the file, and leaves
 * no output. */
static void expect_cut_refused(const char *dir, const char *method, int threads,
			       void (*tune)(struct weld_merge_opts *o))
{
	struct models m;
	struct weld_merge_opts o;
	struct weld_model_params mp[NSRC];
	struct weld_error err = { 0 };
	struct cut cut = { 0 };
	char *out = fixture_path(dir, "out");
	int idx[NSRC], base;
	weld_plan *p;

	models_write(dir, &m);
	cut.path = m.victim;
	weld_merge_opts_init(&o, weld_method_find(method, WELD_IN_COMMAND));
	o.threads = threads;
	o.progress = cut_on_progress;
	o.cb_ctx = &cut;
	if (tune)
		tune(&o);
	assert_non_null(p = weld_plan_new(&o));
	assert_true((base = weld_plan_add_model(p, m.base, &err)) >= 0);
	for (int s = 0; s < NSRC; s++) {
		assert_true((idx[s] = weld_plan_add_model(p, m.ft[s], &err)) >= 0);
		mp[s] = (struct weld_model_params){ .weight = 1, .density = 0.5, .mask_lambda = 1,
						    .epsilon = 0.1 };
	}
	assert_int_equal(weld_plan_standard(p, base, idx, NSRC, mp, 1.0, 0.01, NULL, NULL, &err),
			 0);
	assert_int_equal(weld_plan_finish(p, &err), 0);
	assert_int_equal(weld_plan_execute(p, out, &err), -1);
	if (!strstr(err.msg, "unexpected end of file") || !strstr(err.msg, m.victim))
		print_error("%s -j %d: %s\n", method, threads, err.msg);
	assert_non_null(strstr(err.msg, "unexpected end of file"));
	assert_non_null(strstr(err.msg, m.victim));
	/* the pass that failed reported no progress: b's inputs were not
	 * counted as read */
	assert_true(cut.calls >= 1);
	assert_true(cut.done < (uint64_t)(NSRC + 1) * ROWS_B * COLS * sizeof(float));
	assert_false(fixture_exists(out));
	weld_plan_free(p);
	models_free(&m);
	free(out);
}

static void rescale_l1(struct weld_merge_opts *o)
{
	o->rescale = WELD_RESCALE_L1;
}

static void topk(struct weld_merge_opts *o)
{
	o->select_topk = 0.3;
}

/* ------------------------------------------------------------------ tests */

/* della --rescale l1: the L1 pass hands a tensor's slices to any thread */
static void test_cut_in_della_l1_pass(void **state)
{
	expect_cut_refused(*state, "della", 2, rescale_l1);
}

static void test_cut_in_della_l1_pass_one_thread(void **state)
{
	expect_cut_refused(*state, "della", 1, rescale_l1);
}

/* pcb: the clip bounds' pass, the window's, the histograms' */
static void test_cut_in_pcb_pass(void **state)
{
	expect_cut_refused(*state, "pcb", 2, NULL);
}

/* sce --select-topk 0.3: a sample pass, then histograms of the variances */
static void test_cut_in_sce_pass(void **state)
{
	expect_cut_refused(*state, "sce", 2, topk);
}

/* ties: chunk by chunk (its sample pass) */
static void test_cut_in_ties_pass(void **state)
{
	expect_cut_refused(*state, "ties", 2, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cut_in_della_l1_pass, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_cut_in_della_l1_pass_one_thread,
						fixture_setup_dir, fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_cut_in_pcb_pass, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_cut_in_sce_pass, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_cut_in_ties_pass, fixture_setup_dir,
						fixture_teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
