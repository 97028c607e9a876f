/* conn.c - framed mutual-TLS connections on libuv. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "core/core.h"
#include "net/conn.h"
#include "net/frame.h"
#include "net/msg.h"

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	struct tls *tls;
	struct frame_decoder dec;
	const struct conn_cbs *cbs;
	struct conn_limits limits;
	void *data;
	int handles;          /* open libuv handles; memory is freed at 0 */
	bool closing;
	bool lingering;       /* conn_finish: sent everything, reading until the peer closes */
	bool opened;
	bool reading;
	int reason;
	char *why;
	char peer[64];
	double tokens;        /* frame-rate bucket */
	uint64_t tokens_ms;
};

struct wreq {
	uv_write_t req;
	size_t len;
	uint8_t data[];
};

static struct conn_stats g_stats;
static _Thread_local struct buf t_scratch;   /* ciphertext staging */
static _Thread_local struct buf t_plain;     /* plaintext staging */
static _Thread_local char t_readbuf[65536];

const struct conn_stats *conn_stats(void)
{
	return &g_stats;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles > 0)
		return;
	if (c->cbs->on_close)
		c->cbs->on_close(c, c->reason, c->why ? c->why : "");
	tls_free(c->tls);
	frame_decoder_free(&c->dec);
	free(c->why);
	free(c);
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct conn *c = req->handle->data;
	if (status < 0 && !c->closing)
		conn_close(c, SS_EIO, uv_strerror(status));
	free(w);
}

/* Sends whatever ciphertext the TLS session has produced. */
static void flush(struct conn *c)
{
	t_scratch.len = 0;
	if (tls_take_out(c->tls, &t_scratch) == 0)
		return;
	g_stats.bytes_out += t_scratch.len;
	uv_buf_t b = uv_buf_init((char *)t_scratch.data, (unsigned)t_scratch.len);
	size_t off = 0;
	int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (r > 0)
		off = (size_t)r;
	else if (r != UV_EAGAIN) {
		if (!c->closing)
			conn_close(c, SS_EIO, uv_strerror(r));
		return;
	}
	if (off == t_scratch.len)
		return;
	size_t left = t_scratch.len - off;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + left > c->limits.max_write_queue) {
		if (!c->closing)
			conn_close(c, SS_ELIMIT, "peer is not reading (write queue full)");
		return;
	}
	struct wreq *w = xmalloc(sizeof *w + left);
	w->len = left;
	memcpy(w->data, t_scratch.data + off, left);
	uv_buf_t wb = uv_buf_init((char *)w->data, (unsigned)left);
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
	if (r < 0) {
		free(w);
		if (!c->closing)
			conn_close(c, SS_EIO, uv_strerror(r));
	}
}

void conn_close(struct conn *c, int reason, const char *why)
{
	if (c->closing)
		return;
	bool lingered = c->lingering;
	c->closing = true;
	c->lingering = false;
	c->reason = reason;
	free(c->why);
	c->why = xstrdup(why ? why : "");
	if (reason)
		g_stats.closed_error++;
	if (c->opened) {
		g_stats.open--;
		if (!lingered) {
			/* conn_finish sent the close_notify and shut the write side down already. */
			tls_shutdown(c->tls);
			flush(c);
		}
	}
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

bool conn_closing(const struct conn *c)
{
	return c->closing || c->lingering;
}

/* The linger is over (the peer closed, or linger_ms passed): closes with conn_finish's why. */
static void linger_end(struct conn *c)
{
	char *why = c->why;
	c->why = NULL;
	c->lingering = false;
	conn_close(c, 0, why);
	free(why);
}

static void on_linger_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->lingering && !c->closing)
		linger_end(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->handle->data;
	/* UV_ECANCELED when the handle closed first; then there is nothing left to do. */
	if (status < 0 && c->lingering && !c->closing)
		linger_end(c);
}

void conn_finish(struct conn *c, uint64_t linger_ms, const char *why)
{
	if (c->closing || c->lingering)
		return;
	if (!c->opened) {
		conn_close(c, 0, why);
		return;
	}
	c->lingering = true;
	free(c->why);
	c->why = xstrdup(why ? why : "");
	tls_shutdown(c->tls);
	flush(c);
	if (c->closing)
		return;
	int r = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown);
	if (r < 0) {
		linger_end(c);
		return;
	}
	uv_timer_stop(&c->timer);
	uv_timer_start(&c->timer, on_linger_timer, linger_ms, 0);
}

