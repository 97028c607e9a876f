/* test_exec_receipt.c - unit tests for signed task receipts (src/agent/exec/receipt.c). */
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

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include "agent/exec/exec.h"
#include "attest/ca.h"
#include "core/core.h"
#include "fixture.h"

struct fx {
	struct exec_spec spec;
	struct exec_result res;
	EVP_PKEY *key;
	X509 *cert;
	char *cert_pem;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	exec_spec_init(&f->spec);
	exec_spec_add_arg(&f->spec, "/bin/true");
	memset(&f->res, 0, sizeof(f->res));
	f->res.status = EXEC_EXITED;
	snprintf(f->res.msg, sizeof(f->res.msg), "exited with status 0 \"quoted\" \xc3\xa9");
	f->res.start_ms = 1700000000000;
	f->res.end_ms = 1700000000123;
	f->res.usage.cpu_ns = 12345;
	f->res.usage.peak_mem_bytes = 1 << 20;
	f->res.usage.wall_ms = 123;
	memset(f->res.code_digest, 0xab, SHA256_LEN);
	f->res.outputs = xcalloc(1, sizeof(*f->res.outputs));
	f->res.outputs[0].name = xstrdup("out.txt");
	f->res.outputs[0].size = 5;
	memset(f->res.outputs[0].sha256, 0x11, SHA256_LEN);
	f->res.n_outputs = 1;
	assert_int_equal(exec_ephemeral_identity("node-1", &f->key, &f->cert), 0);
	f->cert_pem = pem_cert_string(f->cert);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	exec_spec_free(&f->spec);
	exec_result_free(&f->res);
	EVP_PKEY_free(f->key);
	X509_free(f->cert);
	free(f->cert_pem);
	free(f);
	return 0;
}

static char *build(struct fx *f, const char *node_id, EVP_PKEY *key, X509 *cert, size_t *len)
{
	struct exec_receipt_info info = {.node_id = node_id};
	uint8_t att[SHA256_LEN];
	memset(att, 0x5a, sizeof(att));
	info.attest_digest = att;
	char *r = NULL;
	assert_int_equal(exec_receipt_build(&f->spec, &f->res, &info, key, cert, &r, len), 0);
	return r;
}

static int verify(const char *r, size_t len, const char *ca, char *why)
{
	return exec_receipt_verify(r, len, ca, strlen(ca), why, 256, NULL);
}

static void test_roundtrip_and_every_byte(void **state)
{
	struct fx *f = *state;
	size_t len;
	char why[256];
	char *r = build(f, "node-1", f->key, f->cert, &len);
	char *body = NULL;
	assert_int_equal(exec_receipt_verify(r, len, f->cert_pem, strlen(f->cert_pem), why,
					     sizeof(why), &body), 0);
	json_t *j = json_loads(body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "node_id")), "node-1");
	assert_string_equal(json_string_value(json_object_get(j, "started_at")),
			    "2023-11-14T22:13:20.000Z");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "cpu_ns")),
			 12345);
	json_decref(j);
	free(body);
	/* Without its final newline it still verifies; anything else changed does not. */
	assert_int_equal(verify(r, len - 1, f->cert_pem, why), 0);
	for (size_t i = 0; i < len; i++) {
		for (int bit = (int)(i % 8); bit == (int)(i % 8); bit++) {
			r[i] ^= (char)(1 << bit);
			if (verify(r, len, f->cert_pem, why) == 0)
				fail_msg("byte %zu bit %d flipped still verifies", i, bit);
			r[i] ^= (char)(1 << bit);
		}
	}
	assert_int_equal(verify(r, len, f->cert_pem, why), 0);
	free(r);
}

static void test_wrong_ca_and_cn(void **state)
{
	struct fx *f = *state;
	EVP_PKEY *k2;
	X509 *c2;
	size_t len;
	char why[256];
	assert_int_equal(exec_ephemeral_identity("node-1", &k2, &c2), 0);
	char *pem2 = pem_cert_string(c2);
	char *r = build(f, "node-1", f->key, f->cert, &len);
	assert_int_equal(verify(r, len, pem2, why), SS_EAUTH);
	assert_non_null(strstr(why, "chain"));
	free(r);
	/* The certificate CN must name the node the receipt claims. */
	r = build(f, "node-2", f->key, f->cert, &len);
	assert_int_equal(verify(r, len, f->cert_pem, why), SS_EAUTH);
	assert_non_null(strstr(why, "CN"));
	free(r);
	/* A key that does not match the certificate. */
	r = build(f, "node-1", k2, f->cert, &len);
	assert_int_equal(verify(r, len, f->cert_pem, why), SS_EAUTH);
	assert_non_null(strstr(why, "signature"));
	free(r);
	free(pem2);
	EVP_PKEY_free(k2);
	X509_free(c2);
}

