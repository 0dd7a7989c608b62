/*
 * moe_write.c - write the merged checkpoint of a plan: the output tensor
 * list (all of them in the alias layout, G experts per layer and shrunk
 * routers in the compact one), the copy of every other tensor, then layer
 * by layer the merge of each group, streamed in row chunks sized from
 * --max-memory; with --align the members' neurons are permuted first.
 * An expert is a matrix: a whole tensor, or one slice of a stacked
 * [E, ...] tensor, whose slices are then written in order. With --part
 * only the tensors of this part's shards are merged. Sums run over members
 * in index order, so the bytes do not depend on -j or on the chunk size.
 */
#include "moe_impl.h"
#include "kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One weld_moe_write() call, shared by its steps. */
struct write_ctx {
	const struct weld_moe_plan *p;
	const weld_model *m;
	weld_writer *w;
	struct weld_error *err;
	uint64_t budget;
	int64_t *out_of;          /* per input tensor: output tensor, or -1 */
	size_t *widx;             /* per output tensor: index in the writer */
	weld_moe_progress_fn progress;
	void *progress_ctx;
	uint64_t done, total;
	struct merge_bufs *bufs;  /* merge_tensor's buffers, kept between calls */
};

/*
 * The buffers of one merge step: the members' rows and the merged rows in
 * float, the encoded rows, the read scratch and one row for permuting
 * columns. They grow to the largest step and are reused, so the pages of
 * one expert are not faulted in again for the next.
 */
struct merge_bufs {
	size_t elems, cols;
	int nm;
	float *src, *dst, *tmp;
	const float **srcp;
	void *enc, *scratch;
};

/* Rows of one merge step: enough to fill MERGE_STEP_ELEMS elements per
 * member (small enough to stay in cache from read to write), at least one
 * row, and no more than the budget allows. */
#define MERGE_STEP_ELEMS ((uint64_t)1 << 17)

/* Output dtype of a merged expert tensor: --dtype, else the input's when it
 * can be written, else BF16 (8-bit float experts). */
static enum weld_dtype merged_dtype(const struct weld_moe_plan *p, enum weld_dtype in)
{
	if (p->opts.out_dtype >= 0)
		return (enum weld_dtype)p->opts.out_dtype;
	return weld_dtype_merged(in);
}

/* Output dtype of a copied tensor: converted only for an explicit --dtype,
 * and only if it is floating; FP8 codes with scales are written decoded,
 * as BF16 (DESIGN 6.2). */
static enum weld_dtype copied_dtype(const struct weld_moe_plan *p,
				    const struct weld_tensor_info *t)
{
	if (p->opts.out_dtype >= 0 && weld_dtype_is_float(t->dtype))
		return (enum weld_dtype)p->opts.out_dtype;
	return t->scaled ? WELD_BF16 : t->dtype;
}

static void report(struct write_ctx *c, uint64_t bytes)
{
	c->done += bytes;
	if (c->progress)
		c->progress(c->progress_ctx, c->done, c->total);
}

/* Copy elements [first, first + count) of input tensor i to writer tensor
 * wi, converting to out when it differs from the input dtype. */
static int copy_elements(struct write_ctx *c, size_t i, size_t wi, enum weld_dtype out,
			 uint64_t first, uint64_t count, void *raw, float *f32, void *enc,
			 uint64_t chunk)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->m, i);

	for (uint64_t off = 0; off < count; off += chunk) {
		const size_t len = (size_t)(count - off < chunk ? count - off : chunk);

		if (out == t->dtype) {
			if (weld_model_read(c->m, i, first + off, len, raw, c->err) < 0 ||
			    weld_writer_write(c->w, wi, raw, len * weld_dtype_size(out), c->err) < 0)
				return -1;
			continue;
		}
		if (weld_model_read_f32(c->m, i, first + off, len, f32, raw, c->err) < 0)
			return -1;
		if (weld_encode_f32(out, f32, enc, len) < 0)
			return weld_fail(c->err, WELD_ERR_ARG, "tensor '%s': cannot write dtype %s",
					 t->name, weld_dtype_name(out));
		if (weld_writer_write(c->w, wi, enc, len * weld_dtype_size(out), c->err) < 0)
			return -1;
	}
	return 0;
}

