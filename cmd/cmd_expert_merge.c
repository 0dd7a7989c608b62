/*
 * cmd_expert_merge.c - weld expert-merge: merge the experts of each MoE
 * layer of one checkpoint into fewer groups (M-SMoE). Parses the command
 * line, hands it to lib/moe (moe.h), which plans (every check, before any
 * output exists) and then streams the result, and reports the groups.
 */
#include "cli.h"
#include "commands.h"
#include "merge_cmd.h"
#include "method.h"
#include "moe.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --align prints a warning above this FFN width (the solve is O(F^3)). */
#define ALIGN_WARN_FFN 4096

static const char usage[] =
	"usage: weld expert-merge -o <out> --groups <G> [--stats <file.json>]\n"
	"                         [--similarity router|weight] [--uniform-groups] [--align]\n"
	"                         [--layout alias|compact] [--dtype auto|bf16|f16|f32]\n"
	"                         [-j <n>] [--max-memory <size>] [--shard-size <size>]\n"
	"                         [-f] [-q | -v] [--json] [--no-copy-files] [--allow-nonfinite]\n"
	"                         [--part I/N|auto [--parts N]]\n"
	"                         <moe-model>\n"
	"\n"
	"    -o, --output <dir>       output folder (refused if it exists, unless -f)\n"
	"    --groups <G>             groups (distinct experts) per MoE layer, the average\n"
	"                             when --stats drives a global allocation\n"
	"    --stats <file.json>      routing statistics: per layer 'frequency' (and\n"
	"                             optional 'similarity'); default: uniform usage\n"
	"    --similarity <s>         router (default: cosine of router rows) or weight\n"
	"    --uniform-groups         G groups in every layer, even with --stats\n"
	"    --align                  permute each member's FFN neurons to its dominant\n"
	"                             expert first (cost O(F^3) per member)\n"
	"    --layout <l>             alias (default: keep E experts) or compact (G)\n"
	"    --dtype <t>              output dtype of floating tensors (default: auto)\n"
	"    -j, --threads <n>        worker threads (default: all cores)\n"
	"    --max-memory <size>      memory budget (default: 1G)\n"
	"    --shard-size <size>      largest output shard (default: 5G; 0: one file)\n"
	"    -f, --force              replace an existing output folder\n"
	"    -q, --quiet / -v, --verbose\n"
	"    --json                   print a JSON summary on stdout\n"
	"    --no-copy-files          do not copy config and tokenizer files\n"
	"    --allow-nonfinite        merge experts holding NaN or inf (default: an error)\n"
	"    --part I/N|auto          write only part I of N of the output (OUT.part-I-of-N,\n"
	"                             see weld-join(1)); auto: from Slurm or --parts N\n";

enum {
	O_GROUPS = 256, O_STATS, O_SIMILARITY, O_UNIFORM, O_ALIGN, O_LAYOUT, O_DTYPE,
	O_MAXMEM, O_SHARD, O_JSON, O_NO_COPY, O_ALLOW_NONFINITE, O_PART, O_PARTS,
};

static const struct option long_opts[] = {
	CLI_OUTPUT_OPTIONS,
	{ "groups", required_argument, NULL, O_GROUPS },
	{ "stats", required_argument, NULL, O_STATS },
	{ "similarity", required_argument, NULL, O_SIMILARITY },
	{ "uniform-groups", no_argument, NULL, O_UNIFORM },
	{ "align", no_argument, NULL, O_ALIGN },
	{ "layout", required_argument, NULL, O_LAYOUT },
	{ "dtype", required_argument, NULL, O_DTYPE },
	{ "max-memory", required_argument, NULL, O_MAXMEM },
	{ "shard-size", required_argument, NULL, O_SHARD },
	{ "json", no_argument, NULL, O_JSON },
	{ "no-copy-files", no_argument, NULL, O_NO_COPY },
	{ "allow-nonfinite", no_argument, NULL, O_ALLOW_NONFINITE },
	{ "part", required_argument, NULL, O_PART },
	{ "parts", required_argument, NULL, O_PARTS },
	{ NULL, 0, NULL, 0 },
};

struct args {
	const char *out, *model, *stats_path;
	const char *part, *parts;     /* --part, --parts as given */
	char *part_out;               /* OUT.part-I-of-N (owned) */
	unsigned part_i, part_n;      /* 0, 0 without --part */
	struct weld_moe_opts o;
	uint64_t shard_size;
	bool force, json, copy_files;
};

