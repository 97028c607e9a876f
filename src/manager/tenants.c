/*
 * tenants.c - tenant tokens and uploads (see tenants.h). Tokens are a small
 * array sorted by id; uploads an array with a chained hash index. Both are
 * mirrored in the store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/store.h"
#include "manager/tenants.h"

#define NS_TOKENS "tokens"
#define NS_UPLOADS "uploads"
#define UP_BUCKETS 16384u /* a power of two */

struct token {
	char id[TENANTS_TOKEN_ID_LEN + 1];
	char tenant[64];
	uint8_t hash[SHA256_LEN];
	int64_t created_ms;
	int64_t expires_ms; /* wall clock; 0: never */
	bool read_only;     /* GET and HEAD only */
};

struct upload {
	char tenant[64];
	uint8_t digest[SHA256_LEN];
	int64_t ms;    /* wall clock of the last upload */
	uint64_t size; /* bytes */
	int32_t next;  /* the next entry in its bucket, or -1 */
};

/* How many upload records one tenant has, and their bytes. */
struct tcount {
	char tenant[64];
	uint32_t n;
	uint64_t bytes;
};

struct tenants {
	struct store *store;
	struct tcount *tc; /* tenants with upload records, unordered */
	size_t n_tc, cap_tc;
	struct token *v; /* sorted by id */
	size_t n, cap;
	struct upload *up;
	size_t n_up, cap_up;
	uint64_t bytes_max; /* one tenant's upload bytes; 0: no quota */
	int32_t buckets[UP_BUCKETS]; /* first entry of each chain, or -1 */
};

/* The index at which id is, or would be inserted. */
static size_t find(const struct tenants *t, const char *id, bool *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->v[mid].id, id);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void insert(struct tenants *t, const struct token *k)
{
	bool found;
	size_t at = find(t, k->id, &found);
	if (found) {
		t->v[at] = *k;
		return;
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 16;
		t->v = xrealloc(t->v, t->cap * sizeof *t->v);
	}
	memmove(&t->v[at + 1], &t->v[at], (t->n - at) * sizeof *t->v);
	t->v[at] = *k;
	t->n++;
}

static void remove_at(struct tenants *t, size_t at)
{
	memmove(&t->v[at], &t->v[at + 1], (t->n - at - 1) * sizeof *t->v);
	t->n--;
}

