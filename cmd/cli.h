/*
 * cli.h - what the commands share: messages, usage errors, number parsing,
 * the progress bar and signal handling.
 *
 * Adding a command: write cmd/cmd_<name>.c with `int cmd_<name>(int argc,
 * char **argv)` (argv[0] is the command name), add its row to the table in
 * cmd/main.c, and write man/weld-<name>.1.
 */
#ifndef WELD_CLI_H
#define WELD_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "weld.h"
#include "output_guard.h"
#include "output_parts.h"

/* getopt_long rows every command that writes a model takes:
 * -o -f -j -q -v -h */
#define CLI_OUTPUT_OPTIONS \
	{ "output", required_argument, NULL, 'o' }, \
	{ "force", no_argument, NULL, 'f' }, \
	{ "threads", required_argument, NULL, 'j' }, \
	{ "quiet", no_argument, NULL, 'q' }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "help", no_argument, NULL, 'h' }

/* What cli_output_opt() did with an option. */
enum cli_opt {
	CLI_OPT_OTHER = 0,  /* not one of CLI_OUTPUT_OPTIONS: the caller's */
	CLI_OPT_TAKEN = 1,  /* handled */
	CLI_OPT_HELP = -1,  /* -h: usage printed on stdout, exit 0 */
	CLI_OPT_BAD = -2,   /* a bad value: message printed, exit 2 */
};
/* Handle -o, -f, -j, -q, -v and -h (with optarg for the value): they set
 * *out, *force, *threads and the verbosity. */
enum cli_opt cli_output_opt(int c, const char *usage, const char **out, bool *force,
			    int *threads);

/* exit statuses */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

extern const char *cli_name;   /* "weld ties": the prefix of every message */
extern int cli_verbosity;      /* 0 quiet, 1 normal, 2 verbose */

void cli_error(const char *fmt, ...) WELD_PRINTF(1, 2);
void cli_warning(const char *fmt, ...) WELD_PRINTF(1, 2);
void cli_info(const char *fmt, ...) WELD_PRINTF(1, 2);   /* -v only */
/* A usage error: "error: ..." and "try '<command> -h'" on stderr (the
 * whole usage only for -h, as git does); returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) WELD_PRINTF(1, 2);
/* The usage error for what getopt_long returned as c for argv[optind - 1]:
 * ':' (a value missing) or anything unknown; returns EXIT_USAGE. */
int cli_bad_option(int c, char *const argv[]);
/* Report a library error; returns EXIT_FAIL (EXIT_USAGE for WELD_ERR_ARG
 * found while parsing is the caller's choice). */
int cli_fail(const struct weld_error *err);

/* May out be written by the merge of plan p (see weld_output_check; the
 * inputs are the plan's models)? 0, or EXIT_FAIL after the message. */
int cli_check_output(const weld_plan *p, const char *out, bool force, bool single_file);
/* The same for the n input paths in (every input path must be UTF-8). */
int cli_check_paths(const char *out, bool force, bool single_file, const char *const *in,
		    size_t n);

/* Checked parsing; on failure print a usage error naming the option and
 * the value. */
bool cli_double(const char *opt, const char *s, double *out);
bool cli_int(const char *opt, const char *s, long lo, long hi, long *out);
bool cli_size(const char *opt, const char *s, uint64_t *out);
/* "0.3,0.5" -> vals (at most max); false on a bad item. */
bool cli_list(const char *opt, const char *s, double *vals, size_t max, size_t *n);
/* --dtype auto|bf16|f16|f32 (and f64): -1 for auto. */
bool cli_dtype(const char *s, int *out);
/* The same, with q8_0 and q4_0 (GGUF block types), into o->dtype and
 * o->out_quant. */
bool cli_out_dtype(const char *s, struct weld_merge_opts *o);
/* --format safetensors|gguf. */
bool cli_format(const char *s, int *out);

/*
 * --part I/N, or --part auto: from Slurm's job array variables
 * (SLURM_ARRAY_TASK_ID, _COUNT, _MIN and _STEP), else from Kubernetes'
 * JOB_COMPLETION_INDEX (0-based) with parts_opt, the value of --parts N
 * (NULL if not given). Sets *part (1-based) and *parts; returns 0, or
 * EXIT_USAGE after the message.
 */
int cli_part(const char *spec, const char *parts_opt, unsigned *part, unsigned *parts);
/* The folder part I of N of the output out is written in, "OUT.part-I-of-N"
 * (out without its trailing '/'); caller frees, NULL when out of memory. */
char *cli_part_output(const char *out, unsigned part, unsigned parts);

/* SIGINT, SIGTERM, SIGHUP and SIGPIPE remove the temporary output folder,
 * then end the process as the signal would. */
void cli_install_signals(void);
/* Callback for weld_merge_opts.progress: a bar on stderr if it is a tty. */
void cli_progress(void *ctx, uint64_t done, uint64_t total);
void cli_progress_end(void);
/* Callback for weld_merge_opts.warn. */
void cli_warn_cb(void *ctx, const char *msg);

/* s for a terminal: control characters written as \xNN (a borrowed
 * buffer, one of eight reused in turn; very long strings are cut). Messages
 * (cli_error & co) do this themselves. */
const char *cli_safe(const char *s);

/* Seconds since *t0 (CLOCK_MONOTONIC), for the summaries. */
double cli_seconds_since(const struct timespec *t0);

/* JSON string escaping for --json output (to stdout). */
void cli_json_string(FILE *f, const char *s);

#endif
