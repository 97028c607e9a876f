/* store.c - namespaced key/value records in SQLite (WAL), with group commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/core.h"
#include "manager/store.h"

/* The schema version this build writes, as a number and as the stored text. */
#define STORE_SCHEMA_VERSION 1
#define STORE_SCHEMA "1"
/* Values are written by the manager itself, never taken from the network as is. */
#define STORE_MAX_VALUE (16u << 20)

/*
 * One queued write. The queue keeps writes in the order they were made; a
 * later write to the same ns/key is simply appended and wins when the queue
 * is applied in order by store_flush.
 */
struct op {
	char *ns;
	char *key;
	void *value; /* NULL for a delete */
	size_t len;
};

/* The statements are prepared once at open and reset after every use. */
struct store {
	sqlite3 *db;
	sqlite3_stmt *put, *del, *get, *scan, *begin, *commit, *rollback;
	struct op *ops;
	size_t n_ops, cap_ops;
};

static int exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_error("store: %s: %s", sql, err ? err : "?");
		sqlite3_free(err);
		return SS_ESTORE;
	}
	return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
		log_error("store: prepare %s: %s", sql, sqlite3_errmsg(db));
		return SS_ESTORE;
	}
	return 0;
}

/*
 * Checks the schema version row, writing it on a new database. A database
 * written by a newer seeswarm (a higher version) or with an unreadable
 * version is refused with SS_ESTORE, so it is never modified by this code.
 */
static int check_schema(struct store *s)
{
	char *v = NULL, *end = NULL;
	int rc = store_get(s, "meta", "schema", &v, NULL);
	if (rc == SS_ENOTFOUND) {
		store_put(s, "meta", "schema", STORE_SCHEMA, strlen(STORE_SCHEMA));
		rc = store_flush(s);
		goto out;
	}
	if (rc)
		goto out;
	errno = 0;
	unsigned long ver = strtoul(v, &end, 10);
	if (errno || end == v || *end != '\0') {
		log_error("store: unreadable schema version '%.32s'; refusing to open", v);
		rc = SS_ESTORE;
	} else if (ver > STORE_SCHEMA_VERSION) {
		log_error("store: schema version %lu is newer than this build's %d "
			  "(written by a newer seeswarm); refusing to open",
			  ver, STORE_SCHEMA_VERSION);
		rc = SS_ESTORE;
	} else if (ver < STORE_SCHEMA_VERSION) {
		log_error("store: schema version %lu is older than %d and has no migration",
			  ver, STORE_SCHEMA_VERSION);
		rc = SS_ESTORE;
	}
out:
	free(v);
	return rc;
}

/*
 * The file is created with mode 0600 before SQLite opens it; SQLite gives the
 * -wal and -shm files the same mode as the database file.
 */
int store_open(struct store **out, const char *path)
{
	int rc = SS_ESTORE;
	struct store *s = xcalloc(1, sizeof *s);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("store: cannot create %s", path);
		goto out;
	}
	close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		log_error("store: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
		goto out;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (exec(s->db, "PRAGMA journal_mode=WAL") || exec(s->db, "PRAGMA synchronous=FULL") ||
	    exec(s->db, "PRAGMA foreign_keys=ON") ||
	    exec(s->db, "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, "
			"value BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID"))
		goto out;
	if (prepare(s->db, "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3) "
			   "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value", &s->put) ||
	    prepare(s->db, "DELETE FROM kv WHERE ns = ?1 AND key = ?2", &s->del) ||
	    prepare(s->db, "SELECT value FROM kv WHERE ns = ?1 AND key = ?2", &s->get) ||
	    prepare(s->db, "SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key", &s->scan) ||
	    prepare(s->db, "BEGIN IMMEDIATE", &s->begin) || prepare(s->db, "COMMIT", &s->commit) ||
	    prepare(s->db, "ROLLBACK", &s->rollback))
		goto out;
	rc = check_schema(s);
	if (rc)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	if (s)
		store_close(s);
	return rc;
}

static void ops_clear(struct store *s)
{
	for (size_t i = 0; i < s->n_ops; i++) {
		free(s->ops[i].ns);
		free(s->ops[i].key);
		free(s->ops[i].value);
	}
	s->n_ops = 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->db && s->n_ops && store_flush(s) != 0)
		log_error("store: %zu writes lost at close", s->n_ops);
	ops_clear(s);
	free(s->ops);
	sqlite3_finalize(s->put);
	sqlite3_finalize(s->del);
	sqlite3_finalize(s->get);
	sqlite3_finalize(s->scan);
	sqlite3_finalize(s->begin);
	sqlite3_finalize(s->commit);
	sqlite3_finalize(s->rollback);
	sqlite3_close(s->db);
	free(s);
}

