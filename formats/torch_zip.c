/*
 * torch_zip.c - PyTorch checkpoints written by torch.save() (torch >= 1.6):
 * a zip archive whose entries all live under one folder <prefix>/:
 *
 *   <prefix>/data.pkl        the pickled state dict (see pickle.c)
 *   <prefix>/data/<key>      raw little-endian bytes of storage <key>
 *   <prefix>/byteorder       "little" or "big" (torch >= 2.1; absent: little)
 *   <prefix>/version, .format_version, .storage_alignment, .data/...  ignored
 *
 * The prefix is the first entry's folder (torch uses "archive" or the file
 * name's stem, so it is never guessed). Records are written stored, each
 * 64-byte aligned by an "FB" extra field in its local header, with bit 3
 * (data descriptor) set so the local sizes are zero: sizes and offsets come
 * from the central directory, the local header only gives the data offset.
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
 * Tensor data is never read here: each tensor is registered with the
 * absolute offset of its element 0 and its strides, after checking that its
 * view lies inside its storage and the storage inside its stored entry.
 */
#include "format.h"
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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
/*
 * A central directory of 100k tensors is ~10 MB; data.pkl ~ 150 bytes a
 * tensor. Both caps are far above real checkpoints.
 */
#define MAX_CENTRAL_DIR (512ull << 20)
#define MAX_DATA_PKL (64ull << 20)

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

bool weld_torch_probe(const unsigned char *head, size_t n)
{
	return n >= 4 && le32(head) == ZIP_LOCAL_SIG;
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

static int read_end(int fd, uint64_t size, const char *path, struct zip_end *z,
		    struct weld_error *err)
{
	unsigned char e[ZIP_EOCD_SIZE] = { 0 }, loc[ZIP64_LOCATOR_SIZE], e64[ZIP64_EOCD_SIZE];
	uint64_t eocd_at, loc_at, e64_at, end;
	bool saturated;

	if (find_eocd(fd, size, path, z, e, err) < 0)
		return -1;
	eocd_at = z->records_start;
	if (le16(e + 4) != 0 || le16(e + 6) != 0)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip archives are not "
				 "supported", path);
	z->entries = le16(e + 10);
	z->cd_size = le32(e + 12);
	z->cd_offset = le32(e + 16);
	saturated = le16(e + 8) == 0xffff || z->entries == 0xffff ||
		    z->cd_size == 0xffffffff || z->cd_offset == 0xffffffff;
	/* torch always writes the zip64 records; other writers only when needed. */
	if (eocd_at >= ZIP64_LOCATOR_SIZE) {
		loc_at = eocd_at - ZIP64_LOCATOR_SIZE;
		if (weld_pread_full(fd, loc, sizeof(loc), loc_at, path, err) < 0)
			return -1;
		if (le32(loc) == ZIP64_LOCATOR_SIG) {
			e64_at = le64(loc + 8);
			if (e64_at > loc_at || loc_at - e64_at < ZIP64_EOCD_SIZE)
				return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip64 end record offset "
						 "%llu is outside the file", path,
						 (unsigned long long)e64_at);
			if (weld_pread_full(fd, e64, sizeof(e64), e64_at, path, err) < 0)
				return -1;
			if (le32(e64) != ZIP64_EOCD_SIG)
				return weld_fail(err, WELD_ERR_FORMAT, "'%s': no zip64 end record at "
						 "offset %llu", path, (unsigned long long)e64_at);
			if (le32(e64 + 16) != 0 || le32(e64 + 20) != 0)
				return weld_fail(err, WELD_ERR_FORMAT, "'%s': multi-disk zip "
						 "archives are not supported", path);
			z->entries = le64(e64 + 32);
			z->cd_size = le64(e64 + 40);
			z->cd_offset = le64(e64 + 48);
			z->records_start = e64_at;
			saturated = false;
		}
	}
	if (saturated)
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
		e->flags = le16(h + 8);
		e->method = le16(h + 10);
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

/* Check e's local header and find where its data begins. */
static int check_local(int fd, uint64_t cd_offset, const char *path,
		       struct weld_zip_entry *e, struct weld_error *err)
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
	unsigned char *cd = NULL;
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
	for (size_t i = 0; i < dir->n; i++)
		if (check_local(fd, z.cd_offset, path, &dir->entries[i], err) < 0)
			goto out;
	if (index_dir(path, dir, err) < 0)
		goto out;
	ret = 0;
out:
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

/* ---------------------------------------------------------------- records */

/*
 * Read a whole small record (stored or deflated), at most cap bytes once
 * inflated, and check its CRC. *out is malloc'd.
 */
