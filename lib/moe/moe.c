/*
 * moe.c - M-SMoE expert merging: statistics, group counts, similarity,
 * grouping, neuron alignment and the frequency-weighted merge (pure math on
 * arrays), then the MoE layout of a checkpoint and the streaming driver
 * that applies a plan to a weld_model and writes a weld_writer.
 *
 * Invariants kept by the driver:
 *  - every decision (layout, groups, similarities, memory needs) is made in
 *    weld_moe_plan_build(), before any output exists;
 *  - expert data is streamed in row chunks sized from --max-memory; only
 *    --align holds whole expert matrices (two experts of one layer);
 *  - floating sums run in a fixed order (members in index order, blocks of
 *    WELD_MOE_BLOCK elements in order), so bytes do not depend on -j or on
 *    the chunk size.
 */
#include "moe.h"
#include "lap.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPERTS 65536

/* ================================================================ small helpers */

static char *dup_range(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static char *dup_str(const char *s)
{
	return s ? dup_range(s, strlen(s)) : NULL;
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

/* ================================================================ routing statistics */

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

int weld_moe_stats_parse(struct weld_moe_stats *st, const char *text, size_t len,
			 const char *fname, const int *layer_ids, int n_layers,
			 int n_experts, struct weld_error *err)
{
	const char *end = NULL;
	cJSON *root = NULL;
	const cJSON *item, *layers = NULL;
	bool *seen = NULL;
	int ret = -1;

	memset(st, 0, sizeof(*st));
	if (!fname)
		fname = "stats";
	if (n_layers < 1 || n_experts < 1 || !text)
		return weld_fail(err, WELD_ERR_ARG, "%s: no MoE layers to describe", fname);
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root) {
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

	st->n_layers = n_layers;
	st->n_experts = n_experts;
	st->freq = calloc((size_t)n_layers * (size_t)n_experts, sizeof(double));
	st->sim = calloc((size_t)n_layers, sizeof(double *));
	seen = calloc((size_t)n_layers, sizeof(bool));
	if (!st->freq || !st->sim || !seen) {
		weld_fail(err, WELD_ERR_NOMEM, "%s: out of memory", fname);
		goto out;
	}

	if (!cJSON_IsObject(root)) {
		stats_fail(err, fname, "expected a JSON object with 'layers'");
		goto out;
	}
	cJSON_ArrayForEach(item, root) {
		if (item->string && strcmp(item->string, "layers") == 0) {
			layers = item;
		} else if (!item->string || strcmp(item->string, "metadata") != 0) {
			stats_fail(err, fname, "%s: unknown key (expected 'layers')",
				   item->string ? item->string : "");
			goto out;
		}
	}
	if (!layers) {
		stats_fail(err, fname, "missing 'layers'");
		goto out;
	}
	if (!cJSON_IsObject(layers)) {
		stats_fail(err, fname, "layers: expected an object of layer index -> statistics");
		goto out;
	}

	cJSON_ArrayForEach(item, layers) {
		int id, l;

		if (!parse_layer_key(item->string, &id)) {
			stats_fail(err, fname, "layers.%s: not a layer index", item->string);
			goto out;
		}
		for (l = 0; l < n_layers; l++)
			if (layer_ids[l] == id)
				break;
		if (l == n_layers) {
			char list[200];

			format_index_list(layer_ids, n_layers, list, sizeof(list));
			stats_fail(err, fname, "layers.%s: layer %d has no experts (MoE layers: %s)",
				   item->string, id, list);
			goto out;
		}
		if (seen[l]) {
			stats_fail(err, fname, "layers.%s: duplicate entry", item->string);
			goto out;
		}
		seen[l] = true;
		if (parse_layer_entry(st, l, item, item->string, fname, err) < 0)
			goto out;
	}
	for (int l = 0; l < n_layers; l++) {
		if (!seen[l]) {
			stats_fail(err, fname, "layers: no entry for MoE layer %d", layer_ids[l]);
			goto out;
		}
	}
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

/* ================================================================ group counts and grouping */

static int cmp_double_desc(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

int weld_moe_allocate(const double *freq, int n_layers, int n_experts, int groups,
		      bool uniform, int *out, struct weld_error *err)
{
	const size_t total = (size_t)n_layers * (size_t)n_experts;
	double *pool, threshold;

	if (n_layers < 1 || n_experts < 1)
		return weld_fail(err, WELD_ERR_ARG, "no MoE layers");
	if (groups < 1 || groups > n_experts)
		return weld_fail(err, WELD_ERR_ARG,
				 "--groups %d is not between 1 and the %d experts per layer",
				 groups, n_experts);
	if (!freq || uniform) {
		for (int l = 0; l < n_layers; l++)
			out[l] = groups;
		return 0;
	}
	pool = malloc(total * sizeof(*pool));
	if (!pool)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	memcpy(pool, freq, total * sizeof(*pool));
	qsort(pool, total, sizeof(*pool), cmp_double_desc);
	threshold = pool[(size_t)groups * (size_t)n_layers - 1];
	free(pool);
	for (int l = 0; l < n_layers; l++) {
		int c = 0;

		for (int e = 0; e < n_experts; e++)
			c += freq[(size_t)l * (size_t)n_experts + (size_t)e] >= threshold;
		out[l] = c > 0 ? c : 1;
	}
	return 0;
}

int weld_moe_group(const double *freq, const double *sim, int n, int g,
		   int *label, int *dominant, struct weld_error *err)
{
	int *order;

	if (n < 1 || g < 1 || g > n)
		return weld_fail(err, WELD_ERR_ARG, "cannot make %d groups of %d experts", g, n);
	if (g < n && !sim)
		return weld_fail(err, WELD_ERR_ARG, "grouping needs a similarity matrix");
	order = malloc((size_t)n * sizeof(*order));
	if (!order)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");

	/* usage order: insertion sort, stable, so equal usage keeps index order */
	for (int i = 0; i < n; i++) {
		const double fi = freq ? freq[i] : 0.0;
		int j = i;

		while (j > 0 && (freq ? freq[order[j - 1]] : 0.0) < fi) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int k = 0; k < g; k++) {
		dominant[k] = order[k];
		label[order[k]] = k;
	}
	for (int i = g; i < n; i++) {
		const int e = order[i];
		const double *row = sim + (size_t)e * (size_t)n;
		int best = 0;

		for (int k = 1; k < g; k++)
			if (row[dominant[k]] > row[dominant[best]])
				best = k;
		label[e] = best;
	}
	free(order);
	return 0;
}

/* ================================================================ similarity */

/*
 * sum_k a[k] b[k] added to *acc block by block (see WELD_MOE_BLOCK); within
 * a block four partial sums keep the adds independent.
 */
static void dot_blocked_add(double *acc, const float *a, const float *b, size_t len)
{
	double s = *acc;

	for (size_t k0 = 0; k0 < len; k0 += WELD_MOE_BLOCK) {
		const size_t k1 = len - k0 < WELD_MOE_BLOCK ? len : k0 + WELD_MOE_BLOCK;
		double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
		size_t k = k0;

		for (; k + 4 <= k1; k += 4) {
			s0 += (double)a[k] * (double)b[k];
			s1 += (double)a[k + 1] * (double)b[k + 1];
			s2 += (double)a[k + 2] * (double)b[k + 2];
			s3 += (double)a[k + 3] * (double)b[k + 3];
		}
		for (; k < k1; k++)
			s0 += (double)a[k] * (double)b[k];
		s += (s0 + s1) + (s2 + s3);
	}
	*acc = s;
}

void weld_moe_gram_update(double *gram, int n, const float *const *x, size_t len)
{
	#pragma omp parallel for schedule(dynamic, 1)
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++)
			dot_blocked_add(&gram[(size_t)i * (size_t)n + (size_t)j], x[i], x[j], len);
}

void weld_moe_gram_similarity(const double *gram, int n, double *sim)
{
	for (int i = 0; i < n; i++) {
		const double ni = fmax(sqrt(gram[(size_t)i * (size_t)n + (size_t)i]), WELD_MOE_EPS);

		sim[(size_t)i * (size_t)n + (size_t)i] = 1.0;
		for (int j = i + 1; j < n; j++) {
			const double nj = fmax(sqrt(gram[(size_t)j * (size_t)n + (size_t)j]),
					       WELD_MOE_EPS);
			const double c = gram[(size_t)i * (size_t)n + (size_t)j] / (ni * nj);
			const double s = (c + 1.0) / 2.0;

			sim[(size_t)i * (size_t)n + (size_t)j] = s;
			sim[(size_t)j * (size_t)n + (size_t)i] = s;
		}
	}
}

int weld_moe_row_similarity(const float *rows, int n, size_t dim, double *sim,
			    struct weld_error *err)
{
	const float **x = malloc((size_t)n * sizeof(*x));
	double *gram = calloc((size_t)n * (size_t)n, sizeof(*gram));

	if (!x || !gram) {
		free(x);
		free(gram);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++)
		x[i] = rows + (size_t)i * dim;
	weld_moe_gram_update(gram, n, x, dim);
	weld_moe_gram_similarity(gram, n, sim);
	free(x);
	free(gram);
	return 0;
}

/* ================================================================ merge */

void weld_moe_merge_coefs(const double *freq, double uniform_freq,
			  const int *members, int n, float *coef)
{
	double sum = 0.0;

	for (int k = 0; k < n; k++)
		sum += freq ? freq[members[k]] : uniform_freq;
	for (int k = 0; k < n; k++) {
		const double f = freq ? freq[members[k]] : uniform_freq;

		coef[k] = sum > 0.0 ? (float)(f / (sum + WELD_MOE_EPS)) : (float)(1.0 / n);
	}
}

void weld_moe_merge(float *dst, const float *const *src, const float *coef, int n,
		    size_t len)
{
	if (n < 1)
		return;
	#pragma omp parallel for schedule(static) if (len >= 16384)
	for (size_t k = 0; k < len; k++) {
		float acc = coef[0] * src[0][k];

		for (int m = 1; m < n; m++)
			acc += coef[m] * src[m][k];
		dst[k] = acc;
	}
}

/* ================================================================ neuron alignment */

/*
 * Alignment score <a, b>: only its ranking matters (it picks the
 * permutation), and there are F^2 of them, so speed wins over the double
 * sums of the similarity: eight float32 partial sums over each block of 64
 * elements (a shape the compiler turns into SIMD without reassociating),
 * block sums added in double, always in the same order.
 */
static double dot_score(const float *a, const float *b, size_t len)
{
	double acc = 0.0;
	size_t k = 0;

	for (; k + 64 <= len; k += 64) {
		float s[8] = { 0 };

		for (size_t i = 0; i < 64; i += 8)
			for (int j = 0; j < 8; j++)
				s[j] += a[k + i + (size_t)j] * b[k + i + (size_t)j];
		acc += (double)(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
	}
	for (; k < len; k++)
		acc += (double)a[k] * (double)b[k];
	return acc;
}

/* Row r of the packed matrix: [gate[r, :], up[r, :], down[:, r]]. */
static void pack_ffn(const struct weld_moe_ffn *x, int64_t f, int64_t h, float *out)
{
	const size_t w = (size_t)h * (x->up ? 3 : 2);

	#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < f; r++) {
		float *row = out + (size_t)r * w;
		size_t k = 0;

		memcpy(row, x->gate + (size_t)r * (size_t)h, (size_t)h * sizeof(float));
		k += (size_t)h;
		if (x->up) {
			memcpy(row + k, x->up + (size_t)r * (size_t)h, (size_t)h * sizeof(float));
			k += (size_t)h;
		}
		for (int64_t c = 0; c < h; c++)
			row[k + (size_t)c] = x->down[(size_t)c * (size_t)f + (size_t)r];
	}
}

int weld_moe_align(const struct weld_moe_ffn *ref, const struct weld_moe_ffn *tgt,
		   int64_t f, int64_t h, int *perm, struct weld_error *err)
{
	size_t w;
	float *a = NULL, *b = NULL;
	double *cost = NULL;
	int ret = -1;

	if (f < 1 || h < 1 || f > INT_MAX || !ref || !tgt || !ref->gate || !ref->down ||
	    !tgt->gate || !tgt->down || !ref->up != !tgt->up)
		return weld_fail(err, WELD_ERR_ARG, "alignment: invalid arguments (F = %" PRId64
				 ", H = %" PRId64 ")", f, h);
	if ((uint64_t)f > SIZE_MAX / sizeof(double) / (uint64_t)f)
		return weld_fail(err, WELD_ERR_NOMEM, "alignment: FFN width %" PRId64 " is too large", f);
	w = (size_t)h * (ref->up ? 3 : 2);
	a = malloc((size_t)f * w * sizeof(float));
	b = malloc((size_t)f * w * sizeof(float));
	cost = malloc((size_t)f * (size_t)f * sizeof(double));
	if (!a || !b || !cost) {
		weld_fail(err, WELD_ERR_NOMEM, "alignment: out of memory for FFN width %" PRId64, f);
		goto out;
	}
	pack_ffn(ref, f, h, a);
	pack_ffn(tgt, f, h, b);

	/* four reference rows at a time share each target row in cache */
	#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t r0 = 0; r0 < f; r0 += 4) {
		const int64_t r1 = f - r0 < 4 ? f : r0 + 4;

		for (int64_t t = 0; t < f; t++) {
			const float *bt = b + (size_t)t * w;

			for (int64_t r = r0; r < r1; r++)
				cost[(size_t)r * (size_t)f + (size_t)t] = dot_score(a + (size_t)r * w, bt, w);
		}
	}
	ret = weld_lap_solve(cost, (int)f, true, perm, NULL, err);
out:
	free(a);
	free(b);
	free(cost);
	return ret;
}

/* ================================================================ MoE layout of a checkpoint */

/* The projection names of each naming style: gate (W1), up (W3), down (W2). */
struct moe_style {
	const char *name;      /* "mixtral", "qwen" */
	const char *block;     /* module holding the experts */
	const char *proj[3];   /* gate, up, down */
};

static const struct moe_style styles[] = {
	{ "mixtral", "block_sparse_moe", { "w1", "w3", "w2" } },
	{ "qwen", "mlp", { "gate_proj", "up_proj", "down_proj" } },
};

/* Expert-count keys of config.json, in the order they are reported. */
static const char *const expert_keys[] = { "num_local_experts", "num_experts", "n_routed_experts" };

/*
 * Split "<P><block>.experts.<e>.<suffix>" (P empty or ending in '.').
 * On success *plen is the length of "<P><block>." and *style the style.
 */
static bool split_expert_name(const char *name, size_t *plen, long *expert,
			      const char **suffix, const struct moe_style **style)
{
	for (const char *p = strstr(name, ".experts."); p; p = strstr(p + 1, ".experts.")) {
		const size_t end = (size_t)(p - name);
		size_t start = end;
		const char *q = p + 9;
		long e = 0;
		int digits = 0;

		while (start > 0 && name[start - 1] != '.')
			start--;
		*style = NULL;
		for (size_t k = 0; k < sizeof(styles) / sizeof(styles[0]); k++)
			if (strlen(styles[k].block) == end - start &&
			    memcmp(name + start, styles[k].block, end - start) == 0)
				*style = &styles[k];
		if (!*style)
			continue;
		while (isdigit((unsigned char)*q) && digits < 9) {
			e = e * 10 + (*q++ - '0');
			digits++;
		}
		if (!digits || *q != '.' || !q[1])
			continue;
		*plen = end + 1;
		*expert = e;
		*suffix = q + 1;
		return true;
	}
	return false;
}

/* L of "...layers.L." in a prefix, else its last all-digit component, else -1. */
static int layer_index_of(const char *prefix, size_t len)
{
	int last = -1;

	for (size_t k = 0; k < len; ) {
		size_t j = k;
		long v = 0;
		bool digits = true;

		while (j < len && prefix[j] != '.')
			j++;
		if (j == k)
			digits = false;
		for (size_t i = k; i < j && digits; i++) {
			if (!isdigit((unsigned char)prefix[i]) || v > INT_MAX / 10)
				digits = false;
			else
				v = v * 10 + (prefix[i] - '0');
		}
		if (digits) {
			if (k >= 7 && memcmp(prefix + k - 7, "layers.", 7) == 0)
				return (int)v;
			last = (int)v;
		}
		k = j + 1;
	}
	return last;
}

static int find_string(char *const *v, int n, const char *s)
{
	for (int k = 0; k < n; k++)
		if (strcmp(v[k], s) == 0)
			return k;
	return -1;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_layer(const void *a, const void *b)
{
	const struct weld_moe_layer *x = a, *y = b;

	return (x->index > y->index) - (x->index < y->index);
}

/* The error for a checkpoint without recognised expert tensors. */
static int no_experts_error(const struct weld_tensor_info *const *t, size_t n,
			    const char *model_type, struct weld_error *err)
{
	const char *example = NULL;
	size_t found = 0;
	char type[160] = "";

	for (size_t i = 0; i < n; i++) {
		if (strstr(t[i]->name, ".experts.") || strstr(t[i]->name, ".experts_")) {
			if (!example)
				example = t[i]->name;
			found++;
		}
	}
	if (model_type)
		snprintf(type, sizeof(type), " (config.json model_type '%.100s')", model_type);
	if (example)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "unrecognised MoE layout%s: no expert tensors matching "
				 "'...block_sparse_moe.experts.E.w1...' or '...mlp.experts.E.gate_proj...'; "
				 "found %zu other expert tensors among %zu, e.g. '%s' "
				 "(fused or differently named experts are not supported)",
				 type, found, n, example);
	return weld_fail(err, WELD_ERR_FORMAT,
			 "not a recognised MoE checkpoint%s: no expert tensors matching "
			 "'...block_sparse_moe.experts.E.w1...' or '...mlp.experts.E.gate_proj...'; "
			 "found 0 expert tensors among %zu", type, n);
}

/* model_type, num_experts_per_tok and the expert-count keys of config.json. */
static int read_config(struct weld_moe_layout *lo, const char *config, size_t len,
		       int *counts, struct weld_error *err)
{
	cJSON *root;
	const cJSON *v;

	for (size_t k = 0; k < sizeof(expert_keys) / sizeof(expert_keys[0]); k++)
		counts[k] = -1;
	if (!config)
		return 0;
	root = cJSON_ParseWithLength(config, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return weld_fail(err, WELD_ERR_FORMAT, "config.json: not a JSON object");
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (cJSON_IsString(v) && !(lo->model_type = dup_str(v->valuestring))) {
		cJSON_Delete(root);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "num_experts_per_tok");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= MAX_EXPERTS)
		lo->experts_per_tok = (int)v->valuedouble;
	for (size_t k = 0; k < sizeof(expert_keys) / sizeof(expert_keys[0]); k++) {
		v = cJSON_GetObjectItemCaseSensitive(root, expert_keys[k]);
		if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_EXPERTS)
			counts[k] = (int)v->valuedouble;
	}
	cJSON_Delete(root);
	return 0;
}

/* Shapes, dtypes and the alignment axis of every expert tensor of a layer. */
static int check_layer_tensors(struct weld_moe_layout *lo, struct weld_moe_layer *ly,
			       const struct weld_tensor_info *const *t, struct weld_error *err)
{
	const int ns = lo->n_suffix;
	const struct weld_tensor_info *g = t[ly->tensor[lo->gate_suffix]];
	const struct weld_tensor_info *u = t[ly->tensor[lo->up_suffix]];
	const struct weld_tensor_info *d = t[ly->tensor[lo->down_suffix]];

	if (g->ndim != 2 || u->ndim != 2 || d->ndim != 2 ||
	    u->shape[0] != g->shape[0] || u->shape[1] != g->shape[1] ||
	    d->shape[0] != g->shape[1] || d->shape[1] != g->shape[0])
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: expert shapes do not form an FFN: '%s' %dD [%" PRId64 ", ...], "
				 "'%s' %dD, '%s' %dD (expected [F, H], [F, H], [H, F])",
				 ly->index, g->name, g->ndim, g->ndim ? g->shape[0] : 0,
				 u->name, u->ndim, d->name, d->ndim);
	ly->ffn = g->shape[0];
	if (lo->hidden == 0)
		lo->hidden = g->shape[1];
	else if (lo->hidden != g->shape[1])
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: hidden size %" PRId64 " differs from %" PRId64 " in layer %d",
				 ly->index, g->shape[1], lo->hidden, lo->layers[0].index);

	for (int s = 0; s < ns; s++) {
		const struct weld_tensor_info *first = t[ly->tensor[s]];

		for (int e = 0; e < lo->n_experts; e++) {
			const struct weld_tensor_info *x = t[ly->tensor[(size_t)e * (size_t)ns + (size_t)s]];
			bool same = x->ndim == first->ndim;

			for (int k = 0; same && k < x->ndim; k++)
				same = x->shape[k] == first->shape[k];
			if (!same)
				return weld_fail(err, WELD_ERR_MISMATCH,
						 "tensor '%s': shape differs from '%s'", x->name, first->name);
			if (!weld_dtype_is_float(x->dtype))
				return weld_fail(err, WELD_ERR_FORMAT,
						 "tensor '%s': dtype %s cannot be merged (expert tensors must be floating)",
						 x->name, weld_dtype_name(x->dtype));
		}
		if (lo->axis[s] == WELD_MOE_AXIS_ROWS &&
		    (first->ndim < 1 || first->shape[0] != ly->ffn))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': first dimension is not the FFN width %" PRId64,
					 first->name, ly->ffn);
		if (lo->axis[s] == WELD_MOE_AXIS_COLS && first->shape[1] != ly->ffn)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': second dimension is not the FFN width %" PRId64,
					 first->name, ly->ffn);
	}
	return 0;
}

