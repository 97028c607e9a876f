/*
 * test_attest_snp.c - the "sev-snp" verifier against the real vectors in
 * $SEESWARM_VECTORS/sev-snp (default ../shared/vectors), plus the attester's
 * request/response helpers. Vector numbers follow the vectors' README.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/snp.h"
#include "core/core.h"
#include "fixture.h"

#define T_2025_06_01 1748736000LL
#define T_2026_11_23 1795392000LL

static char vec_dir[512];

struct blob {
	uint8_t *p;
	size_t n;
};

/* Up to 4 certificates plus the report; freed by input_free. */
struct tin {
	struct attest_input in;
	struct blob report;
	const uint8_t *certs[SNP_MAX_CERTS];
	size_t lens[SNP_MAX_CERTS];
	struct blob owned[SNP_MAX_CERTS];
};

static bool have_vectors(void)
{
	const char *base = getenv("SEESWARM_VECTORS");
	snprintf(vec_dir, sizeof vec_dir, "%s/sev-snp", base ? base : "../shared/vectors");
	struct stat st;
	return stat(vec_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

#define NEED_VECTORS()                                                                      \
	do {                                                                                \
		if (!have_vectors()) {                                                      \
			print_message("SEV-SNP vectors not found at %s (set SEESWARM_VECTORS)\n", \
				      vec_dir);                                             \
			skip();                                                             \
		}                                                                           \
	} while (0)

static struct blob load(const char *name)
{
	char *path = xasprintf("%s/%s", vec_dir, name);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(file_read(path, 1 << 20, &data, &len), 0);
	free(path);
	return (struct blob){ (uint8_t *)data, len };
}

/* Loads the idx-th PEM certificate of a vector file as DER. */
static struct blob load_pem_der(const char *name, int idx)
{
	struct blob pem = load(name);
	BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.n);
	X509 *x = NULL;
	for (int i = 0; i <= idx; i++) {
		X509_free(x);
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		assert_non_null(x);
	}
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	assert_true(n > 0);
	struct blob b = { xmalloc((size_t)n), (size_t)n };
	memcpy(b.p, der, (size_t)n);
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	free(pem.p);
	return b;
}

static struct blob load_cert(const char *name)
{
	size_t n = strlen(name);
	if (n > 4 && !strcmp(name + n - 4, ".der"))
		return load(name);
	int idx = 0;
	const char *hash = strchr(name, '#');
	char file[128];
	snprintf(file, sizeof file, "%.*s", hash ? (int)(hash - name) : (int)n, name);
	if (hash)
		idx = atoi(hash + 1);
	return load_pem_der(file, idx);
}

/* Builds an input: report file and a NULL-terminated list of certificate files. */
static void input_init(struct tin *t, const char *report, const char *const *certs)
{
	memset(t, 0, sizeof *t);
	t->report = load(report);
	for (size_t i = 0; certs && certs[i]; i++) {
		t->owned[i] = load_cert(certs[i]);
		t->certs[i] = t->owned[i].p;
		t->lens[i] = t->owned[i].n;
		t->in.n_certs = i + 1;
	}
	t->in.evidence = t->report.p;
	t->in.evidence_len = t->report.n;
	t->in.certs = t->certs;
	t->in.cert_lens = t->lens;
	t->in.now_unix = T_2025_06_01;
}

static void input_free(struct tin *t)
{
	free(t->report.p);
	for (size_t i = 0; i < SNP_MAX_CERTS; i++)
		free(t->owned[i].p);
	json_decref((json_t *)t->in.policy);
}

static void set_policy(struct tin *t, const char *json)
{
	json_error_t err;
	json_decref((json_t *)t->in.policy);
	t->in.policy = json_loads(json, 0, &err);
	assert_non_null(t->in.policy);
}

static int verify(struct tin *t, struct attest_output *out)
{
	return attest_snp_verifier.verify(&t->in, out);
}

static void assert_reason(const struct attest_output *out, const char *needle)
{
	if (!strstr(out->reason, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", out->reason, needle);
}

static void assert_claim_str(json_t *c, const char *key, const char *want)
{
	json_t *v = json_object_get(c, key);
	if (!json_is_string(v))
		fail_msg("claim %s missing", key);
	assert_string_equal(json_string_value(v), want);
}

static void assert_claim_int(json_t *c, const char *key, long long want)
{
	json_t *v = json_object_get(c, key);
	if (!json_is_integer(v))
		fail_msg("claim %s missing", key);
	assert_int_equal(json_integer_value(v), want);
}

static void assert_tcb(json_t *c, const char *key, int bl, int tee, int snp, int ucode,
		       const char *raw)
{
	json_t *t = json_object_get(c, key);
	assert_non_null(t);
	assert_claim_int(t, "bootloader", bl);
	assert_claim_int(t, "tee", tee);
	assert_claim_int(t, "snp", snp);
	assert_claim_int(t, "microcode", ucode);
	assert_claim_str(t, "raw", raw);
}

static const char *const V1_CERTS[] = { "milan_gosevguest_vcek.der", "ask_milan.pem", "ark_milan.pem",
					NULL };
static const char *const V2_CERTS[] = { "milan_virtee_vcek.der", "ask_milan.pem", "ark_milan.pem",
					NULL };
static const char *const V4_CERTS[] = { "milan_trustee_vlek.der", "asvk_milan.pem", "ark_milan.pem",
					NULL };
static const char *const V5_CERTS[] = { "milan_azure_vcek_chain.pem#0", "milan_azure_vcek_chain.pem#1",
					"milan_azure_vcek_chain.pem#2", NULL };

#define V1_MEAS "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
#define V1_CHIP "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"

static int setup(void **state)
{
	(void)state;
	snp_cache_reset();
	return 0;
}

/* ---- vectors that verify ---------------------------------------------- */

static void test_v1_gosevguest(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	int rc = verify(&t, &out);
	if (rc)
		fail_msg("rc %d: %s", rc, out.reason);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	assert_true(out.hardware);
	assert_string_equal(out.tee, "sev-snp");
	json_t *c = out.claims;
	assert_claim_str(c, "tee", "sev-snp");
	assert_claim_int(c, "version", 2);
	assert_claim_int(c, "vmpl", 0);
	assert_claim_int(c, "guest_svn", 0);
	assert_claim_str(c, "measurement", V1_MEAS);
	assert_claim_str(c, "chip_id", V1_CHIP);
	assert_claim_str(c, "report_data",
			 "0102030405000000000000000000000000000000000000000000000000000000"
			 "0000000000000000000000000000000000000000000000000000000000000000");
	assert_claim_str(c, "report_id",
			 "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a");
	assert_claim_str(c, "report_id_ma",
			 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
	assert_tcb(c, "reported_tcb", 2, 0, 5, 68, "0x4405000000000002");
	assert_tcb(c, "current_tcb", 2, 0, 5, 68, "0x4405000000000002");
	assert_tcb(c, "committed_tcb", 2, 0, 5, 68, "0x4405000000000002");
	assert_tcb(c, "launch_tcb", 2, 0, 5, 68, "0x4405000000000002");
	assert_claim_str(c, "policy", "0x00000000000b0000");
	json_t *pf = json_object_get(c, "policy_flags");
	assert_true(json_is_true(json_object_get(pf, "debug")));
	assert_true(json_is_true(json_object_get(pf, "smt")));
	assert_true(json_is_false(json_object_get(pf, "migrate_ma")));
	assert_true(json_is_false(json_object_get(pf, "single_socket")));
	assert_claim_str(c, "host_data",
			 "0000000000000000000000000000000000000000000000000000000000000000");
	assert_claim_str(c, "family_id", "00000000000000000000000000000000");
	assert_claim_str(c, "image_id", "00000000000000000000000000000000");
	assert_claim_str(c, "platform_info", "0x0000000000000001");
	json_t *fw = json_object_get(c, "current_firmware");
	assert_claim_int(fw, "major", 1);
	assert_claim_int(fw, "minor", 49);
	assert_claim_int(fw, "build", 3);
	assert_claim_str(c, "signing_key", "vcek");
	assert_claim_str(c, "product", "milan");
	assert_claim_str(c, "product_name", "Milan-B0");
	assert_null(json_object_get(c, "cpuid"));
	attest_output_free(&out);

	/* The same again comes from the chain cache and gives the same answer. */
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	/* go-sev-guest's own verification time works too. */
	t.in.now_unix = 1663981200;
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);
	input_free(&t);
}

static void test_v2_virtee(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_virtee_report.bin", V2_CERTS);
	int rc = verify(&t, &out);
	if (rc)
		fail_msg("rc %d: %s", rc, out.reason);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	json_t *c = out.claims;
	assert_claim_int(c, "version", 2);
	assert_claim_int(c, "vmpl", 0);
	assert_claim_str(c, "policy", "0x0000000000030000");
	assert_claim_str(c, "report_data",
			 "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
			 "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd");
	assert_claim_str(c, "measurement",
			 "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d"
			 "3e1a0dc39b2c60bd95b9c480cd81841f");
	assert_claim_str(c, "chip_id",
			 "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
			 "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6");
	assert_tcb(c, "reported_tcb", 3, 0, 8, 115, "0x7308000000000003");
	json_t *fw = json_object_get(c, "current_firmware");
	assert_claim_int(fw, "major", 1);
	assert_claim_int(fw, "minor", 52);
	assert_claim_int(fw, "build", 4);
	attest_output_free(&out);

	/* The full 64-byte report data as the expected binding matches. */
	uint8_t rd[64];
	assert_int_equal(hex_decode("d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
				    "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
				    rd, 64),
			 0);
	t.in.expected_report_data = rd;
	t.in.expected_len = 64;
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);
	/* Its first 32 bytes alone do not: the daemon's binding needs the rest zero. */
	t.in.expected_len = 32;
	assert_int_equal(verify(&t, &out), SS_EATTEST);
	assert_reason(&out, "report_data does not match the expected binding");
	input_free(&t);
}

static void test_v4_trustee_vlek(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_trustee_vlek_report.bin", V4_CERTS);
	int rc = verify(&t, &out);
	if (rc)
		fail_msg("rc %d: %s", rc, out.reason);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	json_t *c = out.claims;
	assert_claim_int(c, "version", 3);
	assert_claim_int(c, "vmpl", 1);
	assert_claim_str(c, "signing_key", "vlek");
	assert_claim_str(c, "policy", "0x0000000000030000");
	assert_claim_str(c, "platform_info", "0x0000000000000027");
	assert_claim_str(c, "chip_id",
			 "0000000000000000000000000000000000000000000000000000000000000000"
			 "0000000000000000000000000000000000000000000000000000000000000000");
	assert_claim_str(c, "report_data",
			 "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd5"
			 "4e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca");
	assert_claim_str(c, "measurement",
			 "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4"
			 "e8c9af857f5ceeb5a493df2a570d7bf0");
	assert_tcb(c, "reported_tcb", 4, 0, 24, 217, "0xd918000000000004");
	assert_tcb(c, "current_tcb", 4, 0, 24, 220, "0xdc18000000000004");
	assert_tcb(c, "committed_tcb", 4, 0, 24, 219, "0xdb18000000000004");
	assert_tcb(c, "launch_tcb", 4, 0, 24, 219, "0xdb18000000000004");
	json_t *cpu = json_object_get(c, "cpuid");
	assert_claim_int(cpu, "family", 0x19);
	assert_claim_int(cpu, "model", 1);
	assert_claim_int(cpu, "stepping", 1);
	json_t *fw = json_object_get(c, "current_firmware");
	assert_claim_int(fw, "major", 1);
	assert_claim_int(fw, "minor", 55);
	assert_claim_int(fw, "build", 29);
	assert_claim_str(c, "product_name", "Milan");
	assert_claim_str(c, "csp_id", "CN=cc-us-east-2.amazonaws.com");
	attest_output_free(&out);

	/* Policy: VMPL and signing-key checks. */
	set_policy(&t, "{\"vmpl\": 0, \"allowed_signing_keys\": [\"vcek\"]}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "vmpl 1 is not the required 0");
	assert_reason(&out, "; signing key vlek is not in allowed_signing_keys");
	attest_output_free(&out);
	set_policy(&t, "{\"max_vmpl\": 1, \"allowed_signing_keys\": [\"vlek\"],"
		       " \"min_tcb\": {\"bootloader\": 4, \"tee\": 0, \"snp\": 24, \"microcode\": 217}}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);
	set_policy(&t, "{\"min_tcb\": {\"microcode\": 218}}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "reported TCB microcode 217 is below the minimum 218");
	attest_output_free(&out);
	input_free(&t);
}

static void test_v4_vlek_expired_now(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_trustee_vlek_report.bin", V4_CERTS);
	/* First at a valid time, so the chain is cached; the cache must not outlive the VLEK. */
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);
	t.in.now_unix = T_2026_11_23;
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "certificate 'SEV-VLEK' expired at 2025-12-10T22:14:21Z");
	assert_null(out.claims);
	assert_int_equal(out.status, ATTEST_NONE);
	/* And before its notBefore. */
	t.in.now_unix = T_2025_06_01 - 365 * 86400;
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "certificate 'SEV-VLEK' is not valid before 2024-12-10T22:14:21Z");
	input_free(&t);
}

static void test_v5_azure(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_azure_report.bin", V5_CERTS);
	uint8_t rd[32];
	assert_int_equal(hex_decode("b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac",
				    rd, 32),
			 0);
	t.in.expected_report_data = rd;
	t.in.expected_len = 32;
	int rc = verify(&t, &out);
	if (rc)
		fail_msg("rc %d: %s", rc, out.reason);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	json_t *c = out.claims;
	assert_claim_int(c, "version", 2);
	assert_claim_int(c, "guest_svn", 5);
	assert_claim_int(c, "vmpl", 0);
	assert_claim_str(c, "policy", "0x000000000003001f");
	assert_claim_str(c, "measurement",
			 "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308"
			 "b459d5ef1a12e0c22944eb386d17c315");
	assert_claim_str(c, "chip_id",
			 "19752a447db501a32ade46428a46e92639bd3515dbb45e2e67bbcb0934ffcf1f"
			 "3e3c004ccb4a99c9fa7e4ffb09da6b324ac58acedaf679f24ba7db5f838c6cca");
	assert_claim_str(c, "report_data",
			 "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac"
			 "0000000000000000000000000000000000000000000000000000000000000000");
	assert_tcb(c, "reported_tcb", 3, 0, 8, 115, "0x7308000000000003");
	assert_claim_str(json_object_get(c, "current_tcb"), "raw", "0xd208000000000003");
	attest_output_free(&out);

	/* snp_verify_report is the entry point for reports embedded elsewhere. */
	assert_int_equal(snp_verify_report(t.report.p, t.report.n, &t.in, &out), 0);
	attest_output_free(&out);
	set_policy(&t, "{\"min_guest_svn\": 6}");
	assert_int_equal(snp_verify_report(t.report.p, t.report.n, &t.in, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "guest_svn 5 is below min_guest_svn 6");
	attest_output_free(&out);
	input_free(&t);
}

static void test_turin_chain_and_extensions(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct blob vcek = load("turin_virtee_vcek.der");
	struct blob ask = load_cert("ask_turin.pem"), ark = load_cert("ark_turin.pem");
	const uint8_t *cas[2] = { ask.p, ark.p };
	size_t lens[2] = { ask.n, ark.n };
	struct snp_cert_ext ext;
	char reason[256] = "";
	int rc = snp_cert_chain_verify(vcek.p, vcek.n, cas, lens, 2, NULL, T_2025_06_01, &ext,
				       reason, sizeof reason);
	if (rc)
		fail_msg("rc %d: %s", rc, reason);
	assert_int_equal(ext.product, SNP_PRODUCT_TURIN);
	assert_string_equal(ext.product_name, "Turin");
	assert_false(ext.is_vlek);
	assert_int_equal(ext.hwid_len, 8);
	assert_memory_equal(ext.hwid, "\x1e\x55\x0a\x8e\xe5\xcf\x9f\x4d", 8);
	assert_true(ext.tcb.has_fmc);
	assert_int_equal(ext.tcb.fmc, 0);
	assert_int_equal(ext.tcb.microcode, 9);
	assert_int_equal(ext.tcb.bootloader, 0);
	assert_int_equal(ext.tcb.tee, 0);
	assert_int_equal(ext.tcb.snp, 0);

	/* The Turin TCB layout: fmc byte0, bl byte1, tee byte2, snp byte3, ucode byte7. */
	struct snp_tcb tcb;
	snp_tcb_decode(SNP_PRODUCT_TURIN, 0x0900000004030201ull, &tcb);
	assert_true(tcb.has_fmc);
	assert_int_equal(tcb.fmc, 1);
	assert_int_equal(tcb.bootloader, 2);
	assert_int_equal(tcb.tee, 3);
	assert_int_equal(tcb.snp, 4);
	assert_int_equal(tcb.microcode, 9);
	/* A synthetic Turin report: TCB and the 8-byte hwID against CHIP_ID[0..8]. */
	struct snp_report r;
	memset(&r, 0, sizeof r);
	r.reported_tcb = 0x0900000000000000ull;
	memcpy(r.chip_id, ext.hwid, 8);
	assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), 0);
	r.reported_tcb = 0x0900000000000001ull; /* fmc 1 */
	assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), SS_EAUTH);
	assert_non_null(strstr(reason, "fmcSPL 0 does not match REPORTED_TCB fmc 1"));

	/* Turin VCEK against the Milan roots. */
	struct blob mask = load_cert("ask_milan.pem"), mark = load_cert("ark_milan.pem");
	const uint8_t *mcas[2] = { mask.p, mark.p };
	size_t mlens[2] = { mask.n, mark.n };
	assert_int_equal(snp_cert_chain_verify(vcek.p, vcek.n, mcas, mlens, 2, NULL, T_2025_06_01,
					       &ext, reason, sizeof reason),
			 SS_EAUTH);
	assert_non_null(strstr(reason, "product Turin but the supplied root is ARK-Milan"));
	free(vcek.p);
	free(ask.p);
	free(ark.p);
	free(mask.p);
	free(mark.p);
}

