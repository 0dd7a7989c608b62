/*
 * output_dir.h - the life of an output folder, whatever writes its files.
 *
 * Calling sequence (output_dir.c):
 *
 *   weld_outdir_init()     refuse an existing output unless forced; name
 *                          the temporary folder "<out>.weld-tmp-<pid>",
 *                          beside the output, never inside it
 *   weld_outdir_add()      name every file the folder may come to hold,
 *                          so that a signal handler can remove them
 *                          without allocating (side files: _add_side_files)
 *   weld_outdir_create()   mkdir the folder; from now on SIGINT/SIGTERM
 *                          (weld_writer_cleanup_on_signal()) removes it
 *   ... the writer fills its files ...
 *   weld_outdir_copy_side_files()   config.json (edited) and the
 *                          tokenizer/generation files of the source model
 *   weld_outdir_publish()  fsync the folder, move an existing output aside
 *                          (with force), rename the folder into place,
 *                          remove the old one, fsync the parent
 *   weld_outdir_release()  remove the folder unless published; free
 *
 * A struct weld_outdir is owned by its writer: init fills it, release
 * empties it (release accepts one that init failed to fill).
 */
#ifndef WELD_OUTPUT_DIR_H
#define WELD_OUTPUT_DIR_H

#include "model.h"

struct weld_outdir {
	char *out;              /* the output path, without trailing '/' */
	char *tmp;              /* the temporary folder; NULL once it is not ours */
	char *old;              /* an existing output, moved aside while replacing */
	char **paths;           /* every file the temporary folder may hold */
	size_t npaths, cap;
	bool force;
	bool committed;         /* published: nothing left to remove */
};

/* Fill d for the output `out`; fails (WELD_ERR_EXISTS) if out exists and
 * force is false. */
int weld_outdir_init(struct weld_outdir *d, const char *out, bool force,
		     struct weld_error *err);
/* "<tmp>/<name>" in a new string (caller frees), or NULL when out of memory. */
char *weld_outdir_path(const struct weld_outdir *d, const char *name);
/* Name a file the temporary folder may hold (before weld_outdir_create()). */
int weld_outdir_add(struct weld_outdir *d, const char *name, struct weld_error *err);
/* Name config.json and the side files weld_outdir_copy_side_files() copies. */
int weld_outdir_add_side_files(struct weld_outdir *d, struct weld_error *err);
/* Create the temporary folder and register it for signal cleanup. */
int weld_outdir_create(struct weld_outdir *d, struct weld_error *err);

/*
 * Copy config.json (torch_dtype set if not NULL, then edit_config applied
 * if not NULL) and the tokenizer/generation files present in the folder
 * `from` into the temporary folder, each fsynced. NULL from: nothing.
 */
int weld_outdir_copy_side_files(struct weld_outdir *d, const char *from,
				const char *torch_dtype,
				int (*edit_config)(void *ctx, void *cjson_root,
						   struct weld_error *err),
				void *edit_config_ctx, struct weld_error *err);

/* fsync the temporary folder and rename it to the output (see above). */
int weld_outdir_publish(struct weld_outdir *d, struct weld_error *err);
/* Single-file output: rename the file `path` (inside the temporary
 * folder) to the output, and remove the folder. */
int weld_outdir_publish_file(struct weld_outdir *d, const char *path,
			     struct weld_error *err);
/* Remove the temporary folder and its named files unless published, and
 * free what d holds. */
void weld_outdir_release(struct weld_outdir *d);

/* Write text to a new file at path, fsynced and closed. */
int weld_write_text_file(const char *path, const char *text, struct weld_error *err);
/* pwrite exactly n bytes at off, or fail naming the file. */
int weld_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *path,
		     struct weld_error *err);

#endif
