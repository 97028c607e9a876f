/*
 * replicas.c - blob holders and replica repair (the contract is in replicas.h).
 *
 * Records live in a chained hash table keyed by digest. Each change of the
 * holders is written to the store as JSON {"size", "nodes": [...]} under
 * the digest's hex; a record with no holders and no refs is deleted. The
 * refs are not stored: the job engine protects its retained jobs' blobs
 * again when it loads them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/grant.h"
#include "manager/replicas.h"

#define NS "replicas"
#define NBUCKETS 4096u
#define BASE_DEADLINE_MS 30000u
#define BYTES_PER_MS 10000u /* deadline allowance: 10 MB/s */

/* One owner's protections of a blob. */
struct rowner {
	const void *owner;
	uint32_t count;
};

struct rblob {
	struct rblob *hnext;
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	uint32_t refs;           /* the sum of owners[].count */
	struct rowner *owners;
	uint32_t n_owners, cap_owners;
	char holders[REPLICAS_MAX_HOLDERS][MSG_MAX_ID + 1];
	uint64_t since[REPLICAS_MAX_HOLDERS]; /* hold_seq when each was added; 0 = loaded */
	uint8_t n_holders;
	char target[MSG_MAX_ID + 1]; /* a BlobReplicate in flight, "" if none */
	uint64_t deadline_ms;
	char avoid[MSG_MAX_ID + 1];  /* the last target that failed */
};

/* A copy a holder should delete (replicas_forget), sent by replicas_flush_deletes. */
struct pending_del {
	char node[MSG_MAX_ID + 1];
	uint8_t digest[SHA256_LEN];
};

#define DELS_FLUSH 4096 /* pending deletions that force a flush */

/* A node's inventory being received: every digest so far, and where it began. */
struct inventory {
	struct inventory *next;
	char node[MSG_MAX_ID + 1];
	uint64_t start_seq;       /* hold_seq when its first batch arrived */
	uint8_t (*d)[SHA256_LEN];
	size_t n, cap;
	bool overflow;            /* more than REPLICAS_MAX_INVENTORY digests: nothing is dropped */
};

#define REPLICAS_MAX_INVENTORY (1u << 20)

struct replicas {
	struct replicas_env env;
	uint64_t hold_seq;        /* counts add_holder calls that added */
	struct inventory *invs;
	struct pending_del *dels;
	size_t n_dels, cap_dels;
	struct rblob *buckets[NBUCKETS];
	unsigned want;
	uint32_t inflight;
	bool dirty;               /* something changed since the last repair pass */
	uint64_t last_pass_ms;
	struct replicas_stats st;
};

static void inv_drop(struct replicas *r, const char *node);

static size_t bucket_of(const uint8_t d[SHA256_LEN])
{
	uint32_t v;
	memcpy(&v, d, sizeof v);
	return v % NBUCKETS;
}

static struct rblob *find(struct replicas *r, const uint8_t d[SHA256_LEN])
{
	for (struct rblob *b = r->buckets[bucket_of(d)]; b; b = b->hnext)
		if (!memcmp(b->digest, d, SHA256_LEN))
			return b;
	return NULL;
}

static struct rblob *get(struct replicas *r, const uint8_t d[SHA256_LEN], uint64_t size)
{
	struct rblob *b = find(r, d);
	r->dirty = true;
	if (b)
		return b;
	b = xcalloc(1, sizeof *b);
	memcpy(b->digest, d, SHA256_LEN);
	b->size = size;
	size_t k = bucket_of(d);
	b->hnext = r->buckets[k];
	r->buckets[k] = b;
	r->st.blobs++;
	return b;
}

static void drop(struct replicas *r, struct rblob *b)
{
	for (struct rblob **pp = &r->buckets[bucket_of(b->digest)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == b) {
			*pp = b->hnext;
			break;
		}
	}
	if (b->target[0])
		r->inflight--;
	r->st.blobs--;
	free(b->owners);
	free(b);
}

