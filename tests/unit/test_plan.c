/*
 * test_plan.c - the merge planner (lib/engine/plan.c, through merge.h):
 * weld_plan_standard() matches tensors by name, copies integer tensors,
 * crops embedding rows and refuses every other disagreement between the
 * models with a message naming the tensor, both shapes or dtypes and both
 * files; weld_plan_finish() checks each job and sizes the chunks from the
 * memory budget, refusing a budget too small for the merge. The models are
 * tiny folders written by the library's own writer; no tensor data is read.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "weld.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- helpers */

#define F(n, dt, nd, ...) { n, dt, nd, { __VA_ARGS__ } }

#define EMBED "model.embed_tokens.weight"
#define UP0 "model.layers.0.mlp.up_proj.weight"
#define UP1 "model.layers.1.mlp.up_proj.weight"
#define NORM "model.norm.weight"
#define POS "model.position_ids"

/* The tensors of a tiny llama-like model: every model of these tests
 * starts from this list and changes one entry. */
static const struct weld_out_tensor llama[] = {
	F(EMBED, WELD_F32, 2, 8, 4),
	F(UP0, WELD_F32, 2, 4, 4),
	F(UP1, WELD_F32, 2, 4, 4),
	F(NORM, WELD_F32, 1, 4),
	F(POS, WELD_I64, 2, 1, 8),
};
#define NLLAMA (sizeof(llama) / sizeof(llama[0]))

static size_t tensor_bytes(const struct weld_out_tensor *t)
{
	size_t n = weld_dtype_size(t->dtype);

	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	return n;
}

/* Write a model folder dir/name holding tensors t[0..n) (all zeros);
 * returns its path (caller frees). */
static char *write_model(const char *dir, const char *name, const struct weld_out_tensor *t,
			 size_t n)
{
	struct weld_writer_opts wo = { 0 };
	struct weld_error err = { 0 };
	char *path = fixture_path(dir, name);
	weld_writer *w = NULL;

	if (weld_writer_open(&w, path, t, n, &wo, &err) != 0)
		print_error("weld_writer_open('%s'): %s\n", path, err.msg);
	assert_non_null(w);
	for (size_t k = 0; k < n; k++) {
		size_t nb = tensor_bytes(&t[k]);
		void *zeros = calloc(1, nb + 1);

		assert_non_null(zeros);
		assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, t[k].name), zeros,
						   nb, &err), 0);
		free(zeros);
	}
	if (weld_writer_commit(w, &err) != 0)
		print_error("weld_writer_commit('%s'): %s\n", path, err.msg);
	assert_int_equal(err.status, WELD_OK);
	weld_writer_close(w);
	return path;
}

/* The llama list with entry `name` replaced by *with (or dropped when with
 * is NULL), written as dir/folder. */
static char *write_variant(const char *dir, const char *folder, const char *name,
			   const struct weld_out_tensor *with)
{
	struct weld_out_tensor t[NLLAMA];
	size_t n = 0;

	for (size_t k = 0; k < NLLAMA; k++) {
		if (strcmp(llama[k].name, name) != 0)
			t[n++] = llama[k];
		else if (with)
			t[n++] = *with;
	}
	return write_model(dir, folder, t, n);
}

/* Options as the commands set them, one thread, a 1 GB budget. */
static struct weld_merge_opts opts_for(enum weld_method m)
{
	struct weld_merge_opts o = { 0 };

	o.method = m;
	o.normalize = true;
	o.k = 2;
	o.dtype = -1;
	o.threads = 1;
	o.max_memory = 1ull << 30;
	o.record_memory = UINT64_MAX;
	return o;
}

/* Warnings the planner gives, one per line. */
struct warnings {
	char text[4096];
	int count;
};

static void collect_warning(void *ctx, const char *msg)
{
	struct warnings *w = ctx;
	size_t used = strlen(w->text);

	snprintf(w->text + used, sizeof(w->text) - used, "%s\n", msg);
	w->count++;
}

/* A plan of o with the models at paths[0..n); idx[i] is model i's index. */
static weld_plan *plan_with(const struct weld_merge_opts *o, char *const *paths, size_t n,
			    int *idx)
{
	struct weld_error err = { 0 };
	weld_plan *p = weld_plan_new(o);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		idx[i] = weld_plan_add_model(p, paths[i], &err);
		if (idx[i] < 0)
			print_error("weld_plan_add_model('%s'): %s\n", paths[i], err.msg);
		assert_int_equal(idx[i], (int)i);
	}
	assert_int_equal(weld_plan_model_count(p), n);
	return p;
}

