/*
 * lora_extract_write.c - extract-lora's output: the adapter folder
 * (adapter_model.safetensors with the factors and the saved tensors
 * streamed from the fine-tune, and adapter_config.json), published
 * atomically like any weld output.
 */
#include "lora_extract_impl.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* The output tensors: per entry, up to two. */
static int layout(struct ctx *c, struct weld_out_tensor *t, size_t *nt)
{
	*nt = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct xent *e = &c->e[i];
		const struct weld_tensor_info *ft = weld_model_tensor(c->ft, i);
		bool emb = e->role == R_EMBED;
		const char *sa = emb ? ".lora_embedding_A" : ".lora_A.weight";
		const char *sb = emb ? ".lora_embedding_B" : ".lora_B.weight";

		if (e->role == R_SAVE) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s", ft->name), ft->dtype,
							   ft->ndim, { 0 } };
			memcpy(t[*nt].shape, ft->shape, sizeof(ft->shape));
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		} else if (e->role == R_BIAS) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s.lora_B.bias", e->module),
							   e->dt, 1, { ft->shape[0] } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		} else if ((e->role == R_LINEAR || emb) && e->rank) {
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s%s", e->module, sa), e->dt, 2,
							   { (int64_t)e->rank, e->cols } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
			t[*nt] = (struct weld_out_tensor){ weld_strfmt(PREFIX "%s%s", e->module, sb), e->dt, 2,
							   { e->rows, (int64_t)e->rank } };
			if (!t[(*nt)++].name)
				return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		}
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, unique leaf names of the entries whose role is in mask. */
static cJSON *leaf_list(const struct ctx *c, unsigned mask, bool need_rank)
{
	const char **v = calloc(c->n + 1, sizeof(*v));
	cJSON *arr = cJSON_CreateArray();
	size_t k = 0;

	if (!v || !arr) {
		free(v);
		cJSON_Delete(arr);
		return NULL;
	}
	for (size_t i = 0; i < c->n; i++)
		if ((mask >> c->e[i].role & 1) && (!need_rank || c->e[i].rank))
			v[k++] = c->e[i].leaf;
	qsort(v, k, sizeof(*v), cmp_str);
	for (size_t i = 0; i < k; i++)
		if (!i || strcmp(v[i], v[i - 1]))
			cJSON_AddItemToArray(arr, cJSON_CreateString(v[i]));
	free(v);
	return arr;
}

static char *config_json(struct ctx *c)
{
	cJSON *j = cJSON_CreateObject(), *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject();
	cJSON *tm = leaf_list(c, 1u << R_LINEAR | 1u << R_EMBED, true);
	cJSON *ms = leaf_list(c, 1u << R_SAVE, false);
	bool bias = false;
	char *text = NULL;

	if (!j || !rp || !ap || !tm || !ms)
		goto out;
	for (size_t i = 0; i < c->n; i++) {
		const struct xent *e = &c->e[i];

		bias |= e->role == R_BIAS;
		if ((e->role == R_LINEAR || e->role == R_EMBED) && e->rank && e->rank != c->st->rank) {
			cJSON_AddNumberToObject(rp, e->module, (double)e->rank);
			cJSON_AddNumberToObject(ap, e->module, (double)e->rank);
		}
	}
	cJSON_AddStringToObject(j, "peft_type", "LORA");
	cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
	cJSON_AddStringToObject(j, "base_model_name_or_path", c->o->base_name ? c->o->base_name : "");
	cJSON_AddNumberToObject(j, "r", (double)c->st->rank);
	cJSON_AddNumberToObject(j, "lora_alpha", (double)c->st->rank);
	cJSON_AddItemToObject(j, "rank_pattern", rp);
	cJSON_AddItemToObject(j, "alpha_pattern", ap);
	rp = ap = NULL;
	cJSON_AddItemToObject(j, "target_modules", tm);
	tm = NULL;
	if (cJSON_GetArraySize(ms))
		cJSON_AddItemToObject(j, "modules_to_save", ms);
	else
		cJSON_AddNullToObject(j, "modules_to_save");
	if (cJSON_GetArraySize(ms) == 0)
		cJSON_Delete(ms);
	ms = NULL;
	cJSON_AddNumberToObject(j, "lora_dropout", 0);
	cJSON_AddStringToObject(j, "bias", "none");
	cJSON_AddBoolToObject(j, "lora_bias", bias);
	cJSON_AddBoolToObject(j, "use_rslora", false);
	cJSON_AddBoolToObject(j, "use_dora", false);
	cJSON_AddBoolToObject(j, "fan_in_fan_out", false);
	cJSON_AddBoolToObject(j, "inference_mode", true);
	cJSON_AddBoolToObject(j, "init_lora_weights", true);
	text = cJSON_Print(j);
out:
	cJSON_Delete(j);
	cJSON_Delete(rp);
	cJSON_Delete(ap);
	cJSON_Delete(tm);
	cJSON_Delete(ms);
	return text;
}

