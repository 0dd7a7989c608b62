/*
 * test_publish.c - signals that come while an output is published
 * (formats/output_dir.c). rename() is wrapped here, so that a signal (the
 * call a SIGINT handler makes, weld_writer_cleanup_on_signal()) comes
 * between two steps of a publication, and so that a step can fail, at
 * chosen points rather than at the mercy of timing.
 *
 * A publication with -f renames twice: the existing output into the
 * temporary folder, then the new output into place (a third rename puts
 * the old one back when the second fails).
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weld.h"
#include "fixtures.h"
#include "output_dir.h"

/* ---------------------------------------------------------------- rename() */

static int renames;             /* rename() calls so far */
static int signal_at;           /* the call before which a signal comes; 0: none */
static int fail_at;             /* this call fails (EXDEV); 0: none */
static int fail_from;           /* this call and the later ones fail; 0: none */
static int handler_said = -1;   /* what weld_writer_cleanup_on_signal() returned */

int rename(const char *from, const char *to)
{
	renames++;
	if (renames == signal_at)
		handler_said = weld_writer_cleanup_on_signal(SIGINT);
	if (renames == fail_at || (fail_from && renames >= fail_from)) {
		errno = EXDEV;
		return -1;
	}
	return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

static void reset(void)
{
	renames = 0;
	signal_at = 0;
	fail_at = 0;
	fail_from = 0;
	handler_said = -1;
	(void)weld_writer_take_deferred_signal();
}

/* ---------------------------------------------------------------- helpers */

static const struct weld_out_tensor one = { "w", WELD_F32, 1, { 4 } };

/* out, an existing output folder holding old.txt. */
static char *old_output(const char *dir)
{
	char *out = fixture_path(dir, "out");

	assert_int_equal(mkdir(out, 0755), 0);
	free(fixture_write(out, "old.txt", "old", 3));
	return out;
}

/* A forced writer of out with its one tensor written. */
static weld_writer *written(const char *out)
{
	struct weld_writer_opts o = { .force = true };
	struct weld_error err = { 0 };
	weld_writer *w = NULL;
	const float v[4] = { 1, 2, 3, 4 };

	if (weld_writer_open(&w, out, &one, 1, &o, &err) != 0)
		fail_msg("weld_writer_open: %s", err.msg);
	assert_int_equal(weld_writer_write(w, 0, v, sizeof(v), &err), 0);
	return w;
}

/* Entries of dir whose name starts with ".weld-tmp-". */
static int tmp_folders(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strncmp(de->d_name, ".weld-tmp-", 10) == 0;
	closedir(d);
	return n;
}

/* out is the new output (its model.safetensors, no old.txt). */
static void assert_new_output(const char *out)
{
	char *model = fixture_path(out, "model.safetensors"), *old = fixture_path(out, "old.txt");

	assert_true(fixture_exists(model));
	assert_false(fixture_exists(old));
	free(old);
	free(model);
}

/* ---------------------------------------------------------------- tests */

/*
 * A signal while -f replaces an output, before either rename or between
 * them: the publication goes on, the new output is in place, the old one
 * and the temporary folder are gone, and the signal is kept, not acted on:
 * the merge has succeeded.
 */
static void test_signal_while_replacing_is_kept(void **state)
{
	for (int at = 1; at <= 2; at++) {
		char *out = old_output(*state);
		weld_writer *w = written(out);
		struct weld_error err = { 0 };

		reset();
		signal_at = at;
		assert_int_equal(weld_writer_commit(w, &err), 0);
		weld_writer_close(w);
		assert_int_equal(handler_said, 0);
		assert_int_equal(weld_writer_take_deferred_signal(), SIGINT);
		assert_new_output(out);
		assert_int_equal(tmp_folders(*state), 0);
		fixture_rmtree(out);
		free(out);
	}
	reset();
}

/*
 * Once the output is published and no other is under construction, a
 * signal does not turn the success into a failure; while another output is
 * still being written, it removes that one's temporary folder as before.
 */
static void test_signal_after_publication(void **state)
{
	char *out = fixture_path(*state, "out"), *other = fixture_path(*state, "other");
	weld_writer *w = written(out), *w2;
	struct weld_error err = { 0 };

	reset();
	assert_int_equal(weld_writer_commit(w, &err), 0);
	weld_writer_close(w);
	assert_false(weld_writer_cleanup_on_signal(SIGINT));
	assert_int_equal(weld_writer_take_deferred_signal(), SIGINT);
	assert_new_output(out);

	w = written(out);
	w2 = written(other);
	assert_int_equal(tmp_folders(*state), 2);
	assert_int_equal(weld_writer_commit(w, &err), 0);
	assert_int_equal(tmp_folders(*state), 1);
	assert_true(weld_writer_cleanup_on_signal(SIGINT));     /* other is not done */
	assert_int_equal(tmp_folders(*state), 0);
	weld_writer_close(w);
	weld_writer_close(w2);
	assert_false(fixture_exists(other));
	reset();
	free(other);
	free(out);
}

static volatile sig_atomic_t got_signal;

static void on_sigint(int sig)
{
	if (weld_writer_cleanup_on_signal(sig))
		got_signal = sig;
}

/*
 * A signal during a publication that then fails: the old output is put
 * back, and the signal, kept until then, is raised again; the handler then
 * removes the temporary folder, as for any interrupted merge.
 */
static void test_failed_publication_raises_kept_signal(void **state)
{
	struct sigaction sa, old_sa;
	char *out = old_output(*state), *old_txt = fixture_path(out, "old.txt");
	weld_writer *w = written(out);
	struct weld_error err = { 0 };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGINT, &sa, &old_sa), 0);
	reset();
	got_signal = 0;
	signal_at = 1;
	fail_at = 2;    /* the new output's rename; the old one goes back */
	assert_int_equal(weld_writer_commit(w, &err), -1);
	assert_int_equal(handler_said, 0);
	assert_true(fixture_exists(old_txt));
	assert_non_null(strstr(err.msg, "cannot rename the new output to '"));
	assert_non_null(strstr(err.msg, out));
	assert_int_equal(got_signal, SIGINT);
	weld_writer_close(w);
	assert_int_equal(tmp_folders(*state), 0);
	assert_int_equal(sigaction(SIGINT, &old_sa, NULL), 0);
	reset();
	free(old_txt);
	free(out);
}

