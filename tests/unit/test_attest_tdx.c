/*
 * test_attest_tdx.c - the "tdx" verifier (src/attest/dcap.c) against the
 * real vectors in $SEESWARM_VECTORS/tdx (default ../shared/vectors). Set
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
#include "attest/tsm.h"
#include "core/core.h"
#include "fixture.h"

#define T_SET_A 1688173200LL   /* 2023-07-01T01:00:00Z */
#define T_SET_B 1770080400LL   /* 2026-02-03T01:00:00Z */
#define T_SET_B_E 1771545600LL /* 2026-02-20T00:00:00Z */
#define T_SET_C 1735689600LL   /* 2025-01-01T00:00:00Z */
#define T_SET_D 1752919234LL   /* 2025-07-19T10:00:34Z */
#define T_SET_E 1774003274LL   /* 2026-03-20T10:41:14Z */
#define T_NOW 1795392000LL     /* 2026-11-23T00:00:00Z */

static char vec_dir[512];

static bool have_vectors(void)
{
	const char *base = getenv("SEESWARM_VECTORS");
	snprintf(vec_dir, sizeof vec_dir, "%s/tdx", base ? base : "../shared/vectors");
	struct stat st;
	return stat(vec_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

#define NEED_VECTORS()                                                                        \
	do {                                                                                  \
		if (!have_vectors()) {                                                        \
			print_message("TDX vectors not found at %s (set SEESWARM_VECTORS)\n", \
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

static const struct spec set_a = { "gotdxguest_tdx_prod_quote_SPR_E4.dat", "intel_sgx_root_ca.pem",
				   "gotdxguest_rootcrl.der", "gotdxguest_pckcrl.der",
				   "gotdxguest_sample_tcbInfo_response.json",
				   "gotdxguest_sample_qeIdentity_response.json",
				   "gotdxguest_tcb_signing_chain.pem" };
static const struct spec set_d = { "dcapqvl_tdx_quote.dat", "intel_sgx_root_ca.pem",
				   "dcapqvl_tdx_root_ca_crl.der", "dcapqvl_tdx_pck_crl.der",
				   "dcapqvl_tdx_tcbinfo.json", "dcapqvl_tdx_qeidentity.json",
				   "intel_sgx_tcb_signing_2025_chain.pem" };
static const struct spec set_e = { "dcapqvl_tdx_quote_outdated.dat", "intel_sgx_root_ca.pem",
				   "dcapqvl_tdx_outdated_root_ca_crl.der",
				   "dcapqvl_tdx_outdated_pck_crl.der", "dcapqvl_tdx_outdated_tcbinfo.json",
				   "dcapqvl_tdx_outdated_qeidentity.json",
				   "intel_sgx_tcb_signing_2025_chain.pem" };
static const struct spec set_b = { "gotdxguest_quote_v5_sample.dat", "intel_sgx_root_ca.pem", NULL,
				   NULL, "gotdxguest_sample_tcbinfo_response_v5.json", NULL,
				   "intel_sgx_tcb_signing_2025_chain.pem" };
static const struct spec set_b_e = { "gotdxguest_quote_v5_sample.dat", "intel_sgx_root_ca.pem",
				     "dcapqvl_tdx_outdated_root_ca_crl.der",
				     "dcapqvl_tdx_outdated_pck_crl.der",
				     "gotdxguest_sample_tcbinfo_response_v5.json",
				     "dcapqvl_tdx_outdated_qeidentity.json",
				     "intel_sgx_tcb_signing_2025_chain.pem" };
static const struct spec set_c = { "gotdxguest_cos113_tdx_quote.dat", "intel_sgx_root_ca.pem", NULL,
				   NULL, NULL, NULL, NULL };

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
	const uint8_t *quote_data;     /* verify these bytes instead of s->quote */
	size_t quote_len;
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
	load(r->quote_data ? NULL : r->s->quote, &q);
	if (r->quote_data) {
		q.data = xmalloc(r->quote_len);
		memcpy(q.data, r->quote_data, r->quote_len);
		q.len = r->quote_len;
	}
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
	int rc = dcap_verify(&in, &c, true, out);
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

/* ---- positive vectors --------------------------------------------------- */

static void test_set_d_uptodate(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_d, T_SET_D);
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_string_equal(claim(&out, "tee"), "tdx");
	assert_string_equal(claim(&out, "tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "tdx_module_tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "tcb_date"), "2024-03-13T00:00:00Z");
	assert_int_equal(json_array_size(json_object_get(out.claims, "advisory_ids")), 0);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "quote_version")), 4);
	assert_string_equal(claim(&out, "fmspc"), "b0c06f000000");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "pce_svn")), 11);
	assert_string_equal(claim(&out, "tee_tcb_svn"), "06010300000000000000000000000000");
	assert_string_equal(claim(&out, "td_attributes"), "0000001000000000");
	assert_string_equal(claim(&out, "xfam"), "e702060000000000");
	assert_string_equal(claim(&out, "mrseam"),
			    "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1");
	assert_string_equal(claim(&out, "mrtd"),
			    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7");
	assert_string_equal(claim(&out, "rtmr0"),
			    "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0");
	assert_string_equal(claim(&out, "rtmr1"),
			    "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378");
	assert_string_equal(claim(&out, "rtmr2"),
			    "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132");
	assert_string_equal(claim(&out, "report_data"),
			    "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20");
	assert_false(json_is_true(json_object_get(out.claims, "debug")));
	assert_int_equal(json_integer_value(json_object_get(out.claims, "qe_svn")), 6);
	attest_output_free(&out);
	/* The second run hits the caches and gives the same answer. */
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
}

