/* test_replicas.c - the manager's replica tracker: holders, repair requests, deadlines, persistence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "data/blobstore.h"
#include "manager/registry.h"
#include "manager/replicas.h"
#include "manager/store.h"
#include "net/msg.h"
#include "fixture.h"

#define MAX_SENT 80
#define MAX_OFF 8
#define T0 1000u                 /* the monotonic clock at the first tick */
#define DEADLINE_MS 30000u       /* the contract's base deadline */
#define BYTES_PER_MS 10000u      /* the contract's deadline allowance per byte */
#define SIZE 5000000u            /* a blob size with a visible allowance (500 ms) */

/* Protection owners: the tracker compares these pointers and never follows them. */
static const int job1, job2, job_strict;

/* One message the tracker sent, as the agent would decode it. */
struct sent {
	char node[MSG_MAX_ID + 1];
	uint16_t type;
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	size_t n_sources;
	size_t n_deleted; /* BlobDelete: how many digests, the first in digest */
	size_t n_held, n_untracked; /* BlobInventoryAck; the first untracked one in digest */
	char source[MSG_MAX_SOURCES][MSG_MAX_ID + 1];
	char addr[MSG_MAX_SOURCES][MSG_MAX_ADDR + 1];
};

/* Everything one test works with; the callbacks get it as their argument. */
struct fx {
	char dir[64];
	struct store *store;
	struct registry *reg;
	struct blobstore *bs;
	struct replicas *r;
	struct replicas_env env;
	struct sent sent[MAX_SENT];
	size_t n_sent;
	char off[MAX_OFF][MSG_MAX_ID + 1]; /* nodes without an admitted connection */
	size_t n_off;
};

/* Packs msg and decodes it strictly as type, as the agent would; the caller frees the result. */
static ProtobufCMessage *as_received(uint16_t type, const ProtobufCMessage *msg)
{
	size_t len = 0;
	uint8_t *buf = msg_pack(msg, &len);
	ProtobufCMessage *dec = NULL;
	const char *why = NULL;
	assert_int_equal(msg_decode(type, buf, len, &dec, &why), 0);
	free(buf);
	return dec;
}

/* Records a BlobReplicate as received. */
static void record_replicate(struct sent *s, const ProtobufCMessage *msg)
{
	ProtobufCMessage *dec = as_received(MSG_BLOB_REPLICATE, msg);
	const Seeswarm__V1__BlobReplicate *m = (const Seeswarm__V1__BlobReplicate *)dec;
	assert_int_equal(m->digest.len, SHA256_LEN);
	memcpy(s->digest, m->digest.data, SHA256_LEN);
	s->size = m->size;
	assert_true(m->n_sources <= MSG_MAX_SOURCES);
	s->n_sources = m->n_sources;
	for (size_t i = 0; i < m->n_sources; i++) {
		snprintf(s->source[i], sizeof s->source[i], "%s", m->sources[i]->node_id);
		snprintf(s->addr[i], sizeof s->addr[i], "%s", m->sources[i]->addr);
	}
	msg_free(dec);
}

static int on_send(void *arg, struct node *n, uint16_t type, const ProtobufCMessage *msg)
{
	struct fx *f = arg;
	assert_true(f->n_sent < MAX_SENT);
	struct sent *s = &f->sent[f->n_sent++];
	memset(s, 0, sizeof *s);
	snprintf(s->node, sizeof s->node, "%s", n->id);
	s->type = type;
	assert_int_equal(msg_type_of(msg), type);
	if (type == MSG_BLOB_REPLICATE)
		record_replicate(s, msg);
	if (type == MSG_BLOB_DELETE) {
		ProtobufCMessage *dec = as_received(MSG_BLOB_DELETE, msg);
		const Seeswarm__V1__BlobDelete *m = (const Seeswarm__V1__BlobDelete *)dec;
		s->n_deleted = m->n_digests;
		if (m->n_digests)
			memcpy(s->digest, m->digests[0].data, SHA256_LEN);
		msg_free(dec);
	}
	if (type == MSG_BLOB_INVENTORY_ACK) {
		ProtobufCMessage *dec = as_received(MSG_BLOB_INVENTORY_ACK, msg);
		const Seeswarm__V1__BlobInventoryAck *m = (const Seeswarm__V1__BlobInventoryAck *)dec;
		s->n_held = m->n_held;
		s->n_untracked = m->n_untracked;
		if (m->n_untracked)
			memcpy(s->digest, m->untracked[0].data, SHA256_LEN);
		msg_free(dec);
	}
	return 0;
}

