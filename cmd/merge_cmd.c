/*
 * merge_cmd.c - parse a merge command line, plan, then run or print.
 *
 * What a command takes and its defaults come from its row of the method
 * table (lib/method.c). The order matters to users: every usage error
 * (exit 2) is reported before any file is opened, every model and plan
 * error (exit 1) before the output folder is created.
 */
#include "merge_cmd.h"

#include "plan_print.h"
#include "recipe.h"

#include <getopt.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool merge_plan_only;

enum {
	O_BASE = 256, O_WEIGHTS, O_DENSITY, O_LAMBDA, O_DTYPE, O_SCOPE, O_SEED,
	O_MAXMEM, O_SHARD, O_ALLOW_MISSING, O_NO_COPY, O_JSON, O_SIGN, O_NORMALIZE,
	O_NO_NORMALIZE, O_RESCALE, O_COMBINE, O_TRIM, O_GAMMA, O_FROM, O_MASK_LAMBDA,
	O_K, O_SAVE_MASKS, O_APPLY_MASK, O_MASKS, O_MERGED, O_ALLOW_NONFINITE, O_PART, O_PARTS,
	O_EPSILON, O_CLIP, O_SELECT_TOPK,
	O_T, O_R, O_ALPHA, O_PLUS, O_FILTER_WISE, O_NO_FLATTEN, O_EPS, O_MAX_ITER, O_TOL,
	O_ROW_WISE, O_FORMAT, O_SVD_EXCLUDE, O_COMMON_FRACTION,
};

static const struct option long_opts[] = {
	CLI_OUTPUT_OPTIONS,
	{ "base", required_argument, NULL, O_BASE },
	{ "weights", required_argument, NULL, O_WEIGHTS },
	{ "density", required_argument, NULL, O_DENSITY },
	{ "lambda", required_argument, NULL, O_LAMBDA },
	{ "dtype", required_argument, NULL, O_DTYPE },
	{ "scope", required_argument, NULL, O_SCOPE },
	{ "seed", required_argument, NULL, O_SEED },
	{ "max-memory", required_argument, NULL, O_MAXMEM },
	{ "shard-size", required_argument, NULL, O_SHARD },
	{ "allow-missing", no_argument, NULL, O_ALLOW_MISSING },
	{ "allow-nonfinite", no_argument, NULL, O_ALLOW_NONFINITE },
	{ "no-copy-files", no_argument, NULL, O_NO_COPY },
	{ "json", no_argument, NULL, O_JSON },
	{ "sign", required_argument, NULL, O_SIGN },
	{ "normalize", no_argument, NULL, O_NORMALIZE },
	{ "no-normalize", no_argument, NULL, O_NO_NORMALIZE },
	{ "rescale", required_argument, NULL, O_RESCALE },
	{ "combine", required_argument, NULL, O_COMBINE },
	{ "trim", required_argument, NULL, O_TRIM },
	{ "gamma", required_argument, NULL, O_GAMMA },
	{ "from", required_argument, NULL, O_FROM },
	{ "mask-lambda", required_argument, NULL, O_MASK_LAMBDA },
	{ "k", required_argument, NULL, O_K },
	{ "save-masks", required_argument, NULL, O_SAVE_MASKS },
	{ "apply-mask", required_argument, NULL, O_APPLY_MASK },
	{ "masks", required_argument, NULL, O_MASKS },
	{ "merged", required_argument, NULL, O_MERGED },
	{ "part", required_argument, NULL, O_PART },
	{ "parts", required_argument, NULL, O_PARTS },
	{ "epsilon", required_argument, NULL, O_EPSILON },
	{ "clip", required_argument, NULL, O_CLIP },
	{ "select-topk", required_argument, NULL, O_SELECT_TOPK },
	{ "t", required_argument, NULL, O_T },
	{ "r", required_argument, NULL, O_R },
	{ "alpha", required_argument, NULL, O_ALPHA },
	{ "plus", no_argument, NULL, O_PLUS },
	{ "filter-wise", no_argument, NULL, O_FILTER_WISE },
	{ "no-flatten", no_argument, NULL, O_NO_FLATTEN },
	{ "row-wise", no_argument, NULL, O_ROW_WISE },
	{ "eps", required_argument, NULL, O_EPS },
	{ "max-iter", required_argument, NULL, O_MAX_ITER },
	{ "tol", required_argument, NULL, O_TOL },
	{ "format", required_argument, NULL, O_FORMAT },
	{ "svd-exclude", required_argument, NULL, O_SVD_EXCLUDE },
	{ "common-space-fraction", required_argument, NULL, O_COMMON_FRACTION },
	{ NULL, 0, NULL, 0 },
};

