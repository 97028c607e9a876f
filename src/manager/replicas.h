/*
 * replicas.h - where blobs live on agents, and keeping R copies of the
 * critical ones.
 *
 * The manager records, per blob digest, the nodes that hold it (the agent
 * that produced it, and every agent that confirmed a replica with
 * BlobStored) and whether it is critical: referenced by a retained job as an
 * uploaded input or a final output (refcounted, so a blob shared by jobs
 * stays critical until the last of them is forgotten). Records are durable
 * (store namespace "replicas").
 *
 * Repair. A critical blob with fewer than `want` holders (default 2) gets one
 * BlobReplicate at a time, sent to a ready, undrained node with a valid node
 * certificate and a peer endpoint that does not hold it and that may_hold
 * allows, preferring a zone
 * (the node label "zone"; a node without one is its own zone) that no
 * holder is in, then by rendezvous hashing of (digest, node) so choices are
 * stable. The message names up to MSG_MAX_SOURCES live holders; the agent
 * fetches from them (or from the manager's copy) and answers BlobStored. A
 * node that goes down, is evicted, leaves or is rejected stops counting as a
 * holder at once, which triggers the repair; a request that fails or is not
 * answered within its deadline is retried on another node. A repair pass
 * walks the records only when something changed since the last one (or a
 * request is in flight, or a minute passed).
 *
 * Loop affinity: everything runs on the manager's loop thread.
 */
#ifndef SS_REPLICAS_H
#define SS_REPLICAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core/core.h"
#include "data/blobstore.h"
#include "manager/registry.h"
#include "manager/store.h"
#include "net/msg.h"

#define REPLICAS_DEFAULT 2
#define REPLICAS_MAX 8          /* the largest `want` */
#define REPLICAS_MAX_HOLDERS 16 /* holders remembered per blob */
#define REPLICAS_INFLIGHT 64    /* BlobReplicate requests outstanding at once */

struct replicas;

struct replicas_env {
	void *arg;
	struct store *store;
	struct registry *reg;
	struct blobstore *blobs;   /* the manager's own copies (the last-resort source) */
	/* Sends to the node's admitted connection; SS_ECLOSED when it has none. */
	int (*send)(void *arg, struct node *n, uint16_t type, const ProtobufCMessage *msg);
	/* True when the node has an admitted connection with a valid node certificate. */
	bool (*connected)(void *arg, const struct node *n);
	EVP_PKEY *grant_key;       /* signs the grant in each BlobReplicate; NULL: none (borrowed) */
	/*
	 * Whether node n may keep a copy of a blob that owner protects: the job
	 * engine answers from that job's security policy. Repair asks it for
	 * every owner of the blob, so a copy never goes to a node one of the
	 * jobs that keep it could not run on. NULL: any node may.
	 */
	bool (*may_hold)(void *arg, const void *owner, const struct node *n);
	void *may_hold_arg;
};

struct replicas_stats {
	uint64_t blobs;          /* records */
	uint64_t critical;       /* records with refs > 0 */
	uint64_t under;          /* critical records below `want` at the last repair pass */
	uint64_t requested, stored, failed; /* BlobReplicate sent / confirmed / failed or timed out */
	uint64_t holders_lost;   /* holder records dropped because their node went away */
	uint64_t deleted;        /* copies holders were told to delete (BlobDelete) */
};

/* Creates the tracker and loads its records from the store. */
int replicas_new(struct replicas **out, const struct replicas_env *env);
void replicas_free(struct replicas *r);

/* Sets the number of replicas critical blobs keep (0 turns repair off; at most REPLICAS_MAX). */
void replicas_set_want(struct replicas *r, unsigned want);
unsigned replicas_want(const struct replicas *r);

/* Records that node_id holds the blob (it produced it, or stored a replica). */
void replicas_hold(struct replicas *r, const uint8_t digest[SHA256_LEN], uint64_t size,
		   const char *node_id);
/*
 * owner (a retained job; any non-NULL pointer, compared, never followed by
 * this module) needs the blob kept at `want` replicas. Protections count:
 * an owner that protects a blob twice must undo it twice.
 */
void replicas_protect(struct replicas *r, const uint8_t digest[SHA256_LEN], uint64_t size,
		      const void *owner);
