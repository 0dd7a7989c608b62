/*
 * moe.h - M-SMoE expert merging ("Merge, Then Compress", Li et al., ICLR
 * 2024): merge the experts of each MoE layer of one checkpoint into fewer
 * groups, guided by routing statistics.
 *
 * The interface has two halves:
 *  - pure math on plain arrays (stats validation, group-count allocation,
 *    similarity, grouping, neuron alignment, the frequency-weighted merge),
 *    which touches no file and is what the unit tests exercise (the
 *    linear-assignment solver the alignment uses is in lap.h);
 *  - a driver (weld_moe_layout_detect, weld_moe_plan_build, weld_moe_write)
 *    that applies it to a weld_model and streams the result into a
 *    weld_writer, holding at most one layer's worth of expert rows (bounded
 *    by --max-memory) at a time.
 *
 * Like the rest of the library, nothing here prints or exits: failures
 * return -1 and fill a caller-provided struct weld_error. Every result is
 * independent of the number of OpenMP threads: each output value has one
 * owner and every floating sum runs in a fixed order.
 */
#ifndef WELD_MOE_H
#define WELD_MOE_H

#include "merge.h"

/* eps of the cosine (per norm, as torch.nn.functional.cosine_similarity)
 * and of the merge denominator, as in the reference code (FP32_EPS). */
#define WELD_MOE_EPS 1e-7

/*
 * Sums over weight data are taken block by block: each block of this many
 * consecutive elements of a tensor is summed on its own, and block sums are
 * added in order. Callers that feed data in chunks must start every chunk
 * of a tensor at a multiple of this length, so that the result does not
 * depend on the chunk size.
 */
#define WELD_MOE_BLOCK 1024

/* ---------------------------------------------------------------- routing statistics */

/*
 * Usage statistics of the MoE layers, parsed from the --stats file:
 *
 *     {"layers": {"L": {"frequency": [E numbers],
 *                       "similarity": [[E numbers] x E]}}, "metadata": ...}
 *
 * Every MoE layer needs an entry, and only MoE layers may have one; the
 * frequencies must be finite and non-negative with a positive sum, and are
 * stored normalised to sum 1 per layer (so raw counts are accepted). The
 * similarity matrix is optional per layer (finite values; row e, column c
 * is how similar expert e is to expert c). A top-level "metadata" member is
 * ignored; any other unknown key is an error.
 */
struct weld_moe_stats {
	int n_layers;      /* as passed to weld_moe_stats_parse() */
	int n_experts;
	double *freq;      /* n_layers x n_experts, rows in the caller's layer order */
	double **sim;      /* n_layers pointers to n_experts^2 values, or NULL */
};

/*
 * Parse and validate the stats text (len bytes, need not be NUL-terminated)
 * for the MoE layers layer_ids[0..n_layers) (model layer indices, the "L" of
 * the JSON keys), each with n_experts experts. Messages start with fname
 * and name the JSON path ("stats.json: layers.3.frequency[5]: negative
 * value -1"). Returns 0 and fills *st (free with weld_moe_stats_release), or
 * -1 with *st empty.
 */
int weld_moe_stats_parse(struct weld_moe_stats *st, const char *text, size_t len,
			 const char *fname, const int *layer_ids, int n_layers,
			 int n_experts, struct weld_error *err);
/* Free what weld_moe_stats_parse() allocated; st may be NULL or empty. */
void weld_moe_stats_release(struct weld_moe_stats *st);

/* The whole text of the stats file at path, NUL-terminated (*len bytes
 * before the NUL; the caller frees *text). Returns 0, or -1. */
int weld_moe_read_stats(const char *path, char **text, size_t *len, struct weld_error *err);

/* ---------------------------------------------------------------- group counts and grouping */

/*
 * Number of groups per layer (out[n_layers]).
 *  - freq == NULL (no statistics) or uniform: every layer gets `groups`;
 *  - otherwise M-SMoE's global allocation: the threshold is the
 *    (groups * n_layers)-th largest of all layers' frequencies pooled, and
 *    layer l gets #{e : freq[l][e] >= threshold}, at least 1 (ties at the
 *    threshold all count, so the total may exceed groups * n_layers).
 * Returns 0, or -1 if groups is not in [1, n_experts] or an allocation fails.
 */
