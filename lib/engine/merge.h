/*
 * merge.h - the merge engine: plan a merge, then stream it.
 *
 * A plan holds the opened input models and one job per output tensor. A job
 * names its sources (model, tensor, per-source weight and density) and the
 * method that combines them. weld_plan_standard() builds the usual jobs (every
 * tensor of the base, matched by name in every model); recipes may add jobs
 * of their own (slices, renamed layers). weld_plan_finish() checks the whole
 * plan and sizes the chunks from the memory budget, before any tensor data
 * is read. weld_plan_execute() then streams: tensor by tensor, chunk by
 * chunk, OpenMP inside each chunk, the output written as it is produced.
 * The result depends only on the inputs and options, never on the thread
 * count or the memory budget.
 */
#ifndef WELD_MERGE_H
#define WELD_MERGE_H

#include "model.h"
#include "target_clones.h"

enum weld_method {
	WELD_METHOD_COPY,             /* one source, converted to the output dtype */
	WELD_METHOD_AVERAGE,
	WELD_METHOD_TASK_ARITHMETIC,
	WELD_METHOD_TIES,
	WELD_METHOD_DARE,
	WELD_METHOD_BREADCRUMBS,
	WELD_METHOD_CONSENSUS,
	WELD_METHOD_SLERP,            /* base = t 0 end, one model = t 1 end */
	WELD_METHOD_APPLY_MASK,       /* base + mask .* (merged - base) */
	WELD_METHOD_DELLA,            /* rank-based keep probability per row (METHODS 3) */
	WELD_METHOD_PCB,              /* PCB-Merging: balancing scores, drop, rescale (METHODS 12) */
	WELD_METHOD_SCE,              /* select by variance, calculate, erase (METHODS 5) */
	WELD_METHOD_ARCEE_FUSION,     /* the base where the change is unimportant (METHODS 11) */
	WELD_METHOD_NEARSWAP,         /* METHODS 9: toward the model where it is near the base */
	WELD_METHOD_RAM,              /* METHODS 10: ram, and ramplus_tl with opts.ram_plus */
	WELD_METHOD_MODEL_STOCK,      /* METHODS 4: filter_wise = --scope row */
	WELD_METHOD_NUSLERP,          /* METHODS 6: nuslerp_flatten false = --scope row */
	WELD_METHOD_MULTISLERP,       /* METHODS 7 */
	WELD_METHOD_KARCHER,          /* METHODS 8 */
	WELD_METHOD_TSV_M,            /* METHODS 13: task singular vectors (whole matrices) */
	WELD_METHOD_ISO_C,            /* METHODS 14: isotropic, common subspace */
	WELD_METHOD_ISO_CTS,          /* METHODS 15: isotropic, common and task-specific */
};

enum weld_scope { WELD_SCOPE_TENSOR, WELD_SCOPE_ROW, WELD_SCOPE_MODEL };
enum weld_out_format { WELD_FORMAT_AUTO, WELD_FORMAT_SAFETENSORS, WELD_FORMAT_GGUF };
enum weld_sign { WELD_SIGN_SUM, WELD_SIGN_COUNT };
enum weld_rescale { WELD_RESCALE_INVERSE, WELD_RESCALE_L1, WELD_RESCALE_NONE };
enum weld_combine { WELD_COMBINE_SUM, WELD_COMBINE_TIES };
enum weld_from { WELD_FROM_TA, WELD_FROM_TIES };