int weld_moe_layout_detect(struct weld_moe_layout *lo,
			   const struct weld_tensor_info *const *t, size_t n,
			   const char *config, size_t config_len,
			   struct weld_error *err)
{
	/* one entry per distinct prefix, found in a first pass */
	struct pre { char *prefix; size_t len; int max_expert; } *pre = NULL;
	int npre = 0, cap = 0, counts[3];
	const struct moe_style *style = NULL;
	const char *example_style = NULL;
	int ret = -1;

	memset(lo, 0, sizeof(*lo));
	if (read_config(lo, config, config_len, counts, err) < 0)
		goto fail;

	/* pass 1: prefixes, suffixes, expert counts */
	for (size_t i = 0; i < n; i++) {
		const struct moe_style *st;
		const char *suffix;
		size_t plen;
		long e;
		int k;

		if (!split_expert_name(t[i]->name, &plen, &e, &suffix, &st))
			continue;
		if (style && st != style) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "tensor '%s': mixes '%s.experts' with '%s.experts' (in '%s')",
				  t[i]->name, st->block, style->block, example_style);
			goto fail;
		}
		style = st;
		example_style = t[i]->name;
		if (e >= MAX_EXPERTS) {
			weld_fail(err, WELD_ERR_FORMAT, "tensor '%s': expert index %ld is too large",
				  t[i]->name, e);
			goto fail;
		}
		{
			const size_t pl = strcspn(suffix, ".");
			int p;

			for (p = 0; p < 3; p++)
				if (strlen(st->proj[p]) == pl && memcmp(suffix, st->proj[p], pl) == 0)
					break;
			if (p == 3) {
				weld_fail(err, WELD_ERR_FORMAT,
					  "tensor '%s': unknown expert tensor '%s' (expected %s, %s or %s)",
					  t[i]->name, suffix, st->proj[0], st->proj[1], st->proj[2]);
				goto fail;
			}
		}
		for (k = 0; k < npre; k++)
			if (pre[k].len == plen && memcmp(pre[k].prefix, t[i]->name, plen) == 0)
				break;
		if (k == npre) {
			if (npre == cap) {
				int nc = cap ? 2 * cap : 16;
				struct pre *np = realloc(pre, (size_t)nc * sizeof(*np));

				if (!np)
					goto nomem;
				pre = np;
				cap = nc;
			}
			pre[npre].prefix = dup_range(t[i]->name, plen);
			pre[npre].len = plen;
			pre[npre].max_expert = -1;
			if (!pre[npre].prefix)
				goto nomem;
			npre++;
		}
		if (e > pre[k].max_expert)
			pre[k].max_expert = (int)e;
		if (find_string(lo->suffix, lo->n_suffix, suffix) < 0) {
			char **ns = realloc(lo->suffix, (size_t)(lo->n_suffix + 1) * sizeof(*ns));

			if (!ns)
				goto nomem;
			lo->suffix = ns;
			if (!(lo->suffix[lo->n_suffix] = dup_str(suffix)))
				goto nomem;
			lo->n_suffix++;
		}
	}
	if (npre <= 0) {
		no_experts_error(t, n, lo->model_type, err);
		goto fail;
	}
	lo->style = style->name;

	/* suffixes: sorted, the three main weights required */
	qsort(lo->suffix, (size_t)lo->n_suffix, sizeof(*lo->suffix), cmp_str_ptr);
	lo->axis = malloc((size_t)lo->n_suffix * sizeof(*lo->axis));
	if (!lo->axis)
		goto nomem;
	{
		int *main_idx[3] = { &lo->gate_suffix, &lo->up_suffix, &lo->down_suffix };

		for (int p = 0; p < 3; p++) {
			char want[64];

			snprintf(want, sizeof(want), "%s.weight", style->proj[p]);
			*main_idx[p] = find_string(lo->suffix, lo->n_suffix, want);
			if (*main_idx[p] < 0) {
				weld_fail(err, WELD_ERR_FORMAT, "no '%sexperts.0.%s' tensors in '%s' MoE",
					  pre[0].prefix, want, style->name);
				goto fail;
			}
		}
		for (int s = 0; s < lo->n_suffix; s++) {
			const size_t pl = strcspn(lo->suffix[s], ".");

			if (strncmp(lo->suffix[s], style->proj[2], pl) == 0 &&
			    strlen(style->proj[2]) == pl)
				lo->axis[s] = s == lo->down_suffix ? WELD_MOE_AXIS_COLS : WELD_MOE_AXIS_NONE;
			else
				lo->axis[s] = WELD_MOE_AXIS_ROWS;
		}
	}

	/* layers: all with experts 0..E-1 */
	lo->n_experts = 0;
	for (int k = 0; k < npre; k++)
		if (pre[k].max_expert + 1 > lo->n_experts)
			lo->n_experts = pre[k].max_expert + 1;
	lo->n_layers = npre;
	lo->layers = calloc((size_t)npre, sizeof(*lo->layers));
	if (!lo->layers)
		goto nomem;
	for (int k = 0; k < npre; k++) {
		struct weld_moe_layer *ly = &lo->layers[k];
		const size_t cells = (size_t)lo->n_experts * (size_t)lo->n_suffix;

		ly->prefix = pre[k].prefix;
		pre[k].prefix = NULL;
		ly->index = layer_index_of(ly->prefix, pre[k].len);
		ly->router = -1;
		if (ly->index < 0) {
			weld_fail(err, WELD_ERR_FORMAT, "'%sexperts': cannot tell which layer this is",
				  ly->prefix);
			goto fail;
		}
		ly->tensor = malloc(cells * sizeof(*ly->tensor));
		if (!ly->tensor)
			goto nomem;
		for (size_t c = 0; c < cells; c++)
			ly->tensor[c] = SIZE_MAX;
	}
	qsort(lo->layers, (size_t)npre, sizeof(*lo->layers), cmp_layer);
	for (int k = 1; k < npre; k++) {
		if (lo->layers[k].index == lo->layers[k - 1].index) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%sexperts' and '%sexperts' both look like layer %d",
				  lo->layers[k - 1].prefix, lo->layers[k].prefix, lo->layers[k].index);
			goto fail;
		}
	}

	/* pass 2: roles of all tensors */
	lo->n_tensors = n;
	lo->roles = calloc(n ? n : 1, sizeof(*lo->roles));
	if (!lo->roles)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		struct weld_moe_tensor_role *r = &lo->roles[i];
		const struct moe_style *st;
		const char *suffix;
		size_t plen;
		long e;

		r->role = WELD_MOE_OTHER;
		r->layer = r->expert = r->suffix = -1;
		if (split_expert_name(t[i]->name, &plen, &e, &suffix, &st)) {
			int l;

			for (l = 0; l < npre; l++)
				if (strlen(lo->layers[l].prefix) == plen &&
				    memcmp(lo->layers[l].prefix, t[i]->name, plen) == 0)
					break;
			r->role = WELD_MOE_EXPERT;
			r->layer = l;
			r->expert = (int)e;
			r->suffix = find_string(lo->suffix, lo->n_suffix, suffix);
			lo->layers[l].tensor[(size_t)e * (size_t)lo->n_suffix + (size_t)r->suffix] = i;
			continue;
		}
		for (int l = 0; l < npre; l++) {
			const struct weld_moe_layer *ly = &lo->layers[l];
			const size_t pl = strlen(ly->prefix);

			if (strncmp(t[i]->name, ly->prefix, pl) != 0 ||
			    strncmp(t[i]->name + pl, "gate.", 5) != 0)
				continue;
			r->role = WELD_MOE_ROUTER;
			r->layer = l;
			if (strcmp(t[i]->name + pl, "gate.weight") == 0)
				lo->layers[l].router = (int64_t)i;
			break;
		}
	}

	/* completeness and shapes */
	for (int l = 0; l < npre; l++) {
		struct weld_moe_layer *ly = &lo->layers[l];

		for (int e = 0; e < lo->n_experts; e++) {
			for (int s = 0; s < lo->n_suffix; s++) {
				if (ly->tensor[(size_t)e * (size_t)lo->n_suffix + (size_t)s] == SIZE_MAX) {
					weld_fail(err, WELD_ERR_FORMAT,
						  "layer %d: missing '%sexperts.%d.%s' (the model has %d experts per layer)",
						  ly->index, ly->prefix, e, lo->suffix[s], lo->n_experts);
					goto fail;
				}
			}
		}
		if (check_layer_tensors(lo, ly, t, err) < 0)
			goto fail;
		if (ly->router >= 0 && (t[ly->router]->ndim != 2 ||
					t[ly->router]->shape[1] != lo->hidden ||
					!weld_dtype_is_float(t[ly->router]->dtype))) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "router '%s': expected a floating [%d, %" PRId64 "] matrix",
				  t[ly->router]->name, lo->n_experts, lo->hidden);
			goto fail;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (lo->roles[i].role == WELD_MOE_ROUTER &&
		    (t[i]->ndim < 1 || t[i]->shape[0] != lo->n_experts)) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "router '%s': first dimension %" PRId64 ", expected the %d experts",
				  t[i]->name, t[i]->ndim ? t[i]->shape[0] : 0, lo->n_experts);
			goto fail;
		}
	}
	for (size_t k = 0; k < sizeof(expert_keys) / sizeof(expert_keys[0]); k++) {
		if (counts[k] >= 0 && counts[k] != lo->n_experts) {
			weld_fail(err, WELD_ERR_MISMATCH,
				  "config.json: %s is %d but layer %d has %d experts",
				  expert_keys[k], counts[k], lo->layers[0].index, lo->n_experts);
			goto fail;
		}
	}
	ret = 0;
	goto out;
