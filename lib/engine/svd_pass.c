/*
 * svd_pass.c - the whole-matrix jobs of the SVD methods (tsv_m, iso_c,
 * iso_cts; METHODS 13-15).
 *
 * A 2-D tensor of these methods (unless --svd-exclude names it) is not
 * streamed in chunks: its base is read whole as float32, each model's
 * weighted task vector D_i = w_i (x_i - base) is built in double when the
 * decomposition asks for it (svd_merge.c), and the output base + update is
 * encoded chunk by chunk into the write queue. One matrix at a time, with
 * weld's own threads idle and BLAS on one thread: OpenBLAS's bits depend on
 * its thread count (linalg.h), and the output must not depend on -j, so
 * the decomposition never uses more than one core. The plan reserves weld_svd_job_bytes() for the largest such
 * matrix on top of the streaming buffers (plan.c).
 */
#include "exec.h"
#include "linalg.h"
#include "svd_merge.h"

#include <stdlib.h>
#include <string.h>

#define READ_STEP WELD_SUPER    /* elements read per call */

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
	/* base (f32), the update (double), a read buffer */
	if (k == UINT64_MAX || mn > (UINT64_MAX - k) / 16)
		return UINT64_MAX;
	return k + 12 * mn + READ_STEP * sizeof(float);
}

/* What the loader of the task vectors needs. */
struct loader {
	struct exec *e;
	const struct weld_job *j;
	const float *base;
	float *buf;             /* READ_STEP floats */
	struct weld_error *err;
	bool nonfinite;
};

/* Elements [first, first + n) of model `model`'s tensor as float32 into dst;
 * 1 if one is not finite. */
static int read_f32(struct loader *l, int model, int64_t tensor, uint64_t first, size_t n,
		    float *dst)
{
	const weld_model *m = l->e->plan->models[model];

	if (weld_model_read_f32(m, (size_t)tensor, first, n, dst, l->e->slices[0].raw, l->err) < 0)
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

/* out = base + update, rounded to float32 once, into base; then encoded
 * chunk by chunk into the write queue. */
static int write_output(struct exec *e, const struct weld_job *j, float *base,
			const double *upd, struct weld_error *err)
{
	int64_t wi = weld_writer_find(e->writer, j->name);
	size_t oes = weld_dtype_size(j->dtype);

	for (uint64_t i = 0; i < j->nelem; i++)
		base[i] = (float)((double)base[i] + upd[i]);
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			return -1;
		weld_encode_f32(j->dtype, base + first, e->out_chunk, (size_t)n);
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi, (size_t)(n * oes), err) < 0)
			return -1;
	}
	return 0;
}

int weld_exec_svd_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	size_t m = (size_t)j->shape[0], n = (size_t)j->shape[1];
	float *base = malloc(j->nelem * sizeof(float)), *buf = malloc(READ_STEP * sizeof(float));
	double *upd = malloc(j->nelem * sizeof(double));
	struct loader l = { .e = e, .j = j, .base = base, .buf = buf, .err = err };
	struct weld_svd_merge a = {
		.method = j->method, .m = m, .n = n, .models = j->nsrc, .lambda = j->lambda,
		.common_fraction = e->opts->common_fraction, .load = load_delta, .ctx = &l,
	};
	int threads = 0, r = -1;

	if (!base || !buf || !upd) {
		weld_fail(err, WELD_ERR_NOMEM, "tensor '%s': out of memory for its %zu x %zu matrices",
			  j->name, m, n);
		goto out;
	}
	if ((r = load_base(&l, base)) != 0) {
		if (r > 0)
			weld_exec_nonfinite_error(e, j, err);
		r = -1;
		goto out;
	}
	threads = weld_linalg_threads(1);
	r = weld_svd_merge(&a, upd);
	weld_linalg_threads(threads);
	if (r == -2 && l.nonfinite)
		weld_exec_nonfinite_error(e, j, err);
	else if (r == -1)
		weld_fail(err, WELD_ERR_NOMEM, "tensor '%s': out of memory for its %zu x %zu decompositions",
			  j->name, m, n);
	else if (r == 1)
		weld_fail(err, WELD_ERR_FORMAT, "tensor '%s': the SVD did not converge", j->name);
	if (r != 0) {
		r = -1;
		goto out;
	}
	r = write_output(e, j, base, upd, err);
	weld_exec_progress(e, j, j->nelem);
out:
	free(base);
	free(buf);
	free(upd);
	return r;
}
