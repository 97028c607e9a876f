/*
 * fuzz_blobstore.c - blob files on disk are hostile input: a reader must
 * return the exact plaintext or SS_ECRYPTO, never crash or return wrong data.
 *
 * Each input is used twice: as the raw content of a blob file (headers,
 * lengths), and as plaintext that is stored, then damaged at offsets the
 * input chooses, then read back.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "data/blobstore.h"

static struct blobstore *bs;
static char dir[64];

static void init(void)
{
	uint8_t key[BLOBSTORE_KEY_LEN] = {1, 2, 3};
	snprintf(dir, sizeof dir, "/tmp/ss-fuzzblob-XXXXXX");
	if (!mkdtemp(dir) || blobstore_open(&bs, dir, key, 0) != 0)
		abort();
	log_init("fuzz", LOG_ERROR);
}

static char *path_of(const uint8_t digest[SHA256_LEN])
{
	char hex[65];
	hex_encode(digest, SHA256_LEN, hex);
	char *sub = xasprintf("%s/%.2s", dir, hex);
	(void)dir_ensure(sub, 0700);
	free(sub);
	return xasprintf("%s/%.2s/%s", dir, hex, hex);
}

/* Reads the whole blob; aborts if it returns bytes that differ from want. */
static void read_back(const uint8_t digest[SHA256_LEN], const uint8_t *want, size_t want_len)
{
	struct blob_reader *r;
	uint64_t size;
	if (blobstore_read_open(bs, digest, &r, &size) != 0)
		return;
	uint8_t buf[4096];
	size_t at = 0, got = 0;
	int rc;
	while ((rc = blob_reader_read(r, buf, sizeof buf, &got)) == 0 && got > 0) {
		if (want && (at + got > want_len || memcmp(buf, want + at, got) != 0))
			abort();
		at += got;
	}
	if (rc == 0 && want && at != want_len)
		abort();
	blob_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!bs)
		init();
	/* 1. The input as a blob file. */
	uint8_t digest[SHA256_LEN] = {0};
	if (size >= 56)
		memcpy(digest, data + 24, SHA256_LEN); /* where the header keeps the digest */
	char *path = path_of(digest);
	if (file_write_atomic(path, data, size, 0600) == 0) {
		(void)blobstore_has(bs, digest, NULL);
		read_back(digest, NULL, 0);
		(void)blobstore_delete(bs, digest);
	}
	free(path);

	/* 2. The input as plaintext, stored, damaged, read back. */
	struct blob_writer *w;
	if (blobstore_write_begin(bs, NULL, 0, &w) != 0)
		abort();
	if (blob_writer_write(w, data, size) != 0 || blob_writer_commit(w, digest) != 0)
		abort();
	read_back(digest, data, size);
	if (size >= 4) {
		path = path_of(digest);
		int fd = open(path, O_RDWR);
		if (fd >= 0) {
			off_t end = lseek(fd, 0, SEEK_END);
			off_t at = end > 0 ? (off_t)((data[0] | data[1] << 8) % end) : 0;
			uint8_t b = 0;
			if (pread(fd, &b, 1, at) == 1) {
				b ^= (uint8_t)(data[2] | 1);
				if (pwrite(fd, &b, 1, at) != 1)
					abort();
			}
			if (data[3] & 1)
				(void)ftruncate(fd, end - (data[3] >> 1));
			close(fd);
		}
		read_back(digest, data, size);
		free(path);
	}
	(void)blobstore_delete(bs, digest);
	return 0;
}