nomem:
	weld_fail(err, WELD_ERR_NOMEM, "out of memory");
fail:
	weld_moe_layout_release(lo);
out:
	for (int k = 0; k < npre; k++)
		free(pre[k].prefix);
	free(pre);
	return ret;
}

void weld_moe_layout_release(struct weld_moe_layout *lo)
{
	if (!lo)
		return;
	for (int s = 0; s < lo->n_suffix; s++)
		free(lo->suffix[s]);
	free(lo->suffix);
	free(lo->axis);
	if (lo->layers)
		for (int l = 0; l < lo->n_layers; l++) {
			free(lo->layers[l].prefix);
			free(lo->layers[l].tensor);
		}
	free(lo->layers);
	free(lo->roles);
	free(lo->model_type);
	memset(lo, 0, sizeof(*lo));
}

/* ================================================================ plan */

/* Bytes the streaming buffers may use: half the budget, the rest being
 * left to the reader, the writer and the process itself. */
static uint64_t buffer_budget(const struct weld_moe_opts *o)
{
	const uint64_t m = o->max_memory ? o->max_memory : (uint64_t)1000 * 1000 * 1000;

	return m / 2;
}

static size_t tensor_of(const struct weld_moe_layout *lo, int l, int e, int s)
{
	return lo->layers[l].tensor[(size_t)e * (size_t)lo->n_suffix + (size_t)s];
}

