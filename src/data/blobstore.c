/*
 * blobstore.c - content-addressed blobs, encrypted at rest with AES-256-GCM.
 *
 * File format (docs/data.md), all integers big-endian:
 *
 *   header  magic "SSBLOB1\0" | version u32 (1) | chunk size u32 |
 *           plaintext size u64 | plaintext SHA-256 (32) | salt (32)
 *   chunks  ceil(size / chunk) chunks (one empty chunk for an empty blob),
 *           each the ciphertext followed by a 16-byte tag
 *
 * Each file has its own key, HKDF-SHA256(store key, salt, "seeswarm-blob-v1"),
 * so the 96-bit nonce can simply be the chunk index (4 zero bytes, then the
 * index as u64): a (key, nonce) pair is never used twice. A chunk's
 * associated data is "SSB1" | index u64 | last u8, and the last chunk's also
 * holds the plaintext size and digest, so the header's claims are
 * authenticated by the last tag; blobstore_read_open() checks that tag before
 * it trusts the size. Chunks cannot be reordered (index), truncated or
 * extended (last flag and size) or moved to another file (per-file key).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "core/core.h"
#include "data/blobstore.h"

#define BS_MAGIC "SSBLOB1"       /* with its NUL: 8 bytes */
#define BS_VERSION 1u
#define BS_SALT_LEN 32
#define BS_TAG_LEN 16
#define BS_HDR_LEN (8 + 4 + 4 + 8 + SHA256_LEN + BS_SALT_LEN)
#define BS_AAD_MAX (4 + 8 + 1 + 8 + SHA256_LEN)
#define BS_HEX_LEN (2 * SHA256_LEN)

struct blobstore {
	char *dir;
	uint8_t key[BLOBSTORE_KEY_LEN];
	uint64_t quota;
	pthread_mutex_t mu;      /* guards used and reserved */
	uint64_t used;           /* plaintext bytes of committed blobs */
	uint64_t reserved;       /* plaintext bytes accepted by open writers */
};

struct blob_hdr {
	uint64_t size;
	uint8_t digest[SHA256_LEN];
	uint8_t salt[BS_SALT_LEN];
};

struct blob_writer {
	struct blobstore *bs;
	int fd;
	char *tmp;
	bool has_expect;
	uint8_t expect[SHA256_LEN];
	uint64_t limit;          /* bytes accepted at most (expect_size or the blob cap) */
	uint64_t total;          /* plaintext bytes written so far */
	uint64_t index;          /* index of the chunk being filled */
	uint8_t salt[BS_SALT_LEN];
	EVP_CIPHER_CTX *ctx;
	EVP_MD_CTX *md;
	uint8_t *pt;             /* the pending chunk's plaintext (BLOBSTORE_CHUNK bytes) */
	size_t pt_len;
	uint8_t *ct;             /* ciphertext + tag scratch */
	int err;                 /* sticky error */
};

struct blob_reader {
	int fd;
	struct blob_hdr hdr;
	uint64_t n_chunks;
	uint64_t pos;            /* plaintext offset */
	EVP_CIPHER_CTX *ctx;
	EVP_MD_CTX *md;          /* running digest while reads are sequential from 0 */
	uint8_t *pt;             /* the decrypted chunk cache */
	size_t pt_len;
	uint64_t pt_index;       /* index of the cached chunk, UINT64_MAX when none */
	uint8_t *ct;
};

/* ---- helpers ------------------------------------------------------------ */

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static uint64_t chunk_count(uint64_t size)
{
	return size == 0 ? 1 : (size + BLOBSTORE_CHUNK - 1) / BLOBSTORE_CHUNK;
}

/* The on-disk length of a blob of size plaintext bytes. */
static uint64_t file_length(uint64_t size)
{
	return BS_HDR_LEN + chunk_count(size) * BS_TAG_LEN + size;
}

static void encode_hdr(const struct blob_hdr *h, uint8_t out[BS_HDR_LEN])
{
	memcpy(out, BS_MAGIC, 8);
	put_u32(out + 8, BS_VERSION);
	put_u32(out + 12, BLOBSTORE_CHUNK);
	put_u64(out + 16, h->size);
	memcpy(out + 24, h->digest, SHA256_LEN);
	memcpy(out + 24 + SHA256_LEN, h->salt, BS_SALT_LEN);
}