static bool on_connected(void *arg, const struct node *n)
{
	const struct fx *f = arg;
	for (size_t i = 0; i < f->n_off; i++)
		if (!strcmp(f->off[i], n->id))
			return false;
	return true;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	fx_tmpdir(f->dir, sizeof f->dir, "replicas");
	char *db = xasprintf("%s/state.db", f->dir);
	char *blobs = xasprintf("%s/blobs", f->dir);
	uint8_t key[BLOBSTORE_KEY_LEN];
	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (uint8_t)(i * 5 + 3);
	assert_int_equal(store_open(&f->store, db), 0);
	assert_int_equal(blobstore_open(&f->bs, blobs, key, 0), 0);
	free(db);
	free(blobs);
	f->reg = registry_new();
	f->env = (struct replicas_env){ .arg = f, .store = f->store, .reg = f->reg, .blobs = f->bs,
					.send = on_send, .connected = on_connected };
	assert_int_equal(replicas_new(&f->r, &f->env), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	replicas_free(f->r);
	blobstore_close(f->bs);
	registry_free(f->reg);
	store_close(f->store);
	fx_rmtree(f->dir);
	free(f);
	return 0;
}

/* Adds a ready node with a peer endpoint on port and, when zone is not NULL, a "zone" label. */
static struct node *add_node(struct fx *f, const char *id, const char *zone, int port)
{
	static const char *const keys[] = { "zone" };
	struct node *n = registry_upsert(f->reg, id);
	n->state = NODE_READY;
	snprintf(n->advertise, sizeof n->advertise, "127.0.0.1:%d", port);
	if (zone) {
		const char *const values[] = { zone };
		node_set_labels(n, keys, values, 1);
	}
	return n;
}

/* The usual cluster: a and b in zone z1, c in zone z2. */
static void three_nodes(struct fx *f)
{
	add_node(f, "a", "z1", 7001);
	add_node(f, "b", "z1", 7002);
	add_node(f, "c", "z2", 7003);
}

static void digest_of(const char *name, uint8_t d[SHA256_LEN])
{
	sha256(name, strlen(name), d);
}

/* Marks a node down and tells the tracker. */
static void node_down(struct fx *f, const char *id)
{
	struct node *n = registry_get(f->reg, id);
	assert_non_null(n);
	n->state = NODE_DOWN;
	replicas_node_changed(f->r, n);
}

/* Delivers a BlobStored from node id (err is the positive SS_E* value, 0 for success). */
static void stored(struct fx *f, const char *id, const uint8_t d[SHA256_LEN], uint64_t size,
		   uint32_t err)
{
	Seeswarm__V1__BlobStored m = SEESWARM__V1__BLOB_STORED__INIT;
	m.digest.data = (uint8_t *)d;
	m.digest.len = SHA256_LEN;
	m.size = size;
	m.error = err;
	m.message = err ? "disk full" : "";
	struct node *n = registry_get(f->reg, id);
	assert_non_null(n);
	replicas_on_stored(f->r, n, &m);
}

/* Checks sent message i: a BlobReplicate to node for d/size naming the sources given (NULL-terminated). */
static void assert_replicate(const struct fx *f, size_t i, const char *node, const uint8_t d[SHA256_LEN],
			     uint64_t size, const char *const *sources)
{
	assert_true(i < f->n_sent);
	const struct sent *s = &f->sent[i];
	assert_int_equal(s->type, MSG_BLOB_REPLICATE);
	assert_string_equal(s->node, node);
	assert_memory_equal(s->digest, d, SHA256_LEN);
	assert_int_equal(s->size, size);
	size_t n = 0;
	while (sources[n])
		n++;
	assert_int_equal(s->n_sources, n);
	for (size_t k = 0; k < n; k++)
		assert_string_equal(s->source[k], sources[k]);
}

/* Checks that the recorded holders of d are exactly the ids given (NULL-terminated), in order. */
static void assert_holders(struct fx *f, const uint8_t d[SHA256_LEN], const char *const *want)
{
	const char *got[REPLICAS_MAX_HOLDERS] = { 0 };
	size_t n = replicas_holders(f->r, d, got, REPLICAS_MAX_HOLDERS);
	size_t k = 0;
	for (; want[k]; k++) {
		assert_true(k < n);
		assert_string_equal(got[k], want[k]);
	}
	assert_int_equal(n, k);
}

/* Stores content in the manager's blobstore and returns its digest. */
static void put_blob(struct fx *f, const char *content, uint8_t d[SHA256_LEN])
{
	struct blob_writer *w;
	assert_int_equal(blobstore_write_begin(f->bs, NULL, 0, &w), 0);
	assert_int_equal(blob_writer_write(w, content, strlen(content)), 0);
	assert_int_equal(blob_writer_commit(w, d), 0);
}

/* Protects n blobs ("blob-0", ...) of 100 bytes, each held by node a. */
static void protect_many(struct fx *f, int n)
{
	for (int i = 0; i < n; i++) {
		char name[16];
		uint8_t d[SHA256_LEN];
		snprintf(name, sizeof name, "blob-%d", i);
		digest_of(name, d);
		replicas_protect(f->r, d, 100, &job1);
		replicas_hold(f->r, d, 100, "a");
	}
}

static void test_repair_prefers_new_zone_one_in_flight(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_replicate(f, 0, "c", d, SIZE, (const char *const[]){ "a", NULL });
	assert_string_equal(f->sent[0].addr[0], "127.0.0.1:7001");
	assert_int_equal(replicas_stats(f->r)->requested, 1);
	assert_int_equal(replicas_stats(f->r)->under, 1);
	json_t *j = replicas_json(f->r, d);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "repairing")), "c");
	json_decref(j);
	/* No answer yet: the request is still in flight, so nothing more goes out. */
	replicas_tick(f->r, T0 + 1000);
	replicas_tick(f->r, T0 + 2000);
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(replicas_stats(f->r)->requested, 1);
}