/* Cosine similarity of the experts' concatenated weights, streamed. */
static int weight_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			     uint64_t budget, double *sim, struct weld_error *err)
{
	const int e_n = lo->n_experts;
	uint64_t chunk = budget / ((uint64_t)e_n * sizeof(float) + 8);
	uint64_t largest = 0;
	double *gram = NULL;
	float *data = NULL;
	const float **x = NULL;
	void *scratch = NULL;
	int ret = -1;

	for (int s = 0; s < lo->n_suffix; s++) {
		const uint64_t ne = weld_model_tensor(m, tensor_of(lo, l, 0, s))->nelem;

		if (ne > largest)
			largest = ne;
	}
	chunk -= chunk % WELD_MOE_BLOCK;
	if (chunk < WELD_MOE_BLOCK)
		chunk = WELD_MOE_BLOCK;
	if (chunk > largest)
		chunk = largest + (WELD_MOE_BLOCK - largest % WELD_MOE_BLOCK) % WELD_MOE_BLOCK;
	gram = calloc((size_t)e_n * (size_t)e_n, sizeof(*gram));
	data = malloc((size_t)chunk * (size_t)e_n * sizeof(*data));
	x = malloc((size_t)e_n * sizeof(*x));
	scratch = malloc((size_t)chunk * 8);
	if (!gram || !data || !x || !scratch) {
		weld_fail(err, WELD_ERR_NOMEM, "weight similarity: out of memory");
		goto out;
	}
	for (int e = 0; e < e_n; e++)
		x[e] = data + (size_t)e * (size_t)chunk;
	for (int s = 0; s < lo->n_suffix; s++) {
		const uint64_t ne = weld_model_tensor(m, tensor_of(lo, l, 0, s))->nelem;

		for (uint64_t off = 0; off < ne; off += chunk) {
			const size_t len = (size_t)(ne - off < chunk ? ne - off : chunk);

			for (int e = 0; e < e_n; e++)
				if (weld_model_read_f32(m, tensor_of(lo, l, e, s), off, len,
							data + (size_t)e * (size_t)chunk, scratch, err) < 0)
					goto out;
			weld_moe_gram_update(gram, e_n, x, len);
		}
	}
	for (int e = 0; e < e_n; e++) {
		if (!isfinite(gram[(size_t)e * (size_t)e_n + (size_t)e])) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "layer %d: expert %d has non-finite weights (or their norm overflows)",
				  lo->layers[l].index, e);
			goto out;
		}
	}
	weld_moe_gram_similarity(gram, e_n, sim);
	ret = 0;
