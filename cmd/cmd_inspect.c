/*
 * cmd_inspect.c - weld inspect: list a model's tensors.
 */
#include "cli.h"
#include "commands.h"
#include "fp8.h"

#include <getopt.h>
#include <string.h>

static const char usage[] =
	"usage: weld inspect [--hash] [--json] MODEL\n"
	"\n  list every tensor: name, dtype, shape, bytes and the file holding it\n"
	"  (and, for a GGUF file, its metadata keys; for FP8 weights with scales,\n"
	"  the scales' layout, block, dtype and tensor)\n"
	"      --hash    add the XXH3-64 of each tensor's bytes\n"
	"      --json    one JSON object on stdout\n";

static void shape(const struct weld_tensor_info *t, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");

	for (int d = 0; d < t->ndim && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "",
				      (long long)t->shape[d]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

/* A GGUF file's key/value pairs (those of its first file): "# key = value"
 * lines, or a "metadata" JSON object. */
static void print_metadata(const weld_model *m, bool json)
{
	const char *k, *v;
	int file;
	bool first = true;

	if (strcmp(weld_model_format(m), "gguf") != 0)
		return;
	if (json)
		printf(",\"metadata\":{");
	for (size_t i = 0; weld_model_metadata_at(m, i, &k, &v, &file); i++) {
		if (file != 0 || strncmp(k, "weld_", 5) == 0)
			continue;
		if (json) {
			printf("%s", first ? "" : ",");
			cli_json_string(stdout, k);
			printf(":");
			cli_json_string(stdout, v);
		} else {
			printf("# %s = %s\n", cli_safe(k), cli_safe(v));
		}
		first = false;
	}
	if (json)
		printf("}");
}

/* FP8 codes with scales: how the scales lie (DESIGN 6.2), as a last
 * column or a "scale" JSON object. */
static void print_scale(const struct weld_tensor_info *t, bool json)
{
	const char *layout = weld_fp8_layout_name((enum weld_fp8_layout)t->scaled);

	if (!t->scaled)
		return;
	if (!json) {
		printf("\tscale: %s [%lld, %lld] %s '%s'", layout, (long long)t->scale_block[0],
		       (long long)t->scale_block[1], weld_dtype_name(t->scale_dtype),
		       cli_safe(t->scale_name));
		return;
	}
	printf(",\"scale\":{\"layout\":\"%s\",\"block\":[%lld,%lld],\"dtype\":\"%s\",\"tensor\":",
	       layout, (long long)t->scale_block[0], (long long)t->scale_block[1],
	       weld_dtype_name(t->scale_dtype));
	cli_json_string(stdout, t->scale_name);
	printf("}");
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "hash", no_argument, NULL, 'H' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_error err = { 0 };
	bool hash = false, json = false;
	uint64_t total = 0;
	weld_model *m;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H': hash = true; break;
		case 'J': json = true; break;
		case 'h': fputs(usage, stdout); return EXIT_OK;
		default: return cli_bad_option(c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("expected one MODEL");
	if (weld_model_open(&m, argv[optind], &err) < 0)
		return cli_fail(&err);
	if (json) {
		printf("{\"model\":");
		cli_json_string(stdout, argv[optind]);
		printf(",\"format\":\"%s\",\"tensors\":[", weld_model_format(m));
	}
	for (size_t i = 0; i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		char sh[256], hex[17] = "";
		uint64_t h;

		if (hash) {
			if (weld_model_hash(m, i, &h, &err) < 0) {
				weld_model_close(m);
				if (json)
					printf("]}\n");
				return cli_fail(&err);
			}
			weld_hex64(h, hex);
		}
		shape(t, sh, sizeof(sh));
		total += t->nbytes;
		if (json) {
			printf("%s{\"name\":", i ? "," : "");
			cli_json_string(stdout, t->name);
			printf(",\"dtype\":\"%s\",\"shape\":%s,\"bytes\":%llu,\"offset\":%llu,\"file\":",
			       weld_tensor_type_name(t), sh, (unsigned long long)t->nbytes,
			       (unsigned long long)t->offset);
			cli_json_string(stdout, base_name(weld_model_file_path(m, (size_t)t->file)));
			if (hash)
				printf(",\"xxh3\":\"%s\"", hex);
			print_scale(t, true);
			printf("}");
		} else {
			printf("%s\t%s\t%s\t%llu\t%s%s%s", cli_safe(t->name), weld_tensor_type_name(t), sh,
			       (unsigned long long)t->nbytes,
			       cli_safe(base_name(weld_model_file_path(m, (size_t)t->file))), hash ? "\t" : "", hex);
			print_scale(t, false);
			printf("\n");
		}
	}
	if (json) {
		printf("]");
		print_metadata(m, true);
		printf(",\"total_bytes\":%llu,\"files\":%zu}\n", (unsigned long long)total,
		       weld_model_file_count(m));
	} else {
		print_metadata(m, false);
		char sz[32];

		weld_format_size(total, sz, sizeof(sz));
		printf("# %zu tensors, %s (%llu bytes) in %zu %s file(s)\n", weld_model_count(m), sz,
		       (unsigned long long)total, weld_model_file_count(m), weld_model_format(m));
	}
	weld_model_close(m);
	return EXIT_OK;
}