/* Writes b's record (or deletes it, and b, when it no longer says anything). */
static void save(struct replicas *r, struct rblob *b)
{
	char hex[2 * SHA256_LEN + 1];
	hex_encode(b->digest, SHA256_LEN, hex);
	if (b->refs == 0 && b->n_holders == 0) {
		store_del(r->env.store, NS, hex);
		drop(r, b);
		return;
	}
	json_t *nodes = json_array();
	for (size_t i = 0; i < b->n_holders; i++)
		json_array_append_new(nodes, json_string(b->holders[i]));
	json_t *o = json_pack("{s:I,s:o}", "size", (json_int_t)b->size, "nodes", nodes);
	char *text = json_dumps(o, JSON_COMPACT);
	store_put(r->env.store, NS, hex, text, strlen(text));
	free(text);
	json_decref(o);
}

static bool holds(const struct rblob *b, const char *node)
{
	for (size_t i = 0; i < b->n_holders; i++)
		if (!strcmp(b->holders[i], node))
			return true;
	return false;
}

/* Adds node as a holder of b; seq is the tracker's hold_seq (0 while loading). */
static bool add_holder_seq(struct rblob *b, const char *node, uint64_t seq)
{
	if (holds(b, node) || b->n_holders >= REPLICAS_MAX_HOLDERS || !ident_valid(node) ||
	    strlen(node) > MSG_MAX_ID)
		return false;
	b->since[b->n_holders] = seq;
	snprintf(b->holders[b->n_holders++], sizeof b->holders[0], "%s", node);
	return true;
}

static bool add_holder(struct replicas *r, struct rblob *b, const char *node)
{
	if (!add_holder_seq(b, node, r->hold_seq + 1))
		return false;
	r->hold_seq++;
	return true;
}

static bool remove_holder(struct rblob *b, const char *node)
{
	for (size_t i = 0; i < b->n_holders; i++) {
		if (!strcmp(b->holders[i], node)) {
			memmove(b->holders[i], b->holders[i + 1],
				(b->n_holders - i - 1) * sizeof b->holders[0]);
			memmove(&b->since[i], &b->since[i + 1], (b->n_holders - i - 1) * sizeof b->since[0]);
			b->n_holders--;
			return true;
		}
	}
	return false;
}

static int load_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct replicas *r = arg;
	uint8_t d[SHA256_LEN];
	json_t *o = json_loadb(value, len, 0, NULL);
	json_t *nodes = o ? json_object_get(o, "nodes") : NULL;
	if (strlen(key) != 2 * SHA256_LEN || hex_decode(key, d, SHA256_LEN) != 0 || !json_is_array(nodes)) {
		log_warn("replicas: ignoring a damaged record %.80s", key);
		json_decref(o);
		return 0;
	}
	if (json_array_size(nodes) == 0) {
		/* Written while the blob was critical; refs are not stored, so it says nothing now. */
		store_del(r->env.store, NS, key);
		json_decref(o);
		return 0;
	}
	struct rblob *b = get(r, d, (uint64_t)json_integer_value(json_object_get(o, "size")));
	size_t i;
	json_t *v;
	json_array_foreach(nodes, i, v)
		if (json_is_string(v))
			add_holder_seq(b, json_string_value(v), 0);
	json_decref(o);
	return 0;
}

int replicas_new(struct replicas **out, const struct replicas_env *env)
{
	struct replicas *r = xcalloc(1, sizeof *r);
	r->env = *env;
	r->want = REPLICAS_DEFAULT;
	int rc = store_scan(env->store, NS, load_cb, r);
	if (rc) {
		replicas_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void replicas_free(struct replicas *r)
{
	if (!r)
		return;
	for (size_t k = 0; k < NBUCKETS; k++) {
		while (r->buckets[k]) {
			struct rblob *b = r->buckets[k];
			r->buckets[k] = b->hnext;
			free(b->owners);
			free(b);
		}
	}
	while (r->invs)
		inv_drop(r, r->invs->node);
	free(r->dels);
	free(r);
}

void replicas_set_want(struct replicas *r, unsigned want)
{
	r->dirty = true;
	r->want = want > REPLICAS_MAX ? REPLICAS_MAX : want;
}

unsigned replicas_want(const struct replicas *r)
{
	return r->want;
}

void replicas_hold(struct replicas *r, const uint8_t digest[SHA256_LEN], uint64_t size,
		   const char *node_id)
{
	struct rblob *b = get(r, digest, size);
	/* Saved when a holder was added, or deleted again when there is nothing to record. */
	if (add_holder(r, b, node_id) || (b->refs == 0 && b->n_holders == 0))
		save(r, b);
}

void replicas_protect(struct replicas *r, const uint8_t digest[SHA256_LEN], uint64_t size,
		      const void *owner)
{
	struct rblob *b = get(r, digest, size);
	if (b->refs++ == 0)
		r->st.critical++;
	for (uint32_t i = 0; i < b->n_owners; i++) {
		if (b->owners[i].owner == owner) {
			b->owners[i].count++;
			return;
		}
	}
	if (b->n_owners == b->cap_owners) {
		b->cap_owners = b->cap_owners ? 2 * b->cap_owners : 2;
		b->owners = xrealloc(b->owners, b->cap_owners * sizeof *b->owners);
	}
	b->owners[b->n_owners++] = (struct rowner){.owner = owner, .count = 1};
}

static int del_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pending_del *)a)->node, ((const struct pending_del *)b)->node);
}

