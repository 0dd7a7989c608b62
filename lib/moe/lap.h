/*
 * lap.h - exact linear assignment: the solver behind --align, which pairs
 * the FFN neurons of two experts. Pure math on a cost matrix; it knows
 * nothing of models.
 */
#ifndef WELD_LAP_H
#define WELD_LAP_H

#include "base.h"

/*
 * Solve the n x n linear assignment problem on cost (row-major): find the
 * permutation assign[] (row i -> column assign[i]) that minimises
 * sum_i cost[i][assign[i]], or maximises it if maximize is true. Exact
 * (shortest augmenting paths with dual potentials, i.e. the Hungarian
 * method in the Jonker-Volgenant form), O(n^3) time, O(n) extra memory,
 * deterministic. If total is not NULL it receives the optimal sum.
 * Returns 0, or -1 if n < 1, an entry is not finite, or out of memory.
 */
int weld_lap_solve(const double *cost, int n, bool maximize, int *assign,
		   double *total, struct weld_error *err);

#endif
