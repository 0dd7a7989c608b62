/*
 * recipe.c - read, check and plan a merge recipe: mergekit's configuration
 * schema written as JSON (DESIGN 5).
 *
 * Checking happens in two rounds, both before anything is written. Parsing
 * walks the JSON once and refuses every unknown key, wrong type or value out
 * of range with the JSON path of the culprit; it also resolves every model
 * reference to an absolute path (recipe folder, then the Hugging Face
 * cache). Planning opens the models, checks layer ranges and depths, then
 * evaluates each parameter for each tensor (gradients over layers, filter
 * lists, the precedence source > slice > top level > method default) into
 * the engine's jobs. The normalised recipe stored in the output is printed
 * from the parsed tree with every default written out, so reading it back
 * gives the same plan and the same bytes.
 */
#include "recipe.h"
#include "hf_cache.h"
#include "method.h"
#include "suggest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECIPE_MAX_BYTES (16u << 20)
#define WHERE_LEN 256
#define MAX_SEED_EXACT 9007199254740992.0   /* 2^53: larger seeds go in strings */

static const char *const top_keys[] = {
	"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
	"tokenizer_source", "weld",
};

/* ---------------------------------------------------------------- the recipe */

struct rmodel {
	char *label;    /* as the recipe names it */
	char *path;     /* resolved, absolute */
	char *where;    /* JSON path of its first mention */
	int layers;     /* 1 + its largest layer index; 0 without layers */
};

struct rsource {
	int model;              /* index in recipe.models */
	int a, b;               /* layer_range [a, b), or -1 with models: */
	const cJSON *params;    /* borrowed from the tree, may be NULL */
	char where[64];         /* "models[1]", "slices[0].sources[2]" */
};

struct rslice {
	struct rsource *src;
	size_t nsrc;
	const cJSON *params;
	int base;               /* base model (recipe.models index) or -1 */
	bool base_given;        /* the slice names its own base_model */
	int base_src;           /* index in src of the base, or -1 */
	char where[32];
};

struct weld_recipe {
	char *label, *dir;
	cJSON *root;
	const struct weld_method_spelling *m;
	struct rmodel *models;
	size_t nmodels;
	struct rslice *slices;  /* models: is kept as one slice without ranges */
	size_t nslices;
	bool use_slices;
	int base;               /* top-level base_model, or -1 */
	const cJSON *params;    /* top-level parameters, or NULL */
	const char *dtype_name, *out_dtype_name, *tokenizer_source;
	struct weld_merge_opts o;
	bool rescale_set, sign_set, trim_set;
	char *json;             /* the normalised recipe */
	char *config_from;
	const char **labels;
	size_t nlabels;
	int *layer_map;         /* output layer -> its source layer (slices) */
	size_t nlayers_out;
	char gamma_where[WHERE_LEN];  /* where the current tensor's gamma came from */
};

static void set_where(char *dst, size_t len, const char *fmt, ...) WELD_PRINTF(3, 4);

static void set_where(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

/* Fill err with "<recipe>: <JSON path>: <message>" and return -1. */
static int rfail(const weld_recipe *r, struct weld_error *err, const char *where,
		 const char *fmt, ...) WELD_PRINTF(4, 5);

static int rfail(const weld_recipe *r, struct weld_error *err, const char *where,
		 const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (where && *where)
		return weld_fail(err, WELD_ERR_ARG, "%s: %s: %s", r->label, where, msg);
	return weld_fail(err, WELD_ERR_ARG, "%s: %s", r->label, msg);
}

/* A new string from a format (caller frees), or NULL. */
static char *strfmt(const char *fmt, ...) WELD_PRINTF(1, 2);

static char *strfmt(const char *fmt, ...)
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

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *json_type(const cJSON *v)
{
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsArray(v))
		return "a list";
	if (cJSON_IsObject(v))
		return "an object";
	return "null";
}

/* ---------------------------------------------------------------- checking keys */

static void method_params(const struct weld_method_spelling *m, char *buf, size_t len)
{
	const char *names[WELD_P_COUNT];

	for (int p = 0; p < WELD_P_COUNT; p++)
		names[p] = m->params & WELD_PB(p) ? weld_param_defs[p].name : NULL;
	weld_list_names(buf, len, names, WELD_P_COUNT);
	if (!buf[0])
		snprintf(buf, len, "none");
}

/* Refuse a key that repeats an earlier one of the same object. */
static int check_dups(const weld_recipe *r, const cJSON *obj, const char *where,
		      struct weld_error *err)
{
	for (const cJSON *a = obj->child; a; a = a->next)
		for (const cJSON *b = obj->child; b != a; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return rfail(r, err, where, "key '%s' appears twice", a->string);
	return 0;
}

/* Every key of obj must be one of names; the message suggests the nearest. */
static int check_keys(const weld_recipe *r, const cJSON *obj, const char *where,
		      const char *const *names, size_t n, struct weld_error *err)
{
	char path[WHERE_LEN], all[512];

	if (check_dups(r, obj, where, err) < 0)
		return -1;
	for (const cJSON *k = obj->child; k; k = k->next) {
		const char *near;
		bool known = false;

		for (size_t i = 0; i < n && !known; i++)
			known = strcmp(k->string, names[i]) == 0;
		if (known)
			continue;
		set_where(path, sizeof(path), "%s%s%s", where, *where ? "." : "", k->string);
		near = weld_suggest(k->string, names, n);
		if (near)
			return rfail(r, err, path, "unknown key (did you mean '%s'?)", near);
		weld_list_names(all, sizeof(all), names, n);
		return rfail(r, err, path, "unknown key (expected one of: %s)", all);
	}
	return 0;
}

/* ---------------------------------------------------------------- model references */

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
	if (!found) {
		if (hf.msg[0])
			rfail(r, err, where, "model '%s' not found: no file or folder '%s'; %s; weld never downloads models",
			      spec, local, hf.msg);
		else if (strchr(spec, '+'))
			rfail(r, err, where, "model '%s' not found: no file or folder '%s' (LoRA references 'model+lora' are not supported)",
			      spec, local);
		else
			rfail(r, err, where, "model '%s' not found: no file or folder '%s'", spec, local);
	}
	free(local);
	return found;
}

/* Parse a model reference (string or mergekit's object form) and return
 * its index in r->models (shared by every mention of the same path). */
static int add_model(weld_recipe *r, const cJSON *v, const char *where, int *idx,
		     struct weld_error *err)
{
	static const char *const ref_keys[] = { "model", "lora", "override_architecture" };
	static const char *const path_keys[] = { "path", "revision" };
	char spec_buf[4096], sub[WHERE_LEN];
	const char *spec;
	struct rmodel *nm;
	char *path;

