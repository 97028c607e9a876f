/* tls.c - TLS 1.3 sessions over memory BIOs (OpenSSL 3). */
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/tls.h"

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
};

struct tls {
	SSL *ssl;
	BIO *rbio; /* network -> SSL */
	BIO *wbio; /* SSL -> network */
	bool done;
	char err[160];
};

int tls_ctx_new(struct tls_ctx **out, bool server, const char *ca_file, X509 *cert,
		EVP_PKEY *key)
{
	int rc = SS_ETLS;
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
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (expected_name && SSL_set1_host(t->ssl, expected_name) != 1)
			fatal("tls: SSL_set1_host failed");
	}
	return t;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* frees both BIOs */
	free(t);
}

int tls_set_identity(struct tls *t, X509 *cert, EVP_PKEY *key)
{
	if (SSL_use_certificate(t->ssl, cert) != 1 || SSL_use_PrivateKey(t->ssl, key) != 1) {
		ERR_clear_error();
		return SS_ETLS;
	}
	return 0;
}

/* Records the reason for a failed SSL call and clears OpenSSL's error queue. */
static int fail(struct tls *t, int ssl_err)
{
	unsigned long e = ERR_peek_last_error();
	long vr = SSL_get_verify_result(t->ssl);
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
	for (;;) {
		buf_reserve(plain, 16384);
		size_t got = 0;
		int r = SSL_read_ex(t->ssl, plain->data + plain->len, plain->cap - plain->len, &got);
		if (SSL_is_init_finished(t->ssl))
			t->done = true;
		if (r == 1) {
			plain->len += got;
			continue;
		}
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			/*
			 * Idle sessions give their record buffers back. This is a no-op
			 * while a partial record is buffered.
			 */
			if (t->done)
				(void)SSL_free_buffers(t->ssl);
			return 0;
		}
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
	int r = SSL_write_ex(t->ssl, data, len, &written);
	if (r != 1 || written != len)
		return fail(t, SSL_get_error(t->ssl, r));
	return 0;
}

size_t tls_take_out(struct tls *t, struct buf *out)
{
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

X509 *tls_peer_cert(const struct tls *t)
{
	return t->done ? SSL_get0_peer_certificate(t->ssl) : NULL;
}
