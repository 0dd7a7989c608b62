/*
 * engine.c - execute a finished plan: the driver of the streaming engine.
 *
 * weld_plan_execute() sets up the execution state (exec.h) and the
 * writers, then runs every job in plan order: a copied tensor is copied;
 * a merged one gets the statistics of its unit (select_pass.c; with
 * --scope model those of all jobs come first, with --scope row they are
 * taken inside APPLY), then APPLY chunk by chunk (tiles.c), each output
 * chunk handed to the write queue. Progress counts the bytes read by
 * every pass. With --part, the jobs whose tensor lies in another part's
 * shards are skipped, but --scope model still takes its statistics over
 * every job: they are the same in every part.
 */
#include "exec.h"
#include "hist_pass.h"
#include "pcb_hold.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void weld_exec_set_keys(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->rng_key[s] = weld_rng_key(j->name, j->src[s].rng_index, e->opts->seed);
}

/* Bytes of input that n elements of job j read (every source and the base). */
static uint64_t job_bytes(const struct exec *e, const struct weld_job *j, uint64_t n)
{
	uint64_t b = 0;

	for (size_t s = 0; s < j->nsrc; s++)
		b += weld_tensor_stored_bytes(src_info(e, &j->src[s]), n);
	if (j->base_model >= 0)
		b += weld_tensor_stored_bytes(weld_model_tensor(e->plan->models[j->base_model],
								(size_t)j->base_tensor), n);
	return b;
}

void weld_exec_progress(struct exec *e, const struct weld_job *j, uint64_t n)
{
	if (weld_pcb_hold_serves(e, j))
		return;         /* no read: the inputs are in memory */
	e->bytes_done += job_bytes(e, j, n);
	if (e->bytes_done > e->bytes_total)
		e->bytes_total = e->bytes_done;
	if (e->opts->progress)
		e->opts->progress(e->opts->cb_ctx, e->bytes_done, e->bytes_total);
}

/* Is job j written by this execution (not in another part's shards)? */
static bool job_held(const struct exec *e, const struct weld_job *j)
{
	int64_t wi = weld_writer_find(e->writer, j->name);

	return wi >= 0 && weld_writer_holds(e->writer, (size_t)wi);
}

/* Bytes all passes will read: the statistics passes count too. */
static uint64_t total_bytes(const struct exec *e)
{
	uint64_t t = 0;

	for (size_t i = 0; i < e->plan->njobs; i++) {
		const struct weld_job *j = &e->plan->jobs[i];
		uint64_t passes = 1;

		if (!job_held(e, j)) {
			/* --scope model: its statistics are still taken */
			if (nsel(e, j) && e->opts->scope == WELD_SCOPE_MODEL)
				t += job_bytes(e, j, j->nelem) + job_bytes(e, j, j->nelem) / SAMPLE_STRIDE;
			continue;
		}

		if (j->method == WELD_METHOD_SLERP)
			passes++;
		if (weld_job_stats(e->opts, j))
			passes++;
		if (needs_l1(e, j) && e->opts->scope != WELD_SCOPE_ROW)
			passes++;
		if (weld_method_rank_drop(j->method) && e->opts->rescale == WELD_RESCALE_L1)
			passes++;
		if (weld_method_pcb(j->method) && e->opts->scope != WELD_SCOPE_ROW) {
			int lo, hi;

			weld_plan_job_passes(e->plan, i, &lo, &hi);
			passes += (uint64_t)lo - 1;
		}
		if (weld_method_sce(j->method))
			passes += 2;    /* most often: 3 in all (sce_pass.c) */
		if (weld_method_arcee(j->method) && j->ndim > 0) {
			passes += 1;    /* most often: 2 in all and a sample (arcee_pass.c) */
			t += job_bytes(e, j, j->nelem) / SAMPLE_STRIDE;
		}
		t += passes * job_bytes(e, j, j->nelem);
		/* top-k: a 1/16 sample and one pass (more only if the guess misses) */
		if (nsel(e, j) && e->opts->scope != WELD_SCOPE_ROW)
			t += job_bytes(e, j, j->nelem) + job_bytes(e, j, j->nelem) / SAMPLE_STRIDE;
	}
	return t;
}

/* APPLY over every chunk of job j, once its unit's statistics are known:
 * each chunk's counts of equal elements (recorded, or a COUNT pass), the
 * output into a buffer of the write queue, the consensus masks. */
