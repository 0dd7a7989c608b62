/*
 * zip_dir.h - where the bytes of each zip entry lie: weld's own reading of
 * a zip archive's end records, central directory and local headers
 * (zip_dir.c). libzip reads the same archive too (zip_archive.h) but does
 * not publish an entry's data offset, which pread needs.
 */
#ifndef WELD_ZIP_DIR_H
#define WELD_ZIP_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* One entry of the central directory, with its local header checked. */
struct weld_zip_entry {
	char *name;             /* NUL-free, NUL-terminated */
	uint16_t version;       /* version needed to extract */
	uint16_t flags;
	uint16_t method;        /* 0 stored, 8 deflated, ... */
	uint16_t mtime, mdate;  /* MS-DOS modification time and date */
	uint32_t crc;
	uint64_t csize;         /* compressed size */
	uint64_t usize;         /* uncompressed size */
	uint64_t header;        /* offset of the local header */
	uint64_t data;          /* offset of the first data byte */
};

struct weld_zip_dir {
	struct weld_zip_entry *entries;   /* in central-directory order */
	size_t n;
	const struct weld_zip_entry **by_name;  /* the same entries, sorted by name */
	uint64_t cd_offset;               /* where the central directory starts */
};

/*
 * Read the end records and the central directory of the zip file open as
 * fd (size bytes, called path in messages), and check each entry's local
 * header: signature, header and data inside the file and before the
 * central directory, and the fields a reader of local headers would trust
 * (libzip's consistency check compares them): the same name, method,
 * modification time, CRC and sizes (zero with a data descriptor), a
 * version needed no higher. No encrypted entry, no two entries with one
 * name or overlapping. Returns 0 or -1 (*dir left empty).
 */
int weld_zip_read_dir(int fd, uint64_t size, const char *path,
		      struct weld_zip_dir *dir, struct weld_error *err);
/* The entry called name, or NULL. */
const struct weld_zip_entry *weld_zip_find(const struct weld_zip_dir *dir,
					   const char *name);
/* Free what *dir holds and empty it; NULL is fine. */
void weld_zip_dir_free(struct weld_zip_dir *dir);

#endif
