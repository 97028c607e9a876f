/* test_blobstore.c - the encrypted content-addressed blob store: round trips, tampering, crashes. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "data/blobstore.h"
#include "fixture.h"

static char dir[64];
static char store_dir[128];
static uint8_t key[BLOBSTORE_KEY_LEN];

static int setup(void **state)
{
	(void)state;
	fx_tmpdir(dir, sizeof dir, "blob");
	snprintf(store_dir, sizeof store_dir, "%s/blobs", dir);
	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fx_rmtree(dir);
	return 0;
}

/* Deterministic test data: n bytes from a small LCG seeded with seed. */
static uint8_t *pattern(size_t n, uint32_t seed)
{
	uint8_t *p = xmalloc(n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
	return p;
}

static void put(struct blobstore *bs, const uint8_t *data, size_t n, size_t step, uint8_t digest[SHA256_LEN])
{
	struct blob_writer *w;
	assert_int_equal(blobstore_write_begin(bs, NULL, 0, &w), 0);
	for (size_t off = 0; off < n; off += step)
		assert_int_equal(blob_writer_write(w, data + off, n - off < step ? n - off : step), 0);
	assert_int_equal(blob_writer_commit(w, digest), 0);
}

/* Reads the whole blob with reads of step bytes; returns the read status. */
static int get(struct blobstore *bs, const uint8_t digest[SHA256_LEN], uint8_t **out, size_t *len,
	       size_t step)
{
	struct blob_reader *r;
	uint64_t size = 0;
	int rc = blobstore_read_open(bs, digest, &r, &size);
	if (rc)
		return rc;
	uint8_t *buf = xmalloc(size + 1);
	size_t at = 0, got;
	do {
		size_t want = step < size + 1 - at ? step : size + 1 - at;
		rc = blob_reader_read(r, buf + at, want, &got);
		at += got;
	} while (rc == 0 && got > 0);
	blob_reader_close(r);
	if (rc) {
		free(buf);
		return rc;
	}
	assert_int_equal(at, size);
	*out = buf;
	*len = at;
	return 0;
}

static char *path_of(const uint8_t digest[SHA256_LEN])
{
	char hex[65];
	hex_encode(digest, SHA256_LEN, hex);
	return xasprintf("%s/%.2s/%s", store_dir, hex, hex);
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void test_round_trip_sizes(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	const size_t sizes[] = {0, 1, 100, BLOBSTORE_CHUNK - 1, BLOBSTORE_CHUNK, BLOBSTORE_CHUNK + 1,
				3 * BLOBSTORE_CHUNK, 3 * BLOBSTORE_CHUNK + 17};
	uint64_t total = 0;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint8_t *data = pattern(sizes[i], (uint32_t)i + 1);
		uint8_t digest[SHA256_LEN], want[SHA256_LEN];
		sha256(data, sizes[i], want);
		put(bs, data, sizes[i], 1000, digest);
		assert_memory_equal(digest, want, SHA256_LEN);
		uint64_t size = 99;
		assert_true(blobstore_has(bs, digest, &size));
		assert_int_equal(size, sizes[i]);
		uint8_t *back;
		size_t len;
		assert_int_equal(get(bs, digest, &back, &len, 777), 0);
		assert_int_equal(len, sizes[i]);
		if (len)
			assert_memory_equal(back, data, len);
		total += sizes[i];
		free(back);
		free(data);
	}
	assert_int_equal(blobstore_used(bs), total);
	blobstore_close(bs);
	/* Reopening counts the same bytes. */
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	assert_int_equal(blobstore_used(bs), total);
	blobstore_close(bs);
}

static void test_at_rest_is_ciphertext(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	const char *secret = "the quick brown fox knows the launch codes";
	uint8_t digest[SHA256_LEN];
	put(bs, (const uint8_t *)secret, strlen(secret), 5, digest);
	char *path = path_of(digest);
	char *raw = NULL;
	size_t len = 0;
	assert_int_equal(file_read(path, 1 << 20, &raw, &len), 0);
	assert_null(memmem(raw, len, "launch codes", 12));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(raw);
	free(path);
	blobstore_close(bs);
}

static void test_expected_digest_and_size(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	uint8_t *data = pattern(5000, 9);
	uint8_t want[SHA256_LEN], wrong[SHA256_LEN];
	sha256(data, 5000, want);
	memcpy(wrong, want, SHA256_LEN);
	wrong[0] ^= 1;
	struct blob_writer *w;
	/* A digest mismatch is refused and leaves nothing behind. */
	assert_int_equal(blobstore_write_begin(bs, wrong, 0, &w), 0);
	assert_int_equal(blob_writer_write(w, data, 5000), 0);
	assert_int_equal(blob_writer_commit(w, NULL), SS_EINTEGRITY);
	assert_false(blobstore_has(bs, wrong, NULL));
	assert_false(blobstore_has(bs, want, NULL));
	/* More bytes than announced is refused at once. */
	assert_int_equal(blobstore_write_begin(bs, want, 4000, &w), 0);
	assert_int_equal(blob_writer_write(w, data, 3000), 0);
	assert_int_equal(blob_writer_write(w, data + 3000, 2000), SS_ELIMIT);
	assert_int_equal(blob_writer_commit(w, NULL), SS_ELIMIT);
	/* The right digest commits; committing it again keeps one copy. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(blobstore_write_begin(bs, want, 5000, &w), 0);
		assert_int_equal(blob_writer_write(w, data, 5000), 0);
		assert_int_equal(blob_writer_commit(w, NULL), 0);
	}
	assert_int_equal(blobstore_used(bs), 5000);
	/* The temp directory is empty again. */
	char *tmp = xasprintf("%s/tmp", store_dir);
	char *cmd = xasprintf("test -z \"$(ls -A '%s')\"", tmp);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(tmp);
	free(data);
	blobstore_close(bs);
}

static void test_tampering_is_detected(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	size_t n = 2 * BLOBSTORE_CHUNK + 100;
	uint8_t *data = pattern(n, 3);
	uint8_t digest[SHA256_LEN];
	put(bs, data, n, 4096, digest);
	char *path = path_of(digest);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	/* A flipped bit anywhere (header, each chunk, each tag) is caught. */
	const off_t spots[] = {0, 9, 17, 30, 60, 100, 88 + 5, 88 + BLOBSTORE_CHUNK + 3,
			       88 + BLOBSTORE_CHUNK + 16 + 7, st.st_size - 1, st.st_size - 20};
	for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
		flip_byte(path, spots[i]);
		uint8_t *back = NULL;
		size_t len;
		int rc = get(bs, digest, &back, &len, 65536);
		assert_int_equal(rc, SS_ECRYPTO);
		flip_byte(path, spots[i]);
	}
	/* Truncation and extension are caught. */
	assert_int_equal(truncate(path, st.st_size - 16), 0);
	uint8_t *back = NULL;
	size_t len;
	assert_int_equal(get(bs, digest, &back, &len, 65536), SS_ECRYPTO);
	assert_false(blobstore_has(bs, digest, NULL));
	free(path);
	free(data);
	blobstore_close(bs);
}