	if (cJSON_IsString(v)) {
		spec = v->valuestring;
	} else if (cJSON_IsObject(v)) {
		const cJSON *mp, *p, *rev;

		if (check_keys(r, v, where, ref_keys, 3, err) < 0)
			return -1;
		if (cJSON_GetObjectItemCaseSensitive(v, "lora")) {
			set_where(sub, sizeof(sub), "%s.lora", where);
			return rfail(r, err, sub, "LoRA references are not supported (merge the adapter first)");
		}
		if (cJSON_GetObjectItemCaseSensitive(v, "override_architecture")) {
			set_where(sub, sizeof(sub), "%s.override_architecture", where);
			return rfail(r, err, sub, "not supported: weld works from tensor names, not architectures");
		}
		mp = cJSON_GetObjectItemCaseSensitive(v, "model");
		set_where(sub, sizeof(sub), "%s.model", where);
		if (!cJSON_IsObject(mp))
			return rfail(r, err, mp ? sub : where, "expected {\"path\": ..., \"revision\": ...}");
		if (check_keys(r, mp, sub, path_keys, 2, err) < 0)
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

/* ---------------------------------------------------------------- checking values */

static int check_number(const weld_recipe *r, const struct weld_param_def *pd, double v,
			const char *where, struct weld_error *err)
{
	if (!isfinite(v))
		return rfail(r, err, where, "%s must be a finite number", pd->name);
	switch (pd->range) {
	case WELD_RANGE_DENSITY:
		if (!(v > 0 && v <= 1))
			return rfail(r, err, where, "%s %g is outside (0, 1]", pd->name, v);
		break;
	case WELD_RANGE_GAMMA:
		if (!(v >= 0 && v < 1))
			return rfail(r, err, where, "%s %g is outside [0, 1)", pd->name, v);
		break;
	case WELD_RANGE_UNIT:
		if (!(v >= 0 && v <= 1))
			return rfail(r, err, where, "%s %g is outside [0, 1]", pd->name, v);
		break;
	case WELD_RANGE_NONNEG:
		if (!(v >= 0))
			return rfail(r, err, where, "%s %g must be >= 0", pd->name, v);
		break;
	case WELD_RANGE_BOOL:
		if (v != 0 && v != 1)
			return rfail(r, err, where, "expected true or false, not %g", v);
		break;
	case WELD_RANGE_ANY:
		break;
	}
	return 0;
}

/* A gradient: a non-empty list of numbers. */
static int check_gradient(const weld_recipe *r, const struct weld_param_def *pd, const cJSON *v,
			  const char *where, struct weld_error *err)
{
	char sub[WHERE_LEN];
	size_t i = 0;

	if (!v->child)
		return rfail(r, err, where, "empty list");
	for (const cJSON *e = v->child; e; e = e->next, i++) {
		set_where(sub, sizeof(sub), "%s[%zu]", where, i);
		if (!cJSON_IsNumber(e))
			return rfail(r, err, sub, "a gradient holds numbers only, not %s", json_type(e));
		if (check_number(r, pd, e->valuedouble, sub, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * A parameter setting, as mergekit reads it: a number, a gradient, or
 * a list of {"filter": "substring", "value": number | gradient}. The
 * whole-merge switches (normalize, rescale, int8_mask) take one value.
 */
static int check_setting(const weld_recipe *r, const struct weld_param_def *pd, const cJSON *v,
			 const char *where, struct weld_error *err)
{
	static const char *const cond_keys[] = { "filter", "value" };
	char sub[WHERE_LEN];
	size_t i = 0;

	if (pd->range == WELD_RANGE_BOOL) {
		if (cJSON_IsBool(v))
			return 0;
		if (cJSON_IsNumber(v))
			return check_number(r, pd, v->valuedouble, where, err);
		return rfail(r, err, where, "expected true or false, not %s (%s is one value for the whole merge)",
			     json_type(v), pd->name);
	}
	if (cJSON_IsNumber(v))
		return check_number(r, pd, v->valuedouble, where, err);
	if (cJSON_IsObject(v))
		return rfail(r, err, where, "a {\"filter\", \"value\"} entry must be inside a list: [{...}, {\"value\": ...}]");
	if (!cJSON_IsArray(v))
		return rfail(r, err, where, "expected a number, a list of numbers (a gradient) or a list of {\"filter\", \"value\"} objects, not %s",
			     json_type(v));
	if (!v->child)
		return rfail(r, err, where, "empty list");
	if (cJSON_IsNumber(v->child))
		return check_gradient(r, pd, v, where, err);
	for (const cJSON *e = v->child; e; e = e->next, i++) {
		const cJSON *f, *val;

		set_where(sub, sizeof(sub), "%s[%zu]", where, i);
		if (!cJSON_IsObject(e))
			return rfail(r, err, sub, "expected a {\"filter\", \"value\"} object like the other entries, not %s",
				     json_type(e));
		if (check_keys(r, e, sub, cond_keys, 2, err) < 0)
			return -1;
		f = cJSON_GetObjectItemCaseSensitive(e, "filter");
		val = cJSON_GetObjectItemCaseSensitive(e, "value");
		if (f && !cJSON_IsString(f)) {
			set_where(sub, sizeof(sub), "%s[%zu].filter", where, i);
			return rfail(r, err, sub, "expected a string (a substring of tensor names), not %s",
				     json_type(f));
		}
		if (!val)
			return rfail(r, err, sub, "entry without a \"value\"");
		set_where(sub, sizeof(sub), "%s[%zu].value", where, i);
		if (cJSON_IsNumber(val)) {
			if (check_number(r, pd, val->valuedouble, sub, err) < 0)
				return -1;
		} else if (cJSON_IsArray(val)) {
			if (check_gradient(r, pd, val, sub, err) < 0)
				return -1;
		} else {
			return rfail(r, err, sub, "expected a number or a list of numbers, not %s",
				     json_type(val));
		}
	}
	return 0;
}

static bool setting_true(const cJSON *v)
{
	return cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble != 0);
}

/* Is parameter p used by this recipe (given its weld settings)? */
static bool param_in_use(const weld_recipe *r, enum weld_param p)
{
	if (!(r->m->params & WELD_PB(p)))
		return false;
	return p != WELD_P_DENSITY || weld_method_uses(&r->o, r->m->method, p);
}

enum level { LV_TOP, LV_SLICE, LV_SOURCE };

static int parse_params(const weld_recipe *r, const cJSON *obj, enum level lv, const char *where,
			struct weld_error *err)
{
	const char *all[WELD_P_COUNT], *mine[WELD_P_COUNT];
	char path[WHERE_LEN], list[256];

	if (!cJSON_IsObject(obj))
		return rfail(r, err, where, "expected an object of parameters, not %s", json_type(obj));
	if (check_dups(r, obj, where, err) < 0)
		return -1;
	for (int p = 0; p < WELD_P_COUNT; p++) {
		all[p] = weld_param_defs[p].name;
		mine[p] = r->m->params & WELD_PB(p) ? weld_param_defs[p].name : NULL;
	}
	for (const cJSON *k = obj->child; k; k = k->next) {
		int p = -1;
		const struct weld_param_def *pd;

		set_where(path, sizeof(path), "%s.%s", where, k->string);
		for (int i = 0; i < WELD_P_COUNT && p < 0; i++)
			if (strcmp(k->string, all[i]) == 0)
				p = i;
		if (p < 0) {
			const char *near = weld_suggest(k->string, mine, WELD_P_COUNT);

			if (!near)
				near = weld_suggest(k->string, all, WELD_P_COUNT);
			method_params(r->m, list, sizeof(list));
			if (near)
				return rfail(r, err, path, "unknown parameter (did you mean '%s'?)", near);
			return rfail(r, err, path, "unknown parameter (%s takes: %s)", r->m->name, list);
		}
		pd = &weld_param_defs[p];
		if (!(r->m->params & WELD_PB(p))) {
			method_params(r->m, list, sizeof(list));
			return rfail(r, err, path, "'%s' is not a parameter of %s (it takes: %s)",
				     pd->name, r->m->name, list);
		}
		if (pd->kind == WELD_WHOLE_MERGE && lv != LV_TOP)
			return rfail(r, err, path, "'%s' holds for the whole merge: set it in the top-level parameters",
				     pd->name);
		if (pd->kind == WELD_PER_TENSOR && lv == LV_SOURCE)
			return rfail(r, err, path, "'%s' is not a per-model parameter: set it in the top-level or a slice's parameters",
				     pd->name);
		if (!param_in_use(r, (enum weld_param)p))
			return rfail(r, err, path, "'%s' is used by consensus only with \"weld\": {\"from\": \"ties\"}",
				     pd->name);
		if (check_setting(r, pd, k, path, err) < 0)
			return -1;
		if (p == WELD_P_RESCALE && setting_true(k) && r->m->method != WELD_METHOD_DARE)
			return rfail(r, err, path, "rescale: true (mergekit's L1 rescaling of the kept values) is supported only by the dare methods");
	}
	return 0;
}

/* ---------------------------------------------------------------- the weld object */

static int parse_size_value(const weld_recipe *r, const cJSON *v, const char *where,
			    uint64_t *out, struct weld_error *err)
{
	if (cJSON_IsString(v)) {
		if (weld_parse_size(v->valuestring, out) < 0)
			return rfail(r, err, where, "'%s' is not a size (e.g. 512M, 5G, 2Gi)", v->valuestring);
		return 0;
	}
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_SEED_EXACT &&
	    v->valuedouble == floor(v->valuedouble)) {
		*out = (uint64_t)v->valuedouble;
		return 0;
	}
	return rfail(r, err, where, "expected a byte count or a size string such as \"5G\", not %s",
		     cJSON_IsNumber(v) ? "a negative or fractional number" : json_type(v));
}

static int parse_enum(const weld_recipe *r, const cJSON *v, const char *where,
		      const char *const *names, int *out, struct weld_error *err)
{
	char all[128];
	size_t n = 0;

	while (names[n])
		n++;
	if (cJSON_IsString(v) && (*out = weld_name_index(names, v->valuestring)) >= 0)
		return 0;
	weld_list_names(all, sizeof(all), names, n);
	if (cJSON_IsString(v)) {
		const char *near = weld_suggest(v->valuestring, names, n);

		if (near)
			return rfail(r, err, where, "unknown value '%s' (did you mean '%s'?)",
				     v->valuestring, near);
		return rfail(r, err, where, "unknown value '%s' (expected one of: %s)",
			     v->valuestring, all);
	}
	return rfail(r, err, where, "expected one of %s (a string), not %s", all, json_type(v));
}

static bool combines_ties(const weld_recipe *r)
{
	return weld_method_elects_signs(&r->o, r->m->method);
}

static int parse_weld(weld_recipe *r, const cJSON *obj, struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	const char *mine[WELD_K_COUNT];
	char path[WHERE_LEN], list[256];
	int v;

	if (!cJSON_IsObject(obj))
		return rfail(r, err, "weld", "expected an object, not %s", json_type(obj));
	if (check_dups(r, obj, "weld", err) < 0)
		return -1;
	for (int k = 0; k < WELD_K_COUNT; k++)
		mine[k] = (m->keys | WELD_K_GENERAL) & WELD_KB(k) ? weld_key_names[k] : NULL;
	for (const cJSON *e = obj->child; e; e = e->next) {
		int k = -1;

		set_where(path, sizeof(path), "weld.%s", e->string);
		for (int i = 0; i < WELD_K_COUNT && k < 0; i++)
			if (weld_key_names[i] && strcmp(e->string, weld_key_names[i]) == 0)
				k = i;
		weld_list_names(list, sizeof(list), mine, WELD_K_COUNT);
		if (k < 0) {
			const char *near = weld_suggest(e->string, mine, WELD_K_COUNT);

			if (!near)
				near = weld_suggest(e->string, weld_key_names, WELD_K_COUNT);
			if (near)
				return rfail(r, err, path, "unknown key (did you mean '%s'?)", near);
			return rfail(r, err, path, "unknown key (for %s: %s)", m->name, list);
		}
		if (!((m->keys | WELD_K_GENERAL) & WELD_KB(k)))
			return rfail(r, err, path, "'%s' is not used by %s (its weld keys: %s)",
				     weld_key_names[k], m->name, list);
		switch ((enum weld_key)k) {
		case WELD_K_SCOPE:
			if (parse_enum(r, e, path, weld_scope_names, &v, err) < 0)
				return -1;
			r->o.scope = (enum weld_scope)v;
			break;
		case WELD_K_SIGN:
			if (parse_enum(r, e, path, weld_sign_names, &v, err) < 0)
				return -1;
			r->o.sign = (enum weld_sign)v;
			r->sign_set = true;
			break;
		case WELD_K_RESCALE:
			if (parse_enum(r, e, path, weld_rescale_names, &v, err) < 0)
				return -1;
			r->o.rescale = (enum weld_rescale)v;
			r->rescale_set = true;
			break;
		case WELD_K_COMBINE:
			if (parse_enum(r, e, path, weld_combine_names, &v, err) < 0)
				return -1;
			if (m->combine_fixed && (enum weld_combine)v != m->combine)
				return rfail(r, err, path, "%s always %s (merge_method '%s' with combine '%s' does the other)",
					     m->name,
					     m->combine == WELD_COMBINE_TIES ? "elects signs (ties)" : "sums",
					     m->method == WELD_METHOD_DARE ? "dare" : "breadcrumbs",
					     weld_combine_names[v]);
			r->o.combine = (enum weld_combine)v;
			break;
		case WELD_K_FROM:
			if (parse_enum(r, e, path, weld_from_names, &v, err) < 0)
				return -1;
			r->o.from = (enum weld_from)v;
			break;
		case WELD_K_TRIM:
			if (!cJSON_IsNumber(e) || !(e->valuedouble > 0 && e->valuedouble <= 1))
				return rfail(r, err, path, "expected a density in (0, 1]");
			r->o.trim = e->valuedouble;
			r->trim_set = true;
			break;
		case WELD_K_K:
			if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
			    e->valuedouble < 0 || e->valuedouble > 64)
				return rfail(r, err, path, "expected an integer in [0, 64]");
			r->o.k = (int)e->valuedouble;
			break;
		case WELD_K_SEED:
			if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= MAX_SEED_EXACT &&
			    e->valuedouble == floor(e->valuedouble)) {
				r->o.seed = (uint64_t)e->valuedouble;
			} else if (cJSON_IsString(e) && e->valuestring[0] >= '0' && e->valuestring[0] <= '9') {
				char *end;

				errno = 0;
				r->o.seed = strtoull(e->valuestring, &end, 10);
				if (errno || *end)
					return rfail(r, err, path, "'%s' is not an integer in [0, 2^64)",
						     e->valuestring);
			} else {
				return rfail(r, err, path, "expected a non-negative integer (as a string above 2^53)");
			}
			break;
		case WELD_K_SHARD_SIZE:
			if (parse_size_value(r, e, path, &r->o.shard_size, err) < 0)
				return -1;
			break;
		case WELD_K_MAX_MEMORY:
			if (parse_size_value(r, e, path, &r->o.max_memory, err) < 0)
				return -1;
			break;
		case WELD_K_ALLOW_MISSING:
		case WELD_K_COPY_FILES:
			if (!cJSON_IsBool(e))
				return rfail(r, err, path, "expected true or false, not %s", json_type(e));
			if (k == WELD_K_ALLOW_MISSING)
				r->o.allow_missing = cJSON_IsTrue(e);
			else
				r->o.copy_files = cJSON_IsTrue(e);
			break;
		case WELD_K_MASKS:
		case WELD_K_COUNT:
			break;
		}
	}
	if (r->sign_set && !combines_ties(r))
		return rfail(r, err, "weld.sign", "%s", m->method == WELD_METHOD_CONSENSUS
			     ? "sign is used only with \"from\": \"ties\""
			     : "sign is used only with \"combine\": \"ties\"");
	if (r->trim_set && r->o.combine != WELD_COMBINE_TIES)
		return rfail(r, err, "weld.trim", "trim is used only with \"combine\": \"ties\"");
	return 0;
}

/* ---------------------------------------------------------------- the top level */

static int parse_dtype(const weld_recipe *r, const cJSON *v, const char *where, int *out,
		       const char **canon, struct weld_error *err)
{
	if (!cJSON_IsString(v))
		return rfail(r, err, where, "expected a dtype name such as \"bfloat16\", not %s",
			     json_type(v));
	if (weld_dtype_parse_output(v->valuestring, false, out) == 0) {
		*canon = weld_dtype_torch_name((enum weld_dtype)*out);
		return 0;
	}
	if (strcmp(v->valuestring, "int64") == 0)
		return rfail(r, err, where, "weld merges floating-point tensors: int64 is not an output dtype (integer tensors are copied as they are)");
	return rfail(r, err, where, "unknown dtype '%s' (expected bfloat16, float16, float32 or float64)",
		     v->valuestring);
}

static int parse_models(weld_recipe *r, const cJSON *arr, struct weld_error *err)
{
	static const char *const keys[] = { "model", "parameters" };
	struct rslice *sl;
	char where[WHERE_LEN];
	size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;

	if (!cJSON_IsArray(arr) || !n)
		return rfail(r, err, "models", "expected a non-empty list of {\"model\": ...} objects");
	r->slices = calloc(1, sizeof(*r->slices));
	if (!r->slices || !(r->slices->src = calloc(n, sizeof(*sl->src))))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->nslices = 1;
	sl = r->slices;
	sl->base = r->base;
	sl->base_src = -1;
	snprintf(sl->where, sizeof(sl->where), "models");
	for (const cJSON *e = arr->child; e; e = e->next, i++) {
		struct rsource *s = &sl->src[i];
		const cJSON *mv;

		set_where(s->where, sizeof(s->where), "models[%zu]", i);
		s->a = s->b = -1;
		if (!cJSON_IsObject(e))
			return rfail(r, err, s->where, "expected {\"model\": ...}, not %s", json_type(e));
		if (check_keys(r, e, s->where, keys, 2, err) < 0)
			return -1;
		mv = cJSON_GetObjectItemCaseSensitive(e, "model");
		set_where(where, sizeof(where), "%s.model", s->where);
		if (!mv)
			return rfail(r, err, s->where, "missing \"model\"");
		if (add_model(r, mv, where, &s->model, err) < 0)
			return -1;
		s->params = cJSON_GetObjectItemCaseSensitive(e, "parameters");
		set_where(where, sizeof(where), "%s.parameters", s->where);
		if (s->params && parse_params(r, s->params, LV_SOURCE, where, err) < 0)
			return -1;
		if (s->model == r->base && sl->base_src < 0)
			sl->base_src = (int)i;
		sl->nsrc++;
	}
	return 0;
}

static int parse_range(const weld_recipe *r, const cJSON *v, const char *where, int *a, int *b,
		       struct weld_error *err)
{
	const cJSON *x, *y;

	if (!v)
		return rfail(r, err, where, "missing (each source of a slice needs [start, end])");
	x = cJSON_IsArray(v) ? v->child : NULL;
	y = x ? x->next : NULL;
	if (!x || !y || y->next || !cJSON_IsNumber(x) || !cJSON_IsNumber(y) ||
	    x->valuedouble != floor(x->valuedouble) || y->valuedouble != floor(y->valuedouble) ||
	    x->valuedouble < 0 || y->valuedouble > 1e6 || x->valuedouble > y->valuedouble)
		return rfail(r, err, where, "expected [start, end]: two integers with 0 <= start <= end (end excluded)");
	*a = (int)x->valuedouble;
	*b = (int)y->valuedouble;
	return 0;
}

static int parse_slices(weld_recipe *r, const cJSON *arr, struct weld_error *err)
{
	static const char *const slice_keys[] = { "sources", "parameters", "base_model", "residual_weight" };
	static const char *const src_keys[] = { "model", "layer_range", "parameters" };
	size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
	char where[WHERE_LEN];

	if (!cJSON_IsArray(arr) || !n)
		return rfail(r, err, "slices", "expected a non-empty list of {\"sources\": [...]} objects");
	r->slices = calloc(n, sizeof(*r->slices));
	if (!r->slices)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->use_slices = true;
	for (const cJSON *e = arr->child; e; e = e->next, k++) {
		struct rslice *sl = &r->slices[k];
		const cJSON *srcs, *bm;
		size_t ns, j = 0;

		r->nslices++;
		set_where(sl->where, sizeof(sl->where), "slices[%zu]", k);
		sl->base = r->base;
		sl->base_src = -1;
		if (!cJSON_IsObject(e))
			return rfail(r, err, sl->where, "expected {\"sources\": [...]}, not %s", json_type(e));
		if (check_keys(r, e, sl->where, slice_keys, 4, err) < 0)
			return -1;
		if (cJSON_GetObjectItemCaseSensitive(e, "residual_weight")) {
			set_where(where, sizeof(where), "%s.residual_weight", sl->where);
			return rfail(r, err, where, "not supported (mergekit reads it but never uses it)");
		}
		bm = cJSON_GetObjectItemCaseSensitive(e, "base_model");
		if (bm) {
			set_where(where, sizeof(where), "%s.base_model", sl->where);
			if (add_model(r, bm, where, &sl->base, err) < 0)
				return -1;
			sl->base_given = true;
		}
		srcs = cJSON_GetObjectItemCaseSensitive(e, "sources");
		ns = (size_t)cJSON_GetArraySize(srcs);
		set_where(where, sizeof(where), "%s.sources", sl->where);
		if (!cJSON_IsArray(srcs) || !ns)
			return rfail(r, err, srcs ? where : sl->where,
				     "expected a non-empty list of sources {\"model\", \"layer_range\"}");
		sl->src = calloc(ns, sizeof(*sl->src));
		if (!sl->src)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		for (const cJSON *se = srcs->child; se; se = se->next, j++) {
			struct rsource *s = &sl->src[j];
			const cJSON *mv;

			set_where(s->where, sizeof(s->where), "%s.sources[%zu]", sl->where, j);
			if (!cJSON_IsObject(se))
				return rfail(r, err, s->where, "expected {\"model\", \"layer_range\"}, not %s",
					     json_type(se));
			if (check_keys(r, se, s->where, src_keys, 3, err) < 0)
				return -1;
			mv = cJSON_GetObjectItemCaseSensitive(se, "model");
			set_where(where, sizeof(where), "%s.model", s->where);
			if (!mv)
				return rfail(r, err, s->where, "missing \"model\"");
			if (add_model(r, mv, where, &s->model, err) < 0)
				return -1;
			set_where(where, sizeof(where), "%s.layer_range", s->where);
			if (parse_range(r, cJSON_GetObjectItemCaseSensitive(se, "layer_range"), where,
					&s->a, &s->b, err) < 0)
				return -1;
			if (j > 0 && s->b - s->a != sl->src[0].b - sl->src[0].a)
				return rfail(r, err, where, "%d layers, but %s.sources[0] has %d: the sources of a slice are merged layer by layer",
					     s->b - s->a, sl->where, sl->src[0].b - sl->src[0].a);
			s->params = cJSON_GetObjectItemCaseSensitive(se, "parameters");
			set_where(where, sizeof(where), "%s.parameters", s->where);
			if (s->params && parse_params(r, s->params, LV_SOURCE, where, err) < 0)
				return -1;
			if (s->model == sl->base && sl->base_src < 0)
				sl->base_src = (int)j;
			sl->nsrc++;
		}
		sl->params = cJSON_GetObjectItemCaseSensitive(e, "parameters");
		set_where(where, sizeof(where), "%s.parameters", sl->where);
		if (sl->params && parse_params(r, sl->params, LV_SLICE, where, err) < 0)
			return -1;
	}
	return 0;
}

/* Sources of a slice that are merged (all but the base's, for methods on
 * task vectors). */
static size_t merged_sources(const weld_recipe *r, const struct rslice *sl)
{
	size_t n = 0;

	for (size_t j = 0; j < sl->nsrc; j++)
		if (r->m->base != WELD_BASE_REQUIRED || sl->src[j].model != sl->base)
			n++;
	return n;
}

/* What the method needs from the model lists (files are checked later). */
static int check_structure(const weld_recipe *r, struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	char where[WHERE_LEN];

	for (size_t k = 0; k < r->nslices; k++) {
		const struct rslice *sl = &r->slices[k];
		size_t n = merged_sources(r, sl);
		const char *at = r->use_slices ? sl->where : "models";

		if (m->base == WELD_BASE_REQUIRED) {
			if (sl->base < 0)
				return rfail(r, err, "base_model", "%s needs a base_model (the model whose task vectors are merged%s)",
					     m->name, m->method == WELD_METHOD_SLERP ? "; t = 0 gives it" : "");
			if (r->use_slices && sl->base_src < 0) {
				set_where(where, sizeof(where), "%s.sources", sl->where);
				return rfail(r, err, where, "the base model '%s' is not among this slice's sources (each layer is merged against the base's same layer)",
					     r->models[sl->base].label);
			}
			if (n == 0)
				return rfail(r, err, at, "no model to merge besides the base model");
			if (m->method == WELD_METHOD_SLERP && n != 1)
				return rfail(r, err, at, "slerp merges exactly two models, the base and one other (found %zu others)",
					     n);
			if (m->method == WELD_METHOD_CONSENSUS && (size_t)r->o.k > n)
				return rfail(r, err, "weld.k", "k = %d is more than the %zu models of %s: nothing would be kept",
					     r->o.k, n, at);
		} else if (m->base == WELD_BASE_NONE && !r->use_slices && r->base >= 0) {
			bool listed = false;

			for (size_t j = 0; j < sl->nsrc; j++)
				listed = listed || sl->src[j].model == r->base;
			if (!listed)
				return rfail(r, err, "base_model", "%s does not merge against a base: list '%s' under models (with a weight) or remove base_model",
					     m->name, r->models[r->base].label);
		} else if (m->base == WELD_BASE_DONOR && sl->nsrc != 1) {
			if (!r->use_slices)
				return rfail(r, err, "models", "passthrough copies one model (found %zu); use slices to stack layers of several",
					     sl->nsrc);
			set_where(where, sizeof(where), "%s.sources", sl->where);
			return rfail(r, err, where, "passthrough takes one source per slice (found %zu)", sl->nsrc);
		}
	}
	if (m->params & WELD_PB(WELD_P_T) && !(r->params && cJSON_GetObjectItemCaseSensitive(r->params, "t")))
		for (size_t k = 0; k < r->nslices; k++) {
			const struct rslice *sl = &r->slices[k];

			if (r->use_slices && sl->params && cJSON_GetObjectItemCaseSensitive(sl->params, "t"))
				continue;
			return rfail(r, err, "parameters.t", "slerp needs t (0 gives the base model, 1 the other; a list gives a gradient over the layers)");
		}
	return 0;
}

static const struct weld_method_spelling *find_method(const weld_recipe *r, const cJSON *v,
						       struct weld_error *err)
{
	const struct weld_method_spelling *m;
	const char *names[64];
	size_t n = 0;
	char all[256];
	const char *near;

	while (n < 64 && (m = weld_method_spelling_at(n, WELD_IN_RECIPE)))
		names[n++] = m->name;
	weld_list_names(all, sizeof(all), names, n);
	if (!v) {
		rfail(r, err, "merge_method", "missing (one of: %s)", all);
		return NULL;
	}
	if (!cJSON_IsString(v)) {
		rfail(r, err, "merge_method", "expected a method name (a string), not %s", json_type(v));
		return NULL;
	}
	if ((m = weld_method_find(v->valuestring, WELD_IN_RECIPE)))
		return m;
	if (weld_method_mergekit_only(v->valuestring)) {
		rfail(r, err, "merge_method", "'%s' is a mergekit method weld does not implement (weld's: %s)",
		      v->valuestring, all);
		return NULL;
	}
	if (strcmp(v->valuestring, "expert-merge") == 0 || strcmp(v->valuestring, "expert_merge") == 0) {
		rfail(r, err, "merge_method", "expert merging has its own command: weld expert-merge");
		return NULL;
	}
	near = weld_suggest(v->valuestring, names, n);
	if (near)
		rfail(r, err, "merge_method", "unknown method '%s' (did you mean '%s'?)", v->valuestring, near);
	else
		rfail(r, err, "merge_method", "unknown method '%s' (one of: %s)", v->valuestring, all);
	return NULL;
}

static int parse_root(weld_recipe *r, struct weld_error *err)
{
	static const struct { const char *key, *why; } unsupported[] = {
		{ "modules", "multi-module recipes are not supported" },
		{ "tokenizer", "building a tokenizer is not supported: weld copies the tokenizer files of the base model (else the first model)" },
		{ "chat_template", "not supported: weld copies the tokenizer files, chat template included, of the base model (else the first model)" },
	};
	const cJSON *root = r->root, *v;

	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
		if (cJSON_GetObjectItemCaseSensitive(root, unsupported[i].key))
			return rfail(r, err, unsupported[i].key, "%s", unsupported[i].why);
	if (check_keys(r, root, "", top_keys, sizeof(top_keys) / sizeof(top_keys[0]), err) < 0)
		return -1;
	r->m = find_method(r, cJSON_GetObjectItemCaseSensitive(root, "merge_method"), err);
	if (!r->m)
		return -1;
	weld_merge_opts_init(&r->o, r->m);
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "weld")) && parse_weld(r, v, err) < 0)
		return -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "base_model")) &&
	    add_model(r, v, "base_model", &r->base, err) < 0)
		return -1;
	{
		const cJSON *mv = cJSON_GetObjectItemCaseSensitive(root, "models");
		const cJSON *sv = cJSON_GetObjectItemCaseSensitive(root, "slices");

		if (mv && sv)
			return rfail(r, err, "slices", "give either models or slices, not both");
		if (!mv && !sv)
			return rfail(r, err, NULL, "the recipe needs models (whole models) or slices (layer ranges)");
		if (mv ? parse_models(r, mv, err) < 0 : parse_slices(r, sv, err) < 0)
			return -1;
	}
	r->params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
	if (r->params) {
		if (parse_params(r, r->params, LV_TOP, "parameters", err) < 0)
			return -1;
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "normalize")))
			r->o.normalize = setting_true(v);
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "rescale")) && !r->rescale_set)
			r->o.rescale = setting_true(v) ? WELD_RESCALE_L1 : WELD_RESCALE_NONE;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "dtype")) &&
	    parse_dtype(r, v, "dtype", &r->o.dtype, &r->dtype_name, err) < 0)
		return -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "out_dtype"))) {
		int d;

		if (parse_dtype(r, v, "out_dtype", &d, &r->out_dtype_name, err) < 0)
			return -1;
		r->o.dtype = d;   /* weld computes in float32: out_dtype wins */
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_source"))) {
		if (!cJSON_IsString(v) || strcmp(v->valuestring, "base") != 0)
			return rfail(r, err, "tokenizer_source", "only \"base\" is supported: weld copies the tokenizer files of the base model (else the first model)");
		r->tokenizer_source = v->valuestring;
	}
	return check_structure(r, err);
}

