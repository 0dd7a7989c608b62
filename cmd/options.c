/*
 * options.c - parse a merge command line, plan, then run or print.
 *
 * The order matters to users: every usage error (exit 2) is reported before
 * any file is opened, every model and plan error (exit 1) before the output
 * folder is created.
 */
#include "options.h"
#include "recipe.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_MODELS 64

bool merge_plan_only;

enum {
	O_BASE = 256, O_WEIGHTS, O_DENSITY, O_LAMBDA, O_DTYPE, O_SCOPE, O_SEED,
	O_MAXMEM, O_SHARD, O_ALLOW_MISSING, O_NO_COPY, O_JSON, O_SIGN, O_NORMALIZE,
	O_NO_NORMALIZE, O_RESCALE, O_COMBINE, O_TRIM, O_GAMMA, O_FROM, O_MASK_LAMBDA,
	O_K, O_SAVE_MASKS, O_APPLY_MASK, O_MASKS, O_MERGED,
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

/* Which enum merge_opt bit an option needs (0: every merge takes it). */
static unsigned opt_bit(int c)
{
	switch (c) {
	case O_LAMBDA: return MO_LAMBDA;
	case O_DENSITY: return MO_DENSITY;
	case O_SCOPE: return MO_SCOPE;
	case O_SIGN: return MO_SIGN;
	case O_NORMALIZE: case O_NO_NORMALIZE: return MO_NORMALIZE;
	case O_RESCALE: return MO_RESCALE;
	case O_COMBINE: return MO_COMBINE;
	case O_TRIM: return MO_TRIM;
	case O_GAMMA: return MO_GAMMA;
	case O_SEED: return MO_SEED;
	case O_FROM: case O_MASK_LAMBDA: case O_K: case O_SAVE_MASKS:
	case O_APPLY_MASK: case O_MASKS: case O_MERGED:
		return MO_CONSENSUS;
	default: return 0;
	}
}

struct model_arg {
	const char *path;
	char *owned;
	bool has_w, has_d, has_ml;
	double w, d, ml;
};

struct merge_args {
	const char *out, *base, *save_masks, *masks, *merged;
	struct model_arg m[MAX_MODELS];
	size_t n;
	double weights[MAX_MODELS], density[MAX_MODELS], mask_lambda[MAX_MODELS];
	size_t nweights, ndensity, nmask_lambda;
	double lambda, gamma;
	long apply_mask;
	bool json;
	struct weld_merge_opts o;
};

static int pick(const char *usage, const char *opt, const char *s,
		const char *const *names, int *out)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	return cli_usage_error(usage, "invalid value '%s' for '%s'", s, opt);
}

/*
 * MODEL[:key=value,...]: per-model values after the last ':' when what
 * follows looks like key=value; "./a:b" stays a path.
 */
