/*
 * util.c - small helpers shared by the library and the commands: the XXH3
 * hash of tensor bytes (stored in every output header, checked by `weld
 * verify`), and byte sizes read from and written for people.
 *
 * Sizes are exact integers throughout: "1.5G" is parsed by decimal
 * arithmetic on its digits, never through a double, so every spelling of a
 * size gives the same count of bytes on every machine.
 */
#include "base.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

uint64_t weld_xxh3(const void *p, size_t n)
{
	return (uint64_t)XXH3_64bits(p, n);
}

void weld_hex64(uint64_t h, char out[17])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--) {
		out[i] = digits[h & 0xf];
		h >>= 4;
	}
	out[16] = '\0';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* K, M, G, T (after "i": binary) as a power; 0 when c is not one of them. */
static int unit_power(char c)
{
	switch (lower(c)) {
	case 'k': return 1;
	case 'm': return 2;
	case 'g': return 3;
	case 't': return 4;
	default:  return 0;
	}
}

/*
 * Grammar: DIGITS [ "." DIGITS ] [ K|M|G|T [ "i" ] ] [ "B" ], letters in
 * either case, nothing else (no sign, no spaces). A fraction of a byte is
 * dropped, as Hugging Face's int(float) does: "1.5" is 1.
 */
int weld_parse_size(const char *s, uint64_t *out)
{
	const char *frac = NULL, *frac_end = NULL;
	uint64_t whole = 0, mult = 1, part = 0;
	int power;

	if (!s || !is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		const unsigned d = (unsigned)(*s - '0');

		if (whole > (UINT64_MAX - d) / 10)
			return -1;
		whole = whole * 10 + d;
	}
	if (*s == '.') {
		frac = ++s;
		while (is_digit(*s))
			s++;
		frac_end = s;
		if (frac == frac_end)
			return -1;
	}
	power = unit_power(*s);
	if (power) {
		const uint64_t base = lower(s[1]) == 'i' ? 1024 : 1000;

		s += base == 1024 ? 2 : 1;
		for (int i = 0; i < power; i++)
			mult *= base;
	}
	if (lower(*s) == 'b')
		s++;
	if (*s != '\0')
		return -1;

	/*
	 * floor(0.DDD * mult) by schoolbook multiplication of the digits from
	 * the last one: what carries out of the first digit is the integer
	 * part. Each step stays below 10 * mult, far from overflow.
	 */
	if (frac) {
		for (const char *p = frac_end; p > frac; p--)
			part = ((uint64_t)(p[-1] - '0') * mult + part) / 10;
	}
	if (whole > (UINT64_MAX - part) / mult)
		return -1;
	*out = whole * mult + part;
	return 0;
}

void weld_format_size(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "kB", "MB", "GB", "TB", "PB", "EB" };
	uint64_t div = 1000, hundredths = 0;
	size_t u = 0;

	if (!buf || len == 0)
		return;
	if (n < 1000) {
		snprintf(buf, len, "%u B", (unsigned)n);
		return;
	}
	/*
	 * Pick the unit after rounding to two decimals (half up), so that
	 * 999999 bytes reads "1.00 MB" rather than "1000.00 kB".
	 */
	for (;;) {
		const uint64_t step = div / 100;

		hundredths = n / step + (2 * (n % step) >= step);
		if (hundredths < 100000 || u + 1 == sizeof(units) / sizeof(units[0]))
			break;
		div *= 1000;
		u++;
	}
	snprintf(buf, len, "%llu.%02u %s", (unsigned long long)(hundredths / 100),
		 (unsigned)(hundredths % 100), units[u]);
}

size_t weld_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

bool weld_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	for (size_t i = 0, l; i < n; i += l)
		if (!(l = weld_utf8_len(p + i, n - i)))
			return false;
	return true;
}

char *weld_strfmt(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(p = malloc((size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}
