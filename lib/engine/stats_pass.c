/*
 * stats_pass.c - a method's statistics pass (P_STATS): the sums it needs
 * over the whole tensor before APPLY (weld_job_stats() says how many per
 * block), then the per-source coefficients APPLY takes from them.
 *
 * Each tile is one block of WELD_BLOCK elements and writes its own sums;
 * after each chunk the blocks are added in order, so the totals, and the
 * bytes of the output, depend neither on the thread count nor on the
 * chunk size.
 */
#include "exec.h"

#include <stdio.h>
#include <string.h>

_Static_assert(WELD_STATS_BLOCK == WELD_BLOCK, "method.h's block is the engine's");

void weld_exec_tile_job_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			      uint64_t g, size_t len, double *out)
{
	const float *v[WELD_K_MAX_SRC];

	for (size_t s = 0; s < j->nsrc; s++)
		v[s] = c->vals + s * e->tile_elems;
	switch (j->method) {
	case WELD_METHOD_RAM:
		weld_k_ram_counts(v, j->nsrc, len, (float)j->epsilon, out);
		break;
	case WELD_METHOD_MODEL_STOCK:
		weld_k_gram(c->base, v, j->nsrc, len, out);
		break;
	case WELD_METHOD_NUSLERP:
		if (e->opts->nuslerp_columns) {
			weld_k_col_dots(j->base_model >= 0 ? c->base : NULL, v[0], v[1], len, g,
					weld_job_columns(j), out);
			break;
		}
		/* fall through */
	case WELD_METHOD_MULTISLERP:
	case WELD_METHOD_KARCHER:
		/* of the task vectors when there is a base */
		weld_k_gram(j->base_model >= 0 ? c->base : NULL, v, j->nsrc, len, out);
		break;
	default:
		break;
	}
}

/* multislerp: the weights, divided by their sum with normalize_weights. */
static void multislerp_weights(const struct exec *e, const struct weld_job *j, double *w)
{
	double sum = 0;

	for (size_t s = 0; s < j->nsrc; s++)
		sum += j->src[s].weight;
	for (size_t s = 0; s < j->nsrc; s++)
		w[s] = e->opts->normalize ? j->src[s].weight / sum : j->src[s].weight;
}

/* The coefficients of job j from its totals e->stats. */
static int finish(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	double w[WELD_K_MAX_SRC], beta[WELD_K_MAX_SRC];

	switch (j->method) {
	case WELD_METHOD_RAM:
		weld_k_ram_lambdas(e->stats, j->nsrc, j->epsilon, j->ram_r, j->ram_alpha, e->coef);
		break;
	case WELD_METHOD_MODEL_STOCK:
		e->coef[0] = (float)weld_k_model_stock_t(e->stats, j->nsrc, &e->note);
		break;
	case WELD_METHOD_NUSLERP:
		/* one vector, or one per column */
		for (uint64_t k = 0; k < (e->opts->nuslerp_columns ? weld_job_columns(j) : 1); k++)
			weld_k_nuslerp_coeffs(e->stats + 3 * k,
					      weld_k_nuslerp_t(j->src[0].weight, j->src[1].weight),
					      e->coef + 3 * k);
		break;
	case WELD_METHOD_MULTISLERP:
		multislerp_weights(e, j, w);
		if (weld_k_multislerp_coeffs(e->stats, j->nsrc, w, j->epsilon, beta) < 0)
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': the weighted sum of the %zu normalised inputs is zero (below eps %g): multislerp has no direction",
					 j->name, j->nsrc, j->epsilon);
		for (size_t s = 0; s < j->nsrc; s++)
			e->coef[s] = (float)beta[s];
		break;
	case WELD_METHOD_KARCHER:
		weld_k_karcher_coeffs(e->stats, j->nsrc, (int)j->max_iter, j->tol, beta);
		for (size_t s = 0; s < j->nsrc; s++)
			e->coef[s] = (float)beta[s];
		break;
	default:
		break;
	}
	return 0;
}

