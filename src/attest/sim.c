/*
 * sim.c - the insecure simulated evidence format, for development only.
 *
 * Evidence is the 8-byte magic "SSSIM001" followed by the 32-byte report
 * data. It proves nothing about the machine: anyone can produce it. It does
 * prove that the peer saw the nonce and holds the TLS key, because the report
 * data is bound to both, so the handshake exercises the same binding check
 * the hardware formats use. The verifier marks results hardware=false, and
 * the manager accepts sim only with --insecure-sim-attestation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"
#include "core/core.h"

static int sim_verify(const struct attest_input *in, struct attest_output *out)
{
	memset(out, 0, sizeof *out);
	snprintf(out->tee, sizeof out->tee, "sim");
	out->hardware = false;
	if (in->evidence_len != ATTEST_SIM_LEN || memcmp(in->evidence, ATTEST_SIM_MAGIC, 8) != 0) {
		snprintf(out->reason, sizeof out->reason,
			 "sim evidence must be %d bytes starting with %s", ATTEST_SIM_LEN,
			 ATTEST_SIM_MAGIC);
		return SS_EPARSE;
	}
	char hex[2 * ATTEST_REPORT_DATA_LEN + 1];
	hex_encode(in->evidence + 8, ATTEST_REPORT_DATA_LEN, hex);
	out->claims = json_pack("{s:s, s:s, s:b}", "report_data", hex, "tee", "sim", "insecure", 1);
	if (in->expected_report_data &&
	    (in->expected_len != ATTEST_REPORT_DATA_LEN ||
	     !ct_equal(in->evidence + 8, in->expected_report_data, ATTEST_REPORT_DATA_LEN))) {
		snprintf(out->reason, sizeof out->reason,
			 "report data does not match SHA-256(nonce || TLS key): stale nonce or a different TLS key");
		return SS_EATTEST;
	}
	out->status = ATTEST_AFFIRMING;
	snprintf(out->reason, sizeof out->reason, "insecure simulated attestation (no hardware)");
	return 0;
}

static int sim_evidence(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **evidence,
			size_t *len)
{
	static const uint8_t magic[8] = {'S', 'S', 'S', 'I', 'M', '0', '0', '1'};
	uint8_t *p = xmalloc(ATTEST_SIM_LEN);
	memcpy(p, magic, sizeof magic);
	memcpy(p + 8, report_data, ATTEST_REPORT_DATA_LEN);
	*evidence = p;
	*len = ATTEST_SIM_LEN;
	return 0;
}

const struct attest_verifier attest_sim_verifier = {
	.name = "sim",
	.hardware = false,
	.verify = sim_verify,
};

const struct attester attest_sim_attester = {
	.name = "sim",
	.evidence = sim_evidence,
};
