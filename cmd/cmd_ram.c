/*
 * cmd_ram.c - weld ram: Reinforced Agent Merging, and RAM+ (mergekit's
 * ramplus_tl) with --plus (METHODS 10; its options and defaults are its
 * row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld ram --base BASE -o OUT [--epsilon E] [--plus [--r R] [--alpha A]] [options] MODEL...\n"
	"\n  per element, the deltas with |delta| > epsilon survive: out = B where none does,\n"
	"  B + delta where one does, B + their mean where several do\n"
	"      --base MODEL        the base model (required)\n"
	"      --epsilon E         a delta survives when |delta| > E (default 1e-05)\n"
	"      --plus              RAM+ (mergekit's ramplus_tl): per model and tensor,\n"
	"                          rho = shared / max(unique, E) elements, and the deltas that\n"
	"                          survive alone are scaled by 1 + r * clamp(rho, 0, alpha)\n"
	"      --r R               with --plus (default 0.1)\n"
	"      --alpha A           with --plus, >= 0 (default 0.2)\n"
	MERGE_COMMON_USAGE;

int cmd_ram(int argc, char **argv)
{
	return merge_main("ram", usage, argc, argv);
}
