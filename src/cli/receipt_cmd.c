/*
 * receipt_cmd.c - `seeswarm receipt verify RECEIPT... --ca CA.pem` checks task
 * receipts offline: canonical form, the signer certificate's chain to a CA
 * certificate in CA.pem, the certificate CN against the receipt's node_id,
 * and the signature. Each receipt gets a line: "receipt OK: PATH" on stdout
 * or "receipt INVALID: PATH: why" on stderr. Exits 0 only when every receipt
 * is valid, 1 when one is not, 2 on a usage error or an unreadable CA file.
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
	"usage: seeswarm receipt verify RECEIPT... --ca CA.pem [--print]\n"
	"\n"
	"Verifies task receipts offline, one line each, and exits 0 only when every\n"
	"one is valid. CA.pem holds the swarm CA certificate (or, for a receipt from\n"
	"`task run-local` without a node certificate, the ephemeral self-signed\n"
	"certificate it wrote). --print writes each verified receipt body (canonical\n"
	"JSON, one line) to stdout instead of its OK line.\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

/* Verifies the receipt at path against ca_pem and prints its line. Returns true when it is valid. */
static bool verify_one(const char *path, const char *ca_pem, size_t ca_len, bool print)
{
	char *data = NULL, *body = NULL;
	size_t len = 0;
	char why[256] = "";
	bool ok = false;
	int rc = file_read(path, EXEC_RECEIPT_MAX, &data, &len);
	if (rc) {
		fprintf(stderr, "receipt INVALID: %s: cannot read it: %s\n", path, ss_strerror(rc));
		goto out;
	}
	if (exec_receipt_verify(data, len, ca_pem, ca_len, why, sizeof(why), &body) != 0) {
		fprintf(stderr, "receipt INVALID: %s: %s\n", path, why);
		goto out;
	}
	if (print)
		printf("%s\n", body);
	else
		printf("receipt OK: %s\n", path);
	ok = true;
out:
	free(data);
	free(body);
	return ok;
}

static int verify_main(int argc, char **argv)
{
	const char *ca = NULL;
	bool print = false;
	char *ca_pem = NULL;
	size_t ca_len = 0, n_paths = 0;
	const char **paths = xcalloc((size_t)argc, sizeof(*paths));
	int ret = 2;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			ret = usage(stdout, 0);
			goto out;
		}
		if (!strcmp(argv[i], "--print")) {
			print = true;
		} else if (!strcmp(argv[i], "--ca") && i + 1 < argc) {
			ca = argv[++i];
		} else if (!strncmp(argv[i], "--ca=", 5)) {
			ca = argv[i] + 5;
		} else if (argv[i][0] != '-') {
			paths[n_paths++] = argv[i];
		} else {
			ret = usage(stderr, 2);
			goto out;
		}
	}
	if (!n_paths || !ca) {
		ret = usage(stderr, 2);
		goto out;
	}
	int rc = file_read(ca, 1 << 20, &ca_pem, &ca_len);
	if (rc) {
		fprintf(stderr, "error: cannot read the CA file %s: %s\n", ca, ss_strerror(rc));
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < n_paths; i++)
		if (!verify_one(paths[i], ca_pem, ca_len, print))
			ret = 1;
out:
	free(paths);
	free(ca_pem);
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