void conn_set_rate(struct conn *c, uint32_t frames_per_sec, uint32_t burst)
{
	c->limits.frames_per_sec = frames_per_sec;
	c->limits.frame_burst = burst ? burst : 64;
	c->tokens = c->limits.frame_burst;
	c->tokens_ms = uv_now(c->tcp.loop);
}

size_t conn_write_queued(const struct conn *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static bool rate_ok(struct conn *c)
{
	if (c->limits.frames_per_sec == 0)
		return true;
	uint64_t now = uv_now(c->tcp.loop);
	double add = (double)(now - c->tokens_ms) * c->limits.frames_per_sec / 1000.0;
	c->tokens_ms = now;
	c->tokens += add;
	if (c->tokens > c->limits.frame_burst)
		c->tokens = c->limits.frame_burst;
	if (c->tokens < 1.0)
		return false;
	c->tokens -= 1.0;
	return true;
}

static int deliver(void *arg, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct conn *c = arg;
	if (c->closing)
		return SS_ECLOSED;
	if (!rate_ok(c)) {
		conn_close(c, SS_ELIMIT, "frame rate limit exceeded");
		return SS_ELIMIT;
	}
	g_stats.frames_in++;
	int rc = c->cbs->on_frame(c, type, payload, len);
	if (rc && !c->closing)
		conn_close(c, rc, ss_strerror(rc));
	return c->closing ? SS_ECLOSED : 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	*b = uv_buf_init(t_readbuf, sizeof t_readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (c->closing || nread == 0)
		return;
	if (c->lingering) {
		/* Read and dropped, so the close is not a reset; the peer's end (or an error) ends the linger. */
		if (nread < 0)
			linger_end(c);
		return;
	}
	if (nread < 0) {
		if (nread == UV_EOF) {
			if (frame_decoder_pending(&c->dec))
				conn_close(c, SS_ETRUNC, "connection ended inside a frame");
			else
				conn_close(c, c->opened ? 0 : SS_ETLS,
					   c->opened ? "peer closed" : "peer closed during the TLS handshake");
		} else {
			conn_close(c, SS_EIO, uv_strerror((int)nread));
		}
		return;
	}
	g_stats.bytes_in += (uint64_t)nread;
	tls_feed(c->tls, (const uint8_t *)b->base, (size_t)nread);
	t_plain.len = 0;
	int rc = tls_read(c->tls, &t_plain);
	if (rc == SS_ETLS) {
		flush(c); /* the alert, if the peer still reads */
		if (!c->closing)
			conn_close(c, SS_ETLS, tls_error(c->tls));
		return;
	}
	if (!c->opened && tls_handshake_done(c->tls)) {
		c->opened = true;
		g_stats.open++;
		if (c->cbs->on_open)
			c->cbs->on_open(c);
		if (c->closing)
			return;
	}
	if (t_plain.len > 0) {
		/* The callbacks may send, which reuses t_scratch but not t_plain. */
		struct buf plain = t_plain;
		buf_init(&t_plain);
		int frc = frame_decoder_feed(&c->dec, plain.data, plain.len, deliver, c);
		/* Keep the larger buffer for reuse. */
		if (!t_plain.data)
			t_plain = plain;
		else
			buf_free(&plain);
		if (frc == SS_ETOOBIG && !c->closing)
			conn_close(c, SS_ETOOBIG, "frame larger than the maximum size");
		else if (frc == SS_EPROTO && !c->closing)
			conn_close(c, SS_EPROTO, "bad frame header");
		if (c->closing)
			return;
	}
	/*
	 * What TLS has to send back goes out after the frames were delivered: a
	 * peer that sent its last frames (a goodbye) and left makes this write
	 * fail, and the failure must not drop what it said before leaving.
	 */
	flush(c);
	if (c->closing)
		return;
	if (rc == SS_ECLOSED)
		conn_close(c, 0, "peer sent close_notify");
}

static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	conn_close(c, SS_ETIMEDOUT, c->opened ? "deadline passed" : "TLS handshake timed out");
}

int conn_set_user_timeout(struct conn *c, unsigned ms)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
		return SS_ESTATE;
	if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) != 0)
		return SS_EIO;
	return 0;
}

void conn_set_deadline(struct conn *c, uint64_t ms)
{
	if (c->closing || c->lingering)
		return;
	if (ms == 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timer, ms, 0);
}

