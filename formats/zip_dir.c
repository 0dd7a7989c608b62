/*
 * zip_dir.c - the end records, central directory and local headers of a zip
 * archive, read with pread and checked field by field, so that each
 * entry's data can later be read by byte range:
 *
 *   ... entries ... | central directory | [zip64 EOCD | zip64 locator] | EOCD
 *
 *   local header   (30 + name + extra): sig 0x04034b50, +6 flags, +8 method,
 *                  +26 name length, +28 extra length
 *   central header (46 + name + extra + comment): sig 0x02014b50, +8 flags,
 *                  +10 method, +16 crc, +20 csize, +24 usize, +28 name length,
 *                  +30 extra length, +32 comment length, +42 local offset;
 *                  0xffffffff sizes/offset are in the zip64 extra (id 1)
 *   EOCD           (22 + comment): sig 0x06054b50, +10 entries, +12 cd size,
 *                  +16 cd offset, +20 comment length
 *   zip64 locator  (20): sig 0x07064b50, +8 offset of the zip64 EOCD
 *   zip64 EOCD     (56+): sig 0x06064b50, +32 entries, +40 cd size, +48 cd offset
 *
 * Sizes and offsets come from the central directory; a local header only
 * gives where the data begins (torch sets bit 3, data descriptor, so its
 * local sizes are zero).
 */
#include "zip_dir.h"

#include <stdlib.h>
#include <string.h>

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP_LOCAL_SIZE 30u
#define ZIP_CENTRAL_SIZE 46u
#define ZIP_EOCD_SIZE 22u
#define ZIP64_LOCATOR_SIZE 20u
#define ZIP64_EOCD_SIZE 56u
#define ZIP_MAX_COMMENT 65535u
/* A central directory of 100k tensors is ~10 MB: this cap is far above it. */
#define MAX_CENTRAL_DIR (512ull << 20)

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
/* ---------------------------------------------------------------- end records */

struct zip_end {
	uint64_t entries, cd_size, cd_offset;
	uint64_t records_start;  /* first byte of the zip64 EOCD or EOCD */
};

/*
 * Find the EOCD among the last 22 + 65535 bytes: the last signature whose
 * comment length reaches exactly the end of the file.
 */
static int find_eocd(int fd, uint64_t size, const char *path, struct zip_end *z,
		     unsigned char *eocd, struct weld_error *err)
{
	size_t tail = size < ZIP_EOCD_SIZE + ZIP_MAX_COMMENT ? (size_t)size
		: ZIP_EOCD_SIZE + ZIP_MAX_COMMENT;
	unsigned char *buf;

	if (size < ZIP_EOCD_SIZE)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': not a zip archive: %llu bytes",
				 path, (unsigned long long)size);
	buf = malloc(tail);
	if (!buf)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_pread_full(fd, buf, tail, size - tail, path, err) < 0) {
		free(buf);
		return -1;
	}
	for (size_t i = tail - ZIP_EOCD_SIZE + 1; i-- > 0;) {
		if (le32(buf + i) == ZIP_EOCD_SIG &&
		    i + ZIP_EOCD_SIZE + le16(buf + i + 20) == tail) {
			memcpy(eocd, buf + i, ZIP_EOCD_SIZE);
			z->records_start = size - tail + i;
			free(buf);
			return 0;
		}
	}
	free(buf);
	return weld_fail(err, WELD_ERR_FORMAT, "'%s': not a zip archive or truncated: no end "
			 "of central directory record", path);
}

/*
 * The zip64 end record the locator at loc_at points to, if there is a
 * locator: its counts and offsets replace the EOCD's. Returns 1 if found,
 * 0 if there is no locator, -1 on error.
 */
static int read_zip64(int fd, const char *path, uint64_t loc_at, struct zip_end *z,
		      struct weld_error *err)
{
	unsigned char loc[ZIP64_LOCATOR_SIZE], e64[ZIP64_EOCD_SIZE];
	uint64_t e64_at;