int weld_moe_allocate(const double *freq, int n_layers, int n_experts, int groups,
		      bool uniform, int *out, struct weld_error *err);

/*
 * Group the n experts of one layer into g groups.
 * The dominant experts are the g most used (freq descending, ties: lower
 * index); dominant[k] is the expert that founds group k (so groups are
 * numbered in usage order). Every other expert e joins the group of the
 * dominant c with the largest sim[e * n + c], ties going to the dominant
 * that comes first in usage order. freq == NULL means uniform usage.
 * label[e] receives e's group. Returns 0, or -1 on bad arguments.
 */
int weld_moe_group(const double *freq, const double *sim, int n, int g,
		   int *label, int *dominant, struct weld_error *err);

/* ---------------------------------------------------------------- similarity */

/*
 * Add the pairwise dot products of n vectors to gram (n x n, row-major; only
 * the upper triangle i <= j is touched): gram[i][j] += sum_k x[i][k] x[j][k]
 * over k in [0, len). Products and sums are in double; see WELD_MOE_BLOCK
 * for the order of the sums. Parallel over pairs.
 */
void weld_moe_gram_update(double *gram, int n, const float *const *x, size_t len);

/*
 * Turn a Gram matrix (upper triangle filled) into the M-SMoE similarity
 * sim[i][j] = (cos(x_i, x_j) + 1) / 2, with
 * cos = <x_i, x_j> / (max(|x_i|, eps) * max(|x_j|, eps)), eps = 1e-7, and
 * sim[i][i] = 1 (the reference starts from the identity). sim is n x n,
 * symmetric.
 */
void weld_moe_gram_similarity(const double *gram, int n, double *sim);

/* Similarity of n rows of length dim (rows is n x dim, row-major): the
 * router rule of --similarity router. sim is n x n. Returns 0, or -1 if out
 * of memory. */
int weld_moe_row_similarity(const float *rows, int n, size_t dim, double *sim,
			    struct weld_error *err);

/* ---------------------------------------------------------------- merge */

/*
 * Merge coefficients of a group: coef[k] = f_k / (sum_k f_k + 1e-7) for the
 * frequencies f_k = freq[members[k]], computed in double (the sum in member
 * order) and rounded to float. A group whose frequencies are all zero gets
 * the plain mean 1/n (the formula would zero the experts). freq == NULL
 * means uniform usage (1 / n_experts each; the caller knows n_experts).
 */
void weld_moe_merge_coefs(const double *freq, double uniform_freq,
			  const int *members, int n, float *coef);

/*
 * dst[k] = sum_m coef[m] * src[m][k] for k in [0, len), accumulated in
 * float32 in member order (m = 0, 1, ...), on the calling thread.
 */
void weld_moe_merge(float *dst, const float *const *src, const float *coef, int n,
		    size_t len);

/* ---------------------------------------------------------------- neuron alignment */

/*
 * One expert's FFN as the alignment sees it: the F hidden neurons are the
 * rows of gate (W1, [F, H]) and up (W3, [F, H], may be NULL) and the
 * columns of down (W2, [H, F]). All float32, row-major.
 */
struct weld_moe_ffn {
	const float *gate;
	const float *up;
	const float *down;
};

/*
 * Weight matching of a target expert to a reference expert: perm[r] is the
 * target neuron that goes to position r, chosen to maximise
 * sum_r C[r][perm[r]] with C = W1r W1t^T + W3r W3t^T + W2r^T W2t (an F x F
 * matrix; float32 partial sums over blocks of 64 elements, added in
 * double), solved exactly by weld_lap_solve() (lap.h).
 * Applying it (target rows of W1 and W3, and columns of W2, taken in the
 * order perm) leaves the expert's function unchanged.
 * Needs F*F doubles and 2*F*(3H) floats of scratch. Returns 0, or -1.
 */
