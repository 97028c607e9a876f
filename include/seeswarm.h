/*
 * seeswarm.h - public client API of seeswarm.
 *
 * The client library talks to a seeswarm manager's HTTPS/JSON API. Every
 * function returns 0 on success or a negative SS_E* code; ss_strerror() names
 * the code. Handles are opaque, created by *_open and released by *_close.
 * Strings returned through out-parameters are owned by the caller and are
 * released with ss_free().
 *
 * Thread safety: one ss_client may be used by one thread at a time.
 */
#ifndef SEESWARM_H
#define SEESWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SS_VERSION "0.1.0"

/* The error table: name, errno-like value, message. */
#define SS_ERRNO_MAP(X)                                                     \
	X(EINVAL, 1, "invalid argument")                                    \
	X(ENOMEM, 2, "out of memory")                                       \
	X(EIO, 3, "input/output error")                                     \
	X(EPROTO, 4, "protocol error")                                      \
	X(ETOOBIG, 5, "message too large")                                  \
	X(ETRUNC, 6, "truncated input")                                     \
	X(EVERSION, 7, "unsupported protocol version")                      \
	X(ETYPE, 8, "unknown message type")                                 \
	X(ETLS, 9, "TLS failure")                                           \
	X(ECRYPTO, 10, "cryptographic failure")                             \
	X(EAUTH, 11, "authentication failed")                               \
	X(EATTEST, 12, "attestation rejected")                              \
	X(ENOTFOUND, 13, "not found")                                       \
	X(EEXIST, 14, "already exists")                                     \
	X(ESTATE, 15, "invalid state")                                      \
	X(ETIMEDOUT, 16, "timed out")                                       \
	X(ECONN, 17, "connection failed")                                   \
	X(ECLOSED, 18, "connection closed")                                 \
	X(ELIMIT, 19, "limit exceeded")                                     \
	X(EPARSE, 20, "parse error")                                        \
	X(ESTORE, 21, "storage failure")                                    \
	X(EPERM, 22, "permission denied")                                   \
	X(ECONFIG, 23, "configuration error")                               \
	X(EHTTP, 24, "HTTP error")                                          \
	X(ENOSYS, 25, "not supported on this system")                       \
	X(EPOLICY, 26, "policy violation")                                   \
	X(EINTEGRITY, 27, "integrity check failed")                         \
	X(ECANCELED, 28, "canceled")                                        \
	X(EQUOTA, 29, "quota exceeded")

enum {
	SS_OK = 0,
#define SS__ERR_ENUM(name, val, msg) SS_##name = -(val),
	SS_ERRNO_MAP(SS__ERR_ENUM)
#undef SS__ERR_ENUM
};

/* Returns a static, human-readable message for an SS_E* code (or 0). */
const char *ss_strerror(int err);

/* Releases memory returned by this library. ss_free(NULL) is a no-op. */
void ss_free(void *p);

/* ---- client ---------------------------------------------------------- */

typedef struct ss_client ss_client;

/*
 * Connection settings. Any NULL field is filled in, in this order, from the
 * environment (SEESWARM_ADDR, SEESWARM_TOKEN, SEESWARM_CA), then from the
 * config file the manager writes for the local user (SEESWARM_CONFIG, or
 * $XDG_CONFIG_HOME/seeswarm/config.json, or ~/.config/seeswarm/config.json).
 */
typedef struct ss_client_opts {
	const char *addr;    /* "HOST:PORT" of the manager's API */
	const char *token;   /* bearer token */
	const char *ca_file; /* PEM file of the swarm CA that signs the API cert */
	int timeout_ms;      /* per-request timeout; 0 means 10 s */
} ss_client_opts;

/* Opens a client. On success *out owns a handle to close with ss_client_close. */
int ss_client_open(ss_client **out, const ss_client_opts *opts);
void ss_client_close(ss_client *c);

/* The resolved API address ("HOST:PORT"); owned by the client. */
const char *ss_client_addr(const ss_client *c);

/*
 * Sends one request. body may be NULL. On success *status holds the HTTP
 * status and *resp a NUL-terminated body (caller frees with ss_free), even
 * for 4xx/5xx answers. Transport failures return a negative code.
 */
int ss_client_request(ss_client *c, const char *method, const char *path,
		      const char *body, size_t body_len, int *status,
		      char **resp, size_t *resp_len);