void replicas_flush_deletes(struct replicas *r)
{
	if (!r->n_dels)
		return;
	/*
	 * A node recorded as a holder again since its copy was forgotten made or
	 * stored the blob anew: that deletion is stale and would remove the new copy.
	 */
	size_t keep = 0;
	for (size_t i = 0; i < r->n_dels; i++) {
		const struct rblob *b = find(r, r->dels[i].digest);
		if (!b || !holds(b, r->dels[i].node))
			r->dels[keep++] = r->dels[i];
	}
	r->n_dels = keep;
	qsort(r->dels, r->n_dels, sizeof *r->dels, del_cmp);
	ProtobufCBinaryData ds[MSG_MAX_DELETE];
	for (size_t i = 0; i < r->n_dels;) {
		size_t e = i;
		while (e < r->n_dels && !strcmp(r->dels[e].node, r->dels[i].node))
			e++;
		struct node *n = registry_get(r->env.reg, r->dels[i].node);
		if (n && !r->env.connected(r->env.arg, n))
			n = NULL;
		for (size_t k = i; n && k < e; k += MSG_MAX_DELETE) {
			Seeswarm__V1__BlobDelete m = SEESWARM__V1__BLOB_DELETE__INIT;
			size_t cnt = e - k < MSG_MAX_DELETE ? e - k : MSG_MAX_DELETE;
			for (size_t x = 0; x < cnt; x++)
				ds[x] = (ProtobufCBinaryData){.data = r->dels[k + x].digest, .len = SHA256_LEN};
			m.digests = ds;
			m.n_digests = cnt;
			/* A node that is away keeps its copies; nothing retries. */
			if (r->env.send(r->env.arg, n, MSG_BLOB_DELETE, &m.base) == 0)
				r->st.deleted += cnt;
		}
		i = e;
	}
	r->n_dels = 0;
}

void replicas_forget(struct replicas *r, const uint8_t digest[SHA256_LEN])
{
	struct rblob *b = find(r, digest);
	if (!b || b->refs > 0)
		return;
	for (size_t i = 0; i < b->n_holders; i++) {
		if (r->n_dels == r->cap_dels) {
			r->cap_dels = r->cap_dels ? 2 * r->cap_dels : 64;
			r->dels = xrealloc(r->dels, r->cap_dels * sizeof *r->dels);
		}
		struct pending_del *d = &r->dels[r->n_dels++];
		snprintf(d->node, sizeof d->node, "%s", b->holders[i]);
		memcpy(d->digest, digest, SHA256_LEN);
	}
	b->n_holders = 0;
	save(r, b); /* deletes the record and b */
	if (r->n_dels >= DELS_FLUSH)
		replicas_flush_deletes(r);
}

void replicas_disown(struct replicas *r, const uint8_t digest[SHA256_LEN])
{
	struct rblob *b = find(r, digest);
	if (!b || b->n_holders == 0)
		return;
	b->n_holders = 0;
	save(r, b); /* may free b */
}

