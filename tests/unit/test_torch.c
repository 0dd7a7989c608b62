/*
 * test_torch.c - the PyTorch zip reader: the pickle interpreter and the
 * state-dict flattening on hand-built byte strings, the zip walker and
 * libzip's reading on hand-built and patched archives, and whole
 * checkpoints written by torch.save() (tests/data/torch, made by
 * make_fixtures.py; views_deflated.bin re-packed by make_deflated.py) read
 * through weld_model_open() and compared value by value with what torch
 * printed into the .json beside each file. Hostile inputs must fail with a
 * message naming what is wrong; damage that nothing reads must not matter.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "weld.h"
#include "format.h"
#include "state_dict.h"
#include "torch_zip.h"
#include "zip_dir.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- byte builder */

struct buf {
	unsigned char *b;
	size_t n, cap;
};

static void put(struct buf *p, const void *d, size_t n)
{
	if (p->n + n > p->cap) {
		p->cap = (p->n + n) * 2 + 64;
		p->b = realloc(p->b, p->cap);
		assert_non_null(p->b);
	}
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

static void put_le(struct buf *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++) {
		unsigned char c = (unsigned char)(v >> (8 * i));

		put(p, &c, 1);
	}
}

static void op(struct buf *p, int code)
{
	put_le(p, (uint64_t)code, 1);
}

/* ---------------------------------------------------------------- pickle builder */

static void pk_str(struct buf *p, const char *s)
{
	op(p, 'X');
	put_le(p, strlen(s), 4);
	put(p, s, strlen(s));
}

/* The shortest encoding, as the pickler chooses it. */
static void pk_int(struct buf *p, int64_t v)
{
	if (v >= 0 && v < 256) {
		op(p, 'K');
		put_le(p, (uint64_t)v, 1);
	} else if (v >= 0 && v < 65536) {
		op(p, 'M');
		put_le(p, (uint64_t)v, 2);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		op(p, 'J');
		put_le(p, (uint64_t)v, 4);
	} else {
		op(p, 0x8a);
		put_le(p, 8, 1);
		put_le(p, (uint64_t)v, 8);
	}
}

static void pk_global(struct buf *p, const char *mod, const char *name)
{
	op(p, 'c');
	put(p, mod, strlen(mod));
	put(p, "\n", 1);
	put(p, name, strlen(name));
	put(p, "\n", 1);
}

static void pk_ordered_dict(struct buf *p)
{
	pk_global(p, "collections", "OrderedDict");
	op(p, ')');
	op(p, 'R');
}

struct tspec {
	const char *name;
	const char *key;        /* storage key */
	const char *cls;        /* storage class, e.g. "FloatStorage" */
	int64_t numel;          /* of the storage */
	int64_t offset;
	int ndim;
	int64_t shape[10], stride[10];
	const char *v3dtype;    /* _rebuild_tensor_v3 with this dtype */
};

/* One tensor rebuild call, as torch.save() writes it. */
static void pk_tensor(struct buf *p, const struct tspec *t)
{
	pk_global(p, "torch._utils", t->v3dtype ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
	op(p, '(');
	op(p, '(');
	pk_str(p, "storage");
	pk_global(p, "torch", t->cls);
	pk_str(p, t->key);
	pk_str(p, "cpu");
	pk_int(p, t->numel);
	op(p, 't');
	op(p, 'Q');
	pk_int(p, t->offset);
	op(p, '(');
	for (int k = 0; k < t->ndim; k++)
		pk_int(p, t->shape[k]);
	op(p, 't');
	op(p, '(');
	for (int k = 0; k < t->ndim; k++)
		pk_int(p, t->stride[k]);
	op(p, 't');
	op(p, 0x89);
	pk_ordered_dict(p);
	if (t->v3dtype)
		pk_global(p, "torch", t->v3dtype);
	op(p, 't');
	op(p, 'R');
}

/* A protocol-2 OrderedDict state dict of n tensors. */
static struct buf pk_state_dict(const struct tspec *t, size_t n)
{
	struct buf p = { 0 };

	op(&p, 0x80);
	op(&p, 2);
	pk_ordered_dict(&p);
	op(&p, '(');
	for (size_t i = 0; i < n; i++) {
		pk_str(&p, t[i].name);
		pk_tensor(&p, &t[i]);
	}
	op(&p, 'u');
	op(&p, '.');
	return p;
}

static const struct tspec plain = {
	"w", "0", "FloatStorage", 12, 0, 2, { 3, 4 }, { 4, 1 }, NULL
};

/* Run a pickle that must fail; check the status and a piece of the message. */
static void expect_pickle_error(const void *pkl, size_t len, const char *needle)
{
	struct weld_state_dict r;
	struct weld_error err = { 0 };

	if (weld_state_dict_load(pkl, len, &r, &err) == 0) {
		weld_state_dict_free(&r);
		fail_msg("the pickle loaded; expected '%s'", needle);
	}
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	assert_int_equal(err.status, WELD_ERR_FORMAT);
	assert_int_equal(r.ntensors, 0);
	assert_null(r.tensors);
}

/* Run a pickle that must load. */
static void load_ok(const struct buf *p, struct weld_state_dict *r)
{
	struct weld_error err = { 0 };

	if (weld_state_dict_load(p->b, p->n, r, &err) != 0)
		fail_msg("pickle refused: %s", err.msg);
}

static void expect_spec_error(const struct tspec *t, size_t n, const char *needle)
{
	struct buf p = pk_state_dict(t, n);

	expect_pickle_error(p.b, p.n, needle);
	free(p.b);
}

/* ---------------------------------------------------------------- pickle: accepted */

static void test_pickle_plain_tensor(void **state)
{
	struct buf p = pk_state_dict(&plain, 1);
	struct weld_state_dict r;
	const struct weld_sd_tensor *t;

	(void)state;
	load_ok(&p, &r);
	assert_int_equal(r.ntensors, 1);
	t = &r.tensors[0];
	assert_string_equal(t->name, "w");
	assert_int_equal(t->dtype, WELD_F32);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[0], 3);
	assert_int_equal(t->shape[1], 4);
	assert_int_equal(t->stride[0], 4);
	assert_int_equal(t->stride[1], 1);
	assert_int_equal(t->nelem, 12);
	assert_int_equal(t->nbytes, 48);
	assert_int_equal(t->byte_offset, 0);
	assert_true(t->contiguous);
	assert_int_equal(r.nstorages, 1);
	assert_string_equal(r.storages[t->storage].key, "0");
	assert_int_equal(r.storages[t->storage].nbytes, 48);
	assert_true(r.storages[t->storage].used);
	weld_state_dict_free(&r);
	weld_state_dict_free(NULL);
	free(p.b);
}

static void test_pickle_views_and_shared_storage(void **state)
{
	const struct tspec t[] = {
		{ "t", "5", "HalfStorage", 12, 0, 2, { 4, 3 }, { 1, 4 }, NULL },
		{ "row", "5", "HalfStorage", 12, 4, 1, { 4 }, { 1 }, NULL },
		{ "scalar", "7", "LongStorage", 1, 0, 0, { 0 }, { 0 }, NULL },
		{ "bcast", "8", "BFloat16Storage", 2, 0, 2, { 2, 3 }, { 1, 0 }, NULL },
		{ "ones", "9", "DoubleStorage", 4, 1, 3, { 1, 3, 1 }, { 99, 1, 7 }, NULL },
		{ "none", "5", "HalfStorage", 12, 12, 2, { 0, 5 }, { 5, 1 }, NULL },
	};
	struct buf p = pk_state_dict(t, 6);
	struct weld_state_dict r;

	(void)state;
	load_ok(&p, &r);
	assert_int_equal(r.ntensors, 6);
	assert_int_equal(r.nstorages, 4);  /* '5' shared by three tensors */
	assert_false(r.tensors[0].contiguous);
	assert_int_equal(r.tensors[0].dtype, WELD_F16);
	assert_int_equal(r.tensors[1].byte_offset, 8);
	assert_true(r.tensors[1].contiguous);
	assert_int_equal(r.tensors[1].storage, r.tensors[0].storage);
	assert_int_equal(r.tensors[2].ndim, 0);
	assert_int_equal(r.tensors[2].nelem, 1);
	assert_int_equal(r.tensors[2].dtype, WELD_I64);
	assert_true(r.tensors[2].contiguous);
	assert_false(r.tensors[3].contiguous);
	assert_int_equal(r.tensors[3].dtype, WELD_BF16);
	/* size-1 dimensions do not break contiguity, whatever their stride */
	assert_true(r.tensors[4].contiguous);
	assert_int_equal(r.tensors[4].byte_offset, 8);
	assert_int_equal(r.tensors[5].nelem, 0);
	assert_int_equal(r.tensors[5].byte_offset, 24);
	weld_state_dict_free(&r);
	free(p.b);
}

/*
 * 1100 tensors: SETITEMS batches of 1000 and memo indices past 255
 * (LONG_BINPUT/LONG_BINGET), as torch writes for large models.
 */
