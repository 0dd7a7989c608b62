/*
 * test_util.c - hashing, size parsing and formatting (lib/util.c), error
 * filling (lib/error.c), name tables (name_table.c) and the JSON token
 * walk (json_scan.c).
 *
 * The XXH3 values were computed with `xxhsum -H3` on files holding the same
 * bytes, so they check that weld hashes what the Debian tool hashes.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "weld.h"
#include "json_scan.h"
#include "name_table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- hashing */

static void test_xxh3_known_values(void **state)
{
	char hex[17];

	(void)state;
	assert_true(weld_xxh3("", 0) == 0x2d06800538d394c2ull);
	assert_true(weld_xxh3(NULL, 0) == 0x2d06800538d394c2ull);
	assert_true(weld_xxh3("abc", 3) == 0x78af5f94892f3950ull);
	weld_hex64(weld_xxh3("abc", 3), hex);
	assert_string_equal(hex, "78af5f94892f3950");
}

static void test_hex64(void **state)
{
	char hex[17];

	(void)state;
	memset(hex, 'x', sizeof(hex));
	weld_hex64(0, hex);
	assert_string_equal(hex, "0000000000000000");
	weld_hex64(UINT64_MAX, hex);
	assert_string_equal(hex, "ffffffffffffffff");
	weld_hex64(0x0123456789abcdefull, hex);
	assert_string_equal(hex, "0123456789abcdef");
	weld_hex64(0xa, hex);
	assert_string_equal(hex, "000000000000000a");
}

/* ---------------------------------------------------------------- sizes */

static void test_parse_size_accepts(void **state)
{
	static const struct {
		const char *s;
		uint64_t want;
	} cases[] = {
		{ "0", 0 },
		{ "1000", 1000 },
		{ "5G", 5000000000ull },
		{ "5g", 5000000000ull },
		{ "5GB", 5000000000ull },
		{ "5gb", 5000000000ull },
		{ "512M", 512000000ull },
		{ "1.5G", 1500000000ull },
		{ "2Gi", 2147483648ull },
		{ "2GiB", 2147483648ull },
		{ "2gib", 2147483648ull },
		{ "1K", 1000 },
		{ "1k", 1000 },
		{ "1KiB", 1024 },
		{ "1Ki", 1024 },
		{ "3T", 3000000000000ull },
		{ "1Ti", 1099511627776ull },
		{ "512B", 512 },
		{ "0.5Ki", 512 },
		{ "0.001K", 1 },
		{ "1.0009K", 1000 },
		{ "0.1M", 100000 },
		{ "0.29K", 290 },
		{ "1.5", 1 },
		{ "007M", 7000000 },
		{ "0.999999999999999999999Ki", 1023 },
		{ "18446744073709551615", UINT64_MAX },
		{ "18446744073.709551615G", UINT64_MAX },
		{ "16777215.99999999999Ti", 18446744073709551605ull },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = 42;

		if (weld_parse_size(cases[i].s, &got) != 0)
			fail_msg("'%s' rejected", cases[i].s);
		if (got != cases[i].want)
			fail_msg("'%s': %llu, want %llu", cases[i].s,
				 (unsigned long long)got, (unsigned long long)cases[i].want);
	}
}

static void test_parse_size_rejects(void **state)
{
	static const char *const cases[] = {
		"", "-1", "+1", " 1", "1 ", "5 G", "12X", "G", "Gi", "B", ".5G", "1.",
		"1.G", "1..5", "1e9", "0x10", "1Gb2", "1iB", "1GiBB", "5KK", "1Bi",
		"99999999999999999999", "18446744073709551616", "18446744073709551.616K",
		"16777216Ti", "18446744074G", "nan", "inf",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = 42;

		if (weld_parse_size(cases[i], &got) != -1)
			fail_msg("'%s' accepted as %llu", cases[i], (unsigned long long)got);
		assert_true(got == 42);
	}
	assert_int_equal(weld_parse_size(NULL, &(uint64_t){ 0 }), -1);
}