static void test_set_d_binding(void **state)
{
	NEED_VECTORS();
	uint8_t rd[64];
	struct attest_output out;
	assert_int_equal(hex_decode("9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20",
				    rd, 64),
			 0);
	struct run r = base(&set_d, T_SET_D);
	r.expect = rd;
	r.expect_len = 64;
	assert_int_equal(verify(&r, &out), 0);
	attest_output_free(&out);
	/* A 32-byte binding must match the prefix and the rest must be zero: it is not. */
	r.expect_len = 32;
	expect_fail(r, SS_EATTEST, "report_data does not match the expected binding");
	rd[3] ^= 1;
	r.expect_len = 64;
	expect_fail(r, SS_EATTEST, "report_data does not match the expected binding");
}

static void test_set_a_not_supported(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_a, T_SET_A);
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(claim(&out, "tcb_status"), "NotSupported");
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	assert_non_null(strstr(out.reason, "no TCB level"));
	assert_string_equal(claim(&out, "fmspc"), "50806f000000");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "pce_svn")), 11);
	assert_int_equal(json_integer_value(json_object_get(out.claims, "qe_svn")), 4);
	assert_string_equal(claim(&out, "tee_tcb_svn"), "03000400000000000000000000000000");
	assert_string_equal(claim(&out, "td_attributes"), "0000004000000000");
	assert_string_equal(claim(&out, "xfam"), "e71a060000000000");
	assert_string_equal(claim(&out, "mrseam"),
			    "2fd279c16164a93dd5bf373d834328d46008c2b693af9ebb865b08b2ced320c9a89b4869a9fab60fbe9d0c5a5363c656");
	assert_string_equal(claim(&out, "mrtd"),
			    "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb");
	assert_string_equal(claim(&out, "rtmr2"),
			    "8652f0caaba7e215ea442dc36a4499d8fec3362f3a0b2ca151cbe4b3e6466fe59c7368b3c2287fc7c3bf5c924eb4424e");
	assert_string_equal(claim(&out, "report_data"),
			    "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113");
	attest_output_free(&out);
}

