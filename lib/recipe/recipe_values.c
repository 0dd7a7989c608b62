/*
 * recipe_values.c - check the values a recipe sets: each parameter (a
 * number, a gradient, or a list of filter entries; in the range the method
 * table gives it; at a level where it may be set) and the weld object,
 * whose keys set the merge options a mergekit recipe cannot say.
 */
#include "recipe_impl.h"
#include "suggest.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- parameters */

static void method_params(const struct weld_method_spelling *m, char *buf, size_t len)
{
	const char *names[WELD_P_COUNT];

	for (int p = 0; p < WELD_P_COUNT; p++)
		names[p] = m->params & WELD_PB(p) ? weld_param_defs[p].name : NULL;
	weld_list_names(buf, len, names, WELD_P_COUNT);
	if (!buf[0])
		snprintf(buf, len, "none");
}

static int check_number(const weld_recipe *r, const struct weld_param_def *pd, double v,
			const char *where, struct weld_error *err)
{
	if (!isfinite(v))
		return rfail(r, err, where, "%s must be a finite number", pd->name);
	switch (weld_param_range(r->m, (enum weld_param)(pd - weld_param_defs))) {
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
	case WELD_RANGE_COUNT:
		if (!(v >= 0 && v == floor(v) && v <= 1e6))
			return rfail(r, err, where, "%s %g must be an integer in [0, 1000000]", pd->name, v);
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
		if (weld_recipe_check_keys(r, e, sub, cond_keys, 2, err) < 0)
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

int weld_recipe_parse_params(const weld_recipe *r, const cJSON *obj, enum level lv,
			     const char *where, struct weld_error *err)
{
	const char *all[WELD_P_COUNT], *mine[WELD_P_COUNT];
	char path[WHERE_LEN], list[256];

	if (!cJSON_IsObject(obj))
		return rfail(r, err, where, "expected an object of parameters, not %s", json_type(obj));
	if (weld_recipe_check_dups(r, obj, where, err) < 0)
		return -1;
	for (int p = 0; p < WELD_P_COUNT; p++) {
		all[p] = weld_param_defs[p].name;
		mine[p] = r->m->params & WELD_PB(p) ? weld_param_defs[p].name : NULL;
	}
	for (const cJSON *k = obj->child; k; k = k->next) {
		int p = -1;
		const struct weld_param_def *pd;

		set_where(path, sizeof(path), "%s.%s", where, k->string);
		/* two parameters may share a name (della's per-model epsilon,
		 * ram's global one): the one the method takes */
		for (int i = 0; i < WELD_P_COUNT; i++)
			if (strcmp(k->string, all[i]) == 0 && (p < 0 || mine[i]))
				p = i;
		if (r->m->lambda_alias && strcmp(k->string, r->m->lambda_alias) == 0) {
			if (cJSON_GetObjectItemCaseSensitive(obj, weld_param_defs[WELD_P_LAMBDA].name))
				return rfail(r, err, path, "'%s' is %s's other name for 'lambda', which this object sets too: give one",
					     k->string, r->m->name);
			p = WELD_P_LAMBDA;
		}
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
		if (p == WELD_P_RESCALE && setting_true(k) && !weld_method_rescales(r->m->method))
			return rfail(r, err, path, "rescale: true (mergekit's L1 rescaling of the kept values) is supported only by the dare and della methods");
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

/* A seed: an integer up to 2^53, or a string of digits below 2^64. */
static int parse_seed(const weld_recipe *r, const cJSON *e, const char *where, uint64_t *out,
		      struct weld_error *err)
{
	if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= MAX_SEED_EXACT &&
	    e->valuedouble == floor(e->valuedouble)) {
		*out = (uint64_t)e->valuedouble;
		return 0;
	}
	if (cJSON_IsString(e) && e->valuestring[0] >= '0' && e->valuestring[0] <= '9') {
		char *end;

		errno = 0;
		*out = strtoull(e->valuestring, &end, 10);
		if (errno || *end)
			return rfail(r, err, where, "'%s' is not an integer in [0, 2^64)", e->valuestring);
		return 0;
	}
	return rfail(r, err, where, "expected a non-negative integer (as a string above 2^53)");
}

/* The key of the weld object that e is, in *k: refused when weld has no
 * such key or the recipe's method does not use it. */
static int weld_key_of(const weld_recipe *r, const cJSON *e, const char *where, int *k,
		       struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	const char *mine[WELD_K_COUNT];
	char list[256];

	for (int i = 0; i < WELD_K_COUNT; i++)
		mine[i] = (m->keys | WELD_K_GENERAL) & WELD_KB(i) ? weld_key_names[i] : NULL;
	*k = -1;
	for (int i = 0; i < WELD_K_COUNT && *k < 0; i++)
		if (weld_key_names[i] && strcmp(e->string, weld_key_names[i]) == 0)
			*k = i;
	weld_list_names(list, sizeof(list), mine, WELD_K_COUNT);
	if (*k < 0) {
		const char *near = weld_suggest(e->string, mine, WELD_K_COUNT);

		if (!near)
			near = weld_suggest(e->string, weld_key_names, WELD_K_COUNT);
		if (near)
			return rfail(r, err, where, "unknown key (did you mean '%s'?)", near);
		return rfail(r, err, where, "unknown key (for %s: %s)", m->name, list);
	}
	if (!((m->keys | WELD_K_GENERAL) & WELD_KB(*k)))
		return rfail(r, err, where, "'%s' is not used by %s (its weld keys: %s)",
			     weld_key_names[*k], m->name, list);
	return 0;
}

/* Check the value e of weld key k and set the merge option it names. */
static int weld_key_value(weld_recipe *r, enum weld_key k, const cJSON *e, const char *where,
			  struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	int v;

	switch (k) {
	case WELD_K_SCOPE:
		if (parse_enum(r, e, where, weld_scope_names, &v, err) < 0)
			return -1;
		r->o.scope = (enum weld_scope)v;
		break;
	case WELD_K_SIGN:
		if (parse_enum(r, e, where, weld_sign_names, &v, err) < 0)
			return -1;
		r->o.sign = (enum weld_sign)v;
		r->sign_set = true;
		break;
	case WELD_K_RESCALE:
		if (parse_enum(r, e, where, weld_rescale_names, &v, err) < 0)
			return -1;
		r->o.rescale = (enum weld_rescale)v;
		r->rescale_set = true;
		break;
	case WELD_K_COMBINE:
		if (parse_enum(r, e, where, weld_combine_names, &v, err) < 0)
			return -1;
		if (m->combine_fixed && (enum weld_combine)v != m->combine)
			return rfail(r, err, where, "%s always %s (merge_method '%s' with combine '%s' does the other)",
				     m->name,
				     m->combine == WELD_COMBINE_TIES ? "elects signs (ties)" : "sums",
				     weld_method_name(m->method),
				     weld_combine_names[v]);
		r->o.combine = (enum weld_combine)v;
		break;
	case WELD_K_FROM:
		if (parse_enum(r, e, where, weld_from_names, &v, err) < 0)
			return -1;
		r->o.from = (enum weld_from)v;
		break;
	case WELD_K_TRIM:
		if (!cJSON_IsNumber(e) || !(e->valuedouble > 0 && e->valuedouble <= 1))
			return rfail(r, err, where, "expected a density in (0, 1]");
		r->o.trim = e->valuedouble;
		r->trim_set = true;
		break;
	case WELD_K_K:
		if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
		    e->valuedouble < 0 || e->valuedouble > 64)
			return rfail(r, err, where, "expected an integer in [0, 64]");
		r->o.k = (int)e->valuedouble;
		break;
	case WELD_K_SEED:
		return parse_seed(r, e, where, &r->o.seed, err);
	case WELD_K_SHARD_SIZE:
		r->o.shard_size_set = true;
		return parse_size_value(r, e, where, &r->o.shard_size, err);
	case WELD_K_MAX_MEMORY:
		return parse_size_value(r, e, where, &r->o.max_memory, err);
	case WELD_K_ALLOW_MISSING:
	case WELD_K_COPY_FILES:
	case WELD_K_ALLOW_NONFINITE:
		if (!cJSON_IsBool(e))
			return rfail(r, err, where, "expected true or false, not %s", json_type(e));
		if (k == WELD_K_ALLOW_MISSING)
			r->o.allow_missing = cJSON_IsTrue(e);
		else if (k == WELD_K_COPY_FILES)
			r->o.copy_files = cJSON_IsTrue(e);
		else
			r->o.allow_nonfinite = cJSON_IsTrue(e);
		break;
	case WELD_K_CLIP:
		if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble < 0.5))
			return rfail(r, err, where, "expected a fraction in [0, 0.5)");
		r->o.clip = e->valuedouble;
		break;
	case WELD_K_SVD_EXCLUDE:
		if (!cJSON_IsString(e) || !*e->valuestring)
			return rfail(r, err, where, "expected a regular expression (a non-empty string)");
		r->o.svd_exclude = e->valuestring;
		break;
	case WELD_K_MASKS:
	case WELD_K_PLUS:
	case WELD_K_COUNT:
		break;
	}
	return 0;
}

int weld_recipe_parse_weld(weld_recipe *r, const cJSON *obj, struct weld_error *err)
{
	char path[WHERE_LEN];

	if (!cJSON_IsObject(obj))
		return rfail(r, err, "weld", "expected an object, not %s", json_type(obj));
	if (weld_recipe_check_dups(r, obj, "weld", err) < 0)
		return -1;
	for (const cJSON *e = obj->child; e; e = e->next) {
		int k;

		set_where(path, sizeof(path), "weld.%s", e->string);
		if (weld_key_of(r, e, path, &k, err) < 0 ||
		    weld_key_value(r, (enum weld_key)k, e, path, err) < 0)
			return -1;
	}
	if (r->sign_set && !combines_ties(r))
		return rfail(r, err, "weld.sign", "%s", weld_method_takes(r->m->method, WELD_K_FROM)
			     ? "sign is used only with \"from\": \"ties\""
			     : "sign is used only with \"combine\": \"ties\"");
	if (r->trim_set && r->o.combine != WELD_COMBINE_TIES)
		return rfail(r, err, "weld.trim", "trim is used only with \"combine\": \"ties\"");
	return 0;
}