static int parse_model(const char *usage, const char *arg, struct model_arg *m)
{
	const char *colon = strrchr(arg, ':');
	char *opts, *save = NULL, *tok;

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
	for (tok = strtok_r(opts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		double v;

		if (!eq) {
			free(opts);
			return cli_usage_error(usage, "model '%s': '%s' is not key=value", arg, tok);
		}
		*eq = 0;
		if (!cli_double(tok, eq + 1, &v)) {
			free(opts);
			return EXIT_USAGE;
		}
		if (!strcmp(tok, "weight"))
			m->has_w = true, m->w = v;
		else if (!strcmp(tok, "density"))
			m->has_d = true, m->d = v;
		else if (!strcmp(tok, "mask_lambda") || !strcmp(tok, "mask-lambda"))
			m->has_ml = true, m->ml = v;
		else {
			free(opts);
			return cli_usage_error(usage, "model '%s': unknown key '%s' (weight, density, mask_lambda)",
					       arg, tok);
		}
	}
	free(opts);
	return 0;
}

/* Per-model value: MODEL:key=, else the list (one value for all), else dflt. */
static double per_model(const double *list, size_t nlist, size_t i, bool has, double v,
			double dflt)
{
	if (has)
		return v;
	if (nlist == 1)
		return list[0];
	if (nlist > i)
		return list[i];
	return dflt;
}

static int parse(const struct merge_spec *spec, int argc, char **argv, struct merge_args *a)
{
	static const char *const scopes[] = { "tensor", "row", "model", NULL };
	static const char *const signs[] = { "sum", "count", NULL };
	static const char *const rescales[] = { "inverse", "l1", "none", NULL };
	static const char *const combines[] = { "sum", "ties", NULL };
	static const char *const froms[] = { "ta", "ties", NULL };
	const char *u = spec->usage;
	int c, v = 0;
	long l;

	a->lambda = 1;
	a->gamma = 0.01;
	a->apply_mask = -1;
	a->o.method = spec->method;
	a->o.normalize = spec->normalize;
	a->o.combine = spec->combine;
	a->o.k = 2;
	a->o.dtype = -1;
	a->o.max_memory = 1000000000ull;
	a->o.record_memory = UINT64_MAX;
	{
		/* tuning: memory the top-k passes may use for recorded keys */
		const char *rm = getenv("WELD_RECORD_MEMORY");

		if (rm && weld_parse_size(rm, &a->o.record_memory) < 0)
			return cli_usage_error(u, "WELD_RECORD_MEMORY='%s' is not a size", rm);
	}
	a->o.shard_size = 5000000000ull;
	a->o.copy_files = true;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", long_opts, NULL)) != -1) {
		unsigned bit = opt_bit(c);

		if (bit && !(spec->opts & bit))
			return cli_usage_error(u, "option '%s' is not used by 'weld %s'",
					       opt_name(c), spec->name);
		switch (cli_output_opt(c, u, &a->out, &a->o.force, &a->o.threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return -1;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_BASE: a->base = optarg; break;
		case O_WEIGHTS:
			if (!cli_list("--weights", optarg, a->weights, MAX_MODELS, &a->nweights))
				return EXIT_USAGE;
			break;
		case O_DENSITY:
			if (!cli_list("--density", optarg, a->density, MAX_MODELS, &a->ndensity))
				return EXIT_USAGE;
			break;
		case O_MASK_LAMBDA:
			if (!cli_list("--mask-lambda", optarg, a->mask_lambda, MAX_MODELS, &a->nmask_lambda))
				return EXIT_USAGE;
			break;
		case O_LAMBDA:
			if (!cli_double("--lambda", optarg, &a->lambda))
				return EXIT_USAGE;
			break;
		case O_TRIM:
			if (!cli_double("--trim", optarg, &a->o.trim))
				return EXIT_USAGE;
			if (!(a->o.trim > 0 && a->o.trim <= 1))
				return cli_usage_error(u, "--trim %s is outside (0, 1]", optarg);
			break;
		case O_GAMMA:
			if (!cli_double("--gamma", optarg, &a->gamma))
				return EXIT_USAGE;
			if (!(a->gamma >= 0 && a->gamma < 1))
				return cli_usage_error(u, "--gamma %s is outside [0, 1)", optarg);
			break;
		case O_DTYPE:
			if (!cli_dtype(optarg, &a->o.dtype))
				return EXIT_USAGE;
			break;
		case O_SCOPE:
			if (pick(u, "--scope", optarg, scopes, &v))
				return EXIT_USAGE;
			a->o.scope = (enum weld_scope)v;
			break;
		case O_SIGN:
			if (pick(u, "--sign", optarg, signs, &v))
				return EXIT_USAGE;
			a->o.sign = (enum weld_sign)v;
			break;
		case O_RESCALE:
			if (pick(u, "--rescale", optarg, rescales, &v))
				return EXIT_USAGE;
			a->o.rescale = (enum weld_rescale)v;
			break;
		case O_COMBINE:
			if (pick(u, "--combine", optarg, combines, &v))
				return EXIT_USAGE;
			a->o.combine = (enum weld_combine)v;
			break;
		case O_FROM:
			if (pick(u, "--from", optarg, froms, &v))
				return EXIT_USAGE;
			a->o.from = (enum weld_from)v;
			break;
		case O_NORMALIZE: a->o.normalize = true; break;
		case O_NO_NORMALIZE: a->o.normalize = false; break;
		case O_SEED: {
			char *end;

			a->o.seed = strtoull(optarg, &end, 10);
			if (!*optarg || *end || *optarg == '-')
				return cli_usage_error(u, "invalid value '%s' for '--seed'", optarg);
			break;
		}
		case O_MAXMEM:
			if (!cli_size("--max-memory", optarg, &a->o.max_memory))
				return EXIT_USAGE;
			break;
		case O_SHARD:
			if (!cli_size("--shard-size", optarg, &a->o.shard_size))
				return EXIT_USAGE;
			break;
		case O_ALLOW_MISSING: a->o.allow_missing = true; break;
		case O_NO_COPY: a->o.copy_files = false; break;
		case O_JSON: a->json = true; break;
		case O_K:
			if (!cli_int("--k", optarg, 0, MAX_MODELS, &l))
				return EXIT_USAGE;
			a->o.k = (int)l;
			break;
		case O_SAVE_MASKS: a->save_masks = optarg; break;
		case O_APPLY_MASK:
			if (!cli_int("--apply-mask", optarg, 1, MAX_MODELS, &a->apply_mask))
				return EXIT_USAGE;
			break;
		case O_MASKS: a->masks = optarg; break;
		case O_MERGED: a->merged = optarg; break;
		default:
			return cli_bad_option(u, c, argv);
		}
	}
	for (int i = optind; i < argc; i++) {
		int r;

		if (a->n == MAX_MODELS)
			return cli_usage_error(u, "too many models (at most %d)", MAX_MODELS);
		r = parse_model(u, argv[i], &a->m[a->n++]);
		if (r)
			return r;
	}
	if (!a->out && !merge_plan_only)
		return cli_usage_error(u, "an output folder is required (-o OUT)");
	if (a->apply_mask > 0) {
		if (!a->masks || !a->merged || !a->base)
			return cli_usage_error(u, "--apply-mask needs --masks FILE, --merged MODEL and --base MODEL");
		if (a->n)
			return cli_usage_error(u, "--apply-mask takes no MODEL arguments");
		if (a->save_masks)
			return cli_usage_error(u, "--save-masks and --apply-mask do not go together");
		return 0;
	}
	if (!a->n)
		return cli_usage_error(u, "no models to merge");
	if ((spec->opts & MO_NEEDS_BASE) && !a->base)
		return cli_usage_error(u, "--base is required: %s works on task vectors (model - base)",
				       spec->name);
	if (a->nweights > 1 && a->nweights != a->n)
		return cli_usage_error(u, "--weights has %zu values for %zu models", a->nweights, a->n);
	if (a->ndensity > 1 && a->ndensity != a->n)
		return cli_usage_error(u, "--density has %zu values for %zu models", a->ndensity, a->n);
	if (a->nmask_lambda > 1 && a->nmask_lambda != a->n)
		return cli_usage_error(u, "--mask-lambda has %zu values for %zu models",
				       a->nmask_lambda, a->n);
	for (size_t i = 0; i < a->n; i++) {
		double d = per_model(a->density, a->ndensity, i, a->m[i].has_d, a->m[i].d, spec->density);

		if ((spec->opts & MO_DENSITY) && !(d > 0 && d <= 1))
			return cli_usage_error(u, "density %g of '%s' is outside (0, 1]", d, a->m[i].path);
	}
	if (a->o.trim > 0 && a->o.combine != WELD_COMBINE_TIES)
		return cli_usage_error(u, "--trim needs --combine ties");
	if (a->save_masks && spec->method != WELD_METHOD_CONSENSUS)
		return cli_usage_error(u, "--save-masks is for consensus");
	return 0;
}

static int build_apply_mask(weld_plan *p, struct merge_args *a, struct weld_error *err)
{
	int b = weld_plan_add_model(p, a->base, err), m, k;
	const weld_model *base, *merged, *masks;
	char name[4096];

	if (b < 0 || (m = weld_plan_add_model(p, a->merged, err)) < 0 ||
	    (k = weld_plan_add_model(p, a->masks, err)) < 0)
		return -1;
	base = weld_plan_model(p, b);
	merged = weld_plan_model(p, m);
	masks = weld_plan_model(p, k);
	for (size_t i = 0; i < weld_model_count(base); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(base, i);
		int64_t mi = weld_model_find(merged, t->name);
		struct weld_source src = { .model = m, .tensor = mi, .weight = 1, .density = 1 };
		struct weld_job j = { 0 };

		if (mi < 0)
			return weld_fail(err, WELD_ERR_MISMATCH, "tensor '%s': missing from '%s'",
					 t->name, a->merged);
		if (weld_model_tensor(merged, (size_t)mi)->nelem != t->nelem)
			return weld_fail(err, WELD_ERR_MISMATCH,
					 "tensor '%s': different sizes in '%s' and '%s'", t->name,
					 a->base, a->merged);
		j.name = t->name;
		j.ndim = t->ndim;
		memcpy(j.shape, t->shape, sizeof(j.shape));
		j.nelem = t->nelem;
		j.nsrc = 1;
		j.src = &src;
		j.lambda = 1;
		j.mask_model = -1;
		j.mask_tensor = -1;
		j.base_model = -1;
		j.base_tensor = -1;
		if (!weld_dtype_is_float(t->dtype)) {
			j.method = WELD_METHOD_COPY;
			j.dtype = t->dtype;
		} else {
			const struct weld_tensor_info *mt;

			snprintf(name, sizeof(name), "%s.mask.%ld", t->name, a->apply_mask);
			j.mask_tensor = weld_model_find(masks, name);
			mt = j.mask_tensor >= 0 ? weld_model_tensor(masks, (size_t)j.mask_tensor) : NULL;
			if (!mt)
				return weld_fail(err, WELD_ERR_MISMATCH,
						 "'%s': no mask tensor '%s' (is task %ld in this file?)",
						 a->masks, name, a->apply_mask);
			if (mt->dtype != WELD_U8 || mt->nelem != (t->nelem + 7) / 8)
				return weld_fail(err, WELD_ERR_FORMAT,
						 "'%s': tensor '%s': expected %llu U8 bytes for %llu elements",
						 a->masks, name, (unsigned long long)((t->nelem + 7) / 8),
						 (unsigned long long)t->nelem);
			j.method = WELD_METHOD_APPLY_MASK;
			j.dtype = a->o.dtype >= 0 ? (enum weld_dtype)a->o.dtype
				 : weld_model_tensor(merged, (size_t)mi)->dtype;
			j.base_model = b;
			j.base_tensor = (int64_t)i;
			j.mask_model = k;
		}
		if (weld_plan_add_job(p, &j, err) < 0)
			return -1;
	}
	return 0;
}

static int build(const struct merge_spec *spec, weld_plan *p, struct merge_args *a,
		 struct weld_error *err)
{
	struct weld_model_params mp[MAX_MODELS];
	int idx[MAX_MODELS], base = -1;

	if (a->apply_mask > 0)
		return build_apply_mask(p, a, err);
	if (spec->method == WELD_METHOD_AVERAGE && a->base)
		cli_warning("--base is not used by average (list the base as a MODEL to include it)");
	else if (a->base && (base = weld_plan_add_model(p, a->base, err)) < 0)
		return -1;
	for (size_t i = 0; i < a->n; i++) {
		const struct model_arg *m = &a->m[i];

		if ((idx[i] = weld_plan_add_model(p, m->path, err)) < 0)
			return -1;
		mp[i].weight = per_model(a->weights, a->nweights, i, m->has_w, m->w, 1.0);
		mp[i].density = per_model(a->density, a->ndensity, i, m->has_d, m->d, spec->density);
		mp[i].mask_lambda = per_model(a->mask_lambda, a->nmask_lambda, i, m->has_ml, m->ml, 0.6);
	}
	return weld_plan_standard(p, base, idx, a->n, mp, a->lambda, a->gamma, NULL, NULL, err);
}

static void print_shape(FILE *f, const struct weld_job *j)
{
	fputc('[', f);
	for (int d = 0; d < j->ndim; d++)
		fprintf(f, "%s%lld", d ? ", " : "", (long long)j->shape[d]);
	fputc(']', f);
}

/* Which per-tensor values a job's method reads (the plan shows only those). */
static bool uses_lambda(enum weld_method m)
{
	return m == WELD_METHOD_TASK_ARITHMETIC || m == WELD_METHOD_TIES ||
	       m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS ||
	       m == WELD_METHOD_CONSENSUS;
}

static bool uses_density(const struct weld_merge_opts *o, enum weld_method m)
{
	return m == WELD_METHOD_TIES || m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS ||
	       (m == WELD_METHOD_CONSENSUS && o->from == WELD_FROM_TIES);
}

static bool elects_signs(const struct weld_merge_opts *o)
{
	switch (o->method) {
	case WELD_METHOD_TIES: return true;
	case WELD_METHOD_DARE:
	case WELD_METHOD_BREADCRUMBS: return o->combine == WELD_COMBINE_TIES;
	case WELD_METHOD_CONSENSUS: return o->from == WELD_FROM_TIES;
	default: return false;
	}
}

/* One option of print_options: key=value (text) or "key":value (JSON). */
static void print_opt(bool json, bool *first, const char *key, const char *val, bool str)
{
	if (json)
		printf(str ? "%s\"%s\":\"%s\"" : "%s\"%s\":%s", *first ? "" : ",", key, val);
	else
		printf("%s%s=%s", *first ? "" : " ", key, val);
	*first = false;
}

/* The method-wide options that matter for the plan's method. */
static void print_options(const struct weld_merge_opts *o, bool json)
{
	static const char *const scopes[] = { "tensor", "row", "model" };
	static const char *const signs[] = { "sum", "count" };
	static const char *const rescales[] = { "inverse", "l1", "none" };
	static const char *const combines[] = { "sum", "ties" };
	static const char *const froms[] = { "ta", "ties" };
	enum weld_method m = o->method;
	bool first = true;
	char num[32];

	if (m == WELD_METHOD_AVERAGE || m == WELD_METHOD_TASK_ARITHMETIC || m == WELD_METHOD_TIES ||
	    m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS)
		print_opt(json, &first, "normalize", o->normalize ? "true" : "false", false);
	if (m == WELD_METHOD_TIES || m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS ||
	    m == WELD_METHOD_CONSENSUS)
		print_opt(json, &first, "scope", scopes[o->scope], true);
	if (m == WELD_METHOD_DARE)
		print_opt(json, &first, "rescale", rescales[o->rescale], true);
	if (m == WELD_METHOD_DARE || m == WELD_METHOD_BREADCRUMBS)
		print_opt(json, &first, "combine", combines[o->combine], true);
	if (m == WELD_METHOD_CONSENSUS) {
		print_opt(json, &first, "from", froms[o->from], true);
		snprintf(num, sizeof(num), "%d", o->k);
		print_opt(json, &first, "k", num, false);
	}
	if (elects_signs(o))
		print_opt(json, &first, "sign", signs[o->sign], true);
	if (m == WELD_METHOD_DARE && o->combine == WELD_COMBINE_TIES && o->trim > 0) {
		snprintf(num, sizeof(num), json ? "%.17g" : "%g", o->trim);
		print_opt(json, &first, "trim", num, false);
	}
	if (first && !json)
		printf("none");
}

static void print_job_json(const weld_plan *p, const struct weld_job *j)
{
	printf("{\"name\":");
	cli_json_string(stdout, j->name);
	printf(",\"dtype\":\"%s\",\"shape\":", weld_dtype_name(j->dtype));
	print_shape(stdout, j);
	printf(",\"method\":\"%s\"", weld_method_name(j->method));
	if (uses_lambda(j->method))
		printf(",\"lambda\":%.17g", j->lambda);
	if (j->method == WELD_METHOD_BREADCRUMBS)
		printf(",\"gamma\":%.17g", j->gamma);
	if (j->method == WELD_METHOD_SLERP)
		printf(",\"t\":%.17g", j->t);
	if (j->base_model >= 0) {
		printf(",\"base\":{\"model\":%d,\"tensor\":", j->base_model);
		cli_json_string(stdout, weld_model_tensor(weld_plan_model(p, j->base_model),
							  (size_t)j->base_tensor)->name);
		putchar('}');
	}
	printf(",\"sources\":[");
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_source *src = &j->src[s];

		printf("%s{\"model\":%d,\"tensor\":", s ? "," : "", src->model);
		cli_json_string(stdout, weld_model_tensor(weld_plan_model(p, src->model),
							  (size_t)src->tensor)->name);
		printf(",\"weight\":%.17g,\"density\":%.17g", src->weight, src->density);
		if (j->method == WELD_METHOD_CONSENSUS)
			printf(",\"mask_lambda\":%.17g", src->mask_lambda);
		putchar('}');
	}
	printf("]}");
}

