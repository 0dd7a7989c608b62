/*
 * json_scan.h - the tokens of a JSON text in document order, each with the
 * path of keys and indices that leads to it, without building anything.
 *
 * This is for the checks a parsed tree cannot support: cJSON keeps neither
 * how a number was written (2, 2.0, 2e0 and 02 all give the double 2) nor
 * the length of a string, so "a\u0000b" reads as "a". A caller scans the
 * text first, refusing what it must with a message that says where, then
 * parses it.
 *
 * The walk is lenient: it follows the containers and tells keys from
 * values, but leaves the grammar to the parser that reads the text after
 * it. What it does not understand ends the walk quietly (the parser then
 * refuses the text); every text the parser accepts is walked to its end.
 */
#ifndef WELD_JSON_SCAN_H
#define WELD_JSON_SCAN_H

#include "base.h"

/* Deepest nesting walked, as serde_json's default recursion limit. */
#define WELD_JSON_MAX_DEPTH 128

enum weld_json_kind {
	WELD_JSON_KEY,          /* a member's name */
	WELD_JSON_STRING,       /* a string value */
	WELD_JSON_NUMBER,
	WELD_JSON_LITERAL,      /* true, false, null (or any other word) */
};

/* One open container around a token. */
struct weld_json_frame {
	bool object;
	const char *key;        /* object: the current member's name as written
				 * (without quotes), NULL before the first */
	size_t key_len;
	size_t index;           /* the current element or member, from 0 */
};

struct weld_json_token {
	enum weld_json_kind kind;
	const char *text;       /* as written; strings without their quotes */
	size_t len;
	size_t offset;          /* of the token's first byte in the text */
	int depth;              /* containers open around the token */
	const struct weld_json_frame *path;     /* path[0 .. depth) */
};

/* Returns 0 to go on, -1 to stop the walk (after filling its error). */
typedef int (*weld_json_visit)(void *ctx, const struct weld_json_token *t);

/* What weld_json_scan() returns when the text nests deeper than
 * WELD_JSON_MAX_DEPTH (the walk stops there). */
#define WELD_JSON_TOO_DEEP 1

/*
 * Call visit for every key and scalar of text[0..n), in document order.
 * Returns 0 at the end of the walk, -1 if visit stopped it, or
 * WELD_JSON_TOO_DEEP.
 */
int weld_json_scan(const char *text, size_t n, weld_json_visit visit, void *ctx);

/* Does the frame's current key equal the NUL-terminated name? */
bool weld_json_key_is(const struct weld_json_frame *f, const char *name);

/* How a number token is written. */
enum weld_json_number {
	WELD_JSON_NOT_A_NUMBER, /* not JSON: "01", "+1", "1.", ".5", "1e" ... */
	WELD_JSON_INTEGER,      /* -?(0|[1-9][0-9]*) */
	WELD_JSON_REAL,         /* with a fraction or an exponent */
};
enum weld_json_number weld_json_number_form(const char *text, size_t len);

/* Does the string token (as written, without quotes) hold the escape \u0000? */
bool weld_json_has_nul(const char *text, size_t len);

#endif
