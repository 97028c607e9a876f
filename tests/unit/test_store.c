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
#include <sqlite3.h>

#include "core/core.h"
#include "manager/store.h"
#include "fixture.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	fx_tmpdir(dir, sizeof dir, "store");
	snprintf(path, sizeof path, "%s/state.db", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fx_rmtree(dir);
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

static void test_pending_counts_and_empty_value(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	assert_int_equal(store_pending(s), 0);
	assert_int_equal(store_flush(s), 0); /* an empty flush is fine */
	store_put(s, "nodes", "empty", "", 0);
	store_put(s, "nodes", "bin", "a\0b", 3);
	store_del(s, "nodes", "missing"); /* deleting an absent key is not an error */
	assert_int_equal(store_pending(s), 3);
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(store_pending(s), 0);
	char *v = NULL;
	size_t len = 99;
	assert_int_equal(store_get(s, "nodes", "empty", &v, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(v, "");
	free(v);
	assert_int_equal(store_get(s, "nodes", "bin", &v, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(v, "a\0b\0", 4); /* NUL-terminated past the value */
	free(v);
	/* The WAL file inherits the database's 0600 mode. */
	char *wal = xasprintf("%s-wal", path);
	struct stat st;
	assert_int_equal(stat(wal, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(wal);
	store_close(s);
}

static void raw_exec(const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_failed_flush_rolls_back_and_keeps_queue(void **state)
{
	(void)state;
	struct store *s;
	assert_int_equal(store_open(&s, path), 0);
	/* A trigger makes any write of key 'bad' fail inside the transaction. */
	raw_exec("CREATE TRIGGER no_bad BEFORE INSERT ON kv WHEN NEW.key = 'bad' "
		 "BEGIN SELECT RAISE(ABORT, 'bad key'); END");
	put_str(s, "nodes", "good", "1");
	put_str(s, "nodes", "bad", "2");
	put_str(s, "nodes", "after", "3");
	assert_int_equal(store_flush(s), SS_ESTORE);
	assert_int_equal(store_pending(s), 3);
	expect(s, "nodes", "good", NULL); /* all or nothing */
	expect(s, "nodes", "after", NULL);
	raw_exec("DROP TRIGGER no_bad");
	assert_int_equal(store_flush(s), 0);
	assert_int_equal(store_pending(s), 0);
	expect(s, "nodes", "good", "1");
	expect(s, "nodes", "bad", "2");
	expect(s, "nodes", "after", "3");
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

/* Child 1: puts and flushes 100 records, then exits without closing the store. */
static void child_flush_then_exit(void)
{
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
	_exit(0);
}

/* Child 2: queues writes without flushing, then dies by SIGKILL. */
static void child_put_then_kill(void)
{
	struct store *s;
	if (store_open(&s, path) != 0)
		_exit(2);
	store_put(s, "nodes", "lost", "never-flushed", 13);
	store_put(s, "nodes", "k000", "overwritten", 11);
	store_del(s, "nodes", "k001");
	raise(SIGKILL);
	_exit(4);
}

static void test_crash_keeps_exactly_flushed_writes(void **state)
{
	(void)state;
	int status;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_flush_then_exit();
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_put_then_kill();
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
	expect(s, "nodes", "k000", "durable");
	expect(s, "nodes", "k001", "durable");
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
		cmocka_unit_test_setup_teardown(test_pending_counts_and_empty_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_flush_rolls_back_and_keeps_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_order_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unflushed_writes_invisible_to_other_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_keeps_exactly_flushed_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
