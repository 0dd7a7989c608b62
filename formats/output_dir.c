/*
 * output_dir.c - an output is built in a temporary folder beside it and
 * renamed into place only when complete and fsynced (see output_dir.h for
 * the layout and the calling sequence); the side files of a Hugging Face
 * folder (config.json, tokenizer and generation files) are copied from the
 * source model.
 *
 * Temporary folders are found again: each holds an owner file naming the
 * output, locked with flock() while its process lives. A run for an output
 * removes the temporary folders of that output whose lock it can take: their
 * process was killed (SIGKILL, a crash, a reboot) before it could clean up.
 *
 * Signals: folders still under construction are removed by
 * weld_writer_cleanup_on_signal(), which only unlinks names made in
 * advance, so that it is async-signal-safe. A publication is one state of
 * the process (`state`, changed with atomic operations), so that a signal
 * handler running in any thread either removes the folders before a
 * publication begins, or leaves a publication alone and lets it finish.
 */
#include "output_dir.h"
#include "output_guard.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LIVE 4
#define COPY_BUF (1u << 20)
#define OWNER_MAGIC "weld temporary output\n"
#define OWNER_MAX 4096

/* Files copied from the source model when present, besides config.json:
 * the side files of output_guard.c. */
#define copy_names weld_side_files

/* ---------------------------------------------------------------- signals */

enum pub_state {
	PUB_IDLE,       /* a signal removes the temporary folders, then ends us */
	PUB_PUBLISHING, /* a publication is under way: a signal waits for it */
	PUB_DYING,      /* a handler removed the folders: nothing may be published */
	PUB_DONE,       /* published, none under construction: the merge succeeded */
};

/* The temporary folders that exist now, for the signal handler. */
static struct weld_outdir *volatile live[MAX_LIVE];
static int state = PUB_IDLE;
static volatile sig_atomic_t deferred;  /* a signal that came while publishing */

static void set_live(struct weld_outdir *d, struct weld_outdir *value)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i] == (value ? NULL : d)) {
			live[i] = value;
			return;
		}
}

static bool any_live(void)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i])
			return true;
	return false;
}

/* Remove what a temporary folder under construction holds. Async-signal-safe. */
static void remove_tmp(const struct weld_outdir *d)
{
	for (size_t k = 0; k < d->npaths; k++)
		unlink(d->paths[k]);
	rmdir(d->content);
	unlink(d->owner);
	rmdir(d->tmp);
}

bool weld_writer_cleanup_on_signal(int sig)
{
	int st = PUB_IDLE;

	if (__atomic_compare_exchange_n(&state, &st, PUB_DYING, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST) || st == PUB_DYING) {
		for (int i = 0; i < MAX_LIVE; i++)
			if (live[i])
				remove_tmp(live[i]);
		return true;
	}
	deferred = sig;
	return false;
}

int weld_writer_take_deferred_signal(void)
{
	int sig = deferred;

	deferred = 0;
	return sig;
}