	if (weld_pread_full(fd, loc, sizeof(loc), loc_at, path, err) < 0)
		return -1;
	if (le32(loc) != ZIP64_LOCATOR_SIG)
		return 0;
	e64_at = le64(loc + 8);
	if (le32(loc + 4) != 0 || le32(loc + 16) > 1)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip archives are not "
				 "supported", path);
	if (e64_at > loc_at || loc_at - e64_at < ZIP64_EOCD_SIZE)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip64 end record offset %llu is "
				 "outside the file", path, (unsigned long long)e64_at);
	if (weld_pread_full(fd, e64, sizeof(e64), e64_at, path, err) < 0)
		return -1;
	if (le32(e64) != ZIP64_EOCD_SIG)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': no zip64 end record at offset %llu",
				 path, (unsigned long long)e64_at);
	if (le32(e64 + 16) != 0 || le32(e64 + 20) != 0 || le64(e64 + 24) != le64(e64 + 32))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip archives are not "
				 "supported", path);
	/* Its size field counts the bytes after itself, up to the locator. */
	if (le64(e64 + 4) != loc_at - e64_at - 12)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip64 end record size %llu does not "
				 "reach its locator", path, (unsigned long long)le64(e64 + 4));
	z->entries = le64(e64 + 32);
	z->cd_size = le64(e64 + 40);
	z->cd_offset = le64(e64 + 48);
	z->records_start = e64_at;
	return 1;
}

static int read_end(int fd, uint64_t size, const char *path, struct zip_end *z,
		    struct weld_error *err)
{
	unsigned char e[ZIP_EOCD_SIZE] = { 0 };
	uint64_t end;
	bool saturated;
	int r = 0;

	if (find_eocd(fd, size, path, z, e, err) < 0)
		return -1;
	if (le16(e + 4) != 0 || le16(e + 6) != 0)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip archives are not "
				 "supported", path);
	z->entries = le16(e + 10);
	z->cd_size = le32(e + 12);
	z->cd_offset = le32(e + 16);
	saturated = le16(e + 8) == 0xffff || z->entries == 0xffff ||
		    z->cd_size == 0xffffffff || z->cd_offset == 0xffffffff;
	/* torch always writes the zip64 records; other writers only when needed. */
	if (z->records_start >= ZIP64_LOCATOR_SIZE)
		r = read_zip64(fd, path, z->records_start - ZIP64_LOCATOR_SIZE, z, err);
	if (r < 0)
		return -1;
	if (!r && le16(e + 8) != le16(e + 10))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip archives are not "
				 "supported", path);
	if (saturated && !r)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip end record needs a zip64 record, "
				 "which is missing", path);
	if (!weld_add_u64(z->cd_offset, z->cd_size, &end) || end > z->records_start)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': central directory (offset %llu, "
				 "%llu bytes) runs past its end record", path,
				 (unsigned long long)z->cd_offset, (unsigned long long)z->cd_size);
	if (z->cd_size > MAX_CENTRAL_DIR)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': central directory of %llu bytes is "
				 "too large", path, (unsigned long long)z->cd_size);
	if (z->entries > z->cd_size / ZIP_CENTRAL_SIZE)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': %llu zip entries cannot fit in a "
				 "central directory of %llu bytes", path,
				 (unsigned long long)z->entries, (unsigned long long)z->cd_size);
	return 0;
}

/* ---------------------------------------------------------------- central directory */

/* Replace saturated sizes/offset by the zip64 extra field's values. */
static int apply_zip64(const unsigned char *extra, size_t len, struct weld_zip_entry *e,
		       bool need_u, bool need_c, bool need_off)
{
	size_t i = 0;

	while (len - i >= 4) {
		uint16_t id = le16(extra + i), n = le16(extra + i + 2);
		const unsigned char *f = extra + i + 4;
		size_t want = 8u * (need_u + need_c + need_off);

		if (n > len - i - 4)
			return -1;
		if (id == 1) {
			if (n < want)
				return -1;
			if (need_u) {
				e->usize = le64(f);
				f += 8;
			}
			if (need_c) {
				e->csize = le64(f);
				f += 8;
			}
			if (need_off)
				e->header = le64(f);
			return 0;
		}
		i += 4 + (size_t)n;
	}
	return need_u || need_c || need_off ? -1 : 0;
}