/* Per-model parameters: weight 1, density 0.5, mask lambda 0.6. */
static void default_params(struct weld_model_params *mp, size_t n)
{
	for (size_t k = 0; k < n; k++)
		mp[k] = (struct weld_model_params){ .weight = 1, .density = 0.5, .mask_lambda = 0.6 };
}

static const struct weld_job *job_named(const weld_plan *p, const char *name)
{
	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		if (strcmp(weld_plan_job(p, i)->name, name) == 0)
			return weld_plan_job(p, i);
	print_error("no job '%s'\n", name);
	fail();
	return NULL;
}

/* The name, in its model, of source s of job j. */
static const char *source_name(const weld_plan *p, const struct weld_source *s)
{
	return weld_model_tensor(weld_plan_model(p, s->model), (size_t)s->tensor)->name;
}

static void assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		print_error("'%s' lacks '%s'\n", text, part);
	assert_non_null(strstr(text, part));
}

/* weld_plan_standard with base models[0] (or none when base is false) over
 * the others must fail with status st; the message is left in err. */
static void standard_fails(const struct weld_merge_opts *o, char *const *paths, size_t n,
			   bool base, enum weld_status st, struct weld_error *err)
{
	struct weld_model_params mp[4];
	int idx[4];
	weld_plan *p = plan_with(o, paths, n, idx);
	size_t first = base ? 1 : 0;

	default_params(mp, n);
	assert_int_equal(weld_plan_standard(p, base ? idx[0] : -1, idx + first, n - first, mp, 1, 0,
					    NULL, NULL, err), -1);
	assert_int_equal(err->status, st);
	weld_plan_free(p);
}

static void free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
}

/* ---------------------------------------------------------------- standard jobs */

/* Each output tensor of the base takes the same name from every model,
 * whatever index the name has there ('a' holds an extra tensor that sorts
 * first, so its indices differ from the base's). */
static void test_standard_jobs_match_names(void **state)
{
	struct weld_out_tensor extra[NLLAMA + 1];
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct warnings warn = { .count = 0 };
	struct weld_model_params mp[2] = {
		{ .weight = 0.3, .density = 0.4, .mask_lambda = 0.6 },
		{ .weight = 0.7, .density = 0.9, .mask_lambda = 0.5 },
	};
	struct weld_error err = { 0 };
	char *paths[3];
	int idx[3];
	weld_plan *p;

	memcpy(extra, llama, sizeof(llama));
	extra[NLLAMA] = (struct weld_out_tensor)F("model.aaa.extra", WELD_F32, 1, 2);
	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", extra, NLLAMA + 1);
	paths[2] = write_model(*state, "b", llama, NLLAMA);
	o.warn = collect_warning;
	o.cb_ctx = &warn;
	p = plan_with(&o, paths, 3, idx);
	assert_int_equal(weld_model_find(weld_plan_model(p, 1), UP0),
			 weld_model_find(weld_plan_model(p, 0), UP0) + 1);

	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 2, mp, 0.8, 0, NULL, NULL, &err), 0);
	assert_int_equal(weld_plan_job_count(p), NLLAMA);
	for (size_t i = 0; i < weld_plan_job_count(p); i++) {
		const struct weld_job *j = weld_plan_job(p, i);
		const struct weld_tensor_info *bt = weld_model_tensor(weld_plan_model(p, 0), i);

		assert_string_equal(j->name, bt->name);
		assert_int_equal(j->ndim, bt->ndim);
		assert_memory_equal(j->shape, bt->shape, sizeof(j->shape));
		assert_int_equal(j->nelem, bt->nelem);
		if (j->method == WELD_METHOD_COPY)
			continue;
		assert_int_equal(j->method, WELD_METHOD_TASK_ARITHMETIC);
		assert_int_equal(j->base_model, idx[0]);
		assert_int_equal(j->base_tensor, (int64_t)i);
		assert_true(j->lambda == 0.8);
		assert_int_equal(j->nsrc, 2);
		for (size_t k = 0; k < 2; k++) {
			assert_int_equal(j->src[k].model, idx[k + 1]);
			assert_string_equal(source_name(p, &j->src[k]), j->name);
			assert_int_equal(j->src[k].rng_index, (int)k + 1);
			assert_true(j->src[k].weight == mp[k].weight);
			assert_true(j->src[k].density == mp[k].density);
			assert_true(j->src[k].mask_lambda == mp[k].mask_lambda);
		}
	}
	/* the tensor only 'a' has is left out, with a warning naming it */
	assert_int_equal(warn.count, 1);
	assert_contains(warn.text, paths[1]);
	assert_contains(warn.text, "model.aaa.extra");
	weld_plan_free(p);
	free_paths(paths, 3);
}

