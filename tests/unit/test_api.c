/*
 * test_api.c - unit tests for the manager's HTTPS/JSON API (src/manager/api.h).
 *
 * The group setup generates a self-signed EC P-256 certificate with OpenSSL,
 * starts the API on 127.0.0.1:0 over a fake backend and runs the uv loop on a
 * background thread. The tests are HTTPS clients (OpenSSL over a blocking
 * socket, HTTP/1.1 with Connection: close). The group teardown stops the API
 * from the loop thread and checks that the loop closes with nothing left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "manager/api.h"
#include "manager/api_body.h"

#define TOKEN "sst_unit-test-token-0123456789"

static uv_loop_t g_loop;
static struct api *g_api;
static uv_async_t g_stop_async;
static pthread_t g_thread;
static SSL_CTX *g_ctx;
static uint16_t g_port;
static atomic_int g_drain_calls;
static atomic_int g_stopped;
static char g_last_reason[300];

/* ---- fake backend (runs on the loop thread) ----------------------------- */

static json_t *fake_node(const char *id, const char *state)
{
	return json_pack("{s:s,s:s,s:b}", "id", id, "state", state, "draining", 0);
}

static json_t *fb_nodes_list(void *arg, bool all)
{
	(void)arg;
	json_t *arr = json_pack("[o,o]", fake_node("n1", "ready"), fake_node("n2", "ready"));
	if (all)
		json_array_append_new(arr, fake_node("n3", "rejected"));
	return json_pack("{s:o}", "nodes", arr);
}

static json_t *fb_node_get(void *arg, const char *id)
{
	(void)arg;
	if (!strcmp(id, "n1") || !strcmp(id, "n2"))
		return fake_node(id, "ready");
	if (!strcmp(id, "n3"))
		return fake_node(id, "rejected");
	return NULL;
}

static int fb_node_drain(void *arg, const char *id, json_t *body, json_t **out, const char **why)
{
	(void)arg;
	atomic_fetch_add(&g_drain_calls, 1);
	if (!strcmp(id, "n3")) {
		*why = "node is not admitted; nothing to drain";
		return SS_ESTATE;
	}
	if (strcmp(id, "n1") != 0 && strcmp(id, "n2") != 0)
		return SS_ENOTFOUND;
	const char *reason = body ? json_string_value(json_object_get(body, "reason")) : NULL;
	snprintf(g_last_reason, sizeof g_last_reason, "%s", reason ? reason : "(none)");
	*out = fake_node(id, "ready");
	json_object_set_new(*out, "draining", json_true());
	return 0;
}

/* Task "j-1.0" exists; "j-1.9" stands for a manager following too many outputs. */
static int fb_task_output(void *arg, const char *task_id, const uint64_t from[2], json_t **out)
{
	(void)arg;
	if (!strcmp(task_id, "j-1.9"))
		return SS_ELIMIT;
	if (strcmp(task_id, "j-1.0") != 0)
		return SS_ENOTFOUND;
	*out = json_pack("{s:s,s:{s:I},s:{s:I}}", "task", task_id, "stdout", "from", (json_int_t)from[0],
			 "stderr", "from", (json_int_t)from[1]);
	return 0;
}

static void fb_metrics(void *arg, struct buf *out)
{
	(void)arg;
	buf_printf(out, "# TYPE fake_metric gauge\nfake_metric 7\n");
}

static json_t *fb_health(void *arg)
{
	(void)arg;
	return json_pack("{s:i}", "nodes", 2);
}

/* ---- certificate -------------------------------------------------------- */

static char *bio_string(BIO *b)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	assert_true(n > 0);
	return xstrndup(p, (size_t)n);
}

/* Makes a self-signed EC P-256 certificate for IP 127.0.0.1. */
static void make_cert(char **cert_pem, char **key_pem, X509 **cert_out)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	assert_non_null(pk);
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"seeswarm-api-test",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);

	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	*cert_pem = bio_string(b);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
	*key_pem = bio_string(b);
	BIO_free(b);
	EVP_PKEY_free(pk);
	*cert_out = x;
}

/* ---- loop thread -------------------------------------------------------- */

static void *loop_main(void *arg)
{
	(void)arg;
	uv_run(&g_loop, UV_RUN_DEFAULT);
	return NULL;
}

