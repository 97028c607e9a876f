/* test_bundle_tar.c - unpacking tar bundles: what lands on disk, what is refused, the digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "agent/exec/exec.h"
#include "core/core.h"
#include "fixture.h"

static char dir[64];
static char dest[96];

static int setup(void **state)
{
	(void)state;
	fx_tmpdir(dir, sizeof dir, "tar");
	snprintf(dest, sizeof dest, "%s/b", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fx_rmtree(dir);
	return 0;
}

/* A tar being built in memory. */
struct tw {
	struct archive *a;
	uint8_t *buf;
	size_t cap, used;
};

static void tw_open(struct tw *t, bool gzip)
{
	t->cap = 8u << 20;
	t->buf = xmalloc(t->cap);
	t->used = 0;
	t->a = archive_write_new();
	assert_int_equal(archive_write_set_format_pax_restricted(t->a), ARCHIVE_OK);
	if (gzip)
		assert_int_equal(archive_write_add_filter_gzip(t->a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(t->a, t->buf, t->cap, &t->used), ARCHIVE_OK);
}

static void tw_add(struct tw *t, const char *path, mode_t type, mode_t perm, const char *data,
		   const char *link)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	size_t n = data ? strlen(data) : 0;
	archive_entry_set_size(e, (la_int64_t)n);
	if (type == AE_IFLNK)
		archive_entry_set_symlink(e, link);
	if (type == AE_IFREG && link)
		archive_entry_set_hardlink(e, link);
	assert_int_equal(archive_write_header(t->a, e), ARCHIVE_OK);
	if (n)
		assert_int_equal(archive_write_data(t->a, data, n), (la_ssize_t)n);
	archive_entry_free(e);
}

static void tw_close(struct tw *t)
{
	assert_int_equal(archive_write_close(t->a), ARCHIVE_OK);
	archive_write_free(t->a);
}

static int unpack(struct tw *t, char *why, size_t whylen)
{
	int rc = exec_bundle_unpack_tar_mem(t->buf, t->used, dest, why, whylen);
	free(t->buf);
	return rc;
}

static void expect_refused(struct tw *t, int want, const char *needle)
{
	char why[256];
	tw_close(t);
	assert_int_equal(unpack(t, why, sizeof why), want);
	if (!strstr(why, needle))
		fail_msg("reason \"%s\" does not mention \"%s\"", why, needle);
	struct stat st;
	assert_int_not_equal(lstat(dest, &st), 0); /* nothing left behind */
}

