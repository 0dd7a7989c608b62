/*
 * fp8_scales.c - FP8 checkpoints with scales (DESIGN 6.2): find each
 * F8_E4M3 weight's scale tensor and make the pair one tensor that reads
 * as float32.
 *
 * Two conventions, told apart by config.json's quantization_config and by
 * the scale's name:
 *   "quant_method": "fp8" (DeepSeek-V3/R1, Qwen3-FP8, transformers'
 *     FineGrainedFP8): W F8_E4M3 [..., R, C] and W_scale_inv F32 or BF16
 *     [..., ceil(R/b0), ceil(C/b1)], [b0, b1] = "weight_block_size"
 *     (default [128, 128]);
 *   "quant_method": "compressed-tensors", format "float-quantized" (or
 *     "naive-quantized"), 8-bit float weights: W and W_scale in the weight's
 *     dtype, [1] (strategy tensor), [R, 1] (channel) or the block grid of
 *     "block_structure" (block).
 * Without a quantization_config the names decide (block [128, 128] for
 * _scale_inv; _scale by its shape). Once one weight has a scale, every
 * F8_E4M3 tensor needs one, and a "weight_scale[_inv]" tensor without its
 * FP8 weight is refused: neither may be merged as a plain tensor.
 * Activation scales (input_scale, k_scale, v_scale, activation_scale) of a
 * quantised model are dropped. Scale values are checked (finite) as they
 * are read, a chunk's rows at a time (model.c).
 */
#include "format.h"
#include "fp8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What config.json says, and where it was read (for messages). */
struct fp8_config {
	char path[4096];
	bool fp8;               /* quant_method fp8 */
	bool compressed;        /* quant_method compressed-tensors */
	int64_t block[2];       /* block size; 0: none given */
	const char *block_key;  /* the key it came from */
};

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Two positive integers (< 2^31) into block[]. */
static int parse_block(const struct fp8_config *c, const cJSON *v, const char *key,
		       int64_t block[2], struct weld_error *err)
{
	int k = 0;
	const cJSON *e;

	if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2)
		cJSON_ArrayForEach(e, v) {
			if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > 2147483647.0 ||
			    e->valuedouble != floor(e->valuedouble))
				break;
			block[k++] = (int64_t)e->valuedouble;
		}
	if (k != 2)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': quantization_config.%s: must be two positive integers", c->path,
				 key);
	return 0;
}

static const char *str_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The "fp8" method: fmt e4m3, weight_block_size. */
static int parse_fp8(struct fp8_config *c, const cJSON *q, struct weld_error *err)
{
	const char *fmt = str_of(q, "fmt");
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");

	c->fp8 = true;
	if (fmt && strcmp(fmt, "e4m3") != 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': quantization_config.fmt: '%s' is not supported (weld reads e4m3)",
				 c->path, fmt);
	c->block_key = "weight_block_size";
	if (!b || cJSON_IsNull(b)) {
		c->block[0] = c->block[1] = 128;
		return 0;
	}
	return parse_block(c, b, c->block_key, c->block, err);
}

/* One compressed-tensors group's weights: 8-bit float, a strategy weld reads. */
static int parse_group(struct fp8_config *c, const cJSON *g, struct weld_error *err)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights");
	const cJSON *bits = cJSON_GetObjectItemCaseSensitive(w, "num_bits");
	const char *type = str_of(w, "type"), *strategy = str_of(w, "strategy");

	if (!cJSON_IsObject(w))
		return 0;
	if (!cJSON_IsNumber(bits) || bits->valuedouble != 8 || !type || strcmp(type, "float") != 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': quantization_config.config_groups.%s.weights: only 8-bit float "
				 "weights are supported", c->path, g->string);
	if (strategy && strcmp(strategy, "block") == 0) {
		c->block_key = "config_groups.*.weights.block_structure";
		return parse_block(c, cJSON_GetObjectItemCaseSensitive(w, "block_structure"),
				   c->block_key, c->block, err);
	}
	if (!strategy || (strcmp(strategy, "tensor") != 0 && strcmp(strategy, "channel") != 0))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': quantization_config.config_groups.%s.weights.strategy: '%s' is "
				 "not supported (tensor, channel or block)", c->path, g->string,
				 strategy ? strategy : "(missing)");
	return 0;
}

static int parse_compressed(struct fp8_config *c, const cJSON *q, struct weld_error *err)
{
	const char *format = str_of(q, "format");
	const cJSON *g;

	c->compressed = true;
	if (!format || (strcmp(format, "float-quantized") != 0 &&
			strcmp(format, "naive-quantized") != 0))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': quantization_config.format: '%s' is not supported (weld reads "
				 "float-quantized FP8)", c->path, format ? format : "(missing)");
	cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(q, "config_groups"))
		if (parse_group(c, g, err) < 0)
			return -1;
	return 0;
}

