/*
 * cmd_plan.c - weld plan: validate a merge command line (or a recipe) and
 * print what it would do, writing nothing.
 */
#include "commands.h"
#include "merge_cmd.h"
#include "method.h"

#include <string.h>

static const char usage[] =
	"usage: weld plan <merge command> [<options>] MODEL...\n"
	"       weld plan [--json] RECIPE.json\n"
	"\n  check everything a merge would check, then print the method, the models, each\n"
	"  output tensor with its sources and parameters, and the memory bound; write nothing.\n"
	"  Add --json to the merge command line for JSON.\n";

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

int cmd_plan(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("expected a merge command or a recipe");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	if (ends_with(argv[1], ".json") ||
	    (ends_with(argv[argc - 1], ".json") && (argc == 2 || argv[1][0] == '-'))) {
		argv[0] = (char *)"run";
		return cmd_run_plan(argc, argv);
	}
	/* the commands that honour merge_plan_only: the merges */
	if (!weld_method_find(argv[1], WELD_IN_COMMAND) && strcmp(argv[1], "expert-merge") != 0)
		return cli_usage_error("'%s' is not a merge command: weld plan takes a merge command line or a recipe",
				       argv[1]);
	merge_plan_only = true;
	return cmd_run_named(argc - 1, argv + 1);
}
