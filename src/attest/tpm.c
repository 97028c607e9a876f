/*
 * tpm.c - the "tpm" verifier: TPM 2.0 quotes (TPMS_ATTEST + TPMT_SIGNATURE),
 * AK names, PCR digests and policy, the EK certificate chain, software
 * MakeCredential and the AK trust cache. Everything here is pure OpenSSL;
 * the tss2 attester lives in src/agent/tpm_attester.c.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "attest/tpm.h"
#include "core/core.h"

#define TPM_GENERATED_VALUE 0xff544347u
#define TPM_ST_ATTEST_QUOTE 0x8018
#define TPM_ALG_RSA 0x0001
#define TPM_ALG_AES 0x0006
#define TPM_ALG_NULL 0x0010
#define TPM_ALG_RSASSA 0x0014
#define TPM_ALG_RSAES 0x0015
#define TPM_ALG_RSAPSS 0x0016
#define TPM_ALG_OAEP 0x0017
#define TPM_ALG_ECDSA 0x0018
#define TPM_ALG_ECDAA 0x001a
#define TPM_ALG_ECC 0x0023
#define TPM_ALG_CFB 0x0043
#define TPM_ECC_NIST_P256 0x0003
#define TPM_ECC_NIST_P384 0x0004
#define TPM_ECC_NIST_P521 0x0005

#define TPMA_FIXEDTPM 0x00000002u
#define TPMA_FIXEDPARENT 0x00000010u
#define TPMA_RESTRICTED 0x00010000u
#define TPMA_DECRYPT 0x00020000u
#define TPMA_SIGN 0x00040000u

#define REC_MAX 1024
#define EK_CERT_MAX 8192
#define CA_FILES_MAX 64
#define CA_FILE_MAX (1024 * 1024)
#define CHAIN_CACHE_SLOTS 64
#define AK_CACHE_SLOTS 1024

/* Hash algorithms as bits of allowed_hash_algs. */
#define HBIT_SHA1 1u
#define HBIT_SHA256 2u
#define HBIT_SHA384 4u
#define HBIT_SHA512 8u
#define HASH_DEFAULT (HBIT_SHA256 | HBIT_SHA384)

/* ---- algorithms -------------------------------------------------------- */

size_t tpm_alg_digest_len(uint16_t alg)
{
	switch (alg) {
	case TPM_ALG_SHA1:
		return 20;
	case TPM_ALG_SHA256:
		return 32;
	case TPM_ALG_SHA384:
		return 48;
	case TPM_ALG_SHA512:
		return 64;
	default:
		return 0;
	}
}

/* Explicitly fetched digests: implicit fetching on every call is slow. */
static EVP_MD *mds[4];
static pthread_once_t mds_once = PTHREAD_ONCE_INIT;

static void mds_fetch(void)
{
	static const char *const names[4] = {"SHA1", "SHA256", "SHA384", "SHA512"};
	for (int i = 0; i < 4; i++)
		if (!(mds[i] = EVP_MD_fetch(NULL, names[i], NULL)))
			fatal("OpenSSL has no %s", names[i]);
}

static const EVP_MD *alg_md(uint16_t alg)
{
	pthread_once(&mds_once, mds_fetch);
	switch (alg) {
	case TPM_ALG_SHA1:
		return mds[0];
	case TPM_ALG_SHA256:
		return mds[1];
	case TPM_ALG_SHA384:
		return mds[2];
	case TPM_ALG_SHA512:
		return mds[3];
	default:
		return NULL;
	}
}

static const char *alg_name(uint16_t alg)
{
	switch (alg) {
	case TPM_ALG_SHA1:
		return "sha1";
	case TPM_ALG_SHA256:
		return "sha256";
	case TPM_ALG_SHA384:
		return "sha384";
	case TPM_ALG_SHA512:
		return "sha512";
	case TPM_ALG_RSASSA:
		return "rsassa";
	case TPM_ALG_RSAPSS:
		return "rsapss";
	case TPM_ALG_ECDSA:
		return "ecdsa";
	default:
		return "unknown";
	}
}

static uint16_t alg_by_name(const char *s)
{
	static const uint16_t algs[] = {TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384,
					TPM_ALG_SHA512};
	for (size_t i = 0; i < ARRAY_LEN(algs); i++)
		if (!strcmp(s, alg_name(algs[i])))
			return algs[i];
	return 0;
}

static unsigned alg_bit(uint16_t alg)
{
	switch (alg) {
	case TPM_ALG_SHA1:
		return HBIT_SHA1;
	case TPM_ALG_SHA256:
		return HBIT_SHA256;
	case TPM_ALG_SHA384:
		return HBIT_SHA384;
	case TPM_ALG_SHA512:
		return HBIT_SHA512;
	default:
		return 0;
	}
}

static void digest(uint16_t alg, const uint8_t *p, size_t n, uint8_t *out)
{
	unsigned int len = 0;
	if (!EVP_Digest(p, n, out, &len, alg_md(alg), NULL))
		fatal("EVP_Digest failed");
}

/* ---- big-endian reader --------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t n;
	size_t off;
	bool bad;
};

static bool rd_take(struct rd *r, size_t k, const uint8_t **out)
{
	if (r->bad || r->n - r->off < k) {
		r->bad = true;
		return false;
	}
	*out = r->p + r->off;
	r->off += k;
	return true;
}

static uint64_t rd_be(struct rd *r, size_t k)
{
	const uint8_t *p;
	uint64_t v = 0;
	if (!rd_take(r, k, &p))
		return 0;
	for (size_t i = 0; i < k; i++)
		v = (v << 8) | p[i];
	return v;
}

static uint8_t rd_u8(struct rd *r) { return (uint8_t)rd_be(r, 1); }
static uint16_t rd_u16(struct rd *r) { return (uint16_t)rd_be(r, 2); }
static uint32_t rd_u32(struct rd *r) { return (uint32_t)rd_be(r, 4); }
static uint64_t rd_u64(struct rd *r) { return rd_be(r, 8); }

/* Reads a TPM2B of at most max bytes; a larger size marks the reader bad. */
static const uint8_t *rd_tpm2b(struct rd *r, size_t max, size_t *len)
{
	const uint8_t *p = NULL;
	size_t n = rd_u16(r);
	if (r->bad || n > max) {
		r->bad = true;
		*len = 0;
		return NULL;
	}
	if (!rd_take(r, n, &p)) {
		*len = 0;
		return NULL;
	}
	*len = n;
	return p;
}

static void put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, x, 2);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- TPMS_ATTEST --------------------------------------------------------- */

int tpm_attest_parse(const uint8_t *p, size_t n, struct tpm_quote *q, char *reason,
		     size_t reason_len)
{
	struct rd r = {.p = p, .n = n};
	const uint8_t *b;
	size_t len;
	memset(q, 0, sizeof *q);
	if (n > REC_MAX)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST is %zu bytes (max %d)", n,
			       REC_MAX);
	uint32_t magic = rd_u32(&r);
	uint16_t type = rd_u16(&r);
	if (r.bad)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST truncated in its header");
	if (magic != TPM_GENERATED_VALUE)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST magic is 0x%08x, not TPM_GENERATED_VALUE 0xff544347",
			       magic);
	if (type != TPM_ST_ATTEST_QUOTE)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST type is 0x%04x, not TPM_ST_ATTEST_QUOTE 0x8018", type);
	b = rd_tpm2b(&r, TPM_MAX_NAME, &len);
	if (b) {
		memcpy(q->signer, b, len);
		q->signer_len = len;
	}
	b = rd_tpm2b(&r, TPM_MAX_DIGEST, &len);
	if (b) {
		memcpy(q->extra, b, len);
		q->extra_len = len;
	}
	q->clock = rd_u64(&r);
	q->reset_count = rd_u32(&r);
	q->restart_count = rd_u32(&r);
	q->safe = rd_u8(&r);
	q->firmware_version = rd_u64(&r);
	uint32_t count = rd_u32(&r);
	if (r.bad)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST truncated or oversized before the PCR selection");
	if (q->safe > 1)
		return why_set(reason, reason_len, SS_EPARSE, "TPMS_ATTEST clockInfo.safe is %u",
			       q->safe);
	if (count > TPM_MAX_BANKS)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST selects %u PCR banks (max %d)", count, TPM_MAX_BANKS);
	for (uint32_t i = 0; i < count; i++) {
		uint16_t alg = rd_u16(&r);
		uint8_t sz = rd_u8(&r);
		if (r.bad)
			break;
		if (!tpm_alg_digest_len(alg))
			return why_set(reason, reason_len, SS_EPARSE,
				       "TPMS_ATTEST selects unsupported PCR bank 0x%04x", alg);
		for (uint32_t j = 0; j < i; j++)
			if (q->sel.bank[j].alg == alg)
				return why_set(reason, reason_len, SS_EPARSE,
					       "TPMS_ATTEST selects PCR bank %s twice",
					       alg_name(alg));
		if (sz > 4)
			return why_set(reason, reason_len, SS_EPARSE,
				       "TPMS_ATTEST sizeofSelect is %u (max 4)", sz);
		uint32_t mask = 0;
		for (uint8_t k = 0; k < sz; k++)
			mask |= (uint32_t)rd_u8(&r) << (8 * k);
		if (mask >> TPM_NUM_PCRS)
			return why_set(reason, reason_len, SS_EPARSE,
				       "TPMS_ATTEST selects a PCR above %d", TPM_NUM_PCRS - 1);
		q->sel.bank[i].alg = alg;
		q->sel.bank[i].mask = mask;
		q->sel.n = i + 1;
	}
	b = rd_tpm2b(&r, TPM_MAX_DIGEST, &len);
	if (b) {
		memcpy(q->pcr_digest, b, len);
		q->pcr_digest_len = len;
	}
	if (r.bad)
		return why_set(reason, reason_len, SS_EPARSE, "TPMS_ATTEST truncated or oversized");
	if (r.off != n)
		return why_set(reason, reason_len, SS_EPARSE,
			       "TPMS_ATTEST has %zu trailing bytes", n - r.off);
	return 0;
}

