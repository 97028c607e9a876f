/*
 * api.c - the manager's HTTPS/JSON API on libmicrohttpd, driven by the libuv
 * loop (see api.h for the routes).
 *
 * MHD runs with MHD_USE_EPOLL and no thread of its own. A uv_poll watches
 * MHD's epoll fd and calls MHD_run() when it is readable; after every run a
 * one-shot uv_timer is re-armed from MHD_get_timeout() (at most
 * API_TICK_MS), so connection timeouts fire and data that GnuTLS has already
 * buffered gets processed. Everything here runs on the loop thread.
 *
 * libmicrohttpd 0.9.75 keeps a connection whose TLS handshake is waiting for
 * the client on its "ready" list, so MHD_get_timeout() answers 0 until the
 * client sends more: a client that stalls mid-handshake would make the loop
 * spin. Fresh socket events always run MHD at once (through the poll), but
 * after API_SPIN_RUNS back-to-back runs with neither a socket event nor a
 * call to on_request() (which shows progress, such as body data read from
 * the socket buffer), the timer waits API_SPIN_BACKOFF_MS between runs.
 *
 * Request life cycle: MHD calls on_request() once with the headers (the
 * request is authenticated and routed then, and a failure is remembered as
 * the answer), then once per chunk of body (kept up to API_MAX_BODY for the
 * drain route, discarded otherwise), then once more with no data, when the
 * answer is queued. Answering only after the body has been read keeps
 * ordinary clients, which send the whole body before they read, from seeing
 * a reset connection. Bodies declared larger than API_DISCARD_MAX, and
 * refused requests that wait for "100 Continue", are answered at once and
 * MHD closes the connection after the answer.
 *
 * Waiting requests: GET /v1/jobs/{id}?index=N (or GET /v1/nodes?index=N),
 * while the job's (or the node list's) index is N,
 * suspends its connection (MHD_suspend_connection) and joins api->waiters
 * instead of answering. api_notify() (after each commit) and a 250 ms timer
 * (for the deadlines) resume the ones whose job changed or whose wait ended;
 * MHD then calls on_request() again and the request is answered as usual.
 * api_stop() resumes them all first, so MHD_stop_daemon() closes them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "manager/api.h"
#include "manager/api_body.h"
#include "manager/audit.h"
#include "manager/jobspec.h"
#include "data/blobstore.h"
#include "manager/tenants.h"

#define API_TICK_MS 1000u             /* longest sleep between two MHD_run calls */
#define API_SPIN_RUNS 16u             /* back-to-back MHD_run calls before backing off */
#define API_SPIN_BACKOFF_MS 5u        /* delay between MHD_run calls once backed off */
#define API_DISCARD_MAX (4u << 20)    /* bytes of refused body read before hanging up */
#define API_TOKEN_MAX 512u            /* longest bearer token considered */
#define API_CONN_LIMIT 256u
#define API_CONN_TIMEOUT_S 30u
#define API_PER_IP_LIMIT 64u
#define API_MAX_WAITERS 128u          /* requests waiting for a change at once */
#define API_WAIT_TICK_MS 250u         /* how often waits are checked for their deadline */
#define API_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define CT_JSON "application/json"
#define CT_PROM "text/plain; version=0.0.4"

struct req;

struct api {
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_timer_t wait_timer;   /* runs while requests wait for a change (api_notify) */
	struct req *waiters;     /* suspended requests, doubly linked */
	size_t n_waiters;
	uint64_t seen_index;     /* jobs_index_now at the last wake */
	int open_handles;   /* uv handles not yet closed */
	unsigned zero_runs; /* consecutive runs after which MHD asked to run again at once */
	bool started;       /* MHD_start_daemon returned */
	bool stopping;      /* api_stop was called */
	uint16_t port;
	char *cert_pem;
	char *key_pem;
	uint8_t token_hash[SHA256_LEN];
	struct api_backend be;
	struct blobstore *blobs;
	struct tenants *tenants;
	struct audit *audit;
	unsigned last_status; /* the status respond() queued last (loop thread: this request's) */
	char last_id[80];     /* the "id" of the JSON answer queued last, or "" */
	uint64_t answered[6]; /* answers by status class: [2] counts 2xx; [0] anything else */
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

enum route {
	R_NONE = 0, R_HEALTH, R_NODES, R_NODE, R_DRAIN, R_ATTEST, R_METRICS,
	R_JOBS, R_JOB, R_JOB_TASKS, R_JOB_EXPLAIN, R_TASK_LOGS, R_TASK_OUTPUT, R_BLOB, R_BLOB_REPLICAS,
	R_TOKENS, R_TOKEN, R_TENANTS, R_JOB_RERUN, R_AUDIT, R_JOB_PLAN, R_JOB_LAUNCH, R_JOB_DISPATCH,
};

/* One extra response header; name NULL means none. */
struct hdr {
	const char *name;
	const char *value;
};

/* Per-request state, MHD's *con_cls; freed by on_completed(). */
struct req {
	enum route route;
	char id[80];          /* node id, job id, task id or blob digest (hex), validated */
	unsigned status;      /* nonzero: the answer is this error, decided early */
	char msg[256];        /* its message */
	struct hdr extra;     /* and its extra header (static strings) */
	struct buf body;      /* body kept for R_DRAIN and POST R_JOBS, within their limits */
	struct blob_writer *upload; /* PUT R_BLOB: the blob being written */
	uint64_t upload_size; /* its declared Content-Length */
	int upload_rc;        /* first failure while writing it */
	uint64_t received;    /* body bytes received so far */
	char method[8];       /* GET, POST, PUT, DELETE or HEAD (others are refused early) */
	char tenant[64];      /* a tenant token's tenant; "" for the admin token */
	bool read_only;       /* a read-only tenant token: GET and HEAD only */
	bool authed;          /* a valid token came with it */
	char url[128];        /* its path, cut to fit (for the audit trail) */
	bool answered;
	/* A GET of a job or of the nodes with ?index=: it waits (suspended) until the index differs. */
	struct MHD_Connection *conn;
	uint64_t wait_index;
	uint64_t wait_until;  /* monotonic ms; 0 before the wait was set up */
	bool waiting;         /* suspended and on api->waiters */
	struct req *wprev, *wnext;
};

/* ---- small helpers ----------------------------------------------------- */

/* Replaces, in place, every byte of s outside printable ASCII with '?'. */
static void ascii_clean(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Formats into out (size n, may be 0) and makes the result printable ASCII. */
__attribute__((format(printf, 3, 4))) static void fmt_clean(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;
	if (n == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(out, n, fmt, ap);
	va_end(ap);
	ascii_clean(out);
}

static const char *json_type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "unknown";
}

/* ---- body parser (api_body.h) ------------------------------------------ */

/*
 * Loads a request body as a JSON object without duplicate keys. An empty or
 * all-whitespace body gives 0 and *out = NULL. Returns 0, SS_ETOOBIG or
 * SS_EPARSE (with why set); *out is a new reference on success.
 */
static int body_object(const char *body, size_t len, json_t **out, char *why, size_t whylen)
{
	json_error_t err;
	*out = NULL;
	if (whylen)
		why[0] = '\0';
	if (len > API_MAX_BODY) {
		fmt_clean(why, whylen, "request body of %zu bytes is over the limit of %u bytes", len,
			  API_MAX_BODY);
		return SS_ETOOBIG;
	}
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len)
		return 0;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		fmt_clean(why, whylen, "malformed JSON at line %d, column %d: %s", err.line, err.column,
			  err.text);
		return SS_EPARSE;
	}
	if (!json_is_object(j)) {
		fmt_clean(why, whylen, "request body must be a JSON object, not %s", json_type_name(j));
		json_decref(j);
		return SS_EPARSE;
	}
	*out = j;
	return 0;
}