/* Non-expert tensors: copied; in the compact layout the routers keep the
 * rows of the dominant experts, in group order. */
static int copy_plain(struct write_ctx *c, const struct weld_out_tensor *ot)
{
	const struct weld_moe_plan *p = c->p;
	const size_t n = weld_model_count(c->m);
	const uint64_t chunk = c->budget / 20 > 0 ? c->budget / 20 : 1;
	void *raw = malloc((size_t)chunk * 8);
	float *f32 = malloc((size_t)chunk * sizeof(float));
	void *enc = malloc((size_t)chunk * 8);
	int ret = -1;

	if (!raw || !f32 || !enc) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct weld_moe_tensor_role *r = &p->layout.roles[i];
		const struct weld_tensor_info *t = weld_model_tensor(c->m, i);
		const int64_t k = c->out_of[i];
		size_t wi;

		if (r->role == WELD_MOE_EXPERT)
			continue;
		wi = c->widx[k];
		if (!weld_writer_holds(c->w, wi))
			continue;
		if (r->role == WELD_MOE_ROUTER && p->opts.layout == WELD_MOE_OUT_COMPACT) {
			const int e_n = p->layout.n_experts;
			const int *dom = p->dominant + (size_t)r->layer * (size_t)e_n;
			const uint64_t row = t->nelem / (uint64_t)e_n;

			for (int g = 0; g < p->groups[r->layer]; g++)
				if (copy_elements(c, i, wi, ot[k].dtype, (uint64_t)dom[g] * row, row,
						  raw, f32, enc, chunk) < 0)
					goto out;
		} else if (copy_elements(c, i, wi, ot[k].dtype, 0, t->nelem, raw, f32, enc,
					 chunk) < 0) {
			goto out;
		}
		report(c, t->nbytes);
	}
	ret = 0;
out:
	free(raw);
	free(f32);
	free(enc);
	return ret;
}

/* Make b hold a step of elems elements of nm members, rows of cols. */
static int grow_bufs(struct merge_bufs *b, size_t elems, size_t cols, int nm)
{
	if (elems > b->elems || nm > b->nm) {
		const size_t e = elems > b->elems ? elems : b->elems;
		const int k = nm > b->nm ? nm : b->nm;

		free(b->src);
		free(b->dst);
		free(b->enc);
		free(b->scratch);
		free(b->srcp);
		b->src = malloc(e * (size_t)k * sizeof(*b->src));
		b->dst = malloc(e * sizeof(*b->dst));
		b->enc = malloc(e * 8);
		b->scratch = malloc(e * 8);
		b->srcp = malloc((size_t)k * sizeof(*b->srcp));
		b->elems = b->src && b->dst && b->enc && b->scratch && b->srcp ? e : 0;
		b->nm = b->elems ? k : 0;
		if (!b->elems)
			return -1;
	}
	if (cols > b->cols) {
		free(b->tmp);
		b->tmp = malloc(cols * sizeof(*b->tmp));
		b->cols = b->tmp ? cols : 0;
		if (!b->tmp)
			return -1;
	}
	return 0;
}

static void free_bufs(struct merge_bufs *b)
{
	free(b->src);
	free(b->dst);
	free(b->enc);
	free(b->scratch);
	free(b->srcp);
	free(b->tmp);
}

/* One expert matrix: where it starts in tensor i, its columns, and the
 * permutation of its FFN neurons (perm of width f along axis), or none. */
struct mat_src {
	size_t i;
	uint64_t first, cols;
	const int *perm;
	enum weld_moe_axis axis;
	int64_t f;
};

/* The source row of output row r under the permutation. */
static uint64_t src_row(const struct mat_src *x, uint64_t r)
{
	if (x->axis == WELD_MOE_AXIS_HALVES)
		return r < (uint64_t)x->f ? (uint64_t)x->perm[r]
					  : (uint64_t)x->f + (uint64_t)x->perm[r - (uint64_t)x->f];
	return (uint64_t)x->perm[r];
}