static void test_set_b_v5(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_b, T_SET_B);
	assert_int_equal(verify(&r, &out), 0);
	/* TCB Info only: UpToDate, but no QE Identity and no CRLs give a warning. */
	assert_int_equal(out.status, ATTEST_WARNING);
	assert_non_null(strstr(out.reason, "no QE Identity collateral"));
	assert_string_equal(claim(&out, "tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "tdx_module_tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "tcb_date"), "2024-11-13T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "quote_version")), 5);
	assert_string_equal(claim(&out, "fmspc"), "90c06f000000");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "pce_svn")), 13);
	assert_string_equal(claim(&out, "tee_tcb_svn2"), "0d010400000000000000000000000000");
	assert_string_equal(claim(&out, "mrtd"),
			    "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876");
	assert_string_equal(claim(&out, "mrseam"),
			    "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d");
	assert_string_equal(claim(&out, "report_data"),
			    "945eaacf5abc1f719d8666a942fda03d1edcb4490277396093dc5a5289ab9f1e094aed63060cd4a4933a4dd537ed1255c9c79ecb3ed82cd1b486233e31c25c3a");
	attest_output_free(&out);
	/* With the Set E QE Identity and CRLs at 2026-02-20: full collateral, affirming. */
	r = base(&set_b_e, T_SET_B_E);
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_string_equal(claim(&out, "tcb_status"), "UpToDate");
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	attest_output_free(&out);
}

static void test_set_c_no_collateral(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	uint8_t zero[64] = { 0 };
	struct run r = base(&set_c, T_SET_C);
	r.expect = zero;
	r.expect_len = 64;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(claim(&out, "tcb_status"), "Unknown");
	assert_non_null(strstr(out.reason, "TCB status Unknown is not in allowed_tcb_statuses"));
	assert_string_equal(claim(&out, "fmspc"), "00806f050000");
	assert_string_equal(claim(&out, "tee_tcb_svn"), "04010700000000000000000000000000");
	assert_string_equal(claim(&out, "mrtd"),
			    "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a");
	assert_string_equal(claim(&out, "rtmr0"),
			    "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6");
	assert_string_equal(claim(&out, "rtmr1"),
			    "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1");
	attest_output_free(&out);
	/* A policy that accepts an unevaluated TCB: a warning (no collateral at all). */
	r.policy = "{\"allowed_tcb_statuses\": [\"Unknown\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_WARNING);
	attest_output_free(&out);
	/* No trust anchor file: the pinned fingerprint alone decides. */
	struct spec nor = set_c;
	nor.root = NULL;
	r.s = &nor;
	assert_int_equal(verify(&r, &out), 0);
	attest_output_free(&out);
}

static void test_set_e_outdated(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_e, T_SET_E);
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	/* The README: PCK component 08 = 3 but every level requires 5: no level matches. */
	assert_string_equal(claim(&out, "tcb_status"), "NotSupported");
	assert_string_equal(claim(&out, "qe_tcb_status"), "UpToDate");
	assert_int_equal(json_integer_value(json_object_get(out.claims, "qe_svn")), 7);
	assert_string_equal(claim(&out, "mrtd"),
			    "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd");
	assert_string_equal(claim(&out, "tee_tcb_svn2"), "0d010300000000000000000000000000");
	/* Even a policy allowing every status cannot accept it. */
	attest_output_free(&out);
	r.policy = "{\"allowed_tcb_statuses\": [\"UpToDate\",\"OutOfDate\",\"SWHardeningNeeded\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	attest_output_free(&out);
}

/* ---- negatives ------------------------------------------------------------ */

static void test_go_negative_table(void **state)
{
	NEED_VECTORS();
	static const struct {
		long off;
		uint8_t val;
		int rc;
		const char *needle;
	} rows[] = {
		{ 0x00, 3, SS_EPARSE, "quote v3 carries TEE type TDX" },
		{ 0x278, 0x10, SS_EPARSE, "exceeds the signature data length" },
		{ 0x1343, 0x32, SS_EPARSE, "PCK certificate chain has data outside its PEM certificates" },
		{ 0x1329, 0x32, SS_EAUTH, "is not byte for byte the Intel SGX Root CA" },
		{ 0xF5F, 0x32, SS_EAUTH,
		  "certificate 'Intel SGX PCK Platform CA' is not signed by 'Intel SGX Root CA'" },
		{ 0xB77, 0x32, SS_EAUTH,
		  "certificate 'Intel SGX PCK Certificate' is not signed by 'Intel SGX PCK Platform CA'" },
		{ 0x1E, 0x32, SS_ECRYPTO, "quote signature by the attestation key does not verify" },
		{ 0x3C, 0x32, SS_ECRYPTO, "quote signature by the attestation key does not verify" },
	};
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		dcap_cache_reset();
		struct run r = base(&set_a, T_SET_A);
		r.flip_off = rows[i].off;
		r.flip_val = rows[i].val;
		print_message("offset 0x%lx\n", rows[i].off);
		expect_fail(r, rows[i].rc, rows[i].needle);
	}
}

