/*
 * cmd_average.c - weld average: weighted mean of N models
 * (its options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld average -o OUT [--weights W[,W...]] [--no-normalize] [options] MODEL...\n"
	"\n  out = sum w_i X_i / sum w_i\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --no-normalize      plain weighted sum\n"
	MERGE_COMMON_USAGE;

int cmd_average(int argc, char **argv)
{
	return merge_main("average", usage, argc, argv);
}
