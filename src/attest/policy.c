/* policy.c - loading and validating the appraisal policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"
#include "attest/policy.h"
#include "core/core.h"

#define POLICY_MAX_FILE (1u << 20)

struct policy {
	int refs;
	struct policy_pool pools[POLICY_MAX_POOLS];
	size_t n_pools;
	char source[300];
};

static const char *const known_tees[] = {"sim", "tpm", "sev-snp", "tdx", "sgx"};

static bool known_tee(const char *s)
{
	for (size_t i = 0; i < ARRAY_LEN(known_tees); i++)
		if (!strcmp(s, known_tees[i]))
			return true;
	return false;
}

static int get_duration(const json_t *v, const char *key, uint64_t dflt, uint64_t *out,
			char *why, size_t whylen)
{
	if (!v) {
		*out = dflt;
		return 0;
	}
	if (!json_is_string(v) || parse_duration_ms(json_string_value(v), out) != 0 || *out < 1000 ||
	    *out > 7ull * 86400000) {
		snprintf(why, whylen, "\"%s\" must be a duration between 1s and 7 days, like \"60s\"", key);
		return SS_ECONFIG;
	}
	return 0;
}

static int parse_pool(struct policy_pool *pool, const char *name, json_t *obj, bool allow_sim,
		      char *why, size_t whylen)
{
	char w[200];
	int rc = 0;
	if (!ident_valid(name)) {
		snprintf(why, whylen, "pool name \"%.64s\" is not a valid identifier", name);
		return SS_ECONFIG;
	}
	snprintf(pool->name, sizeof pool->name, "%s", name);
	if (!json_is_object(obj)) {
		snprintf(why, whylen, "pool \"%s\" must be an object", name);
		return SS_ECONFIG;
	}
	pool->formats = json_object();
	const char *key;
	json_t *val;
	bool have_allowed = false;
	json_object_foreach(obj, key, val) {
		if (!strcmp(key, "allowed_tee")) {
			have_allowed = true;
			if (!json_is_array(val) || json_array_size(val) == 0 ||
			    json_array_size(val) > POLICY_MAX_TEES) {
				snprintf(w, sizeof w, "\"allowed_tee\" must list 1..%d TEE types", POLICY_MAX_TEES);
				rc = SS_ECONFIG;
				break;
			}
			for (size_t i = 0; i < json_array_size(val); i++) {
				const char *t = json_string_value(json_array_get(val, i));
				if (!t || !known_tee(t)) {
					snprintf(w, sizeof w, "\"allowed_tee\" has an unknown TEE type \"%.20s\" (known: sim, tpm, sev-snp, tdx, sgx)",
						 t ? t : "?");
					rc = SS_ECONFIG;
					break;
				}
				if (!strcmp(t, "sim") && !allow_sim) {
					snprintf(w, sizeof w, "\"allowed_tee\" lists sim, but the manager runs without --insecure-sim-attestation");
					rc = SS_ECONFIG;
					break;
				}
				snprintf(pool->allowed_tee[pool->n_allowed++], 16, "%s", t);
			}
			if (rc)
				break;
		} else if (!strcmp(key, "allow_warning")) {
			if (!json_is_boolean(val)) {
				snprintf(w, sizeof w, "\"allow_warning\" must be true or false");
				rc = SS_ECONFIG;
				break;
			}
			pool->allow_warning = json_is_true(val);
		} else if (!strcmp(key, "reattest_interval") || !strcmp(key, "result_ttl")) {
			/* Handled below. */
		} else if (known_tee(key)) {
			if (!json_is_object(val)) {
				snprintf(w, sizeof w, "the \"%s\" reference values must be an object", key);
				rc = SS_ECONFIG;
				break;
			}
			json_object_set(pool->formats, key, val);
		} else {
			snprintf(w, sizeof w, "unknown key \"%.40s\"", key);
			rc = SS_ECONFIG;
			break;
		}
	}
	if (!rc && !have_allowed) {
		snprintf(w, sizeof w, "\"allowed_tee\" is required");
		rc = SS_ECONFIG;
	}
	if (!rc)
		rc = get_duration(json_object_get(obj, "reattest_interval"), "reattest_interval", 60000,
				  &pool->reattest_ms, w, sizeof w);
	if (!rc)
		rc = get_duration(json_object_get(obj, "result_ttl"), "result_ttl", 0, &pool->ttl_ms, w,
				  sizeof w);
	if (!rc && pool->ttl_ms == 0)
		pool->ttl_ms = 2 * pool->reattest_ms;
	if (!rc && pool->ttl_ms < pool->reattest_ms) {
		snprintf(w, sizeof w, "\"result_ttl\" must not be shorter than \"reattest_interval\"");
		rc = SS_ECONFIG;
	}
	if (rc) {
		snprintf(why, whylen, "pool \"%s\": %s", name, w);
		return rc;
	}
	char *canon = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	uint8_t d[32];
	char hex[65];
	sha256(canon, strlen(canon), d);
	hex_encode(d, 8, hex);
	memcpy(pool->id, hex, 16);
	pool->id[16] = '\0';
	free(canon);
	return 0;
}

