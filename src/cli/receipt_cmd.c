/*
 * receipt_cmd.c - `seeswarm receipt verify RECEIPT --ca CA.pem` checks a task
 * receipt offline: canonical form, the signer certificate's chain to a CA
 * certificate in CA.pem, the certificate CN against the receipt's node_id,
 * and the signature. Exits 0 only when the receipt is valid, 1 when it is
 * not, 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/exec/exec.h"
#include "cli/cli.h"
#include "core/core.h"

/* Entry point; the lead adds this prototype to cli/cli.h with the command table entry. */
int cli_receipt_main(int argc, char **argv);

static const char usage_text[] =
	"usage: seeswarm receipt verify RECEIPT --ca CA.pem [--print]\n"
	"\n"
	"Verifies a task receipt offline. CA.pem holds the swarm CA certificate (or,\n"
	"for a receipt from `task run-local` without a node certificate, the\n"
	"ephemeral self-signed certificate it wrote). --print writes the verified\n"
	"receipt body (canonical JSON) to stdout.\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

static int verify_main(int argc, char **argv)
{
	const char *path = NULL, *ca = NULL;
	bool print = false;
	char *data = NULL, *ca_pem = NULL, *body = NULL;
	size_t len = 0, ca_len = 0;
	char why[256] = "";
	int ret = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout, 0);
		if (!strcmp(argv[i], "--print")) {
			print = true;
		} else if (!strcmp(argv[i], "--ca") && i + 1 < argc) {
			ca = argv[++i];
		} else if (!strncmp(argv[i], "--ca=", 5)) {
			ca = argv[i] + 5;
		} else if (argv[i][0] != '-' && !path) {
			path = argv[i];
		} else {
			return usage(stderr, 2);
		}
	}
	if (!path || !ca)
		return usage(stderr, 2);
	ret = 1;
	int rc = file_read(path, EXEC_RECEIPT_MAX, &data, &len);
	if (rc) {
		fprintf(stderr, "receipt INVALID: cannot read %s: %s\n", path, ss_strerror(rc));
		goto out;
	}
	if ((rc = file_read(ca, 1 << 20, &ca_pem, &ca_len))) {
		fprintf(stderr, "error: cannot read the CA file %s: %s\n", ca, ss_strerror(rc));
		goto out;
	}
	rc = exec_receipt_verify(data, len, ca_pem, ca_len, why, sizeof(why), &body);
	if (rc) {
		fprintf(stderr, "receipt INVALID: %s\n", why);
		goto out;
	}
	if (print)
		printf("%s\n", body);
	else
		printf("receipt OK: %s\n", path);
	ret = 0;
out:
	free(data);
	free(ca_pem);
	free(body);
	return ret;
}

int cli_receipt_main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return verify_main(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return usage(stdout, 0);
	return usage(stderr, 2);
}