/* Decodes a header read from disk (hostile bytes). Returns 0 or SS_ECRYPTO. */
static int decode_hdr(const uint8_t in[BS_HDR_LEN], struct blob_hdr *h)
{
	if (memcmp(in, BS_MAGIC, 8) != 0 || get_u32(in + 8) != BS_VERSION ||
	    get_u32(in + 12) != BLOBSTORE_CHUNK)
		return SS_ECRYPTO;
	h->size = get_u64(in + 16);
	if (h->size > BLOBSTORE_MAX_BLOB)
		return SS_ECRYPTO;
	memcpy(h->digest, in + 24, SHA256_LEN);
	memcpy(h->salt, in + 24 + SHA256_LEN, BS_SALT_LEN);
	return 0;
}

static size_t make_aad(uint8_t out[BS_AAD_MAX], uint64_t index, bool last, uint64_t size,
		       const uint8_t digest[SHA256_LEN])
{
	static const uint8_t tag[4] = {'S', 'S', 'B', '1'};
	memcpy(out, tag, sizeof tag);
	put_u64(out + 4, index);
	out[12] = last ? 1 : 0;
	if (!last || !digest)
		return 13;
	put_u64(out + 13, size);
	memcpy(out + 21, digest, SHA256_LEN);
	return BS_AAD_MAX;
}

static void make_nonce(uint8_t out[12], uint64_t index)
{
	memset(out, 0, 4);
	put_u64(out + 4, index);
}

/* Derives the per-file key and sets up ctx for it. Returns 0 or SS_ECRYPTO. */
static int file_cipher(const uint8_t key[BLOBSTORE_KEY_LEN], const uint8_t salt[BS_SALT_LEN],
		       bool encrypt, EVP_CIPHER_CTX **out)
{
	uint8_t fk[32];
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	int rc = SS_ECRYPTO;
	static const char info[] = "seeswarm-blob-v1";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, BLOBSTORE_KEY_LEN),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, BS_SALT_LEN),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof info - 1),
		OSSL_PARAM_construct_end(),
	};
	if (!kctx || EVP_KDF_derive(kctx, fk, sizeof fk, params) != 1)
		goto out;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		abort();
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt ? 1 : 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, fk, NULL, -1) != 1)
		goto out;
	*out = ctx;
	ctx = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(fk, sizeof fk);
	EVP_CIPHER_CTX_free(ctx);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rc;
}

/* Seals len bytes of pt as chunk index into ct (len + tag bytes). */
static int seal(EVP_CIPHER_CTX *ctx, uint64_t index, bool last, uint64_t size,
		const uint8_t *digest, const uint8_t *pt, size_t len, uint8_t *ct)
{
	uint8_t nonce[12], aad[BS_AAD_MAX];
	size_t aad_len = make_aad(aad, index, last, size, digest);
	int n = 0, fin = 0;
	make_nonce(nonce, index);
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1 ||
	    (len > 0 && EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(ctx, ct + (len > 0 ? n : 0), &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, BS_TAG_LEN, ct + len) != 1)
		return SS_ECRYPTO;
	return 0;
}

/* Opens chunk index (len plaintext bytes) from ct into pt. SS_ECRYPTO on a bad tag. */
static int open_chunk(EVP_CIPHER_CTX *ctx, uint64_t index, bool last, uint64_t size,
		      const uint8_t *digest, const uint8_t *ct, size_t len, uint8_t *pt)
{
	uint8_t nonce[12], aad[BS_AAD_MAX], tag[BS_TAG_LEN];
	size_t aad_len = make_aad(aad, index, last, size, digest);
	int n = 0, fin = 0;
	make_nonce(nonce, index);
	memcpy(tag, ct + len, BS_TAG_LEN);
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1 ||
	    (len > 0 && EVP_DecryptUpdate(ctx, pt, &n, ct, (int)len) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, BS_TAG_LEN, tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, pt + (len > 0 ? n : 0), &fin) != 1)
		return SS_ECRYPTO;
	return 0;
}

