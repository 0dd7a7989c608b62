/*
 * fuzz_torch.c - libFuzzer target for the PyTorch zip reader: the zip
 * walker, libzip's reading and the comparison of the two, data.pkl read
 * through libzip, the state dict, and deflated storages inflated into a
 * temporary file (formats/zip_dir.c, zip_archive.c, torch_zip.c, and the
 * pickle files behind them).
 *
 * Each input is written to an in-memory file (memfd) and opened through
 * /proc/self/fd/N with weld_model_open(), as a checkpoint on disk would
 * be. Inputs that do not start with the zip signature are skipped: they
 * select other readers, which have their own targets. When a checkpoint is
 * accepted, every tensor is read whole (from the file or from the inflated
 * copy) and must read; a read past its end must be refused. A refusal must
 * fill the error. A broken promise aborts, so the fuzzer reports it.
 *
 *   sh tests/fuzz/run.sh torch
 *   build-fuzz/fuzz_torch -max_total_time=600 tests/fuzz/corpus_torch
 *
 * Seeds: tests/fuzz/corpus_torch/ (checkpoints of tests/data/torch, one of
 * them deflated).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "weld.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

static void check_tensors(const weld_model *m)
{
	struct weld_error err;

	for (size_t i = 0; i < weld_model_count(m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(m, i);
		size_t es = weld_dtype_size(t->dtype);
		void *buf;

		if (weld_model_find(m, t->name) != (int64_t)i || t->nbytes != t->nelem * es)
			abort();
		buf = malloc((size_t)t->nbytes + 1);
		if (!buf)
			abort();
		if (weld_model_read(m, i, 0, (size_t)t->nelem, buf, &err) != 0)
			abort();
		if (weld_model_read(m, i, 0, (size_t)t->nelem + 1, buf, &err) == 0)
			abort();
		free(buf);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct weld_error err;
	weld_model *m = NULL;

	memset(&err, 0, sizeof(err));
	if (size < 4 || memcmp(data, "PK\x03\x04", 4) != 0)
		return 0;
	if (memfd < 0) {
		memfd = memfd_create("fuzz.bin", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	if (weld_model_open(&m, path, &err) == 0) {
		if (!m || strcmp(weld_model_format(m), "pytorch") != 0)
			abort();
		check_tensors(m);
		weld_model_close(m);
	} else if (m || err.status == WELD_OK || !err.msg[0]) {
		abort();
	}
	return 0;
}
