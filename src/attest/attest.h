/*
 * attest.h - evidence verification and generation behind vtables.
 *
 * A verifier appraises one evidence format. It checks the evidence's
 * integrity and its binding: the report data (or TPM qualifying data) must
 * equal attest_binding(nonce, spki of the TLS peer). Verification time is a
 * parameter so tests can pin it. Verifiers are pure functions of their
 * inputs and may run on any thread.
 *
 * An attester produces evidence inside the agent for given report data.
 */
#ifndef SS_ATTEST_H
#define SS_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTEST_REPORT_DATA_LEN 32

enum attest_status {
	ATTEST_NONE = 0,
	ATTEST_AFFIRMING,
	ATTEST_WARNING,
	ATTEST_CONTRAINDICATED,
};

struct attest_result {
	enum attest_status status;
	char tee[16];            /* "sim", "tpm", "sev-snp", "tdx", "sgx" */
	bool hardware;           /* false for sim: never satisfies a hardware policy */
	char reason[256];        /* why not affirming, or a note */
	uint8_t claims_digest[32];
	int64_t issued_ms;
	int64_t expires_ms;
};

struct attest_evidence {
	const uint8_t *data;
	size_t len;
	const uint8_t *const *certs; /* DER certificates, n_certs of them */
	const size_t *cert_lens;
	size_t n_certs;
};

struct attest_verifier {
	const char *name;  /* evidence type name */
	bool hardware;
	/*
	 * Verifies evidence against expected report data at time now_unix.
	 * Returns 0 and fills out (status affirming/warning/contraindicated with
	 * a reason) when the evidence could be appraised, or a negative SS_E*
	 * code when it is malformed (out->reason then says why).
	 */
	int (*verify)(const struct attest_evidence *ev,
		      const uint8_t expected[ATTEST_REPORT_DATA_LEN], int64_t now_unix,
		      struct attest_result *out);
};

struct attester {
	const char *name;
	/* Produces evidence for report_data; *evidence is malloc'd, caller frees. */
	int (*evidence)(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **evidence,
			size_t *len);
};

/* Computes SHA-256(nonce || spki_der). */
void attest_binding(const uint8_t *nonce, size_t nonce_len, const uint8_t *spki_der,
		    size_t spki_len, uint8_t out[ATTEST_REPORT_DATA_LEN]);

/* Looks up a verifier or attester by evidence type name; NULL if unknown. */
const struct attest_verifier *attest_verifier_find(const char *name);
const struct attester *attest_attester_find(const char *name);

const char *attest_status_name(enum attest_status s);

/* The insecure development format. */
extern const struct attest_verifier attest_sim_verifier;
extern const struct attester attest_sim_attester;
#define ATTEST_SIM_MAGIC "SSSIM001"
#define ATTEST_SIM_LEN (8 + ATTEST_REPORT_DATA_LEN)

#endif
