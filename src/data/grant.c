/* grant.c - blob fetch grants (contract in grant.h). */
#include <stdio.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "data/grant.h"

static const char prefix[] = "seeswarm blob grant v1"; /* its NUL is part of the message */

/* The SHA-256 of the signed message, or SS_EINVAL for a bad node id. */
static int message_hash(const uint8_t digest[SHA256_LEN], const char *node_id, uint8_t out[SHA256_LEN])
{
	size_t nl = node_id ? strlen(node_id) : 0;
	uint8_t msg[sizeof prefix + SHA256_LEN + 1 + 255];
	if (nl == 0 || nl > 255)
		return SS_EINVAL;
	memcpy(msg, prefix, sizeof prefix);
	memcpy(msg + sizeof prefix, digest, SHA256_LEN);
	msg[sizeof prefix + SHA256_LEN] = (uint8_t)nl;
	for (size_t i = 0; i < nl; i++) /* the id's bytes, without its NUL */
		msg[sizeof prefix + SHA256_LEN + 1 + i] = (uint8_t)node_id[i];
	sha256(msg, sizeof prefix + SHA256_LEN + 1 + nl, out);
	return 0;
}

int grant_sign(EVP_PKEY *key, const uint8_t digest[SHA256_LEN], const char *node_id, uint8_t *sig,
	       size_t *sig_len)
{
	uint8_t h[SHA256_LEN];
	EVP_PKEY_CTX *ctx = NULL;
	size_t len = GRANT_MAX_SIG;
	int rc = message_hash(digest, node_id, h);
	if (rc)
		goto out;
	rc = SS_ECRYPTO;
	ctx = EVP_PKEY_CTX_new(key, NULL);
	if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_sign(ctx, sig, &len, h, sizeof h) != 1)
		goto out;
	*sig_len = len;
	rc = 0;
out:
	if (rc == SS_ECRYPTO)
		ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

int grant_verify(EVP_PKEY *pub, const uint8_t digest[SHA256_LEN], const char *node_id,
		 const uint8_t *sig, size_t sig_len)
{
	uint8_t h[SHA256_LEN];
	EVP_PKEY_CTX *ctx = NULL;
	int rc = SS_EAUTH;
	if (!pub || !sig || sig_len == 0 || sig_len > GRANT_MAX_SIG || message_hash(digest, node_id, h))
		goto out;
	ctx = EVP_PKEY_CTX_new(pub, NULL);
	if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
	    EVP_PKEY_verify(ctx, sig, sig_len, h, sizeof h) == 1)
		rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

int grant_check(struct grant_cache *c, EVP_PKEY *pub, const uint8_t digest[SHA256_LEN],
		const char *node_id, const uint8_t *sig, size_t sig_len)
{
	if (!node_id || strlen(node_id) >= sizeof c->e[0].node || !sig || sig_len == 0 ||
	    sig_len > GRANT_MAX_SIG)
		return SS_EAUTH;
	/* A hit must match all three, so a cached grant never stands in for another. */
	for (unsigned i = 0; i < GRANT_CACHE_SIZE; i++)
		if (c->e[i].sig_len == sig_len && !memcmp(c->e[i].digest, digest, SHA256_LEN) &&
		    !strcmp(c->e[i].node, node_id) && !memcmp(c->e[i].sig, sig, sig_len))
			return 0;
	int rc = grant_verify(pub, digest, node_id, sig, sig_len);
	if (rc)
		return rc;
	unsigned k = c->next++ % GRANT_CACHE_SIZE;
	snprintf(c->e[k].node, sizeof c->e[k].node, "%s", node_id);
	memcpy(c->e[k].digest, digest, SHA256_LEN);
	memcpy(c->e[k].sig, sig, sig_len);
	c->e[k].sig_len = (uint8_t)sig_len;
	return 0;
}

int grant_cert_check(X509 *cert, X509 *ca)
{
	char cn[64] = "";
	EVP_PKEY *ca_key = ca ? X509_get0_pubkey(ca) : NULL;
	EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
	int rc = SS_EAUTH;
	if (!ca_key || !key || X509_verify(cert, ca_key) != 1 ||
	    X509_cmp_time(X509_get0_notBefore(cert), NULL) >= 0 ||
	    X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0)
		goto out;
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) <= 0 ||
	    strcmp(cn, GRANT_CN) != 0)
		goto out;
	char group[32] = "";
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
	    EVP_PKEY_get_group_name(key, group, sizeof group, NULL) != 1 || strcmp(group, "prime256v1") != 0)
		goto out;
	rc = 0;
out:
	ERR_clear_error();
	return rc;
}