/* Rows [r0, r1) of a matrix, aligned by its permutation if it has one. */
static int read_rows(struct write_ctx *c, const struct mat_src *x, uint64_t r0, uint64_t r1,
		     float *dst, void *scratch, float *tmp, struct weld_error *err)
{
	const uint64_t cols = x->cols;

	if (x->perm && (x->axis == WELD_MOE_AXIS_ROWS || x->axis == WELD_MOE_AXIS_HALVES)) {
		for (uint64_t r = r0; r < r1; r++)
			if (weld_model_read_f32(c->m, x->i, x->first + src_row(x, r) * cols, (size_t)cols,
						dst + (size_t)(r - r0) * (size_t)cols, scratch, err) < 0)
				return -1;
		return 0;
	}
	if (weld_model_read_f32(c->m, x->i, x->first + r0 * cols, (size_t)((r1 - r0) * cols), dst,
				scratch, err) < 0)
		return -1;
	if (x->perm && x->axis == WELD_MOE_AXIS_COLS) {
		for (uint64_t r = r0; r < r1; r++) {
			float *row = dst + (size_t)(r - r0) * (size_t)cols;

			for (uint64_t k = 0; k < cols; k++)
				tmp[k] = row[x->perm[k]];
			memcpy(row, tmp, (size_t)cols * sizeof(float));
		}
	}
	return 0;
}

/* What one merge step of a tensor needs besides its rows. */
struct merge_job {
	int l, s, nm, nt;
	const int *members, *perm;
	const float *coef;
	const bool *has;
	const size_t *targets;
	enum weld_dtype out;
	enum weld_moe_axis axis;
	uint64_t cols;
	const char *name;
};

/* Rows [r0, r1) of the merged tensor of job j, encoded into b->enc. */
static int merge_step(struct write_ctx *c, const struct merge_job *j, struct merge_bufs *b,
		      uint64_t r0, uint64_t r1, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &c->p->layout;
	const size_t len = (size_t)((r1 - r0) * j->cols);

	for (int k = 0; k < j->nm; k++) {
		const int e = j->members[k];
		const int64_t f = lo->layers[j->l].ffn;
		const struct mat_src x = {
			.i = weld_moe_tensor_of(lo, j->l, e, j->s),
			.first = weld_moe_first_of(lo, j->l, e, j->s),
			.cols = j->cols,
			.perm = j->perm && j->has[e] ? j->perm + (size_t)e * (size_t)f : NULL,
			.axis = j->axis,
			.f = f,
		};
		float *buf = b->src + (size_t)k * b->elems;

		b->srcp[k] = buf;
		if (read_rows(c, &x, r0, r1, buf, b->scratch, b->tmp, err) < 0)
			return -1;
		if (!c->p->opts.allow_nonfinite && weld_k_count_nonfinite(buf, len))
			return weld_nonfinite_error(c->m, x.i, err);
	}
	weld_moe_merge(b->dst, b->srcp, j->coef, j->nm, len);
	if (weld_encode_f32(j->out, b->dst, b->enc, len) < 0)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': cannot write dtype %s",
				 j->name, weld_dtype_name(j->out));
	return 0;
}

/*
 * Merge one tensor (suffix s) of group g of layer l and write it to every
 * output tensor that holds the group (targets[0..nt)), step by step on
 * this thread: the work is a weighted sum bound by reading and writing,
 * where more threads only wait for each other.
 */