/* "--gamma" for an option's code. */
static const char *opt_name(int c)
{
	static char buf[64];

	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == c) {
			snprintf(buf, sizeof(buf), "--%s", o->name);
			return buf;
		}
	return "?";
}

/* Does the command take option c? Its parameter or its key must be in its
 * row of the method table; the other options every merge takes. */
static bool takes(const struct weld_method_spelling *s, int c)
{
	static const struct { int opt; int param, key; } map[] = {
		{ O_WEIGHTS, WELD_P_WEIGHT, -1 }, { O_DENSITY, WELD_P_DENSITY, -1 },
		{ O_LAMBDA, WELD_P_LAMBDA, -1 }, { O_GAMMA, WELD_P_GAMMA, -1 },
		{ O_MASK_LAMBDA, WELD_P_MASK_LAMBDA, -1 },
		{ O_NORMALIZE, WELD_P_NORMALIZE, -1 }, { O_NO_NORMALIZE, WELD_P_NORMALIZE, -1 },
		{ O_SCOPE, -1, WELD_K_SCOPE }, { O_SIGN, -1, WELD_K_SIGN },
		{ O_RESCALE, -1, WELD_K_RESCALE }, { O_COMBINE, -1, WELD_K_COMBINE },
		{ O_TRIM, -1, WELD_K_TRIM }, { O_SEED, -1, WELD_K_SEED },
		{ O_FROM, -1, WELD_K_FROM }, { O_K, -1, WELD_K_K },
		{ O_SAVE_MASKS, -1, WELD_K_MASKS }, { O_APPLY_MASK, -1, WELD_K_MASKS },
		{ O_MASKS, -1, WELD_K_MASKS }, { O_MERGED, -1, WELD_K_MASKS },
		{ O_EPSILON, WELD_P_EPSILON, -1 }, { O_CLIP, -1, WELD_K_CLIP },
		{ O_SELECT_TOPK, WELD_P_SELECT_TOPK, -1 },
		{ O_T, WELD_P_T, -1 }, { O_EPSILON, WELD_P_RAM_EPSILON, -1 },
		{ O_R, WELD_P_R, -1 }, { O_ALPHA, WELD_P_ALPHA, -1 }, { O_PLUS, -1, WELD_K_PLUS },
		{ O_FILTER_WISE, WELD_P_FILTER_WISE, -1 }, { O_NO_FLATTEN, WELD_P_NUSLERP_FLATTEN, -1 },
		{ O_NORMALIZE, WELD_P_NORMALIZE_WEIGHTS, -1 }, { O_NO_NORMALIZE, WELD_P_NORMALIZE_WEIGHTS, -1 },
		{ O_EPS, WELD_P_EPS, -1 }, { O_MAX_ITER, WELD_P_MAX_ITER, -1 }, { O_TOL, WELD_P_TOL, -1 },
		{ O_ROW_WISE, WELD_P_NUSLERP_ROW_WISE, -1 },
		{ O_SVD_EXCLUDE, -1, WELD_K_SVD_EXCLUDE },
		{ O_COMMON_FRACTION, WELD_P_COMMON_SPACE_FRACTION, -1 },
	};
	bool listed = false;

	/* an option may stand for several parameters (--no-normalize) */
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (map[i].opt != c)
			continue;
		listed = true;
		if (map[i].param >= 0 ? (s->params & WELD_PB(map[i].param)) != 0
				      : (s->keys & WELD_KB(map[i].key)) != 0)
			return true;
	}
	return !listed;
}

struct model_arg {
	const char *path;
	char *owned;
	bool has[WELD_P_COUNT];       /* per-model parameters given as MODEL:key= */
	double v[WELD_P_COUNT];
};

