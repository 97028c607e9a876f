/*
 * jobs.h - the manager's job engine: submitted jobs, their task instances,
 * scheduling, dispatch to agents, results, retries and recovery.
 *
 * Every state change of a job or task is written to the store (namespaces
 * "jobs", "tasks" and "results") and becomes durable at the manager's next
 * group commit; acknowledgements to agents (TaskAck) go out only after that
 * commit (jobs_after_commit), so a result the manager acknowledged is never
 * lost and a result it did not acknowledge is sent again by the agent.
 *
 * Attempts are epochs: each dispatch of a task increments its attempt, and a
 * result, start notice or blob for any other attempt, or from another node,
 * is stale and ignored (but acknowledged, so the agent forgets it).
 *
 * Blobs: the manager's blob store holds uploaded inputs and every collected
 * task output. Small blobs travel inline in task messages; larger ones are
 * fetched with BlobGet/BlobData over the agent's connection in either
 * direction.
 *
 * Loop affinity: everything runs on the manager's loop thread.
 */
#ifndef SS_JOBS_H
#define SS_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "core/core.h"
#include "data/blobstore.h"
#include "manager/registry.h"
#include "manager/store.h"
#include "net/msg.h"

struct tenants;

struct jobs;

struct jobs_env {
	void *arg;
	uv_loop_t *loop;
	struct store *store;
	struct blobstore *blobs;
	struct registry *reg;
	/* Sends to the node's admitted connection; SS_ECLOSED when it has none. */
	int (*send)(void *arg, struct node *n, uint16_t type, const ProtobufCMessage *msg);
	/* True when the node has an admitted connection with a valid node certificate. */
	bool (*connected)(void *arg, const struct node *n);
	/*
	 * Signs blob fetch grants (data/grant.h) for the inputs and replicas it
	 * sends, and checks the grant of every BlobGet an agent sends to the
	 * manager. Borrowed; NULL turns grants off (unit tests).
	 */
	EVP_PKEY *grant_key;
	/* Which blobs each tenant uploaded (jobs_submit checks a tenant's inputs). Borrowed; may be NULL. */
	struct tenants *tenants;
};

/*
 * Creates the engine and loads every job from the store: unfinished tasks
 * resume where they were (placed and running ones wait for their node to
 * come back or to be declared down). seed makes placement reproducible.
 */
int jobs_new(struct jobs **out, const struct jobs_env *env, uint64_t seed);
/*
 * Frees the engine. Its uv handles (an idle and a timer on env->loop) must
 * have been closed first: the manager closes every handle with uv_walk at
 * shutdown. NULL is a no-op.
 */
void jobs_free(struct jobs *j);
/*
 * Sets how long finished jobs (and their tasks and results) are kept after
 * they end (default 24 h); at most 10,000 finished jobs are kept in any case.
 */
void jobs_set_retention(struct jobs *j, int64_t retention_ms);
/* How long finished jobs are kept (jobs_set_retention), in ms. */
int64_t jobs_retention(const struct jobs *j);
/*
 * Sets how many unfinished jobs a tenant may have when a tenant token
 * submits another (default JOBS_TENANT_MAX_JOBS); beyond it the submission
 * gets SS_EQUOTA. Every unfinished job of the tenant counts, but the admin
 * token may submit beyond the quota.
 */
void jobs_set_tenant_max_jobs(struct jobs *j, uint32_t n);
uint32_t jobs_tenant_max_jobs(const struct jobs *j);
#define JOBS_TENANT_MAX_JOBS 1000u
/*
 * Preemption: whether a task that fits nowhere may stop running attempts of
 * tasks whose priority is at least JOBS_PREEMPT_DELTA lower to make room,
 * and whose: none (OFF, the default), its own tenant's (TENANT), or any
 * tenant's (ALL). A preempted attempt is cancelled on its agent and its task
 * is pending again at once; that costs it neither a retry nor the lost
 * budget. docs/jobs.md, Priorities and preemption.
 */
