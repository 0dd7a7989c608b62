/*
 * lap.c - exact linear assignment (the Hungarian method in its
 * shortest-augmenting-path form, as in Jonker and Volgenant).
 *
 * Rows are added one at a time. For each new row a Dijkstra-like search
 * over the columns, on reduced costs c[i][j] - u[i] - v[j], finds the
 * cheapest augmenting path to a free column; the dual potentials u, v are
 * then shifted so that reduced costs stay non-negative and are zero on the
 * matched pairs. Each row costs O(n^2), so the whole solve is O(n^3) with
 * O(n) extra memory. The scan order is fixed (columns in increasing order,
 * the first minimum wins), so the result is deterministic.
 */
#include "lap.h"

#include <math.h>
#include <stdlib.h>

int weld_lap_solve(const double *cost, int n, bool maximize, int *assign,
		   double *total, struct weld_error *err)
{
	const double sign = maximize ? -1.0 : 1.0;
	const size_t n1 = (size_t)n + 1;
	double *u = NULL, *v = NULL, *minv = NULL;
	int *match = NULL, *way = NULL;
	unsigned char *used = NULL;
	int ret = -1;

	if (n < 1 || !cost || !assign)
		return weld_fail(err, WELD_ERR_ARG, "linear assignment: invalid size %d", n);
	for (size_t k = 0; k < (size_t)n * (size_t)n; k++)
		if (!isfinite(cost[k]))
			return weld_fail(err, WELD_ERR_ARG,
					 "linear assignment: cost[%zu][%zu] is not finite",
					 k / (size_t)n, k % (size_t)n);

	/*
	 * Index 0 is a virtual column that holds the row being inserted;
	 * match[j] is the (1-based) row assigned to column j, 0 if free.
	 */
	u = calloc(n1, sizeof(*u));
	v = calloc(n1, sizeof(*v));
	minv = malloc(n1 * sizeof(*minv));
	match = calloc(n1, sizeof(*match));
	way = calloc(n1, sizeof(*way));
	used = malloc(n1);
	if (!u || !v || !minv || !match || !way || !used) {
		weld_fail(err, WELD_ERR_NOMEM, "linear assignment: out of memory (n = %d)", n);
		goto out;
	}

	for (int i = 1; i <= n; i++) {
		int j0 = 0;

		match[0] = i;
		for (size_t j = 0; j < n1; j++) {
			minv[j] = HUGE_VAL;
			used[j] = 0;
		}
		do {
			const int i0 = match[j0];
			const double *row = cost + (size_t)(i0 - 1) * (size_t)n;
			double delta = HUGE_VAL;
			int j1 = 0;

			used[j0] = 1;
			for (int j = 1; j <= n; j++) {
				double cur;

				if (used[j])
					continue;
				cur = sign * row[j - 1] - u[i0] - v[j];
				if (cur < minv[j]) {
					minv[j] = cur;
					way[j] = j0;
				}
				if (minv[j] < delta) {
					delta = minv[j];
					j1 = j;
				}
			}
			/* every unused column has a finite minv, so j1 was found */
			for (int j = 0; j <= n; j++) {
				if (used[j]) {
					u[match[j]] += delta;
					v[j] -= delta;
				} else {
					minv[j] -= delta;
				}
			}
			j0 = j1;
		} while (match[j0] != 0);

		/* flip the matched and unmatched edges along the path */
		do {
			const int j1 = way[j0];

			match[j0] = match[j1];
			j0 = j1;
		} while (j0 != 0);
	}

	for (int j = 1; j <= n; j++)
		assign[match[j] - 1] = j - 1;
	if (total) {
		double s = 0.0;

		for (int i = 0; i < n; i++)
			s += cost[(size_t)i * (size_t)n + (size_t)assign[i]];
		*total = s;
	}
	ret = 0;
out:
	free(u);
	free(v);
	free(minv);
	free(match);
	free(way);
	free(used);
	return ret;
}
