/*
 * method.c - the table of merge methods (see method.h for how to add one).
 */
#include "method.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

const struct weld_param_def weld_param_defs[WELD_P_COUNT] = {
	[WELD_P_WEIGHT] = { "weight", WELD_PER_MODEL, WELD_RANGE_ANY },
	[WELD_P_DENSITY] = { "density", WELD_PER_MODEL, WELD_RANGE_DENSITY },
	[WELD_P_GAMMA] = { "gamma", WELD_PER_MODEL, WELD_RANGE_GAMMA },
	[WELD_P_MASK_LAMBDA] = { "mask_lambda", WELD_PER_MODEL, WELD_RANGE_NONNEG },
	[WELD_P_SCALE] = { "scale", WELD_PER_MODEL, WELD_RANGE_ANY },
	[WELD_P_LAMBDA] = { "lambda", WELD_PER_TENSOR, WELD_RANGE_ANY },
	[WELD_P_T] = { "t", WELD_PER_TENSOR, WELD_RANGE_UNIT },
	[WELD_P_NORMALIZE] = { "normalize", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_RESCALE] = { "rescale", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_INT8_MASK] = { "int8_mask", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_EPSILON] = { "epsilon", WELD_PER_MODEL, WELD_RANGE_UNIT },
	[WELD_P_SELECT_TOPK] = { "select_topk", WELD_WHOLE_MERGE, WELD_RANGE_ANY },
	[WELD_P_RAM_EPSILON] = { "epsilon", WELD_PER_TENSOR, WELD_RANGE_NONNEG },
	[WELD_P_R] = { "r", WELD_PER_TENSOR, WELD_RANGE_ANY },
	[WELD_P_ALPHA] = { "alpha", WELD_PER_TENSOR, WELD_RANGE_NONNEG },
	[WELD_P_FILTER_WISE] = { "filter_wise", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_NUSLERP_FLATTEN] = { "nuslerp_flatten", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_NUSLERP_ROW_WISE] = { "nuslerp_row_wise", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_NORMALIZE_WEIGHTS] = { "normalize_weights", WELD_WHOLE_MERGE, WELD_RANGE_BOOL },
	[WELD_P_EPS] = { "eps", WELD_PER_TENSOR, WELD_RANGE_NONNEG },
	[WELD_P_MAX_ITER] = { "max_iter", WELD_PER_TENSOR, WELD_RANGE_COUNT },
	[WELD_P_TOL] = { "tol", WELD_PER_TENSOR, WELD_RANGE_NONNEG },
	[WELD_P_COMMON_SPACE_FRACTION] = { "common_space_fraction", WELD_WHOLE_MERGE, WELD_RANGE_UNIT },
};

const char *const weld_key_names[WELD_K_COUNT] = {
	"scope", "seed", "sign", "rescale", "combine", "trim", "from", "k", NULL,
	"shard_size", "max_memory", "allow_missing", "copy_files", "allow_nonfinite", "clip", NULL,
	"svd_exclude",
};

const char *const weld_scope_names[] = { "tensor", "row", "model", NULL };
const char *const weld_sign_names[] = { "sum", "count", NULL };
const char *const weld_rescale_names[] = { "inverse", "l1", "none", NULL };
const char *const weld_combine_names[] = { "sum", "ties", NULL };
const char *const weld_from_names[] = { "ta", "ties", NULL };

int weld_name_index(const char *const *names, const char *s)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/* ---------------------------------------------------------------- methods */

struct method_row {
	const char *name;
	enum weld_base_rule base;
	size_t min_sources, max_sources;
	bool task_vectors;      /* merges delta = x - base, not x */
	bool random_drop;       /* drops elements at random (DESIGN 4.9) */
};