static struct conn *conn_new(uv_loop_t *loop, struct tls_ctx *ctx, const char *expected_name,
			     const struct conn_cbs *cbs, const struct conn_limits *limits,
			     void *data)
{
	struct conn *c = xcalloc(1, sizeof *c);
	c->cbs = cbs;
	c->data = data;
	c->limits.max_frame = FRAME_MAX_DEFAULT;
	c->limits.max_write_queue = 8u << 20;
	if (limits) {
		if (limits->max_frame)
			c->limits.max_frame = limits->max_frame;
		if (limits->max_write_queue)
			c->limits.max_write_queue = limits->max_write_queue;
		c->limits.frames_per_sec = limits->frames_per_sec;
		c->limits.frame_burst = limits->frame_burst ? limits->frame_burst : 64;
	}
	c->tokens = c->limits.frame_burst;
	c->tokens_ms = uv_now(loop);
	frame_decoder_init(&c->dec, c->limits.max_frame);
	c->tls = tls_new(ctx, expected_name);
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	return c;
}

static void fill_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)&ss;
			uv_ip4_name(a, host, sizeof host);
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)&ss;
			uv_ip6_name(a, host, sizeof host);
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
}

int conn_accept(uv_stream_t *server, struct tls_ctx *ctx, const struct conn_cbs *cbs,
		const struct conn_limits *limits, void *data, struct conn **out)
{
	struct conn *c = conn_new(server->loop, ctx, NULL, cbs, limits, data);
	int r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r < 0) {
		conn_close(c, SS_EIO, uv_strerror(r));
		return SS_EIO;
	}
	g_stats.accepted++;
	uv_tcp_nodelay(&c->tcp, 1);
	fill_peer(c);
	r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
	if (r < 0) {
		conn_close(c, SS_EIO, uv_strerror(r));
		return SS_EIO;
	}
	c->reading = true;
	*out = c;
	return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->handle->data;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c, SS_ECONN, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	fill_peer(c);
	int r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
	if (r < 0) {
		conn_close(c, SS_EIO, uv_strerror(r));
		return;
	}
	c->reading = true;
	if (tls_start(c->tls) != 0) {
		conn_close(c, SS_ETLS, tls_error(c->tls));
		return;
	}
	flush(c);
}

int conn_connect(uv_loop_t *loop, const struct sockaddr *addr, struct tls_ctx *ctx,
		 const char *expected_name, X509 *ident_cert, EVP_PKEY *ident_key,
		 const struct conn_cbs *cbs, const struct conn_limits *limits, void *data,
		 struct conn **out)
{
	struct conn *c = conn_new(loop, ctx, expected_name, cbs, limits, data);
	if (ident_cert && ident_key && tls_set_identity(c->tls, ident_cert, ident_key) != 0) {
		conn_close(c, SS_ETLS, "cannot set client identity");
		*out = c;
		return 0;
	}
	int r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connect);
	if (r < 0)
		conn_close(c, SS_ECONN, uv_strerror(r));
	*out = c;
	return 0;
}

int conn_send_bytes(struct conn *c, const void *data, size_t len)
{
	if (c->closing || c->lingering)
		return SS_ECLOSED;
	int rc = tls_write(c->tls, data, len);
	if (rc) {
		conn_close(c, SS_ETLS, tls_error(c->tls));
		return rc;
	}
	flush(c);
	return c->closing ? SS_ECLOSED : 0;
}

int conn_send(struct conn *c, uint16_t type, const ProtobufCMessage *msg)
{
	if (c->closing || c->lingering)
		return SS_ECLOSED;
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > c->limits.max_frame)
		fatal("conn_send: message of %zu bytes over the frame limit", n);
	uint8_t stack[1024];
	uint8_t *p = n + FRAME_HDR_LEN <= sizeof stack ? stack : xmalloc(n + FRAME_HDR_LEN);
	frame_header(p, type, (uint32_t)n);
	protobuf_c_message_pack(msg, p + FRAME_HDR_LEN);
	g_stats.frames_out++;
	int rc = conn_send_bytes(c, p, n + FRAME_HDR_LEN);
	if (p != stack)
		free(p);
	return rc;
}

int conn_send_error(struct conn *c, int code, const char *why)
{
	Seeswarm__V1__Error e = SEESWARM__V1__ERROR__INIT;
	e.code = (uint32_t)-code;
	e.message = (char *)why;
	return conn_send(c, MSG_ERROR, &e.base);
}

void *conn_data(const struct conn *c)
{
	return c->data;
}

void conn_set_data(struct conn *c, void *data)
{
	c->data = data;
}

int conn_local_addr(const struct conn *c, struct sockaddr_storage *out)
{
	int len = sizeof *out;
	return uv_tcp_getsockname(&c->tcp, (struct sockaddr *)out, &len) == 0 ? 0 : SS_EIO;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

struct tls *conn_tls(const struct conn *c)
{
	return c->tls;
}
