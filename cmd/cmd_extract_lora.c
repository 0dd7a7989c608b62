/*
 * cmd_extract_lora.c - weld extract-lora: a PEFT LoRA adapter from a
 * fine-tuned model and its base (lib/lora_extract.c), with the options and
 * defaults of mergekit-extract-lora.
 */
#include "cli.h"
#include "commands.h"
#include "method.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: weld extract-lora FT --base BASE -o ADAPTER [options]\n"
	"\n  factor FT - BASE, one 2-D weight at a time, into a PEFT LoRA adapter folder\n"
	"  (adapter_config.json + adapter_model.safetensors) by truncated SVD\n"
	"  -o, --output DIR          adapter folder (refused if it exists, unless -f)\n"
	"  -f, --force               replace an existing output once the new one is complete\n"
	"      --base MODEL          the base model (also --base-model; FT also --model)\n"
	"      --max-rank N          largest rank of a module (default 128)\n"
	"      --sv-epsilon E        drop singular values <= E (default 0: keep max-rank)\n"
	"      --no-distribute-scale A = diag(s)V^T, B = U (default: sqrt(s) on both)\n"
	"      --embed-lora          factor the embeddings too (default: saved whole)\n"
	"      --save-module M       save module M whole (leaf or full name; repeatable)\n"
	"  -i, --include-regex R     only modules matching R (repeatable)\n"
	"  -e, --exclude-regex R     skip modules matching R (repeatable)\n"
	"      --skip-undecomposable drop norms and other non-2-D tensors (default: saved whole)\n"
	"      --fast                randomized SVD (range finder) instead of the exact one\n"
	"      --oversample N        --fast: extra sketch columns (default 10)\n"
	"      --power-iters N       --fast: subspace iterations (default 2)\n"
	"  -j, --threads N           matrices decomposed at once, one BLAS thread each\n"
	"                            (default: all cores; fewer if --max-memory holds fewer)\n"
	"      --max-memory SIZE     memory budget (default 1G)\n"
	"  -q, --quiet / -v, --verbose  (-v: each module's rank, error and SVD time)\n"
	"      --json                machine-readable summary on stdout\n";

enum {
	O_BASE = 256, O_MODEL, O_MAX_RANK, O_EPS, O_DIST, O_NO_DIST, O_EMBED, O_SAVE,
	O_SKIP, O_FAST, O_OVER, O_POWER, O_JSON, O_MAXMEM,
};

#define MAX_LIST 256

struct args {
	const char *ft, *base, *out;
	const char *save[MAX_LIST], *inc[MAX_LIST], *exc[MAX_LIST];
	struct weld_extract_opts o;
	int threads;
	bool json;
};

static void on_warn(void *ctx, const char *msg)
{
	(void)ctx;
	cli_warning("%s", msg);
}

static void on_module(void *ctx, const struct weld_extract_module *m)
{
	(void)ctx;
	if (!strcmp(m->kind, "lora") || !strcmp(m->kind, "embedding"))
		cli_info("%s: %s [%lld, %lld] rank %zu, relative error %.3g, SVD %.3f s", m->name,
			 m->kind, (long long)m->rows, (long long)m->cols, m->rank, m->rel_err,
			 m->seconds);
	else
		cli_info("%s: %s", m->name, m->kind);
}

static bool push(const char **list, size_t *n, const char *v, const char *opt)
{
	if (*n == MAX_LIST) {
		cli_usage_error("%s: at most %d values", opt, MAX_LIST);
		return false;
	}
	list[(*n)++] = v;
	return true;
}

