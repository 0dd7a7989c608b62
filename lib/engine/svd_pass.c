/*
 * svd_pass.c - the whole-matrix jobs of the SVD methods (tsv_m, iso_c,
 * iso_cts; METHODS 13-15).
 *
 * A 2-D tensor of these methods (unless --svd-exclude names it) is not
 * streamed in chunks: its base is read whole as float32, each model's
 * weighted task vector D_i = w_i (x_i - base) is built in double when the
 * decomposition asks for it (svd_merge.c), and the output base + update is
 * encoded chunk by chunk into the write queue.
 *
 * Consecutive whole-matrix jobs are computed in batches of up to
 * p->matrices at once, one per thread, BLAS on one thread each: OpenBLAS's
 * bits depend on its thread count (linalg.h), not on which thread calls
 * it, so a matrix's result is the same for any -j. A batch is computed
 * when the engine asks for its first job; each job's output is written
 * when the engine asks for that job, in plan order. The plan reserves
 * p->matrices times weld_svd_job_bytes() of the largest such matrix on top
 * of the streaming buffers (plan.c): a computed output (float32) is
 * smaller than the job's working memory.
 */
#include "exec.h"
#include "team.h"
#include "linalg.h"
#include "svd_merge.h"

#include <stdlib.h>
#include <string.h>

#define READ_STEP WELD_SUPER    /* elements read per call */
#define RAW_MAX 8               /* the widest stored element (F64) */

/* A job of a batch: its output (base + update in float32) or its error. */
struct svd_result {
	float *out;
	int rc;                 /* 0; else weld_svd_merge's code, or 2: a base not finite */
	bool nonfinite;         /* a task vector held a NaN or an infinity */
	struct weld_error err;
};

/* Whole-matrix jobs [first, first + n) of the plan, computed; next: the
 * first not yet written. */
struct svd_batch {
	size_t first, n, next;
	struct svd_result r[];
};

bool weld_plan_svd_matrix(const weld_plan *p, const struct weld_job *j)
{
	if (!weld_method_svd(j->method) || j->ndim != 2)
		return false;
	return !p->svd_exclude_set || regexec(&p->svd_exclude, j->name, 0, NULL, 0) != 0;
}

uint64_t weld_svd_job_bytes(const weld_plan *p, const struct weld_job *j)
{
	uint64_t mn = j->nelem, k;

	k = weld_svd_merge_bytes(j->method, (size_t)j->shape[0], (size_t)j->shape[1], j->nsrc,
				 p->o.common_fraction);
	/* base (f32), the update (double), a read buffer and its raw bytes */
	if (k == UINT64_MAX || mn > (UINT64_MAX - k) / 16)
		return UINT64_MAX;
	return k + 12 * mn + READ_STEP * (sizeof(float) + RAW_MAX);
}

size_t weld_plan_svd_at_once(const weld_plan *p, uint64_t stream_min)
{
	size_t count = 0, want = (size_t)weld_plan_threads(p);
	uint64_t room;

	for (size_t i = 0; i < p->njobs; i++)
		count += weld_plan_svd_matrix(p, &p->jobs[i]);
	if (!count || !p->matrix_bytes)
		return count ? 1 : 0;
	want = want < count ? want : count;
	room = p->o.max_memory > stream_min ? (p->o.max_memory - stream_min) / p->matrix_bytes : 0;
	return room < 1 ? 1 : room < want ? (size_t)room : want;
}

size_t weld_plan_matrices_at_once(const weld_plan *p)
{
	return p->matrices;
}

/* What the loader of the task vectors needs. */
struct loader {
	struct exec *e;
	const struct weld_job *j;
	const float *base;
	float *buf;             /* READ_STEP floats */
	void *raw;              /* READ_STEP * RAW_MAX bytes */
	struct weld_error *err;
	bool nonfinite;
};

/* Elements [first, first + n) of model `model`'s tensor as float32 into dst;
 * 1 if one is not finite. */
