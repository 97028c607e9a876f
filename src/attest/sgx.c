/*
 * sgx.c - the "sgx" verifier: Intel SGX DCAP ECDSA quotes (v3), verified by
 * dcap.c with collateral from <collateral_dir>/intel/
 * (docs/attestation-dcap.md).
 */
#include "attest/dcap.h"

static int sgx_verify(const struct attest_input *in, struct attest_output *out)
{
	return dcap_verify_dir(in, false, out);
}

const struct attest_verifier attest_sgx_verifier = {
	.name = "sgx",
	.hardware = true,
	.verify = sgx_verify,
};
