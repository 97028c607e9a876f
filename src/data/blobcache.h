/*
 * blobcache.h - the evictable part of an agent's blob store, least recently
 * used first.
 *
 * An agent's store holds two kinds of blob. Blobs it holds for the swarm (a
 * task's outputs, replicas the manager asked for, and whatever the manager
 * says it records on this node) stay until the manager releases them. Blobs
 * it fetched only to run its own tasks, and blobs the manager no longer
 * tracks on this node, are a cache: this set. blobcache_trim() evicts from
 * it, least recently used first, while the store is above its cap.
 *
 * The set knows digests and sizes only; the caller owns the store and says,
 * through callbacks, which blobs are in use (never evicted) and how to
 * delete one.
 *
 * Thread affinity: none; the caller serialises (the agent uses it on its
 * loop thread only).
 */
#ifndef SS_BLOBCACHE_H
#define SS_BLOBCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define BLOBCACHE_MAX_ENTRIES (1u << 22) /* blobs the set remembers; beyond, adds are ignored */

struct blobcache;

/*
 * Creates an empty set. cap_bytes is the store size blobcache_trim() keeps
 * to: above it, it evicts down to 90 % of the cap. 0 means no cap.
 */
struct blobcache *blobcache_new(uint64_t cap_bytes);
/* Frees the set (not the blobs). NULL is a no-op. */
void blobcache_free(struct blobcache *c);

/*
 * Adds a blob as the most recently used, or marks it used if present.
 * Returns false when the set is full (BLOBCACHE_MAX_ENTRIES): the blob then
 * stays in the store as if held.
 */
bool blobcache_add(struct blobcache *c, const uint8_t digest[SHA256_LEN], uint64_t size);
/*
 * Adds a blob as the least recently used (found in the store with no record
 * of its last use), unless present. Returns false when the set is full.
 */
bool blobcache_add_oldest(struct blobcache *c, const uint8_t digest[SHA256_LEN], uint64_t size);
/* Removes a blob (it is held again, or deleted). Returns true when it was in the set. */
bool blobcache_remove(struct blobcache *c, const uint8_t digest[SHA256_LEN]);
/* Marks a use: the blob becomes the most recently used. Returns false when absent. */
bool blobcache_touch(struct blobcache *c, const uint8_t digest[SHA256_LEN]);
bool blobcache_contains(const struct blobcache *c, const uint8_t digest[SHA256_LEN]);

size_t blobcache_count(const struct blobcache *c);
/* The bytes of the blobs in the set. */
uint64_t blobcache_bytes(const struct blobcache *c);
uint64_t blobcache_cap(const struct blobcache *c);

/*
 * When store_used exceeds the cap, evicts least recently used blobs until
 * store_used minus what was evicted is at most 90 % of the cap, or nothing
 * evictable is left. pinned(arg, digest) says a blob is in use: it is
 * skipped and stays. evict(arg, digest) deletes the blob from the store and
 * returns 0; on failure the blob leaves the set anyway (it is not retried).
 * The callbacks must not call back into the set. Returns the bytes evicted.
 */
uint64_t blobcache_trim(struct blobcache *c, uint64_t store_used,
			bool (*pinned)(void *arg, const uint8_t digest[SHA256_LEN]),
			int (*evict)(void *arg, const uint8_t digest[SHA256_LEN]), void *arg);

#endif
