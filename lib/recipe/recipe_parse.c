/*
 * recipe_parse.c - read a recipe and check its structure: the JSON text,
 * the top-level keys, merge_method, the models list or the slices with
 * their sources and layer ranges, and what the method needs of them (a
 * base, how many models, t for slerp). The key checks every object of a
 * recipe goes through are here too, and the recipe's life: parse, load,
 * read back from an output, free.
 */
#include "recipe_impl.h"
#include "json_scan.h"
#include "suggest.h"

#include <libgen.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define RECIPE_MAX_BYTES (16u << 20)

static const char *const top_keys[] = {
	"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
	"tokenizer_source", "weld",
};

/* ---------------------------------------------------------------- checking keys */

/* Refuse a key that repeats an earlier one of the same object. */
int weld_recipe_check_dups(const weld_recipe *r, const cJSON *obj, const char *where,
			   struct weld_error *err)
{
	for (const cJSON *a = obj->child; a; a = a->next)
		for (const cJSON *b = obj->child; b != a; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return rfail(r, err, where, "key '%s' appears twice", a->string);
	return 0;
}

/* Every key of obj must be one of names; the message suggests the nearest. */
int weld_recipe_check_keys(const weld_recipe *r, const cJSON *obj, const char *where,
			   const char *const *names, size_t n, struct weld_error *err)
{
	char path[WHERE_LEN], all[512];

	if (weld_recipe_check_dups(r, obj, where, err) < 0)
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
	if (strcmp(v->valuestring, "fp8") == 0 || strcmp(v->valuestring, "float8_e4m3fn") == 0) {
		*out = WELD_F8_E4M3;    /* block-scaled as the base (DESIGN 6.2) */
		*canon = weld_dtype_torch_name(WELD_F8_E4M3);
		return 0;
	}
	if (strcmp(v->valuestring, "int64") == 0)
		return rfail(r, err, where, "weld merges floating-point tensors: int64 is not an output dtype (integer tensors are copied as they are)");
	return rfail(r, err, where, "unknown dtype '%s' (expected bfloat16, float16, float32, float64 or fp8)",
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
		if (weld_recipe_check_keys(r, e, s->where, keys, 2, err) < 0)
			return -1;
		mv = cJSON_GetObjectItemCaseSensitive(e, "model");
		set_where(where, sizeof(where), "%s.model", s->where);
		if (!mv)
			return rfail(r, err, s->where, "missing \"model\"");
		if (weld_recipe_add_model(r, mv, where, &s->model, err) < 0)
			return -1;
		s->params = cJSON_GetObjectItemCaseSensitive(e, "parameters");
		set_where(where, sizeof(where), "%s.parameters", s->where);
		if (s->params && weld_recipe_parse_params(r, s->params, LV_SOURCE, where, err) < 0)
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

/* Source j of slice sl: {"model", "layer_range", "parameters"}. */
static int parse_source(weld_recipe *r, struct rslice *sl, const cJSON *se, size_t j,
			struct weld_error *err)
{
	static const char *const src_keys[] = { "model", "layer_range", "parameters" };
	struct rsource *s = &sl->src[j];
	const cJSON *mv;
	char where[WHERE_LEN];

	set_where(s->where, sizeof(s->where), "%s.sources[%zu]", sl->where, j);
	if (!cJSON_IsObject(se))
		return rfail(r, err, s->where, "expected {\"model\", \"layer_range\"}, not %s",
			     json_type(se));
	if (weld_recipe_check_keys(r, se, s->where, src_keys, 3, err) < 0)
		return -1;
	mv = cJSON_GetObjectItemCaseSensitive(se, "model");
	set_where(where, sizeof(where), "%s.model", s->where);
	if (!mv)
		return rfail(r, err, s->where, "missing \"model\"");
	if (weld_recipe_add_model(r, mv, where, &s->model, err) < 0)
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
	if (s->params && weld_recipe_parse_params(r, s->params, LV_SOURCE, where, err) < 0)
		return -1;
	if (s->model == sl->base && sl->base_src < 0)
		sl->base_src = (int)j;
	sl->nsrc++;
	return 0;
}

/* Slice k: {"sources": [...], "parameters", "base_model"}. */
static int parse_slice(weld_recipe *r, const cJSON *e, size_t k, struct weld_error *err)
{
	static const char *const slice_keys[] = { "sources", "parameters", "base_model", "residual_weight" };
	struct rslice *sl = &r->slices[k];
	const cJSON *srcs, *bm;
	size_t ns, j = 0;
	char where[WHERE_LEN];

	set_where(sl->where, sizeof(sl->where), "slices[%zu]", k);
	sl->base = r->base;
	sl->base_src = -1;
	if (!cJSON_IsObject(e))
		return rfail(r, err, sl->where, "expected {\"sources\": [...]}, not %s", json_type(e));
	if (weld_recipe_check_keys(r, e, sl->where, slice_keys, 4, err) < 0)
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(e, "residual_weight")) {
		set_where(where, sizeof(where), "%s.residual_weight", sl->where);
		return rfail(r, err, where, "not supported (mergekit reads it but never uses it)");
	}
	bm = cJSON_GetObjectItemCaseSensitive(e, "base_model");
	if (bm) {
		set_where(where, sizeof(where), "%s.base_model", sl->where);
		if (weld_recipe_add_model(r, bm, where, &sl->base, err) < 0)
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
	for (const cJSON *se = srcs->child; se; se = se->next, j++)
		if (parse_source(r, sl, se, j, err) < 0)
			return -1;
	sl->params = cJSON_GetObjectItemCaseSensitive(e, "parameters");
	set_where(where, sizeof(where), "%s.parameters", sl->where);
	if (sl->params && weld_recipe_parse_params(r, sl->params, LV_SLICE, where, err) < 0)
		return -1;
	return 0;
}

static int parse_slices(weld_recipe *r, const cJSON *arr, struct weld_error *err)
{
	size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;

	if (!cJSON_IsArray(arr) || !n)
		return rfail(r, err, "slices", "expected a non-empty list of {\"sources\": [...]} objects");
	r->slices = calloc(n, sizeof(*r->slices));
	if (!r->slices)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r->use_slices = true;
	for (const cJSON *e = arr->child; e; e = e->next, k++) {
		r->nslices++;   /* weld_recipe_free frees what the slice holds so far */
		if (parse_slice(r, e, k, err) < 0)
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
		if (!merges_on_base(r, sl) || sl->src[j].model != sl->base)
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
		size_t n = merged_sources(r, sl), lo, hi;
		const char *at = r->use_slices ? sl->where : "models";

		if (merges_on_base(r, sl)) {
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
			weld_method_sources(m->method, &lo, &hi);
			if (hi == 1 && n != 1)
				return rfail(r, err, at, "%s merges exactly two models, the base and one other (found %zu others)",
					     m->name, n);
			if (weld_method_takes(m->method, WELD_K_K) && (size_t)r->o.k > n)
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
			return rfail(r, err, "parameters.t", "%s needs t (%s; a list gives a gradient over the layers)",
				     m->name, m->t_distance ? "a distance to the base"
				     : "0 gives the base model, 1 the other");
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
	if (weld_recipe_check_keys(r, root, "", top_keys, sizeof(top_keys) / sizeof(top_keys[0]), err) < 0)
		return -1;
	r->m = find_method(r, cJSON_GetObjectItemCaseSensitive(root, "merge_method"), err);
	if (!r->m)
		return -1;
	weld_merge_opts_init(&r->o, r->m);
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "weld")) && weld_recipe_parse_weld(r, v, err) < 0)
		return -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "base_model")) &&
	    weld_recipe_add_model(r, v, "base_model", &r->base, err) < 0)
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
		if (weld_recipe_parse_params(r, r->params, LV_TOP, "parameters", err) < 0)
			return -1;
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "normalize")))
			r->o.normalize = setting_true(v);
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "select_topk")) && cJSON_IsNumber(v))
			r->o.select_topk = v->valuedouble;
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "common_space_fraction")) &&
		    cJSON_IsNumber(v))
			r->o.common_fraction = v->valuedouble;
		/* model_stock's statistics per row: weld's row units */
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "filter_wise")) && setting_true(v))
			r->o.scope = WELD_SCOPE_ROW;
		/* nuslerp's vectors: the tensor, else rows, or with row_wise
		 * columns (along dim 0) */
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "nuslerp_flatten")) && !setting_true(v)) {
			const cJSON *rw = cJSON_GetObjectItemCaseSensitive(r->params, "nuslerp_row_wise");

			r->o.nuslerp_columns = rw && setting_true(rw);
			if (!r->o.nuslerp_columns)
				r->o.scope = WELD_SCOPE_ROW;
		}
		if ((v = cJSON_GetObjectItemCaseSensitive(r->params, "normalize_weights")))
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

