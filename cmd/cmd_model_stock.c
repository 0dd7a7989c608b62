/*
 * cmd_model_stock.c - weld model-stock: Model Stock, interpolate between
 * the base and the models' mean by the mean cosine of their task vectors
 * (METHODS 4; its options and defaults are its row of the method table,
 * lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld model-stock --base BASE -o OUT [--filter-wise] [options] MODEL MODEL...\n"
	"\n  c = the mean over pairs of the cosines of the task vectors (model - base),\n"
	"  t = n c / (1 + (n - 1) c), out = t * mean(models) + (1 - t) * B\n"
	"      --base MODEL        the base model (required)\n"
	"      --filter-wise       c and t per row (the last dimension), not per tensor\n"
	MERGE_COMMON_USAGE;

int cmd_model_stock(int argc, char **argv)
{
	return merge_main("model-stock", usage, argc, argv);
}
