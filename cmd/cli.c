/*
 * cli.c - messages, parsing helpers, progress bar and signals shared by the
 * commands. Messages go to stderr prefixed with the command ("weld ties:
 * error: ..."), results to stdout.
 */
#include "cli.h"
#include "quant.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_name = "weld";
int cli_verbosity = 1;

/* s with every control character written as \xNN, so that a hostile
 * tensor or file name cannot drive the terminal. */
static void put_safe(FILE *f, const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c < 0x20 || *c == 0x7f)
			fprintf(f, "\\x%02x", *c);
		else
			fputc(*c, f);
	}
}

const char *cli_safe(const char *s)
{
	static char bufs[8][8192];
	static unsigned next;
	char *b = bufs[next++ % 8];
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *)s; *c && o + 8 < sizeof(bufs[0]); c++) {
		if (*c < 0x20 || *c == 0x7f)
			o += (size_t)snprintf(b + o, 5, "\\x%02x", *c);
		else
			b[o++] = (char)*c;
	}
	b[o] = 0;
	return b;
}

static void vmsg(const char *kind, const char *fmt, va_list ap) WELD_PRINTF(2, 0);

static void vmsg(const char *kind, const char *fmt, va_list ap)
{
	char *text = NULL;

	cli_progress_end();
	fprintf(stderr, "%s: %s", cli_name, kind);
	if (vasprintf(&text, fmt, ap) >= 0) {
		put_safe(stderr, text);
		free(text);
	}
	fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("error: ", fmt, ap);
	va_end(ap);
}

void cli_warning(const char *fmt, ...)
{
	va_list ap;

	if (cli_verbosity < 1)
		return;
	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

void cli_info(const char *fmt, ...)
{
	va_list ap;

	if (cli_verbosity < 2)
		return;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("error: ", fmt, ap);
	va_end(ap);
	fprintf(stderr, "try '%s -h'\n", cli_name);
	return EXIT_USAGE;
}

int cli_bad_option(int c, char *const argv[])
{
	if (c == ':')
		return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
	return cli_usage_error("unknown option '%s'", argv[optind - 1]);
}

int cli_check_paths(const char *out, bool force, bool single_file, const char *const *in,
		    size_t n)
{
	struct weld_error err = { 0 };

	for (size_t i = 0; i < n; i++)
		/* the output's recipe (JSON) names every input */
		if (!weld_utf8_valid(in[i])) {
			cli_error("'%s': the path is not valid UTF-8, and weld records every input path in the output's recipe (JSON): rename it",
				  in[i]);
			return EXIT_FAIL;
		}
	return weld_output_check(out, force, single_file, in, n, &err) < 0 ? cli_fail(&err) : 0;
}

int cli_check_output(const weld_plan *p, const char *out, bool force, bool single_file)
{
	size_t n = weld_plan_model_count(p);
	const char **in = calloc(n ? n : 1, sizeof(*in));
	struct weld_error err = { 0 };
	char **set = NULL;
	size_t nset = 0;
	int r = 0;

	if (!in) {
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < n; i++)
		in[i] = weld_model_path(weld_plan_model(p, (int)i));
	/* a GGUF output is one file, or a split set of files beside out */
	single_file = single_file || weld_plan_output_format(p, NULL) == WELD_FORMAT_GGUF;
	if (weld_plan_output_set(p, out, &set, &nset, &err) < 0)
		r = cli_fail(&err);
	else if (!nset)
		r = cli_check_paths(out, force, single_file, in, n);
	for (size_t k = 0; k < nset; k++) {
		if (!r)
			r = cli_check_paths(set[k], force, true, in, n);
		free(set[k]);
	}
	free(set);
	free(in);
	return r;
}

double cli_seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

int cli_fail(const struct weld_error *err)
{
	cli_error("%s", err->msg);
	return EXIT_FAIL;
}

enum cli_opt cli_output_opt(int c, const char *usage, const char **out, bool *force,
			    int *threads)
{
	long l;

	switch (c) {
	case 'o':
		if (!*optarg) {
			cli_usage_error("the output path given to '-o' is empty");
			return CLI_OPT_BAD;
		}
		*out = optarg;
		return CLI_OPT_TAKEN;
	case 'f': *force = true; return CLI_OPT_TAKEN;
	case 'q': cli_verbosity = 0; return CLI_OPT_TAKEN;
	case 'v': cli_verbosity = 2; return CLI_OPT_TAKEN;
	case 'h': fputs(usage, stdout); return CLI_OPT_HELP;
	case 'j':
		if (!cli_int("--threads", optarg, 1, 1024, &l))
			return CLI_OPT_BAD;
		*threads = (int)l;
		return CLI_OPT_TAKEN;
	default:
		return CLI_OPT_OTHER;
	}
}

bool cli_double(const char *opt, const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(*out)) {
		cli_usage_error("invalid value '%s' for '%s': not a number", s, opt);
		return false;
	}
	if (fabs(*out) > FLT_MAX) {
		cli_usage_error("invalid value '%s' for '%s': outside the float32 range", s, opt);
		return false;
	}
	return true;
}

