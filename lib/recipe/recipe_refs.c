/*
 * recipe_refs.c - model references: a local path (absolute, ~/..., or
 * relative to the recipe's folder), else a name in the Hugging Face cache
 * (formats/hf_cache.c), written as a string or as mergekit's {"model":
 * {"path", "revision"}} object. Every mention of one path is one model of
 * the recipe, labelled as its first mention spells it.
 */
#include "recipe_impl.h"
#include "hf_cache.h"

#include <string.h>
#include <unistd.h>

/* Drop "." parts and fold "dir/.." in place (for messages; the file itself
 * is found through realpath). */
static void tidy_path(char *p)
{
	bool abs = *p == '/';
	char *out = p + abs;
	const char *seg = p + abs;
	size_t kept = 0;   /* segments of the output that ".." may remove */

	while (*seg) {
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);
		bool dotdot = n == 2 && seg[0] == '.' && seg[1] == '.';

		if (n == 0 || (n == 1 && seg[0] == '.')) {
			/* nothing */
		} else if (dotdot && (kept || abs)) {
			while (kept && out > p + abs && out[-1] != '/')
				out--;
			if (kept && out > p + abs)
				out--;
			kept -= kept > 0;
		} else {
			if (out > p + abs)
				*out++ = '/';
			memmove(out, seg, n);
			out += n;
			kept += !dotdot;
		}
		seg += n + (end != NULL);
	}
	if (out == p)
		*out++ = '.';
	*out = 0;
}

static char *resolve_model(const weld_recipe *r, const char *spec, const char *where,
			   struct weld_error *err);

/* BASE+ADAPTER (mergekit's LoRA reference): the first '+' that splits spec
 * into two references that resolve gives "base path+adapter path", which
 * the model layer opens as the base with the adapter applied. */
static char *resolve_lora(const weld_recipe *r, const char *spec, const char *where)
{
	for (const char *plus = strchr(spec, '+'); plus; plus = strchr(plus + 1, '+')) {
		struct weld_error quiet;
		char *left = strndup(spec, (size_t)(plus - spec)), *base = NULL, *dir = NULL;
		char *both = NULL;

		if (left && *left && plus[1]) {
			base = resolve_model(r, left, where, &quiet);
			dir = base ? resolve_model(r, plus + 1, where, &quiet) : NULL;
		}
		if (base && dir)
			both = weld_strfmt("%s+%s", base, dir);
		free(left);
		free(base);
		free(dir);
		if (both)
			return both;
	}
	return NULL;
}

/*
 * A model reference: a local path (absolute, ~/..., or relative to the
 * recipe's folder), else `org/name[@revision]` in the Hugging Face cache.
 * weld never downloads. Returns the absolute path (caller frees) or NULL.
 */
static char *resolve_model(const weld_recipe *r, const char *spec, const char *where,
			   struct weld_error *err)
{
	struct weld_error hf = { 0 };   /* why the cache does not hold spec, if it is a name */
	char *local, *found = NULL;
	const char *home = getenv("HOME");

	if (!*spec) {
		rfail(r, err, where, "empty model path");
		return NULL;
	}
	if (spec[0] == '/')
		local = strdup(spec);
	else if (spec[0] == '~' && spec[1] == '/')
		local = weld_path_join(home && *home ? home : ".", spec + 2);
	else
		local = weld_path_join(r->dir, spec);
	if (local)
		tidy_path(local);
	if (!local) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if (access(local, F_OK) == 0) {
		found = realpath(local, NULL);
		if (!found)
			weld_fail_errno(err, "%s: %s: cannot resolve '%s'", r->label, where, local);
		free(local);
		return found;
	}
	if (weld_hf_is_name(spec) && weld_hf_snapshot(spec, &found, &hf) < 0 &&
	    hf.status != WELD_ERR_ARG)
		hf.msg[0] = 0;
	if (!found && strchr(spec, '+'))
		found = resolve_lora(r, spec, where);
	if (!found) {
		if (hf.msg[0])
			rfail(r, err, where, "model '%s' not found: no file or folder '%s'; %s; weld never downloads models",
			      spec, local, hf.msg);
		else if (strchr(spec, '+'))
			rfail(r, err, where, "model '%s' not found: no file or folder '%s', and no '+' splits it into a BASE and a LoRA ADAPTER that exist (locally or in the Hugging Face cache)",
			      spec, local);
		else
			rfail(r, err, where, "model '%s' not found: no file or folder '%s'", spec, local);
	}
	free(local);
	return found;
}

