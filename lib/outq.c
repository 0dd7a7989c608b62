/*
 * outq.c - the writer thread of the engine (see outq.h). One slot: the
 * engine submits a chunk while at most one other is being written, which
 * is all two buffers allow.
 */
#include "outq.h"

#include <pthread.h>
#include <stdlib.h>

struct weld_outq {
	pthread_t th;
	bool started, stop, has;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	weld_writer *w;
	size_t wi, len;
	const unsigned char *buf;
	uint64_t submitted, completed;
	bool failed;
	struct weld_error err;
	unsigned char *bufs[2];
};

static void *writer_main(void *arg)
{
	struct weld_outq *q = arg;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->has && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->has)
			break;
		pthread_mutex_unlock(&q->mu);
		if (!q->failed && weld_writer_write(q->w, q->wi, q->buf, q->len, &q->err) < 0)
			q->failed = true;
		pthread_mutex_lock(&q->mu);
		q->has = false;
		q->completed++;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* Wait until at most `pending` submitted chunks are still unwritten. */
static int wait_for(struct weld_outq *q, uint64_t pending, struct weld_error *err)
{
	pthread_mutex_lock(&q->mu);
	while (q->submitted - q->completed > pending)
		pthread_cond_wait(&q->cv, &q->mu);
	pthread_mutex_unlock(&q->mu);
	if (q->failed) {
		*err = q->err;
		return -1;
	}
	return 0;
}

unsigned char *weld_outq_buffer(struct weld_outq *q, struct weld_error *err)
{
	if (wait_for(q, 1, err) < 0)
		return NULL;
	return q->bufs[q->submitted % 2];
}

int weld_outq_submit(struct weld_outq *q, weld_writer *w, size_t i, size_t len,
		     struct weld_error *err)
{
	if (wait_for(q, 0, err) < 0)
		return -1;
	pthread_mutex_lock(&q->mu);
	q->w = w;
	q->wi = i;
	q->buf = q->bufs[q->submitted % 2];
	q->len = len;
	q->has = true;
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

	if (!q)
		return NULL;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->bufs[0] = malloc(bytes);
	q->bufs[1] = malloc(bytes);
	if (!q->bufs[0] || !q->bufs[1] || pthread_create(&q->th, NULL, writer_main, q) != 0) {
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
	free(q->bufs[0]);
	free(q->bufs[1]);
	free(q);
}
