/*
 * test_attest_tpm.c - the TPM 2.0 quote verifier: the three real quotes in
 * ../shared/vectors/tpm (raw API), and the "tpm" evidence container with AK
 * names, credential activation, EK chains and policy, driven by a software
 * "TPM" built here with OpenSSL (the swtpm round trip is test_tpm_swtpm.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/attest.h"
#include "attest/tpm.h"
#include "core/core.h"
#include "fixture.h"

#define NOW 1790000000 /* 2026-09-21 */

static const char *vec_dir(void)
{
	const char *d = getenv("SEESWARM_VECTORS");
	return d ? d : "../shared/vectors";
}

static bool vec_read(const char *name, uint8_t **out, size_t *len)
{
	char *path = xasprintf("%s/tpm/%s", vec_dir(), name);
	char *data = NULL;
	int rc = file_read(path, 1 << 20, &data, len);
	free(path);
	*out = (uint8_t *)data;
	return rc == 0;
}

/* Reads 24 hex SHA-256 PCR values from a JSON array. */
static size_t pcrs_from_json(const json_t *arr, struct tpm_pcr_value *v)
{
	size_t i;
	json_t *h;
	json_array_foreach(arr, i, h) {
		v[i].alg = TPM_ALG_SHA256;
		v[i].index = (uint8_t)i;
		v[i].len = 32;
		assert_int_equal(hex_decode(json_string_value(h), v[i].digest, 32), 0);
	}
	return json_array_size(arr);
}

struct vec {
	uint8_t *attest, *sig, *ak;
	size_t attest_len, sig_len, ak_len;
	struct tpm_pcr_value pcrs[TPM_NUM_PCRS];
	size_t n_pcrs;
};

static void vec_free(struct vec *v)
{
	free(v->attest);
	free(v->sig);
	free(v->ak);
}

/* Loads vector 1 (milan), 2 (genoa) or 3 (trustee); false when missing. */
static bool vec_load(int which, struct vec *v)
{
	static const char *const files[3][4] = {
		{"azure_snp_milan_tpms_attest.bin", "azure_snp_milan_tpm_signature_rsassa.bin",
		 "azure_snp_milan_ak_pub.pem", "azure_snp_milan_tpm_quote.json"},
		{"azure_snp_genoa_tpms_attest.bin", "azure_snp_genoa_tpm_signature_rsassa.bin",
		 "azure_snp_genoa_ak_pub.pem", "azure_snp_genoa_pcrs_sha256.json"},
		{"trustee_swtpm_tpms_attest.bin", "trustee_swtpm_tpmt_signature.bin",
		 "trustee_swtpm_ak_pub.der", "trustee_swtpm_evidence.json"},
	};
	uint8_t *js = NULL;
	size_t jl;
	memset(v, 0, sizeof *v);
	if (!vec_read(files[which][0], &v->attest, &v->attest_len) ||
	    !vec_read(files[which][1], &v->sig, &v->sig_len) ||
	    !vec_read(files[which][2], &v->ak, &v->ak_len) || !vec_read(files[which][3], &js, &jl)) {
		vec_free(v);
		free(js);
		return false;
	}
	json_t *root = json_loadb((const char *)js, jl, 0, NULL);
	assert_non_null(root);
	const json_t *arr = which == 0 ? json_object_get(root, "pcrs")
			    : which == 1 ? root
					 : json_object_get(json_object_get(root, "tpm_quote"), "pcrs");
	v->n_pcrs = pcrs_from_json(arr, v->pcrs);
	assert_int_equal(v->n_pcrs, 24);
	json_decref(root);
	free(js);
	return true;
}

#define VEC_OR_SKIP(n, v)                                                            \
	do {                                                                         \
		if (!vec_load((n), (v))) {                                           \
			print_message("skipping: TPM vectors not found in %s/tpm "  \
				      "(set SEESWARM_VECTORS)\n",                   \
				      vec_dir());                                    \
			skip();                                                      \
		}                                                                    \
	} while (0)

static int vcheck(const struct vec *v, const uint8_t *nonce, size_t nonce_len,
		  struct tpm_quote *q, char *reason)
{
	struct tpm_quote_input in = {
		.attest = v->attest, .attest_len = v->attest_len, .sig = v->sig,
		.sig_len = v->sig_len, .ak_pub = v->ak, .ak_pub_len = v->ak_len,
		.pcrs = v->pcrs, .n_pcrs = v->n_pcrs, .nonce = nonce, .nonce_len = nonce_len};
	return tpm_verify_quote(&in, q, reason, 256);
}