static int apply_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	bool row = row_scope(e, j);
	enum drop_mode mode = row && needs_l1(e, j) ? DROP_NONE : DROP_RESCALE;
	bool count = !row && weld_exec_sel_active(e, j) && weld_exec_sel_partial(e, j);
	int64_t wi = weld_writer_find(e->writer, j->name);
	uint64_t step = e->chunk_elems;

	if (row) {
		uint64_t g = 8 * row_len(j);

		step = e->chunk_elems / g * g;
	}
	weld_exec_set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		if (j->method == WELD_METHOD_APPLY_MASK &&
		    weld_model_read(e->plan->models[j->mask_model], (size_t)j->mask_tensor,
				    first / 8, (size_t)((n + 7) / 8), e->mask_bits, err) < 0)
			return -1;
		if (e->mask_writer)
			memset(e->mask_bits, 0, j->nsrc * e->mask_stride);
		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			return -1;
		if (count && e->rec.valid) {
			weld_exec_rec_apply_counts(e);
		} else if (count) {
			if (weld_exec_run_chunk(e, j, first, n, P_COUNT, mode, err) < 0)
				return -1;
		} else {
			for (int t = 0; t < e->n_slices; t++)
				memset(e->slices[t].n_equal, 0, sizeof(e->slices[t].n_equal));
		}
		if (weld_method_sce(j->method) && weld_exec_sce_chunk(e, j, first, n, err) < 0)
			return -1;
		if (weld_exec_run_chunk(e, j, first, n, P_APPLY, mode, err) < 0)
			return -1;
		if (e->mask_writer && j->method == WELD_METHOD_CONSENSUS &&
		    weld_exec_write_masks(e, j, n, err) < 0)
			return -1;
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi,
				     (size_t)(n * weld_dtype_size(j->dtype)), err) < 0)
			return -1;
		weld_exec_progress(e, j, n);
	}
	return 0;
}

/* One job of the plan: copy it, or its statistics and then APPLY. */
static int run_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	if (j->method == WELD_METHOD_COPY)
		return weld_exec_copy_job(e, j, err);
	if (weld_plan_svd_matrix(e->plan, j))
		return weld_exec_svd_job(e, j, err);
	if (j->method == WELD_METHOD_SLERP) {
		double *tot = slerp_totals(e);

		tot[0] = tot[1] = tot[2] = 0;
		if (weld_exec_over_chunks(e, j, P_SLERP, DROP_NONE, err) < 0)
			return -1;
		weld_k_slerp_coeffs(tot[0], tot[1], tot[2], j->t, &e->slerp_s0, &e->slerp_s1);
	}
	if (weld_exec_job_stats(e, j, err) < 0)
		return -1;
	for (int t = 0; t < e->n_slices; t++)
		e->slices[t].notes = 0;
	e->draws = DRAWS_NONE;
	if (e->opts->scope == WELD_SCOPE_ROW) {
		if (!needs_l1(e, j))
			weld_exec_set_factors(e, j);
		weld_exec_sel_reset(e, j, 0);
	} else if (e->opts->scope == WELD_SCOPE_TENSOR &&
		   weld_exec_unit_stats(e, &j, 1, err) < 0) {
		return -1;
	}
	if (weld_method_rank_drop(j->method) && weld_exec_rank_stats(e, j, err) < 0)
		return -1;
	if (weld_method_pcb(j->method) && e->opts->scope == WELD_SCOPE_TENSOR &&
	    weld_exec_pcb_unit(e, &j, 1, err) < 0)
		return -1;
	if (weld_method_sce(j->method) && weld_exec_sce_unit(e, j, err) < 0)
		return -1;
	if (weld_method_arcee(j->method) && weld_exec_arcee_unit(e, j, err) < 0)
		return -1;
	if (apply_job(e, j, err) < 0)
		return -1;
	weld_exec_job_notes(e, j);
	return 0;
}

/*
 * --part with --scope model: a merged job of another part counts the
 * elements equal to each threshold as its APPLY would have (from the
 * recorded counts, else a COUNT pass), so that the ties this part keeps are
 * those the whole merge keeps.
 */
static int skip_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	if (j->method == WELD_METHOD_COPY || e->opts->scope != WELD_SCOPE_MODEL ||
	    !weld_exec_sel_active(e, j) || !weld_exec_sel_partial(e, j))
		return 0;
	e->draws = DRAWS_NONE;
	weld_exec_set_keys(e, j);
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (e->rec.valid)
			weld_exec_rec_apply_counts(e);
		else if (weld_exec_run_chunk(e, j, first, n, P_COUNT, DROP_RESCALE, err) < 0)
			return -1;
	}
	return 0;
}

/* One past the last merged job this execution writes (0: none). */
static size_t merged_end(const struct exec *e)
{
	size_t end = 0;

	for (size_t i = 0; i < e->plan->njobs; i++)
		if (e->plan->jobs[i].method != WELD_METHOD_COPY && job_held(e, &e->plan->jobs[i]))
			end = i + 1;
	return end;
}

