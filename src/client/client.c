/*
 * client.c - the public client library: a synchronous HTTPS/JSON client for
 * the manager's API, plus the per-user client config file.
 *
 * Each request opens one TLS connection (TLS 1.2 or newer, server verified
 * against the swarm CA and checked for the host name or IP address of the
 * configured addr), sends one HTTP/1.1 request with "Connection: close" and
 * reads the answer until EOF or until the Content-Length is satisfied. The
 * socket is non-blocking and every wait goes through poll() against one
 * deadline per request, so a silent or slow server cannot hold the caller
 * longer than timeout_ms. Socket I/O goes through a small BIO that uses
 * send(MSG_NOSIGNAL), so a peer that resets the connection never raises
 * SIGPIPE in the host program.
 *
 * This file is part of libseeswarm and may only use src/core and the
 * libraries (OpenSSL, jansson).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/config.h"
#include "core/core.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TOKEN_LEN 4096
#define MAX_PATH_LEN 8192
#define MAX_METHOD_LEN 16
#define MAX_INTERIM 8
#define EXPECT_WAIT_MS 3000 /* how long a blob upload waits for "100 Continue", at most */
#define MAX_CHUNK_LINE 1024
/* Raw bytes read may exceed header + body by the chunked framing overhead. */
#define MAX_RAW ((size_t)CLIENT_MAX_HEADER + CLIENT_MAX_BODY + 1024u * 1024u)
#define ERR_LEN 256

struct ss_client {
	char *addr;
	char host[256];
	char port[8];
	char *token;
	char *ca_file;
	int timeout_ms;
	uint64_t wait_ms;   /* extra time the next answer may take (ss_job_watch); 0 otherwise */
	SSL_CTX *ctx;
	char err[ERR_LEN];
};

/* Detail of the last failed ss_client_open on this thread. */
static _Thread_local char g_open_err[ERR_LEN];

static void set_err(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(char *dst, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, ERR_LEN, fmt, ap);
	va_end(ap);
}

const char *client_last_error(const ss_client *c)
{
	return c ? c->err : g_open_err;
}

/* ---- config file ------------------------------------------------------ */

char *client_config_default_path(void)
{
	const char *p = getenv("SEESWARM_CONFIG");
	if (p && *p)
		return xstrdup(p);
	p = getenv("XDG_CONFIG_HOME");
	if (p && p[0] == '/')
		return xasprintf("%s/seeswarm/config.json", p);
	p = getenv("HOME");
	if (p && *p)
		return xasprintf("%s/.config/seeswarm/config.json", p);
	return NULL;
}

/* Creates every missing directory on the way to dir with mode 0700. */
static int mkdir_parents_private(const char *dir)
{
	int rc = 0;
	char *copy = xstrdup(dir);
	size_t n = strlen(copy);
	for (size_t i = 1; i <= n; i++) {
		if (copy[i] != '/' && copy[i] != '\0')
			continue;
		char saved = copy[i];
		copy[i] = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
			rc = SS_EIO;
			goto out;
		}
		copy[i] = saved;
	}
	struct stat st;
	if (stat(copy, &st) != 0 || !S_ISDIR(st.st_mode))
		rc = SS_EIO;
out:
	free(copy);
	return rc;
}

int client_config_write(const char *path, const char *addr, const char *token,
			const char *ca_file)
{
	int rc = 0;
	char *dir = NULL, *text = NULL;
	json_t *root = NULL;

	if (!path || !*path || !addr || !*addr) {
		rc = SS_EINVAL;
		goto out;
	}
	dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		rc = mkdir_parents_private(dir);
		if (rc)
			goto out;
	}
	root = json_object();
	if (!root)
		fatal("out of memory");
	json_object_set_new(root, "addr", json_string(addr));
	if (token)
		json_object_set_new(root, "token", json_string(token));
	if (ca_file)
		json_object_set_new(root, "ca_file", json_string(ca_file));
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text) {
		rc = SS_EINVAL; /* a string that is not valid UTF-8 */
		goto out;
	}
	size_t n = strlen(text);
	char *full = xasprintf("%s\n", text);
	rc = file_write_atomic(path, full, n + 1, 0600);
	free(full);
out:
	free(text);
	json_decref(root);
	free(dir);
	return rc;
}

/* The fields found in the config file; strings are owned by root. */
struct file_cfg {
	json_t *root;
	const char *addr;
	const char *token;
	const char *ca_file;
	char *path;
};

static int get_opt_string(json_t *root, const char *key, const char **out)
{
	json_t *v = json_object_get(root, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return SS_ECONFIG;
	if (json_string_length(v) > 0)
		*out = json_string_value(v);
	return 0;
}

/*
 * Loads the config file, if any. A missing file is not an error (every
 * field stays NULL); an unreadable, oversized or malformed one is SS_ECONFIG.
 */
static int file_cfg_load(struct file_cfg *fc)
{
	int rc = 0;
	char *text = NULL;
	size_t len = 0;
	json_error_t jerr;

	memset(fc, 0, sizeof *fc);
	fc->path = client_config_default_path();
	if (!fc->path)
		goto out;
	rc = file_read(fc->path, CLIENT_CONFIG_MAX, &text, &len);
	if (rc == SS_ENOTFOUND) {
		rc = 0;
		goto out;
	}
	if (rc) {
		set_err(g_open_err, "cannot read config file %s: %s", fc->path,
			rc == SS_ETOOBIG ? "larger than 64 KiB" : ss_strerror(rc));
		rc = SS_ECONFIG;
		goto out;
	}
	fc->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!fc->root || !json_is_object(fc->root)) {
		set_err(g_open_err, "config file %s: %s", fc->path,
			fc->root ? "not a JSON object" : jerr.text);
		rc = SS_ECONFIG;
		goto out;
	}
	if (get_opt_string(fc->root, "addr", &fc->addr) ||
	    get_opt_string(fc->root, "token", &fc->token) ||
	    get_opt_string(fc->root, "ca_file", &fc->ca_file)) {
		set_err(g_open_err, "config file %s: addr, token and ca_file must be strings",
			fc->path);
		rc = SS_ECONFIG;
		goto out;
	}
out:
	free(text);
	return rc;
}

static void file_cfg_free(struct file_cfg *fc)
{
	json_decref(fc->root);
	free(fc->path);
}

/* ---- open/close ------------------------------------------------------- */

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* A bearer token is 1..MAX_TOKEN_LEN visible ASCII characters. */
static bool token_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > MAX_TOKEN_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			return false;
	return true;
}

static void openssl_err(char *dst, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[160] = "unknown error";
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	set_err(dst, "%s: %s", what, buf);
	ERR_clear_error();
}

