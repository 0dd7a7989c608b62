/*
 * suggest.c - "did you mean" hints: the edit distance of two short names,
 * the nearest of a list when it is near enough to be a typo, and a list of
 * names spelled out for a message.
 */
#include "suggest.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

size_t weld_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65], prev;

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t del = row[j] + 1, ins = row[j - 1] + 1;
			size_t sub = prev + (a[i - 1] != b[j - 1]);
			size_t best = del < ins ? del : ins;

			prev = row[j];
			row[j] = best < sub ? best : sub;
		}
	}
	return row[lb];
}

const char *weld_suggest(const char *s, const char *const *names, size_t n)
{
	size_t best = SIZE_MAX, lim = strlen(s) <= 4 ? 1 : 2;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t d = names[i] ? weld_edit_distance(s, names[i]) : SIZE_MAX;

		if (d < best) {
			best = d;
			pick = names[i];
		}
	}
	return best <= lim ? pick : NULL;
}

void weld_list_names(char *buf, size_t len, const char *const *names, size_t n)
{
	size_t o = 0;

	buf[0] = 0;
	for (size_t i = 0; i < n && o < len; i++) {
		if (!names[i])
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", names[i]);
	}
}
