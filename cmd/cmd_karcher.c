/*
 * cmd_karcher.c - weld karcher: the Karcher (Riemannian) mean of the models
 * on the sphere (METHODS 8; its options and defaults are its row of the
 * method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld karcher -o OUT [--max-iter N] [--tol T] [options] MODEL...\n"
	"\n  the point of the sphere nearest to every normalised model (each counts\n"
	"  equally), scaled by the mean of their norms\n"
	"      --max-iter N        most iterations (default 10)\n"
	"      --tol T             stop when a step is shorter than T (default 1e-05)\n"
	MERGE_COMMON_USAGE;

int cmd_karcher(int argc, char **argv)
{
	return merge_main("karcher", usage, argc, argv);
}
