/*
 * moe_stats.c - the --stats file: per MoE layer, how often the router
 * picks each expert (normalised to sum 1) and, optionally, how similar the
 * experts are. Every value is checked, and a message names the JSON path
 * of the first bad one ("stats.json: layers.3.frequency[5]: negative value
 * -1"), before anything is planned.
 */
#include "moe_impl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int stats_fail(struct weld_error *err, const char *fname, const char *fmt, ...)
	WELD_PRINTF(3, 4);

static int stats_fail(struct weld_error *err, const char *fname, const char *fmt, ...)
{
	char buf[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return weld_fail(err, WELD_ERR_FORMAT, "%s: %s", fname, buf);
}

/* Canonical non-negative decimal ("0", "12"; not "012", "+1", "1e0"). */
static bool parse_layer_key(const char *s, int *out)
{
	long v = 0;

	if (!s || !*s || (s[0] == '0' && s[1]))
		return false;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (*p - '0');
		if (v > INT_MAX)
			return false;
	}
	*out = (int)v;
	return true;
}

/* Read a JSON array of exactly n finite numbers into dst; path names it. */
static int parse_number_row(const cJSON *a, int n, double *dst, bool non_negative,
			    const char *fname, const char *path, struct weld_error *err)
{
	int count, k = 0;
	const cJSON *v;

	if (!cJSON_IsArray(a))
		return stats_fail(err, fname, "%s: expected an array of %d numbers", path, n);
	count = cJSON_GetArraySize(a);
	if (count != n)
		return stats_fail(err, fname, "%s: %d values, expected %d (one per expert)",
				  path, count, n);
	cJSON_ArrayForEach(v, a) {
		if (!cJSON_IsNumber(v))
			return stats_fail(err, fname, "%s[%d]: not a number", path, k);
		if (!isfinite(v->valuedouble))
			return stats_fail(err, fname, "%s[%d]: value is not finite", path, k);
		if (non_negative && v->valuedouble < 0)
			return stats_fail(err, fname, "%s[%d]: negative value %.17g", path, k,
					  v->valuedouble);
		dst[k++] = v->valuedouble;
	}
	return 0;
}

static int parse_layer_entry(struct weld_moe_stats *st, int l, const cJSON *obj,
			     const char *key, const char *fname, struct weld_error *err)
{
	const int e = st->n_experts;
	const cJSON *item, *freq = NULL, *sim = NULL;
	double *f = st->freq + (size_t)l * (size_t)e;
	char path[128];
	double sum = 0.0;

	if (!cJSON_IsObject(obj))
		return stats_fail(err, fname, "layers.%s: expected an object with 'frequency'", key);
	cJSON_ArrayForEach(item, obj) {
		if (item->string && strcmp(item->string, "frequency") == 0)
			freq = item;
		else if (item->string && strcmp(item->string, "similarity") == 0)
			sim = item;
		else
			return stats_fail(err, fname,
					  "layers.%s.%s: unknown key (expected 'frequency' or 'similarity')",
					  key, item->string ? item->string : "");
	}
	if (!freq)
		return stats_fail(err, fname, "layers.%s: missing 'frequency'", key);
	snprintf(path, sizeof(path), "layers.%s.frequency", key);
	if (parse_number_row(freq, e, f, true, fname, path, err) < 0)
		return -1;
	for (int k = 0; k < e; k++)
		sum += f[k];
	if (!(sum > 0.0))
		return stats_fail(err, fname, "%s: all values are zero", path);
	if (!isfinite(sum))
		return stats_fail(err, fname, "%s: the sum of the values is not finite", path);
	for (int k = 0; k < e; k++)
		f[k] /= sum;

	if (sim) {
		const cJSON *row;
		int count, r = 0;

		if (!cJSON_IsArray(sim))
			return stats_fail(err, fname, "layers.%s.similarity: expected %d arrays of %d numbers",
					  key, e, e);
		count = cJSON_GetArraySize(sim);
		if (count != e)
			return stats_fail(err, fname, "layers.%s.similarity: %d rows, expected %d (one per expert)",
					  key, count, e);
		st->sim[l] = malloc((size_t)e * (size_t)e * sizeof(double));
		if (!st->sim[l])
			return weld_fail(err, WELD_ERR_NOMEM, "%s: out of memory", fname);
		cJSON_ArrayForEach(row, sim) {
			snprintf(path, sizeof(path), "layers.%s.similarity[%d]", key, r);
			if (parse_number_row(row, e, st->sim[l] + (size_t)r * (size_t)e, false,
					     fname, path, err) < 0)
				return -1;
			r++;
		}
	}
	return 0;
}