static void test_flips(void **state)
{
	NEED_VECTORS();
	struct run r = base(&set_d, T_SET_D);
	r.flip_off = 48 + 136; /* first byte of MRTD */
	r.flip_val = 0x92;
	expect_fail(r, SS_ECRYPTO, "quote signature by the attestation key does not verify");
	r.flip_off = 636; /* first byte of the quote signature */
	r.flip_val = 0x00;
	expect_fail(r, SS_ECRYPTO, "quote signature by the attestation key does not verify");
	/* QE report starts at 636 + 128 + 6 = 770; flip its cpusvn. */
	r.flip_off = 770;
	r.flip_val = 0xff;
	expect_fail(r, SS_ECRYPTO, "QE report signature by the PCK certificate key does not verify");
	/* The QE auth data (after QE report and signature, length at 1218): binding breaks. */
	r.flip_off = 1220;
	r.flip_val = 0x77;
	expect_fail(r, SS_EAUTH, "QE report data is not SHA-256(attestation key || QE auth data)");
	/* Collateral: TCB Info and QE Identity bodies changed after signing. */
	r = base(&set_d, T_SET_D);
	r.tcb_from = "\"tcbEvaluationDataNumber\":17";
	r.tcb_to = "\"tcbEvaluationDataNumber\":18";
	expect_fail(r, SS_ECRYPTO, "TCB Info signature by 'Intel SGX TCB Signing' does not verify");
	r = base(&set_d, T_SET_D);
	r.qe_from = "\"isvprodid\":2";
	r.qe_to = "\"isvprodid\":3";
	expect_fail(r, SS_ECRYPTO, "QE Identity signature by 'Intel SGX TCB Signing' does not verify");
	r = base(&set_d, T_SET_D);
	r.tcb_from = "\"signature\":\"027e";
	r.tcb_to = "\"signature\":\"027f";
	expect_fail(r, SS_ECRYPTO, "TCB Info signature by 'Intel SGX TCB Signing' does not verify");
}

static void test_times(void **state)
{
	NEED_VECTORS();
	/* The 2018 TCB Signing certificate expired on 2025-05-21: Set D collateral with it fails. */
	struct spec old = set_d;
	old.signing = "gotdxguest_tcb_signing_chain.pem";
	expect_fail(base(&old, T_SET_D), SS_EAUTH,
		    "certificate 'Intel SGX TCB Signing' expired at 2025-05-21");
	/* Set A TCB Info with the 2018 certificate at today's date (2026-11-23). */
	struct spec a_now = set_a;
	a_now.root_crl = a_now.pck_crl = NULL;
	a_now.qe_identity = NULL;
	expect_fail(base(&a_now, T_NOW), SS_EAUTH,
		    "certificate 'Intel SGX TCB Signing' expired at 2025-05-21");
	/* The 2025 certificate is not valid before 2025-05-06. */
	struct spec a_new = a_now;
	a_new.signing = "intel_sgx_tcb_signing_2025_chain.pem";
	expect_fail(base(&a_new, T_SET_A), SS_EAUTH,
		    "certificate 'Intel SGX TCB Signing' is not valid before 2025-05-06");
	/* Set D at 2026-11-23: the Root CA CRL is stale (then, without it, the PCK CRL). */
	expect_fail(base(&set_d, T_NOW), SS_ETIMEDOUT, "Root CA CRL expired at 2026-04-03T11:21:57Z");
	struct spec d_pck = set_d;
	d_pck.root_crl = NULL;
	expect_fail(base(&d_pck, T_NOW), SS_ETIMEDOUT, "PCK CRL expired at 2025-07-19T10:00:35Z");
	/* Set D collateral without CRLs at 2026-11-23: the TCB Info is stale. */
	struct spec d_nocrl = set_d;
	d_nocrl.root_crl = d_nocrl.pck_crl = NULL;
	expect_fail(base(&d_nocrl, T_NOW), SS_ETIMEDOUT,
		    "TCB Info expired at its nextUpdate 2025-07-19T10:16:03Z");
	/* Set D before its QE Identity was issued. */
	expect_fail(base(&d_nocrl, 1750328400LL /* 2025-06-19T10:20:00Z */), SS_ETIMEDOUT,
		    "QE Identity is not valid before its issueDate 2025-06-19T10:32:27Z");
	/* A PCK certificate that is not yet valid (Set D PCK is from 2025-02-06). */
	struct spec d_bare = { .quote = "dcapqvl_tdx_quote.dat", .root = "intel_sgx_root_ca.pem" };
	expect_fail(base(&d_bare, T_SET_A), SS_EAUTH,
		    "certificate 'Intel SGX PCK Certificate' is not valid before 2025-02-06");
}