enum jobs_preemption { JOBS_PREEMPT_OFF = 0, JOBS_PREEMPT_TENANT, JOBS_PREEMPT_ALL };
#define JOBS_PREEMPT_DELTA 10
void jobs_set_preemption(struct jobs *j, enum jobs_preemption p);
/* Records a round-trip time measured between two nodes, for the scheduler's network cost. */
void jobs_set_rtt(struct jobs *j, const char *a, const char *b, double rtt_ms);
/* Sets how many agents keep each critical blob (replicas.h; default 2). */
void jobs_set_replicas(struct jobs *j, unsigned want);
/* Where a blob lives on agents, as JSON (replicas_json), or NULL when nothing tracks it. */
json_t *jobs_blob_replicas(struct jobs *j, const uint8_t digest[SHA256_LEN]);
/*
 * Caps the CPU (millicores) a tenant's tasks may hold at once; 0 removes
 * the cap, and a NULL tenant sets it for every tenant without its own
 * (sched_queue_set_cap). A submission with a task larger than the cap is
 * refused; queued tasks held back by the cap say so in their reason.
 */
void jobs_set_tenant_max_cpu(struct jobs *j, const char *tenant, uint64_t millicores);
/* How often a tenant's budget starts again: never, or at each UTC calendar day or month. */
enum jobs_budget_period { JOBS_BUDGET_TOTAL, JOBS_BUDGET_DAY, JOBS_BUDGET_MONTH };
/*
 * Sets what a tenant may spend (tenant NULL: every tenant not named), in the
 * unit of the nodes' prices, in all (JOBS_BUDGET_TOTAL) or per UTC calendar
 * day or month: once the cost of its attempts in the period (those that
 * ended in it, and the running ones so far) reaches it, a tenant token's
 * submissions are refused (SS_EQUOTA) while its running jobs go on. At most
 * JOBS_MAX_COST_CAPS.
 */
#define JOBS_MAX_COST_CAPS 64
void jobs_set_tenant_max_cost(struct jobs *j, const char *tenant, double amount,
			      enum jobs_budget_period period);
/*
 * The spec of job id with its tenant written in ("tenant"), to submit it
 * again as a new job (a rerun), as a new string the caller frees; NULL when
 * no retained job has that id, or when tenant is not NULL and the job
 * belongs to another tenant.
 */
char *jobs_rerun_spec(struct jobs *j, const char *id, const char *tenant);

/*
 * Adds what the scheduler and the jobs know of each tenant to by, an object
 * keyed by tenant name whose values are objects, creating entries as
 * needed: "weight", "cpu_running_m" and "tasks_queued" for tenants the
 * scheduler knows, "jobs_unfinished" for tenants with unfinished jobs, and
 * "cpu_cap_m" (0 = none) for every entry, also those already in by.
 */
void jobs_tenants(struct jobs *j, json_t *by);
/* Sets a tenant's weight (> 0) for fair sharing of running CPU between tenants. */
void jobs_set_tenant_weight(struct jobs *j, const char *tenant, double weight);

/*
 * A node's state, attestation, drain flag, labels or load changed. Updates
 * the scheduler; when the node can no longer run tasks (down, evicted, left,
 * rejected, drained), its tasks are re-queued away from it (attempt + 1).
 */
void jobs_node_changed(struct jobs *j, struct node *n);
/*
 * A node was (re)admitted; refs are the attempts its Hello says it runs or
 * holds results for. Attempts the manager placed there that the agent does
 * not know are lost and re-queued.
 */
void jobs_node_admitted(struct jobs *j, struct node *n, Seeswarm__V1__TaskRef *const *refs,
			size_t n_refs);
/*
 * Handles MSG_TASK_STARTED, MSG_TASK_RESULT, MSG_BLOB_GET or MSG_BLOB_DATA
 * from an admitted node. Takes ownership of msg. Returns 0, or SS_EPROTO for
 * a protocol violation (the manager closes the connection).
 */
