/*
 * gguf.c - validate a GGUF file (llama.cpp) and register its tensors.
 *
 * Byte layout (little-endian; v2 and v3 are the same, v1 and big-endian
 * files are refused):
 *   "GGUF" | u32 version | i64 tensor_count | i64 kv_count
 *   kv_count pairs:     string key | i32 value type | value
 *       string = u64 length + bytes (no NUL); array = i32 element type +
 *       u64 count + packed elements (no nested arrays)
 *   tensor_count infos: string name | u32 n_dims | i64 ne[n_dims] |
 *                       i32 ggml type | u64 offset (from the data start)
 *   zero padding to general.alignment (default 32), then the data: each
 *   tensor at the running sum of the padded sizes of those before it
 *
 * ne[0] is the contiguous dimension: shapes are reported reversed, in
 * PyTorch's order. Nothing is trusted: every count is bounded by the bytes
 * left in the file and by a fixed cap, every product is overflow-checked,
 * and each refusal names the file, the key or tensor, and the field.
 * Quantised tensors are registered with dtype F32 and their block type in
 * info.quant: the model layer decodes them block by block when they are
 * read (quant.c). A split set (NAME-00001-of-0000N.gguf, split.* keys) is
 * opened from its first file, the others found by name.
 */
#include "format.h"
#include "gguf.h"
#include "name_table.h"
#include "quant.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAX_STRING (1ull << 30)    /* gguf.cpp's GGUF_MAX_STRING_LENGTH */
#define GGUF_MAX_ARRAY (1ull << 30)     /* GGUF_MAX_ARRAY_ELEMENTS */
#define GGUF_MAX_KEY 65535              /* the spec's limit */
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_NAME 63                /* GGML_MAX_NAME - 1 */
#define GGUF_MAX_DIMS 4
#define GGUF_SHOWN 8                    /* array elements kept in the metadata text */
#define CUR_BUF (1u << 16)

static const uint32_t vsize[WELD_GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
static const char *const vname[WELD_GGUF_VTYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
	"u64", "i64", "f64",
};

/* ---------------------------------------------------------------- reading */

/* A buffered cursor over the header; every read is bounded by the file. */
struct cur {
	int fd;
	const char *path;
	uint64_t size, pos;
	uint64_t boff;          /* file offset of buf[0] */
	size_t blen;
	struct weld_error *err;
	char where[160];        /* "key 'general.name'", for messages */
	unsigned char buf[CUR_BUF];
};

static int truncated(struct cur *c, const char *field, uint64_t need)
{
	return weld_fail(c->err, WELD_ERR_FORMAT,
			 "'%s': %s: %s: truncated (%llu bytes needed at offset %llu, the file is %llu bytes)",
			 c->path, c->where, field, (unsigned long long)need,
			 (unsigned long long)c->pos, (unsigned long long)c->size);
}

static uint64_t left(const struct cur *c)
{
	return c->size - c->pos;
}

/* n bytes at the cursor into dst (NULL: skip them). */
static int take(struct cur *c, void *dst, uint64_t n, const char *field)
{
	unsigned char *d = dst;

	if (n > left(c))
		return truncated(c, field, n);
	while (n) {
		size_t got;

		if (c->pos < c->boff || c->pos >= c->boff + c->blen) {
			if (!dst && n >= CUR_BUF) {
				c->pos += n;
				return 0;
			}
			c->boff = c->pos;
			c->blen = left(c) < CUR_BUF ? (size_t)left(c) : CUR_BUF;
			if (weld_pread_full(c->fd, c->buf, c->blen, c->boff, c->path, c->err) < 0)
				return -1;
		}
		got = (size_t)(c->boff + c->blen - c->pos);
		got = got < n ? got : (size_t)n;
		if (d) {
			memcpy(d, c->buf + (c->pos - c->boff), got);
			d += got;
		}
		c->pos += got;
		n -= got;
	}
	return 0;
}

static int take_u32(struct cur *c, uint32_t *v, const char *field)
{
	unsigned char b[4];

	if (take(c, b, 4, field) < 0)
		return -1;
	*v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return 0;
}

static int take_u64(struct cur *c, uint64_t *v, const char *field)
{
	unsigned char b[8];

	if (take(c, b, 8, field) < 0)
		return -1;
	*v = 0;
	for (int i = 7; i >= 0; i--)
		*v = *v << 8 | b[i];
	return 0;
}

/* A string's length, checked against the cap and the bytes left. */
static int string_len(struct cur *c, uint64_t *len, const char *field)
{
	if (take_u64(c, len, field) < 0)
		return -1;
	if (*len > GGUF_MAX_STRING)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: %s: string length %llu is over the 1 GiB limit",
				 c->path, c->where, field, (unsigned long long)*len);
	if (*len > left(c))
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: %s: string length %llu goes beyond the end of the file (%llu bytes left)",
				 c->path, c->where, field, (unsigned long long)*len,
				 (unsigned long long)left(c));
	return 0;
}

