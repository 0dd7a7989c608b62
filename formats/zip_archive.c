/*
 * zip_archive.c - libzip's reading of a zip archive, next to weld's own
 * (zip_dir.c): libzip opens the archive through a source that reads the
 * caller's descriptor with pread (so it shares the descriptor without
 * moving its offset or taking ownership), checks it with ZIP_CHECKCONS,
 * and must list the entries exactly as weld's walker does; then it reads
 * entries whole, inflating deflated ones and checking every CRC. Reads of
 * a whole entry stop at the size the central directory declares: an entry
 * whose data inflates to more, or to less, is refused.
 */
#include "zip_archive.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#define CHUNK (1u << 20)

/* ---------------------------------------------------------------- a pread source */

/* libzip's view of the descriptor: a position of its own, reads by pread. */
struct weld_zip_source {
	int fd;
	zip_uint64_t size, pos;
	zip_error_t error;
};

static zip_int64_t source_read(struct weld_zip_source *s, void *data, zip_uint64_t len)
{
	zip_uint64_t n = len < s->size - s->pos ? len : s->size - s->pos;
	zip_uint64_t got = 0;

	while (got < n) {
		ssize_t r = pread(s->fd, (char *)data + got, (size_t)(n - got),
				  (off_t)(s->pos + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			zip_error_set(&s->error, ZIP_ER_READ, errno);
			return -1;
		}
		if (r == 0)
			break;
		got += (zip_uint64_t)r;
	}
	s->pos += got;
	return (zip_int64_t)got;
}

static zip_int64_t source_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
	struct weld_zip_source *s = ud;
	zip_stat_t *st;
	zip_int64_t pos;

	switch (cmd) {
	case ZIP_SOURCE_OPEN:
		s->pos = 0;
		return 0;
	case ZIP_SOURCE_READ:
		return source_read(s, data, len);
	case ZIP_SOURCE_CLOSE:
	case ZIP_SOURCE_FREE:   /* the struct is weld_zip's to free */
		return 0;
	case ZIP_SOURCE_STAT:
		st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &s->error);
		if (!st)
			return -1;
		zip_stat_init(st);
		st->size = s->size;
		st->valid |= ZIP_STAT_SIZE;
		return sizeof(*st);
	case ZIP_SOURCE_ERROR:
		return zip_error_to_data(&s->error, data, len);
	case ZIP_SOURCE_SEEK:
		pos = zip_source_seek_compute_offset(s->pos, s->size, data, len, &s->error);
		if (pos < 0)
			return -1;
		s->pos = (zip_uint64_t)pos;
		return 0;
	case ZIP_SOURCE_TELL:
		return (zip_int64_t)s->pos;
	case ZIP_SOURCE_SUPPORTS:
		return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ,
						      ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
						      ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
						      ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL,
						      ZIP_SOURCE_SUPPORTS, -1);
	default:
		zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
		return -1;
	}
}

/* ---------------------------------------------------------------- opening */

/* libzip's opening, with its consistency checks. */
static int open_libzip(struct weld_zip *z, int fd, uint64_t size, struct weld_error *err)
{
	zip_error_t ze;
	zip_source_t *src;
	int ret = -1;

	z->src = calloc(1, sizeof(*z->src));
	if (!z->src)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	z->src->fd = fd;
	z->src->size = size;
	zip_error_init(&z->src->error);
	zip_error_init(&ze);
	src = zip_source_function_create(source_cb, z->src, &ze);
	if (src)
		z->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
	if (!src || !z->za) {
		if (zip_error_code_zip(&ze) == ZIP_ER_MEMORY)
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		else
			weld_fail(err, WELD_ERR_FORMAT, "'%s': zip archive refused by libzip: %s",
				  z->path, zip_error_strerror(&ze));
		zip_source_free(src);
		goto out;
	}
	ret = 0;
out:
	zip_error_fini(&ze);
	return ret;
}