/* ---- rejections ----------------------------------------------------------- */

static void test_reject_flipped_body_virtee(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_virtee_report.bin", V2_CERTS);
	t.report.p[21] ^= 0x80; /* virtee's milan_report_invalid */
	assert_int_equal(verify(&t, &out), SS_ECRYPTO);
	assert_reason(&out, "VCEK signature over the report does not verify");
	assert_null(out.claims);
	input_free(&t);
}

static void test_reject_flipped_signature(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.report.p[0x2a0 + 5] ^= 0x01;
	assert_int_equal(verify(&t, &out), SS_ECRYPTO);
	assert_reason(&out, "VCEK signature over the report does not verify");
	input_free(&t);
	/* A non-zero byte above the 48-byte field is malformed. */
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.report.p[0x2a0 + 72 + 60] = 1;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "non-zero bytes above the P-384 field size");
	input_free(&t);
	/* VLEK report: the reason names the VLEK. */
	input_init(&t, "milan_trustee_vlek_report.bin", V4_CERTS);
	t.report.p[0x50] ^= 0x01;
	assert_int_equal(verify(&t, &out), SS_ECRYPTO);
	assert_reason(&out, "VLEK signature over the report does not verify");
	input_free(&t);
}

/* Flips one byte in the subject's "Santa Clara" (the second occurrence) of a DER cert. */
static void flip_subject_byte(struct blob *b)
{
	int seen = 0;
	for (size_t i = 0; i + 11 <= b->n; i++) {
		if (!memcmp(b->p + i, "Santa Clara", 11) && ++seen == 2) {
			b->p[i + 10] ^= 0x01;
			return;
		}
	}
	fail_msg("subject locality not found");
}

