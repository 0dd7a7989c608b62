/*
 * cmd_run.c - weld run: merge by a recipe (mergekit's configuration schema
 * as JSON), and the recipe form of weld plan.
 *
 * The recipe is read, checked and planned by lib/recipe/; every recipe
 * error (exit 1) is reported before the output folder is created, every
 * usage error (exit 2) before the recipe is read.
 */
#include "cli.h"
#include "commands.h"
#include "plan_print.h"
#include "recipe.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char run_usage[] =
	"usage: weld run [<options>] -o OUT RECIPE.json\n"
	"       weld run [<options>] -o OUT --from-output DIR\n"
	"\n  merge models as a JSON recipe says (mergekit's configuration schema; see\n"
	"  weld-run(1)); everything is checked before the output folder is created\n"
	"  -o, --output DIR        output folder (required)\n"
	"  -f, --force             replace an existing output folder\n"
	"      --from-output DIR   run again the recipe stored in DIR, a weld output\n"
	"  -j, --threads N         worker threads (default: OMP_NUM_THREADS, else all cores)\n"
	"      --max-memory SIZE   memory budget (default: the recipe's, else 1G)\n"
	"      --shard-size SIZE   largest output shard (default: the recipe's, else 5G)\n"
	"  -q, --quiet             no progress bar, no warnings\n"
	"  -v, --verbose           say what was written\n"
	"      --json              summary as JSON on stdout\n"
	"      --part I/N|auto     write only part I of N of the output (OUT.part-I-of-N,\n"
	"                          see weld-join(1)); auto: from Slurm or --parts N\n";

static const char plan_usage[] =
	"usage: weld plan [--json] [-j N] [--max-memory SIZE] [--shard-size SIZE] RECIPE.json\n"
	"\n  check a recipe and print, for every output tensor, the method, the evaluated\n"
	"  parameters and the sources, and the memory bound; write nothing\n"
	"      --json              one JSON object instead of text\n"
	"  -j, --threads N         threads the memory bound assumes\n"
	"      --max-memory SIZE   memory budget (default: the recipe's, else 1G)\n"
	"      --shard-size SIZE   largest output shard (default: the recipe's, else 5G)\n";

enum { O_MAXMEM = 256, O_SHARD, O_JSON, O_FROM, O_PART, O_PARTS };

struct run_args {
	const char *out, *recipe, *from;
	const char *part, *parts;     /* --part, --parts as given */
	char *part_out;               /* OUT.part-I-of-N */
	bool json;
	struct weld_recipe_settings s;
};

/* Returns 0, EXIT_USAGE, or -1 after printing the help. */
static int parse_args(int argc, char **argv, bool plan, struct run_args *a)
{
	static const struct option opts[] = {
		CLI_OUTPUT_OPTIONS,
		{ "max-memory", required_argument, NULL, O_MAXMEM },
		{ "shard-size", required_argument, NULL, O_SHARD },
		{ "json", no_argument, NULL, O_JSON },
		{ "from-output", required_argument, NULL, O_FROM },
		{ "part", required_argument, NULL, O_PART },
		{ "parts", required_argument, NULL, O_PARTS },
		{ NULL, 0, NULL, 0 },
	};
	const char *u = plan ? plan_usage : run_usage;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", opts, NULL)) != -1) {
		if (plan && (c == 'o' || c == 'f' || c == 'q' || c == 'v' || c == O_FROM ||
			     c == O_PART || c == O_PARTS))
			return cli_usage_error("option '%s' is not used by 'weld plan' (it writes nothing)",
					       c == 'o' ? "--output" : c == 'f' ? "--force" :
					       c == 'q' ? "--quiet" : c == 'v' ? "--verbose" :
					       c == O_FROM ? "--from-output" : c == O_PART ? "--part" : "--parts");
		switch (cli_output_opt(c, u, &a->out, &a->s.force, &a->s.threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return -1;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_MAXMEM:
			if (!cli_size("--max-memory", optarg, &a->s.max_memory))
				return EXIT_USAGE;
			a->s.has_max_memory = true;
			break;
		case O_SHARD:
			if (!cli_size("--shard-size", optarg, &a->s.shard_size))
				return EXIT_USAGE;
			a->s.has_shard_size = true;
			break;
		case O_JSON: a->json = true; break;
		case O_FROM: a->from = optarg; break;
		case O_PART: a->part = optarg; break;
		case O_PARTS: a->parts = optarg; break;
		default:
			return cli_bad_option(c, argv);
		}
	}
	if (argc - optind > 1)
		return cli_usage_error("expected one recipe, got %d arguments", argc - optind);
	a->recipe = optind < argc ? argv[optind] : NULL;
	if (a->recipe && a->from)
		return cli_usage_error("give a RECIPE.json or --from-output DIR, not both");
	if (!a->recipe && !a->from)
		return cli_usage_error("expected a RECIPE.json (or --from-output DIR)");
	if (!plan && !a->out)
		return cli_usage_error("an output folder is required (-o OUT)");
	if (a->parts && !a->part)
		return cli_usage_error("--parts goes with --part auto");
	if (a->part) {
		if (cli_part(a->part, a->parts, &a->s.part, &a->s.parts))
			return EXIT_USAGE;
		if (!(a->part_out = cli_part_output(a->out, a->s.part, a->s.parts)))
			return cli_usage_error("out of memory");
		a->out = a->part_out;
	}
	return 0;
}