/* A string into a new NUL-terminated buffer (caller frees). */
static int take_string(struct cur *c, char **out, uint64_t *lenp, const char *field)
{
	uint64_t len;
	char *s;

	*out = NULL;
	if (string_len(c, &len, field) < 0)
		return -1;
	s = malloc((size_t)len + 1);
	if (!s)
		return weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
	if (take(c, s, len, field) < 0) {
		free(s);
		return -1;
	}
	s[len] = 0;
	*out = s;
	if (lenp)
		*lenp = len;
	return 0;
}

/* ---------------------------------------------------------------- metadata values */

/* A growing text: the metadata's shown form of a value. */
struct text {
	char *s;
	size_t len, cap;
	bool failed;
};

static void add_text(struct text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->len + n + 1) * 2;
		char *p = realloc(t->s, cap);

		if (!p) {
			t->failed = true;
			return;
		}
		t->s = p;
		t->cap = cap;
	}
	memcpy(t->s + t->len, s, n);
	t->len += n;
	t->s[t->len] = 0;
}

static void add_str(struct text *t, const char *s)
{
	add_text(t, s, strlen(s));
}

/* The scalar of type `type` at b, as text. */
static void show_scalar(struct text *t, uint32_t type, const unsigned char *b)
{
	char s[40];
	uint64_t u = 0;
	float f;
	double d;

	for (uint32_t i = vsize[type]; i-- > 0;)
		u = u << 8 | b[i];
	switch (type) {
	case WELD_GGUF_U8: case WELD_GGUF_U16: case WELD_GGUF_U32: case WELD_GGUF_U64:
		snprintf(s, sizeof(s), "%llu", (unsigned long long)u);
		break;
	case WELD_GGUF_I8: snprintf(s, sizeof(s), "%d", (int)(int8_t)u); break;
	case WELD_GGUF_I16: snprintf(s, sizeof(s), "%d", (int)(int16_t)u); break;
	case WELD_GGUF_I32: snprintf(s, sizeof(s), "%ld", (long)(int32_t)u); break;
	case WELD_GGUF_I64: snprintf(s, sizeof(s), "%lld", (long long)(int64_t)u); break;
	case WELD_GGUF_F32: {
		uint32_t w = (uint32_t)u;

		memcpy(&f, &w, 4);
		snprintf(s, sizeof(s), "%.9g", (double)f);
		break;
	}
	case WELD_GGUF_F64: memcpy(&d, &u, 8); snprintf(s, sizeof(s), "%.17g", d); break;
	default: snprintf(s, sizeof(s), "%s", u ? "true" : "false"); break;
	}
	add_str(t, s);
}

/* What a key tells the parser beyond its text. */
struct header {
	uint32_t version, alignment;
	int64_t n_tensors, n_kv;
	bool split;                     /* split.count present */
	uint32_t split_no, split_count;
	int64_t split_tensors;
	char **xxh3;                    /* weld.xxh3 strings, in tensor order */
	uint64_t nxxh3;
};

/* A scalar value of `type` into b (vsize[type] bytes), checked. */
static int scalar(struct cur *c, uint32_t type, unsigned char *b, const char *field)
{
	if (take(c, b, vsize[type], field) < 0)
		return -1;
	if (type == WELD_GGUF_BOOL && b[0] > 1)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: %s: bool byte 0x%02x is not 0 or 1",
				 c->path, c->where, field, b[0]);
	return 0;
}

