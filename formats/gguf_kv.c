/*
 * gguf_kv.c - the start of a GGUF file: magic, version, counts, and the
 * key/value pairs, read through a buffered cursor that bounds every read
 * by the file (the layout is in gguf.c). Each value is checked (types
 * 0-12, no nested arrays, bools 0 or 1, string and array lengths bounded
 * by the bytes left and by ggml's limits), shown as text for the model's
 * metadata, and, for the GGUF writer, kept as stored.
 */
#include "format.h"
#include "gguf_impl.h"
#include "name_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAX_STRING (1ull << 30)    /* gguf.cpp's GGUF_MAX_STRING_LENGTH */
#define GGUF_MAX_ARRAY (1ull << 30)     /* GGUF_MAX_ARRAY_ELEMENTS */
#define GGUF_MAX_KEY 65535              /* the spec's limit */
#define GGUF_MAX_KV (1u << 20)
#define GGUF_SHOWN 8                    /* array elements kept in the metadata text */

static const uint32_t vsize[WELD_GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
static const char *const vname[WELD_GGUF_VTYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
	"u64", "i64", "f64",
};

/* ---------------------------------------------------------------- reading */


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
int weld_gguf_take(struct cur *c, void *dst, uint64_t n, const char *field)
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

int weld_gguf_take_u32(struct cur *c, uint32_t *v, const char *field)
{
	unsigned char b[4];

	if (weld_gguf_take(c, b, 4, field) < 0)
		return -1;
	*v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return 0;
}

int weld_gguf_take_u64(struct cur *c, uint64_t *v, const char *field)
{
	unsigned char b[8];

	if (weld_gguf_take(c, b, 8, field) < 0)
		return -1;
	*v = 0;
	for (int i = 7; i >= 0; i--)
		*v = *v << 8 | b[i];
	return 0;
}

/* A string's length, checked against the cap and the bytes left. */
static int string_len(struct cur *c, uint64_t *len, const char *field)
{
	if (weld_gguf_take_u64(c, len, field) < 0)
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
int weld_gguf_take_string(struct cur *c, char **out, uint64_t *lenp, const char *field)
{
	uint64_t len;
	char *s;

	*out = NULL;
	if (string_len(c, &len, field) < 0)
		return -1;
	s = malloc((size_t)len + 1);
	if (!s)
		return weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
	if (weld_gguf_take(c, s, len, field) < 0) {
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


/* A scalar value of `type` into b (vsize[type] bytes), checked. */
static int scalar(struct cur *c, uint32_t type, unsigned char *b, const char *field)
{
	if (weld_gguf_take(c, b, vsize[type], field) < 0)
		return -1;
	if (type == WELD_GGUF_BOOL && b[0] > 1)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: %s: bool byte 0x%02x is not 0 or 1",
				 c->path, c->where, field, b[0]);
	return 0;
}

static int value_type(struct cur *c, uint32_t *type, const char *field)
{
	if (weld_gguf_take_u32(c, type, field) < 0)
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
	if (weld_gguf_take_u64(c, &count, "array count") < 0)
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

			if ((keep || shown) ? weld_gguf_take_string(c, &s, &len, "array element") < 0
			    : string_len(c, &len, "array element") < 0 ||
			      weld_gguf_take(c, NULL, len, "array element") < 0)
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
	if (weld_gguf_take_string(c, keyp, &len, "key") < 0)
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

		if (weld_gguf_take_string(c, &s, &len, "value") < 0)
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
int weld_gguf_parse_start(struct cur *c, struct header *h)
{
	unsigned char magic[4];
	uint64_t nt, nkv;

	snprintf(c->where, sizeof(c->where), "header");
	if (weld_gguf_take(c, magic, 4, "magic") < 0)
		return -1;
	if (memcmp(magic, "GGUF", 4) != 0)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': header: magic: not a GGUF file",
				 c->path);
	if (weld_gguf_take_u32(c, &h->version, "version") < 0)
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
	if (weld_gguf_take_u64(c, &nt, "tensor_count") < 0 || weld_gguf_take_u64(c, &nkv, "kv_count") < 0)
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
int weld_gguf_parse_kvs(struct cur *c, struct header *h, weld_model *m, struct weld_gguf_kv *kv)
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

void weld_gguf_header_free(struct header *h)
{
	for (uint64_t i = 0; i < h->nxxh3; i++)
		free(h->xxh3[i]);
	free(h->xxh3);
}

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
	if (weld_gguf_parse_start(c, &h) < 0)
		goto out;
	kv = calloc((size_t)h.n_kv + 1, sizeof(*kv));
	if (!kv) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (weld_gguf_parse_kvs(c, &h, NULL, kv) < 0) {
		weld_gguf_kvs_free(kv, (size_t)h.n_kv);
		goto out;
	}
	*kvp = kv;
	*n = (size_t)h.n_kv;
	ret = 0;
out:
	weld_gguf_header_free(&h);
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
