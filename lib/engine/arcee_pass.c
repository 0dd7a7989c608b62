/*
 * arcee_pass.c - arcee_fusion in the streaming engine (METHODS 11).
 *
 * Each row (the last dimension) is whole in one tile, so its KL divergence
 * and its elements' importance are computed in memory. The fence
 * Q(.5) + 1.5 (Q(.75) - Q(.25)) needs three exact quantiles of the
 * importance over the whole tensor (no sampling): a HI pass counts the
 * high 16 bits of the importance keys, a LO pass the low 16 bits inside
 * the three bins that hold the wanted ranks (hist_pass.c). Then APPLY:
 * three reads in all; a 0-D tensor is the model's value, one read. A
 * row's KL divergence (two softmaxes, a log per element) is the costly
 * part and the same in every read: the first keeps it, one float per row,
 * for the others, within a sixty-fourth of --max-memory (a tensor of more
 * rows computes it in each read).
 */
#include "exec.h"
#include "arcee.h"
#include "hist_pass.h"
#include "target_clones.h"

#include <math.h>
#include <stdlib.h>

/* The wanted quantiles, as (source, slot) of the histogram tables. */
static const struct { size_t s; int q; double x; } quantile[3] = {
	{ 0, 0, 0.25 }, { 0, 1, 0.5 }, { 1, 0, 0.75 },
};

/* Importance of the tile's len elements (whole rows, the first at flat
 * index g), in scratch. */
static float *tile_importance(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			      uint64_t g, size_t len)
{
	struct hist_exec *h = e->hs;
	size_t t = (size_t)(c - e->slices), rl = (size_t)row_len(j);
	double *scratch = (double *)(void *)(e->rank_scratch + t * RANK_SCRATCH * e->tile_elems);

	for (size_t r = 0; r < len; r += rl) {
		uint64_t row = (g + r) / rl;
		float k;

		if (h->kl_rows && h->kl_known) {
			k = h->kl[row];
		} else {
			k = weld_k_arcee_kl(c->base + r, c->vals + r, rl, scratch);
			if (h->kl_rows)
				h->kl[row] = k;
		}
		weld_k_arcee_scale(c->base + r, c->vals + r, rl, k, c->scratch + r);
	}
	return c->scratch;
}

/* Room for the rows' kl of job j, if they fit (kl_rows = 0 if not). */
static void kl_room(struct exec *e, const struct weld_job *j)
{
	struct hist_exec *h = e->hs;
	uint64_t rows = j->nelem / row_len(j), cap = e->opts->max_memory / 64 / sizeof(float);

	h->kl_rows = 0;
	h->kl_known = false;
	if (rows > cap)
		return;
	if (rows > h->kl_cap) {
		float *k = realloc(h->kl, (size_t)rows * sizeof(float));

		if (!k)
			return;         /* computed in each read instead */
		h->kl = k;
		h->kl_cap = rows;
	}
	h->kl_rows = rows;
}

/* HI: count the high 16 bits of the importances' keys (taken in lanes, a
 * block at a time, then counted). */
#define BLOCK 16
WELD_HOT static void count_high(const float *imp, size_t len, uint32_t *hh)
{
	uint32_t bin[BLOCK];

	for (size_t i = 0; i < len; i += BLOCK) {
		size_t n = len - i < BLOCK ? len - i : BLOCK;

		for (size_t l = 0; l < n; l++)
			bin[l] = weld_pcb_signed_key(imp[i + l]) >> 16;
		for (size_t l = 0; l < n; l++)
			hh[bin[l]]++;
	}
}

/* LO: count the low 16 bits of the keys in the three quantiles' bins (two
 * may share one), each in its slot's histogram. Few keys fall in them: a
 * test of a block first, in lanes. */
WELD_HOT static void count_low(const struct hist_exec *h, const float *imp, size_t len,
			       uint32_t *hh)
{
	uint32_t bin[3];
	size_t slot[3], i = 0;

	for (int w = 0; w < 3; w++) {
		bin[w] = h->bin[quantile[w].s][quantile[w].q];
		slot[w] = (quantile[w].s * 2 + (size_t)quantile[w].q) * WELD_HP_BINS;
	}
	while (i < len) {
		size_t n = len - i < BLOCK ? len - i : BLOCK;
		uint32_t hit = 0;

		for (size_t l = 0; l < n; l++) {
			uint32_t k = weld_pcb_signed_key(imp[i + l]) >> 16;

			hit |= ((uint32_t)(k == bin[0]) | (uint32_t)(k == bin[1]) |
				(uint32_t)(k == bin[2])) << l;
		}
		for (; hit; hit &= hit - 1) {
			uint32_t k = weld_pcb_signed_key(imp[i + (size_t)__builtin_ctz(hit)]);

			for (int w = 0; w < 3; w++)
				hh[slot[w] + (k & 0xFFFF)] += k >> 16 == bin[w];
		}
		i += n;
	}
}

void weld_exec_arcee_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			  uint64_t g, size_t len, enum pass pass)
{
	const float *imp = tile_importance(e, j, c, g, len);

	if (pass == P_ARCEE_HI)
		count_high(imp, len, weld_exec_hist_mine(e));
	else
		count_low(e->hs, imp, len, weld_exec_hist_mine(e));
}

void weld_exec_arcee_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			   uint64_t first, uint64_t g, size_t len)
{
	if (j->ndim == 0) {
		/* METHODS 11: a 0-D tensor is the model's */
		for (size_t i = 0; i < len; i++)
			c->out[i] = c->vals[i];
	} else {
		weld_k_arcee_apply(c->base, c->vals, tile_importance(e, j, c, g, len), e->hs->fence,
				   len, c->out);
	}
	weld_exec_put_tile(e, j, c, first, g, len);
}

int weld_exec_arcee_unit(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	double q[3];

	h->kl_rows = 0;
	if (j->ndim == 0 || !j->nelem)
		return 0;
	kl_room(e, j);
	for (int w = 0; w < 3; w++)
		h->rank[quantile[w].s][quantile[w].q] =
			(uint64_t)floor(quantile[w].x * (double)(j->nelem - 1));
	if (weld_exec_hist_pass(e, &j, 1, P_ARCEE_HI, err) < 0)
		return -1;
	h->kl_known = h->kl_rows > 0;
	for (int w = 0; w < 3; w++)
		weld_exec_hist_pick_bin(e, 0, quantile[w].s, quantile[w].q);
	if (weld_exec_hist_pass(e, &j, 1, P_ARCEE_LO, err) < 0)
		return -1;
	for (int w = 0; w < 3; w++)
		q[w] = weld_pcb_key_float(weld_exec_hist_pick_key(e, quantile[w].s, quantile[w].q), 1);
	h->fence = q[1] + 1.5 * (q[2] - q[0]);
	return 0;
}