/* Undoes one replicas_protect of the blob by owner; nothing when it holds none. */
void replicas_unprotect(struct replicas *r, const uint8_t digest[SHA256_LEN], const void *owner);
/*
 * Forgets where an unprotected blob lives (no job needs it any more), so
 * that records do not outlive their jobs, and queues a BlobDelete to each
 * holder (sent by replicas_flush_deletes or the next replicas_tick). A
 * protected blob keeps its record and its copies.
 */
void replicas_forget(struct replicas *r, const uint8_t digest[SHA256_LEN]);
/*
 * Forgets every holder of the blob without asking any to delete its copy:
 * the records were wrong (agents asked for the blob could not serve it), so
 * the blob counts as lost and lineage makes it again. Protection stays.
 */
void replicas_disown(struct replicas *r, const uint8_t digest[SHA256_LEN]);
/*
 * An agent's BlobInventory batch, after its admission. Each blob the manager
 * tracks (with the same size) records the node as a holder again: a node
 * declared down lost its holder records, and its copies count once it is
 * back. Answers with a BlobInventoryAck that splits the batch into held and
 * untracked blobs; the agent may evict untracked ones under its store cap.
 * When the last batch arrives, the node stops being a holder of every blob
 * it was recorded for before the first batch and did not list (its store
 * lost it), which starts repair. A batch numbered 0 starts a new inventory.
 */
void replicas_on_inventory(struct replicas *r, struct node *n, const Seeswarm__V1__BlobInventory *m);
/* Sends the queued BlobDeletes, at most MSG_MAX_DELETE digests per message, to connected holders. */
void replicas_flush_deletes(struct replicas *r);

/*
 * A node's state changed. A node that can no longer serve (down, evicted,
 * left, rejected) stops being a holder of anything; a node that became ready
 * may be a repair target.
 */
void replicas_node_changed(struct replicas *r, const struct node *n);

/*
 * Fills out with up to max holders that can serve the blob now (ready, with
 * a valid node certificate and a peer endpoint), except exclude_node, in a
 * stable order. Returns how many.
 */
size_t replicas_sources(struct replicas *r, const uint8_t digest[SHA256_LEN], const char *exclude_node,
			struct node **out, size_t max);

/*
 * The same holders as message entries: fills src[0..n) (their strings are
 * borrowed from the node records) and srcp[i] = &src[i]. Returns n.
 */
size_t replicas_source_msgs(struct replicas *r, const uint8_t digest[SHA256_LEN],
			    const char *exclude_node, Seeswarm__V1__BlobSource *src,
			    Seeswarm__V1__BlobSource **srcp, size_t max);

/*
 * True when a holder of the blob has not gone away (its node is ready or
 * suspect, connected or not: after a manager restart agents reconnect over
 * a few seconds, and their blobs are still there).
 */
bool replicas_alive(struct replicas *r, const uint8_t digest[SHA256_LEN]);

/* The recorded holders (any state), up to max ids borrowed from r. Returns how many. */
size_t replicas_holders(struct replicas *r, const uint8_t digest[SHA256_LEN], const char **out,
			size_t max);

/* The manager's own store gained the blob: a copy nobody else had can now be repaired. */
void replicas_blob_added(struct replicas *r, const uint8_t digest[SHA256_LEN]);

/* Handles MSG_BLOB_STORED from node n (msg is borrowed). */
void replicas_on_stored(struct replicas *r, struct node *n, const Seeswarm__V1__BlobStored *m);

/*
 * Signs with env.grant_key the grant for node_id to fetch digest into buf
 * (MSG_MAX_GRANT bytes) and points out at it; without a grant key, out is
 * left empty. Returns 0 or a negative error code.
 */
int replicas_grant(const struct replicas *r, const uint8_t digest[SHA256_LEN], const char *node_id,
		   uint8_t *buf, ProtobufCBinaryData *out);

/* One repair pass (the job engine calls it every second). now_ms is the monotonic clock. */
void replicas_tick(struct replicas *r, uint64_t now_ms);

/* {"digest", "size", "critical", "want", "replicas": [{"node", "zone", "state"}], "repairing"} or NULL. */
json_t *replicas_json(struct replicas *r, const uint8_t digest[SHA256_LEN]);

const struct replicas_stats *replicas_stats(struct replicas *r);

#endif