int replicas_grant(const struct replicas *r, const uint8_t digest[SHA256_LEN], const char *node_id,
		   uint8_t *buf, ProtobufCBinaryData *out)
{
	size_t len = 0;
	if (!r->env.grant_key)
		return 0;
	int rc = grant_sign(r->env.grant_key, digest, node_id, buf, &len);
	if (rc == 0) {
		out->data = buf;
		out->len = len;
	}
	return rc;
}

/* Takes one of owner i's protections off b; may free b (when nothing else keeps it). */
static void unprotect_at(struct replicas *r, struct rblob *b, uint32_t i)
{
	b->refs--;
	if (--b->owners[i].count == 0)
		b->owners[i] = b->owners[--b->n_owners];
	if (b->refs == 0) {
		r->st.critical--;
		if (b->n_holders == 0)
			save(r, b); /* deletes the record and b */
	}
}

void replicas_unprotect(struct replicas *r, const uint8_t digest[SHA256_LEN], const void *owner)
{
	struct rblob *b = find(r, digest);
	for (uint32_t i = 0; b && i < b->n_owners; i++) {
		if (b->owners[i].owner == owner) {
			unprotect_at(r, b, i);
			return;
		}
	}
}

/* True when every owner of b lets n keep a copy. */
static bool may_hold(struct replicas *r, const struct rblob *b, const struct node *n)
{
	for (uint32_t i = 0; r->env.may_hold && i < b->n_owners; i++)
		if (!r->env.may_hold(r->env.may_hold_arg, b->owners[i].owner, n))
			return false;
	return true;
}

/* True when n can serve blobs to peers now. */
static bool serving(struct replicas *r, const struct node *n)
{
	return n && n->state == NODE_READY && n->advertise[0] && r->env.connected(r->env.arg, n);
}

static bool gone(const struct node *n)
{
	return n->state == NODE_DOWN || n->state == NODE_EVICTED || n->state == NODE_LEFT ||
	       n->state == NODE_REJECTED;
}

void replicas_node_changed(struct replicas *r, const struct node *n)
{
	r->dirty = true; /* a node that became ready may be a target */
	if (!n || !gone(n))
		return;
	inv_drop(r, n->id);
	for (size_t k = 0; k < NBUCKETS; k++) {
		for (struct rblob *b = r->buckets[k], *next; b; b = next) {
			next = b->hnext;
			if (!strcmp(b->target, n->id)) {
				b->target[0] = '\0';
				r->inflight--;
			}
			if (remove_holder(b, n->id)) {
				r->st.holders_lost++;
				save(r, b); /* may free b */
			}
		}
	}
}

/* Stable pseudo-random rank of node for digest (rendezvous hashing). */
static uint64_t rank(const uint8_t digest[SHA256_LEN], const char *node)
{
	return hash_fnv1a(node, strlen(node), hash_fnv1a(digest, SHA256_LEN, 0));
}

size_t replicas_sources(struct replicas *r, const uint8_t digest[SHA256_LEN], const char *exclude_node,
			struct node **out, size_t max)
{
	struct rblob *b = find(r, digest);
	size_t n = 0;
	if (!b)
		return 0;
	for (size_t i = 0; i < b->n_holders && n < max; i++) {
		if (exclude_node && !strcmp(b->holders[i], exclude_node))
			continue;
		struct node *nd = registry_get(r->env.reg, b->holders[i]);
		if (serving(r, nd))
			out[n++] = nd;
	}
	return n;
}

size_t replicas_source_msgs(struct replicas *r, const uint8_t digest[SHA256_LEN],
			    const char *exclude_node, Seeswarm__V1__BlobSource *src,
			    Seeswarm__V1__BlobSource **srcp, size_t max)
{
	struct node *hv[MSG_MAX_SOURCES];
	size_t n = replicas_sources(r, digest, exclude_node, hv, max < MSG_MAX_SOURCES ? max : MSG_MAX_SOURCES);
	for (size_t i = 0; i < n; i++) {
		seeswarm__v1__blob_source__init(&src[i]);
		src[i].node_id = hv[i]->id;
		src[i].addr = hv[i]->advertise;
		srcp[i] = &src[i];
	}
	return n;
}

