/*
 * cmd_diff.c - weld diff: compare two models tensor by tensor.
 */
#include "cli.h"
#include "commands.h"

#include <getopt.h>
#include <math.h>
#include <string.h>

static const char usage[] =
	"usage: weld diff [--json] A B\n"
	"\n  per tensor present in both: max |a-b|, RMS of a-b, cosine, elements that differ;\n"
	"  then the names found in only one model. Exit 0 whether or not they differ.\n"
	"      --json    one JSON object on stdout\n";

static void num(double v)
{
	if (isnan(v))
		printf("null");
	else
		printf("%.9g", v);
}

int cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct weld_error err = { 0 };
	weld_model *m[2] = { NULL, NULL };
	bool json = false, first = true;
	size_t same = 0, differ = 0, only[2] = { 0, 0 };
	int c, r = EXIT_OK;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'J': json = true; break;
		case 'h': fputs(usage, stdout); return EXIT_OK;
		default: return cli_bad_option(c, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("expected two models");
	for (int k = 0; k < 2; k++)
		if (weld_model_open(&m[k], argv[optind + k], &err) < 0) {
			weld_model_close(m[0]);
			return cli_fail(&err);
		}
	if (json)
		printf("{\"tensors\":[");
	else
		printf("# tensor\tmax_abs\trms\tcosine\tn_diff\n");
	for (size_t i = 0; i < weld_model_count(m[0]); i++) {
		const struct weld_tensor_info *a = weld_model_tensor(m[0], i);
		int64_t j = weld_model_find(m[1], a->name);
		const struct weld_tensor_info *b;
		struct weld_diff d;

		if (j < 0)
			continue;
		b = weld_model_tensor(m[1], (size_t)j);
		if (a->nelem != b->nelem || !weld_dtype_is_float(a->dtype) ||
		    !weld_dtype_is_float(b->dtype)) {
			bool eq = false;

			if (a->nelem == b->nelem && a->dtype == b->dtype) {
				uint64_t ha, hb;

				if (weld_model_hash(m[0], i, &ha, &err) < 0 ||
				    weld_model_hash(m[1], (size_t)j, &hb, &err) < 0) {
					r = cli_fail(&err);
					break;
				}
				eq = ha == hb;
			}
			eq ? same++ : differ++;
			if (json) {
				printf("%s{\"name\":", first ? "" : ",");
				cli_json_string(stdout, a->name);
				printf(",\"equal\":%s,\"compared\":\"bytes\"}", eq ? "true" : "false");
			} else {
				printf("%s\t%s\n", cli_safe(a->name), eq ? "identical" :
				       a->nelem != b->nelem ? "different sizes" : "different");
			}
			first = false;
			continue;
		}
		if (weld_model_compare(m[0], i, m[1], (size_t)j, &d, &err) < 0) {
			r = cli_fail(&err);
			break;
		}
		d.n_diff ? differ++ : same++;
		if (json) {
			printf("%s{\"name\":", first ? "" : ",");
			cli_json_string(stdout, a->name);
			printf(",\"max_abs\":");
			num(d.max_abs);
			printf(",\"rms\":");
			num(d.rms);
			printf(",\"cosine\":");
			num(d.cosine);
			printf(",\"n_diff\":%llu}", (unsigned long long)d.n_diff);
		} else {
			printf("%s\t%.6g\t%.6g\t%.9f\t%llu\n", cli_safe(a->name), d.max_abs, d.rms, d.cosine,
			       (unsigned long long)d.n_diff);
		}
		first = false;
	}
	if (json)
		printf("],\"only_in_a\":[");
	for (int k = 0; k < 2 && r == EXIT_OK; k++) {
		bool f2 = true;

		if (json && k)
			printf("],\"only_in_b\":[");
		for (size_t i = 0; i < weld_model_count(m[k]); i++) {
			const char *name = weld_model_tensor(m[k], i)->name;

			if (weld_model_find(m[1 - k], name) >= 0)
				continue;
			only[k]++;
			if (json) {
				printf("%s", f2 ? "" : ",");
				cli_json_string(stdout, name);
			} else {
				printf("only in %s\t%s\n", k ? "B" : "A", name);
			}
			f2 = false;
		}
	}
	if (json)
		printf("],\"equal\":%zu,\"different\":%zu}\n", same, differ);
	else
		printf("# %zu identical, %zu different, %zu only in A, %zu only in B\n", same, differ,
		       only[0], only[1]);
	weld_model_close(m[0]);
	weld_model_close(m[1]);
	return r;
}
