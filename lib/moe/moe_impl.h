/*
 * moe_impl.h - what the files of lib/moe share and the command does not
 * see: how an expert tensor is found, the memory the streaming buffers may
 * use, and the steps of planning and writing that live in a file of their
 * own (the similarity of a layer, the cost and work of --align, the
 * config.json edit of the compact layout).
 */
#ifndef WELD_MOE_IMPL_H
#define WELD_MOE_IMPL_H

#include "moe.h"

/* Largest stats file or config.json read (bytes). */
#define WELD_MOE_MAX_TEXT (256u << 20)

/* Model tensor index of suffix s of expert e in layer l. */
static inline size_t weld_moe_tensor_of(const struct weld_moe_layout *lo, int l, int e, int s)
{
	return lo->layers[l].tensor[(size_t)e * (size_t)lo->n_suffix + (size_t)s];
}

/* First element of expert e's matrix of suffix s in its tensor (0 unless
 * the experts are stacked in one tensor). */
static inline uint64_t weld_moe_first_of(const struct weld_moe_layout *lo, int l, int e, int s)
{
	return lo->stacked ? (uint64_t)e * lo->layers[l].slice[s] : 0;
}

/* Bytes the streaming buffers may use: half the budget, the rest being
 * left to the reader, the writer and the process itself. */
static inline uint64_t weld_moe_buffer_budget(const struct weld_moe_opts *o)
{
	const uint64_t m = o->max_memory ? o->max_memory : (uint64_t)1000 * 1000 * 1000;

	return m / 2;
}

/* ---------------------------------------------------------------- moe_config.c */

/* weld_writer_opts.edit_config of the compact layout: the keys present in
 * config.json take the values of *(const struct weld_moe_compact *)ctx. */
int weld_moe_config_set_experts(void *ctx, void *cjson_root, struct weld_error *err);

/* ---------------------------------------------------------------- moe_similarity.c */

/* Similarity of the experts of layer l (sim is E x E) from their router
 * rows, or from their concatenated weights read in chunks within budget. */
int weld_moe_router_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			       double *sim, struct weld_error *err);
int weld_moe_weight_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			       uint64_t budget, double *sim, struct weld_error *err);

/* ---------------------------------------------------------------- moe_align.c */

/* Fill p->align_bytes and p->align_work (layout and groups made) and
 * refuse --align beyond int-sized FFN widths or over --max-memory. */
int weld_moe_align_plan(struct weld_moe_plan *p, struct weld_error *err);

/*
 * Permutations of layer l (perm[e * F ...], has[e] set) that align every
 * member of a group to its dominant expert. Reads two experts whole at a
 * time (the memory weld_moe_align_plan() counted).
 */
int weld_moe_align_layer(const struct weld_moe_plan *p, const weld_model *m, int l,
			 int *perm, bool *has, struct weld_error *err);

#endif