bool replicas_alive(struct replicas *r, const uint8_t digest[SHA256_LEN])
{
	struct rblob *b = find(r, digest);
	for (size_t i = 0; b && i < b->n_holders; i++) {
		const struct node *n = registry_get(r->env.reg, b->holders[i]);
		if (n && !gone(n))
			return true;
	}
	return false;
}

size_t replicas_holders(struct replicas *r, const uint8_t digest[SHA256_LEN], const char **out,
			size_t max)
{
	struct rblob *b = find(r, digest);
	size_t n = 0;
	for (size_t i = 0; b && i < b->n_holders && n < max; i++)
		out[n++] = b->holders[i];
	return n;
}

static const char *zone_of(const struct node *n)
{
	for (size_t i = 0; i < n->n_labels; i++)
		if (!strcmp(n->labels[i].key, "zone"))
			return n->labels[i].value;
	return NULL;
}

/* True when cand shares a zone with a holder (a node without a zone label is its own zone). */
static bool zone_taken(struct replicas *r, const struct rblob *b, const struct node *cand)
{
	const char *cz = zone_of(cand);
	if (!cz)
		return false;
	for (size_t i = 0; i < b->n_holders; i++) {
		const struct node *h = registry_get(r->env.reg, b->holders[i]);
		const char *hz = h ? zone_of(h) : NULL;
		if (hz && !strcmp(hz, cz))
			return true;
	}
	return false;
}

/*
 * Picks a repair target for b, or NULL. The node that failed b last is
 * taken only when no other node qualifies (then it is forgiven).
 */
static struct node *pick_target(struct replicas *r, struct rblob *b, struct node **all, size_t n_all)
{
	struct node *best = NULL;
	bool best_new_zone = false, best_avoided = false;
	uint64_t best_rank = 0;
	for (size_t i = 0; i < n_all; i++) {
		struct node *n = all[i];
		if (!serving(r, n) || n->draining || holds(b, n->id) || !may_hold(r, b, n))
			continue;
		bool avoided = !strcmp(n->id, b->avoid);
		if (best && avoided && !best_avoided)
			continue;
		if (best && !avoided && best_avoided)
			best = NULL; /* any other node beats the avoided one */
		bool new_zone = !zone_taken(r, b, n);
		uint64_t rk = rank(b->digest, n->id);
		if (!best || (new_zone && !best_new_zone) || (new_zone == best_new_zone && rk > best_rank)) {
			best = n;
			best_new_zone = new_zone;
			best_rank = rk;
			best_avoided = avoided;
		}
	}
	if (best && best_avoided)
		b->avoid[0] = '\0';
	return best;
}

static void request(struct replicas *r, struct rblob *b, struct node *target, uint64_t now_ms)
{
	Seeswarm__V1__BlobReplicate m = SEESWARM__V1__BLOB_REPLICATE__INIT;
	Seeswarm__V1__BlobSource src[MSG_MAX_SOURCES], *srcp[MSG_MAX_SOURCES];
	size_t ns = replicas_source_msgs(r, b->digest, target->id, src, srcp, MSG_MAX_SOURCES);
	m.digest.data = b->digest;
	m.digest.len = SHA256_LEN;
	m.size = b->size;
	m.sources = srcp;
	m.n_sources = ns;
	if (ns == 0 && !blobstore_has(r->env.blobs, b->digest, NULL))
		return; /* nobody can provide it: lineage is the job engine's business */
	uint8_t grant[MSG_MAX_GRANT];
	if (replicas_grant(r, b->digest, target->id, grant, &m.grant) != 0)
		return;
	if (r->env.send(r->env.arg, target, MSG_BLOB_REPLICATE, &m.base) != 0)
		return;
	snprintf(b->target, sizeof b->target, "%s", target->id);
	b->deadline_ms = now_ms + BASE_DEADLINE_MS + b->size / BYTES_PER_MS;
	r->inflight++;
	r->st.requested++;
	char hex[2 * SHA256_LEN + 1];
	hex_encode(b->digest, SHA256_LEN, hex);
	log_info("replicas: blob %.16s has %u of %u replicas; asking %s to keep one (%zu peer source%s)",
		 hex, b->n_holders, r->want, target->id, ns, ns == 1 ? "" : "s");
}