static void test_format_size(void **state)
{
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
		{ 0, "0 B" },
		{ 512, "512 B" },
		{ 999, "999 B" },
		{ 1000, "1.00 kB" },
		{ 1500, "1.50 kB" },
		{ 1504, "1.50 kB" },
		{ 1505, "1.51 kB" },
		{ 3200000, "3.20 MB" },
		{ 999994, "999.99 kB" },
		{ 999995, "1.00 MB" },
		{ 999999, "1.00 MB" },
		{ 1073741824, "1.07 GB" },
		{ 5000000000ull, "5.00 GB" },
		{ 1234567890123ull, "1.23 TB" },
		{ 2000000000000000ull, "2.00 PB" },
		{ UINT64_MAX, "18.45 EB" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		weld_format_size(cases[i].n, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].want);
	}
}

static void test_format_size_small_buffer(void **state)
{
	char buf[8] = "xxxxxxx";

	(void)state;
	weld_format_size(1500, buf, 4);
	assert_string_equal(buf, "1.5");
	assert_int_equal(buf[4], 'x');
	weld_format_size(1500, buf, 0);
	assert_string_equal(buf, "1.5");
	weld_format_size(1500, NULL, 0);
}

/* ---------------------------------------------------------------- errors */

static void test_fail_fills_error(void **state)
{
	struct weld_error err = { .sys_errno = 99 };

	(void)state;
	errno = EINTR;
	assert_int_equal(weld_fail(&err, WELD_ERR_FORMAT, "tensor '%s': bad %d", "x.weight", 7), -1);
	assert_int_equal(err.status, WELD_ERR_FORMAT);
	assert_int_equal(err.sys_errno, 0);
	assert_string_equal(err.msg, "tensor 'x.weight': bad 7");
	assert_int_equal(errno, EINTR);
	assert_int_equal(weld_fail(NULL, WELD_ERR_ARG, "ignored"), -1);
}

