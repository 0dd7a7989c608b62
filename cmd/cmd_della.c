/*
 * cmd_della.c - weld della: DELLA-Merging (MagPrune), a keep probability
 * per element from its magnitude's rank in its row (its options and
 * defaults are its rows of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld della --base BASE -o OUT [--density D[,D...]] [--epsilon E[,E...]] [--weights W[,W...]] [--lambda L] [--rescale inverse|l1|none] [--combine sum|ties] [--seed N] [options] MODEL...\n"
	"\n  in each row, keep a delta with probability d - eps (smallest magnitude) ...\n"
	"  d + eps (largest), rescale the kept ones, then elect signs and take the\n"
	"  disjoint mean (or sum with --combine sum): out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density D[,D...]  mean keep probability in (0, 1] (default 0.5)\n"
	"      --epsilon E[,E...]  half the spread of the keep probability (default 0.15)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --rescale R         inverse (x 1/p, default) | l1 (over the tensor) | none\n"
	"      --combine C         ties (default) | sum\n"
	"      --sign sum|count    sign election with --combine ties (default sum)\n"
	"      --no-normalize      no division by the summed weights (on by default)\n"
	"      --seed N            random seed (default 0)\n"
	MERGE_COMMON_USAGE;

int cmd_della(int argc, char **argv)
{
	return merge_main("della", usage, argc, argv);
}
