/*
 * cmd_arcee_fusion.c - weld arcee-fusion: mergekit's Arcee Fusion (its
 * options are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld arcee-fusion --base BASE -o OUT [options] MODEL\n"
	"\n  take the model's value where the change from the base is important\n"
	"  (|model - base| times its row's KL divergence at or above the fence\n"
	"  Q(.5) + 1.5 (Q(.75) - Q(.25)) of the tensor), else the base's\n"
	"      --base MODEL        the base model (required)\n"
	MERGE_COMMON_USAGE;

int cmd_arcee_fusion(int argc, char **argv)
{
	return merge_main("arcee-fusion", usage, argc, argv);
}