static bool id_valid(const char *id)
{
	if (strlen(id) != TENANTS_TOKEN_ID_LEN)
		return false;
	for (size_t i = 0; i < TENANTS_TOKEN_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static int load_token(void *arg, const char *key, const char *value, size_t len)
{
	struct tenants *t = arg;
	struct token k;
	json_error_t err;
	json_t *o = json_loadb(value, len, 0, &err);
	const char *tenant = json_string_value(json_object_get(o, "tenant"));
	const char *hex = json_string_value(json_object_get(o, "sha256"));
	memset(&k, 0, sizeof k);
	if (!id_valid(key) || !tenant || !ident_valid(tenant) || !hex ||
	    hex_decode(hex, k.hash, SHA256_LEN) != 0 || t->n >= TENANTS_MAX_TOKENS) {
		log_error("store: token record %.32s is corrupt or over the limit; skipped", key);
		goto out;
	}
	snprintf(k.id, sizeof k.id, "%s", key);
	snprintf(k.tenant, sizeof k.tenant, "%s", tenant);
	k.created_ms = json_integer_value(json_object_get(o, "created_ms"));
	k.expires_ms = json_integer_value(json_object_get(o, "expires_ms"));
	if (k.expires_ms < 0) {
		log_error("store: token record %.32s has a negative expiry; skipped", key);
		goto out;
	}
	/* Records from before roles existed have no "read_only": they read and write. */
	k.read_only = json_is_true(json_object_get(o, "read_only"));
	insert(t, &k);
out:
	json_decref(o);
	return 0;
}

/* ---- uploads ------------------------------------------------------------ */

static uint32_t up_bucket(const char *tenant, const uint8_t digest[SHA256_LEN])
{
	uint64_t h;
	memcpy(&h, digest, sizeof h);
	return (uint32_t)((h ^ hash_str(tenant)) & (UP_BUCKETS - 1));
}

static struct upload *up_find(const struct tenants *t, const char *tenant,
			      const uint8_t digest[SHA256_LEN])
{
	for (int32_t i = t->buckets[up_bucket(tenant, digest)]; i >= 0; i = t->up[i].next)
		if (!memcmp(t->up[i].digest, digest, SHA256_LEN) && !strcmp(t->up[i].tenant, tenant))
			return &t->up[i];
	return NULL;
}

/* The index of tenant's counts in t->tc, or t->n_tc when it has none. */
static size_t tc_index(const struct tenants *t, const char *tenant)
{
	size_t i = 0;
	while (i < t->n_tc && strcmp(t->tc[i].tenant, tenant) != 0)
		i++;
	return i;
}

/* The count of tenant's upload records (created at 0 when create is set), or NULL. */
static struct tcount *tc_get(struct tenants *t, const char *tenant, bool create)
{
	size_t i = tc_index(t, tenant);
	if (i < t->n_tc)
		return &t->tc[i];
	if (!create)
		return NULL;
	if (t->n_tc == t->cap_tc) {
		t->cap_tc = t->cap_tc ? 2 * t->cap_tc : 8;
		t->tc = xrealloc(t->tc, t->cap_tc * sizeof *t->tc);
	}
	struct tcount *c = &t->tc[t->n_tc++];
	snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
	c->n = 0;
	c->bytes = 0;
	return c;
}

/* Appends an entry (the caller checked that it is new and that there is room). */
static void up_append(struct tenants *t, const char *tenant, const uint8_t digest[SHA256_LEN],
		      int64_t ms, uint64_t size)
{
	if (t->n_up == t->cap_up) {
		t->cap_up = t->cap_up ? 2 * t->cap_up : 64;
		t->up = xrealloc(t->up, t->cap_up * sizeof *t->up);
	}
	struct upload *u = &t->up[t->n_up];
	snprintf(u->tenant, sizeof u->tenant, "%s", tenant);
	memcpy(u->digest, digest, SHA256_LEN);
	u->ms = ms;
	u->size = size;
	uint32_t b = up_bucket(tenant, digest);
	u->next = t->buckets[b];
	t->buckets[b] = (int32_t)t->n_up++;
	struct tcount *c = tc_get(t, tenant, true);
	c->n++;
	c->bytes += size;
}

static void up_key(const struct upload *u, char key[64 + 1 + 2 * SHA256_LEN + 1])
{
	char hex[2 * SHA256_LEN + 1];
	hex_encode(u->digest, SHA256_LEN, hex);
	snprintf(key, 64 + 1 + 2 * SHA256_LEN + 1, "%s/%s", u->tenant, hex);
}

static int load_upload(void *arg, const char *key, const char *value, size_t len)
{
	struct tenants *t = arg;
	char tenant[64], num[48];
	uint8_t d[SHA256_LEN];
	const char *slash = strchr(key, '/');
	size_t tl = slash ? (size_t)(slash - key) : 0;
	if (tl == 0 || tl >= sizeof tenant || len == 0 || len >= sizeof num) {
		log_error("store: upload record %.80s is corrupt; skipped", key);
		return 0;
	}
	memcpy(tenant, key, tl);
	tenant[tl] = '\0';
	memcpy(num, value, len);
	num[len] = '\0';
	char *end = NULL, *end2 = NULL;
	long long ms = strtoll(num, &end, 10);
	unsigned long long size = 0;
	if (end && *end == ' ' && end[1] >= '0' && end[1] <= '9') {
		errno = 0;
		size = strtoull(end + 1, &end2, 10);
		end = errno || size > (1ull << 50) ? NULL : end2;
	}
	if (!ident_valid(tenant) || hex_decode(slash + 1, d, SHA256_LEN) != 0 || !end || *end ||
	    up_find(t, tenant, d) || t->n_up >= TENANTS_MAX_UPLOADS) {
		log_error("store: upload record %.80s is corrupt or over the limit; skipped", key);
		return 0;
	}
	up_append(t, tenant, d, ms, size);
	return 0;
}

static void up_save(struct tenants *t, const struct upload *u)
{
	char key[64 + 1 + 2 * SHA256_LEN + 1], val[48];
	up_key(u, key);
	snprintf(val, sizeof val, "%lld %llu", (long long)u->ms, (unsigned long long)u->size);
	store_put(t->store, NS_UPLOADS, key, val, strlen(val));
}

uint64_t tenants_upload_bytes_max(const struct tenants *t)
{
	return t->bytes_max;
}

void tenants_set_upload_bytes_max(struct tenants *t, uint64_t max)
{
	t->bytes_max = max;
}

int tenants_upload_room(const struct tenants *t, const char *tenant, const uint8_t digest[SHA256_LEN],
			uint64_t size, char *why, size_t whylen)
{
	if (up_find(t, tenant, digest))
		return 0;
	size_t i = tc_index(t, tenant);
	const struct tcount *c = i < t->n_tc ? &t->tc[i] : NULL;
	if (c && c->n >= TENANTS_MAX_UPLOADS_EACH)
		return why_set(why, whylen, SS_EQUOTA,
			       "tenant %s has %u uploads, its quota; they expire after the job retention time",
			       tenant, TENANTS_MAX_UPLOADS_EACH);
	uint64_t used = c ? c->bytes : 0;
	if (t->bytes_max && (size > t->bytes_max || used > t->bytes_max - size))
		return why_set(why, whylen, SS_EQUOTA,
			       "tenant %s has uploaded %llu bytes and this blob has %llu; its quota is %llu "
			       "bytes, and uploads count until they expire after the job retention time",
			       tenant, (unsigned long long)used, (unsigned long long)size,
			       (unsigned long long)t->bytes_max);
	if (t->n_up >= TENANTS_MAX_UPLOADS)
		return why_set(why, whylen, SS_ELIMIT,
			       "the manager remembers %u uploads, its limit; try again later",
			       TENANTS_MAX_UPLOADS);
	return 0;
}

uint64_t tenants_upload_bytes(const struct tenants *t, const char *tenant)
{
	size_t i = tc_index(t, tenant);
	return i < t->n_tc ? t->tc[i].bytes : 0;
}

int tenants_upload_add(struct tenants *t, const char *tenant, const uint8_t digest[SHA256_LEN],
		       uint64_t size, char *why, size_t whylen)
{
	struct upload *u = up_find(t, tenant, digest);
	if (!u) {
		int rc = tenants_upload_room(t, tenant, digest, size, why, whylen);
		if (rc)
			return rc;
		up_append(t, tenant, digest, 0, size);
		u = &t->up[t->n_up - 1];
	}
	u->ms = time_wall_ms();
	up_save(t, u);
	return 0;
}

bool tenants_upload_has(const struct tenants *t, const char *tenant,
			const uint8_t digest[SHA256_LEN])
{
	return up_find(t, tenant, digest) != NULL;
}

size_t tenants_expire(struct tenants *t, int64_t cutoff_ms)
{
	size_t kept = 0, dropped = 0;
	for (size_t i = 0; i < t->n_up; i++) {
		if (t->up[i].ms < cutoff_ms) {
			char key[64 + 1 + 2 * SHA256_LEN + 1];
			up_key(&t->up[i], key);
			store_del(t->store, NS_UPLOADS, key);
			dropped++;
		} else {
			t->up[kept++] = t->up[i];
		}
	}
	if (!dropped)
		return 0;
	/* The index and the counts are rebuilt from the entries kept. */
	t->n_up = kept;
	t->n_tc = 0;
	for (size_t b = 0; b < UP_BUCKETS; b++)
		t->buckets[b] = -1;
	for (size_t i = 0; i < t->n_up; i++) {
		uint32_t b = up_bucket(t->up[i].tenant, t->up[i].digest);
		t->up[i].next = t->buckets[b];
		t->buckets[b] = (int32_t)i;
		struct tcount *c = tc_get(t, t->up[i].tenant, true);
		c->n++;
		c->bytes += t->up[i].size;
	}
	return dropped;
}

size_t tenants_upload_count(const struct tenants *t)
{
	return t->n_up;
}

/* ---- the table ----------------------------------------------------------- */

int tenants_new(struct tenants **out, struct store *store)
{
	struct tenants *t = xcalloc(1, sizeof *t);
	t->store = store;
	t->bytes_max = TENANTS_UPLOAD_BYTES_DEFAULT;
	for (size_t b = 0; b < UP_BUCKETS; b++)
		t->buckets[b] = -1;
	int rc = store_scan(store, NS_TOKENS, load_token, t);
	if (!rc)
		rc = store_scan(store, NS_UPLOADS, load_upload, t);
	if (rc) {
		tenants_free(t);
		t = NULL;
	} else if (t->n) {
		log_info("tenants: %zu tenant token%s and %zu upload%s loaded", t->n,
			 t->n == 1 ? "" : "s", t->n_up, t->n_up == 1 ? "" : "s");
	}
	*out = t;
	return rc;
}

void tenants_free(struct tenants *t)
{
	if (!t)
		return;
	free(t->v);
	free(t->up);
	free(t->tc);
	free(t);
}

/* Adds n to the integer member key of by[tenant], creating both as needed. */
static void usage_add(json_t *by, const char *tenant, const char *key, json_int_t n)
{
	json_t *e = json_object_get(by, tenant);
	if (!e) {
		e = json_object();
		json_object_set_new(by, tenant, e);
	}
	json_object_set_new(e, key, json_integer(json_integer_value(json_object_get(e, key)) + n));
}

void tenants_usage(const struct tenants *t, json_t *by)
{
	for (size_t i = 0; i < t->n; i++) {
		usage_add(by, t->v[i].tenant, "tokens", 1);
		usage_add(by, t->v[i].tenant, "tokens_read_only", t->v[i].read_only);
	}
	for (size_t i = 0; i < t->n_tc; i++) {
		usage_add(by, t->tc[i].tenant, "uploads", t->tc[i].n);
		usage_add(by, t->tc[i].tenant, "upload_bytes", (json_int_t)t->tc[i].bytes);
	}
}

/* ---- tokens -------------------------------------------------------------- */

static json_t *token_json(const struct token *k)
{
	json_t *o = json_pack("{s:s,s:s,s:I}", "id", k->id, "tenant", k->tenant, "created_ms",
			      (json_int_t)k->created_ms);
	if (k->expires_ms)
		json_object_set_new(o, "expires_ms", json_integer(k->expires_ms));
	json_object_set_new(o, "read_only", json_boolean(k->read_only));
	return o;
}

int tenants_token_create(struct tenants *t, const char *tenant, uint64_t ttl_s, bool read_only,
			 json_t **out, char *why, size_t whylen)
{
	struct token k;
	uint8_t raw[32], rid[TENANTS_TOKEN_ID_LEN / 2];
	char hex[2 * sizeof raw + 1], hhex[2 * SHA256_LEN + 1];
	bool found = true;
	*out = NULL;
	if (!ident_valid(tenant))
		return why_set(why, whylen, SS_EINVAL,
			       "tenant: not a valid name (1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit)");
	if (t->n >= TENANTS_MAX_TOKENS)
		return why_set(why, whylen, SS_ELIMIT, "the manager holds %u tenant tokens, its limit",
			       TENANTS_MAX_TOKENS);
	if (ttl_s > TENANTS_MAX_TTL_S)
		return why_set(why, whylen, SS_EINVAL, "a token may live at most %u seconds (10 years)",
			       TENANTS_MAX_TTL_S);
	memset(&k, 0, sizeof k);
	while (found) {
		rand_bytes(rid, sizeof rid);
		hex_encode(rid, sizeof rid, k.id);
		find(t, k.id, &found);
	}
	snprintf(k.tenant, sizeof k.tenant, "%s", tenant);
	k.created_ms = time_wall_ms();
	k.expires_ms = ttl_s ? k.created_ms + (int64_t)ttl_s * 1000 : 0;
	k.read_only = read_only;
	rand_bytes(raw, sizeof raw);
	hex_encode(raw, sizeof raw, hex);
	char *tok = xasprintf("sst_%s", hex);
	sha256(tok, strlen(tok), k.hash);
	hex_encode(k.hash, SHA256_LEN, hhex);
	/* The tenant passed ident_valid and the rest is hex: nothing needs escaping. */
	char *s = xasprintf("{\"tenant\":\"%s\",\"sha256\":\"%s\",\"created_ms\":%lld,\"expires_ms\":%lld,"
			    "\"read_only\":%s}",
			    k.tenant, hhex, (long long)k.created_ms, (long long)k.expires_ms,
			    read_only ? "true" : "false");
	store_put(t->store, NS_TOKENS, k.id, s, strlen(s));
	free(s);
	if (store_flush(t->store) != 0) {
		store_del(t->store, NS_TOKENS, k.id);
		free(tok);
		return why_set(why, whylen, SS_ESTORE, "could not persist the token");
	}
	insert(t, &k);
	log_info("tenants: %stoken %s created for tenant %s%s", read_only ? "read-only " : "", k.id,
		 k.tenant, ttl_s ? ", with an expiry" : "");
	*out = token_json(&k);
	json_object_set_new(*out, "token", json_string(tok));
	free(tok);
	return 0;
}

int tenants_token_revoke(struct tenants *t, const char *id)
{
	bool found = false;
	size_t at = id_valid(id) ? find(t, id, &found) : 0;
	if (!found)
		return SS_ENOTFOUND;
	/* It stops working now, even when the store fails to record that. */
	log_info("tenants: token %s of tenant %s revoked", t->v[at].id, t->v[at].tenant);
	remove_at(t, at);
	store_del(t->store, NS_TOKENS, id);
	return store_flush(t->store) != 0 ? SS_ESTORE : 0;
}

const char *tenants_token_lookup(const struct tenants *t, const uint8_t hash[SHA256_LEN],
				 int64_t now_ms, bool *read_only)
{
	const char *tenant = NULL;
	bool ro = false;
	for (size_t i = 0; i < t->n; i++)
		if (ct_equal(t->v[i].hash, hash, SHA256_LEN) &&
		    (t->v[i].expires_ms == 0 || t->v[i].expires_ms > now_ms)) {
			tenant = t->v[i].tenant;
			ro = t->v[i].read_only;
		}
	if (read_only)
		*read_only = ro;
	return tenant;
}

size_t tenants_tokens_expire(struct tenants *t, int64_t now_ms)
{
	size_t kept = 0, dropped = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].expires_ms && t->v[i].expires_ms <= now_ms) {
			log_info("tenants: token %s of tenant %s expired", t->v[i].id, t->v[i].tenant);
			store_del(t->store, NS_TOKENS, t->v[i].id);
			dropped++;
		} else {
			t->v[kept++] = t->v[i];
		}
	}
	t->n = kept;
	if (dropped && store_flush(t->store) != 0)
		log_error("tenants: the store could not record %zu expired token%s; they stay expired",
			  dropped, dropped == 1 ? "" : "s");
	return dropped;
}

json_t *tenants_tokens_json(const struct tenants *t)
{
	json_t *a = json_array();
	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(a, token_json(&t->v[i]));
	return json_pack("{s:o}", "tokens", a);
}

size_t tenants_token_count(const struct tenants *t)
{
	return t->n;
}