static int parse(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		CLI_OUTPUT_OPTIONS,
		{ "out-path", required_argument, NULL, 'o' },
		{ "base", required_argument, NULL, O_BASE },
		{ "base-model", required_argument, NULL, O_BASE },
		{ "model", required_argument, NULL, O_MODEL },
		{ "max-rank", required_argument, NULL, O_MAX_RANK },
		{ "sv-epsilon", required_argument, NULL, O_EPS },
		{ "distribute-scale", no_argument, NULL, O_DIST },
		{ "no-distribute-scale", no_argument, NULL, O_NO_DIST },
		{ "embed-lora", no_argument, NULL, O_EMBED },
		{ "save-module", required_argument, NULL, O_SAVE },
		{ "include-regex", required_argument, NULL, 'i' },
		{ "exclude-regex", required_argument, NULL, 'e' },
		{ "skip-undecomposable", no_argument, NULL, O_SKIP },
		{ "fast", no_argument, NULL, O_FAST },
		{ "oversample", required_argument, NULL, O_OVER },
		{ "power-iters", required_argument, NULL, O_POWER },
		{ "json", no_argument, NULL, O_JSON },
		{ "max-memory", required_argument, NULL, O_MAXMEM },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvhi:e:", opts, NULL)) != -1) {
		switch (cli_output_opt(c, usage, &a->out, &a->o.force, &a->threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return -1;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_BASE: a->base = optarg; break;
		case O_MODEL: a->ft = optarg; break;
		case O_MAX_RANK:
			if (!cli_int("--max-rank", optarg, 1, 1L << 20, &v))
				return EXIT_USAGE;
			a->o.max_rank = (size_t)v;
			break;
		case O_EPS:
			if (!cli_double("--sv-epsilon", optarg, &a->o.sv_epsilon))
				return EXIT_USAGE;
			if (!(a->o.sv_epsilon >= 0))
				return cli_usage_error("--sv-epsilon must be 0 or more, not '%s'", optarg);
			break;
		case O_DIST: a->o.distribute_scale = true; break;
		case O_NO_DIST: a->o.distribute_scale = false; break;
		case O_EMBED: a->o.embed_lora = true; break;
		case O_SAVE:
			if (!push(a->save, &a->o.nsave, optarg, "--save-module"))
				return EXIT_USAGE;
			break;
		case 'i':
			if (!push(a->inc, &a->o.ninclude, optarg, "--include-regex"))
				return EXIT_USAGE;
			break;
		case 'e':
			if (!push(a->exc, &a->o.nexclude, optarg, "--exclude-regex"))
				return EXIT_USAGE;
			break;
		case O_SKIP: a->o.skip_undecomposable = true; break;
		case O_FAST: a->o.fast = true; break;
		case O_OVER:
			if (!cli_int("--oversample", optarg, 0, 1L << 16, &v))
				return EXIT_USAGE;
			a->o.oversample = (size_t)v;
			break;
		case O_POWER:
			if (!cli_int("--power-iters", optarg, 0, 100, &v))
				return EXIT_USAGE;
			a->o.power_iters = (unsigned)v;
			break;
		case O_JSON: a->json = true; break;
		case O_MAXMEM:
			if (!cli_size("--max-memory", optarg, &a->o.max_memory))
				return EXIT_USAGE;
			if (!a->o.max_memory)
				return cli_usage_error("--max-memory must be more than 0");
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (!a->ft && argc - optind == 1)
		a->ft = argv[optind++];
	if (!a->ft || argc != optind)
		return cli_usage_error("expected one fine-tuned MODEL");
	if (!a->base)
		return cli_usage_error("the base model is required (--base BASE)");
	if (!a->out)
		return cli_usage_error("an output folder is required (-o ADAPTER)");
	return 0;
}

/* The command, normalised, for the file's metadata (caller frees). */
static char *recipe(const struct args *a)
{
	cJSON *r = cJSON_CreateObject(), *x = cJSON_AddObjectToObject(r, "extract_lora");
	char *s;

	cJSON_AddStringToObject(x, "model", a->ft);
	cJSON_AddStringToObject(x, "base_model", a->base);
	cJSON_AddNumberToObject(x, "max_rank", (double)a->o.max_rank);
	cJSON_AddNumberToObject(x, "sv_epsilon", a->o.sv_epsilon);
	cJSON_AddBoolToObject(x, "distribute_scale", a->o.distribute_scale);
	cJSON_AddBoolToObject(x, "embed_lora", a->o.embed_lora);
	cJSON_AddBoolToObject(x, "skip_undecomposable", a->o.skip_undecomposable);
	cJSON_AddItemToObject(x, "save_module", cJSON_CreateStringArray(a->save, (int)a->o.nsave));
	cJSON_AddItemToObject(x, "include_regex", cJSON_CreateStringArray(a->inc, (int)a->o.ninclude));
	cJSON_AddItemToObject(x, "exclude_regex", cJSON_CreateStringArray(a->exc, (int)a->o.nexclude));
	if (a->o.fast) {
		cJSON_AddNumberToObject(x, "fast_oversample", (double)a->o.oversample);
		cJSON_AddNumberToObject(x, "fast_power_iters", a->o.power_iters);
	}
	s = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return s;
}

int cmd_extract_lora(int argc, char **argv)
{
	struct args a = { .o = { .max_rank = 128, .distribute_scale = true, .oversample = 10,
				 .power_iters = 2, .max_memory = WELD_DEFAULT_MAX_MEMORY,
				 .warn = on_warn, .module = on_module } };
	struct weld_extract_stats st;
	struct weld_error err = { 0 };
	weld_model *ft = NULL, *base = NULL;
	struct timespec t0;
	char *rec = NULL;
	int r = parse(argc, argv, &a);

	if (r)
		return r < 0 ? EXIT_OK : r;
	a.o.save = a.save;
	a.o.include = a.inc;
	a.o.exclude = a.exc;
	a.o.base_name = a.base;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_model_open(&ft, a.ft, &err) < 0 || weld_model_open(&base, a.base, &err) < 0) {
		r = cli_fail(&err);
		goto out;
	}
	{
		const char *in[2] = { a.ft, a.base };

		if ((r = cli_check_paths(a.out, a.o.force, false, in, 2)))
			goto out;
	}
	a.o.threads = a.threads;
	if (!(rec = recipe(&a))) {
		cli_error("out of memory");
		r = EXIT_FAIL;
		goto out;
	}
	a.o.recipe_json = rec;
	cli_install_signals();
	if (weld_extract_lora(ft, base, a.out, &a.o, &st, &err) < 0) {
		r = cli_fail(&err);
		goto out;
	}
	if (a.json) {
		printf("{\"output\":");
		cli_json_string(stdout, a.out);
		printf(",\"modules\":%zu,\"rank\":%zu,\"saved\":%zu,\"skipped\":%zu,"
		       "\"bytes\":%llu,\"seconds\":%.6f,\"lapack_seconds\":%.6f,"
		       "\"memory_bound\":%llu,\"matrices_at_once\":%zu}\n",
		       st.decomposed, st.rank, st.saved, st.skipped,
		       (unsigned long long)st.bytes, cli_seconds_since(&t0), st.lapack_seconds,
		       (unsigned long long)st.memory, st.in_flight);
	} else if (cli_verbosity >= 1) {
		char mem[32];

		weld_format_size(st.memory, mem, sizeof(mem));
		fprintf(stderr, "%s: %s: %zu modules as LoRA (r %zu), %zu tensors saved whole, %zu skipped; %.2f s (SVDs %.2f s); memory bound %s, %zu matrices at once\n",
			cli_name, cli_safe(a.out), st.decomposed, st.rank, st.saved, st.skipped,
			cli_seconds_since(&t0), st.lapack_seconds, mem, st.in_flight);
	}
	r = EXIT_OK;
out:
	free(rec);
	weld_model_close(ft);
	weld_model_close(base);
	return r;
}
