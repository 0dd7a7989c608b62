/*
 * cmd_breadcrumbs.c - weld breadcrumbs: Model Breadcrumbs: drop the largest outliers and the smallest deltas
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld breadcrumbs --base BASE -o OUT [--density D[,D...]] [--gamma G] [--weights W[,W...]] [--lambda L] [--scope S] [--combine sum|ties] [options] MODEL...\n"
	"\n  per unit, zero the top gamma by |delta| and keep the next density: out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density D[,D...]  fraction kept after the outliers (default 0.9)\n"
	"      --gamma G           fraction of largest outliers removed (default 0.01)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --scope S           tensor|row|model (default tensor; row is the original code)\n"
	"      --combine C         sum (default) | ties (mergekit breadcrumbs_ties)\n"
	"      --sign sum|count    sign election with --combine ties (default sum)\n"
	"      --normalize         divide by the summed weights\n"
	MERGE_COMMON_USAGE;

int cmd_breadcrumbs(int argc, char **argv)
{
	return merge_main("breadcrumbs", usage, argc, argv);
}
