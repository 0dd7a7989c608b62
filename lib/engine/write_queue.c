/*
 * write_queue.c - the writer thread of the engine (see write_queue.h): a
 * ring of WELD_OUTQ_BUFS buffers, written in the order they are submitted.
 */
#include "write_queue.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
	weld_writer *w;
	size_t wi, len;
};

struct weld_outq {
	pthread_t th;
	bool started, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t submitted, completed;
	bool failed;
	struct weld_error err;
	struct job jobs[WELD_OUTQ_BUFS];
	unsigned char *bufs[WELD_OUTQ_BUFS];
};

static void *writer_main(void *arg)
{
	struct weld_outq *q = arg;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (q->completed == q->submitted && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->completed == q->submitted)
			break;
		{
			size_t k = (size_t)(q->completed % WELD_OUTQ_BUFS);
			struct job jb = q->jobs[k];

			bool bad;

			pthread_mutex_unlock(&q->mu);
			/* only this thread sets failed */
			bad = !q->failed && weld_writer_write(jb.w, jb.wi, q->bufs[k], jb.len, &q->err) < 0;
			pthread_mutex_lock(&q->mu);
			if (bad)
				q->failed = true;
		}
		q->completed++;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* Wait until at most `pending` submitted chunks are still unwritten. */
static int wait_for(struct weld_outq *q, uint64_t pending, struct weld_error *err)
{
	bool failed;

	pthread_mutex_lock(&q->mu);
	while (q->submitted - q->completed > pending)
		pthread_cond_wait(&q->cv, &q->mu);
	failed = q->failed;
	pthread_mutex_unlock(&q->mu);
	if (failed) {
		*err = q->err;
		return -1;
	}
	return 0;
}

unsigned char *weld_outq_buffer(struct weld_outq *q, struct weld_error *err)
{
	if (wait_for(q, WELD_OUTQ_BUFS - 1, err) < 0)
		return NULL;
	return q->bufs[q->submitted % WELD_OUTQ_BUFS];
}

int weld_outq_submit(struct weld_outq *q, weld_writer *w, size_t i, size_t len,
		     struct weld_error *err)
{
	/* the buffer was handed out by weld_outq_buffer: its slot is free */
	if (wait_for(q, WELD_OUTQ_BUFS - 1, err) < 0)
		return -1;
	pthread_mutex_lock(&q->mu);
	q->jobs[q->submitted % WELD_OUTQ_BUFS] = (struct job){ w, i, len };
	q->submitted++;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

int weld_outq_drain(struct weld_outq *q, struct weld_error *err)
{
	return wait_for(q, 0, err);
}

struct weld_outq *weld_outq_new(size_t bytes)
{
	struct weld_outq *q = calloc(1, sizeof(*q));
	bool ok = q != NULL;

	if (!q)
		return NULL;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	for (size_t k = 0; k < WELD_OUTQ_BUFS; k++)
		ok = ok && (q->bufs[k] = malloc(bytes)) != NULL;
	if (!ok || pthread_create(&q->th, NULL, writer_main, q) != 0) {
		weld_outq_free(q);
		return NULL;
	}
	q->started = true;
	return q;
}

void weld_outq_free(struct weld_outq *q)
{
	if (!q)
		return;
	if (q->started) {
		pthread_mutex_lock(&q->mu);
		q->stop = true;
		pthread_cond_broadcast(&q->cv);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->th, NULL);
	}
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	for (size_t k = 0; k < WELD_OUTQ_BUFS; k++)
		free(q->bufs[k]);
	free(q);
}