static void test_pickle_large_dict_long_memo(void **state)
{
	struct buf p = { 0 };
	struct weld_state_dict r;
	uint32_t memo = 0;

	(void)state;
	op(&p, 0x80);
	op(&p, 2);
	pk_ordered_dict(&p);
	op(&p, 'q');
	put_le(&p, memo++, 1);          /* memo 0 = the dict */
	pk_global(&p, "torch", "FloatStorage");
	op(&p, 'q');
	put_le(&p, memo++, 1);          /* memo 1 = FloatStorage */
	op(&p, '0');
	for (int i = 0; i < 1100; i++) {
		char name[32], key[16];

		if (i % 1000 == 0) {
			if (i)
				op(&p, 'u');
			op(&p, '(');
		}
		snprintf(name, sizeof(name), "layers.%d.weight", i);
		snprintf(key, sizeof(key), "%d", i % 7);
		pk_str(&p, name);
		op(&p, 'r');
		put_le(&p, memo++, 4);
		pk_global(&p, "torch._utils", "_rebuild_tensor_v2");
		op(&p, '(');
		op(&p, '(');
		pk_str(&p, "storage");
		op(&p, 'j');
		put_le(&p, 1, 4);
		pk_str(&p, key);
		pk_str(&p, "cpu");
		pk_int(&p, 100000);
		op(&p, 't');
		op(&p, 'Q');
		pk_int(&p, i);
		pk_int(&p, 70000 + i);
		op(&p, 0x85);
		pk_int(&p, 1);
		op(&p, 0x85);
		op(&p, 0x88);
		pk_ordered_dict(&p);
		op(&p, 't');
		op(&p, 'R');
		op(&p, 'r');
		put_le(&p, memo++, 4);
	}
	op(&p, 'u');
	op(&p, '.');
	load_ok(&p, &r);
	assert_int_equal(r.ntensors, 1100);
	assert_int_equal(r.nstorages, 7);
	assert_string_equal(r.tensors[1099].name, "layers.1099.weight");
	assert_int_equal(r.tensors[1099].shape[0], 71099);
	assert_int_equal(r.tensors[1099].byte_offset, 1099 * 4);
	assert_string_equal(r.storages[r.tensors[1099].storage].key, "0");
	weld_state_dict_free(&r);
	free(p.b);
}

static void test_pickle_rebuild_v3_and_untyped(void **state)
{
	const struct tspec t[] = {
		{ "fp8", "0", "UntypedStorage", 6, 0, 2, { 2, 3 }, { 3, 1 }, "float8_e4m3fn" },
		{ "e5", "1", "UntypedStorage", 4, 1, 1, { 3 }, { 1 }, "float8_e5m2" },
		{ "u16", "2", "UntypedStorage", 8, 1, 1, { 3 }, { 1 }, "uint16" },
		{ "typed", "3", "FloatStorage", 2, 0, 1, { 2 }, { 1 }, "float32" },
	};
	struct buf p = pk_state_dict(t, 4);
	struct weld_state_dict r;

	(void)state;
	load_ok(&p, &r);
	assert_int_equal(r.ntensors, 4);
	assert_int_equal(r.tensors[0].dtype, WELD_F8_E4M3);
	assert_int_equal(r.tensors[0].nbytes, 6);
	assert_int_equal(r.tensors[1].dtype, WELD_F8_E5M2);
	assert_int_equal(r.tensors[2].dtype, WELD_U16);
	assert_int_equal(r.tensors[2].byte_offset, 2);
	assert_int_equal(r.tensors[3].dtype, WELD_F32);
	weld_state_dict_free(&r);
	free(p.b);

	/* an untyped storage of 7 bytes holds three u16 elements, not four */
	{
		struct tspec bad = t[2];

		bad.numel = 7;
		expect_spec_error(&bad, 1, "view reaches element 3 of storage '2', which holds 3");
		bad = t[3];
		bad.v3dtype = "float16";
		expect_spec_error(&bad, 1, "dtype torch.float16 does not match storage '3'");
		bad.v3dtype = "complex64";
		expect_spec_error(&bad, 1, "global 'torch.complex64' is not allowed");
	}
}

/* Large sizes come as LONG1: a 2^33-element storage is fine to describe. */
static void test_pickle_long1_sizes(void **state)
{
	const struct tspec t = {
		"big", "0", "ByteStorage", INT64_C(1) << 33, INT64_C(1) << 32, 2,
		{ INT64_C(1) << 16, INT64_C(1) << 16 }, { INT64_C(1) << 16, 1 }, NULL
	};
	struct buf p = pk_state_dict(&t, 1);
	struct weld_state_dict r;

	(void)state;
	load_ok(&p, &r);
	assert_int_equal(r.tensors[0].nelem, UINT64_C(1) << 32);
	assert_int_equal(r.tensors[0].byte_offset, UINT64_C(1) << 32);
	weld_state_dict_free(&r);
	free(p.b);
}

/* A training checkpoint: the weights sit under 'state_dict' or 'model'. */
static void test_pickle_wrapper_and_nesting(void **state)
{
	static const char *const wrappers[] = { "state_dict", "model", "weights" };

	(void)state;
	for (int w = 0; w < 3; w++) {
		struct buf p = { 0 };
		struct weld_state_dict r;

		op(&p, 0x80);
		op(&p, 2);
		op(&p, '}');
		op(&p, '(');
		pk_str(&p, "epoch");
		pk_int(&p, 3);
		pk_str(&p, "optimizer");
		op(&p, '}');
		pk_int(&p, 0);                  /* int keys are fine outside the weights */
		op(&p, ']');
		pk_int(&p, 1);
		op(&p, 'a');
		op(&p, 's');
		pk_str(&p, wrappers[w]);
		op(&p, '}');
		pk_str(&p, "encoder");
		op(&p, '}');
		pk_str(&p, "layer");
		pk_tensor(&p, &plain);
		op(&p, 's');
		op(&p, 's');
		op(&p, 'u');
		op(&p, '.');
		if (w < 2) {
			load_ok(&p, &r);
			assert_int_equal(r.ntensors, 1);
			assert_string_equal(r.tensors[0].name, "encoder.layer");
			weld_state_dict_free(&r);
		} else {
			/* not a known wrapper: every leaf must be a tensor */
			expect_pickle_error(p.b, p.n, "key 'epoch': value is a int, not a tensor");
		}
		free(p.b);
	}
}

static void test_legacy_probe(void **state)
{
	static const unsigned char legacy[] = {
		0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
		0x50, 0x19, 0x2e, 0x80
	};
	unsigned char framed[32] = { 0x80, 0x04, 0x95 };

	(void)state;
	assert_true(weld_torch_legacy_probe(legacy, sizeof(legacy)));
	assert_false(weld_torch_legacy_probe(legacy, 10));
	memcpy(framed + 11, legacy + 2, 13);
	assert_true(weld_torch_legacy_probe(framed, sizeof(framed)));
	assert_false(weld_torch_legacy_probe((const unsigned char *)"PK\3\4abcdefghijklmn", 18));
	assert_true(weld_torch_probe((const unsigned char *)"PK\3\4", 4));
	assert_false(weld_torch_probe(legacy, sizeof(legacy)));
	assert_false(weld_torch_probe((const unsigned char *)"PK\5\6", 4));
}

/* ---------------------------------------------------------------- pickle: refused */

static void test_pickle_refuses_code_execution(void **state)
{
	static const char posix[] = "\x80\x02" "cposix\nsystem\n" "X\x02\0\0\0id" "\x85R.";
	static const char eval[] = "\x80\x02" "cbuiltins\neval\n" "X\x01\0\0\0" "1" "\x85R.";
	static const char stack[] = "\x80\x04" "\x8c\x02os" "\x8c\x06system" "\x93" ")R.";
	static const char linear[] = "\x80\x02" "ctorch.nn.modules.linear\nLinear\n" ")R.";
	static const char sparse[] = "\x80\x02" "ctorch._utils\n_rebuild_sparse_tensor\n" ")R.";
	static const char qint[] = "\x80\x02" "ctorch\nQInt8Storage\n.";
	static const char call_storage[] = "\x80\x02" "ctorch\nFloatStorage\n" ")R.";
	static const char call_tuple[] = "\x80\x02" "))R.";
	static const char odict_args[] = "\x80\x02" "ccollections\nOrderedDict\n" "K\x01\x85R.";

	(void)state;
	expect_pickle_error(posix, sizeof(posix) - 1, "global 'posix.system' is not allowed");
	expect_pickle_error(eval, sizeof(eval) - 1, "global 'builtins.eval' is not allowed");
	expect_pickle_error(stack, sizeof(stack) - 1, "global 'os.system' is not allowed");
	expect_pickle_error(linear, sizeof(linear) - 1,
			    "global 'torch.nn.modules.linear.Linear' is not allowed");
	expect_pickle_error(sparse, sizeof(sparse) - 1,
			    "global 'torch._utils._rebuild_sparse_tensor' is not supported");
	expect_pickle_error(qint, sizeof(qint) - 1,
			    "storage type 'torch.QInt8Storage' is not supported");
	expect_pickle_error(call_storage, sizeof(call_storage) - 1,
			    "calling 'torch.FloatStorage' is not allowed");
	expect_pickle_error(call_tuple, sizeof(call_tuple) - 1, "REDUCE at byte 4 on a tuple");
	expect_pickle_error(odict_args, sizeof(odict_args) - 1,
			    "collections.OrderedDict called with arguments");
}

