/*
 * bench_snp.c - SEV-SNP report verifications per second on one core, using
 * vector 1 (go-sev-guest, Milan VCEK + ASK + ARK in the input) at
 * 2025-06-01. The first call verifies and caches the chain; every timed
 * iteration then pays for what a cached-chain verification pays: report
 * parsing, the cache lookup (SHA-256 over the input certificates), the KDS
 * extension match, one ECDSA P-384/SHA-384 verification, the binding and the
 * claims JSON. Also prints the uncached rate (chain verified every time) for
 * comparison. Prints snp_verifications_per_second=N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/snp.h"
#include "core/core.h"

static uint8_t *load(const char *dir, const char *name, size_t *len)
{
	char *path = xasprintf("%s/sev-snp/%s", dir, name);
	char *data = NULL;
	if (file_read(path, 1 << 20, &data, len)) {
		fprintf(stderr, "bench_snp: cannot read %s (set SEESWARM_VECTORS)\n", path);
		exit(1);
	}
	free(path);
	return (uint8_t *)data;
}

static uint8_t *load_pem_as_der(const char *dir, const char *name, size_t *len)
{
	size_t n = 0;
	uint8_t *pem = load(dir, name, &n);
	BIO *bio = BIO_new_mem_buf(pem, (int)n);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	int dl = x ? i2d_X509(x, &der) : -1;
	if (dl <= 0) {
		fprintf(stderr, "bench_snp: %s is not a PEM certificate\n", name);
		exit(1);
	}
	uint8_t *out = xmalloc((size_t)dl);
	memcpy(out, der, (size_t)dl);
	*len = (size_t)dl;
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	free(pem);
	return out;
}

static uint64_t run(struct attest_input *in, uint64_t ms_budget, bool reset_cache)
{
	struct attest_output out;
	uint64_t start = time_mono_ms(), n = 0;
	while (time_mono_ms() - start < ms_budget) {
		for (int k = 0; k < 20; k++, n++) {
			if (reset_cache)
				snp_cache_reset();
			if (attest_snp_verifier.verify(in, &out) || out.status != ATTEST_AFFIRMING) {
				fprintf(stderr, "bench_snp: verification failed: %s\n", out.reason);
				exit(1);
			}
			attest_output_free(&out);
		}
	}
	uint64_t ms = time_mono_ms() - start;
	return n * 1000 / (ms ? ms : 1);
}

int main(void)
{
	const char *dir = getenv("SEESWARM_VECTORS") ? getenv("SEESWARM_VECTORS") : "../shared/vectors";
	size_t rl, vl, sl, al;
	uint8_t *report = load(dir, "milan_gosevguest_report.bin", &rl);
	uint8_t *vcek = load(dir, "milan_gosevguest_vcek.der", &vl);
	uint8_t *ask = load_pem_as_der(dir, "ask_milan.pem", &sl);
	uint8_t *ark = load_pem_as_der(dir, "ark_milan.pem", &al);
	const uint8_t *certs[3] = { vcek, ask, ark };
	size_t lens[3] = { vl, sl, al };
	uint8_t nonce[5] = { 1, 2, 3, 4, 5 };
	struct attest_input in = { .evidence = report, .evidence_len = rl, .certs = certs,
				   .cert_lens = lens, .n_certs = 3, .expected_report_data = nonce,
				   .expected_len = sizeof nonce, .now_unix = 1748736000 };
	uint64_t uncached = run(&in, 1000, true);
	snp_cache_reset();
	uint64_t cached = run(&in, 2000, false);
	printf("snp_uncached_verifications_per_second=%llu\n", (unsigned long long)uncached);
	printf("snp_verifications_per_second=%llu\n", (unsigned long long)cached);
	snp_cache_reset();
	free(report);
	free(vcek);
	free(ask);
	free(ark);
	return 0;
}