static void on_api_stopped(void *arg)
{
	atomic_store((atomic_int *)arg, 1);
}

static void on_stop_async(uv_async_t *a)
{
	api_stop(g_api, on_api_stopped, &g_stopped);
	g_api = NULL;
	uv_close((uv_handle_t *)a, NULL);
}

static int group_setup(void **state)
{
	(void)state;
	char *cert_pem, *key_pem;
	X509 *cert;
	signal(SIGPIPE, SIG_IGN);
	log_init("test", LOG_WARN);
	make_cert(&cert_pem, &key_pem, &cert);

	g_ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(g_ctx);
	SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(g_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(g_ctx), cert), 1);
	SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
	X509_free(cert);

	assert_int_equal(uv_loop_init(&g_loop), 0);
	struct api_opts o = {
		.listen = "127.0.0.1:0",
		.cert_pem = cert_pem,
		.key_pem = key_pem,
		.backend = {
			.arg = NULL,
			.nodes_list = fb_nodes_list,
			.node_get = fb_node_get,
			.node_drain = fb_node_drain,
			.metrics = fb_metrics,
			.task_output = fb_task_output,
			.health = fb_health,
		},
	};
	sha256(TOKEN, strlen(TOKEN), o.token_hash);
	assert_int_equal(api_start(&g_api, &g_loop, &o), 0);
	/* The API keeps its own copies of the PEM text. */
	free(cert_pem);
	free(key_pem);
	g_port = api_port(g_api);
	assert_true(g_port != 0);
	assert_int_equal(uv_async_init(&g_loop, &g_stop_async, on_stop_async), 0);
	assert_int_equal(pthread_create(&g_thread, NULL, loop_main, NULL), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	uv_async_send(&g_stop_async);
	pthread_join(g_thread, NULL);
	int rc = uv_loop_close(&g_loop);
	SSL_CTX_free(g_ctx);
	if (rc != 0 || !atomic_load(&g_stopped)) {
		fprintf(stderr, "loop close: %d (%s), stop callback ran: %d\n", rc,
			rc ? uv_strerror(rc) : "ok", atomic_load(&g_stopped));
		return -1;
	}
	return 0;
}

/* ---- HTTPS client ------------------------------------------------------- */

/* Connects a blocking TCP socket to the API, without Nagle's delay. */
static int connect_api(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(g_port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

struct resp {
	int status;
	char *head;   /* status line and headers, NUL-terminated */
	char *body;   /* NUL-terminated */
	size_t body_len;
};

static void resp_free(struct resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof *r);
}

/*
 * Sends one request; token NULL sends no Authorization header. extra is an
 * optional raw header block ("Name: value\r\n"); body_len (SIZE_MAX: none)
 * gives the Content-Length, and body (may be NULL) is what is actually sent.
 */
static void http_ex(const char *method, const char *path, const char *token, const char *extra,
		    const char *body, size_t body_len, struct resp *out)
{
	memset(out, 0, sizeof *out);
	int fd = connect_api();

	SSL *ssl = SSL_new(g_ctx);
	assert_non_null(ssl);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
	SSL_set_fd(ssl, fd);
	int hs = SSL_connect(ssl);
	if (hs != 1) {
		ERR_print_errors_fp(stderr);
		fail_msg("TLS handshake failed (%d)", SSL_get_error(ssl, hs));
	}
	assert_int_equal(SSL_get_verify_result(ssl), X509_V_OK);

	struct buf req;
	buf_init(&req);
	buf_printf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
	if (token)
		buf_printf(&req, "Authorization: Bearer %s\r\n", token);
	if (extra)
		buf_printf(&req, "%s", extra);
	if (body_len != SIZE_MAX)
		buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
	buf_printf(&req, "\r\n");
	if (body && body_len != SIZE_MAX)
		buf_append(&req, body, body_len);
	assert_int_equal(SSL_write(ssl, req.data, (int)req.len), (int)req.len);
	buf_free(&req);

	struct buf in;
	buf_init(&in);
	for (;;) {
		char chunk[4096];
		int n = SSL_read(ssl, chunk, sizeof chunk);
		if (n <= 0) {
			int e = SSL_get_error(ssl, n);
			assert_true(e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL);
			break;
		}
		buf_append(&in, chunk, (size_t)n);
	}
	SSL_free(ssl);
	close(fd);

	buf_append(&in, "", 1);
	const char *raw = (const char *)in.data;
	const char *sep = strstr(raw, "\r\n\r\n");
	if (!sep)
		fail_msg("no complete HTTP answer: \"%s\"", raw);
	out->head = xstrndup(raw, (size_t)(sep - raw) + 2);
	out->body_len = in.len - 1 - (size_t)(sep + 4 - raw);
	out->body = xstrndup(sep + 4, out->body_len);
	assert_int_equal(sscanf(out->head, "HTTP/1.1 %d", &out->status), 1);
	buf_free(&in);
}

static void http(const char *method, const char *path, const char *token, const char *body,
		 struct resp *out)
{
	http_ex(method, path, token, NULL, body, body ? strlen(body) : SIZE_MAX, out);
}

/* Returns the value of a response header (case-insensitive name) or NULL; caller frees. */
static char *header(const struct resp *r, const char *name)
{
	const char *p = r->head;
	size_t n = strlen(name);
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (!strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			return xstrndup(v, strcspn(v, "\r\n"));
		}
	}
	return NULL;
}