struct merge_args {
	const struct weld_method_spelling *spec;
	const char *out, *base, *save_masks, *masks, *merged;
	const char *part, *parts;     /* --part, --parts as given */
	char *part_out;               /* OUT.part-I-of-N */
	struct model_arg m[WELD_MAX_MODELS];
	size_t n;
	double weights[WELD_MAX_MODELS], density[WELD_MAX_MODELS], mask_lambda[WELD_MAX_MODELS];
	size_t nweights, ndensity, nmask_lambda;
	double epsilon[WELD_MAX_MODELS];
	size_t nepsilon;
	double lambda, gamma;
	long apply_mask;
	bool json;
	struct weld_merge_opts o;
	/* per-tensor values (the same for every tensor on the command line),
	 * and which were given */
	double tv[WELD_P_COUNT];
	bool tv_set[WELD_P_COUNT];
};

static int pick(const char *opt, const char *s, const char *const *names, int *out)
{
	if ((*out = weld_name_index(names, s)) >= 0)
		return 0;
	return cli_usage_error("invalid value '%s' for '%s'", s, opt);
}

/* A density, from --density or MODEL:density=, must be in (0, 1]. */
static bool density_ok(const char *opt, double d)
{
	if (d > 0 && d <= 1)
		return true;
	cli_usage_error("invalid value '%g' for '%s': outside (0, 1]", d, opt);
	return false;
}

/* An epsilon, from --epsilon or MODEL:epsilon=, must be in [0, 1). */
static bool epsilon_ok(const char *opt, double e)
{
	if (e >= 0 && e < 1)
		return true;
	cli_usage_error("invalid value '%g' for '%s': outside [0, 1)", e, opt);
	return false;
}

/*
 * MODEL[:key=value,...]: per-model values after the last ':' when what
 * follows looks like key=value; "./a:b" stays a path. A key must be a
 * per-model parameter the command takes.
 */
static int parse_model_value(const struct weld_method_spelling *s, const char *arg, char *tok,
			     struct model_arg *m)
{
	char *eq = strchr(tok, '=');
	double v;
	int p;

	if (!eq)
		return cli_usage_error("model '%s': '%s' is not key=value", arg, tok);
	*eq = 0;
	if (!strcmp(tok, "mask-lambda"))
		tok = (char *)"mask_lambda";
	for (p = 0; p < WELD_P_COUNT; p++)
		if (weld_param_defs[p].kind == WELD_PER_MODEL && !strcmp(tok, weld_param_defs[p].name) &&
		    p != WELD_P_GAMMA && p != WELD_P_SCALE)
			break;
	if (p == WELD_P_COUNT)
		return cli_usage_error("model '%s': unknown key '%s' (weight, density, mask_lambda, epsilon)",
				       arg, tok);
	if (!(s->params & WELD_PB(p)))
		return cli_usage_error("model '%s': '%s' is not used by 'weld %s'", arg, tok, s->name);
	if (!cli_double(tok, eq + 1, &v))
		return EXIT_USAGE;
	if (p == WELD_P_DENSITY && !density_ok(tok, v))
		return EXIT_USAGE;
	if (p == WELD_P_EPSILON && !epsilon_ok(tok, v))
		return EXIT_USAGE;
	m->has[p] = true;
	m->v[p] = v;
	return 0;
}

