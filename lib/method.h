/*
 * method.h - the table of merge methods: what each method is called (as a
 * command, in a recipe, in mergekit), which values it takes, its defaults,
 * whether it needs a base, how many models it merges and which passes it
 * makes. The commands (cmd/merge_cmd.c), the recipe parser (lib/recipe/),
 * the planner and the engine ask this table; none of them tests a method
 * by name. The name tables of weld's enumerations and the default sizes
 * live here too.
 *
 * Adding a method:
 *  1. add its value to enum weld_method (merge.h) and its row to the
 *     methods[] table of method.c (name, base rule, model counts);
 *  2. add one row per spelling to spellings[] in method.c: the command
 *     name (WELD_IN_COMMAND) and its mergekit name(s) (WELD_IN_RECIPE),
 *     each with the values it takes (WELD_P_* parameters, WELD_K_* weld
 *     options) and its defaults there (a recipe takes mergekit's);
 *  3. if it reads a value or makes a selection pass under a condition,
 *     say so in weld_method_uses() / weld_method_selections();
 *  4. write its kernel (lib/engine/kernels.c: weld_k_combine's switch) and,
 *     for a new kind of pass, its case in the engine (lib/engine/);
 *  5. a command: cmd/cmd_<name>.c with its usage text, a line in
 *     cmd/main.c and cmd/commands.h, and man/weld-<name>.1; a recipe in
 *     recipes/ and its tests.
 */
#ifndef WELD_METHOD_H
#define WELD_METHOD_H

#include "merge.h"

/* Default sizes of every merge (DESIGN 2): --max-memory and --shard-size. */
#define WELD_DEFAULT_MAX_MEMORY 1000000000ull
#define WELD_DEFAULT_SHARD_SIZE 5000000000ull
/* Elements per block of a statistics pass (plan_impl.h's WELD_BLOCK). */
#define WELD_STATS_BLOCK 4096
/* The most models one merge takes. */
#define WELD_MAX_MODELS 64

/*
 * Parameters: the values a recipe sets in `parameters` (mergekit's names);
 * those with a command-line form have it in weld_param_defs[].option.
 */
enum weld_param {
	WELD_P_WEIGHT, WELD_P_DENSITY, WELD_P_GAMMA, WELD_P_MASK_LAMBDA, WELD_P_SCALE, /* per model */
	WELD_P_LAMBDA, WELD_P_T,                                                       /* per tensor */
	WELD_P_NORMALIZE, WELD_P_RESCALE, WELD_P_INT8_MASK,                            /* whole merge */
	WELD_P_EPSILON,                                                                /* per model */
	WELD_P_SELECT_TOPK,                                                            /* whole merge */
	WELD_P_RAM_EPSILON, WELD_P_R, WELD_P_ALPHA,                                        /* per tensor */
	WELD_P_FILTER_WISE,                                                            /* whole merge */
	WELD_P_NUSLERP_FLATTEN, WELD_P_NUSLERP_ROW_WISE, WELD_P_NORMALIZE_WEIGHTS,     /* whole merge */
	WELD_P_EPS, WELD_P_MAX_ITER, WELD_P_TOL,                                       /* per tensor */
	WELD_P_COMMON_SPACE_FRACTION,                                                  /* whole merge */
	WELD_P_COUNT
};

enum weld_param_kind { WELD_PER_MODEL, WELD_PER_TENSOR, WELD_WHOLE_MERGE };

enum weld_range {
	WELD_RANGE_ANY,     /* any finite number */
	WELD_RANGE_DENSITY, /* (0, 1] */
	WELD_RANGE_GAMMA,   /* [0, 1) */
	WELD_RANGE_UNIT,    /* [0, 1] */
	WELD_RANGE_NONNEG,  /* [0, inf) */
	WELD_RANGE_BOOL,    /* true/false (or 1/0, as YAML booleans become in mergekit) */
	WELD_RANGE_COUNT,   /* an integer >= 0 */
};

struct weld_param_def {
	const char *name;          /* in a recipe and in MODEL:name=value */
	enum weld_param_kind kind;
	enum weld_range range;
};
extern const struct weld_param_def weld_param_defs[WELD_P_COUNT];

/*
 * weld's own options: on the command line (--scope) and in a recipe's
 * `weld` object ("scope"). The last four every merge takes; MASKS
 * (--save-masks, --apply-mask) exists only on the command line.
 */