/* Flips the last byte of a DER certificate's serial number (inside the signed part). */
static void flip_serial_byte(struct blob *b)
{
	assert_true(b->n > 20);
	assert_int_equal(b->p[0], 0x30);
	assert_int_equal(b->p[1], 0x82);
	assert_int_equal(b->p[4], 0x30);
	assert_int_equal(b->p[5], 0x82);
	assert_memory_equal(b->p + 8, "\xa0\x03\x02\x01\x02\x02", 6);
	size_t len = b->p[14];
	assert_true(len > 0 && len < 0x80 && 15 + len < b->n);
	b->p[15 + len - 1] ^= 0x01;
}

static void test_reject_flipped_vcek(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	flip_subject_byte(&t.owned[0]);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "certificate 'SEV-VCEK' is not signed by 'SEV-Milan': its signature does not verify");
	input_free(&t);
}

static void test_reject_flipped_ask_and_ark(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	flip_serial_byte(&t.owned[1]);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "certificate 'SEV-Milan' is not signed by 'ARK-Milan'");
	input_free(&t);

	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.owned[2].p[t.owned[2].n - 10] ^= 0x01; /* inside the ARK's signature */
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "root certificate 'ARK-Milan' (sha256 ");
	assert_reason(&out, "is not a pinned AMD ARK");
	input_free(&t);

	/* Without any ARK. */
	static const char *const no_ark[] = { "milan_gosevguest_vcek.der", "ask_milan.pem", NULL };
	input_init(&t, "milan_gosevguest_report.bin", no_ark);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no ARK-Milan");
	input_free(&t);
	/* Without the ASK. */
	static const char *const no_ask[] = { "milan_gosevguest_vcek.der", "ark_milan.pem", NULL };
	input_init(&t, "milan_gosevguest_report.bin", no_ask);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no certificate 'SEV-Milan' that issued 'SEV-VCEK'");
	input_free(&t);
	/* VLEK through the ASK instead of the ASVK. */
	static const char *const vlek_ask[] = { "milan_trustee_vlek.der", "ask_milan.pem",
						"ark_milan.pem", NULL };
	input_init(&t, "milan_trustee_vlek_report.bin", vlek_ask);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no certificate 'SEV-VLEK-Milan' that issued 'SEV-VLEK'");
	input_free(&t);
}