out:
	free(gram);
	free(data);
	free(x);
	free(scratch);
	return ret;
}

static int router_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			     double *sim, struct weld_error *err)
{
	const struct weld_moe_layer *ly = &lo->layers[l];
	const size_t len = (size_t)lo->n_experts * (size_t)lo->hidden;
	float *rows;
	int ret = -1;

	if (ly->router < 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: no router '%sgate.weight' for --similarity router "
				 "(use --similarity weight, or similarities in --stats)",
				 ly->index, ly->prefix);
	rows = malloc(len * sizeof(*rows));
	if (!rows)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_model_read_f32(m, (size_t)ly->router, 0, len, rows, NULL, err) < 0)
		goto out;
	for (size_t k = 0; k < len; k++) {
		if (!isfinite(rows[k])) {
			weld_fail(err, WELD_ERR_FORMAT, "router '%sgate.weight': value %zu is not finite",
				  ly->prefix, k);
			goto out;
		}
	}
	ret = weld_moe_row_similarity(rows, lo->n_experts, (size_t)lo->hidden, sim, err);
out:
	free(rows);
	return ret;
}

/* What --align holds at once for one layer (see weld_moe_write()). */
static uint64_t align_bytes_of(int64_t f, int64_t h)
{
	const double fh = (double)f * (double)h;
	const double b = 2 * 3 * fh * 4     /* reference and target experts */
		       + 2 * 3 * fh * 4     /* their packed copies */
		       + (double)f * (double)f * 8  /* the cost matrix */
		       + 3 * fh * 2;        /* read scratch */

	return b > 1.8e19 ? UINT64_MAX : (uint64_t)b;
}

int weld_moe_plan_build(struct weld_moe_plan *p, const weld_model *m,
			const struct weld_moe_opts *o, struct weld_error *err)
{
	const size_t n = weld_model_count(m);
	const struct weld_tensor_info **t = malloc((n ? n : 1) * sizeof(*t));
	struct weld_moe_layout *lo = &p->layout;
	int *ids = NULL;
	double *simbuf = NULL;
	int e_n, l_n, needed = 0, ret = -1;

	memset(p, 0, sizeof(*p));
	p->opts = *o;
	if (!t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (o->threads > 0)
		omp_set_num_threads(o->threads);
	for (size_t i = 0; i < n; i++)
		t[i] = weld_model_tensor(m, i);
	if (weld_moe_layout_detect(lo, t, n, o->config, o->config_len, err) < 0)
		goto out;
	e_n = lo->n_experts;
	l_n = lo->n_layers;
	if (o->groups < 1 || o->groups > e_n) {
		weld_fail(err, WELD_ERR_ARG, "--groups %d: the model has %d experts per layer",
			  o->groups, e_n);
		goto out;
	}
	ids = malloc((size_t)l_n * sizeof(*ids));
	p->groups = malloc((size_t)l_n * sizeof(*p->groups));
	p->label = malloc((size_t)l_n * (size_t)e_n * sizeof(*p->label));
	p->dominant = malloc((size_t)l_n * (size_t)e_n * sizeof(*p->dominant));
	simbuf = malloc((size_t)e_n * (size_t)e_n * sizeof(*simbuf));
	if (!ids || !p->groups || !p->label || !p->dominant || !simbuf) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int l = 0; l < l_n; l++)
		ids[l] = lo->layers[l].index;
	if (o->stats && weld_moe_stats_parse(&p->stats, o->stats, o->stats_len,
					     o->stats_name ? o->stats_name : "stats",
					     ids, l_n, e_n, err) < 0)
		goto out;
	if (weld_moe_allocate(p->stats.freq, l_n, e_n, o->groups, o->uniform_groups,
			      p->groups, err) < 0)
		goto out;

	if (o->layout == WELD_MOE_OUT_COMPACT) {
		int lo_g = p->groups[0], hi_g = p->groups[0];

		for (int l = 1; l < l_n; l++) {
			lo_g = p->groups[l] < lo_g ? p->groups[l] : lo_g;
			hi_g = p->groups[l] > hi_g ? p->groups[l] : hi_g;
		}
		if (lo_g != hi_g) {
			weld_fail(err, WELD_ERR_ARG,
				  "--layout compact needs the same number of groups in every layer, "
				  "but the global allocation gave between %d and %d "
				  "(use --uniform-groups, or --layout alias)", lo_g, hi_g);
			goto out;
		}
		if (lo->experts_per_tok > p->groups[0]) {
			weld_fail(err, WELD_ERR_ARG,
				  "--layout compact: config.json routes each token to %d experts "
				  "(num_experts_per_tok), more than the %d groups",
				  lo->experts_per_tok, p->groups[0]);
			goto out;
		}
		for (int l = 0; l < l_n; l++) {
			if (lo->layers[l].router < 0) {
				weld_fail(err, WELD_ERR_FORMAT,
					  "--layout compact: layer %d has no router '%sgate.weight' to shrink",
					  lo->layers[l].index, lo->layers[l].prefix);
				goto out;
			}
		}
	}

	for (int l = 0; l < l_n; l++) {
		const double *freq = p->stats.freq ? p->stats.freq + (size_t)l * (size_t)e_n : NULL;
		const double *sim = NULL;

		if (p->groups[l] < e_n) {
			needed++;
			if (p->stats.sim && p->stats.sim[l]) {
				sim = p->stats.sim[l];
				p->n_stats_sim++;
			} else if (o->similarity == WELD_MOE_SIM_ROUTER) {
				if (router_similarity(m, lo, l, simbuf, err) < 0)
					goto out;
				sim = simbuf;
			} else {
				if (weight_similarity(m, lo, l, buffer_budget(o), simbuf, err) < 0)
					goto out;
				sim = simbuf;
			}
		}
		if (weld_moe_group(freq, sim, e_n, p->groups[l],
				   p->label + (size_t)l * (size_t)e_n,
				   p->dominant + (size_t)l * (size_t)e_n, err) < 0)
			goto out;
	}
	if (needed == 0)
		p->sim_source = "none";
	else if (p->n_stats_sim == needed)
		p->sim_source = "stats";
	else if (o->similarity == WELD_MOE_SIM_WEIGHT)
		p->sim_source = p->n_stats_sim ? "stats+weight" : "weight";
	else
		p->sim_source = p->n_stats_sim ? "stats+router" : "router";

	if (o->align) {
		const double w = 3.0 * (double)lo->hidden;

		for (int l = 0; l < l_n; l++) {
			const int64_t f = lo->layers[l].ffn;
			const uint64_t b = align_bytes_of(f, lo->hidden);
			const double fd = (double)f;

			if (b > p->align_bytes)
				p->align_bytes = b;
			p->align_work += (double)(e_n - p->groups[l]) * (fd * fd * fd + fd * fd * w);
			if (f > INT_MAX) {
				weld_fail(err, WELD_ERR_ARG, "--align: FFN width %" PRId64 " is too large", f);
				goto out;
			}
		}
		if (o->max_memory && p->align_bytes > o->max_memory) {
			char need[32], have[32];

			weld_format_size(p->align_bytes, need, sizeof(need));
			weld_format_size(o->max_memory, have, sizeof(have));
			weld_fail(err, WELD_ERR_ARG,
				  "--align needs about %s for FFN width %" PRId64 " (two experts and an "
				  "F x F cost matrix), more than --max-memory %s",
				  need, lo->layers[0].ffn, have);
			goto out;
		}
	}
	ret = 0;
out:
	free(t);
	free(ids);
	free(simbuf);
	if (ret)
		weld_moe_plan_release(p);
	return ret;
}