/* Integer tensors are not merged: copied from the base, else from the
 * first model, in their own dtype. */
static void test_integer_tensors_copied(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TIES);
	struct weld_model_params mp[2];
	struct weld_error err = { 0 };
	const struct weld_job *j;
	char *paths[3];
	int idx[3];
	weld_plan *p;

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	paths[2] = write_model(*state, "b", llama, NLLAMA);
	default_params(mp, 2);

	p = plan_with(&o, paths, 3, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 2, mp, 1, 0, NULL, NULL, &err), 0);
	j = job_named(p, POS);
	assert_int_equal(j->method, WELD_METHOD_COPY);
	assert_int_equal(j->dtype, WELD_I64);
	assert_true(j->nsrc >= 1);
	assert_int_equal(j->src[0].model, idx[0]);
	assert_string_equal(source_name(p, &j->src[0]), POS);
	assert_int_equal(job_named(p, UP0)->method, WELD_METHOD_TIES);
	weld_plan_free(p);

	/* without a base: from the first model */
	o = opts_for(WELD_METHOD_AVERAGE);
	p = plan_with(&o, paths + 1, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, mp, 1, 0, NULL, NULL, &err), 0);
	j = job_named(p, POS);
	assert_int_equal(j->method, WELD_METHOD_COPY);
	assert_int_equal(j->src[0].model, idx[0]);
	assert_int_equal(job_named(p, UP0)->method, WELD_METHOD_AVERAGE);
	weld_plan_free(p);
	free_paths(paths, 3);
}

/* --dtype auto keeps each floating tensor's dtype; a forced dtype applies
 * to floating tensors only. */
static void test_output_dtype_auto_and_forced(void **state)
{
	static const struct weld_out_tensor bf16_up0 = F(UP0, WELD_BF16, 2, 4, 4);
	struct weld_merge_opts o = opts_for(WELD_METHOD_AVERAGE);
	struct weld_model_params mp[2];
	struct weld_error err = { 0 };
	char *paths[2];
	int idx[2];
	weld_plan *p;

	paths[0] = write_variant(*state, "a", UP0, &bf16_up0);
	paths[1] = write_model(*state, "b", llama, NLLAMA);
	default_params(mp, 2);

	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, mp, 1, 0, NULL, NULL, &err), 0);
	assert_int_equal(job_named(p, UP0)->dtype, WELD_BF16);
	assert_int_equal(job_named(p, UP1)->dtype, WELD_F32);
	assert_int_equal(job_named(p, POS)->dtype, WELD_I64);
	weld_plan_free(p);

	o.dtype = WELD_F16;
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, mp, 1, 0, NULL, NULL, &err), 0);
	assert_int_equal(job_named(p, UP0)->dtype, WELD_F16);
	assert_int_equal(job_named(p, NORM)->dtype, WELD_F16);
	assert_int_equal(job_named(p, POS)->dtype, WELD_I64);
	weld_plan_free(p);
	free_paths(paths, 2);
}

/* The per-tensor callback sees every (tensor, model) pair with the model's
 * defaults filled in, and what it sets is what the job holds. */
static int weight_by_layer(void *ctx, const char *tensor, int slot, struct weld_source *src,
			   struct weld_job *job, struct weld_error *err)
{
	int *calls = ctx;

	(void)err;
	assert_true(src->weight == 1);
	(*calls)++;
	src->weight = strstr(tensor, "layers.1.") ? 10 + slot : slot;
	job->lambda = 0.25;
	return 0;
}

static void test_param_fn_sets_values_per_tensor(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct weld_model_params mp[2];
	struct weld_error err = { 0 };
	const struct weld_job *j;
	char *paths[3];
	int idx[3], calls = 0;
	weld_plan *p;

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	paths[2] = write_model(*state, "b", llama, NLLAMA);
	default_params(mp, 2);
	p = plan_with(&o, paths, 3, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 2, mp, 1, 0, weight_by_layer, &calls,
					    &err), 0);
	assert_int_equal(calls, 2 * 4);   /* 4 floating tensors, 2 models */
	j = job_named(p, UP1);
	assert_true(j->src[0].weight == 10 && j->src[1].weight == 11);
	assert_true(j->lambda == 0.25);
	j = job_named(p, UP0);
	assert_true(j->src[0].weight == 0 && j->src[1].weight == 1);
	weld_plan_free(p);
	free_paths(paths, 3);
}

