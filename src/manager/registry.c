/* registry.c - node records in a hash table keyed by id. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "manager/registry.h"

struct slot {
	struct node *node;
	struct slot *next;
};

struct registry {
	struct slot **buckets;
	size_t nbuckets;      /* a power of two */
	size_t count;
};

static uint64_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

static size_t bucket(size_t nbuckets, const char *id)
{
	return (size_t)hash_id(id) & (nbuckets - 1);
}

struct registry *registry_new(void)
{
	struct registry *r = xcalloc(1, sizeof *r);
	r->nbuckets = 1024;
	r->buckets = xcalloc(r->nbuckets, sizeof *r->buckets);
	return r;
}

static void node_free(struct node *n)
{
	for (size_t i = 0; i < n->n_features; i++)
		free(n->features[i]);
	free(n->features);
	for (size_t i = 0; i < n->n_labels; i++) {
		free(n->labels[i].key);
		free(n->labels[i].value);
	}
	free(n->labels);
	free(n);
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct slot *s = r->buckets[i];
		while (s) {
			struct slot *next = s->next;
			node_free(s->node);
			free(s);
			s = next;
		}
	}
	free(r->buckets);
	free(r);
}

struct node *registry_get(struct registry *r, const char *id)
{
	for (struct slot *s = r->buckets[bucket(r->nbuckets, id)]; s; s = s->next)
		if (!strcmp(s->node->id, id))
			return s->node;
	return NULL;
}

