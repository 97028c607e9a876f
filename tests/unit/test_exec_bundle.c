/* test_exec_bundle.c - unit tests for the task package (src/agent/exec/bundle.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/exec/exec.h"
#include "core/core.h"
#include "fixture.h"

static void put(const char *dir, const char *name, const char *content, unsigned mode)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	assert_int_equal(chmod(p, mode), 0);
	free(p);
}

static int setup(void **state)
{
	char *dir = xmalloc(64);
	fx_tmpdir(dir, 64, "exec-bundle");
	chmod(dir, 0755);
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	fx_rmtree(*state);
	free(*state);
	return 0;
}

static void digest_of(const char *dir, char hex[65], struct buf *canon)
{
	uint8_t d[SHA256_LEN];
	assert_int_equal(exec_bundle_digest(dir, d, canon), 0);
	hex_encode(d, SHA256_LEN, hex);
}

static void test_listing_is_canonical_and_sensitive(void **state)
{
	const char *dir = *state;
	char h1[65], h2[65], h3[65], h4[65];
	struct buf canon;
	char *sub = xasprintf("%s/sub", dir);
	char *lnk = xasprintf("%s/link", dir);

	put(dir, "b.sh", "#!/bin/sh\necho b\n", 0755);
	put(dir, "a.txt", "hello", 0644);
	assert_int_equal(mkdir(sub, 0750), 0);
	put(sub, "x", "", 0600);
	assert_int_equal(symlink("../etc/passwd", lnk), 0);

	buf_init(&canon);
	digest_of(dir, h1, &canon);
	buf_append(&canon, "", 1);
	const char *want =
		"seeswarm-bundle-v1 0755\n"
		"f 0644 5 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 a.txt\n";
	assert_memory_equal(canon.data, want, strlen(want));
	assert_non_null(strstr((char *)canon.data, "l link\t../etc/passwd\n"));
	assert_non_null(strstr((char *)canon.data, "d 0750 sub\n"));
	assert_non_null(strstr((char *)canon.data, "f 0600 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 sub/x\n"));
	size_t count = 0;
	assert_int_equal(exec_bundle_listing_check((char *)canon.data, canon.len - 1, &count), 0);
	assert_int_equal(count, 5);
	buf_free(&canon);

	/* Same content, same digest; one mode bit or one byte changes it. */
	digest_of(dir, h2, NULL);
	assert_string_equal(h1, h2);
	char *a = xasprintf("%s/a.txt", dir);
	chmod(a, 0664);
	digest_of(dir, h3, NULL);
	assert_string_not_equal(h1, h3);
	chmod(a, 0644);
	put(dir, "a.txt", "hellO", 0644);
	digest_of(dir, h4, NULL);
	assert_string_not_equal(h1, h4);
	free(a);
	free(sub);
	free(lnk);
}

static void test_refuses_fifo_and_bad_names(void **state)
{
	const char *dir = *state;
	uint8_t d[SHA256_LEN];
	char *fifo = xasprintf("%s/pipe", dir);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	assert_int_equal(exec_bundle_digest(dir, d, NULL), SS_EPOLICY);
	unlink(fifo);
	put(dir, "bad\nname", "x", 0644);
	assert_int_equal(exec_bundle_digest(dir, d, NULL), SS_EPOLICY);
	free(fifo);
	assert_int_equal(exec_bundle_digest("/nonexistent-bundle-dir", d, NULL), SS_ENOTFOUND);
}

static void test_depth_bound(void **state)
{
	char path[4096];
	uint8_t d[SHA256_LEN];
	snprintf(path, sizeof(path), "%s", (const char *)*state);
	for (int i = 0; i < EXEC_BUNDLE_MAX_DEPTH + 2; i++) {
		strcat(path, "/d");
		assert_int_equal(mkdir(path, 0755), 0);
	}
	assert_int_equal(exec_bundle_digest(*state, d, NULL), SS_ELIMIT);
}

