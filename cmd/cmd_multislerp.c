/*
 * cmd_multislerp.c - weld multislerp: weighted spherical mean of several
 * models, or of their task vectors with a base (METHODS 7; its options and
 * defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld multislerp [--base BASE] -o OUT [--weights W[,W...]] [--no-normalize] [--eps E] [options] MODEL...\n"
	"\n  the direction of the weighted mean of the normalised inputs, with the weighted\n"
	"  mean of their norms; with --base, of the task vectors, added to the base\n"
	"      --base MODEL        work on task vectors against this model (optional)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --no-normalize      do not divide the weights by their sum\n"
	"      --eps E             the small number of the normalisation (default 1e-08)\n"
	MERGE_COMMON_USAGE;

int cmd_multislerp(int argc, char **argv)
{
	return merge_main("multislerp", usage, argc, argv);
}
