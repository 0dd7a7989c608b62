/*
 * moe_plan.c - the decisions of an expert merge, all made before any
 * output exists: the layout, the group counts (from the stats or
 * --groups), the similarity and grouping of every layer, the checks of the
 * compact layout and the cost of --align. Also what a plan says about
 * itself: expert_groups.json and the summaries the command prints.
 */
#include "moe_impl.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The layout of m's tensors, with config.json from the options. */
static int detect_layout(struct weld_moe_layout *lo, const weld_model *m,
			 const struct weld_moe_opts *o, struct weld_error *err)
{
	const size_t n = weld_model_count(m);
	const struct weld_tensor_info **t = malloc((n ? n : 1) * sizeof(*t));
	int r;

	if (!t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		t[i] = weld_model_tensor(m, i);
	r = weld_moe_layout_detect(lo, t, n, o->config, o->config_len, err);
	free(t);
	return r;
}

/* The compact layout shrinks every router to G rows: G must be the same
 * in all layers, no smaller than the experts a token is routed to, and
 * every layer needs a router. */
static int check_compact(const struct weld_moe_plan *p, struct weld_error *err)
{
	const struct weld_moe_layout *lo = &p->layout;
	int lo_g, hi_g;
	long total;

	weld_moe_plan_group_range(p, &lo_g, &hi_g, &total);
	if (lo_g != hi_g)
		return weld_fail(err, WELD_ERR_ARG,
				 "--layout compact needs the same number of groups in every layer, "
				 "but the global allocation gave between %d and %d "
				 "(use --uniform-groups, or --layout alias)", lo_g, hi_g);
	if (lo->cfg.experts_per_tok > p->groups[0])
		return weld_fail(err, WELD_ERR_ARG,
				 "--layout compact: config.json routes each token to %d experts "
				 "(num_experts_per_tok), more than the %d groups",
				 lo->cfg.experts_per_tok, p->groups[0]);
	for (int l = 0; l < lo->n_layers; l++)
		if (lo->layers[l].router < 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "--layout compact: layer %d has no router '%sgate.weight' to shrink",
					 lo->layers[l].index, lo->layers[l].prefix);
	return 0;
}

/* The routing keys of config.json: changed only by the compact layout. */
static int plan_config(struct weld_moe_plan *p, struct weld_error *err)
{
	const struct weld_moe_config *c = &p->layout.cfg;

	if (p->opts.layout != WELD_MOE_OUT_COMPACT) {
		p->compact.experts = p->layout.n_experts;
		p->compact.n_group = c->n_group;
		p->compact.topk_group = c->topk_group;
		return 0;
	}
	return check_compact(p, err) < 0 ? -1 : weld_moe_config_compact(c, p->groups[0], &p->compact, err);
}

/* Where the similarities of the `needed` layers that merge came from. */
static const char *sim_source(const struct weld_moe_plan *p, int needed)
{
	if (needed == 0)
		return "none";
	if (p->n_stats_sim == needed)
		return "stats";
	if (p->opts.similarity == WELD_MOE_SIM_WEIGHT)
		return p->n_stats_sim ? "stats+weight" : weld_moe_similarity_names[WELD_MOE_SIM_WEIGHT];
	return p->n_stats_sim ? "stats+router" : weld_moe_similarity_names[WELD_MOE_SIM_ROUTER];
}

/*
 * Group every layer. A layer that keeps all its experts needs no
 * similarity; the others take theirs from the stats file when it has one
 * for the layer, else compute it (into simbuf, E x E) as --similarity says.
 */
static int group_layers(struct weld_moe_plan *p, const weld_model *m, double *simbuf,
			struct weld_error *err)
{
	const struct weld_moe_opts *o = &p->opts;
	const struct weld_moe_layout *lo = &p->layout;
	const int e_n = lo->n_experts;
	int needed = 0;

	for (int l = 0; l < lo->n_layers; l++) {
		const double *freq = p->stats.freq ? p->stats.freq + (size_t)l * (size_t)e_n : NULL;
		const double *sim = NULL;

		if (p->groups[l] < e_n) {
			needed++;
			if (p->stats.sim && p->stats.sim[l]) {
				sim = p->stats.sim[l];
				p->n_stats_sim++;
			} else if (o->similarity == WELD_MOE_SIM_ROUTER) {
				if (weld_moe_router_similarity(m, lo, l, simbuf, err) < 0)
					return -1;
				sim = simbuf;
			} else {
				if (weld_moe_weight_similarity(m, lo, l, weld_moe_buffer_budget(o),
							       simbuf, err) < 0)
					return -1;
				sim = simbuf;
			}
		}
		if (weld_moe_group(freq, sim, e_n, p->groups[l],
				   p->label + (size_t)l * (size_t)e_n,
				   p->dominant + (size_t)l * (size_t)e_n, err) < 0)
			return -1;
	}
	p->sim_source = sim_source(p, needed);
	return 0;
}

int weld_moe_plan_build(struct weld_moe_plan *p, const weld_model *m,
			const struct weld_moe_opts *o, struct weld_error *err)
{
	struct weld_moe_layout *lo = &p->layout;
	int *ids = NULL;
	double *simbuf = NULL;
	int e_n, l_n, ret = -1;

	memset(p, 0, sizeof(*p));
	p->opts = *o;
	if (o->threads > 0)
		omp_set_num_threads(o->threads);
	if (detect_layout(lo, m, o, err) < 0)
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
	/* the stats file names layers by their index in the model */
	for (int l = 0; l < l_n; l++)
		ids[l] = lo->layers[l].index;
	if (o->stats && weld_moe_stats_parse(&p->stats, o->stats, o->stats_len,
					     o->stats_name ? o->stats_name : "stats",
					     ids, l_n, e_n, err) < 0)
		goto out;
	if (weld_moe_allocate(p->stats.freq, l_n, e_n, o->groups, o->uniform_groups,
			      p->groups, err) < 0 ||
	    plan_config(p, err) < 0 ||
	    group_layers(p, m, simbuf, err) < 0 ||
	    (o->align && weld_moe_align_plan(p, err) < 0))
		goto out;
	ret = 0;
out:
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
	    !cJSON_AddStringToObject(root, "layout", weld_moe_out_layout_name(p->opts.layout)) ||
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

const char *const weld_moe_similarity_names[] = { "router", "weight", NULL };
const char *const weld_moe_layout_names[] = { "alias", "compact", NULL };

const char *weld_moe_out_layout_name(enum weld_moe_out_layout layout)
{
	return weld_moe_layout_names[layout == WELD_MOE_OUT_COMPACT];
}

void weld_moe_plan_group_range(const struct weld_moe_plan *p, int *min, int *max, long *total)
{
	*min = *max = p->groups[0];
	*total = 0;
	for (int l = 0; l < p->layout.n_layers; l++) {
		*min = p->groups[l] < *min ? p->groups[l] : *min;
		*max = p->groups[l] > *max ? p->groups[l] : *max;
		*total += p->groups[l];
	}
}

int64_t weld_moe_plan_max_ffn(const struct weld_moe_plan *p)
{
	int64_t f = 0;

	for (int l = 0; l < p->layout.n_layers; l++)
		if (p->layout.layers[l].ffn > f)
			f = p->layout.layers[l].ffn;
	return f;
}

/* An absolute path (the path itself if that fails). */
static void add_path(cJSON *obj, const char *key, const char *path)
{
	char *abs = realpath(path, NULL);

	cJSON_AddStringToObject(obj, key, abs ? abs : path);
	free(abs);
}

char *weld_moe_recipe_json(const char *model, const char *stats_path,
			   const struct weld_moe_opts *o, uint64_t shard_size, bool copy_files)
{
	cJSON *r = cJSON_CreateObject(), *w;
	char *text = NULL;

	if (!r)
		return NULL;
	cJSON_AddStringToObject(r, "merge_method", "expert-merge");
	add_path(r, "model", model);
	if (o->out_dtype >= 0)
		cJSON_AddStringToObject(r, "out_dtype",
					weld_dtype_torch_name((enum weld_dtype)o->out_dtype));
	w = cJSON_AddObjectToObject(r, "weld");
	if (w) {
		cJSON_AddNumberToObject(w, "groups", o->groups);
		cJSON_AddBoolToObject(w, "uniform_groups", o->uniform_groups);
		if (stats_path)
			add_path(w, "stats", stats_path);
		cJSON_AddStringToObject(w, "similarity", weld_moe_similarity_names[o->similarity]);
		cJSON_AddBoolToObject(w, "align", o->align);
		cJSON_AddStringToObject(w, "layout", weld_moe_layout_names[o->layout]);
		cJSON_AddNumberToObject(w, "shard_size", (double)shard_size);
		cJSON_AddBoolToObject(w, "copy_files", copy_files);
		if (o->allow_nonfinite)
			cJSON_AddBoolToObject(w, "allow_nonfinite", true);
		text = cJSON_PrintUnformatted(r);
	}
	cJSON_Delete(r);
	return text;
}