static int parse_central(const unsigned char *cd, size_t cd_size, uint64_t count,
			 const char *path, struct weld_zip_dir *dir, struct weld_error *err)
{
	size_t at = 0;

	dir->entries = calloc(count ? (size_t)count : 1, sizeof(*dir->entries));
	if (!dir->entries)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (uint64_t k = 0; k < count; k++) {
		struct weld_zip_entry *e = &dir->entries[k];
		const unsigned char *h = cd + at;
		size_t nlen, xlen, clen, total;

		if (cd_size - at < ZIP_CENTRAL_SIZE || le32(h) != ZIP_CENTRAL_SIG)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip central directory entry "
					 "%llu is malformed", path, (unsigned long long)k);
		nlen = le16(h + 28);
		xlen = le16(h + 30);
		clen = le16(h + 32);
		total = ZIP_CENTRAL_SIZE + nlen + xlen + clen;
		if (total > cd_size - at)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip central directory entry "
					 "%llu runs past the directory", path,
					 (unsigned long long)k);
		if (!nlen || memchr(h + ZIP_CENTRAL_SIZE, 0, nlen))
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry %llu has an empty "
					 "name or a name with a NUL byte", path,
					 (unsigned long long)k);
		e->name = malloc(nlen + 1);
		if (!e->name)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		memcpy(e->name, h + ZIP_CENTRAL_SIZE, nlen);
		e->name[nlen] = '\0';
		dir->n++;
		e->version = le16(h + 6);
		e->flags = le16(h + 8);
		e->method = le16(h + 10);
		e->mtime = le16(h + 12);
		e->mdate = le16(h + 14);
		e->crc = le32(h + 16);
		e->csize = le32(h + 20);
		e->usize = le32(h + 24);
		e->header = le32(h + 42);
		if (e->flags & 1)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' is encrypted",
					 path, e->name);
		if (apply_zip64(h + ZIP_CENTRAL_SIZE + nlen, xlen, e, e->usize == 0xffffffff,
				e->csize == 0xffffffff, e->header == 0xffffffff) < 0)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': zip64 extra "
					 "field is missing or malformed", path, e->name);
		at += total;
	}
	return 0;
}

/*
 * What else a local header says must agree with the central directory:
 * version needed (no higher), modification time, and CRC and sizes, which
 * may be zero when bit 3 (data descriptor) is set, as torch writes them,
 * or saturated when a zip64 extra holds them.
 */
static int check_local_fields(const char *path, const struct weld_zip_entry *e,
			      const unsigned char *h, struct weld_error *err)
{
	static const char *const field[3] = { "CRC", "compressed size", "uncompressed size" };
	const uint32_t local[3] = { le32(h + 14), le32(h + 18), le32(h + 22) };
	const uint64_t central[3] = { e->crc, e->csize, e->usize };
	const bool descriptor = le16(h + 6) & 8;

	if (le16(h + 4) > e->version)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header needs "
				 "zip version %u, the central directory %u", path, e->name,
				 le16(h + 4), e->version);
	if (le16(h + 10) != e->mtime || le16(h + 12) != e->mdate)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header says "
				 "modification time %04x %04x, the central directory %04x %04x",
				 path, e->name, le16(h + 12), le16(h + 10), e->mdate, e->mtime);
	for (int k = 0; k < 3; k++) {
		if (local[k] == central[k] || (descriptor && local[k] == 0) ||
		    (k && local[k] == 0xffffffff))
			continue;
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header says "
				 "%s %lu, the central directory %llu", path, e->name, field[k],
				 (unsigned long)local[k], (unsigned long long)central[k]);
	}
	return 0;
}

/*
 * A local header's extra field is a run of (id, length, data) records, as
 * libzip parses it; fewer than four zero bytes may trail (zipalign pads
 * so). torch's "FB" padding record is one of them.
 */
static int check_local_extra(int fd, const char *path, const struct weld_zip_entry *e,
			     const unsigned char *h, struct weld_error *err)
{
	size_t n = le16(h + 28), i = 0;
	unsigned char *x;
	int ret = -1;

	if (!n)
		return 0;
	x = malloc(n);
	if (!x)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_pread_full(fd, x, n, e->data - n, path, err) < 0)
		goto out;
	while (n - i >= 4 && (size_t)le16(x + i + 2) <= n - i - 4)
		i += 4 + (size_t)le16(x + i + 2);
	while (i < n && n - i < 4 && !x[i])
		i++;
	if (i != n) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': the local header's extra "
			  "field is malformed at byte %zu of %zu", path, e->name, i, n);
		goto out;
	}
	ret = 0;
out:
	free(x);
	return ret;
}

/* Check e's local header and find where its data begins. */
static int check_local(int fd, uint64_t cd_offset, const char *path,
		       struct weld_zip_entry *e, unsigned char *local, struct weld_error *err)
{
	size_t nlen = strlen(e->name);
	unsigned char *h;
	uint64_t end;
	int ret = -1;