void weld_moe_plan_release(struct weld_moe_plan *p)
{
	if (!p)
		return;
	weld_moe_layout_release(&p->layout);
	weld_moe_stats_release(&p->stats);
	free(p->groups);
	free(p->label);
	free(p->dominant);
	memset(p, 0, sizeof(*p));
}

char *weld_moe_groups_json(const struct weld_moe_plan *p)
{
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	cJSON *root = cJSON_CreateObject(), *layers;
	char *text = NULL;

	if (!root)
		return NULL;
	if (!cJSON_AddStringToObject(root, "method", "m-smoe") ||
	    !cJSON_AddStringToObject(root, "layout",
				     p->opts.layout == WELD_MOE_OUT_COMPACT ? "compact" : "alias") ||
	    !cJSON_AddNumberToObject(root, "num_experts", e_n) ||
	    !(layers = cJSON_AddObjectToObject(root, "layers")))
		goto out;
	for (int l = 0; l < lo->n_layers; l++) {
		const int *label = p->label + (size_t)l * (size_t)e_n;
		const int *dom = p->dominant + (size_t)l * (size_t)e_n;
		cJSON *entry, *groups, *dominant;
		char key[16];

		snprintf(key, sizeof(key), "%d", lo->layers[l].index);
		if (!(entry = cJSON_AddObjectToObject(layers, key)) ||
		    !cJSON_AddNumberToObject(entry, "groups", p->groups[l]) ||
		    !(groups = cJSON_AddArrayToObject(entry, "expert_to_group")) ||
		    !(dominant = cJSON_AddArrayToObject(entry, "dominant")))
			goto out;
		for (int e = 0; e < e_n; e++) {
			cJSON *v = cJSON_CreateNumber(label[e]);

			if (!v || !cJSON_AddItemToArray(groups, v)) {
				cJSON_Delete(v);
				goto out;
			}
		}
		for (int g = 0; g < p->groups[l]; g++) {
			cJSON *v = cJSON_CreateNumber(dom[g]);

			if (!v || !cJSON_AddItemToArray(dominant, v)) {
				cJSON_Delete(v);
				goto out;
			}
		}
	}
	text = cJSON_Print(root);
	if (text) {
		const size_t len = strlen(text);
		char *t2 = realloc(text, len + 2);

		if (t2) {
			text = t2;
			memcpy(text + len, "\n", 2);
		}
	}
out:
	cJSON_Delete(root);
	return text;
}

/* ================================================================ write */

struct write_ctx {
	const struct weld_moe_plan *p;
	const weld_model *m;
	weld_writer *w;
	struct weld_error *err;
	uint64_t budget;
	int64_t *out_of;          /* per input tensor: output tensor, or -1 */
	size_t *widx;             /* per output tensor: index in the writer */
	weld_moe_progress_fn progress;
	void *progress_ctx;
	uint64_t done, total;
};

static bool encodable(enum weld_dtype d)
{
	return d == WELD_F64 || d == WELD_F32 || d == WELD_F16 || d == WELD_BF16;
}

/* Output dtype of a merged expert tensor: --dtype, else the input's when it
 * can be written, else BF16 (8-bit float experts). */
static enum weld_dtype merged_dtype(const struct weld_moe_plan *p, enum weld_dtype in)
{
	if (p->opts.out_dtype >= 0)
		return (enum weld_dtype)p->opts.out_dtype;
	return encodable(in) ? in : WELD_BF16;
}

/* Output dtype of a copied tensor: converted only for an explicit --dtype,
 * and only if it is floating. */
static enum weld_dtype copied_dtype(const struct weld_moe_plan *p, enum weld_dtype in)
{
	if (p->opts.out_dtype >= 0 && weld_dtype_is_float(in))
		return (enum weld_dtype)p->opts.out_dtype;
	return in;
}

static void report(struct write_ctx *c, uint64_t bytes)
{
	c->done += bytes;
	if (c->progress)
		c->progress(c->progress_ctx, c->done, c->total);
}

/* Copy elements [first, first + count) of input tensor i to writer tensor
 * wi, converting to out when it differs from the input dtype. */
static int copy_elements(struct write_ctx *c, size_t i, size_t wi, enum weld_dtype out,
			 uint64_t first, uint64_t count, void *raw, float *f32, void *enc,
			 uint64_t chunk)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->m, i);

	for (uint64_t off = 0; off < count; off += chunk) {
		const size_t len = (size_t)(count - off < chunk ? count - off : chunk);

		if (out == t->dtype) {
			if (weld_model_read(c->m, i, first + off, len, raw, c->err) < 0 ||
			    weld_writer_write(c->w, wi, raw, len * weld_dtype_size(out), c->err) < 0)
				return -1;
			continue;
		}
		if (weld_model_read_f32(c->m, i, first + off, len, f32, raw, c->err) < 0)
			return -1;
		if (weld_encode_f32(out, f32, enc, len) < 0)
			return weld_fail(c->err, WELD_ERR_ARG, "tensor '%s': cannot write dtype %s",
					 t->name, weld_dtype_name(out));
		if (weld_writer_write(c->w, wi, enc, len * weld_dtype_size(out), c->err) < 0)
			return -1;
	}
	return 0;
}

/* Non-expert tensors: copied; in the compact layout the routers keep the
 * rows of the dominant experts, in group order. */
