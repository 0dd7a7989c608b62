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
	MERGE_COMMON_USAGE,
};

int cmd_average(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