static void test_collateral_mismatch(void **state)
{
	NEED_VECTORS();
	/* Set A TCB Info (FMSPC 50806f000000) for the Set D quote (b0c06f000000). */
	struct spec mix = set_d;
	mix.tcb_info = "gotdxguest_sample_tcbInfo_response.json";
	mix.signing = "gotdxguest_tcb_signing_chain.pem";
	mix.qe_identity = NULL;
	mix.root_crl = mix.pck_crl = NULL;
	expect_fail(base(&mix, T_SET_A + 1), SS_EAUTH, "not valid before 2025-02-06");
	/* The Set A CRL is from the Platform CA but is stale at Set D's time. */
	mix = set_d;
	mix.pck_crl = "gotdxguest_pckcrl.der";
	expect_fail(base(&mix, T_SET_D), SS_ETIMEDOUT, "PCK CRL expired at 2023-07-08");
	/* A trust anchor that is not the pinned root. */
	mix = set_d;
	mix.root = "intel_sgx_tcb_signing_2025_chain.pem";
	expect_fail(base(&mix, T_SET_D), SS_EAUTH, "is not the pinned Intel SGX Root CA");
	/* A CRL from the wrong issuer in the PCK CRL slot. */
	mix = set_d;
	mix.pck_crl = "dcapqvl_tdx_root_ca_crl.der";
	expect_fail(base(&mix, T_SET_D), SS_EAUTH,
		    "PCK CRL is issued by 'Intel SGX Root CA', not by 'Intel SGX PCK Platform CA'");
}

static void test_trailing_and_truncation(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_d, T_SET_D);
	r.append = 100;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	static const size_t cuts[] = { 0, 10, 47, 48, 300, 631, 635, 636, 700, 1000, 2000, 4935 };
	for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
		r = base(&set_d, T_SET_D);
		r.truncate = cuts[i] ? cuts[i] : 1;
		struct attest_output o;
		assert_int_equal(verify(&r, &o), SS_EPARSE);
		assert_null(o.claims);
		attest_output_free(&o);
	}
}

