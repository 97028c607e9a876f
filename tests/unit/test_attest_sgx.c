/*
 * test_attest_sgx.c - the "sgx" verifier (src/attest/dcap.c) against the
 * real vectors in $SEESWARM_VECTORS/sgx (default ../shared/vectors). Set
 * letters, times and expected results follow the vectors' README.
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

#include "attest/dcap.h"
#include "core/core.h"
#include "fixture.h"

#define T_V1 1752919277LL   /* 2025-07-19T10:01:17Z */
#define T_V2 1735689600LL   /* 2025-01-01T00:00:00Z */
#define T_NOW 1795392000LL  /* 2026-11-23T00:00:00Z */

static char vec_dir[512];

static bool have_vectors(void)
{
	const char *base = getenv("SEESWARM_VECTORS");
	snprintf(vec_dir, sizeof vec_dir, "%s/sgx", base ? base : "../shared/vectors");
	struct stat st;
	return stat(vec_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

#define NEED_VECTORS()                                                                        \
	do {                                                                                  \
		if (!have_vectors()) {                                                        \
			print_message("SGX vectors not found at %s (set SEESWARM_VECTORS)\n", \
				      vec_dir);                                               \
			skip();                                                               \
		}                                                                             \
	} while (0)

static void load(const char *name, struct dcap_blob *b)
{
	memset(b, 0, sizeof *b);
	if (!name)
		return;
	char *path = xasprintf("%s/%s", vec_dir, name), *data = NULL;
	size_t len = 0;
	int rc = file_read(path, 1 << 20, &data, &len);
	if (rc)
		print_error("cannot read %s\n", path);
	assert_int_equal(rc, 0);
	free(path);
	b->data = (uint8_t *)data;
	b->len = len;
}

/* Collateral file names in the vector folder (NULL = absent). */
struct spec {
	const char *quote, *root, *root_crl, *pck_crl, *tcb_info, *qe_identity, *signing;
};

static const struct spec v1 = { "dcapqvl_sgx_quote.dat", "intel_sgx_root_ca.pem",
				"dcapqvl_sgx_root_ca_crl.der", "dcapqvl_sgx_pck_crl.der",
				"dcapqvl_sgx_tcbinfo.json", "dcapqvl_sgx_qeidentity.json",
				"intel_sgx_tcb_signing_2025_chain.pem" };
static const struct spec v2 = { .quote = "trustee_occlum_sgx_quote.dat",
				.root = "intel_sgx_root_ca.pem" };

static const char *const allow_v1 = "{\"allowed_tcb_statuses\": [\"UpToDate\", \"ConfigurationAndSWHardeningNeeded\"]}";

/* One verification with optional mutations of the quote. */
struct run {
	const struct spec *s;
	int64_t now;
	const char *policy;      /* JSON text or NULL */
	const uint8_t *expect;   /* expected report data or NULL */
	size_t expect_len;
	long flip_off;           /* set quote[flip_off] = flip_val when >= 0 */
	uint8_t flip_val;
	size_t truncate;         /* cut the quote to this many bytes when non-zero */
	size_t append;           /* append this many 0x41 bytes */
	const char *tcb_from, *tcb_to; /* replace a substring of the TCB Info */
	const char *qe_from, *qe_to;   /* replace a substring of the QE Identity */
};

static void replace(struct dcap_blob *b, const char *from, const char *to)
{
	if (!from)
		return;
	uint8_t *p = memmem(b->data, b->len, from, strlen(from));
	assert_non_null(p);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
}

static int verify(const struct run *r, struct attest_output *out)
{
	struct dcap_collateral c;
	struct dcap_blob q;
	memset(&c, 0, sizeof c);
	load(r->s->quote, &q);
	load(r->s->root, &c.root_ca);
	load(r->s->root_crl, &c.root_ca_crl);
	load(r->s->pck_crl, &c.pck_crl);
	load(r->s->tcb_info, &c.tcb_info);
	load(r->s->qe_identity, &c.qe_identity);
	load(r->s->signing, &c.tcb_signing_chain);
	if (r->tcb_from)
		replace(&c.tcb_info, r->tcb_from, r->tcb_to);
	if (r->qe_from)
		replace(&c.qe_identity, r->qe_from, r->qe_to);
	if (r->flip_off >= 0 && r->flip_off < (long)q.len && !r->truncate)
		q.data[r->flip_off] = r->flip_val;
	if (r->truncate)
		q.len = r->truncate;
	if (r->append) {
		q.data = xrealloc(q.data, q.len + r->append);
		memset(q.data + q.len, 0x41, r->append);
		q.len += r->append;
	}
	json_t *pol = NULL;
	if (r->policy) {
		json_error_t e;
		pol = json_loads(r->policy, 0, &e);
		assert_non_null(pol);
	}
	struct attest_input in = { .evidence = q.data, .evidence_len = q.len, .now_unix = r->now,
				   .policy = pol, .expected_report_data = r->expect,
				   .expected_len = r->expect_len };
	int rc = dcap_verify(&in, &c, false, out);
	if (rc)
		print_message("rc=%d reason: %s\n", rc, out->reason);
	json_decref(pol);
	free(q.data);
	dcap_collateral_free(&c);
	return rc;
}

static struct run base(const struct spec *s, int64_t now)
{
	return (struct run){ .s = s, .now = now, .flip_off = -1 };
}

static const char *claim(const struct attest_output *out, const char *key)
{
	const char *v = json_string_value(json_object_get(out->claims, key));
	assert_non_null(v);
	return v;
}

static void expect_fail(struct run r, int code, const char *needle)
{
	struct attest_output out;
	int rc = verify(&r, &out);
	if (rc != code || !strstr(out.reason, needle))
		print_error("got rc=%d reason '%s', want rc=%d containing '%s'\n", rc, out.reason,
			    code, needle);
	assert_int_equal(rc, code);
	assert_non_null(strstr(out.reason, needle));
	assert_null(out.claims);
	attest_output_free(&out);
}

static int setup(void **state)
{
	dcap_cache_reset();
	return 0;
}

static void test_v1_status(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&v1, T_V1);
	assert_int_equal(verify(&r, &out), 0);
	/* Default policy: only UpToDate is allowed. */
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(out.reason,
			    "TCB status ConfigurationAndSWHardeningNeeded is not in allowed_tcb_statuses");
	assert_string_equal(claim(&out, "tee"), "sgx");
	assert_string_equal(claim(&out, "tcb_status"), "ConfigurationAndSWHardeningNeeded");
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "tcb_date"), "2024-03-13T00:00:00Z");
	json_t *adv = json_object_get(out.claims, "advisory_ids");
	assert_int_equal(json_array_size(adv), 2);
	assert_string_equal(json_string_value(json_array_get(adv, 0)), "INTEL-SA-00289");
	assert_string_equal(json_string_value(json_array_get(adv, 1)), "INTEL-SA-00615");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "quote_version")), 3);
	assert_string_equal(claim(&out, "fmspc"), "00a067110000");
	assert_string_equal(claim(&out, "pck_issuer"), "Intel SGX PCK Processor CA");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "pce_svn")), 13);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "qe_svn")), 10);
	assert_string_equal(claim(&out, "mrenclave"),
			    "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
	assert_string_equal(claim(&out, "mrsigner"),
			    "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6");
	assert_string_equal(claim(&out, "attributes"), "0500000000000000e700000000000000");
	assert_string_equal(claim(&out, "cpusvn"), "0b0b1a18ffff04000000000000000000");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "isv_prod_id")), 0);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "isv_svn")), 0);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "miscselect")), 0);
	assert_false(json_is_true(json_object_get(out.claims, "debug")));
	assert_string_equal(claim(&out, "report_data"),
			    "48656c6c6f2c20776f726c6421000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000");
	attest_output_free(&out);
	r.policy = allow_v1;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	r.policy = "{\"warn_tcb_statuses\": [\"ConfigurationAndSWHardeningNeeded\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_WARNING);
	assert_string_equal(out.reason, "TCB status ConfigurationAndSWHardeningNeeded");
	attest_output_free(&out);
}