/* Reads exactly n bytes at off. SS_ECRYPTO when the file is short (a damaged blob). */
static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = pread(fd, b, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return SS_EIO;
		if (r == 0)
			return SS_ECRYPTO;
		b += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static char *blob_path(const struct blobstore *bs, const uint8_t digest[SHA256_LEN])
{
	char hex[BS_HEX_LEN + 1];
	hex_encode(digest, SHA256_LEN, hex);
	return xasprintf("%s/%.2s/%s", bs->dir, hex, hex);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		return SS_EIO;
	if (fsync(fd) != 0)
		rc = SS_EIO;
	close(fd);
	return rc;
}

/*
 * Reads and decodes the header of the blob file at path and checks that the
 * file has the length the header implies. The size is not authenticated:
 * callers that return plaintext go through blobstore_read_open.
 */
static int peek_hdr(const char *path, struct blob_hdr *h)
{
	uint8_t raw[BS_HDR_LEN];
	struct stat st;
	int rc = SS_ENOTFOUND;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
	if (fstat(fd, &st) != 0) {
		rc = SS_EIO;
		goto out;
	}
	if ((rc = pread_all(fd, raw, sizeof raw, 0)) != 0 || (rc = decode_hdr(raw, h)) != 0)
		goto out;
	if ((uint64_t)st.st_size != file_length(h->size))
		rc = SS_ECRYPTO;
out:
	close(fd);
	return rc;
}

/* ---- store -------------------------------------------------------------- */

int blobstore_key_load(const char *path, uint8_t key[BLOBSTORE_KEY_LEN])
{
	char *data = NULL;
	size_t len = 0;
	int rc = file_read(path, BLOBSTORE_KEY_LEN + 1, &data, &len);
	if (rc == 0) {
		if (len != BLOBSTORE_KEY_LEN) {
			log_error("blobstore: %s: key must be %d bytes, not %zu", path,
				  BLOBSTORE_KEY_LEN, len);
			rc = SS_ECONFIG;
		} else {
			memcpy(key, data, BLOBSTORE_KEY_LEN);
		}
		OPENSSL_cleanse(data, len);
		free(data);
		return rc;
	}
	if (rc != SS_ENOTFOUND)
		return rc;
	rand_bytes(key, BLOBSTORE_KEY_LEN);
	return file_write_atomic(path, key, BLOBSTORE_KEY_LEN, 0600);
}

static int count_cb(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	(void)digest;
	*(uint64_t *)arg += size;
	return 0;
}

int blobstore_open(struct blobstore **out, const char *dir, const uint8_t key[BLOBSTORE_KEY_LEN],
		   uint64_t quota_bytes)
{
	struct blobstore *bs = NULL;
	char *tmpdir = xasprintf("%s/tmp", dir);
	DIR *d = NULL;
	struct dirent *e;
	uint64_t used = 0;
	int rc;
	if ((rc = dir_ensure(dir, 0700)) != 0 || (rc = dir_ensure(tmpdir, 0700)) != 0)
		goto out;
	/* Writers that never committed (a crash) leave temporary files behind. */
	d = opendir(tmpdir);
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			(void)unlinkat(dirfd(d), e->d_name, 0);
	}
	bs = xcalloc(1, sizeof *bs);
	bs->dir = xstrdup(dir);
	memcpy(bs->key, key, BLOBSTORE_KEY_LEN);
	bs->quota = quota_bytes;
	pthread_mutex_init(&bs->mu, NULL);
	if ((rc = blobstore_list(bs, count_cb, &used)) != 0)
		goto out;
	bs->used = used;
	*out = bs;
	bs = NULL;
out:
	if (d)
		closedir(d);
	blobstore_close(bs);
	free(tmpdir);
	return rc;
}

void blobstore_close(struct blobstore *bs)
{
	if (!bs)
		return;
	OPENSSL_cleanse(bs->key, sizeof bs->key);
	pthread_mutex_destroy(&bs->mu);
	free(bs->dir);
	free(bs);
}