/* config.json's quantization_config, if the folder has one. */
static int read_config(const weld_model *m, struct fp8_config *c, struct weld_error *err)
{
	char *p = weld_path_join(weld_model_dir(m), "config.json"), *text = NULL;
	cJSON *root = NULL;
	const cJSON *q;
	const char *method;
	int r = -1;

	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	snprintf(c->path, sizeof(c->path), "%s", p);
	if (access(p, F_OK) != 0) {
		r = 0;
		goto out;
	}
	if (weld_read_small_file(p, WELD_CONFIG_MAX_BYTES, &text, NULL, err) < 0)
		goto out;
	root = cJSON_Parse(text);
	if (!cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", p);
		goto out;
	}
	q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
	method = str_of(q, "quant_method");
	if (method && strcmp(method, "fp8") == 0)
		r = parse_fp8(c, q, err);
	else if (method && strcmp(method, "compressed-tensors") == 0)
		r = parse_compressed(c, q, err);
	else
		r = 0;
out:
	cJSON_Delete(root);
	free(text);
	free(p);
	return r;
}

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");

	for (int d = 0; d < ndim && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

void weld_fp8_geom_of(const struct weld_tensor_info *t, struct weld_fp8_geom *g)
{
	uint64_t cols = (uint64_t)t->shape[t->ndim - 1], rows = (uint64_t)t->shape[t->ndim - 2];

	g->cols = cols ? cols : 1;
	g->rows = rows ? rows : 1;
	g->slices = t->nelem / (g->rows * g->cols);
	if (t->scaled != WELD_FP8_BLOCK) {
		g->rows *= g->slices;
		g->slices = 1;
	}
	g->brows = t->scaled == WELD_FP8_CHANNEL ? 1 : (uint64_t)t->scale_block[0];
	g->bcols = (uint64_t)t->scale_block[1];
}

/* The block grid a scale of weight w must have, into want[]. */
static void block_grid(const struct weld_tensor_info *w, const int64_t block[2], int64_t *want)
{
	for (int d = 0; d < w->ndim - 2; d++)
		want[d] = w->shape[d];
	want[w->ndim - 2] = (w->shape[w->ndim - 2] + block[0] - 1) / block[0];
	want[w->ndim - 1] = (w->shape[w->ndim - 1] + block[1] - 1) / block[1];
}

static bool same_shape(const struct weld_tensor_info *s, const int64_t *want, int ndim)
{
	if (s->ndim != ndim)
		return false;
	for (int d = 0; d < ndim; d++)
		if (s->shape[d] != want[d])
			return false;
	return true;
}

/* The layout of a _scale tensor of compressed-tensors (or of unknown
 * origin) from its shape: one value, one a row, or the config's blocks. */
static enum weld_fp8_layout scale_layout(const struct weld_tensor_info *w,
					 const struct weld_tensor_info *s, const int64_t block[2])
{
	const uint64_t cols = (uint64_t)w->shape[w->ndim - 1];
	int64_t want[WELD_MAX_DIMS];

	if (s->nelem == 1 && s->ndim <= 2)
		return WELD_FP8_TENSOR;
	if (s->ndim >= 1 && s->ndim <= 2 && (uint64_t)s->shape[0] == w->nelem / cols &&
	    s->nelem == w->nelem / cols)
		return WELD_FP8_CHANNEL;
	if (block[0]) {
		block_grid(w, block, want);
		if (same_shape(s, want, w->ndim))
			return WELD_FP8_BLOCK;
	}
	return WELD_FP8_NONE;
}

/* Check the pair (w, s) and attach s to w. */
static int attach(weld_model *m, const struct fp8_config *c, size_t wi, size_t si, bool inv,
		  struct weld_error *err)
{
	const struct weld_tensor_info *w = weld_model_tensor(m, wi), *s = weld_model_tensor(m, si);
	const char *file = weld_model_file_path(m, (size_t)s->file);
	struct weld_tensor_info how = { 0 };
	const int64_t defblock[2] = { 128, 128 };
	const int64_t *block = c->block[0] ? c->block : inv ? defblock : c->block;
	int64_t want[WELD_MAX_DIMS];
	char a[128], b[128], e[128];

	if (w->ndim < 2)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': shape: an FP8 weight with scales needs 2 or more "
				 "dimensions", weld_model_file_path(m, (size_t)w->file), w->name);
	if (s->dtype != WELD_F32 && s->dtype != WELD_BF16 && s->dtype != WELD_F16)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': dtype: %s (scales must be F32, BF16 or F16)", file,
				 s->name, weld_dtype_name(s->dtype));
	how.scale_dtype = s->dtype;
	how.scaled = inv ? WELD_FP8_BLOCK : scale_layout(w, s, block);
	shape_text(s->shape, s->ndim, a, sizeof(a));
	shape_text(w->shape, w->ndim, b, sizeof(b));
	if (how.scaled == WELD_FP8_BLOCK) {
		block_grid(w, block, want);
		if (!same_shape(s, want, w->ndim)) {
			shape_text(want, w->ndim, e, sizeof(e));
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': shape: %s, but blocks of [%lld, %lld]%s%s%s "
					 "divide weight '%s' %s into %s", file, s->name, a,
					 (long long)block[0], (long long)block[1],
					 c->block[0] ? " (quantization_config." : " (the default",
					 c->block[0] ? c->block_key : "", ")", w->name, b, e);
		}
		how.scale_block[0] = block[0];
		how.scale_block[1] = block[1];
	} else if (how.scaled == WELD_FP8_NONE) {
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': shape: %s is not a scale of weight '%s' %s (one "
				 "value [1], one a row [%lld, 1]%s)", file, s->name, a, w->name, b,
				 (long long)(w->nelem / (uint64_t)w->shape[w->ndim - 1]),
				 block[0] ? ", or its block grid" : "");
	} else {
		how.scale_block[0] = w->shape[w->ndim - 2];
		how.scale_block[1] = w->shape[w->ndim - 1];
		if (how.scaled == WELD_FP8_TENSOR)
			how.scale_block[0] = (int64_t)(w->nelem / (uint64_t)w->shape[w->ndim - 1]);
		else
			how.scale_block[0] = 1;
	}
	for (int d = 0; d < w->ndim; d++)
		if (w->shape[d] == 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': shape: %s has no elements",
					 weld_model_file_path(m, (size_t)w->file), w->name, b);
	return weld_model_attach_scale(m, wi, si, &how, err);
}

