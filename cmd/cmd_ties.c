/*
 * cmd_ties.c - weld ties: TIES-Merging: trim, elect sign, disjoint mean
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
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
	MERGE_COMMON_USAGE;

int cmd_ties(int argc, char **argv)
{
	return merge_main("ties", usage, argc, argv);
}
