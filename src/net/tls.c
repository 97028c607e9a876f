/* tls.c - TLS 1.3 sessions over memory BIOs (OpenSSL 3), with record offload. */
#include <ctype.h>
#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

#define REC_HDR 5
#define REC_TAG 16
#define REC_MAX_PLAIN 16384
#define REC_MAX_CIPHER (REC_MAX_PLAIN + 256)
#define REC_SEQ_LIMIT (1ull << 24)
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPDATA 23

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
	bool offload;
};

/* One direction of an offloaded session. */
struct rec_dir {
	uint8_t key[32];
	uint8_t iv[12];
	uint64_t seq;
};

struct tls {
	SSL *ssl;  /* NULL once offloaded */
	BIO *rbio; /* network -> SSL */
	BIO *wbio; /* SSL -> network */
	bool done;
	bool offload_wanted;
	bool offloaded;
	bool closed;               /* close_notify received (offloaded) */
	const EVP_CIPHER *cipher;  /* AES-128-GCM or AES-256-GCM when offloaded */
	size_t key_len;
	struct rec_dir rd, wr;
	struct buf in;             /* offloaded: received bytes not yet a whole record */
	struct buf out;            /* offloaded: records to send */
	/* Traffic secrets from the key log, wiped after use. */
	uint8_t client_secret[48], server_secret[48];
	size_t secret_len;
	bool have_client, have_server;
	/* The verified peer, captured when the handshake completes. */
	char peer_cn[64];
	uint8_t *peer_spki;
	size_t peer_spki_len;
	uint8_t peer_fp[32];
	char peer_serial[41];
	bool peer_is_node;
	uint8_t peer_node_digest[32];
	char err[160];
};

static EVP_CIPHER *g_aes128, *g_aes256;
static EVP_KDF *g_hkdf;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
	g_aes128 = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	g_aes256 = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	g_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (!g_aes128 || !g_aes256 || !g_hkdf)
		fatal("tls: AES-GCM or HKDF is not available");
}

/* Keeps the traffic secrets that OpenSSL reports through the key log. */
static void on_keylog(const SSL *ssl, const char *line)
{
	struct tls *t = SSL_get_app_data(ssl);
	if (!t || !t->offload_wanted)
		return;
	uint8_t *dst;
	bool *flag;
	const char *p;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) {
		dst = t->client_secret;
		flag = &t->have_client;
		p = line + 24;
	} else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24)) {
		dst = t->server_secret;
		flag = &t->have_server;
		p = line + 24;
	} else {
		return;
	}
	p = strchr(p, ' '); /* skip the client random */
	if (!p)
		return;
	p++;
	size_t hexlen = strlen(p);
	if (hexlen != 64 && hexlen != 96)
		return;
	if (hex_decode(p, dst, hexlen / 2) != 0)
		return;
	t->secret_len = hexlen / 2;
	*flag = true;
}

int tls_ctx_new(struct tls_ctx **out, bool server, const char *ca_file, X509 *cert,
		EVP_PKEY *key)
{
	int rc = SS_ETLS;
	pthread_once(&g_once, init_once);
	struct tls_ctx *ctx = xcalloc(1, sizeof *ctx);
	ctx->server = server;
	ctx->ssl_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl_ctx)
		goto out;
	SSL_CTX *s = ctx->ssl_ctx;
	if (!SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION))
		goto out;
	/* Idle sessions keep no 17 KiB record buffers: this matters at 10k agents. */
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_num_tickets(s, 0);
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(s, 4);
	if (SSL_CTX_load_verify_locations(s, ca_file, NULL) != 1) {
		log_error("tls: cannot load CA bundle %s", ca_file);
		goto out;
	}
	if (cert && key) {
		if (SSL_CTX_use_certificate(s, cert) != 1 || SSL_CTX_use_PrivateKey(s, key) != 1 ||
		    SSL_CTX_check_private_key(s) != 1) {
			log_error("tls: certificate and key do not match");
			goto out;
		}
	}
	*out = ctx;
	ctx = NULL;
	rc = 0;
out:
	if (ctx)
		tls_ctx_free(ctx);
	ERR_clear_error();
	return rc;
}

