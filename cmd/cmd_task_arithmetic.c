/*
 * cmd_task_arithmetic.c - weld task-arithmetic: base + lambda * sum of weighted task vectors
 */
#include "options.h"

static const struct merge_spec spec = {
	.name = "task-arithmetic",
	.method = WELD_METHOD_TASK_ARITHMETIC,
	.opts = MO_LAMBDA | MO_NORMALIZE | MO_NEEDS_BASE,
	.density = 1,
	.normalize = false,
	.combine = WELD_COMBINE_SUM,
	.usage =
	"usage: weld task-arithmetic --base BASE -o OUT [--weights W[,W...]] [--lambda L] [--normalize] [options] MODEL...\n"
	"\n  out = B + lambda * sum w_i (X_i - B)\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --normalize         divide the sum by sum w_i\n"
	MERGE_COMMON_USAGE,
};

int cmd_task_arithmetic(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