static int value_type(struct cur *c, uint32_t *type, const char *field)
{
	if (take_u32(c, type, field) < 0)
		return -1;
	if (*type >= WELD_GGUF_VTYPE_COUNT)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: %s: unknown value type %lu",
				 c->path, c->where, field, (unsigned long)*type);
	return 0;
}

/* An array's elements: counted, bounded, shown (the first GGUF_SHOWN). The
 * string elements of weld.xxh3 are kept in h. */
static int array_value(struct cur *c, struct text *t, bool keep, struct header *h)
{
	uint32_t et;
	uint64_t count, need;
	unsigned char b[8];

	if (value_type(c, &et, "array element type") < 0)
		return -1;
	if (et == WELD_GGUF_ARRAY)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: array element type: nested arrays are not supported",
				 c->path, c->where);
	if (take_u64(c, &count, "array count") < 0)
		return -1;
	need = et == WELD_GGUF_STRING ? 8 : vsize[et];
	if (count > GGUF_MAX_ARRAY || count > left(c) / need)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: array count %llu of %s %s", c->path, c->where,
				 (unsigned long long)count, vname[et], count > GGUF_MAX_ARRAY
				 ? "is over the limit of 2^30 elements" : "goes beyond the end of the file");
	if (keep && et == WELD_GGUF_STRING) {
		h->xxh3 = calloc(count ? count : 1, sizeof(*h->xxh3));
		if (!h->xxh3)
			return weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
		h->nxxh3 = count;
	}
	add_str(t, "[");
	for (uint64_t i = 0; i < count; i++) {
		bool shown = i < GGUF_SHOWN;

		if (shown && i)
			add_str(t, ", ");
		if (et == WELD_GGUF_STRING) {
			char *s = NULL;
			uint64_t len;

			if ((keep || shown) ? take_string(c, &s, &len, "array element") < 0
			    : string_len(c, &len, "array element") < 0 ||
			      take(c, NULL, len, "array element") < 0)
				return -1;
			if (shown) {
				add_str(t, "\"");
				add_text(t, s, strlen(s));
				add_str(t, "\"");
			}
			if (keep)
				h->xxh3[i] = s;
			else
				free(s);
		} else {
			if (scalar(c, et, b, "array element") < 0)
				return -1;
			if (shown)
				show_scalar(t, et, b);
		}
	}
	if (count > GGUF_SHOWN) {
		char s[64];

		snprintf(s, sizeof(s), ", ... (%llu %s)", (unsigned long long)count, vname[et]);
		add_str(t, s);
	}
	add_str(t, "]");
	return 0;
}

/* Keys weld reads: their type must be exactly this. */
static int key_type(struct cur *c, const char *key, uint32_t type, uint32_t want)
{
	if (type == want)
		return 0;
	return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': key '%s': type %s, expected %s",
			 c->path, key, vname[type], vname[want]);
}

static uint64_t le(const unsigned char *b, int n)
{
	uint64_t u = 0;

	while (n-- > 0)
		u = u << 8 | b[n];
	return u;
}

/* The keys the reader acts on: general.alignment and split.*, each of its
 * exact type (b holds a scalar's bytes, when the type is right). */
static int known_key(struct cur *c, const char *key, uint32_t type, const unsigned char *b,
		     struct header *h)
{
	if (strcmp(key, "general.alignment") == 0) {
		if (key_type(c, key, type, WELD_GGUF_U32) < 0)
			return -1;
		h->alignment = (uint32_t)le(b, 4);
		if (!h->alignment || (h->alignment & (h->alignment - 1)))
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': key 'general.alignment': %lu is not a power of two",
					 c->path, (unsigned long)h->alignment);
	} else if (strcmp(key, "split.no") == 0) {
		if (key_type(c, key, type, WELD_GGUF_U16) < 0)
			return -1;
		h->split_no = (uint32_t)le(b, 2);
	} else if (strcmp(key, "split.count") == 0) {
		if (key_type(c, key, type, WELD_GGUF_U16) < 0)
			return -1;
		h->split = true;
		h->split_count = (uint32_t)le(b, 2);
	} else if (strcmp(key, "split.tensors.count") == 0) {
		if (key_type(c, key, type, WELD_GGUF_I32) < 0)
			return -1;
		h->split_tensors = (int32_t)(uint32_t)le(b, 4);
	}
	return 0;
}