int ss_client_open(ss_client **out, const ss_client_opts *opts)
{
	static const ss_client_opts none;
	int rc = 0;
	ss_client *c = NULL;
	struct file_cfg fc;
	char *ca_joined = NULL;
	uint16_t port = 0;

	memset(&fc, 0, sizeof fc);
	g_open_err[0] = '\0';
	if (!out)
		return SS_EINVAL;
	*out = NULL;
	if (!opts)
		opts = &none;
	if (opts->timeout_ms < 0) {
		set_err(g_open_err, "negative timeout");
		return SS_EINVAL;
	}

	const char *addr = nonempty(opts->addr);
	const char *token = nonempty(opts->token);
	const char *ca = nonempty(opts->ca_file);
	if (!addr)
		addr = nonempty(getenv("SEESWARM_ADDR"));
	if (!token)
		token = nonempty(getenv("SEESWARM_TOKEN"));
	if (!ca)
		ca = nonempty(getenv("SEESWARM_CA"));
	if (!addr || !token || !ca) {
		rc = file_cfg_load(&fc);
		if (rc)
			goto out;
		if (!addr)
			addr = fc.addr;
		if (!token)
			token = fc.token;
		if (!ca && fc.ca_file) {
			/* A relative ca_file is taken relative to the config file. */
			const char *slash = strrchr(fc.path, '/');
			if (fc.ca_file[0] != '/' && slash)
				ca = ca_joined = xasprintf("%.*s/%s", (int)(slash - fc.path),
							   fc.path, fc.ca_file);
			else
				ca = fc.ca_file;
		}
	}
	if (!addr) {
		set_err(g_open_err, "no manager address: use --addr, SEESWARM_ADDR or %s",
			fc.path ? fc.path : "a config file");
		rc = SS_ECONFIG;
		goto out;
	}

	c = xcalloc(1, sizeof *c);
	c->addr = xstrdup(addr);
	c->token = token ? xstrdup(token) : NULL;
	c->ca_file = ca ? xstrdup(ca) : NULL;
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	if (addr_split(c->addr, c->host, sizeof c->host, &port) != 0 || port == 0) {
		set_err(g_open_err, "bad manager address \"%s\" (want HOST:PORT)", c->addr);
		rc = SS_ECONFIG;
		goto out;
	}
	snprintf(c->port, sizeof c->port, "%u", (unsigned)port);
	if (c->token && !token_valid(c->token)) {
		set_err(g_open_err, "bad token (want 1..%d visible ASCII characters)",
			MAX_TOKEN_LEN);
		rc = SS_ECONFIG;
		goto out;
	}

	ERR_clear_error();
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx) {
		openssl_err(g_open_err, "SSL_CTX_new");
		rc = SS_ETLS;
		goto out;
	}
	if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1) {
		openssl_err(g_open_err, "TLS version");
		rc = SS_ETLS;
		goto out;
	}
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	/* A missing close_notify is detected by the HTTP framing instead. */
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (c->ca_file) {
		if (access(c->ca_file, R_OK) != 0) {
			set_err(g_open_err, "cannot read CA file %s: %s", c->ca_file,
				strerror(errno));
			rc = SS_ECONFIG;
			goto out;
		}
		if (SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL) != 1) {
			char what[ERR_LEN];
			snprintf(what, sizeof what, "cannot load CA file %s", c->ca_file);
			openssl_err(g_open_err, what);
			rc = SS_ECONFIG;
			goto out;
		}
	} else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
		openssl_err(g_open_err, "cannot load the system trust store");
		rc = SS_ETLS;
		goto out;
	}
	*out = c;
	c = NULL;
out:
	ss_client_close(c);
	free(ca_joined);
	file_cfg_free(&fc);
	return rc;
}

void ss_client_close(ss_client *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	free(c->addr);
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	free(c->ca_file);
	free(c);
}

const char *ss_client_addr(const ss_client *c)
{
	return c ? c->addr : NULL;
}

const char *client_ca_file(const ss_client *c)
{
	return c ? c->ca_file : NULL;
}

/* ---- socket BIO without SIGPIPE ---------------------------------------- */

static BIO_METHOD *g_sock_method;
static pthread_once_t g_sock_once = PTHREAD_ONCE_INIT;

/* The BIO's state; owned by the request, which outlives the BIO. */
struct sockbio {
	int fd;
	bool eof; /* recv returned 0; OpenSSL asks through BIO_CTRL_EOF */
};

static int sockbio_fd(BIO *b)
{
	return ((struct sockbio *)BIO_get_data(b))->fd;
}

static int sockbio_write(BIO *b, const char *data, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = send(sockbio_fd(b), data, (size_t)len, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return -1;
	}
	return (int)n;
}

static int sockbio_read(BIO *b, char *data, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = recv(sockbio_fd(b), data, (size_t)len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_read(b);
		return -1;
	}
	if (n == 0)
		((struct sockbio *)BIO_get_data(b))->eof = true;
	return (int)n;
}

static int sockbio_puts(BIO *b, const char *s)
{
	return sockbio_write(b, s, (int)strlen(s));
}

static long sockbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return ((struct sockbio *)BIO_get_data(b))->eof ? 1 : 0;
	default:
		return 0;
	}
}

static int sockbio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void sockbio_init_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "seeswarm client socket");
	if (!m || BIO_meth_set_write(m, sockbio_write) != 1 ||
	    BIO_meth_set_read(m, sockbio_read) != 1 || BIO_meth_set_puts(m, sockbio_puts) != 1 ||
	    BIO_meth_set_ctrl(m, sockbio_ctrl) != 1 || BIO_meth_set_create(m, sockbio_create) != 1)
		fatal("cannot create the client socket BIO method");
	g_sock_method = m;
}

static BIO *sockbio_new(struct sockbio *sb)
{
	pthread_once(&g_sock_once, sockbio_init_method);
	BIO *b = BIO_new(g_sock_method);
	if (!b)
		fatal("out of memory (BIO_new)");
	BIO_set_data(b, sb);
	return b;
}

/* ---- one request -------------------------------------------------------- */

/* State of one request; everything is released by req_done. */
struct req {
	ss_client *c;
	uint64_t deadline;
	int fd;
	SSL *ssl;
	struct sockbio sb;
};

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(struct req *r, short events)
{
	for (;;) {
		uint64_t now = time_mono_ms();
		if (now >= r->deadline) {
			set_err(r->c->err, "timed out after %d ms talking to %s", r->c->timeout_ms,
				r->c->addr);
			return SS_ETIMEDOUT;
		}
		uint64_t left = r->deadline - now;
		struct pollfd pfd = {.fd = r->fd, .events = events};
		int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_err(r->c->err, "poll: %s", strerror(errno));
			return SS_EIO;
		}
		if (n > 0)
			return 0;
	}
}

