/*
 * tenants.h - what a tenant's API token may reach: the tenant tokens
 * themselves, and the blobs each tenant has uploaded.
 *
 * The manager's admin token (api-token.sha256) reaches every route. A tenant
 * token names one tenant, and the API scopes every call made with it to that
 * tenant (docs/security.md, "Tenants"): it lists, reads and cancels only that
 * tenant's jobs, a job it submits runs as that tenant, it cannot reach the
 * node, token, replica or metrics routes, and it can read, or name in a job
 * spec, only a blob that it uploaded itself or that a retained job of its
 * tenant uses. Uploading proves possession (the manager hashes every byte),
 * so a tenant that learns a digest, from a receipt say, cannot use it to
 * read another tenant's data.
 *
 * Tokens. A token is "sst_" followed by 64 hex digits (32 random bytes). The
 * manager keeps only its SHA-256, with the tenant, a random id (16 hex
 * digits, for listing and revoking), the creation time and the optional
 * expiry time, in the store namespace "tokens" (key: the id). Creation and
 * revocation are durable when they return: they flush the store. A token
 * stops working at its expiry (to the millisecond, whatever the clean-up
 * period); tenants_tokens_expire then deletes its record.
 *
 * Uploads. Each (tenant, digest) a tenant token uploaded is remembered, in
 * the store namespace "uploads" (key: tenant "/" hex digest, value: the time
 * of the last upload and the blob's size, "MS SIZE"; records written before
 * sizes were kept hold "MS" and count 0 bytes), until tenants_expire drops
 * it: a tenant has that long to name the blob in a job, after which the job
 * keeps it visible for as long as the job is retained. At most
 * TENANTS_MAX_UPLOADS are remembered, TENANTS_MAX_UPLOADS_EACH of one
 * tenant's, and one tenant's remembered uploads may add up to at most the
 * byte quota (tenants_set_upload_bytes_max); beyond that an upload is
 * refused until older ones expire, so one tenant cannot use up everyone's
 * records or the manager's disk.
 *
 * Loop thread only.
 */
#ifndef SS_TENANTS_H
#define SS_TENANTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"

#define TENANTS_MAX_TOKENS 4096u      /* tenant tokens a manager holds */
#define TENANTS_MAX_UPLOADS 65536u    /* remembered (tenant, blob) uploads */
#define TENANTS_MAX_UPLOADS_EACH 16384u /* of them, by one tenant */
#define TENANTS_TOKEN_ID_LEN 16u      /* hex digits of a token id */
#define TENANTS_MAX_TTL_S 315360000u  /* the longest lifetime a token may be given: 10 years */
#define TENANTS_UPLOAD_BYTES_DEFAULT (64ull << 30) /* one tenant's remembered upload bytes */

struct store;
struct tenants;

/*
 * Loads the tokens and uploads kept in store (which must outlive the table).
 * Corrupt records are skipped with an error in the log. Returns 0 or
 * SS_ESTORE.
 */
int tenants_new(struct tenants **out, struct store *store);
void tenants_free(struct tenants *t);

/*
 * Creates a token for tenant (ident_valid) that works for ttl_s seconds (0:
 * until revoked; at most TENANTS_MAX_TTL_S), and only for GET and HEAD
 * requests when read_only. On success returns 0 and sets *out to {"id",
 * "tenant", "created_ms", ["expires_ms",] "read_only", "token"}, the only
 * place the token itself ever appears; the record is durable. Returns
 * SS_EINVAL for a bad tenant name or lifetime, SS_ELIMIT at
 * TENANTS_MAX_TOKENS tokens, or SS_ESTORE, with why set.
 */
int tenants_token_create(struct tenants *t, const char *tenant, uint64_t ttl_s, bool read_only,
			 json_t **out, char *why, size_t whylen);

/*
 * Revokes a token by id: it stops working at once. Returns 0 (durable),
 * SS_ENOTFOUND, or SS_ESTORE when the store could not record it (the token
 * could then work again after a restart).
 */
int tenants_token_revoke(struct tenants *t, const char *id);

/*
 * The tenant of the token whose SHA-256 is hash, or NULL when no tenant token
 * has it or it expired at or before now_ms (wall clock). Compares every entry
 * in constant time. Sets *read_only (when read_only is not NULL) to whether
 * the token may only read; false when NULL is returned. The string is the
 * table's, valid until the next tenants_token_revoke, tenants_tokens_expire
 * or tenants_free.
 */
const char *tenants_token_lookup(const struct tenants *t, const uint8_t hash[SHA256_LEN],
				 int64_t now_ms, bool *read_only);

/* Deletes the tokens that expired at or before now_ms; returns how many (durable when > 0 unless the store fails). */
size_t tenants_tokens_expire(struct tenants *t, int64_t now_ms);

/*
 * {"tokens": [{"id", "tenant", "created_ms", ["expires_ms",] "read_only"}, ...]} ordered by
 * id; no secrets. A token that expired but is not yet deleted is listed.
 */
json_t *tenants_tokens_json(const struct tenants *t);

/* Sets the byte quota of each tenant's remembered uploads (0: none). */
void tenants_set_upload_bytes_max(struct tenants *t, uint64_t max);
/* The byte quota of one tenant's uploads; 0 when there is none. */
uint64_t tenants_upload_bytes_max(const struct tenants *t);

/*
 * Whether tenant may upload a blob of size bytes now: 0 when it is
 * remembered already or fits, SS_EQUOTA when the tenant is at
 * TENANTS_MAX_UPLOADS_EACH records or it would pass the byte quota,
 * SS_ELIMIT when TENANTS_MAX_UPLOADS are remembered. With why set to a
 * message for the tenant. Checked before the bytes are received; two
 * concurrent uploads may both pass it, and tenants_upload_add checks again.
 */
int tenants_upload_room(const struct tenants *t, const char *tenant, const uint8_t digest[SHA256_LEN],
			uint64_t size, char *why, size_t whylen);

/*
 * Remembers that tenant uploaded the blob of size bytes (or refreshes the
 * time it did). Returns 0, or the refusal and message of tenants_upload_room.
 * The record reaches the store with its next flush.
 */
int tenants_upload_add(struct tenants *t, const char *tenant, const uint8_t digest[SHA256_LEN],
		       uint64_t size, char *why, size_t whylen);

/* The bytes of tenant's remembered uploads. */
uint64_t tenants_upload_bytes(const struct tenants *t, const char *tenant);

/* True when tenant uploaded the blob and the record has not expired. */
bool tenants_upload_has(const struct tenants *t, const char *tenant,
			const uint8_t digest[SHA256_LEN]);

/* Forgets uploads last made before cutoff_ms (wall clock); returns how many. */
size_t tenants_expire(struct tenants *t, int64_t cutoff_ms);

/* Counts, for metrics. */
size_t tenants_token_count(const struct tenants *t);
/*
 * Adds each tenant's tokens ("tokens", "tokens_read_only") and remembered
 * uploads ("uploads", "upload_bytes") to by, an object keyed by tenant name
 * whose values are objects, creating entries as needed.
 */
void tenants_usage(const struct tenants *t, json_t *by);
size_t tenants_upload_count(const struct tenants *t);

#endif