static int parse_model(const struct weld_method_spelling *s, const char *arg, struct model_arg *m)
{
	const char *colon = strrchr(arg, ':');
	char *opts, *save = NULL, *tok;
	int r = 0;

	memset(m, 0, sizeof(*m));
	m->path = arg;
	if (!colon || !strchr(colon, '='))
		return 0;
	m->owned = strndup(arg, (size_t)(colon - arg));
	opts = strdup(colon + 1);
	if (!m->owned || !opts) {
		free(opts);
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	m->path = m->owned;
	for (tok = strtok_r(opts, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save))
		r = parse_model_value(s, arg, tok, m);
	free(opts);
	return r;
}

/* Per-model value: MODEL:key=, else the list (one value for all), else dflt. */
static double per_model(const double *list, size_t nlist, size_t i, const struct model_arg *m,
			enum weld_param p, double dflt)
{
	if (m->has[p])
		return m->v[p];
	if (nlist == 1)
		return list[0];
	if (nlist > i)
		return list[i];
	return dflt;
}

/* Model i's weight, density and mask lambda. */
static struct weld_model_params model_params(const struct merge_args *a, size_t i)
{
	const struct model_arg *m = &a->m[i];

	return (struct weld_model_params){
		.weight = per_model(a->weights, a->nweights, i, m, WELD_P_WEIGHT, WELD_DEFAULT_WEIGHT),
		.density = per_model(a->density, a->ndensity, i, m, WELD_P_DENSITY, a->spec->density),
		.mask_lambda = per_model(a->mask_lambda, a->nmask_lambda, i, m, WELD_P_MASK_LAMBDA,
					 WELD_DEFAULT_MASK_LAMBDA),
		.epsilon = per_model(a->epsilon, a->nepsilon, i, m, WELD_P_EPSILON,
				     WELD_DEFAULT_EPSILON),
	};
}

static int parse_list(const char *opt, double *vals, size_t *n, bool densities)
{
	if (!cli_list(opt, optarg, vals, WELD_MAX_MODELS, n))
		return EXIT_USAGE;
	for (size_t i = 0; densities && i < *n; i++)
		if (!density_ok(opt, vals[i]))
			return EXIT_USAGE;
	return 0;
}

/* A per-tensor value (--t, --epsilon, ...), in the range its spelling gives. */
static int tensor_value(const char *opt, enum weld_param p, struct merge_args *a)
{
	double v;

	if (!cli_double(opt, optarg, &v))
		return EXIT_USAGE;
	if (weld_param_range(a->spec, p) == WELD_RANGE_UNIT && !(v >= 0 && v <= 1))
		return cli_usage_error("invalid value '%s' for '%s': outside [0, 1]", optarg, opt);
	if (weld_param_range(a->spec, p) == WELD_RANGE_NONNEG && !(v >= 0))
		return cli_usage_error("invalid value '%s' for '%s': must be >= 0", optarg, opt);
	if (weld_param_range(a->spec, p) == WELD_RANGE_COUNT && !(v >= 0 && v == (double)(long)v && v <= 1e6))
		return cli_usage_error("invalid value '%s' for '%s': an integer in [0, 1000000]", optarg, opt);
	a->tv[p] = v;
	a->tv_set[p] = true;
	return 0;
}

/* One option of the method's own; 0 or an exit status. */
static int parse_method_opt(int c, struct merge_args *a)
{
	int v = 0;
	long l;

	switch (c) {
	case O_BASE: a->base = optarg; return 0;
	case O_WEIGHTS: return parse_list("--weights", a->weights, &a->nweights, false);
	case O_DENSITY: return parse_list("--density", a->density, &a->ndensity, true);
	case O_MASK_LAMBDA: return parse_list("--mask-lambda", a->mask_lambda, &a->nmask_lambda, false);
	case O_EPSILON:
		/* della's is per model, ram's one value for the merge */
		if (a->spec->params & WELD_PB(WELD_P_RAM_EPSILON))
			return tensor_value("--epsilon", WELD_P_RAM_EPSILON, a);
		if (parse_list("--epsilon", a->epsilon, &a->nepsilon, false))
			return EXIT_USAGE;
		for (size_t i = 0; i < a->nepsilon; i++)
			if (!epsilon_ok("--epsilon", a->epsilon[i]))
				return EXIT_USAGE;
		return 0;
	case O_LAMBDA: return cli_double("--lambda", optarg, &a->lambda) ? 0 : EXIT_USAGE;
	case O_TRIM:
		if (!cli_double("--trim", optarg, &a->o.trim))
			return EXIT_USAGE;
		if (!(a->o.trim > 0 && a->o.trim <= 1))
			return cli_usage_error("invalid value '%s' for '--trim': outside (0, 1]", optarg);
		return 0;
	case O_SELECT_TOPK:
		return cli_double("--select-topk", optarg, &a->o.select_topk) ? 0 : EXIT_USAGE;
	case O_CLIP:
		if (!cli_double("--clip", optarg, &a->o.clip))
			return EXIT_USAGE;
		if (!(a->o.clip >= 0 && a->o.clip < 0.5))
			return cli_usage_error("invalid value '%s' for '--clip': outside [0, 0.5)", optarg);
		return 0;
	case O_GAMMA:
		if (!cli_double("--gamma", optarg, &a->gamma))
			return EXIT_USAGE;
		if (!(a->gamma >= 0 && a->gamma < 1))
			return cli_usage_error("invalid value '%s' for '--gamma': outside [0, 1)", optarg);
		return 0;
	case O_SCOPE:
		if (pick("--scope", optarg, weld_scope_names, &v))
			return EXIT_USAGE;
		a->o.scope = (enum weld_scope)v;
		return 0;
	case O_SIGN:
		if (pick("--sign", optarg, weld_sign_names, &v))
			return EXIT_USAGE;
		a->o.sign = (enum weld_sign)v;
		return 0;
	case O_RESCALE:
		if (pick("--rescale", optarg, weld_rescale_names, &v))
			return EXIT_USAGE;
		a->o.rescale = (enum weld_rescale)v;
		return 0;
	case O_COMBINE:
		if (pick("--combine", optarg, weld_combine_names, &v))
			return EXIT_USAGE;
		a->o.combine = (enum weld_combine)v;
		return 0;
	case O_FROM:
		if (pick("--from", optarg, weld_from_names, &v))
			return EXIT_USAGE;
		a->o.from = (enum weld_from)v;
		return 0;
	case O_NORMALIZE: a->o.normalize = true; return 0;
	case O_NO_NORMALIZE: a->o.normalize = false; return 0;
	case O_SEED: {
		char *end;

		a->o.seed = strtoull(optarg, &end, 10);
		if (!*optarg || *end || *optarg == '-')
			return cli_usage_error("invalid value '%s' for '--seed'", optarg);
		return 0;
	}
	case O_K:
		if (!cli_int("--k", optarg, 0, WELD_MAX_MODELS, &l))
			return EXIT_USAGE;
		a->o.k = (int)l;
		return 0;
	case O_SAVE_MASKS: a->save_masks = optarg; return 0;
	case O_APPLY_MASK:
		return cli_int("--apply-mask", optarg, 1, WELD_MAX_MODELS, &a->apply_mask) ? 0 : EXIT_USAGE;
	case O_MASKS: a->masks = optarg; return 0;
	case O_MERGED: a->merged = optarg; return 0;
	case O_T: return tensor_value("--t", WELD_P_T, a);
	case O_R: return tensor_value("--r", WELD_P_R, a);
	case O_ALPHA: return tensor_value("--alpha", WELD_P_ALPHA, a);
	case O_PLUS: a->o.ram_plus = true; return 0;
	case O_FILTER_WISE: a->o.scope = WELD_SCOPE_ROW; return 0;  /* statistics per row */
	case O_NO_FLATTEN: a->o.scope = WELD_SCOPE_ROW; return 0;   /* vectors are rows */
	case O_ROW_WISE: a->o.nuslerp_columns = true; return 0;      /* ... or columns */
	case O_EPS: return tensor_value("--eps", WELD_P_EPS, a);
	case O_MAX_ITER: return tensor_value("--max-iter", WELD_P_MAX_ITER, a);
	case O_TOL: return tensor_value("--tol", WELD_P_TOL, a);
	case O_SVD_EXCLUDE: {
		regex_t re;
		int rc = regcomp(&re, optarg, REG_EXTENDED | REG_NOSUB);

		if (rc) {
			char msg[256];

			regerror(rc, &re, msg, sizeof(msg));
			return cli_usage_error("invalid value '%s' for '--svd-exclude': %s", optarg, msg);
		}
		regfree(&re);
		a->o.svd_exclude = optarg;
		return 0;
	}
	case O_COMMON_FRACTION:
		if (!cli_double("--common-space-fraction", optarg, &a->o.common_fraction))
			return EXIT_USAGE;
		if (!(a->o.common_fraction >= 0 && a->o.common_fraction <= 1))
			return cli_usage_error("invalid value '%s' for '--common-space-fraction': outside [0, 1]",
					       optarg);
		return 0;
	default: return -1;
	}
}

/* One option every merge takes; 0, an exit status, or -1 if not one. */
static int parse_common_opt(int c, struct merge_args *a)
{
	switch (c) {
	case O_DTYPE: return cli_out_dtype(optarg, &a->o) ? 0 : EXIT_USAGE;
	case O_FORMAT: return cli_format(optarg, &a->o.format) ? 0 : EXIT_USAGE;
	case O_MAXMEM: return cli_size("--max-memory", optarg, &a->o.max_memory) ? 0 : EXIT_USAGE;
	case O_SHARD:
		a->o.shard_size_set = true;
		return cli_size("--shard-size", optarg, &a->o.shard_size) ? 0 : EXIT_USAGE;
	case O_ALLOW_MISSING: a->o.allow_missing = true; return 0;
	case O_ALLOW_NONFINITE: a->o.allow_nonfinite = true; return 0;
	case O_NO_COPY: a->o.copy_files = false; return 0;
	case O_JSON: a->json = true; return 0;
	case O_PART: a->part = optarg; return 0;
	case O_PARTS: a->parts = optarg; return 0;
	default: return -1;
	}
}

/* What must hold once every argument is read. */
static int check_args(struct merge_args *a)
{
	const struct weld_method_spelling *s = a->spec;

	if (!a->out && !merge_plan_only)
		return cli_usage_error("an output folder is required (-o OUT)");
	if (a->parts && !a->part)
		return cli_usage_error("--parts goes with --part auto");
	if (a->part) {
		if (cli_part(a->part, a->parts, &a->o.part, &a->o.parts))
			return EXIT_USAGE;
		if (a->save_masks)
			return cli_usage_error("--save-masks writes one file: it does not go with --part");
		if (a->out && !(a->part_out = cli_part_output(a->out, a->o.part, a->o.parts))) {
			cli_error("out of memory");
			return EXIT_FAIL;
		}
		if (a->part_out)
			a->out = a->part_out;
	}
	if (a->apply_mask > 0) {
		if (!a->masks || !a->merged || !a->base)
			return cli_usage_error("--apply-mask needs --masks FILE, --merged MODEL and --base MODEL");
		if (a->n)
			return cli_usage_error("--apply-mask takes no MODEL arguments");
		if (a->save_masks)
			return cli_usage_error("--save-masks and --apply-mask do not go together");
		return 0;
	}
	if (!a->n)
		return cli_usage_error("no models to merge");
	if (s->base == WELD_BASE_REQUIRED && !a->base)
		return cli_usage_error("--base is required: %s works on task vectors (model - base)",
				       s->name);
	if (a->nweights > 1 && a->nweights != a->n)
		return cli_usage_error("--weights has %zu values for %zu models", a->nweights, a->n);
	if (a->ndensity > 1 && a->ndensity != a->n)
		return cli_usage_error("--density has %zu values for %zu models", a->ndensity, a->n);
	if (a->nmask_lambda > 1 && a->nmask_lambda != a->n)
		return cli_usage_error("--mask-lambda has %zu values for %zu models",
				       a->nmask_lambda, a->n);
	if (a->nepsilon > 1 && a->nepsilon != a->n)
		return cli_usage_error("--epsilon has %zu values for %zu models", a->nepsilon, a->n);
	if (a->o.trim > 0 && a->o.combine != WELD_COMBINE_TIES)
		return cli_usage_error("--trim needs --combine ties");
	if (a->o.nuslerp_columns && a->o.scope != WELD_SCOPE_ROW)
		return cli_usage_error("--row-wise needs --no-flatten (a flattened tensor is one vector)");
	if (a->o.nuslerp_columns)
		a->o.scope = WELD_SCOPE_TENSOR;    /* columns: a statistics pass, not row units */
	for (int p = 0; p < WELD_P_COUNT; p++) {
		double d;

		if (weld_param_defs[p].kind != WELD_PER_TENSOR || p == WELD_P_LAMBDA ||
		    !(s->params & WELD_PB(p)))
			continue;
		if (a->tv_set[p] && !weld_method_uses(&a->o, s->method, (enum weld_param)p))
			return cli_usage_error("--%s is used by 'weld %s' only with --plus",
					       weld_param_defs[p].name, s->name);
		if (!a->tv_set[p] && !weld_method_default(s, (enum weld_param)p, &d))
			return cli_usage_error("--%s is required by 'weld %s'",
					       weld_param_defs[p].name, s->name);
		if (!a->tv_set[p])
			a->tv[p] = d;
	}
	return 0;
}


/* Do two paths name the same file or folder? */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}
/* 0, an exit status, or -1 after printing the usage for -h. */
static int parse(const char *usage, int argc, char **argv, struct merge_args *a)
{
	const struct weld_method_spelling *s = a->spec;
	int c, r;

	weld_merge_opts_init(&a->o, s);
	a->lambda = WELD_DEFAULT_LAMBDA;
	a->gamma = WELD_DEFAULT_GAMMA;
	a->apply_mask = -1;
	{
		/* tuning: memory the top-k passes may use for recorded keys */
		const char *rm = getenv("WELD_RECORD_MEMORY");

		if (rm && weld_parse_size(rm, &a->o.record_memory) < 0)
			return cli_usage_error("WELD_RECORD_MEMORY='%s' is not a size", rm);
	}
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", long_opts, NULL)) != -1) {
		if (!takes(s, c))
			return cli_usage_error("option '%s' is not used by 'weld %s'", opt_name(c), s->name);
		switch (cli_output_opt(c, usage, &a->out, &a->o.force, &a->o.threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return -1;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		if ((r = parse_common_opt(c, a)) >= 0 || (r = parse_method_opt(c, a)) >= 0) {
			if (r)
				return r;
			continue;
		}
		return cli_bad_option(c, argv);
	}
	for (int i = optind; i < argc; i++) {
		if (a->n == WELD_MAX_MODELS)
			return cli_usage_error("too many models (at most %d)", WELD_MAX_MODELS);
		if ((r = parse_model(s, argv[i], &a->m[a->n++])))
			return r;
	}
	return check_args(a);
}

/* Every tensor takes the per-tensor values of the command line. */
static int tensor_values(void *ctx, const char *tensor, int slot, struct weld_source *src,
			 struct weld_job *job, struct weld_error *err)
{
	const struct merge_args *a = ctx;

	(void)tensor, (void)slot, (void)src, (void)err;
	job->t = a->tv[WELD_P_T];
	job->epsilon = a->spec->params & WELD_PB(WELD_P_EPS) ? a->tv[WELD_P_EPS] : a->tv[WELD_P_RAM_EPSILON];
	job->tol = a->tv[WELD_P_TOL];
	job->max_iter = a->tv[WELD_P_MAX_ITER];
	job->ram_r = a->tv[WELD_P_R];
	job->ram_alpha = a->tv[WELD_P_ALPHA];
	return 0;
}

static int build(weld_plan *p, struct merge_args *a, struct weld_error *err)
{
	struct weld_model_params mp[WELD_MAX_MODELS];
	int idx[WELD_MAX_MODELS], base = -1;

	if (a->apply_mask > 0)
		return weld_plan_apply_mask(p, a->base, a->merged, a->masks, a->apply_mask, err);
	if (a->spec->base == WELD_BASE_NONE && a->base)
		cli_warning("--base is not used by %s (list the base as a MODEL to include it)",
			    a->spec->name);
	else if (a->base && (base = weld_plan_add_model(p, a->base, err)) < 0)
		return -1;
	for (size_t i = 0; i < a->n; i++) {
		if ((idx[i] = weld_plan_add_model(p, a->m[i].path, err)) < 0)
			return -1;
		if (base >= 0 && a->spec->base == WELD_BASE_REQUIRED && same_file(a->base, a->m[i].path))
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s' is the base model: its task vector is zero, and a recipe (as mergekit) would leave it out; give it only as --base",
					 a->m[i].path);
		mp[i] = model_params(a, i);
	}
	return weld_plan_standard(p, base, idx, a->n, mp, a->lambda, a->gamma, tensor_values, a, err);
}

