/* audit.c - the manager's audit trail (audit.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/core.h"
#include "manager/audit.h"
#include "manager/store.h"

#define NS_AUDIT "audit"

struct entry {
	uint64_t seq;
	int64_t ms;
	unsigned status;
	char actor[72];
	char action[40];
	char target[128];
	char detail[160];
};

/* A ring of the newest entries, oldest at head. */
struct audit {
	struct store *store;
	struct entry *v; /* AUDIT_MAX slots */
	size_t head, n;
	uint64_t last_seq;
};

/* Copies s into out (size n), cut to fit, with bytes outside printable ASCII replaced by '?'. */
static void copy_clean(char *out, size_t n, const char *s)
{
	size_t i = 0;
	for (; s && s[i] && i + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[i] = '\0';
}

static struct entry *at(const struct audit *a, size_t i)
{
	return &a->v[(a->head + i) % AUDIT_MAX];
}

static void key_of(uint64_t seq, char key[17])
{
	snprintf(key, 17, "%016" PRIx64, seq);
}

/* Puts e at the end of the ring; returns the entry it pushed out (seq 0: none). */
static uint64_t push(struct audit *a, const struct entry *e)
{
	uint64_t dropped = 0;
	if (a->n == AUDIT_MAX) {
		dropped = at(a, 0)->seq;
		a->head = (a->head + 1) % AUDIT_MAX;
		a->n--;
	}
	*at(a, a->n) = *e;
	a->n++;
	if (e->seq > a->last_seq)
		a->last_seq = e->seq;
	return dropped;
}

static int load_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct audit *a = arg;
	json_t *o = json_loadb(value, len, 0, NULL);
	struct entry e;
	memset(&e, 0, sizeof e);
	char *end = NULL;
	unsigned long long seq = strtoull(key, &end, 16);
	json_t *status = json_object_get(o, "status");
	if (strlen(key) != 16 || *end || seq == 0 || seq <= a->last_seq || !json_is_object(o) ||
	    !json_is_string(json_object_get(o, "actor")) || !json_is_string(json_object_get(o, "action")) ||
	    !json_is_integer(status) || json_integer_value(status) < 0 || json_integer_value(status) > 999) {
		log_error("store: audit record %.32s is corrupt; skipped", key);
		goto out;
	}
	e.seq = seq;
	e.ms = json_integer_value(json_object_get(o, "ms"));
	e.status = (unsigned)json_integer_value(status);
	copy_clean(e.actor, sizeof e.actor, json_string_value(json_object_get(o, "actor")));
	copy_clean(e.action, sizeof e.action, json_string_value(json_object_get(o, "action")));
	copy_clean(e.target, sizeof e.target, json_string_value(json_object_get(o, "target")));
	copy_clean(e.detail, sizeof e.detail, json_string_value(json_object_get(o, "detail")));
	/* Keys scan in order, so a full ring drops the oldest, as at run time. */
	push(a, &e);
out:
	json_decref(o);
	return 0;
}

int audit_open(struct audit **out, struct store *store)
{
	struct audit *a = xcalloc(1, sizeof *a);
	a->store = store;
	a->v = xcalloc(AUDIT_MAX, sizeof *a->v);
	int rc = store_scan(store, NS_AUDIT, load_cb, a);
	if (rc) {
		audit_close(a);
		return SS_ESTORE;
	}
	*out = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	free(a->v);
	free(a);
}

static json_t *entry_json(const struct entry *e)
{
	return json_pack("{s:I,s:I,s:s,s:s,s:s,s:i,s:s}", "seq", (json_int_t)e->seq, "ms", (json_int_t)e->ms,
			 "actor", e->actor, "action", e->action, "target", e->target, "status", (int)e->status,
			 "detail", e->detail);
}

void audit_add(struct audit *a, const char *actor, const char *action, const char *target,
	       unsigned status, const char *detail)
{
	struct entry e;
	memset(&e, 0, sizeof e);
	e.seq = a->last_seq + 1;
	e.ms = time_wall_ms();
	e.status = status > 999 ? 999 : status;
	copy_clean(e.actor, sizeof e.actor, actor);
	copy_clean(e.action, sizeof e.action, action);
	copy_clean(e.target, sizeof e.target, target);
	copy_clean(e.detail, sizeof e.detail, detail);
	char key[17];
	key_of(e.seq, key);
	json_t *o = entry_json(&e);
	json_object_del(o, "seq"); /* the key holds it */
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		abort(); /* out of memory */
	store_put(a->store, NS_AUDIT, key, text, strlen(text));
	free(text);
	uint64_t dropped = push(a, &e);
	if (dropped) {
		key_of(dropped, key);
		store_del(a->store, NS_AUDIT, key);
	}
	log_info("audit: #%" PRIu64 " %s %s %s%s%.0u%s%s", e.seq, e.actor, e.action, e.target,
		 e.status ? " -> " : "", e.status, e.detail[0] ? ": " : "", e.detail);
}

json_t *audit_json(const struct audit *a, uint64_t after, size_t limit)
{
	if (limit < 1 || limit > AUDIT_PAGE_MAX)
		limit = AUDIT_PAGE_MAX;
	/* Sequence numbers grow along the ring: find the first one after `after`. */
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (at(a, mid)->seq <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	json_t *arr = json_array();
	size_t i = lo;
	for (; i < a->n && i - lo < limit; i++)
		json_array_append_new(arr, entry_json(at(a, i)));
	json_t *out = json_pack("{s:o,s:I}", "entries", arr, "last_seq", (json_int_t)a->last_seq);
	if (i < a->n)
		json_object_set_new(out, "next", json_integer((json_int_t)at(a, i - 1)->seq));
	return out;
}

size_t audit_count(const struct audit *a)
{
	return a->n;
}

uint64_t audit_last_seq(const struct audit *a)
{
	return a->last_seq;
}