/* ---- TPMT_PUBLIC --------------------------------------------------------- */

struct tpm_pub {
	uint16_t type, name_alg;
	uint32_t attrs;
	uint16_t sym_alg, sym_bits, sym_mode;
	uint16_t scheme, scheme_hash;
	uint16_t curve, kdf;
	uint32_t exponent;
	const uint8_t *mod, *x, *y;
	size_t mod_len, x_len, y_len;
	uint8_t name[TPM_MAX_NAME];
	size_t name_len;
};

/* Parses a marshalled TPM2B_PUBLIC (RSA or ECC) and computes its name. */
static int pub_parse(const uint8_t *p, size_t n, struct tpm_pub *k, char *reason, size_t rlen)
{
	struct rd r = {.p = p, .n = n};
	size_t len, inner;
	memset(k, 0, sizeof *k);
	if (n > REC_MAX)
		return why_set(reason, rlen, SS_EPARSE, "TPM2B_PUBLIC is %zu bytes (max %d)", n,
			       REC_MAX);
	inner = rd_u16(&r);
	if (r.bad || inner != n - 2)
		return why_set(reason, rlen, SS_EPARSE,
			       "TPM2B_PUBLIC size does not match its %zu-byte buffer", n);
	k->type = rd_u16(&r);
	k->name_alg = rd_u16(&r);
	k->attrs = rd_u32(&r);
	(void)rd_tpm2b(&r, TPM_MAX_DIGEST, &len);
	if (r.bad)
		return why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC truncated");
	if (k->type != TPM_ALG_RSA && k->type != TPM_ALG_ECC)
		return why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC type 0x%04x is not RSA or ECC",
			       k->type);
	if (!tpm_alg_digest_len(k->name_alg))
		return why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC nameAlg 0x%04x unsupported",
			       k->name_alg);
	k->sym_alg = rd_u16(&r);
	if (k->sym_alg != TPM_ALG_NULL) {
		k->sym_bits = rd_u16(&r);
		k->sym_mode = rd_u16(&r);
	}
	k->scheme = rd_u16(&r);
	if (k->scheme != TPM_ALG_NULL && k->scheme != TPM_ALG_RSAES)
		k->scheme_hash = rd_u16(&r);
	if (k->scheme == TPM_ALG_ECDAA)
		(void)rd_u16(&r);
	if (k->type == TPM_ALG_RSA) {
		uint16_t bits = rd_u16(&r);
		k->exponent = rd_u32(&r);
		k->mod = rd_tpm2b(&r, 512, &k->mod_len);
		if (!r.bad && (bits < 1024 || bits > 4096 || k->mod_len != bits / 8u))
			return why_set(reason, rlen, SS_EPARSE,
				       "TPMT_PUBLIC RSA keyBits %u does not match a %zu-byte modulus",
				       bits, k->mod_len);
	} else {
		k->curve = rd_u16(&r);
		k->kdf = rd_u16(&r);
		if (k->kdf != TPM_ALG_NULL)
			(void)rd_u16(&r);
		k->x = rd_tpm2b(&r, 66, &k->x_len);
		k->y = rd_tpm2b(&r, 66, &k->y_len);
	}
	if (r.bad)
		return why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC truncated or oversized");
	if (r.off != n)
		return why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC has %zu trailing bytes",
			       n - r.off);
	k->name[0] = (uint8_t)(k->name_alg >> 8);
	k->name[1] = (uint8_t)k->name_alg;
	digest(k->name_alg, p + 2, n - 2, k->name + 2);
	k->name_len = 2 + tpm_alg_digest_len(k->name_alg);
	return 0;
}

int tpm_public_name(const uint8_t *tpm2b_public, size_t len, uint8_t *name, size_t *name_len)
{
	struct tpm_pub k;
	int rc = pub_parse(tpm2b_public, len, &k, NULL, 0);
	if (rc)
		return rc;
	memcpy(name, k.name, k.name_len);
	*name_len = k.name_len;
	return 0;
}

static const char *curve_group(uint16_t curve, size_t *field)
{
	switch (curve) {
	case TPM_ECC_NIST_P256:
		*field = 32;
		return "P-256";
	case TPM_ECC_NIST_P384:
		*field = 48;
		return "P-384";
	case TPM_ECC_NIST_P521:
		*field = 66;
		return "P-521";
	default:
		*field = 0;
		return NULL;
	}
}

/* Builds an OpenSSL public key from a parsed TPMT_PUBLIC. */
static int pub_pkey(const struct tpm_pub *k, EVP_PKEY **out, char *reason, size_t rlen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t point[1 + 2 * 66];
	int rc = SS_EPARSE;
	*out = NULL;
	if (!bld)
		fatal("out of memory");
	if (k->type == TPM_ALG_RSA) {
		n = BN_bin2bn(k->mod, (int)k->mod_len, NULL);
		e = BN_new();
		if (!n || !e || !BN_set_word(e, k->exponent ? k->exponent : 65537))
			fatal("out of memory");
		if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto out;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else {
		size_t field;
		const char *group = curve_group(k->curve, &field);
		if (!group) {
			rc = why_set(reason, rlen, SS_EPARSE, "ECC curve 0x%04x unsupported", k->curve);
			goto out;
		}
		if (k->x_len > field || k->y_len > field) {
			rc = why_set(reason, rlen, SS_EPARSE, "ECC point larger than the %s field",
				     group);
			goto out;
		}
		memset(point, 0, sizeof point);
		point[0] = 4;
		memcpy(point + 1 + field - k->x_len, k->x, k->x_len);
		memcpy(point + 1 + 2 * field - k->y_len, k->y, k->y_len);
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
						      1 + 2 * field))
			goto out;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0 || !*out) {
		rc = why_set(reason, rlen, SS_EPARSE, "TPMT_PUBLIC key is not a valid %s public key",
			     k->type == TPM_ALG_RSA ? "RSA" : "ECC");
		goto out;
	}
	rc = 0;
out:
	if (rc && reason && rlen && !reason[0])
		snprintf(reason, rlen, "TPMT_PUBLIC key cannot be imported");
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* Parses a SubjectPublicKeyInfo in DER or PEM. */
static EVP_PKEY *spki_parse(const uint8_t *p, size_t n)
{
	if (n > 16 && !memcmp(p, "-----BEGIN", 10)) {
		BIO *bio = BIO_new_mem_buf(p, (int)n);
		EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		return k;
	}
	const uint8_t *q = p;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &q, (long)n);
	if (k && q != p + n) {
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

/* ---- parsed-key cache ---------------------------------------------------- */

/*
 * Importing a public key costs as much as verifying a signature, so parsed
 * AK keys are cached by SHA-256 of their encoding (SPKI or TPM2B_PUBLIC).
 * Entries hold a reference; lookups return a new reference.
 */
#define KEY_CACHE_SLOTS 64
static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint8_t key[32];
	EVP_PKEY *pkey;
} key_cache[KEY_CACHE_SLOTS];
static size_t key_next;

static EVP_PKEY *key_cache_get(const uint8_t key[32])
{
	EVP_PKEY *k = NULL;
	pthread_mutex_lock(&key_mu);
	for (size_t i = 0; i < KEY_CACHE_SLOTS; i++)
		if (key_cache[i].pkey && !memcmp(key_cache[i].key, key, 32)) {
			k = key_cache[i].pkey;
			EVP_PKEY_up_ref(k);
			break;
		}
	pthread_mutex_unlock(&key_mu);
	return k;
}

static void key_cache_put(const uint8_t key[32], EVP_PKEY *k)
{
	pthread_mutex_lock(&key_mu);
	size_t i = key_next++ % KEY_CACHE_SLOTS;
	EVP_PKEY_free(key_cache[i].pkey);
	memcpy(key_cache[i].key, key, 32);
	key_cache[i].pkey = k;
	EVP_PKEY_up_ref(k);
	pthread_mutex_unlock(&key_mu);
}

/* ---- signatures ---------------------------------------------------------- */

struct tpm_sig {
	uint16_t alg, hash;
	const uint8_t *a, *b; /* RSA: a = signature; ECDSA: a = r, b = s */
	size_t a_len, b_len;
};

/*
 * Parses a TPMT_SIGNATURE that must consume exactly n bytes; when it does not
 * and n equals the RSA key size, takes the bytes as a raw RSASSA-PKCS1-v1_5
 * SHA-256 signature (as Azure's vTPM tooling ships them).
 */