/* A key: non-empty, printable ASCII, at most GGUF_MAX_KEY bytes. */
static int check_key(struct cur *c, const char *key, uint64_t len, uint64_t i)
{
	if (!len)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': key %llu: empty key", c->path,
				 (unsigned long long)i);
	if (len > GGUF_MAX_KEY)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key %llu: %llu bytes long, over the %u of the GGUF spec",
				 c->path, (unsigned long long)i, (unsigned long long)len, GGUF_MAX_KEY);
	for (uint64_t k = 0; k < len; k++)
		if (key[k] < 0x20 || key[k] > 0x7e)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': key %llu ('%.60s'): byte 0x%02x at %llu is not printable ASCII",
					 c->path, (unsigned long long)i, key, (unsigned char)key[k],
					 (unsigned long long)k);
	return 0;
}

/*
 * One key/value pair: the key (checked, unique), the value (checked and
 * shown as text into the model's metadata when m is not NULL; its stored
 * bytes into *kv when kv is not NULL).
 */
static int parse_kv(struct cur *c, uint64_t i, struct weld_name_table *keys, char **keyp,
		    struct header *h, weld_model *m, struct weld_gguf_kv *kv)
{
	struct text t = { 0 };
	unsigned char b[8];
	uint64_t len, vstart;
	uint32_t type;
	char *key;
	int r, ret = -1;

	snprintf(c->where, sizeof(c->where), "key %llu", (unsigned long long)i);
	if (take_string(c, keyp, &len, "key") < 0)
		return -1;
	key = *keyp;
	if (check_key(c, key, len, i) < 0)
		return -1;
	r = weld_name_table_add(keys, key, (size_t)i, NULL);
	if (r != 0)
		return r < 0 ? weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path)
			     : weld_fail(c->err, WELD_ERR_FORMAT, "'%s': key '%s': duplicate key",
					 c->path, key);
	snprintf(c->where, sizeof(c->where), "key '%.120s'", key);
	if (value_type(c, &type, "value type") < 0)
		return -1;
	vstart = c->pos;
	if (type == WELD_GGUF_ARRAY) {
		if (array_value(c, &t, strcmp(key, "weld.xxh3") == 0 && !h->xxh3, h) < 0)
			goto out;
	} else if (type == WELD_GGUF_STRING) {
		char *s;

		if (take_string(c, &s, &len, "value") < 0)
			goto out;
		add_text(&t, s, strlen(s));
		free(s);
	} else {
		if (scalar(c, type, b, "value") < 0)
			goto out;
		show_scalar(&t, type, b);
	}
	if (known_key(c, key, type, b, h) < 0)
		goto out;
	if (t.failed || !t.s) {
		add_str(&t, "");
		if (t.failed) {
			weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
			goto out;
		}
	}
	if (m && weld_model_set_metadata(m, key, t.s, c->err) < 0)
		goto out;
	if (kv) {
		kv->type = type;
		kv->len = (size_t)(c->pos - vstart);
		kv->value = malloc(kv->len + 1);
		if (!kv->value || weld_pread_full(c->fd, kv->value, kv->len, vstart, c->path,
						  c->err) < 0) {
			if (!kv->value)
				weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
			goto out;
		}
	}
	ret = 0;
out:
	free(t.s);
	return ret;
}

