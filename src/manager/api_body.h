/*
 * api_body.h - the request-body parser of the manager's API (src/manager/api.c),
 * exported on its own so that unit tests and the libFuzzer harness
 * tests/fuzz/fuzz_api_body.c can exercise it without a server.
 */
#ifndef SS_API_BODY_H
#define SS_API_BODY_H

#include <stddef.h>

#include <jansson.h>

#include "manager/jobs.h"

/* The longest "reason" a drain request may carry, in characters. */
#define API_REASON_MAX 255u

/*
 * Parses the body of POST /v1/nodes/{id}/drain: len bytes at body (body may
 * be NULL when len is 0). An empty or all-whitespace body is allowed and
 * yields *out = NULL. Otherwise the body must be a JSON object without
 * duplicate keys whose only allowed member is "reason", a string of at most
 * API_REASON_MAX characters without control characters.
 *
 * Returns 0 and sets *out to a new reference (or NULL for an empty body), or
 * a negative SS_E* code (SS_ETOOBIG above API_MAX_BODY bytes, SS_EPARSE
 * otherwise) with *out = NULL. On every return, why (when whylen > 0) holds a
 * NUL-terminated message of printable ASCII: empty on success, naming the
 * problem on failure.
 */
int api_parse_drain_body(const char *body, size_t len, json_t **out, char *why, size_t whylen);

/*
 * Parses the body of POST /v1/tokens: a JSON object with "tenant", a name
 * that passes ident_valid(), and optionally "ttl_seconds", an integer from 1
 * to TENANTS_MAX_TTL_S (the token's lifetime; without it the token lives
 * until revoked), and "read_only", a boolean (default false). Returns 0 with
 * the name in tenant, the lifetime in *ttl_s (0 when absent) and the role in
 * *read_only, or SS_ETOOBIG / SS_EPARSE with tenant empty, *ttl_s 0 and
 * *read_only false. why is set as for api_parse_drain_body.
 */
int api_parse_token_body(const char *body, size_t len, char tenant[static 64], uint64_t *ttl_s,
			 bool *read_only, char *why, size_t whylen);

/*
 * Parses the query of GET /v1/jobs: each argument is the raw value or NULL
 * when absent. state must pass jobs_state_valid(), tenant ident_valid(),
 * limit is a decimal 1..JOBS_LIST_MAX (default JOBS_LIST_DEFAULT), and
 * before a cursor "<created_ms>.<job id>" from an earlier page's "next".
 * Returns 0 with q filled in, or SS_EPARSE with why set as for
 * api_parse_drain_body (q is then unspecified).
 */
int api_parse_jobs_query(const char *state, const char *tenant, const char *limit,
			 const char *before, struct jobs_query *q, char *why, size_t whylen);

/* ?wait= when ?index= comes alone, and the longest ?wait=, in ms. */
#define API_WAIT_DEFAULT_MS 60000u
#define API_WAIT_MAX_MS 300000u

/*
 * Parses the query of a GET /v1/jobs/{id} that waits for a change: index and
 * wait are the raw values or NULL when absent. Without index there is no
 * wait (*watch false; wait alone is an error). index is a decimal of 1 to 19
 * digits; wait a duration parse_duration_ms() reads, at most
 * API_WAIT_MAX_MS (default API_WAIT_DEFAULT_MS). Returns 0 with *watch,
 * *index and *wait_ms set, or SS_EPARSE with why set as for
 * api_parse_drain_body.
 */
int api_parse_watch_query(const char *index, const char *wait, bool *watch, uint64_t *index_out,
			  uint64_t *wait_ms, char *why, size_t whylen);

#endif
