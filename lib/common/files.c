/*
 * files.c - the file helpers every layer shares: join a path, read a small
 * file whole, pread a range whole.
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

int weld_read_small_file(const char *path, uint64_t max, char **out, size_t *len,
			 struct weld_error *err)
{
	struct stat st;
	char *buf = NULL;
	int r = -1, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return weld_fail_errno(err, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		weld_fail_errno(err, "cannot stat '%s'", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': larger than %llu bytes", path,
			  (unsigned long long)max);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory reading '%s'", path);
		goto out;
	}
	if (weld_pread_full(fd, buf, (size_t)st.st_size, 0, path, err) < 0)
		goto out;
	buf[st.st_size] = 0;
	if (len)
		*len = (size_t)st.st_size;
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