bool cli_int(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (!*s || *end || errno || *out < lo || *out > hi) {
		cli_usage_error("invalid value '%s' for '%s': not an integer in [%ld, %ld]", s, opt, lo, hi);
		return false;
	}
	return true;
}

/* A variable of the environment as a number in [lo, hi]; false if unset. */
static int env_long(const char *name, long lo, long hi, bool *set, long *out)
{
	const char *v = getenv(name);
	char *end;

	*set = v && *v;
	if (!*set)
		return 0;
	errno = 0;
	*out = strtol(v, &end, 10);
	if (*end || errno || *out < lo || *out > hi)
		return cli_usage_error("--part auto: %s='%s' is not an integer in [%ld, %ld]", name,
				       v, lo, hi);
	return 0;
}

/* Part and count of a Slurm job array task (--array=MIN-MAX[:STEP]). */
static int slurm_part(long *part, long *parts)
{
	long id, count, min = 0, step = 1;
	bool set, has_count, has_min, has_step;

	if (env_long("SLURM_ARRAY_TASK_ID", 0, LONG_MAX / 2, &set, &id) ||
	    env_long("SLURM_ARRAY_TASK_COUNT", 1, WELD_MAX_PARTS, &has_count, &count) ||
	    env_long("SLURM_ARRAY_TASK_MIN", 0, LONG_MAX / 2, &has_min, &min) ||
	    env_long("SLURM_ARRAY_TASK_STEP", 1, LONG_MAX / 2, &has_step, &step))
		return EXIT_USAGE;
	if (!has_count || !has_min)
		return cli_usage_error("--part auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_%s",
				       has_count ? "MIN" : "COUNT");
	if (id < min || (id - min) % step || (id - min) / step >= count)
		return cli_usage_error("--part auto: task %ld is not one of the %ld tasks of the array from %ld by %ld",
				       id, count, min, step);
	*part = (id - min) / step + 1;
	*parts = count;
	return 0;
}

int cli_part(const char *spec, const char *parts_opt, unsigned *part, unsigned *parts)
{
	long i = 0, n = 0, given = 0;
	bool slurm, k8s;
	char *end;

	if (parts_opt && !cli_int("--parts", parts_opt, 1, WELD_MAX_PARTS, &given))
		return EXIT_USAGE;
	if (strcmp(spec, "auto") != 0) {
		if (parts_opt)
			return cli_usage_error("--parts goes with --part auto (--part I/N says N)");
		errno = 0;
		i = strtol(spec, &end, 10);
		if (end == spec || *end != '/' || errno)
			return cli_usage_error("invalid value '%s' for '--part': not I/N or auto", spec);
		n = strtol(end + 1, &end, 10);
		if (*end || errno || n < 1 || n > (long)WELD_MAX_PARTS || i < 1 || i > n)
			return cli_usage_error("invalid value '%s' for '--part': I/N needs 1 <= I <= N <= %u",
					       spec, WELD_MAX_PARTS);
	} else {
		slurm = getenv("SLURM_ARRAY_TASK_ID") && *getenv("SLURM_ARRAY_TASK_ID");
		k8s = getenv("JOB_COMPLETION_INDEX") && *getenv("JOB_COMPLETION_INDEX");
		if (slurm) {
			if (slurm_part(&i, &n))
				return EXIT_USAGE;
			if (given && given != n)
				return cli_usage_error("--parts %ld, but the Slurm array has %ld tasks", given, n);
		} else if (k8s) {
			if (!given)
				return cli_usage_error("--part auto from JOB_COMPLETION_INDEX needs --parts N (the job's completions)");
			if (env_long("JOB_COMPLETION_INDEX", 0, given - 1, &k8s, &i))
				return EXIT_USAGE;
			i++;
			n = given;
		} else {
			return cli_usage_error("--part auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set");
		}
	}
	*part = (unsigned)i;
	*parts = (unsigned)n;
	return 0;
}

