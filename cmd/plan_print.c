/*
 * plan_print.c - weld plan's output: the plan of a merge as stable text
 * (one line per output tensor, fit for diffing) or as one JSON object.
 * What a line shows of a job is what the method table says its method
 * reads.
 */
#include "plan_print.h"
#include "cli.h"
#include "method.h"

#include <stdio.h>
#include <string.h>

static void print_shape(FILE *f, const struct weld_job *j)
{
	fputc('[', f);
	for (int d = 0; d < j->ndim; d++)
		fprintf(f, "%s%lld", d ? ", " : "", (long long)j->shape[d]);
	fputc(']', f);
}

/* One option of print_options: key=value (text) or "key":value (JSON). */
static void print_opt(bool json, bool *first, const char *key, const char *val, bool str)
{
	if (json)
		printf(str ? "%s\"%s\":\"%s\"" : "%s\"%s\":%s", *first ? "" : ",", key, val);
	else
		printf("%s%s=%s", *first ? "" : " ", key, val);
	*first = false;
}

/* The method-wide options that matter for the plan's method. */
static void print_options(const struct weld_merge_opts *o, bool json)
{
	enum weld_method m = o->method;
	bool first = true;
	char num[32];

	if (weld_method_uses(o, m, WELD_P_NORMALIZE))
		print_opt(json, &first, "normalize", o->normalize ? "true" : "false", false);
	if (weld_method_takes(m, WELD_K_SCOPE))
		print_opt(json, &first, "scope", weld_scope_names[o->scope], true);
	if (weld_method_takes(m, WELD_K_RESCALE))
		print_opt(json, &first, "rescale", weld_rescale_names[o->rescale], true);
	if (weld_method_takes(m, WELD_K_COMBINE))
		print_opt(json, &first, "combine", weld_combine_names[o->combine], true);
	if (weld_method_takes(m, WELD_K_FROM)) {
		print_opt(json, &first, "from", weld_from_names[o->from], true);
		snprintf(num, sizeof(num), "%d", o->k);
		print_opt(json, &first, "k", num, false);
	}
	if (weld_method_elects_signs(o, m))
		print_opt(json, &first, "sign", weld_sign_names[o->sign], true);
	if (weld_method_takes(m, WELD_K_TRIM) && o->combine == WELD_COMBINE_TIES && o->trim > 0) {
		snprintf(num, sizeof(num), json ? "%.17g" : "%g", o->trim);
		print_opt(json, &first, "trim", num, false);
	}
	if (weld_method_uses(o, m, WELD_P_SELECT_TOPK)) {
		snprintf(num, sizeof(num), json ? "%.17g" : "%g", o->select_topk);
		print_opt(json, &first, "select_topk", num, false);
	}
	if (weld_method_takes(m, WELD_K_CLIP)) {
		snprintf(num, sizeof(num), json ? "%.17g" : "%g", o->clip);
		print_opt(json, &first, "clip", num, false);
	}
	if (weld_method_uses(o, m, WELD_P_FILTER_WISE))
		print_opt(json, &first, "filter_wise", o->scope == WELD_SCOPE_ROW ? "true" : "false", false);
	if (weld_method_uses(o, m, WELD_P_NUSLERP_FLATTEN)) {
		print_opt(json, &first, "nuslerp_flatten",
			  o->scope == WELD_SCOPE_ROW || o->nuslerp_columns ? "false" : "true", false);
		print_opt(json, &first, "nuslerp_row_wise", o->nuslerp_columns ? "true" : "false", false);
	}
	if (weld_method_uses(o, m, WELD_P_NORMALIZE_WEIGHTS))
		print_opt(json, &first, "normalize_weights", o->normalize ? "true" : "false", false);
	if (weld_method_takes(m, WELD_K_PLUS))
		print_opt(json, &first, "plus", o->ram_plus ? "true" : "false", false);
	if (weld_method_uses(o, m, WELD_P_COMMON_SPACE_FRACTION)) {
		snprintf(num, sizeof(num), json ? "%.17g" : "%g", o->common_fraction);
		print_opt(json, &first, "common_space_fraction", num, false);
	}
	/* a regex is any text: printed only as text, JSON-quoted by the caller */
	if (weld_method_takes(m, WELD_K_SVD_EXCLUDE) && o->svd_exclude && !json)
		print_opt(json, &first, "svd_exclude", cli_safe(o->svd_exclude), false);
	if (first && !json)
		printf("none");
}

/* The passes of job i over its inputs, when more than one (text), or
 * always (JSON: "passes":[lo,hi]). */
