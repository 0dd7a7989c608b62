/*
 * fixtures.h - helpers shared by the unit tests: temporary folders and
 * small files written byte by byte, so that tests build the exact (often
 * broken) inputs they need.
 */
#ifndef WELD_FIXTURES_H
#define WELD_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

/* A new empty folder under $TMPDIR (or /tmp); caller frees the string and
 * removes the folder with fixture_rmtree(). NULL on failure. */
char *fixture_tmpdir(void);
/* rm -rf path (path may be NULL). */
void fixture_rmtree(const char *path);
/* Write len bytes to dir/name; returns a malloc'd full path or NULL. */
char *fixture_write(const char *dir, const char *name, const void *data, size_t len);
/* Write a safetensors file whose header is exactly `header` (no padding)
 * followed by data_len bytes of data (data may be NULL for zeros). */
char *fixture_safetensors(const char *dir, const char *name, const char *header,
			  const void *data, size_t data_len);
/* cmocka setup/teardown: *state is a new temporary folder, removed after. */
int fixture_setup_dir(void **state);
int fixture_teardown_dir(void **state);
/* dir/name, malloc'd (never NULL: aborts when out of memory). */
char *fixture_path(const char *dir, const char *name);
/* The next value of the 32-bit LCG *r (Numerical Recipes' constants) as a
 * float in [-0.5, 0.5): test data that is the same on every machine. */
float fixture_uniform(uint32_t *r);
/* A base b[len] and n models x[s * len + j] near it, the same on every
 * machine: element by element, b[j] = fixture_uniform(), then each
 * x = b[j] + fixture_uniform() * scale, times s + 1 when grow (model s
 * further away than model s - 1); the LCG starts at seed. */
void fixture_near_base(float *b, float *x, size_t n, size_t len, float scale, int grow,
		       uint32_t seed);
/* 1 if the path exists. */
int fixture_exists(const char *path);

#endif