/* --part I/N (or auto): the output becomes OUT.part-I-of-N. 0, or an
 * exit status. */
static int parse_part(struct args *a)
{
	if (a->parts && !a->part)
		return cli_usage_error("--parts goes with --part auto");
	if (!a->part)
		return 0;
	if (cli_part(a->part, a->parts, &a->part_i, &a->part_n))
		return EXIT_USAGE;
	if (a->out) {
		if (!(a->part_out = cli_part_output(a->out, a->part_i, a->part_n))) {
			cli_error("out of memory");
			return EXIT_FAIL;
		}
		a->out = a->part_out;
	}
	return 0;
}

/* 0 to go on, -1 after -h, else an exit status. */
static int parse(int argc, char **argv, struct args *a)
{
	long l;
	int v;
	int c;

	a->o.out_dtype = -1;
	a->o.max_memory = WELD_DEFAULT_MAX_MEMORY;
	a->shard_size = WELD_DEFAULT_SHARD_SIZE;
	a->copy_files = true;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", long_opts, NULL)) != -1) {
		switch (cli_output_opt(c, usage, &a->out, &a->force, &a->o.threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return -1;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_GROUPS:
			if (!cli_int("--groups", optarg, 1, 65536, &l))
				return EXIT_USAGE;
			a->o.groups = (int)l;
			break;
		case O_STATS: a->stats_path = optarg; break;
		case O_SIMILARITY:
			if ((v = weld_name_index(weld_moe_similarity_names, optarg)) >= 0)
				a->o.similarity = (enum weld_moe_similarity)v;
			else
				return cli_usage_error("invalid value '%s' for '--similarity': "
						       "expected router or weight", optarg);
			break;
		case O_UNIFORM: a->o.uniform_groups = true; break;
		case O_ALLOW_NONFINITE: a->o.allow_nonfinite = true; break;
		case O_ALIGN: a->o.align = true; break;
		case O_LAYOUT:
			if ((v = weld_name_index(weld_moe_layout_names, optarg)) >= 0)
				a->o.layout = (enum weld_moe_out_layout)v;
			else
				return cli_usage_error("invalid value '%s' for '--layout': "
						       "expected alias or compact", optarg);
			break;
		case O_DTYPE:
			if (!cli_dtype(optarg, &a->o.out_dtype))
				return EXIT_USAGE;
			break;
		case O_MAXMEM:
			if (!cli_size("--max-memory", optarg, &a->o.max_memory))
				return EXIT_USAGE;
			break;
		case O_SHARD:
			if (!cli_size("--shard-size", optarg, &a->shard_size))
				return EXIT_USAGE;
			break;
		case O_JSON: a->json = true; break;
		case O_NO_COPY: a->copy_files = false; break;
		case O_PART: a->part = optarg; break;
		case O_PARTS: a->parts = optarg; break;
		default:
			return cli_bad_option(c, argv);
		}
	}
	if (optind == argc)
		return cli_usage_error("no MoE model given");
	if (argc - optind > 1)
		return cli_usage_error("expert-merge takes one model, got %d", argc - optind);
	a->model = argv[optind];
	if (!a->o.groups)
		return cli_usage_error("--groups is required");
	if (!a->out && !merge_plan_only)
		return cli_usage_error("an output folder is required (-o OUT)");
	if (a->o.max_memory == 0)
		return cli_usage_error("--max-memory must be more than 0");
	return parse_part(a);
}

static void print_int_list(FILE *f, const int *v, int n, const char *sep)
{
	for (int k = 0; k < n; k++)
		fprintf(f, "%s%d", k ? sep : "", v[k]);
}

static void print_layers_json(const struct weld_moe_plan *p)
{
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;

	printf("\"layers\":[");
	for (int l = 0; l < lo->n_layers; l++) {
		printf("%s{\"layer\":%d,\"groups\":%d,\"expert_to_group\":[", l ? "," : "",
		       lo->layers[l].index, p->groups[l]);
		print_int_list(stdout, p->label + (size_t)l * (size_t)e_n, e_n, ",");
		printf("],\"dominant\":[");
		print_int_list(stdout, p->dominant + (size_t)l * (size_t)e_n, p->groups[l], ",");
		printf("]}");
	}
	printf("]");
}