/* Magic, version and the two counts. */
static int parse_start(struct cur *c, struct header *h)
{
	unsigned char magic[4];
	uint64_t nt, nkv;

	snprintf(c->where, sizeof(c->where), "header");
	if (take(c, magic, 4, "magic") < 0)
		return -1;
	if (memcmp(magic, "GGUF", 4) != 0)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': header: magic: not a GGUF file",
				 c->path);
	if (take_u32(c, &h->version, "version") < 0)
		return -1;
	if (h->version && !(h->version & 0xffff))
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: version: 0x%08lx reads as a big-endian GGUF file, which weld does not read",
				 c->path, (unsigned long)h->version);
	if (h->version == 1)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: version: GGUF v1 is not supported (v2 and v3 are; llama.cpp refuses v1 too)",
				 c->path);
	if (h->version != 2 && h->version != 3)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: version: %lu is not a GGUF version weld reads (2 or 3)",
				 c->path, (unsigned long)h->version);
	if (take_u64(c, &nt, "tensor_count") < 0 || take_u64(c, &nkv, "kv_count") < 0)
		return -1;
	/* a KV takes at least 13 bytes, a tensor info 33 */
	if (nt > WELD_MAX_TENSORS_PER_FILE || nt > left(c) / 33)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: tensor_count: %llu %s", c->path, (unsigned long long)nt,
				 nt > WELD_MAX_TENSORS_PER_FILE ? "is over the limit of a file"
				 : "tensor infos cannot fit in the file");
	if (nkv > GGUF_MAX_KV || nkv > left(c) / 13)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: kv_count: %llu %s", c->path, (unsigned long long)nkv,
				 nkv > GGUF_MAX_KV ? "is over the limit of 2^20 keys"
				 : "key/value pairs cannot fit in the file");
	h->n_tensors = (int64_t)nt;
	h->n_kv = (int64_t)nkv;
	h->alignment = WELD_GGUF_ALIGNMENT;
	return 0;
}

/* Every key/value pair (see parse_kv); keys[] gets the keys (caller frees). */
static int parse_kvs(struct cur *c, struct header *h, weld_model *m, struct weld_gguf_kv *kv)
{
	struct weld_name_table keys = { 0 };
	char **names = calloc((size_t)h->n_kv + 1, sizeof(*names));
	int ret = -1;

	if (!names || weld_name_table_init(&keys, (size_t)h->n_kv) < 0) {
		weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
		goto out;
	}
	for (int64_t i = 0; i < h->n_kv; i++) {
		if (parse_kv(c, (uint64_t)i, &keys, &names[i], h, m, kv ? &kv[i] : NULL) < 0)
			goto out;
		if (kv) {
			kv[i].key = names[i];
			names[i] = NULL;
		}
	}
	ret = 0;
out:
	weld_name_table_free(&keys);
	for (int64_t i = 0; names && i < h->n_kv; i++)
		free(names[i]);
	free(names);
	return ret;
}

/* ---------------------------------------------------------------- tensor infos */

struct info {
	struct weld_tensor_info t;
	char *name;
	uint32_t type;
	uint64_t rel;           /* offset from the data start */
};

/* The weld dtype of a ggml type read as is (not in blocks). */
static int plain_dtype(uint32_t type, enum weld_dtype *dt)
{
	static const struct { uint32_t g; enum weld_dtype d; } map[] = {
		{ 0, WELD_F32 }, { 1, WELD_F16 }, { 30, WELD_BF16 }, { 24, WELD_I8 },
		{ 25, WELD_I16 }, { 26, WELD_I32 }, { 27, WELD_I64 }, { 28, WELD_F64 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].g == type) {
			*dt = map[i].d;
			return 0;
		}
	return -1;
}

int weld_gguf_tensor_type(const struct weld_tensor_info *t)
{
	if (t->quant)
		return t->quant;
	for (uint32_t g = 0; g < WELD_GGML_TYPE_COUNT; g++) {
		enum weld_dtype d;

		if (plain_dtype(g, &d) == 0 && d == t->dtype)
			return (int)g;
	}
	return -1;
}

/* The type: known, decoded by weld, and the shape a whole number of blocks. */
static int check_type(struct cur *c, struct info *e, const uint64_t ne[GGUF_MAX_DIMS],
		      uint64_t nelem)
{
	const struct weld_ggml_type_info *ti = weld_ggml_type(e->type);
	enum weld_dtype dt = WELD_F32;
	uint64_t nb;

	if (!ti)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: type: unknown ggml type %lu",
				 c->path, c->where, (unsigned long)e->type);
	if (plain_dtype(e->type, &dt) < 0 && !ti->decode)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: type: %s is not supported (weld reads F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K)",
				 c->path, c->where, ti->name);
	if (ne[0] % ti->block)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: ne[0]: %llu is not a multiple of the %s block of %lu",
				 c->path, c->where, (unsigned long long)ne[0], ti->name,
				 (unsigned long)ti->block);
	if (!weld_mul_u64(nelem / ti->block, ti->bytes, &nb))
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: byte size overflows", c->path,
				 c->where);
	e->t.dtype = dt;
	e->t.quant = ti->block > 1 ? (uint8_t)e->type : 0;
	e->t.nbytes = nb;
	return 0;
}