/*
 * Convenience calls. Each returns 0 and sets *json (caller frees with
 * ss_free) on a 2xx answer; on an error answer it returns SS_EHTTP,
 * SS_ENOTFOUND (404), SS_EAUTH (401/403) or SS_EQUOTA (429: a tenant's
 * quota or a manager limit) and sets *json to the error body
 * when one came back.
 */
int ss_nodes_list(ss_client *c, int include_all, char **json);
/*
 * ss_nodes_list that waits for a change, as ss_job_watch does for a job: the
 * answer's "index" grows with every stored change of any node (its state,
 * attestation, drain, labels; not its load figures).
 */
int ss_nodes_watch(ss_client *c, int include_all, uint64_t index, unsigned wait_ms, char **json);
int ss_node_get(ss_client *c, const char *id, char **json);
int ss_node_drain(ss_client *c, const char *id, char **json);
int ss_health(ss_client *c, char **json);
/* Asks the manager to re-attest a node now (HTTP 202 with the node). */
int ss_node_attest(ss_client *c, const char *id, char **json);

/*
 * Tenant tokens (admin token only; docs/security.md, "Tenants").
 * ss_token_create makes a token that works for ttl_seconds (0: until
 * revoked; the manager takes at most 10 years) and returns {"id", "tenant",
 * "created_ms", ["expires_ms",] "token"}: the only time the token itself is
 * shown. ss_tokens_list returns {"tokens": [...]} without secrets;
 * ss_token_revoke takes the id (16 hex digits).
 */
int ss_token_create(ss_client *c, const char *tenant, uint64_t ttl_seconds, char **json);
/*
 * ss_token_create with every option: a read_only token may only read (GET
 * and HEAD: list and watch its tenant's jobs, logs and results), for
 * dashboards and auditors; the rest is as for ss_token_create.
 */
typedef struct ss_token_opts {
	const char *tenant;
	uint64_t ttl_seconds; /* 0: until revoked */
	bool read_only;
} ss_token_opts;
int ss_token_make(ss_client *c, const ss_token_opts *o, char **json);
int ss_tokens_list(ss_client *c, char **json);
/*
 * Each tenant's use of the swarm and its quotas: {"tenants": [{"tenant",
 * "weight", "cpu_running_m", "cpu_cap_m", "tasks_queued", "jobs_unfinished",
 * "tokens", "tokens_read_only", "uploads", "upload_bytes"}, ...], "limits":
 * {"jobs_unfinished", "upload_bytes"}}. A tenant token gets its own row only.
 */
int ss_tenants_list(ss_client *c, char **json);
/*
 * The audit trail (admin token): up to limit (1..1000) entries after
 * sequence number `after`, oldest first, as {"entries": [{"seq", "ms",
 * "actor", "action", "target", "status", "detail"}, ...], "last_seq": N[,
 * "next": SEQ]}. Every authenticated request other than GET and HEAD is
 * recorded with its outcome, and so are nodes admitted, rejected, evicted,
 * down or gone.
 */
int ss_audit_list(ss_client *c, uint64_t after, unsigned limit, char **json);
int ss_token_revoke(ss_client *c, const char *id, char **json);

/* ---- jobs and blobs --------------------------------------------------- */

/*
 * Jobs (docs/jobs.md). ss_job_submit posts a job spec (JSON text whose
 * inputs are blobs or task outputs; upload local files first with
 * ss_blob_put_file) and returns the accepted job, whose "id" names it in the
 * other calls; a spec the manager refuses returns SS_EHTTP with *json
 * holding {"error": "<path>: <reason>"}. The others follow the convenience
 * calls' rules above. ss_job_explain takes an optional task name ("count[3]")
 * or task id and reports, for every node, why it was filtered or how it scored.
 */
int ss_job_submit(ss_client *c, const char *spec_json, char **json);
/*
 * Asks what submitting spec_json would do now, without submitting it: the
 * same checks (a spec the manager would refuse returns SS_EHTTP as
 * ss_job_submit does; quotas and blobs not uploaded yet come back as
 * "warnings"), then where each task that could start at once would be placed
 * against the capacity free now, what that costs per hour, and where the
 * tasks that wait for others would go (docs/jobs.md, "Planning a job").
 */
