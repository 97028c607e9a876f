/* test_ca.c - unit tests for the swarm CA and X.509 helpers (src/attest/ca.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/ca.h"
#include "core/core.h"
#include "fixture.h"

struct fixture {
	char dir[64];
	struct ca *ca;
};

static char *path_in(const char *dir, const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

static unsigned file_mode(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (unsigned)(st.st_mode & 07777);
}

static char *slurp(const char *path)
{
	char *data = NULL;
	assert_int_equal(file_read(path, 1 << 20, &data, NULL), 0);
	return data;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	if (!fx_tmpdir_try(f->dir, sizeof f->dir, "test-ca"))
		return -1;
	bool created = false;
	if (ca_init_dir(f->dir, &created) != 0 || !created)
		return -1;
	if (ca_load(&f->ca, f->dir) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ca_free(f->ca);
	fx_rmtree(f->dir);
	free(f);
	return 0;
}

/* Verifies cert against a store holding only anchor; returns the X509_V_* result. */
static int verify_with(X509 *anchor, X509 *cert, int purpose)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(store, anchor), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
	if (purpose)
		assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	int ok = X509_verify_cert(ctx);
	int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	if (ok != 1 && err == X509_V_OK)
		err = -1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return err;
}

static X509 *issue(struct ca *ca, EVP_PKEY *key, const char *cn, unsigned usage)
{
	const char *const dns[] = {"manager.example", "localhost", NULL};
	const char *const ips[] = {"127.0.0.1", "::1", NULL};
	struct ca_issue_opts o = {
		.common_name = cn,
		.dns_sans = dns,
		.ip_sans = ips,
		.lifetime_s = 3600,
		.usage = usage,
	};
	X509 *cert = NULL;
	assert_int_equal(ca_issue(ca, key, &o, &cert), 0);
	assert_non_null(cert);
	return cert;
}

static void test_init_dir_modes_idempotent(void **state)
{
	struct fixture *f = *state;
	char *key = path_in(f->dir, "ca.key"), *pem = path_in(f->dir, "ca.pem");
	assert_int_equal(file_mode(key), 0600);
	assert_int_equal(file_mode(pem), 0644);
	char *before = slurp(pem);
	char *key_before = slurp(key);

	bool created = true;
	assert_int_equal(ca_init_dir(f->dir, &created), 0);
	assert_false(created);
	char *after = slurp(pem);
	char *key_after = slurp(key);
	assert_string_equal(before, after);
	assert_string_equal(key_before, key_after);

	/* The loaded CA is a self-signed CA certificate with the documented CN. */
	X509 *c = ca_cert(f->ca);
	assert_int_not_equal(X509_check_ca(c), 0);
	assert_int_equal(verify_with(c, c, 0), X509_V_OK);
	char cn[128];
	assert_int_equal(crypto_cert_cn(c, cn, sizeof cn), 0);
	assert_int_equal(strncmp(cn, "seeswarm swarm CA ", 18), 0);
	assert_true(strlen(cn) > 18);
	assert_int_equal(X509_get_version(c), X509_VERSION_3);
	assert_true(X509_get_key_usage(c) & KU_KEY_CERT_SIGN);

	free(before);
	free(after);
	free(key_before);
	free(key_after);
	free(key);
	free(pem);
}

static void test_init_dir_partial(void **state)
{
	struct fixture *f = *state;
	char *key = path_in(f->dir, "ca.key"), *pem = path_in(f->dir, "ca.pem");
	char *key_before = slurp(key);
	bool created = false;

	/* Only the key: a certificate is made for the same key. */
	assert_int_equal(unlink(pem), 0);
	assert_int_equal(ca_init_dir(f->dir, &created), 0);
	assert_true(created);
	char *key_after = slurp(key);
	assert_string_equal(key_before, key_after);
	struct ca *ca2 = NULL;
	assert_int_equal(ca_load(&ca2, f->dir), 0);
	ca_free(ca2);

	/* Only the certificate: refused, nothing replaced. */
	char *pem_before = slurp(pem);
	assert_int_equal(unlink(key), 0);
	assert_int_equal(ca_init_dir(f->dir, &created), SS_ESTATE);
	assert_false(created);
	char *pem_after = slurp(pem);
	assert_string_equal(pem_before, pem_after);
	assert_int_equal(access(key, F_OK), -1);
	assert_int_equal(ca_load(&ca2, f->dir), SS_ENOTFOUND);
	assert_null(ca2);

	free(key_before);
	free(key_after);
	free(pem_before);
	free(pem_after);
	free(key);
	free(pem);
}