/* A string with the escape \u0000 would be cut short by every C string
 * that holds it (a model path, a name): refused, with its JSON path. */
struct nul_scan {
	weld_recipe *r;
	struct weld_error *err;
};

static int refuse_nul(void *ctx, const struct weld_json_token *t)
{
	struct nul_scan *ns = ctx;
	char where[WHERE_LEN];
	size_t o = 0;

	if ((t->kind != WELD_JSON_KEY && t->kind != WELD_JSON_STRING) ||
	    !weld_json_has_nul(t->text, t->len))
		return 0;
	where[0] = 0;
	for (int d = 0; d < t->depth && o + 1 < sizeof(where); d++) {
		const struct weld_json_frame *f = &t->path[d];

		if (f->object && f->key)
			o += (size_t)snprintf(where + o, sizeof(where) - o, "%s%.*s", o ? "." : "",
					      (int)f->key_len, f->key);
		else if (!f->object)
			o += (size_t)snprintf(where + o, sizeof(where) - o, "[%zu]", f->index);
	}
	return rfail(ns->r, ns->err, where, "\\u0000 in a string: weld's names and paths cannot hold it");
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
	{
		struct nul_scan ns = { r, err };

		if (weld_json_scan(text, len, refuse_nul, &ns) < 0) {
			weld_recipe_free(r);
			return -1;
		}
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
	int ret;

	*out = NULL;
	/* a regular file only: a FIFO would block */
	if (weld_read_small_file(path, RECIPE_MAX_BYTES, &text, &n, err) < 0)
		return -1;
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
	label = weld_strfmt("%s:weld_recipe", dir);
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

const char *weld_recipe_method(const weld_recipe *r)
{
	return r->m->name;
}