static void test_v1_binding(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&v1, T_V1);
	r.policy = allow_v1;
	r.expect = (const uint8_t *)"Hello, world!";
	r.expect_len = 13;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	r.expect = (const uint8_t *)"Hello, world?";
	expect_fail(r, SS_EATTEST, "report_data does not match the expected binding");
	r.expect = (const uint8_t *)"Hello";
	r.expect_len = 5;
	expect_fail(r, SS_EATTEST, "report_data does not match the expected binding");
}

static void test_v2_debug_and_allowlists(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&v2, T_V2);
	r.policy = "{\"allowed_tcb_statuses\": [\"Unknown\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(out.reason, "the enclave is in debug mode but allow_debug is false");
	assert_true(json_is_true(json_object_get(out.claims, "debug")));
	assert_string_equal(claim(&out, "tcb_status"), "Unknown");
	assert_string_equal(claim(&out, "fmspc"), "00606a000000");
	assert_string_equal(claim(&out, "pck_issuer"), "Intel SGX PCK Platform CA");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "pce_svn")), 11);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "qe_svn")), 8);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "miscselect")), 1);
	assert_string_equal(claim(&out, "mrenclave"),
			    "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68");
	assert_string_equal(claim(&out, "attributes"), "0700000000000000e700000000000000");
	attest_output_free(&out);
	/* Debug allowed and MRENCLAVE/MRSIGNER listed: only the missing-collateral warning remains. */
	r.policy = "{\"allowed_tcb_statuses\": [\"Unknown\"], \"allow_debug\": true,"
		   " \"mrenclave\": [\"00\", \"8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68\"],"
		   " \"mrsigner\": \"83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e\","
		   " \"isv_prod_id\": 0, \"min_isv_svn\": 0}";
	expect_fail(r, SS_ECONFIG, "sgx policy key 'mrenclave' has an invalid value");
	r.policy = "{\"allowed_tcb_statuses\": [\"Unknown\"], \"allow_debug\": true,"
		   " \"mrenclave\": [\"8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68\"],"
		   " \"mrsigner\": \"83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e\","
		   " \"isv_prod_id\": 0, \"min_isv_svn\": 0}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_WARNING);
	assert_non_null(strstr(out.reason, "no TCB Info collateral for FMSPC 00606a000000"));
	attest_output_free(&out);
	r.policy = "{\"allowed_tcb_statuses\": [\"Unknown\"], \"allow_debug\": true,"
		   " \"mrenclave\": [\"33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb\"],"
		   " \"isv_prod_id\": 1, \"min_isv_svn\": 2}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(out.reason,
			    "mrenclave is not in the policy's allow-list; isv_prod_id 0 is not the policy's 1; isv_svn 0 is below the policy's min_isv_svn 2");
	attest_output_free(&out);
	r.policy = "{\"mrtd\": []}";
	expect_fail(r, SS_ECONFIG, "unknown sgx policy key 'mrtd'");
}