static void test_reject_milan_vcek_genoa_roots(void **state)
{
	(void)state;
	NEED_VECTORS();
	static const char *const certs[] = { "milan_gosevguest_vcek.der", "ask_genoa.pem",
					     "ark_genoa.pem", NULL };
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", certs);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "wrong chain: the VCEK is for product Milan but the supplied root is ARK-Genoa");
	input_free(&t);
	/* Genoa ASK with the Milan ARK: the ASK does not issue this VCEK. */
	static const char *const mixed[] = { "milan_gosevguest_vcek.der", "ask_genoa.pem",
					     "ark_milan.pem", NULL };
	input_init(&t, "milan_gosevguest_report.bin", mixed);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no certificate 'SEV-Milan' that issued 'SEV-VCEK'");
	input_free(&t);
}

static void test_reject_synthetic_vceks(void **state)
{
	(void)state;
	NEED_VECTORS();
	static const char *const names[] = { "negative_synthetic_vcek_legacy_hwid.der",
					     "negative_synthetic_vcek_octetstring_hwid.der" };
	for (size_t i = 0; i < 2; i++) {
		const char *certs[] = { names[i], "ask_milan.pem", "ark_milan.pem", NULL };
		struct tin t;
		struct attest_output out;
		input_init(&t, "milan_gosevguest_report.bin", certs);
		assert_int_equal(verify(&t, &out), SS_EAUTH);
		assert_reason(&out, "certificate 'SEV-VCEK' is not signed by 'SEV-Milan': its signature does not verify");
		input_free(&t);
	}
	/* Their extensions, parsed without trust: raw 64-byte hwID vs a wrapped one. */
	struct snp_cert_ext ext;
	char reason[256];
	struct blob b = load(names[0]);
	assert_int_equal(snp_cert_ext_parse(b.p, b.n, &ext, reason, sizeof reason), 0);
	assert_int_equal(ext.hwid_len, 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(ext.hwid[i], i);
	free(b.p);
	b = load(names[1]);
	assert_int_equal(snp_cert_ext_parse(b.p, b.n, &ext, reason, sizeof reason), SS_EPARSE);
	assert_non_null(strstr(reason, "hwID extension is 66 bytes"));
	free(b.p);
}

static void test_reject_binding(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	uint8_t nonce[5] = { 1, 2, 3, 4, 5 };
	t.in.expected_report_data = nonce;
	t.in.expected_len = sizeof nonce;
	assert_int_equal(verify(&t, &out), 0); /* CLI nonce: prefix, rest zero */
	attest_output_free(&out);
	nonce[4] = 6;
	assert_int_equal(verify(&t, &out), SS_EATTEST);
	assert_reason(&out, "report_data does not match the expected binding");
	uint8_t binding[32] = { 1, 2, 3, 4, 5 };
	t.in.expected_report_data = binding;
	t.in.expected_len = 32;
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);
	binding[31] = 1;
	assert_int_equal(verify(&t, &out), SS_EATTEST);
	uint8_t big[65] = { 0 };
	t.in.expected_report_data = big;
	t.in.expected_len = 65;
	assert_int_equal(verify(&t, &out), SS_EATTEST);
	assert_reason(&out, "1..64 bytes");
	input_free(&t);
}