/* Method-wide options (the same for every tensor). */
struct weld_merge_opts {
	enum weld_method method;
	enum weld_scope scope;
	enum weld_sign sign;
	enum weld_rescale rescale;
	enum weld_combine combine;
	enum weld_from from;          /* consensus */
	bool normalize;
	double trim;                  /* dare --combine ties --trim; 0 = none */
	int k;                        /* consensus: keep where >= k masks agree */
	uint64_t seed;
	int dtype;                    /* enum weld_dtype, or -1 for auto */
	int threads;                  /* 0 = all cores */
	uint64_t max_memory;
	/* part of max_memory that top-k passes may fill with recorded keys to
	 * save passes: 0 = none, UINT64_MAX = a quarter (the default) */
	uint64_t record_memory;
	uint64_t shard_size;
	bool shard_size_set;          /* given (--shard-size, weld.shard_size): a
	                               * GGUF output is then a split set */
	bool allow_missing;
	bool allow_nonfinite;         /* merge NaN and +-Inf inputs (weld(1)) */
	bool force;
	bool copy_files;
	double clip;                  /* pcb: fraction clipped at each end of |delta| */
	double select_topk;           /* sce: fraction of the varying positions kept */
	const char *recipe_json;      /* stored in the output's metadata */
	const char *masks_out;        /* consensus --save-masks FILE, or NULL */
	/* passed to the writer (see weld_writer_opts), may be NULL */
	int (*edit_config)(void *ctx, void *cjson_root, struct weld_error *err);
	void *edit_config_ctx;
	/* folder to copy config.json and tokenizer files from; NULL: the
	 * first job's base model, else its first source */
	const char *config_from;
	/* --part: write only part `part` (1-based) of `parts` of the output's
	 * shards (output_parts.h), skipping the jobs of the others; 0: all */
	unsigned part, parts;
	/* output file format (enum weld_out_format), and the ggml block type
	 * asked for by --dtype q8_0|q4_0 (a GGUF output only; 0: none) */
	int format;
	uint32_t out_quant;
	/* callbacks (any may be NULL) */
	void (*warn)(void *ctx, const char *msg);
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *cb_ctx;
	bool ram_plus;                /* ram: RAM+ (ramplus_tl), a statistics pass per tensor */
	bool nuslerp_columns;         /* nuslerp: vectors along dim 0 (nuslerp_row_wise) */
	/* the SVD methods: tensors whose name matches this POSIX extended
	 * regex are merged as non-matrices (NULL: none), and iso_cts's
	 * common_space_fraction */
	const char *svd_exclude;
	double common_fraction;
};

/* One input of a job. */
struct weld_source {
	int model;          /* index in the plan's models */
	int64_t tensor;     /* index in that model */
	int rng_index;      /* 1-based model number for the RNG of DESIGN 4.9 */
	double weight;
	double density;
	double mask_lambda; /* consensus */
	double epsilon;     /* della: half the spread of the keep probability */
};

/* One output tensor. */
struct weld_job {
	const char *name;
	enum weld_dtype dtype;        /* output dtype */
	int ndim;
	int64_t shape[WELD_MAX_DIMS];
	uint64_t nelem;
	enum weld_method method;      /* COPY for integer tensors and passthrough */
	int base_model;               /* -1 if none */
	int64_t base_tensor;
	size_t nsrc;
	struct weld_source *src;      /* copied by weld_plan_add_job */
	double lambda;
	double gamma;                 /* breadcrumbs */
	double t;                     /* slerp */
	int mask_model;               /* apply-mask: the masks file, and */
	int64_t mask_tensor;          /* its U8 tensor for this job */
	double epsilon;               /* ram: |delta| > epsilon survives; multislerp: eps */
	double ram_r, ram_alpha;      /* ramplus_tl: r and alpha */
	double tol, max_iter;         /* karcher */
	/* Non-zero: computed and handed to the writer as F32 (dtype), stored
	 * as block-scaled F8_E4M3 in blocks of these rows and columns, with a
	 * <name>_scale_inv tensor (--dtype fp8, DESIGN 6.2). */
	int64_t fp8_block[2];
};

typedef struct weld_plan weld_plan;

/* --dtype fp8 (o.dtype F8_E4M3): a job whose reference tensor ref is a
 * block-scaled FP8 weight (weight_scale_inv) becomes one of those above,
 * in ref's block size; true if it did. */
bool weld_plan_fp8_job(const weld_plan *p, struct weld_job *j, const struct weld_tensor_info *ref);
/* Bytes job j takes in the output (codes and scales for FP8). */
uint64_t weld_job_stored_bytes(const struct weld_job *j);

/* Per-tensor parameters, for recipes whose values vary with the layer: called
 * once per (job, source) with the defaults filled in; may change weight,
 * density, mask_lambda of the source and lambda/gamma/t of the job. */
typedef int (*weld_param_fn)(void *ctx, const char *tensor, int slot,
			     struct weld_source *src, struct weld_job *job,
			     struct weld_error *err);

weld_plan *weld_plan_new(const struct weld_merge_opts *o);
void weld_plan_free(weld_plan *p);

