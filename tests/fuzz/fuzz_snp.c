/*
 * fuzz_snp.c - the SEV-SNP parsers. The first input byte picks the target:
 *   0: snp_report_parse on the rest;
 *   1: snp_cert_ext_parse (DER VCEK/VLEK extensions) on the rest;
 *   2: snp_attester_parse_response on the rest;
 *   3: the whole verifier: the next 1184 bytes are the report, the remainder
 *      one DER certificate (no collateral, no policy).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/snp.h"
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
		struct snp_report r;
		if (snp_report_parse(p, n, &r, reason, sizeof reason) == 0) {
			struct snp_tcb t;
			snp_tcb_decode(SNP_PRODUCT_TURIN, r.reported_tcb, &t);
			snp_tcb_decode(SNP_PRODUCT_MILAN, r.reported_tcb, &t);
		}
		break;
	}
	case 1: {
		struct snp_cert_ext ext;
		if (snp_cert_ext_parse(p, n, &ext, reason, sizeof reason) == 0 &&
		    strlen(ext.product_name) >= sizeof ext.product_name)
			abort();
		break;
	}
	case 2: {
		uint8_t report[SNP_REPORT_LEN];
		uint32_t fw;
		(void)snp_attester_parse_response(p, n, report, &fw, reason, sizeof reason);
		break;
	}
	default: {
		if (n < SNP_REPORT_LEN)
			return 0;
		const uint8_t *certs[1] = { p + SNP_REPORT_LEN };
		size_t lens[1] = { n - SNP_REPORT_LEN };
		struct attest_input in = { .evidence = p, .evidence_len = SNP_REPORT_LEN,
					   .certs = certs, .cert_lens = lens,
					   .n_certs = lens[0] ? 1 : 0, .now_unix = 1748736000 };
		struct attest_output out;
		(void)attest_snp_verifier.verify(&in, &out);
		attest_output_free(&out);
		break;
	}
	}
	return 0;
}