static void assert_header(const struct resp *r, const char *name, const char *want)
{
	char *v = header(r, name);
	if (!v)
		fail_msg("header %s missing in:\n%s", name, r->head);
	assert_string_equal(v, want);
	free(v);
}

/* Parses a JSON body, checking the content type and the trailing newline. */
static json_t *json_body(const struct resp *r)
{
	assert_header(r, "Content-Type", "application/json");
	assert_header(r, "Cache-Control", "no-store");
	assert_true(r->body_len > 0);
	assert_int_equal(r->body[r->body_len - 1], '\n');
	json_error_t err;
	json_t *j = json_loadb(r->body, r->body_len, 0, &err);
	if (!j)
		fail_msg("bad JSON body (%s): %s", err.text, r->body);
	return j;
}

/* Asserts an error answer with the given status; returns its message (caller frees). */
static char *assert_error(const struct resp *r, int status)
{
	if (r->status != status)
		fail_msg("status %d, want %d; body %s", r->status, status, r->body);
	json_t *j = json_body(r);
	json_t *e = json_object_get(j, "error");
	assert_true(json_is_object(e));
	assert_int_equal(json_integer_value(json_object_get(e, "code")), status);
	const char *msg = json_string_value(json_object_get(e, "message"));
	assert_non_null(msg);
	assert_true(strlen(msg) > 0);
	char *copy = xstrdup(msg);
	json_decref(j);
	return copy;
}

/* ---- tests --------------------------------------------------------------- */

static void test_health_without_token(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/health", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	assert_int_equal(json_integer_value(json_object_get(j, "nodes")), 2);
	json_decref(j);
	resp_free(&r);
}

static void test_auth_required(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/nodes", NULL, NULL, &r);
	free(assert_error(&r, 401));
	assert_header(&r, "WWW-Authenticate", "Bearer");
	resp_free(&r);

	http("GET", "/v1/nodes", "wrong-token", NULL, &r);
	free(assert_error(&r, 401));
	resp_free(&r);

	http("GET", "/v1/nodes", TOKEN "x", NULL, &r);
	free(assert_error(&r, 401));
	resp_free(&r);

	http_ex("GET", "/v1/nodes", NULL, "Authorization: Basic dXNlcjpwYXNz\r\n", NULL, SIZE_MAX, &r);
	free(assert_error(&r, 401));
	resp_free(&r);

	http("GET", "/metrics", NULL, NULL, &r);
	free(assert_error(&r, 401));
	resp_free(&r);

	/* Only GET /v1/health is open. */
	http("POST", "/v1/health", NULL, NULL, &r);
	free(assert_error(&r, 401));
	resp_free(&r);
}