/* ---------------------------------------------------------------- disagreements between models */

static void test_shape_mismatch_refused(void **state)
{
	static const struct weld_out_tensor wide = F(UP0, WELD_F32, 2, 4, 5);
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct weld_error err = { 0 };
	char *paths[3], want[1024];

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	paths[2] = write_variant(*state, "b", UP0, &wide);
	standard_fails(&o, paths, 3, true, WELD_ERR_MISMATCH, &err);
	assert_contains(err.msg, "tensor '" UP0 "'");
	snprintf(want, sizeof(want), "[4, 5] in '%s'", paths[2]);
	assert_contains(err.msg, want);
	snprintf(want, sizeof(want), "[4, 4] in '%s'", paths[0]);
	assert_contains(err.msg, want);
	free_paths(paths, 3);
}

static void test_dtype_mismatch_refused(void **state)
{
	static const struct weld_out_tensor ints = F(UP0, WELD_I32, 2, 4, 4);
	struct weld_merge_opts o = opts_for(WELD_METHOD_AVERAGE);
	struct weld_error err = { 0 };
	char *paths[2], want[1024];

	paths[0] = write_model(*state, "a", llama, NLLAMA);
	paths[1] = write_variant(*state, "b", UP0, &ints);
	standard_fails(&o, paths, 2, false, WELD_ERR_MISMATCH, &err);
	assert_contains(err.msg, "tensor '" UP0 "'");
	snprintf(want, sizeof(want), "I32 in '%s'", paths[1]);
	assert_contains(err.msg, want);
	snprintf(want, sizeof(want), "F32 in '%s'", paths[0]);
	assert_contains(err.msg, want);
	free_paths(paths, 2);
}

static void test_missing_tensor_refused(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct weld_error err = { 0 };
	char *paths[3], want[1024];

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	paths[2] = write_variant(*state, "b", UP1, NULL);
	standard_fails(&o, paths, 3, true, WELD_ERR_MISMATCH, &err);
	snprintf(want, sizeof(want), "tensor '%s': missing from '%s'", UP1, paths[2]);
	assert_contains(err.msg, want);
	free_paths(paths, 3);
}

/* With allow_missing, a tensor is merged over the models that have it;
 * when only the base has it, it is copied from the base. */
static void test_missing_tensor_allowed(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct weld_model_params mp[2];
	struct weld_error err = { 0 };
	const struct weld_job *j;
	char *paths[3];
	int idx[3];
	weld_plan *p;

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	paths[2] = write_variant(*state, "b", UP1, NULL);
	o.allow_missing = true;
	default_params(mp, 2);

	p = plan_with(&o, paths, 3, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 2, mp, 1, 0, NULL, NULL, &err), 0);
	j = job_named(p, UP1);
	assert_int_equal(j->method, WELD_METHOD_TASK_ARITHMETIC);
	assert_int_equal(j->nsrc, 1);
	assert_int_equal(j->src[0].model, idx[1]);
	assert_int_equal(job_named(p, UP0)->nsrc, 2);
	assert_int_equal(weld_plan_finish(p, &err), 0);
	weld_plan_free(p);

	/* only the base has it: a copy of the base's tensor */
	p = plan_with(&o, (char *[]){ paths[0], paths[2] }, 2, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 1, mp, 1, 0, NULL, NULL, &err), 0);
	j = job_named(p, UP1);
	assert_int_equal(j->method, WELD_METHOD_COPY);
	assert_int_equal(j->nsrc, 1);
	assert_int_equal(j->src[0].model, idx[0]);
	weld_plan_free(p);
	free_paths(paths, 3);
}

/* An embedding with more rows than the base (added tokens) gives its first
 * rows, with a warning; the output keeps the base's shape. */
