/*
 * cmd_verify.c - weld verify: re-hash a weld output against the XXH3-64
 * values weld recorded in each shard's __metadata__.weld_xxh3 (lib/verify.c).
 */
#include "cli.h"
#include "commands.h"

#include <getopt.h>

static const char usage[] =
	"usage: weld verify [-q] MODEL\n"
	"\n  re-hash every tensor and compare with the checksums weld recorded;\n"
	"  each mismatch is named; exit 1 if any\n"
	"  -q, --quiet   print nothing when everything matches\n";

static void problem(void *ctx, const char *msg)
{
	(void)ctx;
	cli_error("%s", msg);
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_error err = { 0 };
	size_t bad, ok;
	weld_model *m;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'q': cli_verbosity = 0; break;
		case 'h': fputs(usage, stdout); return EXIT_OK;
		default: return cli_bad_option(c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("expected one MODEL");
	if (weld_model_open(&m, argv[optind], &err) < 0)
		return cli_fail(&err);
	bad = weld_verify(m, problem, NULL, &ok);
	weld_model_close(m);
	if (bad)
		return EXIT_FAIL;
	if (cli_verbosity >= 1)
		printf("%s: %zu tensors OK\n", argv[optind], ok);
	return EXIT_OK;
}
