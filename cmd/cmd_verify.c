/*
 * cmd_verify.c - weld verify: re-hash a weld output against the XXH3-64
 * values weld recorded in each shard's __metadata__.weld_xxh3 (lib/verify.c).
 * A part of an output (--part I/N) is first checked as weld join would
 * check it; a part that holds no shards has no tensor to hash.
 */
#include "cli.h"
#include "commands.h"

#include <getopt.h>
#include <stdlib.h>
#include <sys/stat.h>

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

/* MODEL is a part folder (it holds WELD_PART_FILE): check it whole. Sets
 * *empty when the part holds no shard. Returns 0, or an exit status. */
static int check_part(const char *dir, bool *empty)
{
	struct weld_error err = { 0 };
	struct weld_part_info info;
	struct stat st;
	char *path = weld_path_join(dir, WELD_PART_FILE);

	*empty = false;
	if (!path) {
		weld_fail(&err, WELD_ERR_NOMEM, "out of memory");
		return cli_fail(&err);
	}
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(path);
		return 0;
	}
	free(path);
	if (weld_part_check(dir, &info, &err) < 0)
		return cli_fail(&err);
	if (info.held == 0) {
		*empty = true;
		if (cli_verbosity >= 1)
			printf("%s: part %u of %u holds none of the %zu shards: 0 tensors OK\n", dir,
			       info.part, info.parts, info.shards);
	}
	return 0;
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
	bool empty;
	int c, r;

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
	if ((r = check_part(argv[optind], &empty)) || empty)
		return r;
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