bool blobstore_has(struct blobstore *bs, const uint8_t digest[SHA256_LEN], uint64_t *size)
{
	struct blob_hdr h;
	char *path = blob_path(bs, digest);
	bool ok = peek_hdr(path, &h) == 0 && memcmp(h.digest, digest, SHA256_LEN) == 0;
	free(path);
	if (ok && size)
		*size = h.size;
	return ok;
}

uint64_t blobstore_used(struct blobstore *bs)
{
	pthread_mutex_lock(&bs->mu);
	uint64_t u = bs->used;
	pthread_mutex_unlock(&bs->mu);
	return u;
}

/* ---- writing ------------------------------------------------------------ */

int blobstore_write_begin(struct blobstore *bs, const uint8_t *expect, uint64_t expect_size,
			  struct blob_writer **out)
{
	struct blob_writer *w = xcalloc(1, sizeof *w);
	int rc;
	w->bs = bs;
	w->fd = -1;
	w->tmp = xasprintf("%s/tmp/w.XXXXXX", bs->dir);
	w->limit = expect_size ? expect_size : BLOBSTORE_MAX_BLOB;
	if (w->limit > BLOBSTORE_MAX_BLOB)
		w->limit = BLOBSTORE_MAX_BLOB;
	if (expect) {
		w->has_expect = true;
		memcpy(w->expect, expect, SHA256_LEN);
	}
	rand_bytes(w->salt, sizeof w->salt);
	w->pt = xmalloc(BLOBSTORE_CHUNK);
	w->ct = xmalloc(BLOBSTORE_CHUNK + BS_TAG_LEN);
	w->md = EVP_MD_CTX_new();
	if (!w->md)
		abort();
	if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1 ||
	    file_cipher(bs->key, w->salt, true, &w->ctx) != 0) {
		rc = SS_ECRYPTO;
		goto fail;
	}
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		log_error("blobstore: %s: %s", w->tmp, strerror(errno));
		rc = SS_EIO;
		goto fail;
	}
	/* The header is written at commit, when size and digest are known. */
	if (lseek(w->fd, BS_HDR_LEN, SEEK_SET) != BS_HDR_LEN) {
		rc = SS_EIO;
		goto fail;
	}
	*out = w;
	return 0;
fail:
	blob_writer_abort(w);
	return rc;
}

/* Seals and writes the pending chunk; last marks the final chunk. */
static int flush_chunk(struct blob_writer *w, bool last, const uint8_t *digest)
{
	int rc = seal(w->ctx, w->index, last, w->total, digest, w->pt, w->pt_len, w->ct);
	if (rc == 0)
		rc = fd_write_all(w->fd, w->ct, w->pt_len + BS_TAG_LEN);
	w->index++;
	w->pt_len = 0;
	return rc;
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (w->err)
		return w->err;
	if (len > w->limit - w->total)
		return w->err = SS_ELIMIT;
	if (len > 0) {
		struct blobstore *bs = w->bs;
		int rc = 0;
		pthread_mutex_lock(&bs->mu);
		if (bs->quota && bs->used + bs->reserved + len > bs->quota)
			rc = SS_ELIMIT;
		else
			bs->reserved += len;
		pthread_mutex_unlock(&bs->mu);
		if (rc)
			return w->err = rc;
	}
	if (EVP_DigestUpdate(w->md, p, len) != 1)
		return w->err = SS_ECRYPTO;
	while (len > 0) {
		/*
		 * A full chunk is sealed only when more data follows, because
		 * the last chunk's associated data differs.
		 */
		if (w->pt_len == BLOBSTORE_CHUNK) {
			int rc = flush_chunk(w, false, NULL);
			if (rc)
				return w->err = rc;
		}
		size_t n = BLOBSTORE_CHUNK - w->pt_len;
		if (n > len)
			n = len;
		memcpy(w->pt + w->pt_len, p, n);
		w->pt_len += n;
		w->total += n;
		p += n;
		len -= n;
	}
	return 0;
}

