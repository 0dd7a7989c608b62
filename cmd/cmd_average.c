/*
 * cmd_average.c - weld average: weighted mean of N models
 */
#include "options.h"

static const struct merge_spec spec = {
	.name = "average",
	.method = WELD_METHOD_AVERAGE,
	.opts = MO_NORMALIZE,
	.density = 1,
	.normalize = true,
	.combine = WELD_COMBINE_SUM,
	.usage =
	"usage: weld average -o OUT [--weights W[,W...]] [--no-normalize] [options] MODEL...\n"
	"\n  out = sum w_i X_i / sum w_i\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --no-normalize      plain weighted sum\n"
	"\n"
	"  -o, --output DIR        output folder (refused if it exists, unless -f)\n"
	"  -f, --force             replace an existing output once the new one is complete\n"
	"      --dtype TYPE        auto|bf16|f16|f32|f64 (default auto: the base's dtype)\n"
	"  -j, --threads N         worker threads (default: all cores)\n"
	"      --max-memory SIZE   memory budget, e.g. 512M, 4G (default 1G)\n"
	"      --shard-size SIZE   largest output shard (default 5G; 0 = one file)\n"
	"      --allow-missing     merge a tensor over the models that have it\n"
	"      --no-copy-files     do not copy config and tokenizer files\n"
	"  -q, --quiet / -v, --verbose\n"
	"      --json              machine-readable summary on stdout\n"
	"  MODEL may carry values: MODEL:weight=0.5,density=0.3\n",
};

int cmd_average(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