/* Offset of the n-th byte before the first END marker of the PEM chain (the PCK leaf). */
static long leaf_sig_offset(const char *quote_name)
{
	struct dcap_blob q;
	load(quote_name, &q);
	uint8_t *e = memmem(q.data, q.len, "-----END CERTIFICATE-----", 25);
	assert_non_null(e);
	long off = (long)(e - q.data) - 8;
	free(q.data);
	return off;
}

static void test_v1_negatives(void **state)
{
	NEED_VECTORS();
	struct run r = base(&v1, T_V1);
	r.flip_off = 48 + 64; /* MRENCLAVE */
	r.flip_val = 0x34;
	expect_fail(r, SS_ECRYPTO, "quote signature by the attestation key does not verify");
	r.flip_off = 436 + 40; /* the ISV report signature */
	r.flip_val = 0;
	expect_fail(r, SS_ECRYPTO, "quote signature by the attestation key does not verify");
	r.flip_off = 564 + 64; /* the QE report's MRENCLAVE */
	r.flip_val = 0;
	expect_fail(r, SS_ECRYPTO, "QE report signature by the PCK certificate key does not verify");
	r.flip_off = 1014; /* the QE auth data */
	r.flip_val = 0x55;
	expect_fail(r, SS_EAUTH, "QE report data is not SHA-256(attestation key || QE auth data)");
	r.flip_off = leaf_sig_offset("dcapqvl_sgx_quote.dat");
	struct dcap_blob q;
	load("dcapqvl_sgx_quote.dat", &q);
	r.flip_val = q.data[r.flip_off] == 'A' ? 'B' : 'A';
	free(q.data);
	expect_fail(r, SS_EAUTH,
		    "certificate 'Intel SGX PCK Certificate' is not signed by 'Intel SGX PCK Processor CA'");
	r = base(&v1, T_V1);
	r.tcb_from = "\"tcbEvaluationDataNumber\":17";
	r.tcb_to = "\"tcbEvaluationDataNumber\":16";
	expect_fail(r, SS_ECRYPTO, "TCB Info signature by 'Intel SGX TCB Signing' does not verify");
	r = base(&v1, T_V1);
	r.qe_from = "\"isvprodid\":1";
	r.qe_to = "\"isvprodid\":7";
	expect_fail(r, SS_ECRYPTO, "QE Identity signature by 'Intel SGX TCB Signing' does not verify");
	/* Today (2026-11-23) the Root CA CRL and the TCB Info are stale. */
	expect_fail(base(&v1, T_NOW), SS_ETIMEDOUT, "Root CA CRL expired at 2026-04-03T11:21:57Z");
	/* The Processor-CA PCK CRL of vector 1 does not apply to the Platform-CA PCK of vector 2. */
	struct spec mix = v2;
	mix.pck_crl = "dcapqvl_sgx_pck_crl.der";
	expect_fail(base(&mix, T_V1), SS_EAUTH,
		    "PCK CRL is issued by 'Intel SGX PCK Processor CA', not by 'Intel SGX PCK Platform CA'");
	/* Vector 1 TCB Info (FMSPC 00a067110000) for vector 2 (00606a000000). */
	mix = v2;
	mix.tcb_info = "dcapqvl_sgx_tcbinfo.json";
	mix.signing = "intel_sgx_tcb_signing_2025_chain.pem";
	expect_fail(base(&mix, T_V1), SS_EAUTH,
		    "TCB Info is for FMSPC 00a067110000 but the PCK certificate has FMSPC 00606a000000");
	/* Vector 1 QE Identity for vector 2's QE (isvsvn 8 is fine, identity matches). */
	mix = v2;
	mix.qe_identity = "dcapqvl_sgx_qeidentity.json";
	mix.signing = "intel_sgx_tcb_signing_2025_chain.pem";
	struct attest_output out;
	r = base(&mix, T_V1);
	assert_int_equal(verify(&r, &out), 0);
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	attest_output_free(&out);
}