/* "line L, column C" of a byte offset. */
static void text_position(const char *text, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

int weld_recipe_parse(weld_recipe **out, const char *text, size_t len, const char *label,
		      const char *dir, struct weld_error *err)
{
	weld_recipe *r = calloc(1, sizeof(*r));
	const char *end = NULL;
	size_t i = 0;

	*out = NULL;
	if (!r)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->base = -1;
	r->label = strdup(label);
	r->dir = strdup(dir ? dir : ".");
	if (!r->label || !r->dir) {
		weld_recipe_free(r);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	while (i < len && strchr(" \t\r\n", text[i]))
		i++;
	if (i < len && text[i] != '{') {
		rfail(r, err, NULL, "not a JSON object (a YAML config converts with: yq -o=json config.yml > recipe.json)");
		weld_recipe_free(r);
		return -1;
	}
	r->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (end) {
		size_t off = (size_t)(end - text);

		while (off < len && strchr(" \t\r\n", text[off]))
			off++;
		if (r->root && off < len && text[off]) {
			cJSON_Delete(r->root);
			r->root = NULL;
			end = text + off;
		}
	}
	if (!r->root || !cJSON_IsObject(r->root)) {
		int line, col;

		if (!r->root && end && end >= text && (size_t)(end - text) <= len) {
			text_position(text, (size_t)(end - text), &line, &col);
			rfail(r, err, NULL, "invalid JSON at line %d, column %d", line, col);
		} else {
			rfail(r, err, NULL, "expected a JSON object");
		}
		weld_recipe_free(r);
		return -1;
	}
	if (parse_root(r, err) < 0) {
		weld_recipe_free(r);
		return -1;
	}
	*out = r;
	return 0;
}

int weld_recipe_load(weld_recipe **out, const char *path, struct weld_error *err)
{
	char *text = NULL, *copy, *dir;
	size_t n = 0;
	struct stat st;
	FILE *f;
	int ret;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f)
		return weld_fail_errno(err, "cannot read recipe '%s'", path);
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > RECIPE_MAX_BYTES) {
		fclose(f);
		return weld_fail(err, WELD_ERR_IO, "cannot read recipe '%s': not a file of at most 16 MB",
				 path);
	}
	text = malloc((size_t)st.st_size + 1);
	if (text)
		n = fread(text, 1, (size_t)st.st_size, f);
	if (!text || ferror(f)) {
		fclose(f);
		free(text);
		return text ? weld_fail_errno(err, "cannot read recipe '%s'", path)
			    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	fclose(f);
	text[n] = 0;
	copy = strdup(path);
	dir = copy ? realpath(dirname(copy), NULL) : NULL;
	ret = dir ? weld_recipe_parse(out, text, n, path, dir, err)
		  : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	free(dir);
	free(copy);
	free(text);
	return ret;
}

int weld_recipe_from_output(weld_recipe **out, const char *dir, struct weld_error *err)
{
	weld_model *m = NULL;
	const char *text;
	char *label = NULL;
	cJSON *probe = NULL;
	int ret = -1;

	*out = NULL;
	if (weld_model_open(&m, dir, err) < 0)
		return -1;
	text = weld_model_metadata(m, "weld_recipe");
	if (!text) {
		weld_fail(err, WELD_ERR_ARG, "'%s': no weld_recipe in its metadata (not written by weld?)", dir);
		goto out;
	}
	probe = cJSON_Parse(text);
	if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(probe, "command"))) {
		char cmd[700];
		size_t o = (size_t)snprintf(cmd, sizeof(cmd), "weld");
		const cJSON *a;

		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(probe, "command"))
			if (cJSON_IsString(a) && o < sizeof(cmd))
				o += (size_t)snprintf(cmd + o, sizeof(cmd) - o, " %s", a->valuestring);
		weld_fail(err, WELD_ERR_ARG, "'%s' was written by a command line, not a recipe: %s",
			  dir, cmd);
		goto out;
	}
	label = strfmt("%s:weld_recipe", dir);
	if (!label) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	ret = weld_recipe_parse(out, text, strlen(text), label, dir, err);
