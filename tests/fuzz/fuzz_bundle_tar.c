/*
 * fuzz_bundle_tar.c - unpacking hostile tar bundles. Whatever the input, the
 * unpacker must either refuse it (leaving nothing behind) or produce a tree
 * that the canonical listing accepts, and nothing may appear outside the
 * destination directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/exec/exec.h"
#include "core/core.h"

static char base[64];

static void cleanup(void)
{
	dir_remove_tree(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!base[0]) {
		snprintf(base, sizeof base, "/tmp/ss-fuzz-tar-XXXXXX");
		if (!mkdtemp(base))
			abort();
		atexit(cleanup);
	}
	char dest[96], why[256];
	snprintf(dest, sizeof dest, "%s/b", base);
	int rc = exec_bundle_unpack_tar_mem(data, size, dest, why, sizeof why);
	struct stat st;
	if (rc != 0) {
		/* A refused bundle leaves nothing behind. */
		if (lstat(dest, &st) == 0)
			abort();
	} else {
		uint8_t d[SHA256_LEN];
		struct buf canon;
		buf_init(&canon);
		size_t n = 0;
		if (exec_bundle_digest(dest, d, &canon) == 0 &&
		    exec_bundle_listing_check((const char *)canon.data, canon.len, &n) != 0)
			abort();
		buf_free(&canon);
		if (dir_remove_tree(dest) != 0)
			abort();
	}
	/* Only the destination may ever have been created below base. */
	char other[128];
	snprintf(other, sizeof other, "%s/x", base);
	if (lstat(other, &st) == 0)
		abort();
	return 0;
}
