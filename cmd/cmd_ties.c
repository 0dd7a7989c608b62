/*
 * cmd_ties.c - weld ties: TIES-Merging: trim, elect sign, disjoint mean
 */
#include "options.h"

static const struct merge_spec spec = {
	.name = "ties",
	.method = WELD_METHOD_TIES,
	.opts = MO_LAMBDA | MO_DENSITY | MO_SCOPE | MO_SIGN | MO_NORMALIZE | MO_NEEDS_BASE,
	.density = 0.2,
	.normalize = true,
	.combine = WELD_COMBINE_TIES,
	.usage =
	"usage: weld ties --base BASE -o OUT [--density D[,D...]] [--weights W[,W...]] [--lambda L] [--scope S] [--sign sum|count] [--no-normalize] [options] MODEL...\n"
	"\n  trim each task vector to its top density by |delta|, elect a sign per element,\n"
	"  average the deltas that agree with it: out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density D[,D...]  keep fraction in (0, 1] (default 0.2)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --scope S           tensor|row|model: unit of the top-k (default tensor)\n"
	"      --sign sum|count    sign election (default sum)\n"
	"      --no-normalize      disjoint sum instead of disjoint mean\n"
	MERGE_COMMON_USAGE,
};

int cmd_ties(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
