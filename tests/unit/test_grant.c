/* test_grant.c - blob fetch grants: signatures, the cache, the grant-key certificate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attest/ca.h"
#include "core/core.h"
#include "data/grant.h"
#include "fixture.h"

static void test_sign_and_verify(void **state)
{
	(void)state;
	EVP_PKEY *key = NULL, *other = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	assert_int_equal(crypto_gen_key(&other), 0);
	uint8_t d[SHA256_LEN], d2[SHA256_LEN], sig[GRANT_MAX_SIG];
	size_t len = 0;
	sha256("blob", 4, d);
	sha256("other blob", 10, d2);
	assert_int_equal(grant_sign(key, d, "agent-a", sig, &len), 0);
	assert_true(len > 0 && len <= GRANT_MAX_SIG);
	assert_int_equal(grant_verify(key, d, "agent-a", sig, len), 0);
	/* Bound to the digest, the node, the key and every byte of the signature. */
	assert_int_equal(grant_verify(key, d2, "agent-a", sig, len), SS_EAUTH);
	assert_int_equal(grant_verify(key, d, "agent-b", sig, len), SS_EAUTH);
	assert_int_equal(grant_verify(key, d, "agent-a2", sig, len), SS_EAUTH);
	assert_int_equal(grant_verify(other, d, "agent-a", sig, len), SS_EAUTH);
	for (size_t i = 0; i < len; i++) {
		sig[i] ^= 0x40;
		assert_int_equal(grant_verify(key, d, "agent-a", sig, len), SS_EAUTH);
		sig[i] ^= 0x40;
	}
	assert_int_equal(grant_verify(key, d, "agent-a", sig, len - 1), SS_EAUTH);
	assert_int_equal(grant_verify(key, d, "agent-a", sig, 0), SS_EAUTH);
	assert_int_equal(grant_verify(key, d, "agent-a", NULL, len), SS_EAUTH);
	assert_int_equal(grant_verify(NULL, d, "agent-a", sig, len), SS_EAUTH);
	assert_int_equal(grant_verify(key, d, "", sig, len), SS_EAUTH);
	assert_int_equal(grant_sign(key, d, "", sig, &len), SS_EINVAL);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
}

static void test_cache(void **state)
{
	(void)state;
	EVP_PKEY *key = NULL, *other = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	assert_int_equal(crypto_gen_key(&other), 0);
	struct grant_cache *c = xcalloc(1, sizeof *c);
	uint8_t d[SHA256_LEN], sig[GRANT_MAX_SIG];
	size_t len = 0;
	sha256("blob", 4, d);
	assert_int_equal(grant_sign(key, d, "agent-a", sig, &len), 0);
	assert_int_equal(grant_check(c, key, d, "agent-a", sig, len), 0);
	/* A cached grant passes without the key ... */
	assert_int_equal(grant_check(c, other, d, "agent-a", sig, len), 0);
	/* ... but only for the same node, digest and signature. */
	assert_int_equal(grant_check(c, other, d, "agent-b", sig, len), SS_EAUTH);
	uint8_t d2[SHA256_LEN];
	memcpy(d2, d, sizeof d2);
	d2[31] ^= 1;
	assert_int_equal(grant_check(c, other, d2, "agent-a", sig, len), SS_EAUTH);
	/* Failures are not cached. */
	assert_int_equal(grant_check(c, key, d2, "agent-a", sig, len), SS_EAUTH);
	assert_int_equal(grant_check(c, key, d2, "agent-a", sig, len), SS_EAUTH);
	/* Entries are replaced in turn: after GRANT_CACHE_SIZE others, the first is gone. */
	for (unsigned i = 0; i < GRANT_CACHE_SIZE; i++) {
		uint8_t x[SHA256_LEN], s2[GRANT_MAX_SIG];
		size_t l2 = 0;
		sha256(&i, sizeof i, x);
		assert_int_equal(grant_sign(key, x, "agent-a", s2, &l2), 0);
		assert_int_equal(grant_check(c, key, x, "agent-a", s2, l2), 0);
	}
	assert_int_equal(grant_check(c, other, d, "agent-a", sig, len), SS_EAUTH);
	char long_id[80];
	memset(long_id, 'a', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	assert_int_equal(grant_check(c, key, d, long_id, sig, len), SS_EAUTH);
	free(c);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
}

static void test_grant_certificate(void **state)
{
	(void)state;
	char dir[64], dir2[64];
	fx_tmpdir(dir, sizeof dir, "grant");
	fx_tmpdir(dir2, sizeof dir2, "grant");
	bool created = false;
	struct ca *ca = NULL, *ca2 = NULL;
	assert_int_equal(ca_init_dir(dir, &created), 0);
	assert_int_equal(ca_load(&ca, dir), 0);
	assert_int_equal(ca_init_dir(dir2, &created), 0);
	assert_int_equal(ca_load(&ca2, dir2), 0);
	EVP_PKEY *key = NULL;
	assert_int_equal(crypto_gen_key(&key), 0);
	X509 *good = NULL, *wrong_cn = NULL, *other_ca = NULL, *expired = NULL;
	struct ca_issue_opts o = {.common_name = GRANT_CN, .lifetime_s = 3600};
	assert_int_equal(ca_issue(ca, key, &o, &good), 0);
	assert_int_equal(ca_issue(ca2, key, &o, &other_ca), 0);
	struct ca_issue_opts old = {.common_name = GRANT_CN, .lifetime_s = 60,
				    .not_before = (int64_t)time_wall_ms() / 1000 - 7200};
	assert_int_equal(ca_issue(ca, key, &old, &expired), 0);
	struct ca_issue_opts cn = {.common_name = "agent-a", .lifetime_s = 3600};
	assert_int_equal(ca_issue(ca, key, &cn, &wrong_cn), 0);
	assert_int_equal(grant_cert_check(good, ca_cert(ca)), 0);
	assert_int_equal(grant_cert_check(good, ca_cert(ca2)), SS_EAUTH);
	assert_int_equal(grant_cert_check(other_ca, ca_cert(ca)), SS_EAUTH);
	assert_int_equal(grant_cert_check(expired, ca_cert(ca)), SS_EAUTH);
	assert_int_equal(grant_cert_check(wrong_cn, ca_cert(ca)), SS_EAUTH);
	assert_int_equal(grant_cert_check(NULL, ca_cert(ca)), SS_EAUTH);
	assert_int_equal(grant_cert_check(good, NULL), SS_EAUTH);
	X509_free(good);
	X509_free(wrong_cn);
	X509_free(other_ca);
	X509_free(expired);
	EVP_PKEY_free(key);
	ca_free(ca);
	ca_free(ca2);
	fx_rmtree(dir);
	fx_rmtree(dir2);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_and_verify),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_grant_certificate),
	};
	return cmocka_run_group_tests_name("grant", tests, NULL, NULL);
}