static void print_job_text(const weld_plan *p, const struct weld_job *j)
{
	const struct weld_merge_opts *o = weld_plan_opts(p);

	printf("%s %s ", j->name, weld_dtype_name(j->dtype));
	print_shape(stdout, j);
	printf(" %s", weld_method_name(j->method));
	if (uses_lambda(j->method))
		printf(" lambda=%g", j->lambda);
	if (j->method == WELD_METHOD_BREADCRUMBS)
		printf(" gamma=%g", j->gamma);
	if (j->method == WELD_METHOD_SLERP)
		printf(" t=%g", j->t);
	if (j->base_model >= 0) {
		const char *bn = weld_model_tensor(weld_plan_model(p, j->base_model),
						   (size_t)j->base_tensor)->name;

		printf(" base=model%d", j->base_model);
		if (strcmp(bn, j->name))
			printf(":%s", bn);
	}
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_source *src = &j->src[s];
		const char *sn = weld_model_tensor(weld_plan_model(p, src->model),
						   (size_t)src->tensor)->name;

		printf(" model%d", src->model);
		if (strcmp(sn, j->name))
			printf(":%s", sn);
		if (j->method == WELD_METHOD_COPY || j->method == WELD_METHOD_SLERP)
			continue;
		printf("(w=%g", src->weight);
		if (uses_density(o, j->method))
			printf(",d=%g", src->density);
		if (j->method == WELD_METHOD_CONSENSUS)
			printf(",ml=%g", src->mask_lambda);
		putchar(')');
	}
	putchar('\n');
}

