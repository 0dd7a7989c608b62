/*
 * moe_config.c - what expert-merge reads from config.json and writes back:
 * the expert counts (num_local_experts, num_experts, n_routed_experts),
 * num_experts_per_tok, model_type, and DeepSeek's first_k_dense_replace and
 * group-limited routing (n_group, topk_group, topk_method). The one place
 * that knows these keys: the layout asks here, and the compact layout's
 * config.json edit is made here.
 *
 * config.json is hostile input: an expert count is used only when it is a
 * number in range; the DeepSeek keys, which constrain what may be written,
 * are refused with the key and the reason when present but not integers in
 * range or not consistent with each other.
 */
#include "moe_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expert-count keys of config.json, in the order they are reported. */
static const char *const expert_keys[WELD_MOE_N_EXPERT_KEYS] = {
	"num_local_experts", "num_experts", "n_routed_experts",
};

const char *weld_moe_expert_key(int k)
{
	return expert_keys[k];
}

/* An optional integer key in [lo, hi]: 0 with *out = -1 when absent. */
static int get_int(const cJSON *root, const char *key, double lo, double hi, int *out,
		   struct weld_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

	*out = -1;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
	    v->valuedouble != floor(v->valuedouble))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "config.json: '%s' is not an integer in [%.0f, %.0f]", key, lo, hi);
	*out = (int)v->valuedouble;
	return 0;
}

/* first_k_dense_replace, n_group, topk_group and topk_method. */
static int read_deepseek(struct weld_moe_config *c, const cJSON *root, struct weld_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "topk_method");

	if (get_int(root, "first_k_dense_replace", 0, WELD_MOE_MAX_EXPERTS, &c->first_dense, err) < 0 ||
	    get_int(root, "n_group", 1, WELD_MOE_MAX_EXPERTS, &c->n_group, err) < 0 ||
	    get_int(root, "topk_group", 1, WELD_MOE_MAX_EXPERTS, &c->topk_group, err) < 0)
		return -1;
	if ((c->n_group < 0) != (c->topk_group < 0))
		return weld_fail(err, WELD_ERR_FORMAT, "config.json: '%s' is set but not '%s'",
				 c->n_group < 0 ? "topk_group" : "n_group",
				 c->n_group < 0 ? "n_group" : "topk_group");
	if (c->n_group > 0 && c->topk_group > c->n_group)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "config.json: topk_group %d is more than the n_group %d groups",
				 c->topk_group, c->n_group);
	/* noaux_tc (DeepSeek-V3) scores a group by the sum of its 2 best experts */
	c->group_top2 = cJSON_IsString(v) && strcmp(v->valuestring, "noaux_tc") == 0;
	return 0;
}

int weld_moe_config_parse(struct weld_moe_config *c, const char *text, size_t len,
			  struct weld_error *err)
{
	cJSON *root;
	const cJSON *v;
	int r = 0;

	memset(c, 0, sizeof(*c));
	for (int k = 0; k < WELD_MOE_N_EXPERT_KEYS; k++)
		c->experts[k] = -1;
	c->first_dense = c->n_group = c->topk_group = -1;
	if (!text)
		return 0;
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return weld_fail(err, WELD_ERR_FORMAT, "config.json: not a JSON object");
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (cJSON_IsString(v) && !(c->model_type = strdup(v->valuestring)))
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	v = cJSON_GetObjectItemCaseSensitive(root, "num_experts_per_tok");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= WELD_MOE_MAX_EXPERTS)
		c->experts_per_tok = (int)v->valuedouble;
	for (int k = 0; k < WELD_MOE_N_EXPERT_KEYS; k++) {
		v = cJSON_GetObjectItemCaseSensitive(root, expert_keys[k]);
		if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= WELD_MOE_MAX_EXPERTS)
			c->experts[k] = (int)v->valuedouble;
	}
	if (r == 0)
		r = read_deepseek(c, root, err);
	cJSON_Delete(root);
	if (r < 0)
		weld_moe_config_release(c);
	return r;
}

void weld_moe_config_release(struct weld_moe_config *c)
{
	free(c->model_type);
	c->model_type = NULL;
}

/* Is group-limited routing of e experts in n groups, topk of them chosen,
 * k experts per token, valid? (E divisible, enough experts in the chosen
 * groups, and two per group when a group is scored by its best two.) */
static bool routing_valid(int e, int n, int topk, int k, bool top2)
{
	return n >= 1 && e % n == 0 && topk >= 1 && topk <= n &&
	       (long)k <= (long)topk * (e / n) && (!top2 || e / n >= 2);
}

