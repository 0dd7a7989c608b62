/*
 * name_table.c - names found by hash (see name_table.h). The table is kept
 * at most three quarters full, so that a probe ends after a few slots.
 */
#include "name_table.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* The process's seed: from the kernel, else from the clock and the pid. */
static uint64_t process_seed(void)
{
	static uint64_t seed;
	uint64_t s = __atomic_load_n(&seed, __ATOMIC_RELAXED);
	struct timespec ts;

	if (s)
		return s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
		    (uint64_t)getpid() << 32;
	}
	s |= 1;         /* never 0, the "not drawn yet" value */
	__atomic_store_n(&seed, s, __ATOMIC_RELAXED);
	return s;
}

static uint64_t hash_of(const struct weld_name_table *t, const char *name)
{
	return XXH3_64bits_withSeed(name, strlen(name), t->seed);
}

/* Slots for n names at most 3/4 full: a power of 2, at least 16. */
static size_t slots_for(size_t n)
{
	size_t cap = 16;

	while (cap / 4 * 3 < n) {
		if (cap > SIZE_MAX / 2 / sizeof(struct weld_name_slot))
			return 0;
		cap *= 2;
	}
	return cap;
}

int weld_name_table_init(struct weld_name_table *t, size_t n)
{
	memset(t, 0, sizeof(*t));
	t->cap = slots_for(n);
	t->slots = t->cap ? calloc(t->cap, sizeof(*t->slots)) : NULL;
	if (!t->slots) {
		t->cap = 0;
		return -1;
	}
	t->seed = process_seed();
	return 0;
}

/* The slot holding name (hash h), or the empty slot where it would go. */
static struct weld_name_slot *probe(struct weld_name_table *t, const char *name, uint64_t h)
{
	size_t mask = t->cap - 1;

	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct weld_name_slot *s = &t->slots[i];

		if (!s->name)
			return s;
		if (s->hash == h) {
			t->compares++;
			if (strcmp(s->name, name) == 0)
				return s;
		}
	}
}

static int grow(struct weld_name_table *t)
{
	size_t cap = slots_for(t->n + 1), mask;
	struct weld_name_slot *old = t->slots, *s;

	if (!cap)
		return -1;
	s = calloc(cap, sizeof(*s));
	if (!s)
		return -1;
	mask = cap - 1;
	for (size_t i = 0; i < t->cap; i++) {
		size_t k;

		if (!old[i].name)
			continue;
		for (k = (size_t)old[i].hash & mask; s[k].name; k = (k + 1) & mask)
			;
		s[k] = old[i];
	}
	free(old);
	t->slots = s;
	t->cap = cap;
	return 0;
}

int weld_name_table_add(struct weld_name_table *t, const char *name, size_t value,
			size_t *old)
{
	uint64_t h = hash_of(t, name);
	struct weld_name_slot *s;

	if (!t->slots || (t->n + 1 > t->cap / 4 * 3 && grow(t) < 0))
		return -1;
	s = probe(t, name, h);
	if (s->name) {
		if (old)
			*old = s->value;
		return 1;
	}
	s->name = name;
	s->hash = h;
	s->value = value;
	t->n++;
	return 0;
}

bool weld_name_table_find(struct weld_name_table *t, const char *name, size_t *value)
{
	struct weld_name_slot *s;

	if (!t->slots)
		return false;
	s = probe(t, name, hash_of(t, name));
	if (!s->name)
		return false;
	if (value)
		*value = s->value;
	return true;
}

void weld_name_table_free(struct weld_name_table *t)
{
	if (!t)
		return;
	free(t->slots);
	memset(t, 0, sizeof(*t));
}
