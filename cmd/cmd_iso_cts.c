/*
 * cmd_iso_cts.c - weld iso-cts: isotropic merging in the common and
 * task-specific subspaces (METHODS 15; its options and defaults are its
 * row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld iso-cts --base BASE -o OUT [--weights W,...] [--lambda L]\n"
	"                    [--common-space-fraction F] [--svd-exclude REGEX]\n"
	"                    [options] MODEL...\n"
	"\n  the top directions of the summed task vector plus each model's own\n"
	"  directions outside them, orthogonalised, with a flat spectrum; other\n"
	"  tensors: the mean of the task vectors\n"
	"      --weights W,...     per-model weight of the task vector (default 1)\n"
	"      --lambda L          scale of the merged update (default 1)\n"
	"      --common-space-fraction F\n"
	"                          share of the dimensions given to the common\n"
	"                          subspace, in [0, 1] (default 0.8)\n"
	"      --svd-exclude REGEX tensors whose name matches (POSIX extended) are\n"
	"                          merged by the mean, not decomposed\n"
	MERGE_COMMON_USAGE;

int cmd_iso_cts(int argc, char **argv)
{
	return merge_main("iso-cts", usage, argc, argv);
}
