/*
 * fuzz_dcap_collateral.c - the DCAP collateral parsers: the first byte
 * picks the target:
 *   0: dcap_collateral_import (QuoteCollateralV3 JSON, hex/PEM CRLs, PEM
 *      chains) into a scratch directory;
 *   1: dcap_verify (kind "tdx") with the rest split at 0xff bytes into the
 *      quote, TCB Info, QE Identity, TCB Signing chain and PCK CRL; with a
 *      real quote prefix this reaches the signed-JSON scanner and the CRL
 *      and PEM parsers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest/dcap.h"
#include "core/core.h"

static char scratch[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[256];
	if (size < 1)
		return 0;
	if (!scratch[0]) {
		snprintf(scratch, sizeof scratch, "/tmp/ss_fuzz_dcap_XXXXXX");
		if (!mkdtemp(scratch))
			abort();
	}
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if ((data[0] & 1) == 0) {
		char *text = xstrndup((const char *)p, n);
		(void)dcap_collateral_import(scratch, text, strlen(text), reason, sizeof reason);
		free(text);
		return 0;
	}
	/* Split the rest at 0xff bytes into quote, tcb_info, qe_identity, chain, crl. */
	struct dcap_collateral c;
	memset(&c, 0, sizeof c);
	struct dcap_blob parts[5];
	memset(parts, 0, sizeof parts);
	size_t k = 0, start = 0;
	for (size_t i = 0; i <= n && k < 5; i++) {
		if (i == n || p[i] == 0xff) {
			parts[k].data = xmalloc(i - start + 1);
			memcpy(parts[k].data, p + start, i - start);
			parts[k].len = i - start;
			k++;
			start = i + 1;
		}
	}
	c.tcb_info = parts[1];
	c.qe_identity = parts[2];
	c.tcb_signing_chain = parts[3];
	c.pck_crl = parts[4];
	struct attest_input in = { .evidence = parts[0].data, .evidence_len = parts[0].len,
				   .now_unix = 1752919234 };
	struct attest_output out;
	(void)dcap_verify(&in, &c, true, &out);
	attest_output_free(&out);
	free(parts[0].data);
	dcap_collateral_free(&c);
	return 0;
}
