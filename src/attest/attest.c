/* attest.c - the verifier/attester registry and the binding rule. */
#include <string.h>

#include "attest/attest.h"
#include "attest/tsm.h"
#include "core/core.h"

static const struct attest_verifier *const verifiers[] = {
	&attest_sim_verifier,
	&attest_tpm_verifier,
	&attest_snp_verifier,
	&attest_tdx_verifier,
	&attest_sgx_verifier,
};

static const struct attester *const attesters[] = {
	&attest_sim_attester,
	&attest_snp_attester,
	&attest_tdx_attester,
};

void attest_binding(const uint8_t *nonce, size_t nonce_len, const uint8_t *spki_der,
		    size_t spki_len, uint8_t out[ATTEST_REPORT_DATA_LEN])
{
	struct buf b;
	buf_init(&b);
	buf_append(&b, nonce, nonce_len);
	buf_append(&b, spki_der, spki_len);
	sha256(b.data, b.len, out);
	buf_free(&b);
}

const struct attest_verifier *attest_verifier_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(verifiers); i++)
		if (!strcmp(verifiers[i]->name, name))
			return verifiers[i];
	return NULL;
}

const struct attester *attest_attester_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(attesters); i++)
		if (!strcmp(attesters[i]->name, name))
			return attesters[i];
	return NULL;
}

void attest_output_free(struct attest_output *out)
{
	if (!out)
		return;
	json_decref(out->claims);
	out->claims = NULL;
}

const char *attest_status_name(enum attest_status s)
{
	switch (s) {
	case ATTEST_AFFIRMING:
		return "affirming";
	case ATTEST_WARNING:
		return "warning";
	case ATTEST_CONTRAINDICATED:
		return "contraindicated";
	default:
		return "none";
	}
}