/* mergekit's object form {"model": ..., "lora": {"path", "revision"} or
 * "path"}: append "+lora" to the model's spec in buf. */
static int lora_spec(const weld_recipe *r, const cJSON *lora, const char *where, char *buf,
		     size_t len, struct weld_error *err)
{
	const cJSON *p = cJSON_IsString(lora) ? lora : cJSON_GetObjectItemCaseSensitive(lora, "path");
	const cJSON *rev = cJSON_IsObject(lora) ? cJSON_GetObjectItemCaseSensitive(lora, "revision") : NULL;
	static const char *const keys[] = { "path", "revision" };
	char sub[WHERE_LEN];
	size_t used = strlen(buf);

	set_where(sub, sizeof(sub), "%s.lora", where);
	if (cJSON_IsObject(lora) && weld_recipe_check_keys(r, lora, sub, keys, 2, err) < 0)
		return -1;
	if (!cJSON_IsString(p) || (rev && !cJSON_IsString(rev)))
		return rfail(r, err, sub, "expected an adapter path, or {\"path\": ..., \"revision\": ...}");
	if ((size_t)snprintf(buf + used, len - used, "+%s%s%s", p->valuestring, rev ? "@" : "",
			     rev ? rev->valuestring : "") >= len - used)
		return rfail(r, err, sub, "reference too long");
	return 0;
}

/* Parse a model reference (string or mergekit's object form) and return
 * its index in r->models (shared by every mention of the same path). */
int weld_recipe_add_model(weld_recipe *r, const cJSON *v, const char *where, int *idx,
			  struct weld_error *err)
{
	static const char *const ref_keys[] = { "model", "lora", "override_architecture" };
	static const char *const path_keys[] = { "path", "revision" };
	char spec_buf[4096], sub[WHERE_LEN];
	const cJSON *lora = NULL;
	const char *spec;
	struct rmodel *nm;
	char *path;

	if (cJSON_IsString(v)) {
		spec = v->valuestring;
	} else if (cJSON_IsObject(v)) {
		const cJSON *mp, *p, *rev;

		if (weld_recipe_check_keys(r, v, where, ref_keys, 3, err) < 0)
			return -1;
		lora = cJSON_GetObjectItemCaseSensitive(v, "lora");
		if (cJSON_GetObjectItemCaseSensitive(v, "override_architecture")) {
			set_where(sub, sizeof(sub), "%s.override_architecture", where);
			return rfail(r, err, sub, "not supported: weld works from tensor names, not architectures");
		}
		mp = cJSON_GetObjectItemCaseSensitive(v, "model");
		set_where(sub, sizeof(sub), "%s.model", where);
		if (!cJSON_IsObject(mp))
			return rfail(r, err, mp ? sub : where, "expected {\"path\": ..., \"revision\": ...}");
		if (weld_recipe_check_keys(r, mp, sub, path_keys, 2, err) < 0)
			return -1;
		p = cJSON_GetObjectItemCaseSensitive(mp, "path");
		rev = cJSON_GetObjectItemCaseSensitive(mp, "revision");
		if (!cJSON_IsString(p))
			return rfail(r, err, sub, "needs a \"path\" string");
		if (rev && !cJSON_IsString(rev)) {
			set_where(sub, sizeof(sub), "%s.model.revision", where);
			return rfail(r, err, sub, "expected a string, not %s", json_type(rev));
		}
		snprintf(spec_buf, sizeof(spec_buf), "%s%s%s", p->valuestring, rev ? "@" : "",
			 rev ? rev->valuestring : "");
		if (lora && lora_spec(r, lora, where, spec_buf, sizeof(spec_buf), err) < 0)
			return -1;
		spec = spec_buf;
	} else {
		return rfail(r, err, where, "expected a model path (a string), not %s",
			     v ? json_type(v) : "nothing");
	}
	path = resolve_model(r, spec, where, err);
	if (!path)
		return -1;
	for (size_t i = 0; i < r->nmodels; i++)
		if (strcmp(r->models[i].path, path) == 0) {
			free(path);
			*idx = (int)i;
			return 0;
		}
	nm = realloc(r->models, (r->nmodels + 1) * sizeof(*nm));
	if (!nm) {
		free(path);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	r->models = nm;
	nm = &r->models[r->nmodels];
	memset(nm, 0, sizeof(*nm));
	nm->path = path;
	nm->label = strdup(spec);
	nm->where = strdup(where);
	if (!nm->label || !nm->where) {
		free(nm->label);
		free(nm->where);
		free(path);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	*idx = (int)r->nmodels++;
	return 0;
}