void tls_ctx_set_offload(struct tls_ctx *ctx, bool on)
{
	ctx->offload = on && ctx->server;
	if (ctx->offload) {
		/* Offload supports the AES-GCM suites only. */
		if (SSL_CTX_set_ciphersuites(ctx->ssl_ctx, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") != 1)
			fatal("tls: cannot restrict ciphersuites");
		SSL_CTX_set_keylog_callback(ctx->ssl_ctx, on_keylog);
	}
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

struct tls *tls_new(struct tls_ctx *ctx, const char *expected_name)
{
	struct tls *t = xcalloc(1, sizeof *t);
	t->ssl = SSL_new(ctx->ssl_ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio)
		fatal("tls: out of memory creating a session");
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_app_data(t->ssl, t);
	t->offload_wanted = ctx->offload;
	buf_init(&t->in);
	buf_init(&t->out);
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (expected_name && SSL_set1_host(t->ssl, expected_name) != 1)
			fatal("tls: SSL_set1_host failed");
	}
	return t;
}

static void wipe_secrets(struct tls *t)
{
	OPENSSL_cleanse(t->client_secret, sizeof t->client_secret);
	OPENSSL_cleanse(t->server_secret, sizeof t->server_secret);
	t->have_client = t->have_server = false;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	if (t->ssl)
		SSL_free(t->ssl); /* frees both BIOs */
	wipe_secrets(t);
	OPENSSL_cleanse(&t->rd, sizeof t->rd);
	OPENSSL_cleanse(&t->wr, sizeof t->wr);
	buf_free(&t->in);
	buf_free(&t->out);
	free(t->peer_spki);
	free(t);
}

int tls_set_identity(struct tls *t, X509 *cert, EVP_PKEY *key)
{
	if (!t->ssl || SSL_use_certificate(t->ssl, cert) != 1 || SSL_use_PrivateKey(t->ssl, key) != 1) {
		ERR_clear_error();
		return SS_ETLS;
	}
	return 0;
}

/* Records the reason for a failed SSL call and clears OpenSSL's error queue. */
static int fail(struct tls *t, int ssl_err)
{
	unsigned long e = ERR_peek_last_error();
	long vr = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
	if (vr != X509_V_OK)
		snprintf(t->err, sizeof t->err, "peer certificate rejected: %s",
			 X509_verify_cert_error_string(vr));
	else if (e)
		snprintf(t->err, sizeof t->err, "%s", ERR_reason_error_string(e)
			 ? ERR_reason_error_string(e) : "TLS error");
	else if (ssl_err == SSL_ERROR_SYSCALL)
		snprintf(t->err, sizeof t->err, "unexpected end of TLS stream");
	else
		snprintf(t->err, sizeof t->err, "TLS error %d", ssl_err);
	ERR_clear_error();
	return SS_ETLS;
}

static int rec_fail(struct tls *t, const char *why)
{
	snprintf(t->err, sizeof t->err, "%s", why);
	return SS_ETLS;
}

/* Captures who the verified peer is, before the OpenSSL session may go away. */
static void capture_peer(struct tls *t)
{
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	if (!peer)
		return;
	X509_NAME *name = X509_get_subject_name(peer);
	int len = X509_NAME_get_text_by_NID(name, NID_commonName, t->peer_cn, sizeof t->peer_cn);
	if (len < 0 || (size_t)len >= sizeof t->peer_cn || strlen(t->peer_cn) != (size_t)len)
		t->peer_cn[0] = '\0';
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(X509_get0_pubkey(peer), &der);
	if (n > 0) {
		t->peer_spki = xmalloc((size_t)n);
		memcpy(t->peer_spki, der, (size_t)n);
		t->peer_spki_len = (size_t)n;
		OPENSSL_free(der);
	}
	unsigned int fl = sizeof t->peer_fp;
	if (X509_digest(peer, EVP_sha256(), t->peer_fp, &fl) != 1)
		memset(t->peer_fp, 0, sizeof t->peer_fp);
	if (cert_serial_hex(peer, t->peer_serial, sizeof t->peer_serial) != 0)
		t->peer_serial[0] = '\0';
	t->peer_is_node = cert_attestation_digest(peer, t->peer_node_digest) == 0;
	ERR_clear_error();
}

/* HKDF-Expand-Label(secret, label, "", len) of RFC 8446 §7.1. */
static int expand_label(const EVP_MD *md, const uint8_t *secret, size_t secret_len,
			const char *label, uint8_t *out, size_t len)
{
	uint8_t info[2 + 1 + 6 + 16 + 1];
	size_t ll = strlen(label);
	size_t n = 0;
	info[n++] = (uint8_t)(len >> 8);
	info[n++] = (uint8_t)len;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0; /* empty context */
	int rc = SS_ECRYPTO;
	EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(g_hkdf);
	if (!kctx)
		goto out;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
		OSSL_PARAM_construct_end(),
	};
	if (EVP_KDF_derive(kctx, out, len, params) == 1)
		rc = 0;
out:
	EVP_KDF_CTX_free(kctx);
	return rc;
}

/*
 * Moves the established session out of OpenSSL. Returns true when it did;
 * false leaves the session with OpenSSL, unchanged.
 */
static bool try_offload(struct tls *t)
{
	bool ok = false;
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	uint32_t id = c ? SSL_CIPHER_get_id(c) & 0xffff : 0;
	const EVP_MD *md;
	if (SSL_version(t->ssl) != TLS1_3_VERSION || !t->have_client || !t->have_server ||
	    SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->wbio) != 0)
		goto out;
	if (id == 0x1301) { /* TLS_AES_128_GCM_SHA256 */
		t->cipher = g_aes128;
		t->key_len = 16;
		md = EVP_sha256();
	} else if (id == 0x1302) { /* TLS_AES_256_GCM_SHA384 */
		t->cipher = g_aes256;
		t->key_len = 32;
		md = EVP_sha384();
	} else {
		goto out;
	}
	if ((size_t)EVP_MD_get_size(md) != t->secret_len)
		goto out;
	/* The server reads with the client's keys and writes with its own. */
	if (expand_label(md, t->client_secret, t->secret_len, "key", t->rd.key, t->key_len) ||
	    expand_label(md, t->client_secret, t->secret_len, "iv", t->rd.iv, 12) ||
	    expand_label(md, t->server_secret, t->secret_len, "key", t->wr.key, t->key_len) ||
	    expand_label(md, t->server_secret, t->secret_len, "iv", t->wr.iv, 12))
		goto out;
	t->rd.seq = t->wr.seq = 0;
	/* Records the peer sent after its Finished are still raw in the read BIO. */
	size_t pending = BIO_ctrl_pending(t->rbio);
	if (pending) {
		buf_reserve(&t->in, pending);
		size_t got = 0;
		if (BIO_read_ex(t->rbio, t->in.data + t->in.len, pending, &got) != 1 || got != pending)
			fatal("tls: cannot drain the read BIO");
		t->in.len += got;
	}
	SSL_free(t->ssl);
	t->ssl = NULL;
	t->rbio = t->wbio = NULL;
	t->offloaded = true;
	ok = true;
out:
	wipe_secrets(t);
	ERR_clear_error();
	return ok;
}

