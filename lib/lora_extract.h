/*
 * lora_extract.h - a PEFT LoRA adapter from a fine-tuned model and its base
 * (weld extract-lora; METHODS 17, mergekit-extract-lora's options and
 * defaults). Every 2-D Linear weight's delta is factored by truncated SVD
 * (lora_svd.h), whole, up to `threads` matrices at once as the memory
 * budget allows (the bound is computed first); embeddings, --save-module modules
 * and tensors that are not 2-D Linear weights are saved whole as
 * modules_to_save. The output folder holds adapter_config.json and one
 * adapter_model.safetensors, published atomically like any weld output.
 */
#ifndef WELD_LORA_EXTRACT_H
#define WELD_LORA_EXTRACT_H

#include "model.h"

struct weld_extract_module {
	const char *name;       /* the module (tensor name without .weight) */
	const char *kind;       /* "lora", "embedding", "bias", "saved", "skipped" */
	int64_t rows, cols;
	size_t rank;
	double rel_err;         /* ‖Δ − B·A‖_F / ‖Δ‖_F */
	double seconds;         /* LAPACK and BLAS time of this module */
};

struct weld_extract_opts {
	size_t max_rank;                /* 128 */
	double sv_epsilon;              /* 0 */
	bool distribute_scale;          /* true */
	bool embed_lora;                /* false */
	const char *const *save;        /* --save-module names (leaf or full) */
	size_t nsave;
	const char *const *include, *const *exclude;   /* regexes, searched in module names */
	size_t ninclude, nexclude;
	bool skip_undecomposable;
	bool fast;                      /* randomized range finder */
	size_t oversample;              /* 10 */
	unsigned power_iters;           /* 2 */
	bool force;
	/* the memory budget (bytes): the plan's bound must fit in it */
	uint64_t max_memory;
	/* matrices decomposed at once, at most (each on one BLAS thread);
	 * 0: omp_get_max_threads() */
	int threads;
	const char *base_name;          /* base_model_name_or_path (the BASE as given) */
	const char *recipe_json;        /* stored in the file's metadata, or NULL */
	void (*warn)(void *ctx, const char *msg);
	void (*module)(void *ctx, const struct weld_extract_module *m);  /* each module done */
	void *cb_ctx;
};

struct weld_extract_stats {
	size_t decomposed, saved, skipped, rank;   /* rank: r of the config (largest ρ) */
	double lapack_seconds;                     /* summed over the modules */
	uint64_t bytes;
	uint64_t memory;                           /* the plan's bound */
	size_t in_flight;                          /* matrices decomposed at once */                            /* of adapter_model.safetensors' tensors */
};

/*
 * Plan, decompose and write the adapter folder out. A budget below the
 * plan's bound is an error (WELD_ERR_ARG) naming the largest matrix and
 * the budget needed, before any data is read. The output is the same for
 * any threads and max_memory. Returns 0, or -1 with err filled.
 */
int weld_extract_lora(const weld_model *ft, const weld_model *base, const char *out,
		      const struct weld_extract_opts *o, struct weld_extract_stats *st,
		      struct weld_error *err);

#endif
