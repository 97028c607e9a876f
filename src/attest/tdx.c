/*
 * tdx.c - the "tdx" verifier: Intel TDX DCAP quotes v4 and v5 (TDX 1.0 and
 * 1.5 bodies), verified by dcap.c with collateral from
 * <collateral_dir>/intel/ (docs/attestation-dcap.md).
 */
#include "attest/dcap.h"

static int tdx_verify(const struct attest_input *in, struct attest_output *out)
{
	return dcap_verify_dir(in, true, out);
}

const struct attest_verifier attest_tdx_verifier = {
	.name = "tdx",
	.hardware = true,
	.verify = tdx_verify,
};