static int read_f32(struct loader *l, int model, int64_t tensor, uint64_t first, size_t n,
		    float *dst)
{
	const weld_model *m = l->e->plan->models[model];

	if (weld_model_read_f32(m, (size_t)tensor, first, n, dst, l->raw, l->err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(dst[i]))
			return 1;
	return 0;
}

/* D_i = w_i * (x_i - base): the difference in float32 (DESIGN 3), times the
 * weight in double. */
static int load_delta(void *ctx, size_t i, double *d)
{
	struct loader *l = ctx;
	const struct weld_source *s = &l->j->src[i];
	uint64_t n = l->j->nelem;

	for (uint64_t first = 0; first < n; first += READ_STEP) {
		size_t len = (size_t)(n - first < READ_STEP ? n - first : READ_STEP);
		int r = read_f32(l, s->model, s->tensor, first, len, l->buf);

		if (r) {
			l->nonfinite = r > 0;
			return -1;
		}
		for (size_t k = 0; k < len; k++)
			d[first + k] = s->weight * (double)(l->buf[k] - l->base[first + k]);
	}
	return 0;
}

/* The base, whole; 1 if a value is not finite. */
static int load_base(struct loader *l, float *base)
{
	const struct weld_job *j = l->j;

	for (uint64_t first = 0; first < j->nelem; first += READ_STEP) {
		size_t len = (size_t)(j->nelem - first < READ_STEP ? j->nelem - first : READ_STEP);
		int r = read_f32(l, j->base_model, j->base_tensor, first, len, base + first);

		if (r)
			return r;
	}
	return 0;
}

/* Encode job j's output chunk by chunk into the write queue. */
static int write_output(struct exec *e, const struct weld_job *j, const float *out,
			struct weld_error *err)
{
	int64_t wi = weld_writer_find(e->writer, j->name);
	size_t oes = weld_dtype_size(j->dtype);

	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			return -1;
		weld_encode_f32(j->dtype, out + first, e->out_chunk, (size_t)n);
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi, (size_t)(n * oes), err) < 0)
			return -1;
	}
	return 0;
}

/*
 * Compute job j into res: base + update, rounded to float32 once. Runs on
 * any thread: it reads the models (thread-safe) and touches only res.
 */
static void compute_job(struct exec *e, const struct weld_job *j, struct svd_result *res)
{
	size_t m = (size_t)j->shape[0], n = (size_t)j->shape[1];
	float *base = malloc(j->nelem * sizeof(float)), *buf = malloc(READ_STEP * sizeof(float));
	double *upd = malloc(j->nelem * sizeof(double));
	void *raw = malloc(READ_STEP * RAW_MAX);
	struct loader l = { .e = e, .j = j, .base = base, .buf = buf, .raw = raw, .err = &res->err };
	struct weld_svd_merge a = {
		.method = j->method, .m = m, .n = n, .models = j->nsrc, .lambda = j->lambda,
		.common_fraction = e->opts->common_fraction, .load = load_delta, .ctx = &l,
	};

	if (!base || !buf || !upd || !raw) {
		res->rc = -1;
		goto out;
	}
	if ((res->rc = load_base(&l, base)) != 0) {
		res->rc = res->rc > 0 ? 2 : -2;
		goto out;
	}
	res->rc = weld_svd_merge(&a, upd);
	res->nonfinite = res->rc == -2 && l.nonfinite;
	if (res->rc == 0) {
		for (uint64_t i = 0; i < j->nelem; i++)
			base[i] = (float)((double)base[i] + upd[i]);
		res->out = base;
		base = NULL;
	}
out:
	free(base);
	free(buf);
	free(upd);
	free(raw);
}

/* The error of a failed job, as a run of it alone would report it. */
static int job_error(struct exec *e, const struct weld_job *j, struct svd_result *res,
		     struct weld_error *err)
{
	size_t m = (size_t)j->shape[0], n = (size_t)j->shape[1];