static int connect_one(struct req *r, const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		set_err(r->c->err, "socket: %s", strerror(errno));
		return SS_ECONN;
	}
	r->fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			set_err(r->c->err, "connect to %s: %s", r->c->addr, strerror(errno));
			return SS_ECONN;
		}
		int rc = wait_fd(r, POLLOUT);
		if (rc)
			return rc;
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
			soerr = errno;
		if (soerr) {
			set_err(r->c->err, "connect to %s: %s", r->c->addr, strerror(soerr));
			return SS_ECONN;
		}
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return 0;
}

/* Connects r->fd to the client's address, trying every resolved address. */
static int req_connect(struct req *r)
{
	struct addrinfo hints, *res = NULL;
	int rc = SS_ECONN;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	int g = getaddrinfo(r->c->host, r->c->port, &hints, &res);
	if (g != 0) {
		set_err(r->c->err, "cannot resolve %s: %s", r->c->host, gai_strerror(g));
		goto out;
	}
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(r, ai);
		if (rc == 0 || rc == SS_ETIMEDOUT)
			goto out;
		if (r->fd >= 0) {
			close(r->fd);
			r->fd = -1;
		}
	}
out:
	if (res)
		freeaddrinfo(res);
	return rc;
}

/*
 * Handles a non-positive return of an SSL_* call: waits for the socket when
 * OpenSSL asks for it and returns 0 to retry, or returns a failure code.
 * Sets *eof instead when the peer closed the connection and eof is non-NULL.
 */
static int ssl_wait(struct req *r, int ret, const char *what, bool *eof)
{
	int e = SSL_get_error(r->ssl, ret);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(r, POLLIN);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(r, POLLOUT);
	case SSL_ERROR_ZERO_RETURN:
		if (eof) {
			*eof = true;
			return 0;
		}
		set_err(r->c->err, "%s: connection closed by %s", what, r->c->addr);
		return SS_ECLOSED;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == EPIPE || errno == ECONNRESET) {
			set_err(r->c->err, "%s: connection closed by %s", what, r->c->addr);
			ERR_clear_error();
			return SS_ECLOSED;
		}
		set_err(r->c->err, "%s: %s", what, strerror(errno));
		ERR_clear_error();
		return SS_EIO;
	default: {
		long vr = SSL_get_verify_result(r->ssl);
		if (vr != X509_V_OK) {
			set_err(r->c->err, "%s: certificate of %s rejected: %s", what, r->c->addr,
				X509_verify_cert_error_string(vr));
			ERR_clear_error();
		} else {
			openssl_err(r->c->err, what);
		}
		return SS_ETLS;
	}
	}
}

static bool is_ip_literal(const char *host)
{
	unsigned char tmp[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

static int req_handshake(struct req *r)
{
	r->ssl = SSL_new(r->c->ctx);
	if (!r->ssl) {
		openssl_err(r->c->err, "SSL_new");
		return SS_ETLS;
	}
	r->sb.fd = r->fd;
	r->sb.eof = false;
	BIO *b = sockbio_new(&r->sb);
	SSL_set_bio(r->ssl, b, b);
	if (is_ip_literal(r->c->host)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), r->c->host) != 1) {
			openssl_err(r->c->err, "X509_VERIFY_PARAM_set1_ip_asc");
			return SS_ETLS;
		}
	} else {
		if (SSL_set1_host(r->ssl, r->c->host) != 1 ||
		    SSL_set_tlsext_host_name(r->ssl, r->c->host) != 1) {
			openssl_err(r->c->err, "SSL_set1_host");
			return SS_ETLS;
		}
	}
	for (;;) {
		int ret = SSL_connect(r->ssl);
		if (ret == 1)
			break;
		int rc = ssl_wait(r, ret, "TLS handshake", NULL);
		if (rc == SS_ECLOSED || rc == SS_EIO)
			rc = SS_ETLS;
		if (rc)
			return rc;
	}
	/* SSL_VERIFY_PEER already enforced this; check again to fail closed. */
	if (SSL_get_verify_result(r->ssl) != X509_V_OK || !SSL_get0_peer_certificate(r->ssl)) {
		set_err(r->c->err, "TLS handshake: server %s presented no valid certificate",
			r->c->addr);
		return SS_ETLS;
	}
	return 0;
}

static int req_write(struct req *r, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		int chunk = len > (1u << 20) ? (1 << 20) : (int)len;
		int ret = SSL_write(r->ssl, p, chunk);
		if (ret > 0) {
			p += ret;
			len -= (size_t)ret;
			continue;
		}
		int rc = ssl_wait(r, ret, "sending request", NULL);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- HTTP response parsing ---------------------------------------------- */

struct http_head {
	size_t end;  /* offset of the first body byte */
	int status;
	bool chunked;
	bool has_length;
	bool no_body;
	uint64_t length;
};

static bool is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/*
 * Finds the line starting at pos. Sets *llen to its length without CR LF and
 * *next to the start of the following line. Returns SS_ETRUNC when no line
 * end lies in raw and the line could still be at most maxlen long, or
 * too_long when it is longer than maxlen.
 */
static int next_line(const char *raw, size_t len, size_t pos, size_t maxlen, int too_long,
		     size_t *llen, size_t *next)
{
	size_t avail = len - pos;
	size_t scan = avail < maxlen + 2 ? avail : maxlen + 2;
	const char *nl = memchr(raw + pos, '\n', scan);
	if (!nl)
		return avail < maxlen + 2 ? SS_ETRUNC : too_long;
	size_t l = (size_t)(nl - (raw + pos));
	*next = pos + l + 1;
	if (l > 0 && raw[pos + l - 1] == '\r')
		l--;
	if (l > maxlen)
		return too_long;
	*llen = l;
	return 0;
}

static bool eq_nocase(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static int parse_status_line(const char *s, size_t n, int *status)
{
	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
	    s[8] != ' ')
		return SS_EPROTO;
	int v = 0;
	for (int i = 9; i < 12; i++) {
		if (s[i] < '0' || s[i] > '9')
			return SS_EPROTO;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 100 || v > 599 || (n > 12 && s[12] != ' '))
		return SS_EPROTO;
	*status = v;
	return 0;
}

static int parse_header_line(const char *s, size_t n, struct http_head *h)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= n || s[i] != ':')
		return SS_EPROTO; /* also refuses obsolete line folding */
	const char *name = s;
	size_t name_len = i;
	i++;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	size_t vend = n;
	while (vend > i && (s[vend - 1] == ' ' || s[vend - 1] == '\t'))
		vend--;
	const char *val = s + i;
	size_t vlen = vend - i;
	for (size_t k = 0; k < vlen; k++) {
		unsigned char ch = (unsigned char)val[k];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return SS_EPROTO;
	}
	if (eq_nocase(name, name_len, "content-length")) {
		if (vlen == 0 || vlen > 20)
			return vlen ? SS_ETOOBIG : SS_EPROTO;
		uint64_t v = 0;
		for (size_t k = 0; k < vlen; k++) {
			if (val[k] < '0' || val[k] > '9')
				return SS_EPROTO;
			if (v > CLIENT_MAX_BODY)
				return SS_ETOOBIG;
			v = v * 10 + (uint64_t)(val[k] - '0');
		}
		if (v > CLIENT_MAX_BODY)
			return SS_ETOOBIG;
		if (h->has_length && h->length != v)
			return SS_EPROTO;
		h->has_length = true;
		h->length = v;
	} else if (eq_nocase(name, name_len, "transfer-encoding")) {
		/* Only "chunked" is supported, and only once. */
		if (h->chunked || !eq_nocase(val, vlen, "chunked"))
			return SS_EPROTO;
		h->chunked = true;
	}
	return 0;
}