/* The high-s twin of a valid signature is valid ECDSA but must be refused. */
static void test_high_s_refused(void **state)
{
	struct fx *f = *state;
	size_t len;
	char why[256];
	char *r = build(f, "node-1", f->key, f->cert, &len);
	json_t *env = json_loadb(r, len, 0, NULL);
	const char *hex = json_string_value(json_object_get(env, "sig"));
	uint8_t der[80];
	size_t dl = strlen(hex) / 2;
	assert_int_equal(hex_decode(hex, der, dl), 0);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	BIGNUM *ns = BN_new();
	BN_sub(ns, EC_GROUP_get0_order(g), ECDSA_SIG_get0_s(sig));
	ECDSA_SIG_set0(sig, BN_dup(ECDSA_SIG_get0_r(sig)), ns);
	unsigned char *q = der;
	int n = i2d_ECDSA_SIG(sig, &q);
	char hex2[161];
	hex_encode(der, (size_t)n, hex2);
	json_object_set_new(env, "sig", json_string(hex2));
	char *r2 = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	assert_int_equal(verify(r2, strlen(r2), f->cert_pem, why), SS_EAUTH);
	assert_non_null(strstr(why, "low-s"));
	free(r2);
	ECDSA_SIG_free(sig);
	EC_GROUP_free(g);
	json_decref(env);
	free(r);
}

/* A node certificate issued by the swarm CA verifies against ca.pem. */
static void test_swarm_ca_chain(void **state)
{
	struct fx *f = *state;
	char dir[64];
	struct ca *ca = NULL;
	bool created;
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	size_t len;
	char why[256];
	fx_tmpdir(dir, sizeof dir, "exec-receipt");
	char *adir = xasprintf("%s/agent", dir);
	char *kp = xasprintf("%s/agent.key", adir), *cp = xasprintf("%s/agent.pem", adir);
	assert_int_equal(ca_init_dir(dir, &created), 0);
	assert_int_equal(ca_load(&ca, dir), 0);
	assert_int_equal(ca_issue_agent_dir(ca, "agent-7", adir, 3600), 0);
	assert_int_equal(pem_read_key(kp, &k), 0);
	assert_int_equal(pem_read_cert(cp, &c), 0);
	char *ca_pem = pem_cert_string(ca_cert(ca));
	char *r = build(f, "agent-7", k, c, &len);
	assert_int_equal(verify(r, len, ca_pem, why), 0);
	/* The agent's own certificate is not a CA for receipts signed by another node. */
	char *own = pem_cert_string(c);
	char *r2 = build(f, "node-1", f->key, f->cert, &len);
	assert_int_equal(verify(r2, len, own, why), SS_EAUTH);
	free(own);
	free(r2);
	free(r);
	free(ca_pem);
	ca_free(ca);
	EVP_PKEY_free(k);
	X509_free(c);
	fx_rmtree(dir);
	free(adir);
	free(kp);
	free(cp);
}

static void test_garbage(void **state)
{
	struct fx *f = *state;
	char why[256];
	static const char *const bad[] = {"", "{}", "[]", "null", "{\"alg\":\"ES256\"}", "\xff"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		assert_int_not_equal(verify(bad[i], strlen(bad[i]), f->cert_pem, why), 0);
	size_t len;
	char *r = build(f, "node-1", f->key, f->cert, &len);
	assert_int_equal(exec_receipt_verify(r, len, "", 0, why, sizeof(why), NULL), SS_ECONFIG);
	free(r);
}

static void test_seccomp_and_landlock_probe(void **state)
{
	(void)state;
	void *prog = NULL;
	assert_int_equal(exec_seccomp_build(&prog), 0);
	assert_non_null(prog);
	exec_seccomp_free(prog);
	assert_true(exec_landlock_abi() >= 0);
	assert_true(exec_cgroup_detect() <= EXEC_CG_V2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_and_every_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_ca_and_cn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_high_s_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swarm_ca_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test(test_seccomp_and_landlock_probe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
