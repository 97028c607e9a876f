/*
 * test_client.c - the client library: config resolution (opts > env > file),
 * the config file writer, and real HTTPS requests against a small OpenSSL
 * server running in a thread of this test.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/config.h"
#include "core/core.h"
#include "seeswarm.h"
#include "fixture.h"

/* ---- certificates ---------------------------------------------------------- */

struct cred {
	EVP_PKEY *key;
	X509 *cert;
};

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* Makes an EC P-256 certificate: a CA when issuer is NULL, else a server leaf for ip. */
static struct cred make_cred(const char *cn, const struct cred *issuer, const char *ip)
{
	struct cred c;
	c.key = EVP_EC_gen("P-256");
	assert_non_null(c.key);
	c.cert = X509_new();
	assert_non_null(c.cert);
	X509_set_version(c.cert, 2);
	uint8_t serial[8];
	rand_bytes(serial, sizeof serial);
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.cert));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(c.cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(c.cert), 3600);
	X509_set_pubkey(c.cert, c.key);
	X509_NAME *name = X509_get_subject_name(c.cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509 *icert = issuer ? issuer->cert : c.cert;
	EVP_PKEY *ikey = issuer ? issuer->key : c.key;
	X509_set_issuer_name(c.cert, X509_get_subject_name(icert));
	if (!issuer) {
		add_ext(c.cert, icert, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(c.cert, icert, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		char san[64];
		snprintf(san, sizeof san, "IP:%s", ip);
		add_ext(c.cert, icert, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(c.cert, icert, NID_ext_key_usage, "serverAuth");
		add_ext(c.cert, icert, NID_subject_alt_name, san);
	}
	assert_true(X509_sign(c.cert, ikey, EVP_sha256()) > 0);
	return c;
}

static void cred_free(struct cred *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->cert);
}

static void write_cert(const char *path, X509 *cert)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, cert), 1);
	fclose(f);
}

/* ---- the test server --------------------------------------------------------- */

struct server {
	int lfd;
	uint16_t port;
	SSL_CTX *ctx;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu;
	char last_req[16384];
	char addr[32];
};

/*
 * How the server answers a request head with Expect: 100-continue: 0 with
 * "100 Continue" and then reads the body, 1 with a 429 at once (the body is
 * never read), 2 as if it did not know Expect (it waits for the body).
 */
static atomic_int g_expect_mode;
static atomic_size_t g_body_bytes; /* body bytes the server read for the last request */