static void writer_free(struct blob_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp)
		(void)unlink(w->tmp);
	pthread_mutex_lock(&w->bs->mu);
	w->bs->reserved -= w->total <= w->bs->reserved ? w->total : w->bs->reserved;
	pthread_mutex_unlock(&w->bs->mu);
	EVP_CIPHER_CTX_free(w->ctx);
	EVP_MD_CTX_free(w->md);
	if (w->pt)
		OPENSSL_cleanse(w->pt, BLOBSTORE_CHUNK);
	free(w->pt);
	free(w->ct);
	free(w->tmp);
	free(w);
}

int blob_writer_commit(struct blob_writer *w, uint8_t digest_out[SHA256_LEN])
{
	struct blob_hdr h = {.size = w->total};
	uint8_t raw[BS_HDR_LEN];
	unsigned dlen = 0;
	char *path = NULL, *sub = NULL;
	int rc = w->err;
	if (rc)
		goto out;
	if (EVP_DigestFinal_ex(w->md, h.digest, &dlen) != 1) {
		rc = SS_ECRYPTO;
		goto out;
	}
	if (w->has_expect && CRYPTO_memcmp(h.digest, w->expect, SHA256_LEN) != 0) {
		rc = SS_EINTEGRITY;
		goto out;
	}
	memcpy(h.salt, w->salt, sizeof h.salt);
	encode_hdr(&h, raw);
	if ((rc = flush_chunk(w, true, h.digest)) != 0)
		goto out;
	if (pwrite(w->fd, raw, sizeof raw, 0) != (ssize_t)sizeof raw || fsync(w->fd) != 0) {
		rc = SS_EIO;
		goto out;
	}
	path = blob_path(w->bs, h.digest);
	sub = xstrndup(path, strlen(w->bs->dir) + 3);
	if ((rc = dir_ensure(sub, 0700)) != 0)
		goto out;
	if (access(path, F_OK) == 0) {
		/*
		 * Already stored (content addressing): keep the existing file, but
		 * mark it written now, which blobstore_sweep() goes by.
		 */
		if (utimensat(AT_FDCWD, path, NULL, 0) != 0)
			log_warn("blobstore: cannot touch %s: %s", path, strerror(errno));
		rc = 0;
		goto done;
	}
	if (rename(w->tmp, path) != 0) {
		log_error("blobstore: rename to %s: %s", path, strerror(errno));
		rc = SS_EIO;
		goto out;
	}
	free(w->tmp);
	w->tmp = NULL;
	if ((rc = fsync_dir(sub)) != 0)
		goto out;
	pthread_mutex_lock(&w->bs->mu);
	w->bs->used += w->total;
	pthread_mutex_unlock(&w->bs->mu);
done:
	if (digest_out)
		memcpy(digest_out, h.digest, SHA256_LEN);
out:
	free(path);
	free(sub);
	writer_free(w);
	return rc;
}

void blob_writer_abort(struct blob_writer *w)
{
	if (w)
		writer_free(w);
}

/* ---- reading ------------------------------------------------------------ */

/* Loads and authenticates chunk index into the reader's cache. */
static int load_chunk(struct blob_reader *r, uint64_t index)
{
	bool last = index + 1 == r->n_chunks;
	size_t len = last ? (size_t)(r->hdr.size - index * BLOBSTORE_CHUNK) : BLOBSTORE_CHUNK;
	uint64_t off = BS_HDR_LEN + index * (BLOBSTORE_CHUNK + BS_TAG_LEN);
	int rc;
	if (r->pt_index == index)
		return 0;
	r->pt_index = UINT64_MAX;
	if ((rc = pread_all(r->fd, r->ct, len + BS_TAG_LEN, off)) != 0)
		return rc;
	if ((rc = open_chunk(r->ctx, index, last, r->hdr.size, r->hdr.digest, r->ct, len, r->pt)) != 0)
		return rc;
	r->pt_len = len;
	r->pt_index = index;
	return 0;
}

