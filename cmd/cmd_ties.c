/*
 * cmd_ties.c - weld ties: TIES-Merging: trim, elect sign, disjoint mean
 */
#include "options.h"

static const struct merge_spec spec = {
	.name = "ties",
	.method = WELD_METHOD_TIES,
	.opts = MO_LAMBDA | MO_DENSITY | MO_SCOPE | MO_SIGN | MO_NORMALIZE | MO_NEEDS_BASE,
	.density = 0.2,
	.normalize = true,
	.combine = WELD_COMBINE_TIES,
	.usage =
	"usage: weld ties --base BASE -o OUT [--density D[,D...]] [--weights W[,W...]] [--lambda L] [--scope S] [--sign sum|count] [--no-normalize] [options] MODEL...\n"
	"\n  trim each task vector to its top density by |delta|, elect a sign per element,\n"
	"  average the deltas that agree with it: out = B + lambda * tau\n"
	"      --base MODEL        the pre-trained model (required)\n"
	"      --density D[,D...]  keep fraction in (0, 1] (default 0.2)\n"
	"      --weights W[,W...]  per-model weight (default 1)\n"
	"      --lambda L          scale of the merged task vector (default 1)\n"
	"      --scope S           tensor|row|model: unit of the top-k (default tensor)\n"
	"      --sign sum|count    sign election (default sum)\n"
	"      --no-normalize      disjoint sum instead of disjoint mean\n"
	"\n"
	"  -o, --output DIR        output folder (refused if it exists, unless -f)\n"
	"  -f, --force             replace an existing output once the new one is complete\n"
	"      --dtype TYPE        auto|bf16|f16|f32|f64 (default auto: the base's dtype)\n"
	"  -j, --threads N         worker threads (default: all cores)\n"
	"      --max-memory SIZE   memory budget, e.g. 512M, 4G (default 1G)\n"
	"      --shard-size SIZE   largest output shard (default 5G; 0 = one file)\n"
	"      --allow-missing     merge a tensor over the models that have it\n"
	"      --no-copy-files     do not copy config and tokenizer files\n"
	"  -q, --quiet / -v, --verbose\n"
	"      --json              machine-readable summary on stdout\n"
	"  MODEL may carry values: MODEL:weight=0.5,density=0.3\n",
};

int cmd_ties(int argc, char **argv)
{
	return merge_main(&spec, argc, argv);
}
