/*
 * receipt.c - signed task receipts and their offline verification.
 *
 * A receipt file is the canonical JSON (jansson: sorted keys, compact,
 * ASCII-only) of
 *   {"alg":"ES256","cert":"<signer certificate PEM>","receipt":{...},
 *    "sig":"<lowercase hex of the DER ECDSA signature>"}
 * followed by one '\n'. The signature is ECDSA P-256 with SHA-256 over the
 * canonical JSON of the "receipt" object, normalised to low-s. Because the
 * verifier demands the exact canonical bytes, a canonical certificate PEM,
 * lowercase hex and a low-s signature, every other byte string is refused:
 * changing any byte of a valid receipt makes it invalid.
 */
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "agent/exec/exec.h"
#include "attest/ca.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define MAX_SIG_DER 80

static json_t *hex_json(const uint8_t *b, size_t n)
{
	char hex[2 * 64 + 1];
	hex_encode(b, n, hex);
	return json_string(hex);
}

static json_t *digests_json(const struct exec_file_digest *d, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:o, s:I}", "name", d[i].name, "sha256",
						   hex_json(d[i].sha256, SHA256_LEN), "size",
						   (json_int_t)d[i].size));
	return a;
}

static json_t *body_json(const struct exec_spec *spec, const struct exec_result *res,
			 const struct exec_receipt_info *info)
{
	char t0[32], t1[32];
	time_rfc3339(res->start_ms, t0);
	time_rfc3339(res->end_ms, t1);
	json_t *status = json_pack("{s:s, s:i, s:s}", "kind", exec_status_name(res->status), "code",
				   res->code, "message", res->msg);
	if (res->err)
		json_object_set_new(status, "errno", json_integer(res->err));
	json_t *usage = json_pack("{s:I, s:I, s:I, s:I, s:b}", "cpu_ns", (json_int_t)res->usage.cpu_ns,
				  "peak_memory_bytes", (json_int_t)res->usage.peak_mem_bytes, "wall_ms",
				  (json_int_t)res->usage.wall_ms, "oom_kills",
				  (json_int_t)res->usage.oom_kills, "pids_limit_hit",
				  res->usage.pids_limit_hit);
	json_t *limits = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "cpu_millicores",
				   (json_int_t)spec->res.cpu_millicores, "memory_bytes",
				   (json_int_t)spec->res.memory_bytes, "disk_bytes",
				   (json_int_t)spec->res.disk_bytes, "output_bytes",
				   (json_int_t)spec->res.output_bytes, "pids", (json_int_t)spec->res.pids,
				   "timeout_ms", (json_int_t)spec->res.timeout_ms);
	json_t *b = json_pack("{s:i, s:s, s:s, s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:s, s:s}",
			      "version", 1, "task_id", spec->task_id, "job_id", spec->job_id,
			      "attempt", (json_int_t)spec->attempt, "node_id", info->node_id,
			      "code_digest", hex_json(res->code_digest, SHA256_LEN), "inputs",
			      digests_json(res->inputs, res->n_inputs), "outputs",
			      digests_json(res->outputs, res->n_outputs), "status", status, "usage",
			      usage, "limits", limits, "network", spec->network, "started_at", t0,
			      "ended_at", t1);
	if (b)
		json_object_set_new(b, "attestation_digest",
				    info->attest_digest ? hex_json(info->attest_digest, SHA256_LEN)
							: json_null());
	return b;
}

static EC_GROUP *p256_group;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void p256_init(void)
{
	p256_group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

/* The order n of P-256 (the group lives for the whole process). */
static const BIGNUM *p256_order(void)
{
	pthread_once(&p256_once, p256_init);
	return p256_group ? EC_GROUP_get0_order(p256_group) : NULL;
}

/* Rewrites a DER ECDSA signature to its low-s form; returns the new length or -1. */
static int sig_low_s(uint8_t *der, size_t len, size_t cap)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	BIGNUM *half = NULL, *ns = NULL;
	int out = -1;
	const BIGNUM *order = p256_order();
	if (!sig || !order || p != der + len)
		goto out;
	const BIGNUM *r = ECDSA_SIG_get0_r(sig), *s = ECDSA_SIG_get0_s(sig);
	half = BN_dup(order);
	if (!half || !BN_rshift1(half, half))
		goto out;
	if (BN_cmp(s, half) > 0) {
		ns = BN_new();
		BIGNUM *nr = BN_dup(r);
		if (!ns || !nr || !BN_sub(ns, order, s) || !ECDSA_SIG_set0(sig, nr, ns)) {
			BN_free(nr);
			goto out;
		}
		ns = NULL; /* owned by sig */
	}
	int n = i2d_ECDSA_SIG(sig, NULL);
	if (n <= 0 || (size_t)n > cap)
		goto out;
	unsigned char *q = der;
	out = i2d_ECDSA_SIG(sig, &q);
out:
	BN_free(ns);
	BN_free(half);
	ECDSA_SIG_free(sig);
	return out;
}

