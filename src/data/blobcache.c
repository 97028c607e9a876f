/*
 * blobcache.c - the evictable blobs of an agent's store (contract in
 * blobcache.h).
 *
 * Entries live in one array and are linked twice by index: into a hash
 * chain (FNV-1a of the digest with a random seed, so digests a peer chose
 * cannot pile into one bucket) and into a recency list whose head is the most
 * recently used. Freed entries go on a free list. The bucket array doubles
 * when the entries outnumber it.
 */
#include <stdlib.h>
#include <string.h>

#include "data/blobcache.h"

#define NIL UINT32_MAX

struct ent {
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	uint32_t hnext;      /* next in the hash chain, or the free list */
	uint32_t newer, older;
};

struct blobcache {
	struct ent *e;
	uint32_t cap_e, used_e; /* allocated entries; entries ever handed out */
	uint32_t free_head;
	uint32_t *buckets;
	uint32_t n_buckets;     /* a power of two */
	uint32_t head, tail;    /* most and least recently used */
	size_t count;
	uint64_t bytes, cap_bytes;
	uint64_t seed;
};

static uint32_t bucket_of(const struct blobcache *c, const uint8_t d[SHA256_LEN])
{
	return (uint32_t)(hash_fnv1a(d, SHA256_LEN, c->seed) & (c->n_buckets - 1));
}

static uint32_t *find_link(const struct blobcache *c, const uint8_t d[SHA256_LEN])
{
	uint32_t *p = &c->buckets[bucket_of(c, d)];
	while (*p != NIL && memcmp(c->e[*p].digest, d, SHA256_LEN) != 0)
		p = &c->e[*p].hnext;
	return p;
}

static void rehash(struct blobcache *c, uint32_t n_buckets)
{
	free(c->buckets);
	c->n_buckets = n_buckets;
	c->buckets = xmalloc(sizeof *c->buckets * n_buckets);
	for (uint32_t i = 0; i < n_buckets; i++)
		c->buckets[i] = NIL;
	for (uint32_t i = c->head; i != NIL; i = c->e[i].older) {
		uint32_t b = bucket_of(c, c->e[i].digest);
		c->e[i].hnext = c->buckets[b];
		c->buckets[b] = i;
	}
}

struct blobcache *blobcache_new(uint64_t cap_bytes)
{
	struct blobcache *c = xcalloc(1, sizeof *c);
	c->cap_bytes = cap_bytes;
	c->free_head = c->head = c->tail = NIL;
	rand_bytes(&c->seed, sizeof c->seed);
	rehash(c, 64);
	return c;
}

void blobcache_free(struct blobcache *c)
{
	if (!c)
		return;
	free(c->e);
	free(c->buckets);
	free(c);
}

static void unlink_lru(struct blobcache *c, uint32_t i)
{
	struct ent *x = &c->e[i];
	if (x->newer != NIL)
		c->e[x->newer].older = x->older;
	else
		c->head = x->older;
	if (x->older != NIL)
		c->e[x->older].newer = x->newer;
	else
		c->tail = x->newer;
}

static void push_head(struct blobcache *c, uint32_t i)
{
	c->e[i].newer = NIL;
	c->e[i].older = c->head;
	if (c->head != NIL)
		c->e[c->head].newer = i;
	c->head = i;
	if (c->tail == NIL)
		c->tail = i;
}

static void push_tail(struct blobcache *c, uint32_t i)
{
	c->e[i].older = NIL;
	c->e[i].newer = c->tail;
	if (c->tail != NIL)
		c->e[c->tail].older = i;
	c->tail = i;
	if (c->head == NIL)
		c->head = i;
}

/* Adds a new entry at the head (recent) or the tail. The digest must be absent. */
static bool insert(struct blobcache *c, const uint8_t digest[SHA256_LEN], uint64_t size, bool recent)
{
	if (c->count >= BLOBCACHE_MAX_ENTRIES)
		return false;
	uint32_t i;
	if (c->free_head != NIL) {
		i = c->free_head;
		c->free_head = c->e[i].hnext;
	} else {
		if (c->used_e == c->cap_e) {
			c->cap_e = c->cap_e ? 2 * c->cap_e : 64;
			c->e = xrealloc(c->e, sizeof *c->e * c->cap_e);
		}
		i = c->used_e++;
	}
	memcpy(c->e[i].digest, digest, SHA256_LEN);
	c->e[i].size = size;
	if (recent)
		push_head(c, i);
	else
		push_tail(c, i);
	c->count++;
	c->bytes += size;
	if (c->count > c->n_buckets) {
		rehash(c, 2 * c->n_buckets);
	} else {
		uint32_t b = bucket_of(c, digest);
		c->e[i].hnext = c->buckets[b];
		c->buckets[b] = i;
	}
	return true;
}

bool blobcache_add(struct blobcache *c, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	uint32_t i = *find_link(c, digest);
	if (i == NIL)
		return insert(c, digest, size, true);
	unlink_lru(c, i);
	push_head(c, i);
	c->bytes = c->bytes - c->e[i].size + size;
	c->e[i].size = size;
	return true;
}

bool blobcache_add_oldest(struct blobcache *c, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	return blobcache_contains(c, digest) || insert(c, digest, size, false);
}

bool blobcache_remove(struct blobcache *c, const uint8_t digest[SHA256_LEN])
{
	uint32_t *link = find_link(c, digest);
	uint32_t i = *link;
	if (i == NIL)
		return false;
	*link = c->e[i].hnext;
	unlink_lru(c, i);
	c->bytes -= c->e[i].size;
	c->count--;
	c->e[i].hnext = c->free_head;
	c->free_head = i;
	return true;
}

bool blobcache_touch(struct blobcache *c, const uint8_t digest[SHA256_LEN])
{
	uint32_t i = *find_link(c, digest);
	if (i == NIL)
		return false;
	unlink_lru(c, i);
	push_head(c, i);
	return true;
}

bool blobcache_contains(const struct blobcache *c, const uint8_t digest[SHA256_LEN])
{
	return *find_link(c, digest) != NIL;
}

size_t blobcache_count(const struct blobcache *c)
{
	return c->count;
}

uint64_t blobcache_bytes(const struct blobcache *c)
{
	return c->bytes;
}

uint64_t blobcache_cap(const struct blobcache *c)
{
	return c->cap_bytes;
}

uint64_t blobcache_trim(struct blobcache *c, uint64_t store_used,
			bool (*pinned)(void *arg, const uint8_t digest[SHA256_LEN]),
			int (*evict)(void *arg, const uint8_t digest[SHA256_LEN]), void *arg)
{
	if (c->cap_bytes == 0 || store_used <= c->cap_bytes)
		return 0;
	uint64_t low = c->cap_bytes / 10 * 9, evicted = 0;
	uint32_t i = c->tail;
	while (i != NIL && store_used - evicted > low) {
		uint32_t newer = c->e[i].newer;
		if (!pinned(arg, c->e[i].digest)) {
			uint8_t d[SHA256_LEN];
			uint64_t size = c->e[i].size;
			memcpy(d, c->e[i].digest, SHA256_LEN);
			blobcache_remove(c, d);
			if (evict(arg, d) == 0)
				evicted += size < store_used - evicted ? size : store_used - evicted;
		}
		i = newer;
	}
	return evicted;
}