static void test_policy(void **state)
{
	NEED_VECTORS();
	struct attest_output out;
	struct run r = base(&set_d, T_SET_D);
	r.policy = "{\"mrtd\": [\"91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7\"],"
		   " \"rtmr0\": [\"44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	r.policy = "{\"mrtd\": [\"6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb\"],"
		   " \"rtmr3\": \"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001\"}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_string_equal(out.reason,
			    "mrtd is not in the policy's allow-list; rtmr3 is not in the policy's allow-list");
	attest_output_free(&out);
	/* Allowed / warn TCB statuses with Set B (UpToDate, partial collateral). */
	r = base(&set_b, T_SET_B);
	r.policy = "{\"allowed_tcb_statuses\": [\"OutOfDate\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_non_null(strstr(out.reason, "TCB status UpToDate is not in allowed_tcb_statuses"));
	attest_output_free(&out);
	r = base(&set_d, T_SET_D);
	r.policy = "{\"allowed_tcb_statuses\": [], \"warn_tcb_statuses\": [\"UpToDate\"]}";
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_WARNING);
	assert_string_equal(out.reason, "TCB status UpToDate");
	attest_output_free(&out);
	/* Unknown and invalid keys. */
	r.policy = "{\"mrenclave\": []}";
	expect_fail(r, SS_ECONFIG, "unknown tdx policy key 'mrenclave'");
	r.policy = "{\"allowed_tcb_statuses\": [\"Revoked\"]}";
	expect_fail(r, SS_ECONFIG, "tdx policy key 'allowed_tcb_statuses' has an invalid value");
	r.policy = "{\"mrtd\": [\"abcd\"]}";
	expect_fail(r, SS_ECONFIG, "tdx policy key 'mrtd' has an invalid value");
	r.policy = "{\"allow_debug\": 1}";
	expect_fail(r, SS_ECONFIG, "tdx policy key 'allow_debug' has an invalid value");
}

