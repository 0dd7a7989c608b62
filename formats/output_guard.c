/*
 * output_guard.c - may an output path be written (see output_guard.h)?
 */
#include "output_guard.h"
#include "output_parts.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const weld_side_files[] = {
	"generation_config.json", "tokenizer.json", "tokenizer_config.json",
	"special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
	"added_tokens.json", "chat_template.json", "chat_template.jinja",
	"preprocessor_config.json", NULL,
};

/* What weld writes beside the weights besides the side files; *.safetensors
 * and their index are recognised by suffix. */
static const char *const written_files[] = { "config.json", "expert_groups.json",
					      "adapter_config.json", WELD_PART_FILE, NULL };

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool name_in(const char *const *names, const char *name)
{
	for (size_t i = 0; names[i]; i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

bool weld_is_model_folder_file(const char *name)
{
	if (ends_with(name, ".safetensors") || ends_with(name, ".safetensors.index.json"))
		return true;
	return name_in(weld_side_files, name) || name_in(written_files, name);
}

/* Is path a or inside a (both canonical)? */
static bool within(const char *path, const char *a)
{
	size_t n = strlen(a);

	return strncmp(path, a, n) == 0 && (path[n] == 0 || path[n] == '/' || (n == 1 && a[0] == '/'));
}

/* The first entry of folder dir that a model folder does not hold. */
static int check_folder(const char *out, struct weld_error *err)
{
	DIR *d = opendir(out);
	struct dirent *e;
	int r = 0;

	if (!d)
		return weld_fail_errno(err, "cannot read the folder '%s'", out);
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!weld_is_model_folder_file(e->d_name) || e->d_type == DT_DIR)
			r = weld_fail(err, WELD_ERR_EXISTS,
				      "'%s' holds '%s', which is not a model, config or tokenizer file: -f replaces only a model folder",
				      out, e->d_name);
	}
	closedir(d);
	return r;
}

static int check_inputs(const char *out, const char *real_out, const char *const *inputs,
			size_t n, struct weld_error *err)
{
	for (size_t i = 0; i < n; i++) {
		char *in = realpath(inputs[i], NULL);
		int r = 0;

		if (!in)
			continue;       /* opened by path already; nothing to protect here */
		if (within(in, real_out))
			r = weld_fail(err, WELD_ERR_EXISTS, strcmp(in, real_out) == 0
				      ? "'%s' is an input of this merge (%s): -f would delete it"
				      : "'%s' holds the input '%s': -f would delete it", out, inputs[i]);
		else if (within(real_out, in))
			r = weld_fail(err, WELD_ERR_EXISTS,
				      "'%s' is inside the input '%s': -f would delete part of it",
				      out, inputs[i]);
		free(in);
		if (r)
			return r;
	}
	return 0;
}

int weld_output_check(const char *out, bool force, bool single_file,
		      const char *const *inputs, size_t n, struct weld_error *err)
{
	struct stat st;
	char *real_out;
	int r;

	if (!out || !*out)
		return weld_fail(err, WELD_ERR_ARG, "the output path is empty");
	if (lstat(out, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return weld_fail_errno(err, "cannot check the output '%s'", out);
	}
	if (!force)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)", out);
	if (S_ISLNK(st.st_mode))
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' is a symbolic link: -f replaces only a %s", out,
				 single_file ? "regular file" : "model folder");
	if (single_file ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
		return weld_fail(err, WELD_ERR_EXISTS, "'%s' is not a %s: -f replaces only a %s", out,
				 single_file ? "regular file" : "folder",
				 single_file ? "regular file" : "model folder");
	real_out = realpath(out, NULL);
	if (!real_out)
		return weld_fail_errno(err, "cannot resolve the output '%s'", out);
	r = check_inputs(out, real_out, inputs, n, err);
	if (r == 0 && !single_file)
		r = check_folder(out, err);
	free(real_out);
	return r;
}