static void hexeq(const uint8_t *p, size_t n, const char *hex)
{
	char *h = xmalloc(2 * n + 1);
	hex_encode(p, n, h);
	assert_string_equal(h, hex);
	free(h);
}

static void test_vector_milan(void **state)
{
	struct vec v;
	struct tpm_quote q;
	char reason[256];
	VEC_OR_SKIP(0, &v);
	assert_int_equal(vcheck(&v, (const uint8_t *)"challenge", 9, &q, reason), 0);
	hexeq(q.signer, q.signer_len,
	      "000b96f6ef2a64ed155e38183fc0f0f240b2e63e4feb4c2ac230f14684fbe93f5f25");
	assert_int_equal(q.clock, 2167057);
	assert_int_equal(q.reset_count, 3);
	assert_int_equal(q.restart_count, 0);
	assert_int_equal(q.safe, 1);
	assert_true(q.firmware_version == 0x2020031200120003ull);
	assert_int_equal(q.sel.n, 1);
	assert_int_equal(q.sel.bank[0].alg, TPM_ALG_SHA256);
	assert_int_equal(q.sel.bank[0].mask, 0xffffff);
	hexeq(q.pcr_digest, q.pcr_digest_len,
	      "0daff74c2fca14910b1e9b54a384707434c3365db9f163cc73a39a9f7500833f");
	hexeq(v.pcrs[0].digest, 32,
	      "f3a7e99a5f819a034386bce753a48a73cfdaa0bea0ecfc124bedbf5a8c4799be");
	assert_int_equal(q.sig_alg, 0x0014);

	/* The reversed nonce must fail, as in trustee's test. */
	assert_int_equal(vcheck(&v, (const uint8_t *)"egnellahc", 9, NULL, reason), SS_EATTEST);
	assert_non_null(strstr(reason, "extraData"));
	/* A prefix of the nonce leaves non-zero bytes: also wrong. */
	assert_int_equal(vcheck(&v, (const uint8_t *)"chall", 5, NULL, reason), SS_EATTEST);

	/* Flipping bit 0 of signature byte 0 fails the signature check. */
	v.sig[0] ^= 1;
	assert_int_equal(vcheck(&v, (const uint8_t *)"challenge", 9, NULL, reason), SS_ECRYPTO);
	assert_non_null(strstr(reason, "does not verify"));
	v.sig[0] ^= 1;

	/* A flipped bit in the signed body (clock) fails the signature too. */
	v.attest[0x3a] ^= 0x01;
	assert_int_equal(vcheck(&v, (const uint8_t *)"challenge", 9, NULL, reason), SS_ECRYPTO);
	assert_non_null(strstr(reason, "signature"));
	v.attest[0x3a] ^= 0x01;

	/* A wrong PCR value gives a digest mismatch. */
	v.pcrs[7].digest[5] ^= 0x80;
	assert_int_equal(vcheck(&v, (const uint8_t *)"challenge", 9, NULL, reason), SS_EATTEST);
	assert_non_null(strstr(reason, "pcrDigest does not equal"));
	v.pcrs[7].digest[5] ^= 0x80;

	/* A missing PCR value is malformed evidence. */
	v.n_pcrs = 23;
	assert_int_equal(vcheck(&v, (const uint8_t *)"challenge", 9, NULL, reason), SS_EPARSE);
	assert_non_null(strstr(reason, "sha256:23 is selected"));
	v.n_pcrs = 24;

	/* Magic and type are checked before anything else. */
	v.attest[0] = 0xfe;
	assert_int_equal(vcheck(&v, NULL, 0, NULL, reason), SS_EPARSE);
	assert_non_null(strstr(reason, "magic"));
	v.attest[0] = 0xff;
	v.attest[5] = 0x17;
	assert_int_equal(vcheck(&v, NULL, 0, NULL, reason), SS_EPARSE);
	assert_non_null(strstr(reason, "TPM_ST_ATTEST_QUOTE"));
	v.attest[5] = 0x18;
	/* Truncation and trailing bytes. */
	v.attest_len--;
	assert_int_equal(vcheck(&v, NULL, 0, NULL, reason), SS_EPARSE);
	v.attest_len++;
	assert_int_equal(vcheck(&v, NULL, 0, NULL, reason), 0);
	vec_free(&v);
}

