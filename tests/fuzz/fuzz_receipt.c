/*
 * fuzz_receipt.c - offline receipt verification (canonical-form check, JSON,
 * PEM, X.509 chain, DER signature). The trust anchor is the self-signed
 * certificate that signed the seed corpus receipt (it expires a day after it
 * was made, so the chain check fails later, and the parsing before it still
 * runs).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/exec/exec.h"

static const char ca_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBZDCCAQugAwIBAgIQWGTsg7nmNEhVmwieqdU6azAKBggqhkjOPQQDAjAUMRIw\n"
	"EAYDVQQDDAlmdXp6LW5vZGUwHhcNMjYxMTIzMjI0MDU5WhcNMjYxMTI0MjI0MTU5\n"
	"WjAUMRIwEAYDVQQDDAlmdXp6LW5vZGUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AASCLMsyhZksioy3nLAm2hW+5OYsWcFsrsgxT5Kuo2+bmjpo+oxlX3zCkr6A0Bkw\n"
	"l154v88fEc43mfV8j9QqJ4D1oz8wPTAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE\n"
	"AwIHgDAdBgNVHQ4EFgQUH76q5UwP9/DZg62JtcaJt8Lm3oMwCgYIKoZIzj0EAwID\n"
	"RwAwRAIgHDMohvxg6wQ6DCNwMuejfokVfEZ861IrWaYVqmki6lsCIFM8VxeueXpi\n"
	"bds0X4zCbm6GOzPXriBNzqRbYVOSJ/yV\n"
	"-----END CERTIFICATE-----\n"
;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	char *body = NULL;
	if (exec_receipt_verify((const char *)data, size, ca_pem, sizeof(ca_pem) - 1, why,
				sizeof(why), &body) == 0 && !body)
		abort();
	free(body);
	return 0;
}