/* The zone preference is not luck of the hash: for many digests, the node in a new zone wins. */
static void test_new_zone_wins_for_every_digest(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	protect_many(f, 16);
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 16);
	for (size_t i = 0; i < f->n_sent; i++)
		assert_string_equal(f->sent[i].node, "c");
}

/* The target is never a holder already, nor a node being drained. */
static void test_never_asks_holder_or_drained(void **state)
{
	struct fx *f = *state;
	add_node(f, "a", "z1", 7001);
	add_node(f, "b", "z1", 7002);
	add_node(f, "c", "z2", 7003)->draining = true;
	protect_many(f, 16);
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 16);
	for (size_t i = 0; i < f->n_sent; i++)
		assert_string_equal(f->sent[i].node, "b");
}

/* At most REPLICAS_INFLIGHT requests are outstanding; an answer makes room for one more. */
static void test_inflight_cap(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	protect_many(f, REPLICAS_INFLIGHT + 6);
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, REPLICAS_INFLIGHT);
	assert_int_equal(replicas_stats(f->r)->under, REPLICAS_INFLIGHT + 6);
	stored(f, f->sent[0].node, f->sent[0].digest, 100, 0);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, REPLICAS_INFLIGHT + 1);
	assert_int_equal(replicas_stats(f->r)->under, REPLICAS_INFLIGHT + 5);
}

static void test_stored_adds_holder(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	stored(f, "c", d, SIZE, 0);
	assert_holders(f, d, (const char *const[]){ "a", "c", NULL });
	assert_int_equal(replicas_stats(f->r)->stored, 1);
	json_t *j = replicas_json(f->r, d);
	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "replicas")), 2);
	assert_true(json_is_true(json_object_get(j, "critical")));
	assert_int_equal(json_integer_value(json_object_get(j, "want")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "size")), SIZE);
	assert_string_equal(json_string_value(json_object_get(j, "repairing")), "");
	const json_t *second = json_array_get(json_object_get(j, "replicas"), 1);
	assert_string_equal(json_string_value(json_object_get(second, "node")), "c");
	assert_string_equal(json_string_value(json_object_get(second, "zone")), "z2");
	assert_string_equal(json_string_value(json_object_get(second, "state")), "ready");
	json_decref(j);
	/* Two of two replicas: nothing to repair. */
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(replicas_stats(f->r)->under, 0);
}

static void test_stored_error_retries_elsewhere(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_string_equal(f->sent[0].node, "c");
	stored(f, "c", d, SIZE, (uint32_t)-SS_ELIMIT);
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->failed, 1);
	assert_int_equal(replicas_stats(f->r)->stored, 0);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 2);
	assert_replicate(f, 1, "b", d, SIZE, (const char *const[]){ "a", NULL });
}

/* A confirmation with the wrong size adds no holder and ends the request. */
static void test_stored_wrong_size_is_ignored(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	stored(f, "c", d, SIZE - 1, 0);
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->stored, 0);
	json_t *j = replicas_json(f->r, d);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "repairing")), "");
	assert_int_equal(json_array_size(json_object_get(j, "replicas")), 1);
	json_decref(j);
}

static void test_deadline_gives_up_and_asks_another(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_string_equal(f->sent[0].node, "c");
	/* One millisecond before the deadline the request still stands. */
	replicas_tick(f->r, T0 + DEADLINE_MS + SIZE / BYTES_PER_MS - 1);
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(replicas_stats(f->r)->failed, 0);
	replicas_tick(f->r, T0 + 31000 + SIZE / BYTES_PER_MS);
	assert_int_equal(replicas_stats(f->r)->failed, 1);
	assert_int_equal(f->n_sent, 2);
	assert_replicate(f, 1, "b", d, SIZE, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->requested, 2);
	assert_holders(f, d, (const char *const[]){ "a", NULL });
}