static void test_pickle_refuses_object_opcodes(void **state)
{
	static const struct {
		const char *pkl;
		size_t len;
		const char *msg;
	} cases[] = {
		{ "\x80\x02(cos\nsystem\nX\x02\0\0\0idi", 22, "opcode GLOBAL" },
		{ "\x80\x02(X\x02\0\0\0idios\nsystem\n.", 22, "opcode INST (0x69) at byte 10" },
		{ "\x80\x02(ccollections\nOrderedDict\no.", 30, "opcode OBJ (0x6f)" },
		{ "\x80\x02" "ccollections\nOrderedDict\n)\x81.", 30, "opcode NEWOBJ (0x81)" },
		{ "\x80\x02" "ccollections\nOrderedDict\n)}\x92.", 31, "opcode NEWOBJ_EX (0x92)" },
		{ "\x80\x02\x82\x01.", 5, "opcode EXT1 (0x82)" },
		{ "\x80\x02Pfoo\n.", 8, "opcode PERSID (0x50)" },
		{ "\x80\x02I1\n.", 6, "opcode INT (0x49)" },
		{ "\x80\x02}2.", 5, "opcode DUP (0x32)" },
		{ "\x80\x02(d.", 5, "opcode DICT (0x64)" },
		{ "\x80\x05\x96\0\0\0\0\0\0\0\0.", 12, "opcode BYTEARRAY8" },
		{ "\x80\x02\xff.", 4, "unknown opcode 0xff at byte 2" },
		{ "\x80\x06}.", 4, "pickle protocol 6 is not supported" },
		{ "\x80\x02\x8a\x09\0\0\0\0\0\0\0\0\0.", 14, "integer of 9 bytes is too large" },
	};

	(void)state;
	/* the first case stops at the unknown global before reaching INST */
	expect_pickle_error(cases[0].pkl, cases[0].len, "global 'os.system' is not allowed");
	for (size_t i = 1; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_pickle_error(cases[i].pkl, cases[i].len, cases[i].msg);
}

static void test_pickle_refuses_deep_nesting(void **state)
{
	size_t n = 100000;
	unsigned char *p = malloc(n + 4);
	struct buf d = { 0 };

	(void)state;
	p[0] = 0x80;
	p[1] = 2;
	memset(p + 2, '(', n);
	p[n + 2] = '.';
	expect_pickle_error(p, n + 3, "more than 1024 nested MARKs");
	memset(p + 2, ']', n);
	expect_pickle_error(p, n + 3, "stack deeper than 65536 values");
	free(p);

	/* lists nested 100000 deep through the memo: fine to build, wrong root */
	op(&d, 0x80);
	op(&d, 2);
	op(&d, ']');
	op(&d, 'q');
	op(&d, 0);
	op(&d, '0');
	for (int i = 0; i < 100000; i++) {
		op(&d, ']');
		op(&d, 'h');
		op(&d, 0);
		op(&d, 'a');
		op(&d, 'q');
		op(&d, 0);
		op(&d, '0');
	}
	op(&d, 'h');
	op(&d, 0);
	op(&d, '.');
	expect_pickle_error(d.b, d.n, "the pickle holds a list, not a dict of tensors");
	free(d.b);

	/* dicts nested 100 deep: the flattening stops at its depth limit */
	d = (struct buf){ 0 };
	op(&d, 0x80);
	op(&d, 2);
	op(&d, '}');
	op(&d, 'q');
	op(&d, 0);
	op(&d, '0');
	for (int i = 0; i < 100; i++) {
		op(&d, '}');
		pk_str(&d, "a");
		op(&d, 'h');
		op(&d, 0);
		op(&d, 's');
		op(&d, 'q');
		op(&d, 0);
		op(&d, '0');
	}
	op(&d, 'h');
	op(&d, 0);
	op(&d, '.');
	expect_pickle_error(d.b, d.n, "nested deeper than 32 levels");
	free(d.b);
}

static void test_pickle_refuses_cycles_and_shared_dicts(void **state)
{
	static const char cycle[] = "\x80\x02}q\x00X\x01\0\0\0ah\x00s.";
	static const char twice[] = "\x80\x02}(X\x01\0\0\0a}q\x00X\x01\0\0\0bh\x00u.";

	(void)state;
	expect_pickle_error(cycle, sizeof(cycle) - 1, "the same dict appears twice");
	expect_pickle_error(twice, sizeof(twice) - 1, "dict 'b': the same dict appears twice");
}

static void test_pickle_refuses_bad_memo(void **state)
{
	static const char get[] = "\x80\x02}j\xff\xff\xff\xff.";
	static const char put_far[] = "\x80\x02}r\xff\xff\xff\xff.";
	static const char put_empty[] = "\x80\x02q\x00}.";
	static const char get_unset[] = "\x80\x02}q\x00h\x01.";

	(void)state;
	expect_pickle_error(get, sizeof(get) - 1,
			    "memo index 4294967295 at byte 3 is not set (the memo holds 0 objects)");
	expect_pickle_error(put_far, sizeof(put_far) - 1, "memo index 4294967295 at byte 3 skips");
	expect_pickle_error(put_empty, sizeof(put_empty) - 1, "BINPUT at byte 2: stack is empty");
	expect_pickle_error(get_unset, sizeof(get_unset) - 1, "memo index 1 at byte 5 is not set");
}

/* Every strict prefix of a valid pickle fails cleanly. */
static void test_pickle_refuses_truncation(void **state)
{
	const struct tspec t[] = { plain, { "b", "1", "HalfStorage", 2, 0, 1, { 2 }, { 1 }, NULL } };
	struct buf p = pk_state_dict(t, 2);
	static const char huge_str[] = "\x80\x02X\xf0\xff\xff\xff" "abc";
	static const char global_eol[] = "\x80\x02" "ctorch\nFloatStor";
	static const char no_stop[] = "\x80\x02}";

	(void)state;
	for (size_t len = 0; len < p.n; len++) {
		struct weld_state_dict r;
		struct weld_error err = { 0 };

		assert_int_equal(weld_state_dict_load(p.b, len, &r, &err), -1);
		assert_int_equal(err.status, WELD_ERR_FORMAT);
	}
	free(p.b);
	expect_pickle_error(huge_str, sizeof(huge_str) - 1,
			    "pickle is truncated: BINUNICODE at byte 2 needs 4294967280 bytes");
	expect_pickle_error(global_eol, sizeof(global_eol) - 1, "GLOBAL at byte 2 has no end of line");
	expect_pickle_error(no_stop, sizeof(no_stop) - 1, "pickle is truncated: no STOP opcode");
}

static void test_pickle_refuses_bad_structure(void **state)
{
	static const char setitem_list[] = "\x80\x02]K\x01K\x02s.";
	static const char append_dict[] = "\x80\x02}K\x01" "a.";
	static const char odd_items[] = "\x80\x02}(K\x01u.";
	static const char trailing[] = "\x80\x02}.junk";
	static const char two_left[] = "\x80\x02}}.";
	static const char pop_empty[] = "\x80\x02R.";
	static const char build_int[] = "\x80\x02K\x01}b.";
	static const char not_dict[] = "\x80\x02K\x05.";
	static const char int_key[] = "\x80\x02}K\x01}s.";
	static const char bad_utf8[] = "\x80\x02}X\x02\0\0\0\xc3\x28}s.";
	static const char nul_key[] = "\x80\x02}X\x02\0\0\0a\0}s.";
	static const char empty_key[] = "\x80\x02}X\0\0\0\0}s.";
	static const char frame_long[] = "\x80\x04\x95\xff\0\0\0\0\0\0\0}.";

	(void)state;
	expect_pickle_error(setitem_list, sizeof(setitem_list) - 1,
			    "SETITEM at byte 7 on a list: only a dict can take items");
	expect_pickle_error(append_dict, sizeof(append_dict) - 1,
			    "APPEND at byte 5 on a dict: only a list can take items");
	expect_pickle_error(odd_items, sizeof(odd_items) - 1, "odd number of values");
	expect_pickle_error(trailing, sizeof(trailing) - 1, "4 bytes after STOP");
	expect_pickle_error(two_left, sizeof(two_left) - 1, "STOP at byte 4 with 2 values");
	expect_pickle_error(pop_empty, sizeof(pop_empty) - 1, "REDUCE at byte 2: stack is empty");
	expect_pickle_error(build_int, sizeof(build_int) - 1, "BUILD at byte 5 on a int is not allowed");
	expect_pickle_error(not_dict, sizeof(not_dict) - 1, "the pickle holds a int, not a dict");
	expect_pickle_error(int_key, sizeof(int_key) - 1, "dict '(root)': key 0 is a int, not a string");
	expect_pickle_error(bad_utf8, sizeof(bad_utf8) - 1, "key 0 is not valid UTF-8");
	expect_pickle_error(nul_key, sizeof(nul_key) - 1, "key 0 is not valid UTF-8 or contains NUL");
	expect_pickle_error(empty_key, sizeof(empty_key) - 1, "key 0 is empty");
	expect_pickle_error(frame_long, sizeof(frame_long) - 1, "FRAME at byte 2 is longer");
}

static void test_pickle_refuses_bad_views(void **state)
{
	struct tspec t = plain;
	struct tspec pair[2] = { plain, plain };

	(void)state;
	t.shape[0] = 4;     /* 16 elements in a 12-element storage */
	expect_spec_error(&t, 1, "tensor 'w': view reaches element 15 of storage '0', which holds 12 elements");
	t = plain;
	t.offset = 1;
	expect_spec_error(&t, 1, "tensor 'w': view reaches element 12 of storage '0'");
	t = plain;
	t.stride[1] = -1;
	expect_spec_error(&t, 1, "tensor 'w': stride[1] is negative (-1)");
	t = plain;
	t.shape[0] = -3;
	expect_spec_error(&t, 1, "tensor 'w': size[0] is negative (-3)");
	t = plain;
	t.offset = -4;
	expect_spec_error(&t, 1, "tensor 'w': storage_offset -4 is negative");
	t = plain;
	t.shape[0] = t.shape[1] = INT64_C(1) << 40;
	expect_spec_error(&t, 1, "tensor 'w': size: element count overflows");
	t = plain;
	t.stride[0] = INT64_MAX;
	expect_spec_error(&t, 1, "tensor 'w': stride: reachable element index overflows");
	t = plain;
	t.ndim = 9;
	for (int k = 0; k < 9; k++) {
		t.shape[k] = 1;
		t.stride[k] = 1;
	}
	expect_spec_error(&t, 1, "tensor 'w': size: more than 8 dimensions");
	t = plain;
	t.shape[0] = 0;
	t.offset = 13;
	expect_spec_error(&t, 1, "tensor 'w': storage_offset 13 is past the end of storage '0'");
	t = plain;
	t.numel = INT64_MAX;
	expect_spec_error(&t, 1, "storage '0': numel 9223372036854775807 overflows");
	t = plain;
	t.numel = -1;
	expect_spec_error(&t, 1, "storage '0': numel is not a non-negative integer");
	t = plain;
	t.key = "01";
	expect_spec_error(&t, 1, "storage key '01' is not a decimal number");
	t.key = "x";
	expect_spec_error(&t, 1, "storage key 'x' is not a decimal number");
	pair[1].name = "v";
	pair[1].cls = "HalfStorage";
	expect_spec_error(pair, 2, "storage '0' is declared twice with different types or sizes");
	pair[1] = plain;
	expect_spec_error(pair, 2, "tensor 'w' appears twice in the state dict");
}

static void test_pickle_refuses_bad_rebuild_args(void **state)
{
	struct buf p = { 0 };

	(void)state;
	/* backward hooks that are not empty */
	op(&p, 0x80);
	op(&p, 2);
	op(&p, '}');
	pk_str(&p, "w");
	pk_global(&p, "torch._utils", "_rebuild_tensor_v2");
	op(&p, '(');
	op(&p, '(');
	pk_str(&p, "storage");
	pk_global(&p, "torch", "FloatStorage");
	pk_str(&p, "0");
	pk_str(&p, "cpu");
	pk_int(&p, 1);
	op(&p, 't');
	op(&p, 'Q');
	pk_int(&p, 0);
	op(&p, ')');
	op(&p, ')');
	op(&p, 0x89);
	op(&p, '}');
	pk_str(&p, "hook");
	op(&p, 'N');
	op(&p, 's');
	op(&p, 't');
	op(&p, 'R');
	op(&p, 's');
	op(&p, '.');
	expect_pickle_error(p.b, p.n, "_rebuild_tensor_v2 at byte");
	expect_pickle_error(p.b, p.n, "backward hooks are not supported");
	free(p.b);

	{
		static const char persid_str[] = "\x80\x02X\x01\0\0\0" "0Q.";
		static const char persid_module[] =
			"\x80\x02(X\x07\0\0\0storageccollections\nOrderedDict\n"
			"X\x01\0\0\0" "0X\x03\0\0\0" "cpuK\x01tQ.";
		static const char few_args[] =
			"\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n" "K\x01\x85R.";

		expect_pickle_error(persid_str, sizeof(persid_str) - 1,
				    "persistent id is not a 5-tuple");
		expect_pickle_error(persid_module, sizeof(persid_module) - 1,
				    "storage type is a global, not a storage class");
		expect_pickle_error(few_args, sizeof(few_args) - 1,
				    "_rebuild_tensor_v2 at byte 38: 1 arguments, expected 6 or 7");
	}
}

/*
 * A pickle that builds ~1M empty tuples needs more memory than ~24x its
 * size: the budget stops it before it is allocated.
 */
static void test_pickle_memory_budget(void **state)
{
	size_t n = 1200000;
	struct buf p = { 0 };

	(void)state;
	op(&p, 0x80);
	op(&p, 2);
	op(&p, ']');
	for (size_t i = 0; i < n; i++) {
		op(&p, ')');
		op(&p, 'a');
	}
	op(&p, '.');
	expect_pickle_error(p.b, p.n, "more than its size justifies");
	free(p.b);
}

/* ---------------------------------------------------------------- zip builder */

struct zentry {
	const char *name;
	const void *data;
	size_t len;
	int method;             /* 0 stored, 8 deflated */
	uint64_t declared;      /* uncompressed size written in the headers; 0: len */
};

/*
 * A zip of the given entries; zip64 puts sizes and offsets in zip64 extra
 * fields and adds the zip64 end records, as torch does for huge files.
 */
static struct buf zip_build(const struct zentry *e, size_t n, bool zip64)
{
	struct buf z = { 0 }, cd = { 0 };
	uint64_t cd_off;

	for (size_t i = 0; i < n; i++) {
		uint64_t lho = z.n, csize = e[i].len;
		uint64_t usize = e[i].declared ? e[i].declared : e[i].len;
		uint32_t crc = (uint32_t)crc32(0L, e[i].data, (uInt)e[i].len);
		unsigned char *packed = NULL;
		size_t nlen = strlen(e[i].name);

		if (e[i].method == 8) {
			z_stream s = { 0 };

			packed = malloc(e[i].len + 1024);
			assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -MAX_WBITS, 8,
						      Z_DEFAULT_STRATEGY), Z_OK);
			s.next_in = (unsigned char *)e[i].data;
			s.avail_in = (uInt)e[i].len;
			s.next_out = packed;
			s.avail_out = (uInt)(e[i].len + 1024);
			assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
			csize = s.total_out;
			deflateEnd(&s);
		}
		put_le(&z, 0x04034b50, 4);
		put_le(&z, 20, 2);
		put_le(&z, 0, 2);
		put_le(&z, (uint64_t)e[i].method, 2);
		put_le(&z, 0, 4);
		put_le(&z, crc, 4);
		put_le(&z, csize, 4);
		put_le(&z, usize, 4);
		put_le(&z, nlen, 2);
		put_le(&z, 0, 2);
		put(&z, e[i].name, nlen);
		put(&z, packed ? (const void *)packed : e[i].data, (size_t)csize);
		free(packed);

		put_le(&cd, 0x02014b50, 4);
		put_le(&cd, 45, 2);
		put_le(&cd, 45, 2);
		put_le(&cd, 0, 2);
		put_le(&cd, (uint64_t)e[i].method, 2);
		put_le(&cd, 0, 4);
		put_le(&cd, crc, 4);
		put_le(&cd, zip64 ? 0xffffffff : csize, 4);
		put_le(&cd, zip64 ? 0xffffffff : usize, 4);
		put_le(&cd, nlen, 2);
		put_le(&cd, zip64 ? 28 : 0, 2);
		put_le(&cd, 0, 2);
		put_le(&cd, 0, 2);
		put_le(&cd, 0, 2);
		put_le(&cd, 0, 4);
		put_le(&cd, zip64 ? 0xffffffff : lho, 4);
		put(&cd, e[i].name, nlen);
		if (zip64) {
			put_le(&cd, 1, 2);
			put_le(&cd, 24, 2);
			put_le(&cd, usize, 8);
			put_le(&cd, csize, 8);
			put_le(&cd, lho, 8);
		}
	}
	cd_off = z.n;
	put(&z, cd.b, cd.n);
	if (zip64) {
		uint64_t e64 = z.n;

		put_le(&z, 0x06064b50, 4);
		put_le(&z, 44, 8);
		put_le(&z, 45, 2);
		put_le(&z, 45, 2);
		put_le(&z, 0, 4);
		put_le(&z, 0, 4);
		put_le(&z, n, 8);
		put_le(&z, n, 8);
		put_le(&z, cd.n, 8);
		put_le(&z, cd_off, 8);
		put_le(&z, 0x07064b50, 4);
		put_le(&z, 0, 4);
		put_le(&z, e64, 8);
		put_le(&z, 1, 4);
	}
	put_le(&z, 0x06054b50, 4);
	put_le(&z, 0, 2);
	put_le(&z, 0, 2);
	put_le(&z, zip64 ? 0xffff : n, 2);
	put_le(&z, zip64 ? 0xffff : n, 2);
	put_le(&z, zip64 ? 0xffffffff : cd.n, 4);
	put_le(&z, zip64 ? 0xffffffff : cd_off, 4);
	put_le(&z, 0, 2);
	free(cd.b);
	return z;
}

