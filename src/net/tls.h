/*
 * tls.h - TLS 1.3 over memory BIOs. The only file that calls OpenSSL's SSL_*
 * functions. A tls session never touches a socket: the owner feeds it
 * ciphertext from the network with tls_feed, collects plaintext with
 * tls_read, encrypts with tls_write and drains ciphertext to send with
 * tls_take_out after every call. Both sides require a peer certificate that
 * chains to the swarm CA (mutual TLS).
 *
 * Record offload (servers that enable it): OpenSSL runs the whole handshake
 * and authenticates the peer. When the handshake completes with TLS 1.3 and
 * AES-GCM, and OpenSSL holds no buffered records, the session's traffic keys
 * are derived from its traffic secrets (RFC 8446 §7.3), the OpenSSL session is
 * freed, and record protection (§5.2-5.3) continues in tls.c: about 200 bytes
 * per connection instead of about 25 KB. Anything unusual (another cipher,
 * pending data, a post-handshake message) keeps or fails the connection
 * safely: unexpected record types close it; KeyUpdate is refused; each
 * direction is closed after 2^24 records, far below AES-GCM's limit, and the
 * agent simply reconnects.
 */
#ifndef SS_TLS_H
#define SS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/core.h"

/* The DNS name every manager certificate carries and every agent checks. */
#define TLS_MANAGER_NAME "seeswarm-manager"

struct tls_ctx;
struct tls;

/*
 * Creates a context. server selects the role. ca_file is the PEM bundle
 * peers must chain to. cert/key may be NULL for a client that sets its
 * identity per session (tls_set_identity); otherwise they are loaded (the
 * context takes its own references).
 */
int tls_ctx_new(struct tls_ctx **out, bool server, const char *ca_file, X509 *cert,
		EVP_PKEY *key);
void tls_ctx_free(struct tls_ctx *ctx);

/* Enables record offload on a server context (see above). */
void tls_ctx_set_offload(struct tls_ctx *ctx, bool on);

/* Creates a session. expected_name, for clients, is checked against the server certificate. */
struct tls *tls_new(struct tls_ctx *ctx, const char *expected_name);
void tls_free(struct tls *t);
/* Sets this session's certificate and key (clients only; before tls_start). */
int tls_set_identity(struct tls *t, X509 *cert, EVP_PKEY *key);
/* Starts the handshake (clients send their ClientHello; servers do nothing). */
int tls_start(struct tls *t);

/* Appends ciphertext received from the peer. */
int tls_feed(struct tls *t, const uint8_t *data, size_t len);
/*
 * Advances the handshake and appends any plaintext to plain. Returns 0 on
 * progress (possibly none), SS_ECLOSED when the peer sent close_notify, or
 * SS_ETLS on a failure (tls_error() describes it).
 */
int tls_read(struct tls *t, struct buf *plain);
/* Encrypts len bytes. The handshake must be complete. */
int tls_write(struct tls *t, const void *data, size_t len);
/* Moves pending ciphertext into out (appending). Returns the number of bytes moved. */
size_t tls_take_out(struct tls *t, struct buf *out);
/* Queues a close_notify alert. */
void tls_shutdown(struct tls *t);

bool tls_handshake_done(const struct tls *t);
/* A description of the last failure (static or owned by t). */
const char *tls_error(const struct tls *t);
/* The verified peer's certificate subject CN ("" before the handshake or if absent). */
const char *tls_peer_cn(const struct tls *t);
/* DER SubjectPublicKeyInfo of the verified peer (NULL before the handshake). */
const uint8_t *tls_peer_spki(const struct tls *t, size_t *len);
/* SHA-256 of the peer certificate's DER (zeros before the handshake). */
const uint8_t *tls_peer_fingerprint(const struct tls *t);
/* The peer certificate's serial number, lowercase hex ("" before the handshake). */
const char *tls_peer_serial(const struct tls *t);
/*
 * True when the peer presented a node certificate (its subjectAltName carries
 * the attestation-result digest, SS_ATTESTATION_URI_PREFIX); the digest is
 * copied to out.
 */
bool tls_peer_node_digest(const struct tls *t, uint8_t out[32]);
/* True once the session's records are protected by tls.c instead of OpenSSL. */
bool tls_offloaded(const struct tls *t);

#ifdef SS_FUZZING
struct tls *tls_fuzz_offloaded(bool peer);
int tls_fuzz_seal(struct tls *t, uint8_t ct, const uint8_t *data, size_t len, size_t pad);
#endif

#endif