static void test_node_loss_triggers_repair(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	add_node(f, "d", "z2", 7004);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_hold(f->r, d, SIZE, "c");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 0);
	node_down(f, "c");
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->holders_lost, 1);
	/* c is down and b shares a's zone: d, in the zone c left, gets the copy from a. */
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 1);
	assert_replicate(f, 0, "d", d, SIZE, (const char *const[]){ "a", NULL });
	assert_string_equal(f->sent[0].addr[0], "127.0.0.1:7001");
}

static void reload(struct fx *f);

/* Delivers one inventory batch from node id. */
static void inventory(struct fx *f, const char *id, const uint8_t (*d)[SHA256_LEN], const uint64_t *sizes,
		      size_t n, uint32_t batch, bool last)
{
	ProtobufCBinaryData ds[8];
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++)
		ds[i] = (ProtobufCBinaryData){.data = (uint8_t *)d[i], .len = SHA256_LEN};
	Seeswarm__V1__BlobInventory inv = SEESWARM__V1__BLOB_INVENTORY__INIT;
	inv.digests = ds;
	inv.n_digests = n;
	inv.sizes = (uint64_t *)sizes;
	inv.n_sizes = n;
	inv.batch = batch;
	inv.last = last;
	struct node *node = registry_get(f->reg, id);
	assert_non_null(node);
	replicas_on_inventory(f->r, node, &inv);
}

/*
 * A complete inventory that leaves out a blob the node was recorded for
 * drops that record (its store lost the blob); a record made after the
 * inventory began stays, and an unfinished inventory drops nothing.
 */
static void test_complete_inventory_drops_what_the_node_lost(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[4][SHA256_LEN];
	uint64_t sizes[4] = {SIZE, SIZE, SIZE, SIZE};
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof name, "b%d", i);
		digest_of(name, d[i]);
		replicas_protect(f->r, d[i], SIZE, &job1);
		replicas_hold(f->r, d[i], SIZE, "a");
	}
	replicas_hold(f->r, d[0], SIZE, "c");
	replicas_hold(f->r, d[1], SIZE, "c");
	/* An inventory that never finishes changes nothing. */
	inventory(f, "c", d, sizes, 1, 0, false);
	assert_holders(f, d[1], (const char *const[]){ "a", "c", NULL });
	/* A new one: c lists only d[0]; meanwhile c is recorded for d[2] (a result). */
	inventory(f, "c", d, sizes, 1, 0, false);
	replicas_hold(f->r, d[2], SIZE, "c");
	inventory(f, "c", d, sizes, 0, 1, true);
	assert_holders(f, d[0], (const char *const[]){ "a", "c", NULL });
	assert_holders(f, d[1], (const char *const[]){ "a", NULL });
	assert_holders(f, d[2], (const char *const[]){ "a", "c", NULL });
	assert_int_equal(replicas_stats(f->r)->holders_lost, 1);
	/* An empty store's single last batch drops everything recorded before it. */
	inventory(f, "c", NULL, NULL, 0, 0, true);
	assert_holders(f, d[0], (const char *const[]){ "a", NULL });
	assert_holders(f, d[2], (const char *const[]){ "a", NULL });
	assert_holders(f, d[3], (const char *const[]){ "a", NULL });
	/* Records loaded from the store count as older than any inventory. */
	reload(f);
	inventory(f, "a", d + 3, sizes, 1, 0, true);
	assert_holders(f, d[0], (const char *const[]){ NULL });
	assert_holders(f, d[3], (const char *const[]){ "a", NULL });
}

/* may_hold for the policy test: the strict job's blobs may not go to node c. */
static bool not_c_for_strict(void *arg, const void *owner, const struct node *n)
{
	(void)arg;
	return owner != &job_strict || strcmp(n->id, "c") != 0;
}

/* Repair asks only nodes that may_hold allows: a new zone the policy forbids loses to an old one. */
static void test_may_hold_limits_repair_targets(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	replicas_free(f->r);
	f->env.may_hold = not_c_for_strict;
	assert_int_equal(replicas_new(&f->r, &f->env), 0);
	uint8_t secret[SHA256_LEN], open_[SHA256_LEN];
	digest_of("secret", secret);
	digest_of("open", open_);
	/* "secret" is kept by a lenient job and the strict one; "open" by the lenient one only. */
	replicas_protect(f->r, secret, SIZE, &job1);
	replicas_protect(f->r, secret, SIZE, &job_strict);
	replicas_hold(f->r, secret, SIZE, "a");
	replicas_protect(f->r, open_, SIZE, &job1);
	replicas_hold(f->r, open_, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 2);
	for (size_t i = 0; i < 2; i++) {
		bool is_secret = !memcmp(f->sent[i].digest, secret, SHA256_LEN);
		/* c is the only other zone: "open" goes there, "secret" to b in a's zone. */
		assert_string_equal(f->sent[i].node, is_secret ? "b" : "c");
	}
	/* With b gone too, "secret" has no target at all. */
	stored(f, "b", secret, SIZE, 0);
	node_down(f, "b");
	f->n_sent = 0;
	replicas_tick(f->r, T0 + 1000);
	for (size_t i = 0; i < f->n_sent; i++)
		assert_memory_not_equal(f->sent[i].digest, secret, SHA256_LEN);
}

