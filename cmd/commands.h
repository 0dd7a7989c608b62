/*
 * commands.h - one entry point per command (argv[0] is the command name).
 */
#ifndef WELD_COMMANDS_H
#define WELD_COMMANDS_H

int cmd_arcee_fusion(int argc, char **argv);
int cmd_average(int argc, char **argv);
int cmd_breadcrumbs(int argc, char **argv);
int cmd_consensus(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_dare(int argc, char **argv);
int cmd_della(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_expert_merge(int argc, char **argv);
int cmd_extract_lora(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_join(int argc, char **argv);
int cmd_karcher(int argc, char **argv);
int cmd_iso_c(int argc, char **argv);
int cmd_iso_cts(int argc, char **argv);
int cmd_tsv_m(int argc, char **argv);
int cmd_model_stock(int argc, char **argv);
int cmd_multislerp(int argc, char **argv);
int cmd_nearswap(int argc, char **argv);
int cmd_nuslerp(int argc, char **argv);
int cmd_pcb(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_ram(int argc, char **argv);
int cmd_run(int argc, char **argv);
/* weld plan RECIPE.json: argv[0] is "run"; prints the plan, writes nothing. */
int cmd_run_plan(int argc, char **argv);
int cmd_sce(int argc, char **argv);
int cmd_task_arithmetic(int argc, char **argv);
int cmd_ties(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Run the command named argv[0] (sets the message prefix). */
int cmd_run_named(int argc, char **argv);

#endif