static int parse_info(struct cur *c, uint64_t i, struct info *e, struct weld_name_table *names)
{
	uint64_t len, ne[GGUF_MAX_DIMS] = { 1, 1, 1, 1 }, nelem = 1;
	uint32_t nd;
	int r;

	snprintf(c->where, sizeof(c->where), "tensor %llu", (unsigned long long)i);
	if (take_string(c, &e->name, &len, "name") < 0)
		return -1;
	if (!len || len > GGUF_MAX_NAME || strlen(e->name) != len)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor %llu: name: %s", c->path,
				 (unsigned long long)i, !len ? "empty"
				 : strlen(e->name) != len ? "contains a NUL byte"
				 : "longer than the 63 bytes ggml allows");
	snprintf(c->where, sizeof(c->where), "tensor '%s'", e->name);
	r = weld_name_table_add(names, e->name, (size_t)i, NULL);
	if (r != 0)
		return r < 0 ? weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path)
			     : weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor '%s': duplicate name",
					 c->path, e->name);
	if (take_u32(c, &nd, "n_dims") < 0)
		return -1;
	if (nd < 1 || nd > GGUF_MAX_DIMS)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': n_dims: %lu, expected 1 to 4", c->path, e->name,
				 (unsigned long)nd);
	for (uint32_t d = 0; d < nd; d++) {
		char field[16];

		snprintf(field, sizeof(field), "ne[%u]", d);
		if (take_u64(c, &ne[d], field) < 0)
			return -1;
		if (ne[d] > INT64_MAX)
			return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor '%s': %s: negative",
					 c->path, e->name, field);
		if (!weld_mul_u64(nelem, ne[d], &nelem) || nelem > INT64_MAX)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': %s: element count overflows", c->path,
					 e->name, field);
	}
	if (take_u32(c, &e->type, "type") < 0 || check_type(c, e, ne, nelem) < 0 ||
	    take_u64(c, &e->rel, "offset") < 0)
		return -1;
	e->t.ndim = (int)nd;
	for (uint32_t d = 0; d < nd; d++)
		e->t.shape[d] = (int64_t)ne[nd - 1 - d];
	e->t.nelem = nelem;
	e->t.contiguous = true;
	weld_contiguous_strides(&e->t);
	return 0;
}

/* Offsets are the running sum of padded sizes (as gguf.cpp requires), and
 * every tensor lies inside the file. */
static int check_offsets(struct cur *c, struct info *e, size_t n, uint64_t data_start,
			 uint32_t align)
{
	uint64_t pos = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t end, pad;

		if (e[i].rel != pos)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': offset: %llu, expected %llu (%s)", c->path,
					 e[i].name, (unsigned long long)e[i].rel, (unsigned long long)pos,
					 e[i].rel % align ? "not aligned"
					 : e[i].rel < pos ? "overlaps the tensor before it"
					 : "a gap before it");
		if (!weld_add_u64(data_start, pos, &e[i].t.offset) ||
		    !weld_add_u64(e[i].t.offset, e[i].t.nbytes, &end) || end > c->size)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': data: %llu bytes at offset %llu go beyond the end of the file (%llu bytes)",
					 c->path, e[i].name, (unsigned long long)e[i].t.nbytes,
					 (unsigned long long)e[i].t.offset, (unsigned long long)c->size);
		pad = (e[i].t.nbytes + align - 1) / align * align;
		if (pad < e[i].t.nbytes || !weld_add_u64(pos, pad, &pos))
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': offset: the data size overflows", c->path,
					 e[i].name);
	}
	return 0;
}

/* ---------------------------------------------------------------- the file */