/* Enter the publishing state, unless a handler is removing the folders. */
static int begin_publish(const struct weld_outdir *d, struct weld_error *err)
{
	int st = __atomic_load_n(&state, __ATOMIC_SEQ_CST);

	while (st == PUB_IDLE || st == PUB_DONE)
		if (__atomic_compare_exchange_n(&state, &st, PUB_PUBLISHING, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return 0;
	return weld_fail(err, WELD_ERR_INTERRUPTED, "'%s': interrupted", d->out);
}

/*
 * Leave it. The merge has succeeded when this output is published and no
 * other is under construction: a signal that came meanwhile is then kept
 * for weld_writer_take_deferred_signal(). Otherwise it is raised again, and
 * the handler removes what is left.
 */
static void end_publish(bool published)
{
	bool done = published && !any_live();
	int sig;

	__atomic_store_n(&state, done ? PUB_DONE : PUB_IDLE, __ATOMIC_SEQ_CST);
	if (!done && (sig = weld_writer_take_deferred_signal()))
		raise(sig);
}

/* ---------------------------------------------------------------- names */

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

/* d->out without trailing '/', its parent folder and its name. */
static int split_out(struct weld_outdir *d, const char *out, struct weld_error *err)
{
	char *slash;
	size_t l;

	d->out = strdup(out);
	if (!d->out)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	/* "out/" names the folder "out": the temporary folder is its sibling */
	for (l = strlen(d->out); l > 1 && d->out[l - 1] == '/'; l--)
		d->out[l - 1] = 0;
	slash = strrchr(d->out, '/');
	d->base = strdup(slash ? slash + 1 : d->out);
	d->parent = slash == d->out ? strdup("/")
		  : slash ? strndup(d->out, (size_t)(slash - d->out)) : strdup(".");
	if (!d->base || !d->parent)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (!*d->base || !strcmp(d->base, ".") || !strcmp(d->base, ".."))
		return weld_fail(err, WELD_ERR_ARG, "'%s': not a name an output can have", out);
	if (strlen(d->base) > NAME_MAX)
		return weld_fail(err, WELD_ERR_ARG, "'%s': the name is longer than %d bytes",
				 out, NAME_MAX);
	return 0;
}

/* The owner file's text: the magic line, the output's name, the pid. */
static char *owner_text(const struct weld_outdir *d, bool with_pid)
{
	char pid[48];

	snprintf(pid, sizeof(pid), "\npid: %ld\n", with_pid ? (long)getpid() : 0L);
	return join3(OWNER_MAGIC "output: ", d->base, with_pid ? pid : "\npid: ");
}

/* ---------------------------------------------------------------- earlier runs */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(path);
}

/* rm -rf that follows no symbolic link and stays on one file system. */
static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/*
 * Is the temporary folder tmp (a folder, not a link) one of ours for this
 * output whose process is gone? Its owner file must be a regular file that
 * starts with the text of ours, and its lock must be free (its process
 * died); where locks do not work, its pid must be gone. On true, *fd holds
 * the owner file, locked, until the caller closes it.
 */
static bool stale_tmp(const char *tmp, const char *want, int *fd)
{
	char *owner = weld_path_join(tmp, "owner"), buf[OWNER_MAX];
	size_t wl = strlen(want);
	struct stat st;
	ssize_t n;
	long pid;
	int lock_errno;

	*fd = owner ? open(owner, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
	free(owner);
	if (*fd < 0)
		return false;
	n = pread(*fd, buf, sizeof(buf) - 1, 0);
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode) || n < (ssize_t)wl ||
	    memcmp(buf, want, wl) != 0)
		goto no;
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
		return true;
	lock_errno = errno;
	buf[n] = 0;
	pid = strtol(buf + wl, NULL, 10);
	if (lock_errno != EWOULDBLOCK && pid > 0 && pid != (long)getpid() &&
	    kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
no:
	close(*fd);
	*fd = -1;
	return false;
}

/* Remove the temporary folders that earlier runs for this output left. */
static void remove_stale(struct weld_outdir *d)
{
	char *want = owner_text(d, false);
	size_t plen = strlen(WELD_OUTDIR_TMP_PREFIX);
	DIR *dir = want ? opendir(d->parent) : NULL;
	struct dirent *de;

	while (dir && (de = readdir(dir))) {
		char *tmp;
		struct stat st;
		int fd;

		if (strncmp(de->d_name, WELD_OUTDIR_TMP_PREFIX, plen) != 0 ||
		    strlen(de->d_name) != plen + 6)
			continue;
		tmp = weld_path_join(d->parent, de->d_name);
		if (tmp && lstat(tmp, &st) == 0 && S_ISDIR(st.st_mode) &&
		    stale_tmp(tmp, want, &fd)) {
			remove_tree(tmp);
			close(fd);
			d->stale_removed++;
		}
		free(tmp);
	}
	if (dir)
		closedir(dir);
	free(want);
}

/* ---------------------------------------------------------------- the temporary folder */

/*
 * The owner file, written while locked: a run that finds it complete
 * therefore finds it locked, unless its process is gone.
 */
static int write_owner(struct weld_outdir *d, struct weld_error *err)
{
	char *text = owner_text(d, true);
	int r;

	if (!text)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	d->owner_fd = open(d->owner, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (d->owner_fd < 0) {
		free(text);
		return weld_fail_errno(err, "cannot create a temporary folder for '%s' in '%s'",
				       d->out, d->parent);
	}
	(void)flock(d->owner_fd, LOCK_EX | LOCK_NB);    /* none on some file systems */
	r = weld_pwrite_full(d->owner_fd, text, strlen(text), 0, d->owner, err);
	free(text);
	return r;
}

static int make_tmp(struct weld_outdir *d, struct weld_error *err)
{
	char *tmpl = join3(d->parent, "/" WELD_OUTDIR_TMP_PREFIX, "XXXXXX");

	if (!tmpl)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (!mkdtemp(tmpl)) {
		free(tmpl);
		return weld_fail_errno(err, "cannot create a temporary folder for '%s' in '%s'",
				       d->out, d->parent);
	}
	d->tmp = tmpl;
	d->owner = weld_path_join(tmpl, "owner");
	d->content = weld_path_join(tmpl, "new");
	d->old = weld_path_join(tmpl, "old");
	if (!d->owner || !d->content || !d->old) {
		rmdir(tmpl);
		free(d->tmp);
		d->tmp = NULL;
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	set_live(d, d);
	return write_owner(d, err);
}

static int init(struct weld_outdir *d, const char *out, bool force, bool single_file,
		bool set, struct weld_error *err)
{
	struct stat st;
	int st_done = PUB_DONE, sig;

	memset(d, 0, sizeof(*d));
	d->owner_fd = -1;
	d->force = force;
	d->single_file = single_file;
	d->set = set;
	if (split_out(d, out, err) < 0)
		return -1;
	if (!force && !set && lstat(d->out, &st) == 0)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)", out);
	/*
	 * A new output begins: a signal kept since the last one acts now. (A
	 * handler that removed the folders ends the process; a caller that
	 * survives it, a test, starts afresh.)
	 */
	if (__atomic_compare_exchange_n(&state, &st_done, PUB_IDLE, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST) && (sig = weld_writer_take_deferred_signal()))
		raise(sig);
	st_done = PUB_DYING;
	__atomic_compare_exchange_n(&state, &st_done, PUB_IDLE, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_SEQ_CST);
	remove_stale(d);
	return make_tmp(d, err);
}

int weld_outdir_init(struct weld_outdir *d, const char *out, bool force, bool single_file,
		     struct weld_error *err)
{
	return init(d, out, force, single_file, false, err);
}

int weld_outdir_init_set(struct weld_outdir *d, const char *out, bool force,
			 struct weld_error *err)
{
	return init(d, out, force, false, true, err);
}

char *weld_outdir_path(const struct weld_outdir *d, const char *name)
{
	return weld_path_join(d->content, name);
}

char *weld_outdir_label(const struct weld_outdir *d, const char *name)
{
	if (d->set)
		return strcmp(d->parent, ".") ? weld_path_join(d->parent, name) : strdup(name);
	return d->single_file ? strdup(d->out) : weld_path_join(d->out, name);
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
	if (mkdir(d->content, 0755) < 0)
		return weld_fail_errno(err, "cannot create a temporary folder for '%s' in '%s'",
				       d->out, d->tmp);
	return 0;
}

void weld_outdir_release(struct weld_outdir *d)
{
	if (!d)
		return;
	/* removed before the handler forgets it: a signal in between finds it */
	if (d->tmp && !d->committed && !d->keep)
		remove_tmp(d);
	set_live(d, NULL);
	if (d->owner && d->owner_fd >= 0)
		close(d->owner_fd);
	for (size_t i = 0; i < d->npaths; i++)
		free(d->paths[i]);
	free(d->paths);
	free(d->out);
	free(d->parent);
	free(d->base);
	free(d->tmp);
	free(d->owner);
	free(d->content);
	free(d->old);
	memset(d, 0, sizeof(*d));
	d->owner_fd = -1;
}

/* ---------------------------------------------------------------- files */

int weld_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *label,
		     struct weld_error *err)
{
	const char *p = buf;

	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return weld_fail_errno(err, "write to '%s' failed", label);
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int weld_write_text_file(const char *path, const char *label, const char *text,
			 struct weld_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return weld_fail_errno(err, "cannot create '%s'", label);
	r = weld_pwrite_full(fd, text, strlen(text), 0, label, err);
	if (!r && fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", label);
	if (close(fd) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", label);
	return r;
}

int weld_copy_file(const char *from, const char *to, const char *label,
		     struct weld_error *err)
{
	int in = weld_open_regular(from, NULL, err), out = -1, r = 0;
	char *buf = NULL;
	uint64_t off = 0;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	buf = malloc(COPY_BUF);
	if (out < 0 || !buf) {
		r = out < 0 ? weld_fail_errno(err, "cannot create '%s'", label)
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
		if ((r = weld_pwrite_full(out, buf, (size_t)got, off, label, err)) < 0)
			break;
		off += (uint64_t)got;
	}
	if (!r && fsync(out) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", label);
out:
	free(buf);
	if (out >= 0 && close(out) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", label);
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
static int write_config(const char *src, const char *dst, const char *label,
			const char *torch_dtype,
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
	r = weld_write_text_file(dst, label, outp, err);
out:
	cJSON_Delete(root);
	free(outp);
	free(text);
	return r;
}

/* Copy from/name into the output when it is there (config.json: edited). */
static int copy_side_file(struct weld_outdir *d, const char *from, const char *name,
			  const char *torch_dtype,
			  int (*edit_config)(void *, void *, struct weld_error *), void *ctx,
			  struct weld_error *err)
{
	char *src = weld_path_join(from, name), *dst = weld_outdir_path(d, name);
	char *label = weld_outdir_label(d, name);
	bool config = strcmp(name, "config.json") == 0;
	struct stat st;
	int r = 0;

	if (!src || !dst || !label)
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	else if (stat(src, &st) < 0 || (!config && !S_ISREG(st.st_mode)))
		r = 0;  /* not there, or nothing to copy */
	else if (config)
		r = write_config(src, dst, label, torch_dtype, edit_config, ctx, err);
	else
		r = weld_copy_file(src, dst, label, err);
	free(label);
	free(dst);
	free(src);
	return r;
}

int weld_outdir_copy_side_files(struct weld_outdir *d, const char *from,
				const char *torch_dtype,
				int (*edit_config)(void *ctx, void *cjson_root,
						   struct weld_error *err),
				void *edit_config_ctx, struct weld_error *err)
{
	int r;

	if (!from)
		return 0;
	r = copy_side_file(d, from, "config.json", torch_dtype, edit_config, edit_config_ctx,
			   err);
	for (size_t k = 0; !r && copy_names[k]; k++)
		r = copy_side_file(d, from, copy_names[k], NULL, NULL, NULL, err);
	return r;
}

/* ---------------------------------------------------------------- publication */

/* fsync the folder path; what says what it is in messages. */
static int fsync_dir(const char *path, const char *what, const char *out,
		     struct weld_error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return weld_fail_errno(err, "cannot open %s'%s'", what, out);
	if (fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of %s'%s' failed", what, out);
	close(fd);
	return r;
}

/*
 * Move an existing output into the temporary folder (-f): it stays whole
 * until the new one is in place. *moved tells whether there was one.
 */
static int move_old_aside(struct weld_outdir *d, bool *moved, struct weld_error *err)
{
	struct stat st;

	*moved = false;
	if (lstat(d->out, &st) < 0)
		return 0;
	if (!d->force)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)",
				 d->out);
	if (d->single_file && !S_ISDIR(st.st_mode))
		return 0;       /* rename() replaces a file at once */
	if (rename(d->out, d->old) < 0)
		return weld_fail_errno(err, "cannot move the existing '%s' aside", d->out);
	*moved = true;
	return 0;
}

/* Rename the new output (what: content or the file in it) to d->out. */
static int put_in_place(struct weld_outdir *d, const char *what, bool moved,
			struct weld_error *err)
{
	int saved;

	if (rename(what, d->out) == 0)
		return 0;
	saved = errno;
	if (moved && rename(d->old, d->out) < 0) {
		d->keep = true;         /* the old output is there: never remove it */
		errno = saved;
		return weld_fail_errno(err, "cannot rename the new output to '%s', and the "
				       "old one could not be put back: it is in '%s'", d->out,
				       d->old);
	}
	errno = saved;
	return weld_fail_errno(err, "cannot rename the new output to '%s'", d->out);
}

/* After publication: the old output, the owner file, the temporary folder. */
static void remove_leftovers(struct weld_outdir *d, bool moved)
{
	if (moved)
		remove_tree(d->old);
	if (d->single_file)
		rmdir(d->content);
	unlink(d->owner);
	rmdir(d->tmp);
}

int weld_outdir_publish(struct weld_outdir *d, const char *file, struct weld_error *err)
{
	const char *what = file ? file : d->content;
	bool moved = false;
	int r;

	if (!file && fsync_dir(d->content, "", d->out, err) < 0)
		return -1;
	if (begin_publish(d, err) < 0)
		return -1;
	if (move_old_aside(d, &moved, err) < 0 || put_in_place(d, what, moved, err) < 0) {
		end_publish(false);
		return -1;
	}
	d->committed = true;
	set_live(d, NULL);
	remove_leftovers(d, moved);
	r = fsync_dir(d->parent, "the folder that holds ", d->out, err);
	end_publish(true);
	return r;
}

/* ---------------------------------------------------------------- sets */

/* The file k of a set: its final path, and where it is kept while
 * replaced ("old/<name>"). */
static char *set_final(const struct weld_outdir *d, size_t k)
{
	return weld_path_join(d->parent, strrchr(d->paths[k], '/') + 1);
}

static char *set_kept(const struct weld_outdir *d, size_t k)
{
	return weld_path_join(d->old, strrchr(d->paths[k], '/') + 1);
}

/* Undo the first n renames of a set: take each new file back, put the
 * kept old one (if any) in its place. */
static void unpublish_set(struct weld_outdir *d, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		char *fin = set_final(d, k), *kept = set_kept(d, k);
		struct stat st;

		if (fin && kept) {
			if (rename(fin, d->paths[k]) < 0)
				unlink(fin);
			if (lstat(kept, &st) == 0 && rename(kept, fin) < 0)
				d->keep = true;
		}
		free(fin);
		free(kept);
	}
}

/* Keep a link to every file the set replaces, in old/. */
static int keep_replaced(struct weld_outdir *d, struct weld_error *err)
{
	bool made = false;

	for (size_t k = 0; k < d->npaths; k++) {
		char *fin = set_final(d, k), *kept = set_kept(d, k);
		struct stat st;
		int r = 0;

		if (!fin || !kept)
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		else if (lstat(fin, &st) < 0)
			;
		else if (!d->force)
			r = weld_fail(err, WELD_ERR_EXISTS,
				      "'%s' already exists; not overwritten (use -f to replace it)",
				      fin);
		else if (!made && mkdir(d->old, 0700) < 0)
			r = weld_fail_errno(err, "cannot keep the existing '%s' aside", fin);
		else if ((made = true, link(fin, kept) < 0))
			r = weld_fail_errno(err, "cannot keep the existing '%s' aside", fin);
		free(fin);
		free(kept);
		if (r < 0)
			return -1;
	}
	return 0;
}

int weld_outdir_publish_set(struct weld_outdir *d, struct weld_error *err)
{
	size_t k = 0;
	int r;

	if (begin_publish(d, err) < 0)
		return -1;
	if (keep_replaced(d, err) < 0)
		goto fail;
	for (; k < d->npaths; k++) {
		char *fin = set_final(d, k);

		r = fin ? rename(d->paths[k], fin) : -1;
		if (r < 0) {
			r = fin ? weld_fail_errno(err, "cannot rename the new output to '%s'", fin)
				: weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			free(fin);
			goto fail;
		}
		free(fin);
	}
	d->committed = true;
	set_live(d, NULL);
	remove_tree(d->old);
	rmdir(d->content);
	unlink(d->owner);
	rmdir(d->tmp);
	r = fsync_dir(d->parent, "the folder that holds ", d->out, err);
	end_publish(true);
	return r;
fail:
	unpublish_set(d, k);
	if (!d->keep)
		remove_tree(d->old);
	end_publish(false);
	return -1;
}