static void make_nonce(const struct rec_dir *d, uint8_t nonce[12])
{
	memcpy(nonce, d->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

static _Thread_local EVP_CIPHER_CTX *t_cctx;

static EVP_CIPHER_CTX *cctx(void)
{
	if (!t_cctx && !(t_cctx = EVP_CIPHER_CTX_new()))
		fatal("tls: out of memory");
	return t_cctx;
}

/* Encrypts one record of inner type ct into t->out. */
static int seal(struct tls *t, uint8_t ct, const uint8_t *data, size_t len)
{
	if (t->wr.seq >= REC_SEQ_LIMIT)
		return rec_fail(t, "record limit for this key reached; reconnect");
	size_t clen = len + 1 + REC_TAG;
	buf_reserve(&t->out, REC_HDR + clen);
	uint8_t *h = t->out.data + t->out.len;
	h[0] = CT_APPDATA;
	h[1] = 0x03;
	h[2] = 0x03;
	h[3] = (uint8_t)(clen >> 8);
	h[4] = (uint8_t)clen;
	uint8_t nonce[12];
	make_nonce(&t->wr, nonce);
	EVP_CIPHER_CTX *x = cctx();
	int n = 0, n2 = 0;
	uint8_t *body = h + REC_HDR;
	if (EVP_EncryptInit_ex2(x, t->cipher, t->wr.key, nonce, NULL) != 1 ||
	    EVP_EncryptUpdate(x, NULL, &n, h, REC_HDR) != 1 ||
	    EVP_EncryptUpdate(x, body, &n, data, (int)len) != 1 ||
	    EVP_EncryptUpdate(x, body + n, &n2, &ct, 1) != 1)
		return rec_fail(t, "record encryption failed");
	int n3 = 0;
	if (EVP_EncryptFinal_ex(x, body + n + n2, &n3) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, REC_TAG, body + len + 1) != 1)
		return rec_fail(t, "record encryption failed");
	t->wr.seq++;
	t->out.len += REC_HDR + clen;
	return 0;
}

/*
 * Decrypts the whole records buffered in t->in, appending application data
 * to plain. Returns 0, SS_ECLOSED after close_notify, or SS_ETLS.
 */
static int open_records(struct tls *t, struct buf *plain)
{
	size_t off = 0;
	int rc = 0;
	while (t->in.len - off >= REC_HDR) {
		const uint8_t *h = t->in.data + off;
		size_t clen = (size_t)h[3] << 8 | h[4];
		if (h[0] != CT_APPDATA || h[1] != 0x03 || h[2] != 0x03) {
			rc = rec_fail(t, "unexpected record header after the handshake");
			break;
		}
		if (clen < REC_TAG + 1 || clen > REC_MAX_CIPHER) {
			rc = rec_fail(t, "record length out of range");
			break;
		}
		if (t->in.len - off - REC_HDR < clen)
			break;
		if (t->rd.seq >= REC_SEQ_LIMIT) {
			rc = rec_fail(t, "record limit for this key reached; reconnect");
			break;
		}
		uint8_t nonce[12];
		make_nonce(&t->rd, nonce);
		size_t plen = clen - REC_TAG;
		buf_reserve(plain, plen);
		uint8_t *dst = plain->data + plain->len;
		EVP_CIPHER_CTX *x = cctx();
		int n = 0, n2 = 0;
		if (EVP_DecryptInit_ex2(x, t->cipher, t->rd.key, nonce, NULL) != 1 ||
		    EVP_DecryptUpdate(x, NULL, &n, h, REC_HDR) != 1 ||
		    EVP_DecryptUpdate(x, dst, &n, h + REC_HDR, (int)plen) != 1 ||
		    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, REC_TAG, (void *)(h + REC_HDR + plen)) != 1 ||
		    EVP_DecryptFinal_ex(x, dst + n, &n2) != 1) {
			rc = rec_fail(t, "record authentication failed (bad_record_mac)");
			break;
		}
		t->rd.seq++;
		off += REC_HDR + clen;
		/* Strip the zero padding; the last non-zero byte is the inner content type. */
		size_t k = plen;
		while (k > 0 && dst[k - 1] == 0)
			k--;
		if (k == 0) {
			rc = rec_fail(t, "record without a content type");
			break;
		}
		uint8_t ct = dst[k - 1];
		k--;
		if (k > REC_MAX_PLAIN) {
			rc = rec_fail(t, "record_overflow");
			break;
		}
		if (ct == CT_APPDATA) {
			plain->len += k;
		} else if (ct == CT_ALERT) {
			if (k == 2 && dst[1] == 0) {
				t->closed = true;
				rc = SS_ECLOSED;
			} else {
				rc = rec_fail(t, "peer sent a TLS alert");
			}
			break;
		} else if (ct == CT_HANDSHAKE) {
			rc = rec_fail(t, "post-handshake messages (KeyUpdate) are not supported");
			break;
		} else {
			rc = rec_fail(t, "unexpected inner content type");
			break;
		}
	}
	buf_consume(&t->in, off);
	if (rc && rc != SS_ECLOSED)
		t->in.len = 0;
	if (t->in.len == 0)
		buf_free(&t->in);
	return rc;
}