static void test_embedding_rows_cropped(void **state)
{
	static const struct weld_out_tensor big = F(EMBED, WELD_F32, 2, 10, 4);
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct warnings warn = { .count = 0 };
	struct weld_model_params mp[1];
	struct weld_error err = { 0 };
	const struct weld_job *j;
	char *paths[2], want[1024];
	int idx[2];
	weld_plan *p;

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_variant(*state, "big", EMBED, &big);
	o.warn = collect_warning;
	o.cb_ctx = &warn;
	default_params(mp, 1);
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 1, mp, 1, 0, NULL, NULL, &err), 0);
	j = job_named(p, EMBED);
	assert_int_equal(j->ndim, 2);
	assert_int_equal(j->shape[0], 8);
	assert_int_equal(j->shape[1], 4);
	assert_int_equal(j->nelem, 32);
	assert_int_equal(j->nsrc, 1);
	assert_int_equal(weld_model_tensor(weld_plan_model(p, idx[1]), (size_t)j->src[0].tensor)->shape[0],
			 10);
	assert_int_equal(warn.count, 1);
	snprintf(want, sizeof(want), "tensor '%s': '%s' has 10 rows", EMBED, paths[1]);
	assert_contains(warn.text, want);
	assert_contains(warn.text, "using the first 8");
	assert_int_equal(weld_plan_finish(p, &err), 0);
	weld_plan_free(p);
	free_paths(paths, 2);
}

/* weld_shape_fit: 0 for the same shape, 1 for an embedding-like name with
 * more rows and the same other dimensions, -1 for anything else. */
static void test_shape_fit(void **state)
{
	struct weld_tensor_info ref = { .ndim = 2, .shape = { 8, 4 } };
	struct weld_tensor_info t = ref;
	char text[64];

	(void)state;
	assert_int_equal(weld_shape_fit(EMBED, &t, &ref), 0);
	assert_int_equal(weld_shape_fit(UP0, &t, &ref), 0);
	t.shape[0] = 10;
	assert_int_equal(weld_shape_fit(EMBED, &t, &ref), 1);
	assert_int_equal(weld_shape_fit("lm_head.weight", &t, &ref), 1);
	assert_int_equal(weld_shape_fit(UP0, &t, &ref), -1);    /* not an embedding */
	t.shape[0] = 6;
	assert_int_equal(weld_shape_fit(EMBED, &t, &ref), -1);  /* fewer rows */
	t.shape[0] = 10;
	t.shape[1] = 5;
	assert_int_equal(weld_shape_fit(EMBED, &t, &ref), -1);  /* other columns */
	t = (struct weld_tensor_info){ .ndim = 1, .shape = { 32 } };
	assert_int_equal(weld_shape_fit(EMBED, &t, &ref), -1);  /* other rank */
	weld_shape_text(&ref, text, sizeof(text));
	assert_string_equal(text, "[8, 4]");
	t = (struct weld_tensor_info){ .ndim = 0 };
	weld_shape_text(&t, text, sizeof(text));
	assert_string_equal(text, "[]");
}

/* ---------------------------------------------------------------- finishing: checks and memory */

/* A finished plan of task-arithmetic over base + one model holding one
 * 512 x 1024 F32 tensor (2 MB), under the budget and thread count given;
 * NULL (err filled) when weld_plan_finish refuses. */
static weld_plan *big_plan(void **state, enum weld_method m, uint64_t budget, int threads,
			   struct weld_error *err)
{
	static const struct weld_out_tensor big[] = { F("w", WELD_F32, 2, 512, 1024) };
	struct weld_merge_opts o = opts_for(m);
	struct weld_model_params mp[1];
	char *paths[2];
	int idx[2];
	weld_plan *p;

	paths[0] = fixture_path(*state, "big-base");
	paths[1] = fixture_path(*state, "big-a");
	if (!fixture_exists(paths[0])) {
		free_paths(paths, 2);
		paths[0] = write_model(*state, "big-base", big, 1);
		paths[1] = write_model(*state, "big-a", big, 1);
	}
	o.max_memory = budget;
	o.threads = threads;
	default_params(mp, 1);
	p = plan_with(&o, paths, 2, idx);
	free_paths(paths, 2);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 1, mp, 1, 0.01, NULL, NULL, err), 0);
	if (weld_plan_finish(p, err) < 0) {
		weld_plan_free(p);
		return NULL;
	}
	return p;
}

/* Less memory, smaller chunks: the chunk follows the budget until the
 * whole tensor fits in one. */
