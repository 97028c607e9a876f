/*
 * fixture.h - temporary directories and a SQLite store for the unit tests.
 *
 * Each test binary is its own program, so every helper is static inline. The
 * header includes what it uses, <cmocka.h> and the headers cmocka needs first.
 *
 * fx_tmpdir_try(dir, len, tag) writes "/tmp/ss-<tag>-XXXXXX" into dir[len]
 * and creates that directory with mkdtemp(), which replaces the X's. It
 * returns true on success. It returns false, with errno set and dir set to
 * the empty string, when the name does not fit in len bytes or mkdtemp()
 * fails; it never fails the test itself, so that a cmocka setup can return
 * -1 instead.
 *
 * fx_tmpdir(dir, len, tag) does the same and fails the test (a cmocka
 * assertion) when the directory cannot be made.
 *
 * fx_rmtree(dir) removes dir and everything below it with dir_remove_tree()
 * from core/core.h, which follows no symbolic links and goes at most 64
 * levels deep. A missing dir, and the empty string, are success. It fails the
 * test when something could not be removed.
 *
 * fx_rmtree_try(dir) removes the same way but never fails the test: it prints
 * a cmocka message naming dir when something could not be removed and returns
 * false then, true otherwise. It is for group teardowns that must go on.
 *
 * struct fx_store is a store opened at DIR/state.db in a fresh temporary
 * directory DIR. fx_store_open(s, tag) makes DIR as fx_tmpdir() does, writes
 * DIR and DIR/state.db into s->dir and s->db and opens s->store; it fails the
 * test when any of that fails. fx_store_reopen(s) closes s->store and opens
 * s->db again, as after a restart; it fails the test when the store does not
 * open. It does not call store_flush(): store_close() flushes on a best-effort
 * basis only, so a test that needs its writes durable flushes them first.
 * fx_store_close(s) closes s->store and removes DIR with fx_rmtree(), so it
 * fails the test when DIR cannot be removed.
 */
#ifndef SS_FIXTURE_H
#define SS_FIXTURE_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/store.h"

static inline bool fx_tmpdir_try(char *dir, size_t len, const char *tag)
{
	int n = snprintf(dir, len, "/tmp/ss-%s-XXXXXX", tag);
	if (n < 0 || (size_t)n >= len) {
		if (len > 0)
			dir[0] = '\0';
		errno = ENAMETOOLONG;
		return false;
	}
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		return false;
	}
	return true;
}

static inline void fx_tmpdir(char *dir, size_t len, const char *tag)
{
	if (!fx_tmpdir_try(dir, len, tag))
		fail_msg("cannot make a temporary directory /tmp/ss-%s-XXXXXX: %s", tag, strerror(errno));
}

static inline void fx_rmtree(const char *dir)
{
	if (dir_remove_tree(dir) != 0)
		fail_msg("cannot remove %s: %s", dir, strerror(errno));
}

static inline bool fx_rmtree_try(const char *dir)
{
	if (dir_remove_tree(dir) == 0)
		return true;
	print_message("cannot remove %s: %s\n", dir, strerror(errno));
	return false;
}

struct fx_store {
	char dir[64];
	char db[128];
	struct store *store;
};

static inline void fx_store_open(struct fx_store *s, const char *tag)
{
	fx_tmpdir(s->dir, sizeof s->dir, tag);
	int n = snprintf(s->db, sizeof s->db, "%s/state.db", s->dir);
	assert_true(n > 0 && (size_t)n < sizeof s->db);
	assert_int_equal(store_open(&s->store, s->db), 0);
}

static inline void fx_store_reopen(struct fx_store *s)
{
	store_close(s->store);
	assert_int_equal(store_open(&s->store, s->db), 0);
}

static inline void fx_store_close(struct fx_store *s)
{
	store_close(s->store);
	s->store = NULL;
	fx_rmtree(s->dir);
}

#endif