/*
 * A node declared down lost its holder records; back, its inventory records
 * it again for every tracked blob of the same size, and the answer splits
 * the batch. The repair it triggered is then no longer needed.
 */
static void test_inventory_records_a_returning_holder(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d1[SHA256_LEN], d2[SHA256_LEN], unknown[SHA256_LEN];
	digest_of("one", d1);
	digest_of("two", d2);
	digest_of("nobody tracks this", unknown);
	replicas_protect(f->r, d1, SIZE, &job1);
	replicas_hold(f->r, d1, SIZE, "a");
	replicas_hold(f->r, d1, SIZE, "c");
	replicas_protect(f->r, d2, 100, &job1);
	replicas_hold(f->r, d2, 100, "a");
	node_down(f, "c");
	assert_holders(f, d1, (const char *const[]){ "a", NULL });
	struct node *c = registry_get(f->reg, "c");
	c->state = NODE_READY;
	replicas_node_changed(f->r, c);

	ProtobufCBinaryData ds[3] = {
		{.data = d1, .len = SHA256_LEN}, {.data = unknown, .len = SHA256_LEN},
		{.data = d2, .len = SHA256_LEN}};
	uint64_t sizes[3] = {SIZE, 7, 99}; /* d2 with the wrong size is not d2's copy */
	Seeswarm__V1__BlobInventory inv = SEESWARM__V1__BLOB_INVENTORY__INIT;
	inv.digests = ds;
	inv.n_digests = 3;
	inv.sizes = sizes;
	inv.n_sizes = 3;
	replicas_on_inventory(f->r, c, &inv);
	assert_holders(f, d1, (const char *const[]){ "a", "c", NULL });
	assert_holders(f, d2, (const char *const[]){ "a", NULL });
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(f->sent[0].type, MSG_BLOB_INVENTORY_ACK);
	assert_string_equal(f->sent[0].node, "c");
	assert_int_equal(f->sent[0].n_held, 1);
	assert_int_equal(f->sent[0].n_untracked, 2);
	assert_memory_equal(f->sent[0].digest, unknown, SHA256_LEN);
	/* The same inventory again changes nothing. */
	replicas_on_inventory(f->r, c, &inv);
	assert_holders(f, d1, (const char *const[]){ "a", "c", NULL });
	/* d1 has its two copies again: the repair pass asks only for d2. */
	f->n_sent = 0;
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_memory_equal(f->sent[0].digest, d2, SHA256_LEN);
	/* The holder record survives a restart of the tracker. */
	reload(f);
	assert_holders(f, d1, (const char *const[]){ "a", "c", NULL });
}

/* A target that goes down while asked frees the blob for another request at once. */
static void test_target_lost_is_replaced(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_string_equal(f->sent[0].node, "c");
	node_down(f, "c");
	assert_int_equal(replicas_stats(f->r)->holders_lost, 0);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 2);
	assert_replicate(f, 1, "b", d, SIZE, (const char *const[]){ "a", NULL });
}

static void test_sources_skip_unusable_holders(void **state)
{
	struct fx *f = *state;
	const char *const ids[] = { "a", "b", "c", "d", "e", "f" };
	for (int i = 0; i < 6; i++)
		add_node(f, ids[i], NULL, 7001 + i);
	registry_get(f->reg, "b")->state = NODE_SUSPECT;
	snprintf(f->off[f->n_off++], sizeof f->off[0], "c");
	registry_get(f->reg, "d")->advertise[0] = '\0';
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	for (int i = 0; i < 6; i++)
		replicas_hold(f->r, d, SIZE, ids[i]);
	replicas_hold(f->r, d, SIZE, "ghost"); /* a holder the registry does not know */
	struct node *out[8];
	assert_int_equal(replicas_sources(f->r, d, "e", out, 8), 2);
	assert_ptr_equal(out[0], registry_get(f->reg, "a"));
	assert_ptr_equal(out[1], registry_get(f->reg, "f"));
	assert_int_equal(replicas_sources(f->r, d, NULL, out, 8), 3);
	assert_ptr_equal(out[0], registry_get(f->reg, "a"));
	assert_ptr_equal(out[1], registry_get(f->reg, "e"));
	assert_ptr_equal(out[2], registry_get(f->reg, "f"));
	assert_int_equal(replicas_sources(f->r, d, "a", out, 1), 1);
	assert_ptr_equal(out[0], registry_get(f->reg, "e"));
	uint8_t other[SHA256_LEN];
	digest_of("unknown", other);
	assert_int_equal(replicas_sources(f->r, other, NULL, out, 8), 0);
}

