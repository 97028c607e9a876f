/*
 * fuzz_tpm.c - the TPM evidence parsers: TPMS_ATTEST, TPM2B_PUBLIC (AK/EK
 * names and MakeCredential), the "tpm" container through the verifier, and
 * the raw quote check. The first input byte selects the target.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/tpm.h"
#include "core/core.h"

/* A fixed RSA-2048 SubjectPublicKeyInfo is not needed: the raw path is fed
 * the input itself as the key, which exercises the DER/PEM readers. */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[256];
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 5;
	data++;
	size--;
	switch (mode) {
	case 0: {
		struct tpm_quote q;
		(void)tpm_attest_parse(data, size, &q, reason, sizeof reason);
		break;
	}
	case 1: {
		uint8_t name[TPM_MAX_NAME];
		size_t nl;
		(void)tpm_public_name(data, size, name, &nl);
		break;
	}
	case 2: {
		static json_t *policy;
		struct attest_output out;
		uint8_t binding[32];
		if (!policy)
			policy = json_pack("{s:b, s:[s,s]}", "require_ek_cert", 0,
					   "allowed_hash_algs", "sha256", "sha384");
		memset(binding, 0, sizeof binding);
		struct attest_input in = {.evidence = data, .evidence_len = size,
					  .expected_report_data = size & 1 ? binding : NULL,
					  .expected_len = 32, .now_unix = 1790000000,
					  .policy = policy};
		(void)attest_tpm_verifier.verify(&in, &out);
		attest_output_free(&out);
		break;
	}
	case 3: {
		struct tpm_cred_blob blob;
		uint8_t secret[32] = {0};
		static const uint8_t name[34] = {0x00, 0x0b};
		(void)tpm_make_credential(data, size, name, sizeof name, secret, &blob);
		break;
	}
	case 4: {
		/* Split: u16 attest length, attest, then the signature; the key is
		 * the signature bytes too (rarely a valid SPKI, which is fine). */
		if (size < 2)
			break;
		size_t al = (size_t)data[0] << 8 | data[1];
		if (al > size - 2)
			break;
		struct tpm_quote_input in = {.attest = data + 2, .attest_len = al,
					     .sig = data + 2 + al, .sig_len = size - 2 - al,
					     .ak_pub = data + 2 + al, .ak_pub_len = size - 2 - al};
		(void)tpm_verify_quote(&in, NULL, reason, sizeof reason);
		break;
	}
	}
	return 0;
}