/* ---------------------------------------------------------------- model helpers */

static const char *data_dir(void)
{
	const char *d = getenv("WELD_TORCH_DATA");

	return d && *d ? d : "tests/data/torch";
}

static char *data_path(const char *name)
{
	size_t n = strlen(data_dir()) + strlen(name) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", data_dir(), name);
	return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;
	long n;

	if (!f)
		fail_msg("cannot open '%s' (run the tests from the repository root)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Open path; expect failure with needle in the message (or success if NULL). */
static void expect_open(const char *path, const char *needle)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;
	int r = weld_model_open(&m, path, &err);

	if (!needle) {
		if (r != 0)
			fail_msg("'%s': %s", path, err.msg);
		weld_model_close(m);
		return;
	}
	if (r != -1)
		fail_msg("'%s' opened; expected '%s'", path, needle);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	assert_int_equal(err.status, WELD_ERR_FORMAT);
	weld_model_close(m);
}

/* Write bytes to dir/name and open them, expecting needle (or success). */
static void expect_bytes(const char *dir, const char *name, const void *b, size_t n,
			 const char *needle)
{
	char *path = fixture_write(dir, name, b, n);

	assert_non_null(path);
	expect_open(path, needle);
	free(path);
}

static double half_to_double(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);

	return (h & 0x8000) ? -v : v;
}