static void header_free(struct header *h)
{
	for (uint64_t i = 0; i < h->nxxh3; i++)
		free(h->xxh3[i]);
	free(h->xxh3);
}

/* weld.xxh3 (one hex string per tensor, in file order) as the weld_xxh3
 * object weld_verify() reads. */
static int record_hashes(weld_model *m, struct cur *c, const struct header *h,
			 const struct info *e, size_t n)
{
	cJSON *o;
	char *text = NULL;
	int r;

	if (!h->xxh3)
		return 0;
	if (h->nxxh3 != n)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'weld.xxh3': %llu checksums for %zu tensors", c->path,
				 (unsigned long long)h->nxxh3, n);
	o = cJSON_CreateObject();
	for (size_t i = 0; o && i < n; i++)
		if (!cJSON_AddStringToObject(o, e[i].name, h->xxh3[i])) {
			cJSON_Delete(o);
			o = NULL;
		}
	text = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	r = !text ? weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path)
		  : weld_model_set_metadata(m, "weld_xxh3", text, c->err);
	free(text);
	return r;
}

static int parse_infos(struct cur *c, const struct header *h, struct info *e)
{
	struct weld_name_table names = { 0 };
	int ret = -1;

	if (weld_name_table_init(&names, (size_t)h->n_tensors) < 0)
		return weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
	for (int64_t i = 0; i < h->n_tensors; i++)
		if (parse_info(c, (uint64_t)i, &e[i], &names) < 0)
			goto out;
	ret = 0;
out:
	weld_name_table_free(&names);
	return ret;
}

static int parse_split(weld_model *m, struct cur *c, const struct header *h);

/* One file of a model: split_no is the split number it must have, or -1
 * for a file opened by the user. */
static int parse_one(weld_model *m, int file, int split_no, struct header *h,
		     struct weld_error *err)
{
	struct cur *c = malloc(sizeof(*c));
	struct info *e = NULL;
	uint64_t data_start;
	int ret = -1;

	memset(h, 0, sizeof(*h));
	if (!c)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	c->fd = weld_model_file_fd(m, file);
	c->path = weld_model_file_path(m, (size_t)file);
	c->size = weld_model_file_size(m, file);
	c->pos = c->boff = 0;
	c->blen = 0;
	c->err = err;
	if (parse_start(c, h) < 0 || parse_kvs(c, h, m, NULL) < 0)
		goto out;
	e = calloc((size_t)h->n_tensors + 1, sizeof(*e));
	if (!e) {
		weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
		goto out;
	}
	if (parse_infos(c, h, e) < 0)
		goto out;
	data_start = (c->pos + h->alignment - 1) / h->alignment * h->alignment;
	if (h->n_tensors && data_start > c->size) {
		snprintf(c->where, sizeof(c->where), "header");
		weld_fail(err, WELD_ERR_FORMAT,
			  "'%s': data: starts at %llu, beyond the end of the file (%llu bytes)",
			  c->path, (unsigned long long)data_start, (unsigned long long)c->size);
		goto out;
	}
	if (check_offsets(c, e, (size_t)h->n_tensors, data_start, h->alignment) < 0 ||
	    record_hashes(m, c, h, e, (size_t)h->n_tensors) < 0)
		goto out;
	if (split_no >= 0 && (!h->split || (int)h->split_no != split_no)) {
		if (h->split)
			weld_fail(err, WELD_ERR_FORMAT, "'%s': key 'split.no': %lu, expected %d",
				  c->path, (unsigned long)h->split_no, split_no);
		else
			weld_fail(err, WELD_ERR_FORMAT, "'%s': key 'split.count': missing, expected "
				  "a file of a split set", c->path);
		goto out;
	}
	for (int64_t i = 0; i < h->n_tensors; i++) {
		e[i].t.name = e[i].name;
		e[i].t.file = file;
		if (weld_model_add_tensor(m, &e[i].t, err) < 0)
			goto out;
	}
	ret = split_no < 0 && h->split && h->split_count > 1 ? parse_split(m, c, h) : 0;
out:
	for (int64_t i = 0; e && i < h->n_tensors; i++)
		free(e[i].name);
	free(e);
	free(c);
	return ret;
}