static void test_non_critical_never_repaired(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	replicas_tick(f->r, T0 + 60000);
	assert_int_equal(f->n_sent, 0);
	assert_int_equal(replicas_stats(f->r)->critical, 0);
	assert_int_equal(replicas_stats(f->r)->under, 0);
	json_t *j = replicas_json(f->r, d);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "critical")));
	assert_int_equal(json_integer_value(json_object_get(j, "want")), 0);
	json_decref(j);
}

static void test_want_zero_turns_repair_off(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	assert_int_equal(replicas_want(f->r), REPLICAS_DEFAULT);
	replicas_set_want(f->r, 100);
	assert_int_equal(replicas_want(f->r), REPLICAS_MAX);
	replicas_set_want(f->r, 0);
	assert_int_equal(replicas_want(f->r), 0);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 0);
	/* The same blob is repaired as soon as repair is on again. */
	replicas_set_want(f->r, 2);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 1);
	assert_replicate(f, 0, "c", d, SIZE, (const char *const[]){ "a", NULL });
}

static void test_unprotect_to_zero_stops_repair(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t shared[SHA256_LEN], single[SHA256_LEN];
	digest_of("shared", shared);
	digest_of("single", single);
	/* Two jobs protect the shared blob and one of them is forgotten: it stays critical. */
	replicas_protect(f->r, shared, SIZE, &job1);
	replicas_protect(f->r, shared, SIZE, &job2);
	replicas_hold(f->r, shared, SIZE, "a");
	replicas_unprotect(f->r, shared, &job_strict); /* not an owner: nothing changes */
	replicas_unprotect(f->r, shared, &job1);
	/* The single blob's only job is forgotten: no more repair. */
	replicas_protect(f->r, single, SIZE, &job1);
	replicas_hold(f->r, single, SIZE, "a");
	replicas_unprotect(f->r, single, &job1);
	replicas_unprotect(f->r, single, &job1); /* one too many is harmless */
	assert_int_equal(replicas_stats(f->r)->critical, 1);
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	assert_replicate(f, 0, "c", shared, SIZE, (const char *const[]){ "a", NULL });
	stored(f, "c", shared, SIZE, 0);
	replicas_unprotect(f->r, shared, &job1); /* job1 is done with it already */
	assert_int_equal(replicas_stats(f->r)->critical, 1);
	replicas_unprotect(f->r, shared, &job2);
	assert_int_equal(replicas_stats(f->r)->critical, 0);
	/* The shared blob is no longer critical: losing a copy does not bring repair back. */
	node_down(f, "c");
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 1);
	assert_holders(f, single, (const char *const[]){ "a", NULL });
}

/* Frees the tracker and creates it again from the flushed store. */
static void reload(struct fx *f)
{
	assert_int_equal(store_flush(f->store), 0);
	replicas_free(f->r);
	f->r = NULL;
	assert_int_equal(replicas_new(&f->r, &f->env), 0);
}

static void test_holders_persist_refs_do_not(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("one", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	reload(f);
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->blobs, 1);
	assert_int_equal(replicas_stats(f->r)->critical, 0);
	json_t *j = replicas_json(f->r, d);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "critical")));
	assert_int_equal(json_integer_value(json_object_get(j, "size")), SIZE);
	json_decref(j);
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 0);
	/* Protected again (as the job engine does on load), it is repaired with the loaded size. */
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 1);
	assert_replicate(f, 0, "c", d, SIZE, (const char *const[]){ "a", NULL });
}

static void test_record_without_holders_is_deleted(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	digest_of("one", d);
	hex_encode(d, SHA256_LEN, hex);
	replicas_hold(f->r, d, SIZE, "b");
	assert_int_equal(store_flush(f->store), 0);
	char *v = NULL;
	assert_int_equal(store_get(f->store, "replicas", hex, &v, NULL), 0);
	assert_non_null(strstr(v, "\"b\""));
	free(v);
	node_down(f, "b");
	assert_int_equal(store_flush(f->store), 0);
	v = NULL;
	assert_int_equal(store_get(f->store, "replicas", hex, &v, NULL), SS_ENOTFOUND);
	free(v);
	assert_null(replicas_json(f->r, d));
	assert_int_equal(replicas_stats(f->r)->blobs, 0);
	reload(f);
	assert_null(replicas_json(f->r, d));
	assert_int_equal(replicas_stats(f->r)->blobs, 0);
}