void replicas_tick(struct replicas *r, uint64_t now_ms)
{
	replicas_flush_deletes(r);
	if (!r->dirty && r->inflight == 0 && now_ms - r->last_pass_ms < 60000)
		return;
	r->dirty = false;
	r->last_pass_ms = now_ms;
	size_t n_all = 0;
	struct node **all = NULL;
	uint64_t under = 0;
	for (size_t k = 0; k < NBUCKETS; k++) {
		for (struct rblob *b = r->buckets[k]; b; b = b->hnext) {
			if (b->target[0] && now_ms >= b->deadline_ms) {
				log_warn("replicas: %s did not confirm a replica in time", b->target);
				snprintf(b->avoid, sizeof b->avoid, "%s", b->target);
				b->target[0] = '\0';
				r->inflight--;
				r->st.failed++;
			}
			if (b->refs == 0 || b->n_holders >= r->want)
				continue;
			under++;
			if (b->target[0] || r->inflight >= REPLICAS_INFLIGHT)
				continue;
			if (!all)
				all = registry_sorted(r->env.reg, &n_all);
			struct node *t = pick_target(r, b, all, n_all);
			if (t)
				request(r, b, t, now_ms);
		}
	}
	r->st.under = under;
	free(all);
}

void replicas_blob_added(struct replicas *r, const uint8_t digest[SHA256_LEN])
{
	if (find(r, digest))
		r->dirty = true;
}

void replicas_on_stored(struct replicas *r, struct node *n, const Seeswarm__V1__BlobStored *m)
{
	struct rblob *b = find(r, m->digest.data);
	char hex[2 * SHA256_LEN + 1];
	hex_encode(m->digest.data, SHA256_LEN, hex);
	if (!b) {
		log_debug("replicas: %s stored %.16s, which nothing tracks", n->id, hex);
		return;
	}
	/* Only the node asked now counts a failure; a late answer after its deadline does not. */
	bool asked = !strcmp(b->target, n->id);
	if (asked) {
		b->target[0] = '\0';
		r->inflight--;
	}
	r->dirty = true;
	if (m->error || m->size != b->size) {
		if (m->error)
			log_warn("replicas: %s could not keep blob %.16s: %s (%.200s)", n->id, hex,
				 ss_strerror(-(int)m->error), m->message ? m->message : "");
		else
			log_warn("replicas: %s reports blob %.16s with size %" PRIu64 ", expected %" PRIu64,
				 n->id, hex, m->size, b->size);
		if (asked) {
			r->st.failed++;
			snprintf(b->avoid, sizeof b->avoid, "%s", n->id);
		}
		return;
	}
	r->st.stored++;
	if (add_holder(r, b, n->id)) {
		log_info("replicas: %s now holds blob %.16s (%u of %u)", n->id, hex, b->n_holders, r->want);
		save(r, b);
	}
}

static struct inventory **inv_link(struct replicas *r, const char *node)
{
	struct inventory **pp = &r->invs;
	while (*pp && strcmp((*pp)->node, node) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void inv_drop(struct replicas *r, const char *node)
{
	struct inventory **pp = inv_link(r, node), *inv = *pp;
	if (!inv)
		return;
	*pp = inv->next;
	free(inv->d);
	free(inv);
}

static int digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SHA256_LEN);
}

/*
 * The node's inventory is complete: it no longer holds any blob it was
 * recorded for before the inventory began and did not list. (A blob
 * recorded since, by a result or a replica, may be newer than the listing.)
 */
static void inv_finish(struct replicas *r, struct node *n, struct inventory *inv)
{
	size_t dropped = 0;
	if (inv->n)
		qsort(inv->d, inv->n, SHA256_LEN, digest_cmp);
	for (size_t k = 0; k < NBUCKETS; k++) {
		for (struct rblob *b = r->buckets[k], *next; b; b = next) {
			next = b->hnext;
			for (size_t i = 0; i < b->n_holders; i++) {
				if (strcmp(b->holders[i], n->id) != 0)
					continue;
				if (b->since[i] <= inv->start_seq &&
				    (!inv->n || !bsearch(b->digest, inv->d, inv->n, SHA256_LEN, digest_cmp))) {
					remove_holder(b, n->id);
					dropped++;
					r->st.holders_lost++;
					r->dirty = true;
					save(r, b); /* may free b */
				}
				break;
			}
		}
	}
	if (dropped)
		log_warn("replicas: %s no longer has %zu blob%s it was recorded for; repair or lineage replaces them",
			 n->id, dropped, dropped == 1 ? "" : "s");
}