/* Element i of a packed little-endian buffer, as a double. */
static double element(const unsigned char *b, size_t i, const char *dtype)
{
	uint64_t u = 0;
	size_t es = !strcmp(dtype, "F64") || !strcmp(dtype, "I64") ? 8
		: !strcmp(dtype, "F32") || !strcmp(dtype, "I32") ? 4
		: !strcmp(dtype, "F16") || !strcmp(dtype, "BF16") || !strcmp(dtype, "I16") ? 2 : 1;
	float f;
	double d;

	for (size_t k = 0; k < es; k++)
		u |= (uint64_t)b[i * es + k] << (8 * k);
	if (!strcmp(dtype, "F64")) {
		memcpy(&d, &u, 8);
		return d;
	}
	if (!strcmp(dtype, "F32") || !strcmp(dtype, "BF16")) {
		uint32_t w = !strcmp(dtype, "BF16") ? (uint32_t)u << 16 : (uint32_t)u;

		memcpy(&f, &w, 4);
		return f;
	}
	if (!strcmp(dtype, "F16"))
		return half_to_double((uint16_t)u);
	if (!strcmp(dtype, "I64"))
		return (double)(int64_t)u;
	if (!strcmp(dtype, "I32"))
		return (int32_t)(uint32_t)u;
	if (!strcmp(dtype, "I16"))
		return (int16_t)(uint16_t)u;
	if (!strcmp(dtype, "I8"))
		return (int8_t)(uint8_t)u;
	return (double)u;   /* U8, BOOL */
}

/*
 * Every tensor torch listed in <json> is in the model with the same dtype,
 * shape, layout and values, and the model has nothing else.
 */
static void compare_with_torch(const weld_model *m, const char *json)
{
	char *path = data_path(json);
	size_t len;
	char *text = (char *)slurp(path, &len);
	cJSON *root, *tensors, *t;
	size_t count = 0;

	text[len] = '\0';
	root = cJSON_Parse(text);
	assert_non_null(root);
	tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
	cJSON_ArrayForEach(t, tensors) {
		int64_t i = weld_model_find(m, t->string);
		const struct weld_tensor_info *info;
		const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
		const cJSON *values = cJSON_GetObjectItemCaseSensitive(t, "values");
		const char *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring;
		struct weld_error err = { 0 };
		unsigned char *raw;
		int k = 0;
		const cJSON *v;

		if (i < 0)
			fail_msg("%s: tensor '%s' is missing", json, t->string);
		info = weld_model_tensor(m, (size_t)i);
		assert_string_equal(weld_dtype_name(info->dtype), dtype);
		assert_int_equal(info->ndim, cJSON_GetArraySize(shape));
		cJSON_ArrayForEach(v, shape)
			assert_int_equal(info->shape[k++], (int64_t)v->valuedouble);
		assert_int_equal(info->nelem, (uint64_t)cJSON_GetArraySize(values));
		assert_int_equal(info->contiguous,
				 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "contiguous")));
		raw = malloc(info->nbytes + 1);
		assert_int_equal(weld_model_read(m, (size_t)i, 0, (size_t)info->nelem, raw, &err), 0);
		k = 0;
		cJSON_ArrayForEach(v, values) {
			double got = element(raw, (size_t)k, dtype);

			if (got != v->valuedouble)
				fail_msg("%s: '%s'[%d] is %g, torch says %g", json, t->string, k,
					 got, v->valuedouble);
			k++;
		}
		free(raw);
		count++;
	}
	assert_int_equal(weld_model_count(m), count);
	cJSON_Delete(root);
	free(text);
	free(path);
}

static void check_fixture(const char *file, const char *json)
{
	char *path = data_path(file);
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	if (weld_model_open(&m, path, &err) != 0)
		fail_msg("'%s': %s", path, err.msg);
	assert_string_equal(weld_model_format(m), "pytorch");
	compare_with_torch(m, json);
	weld_model_close(m);
	free(path);
}

/* ---------------------------------------------------------------- torch.save fixtures */

static void test_fixture_basic(void **state)
{
	(void)state;
	check_fixture("basic.bin", "basic.json");
}

static void test_fixture_views(void **state)
{
	(void)state;
	check_fixture("views.bin", "views.json");
}

static void test_fixture_wrapped(void **state)
{
	(void)state;
	check_fixture("wrapped.bin", "wrapped.json");
}

static void test_fixture_nested(void **state)
{
	(void)state;
	check_fixture("nested.bin", "nested.json");
}

static void test_fixture_protocol4(void **state)
{
	(void)state;
	check_fixture("proto4.bin", "proto4.json");
}

static void test_fixture_parameters(void **state)
{
	(void)state;
	check_fixture("params.bin", "params.json");
}

static void test_fixture_sharded_folder(void **state)
{
	(void)state;
	check_fixture("sharded", "sharded.json");
}

/* Element 0's offset and the shared storage, seen from the tensor list. */
static void test_fixture_offsets(void **state)
{
	char *path = data_path("views.bin");
	struct weld_error err = { 0 };
	weld_model *m = NULL;
	const struct weld_tensor_info *base, *row, *tr;

	(void)state;
	assert_int_equal(weld_model_open(&m, path, &err), 0);
	base = weld_model_tensor(m, (size_t)weld_model_find(m, "base"));
	row = weld_model_tensor(m, (size_t)weld_model_find(m, "row"));
	tr = weld_model_tensor(m, (size_t)weld_model_find(m, "transposed"));
	assert_int_equal(base->offset % 64, 0);   /* torch aligns records to 64 bytes */
	assert_int_equal(row->offset, base->offset + 16);
	assert_int_equal(tr->offset, base->offset);
	assert_int_equal(tr->stride[0], 1);
	assert_int_equal(tr->stride[1], 4);
	assert_false(tr->contiguous);
	weld_model_close(m);
	free(path);
}

static void test_fixture_refusals(void **state)
{
	char *legacy = data_path("legacy.bin"), *script = data_path("torchscript.pt");

	(void)state;
	expect_open(legacy, "legacy PyTorch (pre-1.6) checkpoint: re-save it with a current "
		    "torch, or convert it to safetensors");
	expect_open(script, "is a TorchScript archive (torch.jit.save), not a state dict: "
		    "load it with torch.jit.load() and save its state_dict()");
	free(legacy);
	free(script);
}

/*
 * views.bin re-packed by Python's zipfile with every entry deflated
 * (make_deflated.py): the same tensors as the stored original, element by
 * element, and as torch printed them, read from the inflated copy.
 */
static void test_fixture_deflated(void **state)
{
	char *a = data_path("views.bin"), *b = data_path("views_deflated.bin");
	struct weld_error err = { 0 };
	weld_model *ma = NULL, *mb = NULL;

	(void)state;
	if (weld_model_open(&ma, a, &err) != 0 || weld_model_open(&mb, b, &err) != 0)
		fail_msg("%s", err.msg);
	assert_string_equal(weld_model_format(mb), "pytorch");
	assert_int_equal(weld_model_file_count(mb), 1);
	compare_with_torch(mb, "views.json");
	assert_int_equal(weld_model_count(ma), weld_model_count(mb));
	for (size_t i = 0; i < weld_model_count(ma); i++) {
		const struct weld_tensor_info *ta = weld_model_tensor(ma, i);
		const struct weld_tensor_info *tb = weld_model_tensor(mb, i);
		size_t es = weld_dtype_size(ta->dtype);
		unsigned char ea[8], eb[8];

		assert_string_equal(ta->name, tb->name);
		assert_int_equal(ta->dtype, tb->dtype);
		assert_int_equal(ta->ndim, tb->ndim);
		assert_memory_equal(ta->shape, tb->shape, sizeof(ta->shape));
		assert_memory_equal(ta->stride, tb->stride, sizeof(ta->stride));
		assert_int_equal(ta->contiguous, tb->contiguous);
		assert_int_equal(tb->file, 0);
		for (uint64_t k = 0; k < ta->nelem; k++) {
			assert_int_equal(weld_model_read(ma, i, k, 1, ea, &err), 0);
			assert_int_equal(weld_model_read(mb, i, k, 1, eb, &err), 0);
			if (memcmp(ea, eb, es))
				fail_msg("'%s'[%llu] differs", ta->name, (unsigned long long)k);
		}
	}
	weld_model_close(ma);
	weld_model_close(mb);
	free(a);
	free(b);
}

/* ---------------------------------------------------------------- patched and built zips */

/* Offset of the central-directory entry called name in a zip image. */
static size_t central_entry(const unsigned char *z, size_t n, const char *name)
{
	size_t nlen = strlen(name);

	for (size_t i = n - 46; i-- > 0;)
		if (!memcmp(z + i, "PK\1\2", 4) && z[i + 28] == nlen && z[i + 29] == 0 &&
		    !memcmp(z + i + 46, name, nlen))
			return i;
	fail_msg("no central entry '%s'", name);
	return 0;
}

/* Set the compression method of an entry, in its central and local headers. */
static void set_method(unsigned char *z, size_t n, const char *name, int central, int local)
{
	size_t at = central_entry(z, n, name), lho;

	z[at + 10] = (unsigned char)central;
	lho = (size_t)z[at + 42] | (size_t)z[at + 43] << 8;
	z[lho + 8] = (unsigned char)local;
}