out:
	free(label);
	cJSON_Delete(probe);
	weld_model_close(m);
	return ret;
}

void weld_recipe_free(weld_recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nmodels; i++) {
		free(r->models[i].label);
		free(r->models[i].path);
		free(r->models[i].where);
	}
	for (size_t k = 0; k < r->nslices; k++)
		free(r->slices[k].src);
	free(r->models);
	free(r->slices);
	cJSON_Delete(r->root);
	cJSON_free(r->json);
	free(r->config_from);
	free(r->labels);
	free(r->layer_map);
	free(r->label);
	free(r->dir);
	free(r);
}

/* ---------------------------------------------------------------- evaluation */

/*
 * The layer of a tensor: its first dot-separated component made only of
 * digits ("model.layers.12.mlp.up_proj.weight" -> 12), or -1. *at and *len
 * locate that component in the name.
 */
static long name_layer(const char *name, size_t *at, size_t *len)
{
	const char *part = name;

	for (const char *c = name;; c++) {
		if (*c != '.' && *c)
			continue;
		if (c > part && c - part <= 9) {
			const char *d = part;

			while (d < c && *d >= '0' && *d <= '9')
				d++;
			if (d == c) {
				if (at)
					*at = (size_t)(part - name);
				if (len)
					*len = (size_t)(c - part);
				return strtol(part, NULL, 10);
			}
		}
		if (!*c)
			return -1;
		part = c + 1;
	}
}