static int run(int argc, char **argv, bool plan)
{
	struct run_args a;
	struct weld_error err = { 0 };
	weld_recipe *r = NULL;
	weld_plan *p = NULL;
	struct timespec t0;
	int ret;

	memset(&a, 0, sizeof(a));
	ret = parse_args(argc, argv, plan, &a);
	if (ret) {
		free(a.part_out);
		return ret < 0 ? EXIT_OK : ret;
	}
	a.s.warn = cli_warn_cb;
	a.s.progress = cli_progress;
	if ((a.from ? weld_recipe_from_output(&r, a.from, &err)
		    : weld_recipe_load(&r, a.recipe, &err)) < 0 ||
	    weld_recipe_plan(r, &a.s, &p, &err) < 0) {
		ret = cli_fail(&err);
		goto out;
	}
	if (a.out && (ret = cli_check_output(p, a.out, a.s.force, false)))
		goto out;
	if (weld_plan_check_output(p, a.out ? a.out : "OUT", &err) < 0) {
		ret = cli_fail(&err);
		goto out;
	}
	if (plan) {
		struct plan_labels labels = {
			.recipe = a.recipe,
			.method = weld_recipe_method(r),
			.recipe_json = weld_recipe_json(r),
		};
		const char **names = calloc(weld_plan_model_count(p) + 1, sizeof(*names));

		if (!names) {
			cli_error("out of memory");
			ret = EXIT_FAIL;
			goto out;
		}
		for (size_t i = 0; i < weld_plan_model_count(p); i++)
			names[i] = weld_recipe_model_label(r, i);
		labels.models = names;
		plan_print(p, a.json, &labels);
		free(names);
		ret = EXIT_OK;
		goto out;
	}
	cli_install_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_recipe_execute(r, p, a.out, &err) < 0) {
		ret = cli_fail(&err);
		goto out;
	}
	cli_progress_end();
	if (a.json) {
		printf("{\"output\":");
		cli_json_string(stdout, a.out);
		printf(",\"method\":");
		cli_json_string(stdout, weld_recipe_method(r));
		printf(",\"tensors\":%zu,\"bytes_read\":%llu,\"seconds\":%.3f}\n",
		       weld_plan_job_count(p), (unsigned long long)weld_plan_bytes_read(p),
		       cli_seconds_since(&t0));
	} else if (cli_verbosity >= 2) {
		char sz[32];

		weld_format_size(weld_plan_bytes_read(p), sz, sizeof(sz));
		fprintf(stderr, "%s: wrote '%s' (%s, %zu tensors, %s read in %.2f s)\n", cli_name,
			a.out, weld_recipe_method(r), weld_plan_job_count(p), sz, cli_seconds_since(&t0));
	}
	ret = EXIT_OK;
out:
	weld_plan_free(p);
	weld_recipe_free(r);
	free(a.part_out);
	return ret;
}

int cmd_run(int argc, char **argv)
{
	return run(argc, argv, false);
}

int cmd_run_plan(int argc, char **argv)
{
	return run(argc, argv, true);
}