static int merge_tensor(struct write_ctx *c, int l, int s, const int *members, int nm,
			const float *coef, const int *perm, const bool *has,
			const size_t *targets, int nt)
{
	const struct weld_moe_layout *lo = &c->p->layout;
	const struct weld_tensor_info *t0 = weld_model_tensor(c->m, weld_moe_tensor_of(lo, l, members[0], s));
	const uint64_t slice = lo->layers[l].slice[s];
	const uint64_t rows = (uint64_t)lo->layers[l].rows[s];
	const uint64_t cols = slice / rows;
	/* per row: member rows and the merged row (float), encode + read scratch */
	const uint64_t per_row = cols * ((uint64_t)(nm + 1) * sizeof(float) + 16);
	const struct merge_job j = {
		.l = l, .s = s, .nm = nm, .nt = nt,
		.members = members, .perm = perm, .coef = coef, .has = has,
		.targets = targets,
		.out = merged_dtype(c->p, weld_tensor_stored_dtype(t0)),
		.axis = perm ? lo->axis[s] : WELD_MOE_AXIS_NONE,
		.cols = cols,
		.name = t0->name,
	};
	uint64_t step = per_row ? c->budget / per_row : rows;

	if (slice == 0)
		return 0;
	if (cols && step > MERGE_STEP_ELEMS / cols)
		step = MERGE_STEP_ELEMS / cols;
	if (step < 1)
		step = 1;
	if (step > rows)
		step = rows;
	if (grow_bufs(c->bufs, (size_t)(step * cols), (size_t)cols, nm) < 0)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory merging '%s'", t0->name);
	for (uint64_t r0 = 0; r0 < rows; r0 += step) {
		const uint64_t r1 = rows - r0 < step ? rows : r0 + step;
		const size_t bytes = (size_t)((r1 - r0) * cols) * weld_dtype_size(j.out);

		if (merge_step(c, &j, c->bufs, r0, r1, c->err) < 0)
			return -1;
		for (int t = 0; t < nt; t++)
			if (weld_writer_write(c->w, targets[t], c->bufs->enc, bytes, c->err) < 0)
				return -1;
	}
	for (int k = 0; k < nm; k++) {
		const struct weld_tensor_info *t = weld_model_tensor(c->m, weld_moe_tensor_of(lo, l, members[k], s));

		report(c, t->nelem ? (uint64_t)((double)t->nbytes * (double)slice / (double)t->nelem) : 0);
	}
	return 0;
}

/* Keep the targets this part writes (all of them without --part); their
 * count. */
static int held_targets(const struct write_ctx *c, size_t *targets, int nt)
{
	int k = 0;

	for (int i = 0; i < nt; i++)
		if (weld_writer_holds(c->w, targets[i]))
			targets[k++] = targets[i];
	return k;
}

/* Does this part write any expert tensor of layer l? */
static bool layer_held(const struct write_ctx *c, int l)
{
	const struct weld_moe_layout *lo = &c->p->layout;

	for (int e = 0; e < lo->n_experts; e++)
		for (int s = 0; s < lo->n_suffix; s++) {
			const int64_t o = c->out_of[weld_moe_tensor_of(lo, l, e, s)];

			if (o >= 0 && weld_writer_holds(c->w, c->widx[o]))
				return true;
		}
	return false;
}

/* The members of group g of layer l (ascending) and their merge
 * coefficients: their count. */
static int group_of(const struct weld_moe_plan *p, int l, int g, int *members, float *coef)
{
	const int e_n = p->layout.n_experts;
	const int *label = p->label + (size_t)l * (size_t)e_n;
	int nm = 0;

	for (int e = 0; e < e_n; e++)
		if (label[e] == g)
			members[nm++] = e;
	weld_moe_merge_coefs(p->stats.freq ? p->stats.freq + (size_t)l * (size_t)e_n : NULL,
			     1.0 / e_n, members, nm, coef);
	return nm;
}

/*
 * Stacked experts: each suffix is one output tensor whose expert slices
 * must be written in order, so each slot (expert e in the alias layout,
 * group g in the compact one) merges its group in turn; in the alias
 * layout a group of n members is merged n times.
 */
static int merge_stacked(struct write_ctx *c, int l, int *members, float *coef,
			 const int *perm, const bool *has)
{
	const struct weld_moe_plan *p = c->p;
	const struct weld_moe_layout *lo = &p->layout;
	const bool compact = p->opts.layout == WELD_MOE_OUT_COMPACT;
	const int slots = compact ? p->groups[l] : lo->n_experts;

	for (int s = 0; s < lo->n_suffix; s++) {
		size_t target = c->widx[c->out_of[weld_moe_tensor_of(lo, l, 0, s)]];

		if (!weld_writer_holds(c->w, target))
			continue;
		for (int k = 0; k < slots; k++) {
			const int g = compact ? k : p->label[(size_t)l * (size_t)lo->n_experts + (size_t)k];
			const int nm = group_of(p, l, g, members, coef);

			if (merge_tensor(c, l, s, members, nm, coef, perm, has, &target, 1) < 0)
				return -1;
		}
	}
	return 0;
}