static void test_reject_tcb_and_chip_mismatch(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.report.p[0x186] = 4; /* SNP SPL of REPORTED_TCB: 5 -> 4 (also breaks the signature) */
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "VCEK snpSPL 5 does not match REPORTED_TCB snp 4");
	input_free(&t);

	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.report.p[0x1a0 + 63] ^= 0x01;
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "VCEK hwID does not match the report's CHIP_ID");
	input_free(&t);

	/* The comparison itself, on the real VCEK and report. */
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	struct snp_report r;
	struct snp_cert_ext ext;
	char reason[256];
	assert_int_equal(snp_report_parse(t.report.p, t.report.n, &r, reason, sizeof reason), 0);
	assert_int_equal(snp_cert_ext_parse(t.owned[0].p, t.owned[0].n, &ext, reason, sizeof reason), 0);
	assert_int_equal(ext.tcb.bootloader, 2);
	assert_int_equal(ext.tcb.snp, 5);
	assert_int_equal(ext.tcb.microcode, 68);
	assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), 0);
	/* CURRENT_TCB is not what the VCEK certifies: changing it changes nothing here. */
	r.current_tcb = 0xff050000000000ffull;
	assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), 0);
	static const struct {
		int byte;
		const char *want;
	} cases[] = {
		{ 0, "VCEK blSPL 2 does not match REPORTED_TCB bootloader 3" },
		{ 1, "VCEK teeSPL 0 does not match REPORTED_TCB tee 1" },
		{ 6, "VCEK snpSPL 5 does not match REPORTED_TCB snp 6" },
		{ 7, "VCEK ucodeSPL 68 does not match REPORTED_TCB microcode 69" },
	};
	uint64_t orig = r.reported_tcb;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		r.reported_tcb = orig + (1ull << (8 * cases[i].byte));
		assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), SS_EAUTH);
		if (!strstr(reason, cases[i].want))
			fail_msg("reason \"%s\" lacks \"%s\"", reason, cases[i].want);
	}
	/* Bytes 2..5 are reserved in the Milan layout and not part of any SPL. */
	r.reported_tcb = orig | 0x0000000000ff0000ull;
	assert_int_equal(snp_cert_matches_report(&ext, &r, reason, sizeof reason), 0);
	input_free(&t);
}

