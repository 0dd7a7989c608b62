/*
 * error.c - filling a struct weld_error.
 *
 * The library reports every failure through a caller-provided struct
 * weld_error and a -1 return, never by printing. Both functions here leave
 * errno as they found it, so that a caller may still look at it after
 * `return weld_fail_errno(...)`, and both accept a NULL err for callers that
 * only want the status.
 */
#include "base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * The reader is used from several threads, so strerror() (which may share a
 * static buffer) is avoided; glibc's _GNU_SOURCE strerror_r returns a pointer
 * that need not be buf, the POSIX one an int.
 */
static const char *errno_text(int e, char *buf, size_t len)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(e, buf, len);
#else
	if (strerror_r(e, buf, len) != 0)
		snprintf(buf, len, "error %d", e);
	return buf;
#endif
}

int weld_fail(struct weld_error *err, enum weld_status st, const char *fmt, ...)
{
	const int saved = errno;
	va_list ap;

	if (!err)
		return -1;
	err->status = st;
	err->sys_errno = 0;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	errno = saved;
	return -1;
}

int weld_fail_errno(struct weld_error *err, const char *fmt, ...)
{
	const int saved = errno;
	char buf[256];
	va_list ap;
	size_t len;

	if (!err)
		return -1;
	err->status = WELD_ERR_IO;
	err->sys_errno = saved;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	len = strlen(err->msg);
	snprintf(err->msg + len, sizeof(err->msg) - len, ": %s",
		 errno_text(saved, buf, sizeof(buf)));
	errno = saved;
	return -1;
}