/* True when der is a canonical DER signature with s <= n/2. */
static bool sig_is_low_s(const uint8_t *der, size_t len)
{
	uint8_t copy[MAX_SIG_DER];
	if (len > sizeof(copy))
		return false;
	memcpy(copy, der, len);
	int n = sig_low_s(copy, len, sizeof(copy));
	return n == (int)len && !memcmp(copy, der, len);
}

static bool is_p256(EVP_PKEY *k)
{
	char group[64];
	size_t gl = 0;
	return k && EVP_PKEY_is_a(k, "EC") &&
	       EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					      &gl) == 1 &&
	       !strcmp(group, "prime256v1");
}

int exec_receipt_build(const struct exec_spec *spec, const struct exec_result *res,
		       const struct exec_receipt_info *info, EVP_PKEY *key, X509 *cert,
		       char **out, size_t *out_len)
{
	json_t *body = NULL, *env = NULL;
	char *canon = NULL, *pem = NULL, *dump = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t sig[MAX_SIG_DER + 16];
	size_t siglen = sizeof(sig);
	char sighex[2 * sizeof(sig) + 1];
	int rc = 0;

	*out = NULL;
	if (!is_p256(key) || !info || !info->node_id) {
		rc = SS_EINVAL;
		goto out;
	}
	body = body_json(spec, res, info);
	canon = body ? json_dumps(body, DUMP_FLAGS) : NULL;
	pem = pem_cert_string(cert);
	md = EVP_MD_CTX_new();
	if (!canon || !pem || !md) {
		rc = SS_ENOMEM;
		goto out;
	}
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (const uint8_t *)canon, strlen(canon)) != 1) {
		rc = SS_ECRYPTO;
		goto out;
	}
	int n = sig_low_s(sig, siglen, sizeof(sig));
	if (n <= 0) {
		rc = SS_ECRYPTO;
		goto out;
	}
	hex_encode(sig, (size_t)n, sighex);
	env = json_pack("{s:s, s:s, s:O, s:s}", "alg", "ES256", "cert", pem, "receipt", body, "sig",
			sighex);
	dump = env ? json_dumps(env, DUMP_FLAGS) : NULL;
	if (!dump) {
		rc = SS_ENOMEM;
		goto out;
	}
	*out = xasprintf("%s\n", dump);
	*out_len = strlen(*out);
out:
	free(dump);
	free(canon);
	free(pem);
	EVP_MD_CTX_free(md);
	json_decref(body);
	json_decref(env);
	return rc;
}

static X509_STORE *store_from_pem(const char *pem, size_t len, int *count)
{
	X509_STORE *st = X509_STORE_new();
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *c;
	*count = 0;
	if (!st || !bio || len > INT32_MAX) {
		X509_STORE_free(st);
		BIO_free(bio);
		return NULL;
	}
	while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(st, c) == 1)
			(*count)++;
		X509_free(c);
	}
	ERR_clear_error();
	BIO_free(bio);
	return st;
}