static void write_file(const char *path, const char *data, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(data, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* A tar and the same tree made directly have the same digest; set-id bits are dropped. */
static void test_unpacks_and_matches_the_directory_digest(void **state)
{
	(void)state;
	for (int gz = 0; gz < 2; gz++) {
		struct tw t;
		tw_open(&t, gz);
		tw_add(&t, "./", AE_IFDIR, 0755, NULL, NULL);
		tw_add(&t, "./bin/run.sh", AE_IFREG, 04755, "#!/bin/sh\necho hi\n", NULL);
		tw_add(&t, "./data", AE_IFDIR, 0750, NULL, NULL);
		tw_add(&t, "./data/x.txt", AE_IFREG, 0644, "x\n", NULL);
		tw_add(&t, "./link", AE_IFLNK, 0777, NULL, "bin/run.sh");
		tw_close(&t);
		char why[256];
		assert_int_equal(unpack(&t, why, sizeof why), 0);
		struct stat st;
		assert_int_equal(stat(dest, &st), 0);
		char p[160];
		snprintf(p, sizeof p, "%s/bin/run.sh", dest);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0755); /* setuid dropped */
		uint8_t d1[SHA256_LEN], d2[SHA256_LEN];
		assert_int_equal(exec_bundle_digest(dest, d1, NULL), 0);
		/* The same tree, made by hand. */
		char ref[96];
		snprintf(ref, sizeof ref, "%s/ref", dir);
		assert_int_equal(mkdir(ref, 0755), 0);
		snprintf(p, sizeof p, "%s/bin", ref);
		assert_int_equal(mkdir(p, 0755), 0);
		snprintf(p, sizeof p, "%s/bin/run.sh", ref);
		write_file(p, "#!/bin/sh\necho hi\n", 0755);
		snprintf(p, sizeof p, "%s/data", ref);
		assert_int_equal(mkdir(p, 0750), 0);
		assert_int_equal(chmod(p, 0750), 0);
		snprintf(p, sizeof p, "%s/data/x.txt", ref);
		write_file(p, "x\n", 0644);
		snprintf(p, sizeof p, "%s/link", ref);
		assert_int_equal(symlink("bin/run.sh", p), 0);
		assert_int_equal(exec_bundle_digest(ref, d2, NULL), 0);
		assert_memory_equal(d1, d2, SHA256_LEN);
		assert_int_equal(dir_remove_tree(dest), 0);
		assert_int_equal(dir_remove_tree(ref), 0);
	}
}

static void test_refuses_dotdot_and_absolute_paths(void **state)
{
	(void)state;
	struct tw t;
	tw_open(&t, false);
	tw_add(&t, "ok.txt", AE_IFREG, 0644, "fine", NULL);
	tw_add(&t, "../escape", AE_IFREG, 0644, "evil", NULL);
	expect_refused(&t, SS_EPOLICY, "../escape");
	char p[96];
	snprintf(p, sizeof p, "%s/escape", dir);
	assert_int_not_equal(access(p, F_OK), 0);

	tw_open(&t, false);
	tw_add(&t, "/etc/evil", AE_IFREG, 0644, "evil", NULL);
	expect_refused(&t, SS_EPOLICY, "relative");

	tw_open(&t, false);
	tw_add(&t, "a/./b", AE_IFREG, 0644, "x", NULL);
	expect_refused(&t, SS_EPOLICY, "a/./b");
}

/* An entry below a symbolic link an earlier entry made never writes through it. */
static void test_never_writes_through_a_symlink(void **state)
{
	(void)state;
	char outside[96];
	snprintf(outside, sizeof outside, "%s/outside", dir);
	assert_int_equal(mkdir(outside, 0755), 0);
	struct tw t;
	tw_open(&t, false);
	tw_add(&t, "l", AE_IFLNK, 0777, NULL, outside);
	tw_add(&t, "l/planted", AE_IFREG, 0644, "evil", NULL);
	expect_refused(&t, SS_EPOLICY, "below a symbolic link");
	char p[128];
	snprintf(p, sizeof p, "%s/planted", outside);
	assert_int_not_equal(access(p, F_OK), 0);

	/* Nor replaces a link with a file of the same name. */
	tw_open(&t, false);
	tw_add(&t, "l", AE_IFLNK, 0777, NULL, outside);
	tw_add(&t, "l", AE_IFREG, 0644, "evil", NULL);
	expect_refused(&t, SS_EPOLICY, "twice");
}

static void test_refuses_hard_links_devices_and_fifos(void **state)
{
	(void)state;
	struct tw t;
	tw_open(&t, false);
	tw_add(&t, "a", AE_IFREG, 0644, "x", NULL);
	tw_add(&t, "b", AE_IFREG, 0644, NULL, "a");
	expect_refused(&t, SS_EPOLICY, "hard link");

	tw_open(&t, false);
	tw_add(&t, "dev", AE_IFCHR, 0666, NULL, NULL);
	expect_refused(&t, SS_EPOLICY, "device");

	tw_open(&t, false);
	tw_add(&t, "fifo", AE_IFIFO, 0644, NULL, NULL);
	expect_refused(&t, SS_EPOLICY, "fifo");
}

static void test_refuses_duplicates_garbage_and_too_many_entries(void **state)
{
	(void)state;
	struct tw t;
	tw_open(&t, false);
	tw_add(&t, "a", AE_IFREG, 0644, "x", NULL);
	tw_add(&t, "a", AE_IFREG, 0644, "y", NULL);
	expect_refused(&t, SS_EPOLICY, "twice");

	char why[256];
	static const char junk[] = "this is not a tar archive at all, not even close";
	assert_int_equal(exec_bundle_unpack_tar_mem(junk, sizeof junk, dest, why, sizeof why), SS_EPARSE);
	struct stat st;
	assert_int_not_equal(lstat(dest, &st), 0);

	tw_open(&t, false);
	for (int i = 0; i <= EXEC_BUNDLE_MAX_FILES; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%05d", i);
		tw_add(&t, name, AE_IFREG, 0644, NULL, NULL);
	}
	expect_refused(&t, SS_ELIMIT, "entries");
}

/* The destination must not exist yet: an unpack never merges into a tree. */
static void test_destination_must_be_new(void **state)
{
	(void)state;
	assert_int_equal(mkdir(dest, 0755), 0);
	struct tw t;
	tw_open(&t, false);
	tw_add(&t, "a", AE_IFREG, 0644, "x", NULL);
	tw_close(&t);
	char why[256];
	assert_int_equal(unpack(&t, why, sizeof why), SS_EIO);
	assert_int_equal(rmdir(dest), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unpacks_and_matches_the_directory_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_dotdot_and_absolute_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_writes_through_a_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_hard_links_devices_and_fifos, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_duplicates_garbage_and_too_many_entries, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_destination_must_be_new, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