static int sig_parse(const uint8_t *p, size_t n, EVP_PKEY *ak, struct tpm_sig *s, bool allow_raw,
		     char *reason, size_t rlen)
{
	struct rd r = {.p = p, .n = n};
	memset(s, 0, sizeof *s);
	s->alg = rd_u16(&r);
	s->hash = rd_u16(&r);
	if (s->alg == TPM_ALG_RSASSA || s->alg == TPM_ALG_RSAPSS) {
		s->a = rd_tpm2b(&r, 512, &s->a_len);
	} else if (s->alg == TPM_ALG_ECDSA) {
		s->a = rd_tpm2b(&r, 66, &s->a_len);
		s->b = rd_tpm2b(&r, 66, &s->b_len);
	} else {
		r.bad = true;
	}
	if (!r.bad && r.off == n)
		return 0;
	if (allow_raw && EVP_PKEY_base_id(ak) == EVP_PKEY_RSA && (int)n == EVP_PKEY_get_size(ak)) {
		s->alg = TPM_ALG_RSASSA;
		s->hash = TPM_ALG_SHA256;
		s->a = p;
		s->a_len = n;
		s->b = NULL;
		s->b_len = 0;
		return 0;
	}
	return why_set(reason, rlen, SS_EPARSE,
		       "signature is neither a TPMT_SIGNATURE (RSASSA/RSAPSS/ECDSA) nor a raw RSA "
		       "signature of the AK's size");
}

static int sig_verify(const struct tpm_sig *s, EVP_PKEY *ak, unsigned allowed_hashes,
		      const uint8_t *msg, size_t msg_len, char *reason, size_t rlen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	ECDSA_SIG *es = NULL;
	uint8_t *der = NULL;
	const uint8_t *sig = s->a;
	size_t sig_len = s->a_len;
	int rc = SS_ECRYPTO;
	if (!md)
		fatal("out of memory");
	if (!(alg_bit(s->hash) & allowed_hashes) || !alg_md(s->hash)) {
		rc = why_set(reason, rlen, SS_ECRYPTO,
			     "signature hash %s (0x%04x) is not in allowed_hash_algs",
			     alg_name(s->hash), s->hash);
		goto out;
	}
	bool is_rsa = EVP_PKEY_base_id(ak) == EVP_PKEY_RSA;
	if (is_rsa != (s->alg != TPM_ALG_ECDSA)) {
		rc = why_set(reason, rlen, SS_ECRYPTO, "signature scheme %s does not fit the AK's %s key",
			     alg_name(s->alg), is_rsa ? "RSA" : "EC");
		goto out;
	}
	if (s->alg == TPM_ALG_ECDSA) {
		BIGNUM *r = BN_bin2bn(s->a, (int)s->a_len, NULL);
		BIGNUM *ss = BN_bin2bn(s->b, (int)s->b_len, NULL);
		es = ECDSA_SIG_new();
		if (!r || !ss || !es || !ECDSA_SIG_set0(es, r, ss))
			fatal("out of memory");
		int dlen = i2d_ECDSA_SIG(es, &der);
		if (dlen <= 0)
			fatal("i2d_ECDSA_SIG failed");
		sig = der;
		sig_len = (size_t)dlen;
	}
	bool ok = EVP_DigestVerifyInit(md, &pctx, alg_md(s->hash), NULL, ak) > 0;
	if (ok && s->alg == TPM_ALG_RSAPSS)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) > 0;
	if (ok && s->alg == TPM_ALG_RSASSA)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
	ok = ok && EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1;
	rc = ok ? 0
		: why_set(reason, rlen, SS_ECRYPTO,
			  "AK signature (%s/%s) over TPMS_ATTEST does not verify", alg_name(s->alg),
			  alg_name(s->hash));
out:
	ECDSA_SIG_free(es);
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	return rc;
}

/* ---- the quote check ------------------------------------------------------ */

/*
 * Checks extraData against the expected binding: the expected bytes must be
 * a prefix of extraData and the rest of extraData must be zero.
 */
static bool binding_ok(const struct tpm_quote *q, const uint8_t *exp, size_t exp_len)
{
	if (exp_len == 0 || exp_len > q->extra_len)
		return false;
	uint8_t acc = 0;
	for (size_t i = exp_len; i < q->extra_len; i++)
		acc |= q->extra[i];
	return ct_equal(q->extra, exp, exp_len) && acc == 0;
}

/*
 * Checks the PCR values against the selection: every selected PCR has
 * exactly one value, nothing else is presented, and pcrDigest equals
 * H_sig(values in selection order).
 */
static int pcrs_check(const struct tpm_quote *q, const struct tpm_pcr_value *v, size_t n,
		      char *reason, size_t rlen)
{
	uint32_t seen[TPM_MAX_BANKS] = {0};
	for (size_t i = 0; i < n; i++) {
		size_t b;
		for (b = 0; b < q->sel.n; b++)
			if (q->sel.bank[b].alg == v[i].alg)
				break;
		if (b == q->sel.n || v[i].index >= TPM_NUM_PCRS ||
		    !(q->sel.bank[b].mask & (1u << v[i].index)))
			return why_set(reason, rlen, SS_EPARSE,
				       "PCR %s:%u is presented but not selected by the quote",
				       alg_name(v[i].alg), v[i].index);
		if (seen[b] & (1u << v[i].index))
			return why_set(reason, rlen, SS_EPARSE, "PCR %s:%u is presented twice",
				       alg_name(v[i].alg), v[i].index);
		if (v[i].len != tpm_alg_digest_len(v[i].alg))
			return why_set(reason, rlen, SS_EPARSE, "PCR %s:%u has a %u-byte value",
				       alg_name(v[i].alg), v[i].index, v[i].len);
		seen[b] |= 1u << v[i].index;
	}
	for (size_t b = 0; b < q->sel.n; b++)
		if (seen[b] != q->sel.bank[b].mask) {
			uint32_t miss = q->sel.bank[b].mask & ~seen[b];
			return why_set(reason, rlen, SS_EPARSE,
				       "PCR %s:%d is selected by the quote but no value is presented",
				       alg_name(q->sel.bank[b].alg), __builtin_ctz(miss));
		}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t d[TPM_MAX_DIGEST];
	unsigned int dlen = 0;
	if (!md || !EVP_DigestInit_ex(md, alg_md(q->sig_hash), NULL))
		fatal("EVP digest init failed");
	for (size_t b = 0; b < q->sel.n; b++)
		for (unsigned idx = 0; idx < TPM_NUM_PCRS; idx++) {
			if (!(q->sel.bank[b].mask & (1u << idx)))
				continue;
			for (size_t i = 0; i < n; i++)
				if (v[i].alg == q->sel.bank[b].alg && v[i].index == idx)
					EVP_DigestUpdate(md, v[i].digest, v[i].len);
		}
	EVP_DigestFinal_ex(md, d, &dlen);
	EVP_MD_CTX_free(md);
	if (q->pcr_digest_len != dlen || !ct_equal(d, q->pcr_digest, dlen))
		return why_set(reason, rlen, SS_EATTEST,
			       "pcrDigest does not equal the %s hash of the presented PCR values",
			       alg_name(q->sig_hash));
	return 0;
}

/* Qualified name of a child: nameAlg || H_nameAlg(parent QN || child name). */
static size_t qualify(uint16_t name_alg, const uint8_t *parent_qn, size_t pl, const uint8_t *name,
		      size_t nl, uint8_t out[TPM_MAX_NAME])
{
	uint8_t m[2 * TPM_MAX_NAME];
	memcpy(m, parent_qn, pl);
	memcpy(m + pl, name, nl);
	out[0] = (uint8_t)(name_alg >> 8);
	out[1] = (uint8_t)name_alg;
	digest(name_alg, m, pl + nl, out + 2);
	return 2 + tpm_alg_digest_len(name_alg);
}

/*
 * qualifiedSigner is the AK's qualified name (Part 1 §16): H(QN(parent) ||
 * Name). Accepts the AK as a primary key of the endorsement (0x4000000B) or
 * owner (0x40000001) hierarchy, or as a child of the presented EK (itself a
 * primary of the endorsement hierarchy).
 */
static bool signer_ok(const struct tpm_quote *q, const uint8_t *ak_name, size_t ak_name_len,
		      const uint8_t *ek_name, size_t ek_name_len)
{
	static const uint8_t endorsement[4] = {0x40, 0x00, 0x00, 0x0b};
	static const uint8_t owner[4] = {0x40, 0x00, 0x00, 0x01};
	uint8_t qn[TPM_MAX_NAME], ek_qn[TPM_MAX_NAME];
	size_t n;
	uint16_t alg = (uint16_t)(ak_name[0] << 8 | ak_name[1]);
	n = qualify(alg, endorsement, 4, ak_name, ak_name_len, qn);
	if (q->signer_len == n && !memcmp(q->signer, qn, n))
		return true;
	n = qualify(alg, owner, 4, ak_name, ak_name_len, qn);
	if (q->signer_len == n && !memcmp(q->signer, qn, n))
		return true;
	if (ek_name && ek_name_len >= 2) {
		uint16_t ek_alg = (uint16_t)(ek_name[0] << 8 | ek_name[1]);
		size_t en = qualify(ek_alg, endorsement, 4, ek_name, ek_name_len, ek_qn);
		n = qualify(alg, ek_qn, en, ak_name, ak_name_len, qn);
		if (q->signer_len == n && !memcmp(q->signer, qn, n))
			return true;
	}
	return false;
}