/* The name with its layer component replaced by `layer` (caller frees). */
static char *rename_layer(const char *name, long layer)
{
	size_t at, len;

	if (name_layer(name, &at, &len) < 0)
		return strdup(name);
	return strfmt("%.*s%ld%s", (int)at, name, layer, name + at + len);
}

static int model_layers(const weld_model *m)
{
	long top = -1;

	for (size_t i = 0; i < weld_model_count(m); i++) {
		long l = name_layer(weld_model_tensor(m, i)->name, NULL, NULL);

		if (l > top)
			top = l;
	}
	return (int)(top + 1);
}

/* Piecewise-linear interpolation of a gradient at t in [0, 1]. */
static double gradient_at(const cJSON *list, double t)
{
	int n = cJSON_GetArraySize(list), i0, i1;
	double x, frac;

	if (n == 1)
		return list->child->valuedouble;
	x = t * (double)(n - 1);
	i0 = (int)floor(x);
	if (i0 > n - 1)
		i0 = n - 1;
	i1 = i0 + 1 < n ? i0 + 1 : n - 1;
	frac = x - (double)i0;
	return (1 - frac) * cJSON_GetArrayItem(list, i0)->valuedouble +
	       frac * cJSON_GetArrayItem(list, i1)->valuedouble;
}

/*
 * Evaluate a checked setting for one tensor. Returns 1 with *out set, or 0
 * when it is a filter list with no entry for this tensor (the next level of
 * precedence then decides). *entry is the index of the filter entry used, or
 * -1.
 */
static int eval_setting(const cJSON *v, const char *name, double t, double *out, int *entry)
{
	int i = 0;

	*entry = -1;
	if (cJSON_IsBool(v)) {
		*out = cJSON_IsTrue(v);
		return 1;
	}
	if (cJSON_IsNumber(v)) {
		*out = v->valuedouble;
		return 1;
	}
	if (cJSON_IsNumber(v->child)) {
		*out = gradient_at(v, t);
		return 1;
	}
	for (const cJSON *e = v->child; e; e = e->next, i++) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "filter");
		const cJSON *val = cJSON_GetObjectItemCaseSensitive(e, "value");

		if (!f || !strcmp(f->valuestring, "*") || strstr(name, f->valuestring)) {
			*entry = i;
			*out = cJSON_IsNumber(val) ? val->valuedouble : gradient_at(val, t);
			return 1;
		}
	}
	return 0;
}

/* The method's default for p, or false when it has none (t, scale). */
static bool param_default(const weld_recipe *r, enum weld_param p, double *out)
{
	return weld_method_default(r->m, p, out);
}

/*
 * The value of p for one source of one tensor, by mergekit's precedence:
 * the source's parameters (per-model parameters only), the slice's, the top
 * level's, then the method's default. Per-model parameters match filters
 * against the source's tensor name, the others against the output name.
 * Returns 1 with *out (and *where: the JSON path that decided, "" for a
 * default), or 0 when nothing gives a value.
 */
