/*
 * blobstore.h - a content-addressed blob store, encrypted at rest.
 *
 * Blobs are named by the SHA-256 of their plaintext. Each is stored as one
 * file DIR/ab/abcdef... in a chunked AES-256-GCM format (docs/data.md): a
 * header with a random per-file nonce prefix, then chunks of at most
 * BLOBSTORE_CHUNK plaintext bytes, each sealed with the store key, a nonce
 * made of the prefix and the chunk index, and associated data binding the
 * blob digest, the chunk index and whether it is the last chunk, so chunks
 * cannot be reordered, truncated or moved between blobs. A reader verifies
 * every tag before it returns a byte, and the plaintext digest at the end.
 *
 * Writers stream into a temporary file and commit atomically (fsync, rename,
 * fsync dir) only when the plaintext hashes to the expected digest; a crash
 * leaves at most a temporary file, which blobstore_open() removes.
 *
 * The key is 32 bytes that never leave the node: blobstore_key_load()
 * creates it (0600) on first use. The files on disk are hostile input as far
 * as parsing goes (a corrupted or swapped file gives SS_ECRYPTO, never a
 * crash or wrong data).
 *
 * Thread safety: a store may be used from several threads at once (the
 * agent's executor threads export inputs while the loop thread receives
 * blobs); a single writer or reader belongs to one thread at a time.
 */
#ifndef SS_BLOBSTORE_H
#define SS_BLOBSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define BLOBSTORE_CHUNK (64u * 1024u)
#define BLOBSTORE_MAX_BLOB (4ull << 30)   /* 4 GiB per blob */
#define BLOBSTORE_KEY_LEN 32

struct blobstore;
struct blob_writer;
struct blob_reader;

/* Loads the 32-byte key at path, creating it (0600, random) when absent. */
int blobstore_key_load(const char *path, uint8_t key[BLOBSTORE_KEY_LEN]);

/*
 * Opens (creating, 0700) the store in dir with key. quota_bytes bounds the
 * stored plaintext (0 = unlimited); a write beyond it fails with SS_ELIMIT.
 * Removes stale temporary files and counts the bytes in use.
 */
int blobstore_open(struct blobstore **out, const char *dir, const uint8_t key[BLOBSTORE_KEY_LEN],
		   uint64_t quota_bytes);
void blobstore_close(struct blobstore *bs);

/* True when the blob is present; its plaintext size goes to *size (may be NULL). */
bool blobstore_has(struct blobstore *bs, const uint8_t digest[SHA256_LEN], uint64_t *size);

/*
 * Starts writing a blob. When expect is not NULL, commit fails with
 * SS_EINTEGRITY unless the plaintext hashes to it; expect_size, when not 0,
 * bounds the bytes accepted (more is SS_ELIMIT).
 */
int blobstore_write_begin(struct blobstore *bs, const uint8_t *expect, uint64_t expect_size,
			  struct blob_writer **out);
int blob_writer_write(struct blob_writer *w, const void *data, size_t len);
/*
 * Finishes the blob: checks digest and size, then makes it durable and
 * visible. Writes the digest to digest_out (may be NULL). Frees w in every
 * case. Committing a blob that is already present succeeds and keeps the
 * existing file.
 */
int blob_writer_commit(struct blob_writer *w, uint8_t digest_out[SHA256_LEN]);
/* Discards a blob being written and frees w. NULL is a no-op. */
void blob_writer_abort(struct blob_writer *w);

/* Opens a blob for reading; its plaintext size goes to *size (may be NULL). */
int blobstore_read_open(struct blobstore *bs, const uint8_t digest[SHA256_LEN],
			struct blob_reader **out, uint64_t *size);
/*
 * Reads up to len plaintext bytes at the reader's position; *got = 0 at the
 * end. SS_ECRYPTO when a chunk fails authentication or the digest at the end
 * does not match. Reads are sequential except for blob_reader_seek.
 */
int blob_reader_read(struct blob_reader *r, void *buf, size_t len, size_t *got);
/* Moves to a plaintext offset (to resume a transfer). */
int blob_reader_seek(struct blob_reader *r, uint64_t offset);
void blob_reader_close(struct blob_reader *r);

/* Imports a plaintext file as a blob; its digest and size go to digest/size. */
int blobstore_import(struct blobstore *bs, const char *path, uint8_t digest[SHA256_LEN],
		     uint64_t *size);
/* Decrypts a blob into a new plaintext file at path (mode 0600, O_EXCL). */
int blobstore_export(struct blobstore *bs, const uint8_t digest[SHA256_LEN], const char *path);

int blobstore_delete(struct blobstore *bs, const uint8_t digest[SHA256_LEN]);
/*
 * Deletes the blobs of one of the store's 256 subdirectories (shard, taken
 * modulo 256) that were last written before before_ms (wall clock, ms) and
 * that keep() does not claim. A commit of a blob already stored counts as a
 * write. Adds the plaintext bytes freed to *bytes and returns how many blobs
 * were deleted. Sweeping shard 0..255 in turn covers the store, one bounded
 * step at a time. The caller makes sure no one starts to depend on a blob
 * between keep() answering and the deletion (the manager sweeps on its loop
 * thread, where jobs take their uses).
 */
size_t blobstore_sweep(struct blobstore *bs, unsigned shard, int64_t before_ms,
		       bool (*keep)(void *arg, const uint8_t digest[SHA256_LEN]), void *arg,
		       uint64_t *bytes);
/* Calls cb for every stored blob; a nonzero return stops and is returned. */
int blobstore_list(struct blobstore *bs,
		   int (*cb)(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size), void *arg);
/* Plaintext bytes stored. */
uint64_t blobstore_used(struct blobstore *bs);

#endif