int api_parse_drain_body(const char *body, size_t len, json_t **out, char *why, size_t whylen)
{
	json_t *j = NULL;
	int rc = body_object(body, len, &j, why, whylen);
	const char *key;
	json_t *val;
	*out = NULL;
	if (rc || !j)
		goto out;
	rc = SS_EPARSE;
	json_object_foreach(j, key, val) {
		if (strcmp(key, "reason") != 0) {
			fmt_clean(why, whylen, "unknown field \"%.64s\" (the only field allowed is \"reason\")",
				  key);
			goto out;
		}
		if (!json_is_string(val)) {
			fmt_clean(why, whylen, "field \"reason\" must be a string, not %s", json_type_name(val));
			goto out;
		}
		const char *s = json_string_value(val);
		size_t slen = json_string_length(val);
		size_t chars = 0;
		for (size_t k = 0; k < slen; k++) {
			unsigned char ch = (unsigned char)s[k];
			if (ch < 0x20 || ch == 0x7f) {
				fmt_clean(why, whylen, "field \"reason\" contains a control character at byte %zu",
					  k);
				goto out;
			}
			chars += (ch & 0xc0) != 0x80; /* jansson guarantees valid UTF-8 */
		}
		if (chars > API_REASON_MAX) {
			fmt_clean(why, whylen, "field \"reason\" is %zu characters long; the limit is %u",
				  chars, API_REASON_MAX);
			goto out;
		}
	}
	*out = j;
	j = NULL;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

int api_parse_token_body(const char *body, size_t len, char tenant[static 64], uint64_t *ttl_s,
			 bool *read_only, char *why, size_t whylen)
{
	json_t *j = NULL;
	int rc = body_object(body, len, &j, why, whylen);
	const char *key;
	json_t *val;
	tenant[0] = '\0';
	*ttl_s = 0;
	*read_only = false;
	if (rc)
		goto out;
	rc = SS_EPARSE;
	if (!j) {
		fmt_clean(why, whylen,
			  "request body must be {\"tenant\": NAME[, \"ttl_seconds\": N][, \"read_only\": BOOL]}");
		goto out;
	}
	json_object_foreach(j, key, val) {
		if (strcmp(key, "tenant") != 0 && strcmp(key, "ttl_seconds") != 0 &&
		    strcmp(key, "read_only") != 0) {
			fmt_clean(why, whylen,
				  "unknown field \"%.64s\" (the fields allowed are \"tenant\", \"ttl_seconds\" "
				  "and \"read_only\")",
				  key);
			goto out;
		}
	}
	val = json_object_get(j, "read_only");
	if (val && !json_is_boolean(val)) {
		fmt_clean(why, whylen, "field \"read_only\" must be true or false");
		goto out;
	}
	bool ro = json_is_true(val);
	val = json_object_get(j, "ttl_seconds");
	if (val && (!json_is_integer(val) || json_integer_value(val) < 1 ||
		    json_integer_value(val) > (json_int_t)TENANTS_MAX_TTL_S)) {
		fmt_clean(why, whylen, "field \"ttl_seconds\" must be an integer from 1 to %u (10 years)",
			  TENANTS_MAX_TTL_S);
		goto out;
	}
	uint64_t ttl = val ? (uint64_t)json_integer_value(val) : 0;
	val = json_object_get(j, "tenant");
	if (!json_is_string(val)) {
		fmt_clean(why, whylen, "field \"tenant\" is required and must be a string%s%s",
			  val ? ", not " : "", val ? json_type_name(val) : "");
		goto out;
	}
	const char *t = json_string_value(val);
	if (json_string_length(val) != strlen(t) || !ident_valid(t)) {
		fmt_clean(why, whylen,
			  "field \"tenant\" is not a valid name (1 to 63 of A-Z a-z 0-9 . _ -, starting "
			  "with a letter or digit)");
		goto out;
	}
	snprintf(tenant, 64, "%s", t);
	*ttl_s = ttl;
	*read_only = ro;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

/* Parses a decimal of 1 to 19 digits without sign or spaces. */
static bool parse_dec(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

int api_parse_watch_query(const char *index, const char *wait, bool *watch, uint64_t *index_out,
			  uint64_t *wait_ms, char *why, size_t whylen)
{
	*watch = false;
	*index_out = 0;
	*wait_ms = API_WAIT_DEFAULT_MS;
	if (whylen)
		why[0] = '\0';
	if (!index) {
		if (!wait)
			return 0;
		fmt_clean(why, whylen, "query parameter \"wait\" goes only with \"index\" (the index as last seen)");
		return SS_EPARSE;
	}
	if (!parse_dec(index, strlen(index), index_out)) {
		fmt_clean(why, whylen, "query parameter \"index\" must be the \"index\" of an answer (a number)");
		return SS_EPARSE;
	}
	if (wait && (parse_duration_ms(wait, wait_ms) != 0 || *wait_ms > API_WAIT_MAX_MS)) {
		fmt_clean(why, whylen, "query parameter \"wait\" must be a duration of at most 5m, such as 30s");
		return SS_EPARSE;
	}
	*watch = true;
	return 0;
}

int api_parse_jobs_query(const char *state, const char *tenant, const char *limit,
			 const char *before, struct jobs_query *q, char *why, size_t whylen)
{
	memset(q, 0, sizeof *q);
	q->limit = JOBS_LIST_DEFAULT;
	if (whylen)
		why[0] = '\0';
	if (state && *state) {
		if (strlen(state) >= sizeof q->state || !jobs_state_valid(state)) {
			fmt_clean(why, whylen,
				  "query parameter \"state\" must be running, succeeded, failed, canceled or periodic");
			return SS_EPARSE;
		}
		snprintf(q->state, sizeof q->state, "%s", state);
	}
	if (tenant && *tenant) {
		if (!ident_valid(tenant)) {
			fmt_clean(why, whylen, "query parameter \"tenant\" is not a tenant name");
			return SS_EPARSE;
		}
		snprintf(q->tenant, sizeof q->tenant, "%s", tenant);
	}
	if (limit) {
		uint64_t v = 0;
		if (!parse_dec(limit, strlen(limit), &v) || v < 1 || v > JOBS_LIST_MAX) {
			fmt_clean(why, whylen, "query parameter \"limit\" must be a number from 1 to %u",
				  JOBS_LIST_MAX);
			return SS_EPARSE;
		}
		q->limit = (size_t)v;
	}
	if (before) {
		const char *dot = strchr(before, '.');
		uint64_t ms = 0;
		if (!dot || !parse_dec(before, (size_t)(dot - before), &ms) || ms > INT64_MAX ||
		    !ident_valid(dot + 1)) {
			fmt_clean(why, whylen,
				  "query parameter \"before\" must be the \"next\" value of an earlier page");
			return SS_EPARSE;
		}
		q->before_ms = (int64_t)ms;
		snprintf(q->before_id, sizeof q->before_id, "%s", dot + 1);
	}
	return 0;
}

/* ---- responses ---------------------------------------------------------- */

/*
 * Queues a response with the given status, content type and body (copied),
 * plus Cache-Control: no-store and the optional extra header. Counts it for
 * /metrics. Returns MHD_NO when MHD refuses it (MHD then closes the
 * connection).
 */
static enum MHD_Result respond(struct api *api, struct MHD_Connection *c, unsigned status,
			       const char *ctype, const char *body, size_t len, const struct hdr *extra)
{
	enum MHD_Result ret = MHD_NO;
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		goto out;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
	    (extra && extra->name && MHD_add_response_header(resp, extra->name, extra->value) != MHD_YES))
		goto out;
	api->last_status = status;
	ret = MHD_queue_response(c, status, resp);
	if (ret == MHD_YES)
		api->answered[status / 100 < ARRAY_LEN(api->answered) ? status / 100 : 0]++;
out:
	if (resp)
		MHD_destroy_response(resp);
	return ret;
}

/* Answers with j serialized compactly plus a newline; steals the reference. */
static enum MHD_Result respond_json(struct api *api, struct MHD_Connection *c, unsigned status,
				    json_t *j, const struct hdr *extra)
{
	enum MHD_Result ret;
	const char *id = json_string_value(json_object_get(j, "id"));
	snprintf(api->last_id, sizeof api->last_id, "%s", id ? id : "");
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text) {
		static const char broken[] =
			"{\"error\":{\"code\":500,\"message\":\"cannot serialize the answer\"}}\n";
		return respond(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, CT_JSON, broken,
			       sizeof broken - 1, NULL);
	}
	char *line = xasprintf("%s\n", text);
	free(text);
	ret = respond(api, c, status, CT_JSON, line, strlen(line), extra);
	free(line);
	return ret;
}

/* Answers {"error":{"code":status,"message":msg}}; msg is made printable ASCII. */
static enum MHD_Result respond_error(struct api *api, struct MHD_Connection *c, unsigned status,
				     const char *msg, const struct hdr *extra)
{
	char clean[512];
	snprintf(clean, sizeof clean, "%s", msg);
	ascii_clean(clean);
	json_t *j = json_pack("{s:{s:i,s:s}}", "error", "code", (json_int_t)status, "message", clean);
	return respond_json(api, c, status, j, extra);
}

/* ---- routing and authentication ---------------------------------------- */

/*
 * Maps a path to a route and the one method it allows (*allow). Node ids
 * must pass ident_valid(); a path with any other id is unknown (R_NONE).
 */
static enum route match_route(const char *url, char id[static 80], const char **allow)
{
	static const char nodes[] = "/v1/nodes/", jobs[] = "/v1/jobs/", tasks[] = "/v1/tasks/",
			  blobs[] = "/v1/blobs/", tokens[] = "/v1/tokens/";
	*allow = "GET";
	if (!strcmp(url, "/v1/health"))
		return R_HEALTH;
	if (!strcmp(url, "/v1/nodes"))
		return R_NODES;
	if (!strcmp(url, "/metrics"))
		return R_METRICS;
	if (!strcmp(url, "/v1/tenants"))
		return R_TENANTS;
	if (!strcmp(url, "/v1/audit"))
		return R_AUDIT;
	if (!strcmp(url, "/v1/jobs")) {
		*allow = "GET, POST";
		return R_JOBS;
	}
	if (!strcmp(url, "/v1/tokens")) {
		*allow = "GET, POST";
		return R_TOKENS;
	}
	if (!strcmp(url, "/v1/jobs/plan")) {
		*allow = "POST";
		return R_JOB_PLAN;
	}
	const char *rest;
	enum route base;
	if (!strncmp(url, nodes, sizeof nodes - 1)) {
		rest = url + sizeof nodes - 1;
		base = R_NODE;
	} else if (!strncmp(url, jobs, sizeof jobs - 1)) {
		rest = url + sizeof jobs - 1;
		base = R_JOB;
	} else if (!strncmp(url, tasks, sizeof tasks - 1)) {
		rest = url + sizeof tasks - 1;
		base = R_TASK_LOGS;
	} else if (!strncmp(url, blobs, sizeof blobs - 1)) {
		rest = url + sizeof blobs - 1;
		base = R_BLOB;
	} else if (!strncmp(url, tokens, sizeof tokens - 1)) {
		rest = url + sizeof tokens - 1;
		base = R_TOKEN;
	} else {
		return R_NONE;
	}
	size_t n = strcspn(rest, "/");
	if (n == 0 || n >= 80)
		return R_NONE;
	memcpy(id, rest, n);
	id[n] = '\0';
	const char *tail = rest + n;
	switch (base) {
	case R_NODE:
		if (!ident_valid(id))
			return R_NONE;
		if (*tail == '\0')
			return R_NODE;
		*allow = "POST";
		if (!strcmp(tail, "/drain"))
			return R_DRAIN;
		if (!strcmp(tail, "/attest"))
			return R_ATTEST;
		return R_NONE;
	case R_JOB:
		if (!ident_valid(id))
			return R_NONE;
		if (*tail == '\0') {
			*allow = "GET, DELETE";
			return R_JOB;
		}
		if (!strcmp(tail, "/tasks"))
			return R_JOB_TASKS;
		if (!strcmp(tail, "/explain"))
			return R_JOB_EXPLAIN;
		*allow = "POST";
		if (!strcmp(tail, "/rerun"))
			return R_JOB_RERUN;
		if (!strcmp(tail, "/launch"))
			return R_JOB_LAUNCH;
		if (!strcmp(tail, "/dispatch"))
			return R_JOB_DISPATCH;
		return R_NONE;
	case R_TASK_LOGS: {
		/* "<job id>.<index>" */
		char *dot = strrchr(id, '.');
		if (!dot || !dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1) ||
		    (strcmp(tail, "/logs") != 0 && strcmp(tail, "/output") != 0))
			return R_NONE;
		*dot = '\0';
		bool ok = ident_valid(id);
		*dot = '.';
		return !ok ? R_NONE : !strcmp(tail, "/logs") ? R_TASK_LOGS : R_TASK_OUTPUT;
	}
	case R_BLOB:
		if (n != 64 || strspn(id, "0123456789abcdef") != 64)
			return R_NONE;
		if (!strcmp(tail, "/replicas"))
			return R_BLOB_REPLICAS;
		if (*tail)
			return R_NONE;
		*allow = "GET, HEAD, PUT";
		return R_BLOB;
	case R_TOKEN:
		if (n != TENANTS_TOKEN_ID_LEN || strspn(id, "0123456789abcdef") != n || *tail)
			return R_NONE;
		*allow = "DELETE";
		return R_TOKEN;
	default:
		return R_NONE;
	}
}

