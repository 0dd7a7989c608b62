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

int cmd_task_arithmetic(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
