/* tsm.c - quotes through the kernel's configfs-tsm report interface (the "tdx" attester). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest/tsm.h"
#include "core/core.h"

/* Reads a small attribute file into buf (NUL-terminated, trailing newline cut). */
static int read_attr(const char *entry, const char *name, char *buf, size_t len)
{
	char *path = xasprintf("%s/%s", entry, name);
	char *data = NULL;
	size_t n = 0;
	int rc = file_read(path, len - 1, &data, &n);
	free(path);
	if (rc)
		return rc;
	while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == ' '))
		n--;
	memcpy(buf, data, n);
	buf[n] = '\0';
	free(data);
	return 0;
}

int tsm_report_entry(const char *entry, const char *want_provider,
		     const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **out, size_t *len,
		     char *why, size_t whylen)
{
	char provider[64], gen1[32], gen2[32];
	char *inblob = xasprintf("%s/inblob", entry), *outpath = xasprintf("%s/outblob", entry);
	char *data = NULL;
	size_t n = 0;
	int fd = -1, rc;
	if (read_attr(entry, "provider", provider, sizeof provider) != 0) {
		snprintf(why, whylen, "%s is not a configfs-tsm report entry (no provider)", entry);
		rc = SS_ENOSYS;
		goto out;
	}
	if (strcmp(provider, want_provider) != 0) {
		snprintf(why, whylen, "configfs-tsm provider is \"%s\", not \"%s\"", provider,
			 want_provider);
		rc = SS_EATTEST;
		goto out;
	}
	/* TDX report data is 64 bytes: the binding, then zeros (what the verifier expects). */
	uint8_t blob[TSM_INBLOB_LEN] = {0};
	memcpy(blob, report_data, ATTEST_REPORT_DATA_LEN);
	fd = open(inblob, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, blob, sizeof blob) != (ssize_t)sizeof blob) {
		snprintf(why, whylen, "writing %s: %s", inblob, strerror(errno));
		rc = SS_EIO;
		goto out;
	}
	close(fd);
	fd = -1;
	if ((rc = read_attr(entry, "generation", gen1, sizeof gen1)) != 0) {
		snprintf(why, whylen, "reading %s/generation: %s", entry, ss_strerror(rc));
		goto out;
	}
	/* Reading outblob makes the kernel ask the TDX module (through the QE) for the quote. */
	if ((rc = file_read(outpath, TSM_MAX_OUTBLOB, &data, &n)) != 0 || n == 0) {
		snprintf(why, whylen, "reading %s: %s", outpath, rc ? ss_strerror(rc) : "empty");
		rc = SS_EIO;
		goto out;
	}
	if ((rc = read_attr(entry, "generation", gen2, sizeof gen2)) != 0) {
		snprintf(why, whylen, "reading %s/generation: %s", entry, ss_strerror(rc));
		goto out;
	}
	if (strcmp(gen1, gen2) != 0) {
		snprintf(why, whylen, "another writer used %s during the request (generation %s -> %s)",
			 entry, gen1, gen2);
		rc = SS_EATTEST;
		goto out;
	}
	*out = (uint8_t *)data;
	*len = n;
	data = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(data);
	free(inblob);
	free(outpath);
	return rc;
}

static int tdx_evidence(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **evidence,
			size_t *len)
{
	char why[256] = "";
	uint8_t r[6];
	char hex[13];
	rand_bytes(r, sizeof r);
	hex_encode(r, sizeof r, hex);
	char *entry = xasprintf("%s/seeswarm-%d-%s", TSM_REPORT_ROOT, (int)getpid(), hex);
	int rc;
	/* A private entry per request: nobody else writes its inblob. */
	if (mkdir(entry, 0700) != 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			log_error("no %s: this machine is not a TDX guest with configfs-tsm "
				  "(Linux 6.7+, CONFIG_TSM_REPORTS, configfs mounted)",
				  TSM_REPORT_ROOT);
			rc = SS_ENOSYS;
		} else {
			log_error("cannot create %s: %s", entry, strerror(errno));
			rc = (errno == EACCES || errno == EPERM) ? SS_EPERM : SS_EIO;
		}
		goto out;
	}
	rc = tsm_report_entry(entry, "tdx_guest", report_data, evidence, len, why, sizeof why);
	if (rc)
		log_error("TDX quote: %s", why);
	(void)rmdir(entry);
out:
	free(entry);
	return rc;
}

const struct attester attest_tdx_attester = {
	.name = "tdx",
	.evidence = tdx_evidence,
};
