/*
 * fuzz_grant.c - hostile fetch grants and grant-key certificates: a peer's
 * BlobGet carries a grant, and Admitted a certificate, both parsed here.
 * Input: one byte n, then a node id of n % 70 bytes, a 32-byte digest, and
 * the rest as the signature; the whole input is also tried as a DER
 * certificate. Nothing may be accepted: the key is made here, at random.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "attest/ca.h"
#include "data/grant.h"

static EVP_PKEY *key;
static X509 *ca;
static struct grant_cache cache;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!key) {
		if (crypto_gen_key(&key) != 0)
			abort();
		ca = X509_new();
		if (!ca || X509_set_pubkey(ca, key) != 1)
			abort();
	}
	const unsigned char *p = data;
	X509 *cert = d2i_X509(NULL, &p, (long)size);
	if (cert && grant_cert_check(cert, ca) == 0)
		abort(); /* signed by a key only this process holds */
	X509_free(cert);
	if (size < 1)
		return 0;
	size_t nl = data[0] % 70;
	if (size < 1 + nl + SHA256_LEN)
		return 0;
	char node[72];
	memcpy(node, data + 1, nl);
	node[nl] = '\0';
	const uint8_t *digest = data + 1 + nl;
	const uint8_t *sig = digest + SHA256_LEN;
	size_t sig_len = size - 1 - nl - SHA256_LEN;
	if (grant_verify(key, digest, node, sig, sig_len) == 0 ||
	    grant_check(&cache, key, digest, node, sig, sig_len) == 0)
		abort();
	return 0;
}