void merge_print_plan(const weld_plan *p, bool json, const struct merge_plan_labels *labels)
{
	const struct weld_merge_opts *o = weld_plan_opts(p);
	const char *method = labels && labels->method ? labels->method : weld_method_name(o->method);
	char mem[32], lim[32];
	uint64_t out_bytes = 0;

	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		out_bytes += weld_plan_job(p, i)->nelem * weld_dtype_size(weld_plan_job(p, i)->dtype);
	weld_format_size(weld_plan_memory(p), mem, sizeof(mem));
	weld_format_size(o->max_memory, lim, sizeof(lim));
	if (json) {
		printf("{\"method\":");
		cli_json_string(stdout, method);
		printf(",\"options\":{");
		print_options(o, true);
		printf("},\"seed\":%llu,\"memory_bytes\":%llu,\"max_memory\":%llu,"
		       "\"chunk_elements\":%llu,\"input_bytes\":%llu,\"output_bytes\":%llu,\"models\":[",
		       (unsigned long long)o->seed, (unsigned long long)weld_plan_memory(p),
		       (unsigned long long)o->max_memory,
		       (unsigned long long)weld_plan_chunk_elems(p),
		       (unsigned long long)weld_plan_input_bytes(p), (unsigned long long)out_bytes);
		for (size_t m = 0; m < weld_plan_model_count(p); m++) {
			printf(m ? "," : "");
			cli_json_string(stdout, labels && labels->models
					? labels->models[m] : weld_model_path(weld_plan_model(p, (int)m)));
		}
		printf("],\"tensors\":[");
		for (size_t i = 0; i < weld_plan_job_count(p); i++) {
			printf(i ? "," : "");
			print_job_json(p, weld_plan_job(p, i));
		}
		printf("]");
		if (labels && labels->recipe_json)
			printf(",\"recipe\":%s", labels->recipe_json);
		printf("}\n");
		return;
	}
	if (labels && labels->recipe)
		printf("recipe   %s\n", labels->recipe);
	printf("method   %s\n", method);
	printf("options  ");
	print_options(o, false);
	printf("\nseed     %llu\n", (unsigned long long)o->seed);
	for (size_t m = 0; m < weld_plan_model_count(p); m++)
		printf("model %zu  %s\n", m, labels && labels->models
		       ? labels->models[m] : weld_model_path(weld_plan_model(p, (int)m)));
	printf("memory   %s of buffers (--max-memory %s), %llu elements per chunk\n", mem, lim,
	       (unsigned long long)weld_plan_chunk_elems(p));
	weld_format_size(weld_plan_input_bytes(p), mem, sizeof(mem));
	weld_format_size(out_bytes, lim, sizeof(lim));
	printf("reads    %s\nwrites   %s in %zu tensors\n", mem, lim, weld_plan_job_count(p));
	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		print_job_text(p, weld_plan_job(p, i));
}