/*
 * Parses the header blocks at the start of raw, skipping interim 1xx
 * responses. Returns SS_ETRUNC when more data is needed.
 */
static int head_parse(const char *raw, size_t len, struct http_head *h)
{
	size_t pos = 0;
	for (int block = 0; block < MAX_INTERIM; block++) {
		memset(h, 0, sizeof *h);
		bool first = true;
		for (;;) {
			size_t llen = 0, next = 0;
			if (pos >= CLIENT_MAX_HEADER)
				return SS_ETOOBIG;
			int rc = next_line(raw, len, pos, CLIENT_MAX_HEADER - pos, SS_ETOOBIG,
					   &llen, &next);
			if (rc)
				return rc;
			const char *line = raw + pos;
			pos = next;
			if (first) {
				rc = parse_status_line(line, llen, &h->status);
				first = false;
			} else if (llen == 0) {
				break;
			} else {
				rc = parse_header_line(line, llen, h);
			}
			if (rc)
				return rc;
		}
		h->end = pos;
		if (h->status == 101)
			return SS_EPROTO;
		if (h->status >= 200) {
			if (h->status == 204 || h->status == 304)
				h->no_body = true;
			if (h->chunked)
				h->has_length = false;
			return 0;
		}
	}
	return SS_EPROTO;
}

static int chunked_decode(const char *raw, size_t len, size_t pos, struct buf *out)
{
	for (;;) {
		size_t llen = 0, next = 0;
		int rc = next_line(raw, len, pos, MAX_CHUNK_LINE, SS_EPROTO, &llen, &next);
		if (rc)
			return rc;
		const char *line = raw + pos;
		uint64_t size = 0;
		size_t i = 0;
		for (; i < llen; i++) {
			char ch = line[i];
			int d;
			if (ch >= '0' && ch <= '9')
				d = ch - '0';
			else if (ch >= 'a' && ch <= 'f')
				d = ch - 'a' + 10;
			else if (ch >= 'A' && ch <= 'F')
				d = ch - 'A' + 10;
			else
				break;
			if (size > CLIENT_MAX_BODY)
				return SS_ETOOBIG;
			size = size * 16 + (uint64_t)d;
		}
		if (i == 0)
			return SS_EPROTO;
		while (i < llen && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i < llen && line[i] != ';')
			return SS_EPROTO;
		if (size > CLIENT_MAX_BODY - out->len)
			return SS_ETOOBIG;
		pos = next;
		if (size == 0)
			break;
		if (len - pos < size)
			return SS_ETRUNC;
		buf_append(out, raw + pos, (size_t)size);
		pos += (size_t)size;
		if (pos < len && raw[pos] == '\r')
			pos++;
		if (pos >= len)
			return SS_ETRUNC;
		if (raw[pos] != '\n')
			return SS_EPROTO;
		pos++;
	}
	/* Trailer fields, ignored, up to an empty line. */
	size_t trailer_start = pos;
	for (;;) {
		size_t llen = 0, next = 0;
		size_t used = pos - trailer_start;
		if (used >= CLIENT_MAX_HEADER)
			return SS_ETOOBIG;
		int rc = next_line(raw, len, pos, CLIENT_MAX_HEADER - used, SS_ETOOBIG, &llen,
				   &next);
		if (rc)
			return rc;
		pos = next;
		if (llen == 0)
			return 0;
	}
}

int client_http_parse(const char *raw, size_t len, int *status, char **body, size_t *body_len)
{
	struct http_head h;
	struct buf out;
	int rc;

	buf_init(&out);
	rc = head_parse(raw, len, &h);
	if (rc)
		goto out;
	if (h.no_body) {
		/* No body by definition. */
	} else if (h.chunked) {
		rc = chunked_decode(raw, len, h.end, &out);
		if (rc)
			goto out;
	} else if (h.has_length) {
		if (len - h.end < h.length) {
			rc = SS_ETRUNC;
			goto out;
		}
		buf_append(&out, raw + h.end, (size_t)h.length);
	} else {
		if (len - h.end > CLIENT_MAX_BODY) {
			rc = SS_ETOOBIG;
			goto out;
		}
		buf_append(&out, raw + h.end, len - h.end);
	}
	buf_append(&out, "", 1);
	*status = h.status;
	*body_len = out.len - 1;
	*body = (char *)out.data;
	buf_init(&out);
out:
	buf_free(&out);
	return rc;
}

/*
 * Reads the response into raw until EOF, or until a Content-Length (or a
 * status without a body) says it is complete.
 */
static int req_read(struct req *r, struct buf *raw)
{
	struct http_head h;
	bool have_head = false;
	for (;;) {
		if (have_head && !h.chunked && (h.no_body || h.has_length) &&
		    raw->len - h.end >= (h.no_body ? 0 : h.length))
			return 0;
		if (raw->len >= MAX_RAW + 1) {
			set_err(r->c->err, "response from %s is too large", r->c->addr);
			return SS_ETOOBIG;
		}
		buf_reserve(raw, 16384);
		size_t room = raw->cap - raw->len;
		if (room > MAX_RAW + 1 - raw->len)
			room = MAX_RAW + 1 - raw->len;
		if (room > INT_MAX)
			room = INT_MAX;
		int ret = SSL_read(r->ssl, raw->data + raw->len, (int)room);
		if (ret > 0) {
			raw->len += (size_t)ret;
			if (!have_head) {
				int rc = head_parse((const char *)raw->data, raw->len, &h);
				if (rc == 0)
					have_head = true;
				else if (rc != SS_ETRUNC)
					return rc;
			}
			continue;
		}
		bool eof = false;
		int rc = ssl_wait(r, ret, "reading response", &eof);
		if (rc)
			return rc;
		if (eof)
			return 0;
	}
}