/* Add the sums of the blocks of a chunk of n elements at flat index first
 * to the totals, in block order. */
static void fold(struct exec *e, const struct weld_job *j, uint64_t first, uint64_t n, size_t ns)
{
	uint64_t nc = weld_job_columns(j);

	for (uint64_t b = 0; b < (n + WELD_BLOCK - 1) / WELD_BLOCK; b++) {
		const double *s = e->block_sums + b * ns;
		uint64_t g = first + b * WELD_BLOCK, len = n - b * WELD_BLOCK;

		len = len < WELD_BLOCK ? len : WELD_BLOCK;
		if (!(j->method == WELD_METHOD_NUSLERP && e->opts->nuslerp_columns)) {
			for (size_t k = 0; k < ns; k++)
				e->stats[k] += s[k];
			continue;
		}
		/* per column: the block's slots are its columns, or its elements */
		for (uint64_t k = 0; k < (nc >= WELD_BLOCK ? len : nc); k++) {
			uint64_t c = nc >= WELD_BLOCK ? (g + k) % nc : k;

			for (int q = 0; q < 3; q++)
				e->stats[3 * c + (uint64_t)q] += s[3 * k + (uint64_t)q];
		}
	}
}

int weld_exec_job_stats(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	size_t ns = weld_job_stats(e->opts, j);

	e->note = false;
	if (!ns)
		return 0;
	memset(e->stats, 0, weld_job_stats_total(e->opts, j) * sizeof(double));
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (weld_exec_run_chunk(e, j, first, n, P_STATS, DROP_NONE, err) < 0)
			return -1;
		weld_exec_progress(e, j, n);
		fold(e, j, first, n, ns);
	}
	return finish(e, j, err);
}

bool weld_exec_row_stats_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			       struct weld_combine_args *a, size_t len)
{
	uint64_t rl = row_len(j);
	double g[WELD_K_MAX_SRC * (WELD_K_MAX_SRC + 1) / 2];
	const float *v[WELD_K_MAX_SRC];

	(void)a;
	switch (j->method) {
	case WELD_METHOD_MODEL_STOCK:
	case WELD_METHOD_NUSLERP:
		break;
	default:
		return false;
	}
	for (uint64_t r = 0; r < len; r += rl) {
		const float *b = j->base_model >= 0 ? c->base + r : NULL;
		bool degenerate;
		float t, coef[3];

		for (size_t s = 0; s < j->nsrc; s++)
			v[s] = c->vals + s * e->tile_elems + r;
		weld_k_gram(b, v, j->nsrc, (size_t)rl, g);
		if (j->method == WELD_METHOD_NUSLERP) {
			weld_k_nuslerp_coeffs(g, weld_k_nuslerp_t(j->src[0].weight, j->src[1].weight), coef);
			weld_k_nuslerp(b, v[0], v[1], (size_t)rl, coef, c->out + r);
			continue;
		}
		t = (float)weld_k_model_stock_t(g, j->nsrc, &degenerate);
		c->notes += degenerate;
		weld_k_model_stock(b, v, j->nsrc, (size_t)rl, t, c->out + r);
	}
	return true;
}

void weld_exec_job_notes(struct exec *e, const struct weld_job *j)
{
	uint64_t rows = 0;
	char msg[512];

	for (int t = 0; t < e->n_slices; t++)
		rows += e->slices[t].notes;
	if ((!rows && !e->note) || !e->opts->warn)
		return;
	if (rows)
		snprintf(msg, sizeof(msg), "tensor '%s': %llu of %llu rows have 1 + (n - 1) * mean cosine = 0: t = 0 there (the base)",
			 j->name, (unsigned long long)rows, (unsigned long long)(j->nelem / row_len(j)));
	else
		snprintf(msg, sizeof(msg), "tensor '%s': 1 + (n - 1) * mean cosine = 0: t = 0 (the base)",
			 j->name);
	e->opts->warn(e->opts->cb_ctx, msg);
}