int ss_job_plan(ss_client *c, const char *spec_json, char **json);
int ss_jobs_list(ss_client *c, char **json);
/*
 * A page of jobs, newest first, as {"jobs": [...], "total": N[, "next":
 * CURSOR]} (ss_jobs_list is ss_jobs_find with no filter). Zero fields of f
 * (or a NULL f) mean any state, every tenant the token reaches, and the
 * manager's default page of 1,000. Pass a page's "next" as f->before for
 * the page after it. SS_EINVAL for a value the manager would refuse; a
 * tenant token that names another tenant gets SS_EHTTP (403).
 */
typedef struct ss_jobs_filter {
	const char *state;  /* "running", "succeeded", "failed" or "canceled"; NULL for any */
	const char *tenant; /* NULL for every tenant the token reaches */
	unsigned limit;     /* 1..10000; 0 for the manager's default */
	const char *before; /* an earlier page's "next"; NULL for the newest jobs */
} ss_jobs_filter;
int ss_jobs_find(ss_client *c, const ss_jobs_filter *f, char **json);
int ss_job_get(ss_client *c, const char *id, char **json);
/*
 * ss_job_get that waits for a change: the manager answers once the job's
 * "index" differs from index (at once when it already does, so pass 0 the
 * first time) or after wait_ms (at most 300000; 0 answers at once), with the
 * job as ss_job_get does. Pass the answer's "index" to the next call to
 * follow a job without polling. The client's timeout applies on top of
 * wait_ms. SS_EINVAL for a bad id or wait_ms.
 */
int ss_job_watch(ss_client *c, const char *id, uint64_t index, unsigned wait_ms, char **json);
int ss_job_cancel(ss_client *c, const char *id, char **json);
/*
 * Submits a retained job's spec again as a new job of the same tenant (its
 * blobs are still held while the old job is retained), and returns the new
 * job as ss_job_submit does, with "rerun_of" naming the old one.
 */
int ss_job_rerun(ss_client *c, const char *id, char **json);
/*
 * Launches a periodic job (a spec with "periodic") now, whatever its
 * schedule says, and returns the launched job as ss_job_submit does, with
 * "parent" naming the periodic job. SS_EHTTP (409) when the job is not
 * periodic or was stopped.
 */
int ss_job_launch(ss_client *c, const char *id, char **json);
/*
 * Dispatches a parameterized job (a spec with "parameterized"):
 * dispatch_json is {"meta": {"KEY": "value"}, "payload": "<blob digest>"}
 * (NULL: neither), and the answer is the launched job as ss_job_submit
 * returns it, with "parent" and "meta". Its tasks see SS_META_KEY in their
 * environment and the payload at /in/payload. SS_EHTTP (400) for metadata
 * or a payload the job does not take, (409) when it is not parameterized or
 * was stopped.
 */
int ss_job_dispatch(ss_client *c, const char *id, const char *dispatch_json, char **json);
int ss_job_tasks(ss_client *c, const char *id, char **json);
int ss_job_explain(ss_client *c, const char *id, const char *task, char **json);
/* A task's attempts with their exit status, stdout/stderr tails and signed receipts. */
int ss_task_logs(ss_client *c, const char *task_id, char **json);
/*
 * Follows the current attempt of a task: its stdout and stderr from byte
 * offsets stdout_from and stderr_from, as they come (GET
 * /v1/tasks/{id}/output). The answer is {"task", "attempt", "state", "node",
 * "ended", "stdout": {"from", "data", "next"}, "stderr": {...}}: poll again
 * from each "next" (a few times a second) until "ended"; new output shows
 * one poll after it was written. A new attempt starts again at offset 0.
 */
int ss_task_output(ss_client *c, const char *task_id, uint64_t stdout_from, uint64_t stderr_from,
		   char **json);

/*
 * Blobs are content-addressed by the SHA-256 of their bytes. ss_blob_put
 * uploads len bytes (skipping the upload when the manager already holds
 * them) and writes the digest as 64 hex digits plus NUL to digest_hex.
 * ss_blob_put_file does the same for a regular file and sets *size (may be
 * NULL). ss_blob_get_file downloads a blob into path (replacing it
 * atomically) and returns SS_EINTEGRITY, leaving nothing behind, when the
 * bytes do not hash to the digest.
 */
int ss_blob_put(ss_client *c, const void *data, size_t len, char digest_hex[65]);
int ss_blob_put_file(ss_client *c, const char *path, char digest_hex[65], uint64_t *size);
int ss_blob_get_file(ss_client *c, const char *digest_hex, const char *path);

/* The last error message of a call on c, for the user ("" when none). */
const char *ss_client_last_error(const ss_client *c);

#ifdef __cplusplus
}
#endif
#endif