/* Stream a saved tensor from the fine-tune into the writer. */
static int copy_tensor(struct ctx *c, weld_writer *w, size_t i, int64_t wi)
{
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	size_t es = weld_dtype_size(t->dtype);
	unsigned char *buf = malloc(STEP * es);
	int r = buf ? 0 : weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");

	for (uint64_t first = 0; first < t->nelem && !r; first += STEP) {
		size_t n = t->nelem - first < STEP ? (size_t)(t->nelem - first) : STEP;

		r = weld_model_read(c->ft, i, first, n, buf, c->err);
		if (!r)
			r = weld_writer_write(w, (size_t)wi, buf, n * es, c->err);
	}
	free(buf);
	return r;
}

static int write_data(struct ctx *c, weld_writer *w, const struct weld_out_tensor *t, size_t nt)
{
	size_t k = 0;

	for (size_t i = 0; i < c->n; i++) {
		struct xent *e = &c->e[i];
		bool two = (e->role == R_LINEAR || e->role == R_EMBED) && e->rank;

		if (e->role == R_SAVE) {
			if (copy_tensor(c, w, i, weld_writer_find(w, t[k++].name)) < 0)
				return -1;
		} else if (e->role == R_BIAS) {
			size_t len = (size_t)weld_model_tensor(c->ft, i)->nelem * weld_dtype_size(e->dt);

			if (weld_writer_write(w, (size_t)weld_writer_find(w, t[k++].name), e->a, len,
					      c->err) < 0)
				return -1;
		} else if (two) {
			if (weld_writer_write(w, (size_t)weld_writer_find(w, t[k].name), e->a,
					      e->rank * (size_t)e->cols * weld_dtype_size(e->dt), c->err) < 0 ||
			    weld_writer_write(w, (size_t)weld_writer_find(w, t[k + 1].name), e->b,
					      (size_t)e->rows * e->rank * weld_dtype_size(e->dt), c->err) < 0)
				return -1;
			k += 2;
		}
	}
	return k == nt ? 0 : weld_fail(c->err, WELD_ERR_ARG, "internal: %zu of %zu tensors written", k, nt);
}

int weld_extract_write_folder(struct ctx *c, const char *out)
{
	struct weld_out_tensor *t = calloc(2 * c->n + 1, sizeof(*t));
	char *config = NULL;
	weld_writer *w = NULL;
	size_t nt = 0;
	int r = -1;

	if (!t)
		return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < c->n; i++)
		if ((c->e[i].role == R_LINEAR || c->e[i].role == R_EMBED) && c->e[i].rank > c->st->rank)
			c->st->rank = c->e[i].rank;
	if (!c->st->rank) {
		weld_fail(c->err, WELD_ERR_ARG,
			  "no module to write as LoRA: no 2-D weight was decomposed to a rank above 0 (see -i, -e, --sv-epsilon)");
		goto out;
	}
	if (layout(c, t, &nt) < 0)
		goto out;
	if (!(config = config_json(c))) {
		weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		struct weld_writer_opts wo = { .force = c->o->force, .recipe_json = c->o->recipe_json,
					       .file_name = "adapter_model.safetensors",
					       .extra_name = "adapter_config.json",
					       .extra_data = config };

		if (weld_writer_open(&w, out, t, nt, &wo, c->err) < 0)
			goto out;
	}
	for (size_t k = 0; k < nt; k++)
		c->st->bytes += (uint64_t)weld_dtype_size(t[k].dtype) *
				(uint64_t)t[k].shape[0] * (uint64_t)(t[k].ndim > 1 ? t[k].shape[1] : 1);
	if (write_data(c, w, t, nt) < 0 || weld_writer_commit(w, c->err) < 0)
		goto out;
	r = 0;
out:
	weld_writer_close(w);
	for (size_t k = 0; k < nt; k++)
		free((char *)t[k].name);
	free(t);
	free(config);
	return r;
}