static void ssl_send(SSL *ssl, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		int w = SSL_write(ssl, s, (int)n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Reads one request (head plus Content-Length body) into req; returns its length or -1. */
static int read_request(SSL *ssl, char *req, size_t cap)
{
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		if (len + 1 >= cap)
			return -1;
		int r = SSL_read(ssl, req + len, (int)(cap - 1 - len));
		if (r <= 0)
			return -1;
		len += (size_t)r;
		req[len] = '\0';
		end = strstr(req, "\r\n\r\n");
	}
	size_t head = (size_t)(end + 4 - req);
	const char *cl = strcasestr(req, "\r\nContent-Length:");
	size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
	const char *ex = strcasestr(req, "\r\nExpect: 100-continue\r\n");
	if (ex && ex < end && atomic_load(&g_expect_mode) == 1) {
		atomic_store(&g_body_bytes, len - head);
		return (int)len;
	}
	if (ex && ex < end && atomic_load(&g_expect_mode) == 0)
		ssl_send(ssl, "HTTP/1.1 100 Continue\r\n\r\n");
	while (len < head + want && len + 1 < cap) {
		int r = SSL_read(ssl, req + len, (int)(cap - 1 - len));
		if (r <= 0)
			return -1;
		len += (size_t)r;
		req[len] = '\0';
	}
	atomic_store(&g_body_bytes, len - head);
	return (int)len;
}

/* Answers by path; returns false when the connection must end without close_notify. */
static bool answer(SSL *ssl, const char *req)
{
	char path[256] = "";
	sscanf(req, "%*s %255s", path);
	char resp[1024];
	if (!strcmp(path, "/chunked")) {
		/* Sent in pieces so the client sees several reads. */
		ssl_send(ssl, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			      "Content-Type: application/json\r\n\r\n");
		ssl_send(ssl, "7\r\nhello, \r\n");
		ssl_send(ssl, "d;ext=1\r\nchunked world\r\n1\r\n!\r\n");
		ssl_send(ssl, "0\r\nX-Trailer: t\r\n\r\n");
	} else if (!strcmp(path, "/echo")) {
		const char *body = strstr(req, "\r\n\r\n") + 4;
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
			 body);
		ssl_send(ssl, resp);
	} else if (!strcmp(path, "/eof")) {
		/* Ends with a bare TCP close, as many servers do. */
		ssl_send(ssl, "HTTP/1.0 200 OK\r\n\r\nuntil the end");
		return false;
	} else if (!strcmp(path, "/v1/nodes/missing")) {
		const char *b = "{\"error\":{\"code\":404,\"message\":\"no such node\"}}";
		snprintf(resp, sizeof resp, "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(b), b);
		ssl_send(ssl, resp);
	} else if (!strncmp(path, "/v1/nodes", 9)) {
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n{\"nodes\":[],\"path\":\"%s\"}",
			 strlen(path) + 22, path);
		ssl_send(ssl, resp);
	} else if (!strncmp(req, "PUT /v1/blobs/", 14) && atomic_load(&g_expect_mode) == 1) {
		const char *b = "{\"error\":{\"code\":429,\"message\":\"tenant t is over its quota\"}}";
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 429 Too Many Requests\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 strlen(b), b);
		ssl_send(ssl, resp);
	} else if (!strncmp(req, "PUT /v1/blobs/", 14)) {
		snprintf(resp, sizeof resp, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}");
		ssl_send(ssl, resp);
	} else if (!strcmp(path, "/v1/health")) {
		ssl_send(ssl, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
	} else if (!strcmp(path, "/trunc")) {
		ssl_send(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
	} else if (!strcmp(path, "/big")) {
		ssl_send(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
	} else if (!strcmp(path, "/badstatus")) {
		ssl_send(ssl, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n");
	} else if (!strncmp(path, "/v1/jobs/j-", 11)) {
		/* A job the manager holds until it changes: answered after 1.5 s when asked to wait. */
		if (strstr(path, "&wait=") && strcmp(strstr(path, "&wait="), "&wait=0ms") != 0)
			usleep(1500 * 1000);
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n{\"path\":\"%s\"}", strlen(path) + 11,
			 path);
		ssl_send(ssl, resp);
	} else if (!strcmp(path, "/slow")) {
		char tmp[64];
		(void)SSL_read(ssl, tmp, sizeof tmp); /* returns when the client gives up */
	} else {
		ssl_send(ssl, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
	}
	return true;
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	char *req = malloc(16384);
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		int fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		struct timeval tv = {.tv_sec = 2};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		SSL *ssl = SSL_new(s->ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1) {
			int n = read_request(ssl, req, 16384);
			if (n > 0) {
				pthread_mutex_lock(&s->mu);
				snprintf(s->last_req, sizeof s->last_req, "%s", req);
				pthread_mutex_unlock(&s->mu);
				if (answer(ssl, req))
					SSL_shutdown(ssl);
			}
		}
		SSL_free(ssl);
		close(fd);
		ERR_clear_error();
	}
	free(req);
	return NULL;
}

static struct server *server_start(const struct cred *leaf)
{
	struct server *s = calloc(1, sizeof *s);
	assert_non_null(s);
	pthread_mutex_init(&s->mu, NULL);
	s->ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(s->ctx);
	assert_int_equal(SSL_CTX_use_certificate(s->ctx, leaf->cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, leaf->key), 1);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	socklen_t sl = sizeof sa;
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	snprintf(s->addr, sizeof s->addr, "127.0.0.1:%u", (unsigned)s->port);
	assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
	return s;
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	SSL_CTX_free(s->ctx);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Copies the last request the server saw. */
static void server_last(struct server *s, char *out, size_t n)
{
	pthread_mutex_lock(&s->mu);
	snprintf(out, n, "%s", s->last_req);
	pthread_mutex_unlock(&s->mu);
}

/* ---- fixtures ----------------------------------------------------------------- */

static char g_dir[64];
static char g_ca1[128], g_ca2[128];
static struct cred g_cakey1, g_cakey2, g_leaf1, g_leaf2, g_leaf_ip2;
static struct server *g_srv;
static char *g_saved_home, *g_saved_xdg;

static char *path_in(const char *name)
{
	return xasprintf("%s/%s", g_dir, name);
}

static void clear_env(void)
{
	unsetenv("SEESWARM_ADDR");
	unsetenv("SEESWARM_TOKEN");
	unsetenv("SEESWARM_CA");
	unsetenv("SEESWARM_CONFIG");
}

static int group_setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	if (!fx_tmpdir_try(g_dir, sizeof g_dir, "test-client"))
		return -1;
	g_cakey1 = make_cred("test CA one", NULL, NULL);
	g_cakey2 = make_cred("test CA two", NULL, NULL);
	g_leaf1 = make_cred("server one", &g_cakey1, "127.0.0.1");
	g_leaf2 = make_cred("server two", &g_cakey2, "127.0.0.1");
	g_leaf_ip2 = make_cred("server elsewhere", &g_cakey1, "127.0.0.2");
	snprintf(g_ca1, sizeof g_ca1, "%s/ca1.pem", g_dir);
	snprintf(g_ca2, sizeof g_ca2, "%s/ca2.pem", g_dir);
	write_cert(g_ca1, g_cakey1.cert);
	write_cert(g_ca2, g_cakey2.cert);
	g_srv = server_start(&g_leaf1);
	const char *h = getenv("HOME"), *x = getenv("XDG_CONFIG_HOME");
	g_saved_home = h ? xstrdup(h) : NULL;
	g_saved_xdg = x ? xstrdup(x) : NULL;
	return 0;
}

static int group_teardown(void **state)
{
	server_stop(g_srv);
	cred_free(&g_cakey1);
	cred_free(&g_cakey2);
	cred_free(&g_leaf1);
	cred_free(&g_leaf2);
	cred_free(&g_leaf_ip2);
	fx_rmtree_try(g_dir);
	free(g_saved_home);
	free(g_saved_xdg);
	return 0;
}

/* Every test starts with no SEESWARM_* variables and the original HOME/XDG. */
static int test_setup(void **state)
{
	clear_env();
	if (g_saved_home)
		setenv("HOME", g_saved_home, 1);
	if (g_saved_xdg)
		setenv("XDG_CONFIG_HOME", g_saved_xdg, 1);
	return 0;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Opens a client against the test server with CA one, or fails the test. */
static ss_client *open_srv(int timeout_ms)
{
	ss_client *c = NULL;
	ss_client_opts o = {.addr = g_srv->addr, .token = "t0k", .ca_file = g_ca1,
			    .timeout_ms = timeout_ms};
	int rc = ss_client_open(&c, &o);
	if (rc)
		print_error("open: %s (%s)\n", ss_strerror(rc), client_last_error(NULL));
	assert_int_equal(rc, 0);
	return c;
}

/* ---- config tests --------------------------------------------------------------- */

static void test_config_write_roundtrip(void **state)
{
	char *dir = path_in("cw/a/b");
	char *path = path_in("cw/a/b/config.json");
	struct stat st;

	assert_int_equal(client_config_write(path, "127.0.0.1:7401", "s3cret", g_ca1), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "addr")), "127.0.0.1:7401");
	assert_string_equal(json_string_value(json_object_get(root, "token")), "s3cret");
	assert_string_equal(json_string_value(json_object_get(root, "ca_file")), g_ca1);
	json_decref(root);

	/* Overwriting keeps the mode and drops omitted fields. */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(client_config_write(path, "10.1.2.3:9", NULL, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	root = json_load_file(path, 0, &jerr);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "addr")), "10.1.2.3:9");
	assert_null(json_object_get(root, "token"));
	assert_null(json_object_get(root, "ca_file"));
	json_decref(root);

	/* The client reads what the writer wrote. */
	assert_int_equal(client_config_write(path, "127.0.0.1:7401", "s3cret", g_ca1), 0);
	setenv("SEESWARM_CONFIG", path, 1);
	char *def = client_config_default_path();
	assert_string_equal(def, path);
	free(def);
	ss_client *c = NULL;
	assert_int_equal(ss_client_open(&c, NULL), 0);
	assert_string_equal(ss_client_addr(c), "127.0.0.1:7401");
	ss_client_close(c);

	assert_int_equal(client_config_write(path, NULL, "x", NULL), SS_EINVAL);
	free(dir);
	free(path);
}

static void test_default_path(void **state)
{
	unsetenv("XDG_CONFIG_HOME");
	setenv("HOME", "/home/someone", 1);
	char *p = client_config_default_path();
	assert_string_equal(p, "/home/someone/.config/seeswarm/config.json");
	free(p);
	setenv("XDG_CONFIG_HOME", "/xdg", 1);
	p = client_config_default_path();
	assert_string_equal(p, "/xdg/seeswarm/config.json");
	free(p);
	setenv("SEESWARM_CONFIG", "/explicit.json", 1);
	p = client_config_default_path();
	assert_string_equal(p, "/explicit.json");
	free(p);
}

static void test_nothing_configured(void **state)
{
	ss_client *c = (ss_client *)0x1;
	char *missing = path_in("does-not-exist.json");
	unsetenv("HOME");
	unsetenv("XDG_CONFIG_HOME");
	setenv("SEESWARM_CONFIG", missing, 1);
	assert_int_equal(ss_client_open(&c, NULL), SS_ECONFIG);
	assert_null(c);

	unsetenv("SEESWARM_CONFIG");
	assert_null(client_config_default_path());
	assert_int_equal(ss_client_open(&c, NULL), SS_ECONFIG);
	/* A token alone is not enough. */
	setenv("SEESWARM_TOKEN", "abc", 1);
	assert_int_equal(ss_client_open(&c, NULL), SS_ECONFIG);
	assert_true(strlen(client_last_error(NULL)) > 0);
	free(missing);
}

static void test_addr_precedence(void **state)
{
	char *cfg = path_in("prec.json");
	ss_client *c = NULL;
	ss_client_opts o = {0};

	write_text(cfg, "{\"addr\":\"10.0.0.1:1\"}");
	setenv("SEESWARM_CONFIG", cfg, 1);
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_string_equal(ss_client_addr(c), "10.0.0.1:1");
	ss_client_close(c);

	setenv("SEESWARM_ADDR", "10.0.0.2:2", 1);
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_string_equal(ss_client_addr(c), "10.0.0.2:2");
	ss_client_close(c);

	o.addr = "[::1]:3";
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_string_equal(ss_client_addr(c), "[::1]:3");
	ss_client_close(c);

	/* Bad files and bad values are configuration errors. */
	unsetenv("SEESWARM_ADDR");
	o.addr = NULL;
	write_text(cfg, "{\"addr\": 7}");
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	write_text(cfg, "{\"addr\": \"x\", \"addr\": \"y\"}");
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	write_text(cfg, "not json");
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	write_text(cfg, "{\"addr\":\"no-port\"}");
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	write_text(cfg, "{\"addr\":\"127.0.0.1:1\",\"ca_file\":\"/nonexistent/ca.pem\"}");
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	o.addr = "127.0.0.1:1";
	o.ca_file = g_ca1;
	o.token = "two words";
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	o.token = "ok";
	assert_int_equal(ss_client_open(&c, &o), 0);
	ss_client_close(c);
	o.token = NULL;
	o.ca_file = NULL;

	char *big = xmalloc(CLIENT_CONFIG_MAX + 100);
	memset(big, ' ', CLIENT_CONFIG_MAX + 99);
	big[0] = '{';
	big[CLIENT_CONFIG_MAX + 98] = '}';
	big[CLIENT_CONFIG_MAX + 99] = '\0';
	write_text(cfg, big);
	o.addr = NULL;
	assert_int_equal(ss_client_open(&c, &o), SS_ECONFIG);
	free(big);
	free(cfg);
}

/* Token and CA resolution, observed through real requests. */
static void test_token_ca_precedence(void **state)
{
	char *cfg = path_in("prec2.json");
	char req[16384];
	int status = 0;
	char *body = NULL;
	ss_client *c = NULL;
	ss_client_opts o = {0};

	/* The file names the wrong CA: the request must fail verification. */
	assert_int_equal(client_config_write(cfg, g_srv->addr, "file-token", g_ca2), 0);
	setenv("SEESWARM_CONFIG", cfg, 1);
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL),
			 SS_ETLS);
	assert_null(body);
	assert_non_null(strstr(client_last_error(c), "certificate"));
	ss_client_close(c);

	/* The environment's CA wins over the file's; the token still comes from the file. */
	setenv("SEESWARM_CA", g_ca1, 1);
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL), 0);
	free(body);
	server_last(g_srv, req, sizeof req);
	assert_non_null(strstr(req, "\r\nAuthorization: Bearer file-token\r\n"));
	ss_client_close(c);

	setenv("SEESWARM_TOKEN", "env-token", 1);
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL), 0);
	free(body);
	server_last(g_srv, req, sizeof req);
	assert_non_null(strstr(req, "\r\nAuthorization: Bearer env-token\r\n"));
	ss_client_close(c);

	o.token = "opt-token";
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL), 0);
	free(body);
	server_last(g_srv, req, sizeof req);
	assert_non_null(strstr(req, "\r\nAuthorization: Bearer opt-token\r\n"));
	ss_client_close(c);

	/* The option's CA wins over the environment's. */
	o.ca_file = g_ca2;
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL),
			 SS_ETLS);
	ss_client_close(c);
	free(cfg);
}