static bool method_valid(const char *m)
{
	size_t n = strlen(m);
	if (n == 0 || n > MAX_METHOD_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)m[i]))
			return false;
	return true;
}

static bool path_valid(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > MAX_PATH_LEN || p[0] != '/')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return false;
	return true;
}

int ss_client_request(ss_client *c, const char *method, const char *path,
		      const char *body, size_t body_len, int *status,
		      char **resp, size_t *resp_len)
{
	int rc = 0;
	struct req r = {.c = c, .fd = -1};
	struct buf head, raw;
	char *rbody = NULL;
	size_t rlen = 0;
	int st = 0;

	buf_init(&head);
	buf_init(&raw);
	if (status)
		*status = 0;
	if (resp)
		*resp = NULL;
	if (resp_len)
		*resp_len = 0;
	if (!c)
		return SS_EINVAL;
	c->err[0] = '\0';
	if (!method || !path || !method_valid(method) || !path_valid(path) ||
	    (body_len > 0 && !body)) {
		set_err(c->err, "invalid method, path or body");
		return SS_EINVAL;
	}
	if (body_len > CLIENT_MAX_BODY) {
		set_err(c->err, "request body larger than %u bytes", CLIENT_MAX_BODY);
		return SS_ETOOBIG;
	}

	ERR_clear_error();
	r.deadline = time_mono_ms() + (uint64_t)c->timeout_ms;
	rc = req_connect(&r);
	if (rc)
		goto out;
	rc = req_handshake(&r);
	if (rc)
		goto out;

	buf_printf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: libseeswarm/%s\r\n"
		   "Accept: application/json\r\nConnection: close\r\n",
		   method, path, c->addr, SS_VERSION);
	if (c->token)
		buf_printf(&head, "Authorization: Bearer %s\r\n", c->token);
	if (body)
		buf_printf(&head, "Content-Type: application/json\r\n");
	if (body || strcmp(method, "GET") != 0)
		buf_printf(&head, "Content-Length: %zu\r\n", body_len);
	buf_printf(&head, "\r\n");
	rc = req_write(&r, head.data, head.len);
	if (rc == 0 && body_len > 0)
		rc = req_write(&r, body, body_len);
	if (rc)
		goto out;

	/* A request the manager holds until something changes may take its wait on top. */
	r.deadline = time_mono_ms() + (uint64_t)c->timeout_ms + c->wait_ms;
	rc = req_read(&r, &raw);
	if (rc)
		goto out;
	if (raw.len == 0) {
		set_err(c->err, "%s closed the connection without answering", c->addr);
		rc = SS_ECLOSED;
		goto out;
	}
	rc = client_http_parse((const char *)raw.data, raw.len, &st, &rbody, &rlen);
	if (rc) {
		set_err(c->err, "bad HTTP response from %s: %s", c->addr, ss_strerror(rc));
		goto out;
	}
	if (status)
		*status = st;
	if (resp_len)
		*resp_len = rlen;
	if (resp) {
		*resp = rbody;
		rbody = NULL;
	}
out:
	if (r.ssl) {
		if (rc == 0)
			(void)SSL_shutdown(r.ssl); /* best effort, never waits */
		SSL_free(r.ssl);
	}
	if (r.fd >= 0)
		close(r.fd);
	ERR_clear_error();
	if (head.data)
		OPENSSL_cleanse(head.data, head.len); /* holds the token */
	buf_free(&head);
	buf_free(&raw);
	free(rbody);
	return rc;
}

/* ---- convenience calls -------------------------------------------------- */

/* Maps an HTTP status to the convenience calls' codes. */
static int status_code(int status)
{
	if (status >= 200 && status < 300)
		return 0;
	if (status == 404)
		return SS_ENOTFOUND;
	if (status == 401 || status == 403)
		return SS_EAUTH;
	if (status == 429)
		return SS_EQUOTA;
	return SS_EHTTP;
}

/* Sends a request and maps the status as the public header describes. */
static int call(ss_client *c, const char *method, const char *path, const char *body,
		char **json)
{
	int status = 0;
	char *resp = NULL;
	size_t len = 0;

	if (!json)
		return SS_EINVAL;
	*json = NULL;
	int rc = ss_client_request(c, method, path, body, body ? strlen(body) : 0, &status,
				   &resp, &len);
	if (rc)
		return rc;
	rc = status_code(status);
	if (rc && len == 0) {
		free(resp);
		resp = NULL;
	}
	*json = resp;
	return rc;
}

int ss_nodes_list(ss_client *c, int include_all, char **json)
{
	return call(c, "GET", include_all ? "/v1/nodes?all=1" : "/v1/nodes", NULL, json);
}

int ss_nodes_watch(ss_client *c, int include_all, uint64_t index, unsigned wait_ms, char **json)
{
	if (json)
		*json = NULL;
	if (!c || wait_ms > 300000)
		return SS_EINVAL;
	char *path = xasprintf("/v1/nodes?%sindex=%llu&wait=%ums", include_all ? "all=1&" : "",
			       (unsigned long long)index, wait_ms);
	c->wait_ms = wait_ms;
	int rc = call(c, "GET", path, NULL, json);
	c->wait_ms = 0;
	free(path);
	return rc;
}

int ss_node_get(ss_client *c, const char *id, char **json)
{
	if (json)
		*json = NULL;
	if (!id || !ident_valid(id))
		return SS_EINVAL;
	char *path = xasprintf("/v1/nodes/%s", id);
	int rc = call(c, "GET", path, NULL, json);
	free(path);
	return rc;
}

int ss_node_drain(ss_client *c, const char *id, char **json)
{
	if (json)
		*json = NULL;
	if (!id || !ident_valid(id))
		return SS_EINVAL;
	char *path = xasprintf("/v1/nodes/%s/drain", id);
	int rc = call(c, "POST", path, NULL, json);
	free(path);
	return rc;
}

int ss_node_attest(ss_client *c, const char *id, char **json)
{
	if (json)
		*json = NULL;
	if (!id || !ident_valid(id))
		return SS_EINVAL;
	char *path = xasprintf("/v1/nodes/%s/attest", id);
	int rc = call(c, "POST", path, NULL, json);
	free(path);
	return rc;
}

int ss_health(ss_client *c, char **json)
{
	return call(c, "GET", "/v1/health", NULL, json);
}