/* True when method is one of the comma-separated methods in allow. */
static bool method_allowed(const char *allow, const char *method)
{
	size_t ml = strlen(method);
	for (const char *p = allow; *p;) {
		size_t n = strcspn(p, ",");
		if (n == ml && !strncmp(p, method, n))
			return true;
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return false;
}

enum auth { AUTH_OK, AUTH_MISSING, AUTH_BAD };

/*
 * Checks "Authorization: Bearer <token>" against the admin token's hash and
 * the tenant tokens. Sets tenant to the tenant of a tenant token, or to ""
 * for the admin token, and *read_only for a read-only tenant token.
 */
static enum auth check_auth(const struct api *api, struct MHD_Connection *c, char tenant[static 64],
			    bool *read_only)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	tenant[0] = '\0';
	*read_only = false;
	if (!v)
		return AUTH_MISSING;
	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
		return AUTH_MISSING;
	v += 6;
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = strcspn(v, " \t");
	if (n == 0)
		return AUTH_MISSING;
	if (n > API_TOKEN_MAX || v[n + strspn(v + n, " \t")] != '\0')
		return AUTH_BAD;
	uint8_t h[SHA256_LEN];
	sha256(v, n, h);
	if (ct_equal(h, api->token_hash, SHA256_LEN))
		return AUTH_OK;
	const char *t = api->tenants ? tenants_token_lookup(api->tenants, h, time_wall_ms(), read_only)
				     : NULL;
	if (!t)
		return AUTH_BAD;
	snprintf(tenant, 64, "%s", t);
	return AUTH_OK;
}

/* True for the routes only the admin token reaches. */
static bool admin_only(enum route r)
{
	switch (r) {
	case R_NODES:
	case R_NODE:
	case R_DRAIN:
	case R_ATTEST:
	case R_METRICS:
	case R_BLOB_REPLICAS:
	case R_TOKENS:
	case R_TOKEN:
	case R_AUDIT:
		return true;
	default:
		return false;
	}
}

/* Records an early error answer for r. */
__attribute__((format(printf, 5, 6))) static void decide(struct req *r, unsigned status,
							  const char *hname, const char *hvalue,
							  const char *fmt, ...)
{
	va_list ap;
	r->status = status;
	r->extra.name = hname;
	r->extra.value = hvalue;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof r->msg, fmt, ap);
	va_end(ap);
	ascii_clean(r->msg);
}

