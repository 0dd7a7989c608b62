/*
 * output_dir.c - an output folder is built in a temporary folder beside it
 * and renamed into place only when complete and fsynced (see
 * output_dir.h for the calling sequence); the side files of a Hugging Face
 * folder (config.json, tokenizer and generation files) are copied from the
 * source model. Folders still under construction are removed by
 * weld_writer_cleanup_on_signal(), which only unlinks names made in
 * advance, so that it is async-signal-safe.
 */
#include "output_dir.h"
#include "output_guard.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LIVE 4
#define COPY_BUF (1u << 20)

/* Files copied from the source model when present, besides config.json:
 * the side files of output_guard.c. */
#define copy_names weld_side_files

/* The temporary folders that exist now, for the signal handler. */
static struct weld_outdir *volatile live[MAX_LIVE];

/* a + sep + b, malloc'd. */
static char *join3(const char *a, const char *sep, const char *b)
{
	size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
	char *p = malloc(la + ls + lb + 1);

	if (p) {
		memcpy(p, a, la);
		memcpy(p + la, sep, ls);
		memcpy(p + la + ls, b, lb + 1);
	}
	return p;
}

static void set_live(struct weld_outdir *d, struct weld_outdir *value)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i] == (value ? NULL : d)) {
			live[i] = value;
			return;
		}
}

void weld_writer_cleanup_on_signal(void)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		struct weld_outdir *d = live[i];

		if (!d)
			continue;
		for (size_t k = 0; k < d->npaths; k++)
			unlink(d->paths[k]);
		rmdir(d->tmp);
	}
}

/* ---------------------------------------------------------------- the temporary folder */

int weld_outdir_init(struct weld_outdir *d, const char *out, bool force,
		     struct weld_error *err)
{
	struct stat st;
	char pid[32];

	memset(d, 0, sizeof(*d));
	if (!force && lstat(out, &st) == 0)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)", out);
	d->force = force;
	d->out = strdup(out);
	if (!d->out)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	/* "out/" names the folder "out": the temporary folder and the folder
	 * moved aside are its siblings, never inside it. */
	for (size_t l = strlen(d->out); l > 1 && d->out[l - 1] == '/'; l--)
		d->out[l - 1] = 0;
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	d->tmp = join3(d->out, ".weld-tmp-", pid);
	if (!d->tmp)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	return 0;
}

char *weld_outdir_path(const struct weld_outdir *d, const char *name)
{
	return weld_path_join(d->tmp, name);
}

int weld_outdir_add(struct weld_outdir *d, const char *name, struct weld_error *err)
{
	char *p;

	if (d->npaths == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		char **np = realloc(d->paths, cap * sizeof(*np));

		if (!np)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		d->paths = np;
		d->cap = cap;
	}
	p = weld_outdir_path(d, name);
	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	d->paths[d->npaths++] = p;
	return 0;
}

int weld_outdir_add_side_files(struct weld_outdir *d, struct weld_error *err)
{
	if (weld_outdir_add(d, "config.json", err) < 0)
		return -1;
	for (size_t k = 0; copy_names[k]; k++)
		if (weld_outdir_add(d, copy_names[k], err) < 0)
			return -1;
	return 0;
}

int weld_outdir_create(struct weld_outdir *d, struct weld_error *err)
{
	if (mkdir(d->tmp, 0755) < 0) {
		weld_fail_errno(err, "cannot create '%s'", d->tmp);
		free(d->tmp);
		d->tmp = NULL;	/* not ours: never remove it */
		return -1;
	}
	set_live(d, d);
	return 0;
}

void weld_outdir_release(struct weld_outdir *d)
{
	if (!d)
		return;
	if (!d->committed && d->tmp) {
		for (size_t i = 0; i < d->npaths; i++)
			unlink(d->paths[i]);
		rmdir(d->tmp);
	}
	set_live(d, NULL);
	for (size_t i = 0; i < d->npaths; i++)
		free(d->paths[i]);
	free(d->paths);
	free(d->out);
	free(d->tmp);
	free(d->old);
	memset(d, 0, sizeof(*d));
}

/* ---------------------------------------------------------------- files */