/* ---- request tests --------------------------------------------------------------- */

static void test_request_chunked(void **state)
{
	ss_client *c = open_srv(0);
	int status = 0;
	char *body = NULL;
	size_t len = 0;
	char req[16384], host[64];

	assert_int_equal(ss_client_request(c, "GET", "/chunked", NULL, 0, &status, &body, &len), 0);
	assert_int_equal(status, 200);
	assert_string_equal(body, "hello, chunked world!");
	assert_int_equal(len, strlen("hello, chunked world!"));
	ss_free(body);

	server_last(g_srv, req, sizeof req);
	assert_true(strncmp(req, "GET /chunked HTTP/1.1\r\n", 23) == 0);
	snprintf(host, sizeof host, "\r\nHost: %s\r\n", g_srv->addr);
	assert_non_null(strstr(req, host));
	assert_non_null(strstr(req, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(req, "\r\nAuthorization: Bearer t0k\r\n"));
	assert_null(strstr(req, "Content-Type"));
	ss_client_close(c);
}

static void test_request_content_length(void **state)
{
	ss_client *c = open_srv(0);
	int status = 0;
	char *body = NULL;
	size_t len = 0;
	char req[16384];
	const char *payload = "{\"a\":1}";

	assert_int_equal(ss_client_request(c, "POST", "/echo", payload, strlen(payload), &status,
					   &body, &len),
			 0);
	assert_int_equal(status, 201);
	assert_string_equal(body, payload);
	assert_int_equal(len, strlen(payload));
	ss_free(body);
	server_last(g_srv, req, sizeof req);
	assert_true(strncmp(req, "POST /echo HTTP/1.1\r\n", 21) == 0);
	assert_non_null(strstr(req, "\r\nContent-Type: application/json\r\n"));
	assert_non_null(strstr(req, "\r\nContent-Length: 7\r\n"));

	/* A body delimited by the end of the connection. */
	assert_int_equal(ss_client_request(c, "GET", "/eof", NULL, 0, &status, &body, &len), 0);
	assert_int_equal(status, 200);
	assert_string_equal(body, "until the end");
	ss_free(body);
	ss_client_close(c);
}

/* Blob uploads ask before they send: a refusal costs no bytes, and a server that ignores Expect still gets them. */
static void test_blob_put_waits_for_continue(void **state)
{
	ss_client *c = open_srv(1000);
	char hex[65], req[16384];
	static uint8_t small[8000], big[1 << 20];
	memset(small, 's', sizeof small);
	memset(big, 'b', sizeof big);

	atomic_store(&g_expect_mode, 0);
	assert_int_equal(ss_blob_put(c, small, sizeof small, hex), 0);
	server_last(g_srv, req, sizeof req);
	assert_non_null(strstr(req, "\r\nExpect: 100-continue\r\n"));
	assert_int_equal(atomic_load(&g_body_bytes), sizeof small);

	atomic_store(&g_expect_mode, 1);
	assert_int_equal(ss_blob_put(c, big, sizeof big, hex), SS_EQUOTA);
	assert_non_null(strstr(ss_client_last_error(c), "tenant t is over its quota"));
	assert_int_equal(atomic_load(&g_body_bytes), 0);

	/* The client's timeout is 1 s: it waits half of that for "100 Continue", then sends. */
	atomic_store(&g_expect_mode, 2);
	uint64_t t0 = time_mono_ms();
	assert_int_equal(ss_blob_put(c, small, sizeof small, hex), 0);
	assert_true(time_mono_ms() - t0 >= 450);
	assert_int_equal(atomic_load(&g_body_bytes), sizeof small);
	atomic_store(&g_expect_mode, 0);
	ss_client_close(c);
}

static void test_convenience_calls(void **state)
{
	ss_client *c = open_srv(0);
	char *json = NULL;

	assert_int_equal(ss_node_get(c, "missing", &json), SS_ENOTFOUND);
	assert_non_null(json);
	assert_non_null(strstr(json, "no such node"));
	ss_free(json);

	assert_int_equal(ss_nodes_list(c, 1, &json), 0);
	assert_non_null(strstr(json, "\"path\":\"/v1/nodes?all=1\""));
	ss_free(json);
	assert_int_equal(ss_nodes_list(c, 0, &json), 0);
	assert_non_null(strstr(json, "\"path\":\"/v1/nodes\""));
	ss_free(json);

	assert_int_equal(ss_health(c, &json), SS_EAUTH);
	assert_null(json); /* empty error body */
	assert_int_equal(ss_node_get(c, "../etc", &json), SS_EINVAL);
	assert_int_equal(ss_client_request(c, "GET", "/a b", NULL, 0, NULL, NULL, NULL), SS_EINVAL);
	assert_int_equal(ss_client_request(c, "GE T", "/", NULL, 0, NULL, NULL, NULL), SS_EINVAL);
	ss_client_close(c);
}

/* A watch may take its wait on top of the client's timeout, and only that call may. */
static void test_job_watch(void **state)
{
	ss_client *c = open_srv(1000);
	char *json = NULL;
	uint64_t t0 = time_mono_ms();
	assert_int_equal(ss_job_watch(c, "j-0123456789ab", 1796174066304394ull, 2000, &json), 0);
	assert_true(time_mono_ms() - t0 >= 1400);
	assert_non_null(strstr(json, "\"path\":\"/v1/jobs/j-0123456789ab?index=1796174066304394&wait=2000ms\""));
	ss_free(json);
	/* Without a wait the 1 s timeout holds for the same slow answer. */
	assert_int_equal(ss_job_watch(c, "j-0123456789ab", 0, 0, &json), 0);
	ss_free(json);
	t0 = time_mono_ms();
	assert_int_equal(ss_client_request(c, "GET", "/v1/jobs/j-0123456789ab?index=1&wait=5s", NULL, 0, NULL,
					   NULL, NULL),
			 SS_ETIMEDOUT);
	assert_true(time_mono_ms() - t0 < 1400);
	assert_int_equal(ss_nodes_watch(c, 1, 5, 250, &json), 0);
	assert_non_null(strstr(json, "\"path\":\"/v1/nodes?all=1&index=5&wait=250ms\""));
	ss_free(json);
	assert_int_equal(ss_nodes_watch(c, 0, 6, 0, &json), 0);
	assert_non_null(strstr(json, "\"path\":\"/v1/nodes?index=6&wait=0ms\""));
	ss_free(json);
	assert_int_equal(ss_nodes_watch(c, 0, 6, 300001, &json), SS_EINVAL);
	assert_int_equal(ss_job_watch(c, "../x", 1, 10, &json), SS_EINVAL);
	assert_int_equal(ss_job_watch(c, "j-0123456789ab", 1, 300001, &json), SS_EINVAL);
	assert_null(json);
	ss_client_close(c);
}

static void test_bad_responses(void **state)
{
	ss_client *c = open_srv(0);
	int status = 0;
	char *body = NULL;

	assert_int_equal(ss_client_request(c, "GET", "/trunc", NULL, 0, &status, &body, NULL),
			 SS_ETRUNC);
	assert_int_equal(ss_client_request(c, "GET", "/big", NULL, 0, &status, &body, NULL),
			 SS_ETOOBIG);
	assert_int_equal(ss_client_request(c, "GET", "/badstatus", NULL, 0, &status, &body, NULL),
			 SS_EPROTO);
	assert_null(body);
	ss_client_close(c);

	/* A silent server runs into the timeout. */
	c = open_srv(200);
	uint64_t t0 = time_mono_ms();
	assert_int_equal(ss_client_request(c, "GET", "/slow", NULL, 0, &status, &body, NULL),
			 SS_ETIMEDOUT);
	uint64_t dt = time_mono_ms() - t0;
	assert_true(dt >= 150 && dt < 1500);
	ss_client_close(c);
}

static void test_connection_refused(void **state)
{
	/* Bind and close a listener to find a port nobody listens on. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t sl = sizeof sa;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	char addr[32];
	snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
	ss_client *c = NULL;
	ss_client_opts o = {.addr = addr, .ca_file = g_ca1};
	assert_int_equal(ss_client_open(&c, &o), 0);
	int status = 0;
	assert_int_equal(ss_client_request(c, "GET", "/", NULL, 0, &status, NULL, NULL), SS_ECONN);
	assert_non_null(strstr(client_last_error(c), addr));
	ss_client_close(c);
}

static void test_wrong_server_cert(void **state)
{
	int status = 0;
	char *body = NULL;

	/* Signed by another CA. */
	struct server *s = server_start(&g_leaf2);
	ss_client *c = NULL;
	ss_client_opts o = {.addr = s->addr, .ca_file = g_ca1};
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL),
			 SS_ETLS);
	assert_null(body);
	ss_client_close(c);
	server_stop(s);

	/* Right CA, but issued for another IP address. */
	s = server_start(&g_leaf_ip2);
	o.addr = s->addr;
	assert_int_equal(ss_client_open(&c, &o), 0);
	assert_int_equal(ss_client_request(c, "GET", "/echo", NULL, 0, &status, &body, NULL),
			 SS_ETLS);
	ss_client_close(c);
	server_stop(s);
}