static void push(struct store *s, const char *ns, const char *key, const void *value, size_t len)
{
	if (s->n_ops == s->cap_ops) {
		s->cap_ops = s->cap_ops ? s->cap_ops * 2 : 64;
		s->ops = xrealloc(s->ops, s->cap_ops * sizeof *s->ops);
	}
	struct op *o = &s->ops[s->n_ops++];
	o->ns = xstrdup(ns);
	o->key = xstrdup(key);
	o->value = NULL;
	o->len = len;
	if (value) {
		o->value = xmalloc(len ? len : 1);
		memcpy(o->value, value, len);
	}
}

void store_put(struct store *s, const char *ns, const char *key, const void *value, size_t len)
{
	if (len > STORE_MAX_VALUE)
		fatal("store: value for %s/%s is %zu bytes, over the 16 MiB bound", ns, key, len);
	push(s, ns, key, value ? value : "", value ? len : 0);
}

void store_del(struct store *s, const char *ns, const char *key)
{
	push(s, ns, key, NULL, 0);
}

size_t store_pending(const struct store *s)
{
	return s->n_ops;
}

static int step_done(sqlite3_stmt *st)
{
	int r = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r == SQLITE_DONE ? 0 : SS_ESTORE;
}

/*
 * Applies the queue in one BEGIN IMMEDIATE ... COMMIT transaction. On any
 * failure the transaction is rolled back, so none of the queued writes are
 * applied, and the queue is kept intact for the next attempt.
 */
int store_flush(struct store *s)
{
	int rc = 0;
	if (s->n_ops == 0)
		return 0;
	if (step_done(s->begin) != 0) {
		log_error("store: BEGIN failed: %s", sqlite3_errmsg(s->db));
		return SS_ESTORE;
	}
	for (size_t i = 0; i < s->n_ops && !rc; i++) {
		struct op *o = &s->ops[i];
		sqlite3_stmt *st = o->value ? s->put : s->del;
		sqlite3_bind_text(st, 1, o->ns, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, o->key, -1, SQLITE_STATIC);
		if (o->value)
			sqlite3_bind_blob(st, 3, o->value, (int)o->len, SQLITE_STATIC);
		rc = step_done(st);
	}
	if (!rc)
		rc = step_done(s->commit);
	if (rc) {
		log_error("store: commit failed: %s", sqlite3_errmsg(s->db));
		step_done(s->rollback);
		return SS_ESTORE;
	}
	ops_clear(s);
	return 0;
}

int store_get(struct store *s, const char *ns, const char *key, char **value, size_t *len)
{
	int rc;
	sqlite3_bind_text(s->get, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(s->get, 2, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s->get);
	if (r == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(s->get, 0);
		const void *p = sqlite3_column_blob(s->get, 0);
		*value = xstrndup(p ? p : "", n);
		if (len)
			*len = n;
		rc = 0;
	} else {
		rc = r == SQLITE_DONE ? SS_ENOTFOUND : SS_ESTORE;
	}
	sqlite3_reset(s->get);
	sqlite3_clear_bindings(s->get);
	return rc;
}

/*
 * The scan statement is shared, so cb must not call store_scan itself; it
 * may call store_get. Values are passed NUL-terminated and freed after cb.
 */
int store_scan(struct store *s, const char *ns,
	       int (*cb)(void *arg, const char *key, const char *value, size_t len), void *arg)
{
	int rc = 0, r;
	sqlite3_bind_text(s->scan, 1, ns, -1, SQLITE_STATIC);
	while ((r = sqlite3_step(s->scan)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s->scan, 0);
		size_t n = (size_t)sqlite3_column_bytes(s->scan, 1);
		const void *p = sqlite3_column_blob(s->scan, 1);
		char *v = xstrndup(p ? p : "", n);
		rc = cb(arg, k ? k : "", v, n);
		free(v);
		if (rc)
			break;
	}
	if (!rc && r != SQLITE_DONE)
		rc = SS_ESTORE;
	sqlite3_reset(s->scan);
	sqlite3_clear_bindings(s->scan);
	return rc;
}