static void test_vector_genoa(void **state)
{
	struct vec v, milan;
	struct tpm_quote q;
	char reason[256];
	uint8_t nonce[48];
	VEC_OR_SKIP(1, &v);
	assert_int_equal(hex_decode("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2"
				    "938ca05475f8b46094de6b64270ea35d950f",
				    nonce, 48),
			 0);
	assert_int_equal(vcheck(&v, nonce, 48, &q, reason), 0);
	hexeq(q.signer, q.signer_len,
	      "000bd74f064d3e649c2c9b6ea136cdb036a6fe9e95b8645f63e927b3248c3ac6ab2d");
	assert_int_equal(q.clock, 1413298427);
	assert_int_equal(q.reset_count, 53);
	assert_true(q.firmware_version == 0x2020031200120003ull);
	hexeq(q.pcr_digest, q.pcr_digest_len,
	      "2b30a66d715a7801b86d7912b710838bd3bd8d9aeec7c7135563f938cf8b3399");
	hexeq(v.pcrs[0].digest, 32,
	      "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338");
	nonce[47] ^= 1;
	assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_EATTEST);
	nonce[47] ^= 1;

	/* The Milan AK does not verify the Genoa quote (wrong key). */
	if (vec_load(0, &milan)) {
		uint8_t *ak = v.ak;
		size_t akl = v.ak_len;
		v.ak = milan.ak;
		v.ak_len = milan.ak_len;
		assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_ECRYPTO);
		assert_non_null(strstr(reason, "does not verify"));
		v.ak = ak;
		v.ak_len = akl;
		vec_free(&milan);
	}
	vec_free(&v);
}

static void test_vector_trustee(void **state)
{
	struct vec v;
	struct tpm_quote q;
	char reason[256];
	uint8_t nonce[48];
	VEC_OR_SKIP(2, &v);
	assert_int_equal(hex_decode("a04182b506878d4f29b91ee606a71a0d3361ccf1b22db20c98adcaa537be"
				    "a393ef0e41a18b3569ab678f1497fbc5c120",
				    nonce, 48),
			 0);
	/* 64-byte extraData: the 48-byte prefix followed by 16 zero bytes. */
	assert_int_equal(vcheck(&v, nonce, 48, &q, reason), 0);
	assert_int_equal(q.extra_len, 64);
	assert_int_equal(q.sig_alg, 0x0014);
	assert_int_equal(q.sig_hash, TPM_ALG_SHA256);
	hexeq(q.signer, q.signer_len,
	      "000b3081a4cbbe307f3de1456f9875a3c2632528a70d91fcf578ccf092465e4e8e09");
	assert_int_equal(q.clock, 1913548331);
	assert_int_equal(q.reset_count, 2);
	assert_true(q.firmware_version == 0x2019102300163636ull);
	hexeq(q.pcr_digest, q.pcr_digest_len,
	      "019de64c9318655e422c3d03831169896e31f02a1d74e4d8fef575bf4e0d75fa");
	assert_int_equal(v.pcrs[17].digest[0], 0xff);
	/* Without a nonce the binding is not checked. */
	assert_int_equal(vcheck(&v, NULL, 0, NULL, reason), 0);
	/* A flipped bit inside the TPMT_SIGNATURE's RSA signature. */
	v.sig[100] ^= 0x10;
	assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_ECRYPTO);
	v.sig[100] ^= 0x10;
	/* A TPMT_SIGNATURE header with an unknown scheme is malformed. */
	v.sig[1] = 0x99;
	assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_EPARSE);
	v.sig[1] = 0x14;
	/* A TPMT_SIGNATURE with hash SHA-1 is refused by the default hash set. */
	v.sig[3] = 0x04;
	assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_ECRYPTO);
	assert_non_null(strstr(reason, "allowed_hash_algs"));
	v.sig[3] = 0x0b;
	/* PCR 17 set to zero: digest mismatch. */
	memset(v.pcrs[17].digest, 0, 32);
	assert_int_equal(vcheck(&v, nonce, 48, NULL, reason), SS_EATTEST);
	assert_non_null(strstr(reason, "pcrDigest"));
	vec_free(&v);
}

/* ---- a software TPM for the container path -------------------------------- */

struct soft {
	EVP_PKEY *ak, *ek, *ek2, *ca, *ca2;
	X509 *ca_cert, *ca2_cert;
	uint8_t ak_pub[600], ek_pub[600], ek2_pub[600];
	size_t ak_pub_len, ek_pub_len, ek2_pub_len;
	uint8_t ak_name[34];
	uint8_t *cert, *cert_expired, *cert_other; /* EK certs (DER) */
	size_t cert_len, cert_expired_len, cert_other_len;
	char dir[64], dir2[64];
};

static struct soft S;

static void p16(struct buf *b, unsigned v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, x, 2);
}

static void p32(struct buf *b, uint32_t v)
{
	p16(b, v >> 16);
	p16(b, v & 0xffff);
}

static void p64(struct buf *b, uint64_t v)
{
	p32(b, (uint32_t)(v >> 32));
	p32(b, (uint32_t)v);
}