static void test_load_mismatch(void **state)
{
	struct fixture *f = *state;
	char other[64];
	fx_tmpdir(other, sizeof other, "test-ca2");
	assert_int_equal(ca_init_dir(other, NULL), 0);
	/* Put the other CA's key next to our certificate. */
	char *src = path_in(other, "ca.key"), *dst = path_in(f->dir, "ca.key");
	char *k = slurp(src);
	assert_int_equal(file_write_atomic(dst, k, strlen(k), 0600), 0);
	struct ca *ca2 = NULL;
	assert_int_equal(ca_load(&ca2, f->dir), SS_ECRYPTO);
	assert_null(ca2);
	free(k);
	free(src);
	free(dst);
	fx_rmtree(other);
}

static void test_server_cert_verifies(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *key = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	X509 *cert = issue(f->ca, key, "manager", CA_USAGE_SERVER);

	assert_int_equal(verify_with(ca_cert(f->ca), cert, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	/* Server-only: not acceptable as a TLS client certificate. */
	assert_int_not_equal(verify_with(ca_cert(f->ca), cert, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

	assert_int_equal(X509_check_host(cert, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(cert, "manager.example", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(cert, "evil.example", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(cert, "::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(cert, "10.0.0.1", 0), 0);

	assert_int_equal(X509_check_ca(cert), 0);
	assert_true(X509_get_key_usage(cert) & KU_DIGITAL_SIGNATURE);
	assert_false(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN);
	assert_true(X509_get_extended_key_usage(cert) & XKU_SSL_SERVER);
	assert_false(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT);
	assert_non_null(X509_get0_subject_key_id(cert));
	assert_non_null(X509_get0_authority_key_id(cert));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert),
					       X509_get0_subject_key_id(ca_cert(f->ca))),
			 0);
	assert_int_equal(X509_check_issued(ca_cert(f->ca), cert), X509_V_OK);

	/* Serials are random and positive: two certificates differ. */
	X509 *cert2 = issue(f->ca, key, "manager", CA_USAGE_SERVER | CA_USAGE_CLIENT);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(cert),
					      X509_get0_serialNumber(cert2)),
			     0);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	assert_false(BN_is_negative(bn));
	assert_false(BN_is_zero(bn));
	BN_free(bn);
	assert_int_equal(verify_with(ca_cert(f->ca), cert2, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_int_equal(verify_with(ca_cert(f->ca), cert2, X509_PURPOSE_SSL_SERVER), X509_V_OK);

	X509_free(cert);
	X509_free(cert2);
	EVP_PKEY_free(key);
}

static void test_other_ca_does_not_verify(void **state)
{
	struct fixture *f = *state;
	char other[64];
	fx_tmpdir(other, sizeof other, "test-ca2");
	assert_int_equal(ca_init_dir(other, NULL), 0);
	struct ca *ca2 = NULL;
	assert_int_equal(ca_load(&ca2, other), 0);

	EVP_PKEY *key = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	X509 *cert = issue(ca2, key, "intruder", CA_USAGE_SERVER);
	assert_int_equal(verify_with(ca_cert(ca2), cert, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	int err = verify_with(ca_cert(f->ca), cert, X509_PURPOSE_SSL_SERVER);
	assert_int_not_equal(err, X509_V_OK);
	assert_int_equal(err, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

	X509_free(cert);
	EVP_PKEY_free(key);
	ca_free(ca2);
	fx_rmtree(other);
}

static void test_issue_validity_and_errors(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);

	/* An explicit not_before is honoured; a window in the past is expired. */
	int64_t nb = (int64_t)time(NULL) - 3 * 86400;
	struct ca_issue_opts o = {.common_name = "old", .not_before = nb, .lifetime_s = 86400,
				  .usage = CA_USAGE_CLIENT};
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), 0);
	assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(cert), (time_t)nb), 0);
	assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(cert), (time_t)(nb + 86400)), 0);
	assert_int_equal(verify_with(ca_cert(f->ca), cert, 0), X509_V_ERR_CERT_HAS_EXPIRED);
	X509_free(cert);
	cert = NULL;

	o.not_before = 0;
	o.lifetime_s = 0;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	assert_null(cert);
	o.lifetime_s = 60;
	o.common_name = NULL;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	char longcn[80];
	memset(longcn, 'a', sizeof longcn - 1);
	longcn[sizeof longcn - 1] = '\0';
	o.common_name = longcn;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	o.common_name = "ok";
	const char *const bad_ip[] = {"1.2.3", NULL};
	o.ip_sans = bad_ip;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	const char *const empty_dns[] = {"", NULL};
	o.ip_sans = NULL;
	o.dns_sans = empty_dns;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	const char *const spaced[] = {"a b.example", NULL};
	o.dns_sans = spaced;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), SS_EINVAL);
	assert_null(cert);

	/* A name with configuration syntax is one literal DNS entry. */
	const char *const tricky[] = {"a.example,IP:1.2.3.4", NULL};
	o.dns_sans = tricky;
	assert_int_equal(ca_issue(f->ca, key, &o, &cert), 0);
	assert_int_equal(X509_check_ip_asc(cert, "1.2.3.4", 0), 0);
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void test_agent_dir(void **state)
{
	struct fixture *f = *state;
	char *out = path_in(f->dir, "creds/agent-7");
	assert_int_equal(ca_issue_agent_dir(f->ca, "agent-7", out, 3600), 0);
	assert_int_equal(file_mode(out), 0700);

	char *kp = path_in(out, "agent.key"), *cp = path_in(out, "agent.pem");
	char *ap = path_in(out, "ca.pem"), *ip = path_in(out, "node-id");
	assert_int_equal(file_mode(kp), 0600);
	assert_int_equal(file_mode(cp), 0644);
	assert_int_equal(file_mode(ap), 0644);
	char *id = slurp(ip);
	assert_string_equal(id, "agent-7\n");

	EVP_PKEY *key = NULL;
	X509 *cert = NULL, *ca_copy = NULL;
	assert_int_equal(pem_read_key(kp, &key), 0);
	assert_int_equal(pem_read_cert(cp, &cert), 0);
	assert_int_equal(pem_read_cert(ap, &ca_copy), 0);
	assert_int_equal(X509_cmp(ca_copy, ca_cert(f->ca)), 0);
	assert_int_equal(X509_check_private_key(cert, key), 1);
	char cn[64];
	assert_int_equal(crypto_cert_cn(cert, cn, sizeof cn), 0);
	assert_string_equal(cn, "agent-7");
	assert_int_equal(X509_check_host(cert, "agent-7", 0, 0, NULL), 1);
	assert_int_equal(verify_with(ca_copy, cert, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	assert_true(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT);
	assert_false(X509_get_extended_key_usage(cert) & XKU_SSL_SERVER);

	/* Invalid identifiers are refused before anything is written. */
	char *bad = path_in(f->dir, "bad");
	assert_int_equal(ca_issue_agent_dir(f->ca, "bad id", bad, 3600), SS_EINVAL);
	assert_int_equal(ca_issue_agent_dir(f->ca, "-lead", bad, 3600), SS_EINVAL);
	assert_int_equal(ca_issue_agent_dir(f->ca, "", bad, 3600), SS_EINVAL);
	assert_int_equal(ca_issue_agent_dir(f->ca, "ok", bad, 0), SS_EINVAL);
	assert_int_equal(access(bad, F_OK), -1);

	X509_free(cert);
	X509_free(ca_copy);
	EVP_PKEY_free(key);
	free(id);
	free(kp);
	free(cp);
	free(ap);
	free(ip);
	free(out);
	free(bad);
}

static void test_cert_cn(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *key = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	X509 *cert = issue(f->ca, key, "node-42", CA_USAGE_CLIENT);
	char cn[8];
	assert_int_equal(crypto_cert_cn(cert, cn, sizeof cn), 0);
	assert_string_equal(cn, "node-42");
	char small[7];
	assert_int_equal(crypto_cert_cn(cert, small, sizeof small), SS_ETOOBIG);

	/* A certificate without a CN. */
	X509 *bare = X509_new();
	assert_non_null(bare);
	assert_int_equal(crypto_cert_cn(bare, cn, sizeof cn), SS_ENOTFOUND);
	X509_free(bare);
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void test_pem_round_trip(void **state)
{
	struct fixture *f = *state;
	EVP_PKEY *key = NULL, *key2 = NULL, *key3 = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	assert_int_equal(EVP_PKEY_get_bits(key), 256);
	X509 *cert = issue(f->ca, key, "rt", CA_USAGE_SERVER);

	/* Strings. */
	char *ks = pem_key_string(key);
	char *cs = pem_cert_string(cert);
	assert_non_null(ks);
	assert_non_null(cs);
	assert_non_null(strstr(ks, "-----BEGIN PRIVATE KEY-----"));
	assert_non_null(strstr(cs, "-----BEGIN CERTIFICATE-----"));
	BIO *b = BIO_new_mem_buf(ks, -1);
	key2 = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(key2);
	assert_int_equal(EVP_PKEY_eq(key, key2), 1);
	b = BIO_new_mem_buf(cs, -1);
	X509 *cert2 = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(cert2);
	assert_int_equal(X509_cmp(cert, cert2), 0);

	/* Files. */
	char *kp = path_in(f->dir, "k.pem"), *cp = path_in(f->dir, "c.pem");
	assert_int_equal(pem_write_key(kp, key), 0);
	assert_int_equal(file_mode(kp), 0600);
	assert_int_equal(pem_write_cert(cp, cert, 0640), 0);
	assert_int_equal(file_mode(cp), 0640);
	assert_int_equal(pem_read_key(kp, &key3), 0);
	assert_int_equal(EVP_PKEY_eq(key, key3), 1);
	X509 *cert3 = NULL;
	assert_int_equal(pem_read_cert(cp, &cert3), 0);
	uint8_t fp1[32], fp3[32];
	assert_int_equal(crypto_cert_fingerprint(cert, fp1), 0);
	assert_int_equal(crypto_cert_fingerprint(cert3, fp3), 0);
	assert_memory_equal(fp1, fp3, 32);
	/* The fingerprint is SHA-256 of the DER. */
	unsigned char *der = NULL;
	int dlen = i2d_X509(cert, &der);
	assert_true(dlen > 0);
	uint8_t want[32];
	sha256(der, (size_t)dlen, want);
	assert_memory_equal(fp1, want, 32);
	OPENSSL_free(der);

	/* SPKI DER decodes back to the same public key. */
	uint8_t *spki = NULL;
	size_t slen = 0;
	assert_int_equal(crypto_spki_der(key, &spki, &slen), 0);
	assert_int_equal(slen, 91); /* P-256 SubjectPublicKeyInfo, uncompressed point */
	const unsigned char *p = spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)slen);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_eq(pub, key), 1);
	EVP_PKEY_free(pub);
	free(spki);

	/* Errors: missing and garbage files. */
	X509 *none = NULL;
	EVP_PKEY *nokey = NULL;
	char *missing = path_in(f->dir, "missing.pem");
	assert_int_equal(pem_read_cert(missing, &none), SS_ENOTFOUND);
	assert_int_equal(file_write_atomic(cp, "garbage\n", 8, 0644), 0);
	assert_int_equal(pem_read_cert(cp, &none), SS_ECRYPTO);
	assert_int_equal(pem_read_key(cp, &nokey), SS_ECRYPTO);
	assert_null(none);
	assert_null(nokey);

	/* An encrypted key is refused without prompting for a passphrase. */
	BIO *eb = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(eb, key, EVP_aes_256_cbc(),
						  (unsigned char *)"secret", 6, NULL, NULL),
			 1);
	char *edata = NULL;
	long elen = BIO_get_mem_data(eb, &edata);
	assert_true(elen > 0);
	assert_int_equal(file_write_atomic(kp, edata, (size_t)elen, 0600), 0);
	BIO_free(eb);
	assert_int_equal(pem_read_key(kp, &nokey), SS_ECRYPTO);
	assert_null(nokey);

	free(missing);
	free(kp);
	free(cp);
	free(ks);
	free(cs);
	X509_free(cert);
	X509_free(cert2);
	X509_free(cert3);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);
	EVP_PKEY_free(key3);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_dir_modes_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_dir_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_cert_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_ca_does_not_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_issue_validity_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_cn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pem_round_trip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
