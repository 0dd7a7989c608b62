/*
 * cmd_verify.c - weld verify: re-hash a weld output against the XXH3-64
 * values weld recorded in each shard's __metadata__.weld_xxh3.
 */
#include "cli.h"
#include "commands.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: weld verify [-q] MODEL\n"
	"\n  re-hash every tensor and compare with the checksums weld recorded;\n"
	"  each mismatch is named; exit 1 if any\n"
	"  -q, --quiet   print nothing when everything matches\n";

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_error err = { 0 };
	size_t bad = 0, ok = 0;
	cJSON **rec = NULL;
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
	rec = calloc(weld_model_file_count(m), sizeof(*rec));
	for (size_t f = 0; rec && f < weld_model_file_count(m); f++) {
		const char *s = weld_model_file_metadata(m, f, "weld_xxh3");

		rec[f] = s ? cJSON_Parse(s) : NULL;
		if (!cJSON_IsObject(rec[f])) {
			cli_error("'%s': no weld_xxh3 checksums in __metadata__ (not written by weld?)",
				  weld_model_file_path(m, f));
			bad++;
		}
	}
	for (size_t i = 0; rec && !bad && i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		const cJSON *want = cJSON_GetObjectItemCaseSensitive(rec[t->file], t->name);
		const char *fp = weld_model_file_path(m, (size_t)t->file);
		char hex[17];
		uint64_t h;

		if (!cJSON_IsString(want)) {
			cli_error("'%s': tensor '%s': no recorded checksum", fp, t->name);
			bad++;
			continue;
		}
		if (weld_model_hash(m, i, &h, &err) < 0) {
			cli_error("%s", err.msg);
			bad++;
			continue;
		}
		weld_hex64(h, hex);
		if (strcmp(hex, want->valuestring) != 0) {
			cli_error("'%s': tensor '%s': XXH3 %s, recorded %s", fp, t->name, hex,
				  want->valuestring);
			bad++;
		} else {
			ok++;
		}
	}
	for (size_t f = 0; rec && f < weld_model_file_count(m); f++)
		cJSON_Delete(rec[f]);
	free(rec);
	weld_model_close(m);
	if (bad)
		return EXIT_FAIL;
	if (cli_verbosity >= 1)
		printf("%s: %zu tensors OK\n", argv[optind], ok);
	return EXIT_OK;
}