/* ---- blobs -------------------------------------------------------------- */

/* Connects, handshakes and sends a request head for a body of len bytes of ctype. */
/*
 * Connects and sends a request head. With ctype, the head announces a body of
 * len bytes, and with expect it asks the server to answer before the body
 * is sent (Expect: 100-continue).
 */
static int stream_begin(struct req *r, const char *method, const char *path, const char *ctype,
			uint64_t len, bool expect)
{
	struct buf head;
	int rc;
	buf_init(&head);
	ERR_clear_error();
	r->deadline = time_mono_ms() + (uint64_t)r->c->timeout_ms;
	if ((rc = req_connect(r)) != 0 || (rc = req_handshake(r)) != 0)
		goto out;
	buf_printf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: libseeswarm/%s\r\n"
		   "Connection: close\r\n", method, path, r->c->addr, SS_VERSION);
	if (r->c->token)
		buf_printf(&head, "Authorization: Bearer %s\r\n", r->c->token);
	if (ctype)
		buf_printf(&head, "Content-Type: %s\r\nContent-Length: %llu\r\n", ctype,
			   (unsigned long long)len);
	if (ctype && expect)
		buf_printf(&head, "Expect: 100-continue\r\n");
	buf_printf(&head, "\r\n");
	rc = req_write(r, head.data, head.len);
out:
	if (head.data)
		OPENSSL_cleanse(head.data, head.len);
	buf_free(&head);
	return rc;
}

static void stream_end(struct req *r)
{
	if (r->ssl)
		SSL_free(r->ssl);
	r->ssl = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	ERR_clear_error();
}


/*
 * After a request head with Expect: 100-continue, reads the server's first
 * answer. Sets *go when the body should be sent: on "100 Continue", or when
 * nothing arrives within EXPECT_WAIT_MS or half the client's timeout,
 * whichever is shorter (a server that ignores Expect may wait for the body). Otherwise the final answer (a refusal) has begun in
 * raw, and req_read completes it. Returns 0 or an error code.
 */
static int wait_continue(struct req *r, struct buf *raw, bool *go)
{
	uint64_t full = r->deadline;
	uint64_t wait = (uint64_t)r->c->timeout_ms / 2;
	uint64_t soon = time_mono_ms() + (wait < EXPECT_WAIT_MS ? wait : EXPECT_WAIT_MS);
	*go = false;
	r->deadline = soon < full ? soon : full;
	int rc = 0;
	for (;;) {
		const char *end = raw->len ? memmem(raw->data, raw->len, "\r\n\r\n", 4) : NULL;
		if (end) {
			int status = 0;
			size_t line = (size_t)((const char *)memchr(raw->data, '\r', raw->len) - (const char *)raw->data);
			if (parse_status_line((const char *)raw->data, line, &status) != 0) {
				rc = SS_EPROTO;
			} else if (status == 100) {
				/* Anything after the interim answer belongs to the final one. */
				size_t used = (size_t)(end + 4 - (const char *)raw->data);
				memmove(raw->data, raw->data + used, raw->len - used);
				raw->len -= used;
				*go = true;
			}
			break;
		}
		if (raw->len > CLIENT_MAX_HEADER) {
			rc = SS_ETOOBIG;
			break;
		}
		buf_reserve(raw, 4096);
		int ret = SSL_read(r->ssl, raw->data + raw->len, 4096);
		if (ret > 0) {
			raw->len += (size_t)ret;
			continue;
		}
		bool eof = false;
		rc = ssl_wait(r, ret, "waiting for the answer to Expect", &eof);
		if (rc == SS_ETIMEDOUT && raw->len == 0 && time_mono_ms() < full) {
			ERR_clear_error();
			r->c->err[0] = '\0';
			*go = true;
			rc = 0;
			break;
		}
		if (rc || eof)
			break;
	}
	r->deadline = full;
	return rc;
}

/* Copies the "error" member of a JSON error body into the client's last error. */
static void note_error_body(ss_client *c, int status, const char *body, size_t len)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	const char *msg = json_is_string(e) ? json_string_value(e)
					    : json_string_value(json_object_get(e, "message"));
	set_err(c->err, "HTTP %d: %s", status, msg ? msg : "request failed");
	json_decref(j);
}

int ss_blob_put(ss_client *c, const void *data, size_t len, char digest_hex[65])
{
	uint8_t d[SHA256_LEN];
	char path[80];
	int status = 0, rc;
	char *resp = NULL;
	size_t rlen = 0;
	struct req r = {.c = c, .fd = -1};
	struct buf raw;
	buf_init(&raw);
	if (!c || (len > 0 && !data) || !digest_hex)
		return SS_EINVAL;
	sha256(data, len, d);
	hex_encode(d, SHA256_LEN, digest_hex);
	snprintf(path, sizeof path, "/v1/blobs/%s", digest_hex);
	/* Content addressing: a blob the manager already holds is not sent again. */
	rc = ss_client_request(c, "HEAD", path, NULL, 0, &status, &resp, &rlen);
	free(resp);
	resp = NULL;
	if (rc == 0 && status == 200)
		return 0;
	bool go = true;
	if ((rc = stream_begin(&r, "PUT", path, "application/octet-stream", len, len > 0)) != 0 ||
	    (len > 0 && (rc = wait_continue(&r, &raw, &go)) != 0))
		goto out;
	/* A refusal (a quota, a size limit) comes before any of the bytes are sent. */
	for (size_t off = 0; go && off < len;) {
		size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
		if ((rc = req_write(&r, (const uint8_t *)data + off, n)) != 0)
			goto out;
		off += n;
		/* The timeout bounds each step of a transfer, not the whole of it. */
		r.deadline = time_mono_ms() + (uint64_t)c->timeout_ms;
	}
	if ((rc = req_read(&r, &raw)) != 0)
		goto out;
	if ((rc = client_http_parse((const char *)raw.data, raw.len, &status, &resp, &rlen)) != 0) {
		set_err(c->err, "bad HTTP response from %s: %s", c->addr, ss_strerror(rc));
		goto out;
	}
	if ((rc = status_code(status)) != 0)
		note_error_body(c, status, resp, rlen);
out:
	stream_end(&r);
	buf_free(&raw);
	free(resp);
	return rc;
}

