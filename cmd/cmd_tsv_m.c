/*
 * cmd_tsv_m.c - weld tsv-m: Task Singular Vectors, Merge (METHODS 13; its
 * options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld tsv-m --base BASE -o OUT [--weights W,...] [--lambda L]\n"
	"                  [--svd-exclude REGEX] [options] MODEL...\n"
	"\n  each 2-D task vector's top min(m,n)/T singular vectors, concatenated,\n"
	"  orthogonalised (polar factors) and recombined; other tensors: the mean\n"
	"      --weights W,...     per-model weight of the task vector (default 1)\n"
	"      --lambda L          scale of the merged update (default 1)\n"
	"      --svd-exclude REGEX tensors whose name matches (POSIX extended) are\n"
	"                          merged by the mean, not decomposed\n"
	MERGE_COMMON_USAGE;

int cmd_tsv_m(int argc, char **argv)
{
	return merge_main("tsv-m", usage, argc, argv);
}
