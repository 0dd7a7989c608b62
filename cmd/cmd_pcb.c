/*
 * cmd_pcb.c - weld pcb: PCB-Merging, parameter competition balancing (its
 * options and defaults are its row of the method table, lib/method.c)
 */
#include "merge_cmd.h"

static const char usage[] =
	"usage: weld pcb --base BASE -o OUT [--density R[,R...]] [--weights W[,W...]] [--lambda L] [--clip RHO] [--scope tensor|row|model] [options] MODEL...\n"
	"\n  score each delta by intra-model (clipped magnitude) and inter-model\n"
	"  (agreement with the others) balancing, keep the top fraction R of the\n"
	"  scores per unit, and take the score-weighted mean: out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density R[,R...]  fraction of the scores kept per unit, in (0, 1] (default 0.1)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --clip RHO          fraction of |delta| clipped at each end, in [0, 0.5) (default 0.0001)\n"
	"      --scope S           tensor|row|model: unit of the statistics (default tensor;\n"
	"                          model is the authors' code)\n"
	MERGE_COMMON_USAGE;

int cmd_pcb(int argc, char **argv)
{
	return merge_main("pcb", usage, argc, argv);
}
