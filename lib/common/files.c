/*
 * files.c - the file helpers every layer shares: join a path, open a file
 * that must be a regular one (never blocking on a FIFO), read a small file
 * whole, pread a range whole.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *weld_path_join(const char *dir, const char *name)
{
	size_t ld = strlen(dir), ln = strlen(name);
	char *p = malloc(ld + ln + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, ld);
	p[ld] = '/';
	memcpy(p + ld + 1, name, ln + 1);
	return p;
}

/* What a file that is not a regular one is, for messages. */
static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a folder";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "a special file";
}

static int refuse_kind(const char *path, mode_t mode, struct weld_error *err)
{
	return weld_fail(err, WELD_ERR_IO, "'%s' is %s, not a regular file", path,
			 file_kind(mode));
}

int weld_open_regular(const char *path, uint64_t *size, struct weld_error *err)
{
	struct stat st;
	int fd, flags;

	if (stat(path, &st) < 0)
		return weld_fail_errno(err, "cannot open '%s'", path);
	if (!S_ISREG(st.st_mode))
		return refuse_kind(path, st.st_mode, err);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return weld_fail_errno(err, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (S_ISREG(st.st_mode))
			weld_fail_errno(err, "cannot stat '%s'", path);
		else
			refuse_kind(path, st.st_mode, err);
		close(fd);
		return -1;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		weld_fail_errno(err, "cannot open '%s'", path);
		close(fd);
		return -1;
	}
	if (size)
		*size = (uint64_t)st.st_size;
	return fd;
}

int weld_read_small_file(const char *path, uint64_t max, char **out, size_t *len,
			 struct weld_error *err)
{
	uint64_t size = 0;
	char *buf = NULL;
	int r = -1, fd = weld_open_regular(path, &size, err);

	if (fd < 0)
		return -1;
	if (size > max) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': larger than %llu bytes", path,
			  (unsigned long long)max);
		goto out;
	}
	buf = malloc((size_t)size + 1);
	if (!buf) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory reading '%s'", path);
		goto out;
	}
	if (weld_pread_full(fd, buf, (size_t)size, 0, path, err) < 0)
		goto out;
	buf[size] = 0;
	if (len)
		*len = (size_t)size;
	*out = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

int weld_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path,
		    struct weld_error *err)
{
	char *p = buf;

	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return weld_fail_errno(err, "'%s': read of %zu bytes at offset %llu failed",
					       path, n, (unsigned long long)off);
		}
		if (r == 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': unexpected end of file at offset %llu (file changed while reading?)",
					 path, (unsigned long long)off);
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}
