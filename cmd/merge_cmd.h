/*
 * merge_cmd.h - the command line shared by every merge command.
 *
 * A merge command is its row of the method table (lib/method.c: which
 * values and options it takes, its defaults) plus its usage text:
 * cmd_<name>() calls merge_main("<name>", usage, argc, argv). merge_main()
 * parses, plans (every error is found before anything is written), then
 * either prints the plan ('weld plan') or executes it.
 */
#ifndef WELD_MERGE_CMD_H
#define WELD_MERGE_CMD_H

#include "cli.h"
#include "commands.h"

/* The options every merge command takes, for the end of its -h text. */
#define MERGE_COMMON_USAGE \
	"\n" \
	"  -o, --output DIR        output folder (refused if it exists, unless -f)\n" \
	"  -f, --force             replace an existing output once the new one is complete\n" \
	"      --dtype TYPE        auto|bf16|f16|f32|f64|fp8, or q8_0|q4_0 for GGUF (default auto: the base's)\n" \
	"      --format FMT        safetensors|gguf (default: the base's; GGUF only from GGUF models)\n" \
	"  -j, --threads N         worker threads (default: OMP_NUM_THREADS, else all cores)\n" \
	"      --max-memory SIZE   memory budget, e.g. 512M, 4G (default 1G)\n" \
	"      --shard-size SIZE   largest output shard (default 5G; 0 = one file)\n" \
	"      --allow-missing     merge a tensor over the models that have it\n" \
	"      --allow-nonfinite   merge inputs holding NaN or inf (default: an error)\n" \
	"      --no-copy-files     do not copy config and tokenizer files\n" \
	"  -q, --quiet / -v, --verbose\n" \
	"      --json              machine-readable summary on stdout\n" \
	"      --part I/N|auto     write only part I of N of the output (OUT.part-I-of-N,\n" \
	"                          see weld-join(1)); auto: from Slurm or --parts N\n" \
	"  MODEL may carry values: MODEL:weight=0.5,density=0.3\n"

/* Set by 'weld plan <command line>': print the plan, write nothing. */
extern bool merge_plan_only;

/* Run the merge command `name` (a WELD_IN_COMMAND row of the method
 * table) with its usage text. */
int merge_main(const char *name, const char *usage, int argc, char **argv);

#endif
