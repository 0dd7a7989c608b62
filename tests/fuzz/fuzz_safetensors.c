/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Each input is written to an in-memory file (memfd) and opened through
 * /proc/self/fd/N with weld_model_open(), exactly as a model file on disk
 * would be. When the header is accepted, every tensor must lie inside the
 * file and is read whole, with weld_model_read_f32() for float dtypes and
 * weld_model_read() for the others; a read past its end must be refused.
 * Inputs that start with the zip signature are skipped: they select the
 * PyTorch reader, which has its own target.
 *
 * Two prefixes fuzz the folder logic of formats/model.c instead (neither is
 * a possible safetensors start: both read as a header length over 1e8):
 *   "IDX:" index@@@@shard0@@@@shard1...  a sharded folder: the first part is
 *          model.safetensors.index.json, the others s0.safetensors, ...
 *   "DIR:" shard0@@@@shard1...            a folder of *.safetensors, no index
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "weld.h"
#include "format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SHARDS 4
#define SEP "@@@@"

static int memfd = -1;
static char path[64];
static char folder[64];

static void check_tensors(const weld_model *m)
{
	struct weld_error err;

	for (size_t i = 0; i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		uint64_t fsize = weld_model_file_size(m, t->file);
		size_t es = weld_dtype_size(t->dtype);
		void *buf;
		int r;

		if (weld_model_find(m, t->name) != (int64_t)i)
			abort();
		if (t->nbytes != t->nelem * es || t->offset > fsize ||
		    t->nbytes > fsize - t->offset)
			abort();
		buf = malloc((size_t)t->nelem * (es > 4 ? es : 4) + 1);
		if (!buf)
			abort();
		if (weld_dtype_is_float(t->dtype))
			r = weld_model_read_f32(m, i, 0, (size_t)t->nelem, buf, NULL, &err);
		else
			r = weld_model_read(m, i, 0, (size_t)t->nelem, buf, &err);
		if (r != 0)
			abort();
		if (weld_model_read(m, i, 0, (size_t)t->nelem + 1, buf, &err) == 0 ||
		    weld_model_read(m, i, t->nelem + 1, 0, buf, &err) == 0)
			abort();
		free(buf);
	}
}

static void put_file(const char *name, const uint8_t *p, size_t n)
{
	char fp[128];
	int fd;

	snprintf(fp, sizeof(fp), "%s/%s", folder, name);
	fd = open(fp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n) || close(fd) < 0)
		abort();
}

static const char *const names[MAX_SHARDS + 1] = {
	"s0.safetensors", "s1.safetensors", "s2.safetensors", "s3.safetensors",
	"model.safetensors.index.json",
};

static void empty_folder(void)
{
	for (size_t i = 0; i <= MAX_SHARDS; i++) {
		char fp[128];

		snprintf(fp, sizeof(fp), "%s/%s", folder, names[i]);
		unlink(fp);
	}
}

static void remove_folder(void)
{
	empty_folder();
	rmdir(folder);
}

/* Lay out a folder from the parts of the input; returns its path. */
static const char *make_folder(const uint8_t *data, size_t size, bool index)
{
	size_t k = index ? 0 : 1;

	if (!folder[0]) {
		snprintf(folder, sizeof(folder), "/tmp/weld-fuzz-XXXXXX");
		if (!mkdtemp(folder))
			abort();
		atexit(remove_folder);
	}
	empty_folder();
	while (k <= MAX_SHARDS) {
		const uint8_t *sep = memmem(data, size, SEP, 4);
		size_t n = sep ? (size_t)(sep - data) : size;

		put_file(names[k ? k - 1 : MAX_SHARDS], data, n);
		k++;
		if (!sep)
			break;
		size -= n + 4;
		data = sep + 4;
	}
	return folder;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct weld_error err;
	weld_model *m = NULL;

	memset(&err, 0, sizeof(err));
	/* zip archives and GGUF files have fuzz targets of their own */
	if (size >= 4 && (memcmp(data, "PK\x03\x04", 4) == 0 || memcmp(data, "GGUF", 4) == 0))
		return 0;
	if (size >= 4 && (memcmp(data, "IDX:", 4) == 0 || memcmp(data, "DIR:", 4) == 0)) {
		const char *dir;

		if (memmem(data, size, "PK\x03\x04", 4))
			return 0;
		dir = make_folder(data + 4, size - 4, data[0] == 'I');

		if (weld_model_open(&m, dir, &err) == 0) {
			check_tensors(m);
			weld_model_close(m);
		} else if (m || err.status == WELD_OK || !err.msg[0]) {
			abort();
		}
		return 0;
	}
	if (memfd < 0) {
		memfd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) < 0 ||
	    (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	if (weld_model_open(&m, path, &err) == 0) {
		if (!m || strcmp(weld_model_format(m), "safetensors") != 0)
			abort();
		(void)weld_model_metadata(m, "format");
		check_tensors(m);
		weld_model_close(m);
	} else if (m || err.status == WELD_OK || !err.msg[0]) {
		abort();
	}
	return 0;
}
