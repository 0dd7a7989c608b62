/*
 * cmd_convert.c - weld convert: rewrite a model as a safetensors folder,
 * optionally in another dtype or shard size. Tensors whose dtype does not
 * change are copied byte for byte.
 */
#include "cli.h"
#include "commands.h"
#include "method.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: weld convert MODEL -o OUT [--dtype TYPE] [--format FMT] [--shard-size SIZE] [--max-memory SIZE] [options]\n"
	"\n  write MODEL (safetensors or PyTorch .bin) as a safetensors folder, or a GGUF\n"
	"  file as a GGUF file (re-typed) or a safetensors folder (GGUF names kept)\n"
	"  -o, --output DIR        output folder (refused if it exists, unless -f)\n"
	"  -f, --force             replace an existing output once the new one is complete\n"
	"      --dtype TYPE        bf16|f16|f32|f64|fp8 for floating tensors, or q8_0|q4_0 for a\n"
	"                          GGUF output (default: unchanged)\n"
	"      --format FMT        safetensors|gguf (default: the input's; GGUF only from GGUF)\n"
	"      --shard-size SIZE   largest output shard (default 5G; 0 = one file)\n"
	"      --max-memory SIZE   memory budget (default 1G)\n"
	"  -j, --threads N         worker threads (default: OMP_NUM_THREADS, else all cores)\n"
	"      --no-copy-files     do not copy config and tokenizer files\n"
	"  -q, --quiet / -v, --verbose\n"
	"      --json              machine-readable summary on stdout\n";

enum { O_DTYPE = 256, O_SHARD, O_MAXMEM, O_NO_COPY, O_JSON, O_FORMAT };

int cmd_convert(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OUTPUT_OPTIONS,
		{ "dtype", required_argument, NULL, O_DTYPE },
		{ "shard-size", required_argument, NULL, O_SHARD },
		{ "max-memory", required_argument, NULL, O_MAXMEM },
		{ "no-copy-files", no_argument, NULL, O_NO_COPY },
		{ "json", no_argument, NULL, O_JSON },
		{ "format", required_argument, NULL, O_FORMAT },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_merge_opts o = {
		.method = WELD_METHOD_COPY, .dtype = -1, .max_memory = WELD_DEFAULT_MAX_MEMORY,
		.shard_size = WELD_DEFAULT_SHARD_SIZE, .copy_files = true,
		.warn = cli_warn_cb, .progress = cli_progress,
	};
	struct weld_error err = { 0 };
	const char *out = NULL;
	bool json = false;
	weld_plan *p = NULL;
	int c, mi, r = EXIT_FAIL;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", opts, NULL)) != -1) {
		switch (cli_output_opt(c, usage, &out, &o.force, &o.threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return EXIT_OK;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_DTYPE:
			if (!cli_out_dtype(optarg, &o))
				return EXIT_USAGE;
			break;
		case O_FORMAT:
			if (!cli_format(optarg, &o.format))
				return EXIT_USAGE;
			break;
		case O_SHARD:
			o.shard_size_set = true;
			if (!cli_size("--shard-size", optarg, &o.shard_size))
				return EXIT_USAGE;
			break;
		case O_MAXMEM:
			if (!cli_size("--max-memory", optarg, &o.max_memory))
				return EXIT_USAGE;
			break;
		case O_NO_COPY: o.copy_files = false; break;
		case O_JSON: json = true; break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("expected one MODEL");
	if (!out)
		return cli_usage_error("an output folder is required (-o OUT)");
	o.recipe_json = "{\"command\":[\"convert\"]}";
	p = weld_plan_new(&o);
	if (!p || (mi = weld_plan_add_model(p, argv[optind], &err)) < 0)
		goto fail;
	for (size_t i = 0; i < weld_model_count(weld_plan_model(p, mi)); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(weld_plan_model(p, mi), i);
		struct weld_source src = { .model = mi, .tensor = (int64_t)i, .weight = 1, .density = 1 };
		struct weld_job j = {
			.name = t->name, .ndim = t->ndim, .nelem = t->nelem,
			.method = WELD_METHOD_COPY, .base_model = -1, .base_tensor = -1,
			.nsrc = 1, .src = &src, .lambda = 1, .mask_model = -1, .mask_tensor = -1,
		};

		memcpy(j.shape, t->shape, sizeof(j.shape));
		j.dtype = weld_dtype_is_float(t->dtype) && o.dtype >= 0 ? (enum weld_dtype)o.dtype
									 : t->dtype;
		if (t->scaled && (o.dtype < 0 || o.dtype == WELD_F8_E4M3))
			j.dtype = WELD_BF16;    /* FP8 with scales: decoded, as a merge's auto */
		else if (o.dtype == WELD_F8_E4M3)
			j.dtype = t->dtype;     /* fp8: only what is FP8 with scales */
		weld_plan_fp8_job(p, &j, t);
		if (weld_plan_add_job(p, &j, &err) < 0)
			goto fail;
	}
	if (weld_plan_finish(p, &err) < 0)
		goto fail;
	if ((r = cli_check_output(p, out, o.force, false))) {
		weld_plan_free(p);
		return r;
	}
	r = EXIT_FAIL;
	{
		char note[1024];

		if (cli_verbosity >= 1 && weld_plan_output_note(p, note, sizeof(note)))
			fprintf(stderr, "%s: note: %s\n", cli_name, cli_safe(note));
	}
	cli_info("%zu tensors, %llu bytes to read, %llu elements per chunk", weld_plan_job_count(p),
		 (unsigned long long)weld_plan_input_bytes(p),
		 (unsigned long long)weld_plan_chunk_elems(p));
	cli_install_signals();
	if (weld_plan_execute(p, out, &err) < 0)
		goto fail;
	cli_progress_end();
	if (json) {
		printf("{\"output\":");
		cli_json_string(stdout, out);
		printf(",\"tensors\":%zu,\"bytes_read\":%llu}\n", weld_plan_job_count(p),
		       (unsigned long long)weld_plan_bytes_read(p));
	}
	weld_plan_free(p);
	return EXIT_OK;
fail:
	if (!p)
		cli_error("out of memory");
	else
		r = cli_fail(&err);
	weld_plan_free(p);
	return r;
}