static void test_listing_check_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"seeswarm-bundle-v1 0755",                              /* no newline */
		"seeswarm-bundle-v2 0755\n",
		"seeswarm-bundle-v1 0955\n",
		"seeswarm-bundle-v1 0755\nd 0755 b\nd 0755 a\n",        /* unsorted */
		"seeswarm-bundle-v1 0755\nd 0755 a\nd 0755 a\n",        /* duplicate */
		"seeswarm-bundle-v1 0755\nd 0755 ../a\n",
		"seeswarm-bundle-v1 0755\nd 0755 /a\n",
		"seeswarm-bundle-v1 0755\nd 0755 a//b\n",
		"seeswarm-bundle-v1 0755\nf 0644 01 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 a\n",
		"seeswarm-bundle-v1 0755\nf 0644 1 E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 a\n",
		"seeswarm-bundle-v1 0755\nl a\n",
		"seeswarm-bundle-v1 0755\nx 0755 a\n",
		"seeswarm-bundle-v1 0755\nd 0755 a",                    /* truncated */
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = exec_bundle_listing_check(bad[i], strlen(bad[i]), NULL);
		if (rc == 0)
			fail_msg("listing %zu accepted: %s", i, bad[i]);
	}
	const char *good = "seeswarm-bundle-v1 0755\nd 0755 a\nf 0644 0 "
			   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 a/b c\n"
			   "l z\tx y\n";
	assert_int_equal(exec_bundle_listing_check(good, strlen(good), NULL), 0);
}

