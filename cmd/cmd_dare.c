/*
 * cmd_dare.c - weld dare: DARE: random drop and rescale of task vectors
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld dare --base BASE -o OUT [--density D[,D...]] [--weights W[,W...]] [--lambda L] [--rescale inverse|l1|none] [--combine sum|ties] [--trim D2] [--seed N] [options] MODEL...\n"
	"\n  keep each delta with probability density, rescale the kept ones, then sum\n"
	"  (or TIES-style election with --combine ties): out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density D[,D...]  keep probability in (0, 1] (default 0.5)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --rescale R         inverse (x 1/d, default) | l1 | none\n"
	"      --combine C         sum (default) | ties\n"
	"      --trim D2           with --combine ties: also keep only the top D2 after dropping\n"
	"      --scope S           tensor|row|model: unit of l1 rescale and --trim (default tensor)\n"
	"      --sign sum|count    sign election with --combine ties (default sum)\n"
	"      --normalize         divide by the summed weights (disjoint mean with ties)\n"
	"      --seed N            random seed (default 0)\n"
	MERGE_COMMON_USAGE;

int cmd_dare(int argc, char **argv)
{
	return merge_main("dare", usage, argc, argv);
}
