/*
 * lora_extract_impl.h - what the files of weld extract-lora share: a
 * fine-tune tensor's entry (its role, shape and factors) and the run's
 * context. lora_extract.c gives the roles and runs the SVDs,
 * lora_extract_memory.c computes the memory bound before any read,
 * lora_extract_write.c writes the adapter folder.
 */
#ifndef WELD_LORA_EXTRACT_IMPL_H
#define WELD_LORA_EXTRACT_IMPL_H

#include "lora_extract.h"
#include "lora_svd.h"

#include <regex.h>

#define PREFIX "base_model.model."
#define STEP (1u << 20)
/* the binary, the models' headers, stacks and BLAS's own buffers */
#define EXTRACT_RESERVE (16ull << 20)

enum role { R_SKIP, R_SAVE, R_LINEAR, R_EMBED, R_BIAS };

struct xent {
	enum role role;
	char *module;
	const char *leaf;       /* inside module */
	int64_t base;           /* the base's tensor, for a delta */
	enum weld_dtype dt;     /* of the output tensors */
	size_t rank;
	int64_t rows, cols;     /* of what is decomposed (Δᵀ for an embedding) */
	void *a, *b;            /* factors (or the bias delta in a), encoded in dt */
};

struct ctx {
	const weld_model *ft, *base;
	const struct weld_extract_opts *o;
	struct weld_extract_stats *st;
	struct xent *e;         /* one per tensor of ft */
	size_t n;
	regex_t *inc, *exc;
	size_t ninc, nexc;
	int threads;            /* matrices at once (the plan's) */
	struct weld_error *err;
};

/* The SVD options of the matrix named name (its seed is the name's hash). */
struct weld_lora_svd_opts weld_extract_svd_opts(const struct ctx *c, const char *name);
/* Elements read at once from a tensor of nelem elements. */
size_t weld_extract_read_step(uint64_t nelem);
/* The plan's memory bound into c->st->memory, and the matrices decomposed
 * at once into c->threads; 0, or -1 (budget too small) with c->err filled. */
int weld_extract_plan_memory(struct ctx *c);
/* Publish the adapter folder out from the decomposed entries; 0 or -1. */
int weld_extract_write_folder(struct ctx *c, const char *out);

#endif