/*
 * The shared core: parse, signature, binding, PCR digest. ak_name, when
 * non-NULL, must equal qualifiedSigner.
 */
static int quote_check(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
		       size_t sig_len, bool allow_raw, EVP_PKEY *ak, const uint8_t *ak_name,
		       size_t ak_name_len, const uint8_t *ek_name, size_t ek_name_len,
		       unsigned allowed_hashes,
		       const struct tpm_pcr_value *pcrs, size_t n_pcrs, const uint8_t *nonce,
		       size_t nonce_len, struct tpm_quote *q, char *reason, size_t rlen)
{
	struct tpm_sig s;
	int rc = tpm_attest_parse(attest, attest_len, q, reason, rlen);
	if (rc)
		return rc;
	rc = sig_parse(sig, sig_len, ak, &s, allow_raw, reason, rlen);
	if (rc)
		return rc;
	q->sig_alg = s.alg;
	q->sig_hash = s.hash;
	rc = sig_verify(&s, ak, allowed_hashes, attest, attest_len, reason, rlen);
	if (rc)
		return rc;
	if (ak_name && !signer_ok(q, ak_name, ak_name_len, ek_name, ek_name_len))
		return why_set(reason, rlen, SS_EAUTH,
			       "qualifiedSigner is not the AK's qualified name "
			       "(nameAlg || H(QN(parent) || AK name)) under the endorsement or owner "
			       "hierarchy or the EK");
	if (nonce && !binding_ok(q, nonce, nonce_len))
		return why_set(reason, rlen, SS_EATTEST,
			       "extraData (%zu bytes) does not match the expected binding (%zu bytes)",
			       q->extra_len, nonce_len);
	return pcrs_check(q, pcrs, n_pcrs, reason, rlen);
}

int tpm_verify_quote(const struct tpm_quote_input *in, struct tpm_quote *q, char *reason,
		     size_t reason_len)
{
	struct tpm_quote local;
	if (!q)
		q = &local;
	if (reason && reason_len)
		reason[0] = 0;
	if (!in->ak_pub || in->ak_pub_len > 16384 || !in->attest || !in->sig ||
	    in->n_pcrs > TPM_MAX_PCR_VALUES)
		return why_set(reason, reason_len, SS_EINVAL, "missing or oversized quote input");
	uint8_t kh[32];
	sha256(in->ak_pub, in->ak_pub_len, kh);
	EVP_PKEY *ak = key_cache_get(kh);
	if (!ak) {
		ak = spki_parse(in->ak_pub, in->ak_pub_len);
		if (!ak)
			return why_set(reason, reason_len, SS_EPARSE,
				       "AK public key is not a SubjectPublicKeyInfo (DER or PEM)");
		key_cache_put(kh, ak);
	}
	int rc = quote_check(in->attest, in->attest_len, in->sig, in->sig_len, true, ak, NULL, 0,
			     NULL, 0, HASH_DEFAULT, in->pcrs, in->n_pcrs, in->nonce, in->nonce_len, q,
			     reason, reason_len);
	EVP_PKEY_free(ak);
	return rc;
}

/* ---- evidence container ------------------------------------------------- */

struct tpm_ev {
	const uint8_t *rec[TPM_REC_EK_CERT + 1];
	size_t rec_len[TPM_REC_EK_CERT + 1];
	struct tpm_pcr_value pcrs[TPM_MAX_PCR_VALUES];
	size_t n_pcrs;
};

static int ev_parse(const uint8_t *p, size_t n, struct tpm_ev *ev, char *reason, size_t rlen)
{
	struct rd r = {.p = p, .n = n};
	const uint8_t *v;
	unsigned last = 0;
	memset(ev, 0, sizeof *ev);
	if (n > TPM_EVIDENCE_MAX)
		return why_set(reason, rlen, SS_EPARSE, "tpm evidence is %zu bytes (max %d)", n,
			       TPM_EVIDENCE_MAX);
	if (n < 8 || memcmp(p, TPM_EVIDENCE_MAGIC, 8) != 0)
		return why_set(reason, rlen, SS_EPARSE, "tpm evidence does not start with %s",
			       TPM_EVIDENCE_MAGIC);
	r.off = 8;
	while (r.off < n) {
		unsigned type = rd_u8(&r);
		size_t len = rd_u16(&r);
		if (!rd_take(&r, len, &v))
			return why_set(reason, rlen, SS_EPARSE, "tpm evidence record truncated");
		if (type < TPM_REC_ATTEST || type > TPM_REC_EK_CERT)
			return why_set(reason, rlen, SS_EPARSE,
				       "tpm evidence record type %u unknown",
				       type);
		if (type < last || (type == last && type != TPM_REC_PCR))
			return why_set(reason, rlen, SS_EPARSE,
				       "tpm evidence record %u repeated or out of order", type);
		last = type;
		size_t max = type == TPM_REC_EK_CERT ? EK_CERT_MAX : REC_MAX;
		if (len == 0 || len > max)
			return why_set(reason, rlen, SS_EPARSE,
				       "tpm evidence record %u has %zu bytes",
				       type, len);
		if (type == TPM_REC_PCR) {
			struct tpm_pcr_value *pv;
			if (ev->n_pcrs == TPM_MAX_PCR_VALUES)
				return why_set(reason, rlen, SS_EPARSE, "more than %d PCR values",
					       TPM_MAX_PCR_VALUES);
			pv = &ev->pcrs[ev->n_pcrs];
			if (len < 4)
				return why_set(reason, rlen, SS_EPARSE, "PCR record too short");
			pv->alg = (uint16_t)(v[0] << 8 | v[1]);
			pv->index = v[2];
			size_t dl = tpm_alg_digest_len(pv->alg);
			if (!dl || len != 3 + dl || pv->index >= TPM_NUM_PCRS)
				return why_set(reason, rlen, SS_EPARSE,
					       "PCR record (bank 0x%04x, index %u) malformed", pv->alg,
					       pv->index);
			pv->len = (uint8_t)dl;
			memcpy(pv->digest, v + 3, dl);
			ev->n_pcrs++;
			continue;
		}
		ev->rec[type] = v;
		ev->rec_len[type] = len;
	}
	return 0;
}

static void ev_put(struct buf *b, unsigned type, const uint8_t *p, size_t n)
{
	uint8_t t = (uint8_t)type;
	buf_append(b, &t, 1);
	put_u16(b, (uint16_t)n);
	buf_append(b, p, n);
}

void tpm__evidence_build(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
			 size_t sig_len, const struct tpm_pcr_value *pcrs, size_t n_pcrs,
			 const uint8_t *ak, size_t ak_len, const uint8_t *ek, size_t ek_len,
			 const uint8_t *cert, size_t cert_len, uint8_t **out, size_t *out_len)
{
	struct buf b;
	buf_init(&b);
	buf_append(&b, TPM_EVIDENCE_MAGIC, 8);
	if (attest_len)
		ev_put(&b, TPM_REC_ATTEST, attest, attest_len);
	if (sig_len)
		ev_put(&b, TPM_REC_SIGNATURE, sig, sig_len);
	for (size_t i = 0; i < n_pcrs; i++) {
		uint8_t rec[3 + TPM_MAX_DIGEST];
		rec[0] = (uint8_t)(pcrs[i].alg >> 8);
		rec[1] = (uint8_t)pcrs[i].alg;
		rec[2] = pcrs[i].index;
		memcpy(rec + 3, pcrs[i].digest, pcrs[i].len);
		ev_put(&b, TPM_REC_PCR, rec, 3u + pcrs[i].len);
	}
	if (ak_len)
		ev_put(&b, TPM_REC_AK_PUBLIC, ak, ak_len);
	if (ek_len)
		ev_put(&b, TPM_REC_EK_PUBLIC, ek, ek_len);
	if (cert_len)
		ev_put(&b, TPM_REC_EK_CERT, cert, cert_len);
	*out = b.data;
	*out_len = b.len;
}

/* ---- EK certificate chain (cached) -------------------------------------- */