/* Authenticates and routes a request from its headers (the first call). */
static void classify(const struct api *api, struct MHD_Connection *c, const char *url,
		     const char *method, struct req *r)
{
	const char *allow;
	r->route = match_route(url, r->id, &allow);
	if (r->route == R_HEALTH && !strcmp(method, "GET"))
		return;
	snprintf(r->url, sizeof r->url, "%s", url);
	switch (check_auth(api, c, r->tenant, &r->read_only)) {
	case AUTH_OK:
		r->authed = true;
		break;
	case AUTH_MISSING:
		decide(r, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer",
		       "missing bearer token (send \"Authorization: Bearer <token>\")");
		return;
	case AUTH_BAD:
		decide(r, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		       "Bearer error=\"invalid_token\"", "invalid token");
		return;
	}
	if (r->route == R_NONE) {
		decide(r, MHD_HTTP_NOT_FOUND, NULL, NULL, "no such route: %.120s", url);
		return;
	}
	if (!method_allowed(allow, method))
		decide(r, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
		       "method %.16s is not allowed on %.120s (allowed: %s)", method, url, allow);
	else if (r->tenant[0] && admin_only(r->route))
		decide(r, MHD_HTTP_FORBIDDEN, NULL, NULL,
		       "%.120s needs the admin token; a token of tenant %s reaches only that tenant's "
		       "jobs and blobs",
		       url, r->tenant);
	else if (r->read_only && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		decide(r, MHD_HTTP_FORBIDDEN, NULL, NULL,
		       "this token of tenant %s is read-only: it may GET and HEAD, not %.16s %.120s",
		       r->tenant, method, url);
}

/* Parses a Content-Length value; false when absent or malformed. */
static bool parse_length(const char *s, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* The body limit of a request. */
static uint64_t body_limit(const struct req *r, const char *method)
{
	if ((r->route == R_JOBS || r->route == R_JOB_PLAN) && !strcmp(method, "POST"))
		return API_MAX_JOB_BODY;
	if (r->route == R_JOB_DISPATCH)
		return JOBSPEC_MAX_DISPATCH;
	if (r->route == R_BLOB && !strcmp(method, "PUT"))
		return API_MAX_BLOB;
	return API_MAX_BODY;
}

/* ---- route handlers ----------------------------------------------------- */

static enum MHD_Result do_health(struct api *api, struct MHD_Connection *c)
{
	json_t *j = json_pack("{s:s}", "status", "ok");
	json_t *extra = api->be.health ? api->be.health(api->be.arg) : NULL;
	if (json_is_object(extra))
		json_object_update_missing(j, extra);
	json_decref(extra);
	return respond_json(api, c, MHD_HTTP_OK, j, NULL);
}

static bool waits(struct api *api, struct MHD_Connection *c, struct req *r, char *bad, size_t badlen);

static enum MHD_Result do_nodes(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char bad[160];
	if (waits(api, c, r, bad, sizeof bad))
		return MHD_YES; /* answered when resumed */
	if (bad[0])
		return respond_error(api, c, MHD_HTTP_BAD_REQUEST, bad, NULL);
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "all");
	bool all = false;
	if (v && (!strcmp(v, "1") || !strcmp(v, "true")))
		all = true;
	else if (v && *v && strcmp(v, "0") != 0 && strcmp(v, "false") != 0)
		return respond_error(api, c, MHD_HTTP_BAD_REQUEST,
				     "query parameter \"all\" must be 1, true, 0 or false", NULL);
	json_t *j = api->be.nodes_list ? api->be.nodes_list(api->be.arg, all) : NULL;
	if (!j)
		return respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list nodes", NULL);
	return respond_json(api, c, MHD_HTTP_OK, j, NULL);
}

static enum MHD_Result do_node(struct api *api, struct MHD_Connection *c, const char *id)
{
	json_t *j = api->be.node_get ? api->be.node_get(api->be.arg, id) : NULL;
	if (!j) {
		char msg[128];
		snprintf(msg, sizeof msg, "node \"%s\" not found", id);
		return respond_error(api, c, MHD_HTTP_NOT_FOUND, msg, NULL);
	}
	return respond_json(api, c, MHD_HTTP_OK, j, NULL);
}

static enum MHD_Result do_drain(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char why[256];
	char msg[320];
	json_t *body = NULL;
	json_t *node = NULL;
	const char *bwhy = NULL;
	enum MHD_Result ret;
	int rc = api_parse_drain_body((const char *)r->body.data, r->body.len, &body, why, sizeof why);
	if (rc) {
		ret = respond_error(api, c, rc == SS_ETOOBIG ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_REQUEST,
				    why, NULL);
		goto out;
	}
	if (!api->be.node_drain) {
		ret = respond_error(api, c, MHD_HTTP_NOT_IMPLEMENTED, "draining is not supported", NULL);
		goto out;
	}
	rc = api->be.node_drain(api->be.arg, r->id, body, &node, &bwhy);
	if (rc == 0 && node) {
		ret = respond_json(api, c, MHD_HTTP_OK, node, NULL);
		node = NULL;
	} else if (rc == 0) {
		ret = respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "drain returned no node", NULL);
	} else if (rc == SS_ENOTFOUND) {
		snprintf(msg, sizeof msg, "node \"%s\" not found", r->id);
		ret = respond_error(api, c, MHD_HTTP_NOT_FOUND, msg, NULL);
	} else if (rc == SS_ESTATE) {
		ret = respond_error(api, c, MHD_HTTP_CONFLICT,
				    bwhy ? bwhy : "the node's state does not allow a drain", NULL);
	} else {
		snprintf(msg, sizeof msg, "drain failed: %s", bwhy ? bwhy : ss_strerror(rc));
		ret = respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, NULL);
	}
out:
	json_decref(body);
	json_decref(node);
	return ret;
}

static enum MHD_Result do_attest(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char msg[320];
	json_t *node = NULL;
	const char *bwhy = NULL;
	enum MHD_Result ret;
	if (r->body.len > 0) {
		ret = respond_error(api, c, MHD_HTTP_BAD_REQUEST, "this route takes no body", NULL);
		goto out;
	}
	if (!api->be.node_attest) {
		ret = respond_error(api, c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
		goto out;
	}
	int rc = api->be.node_attest(api->be.arg, r->id, &node, &bwhy);
	if (rc == 0 && node) {
		ret = respond_json(api, c, MHD_HTTP_ACCEPTED, node, NULL);
		node = NULL;
	} else if (rc == SS_ENOTFOUND) {
		snprintf(msg, sizeof msg, "node \"%s\" not found", r->id);
		ret = respond_error(api, c, MHD_HTTP_NOT_FOUND, msg, NULL);
	} else if (rc == SS_ESTATE) {
		ret = respond_error(api, c, MHD_HTTP_CONFLICT,
				    bwhy ? bwhy : "the node is not connected and admitted", NULL);
	} else {
		snprintf(msg, sizeof msg, "attest failed: %s", bwhy ? bwhy : ss_strerror(rc));
		ret = respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, NULL);
	}
out:
	json_decref(node);
	return ret;
}

static enum MHD_Result do_metrics(struct api *api, struct MHD_Connection *c)
{
	static const char *const cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
	struct buf b;
	buf_init(&b);
	if (api->be.metrics)
		api->be.metrics(api->be.arg, &b);
	buf_printf(&b, "# HELP seeswarm_api_requests_total API answers by status class.\n"
		       "# TYPE seeswarm_api_requests_total counter\n");
	for (size_t i = 0; i < ARRAY_LEN(api->answered); i++)
		buf_printf(&b, "seeswarm_api_requests_total{code=\"%s\"} %llu\n", cls[i],
			   (unsigned long long)api->answered[i]);
	enum MHD_Result ret = respond(api, c, MHD_HTTP_OK, CT_PROM, b.len ? (const char *)b.data : "",
				      b.len, NULL);
	buf_free(&b);
	return ret;
}