	if (res->rc == 2 || res->nonfinite)
		return weld_exec_nonfinite_error(e, j, err);
	if (res->rc == -1)
		return weld_fail(err, WELD_ERR_NOMEM,
				 "tensor '%s': out of memory for its %zu x %zu matrices and decompositions",
				 j->name, m, n);
	if (res->rc == 1)
		return weld_fail(err, WELD_ERR_FORMAT, "tensor '%s': the SVD did not converge", j->name);
	*err = res->err;        /* a read failed */
	return -1;
}

static void batch_free(struct exec *e)
{
	struct svd_batch *b = e->svd;

	for (size_t k = 0; b && k < b->n; k++)
		free(b->r[k].out);
	free(b);
	e->svd = NULL;
}

/* Is plan job i a whole-matrix job this execution writes? */
static bool batch_member(const struct exec *e, size_t i)
{
	const struct weld_job *j = &e->plan->jobs[i];
	int64_t wi;

	if (!weld_plan_svd_matrix(e->plan, j))
		return false;
	wi = weld_writer_find(e->writer, j->name);
	return wi >= 0 && weld_writer_holds(e->writer, (size_t)wi);
}

/* One batch on the team: job k of it, unless an earlier-started one has
 * failed (then marked not run). */
struct batch_ctx {
	struct exec *e;
	struct svd_batch *b;
	int stop;
};

static void batch_item(void *ctx, int item)
{
	struct batch_ctx *c = ctx;
	const size_t k = (size_t)item;
	int s;

	#pragma omp atomic read
	s = c->stop;
	if (s) {
		c->b->r[k].rc = -3;        /* not run */
		return;
	}
	compute_job(c->e, &c->e->plan->jobs[c->b->first + k], &c->b->r[k]);
	if (c->b->r[k].rc) {
		#pragma omp atomic write
		c->stop = 1;
	}
}

/*
 * Compute the batch that starts at plan job `first`: it and the whole-matrix
 * jobs that follow it, up to p->matrices, in parallel on the engine's team
 * (team.h). On a failure, the error of the first failed job in plan order
 * (the one a serial run meets first); no job is started after a failure.
 */
static int batch_run(struct exec *e, size_t first, struct weld_error *err)
{
	const weld_plan *p = e->plan;
	size_t cap = p->matrices ? p->matrices : 1, n = 1;
	struct batch_ctx c = { .e = e };
	struct svd_batch *b;
	int blas, r = 0;

	while (n < cap && first + n < p->njobs && batch_member(e, first + n))
		n++;
	if (!(b = calloc(1, sizeof(*b) + n * sizeof(b->r[0]))))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	*b = (struct svd_batch){ .first = first, .n = n };
	e->svd = b;
	c.b = b;
	blas = weld_linalg_threads(1);
	if (e->team)
		weld_team_run(e->team, (int)n, batch_item, &c);
	else
		for (size_t k = 0; k < n; k++)
			batch_item(&c, (int)k);
	/* a job skipped after a later one failed is run now: the error
	 * reported is the first in plan order */
	for (size_t k = 0; k < n && !r; k++) {
		if (b->r[k].rc == -3)
			compute_job(e, &p->jobs[first + k], &b->r[k]);
		if (b->r[k].rc) {
			job_error(e, &p->jobs[first + k], &b->r[k], err);
			r = -1;
		}
	}
	weld_linalg_threads(blas);
	if (r < 0)
		batch_free(e);
	return r;
}

int weld_exec_svd_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	size_t i = (size_t)(j - e->plan->jobs);
	struct svd_batch *b;
	int r;

	if (e->svd && e->svd->first + e->svd->next != i)
		batch_free(e);  /* not reached: the engine runs a batch's jobs in a row */
	if (!e->svd && batch_run(e, i, err) < 0)
		return -1;
	b = e->svd;
	r = write_output(e, j, b->r[b->next].out, err);
	free(b->r[b->next].out);
	b->r[b->next++].out = NULL;
	if (r == 0)
		weld_exec_progress(e, j, j->nelem);
	if (r < 0 || b->next == b->n)
		batch_free(e);
	return r;
}
