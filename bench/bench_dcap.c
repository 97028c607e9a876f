/*
 * bench_dcap.c - DCAP quote verifications per second on one core: the TDX
 * Set D quote (dcap-qvl, v4, full collateral) at 2025-07-19T10:00:34Z and
 * the SGX vector 1 quote (dcap-qvl, v3, full collateral) at
 * 2025-07-19T10:01:17Z. The first call verifies and caches the PCK chain and
 * the collateral signatures; every timed iteration then pays for quote
 * parsing, the cache lookups (SHA-256 over the PEM chain and collateral),
 * two ECDSA P-256 verifications (quote and QE report), the TCB evaluation
 * over the parsed JSON and the claims. Also prints the uncached rate.
 * Prints tdx_verifications_per_second=N and sgx_verifications_per_second=N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/dcap.h"
#include "core/core.h"

static void load(const char *dir, const char *sub, const char *name, struct dcap_blob *b)
{
	char *path = xasprintf("%s/%s/%s", dir, sub, name), *data = NULL;
	size_t len = 0;
	if (file_read(path, 1 << 20, &data, &len)) {
		fprintf(stderr, "bench_dcap: cannot read %s (set SEESWARM_VECTORS)\n", path);
		exit(1);
	}
	free(path);
	b->data = (uint8_t *)data;
	b->len = len;
}

static uint64_t run(const struct attest_input *in, const struct dcap_collateral *c, bool tdx,
		    uint64_t ms_budget, bool reset)
{
	struct attest_output out;
	uint64_t start = time_mono_ms(), n = 0;
	while (time_mono_ms() - start < ms_budget) {
		for (int k = 0; k < 20; k++, n++) {
			if (reset)
				dcap_cache_reset();
			if (dcap_verify(in, c, tdx, &out) != 0) {
				fprintf(stderr, "bench_dcap: verification failed: %s\n", out.reason);
				exit(1);
			}
			attest_output_free(&out);
		}
	}
	uint64_t ms = time_mono_ms() - start;
	return ms ? n * 1000 / ms : n;
}

static void bench(const char *dir, const char *sub, const char *names[6], const char *quote,
		  int64_t now, bool tdx)
{
	struct dcap_collateral c;
	struct dcap_blob q;
	memset(&c, 0, sizeof c);
	load(dir, sub, quote, &q);
	struct dcap_blob *slots[6] = { &c.root_ca, &c.root_ca_crl, &c.pck_crl, &c.tcb_info,
				       &c.qe_identity, &c.tcb_signing_chain };
	for (int i = 0; i < 6; i++)
		load(dir, sub, names[i], slots[i]);
	struct attest_input in = { .evidence = q.data, .evidence_len = q.len, .now_unix = now };
	uint64_t uncached = run(&in, &c, tdx, 500, true);
	dcap_cache_reset();
	uint64_t cached = run(&in, &c, tdx, 2000, false);
	printf("%s_uncached_verifications_per_second=%llu\n", sub, (unsigned long long)uncached);
	printf("%s_verifications_per_second=%llu\n", sub, (unsigned long long)cached);
	dcap_collateral_free(&c);
	free(q.data);
}

int main(void)
{
	const char *env = getenv("SEESWARM_VECTORS");
	const char *dir = env ? env : "../shared/vectors";
	const char *tdx[6] = { "intel_sgx_root_ca.pem", "dcapqvl_tdx_root_ca_crl.der",
			       "dcapqvl_tdx_pck_crl.der", "dcapqvl_tdx_tcbinfo.json",
			       "dcapqvl_tdx_qeidentity.json", "intel_sgx_tcb_signing_2025_chain.pem" };
	const char *sgx[6] = { "intel_sgx_root_ca.pem", "dcapqvl_sgx_root_ca_crl.der",
			       "dcapqvl_sgx_pck_crl.der", "dcapqvl_sgx_tcbinfo.json",
			       "dcapqvl_sgx_qeidentity.json", "intel_sgx_tcb_signing_2025_chain.pem" };
	bench(dir, "tdx", tdx, "dcapqvl_tdx_quote.dat", 1752919234LL, true);
	bench(dir, "sgx", sgx, "dcapqvl_sgx_quote.dat", 1752919277LL, false);
	return 0;
}