/* A field on which the two readings differ. */
static int differ(const struct weld_zip *z, const struct weld_zip_entry *e, const char *field,
		  uint64_t weld, uint64_t libzip, struct weld_error *err)
{
	return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': %s is %llu to weld but "
			 "%llu to libzip", z->path, e->name, field, (unsigned long long)weld,
			 (unsigned long long)libzip);
}

/* Entry by entry, libzip must read what weld's walker read. */
static int agree(struct weld_zip *z, struct weld_error *err)
{
	zip_int64_t n = zip_get_num_entries(z->za, 0);

	if (n < 0 || (uint64_t)n != z->dir.n)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip archive: libzip reads %lld "
				 "entries, weld %zu", z->path, (long long)n, z->dir.n);
	for (size_t i = 0; i < z->dir.n; i++) {
		const struct weld_zip_entry *e = &z->dir.entries[i];
		const zip_uint64_t need = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
					  ZIP_STAT_CRC | ZIP_STAT_COMP_METHOD;
		zip_stat_t st;

		zip_stat_init(&st);
		if (zip_stat_index(z->za, i, ZIP_FL_ENC_RAW, &st) < 0 || (st.valid & need) != need)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': libzip "
					 "cannot describe it", z->path, e->name);
		if (strcmp(st.name, e->name))
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry %zu is '%s' to weld "
					 "but '%s' to libzip", z->path, i, e->name, st.name);
		if (st.comp_method != e->method)
			return differ(z, e, "compression method", e->method, st.comp_method, err);
		if (st.comp_size != e->csize)
			return differ(z, e, "compressed size", e->csize, st.comp_size, err);
		if (st.size != e->usize)
			return differ(z, e, "uncompressed size", e->usize, st.size, err);
		if (st.crc != e->crc)
			return differ(z, e, "CRC", e->crc, st.crc, err);
		if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s' is encrypted",
					 z->path, e->name);
	}
	return 0;
}

int weld_zip_open(struct weld_zip *z, int fd, uint64_t size, const char *path,
		  struct weld_error *err)
{
	memset(z, 0, sizeof(*z));
	z->path = path;
	if (weld_zip_read_dir(fd, size, path, &z->dir, err) < 0)
		return -1;
	if (open_libzip(z, fd, size, err) < 0 || agree(z, err) < 0) {
		weld_zip_close(z);
		return -1;
	}
	return 0;
}

void weld_zip_close(struct weld_zip *z)
{
	if (!z)
		return;
	if (z->za)
		zip_discard(z->za);
	if (z->src)
		zip_error_fini(&z->src->error);
	free(z->src);
	weld_zip_dir_free(&z->dir);
	memset(z, 0, sizeof(*z));
}

/* ---------------------------------------------------------------- reading an entry */

/* Where the bytes of an entry go, at offset `at` of the entry. */
typedef int (*put_fn)(void *ctx, const unsigned char *p, size_t n, uint64_t at,
		      struct weld_error *err);

/* What libzip reported while reading entry e. */
static int read_error(const struct weld_zip *z, const struct weld_zip_entry *e,
		      zip_error_t *ze, struct weld_error *err)
{
	switch (zip_error_code_zip(ze)) {
	case ZIP_ER_CRC:
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s': CRC mismatch (the file is "
				 "corrupt)", z->path, e->name);
	case ZIP_ER_MEMORY:
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	case ZIP_ER_READ:
		errno = zip_error_code_system(ze);
		return weld_fail_errno(err, "'%s': zip entry '%s': read failed", z->path,
				       e->name);
	case ZIP_ER_ZLIB:
	case ZIP_ER_COMPRESSED_DATA:
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': data: the deflate "
				 "stream is damaged (%s)", z->path, e->name, zip_error_strerror(ze));
	default:
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': data: %s", z->path,
				 e->name, zip_error_strerror(ze));
	}
}

/*
 * Read entry e through libzip, chunk by chunk, into put(): exactly
 * e->usize bytes; one byte more is refused as soon as it appears.
 */