static void test_chunk_shrinks_with_budget(void **state)
{
	static const uint64_t budgets[] = { 8u << 20, 16u << 20, 64u << 20, 1u << 30 };
	uint64_t chunk[4], memory[4];
	struct weld_error err = { 0 };

	for (size_t i = 0; i < 4; i++) {
		weld_plan *p = big_plan(state, WELD_METHOD_TASK_ARITHMETIC, budgets[i], 1, &err);

		if (!p)
			print_error("budget %llu: %s\n", (unsigned long long)budgets[i], err.msg);
		assert_non_null(p);
		chunk[i] = weld_plan_chunk_elems(p);
		memory[i] = weld_plan_memory(p);
		weld_plan_free(p);
	}
	assert_true(chunk[0] > 0);
	assert_true(chunk[0] < chunk[1]);
	assert_true(chunk[1] < chunk[2]);
	assert_int_equal(chunk[2], 512 * 1024);   /* the whole tensor */
	assert_int_equal(chunk[3], chunk[2]);
	assert_true(memory[0] < memory[1]);
	assert_true(memory[1] < memory[2]);
}

/* The memory the execution will use stays under the budget, for every
 * method, thread count and budget the plan accepts. */
static void test_memory_stays_under_budget(void **state)
{
	static const enum weld_method methods[] = {
		WELD_METHOD_TASK_ARITHMETIC, WELD_METHOD_TIES, WELD_METHOD_BREADCRUMBS,
		WELD_METHOD_DARE, WELD_METHOD_PCB,
	};
	static const uint64_t budgets[] = { 12u << 20, 16u << 20, 64u << 20, 1u << 30 };
	static const int threads[] = { 1, 2, 8 };
	int accepted = 0;

	for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
		for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++)
			for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
				struct weld_error err = { 0 };
				weld_plan *p = big_plan(state, methods[m], budgets[b], threads[t], &err);

				if (!p) {
					/* refused only for being too small */
					assert_int_equal(err.status, WELD_ERR_ARG);
					assert_contains(err.msg, "is too small");
					assert_true(budgets[b] < (64u << 20));
					continue;
				}
				accepted++;
				if (weld_plan_memory(p) > budgets[b])
					print_error("%s, -j %d, budget %llu: memory %llu\n",
						    weld_method_name(methods[m]), threads[t],
						    (unsigned long long)budgets[b],
						    (unsigned long long)weld_plan_memory(p));
				assert_true(weld_plan_memory(p) <= budgets[b]);
				assert_true(weld_plan_chunk_elems(p) > 0);
				weld_plan_free(p);
			}
	assert_true(accepted >= 24);
}

/* pcb holds a tensor's inputs (base and model: 4 MB) between its passes
 * when they fit what the plan leaves: one read, counted in the memory;
 * under a small budget the passes read the files again. */
static void test_pcb_inputs_held(void **state)
{
	struct weld_error err = { 0 };
	weld_plan *big = big_plan(state, WELD_METHOD_PCB, 1u << 30, 1, &err);
	weld_plan *small = big_plan(state, WELD_METHOD_PCB, 12u << 20, 1, &err);
	int lo, hi;

	assert_non_null(big);
	assert_non_null(small);
	weld_plan_job_passes(big, 0, &lo, &hi);
	assert_true(lo == 1 && hi == 1);
	weld_plan_job_passes(small, 0, &lo, &hi);
	assert_true(lo >= 3 && hi >= lo);
	assert_true(weld_plan_memory(big) >= weld_plan_memory(small) + (4u << 20));
	assert_true(weld_plan_memory(small) <= (12u << 20));
	weld_plan_free(big);
	weld_plan_free(small);
}

/* A budget below what the merge needs is refused, naming the budget and
 * the least that works; that least is then accepted. */
static void test_budget_too_small_refused(void **state)
{
	struct weld_error err = { 0 };
	const char *at;
	uint64_t least;
	weld_plan *p;

	assert_null(big_plan(state, WELD_METHOD_TASK_ARITHMETIC, 1u << 20, 1, &err));
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_contains(err.msg, "--max-memory 1048576 is too small");
	at = strstr(err.msg, "needs at least ");
	assert_non_null(at);
	least = strtoull(at + strlen("needs at least "), NULL, 10);
	assert_true(least > (1u << 20));

	memset(&err, 0, sizeof(err));
	assert_null(big_plan(state, WELD_METHOD_TASK_ARITHMETIC, least - 1, 1, &err));
	assert_contains(err.msg, "is too small");
	p = big_plan(state, WELD_METHOD_TASK_ARITHMETIC, least, 1, &err);
	assert_non_null(p);
	assert_true(weld_plan_memory(p) <= least);
	weld_plan_free(p);
}

