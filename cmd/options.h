/*
 * options.h - the command line shared by every merge command.
 *
 * Each merge command is a `struct merge_spec`: its method, which options it
 * takes, and its defaults. merge_main() parses, plans (every error is found
 * before anything is written), then either prints the plan ('weld plan') or
 * executes it.
 */
#ifndef WELD_OPTIONS_H
#define WELD_OPTIONS_H

#include "cli.h"
#include "commands.h"

/* The options every merge command takes, for the end of its -h text. */
#define MERGE_COMMON_USAGE \
	"\n" \
	"  -o, --output DIR        output folder (refused if it exists, unless -f)\n" \
	"  -f, --force             replace an existing output once the new one is complete\n" \
	"      --dtype TYPE        auto|bf16|f16|f32|f64 (default auto: the base's dtype)\n" \
	"  -j, --threads N         worker threads (default: OMP_NUM_THREADS, else all cores)\n" \
	"      --max-memory SIZE   memory budget, e.g. 512M, 4G (default 1G)\n" \
	"      --shard-size SIZE   largest output shard (default 5G; 0 = one file)\n" \
	"      --allow-missing     merge a tensor over the models that have it\n" \
	"      --no-copy-files     do not copy config and tokenizer files\n" \
	"  -q, --quiet / -v, --verbose\n" \
	"      --json              machine-readable summary on stdout\n" \
	"  MODEL may carry values: MODEL:weight=0.5,density=0.3\n"

enum merge_opt {
	MO_LAMBDA = 1 << 0,
	MO_DENSITY = 1 << 1,
	MO_SCOPE = 1 << 2,
	MO_SIGN = 1 << 3,
	MO_NORMALIZE = 1 << 4,
	MO_RESCALE = 1 << 5,
	MO_COMBINE = 1 << 6,
	MO_TRIM = 1 << 7,
	MO_GAMMA = 1 << 8,
	MO_SEED = 1 << 9,
	MO_CONSENSUS = 1 << 10,  /* --from --mask-lambda --k --save-masks --apply-mask */
	MO_NEEDS_BASE = 1 << 11,
};

struct merge_spec {
	const char *name;
	enum weld_method method;
	unsigned opts;           /* enum merge_opt */
	const char *usage;       /* the synopsis and option list, for -h */
	double density;          /* default */
	bool normalize;          /* default */
	enum weld_combine combine;
};

/* Set by 'weld plan <command line>': print the plan, write nothing. */
extern bool merge_plan_only;

int merge_main(const struct merge_spec *spec, int argc, char **argv);

/* How a recipe names things, for merge_print_plan (all may be NULL). */
struct merge_plan_labels {
	const char *recipe;          /* the recipe file */
	const char *method;          /* merge_method as the recipe spells it */
	const char *const *models;   /* model i as the recipe names it */
	const char *recipe_json;     /* the normalised recipe, added to --json */
};

/*
 * Print a finished plan on stdout: a header (method, options, models,
 * memory bound), then one line per output tensor with its dtype, shape,
 * method, evaluated parameters, base and sources (a source tensor whose
 * name differs from the output's is shown as modelN:name). Stable text,
 * fit for diffing; json gives one JSON object instead. labels may be NULL.
 */
void merge_print_plan(const weld_plan *p, bool json, const struct merge_plan_labels *labels);

#endif