static int stream(struct weld_zip *z, const struct weld_zip_entry *e, put_fn put, void *ctx,
		  struct weld_error *err)
{
	size_t cap = e->usize < CHUNK ? (size_t)e->usize + 1 : CHUNK;
	unsigned char *chunk = malloc(cap);
	zip_file_t *f = NULL;
	uint64_t total = 0;
	int ret = -1;

	if (!chunk)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	f = zip_fopen_index(z->za, (zip_uint64_t)(e - z->dir.entries), 0);
	if (!f) {
		read_error(z, e, zip_get_error(z->za), err);
		goto out;
	}
	for (;;) {
		zip_int64_t n = zip_fread(f, chunk, cap);

		if (n < 0) {
			read_error(z, e, zip_file_get_error(f), err);
			goto out;
		}
		if (n == 0)
			break;
		if ((uint64_t)n > e->usize - total) {
			weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': data inflates to more "
				  "than the %llu bytes its uncompressed size declares", z->path,
				  e->name, (unsigned long long)e->usize);
			goto out;
		}
		if (put(ctx, chunk, (size_t)n, total, err) < 0)
			goto out;
		total += (uint64_t)n;
	}
	if (total != e->usize) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': zip entry '%s': data inflates to %llu bytes, "
			  "not the %llu its uncompressed size declares", z->path, e->name,
			  (unsigned long long)total, (unsigned long long)e->usize);
		goto out;
	}
	ret = 0;
out:
	if (f)
		zip_fclose(f);
	free(chunk);
	return ret;
}

static int put_buffer(void *ctx, const unsigned char *p, size_t n, uint64_t at,
		      struct weld_error *err)
{
	(void)err;
	memcpy((unsigned char *)ctx + at, p, n);
	return 0;
}

int weld_zip_read(struct weld_zip *z, const struct weld_zip_entry *e, uint64_t cap,
		  unsigned char **out, struct weld_error *err)
{
	unsigned char *buf;

	*out = NULL;
	if (e->usize > cap)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' is %llu bytes; weld reads at "
				 "most %llu", z->path, e->name, (unsigned long long)e->usize,
				 (unsigned long long)cap);
	if (e->method != 0 && e->method != 8)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' uses compression method %u; "
				 "weld reads stored or deflated records only", z->path, e->name,
				 e->method);
	if (e->method == 0 && e->csize != e->usize)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s' is stored but its sizes "
				 "differ (%llu and %llu)", z->path, e->name,
				 (unsigned long long)e->csize, (unsigned long long)e->usize);
	/* Deflate cannot grow data by more than ~0.1%: a larger input is bogus. */
	if (e->method == 8 && e->csize > cap + cap / 512 + 1024)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': '%s': compressed size %llu is "
				 "implausible", z->path, e->name, (unsigned long long)e->csize);
	buf = malloc(e->usize ? (size_t)e->usize : 1);
	if (!buf)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (stream(z, e, put_buffer, buf, err) < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	return 0;
}

/* ---------------------------------------------------------------- extracting to a file */

struct file_sink {
	const struct weld_zip *z;
	const struct weld_zip_entry *e;
	int fd;
	uint64_t off;
	const char *to;
};

static int put_file(void *ctx, const unsigned char *p, size_t n, uint64_t at,
		    struct weld_error *err)
{
	const struct file_sink *s = ctx;

	while (n) {
		ssize_t r = pwrite(s->fd, p, n, (off_t)(s->off + at));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return weld_fail_errno(err, "'%s': zip entry '%s': write of its inflated "
					       "data to %s failed", s->z->path, s->e->name, s->to);
		p += r;
		n -= (size_t)r;
		at += (uint64_t)r;
	}
	return 0;
}

int weld_zip_extract(struct weld_zip *z, const struct weld_zip_entry *e, int fd,
		     uint64_t off, const char *to, struct weld_error *err)
{
	struct file_sink s = { z, e, fd, off, to };

	return stream(z, e, put_file, &s, err);
}