static void test_empty_plan_refused(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_AVERAGE);
	struct weld_error err = { 0 };
	weld_plan *p = weld_plan_new(&o);

	(void)state;
	assert_non_null(p);
	assert_int_equal(weld_plan_finish(p, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_contains(err.msg, "nothing to merge");
	weld_plan_free(p);
}

/* weld_plan_add_job keeps its own copy of the name and the sources, and
 * works out nelem from the shape. */
static void test_add_job_copies_name_and_sources(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_AVERAGE);
	struct weld_source src[2] = {
		{ .model = 0, .tensor = 0, .weight = 0.25 },
		{ .model = 1, .tensor = 0, .weight = 0.75 },
	};
	struct weld_job j = { .dtype = WELD_F32, .ndim = 2, .shape = { 3, 5 },
			      .method = WELD_METHOD_AVERAGE, .base_model = -1, .base_tensor = -1,
			      .nsrc = 2, .src = src, .lambda = 1, .mask_model = -1, .mask_tensor = -1 };
	struct weld_error err = { 0 };
	char name[] = "renamed.weight";
	const struct weld_job *got;
	weld_plan *p = weld_plan_new(&o);

	(void)state;
	assert_non_null(p);
	j.name = name;
	assert_int_equal(weld_plan_add_job(p, &j, &err), 0);
	name[0] = 'X';
	src[0].weight = 9;
	src[1].model = 7;
	assert_int_equal(weld_plan_job_count(p), 1);
	got = weld_plan_job(p, 0);
	assert_string_equal(got->name, "renamed.weight");
	assert_int_equal(got->nelem, 15);
	assert_int_equal(got->nsrc, 2);
	assert_true(got->src[0].weight == 0.25);
	assert_int_equal(got->src[1].model, 1);
	weld_plan_free(p);
}

/* A job of a method on task vectors without a base model. */
static void test_job_without_base_refused(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TASK_ARITHMETIC);
	struct weld_error err = { 0 };
	char *path = write_model(*state, "a", llama, NLLAMA);
	int64_t ti;
	int m;
	weld_plan *p = weld_plan_new(&o);
	struct weld_source src = { .weight = 1, .density = 1 };
	struct weld_job j = { .name = UP0, .dtype = WELD_F32, .ndim = 2, .shape = { 4, 4 },
			      .method = WELD_METHOD_TASK_ARITHMETIC, .base_model = -1,
			      .base_tensor = -1, .nsrc = 1, .src = &src, .lambda = 1,
			      .mask_model = -1, .mask_tensor = -1 };

	assert_non_null(p);
	m = weld_plan_add_model(p, path, &err);
	assert_int_equal(m, 0);
	ti = weld_model_find(weld_plan_model(p, m), UP0);
	assert_true(ti >= 0);
	src.model = m;
	src.tensor = ti;
	assert_int_equal(weld_plan_add_job(p, &j, &err), 0);
	assert_int_equal(weld_plan_finish(p, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_string_equal(err.msg, "tensor '" UP0 "': task-arithmetic needs a base model");
	weld_plan_free(p);
	free(path);
}

/* A density outside (0, 1] for a method that trims. */
static void test_density_out_of_range_refused(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TIES);
	struct weld_model_params mp[1] = { { .weight = 1, .density = 0, .mask_lambda = 0.6 } };
	struct weld_error err = { 0 };
	char *paths[2], want[1024];
	int idx[2];
	weld_plan *p;

	paths[0] = write_model(*state, "base", llama, NLLAMA);
	paths[1] = write_model(*state, "a", llama, NLLAMA);
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, idx[0], idx + 1, 1, mp, 1, 0, NULL, NULL, &err), 0);
	assert_int_equal(weld_plan_finish(p, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	snprintf(want, sizeof(want), "density 0 of '%s' is outside (0, 1]", paths[1]);
	assert_contains(err.msg, want);
	weld_plan_free(p);

	/* average takes no density: the same value is not checked */
	o = opts_for(WELD_METHOD_AVERAGE);
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, (struct weld_model_params[]){ mp[0], mp[0] },
					    1, 0, NULL, NULL, &err), 0);
	assert_int_equal(weld_plan_finish(p, &err), 0);
	weld_plan_free(p);
	free_paths(paths, 2);
}

