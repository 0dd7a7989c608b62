/*
 * format.h - what a file-format parser sees of a weld_model, and the table
 * of formats the model layer consults.
 *
 * The model layer (formats/model.c) finds the files of a checkpoint, opens
 * them, and hands each one to the format whose probe claims its first
 * bytes (registry.c holds the table; model.c never names a parser). A
 * parser validates the file's header and registers every tensor with
 * weld_model_add_tensor(): the file index, the absolute byte offset of
 * element 0 and the strides in elements. The model layer then reads any
 * element range with pread, following the strides, so a parser never
 * touches tensor data. A parser must make sure that every byte a tensor's
 * view can reach lies inside the file before registering it.
 */
#ifndef WELD_FORMAT_H
#define WELD_FORMAT_H

#include "model.h"

/* ---------------------------------------------------------------- the table */

/*
 * One file format, like a libarchive reader: its name (what
 * weld_model_format() reports), a probe that looks at the first bytes of a
 * file (head[0..n), n = min(64, file size)) without reading more, and the
 * parser that registers the file's tensors. A file no probe claims may
 * still be a damaged file of a format: `damaged` (NULL: never) says so from
 * the same bytes and the file's size, and the file is then parsed, so that
 * the damage gets that parser's message rather than "not a checkpoint".
 */
struct weld_format {
	const char *name;
	bool (*probe)(const unsigned char *head, size_t n);
	int (*parse)(weld_model *m, int file, struct weld_error *err);
	bool (*damaged)(const unsigned char *head, size_t n, uint64_t size);
};

/*
 * The format of the file called path (size bytes) that starts with
 * head[0..n): the first row (in registry.c's order) whose probe claims it,
 * else the first that takes it as damaged, else NULL with err filled
 * ("'path': not a safetensors or PyTorch checkpoint").
 */
const struct weld_format *weld_format_detect(const unsigned char *head, size_t n,
					     uint64_t size, const char *path,
					     struct weld_error *err);

/* The rows, each defined in its format's file and listed in registry.c. */
extern const struct weld_format weld_torch_zip_format;    /* torch_zip.c */
extern const struct weld_format weld_torch_legacy_format; /* torch_zip.c: refused */
extern const struct weld_format weld_safetensors_format;  /* safetensors.c */
extern const struct weld_format weld_gguf_format;         /* gguf.c */

/* ---------------------------------------------------------------- what parsers call */

/* Size, descriptor and path of file `file` of the model. */
uint64_t weld_model_file_size(const weld_model *m, int file);
int weld_model_file_fd(const weld_model *m, int file);

/* Open one more file of the model (a split set's next file), to be parsed
 * by the caller; its index, or -1. Metadata set from now on is that
 * file's. */
int weld_model_add_file(weld_model *m, const char *path, struct weld_error *err);

/* Register a tensor; the name is copied. Fails on a duplicate name (the
 * message names both files). info->nelem and info->nbytes must already be
 * checked by the parser. */
int weld_model_add_tensor(weld_model *m, const struct weld_tensor_info *info,
			  struct weld_error *err);

/*
 * Data a file cannot serve by byte range (a compressed zip entry) is
 * copied once, at open, into a descriptor of the parser's making (an
 * unlinked temporary file). weld_model_add_source() hands that descriptor
 * to the model, which reads from it with pread like a file and closes it
 * with the model (and at once if the call fails). Returns the source's
 * number (>= 1), or -1. Tensors registered against the source with
 * weld_model_add_tensor_in() have info->offset counting in it; their
 * info->file still names the checkpoint file they belong to.
 */
int weld_model_add_source(weld_model *m, int file, int fd, struct weld_error *err);
int weld_model_add_tensor_in(weld_model *m, const struct weld_tensor_info *info, int source,
			     struct weld_error *err);

/* Remember one __metadata__ entry of the file being parsed (copied). The
 * parser makes sure that a file's keys are unique: nothing is looked up
 * here, so that a header of many keys is read in linear time. */
int weld_model_set_metadata(weld_model *m, const char *key, const char *value,
			    struct weld_error *err);
/* The same, for file `file` of m (a split set recorded by its first file). */
int weld_model_set_file_metadata(weld_model *m, int file, const char *key, const char *value,
				 struct weld_error *err);

/* ---------------------------------------------------------------- FP8 scales */

/*
 * Pair every FP8 weight with its scale tensor (fp8_scales.c, DESIGN 6.2),
 * once all files are parsed and the tensors sorted: for each pair it calls
 * weld_model_attach_scale(), then weld_model_drop_scales().
 */
int weld_fp8_pair_scales(weld_model *m, struct weld_error *err);

/* Tensor w becomes the decoded view of its codes: w's info takes the
 * scaled, scale_dtype and scale_block fields of *how* (dtype F32, its
 * codes' bytes kept), and reads apply the scales of tensor s, which is
 * marked to be dropped. s must be contiguous. */
int weld_model_attach_scale(weld_model *m, size_t w, size_t s,
			    const struct weld_tensor_info *how, struct weld_error *err);
/* Mark tensor i to be dropped (an activation scale of a quantised model). */
void weld_model_hide_tensor(weld_model *m, size_t i);
/* Remove the tensors attached as scales or hidden from the list (order kept). */
void weld_model_drop_scales(weld_model *m);
/* The geometry (fp8.h) of a tensor with scales: the layout's blocks over
 * its last two dimensions (channel and tensor scales: over all rows). */
struct weld_fp8_geom;
void weld_fp8_geom_of(const struct weld_tensor_info *t, struct weld_fp8_geom *g);

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

#endif
