/*
 * audit.h - the manager's audit trail: who changed what, and what the
 * swarm's membership did.
 *
 * Each entry has a sequence number (1, 2, ... for the life of the data
 * directory), a wall-clock time, an actor ("admin", "tenant:NAME" or
 * "manager"), an action ("POST /v1/jobs", "node admitted"), a target (the
 * request path or the node id), an HTTP status (0 for the manager's own
 * events) and a detail (the id a request created, or a reason).
 *
 * Entries are kept in the store (namespace "audit", key: the sequence
 * number as 16 hex digits) and written with the store's next commit, which
 * for an acknowledged request is the commit that acknowledged it. The most
 * recent AUDIT_MAX entries are kept; older ones are deleted as new ones
 * come. Every entry also goes to the manager's log ("audit: ..."), which
 * is where a longer trail lives (journald, syslog).
 *
 * Strings are stored as given, bounded, with control characters replaced;
 * callers pass only what the manager itself produced or validated.
 *
 * Loop affinity: used on the manager's loop thread only.
 */
#ifndef SS_AUDIT_H
#define SS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct store;
struct audit;

#define AUDIT_MAX 20000u     /* entries kept */
#define AUDIT_PAGE_MAX 1000u /* entries in one audit_json answer */

/*
 * Loads the entries kept in store (which must outlive the trail) and sets
 * *out. Corrupt records are skipped with a log line. Returns 0 or SS_ESTORE.
 */
int audit_open(struct audit **out, struct store *store);
void audit_close(struct audit *a);

/*
 * Appends an entry and queues its write; drops the oldest beyond AUDIT_MAX.
 * actor, action and target must not be NULL; detail may be NULL.
 */
void audit_add(struct audit *a, const char *actor, const char *action, const char *target,
	       unsigned status, const char *detail);

/*
 * The entries after sequence number `after`, oldest first, at most limit
 * (1..AUDIT_PAGE_MAX): {"entries": [{"seq", "ms", "actor", "action",
 * "target", "status", "detail"}, ...], "last_seq": N, "next": SEQ} where
 * last_seq is the newest entry's number and next, present when more
 * follow, is the `after` of the next page. A new reference.
 */
json_t *audit_json(const struct audit *a, uint64_t after, size_t limit);

/* Entries kept, and the sequence number of the newest (0 when none). */
size_t audit_count(const struct audit *a);
uint64_t audit_last_seq(const struct audit *a);

#endif