int weld_moe_config_check(const struct weld_moe_config *c, int n_experts, int first_layer,
			  struct weld_error *err)
{
	for (int k = 0; k < WELD_MOE_N_EXPERT_KEYS; k++)
		if (c->experts[k] >= 0 && c->experts[k] != n_experts)
			return weld_fail(err, WELD_ERR_MISMATCH,
					 "config.json: %s is %d but layer %d has %d experts",
					 expert_keys[k], c->experts[k], first_layer, n_experts);
	if (c->first_dense > first_layer)
		return weld_fail(err, WELD_ERR_MISMATCH,
				 "config.json: first_k_dense_replace is %d (layers 0-%d dense) but layer %d has experts",
				 c->first_dense, c->first_dense - 1, first_layer);
	if (c->n_group < 0)
		return 0;
	if (n_experts % c->n_group)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "config.json: n_group %d does not divide the %d routed experts",
				 c->n_group, n_experts);
	if (!routing_valid(n_experts, c->n_group, c->topk_group,
			   c->experts_per_tok, c->group_top2))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "config.json: group-limited routing cannot pick num_experts_per_tok %d "
				 "experts from topk_group %d of n_group %d groups of %d experts%s",
				 c->experts_per_tok, c->topk_group, c->n_group, n_experts / c->n_group,
				 c->group_top2 ? " (topk_method noaux_tc needs 2 per group)" : "");
	return 0;
}

int weld_moe_config_compact(const struct weld_moe_config *c, int g, struct weld_moe_compact *out,
			    struct weld_error *err)
{
	out->experts = g;
	out->n_group = c->n_group;
	out->topk_group = c->topk_group;
	if (c->n_group < 0 ||
	    routing_valid(g, c->n_group, c->topk_group, c->experts_per_tok, c->group_top2))
		return 0;
	/* the most groups that divide G, choosing the same share of them */
	for (int n = c->n_group < g ? c->n_group : g; n >= 1; n--) {
		int topk = (int)(((long)c->topk_group * n + c->n_group - 1) / c->n_group);

		if (g % n || (c->group_top2 && g / n < 2))
			continue;
		while (topk < n && !routing_valid(g, n, topk, c->experts_per_tok, c->group_top2))
			topk++;
		if (routing_valid(g, n, topk, c->experts_per_tok, c->group_top2)) {
			out->n_group = n;
			out->topk_group = topk;
			return 0;
		}
	}
	return weld_fail(err, WELD_ERR_ARG,
			 "--layout compact: %d experts per layer cannot keep group-limited routing "
			 "(n_group %d, topk_group %d, num_experts_per_tok %d%s): no number of groups "
			 "divides %d with enough experts; use more --groups or --layout alias",
			 g, c->n_group, c->topk_group, c->experts_per_tok,
			 c->group_top2 ? ", topk_method noaux_tc scores a group by its best 2 experts" : "",
			 g);
}

int weld_moe_config_set_experts(void *ctx, void *cjson_root, struct weld_error *err)
{
	const struct weld_moe_compact *c = ctx;
	cJSON *root = cjson_root;
	cJSON *v;

	(void)err;
	if (c->drop_quantization)
		cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
	if (!c->set_experts)
		return 0;
	for (int k = 0; k < WELD_MOE_N_EXPERT_KEYS; k++) {
		v = cJSON_GetObjectItemCaseSensitive(root, expert_keys[k]);
		if (cJSON_IsNumber(v))
			cJSON_SetNumberValue(v, c->experts);
	}
	if (c->n_group > 0) {
		v = cJSON_GetObjectItemCaseSensitive(root, "n_group");
		if (cJSON_IsNumber(v))
			cJSON_SetNumberValue(v, c->n_group);
		v = cJSON_GetObjectItemCaseSensitive(root, "topk_group");
		if (cJSON_IsNumber(v))
			cJSON_SetNumberValue(v, c->topk_group);
	}
	return 0;
}

int weld_moe_read_config(const weld_model *m, char **text, size_t *len, struct weld_error *err)
{
	struct weld_error e = { 0 };
	char *path;
	int r;

	*text = NULL;
	*len = 0;
	if (!(path = weld_path_join(weld_model_dir(m), "config.json")))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = weld_read_small_file(path, WELD_MOE_MAX_TEXT, text, len, &e);
	free(path);
	/* config.json is optional: the tensor names alone can decide */
	if (r < 0 && e.sys_errno == ENOENT)
		return 0;
	if (r < 0 && err)
		*err = e;
	return r;
}