#ifdef SS_FUZZING
/* Fuzzing hooks: an offloaded session with fixed keys, and a sealer for its peer. */
struct tls *tls_fuzz_offloaded(bool peer)
{
	pthread_once(&g_once, init_once);
	struct tls *t = xcalloc(1, sizeof *t);
	buf_init(&t->in);
	buf_init(&t->out);
	t->done = t->offloaded = true;
	t->cipher = g_aes128;
	t->key_len = 16;
	memset(peer ? t->wr.key : t->rd.key, 0x11, 16);
	memset(peer ? t->wr.iv : t->rd.iv, 0x22, 12);
	memset(peer ? t->rd.key : t->wr.key, 0x33, 16);
	memset(peer ? t->rd.iv : t->wr.iv, 0x44, 12);
	return t;
}

int tls_fuzz_seal(struct tls *t, uint8_t ct, const uint8_t *data, size_t len, size_t pad)
{
	uint8_t tmp[REC_MAX_PLAIN + 64];
	if (len + pad > sizeof tmp)
		return SS_ETOOBIG;
	memcpy(tmp, data, len);
	memset(tmp + len, 0, pad);
	/* seal() appends the type after the data; padding goes before it here, which a
	 * receiver must treat as data - still a valid record to feed the parser. */
	return seal(t, ct, tmp, len + pad);
}
#endif

