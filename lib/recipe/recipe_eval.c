/*
 * recipe_eval.c - the value of each parameter for one tensor of one
 * source. A gradient is read at t, the tensor's place among the layers
 * (0 to 1, given by the planner); a filter list gives its first entry whose
 * substring the name holds; mergekit's precedence decides between the
 * levels: the source, the slice, the top level, then the method's default.
 */
#include "recipe_impl.h"

#include <math.h>
#include <string.h>

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
		const char *key = pd->name;
		const cJSON *v = levels[l] ? cJSON_GetObjectItemCaseSensitive(levels[l], key) : NULL;

		/* lambda's other name (parsing refused an object with both) */
		if (!v && levels[l] && p == WELD_P_LAMBDA && r->m->lambda_alias) {
			key = r->m->lambda_alias;
			v = cJSON_GetObjectItemCaseSensitive(levels[l], key);
		}
		if (!v || !eval_setting(v, name, t, out, &entry))
			continue;
		if (paths[l] && entry >= 0)
			set_where(where, wlen, "%s.parameters.%s[%d]", paths[l], key, entry);
		else if (paths[l])
			set_where(where, wlen, "%s.parameters.%s", paths[l], key);
		else if (entry >= 0)
			set_where(where, wlen, "parameters.%s[%d]", key, entry);
		else
			set_where(where, wlen, "parameters.%s", key);
		return 1;
	}
	where[0] = 0;
	return param_default(r, p, out) ? 1 : 0;
}

/*
 * Fill one source of a job (and the job's own values) for one tensor.
 * job->nsrc is the number of sources already filled, so 0 marks the first.
 */
int weld_recipe_eval_source(weld_recipe *r, const struct rsource *rs, const struct rslice *sl,
			    const char *out_name, const char *in_name, double t,
			    struct weld_source *src, struct weld_job *job, struct weld_error *err)
{
	const struct weld_method_spelling *m = r->m;
	char where[WHERE_LEN];
	double v;

	if (m->params & WELD_PB(WELD_P_WEIGHT) &&
	    !param_value(r, WELD_P_WEIGHT, rs, sl, out_name, in_name, t, &src->weight, where, sizeof(where)))
		return rfail(r, err, rs->where, "no weight for tensor '%s' (add a {\"value\": ...} without a filter)",
			     out_name);
	if (m->weight_required && !where[0]) {
		set_where(where, sizeof(where), "%s.parameters.weight", rs->where);
		return rfail(r, err, where, "%s needs a weight for every model (mergekit: missing required parameter 'weight'), none given for tensor '%s'",
			     m->name, in_name);
	}
	if (param_in_use(r, WELD_P_DENSITY))
		param_value(r, WELD_P_DENSITY, rs, sl, out_name, in_name, t, &src->density, where, sizeof(where));
	if (m->params & WELD_PB(WELD_P_MASK_LAMBDA))
		param_value(r, WELD_P_MASK_LAMBDA, rs, sl, out_name, in_name, t, &src->mask_lambda, where,
			    sizeof(where));
	if (m->params & WELD_PB(WELD_P_EPSILON))
		param_value(r, WELD_P_EPSILON, rs, sl, out_name, in_name, t, &src->epsilon, where,
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
	{
		/* the per-tensor values a method may take, and where they go */
		const struct { enum weld_param p; double *dst; } tv[] = {
			{ WELD_P_LAMBDA, &job->lambda }, { WELD_P_RAM_EPSILON, &job->epsilon },
			{ WELD_P_R, &job->ram_r }, { WELD_P_ALPHA, &job->ram_alpha },
			{ WELD_P_EPS, &job->epsilon }, { WELD_P_MAX_ITER, &job->max_iter },
			{ WELD_P_TOL, &job->tol },
		};

		for (size_t k = 0; k < sizeof(tv) / sizeof(tv[0]); k++)
			if (m->params & WELD_PB(tv[k].p))
				param_value(r, tv[k].p, rs, sl, out_name, in_name, t, tv[k].dst, where,
					    sizeof(where));
	}
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
