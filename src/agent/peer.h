/*
 * peer.h - the agent's peer endpoint: blob transfers between agents over
 * mutual TLS 1.3, where both ends present a node certificate.
 *
 * A node certificate is the short-lived certificate the swarm CA issues to an
 * admitted, attested node (docs/attestation.md): its subjectAltName carries
 * the attestation-result digest and the DNS name of the node id. The peer
 * endpoint accepts a connection, in either direction, only when
 *   - the TLS handshake verified the peer's certificate against the swarm CA
 *     (OpenSSL checks the chain and the validity period),
 *   - the certificate is a node certificate (it carries the digest), and
 *   - its serial number is not in the revocation set the manager pushed.
 * An outgoing link also checks that the certificate names the node the
 * manager said holds the blob. Until the agent holds a node certificate of
 * its own it neither accepts nor opens links.
 *
 * On a link, the side that opened it sends BlobGet and the other answers each
 * with exactly one BlobData; nothing else is allowed (an Error frame and the
 * link closes). Links are bounded: PEER_MAX_IN incoming and PEER_MAX_OUT
 * outgoing, a frame rate, a write queue, an idle timeout, and a deadline for
 * answers while requests are outstanding.
 *
 * Loop affinity: every function runs on the agent's loop thread, and every
 * callback is called there.
 */
#ifndef SS_PEER_H
#define SS_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "net/msg.h"

#define PEER_MAX_IN 256
#define PEER_MAX_OUT 64
#define PEER_IDLE_MS 30000     /* a link with nothing outstanding closes after this */
#define PEER_ANSWER_MS 10000   /* an outstanding request must be answered within this */
#define PEER_MAX_REVOKED 65536 /* remembered revoked serials (oldest forgotten first) */

struct peer;
struct peer_link;

struct peer_cbs {
	void *arg;
	/*
	 * A BlobGet arrived on an incoming link. The callee answers it with
	 * peer_send(l, MSG_BLOB_DATA, ...) before returning or later; g is
	 * borrowed for the call.
	 */
	void (*on_get)(void *arg, struct peer_link *l, const Seeswarm__V1__BlobGet *g);
	/* A BlobData arrived on an outgoing link. The callee owns d (msg_free). */
	void (*on_data)(void *arg, struct peer_link *l, Seeswarm__V1__BlobData *d);
	/*
	 * A link is gone (closed, refused, timed out or never connected). l must
	 * not be used after this returns. Called for outgoing and incoming links.
	 */
	void (*on_lost)(void *arg, struct peer_link *l, const char *why);
};

struct peer_stats {
	uint64_t links_in, links_out;    /* accepted / opened links that passed every check */
	uint64_t refused;                /* links closed because the peer's certificate failed a check */
	uint64_t gets_served, bytes_served;
};

/* Creates the endpoint. ca_file is the swarm CA bundle. cbs is copied. */
int peer_new(struct peer **out, uv_loop_t *loop, const char *ca_file, const struct peer_cbs *cbs);

/*
 * Starts listening on addr. *bound receives the "ip:port" actually bound (a
 * port of 0 picks a free one). Returns 0 or SS_ECONN.
 */
int peer_listen(struct peer *p, const struct sockaddr *addr, char *bound, size_t bound_len);

/*
 * Sets the node certificate and key this endpoint presents (both borrowed
 * and up-referenced; NULL clears them, after which new links are refused).
 * Existing links keep the identity they were made with.
 */
int peer_set_identity(struct peer *p, X509 *node_cert, EVP_PKEY *key);
bool peer_has_identity(const struct peer *p);

/* Adds a serial (lowercase hex) to the revocation set and closes links that present it. */
void peer_revoke(struct peer *p, const char *serial);
bool peer_is_revoked(const struct peer *p, const char *serial);

/*
 * Returns the outgoing link to node_id at addr ("ip:port", numeric), opening
 * one if needed. The link may still be connecting: requests sent meanwhile
 * are queued by TLS and go out after the handshake. Returns SS_ECLOSED
 * without an identity, SS_ELIMIT at PEER_MAX_OUT links, SS_EINVAL for a bad
 * address.
 */
int peer_link_get(struct peer *p, const char *node_id, const char *addr, struct peer_link **out);

/* Sends one message on a link. Returns SS_ECLOSED when it is closing. */
int peer_send(struct peer_link *l, uint16_t type, const ProtobufCMessage *m);

/*
 * Tells an outgoing link how many of its requests are outstanding: while
 * any are, an answer must come within PEER_ANSWER_MS; with none, the link
 * closes after PEER_IDLE_MS.
 */
void peer_link_outstanding(struct peer_link *l, size_t n);

/*
 * Round-trip times. The manager names up to MSG_MAX_PEERS peers to measure
 * (PeerList); peer_set_probes replaces the list (measurements of peers that
 * stay are kept). peer_probe_tick sends one ping (a Heartbeat on the link;
 * the peer answers HeartbeatAck with the same seq) to each listed peer whose
 * link is open, and opens the link of the others, so that the handshake
 * never counts as round-trip time. peer_take_rtts returns the peers with a
 * measurement newer than the last call (a moving average, 1/4 weight on the
 * newest sample); their ids are borrowed until the next peer_set_probes.
 */
struct peer_rtt {
	const char *node;
	uint32_t rtt_us;
};
void peer_set_probes(struct peer *p, Seeswarm__V1__BlobSource *const *peers, size_t n);
void peer_probe_tick(struct peer *p);
size_t peer_take_rtts(struct peer *p, struct peer_rtt *out, size_t max);

/* The node id of the link's peer ("" before an outgoing link's handshake verified it). */
const char *peer_link_node(const struct peer_link *l);

const struct peer_stats *peer_stats(const struct peer *p);

/* Closes every link and the listener, then frees p (its memory goes once the handles are closed). */
void peer_close(struct peer *p);

#endif
