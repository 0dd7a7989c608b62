/*
 * format.h - what a file-format parser sees of a weld_model.
 *
 * The model layer (formats/model.c) finds the files of a checkpoint, opens
 * them, and hands each one to the parser its first bytes select. A parser
 * validates the file's header and registers every tensor with
 * weld_model_add_tensor(): the file index, the absolute byte offset of
 * element 0 and the strides in elements. The model layer then reads any
 * element range with pread, following the strides, so a parser never
 * touches tensor data. A parser must make sure that every byte a tensor's
 * view can reach lies inside the file before registering it.
 */
#ifndef WELD_FORMAT_H
#define WELD_FORMAT_H

#include "model.h"

/* Size, descriptor and path of file `file` of the model. */
uint64_t weld_model_file_size(const weld_model *m, int file);
int weld_model_file_fd(const weld_model *m, int file);

/* Register a tensor; the name is copied. Fails on a duplicate name (the
 * message names both files). info->nelem and info->nbytes must already be
 * checked by the parser. */
int weld_model_add_tensor(weld_model *m, const struct weld_tensor_info *info,
			  struct weld_error *err);

/* Remember one __metadata__ entry (copied); the first value of a key wins. */
int weld_model_set_metadata(weld_model *m, const char *key, const char *value,
			    struct weld_error *err);

/* Fill t->stride with C-order strides from t->shape (saturating: only an
 * empty tensor can have a stride product that overflows, and it is never
 * read). */
static inline void weld_contiguous_strides(struct weld_tensor_info *t)
{
	int64_t s = 1;

	for (int i = t->ndim - 1; i >= 0; i--) {
		t->stride[i] = s;
		if (__builtin_mul_overflow(s, t->shape[i] ? t->shape[i] : 1, &s))
			s = INT64_MAX;
	}
}

/* safetensors (formats/safetensors.c) */
bool weld_safetensors_probe(const unsigned char *head, size_t n);
int weld_safetensors_parse(weld_model *m, int file, struct weld_error *err);

/* PyTorch zip checkpoints (formats/torch_zip.c + formats/pickle.c) */
bool weld_torch_probe(const unsigned char *head, size_t n);
int weld_torch_parse(weld_model *m, int file, struct weld_error *err);

#endif