static int param_value(const weld_recipe *r, enum weld_param p, const struct rsource *rs,
		       const struct rslice *sl, const char *out_name, const char *in_name,
		       double t, double *out, char *where, size_t wlen)
{
	const struct weld_param_def *pd = &weld_param_defs[p];
	const char *name = pd->kind == WELD_PER_MODEL ? in_name : out_name;
	const cJSON *levels[3];
	const char *paths[3];
	int entry;

	levels[0] = pd->kind == WELD_PER_MODEL && rs ? rs->params : NULL;
	paths[0] = rs ? rs->where : "";
	levels[1] = r->use_slices && sl ? sl->params : NULL;
	paths[1] = sl ? sl->where : "";
	levels[2] = r->params;
	paths[2] = NULL;
	for (int l = 0; l < 3; l++) {
		const cJSON *v = levels[l] ? cJSON_GetObjectItemCaseSensitive(levels[l], pd->name) : NULL;

		if (!v || !eval_setting(v, name, t, out, &entry))
			continue;
		if (paths[l] && entry >= 0)
			set_where(where, wlen, "%s.parameters.%s[%d]", paths[l], pd->name, entry);
		else if (paths[l])
			set_where(where, wlen, "%s.parameters.%s", paths[l], pd->name);
		else if (entry >= 0)
			set_where(where, wlen, "parameters.%s[%d]", pd->name, entry);
		else
			set_where(where, wlen, "parameters.%s", pd->name);
		return 1;
	}
	where[0] = 0;
	return param_default(r, p, out) ? 1 : 0;
}

/*
 * Fill one source of a job (and the job's own values) for one tensor.
 * job->nsrc is the number of sources already filled, so 0 marks the first.
 */
static int eval_source(weld_recipe *r, const struct rsource *rs, const struct rslice *sl,
		       const char *out_name, const char *in_name, double t,
		       struct weld_source *src, struct weld_job *job, struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	char where[WHERE_LEN];
	double v;

	if (m->params & WELD_PB(WELD_P_WEIGHT))
		param_value(r, WELD_P_WEIGHT, rs, sl, out_name, in_name, t, &src->weight, where, sizeof(where));
	if (param_in_use(r, WELD_P_DENSITY))
		param_value(r, WELD_P_DENSITY, rs, sl, out_name, in_name, t, &src->density, where, sizeof(where));
	if (m->params & WELD_PB(WELD_P_MASK_LAMBDA))
		param_value(r, WELD_P_MASK_LAMBDA, rs, sl, out_name, in_name, t, &src->mask_lambda, where,
			    sizeof(where));
	if (m->params & WELD_PB(WELD_P_GAMMA)) {
		param_value(r, WELD_P_GAMMA, rs, sl, out_name, in_name, t, &v, where, sizeof(where));
		if (job->nsrc == 0) {
			job->gamma = v;
			snprintf(r->gamma_where, sizeof(r->gamma_where), "%s",
				 where[0] ? where : "the default");
		} else if (v != job->gamma) {
			return rfail(r, err, where[0] ? where : rs->where,
				     "gamma %g for tensor '%s' differs from %g (%s) for another model: weld takes one gamma per tensor",
				     v, out_name, job->gamma, r->gamma_where);
		}
	}
	if (m->params & WELD_PB(WELD_P_SCALE) &&
	    param_value(r, WELD_P_SCALE, rs, sl, out_name, in_name, t, &v, where, sizeof(where))) {
		/* a scaled copy is a one-model weighted sum */
		src->weight = v;
		job->method = WELD_METHOD_AVERAGE;
	}
	if (m->params & WELD_PB(WELD_P_LAMBDA))
		param_value(r, WELD_P_LAMBDA, rs, sl, out_name, in_name, t, &job->lambda, where, sizeof(where));
	if (m->params & WELD_PB(WELD_P_T) &&
	    !param_value(r, WELD_P_T, rs, sl, out_name, in_name, t, &job->t, where, sizeof(where))) {
		if (r->use_slices && sl->params && cJSON_GetObjectItemCaseSensitive(sl->params, "t"))
			set_where(where, sizeof(where), "%s.parameters.t", sl->where);
		else
			set_where(where, sizeof(where), "parameters.t");
		return rfail(r, err, where, "no entry gives t for tensor '%s' (add a {\"value\": ...} without a filter)",
			     out_name);
	}
	return 0;
}

/* t of the gradients for a layer at offset o of n layers (mergekit: a
 * slice of one layer gives 1); tensors outside the layers use 0. */
static double layer_t(long o, long n)
{
	if (o < 0)
		return 0;
	return n > 1 ? (double)o / (double)(n - 1) : 1;
}

/* ---------------------------------------------------------------- planning */

struct models_ctx {
	weld_recipe *r;
	const struct rsource **slot;
	int layers;
};

static int models_param(void *ctx, const char *tensor, int slot, struct weld_source *src,
			struct weld_job *job, struct weld_error *err)
{
	const struct models_ctx *c = ctx;
	double t = layer_t(name_layer(tensor, NULL, NULL), c->layers);

	return eval_source(c->r, c->slot[slot], &c->r->slices[0], tensor, tensor, t, src, job, err);
}

/* Put the recipe's name before an engine message, whose hints name the
 * command-line options: say them as recipe keys. */
static void prefix_label(const weld_recipe *r, struct weld_error *err)
{
	static const char *const hints[][2] = {
		{ "--no-normalize", "\"normalize\": false" },
		{ "--allow-missing", "weld.allow_missing" },
		{ "--scope model", "weld.scope 'model'" },
		{ "--scope row", "weld.scope 'row'" },
	};
	char msg[sizeof(err->msg)];
	size_t o = 0;

	if (!err)
		return;
	for (const char *c = err->msg; *c && o + 1 < sizeof(msg);) {
		size_t h = 0;

		while (h < sizeof(hints) / sizeof(hints[0]) &&
		       strncmp(c, hints[h][0], strlen(hints[h][0])) != 0)
			h++;
		if (h < sizeof(hints) / sizeof(hints[0])) {
			o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s", hints[h][1]);
			c += strlen(hints[h][0]);
		} else {
			msg[o++] = *c++;
		}
	}
	msg[o < sizeof(msg) ? o : sizeof(msg) - 1] = 0;
	weld_fail(err, err->status, "%s: %s", r->label, msg);
}

/* models: every tensor of the base (else the first model), matched by name. */
static int plan_models(weld_recipe *r, weld_plan *p, struct weld_error *err)
{
	const struct rslice *sl = &r->slices[0];
	const struct rsource **slot = calloc(sl->nsrc, sizeof(*slot));
	struct weld_model_params *mp = calloc(sl->nsrc, sizeof(*mp));
	int *idx = calloc(sl->nsrc, sizeof(*idx)), base = -1, ref;
	struct models_ctx c = { r, slot, 0 };
	size_t n = 0;
	int ret = -1;

	if (!slot || !mp || !idx) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (r->m->base == WELD_BASE_REQUIRED)
		base = r->base;
	for (size_t j = 0; j < sl->nsrc; j++) {
		const struct rsource *s = &sl->src[j];

		if (s->model == base) {
			if (s->params && s->params->child && r->o.warn) {
				char msg[512];

				snprintf(msg, sizeof(msg), "%s: %s.parameters: the base model's parameters are not used",
					 r->label, s->where);
				r->o.warn(r->o.cb_ctx, msg);
			}
			continue;
		}
		slot[n] = s;
		idx[n] = s->model;
		mp[n].weight = 1;
		mp[n].density = r->m->density;
		mp[n].mask_lambda = 0.6;
		n++;
	}
	ref = base >= 0 ? base : slot[0]->model;
	c.layers = r->models[ref].layers;
	for (size_t k = 0; k < n; k++) {
		const struct rmodel *mk = &r->models[slot[k]->model];

		if (mk->layers != c.layers) {
			char where[WHERE_LEN];

			set_where(where, sizeof(where), "%s.model", slot[k]->where);
			rfail(r, err, where, "'%s' has %d layers but '%s' has %d: whole models merge layer by layer (slices can pick layers)",
			      mk->label, mk->layers, r->models[ref].label, c.layers);
			goto out;
		}
	}
	ret = weld_plan_standard(p, base, idx, n, mp, 1.0, r->m->gamma, models_param, &c, err);
	if (ret < 0 && err && err->status != WELD_ERR_ARG)
		prefix_label(r, err);
out:
	free(slot);
	free(mp);
	free(idx);
	return ret;
}

/* Tensors outside the layers that come before them (embeddings); the
 * others (final norm, lm_head) come after, as mergekit plans them. */
static bool is_pre_weight(const char *name)
{
	return (strstr(name, "embed") && !strstr(name, "lm_head")) || strstr(name, "wte") ||
	       strstr(name, "wpe");
}

/* 0: same shape; 1: an embedding with more rows (its first rows are used);
 * -1: a mismatch (err filled). */