static const struct method_row methods[] = {
	[WELD_METHOD_COPY] = { "copy", WELD_BASE_NONE, 1, SIZE_MAX, false, false },	/* the others are compared */
	[WELD_METHOD_AVERAGE] = { "average", WELD_BASE_NONE, 1, WELD_MAX_MODELS, false, false },
	[WELD_METHOD_TASK_ARITHMETIC] = { "task-arithmetic", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_TIES] = { "ties", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_DARE] = { "dare", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, true },
	[WELD_METHOD_BREADCRUMBS] = { "breadcrumbs", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_CONSENSUS] = { "consensus", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_SLERP] = { "slerp", WELD_BASE_REQUIRED, 1, 1, false, false },
	[WELD_METHOD_APPLY_MASK] = { "apply-mask", WELD_BASE_REQUIRED, 1, 1, false, false },
	[WELD_METHOD_DELLA] = { .name = "della", .base = WELD_BASE_REQUIRED, .min_sources = 1,
				.max_sources = WELD_MAX_MODELS, .task_vectors = true },
	[WELD_METHOD_PCB] = { .name = "pcb", .base = WELD_BASE_REQUIRED, .min_sources = 1,
			      .max_sources = WELD_MAX_MODELS, .task_vectors = true },
	[WELD_METHOD_SCE] = { .name = "sce", .base = WELD_BASE_REQUIRED, .min_sources = 1,
			      .max_sources = WELD_MAX_MODELS, .task_vectors = true },
	[WELD_METHOD_ARCEE_FUSION] = { .name = "arcee-fusion", .base = WELD_BASE_REQUIRED,
				       .min_sources = 1, .max_sources = 1 },
	[WELD_METHOD_NEARSWAP] = { "nearswap", WELD_BASE_REQUIRED, 1, 1, false, false },
	[WELD_METHOD_RAM] = { "ram", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_MODEL_STOCK] = { "model-stock", WELD_BASE_REQUIRED, 2, WELD_MAX_MODELS, false, false },
	[WELD_METHOD_NUSLERP] = { "nuslerp", WELD_BASE_OPTIONAL, 2, 2, false, false },
	[WELD_METHOD_MULTISLERP] = { "multislerp", WELD_BASE_OPTIONAL, 1, WELD_MAX_MODELS, false, false },
	[WELD_METHOD_KARCHER] = { "karcher", WELD_BASE_NONE, 1, WELD_MAX_MODELS, false, false },
	[WELD_METHOD_TSV_M] = { "tsv-m", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_ISO_C] = { "iso-c", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
	[WELD_METHOD_ISO_CTS] = { "iso-cts", WELD_BASE_REQUIRED, 1, WELD_MAX_MODELS, true, false },
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/*
 * What the methods with statistics passes of their own read and do. A
 * method with a row here says which parameters it reads (uses, or none)
 * instead of weld_method_uses()'s cases.
 */
struct method_stats {
	unsigned uses;          /* WELD_PB() of the parameters it reads */
	bool no_params;         /* it reads none */
	bool rank_drop;         /* della: keep probability by rank in the row */
	bool pcb;               /* PCB's balancing scores */
	bool sce;               /* sce's variance selection and energy weights */
	bool arcee;             /* arcee_fusion's importance quantiles */
	bool rows;              /* its statistics need whole rows in memory */
	bool svd;               /* decomposes 2-D tensors whole (svd_pass.c) */
};

static const struct method_stats stats[] = {
	[WELD_METHOD_DELLA] = { .uses = WELD_PB(WELD_P_WEIGHT) | WELD_PB(WELD_P_DENSITY) |
					WELD_PB(WELD_P_EPSILON) | WELD_PB(WELD_P_LAMBDA) |
					WELD_PB(WELD_P_NORMALIZE),
				.rank_drop = true, .rows = true },
	[WELD_METHOD_PCB] = { .uses = WELD_PB(WELD_P_WEIGHT) | WELD_PB(WELD_P_DENSITY) |
				      WELD_PB(WELD_P_LAMBDA),
			      .pcb = true },
	[WELD_METHOD_SCE] = { .uses = WELD_PB(WELD_P_SELECT_TOPK), .sce = true },
	[WELD_METHOD_ARCEE_FUSION] = { .no_params = true, .arcee = true, .rows = true },
	[WELD_METHOD_TSV_M] = { .uses = WELD_PB(WELD_P_WEIGHT) | WELD_PB(WELD_P_LAMBDA), .svd = true },
	[WELD_METHOD_ISO_C] = { .uses = WELD_PB(WELD_P_WEIGHT) | WELD_PB(WELD_P_LAMBDA), .svd = true },
	[WELD_METHOD_ISO_CTS] = { .uses = WELD_PB(WELD_P_WEIGHT) | WELD_PB(WELD_P_LAMBDA) |
					  WELD_PB(WELD_P_COMMON_SPACE_FRACTION),
				  .svd = true },
};

/* Method m's row of stats[] (all false for the others). */
static const struct method_stats *stats_of(enum weld_method m)
{
	static const struct method_stats none;

	return (unsigned)m < sizeof(stats) / sizeof(stats[0]) ? &stats[m] : &none;
}

/* Methods that refuse a larger vocabulary rather than crop it (METHODS 0). */
static const bool exact_shapes[NMETHODS] = {
	[WELD_METHOD_NEARSWAP] = true, [WELD_METHOD_RAM] = true,
	[WELD_METHOD_MULTISLERP] = true, [WELD_METHOD_KARCHER] = true,
	[WELD_METHOD_SCE] = true, [WELD_METHOD_PCB] = true,
	[WELD_METHOD_TSV_M] = true, [WELD_METHOD_ISO_C] = true, [WELD_METHOD_ISO_CTS] = true,
};

const char *weld_method_name(enum weld_method m)
{
	return (unsigned)m < NMETHODS ? methods[m].name : "?";
}

enum weld_base_rule weld_method_base(enum weld_method m)
{
	return (unsigned)m < NMETHODS ? methods[m].base : WELD_BASE_NONE;
}

void weld_method_sources(enum weld_method m, size_t *min, size_t *max)
{
	*min = (unsigned)m < NMETHODS ? methods[m].min_sources : 1;
	*max = (unsigned)m < NMETHODS ? methods[m].max_sources : 1;
}

bool weld_method_elects_signs(const struct weld_merge_opts *o, enum weld_method m)
{
	switch (m) {
	case WELD_METHOD_TIES: return true;
	case WELD_METHOD_DARE:
	case WELD_METHOD_BREADCRUMBS:
	case WELD_METHOD_DELLA: return o->combine == WELD_COMBINE_TIES;
	case WELD_METHOD_CONSENSUS: return o->from == WELD_FROM_TIES;
	default: return false;
	}
}

bool weld_method_uses(const struct weld_merge_opts *o, enum weld_method m, enum weld_param p)
{
	if (stats_of(m)->uses || stats_of(m)->no_params)
		return (stats_of(m)->uses & WELD_PB(p)) != 0;
	switch (p) {
	case WELD_P_WEIGHT:
		return m != WELD_METHOD_COPY && m != WELD_METHOD_SLERP && m != WELD_METHOD_NEARSWAP &&
		       m != WELD_METHOD_RAM && m != WELD_METHOD_MODEL_STOCK && m != WELD_METHOD_KARCHER;
	case WELD_P_DENSITY:
		return m == WELD_METHOD_TIES || m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS ||
		       (m == WELD_METHOD_CONSENSUS && o->from == WELD_FROM_TIES);
	case WELD_P_GAMMA:
		return m == WELD_METHOD_BREADCRUMBS;
	case WELD_P_MASK_LAMBDA:
		return m == WELD_METHOD_CONSENSUS;
	case WELD_P_LAMBDA:
		return m == WELD_METHOD_TASK_ARITHMETIC || m == WELD_METHOD_TIES ||
		       m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS ||
		       m == WELD_METHOD_CONSENSUS;
	case WELD_P_T:
		return m == WELD_METHOD_SLERP || m == WELD_METHOD_NEARSWAP;
	case WELD_P_RAM_EPSILON:
		return m == WELD_METHOD_RAM;
	case WELD_P_R:
	case WELD_P_ALPHA:
		return m == WELD_METHOD_RAM && o->ram_plus;
	case WELD_P_FILTER_WISE:
		return m == WELD_METHOD_MODEL_STOCK;
	case WELD_P_NUSLERP_FLATTEN:
	case WELD_P_NUSLERP_ROW_WISE:
		return m == WELD_METHOD_NUSLERP;
	case WELD_P_NORMALIZE_WEIGHTS:
	case WELD_P_EPS:
		return m == WELD_METHOD_MULTISLERP;
	case WELD_P_MAX_ITER:
	case WELD_P_TOL:
		return m == WELD_METHOD_KARCHER;
	case WELD_P_NORMALIZE:
		return m == WELD_METHOD_AVERAGE || m == WELD_METHOD_TASK_ARITHMETIC ||
		       m == WELD_METHOD_TIES || m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS;
	default:
		return false;
	}
}

bool weld_method_task_vectors(enum weld_method m)
{
	return (unsigned)m < NMETHODS && methods[m].task_vectors;
}

bool weld_method_crops_vocab(enum weld_method m)
{
	return (unsigned)m < NMETHODS && !exact_shapes[m];
}

size_t weld_job_stats(const struct weld_merge_opts *o, const struct weld_job *j)
{
	switch (j->method) {
	case WELD_METHOD_RAM:
		return o->ram_plus ? 2 * j->nsrc : 0;
	case WELD_METHOD_NUSLERP:
		if (o->nuslerp_columns)
			return 3 * (weld_job_columns(j) < WELD_STATS_BLOCK ? weld_job_columns(j)
									   : WELD_STATS_BLOCK);
		return o->scope == WELD_SCOPE_ROW ? 0 : 3;
	case WELD_METHOD_MODEL_STOCK:
		return o->scope == WELD_SCOPE_ROW ? 0 : j->nsrc * (j->nsrc + 1) / 2;
	case WELD_METHOD_MULTISLERP:
	case WELD_METHOD_KARCHER:
		return j->nsrc * (j->nsrc + 1) / 2;
	default:
		return 0;
	}
}

size_t weld_job_stats_total(const struct weld_merge_opts *o, const struct weld_job *j)
{
	if (j->method == WELD_METHOD_NUSLERP && o->nuslerp_columns)
		return 3 * weld_job_columns(j);
	return weld_job_stats(o, j);
}

uint64_t weld_job_columns(const struct weld_job *j)
{
	return j->ndim && j->shape[0] > 0 ? j->nelem / (uint64_t)j->shape[0] : 1;
}

bool weld_method_random_drop(enum weld_method m)
{
	return (unsigned)m < NMETHODS && methods[m].random_drop;
}

bool weld_method_l1_rescale(const struct weld_merge_opts *o, enum weld_method m)
{
	return o->rescale == WELD_RESCALE_L1 && weld_method_random_drop(m);
}

bool weld_method_row_units(const struct weld_merge_opts *o, enum weld_method m)
{
	/* --scope row, or model_stock's filter_wise or nuslerp's rows, which set
	 * it; or a method whose statistics need whole rows */
	return (o->scope == WELD_SCOPE_ROW &&
		(weld_method_takes(m, WELD_K_SCOPE) || weld_method_uses(o, m, WELD_P_FILTER_WISE) ||
		 weld_method_uses(o, m, WELD_P_NUSLERP_FLATTEN))) ||
	       stats_of(m)->rows;
}
bool weld_method_rank_drop(enum weld_method m)
{
	return stats_of(m)->rank_drop;
}

bool weld_method_pcb(enum weld_method m)
{
	return stats_of(m)->pcb;
}

bool weld_method_sce(enum weld_method m)
{
	return stats_of(m)->sce;
}

bool weld_method_arcee(enum weld_method m)
{
	return stats_of(m)->arcee;
}

bool weld_method_svd(enum weld_method m)
{
	return stats_of(m)->svd;
}

bool weld_method_rescales(enum weld_method m)
{
	return weld_method_random_drop(m) || weld_method_rank_drop(m);
}

uint64_t weld_method_unit_k(const struct weld_merge_opts *o, const struct weld_job *j, size_t s,
			    int q, uint64_t m)
{
	/* dare selects only for --trim, after its drop */
	double d = weld_method_random_drop(j->method) ? o->trim : j->src[s].density;
	uint64_t keep = d >= 1 ? m : (uint64_t)floor(d * (double)m), top;

	if (j->method != WELD_METHOD_BREADCRUMBS)
		return keep;
	/* breadcrumbs: selection 0 keeps the top + keep largest, selection 1
	 * drops the top (DESIGN 4.6) */
	top = (uint64_t)floor(j->gamma * (double)m);
	if (top + keep > m)
		top = m - keep;
	return q == 0 ? top + keep : top;
}

int weld_job_selections(const struct weld_merge_opts *o, const struct weld_job *j)
{
	switch (j->method) {
	case WELD_METHOD_TIES:
		return 1;
	case WELD_METHOD_BREADCRUMBS:
		return 2;
	case WELD_METHOD_DARE:
		return o->combine == WELD_COMBINE_TIES && o->trim > 0;
	case WELD_METHOD_CONSENSUS:
		return o->from == WELD_FROM_TIES;
	default:
		return 0;
	}
}

/* ---------------------------------------------------------------- spellings */

#define P(x) WELD_PB(WELD_P_##x)
#define K(x) WELD_KB(WELD_K_##x)
#define GTA_PARAMS (P(WEIGHT) | P(LAMBDA) | P(NORMALIZE) | P(INT8_MASK))
#define BOTH (WELD_IN_COMMAND | WELD_IN_RECIPE)

/*
 * In a recipe, mergekit's names take mergekit's defaults: density 1
 * everywhere, normalize only for ties, rescale (L1) for the dare pair.
 * weld's names (average, task-arithmetic, dare, consensus) take the
 * defaults of weld's commands, which are the same row. ties and
 * breadcrumbs are both: the recipe row has mergekit's defaults, the
 * command row the paper's (DESIGN 5).
 */
static const struct weld_method_spelling spellings[] = {
	{ .name = "linear", .method = WELD_METHOD_AVERAGE, .where = WELD_IN_RECIPE,
	  .params = P(WEIGHT) | P(NORMALIZE), .base = WELD_BASE_NONE,
	  .density = 1, .normalize = true, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .weight_required = true },
	{ .name = "average", .method = WELD_METHOD_AVERAGE, .where = BOTH,
	  .params = P(WEIGHT) | P(NORMALIZE), .base = WELD_BASE_NONE,
	  .density = 1, .normalize = true, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "weighted mean of N models" },
	{ .name = "task_arithmetic", .method = WELD_METHOD_TASK_ARITHMETIC, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS, .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true , .weight_required = true },
	{ .name = "task-arithmetic", .method = WELD_METHOD_TASK_ARITHMETIC, .where = BOTH,
	  .params = P(WEIGHT) | P(LAMBDA) | P(NORMALIZE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "base + lambda * sum of weighted task vectors" },
	{ .name = "ties", .method = WELD_METHOD_TIES, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(RESCALE),
	  .keys = K(SCOPE) | K(SIGN), .base = WELD_BASE_REQUIRED,
	  .density = 1, .normalize = true, .rescale = WELD_RESCALE_NONE,
	  .combine = WELD_COMBINE_TIES, .combine_fixed = true , .weight_required = true },
	{ .name = "dare_linear", .method = WELD_METHOD_DARE, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(RESCALE),
	  .keys = K(SCOPE) | K(SEED) | K(RESCALE) | K(COMBINE),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_L1,
	  .combine = WELD_COMBINE_SUM, .combine_fixed = true , .weight_required = true },
	{ .name = "dare_ties", .method = WELD_METHOD_DARE, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(RESCALE),
	  .keys = K(SCOPE) | K(SEED) | K(RESCALE) | K(COMBINE) | K(SIGN) | K(TRIM),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_L1,
	  .combine = WELD_COMBINE_TIES, .combine_fixed = true , .weight_required = true },
	{ .name = "dare", .method = WELD_METHOD_DARE, .where = BOTH,
	  .params = P(WEIGHT) | P(DENSITY) | P(LAMBDA) | P(NORMALIZE) | P(RESCALE),
	  .keys = K(SCOPE) | K(SEED) | K(RESCALE) | K(COMBINE) | K(SIGN) | K(TRIM),
	  .base = WELD_BASE_REQUIRED, .density = 0.5, .rescale = WELD_RESCALE_INVERSE,
	  .combine = WELD_COMBINE_SUM,
	  .summary = "DARE: random drop and rescale of task vectors" },
	{ .name = "breadcrumbs", .method = WELD_METHOD_BREADCRUMBS, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(GAMMA) | P(RESCALE),
	  .keys = K(SCOPE) | K(SIGN) | K(COMBINE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .gamma = WELD_DEFAULT_GAMMA, .rescale = WELD_RESCALE_NONE,
	  .combine = WELD_COMBINE_SUM , .weight_required = true },
	{ .name = "breadcrumbs_ties", .method = WELD_METHOD_BREADCRUMBS, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(GAMMA) | P(RESCALE),
	  .keys = K(SCOPE) | K(SIGN) | K(COMBINE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .gamma = WELD_DEFAULT_GAMMA, .rescale = WELD_RESCALE_NONE,
	  .combine = WELD_COMBINE_TIES, .combine_fixed = true , .weight_required = true },
	{ .name = "slerp", .method = WELD_METHOD_SLERP, .where = WELD_IN_RECIPE, .params = P(T),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true },
	{ .name = "passthrough", .method = WELD_METHOD_COPY, .where = WELD_IN_RECIPE,
	  .params = P(SCALE), .base = WELD_BASE_DONOR, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true },
	{ .name = "consensus", .method = WELD_METHOD_CONSENSUS, .where = BOTH,
	  .params = P(WEIGHT) | P(DENSITY) | P(MASK_LAMBDA) | P(LAMBDA),
	  .keys = K(SCOPE) | K(SIGN) | K(FROM) | K(K) | K(MASKS), .base = WELD_BASE_REQUIRED,
	  .density = 0.2, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "TALL masks + Consensus Merging" },
	/* the commands whose defaults differ from mergekit's recipe names */
	{ .name = "ties", .method = WELD_METHOD_TIES, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(DENSITY) | P(LAMBDA) | P(NORMALIZE),
	  .keys = K(SCOPE) | K(SIGN), .base = WELD_BASE_REQUIRED,
	  .density = 0.2, .normalize = true, .combine = WELD_COMBINE_TIES,
	  .summary = "TIES-Merging: trim, elect sign, disjoint mean" },
	{ .name = "breadcrumbs", .method = WELD_METHOD_BREADCRUMBS, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(DENSITY) | P(LAMBDA) | P(NORMALIZE) | P(GAMMA),
	  .keys = K(SCOPE) | K(SIGN) | K(COMBINE), .base = WELD_BASE_REQUIRED,
	  .density = 0.9, .gamma = WELD_DEFAULT_GAMMA, .combine = WELD_COMBINE_SUM,
	  .summary = "Model Breadcrumbs: drop the largest outliers and the smallest deltas" },
	/* della (METHODS 3): mergekit's two names, and the command (the paper's
	 * inverse rescale, density 0.5, TIES election) */
	{ .name = "della", .method = WELD_METHOD_DELLA, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(EPSILON) | P(RESCALE),
	  .keys = K(SEED) | K(RESCALE) | K(SIGN) | K(COMBINE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .normalize = true, .rescale = WELD_RESCALE_L1,
	  .combine = WELD_COMBINE_TIES, .weight_required = true },
	{ .name = "della_linear", .method = WELD_METHOD_DELLA, .where = WELD_IN_RECIPE,
	  .params = GTA_PARAMS | P(DENSITY) | P(EPSILON) | P(RESCALE),
	  .keys = K(SEED) | K(RESCALE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_L1,
	  .combine = WELD_COMBINE_SUM, .combine_fixed = true, .weight_required = true },
	{ .name = "della", .method = WELD_METHOD_DELLA, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(DENSITY) | P(EPSILON) | P(LAMBDA) | P(NORMALIZE),
	  .keys = K(SEED) | K(RESCALE) | K(COMBINE) | K(SIGN), .base = WELD_BASE_REQUIRED,
	  .density = 0.5, .normalize = true, .rescale = WELD_RESCALE_INVERSE,
	  .combine = WELD_COMBINE_TIES,
	  .summary = "DELLA: keep probability by magnitude rank in the row, rescale, elect" },
	/* PCB-Merging (METHODS 12): weld's own name, a command and a recipe */
	{ .name = "pcb", .method = WELD_METHOD_PCB, .where = BOTH,
	  .params = P(WEIGHT) | P(DENSITY) | P(LAMBDA), .keys = K(SCOPE) | K(CLIP),
	  .base = WELD_BASE_REQUIRED, .density = 0.1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true,
	  .summary = "PCB-Merging: intra/inter balancing scores, drop, rescale" },
	/* sce (METHODS 5): mergekit's name is the command's */
	{ .name = "sce", .method = WELD_METHOD_SCE, .where = BOTH,
	  .params = P(SELECT_TOPK) | P(INT8_MASK), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "SCE: keep the positions of largest variance, erase sign conflicts, energy weights" },
	/* arcee_fusion (METHODS 11): base and one model, no parameters */
	{ .name = "arcee_fusion", .method = WELD_METHOD_ARCEE_FUSION, .where = WELD_IN_RECIPE,
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true },
	{ .name = "arcee-fusion", .method = WELD_METHOD_ARCEE_FUSION, .where = BOTH,
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true,
	  .summary = "Arcee Fusion: the model's values where they matter (importance fence), else the base's" },
	/* mergekit's element-wise two-model and agent-merging methods (METHODS 9, 10) */
	{ .name = "nearswap", .method = WELD_METHOD_NEARSWAP, .where = BOTH, .params = P(T),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true, .t_distance = true,
	  .summary = "take the model where it is within t of the base, interpolate beyond" },
	{ .name = "ram", .method = WELD_METHOD_RAM, .where = WELD_IN_RECIPE, .params = P(RAM_EPSILON),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true },
	{ .name = "ramplus_tl", .method = WELD_METHOD_RAM, .where = WELD_IN_RECIPE,
	  .params = P(RAM_EPSILON) | P(R) | P(ALPHA), .base = WELD_BASE_REQUIRED, .density = 1,
	  .rescale = WELD_RESCALE_NONE, .combine_fixed = true, .plus = true },
	{ .name = "model_stock", .method = WELD_METHOD_MODEL_STOCK, .where = WELD_IN_RECIPE,
	  .params = P(FILTER_WISE), .base = WELD_BASE_REQUIRED, .density = 1,
	  .rescale = WELD_RESCALE_NONE, .combine_fixed = true },
	{ .name = "model-stock", .method = WELD_METHOD_MODEL_STOCK, .where = WELD_IN_COMMAND,
	  .params = P(FILTER_WISE), .base = WELD_BASE_REQUIRED, .density = 1,
	  .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "Model Stock: toward the models' mean by their task vectors' mean cosine" },
	/* the spherical interpolations (METHODS 6-8) */
	{ .name = "nuslerp", .method = WELD_METHOD_NUSLERP, .where = BOTH,
	  .params = P(WEIGHT) | P(NUSLERP_FLATTEN) | P(NUSLERP_ROW_WISE),
	  .base = WELD_BASE_OPTIONAL, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true, .weight_required = true,
	  .summary = "slerp of two models (or task vectors) at t = w2 / (w1 + w2)" },
	{ .name = "multislerp", .method = WELD_METHOD_MULTISLERP, .where = BOTH,
	  .params = P(WEIGHT) | P(NORMALIZE_WEIGHTS) | P(EPS), .base = WELD_BASE_OPTIONAL,
	  .density = 1, .normalize = true, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .weight_required = true,
	  .summary = "weighted spherical mean of several models (or task vectors)" },
	{ .name = "karcher", .method = WELD_METHOD_KARCHER, .where = BOTH,
	  .params = P(MAX_ITER) | P(TOL), .base = WELD_BASE_NONE, .density = 1,
	  .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "Karcher (Riemannian) mean of the models on the sphere" },
	{ .name = "ram", .method = WELD_METHOD_RAM, .where = WELD_IN_COMMAND,
	  .params = P(RAM_EPSILON) | P(R) | P(ALPHA), .keys = K(PLUS), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "Reinforced Agent Merging: the surviving deltas, alone or averaged (and RAM+)" },
	/* the data-free SVD merges (METHODS 13-15): a command and a recipe
	 * name each; lambda is FusionBench's alpha (TSV-M) and scaling_factor
	 * (Iso), which recipes accept as its other name */
	{ .name = "tsv_m", .method = WELD_METHOD_TSV_M, .where = WELD_IN_RECIPE,
	  .params = P(WEIGHT) | P(LAMBDA), .keys = K(SVD_EXCLUDE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .lambda_alias = "alpha" },
	{ .name = "tsv-m", .method = WELD_METHOD_TSV_M, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(LAMBDA), .keys = K(SVD_EXCLUDE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "TSV-M: each task's top singular vectors, orthogonalised together" },
	{ .name = "iso_c", .method = WELD_METHOD_ISO_C, .where = WELD_IN_RECIPE,
	  .params = P(WEIGHT) | P(LAMBDA), .keys = K(SVD_EXCLUDE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .lambda_alias = "scaling_factor" },
	{ .name = "iso-c", .method = WELD_METHOD_ISO_C, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(LAMBDA), .keys = K(SVD_EXCLUDE), .base = WELD_BASE_REQUIRED,
	  .density = 1, .rescale = WELD_RESCALE_NONE, .combine_fixed = true,
	  .summary = "Iso-C: the summed task vector with a flat (mean) spectrum" },
	{ .name = "iso_cts", .method = WELD_METHOD_ISO_CTS, .where = WELD_IN_RECIPE,
	  .params = P(WEIGHT) | P(LAMBDA) | P(COMMON_SPACE_FRACTION), .keys = K(SVD_EXCLUDE),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true, .lambda_alias = "scaling_factor" },
	{ .name = "iso-cts", .method = WELD_METHOD_ISO_CTS, .where = WELD_IN_COMMAND,
	  .params = P(WEIGHT) | P(LAMBDA) | P(COMMON_SPACE_FRACTION), .keys = K(SVD_EXCLUDE),
	  .base = WELD_BASE_REQUIRED, .density = 1, .rescale = WELD_RESCALE_NONE,
	  .combine_fixed = true,
	  .summary = "Iso-CTS: common and task-specific subspaces with a flat spectrum" },
};
#define NSPELLINGS (sizeof(spellings) / sizeof(spellings[0]))

/* mergekit methods weld does not implement, NULL-terminated (none today:
 * a recipe naming one would be told so, not "unknown method"). */
static const char *const mergekit_only[] = {
	NULL,
};

const struct weld_method_spelling *weld_method_find(const char *name, unsigned where)
{
	for (size_t i = 0; i < NSPELLINGS; i++)
		if ((spellings[i].where & where) && strcmp(spellings[i].name, name) == 0)
			return &spellings[i];
	return NULL;
}

const struct weld_method_spelling *weld_method_spelling_at(size_t i, unsigned where)
{
	for (size_t k = 0; k < NSPELLINGS; k++)
		if ((spellings[k].where & where) && i-- == 0)
			return &spellings[k];
	return NULL;
}

bool weld_method_takes(enum weld_method m, enum weld_key k)
{
	for (size_t i = 0; i < NSPELLINGS; i++)
		if (spellings[i].method == m && (spellings[i].keys & WELD_KB(k)))
			return true;
	return false;
}

bool weld_method_mergekit_only(const char *name)
{
	for (size_t i = 0; mergekit_only[i]; i++)
		if (strcmp(name, mergekit_only[i]) == 0)
			return true;
	return false;
}

enum weld_range weld_param_range(const struct weld_method_spelling *s, enum weld_param p)
{
	return p == WELD_P_T && s->t_distance ? WELD_RANGE_ANY : weld_param_defs[p].range;
}

const char *weld_method_recipe_name(const struct weld_method_spelling *s,
				    const struct weld_merge_opts *o)
{
	/* a command-only spelling: the first recipe spelling of its method
	 * that agrees with o (ram --plus is ramplus_tl) */
	for (size_t i = 0; !(s->where & WELD_IN_RECIPE) && i < NSPELLINGS; i++)
		if ((spellings[i].where & WELD_IN_RECIPE) && spellings[i].method == s->method &&
		    spellings[i].plus == o->ram_plus)
			return spellings[i].name;
	return s->name;
}

bool weld_method_default(const struct weld_method_spelling *s, enum weld_param p, double *out)
{
	switch (p) {
	case WELD_P_WEIGHT: *out = WELD_DEFAULT_WEIGHT; return true;
	case WELD_P_LAMBDA: *out = WELD_DEFAULT_LAMBDA; return true;
	case WELD_P_DENSITY: *out = s->density; return true;
	case WELD_P_GAMMA: *out = s->gamma; return true;
	case WELD_P_MASK_LAMBDA: *out = WELD_DEFAULT_MASK_LAMBDA; return true;
	case WELD_P_NORMALIZE: *out = s->normalize; return true;
	case WELD_P_EPSILON: *out = WELD_DEFAULT_EPSILON; return true;
	case WELD_P_SELECT_TOPK: *out = WELD_DEFAULT_SELECT_TOPK; return true;
	case WELD_P_RAM_EPSILON: *out = WELD_DEFAULT_RAM_EPSILON; return true;
	case WELD_P_R: *out = WELD_DEFAULT_RAM_R; return true;
	case WELD_P_ALPHA: *out = WELD_DEFAULT_RAM_ALPHA; return true;
	case WELD_P_FILTER_WISE: *out = 0; return true;
	case WELD_P_NUSLERP_FLATTEN: *out = 1; return true;
	case WELD_P_NUSLERP_ROW_WISE: *out = 0; return true;
	case WELD_P_NORMALIZE_WEIGHTS: *out = s->normalize; return true;
	case WELD_P_EPS: *out = WELD_DEFAULT_MULTISLERP_EPS; return true;
	case WELD_P_MAX_ITER: *out = WELD_DEFAULT_KARCHER_MAX_ITER; return true;
	case WELD_P_TOL: *out = WELD_DEFAULT_KARCHER_TOL; return true;
	case WELD_P_COMMON_SPACE_FRACTION: *out = WELD_DEFAULT_COMMON_SPACE_FRACTION; return true;
	default: return false;
	}
}

void weld_merge_opts_init(struct weld_merge_opts *o, const struct weld_method_spelling *s)
{
	memset(o, 0, sizeof(*o));
	o->method = s->method;
	o->scope = WELD_SCOPE_TENSOR;
	o->sign = WELD_SIGN_SUM;
	o->rescale = s->rescale;
	o->combine = s->combine;
	o->from = WELD_FROM_TA;
	o->normalize = s->normalize;
	o->k = WELD_DEFAULT_K;
	o->dtype = -1;
	o->max_memory = WELD_DEFAULT_MAX_MEMORY;
	o->record_memory = UINT64_MAX;
	o->shard_size = WELD_DEFAULT_SHARD_SIZE;
	o->copy_files = true;
	o->clip = WELD_DEFAULT_CLIP;
	o->select_topk = WELD_DEFAULT_SELECT_TOPK;
	o->ram_plus = s->plus;
	o->common_fraction = WELD_DEFAULT_COMMON_SPACE_FRACTION;
}
