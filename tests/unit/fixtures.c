/*
 * fixtures.c - temporary folders and hand-made files for the unit tests.
 */
#include "fixtures.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *fixture_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (!base || !*base)
		base = "/tmp";
	p = malloc(strlen(base) + 32);
	if (!p)
		return NULL;
	sprintf(p, "%s/weld-test-XXXXXX", base);
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void fixture_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *fixture_write(const char *dir, const char *name, const void *data, size_t len)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	FILE *f;

	if (!p)
		return NULL;
	snprintf(p, n, "%s/%s", dir, name);
	f = fopen(p, "wb");
	if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f)) {
		free(p);
		return NULL;
	}
	return p;
}

char *fixture_safetensors(const char *dir, const char *name, const char *header,
			  const void *data, size_t data_len)
{
	size_t hl = strlen(header), total = 8 + hl + data_len;
	unsigned char *buf = calloc(1, total ? total : 1);
	char *p;

	if (!buf)
		return NULL;
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, header, hl);
	if (data)
		memcpy(buf + 8 + hl, data, data_len);
	p = fixture_write(dir, name, buf, total);
	free(buf);
	return p;
}

int fixture_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int fixture_setup_dir(void **state)
{
	*state = fixture_tmpdir();
	return *state ? 0 : -1;
}

int fixture_teardown_dir(void **state)
{
	fixture_rmtree(*state);
	free(*state);
	return 0;
}

char *fixture_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (!p)
		abort();
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

float fixture_uniform(uint32_t *r)
{
	*r = *r * 1664525u + 1013904223u;
	return (float)(*r >> 8) / 16777216.0f - 0.5f;
}

void fixture_near_base(float *b, float *x, size_t n, size_t len, float scale, int grow,
		       uint32_t seed)
{
	uint32_t r = seed;

	for (size_t j = 0; j < len; j++) {
		b[j] = fixture_uniform(&r);
		for (size_t s = 0; s < n; s++)
			x[s * len + j] = b[j] + fixture_uniform(&r) * scale *
							(grow ? (float)(s + 1) : 1.0f);
	}
}