int blobstore_read_open(struct blobstore *bs, const uint8_t digest[SHA256_LEN],
			struct blob_reader **out, uint64_t *size)
{
	struct blob_reader *r = xcalloc(1, sizeof *r);
	uint8_t raw[BS_HDR_LEN];
	struct stat st;
	char *path = blob_path(bs, digest);
	int rc;
	r->pt_index = UINT64_MAX;
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto fail;
	}
	if (fstat(r->fd, &st) != 0) {
		rc = SS_EIO;
		goto fail;
	}
	if ((rc = pread_all(r->fd, raw, sizeof raw, 0)) != 0 || (rc = decode_hdr(raw, &r->hdr)) != 0)
		goto fail;
	if ((uint64_t)st.st_size != file_length(r->hdr.size) ||
	    CRYPTO_memcmp(r->hdr.digest, digest, SHA256_LEN) != 0) {
		rc = SS_ECRYPTO;
		goto fail;
	}
	r->n_chunks = chunk_count(r->hdr.size);
	r->pt = xmalloc(BLOBSTORE_CHUNK);
	r->ct = xmalloc(BLOBSTORE_CHUNK + BS_TAG_LEN);
	r->md = EVP_MD_CTX_new();
	if (!r->md)
		abort();
	if (EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1 ||
	    file_cipher(bs->key, r->hdr.salt, false, &r->ctx) != 0) {
		rc = SS_ECRYPTO;
		goto fail;
	}
	/* The last chunk's tag authenticates the header's size and digest. */
	if ((rc = load_chunk(r, r->n_chunks - 1)) != 0)
		goto fail;
	if (size)
		*size = r->hdr.size;
	*out = r;
	free(path);
	return 0;
fail:
	if (rc == SS_ECRYPTO)
		log_warn("blobstore: %s: damaged or not a blob of this store", path);
	free(path);
	blob_reader_close(r);
	return rc;
}

int blob_reader_read(struct blob_reader *r, void *buf, size_t len, size_t *got)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc = 0;
	while (done < len && r->pos < r->hdr.size) {
		uint64_t index = r->pos / BLOBSTORE_CHUNK;
		if ((rc = load_chunk(r, index)) != 0)
			goto out;
		size_t at = (size_t)(r->pos - index * BLOBSTORE_CHUNK);
		size_t n = r->pt_len - at;
		if (n > len - done)
			n = len - done;
		memcpy(p + done, r->pt + at, n);
		if (r->md && EVP_DigestUpdate(r->md, r->pt + at, n) != 1) {
			rc = SS_ECRYPTO;
			goto out;
		}
		done += n;
		r->pos += n;
	}
	if (r->pos == r->hdr.size && r->md) {
		/* A sequential read from the start checks the digest at the end. */
		uint8_t d[SHA256_LEN];
		unsigned dl = 0;
		if (EVP_DigestFinal_ex(r->md, d, &dl) != 1 ||
		    CRYPTO_memcmp(d, r->hdr.digest, SHA256_LEN) != 0)
			rc = SS_ECRYPTO;
		EVP_MD_CTX_free(r->md);
		r->md = NULL;
	}
out:
	*got = rc ? 0 : done;
	return rc;
}

int blob_reader_seek(struct blob_reader *r, uint64_t offset)
{
	if (offset > r->hdr.size)
		return SS_EINVAL;
	if (offset != r->pos) {
		/* Out-of-order reads rely on the chunk tags alone. */
		EVP_MD_CTX_free(r->md);
		r->md = NULL;
	}
	r->pos = offset;
	return 0;
}

void blob_reader_close(struct blob_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	EVP_CIPHER_CTX_free(r->ctx);
	EVP_MD_CTX_free(r->md);
	if (r->pt)
		OPENSSL_cleanse(r->pt, BLOBSTORE_CHUNK);
	free(r->pt);
	free(r->ct);
	free(r);
}

/* ---- files -------------------------------------------------------------- */

int blobstore_import(struct blobstore *bs, const char *path, uint8_t digest[SHA256_LEN],
		     uint64_t *size)
{
	struct blob_writer *w = NULL;
	size_t cap = 1u << 20;
	uint8_t *buf = xmalloc(cap);
	uint64_t total = 0;
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto out;
	}
	if ((rc = blobstore_write_begin(bs, NULL, 0, &w)) != 0)
		goto out;
	for (;;) {
		size_t n = 0;
		if ((rc = fd_read(fd, buf, cap, &n)) != 0)
			goto out;
		if (n == 0)
			break;
		if ((rc = blob_writer_write(w, buf, n)) != 0)
			goto out;
		total += n;
	}
	rc = blob_writer_commit(w, digest);
	w = NULL;
	if (rc == 0 && size)
		*size = total;