/* ---------------------------------------------------------------- split sets */

/* The prefix of a first split file "PREFIX-00001-of-0000N.gguf", or -1. */
static int split_prefix(const char *path, uint32_t count, size_t *plen)
{
	char tail[40];
	size_t n = strlen(path), t;

	t = (size_t)snprintf(tail, sizeof(tail), "-%05u-of-%05u.gguf", 1u, (unsigned)count);
	if (n < t || strcmp(path + n - t, tail) != 0)
		return -1;
	*plen = n - t;
	return 0;
}

static int parse_split(weld_model *m, struct cur *c, const struct header *h)
{
	const char *first = c->path;
	uint64_t total = (uint64_t)h->n_tensors;
	size_t plen;

	if (h->split_no != 0)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.no': %lu: this is not the first file of its split set; give the file named -00001-of-%05lu.gguf",
				 first, (unsigned long)h->split_no, (unsigned long)h->split_count);
	if (split_prefix(first, h->split_count, &plen) < 0)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.count': %lu files, but the name does not end in -00001-of-%05lu.gguf",
				 first, (unsigned long)h->split_count, (unsigned long)h->split_count);
	for (uint32_t k = 1; k < h->split_count; k++) {
		struct header hk;
		char *p = malloc(plen + 40);
		int file, r;

		if (!p)
			return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		memcpy(p, first, plen);
		snprintf(p + plen, 40, "-%05u-of-%05u.gguf", k + 1, (unsigned)h->split_count);
		file = weld_model_add_file(m, p, c->err);
		free(p);
		if (file < 0)
			return -1;
		r = parse_one(m, file, (int)k, &hk, c->err);
		if (!r && (hk.split_count != h->split_count))
			r = weld_fail(c->err, WELD_ERR_FORMAT,
				      "'%s': key 'split.count': %lu, but the first file says %lu",
				      weld_model_file_path(m, (size_t)file),
				      (unsigned long)hk.split_count, (unsigned long)h->split_count);
		total += (uint64_t)hk.n_tensors;
		header_free(&hk);
		if (r < 0)
			return -1;
	}
	if (h->split_tensors >= 0 && total != (uint64_t)h->split_tensors)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.tensors.count': %lld, but the %lu files hold %llu tensors",
				 first, (long long)h->split_tensors, (unsigned long)h->split_count,
				 (unsigned long long)total);
	return 0;
}

static int gguf_parse(weld_model *m, int file, struct weld_error *err)
{
	struct header h;
	int r = parse_one(m, file, -1, &h, err);

	header_free(&h);
	return r;
}

static bool gguf_probe(const unsigned char *head, size_t n)
{
	return n >= 4 && memcmp(head, "GGUF", 4) == 0;
}

const struct weld_format weld_gguf_format = {
	.name = "gguf",
	.probe = gguf_probe,
	.parse = gguf_parse,
	.damaged = NULL,
};

/* ---------------------------------------------------------------- for the writer */

int weld_gguf_read_kvs(const char *path, struct weld_gguf_kv **kvp, size_t *n,
		       struct weld_error *err)
{
	struct cur *c = malloc(sizeof(*c));
	struct weld_gguf_kv *kv = NULL;
	struct header h = { 0 };
	uint64_t size;
	int fd = -1, ret = -1;

	*kvp = NULL;
	*n = 0;
	if (!c)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	fd = weld_open_regular(path, &size, err);
	if (fd < 0)
		goto out;
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->path = path;
	c->size = size;
	c->err = err;
	if (parse_start(c, &h) < 0)
		goto out;
	kv = calloc((size_t)h.n_kv + 1, sizeof(*kv));
	if (!kv) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (parse_kvs(c, &h, NULL, kv) < 0) {
		weld_gguf_kvs_free(kv, (size_t)h.n_kv);
		goto out;
	}
	*kvp = kv;
	*n = (size_t)h.n_kv;
	ret = 0;
out:
	header_free(&h);
	if (fd >= 0)
		close(fd);
	free(c);
	return ret;
}

void weld_gguf_kvs_free(struct weld_gguf_kv *kv, size_t n)
{
	for (size_t i = 0; kv && i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}