static void test_swapped_files_and_wrong_key(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	uint8_t a[SHA256_LEN], b[SHA256_LEN];
	put(bs, (const uint8_t *)"alpha", 5, 5, a);
	put(bs, (const uint8_t *)"bravo", 5, 5, b);
	char *pa = path_of(a), *pb = path_of(b);
	char *cmd = xasprintf("cp '%s' '%s'", pa, pb);
	assert_int_equal(system(cmd), 0);
	uint8_t *back = NULL;
	size_t len;
	assert_int_equal(get(bs, b, &back, &len, 64), SS_ECRYPTO);
	assert_int_equal(get(bs, a, &back, &len, 64), 0);
	free(back);
	blobstore_close(bs);
	/* Another node's key opens nothing. */
	uint8_t other[BLOBSTORE_KEY_LEN];
	memcpy(other, key, sizeof other);
	other[31] ^= 0x80;
	assert_int_equal(blobstore_open(&bs, store_dir, other, 0), 0);
	assert_int_equal(get(bs, a, &back, &len, 64), SS_ECRYPTO);
	blobstore_close(bs);
	free(cmd);
	free(pa);
	free(pb);
}

static void test_seek_and_partial_reads(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	size_t n = 5 * BLOBSTORE_CHUNK + 3;
	uint8_t *data = pattern(n, 5);
	uint8_t digest[SHA256_LEN];
	put(bs, data, n, n, digest);
	struct blob_reader *r;
	assert_int_equal(blobstore_read_open(bs, digest, &r, NULL), 0);
	const uint64_t offs[] = {n - 1, 0, BLOBSTORE_CHUNK - 2, 3 * BLOBSTORE_CHUNK + 5, n};
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		uint8_t buf[10];
		size_t got = 0;
		assert_int_equal(blob_reader_seek(r, offs[i]), 0);
		assert_int_equal(blob_reader_read(r, buf, sizeof buf, &got), 0);
		size_t want = n - offs[i] < sizeof buf ? n - offs[i] : sizeof buf;
		assert_int_equal(got, want);
		if (got)
			assert_memory_equal(buf, data + offs[i], got);
	}
	assert_int_equal(blob_reader_seek(r, n + 1), SS_EINVAL);
	blob_reader_close(r);
	free(data);
	blobstore_close(bs);
}