struct chain_slot {
	bool used;
	uint8_t key[32];
	int rc;
	char reason[200];
	char subject[160];
	char issuer[160];
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct chain_slot chain_cache[CHAIN_CACHE_SLOTS];
static size_t chain_next;

struct ak_slot {
	bool used;
	uint8_t key[32];
	int64_t from, until;
};
static struct ak_slot ak_cache[AK_CACHE_SLOTS];
static size_t ak_next;

void tpm_trust_reset(void)
{
	pthread_mutex_lock(&cache_mu);
	memset(chain_cache, 0, sizeof chain_cache);
	memset(ak_cache, 0, sizeof ak_cache);
	chain_next = ak_next = 0;
	pthread_mutex_unlock(&cache_mu);
	pthread_mutex_lock(&key_mu);
	for (size_t i = 0; i < KEY_CACHE_SLOTS; i++) {
		EVP_PKEY_free(key_cache[i].pkey);
		key_cache[i].pkey = NULL;
	}
	pthread_mutex_unlock(&key_mu);
}

static void name_line(const X509_NAME *nm, char *out, size_t n)
{
	BIO *bio = BIO_new(BIO_s_mem());
	out[0] = 0;
	if (!bio)
		fatal("out of memory");
	if (X509_NAME_print_ex(bio, nm, 0, XN_FLAG_RFC2253) >= 0) {
		int k = BIO_read(bio, out, (int)n - 1);
		out[k > 0 ? k : 0] = 0;
	}
	BIO_free(bio);
}

static int load_ca_dir(const char *collateral_dir, X509_STORE *store, char *reason, size_t rlen)
{
	char *dirpath = xasprintf("%s/tpm/ek-ca", collateral_dir);
	DIR *d = opendir(dirpath);
	struct dirent *de;
	int files = 0, certs = 0, rc = 0;
	if (!d) {
		rc = why_set(reason, rlen, SS_ECONFIG, "no EK CA bundle directory %s", dirpath);
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".pem") != 0)
			continue;
		if (++files > CA_FILES_MAX) {
			rc = why_set(reason, rlen, SS_ECONFIG, "more than %d files in %s", CA_FILES_MAX,
				     dirpath);
			goto out;
		}
		char *path = xasprintf("%s/%s", dirpath, de->d_name);
		char *data = NULL;
		size_t len = 0;
		int frc = file_read(path, CA_FILE_MAX, &data, &len);
		free(path);
		if (frc)
			continue;
		BIO *bio = BIO_new_mem_buf(data, (int)len);
		X509 *x;
		while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			X509_STORE_add_cert(store, x);
			X509_free(x);
			certs++;
		}
		BIO_free(bio);
		free(data);
	}
	if (certs == 0)
		rc = why_set(reason, rlen, SS_ECONFIG, "no EK CA certificates in %s/*.pem", dirpath);
out:
	if (d)
		closedir(d);
	free(dirpath);
	return rc;
}

static int chain_verify_uncached(X509 *cert, const struct attest_input *in, const char *dir,
				 int64_t now, char *reason, size_t rlen)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	int rc;
	if (!store || !ctx || !untrusted)
		fatal("out of memory");
	rc = load_ca_dir(dir, store, reason, rlen);
	if (rc)
		goto out;
	for (size_t i = 0; in && i < in->n_certs && i < 8; i++) {
		const uint8_t *q = in->certs[i];
		X509 *x = d2i_X509(NULL, &q, (long)in->cert_lens[i]);
		if (x && !sk_X509_push(untrusted, x))
			fatal("out of memory");
		if (!x) {
			rc = why_set(reason, rlen, SS_EPARSE, "extra certificate %zu is not DER X.509",
				     i);
			goto out;
		}
	}
	if (!X509_STORE_CTX_init(ctx, store, cert, untrusted))
		fatal("X509_STORE_CTX_init failed");
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)now);
	if (X509_verify_cert(ctx) == 1) {
		rc = 0;
		goto out;
	}
	int err = X509_STORE_CTX_get_error(ctx);
	X509 *bad = X509_STORE_CTX_get_current_cert(ctx);
	char who[160] = "?";
	if (bad)
		name_line(X509_get_subject_name(bad), who, sizeof who);
	if ((err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID) && bad) {
		char when[64] = "?";
		BIO *bio = BIO_new(BIO_s_mem());
		if (bio &&
		    ASN1_TIME_print(bio, err == X509_V_ERR_CERT_HAS_EXPIRED ? X509_get0_notAfter(bad)
									  : X509_get0_notBefore(bad))) {
			int k = BIO_read(bio, when, (int)sizeof when - 1);
			when[k > 0 ? k : 0] = 0;
		}
		BIO_free(bio);
		rc = why_set(reason, rlen, SS_EAUTH, "certificate '%s' %s %s", who,
			     err == X509_V_ERR_CERT_HAS_EXPIRED ? "expired at" : "is not valid before",
			     when);
	} else {
		rc = why_set(reason, rlen, SS_EAUTH,
			     "EK certificate does not chain to the EK CA bundle (%s at '%s')",
			     X509_verify_cert_error_string(err), who);
	}
out:
	sk_X509_pop_free(untrusted, X509_free);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

/*
 * Verifies the EK certificate chain at now, caching the result per
 * (certificates, collateral dir, hour). Fills subject/issuer.
 */