int jobs_on_message(struct jobs *j, struct node *n, uint16_t type, ProtobufCMessage *msg);
/* Sends the acknowledgements that waited for the commit that just completed. */
void jobs_after_commit(struct jobs *j);

/* ---- API ---------------------------------------------------------------- */

/*
 * Validates and accepts a job. A spec with "periodic" registers a periodic
 * job instead (state "periodic"): its tasks never run themselves, and at
 * each time its schedule names it launches a copy of itself without
 * "periodic" as a new job whose "parent" is its id (docs/jobs.md). tenant is the submitting tenant token's
 * tenant, or NULL for the admin token: the job runs as that tenant, and
 * every blob it names must be one the tenant uploaded or a retained job of
 * the tenant uses. Returns 0 with *out = the job object once it is durable
 * (the caller flushes the store before answering: see manager.c),
 * SS_EINVAL/SS_EPARSE/SS_ELIMIT, or SS_EPERM for a spec that names another
 * tenant, with a precise message in why.
 */
int jobs_submit(struct jobs *j, const char *spec, size_t len, const char *tenant, json_t **out,
		char *why, size_t whylen);
/*
 * What submitting spec as tenant would do now, without submitting it: the
 * same checks as jobs_submit() (the refusals that depend on the moment,
 * such as quotas, the budget or a blob not uploaded yet, become warnings),
 * then every task that could start at once placed as the scheduler would
 * place it against the capacity free now, in queue order, and where each
 * task that waits for others would go. Nothing is stored or reserved.
 * Returns 0 with *out = {"name", "tenant", "tasks", "placed_now",
 * "not_placed_now", "after_dependencies", "queued_ahead", "cost_per_hour",
 * "warnings": [...], "groups": [...]} (docs/jobs.md), or an error as
 * jobs_submit() gives.
 */
int jobs_plan(struct jobs *j, const char *spec, size_t len, const char *tenant, json_t **out,
	      char *why, size_t whylen);
/*
 * Launches the periodic job id now, whatever its schedule says and even
 * when the last launch still runs (prohibit_overlap applies to scheduled
 * launches only); the schedule goes on unchanged. The launch is submitted
 * as the tenant that registered the periodic job (the admin's launches
 * skip tenant quotas), like a scheduled one. Returns 0 with *out = the new
 * job, SS_ENOTFOUND, SS_ESTATE (not periodic, or stopped), or the
 * submission's error (a quota, the budget), with why.
 */
int jobs_launch(struct jobs *j, const char *id, json_t **out, char *why, size_t whylen);
/*
 * Dispatches the parameterized job id: body is the dispatch
 * (jobspec_dispatch_parse: metadata and an optional payload blob). The
 * launch is the job's spec without "parameterized", as the job's tenant,
 * with SS_META_<key> in every task's environment and the payload as every
 * task's input "payload"; it is submitted with tenant as the submitting
 * token (NULL: the admin), with every check of jobs_submit. Returns 0 with
 * *out = the new job (with "meta"), SS_ENOTFOUND, SS_ESTATE (not
 * parameterized, or stopped), or the dispatch's or the submission's error,
 * with why.
 */
int jobs_dispatch(struct jobs *j, const char *id, const char *body, size_t len, const char *tenant,
		  json_t **out, char *why, size_t whylen);
/* Every retained job, or only tenant's (tenant not NULL). */
#define JOBS_LIST_DEFAULT 1000u /* jobs on a page when the caller names no limit */
#define JOBS_LIST_MAX 10000u    /* the most jobs on one page */

/* A page of GET /v1/jobs (parsed by api_parse_jobs_query). */
struct jobs_query {
	char tenant[64];   /* only this tenant's jobs; "" for every tenant */
	char state[16];    /* only jobs in this state (jobs_state_valid); "" for any */
	size_t limit;      /* at most this many jobs, 1..JOBS_LIST_MAX */
	int64_t before_ms; /* with before_id, the cursor: only jobs listed after it */
	char before_id[64]; /* "" to start from the newest job */
};

