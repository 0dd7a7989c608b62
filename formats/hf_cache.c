/*
 * hf_cache.c - find a model of the local Hugging Face cache by name:
 * `org/model[@revision]` -> <cache>/models--org--model/snapshots/<hash>.
 *
 * Nothing read from the cache is trusted to stay inside it: a revision or
 * the hash a ref file holds is used only when it has no '/' and no "..".
 * The cache's folder follows the hub library's environment rules
 * ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), and
 * every failure says which of them chose the folder looked at.
 */
#include "hf_cache.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The cache folder, and how it was chosen (for messages). */
static char *cache_dir(const char **how)
{
	const char *v = getenv("HF_HUB_CACHE");

	if (v && *v) {
		*how = "$HF_HUB_CACHE";
		return strdup(v);
	}
	v = getenv("HF_HOME");
	if (v && *v) {
		*how = "$HF_HOME/hub";
		return weld_path_join(v, "hub");
	}
	v = getenv("HOME");
	*how = "~/.cache/huggingface/hub; $HF_HUB_CACHE and $HF_HOME are unset";
	return weld_path_join(v && *v ? v : ".", ".cache/huggingface/hub");
}

/* The length of ref's name part; *rev gets what follows its last '@', or
 * NULL when no revision follows it ("org/model@" has none). */
static size_t split_ref(const char *ref, const char **rev)
{
	const char *at = strrchr(ref, '@');

	if (at && at[1]) {
		*rev = at + 1;
		return (size_t)(at - ref);
	}
	*rev = NULL;
	return strlen(ref);
}

/* The n bytes at s are "model" or "org/model" made of letters, digits,
 * '-', '_' and '.'. */
static bool repo_like(const char *s, size_t n)
{
	const char *part = s, *end = s + n;
	int slashes = 0;

	if (!n)
		return false;
	for (const char *c = s;; c++) {
		if (c == end || *c == '/') {
			size_t len = (size_t)(c - part);

			if (len == 0 || (len == 1 && part[0] == '.') ||
			    (len == 2 && !strncmp(part, "..", 2)))
				return false;
			if (c == end)
				break;
			if (++slashes > 1)
				return false;
			part = c + 1;
			continue;
		}
		if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
		      (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
			return false;
	}
	return true;
}

bool weld_hf_is_name(const char *ref)
{
	const char *rev;

	return repo_like(ref, split_ref(ref, &rev));
}

/* The snapshot folder a ref names (refs/<ref>, a regular file, holds a
 * commit hash). */
static char *read_ref(const char *repo_dir, const char *ref)
{
	char *path, *snap = NULL, *buf = NULL;
	size_t n = 0;
	int r;

	if (strstr(ref, "..") || strchr(ref, '/'))
		return NULL;
	path = weld_strfmt("%s/refs/%s", repo_dir, ref);
	if (!path)
		return NULL;
	r = weld_read_small_file(path, 127, &buf, &n, NULL);
	free(path);
	if (r < 0)
		return NULL;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = 0;
	path = n == 0 || strlen(buf) != n || strchr(buf, '/') || strstr(buf, "..") ? NULL
		: weld_strfmt("%s/snapshots/%s", repo_dir, buf);
	free(buf);
	if (!path)
		return NULL;
	if (is_dir(path))
		snap = path;
	else
		free(path);
	return snap;
}

/* The newest snapshot (by modification time, then name). */
static char *newest_snapshot(const char *repo_dir)
{
	char *snaps = weld_path_join(repo_dir, "snapshots"), *best = NULL;
	struct timespec best_t = { 0, 0 };
	struct dirent *e;
	DIR *d;

	if (!snaps)
		return NULL;
	d = opendir(snaps);
	while (d && (e = readdir(d))) {
		char *p;
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		p = weld_path_join(snaps, e->d_name);
		if (!p)
			break;
		if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) &&
		    (!best || st.st_mtim.tv_sec > best_t.tv_sec ||
		     (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec > best_t.tv_nsec) ||
		     (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec == best_t.tv_nsec &&
		      strcmp(p, best) > 0))) {
			free(best);
			best = p;
			best_t = st.st_mtim;
		} else {
			free(p);
		}
	}
	if (d)
		closedir(d);
	free(snaps);
	return best;
}

/* The snapshot of repo_dir that rev names (NULL: refs/main, else the
 * newest), or NULL with err filled. */
static char *find_snapshot(const char *repo_dir, const char *rev, struct weld_error *err)
{
	char *snap = read_ref(repo_dir, rev ? rev : "main");

	if (!snap && rev && !strchr(rev, '/') && !strstr(rev, "..")) {
		char *p = weld_strfmt("%s/snapshots/%s", repo_dir, rev);

		if (p) {
			if (is_dir(p))
				snap = p;
			else
				free(p);
		}
	}
	if (!snap && !rev)
		snap = newest_snapshot(repo_dir);
	if (!snap && rev)
		weld_fail(err, WELD_ERR_ARG, "revision '%s' is neither a ref ('%s/refs/%s') nor a snapshot ('%s/snapshots/%s') in the Hugging Face cache",
			  rev, repo_dir, rev, repo_dir, rev);
	else if (!snap)
		weld_fail(err, WELD_ERR_ARG, "'%s' in the Hugging Face cache holds no snapshot", repo_dir);
	return snap;
}

/* <cache>/models--org--model for the n bytes of "org/model" at name (caller
 * frees), or NULL. */
static char *repo_folder(const char *cache, const char *name, size_t n)
{
	const char *slash = memchr(name, '/', n);

	if (!slash)
		return weld_strfmt("%s/models--%.*s", cache, (int)n, name);
	return weld_strfmt("%s/models--%.*s--%.*s", cache, (int)(slash - name), name,
		      (int)(n - (size_t)(slash - name) - 1), slash + 1);
}

int weld_hf_snapshot(const char *ref, char **out, struct weld_error *err)
{
	const char *how, *rev;
	size_t n = split_ref(ref, &rev);
	char *cache, *repo_dir = NULL, *snap = NULL;
	int ret = -1;

	*out = NULL;
	if (!repo_like(ref, n))
		return weld_fail(err, WELD_ERR_ARG, "'%s' is not a Hugging Face model name", ref);
	cache = cache_dir(&how);
	repo_dir = cache ? repo_folder(cache, ref, n) : NULL;
	if (!repo_dir) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!is_dir(repo_dir)) {
		weld_fail(err, WELD_ERR_ARG, "not in the Hugging Face cache: no folder '%s' (%s)",
			  repo_dir, how);
		goto out;
	}
	snap = find_snapshot(repo_dir, rev, err);
	if (!snap)
		goto out;
	*out = realpath(snap, NULL);
	if (!*out)
		weld_fail_errno(err, "cannot resolve '%s'", snap);
	else
		ret = 0;
out:
	free(snap);
	free(repo_dir);
	free(cache);
	return ret;
}