static int chain_verify(X509 *cert, const uint8_t *der, size_t der_len,
			const struct attest_input *in, const char *dir, int64_t now,
			char *subject, char *issuer, char *reason, size_t rlen)
{
	uint8_t key[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int64_t bucket = now / 3600;
	unsigned int kl = 0;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		fatal("EVP digest init failed");
	EVP_DigestUpdate(md, der, der_len);
	for (size_t i = 0; in && i < in->n_certs && i < 8; i++) {
		uint8_t h[32];
		sha256(in->certs[i], in->cert_lens[i], h);
		EVP_DigestUpdate(md, h, sizeof h);
	}
	EVP_DigestUpdate(md, dir, strlen(dir) + 1);
	EVP_DigestUpdate(md, &bucket, sizeof bucket);
	EVP_DigestFinal_ex(md, key, &kl);
	EVP_MD_CTX_free(md);

	pthread_mutex_lock(&cache_mu);
	for (size_t i = 0; i < CHAIN_CACHE_SLOTS; i++) {
		struct chain_slot *s = &chain_cache[i];
		if (s->used && !memcmp(s->key, key, sizeof key)) {
			int rc = s->rc;
			snprintf(reason, rlen, "%s", s->reason);
			snprintf(subject, 160, "%s", s->subject);
			snprintf(issuer, 160, "%s", s->issuer);
			pthread_mutex_unlock(&cache_mu);
			return rc;
		}
	}
	pthread_mutex_unlock(&cache_mu);

	name_line(X509_get_subject_name(cert), subject, 160);
	name_line(X509_get_issuer_name(cert), issuer, 160);
	int rc = chain_verify_uncached(cert, in, dir, now, reason, rlen);
	if (rc == SS_ECONFIG)
		return rc; /* a configuration problem is not cached */
	pthread_mutex_lock(&cache_mu);
	struct chain_slot *s = &chain_cache[chain_next++ % CHAIN_CACHE_SLOTS];
	s->used = true;
	memcpy(s->key, key, sizeof key);
	s->rc = rc;
	snprintf(s->reason, sizeof s->reason, "%s", rc ? reason : "");
	snprintf(s->subject, sizeof s->subject, "%s", subject);
	snprintf(s->issuer, sizeof s->issuer, "%s", issuer);
	pthread_mutex_unlock(&cache_mu);
	return rc;
}

/* Key of the AK trust cache: SHA-256(AK name || EK TPM2B_PUBLIC). */
static void ak_key(const uint8_t *name, size_t name_len, const uint8_t *ek, size_t ek_len,
		   uint8_t out[32])
{
	struct buf b;
	buf_init(&b);
	buf_append(&b, name, name_len);
	buf_append(&b, ek, ek_len);
	sha256(b.data, b.len, out);
	buf_free(&b);
}

static bool ak_trusted(const uint8_t key[32], int64_t now)
{
	bool ok = false;
	pthread_mutex_lock(&cache_mu);
	for (size_t i = 0; i < AK_CACHE_SLOTS; i++) {
		const struct ak_slot *s = &ak_cache[i];
		if (s->used && !memcmp(s->key, key, 32) && now >= s->from - 300 && now < s->until) {
			ok = true;
			break;
		}
	}
	pthread_mutex_unlock(&cache_mu);
	return ok;
}

static void ak_trust_add(const uint8_t key[32], int64_t now)
{
	pthread_mutex_lock(&cache_mu);
	struct ak_slot *s = NULL;
	for (size_t i = 0; i < AK_CACHE_SLOTS && !s; i++)
		if (ak_cache[i].used && !memcmp(ak_cache[i].key, key, 32))
			s = &ak_cache[i];
	if (!s)
		s = &ak_cache[ak_next++ % AK_CACHE_SLOTS];
	s->used = true;
	memcpy(s->key, key, 32);
	s->from = now;
	s->until = now + TPM_AK_TRUST_TTL_S;
	pthread_mutex_unlock(&cache_mu);
}

/*
 * Checks the EK: its certificate chains (cached), and certifies ek (the
 * presented TPM2B_PUBLIC). Fills subject/issuer.
 */
static int ek_check(const struct tpm_ev *ev, const struct attest_input *in, const char *dir,
		    int64_t now, char *subject, char *issuer, char *reason, size_t rlen)
{
	const uint8_t *der = ev->rec[TPM_REC_EK_CERT];
	struct tpm_pub ek;
	EVP_PKEY *ekkey = NULL;
	X509 *cert = NULL;
	int rc;
	if (!ev->rec[TPM_REC_EK_PUBLIC] || !der)
		return why_set(reason, rlen, SS_EAUTH,
			       "EK public key and EK certificate are required (require_ek_cert)");
	if (!dir)
		return why_set(reason, rlen, SS_ECONFIG,
			       "no collateral directory for the EK CA bundle (tpm/ek-ca)");
	rc = pub_parse(ev->rec[TPM_REC_EK_PUBLIC], ev->rec_len[TPM_REC_EK_PUBLIC], &ek, reason,
		       rlen);
	if (rc)
		return rc;
	rc = pub_pkey(&ek, &ekkey, reason, rlen);
	if (rc)
		return rc;
	const uint8_t *q = der;
	cert = d2i_X509(NULL, &q, (long)ev->rec_len[TPM_REC_EK_CERT]);
	if (!cert || q != der + ev->rec_len[TPM_REC_EK_CERT]) {
		rc = why_set(reason, rlen, SS_EPARSE, "EK certificate is not one DER X.509 certificate");
		goto out;
	}
	rc = chain_verify(cert, der, ev->rec_len[TPM_REC_EK_CERT], in, dir, now, subject, issuer,
			  reason, rlen);
	if (rc)
		goto out;
	EVP_PKEY *ck = X509_get0_pubkey(cert);
	if (!ck || EVP_PKEY_eq(ck, ekkey) != 1) {
		rc = why_set(reason, rlen, SS_EAUTH,
			     "EK certificate public key does not equal the presented EK public key");
		goto out;
	}
	if (!(ek.attrs & TPMA_FIXEDTPM) || !(ek.attrs & TPMA_RESTRICTED) ||
	    !(ek.attrs & TPMA_DECRYPT)) {
		rc = why_set(reason, rlen, SS_EAUTH, "EK is not a restricted fixedTPM decryption key");
		goto out;
	}
	rc = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(ekkey);
	return rc;
}

static int ak_check_attrs(const struct tpm_pub *ak, char *reason, size_t rlen)
{
	const uint32_t need = TPMA_FIXEDTPM | TPMA_FIXEDPARENT | TPMA_RESTRICTED | TPMA_SIGN;
	if ((ak->attrs & need) != need || (ak->attrs & TPMA_DECRYPT))
		return why_set(reason, rlen, SS_EAUTH,
			       "AK is not a restricted fixedTPM/fixedParent signing key "
			       "(objectAttributes 0x%08x)",
			       ak->attrs);
	return 0;
}

/* ---- KDFa / KDFe / MakeCredential ---------------------------------------- */

/* KDFa (Part 1 §11.4.10.2) with a NUL-terminated label; out_bits % 8 == 0. */
static void kdfa(uint16_t alg, const uint8_t *key, size_t key_len, const char *label,
		 const uint8_t *u, size_t u_len, const uint8_t *v, size_t v_len, size_t out_bits,
		 uint8_t *out)
{
	size_t dl = tpm_alg_digest_len(alg), need = out_bits / 8, done = 0;
	uint8_t ctr[4], bits[4], h[TPM_MAX_DIGEST];
	put_u32(bits, (uint32_t)out_bits);
	for (uint32_t i = 1; done < need; i++) {
		struct buf m;
		unsigned int hl = 0;
		buf_init(&m);
		put_u32(ctr, i);
		buf_append(&m, ctr, 4);
		buf_append(&m, label, strlen(label) + 1);
		buf_append(&m, u, u_len);
		buf_append(&m, v, v_len);
		buf_append(&m, bits, 4);
		if (!HMAC(alg_md(alg), key, (int)key_len, m.data, m.len, h, &hl))
			fatal("HMAC failed");
		buf_free(&m);
		size_t k = need - done < dl ? need - done : dl;
		memcpy(out + done, h, k);
		done += k;
	}
}

/* KDFe (Part 1 §11.4.10.3): one block suffices for out_len <= digest size. */
static void kdfe(uint16_t alg, const uint8_t *z, size_t z_len, const char *label,
		 const uint8_t *u, size_t u_len, const uint8_t *v, size_t v_len, uint8_t *out)
{
	uint8_t ctr[4];
	unsigned int hl = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	put_u32(ctr, 1);
	if (!md || !EVP_DigestInit_ex(md, alg_md(alg), NULL))
		fatal("EVP digest init failed");
	EVP_DigestUpdate(md, ctr, 4);
	EVP_DigestUpdate(md, z, z_len);
	EVP_DigestUpdate(md, label, strlen(label) + 1);
	EVP_DigestUpdate(md, u, u_len);
	EVP_DigestUpdate(md, v, v_len);
	EVP_DigestFinal_ex(md, out, &hl);
	EVP_MD_CTX_free(md);
}

/* RSA: the seed is random and encrypted with OAEP(nameAlg, label "IDENTITY\0"). */
static int seed_rsa(EVP_PKEY *ek, uint16_t name_alg, uint8_t *seed, size_t seed_len,
		    struct buf *enc)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(ek, NULL);
	static const char label[] = "IDENTITY";
	char *lab = OPENSSL_memdup(label, sizeof label);
	size_t outlen = 0;
	int rc = SS_ECRYPTO;
	if (!ctx || !lab)
		fatal("out of memory");
	rand_bytes(seed, seed_len);
	if (EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, alg_md(name_alg)) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, alg_md(name_alg)) <= 0 ||
	    EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, lab, (int)sizeof label) <= 0) {
		OPENSSL_free(lab);
		goto out;
	}
	if (EVP_PKEY_encrypt(ctx, NULL, &outlen, seed, seed_len) <= 0 || outlen > 512)
		goto out;
	uint8_t ct[512];
	if (EVP_PKEY_encrypt(ctx, ct, &outlen, seed, seed_len) <= 0)
		goto out;
	put_u16(enc, (uint16_t)outlen);
	buf_append(enc, ct, outlen);
	rc = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* ECC: ephemeral ECDH; seed = KDFe(nameAlg, Z, "IDENTITY", Qe.x, Qek.x). */
static int seed_ecc(EVP_PKEY *ek, const struct tpm_pub *k, uint8_t *seed, struct buf *enc)
{
	size_t field;
	const char *group = curve_group(k->curve, &field);
	EVP_PKEY *eph = NULL;
	EVP_PKEY_CTX *dctx = NULL;
	uint8_t z[66], pub[1 + 2 * 66], ekx[66];
	size_t zl = sizeof z, pl = 0;
	int rc = SS_ECRYPTO;
	if (!group)
		return SS_EPARSE;
	eph = EVP_EC_gen(group);
	if (!eph)
		goto out;
	if (!EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &pl) ||
	    pl != 1 + 2 * field)
		goto out;
	dctx = EVP_PKEY_CTX_new(eph, NULL);
	if (!dctx || EVP_PKEY_derive_init(dctx) <= 0 || EVP_PKEY_derive_set_peer(dctx, ek) <= 0 ||
	    EVP_PKEY_derive(dctx, z, &zl) <= 0)
		goto out;
	memset(ekx, 0, sizeof ekx);
	memcpy(ekx + field - k->x_len, k->x, k->x_len);
	kdfe(k->name_alg, z, zl, "IDENTITY", pub + 1, field, ekx, field, seed);
	put_u16(enc, (uint16_t)(4 + 2 * field));
	put_u16(enc, (uint16_t)field);
	buf_append(enc, pub + 1, field);
	put_u16(enc, (uint16_t)field);
	buf_append(enc, pub + 1 + field, field);
	rc = 0;
out:
	OPENSSL_cleanse(z, sizeof z);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_free(eph);
	return rc;
}

int tpm_make_credential(const uint8_t *ek_pub_tpm2b, size_t ek_pub_len, const uint8_t *ak_name,
			size_t ak_name_len, const uint8_t secret[TPM_CRED_SECRET_LEN],
			struct tpm_cred_blob *out)
{
	struct tpm_pub k;
	EVP_PKEY *ek = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	struct buf enc, id;
	uint8_t seed[TPM_MAX_DIGEST], sym[32], hkey[TPM_MAX_DIGEST], hmac[TPM_MAX_DIGEST];
	uint8_t plain[2 + TPM_CRED_SECRET_LEN], ct[2 + TPM_CRED_SECRET_LEN], iv[16] = {0};
	unsigned int hl = 0;
	int rc, l1 = 0, l2 = 0;
	buf_init(&enc);
	buf_init(&id);
	memset(out, 0, sizeof *out);
	rc = pub_parse(ek_pub_tpm2b, ek_pub_len, &k, NULL, 0);
	if (rc)
		goto out;
	rc = SS_EPARSE;
	if (ak_name_len < 2 || ak_name_len > TPM_MAX_NAME)
		goto out;
	if (k.sym_alg != TPM_ALG_AES || k.sym_mode != TPM_ALG_CFB ||
	    (k.sym_bits != 128 && k.sym_bits != 256))
		goto out; /* the EK's symmetric algorithm must be AES-CFB */
	rc = pub_pkey(&k, &ek, NULL, 0);
	if (rc)
		goto out;
	size_t dl = tpm_alg_digest_len(k.name_alg);
	rc = k.type == TPM_ALG_RSA ? seed_rsa(ek, k.name_alg, seed, dl, &enc)
				   : seed_ecc(ek, &k, seed, &enc);
	if (rc)
		goto out;
	kdfa(k.name_alg, seed, dl, "STORAGE", ak_name, ak_name_len, NULL, 0, k.sym_bits, sym);
	kdfa(k.name_alg, seed, dl, "INTEGRITY", NULL, 0, NULL, 0, dl * 8, hkey);
	plain[0] = 0;
	plain[1] = TPM_CRED_SECRET_LEN;
	memcpy(plain + 2, secret, TPM_CRED_SECRET_LEN);
	cctx = EVP_CIPHER_CTX_new();
	if (!cctx ||
	    !EVP_EncryptInit_ex(cctx, k.sym_bits == 128 ? EVP_aes_128_cfb128() : EVP_aes_256_cfb128(),
				NULL, sym, iv) ||
	    !EVP_EncryptUpdate(cctx, ct, &l1, plain, (int)sizeof plain) ||
	    !EVP_EncryptFinal_ex(cctx, ct + l1, &l2) || l1 + l2 != (int)sizeof plain) {
		rc = SS_ECRYPTO;
		goto out;
	}
	struct buf hm;
	buf_init(&hm);
	buf_append(&hm, ct, sizeof ct);
	buf_append(&hm, ak_name, ak_name_len);
	if (!HMAC(alg_md(k.name_alg), hkey, (int)dl, hm.data, hm.len, hmac, &hl))
		fatal("HMAC failed");
	buf_free(&hm);
	put_u16(&id, (uint16_t)(2 + dl + sizeof ct));
	put_u16(&id, (uint16_t)dl);
	buf_append(&id, hmac, dl);
	buf_append(&id, ct, sizeof ct);
	if (id.len > sizeof out->id_object || enc.len > sizeof out->enc_secret) {
		rc = SS_ECRYPTO;
		goto out;
	}
	memcpy(out->id_object, id.data, id.len);
	out->id_object_len = id.len;
	memcpy(out->enc_secret, enc.data, enc.len);
	out->enc_secret_len = enc.len;
	rc = 0;
out:
	OPENSSL_cleanse(seed, sizeof seed);
	OPENSSL_cleanse(sym, sizeof sym);
	OPENSSL_cleanse(hkey, sizeof hkey);
	OPENSSL_cleanse(plain, sizeof plain);
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_free(ek);
	buf_free(&enc);
	buf_free(&id);
	return rc;
}