static void test_zip_patched_fixture(void **state)
{
	char *src = data_path("basic.bin"), *dir = fixture_tmpdir();
	size_t n, at;
	unsigned char *orig = slurp(src, &n), *z = malloc(n);

	(void)state;
	assert_non_null(dir);
	/* a stored storage relabelled deflated: its bytes are no deflate stream */
	memcpy(z, orig, n);
	set_method(z, n, "basic/data/2", 8, 8);
	expect_bytes(dir, "a.bin", z, n, "zip entry 'basic/data/2': data: the deflate stream "
		     "is damaged");
	/* a storage compressed with another method than deflate */
	memcpy(z, orig, n);
	set_method(z, n, "basic/data/2", 12, 12);
	expect_bytes(dir, "k.bin", z, n, "tensor 'model.layers.0.mlp.weight': storage '2' is "
		     "compressed with method 12; weld reads stored or deflated entries only");
	/* local header offset past the end of the file */
	memcpy(z, orig, n);
	at = central_entry(z, n, "basic/data/2");
	z[at + 42] = 0xf0;
	z[at + 43] = 0xff;
	z[at + 44] = 0xff;
	z[at + 45] = 0x7f;
	expect_bytes(dir, "b.bin", z, n, "zip entry 'basic/data/2': local header at offset "
		     "2147483632 is outside the entries area");
	/* data size running into the central directory */
	memcpy(z, orig, n);
	at = central_entry(z, n, "basic/version");
	z[at + 20] = z[at + 24] = 0xff;
	z[at + 21] = z[at + 25] = 0x0f;
	expect_bytes(dir, "c.bin", z, n, "zip entry 'basic/version': data (offset");
	/* local header naming another file */
	memcpy(z, orig, n);
	at = central_entry(z, n, "basic/data/3");
	z[at + 46 + 11] = '9';
	expect_bytes(dir, "d.bin", z, n, "zip entry 'basic/data/9': local header names another file");
	/* central and local headers disagreeing on the method */
	memcpy(z, orig, n);
	set_method(z, n, "basic/data/3", 8, 12);
	expect_bytes(dir, "j.bin", z, n, "zip entry 'basic/data/3': local header says "
		     "compression method 12, the central directory 8");
	/* a flipped byte in data.pkl */
	memcpy(z, orig, n);
	z[100] ^= 0x01;
	expect_bytes(dir, "e.bin", z, n, "'basic/data.pkl': CRC mismatch");
	/* storage record shorter than the storage */
	memcpy(z, orig, n);
	at = central_entry(z, n, "basic/data/2");
	z[at + 20] = z[at + 24] = 40;
	expect_bytes(dir, "f.bin", z, n, "tensor 'model.layers.0.mlp.weight': storage '2' is "
		     "declared as 48 bytes but its record holds 40");
	/* truncated: no end record */
	expect_bytes(dir, "g.bin", orig, n - 10, "no end of central directory record");
	/* encrypted entry */
	memcpy(z, orig, n);
	at = central_entry(z, n, "basic/data/2");
	z[at + 8] |= 1;
	expect_bytes(dir, "h.bin", z, n, "zip entry 'basic/data/2' is encrypted");
	fixture_rmtree(dir);
	free(dir);
	free(orig);
	free(z);
	free(src);
}

/* ---------------------------------------------------------------- damage, byte by byte */

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_le32(unsigned char *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (unsigned char)(v >> (8 * k));
}

/* What changing one byte of a checkpoint must do. */
enum flip { FLIP_SAME, FLIP_CHANGED, FLIP_REFUSED };

/* Where the parts of a torch.save() archive lie, as zip_dir.c reads them. */
struct zlayout {
	struct weld_zip_dir dir;
	size_t central[16];     /* each central-directory entry, in order */
	size_t z64, loc, eocd;  /* zip64 end record, its locator, the EOCD */
};

static void zlayout_read(struct zlayout *L, const char *path, const unsigned char *z, size_t n)
{
	struct weld_error err = { 0 };
	int fd = open(path, O_RDONLY);
	size_t at;

	assert_true(fd >= 0);
	if (weld_zip_read_dir(fd, n, path, &L->dir, &err) != 0)
		fail_msg("%s", err.msg);
	close(fd);
	assert_true(L->dir.n <= 16);
	at = (size_t)L->dir.cd_offset;
	for (size_t i = 0; i < L->dir.n; i++) {
		L->central[i] = at;
		at += 46 + (size_t)(z[at + 28] | z[at + 29] << 8) +
		      (size_t)(z[at + 30] | z[at + 31] << 8) + (size_t)(z[at + 32] | z[at + 33] << 8);
	}
	L->z64 = at;
	L->eocd = n - 22;       /* torch writes no archive comment */
	L->loc = L->eocd - 20;
	assert_int_equal(get_le32(z + L->loc), 0x07064b50);
}

/*
 * What XOR-ing byte i of views.bin with k (not 0) must do. torch writes
 * every entry stored, with a data descriptor (bit 3: CRC and sizes zero in
 * the local header, the real ones after the data) except the empty
 * storage, and a zip64 end record whose counts the EOCD repeats. What
 * nobody reads may change freely; what is read must be refused when it
 * lies, except tensor data, which is read by byte range without a CRC.
 */
static enum flip expect_flip(const struct zlayout *L, size_t i, unsigned k)
{
	if (i >= L->eocd)       /* signature, disk numbers, comment length: refused */
		return i - L->eocd >= 8 && i - L->eocd < 20 ? FLIP_SAME : FLIP_REFUSED;
	if (i >= L->loc)        /* no locator: the EOCD's values serve, and they are right */
		return i - L->loc < 4 ? FLIP_SAME : FLIP_REFUSED;
	if (i >= L->z64)        /* only the versions are free */
		return i - L->z64 >= 12 && i - L->z64 < 16 ? FLIP_SAME : FLIP_REFUSED;
	for (size_t j = 0; j < L->dir.n; j++) {
		const struct weld_zip_entry *e = &L->dir.entries[j];
		const size_t nlen = strlen(e->name), c = L->central[j], h = (size_t)e->header;
		const size_t x = h + 30 + nlen, d = (size_t)e->data, end = d + (size_t)e->csize;
		const bool pkl = strstr(e->name, "/data.pkl") != NULL;  /* read by libzip */
		const bool storage = strstr(e->name, "/data/") != NULL; /* viewed by tensors */
		const bool descriptor = e->flags & 8;
		size_t f;

		if (i >= c && i < c + 46 + nlen) {
			f = i - c;
			if (f >= 4 && f < 10)   /* versions, flags but bit 0 (encrypted) */
				return f == 8 && (k & 1) ? FLIP_REFUSED : FLIP_SAME;
			if (f >= 16 && f < 20)  /* CRC: checked if read, or in the local header */
				return pkl || !descriptor ? FLIP_REFUSED : FLIP_SAME;
			if (f >= 24 && f < 28)  /* size of an entry nobody reads */
				return pkl || storage ? FLIP_REFUSED : FLIP_SAME;
			if (f >= 34 && f < 42)  /* disk number, attributes */
				return FLIP_SAME;
			return FLIP_REFUSED;
		}
		if (i >= h && i < x) {
			f = i - h;
			if (f == 6)     /* clearing bit 3 makes the zero CRC and sizes lie */
				return (k & 8) && descriptor ? FLIP_REFUSED : FLIP_SAME;
			return f == 7 ? FLIP_SAME : FLIP_REFUSED;
		}
		if (i >= x && i < d)    /* the "FB" padding record: its length must fit */
			return i - x == 2 || i - x == 3 ? FLIP_REFUSED : FLIP_SAME;
		if (i >= d && i < end)
			return pkl ? FLIP_REFUSED : storage ? FLIP_CHANGED : FLIP_SAME;
		if (descriptor && i >= end && i < end + 16)     /* nobody reads descriptors */
			return FLIP_SAME;
	}
	fail_msg("byte %zu is in no part of the archive", i);
	return FLIP_REFUSED;
}

/* Tensor t's packed bytes, gathered from the file image z by its offset and strides. */
static void gather(const struct weld_tensor_info *t, const unsigned char *z, unsigned char *out)
{
	size_t es = weld_dtype_size(t->dtype);

	for (uint64_t j = 0; j < t->nelem; j++) {
		uint64_t rest = j, off = 0;

		for (int dim = t->ndim - 1; dim >= 0; dim--) {
			off += rest % (uint64_t)t->shape[dim] * (uint64_t)t->stride[dim];
			rest /= (uint64_t)t->shape[dim];
		}
		memcpy(out + j * es, z + t->offset + off * es, es);
	}
}

/* The damaged file opened: every tensor holds the bytes z holds where the
 * original said it lies; *changed tells whether any differs from orig. */
static void check_flipped_data(const weld_model *orig_m, const char *path, const unsigned char *orig,
			       const unsigned char *z, bool *changed)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	if (weld_model_open(&m, path, &err) != 0)
		fail_msg("'%s' refused: %s", path, err.msg);
	assert_int_equal(weld_model_count(m), weld_model_count(orig_m));
	*changed = false;
	for (size_t i = 0; i < weld_model_count(orig_m); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(orig_m, i);
		size_t nb = (size_t)t->nbytes + 1;
		unsigned char *got = malloc(nb), *want = malloc(nb), *was = malloc(nb);

		assert_string_equal(weld_model_tensor(m, i)->name, t->name);
		assert_int_equal(weld_model_read(m, i, 0, (size_t)t->nelem, got, &err), 0);
		gather(t, z, want);
		gather(t, orig, was);
		assert_memory_equal(got, want, (size_t)t->nbytes);
		*changed = *changed || memcmp(got, was, (size_t)t->nbytes);
		free(got);
		free(want);
		free(was);
	}
	weld_model_close(m);
}

/*
 * Every truncation of a real file is refused, and every single-byte change
 * of its last 700 bytes does what expect_flip() says: refused with a
 * format error naming the file, or opened with the right data, changed
 * only where tensor data was changed (run under ASan/UBSan by `make asan`).
 */
