/*
 * runner.h - the agent's task runner.
 *
 * The runner receives task attempts from the manager (TaskDispatch), gets
 * their inputs (inline in the dispatch, from the agent's own blob store, or
 * fetched with BlobGet from a peer agent that holds them, or from the manager), runs each attempt in the sandbox
 * (src/agent/exec) on a libuv worker thread, imports the outputs into the
 * agent's encrypted blob store, signs a receipt with the node's attested key,
 * and reports a TaskResult. Every result is written to disk (fsynced) before
 * it is sent, and is sent again after every (re)admission until the manager
 * acknowledges it with TaskAck; only then is it deleted. The runner also
 * serves BlobGet requests for the blobs it holds (task outputs).
 *
 * Layout below opts->state_dir (created 0700):
 *   results/<task_id>.<attempt>.res   packed TaskResult, until acknowledged
 *   blobs/                            the blob store (src/data/blobstore.h)
 *   blob.key                          its key (0600)
 *   work/<task_id>.<attempt>/         inputs and outputs of a running attempt
 *   bundle/                           the empty bundle command tasks run with
 *
 * Loop affinity: every function runs on the agent's loop thread. Sandboxed
 * runs happen on libuv's thread pool and report back to the loop.
 */
#ifndef SS_RUNNER_H
#define SS_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "net/msg.h"

struct runner;

struct runner_opts {
	const char *state_dir;        /* the agent's data directory */
	const char *node_id;
	uint32_t cpu_millicores;      /* capacity offered to tasks */
	uint64_t memory_bytes;
	uint32_t max_tasks;           /* concurrent attempts; 0 = 2 x cores */
	unsigned warm_sandboxes;      /* sandboxes prepared ahead of demand (exec_sandbox_opts.warm) */
	uint64_t blob_quota_bytes;    /* a hard limit on stored blob bytes; 0 = unlimited */
	/*
	 * The store size above which cached blobs (inputs fetched for this
	 * agent's tasks, blobs the manager does not track here) are evicted,
	 * least recently used first; 0 = no cap.
	 */
	uint64_t store_max_bytes;
};

/*
 * How the runner talks to the manager. send returns SS_ECLOSED when there is
 * no admitted connection; the runner then keeps the message's effect on disk
 * (results) or retries after the next runner_on_admitted (fetches).
 */
struct runner_io {
	void *arg;
	int (*send)(void *arg, uint16_t type, const ProtobufCMessage *msg);
	/* Bytes waiting in the connection's write queue, for flow control. */
	size_t (*queued)(void *arg);
};

/*
 * Creates the runner: prepares the state directory, opens the blob store,
 * loads unacknowledged results from disk, removes work directories and
 * cgroups left by a previous run, and prepares the sandbox. Without root the
 * sandbox cannot be built: the runner still starts and refuses every task
 * with a clear message (status "refused").
 */
int runner_new(struct runner **out, uv_loop_t *loop, const struct runner_opts *opts,
	       const struct runner_io *io);

/*
 * Sets the identity receipts are signed with: the node's key and its node
 * certificate (or the join certificate before one was issued), and the
 * SHA-256 of the attestation result (NULL when unknown). Borrowed: they must
 * stay valid until the next call or runner_close.
 */
void runner_set_identity(struct runner *r, EVP_PKEY *key, X509 *cert, const uint8_t *attest_digest);

/*
 * Sets the manager's blob-grant key (borrowed: it must stay valid until the
 * next call or runner_close). A peer's BlobGet is served only with a grant
 * that this key signed for the peer's node id and the digest; with no key,
 * every peer BlobGet is refused.
 */
void runner_set_grant_key(struct runner *r, EVP_PKEY *key);

/* The connection was admitted: sends every unacknowledged result again and resumes fetches. */
void runner_on_admitted(struct runner *r);
/* The connection is gone: fetches in flight are abandoned and retried after the next admission. */
void runner_on_disconnected(struct runner *r);

/*
 * Returns the attempts the agent is running or holds results for, for the
 * Hello: a newly allocated array of *n TaskRef messages whose strings belong
 * to the runner. Free it with runner_free_refs.
 */
Seeswarm__V1__TaskRef **runner_task_refs(struct runner *r, size_t *n);
void runner_free_refs(Seeswarm__V1__TaskRef **refs, size_t n);

/*
 * Handles one task or blob message: MSG_TASK_DISPATCH, MSG_TASK_ACK,
 * MSG_TASK_CANCEL, MSG_BLOB_GET, MSG_BLOB_DATA, MSG_BLOB_REPLICATE (the
 * blob is fetched like an input and BlobStored reports the outcome). Takes
 * ownership of msg.
 * Returns 0, or SS_EPROTO when the manager broke the protocol (the agent
 * then closes the connection). A task the agent cannot run is not a
 * protocol error: it gets a TaskResult with ok = false.
 */
int runner_on_message(struct runner *r, uint16_t type, ProtobufCMessage *msg);

struct peer;
struct peer_link;

/*
 * Lets fetches go to the agents that hold a blob (TaskInput.sources) over
 * the peer endpoint p (borrowed; NULL: the manager only), and serves peers'
 * requests. The agent routes the endpoint's callbacks to the three
 * runner_peer_* functions below: a BlobGet from a peer is answered from the
 * blob store; a BlobData is matched to a request sent on that same link
 * (runner_peer_data takes ownership of d); a lost link sends its fetches to
 * their next source, the manager last.
 */
void runner_set_peer(struct runner *r, struct peer *p);
void runner_peer_get(struct runner *r, struct peer_link *l, const Seeswarm__V1__BlobGet *g);
void runner_peer_data(struct runner *r, struct peer_link *l, Seeswarm__V1__BlobData *d);
void runner_peer_lost(struct runner *r, struct peer_link *l, const char *why);

/* Attempts currently running or waiting for inputs. */
uint32_t runner_running(const struct runner *r);

/*
 * Stops: kills running attempts, waits for the worker threads to return,
 * then calls cb (may be NULL) from the loop and frees r. Unacknowledged
 * results stay on disk for the next start.
 */
void runner_close(struct runner *r, void (*cb)(void *arg), void *arg);

#endif
