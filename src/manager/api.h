/*
 * api.h - the manager's HTTPS/JSON API (libmicrohttpd, driven by the libuv
 * loop: MHD runs with MHD_USE_EPOLL and no thread of its own, and a uv_poll
 * on MHD's epoll fd plus a uv_timer call MHD_run).
 *
 * Routes (bearer token everywhere except /v1/health; "admin" marks the
 * routes a tenant token cannot reach, see tenants.h):
 *   GET  /v1/health                      {"status":"ok", ...backend health}
 *   GET  /v1/nodes[?all=1]               {"nodes":[...]}                    admin
 *   GET  /v1/nodes/{id}                  node object                         admin
 *   POST /v1/nodes/{id}/drain            optional JSON body {"reason": "..."} admin
 *   POST /v1/nodes/{id}/attest           re-attest the node now (202)        admin
 *   GET  /v1/tokens                      {"tokens":[...]} (no secrets)       admin
 *   POST /v1/tokens                      {"tenant": T}: 201 with the token   admin
 *   DELETE /v1/tokens/{id}               revoke a tenant token               admin
 *   GET  /v1/jobs                        {"jobs":[...]} (a tenant's own)
 *   POST /v1/jobs                        submit a job spec (201 with the job, once durable)
 *   POST /v1/jobs/plan                   what submitting that spec would do now (200; nothing kept)
 *   GET  /v1/jobs/{id}                   job object with its final results
 *   DELETE /v1/jobs/{id}                 cancel (200 with the job)
 *   GET  /v1/jobs/{id}/tasks             {"job":id,"tasks":[...]}
 *   GET  /v1/jobs/{id}/explain[?task=N]  placement explanation per node
 *   GET  /v1/tasks/{id}/logs             every attempt's status, stdout/stderr tails, receipt
 *   GET  /v1/tasks/{id}/output[?stdout=N&stderr=M]
 *                                        the current attempt's output from those offsets, as it
 *                                        comes (jobs_task_output); 503 when too many are followed
 *   PUT  /v1/blobs/{sha256}              upload a blob (streamed; the digest is checked)
 *   GET  /v1/blobs/{sha256}              download a blob (streamed)
 *   HEAD /v1/blobs/{sha256}              200 when present, with Content-Length
 *   GET  /v1/blobs/{sha256}/replicas     the agents holding it (replicas.h)  admin
 *   GET  /metrics                        Prometheus text                     admin
 * A tenant token reaches only its tenant's jobs, tasks and the blobs they
 * use (others answer 404, as if absent), may upload blobs, and submits jobs
 * as its tenant (403 for a spec naming another one).
 * Errors: JSON {"error": {"code": <http status>, "message": "..."}} with the
 * right 4xx: 400 bad JSON/body, 401 missing/wrong token, 403 an admin route
 * or another tenant's spec with a tenant token, 429 a tenant's quota (or a
 * manager limit on uploads), 404 unknown route or node, 405 wrong method, 413 body over API_MAX_BODY, 409 state conflicts.
 *
 * All callbacks run on the loop thread.
 */
#ifndef SS_API_H
#define SS_API_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "core/core.h"

#define API_MAX_BODY (64u * 1024u)
#define API_MAX_JOB_BODY (1024u * 1024u + 4096u) /* a job spec (JOBSPEC_MAX_JSON) */
#define API_MAX_BLOB (1ull << 30)                /* one uploaded blob */

struct blobstore;
struct tenants;
struct jobs_query;

struct api;