static void print_passes(const weld_plan *p, size_t i, bool json)
{
	int lo, hi;

	weld_plan_job_passes(p, i, &lo, &hi);
	if (json)
		printf(",\"passes\":[%d,%d]", lo, hi);
	else if (lo != hi)
		printf(" passes=%d-%d", lo, hi);
	else if (lo > 1)
		printf(" passes=%d", lo);
}

static void print_job_json(const weld_plan *p, size_t i)
{
	const struct weld_merge_opts *o = weld_plan_opts(p);
	const struct weld_job *j = weld_plan_job(p, i);

	printf("{\"name\":");
	cli_json_string(stdout, j->name);
	printf(",\"dtype\":\"%s\",\"shape\":", weld_plan_job_type_name(p, j));
	print_shape(stdout, j);
	printf(",\"method\":\"%s\"", weld_method_name(j->method));
	print_passes(p, i, true);
	if (weld_method_uses(o, j->method, WELD_P_LAMBDA))
		printf(",\"lambda\":%.17g", j->lambda);
	if (weld_method_uses(o, j->method, WELD_P_GAMMA))
		printf(",\"gamma\":%.17g", j->gamma);
	if (weld_method_uses(o, j->method, WELD_P_T))
		printf(",\"t\":%.17g", j->t);
	if (weld_method_uses(o, j->method, WELD_P_RAM_EPSILON))
		printf(",\"epsilon\":%.17g", j->epsilon);
	if (weld_method_uses(o, j->method, WELD_P_R))
		printf(",\"r\":%.17g,\"alpha\":%.17g", j->ram_r, j->ram_alpha);
	if (weld_method_uses(o, j->method, WELD_P_EPS))
		printf(",\"eps\":%.17g", j->epsilon);
	if (weld_method_uses(o, j->method, WELD_P_MAX_ITER))
		printf(",\"max_iter\":%.17g,\"tol\":%.17g", j->max_iter, j->tol);
	if (weld_job_stats(o, j))
		printf(",\"passes\":2");
	if (j->base_model >= 0) {
		printf(",\"base\":{\"model\":%d,\"tensor\":", j->base_model);
		cli_json_string(stdout, weld_model_tensor(weld_plan_model(p, j->base_model),
							  (size_t)j->base_tensor)->name);
		putchar('}');
	}
	printf(",\"sources\":[");
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_source *src = &j->src[s];

		printf("%s{\"model\":%d,\"tensor\":", s ? "," : "", src->model);
		cli_json_string(stdout, weld_model_tensor(weld_plan_model(p, src->model),
							  (size_t)src->tensor)->name);
		printf(",\"weight\":%.17g,\"density\":%.17g", src->weight, src->density);
		if (weld_method_uses(o, j->method, WELD_P_MASK_LAMBDA))
			printf(",\"mask_lambda\":%.17g", src->mask_lambda);
		if (weld_method_uses(o, j->method, WELD_P_EPSILON))
			printf(",\"epsilon\":%.17g", src->epsilon);
		putchar('}');
	}
	printf("]}");
}

static void print_job_text(const weld_plan *p, size_t i)
{
	const struct weld_merge_opts *o = weld_plan_opts(p);
	const struct weld_job *j = weld_plan_job(p, i);

	printf("%s %s ", cli_safe(j->name), weld_plan_job_type_name(p, j));
	print_shape(stdout, j);
	printf(" %s", weld_method_name(j->method));
	print_passes(p, i, false);
	if (weld_method_uses(o, j->method, WELD_P_LAMBDA))
		printf(" lambda=%g", j->lambda);
	if (weld_method_uses(o, j->method, WELD_P_GAMMA))
		printf(" gamma=%g", j->gamma);
	if (weld_method_uses(o, j->method, WELD_P_T))
		printf(" t=%g", j->t);
	if (weld_method_uses(o, j->method, WELD_P_RAM_EPSILON))
		printf(" epsilon=%g", j->epsilon);
	if (weld_method_uses(o, j->method, WELD_P_R))
		printf(" r=%g alpha=%g", j->ram_r, j->ram_alpha);
	if (weld_method_uses(o, j->method, WELD_P_EPS))
		printf(" eps=%g", j->epsilon);
	if (weld_method_uses(o, j->method, WELD_P_MAX_ITER))
		printf(" max_iter=%g tol=%g", j->max_iter, j->tol);
	if (weld_job_stats(o, j))
		printf(" passes=2");
	if (j->base_model >= 0) {
		const char *bn = weld_model_tensor(weld_plan_model(p, j->base_model),
						   (size_t)j->base_tensor)->name;

		printf(" base=model%d", j->base_model);
		if (strcmp(bn, j->name))
			printf(":%s", cli_safe(bn));
	}
	for (size_t s = 0; s < j->nsrc; s++) {
		const struct weld_source *src = &j->src[s];
		const char *sn = weld_model_tensor(weld_plan_model(p, src->model),
						   (size_t)src->tensor)->name;

		printf(" model%d", src->model);
		if (strcmp(sn, j->name))
			printf(":%s", cli_safe(sn));
		if (!weld_method_uses(o, j->method, WELD_P_WEIGHT))
			continue;
		printf("(w=%g", src->weight);
		if (weld_method_uses(o, j->method, WELD_P_DENSITY))
			printf(",d=%g", src->density);
		if (weld_method_uses(o, j->method, WELD_P_MASK_LAMBDA))
			printf(",ml=%g", src->mask_lambda);
		if (weld_method_uses(o, j->method, WELD_P_EPSILON))
			printf(",eps=%g", src->epsilon);
		putchar(')');
	}
	putchar('\n');
}

