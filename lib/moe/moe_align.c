/*
 * moe_align.c - --align: before a group is merged, permute each member's
 * FFN neurons to match the group's dominant expert (weight matching, an
 * exact linear assignment on the F x F neuron scores). Holds the scoring,
 * the memory and work estimate the plan checks against --max-memory, and
 * the per-layer pass that computes the permutations the writer applies.
 */
#include "moe_impl.h"
#include "lap.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/*
 * Alignment score <a, b>: only its ranking matters (it picks the
 * permutation), and there are F^2 of them, so speed wins over the double
 * sums of the similarity: eight float32 partial sums over each block of 64
 * elements (a shape the compiler turns into SIMD without reassociating),
 * block sums added in double, always in the same order.
 */
static double dot_score(const float *a, const float *b, size_t len)
{
	double acc = 0.0;
	size_t k = 0;

	for (; k + 64 <= len; k += 64) {
		float s[8] = { 0 };

		for (size_t i = 0; i < 64; i += 8)
			for (int j = 0; j < 8; j++)
				s[j] += a[k + i + (size_t)j] * b[k + i + (size_t)j];
		acc += (double)(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
	}
	for (; k < len; k++)
		acc += (double)a[k] * (double)b[k];
	return acc;
}

/* Row r of the packed matrix: [gate[r, :], up[r, :], down[:, r]]. */
static void pack_ffn(const struct weld_moe_ffn *x, int64_t f, int64_t h, float *out)
{
	const size_t w = (size_t)h * (x->up ? 3 : 2);

	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < f; r++) {
		float *row = out + (size_t)r * w;
		size_t k = 0;

		memcpy(row, x->gate + (size_t)r * (size_t)h, (size_t)h * sizeof(float));
		k += (size_t)h;
		if (x->up) {
			memcpy(row + k, x->up + (size_t)r * (size_t)h, (size_t)h * sizeof(float));
			k += (size_t)h;
		}
		for (int64_t c = 0; c < h; c++)
			row[k + (size_t)c] = x->down[(size_t)c * (size_t)f + (size_t)r];
	}
}

int weld_moe_align(const struct weld_moe_ffn *ref, const struct weld_moe_ffn *tgt,
		   int64_t f, int64_t h, int *perm, struct weld_error *err)
{
	size_t w;
	float *a = NULL, *b = NULL;
	double *cost = NULL;
	int ret = -1;

	if (f < 1 || h < 1 || f > INT_MAX || !ref || !tgt || !ref->gate || !ref->down ||
	    !tgt->gate || !tgt->down || !ref->up != !tgt->up)
		return weld_fail(err, WELD_ERR_ARG, "alignment: invalid arguments (F = %" PRId64
				 ", H = %" PRId64 ")", f, h);
	if ((uint64_t)f > SIZE_MAX / sizeof(double) / (uint64_t)f)
		return weld_fail(err, WELD_ERR_NOMEM, "alignment: FFN width %" PRId64 " is too large", f);
	w = (size_t)h * (ref->up ? 3 : 2);
	a = malloc((size_t)f * w * sizeof(float));
	b = malloc((size_t)f * w * sizeof(float));
	cost = malloc((size_t)f * (size_t)f * sizeof(double));
	if (!a || !b || !cost) {
		weld_fail(err, WELD_ERR_NOMEM, "alignment: out of memory for FFN width %" PRId64, f);
		goto out;
	}
	pack_ffn(ref, f, h, a);
	pack_ffn(tgt, f, h, b);

	/* four reference rows at a time share each target row in cache */
	#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t r0 = 0; r0 < f; r0 += 4) {
		const int64_t r1 = f - r0 < 4 ? f : r0 + 4;

		for (int64_t t = 0; t < f; t++) {
			const float *bt = b + (size_t)t * w;

			for (int64_t r = r0; r < r1; r++)
				cost[(size_t)r * (size_t)f + (size_t)t] = dot_score(a + (size_t)r * w, bt, w);
		}
	}
	ret = weld_lap_solve(cost, (int)f, true, perm, NULL, err);
out:
	free(a);
	free(b);
	free(cost);
	return ret;
}

/* What --align holds at once for one layer (see weld_moe_align_layer()). */
static uint64_t align_bytes_of(int64_t f, int64_t h)
{
	const double fh = (double)f * (double)h;
	const double b = 2 * 3 * fh * 4     /* reference and target experts */
		       + 2 * 3 * fh * 4     /* their packed copies */
		       + (double)f * (double)f * 8  /* the cost matrix */
		       + 3 * fh * 2;        /* read scratch */

	return b > 1.8e19 ? UINT64_MAX : (uint64_t)b;
}

