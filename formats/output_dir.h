/*
 * output_dir.h - the life of an output, whatever writes its files.
 *
 * An output OUT is built in a temporary folder beside it, in OUT's parent
 * folder, whose name is short and new (mkdtemp) whatever OUT is called:
 *
 *   PARENT/.weld-tmp-XXXXXX/          mode 0700, ours alone
 *       owner                         "weld temporary output", OUT's name
 *                                     and the pid; locked (flock) while
 *                                     the process lives
 *       new/                          the output being written: the
 *                                     folder, or the folder of the one
 *                                     file of a single-file output
 *       old                           an existing OUT, moved aside while
 *                                     -f replaces it
 *
 * Calling sequence (output_dir.c):
 *
 *   weld_outdir_init()     refuse an existing output unless forced; remove
 *                          the temporary folders of earlier runs for the
 *                          same OUT whose owner is gone (killed, crashed);
 *                          create the temporary folder and its owner file;
 *                          from now on SIGINT/SIGTERM
 *                          (weld_writer_cleanup_on_signal()) removes it
 *   weld_outdir_add()      name every file the output may come to hold,
 *                          so that a signal handler can remove them
 *                          without allocating (side files: _add_side_files)
 *   weld_outdir_create()   mkdir new/
 *   ... the writer fills its files ...
 *   weld_outdir_copy_side_files()   config.json (edited) and the
 *                          tokenizer/generation files of the source model
 *   weld_outdir_publish()  fsync new/, move an existing OUT into the
 *                          temporary folder (with force), rename new/ to
 *                          OUT, remove the temporary folder, fsync the
 *                          parent. A signal that comes from the first rename
 *                          on does not stop it: the output is published (or
 *                          the old one put back, and the signal then acted
 *                          on), see weld_writer_cleanup_on_signal().
 *   weld_outdir_release()  remove the temporary folder unless published;
 *                          free
 *
 * Every message names OUT as the user gave it (or OUT/<file>), never the
 * temporary folder, except where a file is left there on purpose. A struct
 * weld_outdir is owned by its writer: init fills it, release empties it
 * (release accepts one that init failed to fill).
 */
#ifndef WELD_OUTPUT_DIR_H
#define WELD_OUTPUT_DIR_H

#include "model.h"

/* The temporary folder's name in OUT's parent: this prefix, 6 characters. */
#define WELD_OUTDIR_TMP_PREFIX ".weld-tmp-"

struct weld_outdir {
	char *out;              /* the output path, without trailing '/' */
	char *parent, *base;    /* its folder and its name */
	char *tmp;              /* the temporary folder; NULL once it is not ours */
	char *owner;            /* tmp/owner */
	char *content;          /* tmp/new, what becomes the output */
	char *old;              /* tmp/old, an existing output moved aside */
	char **paths;           /* every file content may hold */
	size_t npaths, cap;
	int owner_fd;           /* holds the lock on owner; -1 if none */
	size_t stale_removed;   /* temporary folders of earlier runs removed */
	bool force;
	bool single_file;       /* the output is the one file in content */
	bool set;               /* the output is the files in content, each
				 * published beside OUT under its own name */
	bool committed;         /* published: nothing left to remove */
	bool keep;              /* tmp holds what must not be removed (old) */
};

/* Fill d for the output `out` (see above); fails (WELD_ERR_EXISTS) if out
 * exists and force is false. */
int weld_outdir_init(struct weld_outdir *d, const char *out, bool force, bool single_file,
		     struct weld_error *err);
/* Fill d for an output that is a set of files published in OUT's folder
 * (a split GGUF model): the files are named by weld_outdir_add(); whether
 * one of them exists is the caller's check (output_guard.h), not init's. */
int weld_outdir_init_set(struct weld_outdir *d, const char *out, bool force,
			 struct weld_error *err);
/* "<content>/<name>" in a new string (caller frees), or NULL when out of memory. */
char *weld_outdir_path(const struct weld_outdir *d, const char *name);
/* How messages call that file: "OUT/<name>", OUT for a single-file
 * output, or the file beside OUT for a set (caller frees), or NULL when
 * out of memory. */
char *weld_outdir_label(const struct weld_outdir *d, const char *name);
/* Name a file the output may hold (before weld_outdir_create()). */
int weld_outdir_add(struct weld_outdir *d, const char *name, struct weld_error *err);
/* Name config.json and the side files weld_outdir_copy_side_files() copies. */
int weld_outdir_add_side_files(struct weld_outdir *d, struct weld_error *err);
/* Create the folder the output is written in. */
int weld_outdir_create(struct weld_outdir *d, struct weld_error *err);

/*
 * Copy config.json (torch_dtype set if not NULL, then edit_config applied
 * if not NULL) and the tokenizer/generation files present in the folder
 * `from` into the output, each fsynced. NULL from: nothing.
 */
int weld_outdir_copy_side_files(struct weld_outdir *d, const char *from,
				const char *torch_dtype,
				int (*edit_config)(void *ctx, void *cjson_root,
						   struct weld_error *err),
				void *edit_config_ctx, struct weld_error *err);

/* Publish the output (see above). For a single-file output, `file` is
 * its path in content (NULL for a folder). */
int weld_outdir_publish(struct weld_outdir *d, const char *file, struct weld_error *err);
/*
 * Publish a set: every file named by weld_outdir_add() is renamed from
 * content to OUT's folder. A file it replaces (force) is first linked
 * into the temporary folder, so that if a rename fails the files already
 * renamed are taken back and the old ones put back: the folder then holds
 * the old set, whole.
 */
int weld_outdir_publish_set(struct weld_outdir *d, struct weld_error *err);
/* Remove the temporary folder and its named files unless published, and
 * free what d holds. */
void weld_outdir_release(struct weld_outdir *d);

/* Write text to a new file at path (called label in messages), fsynced
 * and closed. */
int weld_write_text_file(const char *path, const char *label, const char *text,
			 struct weld_error *err);
/* Copy the regular file from to the new file to (called label in
 * messages), fsynced and closed. */
int weld_copy_file(const char *from, const char *to, const char *label,
		   struct weld_error *err);
/* pwrite exactly n bytes at off, or fail naming the file (label). */
int weld_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *label,
		     struct weld_error *err);

#endif