static void test_import_export_list_delete(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	char *src = xasprintf("%s/src.bin", dir), *dst = xasprintf("%s/dst.bin", dir);
	size_t n = 300000;
	uint8_t *data = pattern(n, 11);
	assert_int_equal(file_write_atomic(src, data, n, 0644), 0);
	uint8_t digest[SHA256_LEN], want[SHA256_LEN];
	uint64_t size = 0;
	assert_int_equal(blobstore_import(bs, src, digest, &size), 0);
	sha256(data, n, want);
	assert_memory_equal(digest, want, SHA256_LEN);
	assert_int_equal(size, n);
	assert_int_equal(blobstore_export(bs, digest, dst), 0);
	assert_int_equal(blobstore_export(bs, digest, dst), SS_EEXIST);
	char *back = NULL;
	size_t len = 0;
	assert_int_equal(file_read(dst, n + 1, &back, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(back, data, n);
	assert_int_equal(blobstore_import(bs, "/nonexistent/file", digest, NULL), SS_ENOTFOUND);
	assert_int_equal(blobstore_delete(bs, want), 0);
	assert_false(blobstore_has(bs, want, NULL));
	assert_int_equal(blobstore_delete(bs, want), SS_ENOTFOUND);
	assert_int_equal(blobstore_used(bs), 0);
	free(back);
	free(data);
	free(src);
	free(dst);
	blobstore_close(bs);
}

static int list_cb(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	(void)digest;
	uint64_t *acc = arg;
	acc[0]++;
	acc[1] += size;
	return acc[0] == acc[2] ? 7 : 0;
}

static void test_list_and_stop(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	for (uint32_t i = 0; i < 20; i++) {
		uint8_t *data = pattern(i * 10, i);
		uint8_t d[SHA256_LEN];
		put(bs, data, i * 10, 7, d);
		free(data);
	}
	/* Foreign files in the store are ignored. */
	char *junk = xasprintf("%s/ab/not-a-blob", store_dir);
	char *cmd = xasprintf("mkdir -p '%s/ab' && echo x > '%s'", store_dir, junk);
	assert_int_equal(system(cmd), 0);
	uint64_t acc[3] = {0, 0, 1000};
	assert_int_equal(blobstore_list(bs, list_cb, acc), 0);
	assert_int_equal(acc[0], 20);
	assert_int_equal(acc[1], 1900);
	/* A nonzero return from the callback stops the walk and is returned. */
	uint64_t stop[3] = {0, 0, 5};
	assert_int_equal(blobstore_list(bs, list_cb, stop), 7);
	assert_int_equal(stop[0], 5);
	free(junk);
	free(cmd);
	blobstore_close(bs);
}

/* Sets a blob file's modification time to secs seconds ago. */
static void age(const uint8_t digest[SHA256_LEN], int secs)
{
	char *p = path_of(digest);
	struct timespec ts[2];
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= secs;
	ts[1] = ts[0];
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	free(p);
}

struct keep_set {
	const uint8_t *digest; /* the one blob claimed, or NULL */
	size_t asked;
};

static bool keep_cb(void *arg, const uint8_t digest[SHA256_LEN])
{
	struct keep_set *k = arg;
	k->asked++;
	return k->digest && !memcmp(k->digest, digest, SHA256_LEN);
}

/* Sweeps every shard; returns the blobs deleted and adds their bytes to *bytes. */
static size_t sweep_all(struct blobstore *bs, int64_t before_ms, struct keep_set *k, uint64_t *bytes)
{
	size_t n = 0;
	for (unsigned s = 0; s < 256; s++)
		n += blobstore_sweep(bs, s, before_ms, keep_cb, k, bytes);
	return n;
}

static void test_sweep_deletes_old_unclaimed_blobs(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 0), 0);
	uint8_t *a = pattern(100, 1), *b = pattern(200, 2), *c = pattern(300, 3);
	uint8_t da[SHA256_LEN], db[SHA256_LEN], dc[SHA256_LEN];
	put(bs, a, 100, 100, da);
	put(bs, b, 200, 100, db);
	put(bs, c, 300, 100, dc);
	int64_t cutoff = time_wall_ms() - 60000; /* "a minute ago" */
	/* Fresh blobs stay, and keep() is not even asked about them. */
	struct keep_set k = {NULL, 0};
	uint64_t bytes = 0;
	assert_int_equal(sweep_all(bs, cutoff, &k, &bytes), 0);
	assert_int_equal(k.asked, 0);
	/* Two hours old: a goes, b is claimed and stays; c was written again and stays. */
	age(da, 7200);
	age(db, 7200);
	age(dc, 7200);
	put(bs, c, 300, 100, dc); /* already stored: the commit counts as a write */
	k.digest = db;
	assert_int_equal(sweep_all(bs, cutoff, &k, &bytes), 1);
	assert_int_equal(k.asked, 2);
	assert_int_equal(bytes, 100);
	assert_false(blobstore_has(bs, da, NULL));
	assert_true(blobstore_has(bs, db, NULL));
	assert_true(blobstore_has(bs, dc, NULL));
	assert_int_equal(blobstore_used(bs), 500);
	/* Unclaimed, b goes too; c stays until it is old. */
	k.digest = NULL;
	assert_int_equal(sweep_all(bs, cutoff, &k, &bytes), 1);
	assert_int_equal(bytes, 300);
	assert_true(blobstore_has(bs, dc, NULL));
	assert_int_equal(blobstore_used(bs), 300);
	/* A shard number wraps modulo 256, and a missing shard is no error. */
	age(dc, 7200);
	assert_int_equal(blobstore_sweep(bs, dc[0] + 256u, cutoff, keep_cb, &k, &bytes), 1);
	assert_int_equal(blobstore_sweep(bs, dc[0], cutoff, keep_cb, &k, &bytes), 0);
	assert_int_equal(blobstore_used(bs), 0);
	free(a);
	free(b);
	free(c);
	blobstore_close(bs);
}