/* The normalised recipe stored in the output (NULL only when out of memory). */
static char *recipe_json(const struct merge_args *a)
{
	struct weld_model_params mp[WELD_MAX_MODELS];
	const char *paths[WELD_MAX_MODELS];
	struct weld_error err = { 0 };
	struct weld_command_merge c = {
		.spelling = a->spec, .base = a->base, .n = a->n, .models = paths, .mp = mp,
		.lambda = a->lambda, .gamma = a->gamma, .o = &a->o,
		.t = a->tv[WELD_P_T],
		.epsilon = a->spec->params & WELD_PB(WELD_P_EPS) ? a->tv[WELD_P_EPS]
								  : a->tv[WELD_P_RAM_EPSILON],
		.ram_r = a->tv[WELD_P_R], .ram_alpha = a->tv[WELD_P_ALPHA],
		.tol = a->tv[WELD_P_TOL], .max_iter = a->tv[WELD_P_MAX_ITER],
	};
	char *text;

	if (a->apply_mask > 0)
		return weld_recipe_of_apply_mask(a->base, a->merged, a->masks, a->apply_mask);
	for (size_t i = 0; i < a->n; i++) {
		paths[i] = a->m[i].path;
		mp[i] = model_params(a, i);
	}
	text = weld_recipe_of_command(&c, &err);
	if (text && err.status != WELD_OK)
		cli_warning("stored recipe is not normalised: %s", err.msg);
	return text;
}

