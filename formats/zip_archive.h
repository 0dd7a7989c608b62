/*
 * zip_archive.h - a zip archive read twice, and the two readings held to
 * agree (zip_archive.c):
 *
 *  - weld's walker (zip_dir.h) finds where each entry's bytes lie, so that
 *    stored entries can be read by byte range with pread;
 *  - libzip opens the same archive on its own, through the same descriptor
 *    (read with pread, never seeked), with its consistency checks
 *    (ZIP_CHECKCONS: end records, central directory, every local header),
 *    and reads entries whole: it inflates compressed entries and checks the
 *    CRC of whatever it reads.
 *
 * The two must list the same entries in the same order, with the same
 * name, compression method, sizes and CRC: a zip that two readers see
 * differently is refused, naming the entry and the field.
 */
#ifndef WELD_ZIP_ARCHIVE_H
#define WELD_ZIP_ARCHIVE_H

#include "zip_dir.h"

struct zip;                     /* libzip's zip_t */
struct weld_zip_source;

struct weld_zip {
	struct weld_zip_dir dir;        /* weld's reading */
	struct zip *za;                 /* libzip's, open until weld_zip_close() */
	struct weld_zip_source *src;
	const char *path;               /* borrowed, for messages */
};

/*
 * Open the zip file open as fd (size bytes, called path in messages):
 * weld's walker first (its messages are the precise ones), then libzip,
 * then the comparison of the two. fd stays the caller's. Returns 0 or -1
 * (z then needs no weld_zip_close(), which accepts it anyway).
 */
int weld_zip_open(struct weld_zip *z, int fd, uint64_t size, const char *path,
		  struct weld_error *err);

/*
 * The whole of entry e (an entry of z->dir), stored or deflated, read by
 * libzip into a new buffer (caller frees *out): exactly e->usize bytes,
 * refused if that is more than cap, CRC checked.
 */
int weld_zip_read(struct weld_zip *z, const struct weld_zip_entry *e, uint64_t cap,
		  unsigned char **out, struct weld_error *err);

/*
 * Inflate entry e through libzip into the file open as fd, at offset off
 * (to names it in messages): exactly e->usize bytes, never more, CRC
 * checked. Memory: one buffer of 1 MiB. The caller bounds e->usize first
 * (a zip bomb declares a small size, or a size its data cannot reach).
 */
int weld_zip_extract(struct weld_zip *z, const struct weld_zip_entry *e, int fd,
		     uint64_t off, const char *to, struct weld_error *err);

/* Close libzip's reading and free both; NULL or an unopened z is fine. */
void weld_zip_close(struct weld_zip *z);

#endif