/* The compact layout changed DeepSeek's group-limited routing: one line
 * on stderr (not with -q), and in the plan. */
static void print_routing(FILE *f, const struct weld_moe_plan *p, const char *lead)
{
	const struct weld_moe_config *c = &p->layout.cfg;
	const struct weld_moe_compact *k = &p->compact;

	if (c->n_group < 0 || (k->n_group == c->n_group && k->topk_group == c->topk_group))
		return;
	fprintf(f, "%sconfig.json: n_group %d -> %d, topk_group %d -> %d (group-limited routing "
		"of %d experts per layer)\n", lead, c->n_group, k->n_group, c->topk_group,
		k->topk_group, k->experts);
}

/* How the experts are stored: "per-expert", "fused", "stacked", "stacked fused". */
static const char *experts_form(const struct weld_moe_layout *lo)
{
	if (lo->stacked)
		return lo->fused ? "stacked fused" : "stacked";
	return lo->fused ? "fused" : "per-expert";
}

/* 'weld plan expert-merge ...': what would be done, writing nothing. */
static void print_plan(const struct args *a, const struct weld_moe_plan *p)
{
	const struct weld_moe_layout *lo = &p->layout;
	const char *layout = weld_moe_out_layout_name(a->o.layout);
	int lo_g, hi_g;
	long total;

	weld_moe_plan_group_range(p, &lo_g, &hi_g, &total);
	if (a->json) {
		printf("{\"method\":\"expert-merge\",\"model\":");
		cli_json_string(stdout, a->model);
		printf(",\"style\":\"%s\",\"experts_form\":\"%s\",\"experts\":%d,\"moe_layers\":%d,"
		       "\"hidden\":%lld,\"layout\":\"%s\",\"similarity\":\"%s\",\"align\":%s,"
		       "\"align_bytes\":%llu,",
		       lo->style, experts_form(lo), lo->n_experts, lo->n_layers, (long long)lo->hidden, layout,
		       p->sim_source, a->o.align ? "true" : "false",
		       (unsigned long long)p->align_bytes);
		if (p->compact.n_group > 0)
			printf("\"n_group\":%d,\"topk_group\":%d,", p->compact.n_group,
			       p->compact.topk_group);
		print_layers_json(p);
		printf("}\n");
		return;
	}
	printf("method      expert-merge (M-SMoE)\n");
	printf("model       %s (%s layout, %s experts, %d experts, %d MoE layers, hidden %lld)\n",
	       a->model, lo->style, experts_form(lo), lo->n_experts, lo->n_layers,
	       (long long)lo->hidden);
	if (lo_g == hi_g)
		printf("groups      %d per layer\n", lo_g);
	else
		printf("groups      %d to %d per layer, %ld in total (global allocation)\n", lo_g,
		       hi_g, total);
	printf("similarity  %s\nlayout      %s\nalign       %s\n", p->sim_source, layout,
	       a->o.align ? "yes" : "no");
	print_routing(stdout, p, "routing     ");
	for (int l = 0; l < lo->n_layers; l++) {
		printf("layer %d: %d groups, expert->group ", lo->layers[l].index, p->groups[l]);
		print_int_list(stdout, p->label + (size_t)l * (size_t)lo->n_experts, lo->n_experts, " ");
		printf(", dominant ");
		print_int_list(stdout, p->dominant + (size_t)l * (size_t)lo->n_experts, p->groups[l], " ");
		putchar('\n');
	}
}

static void warn_align(const struct weld_moe_plan *p)
{
	const int64_t f = weld_moe_plan_max_ffn(p);
	char mem[32];

	if (f <= ALIGN_WARN_FFN)
		return;
	weld_format_size(p->align_bytes, mem, sizeof(mem));
	cli_warning("--align on FFN width %lld: about %.1e operations and %s of memory "
		    "(the assignment is O(F^3) per member); this may take hours or more",
		    (long long)f, p->align_work, mem);
}

/* -v: the group of every expert, one line per layer. */
static void print_groups(const struct weld_moe_plan *p)
{
	const int e_n = p->layout.n_experts;

	for (int l = 0; l < p->layout.n_layers; l++) {
		char line[1024];
		size_t used = 0;

		for (int e = 0; e < e_n && used + 16 < sizeof(line); e++)
			used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%d", e ? " " : "",
						 p->label[(size_t)l * (size_t)e_n + (size_t)e]);
		cli_info("layer %d: %d groups, expert->group %s", p->layout.layers[l].index,
			 p->groups[l], line);
	}
}