/* Maps a backend error to an HTTP status. */
static unsigned status_of(int rc)
{
	switch (rc) {
	case SS_ENOTFOUND:
		return MHD_HTTP_NOT_FOUND;
	case SS_EPERM:
		return MHD_HTTP_FORBIDDEN;
	case SS_EQUOTA:
		return MHD_HTTP_TOO_MANY_REQUESTS;
	case SS_ESTATE:
		return MHD_HTTP_CONFLICT;
	case SS_EINVAL:
	case SS_EPARSE:
	case SS_ELIMIT:
	case SS_EINTEGRITY:
		return MHD_HTTP_BAD_REQUEST;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Parses a stream offset: decimal digits only, at most 2^50. */
static bool parse_offset(const char *v, uint64_t *out)
{
	size_t n = strlen(v);
	if (n == 0 || n > 16 || strspn(v, "0123456789") != n)
		return false;
	*out = strtoull(v, NULL, 10);
	return *out <= (1ull << 50);
}

/* True for the routes under /v1/tasks/{id}, which name a task rather than a job. */
static bool task_route(const struct req *r)
{
	return r->route == R_TASK_LOGS || r->route == R_TASK_OUTPUT;
}

/* The caller's tenant, or NULL for the admin token. */
static const char *tenant_of(const struct req *r)
{
	return r->tenant[0] ? r->tenant : NULL;
}

/* A query argument's value, or NULL when absent. */
static const char *arg_of(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result do_jobs(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char why[600];
	json_t *out = NULL;
	if (!strcmp(r->method, "GET")) {
		struct jobs_query q;
		if (api_parse_jobs_query(arg_of(c, "state"), arg_of(c, "tenant"), arg_of(c, "limit"),
					 arg_of(c, "before"), &q, why, sizeof why) != 0)
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST, why, NULL);
		if (tenant_of(r)) {
			/* A tenant token lists its own tenant's jobs only. */
			if (q.tenant[0] && strcmp(q.tenant, r->tenant) != 0)
				return respond_error(api, c, MHD_HTTP_FORBIDDEN,
						     "a tenant token lists only its own tenant's jobs", NULL);
			snprintf(q.tenant, sizeof q.tenant, "%s", r->tenant);
		}
		out = api->be.jobs_list ? api->be.jobs_list(api->be.arg, &q) : NULL;
		if (!out)
			return respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list jobs", NULL);
		return respond_json(api, c, MHD_HTTP_OK, out, NULL);
	}
	if (!api->be.job_submit)
		return respond_error(api, c, MHD_HTTP_NOT_FOUND, "jobs are not served here", NULL);
	why[0] = '\0';
	int rc = api->be.job_submit(api->be.arg, r->body.len ? (const char *)r->body.data : "",
				    r->body.len, tenant_of(r), &out, why, sizeof why);
	if (rc)
		return respond_error(api, c, status_of(rc), why[0] ? why : ss_strerror(rc), NULL);
	return respond_json(api, c, MHD_HTTP_CREATED, out, NULL);
}

/* POST /v1/jobs/plan: what submitting the body would do now; nothing is kept. */
static enum MHD_Result do_plan(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char why[600] = "";
	json_t *out = NULL;
	if (!api->be.job_plan)
		return respond_error(api, c, MHD_HTTP_NOT_FOUND, "jobs are not served here", NULL);
	int rc = api->be.job_plan(api->be.arg, r->body.len ? (const char *)r->body.data : "", r->body.len,
				  tenant_of(r), &out, why, sizeof why);
	if (rc)
		return respond_error(api, c, status_of(rc), why[0] ? why : ss_strerror(rc), NULL);
	return respond_json(api, c, MHD_HTTP_OK, out, NULL);
}

static enum MHD_Result not_found(struct api *api, struct MHD_Connection *c, const char *what,
				 const char *id)
{
	char msg[160];
	snprintf(msg, sizeof msg, "%s \"%s\" not found", what, id);
	return respond_error(api, c, MHD_HTTP_NOT_FOUND, msg, NULL);
}

/*
 * True when the caller may see the job or task r names: always for the admin
 * token, else when it belongs to the caller's tenant.
 */
static bool owns(const struct api *api, const struct req *r)
{
	if (!r->tenant[0])
		return true;
	const char *t = NULL;
	if (task_route(r))
		t = api->be.task_tenant ? api->be.task_tenant(api->be.arg, r->id) : NULL;
	else
		t = api->be.job_tenant ? api->be.job_tenant(api->be.arg, r->id) : NULL;
	return t && !strcmp(t, r->tenant);
}

/* ---- waiting for a change (blocking queries) ------------------------------ */

static void on_timer(uv_timer_t *t);

static void waiter_del(struct api *api, struct req *r)
{
	if (!r->waiting)
		return;
	if (r->wprev)
		r->wprev->wnext = r->wnext;
	else
		api->waiters = r->wnext;
	if (r->wnext)
		r->wnext->wprev = r->wprev;
	r->wprev = r->wnext = NULL;
	r->waiting = false;
	api->n_waiters--;
	if (!api->waiters)
		uv_timer_stop(&api->wait_timer);
}

/* The index a request watches: its job's, or the node list's; 0 when the job is unknown. */
static uint64_t watched_index(const struct api *api, const struct req *r)
{
	if (r->route == R_NODES)
		return api->be.nodes_index ? api->be.nodes_index(api->be.arg) : 0;
	return api->be.job_index ? api->be.job_index(api->be.arg, r->id) : 0;
}

/*
 * Resumes every waiting request whose index moved or whose wait ended, or
 * every one when all is set; MHD answers them at its next run, which is
 * scheduled at once.
 */
static void wake(struct api *api, bool all)
{
	uint64_t now = time_mono_ms();
	bool any = false;
	for (struct req *r = api->waiters, *next; r; r = next) {
		next = r->wnext;
		if (!all && now < r->wait_until && watched_index(api, r) == r->wait_index)
			continue;
		waiter_del(api, r);
		MHD_resume_connection(r->conn);
		any = true;
	}
	if (any && !api->stopping)
		uv_timer_start(&api->timer, on_timer, 0, 0);
}

static void on_wait_timer(uv_timer_t *t)
{
	wake(t->data, false);
}

void api_notify(struct api *api)
{
	if (!api || !api->waiters || api->stopping || !api->be.jobs_index_now)
		return;
	/* Both indexes only grow, so their sum moves when either does. */
	uint64_t now = api->be.jobs_index_now(api->be.arg) +
		       (api->be.nodes_index ? api->be.nodes_index(api->be.arg) : 0);
	if (now == api->seen_index)
		return; /* nothing changed */
	api->seen_index = now;
	wake(api, false);
}

/*
 * For GET /v1/jobs/{id}?index=N[&wait=D] and GET /v1/nodes?index=N[&wait=D]:
 * returns true when the request now waits (its connection suspended)
 * because the index it watches (watched_index) is still N and its wait has
 * not ended; false when it should be answered now, with bad[badlen] set to
 * a message for a malformed argument (else ""). The wait starts with the
 * first call; a resumed request keeps its deadline.
 */
static bool waits(struct api *api, struct MHD_Connection *c, struct req *r, char *bad, size_t badlen)
{
	uint64_t index, wait;
	bool watch;
	if (api_parse_watch_query(arg_of(c, "index"), arg_of(c, "wait"), &watch, &index, &wait, bad, badlen) != 0 ||
	    !watch)
		return false;
	if (r->wait_until == 0) {
		r->wait_until = time_mono_ms() + wait;
		r->wait_index = index;
	}
	/* An unknown job (index 0) is answered at once: 404. */
	uint64_t now_index = watched_index(api, r);
	if (api->stopping || api->n_waiters >= API_MAX_WAITERS || time_mono_ms() >= r->wait_until ||
	    now_index == 0 || now_index != index)
		return false;
	r->conn = c;
	r->answered = false; /* MHD calls on_request again when it is resumed: answer then */
	r->waiting = true;
	r->wprev = NULL;
	r->wnext = api->waiters;
	if (api->waiters)
		api->waiters->wprev = r;
	api->waiters = r;
	if (api->n_waiters++ == 0)
		uv_timer_start(&api->wait_timer, on_wait_timer, API_WAIT_TICK_MS, API_WAIT_TICK_MS);
	MHD_suspend_connection(c);
	return true;
}

/*
 * Answers a request that makes a job from job r->id (a rerun, a launch, a
 * dispatch): 201 with out, 404 for SS_ENOTFOUND, or the error rc maps to
 * with why (or rc's name when why is empty). Takes ownership of out.
 */
static enum MHD_Result created(struct api *api, struct MHD_Connection *c, const struct req *r, int rc,
			       json_t *out, const char *why)
{
	if (rc == SS_ENOTFOUND) {
		json_decref(out);
		return not_found(api, c, "job", r->id);
	}
	if (rc) {
		json_decref(out);
		return respond_error(api, c, status_of(rc), why[0] ? why : ss_strerror(rc), NULL);
	}
	return respond_json(api, c, MHD_HTTP_CREATED, out, NULL);
}

static enum MHD_Result do_job(struct api *api, struct MHD_Connection *c, struct req *r)
{
	json_t *out = NULL;
	if (r->body.len > 0 && r->route != R_JOB_DISPATCH)
		return respond_error(api, c, MHD_HTTP_BAD_REQUEST, "this route takes no body", NULL);
	/* Another tenant's job is answered as if it did not exist. */
	if (!owns(api, r))
		return not_found(api, c, task_route(r) ? "task" : "job", r->id);
	if (!strcmp(r->method, "DELETE")) {
		const char *why = NULL;
		int rc = api->be.job_cancel ? api->be.job_cancel(api->be.arg, r->id, &out, &why)
					    : SS_ENOTFOUND;
		if (rc == SS_ENOTFOUND)
			return not_found(api, c, "job", r->id);
		if (rc)
			return respond_error(api, c, status_of(rc), why ? why : ss_strerror(rc), NULL);
		return respond_json(api, c, MHD_HTTP_OK, out, NULL);
	}
	switch (r->route) {
	case R_JOB_RERUN: {
		char why[600] = "";
		int rc = api->be.job_rerun ? api->be.job_rerun(api->be.arg, r->id, tenant_of(r), &out, why,
							       sizeof why)
					   : SS_ENOTFOUND;
		return created(api, c, r, rc, out, why);
	}
	case R_JOB_DISPATCH: {
		char why[600] = "";
		int rc = api->be.job_dispatch ? api->be.job_dispatch(api->be.arg, r->id, (const char *)r->body.data,
								     r->body.len, tenant_of(r), &out, why, sizeof why)
					      : SS_ENOTFOUND;
		return created(api, c, r, rc, out, why);
	}
	case R_JOB_LAUNCH: {
		char why[600] = "";
		int rc = api->be.job_launch ? api->be.job_launch(api->be.arg, r->id, &out, why, sizeof why)
					    : SS_ENOTFOUND;
		return created(api, c, r, rc, out, why);
	}
	case R_JOB: {
		char bad[160];
		if (waits(api, c, r, bad, sizeof bad))
			return MHD_YES; /* answered when resumed */
		if (bad[0])
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST, bad, NULL);
		out = api->be.job_get ? api->be.job_get(api->be.arg, r->id) : NULL;
		break;
	}
	case R_JOB_TASKS:
		out = api->be.job_tasks ? api->be.job_tasks(api->be.arg, r->id) : NULL;
		break;
	case R_TASK_LOGS:
		out = api->be.task_logs ? api->be.task_logs(api->be.arg, r->id) : NULL;
		if (!out)
			return not_found(api, c, "task", r->id);
		break;
	case R_BLOB_REPLICAS: {
		uint8_t d[SHA256_LEN];
		if (hex_decode(r->id, d, SHA256_LEN) == 0 && api->be.blob_replicas)
			out = api->be.blob_replicas(api->be.arg, d);
		if (!out)
			return not_found(api, c, "blob", r->id);
		break;
	}
	case R_TASK_OUTPUT: {
		uint64_t from[2] = {0, 0};
		static const char *const names[2] = {"stdout", "stderr"};
		for (int s = 0; s < 2; s++) {
			const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[s]);
			if (v && !parse_offset(v, &from[s]))
				return respond_error(api, c, MHD_HTTP_BAD_REQUEST,
						     s ? "stderr: expected a byte offset"
						       : "stdout: expected a byte offset",
						     NULL);
		}
		int rc = api->be.task_output ? api->be.task_output(api->be.arg, r->id, from, &out)
					     : SS_ENOTFOUND;
		if (rc == SS_ENOTFOUND)
			return not_found(api, c, "task", r->id);
		if (rc == SS_ELIMIT)
			return respond_error(api, c, MHD_HTTP_SERVICE_UNAVAILABLE,
					     "too many task outputs are followed at once; try again in a few "
					     "seconds",
					     NULL);
		if (rc)
			return respond_error(api, c, status_of(rc), ss_strerror(rc), NULL);
		break;
	}
	case R_JOB_EXPLAIN: {
		char why[300] = "";
		const char *task = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "task");
		if (task && (strlen(task) > 127 || !*task))
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST, "bad task name", NULL);
		int rc = api->be.job_explain
				 ? api->be.job_explain(api->be.arg, r->id, task, &out, why, sizeof why)
				 : SS_ENOTFOUND;
		if (rc)
			return respond_error(api, c, status_of(rc), why[0] ? why : ss_strerror(rc), NULL);
		break;
	}
	default:
		break;
	}
	if (!out)
		return not_found(api, c, "job", r->id);
	return respond_json(api, c, MHD_HTTP_OK, out, NULL);
}