enum weld_key {
	WELD_K_SCOPE, WELD_K_SEED, WELD_K_SIGN, WELD_K_RESCALE, WELD_K_COMBINE, WELD_K_TRIM,
	WELD_K_FROM, WELD_K_K, WELD_K_MASKS,
	WELD_K_SHARD_SIZE, WELD_K_MAX_MEMORY, WELD_K_ALLOW_MISSING, WELD_K_COPY_FILES,
	WELD_K_ALLOW_NONFINITE,
	WELD_K_CLIP,
	WELD_K_PLUS,        /* weld ram --plus: ramplus_tl (command line only) */
	WELD_K_SVD_EXCLUDE, /* the SVD methods: tensors not decomposed (a regex) */
	WELD_K_COUNT
};
/* The name of each key in a recipe's weld object (NULL: not there). */
extern const char *const weld_key_names[WELD_K_COUNT];

#define WELD_PB(p) (1u << (p))
#define WELD_KB(k) (1u << (k))
#define WELD_K_GENERAL (WELD_KB(WELD_K_SHARD_SIZE) | WELD_KB(WELD_K_MAX_MEMORY) | \
			WELD_KB(WELD_K_ALLOW_MISSING) | WELD_KB(WELD_K_COPY_FILES) | \
			WELD_KB(WELD_K_ALLOW_NONFINITE))

/* Names of weld's enumerations, in enum order, NULL-terminated. */
extern const char *const weld_scope_names[];   /* tensor row model */
extern const char *const weld_sign_names[];    /* sum count */
extern const char *const weld_rescale_names[]; /* inverse l1 none */
extern const char *const weld_combine_names[]; /* sum ties */
extern const char *const weld_from_names[];    /* ta ties */

/* Index of s in a NULL-terminated name list, or -1. */
int weld_name_index(const char *const *names, const char *s);

/* How a method uses the base model. */
enum weld_base_rule {
	WELD_BASE_NONE,     /* no base: a base_model must also be listed as a model */
	WELD_BASE_REQUIRED, /* task vectors: every tensor is merged against the base */
	WELD_BASE_DONOR,    /* passthrough: the base only gives config.json & co */
	WELD_BASE_OPTIONAL, /* task vectors when a base is given, else the models themselves */
};

/* Where a spelling of a method is accepted. */
enum { WELD_IN_COMMAND = 1 << 0, WELD_IN_RECIPE = 1 << 1 };

/* One spelling of a method: a command, a recipe name, or both. */
struct weld_method_spelling {
	const char *name;
	enum weld_method method;
	unsigned where;               /* WELD_IN_* */
	unsigned params;              /* WELD_PB() of the parameters it takes */
	unsigned keys;                /* WELD_KB() of the options it takes (beyond the general ones) */
	enum weld_base_rule base;
	/* defaults */
	double density, gamma;
	bool normalize;
	enum weld_rescale rescale;
	enum weld_combine combine;
	bool combine_fixed;           /* the name says sum or ties */
	const char *summary;          /* one line for 'weld help' (commands) */
	bool t_distance;              /* t is a distance (any number), not a fraction in [0, 1] */
	bool plus;                    /* ram: the name is ramplus_tl */
	bool weight_required;         /* a recipe gives every model a weight (mergekit requires it) */
	/* a recipe's other name for lambda (FusionBench's: tsv_m's alpha,
	 * iso's scaling_factor), or NULL */
	const char *lambda_alias;
};

/* The spelling called name and accepted in where (WELD_IN_*), or NULL. */
const struct weld_method_spelling *weld_method_find(const char *name, unsigned where);
/* The i-th spelling accepted in where, in table order, or NULL past the end. */
const struct weld_method_spelling *weld_method_spelling_at(size_t i, unsigned where);
/* Does some spelling of method m take option k (then plans show it)? */
bool weld_method_takes(enum weld_method m, enum weld_key k);
/* Is name a mergekit method weld does not implement? */
bool weld_method_mergekit_only(const char *name);
/* The range of parameter p's values for spelling s (weld_param_defs[p]'s,
 * unless the spelling says otherwise). */
enum weld_range weld_param_range(const struct weld_method_spelling *s, enum weld_param p);
/* The recipe name of a merge made by spelling s with options o (a command
 * whose options select another recipe name: weld ram --plus = ramplus_tl). */
const char *weld_method_recipe_name(const struct weld_method_spelling *s,
				    const struct weld_merge_opts *o);

/* Defaults every method shares (weld_method_default covers the rest). */
#define WELD_DEFAULT_WEIGHT 1.0
#define WELD_DEFAULT_LAMBDA 1.0
#define WELD_DEFAULT_GAMMA 0.01
#define WELD_DEFAULT_MASK_LAMBDA 0.6
#define WELD_DEFAULT_K 2
#define WELD_DEFAULT_EPSILON 0.15
#define WELD_DEFAULT_CLIP 0.0001
#define WELD_DEFAULT_SELECT_TOPK 1.0
#define WELD_DEFAULT_RAM_EPSILON 1e-5
#define WELD_DEFAULT_RAM_R 0.1
#define WELD_DEFAULT_RAM_ALPHA 0.2
#define WELD_DEFAULT_MULTISLERP_EPS 1e-8
#define WELD_DEFAULT_KARCHER_MAX_ITER 10
#define WELD_DEFAULT_KARCHER_TOL 1e-5
#define WELD_DEFAULT_COMMON_SPACE_FRACTION 0.8

