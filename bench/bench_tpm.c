/*
 * bench_tpm.c - TPM quote verifications per second on one core, using the
 * trustee swtpm vector (TPMS_ATTEST + TPMT_SIGNATURE, RSA-2048 AK, 24 PCRs).
 * The AK is trusted out of band for the raw vector, so every iteration pays
 * for exactly what a cached-trust verification pays: parsing, the RSA
 * signature, the binding and the PCR digest. Prints
 * tpm_verifications_per_second=N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "attest/tpm.h"
#include "core/core.h"

static uint8_t *load(const char *dir, const char *name, size_t *len)
{
	char *path = xasprintf("%s/tpm/%s", dir, name);
	char *data = NULL;
	if (file_read(path, 1 << 20, &data, len)) {
		fprintf(stderr, "bench_tpm: cannot read %s (set SEESWARM_VECTORS)\n", path);
		exit(1);
	}
	free(path);
	return (uint8_t *)data;
}

int main(void)
{
	const char *dir = getenv("SEESWARM_VECTORS") ? getenv("SEESWARM_VECTORS") : "../shared/vectors";
	size_t al, sl, kl, jl;
	uint8_t *att = load(dir, "trustee_swtpm_tpms_attest.bin", &al);
	uint8_t *sig = load(dir, "trustee_swtpm_tpmt_signature.bin", &sl);
	uint8_t *ak = load(dir, "trustee_swtpm_ak_pub.der", &kl);
	uint8_t *js = load(dir, "trustee_swtpm_evidence.json", &jl);
	json_t *root = json_loadb((const char *)js, jl, 0, NULL);
	const json_t *arr = json_object_get(json_object_get(root, "tpm_quote"), "pcrs");
	struct tpm_pcr_value pcrs[TPM_NUM_PCRS];
	uint8_t nonce[48];
	if (!arr || json_array_size(arr) != TPM_NUM_PCRS ||
	    hex_decode("a04182b506878d4f29b91ee606a71a0d3361ccf1b22db20c98adcaa537bea393ef0e41a1"
		       "8b3569ab678f1497fbc5c120",
		       nonce, sizeof nonce)) {
		fprintf(stderr, "bench_tpm: bad vector\n");
		return 1;
	}
	for (size_t i = 0; i < TPM_NUM_PCRS; i++) {
		pcrs[i].alg = TPM_ALG_SHA256;
		pcrs[i].index = (uint8_t)i;
		pcrs[i].len = 32;
		if (hex_decode(json_string_value(json_array_get(arr, i)), pcrs[i].digest, 32))
			return 1;
	}
	struct tpm_quote_input in = {.attest = att, .attest_len = al, .sig = sig, .sig_len = sl,
				     .ak_pub = ak, .ak_pub_len = kl, .pcrs = pcrs,
				     .n_pcrs = TPM_NUM_PCRS, .nonce = nonce,
				     .nonce_len = sizeof nonce};
	char reason[256];
	uint64_t start = time_mono_ms(), n = 0;
	while (time_mono_ms() - start < 2000) {
		for (int k = 0; k < 100; k++, n++)
			if (tpm_verify_quote(&in, NULL, reason, sizeof reason)) {
				fprintf(stderr, "bench_tpm: verification failed: %s\n", reason);
				return 1;
			}
	}
	uint64_t ms = time_mono_ms() - start;
	printf("tpm_verifications_per_second=%llu\n", (unsigned long long)(n * 1000 / ms));
	json_decref(root);
	free(att);
	free(sig);
	free(ak);
	free(js);
	return 0;
}