static ssize_t blob_read_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct blob_reader *br = cls;
	(void)pos; /* MHD reads sequentially from 0 */
	size_t got = 0;
	if (blob_reader_read(br, buf, max, &got) != 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return got == 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)got;
}

static void blob_free_cb(void *cls)
{
	blob_reader_close(cls);
}

static enum MHD_Result do_blob(struct api *api, struct MHD_Connection *c, struct req *r)
{
	uint8_t digest[SHA256_LEN];
	if (!api->blobs || hex_decode(r->id, digest, SHA256_LEN) != 0)
		return not_found(api, c, "blob", r->id);
	if (!strcmp(r->method, "PUT")) {
		struct blob_writer *w = r->upload;
		r->upload = NULL;
		int rc = r->upload_rc;
		if (rc == 0 && r->received != r->upload_size)
			rc = SS_ETRUNC;
		if (rc) {
			blob_writer_abort(w);
		} else {
			rc = blob_writer_commit(w, NULL);
		}
		if (rc == SS_EINTEGRITY)
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST,
					     "the uploaded bytes do not hash to the digest in the URL", NULL);
		if (rc == SS_ELIMIT)
			return respond_error(api, c, MHD_HTTP_INSUFFICIENT_STORAGE,
					     "the blob store is full", NULL);
		if (rc)
			return respond_error(api, c, status_of(rc), ss_strerror(rc), NULL);
		/* A tenant may now name it (uploading proved that it holds the bytes). */
		char msg[300];
		rc = r->tenant[0] ? tenants_upload_add(api->tenants, r->tenant, digest, r->upload_size,
						       msg, sizeof msg)
				  : 0;
		if (rc)
			return respond_error(api, c, MHD_HTTP_TOO_MANY_REQUESTS, msg, NULL);
		if (api->be.blob_added)
			api->be.blob_added(api->be.arg, digest, r->upload_size);
		json_t *j = json_pack("{s:s,s:I}", "digest", r->id, "size", (json_int_t)r->upload_size);
		return respond_json(api, c, MHD_HTTP_CREATED, j, NULL);
	}
	/* A tenant reads what it uploaded and what its jobs use; anything else is absent to it. */
	if (r->tenant[0] &&
	    !(api->be.blob_visible && api->be.blob_visible(api->be.arg, digest, r->tenant)))
		return not_found(api, c, "blob", r->id);
	struct blob_reader *br = NULL;
	uint64_t size = 0;
	int rc = blobstore_read_open(api->blobs, digest, &br, &size);
	json_t *held = rc == SS_ENOTFOUND && api->be.blob_replicas
			       ? api->be.blob_replicas(api->be.arg, digest)
			       : NULL;
	size_t n_held = held ? json_array_size(json_object_get(held, "replicas")) : 0;
	json_decref(held);
	if (rc == SS_ENOTFOUND && n_held)
		return respond_error(api, c, MHD_HTTP_NOT_FOUND,
				     "the manager does not keep this blob (an intermediate output); agents "
				     "hold it: GET /v1/blobs/{digest}/replicas",
				     NULL);
	if (rc == SS_ENOTFOUND)
		return not_found(api, c, "blob", r->id);
	if (rc)
		return respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ss_strerror(rc), NULL);
	struct MHD_Response *resp =
		MHD_create_response_from_callback(size, 64 * 1024, blob_read_cb, br, blob_free_cb);
	if (!resp) {
		blob_reader_close(br);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream") ==
		    MHD_YES &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
	    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES)
		ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	if (ret == MHD_YES)
		api->answered[2]++;
	MHD_destroy_response(resp);
	return ret;
}