/* Open a model (see weld_model_open) and return its index, or -1. */
int weld_plan_add_model(weld_plan *p, const char *path, struct weld_error *err);
size_t weld_plan_model_count(const weld_plan *p);
const weld_model *weld_plan_model(const weld_plan *p, int i);

/* Add one job (copied, sources included). */
int weld_plan_add_job(weld_plan *p, const struct weld_job *j, struct weld_error *err);

/* Per-model defaults for weld_plan_standard. */
struct weld_model_params {
	double weight, density, mask_lambda;
	double epsilon;
};

/*
 * The usual jobs: every tensor of the base (else of models[0]) becomes an
 * output of the same name, merged from the same name in every model.
 * Integer tensors are copied from the base (else models[0]). Embedding-like
 * tensors with more rows than the base are cropped (a warning); any other
 * shape mismatch, a missing tensor (unless allow_missing) or a dtype that
 * cannot be merged is an error naming the tensor, both shapes and both files.
 * mp[i] are model i's parameters; fn (may be NULL) refines them per tensor.
 */
int weld_plan_standard(weld_plan *p, int base, const int *models, size_t n,
		       const struct weld_model_params *mp, double lambda, double gamma,
		       weld_param_fn fn, void *fn_ctx, struct weld_error *err);

/*
 * The jobs of `weld consensus --apply-mask`: base + mask_task .* (merged -
 * base) for every float tensor of the base, the masks read from the file
 * masks (tensors "<name>.mask.<task>", see DESIGN 4.7); integer tensors
 * are copied from merged. Messages name the files by the paths given.
 */
int weld_plan_apply_mask(weld_plan *p, const char *base, const char *merged, const char *masks,
			 long task, struct weld_error *err);

/* The folder whose config.json and tokenizer files the output copies, or
 * NULL when none is copied (a borrowed string; after the jobs are added). */
const char *weld_plan_config_dir(const weld_plan *p);

/* Check every job and size the chunks; after this the plan is read-only. */
int weld_plan_finish(weld_plan *p, struct weld_error *err);

size_t weld_plan_job_count(const weld_plan *p);
const struct weld_job *weld_plan_job(const weld_plan *p, size_t i);
const struct weld_merge_opts *weld_plan_opts(const weld_plan *p);
/* Peak memory the execution will use for its buffers, and the chunk size. */
uint64_t weld_plan_memory(const weld_plan *p);
uint64_t weld_plan_chunk_elems(const weld_plan *p);
/* The SVD methods: the memory of the largest whole-matrix job (included in
 * weld_plan_memory), and its tensor's name in *tensor (borrowed; NULL when
 * there is none, and 0 returned). tensor may be NULL. */
uint64_t weld_plan_matrix_memory(const weld_plan *p, const char **tensor);
/* How many whole matrices are decomposed at once (each counted in
 * weld_plan_memory at weld_plan_matrix_memory's size); 0 when none. */
size_t weld_plan_matrices_at_once(const weld_plan *p);
/* Bytes of tensor data the merge takes from its inputs: each source and
 * base tensor once (the statistics passes read some of it again). */
uint64_t weld_plan_input_bytes(const weld_plan *p);
/* Bytes of tensor data the execution read over all its passes (top-k
 * statistics, dare's L1 sums, slerp's dots): what the progress counts,
 * valid after weld_plan_execute. */
uint64_t weld_plan_bytes_read(const weld_plan *p);

/* Set the recipe stored in the output's metadata (borrowed until the plan
 * is freed). */
void weld_plan_set_recipe(weld_plan *p, const char *recipe_json);

/* Could the finished plan's output be written at out (its shards, the size
 * and tensor count of each header, with the recipe set so far)? Checked
 * without touching the disk; weld_plan_execute checks it again. */
int weld_plan_check_output(const weld_plan *p, const char *out, struct weld_error *err);
/* The files a GGUF output at out is split into (--shard-size, DESIGN
 * 6.1): *paths (caller frees each and the array) and their count *n; *n =
 * 0 when the output is not a split set. */
int weld_plan_output_set(const weld_plan *p, const char *out, char ***paths, size_t *n,
			 struct weld_error *err);

/*
 * The output's format (DESIGN 6.1): the one asked for, else GGUF when the
 * base (else the first model) is GGUF, else safetensors. GGUF output from
 * other inputs, and a GGUF block type for a safetensors output, are
 * refused (-1, err says why). After the jobs are added.
 */
