/*
 * ca.h - the swarm certificate authority and X.509 helpers.
 *
 * The swarm CA is an EC P-256 key with a self-signed certificate. It signs
 * the manager's TLS certificate, agent join certificates and (later) node
 * certificates. All OpenSSL objects returned here are owned by the caller
 * unless stated otherwise. Functions return 0 or a negative SS_E* code.
 */
#ifndef SS_CA_H
#define SS_CA_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/core.h"

struct ca;

/* Usage of an issued certificate. */
enum ca_usage {
	CA_USAGE_SERVER = 1, /* serverAuth */
	CA_USAGE_CLIENT = 2, /* clientAuth */
};

struct ca_issue_opts {
	const char *common_name;        /* subject CN; required */
	const char *const *dns_sans;    /* NULL-terminated list or NULL */
	const char *const *ip_sans;     /* NULL-terminated list of IPv4/IPv6 literals or NULL */
	int64_t not_before;             /* unix seconds; 0 means now - 60 s */
	int64_t lifetime_s;             /* seconds of validity; required > 0 */
	unsigned usage;                 /* CA_USAGE_* bits */
	const uint8_t *attestation_digest; /* 32 bytes: adds the SAN URI of a node certificate */
};

/* Node-certificate facts (digest, serial) are read with cert_* in core.h. */

/* Generates a new EC P-256 key. */
int crypto_gen_key(EVP_PKEY **out);

/*
 * Creates DIR/ca.key (0600) and DIR/ca.pem (0644) with a new self-signed CA
 * (CN = "seeswarm swarm CA <short random id>", 10 years) unless both exist.
 * Sets *created when it made them. DIR must exist.
 */
int ca_init_dir(const char *dir, bool *created);

/* Loads the CA from DIR/ca.key and DIR/ca.pem. */
int ca_load(struct ca **out, const char *dir);
void ca_free(struct ca *ca);
/* The CA certificate; owned by the CA. */
X509 *ca_cert(const struct ca *ca);

/* Issues a certificate for pubkey, signed by the CA (serial is 128 random bits). */
int ca_issue(struct ca *ca, EVP_PKEY *pubkey, const struct ca_issue_opts *opts, X509 **out);

/* PEM I/O. Writes are atomic; keys are written 0600. */
int pem_write_key(const char *path, EVP_PKEY *key);
int pem_write_cert(const char *path, X509 *cert, unsigned mode);
int pem_read_key(const char *path, EVP_PKEY **out);
int pem_read_cert(const char *path, X509 **out);
/* The certificate (or key) as a NUL-terminated PEM string (caller frees). */
char *pem_cert_string(X509 *cert);
char *pem_key_string(EVP_PKEY *key);

/* DER of the SubjectPublicKeyInfo of key (caller frees *der). */
int crypto_spki_der(EVP_PKEY *key, uint8_t **der, size_t *len);

/* SHA-256 of the certificate's DER encoding. */
int crypto_cert_fingerprint(X509 *cert, uint8_t out[32]);

/*
 * Issues agent join credentials into out_dir (created 0700): agent.key
 * (0600), agent.pem (CN = agent_id, clientAuth, lifetime_s) and ca.pem, and
 * writes agent_id to out_dir/node-id. agent_id must satisfy ident_valid().
 */
int ca_issue_agent_dir(struct ca *ca, const char *agent_id, const char *out_dir,
		       int64_t lifetime_s);

/* Reads the subject CN of cert into out (NUL-terminated). */
int crypto_cert_cn(X509 *cert, char *out, size_t outlen);

#endif