void replicas_on_inventory(struct replicas *r, struct node *n, const Seeswarm__V1__BlobInventory *m)
{
	struct inventory **pp = inv_link(r, n->id), *inv = *pp;
	if (m->batch == 0) {
		if (!inv) {
			inv = *pp = xcalloc(1, sizeof *inv);
			snprintf(inv->node, sizeof inv->node, "%s", n->id);
		}
		inv->n = 0;
		inv->overflow = false;
		inv->start_seq = r->hold_seq;
	}
	if (inv && !inv->overflow) {
		if (inv->n + m->n_digests > REPLICAS_MAX_INVENTORY) {
			inv->overflow = true;
		} else {
			if (inv->n + m->n_digests > inv->cap) {
				inv->cap = 2 * (inv->n + m->n_digests);
				inv->d = xrealloc(inv->d, inv->cap * SHA256_LEN);
			}
			for (size_t i = 0; i < m->n_digests; i++)
				memcpy(inv->d[inv->n++], m->digests[i].data, SHA256_LEN);
		}
	}
	ProtobufCBinaryData *held = xcalloc(m->n_digests + 1, sizeof *held);
	ProtobufCBinaryData *untracked = xcalloc(m->n_digests + 1, sizeof *untracked);
	size_t nh = 0, nu = 0, added = 0;
	for (size_t i = 0; i < m->n_digests; i++) {
		struct rblob *b = find(r, m->digests[i].data);
		if (!b || b->size != m->sizes[i]) {
			untracked[nu++] = m->digests[i];
			continue;
		}
		bool now = add_holder(r, b, n->id);
		/* A blob with REPLICAS_MAX_HOLDERS others is untracked here: the agent may drop it. */
		if (holds(b, n->id))
			held[nh++] = m->digests[i];
		else
			untracked[nu++] = m->digests[i];
		if (now) {
			added++;
			r->dirty = true;
			save(r, b); /* b has a holder, so it stays */
		}
	}
	if (added)
		log_info("replicas: %s holds %zu tracked blob%s again", n->id, added, added == 1 ? "" : "s");
	Seeswarm__V1__BlobInventoryAck ack = SEESWARM__V1__BLOB_INVENTORY_ACK__INIT;
	ack.held = held;
	ack.n_held = nh;
	ack.untracked = untracked;
	ack.n_untracked = nu;
	r->env.send(r->env.arg, n, MSG_BLOB_INVENTORY_ACK, &ack.base);
	free(held);
	free(untracked);
	if (m->last && inv) {
		if (inv->overflow)
			log_warn("replicas: %s listed more than %u blobs; its holder records are kept as they are",
				 n->id, REPLICAS_MAX_INVENTORY);
		else
			inv_finish(r, n, inv);
		inv_drop(r, n->id);
	}
}

json_t *replicas_json(struct replicas *r, const uint8_t digest[SHA256_LEN])
{
	struct rblob *b = find(r, digest);
	if (!b)
		return NULL;
	char hex[2 * SHA256_LEN + 1];
	hex_encode(b->digest, SHA256_LEN, hex);
	json_t *arr = json_array();
	for (size_t i = 0; i < b->n_holders; i++) {
		const struct node *n = registry_get(r->env.reg, b->holders[i]);
		const char *z = n ? zone_of(n) : NULL;
		json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "node", b->holders[i], "zone",
						     z ? z : "", "state",
						     n ? node_display_state(n) : "unknown"));
	}
	return json_pack("{s:s,s:I,s:b,s:i,s:o,s:s}", "digest", hex, "size", (json_int_t)b->size,
			 "critical", b->refs > 0, "want", (int)(b->refs ? r->want : 0), "replicas", arr,
			 "repairing", b->target);
}

const struct replicas_stats *replicas_stats(struct replicas *r)
{
	return &r->st;
}