int weld_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *path,
		     struct weld_error *err)
{
	const char *p = buf;

	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return weld_fail_errno(err, "write to '%s' failed", path);
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int weld_write_text_file(const char *path, const char *text, struct weld_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return weld_fail_errno(err, "cannot create '%s'", path);
	r = weld_pwrite_full(fd, text, strlen(text), 0, path, err);
	if (!r && fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", path);
	if (close(fd) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", path);
	return r;
}

static int copy_file(const char *from, const char *to, struct weld_error *err)
{
	int in = weld_open_regular(from, NULL, err), out = -1, r = 0;
	char *buf = NULL;
	uint64_t off = 0;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	buf = malloc(COPY_BUF);
	if (out < 0 || !buf) {
		r = out < 0 ? weld_fail_errno(err, "cannot create '%s'", to)
			    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t got = read(in, buf, COPY_BUF);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = weld_fail_errno(err, "read of '%s' failed", from);
			break;
		}
		if (got == 0)
			break;
		if ((r = weld_pwrite_full(out, buf, (size_t)got, off, to, err)) < 0)
			break;
		off += (uint64_t)got;
	}
	if (!r && fsync(out) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", to);
out:
	free(buf);
	if (out >= 0 && close(out) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", to);
	close(in);
	return r;
}

/* JSON text with a final newline, as transformers writes it (caller frees). */
static char *print_json(const cJSON *root)
{
	char *text = cJSON_Print(root), *t2;
	size_t l;

	if (!text)
		return NULL;
	l = strlen(text);
	t2 = realloc(text, l + 2);
	if (t2) {
		text = t2;
		memcpy(text + l, "\n", 2);
	}
	return text;
}

/* config.json of the source model, torch_dtype set and edited, to dst. */
static int write_config(const char *src, const char *dst, const char *torch_dtype,
			int (*edit_config)(void *, void *, struct weld_error *), void *ctx,
			struct weld_error *err)
{
	char *text = NULL, *outp = NULL;
	cJSON *root = NULL;
	int r = -1;

	if (weld_read_small_file(src, WELD_CONFIG_MAX_BYTES, &text, NULL, err) < 0)
		goto out;
	root = cJSON_Parse(text);
	if (!cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", src);
		goto out;
	}
	if (torch_dtype) {
		cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
		cJSON_AddStringToObject(root, "torch_dtype", torch_dtype);
	}
	if (edit_config && edit_config(ctx, root, err) < 0)
		goto out;
	outp = print_json(root);
	if (!outp) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	r = weld_write_text_file(dst, outp, err);
out:
	cJSON_Delete(root);
	free(outp);
	free(text);
	return r;
}

int weld_outdir_copy_side_files(struct weld_outdir *d, const char *from,
				const char *torch_dtype,
				int (*edit_config)(void *ctx, void *cjson_root,
						   struct weld_error *err),
				void *edit_config_ctx, struct weld_error *err)
{
	struct stat st;
	char *src, *dst;
	int r = 0;

	if (!from)
		return 0;
	src = weld_path_join(from, "config.json");
	dst = weld_outdir_path(d, "config.json");
	if (!src || !dst)
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	else if (stat(src, &st) == 0)
		r = write_config(src, dst, torch_dtype, edit_config, edit_config_ctx, err);
	free(src);
	free(dst);
	for (size_t k = 0; !r && copy_names[k]; k++) {
		char *f = weld_path_join(from, copy_names[k]);
		char *t = weld_outdir_path(d, copy_names[k]);

		if (!f || !t)
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		else if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
			r = copy_file(f, t, err);
		free(f);
		free(t);
	}
	return r;
}

/* ---------------------------------------------------------------- publication */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(path);
}

/* rm -rf of the folder weld replaced (with -f). */
static void remove_old(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_dir(const char *path, struct weld_error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return weld_fail_errno(err, "cannot open folder '%s'", path);
	if (fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of folder '%s' failed", path);
	close(fd);
	return r;
}

/* fsync the folder holding path (its last component removed). */
static int fsync_parent(const char *path, struct weld_error *err)
{
	char *parent = strdup(path), *slash;
	int r;

	if (!parent)
		return 0;
	slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(parent, ".");
	r = fsync_dir(parent, err);
	free(parent);
	return r;
}

int weld_outdir_publish(struct weld_outdir *d, struct weld_error *err)
{
	struct stat st;
	int r;

	if (fsync_dir(d->tmp, err) < 0)
		return -1;
	if (lstat(d->out, &st) == 0) {
		if (!d->force)
			return weld_fail(err, WELD_ERR_EXISTS,
					 "'%s' already exists; not overwritten (use -f to replace it)",
					 d->out);
		d->old = join3(d->out, ".weld-old-", strrchr(d->tmp, '-') + 1);
		if (!d->old)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (rename(d->out, d->old) < 0)
			return weld_fail_errno(err, "cannot move '%s' aside", d->out);
	}
	if (rename(d->tmp, d->out) < 0) {
		r = weld_fail_errno(err, "cannot rename '%s' to '%s'", d->tmp, d->out);
		if (d->old)
			rename(d->old, d->out);
		return r;
	}
	d->committed = true;
	set_live(d, NULL);
	if (d->old) {
		if (S_ISDIR(st.st_mode))
			remove_old(d->old);
		else
			unlink(d->old);
	}
	return fsync_parent(d->out, err);
}

int weld_outdir_publish_file(struct weld_outdir *d, const char *path,
			     struct weld_error *err)
{
	struct stat st;

	if (!d->force && lstat(d->out, &st) == 0)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)",
				 d->out);
	if (rename(path, d->out) < 0)
		return weld_fail_errno(err, "cannot rename '%s' to '%s'", path, d->out);
	d->committed = true;
	set_live(d, NULL);
	rmdir(d->tmp);
	return 0;
}