static int read_record(int fd, const char *path, const struct weld_zip_entry *e,
		       uint64_t cap, unsigned char **out, struct weld_error *err)
{
	unsigned char *in = NULL, *buf;
	z_stream zs;
	int zr;

	*out = NULL;
	if (e->usize > cap)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' is %llu bytes; weld reads at "
				 "most %llu", path, e->name, (unsigned long long)e->usize,
				 (unsigned long long)cap);
	if (e->method != 0 && e->method != 8)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' uses compression method %u; "
				 "weld reads stored or deflated records only", path, e->name,
				 e->method);
	if (e->method == 0 && e->csize != e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' is stored but its sizes "
				 "differ (%llu and %llu)", path, e->name,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	/* Deflate cannot grow data by more than ~0.1%: a larger input is bogus. */
	if (e->method == 8 && e->csize > cap + cap / 512 + 1024)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s': compressed size %llu is "
				 "implausible", path, e->name, (unsigned long long)e->csize);
	buf = malloc(e->usize ? (size_t)e->usize : 1);
	if (!buf)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (e->method == 0) {
		if (weld_pread_full(fd, buf, (size_t)e->usize, e->data, path, err) < 0)
			goto fail;
	} else {
		in = malloc(e->csize ? (size_t)e->csize : 1);
		if (!in) {
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto fail;
		}
		if (weld_pread_full(fd, in, (size_t)e->csize, e->data, path, err) < 0)
			goto fail;
		memset(&zs, 0, sizeof(zs));
		if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto fail;
		}
		zs.next_in = in;
		zs.avail_in = (uInt)e->csize;
		zs.next_out = buf;
		zs.avail_out = (uInt)e->usize;
		zr = inflate(&zs, Z_FINISH);
		inflateEnd(&zs);
		if (zr != Z_STREAM_END || zs.total_out != e->usize) {
			weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' does not inflate to its declared "
				  "%llu bytes", path, e->name, (unsigned long long)e->usize);
			goto fail;
		}
		free(in);
		in = NULL;
	}
	if (crc32(0L, buf, (uInt)e->usize) != e->crc) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s': CRC mismatch (the file is corrupt)",
			  path, e->name);
		goto fail;
	}
	*out = buf;
	return 0;
fail:
	free(in);
	free(buf);
	return -1;
}

/* ---------------------------------------------------------------- torch */

/* A TorchScript archive holds code/ and constants.pkl next to data.pkl. */
static bool is_torchscript(const struct weld_zip_dir *dir)
{
	for (size_t i = 0; i < dir->n; i++) {
		const char *slash = strchr(dir->entries[i].name, '/');

		if (slash && (!strcmp(slash + 1, "constants.pkl") ||
			      !strncmp(slash + 1, "code/", 5)))
			return true;
	}
	return false;
}

/* "<prefix>/<rest>" in a new string. */
static char *record_name(const char *prefix, size_t plen, const char *rest)
{
	size_t rlen = strlen(rest);
	char *s = malloc(plen + 1 + rlen + 1);

	if (s) {
		memcpy(s, prefix, plen);
		s[plen] = '/';
		memcpy(s + plen + 1, rest, rlen + 1);
	}
	return s;
}

static int check_byteorder(int fd, const char *path, const struct weld_zip_dir *dir,
			   const char *prefix, size_t plen, struct weld_error *err)
{
	char *name = record_name(prefix, plen, "byteorder");
	const struct weld_zip_entry *e;
	unsigned char *v = NULL;
	int ret = 0;

	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(dir, name);
	free(name);
	if (!e)
		return 0;
	if (read_record(fd, path, e, 16, &v, err) < 0)
		return -1;
	if (e->usize != 6 || memcmp(v, "little", 6))
		ret = weld_fail(err, WELD_ERR_FORMAT, "'%s': byteorder is not 'little'; weld "
				"reads little-endian checkpoints only", path);
	free(v);
	return ret;
}

/* The zip entry of a storage, checked once per storage. */
struct storage_slot {
	const struct weld_zip_entry *entry;
};

static int resolve_storage(const char *path, const struct weld_zip_dir *dir,
			   const char *prefix, size_t plen,
			   const struct weld_pickle_storage *s, const char *tensor,
			   struct storage_slot *slot, struct weld_error *err)
{
	char rest[32], *name;
	const struct weld_zip_entry *e;

	if (slot->entry)
		return 0;
	snprintf(rest, sizeof(rest), "data/%s", s->key);
	name = record_name(prefix, plen, rest);
	if (!name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	e = weld_zip_find(dir, name);
	if (!e) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s': the archive has "
			  "no record '%s'", path, tensor, s->key, name);
		free(name);
		return -1;
	}
	free(name);
	if (e->method != 0)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "compressed (method %u); weld reads stored entries only",
				 path, tensor, s->key, e->method);
	if (e->csize != e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is stored "
				 "but its zip sizes differ (%llu and %llu)", path, tensor, s->key,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	if (s->nbytes > e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': storage '%s' is "
				 "declared as %llu bytes but its record holds %llu", path, tensor,
				 s->key, (unsigned long long)s->nbytes,
				 (unsigned long long)e->usize);
	slot->entry = e;
	return 0;
}