char *cli_part_output(const char *out, unsigned part, unsigned parts)
{
	size_t len = strlen(out), n;
	char *p;

	while (len > 1 && out[len - 1] == '/')
		len--;
	n = len + 48;
	p = malloc(n);
	if (p)
		snprintf(p, n, "%.*s.part-%u-of-%u", (int)len, out, part, parts);
	return p;
}

bool cli_size(const char *opt, const char *s, uint64_t *out)
{
	if (weld_parse_size(s, out) < 0) {
		cli_usage_error("invalid value '%s' for '%s': not a size (e.g. 512M, 5G)", s, opt);
		return false;
	}
	return true;
}

bool cli_list(const char *opt, const char *s, double *vals, size_t max, size_t *n)
{
	char *copy = strdup(s), *save = NULL, *tok;
	bool ok = copy != NULL;

	*n = 0;
	for (tok = ok ? strtok_r(copy, ",", &save) : NULL; ok && tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n == max) {
			cli_usage_error("too many values for '%s' (at most %zu)", opt, max);
			ok = false;
		} else {
			ok = cli_double(opt, tok, &vals[(*n)++]);
		}
	}
	if (ok && !*n) {
		cli_usage_error("empty list for '%s'", opt);
		ok = false;
	}
	free(copy);
	return ok;
}

bool cli_out_dtype(const char *s, struct weld_merge_opts *o)
{
	int q = weld_ggml_type_parse(s);

	if (q == WELD_GGML_Q8_0 || q == WELD_GGML_Q4_0) {
		o->dtype = WELD_F32;
		o->out_quant = (uint32_t)q;
		return true;
	}
	o->out_quant = 0;
	if (strcmp(s, "fp8") == 0) {
		o->dtype = WELD_F8_E4M3;        /* block-scaled, as the base (DESIGN 6.2) */
		return true;
	}
	if (weld_dtype_parse_output(s, true, &o->dtype) == 0)
		return true;
	cli_usage_error("invalid value '%s' for '--dtype': expected auto, bf16, f16, f32, f64, "
			"fp8, or for a GGUF output q8_0 or q4_0", s);
	return false;
}

bool cli_format(const char *s, int *out)
{
	if (strcmp(s, "safetensors") == 0)
		*out = WELD_FORMAT_SAFETENSORS;
	else if (strcmp(s, "gguf") == 0)
		*out = WELD_FORMAT_GGUF;
	else
		return cli_usage_error("invalid value '%s' for '--format': expected safetensors or gguf",
				       s) == 0;
	return true;
}

bool cli_dtype(const char *s, int *out)
{
	if (weld_dtype_parse_output(s, true, out) == 0)
		return true;
	cli_usage_error("invalid value '%s' for '--dtype': expected auto, bf16, f16, f32 or f64", s);
	return false;
}

static void on_signal(int sig)
{
	/* false: an output is being published, or was, and the merge succeeded */
	if (!weld_writer_cleanup_on_signal(sig))
		return;
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
}

static struct {
	bool active;
	double start, last;
} bar;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress(void *ctx, uint64_t done, uint64_t total)
{
	char a[32], b[32], r[32];
	double t = now(), el, rate;
	int width = 24, fill;

	(void)ctx;
	if (cli_verbosity < 1 || !isatty(STDERR_FILENO))
		return;
	if (!bar.active) {
		bar.active = true;
		bar.start = bar.last = t;
	}
	if (t - bar.last < 0.1 && done < total)
		return;
	bar.last = t;
	el = t - bar.start;
	rate = el > 0 ? (double)done / el : 0;
	fill = total ? (int)((double)width * (double)done / (double)total) : width;
	if (fill > width)
		fill = width;
	weld_format_size(done, a, sizeof(a));
	weld_format_size(total, b, sizeof(b));
	weld_format_size((uint64_t)rate, r, sizeof(r));
	fprintf(stderr, "\r[%.*s%*s] %s / %s  %s/s", fill, "########################",
		width - fill, "", a, b, r);
	if (rate > 0 && done < total) {
		long eta = (long)((double)(total - done) / rate);

		fprintf(stderr, "  ETA %ld:%02ld ", eta / 60, eta % 60);
	} else {
		fprintf(stderr, "            ");
	}
}

void cli_progress_end(void)
{
	if (bar.active) {
		fputs("\r\033[K", stderr);
		bar.active = false;
	}
}

void cli_warn_cb(void *ctx, const char *msg)
{
	(void)ctx;
	cli_warning("%s", msg);
}

void cli_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}
