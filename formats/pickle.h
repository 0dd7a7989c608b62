/*
 * pickle.h - the inside of weld's PyTorch reader: a pickle interpreter that
 * executes nothing (pickle.c) and the zip container walker (torch_zip.c).
 *
 * The model layer only sees the format rows weld_torch_zip_format and
 * weld_torch_legacy_format (format.h); the functions here are exposed so
 * that tests and the fuzzer can drive each layer on its own.
 *
 * What the interpreter accepts (everything else is refused, naming the
 * opcode or the global):
 *  - the opcodes torch.save() emits with protocol 2, plus those of protocols
 *    3-5 a state dict can contain (FRAME, MEMOIZE, SHORT_BINUNICODE,
 *    BINUNICODE8, STACK_GLOBAL, the BINBYTES family);
 *  - the globals collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 *    torch._utils._rebuild_tensor_v3, torch._utils._rebuild_parameter, the
 *    typed storage classes torch.{Double,Float,Half,BFloat16,Long,Int,Short,
 *    Char,Byte,Bool}Storage, torch(.storage).UntypedStorage (bytes, used
 *    with _rebuild_tensor_v3) and the torch dtypes _rebuild_tensor_v3 names
 *    (torch.storage._TypedStorage/TypedStorage never appear in a zip
 *    checkpoint's persistent ids, which name the classes above, so they
 *    are refused like any other global);
 *  - persistent ids ('storage', <storage class>, '<decimal key>', location,
 *    numel); the location is ignored.
 *
 * Which dict holds the weights: the pickle's root must be a dict. If the
 * root has no tensor of its own and a key 'state_dict' (else 'model') whose
 * value is a dict, that dict is used and the root's other entries (epoch,
 * optimizer state...) are parsed but ignored (so {"model": {"w": t}}
 * gives the name "w"). Nested dicts are then flattened with '.':
 * {"encoder": {"layers": {"0": {"w": t}}}} gives "encoder.layers.0.w".
 * Every other leaf must be a tensor; a dict may appear only once.
 */
#ifndef WELD_PICKLE_H
#define WELD_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* Longest tensor name (dict keys joined with '.') weld accepts. */
#define WELD_PICKLE_MAX_NAME 1024

/*
 * True if head starts like a legacy (pre-1.6, non-zip) torch.save() file: a
 * pickle whose first object is the long integer 0x1950a86a20f9469cfc6c.
 */
bool weld_torch_legacy_probe(const unsigned char *head, size_t n);
/* True if head starts like a zip archive (a local header signature). */
bool weld_torch_probe(const unsigned char *head, size_t n);

/* ---------------------------------------------------------------- pickle */

/* One storage named by a persistent id: the zip record <prefix>/data/<key>. */
struct weld_pickle_storage {
	char *key;              /* decimal digits */
	enum weld_dtype dtype;  /* of the storage class (U8 for UntypedStorage) */
	uint64_t nbytes;        /* numel x element size, checked */
	bool used;              /* some tensor in the result views it */
};

/* One tensor of the state dict, its view already checked against its storage. */
struct weld_pickle_tensor {
	char *name;             /* joined keys, valid UTF-8, no NUL */
	size_t storage;         /* index in weld_pickle_result.storages */
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

struct weld_pickle_result {
	struct weld_pickle_tensor *tensors;  /* in the pickle's dict order */
	size_t ntensors;
	struct weld_pickle_storage *storages;
	size_t nstorages;
};

/*
 * Run the pickle buf[0..len) (a data.pkl) and collect the tensors of its
 * state dict into *out. Returns 0, or -1 with err filled (status
 * WELD_ERR_FORMAT or WELD_ERR_NOMEM; the message has no file name, the
 * caller adds it). Memory used is bounded by a small multiple of len.
 * On failure *out is left empty. Free with weld_pickle_result_free().
 */
int weld_pickle_load(const unsigned char *buf, size_t len,
		     struct weld_pickle_result *out, struct weld_error *err);
/* Free what weld_pickle_load() stored in *r and empty it; NULL is fine. */
void weld_pickle_result_free(struct weld_pickle_result *r);

/* ---------------------------------------------------------------- zip */

/* One entry of the central directory, with its local header checked. */
struct weld_zip_entry {
	char *name;             /* NUL-free, NUL-terminated */
	uint16_t flags;
	uint16_t method;        /* 0 stored, 8 deflated, ... */
	uint32_t crc;
	uint64_t csize;         /* compressed size */
	uint64_t usize;         /* uncompressed size */
	uint64_t header;        /* offset of the local header */
	uint64_t data;          /* offset of the first data byte */
};

struct weld_zip_dir {
	struct weld_zip_entry *entries;   /* in central-directory order */
	size_t n;
	const struct weld_zip_entry **by_name;  /* the same entries, sorted by name */
	uint64_t cd_offset;               /* where the central directory starts */
};

/*
 * Read the end records and the central directory of the zip file open as
 * fd (size bytes, called path in messages), and check each entry's local
 * header: signature, same name, header and data inside the file and before
 * the central directory, no two entries overlapping. Returns 0 or -1.
 */
int weld_zip_read_dir(int fd, uint64_t size, const char *path,
		      struct weld_zip_dir *dir, struct weld_error *err);
/* The entry called name, or NULL. */
const struct weld_zip_entry *weld_zip_find(const struct weld_zip_dir *dir,
					   const char *name);
void weld_zip_dir_free(struct weld_zip_dir *dir);

/* ---------------------------------------------------------------- torch */

/* Called once per tensor; return -1 (with err filled) to stop. */
typedef int (*weld_torch_add_fn)(void *ctx, const struct weld_tensor_info *info,
				 struct weld_error *err);

/*
 * The whole reader without the model layer: check the zip file open as fd,
 * run its data.pkl and pass every tensor (file index `file`, absolute
 * offsets) to add(). The format row parses with add() =
 * weld_model_add_tensor().
 */
int weld_torch_scan(int fd, uint64_t size, const char *path, int file,
		    weld_torch_add_fn add, void *ctx, struct weld_error *err);

#endif