/* An absolute path for the stored recipe (the path itself if that fails). */
static void add_path(cJSON *obj, const char *key, const char *path)
{
	char *abs = realpath(path, NULL);

	cJSON_AddStringToObject(obj, key, abs ? abs : path);
	free(abs);
}

/*
 * The merge as a normalised recipe (DESIGN 5), stored in the output's
 * metadata: absolute paths, every value that changes the bytes written out,
 * nothing that does not (-j, --max-memory, -o). `weld run --from-output`
 * runs it again.
 */
static char *recipe_json(const struct merge_spec *spec, const struct merge_args *a)
{
	static const char *const scopes[] = { "tensor", "row", "model" };
	static const char *const signs[] = { "sum", "count" };
	static const char *const rescales[] = { "inverse", "l1", "none" };
	static const char *const combines[] = { "sum", "ties" };
	static const char *const froms[] = { "ta", "ties" };
	static const char *const dtypes[] = {
		[WELD_F64] = "float64", [WELD_F32] = "float32",
		[WELD_F16] = "float16", [WELD_BF16] = "bfloat16",
	};
	cJSON *r = cJSON_CreateObject(), *models, *params, *w;
	unsigned o = spec->opts;
	char *text;

	if (!r)
		return NULL;
	if (a->apply_mask > 0) {
		/* no recipe form: record what was done */
		cJSON_AddStringToObject(r, "weld_command", "consensus --apply-mask");
		cJSON_AddNumberToObject(r, "task", (double)a->apply_mask);
		add_path(r, "base_model", a->base);
		add_path(r, "merged", a->merged);
		add_path(r, "masks", a->masks);
		goto done;
	}
	cJSON_AddStringToObject(r, "merge_method", spec->name);
	if (a->base && spec->method != WELD_METHOD_AVERAGE)
		add_path(r, "base_model", a->base);
	models = cJSON_AddArrayToObject(r, "models");
	for (size_t i = 0; i < a->n; i++) {
		const struct model_arg *m = &a->m[i];
		cJSON *e = cJSON_CreateObject(), *mp;

		cJSON_AddItemToArray(models, e);
		add_path(e, "model", m->path);
		mp = cJSON_AddObjectToObject(e, "parameters");
		cJSON_AddNumberToObject(mp, "weight",
					per_model(a->weights, a->nweights, i, m->has_w, m->w, 1.0));
		if ((o & MO_DENSITY) && !(spec->method == WELD_METHOD_CONSENSUS &&
					    a->o.from != WELD_FROM_TIES))
			cJSON_AddNumberToObject(mp, "density",
						per_model(a->density, a->ndensity, i, m->has_d, m->d,
							  spec->density));
		if (o & MO_GAMMA)
			cJSON_AddNumberToObject(mp, "gamma", a->gamma);
		if (o & MO_CONSENSUS)
			cJSON_AddNumberToObject(mp, "mask_lambda",
						per_model(a->mask_lambda, a->nmask_lambda, i,
							  m->has_ml, m->ml, 0.6));
	}
	params = cJSON_AddObjectToObject(r, "parameters");
	if (o & MO_LAMBDA)
		cJSON_AddNumberToObject(params, "lambda", a->lambda);
	if (o & MO_NORMALIZE)
		cJSON_AddBoolToObject(params, "normalize", a->o.normalize);
	if (a->o.dtype >= 0)
		cJSON_AddStringToObject(r, "out_dtype", dtypes[a->o.dtype]);
	w = cJSON_AddObjectToObject(r, "weld");
	if (o & MO_SCOPE)
		cJSON_AddStringToObject(w, "scope", scopes[a->o.scope]);
	if ((o & MO_SIGN) && (spec->method == WELD_METHOD_TIES ||
			       (o & MO_COMBINE ? a->o.combine == WELD_COMBINE_TIES
					       : a->o.from == WELD_FROM_TIES)))
		cJSON_AddStringToObject(w, "sign", signs[a->o.sign]);
	if (o & MO_SEED)
		cJSON_AddNumberToObject(w, "seed", (double)a->o.seed);
	if (o & MO_RESCALE)
		cJSON_AddStringToObject(w, "rescale", rescales[a->o.rescale]);
	if (o & MO_COMBINE)
		cJSON_AddStringToObject(w, "combine", combines[a->o.combine]);
	if ((o & MO_TRIM) && a->o.trim > 0)
		cJSON_AddNumberToObject(w, "trim", a->o.trim);
	if (o & MO_CONSENSUS) {
		cJSON_AddStringToObject(w, "from", froms[a->o.from]);
		cJSON_AddNumberToObject(w, "k", a->o.k);
	}
	cJSON_AddNumberToObject(w, "shard_size", (double)a->o.shard_size);
	cJSON_AddBoolToObject(w, "allow_missing", a->o.allow_missing);
	cJSON_AddBoolToObject(w, "copy_files", a->o.copy_files);
done:
	text = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	if (text && a->apply_mask <= 0) {
		/* exactly the text `weld run` would store for this recipe */
		struct weld_error err = { 0 };
		char *norm = weld_recipe_normalise(text, &err);

		if (!norm)
			cli_warning("stored recipe is not normalised: %s", err.msg);
		else {
			cJSON_free(text);
			text = norm;
		}
	}
	return text;
}