	if (!weld_add_u64(e->header, ZIP_LOCAL_SIZE + nlen, &end) || end > cd_offset)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header at "
				 "offset %llu is outside the entries area", path, e->name,
				 (unsigned long long)e->header);
	h = malloc(ZIP_LOCAL_SIZE + nlen);
	if (!h)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_pread_full(fd, h, ZIP_LOCAL_SIZE + nlen, e->header, path, err) < 0)
		goto out;
	if (le32(h) != ZIP_LOCAL_SIG) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': no local header at offset "
			  "%llu", path, e->name, (unsigned long long)e->header);
		goto out;
	}
	if (le16(h + 26) != nlen || memcmp(h + ZIP_LOCAL_SIZE, e->name, nlen)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header names "
			  "another file", path, e->name);
		goto out;
	}
	/* A reader trusting the local header would see other bytes than we do. */
	if (le16(h + 8) != e->method) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': local header says "
			  "compression method %u, the central directory %u", path, e->name,
			  le16(h + 8), e->method);
		goto out;
	}
	memcpy(local, h, ZIP_LOCAL_SIZE);
	e->data = end + le16(h + 28);
	if (!weld_add_u64(e->data, e->csize, &end) || end > cd_offset) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': data (offset %llu, %llu "
			  "bytes) runs into the central directory or past the end of the file",
			  path, e->name, (unsigned long long)e->data,
			  (unsigned long long)e->csize);
		goto out;
	}
	ret = 0;
out:
	free(h);
	return ret;
}

static int cmp_by_name(const void *a, const void *b)
{
	const struct weld_zip_entry *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
	const struct weld_zip_entry *const *x = a, *const *y = b;

	return (*x)->header < (*y)->header ? -1 : (*x)->header > (*y)->header;
}

/* Sort the name index and refuse duplicate names and overlapping entries. */
static int index_dir(const char *path, struct weld_zip_dir *dir, struct weld_error *err)
{
	const struct weld_zip_entry **at;
	size_t n = dir->n ? dir->n : 1;

	dir->by_name = malloc(n * sizeof(*dir->by_name));
	at = malloc(n * sizeof(*at));
	if (!dir->by_name || !at) {
		free(at);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < dir->n; i++)
		dir->by_name[i] = at[i] = &dir->entries[i];
	qsort(dir->by_name, dir->n, sizeof(*dir->by_name), cmp_by_name);
	qsort(at, dir->n, sizeof(*at), cmp_by_offset);
	for (size_t i = 1; i < dir->n; i++) {
		const struct weld_zip_entry *a = dir->by_name[i - 1], *b = dir->by_name[i];
		const struct weld_zip_entry *p = at[i - 1], *q = at[i];

		if (!strcmp(a->name, b->name)) {
			free(at);
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' appears twice",
					 path, a->name);
		}
		/* No sum overflows: check_local() kept every entry before the directory. */
		if (p->data + p->csize > q->header) {
			free(at);
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entries '%s' and '%s' "
					 "overlap", path, p->name, q->name);
		}
	}
	free(at);
	return 0;
}

int weld_zip_read_dir(int fd, uint64_t size, const char *path,
		      struct weld_zip_dir *dir, struct weld_error *err)
{
	struct zip_end z = { 0 };
	unsigned char *cd = NULL, (*local)[ZIP_LOCAL_SIZE] = NULL;
	int ret = -1;

	memset(dir, 0, sizeof(*dir));
	if (read_end(fd, size, path, &z, err) < 0)
		return -1;
	dir->cd_offset = z.cd_offset;
	cd = malloc(z.cd_size ? (size_t)z.cd_size : 1);
	if (!cd)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_pread_full(fd, cd, (size_t)z.cd_size, z.cd_offset, path, err) < 0 ||
	    parse_central(cd, (size_t)z.cd_size, z.entries, path, dir, err) < 0)
		goto out;
	local = malloc((dir->n ? dir->n : 1) * sizeof(*local));
	if (!local) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < dir->n; i++)
		if (check_local(fd, z.cd_offset, path, &dir->entries[i], local[i], err) < 0)
			goto out;
	if (index_dir(path, dir, err) < 0)
		goto out;
	for (size_t i = 0; i < dir->n; i++)
		if (check_local_fields(path, &dir->entries[i], local[i], err) < 0 ||
		    check_local_extra(fd, path, &dir->entries[i], local[i], err) < 0)
			goto out;
	ret = 0;
out:
	free(local);
	free(cd);
	if (ret)
		weld_zip_dir_free(dir);
	return ret;
}

const struct weld_zip_entry *weld_zip_find(const struct weld_zip_dir *dir, const char *name)
{
	size_t lo = 0, hi = dir->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct weld_zip_entry *e = dir->by_name[mid];
		int c = strcmp(name, e->name);

		if (!c)
			return e;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void weld_zip_dir_free(struct weld_zip_dir *dir)
{
	if (!dir)
		return;
	for (size_t i = 0; i < dir->n; i++)
		free(dir->entries[i].name);
	free(dir->entries);
	free(dir->by_name);
	memset(dir, 0, sizeof(*dir));
}