int exec_receipt_verify(const char *data, size_t len, const char *ca_pem, size_t ca_len,
			char *why, size_t whylen, char **body_out)
{
	json_t *env = NULL;
	char *canon = NULL, *body = NULL, *pem2 = NULL;
	X509 *cert = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *sctx = NULL;
	EVP_MD_CTX *md = NULL;
	BIO *bio = NULL;
	json_error_t jerr;
	uint8_t sig[MAX_SIG_DER];
	int rc = 0, nca = 0;

	if (body_out)
		*body_out = NULL;
	if (len == 0 || len > EXEC_RECEIPT_MAX) {
		rc = why_set(why, whylen, SS_EPARSE, "receipt is empty or larger than %d bytes",
			     EXEC_RECEIPT_MAX);
		goto out;
	}
	env = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!env || !json_is_object(env)) {
		rc = why_set(why, whylen, SS_EPARSE, "receipt is not a JSON object: %s",
			     env ? "wrong type" : jerr.text);
		goto out;
	}
	canon = json_dumps(env, DUMP_FLAGS);
	size_t cl = canon ? strlen(canon) : 0;
	if (!canon || !(len == cl || (len == cl + 1 && data[cl] == '\n')) || memcmp(canon, data, cl) != 0) {
		rc = why_set(why, whylen, SS_EAUTH, "receipt is not in canonical form (modified?)");
		goto out;
	}
	const char *alg = json_string_value(json_object_get(env, "alg"));
	const char *pem = json_string_value(json_object_get(env, "cert"));
	const char *sighex = json_string_value(json_object_get(env, "sig"));
	json_t *rec = json_object_get(env, "receipt");
	if (json_object_size(env) != 4 || !alg || strcmp(alg, "ES256") != 0 || !pem || !sighex ||
	    !json_is_object(rec)) {
		rc = why_set(why, whylen, SS_EPARSE,
			     "receipt needs exactly alg=\"ES256\", cert, receipt and sig");
		goto out;
	}
	const char *node_id = json_string_value(json_object_get(rec, "node_id"));
	if (!node_id) {
		rc = why_set(why, whylen, SS_EPARSE, "receipt has no node_id");
		goto out;
	}

	/* The signer's certificate, in its one canonical PEM form. */
	size_t pl = strlen(pem);
	bio = BIO_new_mem_buf(pem, (int)pl);
	cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	pem2 = cert ? pem_cert_string(cert) : NULL;
	if (!pem2 || strcmp(pem2, pem) != 0) {
		rc = why_set(why, whylen, SS_EAUTH, "the signer certificate is invalid or not canonical");
		goto out;
	}
	store = store_from_pem(ca_pem, ca_len, &nca);
	if (!store || nca == 0) {
		rc = why_set(why, whylen, SS_ECONFIG, "no CA certificate in the CA file");
		goto out;
	}
	sctx = X509_STORE_CTX_new();
	if (!sctx || X509_STORE_CTX_init(sctx, store, cert, NULL) != 1) {
		rc = why_set(why, whylen, SS_ENOMEM, "X509_STORE_CTX");
		goto out;
	}
	/* The CA file is the trust anchor set: any certificate in it may end a chain. */
	X509_STORE_CTX_set_flags(sctx, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_verify_cert(sctx) != 1) {
		rc = why_set(why, whylen, SS_EAUTH, "certificate chain: %s",
			     X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
		goto out;
	}
	uint32_t ku = X509_get_key_usage(cert);
	if (ku != UINT32_MAX && !(ku & KU_DIGITAL_SIGNATURE)) {
		rc = why_set(why, whylen, SS_EAUTH, "the certificate may not sign (keyUsage)");
		goto out;
	}
	char cn[256];
	if (crypto_cert_cn(cert, cn, sizeof(cn)) || strcmp(cn, node_id) != 0) {
		rc = why_set(why, whylen, SS_EAUTH, "certificate CN does not match node_id \"%.64s\"",
			     node_id);
		goto out;
	}
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	if (!is_p256(pub)) {
		rc = why_set(why, whylen, SS_EAUTH, "the signer key is not EC P-256");
		goto out;
	}

	/* The signature: lowercase hex of a canonical low-s DER signature. */
	size_t hl = strlen(sighex);
	if (hl == 0 || hl % 2 || hl / 2 > sizeof(sig)) {
		rc = why_set(why, whylen, SS_EAUTH, "malformed signature");
		goto out;
	}
	for (size_t i = 0; i < hl; i++)
		if (!((sighex[i] >= '0' && sighex[i] <= '9') || (sighex[i] >= 'a' && sighex[i] <= 'f'))) {
			rc = why_set(why, whylen, SS_EAUTH, "malformed signature");
			goto out;
		}
	if (hex_decode(sighex, sig, hl / 2) || !sig_is_low_s(sig, hl / 2)) {
		rc = why_set(why, whylen, SS_EAUTH, "signature is not canonical low-s DER");
		goto out;
	}
	body = json_dumps(rec, DUMP_FLAGS);
	md = EVP_MD_CTX_new();
	if (!body || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) != 1 ||
	    EVP_DigestVerify(md, sig, hl / 2, (const uint8_t *)body, strlen(body)) != 1) {
		rc = why_set(why, whylen, SS_EAUTH, "signature does not verify");
		goto out;
	}
	if (body_out) {
		*body_out = body;
		body = NULL;
	}
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	X509_STORE_CTX_free(sctx);
	X509_STORE_free(store);
	X509_free(cert);
	BIO_free(bio);
	free(pem2);
	free(body);
	free(canon);
	json_decref(env);
	return rc;
}

static int add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	int ok = ext && X509_add_ext(cert, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok ? 0 : SS_ECRYPTO;
}

int exec_ephemeral_identity(const char *node_id, EVP_PKEY **key, X509 **cert)
{
	X509 *c = NULL;
	EVP_PKEY *k = NULL;
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	int rc;

	*key = NULL;
	*cert = NULL;
	if (!ident_valid(node_id))
		return SS_EINVAL;
	if ((rc = crypto_gen_key(&k)))
		goto out;
	c = X509_new();
	rand_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	X509_NAME *name = c ? X509_get_subject_name(c) : NULL;
	if (!c || !bn || !name || X509_set_version(c, X509_VERSION_3) != 1 ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(c), -60) ||
	    !X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)node_id, -1,
				       -1, 0) != 1 ||
	    X509_set_issuer_name(c, name) != 1 || X509_set_pubkey(c, k) != 1) {
		rc = SS_ECRYPTO;
		goto out;
	}
	if ((rc = add_ext(c, NID_basic_constraints, "critical,CA:FALSE")) ||
	    (rc = add_ext(c, NID_key_usage, "critical,digitalSignature")) ||
	    (rc = add_ext(c, NID_subject_key_identifier, "hash")))
		goto out;
	if (X509_sign(c, k, EVP_sha256()) <= 0) {
		rc = SS_ECRYPTO;
		goto out;
	}
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
out:
	ERR_clear_error();
	BN_free(bn);
	X509_free(c);
	EVP_PKEY_free(k);
	return rc;
}