/* A normalised average whose weights sum to zero. */
static void test_weights_summing_to_zero_refused(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_AVERAGE);
	struct weld_model_params mp[2] = {
		{ .weight = 1, .density = 1 }, { .weight = -1, .density = 1 },
	};
	struct weld_error err = { 0 };
	char *paths[2];
	int idx[2];
	weld_plan *p;

	paths[0] = write_model(*state, "a", llama, NLLAMA);
	paths[1] = write_model(*state, "b", llama, NLLAMA);
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, mp, 1, 0, NULL, NULL, &err), 0);
	assert_int_equal(weld_plan_finish(p, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_contains(err.msg, "the weights sum to 0");
	weld_plan_free(p);

	/* a plain sum (no normalisation) is fine */
	o.normalize = false;
	p = plan_with(&o, paths, 2, idx);
	assert_int_equal(weld_plan_standard(p, -1, idx, 2, mp, 1, 0, NULL, NULL, &err), 0);
	assert_int_equal(weld_plan_finish(p, &err), 0);
	weld_plan_free(p);
	free_paths(paths, 2);
}

/* ---------------------------------------------------------------- methods */

/* Top-k selections per source (DESIGN 4.1): ties trims once, breadcrumbs
 * cuts at both ends, dare only with --combine ties --trim, consensus only
 * --from ties; the others select nothing. */
static void test_selections_per_method(void **state)
{
	struct weld_merge_opts o = opts_for(WELD_METHOD_TIES);
	struct weld_job j = { .name = "w" };

	(void)state;
	j.method = WELD_METHOD_TIES;
	assert_int_equal(weld_job_selections(&o, &j), 1);
	j.method = WELD_METHOD_BREADCRUMBS;
	assert_int_equal(weld_job_selections(&o, &j), 2);
	o.combine = WELD_COMBINE_TIES;
	assert_int_equal(weld_job_selections(&o, &j), 2);

	j.method = WELD_METHOD_DARE;
	o.combine = WELD_COMBINE_SUM;
	o.trim = 0.5;
	assert_int_equal(weld_job_selections(&o, &j), 0);
	o.combine = WELD_COMBINE_TIES;
	o.trim = 0;
	assert_int_equal(weld_job_selections(&o, &j), 0);
	o.trim = 0.5;
	assert_int_equal(weld_job_selections(&o, &j), 1);

	j.method = WELD_METHOD_CONSENSUS;
	o.from = WELD_FROM_TA;
	assert_int_equal(weld_job_selections(&o, &j), 0);
	o.from = WELD_FROM_TIES;
	assert_int_equal(weld_job_selections(&o, &j), 1);

	for (enum weld_method m = WELD_METHOD_COPY; m <= WELD_METHOD_APPLY_MASK; m++) {
		if (m == WELD_METHOD_TIES || m == WELD_METHOD_BREADCRUMBS || m == WELD_METHOD_DARE ||
		    m == WELD_METHOD_CONSENSUS)
			continue;
		j.method = m;
		assert_int_equal(weld_job_selections(&o, &j), 0);
	}
}

static void test_method_names(void **state)
{
	static const char *const names[] = {
		[WELD_METHOD_COPY] = "copy",
		[WELD_METHOD_AVERAGE] = "average",
		[WELD_METHOD_TASK_ARITHMETIC] = "task-arithmetic",
		[WELD_METHOD_TIES] = "ties",
		[WELD_METHOD_DARE] = "dare",
		[WELD_METHOD_BREADCRUMBS] = "breadcrumbs",
		[WELD_METHOD_CONSENSUS] = "consensus",
		[WELD_METHOD_SLERP] = "slerp",
		[WELD_METHOD_APPLY_MASK] = "apply-mask",
	};

	(void)state;
	for (size_t m = 0; m < sizeof(names) / sizeof(names[0]); m++)
		assert_string_equal(weld_method_name((enum weld_method)m), names[m]);
	assert_string_equal(weld_method_name((enum weld_method)99), "?");
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_standard_jobs_match_names),
		D(test_integer_tensors_copied),
		D(test_output_dtype_auto_and_forced),
		D(test_param_fn_sets_values_per_tensor),
		D(test_shape_mismatch_refused),
		D(test_dtype_mismatch_refused),
		D(test_missing_tensor_refused),
		D(test_missing_tensor_allowed),
		D(test_embedding_rows_cropped),
		cmocka_unit_test(test_shape_fit),
		D(test_chunk_shrinks_with_budget),
		D(test_memory_stays_under_budget),
		D(test_pcb_inputs_held),
		D(test_budget_too_small_refused),
		cmocka_unit_test(test_empty_plan_refused),
		cmocka_unit_test(test_add_job_copies_name_and_sources),
		D(test_job_without_base_refused),
		D(test_density_out_of_range_refused),
		D(test_weights_summing_to_zero_refused),
		cmocka_unit_test(test_selections_per_method),
		cmocka_unit_test(test_method_names),
	};
#undef D
	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
