/*
 * test_tpm_swtpm.c - the full TPM round trip against a real software TPM:
 * scripts/swtpm-test-ca.sh provisions swtpm with an EK certificate from a
 * private test CA; the attester (tss2 ESAPI over the swtpm TCTI) and the
 * verifier then run credential activation, measured start, quote and
 * appraisal. Skipped with a reason when swtpm or tss2 is missing.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "attest/attest.h"
#include "attest/tpm.h"
#include "core/core.h"
#include "fixture.h"

static struct {
	char dir[64];
	pid_t pid;
	char tcti[96];
	char collateral[128];
	char untrusted[128];
	const char *skip;
} T;

static bool have(const char *tool)
{
	char *cmd = xasprintf("command -v %s >/dev/null 2>&1", tool);
	int rc = system(cmd);
	free(cmd);
	return rc == 0;
}

/* Waits up to 3 s until 127.0.0.1:port accepts; false if the child died. */
static bool wait_port(unsigned port, pid_t pid)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 300; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return false;
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
		close(fd);
		if (ok)
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(10000);
	}
	return false;
}

static int group_setup(void **state)
{
	memset(&T, 0, sizeof T);
	setenv("TSS2_LOG", "all+none", 1);
	if (!have("swtpm") || !have("swtpm_setup") || !have("swtpm_localca")) {
		T.skip = "swtpm, swtpm_setup or swtpm_localca not installed (apt swtpm swtpm-tools)";
		return 0;
	}
	if (access("scripts/swtpm-test-ca.sh", X_OK) != 0) {
		T.skip = "scripts/swtpm-test-ca.sh not found: run from the repository root";
		return 0;
	}
	if (!fx_tmpdir_try(T.dir, sizeof T.dir, "swtpm"))
		return -1;
	char *cmd = xasprintf("scripts/swtpm-test-ca.sh setup %s", T.dir);
	int rc = system(cmd);
	free(cmd);
	if (rc != 0) {
		print_message("swtpm-test-ca.sh setup failed (%d)\n", rc);
		return -1;
	}
	/* Start swtpm as our child on a random port pair; retry if it is taken. */
	for (int attempt = 0; attempt < 5 && !T.pid; attempt++) {
		unsigned port = 20000 + rand_below(20000) * 2;
		char portstr[16];
		snprintf(portstr, sizeof portstr, "%u", port);
		pid_t pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0) {
			execl("scripts/swtpm-test-ca.sh", "swtpm-test-ca.sh", "run", T.dir, portstr,
			      (char *)NULL);
			_exit(127);
		}
		if (wait_port(port, pid)) {
			T.pid = pid;
			snprintf(T.tcti, sizeof T.tcti, "swtpm:host=127.0.0.1,port=%u", port);
		} else {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
	if (!T.pid)
		return -1;
	snprintf(T.collateral, sizeof T.collateral, "%s/collateral", T.dir);
	snprintf(T.untrusted, sizeof T.untrusted, "%s/untrusted", T.dir);
	return 0;
}

static int group_teardown(void **state)
{
	if (T.pid > 0) {
		kill(T.pid, SIGTERM);
		waitpid(T.pid, NULL, 0);
	}
	if (T.dir[0])
		fx_rmtree_try(T.dir);
	return 0;
}

static void hash_exe(uint8_t out[32])
{
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(file_read("/proc/self/exe", 256u << 20, &data, &len), 0);
	sha256(data, len, out);
	free(data);
}

static int verify(const uint8_t *ev, size_t len, const uint8_t binding[32], const char *dir,
		  const char *policy, struct attest_output *out)
{
	json_t *pol = policy ? json_loads(policy, 0, NULL) : NULL;
	struct attest_input in = {.evidence = ev, .evidence_len = len,
				  .expected_report_data = binding, .expected_len = 32,
				  .now_unix = time(NULL), .collateral_dir = dir, .policy = pol};
	int rc = attest_tpm_verifier.verify(&in, out);
	json_decref(pol);
	return rc;
}

static void test_swtpm_round_trip(void **state)
{
	struct tpm_attester *h = NULL;
	struct tpm_ak_challenge ch;
	struct attest_output out;
	char reason[256];
	uint8_t *id = NULL, *ev = NULL, secret[64];
	size_t idl, evl, sl = 0;
	const uint8_t *cert, *akpub;
	size_t cert_len, akpub_len;
	int64_t now = time(NULL);
	if (T.skip) {
		print_message("skipping: %s\n", T.skip);
		skip();
	}
	tpm_trust_reset();
	int rc = tpm_attester_open(T.tcti, &h);
	if (rc == SS_ENOSYS) {
		print_message("skipping: tss2 libraries or swtpm TCTI unavailable\n");
		skip();
	}
	assert_int_equal(rc, 0);
	assert_int_equal(tpm_attester_ek_cert(h, &cert, &cert_len), 0);
	assert_true(cert_len > 300);
	assert_int_equal(tpm_attester_ak_public(h, &akpub, &akpub_len), 0);

	/* Credential activation: the EK certificate chains to the test CA. */
	assert_int_equal(tpm_attester_identity(h, &id, &idl), 0);
	rc = tpm_ak_challenge_new(id, idl, T.collateral, now, true, &ch, reason, sizeof reason);
	if (rc)
		print_message("challenge: %s\n", reason);
	assert_int_equal(rc, 0);
	assert_int_equal(tpm_attester_activate(h, ch.blob.id_object, ch.blob.id_object_len,
					       ch.blob.enc_secret, ch.blob.enc_secret_len, secret,
					       sizeof secret, &sl),
			 0);
	assert_int_equal(sl, 32);
	assert_memory_equal(secret, ch.secret, 32);

	/* A credential made for another name does not activate. */
	struct tpm_cred_blob wrong;
	uint8_t name[TPM_MAX_NAME];
	size_t nl = 0;
	assert_int_equal(tpm_public_name(akpub, akpub_len, name, &nl), 0);
	name[5] ^= 1;
	const uint8_t *ekpub;
	size_t ekpub_len;
	assert_int_equal(tpm_attester_ek_public(h, &ekpub, &ekpub_len), 0);
	assert_int_equal(tpm_make_credential(ekpub, ekpub_len, name, nl, ch.secret, &wrong), 0);
	assert_int_equal(tpm_attester_activate(h, wrong.id_object, wrong.id_object_len,
					       wrong.enc_secret, wrong.enc_secret_len, secret,
					       sizeof secret, &sl),
			 SS_EAUTH);
	/* Quotes before the verifier trusts the AK are refused. */
	uint8_t binding[32];
	assert_int_equal(tpm_attester_quote(h, (const uint8_t *)"0123456789abcdef0123456789abcdef",
					    NULL, &ev, &evl),
			 0);
	assert_int_equal(verify(ev, evl, (const uint8_t *)"0123456789abcdef0123456789abcdef",
				T.collateral, NULL, &out),
			 SS_EAUTH);
	assert_non_null(strstr(out.reason, "credential activation"));
	attest_output_free(&out);
	free(ev);
	ev = NULL;
	assert_int_equal(tpm_ak_challenge_finish(&ch, ch.secret, 32, now, reason, sizeof reason), 0);

	/* Measured start into PCR 23, then an extra extend of PCR 16. */
	const char cfg[] = "manager = 127.0.0.1:7000\n";
	assert_int_equal(tpm_attester_measure_start(h, cfg, sizeof cfg - 1), 0);
	uint8_t dexe[32], dcfg[32], expect23[32], d16[32], expect16[32];
	hash_exe(dexe);
	sha256(cfg, sizeof cfg - 1, dcfg);
	const uint8_t *const chain[2] = {dexe, dcfg};
	assert_int_equal(tpm_pcr_replay(TPM_ALG_SHA256, chain, 2, expect23), 0);
	memset(d16, 0x42, 32);
	assert_int_equal(tpm_attester_extend(h, 16, d16), 0);

	/* Quote over a real binding: SHA-256(nonce || SPKI). */
	uint8_t nonce[32], spki[91];
	rand_bytes(nonce, sizeof nonce);
	rand_bytes(spki, sizeof spki);
	attest_binding(nonce, sizeof nonce, spki, sizeof spki, binding);
	struct tpm_pcr_selection sel;
	assert_int_equal(tpm_pcr_selection_parse("sha256:0-7,16,23", &sel), 0);
	assert_int_equal(tpm_attester_quote(h, binding, &sel, &ev, &evl), 0);

	/* SS_TPM_DUMP=DIR writes the identity and evidence (fuzz seeds). */
	if (getenv("SS_TPM_DUMP")) {
		char *p1 = xasprintf("%s/identity.bin", getenv("SS_TPM_DUMP"));
		char *p2 = xasprintf("%s/evidence.bin", getenv("SS_TPM_DUMP"));
		assert_int_equal(file_write_atomic(p1, id, idl, 0644), 0);
		assert_int_equal(file_write_atomic(p2, ev, evl, 0644), 0);
		free(p1);
		free(p2);
	}
	char hex23[65], hex16[65];
	hex_encode(expect23, 32, hex23);
	char *policy = xasprintf("{\"pcrs\": {\"sha256\": {\"23\": [\"%s\"]}}}", hex23);
	rc = verify(ev, evl, binding, T.collateral, policy, &out);
	if (rc || out.status != ATTEST_AFFIRMING)
		print_message("verify: %d %s\n", rc, out.reason);
	assert_int_equal(rc, 0);
	assert_int_equal(out.status, ATTEST_AFFIRMING);
	json_t *c = out.claims;
	assert_string_equal(json_string_value(json_object_get(c, "ak_trust")), "activated");
	assert_string_equal(json_string_value(json_object_get(c, "ek_cert_issuer")),
			    "CN=swtpm-localca");
	json_t *bank = json_object_get(json_object_get(c, "pcrs"), "sha256");
	assert_string_equal(json_string_value(json_object_get(bank, "23")), hex23);
	const uint8_t *const one[1] = {d16};
	/* PCR 16 was possibly extended before (state is fresh, so it starts at zero). */
	assert_int_equal(tpm_pcr_replay(TPM_ALG_SHA256, one, 1, expect16), 0);
	hex_encode(expect16, 32, hex16);
	assert_string_equal(json_string_value(json_object_get(bank, "16")), hex16);
	assert_int_equal(json_object_size(bank), 10);
	attest_output_free(&out);
	free(policy);

	/* A changed expected PCR value: contraindicated with the reason. */
	policy = xasprintf("{\"pcrs\": {\"sha256\": {\"23\": [\"%064d\"]}}}", 0);
	assert_int_equal(verify(ev, evl, binding, T.collateral, policy, &out), 0);
	assert_int_equal(out.status, ATTEST_CONTRAINDICATED);
	assert_non_null(strstr(out.reason, "PCR sha256:23 value"));
	attest_output_free(&out);
	free(policy);

	/* An old nonce: the binding no longer matches. */
	uint8_t old[32];
	attest_binding((const uint8_t *)"old nonce", 9, spki, sizeof spki, old);
	assert_int_equal(verify(ev, evl, old, T.collateral, NULL, &out), SS_EATTEST);
	assert_non_null(strstr(out.reason, "expected binding"));
	attest_output_free(&out);

	/* The EK certificate against an untrusted CA bundle. */
	assert_int_equal(verify(ev, evl, binding, T.untrusted, NULL, &out), SS_EAUTH);
	assert_non_null(strstr(out.reason, "does not chain"));
	attest_output_free(&out);
	assert_int_equal(tpm_ak_challenge_new(id, idl, T.untrusted, now, true, &ch, reason,
					      sizeof reason),
			 SS_EAUTH);

	free(ev);
	free(id);
	tpm_attester_close(h);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swtpm_round_trip),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
