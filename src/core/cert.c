/* cert.c - facts read from X.509 certificates that several modules need. */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/core.h"

int cert_attestation_digest(X509 *cert, uint8_t out[32])
{
	int rc = SS_ENOTFOUND;
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t plen = strlen(SS_ATTESTATION_URI_PREFIX);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_URI)
			continue;
		const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		int ul = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (ul != (int)(plen + 64) || strncmp(u, SS_ATTESTATION_URI_PREFIX, plen) != 0)
			continue;
		char hex[65];
		memcpy(hex, u + plen, 64);
		hex[64] = '\0';
		rc = hex_decode(hex, out, 32) == 0 ? 0 : SS_EPARSE;
		break;
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	return rc;
}

int cert_serial_hex(X509 *cert, char *out, size_t outlen)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	int rc = SS_EPARSE;
	if (hex && strlen(hex) < outlen) {
		size_t n = strlen(hex);
		for (size_t i = 0; i <= n; i++)
			out[i] = (char)tolower((unsigned char)hex[i]);
		rc = 0;
	}
	OPENSSL_free(hex);
	BN_free(bn);
	return rc;
}

void cert_fmt_time(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "@%lld", (long long)t);
}

int cert_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return SS_EPARSE;
	*out = (int64_t)timegm(&tm);
	return 0;
}

void cert_name_cn(const X509_NAME *name, char *out, size_t len)
{
	snprintf(out, len, "?");
	int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if (idx < 0)
		return;
	const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	const uint8_t *d = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);
	size_t j = 0;
	for (int i = 0; i < n && j + 1 < len; i++)
		out[j++] = (d[i] >= 0x20 && d[i] < 0x7f) ? (char)d[i] : '?';
	out[j] = '\0';
}

void cert_subject_cn(X509 *x, char *out, size_t len)
{
	cert_name_cn(x ? X509_get_subject_name(x) : NULL, out, len);
}

void cert_window(X509 *x, int64_t *from, int64_t *until)
{
	int64_t nb = 0, na = 0;
	if (cert_time_unix(X509_get0_notBefore(x), &nb) < 0 ||
	    cert_time_unix(X509_get0_notAfter(x), &na) < 0) {
		*from = INT64_MAX;
		*until = INT64_MIN;
		return;
	}
	if (nb > *from)
		*from = nb;
	if (na < *until)
		*until = na;
}

void cert_explain_verify(X509_STORE_CTX *ctx, int64_t now, const char *chain,
			 const char *no_issuer, char *reason, size_t rlen)
{
	if (!reason || !rlen)
		return;
	int err = X509_STORE_CTX_get_error(ctx);
	int depth = X509_STORE_CTX_get_error_depth(ctx);
	X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
	STACK_OF(X509) *stack = X509_STORE_CTX_get0_chain(ctx);
	char cn[64], icn[64], t1[32], t2[32];
	int64_t t = 0;
	cert_subject_cn(cur, cn, sizeof cn);
	cert_fmt_time(now, t2);
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID: {
		bool expired = err == X509_V_ERR_CERT_HAS_EXPIRED;
		if (!cur || cert_time_unix(expired ? X509_get0_notAfter(cur) : X509_get0_notBefore(cur),
					   &t) < 0)
			t = 0;
		cert_fmt_time(t, t1);
		snprintf(reason, rlen, "certificate '%s' %s %s (verification time %s)", cn,
			 expired ? "expired at" : "is not valid before", t1, t2);
		break;
	}
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		if (stack && depth + 1 < sk_X509_num(stack))
			cert_subject_cn(sk_X509_value(stack, depth + 1), icn, sizeof icn);
		else
			snprintf(icn, sizeof icn, "?");
		snprintf(reason, rlen,
			 "certificate '%s' is not signed by '%s': its signature does not verify (%s)", cn,
			 icn, chain);
		break;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
		cert_name_cn(cur ? X509_get_issuer_name(cur) : NULL, icn, sizeof icn);
		snprintf(reason, rlen, "%s: no certificate '%s' that issued '%s' %s", chain, icn, cn,
			 no_issuer);
		break;
	default:
		snprintf(reason, rlen, "%s does not verify at certificate '%s': %s", chain, cn,
			 X509_verify_cert_error_string(err));
		break;
	}
}

struct cert_slot {
	bool used;
	uint8_t key[32];
	int64_t from, until;
	EVP_PKEY *pkey;
	unsigned char *payload; /* payload_size bytes */
};

struct cert_cache {
	pthread_mutex_t mu;
	struct cert_slot *slots;
	size_t n, next, payload_size;
};

struct cert_cache *cert_cache_new(size_t slots, size_t payload_size)
{
	struct cert_cache *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	c->n = slots ? slots : 1;
	c->payload_size = payload_size;
	c->slots = xcalloc(c->n, sizeof *c->slots);
	for (size_t i = 0; i < c->n; i++)
		c->slots[i].payload = xcalloc(1, payload_size ? payload_size : 1);
	return c;
}

bool cert_cache_get(struct cert_cache *c, const uint8_t key[32], int64_t now, void *payload,
		    EVP_PKEY **pkey, int64_t *from, int64_t *until)
{
	bool hit = false;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n && !hit; i++) {
		const struct cert_slot *s = &c->slots[i];
		if (!s->used || memcmp(s->key, key, 32) != 0 || now < s->from || now > s->until)
			continue;
		if (s->pkey && EVP_PKEY_up_ref(s->pkey) != 1)
			fatal("EVP_PKEY_up_ref failed");
		memcpy(payload, s->payload, c->payload_size);
		*pkey = s->pkey;
		*from = s->from;
		*until = s->until;
		hit = true;
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

void cert_cache_put(struct cert_cache *c, const uint8_t key[32], const void *payload,
		    EVP_PKEY *pkey, int64_t from, int64_t until)
{
	pthread_mutex_lock(&c->mu);
	struct cert_slot *s = NULL;
	for (size_t i = 0; i < c->n && !s; i++)
		if (c->slots[i].used && !memcmp(c->slots[i].key, key, 32))
			s = &c->slots[i];
	if (!s) {
		s = &c->slots[c->next];
		if (++c->next >= c->n)
			c->next = 0;
	}
	if (pkey && EVP_PKEY_up_ref(pkey) != 1)
		fatal("EVP_PKEY_up_ref failed");
	EVP_PKEY_free(s->pkey);
	s->used = true;
	memcpy(s->key, key, 32);
	s->from = from;
	s->until = until;
	s->pkey = pkey;
	memcpy(s->payload, payload, c->payload_size);
	pthread_mutex_unlock(&c->mu);
}

void cert_cache_reset(struct cert_cache *c)
{
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n; i++) {
		struct cert_slot *s = &c->slots[i];
		EVP_PKEY_free(s->pkey);
		s->pkey = NULL;
		s->used = false;
		memset(s->payload, 0, c->payload_size);
	}
	c->next = 0;
	pthread_mutex_unlock(&c->mu);
}

void cert_cache_free(struct cert_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		EVP_PKEY_free(c->slots[i].pkey);
		free(c->slots[i].payload);
	}
	free(c->slots);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