static void test_manager_copy_is_last_resort(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	const char *content = "the only copy left";
	uint8_t d[SHA256_LEN];
	digest_of(content, d);
	uint64_t size = strlen(content);
	replicas_protect(f->r, d, size, &job1);
	replicas_hold(f->r, d, size, "a");
	node_down(f, "a");
	assert_holders(f, d, (const char *const[]){ NULL });
	/* Nobody can provide it: no request. */
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 0);
	assert_int_equal(replicas_stats(f->r)->under, 1);
	assert_int_equal(replicas_stats(f->r)->requested, 0);
	/* With the manager's copy the request goes out, naming no peer source. */
	uint8_t got[SHA256_LEN];
	put_blob(f, content, got);
	assert_memory_equal(got, d, SHA256_LEN);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 0); /* nothing changed that the tracker knows of */
	replicas_blob_added(f->r, d);
	replicas_tick(f->r, T0 + 2000);
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(f->sent[0].n_sources, 0);
	assert_memory_equal(f->sent[0].digest, d, SHA256_LEN);
	assert_int_equal(f->sent[0].size, size);
	assert_true(!strcmp(f->sent[0].node, "b") || !strcmp(f->sent[0].node, "c"));
}

/* With one possible target, a node that failed is asked again rather than never. */
static void test_only_candidate_is_forgiven(void **state)
{
	struct fx *f = *state;
	add_node(f, "a", "z1", 7001);
	add_node(f, "b", "z2", 7002);
	uint8_t d[SHA256_LEN];
	digest_of("two-nodes", d);
	replicas_protect(f->r, d, 100, &job1);
	replicas_hold(f->r, d, 100, "a");
	replicas_tick(f->r, T0);
	assert_int_equal(f->n_sent, 1);
	stored(f, "b", d, 100, (uint32_t)-SS_EIO);
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 2);
	assert_replicate(f, 1, "b", d, 100, (const char *const[]){ "a", NULL });
	/* Forgiven once; another node, when there is one, still comes first after a new failure. */
	add_node(f, "c", "z3", 7003);
	stored(f, "b", d, 100, (uint32_t)-SS_EIO);
	replicas_tick(f->r, T0 + 2000);
	assert_int_equal(f->n_sent, 3);
	assert_string_equal(f->sent[2].node, "c");
}

/* An error that arrives after the deadline already failed the request is not counted again. */
static void test_late_error_counts_once(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("late", d);
	replicas_protect(f->r, d, SIZE, &job1);
	replicas_hold(f->r, d, SIZE, "a");
	replicas_tick(f->r, T0);
	assert_string_equal(f->sent[0].node, "c");
	replicas_tick(f->r, T0 + DEADLINE_MS + SIZE / BYTES_PER_MS);
	assert_int_equal(replicas_stats(f->r)->failed, 1);
	assert_int_equal(f->n_sent, 2);
	assert_string_equal(f->sent[1].node, "b");
	stored(f, "c", d, SIZE, (uint32_t)-SS_EIO);
	assert_int_equal(replicas_stats(f->r)->failed, 1);
	/* b's request is still the one in flight. */
	json_t *j = replicas_json(f->r, d);
	assert_string_equal(json_string_value(json_object_get(j, "repairing")), "b");
	json_decref(j);
}

/* A confirmation with the wrong size is a failure: counted, and that node is not asked next. */
static void test_wrong_size_is_a_failure(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	digest_of("size", d);
	replicas_protect(f->r, d, 100, &job1);
	replicas_hold(f->r, d, 100, "a");
	replicas_tick(f->r, T0);
	assert_string_equal(f->sent[0].node, "c");
	stored(f, "c", d, 99, 0);
	assert_int_equal(replicas_stats(f->r)->failed, 1);
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	replicas_tick(f->r, T0 + 1000);
	assert_int_equal(f->n_sent, 2);
	assert_string_equal(f->sent[1].node, "b");
}

/* A stored record without holders (left by a critical blob) is dropped when loaded. */
static void test_empty_record_dropped_on_load(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	digest_of("empty", d);
	hex_encode(d, SHA256_LEN, hex);
	replicas_protect(f->r, d, 100, &job1);
	replicas_hold(f->r, d, 100, "a");
	node_down(f, "a");
	assert_int_equal(store_flush(f->store), 0);
	char *v = NULL;
	assert_int_equal(store_get(f->store, "replicas", hex, &v, NULL), 0);
	free(v);
	reload(f);
	assert_int_equal(replicas_stats(f->r)->blobs, 0);
	assert_int_equal(store_flush(f->store), 0);
	assert_int_equal(store_get(f->store, "replicas", hex, &v, NULL), SS_ENOTFOUND);
}