static void test_reject_key_kind_mismatch(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_trustee_vlek_report.bin", V1_CERTS);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "the report is signed with the VLEK but the certificate is a VCEK");
	input_free(&t);
	/* Key selector 2 is neither. */
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.report.p[0x48] |= 2 << 2;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "signing key selector 2");
	input_free(&t);
	/* No certificate at all. */
	input_init(&t, "milan_gosevguest_report.bin", NULL);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no VCEK certificate");
	input_free(&t);
}

static void test_reject_malformed(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	t.in.evidence_len = SNP_REPORT_LEN - 1;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "1183 bytes, expected exactly 1184");
	uint8_t *longer = xcalloc(1, SNP_REPORT_LEN + 1);
	memcpy(longer, t.report.p, SNP_REPORT_LEN);
	t.in.evidence = longer;
	t.in.evidence_len = SNP_REPORT_LEN + 1;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	free(longer);
	t.in.evidence = t.report.p;
	t.in.evidence_len = SNP_REPORT_LEN;
	t.report.p[0] = 4;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "version 4 is not supported");
	t.report.p[0] = 2;
	t.report.p[0x34] = 2;
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "signature_algo 2");
	t.report.p[0x34] = 1;
	t.lens[0] -= 1; /* truncated DER */
	assert_int_equal(verify(&t, &out), SS_EPARSE);
	assert_reason(&out, "certificate 0 is not valid DER");
	input_free(&t);
}

/* ---- policy ---------------------------------------------------------------- */

