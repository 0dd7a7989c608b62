/* placeholder until recipes land */
#include "cli.h"
#include "commands.h"
int cmd_run(int argc, char **argv) { (void)argc; (void)argv; cli_error("recipes are not built yet"); return EXIT_FAIL; }
int cmd_run_plan(int argc, char **argv) { return cmd_run(argc, argv); }
