/*
 * suggest.h - "did you mean" hints for names given by people: recipe keys,
 * method names, option values. Plain string functions with no state; the
 * caller owns every buffer.
 */
#ifndef WELD_SUGGEST_H
#define WELD_SUGGEST_H

#include <stddef.h>

/* Levenshtein distance of a and b; SIZE_MAX when either is longer than 64
 * bytes. Neither may be NULL. */
size_t weld_edit_distance(const char *a, const char *b);

/* The one of the n names closest to s, if it is close enough to be a typo
 * of it (an edit distance of 1 for s of up to 4 bytes, else 2), or NULL.
 * The result is borrowed from names; NULL entries of names are skipped. */
const char *weld_suggest(const char *s, const char *const *names, size_t n);

/* The n names as "a, b, c" in buf (len bytes, truncated to fit); NULL
 * entries are skipped, so buf is "" when all are NULL. */
void weld_list_names(char *buf, size_t len, const char *const *names, size_t n);

#endif