/* TPM2B_PUBLIC of an RSA EK (template L-1 attributes). */
static size_t rsa_ek_public(EVP_PKEY *k, uint8_t *out)
{
	struct buf b;
	BIGNUM *n = NULL;
	uint8_t mod[256];
	assert_true(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n));
	assert_int_equal(BN_bn2binpad(n, mod, 256), 256);
	BN_free(n);
	buf_init(&b);
	p16(&b, 0);
	p16(&b, 0x0001);
	p16(&b, 0x000b);
	p32(&b, 0x000300b2);
	p16(&b, 32);
	static const uint8_t pol[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8,
					0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
					0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64,
					0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};
	buf_append(&b, pol, 32);
	p16(&b, 0x0006);
	p16(&b, 128);
	p16(&b, 0x0043);
	p16(&b, 0x0010);
	p16(&b, 2048);
	p32(&b, 0);
	p16(&b, 256);
	buf_append(&b, mod, 256);
	b.data[0] = (uint8_t)((b.len - 2) >> 8);
	b.data[1] = (uint8_t)(b.len - 2);
	memcpy(out, b.data, b.len);
	size_t len = b.len;
	buf_free(&b);
	return len;
}

/* TPM2B_PUBLIC of an ECDSA P-256 AK with the given attributes. */
static size_t ec_ak_public(EVP_PKEY *k, uint32_t attrs, uint8_t *out)
{
	struct buf b;
	uint8_t pt[65];
	size_t pl = 0;
	assert_true(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &pl));
	assert_int_equal(pl, 65);
	buf_init(&b);
	p16(&b, 0);
	p16(&b, 0x0023);
	p16(&b, 0x000b);
	p32(&b, attrs);
	p16(&b, 0);
	p16(&b, 0x0010);
	p16(&b, 0x0018);
	p16(&b, 0x000b);
	p16(&b, 0x0003);
	p16(&b, 0x0010);
	p16(&b, 32);
	buf_append(&b, pt + 1, 32);
	p16(&b, 32);
	buf_append(&b, pt + 33, 32);
	b.data[0] = (uint8_t)((b.len - 2) >> 8);
	b.data[1] = (uint8_t)(b.len - 2);
	memcpy(out, b.data, b.len);
	size_t len = b.len;
	buf_free(&b);
	return len;
}

#define AK_ATTRS 0x00050072u /* fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign */

static X509 *make_cert(EVP_PKEY *subject_key, const char *cn, EVP_PKEY *issuer_key,
		       X509 *issuer, int64_t nb, int64_t na, bool ca)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(nb & 0xffffff));
	X509_NAME *nm = X509_NAME_new();
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, nm);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm);
	X509_NAME_free(nm);
	ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb);
	ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na);
	X509_set_pubkey(x, subject_key);
	if (ca) {
		X509_EXTENSION *e =
			X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
	return x;
}

static size_t der_of(X509 *x, uint8_t **out)
{
	*out = NULL;
	int n = i2d_X509(x, out);
	assert_true(n > 0);
	return (size_t)n;
}

