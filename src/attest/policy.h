/*
 * policy.h - the manager's appraisal policy: which evidence each pool of
 * nodes must present and what it must show.
 *
 * A policy file is JSON (see docs/policy.md):
 *   {"pools": {"<pool>": {"allowed_tee": [...], "allow_warning": false,
 *                         "reattest_interval": "60s", "result_ttl": "120s",
 *                         "<tee>": {format policy}, ...}, ...}}
 * An agent picks its pool with the label pool=<name>; without it, "default".
 * Policies are immutable once loaded and reference-counted, so a reload
 * (SIGHUP) can replace the current one while verifications that started under
 * the old one finish with it. Loop thread only, except that the json_t format
 * objects may be read (not changed) from worker threads while a reference is
 * held.
 */
#ifndef SS_POLICY_H
#define SS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define POLICY_MAX_POOLS 64
#define POLICY_MAX_TEES 8

struct policy_pool {
	char name[64];
	char id[17];                 /* first 16 hex chars of SHA-256 of the canonical pool JSON */
	char allowed_tee[POLICY_MAX_TEES][16];
	size_t n_allowed;
	bool allow_warning;
	uint64_t reattest_ms;
	uint64_t ttl_ms;
	json_t *formats;             /* object: tee name -> format policy (owned) */
};

struct policy;

/*
 * Loads and validates a policy file. allow_sim is true when the manager runs
 * with --insecure-sim-attestation; a policy that lists "sim" without it is
 * refused. On error returns SS_ECONFIG/SS_EPARSE with why set.
 */
int policy_load(const char *path, bool allow_sim, struct policy **out, char *why, size_t whylen);
/* The policy used without a file: pool "default" allowing every hardware TEE (and sim if allowed). */
struct policy *policy_default(bool allow_sim);
/* Parses a policy from JSON text (used by policy_load and tests). */
int policy_parse(const char *text, size_t len, bool allow_sim, struct policy **out, char *why,
		 size_t whylen);

struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* The pool by name, or NULL. */
const struct policy_pool *policy_pool(const struct policy *p, const char *name);
bool policy_pool_allows(const struct policy_pool *pool, const char *tee);
/* The format policy for tee in this pool, or NULL (no reference values). */
const json_t *policy_pool_format(const struct policy_pool *pool, const char *tee);
/* A short description for logs ("3 pools from /etc/seeswarm/policy.json"). */
const char *policy_source(const struct policy *p);

#endif