static void test_policy(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);

	set_policy(&t, "{\"measurement\": []}");
	assert_int_equal(verify(&t, &out), SS_ECONFIG);
	assert_reason(&out, "unknown sev-snp policy key 'measurement'");
	set_policy(&t, "{\"min_tcb\": {\"ucode\": 1}}");
	assert_int_equal(verify(&t, &out), SS_ECONFIG);
	assert_reason(&out, "unknown sev-snp min_tcb key 'ucode'");
	set_policy(&t, "{\"measurements\": [\"abcd\"]}");
	assert_int_equal(verify(&t, &out), SS_ECONFIG);
	assert_reason(&out, "'measurements' has an invalid value");
	set_policy(&t, "{\"vmpl\": 4}");
	assert_int_equal(verify(&t, &out), SS_ECONFIG);

	/* Vector 1's guest policy allows debugging. */
	set_policy(&t, "{\"allow_debug\": false}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "the guest policy 0xb0000 allows debugging but allow_debug is false");
	assert_non_null(out.claims);
	attest_output_free(&out);
	set_policy(&t, "{}"); /* default: allow_debug false */
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	attest_output_free(&out);

	set_policy(&t, "{\"allow_debug\": true, \"measurements\": [\"" V1_MEAS "\"], \"vmpl\": 0,"
		       " \"host_data\": \"0000000000000000000000000000000000000000000000000000000000000000\","
		       " \"min_tcb\": {\"bootloader\": 2, \"snp\": 5, \"microcode\": 68}, \"min_guest_svn\": 0}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);

	set_policy(&t, "{\"allow_debug\": true, \"measurements\": [\"7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f\"]}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "measurement " V1_MEAS " is not in the allow-list");
	attest_output_free(&out);

	/* Several failures are all listed. */
	set_policy(&t, "{\"min_tcb\": {\"snp\": 8},"
		       " \"id_key_digest\": \"" V1_MEAS "\"}");
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_reason(&out, "reported TCB snp 5 is below the minimum 8; the guest policy");
	assert_reason(&out, "; id_key_digest does not match the policy");
	attest_output_free(&out);
	input_free(&t);
}

/* ---- collateral cache ------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const struct blob *b)
{
	char *path = xasprintf("%s/%s", dir, name);
	assert_int_equal(file_write_atomic(path, b->p, b->n, 0644), 0);
	free(path);
}

static void test_collateral_dir(void **state)
{
	(void)state;
	NEED_VECTORS();
	char dir[64];
	fx_tmpdir(dir, sizeof dir, "snp-coll");
	char *sub = xasprintf("%s/amd/milan", dir);
	char *vsub = xasprintf("%s/amd/vcek", dir);
	assert_int_equal(dir_ensure(sub, 0755), 0);
	assert_int_equal(dir_ensure(vsub, 0755), 0);
	struct blob ark = load("ark_milan.pem"), ask = load("ask_milan.pem");
	struct blob vcek = load("milan_gosevguest_vcek.der"), gark = load("ark_genoa.pem");
	write_file(sub, "ark.pem", &ark);
	write_file(sub, "ask.pem", &ask);
	write_file(vsub, V1_CHIP "-4405000000000002.der", &vcek);

	struct tin t;
	struct attest_output out;
	input_init(&t, "milan_gosevguest_report.bin", NULL);
	t.in.collateral_dir = dir;
	int rc = verify(&t, &out);
	if (rc)
		fail_msg("rc %d: %s", rc, out.reason);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);

	/* The VCEK in the input, ASK/ARK from the cache (Genoa roots in the input lose). */
	static const char *const genoa[] = { "milan_gosevguest_vcek.der", "ask_genoa.pem", NULL };
	input_free(&t);
	input_init(&t, "milan_gosevguest_report.bin", genoa);
	t.in.collateral_dir = dir;
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);

	/* A wrong ARK in the cache is refused. */
	snp_cache_reset();
	write_file(sub, "ark.pem", &gark);
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "is not the pinned ARK-Milan");
	input_free(&t);

	/* A VLEK needs the ASVK: the cache has only the ASK. */
	write_file(sub, "ark.pem", &ark);
	static const char *const vlek[] = { "milan_trustee_vlek.der", NULL };
	input_init(&t, "milan_trustee_vlek_report.bin", vlek);
	t.in.collateral_dir = dir;
	assert_int_equal(verify(&t, &out), SS_EAUTH);
	assert_reason(&out, "no certificate 'SEV-VLEK-Milan' that issued 'SEV-VLEK'");
	struct blob asvk = load("asvk_milan.pem");
	write_file(sub, "asvk.pem", &asvk);
	assert_int_equal(verify(&t, &out), 0);
	attest_output_free(&out);
	input_free(&t);

	fx_rmtree(dir);
	free(sub);
	free(vsub);
	free(ark.p);
	free(ask.p);
	free(asvk.p);
	free(vcek.p);
	free(gark.p);
}

/* ---- threads ------------------------------------------------------------- */

static void *verify_thread(void *arg)
{
	struct tin *t = arg;
	for (int i = 0; i < 10; i++) {
		struct attest_output out;
		if (verify(t, &out) != 0 || out.status != ATTEST_AFFIRMING)
			return (void *)1;
		attest_output_free(&out);
		if (i == 5)
			snp_cache_reset();
	}
	return NULL;
}

static void test_concurrent_verify(void **state)
{
	(void)state;
	NEED_VECTORS();
	struct tin t[4];
	pthread_t th[4];
	input_init(&t[0], "milan_gosevguest_report.bin", V1_CERTS);
	input_init(&t[1], "milan_virtee_report.bin", V2_CERTS);
	input_init(&t[2], "milan_trustee_vlek_report.bin", V4_CERTS);
	input_init(&t[3], "milan_azure_report.bin", V5_CERTS);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &t[i]), 0);
	for (int i = 0; i < 4; i++) {
		void *res = (void *)1;
		assert_int_equal(pthread_join(th[i], &res), 0);
		assert_null(res);
		input_free(&t[i]);
	}
}

