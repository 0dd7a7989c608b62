/*
 * lora_config.c - adapter_config.json of a PEFT LoRA adapter (METHODS 16).
 *
 * Keys read (others are PEFT's training settings and are ignored):
 *   peft_type        "LORA"; anything else is refused by name
 *   r, lora_alpha    rank and alpha (PEFT's defaults 8 and 8 when absent)
 *   use_rslora       scale alpha/sqrt(r) instead of alpha/r
 *   fan_in_fan_out   weights stored [in, out] (GPT-2 Conv1D)
 *   lora_bias        apply lora_B.bias
 *   use_dora         true is refused (DoRA)
 *   rank_pattern, alpha_pattern   {regex key: number}, first match wins
 *   modules_to_save  [names]: whole tensors the adapter carries
 */
#include "lora.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (16u << 20)
#define RANK_MAX (1L << 20)

struct weld_lora_pattern {
	char *key;
	double value;
	regex_t re;
};

static int cfail(const struct weld_lora_config *c, struct weld_error *err, const char *field,
		 const char *what)
{
	return weld_fail(err, WELD_ERR_FORMAT, "'%s': %s: %s", c->path, field, what);
}

static int get_bool(const struct weld_lora_config *c, const cJSON *root, const char *key,
		    bool *out, struct weld_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

	*out = false;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsBool(v))
		return cfail(c, err, key, "expected true or false");
	*out = cJSON_IsTrue(v);
	return 0;
}

static int check_type(const struct weld_lora_config *c, const cJSON *root,
		      struct weld_error *err)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
	bool dora;

	if (!cJSON_IsString(t))
		return cfail(c, err, "peft_type", "missing or not a string (a PEFT adapter has \"LORA\")");
	if (strcmp(t->valuestring, "LORA") != 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': peft_type: '%s' adapters are not supported (LORA only)",
				 c->path, t->valuestring);
	if (get_bool(c, root, "use_dora", &dora, err) < 0)
		return -1;
	if (dora)
		return cfail(c, err, "use_dora", "DoRA adapters are not supported (plain LoRA only)");
	return 0;
}

static int get_rank_alpha(struct weld_lora_config *c, const cJSON *root,
			  struct weld_error *err)
{
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");

	c->r = 8;
	c->alpha = 8;
	if (r) {
		if (!cJSON_IsNumber(r) || r->valuedouble != floor(r->valuedouble) ||
		    r->valuedouble < 1 || r->valuedouble > RANK_MAX)
			return cfail(c, err, "r", "expected an integer from 1 to 1048576");
		c->r = (long)r->valuedouble;
	}
	if (a) {
		if (!cJSON_IsNumber(a) || !isfinite(a->valuedouble))
			return cfail(c, err, "lora_alpha", "expected a number");
		c->alpha = a->valuedouble;
	}
	return 0;
}

/* rank_pattern or alpha_pattern: {key: number}, each key compiled as the
 * anchored regex (.*\.)?(key)$. */
static int get_patterns(const struct weld_lora_config *c, const cJSON *root, const char *key,
			bool integer, struct weld_lora_pattern **out, size_t *nout,
			struct weld_error *err)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key), *e;
	char field[256];

	if (!o || cJSON_IsNull(o))
		return 0;
	if (!cJSON_IsObject(o))
		return cfail(c, err, key, "expected an object {module pattern: number}");
	*out = calloc((size_t)cJSON_GetArraySize(o) + 1, sizeof(**out));
	if (!*out)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	cJSON_ArrayForEach(e, o) {
		struct weld_lora_pattern *p = &(*out)[*nout];
		char *rx;
		int bad;

		snprintf(field, sizeof(field), "%s.%s", key, e->string);
		if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) ||
		    (integer && (e->valuedouble != floor(e->valuedouble) || e->valuedouble < 1 ||
				 e->valuedouble > RANK_MAX)))
			return cfail(c, err, field, integer ? "expected an integer from 1 to 1048576"
							     : "expected a number");
		rx = weld_strfmt("^(.*\\.)?(%s)$", e->string);
		if (!rx)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		bad = regcomp(&p->re, rx, REG_EXTENDED | REG_NOSUB);
		free(rx);
		if (bad)
			return cfail(c, err, field, "the key is not a valid regular expression");
		p->value = e->valuedouble;
		if (!(p->key = strdup(e->string))) {
			regfree(&p->re);
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
		(*nout)++;
	}
	return 0;
}

static int get_save(struct weld_lora_config *c, const cJSON *root, struct weld_error *err)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "modules_to_save"), *e;

	if (!a || cJSON_IsNull(a))
		return 0;
	if (!cJSON_IsArray(a))
		return cfail(c, err, "modules_to_save", "expected a list of module names");
	c->save = calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof(*c->save));
	if (!c->save)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	cJSON_ArrayForEach(e, a) {
		if (!cJSON_IsString(e) || !*e->valuestring)
			return cfail(c, err, "modules_to_save", "expected a list of module names");
		if (!(c->save[c->nsave] = strdup(e->valuestring)))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		c->nsave++;
	}
	return 0;
}

int weld_lora_config_read(struct weld_lora_config *c, const char *dir, struct weld_error *err)
{
	cJSON *root = NULL;
	char *text = NULL;
	size_t len = 0;
	int ret = -1;

	memset(c, 0, sizeof(*c));
	c->path = weld_path_join(dir, "adapter_config.json");
	if (!c->path)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_read_small_file(c->path, CONFIG_MAX_BYTES, &text, &len, err) < 0)
		goto out;
	if (strlen(text) != len || !(root = cJSON_Parse(text)) || !cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", c->path);
		goto out;
	}
	if (check_type(c, root, err) < 0 || get_rank_alpha(c, root, err) < 0 ||
	    get_bool(c, root, "use_rslora", &c->rslora, err) < 0 ||
	    get_bool(c, root, "fan_in_fan_out", &c->fan_in_fan_out, err) < 0 ||
	    get_bool(c, root, "lora_bias", &c->lora_bias, err) < 0 ||
	    get_patterns(c, root, "rank_pattern", true, &c->rank, &c->nrank, err) < 0 ||
	    get_patterns(c, root, "alpha_pattern", false, &c->alpha_p, &c->nalpha, err) < 0 ||
	    get_save(c, root, err) < 0)
		goto out;
	ret = 0;
out:
	cJSON_Delete(root);
	free(text);
	if (ret < 0)
		weld_lora_config_free(c);
	return ret;
}

static void free_patterns(struct weld_lora_pattern *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		regfree(&p[i].re);
		free(p[i].key);
	}
	free(p);
}

void weld_lora_config_free(struct weld_lora_config *c)
{
	if (!c)
		return;
	free_patterns(c->rank, c->nrank);
	free_patterns(c->alpha_p, c->nalpha);
	for (size_t i = 0; i < c->nsave; i++)
		free(c->save[i]);
	free(c->save);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

static const struct weld_lora_pattern *match(const struct weld_lora_pattern *p, size_t n,
					     const char *module)
{
	for (size_t i = 0; i < n; i++)
		if (regexec(&p[i].re, module, 0, NULL, 0) == 0)
			return &p[i];
	return NULL;
}

void weld_lora_config_module(const struct weld_lora_config *c, const char *module, long *r,
			     double *alpha)
{
	const struct weld_lora_pattern *pr = match(c->rank, c->nrank, module);
	const struct weld_lora_pattern *pa = match(c->alpha_p, c->nalpha, module);

	*r = pr ? (long)pr->value : c->r;
	*alpha = pa ? pa->value : c->alpha;
}
