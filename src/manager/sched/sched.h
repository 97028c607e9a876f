/*
 * sched.h - the placement engine: an iterator stack over the nodes, as in
 * design.md §5.
 *
 * The scheduler keeps its own compact table of schedulable nodes, which the
 * manager updates on every change (admission, heartbeat load, re-attestation,
 * drain, down, eviction) with sched_node_update(). Each placement runs:
 *
 *   feasibility  free resources counting reservations; TEE type; attestation
 *                fresh and affirming (hardware when asked); pool/TCB;
 *                code allowed; labels/region; hardware features
 *   ranking      bin-pack or spread; data locality (bytes of the inputs
 *                already on the node); network cost (RTT between the node
 *                and the input holders, and bandwidth); price x estimated
 *                runtime; load
 *   limit        power of k choices over node classes
 *   max score    the best of the candidates
 *
 * Nodes with the same static attributes (TEE, attestation kind, pool,
 * labels, features, capacity) share a class; static feasibility is decided
 * once per class and cached until a node of the class changes. A seeded
 * PRNG makes every decision reproducible in tests.
 *
 * Tenants share the swarm by weight: sched_queue_* orders pending tasks so
 * that each tenant's share of running CPU follows its weight (weighted fair
 * queuing), and by priority within a tenant.
 *
 * Every decision can be explained: sched_explain() evaluates every node
 * (no limit step) and reports why each was filtered out or how it scored.
 *
 * Loop affinity: a struct sched is used by one thread (the manager's loop).
 */
#ifndef SS_SCHED_H
#define SS_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"

#define SCHED_MAX_LABELS 32
#define SCHED_MAX_FEATURES 64
#define SCHED_DEFAULT_K 8

struct sched;
struct sched_node;            /* the scheduler's record of one node (opaque) */

/* What the manager tells the scheduler about a node. Strings are copied. */
struct sched_node_info {
	const char *id;
	const char *tee;              /* "sim", "tpm", "sev-snp", "tdx", "sgx" */
	bool hardware;                /* attested by real hardware, not sim/insecure */
	bool schedulable;             /* ready, connected, not draining, valid node certificate */
	bool attest_ok;               /* appraisal affirming (or allowed warning) */
	bool attest_warning;          /* appraisal is "warning" (e.g. SWHardeningNeeded) */
	int64_t attest_expires_ms;    /* wall clock; the result must be fresh at placement time */
	const char *pool;             /* policy pool the node was admitted to ("" = none) */
	const char *const *label_keys;/* node labels; "zone" and "region" are labels too */
	const char *const *label_values;
	size_t n_labels;
	const char *const *features;
	size_t n_features;
	uint32_t cpu_millicores;      /* total capacity */
	uint64_t memory_bytes;
	uint64_t disk_bytes;
	double price_per_hour;
	double load;                  /* 0..1 from the last heartbeat (cpu busy fraction) */
	double bandwidth_mbps;        /* estimated network bandwidth; 0 = default (1000) */
	uint32_t max_tasks;           /* concurrent task slots the agent offers; 0 = no limit */
};

/* A task's placement request. Pointers are borrowed for the call. */
struct sched_input {
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	struct sched_node *const *holders; /* nodes that hold a replica (may be none: from the manager) */
	size_t n_holders;
};

struct sched_req {
	const char *tenant;
	uint32_t cpu_millicores;
	uint64_t memory_bytes;
	uint64_t disk_bytes;
	const char *const *tee;       /* allowed TEE types; none = any */
	size_t n_tee;
	bool hardware;                /* only nodes attested by real hardware */
	bool affirming_only;          /* refuse "warning" appraisals */
	const char *const *pools;     /* allowed pools; none = any */
	size_t n_pools;
	const uint8_t *code_digest;   /* the task's code; NULL = not checked */
	const uint8_t (*code_allow)[SHA256_LEN]; /* the job's allow-list; none = any */
	size_t n_code_allow;
	const char *const *label_keys;/* required labels, all must match */
	const char *const *label_values;
	size_t n_labels;
	const char *const *features;  /* required hardware features */
	size_t n_features;
	const struct sched_input *inputs;
	size_t n_inputs;
	uint64_t est_runtime_ms;      /* for price x runtime; 0 = use the timeout/10 */
	enum { SCHED_OPT_BALANCED = 0, SCHED_OPT_COST, SCHED_OPT_LATENCY } optimize;
	bool spread;                  /* spread instead of bin-pack */
	const struct sched_node *avoid; /* e.g. the node a retried attempt failed on; NULL = none */
	int64_t now_ms;               /* wall clock for attestation freshness */
};

struct sched_opts {
	uint64_t seed;                /* PRNG seed; the same seed gives the same decisions */
	uint32_t k;                   /* power of k choices; 0 = SCHED_DEFAULT_K */
	double default_rtt_ms;        /* RTT assumed between nodes with no measurement; 0 = 1.0 */
};

struct sched *sched_new(const struct sched_opts *opts);
void sched_free(struct sched *s);

/*
 * Adds or updates a node (by info->id) and returns its record, which stays
 * valid until sched_node_remove(). Reservations are kept across updates.
 */
struct sched_node *sched_node_update(struct sched *s, const struct sched_node_info *info);
/* Returns the node's record or NULL. */
struct sched_node *sched_node_find(struct sched *s, const char *id);
/* Removes a node (its reservations go with it). */
void sched_node_remove(struct sched *s, struct sched_node *n);
const char *sched_node_id(const struct sched_node *n);
size_t sched_node_count(const struct sched *s);