static void test_spec_parse(void **state)
{
	(void)state;
	struct exec_spec s;
	char why[200];
	const char *j = "{\"task_id\":\"t1\",\"job_id\":\"j-9\",\"attempt\":3,"
			"\"argv\":[\"prog\",\"--x\"],\"env\":{\"A\":\"1\"},"
			"\"inputs\":{\"data.csv\":null,\"m\":\"" "00000000000000000000000000000000"
			"00000000000000000000000000000000\"},\"outputs\":[\"r/x.txt\"],"
			"\"resources\":{\"memory\":\"64M\",\"pids\":10,\"timeout\":\"1500ms\","
			"\"cpu_millicores\":500,\"disk\":1048576,\"output\":\"2M\"},\"network\":false}";
	assert_int_equal(exec_spec_parse(j, strlen(j), &s, why, sizeof(why)), 0);
	assert_string_equal(s.task_id, "t1");
	assert_string_equal(s.job_id, "j-9");
	assert_int_equal(s.attempt, 3);
	assert_int_equal(s.argc, 2);
	assert_string_equal(s.argv[1], "--x");
	assert_null(s.argv[2]);
	assert_string_equal(s.env[0], "A=1");
	assert_int_equal(s.n_inputs, 2);
	assert_false(s.inputs[0].has_expect);
	assert_true(s.inputs[1].has_expect);
	assert_string_equal(s.outputs[0], "r/x.txt");
	assert_int_equal(s.res.memory_bytes, 64ULL << 20);
	assert_int_equal(s.res.pids, 10);
	assert_int_equal(s.res.timeout_ms, 1500);
	assert_int_equal(s.res.cpu_millicores, 500);
	assert_int_equal(s.res.disk_bytes, 1048576);
	assert_int_equal(s.res.output_bytes, 2ULL << 20);
	/* Inputs still need files before the spec is valid. */
	assert_int_equal(exec_spec_validate(&s, why, sizeof(why)), SS_EINVAL);
	assert_non_null(strstr(why, "data.csv"));
	exec_spec_free(&s);

	static const char *const bad[] = {
		"[]", "{}", "{\"argv\":[]}", "{\"argv\":[\"a\"],\"bogus\":1}",
		"{\"argv\":[\"a\"],\"inputs\":{\"../x\":null}}",
		"{\"argv\":[\"a\"],\"outputs\":[\"/abs\"]}",
		"{\"argv\":[\"a\"],\"outputs\":[\"a/../b\"]}",
		"{\"argv\":[\"a\"],\"argv\":[\"b\"]}",
		"{\"argv\":[\"a\"],\"resources\":{\"memory\":\"lots\"}}",
		"{\"argv\":[\"a\"],\"task_id\":\"has space\"}",
		"{\"argv\":[\"a\"],\"bundle_digest\":\"ABC\"}",
		"{\"argv\":[\"a\"],\"env\":{\"A=B\":\"x\"}}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = exec_spec_parse(bad[i], strlen(bad[i]), &s, why, sizeof(why));
		if (rc == 0)
			fail_msg("manifest %zu accepted: %s", i, bad[i]);
		exec_spec_free(&s);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_true(exec_name_valid("data.csv"));
	assert_false(exec_name_valid(".."));
	assert_false(exec_name_valid("a/b"));
	assert_false(exec_name_valid(""));
	assert_true(exec_relpath_valid("a/b.txt"));
	assert_false(exec_relpath_valid("a//b"));
	assert_false(exec_relpath_valid("/a"));
	assert_false(exec_relpath_valid("a/"));
	assert_false(exec_relpath_valid("a/../b"));
}

static void test_capacity(void **state)
{
	(void)state;
	struct exec_capacity *c = exec_capacity_new(2000, 1ULL << 30, 100, 3);
	struct exec_resources r;
	char why[200], rep[200];
	exec_resources_default(&r); /* 1000m, 256M, 64 pids */
	assert_int_equal(exec_capacity_admit(c, &r, why, sizeof(why)), 0);
	/* 64 + 64 pids > 100 */
	assert_int_equal(exec_capacity_admit(c, &r, why, sizeof(why)), SS_ELIMIT);
	assert_non_null(strstr(why, "pids"));
	r.pids = 10;
	assert_int_equal(exec_capacity_admit(c, &r, why, sizeof(why)), 0);
	assert_int_equal(exec_capacity_admit(c, &r, why, sizeof(why)), SS_ELIMIT);
	assert_non_null(strstr(why, "CPU"));
	exec_capacity_report(c, rep, sizeof(rep));
	assert_string_equal(rep, "cpu=2000/2000m mem=536870912/1073741824 pids=74/100 tasks=2/3");
	exec_capacity_release(c, &r);
	r.cpu_millicores = 0;
	r.memory_bytes = 1ULL << 30;
	assert_int_equal(exec_capacity_admit(c, &r, why, sizeof(why)), SS_ELIMIT);
	assert_non_null(strstr(why, "memory"));
	exec_capacity_free(c);
}

/* The output window of a running task: offsets in the whole stream, the last EXEC_LIVE_KEEP bytes kept. */
static void test_live_output_window(void **state)
{
	(void)state;
	struct exec_live *l = exec_live_new();
	static uint8_t big[3 * EXEC_LIVE_KEEP], got[3 * EXEC_LIVE_KEEP];
	uint64_t at = 0, total = 0;
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7 + i / 251);
	assert_int_equal(exec_live_read(l, 0, 0, got, 10, &at, &total), 0);
	assert_int_equal(at, 0);
	assert_int_equal(total, 0);
	exec_live_append(l, 0, "hello ", 6);
	exec_live_append(l, 1, "oops", 4);
	exec_live_append(l, 0, "world", 5);
	exec_live_append(l, 2, "ignored", 7);
	assert_int_equal(exec_live_read(l, 0, 0, got, 100, &at, &total), 11);
	assert_memory_equal(got, "hello world", 11);
	assert_int_equal(exec_live_read(l, 0, 6, got, 3, &at, &total), 3);
	assert_memory_equal(got, "wor", 3);
	assert_int_equal(at, 6);
	assert_int_equal(total, 11);
	/* Past the end: nothing, from the end. */
	assert_int_equal(exec_live_read(l, 0, 50, got, 100, &at, &total), 0);
	assert_int_equal(at, 11);
	assert_int_equal(exec_live_read(l, 1, 0, got, 100, &at, &total), 4);
	assert_memory_equal(got, "oops", 4);
	/* Many small writes: the window slides, offsets stay those of the whole stream. */
	for (size_t off = 0; off < sizeof big; off += 1000)
		exec_live_append(l, 1, big + off, sizeof big - off < 1000 ? sizeof big - off : 1000);
	uint64_t end = 4 + sizeof big;
	size_t n = exec_live_read(l, 1, 0, got, sizeof got, &at, &total);
	assert_int_equal(total, end);
	assert_true(n >= EXEC_LIVE_KEEP && n <= 2 * EXEC_LIVE_KEEP);
	assert_int_equal(at + n, end);
	assert_memory_equal(got, big + (at - 4), n);
	/* One write longer than the window keeps its end. */
	exec_live_append(l, 0, big, sizeof big);
	n = exec_live_read(l, 0, 0, got, sizeof got, &at, &total);
	assert_int_equal(n, EXEC_LIVE_KEEP);
	assert_int_equal(total, 11 + sizeof big);
	assert_int_equal(at, total - EXEC_LIVE_KEEP);
	assert_memory_equal(got, big + sizeof big - EXEC_LIVE_KEEP, n);
	exec_live_free(l);
	exec_live_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listing_is_canonical_and_sensitive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_fifo_and_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_bound, setup, teardown),
		cmocka_unit_test(test_listing_check_rejects),
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_live_output_window),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_capacity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