static int merge_layer(struct write_ctx *c, int l)
{
	const struct weld_moe_plan *p = c->p;
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	int *members = malloc((size_t)e_n * sizeof(*members));
	float *coef = malloc((size_t)e_n * sizeof(*coef));
	size_t *targets = malloc((size_t)e_n * sizeof(*targets));
	int *perm = NULL;
	bool *has = NULL;
	int ret = -1;

	if (!layer_held(c, l)) {
		ret = 0;
		goto out;
	}
	if (!members || !coef || !targets) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (p->opts.align) {
		perm = malloc((size_t)e_n * (size_t)lo->layers[l].ffn * sizeof(*perm));
		has = calloc((size_t)e_n, sizeof(*has));
		if (!perm || !has) {
			weld_fail(c->err, WELD_ERR_NOMEM, "--align: out of memory");
			goto out;
		}
		if (weld_moe_align_layer(p, c->m, l, perm, has, c->err) < 0)
			goto out;
	}
	if (lo->stacked) {
		ret = merge_stacked(c, l, members, coef, perm, has);
		goto out;
	}
	for (int g = 0; g < p->groups[l]; g++) {
		const int nm = group_of(p, l, g, members, coef);

		for (int s = 0; s < lo->n_suffix; s++) {
			int nt = 0;

			if (p->opts.layout == WELD_MOE_OUT_COMPACT) {
				const int64_t k = c->out_of[weld_moe_tensor_of(lo, l, g, s)];

				targets[nt++] = c->widx[k];
			} else {
				for (int k = 0; k < nm; k++) {
					const int64_t o = c->out_of[weld_moe_tensor_of(lo, l, members[k], s)];

					targets[nt++] = c->widx[o];
				}
			}
			nt = held_targets(c, targets, nt);
			if (nt && merge_tensor(c, l, s, members, nm, coef, perm, has, targets, nt) < 0)
				goto out;
		}
	}
	ret = 0;
out:
	free(members);
	free(coef);
	free(targets);
	free(perm);
	free(has);
	return ret;
}

/* The output tensors, in input order; out_of maps input to output. */
static int build_outputs(const struct weld_moe_plan *p, const weld_model *m,
			 struct weld_out_tensor *ot, size_t *count, int64_t *out_of,
			 char **names, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &p->layout;
	const size_t n = weld_model_count(m);
	const bool compact = p->opts.layout == WELD_MOE_OUT_COMPACT;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		const struct weld_moe_tensor_role *r = &lo->roles[i];
		struct weld_out_tensor *o = &ot[k];

		out_of[i] = -1;
		o->name = t->name;
		o->ndim = t->ndim;
		memcpy(o->shape, t->shape, sizeof(o->shape));
		o->dtype = copied_dtype(p, t);
		if (r->role == WELD_MOE_ROUTER && compact) {
			o->shape[0] = p->groups[r->layer];
		} else if (r->role == WELD_MOE_EXPERT) {
			const struct weld_tensor_info *t0 =
				weld_model_tensor(m, weld_moe_tensor_of(lo, r->layer, 0, r->suffix));

			o->dtype = merged_dtype(p, weld_tensor_stored_dtype(t0));
			if (compact && lo->stacked) {
				o->shape[0] = p->groups[r->layer];
			} else if (compact) {
				const char *prefix = lo->layers[r->layer].prefix;
				const char *suffix = lo->suffix[r->suffix];
				const size_t len = strlen(prefix) + strlen(suffix) + 32;

				if (r->expert >= p->groups[r->layer])
					continue;
				names[k] = malloc(len);
				if (!names[k])
					return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
				snprintf(names[k], len, "%sexperts.%d.%s", prefix, r->expert, suffix);
				o->name = names[k];
			}
		}
		out_of[i] = (int64_t)k++;
	}
	*count = k;
	return 0;
}