/* GET and POST /v1/tokens, DELETE /v1/tokens/{id} (admin only, checked in classify). */
static enum MHD_Result do_tokens(struct api *api, struct MHD_Connection *c, struct req *r)
{
	char why[256], tenant[64];
	json_t *out = NULL;
	if (!api->tenants)
		return respond_error(api, c, MHD_HTTP_NOT_FOUND, "tenant tokens are not served here", NULL);
	if (r->route == R_TOKEN) {
		int rc = tenants_token_revoke(api->tenants, r->id);
		if (rc == SS_ENOTFOUND)
			return not_found(api, c, "token", r->id);
		if (rc)
			return respond_error(api, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					     "the token is revoked, but the store could not record it; "
					     "it may work again after a restart",
					     NULL);
		return respond_json(api, c, MHD_HTTP_OK, json_pack("{s:s,s:b}", "id", r->id, "revoked", 1),
				    NULL);
	}
	if (!strcmp(r->method, "GET")) {
		if (r->body.len > 0)
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST, "this route takes no body", NULL);
		return respond_json(api, c, MHD_HTTP_OK, tenants_tokens_json(api->tenants), NULL);
	}
	uint64_t ttl_s;
	bool read_only;
	int rc = api_parse_token_body((const char *)r->body.data, r->body.len, tenant, &ttl_s, &read_only,
				      why, sizeof why);
	if (!rc)
		rc = tenants_token_create(api->tenants, tenant, ttl_s, read_only, &out, why, sizeof why);
	if (rc)
		return respond_error(api, c,
				     rc == SS_ETOOBIG ? MHD_HTTP_CONTENT_TOO_LARGE
				     : rc == SS_ESTORE ? MHD_HTTP_INTERNAL_SERVER_ERROR
						       : MHD_HTTP_BAD_REQUEST,
				     why, NULL);
	return respond_json(api, c, MHD_HTTP_CREATED, out, NULL);
}

/* Queues the answer to a request whose body has been read (or refused). */
static enum MHD_Result answer_route(struct api *api, struct MHD_Connection *c, struct req *r)
{
	r->answered = true;
	if (r->status)
		return respond_error(api, c, r->status, r->msg, &r->extra);
	switch (r->route) {
	case R_HEALTH:
		return do_health(api, c);
	case R_NODES:
		return do_nodes(api, c, r);
	case R_NODE:
		return do_node(api, c, r->id);
	case R_DRAIN:
		return do_drain(api, c, r);
	case R_ATTEST:
		return do_attest(api, c, r);
	case R_METRICS:
		return do_metrics(api, c);
	case R_JOBS:
		return do_jobs(api, c, r);
	case R_JOB_PLAN:
		return do_plan(api, c, r);
	case R_JOB:
	case R_JOB_TASKS:
	case R_JOB_EXPLAIN:
	case R_JOB_RERUN:
	case R_JOB_LAUNCH:
	case R_JOB_DISPATCH:
	case R_TASK_LOGS:
	case R_TASK_OUTPUT:
	case R_BLOB_REPLICAS:
		return do_job(api, c, r);
	case R_BLOB:
		return do_blob(api, c, r);
	case R_TOKENS:
	case R_TOKEN:
		return do_tokens(api, c, r);
	case R_AUDIT: {
		uint64_t after = 0, limit = 100;
		const char *a = arg_of(c, "after"), *l = arg_of(c, "limit");
		if ((a && !parse_dec(a, strlen(a), &after)) ||
		    (l && (!parse_dec(l, strlen(l), &limit) || limit < 1 || limit > AUDIT_PAGE_MAX)))
			return respond_error(api, c, MHD_HTTP_BAD_REQUEST,
					     "query: \"after\" must be a sequence number and \"limit\" a number "
					     "from 1 to 1000",
					     NULL);
		if (!api->audit)
			return respond_error(api, c, MHD_HTTP_NOT_FOUND, "no audit trail here", NULL);
		return respond_json(api, c, MHD_HTTP_OK, audit_json(api->audit, after, (size_t)limit), NULL);
	}
	case R_TENANTS: {
		/* A tenant token sees its own tenant's row only. */
		json_t *out = api->be.tenants_list ? api->be.tenants_list(api->be.arg, tenant_of(r)) : NULL;
		if (!out)
			return respond_error(api, c, MHD_HTTP_NOT_FOUND, "tenants are not served here", NULL);
		return respond_json(api, c, MHD_HTTP_OK, out, NULL);
	}
	case R_NONE:
		break;
	}
	return respond_error(api, c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
}

/*
 * Answers r, and records every authenticated request that could change
 * something (any method but GET and HEAD) in the audit trail, whatever its
 * outcome: the caller, the method and path, the status and the id it made.
 */
static enum MHD_Result answer(struct api *api, struct MHD_Connection *c, struct req *r)
{
	api->last_status = 0;
	api->last_id[0] = '\0';
	enum MHD_Result ret = answer_route(api, c, r);
	if (api->audit && r->authed && strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
		char actor[80];
		snprintf(actor, sizeof actor, "%s%s", r->tenant[0] ? "tenant:" : "admin", r->tenant);
		audit_add(api->audit, actor, r->method, r->url, api->last_status, api->last_id);
	}
	return ret;
}

/* ---- MHD callbacks ------------------------------------------------------ */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct api *api = cls;
	struct req *r = *con_cls;
	(void)version;
	api->zero_runs = 0; /* MHD is making progress, not spinning */
	if (!r) {
		/* First call: headers only. */
		r = xcalloc(1, sizeof *r);
		buf_init(&r->body);
		*con_cls = r;
		snprintf(r->method, sizeof r->method, "%s", method);
		classify(api, c, url, method, r);
		uint64_t clen = 0;
		bool known = parse_length(
			MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH),
			&clen);
		uint64_t limit = body_limit(r, method);
		if (!r->status && known && clen > limit)
			decide(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, NULL,
			       "request body of %llu bytes is over the limit of %llu bytes",
			       (unsigned long long)clen, (unsigned long long)limit);
		if (!r->status && r->route == R_BLOB && !strcmp(method, "PUT")) {
			uint8_t digest[SHA256_LEN];
			char msg[300];
			if (!known)
				decide(r, MHD_HTTP_LENGTH_REQUIRED, NULL, NULL,
				       "a blob upload needs a Content-Length");
			else if (!api->blobs || hex_decode(r->id, digest, SHA256_LEN) != 0)
				decide(r, MHD_HTTP_NOT_FOUND, NULL, NULL, "blob uploads are not served here");
			else if (r->tenant[0] && api->tenants &&
				 tenants_upload_room(api->tenants, r->tenant, digest, clen, msg, sizeof msg) != 0)
				decide(r, MHD_HTTP_TOO_MANY_REQUESTS, NULL, NULL, "%s", msg);
			else if (blobstore_write_begin(api->blobs, digest, clen ? clen : 0, &r->upload) != 0)
				decide(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL,
				       "cannot start writing the blob");
			r->upload_size = clen;
		}
		if (r->status && known && clen > 0) {
			const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
									 MHD_HTTP_HEADER_EXPECT);
			bool waits = expect && !strcasecmp(expect, "100-continue");
			if (clen > API_DISCARD_MAX || waits) {
				/* MHD skips the body and closes after answering only for these. */
				if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0)
					return MHD_NO;
				return answer(api, c, r);
			}
		}
		return MHD_YES;
	}
	if (r->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		r->received += n;
		if (r->upload && !r->status) {
			if (r->received > r->upload_size)
				r->upload_rc = SS_ELIMIT;
			else if (r->upload_rc == 0)
				r->upload_rc = blob_writer_write(r->upload, upload, n);
			return MHD_YES;
		}
		if (r->received > API_DISCARD_MAX) {
			log_debug("api: dropping a connection that sent over %u body bytes",
				  API_DISCARD_MAX);
			return MHD_NO;
		}
		if (r->status)
			return MHD_YES;
		uint64_t limit = body_limit(r, r->method);
		if (r->received > limit) {
			buf_free(&r->body);
			decide(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, NULL,
			       "request body is over the limit of %llu bytes", (unsigned long long)limit);
			return MHD_YES;
		}
		if (r->route == R_DRAIN || r->route == R_JOBS || r->route == R_JOB_PLAN || r->route == R_JOB_DISPATCH ||
		    r->route == R_TOKENS)
			buf_append(&r->body, upload, n);
		return MHD_YES;
	}
	return answer(api, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;
	(void)c;
	(void)toe;
	if (!r)
		return;
	waiter_del(cls, r);
	blob_writer_abort(r->upload);
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	const struct api *api = cls;
	char line[256];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	ascii_clean(line);
	/* Failures while starting are configuration problems; later ones are clients'. */
	if (api->started)
		log_debug("api: %s", line);
	else
		log_warn("api: %s", line);
}