static void test_trailing_and_truncation(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&v1, T_V1);
	r.policy = allow_v1;
	r.append = 39;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	static const size_t cuts[] = { 1, 47, 48, 431, 435, 436, 500, 1011, 1046, 1051, 3000, 4599 };
	for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
		r = base(&v1, T_V1);
		r.truncate = cuts[i];
		assert_int_equal(verify(&r, &out), SS_EPARSE);
		attest_output_free(&out);
	}
}

static void test_import_and_dir(void **state)
{
	NEED_VECTORS();
	char dir[64];
	fx_tmpdir(dir, sizeof dir, "dcap-sgx");
	struct dcap_blob coll, q;
	char reason[256] = "";
	load("dcapqvl_sgx_quote_collateral.json", &coll);
	load("dcapqvl_sgx_quote.dat", &q);
	assert_int_equal(dcap_collateral_import(dir, (const char *)coll.data, coll.len, reason,
						sizeof reason),
			 0);
	json_error_t e;
	json_t *pol = json_loads(allow_v1, 0, &e);
	struct attest_input in = { .evidence = q.data, .evidence_len = q.len, .now_unix = T_V1,
				   .collateral_dir = dir, .policy = pol };
	struct attest_output out;
	int rc = attest_sgx_verifier.verify(&in, &out);
	if (rc)
		print_error("%s\n", out.reason);
	assert_int_equal(rc, 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_string_equal(claim(&out, "tcb_status"), "ConfigurationAndSWHardeningNeeded");
	attest_output_free(&out);
	/* Garbage collateral is refused. */
	assert_int_equal(dcap_collateral_import(dir, "{\"tcb_info\": 1}", 15, reason, sizeof reason),
			 SS_EPARSE);
	json_decref(pol);
	free(coll.data);
	free(q.data);
	fx_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_v1_status, setup),
		cmocka_unit_test_setup(test_v1_binding, setup),
		cmocka_unit_test_setup(test_v2_debug_and_allowlists, setup),
		cmocka_unit_test_setup(test_v1_negatives, setup),
		cmocka_unit_test_setup(test_trailing_and_truncation, setup),
		cmocka_unit_test_setup(test_import_and_dir, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
