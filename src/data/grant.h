/*
 * grant.h - blob fetch grants: the manager's signature that one node may
 * read one blob from another.
 *
 * A grant is an ECDSA P-256 signature (DER, low-s not required) over
 * SHA-256("seeswarm blob grant v1" NUL || digest || len(node_id) || node_id),
 * made with the manager's grant key. The manager puts one in every TaskInput
 * that names sources and in every BlobReplicate; the fetching agent sends it
 * with each BlobGet on a peer link, and the serving agent checks it against
 * the node id of the link's certificate and the digest asked for. So an
 * agent reads from its peers only the blobs the manager sent it to fetch:
 * knowing a digest (receipts publish them) is not enough.
 *
 * The grant key has its own certificate, issued by the swarm CA with the
 * common name GRANT_CN; the manager sends it to each agent it admits, and
 * the agent accepts it only when it verifies against its ca.pem.
 *
 * Functions return 0 or a negative SS_E* code; they are thread-safe.
 */
#ifndef SS_GRANT_H
#define SS_GRANT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/core.h"

#define GRANT_MAX_SIG 80 /* a DER ECDSA P-256 signature is at most 72 bytes */
#define GRANT_CN "seeswarm blob grants"

/*
 * Signs a grant for node_id (1..63 bytes) to read digest. sig must hold
 * GRANT_MAX_SIG bytes; *sig_len gets the length.
 */
int grant_sign(EVP_PKEY *key, const uint8_t digest[SHA256_LEN], const char *node_id, uint8_t *sig,
	       size_t *sig_len);

/* 0 when sig is a grant by pub for node_id to read digest; SS_EAUTH otherwise. */
int grant_verify(EVP_PKEY *pub, const uint8_t digest[SHA256_LEN], const char *node_id,
		 const uint8_t *sig, size_t sig_len);

/*
 * The last GRANT_CACHE_SIZE grants that verified, so that a blob fetched in
 * many chunks costs one signature check. Not thread-safe: one owner thread.
 */
#define GRANT_CACHE_SIZE 64

struct grant_cache {
	struct {
		char node[64];
		uint8_t digest[SHA256_LEN];
		uint8_t sig[GRANT_MAX_SIG];
		uint8_t sig_len;
	} e[GRANT_CACHE_SIZE];
	unsigned next;
};

/* grant_verify through the cache: a grant seen before is accepted without the signature check. */
int grant_check(struct grant_cache *c, EVP_PKEY *pub, const uint8_t digest[SHA256_LEN],
		const char *node_id, const uint8_t *sig, size_t sig_len);

/*
 * Checks a grant-key certificate: signed by ca, within its validity, common
 * name GRANT_CN, an EC P-256 key. Returns 0 or SS_EAUTH.
 */
int grant_cert_check(X509 *cert, X509 *ca);

#endif