static void test_nodes_list(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/nodes", TOKEN, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	json_t *nodes = json_object_get(j, "nodes");
	assert_true(json_is_array(nodes));
	assert_int_equal(json_array_size(nodes), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(nodes, 0), "id")), "n1");
	json_decref(j);
	resp_free(&r);

	const char *all_paths[] = {"/v1/nodes?all=1", "/v1/nodes?all=true"};
	for (size_t i = 0; i < ARRAY_LEN(all_paths); i++) {
		http("GET", all_paths[i], TOKEN, NULL, &r);
		assert_int_equal(r.status, 200);
		j = json_body(&r);
		assert_int_equal(json_array_size(json_object_get(j, "nodes")), 3);
		json_decref(j);
		resp_free(&r);
	}

	http("GET", "/v1/nodes?all=maybe", TOKEN, NULL, &r);
	free(assert_error(&r, 400));
	resp_free(&r);
}

static void test_task_output(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/tasks/j-1.0/output?stdout=12&stderr=1125899906842624", TOKEN, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stdout"), "from")), 12);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "stderr"), "from")),
			 1ull << 50);
	json_decref(j);
	resp_free(&r);
	http("GET", "/v1/tasks/j-1.0/output", TOKEN, NULL, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	const char *bad[] = {"?stdout=-1", "?stdout=", "?stderr=1125899906842625", "?stdout=1e3",
			     "?stderr=99999999999999999999"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char path[100];
		snprintf(path, sizeof path, "/v1/tasks/j-1.0/output%s", bad[i]);
		http("GET", path, TOKEN, NULL, &r);
		free(assert_error(&r, 400));
		resp_free(&r);
	}
	http("GET", "/v1/tasks/j-1.1/output", TOKEN, NULL, &r);
	free(assert_error(&r, 404));
	resp_free(&r);
	http("GET", "/v1/tasks/j-1.9/output", TOKEN, NULL, &r);
	free(assert_error(&r, 503));
	resp_free(&r);
	http("GET", "/v1/tasks/j-1.0/output", NULL, NULL, &r);
	free(assert_error(&r, 401));
	resp_free(&r);
}

static void test_node_get(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/nodes/n2", TOKEN, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "n2");
	json_decref(j);
	resp_free(&r);

	http("GET", "/v1/nodes/does-not-exist", TOKEN, NULL, &r);
	char *msg = assert_error(&r, 404);
	assert_non_null(strstr(msg, "does-not-exist"));
	free(msg);
	resp_free(&r);

	/* Ids that fail ident_valid() are unknown paths. */
	const char *bad[] = {"/v1/nodes/-dash", "/v1/nodes/a%20b", "/v1/nodes/",
			     "/v1/nodes/n1/extra", "/v1/nodes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		http("GET", bad[i], TOKEN, NULL, &r);
		free(assert_error(&r, 404));
		resp_free(&r);
	}
}

static void test_unknown_route(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/v1/nope", TOKEN, NULL, &r);
	char *msg = assert_error(&r, 404);
	assert_non_null(strstr(msg, "/v1/nope"));
	free(msg);
	resp_free(&r);

	/* A percent-encoded newline in the path comes back as printable text. */
	http("GET", "/v1/x%0a%ff", TOKEN, NULL, &r);
	msg = assert_error(&r, 404);
	assert_null(strchr(msg, '\n'));
	free(msg);
	resp_free(&r);
}

static void test_wrong_method(void **state)
{
	(void)state;
	struct resp r;
	http("DELETE", "/v1/nodes", TOKEN, NULL, &r);
	free(assert_error(&r, 405));
	assert_header(&r, "Allow", "GET");
	resp_free(&r);

	http("GET", "/v1/nodes/n1/drain", TOKEN, NULL, &r);
	free(assert_error(&r, 405));
	assert_header(&r, "Allow", "POST");
	resp_free(&r);

	http("POST", "/v1/health", TOKEN, "", &r);
	free(assert_error(&r, 405));
	resp_free(&r);
}