static void test_quota_and_crash_leftovers(void **state)
{
	(void)state;
	struct blobstore *bs;
	assert_int_equal(blobstore_open(&bs, store_dir, key, 10000), 0);
	uint8_t *data = pattern(8000, 1);
	uint8_t d[SHA256_LEN];
	put(bs, data, 6000, 6000, d);
	struct blob_writer *w;
	assert_int_equal(blobstore_write_begin(bs, NULL, 0, &w), 0);
	assert_int_equal(blob_writer_write(w, data + 1, 3000), 0);
	assert_int_equal(blob_writer_write(w, data + 1, 3000), SS_ELIMIT);
	blob_writer_abort(w);
	/* A writer that never commits (a crash) leaves a temp file that reopening removes. */
	assert_int_equal(blobstore_write_begin(bs, NULL, 0, &w), 0);
	assert_int_equal(blob_writer_write(w, data, 100), 0);
	char *cmd = xasprintf("test -n \"$(ls -A '%s/tmp')\"", store_dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	struct blobstore *bs2;
	assert_int_equal(blobstore_open(&bs2, store_dir, key, 0), 0);
	cmd = xasprintf("test -z \"$(ls -A '%s/tmp')\"", store_dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	assert_int_equal(blobstore_used(bs2), 6000);
	blobstore_close(bs2);
	blob_writer_abort(w);
	free(data);
	blobstore_close(bs);
}

static void test_key_file(void **state)
{
	(void)state;
	char *path = xasprintf("%s/blob.key", dir);
	uint8_t k1[BLOBSTORE_KEY_LEN], k2[BLOBSTORE_KEY_LEN];
	assert_int_equal(blobstore_key_load(path, k1), 0);
	assert_int_equal(blobstore_key_load(path, k2), 0);
	assert_memory_equal(k1, k2, sizeof k1);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(file_write_atomic(path, "short", 5, 0600), 0);
	assert_int_equal(blobstore_key_load(path, k2), SS_ECONFIG);
	free(path);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_at_rest_is_ciphertext, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expected_digest_and_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampering_is_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swapped_files_and_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seek_and_partial_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_export_list_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_deletes_old_unclaimed_blobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_and_crash_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file, setup, teardown),
	};
	return cmocka_run_group_tests_name("blobstore", tests, NULL, NULL);
}