/* The default of parameter p for a spelling; false when it has none (t,
 * scale, rescale, int8_mask). */
bool weld_method_default(const struct weld_method_spelling *s, enum weld_param p, double *out);

/* Fill o with the defaults of spelling s (every field; callbacks NULL). */
void weld_merge_opts_init(struct weld_merge_opts *o, const struct weld_method_spelling *s);

/* The method's name as weld's commands and plans spell it. */
const char *weld_method_name(enum weld_method m);
/* How method m uses the base. */
enum weld_base_rule weld_method_base(enum weld_method m);
/* Sources (models besides the base) a job of method m takes: [min, max]. */
void weld_method_sources(enum weld_method m, size_t *min, size_t *max);

/* Does a merge with options o (method o->method, or m for one job) read
 * parameter p? (consensus reads density only when it trims: --from ties.) */
bool weld_method_uses(const struct weld_merge_opts *o, enum weld_method m, enum weld_param p);
/* Does it elect a sign per element (TIES steps 2-3)? */
bool weld_method_elects_signs(const struct weld_merge_opts *o, enum weld_method m);

/* Does method m merge task vectors (delta = x - base) rather than x? */
bool weld_method_task_vectors(enum weld_method m);
/* May method m crop an embedding with more rows (a larger vocabulary) to
 * the reference's rows (METHODS 0)? */
bool weld_method_crops_vocab(enum weld_method m);

/*
 * The statistics pass of a job (before APPLY, over the whole tensor): the
 * number of sums it takes per block of WELD_BLOCK elements, 0 when it makes
 * none. ramplus_tl: per source S_i and U_i (METHODS 10), in that order;
 * model_stock (per tensor, not filter_wise): the Gram matrix of the task
 * vectors, its upper triangle row by row (weld_k_gram); nuslerp (flattened),
 * multislerp: that of the task vectors, or of the models without a base;
 * karcher: that of the inputs.
 */
size_t weld_job_stats(const struct weld_merge_opts *o, const struct weld_job *j);
/* The totals of that pass: the same number, except for nuslerp along dim 0
 * (nuslerp_row_wise), whose blocks hold the sums of the columns they touch,
 * 3 per column, and whose totals 3 per column of the tensor. */
size_t weld_job_stats_total(const struct weld_merge_opts *o, const struct weld_job *j);
/* nuslerp along dim 0: the number of vectors (columns), elements apart. */
uint64_t weld_job_columns(const struct weld_job *j);
/* Does it drop elements at random (DESIGN 4.9)? */
bool weld_method_random_drop(enum weld_method m);
/* Does it make an L1 pass (dare --rescale l1: sums of |delta| and of its
 * kept part per unit) before APPLY? */
bool weld_method_l1_rescale(const struct weld_merge_opts *o, enum weld_method m);
/* Are its units (top-k, L1) rows, taken inside APPLY (--scope row)? */
bool weld_method_row_units(const struct weld_merge_opts *o, enum weld_method m);
/* Does it drop elements with a keep probability from their rank in the row
 * (della: always row units; with --rescale l1 an L1 pass over the tensor)? */
bool weld_method_rank_drop(enum weld_method m);
/* Does it weigh task-vector entries by PCB's balancing scores (its own
 * statistics passes and APPLY, pcb_pass.c)? */
bool weld_method_pcb(enum weld_method m);
/* Does it keep the positions of the largest variance across models and
 * weigh models by their energy (sce: its own passes and APPLY,
 * sce_pass.c)? */
bool weld_method_sce(enum weld_method m);
/* Does it take the base's value where an importance (|x - base| times the
 * row's KL divergence) is below a quantile fence (arcee_fusion: its own
 * passes and APPLY, arcee_pass.c)? */
bool weld_method_arcee(enum weld_method m);
/* Does it decompose each 2-D tensor whole (tsv_m, iso_c, iso_cts: a
 * whole-matrix job, svd_pass.c)? */
bool weld_method_svd(enum weld_method m);
/* Does it take mergekit's `rescale` (the random-drop methods)? */
bool weld_method_rescales(enum weld_method m);
/* The passes: weld_job_selections() (merge.h) top-k selections per source,
 * and k of selection q of source s over a unit of m elements (DESIGN 4.1,
 * 4.6). */
uint64_t weld_method_unit_k(const struct weld_merge_opts *o, const struct weld_job *j, size_t s,
			    int q, uint64_t m);

#endif
