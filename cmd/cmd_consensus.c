/*
 * cmd_consensus.c - weld consensus: TALL masks and Consensus Merging
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld consensus --base BASE -o OUT [--from ta|ties] [--density D] [--mask-lambda L[,L...]] [--k K] [--lambda L] [--weights W[,W...]] [--save-masks FILE] [options] MODEL...\n"
	"       weld consensus --apply-mask I --masks FILE --base BASE --merged MERGED -o OUT\n"
	"\n  tau = sum w_i delta_i (or the TIES vector), mask_i = |delta_i| > l_i |tau - delta_i|,\n"
	"  out = B + lambda * tau where at least k masks agree\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --from ta|ties      merged vector: task arithmetic (default) or TIES disjoint sum\n"
	"      --density D[,D...]  TIES trim with --from ties (default 0.2)\n"
	"      --mask-lambda L,..  TALL mask threshold per model (default 0.6)\n"
	"      --k K               keep where at least K masks agree (default 2)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged vector (default 1)\n"
	"      --scope S           top-k unit with --from ties (default tensor)\n"
	"      --sign sum|count    sign election with --from ties (default sum)\n"
	"      --save-masks FILE   also write the TALL masks, bit-packed, to FILE\n"
	"      --apply-mask I      rebuild task I: B + mask_I * (MERGED - B)\n"
	"      --masks FILE        the masks written by --save-masks (with --apply-mask)\n"
	"      --merged MODEL      the consensus output (with --apply-mask)\n"
	MERGE_COMMON_USAGE;

int cmd_consensus(int argc, char **argv)
{
	return merge_main("consensus", usage, argc, argv);
}
