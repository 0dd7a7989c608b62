/*
 * gguf_header.c - the bytes before a GGUF output's data, and the types
 * they name: the ggml type each tensor is stored in, llama.cpp's file
 * type, and each file's header (the layout is stated in gguf_writer.c).
 */
#include "format.h"
#include "gguf_writer_impl.h"
#include "quant.h"

#include <string.h>

/* ---------------------------------------------------------------- types */

int weld_gguf_dtype_type(enum weld_dtype d)
{
	switch (d) {
	case WELD_F32: return WELD_GGML_F32;
	case WELD_F16: return WELD_GGML_F16;
	case WELD_BF16: return WELD_GGML_BF16;
	case WELD_I8: return 24;
	case WELD_I16: return 25;
	case WELD_I32: return 26;
	case WELD_I64: return 27;
	case WELD_F64: return 28;
	default: return -1;
	}
}

static bool writable(int type)
{
	return type == WELD_GGML_F32 || type == WELD_GGML_F16 || type == WELD_GGML_BF16 ||
	       type == WELD_GGML_Q8_0 || type == WELD_GGML_Q4_0;
}

int weld_gguf_store_type(const struct weld_tensor_info *base, enum weld_dtype dtype,
			 int requested, int ndim, uint64_t ne0)
{
	int bt = base ? weld_gguf_tensor_type(base) : -1;
	int t;

	if (!weld_dtype_is_float(dtype) || dtype == WELD_F64)
		return weld_gguf_dtype_type(dtype);
	if (requested >= 0)
		t = ndim <= 1 ? WELD_GGML_F32 : requested;
	else if (bt >= 0)
		t = writable(bt) ? bt : WELD_GGML_F16;
	else
		t = weld_gguf_dtype_type(dtype);
	if (t < 0)
		t = WELD_GGML_F32;
	if (ne0 % weld_ggml_type((uint32_t)t)->block)
		t = WELD_GGML_F32;
	return t;
}

uint32_t weld_gguf_file_type(const struct gtensor *t, size_t n)
{
	static const struct { uint32_t type, ftype; } map[] = {
		{ WELD_GGML_F32, 0 }, { WELD_GGML_F16, 1 }, { WELD_GGML_Q4_0, 2 },
		{ WELD_GGML_Q8_0, 7 }, { WELD_GGML_BF16, 32 },
	};
	uint64_t count[sizeof(map) / sizeof(map[0])] = { 0 };
	size_t best = 0;

	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++)
			if (t[i].ndim >= 2 && t[i].type == map[k].type)
				count[k] += t[i].nelem;
	for (size_t k = 1; k < sizeof(map) / sizeof(map[0]); k++)
		if (count[k] > count[best])
			best = k;
	return map[best].ftype;
}

/* ---------------------------------------------------------------- header */

static void put(struct gguf_out *o, const void *d, size_t n)
{
	if (o->p)
		memcpy(o->p + o->len, d, n);
	o->len += n;
}

static void put_u32(struct gguf_out *o, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16), (unsigned char)(v >> 24) };

	put(o, b, 4);
}

static void put_u64(struct gguf_out *o, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	put(o, b, 8);
}

static void put_str(struct gguf_out *o, const char *s)
{
	put_u64(o, strlen(s));
	put(o, s, strlen(s));
}

/* Base keys the writer sets itself or drops. */
static bool replaced(const char *key)
{
	return strcmp(key, "general.file_type") == 0 || strcmp(key, "general.alignment") == 0 ||
	       strcmp(key, "general.quantization_version") == 0 ||
	       strncmp(key, "split.", 6) == 0 || strncmp(key, "weld.", 5) == 0;
}

static uint64_t kv_count(const struct weld_gguf_writer *w, size_t file)
{
	uint64_t n = 3 * w->split;                                 /* split.* */

	if (file)
		return n;
	n += 3 + (w->recipe != NULL) + w->quantised;              /* file_type, weld.* */
	for (size_t i = 0; i < w->nkv; i++)
		n += !replaced(w->kv[i].key);
	return n;
}

static void split_keys(const struct weld_gguf_writer *w, struct gguf_out *o, size_t file)
{
	unsigned char u16[2];

	put_str(o, "split.no");
	put_u32(o, WELD_GGUF_U16);
	u16[0] = (unsigned char)file;
	u16[1] = (unsigned char)(file >> 8);
	put(o, u16, 2);
	put_str(o, "split.count");
	put_u32(o, WELD_GGUF_U16);
	u16[0] = (unsigned char)w->nf;
	u16[1] = (unsigned char)(w->nf >> 8);
	put(o, u16, 2);
	put_str(o, "split.tensors.count");
	put_u32(o, WELD_GGUF_I32);
	put_u32(o, (uint32_t)w->n);
}

static void tensor_infos(const struct weld_gguf_writer *w, struct gguf_out *o, size_t file)
{
	for (size_t i = w->f[file].first; i < w->f[file].first + w->f[file].count; i++) {
		const struct gtensor *t = &w->t[i];

		put_str(o, t->name);
		put_u32(o, (uint32_t)t->ndim);
		for (int d = 0; d < t->ndim; d++)
			put_u64(o, t->ne[d]);
		put_u32(o, t->type);
		put_u64(o, t->offset);
	}
}

void weld_gguf_header(const struct weld_gguf_writer *w, size_t file, struct gguf_out *o,
		      bool final)
{
	put(o, "GGUF", 4);
	put_u32(o, 3);
	put_u64(o, w->f[file].count);
	put_u64(o, kv_count(w, file));
	if (w->split)
		split_keys(w, o, file);
	if (file) {
		tensor_infos(w, o, file);
		return;
	}
	for (size_t i = 0; i < w->nkv; i++) {
		const struct weld_gguf_kv *kv = &w->kv[i];

		if (replaced(kv->key))
			continue;
		put_str(o, kv->key);
		put_u32(o, kv->type);
		put(o, kv->value, kv->len);
	}
	put_str(o, "general.file_type");
	put_u32(o, WELD_GGUF_U32);
	put_u32(o, w->file_type);
	if (w->quantised) {
		put_str(o, "general.quantization_version");
		put_u32(o, WELD_GGUF_U32);
		put_u32(o, 2);
	}
	put_str(o, "weld.version");
	put_u32(o, WELD_GGUF_STRING);
	put_str(o, WELD_VERSION);
	if (w->recipe) {
		put_str(o, "weld.recipe");
		put_u32(o, WELD_GGUF_STRING);
		put_str(o, w->recipe);
	}
	put_str(o, "weld.xxh3");
	put_u32(o, WELD_GGUF_ARRAY);
	put_u32(o, WELD_GGUF_STRING);
	put_u64(o, w->n);
	for (size_t i = 0; i < w->n; i++) {
		char hex[17] = "0000000000000000";

		if (final)
			weld_hex64(w->t[i].hash, hex);
		put_str(o, hex);
	}
	tensor_infos(w, o, 0);
}
