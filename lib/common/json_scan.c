/*
 * json_scan.c - walk the tokens of a JSON text with their paths (see
 * json_scan.h). One pass, no allocation: the path lives on the stack.
 */
#include "json_scan.h"

#include <string.h>

struct walk {
	const char *text;
	size_t n, i;
	int depth;
	bool want_key;          /* the next string in this object is a name */
	struct weld_json_frame path[WELD_JSON_MAX_DEPTH];
	weld_json_visit visit;
	void *ctx;
};

static bool is_number_byte(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' ||
	       c == 'E';
}

static bool is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* End of the string whose opening quote is at w->i, or n if unterminated. */
static size_t string_end(const struct walk *w)
{
	size_t j = w->i + 1;

	while (j < w->n && w->text[j] != '"')
		j += w->text[j] == '\\' ? 2 : 1;
	return j < w->n ? j : w->n;
}

static int emit(struct walk *w, enum weld_json_kind kind, size_t start, size_t end)
{
	struct weld_json_token t = {
		.kind = kind, .text = w->text + start, .len = end - start, .offset = start,
		.depth = w->depth, .path = w->path,
	};

	return w->visit(w->ctx, &t);
}

/* A string at w->i: a name (remembered in the path) or a value. An
 * unterminated one ends the walk. */
static int take_string(struct walk *w)
{
	size_t end = string_end(w);
	bool key = w->want_key && w->depth && w->path[w->depth - 1].object;

	if (end == w->n) {
		w->i = w->n;
		return 0;
	}
	if (key) {
		struct weld_json_frame *f = &w->path[w->depth - 1];

		f->key = w->text + w->i + 1;
		f->key_len = end - w->i - 1;
		w->want_key = false;
	}
	if (emit(w, key ? WELD_JSON_KEY : WELD_JSON_STRING, w->i + 1, end) < 0)
		return -1;
	w->i = end + 1;
	return 0;
}

/* A number or a word at w->i. */
static int take_scalar(struct walk *w, bool number)
{
	size_t j = w->i;

	while (j < w->n && (number ? is_number_byte(w->text[j]) : is_letter(w->text[j])))
		j++;
	if (emit(w, number ? WELD_JSON_NUMBER : WELD_JSON_LITERAL, w->i, j) < 0)
		return -1;
	w->i = j;
	return 0;
}

static int open_container(struct walk *w, bool object)
{
	if (w->depth == WELD_JSON_MAX_DEPTH)
		return WELD_JSON_TOO_DEEP;
	w->path[w->depth++] = (struct weld_json_frame){ .object = object };
	w->want_key = object;
	w->i++;
	return 0;
}

/* ',' moves to the next element or member. */
static void next_item(struct walk *w)
{
	if (w->depth) {
		struct weld_json_frame *f = &w->path[w->depth - 1];

		f->index++;
		f->key = NULL;
		f->key_len = 0;
		w->want_key = f->object;
	}
	w->i++;
}

int weld_json_scan(const char *text, size_t n, weld_json_visit visit, void *ctx)
{
	struct walk w = { .text = text, .n = n, .visit = visit, .ctx = ctx };
	int r = 0;

	while (w.i < n && r == 0) {
		char c = text[w.i];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':') {
			w.i++;
		} else if (c == '{' || c == '[') {
			r = open_container(&w, c == '{');
		} else if (c == '}' || c == ']') {
			if (!w.depth)
				return 0;
			w.depth--;
			w.want_key = false;
			w.i++;
		} else if (c == ',') {
			next_item(&w);
		} else if (c == '"') {
			r = take_string(&w);
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			r = take_scalar(&w, true);
		} else if (is_letter(c)) {
			r = take_scalar(&w, false);
		} else {
			return 0;
		}
	}
	return r;
}

bool weld_json_key_is(const struct weld_json_frame *f, const char *name)
{
	size_t l = strlen(name);

	return f->key && f->key_len == l && memcmp(f->key, name, l) == 0;
}

static size_t digits(const char *s, size_t i, size_t n)
{
	size_t j = i;

	while (j < n && s[j] >= '0' && s[j] <= '9')
		j++;
	return j - i;
}

enum weld_json_number weld_json_number_form(const char *s, size_t n)
{
	size_t i = 0, d;
	bool real = false;

	if (i < n && s[i] == '-')
		i++;
	d = digits(s, i, n);
	if (!d || (s[i] == '0' && d > 1))
		return WELD_JSON_NOT_A_NUMBER;
	i += d;
	if (i < n && s[i] == '.') {
		d = digits(s, ++i, n);
		if (!d)
			return WELD_JSON_NOT_A_NUMBER;
		i += d;
		real = true;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		d = digits(s, i, n);
		if (!d)
			return WELD_JSON_NOT_A_NUMBER;
		i += d;
		real = true;
	}
	if (i != n)
		return WELD_JSON_NOT_A_NUMBER;
	return real ? WELD_JSON_REAL : WELD_JSON_INTEGER;
}

bool weld_json_has_nul(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\')
			continue;
		if (i + 5 < n && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++;    /* the escaped byte */
	}
	return false;
}