static int slice_shape(const weld_recipe *r, const struct rsource *s, const char *in_name,
		       const struct weld_tensor_info *t, const struct weld_tensor_info *ref,
		       const char *ref_label, struct weld_error *err)
{
	char a[128], b[128];
	int fit = weld_shape_fit(in_name, t, ref);

	if (fit >= 0)
		return fit;
	weld_shape_text(t, a, sizeof(a));
	weld_shape_text(ref, b, sizeof(b));
	return rfail(r, err, s->where, "tensor '%s': shape %s in '%s' but %s in '%s'", in_name, a,
		     r->models[s->model].label, b, ref_label);
}

static enum weld_dtype output_dtype(const weld_recipe *r, enum weld_dtype t)
{
	if (r->o.dtype >= 0)
		return (enum weld_dtype)r->o.dtype;
	if (t == WELD_F64 || t == WELD_F32 || t == WELD_F16 || t == WELD_BF16)
		return t;
	return WELD_BF16;
}

/* The source a slice's tensor list comes from: the base, else the first. */
static const struct rsource *slice_ref(const weld_recipe *r, const struct rslice *sl)
{
	if (r->m->base == WELD_BASE_REQUIRED && sl->base_src >= 0)
		return &sl->src[sl->base_src];
	return &sl->src[0];
}

/*
 * One output tensor of a slice: ref_name is the reference source's tensor,
 * offset the layer offset inside the slice (-1 for tensors outside the
 * layers, read under the same name from every source).
 */
static int slice_job(weld_recipe *r, weld_plan *p, const struct rslice *sl, long offset,
		     const char *ref_name, const char *out_name, double t, struct weld_error *err)
{
	const struct rsource *ref = slice_ref(r, sl);
	const weld_model *refm = weld_plan_model(p, ref->model);
	int64_t ri = weld_model_find(refm, ref_name);
	const struct weld_tensor_info *rt = weld_model_tensor(refm, (size_t)ri);
	struct weld_source *src = calloc(sl->nsrc + 1, sizeof(*src));
	struct weld_job j = { 0 };
	int number = 0, ret = -1;

	if (!src)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	j.name = out_name;
	j.ndim = rt->ndim;
	memcpy(j.shape, rt->shape, sizeof(j.shape));
	j.nelem = rt->nelem;
	j.base_model = -1;
	j.base_tensor = -1;
	j.mask_model = -1;
	j.mask_tensor = -1;
	j.lambda = 1;
	j.gamma = r->m->gamma;
	j.src = src;
	if (!weld_dtype_is_float(rt->dtype)) {
		j.method = WELD_METHOD_COPY;
		j.dtype = rt->dtype;
		src[j.nsrc++] = (struct weld_source){ .model = ref->model, .tensor = ri };
		ret = weld_plan_add_job(p, &j, err);
		goto out;
	}
	j.method = r->o.method;
	j.dtype = output_dtype(r, rt->dtype);
	if (r->m->base == WELD_BASE_REQUIRED) {
		j.base_model = ref->model;
		j.base_tensor = ri;
	}
	for (size_t k = 0; k < sl->nsrc; k++) {
		const struct rsource *s = &sl->src[k];
		const weld_model *m = weld_plan_model(p, s->model);
		char *in_name;
		int64_t ti;
		int shape;

		if (r->m->base == WELD_BASE_REQUIRED && s->model == sl->base)
			continue;
		number++;
		in_name = offset >= 0 ? rename_layer(ref_name, s->a + offset) : strdup(ref_name);
		if (!in_name) {
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto out;
		}
		ti = weld_model_find(m, in_name);
		if (ti < 0) {
			if (!r->o.allow_missing)
				rfail(r, err, s->where, "tensor '%s' is missing from '%s' (\"weld\": {\"allow_missing\": true} merges it over the models that have it)",
				      in_name, r->models[s->model].label);
			free(in_name);
			if (!r->o.allow_missing)
				goto out;
			continue;
		}
		if (!weld_dtype_is_float(weld_model_tensor(m, (size_t)ti)->dtype)) {
			rfail(r, err, s->where, "tensor '%s': dtype %s in '%s' but %s in '%s'", in_name,
			      weld_dtype_name(weld_model_tensor(m, (size_t)ti)->dtype),
			      r->models[s->model].label, weld_dtype_name(rt->dtype),
			      r->models[ref->model].label);
			free(in_name);
			goto out;
		}
		shape = slice_shape(r, s, in_name, weld_model_tensor(m, (size_t)ti), rt,
				    r->models[ref->model].label, err);
		if (shape == 1 && r->o.warn) {
			char msg[1024];

			snprintf(msg, sizeof(msg), "tensor '%s': '%s' has more rows than '%s': using the first %lld",
				 in_name, r->models[s->model].label, r->models[ref->model].label,
				 (long long)rt->shape[0]);
			r->o.warn(r->o.cb_ctx, msg);
		}
		src[j.nsrc] = (struct weld_source){
			.model = s->model, .tensor = ti, .rng_index = number, .weight = 1,
			.density = r->m->density, .mask_lambda = 0.6,
		};
		if (shape < 0 || eval_source(r, s, sl, out_name, in_name, t, &src[j.nsrc], &j, err) < 0) {
			free(in_name);
			goto out;
		}
		free(in_name);
		j.nsrc++;
	}
	if (!j.nsrc) {
		if (j.base_model < 0) {
			rfail(r, err, sl->where, "tensor '%s' is in none of this slice's models", ref_name);
			goto out;
		}
		j.method = WELD_METHOD_COPY;
		src[j.nsrc++] = (struct weld_source){ .model = j.base_model, .tensor = j.base_tensor };
		j.base_model = -1;
		j.base_tensor = -1;
	}
	ret = weld_plan_add_job(p, &j, err);
out:
	free(src);
	return ret;
}

/* Tensors of a slice's reference model outside the layers, before (pre) or
 * after them. */
static int slice_outer(weld_recipe *r, weld_plan *p, const struct rslice *sl, bool pre,
		       struct weld_error *err)
{
	const weld_model *m = weld_plan_model(p, slice_ref(r, sl)->model);

	for (size_t i = 0; i < weld_model_count(m); i++) {
		const char *name = weld_model_tensor(m, i)->name;

		if (name_layer(name, NULL, NULL) < 0 && is_pre_weight(name) == pre &&
		    slice_job(r, p, sl, -1, name, name, 0, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * slices: the embeddings from the first slice's models, then each slice's
 * layers renumbered from 0 in order, then the final norm and lm_head from
 * the last slice's models, as mergekit plans a frankenmerge.
 */
static int plan_slices(weld_recipe *r, weld_plan *p, struct weld_error *err)
{
	size_t total = 0, out_layer = 0;

	for (size_t k = 0; k < r->nslices; k++) {
		const struct rslice *sl = &r->slices[k];

		for (size_t j = 0; j < sl->nsrc; j++) {
			const struct rsource *s = &sl->src[j];
			const struct rmodel *mm = &r->models[s->model];
			char where[WHERE_LEN];

			set_where(where, sizeof(where), "%s.layer_range", s->where);
			if (mm->layers == 0 && s->b > 0)
				return rfail(r, err, where, "'%s' has no numbered layers (no tensor name with an integer component)",
					     mm->label);
			if (s->b > mm->layers)
				return rfail(r, err, where, "[%d, %d] is outside '%s', which has %d layers (a range within [0, %d])",
					     s->a, s->b, mm->label, mm->layers, mm->layers);
		}
		total += (size_t)(sl->src[0].b - sl->src[0].a);
	}
	free(r->layer_map);
	r->layer_map = calloc(total + 1, sizeof(*r->layer_map));
	if (!r->layer_map)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (slice_outer(r, p, &r->slices[0], true, err) < 0)
		return -1;
	for (size_t k = 0; k < r->nslices; k++) {
		const struct rslice *sl = &r->slices[k];
		const struct rsource *ref = slice_ref(r, sl);
		const weld_model *m = weld_plan_model(p, ref->model);
		long n = ref->b - ref->a;

		for (long o = 0; o < n; o++, out_layer++) {
			r->layer_map[out_layer] = ref->a + (int)o;
			for (size_t i = 0; i < weld_model_count(m); i++) {
				const char *name = weld_model_tensor(m, i)->name;
				char *out_name;
				int rc;

				if (name_layer(name, NULL, NULL) != ref->a + o)
					continue;
				out_name = rename_layer(name, (long)out_layer);
				if (!out_name)
					return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
				rc = slice_job(r, p, sl, o, name, out_name, layer_t(o, n), err);
				free(out_name);
				if (rc < 0)
					return -1;
			}
		}
	}
	r->nlayers_out = out_layer;
	return slice_outer(r, p, &r->slices[r->nslices - 1], false, err);
}

/* config.json of a frankenmerge: the new layer count (and per-layer lists). */
static int edit_config(void *ctx, void *cjson_root, struct weld_error *err)
{
	static const char *const keys[] = { "num_hidden_layers", "n_layer", "num_layers" };
	const weld_recipe *r = ctx;
	cJSON *root = cjson_root, *objs[2], *lt;
	long old = -1;

	(void)err;
	objs[0] = root;
	objs[1] = cJSON_GetObjectItemCaseSensitive(root, "text_config");
	for (int o = 0; o < 2; o++) {
		if (!cJSON_IsObject(objs[o]))
			continue;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[o], keys[k]);

			if (!cJSON_IsNumber(v))
				continue;
			if (old < 0)
				old = (long)v->valuedouble;
			cJSON_SetNumberValue(v, (double)r->nlayers_out);
		}
	}
	lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
	if (cJSON_IsArray(lt) && cJSON_GetArraySize(lt) == old && old > 0) {
		cJSON *nl = cJSON_CreateArray();

		for (size_t i = 0; nl && i < r->nlayers_out; i++) {
			int from = r->layer_map[i] < old ? r->layer_map[i] : (int)old - 1;

			cJSON_AddItemToArray(nl, cJSON_Duplicate(cJSON_GetArrayItem(lt, from), 1));
		}
		if (nl)
			cJSON_ReplaceItemInObjectCaseSensitive(root, "layer_types", nl);
	}
	return 0;
}

/* ---------------------------------------------------------------- the normalised recipe */

static cJSON *dup_or_new(const cJSON *v)
{
	return v ? cJSON_Duplicate(v, 1) : cJSON_CreateObject();
}

static cJSON *source_json(const weld_recipe *r, const struct rsource *s)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "model", r->models[s->model].path);
	if (s->a >= 0) {
		int range[2] = { s->a, s->b };

		cJSON_AddItemToObject(o, "layer_range", cJSON_CreateIntArray(range, 2));
	}
	if (s->params)
		cJSON_AddItemToObject(o, "parameters", cJSON_Duplicate(s->params, 1));
	return o;
}

