/*
 * tsm.h - the Linux configfs-tsm report interface
 * (/sys/kernel/config/tsm/report, Documentation/ABI/testing/configfs-tsm),
 * through which a TDX guest (provider "tdx_guest") asks for a quote. The
 * "tdx" attester is built on it.
 *
 * A report is requested by creating an entry directory, writing the 64
 * bytes of report data to its "inblob", and reading the quote from
 * "outblob". The kernel counts writes in "generation": the value read
 * after the write must still hold after the read, or another writer raced
 * on the same entry and the quote may carry someone else's report data.
 */
#ifndef SS_TSM_H
#define SS_TSM_H

#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"

#define TSM_REPORT_ROOT "/sys/kernel/config/tsm/report"
#define TSM_MAX_OUTBLOB (64u * 1024u)
#define TSM_INBLOB_LEN 64 /* report data as the TDX module takes it */

/*
 * Runs one request on an existing entry directory: checks that "provider"
 * names want_provider, writes report_data padded with zeros to 64 bytes to
 * "inblob", reads "outblob"
 * (at most TSM_MAX_OUTBLOB bytes) into *out (caller frees) and checks
 * "generation". Returns 0, SS_ENOSYS (not a configfs-tsm entry), SS_EATTEST
 * (wrong provider, or a racing writer) or SS_EIO, with a reason in why.
 */
int tsm_report_entry(const char *entry, const char *want_provider,
		     const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **out, size_t *len,
		     char *why, size_t whylen);

/* The "tdx" attester: a TDX quote through configfs-tsm (entry created and removed). */
extern const struct attester attest_tdx_attester;

#endif