/* ---- libuv integration -------------------------------------------------- */

/* Lets MHD do its work, then re-arms the timer from MHD's own deadline. */
static void api_run(struct api *api)
{
	MHD_UNSIGNED_LONG_LONG t;
	uint64_t ms = API_TICK_MS;
	if (api->stopping)
		return;
	MHD_run(api->mhd);
	if (api->stopping) /* a backend callback stopped the API */
		return;
	if (MHD_get_timeout(api->mhd, &t) == MHD_YES && t < ms)
		ms = t;
	if (ms > 0)
		api->zero_runs = 0;
	else if (++api->zero_runs > API_SPIN_RUNS)
		ms = API_SPIN_BACKOFF_MS;
	uv_timer_start(&api->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
	api_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct api *api = p->data;
	(void)events;
	if (status < 0)
		log_warn("api: polling MHD's epoll fd failed: %s", uv_strerror(status));
	api->zero_runs = 0;
	api_run(api);
}

/* Fills sa from host and port; returns the address length or a negative SS_E* code. */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *sa)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	struct addrinfo hints, *res = NULL;
	int rc = SS_ECONFIG;
	memset(sa, 0, sizeof *sa);
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		rc = (int)sizeof *v4;
		goto out;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		rc = (int)sizeof *v6;
		goto out;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6) ||
	    res->ai_addrlen > sizeof *sa) {
		log_error("api: cannot resolve listen host \"%s\"", host);
		goto out;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	if (res->ai_family == AF_INET) {
		v4->sin_port = htons(port);
		rc = (int)sizeof *v4;
	} else {
		v6->sin6_port = htons(port);
		rc = (int)sizeof *v6;
	}
out:
	if (res)
		freeaddrinfo(res);
	return rc;
}

static void api_free(struct api *api)
{
	if (!api)
		return;
	if (api->mhd)
		MHD_stop_daemon(api->mhd);
	free(api->cert_pem);
	free(api->key_pem);
	free(api);
}

int api_start(struct api **out, uv_loop_t *loop, const struct api_opts *opts)
{
	int rc = SS_ECONFIG;
	char host[256];
	uint16_t port;
	struct sockaddr_storage sa;
	struct api *api = NULL;
	*out = NULL;
	if (!opts->listen || !opts->cert_pem || !opts->key_pem ||
	    addr_split(opts->listen, host, sizeof host, &port) != 0) {
		log_error("api: bad listen address or missing certificate/key");
		goto out;
	}
	int salen = resolve(host, port, &sa);
	if (salen < 0) {
		rc = salen;
		goto out;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
	    MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES) {
		log_error("api: libmicrohttpd lacks TLS or epoll support");
		rc = SS_ENOSYS;
		goto out;
	}
	api = xcalloc(1, sizeof *api);
	api->cert_pem = xstrdup(opts->cert_pem);
	api->key_pem = xstrdup(opts->key_pem);
	memcpy(api->token_hash, opts->token_hash, SHA256_LEN);
	api->be = opts->backend;
	api->blobs = opts->blobs;
	api->tenants = opts->tenants;
	api->audit = opts->audit;
	unsigned flags = MHD_USE_TLS | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	api->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, api,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
				    MHD_OPTION_HTTPS_MEM_CERT, api->cert_pem,
				    MHD_OPTION_HTTPS_MEM_KEY, api->key_pem,
				    MHD_OPTION_HTTPS_PRIORITIES, API_TLS_PRIORITIES,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				    MHD_OPTION_CONNECTION_LIMIT, API_CONN_LIMIT,
				    MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S,
				    MHD_OPTION_PER_IP_CONNECTION_LIMIT, API_PER_IP_LIMIT,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
				    MHD_OPTION_END);
	if (!api->mhd) {
		log_error("api: cannot start HTTPS on %s (address in use, or bad certificate or key)",
			  opts->listen);
		rc = SS_EIO;
		goto out;
	}
	api->started = true;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
	api->port = info ? info->port : 0;
	if (api->port == 0) {
		struct sockaddr_storage bound;
		socklen_t blen = sizeof bound;
		memset(&bound, 0, sizeof bound);
		info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_LISTEN_FD);
		if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
			api->port = ntohs(bound.ss_family == AF_INET6
						  ? ((struct sockaddr_in6 *)&bound)->sin6_port
						  : ((struct sockaddr_in *)&bound)->sin_port);
	}
	info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		log_error("api: libmicrohttpd has no epoll fd");
		rc = SS_EIO;
		goto out;
	}
	int err = uv_poll_init(loop, &api->poll, info->epoll_fd);
	if (err) {
		log_error("api: cannot watch MHD's epoll fd: %s", uv_strerror(err));
		rc = SS_EIO;
		goto out;
	}
	api->poll.data = api;
	uv_timer_init(loop, &api->timer);
	api->timer.data = api;
	uv_timer_init(loop, &api->wait_timer);
	api->wait_timer.data = api;
	api->open_handles = 3;
	uv_poll_start(&api->poll, UV_READABLE, on_poll);
	uv_timer_start(&api->timer, on_timer, 0, 0);
	log_info("api: serving HTTPS on %s (port %u)", opts->listen, (unsigned)api->port);
	*out = api;
	api = NULL;
	rc = 0;
out:
	api_free(api);
	return rc;
}

uint16_t api_port(const struct api *api)
{
	return api->port;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct api *api = h->data;
	if (--api->open_handles > 0)
		return;
	void (*cb)(void *) = api->stop_cb;
	void *arg = api->stop_arg;
	/* The handles no longer watch MHD's fds, so MHD may close them now. */
	MHD_stop_daemon(api->mhd);
	api->mhd = NULL;
	if (cb)
		cb(arg);
	api_free(api);
}

void api_stop(struct api *api, void (*cb)(void *arg), void *arg)
{
	if (!api || api->stopping)
		return;
	/* Waiting requests are resumed so that MHD_stop_daemon closes them with the rest. */
	wake(api, true);
	api->stopping = true;
	api->stop_cb = cb;
	api->stop_arg = arg;
	uv_close((uv_handle_t *)&api->poll, on_handle_closed);
	uv_close((uv_handle_t *)&api->timer, on_handle_closed);
	uv_close((uv_handle_t *)&api->wait_timer, on_handle_closed);
}