int weld_moe_align(const struct weld_moe_ffn *ref, const struct weld_moe_ffn *tgt,
		   int64_t f, int64_t h, int *perm, struct weld_error *err);

/* ---------------------------------------------------------------- config.json */

#define WELD_MOE_MAX_EXPERTS 65536
#define WELD_MOE_N_EXPERT_KEYS 3

/* What config.json says about the experts (moe_config.c). -1: absent. */
struct weld_moe_config {
	char *model_type;        /* or NULL (owned) */
	int experts_per_tok;     /* num_experts_per_tok, or 0 */
	/* num_local_experts, num_experts, n_routed_experts */
	int experts[WELD_MOE_N_EXPERT_KEYS];
	int first_dense;         /* first_k_dense_replace */
	int n_group, topk_group; /* DeepSeek's group-limited routing */
	bool group_top2;         /* topk_method "noaux_tc": a group scores its best 2 */
};

/* The routing keys the compact layout writes. */
struct weld_moe_compact {
	int experts;             /* every expert-count key present */
	int n_group, topk_group; /* -1 when config.json has none */
	/* what the output's config.json edit does: set the counts above (the
	 * compact layout), and remove quantization_config (FP8 inputs with
	 * scales, written decoded) */
	bool set_experts, drop_quantization;
};

/* Parse config.json (text may be NULL: all absent). Keys that constrain
 * routing (first_k_dense_replace, n_group, topk_group) must be integers in
 * range when present. Returns 0, or -1; free with weld_moe_config_release. */
int weld_moe_config_parse(struct weld_moe_config *c, const char *text, size_t len,
			  struct weld_error *err);
void weld_moe_config_release(struct weld_moe_config *c);
/* The name of expert-count key k (0 <= k < WELD_MOE_N_EXPERT_KEYS). */
const char *weld_moe_expert_key(int k);

/*
 * config.json against the checkpoint: every expert count present equals
 * n_experts, no MoE layer (the first is first_layer) lies below
 * first_k_dense_replace, and group-limited routing is valid: n_group
 * divides E, topk_group <= n_group, num_experts_per_tok <= topk_group *
 * E / n_group, and with noaux_tc at least 2 experts per group.
 */
int weld_moe_config_check(const struct weld_moe_config *c, int n_experts, int first_layer,
			  struct weld_error *err);

/*
 * The routing keys of a compact output of g experts per layer: n_group and
 * topk_group kept when still valid for g; else the largest n_group' <
 * n_group dividing g that is valid with topk_group' = ceil(topk_group *
 * n_group' / n_group) (raised until the experts per token fit), down to
 * n_group' = 1. Refused, with the reason, when no choice is valid.
 */
int weld_moe_config_compact(const struct weld_moe_config *c, int g, struct weld_moe_compact *out,
			    struct weld_error *err);

/* ---------------------------------------------------------------- MoE layout of a checkpoint */

enum weld_moe_role {
	WELD_MOE_OTHER = 0,  /* copied through */
	WELD_MOE_EXPERT,     /* <prefix>experts.<e>.<suffix>, or stacked <prefix>experts.<suffix> */
	WELD_MOE_ROUTER,     /* <prefix>gate.*: first dimension = number of experts */
};

/* How a tensor of an expert is permuted by --align. */
enum weld_moe_axis {
	WELD_MOE_AXIS_NONE = -1,
	WELD_MOE_AXIS_ROWS = 0,   /* gate/up (w1/w3): rows are the FFN neurons */
	WELD_MOE_AXIS_COLS = 1,   /* down (w2) 2-D: columns are the FFN neurons */
	WELD_MOE_AXIS_HALVES = 2, /* fused gate_up: rows r and F + r are neuron r */
};

struct weld_moe_tensor_role {
	enum weld_moe_role role;
	int layer;    /* index into weld_moe_layout.layers, or -1 */
	int expert;   /* expert index, or -1 (not an expert, or stacked: all) */
	int suffix;   /* index into weld_moe_layout.suffix, or -1 */
};