/* What the manager provides to the API. Each returns new references. */
struct api_backend {
	void *arg;
	/* All nodes, or only the ones not rejected/left unless all is true. */
	json_t *(*nodes_list)(void *arg, bool all);
	/* One node, or NULL when unknown (404). */
	json_t *(*node_get)(void *arg, const char *id);
	/*
	 * Drains a node. body is the parsed request body or NULL. Returns 0 and
	 * sets *out to the updated node, SS_ENOTFOUND (404) or SS_ESTATE (409,
	 * with *why set).
	 */
	int (*node_drain)(void *arg, const char *id, json_t *body, json_t **out, const char **why);
	/*
	 * Starts a re-attestation of a node now. Returns 0 and sets *out to the
	 * node, SS_ENOTFOUND (404) or SS_ESTATE (409, with *why set) when the node
	 * is not connected and admitted.
	 */
	int (*node_attest)(void *arg, const char *id, json_t **out, const char **why);
	/* Appends Prometheus text to out. */
	void (*metrics)(void *arg, struct buf *out);
	/* Extra health fields merged into {"status":"ok"}. */
	json_t *(*health)(void *arg);
	/*
	 * Jobs (see jobs.h). tenant is the caller's tenant, or NULL for the
	 * admin token. job_submit returns 0 with the job once it is durable, or
	 * SS_EINVAL/SS_EPARSE/SS_ELIMIT (400), SS_EPERM (403: the spec names
	 * another tenant) or SS_ESTORE (500) with the reason in why.
	 */
	int (*job_submit)(void *arg, const char *body, size_t len, const char *tenant, json_t **out,
			  char *why, size_t whylen);
	/* jobs_plan: 200 with the plan, or job_submit's errors (nothing is stored). */
	int (*job_plan)(void *arg, const char *body, size_t len, const char *tenant, json_t **out,
			char *why, size_t whylen);
	json_t *(*jobs_list)(void *arg, const struct jobs_query *q); /* jobs.h */
	/* {"tenants": [...], "limits": {...}}; tenant (a tenant token's) narrows it to that tenant. */
	json_t *(*tenants_list)(void *arg, const char *tenant);
	json_t *(*job_get)(void *arg, const char *id);                 /* NULL: 404 */
	uint64_t (*job_index)(void *arg, const char *id);              /* jobs_job_index */
	uint64_t (*jobs_index_now)(void *arg);                         /* jobs_index_now */
	/* Grows with every stored change of any node (state, attestation, drain, labels). */
	uint64_t (*nodes_index)(void *arg);
	int (*job_cancel)(void *arg, const char *id, json_t **out, const char **why);
	/* Submits job id's spec again as a new job (201); errors as job_submit, SS_ENOTFOUND (404). */
	int (*job_rerun)(void *arg, const char *id, const char *tenant, json_t **out, char *why,
			 size_t whylen);
	/* Launches periodic job id now (jobs_launch; 201); SS_ENOTFOUND (404), SS_ESTATE (409). */
	int (*job_launch)(void *arg, const char *id, json_t **out, char *why, size_t whylen);
	/*
	 * Dispatches parameterized job id with the request body (jobs_dispatch;
	 * 201); tenant as job_submit's. SS_ENOTFOUND (404), SS_ESTATE (409).
	 */
	int (*job_dispatch)(void *arg, const char *id, const char *body, size_t len, const char *tenant,
			    json_t **out, char *why, size_t whylen);
	json_t *(*job_tasks)(void *arg, const char *id);               /* NULL: 404 */
	int (*job_explain)(void *arg, const char *id, const char *task, json_t **out, char *why,
			   size_t whylen);
	json_t *(*task_logs)(void *arg, const char *task_id);          /* NULL: 404 */
	/* jobs_task_output: 0, SS_ENOTFOUND (404) or SS_ELIMIT (503). */
	int (*task_output)(void *arg, const char *task_id, const uint64_t from[2], json_t **out);
	/* A blob was uploaded (PUT /v1/blobs/{digest}) and committed. */
	void (*blob_added)(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size);
	/* Where a blob lives on agents (replicas_json); NULL: 404. */
	json_t *(*blob_replicas)(void *arg, const uint8_t digest[SHA256_LEN]);
	/*
	 * The tenant of a job or a task, or NULL when there is none such. The
	 * string is the backend's, valid until the loop runs again.
	 */
	const char *(*job_tenant)(void *arg, const char *job_id);
	const char *(*task_tenant)(void *arg, const char *task_id);
	/* True when tenant uploaded the blob or a retained job of tenant uses it (jobs_blob_visible). */
	bool (*blob_visible)(void *arg, const uint8_t digest[SHA256_LEN], const char *tenant);
};

struct api_opts {
	const char *listen;          /* HOST:PORT; port 0 picks a free port */
	const char *cert_pem;        /* server certificate chain, PEM text */
	const char *key_pem;         /* server key, PEM text */
	uint8_t token_hash[32];      /* SHA-256 of the admin token */
	struct api_backend backend;
	struct blobstore *blobs;     /* serves /v1/blobs; NULL = no blob routes */
	struct tenants *tenants;     /* tenant tokens and /v1/tokens; NULL = the admin token only */
	struct audit *audit;         /* records every authenticated change; serves /v1/audit; may be NULL */
};

/* Starts serving. */
int api_start(struct api **out, uv_loop_t *loop, const struct api_opts *opts);
/* The bound port (useful when listen asked for port 0). */
uint16_t api_port(const struct api *api);
/*
 * Stops serving and closes the loop handles; cb (may be NULL) runs once
 * they are closed, after which the api is freed.
 */
void api_stop(struct api *api, void (*cb)(void *arg), void *arg);
/*
 * Tells the API that jobs or nodes may have changed (call after each
 * commit): the requests waiting for a change (GET /v1/jobs/{id}?index=N,
 * GET /v1/nodes?index=N) whose index moved are answered. Cheap when nothing
 * waits. Loop thread only.
 */
void api_notify(struct api *api);

#endif