int weld_plan_output_format(const weld_plan *p, struct weld_error *err);
/* A one-line note for the user about the output (a GGUF base of a type
 * weld does not encode is written as F16), into buf: true if there is one. */
bool weld_plan_output_note(const weld_plan *p, char *buf, size_t len);

/* The type job j is stored in: its dtype's name, or for a GGUF output the
 * ggml type the writer will use ("Q8_0"). */
const char *weld_plan_job_type_name(const weld_plan *p, const struct weld_job *j);

/* Run the plan, writing the output folder out (atomically). */
int weld_plan_execute(weld_plan *p, const char *out, struct weld_error *err);

/* Passes job i of a finished plan makes over its inputs: between *lo and
 * *hi (equal unless a top-k threshold may need more passes, DESIGN 7). */
void weld_plan_job_passes(const weld_plan *p, size_t i, int *lo, int *hi);

/* Top-k selections per source that job j makes under options o (DESIGN
 * 4.1): 1 for ties, 2 for breadcrumbs, ... */
int weld_job_selections(const struct weld_merge_opts *o, const struct weld_job *j);

/* Can tensor t feed an output shaped like ref? 0: same shape; 1: an
 * embedding-like tensor (by name) with more rows, whose first rows are
 * used; -1: no. */
int weld_shape_fit(const char *name, const struct weld_tensor_info *t,
		   const struct weld_tensor_info *ref);
/* "[4096, 11008]" */
void weld_shape_text(const struct weld_tensor_info *t, char *buf, size_t len);

/* The method's name as weld's commands spell it. */
const char *weld_method_name(enum weld_method m);

/* The error for tensor `tensor` of m, found holding NaN or +-Inf: it names
 * the model, its file and the count over the whole tensor. Returns -1. */
int weld_nonfinite_error(const weld_model *m, size_t tensor, struct weld_error *err);

/* DESIGN 4.9: the key of (tensor name, model number, seed), and the keep
 * decision for element j with density d. */
uint64_t weld_rng_key(const char *tensor, int model_number, uint64_t seed);
double weld_rng_uniform(uint64_t key, uint64_t j);
/* The same decision in integers: element j is kept iff its draw is below
 * weld_rng_threshold(d); weld_rng_keep fills keep[i] for j = first + i. */
uint64_t weld_rng_threshold(double d);
void weld_rng_keep(uint64_t key, uint64_t first, size_t n, uint64_t thr, unsigned char *keep);

/*
 * Top-k selection over an array, without sorting it (radix select over the
 * bits of |x|). Fills *thresh with the k-th largest |x| (as raw f32 bits)
 * and *n_equal_keep with how many elements equal to it are kept (the ones
 * with the lowest positions). k == 0 selects nothing; k >= n everything.
 * scratch must hold n uint32_t; n <= UINT32_MAX (the plan refuses longer
 * rows with --scope row).
 */
struct weld_topk {
	uint32_t thresh;     /* key of the k-th largest |x| */
	uint64_t keep_equal; /* elements with key == thresh to keep */
	bool all, none;
};
void weld_topk_select(const float *x, size_t n, uint64_t k, uint32_t *scratch,
		      struct weld_topk *out);
/* The first digit's counts of x's keys (the top 11 bits, even and odd
 * positions apart) and its largest key: weld_topk_count takes them once for
 * several selections over the same x, weld_topk_select_counted selects as
 * weld_topk_select does from them (first may be NULL when k == 0 or
 * k >= n). */
struct weld_topk_counts {
	uint32_t c0[1u << 11], c1[1u << 11];
	uint32_t top;
};
void weld_topk_count(const float *x, size_t n, struct weld_topk_counts *c);
void weld_topk_select_counted(const float *x, size_t n, uint64_t k,
			      const struct weld_topk_counts *first, uint32_t *scratch,
			      struct weld_topk *out);
/* Apply a selection: keep[j] = 1 for the selected elements of x, given
 * that equal_before elements equal to the threshold came before x[0] in
 * the unit. Returns how many elements of x equal the threshold. */
uint64_t weld_topk_mask(const float *x, size_t n, const struct weld_topk *sel,
			uint64_t equal_before, unsigned char *keep);

#endif