struct weld_moe_layer {
	int index;             /* L of "model.layers.L." */
	char *prefix;          /* "model.layers.3.block_sparse_moe." (owned) */
	int64_t router;        /* tensor index of <prefix>gate.weight, or -1 */
	int64_t ffn;           /* F of this layer's experts */
	size_t *tensor;        /* n_experts x n_suffix tensor indices */
	uint64_t *slice;       /* per suffix: elements of one expert's matrix */
	int64_t *rows;         /* per suffix: its rows (first dimension) */
};

struct weld_moe_layout {
	const char *style;       /* "mixtral" or "qwen" (static strings) */
	struct weld_moe_config cfg; /* from config.json (owned) */
	int n_experts;
	int64_t hidden;          /* H */
	int n_suffix;
	char **suffix;           /* "w1.weight", ... sorted by name (owned) */
	enum weld_moe_axis *axis;/* per suffix, for --align */
	int gate_suffix, up_suffix, down_suffix;  /* main weights: w1, w3, w2 */
	bool fused;              /* gate and up in one gate_up matrix [2F, H]
				  * (gate rows first): gate_suffix == up_suffix */
	bool stacked;            /* each suffix is one [E, ...] tensor per layer,
				  * expert e its e-th slice */
	int n_layers;
	struct weld_moe_layer *layers;  /* sorted by index */
	size_t n_tensors;
	struct weld_moe_tensor_role *roles;  /* per model tensor */
};

/*
 * Find the MoE structure of a checkpoint from its tensor list (n entries)
 * and its config.json text (config may be NULL: then the tensor names
 * alone decide). Recognised: Mixtral (model.layers.L.block_sparse_moe.
 * experts.E.{w1,w2,w3}.weight, router ...block_sparse_moe.gate.weight) and
 * the Qwen2-MoE / Qwen3-MoE / DeepSeek family (model.layers.L.mlp.
 * experts.E.{gate_proj,up_proj,down_proj}.weight, router
 * model.layers.L.mlp.gate.weight), there also with gate and up fused
 * (experts.E.gate_up_proj.weight [2F, H]) or every expert stacked in 3-D
 * tensors (experts.gate_up_proj [E, 2F, H] and experts.down_proj
 * [E, H, F], transformers' layout). Shared experts and dense layers are
 * plain tensors. Checks that every layer has experts 0..E-1 with the same
 * tensors and shapes, floating dtypes, and that E agrees with config.json
 * (num_local_experts / num_experts / n_routed_experts). Returns 0 and fills
 * *lo (free with weld_moe_layout_release), or -1.
 */
int weld_moe_layout_detect(struct weld_moe_layout *lo,
			   const struct weld_tensor_info *const *t, size_t n,
			   const char *config, size_t config_len,
			   struct weld_error *err);
void weld_moe_layout_release(struct weld_moe_layout *lo);

/* The text of the config.json beside m's files, for weld_moe_opts.config
 * (the caller frees *text). A missing config.json is not an error: 0 with
 * *text NULL. Returns 0, or -1 if it exists and cannot be read. */
int weld_moe_read_config(const weld_model *m, char **text, size_t *len,
			 struct weld_error *err);

/* ---------------------------------------------------------------- plan and write */

enum weld_moe_similarity {
	WELD_MOE_SIM_ROUTER = 0,  /* cosine of router rows (default) */
	WELD_MOE_SIM_WEIGHT,      /* cosine of the concatenated expert weights */
};

enum weld_moe_out_layout {
	WELD_MOE_OUT_ALIAS = 0,   /* E experts, members hold their group's weights */
	WELD_MOE_OUT_COMPACT,     /* G experts per layer, router rows of the dominants */
};