static void report(const struct merge_args *a, const weld_plan *p, double secs)
{
	char sz[32];

	if (a->json) {
		printf("{\"output\":");
		cli_json_string(stdout, a->out);
		printf(",\"method\":\"%s\",\"tensors\":%zu,\"bytes_read\":%llu,\"seconds\":%.3f}\n",
		       weld_method_name(a->o.method), weld_plan_job_count(p),
		       (unsigned long long)weld_plan_bytes_read(p), secs);
	} else if (cli_verbosity >= 1) {
		weld_format_size(weld_plan_bytes_read(p), sz, sizeof(sz));
		fprintf(stderr, "%s: wrote '%s' (%zu tensors, %s read in %.2f s)\n", cli_name, a->out,
			weld_plan_job_count(p), sz, secs);
	}
}

static void report_plan_verbose(const weld_plan *p)
{
	char mem[32], in[32];

	weld_format_size(weld_plan_memory(p), mem, sizeof(mem));
	weld_format_size(weld_plan_input_bytes(p), in, sizeof(in));
	cli_info("%zu tensors from %zu models, %s of input tensors, %s of buffers, %llu elements per chunk",
		 weld_plan_job_count(p), weld_plan_model_count(p), in, mem,
		 (unsigned long long)weld_plan_chunk_elems(p));
}