int tls_start(struct tls *t)
{
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->done = true;
		return 0;
	}
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return fail(t, e);
}

int tls_feed(struct tls *t, const uint8_t *data, size_t len)
{
	if (t->offloaded) {
		buf_append(&t->in, data, len);
		return 0;
	}
	while (len > 0) {
		int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
		int w = BIO_write(t->rbio, data, chunk);
		if (w <= 0)
			fatal("tls: BIO_write to memory BIO failed");
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

int tls_read(struct tls *t, struct buf *plain)
{
	if (!t->done) {
		/* Handshake only: no application data is read by OpenSSL before offload. */
		int r = SSL_do_handshake(t->ssl);
		if (r != 1) {
			int e = SSL_get_error(t->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return 0;
			return fail(t, e);
		}
		t->done = true;
		capture_peer(t);
		if (t->offload_wanted)
			(void)try_offload(t);
		else
			wipe_secrets(t);
	}
	if (t->offloaded)
		return t->closed ? SS_ECLOSED : open_records(t, plain);
	for (;;) {
		buf_reserve(plain, 16384);
		size_t got = 0;
		int r = SSL_read_ex(t->ssl, plain->data + plain->len, plain->cap - plain->len, &got);
		if (r == 1) {
			plain->len += got;
			continue;
		}
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN)
			return SS_ECLOSED;
		return fail(t, e);
	}
}

int tls_write(struct tls *t, const void *data, size_t len)
{
	size_t written = 0;
	if (!t->done)
		return SS_ESTATE;
	if (len == 0)
		return 0;
	if (t->offloaded) {
		const uint8_t *p = data;
		while (len > 0) {
			size_t n = len > REC_MAX_PLAIN ? REC_MAX_PLAIN : len;
			int rc = seal(t, CT_APPDATA, p, n);
			if (rc)
				return rc;
			p += n;
			len -= n;
		}
		return 0;
	}
	int r = SSL_write_ex(t->ssl, data, len, &written);
	if (r != 1 || written != len)
		return fail(t, SSL_get_error(t->ssl, r));
	return 0;
}

size_t tls_take_out(struct tls *t, struct buf *out)
{
	if (t->offloaded) {
		size_t n = t->out.len;
		if (n == 0)
			return 0;
		buf_append(out, t->out.data, n);
		buf_free(&t->out);
		return n;
	}
	size_t pending = BIO_ctrl_pending(t->wbio);
	if (pending == 0)
		return 0;
	buf_reserve(out, pending);
	size_t got = 0;
	if (BIO_read_ex(t->wbio, out->data + out->len, pending, &got) != 1)
		return 0;
	out->len += got;
	return got;
}

void tls_shutdown(struct tls *t)
{
	if (t->offloaded) {
		static const uint8_t close_notify[2] = {1, 0}; /* warning, close_notify */
		(void)seal(t, CT_ALERT, close_notify, sizeof close_notify);
		return;
	}
	if (t->done)
		(void)SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool tls_handshake_done(const struct tls *t)
{
	return t->done;
}

const char *tls_error(const struct tls *t)
{
	return t->err[0] ? t->err : "no error";
}

const char *tls_peer_cn(const struct tls *t)
{
	return t->peer_cn;
}

const uint8_t *tls_peer_spki(const struct tls *t, size_t *len)
{
	*len = t->peer_spki_len;
	return t->peer_spki;
}

const uint8_t *tls_peer_fingerprint(const struct tls *t)
{
	return t->peer_fp;
}

const char *tls_peer_serial(const struct tls *t)
{
	return t->peer_serial;
}

bool tls_peer_node_digest(const struct tls *t, uint8_t out[32])
{
	if (t->peer_is_node)
		memcpy(out, t->peer_node_digest, 32);
	return t->peer_is_node;
}

bool tls_offloaded(const struct tls *t)
{
	return t->offloaded;
}