struct weld_moe_opts {
	int groups;                       /* --groups G, >= 1 */
	bool uniform_groups;              /* --uniform-groups */
	enum weld_moe_similarity similarity;
	enum weld_moe_out_layout layout;
	bool align;                       /* --align */
	int out_dtype;                    /* enum weld_dtype, or -1 for auto */
	uint64_t max_memory;              /* bytes; buffers are sized from it */
	int threads;                      /* OpenMP threads, 0 = the default */
	bool allow_nonfinite;             /* merge experts holding NaN or +-Inf */
	const char *stats;                /* stats text, or NULL */
	size_t stats_len;
	const char *stats_name;           /* for messages */
	const char *config;               /* config.json text, or NULL */
	size_t config_len;
};

/* The decisions for every MoE layer, made before any output is written. */
struct weld_moe_plan {
	struct weld_moe_layout layout;
	struct weld_moe_opts opts;        /* copy; the strings stay the caller's */
	struct weld_moe_stats stats;      /* empty without --stats */
	int *groups;                      /* per layer */
	int *label;                       /* n_layers x E: group of each expert */
	int *dominant;                    /* n_layers x E: first groups[l] valid */
	struct weld_moe_compact compact;  /* config.json of --layout compact */
	/* where the similarities came from: "stats", "router", "weight",
	 * "stats+router", "stats+weight", or "none" (no layer needed one) */
	const char *sim_source;
	int n_stats_sim;                  /* layers whose similarity came from stats */
	uint64_t align_bytes;             /* scratch --align needs (0 without) */
	double align_work;                /* rough operation count of --align */
};

/*
 * Detect the layout, validate the stats, allocate group counts, compute the
 * similarities (reading router rows, or every expert's weights for
 * --similarity weight) and group every layer. All checks that can fail
 * (compact layout with unequal group counts, num_experts_per_tok > G,
 * --align over the memory budget, ...) happen here, before any output is
 * opened. Returns 0 and fills *p (free with weld_moe_plan_release), or -1.
 */
int weld_moe_plan_build(struct weld_moe_plan *p, const weld_model *m,
			const struct weld_moe_opts *o, struct weld_error *err);
void weld_moe_plan_release(struct weld_moe_plan *p);

/* What weld records of an expert merge in its output (__metadata__.
 * weld_recipe): the model and the stats file as absolute paths, and every
 * setting that changes the bytes written (not -j, --max-memory or -o), as
 * compact JSON; the caller frees it. NULL when out of memory. */
char *weld_moe_recipe_json(const char *model, const char *stats_path,
			   const struct weld_moe_opts *o, uint64_t shard_size, bool copy_files);

/* The expert_groups.json text of a plan: layer -> expert -> group, plus the
 * dominant expert of each group. Caller frees; NULL if out of memory. */
char *weld_moe_groups_json(const struct weld_moe_plan *p);

/* "alias" or "compact", as --layout and expert_groups.json spell them. */
const char *weld_moe_out_layout_name(enum weld_moe_out_layout layout);
/* The names of the two enumerations, in enum order, NULL-terminated
 * (--similarity, --layout). */
extern const char *const weld_moe_similarity_names[];
extern const char *const weld_moe_layout_names[];

/* The fewest and the most groups of any layer of a plan, and their sum. */
void weld_moe_plan_group_range(const struct weld_moe_plan *p, int *min, int *max,
			       long *total);

/* The widest FFN (F) of any layer: what --align's O(F^3) cost grows with. */
int64_t weld_moe_plan_max_ffn(const struct weld_moe_plan *p);

/* Called after each output tensor with the input bytes processed so far. */
typedef void (*weld_moe_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Write the merged checkpoint to out_dir. wopts supplies shard size, force,
 * recipe and copy_from; this function adds the torch_dtype of an explicit
 * --dtype, the config edit of the compact layout and expert_groups.json.
 * Streams layer by layer: with --align, per group the permutations of its
 * members are computed first.
 * Returns 0 once the output is committed, or -1 (no output left behind).
 */
int weld_moe_write(const struct weld_moe_plan *p, const weld_model *m,
		   const char *out_dir, const struct weld_writer_opts *wopts,
		   weld_moe_progress_fn progress, void *progress_ctx,
		   struct weld_error *err);

#endif