/* The scale tensor of F8_E4M3 tensor i: index into *si and whether it is a
 * _scale_inv; 0 if none. */
static int find_scale(const weld_model *m, size_t i, int64_t *si, bool *inv,
		      struct weld_error *err)
{
	const char *name = weld_model_tensor(m, i)->name;
	size_t len = strlen(name);
	char *n = malloc(len + sizeof("_scale_inv"));

	if (!n)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	memcpy(n, name, len);
	memcpy(n + len, "_scale_inv", sizeof("_scale_inv"));
	*inv = true;
	*si = weld_model_find(m, n);
	if (*si < 0) {
		n[len + sizeof("_scale") - 1] = 0;
		*inv = false;
		*si = weld_model_find(m, n);
	}
	free(n);
	return *si >= 0;
}

/* A tensor named like a scale: its weight's name length (the part before
 * "_scale_inv" / "_scale"), or 0. */
static size_t scale_stem(const char *name)
{
	size_t len = strlen(name);

	if (ends_with(name, "weight_scale_inv"))
		return len - strlen("_scale_inv");
	if (ends_with(name, "weight_scale"))
		return len - strlen("_scale");
	return 0;
}

static bool is_activation_scale(const char *name)
{
	return ends_with(name, ".input_scale") || ends_with(name, ".k_scale") ||
	       ends_with(name, ".v_scale") || ends_with(name, ".activation_scale");
}

/* A scale left without its FP8 weight, or an FP8 weight without scale. */
static int unpaired(const weld_model *m, const struct fp8_config *c, struct weld_error *err)
{
	for (size_t i = 0; i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		const char *file = weld_model_file_path(m, (size_t)t->file);
		size_t stem = scale_stem(t->name);

		if (t->dtype == WELD_F8_E4M3 && !t->scaled)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': F8_E4M3 weight without its scale tensor "
					 "'%s%s'", file, t->name, t->name,
					 c->compressed ? "_scale" : "_scale_inv");
		if (stem)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': a scale without its F8_E4M3 weight '%.*s'",
					 file, t->name, (int)stem, t->name);
	}
	return 0;
}

int weld_fp8_pair_scales(weld_model *m, struct weld_error *err)
{
	struct fp8_config c = { .path = "" };
	size_t paired = 0, fp8 = 0;
	bool any = false;

	for (size_t i = 0; i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);

		fp8 += t->dtype == WELD_F8_E4M3;
		any = any || scale_stem(t->name);
	}
	if (!fp8 && !any)
		return 0;
	if (read_config(m, &c, err) < 0)
		return -1;
	for (size_t i = 0; i < weld_model_count(m); i++) {
		int64_t si = -1;
		bool inv;
		int r;

		if (weld_model_tensor(m, i)->dtype != WELD_F8_E4M3)
			continue;
		r = find_scale(m, i, &si, &inv, err);
		if (r < 0 || (r && attach(m, &c, i, (size_t)si, inv, err) < 0))
			return -1;
		paired += (size_t)r;
	}
	if (!paired && !c.fp8 && !c.compressed && !any)
		return 0;       /* plain F8 tensors (DESIGN 3) */
	for (size_t i = 0; i < weld_model_count(m); i++)
		if (is_activation_scale(weld_model_tensor(m, i)->name))
			weld_model_hide_tensor(m, i);
	weld_model_drop_scales(m);
	return unpaired(m, &c, err);
}