/* "0-3, 5, 7-9" into buf, ending in "..." if it does not fit; ids ascending. */
static void format_index_list(const int *ids, int n, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n; ) {
		char item[40];
		int j = i;
		size_t need;

		while (j + 1 < n && ids[j + 1] == ids[j] + 1)
			j++;
		if (j > i)
			snprintf(item, sizeof(item), "%s%d-%d", i ? ", " : "", ids[i], ids[j]);
		else
			snprintf(item, sizeof(item), "%s%d", i ? ", " : "", ids[i]);
		need = strlen(item);
		if (used + need + 6 > len) {
			if (used + 6 <= len)
				memcpy(buf + used, ", ...", 6);
			return;
		}
		memcpy(buf + used, item, need + 1);
		used += need;
		i = j + 1;
	}
}

/* The error for text that is not JSON, at the line and column where
 * cJSON stopped (end). */
static int json_error(const char *text, size_t len, const char *end, const char *fname,
		      struct weld_error *err)
{
	size_t off = end && end >= text ? (size_t)(end - text) : 0;
	int line = 1, col = 1;

	for (size_t k = 0; k < off && k < len; k++) {
		if (text[k] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return stats_fail(err, fname, "invalid JSON at line %d, column %d", line, col);
}

/* The "layers" member of the top-level object; "metadata" is the only
 * other key allowed. */
static int find_layers(const cJSON *root, const char *fname, const cJSON **layers,
		       struct weld_error *err)
{
	const cJSON *item;

	*layers = NULL;
	if (!cJSON_IsObject(root))
		return stats_fail(err, fname, "expected a JSON object with 'layers'");
	cJSON_ArrayForEach(item, root) {
		if (item->string && strcmp(item->string, "layers") == 0)
			*layers = item;
		else if (!item->string || strcmp(item->string, "metadata") != 0)
			return stats_fail(err, fname, "%s: unknown key (expected 'layers')",
					  item->string ? item->string : "");
	}
	if (!*layers)
		return stats_fail(err, fname, "missing 'layers'");
	if (!cJSON_IsObject(*layers))
		return stats_fail(err, fname,
				  "layers: expected an object of layer index -> statistics");
	return 0;
}

/* Every entry of "layers": one per MoE layer, no other, none twice. */
static int parse_layers(struct weld_moe_stats *st, const cJSON *layers, const int *layer_ids,
			bool *seen, const char *fname, struct weld_error *err)
{
	const int n_layers = st->n_layers;
	const cJSON *item;

	cJSON_ArrayForEach(item, layers) {
		int id, l;

		if (!parse_layer_key(item->string, &id))
			return stats_fail(err, fname, "layers.%s: not a layer index", item->string);
		for (l = 0; l < n_layers; l++)
			if (layer_ids[l] == id)
				break;
		if (l == n_layers) {
			char list[200];

			format_index_list(layer_ids, n_layers, list, sizeof(list));
			return stats_fail(err, fname, "layers.%s: layer %d has no experts (MoE layers: %s)",
					  item->string, id, list);
		}
		if (seen[l])
			return stats_fail(err, fname, "layers.%s: duplicate entry", item->string);
		seen[l] = true;
		if (parse_layer_entry(st, l, item, item->string, fname, err) < 0)
			return -1;
	}
	for (int l = 0; l < n_layers; l++)
		if (!seen[l])
			return stats_fail(err, fname, "layers: no entry for MoE layer %d", layer_ids[l]);
	return 0;
}

int weld_moe_stats_parse(struct weld_moe_stats *st, const char *text, size_t len,
			 const char *fname, const int *layer_ids, int n_layers,
			 int n_experts, struct weld_error *err)
{
	const char *end = NULL;
	cJSON *root = NULL;
	const cJSON *layers;
	bool *seen = NULL;
	int ret = -1;

	memset(st, 0, sizeof(*st));
	if (!fname)
		fname = "stats";
	if (n_layers < 1 || n_experts < 1 || !text)
		return weld_fail(err, WELD_ERR_ARG, "%s: no MoE layers to describe", fname);
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root)
		return json_error(text, len, end, fname, err);

	st->n_layers = n_layers;
	st->n_experts = n_experts;
	st->freq = calloc((size_t)n_layers * (size_t)n_experts, sizeof(double));
	st->sim = calloc((size_t)n_layers, sizeof(double *));
	seen = calloc((size_t)n_layers, sizeof(bool));
	if (!st->freq || !st->sim || !seen) {
		weld_fail(err, WELD_ERR_NOMEM, "%s: out of memory", fname);
		goto out;
	}
	if (find_layers(root, fname, &layers, err) < 0 ||
	    parse_layers(st, layers, layer_ids, seen, fname, err) < 0)
		goto out;
	ret = 0;
out:
	free(seen);
	cJSON_Delete(root);
	if (ret)
		weld_moe_stats_release(st);
	return ret;
}

void weld_moe_stats_release(struct weld_moe_stats *st)
{
	if (!st)
		return;
	if (st->sim)
		for (int l = 0; l < st->n_layers; l++)
			free(st->sim[l]);
	free(st->sim);
	free(st->freq);
	memset(st, 0, sizeof(*st));
}

int weld_moe_read_stats(const char *path, char **text, size_t *len, struct weld_error *err)
{
	return weld_read_small_file(path, WELD_MOE_MAX_TEXT, text, len, err);
}
