/*
 * store.h - the manager's durable store: SQLite in WAL mode.
 *
 * The store is a set of namespaced key/value records. Writes are queued with
 * store_put/store_del and made durable together by store_flush (group
 * commit: one transaction, one fsync, per loop turn). A write is durable only
 * after store_flush returned 0; callers acknowledge changes only then.
 *
 * Loop affinity: a store is used by one thread (the manager's loop thread).
 */
#ifndef SS_STORE_H
#define SS_STORE_H

#include <stddef.h>

struct store;

/* Opens (creating if needed, mode 0600) the database at path. */
int store_open(struct store **out, const char *path);
/* Flushes pending writes (best effort) and closes. NULL is a no-op. */
void store_close(struct store *s);

/* Queues an upsert of ns/key -> value (len bytes, copied). */
void store_put(struct store *s, const char *ns, const char *key, const void *value, size_t len);
/* Queues a delete of ns/key. */
void store_del(struct store *s, const char *ns, const char *key);
/* Number of queued, not yet durable writes. */
size_t store_pending(const struct store *s);
/*
 * Commits every queued write in one transaction (synchronous=FULL, so the
 * commit is fsynced). Returns 0, or SS_ESTORE; on failure the queued writes
 * are kept for the next attempt.
 */
int store_flush(struct store *s);

/* Reads one value (caller frees *value, NUL-terminated). SS_ENOTFOUND if absent. */
int store_get(struct store *s, const char *ns, const char *key, char **value, size_t *len);
/* Calls cb for every record in ns, ordered by key. A nonzero cb return stops and is returned. */
int store_scan(struct store *s, const char *ns,
	       int (*cb)(void *arg, const char *key, const char *value, size_t len), void *arg);

#endif
