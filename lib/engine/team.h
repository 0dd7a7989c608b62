/*
 * team.h - the threads that run the slices of a chunk (weld_team).
 *
 * The engine runs inside one OpenMP parallel region for the whole
 * execution: thread 0 drives the plan, the others serve the team. A batch
 * (the slices of one chunk, or the selections of a unit) is handed out item
 * by item; the driver takes items too and returns when all are done. An
 * idle thread sleeps on a condition variable instead of spinning at an
 * OpenMP barrier, so that the writer thread and the kernel's copies get the
 * cores (with OpenMP's barriers, on two busy cores, spinning took most of
 * the CPU time of a merge). Threads keep their omp_get_thread_num().
 */
#ifndef WELD_TEAM_H
#define WELD_TEAM_H

#include <pthread.h>
#include <stdbool.h>

struct weld_team {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	void (*fn)(void *ctx, int item);
	void *ctx;
	int items;              /* in the current batch (0: none) */
	int next;               /* the next item to hand out */
	int pending;            /* items handed out or not, not yet finished */
	bool stop;
};

/* Set up t; 0, or -1 if the mutex or the conditions cannot be made. */
int weld_team_init(struct weld_team *t);
void weld_team_destroy(struct weld_team *t);
/* The driver: fn(ctx, i) for every i in [0, items), on the team's threads
 * and this one, in any order; returns when every call has returned. */
void weld_team_run(struct weld_team *t, int items, void (*fn)(void *ctx, int item), void *ctx);
/* The other threads: serve batches until weld_team_stop(). */
void weld_team_serve(struct weld_team *t);
/* The driver, when it is done: let the serving threads return. */
void weld_team_stop(struct weld_team *t);

#endif