/* --scope model: the statistics of all merged jobs, before any output. */
static int model_stats(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->plan;
	const struct weld_job **jobs = malloc((p->njobs + 1) * sizeof(*jobs));
	size_t nj = 0;
	int r = 0;

	if (!jobs)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].method != WELD_METHOD_COPY)
			jobs[nj++] = &p->jobs[i];
	if (nj)
		r = weld_exec_unit_stats(e, jobs, nj, err);
	if (nj && r == 0 && weld_method_pcb(jobs[0]->method))
		r = weld_exec_pcb_unit(e, jobs, nj, err);
	free(jobs);
	return r;
}

/* Free what exec_alloc() and the writers hold; a partial set-up is fine. */
static void exec_free(struct exec *e)
{
	/* the writer thread first: it may still be writing a chunk */
	weld_outq_free(e->queue);
	e->queue = NULL;
	if (e->slices)
		weld_exec_rec_clear(e);
	for (int t = 0; e->slices && t < e->n_slices; t++) {
		struct slice_ctx *c = &e->slices[t];

		free(c->raw);
		free(c->base);
		free(c->out);
		free(c->vals);
		free(c->scratch);
		free(c->keep);
		free(c->row_keys);
		free(c->nan);
	}
	for (size_t q = 0; e->sel && q < e->max_src * MAX_SEL; q++) {
		free(e->sel[q].hist);
	}
	for (int t = 0; e->thread_hist && t < e->n_threads; t++)
		free(e->thread_hist[t]);
	free(e->thread_hist);
	free(e->slices);
	free(e->sel);
	free(e->rec.chunk_start);
	free(e->rec.chunk_eq);
	free(e->mask_bits);
	free(e->l1_all);
	free(e->l1_kept);
	free(e->block_sums);
	free(e->factor);
	free(e->rng_key);
	free(e->draw_bits);
	weld_exec_rank_free(e);
	weld_exec_hist_free(e);
	weld_exec_pcb_free(e);
	free(e->stats);
	free(e->coef);
	weld_writer_close(e->writer);
	weld_writer_close(e->mask_writer);
}

/* The buffers of an execution, sized by the plan; -1 if out of memory. */
static int exec_alloc(struct exec *e)
{
	size_t n_src = e->max_src, nb = (size_t)(e->chunk_elems / WELD_BLOCK + 2);
	bool ok;

	e->slices = calloc((size_t)e->n_slices, sizeof(*e->slices));
	e->sel = calloc(n_src * MAX_SEL, sizeof(*e->sel));
	e->mask_stride = (size_t)(e->chunk_elems / 8 + 1);
	e->mask_bits = calloc(n_src * e->mask_stride, 1);
	e->l1_all = calloc(n_src, sizeof(double));
	e->l1_kept = calloc(n_src, sizeof(double));
	e->block_sums = calloc(nb * (n_src > 2 ? n_src : 2) * 2 + 3 * nb + 8 + nb * e->stats_max,
			       sizeof(double));
	e->stats = calloc(e->stats_total_max + 1, sizeof(double));
	e->coef = calloc(n_src + 4 + e->stats_total_max, sizeof(float));
	e->factor = calloc(n_src, sizeof(float));
	e->rng_key = calloc(n_src, sizeof(uint64_t));
	if (e->plan->drop_stride)
		e->draw_bits = malloc(n_src * e->plan->drop_stride);
	ok = (e->queue = weld_outq_new((size_t)e->chunk_elems * 8)) != NULL;
	ok = ok && (e->draw_bits || !e->plan->drop_stride);
	ok = ok && e->stats && e->coef;
	ok = ok && e->slices && e->sel && e->mask_bits && e->l1_all && e->l1_kept &&
	     e->block_sums && e->factor && e->rng_key;
	for (size_t q = 0; ok && q < n_src * MAX_SEL; q++)
		if (q % MAX_SEL < e->hists_per_src)
			ok = (e->sel[q].hist = calloc(WELD_HIST_BINS, 8)) != NULL;
	ok = ok && (e->thread_hist = calloc((size_t)e->n_threads, sizeof(*e->thread_hist)));
	for (int t = 0; ok && t < e->n_threads; t++)
		ok = (e->thread_hist[t] = calloc(n_src * e->hists_per_src * WELD_HIST_BINS + 1,
						 sizeof(uint32_t))) != NULL;
	for (int t = 0; ok && t < e->n_slices; t++) {
		struct slice_ctx *c = &e->slices[t];

		ok = (c->raw = malloc((n_src + 1) * e->super_elems * e->raw_elem_size)) &&
		     (c->base = malloc(e->tile_elems * sizeof(float))) &&
		     (c->out = malloc(e->tile_elems * sizeof(float))) &&
		     (c->vals = malloc(n_src * e->tile_elems * sizeof(float))) &&
		     (c->scratch = malloc((4 + n_src) * e->tile_elems * sizeof(float))) &&
		     (c->keep = malloc(n_src * MAX_SEL * e->tile_elems)) &&
		     (c->row_keys = malloc(e->tile_elems * sizeof(uint32_t))) &&
		     (!e->opts->allow_nonfinite || (c->nan = malloc(e->tile_elems)));
	}
	return ok && weld_exec_rank_alloc(e) == 0 && weld_exec_hist_alloc(e) == 0 ? 0 : -1;
}