static void test_zip_damage_is_refused_or_read_right(void **state)
{
	char *src = data_path("views.bin"), *dir = fixture_tmpdir();
	size_t n, counts[3] = { 0 };
	unsigned char *orig = slurp(src, &n), *z = malloc(n);
	struct weld_error err = { 0 };
	weld_model *orig_m = NULL;
	struct zlayout L;

	(void)state;
	assert_non_null(dir);
	for (size_t len = 0; len < n; len += 7) {
		char *path = fixture_write(dir, "t.bin", orig, len);
		weld_model *m = NULL;

		assert_int_equal(weld_model_open(&m, path, &err), -1);
		assert_int_equal(err.status, WELD_ERR_FORMAT);
		assert_non_null(strstr(err.msg, path));
		free(path);
	}
	assert_int_equal(weld_model_open(&orig_m, src, &err), 0);
	zlayout_read(&L, src, orig, n);
	for (size_t i = n > 700 ? n - 700 : 0; i < n; i++) {
		unsigned k = (0x5a + i) & 0xff;
		enum flip want = k ? expect_flip(&L, i, k) : FLIP_SAME;
		weld_model *m = NULL;
		bool changed;
		char *path;

		memcpy(z, orig, n);
		z[i] ^= (unsigned char)k;
		path = fixture_write(dir, "f.bin", z, n);
		if (want == FLIP_REFUSED) {
			if (weld_model_open(&m, path, &err) == 0)
				fail_msg("byte %zu ^ 0x%02x: opened; expected a refusal", i, k);
			assert_int_equal(err.status, WELD_ERR_FORMAT);
			assert_non_null(strstr(err.msg, path));
		} else {
			check_flipped_data(orig_m, path, orig, z, &changed);
			if (changed != (want == FLIP_CHANGED))
				fail_msg("byte %zu ^ 0x%02x: data %s", i, k,
					 changed ? "changed" : "unchanged");
		}
		counts[want]++;
		free(path);
	}
	/* every kind of outcome is exercised */
	assert_true(counts[FLIP_SAME] && counts[FLIP_CHANGED] && counts[FLIP_REFUSED]);
	weld_zip_dir_free(&L.dir);
	weld_model_close(orig_m);
	fixture_rmtree(dir);
	free(dir);
	free(orig);
	free(z);
	free(src);
}

/* A checkpoint built here: one pickle, storages "0".."n-1". */
static void write_ckpt(const char *dir, const char *name, const struct buf *pkl,
		       const void *const *data, const size_t *len, size_t n,
		       int pkl_method, bool zip64, const char *byteorder, const char *needle)
{
	struct zentry e[8];
	char names[8][32];
	size_t k = 0;
	struct buf z;

	e[k++] = (struct zentry){ "ckpt/data.pkl", pkl->b, pkl->n, pkl_method, 0 };
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "ckpt/data/%zu", i);
		e[k++] = (struct zentry){ names[i], data[i], len[i], 0, 0 };
	}
	if (byteorder)
		e[k++] = (struct zentry){ "ckpt/byteorder", byteorder, strlen(byteorder), 0, 0 };
	e[k++] = (struct zentry){ "ckpt/version", "3\n", 2, 0, 0 };
	z = zip_build(e, k, zip64);
	expect_bytes(dir, name, z.b, z.n, needle);
	free(z.b);
}

static void test_zip_built_archives(void **state)
{
	static const float w[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	static const unsigned char fp8[6] = { 0x38, 0x40, 0xb8, 0x00, 0x7e, 0x01 };
	const struct tspec t[2] = {
		plain,
		{ "fp8", "1", "UntypedStorage", 6, 0, 2, { 2, 3 }, { 3, 1 }, "float8_e4m3fn" },
	};
	const void *data[2] = { w, fp8 };
	size_t len[2] = { sizeof(w), sizeof(fp8) }, short_len[2] = { 40, 6 };
	struct buf pkl = pk_state_dict(t, 2);
	char *dir = fixture_tmpdir(), *path;
	struct weld_error err = { 0 };
	weld_model *m = NULL;
	float got[12];
	unsigned char b[6];

	(void)state;
	assert_non_null(dir);
	/* deflated data.pkl and zip64 records: read as usual */
	write_ckpt(dir, "ok.bin", &pkl, data, len, 2, 8, true, "little", NULL);
	path = malloc(strlen(dir) + 16);
	sprintf(path, "%s/ok.bin", dir);
	assert_int_equal(weld_model_open(&m, path, &err), 0);
	assert_int_equal(weld_model_count(m), 2);
	assert_int_equal(weld_model_tensor(m, (size_t)weld_model_find(m, "fp8"))->dtype,
			 WELD_F8_E4M3);
	assert_int_equal(weld_model_read(m, (size_t)weld_model_find(m, "w"), 0, 12, got, &err), 0);
	assert_memory_equal(got, w, sizeof(w));
	assert_int_equal(weld_model_read(m, (size_t)weld_model_find(m, "fp8"), 0, 6, b, &err), 0);
	assert_memory_equal(b, fp8, sizeof(fp8));
	weld_model_close(m);
	free(path);

	write_ckpt(dir, "short.bin", &pkl, data, short_len, 2, 0, false, NULL,
		   "tensor 'w': storage '0' is declared as 48 bytes but its record holds 40");
	write_ckpt(dir, "missing.bin", &pkl, data, len, 1, 0, false, NULL,
		   "tensor 'fp8': storage '1': the archive has no record 'ckpt/data/1'");
	write_ckpt(dir, "big.bin", &pkl, data, len, 2, 0, false, "big",
		   "byteorder is not 'little'");
	free(pkl.b);

	{
		static const char posix[] = "\x80\x02" "cposix\nsystem\n" "X\x02\0\0\0id" "\x85R.";
		struct buf evil = { 0 };

		put(&evil, posix, sizeof(posix) - 1);
		write_ckpt(dir, "evil.bin", &evil, data, len, 0, 0, false, NULL,
			   "data.pkl: global 'posix.system' is not allowed");
		free(evil.b);
	}
	{
		/* beyond its storage, in a real archive */
		struct tspec over = plain;

		over.shape[0] = 5;
		pkl = pk_state_dict(&over, 1);
		write_ckpt(dir, "over.bin", &pkl, data, len, 1, 0, false, NULL,
			   "data.pkl: tensor 'w': view reaches element 19 of storage '0', "
			   "which holds 12 elements");
		free(pkl.b);
	}
	{
		struct zentry e[2] = {
			{ "data.pkl", "\x80\x02}.", 4, 0, 0 },
			{ "x/data.pkl", "\x80\x02}.", 4, 0, 0 },
		};
		struct buf z = zip_build(e, 2, false);

		expect_bytes(dir, "flat.bin", z.b, z.n, "zip entry 'data.pkl' is not in a folder");
		free(z.b);
		e[0].name = "x/other";
		e[1].name = "x/more";
		z = zip_build(e, 2, false);
		expect_bytes(dir, "nopkl.bin", z.b, z.n, "zip archive has no 'x/data.pkl'");
		free(z.b);
		/* entries overlapping: the first claims the second's bytes */
		e[0].name = "x/data.pkl";
		z = zip_build(e, 2, false);
		z.b[z.n - 22 - 2 * 46 - 16 + 20] = 20;   /* first central csize */
		z.b[z.n - 22 - 2 * 46 - 16 + 24] = 20;   /* and usize */
		expect_bytes(dir, "overlap.bin", z.b, z.n, "zip entries 'x/data.pkl' and 'x/more' overlap");
		free(z.b);
		e[1].name = "x/data.pkl";
		z = zip_build(e, 2, false);
		expect_bytes(dir, "twice.bin", z.b, z.n, "zip entry 'x/data.pkl' appears twice");
		free(z.b);
	}
	fixture_rmtree(dir);
	free(dir);
}

/* ---------------------------------------------------------------- deflated storages */

/* Offset of the local header of entry `name` in a zip image. */
static size_t local_header(const unsigned char *z, size_t n, const char *name)
{
	return get_le32(z + central_entry(z, n, name) + 42);
}

/* Offset of the first data byte of entry `name`. */
static size_t local_data(const unsigned char *z, size_t n, const char *name)
{
	size_t lho = local_header(z, n, name);

	return lho + 30 + (z[lho + 26] | z[lho + 27] << 8) + (z[lho + 28] | z[lho + 29] << 8);
}

/* Set a 32-bit field of entry `name` in its central (at +central) and local
 * (at +local) headers: Python's zipfile writes CRC and sizes in both. */
static void set_field(unsigned char *z, size_t n, const char *name, size_t central,
		      size_t local, uint32_t v)
{
	set_le32(z + central_entry(z, n, name) + central, v);
	set_le32(z + local_header(z, n, name) + local, v);
}

/* Open path expecting an I/O error whose message holds needle. */
static void expect_io_error(const char *path, const char *needle)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	if (weld_model_open(&m, path, &err) == 0)
		fail_msg("'%s' opened; expected '%s'", path, needle);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	assert_int_equal(err.status, WELD_ERR_IO);
}

/* Number of entries of a folder, "." and ".." aside. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/*
 * views_deflated.bin, damaged: a broken deflate stream, a CRC that does not
 * match, a declared size that is not the pickle's. Each is refused naming
 * the file and the entry, before any tensor is registered.
 */