void plan_print(const weld_plan *p, bool json, const struct plan_labels *labels)
{
	const struct weld_merge_opts *o = weld_plan_opts(p);
	const char *method = labels && labels->method ? labels->method : weld_method_name(o->method);
	char mem[32], lim[32];
	const char *matrix = NULL;
	uint64_t out_bytes = 0;

	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		out_bytes += weld_job_stored_bytes(weld_plan_job(p, i));
	weld_format_size(weld_plan_memory(p), mem, sizeof(mem));
	weld_format_size(o->max_memory, lim, sizeof(lim));
	if (json) {
		printf("{\"method\":");
		cli_json_string(stdout, method);
		printf(",\"options\":{");
		print_options(o, true);
		printf("},\"seed\":%llu,\"memory_bytes\":%llu,\"max_memory\":%llu,"
		       "\"chunk_elements\":%llu,\"input_bytes\":%llu,\"output_bytes\":%llu,",
		       (unsigned long long)o->seed, (unsigned long long)weld_plan_memory(p),
		       (unsigned long long)o->max_memory,
		       (unsigned long long)weld_plan_chunk_elems(p),
		       (unsigned long long)weld_plan_input_bytes(p), (unsigned long long)out_bytes);
		if (weld_plan_matrix_memory(p, &matrix)) {
			printf("\"matrix_bytes\":%llu,\"matrices_at_once\":%zu,\"matrix_tensor\":",
			       (unsigned long long)weld_plan_matrix_memory(p, NULL),
			       weld_plan_matrices_at_once(p));
			cli_json_string(stdout, matrix);
			printf(",");
		}
		if (o->svd_exclude) {
			printf("\"svd_exclude\":");
			cli_json_string(stdout, o->svd_exclude);
			printf(",");
		}
		printf("\"models\":[");
		for (size_t m = 0; m < weld_plan_model_count(p); m++) {
			printf(m ? "," : "");
			cli_json_string(stdout, labels && labels->models
					? labels->models[m] : weld_model_path(weld_plan_model(p, (int)m)));
		}
		printf("],\"tensors\":[");
		for (size_t i = 0; i < weld_plan_job_count(p); i++) {
			printf(i ? "," : "");
			print_job_json(p, i);
		}
		printf("]");
		if (labels && labels->recipe_json)
			printf(",\"recipe\":%s", labels->recipe_json);
		printf("}\n");
		return;
	}
	if (labels && labels->recipe)
		printf("recipe   %s\n", cli_safe(labels->recipe));
	printf("method   %s\n", method);
	printf("options  ");
	print_options(o, false);
	printf("\nseed     %llu\n", (unsigned long long)o->seed);
	for (size_t m = 0; m < weld_plan_model_count(p); m++)
		printf("model %zu  %s\n", m, cli_safe(labels && labels->models
		       ? labels->models[m] : weld_model_path(weld_plan_model(p, (int)m))));
	printf("memory   %s of buffers (--max-memory %s), %llu elements per chunk\n", mem, lim,
	       (unsigned long long)weld_plan_chunk_elems(p));
	if (weld_plan_matrix_memory(p, &matrix)) {
		weld_format_size(weld_plan_matrix_memory(p, NULL), mem, sizeof(mem));
		printf("matrix   %s of it for the largest matrix decomposed whole, '%s' (%zu at a time, each counted at that size)\n",
		       mem, cli_safe(matrix), weld_plan_matrices_at_once(p));
	}
	weld_format_size(weld_plan_input_bytes(p), mem, sizeof(mem));
	weld_format_size(out_bytes, lim, sizeof(lim));
	printf("reads    %s\nwrites   %s in %zu tensors\n", mem, lim, weld_plan_job_count(p));
	for (size_t i = 0; i < weld_plan_job_count(p); i++)
		print_job_text(p, i);
}