static int register_tensors(const char *path, int file, const struct weld_zip_dir *dir,
			    const char *prefix, size_t plen,
			    const struct weld_pickle_result *r, weld_torch_add_fn add,
			    void *ctx, struct weld_error *err)
{
	struct storage_slot *slots = calloc(r->nstorages ? r->nstorages : 1, sizeof(*slots));
	int ret = -1;

	if (!slots)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < r->ntensors; i++) {
		const struct weld_pickle_tensor *t = &r->tensors[i];
		struct weld_tensor_info info = { 0 };

		if (resolve_storage(path, dir, prefix, plen, &r->storages[t->storage], t->name,
				    &slots[t->storage], err) < 0)
			goto out;
		info.name = t->name;
		info.dtype = t->dtype;
		info.ndim = t->ndim;
		memcpy(info.shape, t->shape, sizeof(info.shape));
		memcpy(info.stride, t->stride, sizeof(info.stride));
		info.nelem = t->nelem;
		info.nbytes = t->nbytes;
		info.file = file;
		/*
		 * Cannot overflow: the record ends before the central directory and the
		 * view ends inside the record (checked by the pickle layer).
		 */
		info.offset = slots[t->storage].entry->data + t->byte_offset;
		info.contiguous = t->contiguous;
		if (add(ctx, &info, err) < 0)
			goto out;
	}
	ret = 0;
out:
	free(slots);
	return ret;
}

int weld_torch_scan(int fd, uint64_t size, const char *path, int file,
		    weld_torch_add_fn add, void *ctx, struct weld_error *err)
{
	struct weld_zip_dir dir;
	struct weld_pickle_result res = { 0 };
	const struct weld_zip_entry *pkl;
	unsigned char *buf = NULL;
	const char *prefix, *slash;
	char *name = NULL;
	size_t plen;
	int ret = -1;

	if (weld_zip_read_dir(fd, size, path, &dir, err) < 0)
		return -1;
	if (is_torchscript(&dir)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s' is a TorchScript archive (torch.jit.save), "
			  "not a state dict: load it with torch.jit.load() and save its "
			  "state_dict() with torch.save() or as safetensors", path);
		goto out;
	}
	if (!dir.n) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': empty zip archive, not a PyTorch "
			  "checkpoint", path);
		goto out;
	}
	prefix = dir.entries[0].name;
	slash = strchr(prefix, '/');
	if (!slash) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' is not in a folder: not a "
			  "PyTorch checkpoint", path, prefix);
		goto out;
	}
	plen = (size_t)(slash - prefix);
	name = record_name(prefix, plen, "data.pkl");
	if (!name) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	pkl = weld_zip_find(&dir, name);
	if (!pkl) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip archive has no '%s': not a PyTorch "
			  "checkpoint", path, name);
		goto out;
	}
	if (check_byteorder(fd, path, &dir, prefix, plen, err) < 0 ||
	    read_record(fd, path, pkl, MAX_DATA_PKL, &buf, err) < 0)
		goto out;
	if (weld_pickle_load(buf, (size_t)pkl->usize, &res, err) < 0) {
		char msg[sizeof(err->msg)];

		/* err is non-NULL here only if the caller passed one. */
		if (err) {
			memcpy(msg, err->msg, sizeof(msg));
			weld_fail(err, err->status, "'%s': data.pkl: %s", path, msg);
		}
		goto out;
	}
	if (register_tensors(path, file, &dir, prefix, plen, &res, add, ctx, err) < 0)
		goto out;
	ret = 0;
out:
	weld_pickle_result_free(&res);
	free(buf);
	free(name);
	weld_zip_dir_free(&dir);
	return ret;
}

static int add_to_model(void *ctx, const struct weld_tensor_info *info,
			struct weld_error *err)
{
	return weld_model_add_tensor(ctx, info, err);
}

static int torch_parse(weld_model *m, int file, struct weld_error *err)
{
	return weld_torch_scan(weld_model_file_fd(m, file), weld_model_file_size(m, file),
			       weld_model_file_path(m, (size_t)file), file, add_to_model, m, err);
}

static int refuse_legacy(weld_model *m, int file, struct weld_error *err)
{
	return weld_fail(err, WELD_ERR_FORMAT,
			 "'%s': legacy PyTorch (pre-1.6) checkpoint: re-save it with a current torch, or convert it to safetensors",
			 weld_model_file_path(m, (size_t)file));
}

const struct weld_format weld_torch_zip_format = {
	.name = "pytorch",
	.probe = weld_torch_probe,
	.parse = torch_parse,
};

const struct weld_format weld_torch_legacy_format = {
	.name = "pytorch",
	.probe = weld_torch_legacy_probe,
	.parse = refuse_legacy,
};