/* Every job in plan order (the statistics of --scope model first), until
 * the last output chunk is written. */
static int run_jobs(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->plan;
	size_t end = merged_end(e);

	/* a part that merges nothing needs no statistics */
	if (p->o.scope == WELD_SCOPE_MODEL && end && model_stats(e, err) < 0)
		return -1;
	for (size_t i = 0; i < p->njobs; i++)
		if (job_held(e, &p->jobs[i]) ? run_job(e, &p->jobs[i], err) < 0
		    : i < end && skip_job(e, &p->jobs[i], err) < 0)
			return -1;
	return weld_outq_drain(e->queue, err);
}

/* run_jobs on thread 0 of one parallel region, the other threads serving
 * the team that runs the slices (team.h). */
static int run_team(struct exec *e, struct weld_error *err)
{
	struct weld_team team;
	int ret = -1;

	if (weld_team_init(&team) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "cannot start the worker threads");
	e->team = &team;
#pragma omp parallel num_threads(e->n_threads)
	{
		if (omp_get_thread_num() == 0) {
			ret = run_jobs(e, err);
			weld_team_stop(&team);
		} else {
			weld_team_serve(&team);
		}
	}
	e->team = NULL;
	weld_team_destroy(&team);
	return ret;
}

int weld_plan_execute(weld_plan *p, const char *out, struct weld_error *err)
{
	struct exec e = { 0 };
	int ret = -1;

	if (!p->finished)
		return weld_fail(err, WELD_ERR_ARG, "plan not finished");
	e.plan = p;
	e.opts = &p->o;
	e.n_slices = p->slices;
	e.n_threads = weld_plan_threads(p);
	e.chunk_elems = p->chunk;
	e.tile_elems = (size_t)p->tile;
	e.super_elems = (size_t)p->super;
	e.raw_elem_size = (size_t)p->raw_es;
	e.hists_per_src = (size_t)p->maxsel;
	e.rec.per_slice = (size_t)(p->record_bytes / sizeof(uint32_t) / (uint64_t)e.n_slices);
	e.max_src = 1;
	for (size_t i = 0; i < p->njobs; i++) {
		size_t ns = weld_job_stats(&p->o, &p->jobs[i]);

		e.max_src = p->jobs[i].nsrc > e.max_src ? p->jobs[i].nsrc : e.max_src;
		e.stats_max = ns > e.stats_max ? ns : e.stats_max;
		ns = weld_job_stats_total(&p->o, &p->jobs[i]);
		e.stats_total_max = ns > e.stats_total_max ? ns : e.stats_total_max;
	}
	if (e.max_src > WELD_K_MAX_SRC)
		return weld_fail(err, WELD_ERR_ARG, "at most %d models can be merged at once",
				 WELD_K_MAX_SRC);
	e.sel_slots = e.max_src * MAX_SEL;
	if (exec_alloc(&e) < 0) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory for %llu-element chunks (lower --max-memory)",
			  (unsigned long long)e.chunk_elems);
		goto out;
	}
	if (weld_exec_open_writers(&e, out, err) < 0)
		goto out;
	e.bytes_total = total_bytes(&e);
	p->bytes_read = e.bytes_total;
	if (run_team(&e, err) < 0)
		goto out;
	if (e.mask_writer && weld_writer_commit(e.mask_writer, err) < 0)
		goto out;
	if (weld_writer_commit(e.writer, err) < 0) {
		/* the masks belong to an output that does not exist */
		if (e.mask_writer)
			unlink(p->o.masks_out);
		goto out;
	}
	/* the progress ends at what was read, which the estimate only guessed */
	p->bytes_read = e.bytes_done;
	if (p->o.progress)
		p->o.progress(p->o.cb_ctx, e.bytes_done, e.bytes_done);
	ret = 0;
out:
	exec_free(&e);
	return ret;
}