static void write_pem(const char *dir, const char *name, X509 *x)
{
	char *sub = xasprintf("%s/tpm/ek-ca", dir);
	assert_int_equal(dir_ensure(sub, 0700), 0);
	char *path = xasprintf("%s/%s", sub, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	fclose(f);
	free(path);
	free(sub);
}

static int group_setup(void **state)
{
	memset(&S, 0, sizeof S);
	S.ak = EVP_EC_gen("P-256");
	S.ca = EVP_EC_gen("P-256");
	S.ca2 = EVP_EC_gen("P-256");
	S.ek = EVP_RSA_gen(2048);
	S.ek2 = EVP_RSA_gen(2048);
	if (!S.ak || !S.ca || !S.ca2 || !S.ek || !S.ek2)
		return -1;
	S.ak_pub_len = ec_ak_public(S.ak, AK_ATTRS, S.ak_pub);
	size_t nl = 0;
	assert_int_equal(tpm_public_name(S.ak_pub, S.ak_pub_len, S.ak_name, &nl), 0);
	assert_int_equal(nl, 34);
	S.ek_pub_len = rsa_ek_public(S.ek, S.ek_pub);
	S.ek2_pub_len = rsa_ek_public(S.ek2, S.ek2_pub);
	S.ca_cert = make_cert(S.ca, "test EK CA", S.ca, NULL, NOW - 86400, NOW + 86400 * 3650, true);
	S.ca2_cert = make_cert(S.ca2, "other EK CA", S.ca2, NULL, NOW - 86400, NOW + 86400 * 3650,
			       true);
	X509 *c = make_cert(S.ek, "ek", S.ca, S.ca_cert, NOW - 86400, NOW + 86400 * 365, false);
	S.cert_len = der_of(c, &S.cert);
	X509_free(c);
	c = make_cert(S.ek, "ek-expired", S.ca, S.ca_cert, NOW - 86400 * 30, NOW - 86400, false);
	S.cert_expired_len = der_of(c, &S.cert_expired);
	X509_free(c);
	c = make_cert(S.ek2, "ek-other", S.ca, S.ca_cert, NOW - 86400, NOW + 86400, false);
	S.cert_other_len = der_of(c, &S.cert_other);
	X509_free(c);
	if (!fx_tmpdir_try(S.dir, sizeof S.dir, "tpm") || !fx_tmpdir_try(S.dir2, sizeof S.dir2, "tpm2"))
		return -1;
	write_pem(S.dir, "ca.pem", S.ca_cert);
	write_pem(S.dir2, "other.pem", S.ca2_cert);
	return 0;
}

static int group_teardown(void **state)
{
	fx_rmtree_try(S.dir);
	fx_rmtree_try(S.dir2);
	EVP_PKEY_free(S.ak);
	EVP_PKEY_free(S.ek);
	EVP_PKEY_free(S.ek2);
	EVP_PKEY_free(S.ca);
	EVP_PKEY_free(S.ca2);
	X509_free(S.ca_cert);
	X509_free(S.ca2_cert);
	OPENSSL_free(S.cert);
	OPENSSL_free(S.cert_expired);
	OPENSSL_free(S.cert_other);
	return 0;
}

static struct tpm_pcr_value PCRS[9];
static bool SIGNER_PLAIN; /* sign with qualifiedSigner = the bare AK name (wrong) */

static void pcrs_init(void)
{
	for (int i = 0; i < 9; i++) {
		PCRS[i].alg = TPM_ALG_SHA256;
		PCRS[i].index = (uint8_t)(i == 8 ? 23 : i);
		PCRS[i].len = 32;
		memset(PCRS[i].digest, 0x10 + i, 32);
	}
}

/* Builds a signed TPMS_ATTEST and TPMT_SIGNATURE over PCRS with extra. */
static void soft_quote(const uint8_t *extra, size_t extra_len, struct buf *att, struct buf *sig)
{
	uint8_t d[32];
	struct buf cat;
	buf_init(att);
	buf_init(sig);
	buf_init(&cat);
	for (int i = 0; i < 9; i++)
		buf_append(&cat, PCRS[i].digest, 32);
	sha256(cat.data, cat.len, d);
	buf_free(&cat);
	p32(att, 0xff544347);
	p16(att, 0x8018);
	/* qualifiedSigner: the AK as a primary of the endorsement hierarchy. */
	uint8_t qn[38] = {0x40, 0x00, 0x00, 0x0b};
	memcpy(qn + 4, S.ak_name, 34);
	p16(att, 34);
	if (SIGNER_PLAIN) {
		buf_append(att, S.ak_name, 34);
	} else {
		p16(att, 0x000b);
		sha256(qn, sizeof qn, qn);
		buf_append(att, qn, 32);
	}
	p16(att, (unsigned)extra_len);
	buf_append(att, extra, extra_len);
	p64(att, 123456789);
	p32(att, 7);
	p32(att, 1);
	buf_append(att, "\x01", 1);
	p64(att, 0x2019102300163636ull);
	p32(att, 1);
	p16(att, 0x000b);
	buf_append(att, "\x03\xff\x00\x80", 4);
	p16(att, 32);
	buf_append(att, d, 32);

	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[128];
	size_t dl = sizeof der;
	assert_true(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, S.ak) == 1);
	assert_true(EVP_DigestSign(md, der, &dl, att->data, att->len) == 1);
	EVP_MD_CTX_free(md);
	const uint8_t *q = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)dl);
	uint8_t r[32], s[32];
	BN_bn2binpad(ECDSA_SIG_get0_r(es), r, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), s, 32);
	ECDSA_SIG_free(es);
	p16(sig, 0x0018);
	p16(sig, 0x000b);
	p16(sig, 32);
	buf_append(sig, r, 32);
	p16(sig, 32);
	buf_append(sig, s, 32);
}

static void soft_evidence(const uint8_t *extra, size_t extra_len, const uint8_t *cert,
			  size_t cert_len, uint8_t **ev, size_t *len)
{
	struct buf att, sig;
	soft_quote(extra, extra_len, &att, &sig);
	tpm__evidence_build(att.data, att.len, sig.data, sig.len, PCRS, 9, S.ak_pub, S.ak_pub_len,
			    S.ek_pub, S.ek_pub_len, cert, cert_len, ev, len);
	buf_free(&att);
	buf_free(&sig);
}

