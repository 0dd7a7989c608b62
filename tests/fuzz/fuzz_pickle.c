/*
 * fuzz_pickle.c - libFuzzer target for the data.pkl interpreter and the
 * state-dict flattening (formats/pickle*.c, formats/state_dict.c).
 *
 * Feeds arbitrary bytes to weld_state_dict_load() and, when a pickle is
 * accepted, checks what the reader promises the model layer: every
 * tensor's view lies inside its storage, names are unique-looking C strings
 * of bounded length, counts are consistent. A broken promise traps, so the
 * fuzzer reports it like a crash.
 *
 *   sh tests/fuzz/run.sh pickle    (builds it against the whole library)
 *   build-fuzz/fuzz_pickle -max_total_time=600 tests/fuzz/corpus_pickle
 *
 * Seeds: tests/fuzz/corpus_pickle/ (the data.pkl of each torch.save()
 * fixture, written by tests/data/torch/make_fixtures.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "state_dict.h"
#include "torch_zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static unsigned esize(enum weld_dtype t)
{
	switch (t) {
	case WELD_F64: case WELD_I64: case WELD_U64: return 8;
	case WELD_F32: case WELD_I32: case WELD_U32: return 4;
	case WELD_F16: case WELD_BF16: case WELD_I16: case WELD_U16: return 2;
	default: return 1;
	}
}

static void check_tensor(const struct weld_state_dict *r, const struct weld_sd_tensor *t)
{
	const struct weld_sd_storage *s;
	uint64_t last = t->storage_offset, n = 1;
	size_t len;

	check(t->storage < r->nstorages);
	s = &r->storages[t->storage];
	check(s->used);
	len = strlen(t->name);
	check(len > 0 && len <= WELD_SD_MAX_NAME);
	check(t->ndim >= 0 && t->ndim <= WELD_MAX_DIMS);
	for (int k = 0; k < t->ndim; k++) {
		check(t->shape[k] >= 0 && t->stride[k] >= 0);
		n *= (uint64_t)t->shape[k];
	}
	check(n == t->nelem);
	check(t->nbytes == t->nelem * esize(t->dtype));
	check(t->byte_offset == t->storage_offset * esize(t->dtype));
	if (!t->nelem) {
		check(t->byte_offset <= s->nbytes);
		return;
	}
	for (int k = 0; k < t->ndim; k++)
		last += (uint64_t)(t->shape[k] - 1) * (uint64_t)t->stride[k];
	/* the reader guaranteed these sums do not overflow */
	check((last + 1) * esize(t->dtype) <= s->nbytes);
	check(last >= t->storage_offset);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct weld_state_dict r;
	struct weld_error err;

	(void)weld_torch_legacy_probe(data, size);
	if (weld_state_dict_load(data, size, &r, &err) == 0) {
		for (size_t i = 0; i < r.ntensors; i++)
			check_tensor(&r, &r.tensors[i]);
		for (size_t i = 0; i < r.nstorages; i++)
			check(r.storages[i].key && r.storages[i].key[0] >= '0' &&
			      r.storages[i].key[0] <= '9');
		weld_state_dict_free(&r);
	} else {
		check(err.status == WELD_ERR_FORMAT || err.status == WELD_ERR_NOMEM);
		check(memchr(err.msg, '\0', sizeof(err.msg)) != NULL && err.msg[0]);
		check(r.ntensors == 0 && r.tensors == NULL);
	}
	return 0;
}