int merge_main(const struct merge_spec *spec, int argc, char **argv)
{
	struct merge_args a;
	struct weld_error err = { 0 };
	weld_plan *p = NULL;
	char *recipe = NULL;
	struct timespec t0, t1;
	int r;

	memset(&a, 0, sizeof(a));
	r = parse(spec, argc, argv, &a);
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
	if (build(spec, p, &a, &err) < 0 || weld_plan_finish(p, &err) < 0) {
		r = cli_fail(&err);
		goto done;
	}
	recipe = recipe_json(spec, &a);
	weld_plan_set_recipe(p, recipe);
	if (merge_plan_only) {
		merge_print_plan(p, a.json, NULL);
		r = EXIT_OK;
		goto done;
	}
	if (cli_verbosity >= 2) {
		char mem[32], in[32];

		weld_format_size(weld_plan_memory(p), mem, sizeof(mem));
		weld_format_size(weld_plan_input_bytes(p), in, sizeof(in));
		cli_info("%zu tensors from %zu models, %s to read, %s of buffers, %llu elements per chunk",
			 weld_plan_job_count(p), weld_plan_model_count(p), in, mem,
			 (unsigned long long)weld_plan_chunk_elems(p));
	}
	cli_install_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_plan_execute(p, a.out, &err) < 0) {
		r = cli_fail(&err);
		goto done;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cli_progress_end();
	if (a.json) {
		printf("{\"output\":");
		cli_json_string(stdout, a.out);
		printf(",\"method\":\"%s\",\"tensors\":%zu,\"bytes_read\":%llu,\"seconds\":%.3f}\n",
		       weld_method_name(a.o.method), weld_plan_job_count(p),
		       (unsigned long long)weld_plan_input_bytes(p),
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	} else if (cli_verbosity >= 1) {
		char sz[32];

		weld_format_size(weld_plan_input_bytes(p), sz, sizeof(sz));
		fprintf(stderr, "%s: wrote '%s' (%zu tensors, %s read in %.2f s)\n", cli_name, a.out,
			weld_plan_job_count(p), sz,
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	}
	r = EXIT_OK;
done:
	weld_plan_free(p);
	free(recipe);
	for (size_t i = 0; i < a.n; i++)
		free(a.m[i].owned);
	return r < 0 ? EXIT_OK : r;
}
