/*
 * cmd_join.c - weld join: assemble the parts a merge wrote with --part I/N
 * on several machines into the output the merge writes on one
 * (formats/output_parts.c does the checking and the assembling).
 */
#include "cli.h"
#include "commands.h"

#include <getopt.h>
#include <stdlib.h>
#include <time.h>

static const char usage[] =
	"usage: weld join [<options>] -o OUT PART...\n"
	"\n  join the folders OUT.part-I-of-N written by a merge run with --part I/N\n"
	"  into OUT, byte for byte the output of the merge run on one machine\n"
	"  -o, --output DIR        output folder (required)\n"
	"  -f, --force             replace an existing output folder\n"
	"      --keep-parts        leave the part folders in place (default: removed)\n"
	"  -q, --quiet             no warnings\n"
	"  -v, --verbose           say what was written\n"
	"      --json              summary as JSON on stdout\n";

enum { O_KEEP = 256, O_JSON };

int cmd_join(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OUTPUT_OPTIONS,
		{ "keep-parts", no_argument, NULL, O_KEEP },
		{ "json", no_argument, NULL, O_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_join_opts o = { 0 };
	struct weld_join_result res;
	struct weld_error err = { 0 };
	const char *out = NULL;
	struct timespec t0;
	bool json = false;
	int c, threads = 0;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:fj:qvh", opts, NULL)) != -1) {
		switch (cli_output_opt(c, usage, &out, &o.force, &threads)) {
		case CLI_OPT_TAKEN: continue;
		case CLI_OPT_HELP: return EXIT_OK;
		case CLI_OPT_BAD: return EXIT_USAGE;
		case CLI_OPT_OTHER: break;
		}
		switch (c) {
		case O_KEEP: o.keep_parts = true; break;
		case O_JSON: json = true; break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (!out)
		return cli_usage_error("an output folder is required (-o OUT)");
	if (optind == argc)
		return cli_usage_error("expected the part folders (OUT.part-*-of-N)");
	if (weld_output_check(out, o.force, false, (const char *const *)argv + optind,
			      (size_t)(argc - optind), &err) < 0)
		return cli_fail(&err);
	cli_install_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (weld_parts_join((const char *const *)argv + optind, (size_t)(argc - optind), out, &o,
			    &res, &err) < 0)
		return cli_fail(&err);
	if (res.left)
		cli_warning("'%s' could not be removed entirely (its shards are in '%s' now)",
			    res.left, out);
	if (json) {
		printf("{\"output\":");
		cli_json_string(stdout, out);
		printf(",\"parts\":%u,\"shards\":%zu,\"bytes\":%llu,\"copied\":%zu,\"seconds\":%.3f}\n",
		       res.parts, res.shards, (unsigned long long)res.bytes, res.copied,
		       cli_seconds_since(&t0));
	} else if (cli_verbosity >= 2) {
		char sz[32];

		weld_format_size(res.bytes, sz, sizeof(sz));
		fprintf(stderr, "%s: wrote '%s' (%u parts, %zu shards, %s; %zu files copied, not linked)\n",
			cli_name, out, res.parts, res.shards, sz, res.copied);
	}
	return EXIT_OK;
}
