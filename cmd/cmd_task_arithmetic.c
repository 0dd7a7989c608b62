/*
 * cmd_task_arithmetic.c - weld task-arithmetic: base + lambda * sum of weighted task vectors
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld task-arithmetic --base BASE -o OUT [--weights W[,W...]] [--lambda L] [--normalize] [options] MODEL...\n"
	"\n  out = B + lambda * sum w_i (X_i - B)\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --normalize         divide the sum by sum w_i\n"
	MERGE_COMMON_USAGE;

int cmd_task_arithmetic(int argc, char **argv)
{
	return merge_main("task-arithmetic", usage, argc, argv);
}