static cJSON *weld_json(const weld_recipe *r)
{
	const struct weld_method_spelling *m = r->m;
	cJSON *w = cJSON_CreateObject();

	if (!w)
		return NULL;
	if (m->keys & WELD_KB(WELD_K_SCOPE))
		cJSON_AddStringToObject(w, "scope", weld_scope_names[r->o.scope]);
	if (m->keys & WELD_KB(WELD_K_SEED)) {
		if ((double)r->o.seed <= MAX_SEED_EXACT) {
			cJSON_AddNumberToObject(w, "seed", (double)r->o.seed);
		} else {
			char buf[24];

			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->o.seed);
			cJSON_AddStringToObject(w, "seed", buf);
		}
	}
	if (m->keys & WELD_KB(WELD_K_SIGN) && combines_ties(r))
		cJSON_AddStringToObject(w, "sign", weld_sign_names[r->o.sign]);
	if (m->keys & WELD_KB(WELD_K_RESCALE))
		cJSON_AddStringToObject(w, "rescale", weld_rescale_names[r->o.rescale]);
	if (m->keys & WELD_KB(WELD_K_COMBINE))
		cJSON_AddStringToObject(w, "combine", weld_combine_names[r->o.combine]);
	if (r->trim_set)
		cJSON_AddNumberToObject(w, "trim", r->o.trim);
	if (m->keys & WELD_KB(WELD_K_FROM))
		cJSON_AddStringToObject(w, "from", weld_from_names[r->o.from]);
	if (m->keys & WELD_KB(WELD_K_K))
		cJSON_AddNumberToObject(w, "k", r->o.k);
	cJSON_AddNumberToObject(w, "shard_size", (double)r->o.shard_size);
	cJSON_AddBoolToObject(w, "allow_missing", r->o.allow_missing);
	cJSON_AddBoolToObject(w, "copy_files", r->o.copy_files);
	return w;
}

/*
 * The recipe as stored in the output: the same keys, every model path made
 * absolute, every default the method uses written into the top-level
 * parameters and the weld object (max_memory and threads are left out:
 * they never change the bytes). Parsing it again gives the same plan and
 * the same text.
 */
static int build_json(weld_recipe *r, struct weld_error *err)
{
	cJSON *o = cJSON_CreateObject(), *params, *list;
	bool ok = o != NULL;

	if (ok) {
		cJSON_AddStringToObject(o, "merge_method", r->m->name);
		if (r->base >= 0)
			cJSON_AddStringToObject(o, "base_model", r->models[r->base].path);
		list = cJSON_AddArrayToObject(o, r->use_slices ? "slices" : "models");
		for (size_t k = 0; list && k < r->nslices; k++) {
			const struct rslice *sl = &r->slices[k];
			cJSON *so, *srcs;

			if (!r->use_slices) {
				for (size_t j = 0; j < sl->nsrc; j++)
					cJSON_AddItemToArray(list, source_json(r, &sl->src[j]));
				continue;
			}
			so = cJSON_CreateObject();
			srcs = so ? cJSON_AddArrayToObject(so, "sources") : NULL;
			for (size_t j = 0; srcs && j < sl->nsrc; j++)
				cJSON_AddItemToArray(srcs, source_json(r, &sl->src[j]));
			if (so && sl->params)
				cJSON_AddItemToObject(so, "parameters", cJSON_Duplicate(sl->params, 1));
			if (so && sl->base_given)
				cJSON_AddStringToObject(so, "base_model", r->models[sl->base].path);
			cJSON_AddItemToArray(list, so);
		}
		params = dup_or_new(r->params);
		for (int p = 0; params && p < WELD_P_COUNT; p++) {
			double v;

			if (!param_in_use(r, (enum weld_param)p) || p == WELD_P_RESCALE || p == WELD_P_INT8_MASK ||
			    cJSON_GetObjectItemCaseSensitive(params, weld_param_defs[p].name) ||
			    !param_default(r, (enum weld_param)p, &v))
				continue;
			if (weld_param_defs[p].range == WELD_RANGE_BOOL)
				cJSON_AddBoolToObject(params, weld_param_defs[p].name, v != 0);
			else
				cJSON_AddNumberToObject(params, weld_param_defs[p].name, v);
		}
		cJSON_AddItemToObject(o, "parameters", params);
		if (r->dtype_name)
			cJSON_AddStringToObject(o, "dtype", r->dtype_name);
		if (r->out_dtype_name)
			cJSON_AddStringToObject(o, "out_dtype", r->out_dtype_name);
		if (r->tokenizer_source)
			cJSON_AddStringToObject(o, "tokenizer_source", r->tokenizer_source);
		cJSON_AddItemToObject(o, "weld", weld_json(r));
		cJSON_free(r->json);
		r->json = cJSON_PrintUnformatted(o);
		ok = r->json != NULL;
	}
	cJSON_Delete(o);
	return ok ? 0 : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
}

char *weld_recipe_normalise(const char *text, struct weld_error *err)
{
	weld_recipe *r;
	char *out = NULL;

	if (weld_recipe_parse(&r, text, strlen(text), "recipe", NULL, err) < 0)
		return NULL;
	if (build_json(r, err) == 0) {
		out = strdup(r->json);
		if (!out)
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	weld_recipe_free(r);
	return out;
}

/* ---------------------------------------------------------------- the plan */

/* The folder config.json & co come from: the base model, else the first. */
static char *donor_dir(const weld_recipe *r)
{
	const char *path = r->models[r->base >= 0 ? r->base : r->slices[0].src[0].model].path;
	char *copy, *d;

	if (is_dir(path))
		return strdup(path);
	copy = strdup(path);
	d = copy ? strdup(dirname(copy)) : NULL;
	free(copy);
	return d;
}

int weld_recipe_plan(weld_recipe *r, const struct weld_recipe_settings *s, weld_plan **out,
		     struct weld_error *err)
{
	weld_plan *p = NULL;

	*out = NULL;
	if (s) {
		r->o.threads = s->threads;
		if (s->has_max_memory)
			r->o.max_memory = s->max_memory;
		if (s->has_shard_size)
			r->o.shard_size = s->shard_size;
		r->o.force = s->force;
		r->o.warn = s->warn;
		r->o.progress = s->progress;
		r->o.cb_ctx = s->cb_ctx;
	}
	if (build_json(r, err) < 0)
		return -1;
	free(r->config_from);
	r->config_from = donor_dir(r);
	free(r->labels);
	r->labels = calloc(r->nmodels + 1, sizeof(*r->labels));
	if (!r->config_from || !r->labels)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->o.recipe_json = r->json;
	r->o.config_from = r->config_from;
	r->o.edit_config = r->use_slices ? edit_config : NULL;
	r->o.edit_config_ctx = r;
	p = weld_plan_new(&r->o);
	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	/* every model, in order of first mention: plan index = recipe index */
	for (size_t i = 0; i < r->nmodels; i++) {
		struct weld_error e = { 0 };

		if (weld_plan_add_model(p, r->models[i].path, &e) < 0) {
			weld_fail(err, e.status, "%s: %s: %s", r->label, r->models[i].where, e.msg);
			if (err)
				err->sys_errno = e.sys_errno;
			goto fail;
		}
		r->labels[i] = r->models[i].label;
		r->models[i].layers = model_layers(weld_plan_model(p, (int)i));
	}
	r->nlabels = r->nmodels;
	if ((r->use_slices ? plan_slices(r, p, err) : plan_models(r, p, err)) < 0)
		goto fail;
	if (weld_plan_finish(p, err) < 0) {
		prefix_label(r, err);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	weld_plan_free(p);
	return -1;
}

const char *weld_recipe_json(const weld_recipe *r)
{
	return r->json;
}

const char *weld_recipe_method(const weld_recipe *r)
{
	return r->m->name;
}

const char *weld_recipe_model_label(const weld_recipe *r, size_t i)
{
	return i < r->nlabels ? r->labels[i] : NULL;
}
