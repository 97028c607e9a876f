/*
 * conn.h - a framed, mutual-TLS connection on a libuv TCP handle.
 *
 * A conn owns its socket, its TLS session and its frame decoder. Frames are
 * delivered in order through on_frame once the handshake is done. A conn is
 * closed with conn_close (idempotent, safe from inside any callback); its
 * on_close callback then runs exactly once, from a later loop iteration,
 * after which the conn's memory is gone. Nothing may use the conn after
 * on_close returns.
 *
 * Loop affinity: every function here runs on the conn's loop thread.
 */
#ifndef SS_CONN_H
#define SS_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "net/tls.h"

struct conn;

struct conn_cbs {
	/* The TLS handshake completed; the peer certificate is verified. */
	void (*on_open)(struct conn *c);
	/* One frame. A nonzero return closes the conn with that code. */
	int (*on_frame)(struct conn *c, uint16_t type, const uint8_t *payload, uint32_t len);
	/* The conn is closed; reason is 0 for a clean close or an SS_E* code. */
	void (*on_close)(struct conn *c, int reason, const char *why);
};

struct conn_limits {
	uint32_t max_frame;        /* payload bound; default FRAME_MAX_DEFAULT */
	uint32_t frames_per_sec;   /* sustained rate; 0 = unlimited */
	uint32_t frame_burst;      /* bucket size */
	size_t max_write_queue;    /* bytes queued to a slow peer before closing */
};

/* Accepts one pending connection from server. */
int conn_accept(uv_stream_t *server, struct tls_ctx *ctx, const struct conn_cbs *cbs,
		const struct conn_limits *limits, void *data, struct conn **out);
/*
 * Connects to addr. ident_cert/ident_key, when non-NULL, override the
 * context's client identity. Failure to connect is reported via on_close.
 */
int conn_connect(uv_loop_t *loop, const struct sockaddr *addr, struct tls_ctx *ctx,
		 const char *expected_name, X509 *ident_cert, EVP_PKEY *ident_key,
		 const struct conn_cbs *cbs, const struct conn_limits *limits, void *data,
		 struct conn **out);

/* Packs msg, frames it as type and queues it. SS_ECLOSED once closing. */
int conn_send(struct conn *c, uint16_t type, const ProtobufCMessage *msg);
/* Sends an Error message (code is an SS_E* value, why its reason) before a close. */
int conn_send_error(struct conn *c, int code, const char *why);
/* Queues an already framed byte string (used by tests and the load generator). */
int conn_send_bytes(struct conn *c, const void *data, size_t len);

/* Closes the conn; reason/why are passed to on_close. why is copied. */
void conn_close(struct conn *c, int reason, const char *why);
/*
 * Closes the conn gracefully, for a side that leaves on its own (an agent
 * stopping): sends TLS close_notify after everything queued, shuts the write
 * side down (FIN), then reads and drops whatever the peer still sends until
 * the peer closes its side or linger_ms pass, and then closes as
 * conn_close(c, 0, why). Closing a socket with unread input makes the kernel
 * send a reset, which can cost the peer the last messages sent to it (a
 * goodbye); a drained socket closes in order. From the call on,
 * conn_closing() is true and sends fail with SS_ECLOSED; frames that arrive
 * are not delivered. A conn_close during the linger closes at once.
 * Idempotent.
 */
void conn_finish(struct conn *c, uint64_t linger_ms, const char *why);
/* True once conn_close or conn_finish was called. */
bool conn_closing(const struct conn *c);

/*
 * Sets TCP_USER_TIMEOUT: the kernel fails the connection when sent data stays
 * unacknowledged for ms. This detects a cut link without application traffic.
 */
int conn_set_user_timeout(struct conn *c, unsigned ms);

/* (Re)arms a deadline: when it passes, the conn closes with SS_ETIMEDOUT. 0 disarms. */
void conn_set_deadline(struct conn *c, uint64_t ms);

/*
 * Changes the frame-rate limit (e.g. raised once a peer is admitted and
 * starts exchanging task traffic). The bucket starts full at the new burst.
 */
void conn_set_rate(struct conn *c, uint32_t frames_per_sec, uint32_t burst);
/* Bytes queued in the kernel-side libuv write queue (for flow control). */
size_t conn_write_queued(const struct conn *c);

void *conn_data(const struct conn *c);
void conn_set_data(struct conn *c, void *data);
/* The local address of the conn's socket. Returns 0 or SS_EIO. */
int conn_local_addr(const struct conn *c, struct sockaddr_storage *out);
/* "ip:port" of the peer. */
const char *conn_peer(const struct conn *c);
struct tls *conn_tls(const struct conn *c);

/* Process-wide counters (loop thread only). */
struct conn_stats {
	uint64_t accepted, open, closed_error, frames_in, frames_out, bytes_in, bytes_out;
};
const struct conn_stats *conn_stats(void);

#endif