static void test_zip_deflated_damage(void **state)
{
	char *src = data_path("views_deflated.bin"), *dir = fixture_tmpdir();
	size_t n;
	unsigned char *orig = slurp(src, &n), *z = malloc(n);

	(void)state;
	assert_non_null(dir);
	memcpy(z, orig, n);
	z[local_data(z, n, "archive/data/1") + 5] ^= 0x55;
	expect_bytes(dir, "a.bin", z, n, "zip entry 'archive/data/1': data: the deflate stream "
		     "is damaged");
	memcpy(z, orig, n);
	set_field(z, n, "archive/data/1", 16, 14,
		  get_le32(z + central_entry(z, n, "archive/data/1") + 16) ^ 1);
	expect_bytes(dir, "b.bin", z, n, "'archive/data/1': CRC mismatch (the file is corrupt)");
	/* the zip declares 100 bytes, the pickle 96 */
	memcpy(z, orig, n);
	set_field(z, n, "archive/data/1", 24, 22, 100);
	expect_bytes(dir, "c.bin", z, n, "tensor 'permuted': storage '1' is declared as 96 bytes "
		     "but its deflated record 'archive/data/1' as 100");
	/* the same, central and local headers disagreeing */
	memcpy(z, orig, n);
	set_le32(z + central_entry(z, n, "archive/data/1") + 24, 100);
	expect_bytes(dir, "d.bin", z, n, "zip entry 'archive/data/1': local header says "
		     "uncompressed size 96, the central directory 100");
	fixture_rmtree(dir);
	free(dir);
	free(orig);
	free(z);
	free(src);
}

/* A checkpoint of one tensor t whose storage '0' is data[0..len), deflated,
 * with `declared` as its uncompressed size. */
static void write_deflated(const char *dir, const char *name, const struct tspec *t,
			   const void *data, size_t len, uint64_t declared, const char *needle)
{
	struct buf pkl = pk_state_dict(t, 1);
	struct zentry e[3] = {
		{ "ckpt/data.pkl", pkl.b, pkl.n, 0, 0 },
		{ "ckpt/data/0", data, len, 8, declared },
		{ "ckpt/version", "3\n", 2, 0, 0 },
	};
	struct buf z = zip_build(e, 3, false);

	expect_bytes(dir, name, z.b, z.n, needle);
	free(z.b);
	free(pkl.b);
}

/*
 * Deflated data that lies about its size where the pickle and the zip
 * agree: it inflates to fewer bytes, or to more (refused at the first byte
 * too many), or declares more than its compressed bytes can hold (a zip
 * bomb, refused before anything is inflated).
 */
static void test_zip_deflated_sizes(void **state)
{
	static const float w[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	char *dir = fixture_tmpdir();
	struct tspec t = plain;

	(void)state;
	assert_non_null(dir);
	write_deflated(dir, "ok.bin", &t, w, sizeof(w), 0, NULL);
	t.numel = 13;
	write_deflated(dir, "fewer.bin", &t, w, sizeof(w), 52, "zip entry 'ckpt/data/0': data "
		       "inflates to 48 bytes, not the 52 its uncompressed size declares");
	t.numel = 11;
	t.ndim = 1;
	t.shape[0] = 11;
	t.stride[0] = 1;
	write_deflated(dir, "more.bin", &t, w, sizeof(w), 44, "zip entry 'ckpt/data/0': data "
		       "inflates to more than the 44 bytes its uncompressed size declares");
	t.numel = 1 << 28;
	write_deflated(dir, "bomb.bin", &t, w, sizeof(w), 1u << 30, "tensor 'w': storage '0': "
		       "record 'ckpt/data/0': ");
	write_deflated(dir, "bomb2.bin", &t, w, sizeof(w), 1u << 30, "compressed bytes cannot "
		       "inflate to the 1073741824 its uncompressed size declares");
	fixture_rmtree(dir);
	free(dir);
}

/*
 * The inflated copy lives in $TMPDIR and leaves no name there, while the
 * model is open or after; a TMPDIR where no file can be made is an I/O
 * error naming it.
 */
static void test_zip_deflated_tmpdir(void **state)
{
	char *src = data_path("views_deflated.bin"), *dir = fixture_tmpdir();
	const char *old = getenv("TMPDIR");
	char *saved = old ? strdup(old) : NULL;
	struct weld_error err = { 0 };
	weld_model *m = NULL;
	float f;

	(void)state;
	assert_non_null(dir);
	assert_int_equal(setenv("TMPDIR", dir, 1), 0);
	if (weld_model_open(&m, src, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(count_entries(dir), 0);
	assert_int_equal(weld_model_read(m, (size_t)weld_model_find(m, "row"), 0, 1, &f, &err), 0);
	assert_true(f == 0.0f);   /* base[1][0] = -1 + 4 * 0.25 */
	weld_model_close(m);
	assert_int_equal(count_entries(dir), 0);
	assert_int_equal(setenv("TMPDIR", "/nonexistent/weld-test", 1), 0);
	expect_io_error(src, "cannot create a temporary file in '/nonexistent/weld-test' for its "
			"deflated storages");
	if (saved)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	free(saved);
	fixture_rmtree(dir);
	free(dir);
	free(src);
}

/*
 * A deflated data.pkl may inflate to at most 64 times its compressed size,
 * so that the pickle's memory budget (which grows with the inflated size)
 * stays proportional to the file: 1 MB of empty tuples deflates ~1000:1 and
 * is refused before it is inflated; a state dict deflated is read.
 */
static void test_zip_deflated_pickle_ratio(void **state)
{
	static const float w[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	const void *data[1] = { w };
	const size_t len[1] = { sizeof(w) };
	char *dir = fixture_tmpdir();
	struct buf bomb = { 0 }, ok = pk_state_dict(&plain, 1);

	(void)state;
	assert_non_null(dir);
	op(&bomb, 0x80);
	op(&bomb, 2);
	op(&bomb, ']');
	for (size_t i = 0; i < (1u << 19); i++) {
		op(&bomb, ')');
		op(&bomb, 'a');
	}
	op(&bomb, '.');
	write_ckpt(dir, "bomb.bin", &bomb, NULL, NULL, 0, 8, false, NULL,
		   "bomb.bin': data.pkl: ");
	write_ckpt(dir, "bomb.bin", &bomb, NULL, NULL, 0, 8, false, NULL,
		   "declare 1048580, more than 64 times as many");
	write_ckpt(dir, "ok.bin", &ok, data, len, 1, 8, false, NULL, NULL);
	free(ok.b);
	free(bomb.b);
	fixture_rmtree(dir);
	free(dir);
}

/* The zip layer on its own, for what the model layer does not show. */
static void test_zip_directory(void **state)
{
	struct zentry e[3] = {
		{ "p/b", "bb", 2, 0, 0 }, { "p/a", "a", 1, 0, 0 }, { "p/c", "ccc", 3, 8, 0 },
	};
	struct buf z = zip_build(e, 3, true);
	char *dir = fixture_tmpdir(), *path = fixture_write(dir, "z.zip", z.b, z.n);
	struct weld_zip_dir d;
	struct weld_error err = { 0 };
	const struct weld_zip_entry *a;
	int fd = open(path, O_RDONLY);

	(void)state;
	assert_int_equal(weld_zip_read_dir(fd, z.n, path, &d, &err), 0);
	assert_int_equal(d.n, 3);
	assert_string_equal(d.entries[0].name, "p/b");
	a = weld_zip_find(&d, "p/a");
	assert_non_null(a);
	assert_int_equal(a->usize, 1);
	assert_int_equal(a->data, 30 + 3 + 2 + 30 + 3);
	assert_memory_equal(z.b + a->data, "a", 1);
	assert_int_equal(weld_zip_find(&d, "p/c")->method, 8);
	assert_null(weld_zip_find(&d, "p/d"));
	weld_zip_dir_free(&d);
	weld_zip_dir_free(NULL);
	/* the same bytes with a size that lies is refused */
	assert_int_equal(weld_zip_read_dir(fd, z.n - 1, path, &d, &err), -1);
	close(fd);
	fixture_rmtree(dir);
	free(dir);
	free(path);
	free(z.b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pickle_plain_tensor),
		cmocka_unit_test(test_pickle_views_and_shared_storage),
		cmocka_unit_test(test_pickle_large_dict_long_memo),
		cmocka_unit_test(test_pickle_rebuild_v3_and_untyped),
		cmocka_unit_test(test_pickle_long1_sizes),
		cmocka_unit_test(test_pickle_wrapper_and_nesting),
		cmocka_unit_test(test_legacy_probe),
		cmocka_unit_test(test_pickle_refuses_code_execution),
		cmocka_unit_test(test_pickle_refuses_object_opcodes),
		cmocka_unit_test(test_pickle_refuses_deep_nesting),
		cmocka_unit_test(test_pickle_refuses_cycles_and_shared_dicts),
		cmocka_unit_test(test_pickle_refuses_bad_memo),
		cmocka_unit_test(test_pickle_refuses_truncation),
		cmocka_unit_test(test_pickle_refuses_bad_structure),
		cmocka_unit_test(test_pickle_refuses_bad_views),
		cmocka_unit_test(test_pickle_refuses_bad_rebuild_args),
		cmocka_unit_test(test_pickle_memory_budget),
		cmocka_unit_test(test_fixture_basic),
		cmocka_unit_test(test_fixture_views),
		cmocka_unit_test(test_fixture_wrapped),
		cmocka_unit_test(test_fixture_nested),
		cmocka_unit_test(test_fixture_protocol4),
		cmocka_unit_test(test_fixture_parameters),
		cmocka_unit_test(test_fixture_sharded_folder),
		cmocka_unit_test(test_fixture_offsets),
		cmocka_unit_test(test_fixture_refusals),
		cmocka_unit_test(test_fixture_deflated),
		cmocka_unit_test(test_zip_patched_fixture),
		cmocka_unit_test(test_zip_damage_is_refused_or_read_right),
		cmocka_unit_test(test_zip_built_archives),
		cmocka_unit_test(test_zip_deflated_damage),
		cmocka_unit_test(test_zip_deflated_sizes),
		cmocka_unit_test(test_zip_deflated_tmpdir),
		cmocka_unit_test(test_zip_directory),
		cmocka_unit_test(test_zip_deflated_pickle_ratio),
	};
	return cmocka_run_group_tests_name("torch", tests, NULL, NULL);
}
