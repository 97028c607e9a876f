/*
 * fuzz_api_body.c - libFuzzer harness for the request-body parsers of the
 * manager's API (api_parse_drain_body and api_parse_token_body in
 * src/manager/api_body.h), and of its two structured queries:
 * the job list (api_parse_jobs_query) and a job's wait (api_parse_watch_query).
 *
 * Besides memory safety, it checks each parser's contract on every input:
 * a drain body yields no object or an object whose only member is a
 * "reason" string of at most API_REASON_MAX characters; a token body yields
 * a tenant name that passes ident_valid(); failure yields no object (an
 * empty name) and a non-empty printable-ASCII explanation.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "core/core.h"
#include "manager/api.h"
#include "manager/api_body.h"
#include "manager/tenants.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_why(const char *why, bool want_empty)
{
	size_t n = strlen(why);
	if (want_empty ? n != 0 : n == 0)
		__builtin_trap();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			__builtin_trap();
}

/*
 * Copies data[size] into buf (size < QUERY_MAX) and points v[0..n) at its
 * NUL-separated values; a value missing at the end stays NULL (absent).
 */
#define QUERY_MAX 513u
static void split_values(const uint8_t *data, size_t size, char buf[QUERY_MAX], const char **v, size_t n)
{
	memcpy(buf, data, size);
	buf[size] = '\0';
	size_t at = 0;
	for (size_t k = 0; k < n; k++) {
		v[k] = at <= size ? buf + at : NULL;
		if (v[k])
			at += strlen(buf + at) + 1;
	}
}

/*
 * The query of GET /v1/jobs: the input holds up to four NUL-separated values
 * (state, tenant, limit, before); a value missing at the end is absent.
 * Accepted values must come back within their bounds.
 */
static void check_jobs_query(const uint8_t *data, size_t size)
{
	if (size >= QUERY_MAX)
		return;
	char buf[QUERY_MAX];
	const char *v[4];
	split_values(data, size, buf, v, 4);
	struct jobs_query q;
	char why[256];
	int rc = api_parse_jobs_query(v[0], v[1], v[2], v[3], &q, why, sizeof why);
	if (rc == 0) {
		check_why(why, true);
		if (q.limit < 1 || q.limit > JOBS_LIST_MAX || (q.state[0] && !jobs_state_valid(q.state)) ||
		    (q.tenant[0] && !ident_valid(q.tenant)) || (q.before_id[0] && !ident_valid(q.before_id)) ||
		    q.before_ms < 0)
			__builtin_trap();
	} else {
		if (rc != SS_EPARSE)
			__builtin_trap();
		check_why(why, false);
	}
}

/*
 * The query of a GET /v1/jobs/{id} that waits: up to two NUL-separated
 * values (index, wait). What is accepted must come back within its bounds.
 */
static void check_watch_query(const uint8_t *data, size_t size)
{
	if (size > 128)
		return;
	char buf[QUERY_MAX];
	const char *v[2];
	split_values(data, size, buf, v, 2);
	bool watch = true;
	uint64_t index = 1, wait = 1;
	char why[256];
	int rc = api_parse_watch_query(v[0], v[1], &watch, &index, &wait, why, sizeof why);
	if (rc == 0) {
		check_why(why, true);
		if (!watch || wait > API_WAIT_MAX_MS)
			__builtin_trap();
	} else {
		if (rc != SS_EPARSE || watch)
			__builtin_trap();
		check_why(why, false);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	char tiny[8];
	json_t *out = (json_t *)&why; /* must be overwritten */
	int rc = api_parse_drain_body((const char *)data, size, &out, why, sizeof why);
	if (rc == 0) {
		check_why(why, true);
		if (out) {
			if (!json_is_object(out) || json_object_size(out) > 1)
				__builtin_trap();
			json_t *reason = json_object_get(out, "reason");
			if (json_object_size(out) == 1 && !json_is_string(reason))
				__builtin_trap();
			if (reason) {
				size_t chars = 0;
				const char *s = json_string_value(reason);
				for (size_t i = 0; i < json_string_length(reason); i++)
					chars += ((unsigned char)s[i] & 0xc0) != 0x80;
				if (chars > API_REASON_MAX)
					__builtin_trap();
			}
			json_decref(out);
		}
	} else {
		if (out != NULL || (rc != SS_EPARSE && rc != SS_ETOOBIG))
			__builtin_trap();
		check_why(why, false);
	}

	/* A short explanation buffer is truncated, never overrun. */
	out = NULL;
	int rc2 = api_parse_drain_body((const char *)data, size, &out, tiny, sizeof tiny);
	if (rc2 != rc || strlen(tiny) >= sizeof tiny)
		__builtin_trap();
	json_decref(out);

	char tenant[64];
	uint64_t ttl_s = 7;
	memset(tenant, 'x', sizeof tenant);
	bool ro = true;
	rc = api_parse_token_body((const char *)data, size, tenant, &ttl_s, &ro, why, sizeof why);
	if (rc == 0) {
		check_why(why, true);
		if (!ident_valid(tenant) || ttl_s > TENANTS_MAX_TTL_S)
			__builtin_trap();
	} else {
		if (tenant[0] != '\0' || ttl_s != 0 || ro || (rc != SS_EPARSE && rc != SS_ETOOBIG))
			__builtin_trap();
		check_why(why, false);
	}
	check_jobs_query(data, size);
	check_watch_query(data, size);
	return 0;
}
