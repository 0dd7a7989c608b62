/*
 * team.c - the engine's worker threads (see team.h): batches of items
 * handed out under one mutex, idle threads asleep on a condition variable.
 */
#include "team.h"

int weld_team_init(struct weld_team *t)
{
	*t = (struct weld_team){ .items = 0 };
	if (pthread_mutex_init(&t->mu, NULL) != 0)
		return -1;
	if (pthread_cond_init(&t->work, NULL) != 0)
		goto no_work;
	if (pthread_cond_init(&t->done, NULL) != 0)
		goto no_done;
	return 0;
no_done:
	pthread_cond_destroy(&t->work);
no_work:
	pthread_mutex_destroy(&t->mu);
	return -1;
}

void weld_team_destroy(struct weld_team *t)
{
	pthread_cond_destroy(&t->done);
	pthread_cond_destroy(&t->work);
	pthread_mutex_destroy(&t->mu);
}

/* Run the items left in the batch; called and returns with t->mu held. */
static void take_items(struct weld_team *t)
{
	while (t->next < t->items) {
		int i = t->next++;

		pthread_mutex_unlock(&t->mu);
		t->fn(t->ctx, i);
		pthread_mutex_lock(&t->mu);
		if (--t->pending == 0)
			pthread_cond_signal(&t->done);
	}
}

void weld_team_run(struct weld_team *t, int items, void (*fn)(void *ctx, int item), void *ctx)
{
	if (items <= 0)
		return;
	pthread_mutex_lock(&t->mu);
	t->fn = fn;
	t->ctx = ctx;
	t->items = items;
	t->next = 0;
	t->pending = items;
	if (items > 1)
		pthread_cond_broadcast(&t->work);
	take_items(t);
	while (t->pending)
		pthread_cond_wait(&t->done, &t->mu);
	t->items = t->next = 0;
	pthread_mutex_unlock(&t->mu);
}

void weld_team_serve(struct weld_team *t)
{
	pthread_mutex_lock(&t->mu);
	for (;;) {
		take_items(t);
		if (t->stop)
			break;
		pthread_cond_wait(&t->work, &t->mu);
	}
	pthread_mutex_unlock(&t->mu);
}

void weld_team_stop(struct weld_team *t)
{
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->mu);
}