static void test_fail_errno_appends_reason(void **state)
{
	struct weld_error err = { 0 };
	char want[sizeof(err.msg)];

	(void)state;
	snprintf(want, sizeof(want), "cannot open 'a.safetensors': %s", strerror(ENOENT));
	errno = ENOENT;
	assert_int_equal(weld_fail_errno(&err, "cannot open '%s'", "a.safetensors"), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(err.status, WELD_ERR_IO);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_string_equal(err.msg, want);

	errno = EACCES;
	assert_int_equal(weld_fail_errno(NULL, "ignored"), -1);
	assert_int_equal(errno, EACCES);
}

static void test_fail_truncates_long_messages(void **state)
{
	struct weld_error err;
	char big[3000];

	(void)state;
	memset(&err, 'z', sizeof(err));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	weld_fail(&err, WELD_ERR_ARG, "%s", big);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	errno = EIO;
	weld_fail_errno(&err, "%s", big);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_int_equal(err.sys_errno, EIO);
}

static void test_utf8_valid(void **state)
{
	(void)state;
	assert_true(weld_utf8_valid("plain/path"));
	assert_true(weld_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_false(weld_utf8_valid("bad\xff"));
	assert_false(weld_utf8_valid("\xc0\xaf"));          /* overlong '/' */
	assert_false(weld_utf8_valid("\xed\xa0\x80"));      /* a surrogate */
	assert_false(weld_utf8_valid("\xf4\x90\x80\x80"));  /* above U+10FFFF */
	assert_false(weld_utf8_valid("cut \xe2\x82"));       /* truncated */
}

static void test_read_small_file_refuses_non_regular(void **state)
{
	struct weld_error err = { 0 };
	char *text = NULL;

	(void)state;
	assert_int_equal(weld_read_small_file("/dev/null", 100, &text, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_int_equal(weld_read_small_file("/", 100, &text, NULL, &err), -1);
	assert_null(text);
}

/* A FIFO, a folder or a device is refused at once, saying what it is; a
 * missing file keeps its errno. */
static void test_open_regular_refuses_without_blocking(void **state)
{
	char dir[] = "/tmp/weld-open-XXXXXX", fifo[64], file[64];
	struct weld_error err = { 0 };
	uint64_t size = 0;
	int fd;

	(void)state;
	alarm(20);      /* a FIFO opened for reading would wait for a writer */
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(file, sizeof(file), "%s/file", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(weld_open_regular(fifo, &size, &err), -1);
	assert_non_null(strstr(err.msg, "is a FIFO, not a regular file"));
	assert_non_null(strstr(err.msg, fifo));
	assert_int_equal(weld_open_regular(dir, &size, &err), -1);
	assert_non_null(strstr(err.msg, "is a folder"));
	assert_int_equal(weld_open_regular("/dev/null", &size, &err), -1);
	assert_non_null(strstr(err.msg, "is a character device"));
	assert_int_equal(weld_open_regular(file, &size, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0 && write(fd, "abc", 3) == 3);
	close(fd);
	fd = weld_open_regular(file, &size, &err);
	assert_true(fd >= 0);
	assert_int_equal(size, 3);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	alarm(0);
	unlink(fifo);
	unlink(file);
	rmdir(dir);
}

/* ---------------------------------------------------------------- name tables */

/*
 * 200,000 names: each add and each find compares names byte by byte only
 * when their 64-bit hashes are equal, so the count of comparisons stays at
 * one per successful find (the match itself), not a walk of the names.
 */
static void test_name_table_is_linear(void **state)
{
	size_t n = 200000, v = 0;
	char (*names)[16] = malloc(n * sizeof(*names));
	struct weld_name_table t;

	(void)state;
	assert_non_null(names);
	assert_int_equal(weld_name_table_init(&t, 10), 0);     /* grows as needed */
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "layer.%zu", i);
		assert_int_equal(weld_name_table_add(&t, names[i], i, NULL), 0);
	}
	assert_int_equal(t.n, n);
	assert_true(t.compares <= 4);
	for (size_t i = 0; i < n; i++) {
		assert_true(weld_name_table_find(&t, names[i], &v));
		assert_int_equal(v, i);
	}
	assert_true(t.compares <= n + 4);
	assert_false(weld_name_table_find(&t, "layer.200000", NULL));
	assert_false(weld_name_table_find(&t, "", NULL));
	/* a name given twice: not added, its value reported */
	assert_int_equal(weld_name_table_add(&t, "layer.77777", 1, &v), 1);
	assert_int_equal(v, 77777);
	assert_int_equal(t.n, n);
	weld_name_table_free(&t);
	weld_name_table_free(&t);      /* emptied: freeing again is fine */
	free(names);
}

static void test_name_table_equal_strings_not_pointers(void **state)
{
	struct weld_name_table t;
	char a[] = "same", b[] = "same";
	size_t v = 0;

	(void)state;
	assert_int_equal(weld_name_table_init(&t, 0), 0);
	assert_int_equal(weld_name_table_add(&t, a, 7, NULL), 0);
	assert_int_equal(weld_name_table_add(&t, b, 8, &v), 1);
	assert_int_equal(v, 7);
	assert_int_equal(weld_name_table_add(&t, "", 9, NULL), 0);
	assert_true(weld_name_table_find(&t, "", &v));
	assert_int_equal(v, 9);
	weld_name_table_free(&t);
}

/* ---------------------------------------------------------------- JSON scan */

static void test_json_number_forms(void **state)
{
	static const struct { const char *s; enum weld_json_number f; } cases[] = {
		{ "0", WELD_JSON_INTEGER }, { "7", WELD_JSON_INTEGER },
		{ "-0", WELD_JSON_INTEGER }, { "9007199254740993", WELD_JSON_INTEGER },
		{ "2.0", WELD_JSON_REAL }, { "2e0", WELD_JSON_REAL }, { "2E+5", WELD_JSON_REAL },
		{ "-0.5e-3", WELD_JSON_REAL }, { "0.0", WELD_JSON_REAL },
		{ "01", WELD_JSON_NOT_A_NUMBER }, { "-01", WELD_JSON_NOT_A_NUMBER },
		{ "00", WELD_JSON_NOT_A_NUMBER }, { "+1", WELD_JSON_NOT_A_NUMBER },
		{ "1.", WELD_JSON_NOT_A_NUMBER }, { ".5", WELD_JSON_NOT_A_NUMBER },
		{ "1e", WELD_JSON_NOT_A_NUMBER }, { "1e+", WELD_JSON_NOT_A_NUMBER },
		{ "-", WELD_JSON_NOT_A_NUMBER }, { "", WELD_JSON_NOT_A_NUMBER },
		{ "1-2", WELD_JSON_NOT_A_NUMBER }, { "1.2.3", WELD_JSON_NOT_A_NUMBER },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (weld_json_number_form(cases[i].s, strlen(cases[i].s)) != cases[i].f)
			fail_msg("'%s': form %d, expected %d", cases[i].s,
				 weld_json_number_form(cases[i].s, strlen(cases[i].s)), cases[i].f);
	}
}

static void test_json_has_nul(void **state)
{
	(void)state;
	assert_true(weld_json_has_nul("a\\u0000", 7));
	assert_true(weld_json_has_nul("\\\\\\u0000", 8));   /* \\ then \u0000 */
	assert_false(weld_json_has_nul("\\\\u0000", 7));    /* \\ then u0000 */
	assert_false(weld_json_has_nul("\\u0001", 6));
	assert_false(weld_json_has_nul("\\u000", 5));
	assert_false(weld_json_has_nul("u0000", 5));
}

struct seen {
	char log[512];
};

/* Append "depth:kind:text@path" for each token, path as key/index steps. */
static int log_token(void *ctx, const struct weld_json_token *t)
{
	struct seen *s = ctx;
	size_t l = strlen(s->log);

	l += (size_t)snprintf(s->log + l, sizeof(s->log) - l, "%d%c%.*s@", t->depth,
			      "KSNL"[t->kind], (int)t->len, t->text);
	for (int d = 0; d < t->depth; d++) {
		const struct weld_json_frame *f = &t->path[d];

		if (f->object)
			l += (size_t)snprintf(s->log + l, sizeof(s->log) - l, "/%.*s",
					      (int)f->key_len, f->key ? f->key : "");
		else
			l += (size_t)snprintf(s->log + l, sizeof(s->log) - l, "/%zu", f->index);
	}
	snprintf(s->log + l, sizeof(s->log) - l, " ");
	return 0;
}

static int stop_at_number(void *ctx, const struct weld_json_token *t)
{
	(void)ctx;
	return t->kind == WELD_JSON_NUMBER ? -1 : 0;
}

static void test_json_scan_paths(void **state)
{
	const char *text = "{\"a\":{\"b\":[1, {\"c\":\"x\\\"y\"}]}, \"d\":true,\"e\":[[],[2]]}";
	struct seen s = { "" };
	char deep[300];

	(void)state;
	assert_int_equal(weld_json_scan(text, strlen(text), log_token, &s), 0);
	assert_string_equal(s.log,
			    "1Ka@/a 2Kb@/a/b 3N1@/a/b/0 4Kc@/a/b/1/c 4Sx\\\"y@/a/b/1/c "
			    "1Kd@/d 1Ltrue@/d 1Ke@/e 3N2@/e/1/0 ");
	assert_int_equal(weld_json_scan(text, strlen(text), stop_at_number, NULL), -1);
	/* nesting past the limit stops the walk */
	memset(deep, '[', sizeof(deep));
	assert_int_equal(weld_json_scan(deep, sizeof(deep), log_token, &s), WELD_JSON_TOO_DEEP);
	memset(deep, '[', WELD_JSON_MAX_DEPTH);
	assert_int_equal(weld_json_scan(deep, WELD_JSON_MAX_DEPTH, log_token, &s), 0);
	/* what it does not understand ends the walk quietly */
	s.log[0] = 0;
	assert_int_equal(weld_json_scan("{\"a\":#,\"b\":1}", 13, log_token, &s), 0);
	assert_string_equal(s.log, "1Ka@/a ");
	s.log[0] = 0;
	assert_int_equal(weld_json_scan("{\"a\":\"open", 10, log_token, &s), 0);
	assert_string_equal(s.log, "1Ka@/a ");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xxh3_known_values),
		cmocka_unit_test(test_hex64),
		cmocka_unit_test(test_parse_size_accepts),
		cmocka_unit_test(test_parse_size_rejects),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_format_size_small_buffer),
		cmocka_unit_test(test_fail_fills_error),
		cmocka_unit_test(test_fail_errno_appends_reason),
		cmocka_unit_test(test_fail_truncates_long_messages),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_read_small_file_refuses_non_regular),
		cmocka_unit_test(test_open_regular_refuses_without_blocking),
		cmocka_unit_test(test_name_table_is_linear),
		cmocka_unit_test(test_name_table_equal_strings_not_pointers),
		cmocka_unit_test(test_json_number_forms),
		cmocka_unit_test(test_json_has_nul),
		cmocka_unit_test(test_json_scan_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