static int run(const uint8_t *ev, size_t len, const uint8_t *binding, const char *dir,
	       const char *policy, struct attest_output *out)
{
	json_t *pol = policy ? json_loads(policy, 0, NULL) : NULL;
	if (policy)
		assert_non_null(pol);
	struct attest_input in = {.evidence = ev, .evidence_len = len,
				  .expected_report_data = binding,
				  .expected_len = binding ? 32 : 0, .now_unix = NOW,
				  .collateral_dir = dir, .policy = pol};
	int rc = attest_tpm_verifier.verify(&in, out);
	json_decref(pol);
	return rc;
}

/* Activates the soft AK against the soft EK (the TPM part is simulated). */
static void activate(void)
{
	struct tpm_ak_challenge ch;
	char reason[256];
	uint8_t *id = NULL;
	size_t idl;
	tpm__evidence_build(NULL, 0, NULL, 0, NULL, 0, S.ak_pub, S.ak_pub_len, S.ek_pub,
			    S.ek_pub_len, S.cert, S.cert_len, &id, &idl);
	assert_int_equal(tpm_ak_challenge_new(id, idl, S.dir, NOW, true, &ch, reason, 256), 0);
	assert_true(ch.blob.id_object_len > 34 && ch.blob.enc_secret_len == 258);
	uint8_t wrong[32];
	memcpy(wrong, ch.secret, 32);
	wrong[31] ^= 1;
	assert_int_equal(tpm_ak_challenge_finish(&ch, wrong, 32, NOW, reason, 256), SS_EAUTH);
	assert_int_equal(tpm_ak_challenge_finish(&ch, ch.secret, 32, NOW, reason, 256), 0);
	free(id);
}

