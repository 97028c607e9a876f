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

#include <jansson.h>

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
	char reason[512];        /* why not affirming (all reasons, "; "-joined), or a note */
	uint8_t claims_digest[32]; /* SHA-256 of the canonical claims JSON */
	int64_t issued_ms;
	int64_t expires_ms;
};

/*
 * Everything a verifier needs. Evidence and certificates are untrusted bytes.
 * expected_report_data, when non-NULL, is the binding the evidence must carry
 * (SHA-256(nonce || TLS SPKI) in the daemon; a nonce given to the offline CLI);
 * when NULL the binding is not checked (offline inspection only).
 */
struct attest_input {
	const uint8_t *evidence;
	size_t evidence_len;
	const uint8_t *const *certs; /* extra DER certificates sent with the evidence */
	const size_t *cert_lens;
	size_t n_certs;
	const uint8_t *expected_report_data;
	size_t expected_len;
	int64_t now_unix;            /* verification time: tests pin it, the daemon uses now */
	const char *collateral_dir;  /* offline cache of vendor roots, CRLs, TCB info; may be NULL */
	const json_t *policy;        /* this format's policy object, or NULL for no reference values */
};

/*
 * A verifier's answer. claims is a JSON object the verifier creates (owned
 * by the output; free with attest_output_free). status is affirming when the
 * evidence verified and satisfied the policy, warning when it verified but a
 * policy-tolerated issue remains (e.g. TCB status SWHardeningNeeded),
 * contraindicated when it verified but fails the policy.
 */
struct attest_output {
	enum attest_status status;
	bool hardware;
	char tee[16];
	json_t *claims;
	char reason[512];
};

void attest_output_free(struct attest_output *out);

struct attest_verifier {
	const char *name;  /* evidence type name */
	bool hardware;
	/*
	 * Verifies in->evidence. Returns 0 and fills out when the evidence could
	 * be appraised (any status), or a negative SS_E* code when it is malformed,
	 * its signature or chain does not verify, or its binding is wrong;
	 * out->reason then names the precise failure. Pure function of its input;
	 * safe on any thread.
	 */
	int (*verify)(const struct attest_input *in, struct attest_output *out);
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
extern const struct attest_verifier attest_tpm_verifier; /* attest/tpm.h */
extern const struct attest_verifier attest_snp_verifier; /* attest/snp.h */
extern const struct attest_verifier attest_tdx_verifier; /* attest/dcap.h */
extern const struct attest_verifier attest_sgx_verifier; /* attest/dcap.h */
extern const struct attester attest_sim_attester;
extern const struct attester attest_snp_attester; /* attest/snp.h */
#define ATTEST_SIM_MAGIC "SSSIM001"
#define ATTEST_SIM_LEN (8 + ATTEST_REPORT_DATA_LEN)

#endif
