/*
 * verify.c - re-hash a weld output against the XXH3-64 values recorded in
 * each file's __metadata__.weld_xxh3.
 */
#include "verify.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct verify {
	void (*problem)(void *ctx, const char *msg);
	void *ctx;
	size_t n;
};

static void say(struct verify *v, const char *fmt, ...) WELD_PRINTF(2, 3);

static void say(struct verify *v, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;

	v->n++;
	if (!v->problem)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->problem(v->ctx, msg);
}

/* Compare tensor i (scales: the scale tensor of tensor i) with its
 * record; true if it matches. */
static bool check_tensor(struct verify *v, const weld_model *m, size_t i, bool scales,
			 cJSON *const *rec)
{
	const struct weld_tensor_info *t = scales ? weld_model_scale(m, i) : weld_model_tensor(m, i);
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(rec[t->file], t->name);
	const char *fp = weld_model_file_path(m, (size_t)t->file);
	struct weld_error err = { 0 };
	char hex[17];
	uint64_t h;

	if (!cJSON_IsString(want)) {
		say(v, "'%s': tensor '%s': no recorded checksum", fp, t->name);
		return false;
	}
	if ((scales ? weld_model_hash_scale(m, i, &h, &err) : weld_model_hash(m, i, &h, &err)) < 0) {
		say(v, "%s", err.msg);
		return false;
	}
	weld_hex64(h, hex);
	if (strcmp(hex, want->valuestring) != 0) {
		say(v, "'%s': tensor '%s': XXH3 %s, recorded %s", fp, t->name, hex, want->valuestring);
		return false;
	}
	return true;
}

size_t weld_verify(const weld_model *m, void (*problem)(void *ctx, const char *msg), void *ctx,
		   size_t *ok)
{
	struct verify v = { problem, ctx, 0 };
	size_t nf = weld_model_file_count(m), good = 0;
	cJSON **rec = calloc(nf ? nf : 1, sizeof(*rec));

	if (!rec) {
		say(&v, "out of memory");
		goto out;
	}
	for (size_t f = 0; f < nf; f++) {
		const char *s = weld_model_file_metadata(m, f, "weld_xxh3");

		rec[f] = s ? cJSON_Parse(s) : NULL;
		if (!cJSON_IsObject(rec[f]))
			say(&v, "'%s': no weld_xxh3 checksums in __metadata__ (not written by weld?)",
			    weld_model_file_path(m, f));
	}
	for (size_t i = 0; !v.n && i < weld_model_count(m); i++)
		good += check_tensor(&v, m, i, false, rec) &&
			(!weld_model_scale(m, i) || check_tensor(&v, m, i, true, rec));
	for (size_t f = 0; f < nf; f++)
		cJSON_Delete(rec[f]);
	free(rec);
out:
	if (ok)
		*ok = good;
	return v.n;
}
