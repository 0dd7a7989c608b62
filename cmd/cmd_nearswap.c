/*
 * cmd_nearswap.c - weld nearswap: take the model where it is near the
 * base, interpolate toward the base beyond (METHODS 9; its options and
 * defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld nearswap --base BASE --t T -o OUT [options] MODEL\n"
	"\n  per element: a = clamp(t / max(|B - X|, 1e-6), 0, 1); out = a * X + (1 - a) * B\n"
	"  (the model where it is within t of the base, a pull toward the base beyond)\n"
	"      --base MODEL        the base model (required)\n"
	"      --t T               the distance below which the model is taken (required;\n"
	"                          t <= 0 gives the base)\n"
	MERGE_COMMON_USAGE;

int cmd_nearswap(int argc, char **argv)
{
	return merge_main("nearswap", usage, argc, argv);
}