int ss_blob_put_file(ss_client *c, const char *path, char digest_hex[65], uint64_t *size)
{
	struct stat st;
	void *map = NULL;
	int rc;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0) {
		if (c)
			set_err(c->err, "%s: %s", path ? path : "(null)", strerror(errno));
		return path ? (errno == ENOENT ? SS_ENOTFOUND : SS_EIO) : SS_EINVAL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_err(c->err, "%s: not a regular file", path);
		rc = SS_EINVAL;
		goto out;
	}
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			set_err(c->err, "%s: %s", path, strerror(errno));
			rc = SS_EIO;
			goto out;
		}
	}
	rc = ss_blob_put(c, map, (size_t)st.st_size, digest_hex);
	if (rc == 0 && size)
		*size = (uint64_t)st.st_size;
out:
	if (map)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return rc;
}

/* Reads at least one more byte of the response into raw; *eof at the end of the stream. */
static int read_more(struct req *r, struct buf *raw, bool *eof)
{
	for (;;) {
		buf_reserve(raw, 65536);
		size_t room = raw->cap - raw->len;
		int ret = SSL_read(r->ssl, raw->data + raw->len, room > INT_MAX ? INT_MAX : (int)room);
		if (ret > 0) {
			raw->len += (size_t)ret;
			r->deadline = time_mono_ms() + (uint64_t)r->c->timeout_ms;
			return 0;
		}
		int rc = ssl_wait(r, ret, "reading response", eof);
		if (rc || *eof)
			return rc;
	}
}

