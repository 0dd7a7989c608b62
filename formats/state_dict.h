/*
 * state_dict.h - the tensors of a torch state dict, from its data.pkl:
 * the pickle is run by the interpreter (pickle.h), then the dict holding
 * the weights is flattened into named tensors whose views are checked
 * against their storages (state_dict.c).
 *
 * Which dict holds the weights: the pickle's root must be a dict. If the
 * root has no tensor of its own and a key 'state_dict' (else 'model') whose
 * value is a dict, that dict is used and the root's other entries (epoch,
 * optimizer state...) are parsed but ignored (so {"model": {"w": t}}
 * gives the name "w"). Nested dicts are then flattened with '.':
 * {"encoder": {"layers": {"0": {"w": t}}}} gives "encoder.layers.0.w".
 * Every other leaf must be a tensor (made by _rebuild_tensor_v2/v3, or a
 * _rebuild_parameter of one); a dict may appear only once.
 */
#ifndef WELD_STATE_DICT_H
#define WELD_STATE_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Longest tensor name (dict keys joined with '.') weld accepts. */
#define WELD_SD_MAX_NAME 1024

/* One storage named by a persistent id: the zip record <prefix>/data/<key>. */
struct weld_sd_storage {
	char *key;              /* decimal digits */
	enum weld_dtype dtype;  /* of the storage class (U8 for UntypedStorage) */
	uint64_t nbytes;        /* numel x element size, checked */
	bool used;              /* some tensor in the result views it */
};

/* One tensor of the state dict, its view already checked against its storage. */
struct weld_sd_tensor {
	char *name;             /* joined keys, valid UTF-8, no NUL */
	size_t storage;         /* index in weld_state_dict.storages */
	enum weld_dtype dtype;
	int ndim;
	int64_t shape[WELD_MAX_DIMS];
	int64_t stride[WELD_MAX_DIMS];  /* elements, all >= 0 */
	uint64_t storage_offset;        /* elements */
	uint64_t nelem;
	uint64_t nbytes;                /* nelem x element size */
	uint64_t byte_offset;           /* of element 0 inside the storage */
	bool contiguous;                /* strides are C order (size-1 dims ignored) */
};

struct weld_state_dict {
	struct weld_sd_tensor *tensors;  /* in the pickle's dict order */
	size_t ntensors;
	struct weld_sd_storage *storages;
	size_t nstorages;
};

/*
 * Run the pickle buf[0..len) (a data.pkl) and collect the tensors of its
 * state dict into *out. Returns 0, or -1 with err filled (status
 * WELD_ERR_FORMAT or WELD_ERR_NOMEM; the message has no file name, the
 * caller adds it). Memory used is bounded by a small multiple of len.
 * On failure *out is left empty. Free with weld_state_dict_free().
 */
int weld_state_dict_load(const unsigned char *buf, size_t len,
			 struct weld_state_dict *out, struct weld_error *err);
/* Free what weld_state_dict_load() stored in *sd and empty it; NULL is fine. */
void weld_state_dict_free(struct weld_state_dict *sd);

#endif