/* ---- attester -------------------------------------------------------------- */

static void test_attester_roundtrip(void **state)
{
	(void)state;
	NEED_VECTORS();
	uint8_t rd[ATTEST_REPORT_DATA_LEN];
	for (int i = 0; i < ATTEST_REPORT_DATA_LEN; i++)
		rd[i] = (uint8_t)(0xa0 + i);
	struct snp_report_req req;
	memset(&req, 0xee, sizeof req);
	snp_attester_build_request(rd, 2, &req);
	assert_memory_equal(req.user_data, rd, 32);
	for (int i = 32; i < 64; i++)
		assert_int_equal(req.user_data[i], 0);
	assert_int_equal(req.vmpl, 2);
	for (int i = 0; i < 28; i++)
		assert_int_equal(req.rsvd[i], 0);

	/* A MSG_REPORT_RSP around vector 1's report. */
	struct tin t;
	input_init(&t, "milan_gosevguest_report.bin", V1_CERTS);
	struct snp_report_resp resp;
	memset(&resp, 0, sizeof resp);
	resp.data[4] = SNP_REPORT_LEN & 0xff;
	resp.data[5] = SNP_REPORT_LEN >> 8;
	memcpy(resp.data + SNP_RESP_REPORT_OFFSET, t.report.p, SNP_REPORT_LEN);
	uint8_t report[SNP_REPORT_LEN];
	uint32_t fw = 99;
	char reason[160];
	assert_int_equal(snp_attester_parse_response(resp.data, sizeof resp.data, report, &fw, reason,
						     sizeof reason),
			 0);
	assert_int_equal(fw, 0);
	assert_memory_equal(report, t.report.p, SNP_REPORT_LEN);
	struct attest_output out;
	t.in.evidence = report;
	uint8_t nonce[5] = { 1, 2, 3, 4, 5 };
	t.in.expected_report_data = nonce;
	t.in.expected_len = 5;
	assert_int_equal(verify(&t, &out), 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	attest_output_free(&out);

	/* Firmware error, wrong size, short buffer. */
	resp.data[0] = 0x16;
	assert_int_equal(snp_attester_parse_response(resp.data, sizeof resp.data, report, &fw, reason,
						     sizeof reason),
			 SS_EIO);
	assert_int_equal(fw, 0x16);
	resp.data[0] = 0;
	resp.data[4] = 0xa1; /* report_size 1185 */
	assert_int_equal(snp_attester_parse_response(resp.data, sizeof resp.data, report, &fw, reason,
						     sizeof reason),
			 SS_EPARSE);
	resp.data[4] = SNP_REPORT_LEN & 0xff;
	assert_int_equal(snp_attester_parse_response(resp.data, SNP_RESP_REPORT_OFFSET + 100, report,
						     &fw, reason, sizeof reason),
			 SS_EPARSE);
	input_free(&t);
}

static void test_attester_no_device(void **state)
{
	(void)state;
	if (access(SNP_GUEST_DEVICE, F_OK) == 0)
		skip(); /* a real SEV-SNP guest */
	uint8_t rd[ATTEST_REPORT_DATA_LEN] = { 0 };
	uint8_t *ev = NULL;
	size_t len = 0;
	assert_int_equal(attest_snp_attester.evidence(rd, &ev, &len), SS_ENOSYS);
	assert_null(ev);
	assert_string_equal(attest_snp_attester.name, "sev-snp");
	assert_string_equal(attest_snp_verifier.name, "sev-snp");
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_v1_gosevguest, setup),
		cmocka_unit_test_setup(test_v2_virtee, setup),
		cmocka_unit_test_setup(test_v4_trustee_vlek, setup),
		cmocka_unit_test_setup(test_v4_vlek_expired_now, setup),
		cmocka_unit_test_setup(test_v5_azure, setup),
		cmocka_unit_test_setup(test_turin_chain_and_extensions, setup),
		cmocka_unit_test_setup(test_reject_flipped_body_virtee, setup),
		cmocka_unit_test_setup(test_reject_flipped_signature, setup),
		cmocka_unit_test_setup(test_reject_flipped_vcek, setup),
		cmocka_unit_test_setup(test_reject_flipped_ask_and_ark, setup),
		cmocka_unit_test_setup(test_reject_milan_vcek_genoa_roots, setup),
		cmocka_unit_test_setup(test_reject_synthetic_vceks, setup),
		cmocka_unit_test_setup(test_reject_binding, setup),
		cmocka_unit_test_setup(test_reject_tcb_and_chip_mismatch, setup),
		cmocka_unit_test_setup(test_reject_key_kind_mismatch, setup),
		cmocka_unit_test_setup(test_reject_malformed, setup),
		cmocka_unit_test_setup(test_policy, setup),
		cmocka_unit_test_setup(test_collateral_dir, setup),
		cmocka_unit_test_setup(test_concurrent_verify, setup),
		cmocka_unit_test_setup(test_attester_roundtrip, setup),
		cmocka_unit_test_setup(test_attester_no_device, setup),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	snp_cache_reset();
	return rc;
}