static void grow(struct registry *r)
{
	size_t nb = r->nbuckets * 2;
	struct slot **b = xcalloc(nb, sizeof *b);
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct slot *s = r->buckets[i];
		while (s) {
			struct slot *next = s->next;
			size_t h = bucket(nb, s->node->id);
			s->next = b[h];
			b[h] = s;
			s = next;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = nb;
}

struct node *registry_upsert(struct registry *r, const char *id)
{
	struct node *n = registry_get(r, id);
	if (n)
		return n;
	if (strlen(id) >= sizeof n->id)
		fatal("registry: id too long (callers validate ids)");
	if (r->count >= r->nbuckets)
		grow(r);
	n = xcalloc(1, sizeof *n);
	snprintf(n->id, sizeof n->id, "%s", id);
	n->state = NODE_JOINING;
	struct slot *s = xmalloc(sizeof *s);
	size_t h = bucket(r->nbuckets, id);
	s->node = n;
	s->next = r->buckets[h];
	r->buckets[h] = s;
	r->count++;
	return n;
}

size_t registry_count(const struct registry *r)
{
	return r->count;
}

static int cmp_node(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
	return strcmp(x->id, y->id);
}

struct node **registry_sorted(struct registry *r, size_t *n)
{
	struct node **v = xcalloc(r->count ? r->count : 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; i < r->nbuckets; i++)
		for (struct slot *s = r->buckets[i]; s; s = s->next)
			v[k++] = s->node;
	qsort(v, k, sizeof *v, cmp_node);
	*n = k;
	return v;
}

void registry_each(struct registry *r, void (*fn)(void *arg, struct node *n), void *arg)
{
	for (size_t i = 0; i < r->nbuckets; i++)
		for (struct slot *s = r->buckets[i]; s; s = s->next)
			fn(arg, s->node);
}

void node_set_labels(struct node *n, const char *const *keys, const char *const *values, size_t count)
{
	for (size_t i = 0; i < n->n_labels; i++) {
		free(n->labels[i].key);
		free(n->labels[i].value);
	}
	free(n->labels);
	n->labels = count ? xcalloc(count, sizeof *n->labels) : NULL;
	for (size_t i = 0; i < count; i++) {
		n->labels[i].key = xstrdup(keys[i]);
		n->labels[i].value = xstrdup(values[i]);
	}
	n->n_labels = count;
}

void node_set_features(struct node *n, const char *const *features, size_t count)
{
	for (size_t i = 0; i < n->n_features; i++)
		free(n->features[i]);
	free(n->features);
	n->features = count ? xcalloc(count, sizeof *n->features) : NULL;
	for (size_t i = 0; i < count; i++)
		n->features[i] = xstrdup(features[i]);
	n->n_features = count;
}

static const char *const state_names[NODE_STATE_COUNT] = {
	[NODE_JOINING] = "joining", [NODE_READY] = "ready",   [NODE_SUSPECT] = "suspect",
	[NODE_DOWN] = "down",       [NODE_EVICTED] = "evicted", [NODE_LEFT] = "left",
	[NODE_REJECTED] = "rejected",
};

const char *node_state_name(enum node_state s)
{
	return s < NODE_STATE_COUNT ? state_names[s] : "unknown";
}

int node_state_parse(const char *s, enum node_state *out)
{
	for (int i = 0; i < NODE_STATE_COUNT; i++)
		if (!strcmp(state_names[i], s)) {
			*out = (enum node_state)i;
			return 0;
		}
	return SS_EPARSE;
}

const char *node_display_state(const struct node *n)
{
	if (n->draining && n->state == NODE_READY)
		return "draining";
	return node_state_name(n->state);
}

static json_t *time_json(int64_t ms)
{
	char ts[32];
	if (ms <= 0)
		return json_null();
	time_rfc3339(ms, ts);
	return json_string(ts);
}

json_t *node_to_json(const struct node *n, bool for_store, uint64_t now_mono, int64_t now_wall)
{
	json_t *j = json_object();
	json_object_set_new(j, "id", json_string(n->id));
	json_object_set_new(j, "state", json_string(for_store ? node_state_name(n->state)
								 : node_display_state(n)));
	json_object_set_new(j, "draining", json_boolean(n->draining));
	json_object_set_new(j, "address", json_string(n->addr));
	if (n->advertise[0])
		json_object_set_new(j, "advertise", json_string(n->advertise));
	json_object_set_new(j, "hostname", json_string(n->hostname));
	json_object_set_new(j, "version", json_string(n->version));
	json_object_set_new(j, "tee", json_string(n->tee));

	json_t *att = json_object();
	json_object_set_new(att, "status", json_string(n->attest_status[0] ? n->attest_status : "none"));
	json_object_set_new(att, "type", json_string(n->attest_type));
	json_object_set_new(att, "insecure", json_boolean(n->attest_insecure));
	json_object_set_new(att, "at", time_json(n->attest_ms));
	json_object_set_new(att, "expires", time_json(n->attest_expires_ms));
	json_object_set_new(att, "reason", json_string(n->attest_reason));
	json_object_set_new(att, "policy_id", json_string(n->policy_id));
	json_object_set_new(att, "pool", json_string(n->pool));
	json_object_set_new(att, "claims_digest", json_string(n->claims_digest));
	json_object_set_new(att, "result_digest", json_string(n->result_digest));
	json_t *nc = json_object();
	json_object_set_new(nc, "serial", json_string(n->node_cert_serial));
	json_object_set_new(nc, "key_sha256", json_string(n->node_cert_key));
	json_object_set_new(nc, "expires", time_json(n->node_cert_expires_ms));
	json_object_set_new(j, "node_certificate", nc);
	json_object_set_new(j, "attestation", att);

	json_t *caps = json_object();
	json_object_set_new(caps, "cpu_cores", json_integer(n->cpu_cores));
	json_object_set_new(caps, "max_tasks", json_integer(n->max_tasks));
	json_object_set_new(caps, "memory_bytes", json_integer((json_int_t)n->memory_bytes));
	json_object_set_new(caps, "disk_bytes", json_integer((json_int_t)n->disk_bytes));
	json_t *feats = json_array();
	for (size_t i = 0; i < n->n_features; i++)
		json_array_append_new(feats, json_string(n->features[i]));
	json_object_set_new(caps, "features", feats);
	json_object_set_new(j, "capabilities", caps);

	json_t *labels = json_object();
	for (size_t i = 0; i < n->n_labels; i++)
		json_object_set_new(labels, n->labels[i].key, json_string(n->labels[i].value));
	json_object_set_new(j, "labels", labels);
	json_object_set_new(j, "price_per_hour", json_real(n->price_per_hour));

	json_t *load = json_object();
	json_object_set_new(load, "cpu_permille", json_integer(n->cpu_permille));
	json_object_set_new(load, "memory_used_bytes", json_integer((json_int_t)n->mem_used));
	json_object_set_new(load, "load1", json_real(n->load1_centi / 100.0));
	json_object_set_new(load, "running_tasks", json_integer(n->running_tasks));
	json_object_set_new(j, "load", load);

	json_object_set_new(j, "joined", time_json(n->joined_ms));
	json_object_set_new(j, "state_since", time_json(n->state_since_ms));
	json_object_set_new(j, "last_heartbeat", time_json(n->last_hb_ms));
	json_object_set_new(j, "reason", json_string(n->reason));
	if (!for_store) {
		json_object_set_new(j, "connected", json_boolean(n->session != NULL));
		if (n->last_hb_ms > 0)
			json_object_set_new(j, "last_heartbeat_age_ms",
					    json_integer(n->last_hb_ms > now_wall ? 0 : now_wall - n->last_hb_ms));
		else
			json_object_set_new(j, "last_heartbeat_age_ms", json_null());
		json_t *rtt = json_object();
		for (size_t i = 0; i < n->n_rtt; i++)
			json_object_set_new(rtt, n->rtt[i].peer, json_real(n->rtt[i].rtt_us / 1000.0));
		json_object_set_new(j, "peer_rtt_ms", rtt);
		(void)now_mono;
	}
	return j;
}

static void copy_str(char *dst, size_t cap, const json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	snprintf(dst, cap, "%s", s ? s : "");
}

static int64_t get_time(const json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	int64_t t;
	if (!s || time_parse_rfc3339(s, &t) != 0)
		return 0;
	/* Keep the milliseconds the RFC 3339 text carries. */
	const char *dot = strchr(s, '.');
	int ms = dot ? atoi(dot + 1) : 0;
	return t * 1000 + ms;
}

int node_from_json(struct node *n, const json_t *j)
{
	if (!json_is_object(j))
		return SS_EPARSE;
	const char *st = json_string_value(json_object_get(j, "state"));
	if (!st || node_state_parse(st, &n->state) != 0)
		return SS_EPARSE;
	n->draining = json_is_true(json_object_get(j, "draining"));
	copy_str(n->addr, sizeof n->addr, j, "address");
	copy_str(n->advertise, sizeof n->advertise, j, "advertise");
	copy_str(n->hostname, sizeof n->hostname, j, "hostname");
	copy_str(n->version, sizeof n->version, j, "version");
	copy_str(n->tee, sizeof n->tee, j, "tee");
	copy_str(n->reason, sizeof n->reason, j, "reason");
	const json_t *att = json_object_get(j, "attestation");
	copy_str(n->attest_status, sizeof n->attest_status, att, "status");
	copy_str(n->attest_type, sizeof n->attest_type, att, "type");
	n->attest_insecure = json_is_true(json_object_get(att, "insecure"));
	n->attest_ms = get_time(att, "at");
	n->attest_expires_ms = get_time(att, "expires");
	copy_str(n->attest_reason, sizeof n->attest_reason, att, "reason");
	copy_str(n->policy_id, sizeof n->policy_id, att, "policy_id");
	copy_str(n->pool, sizeof n->pool, att, "pool");
	copy_str(n->claims_digest, sizeof n->claims_digest, att, "claims_digest");
	copy_str(n->result_digest, sizeof n->result_digest, att, "result_digest");
	const json_t *nc = json_object_get(j, "node_certificate");
	copy_str(n->node_cert_serial, sizeof n->node_cert_serial, nc, "serial");
	copy_str(n->node_cert_key, sizeof n->node_cert_key, nc, "key_sha256");
	n->node_cert_expires_ms = get_time(nc, "expires");
	const json_t *caps = json_object_get(j, "capabilities");
	n->cpu_cores = (uint32_t)json_integer_value(json_object_get(caps, "cpu_cores"));
	n->max_tasks = (uint32_t)json_integer_value(json_object_get(caps, "max_tasks"));
	n->memory_bytes = (uint64_t)json_integer_value(json_object_get(caps, "memory_bytes"));
	n->disk_bytes = (uint64_t)json_integer_value(json_object_get(caps, "disk_bytes"));
	const json_t *feats = json_object_get(caps, "features");
	size_t nf = json_array_size(feats), k = 0;
	const char **fv = xcalloc(nf ? nf : 1, sizeof *fv);
	for (size_t i = 0; i < nf; i++)
		if (json_is_string(json_array_get(feats, i)))
			fv[k++] = json_string_value(json_array_get(feats, i));
	node_set_features(n, fv, k);
	free(fv);
	const json_t *labels = json_object_get(j, "labels");
	size_t nl = json_object_size(labels);
	const char **keys = xcalloc(nl ? nl : 1, sizeof *keys);
	const char **vals = xcalloc(nl ? nl : 1, sizeof *vals);
	const char *key;
	json_t *val;
	k = 0;
	json_object_foreach((json_t *)labels, key, val) {
		if (!json_is_string(val))
			continue;
		keys[k] = key;
		vals[k] = json_string_value(val);
		k++;
	}
	node_set_labels(n, keys, vals, k);
	free(keys);
	free(vals);
	n->price_per_hour = json_number_value(json_object_get(j, "price_per_hour"));
	const json_t *load = json_object_get(j, "load");
	n->cpu_permille = (uint32_t)json_integer_value(json_object_get(load, "cpu_permille"));
	n->mem_used = (uint64_t)json_integer_value(json_object_get(load, "memory_used_bytes"));
	n->load1_centi = (uint32_t)(json_number_value(json_object_get(load, "load1")) * 100 + 0.5);
	n->running_tasks = (uint32_t)json_integer_value(json_object_get(load, "running_tasks"));
	n->joined_ms = get_time(j, "joined");
	n->state_since_ms = get_time(j, "state_since");
	n->last_hb_ms = get_time(j, "last_heartbeat");
	return 0;
}