int tpm_ak_challenge_new(const uint8_t *evidence, size_t len, const char *collateral_dir,
			 int64_t now_unix, bool require_ek_cert, struct tpm_ak_challenge *ch,
			 char *reason, size_t reason_len)
{
	struct tpm_ev *ev = xcalloc(1, sizeof *ev);
	struct tpm_pub ak;
	char subject[160], issuer[160];
	int rc;
	memset(ch, 0, sizeof *ch);
	if (reason && reason_len)
		reason[0] = 0;
	rc = ev_parse(evidence, len, ev, reason, reason_len);
	if (rc)
		goto out;
	if (!ev->rec[TPM_REC_AK_PUBLIC] || !ev->rec[TPM_REC_EK_PUBLIC]) {
		rc = why_set(reason, reason_len, SS_EPARSE,
			     "credential activation needs the AK and EK public keys");
		goto out;
	}
	rc = pub_parse(ev->rec[TPM_REC_AK_PUBLIC], ev->rec_len[TPM_REC_AK_PUBLIC], &ak, reason,
		       reason_len);
	if (rc)
		goto out;
	rc = ak_check_attrs(&ak, reason, reason_len);
	if (rc)
		goto out;
	if (require_ek_cert) {
		rc = ek_check(ev, NULL, collateral_dir, now_unix, subject, issuer, reason,
			      reason_len);
		if (rc)
			goto out;
	}
	rand_bytes(ch->secret, sizeof ch->secret);
	rc = tpm_make_credential(ev->rec[TPM_REC_EK_PUBLIC], ev->rec_len[TPM_REC_EK_PUBLIC],
				 ak.name, ak.name_len, ch->secret, &ch->blob);
	if (rc) {
		why_write(reason, reason_len, "MakeCredential for the EK public key failed");
		goto out;
	}
	ak_key(ak.name, ak.name_len, ev->rec[TPM_REC_EK_PUBLIC], ev->rec_len[TPM_REC_EK_PUBLIC],
	       ch->key);
out:
	free(ev);
	return rc;
}

int tpm_ak_challenge_finish(const struct tpm_ak_challenge *ch, const uint8_t *secret,
			    size_t secret_len, int64_t now_unix, char *reason, size_t reason_len)
{
	if (secret_len != TPM_CRED_SECRET_LEN || !ct_equal(secret, ch->secret, secret_len))
		return why_set(reason, reason_len, SS_EAUTH,
			       "credential activation failed: the TPM did not recover the secret "
			       "(AK and EK are not in the same TPM)");
	ak_trust_add(ch->key, now_unix);
	return 0;
}

/* ---- policy ---------------------------------------------------------------- */

struct tpm_policy {
	bool require_ek_cert;
	unsigned hashes;
	const json_t *pcrs; /* borrowed: {"sha256": {"0": ["hex", ...]}} */
};

static int policy_parse(const json_t *p, struct tpm_policy *pol, char *reason, size_t rlen)
{
	const char *key;
	json_t *val;
	pol->require_ek_cert = true;
	pol->hashes = HASH_DEFAULT;
	pol->pcrs = NULL;
	if (!p)
		return 0;
	if (!json_is_object(p))
		return why_set(reason, rlen, SS_ECONFIG, "tpm policy must be a JSON object");
	json_object_foreach((json_t *)p, key, val) {
		if (!strcmp(key, "require_ek_cert")) {
			if (!json_is_boolean(val))
				return why_set(reason, rlen, SS_ECONFIG,
					       "tpm policy require_ek_cert must be a boolean");
			pol->require_ek_cert = json_is_true(val);
		} else if (!strcmp(key, "allowed_hash_algs")) {
			size_t i;
			json_t *a;
			if (!json_is_array(val) || json_array_size(val) == 0)
				return why_set(reason, rlen, SS_ECONFIG,
					       "tpm policy allowed_hash_algs must be a non-empty array");
			pol->hashes = 0;
			json_array_foreach(val, i, a) {
				uint16_t alg = json_is_string(a) ? alg_by_name(json_string_value(a)) : 0;
				if (!alg)
					return why_set(reason, rlen, SS_ECONFIG,
						       "tpm policy allowed_hash_algs[%zu] is not sha1, "
						       "sha256, sha384 or sha512",
						       i);
				pol->hashes |= alg_bit(alg);
			}
		} else if (!strcmp(key, "pcrs")) {
			const char *bank, *idx;
			json_t *bv, *iv;
			if (!json_is_object(val))
				return why_set(reason, rlen, SS_ECONFIG,
					       "tpm policy pcrs must be an object of banks");
			json_object_foreach(val, bank, bv) {
				uint16_t alg = alg_by_name(bank);
				if (!alg || !json_is_object(bv))
					return why_set(reason, rlen, SS_ECONFIG,
						       "tpm policy pcrs bank '%s' unknown or not an object",
						       bank);
				json_object_foreach(bv, idx, iv) {
					char *end;
					long n = strtol(idx, &end, 10);
					size_t i;
					json_t *h;
					if (!*idx || *end || n < 0 || n >= TPM_NUM_PCRS ||
					    !json_is_array(iv) || json_array_size(iv) == 0)
						return why_set(reason, rlen, SS_ECONFIG,
							       "tpm policy pcrs.%s key '%s' must be a PCR "
							       "index 0-23 with a non-empty array",
							       bank, idx);
					json_array_foreach(iv, i, h) {
						uint8_t d[TPM_MAX_DIGEST];
						const char *s = json_string_value(h);
						size_t dl = tpm_alg_digest_len(alg);
						if (!s || strlen(s) != 2 * dl || hex_decode(s, d, dl))
							return why_set(reason, rlen, SS_ECONFIG,
								       "tpm policy pcrs.%s.%s[%zu] is not "
								       "a %zu-byte hex digest",
								       bank, idx, i, dl);
					}
				}
			}
			pol->pcrs = val;
		} else {
			return why_set(reason, rlen, SS_ECONFIG,
				       "tpm policy key '%s' is unknown", key);
		}
	}
	return 0;
}