/*
 * When the new output cannot be put in place and the old one cannot be put
 * back either, the old one is never removed: the message says where it is.
 */
static void test_old_output_kept_when_it_cannot_go_back(void **state)
{
	char *out = old_output(*state);
	weld_writer *w = written(out);
	struct weld_error err = { 0 };
	char *at, path[1024];

	reset();
	fail_from = 2;
	assert_int_equal(weld_writer_commit(w, &err), -1);
	weld_writer_close(w);
	at = strstr(err.msg, "it is in '");
	if (!at)
		fail_msg("message: %s", err.msg);
	snprintf(path, sizeof(path), "%s", at + strlen("it is in '"));
	*strchr(path, '\'') = 0;
	strncat(path, "/old.txt", sizeof(path) - strlen(path) - 1);
	assert_true(fixture_exists(path));
	assert_false(fixture_exists(out));
	assert_int_equal(tmp_folders(*state), 1);
	reset();
	free(out);
}

/* ---------------------------------------------------------------- sets */

static const char *const set_names[2] = { "s-00001-of-00002.gguf", "s-00002-of-00002.gguf" };

/* The text of file `name` in dir (at most 15 bytes), or "" if none. */
static const char *text_of(const char *dir, const char *name)
{
	static char buf[16];
	char *p = fixture_path(dir, name);
	FILE *f = fopen(p, "rb");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = 0;
	free(p);
	return buf;
}

/* A set output dir/s.gguf (forced) whose two files are written "new1",
 * "new2"; with_old: the folder already holds an old set "old1", "old2". */