static int copy_plain(struct write_ctx *c, const struct weld_out_tensor *ot)
{
	const struct weld_moe_plan *p = c->p;
	const size_t n = weld_model_count(c->m);
	const uint64_t chunk = c->budget / 20 > 0 ? c->budget / 20 : 1;
	void *raw = malloc((size_t)chunk * 8);
	float *f32 = malloc((size_t)chunk * sizeof(float));
	void *enc = malloc((size_t)chunk * 8);
	int ret = -1;

	if (!raw || !f32 || !enc) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct weld_moe_tensor_role *r = &p->layout.roles[i];
		const struct weld_tensor_info *t = weld_model_tensor(c->m, i);
		const int64_t k = c->out_of[i];
		size_t wi;

		if (r->role == WELD_MOE_EXPERT)
			continue;
		wi = c->widx[k];
		if (r->role == WELD_MOE_ROUTER && p->opts.layout == WELD_MOE_OUT_COMPACT) {
			const int e_n = p->layout.n_experts;
			const int *dom = p->dominant + (size_t)r->layer * (size_t)e_n;
			const uint64_t row = t->nelem / (uint64_t)e_n;

			for (int g = 0; g < p->groups[r->layer]; g++)
				if (copy_elements(c, i, wi, ot[k].dtype, (uint64_t)dom[g] * row, row,
						  raw, f32, enc, chunk) < 0)
					goto out;
		} else if (copy_elements(c, i, wi, ot[k].dtype, 0, t->nelem, raw, f32, enc,
					 chunk) < 0) {
			goto out;
		}
		report(c, t->nbytes);
	}
	ret = 0;
out:
	free(raw);
	free(f32);
	free(enc);
	return ret;
}

/* Read a whole tensor as float32 into a new buffer. */
static float *read_whole(struct write_ctx *c, size_t i)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->m, i);
	float *x = malloc((size_t)t->nelem * sizeof(*x) + 1);

	if (!x) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory reading '%s'", t->name);
		return NULL;
	}
	if (weld_model_read_f32(c->m, i, 0, (size_t)t->nelem, x, NULL, c->err) < 0) {
		free(x);
		return NULL;
	}
	return x;
}

/* An expert's three main matrices, read whole, and the view of them. */
struct loaded_ffn {
	float *gate, *up, *down;
	struct weld_moe_ffn view;
};

static void free_ffn(struct loaded_ffn *x)
{
	free(x->gate);
	free(x->up);
	free(x->down);
	memset(x, 0, sizeof(*x));
}

static int load_ffn(struct write_ctx *c, int l, int e, struct loaded_ffn *x)
{
	const struct weld_moe_layout *lo = &c->p->layout;

	x->gate = read_whole(c, tensor_of(lo, l, e, lo->gate_suffix));
	x->up = x->gate ? read_whole(c, tensor_of(lo, l, e, lo->up_suffix)) : NULL;
	x->down = x->up ? read_whole(c, tensor_of(lo, l, e, lo->down_suffix)) : NULL;
	if (!x->down) {
		free_ffn(x);
		return -1;
	}
	x->view.gate = x->gate;
	x->view.up = x->up;
	x->view.down = x->down;
	return 0;
}

/*
 * Permutations of layer l (perm[e * F ...], has[e] set) that align every
 * member of a group to its dominant expert.
 */
static int align_layer(struct write_ctx *c, int l, int *perm, bool *has)
{
	const struct weld_moe_plan *p = c->p;
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	const int64_t f = lo->layers[l].ffn;
	const int *label = p->label + (size_t)l * (size_t)e_n;
	const int *dom = p->dominant + (size_t)l * (size_t)e_n;

	for (int g = 0; g < p->groups[l]; g++) {
		struct loaded_ffn ref = { 0 };
		bool loaded = false;

		for (int e = 0; e < e_n; e++) {
			struct loaded_ffn tgt = { 0 };
			int r;

			if (label[e] != g || e == dom[g])
				continue;
			if (!loaded && load_ffn(c, l, dom[g], &ref) < 0)
				return -1;
			loaded = true;
			if (load_ffn(c, l, e, &tgt) < 0) {
				free_ffn(&ref);
				return -1;
			}
			r = weld_moe_align(&ref.view, &tgt.view, f, lo->hidden,
					   perm + (size_t)e * (size_t)f, c->err);
			free_ffn(&tgt);
			if (r < 0) {
				char why[sizeof(c->err->msg)];

				free_ffn(&ref);
				memcpy(why, c->err->msg, sizeof(why));
				return weld_fail(c->err, c->err->status, "layer %d: aligning expert %d to %d: %s",
						 lo->layers[l].index, e, dom[g], why);
			}
			has[e] = true;
		}
		free_ffn(&ref);
	}
	return 0;
}

/* Rows [r0, r1) of a [rows, cols] view of tensor i, aligned by perm if given. */
static int read_rows(struct write_ctx *c, size_t i, uint64_t r0, uint64_t r1, uint64_t cols,
		     const int *perm, enum weld_moe_axis axis, float *dst, void *scratch,
		     float *tmp)
{
	if (perm && axis == WELD_MOE_AXIS_ROWS) {
		for (uint64_t r = r0; r < r1; r++)
			if (weld_model_read_f32(c->m, i, (uint64_t)perm[r] * cols, (size_t)cols,
						dst + (size_t)(r - r0) * (size_t)cols, scratch, c->err) < 0)
				return -1;
		return 0;
	}
	if (weld_model_read_f32(c->m, i, r0 * cols, (size_t)((r1 - r0) * cols), dst, scratch,
				c->err) < 0)
		return -1;
	if (perm && axis == WELD_MOE_AXIS_COLS) {
		for (uint64_t r = r0; r < r1; r++) {
			float *row = dst + (size_t)(r - r0) * (size_t)cols;

			for (uint64_t k = 0; k < cols; k++)
				tmp[k] = row[perm[k]];
			memcpy(row, tmp, (size_t)cols * sizeof(float));
		}
	}
	return 0;
}

/*
 * Merge one tensor (suffix s) of group g of layer l and write it to every
 * output tensor that holds the group (targets[0..nt)).
 */
static int merge_tensor(struct write_ctx *c, int l, int s, const int *members, int nm,
			const float *coef, const int *perm, const bool *has,
			const size_t *targets, int nt)
{
	const struct weld_moe_layout *lo = &c->p->layout;
	const struct weld_tensor_info *t0 = weld_model_tensor(c->m, tensor_of(lo, l, members[0], s));
	const enum weld_dtype out = merged_dtype(c->p, t0->dtype);
	const enum weld_moe_axis axis = perm ? lo->axis[s] : WELD_MOE_AXIS_NONE;
	const uint64_t rows = t0->ndim >= 1 && t0->shape[0] > 0 ? (uint64_t)t0->shape[0] : 1;
	const uint64_t cols = t0->nelem / rows;
	const int64_t f = lo->layers[l].ffn;
	/* per row: member rows and the merged row (float), encode + read scratch */
	const uint64_t per_row = cols * ((uint64_t)(nm + 1) * sizeof(float) + 16);
	uint64_t step = per_row ? c->budget / per_row : rows;
	float *src = NULL, *dst = NULL, *tmp = NULL;
	const float **srcp = NULL;
	void *enc = NULL, *scratch = NULL;
	int ret = -1;

	if (t0->nelem == 0)
		return 0;
	if (step < 1)
		step = 1;
	if (step > rows)
		step = rows;
	src = malloc((size_t)(step * cols) * (size_t)nm * sizeof(*src));
	dst = malloc((size_t)(step * cols) * sizeof(*dst));
	enc = malloc((size_t)(step * cols) * 8);
	scratch = malloc((size_t)(step * cols) * 8);
	tmp = malloc((size_t)cols * sizeof(*tmp));
	srcp = malloc((size_t)nm * sizeof(*srcp));
	if (!src || !dst || !enc || !scratch || !tmp || !srcp) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory merging '%s'", t0->name);
		goto out;
	}
	for (uint64_t r0 = 0; r0 < rows; r0 += step) {
		const uint64_t r1 = rows - r0 < step ? rows : r0 + step;
		const size_t len = (size_t)((r1 - r0) * cols);

		for (int k = 0; k < nm; k++) {
			const int e = members[k];
			const int *pe = perm && has[e] ? perm + (size_t)e * (size_t)f : NULL;

			float *buf = src + (size_t)k * (size_t)(step * cols);

			srcp[k] = buf;
			if (read_rows(c, tensor_of(lo, l, e, s), r0, r1, cols, pe, axis, buf,
				      scratch, tmp) < 0)
				goto out;
		}
		weld_moe_merge(dst, srcp, coef, nm, len);
		if (weld_encode_f32(out, dst, enc, len) < 0) {
			weld_fail(c->err, WELD_ERR_ARG, "tensor '%s': cannot write dtype %s",
				  t0->name, weld_dtype_name(out));
			goto out;
		}
		for (int k = 0; k < nt; k++)
			if (weld_writer_write(c->w, targets[k], enc, len * weld_dtype_size(out),
					      c->err) < 0)
				goto out;
	}
	for (int k = 0; k < nm; k++)
		report(c, weld_model_tensor(c->m, tensor_of(lo, l, members[k], s))->nbytes);
	ret = 0;
