/*
 * cmd_iso_c.c - weld iso-c: isotropic merging in the common subspace
 * (METHODS 14; its options and defaults are its row of the method table,
 * lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld iso-c --base BASE -o OUT [--weights W,...] [--lambda L]\n"
	"                  [--svd-exclude REGEX] [options] MODEL...\n"
	"\n  the sum of the 2-D task vectors with every singular value set to their\n"
	"  mean (a flat spectrum); other tensors: the mean of the task vectors\n"
	"      --weights W,...     per-model weight of the task vector (default 1)\n"
	"      --lambda L          scale of the merged update (default 1)\n"
	"      --svd-exclude REGEX tensors whose name matches (POSIX extended) are\n"
	"                          merged by the mean, not decomposed\n"
	MERGE_COMMON_USAGE;

int cmd_iso_c(int argc, char **argv)
{
	return merge_main("iso-c", usage, argc, argv);
}