/* Records a measured RTT between two nodes (symmetric). */
void sched_set_rtt(struct sched *s, struct sched_node *a, struct sched_node *b, double rtt_ms);

/* Reserves or releases a placed task's resources (and one task slot) on a node. */
void sched_reserve(struct sched *s, struct sched_node *n, uint32_t cpu_millicores,
		   uint64_t memory_bytes, uint64_t disk_bytes);
void sched_release(struct sched *s, struct sched_node *n, uint32_t cpu_millicores,
		   uint64_t memory_bytes, uint64_t disk_bytes);

/*
 * Places one task: returns 0 and sets *out to the chosen node (the caller
 * then calls sched_reserve), or SS_ENOTFOUND when no node is feasible now,
 * with a one-line summary in why (e.g. "0 of 12 nodes feasible: 8 tee
 * sim not allowed, 4 insufficient memory").
 */
int sched_place(struct sched *s, const struct sched_req *req, struct sched_node **out, char *why,
		size_t whylen);

/*
 * Explains a placement without making it: returns a new JSON object
 *   {"feasible": N, "total": M, "chosen": "node id" | null,
 *    "nodes": [{"node": id, "feasible": false, "reason": "..."},
 *              {"node": id, "feasible": true, "score": S,
 *               "scores": {"binpack": x, "locality": x, "network": x,
 *                          "cost": x, "load": x}}, ...]}
 * with nodes sorted feasible-first by descending score, then by id.
 */
json_t *sched_explain(struct sched *s, const struct sched_req *req);
/*
 * How many nodes are feasible for req now (sched_explain's "feasible",
 * without scoring or JSON: O(classes + nodes)).
 */
size_t sched_feasible_count(struct sched *s, const struct sched_req *req);

/*
 * Whether req fits on node n now, with every check sched_place applies to
 * it: returns 0 when it does, SS_ELIMIT when only n's free resources or task
 * slots stand in the way (freeing some would let it fit: preemption), or
 * SS_ENOTFOUND when anything else rules n out (its TEE, attestation, labels,
 * total capacity...). The ranking and the limit step do not apply.
 */
int sched_fit(struct sched *s, const struct sched_req *req, const struct sched_node *n);

/* ---- tenants and the pending queue -------------------------------------- */

struct sched_queue;

struct sched_queue *sched_queue_new(void);
void sched_queue_free(struct sched_queue *q);
/* Sets a tenant's weight (default 1.0; must be > 0). */
void sched_queue_set_weight(struct sched_queue *q, const char *tenant, double weight);
/*
 * Caps the CPU (millicores) a tenant may have running at once; 0 removes
 * the cap. A NULL tenant sets the cap of every tenant that has none of its
 * own. A tenant at its cap gets nothing popped until enough of its running
 * CPU is done, even when the swarm is otherwise idle; its queued items keep
 * their order (a smaller item behind a larger head does not jump ahead).
 */
void sched_queue_set_cap(struct sched_queue *q, const char *tenant, uint64_t millicores);
/* The cap that applies to a tenant (0 = none). */
uint64_t sched_queue_cap(const struct sched_queue *q, const char *tenant);
/* True when the tenant has queued items and the cap holds back the next one. */
bool sched_queue_held(const struct sched_queue *q, const char *tenant);
/* The millicores counted as running for a tenant. */
uint64_t sched_queue_running(const struct sched_queue *q, const char *tenant);
/* What the queue knows of one tenant. */
struct sched_queue_tenant {
	const char *name; /* valid until sched_queue_free() */
	uint64_t running; /* millicores counted as running */
	uint64_t cap;     /* the cap that applies; 0 = none */
	double weight;
	size_t queued;    /* items waiting */
};
/*
 * Fills *out with the i-th tenant the queue knows (0-based, in order of
 * first use) and returns true, or returns false past the last.
 */
bool sched_queue_tenant_at(const struct sched_queue *q, size_t i, struct sched_queue_tenant *out);
/*
 * Counts an item's CPU as running for its tenant without a pop: a task the
 * manager finds running after a restart. sched_queue_done() ends it as usual.
 */
void sched_queue_charge(struct sched_queue *q, const char *tenant, uint32_t cpu_millicores);
/*
 * Queues an item (opaque to the queue) for a tenant with a priority (higher
 * first) and its CPU cost (millicores), in FIFO order within a priority.
 */
void sched_queue_push(struct sched_queue *q, const char *tenant, int32_t priority,
		      uint32_t cpu_millicores, void *item);
/*
 * Pops the next item: from the tenant furthest below its weighted share of
 * running CPU, then by priority, then FIFO, skipping tenants at their cap.
 * Returns NULL when empty or when every tenant with items is at its cap.
 * Popping counts the item's CPU as running for its tenant until
 * sched_queue_done() is called for it.
 */
void *sched_queue_pop(struct sched_queue *q, const char **tenant);
/* Puts back an item that could not be placed, at the front of its class. */
void sched_queue_unpop(struct sched_queue *q, const char *tenant, int32_t priority,
		       uint32_t cpu_millicores, void *item);
/* The item's task finished or was cancelled: its CPU no longer counts as running. */
void sched_queue_done(struct sched_queue *q, const char *tenant, uint32_t cpu_millicores);
/* Removes a queued item (e.g. a cancelled task). Returns true when it was queued. */
bool sched_queue_remove(struct sched_queue *q, void *item);
size_t sched_queue_len(const struct sched_queue *q);

#endif