/*
 * Open the writer on the count output tensors ot, adding to wopts the
 * expert_groups.json text (*groups_json, the caller frees it), the
 * torch_dtype of an explicit --dtype and, in the compact layout, the edit
 * that sets config.json's expert counts and group routing to *compact
 * (which must live until the commit). Fills c->w and c->widx.
 */
static int open_writer(struct write_ctx *c, const char *out_dir, const struct weld_out_tensor *ot,
		       size_t count, const struct weld_writer_opts *wopts, char **groups_json,
		       struct weld_moe_compact *compact)
{
	const struct weld_moe_plan *p = c->p;
	struct weld_writer_opts wo = *wopts;

	*groups_json = weld_moe_groups_json(p);
	if (!*groups_json)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	wo.extra_name = "expert_groups.json";
	wo.extra_data = *groups_json;
	if (p->opts.out_dtype >= 0)
		wo.torch_dtype = weld_dtype_torch_name(p->opts.out_dtype);
	if (compact->set_experts || compact->drop_quantization) {
		wo.edit_config = weld_moe_config_set_experts;
		wo.edit_config_ctx = compact;
	}
	if (weld_writer_open(&c->w, out_dir, ot, count, &wo, c->err) < 0)
		return -1;
	/* the writer keeps its own order; look each name up once */
	c->widx = malloc((count ? count : 1) * sizeof(*c->widx));
	if (!c->widx)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	for (size_t k = 0; k < count; k++)
		c->widx[k] = (size_t)weld_writer_find(c->w, ot[k].name);
	return 0;
}

int weld_moe_write(const struct weld_moe_plan *p, const weld_model *m,
		   const char *out_dir, const struct weld_writer_opts *wopts,
		   weld_moe_progress_fn progress, void *progress_ctx,
		   struct weld_error *err)
{
	const size_t n = weld_model_count(m);
	struct weld_out_tensor *ot = calloc(n ? n : 1, sizeof(*ot));
	char **names = calloc(n ? n : 1, sizeof(*names));
	int64_t *out_of = malloc((n ? n : 1) * sizeof(*out_of));
	struct write_ctx c = { 0 };
	char *groups_json = NULL;
	struct weld_moe_compact compact = p->compact;
	size_t count = 0;
	int ret = -1;

	c.p = p;
	c.m = m;
	c.err = err;
	c.budget = weld_moe_buffer_budget(&p->opts);
	c.out_of = out_of;
	c.progress = progress;
	c.progress_ctx = progress_ctx;
	c.bufs = calloc(1, sizeof(*c.bufs));
	if (!ot || !c.bufs || !names || !out_of) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (p->opts.threads > 0)
		omp_set_num_threads(p->opts.threads);
	if (p->layout.n_tensors != n) {
		weld_fail(err, WELD_ERR_ARG, "the plan was made for another model");
		goto out;
	}
	compact.set_experts = p->opts.layout == WELD_MOE_OUT_COMPACT;
	for (size_t i = 0; i < n; i++) {
		c.total += weld_model_tensor(m, i)->nbytes;
		compact.drop_quantization |= weld_model_tensor(m, i)->scaled;
	}
	if (build_outputs(p, m, ot, &count, out_of, names, err) < 0 ||
	    open_writer(&c, out_dir, ot, count, wopts, &groups_json, &compact) < 0 ||
	    copy_plain(&c, ot) < 0)
		goto out;
	for (int l = 0; l < p->layout.n_layers; l++)
		if (merge_layer(&c, l) < 0)
			goto out;
	if (weld_writer_commit(c.w, err) < 0)
		goto out;
	ret = 0;
out:
	weld_writer_close(c.w);
	if (names)
		for (size_t k = 0; k < n; k++)
			free(names[k]);
	free(names);
	free(ot);
	free(out_of);
	free(c.widx);
	free(groups_json);
	if (c.bufs)
		free_bufs(c.bufs);
	free(c.bufs);
	return ret;
}
