/*
 * registry.h - the manager's in-memory view of every node, keyed by id.
 *
 * The registry owns its node records. Records are plain data so that the
 * manager's modules can read them; they change only on the loop thread.
 * Durable state is written through the store as JSON (node_to_json with
 * for_store = true) and read back with node_from_json.
 */
#ifndef SS_REGISTRY_H
#define SS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Liveness/admission state. Draining is a separate operator flag. */
enum node_state {
	NODE_JOINING = 0,
	NODE_READY,
	NODE_SUSPECT,
	NODE_DOWN,
	NODE_EVICTED,
	NODE_LEFT,
	NODE_REJECTED,
	NODE_STATE_COUNT,
};

struct node_label {
	char *key;
	char *value;
};

struct node {
	char id[64];
	char addr[64];            /* peer address of the current/last connection */
	char advertise[128];
	char hostname[64];
	char version[32];
	uint32_t cpu_cores;
	uint32_t max_tasks;       /* task slots the agent offers (0 = not reported) */
	uint64_t memory_bytes;
	uint64_t disk_bytes;
	char **features;
	size_t n_features;
	struct node_label *labels;
	size_t n_labels;
	double price_per_hour;
	char tee[16];
	enum node_state state;
	bool draining;
	char reason[256];         /* why the node is in its state (rejections, drains) */
	int64_t joined_ms;        /* wall clock of the first admission */
	int64_t state_since_ms;
	int64_t last_hb_ms;       /* wall clock of the last heartbeat */
	/* Attestation result (EAR-like). */
	char attest_status[16];
	char attest_type[16];
	bool attest_insecure;
	int64_t attest_ms;
	int64_t attest_expires_ms;
	char attest_reason[512];
	char policy_id[17];
	char pool[64];
	char claims_digest[65];
	char result_digest[65];   /* SHA-256 of the appraisal result; in the node certificate */
	char node_cert_serial[41];
	char node_cert_key[65];   /* hex SHA-256 of the SubjectPublicKeyInfo the node certificate names */
	int64_t node_cert_expires_ms;
	/* Load from the last heartbeat. */
	uint32_t cpu_permille;
	uint64_t mem_used;
	uint32_t load1_centi;
	uint32_t running_tasks;
	/* Runtime only, not persisted. */
	uint64_t last_hb_mono;    /* monotonic ms of the last sign of life */
	uint64_t lost_mono;       /* monotonic ms its connection closed; 0 while connected */
	struct node_rtt {
		char peer[64];
		uint32_t rtt_us;
	} rtt[16];                /* the latest round-trip times this node measured to peers */
	uint8_t n_rtt;
	uint64_t peers_sent;      /* hash of the last PeerList sent on this session (0: none) */
	void *session;            /* the manager's session while connected */
	bool dirty;               /* heartbeat fields changed since the last save */
	uint64_t heartbeats;
};

struct registry;

struct registry *registry_new(void);
void registry_free(struct registry *r);

/* Returns the node or NULL. */
struct node *registry_get(struct registry *r, const char *id);
/* Returns the existing node or a new zeroed one with this id (state joining). */
struct node *registry_upsert(struct registry *r, const char *id);
size_t registry_count(const struct registry *r);
/* Fills a newly allocated array of all nodes sorted by id (caller frees the array only). */
struct node **registry_sorted(struct registry *r, size_t *n);
/* Calls fn for each node in unspecified order. fn must not add or remove nodes. */
void registry_each(struct registry *r, void (*fn)(void *arg, struct node *n), void *arg);

/* Replaces the node's labels/features (copies). */
void node_set_labels(struct node *n, const char *const *keys, const char *const *values, size_t count);
void node_set_features(struct node *n, const char *const *features, size_t count);

const char *node_state_name(enum node_state s);
int node_state_parse(const char *s, enum node_state *out);
/* The state shown to users: "draining" for a ready node being drained. */
const char *node_display_state(const struct node *n);

/*
 * Serializes a node. for_store includes only durable fields; otherwise the
 * API form (with connected, ages and display state).
 */
json_t *node_to_json(const struct node *n, bool for_store, uint64_t now_mono, int64_t now_wall);
/* Fills n (already created with its id) from stored JSON. */
int node_from_json(struct node *n, const json_t *j);

#endif