/* After the output is written: --json on stdout, else one line on stderr. */
static void print_summary(const struct args *a, const struct weld_moe_plan *p, double secs)
{
	int lo_g, hi_g;
	long total;

	weld_moe_plan_group_range(p, &lo_g, &hi_g, &total);
	if (a->json) {
		printf("{\"output\":");
		cli_json_string(stdout, a->out);
		printf(",\"method\":\"expert-merge\",\"layout\":\"%s\",\"similarity\":\"%s\","
		       "\"experts\":%d,\"seconds\":%.3f,",
		       weld_moe_out_layout_name(a->o.layout), p->sim_source, p->layout.n_experts,
		       secs);
		print_layers_json(p);
		printf("}\n");
	} else if (cli_verbosity >= 1) {
		fprintf(stderr, "%s: wrote '%s': %d MoE layers, %d experts -> ", cli_name, a->out,
			p->layout.n_layers, p->layout.n_experts);
		if (lo_g == hi_g)
			fprintf(stderr, "%d groups", lo_g);
		else
			fprintf(stderr, "%d to %d groups (%ld in total)", lo_g, hi_g, total);
		fprintf(stderr, " per layer (%.2f s)\n", secs);
	}
}

/* The stats file, the model and the config.json beside it, into a->o. */
static int open_inputs(struct args *a, weld_model **m, char **stats, char **config,
		       struct weld_error *err)
{
	if (a->stats_path) {
		if (weld_moe_read_stats(a->stats_path, stats, &a->o.stats_len, err) < 0)
			return -1;
		a->o.stats = *stats;
		a->o.stats_name = a->stats_path;
	}
	if (weld_model_open(m, a->model, err) < 0 ||
	    weld_moe_read_config(*m, config, &a->o.config_len, err) < 0)
		return -1;
	a->o.config = *config;
	return 0;
}

int cmd_expert_merge(int argc, char **argv)
{
	struct args a;
	struct weld_error err = { 0 };
	struct weld_moe_plan plan;
	struct weld_writer_opts wo = { 0 };
	weld_model *m = NULL;
	char *stats = NULL, *config = NULL, *recipe = NULL;
	struct timespec t0;
	bool planned = false;
	int r;

	memset(&a, 0, sizeof(a));
	r = parse(argc, argv, &a);
	if (r)
		return r < 0 ? EXIT_OK : r;
	r = EXIT_FAIL;
	/* before the similarity pass, which may read the whole model */
	{
		const char *in[2] = { a.model, a.stats_path };

		if (a.out && (r = cli_check_paths(a.out, a.force, false, in, a.stats_path ? 2 : 1)))
			goto out;
	}
	r = EXIT_FAIL;
	if (open_inputs(&a, &m, &stats, &config, &err) < 0 ||
	    weld_moe_plan_build(&plan, m, &a.o, &err) < 0) {
		r = cli_fail(&err);
		goto out;
	}
	planned = true;
	if (a.o.align)
		warn_align(&plan);
	if (merge_plan_only) {
		print_plan(&a, &plan);
		r = EXIT_OK;
		goto out;
	}
	if (cli_verbosity >= 2)
		print_groups(&plan);
	if (cli_verbosity >= 1 && !a.json) {
		char lead[64];

		snprintf(lead, sizeof(lead), "%s: --layout compact: ", cli_name);
		print_routing(stderr, &plan, lead);
	}

	recipe = weld_moe_recipe_json(a.model, a.stats_path, &a.o, a.shard_size, a.copy_files);
	wo.shard_size = a.shard_size;
	wo.force = a.force;
	wo.recipe_json = recipe;
	wo.copy_from = a.copy_files ? weld_model_dir(m) : NULL;
	wo.part = a.part_i;
	wo.parts = a.part_n;
	cli_install_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_moe_write(&plan, m, a.out, &wo, cli_progress, NULL, &err) < 0) {
		r = cli_fail(&err);
		goto out;
	}
	cli_progress_end();
	print_summary(&a, &plan, cli_seconds_since(&t0));
	r = EXIT_OK;
out:
	if (planned)
		weld_moe_plan_release(&plan);
	weld_model_close(m);
	free(stats);
	free(config);
	free(recipe);
	free(a.part_out);
	return r;
}