static void set_output(struct weld_outdir *d, const char *dir, bool with_old)
{
	char *out = fixture_path(dir, "s.gguf");
	struct weld_error err = { 0 };

	if (with_old) {
		free(fixture_write(dir, set_names[0], "old1", 4));
		free(fixture_write(dir, set_names[1], "old2", 4));
	}
	if (weld_outdir_init_set(d, out, true, &err) < 0)
		fail_msg("weld_outdir_init_set: %s", err.msg);
	for (int k = 0; k < 2; k++)
		assert_int_equal(weld_outdir_add(d, set_names[k], &err), 0);
	assert_int_equal(weld_outdir_create(d, &err), 0);
	free(fixture_write(d->content, set_names[0], "new1", 4));
	free(fixture_write(d->content, set_names[1], "new2", 4));
	free(out);
}

/* A set is published beside OUT, replacing the files of the same names;
 * OUT itself is not made, and the temporary folder is gone. */
static void test_set_published_beside_out(void **state)
{
	struct weld_outdir d;
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "s.gguf");

	reset();
	set_output(&d, *state, true);
	assert_int_equal(weld_outdir_publish_set(&d, &err), 0);
	weld_outdir_release(&d);
	assert_string_equal(text_of(*state, set_names[0]), "new1");
	assert_string_equal(text_of(*state, set_names[1]), "new2");
	assert_false(fixture_exists(out));
	assert_int_equal(tmp_folders(*state), 0);
	free(out);
}

/* The second file cannot be renamed: the first is taken back and the old
 * set is whole again; nothing of the new one is left. */
static void test_set_failed_rename_puts_old_set_back(void **state)
{
	struct weld_outdir d;
	struct weld_error err = { 0 };

	reset();
	set_output(&d, *state, true);
	fail_at = 2;
	assert_int_equal(weld_outdir_publish_set(&d, &err), -1);
	assert_non_null(strstr(err.msg, "cannot rename the new output to"));
	weld_outdir_release(&d);
	assert_string_equal(text_of(*state, set_names[0]), "old1");
	assert_string_equal(text_of(*state, set_names[1]), "old2");
	assert_int_equal(tmp_folders(*state), 0);
	reset();
}

/* Without -f, a file of the set that appeared meanwhile is not replaced. */
static void test_set_refuses_existing_file_unforced(void **state)
{
	struct weld_outdir d;
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "s.gguf");

	reset();
	assert_int_equal(weld_outdir_init_set(&d, out, false, &err), 0);
	assert_int_equal(weld_outdir_add(&d, set_names[0], &err), 0);
	assert_int_equal(weld_outdir_create(&d, &err), 0);
	free(fixture_write(d.content, set_names[0], "new1", 4));
	free(fixture_write(*state, set_names[0], "old1", 4));
	assert_int_equal(weld_outdir_publish_set(&d, &err), -1);
	assert_int_equal(err.status, WELD_ERR_EXISTS);
	weld_outdir_release(&d);
	assert_string_equal(text_of(*state, set_names[0]), "old1");
	assert_int_equal(tmp_folders(*state), 0);
	free(out);
}

/* A signal while a set is published: the publication goes on. */
static void test_set_signal_while_publishing_is_kept(void **state)
{
	struct weld_outdir d;
	struct weld_error err = { 0 };

	reset();
	set_output(&d, *state, false);
	signal_at = 2;
	assert_int_equal(weld_outdir_publish_set(&d, &err), 0);
	assert_int_equal(handler_said, 0);
	weld_outdir_release(&d);
	assert_string_equal(text_of(*state, set_names[1]), "new2");
	assert_int_equal(tmp_folders(*state), 0);
	assert_int_equal(weld_writer_take_deferred_signal(), SIGINT);
	reset();
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_signal_while_replacing_is_kept),
		D(test_signal_after_publication),
		D(test_failed_publication_raises_kept_signal),
		D(test_old_output_kept_when_it_cannot_go_back),
		D(test_set_published_beside_out),
		D(test_set_failed_rename_puts_old_set_back),
		D(test_set_refuses_existing_file_unforced),
		D(test_set_signal_while_publishing_is_kept),
	};
#undef D
	return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
