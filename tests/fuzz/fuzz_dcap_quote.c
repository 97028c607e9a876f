/*
 * fuzz_dcap_quote.c - the DCAP quote parsers. The first input byte picks
 * the target:
 *   0: dcap_quote_parse on the rest;
 *   1: dcap_pck_ext_parse (a DER PCK certificate) on the rest;
 *   2: the "sgx" path of dcap_verify without collateral;
 *   3: the "tdx" path of dcap_verify without collateral.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/dcap.h"
#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[256];
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] & 3) {
	case 0: {
		struct dcap_quote q;
		if (dcap_quote_parse(p, n, &q, reason, sizeof reason) == 0) {
			/* Every pointer must lie inside the input. */
			if (q.signed_len > n || (const uint8_t *)q.pck_pem < p ||
			    (const uint8_t *)q.pck_pem + q.pck_pem_len > p + n ||
			    q.qe_auth + q.qe_auth_len > p + n)
				abort();
		}
		break;
	}
	case 1: {
		struct dcap_pck_ext ext;
		(void)dcap_pck_ext_parse(p, n, &ext, reason, sizeof reason);
		break;
	}
	default: {
		struct attest_input in = { .evidence = p, .evidence_len = n,
					   .now_unix = 1752919234 };
		struct attest_output out;
		(void)dcap_verify(&in, NULL, (data[0] & 3) == 3, &out);
		attest_output_free(&out);
		break;
	}
	}
	return 0;
}