static void add_reason(char *r, size_t rlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add_reason(char *r, size_t rlen, const char *fmt, ...)
{
	size_t used = strlen(r);
	va_list ap;
	if (used + 3 >= rlen)
		return;
	if (used) {
		/* used + 3 < rlen (checked above), so "; " and its NUL fit. */
		memcpy(r + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(r + used, rlen - used, fmt, ap);
	va_end(ap);
}

/* Appraises the PCR values against policy; returns the number of failures. */
static int policy_pcrs(const struct tpm_policy *pol, const struct tpm_ev *ev, char *reason,
		       size_t rlen)
{
	const char *bank, *idx;
	json_t *bv, *iv;
	int failures = 0;
	if (!pol->pcrs)
		return 0;
	json_object_foreach((json_t *)pol->pcrs, bank, bv) {
		uint16_t alg = alg_by_name(bank);
		json_object_foreach(bv, idx, iv) {
			long n = strtol(idx, NULL, 10);
			const struct tpm_pcr_value *v = NULL;
			for (size_t i = 0; i < ev->n_pcrs; i++)
				if (ev->pcrs[i].alg == alg && ev->pcrs[i].index == n)
					v = &ev->pcrs[i];
			if (!v) {
				add_reason(reason, rlen, "PCR %s:%ld required by policy is not quoted",
					   bank, n);
				failures++;
				continue;
			}
			bool ok = false;
			size_t i;
			json_t *h;
			json_array_foreach(iv, i, h) {
				uint8_t d[TPM_MAX_DIGEST];
				if (!hex_decode(json_string_value(h), d, v->len) &&
				    !memcmp(d, v->digest, v->len))
					ok = true;
			}
			if (!ok) {
				char hex[2 * TPM_MAX_DIGEST + 1];
				hex_encode(v->digest, v->len, hex);
				add_reason(reason, rlen, "PCR %s:%ld value %s is not allowed by policy",
					   bank, n, hex);
				failures++;
			}
		}
	}
	return failures;
}

/* ---- the verifier ---------------------------------------------------------- */

static void set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char *hex = xmalloc(2 * n + 1);
	hex_encode(p, n, hex);
	json_object_set_new(o, key, json_string(hex));
	free(hex);
}

static json_t *claims_build(const struct tpm_quote *q, const struct tpm_ev *ev,
			    const struct tpm_pub *ak, const char *subject, const char *issuer,
			    bool activated)
{
	json_t *c = json_object(), *banks = json_object();
	uint8_t fw[8];
	for (int i = 0; i < 8; i++)
		fw[i] = (uint8_t)(q->firmware_version >> (56 - 8 * i));
	json_object_set_new(c, "tee", json_string("tpm"));
	set_hex(c, "firmware_version", fw, sizeof fw);
	json_object_set_new(c, "clock", json_integer((json_int_t)(q->clock & INT64_MAX)));
	json_object_set_new(c, "reset_count", json_integer(q->reset_count));
	json_object_set_new(c, "restart_count", json_integer(q->restart_count));
	json_object_set_new(c, "clock_safe", json_boolean(q->safe));
	set_hex(c, "qualified_signer", q->signer, q->signer_len);
	set_hex(c, "extra_data", q->extra, q->extra_len);
	set_hex(c, "pcr_digest", q->pcr_digest, q->pcr_digest_len);
	json_object_set_new(c, "sig_alg", json_string(alg_name(q->sig_alg)));
	json_object_set_new(c, "hash_alg", json_string(alg_name(q->sig_hash)));
	for (size_t b = 0; b < q->sel.n; b++) {
		json_t *bank = json_object();
		for (size_t i = 0; i < ev->n_pcrs; i++) {
			char idx[8];
			if (ev->pcrs[i].alg != q->sel.bank[b].alg)
				continue;
			snprintf(idx, sizeof idx, "%u", ev->pcrs[i].index);
			set_hex(bank, idx, ev->pcrs[i].digest, ev->pcrs[i].len);
		}
		json_object_set_new(banks, alg_name(q->sel.bank[b].alg), bank);
	}
	json_object_set_new(c, "pcrs", banks);
	set_hex(c, "ak_name", ak->name, ak->name_len);
	json_object_set_new(c, "ak_trust", json_string(activated ? "activated" : "unverified"));
	if (subject && issuer) {
		json_object_set_new(c, "ek_cert_subject", json_string(subject));
		json_object_set_new(c, "ek_cert_issuer", json_string(issuer));
	}
	return c;
}

static int tpm_verify(const struct attest_input *in, struct attest_output *out)
{
	struct tpm_ev *ev = xcalloc(1, sizeof *ev);
	struct tpm_policy pol;
	struct tpm_pub ak, ek;
	struct tpm_quote q;
	EVP_PKEY *akkey = NULL;
	char subject[160], issuer[160];
	char *r = out->reason;
	size_t rl = sizeof out->reason;
	bool activated = false;
	int rc;
	memset(out, 0, sizeof *out);
	memset(&ek, 0, sizeof ek);
	snprintf(out->tee, sizeof out->tee, "tpm");
	out->hardware = true;
	rc = policy_parse(in->policy, &pol, r, rl);
	if (rc)
		goto out;
	rc = ev_parse(in->evidence, in->evidence_len, ev, r, rl);
	if (rc)
		goto out;
	if (!ev->rec[TPM_REC_ATTEST] || !ev->rec[TPM_REC_SIGNATURE] || !ev->rec[TPM_REC_AK_PUBLIC]) {
		rc = why_set(r, rl, SS_EPARSE,
			     "tpm evidence needs TPMS_ATTEST, TPMT_SIGNATURE and the AK public key");
		goto out;
	}
	rc = pub_parse(ev->rec[TPM_REC_AK_PUBLIC], ev->rec_len[TPM_REC_AK_PUBLIC], &ak, r, rl);
	if (rc)
		goto out;
	uint8_t kh[32];
	sha256(ev->rec[TPM_REC_AK_PUBLIC], ev->rec_len[TPM_REC_AK_PUBLIC], kh);
	akkey = key_cache_get(kh);
	if (!akkey) {
		rc = pub_pkey(&ak, &akkey, r, rl);
		if (rc)
			goto out;
		key_cache_put(kh, akkey);
	}
	if (ev->rec[TPM_REC_EK_PUBLIC]) {
		rc = pub_parse(ev->rec[TPM_REC_EK_PUBLIC], ev->rec_len[TPM_REC_EK_PUBLIC], &ek, r,
			       rl);
		if (rc)
			goto out;
	}
	rc = quote_check(ev->rec[TPM_REC_ATTEST], ev->rec_len[TPM_REC_ATTEST],
			 ev->rec[TPM_REC_SIGNATURE], ev->rec_len[TPM_REC_SIGNATURE], false, akkey,
			 ak.name, ak.name_len, ek.name_len ? ek.name : NULL, ek.name_len,
			 pol.hashes, ev->pcrs, ev->n_pcrs,
			 in->expected_report_data, in->expected_len, &q, r, rl);
	if (rc)
		goto out;
	rc = ak_check_attrs(&ak, r, rl);
	if (rc)
		goto out;
	if (pol.require_ek_cert) {
		uint8_t key[32];
		rc = ek_check(ev, in, in->collateral_dir, in->now_unix, subject, issuer, r, rl);
		if (rc)
			goto out;
		ak_key(ak.name, ak.name_len, ev->rec[TPM_REC_EK_PUBLIC],
		       ev->rec_len[TPM_REC_EK_PUBLIC], key);
		if (!ak_trusted(key, in->now_unix)) {
			rc = why_set(r, rl, SS_EAUTH,
				     "AK has not completed credential activation with this EK "
				     "(or the activation expired)");
			goto out;
		}
		activated = true;
	}
	out->claims = claims_build(&q, ev, &ak, activated ? subject : NULL,
				   activated ? issuer : NULL, activated);
	r[0] = 0;
	int failures = policy_pcrs(&pol, ev, r, rl);
	if (failures)
		out->status = ATTEST_CONTRAINDICATED;
	else if (!activated) {
		out->status = ATTEST_WARNING;
		snprintf(r, rl, "AK not bound to a certified EK (require_ek_cert is false)");
	} else
		out->status = ATTEST_AFFIRMING;
	rc = 0;
out:
	EVP_PKEY_free(akkey);
	free(ev);
	return rc;
}

const struct attest_verifier attest_tpm_verifier = {
	.name = "tpm",
	.hardware = true,
	.verify = tpm_verify,
};

/* ---- helpers ------------------------------------------------------------- */

int tpm_pcr_selection_parse(const char *s, struct tpm_pcr_selection *sel)
{
	char *copy = xstrdup(s), *save = NULL, *tok;
	int rc = SS_EINVAL;
	memset(sel, 0, sizeof *sel);
	for (tok = strtok_r(copy, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
		char *colon = strchr(tok, ':');
		if (!colon || sel->n == TPM_MAX_BANKS)
			goto out;
		*colon = 0;
		uint16_t alg = alg_by_name(tok);
		if (!alg)
			goto out;
		uint32_t mask = 0;
		char *p = colon + 1;
		while (*p) {
			char *end;
			long a = strtol(p, &end, 10), b = a;
			if (end == p || a < 0 || a >= TPM_NUM_PCRS)
				goto out;
			p = end;
			if (*p == '-') {
				b = strtol(p + 1, &end, 10);
				if (end == p + 1 || b < a || b >= TPM_NUM_PCRS)
					goto out;
				p = end;
			}
			for (long i = a; i <= b; i++)
				mask |= 1u << i;
			if (*p == ',')
				p++;
			else if (*p)
				goto out;
		}
		if (!mask)
			goto out;
		sel->bank[sel->n].alg = alg;
		sel->bank[sel->n].mask = mask;
		sel->n++;
	}
	rc = sel->n ? 0 : SS_EINVAL;
out:
	free(copy);
	return rc;
}

int tpm_pcr_replay(uint16_t alg, const uint8_t *const *digests, size_t n, uint8_t *out)
{
	size_t dl = tpm_alg_digest_len(alg);
	uint8_t m[2 * TPM_MAX_DIGEST];
	if (!dl)
		return SS_EINVAL;
	memset(out, 0, dl);
	for (size_t i = 0; i < n; i++) {
		memcpy(m, out, dl);
		memcpy(m + dl, digests[i], dl);
		digest(alg, m, 2 * dl, out);
	}
	return 0;
}
