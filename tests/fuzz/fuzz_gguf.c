/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader (formats/gguf.c) and
 * the block decoders (lib/common/quant.c).
 *
 * Each input is written to an in-memory file (memfd) and opened through
 * /proc/self/fd/N with weld_model_open(). When the file is accepted, every
 * tensor must lie inside the file; it is read whole as float32 (quantised
 * ones decoded block by block), then again from an element that cuts a
 * block, which must give the same values, and hashed. The key/value pairs
 * are also read as the GGUF writer reads them, and must agree in number
 * with the metadata the model holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "weld.h"
#include "format.h"
#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

static void check_tensor(const weld_model *m, size_t i)
{
	const struct weld_tensor_info *t = weld_model_tensor(m, i);
	uint64_t fsize = weld_model_file_size(m, t->file), h;
	struct weld_error err;
	size_t n = (size_t)t->nelem, es = weld_dtype_size(t->dtype);
	float *a, *b;

	if (t->offset > fsize || t->nbytes > fsize - t->offset)
		abort();
	if (t->nelem > (1u << 24))  /* a file of a few KB can describe more */
		return;
	a = malloc(n * (es > 4 ? es : 4) + 8);
	b = malloc(n * (es > 4 ? es : 4) + 8);
	if (!a || !b)
		abort();
	if (weld_dtype_is_float(t->dtype)) {
		if (weld_model_read_f32(m, i, 0, n, a, NULL, &err) != 0)
			abort();
		if (n > 1 && (weld_model_read_f32(m, i, 1, n - 1, b, NULL, &err) != 0 ||
			      memcmp(a + 1, b, (n - 1) * sizeof(float)) != 0))
			abort();
	} else if (weld_model_read(m, i, 0, n, a, &err) != 0) {
		abort();
	}
	if (weld_model_read(m, i, 0, n + 1, a, &err) == 0 || weld_model_hash(m, i, &h, &err) != 0)
		abort();
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct weld_error err;
	struct weld_gguf_kv *kv = NULL;
	weld_model *m = NULL;
	size_t nkv = 0;

	memset(&err, 0, sizeof(err));
	if (size < 4 || memcmp(data, "GGUF", 4) != 0)
		return 0;
	if (memfd < 0) {
		memfd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	if (weld_model_open(&m, path, &err) == 0) {
		if (!m || strcmp(weld_model_format(m), "gguf") != 0)
			abort();
		for (size_t i = 0; i < weld_model_count(m); i++)
			check_tensor(m, i);
		if (weld_gguf_read_kvs(path, &kv, &nkv, &err) != 0)
			abort();
		if (nkv + (weld_model_metadata(m, "weld_xxh3") != NULL) !=
		    weld_model_metadata_count(m))
			abort();
		weld_gguf_kvs_free(kv, nkv);
		weld_model_close(m);
	} else if (m || err.status == WELD_OK || !err.msg[0]) {
		abort();
	}
	return 0;
}
