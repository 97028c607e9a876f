/*
 * api.h - the manager's HTTPS/JSON API (libmicrohttpd, driven by the libuv
 * loop: MHD runs with MHD_USE_EPOLL and no thread of its own, and a uv_poll
 * on MHD's epoll fd plus a uv_timer call MHD_run).
 *
 * Routes (bearer token everywhere except /v1/health):
 *   GET  /v1/health                      {"status":"ok", ...backend health}
 *   GET  /v1/nodes[?all=1]               {"nodes":[...]}
 *   GET  /v1/nodes/{id}                  node object
 *   POST /v1/nodes/{id}/drain            optional JSON body {"reason": "..."}
 *   POST /v1/nodes/{id}/attest           re-attest the node now (202 with the node)
 *   GET  /metrics                        Prometheus text
 * Errors: JSON {"error": {"code": <http status>, "message": "..."}} with the
 * right 4xx: 400 bad JSON/body, 401 missing/wrong token, 404 unknown route or
 * node, 405 wrong method, 413 body over API_MAX_BODY, 409 state conflicts.
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
};

struct api_opts {
	const char *listen;          /* HOST:PORT; port 0 picks a free port */
	const char *cert_pem;        /* server certificate chain, PEM text */
	const char *key_pem;         /* server key, PEM text */
	uint8_t token_hash[32];      /* SHA-256 of the admin token */
	struct api_backend backend;
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

#endif