/* Forgetting a forgotten job's outputs drops unprotected records only. */
static void test_forget_keeps_protected_records(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t loose[SHA256_LEN], kept[SHA256_LEN];
	digest_of("loose", loose);
	digest_of("kept", kept);
	replicas_hold(f->r, loose, 10, "a");
	replicas_hold(f->r, kept, 10, "a");
	replicas_protect(f->r, kept, 10, &job1);
	replicas_forget(f->r, loose);
	replicas_forget(f->r, kept);
	assert_holders(f, loose, (const char *const[]){ NULL });
	assert_null(replicas_json(f->r, loose));
	assert_holders(f, kept, (const char *const[]){ "a", NULL });
	assert_int_equal(replicas_stats(f->r)->blobs, 1);
	/* The loose blob's holder is told to delete its copy; the kept one is not. */
	replicas_flush_deletes(f->r);
	assert_int_equal(f->n_sent, 1);
	assert_int_equal(f->sent[0].type, MSG_BLOB_DELETE);
	assert_string_equal(f->sent[0].node, "a");
	assert_int_equal(f->sent[0].n_deleted, 1);
	assert_memory_equal(f->sent[0].digest, loose, SHA256_LEN);
}

/*
 * A copy made again after its blob was forgotten, before the deletion went
 * out, keeps its new copy: the queued deletion is dropped. Other holders'
 * deletions still go. Disowning forgets holders without deleting anything.
 */
static void test_a_copy_made_again_cancels_its_queued_delete(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	uint8_t d[SHA256_LEN], e[SHA256_LEN];
	digest_of("again", d);
	digest_of("other", e);
	replicas_hold(f->r, d, 10, "a");
	replicas_hold(f->r, d, 10, "b");
	replicas_forget(f->r, d);
	replicas_hold(f->r, d, 10, "a"); /* a job made the same bytes on a again */
	replicas_flush_deletes(f->r);
	assert_int_equal(f->n_sent, 1);
	assert_string_equal(f->sent[0].node, "b");
	assert_holders(f, d, (const char *const[]){ "a", NULL });
	replicas_hold(f->r, e, 10, "c");
	replicas_disown(f->r, e);
	assert_holders(f, e, (const char *const[]){ NULL });
	replicas_disown(f->r, d);
	assert_holders(f, d, (const char *const[]){ NULL });
	replicas_flush_deletes(f->r);
	assert_int_equal(f->n_sent, 1);
}

/* Deletions are batched per holder, MSG_MAX_DELETE digests at most per message; absent nodes get none. */
static void test_forgotten_copies_are_deleted_in_batches(void **state)
{
	struct fx *f = *state;
	three_nodes(f);
	for (int i = 0; i < 300; i++) {
		uint8_t d[SHA256_LEN];
		char name[16];
		snprintf(name, sizeof name, "b%d", i);
		digest_of(name, d);
		replicas_hold(f->r, d, 10, "a");
		replicas_hold(f->r, d, 10, i % 2 ? "b" : "c");
		replicas_forget(f->r, d);
	}
	snprintf(f->off[f->n_off++], sizeof f->off[0], "c");
	for (size_t i = 0; i < f->n_sent; i++)
		assert_int_not_equal(f->sent[i].type, MSG_BLOB_DELETE); /* nothing before the flush */
	replicas_tick(f->r, 1000); /* flushes */
	size_t to_a = 0, to_b = 0, msgs = 0;
	for (size_t i = 0; i < f->n_sent; i++) {
		if (f->sent[i].type != MSG_BLOB_DELETE)
			continue;
		msgs++;
		assert_true(f->sent[i].n_deleted <= MSG_MAX_DELETE);
		if (!strcmp(f->sent[i].node, "a"))
			to_a += f->sent[i].n_deleted;
		else if (!strcmp(f->sent[i].node, "b"))
			to_b += f->sent[i].n_deleted;
		else
			fail_msg("a BlobDelete went to %s", f->sent[i].node);
	}
	assert_int_equal(to_a, 300);
	assert_int_equal(to_b, 150);
	assert_int_equal(msgs, 3); /* 256 + 44 to a, 150 to b */
	assert_int_equal(replicas_stats(f->r)->deleted, 450);
	assert_int_equal(replicas_stats(f->r)->blobs, 0);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_repair_prefers_new_zone_one_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_zone_wins_for_every_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_asks_holder_or_drained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stored_adds_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stored_error_retries_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stored_wrong_size_is_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_gives_up_and_asks_another, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_loss_triggers_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_lost_is_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inventory_records_a_returning_holder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_may_hold_limits_repair_targets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_inventory_drops_what_the_node_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sources_skip_unusable_holders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_critical_never_repaired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_want_zero_turns_repair_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unprotect_to_zero_stops_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_holders_persist_refs_do_not, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_without_holders_is_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manager_copy_is_last_resort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_candidate_is_forgiven, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_error_counts_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_size_is_a_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_record_dropped_on_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_keeps_protected_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_copy_made_again_cancels_its_queued_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forgotten_copies_are_deleted_in_batches, setup, teardown),
	};
	return cmocka_run_group_tests_name("replicas", tests, NULL, NULL);
}
