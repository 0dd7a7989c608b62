/*
 * cmd_nuslerp.c - weld nuslerp: spherical interpolation of two models, or
 * of their task vectors with a base (METHODS 6; its options and defaults
 * are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld nuslerp [--base BASE] -o OUT [--weights W1,W2] [--no-flatten [--row-wise]] [options] MODEL1 MODEL2\n"
	"\n  slerp from MODEL1 to MODEL2 at t = w2 / (w1 + w2); with --base, of the task\n"
	"  vectors (model - base), added to the base\n"
	"      --base MODEL        interpolate task vectors against this model (optional)\n"
	"      --weights W1,W2     the two weights (default 1,1: t = 0.5)\n"
	"      --no-flatten        one interpolation per row (last dimension), not per tensor\n"
	"      --row-wise          with --no-flatten: per vector along dim 0 (columns)\n"
	MERGE_COMMON_USAGE;

int cmd_nuslerp(int argc, char **argv)
{
	return merge_main("nuslerp", usage, argc, argv);
}