/*
 * The cost of --align, known before any output exists: the largest memory
 * one layer holds and a rough operation count (per member, an F^3 solve
 * and the F^2 scores over 3H weights).
 */
int weld_moe_align_plan(struct weld_moe_plan *p, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &p->layout;
	const double w = 3.0 * (double)lo->hidden;

	for (int l = 0; l < lo->n_layers; l++) {
		const int64_t f = lo->layers[l].ffn;
		const uint64_t b = align_bytes_of(f, lo->hidden);
		const double fd = (double)f;

		if (b > p->align_bytes)
			p->align_bytes = b;
		p->align_work += (double)(lo->n_experts - p->groups[l]) * (fd * fd * fd + fd * fd * w);
		if (f > INT_MAX)
			return weld_fail(err, WELD_ERR_ARG, "--align: FFN width %" PRId64 " is too large", f);
	}
	if (p->opts.max_memory && p->align_bytes > p->opts.max_memory) {
		char need[32], have[32];

		weld_format_size(p->align_bytes, need, sizeof(need));
		weld_format_size(p->opts.max_memory, have, sizeof(have));
		return weld_fail(err, WELD_ERR_ARG,
				 "--align needs about %s for FFN width %" PRId64 " (two experts and an "
				 "F x F cost matrix), more than --max-memory %s",
				 need, lo->layers[0].ffn, have);
	}
	return 0;
}

/* Read expert e's matrix of suffix s as float32 into a new buffer. */
static float *read_matrix(const weld_model *m, const struct weld_moe_layout *lo, int l, int e,
			  int s, struct weld_error *err)
{
	const size_t i = weld_moe_tensor_of(lo, l, e, s);
	const uint64_t n = lo->layers[l].slice[s];
	float *x = malloc((size_t)n * sizeof(*x) + 1);

	if (!x) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory reading '%s'",
			  weld_model_tensor(m, i)->name);
		return NULL;
	}
	if (weld_model_read_f32(m, i, weld_moe_first_of(lo, l, e, s), (size_t)n, x, NULL, err) < 0) {
		free(x);
		return NULL;
	}
	return x;
}

/* An expert's main matrices, read whole (gate_up fused: up is the second
 * half of gate's buffer), and the view of them. */
struct loaded_ffn {
	float *gate, *up, *down;
	struct weld_moe_ffn view;
};

static void free_ffn(struct loaded_ffn *x)
{
	free(x->gate);
	free(x->up);
	free(x->down);
	memset(x, 0, sizeof(*x));
}

static int load_ffn(const weld_model *m, const struct weld_moe_layout *lo, int l, int e,
		    struct loaded_ffn *x, struct weld_error *err)
{
	const size_t fh = (size_t)lo->layers[l].ffn * (size_t)lo->hidden;

	x->gate = read_matrix(m, lo, l, e, lo->gate_suffix, err);
	x->up = x->gate && !lo->fused ? read_matrix(m, lo, l, e, lo->up_suffix, err) : NULL;
	x->down = x->gate && (lo->fused || x->up) ? read_matrix(m, lo, l, e, lo->down_suffix, err)
						   : NULL;
	if (!x->down) {
		free_ffn(x);
		return -1;
	}
	x->view.gate = x->gate;
	x->view.up = lo->fused ? x->gate + fh : x->up;
	x->view.down = x->down;
	return 0;
}

int weld_moe_align_layer(const struct weld_moe_plan *p, const weld_model *m, int l,
			 int *perm, bool *has, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	const int64_t f = lo->layers[l].ffn;
	const int *label = p->label + (size_t)l * (size_t)e_n;
	const int *dom = p->dominant + (size_t)l * (size_t)e_n;

	for (int g = 0; g < p->groups[l]; g++) {
		struct loaded_ffn ref = { 0 };
		bool loaded = false;

		for (int e = 0; e < e_n; e++) {
			struct loaded_ffn tgt = { 0 };
			int r;

			if (label[e] != g || e == dom[g])
				continue;
			if (!loaded && load_ffn(m, lo, l, dom[g], &ref, err) < 0)
				return -1;
			loaded = true;
			if (load_ffn(m, lo, l, e, &tgt, err) < 0) {
				free_ffn(&ref);
				return -1;
			}
			r = weld_moe_align(&ref.view, &tgt.view, f, lo->hidden,
					   perm + (size_t)e * (size_t)f, err);
			free_ffn(&tgt);
			if (r < 0) {
				char why[sizeof(err->msg)];

				free_ffn(&ref);
				memcpy(why, err->msg, sizeof(why));
				return weld_fail(err, err->status, "layer %d: aligning expert %d to %d: %s",
						 lo->layers[l].index, e, dom[g], why);
			}
			has[e] = true;
		}
		free_ffn(&ref);
	}
	return 0;
}