static void policy_free(struct policy *p)
{
	for (size_t i = 0; i < p->n_pools; i++)
		json_decref(p->pools[i].formats);
	free(p);
}

int policy_parse(const char *text, size_t len, bool allow_sim, struct policy **out, char *why,
		 size_t whylen)
{
	int rc = SS_ECONFIG;
	json_error_t err;
	struct policy *p = xcalloc(1, sizeof *p);
	p->refs = 1;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		snprintf(why, whylen, "policy is not valid JSON: %s (line %d)", err.text, err.line);
		rc = SS_EPARSE;
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "pools") != 0 && strcmp(key, "version") != 0) {
			snprintf(why, whylen, "policy: unknown top-level key \"%.40s\" (expected \"pools\")", key);
			goto out;
		}
	}
	json_t *pools = json_object_get(root, "pools");
	if (!json_is_object(pools) || json_object_size(pools) == 0 ||
	    json_object_size(pools) > POLICY_MAX_POOLS) {
		snprintf(why, whylen, "policy: \"pools\" must be an object with 1..%d pools", POLICY_MAX_POOLS);
		goto out;
	}
	json_object_foreach(pools, key, val) {
		rc = parse_pool(&p->pools[p->n_pools], key, val, allow_sim, why, whylen);
		if (rc) {
			p->n_pools++; /* so that its formats object is freed */
			goto out;
		}
		p->n_pools++;
	}
	snprintf(p->source, sizeof p->source, "%zu pool%s", p->n_pools, p->n_pools == 1 ? "" : "s");
	*out = p;
	p = NULL;
	rc = 0;
out:
	json_decref(root);
	if (p)
		policy_free(p);
	return rc;
}

int policy_load(const char *path, bool allow_sim, struct policy **out, char *why, size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	int rc = file_read(path, POLICY_MAX_FILE, &text, &len);
	if (rc) {
		snprintf(why, whylen, "cannot read policy %s: %s", path, ss_strerror(rc));
		return SS_ECONFIG;
	}
	rc = policy_parse(text, len, allow_sim, out, why, whylen);
	free(text);
	if (!rc)
		snprintf((*out)->source, sizeof (*out)->source, "%zu pool%s from %.200s", (*out)->n_pools,
			 (*out)->n_pools == 1 ? "" : "s", path);
	return rc;
}

struct policy *policy_default(bool allow_sim)
{
	const char *text = allow_sim
				   ? "{\"pools\":{\"default\":{\"allowed_tee\":[\"tpm\",\"sev-snp\",\"tdx\",\"sgx\",\"sim\"]}}}"
				   : "{\"pools\":{\"default\":{\"allowed_tee\":[\"tpm\",\"sev-snp\",\"tdx\",\"sgx\"]}}}";
	struct policy *p = NULL;
	char why[200];
	if (policy_parse(text, strlen(text), allow_sim, &p, why, sizeof why) != 0)
		fatal("built-in policy is invalid: %s", why);
	snprintf(p->source, sizeof p->source, "built-in default (any %sTEE, no reference values)",
		 allow_sim ? "" : "hardware ");
	return p;
}

struct policy *policy_ref(struct policy *p)
{
	p->refs++;
	return p;
}

void policy_unref(struct policy *p)
{
	if (p && --p->refs == 0)
		policy_free(p);
}

const struct policy_pool *policy_pool(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_pools; i++)
		if (!strcmp(p->pools[i].name, name))
			return &p->pools[i];
	return NULL;
}

bool policy_pool_allows(const struct policy_pool *pool, const char *tee)
{
	for (size_t i = 0; i < pool->n_allowed; i++)
		if (!strcmp(pool->allowed_tee[i], tee))
			return true;
	return false;
}

const json_t *policy_pool_format(const struct policy_pool *pool, const char *tee)
{
	return json_object_get(pool->formats, tee);
}

const char *policy_source(const struct policy *p)
{
	return p->source;
}
