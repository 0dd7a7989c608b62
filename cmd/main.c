/*
 * main.c - weld's entry point: find the command in the table and run it.
 */
#include "cli.h"
#include "commands.h"
#include "method.h"

#include <stdlib.h>
#include <string.h>

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;    /* NULL: a merge command, whose summary is in the method table */
};

/* keep sorted */
static const struct cmd commands[] = {
	{ "arcee-fusion", cmd_arcee_fusion, NULL },
	{ "average", cmd_average, NULL },
	{ "breadcrumbs", cmd_breadcrumbs, NULL },
	{ "consensus", cmd_consensus, NULL },
	{ "convert", cmd_convert, "rewrite a model in another format, dtype or shard size" },
	{ "dare", cmd_dare, NULL },
	{ "della", cmd_della, NULL },
	{ "diff", cmd_diff, "per-tensor comparison of two models" },
	{ "expert-merge", cmd_expert_merge, "M-SMoE: merge the experts of one MoE checkpoint into fewer groups" },
	{ "extract-lora", cmd_extract_lora, "a PEFT LoRA adapter from a fine-tuned model and its base" },
	{ "help", cmd_help, "show the usage of weld or of a command" },
	{ "inspect", cmd_inspect, "list a model's tensors: name, dtype, shape, bytes, file" },
	{ "iso-c", cmd_iso_c, NULL },
	{ "iso-cts", cmd_iso_cts, NULL },
	{ "join", cmd_join, "assemble the parts of a merge split over several machines" },
	{ "karcher", cmd_karcher, NULL },
	{ "model-stock", cmd_model_stock, NULL },
	{ "multislerp", cmd_multislerp, NULL },
	{ "nearswap", cmd_nearswap, NULL },
	{ "nuslerp", cmd_nuslerp, NULL },
	{ "pcb", cmd_pcb, NULL },
	{ "plan", cmd_plan, "validate a command or recipe and print what it would do" },
	{ "ram", cmd_ram, NULL },
	{ "run", cmd_run, "run a JSON recipe (mergekit's configuration schema)" },
	{ "sce", cmd_sce, NULL },
	{ "task-arithmetic", cmd_task_arithmetic, NULL },
	{ "ties", cmd_ties, NULL },
	{ "tsv-m", cmd_tsv_m, NULL },
	{ "verify", cmd_verify, "re-hash a weld output against its recorded XXH3 checksums" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char usage[] =
	"usage: weld <command> [<options>] [<arguments>]\n"
	"       weld help [<command>]\n"
	"       weld --version\n";

static void list_commands(FILE *f)
{
	fputs(usage, f);
	fputs("\ncommands:\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary ? commands[i].summary
			: weld_method_find(commands[i].name, WELD_IN_COMMAND)->summary);
	fputs("\n'weld help <command>' or 'weld <command> -h' shows a command's options;\n"
	      "'man weld-<command>' the whole story.\n", f);
}

static const struct cmd *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int cmd_dispatch_usage(const char *name, FILE *f)
{
	const struct cmd *c = find(name);
	char *argv[] = { (char *)name, (char *)"-h", NULL };

	if (!c)
		return -1;
	(void)f;
	return c->fn(2, argv);
}

int cmd_help(int argc, char **argv)
{
	static const char usage_help[] = "usage: weld help [<command>]\n";

	cli_name = "weld help";
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage_help, stdout);
		return EXIT_OK;
	}
	if (argc > 2)
		return cli_usage_error("expected at most one command");
	if (argc < 2 || !strcmp(argv[1], "help")) {
		list_commands(stdout);
		return EXIT_OK;
	}
	if (cmd_dispatch_usage(argv[1], stdout) < 0) {
		cli_error("'%s' is not a weld command; see 'weld help'", argv[1]);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* Run the command named argv[0]; used by main and by 'weld plan'. */
int cmd_run_named(int argc, char **argv)
{
	const struct cmd *c = find(argv[0]);
	static char prefix[64];

	if (!c) {
		fprintf(stderr, "weld: error: '%s' is not a weld command; see 'weld help'\n", argv[0]);
		return EXIT_USAGE;
	}
	snprintf(prefix, sizeof(prefix), "weld %s", c->name);
	cli_name = prefix;
	return c->fn(argc, argv);
}

int main(int argc, char **argv)
{
	int ret;

	if (argc < 2) {
		list_commands(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("weld %s\n", WELD_VERSION);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		list_commands(stdout);
		return EXIT_OK;
	}
	ret = cmd_run_named(argc - 1, argv + 1);
	/* a full disk can show up only now */
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "%s: error: cannot write to standard output\n", cli_name);
		return EXIT_FAIL;
	}
	return ret;
}