out:
	free(src);
	free(dst);
	free(enc);
	free(scratch);
	free(tmp);
	free(srcp);
	return ret;
}

static int merge_layer(struct write_ctx *c, int l)
{
	const struct weld_moe_plan *p = c->p;
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	const int *label = p->label + (size_t)l * (size_t)e_n;
	int *members = malloc((size_t)e_n * sizeof(*members));
	float *coef = malloc((size_t)e_n * sizeof(*coef));
	size_t *targets = malloc((size_t)e_n * sizeof(*targets));
	int *perm = NULL;
	bool *has = NULL;
	int ret = -1;

	if (!members || !coef || !targets) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (p->opts.align) {
		perm = malloc((size_t)e_n * (size_t)lo->layers[l].ffn * sizeof(*perm));
		has = calloc((size_t)e_n, sizeof(*has));
		if (!perm || !has) {
			weld_fail(c->err, WELD_ERR_NOMEM, "--align: out of memory");
			goto out;
		}
		if (align_layer(c, l, perm, has) < 0)
			goto out;
	}
	for (int g = 0; g < p->groups[l]; g++) {
		int nm = 0;

		for (int e = 0; e < e_n; e++)
			if (label[e] == g)
				members[nm++] = e;
		weld_moe_merge_coefs(p->stats.freq ? p->stats.freq + (size_t)l * (size_t)e_n : NULL,
				     1.0 / e_n, members, nm, coef);
		for (int s = 0; s < lo->n_suffix; s++) {
			int nt = 0;

			if (p->opts.layout == WELD_MOE_OUT_COMPACT) {
				const int64_t k = c->out_of[tensor_of(lo, l, g, s)];

				targets[nt++] = c->widx[k];
			} else {
				for (int k = 0; k < nm; k++) {
					const int64_t o = c->out_of[tensor_of(lo, l, members[k], s)];

					targets[nt++] = c->widx[o];
				}
			}
			if (merge_tensor(c, l, s, members, nm, coef, perm, has, targets, nt) < 0)
				goto out;
		}
	}
	ret = 0;
out:
	free(members);
	free(coef);
	free(targets);
	free(perm);
	free(has);
	return ret;
}

static int edit_config_compact(void *ctx, void *cjson_root, struct weld_error *err)
{
	const int g = *(const int *)ctx;
	cJSON *root = cjson_root;

	(void)err;
	for (size_t k = 0; k < sizeof(expert_keys) / sizeof(expert_keys[0]); k++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(root, expert_keys[k]);

		if (cJSON_IsNumber(v))
			cJSON_SetNumberValue(v, g);
	}
	return 0;
}

/* The output tensors, in input order; out_of maps input to output. */
static int build_outputs(const struct weld_moe_plan *p, const weld_model *m,
			 struct weld_out_tensor *ot, size_t *count, int64_t *out_of,
			 char **names, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &p->layout;
	const size_t n = weld_model_count(m);
	const bool compact = p->opts.layout == WELD_MOE_OUT_COMPACT;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		const struct weld_moe_tensor_role *r = &lo->roles[i];
		struct weld_out_tensor *o = &ot[k];

		out_of[i] = -1;
		o->name = t->name;
		o->ndim = t->ndim;
		memcpy(o->shape, t->shape, sizeof(o->shape));
		o->dtype = copied_dtype(p, t->dtype);
		if (r->role == WELD_MOE_ROUTER && compact) {
			o->shape[0] = p->groups[r->layer];
		} else if (r->role == WELD_MOE_EXPERT) {
			const struct weld_tensor_info *t0 =
				weld_model_tensor(m, tensor_of(lo, r->layer, 0, r->suffix));

			o->dtype = merged_dtype(p, t0->dtype);
			if (compact) {
				const char *prefix = lo->layers[r->layer].prefix;
				const char *suffix = lo->suffix[r->suffix];
				const size_t len = strlen(prefix) + strlen(suffix) + 32;

				if (r->expert >= p->groups[r->layer])
					continue;
				names[k] = malloc(len);
				if (!names[k])
					return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
				snprintf(names[k], len, "%sexperts.%d.%s", prefix, r->expert, suffix);
				o->name = names[k];
			}
		}
		out_of[i] = (int64_t)k++;
	}
	*count = k;
	return 0;
}

int weld_moe_write(const struct weld_moe_plan *p, const weld_model *m,
		   const char *out_dir, const struct weld_writer_opts *wopts,
		   weld_moe_progress_fn progress, void *progress_ctx,
		   struct weld_error *err)
{
	const size_t n = weld_model_count(m);
	struct weld_out_tensor *ot = calloc(n ? n : 1, sizeof(*ot));
	char **names = calloc(n ? n : 1, sizeof(*names));
	int64_t *out_of = malloc((n ? n : 1) * sizeof(*out_of));
	struct weld_writer_opts wo = *wopts;
	struct write_ctx c = { 0 };
	char *groups_json = NULL;
	int compact_groups = p->groups ? p->groups[0] : 0;
	size_t count = 0;
	int ret = -1;

	c.p = p;
	c.m = m;
	c.err = err;
	c.budget = buffer_budget(&p->opts);
	c.out_of = out_of;
	c.progress = progress;
	c.progress_ctx = progress_ctx;
	if (!ot || !names || !out_of) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (p->opts.threads > 0)
		omp_set_num_threads(p->opts.threads);
	if (p->layout.n_tensors != n) {
		weld_fail(err, WELD_ERR_ARG, "the plan was made for another model");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		c.total += weld_model_tensor(m, i)->nbytes;
	if (build_outputs(p, m, ot, &count, out_of, names, err) < 0)
		goto out;
	groups_json = weld_moe_groups_json(p);
	if (!groups_json) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	wo.extra_name = "expert_groups.json";
	wo.extra_data = groups_json;
	if (p->opts.layout == WELD_MOE_OUT_COMPACT) {
		wo.edit_config = edit_config_compact;
		wo.edit_config_ctx = &compact_groups;
	}
	if (weld_writer_open(&c.w, out_dir, ot, count, &wo, err) < 0)
		goto out;
	/* the writer keeps its own order; look each name up once */
	c.widx = malloc((count ? count : 1) * sizeof(*c.widx));
	if (!c.widx) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < count; k++)
		c.widx[k] = (size_t)weld_writer_find(c.w, ot[k].name);
	if (copy_plain(&c, ot) < 0)
		goto out;
	for (int l = 0; l < p->layout.n_layers; l++)
		if (merge_layer(&c, l) < 0)
			goto out;
	if (weld_writer_commit(c.w, err) < 0)
		goto out;
	ret = 0;
out:
	weld_writer_close(c.w);
	if (names)
		for (size_t k = 0; k < n; k++)
			free(names[k]);
	free(names);
	free(ot);
	free(out_of);
	free(c.widx);
	free(groups_json);
	return ret;
}