int merge_main(const char *name, const char *usage, int argc, char **argv)
{
	struct merge_args a;
	struct weld_error err = { 0 };
	weld_plan *p = NULL;
	char *recipe = NULL;
	struct timespec t0;
	int r;

	memset(&a, 0, sizeof(a));
	a.spec = weld_method_find(name, WELD_IN_COMMAND);
	if (!a.spec) {
		cli_error("'%s' is not a merge command", name);
		return EXIT_USAGE;
	}
	r = parse(usage, argc, argv, &a);
	if (r)
		goto done;
	if (a.apply_mask > 0)
		a.o.method = WELD_METHOD_APPLY_MASK;
	a.o.masks_out = a.save_masks;
	a.o.warn = cli_warn_cb;
	a.o.progress = cli_progress;
	p = weld_plan_new(&a.o);
	if (!p) {
		cli_error("out of memory");
		r = EXIT_FAIL;
		goto done;
	}
	if (build(p, &a, &err) < 0 || weld_plan_finish(p, &err) < 0) {
		r = cli_fail(&err);
		goto done;
	}
	if ((a.out && (r = cli_check_output(p, a.out, a.o.force, false))) ||
	    (a.save_masks && (r = cli_check_output(p, a.save_masks, a.o.force, true))))
		goto done;
	recipe = recipe_json(&a);
	weld_plan_set_recipe(p, recipe);
	if (weld_plan_check_output(p, a.out ? a.out : "OUT", &err) < 0) {
		r = cli_fail(&err);
		goto done;
	}
	{
		char note[1024];

		if (cli_verbosity >= 1 && weld_plan_output_note(p, note, sizeof(note)))
			fprintf(stderr, "%s: note: %s\n", cli_name, cli_safe(note));
	}
	if (merge_plan_only) {
		plan_print(p, a.json, NULL);
		r = EXIT_OK;
		goto done;
	}
	if (cli_verbosity >= 2)
		report_plan_verbose(p);
	cli_install_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_plan_execute(p, a.out, &err) < 0) {
		r = cli_fail(&err);
		goto done;
	}
	cli_progress_end();
	report(&a, p, cli_seconds_since(&t0));
	r = EXIT_OK;
done:
	weld_plan_free(p);
	free(recipe);
	free(a.part_out);
	for (size_t i = 0; i < a.n; i++)
		free(a.m[i].owned);
	return r < 0 ? EXIT_OK : r;
}