int ss_blob_get_file(ss_client *c, const char *digest_hex, const char *path)
{
	uint8_t want[SHA256_LEN], got[SHA256_LEN];
	char url[80];
	struct req r = {.c = c, .fd = -1};
	struct buf raw;
	struct http_head h;
	char *tmp = NULL;
	int fd = -1, rc;
	bool eof = false;
	EVP_MD_CTX *md = NULL;
	buf_init(&raw);
	if (!c || !digest_hex || !path || strlen(digest_hex) != 64 ||
	    hex_decode(digest_hex, want, SHA256_LEN) != 0)
		return SS_EINVAL;
	snprintf(url, sizeof url, "/v1/blobs/%s", digest_hex);
	if ((rc = stream_begin(&r, "GET", url, NULL, 0, false)) != 0)
		goto out;
	/* The head first: it is small and bounded like any response head. */
	for (;;) {
		if (raw.len > 0) {
			rc = head_parse((const char *)raw.data, raw.len, &h);
			if (rc != SS_ETRUNC)
				break;
		}
		if ((rc = read_more(&r, &raw, &eof)) != 0)
			goto out;
		if (eof) {
			set_err(c->err, "%s closed the connection mid-response", c->addr);
			rc = SS_ECLOSED;
			goto out;
		}
	}
	if (rc)
		goto out;
	if (h.status != 200) {
		char *body = NULL;
		size_t blen = 0;
		while (!eof && raw.len < 65536 && read_more(&r, &raw, &eof) == 0)
			;
		if (client_http_parse((const char *)raw.data, raw.len, &h.status, &body, &blen) == 0)
			note_error_body(c, h.status, body, blen);
		free(body);
		rc = status_code(h.status);
		goto out;
	}
	if (!h.has_length || h.chunked) {
		set_err(c->err, "blob response from %s has no Content-Length", c->addr);
		rc = SS_EPROTO;
		goto out;
	}
	tmp = xasprintf("%s.partXXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		set_err(c->err, "%s: %s", path, strerror(errno));
		rc = SS_EIO;
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		abort();
	uint64_t left = h.length;
	size_t at = h.end;
	for (;;) {
		size_t n = raw.len - at;
		if (n > left)
			n = (size_t)left;
		if (n > 0) {
			if (EVP_DigestUpdate(md, raw.data + at, n) != 1 ||
			    write(fd, raw.data + at, n) != (ssize_t)n) {
				set_err(c->err, "%s: write failed", path);
				rc = SS_EIO;
				goto out;
			}
			left -= n;
		}
		raw.len = 0;
		at = 0;
		if (left == 0)
			break;
		if ((rc = read_more(&r, &raw, &eof)) != 0)
			goto out;
		if (eof) {
			set_err(c->err, "%s closed the connection %llu bytes short", c->addr,
				(unsigned long long)left);
			rc = SS_ETRUNC;
			goto out;
		}
	}
	unsigned dl = 0;
	if (EVP_DigestFinal_ex(md, got, &dl) != 1 || CRYPTO_memcmp(got, want, SHA256_LEN) != 0) {
		set_err(c->err, "blob %s: the bytes received do not hash to its digest", digest_hex);
		rc = SS_EINTEGRITY;
		goto out;
	}
	if (fchmod(fd, 0644) != 0 || fsync(fd) != 0 || rename(tmp, path) != 0) {
		set_err(c->err, "%s: %s", path, strerror(errno));
		rc = SS_EIO;
		goto out;
	}
	free(tmp);
	tmp = NULL;
out:
	if (fd >= 0)
		close(fd);
	if (tmp)
		(void)unlink(tmp);
	free(tmp);
	EVP_MD_CTX_free(md);
	stream_end(&r);
	buf_free(&raw);
	return rc;
}

/* ---- jobs --------------------------------------------------------------- */

/* Job and task ids are "j-" plus hex, with ".N" for a task; nothing else reaches a URL. */
static bool job_id_valid(const char *id, bool task)
{
	size_t n = id ? strlen(id) : 0;
	if (n < 3 || n > 80 || id[0] != 'j' || id[1] != '-')
		return false;
	bool dot = false;
	for (size_t i = 2; i < n; i++) {
		char ch = id[i];
		if (ch == '.' && task && !dot && i + 1 < n) {
			dot = true;
			continue;
		}
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return dot == task;
}

int ss_job_submit(ss_client *c, const char *spec_json, char **json)
{
	if (json)
		*json = NULL;
	if (!spec_json)
		return SS_EINVAL;
	return call(c, "POST", "/v1/jobs", spec_json, json);
}

int ss_job_plan(ss_client *c, const char *spec_json, char **json)
{
	if (json)
		*json = NULL;
	if (!spec_json)
		return SS_EINVAL;
	return call(c, "POST", "/v1/jobs/plan", spec_json, json);
}

int ss_jobs_list(ss_client *c, char **json)
{
	return ss_jobs_find(c, NULL, json);
}

/* True for a job-list cursor: digits, a dot, then a name. */
static bool cursor_valid(const char *s)
{
	size_t n = strspn(s, "0123456789");
	return n > 0 && n <= 19 && s[n] == '.' && ident_valid(s + n + 1);
}

int ss_jobs_find(ss_client *c, const ss_jobs_filter *f, char **json)
{
	if (json)
		*json = NULL;
	static const ss_jobs_filter none = {0};
	if (!f)
		f = &none;
	if ((f->state && !ident_valid(f->state)) || (f->tenant && !ident_valid(f->tenant)) ||
	    f->limit > 10000 || (f->before && !cursor_valid(f->before)))
		return SS_EINVAL;
	/* Every value passed the checks above, so none needs percent-encoding. */
	struct buf path;
	buf_init(&path);
	buf_printf(&path, "/v1/jobs");
	char sep = '?';
	if (f->state) {
		buf_printf(&path, "%cstate=%s", sep, f->state);
		sep = '&';
	}
	if (f->tenant) {
		buf_printf(&path, "%ctenant=%s", sep, f->tenant);
		sep = '&';
	}
	if (f->limit) {
		buf_printf(&path, "%climit=%u", sep, f->limit);
		sep = '&';
	}
	if (f->before)
		buf_printf(&path, "%cbefore=%s", sep, f->before);
	buf_append(&path, "", 1);
	int rc = call(c, "GET", (const char *)path.data, NULL, json);
	buf_free(&path);
	return rc;
}

int ss_token_create(ss_client *c, const char *tenant, uint64_t ttl_seconds, char **json)
{
	ss_token_opts o = {.tenant = tenant, .ttl_seconds = ttl_seconds};
	return ss_token_make(c, &o, json);
}

int ss_token_make(ss_client *c, const ss_token_opts *o, char **json)
{
	if (json)
		*json = NULL;
	if (!o || !o->tenant || !ident_valid(o->tenant) || o->ttl_seconds > INT64_MAX)
		return SS_EINVAL;
	json_t *b = json_pack("{s:s}", "tenant", o->tenant);
	if (o->ttl_seconds)
		json_object_set_new(b, "ttl_seconds", json_integer((json_int_t)o->ttl_seconds));
	if (o->read_only)
		json_object_set_new(b, "read_only", json_true());
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	if (!body)
		abort();
	int rc = call(c, "POST", "/v1/tokens", body, json);
	free(body);
	return rc;
}

int ss_audit_list(ss_client *c, uint64_t after, unsigned limit, char **json)
{
	if (json)
		*json = NULL;
	if (limit < 1 || limit > 1000)
		return SS_EINVAL;
	char path[80];
	snprintf(path, sizeof path, "/v1/audit?after=%llu&limit=%u", (unsigned long long)after, limit);
	return call(c, "GET", path, NULL, json);
}

int ss_tenants_list(ss_client *c, char **json)
{
	return call(c, "GET", "/v1/tenants", NULL, json);
}

int ss_tokens_list(ss_client *c, char **json)
{
	return call(c, "GET", "/v1/tokens", NULL, json);
}

int ss_token_revoke(ss_client *c, const char *id, char **json)
{
	if (json)
		*json = NULL;
	if (!id || strlen(id) != 16 || strspn(id, "0123456789abcdef") != 16)
		return SS_EINVAL;
	char path[40];
	snprintf(path, sizeof path, "/v1/tokens/%s", id);
	return call(c, "DELETE", path, NULL, json);
}

/* Calls METHOD prefix + id + suffix after checking id's shape. */
static int job_call(ss_client *c, const char *method, const char *prefix, const char *id,
		    const char *suffix, bool task, char **json)
{
	if (json)
		*json = NULL;
	if (!job_id_valid(id, task))
		return SS_EINVAL;
	char *path = xasprintf("%s%s%s", prefix, id, suffix);
	int rc = call(c, method, path, NULL, json);
	free(path);
	return rc;
}

int ss_job_get(ss_client *c, const char *id, char **json)
{
	return job_call(c, "GET", "/v1/jobs/", id, "", false, json);
}

int ss_job_watch(ss_client *c, const char *id, uint64_t index, unsigned wait_ms, char **json)
{
	if (json)
		*json = NULL;
	if (!c || !job_id_valid(id, false) || wait_ms > 300000)
		return SS_EINVAL;
	char *path = xasprintf("/v1/jobs/%s?index=%llu&wait=%ums", id, (unsigned long long)index, wait_ms);
	c->wait_ms = wait_ms;
	int rc = call(c, "GET", path, NULL, json);
	c->wait_ms = 0;
	free(path);
	return rc;
}

int ss_job_rerun(ss_client *c, const char *id, char **json)
{
	return job_call(c, "POST", "/v1/jobs/", id, "/rerun", false, json);
}

int ss_job_launch(ss_client *c, const char *id, char **json)
{
	return job_call(c, "POST", "/v1/jobs/", id, "/launch", false, json);
}

int ss_job_dispatch(ss_client *c, const char *id, const char *dispatch_json, char **json)
{
	if (json)
		*json = NULL;
	if (!job_id_valid(id, false))
		return SS_EINVAL;
	char *path = xasprintf("/v1/jobs/%s/dispatch", id);
	int rc = call(c, "POST", path, dispatch_json ? dispatch_json : "{}", json);
	free(path);
	return rc;
}

int ss_job_cancel(ss_client *c, const char *id, char **json)
{
	return job_call(c, "DELETE", "/v1/jobs/", id, "", false, json);
}

int ss_job_tasks(ss_client *c, const char *id, char **json)
{
	return job_call(c, "GET", "/v1/jobs/", id, "/tasks", false, json);
}

int ss_task_output(ss_client *c, const char *task_id, uint64_t stdout_from, uint64_t stderr_from,
		   char **json)
{
	char suffix[80];
	snprintf(suffix, sizeof suffix, "/output?stdout=%llu&stderr=%llu",
		 (unsigned long long)stdout_from, (unsigned long long)stderr_from);
	return job_call(c, "GET", "/v1/tasks/", task_id, suffix, true, json);
}

int ss_task_logs(ss_client *c, const char *task_id, char **json)
{
	return job_call(c, "GET", "/v1/tasks/", task_id, "/logs", true, json);
}

int ss_job_explain(ss_client *c, const char *id, const char *task, char **json)
{
	if (json)
		*json = NULL;
	if (!job_id_valid(id, false) || (task && (!*task || strlen(task) > 128)))
		return SS_EINVAL;
	struct buf path;
	buf_init(&path);
	buf_printf(&path, "/v1/jobs/%s/explain", id);
	if (task) {
		/* Task names such as "count[3]" are percent-encoded into the query. */
		buf_printf(&path, "?task=");
		for (const unsigned char *p = (const unsigned char *)task; *p; p++) {
			if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    *p == '-' || *p == '_' || *p == '.')
				buf_printf(&path, "%c", *p);
			else
				buf_printf(&path, "%%%02X", *p);
		}
	}
	buf_append(&path, "", 1);
	int rc = call(c, "GET", (const char *)path.data, NULL, json);
	buf_free(&path);
	return rc;
}

const char *ss_client_last_error(const ss_client *c)
{
	return client_last_error(c);
}