static void test_container(void **state)
{
	uint8_t binding[32], *ev = NULL;
	size_t len;
	struct attest_output out;
	pcrs_init();
	tpm_trust_reset();
	memset(binding, 0xab, 32);
	soft_evidence(binding, 32, S.cert, S.cert_len, &ev, &len);

	/* Before activation the AK is not trusted. */
	assert_int_equal(run(ev, len, binding, S.dir, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "credential activation"));
	attest_output_free(&out);

	/* Without the EK requirement it verifies with a warning. */
	assert_int_equal(run(ev, len, binding, S.dir, "{\"require_ek_cert\": false}", &out), 0);
	assert_int_equal(out.status, ATTEST_WARNING);
	assert_string_equal(json_string_value(json_object_get(out.claims, "ak_trust")),
			    "unverified");
	attest_output_free(&out);

	activate();
	assert_int_equal(run(ev, len, binding, S.dir, NULL, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_true(out.hardware);
	assert_string_equal(out.tee, "tpm");
	json_t *c = out.claims;
	assert_string_equal(json_string_value(json_object_get(c, "tee")), "tpm");
	assert_string_equal(json_string_value(json_object_get(c, "ak_trust")), "activated");
	assert_string_equal(json_string_value(json_object_get(c, "ek_cert_subject")), "CN=ek");
	assert_string_equal(json_string_value(json_object_get(c, "ek_cert_issuer")),
			    "CN=test EK CA");
	assert_string_equal(json_string_value(json_object_get(c, "firmware_version")),
			    "2019102300163636");
	assert_int_equal(json_integer_value(json_object_get(c, "reset_count")), 7);
	assert_int_equal(json_integer_value(json_object_get(c, "restart_count")), 1);
	assert_int_equal(json_integer_value(json_object_get(c, "clock")), 123456789);
	assert_string_equal(json_string_value(json_object_get(c, "sig_alg")), "ecdsa");
	json_t *pcr23 = json_object_get(json_object_get(json_object_get(c, "pcrs"), "sha256"), "23");
	assert_string_equal(json_string_value(pcr23),
			    "1818181818181818181818181818181818181818181818181818181818181818");
	char name_hex[69];
	hex_encode(S.ak_name, 34, name_hex);
	assert_string_equal(json_string_value(json_object_get(c, "ak_name")), name_hex);
	assert_string_not_equal(json_string_value(json_object_get(c, "qualified_signer")),
				name_hex);
	attest_output_free(&out);

	/* Policy: matching PCRs affirm, a changed expectation contraindicates. */
	const char *good = "{\"pcrs\": {\"sha256\": {\"0\": "
			   "[\"1010101010101010101010101010101010101010101010101010101010101010\"],"
			   " \"23\": [\"00\", "
			   "\"1818181818181818181818181818181818181818181818181818181818181818\"]}}}";
	assert_int_equal(run(ev, len, binding, S.dir, good, &out), SS_ECONFIG);
	assert_non_null(strstr(out.reason, "pcrs.sha256.23[0]"));
	attest_output_free(&out);
	good = "{\"pcrs\": {\"sha256\": {\"0\": "
	       "[\"1010101010101010101010101010101010101010101010101010101010101010\"],"
	       " \"23\": [\"1818181818181818181818181818181818181818181818181818181818181818\"]}},"
	       " \"allowed_hash_algs\": [\"sha256\"], \"require_ek_cert\": true}";
	assert_int_equal(run(ev, len, binding, S.dir, good, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	const char *bad = "{\"pcrs\": {\"sha256\": {\"1\": "
			  "[\"1010101010101010101010101010101010101010101010101010101010101010\"],"
			  " \"16\": [\"1010101010101010101010101010101010101010101010101010101010101010\"]}}}";
	assert_int_equal(run(ev, len, binding, S.dir, bad, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_non_null(strstr(out.reason, "PCR sha256:1 value 1111"));
	assert_non_null(strstr(out.reason, "; PCR sha256:16 required by policy is not quoted"));
	attest_output_free(&out);
	assert_int_equal(run(ev, len, binding, S.dir, "{\"pcr\": {}}", &out), SS_ECONFIG);
	assert_non_null(strstr(out.reason, "'pcr' is unknown"));
	attest_output_free(&out);
	assert_int_equal(run(ev, len, binding, S.dir, "{\"allowed_hash_algs\": [\"sha384\"]}", &out),
			 SS_ECRYPTO);
	assert_non_null(strstr(out.reason, "allowed_hash_algs"));
	attest_output_free(&out);

	/* A qualifiedSigner that is not the AK's qualified name. */
	uint8_t *ev2 = NULL;
	size_t len2;
	SIGNER_PLAIN = true;
	soft_evidence(binding, 32, S.cert, S.cert_len, &ev2, &len2);
	SIGNER_PLAIN = false;
	assert_int_equal(run(ev2, len2, binding, S.dir, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "qualifiedSigner is not the AK's qualified name"));
	attest_output_free(&out);
	free(ev2);

	/* A wrong binding (old nonce). */
	uint8_t other[32];
	memset(other, 0xac, 32);
	assert_int_equal(run(ev, len, other, S.dir, NULL, &out), SS_EATTEST);
	assert_non_null(strstr(out.reason, "expected binding"));
	attest_output_free(&out);

	/* An untrusted EK CA bundle. */
	assert_int_equal(run(ev, len, binding, S.dir2, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "does not chain"));
	attest_output_free(&out);
	/* No bundle at all is a configuration error. */
	assert_int_equal(run(ev, len, binding, "/nonexistent", NULL, &out), SS_ECONFIG);
	attest_output_free(&out);

	/* Every single-bit flip in the container is rejected or changes nothing verified. */
	for (size_t off = 8; off < len; off += 7) {
		ev[off] ^= 0x04;
		int rc = run(ev, len, binding, S.dir, NULL, &out);
		assert_true(rc < 0);
		attest_output_free(&out);
		ev[off] ^= 0x04;
	}
	free(ev);
}

static void test_container_ek(void **state)
{
	uint8_t binding[32], *ev = NULL;
	size_t len;
	struct attest_output out;
	struct tpm_ak_challenge ch;
	char reason[256];
	pcrs_init();
	tpm_trust_reset();
	memset(binding, 0x5a, 32);
	activate();

	/* An expired EK certificate at verification time. */
	soft_evidence(binding, 32, S.cert_expired, S.cert_expired_len, &ev, &len);
	assert_int_equal(run(ev, len, binding, S.dir, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "certificate 'CN=ek-expired' expired at"));
	attest_output_free(&out);
	free(ev);

	/* An EK certificate for another key. */
	soft_evidence(binding, 32, S.cert_other, S.cert_other_len, &ev, &len);
	assert_int_equal(run(ev, len, binding, S.dir, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "does not equal the presented EK public key"));
	attest_output_free(&out);
	free(ev);

	/* A flipped bit in the EK certificate's signature. */
	uint8_t *cert = xmalloc(S.cert_len);
	memcpy(cert, S.cert, S.cert_len);
	cert[S.cert_len - 3] ^= 0x01;
	soft_evidence(binding, 32, cert, S.cert_len, &ev, &len);
	assert_int_equal(run(ev, len, binding, S.dir, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "does not chain"));
	attest_output_free(&out);
	free(ev);
	free(cert);

	/* Challenge: an unrestricted AK is refused before any credential. */
	uint8_t akpub[600], *id = NULL;
	size_t akl = ec_ak_public(S.ak, AK_ATTRS & ~0x00010000u, akpub), idl;
	tpm__evidence_build(NULL, 0, NULL, 0, NULL, 0, akpub, akl, S.ek_pub, S.ek_pub_len, S.cert,
			    S.cert_len, &id, &idl);
	assert_int_equal(tpm_ak_challenge_new(id, idl, S.dir, NOW, true, &ch, reason, 256),
			 SS_EAUTH);
	assert_non_null(strstr(reason, "restricted"));
	free(id);
	/* Challenge against an untrusted CA. */
	tpm__evidence_build(NULL, 0, NULL, 0, NULL, 0, S.ak_pub, S.ak_pub_len, S.ek_pub,
			    S.ek_pub_len, S.cert, S.cert_len, &id, &idl);
	assert_int_equal(tpm_ak_challenge_new(id, idl, S.dir2, NOW, true, &ch, reason, 256),
			 SS_EAUTH);
	free(id);
}

/* MakeCredential against a known-answer structure: sizes and determinism of the KDF. */
static void test_make_credential_shape(void **state)
{
	struct tpm_cred_blob a, b;
	uint8_t secret[32];
	memset(secret, 7, 32);
	assert_int_equal(tpm_make_credential(S.ek_pub, S.ek_pub_len, S.ak_name, 34, secret, &a), 0);
	assert_int_equal(tpm_make_credential(S.ek_pub, S.ek_pub_len, S.ak_name, 34, secret, &b), 0);
	/* TPM2B_ID_OBJECT = size || TPM2B_DIGEST(hmac) || AES-CFB(TPM2B secret). */
	assert_int_equal(a.id_object_len, 2 + 2 + 32 + 34);
	assert_int_equal(a.id_object[0] << 8 | a.id_object[1], 68);
	assert_int_equal(a.id_object[2] << 8 | a.id_object[3], 32);
	assert_int_equal(a.enc_secret_len, 2 + 256);
	/* A fresh seed each time. */
	assert_memory_not_equal(a.id_object, b.id_object, a.id_object_len);
	/* The AK public is not an EK (no symmetric algorithm). */
	assert_int_equal(tpm_make_credential(S.ak_pub, S.ak_pub_len, S.ak_name, 34, secret, &a),
			 SS_EPARSE);
}

static void test_helpers(void **state)
{
	struct tpm_pcr_selection sel;
	assert_int_equal(tpm_pcr_selection_parse("sha256:0-7,23", &sel), 0);
	assert_int_equal(sel.n, 1);
	assert_int_equal(sel.bank[0].mask, 0x8000ff);
	assert_int_equal(tpm_pcr_selection_parse("sha256:0+sha384:1-2", &sel), 0);
	assert_int_equal(sel.n, 2);
	assert_int_equal(sel.bank[1].alg, TPM_ALG_SHA384);
	assert_int_equal(sel.bank[1].mask, 6);
	assert_int_equal(tpm_pcr_selection_parse("sha256:24", &sel), SS_EINVAL);
	assert_int_equal(tpm_pcr_selection_parse("md5:1", &sel), SS_EINVAL);
	assert_int_equal(tpm_pcr_selection_parse("sha256:3-1", &sel), SS_EINVAL);
	assert_int_equal(tpm_pcr_selection_parse("sha256:", &sel), SS_EINVAL);
	uint8_t a[32], b[32], out[32], m[64];
	memset(a, 1, 32);
	memset(b, 2, 32);
	const uint8_t *const ds[2] = {a, b};
	assert_int_equal(tpm_pcr_replay(TPM_ALG_SHA256, ds, 2, out), 0);
	memset(m, 0, 32);
	memcpy(m + 32, a, 32);
	sha256(m, 64, m);
	memcpy(m + 32, b, 32);
	sha256(m, 64, m);
	assert_memory_equal(out, m, 32);
	assert_ptr_equal(attest_verifier_find("tpm"), &attest_tpm_verifier);
}

static void test_attester_missing(void **state)
{
	struct tpm_attester *h = NULL;
	setenv("TSS2_LOG", "all+none", 0);
	int rc = tpm_attester_open("device:/nonexistent/tpmrm9", &h);
	assert_int_equal(rc, SS_ENOSYS);
	assert_null(h);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_milan),
		cmocka_unit_test(test_vector_genoa),
		cmocka_unit_test(test_vector_trustee),
		cmocka_unit_test(test_container),
		cmocka_unit_test(test_container_ek),
		cmocka_unit_test(test_make_credential_shape),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_attester_missing),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