/* ---- the response parser on its own ------------------------------------------------- */

static void expect_parse(const char *raw, int want_rc, int want_status, const char *want_body)
{
	int status = -1;
	char *body = NULL;
	size_t len = 0;
	int rc = client_http_parse(raw, strlen(raw), &status, &body, &len);
	if (rc != want_rc)
		print_error("input: %s\n", raw);
	assert_int_equal(rc, want_rc);
	if (rc == 0) {
		assert_int_equal(status, want_status);
		assert_string_equal(body, want_body);
		assert_int_equal(len, strlen(want_body));
	}
	free(body);
}

static void test_http_parse(void **state)
{
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 0, 200, "hi");
	expect_parse("HTTP/1.1 200 OK\r\ncontent-length:2 \r\n\r\nhi-extra", 0, 200, "hi");
	expect_parse("HTTP/1.1 200\nContent-Length: 2\n\nhi", 0, 200, "hi");
	expect_parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 1\r\n\r\nx",
		     0, 202, "x");
	expect_parse("HTTP/1.1 204 No Content\r\n\r\n", 0, 204, "");
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 99\r\n\r\n"
		     "3\r\nabc\r\n0\r\n\r\n",
		     0, 200, "abc");
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA \r\n0123456789\r\n0\r\n\r\n",
		     0, 200, "0123456789");
	/* Malformed. */
	expect_parse("HTTP/2 200 OK\r\n\r\n", SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 99 Low\r\n\r\n", SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		     SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", SS_EPROTO, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", SS_EPROTO, 0,
		     NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", SS_EPROTO, 0,
		     NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
		     SS_EPROTO, 0, NULL);
	/* Truncated. */
	expect_parse("HTTP/1.1 200 OK\r\nContent-Len", SS_ETRUNC, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", SS_ETRUNC, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", SS_ETRUNC, 0,
		     NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
		     SS_ETRUNC, 0, NULL);
	/* Too big. */
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\n", SS_ETOOBIG, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		     SS_ETOOBIG, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
		     SS_ETOOBIG, 0, NULL);
	expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000001\r\n", SS_ETOOBIG,
		     0, NULL);

	/* A header block over 16 KiB, with and without its end in sight. */
	size_t n = CLIENT_MAX_HEADER + 64;
	char *big = xmalloc(n + 64);
	strcpy(big, "HTTP/1.1 200 OK\r\nX-Pad: ");
	size_t l = strlen(big);
	memset(big + l, 'a', n - l);
	strcpy(big + n, "\r\n\r\n");
	expect_parse(big, SS_ETOOBIG, 0, NULL);
	big[n] = '\0';
	expect_parse(big, SS_ETOOBIG, 0, NULL);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_config_write_roundtrip, test_setup),
		cmocka_unit_test_setup(test_default_path, test_setup),
		cmocka_unit_test_setup(test_nothing_configured, test_setup),
		cmocka_unit_test_setup(test_addr_precedence, test_setup),
		cmocka_unit_test_setup(test_token_ca_precedence, test_setup),
		cmocka_unit_test_setup(test_request_chunked, test_setup),
		cmocka_unit_test_setup(test_request_content_length, test_setup),
		cmocka_unit_test_setup(test_convenience_calls, test_setup),
		cmocka_unit_test_setup(test_job_watch, test_setup),
		cmocka_unit_test_setup(test_blob_put_waits_for_continue, test_setup),
		cmocka_unit_test_setup(test_bad_responses, test_setup),
		cmocka_unit_test_setup(test_connection_refused, test_setup),
		cmocka_unit_test_setup(test_wrong_server_cert, test_setup),
		cmocka_unit_test(test_http_parse),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
