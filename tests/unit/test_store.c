/* test_store.c - the SQLite store: queued writes, group commit, durability across crashes. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/store.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/ss-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/state.db", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	return 0;
}

static void put_str(struct store *s, const char *ns, const char *k, const char *v)
{
	store_put(s, ns, k, v, strlen(v));
}

static void expect(struct store *s, const char *ns, const char *k, const char *want)
{
	char *v = NULL;
	int rc = store_get(s, ns, k, &v, NULL);
	if (!want) {
		assert_int_equal(rc, SS_ENOTFOUND);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(v, want);
	free(v);
}

static void test_put_flush_get_del(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	put_str(s, "nodes", "a", "1");
	put_str(s, "nodes", "b", "2");
	put_str(s, "nodes", "a", "3"); /* later write wins */
	assert_int_equal(store_pending(s), 3);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(store_pending(s), 0);
	expect(s, "nodes", "a", "3");
	expect(s, "nodes", "b", "2");
	expect(s, "other", "a", NULL);
	store_del(s, "nodes", "a");
	assert_int_equal(store_flush(s), 0);
	expect(s, "nodes", "a", NULL);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	store_close(s);
}

static int collect(void *arg, const char *key, const char *value, size_t len)
{
	struct buf *b = arg;
	buf_printf(b, "%s=%.*s;", key, (int)len, value);
	return 0;
}

static void test_scan_order_and_reopen(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	put_str(s, "nodes", "zeta", "z");
	put_str(s, "nodes", "alpha", "a");
	put_str(s, "nodes", "mid", "m");
	put_str(s, "jobs", "x", "j");
	assert_int_equal(store_flush(s), 0);
	store_close(s);
	assert_int_equal(store_open(&s, path), 0);
	struct buf b;
	buf_init(&b);
	assert_int_equal(store_scan(s, "nodes", collect, &b), 0);
	buf_append(&b, "", 1);
	assert_string_equal((char *)b.data, "alpha=a;mid=m;zeta=z;");
	buf_free(&b);
	store_close(s);
}

static void test_unflushed_writes_invisible_to_other_readers(void **state)
{
	(void)state;
	struct store *w, *r;
	assert_int_equal(store_open(&w, path), 0);
	assert_int_equal(store_open(&r, path), 0);
	put_str(w, "nodes", "n1", "v");
	expect(r, "nodes", "n1", NULL);
	assert_int_equal(store_flush(w), 0);
	expect(r, "nodes", "n1", "v");
	store_close(r);
	store_close(w);
}

static void test_crash_keeps_exactly_flushed_writes(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s;
		if (store_open(&s, path) != 0)
			_exit(2);
		char k[16];
		for (int i = 0; i < 100; i++) {
			snprintf(k, sizeof k, "k%03d", i);
			store_put(s, "nodes", k, "durable", 7);
		}
		if (store_flush(s) != 0)
			_exit(3);
		store_put(s, "nodes", "lost", "never-flushed", 13);
		raise(SIGKILL); /* die without closing */
		_exit(4);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	struct buf b;
	buf_init(&b);
	assert_int_equal(store_scan(s, "nodes", collect, &b), 0);
	size_t count = 0;
	for (size_t i = 0; i < b.len; i++)
		count += b.data[i] == ';';
	assert_int_equal(count, 100);
	expect(s, "nodes", "lost", NULL);
	expect(s, "nodes", "k099", "durable");
	buf_free(&b);
	store_close(s);
}

static void test_newer_schema_is_refused(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	put_str(s, "meta", "schema", "99");
	assert_int_equal(store_flush(s), 0);
	store_close(s);
	assert_int_equal(store_open(&s, path), SS_ESTORE);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_flush_get_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_order_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unflushed_writes_invisible_to_other_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_keeps_exactly_flushed_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