/* True for the name of a job state: running, succeeded, failed or canceled. */
bool jobs_state_valid(const char *state);

/*
 * Lists retained jobs, newest first (by creation time, then id), as
 * {"jobs": [...], "total": N[, "next": CURSOR]}. total counts every job that
 * matches q; next is present when more follow, and a query with it as the
 * cursor ("<created_ms>.<id>") continues after this page's last job, even
 * when jobs were added or forgotten in between. Returns a new reference.
 */
json_t *jobs_list(struct jobs *j, const struct jobs_query *q);
/* The tenant of a job, or of a task "<job>.<index>"; NULL when unknown. Owned by the job. */
const char *jobs_job_tenant(struct jobs *j, const char *id);
const char *jobs_task_tenant(struct jobs *j, const char *task_id);
/*
 * True when tenant may read the blob, or name it in a spec: tenant is NULL
 * (the admin), uploaded it (env.tenants), or a retained job of tenant uses it
 * (an uploaded input, a bundle or an output).
 */
bool jobs_blob_visible(struct jobs *j, const uint8_t digest[SHA256_LEN], const char *tenant);
/*
 * True when a retained job uses the blob (an input, a bundle or an output).
 * The manager's store deletes a blob nothing uses once it was last written
 * or uploaded more than the job retention ago (docs/data.md).
 */
bool jobs_blob_used(struct jobs *j, const uint8_t digest[SHA256_LEN]);
/* The job object, or NULL when unknown. */
json_t *jobs_get(struct jobs *j, const char *id);
/*
 * The job's index: it changes (grows) with every stored change of the job
 * or of its tasks, and after a restart it differs from every index given
 * before. 0 when the job is unknown. The job's JSON carries it as "index".
 */
uint64_t jobs_job_index(struct jobs *j, const char *id);
/* The newest index given to any job: when it has not moved, no job changed. */
uint64_t jobs_index_now(const struct jobs *j);
/* Cancels a job. SS_ENOTFOUND, or SS_ESTATE when it already finished. */
int jobs_cancel(struct jobs *j, const char *id, json_t **out, const char **why);
/* {"tasks": [...]} or NULL when the job is unknown. */
json_t *jobs_tasks(struct jobs *j, const char *id);
/* Explains the placement of one task (by name) or of every unplaced task. */
int jobs_explain(struct jobs *j, const char *id, const char *task, json_t **out, char *why,
		 size_t whylen);
/* Every attempt's status, logs and receipt of a task "<job>.<index>", or NULL. */
json_t *jobs_task_logs(struct jobs *j, const char *task_id);

/*
 * What the current attempt of a task has written to stdout and stderr from
 * offsets from[0] and from[1], for a client that follows it (polling this):
 * {"task", "attempt", "state", "node", "ended", "stdout": {"from", "data",
 * "next"}, "stderr": {...}}. Each call also asks the agent for what came
 * since (the answer arrives as a TaskLog and shows in a later call), so a
 * follower sees new output one poll after it was written. "from" is later
 * than asked when those bytes are no longer kept (the last 256 KiB of each
 * stream are); "next" is the offset to ask from next; "ended" is true once no
 * more output will come for this attempt (a later attempt starts at offset 0
 * again). Non-printable bytes show as '?'. Returns 0, SS_ENOTFOUND, or
 * SS_ELIMIT when LIVE_MAX (64) attempts are followed already and none has
 * been idle for 10 s.
 */
int jobs_task_output(struct jobs *j, const char *task_id, const uint64_t from[2], json_t **out);
/* A blob was uploaded through the API. */
void jobs_blob_added(struct jobs *j, const uint8_t digest[SHA256_LEN], uint64_t size);
/* Appends Prometheus text. */
void jobs_metrics(struct jobs *j, struct buf *out);
/* Health summary fields. */
json_t *jobs_health(struct jobs *j);

#endif
