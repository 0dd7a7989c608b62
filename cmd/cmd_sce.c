/*
 * cmd_sce.c - weld sce: Select, Calculate, Erase (FuseChat) (its options
 * and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld sce --base BASE -o OUT [--select-topk T] [options] MODEL...\n"
	"\n  keep the positions where the task vectors vary most across the models\n"
	"  (the top fraction T of the non-zero variances), drop the entries whose\n"
	"  sign disagrees with their sum, and take the mean weighted by each\n"
	"  model's energy: out = B + tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --select-topk T     fraction of the varying positions kept (default 1: all)\n"
	MERGE_COMMON_USAGE;

int cmd_sce(int argc, char **argv)
{
	return merge_main("sce", usage, argc, argv);
}