static void test_drain(void **state)
{
	(void)state;
	struct resp r;
	int before = atomic_load(&g_drain_calls);

	/* Bad bodies never reach the backend. */
	http("POST", "/v1/nodes/n1/drain", TOKEN, "{not json", &r);
	char *msg = assert_error(&r, 400);
	assert_non_null(strstr(msg, "line 1"));
	free(msg);
	resp_free(&r);

	http("POST", "/v1/nodes/n1/drain", TOKEN, "{\"bogus\":\"x\"}", &r);
	msg = assert_error(&r, 400);
	assert_non_null(strstr(msg, "bogus"));
	free(msg);
	resp_free(&r);

	http("POST", "/v1/nodes/n1/drain", TOKEN, "{\"reason\":5}", &r);
	msg = assert_error(&r, 400);
	assert_non_null(strstr(msg, "reason"));
	free(msg);
	resp_free(&r);

	http("POST", "/v1/nodes/n1/drain", TOKEN, "[]", &r);
	free(assert_error(&r, 400));
	resp_free(&r);

	http("POST", "/v1/nodes/n1/drain", NULL, "{\"reason\":\"x\"}", &r);
	free(assert_error(&r, 401));
	resp_free(&r);
	assert_int_equal(atomic_load(&g_drain_calls), before);

	/* Unknown node, conflict, then success with and without a body. */
	http("POST", "/v1/nodes/ghost/drain", TOKEN, NULL, &r);
	free(assert_error(&r, 404));
	resp_free(&r);

	http("POST", "/v1/nodes/n3/drain", TOKEN, NULL, &r);
	msg = assert_error(&r, 409);
	assert_string_equal(msg, "node is not admitted; nothing to drain");
	free(msg);
	resp_free(&r);

	http("POST", "/v1/nodes/n1/drain", TOKEN, "{\"reason\":\"kernel update\"}", &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	assert_true(json_is_true(json_object_get(j, "draining")));
	json_decref(j);
	resp_free(&r);
	assert_string_equal(g_last_reason, "kernel update");

	http("POST", "/v1/nodes/n2/drain", TOKEN, "", &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_string_equal(g_last_reason, "(none)");
	assert_int_equal(atomic_load(&g_drain_calls), before + 4);
}

static void test_oversized_body(void **state)
{
	(void)state;
	struct resp r;
	int before = atomic_load(&g_drain_calls);
	size_t n = 70 * 1024;
	char *big = xmalloc(n + 1);
	memset(big, 'x', n);
	big[n] = '\0';

	/* Sent in full: read to the end, then refused. */
	http("POST", "/v1/nodes/n1/drain", TOKEN, big, &r);
	free(assert_error(&r, 413));
	resp_free(&r);

	/* A valid JSON object just over the limit is refused too. */
	memcpy(big, "{\"reason\":\"", 11);
	memcpy(big + n - 2, "\"}", 2);
	http("POST", "/v1/nodes/n1/drain", TOKEN, big, &r);
	free(assert_error(&r, 413));
	resp_free(&r);
	free(big);

	/* Announced but never sent: refused at once, without waiting for the body. */
	http_ex("POST", "/v1/nodes/n1/drain", TOKEN, NULL, NULL, 10u << 20, &r);
	free(assert_error(&r, 413));
	resp_free(&r);

	/* Same when the client waits for 100 Continue. */
	http_ex("POST", "/v1/nodes/n1/drain", TOKEN, "Expect: 100-continue\r\n", NULL, 100000, &r);
	free(assert_error(&r, 413));
	resp_free(&r);
	assert_int_equal(atomic_load(&g_drain_calls), before);
}

static void test_metrics(void **state)
{
	(void)state;
	struct resp r;
	/* One answer of each class we count: a 2xx and a 4xx. */
	http("GET", "/v1/health", NULL, NULL, &r);
	resp_free(&r);
	http("GET", "/v1/nope", TOKEN, NULL, &r);
	resp_free(&r);

	http("GET", "/metrics", TOKEN, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_header(&r, "Content-Type", "text/plain; version=0.0.4");
	assert_header(&r, "Cache-Control", "no-store");
	assert_non_null(strstr(r.body, "fake_metric 7\n"));
	const char *p = strstr(r.body, "seeswarm_api_requests_total{code=\"2xx\"} ");
	assert_non_null(p);
	assert_true(atoi(p + strlen("seeswarm_api_requests_total{code=\"2xx\"} ")) >= 1);
	p = strstr(r.body, "seeswarm_api_requests_total{code=\"4xx\"} ");
	assert_non_null(p);
	assert_true(atoi(p + strlen("seeswarm_api_requests_total{code=\"4xx\"} ")) >= 1);
	/* Our counters follow the backend's metrics. */
	assert_true(strstr(r.body, "fake_metric") < strstr(r.body, "seeswarm_api_requests_total"));
	resp_free(&r);
}

static void test_keep_alive_two_requests(void **state)
{
	(void)state;
	/* Pipelined keep-alive requests on one connection get two answers. */
	int fd = connect_api();
	SSL *ssl = SSL_new(g_ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	const char *req = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
	struct buf in;
	buf_init(&in);
	char chunk[4096];
	int n;
	while ((n = SSL_read(ssl, chunk, sizeof chunk)) > 0)
		buf_append(&in, chunk, (size_t)n);
	buf_append(&in, "", 1);
	const char *first = strstr((const char *)in.data, "HTTP/1.1 200");
	assert_non_null(first);
	assert_non_null(strstr(first + 1, "HTTP/1.1 200"));
	buf_free(&in);
	SSL_free(ssl);
	close(fd);
}

static void test_parse_drain_body(void **state)
{
	(void)state;
	char why[200];
	json_t *j = (json_t *)1;
	assert_int_equal(api_parse_drain_body(NULL, 0, &j, why, sizeof why), 0);
	assert_null(j);
	assert_string_equal(why, "");
	assert_int_equal(api_parse_drain_body(" \r\n\t", 4, &j, why, sizeof why), 0);
	assert_null(j);

	const char *ok = "{\"reason\":\"r\\u00e9boot\"}";
	assert_int_equal(api_parse_drain_body(ok, strlen(ok), &j, why, sizeof why), 0);
	assert_non_null(j);
	json_decref(j);
	assert_int_equal(api_parse_drain_body("{}", 2, &j, why, sizeof why), 0);
	json_decref(j);

	struct {
		const char *body;
		const char *why_has;
	} bad[] = {
		{"{", "malformed JSON at line 1"},
		{"{\"reason\":\"a\",\"reason\":\"b\"}", "duplicate"},
		{"{\"reason\":null}", "must be a string, not null"},
		{"{\"reason\":\"a\\nb\"}", "control character"},
		{"{\"x\":1}", "unknown field \"x\""},
		{"\"text\"", "malformed JSON"},
		{"[1]", "must be a JSON object, not an array"},
		{"{} trailing", "malformed JSON"},
		{"{\"reason\":\"\xff\"}", "malformed JSON"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		j = (json_t *)1;
		int rc = api_parse_drain_body(bad[i].body, strlen(bad[i].body), &j, why, sizeof why);
		assert_int_equal(rc, SS_EPARSE);
		assert_null(j);
		if (!strstr(why, bad[i].why_has))
			fail_msg("body %zu: why \"%s\" lacks \"%s\"", i, why, bad[i].why_has);
		for (const char *p = why; *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
	}

	/* 255 characters (two bytes each) pass; 256 do not. */
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"reason\":\"");
	for (int i = 0; i < 255; i++)
		buf_printf(&b, "\xc3\xa9");
	buf_printf(&b, "\"}");
	assert_int_equal(api_parse_drain_body((const char *)b.data, b.len, &j, why, sizeof why), 0);
	json_decref(j);
	b.len -= 2;
	buf_printf(&b, "x\"}");
	assert_int_equal(api_parse_drain_body((const char *)b.data, b.len, &j, why, sizeof why),
			 SS_EPARSE);
	assert_non_null(strstr(why, "256 characters"));
	buf_free(&b);

	char *big = xcalloc(1, API_MAX_BODY + 1);
	assert_int_equal(api_parse_drain_body(big, API_MAX_BODY + 1, &j, why, sizeof why), SS_ETOOBIG);
	assert_null(j);
	free(big);
	/* A zero-sized why buffer is allowed. */
	assert_int_equal(api_parse_drain_body("[", 1, &j, why, 0), SS_EPARSE);
}

static void test_parse_jobs_query(void **state)
{
	(void)state;
	char why[200];
	struct jobs_query q;
	/* Nothing given: every job, the default page. */
	assert_int_equal(api_parse_jobs_query(NULL, NULL, NULL, NULL, &q, why, sizeof why), 0);
	assert_string_equal(q.state, "");
	assert_string_equal(q.tenant, "");
	assert_string_equal(q.before_id, "");
	assert_int_equal(q.limit, JOBS_LIST_DEFAULT);
	assert_string_equal(why, "");
	/* Empty state and tenant are "any"; the limit bounds are inclusive. */
	assert_int_equal(api_parse_jobs_query("", "", "10000", NULL, &q, why, sizeof why), 0);
	assert_int_equal(q.limit, 10000);
	assert_int_equal(api_parse_jobs_query("failed", "team-a", "1", "1764625491000.j-4da4589427da", &q, why,
					      sizeof why), 0);
	assert_string_equal(q.state, "failed");
	assert_string_equal(q.tenant, "team-a");
	assert_int_equal(q.limit, 1);
	assert_int_equal(q.before_ms, 1764625491000LL);
	assert_string_equal(q.before_id, "j-4da4589427da");
	struct {
		const char *state, *tenant, *limit, *before, *why_has;
	} bad[] = {
		{"done", NULL, NULL, NULL, "\"state\" must be running, succeeded"},
		{"runningrunningrunning", NULL, NULL, NULL, "\"state\""},
		{NULL, "a b", NULL, NULL, "\"tenant\" is not a tenant name"},
		{NULL, NULL, "0", NULL, "\"limit\" must be a number from 1 to 10000"},
		{NULL, NULL, "10001", NULL, "\"limit\""},
		{NULL, NULL, "", NULL, "\"limit\""},
		{NULL, NULL, "+5", NULL, "\"limit\""},
		{NULL, NULL, "99999999999999999999", NULL, "\"limit\""},
		{NULL, NULL, NULL, "", "\"before\" must be the \"next\" value"},
		{NULL, NULL, NULL, "j-4da4589427da", "\"before\""},
		{NULL, NULL, NULL, ".j-1", "\"before\""},
		{NULL, NULL, NULL, "12.", "\"before\""},
		{NULL, NULL, NULL, "-12.j-1", "\"before\""},
		{NULL, NULL, NULL, "9999999999999999999.j-1", "\"before\""}, /* over INT64_MAX */
		{NULL, NULL, NULL, "12.j 1", "\"before\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = api_parse_jobs_query(bad[i].state, bad[i].tenant, bad[i].limit, bad[i].before, &q, why,
					      sizeof why);
		assert_int_equal(rc, SS_EPARSE);
		if (!strstr(why, bad[i].why_has))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, bad[i].why_has);
	}
}

static void test_parse_watch_query(void **state)
{
	(void)state;
	char why[200];
	uint64_t index = 7, wait = 7;
	bool watch = true;
	assert_int_equal(api_parse_watch_query(NULL, NULL, &watch, &index, &wait, why, sizeof why), 0);
	assert_false(watch);
	assert_string_equal(why, "");
	assert_int_equal(api_parse_watch_query("0", NULL, &watch, &index, &wait, why, sizeof why), 0);
	assert_true(watch);
	assert_int_equal(index, 0);
	assert_int_equal(wait, API_WAIT_DEFAULT_MS);
	assert_int_equal(api_parse_watch_query("1796174066304394", "5m", &watch, &index, &wait, why, sizeof why), 0);
	assert_int_equal(index, 1796174066304394ull);
	assert_int_equal(wait, API_WAIT_MAX_MS);
	assert_int_equal(api_parse_watch_query("9999999999999999999", "0ms", &watch, &index, &wait, why, sizeof why),
			 0);
	assert_int_equal(index, 9999999999999999999ull);
	assert_int_equal(wait, 0);
	struct {
		const char *index, *wait, *why_has;
	} bad[] = {
		{NULL, "1s", "\"wait\" goes only with \"index\""},
		{"", NULL, "\"index\" must be"},
		{"x", NULL, "\"index\""},
		{"-1", NULL, "\"index\""},
		{"+1", NULL, "\"index\""},
		{"12345678901234567890", NULL, "\"index\""}, /* 20 digits */
		{"1", "", "\"wait\" must be a duration of at most 5m"},
		{"1", "301s", "\"wait\""},
		{"1", "6m", "\"wait\""},
		{"1", "soon", "\"wait\""},
		{"1", "-1s", "\"wait\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = api_parse_watch_query(bad[i].index, bad[i].wait, &watch, &index, &wait, why, sizeof why);
		assert_int_equal(rc, SS_EPARSE);
		assert_false(watch);
		if (!strstr(why, bad[i].why_has))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, bad[i].why_has);
	}
}

static void test_parse_token_body(void **state)
{
	(void)state;
	char why[200], tenant[64];
	uint64_t ttl = 9;
	bool ro = true;
	const char *ok = " {\"tenant\": \"team-a.prod_1\"}\n";
	assert_int_equal(api_parse_token_body(ok, strlen(ok), tenant, &ttl, &ro, why, sizeof why), 0);
	assert_string_equal(tenant, "team-a.prod_1");
	assert_string_equal(why, "");
	assert_int_equal(ttl, 0);
	assert_false(ro);
	const char *ok2 = "{\"ttl_seconds\": 315360000, \"tenant\": \"b\"}";
	assert_int_equal(api_parse_token_body(ok2, strlen(ok2), tenant, &ttl, &ro, why, sizeof why), 0);
	assert_string_equal(tenant, "b");
	assert_int_equal(ttl, 315360000);
	assert_false(ro);
	const char *ok3 = "{\"tenant\": \"c\", \"read_only\": true}";
	assert_int_equal(api_parse_token_body(ok3, strlen(ok3), tenant, &ttl, &ro, why, sizeof why), 0);
	assert_true(ro);
	struct {
		const char *body;
		const char *why_has;
	} bad[] = {
		{"", "must be {\"tenant\": NAME["},
		{"{}", "\"tenant\" is required"},
		{"{\"tenant\":7}", "must be a string, not an integer"},
		{"{\"tenant\":\"a b\"}", "not a valid name"},
		{"{\"tenant\":\"-a\"}", "not a valid name"},
		{"{\"tenant\":\"a\\u0000b\"}", "is not allowed"},
		{"{\"tenant\":\"a\",\"role\":\"admin\"}", "unknown field \"role\""},
		{"{\"tenant\":\"a\",\"tenant\":\"b\"}", "duplicate"},
		{"[\"a\"]", "must be a JSON object"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":0}", "from 1 to 315360000"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":-5}", "from 1 to 315360000"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":315360001}", "from 1 to 315360000"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":\"1h\"}", "must be an integer"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":1.5}", "must be an integer"},
		{"{\"tenant\":\"a\",\"ttl_seconds\":99999999999999999999}", ""},
		{"{\"tenant\":\"a\",\"read_only\":1}", "\"read_only\" must be true or false"},
		{"{\"tenant\":\"a\",\"read_only\":\"yes\"}", "\"read_only\" must be true or false"},
		{"{\"tenant\":7,\"read_only\":true}", "must be a string"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		memset(tenant, 'x', sizeof tenant);
		ttl = 9;
		ro = true;
		int rc = api_parse_token_body(bad[i].body, strlen(bad[i].body), tenant, &ttl, &ro, why, sizeof why);
		assert_int_equal(rc, SS_EPARSE);
		assert_string_equal(tenant, "");
		assert_int_equal(ttl, 0);
		assert_false(ro);
		if (!strstr(why, bad[i].why_has))
			fail_msg("body %zu: why \"%s\" lacks \"%s\"", i, why, bad[i].why_has);
	}
	char *big = xcalloc(1, API_MAX_BODY + 1);
	assert_int_equal(api_parse_token_body(big, API_MAX_BODY + 1, tenant, &ttl, &ro, why, sizeof why),
			 SS_ETOOBIG);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_drain_body),
		cmocka_unit_test(test_parse_jobs_query),
		cmocka_unit_test(test_parse_watch_query),
		cmocka_unit_test(test_parse_token_body),
		cmocka_unit_test(test_health_without_token),
		cmocka_unit_test(test_auth_required),
		cmocka_unit_test(test_nodes_list),
		cmocka_unit_test(test_task_output),
		cmocka_unit_test(test_node_get),
		cmocka_unit_test(test_unknown_route),
		cmocka_unit_test(test_wrong_method),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_oversized_body),
		cmocka_unit_test(test_keep_alive_two_requests),
		cmocka_unit_test(test_metrics),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