out:
	blob_writer_abort(w);
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int blobstore_export(struct blobstore *bs, const uint8_t digest[SHA256_LEN], const char *path)
{
	struct blob_reader *r = NULL;
	size_t cap = 1u << 20;
	uint8_t *buf = xmalloc(cap);
	int fd = -1;
	int rc = blobstore_read_open(bs, digest, &r, NULL);
	if (rc)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno == EEXIST ? SS_EEXIST : SS_EIO;
		goto out;
	}
	for (;;) {
		size_t got = 0;
		if ((rc = blob_reader_read(r, buf, cap, &got)) != 0 || got == 0)
			break;
		if ((rc = fd_write_all(fd, buf, got)) != 0)
			break;
	}
	if (rc != 0)
		(void)unlink(path);
out:
	if (fd >= 0)
		close(fd);
	blob_reader_close(r);
	OPENSSL_cleanse(buf, cap);
	free(buf);
	return rc;
}

int blobstore_delete(struct blobstore *bs, const uint8_t digest[SHA256_LEN])
{
	struct blob_hdr h;
	char *path = blob_path(bs, digest);
	int rc = peek_hdr(path, &h);
	if (rc == SS_ENOTFOUND)
		goto out;
	if (unlink(path) != 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto out;
	}
	if (rc == 0) {
		pthread_mutex_lock(&bs->mu);
		bs->used -= h.size <= bs->used ? h.size : bs->used;
		pthread_mutex_unlock(&bs->mu);
	}
	rc = 0;
out:
	free(path);
	return rc;
}

static bool hex_name(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return s[n] == '\0';
}

size_t blobstore_sweep(struct blobstore *bs, unsigned shard, int64_t before_ms,
		       bool (*keep)(void *arg, const uint8_t digest[SHA256_LEN]), void *arg,
		       uint64_t *bytes)
{
	size_t n = 0;
	char *sub = xasprintf("%s/%02x", bs->dir, shard & 0xffu);
	DIR *d = opendir(sub);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		uint8_t digest[SHA256_LEN];
		struct stat st;
		if (!hex_name(e->d_name, BS_HEX_LEN) || strncmp(e->d_name, sub + strlen(bs->dir) + 1, 2) != 0 ||
		    hex_decode(e->d_name, digest, SHA256_LEN) != 0 ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
		if (mtime_ms >= before_ms || keep(arg, digest))
			continue;
		uint64_t size = 0;
		if (!blobstore_has(bs, digest, &size) || blobstore_delete(bs, digest) != 0)
			continue;
		n++;
		*bytes += size;
	}
	if (d)
		closedir(d);
	free(sub);
	return n;
}

int blobstore_list(struct blobstore *bs,
		   int (*cb)(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size), void *arg)
{
	int rc = 0;
	for (unsigned i = 0; i < 256 && rc == 0; i++) {
		char *sub = xasprintf("%s/%02x", bs->dir, i);
		DIR *d = opendir(sub);
		struct dirent *e;
		while (d && rc == 0 && (e = readdir(d)) != NULL) {
			uint8_t digest[SHA256_LEN];
			struct blob_hdr h;
			if (!hex_name(e->d_name, BS_HEX_LEN) || strncmp(e->d_name, sub + strlen(bs->dir) + 1, 2) != 0 ||
			    hex_decode(e->d_name, digest, SHA256_LEN) != 0)
				continue;
			char *path = xasprintf("%s/%s", sub, e->d_name);
			int prc = peek_hdr(path, &h);
			free(path);
			if (prc == 0 && memcmp(h.digest, digest, SHA256_LEN) == 0)
				rc = cb(arg, digest, h.size);
		}
		if (d)
			closedir(d);
		free(sub);
	}
	return rc;
}