/* Builds a collateral dir from the Set D composite JSON and verifies through the verifier. */
static void test_import_and_dir(void **state)
{
	NEED_VECTORS();
	char dir[64];
	fx_tmpdir(dir, sizeof dir, "dcap-tdx");
	struct dcap_blob coll, q, root;
	char reason[256] = "";
	load("dcapqvl_tdx_quote_collateral.json", &coll);
	load("dcapqvl_tdx_quote.dat", &q);
	load("intel_sgx_root_ca.pem", &root);
	assert_int_equal(dcap_collateral_import(dir, (const char *)coll.data, coll.len, reason,
						sizeof reason),
			 0);
	/* The imported files equal the README's derived files byte for byte. */
	struct dcap_blob a, b;
	char *p = xasprintf("%s/intel/tcb_info_tdx/b0c06f000000.json", dir);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(file_read(p, 1 << 20, &data, &len), 0);
	load("dcapqvl_tdx_tcbinfo.json", &b);
	assert_int_equal(len, b.len);
	assert_memory_equal(data, b.data, len);
	free(data);
	free(p);
	free(b.data);
	p = xasprintf("%s/intel/pck_crl_platform.der", dir);
	assert_int_equal(file_read(p, 1 << 20, &data, &len), 0);
	load("dcapqvl_tdx_pck_crl.der", &a);
	assert_int_equal(len, a.len);
	assert_memory_equal(data, a.data, len);
	free(data);
	free(p);
	free(a.data);
	struct attest_input in = { .evidence = q.data, .evidence_len = q.len, .now_unix = T_SET_D,
				   .collateral_dir = dir };
	struct attest_output out;
	int rc = attest_tdx_verifier.verify(&in, &out);
	if (rc)
		print_error("%s\n", out.reason);
	assert_int_equal(rc, 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_string_equal(claim(&out, "tcb_status"), "UpToDate");
	attest_output_free(&out);
	/* A non-root certificate is refused as trust anchor. */
	struct dcap_blob sc;
	load("intel_sgx_tcb_signing_2025_chain.pem", &sc);
	assert_int_equal(dcap_collateral_import_root(dir, sc.data, sc.len, reason, sizeof reason),
			 SS_EAUTH);
	assert_int_equal(dcap_collateral_import_root(dir, root.data, root.len, reason, sizeof reason),
			 0);
	/* The SGX verifier refuses a TDX quote. */
	assert_int_equal(attest_sgx_verifier.verify(&in, &out), SS_EPARSE);
	assert_non_null(strstr(out.reason, "is an TDX quote, not SGX"));
	attest_output_free(&out);
	free(sc.data);
	free(coll.data);
	free(q.data);
	free(root.data);
	fx_rmtree(dir);
}

/* ---- the configfs-tsm attester ------------------------------------------- */

static void put_file(const char *dir, const char *name, const void *data, size_t len)
{
	char *p = xasprintf("%s/%s", dir, name);
	assert_int_equal(file_write_atomic(p, data, len, 0600), 0);
	free(p);
}

/*
 * A configfs-tsm entry is modelled by a directory holding the attribute
 * files; the quote the "kernel" returns is the real set D quote, and what
 * the attester hands over must verify with the binding it wrote.
 */
static void test_tsm_entry_round_trip(void **state)
{
	NEED_VECTORS();
	char entry[64];
	fx_tmpdir(entry, sizeof entry, "tsm");
	struct dcap_blob quote;
	load(set_d.quote, &quote);
	/* The vector's own report data: a real TD would have bound our binding instead. */
	uint8_t quote_rd[64], binding[ATTEST_REPORT_DATA_LEN];
	assert_int_equal(hex_decode("9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20",
				    quote_rd, 64), 0);
	for (size_t i = 0; i < sizeof binding; i++)
		binding[i] = (uint8_t)(0xa0 + i);
	put_file(entry, "provider", "tdx_guest\n", 10);
	put_file(entry, "generation", "7\n", 2);
	put_file(entry, "inblob", "", 0);
	put_file(entry, "outblob", quote.data, quote.len);
	uint8_t *got = NULL;
	size_t got_len = 0;
	char why[256] = "";
	assert_int_equal(tsm_report_entry(entry, "tdx_guest", binding, &got, &got_len, why, sizeof why), 0);
	/* The attester wrote the binding padded with zeros to 64 bytes. */
	char *in = NULL, *p = xasprintf("%s/inblob", entry);
	size_t in_len = 0;
	assert_int_equal(file_read(p, 1024, &in, &in_len), 0);
	assert_int_equal(in_len, 64);
	assert_memory_equal(in, binding, sizeof binding);
	for (size_t i = sizeof binding; i < 64; i++)
		assert_int_equal(in[i], 0);
	free(in);
	free(p);
	/* What it hands over is the quote itself, unchanged, and verifies. */
	assert_int_equal(got_len, quote.len);
	struct run r = base(&set_d, T_SET_D);
	r.quote_data = got;
	r.quote_len = got_len;
	r.expect = quote_rd;
	r.expect_len = 64;
	struct attest_output out;
	assert_int_equal(verify(&r, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	free(got);
	/* The wrong provider (an SEV-SNP guest) is refused. */
	put_file(entry, "provider", "sev_guest\n", 10);
	got = NULL;
	assert_int_equal(tsm_report_entry(entry, "tdx_guest", binding, &got, &got_len, why, sizeof why), SS_EATTEST);
	assert_non_null(strstr(why, "sev_guest"));
	assert_null(got);
	/* A directory that is not an entry says so. */
	p = xasprintf("%s/provider", entry);
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_int_equal(tsm_report_entry(entry, "tdx_guest", binding, &got, &got_len, why, sizeof why), SS_ENOSYS);
	assert_non_null(strstr(why, "not a configfs-tsm report entry"));
	/* Without configfs-tsm the attester fails with a clear error, not a quote. */
	const struct attester *a = attest_attester_find("tdx");
	assert_non_null(a);
	if (access(TSM_REPORT_ROOT, F_OK) != 0)
		assert_int_equal(a->evidence(binding, &got, &got_len), SS_ENOSYS);
	free(quote.data);
	fx_rmtree(entry);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_set_d_uptodate, setup),
		cmocka_unit_test_setup(test_set_d_binding, setup),
		cmocka_unit_test_setup(test_set_a_not_supported, setup),
		cmocka_unit_test_setup(test_set_b_v5, setup),
		cmocka_unit_test_setup(test_set_c_no_collateral, setup),
		cmocka_unit_test_setup(test_set_e_outdated, setup),
		cmocka_unit_test_setup(test_go_negative_table, setup),
		cmocka_unit_test_setup(test_flips, setup),
		cmocka_unit_test_setup(test_times, setup),
		cmocka_unit_test_setup(test_collateral_mismatch, setup),
		cmocka_unit_test_setup(test_trailing_and_truncation, setup),
		cmocka_unit_test_setup(test_policy, setup),
		cmocka_unit_test_setup(test_import_and_dir, setup),
		cmocka_unit_test_setup(test_tsm_entry_round_trip, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
