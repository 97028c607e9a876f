/*
 * jobs.c - the manager's job engine (see jobs.h).
 *
 * Data model. A job owns its parsed spec (struct jobspec, re-parsed from the
 * stored text after a restart, which is deterministic) and one struct task
 * per task instance, in the spec's topological order. A task waits until
 * every dependency succeeded, then sits in the scheduler's fair queue
 * (pending), is placed on a node and dispatched (placed), runs (running),
 * has its outputs collected into the manager's blob store (collecting), and
 * ends succeeded, failed or canceled. A failure with retries left waits out
 * its backoff (retrying); a task whose node is lost goes back to pending
 * with the next attempt. The stored task record is written on every
 * transition; a task without a record is pending at attempt 0.
 *
 * Dispatch and results. Placing a task reserves its resources on the node
 * in the scheduler; the reservation is returned when the result arrives or
 * the attempt is lost. A result is committed once: only the current attempt
 * from the node it was dispatched to counts, and only while the task is
 * placed, running or collecting. TaskAck goes out after the commit that made
 * the outcome durable.
 *
 * The pass. Anything that can make a task placeable (a new job, a finished
 * task, a node change) arms an idle handle; the next loop turn runs one
 * scheduling pass over the fair queue, bounded by PASS_BUDGET placements.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "data/grant.h"
#include "manager/jobs.h"
#include "manager/jobspec.h"
#include "manager/replicas.h"
#include "manager/sched/sched.h"
#include "manager/tenants.h"

#define PASS_BUDGET 20000u            /* placements tried per pass */
#define PASS_FAIL_STREAK 256u         /* consecutive infeasible tasks that end a pass */
#define MAX_LOST 20u                  /* lost attempts before a task fails */
#define MAX_REFUSALS 100u             /* refused attempts before a task fails */
#define REFUSAL_BACKOFF_MS 200u       /* first delay after a refusal, doubled up to 6.4 s */
#define INPUT_ERRORS_DISOWN 4u        /* attempts without their inputs before the records of them go */
#define FETCH_CHUNK (256u * 1024u)
#define FETCH_WINDOW 4u
#define INLINE_BUDGET (512u * 1024u)  /* inline input bytes per dispatch */
#define LAT_SAMPLES 16384u
#define RETRY_TICK_MS 100u
#define MAX_JOBS 100000u
#define MAX_FINISHED_JOBS 10000u      /* finished jobs kept at most, newest first */
#define DEFAULT_RETENTION_MS (24ll * 3600 * 1000)
#define GC_EVERY_TICKS 10u            /* the GC runs every 10th retry tick (1 s) */
#define BLOB_PASS_MAX_MS 60000        /* the blob sweep covers the store at least once a minute */
#define PEER_RING 4u                  /* RTT probes: this many ring neighbours on each side */
#define MAX_PERIODIC 1000u            /* periodic jobs that launch (not stopped) at once */
#define PERIODIC_RECENT 20u           /* launches a periodic job lists */
#define PREEMPT_TRIES 32u             /* tasks per pass that may look for attempts to preempt */
#define PREEMPT_MAX_VICTIMS 64u       /* attempts one placement may preempt on its node */

enum tstate {
	T_PENDING = 0,
	T_PLACED,
	T_RUNNING,
	T_COLLECTING,
	T_RETRYING,
	T_SUCCEEDED,
	T_FAILED,
	T_CANCELED,
	T_STATE_COUNT,
};

static const char *const tstate_names[T_STATE_COUNT] = {
	"pending", "placed", "running", "collecting", "retrying", "succeeded", "failed", "canceled",
};

/*
 * A periodic job is J_PERIODIC while it launches, a parameterized one
 * J_PARAMETERIZED while it takes dispatches; either is J_CANCELED once
 * stopped. Both are templates: their tasks never run themselves.
 */
enum jstate { J_RUNNING = 0, J_SUCCEEDED, J_FAILED, J_CANCELED, J_PERIODIC, J_PARAMETERIZED };
static const char *const jstate_names[] = {"running",  "succeeded", "failed",
					   "canceled", "periodic",  "parameterized"};

struct out_rec {
	char *name;
	uint8_t digest[SHA256_LEN];
	uint64_t size;
};

struct attempt_rec {
	uint32_t attempt;
	char node[64];
	char outcome[24];
	char reason[160];
	int64_t start_ms, end_ms;
	uint64_t run_ms;          /* how long it ran: 0 when it never started */
	uint64_t cpu_ms;          /* CPU time the agent measured, 0 when unknown */
	double cost;              /* rate x run_ms, in the unit of --price-per-hour */
};

/* What attempts cost, summed: for one job, or for one tenant over the data directory's life. */
struct usage {
	uint64_t attempts;        /* attempts that started */
	uint64_t run_ms;
	uint64_t cpu_ms;
	double cost;
};

struct job;

struct task {
	struct job *job;
	uint32_t idx;
	char id[80];
	enum tstate st;
	uint32_t attempt;         /* the current attempt's epoch; 0 before the first dispatch */
	uint32_t failures;        /* counted failures (retries used + 1 when failed) */
	uint32_t lost;            /* attempts lost with their node */
	uint32_t waiting;         /* dependencies not yet succeeded */
	char node[64];            /* the node of the current attempt */
	double rate;              /* what the current attempt costs an hour: its share of the node's price */
	uint64_t run_ms, cpu_ms;  /* the current attempt's, from its result; 0 before it */
	struct sched_node *sn;    /* where the reservation is held, or NULL */
	struct sched_node *avoid; /* the node the last attempt failed or was lost on */
	bool queued;              /* in the scheduler's queue */
	bool charged;             /* its CPU counts as running for its tenant */
	bool acked_pending;       /* an ack waits for the next commit */
	int64_t retry_at_ms;
	int64_t start_ms, end_ms;
	uint64_t ready_ns;        /* when it became ready (for submit-to-start latency) */
	char status[24];          /* outcome of the last finished attempt */
	int32_t code;
	char reason[256];
	struct out_rec *outs;
	size_t n_outs;
	uint32_t collecting;      /* outputs still being fetched */
	uint32_t refusals;        /* attempts refused, or without their inputs (task_backoff); not persisted */
	struct attempt_rec *hist;
	size_t n_hist;
	struct task *act_prev, *act_next; /* the active list: placed, running, collecting */
	bool active;
	bool plan_taken;          /* jobs_plan counts this attempt preempted already (during one plan) */
	struct task *retry_next;
	bool in_retry;
	struct live *live;        /* output a client follows (jobs_task_output), or NULL */
};

#define LIVE_MAX 64               /* attempts whose output is followed at once */
#define LIVE_KEEP (256u * 1024u)  /* bytes of each stream kept for followers */
#define LIVE_IDLE_MS 10000        /* a follow not read for this long may be dropped */
#define LIVE_ASK_MS 2000          /* a TaskLogGet not answered in this long is sent again */

/* The output of one attempt as its followers see it. */
struct live {
	struct task *t;
	uint32_t attempt;
	char node[64];            /* the node that runs (or ran) it */
	struct buf data[2];       /* stdout, stderr: the last bytes, from base */
	uint64_t base[2];
	bool asked;               /* a TaskLogGet is out */
	uint64_t asked_ms, read_ms; /* monotonic */
	bool ended;               /* no more output will come */
};

/*
 * What a periodic job (spec "periodic") or a parameterized one
 * ("parameterized") keeps between launches. Its launches (dispatches) are
 * ordinary jobs whose "parent" is its id.
 */
struct launcher {
	int64_t anchor_ms;        /* "every" counts from here: the registration */
	int64_t next_ms;          /* the next launch, wall clock; stored */
	uint64_t launched, skipped, refused;
	int64_t last_skip_ms;     /* the last launch skipped or refused, and why */
	char last_skip[256];
	struct {
		char id[32];
		int64_t at_ms;        /* the launch time it was launched for */
		bool forced;          /* launched on request (jobs_launch) */
	} recent[PERIODIC_RECENT]; /* newest first */
	size_t n_recent;
	bool by_admin;            /* registered with the admin token: launches are the admin's too */
	struct job *next;         /* the list of J_PERIODIC jobs */
};

struct job {
	char id[32];
	char parent[32];          /* the periodic or parameterized job that launched it, or "" */
	struct launcher *launcher; /* a periodic or parameterized job's launches; NULL for any other */
	struct jobspec *spec;
	char *spec_text;
	size_t spec_len;
	enum jstate st;
	int64_t created_ms, finished_ms;
	char reason[256];
	struct task *tasks;
	uint32_t *dep_off;        /* CSR: dependants of task i are dep_idx[dep_off[i]..dep_off[i+1]) */
	uint32_t *dep_idx;
	size_t counts[T_STATE_COUNT];
	struct usage usage;       /* over every finished attempt of its tasks */
	double accruing;          /* what its running attempts cost so far (enforce_limits) */
	uint64_t index;           /* changes with every stored change of it or its tasks (jobs_job_index) */
	struct job *hnext;        /* hash chain */
	struct job *next;         /* list of all jobs, newest first */
};

struct ack {
	struct ack *next;
	char node[64];
	char task_id[80];
	uint32_t attempt;
};

struct fetch_waiter {
	struct task *t;
	uint32_t attempt;
};

struct fetch {
	struct fetch *next;
	char node[64];
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	uint64_t requested;       /* bytes asked for */
	uint64_t received;        /* bytes written */
	uint64_t req_id[FETCH_WINDOW];
	uint64_t req_off[FETCH_WINDOW];
	uint32_t req_head, req_n; /* ring of outstanding requests, oldest at req_head */
	struct blob_writer *w;
	struct fetch_waiter *waiters;
	size_t n_waiters;
};

/* One use of a blob by a retained job: an uploaded input, a bundle or an output. */
struct use {
	struct use *next;
	const struct job *jb;
	uint8_t digest[SHA256_LEN];
};

#define USE_BUCKETS 65536u /* a power of two */

struct jobs {
	struct grant_cache grants;     /* grants of BlobGets agents sent the manager */
	struct use **uses;             /* by digest: which jobs use a blob (jobs_blob_visible) */
	struct jobs_env env;
	struct replicas *repl;    /* where blobs live on agents; R copies of critical ones */
	struct sched *sched;
	struct sched_queue *queue;
	struct job **buckets;
	size_t nbuckets;
	struct job *all;
	size_t n_jobs;
	struct task *active;      /* doubly linked */
	struct task *retrying;    /* singly linked, scanned by the retry timer */
	struct ack *acks;         /* acknowledgements waiting for the next commit */
	struct fetch *fetches;
	uint64_t next_req_id;
	uv_idle_t kick;
	uv_timer_t retry_timer;
	bool kicked;
	uint8_t empty_bundle[SHA256_LEN];
	/* Metrics. */
	uint64_t submitted, dispatched, results, stale, lost_total, retries_total;
	uint64_t succeeded, failed, canceled, passes, blob_served, blob_fetched, lineage_reruns;
	uint64_t blob_refused;         /* BlobGets without a valid grant */
	uint64_t lat_ns[LAT_SAMPLES];
	uint64_t lat_n;
	int64_t retention_ms;     /* finished jobs are forgotten this long after they end */
	uint32_t tenant_max_jobs; /* unfinished jobs one tenant token may have */
	uint32_t gc_tick;
	uint64_t gc_removed;
	uint64_t sweep_credit;     /* ms of pacing toward the next blob-store shard */
	unsigned sweep_shard;      /* the next of the blob store's 256 shards to sweep */
	uint64_t blobs_deleted, blob_bytes_deleted;
	struct live *lives[LIVE_MAX]; /* the followed attempts, unordered */
	size_t n_lives;
	/*
	 * tenant -> {attempts, run_ms, cpu_ms, cost, day, day_cost, month,
	 * month_cost}: the totals, and the cost of the attempts that ended in
	 * the UTC day ("2026-12-02") and month ("2026-12") of the last one.
	 * Stored in "usage".
	 */
	json_t *tenant_usage;
	uint64_t index_seq;       /* the last job index given; starts at the wall clock in us */
	struct job *periodic;     /* the periodic jobs that launch (J_PERIODIC) */
	size_t n_periodic;
	uint64_t periodic_launched, periodic_skipped, periodic_refused;
	uint64_t dispatches;      /* launches of parameterized jobs */
	enum jobs_preemption preempt;
	uint32_t preempt_tries;   /* this pass's searches for attempts to preempt */
	uint64_t preempted;       /* attempts preempted */
	struct cost_cap {
		char tenant[64];      /* "" for every tenant not named */
		double amount;
		enum jobs_budget_period period;
	} cost_caps[JOBS_MAX_COST_CAPS];
	size_t n_cost_caps;
};

/* ---- small helpers ------------------------------------------------------- */

static struct job *job_find(struct jobs *j, const char *id)
{
	for (struct job *b = j->buckets[hash_str(id) & (j->nbuckets - 1)]; b; b = b->hnext)
		if (!strcmp(b->id, id))
			return b;
	return NULL;
}

static void job_index(struct jobs *j, struct job *jb)
{
	size_t h = hash_str(jb->id) & (j->nbuckets - 1);
	jb->hnext = j->buckets[h];
	j->buckets[h] = jb;
	jb->next = j->all;
	j->all = jb;
	j->n_jobs++;
}

/* Finds a task by "<job>.<index>"; NULL when unknown. */
static struct task *task_find(struct jobs *j, const char *task_id)
{
	const char *dot = strrchr(task_id, '.');
	char jid[32];
	if (!dot || (size_t)(dot - task_id) >= sizeof jid)
		return NULL;
	memcpy(jid, task_id, (size_t)(dot - task_id));
	jid[dot - task_id] = '\0';
	struct job *jb = job_find(j, jid);
	/* A periodic job's tasks are templates: they run in the jobs it launches. */
	if (!jb || jb->launcher)
		return NULL;
	char *end;
	unsigned long idx = strtoul(dot + 1, &end, 10);
	if (*end || end == dot + 1 || idx >= jb->spec->n_tasks)
		return NULL;
	return &jb->tasks[idx];
}

static const struct jobspec_task *spec_of(const struct task *t)
{
	return &t->job->spec->tasks[t->idx];
}

/* True for a job that launches others (periodic or parameterized) and has not been stopped. */
static bool is_template(const struct job *jb)
{
	return jb->st == J_PERIODIC || jb->st == J_PARAMETERIZED;
}

static bool terminal(enum tstate s)
{
	return s == T_SUCCEEDED || s == T_FAILED || s == T_CANCELED;
}

static void set_tstate(struct task *t, enum tstate s)
{
	t->job->counts[t->st]--;
	t->st = s;
	t->job->counts[s]++;
}

static void active_add(struct jobs *j, struct task *t)
{
	if (t->active)
		return;
	t->active = true;
	t->act_prev = NULL;
	t->act_next = j->active;
	if (j->active)
		j->active->act_prev = t;
	j->active = t;
}

static void active_del(struct jobs *j, struct task *t)
{
	if (!t->active)
		return;
	if (t->act_prev)
		t->act_prev->act_next = t->act_next;
	else
		j->active = t->act_next;
	if (t->act_next)
		t->act_next->act_prev = t->act_prev;
	t->act_prev = t->act_next = NULL;
	t->active = false;
}

static void kick(struct jobs *j);

/* Replaces non-printable bytes so text can go into JSON strings. */
static char *printable_copy(const uint8_t *p, size_t n)
{
	char *s = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		s[i] = (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
	}
	s[n] = '\0';
	return s;
}

/* ---- persistence ----------------------------------------------------------- */

static json_t *outs_json(const struct task *t)
{
	json_t *a = json_array();
	for (size_t i = 0; i < t->n_outs; i++) {
		char hex[65];
		hex_encode(t->outs[i].digest, SHA256_LEN, hex);
		json_array_append_new(a, json_pack("{s:s,s:s,s:I}", "name", t->outs[i].name, "digest", hex,
						   "size", (json_int_t)t->outs[i].size));
	}
	return a;
}

static json_t *hist_json(const struct task *t)
{
	json_t *a = json_array();
	for (size_t i = 0; i < t->n_hist; i++) {
		const struct attempt_rec *h = &t->hist[i];
		json_array_append_new(a, json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "attempt",
						   (int)h->attempt, "node", h->node, "outcome",
						   h->outcome, "reason", h->reason, "start_ms",
						   (json_int_t)h->start_ms, "end_ms", (json_int_t)h->end_ms,
						   "run_ms", (json_int_t)h->run_ms, "cpu_ms",
						   (json_int_t)h->cpu_ms, "cost", h->cost));
	}
	return a;
}

/* Queues o (consumed; NULL only when building it ran out of memory) as the store record ns/key. */
static void put_json(struct jobs *j, const char *ns, const char *key, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		fatal("json_dumps failed");
	store_put(j->env.store, ns, key, s, strlen(s));
	free(s);
}

static void task_save(struct jobs *j, struct task *t)
{
	t->job->index = ++j->index_seq;
	json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:s,s:s,s:i,s:s,s:I,s:I,s:I}", "st", tstate_names[t->st],
			      "attempt", (int)t->attempt, "failures", (int)t->failures, "lost",
			      (int)t->lost, "node", t->node, "status", t->status, "code", (int)t->code,
			      "reason", t->reason, "start_ms", (json_int_t)t->start_ms, "end_ms",
			      (json_int_t)t->end_ms, "retry_at_ms", (json_int_t)t->retry_at_ms);
	json_object_set_new(o, "outputs", outs_json(t));
	json_object_set_new(o, "history", hist_json(t));
	if (t->rate > 0)
		json_object_set_new(o, "rate", json_real(t->rate));
	if (t->run_ms || t->cpu_ms) {
		json_object_set_new(o, "run_ms", json_integer((json_int_t)t->run_ms));
		json_object_set_new(o, "cpu_ms", json_integer((json_int_t)t->cpu_ms));
	}
	put_json(j, "tasks", t->id, o);
}

static void job_save(struct jobs *j, struct job *jb)
{
	jb->index = ++j->index_seq;
	/* The tenant is saved apart from the spec: a tenant token's job takes its tenant from the token. */
	json_t *o = json_pack("{s:s%,s:s,s:s,s:I,s:I,s:s}", "spec", jb->spec_text, jb->spec_len,
			      "tenant", jb->spec->tenant, "state", jstate_names[jb->st], "created_ms",
			      (json_int_t)jb->created_ms, "finished_ms", (json_int_t)jb->finished_ms,
			      "reason", jb->reason);
	if (jb->parent[0])
		json_object_set_new(o, "parent", json_string(jb->parent));
	if (jb->launcher) {
		const struct launcher *per = jb->launcher;
		json_t *recent = json_array();
		for (size_t i = 0; i < per->n_recent; i++)
			json_array_append_new(recent, json_pack("{s:s,s:I,s:b}", "id", per->recent[i].id, "at_ms",
								(json_int_t)per->recent[i].at_ms, "forced",
								per->recent[i].forced));
		json_object_set_new(o, "launcher",
				    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:b,s:o}", "anchor_ms",
					      (json_int_t)per->anchor_ms, "next_ms", (json_int_t)per->next_ms,
					      "launched", (json_int_t)per->launched, "skipped",
					      (json_int_t)per->skipped, "refused", (json_int_t)per->refused,
					      "last_skip_ms", (json_int_t)per->last_skip_ms, "last_skip",
					      per->last_skip, "by_admin", per->by_admin, "recent", recent));
	}
	put_json(j, "jobs", jb->id, o);
}

static void usage_add(struct usage *u, const struct attempt_rec *h)
{
	u->attempts += h->run_ms > 0 || h->start_ms > 0;
	u->run_ms += h->run_ms;
	u->cpu_ms += h->cpu_ms;
	u->cost += h->cost;
}

static json_t *usage_json(const struct usage *u)
{
	return json_pack("{s:I,s:f,s:f,s:f}", "attempts", (json_int_t)u->attempts, "run_seconds",
			 (double)u->run_ms / 1000.0, "cpu_seconds", (double)u->cpu_ms / 1000.0, "cost", u->cost);
}

/* A tenant's totals as its record holds them. */
static struct usage usage_of(const json_t *e)
{
	return (struct usage){
		.attempts = (uint64_t)json_integer_value(json_object_get(e, "attempts")),
		.run_ms = (uint64_t)json_integer_value(json_object_get(e, "run_ms")),
		.cpu_ms = (uint64_t)json_integer_value(json_object_get(e, "cpu_ms")),
		.cost = json_number_value(json_object_get(e, "cost")),
	};
}

/* The budget period that holds the wall-clock time ms ("2026-12-02", "2026-12"), into out; "" for TOTAL. */
static void period_key(enum jobs_budget_period p, int64_t ms, char out[16])
{
	out[0] = '\0';
	if (p != JOBS_BUDGET_TOTAL)
		time_utc_period(ms, p == JOBS_BUDGET_MONTH, out);
}

/* When the budget period that holds ms ends, in ms; 0 for TOTAL. */
static int64_t period_end_ms(enum jobs_budget_period p, int64_t ms)
{
	return p == JOBS_BUDGET_TOTAL ? 0 : time_utc_period_end_ms(ms, p == JOBS_BUDGET_MONTH);
}

static const char *const period_names[] = {"total", "day", "month"};

/* The fields of a tenant's usage record that hold a period's key and cost. */
static const char *const period_fields[][2] = {
	[JOBS_BUDGET_DAY] = {"day", "day_cost"}, [JOBS_BUDGET_MONTH] = {"month", "month_cost"}};

/* What the usage record e holds for the day or month key (0 when it holds another one). */
static double period_cost(const json_t *e, enum jobs_budget_period p, const char *key)
{
	const char *held = json_string_value(json_object_get(e, period_fields[p][0]));
	return held && !strcmp(held, key) ? json_number_value(json_object_get(e, period_fields[p][1])) : 0;
}

/*
 * Adds h to its tenant's running totals and queues their record, so that
 * the totals commit in the same transaction as the task record holding h.
 */
static void tenant_usage_add(struct jobs *j, const char *tenant, const struct attempt_rec *h)
{
	json_t *e = json_object_get(j->tenant_usage, tenant);
	if (!e) {
		e = json_object();
		json_object_set_new(j->tenant_usage, tenant, e);
	}
	struct usage u = usage_of(e);
	usage_add(&u, h);
	json_object_set_new(e, "attempts", json_integer((json_int_t)u.attempts));
	json_object_set_new(e, "run_ms", json_integer((json_int_t)u.run_ms));
	json_object_set_new(e, "cpu_ms", json_integer((json_int_t)u.cpu_ms));
	json_object_set_new(e, "cost", json_real(u.cost));
	/* The attempt counts toward the day and the month in which it ended. */
	for (int p = JOBS_BUDGET_DAY; p <= JOBS_BUDGET_MONTH; p++) {
		char now[16];
		period_key((enum jobs_budget_period)p, h->end_ms, now);
		double c = period_cost(e, (enum jobs_budget_period)p, now);
		json_object_set_new(e, period_fields[p][0], json_string(now));
		json_object_set_new(e, period_fields[p][1], json_real(c + h->cost));
	}
	put_json(j, "usage", tenant, json_incref(e));
}

/*
 * How long t's current attempt ran: the agent's measured run time once its
 * result came, else from its start until now (wall-clock ms), else 0 when it
 * never started.
 */
static uint64_t attempt_run_ms(const struct task *t, int64_t now)
{
	if (t->run_ms)
		return t->run_ms;
	return t->start_ms > 0 && now > t->start_ms ? (uint64_t)(now - t->start_ms) : 0;
}

/*
 * Records how the current attempt of t ended. An attempt that started runs
 * until its result's end (as the agent measured it) or, without a result,
 * until now; it costs its rate for that long, and the cost goes to its job
 * and its tenant. A "lineage" entry marks a re-run, not an attempt: it costs
 * nothing.
 */
static void hist_add(struct jobs *j, struct task *t, const char *outcome, const char *reason)
{
	t->hist = xrealloc(t->hist, (t->n_hist + 1) * sizeof *t->hist);
	struct attempt_rec *h = &t->hist[t->n_hist++];
	memset(h, 0, sizeof *h);
	h->attempt = t->attempt;
	snprintf(h->node, sizeof h->node, "%s", t->node);
	snprintf(h->outcome, sizeof h->outcome, "%s", outcome);
	snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "");
	h->start_ms = t->start_ms;
	h->end_ms = time_wall_ms();
	if (strcmp(outcome, "lineage") == 0) {
		h->start_ms = 0;
		return;
	}
	h->run_ms = attempt_run_ms(t, h->end_ms);
	h->cpu_ms = t->cpu_ms;
	h->cost = t->rate * (double)h->run_ms / 3600000.0;
	usage_add(&t->job->usage, h);
	if (h->run_ms > 0 || h->start_ms > 0)
		tenant_usage_add(j, t->job->spec->tenant, h);
	t->run_ms = t->cpu_ms = 0;
}

/* ---- which retained jobs use a blob --------------------------------------- */

static struct use **use_head(struct jobs *j, const uint8_t digest[SHA256_LEN])
{
	uint32_t h;
	memcpy(&h, digest, sizeof h);
	return &j->uses[h & (USE_BUCKETS - 1)];
}

static void use_add(struct jobs *j, const uint8_t digest[SHA256_LEN], const struct job *jb)
{
	struct use **head = use_head(j, digest);
	struct use *u = xmalloc(sizeof *u);
	u->jb = jb;
	memcpy(u->digest, digest, SHA256_LEN);
	u->next = *head;
	*head = u;
}

/* Drops one use of the blob by jb (added once per use, so dropped once per use). */
static void use_del(struct jobs *j, const uint8_t digest[SHA256_LEN], const struct job *jb)
{
	for (struct use **pp = use_head(j, digest); *pp; pp = &(*pp)->next) {
		struct use *u = *pp;
		if (u->jb == jb && !memcmp(u->digest, digest, SHA256_LEN)) {
			*pp = u->next;
			free(u);
			return;
		}
	}
}

/* Adds or drops the uses of a task's recorded outputs. */
static void uses_of_outs(struct jobs *j, const struct task *t, bool add)
{
	for (size_t k = 0; k < t->n_outs; k++) {
		if (!t->outs[k].name)
			continue; /* never filled in */
		if (add)
			use_add(j, t->outs[k].digest, t->job);
		else
			use_del(j, t->outs[k].digest, t->job);
	}
}

/*
 * The k-th blob a task names in its spec, for k in 0..n_inputs: its uploaded
 * inputs, then its bundle (k == n_inputs). NULL for an input that is not a
 * blob, or when there is no bundle.
 */
static const uint8_t *spec_blob(const struct jobspec_task *s, size_t k)
{
	if (k < s->n_inputs)
		return s->inputs[k].kind == JOBSPEC_IN_BLOB ? s->inputs[k].digest : NULL;
	return s->has_bundle ? s->bundle_blob : NULL;
}

/* Adds or drops the uses of a job's uploaded inputs and bundles (and, dropping, its outputs). */
static void uses_of_job(struct jobs *j, const struct job *jb, bool add)
{
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct jobspec_task *s = &jb->spec->tasks[i];
		for (size_t k = 0; k <= s->n_inputs; k++) {
			const uint8_t *d = spec_blob(s, k);
			if (!d)
				continue;
			if (add)
				use_add(j, d, jb);
			else
				use_del(j, d, jb);
		}
		if (!add)
			uses_of_outs(j, &jb->tasks[i], false);
	}
}

bool jobs_blob_used(struct jobs *j, const uint8_t digest[SHA256_LEN])
{
	for (const struct use *u = *use_head(j, digest); u; u = u->next)
		if (!memcmp(u->digest, digest, SHA256_LEN))
			return true;
	return false;
}

bool jobs_blob_visible(struct jobs *j, const uint8_t digest[SHA256_LEN], const char *tenant)
{
	if (!tenant || (j->env.tenants && tenants_upload_has(j->env.tenants, tenant, digest)))
		return true;
	for (const struct use *u = *use_head(j, digest); u; u = u->next)
		if (!memcmp(u->digest, digest, SHA256_LEN) && !strcmp(u->jb->spec->tenant, tenant))
			return true;
	return false;
}

static void outs_free(struct task *t)
{
	for (size_t i = 0; i < t->n_outs; i++)
		free(t->outs[i].name);
	free(t->outs);
	t->outs = NULL;
	t->n_outs = 0;
}

/* ---- the scheduler's view of nodes ----------------------------------------- */

static void sched_sync(struct jobs *j, struct node *n)
{
	const char *lk[SCHED_MAX_LABELS], *lv[SCHED_MAX_LABELS];
	const char *feat[SCHED_MAX_FEATURES];
	size_t nl = n->n_labels < SCHED_MAX_LABELS ? n->n_labels : SCHED_MAX_LABELS;
	size_t nf = n->n_features < SCHED_MAX_FEATURES ? n->n_features : SCHED_MAX_FEATURES;
	for (size_t i = 0; i < nl; i++) {
		lk[i] = n->labels[i].key;
		lv[i] = n->labels[i].value;
	}
	for (size_t i = 0; i < nf; i++)
		feat[i] = n->features[i];
	struct sched_node_info info = {
		.id = n->id,
		.tee = n->tee[0] ? n->tee : "sim",
		.hardware = !n->attest_insecure && strcmp(n->tee, "sim") != 0 && n->tee[0],
		.schedulable = n->state == NODE_READY && !n->draining && j->env.connected(j->env.arg, n),
		.attest_ok = !strcmp(n->attest_status, "affirming") || !strcmp(n->attest_status, "warning"),
		.attest_warning = !strcmp(n->attest_status, "warning"),
		.attest_expires_ms = n->attest_expires_ms,
		.pool = n->pool,
		.label_keys = lk,
		.label_values = lv,
		.n_labels = nl,
		.features = feat,
		.n_features = nf,
		.cpu_millicores = n->cpu_cores * 1000u,
		.memory_bytes = n->memory_bytes,
		.disk_bytes = n->disk_bytes,
		.price_per_hour = n->price_per_hour,
		.load = n->cpu_permille / 1000.0,
		.max_tasks = n->max_tasks,
	};
	sched_node_update(j->sched, &info);
}

/* ---- queueing and the scheduling pass -------------------------------------- */

static void enqueue(struct jobs *j, struct task *t)
{
	if (t->queued)
		return;
	const struct jobspec_task *s = spec_of(t);
	t->queued = true;
	t->ready_ns = uv_hrtime();
	sched_queue_push(j->queue, t->job->spec->tenant, s->priority, s->res.cpu_millicores, t);
}

static void dequeue(struct jobs *j, struct task *t)
{
	if (!t->queued)
		return;
	sched_queue_remove(j->queue, t);
	t->queued = false;
}

static void task_fail(struct jobs *j, struct task *t, const char *status, const char *why);

/* ---- lineage ----------------------------------------------------------------------- */

/*
 * An intermediate output exists while the manager holds a copy or an agent
 * that holds it can serve it.
 */
static bool output_available(struct jobs *j, const uint8_t digest[SHA256_LEN])
{
	struct node *hv[1];
	return blobstore_has(j->env.blobs, digest, NULL) || replicas_sources(j->repl, digest, NULL, hv, 1) > 0;
}

/*
 * Runs a succeeded task again because an output some pending task needs is
 * gone (every agent that held it went away, and the manager never collected
 * it). Its dependants that are not running wait for it again. Bounded by the
 * task's lost budget.
 */
static void task_rerun(struct jobs *j, struct task *p, const char *why)
{
	struct job *jb = p->job;
	/*
	 * Its outputs were protected when it succeeded; the next success
	 * protects what it makes then (job_protect counts succeeded tasks only).
	 */
	if (spec_of(p)->replicate)
		for (size_t k = 0; k < p->n_outs; k++)
			replicas_unprotect(j->repl, p->outs[k].digest, jb);
	j->lineage_reruns++;
	p->lost++;
	hist_add(j, p, "lineage", why);
	log_info("task %s (%s) runs again (lineage): %s", p->id, spec_of(p)->name, why);
	if (p->lost > MAX_LOST) {
		set_tstate(p, T_PENDING);
		task_fail(j, p, "lost", "its outputs were lost too many times");
		return;
	}
	snprintf(p->reason, sizeof p->reason, "running again: %s", why);
	p->node[0] = '\0';
	set_tstate(p, T_PENDING);
	task_save(j, p);
	for (uint32_t k = jb->dep_off[p->idx]; k < jb->dep_off[p->idx + 1]; k++) {
		struct task *d = &jb->tasks[jb->dep_idx[k]];
		if (d->st != T_PENDING && d->st != T_RETRYING)
			continue;
		d->waiting++;
		dequeue(j, d);
	}
	p->waiting = 0;
	for (size_t k = 0; k < spec_of(p)->n_deps; k++)
		if (jb->tasks[spec_of(p)->deps[k]].st != T_SUCCEEDED)
			p->waiting++;
	if (p->waiting == 0)
		enqueue(j, p);
	kick(j);
}

enum lineage { LINEAGE_READY, LINEAGE_WAIT, LINEAGE_HOLD };

/*
 * Before t is placed: re-runs the producer of any input of t that no longer
 * exists, and recounts what t waits for. Returns LINEAGE_WAIT when t waits
 * for a dependency (it leaves the queue until then), LINEAGE_HOLD when an
 * input's holder is alive but not connected (t stays queued and is tried
 * again at the next pass, e.g. when the agent reconnects), else
 * LINEAGE_READY.
 */
static enum lineage lineage_check(struct jobs *j, struct task *t)
{
	const struct jobspec_task *s = spec_of(t);
	bool hold = false;
	for (size_t i = 0; i < s->n_inputs; i++) {
		const struct jobspec_input *in = &s->inputs[i];
		if (in->kind != JOBSPEC_IN_OUTPUT)
			continue;
		struct task *p = &t->job->tasks[in->task];
		if (p->st != T_SUCCEEDED)
			continue;
		for (size_t k = 0; k < p->n_outs; k++) {
			if (strcmp(p->outs[k].name, in->output) != 0 || output_available(j, p->outs[k].digest))
				continue;
			if (replicas_alive(j->repl, p->outs[k].digest)) {
				char hex[2 * SHA256_LEN + 1];
				hex_encode(p->outs[k].digest, SHA256_LEN, hex);
				snprintf(t->reason, sizeof t->reason,
					 "waiting for the agent holding input %s (%.16s) to reconnect", in->name, hex);
				hold = true;
				continue;
			}
			char why[200], hex[2 * SHA256_LEN + 1];
			hex_encode(p->outs[k].digest, SHA256_LEN, hex);
			snprintf(why, sizeof why, "output %s (%.16s) is needed by %s and no copy is left",
				 p->outs[k].name, hex, s->name);
			task_rerun(j, p, why);
			break;
		}
	}
	t->waiting = 0;
	for (size_t k = 0; k < s->n_deps; k++)
		if (t->job->tasks[s->deps[k]].st != T_SUCCEEDED)
			t->waiting++;
	return t->waiting > 0 ? LINEAGE_WAIT : hold ? LINEAGE_HOLD : LINEAGE_READY;
}

/* Looks up the blob an input refers to; false when it is not (or no longer) available. */
static bool input_blob(struct jobs *j, const struct task *t, const struct jobspec_input *in,
		       uint8_t digest[SHA256_LEN], uint64_t *size, const char **holder)
{
	*holder = NULL;
	if (in->kind == JOBSPEC_IN_BLOB) {
		memcpy(digest, in->digest, SHA256_LEN);
		return blobstore_has(j->env.blobs, digest, size);
	}
	if (in->kind != JOBSPEC_IN_OUTPUT)
		return false;
	const struct task *p = &t->job->tasks[in->task];
	for (size_t i = 0; i < p->n_outs; i++) {
		if (!strcmp(p->outs[i].name, in->output)) {
			memcpy(digest, p->outs[i].digest, SHA256_LEN);
			*size = p->outs[i].size;
			*holder = p->node;
			return output_available(j, digest);
		}
	}
	return false;
}

/* Storage for one request's borrowed arrays. */
struct req_buf {
	struct sched_req req;
	const char *lk[64], *lv[64];
	struct sched_input *inputs;
	struct sched_node **holders;
};

static void req_build(struct jobs *j, struct task *t, struct req_buf *rb)
{
	const struct jobspec *js = t->job->spec;
	const struct jobspec_task *s = spec_of(t);
	struct sched_req *r = &rb->req;
	memset(r, 0, sizeof *r);
	r->tenant = js->tenant;
	r->cpu_millicores = s->res.cpu_millicores;
	r->memory_bytes = s->res.memory_bytes;
	r->disk_bytes = s->res.disk_bytes;
	r->tee = (const char *const *)js->policy.tee;
	r->n_tee = js->policy.n_tee;
	r->hardware = js->policy.hardware;
	r->code_digest = s->has_bundle ? s->bundle_digest : j->empty_bundle;
	r->code_allow = (const uint8_t(*)[SHA256_LEN])js->policy.code;
	r->n_code_allow = js->policy.n_code;
	size_t nl = js->policy.n_labels < 64 ? js->policy.n_labels : 64;
	for (size_t i = 0; i < nl; i++) {
		rb->lk[i] = js->policy.labels[i].key;
		rb->lv[i] = js->policy.labels[i].value;
	}
	r->label_keys = rb->lk;
	r->label_values = rb->lv;
	r->n_labels = nl;
	r->features = (const char *const *)js->policy.features;
	r->n_features = js->policy.n_features;
	r->optimize = js->policy.optimize == JOBSPEC_OPT_COST      ? SCHED_OPT_COST
		      : js->policy.optimize == JOBSPEC_OPT_LATENCY ? SCHED_OPT_LATENCY
								   : SCHED_OPT_BALANCED;
	r->spread = js->policy.placement == JOBSPEC_SPREAD;
	r->est_runtime_ms = s->res.timeout_ms / 10;
	r->avoid = t->avoid;
	r->now_ms = time_wall_ms();
	rb->inputs = s->n_inputs ? xcalloc(s->n_inputs, sizeof *rb->inputs) : NULL;
	rb->holders = s->n_inputs ? xcalloc(s->n_inputs * MSG_MAX_SOURCES, sizeof *rb->holders) : NULL;
	size_t ni = 0;
	for (size_t i = 0; i < s->n_inputs; i++) {
		const char *holder;
		uint64_t size = 0;
		struct sched_input *in = &rb->inputs[ni];
		if (!input_blob(j, t, &s->inputs[i], in->digest, &size, &holder))
			continue;
		in->size = size;
		/* Locality: the nodes that hold the input (its producer and any replicas). */
		const char *ids[MSG_MAX_SOURCES];
		size_t nh = replicas_holders(j->repl, in->digest, ids, MSG_MAX_SOURCES);
		struct sched_node **hv = &rb->holders[ni * MSG_MAX_SOURCES];
		size_t k = 0;
		for (size_t h = 0; h < nh; h++)
			if ((hv[k] = sched_node_find(j->sched, ids[h])) != NULL)
				k++;
		if (k) {
			in->holders = hv;
			in->n_holders = k;
		}
		ni++;
	}
	r->inputs = rb->inputs;
	r->n_inputs = ni;
}

static void req_free(struct req_buf *rb)
{
	free(rb->inputs);
	free(rb->holders);
}

static void release(struct jobs *j, struct task *t)
{
	const struct jobspec_task *s = spec_of(t);
	if (t->charged) {
		/* Its CPU no longer counts toward its tenant's share and cap. */
		sched_queue_done(j->queue, t->job->spec->tenant, s->res.cpu_millicores);
		t->charged = false;
	}
	if (!t->sn)
		return;
	sched_release(j->sched, t->sn, s->res.cpu_millicores, s->res.memory_bytes, s->res.disk_bytes);
	t->sn = NULL;
}

/* Builds and sends the dispatch of t's current attempt to n. */
static int dispatch(struct jobs *j, struct task *t, struct node *n, char *why, size_t whylen)
{
	const struct jobspec_task *s = spec_of(t);
	int rc = 0;
	Seeswarm__V1__TaskDispatch d = SEESWARM__V1__TASK_DISPATCH__INIT;
	Seeswarm__V1__TaskResources res = SEESWARM__V1__TASK_RESOURCES__INIT;
	Seeswarm__V1__TaskInput *ins = s->n_inputs ? xcalloc(s->n_inputs, sizeof *ins) : NULL;
	Seeswarm__V1__TaskInput **insp = s->n_inputs ? xcalloc(s->n_inputs, sizeof *insp) : NULL;
	Seeswarm__V1__BlobSource *srcs =
		s->n_inputs ? xcalloc(s->n_inputs * MSG_MAX_SOURCES, sizeof *srcs) : NULL;
	Seeswarm__V1__BlobSource **srcp =
		s->n_inputs ? xcalloc(s->n_inputs * MSG_MAX_SOURCES, sizeof *srcp) : NULL;
	uint8_t(*digests)[SHA256_LEN] = s->n_inputs ? xcalloc(s->n_inputs, SHA256_LEN) : NULL;
	/* One grant per fetched input, the last for the bundle. */
	uint8_t(*grants)[MSG_MAX_GRANT] =
		s->n_inputs || s->has_bundle ? xcalloc(s->n_inputs + 1, MSG_MAX_GRANT) : NULL;
	size_t inline_used = 0;
	d.job_id = t->job->id;
	d.task_id = t->id;
	d.attempt = t->attempt;
	d.name = s->name;
	d.argv = s->argv;
	d.n_argv = s->argc;
	d.env = s->env;
	d.n_env = s->envc;
	d.outputs = s->outputs;
	d.n_outputs = s->n_outputs;
	res.cpu_millicores = s->res.cpu_millicores;
	res.memory_bytes = s->res.memory_bytes;
	res.disk_bytes = s->res.disk_bytes;
	res.output_bytes = s->res.output_bytes;
	res.pids = s->res.pids;
	res.timeout_ms = s->res.timeout_ms;
	res.kill_grace_ms = s->res.kill_grace_ms;
	d.resources = &res;
	for (size_t i = 0; i < s->n_inputs; i++) {
		Seeswarm__V1__TaskInput *in = &ins[i];
		seeswarm__v1__task_input__init(in);
		insp[i] = in;
		const char *holder;
		uint64_t size = 0;
		if (!input_blob(j, t, &s->inputs[i], digests[i], &size, &holder)) {
			snprintf(why, whylen, "input %s is not available in the manager's blob store",
				 s->inputs[i].name);
			rc = SS_ENOTFOUND;
			goto out;
		}
		in->name = s->inputs[i].name;
		in->digest.data = digests[i];
		in->digest.len = SHA256_LEN;
		in->size = size;
		if (size <= MSG_MAX_INLINE && inline_used + size <= INLINE_BUDGET) {
			struct blob_reader *br = NULL;
			uint8_t *data = xmalloc(size ? size : 1);
			size_t got = 0, total = 0;
			int r = blobstore_read_open(j->env.blobs, digests[i], &br, NULL);
			while (r == 0 && total < size) {
				r = blob_reader_read(br, data + total, size - total, &got);
				if (r == 0 && got == 0)
					break;
				total += got;
			}
			blob_reader_close(br);
			if (r != 0 || total != size) {
				free(data);
				snprintf(why, whylen, "input %s: cannot read its blob (%s)", s->inputs[i].name,
					 ss_strerror(r ? r : SS_ETRUNC));
				rc = SS_EIO;
				goto out;
			}
			in->data.data = data;
			in->data.len = size;
			inline_used += size;
		} else {
			/* The agent asks the holders first; the manager's copy is the fallback. */
			size_t nh = replicas_source_msgs(j->repl, digests[i], n->id, &srcs[i * MSG_MAX_SOURCES],
							 &srcp[i * MSG_MAX_SOURCES], MSG_MAX_SOURCES);
			in->sources = nh ? &srcp[i * MSG_MAX_SOURCES] : NULL;
			in->n_sources = nh;
			if ((rc = replicas_grant(j->repl, digests[i], n->id, grants[i], &in->grant))) {
				snprintf(why, whylen, "cannot sign the grant for input %s", s->inputs[i].name);
				goto out;
			}
		}
	}
	d.inputs = insp;
	d.n_inputs = s->n_inputs;
	Seeswarm__V1__TaskInput bin = SEESWARM__V1__TASK_INPUT__INIT;
	Seeswarm__V1__BlobSource bsrc[MSG_MAX_SOURCES], *bsrcp[MSG_MAX_SOURCES];
	if (s->has_bundle) {
		/* The code's tar, fetched like an input (never inline: agents cache it unpacked). */
		size_t nh = replicas_source_msgs(j->repl, s->bundle_blob, n->id, bsrc, bsrcp, MSG_MAX_SOURCES);
		bin.name = "bundle";
		bin.digest.data = (uint8_t *)s->bundle_blob;
		bin.digest.len = SHA256_LEN;
		bin.sources = bsrcp;
		bin.n_sources = nh;
		if ((rc = replicas_grant(j->repl, s->bundle_blob, n->id, grants[s->n_inputs], &bin.grant))) {
			snprintf(why, whylen, "cannot sign the grant for the bundle");
			goto out;
		}
		if (!blobstore_has(j->env.blobs, s->bundle_blob, &bin.size) && nh == 0) {
			snprintf(why, whylen, "the bundle is not available in the manager's blob store");
			rc = SS_ENOTFOUND;
			goto out;
		}
		d.bundle = &bin;
		d.bundle_digest.data = (uint8_t *)s->bundle_digest;
		d.bundle_digest.len = SHA256_LEN;
	}
	rc = j->env.send(j->env.arg, n, MSG_TASK_DISPATCH, &d.base);
	if (rc)
		snprintf(why, whylen, "node %s is not connected", n->id);
out:
	for (size_t i = 0; ins && i < s->n_inputs; i++)
		free(ins[i].data.data);
	free(ins);
	free(insp);
	free(srcs);
	free(srcp);
	free(digests);
	free(grants);
	return rc;
}

static void task_fail(struct jobs *j, struct task *t, const char *status, const char *why);
static void queue_ack(struct jobs *j, const struct node *n, const char *task_id, uint32_t attempt);

/* Tries to place and dispatch one task. Returns true when it was dispatched. */
/* What an attempt of cpu_millicores pays per hour on n: the share of the node it reserves, the whole node at most. */
static double node_rate(const struct node *n, uint32_t cpu_millicores)
{
	double share = n->cpu_cores ? (double)cpu_millicores / (n->cpu_cores * 1000.0) : 1.0;
	return n->price_per_hour * (share < 1.0 ? share : 1.0);
}

/*
 * Tells the agent that runs t's current attempt to cancel it (why is its
 * reason), when that node is known and connected. Returns the node, or NULL
 * when t's node is unknown to the registry.
 */
static struct node *cancel_on_node(struct jobs *j, const struct task *t, const char *why)
{
	struct node *n = t->node[0] ? registry_get(j->env.reg, t->node) : NULL;
	if (n && j->env.connected(j->env.arg, n)) {
		Seeswarm__V1__TaskCancel c = SEESWARM__V1__TASK_CANCEL__INIT;
		c.task_id = (char *)t->id;
		c.attempt = t->attempt;
		c.reason = (char *)why;
		j->env.send(j->env.arg, n, MSG_TASK_CANCEL, &c.base);
	}
	return n;
}

/*
 * Ends t's current attempt without counting it against t (outcome is what
 * its history says, why the reason): its reservation goes, and t is pending
 * again at once, free to come back to the same node. That uses neither a
 * retry nor the lost budget.
 */
static void task_requeue(struct jobs *j, struct task *t, const char *outcome, const char *why)
{
	release(j, t);
	active_del(j, t);
	hist_add(j, t, outcome, why);
	snprintf(t->reason, sizeof t->reason, "attempt %u %s", t->attempt, why);
	t->node[0] = '\0';
	t->avoid = NULL;
	set_tstate(t, T_PENDING);
	task_save(j, t);
	enqueue(j, t);
	kick(j);
}

/*
 * Stops t's current attempt to make room for by, a task of higher priority:
 * its agent is told to cancel it, and t is pending again (task_requeue).
 */
static void task_preempted(struct jobs *j, struct task *t, const struct task *by)
{
	char why[200];
	snprintf(why, sizeof why, "preempted by %s (%s, priority %d)", by->id, spec_of(by)->name,
		 (int)spec_of(by)->priority);
	cancel_on_node(j, t, why);
	j->preempted++;
	log_info("task %s (%s, priority %d) attempt %u on %s %s", t->id, spec_of(t)->name,
		 (int)spec_of(t)->priority, t->attempt, t->node, why);
	task_requeue(j, t, "preempted", why);
}

/* Preemption order on a node: the lowest priority first, then the newest attempt (least work lost). */
static int cmp_victim(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	int c = strcmp(sched_node_id(x->sn), sched_node_id(y->sn));
	if (c)
		return c;
	int32_t px = spec_of(x)->priority, py = spec_of(y)->priority;
	if (px != py)
		return px < py ? -1 : 1;
	int64_t sx = x->start_ms ? x->start_ms : INT64_MAX, sy = y->start_ms ? y->start_ms : INT64_MAX;
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->id, y->id);
}

/*
 * t fits nowhere now: looks for the node where preempting the fewest
 * attempts of lower priority (by JOBS_PREEMPT_DELTA or more; of t's tenant
 * only under JOBS_PREEMPT_TENANT) lets req fit, and where t passes every
 * other check. Placed and running attempts qualify, except those marked
 * plan_taken; one collecting its outputs has finished its work. Returns that
 * node, with *victims set to a new array whose first *nv attempts are the
 * ones to preempt, or NULL (and *victims NULL). Changes nothing. Cost: one
 * walk of the active list and a sched_fit per candidate attempt.
 */
static struct sched_node *preempt_search(struct jobs *j, const struct task *t, const struct sched_req *req,
					 struct task ***victims, size_t *nv)
{
	const struct jobspec_task *s = spec_of(t);
	struct task **v = NULL;
	size_t n = 0, cap = 0, best_i = 0, best_k = 0;
	struct sched_node *best = NULL;
	if (s->priority < INT32_MIN + JOBS_PREEMPT_DELTA)
		goto out;
	for (struct task *a = j->active; a; a = a->act_next) {
		if ((a->st != T_PLACED && a->st != T_RUNNING) || !a->sn || a->plan_taken ||
		    spec_of(a)->priority > s->priority - JOBS_PREEMPT_DELTA)
			continue;
		if (j->preempt == JOBS_PREEMPT_TENANT && strcmp(a->job->spec->tenant, t->job->spec->tenant) != 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[n++] = a;
	}
	if (n == 0)
		goto out;
	qsort(v, n, sizeof *v, cmp_victim);
	for (size_t i = 0, e; i < n; i = e) {
		struct sched_node *sn = v[i]->sn;
		for (e = i; e < n && v[e]->sn == sn;)
			e++;
		if (sched_fit(j->sched, req, sn) != SS_ELIMIT)
			continue;
		/* Free the node's candidates one by one, in order, until req fits; then put them back. */
		size_t k = 0;
		int rc = SS_ELIMIT;
		while (rc == SS_ELIMIT && i + k < e && k < PREEMPT_MAX_VICTIMS && (!best || k < best_k)) {
			const struct jobspec_task *vs = spec_of(v[i + k]);
			sched_release(j->sched, sn, vs->res.cpu_millicores, vs->res.memory_bytes, vs->res.disk_bytes);
			k++;
			rc = sched_fit(j->sched, req, sn);
		}
		for (size_t q = 0; q < k; q++) {
			const struct jobspec_task *vs = spec_of(v[i + q]);
			sched_reserve(j->sched, sn, vs->res.cpu_millicores, vs->res.memory_bytes, vs->res.disk_bytes);
		}
		if (rc == 0 && (!best || k < best_k)) {
			best = sn;
			best_i = i;
			best_k = k;
		}
	}
out:
	if (best) {
		memmove(v, v + best_i, best_k * sizeof *v);
		*victims = v;
		*nv = best_k;
	} else {
		free(v);
		*victims = NULL;
		*nv = 0;
	}
	return best;
}

/*
 * Makes room for t by preemption (preempt_search): preempts the attempts
 * it found and returns the node, its resources now free for t, or NULL when
 * no preemption would let t fit (nothing changes then).
 */
static struct sched_node *preempt_for(struct jobs *j, struct task *t, const struct sched_req *req)
{
	struct task **v;
	size_t nv;
	struct sched_node *sn = preempt_search(j, t, req, &v, &nv);
	for (size_t q = 0; q < nv; q++)
		task_preempted(j, v[q], t);
	free(v);
	if (sn)
		failpoint("preempt"); /* crash tests: the cancels are out, nothing is committed */
	return sn;
}

static bool place_one(struct jobs *j, struct task *t)
{
	struct req_buf rb;
	struct sched_node *sn = NULL;
	char why[256];
	bool placed = false;
	req_build(j, t, &rb);
	int rc = sched_place(j->sched, &rb.req, &sn, why, sizeof why);
	if (rc == SS_ENOTFOUND && j->preempt != JOBS_PREEMPT_OFF && j->preempt_tries < PREEMPT_TRIES) {
		j->preempt_tries++;
		if ((sn = preempt_for(j, t, &rb.req)))
			rc = 0;
	}
	if (rc) {
		snprintf(t->reason, sizeof t->reason, "%s", why);
		goto out;
	}
	struct node *n = registry_get(j->env.reg, sched_node_id(sn));
	if (!n) {
		snprintf(t->reason, sizeof t->reason, "chosen node vanished");
		goto out;
	}
	const struct jobspec_task *s = spec_of(t);
	t->attempt++;
	snprintf(t->node, sizeof t->node, "%s", n->id);
	rc = dispatch(j, t, n, why, sizeof why);
	if (rc == SS_ENOTFOUND || rc == SS_EIO) {
		/* Its input is gone: nothing will bring it back. */
		task_fail(j, t, "input_error", why);
		sched_queue_done(j->queue, t->job->spec->tenant, s->res.cpu_millicores);
		placed = true; /* do not put it back in the queue */
		goto out;
	}
	if (rc) {
		t->attempt--;
		t->node[0] = '\0';
		snprintf(t->reason, sizeof t->reason, "%s", why);
		goto out;
	}
	sched_reserve(j->sched, sn, s->res.cpu_millicores, s->res.memory_bytes, s->res.disk_bytes);
	t->rate = node_rate(n, s->res.cpu_millicores);
	t->run_ms = t->cpu_ms = 0;
	t->sn = sn;
	t->charged = true; /* the pop counted it */
	t->start_ms = 0;
	t->reason[0] = '\0';
	set_tstate(t, T_PLACED);
	active_add(j, t);
	task_save(j, t);
	j->dispatched++;
	placed = true;
out:
	req_free(&rb);
	return placed;
}

static void run_pass(struct jobs *j)
{
	struct task **blocked = NULL;
	size_t n_blocked = 0, cap = 0;
	uint32_t streak = 0;
	j->passes++;
	j->preempt_tries = 0;
	for (uint32_t budget = 0; budget < PASS_BUDGET && streak < PASS_FAIL_STREAK; budget++) {
		const char *tenant;
		struct task *t = sched_queue_pop(j->queue, &tenant);
		if (!t)
			break;
		t->queued = false;
		enum lineage lg = t->st == T_PENDING && t->job->st == J_RUNNING ? lineage_check(j, t)
										  : LINEAGE_WAIT;
		if (lg == LINEAGE_WAIT) {
			sched_queue_done(j->queue, tenant, spec_of(t)->res.cpu_millicores);
			continue;
		}
		if (lg == LINEAGE_READY && place_one(j, t)) {
			streak = 0;
			continue;
		}
		streak++;
		if (n_blocked == cap) {
			cap = cap ? 2 * cap : 64;
			blocked = xrealloc(blocked, cap * sizeof *blocked);
		}
		blocked[n_blocked++] = t;
	}
	/* Put the unplaceable ones back in their order. */
	while (n_blocked > 0) {
		struct task *t = blocked[--n_blocked];
		const struct jobspec_task *s = spec_of(t);
		sched_queue_unpop(j->queue, t->job->spec->tenant, s->priority, s->res.cpu_millicores, t);
		t->queued = true;
	}
	free(blocked);
}

static void on_kick(uv_idle_t *h)
{
	struct jobs *j = h->data;
	uv_idle_stop(h);
	j->kicked = false;
	run_pass(j);
}

static void kick(struct jobs *j)
{
	if (j->kicked)
		return;
	j->kicked = true;
	uv_idle_start(&j->kick, on_kick);
}

/* ---- outcomes ------------------------------------------------------------------ */

/*
 * Forgets where a blob lives on agents (replicas_forget: their copies go)
 * now that jb no longer needs it, unless an unfinished job other than jb
 * uses it too: the same bytes made by two jobs are one blob.
 */
static void forget_blob(struct jobs *j, const uint8_t digest[SHA256_LEN], const struct job *jb)
{
	for (const struct use *u = *use_head(j, digest); u; u = u->next)
		if (u->jb != jb && (u->jb->st == J_RUNNING || is_template(u->jb)) &&
		    !memcmp(u->digest, digest, SHA256_LEN))
			return;
	replicas_forget(j->repl, digest);
}

static void job_check_done(struct jobs *j, struct job *jb)
{
	if (jb->st != J_RUNNING)
		return;
	size_t done = jb->counts[T_SUCCEEDED] + jb->counts[T_FAILED] + jb->counts[T_CANCELED];
	if (done < jb->spec->n_tasks)
		return;
	jb->st = jb->counts[T_SUCCEEDED] == jb->spec->n_tasks ? J_SUCCEEDED : J_FAILED;
	jb->finished_ms = time_wall_ms();
	if (jb->st == J_SUCCEEDED)
		j->succeeded++;
	else
		j->failed++;
	log_info("job %s (%s) %s", jb->id, jb->spec->name, jstate_names[jb->st]);
	job_save(j, jb);
	/*
	 * Intermediate outputs served lineage only: their copies go now (finals
	 * stay with the job, and replicas_forget keeps the ones "replicate" protects).
	 */
	for (size_t i = 0; i < jb->spec->n_tasks; i++)
		if (!jb->spec->tasks[i].final)
			for (size_t k = 0; k < jb->tasks[i].n_outs; k++)
				forget_blob(j, jb->tasks[i].outs[k].digest, jb);
}

/* Ends a non-terminal task as canceled or failed without running it. */
static void task_end(struct jobs *j, struct task *t, enum tstate st, const char *why)
{
	if (terminal(t->st))
		return;
	dequeue(j, t);
	if (t->active) {
		struct node *n = t->node[0] ? registry_get(j->env.reg, t->node) : NULL;
		if (n) {
			Seeswarm__V1__TaskCancel c = SEESWARM__V1__TASK_CANCEL__INIT;
			c.task_id = t->id;
			c.attempt = t->attempt;
			c.reason = (char *)why;
			j->env.send(j->env.arg, n, MSG_TASK_CANCEL, &c.base);
		}
		release(j, t);
		active_del(j, t);
		hist_add(j, t, st == T_CANCELED ? "canceled" : "failed", why);
	}
	snprintf(t->reason, sizeof t->reason, "%s", why);
	t->end_ms = time_wall_ms();
	set_tstate(t, st);
	task_save(j, t);
}

/* Fails every task that (transitively) depends on t. */
static void fail_dependants(struct jobs *j, struct task *t)
{
	struct job *jb = t->job;
	char why[256];
	snprintf(why, sizeof why, "dependency %s failed", spec_of(t)->name);
	for (uint32_t k = jb->dep_off[t->idx]; k < jb->dep_off[t->idx + 1]; k++) {
		struct task *d = &jb->tasks[jb->dep_idx[k]];
		if (terminal(d->st))
			continue;
		task_end(j, d, T_FAILED, why);
		fail_dependants(j, d);
	}
}

/* A task failed for good (no retries left, or unrecoverable). */
static void task_fail(struct jobs *j, struct task *t, const char *status, const char *why)
{
	struct job *jb = t->job;
	dequeue(j, t);
	release(j, t);
	active_del(j, t);
	snprintf(t->status, sizeof t->status, "%s", status);
	snprintf(t->reason, sizeof t->reason, "%s", why);
	t->end_ms = time_wall_ms();
	set_tstate(t, T_FAILED);
	task_save(j, t);
	log_info("task %s (%s) failed: %s", t->id, spec_of(t)->name, why);
	if (jb->spec->fail_fast) {
		char text[256];
		snprintf(text, sizeof text, "job failed fast: task %s failed", spec_of(t)->name);
		snprintf(jb->reason, sizeof jb->reason, "%s", text);
		for (size_t i = 0; i < jb->spec->n_tasks; i++)
			task_end(j, &jb->tasks[i], T_CANCELED, text);
	} else {
		fail_dependants(j, t);
	}
	job_check_done(j, jb);
	kick(j);
}

/* True when n satisfies the data-relevant part of a job's policy: TEE type, attestation, labels. */
static bool node_meets_policy(const struct jobspec_policy *p, const struct node *n)
{
	if (p->hardware && (n->attest_insecure || !strcmp(n->tee, "sim")))
		return false;
	bool tee_ok = p->n_tee == 0;
	for (size_t i = 0; i < p->n_tee && !tee_ok; i++)
		tee_ok = !strcmp(p->tee[i], n->tee);
	if (!tee_ok)
		return false;
	for (size_t i = 0; i < p->n_labels; i++) {
		bool found = false;
		for (size_t k = 0; k < n->n_labels && !found; k++)
			found = !strcmp(n->labels[k].key, p->labels[i].key) &&
				!strcmp(n->labels[k].value, p->labels[i].value);
		if (!found)
			return false;
	}
	return true;
}

/*
 * replicas_env.may_hold: owner is a retained job that protects a blob; a
 * copy may go only to a node that job's policy would run its tasks on, so
 * repair never moves a job's data to where the job itself may not go.
 */
static bool may_hold(void *arg, const void *owner, const struct node *n)
{
	(void)arg;
	const struct job *jb = owner;
	return node_meets_policy(&jb->spec->policy, n);
}

static void task_succeeded(struct jobs *j, struct task *t)
{
	struct job *jb = t->job;
	active_del(j, t);
	t->end_ms = time_wall_ms();
	hist_add(j, t, "succeeded", "");
	set_tstate(t, T_SUCCEEDED);
	t->reason[0] = '\0';
	task_save(j, t);
	/* The agent that ran it holds every output; critical ones (final by default) get R replicas. */
	for (size_t i = 0; i < t->n_outs; i++) {
		replicas_hold(j->repl, t->outs[i].digest, t->outs[i].size, t->node);
		if (spec_of(t)->replicate)
			replicas_protect(j->repl, t->outs[i].digest, t->outs[i].size, jb);
	}
	/* The agent keeps the result until this outcome is durable. */
	struct node *n = registry_get(j->env.reg, t->node);
	if (n)
		queue_ack(j, n, t->id, t->attempt);
	for (uint32_t k = jb->dep_off[t->idx]; k < jb->dep_off[t->idx + 1]; k++) {
		struct task *d = &jb->tasks[jb->dep_idx[k]];
		if (d->waiting > 0 && --d->waiting == 0 && d->st == T_PENDING)
			enqueue(j, d);
	}
	job_check_done(j, jb);
	kick(j);
}

/*
 * The current attempt is lost (its node went away, the agent forgot it, or
 * its outputs could not be collected): back to pending with a new attempt
 * later, away from that node.
 */
static void task_lost(struct jobs *j, struct task *t, const char *why)
{
	if (!t->active)
		return;
	j->lost_total++;
	struct node *n = cancel_on_node(j, t, why);
	t->avoid = t->sn ? t->sn : (n ? sched_node_find(j->sched, n->id) : NULL);
	release(j, t);
	active_del(j, t);
	hist_add(j, t, "lost", why);
	t->lost++;
	log_info("task %s (%s) attempt %u lost on %s: %s", t->id, spec_of(t)->name, t->attempt,
		 t->node[0] ? t->node : "?", why);
	if (t->lost > MAX_LOST) {
		task_fail(j, t, "lost", "lost with its node too many times");
		return;
	}
	snprintf(t->reason, sizeof t->reason, "attempt %u lost: %s", t->attempt, why);
	t->node[0] = '\0';
	set_tstate(t, T_PENDING);
	task_save(j, t);
	enqueue(j, t);
	kick(j);
}

/* Puts t on the list the retry timer scans (once). */
static void retry_list_add(struct jobs *j, struct task *t)
{
	if (t->in_retry)
		return;
	t->in_retry = true;
	t->retry_next = j->retrying;
	j->retrying = t;
}

/*
 * The attempt ended without being the task's fault, and trying again at
 * once would likely end the same way: an agent refused it (it was full, e.g.
 * still running attempts the manager already gave up on, or it cannot build
 * sandboxes; input false), or its agent could not get its inputs (input
 * true: the agent that holds an input is restarting or cut off, and the
 * manager has no copy). It uses neither a retry nor the lost budget: it
 * waits a short, growing delay (200 ms doubling to 6.4 s), avoids that node
 * next time, and fails only after MAX_REFUSALS such attempts. Before it is
 * placed again, lineage_check() re-runs the producer of any input whose
 * every holder has gone meanwhile.
 */
/*
 * After INPUT_ERRORS_DISOWN attempts of t could not get their inputs: the
 * agents the manager believes hold t's inputs made by other tasks (and that
 * the manager does not hold itself) evidently cannot serve them, so those
 * records go (replicas_disown), and the next try's lineage check makes the
 * inputs again. A holder that was only unreachable costs a re-run; a wrong
 * record no longer stalls the task until it fails.
 */
static void disown_inputs(struct jobs *j, struct task *t)
{
	const struct jobspec_task *s = spec_of(t);
	for (size_t i = 0; i < s->n_inputs; i++) {
		const struct jobspec_input *in = &s->inputs[i];
		if (in->kind != JOBSPEC_IN_OUTPUT)
			continue;
		const struct task *p = &t->job->tasks[in->task];
		for (size_t k = 0; k < p->n_outs; k++) {
			if (strcmp(p->outs[k].name, in->output) != 0 || blobstore_has(j->env.blobs, p->outs[k].digest, NULL))
				continue;
			char hex[2 * SHA256_LEN + 1];
			hex_encode(p->outs[k].digest, SHA256_LEN, hex);
			log_warn("task %s (%s): input %s (%.16s) could not be fetched %u times from the agents "
				 "recorded as holding it; the records go and lineage makes it again",
				 t->id, s->name, in->name, hex, t->refusals);
			replicas_disown(j->repl, p->outs[k].digest);
		}
	}
}

static void task_backoff(struct jobs *j, struct task *t, bool input, const char *why)
{
	if (!t->active)
		return;
	struct node *n = t->node[0] ? registry_get(j->env.reg, t->node) : NULL;
	t->avoid = t->sn ? t->sn : (n ? sched_node_find(j->sched, n->id) : NULL);
	release(j, t);
	active_del(j, t);
	hist_add(j, t, input ? "lost" : "refused", why);
	if (++t->refusals > MAX_REFUSALS) {
		task_fail(j, t, input ? "input_error" : "refused",
			  input ? "its inputs could not be fetched too many times"
				: "refused by agents too many times");
		return;
	}
	if (input && t->refusals % INPUT_ERRORS_DISOWN == 0)
		disown_inputs(j, t);
	uint32_t shift = t->refusals - 1 < 5 ? t->refusals - 1 : 5;
	uint64_t delay = (uint64_t)REFUSAL_BACKOFF_MS << shift;
	t->retry_at_ms = time_wall_ms() + (int64_t)delay;
	snprintf(t->reason, sizeof t->reason, "attempt %u %s %s: %.120s; again in %llu ms", t->attempt,
		 input ? "could not get its inputs on" : "refused by", t->node[0] ? t->node : "?", why,
		 (unsigned long long)delay);
	t->node[0] = '\0';
	set_tstate(t, T_RETRYING);
	task_save(j, t);
	retry_list_add(j, t);
	log_info("task %s (%s) %s", t->id, spec_of(t)->name, t->reason);
}

/* A failed attempt: retry after the backoff, or fail. */
static void task_attempt_failed(struct jobs *j, struct task *t, const char *status, const char *why)
{
	const struct jobspec_task *s = spec_of(t);
	t->failures++;
	hist_add(j, t, status, why);
	if (t->failures > s->retries) {
		task_fail(j, t, status, why);
		return;
	}
	t->avoid = t->sn;
	release(j, t);
	active_del(j, t);
	uint64_t backoff = s->backoff_ms;
	for (uint32_t i = 1; i < t->failures && backoff < 600000; i++)
		backoff *= 2;
	if (backoff > 600000)
		backoff = 600000;
	t->retry_at_ms = time_wall_ms() + (int64_t)backoff;
	snprintf(t->status, sizeof t->status, "%s", status);
	snprintf(t->reason, sizeof t->reason, "attempt %u %s: %s; retry %u of %u in %llu ms", t->attempt,
		 status, why, t->failures, s->retries, (unsigned long long)backoff);
	t->node[0] = '\0';
	set_tstate(t, T_RETRYING);
	task_save(j, t);
	j->retries_total++;
	retry_list_add(j, t);
	log_info("task %s (%s) %s", t->id, s->name, t->reason);
}

static void job_free(struct jobs *j, struct job *jb);
static void on_task_log(struct jobs *j, struct node *n, const Seeswarm__V1__TaskLog *tl);

/* True when nothing in flight (active, queued, retrying or a fetch) points at jb's tasks. */
static bool job_quiet(const struct jobs *j, const struct job *jb)
{
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct task *t = &jb->tasks[i];
		if (t->active || t->queued || t->in_retry)
			return false;
	}
	for (const struct fetch *f = j->fetches; f; f = f->next)
		for (size_t k = 0; k < f->n_waiters; k++)
			if (f->waiters[k].t->job == jb)
				return false;
	return true;
}

/*
 * Protects (on) or releases the blobs a job keeps critical: its uploaded
 * inputs and the outputs of its succeeded tasks that replicate (the final
 * ones, unless the spec says otherwise). Both directions walk the same set,
 * so the reference counts stay balanced.
 */
static void job_protect(struct jobs *j, struct job *jb, bool on)
{
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct jobspec_task *s = &jb->spec->tasks[i];
		const struct task *t = &jb->tasks[i];
		for (size_t k = 0; k <= s->n_inputs; k++) {
			uint64_t size = 0;
			const uint8_t *d = spec_blob(s, k);
			if (!d)
				continue;
			if (!on)
				replicas_unprotect(j->repl, d, jb);
			else if (blobstore_has(j->env.blobs, d, &size))
				replicas_protect(j->repl, d, size, jb);
		}
		if (!s->replicate || t->st != T_SUCCEEDED)
			continue;
		for (size_t k = 0; k < t->n_outs; k++) {
			if (on)
				replicas_protect(j->repl, t->outs[k].digest, t->outs[k].size, jb);
			else
				replicas_unprotect(j->repl, t->outs[k].digest, jb);
		}
	}
}

/* Forgets a finished job: its records leave the store with the next commit. */
static void job_forget(struct jobs *j, struct job *jb)
{
	char key[100];
	job_protect(j, jb, false);
	uses_of_job(j, jb, false);
	/*
	 * Where its outputs, uploaded inputs and bundles live matters no more,
	 * and their copies on agents go (unless another job protects one).
	 */
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct jobspec_task *s = &jb->spec->tasks[i];
		for (size_t k = 0; k < jb->tasks[i].n_outs; k++)
			forget_blob(j, jb->tasks[i].outs[k].digest, jb);
		for (size_t k = 0; k <= s->n_inputs; k++)
			if (spec_blob(s, k))
				forget_blob(j, spec_blob(s, k), jb);
	}
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct task *t = &jb->tasks[i];
		store_del(j->env.store, "tasks", t->id);
		for (uint32_t a = 1; a <= t->attempt; a++) {
			snprintf(key, sizeof key, "%s.%u", t->id, a);
			store_del(j->env.store, "results", key);
		}
	}
	store_del(j->env.store, "jobs", jb->id);
	struct job **pp = &j->buckets[hash_str(jb->id) & (j->nbuckets - 1)];
	while (*pp != jb)
		pp = &(*pp)->hnext;
	*pp = jb->hnext;
	for (pp = &j->all; *pp != jb; pp = &(*pp)->next)
		;
	*pp = jb->next;
	j->n_jobs--;
	j->gc_removed++;
	log_info("job %s (%s) forgotten: finished %.0f s ago", jb->id, jb->spec->name,
		 (double)(time_wall_ms() - jb->finished_ms) / 1000.0);
	job_free(j, jb);
}

/*
 * Forgets finished jobs older than the retention, and the oldest finished
 * ones beyond MAX_FINISHED_JOBS. Their blobs go later, in gc_blobs(), once
 * nothing retained uses them.
 */
static void gc_jobs(struct jobs *j)
{
	int64_t now = time_wall_ms();
	size_t finished = 0;
	struct job *jb = j->all;
	while (jb) {
		struct job *next = jb->next;
		if (jb->st != J_RUNNING && !is_template(jb)) {
			finished++;
			bool old = jb->finished_ms + j->retention_ms <= now;
			if ((old || finished > MAX_FINISHED_JOBS) && job_quiet(j, jb))
				job_forget(j, jb);
		}
		jb = next;
	}
}

static bool blob_in_use(void *arg, const uint8_t digest[SHA256_LEN])
{
	return jobs_blob_used(arg, digest);
}

/*
 * Deletes from the manager's store the blobs no retained job uses (as an
 * input, a bundle or an output) and nobody wrote or uploaded again within
 * the job retention: the same time an upload stays nameable. Called every
 * retry tick; sweeps shards at a pace that covers the store once per
 * min(BLOB_PASS_MAX_MS, retention / 2), so a blob outlives its last use or
 * upload by at most that much more than the retention.
 */
static void gc_blobs(struct jobs *j)
{
	if (!j->env.blobs)
		return;
	uint64_t pass_ms = (uint64_t)j->retention_ms / 2;
	if (pass_ms > BLOB_PASS_MAX_MS)
		pass_ms = BLOB_PASS_MAX_MS;
	if (pass_ms < RETRY_TICK_MS)
		pass_ms = RETRY_TICK_MS;
	int64_t before = time_wall_ms() - j->retention_ms;
	size_t n = 0;
	uint64_t bytes = 0;
	for (j->sweep_credit += 256u * RETRY_TICK_MS; j->sweep_credit >= pass_ms; j->sweep_credit -= pass_ms)
		n += blobstore_sweep(j->env.blobs, j->sweep_shard++ & 0xffu, before, blob_in_use, j, &bytes);
	if (n) {
		j->blobs_deleted += n;
		j->blob_bytes_deleted += bytes;
		log_info("jobs: deleted %zu blob%s (%llu bytes) that no retained job uses", n, n == 1 ? "" : "s",
			 (unsigned long long)bytes);
	}
}

static void send_peer_lists(struct jobs *j);

/* What t's current attempt has cost so far: its rate for as long as it has run (or ran, once its result came). */
static double attempt_cost_so_far(const struct task *t, int64_t now)
{
	if (!t->active || t->start_ms <= 0)
		return 0;
	return t->rate * (double)attempt_run_ms(t, now) / 3600000.0;
}

/* What tenant may spend per *period, or 0 when it has no budget. */
static double tenant_max_cost(const struct jobs *j, const char *tenant, enum jobs_budget_period *period)
{
	const struct cost_cap *any = NULL;
	*period = JOBS_BUDGET_TOTAL;
	for (size_t i = 0; i < j->n_cost_caps; i++) {
		if (!strcmp(j->cost_caps[i].tenant, tenant)) {
			*period = j->cost_caps[i].period;
			return j->cost_caps[i].amount;
		}
		if (!j->cost_caps[i].tenant[0])
			any = &j->cost_caps[i];
	}
	if (!any)
		return 0;
	*period = any->period;
	return any->amount;
}

/*
 * What tenant's attempts have cost in the period that holds now: the
 * finished ones that ended in it (all of them for JOBS_BUDGET_TOTAL), and the
 * running ones so far.
 */
static double tenant_spent(const struct jobs *j, const char *tenant, enum jobs_budget_period period)
{
	const json_t *e = json_object_get(j->tenant_usage, tenant);
	int64_t now = time_wall_ms();
	double spent = json_number_value(json_object_get(e, "cost"));
	if (period != JOBS_BUDGET_TOTAL) {
		char key[16];
		period_key(period, now, key);
		spent = period_cost(e, period, key);
	}
	for (const struct task *t = j->active; t; t = t->act_next)
		if (!strcmp(t->job->spec->tenant, tenant))
			spent += attempt_cost_so_far(t, now);
	return spent;
}

/*
 * Fails every running job past its "timeout" (counted from its submission)
 * or whose attempts cost more than its "max_cost" (the finished ones, and
 * the running ones so far). Its unfinished tasks are canceled, which charges
 * their attempts until now. Runs once a second, on the loop thread.
 */
static void enforce_limits(struct jobs *j)
{
	int64_t now = time_wall_ms();
	bool any = false;
	for (struct job *jb = j->all; jb; jb = jb->next) {
		if (jb->st != J_RUNNING || (!jb->spec->timeout_ms && !(jb->spec->max_cost > 0)))
			continue;
		jb->accruing = 0;
		any = true;
	}
	if (!any)
		return;
	for (const struct task *t = j->active; t; t = t->act_next)
		if (t->job->spec->max_cost > 0)
			t->job->accruing += attempt_cost_so_far(t, now);
	for (struct job *jb = j->all; jb; jb = jb->next) {
		if (jb->st != J_RUNNING)
			continue;
		char why[256] = "", a[32], b[32];
		if (jb->spec->timeout_ms && now - jb->created_ms >= (int64_t)jb->spec->timeout_ms) {
			format_seconds((double)jb->spec->timeout_ms / 1000.0, a);
			snprintf(why, sizeof why, "timeout: the job ran past its timeout of %s", a);
		} else if (jb->spec->max_cost > 0 && jb->usage.cost + jb->accruing > jb->spec->max_cost) {
			format_amount(jb->usage.cost + jb->accruing, a);
			format_amount(jb->spec->max_cost, b);
			snprintf(why, sizeof why, "max_cost: its attempts cost %s, more than its max_cost of %s", a, b);
		}
		if (!why[0])
			continue;
		log_info("job %s (%s): %s", jb->id, jb->spec->name, why);
		snprintf(jb->reason, sizeof jb->reason, "%s", why);
		for (size_t i = 0; i < jb->spec->n_tasks; i++)
			task_end(j, &jb->tasks[i], T_CANCELED, why);
		job_check_done(j, jb);
		kick(j);
	}
}

static void periodic_tick(struct jobs *j);

static void on_retry_timer(uv_timer_t *h)
{
	struct jobs *j = h->data;
	gc_blobs(j);
	periodic_tick(j);
	if (++j->gc_tick >= GC_EVERY_TICKS) {
		j->gc_tick = 0;
		gc_jobs(j);
		enforce_limits(j);
		replicas_tick(j->repl, uv_now(j->env.loop));
		send_peer_lists(j);
	}
	int64_t now = time_wall_ms();
	struct task **pp = &j->retrying;
	while (*pp) {
		struct task *t = *pp;
		if (t->st != T_RETRYING) {
			*pp = t->retry_next;
			t->in_retry = false;
			continue;
		}
		if (t->retry_at_ms <= now) {
			*pp = t->retry_next;
			t->in_retry = false;
			set_tstate(t, T_PENDING);
			if (t->waiting == 0) /* else a re-running producer enqueues it */
				enqueue(j, t);
			kick(j);
			continue;
		}
		pp = &t->retry_next;
	}
}

/* ---- acknowledgements ------------------------------------------------------------ */

static void queue_ack(struct jobs *j, const struct node *n, const char *task_id, uint32_t attempt)
{
	struct ack *a = xcalloc(1, sizeof *a);
	snprintf(a->node, sizeof a->node, "%s", n->id);
	snprintf(a->task_id, sizeof a->task_id, "%s", task_id);
	a->attempt = attempt;
	a->next = j->acks;
	j->acks = a;
}

void jobs_after_commit(struct jobs *j)
{
	struct ack *a = j->acks;
	j->acks = NULL;
	while (a) {
		struct ack *next = a->next;
		struct node *n = registry_get(j->env.reg, a->node);
		if (n) {
			Seeswarm__V1__TaskAck m = SEESWARM__V1__TASK_ACK__INIT;
			m.task_id = a->task_id;
			m.attempt = a->attempt;
			j->env.send(j->env.arg, n, MSG_TASK_ACK, &m.base);
		}
		free(a);
		a = next;
	}
}

/* ---- fetching outputs from agents ---------------------------------------------- */

static void fetch_free(struct fetch *f)
{
	blob_writer_abort(f->w);
	free(f->waiters);
	free(f);
}

static void fetch_unlink(struct jobs *j, struct fetch *f)
{
	for (struct fetch **pp = &j->fetches; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			return;
		}
}

static void fetch_pump(struct jobs *j, struct fetch *f)
{
	struct node *n = registry_get(j->env.reg, f->node);
	while (n && f->req_n < FETCH_WINDOW && f->requested < f->size) {
		uint64_t len = f->size - f->requested;
		if (len > FETCH_CHUNK)
			len = FETCH_CHUNK;
		Seeswarm__V1__BlobGet g = SEESWARM__V1__BLOB_GET__INIT;
		g.request_id = ++j->next_req_id;
		g.digest.data = f->digest;
		g.digest.len = SHA256_LEN;
		g.offset = f->requested;
		g.length = (uint32_t)len;
		if (j->env.send(j->env.arg, n, MSG_BLOB_GET, &g.base) != 0)
			return;
		uint32_t slot = (f->req_head + f->req_n) % FETCH_WINDOW;
		f->req_id[slot] = g.request_id;
		f->req_off[slot] = f->requested;
		f->req_n++;
		f->requested += len;
	}
}

/* One output of t's current attempt is now in the blob store. */
static void output_arrived(struct jobs *j, struct task *t, uint32_t attempt)
{
	if (t->st != T_COLLECTING || t->attempt != attempt || t->collecting == 0)
		return;
	if (--t->collecting == 0)
		task_succeeded(j, t);
}

static void fetch_finish(struct jobs *j, struct fetch *f, int rc, const char *why)
{
	fetch_unlink(j, f);
	if (rc == 0) {
		struct blob_writer *w = f->w;
		f->w = NULL;
		rc = blob_writer_commit(w, NULL);
		if (rc)
			why = "the fetched blob does not match its digest";
		else
			j->blob_fetched++;
	}
	for (size_t i = 0; i < f->n_waiters; i++) {
		struct task *t = f->waiters[i].t;
		if (t->attempt != f->waiters[i].attempt || t->st != T_COLLECTING)
			continue;
		if (rc == 0) {
			output_arrived(j, t, f->waiters[i].attempt);
		} else {
			char text[200];
			snprintf(text, sizeof text, "collecting outputs failed: %s", why);
			task_lost(j, t, text);
		}
	}
	fetch_free(f);
}

static void fetch_start(struct jobs *j, struct task *t, const struct node *n, const uint8_t digest[SHA256_LEN],
			uint64_t size)
{
	struct fetch *f;
	for (f = j->fetches; f; f = f->next)
		if (!memcmp(f->digest, digest, SHA256_LEN) && !strcmp(f->node, n->id))
			break;
	if (!f) {
		f = xcalloc(1, sizeof *f);
		snprintf(f->node, sizeof f->node, "%s", n->id);
		memcpy(f->digest, digest, SHA256_LEN);
		f->size = size;
		int rc = blobstore_write_begin(j->env.blobs, digest, size, &f->w);
		if (rc) {
			free(f);
			task_attempt_failed(j, t, "output_error", "the manager cannot store the output");
			return;
		}
		f->next = j->fetches;
		j->fetches = f;
		fetch_pump(j, f);
	}
	f->waiters = xrealloc(f->waiters, (f->n_waiters + 1) * sizeof *f->waiters);
	f->waiters[f->n_waiters].t = t;
	f->waiters[f->n_waiters].attempt = t->attempt;
	f->n_waiters++;
}

static int on_blob_data(struct jobs *j, struct node *n, Seeswarm__V1__BlobData *b)
{
	struct fetch *f;
	for (f = j->fetches; f; f = f->next)
		if (!strcmp(f->node, n->id) && f->req_n > 0 && f->req_id[f->req_head] == b->request_id)
			break;
	if (!f)
		return 0; /* stale: a fetch that was abandoned */
	uint64_t off = f->req_off[f->req_head];
	f->req_head = (f->req_head + 1) % FETCH_WINDOW;
	f->req_n--;
	if (b->error) {
		char why[300];
		snprintf(why, sizeof why, "node %s: %s", n->id, b->message && *b->message ? b->message : "error");
		fetch_finish(j, f, SS_ENOTFOUND, why);
		return 0;
	}
	uint64_t want = f->size - off < FETCH_CHUNK ? f->size - off : FETCH_CHUNK;
	if (memcmp(b->digest.data, f->digest, SHA256_LEN) != 0 || b->offset != off ||
	    b->total != f->size || b->data.len != want) {
		fetch_finish(j, f, SS_EPROTO, "the agent answered with the wrong chunk");
		return 0;
	}
	int rc = blob_writer_write(f->w, b->data.data, b->data.len);
	if (rc) {
		fetch_finish(j, f, rc, "cannot write the blob");
		return 0;
	}
	f->received += b->data.len;
	if (f->received == f->size)
		fetch_finish(j, f, 0, NULL);
	else
		fetch_pump(j, f);
	return 0;
}

/* Abandons every fetch from a node (it went away). */
static void fetch_drop_node(struct jobs *j, const char *node_id)
{
	struct fetch *f = j->fetches;
	while (f) {
		struct fetch *next = f->next;
		if (!strcmp(f->node, node_id))
			fetch_finish(j, f, SS_ECLOSED, "the node went away");
		f = next;
	}
}

/* ---- messages from agents -------------------------------------------------------- */

static int on_blob_get(struct jobs *j, struct node *n, Seeswarm__V1__BlobGet *g)
{
	Seeswarm__V1__BlobData d = SEESWARM__V1__BLOB_DATA__INIT;
	struct blob_reader *r = NULL;
	uint8_t *buf = NULL;
	uint64_t size = 0;
	d.request_id = g->request_id;
	d.digest = g->digest;
	d.offset = g->offset;
	int rc = 0;
	/* Only what the manager sent this node to fetch: a dispatch or a replication. */
	if (j->env.grant_key &&
	    grant_check(&j->grants, j->env.grant_key, g->digest.data, n->id, g->grant.data, g->grant.len)) {
		char hex[2 * SHA256_LEN + 1];
		hex_encode(g->digest.data, SHA256_LEN, hex);
		j->blob_refused++;
		log_warn("jobs: %s asked for blob %.16s without a valid grant", n->id, hex);
		rc = SS_EAUTH;
	}
	if (rc == 0)
		rc = blobstore_read_open(j->env.blobs, g->digest.data, &r, &size);
	if (rc == 0 && g->offset > size)
		rc = SS_EINVAL;
	if (rc == 0 && g->offset > 0)
		rc = blob_reader_seek(r, g->offset);
	size_t total = 0;
	if (rc == 0) {
		uint64_t want = size - g->offset < g->length ? size - g->offset : g->length;
		buf = xmalloc(want ? want : 1);
		while (total < want) {
			size_t got = 0;
			rc = blob_reader_read(r, buf + total, want - total, &got);
			if (rc || got == 0)
				break;
			total += got;
		}
		if (rc == 0 && total != want)
			rc = SS_ETRUNC;
	}
	if (rc) {
		d.error = (uint32_t)-rc;
		d.message = (char *)(rc == SS_ENOTFOUND ? "the manager does not hold this blob"
				     : rc == SS_EAUTH  ? "no valid grant for this blob"
							: ss_strerror(rc));
		d.offset = 0;
		d.total = 0;
	} else {
		d.total = size;
		d.data.data = buf;
		d.data.len = total;
		j->blob_served++;
	}
	j->env.send(j->env.arg, n, MSG_BLOB_DATA, &d.base);
	blob_reader_close(r);
	free(buf);
	return 0;
}

static int on_started(struct jobs *j, struct node *n, Seeswarm__V1__TaskStarted *s)
{
	struct task *t = task_find(j, s->task_id);
	if (!t || t->attempt != s->attempt || strcmp(t->node, n->id) != 0 || t->st != T_PLACED)
		return 0;
	set_tstate(t, T_RUNNING);
	t->start_ms = s->start_ms > 0 ? s->start_ms : time_wall_ms();
	if (t->ready_ns) {
		j->lat_ns[j->lat_n % LAT_SAMPLES] = uv_hrtime() - t->ready_ns;
		j->lat_n++;
	}
	task_save(j, t);
	return 0;
}

static void save_result(struct jobs *j, const struct task *t, const struct node *n,
			const Seeswarm__V1__TaskResult *r)
{
	char key[100];
	snprintf(key, sizeof key, "%s.%u", t->id, r->attempt);
	char *out = printable_copy(r->stdout_tail.data, r->stdout_tail.len);
	char *err = printable_copy(r->stderr_tail.data, r->stderr_tail.len);
	char *rcpt = printable_copy(r->receipt.data, r->receipt.len);
	json_t *o = json_pack("{s:s,s:i,s:s,s:b,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "task", t->id,
			      "attempt", (int)r->attempt, "node", n->id, "ok", r->ok, "status",
			      r->status, "code", (int)r->code, "message", r->message ? r->message : "",
			      "stdout", out, "stderr", err, "receipt", rcpt, "cpu_ns",
			      (json_int_t)r->cpu_ns, "peak_memory_bytes",
			      (json_int_t)r->peak_memory_bytes, "start_ms", (json_int_t)r->start_ms,
			      "end_ms", (json_int_t)r->end_ms);
	free(out);
	free(err);
	free(rcpt);
	put_json(j, "results", key, o);
}

/* True when t's history records that its attempt ended on node (the manager ended it there). */
static bool ended_here(const struct task *t, uint32_t attempt, const char *node)
{
	for (size_t i = 0; i < t->n_hist; i++)
		if (t->hist[i].attempt == attempt && strcmp(t->hist[i].node, node) == 0)
			return true;
	return false;
}

static int on_result(struct jobs *j, struct node *n, Seeswarm__V1__TaskResult *r)
{
	struct task *t = task_find(j, r->task_id);
	j->results++;
	if (!t) {
		queue_ack(j, n, r->task_id, r->attempt);
		return 0;
	}
	bool current = t->attempt == r->attempt && !strcmp(t->node, n->id) &&
		       (t->st == T_PLACED || t->st == T_RUNNING);
	if (!current) {
		bool duplicate = t->attempt == r->attempt && !strcmp(t->node, n->id);
		if (duplicate && t->st == T_COLLECTING) {
			/* Sent again after a reconnect: collection restarts below from scratch. */
			t->collecting = 0;
		} else {
			if (!duplicate) {
				j->stale++;
				log_info("ignoring a stale result for %s attempt %u from %s (current attempt %u on %s, %s)",
					 r->task_id, r->attempt, n->id, t->attempt, t->node[0] ? t->node : "-",
					 tstate_names[t->st]);
				/*
				 * An attempt this manager ended there (cancelled,
				 * preempted, lost) keeps its record, for job logs:
				 * what a task printed in its kill_grace, say. It
				 * changes nothing else.
				 */
				if (ended_here(t, r->attempt, n->id))
					save_result(j, t, n, r);
			}
			queue_ack(j, n, r->task_id, r->attempt);
			return 0;
		}
	}
	save_result(j, t, n, r);
	snprintf(t->status, sizeof t->status, "%s", r->status);
	t->code = r->code;
	if (r->start_ms)
		t->start_ms = r->start_ms;
	/* A run of at most a year: an agent's clock cannot make one attempt cost more. */
	if (r->start_ms > 0 && r->end_ms > r->start_ms && r->end_ms - r->start_ms < 366ll * 86400 * 1000)
		t->run_ms = (uint64_t)(r->end_ms - r->start_ms);
	t->cpu_ms = r->cpu_ns / 1000000u;
	if (!r->ok) {
		char why[300];
		snprintf(why, sizeof why, "%s%s%s", r->status, r->message && *r->message ? ": " : "",
			 r->message ? r->message : "");
		if (!strcmp(r->status, "refused")) {
			/* The agent could not take it: not the task's fault. */
			task_backoff(j, t, false, why);
		} else if (!strcmp(r->status, "input_error")) {
			/*
			 * Its inputs could not be fetched: their holder may be
			 * back soon, or lineage makes them again.
			 */
			task_backoff(j, t, true, why);
		} else if (!strcmp(r->status, "signaled") && r->message &&
			   !strncmp(r->message, MSG_CANCELLED_PREFIX, strlen(MSG_CANCELLED_PREFIX))) {
			/*
			 * A cancel stopped the attempt the store still holds as
			 * running: a manager sent it (a preemption, a job cancel)
			 * and crashed before the commit that recorded why. Not
			 * the task's fault; it runs again, using no retry.
			 */
			log_info("task %s (%s) attempt %u was cancelled by a cancel this manager has no "
				 "record of; it runs again", t->id, spec_of(t)->name, t->attempt);
			task_requeue(j, t, "cancelled", why);
		} else {
			task_attempt_failed(j, t, r->status, why);
		}
		queue_ack(j, n, r->task_id, r->attempt);
		return 0;
	}
	/*
	 * Every declared output must be there. Undeclared files (a task that
	 * declares none gets every file below /out collected) are not kept.
	 */
	const struct jobspec_task *s = spec_of(t);
	char why[300] = "";
	for (size_t i = 0; !why[0] && i < s->n_outputs; i++) {
		size_t k;
		for (k = 0; k < r->n_outputs; k++)
			if (!strcmp(r->outputs[k]->name, s->outputs[i]))
				break;
		if (k == r->n_outputs)
			snprintf(why, sizeof why, "declared output %s is missing", s->outputs[i]);
	}
	for (size_t k = 0; !why[0] && k < r->n_outputs; k++) {
		const Seeswarm__V1__TaskOutput *o = r->outputs[k];
		if (o->size <= MSG_MAX_INLINE && o->data.len != o->size)
			snprintf(why, sizeof why, "output %s should be inline", o->name);
	}
	if (why[0]) {
		task_attempt_failed(j, t, "output_error", why);
		queue_ack(j, n, r->task_id, r->attempt);
		return 0;
	}
	release(j, t);
	uses_of_outs(j, t, false);
	outs_free(t);
	t->outs = s->n_outputs ? xcalloc(s->n_outputs, sizeof *t->outs) : NULL;
	t->n_outs = s->n_outputs;
	set_tstate(t, T_COLLECTING);
	t->collecting = 1; /* held until every fetch has been started */
	for (size_t i = 0; i < s->n_outputs; i++) {
		const Seeswarm__V1__TaskOutput *o = NULL;
		for (size_t k = 0; k < r->n_outputs; k++)
			if (!strcmp(r->outputs[k]->name, s->outputs[i]))
				o = r->outputs[k];
		t->outs[i].name = xstrdup(s->outputs[i]);
		memcpy(t->outs[i].digest, o->digest.data, SHA256_LEN);
		t->outs[i].size = o->size;
		use_add(j, t->outs[i].digest, t->job);
		if (blobstore_has(j->env.blobs, o->digest.data, NULL))
			continue;
		if (o->size <= MSG_MAX_INLINE) {
			struct blob_writer *w = NULL;
			int rc = blobstore_write_begin(j->env.blobs, o->digest.data, o->size, &w);
			if (rc == 0)
				rc = blob_writer_write(w, o->data.data, o->data.len);
			if (rc == 0)
				rc = blob_writer_commit(w, NULL);
			else
				blob_writer_abort(w);
			if (rc) {
				snprintf(why, sizeof why, "output %s: %s", o->name,
					 rc == SS_EINTEGRITY ? "its data does not match its digest"
							     : ss_strerror(rc));
				t->collecting = 0;
				task_attempt_failed(j, t, "output_error", why);
				queue_ack(j, n, r->task_id, r->attempt);
				return 0;
			}
			continue;
		}
		/*
		 * An intermediate output stays on the agent that made it (and any
		 * replicas): consumers fetch it from there, and lineage re-runs
		 * this task if every copy is lost first. Final outputs, and those
		 * of agents without a peer endpoint, are collected.
		 */
		if (!s->final && n->advertise[0])
			continue;
		t->collecting++;
		fetch_start(j, t, n, o->digest.data, o->size);
		if (t->st != T_COLLECTING)
			break; /* the fetch could not start and failed the attempt */
	}
	if (t->st == T_COLLECTING) {
		task_save(j, t);
		output_arrived(j, t, t->attempt); /* drops the hold; may succeed at once */
	} else {
		queue_ack(j, n, r->task_id, r->attempt);
	}
	return 0;
}

int jobs_on_message(struct jobs *j, struct node *n, uint16_t type, ProtobufCMessage *msg)
{
	int rc = 0;
	switch (type) {
	case MSG_TASK_STARTED:
		rc = on_started(j, n, (Seeswarm__V1__TaskStarted *)msg);
		break;
	case MSG_TASK_RESULT:
		rc = on_result(j, n, (Seeswarm__V1__TaskResult *)msg);
		break;
	case MSG_BLOB_GET:
		rc = on_blob_get(j, n, (Seeswarm__V1__BlobGet *)msg);
		break;
	case MSG_BLOB_DATA:
		rc = on_blob_data(j, n, (Seeswarm__V1__BlobData *)msg);
		break;
	case MSG_BLOB_STORED:
		replicas_on_stored(j->repl, n, (const Seeswarm__V1__BlobStored *)msg);
		break;
	case MSG_BLOB_INVENTORY:
		replicas_on_inventory(j->repl, n, (const Seeswarm__V1__BlobInventory *)msg);
		break;
	case MSG_TASK_LOG:
		on_task_log(j, n, (const Seeswarm__V1__TaskLog *)msg);
		break;
	default:
		rc = SS_EPROTO;
	}
	msg_free(msg);
	return rc;
}

/* ---- node events ------------------------------------------------------------------ */

void jobs_node_changed(struct jobs *j, struct node *n)
{
	sched_sync(j, n);
	replicas_node_changed(j->repl, n);
	/*
	 * A node's tasks are lost when it is down, left, evicted or rejected, or
	 * drained. A ready node without a live session is in its admission
	 * window (the session commits its admission after this call) or in the
	 * reconnection window after a manager restart: its tasks stay until the
	 * agent's Hello reconciles them or the node goes suspect and then down.
	 */
	bool gone = (n->state != NODE_READY && n->state != NODE_SUSPECT) || n->draining;
	if (gone) {
		char why[400];
		snprintf(why, sizeof why, "node %s is %s%s%s", n->id, node_display_state(n),
			 n->reason[0] ? ": " : "", n->reason);
		fetch_drop_node(j, n->id);
		struct task *t = j->active;
		while (t) {
			struct task *next = t->act_next;
			if (!strcmp(t->node, n->id))
				task_lost(j, t, why);
			t = next;
		}
	}
	kick(j);
}

void jobs_node_admitted(struct jobs *j, struct node *n, Seeswarm__V1__TaskRef *const *refs,
			size_t n_refs)
{
	sched_sync(j, n);
	replicas_node_changed(j->repl, n); /* a possible repair target */
	n->peers_sent = 0; /* a new session: its peer list goes out again */
	struct task *t = j->active;
	while (t) {
		struct task *next = t->act_next;
		if (!strcmp(t->node, n->id)) {
			bool known = false;
			for (size_t i = 0; i < n_refs && !known; i++)
				known = refs[i]->attempt == t->attempt && !strcmp(refs[i]->task_id, t->id);
			if (!known) {
				task_lost(j, t, "the agent restarted without it");
			} else {
				if (t->st == T_COLLECTING) {
					/* The agent sends the result again; collect from scratch. */
					set_tstate(t, T_RUNNING);
					t->collecting = 0;
				}
				if (!t->sn) {
					const struct jobspec_task *s = spec_of(t);
					t->sn = sched_node_find(j->sched, n->id);
					if (t->sn)
						sched_reserve(j->sched, t->sn, s->res.cpu_millicores,
							      s->res.memory_bytes, s->res.disk_bytes);
					if (t->sn && !t->charged) {
						/* It was collecting: it runs again and counts again. */
						sched_queue_charge(j->queue, t->job->spec->tenant,
								   s->res.cpu_millicores);
						t->charged = true;
					}
				}
			}
		}
		t = next;
	}
	/* Collections from before the reconnect are void; the results come again. */
	fetch_drop_node(j, n->id);
	kick(j);
}

/* ---- jobs: creation and loading -------------------------------------------------- */

static void job_build(struct job *jb)
{
	const struct jobspec *js = jb->spec;
	size_t n = js->n_tasks;
	jb->tasks = xcalloc(n ? n : 1, sizeof *jb->tasks);
	jb->dep_off = xcalloc(n + 1, sizeof *jb->dep_off);
	size_t edges = 0;
	for (size_t i = 0; i < n; i++)
		edges += js->tasks[i].n_deps;
	jb->dep_idx = xcalloc(edges ? edges : 1, sizeof *jb->dep_idx);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < js->tasks[i].n_deps; k++)
			jb->dep_off[js->tasks[i].deps[k] + 1]++;
	for (size_t i = 0; i < n; i++)
		jb->dep_off[i + 1] += jb->dep_off[i];
	uint32_t *fill = xcalloc(n ? n : 1, sizeof *fill);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < js->tasks[i].n_deps; k++) {
			uint32_t d = js->tasks[i].deps[k];
			jb->dep_idx[jb->dep_off[d] + fill[d]++] = (uint32_t)i;
		}
	free(fill);
	for (size_t i = 0; i < n; i++) {
		struct task *t = &jb->tasks[i];
		t->job = jb;
		t->idx = (uint32_t)i;
		snprintf(t->id, sizeof t->id, "%s.%zu", jb->id, i);
		t->st = T_PENDING;
		t->waiting = (uint32_t)js->tasks[i].n_deps;
	}
	jb->counts[T_PENDING] = n;
}

static void live_drop(struct jobs *j, struct live *l);

static void job_free(struct jobs *j, struct job *jb)
{
	if (!jb)
		return;
	for (size_t i = 0; jb->spec && i < jb->spec->n_tasks; i++) {
		outs_free(&jb->tasks[i]);
		free(jb->tasks[i].hist);
		if (jb->tasks[i].live)
			live_drop(j, jb->tasks[i].live);
	}
	free(jb->tasks);
	free(jb->dep_off);
	free(jb->dep_idx);
	jobspec_free(jb->spec);
	free(jb->spec_text);
	free(jb->launcher);
	free(jb);
}

static int tstate_parse(const char *s, enum tstate *out)
{
	for (int i = 0; i < T_STATE_COUNT; i++)
		if (s && !strcmp(s, tstate_names[i])) {
			*out = (enum tstate)i;
			return 0;
		}
	return SS_EPARSE;
}

static int load_task_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct jobs *j = arg;
	struct task *t = task_find(j, key);
	json_error_t err;
	json_t *o = t ? json_loadb(value, len, 0, &err) : NULL;
	enum tstate st;
	if (!o || tstate_parse(json_string_value(json_object_get(o, "st")), &st) != 0) {
		if (t)
			log_error("store: task record %s is corrupt; it stays pending", key);
		json_decref(o);
		return 0;
	}
	t->job->counts[t->st]--;
	t->st = st;
	t->job->counts[st]++;
	t->attempt = (uint32_t)json_integer_value(json_object_get(o, "attempt"));
	t->failures = (uint32_t)json_integer_value(json_object_get(o, "failures"));
	t->lost = (uint32_t)json_integer_value(json_object_get(o, "lost"));
	snprintf(t->node, sizeof t->node, "%s", json_string_value(json_object_get(o, "node")) ?: "");
	snprintf(t->status, sizeof t->status, "%s", json_string_value(json_object_get(o, "status")) ?: "");
	snprintf(t->reason, sizeof t->reason, "%s", json_string_value(json_object_get(o, "reason")) ?: "");
	t->code = (int32_t)json_integer_value(json_object_get(o, "code"));
	t->start_ms = json_integer_value(json_object_get(o, "start_ms"));
	t->end_ms = json_integer_value(json_object_get(o, "end_ms"));
	t->retry_at_ms = json_integer_value(json_object_get(o, "retry_at_ms"));
	t->rate = json_number_value(json_object_get(o, "rate"));
	t->run_ms = (uint64_t)json_integer_value(json_object_get(o, "run_ms"));
	t->cpu_ms = (uint64_t)json_integer_value(json_object_get(o, "cpu_ms"));
	json_t *outs = json_object_get(o, "outputs");
	size_t n_outs = json_array_size(outs);
	if (n_outs) {
		t->outs = xcalloc(n_outs, sizeof *t->outs);
		for (size_t i = 0; i < n_outs; i++) {
			json_t *e = json_array_get(outs, i);
			const char *name = json_string_value(json_object_get(e, "name"));
			const char *hex = json_string_value(json_object_get(e, "digest"));
			if (!name || !hex || hex_decode(hex, t->outs[t->n_outs].digest, SHA256_LEN) != 0)
				continue;
			t->outs[t->n_outs].name = xstrdup(name);
			t->outs[t->n_outs].size = (uint64_t)json_integer_value(json_object_get(e, "size"));
			use_add(j, t->outs[t->n_outs].digest, t->job);
			t->n_outs++;
		}
	}
	json_t *hist = json_object_get(o, "history");
	for (size_t i = 0; i < json_array_size(hist) && i < 1000; i++) {
		json_t *e = json_array_get(hist, i);
		t->hist = xrealloc(t->hist, (t->n_hist + 1) * sizeof *t->hist);
		struct attempt_rec *h = &t->hist[t->n_hist++];
		memset(h, 0, sizeof *h);
		h->attempt = (uint32_t)json_integer_value(json_object_get(e, "attempt"));
		snprintf(h->node, sizeof h->node, "%s", json_string_value(json_object_get(e, "node")) ?: "");
		snprintf(h->outcome, sizeof h->outcome, "%s", json_string_value(json_object_get(e, "outcome")) ?: "");
		snprintf(h->reason, sizeof h->reason, "%s", json_string_value(json_object_get(e, "reason")) ?: "");
		h->start_ms = json_integer_value(json_object_get(e, "start_ms"));
		h->end_ms = json_integer_value(json_object_get(e, "end_ms"));
		h->run_ms = (uint64_t)json_integer_value(json_object_get(e, "run_ms"));
		h->cpu_ms = (uint64_t)json_integer_value(json_object_get(e, "cpu_ms"));
		h->cost = json_number_value(json_object_get(e, "cost"));
		usage_add(&t->job->usage, h);
	}
	json_decref(o);
	return 0;
}

static int job_state_parse(const char *s, enum jstate *out)
{
	for (size_t i = 0; i < ARRAY_LEN(jstate_names); i++)
		if (s && !strcmp(s, jstate_names[i])) {
			*out = (enum jstate)i;
			return 0;
		}
	return SS_EPARSE;
}

static void template_load(struct jobs *j, struct job *jb, const json_t *o);

static int load_job_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct jobs *j = arg;
	json_error_t err;
	json_t *o = json_loadb(value, len, 0, &err);
	const char *spec = json_string_value(json_object_get(o, "spec"));
	enum jstate st;
	char why[512];
	struct jobspec *js = NULL;
	if (!o || !spec || strlen(key) >= sizeof ((struct job *)0)->id ||
	    job_state_parse(json_string_value(json_object_get(o, "state")), &st) != 0 ||
	    jobspec_parse(spec, json_string_length(json_object_get(o, "spec")), 0, &js, why, sizeof why) != 0 ||
	    (st == J_PERIODIC) != (js->periodic.set && st != J_CANCELED) ||
	    (st == J_PARAMETERIZED) != (js->param.set && st != J_CANCELED)) {
		log_error("store: job record %s is corrupt; skipped", key);
		jobspec_free(js);
		json_decref(o);
		return 0;
	}
	const char *tenant = json_string_value(json_object_get(o, "tenant"));
	if (tenant && ident_valid(tenant)) {
		free(js->tenant);
		js->tenant = xstrdup(tenant);
	}
	struct job *jb = xcalloc(1, sizeof *jb);
	snprintf(jb->id, sizeof jb->id, "%s", key);
	jb->spec = js;
	jb->spec_len = json_string_length(json_object_get(o, "spec"));
	jb->spec_text = xmalloc(jb->spec_len + 1);
	memcpy(jb->spec_text, spec, jb->spec_len + 1);
	jb->st = st;
	jb->created_ms = json_integer_value(json_object_get(o, "created_ms"));
	jb->finished_ms = json_integer_value(json_object_get(o, "finished_ms"));
	snprintf(jb->reason, sizeof jb->reason, "%s", json_string_value(json_object_get(o, "reason")) ?: "");
	snprintf(jb->parent, sizeof jb->parent, "%s", json_string_value(json_object_get(o, "parent")) ?: "");
	job_build(jb);
	if (js->periodic.set || js->param.set)
		template_load(j, jb, json_object_get(o, "launcher"));
	job_index(j, jb);
	uses_of_job(j, jb, true);
	json_decref(o);
	return 0;
}

/* After loading: recompute waits and put every task where it belongs. */
static void job_resume(struct jobs *j, struct job *jb)
{
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		struct task *t = &jb->tasks[i];
		const struct jobspec_task *s = spec_of(t);
		t->waiting = 0;
		for (size_t k = 0; k < s->n_deps; k++)
			if (jb->tasks[s->deps[k]].st != T_SUCCEEDED)
				t->waiting++;
		if (jb->st != J_RUNNING)
			continue;
		switch (t->st) {
		case T_PENDING:
			if (t->waiting == 0)
				enqueue(j, t);
			break;
		case T_PLACED:
		case T_RUNNING:
		case T_COLLECTING:
			/* Waits for its node: it reports it in its Hello, or is declared down. */
			if (t->st == T_COLLECTING)
				set_tstate(t, T_RUNNING);
			/* It counts toward its tenant's share and cap as when it was popped. */
			sched_queue_charge(j->queue, jb->spec->tenant, spec_of(t)->res.cpu_millicores);
			t->charged = true;
			active_add(j, t);
			break;
		case T_RETRYING:
			t->in_retry = true;
			t->retry_next = j->retrying;
			j->retrying = t;
			break;
		default:
			break;
		}
	}
	job_check_done(j, jb);
}

/* Loads one tenant's usage totals; a corrupt record starts that tenant from zero. */
static int load_usage_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct jobs *j = arg;
	json_t *o = json_loadb(value, len, 0, NULL);
	if (!json_is_object(o)) {
		log_error("store: usage record of tenant %s is corrupt; its totals start again", key);
		json_decref(o);
		return 0;
	}
	json_object_set_new(j->tenant_usage, key, o);
	return 0;
}

int jobs_new(struct jobs **out, const struct jobs_env *env, uint64_t seed)
{
	struct jobs *j = xcalloc(1, sizeof *j);
	j->env = *env;
	struct sched_opts so = {.seed = seed};
	j->sched = sched_new(&so);
	j->queue = sched_queue_new();
	j->nbuckets = 1024;
	j->buckets = xcalloc(j->nbuckets, sizeof *j->buckets);
	j->uses = xcalloc(USE_BUCKETS, sizeof *j->uses);
	/* Command tasks run with the agent's empty bundle (mode 0755): its canonical listing. */
	static const char empty[] = "seeswarm-bundle-v1 0755\n";
	sha256(empty, sizeof empty - 1, j->empty_bundle);
	uv_idle_init(env->loop, &j->kick);
	j->kick.data = j;
	j->retention_ms = DEFAULT_RETENTION_MS;
	j->tenant_max_jobs = JOBS_TENANT_MAX_JOBS;
	uv_timer_init(env->loop, &j->retry_timer);
	j->retry_timer.data = j;
	uv_timer_start(&j->retry_timer, on_retry_timer, RETRY_TICK_MS, RETRY_TICK_MS);
	struct replicas_env re = {.arg = env->arg, .store = env->store, .reg = env->reg,
				  .blobs = env->blobs, .send = env->send, .connected = env->connected,
				  .grant_key = env->grant_key, .may_hold = may_hold, .may_hold_arg = j};
	j->tenant_usage = json_object();
	/* Indexes given after a restart are larger than those before it (unless the clock went back). */
	j->index_seq = (uint64_t)time_wall_ms() * 1000u;
	int rc = replicas_new(&j->repl, &re);
	if (rc == 0)
		rc = store_scan(env->store, "usage", load_usage_cb, j);
	if (rc == 0)
		rc = store_scan(env->store, "jobs", load_job_cb, j);
	if (rc == 0)
		rc = store_scan(env->store, "tasks", load_task_cb, j);
	if (rc) {
		log_error("jobs: cannot read jobs from the store");
		*out = j;
		return rc;
	}
	size_t resumed = 0;
	for (struct job *jb = j->all; jb; jb = jb->next) {
		jb->index = ++j->index_seq;
		job_protect(j, jb, true);
		job_resume(j, jb);
		resumed += jb->st == J_RUNNING;
	}
	if (j->n_jobs)
		log_info("jobs: recovered %zu jobs from the store (%zu still running)", j->n_jobs, resumed);
	*out = j;
	return 0;
}

void jobs_free(struct jobs *j)
{
	if (!j)
		return;
	struct ack *a = j->acks;
	j->acks = NULL;
	while (a) {
		struct ack *next = a->next;
		free(a);
		a = next;
	}
	while (j->fetches) {
		struct fetch *f = j->fetches;
		j->fetches = f->next;
		fetch_free(f);
	}
	struct job *jb = j->all;
	while (jb) {
		struct job *next = jb->next;
		job_free(j, jb);
		jb = next;
	}
	sched_queue_free(j->queue);
	sched_free(j->sched);
	replicas_free(j->repl);
	free(j->buckets);
	for (size_t b = 0; j->uses && b < USE_BUCKETS; b++) {
		while (j->uses[b]) {
			struct use *u = j->uses[b];
			j->uses[b] = u->next;
			free(u);
		}
	}
	free(j->uses);
	json_decref(j->tenant_usage);
	free(j);
}

/* ---- API ----------------------------------------------------------------------------- */

/*
 * Writes why a queued task waits for its tenant's cap into buf and returns
 * buf, or returns t->reason when the cap does not hold it back.
 */
static const char *reason_of(const struct jobs *j, const struct task *t, char *buf, size_t len)
{
	const char *tenant = t->job->spec->tenant;
	if (!t->queued || !sched_queue_held(j->queue, tenant))
		return t->reason;
	snprintf(buf, len, "held: tenant %s runs %llum of the %llum it may run at once (--tenant-max-cpu)",
		 tenant, (unsigned long long)sched_queue_running(j->queue, tenant),
		 (unsigned long long)sched_queue_cap(j->queue, tenant));
	return buf;
}

static json_t *task_json(const struct jobs *j, const struct task *t, bool full)
{
	const struct jobspec_task *s = spec_of(t);
	char held[200];
	json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "id", t->id, "name", s->name, "state",
			      tstate_names[t->st], "attempt", (int)t->attempt, "node", t->node, "reason",
			      reason_of(j, t, held, sizeof held));
	if (t->status[0]) {
		json_object_set_new(o, "status", json_string(t->status));
		json_object_set_new(o, "code", json_integer(t->code));
	}
	if (t->start_ms)
		json_object_set_new(o, "start_ms", json_integer(t->start_ms));
	if (t->end_ms)
		json_object_set_new(o, "end_ms", json_integer(t->end_ms));
	if (t->n_outs)
		json_object_set_new(o, "outputs", outs_json(t));
	if (s->final)
		json_object_set_new(o, "final", json_true());
	struct usage u = {0};
	for (size_t i = 0; i < t->n_hist; i++)
		usage_add(&u, &t->hist[i]);
	json_object_set_new(o, "usage", usage_json(&u));
	if (full) {
		json_object_set_new(o, "history", hist_json(t));
		json_object_set_new(o, "failures", json_integer(t->failures));
		json_object_set_new(o, "lost", json_integer(t->lost));
	}
	return o;
}

/* The first launch time of ps strictly after after_ms ("every" counts from anchor_ms). */
static int64_t next_launch(const struct jobspec_periodic *ps, int64_t anchor_ms, int64_t after_ms)
{
	if (ps->every_ms) {
		int64_t every = (int64_t)ps->every_ms;
		if (after_ms < anchor_ms)
			after_ms = anchor_ms;
		return anchor_ms + ((after_ms - anchor_ms) / every + 1) * every;
	}
	int64_t n;
	/* cron_parse() accepted only schedules that match within any 50 years. */
	return cron_next(&ps->cron, after_ms, &n) == 0 ? n : INT64_MAX;
}

/* The schedule as JSON: {"cron"} or {"every_ms"}, and "prohibit_overlap". */
static json_t *periodic_spec_json(const struct jobspec_periodic *ps)
{
	json_t *o = json_object();
	if (ps->every_ms)
		json_object_set_new(o, "every_ms", json_integer((json_int_t)ps->every_ms));
	else
		json_object_set_new(o, "cron", json_string(ps->cron_text));
	json_object_set_new(o, "time_zone", json_string("UTC"));
	json_object_set_new(o, "prohibit_overlap", json_boolean(ps->prohibit_overlap));
	return o;
}

static json_t *job_json(struct jobs *j, const struct job *jb)
{
	json_t *counts = json_object();
	for (int i = 0; i < T_STATE_COUNT; i++)
		if (jb->counts[i])
			json_object_set_new(counts, tstate_names[i], json_integer((json_int_t)jb->counts[i]));
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:s}", "id", jb->id, "name",
			      jb->spec->name, "tenant", jb->spec->tenant, "state", jstate_names[jb->st],
			      "created_ms", (json_int_t)jb->created_ms, "finished_ms",
			      (json_int_t)jb->finished_ms, "tasks_total", (json_int_t)jb->spec->n_tasks,
			      "counts", counts, "reason", jb->reason);
	json_t *finals = json_array();
	for (size_t i = 0; i < jb->spec->n_tasks; i++) {
		const struct task *t = &jb->tasks[i];
		if (!spec_of(t)->final || t->st != T_SUCCEEDED)
			continue;
		for (size_t k = 0; k < t->n_outs; k++) {
			char hex[65];
			hex_encode(t->outs[k].digest, SHA256_LEN, hex);
			json_array_append_new(finals, json_pack("{s:s,s:s,s:s,s:s,s:I}", "task", t->id,
								"task_name", spec_of(t)->name, "name",
								t->outs[k].name, "digest", hex, "size",
								(json_int_t)t->outs[k].size));
		}
	}
	json_object_set_new(o, "results", finals);
	json_object_set_new(o, "usage", usage_json(&jb->usage));
	json_object_set_new(o, "index", json_integer((json_int_t)jb->index));
	if (jb->spec->timeout_ms)
		json_object_set_new(o, "timeout_ms", json_integer((json_int_t)jb->spec->timeout_ms));
	if (jb->spec->max_cost > 0)
		json_object_set_new(o, "max_cost", json_real(jb->spec->max_cost));
	if (jb->parent[0])
		json_object_set_new(o, "parent", json_string(jb->parent));
	if (jb->launcher) {
		const struct launcher *per = jb->launcher;
		const struct jobspec_param *par = &jb->spec->param;
		json_t *p = par->set ? json_object() : periodic_spec_json(&jb->spec->periodic);
		if (par->set) {
			static const char *const payloads[] = {"optional", "required", "forbidden"};
			json_t *req = json_array(), *opt = json_array();
			for (size_t i = 0; i < par->n_required; i++)
				json_array_append_new(req, json_string(par->meta_required[i]));
			for (size_t i = 0; i < par->n_optional; i++)
				json_array_append_new(opt, json_string(par->meta_optional[i]));
			json_object_set_new(p, "meta_required", req);
			json_object_set_new(p, "meta_optional", opt);
			json_object_set_new(p, "payload", json_string(payloads[par->payload]));
		}
		if (jb->st == J_PERIODIC)
			json_object_set_new(p, "next_launch_ms", json_integer(per->next_ms));
		json_object_set_new(p, "launched", json_integer((json_int_t)per->launched));
		json_object_set_new(p, "skipped", json_integer((json_int_t)per->skipped));
		json_object_set_new(p, "refused", json_integer((json_int_t)per->refused));
		if (per->last_skip_ms)
			json_object_set_new(p, "last_skip", json_pack("{s:I,s:s}", "at_ms", (json_int_t)per->last_skip_ms,
								      "reason", per->last_skip));
		json_t *a = json_array();
		for (size_t i = 0; i < per->n_recent; i++) {
			const struct job *c = job_find(j, per->recent[i].id);
			json_array_append_new(a, json_pack("{s:s,s:I,s:b,s:s}", "id", per->recent[i].id, "at_ms",
							   (json_int_t)per->recent[i].at_ms, "forced",
							   per->recent[i].forced, "state",
							   c ? jstate_names[c->st] : "forgotten"));
		}
		json_object_set_new(p, "launches", a);
		json_object_set_new(o, par->set ? "parameterized" : "periodic", p);
	}
	return o;
}

static void new_job_id(char out[32])
{
	uint8_t r[6];
	char hex[13];
	rand_bytes(r, sizeof r);
	hex_encode(r, sizeof r, hex);
	snprintf(out, 32, "j-%s", hex);
}

/*
 * The checks of a submission: parses spec and checks it against the tenant
 * (tenant NULL: the admin), the tenant's quotas and budget, the nodes, the
 * uploaded blobs and the policy's code list. Returns 0 with *out = the parsed
 * spec (the caller owns it), or an error with a precise message in why.
 *
 * With plan (jobs_plan), the refusals that depend on the moment rather than
 * on the spec (the tenant's job quota and budget, the manager's job limit, a
 * blob not uploaded yet) are appended to plan->warnings instead, and the
 * checks go on.
 */
struct plan_notes {
	json_t *warnings; /* array of strings */
};

/*
 * A refusal that depends on the moment: rc for a submission; for a plan,
 * why becomes a warning and the checks go on (0).
 */
static int refuse_or_warn(struct plan_notes *plan, int rc, const char *why)
{
	if (!plan)
		return rc;
	json_array_append_new(plan->warnings, json_string(why));
	return 0;
}

static int spec_check(struct jobs *j, const char *spec, size_t len, const char *tenant,
		      struct plan_notes *plan, struct jobspec **out, char *why, size_t whylen)
{
	struct jobspec *js = NULL;
	*out = NULL;
	int rc = jobspec_parse(spec, len, 0, &js, why, whylen);
	if (rc)
		goto out;
	if (tenant && strcmp(js->tenant, tenant) != 0) {
		if (js->tenant_given) {
			snprintf(why, whylen,
				 "tenant: this token belongs to tenant \"%s\"; a job of tenant \"%s\" needs "
				 "that tenant's token (or leave \"tenant\" out)",
				 tenant, js->tenant);
			rc = SS_EPERM;
			goto out;
		}
		free(js->tenant);
		js->tenant = xstrdup(tenant);
	}
	if (tenant) {
		uint32_t running = 0;
		for (const struct job *jb = j->all; jb; jb = jb->next)
			running += (jb->st == J_RUNNING || is_template(jb)) && !strcmp(jb->spec->tenant, tenant);
		if (running >= j->tenant_max_jobs) {
			snprintf(why, whylen,
				 "tenant %s has %u unfinished jobs, its quota (--tenant-max-jobs); wait for "
				 "some to finish or cancel them",
				 tenant, running);
			if ((rc = refuse_or_warn(plan, SS_EQUOTA, why)) != 0)
				goto out;
		}
		enum jobs_budget_period per;
		double budget = tenant_max_cost(j, tenant, &per);
		double spent = budget > 0 ? tenant_spent(j, tenant, per) : 0;
		if (budget > 0 && spent >= budget) {
			char a[32], b[32], next[64] = "";
			format_amount(spent, a);
			format_amount(budget, b);
			time_t end = (time_t)(period_end_ms(per, time_wall_ms()) / 1000);
			struct tm tm;
			if (per != JOBS_BUDGET_TOTAL && gmtime_r(&end, &tm))
				strftime(next, sizeof next, " or the next period (from %Y-%m-%d 00:00 UTC)", &tm);
			snprintf(why, whylen,
				 "tenant %s has spent %s of the %s it may spend%s (--tenant-max-cost); its running "
				 "jobs go on, new ones need a larger budget%s",
				 tenant, a, b,
				 per == JOBS_BUDGET_DAY ? " today" : per == JOBS_BUDGET_MONTH ? " this month" : "",
				 next);
			if ((rc = refuse_or_warn(plan, SS_EQUOTA, why)) != 0)
				goto out;
		}
	}
	if (j->n_jobs >= MAX_JOBS) {
		snprintf(why, whylen, "the manager holds %u jobs, its limit", MAX_JOBS);
		if ((rc = refuse_or_warn(plan, SS_ELIMIT, why)) != 0)
			goto out;
	}
	if (js->periodic.set && j->n_periodic >= MAX_PERIODIC) {
		snprintf(why, whylen, "the manager has %u periodic jobs, its limit; stop some (job cancel)",
			 MAX_PERIODIC);
		if ((rc = refuse_or_warn(plan, SS_ELIMIT, why)) != 0)
			goto out;
	}
	/* The largest node that is or was admitted bounds what any task may ask for. */
	struct jobspec_limits lim = {0};
	size_t nn = 0;
	struct node **v = registry_sorted(j->env.reg, &nn);
	bool any = false;
	for (size_t i = 0; i < nn; i++) {
		if (v[i]->state == NODE_REJECTED || v[i]->state == NODE_LEFT || v[i]->cpu_cores == 0)
			continue;
		any = true;
		if (v[i]->cpu_cores * 1000u > lim.cpu_millicores)
			lim.cpu_millicores = v[i]->cpu_cores * 1000u;
		if (v[i]->memory_bytes > lim.memory_bytes)
			lim.memory_bytes = v[i]->memory_bytes;
		if (v[i]->disk_bytes > lim.disk_bytes)
			lim.disk_bytes = v[i]->disk_bytes;
	}
	free(v);
	if (any && (rc = jobspec_check_fits(js, &lim, why, whylen)) != 0)
		goto out;
	uint64_t cap = sched_queue_cap(j->queue, js->tenant);
	for (size_t gi = 0; cap && gi < js->n_groups; gi++) {
		/* A task larger than its tenant's cap could never start. */
		const struct jobspec_task *s = &js->tasks[js->groups[gi].first];
		if (s->res.cpu_millicores > cap) {
			snprintf(why, whylen,
				 "tasks[%zu] (%s).resources.cpu: %um exceeds what tenant %s may run at once "
				 "(%llum, --tenant-max-cpu)",
				 gi, s->name, s->res.cpu_millicores, js->tenant, (unsigned long long)cap);
			rc = SS_EINVAL;
			goto out;
		}
	}
	for (size_t i = 0; i < js->n_tasks; i++) {
		const struct jobspec_task *s = &js->tasks[i];
		for (size_t k = 0; k < s->n_inputs; k++) {
			/* Another tenant's blob is answered as if it had never been uploaded. */
			if (s->inputs[k].kind != JOBSPEC_IN_BLOB ||
			    (blobstore_has(j->env.blobs, s->inputs[k].digest, NULL) &&
			     jobs_blob_visible(j, s->inputs[k].digest, tenant)))
				continue;
			char hex[65];
			hex_encode(s->inputs[k].digest, SHA256_LEN, hex);
			snprintf(why, whylen,
				 "task %s, input \"%s\": blob %s has not been uploaded (PUT /v1/blobs/%s, or give a \"file\" to the CLI)",
				 s->name, s->inputs[k].name, hex, hex);
			if ((rc = refuse_or_warn(plan, SS_EINVAL, why)) != 0)
				goto out;
		}
	}
	for (size_t i = 0; i < js->n_tasks; i++) {
		const struct jobspec_task *s = &js->tasks[i];
		char hex[65];
		if (s->has_bundle && (!blobstore_has(j->env.blobs, s->bundle_blob, NULL) ||
				      !jobs_blob_visible(j, s->bundle_blob, tenant))) {
			hex_encode(s->bundle_blob, SHA256_LEN, hex);
			snprintf(why, whylen,
				 "task %s: bundle blob %s has not been uploaded (PUT /v1/blobs/%s, or give {\"file\": PATH} to the CLI)",
				 s->name, hex, hex);
			if ((rc = refuse_or_warn(plan, SS_EINVAL, why)) != 0)
				goto out;
		}
		/* Every task's code must be allowed: its bundle, or the empty bundle of a command task. */
		const uint8_t *code = s->has_bundle ? s->bundle_digest : j->empty_bundle;
		bool ok = js->policy.n_code == 0;
		for (size_t k = 0; k < js->policy.n_code && !ok; k++)
			ok = !memcmp(js->policy.code[k], code, SHA256_LEN);
		if (!ok) {
			hex_encode(code, SHA256_LEN, hex);
			snprintf(why, whylen,
				 s->has_bundle ? "policy.code: task %s's bundle digest %s is not in the allowed list"
					       : "policy.code: task %s runs with the empty bundle, whose digest %s is not in the allowed list",
				 s->name, hex);
			rc = SS_EINVAL;
			goto out;
		}
	}
	*out = js;
	js = NULL;
out:
	jobspec_free(js);
	return rc;
}

static void template_register(struct jobs *j, struct job *jb, bool by_admin);

/*
 * jobs_submit(), for a launch of the periodic job parent too (parent NULL
 * for a submission through the API).
 */
static int submit(struct jobs *j, const char *spec, size_t len, const char *tenant, const char *parent,
		  json_t **out, char *why, size_t whylen)
{
	struct jobspec *js = NULL;
	int rc = spec_check(j, spec, len, tenant, NULL, &js, why, whylen);
	if (rc)
		goto out;
	struct job *jb = xcalloc(1, sizeof *jb);
	do
		new_job_id(jb->id);
	while (job_find(j, jb->id));
	jb->spec = js;
	js = NULL;
	jb->spec_text = xmalloc(len + 1);
	memcpy(jb->spec_text, spec, len);
	jb->spec_text[len] = '\0';
	jb->spec_len = len;
	jb->created_ms = time_wall_ms();
	jb->st = J_RUNNING;
	snprintf(jb->parent, sizeof jb->parent, "%s", parent ? parent : "");
	job_build(jb);
	if (jb->spec->periodic.set || jb->spec->param.set)
		template_register(j, jb, tenant == NULL);
	job_index(j, jb);
	uses_of_job(j, jb, true);
	job_save(j, jb);
	job_protect(j, jb, true);
	if (jb->st == J_RUNNING)
		for (size_t i = 0; i < jb->spec->n_tasks; i++)
			if (jb->tasks[i].waiting == 0)
				enqueue(j, &jb->tasks[i]);
	j->submitted++;
	if (jb->launcher)
		log_info("job %s (%s, tenant %s): %s, %zu tasks per launch", jb->id, jb->spec->name,
			 jb->spec->tenant, jstate_names[jb->st], jb->spec->n_tasks);
	else
		log_info("job %s (%s, tenant %s): %zu tasks submitted%s%s", jb->id, jb->spec->name,
			 jb->spec->tenant, jb->spec->n_tasks, parent ? ", launched by " : "", parent ? parent : "");
	kick(j);
	*out = job_json(j, jb);
out:
	jobspec_free(js);
	return rc;
}

int jobs_submit(struct jobs *j, const char *spec, size_t len, const char *tenant, json_t **out,
		char *why, size_t whylen)
{
	return submit(j, spec, len, tenant, NULL, out, why, whylen);
}

/* ---- periodic jobs: a schedule that launches jobs -------------------------------- */

static void periodic_link(struct jobs *j, struct job *jb)
{
	jb->launcher->next = j->periodic;
	j->periodic = jb;
	j->n_periodic++;
}

static void periodic_unlink(struct jobs *j, struct job *jb)
{
	struct job **pp = &j->periodic;
	while (*pp && *pp != jb)
		pp = &(*pp)->launcher->next;
	if (*pp) {
		*pp = jb->launcher->next;
		j->n_periodic--;
	}
	jb->launcher->next = NULL;
}

/*
 * Makes the new job jb (its spec has "periodic" or "parameterized") a
 * template: a periodic job launches from now on, a parameterized one takes
 * dispatches, and its own tasks never run.
 */
static void template_register(struct jobs *j, struct job *jb, bool by_admin)
{
	jb->launcher = xcalloc(1, sizeof *jb->launcher);
	jb->launcher->anchor_ms = jb->created_ms;
	jb->launcher->by_admin = by_admin;
	memset(jb->counts, 0, sizeof jb->counts);
	if (jb->spec->param.set) {
		jb->st = J_PARAMETERIZED;
		return;
	}
	jb->st = J_PERIODIC;
	jb->launcher->next_ms = next_launch(&jb->spec->periodic, jb->created_ms, jb->created_ms);
	periodic_link(j, jb);
}

/* Restores a template's launch state from its record (o: its "launcher" object; NULL starts afresh). */
static void template_load(struct jobs *j, struct job *jb, const json_t *o)
{
	struct launcher *per = xcalloc(1, sizeof *per);
	jb->launcher = per;
	memset(jb->counts, 0, sizeof jb->counts);
	per->anchor_ms = json_integer_value(json_object_get(o, "anchor_ms")) ?: jb->created_ms;
	per->next_ms = json_integer_value(json_object_get(o, "next_ms"));
	if (per->next_ms <= 0 && jb->spec->periodic.set)
		per->next_ms = next_launch(&jb->spec->periodic, per->anchor_ms, time_wall_ms());
	per->launched = (uint64_t)json_integer_value(json_object_get(o, "launched"));
	per->skipped = (uint64_t)json_integer_value(json_object_get(o, "skipped"));
	per->refused = (uint64_t)json_integer_value(json_object_get(o, "refused"));
	per->last_skip_ms = json_integer_value(json_object_get(o, "last_skip_ms"));
	snprintf(per->last_skip, sizeof per->last_skip, "%s",
		 json_string_value(json_object_get(o, "last_skip")) ?: "");
	per->by_admin = json_is_true(json_object_get(o, "by_admin"));
	const json_t *recent = json_object_get(o, "recent");
	for (size_t i = 0; i < json_array_size(recent) && per->n_recent < PERIODIC_RECENT; i++) {
		const json_t *e = json_array_get(recent, i);
		const char *id = json_string_value(json_object_get(e, "id"));
		if (!id || strlen(id) >= sizeof per->recent[0].id)
			continue;
		snprintf(per->recent[per->n_recent].id, sizeof per->recent[0].id, "%s", id);
		per->recent[per->n_recent].at_ms = json_integer_value(json_object_get(e, "at_ms"));
		per->recent[per->n_recent].forced = json_is_true(json_object_get(e, "forced"));
		per->n_recent++;
	}
	if (jb->st == J_PERIODIC)
		periodic_link(j, jb);
}

/*
 * The spec of a launch: the template's spec without "periodic" and
 * "parameterized", with its tenant written in, and for a dispatch every
 * task given SS_META_<key> for each key of meta (over a variable of the same
 * name) and, with payload, the input "payload". A new string; NULL when the
 * stored text is not an object.
 */
static char *launch_spec(const struct job *jb, const json_t *meta, const uint8_t *payload, size_t *len)
{
	json_t *root = json_loadb(jb->spec_text, jb->spec_len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return NULL;
	}
	json_object_del(root, "periodic");
	json_object_del(root, "parameterized");
	json_object_set_new(root, "tenant", json_string(jb->spec->tenant));
	char hex[65];
	if (payload)
		hex_encode(payload, SHA256_LEN, hex);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(root, "tasks"), i, t) {
		const char *k;
		json_t *v;
		if (json_object_size(meta) && !json_is_object(json_object_get(t, "env")))
			json_object_set_new(t, "env", json_object());
		json_object_foreach((json_t *)meta, k, v) {
			char name[16 + JOBSPEC_NAME_MAX];
			snprintf(name, sizeof name, "SS_META_%s", k);
			json_object_set(json_object_get(t, "env"), name, v);
		}
		if (!payload)
			continue;
		if (!json_is_array(json_object_get(t, "inputs")))
			json_object_set_new(t, "inputs", json_array());
		json_array_append_new(json_object_get(t, "inputs"),
				      json_pack("{s:s,s:s}", "name", "payload", "blob", hex));
	}
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		abort(); /* jansson fails to dump an object only when out of memory */
	*len = strlen(text);
	return text;
}

/* Counts a launch (child: the launched job's JSON) and puts it first in the template's list of launches. */
static void record_launch(struct launcher *per, const json_t *child, int64_t at_ms, bool forced)
{
	memmove(&per->recent[1], &per->recent[0], (PERIODIC_RECENT - 1) * sizeof per->recent[0]);
	snprintf(per->recent[0].id, sizeof per->recent[0].id, "%s",
		 json_string_value(json_object_get(child, "id")));
	per->recent[0].at_ms = at_ms;
	per->recent[0].forced = forced;
	if (per->n_recent < PERIODIC_RECENT)
		per->n_recent++;
	per->launched++;
}

/*
 * Launches the periodic job jb for the launch time at_ms: submits its spec
 * without "periodic" as a new job whose parent is jb, as jb's tenant (as the
 * admin when the admin registered jb, so tenant quotas and budgets apply
 * exactly when they applied to the registration). Unless forced, a launch
 * while the last launch still runs is skipped when the spec prohibits
 * overlap. Records the outcome in jb; the caller saves it. Returns 0 with
 * *out = the new job's JSON when out is not NULL, SS_ESTATE for a skip, or
 * the submission's error, with why.
 */
static int launch(struct jobs *j, struct job *jb, int64_t at_ms, bool forced, json_t **out, char *why,
		  size_t whylen)
{
	struct launcher *per = jb->launcher;
	json_t *child = NULL;
	size_t len = 0;
	char *text = NULL;
	int rc;
	const struct job *last = per->n_recent ? job_find(j, per->recent[0].id) : NULL;
	if (!forced && jb->spec->periodic.prohibit_overlap && last && last->st == J_RUNNING) {
		snprintf(why, whylen, "job %s, the last launch, still runs (prohibit_overlap)", last->id);
		per->skipped++;
		j->periodic_skipped++;
		rc = SS_ESTATE;
		goto out;
	}
	if (!(text = launch_spec(jb, NULL, NULL, &len))) {
		snprintf(why, whylen, "the stored spec is not a JSON object");
		rc = SS_EPARSE;
	} else {
		rc = submit(j, text, len, per->by_admin ? NULL : jb->spec->tenant, jb->id, &child, why, whylen);
	}
	if (rc) {
		per->refused++;
		j->periodic_refused++;
		goto out;
	}
	record_launch(per, child, at_ms, forced);
	j->periodic_launched++;
out:
	if (rc) {
		per->last_skip_ms = time_wall_ms();
		snprintf(per->last_skip, sizeof per->last_skip, "%s", why);
		log_warn("periodic job %s (%s): launch %s: %s", jb->id, jb->spec->name,
			 rc == SS_ESTATE ? "skipped" : "refused", why);
	}
	free(text);
	if (out && rc == 0)
		*out = child;
	else
		json_decref(child);
	return rc;
}

/*
 * Launches every periodic job whose launch time has come. A job whose
 * launch times passed while the manager was down (or its loop was held up)
 * launches once, for the first of them, and then keeps to its schedule.
 * The launch and the periodic job's record go to the store together, so a
 * crash keeps both or neither: no launch time is launched twice.
 */
static void periodic_tick(struct jobs *j)
{
	int64_t now = time_wall_ms();
	for (struct job *jb = j->periodic; jb; jb = jb->launcher->next) {
		struct launcher *per = jb->launcher;
		if (per->next_ms > now)
			continue;
		char why[512];
		(void)launch(j, jb, per->next_ms, false, NULL, why, sizeof why);
		per->next_ms = next_launch(&jb->spec->periodic, per->anchor_ms, now);
		job_save(j, jb);
	}
}

int jobs_dispatch(struct jobs *j, const char *id, const char *body, size_t len, const char *tenant,
		  json_t **out, char *why, size_t whylen)
{
	struct job *jb = job_find(j, id);
	json_t *meta = NULL, *child = NULL;
	char *text = NULL;
	uint8_t payload[SHA256_LEN];
	bool has_payload;
	size_t n = 0;
	int rc;
	*out = NULL;
	if (!jb) {
		snprintf(why, whylen, "job %s not found", id);
		return SS_ENOTFOUND;
	}
	if (!jb->spec->param.set) {
		snprintf(why, whylen, "job %s is not parameterized (%s)", id,
			 jb->spec->periodic.set ? "job launch runs a periodic job now" : "job rerun submits a job again");
		return SS_ESTATE;
	}
	if (jb->st != J_PARAMETERIZED) {
		snprintf(why, whylen, "parameterized job %s was stopped; register its spec again to dispatch it", id);
		return SS_ESTATE;
	}
	if ((rc = jobspec_dispatch_parse(jb->spec, body, len, &meta, &has_payload, payload, why, whylen)))
		goto out;
	if (!(text = launch_spec(jb, meta, has_payload ? payload : NULL, &n))) {
		snprintf(why, whylen, "the stored spec is not a JSON object");
		rc = SS_EPARSE;
		goto out;
	}
	/* As a submission by the caller: a tenant token's quotas apply, and the payload must be one it may read. */
	if ((rc = submit(j, text, n, tenant, jb->id, &child, why, whylen)))
		goto out;
	record_launch(jb->launcher, child, time_wall_ms(), false);
	j->dispatches++;
	job_save(j, jb);
	json_object_set_new(child, "meta", meta);
	meta = NULL;
	*out = child;
out:
	json_decref(meta);
	free(text);
	return rc;
}

int jobs_launch(struct jobs *j, const char *id, json_t **out, char *why, size_t whylen)
{
	struct job *jb = job_find(j, id);
	*out = NULL;
	if (!jb) {
		snprintf(why, whylen, "job %s not found", id);
		return SS_ENOTFOUND;
	}
	if (!jb->spec->periodic.set) {
		snprintf(why, whylen, "job %s is not periodic (%s)", id,
			 jb->spec->param.set ? "job dispatch runs a parameterized job" : "job rerun submits a job again");
		return SS_ESTATE;
	}
	if (jb->st != J_PERIODIC) {
		snprintf(why, whylen, "periodic job %s was stopped; register its spec again to launch it", id);
		return SS_ESTATE;
	}
	int rc = launch(j, jb, time_wall_ms(), true, out, why, whylen);
	job_save(j, jb);
	return rc;
}

/* ---- plans: what a submission would do now -------------------------------------- */

/* One task group's part of a plan. */
struct plan_group {
	uint32_t ready, placed, unplaced;
	uint32_t preempts;  /* attempts its placements would preempt */
	double rate;      /* per hour, of the instances placed */
	json_t *nodes;    /* node id -> instances placed there */
	char reason[256]; /* why the first instance not placed was not */
};

/*
 * A plan's preemption (preempt_search): when t would fit on a node by
 * preempting running attempts, they are marked plan_taken, their
 * reservations released for the rest of the plan and appended to *taken
 * (jobs_plan puts them back), *count grows by their number, and the node
 * is returned; otherwise NULL.
 */
static struct sched_node *plan_preempt(struct jobs *j, const struct task *t, const struct sched_req *req,
				       struct task ***taken, size_t *n_taken, uint32_t *count)
{
	struct task **v;
	size_t nv;
	struct sched_node *sn = preempt_search(j, t, req, &v, &nv);
	if (nv)
		*taken = xrealloc(*taken, (*n_taken + nv) * sizeof **taken);
	for (size_t q = 0; q < nv; q++) {
		const struct jobspec_task *vs = spec_of(v[q]);
		v[q]->plan_taken = true;
		sched_release(j->sched, v[q]->sn, vs->res.cpu_millicores, vs->res.memory_bytes, vs->res.disk_bytes);
		(*taken)[(*n_taken)++] = v[q];
	}
	*count += (uint32_t)nv;
	free(v);
	return sn;
}

/* Queue order within a tenant (arg: the spec): higher priority first, then spec order. */
static int cmp_plan_order(const void *a, const void *b, void *arg)
{
	const struct jobspec *js = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int32_t px = js->tasks[x].priority, py = js->tasks[y].priority;
	if (px != py)
		return px > py ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* The group names the first instance of group g waits for, each once. */
static json_t *plan_after(const struct jobspec *js, size_t g)
{
	json_t *a = json_array();
	const struct jobspec_task *s = &js->tasks[js->groups[g].first];
	for (size_t k = 0; k < s->n_deps; k++) {
		const char *name = js->groups[js->tasks[s->deps[k]].group].name;
		bool seen = false;
		for (size_t i = 0; i < json_array_size(a) && !seen; i++)
			seen = !strcmp(json_string_value(json_array_get(a, i)), name);
		if (!seen)
			json_array_append_new(a, json_string(name));
	}
	return a;
}

int jobs_plan(struct jobs *j, const char *spec, size_t len, const char *tenant, json_t **out,
	      char *why, size_t whylen)
{
	struct plan_notes notes = {json_array()};
	struct jobspec *js = NULL;
	struct job *jb = NULL;
	struct plan_group *pg = NULL;
	uint32_t *order = NULL;
	struct plan_hold {
		struct sched_node *sn;
		const struct jobspec_task *s;
	} *held = NULL;
	size_t n_order = 0, n_held = 0;
	*out = NULL;
	int rc = spec_check(j, spec, len, tenant, &notes, &js, why, whylen);
	if (rc)
		goto out;
	jb = xcalloc(1, sizeof *jb);
	snprintf(jb->id, sizeof jb->id, "plan");
	jb->spec = js;
	js = NULL;
	jb->created_ms = time_wall_ms();
	jb->st = J_RUNNING;
	job_build(jb);
	const struct jobspec *sp = jb->spec;
	pg = xcalloc(sp->n_groups ? sp->n_groups : 1, sizeof *pg);
	order = xcalloc(sp->n_tasks ? sp->n_tasks : 1, sizeof *order);
	held = xcalloc(sp->n_tasks ? sp->n_tasks : 1, sizeof *held);
	struct task **taken = NULL; /* running attempts the plan preempts, marked plan_taken */
	size_t n_taken = 0;
	for (size_t i = 0; i < sp->n_tasks; i++)
		if (jb->tasks[i].waiting == 0)
			order[n_order++] = (uint32_t)i;
	qsort_r(order, n_order, sizeof *order, cmp_plan_order, (void *)sp);

	/*
	 * Each ready task is placed as the scheduler would place it now, in
	 * queue order, and its resources reserved so that the next one sees
	 * them taken; every reservation is released below. The loop thread
	 * runs nothing else meanwhile, so no real placement ever sees them.
	 */
	uint64_t cap = sched_queue_cap(j->queue, sp->tenant);
	uint64_t running = sched_queue_running(j->queue, sp->tenant);
	uint32_t placed = 0;
	double rate = 0;
	for (size_t o = 0; o < n_order; o++) {
		struct task *t = &jb->tasks[order[o]];
		const struct jobspec_task *s = spec_of(t);
		struct plan_group *g = &pg[s->group];
		g->ready++;
		char r[256] = "";
		struct sched_node *sn = NULL;
		if (cap && running + s->res.cpu_millicores > cap) {
			snprintf(r, sizeof r,
				 "tenant %s may run %llum at once (--tenant-max-cpu): it waits for its running tasks",
				 sp->tenant, (unsigned long long)cap);
		} else {
			struct req_buf rb;
			req_build(j, t, &rb);
			if (sched_place(j->sched, &rb.req, &sn, r, sizeof r) != 0) {
				sn = NULL;
				if (j->preempt != JOBS_PREEMPT_OFF)
					sn = plan_preempt(j, t, &rb.req, &taken, &n_taken, &g->preempts);
			}
			req_free(&rb);
		}
		struct node *n = sn ? registry_get(j->env.reg, sched_node_id(sn)) : NULL;
		if (!n) {
			g->unplaced++;
			if (!g->reason[0])
				snprintf(g->reason, sizeof g->reason, "%s", r[0] ? r : "no node now");
			continue;
		}
		sched_reserve(j->sched, sn, s->res.cpu_millicores, s->res.memory_bytes, s->res.disk_bytes);
		held[n_held].sn = sn;
		held[n_held++].s = s;
		running += s->res.cpu_millicores;
		double tr = node_rate(n, s->res.cpu_millicores);
		g->rate += tr;
		rate += tr;
		g->placed++;
		placed++;
		if (!g->nodes)
			g->nodes = json_object();
		json_t *c = json_object_get(g->nodes, n->id);
		json_object_set_new(g->nodes, n->id, json_integer(json_integer_value(c) + 1));
	}
	for (size_t h = 0; h < n_held; h++)
		sched_release(j->sched, held[h].sn, held[h].s->res.cpu_millicores,
			      held[h].s->res.memory_bytes, held[h].s->res.disk_bytes);
	uint32_t preempts = (uint32_t)n_taken;
	for (size_t q = 0; q < n_taken; q++) {
		const struct jobspec_task *vs = spec_of(taken[q]);
		sched_reserve(j->sched, taken[q]->sn, vs->res.cpu_millicores, vs->res.memory_bytes,
			      vs->res.disk_bytes);
		taken[q]->plan_taken = false;
	}
	free(taken);

	json_t *groups = json_array();
	uint32_t later = 0;
	for (size_t gi = 0; gi < sp->n_groups; gi++) {
		const struct jobspec_group *gr = &sp->groups[gi];
		struct plan_group *g = &pg[gi];
		json_t *o = json_pack("{s:s,s:I,s:o}", "name", gr->name, "instances", (json_int_t)gr->count,
				      "after", plan_after(sp, gi));
		if (g->ready) {
			json_object_set_new(o, "placed", json_integer(g->placed));
			json_object_set_new(o, "nodes", g->nodes ? g->nodes : json_object());
			g->nodes = NULL;
			json_object_set_new(o, "cost_per_hour", json_real(g->rate));
			if (g->preempts)
				json_object_set_new(o, "preempts", json_integer(g->preempts));
			if (g->unplaced) {
				json_object_set_new(o, "not_placed", json_integer(g->unplaced));
				json_object_set_new(o, "reason", json_string(g->reason));
			}
		} else {
			/*
			 * It starts once what it waits for has run: where it would
			 * go now (its inputs do not exist yet, so locality is not
			 * counted).
			 */
			struct task *t = &jb->tasks[gr->first];
			struct req_buf rb;
			struct sched_node *sn = NULL;
			char r[256] = "";
			req_build(j, t, &rb);
			size_t feasible = sched_feasible_count(j->sched, &rb.req);
			if (sched_place(j->sched, &rb.req, &sn, r, sizeof r) != 0)
				sn = NULL;
			req_free(&rb);
			later += gr->count;
			json_object_set_new(o, "feasible_nodes", json_integer((json_int_t)feasible));
			json_object_set_new(o, "total_nodes",
					    json_integer((json_int_t)sched_node_count(j->sched)));
			json_object_set_new(o, "would_start_on", sn ? json_string(sched_node_id(sn)) : json_null());
			if (!sn)
				json_object_set_new(o, "reason", json_string(r));
		}
		json_array_append_new(groups, o);
	}
	*out = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:o,s:o}", "name", sp->name, "tenant",
			 sp->tenant, "tasks", (json_int_t)sp->n_tasks, "placed_now", (json_int_t)placed,
			 "not_placed_now", (json_int_t)(n_order - placed), "after_dependencies",
			 (json_int_t)later, "queued_ahead", (json_int_t)sched_queue_len(j->queue),
			 "cost_per_hour", rate, "warnings", notes.warnings, "groups", groups);
	notes.warnings = NULL;
	if (preempts)
		json_object_set_new(*out, "preempts", json_integer(preempts));
	if (sp->periodic.set) {
		/* The placements are those of a launch now; the launches themselves come at these times. */
		json_t *next = json_array();
		int64_t at = time_wall_ms();
		for (int i = 0; i < 3; i++) {
			at = next_launch(&sp->periodic, time_wall_ms(), at);
			json_array_append_new(next, json_integer(at));
		}
		json_t *o = periodic_spec_json(&sp->periodic);
		json_object_set_new(o, "next_launches_ms", next);
		json_object_set_new(*out, "periodic", o);
	}
out:
	for (size_t gi = 0; pg && gi < jb->spec->n_groups; gi++)
		json_decref(pg[gi].nodes);
	free(pg);
	free(order);
	free(held);
	job_free(j, jb);
	jobspec_free(js);
	json_decref(notes.warnings);
	return rc;
}

static int cmp_created(const void *a, const void *b)
{
	const struct job *x = *(const struct job *const *)a, *y = *(const struct job *const *)b;
	if (x->created_ms != y->created_ms)
		return x->created_ms < y->created_ms ? -1 : 1;
	return strcmp(x->id, y->id);
}

uint32_t jobs_tenant_max_jobs(const struct jobs *j)
{
	return j->tenant_max_jobs;
}

void jobs_set_preemption(struct jobs *j, enum jobs_preemption p)
{
	j->preempt = p;
}

void jobs_set_tenant_max_jobs(struct jobs *j, uint32_t n)
{
	j->tenant_max_jobs = n;
}

void jobs_set_retention(struct jobs *j, int64_t retention_ms)
{
	j->retention_ms = retention_ms;
}

int64_t jobs_retention(const struct jobs *j)
{
	return j->retention_ms;
}

void jobs_set_tenant_max_cpu(struct jobs *j, const char *tenant, uint64_t millicores)
{
	sched_queue_set_cap(j->queue, tenant, millicores);
	log_info("tenant %s: at most %llum running at once", tenant ? tenant : "(every other)",
		 (unsigned long long)millicores);
}

void jobs_set_tenant_max_cost(struct jobs *j, const char *tenant, double amount,
			      enum jobs_budget_period period)
{
	const char *name = tenant ? tenant : "";
	size_t i = 0;
	while (i < j->n_cost_caps && strcmp(j->cost_caps[i].tenant, name) != 0)
		i++;
	if (i == j->n_cost_caps) {
		if (i == JOBS_MAX_COST_CAPS)
			return;
		j->n_cost_caps++;
	}
	snprintf(j->cost_caps[i].tenant, sizeof j->cost_caps[i].tenant, "%s", name);
	j->cost_caps[i].amount = amount;
	j->cost_caps[i].period = period;
}

void jobs_set_tenant_weight(struct jobs *j, const char *tenant, double weight)
{
	sched_queue_set_weight(j->queue, tenant, weight);
	log_info("tenant %s: weight %g", tenant, weight);
}

bool jobs_state_valid(const char *state)
{
	for (size_t i = 0; i < ARRAY_LEN(jstate_names); i++)
		if (!strcmp(state, jstate_names[i]))
			return true;
	return false;
}

/* True when jb comes after the cursor (ms, id) in the newest-first order. */
static bool after_cursor(const struct job *jb, int64_t ms, const char *id)
{
	return jb->created_ms != ms ? jb->created_ms < ms : strcmp(jb->id, id) < 0;
}

json_t *jobs_list(struct jobs *j, const struct jobs_query *q)
{
	struct job **v = xcalloc(j->n_jobs ? j->n_jobs : 1, sizeof *v);
	size_t n = 0, total = 0;
	for (struct job *jb = j->all; jb; jb = jb->next) {
		if ((q->tenant[0] && strcmp(jb->spec->tenant, q->tenant) != 0) ||
		    (q->state[0] && strcmp(jstate_names[jb->st], q->state) != 0))
			continue;
		total++;
		if (!q->before_id[0] || after_cursor(jb, q->before_ms, q->before_id))
			v[n++] = jb;
	}
	qsort(v, n, sizeof *v, cmp_created);
	/* cmp_created sorts oldest first: the page is the last limit entries, newest first. */
	size_t take = n < q->limit ? n : q->limit;
	json_t *a = json_array();
	for (size_t i = 0; i < take; i++) {
		json_t *o = job_json(j, v[n - 1 - i]);
		json_object_del(o, "results");
		json_array_append_new(a, o);
	}
	json_t *out = json_pack("{s:o,s:I}", "jobs", a, "total", (json_int_t)total);
	if (take < n) {
		const struct job *last = v[n - take];
		char cur[96];
		snprintf(cur, sizeof cur, "%lld.%s", (long long)last->created_ms, last->id);
		json_object_set_new(out, "next", json_string(cur));
	}
	free(v);
	return out;
}

uint64_t jobs_index_now(const struct jobs *j)
{
	return j->index_seq;
}

uint64_t jobs_job_index(struct jobs *j, const char *id)
{
	const struct job *jb = job_find(j, id);
	return jb ? jb->index : 0;
}

const char *jobs_job_tenant(struct jobs *j, const char *id)
{
	const struct job *jb = job_find(j, id);
	return jb ? jb->spec->tenant : NULL;
}

const char *jobs_task_tenant(struct jobs *j, const char *task_id)
{
	const struct task *t = task_find(j, task_id);
	return t ? t->job->spec->tenant : NULL;
}

json_t *jobs_get(struct jobs *j, const char *id)
{
	struct job *jb = job_find(j, id);
	if (!jb)
		return NULL;
	json_t *o = job_json(j, jb);
	/* One job's answer also says what its running attempts have cost so far. */
	double running = 0;
	int64_t now = time_wall_ms();
	for (size_t i = 0; i < jb->spec->n_tasks; i++)
		running += attempt_cost_so_far(&jb->tasks[i], now);
	json_object_set_new(json_object_get(o, "usage"), "cost_running", json_real(running));
	return o;
}

int jobs_cancel(struct jobs *j, const char *id, json_t **out, const char **why)
{
	struct job *jb = job_find(j, id);
	if (!jb)
		return SS_ENOTFOUND;
	if (is_template(jb)) {
		/* A template stops launching; the jobs it launched go on (cancel them by their ids). */
		if (jb->st == J_PERIODIC)
			periodic_unlink(j, jb);
		log_info("%s job %s stopped", jstate_names[jb->st], jb->id);
		snprintf(jb->reason, sizeof jb->reason, "stopped by the user: no more %s (the jobs it launched go on)",
			 jb->st == J_PERIODIC ? "launches" : "dispatches");
		jb->st = J_CANCELED;
		jb->finished_ms = time_wall_ms();
		job_save(j, jb);
		*out = job_json(j, jb);
		return 0;
	}
	if (jb->st != J_RUNNING) {
		*why = jb->launcher ? "the job was stopped already" : "the job has already finished";
		return SS_ESTATE;
	}
	snprintf(jb->reason, sizeof jb->reason, "canceled by the user");
	for (size_t i = 0; i < jb->spec->n_tasks; i++)
		task_end(j, &jb->tasks[i], T_CANCELED, "job canceled");
	failpoint("cancel"); /* crash tests: the cancels are out, nothing is committed or answered */
	jb->st = J_CANCELED;
	jb->finished_ms = time_wall_ms();
	j->canceled++;
	job_save(j, jb);
	log_info("job %s canceled", jb->id);
	*out = job_json(j, jb);
	return 0;
}

json_t *jobs_tasks(struct jobs *j, const char *id)
{
	struct job *jb = job_find(j, id);
	if (!jb)
		return NULL;
	json_t *a = json_array();
	/* A periodic job's tasks are templates: they run in the jobs it launches. */
	for (size_t i = 0; !jb->launcher && i < jb->spec->n_tasks; i++)
		json_array_append_new(a, task_json(j, &jb->tasks[i], true));
	return json_pack("{s:s,s:o}", "job", jb->id, "tasks", a);
}

int jobs_explain(struct jobs *j, const char *id, const char *task, json_t **out, char *why,
		 size_t whylen)
{
	struct job *jb = job_find(j, id);
	if (!jb) {
		snprintf(why, whylen, "job %s not found", id);
		return SS_ENOTFOUND;
	}
	if (jb->launcher) {
		snprintf(why, whylen,
			 "job %s is %s: its tasks run in the jobs it launches (job status %s lists them; "
			 "job plan shows where a launch would go now)",
			 id, jb->spec->periodic.set ? "periodic" : "parameterized", id);
		return SS_ESTATE;
	}
	json_t *a = json_array();
	size_t shown = 0;
	for (size_t i = 0; i < jb->spec->n_tasks && shown < 50; i++) {
		struct task *t = &jb->tasks[i];
		/* A task is named by its instance name, its id, or its group's name (all instances). */
		const struct jobspec_task *s = spec_of(t);
		if (task ? strcmp(s->name, task) != 0 && strcmp(t->id, task) != 0 &&
				   strcmp(jb->spec->groups[s->group].name, task) != 0
			 : terminal(t->st))
			continue;
		struct req_buf rb;
		req_build(j, t, &rb);
		json_t *e = sched_explain(j->sched, &rb.req);
		req_free(&rb);
		json_t *o = task_json(j, t, false);
		if (t->waiting)
			json_object_set_new(o, "waiting_for", json_integer(t->waiting));
		json_object_set_new(o, "placement", e);
		json_array_append_new(a, o);
		shown++;
	}
	if (task && shown == 0) {
		json_decref(a);
		snprintf(why, whylen, "job %s has no task named %s", id, task);
		return SS_ENOTFOUND;
	}
	*out = json_pack("{s:s,s:o}", "job", jb->id, "tasks", a);
	return 0;
}

struct logs_ctx {
	const char *prefix;
	size_t plen;
	json_t *attempts;
};

static int logs_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct logs_ctx *c = arg;
	if (strncmp(key, c->prefix, c->plen) != 0 || key[c->plen] != '.')
		return 0;
	json_t *o = json_loadb(value, len, 0, NULL);
	if (o)
		json_array_append_new(c->attempts, o);
	return 0;
}

json_t *jobs_task_logs(struct jobs *j, const char *task_id)
{
	struct task *t = task_find(j, task_id);
	if (!t)
		return NULL;
	struct logs_ctx c = {t->id, strlen(t->id), json_array()};
	store_scan(j->env.store, "results", logs_cb, &c);
	json_t *o = task_json(j, t, true);
	json_object_set_new(o, "attempts", c.attempts);
	return o;
}

/* ---- following a task's output ------------------------------------------------------ */

static void live_drop(struct jobs *j, struct live *l)
{
	for (size_t i = 0; i < j->n_lives; i++) {
		if (j->lives[i] == l) {
			j->lives[i] = j->lives[--j->n_lives];
			break;
		}
	}
	l->t->live = NULL;
	buf_free(&l->data[0]);
	buf_free(&l->data[1]);
	free(l);
}

/* (Re)starts following attempt of t on node; returns NULL when LIVE_MAX are followed and none is idle. */
static struct live *live_start(struct jobs *j, struct task *t, uint32_t attempt, const char *node)
{
	struct live *l = t->live;
	if (l && l->attempt == attempt && !strcmp(l->node, node))
		return l;
	if (l)
		live_drop(j, l);
	if (j->n_lives == LIVE_MAX) {
		struct live *idle = NULL;
		uint64_t now = time_mono_ms();
		for (size_t i = 0; i < j->n_lives; i++)
			if (now - j->lives[i]->read_ms > LIVE_IDLE_MS &&
			    (!idle || j->lives[i]->read_ms < idle->read_ms))
				idle = j->lives[i];
		if (!idle)
			return NULL;
		live_drop(j, idle);
	}
	l = xcalloc(1, sizeof *l);
	l->t = t;
	l->attempt = attempt;
	snprintf(l->node, sizeof l->node, "%s", node);
	buf_init(&l->data[0]);
	buf_init(&l->data[1]);
	t->live = l;
	j->lives[j->n_lives++] = l;
	return l;
}

/* Adds bytes of stream s that start at offset from to what l keeps. */
static void live_add(struct live *l, int s, uint64_t from, const uint8_t *p, size_t n)
{
	struct buf *b = &l->data[s];
	uint64_t end = l->base[s] + b->len;
	if (from < l->base[s] || from > end) {
		/* Before what is kept (asked again from an earlier offset), or after a gap. */
		b->len = 0;
		l->base[s] = from;
		end = from;
	}
	if (from + n <= end)
		return;
	size_t skip = (size_t)(end - from);
	buf_append(b, p + skip, n - skip);
	if (b->len > LIVE_KEEP) {
		size_t drop = b->len - LIVE_KEEP;
		memmove(b->data, b->data + drop, b->len - drop);
		b->len -= drop;
		l->base[s] += drop;
	}
}

static void on_task_log(struct jobs *j, struct node *n, const Seeswarm__V1__TaskLog *tl)
{
	struct task *t = task_find(j, tl->task_id);
	struct live *l = t ? t->live : NULL;
	if (!l || l->attempt != tl->attempt || strcmp(l->node, n->id) != 0)
		return; /* nobody follows it (any more) */
	l->asked = false;
	live_add(l, 0, tl->stdout_from, tl->stdout.data, tl->stdout.len);
	live_add(l, 1, tl->stderr_from, tl->stderr.data, tl->stderr.len);
	if (!tl->running || !tl->known)
		l->ended = true;
}

/* {"from", "data", "next"} for stream s of l from offset from. */
static json_t *live_json(const struct live *l, int s, uint64_t from)
{
	const struct buf *b = l ? &l->data[s] : NULL;
	uint64_t base = l ? l->base[s] : from, end = l ? base + b->len : from;
	uint64_t at = from < base ? base : from > end ? end : from;
	char *text = printable_copy(b && b->len ? b->data + (at - base) : (const uint8_t *)"",
				    (size_t)(end - at));
	json_t *o = json_pack("{s:I,s:s,s:I}", "from", (json_int_t)at, "data", text, "next",
			      (json_int_t)end);
	free(text);
	return o;
}

int jobs_task_output(struct jobs *j, const char *task_id, const uint64_t from[2], json_t **out)
{
	*out = NULL;
	struct task *t = task_find(j, task_id);
	if (!t)
		return SS_ENOTFOUND;
	bool started = t->attempt > 0 && t->node[0] &&
		       t->st != T_PENDING && t->st != T_RETRYING && t->st != T_CANCELED;
	struct live *l = NULL;
	if (started) {
		l = live_start(j, t, t->attempt, t->node);
		if (!l)
			return SS_ELIMIT;
		uint64_t now = time_mono_ms();
		l->read_ms = now;
		struct node *n = registry_get(j->env.reg, t->node);
		bool reachable = n && j->env.connected(j->env.arg, n);
		if (!reachable && t->st != T_PLACED && t->st != T_RUNNING)
			l->ended = true; /* it finished, and its node cannot be asked */
		if (reachable && !l->ended && (!l->asked || now - l->asked_ms > LIVE_ASK_MS)) {
			Seeswarm__V1__TaskLogGet g = SEESWARM__V1__TASK_LOG_GET__INIT;
			g.task_id = t->id;
			g.attempt = l->attempt;
			/* From what is kept on, unless the follower wants bytes from before it. */
			g.stdout_from = from[0] < l->base[0] ? from[0] : l->base[0] + l->data[0].len;
			g.stderr_from = from[1] < l->base[1] ? from[1] : l->base[1] + l->data[1].len;
			j->env.send(j->env.arg, n, MSG_TASK_LOG_GET, &g.base);
			l->asked = true;
			l->asked_ms = now;
		}
	}
	json_t *o = json_pack("{s:s,s:I,s:s,s:s,s:b}", "task", t->id, "attempt", (json_int_t)t->attempt,
			      "state", tstate_names[t->st], "node", t->node, "ended",
			      l ? l->ended : t->st == T_CANCELED || t->st == T_FAILED);
	json_object_set_new(o, "stdout", live_json(l, 0, from[0]));
	json_object_set_new(o, "stderr", live_json(l, 1, from[1]));
	*out = o;
	return 0;
}

void jobs_blob_added(struct jobs *j, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	(void)size;
	replicas_blob_added(j->repl, digest);
	kick(j);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Submit-to-start latency percentiles over the last LAT_SAMPLES starts, in microseconds. */
static void latency(struct jobs *j, double *p50, double *p99)
{
	size_t n = j->lat_n < LAT_SAMPLES ? j->lat_n : LAT_SAMPLES;
	*p50 = *p99 = 0;
	if (!n)
		return;
	uint64_t *v = xmalloc(n * sizeof *v);
	memcpy(v, j->lat_ns, n * sizeof *v);
	qsort(v, n, sizeof *v, cmp_u64);
	size_t i50 = n / 2, i99 = (n * 99) / 100 < n ? (n * 99) / 100 : n - 1;
	*p50 = (double)v[i50] / 1000.0;
	*p99 = (double)v[i99] / 1000.0;
	free(v);
}

void jobs_set_rtt(struct jobs *j, const char *a, const char *b, double rtt_ms)
{
	struct sched_node *na = sched_node_find(j->sched, a), *nb = sched_node_find(j->sched, b);
	if (na && nb)
		sched_set_rtt(j->sched, na, nb, rtt_ms);
}

/*
 * Tells each agent which peers to measure round-trip times to: its
 * PEER_RING neighbours on each side in the id-sorted ring of nodes that
 * serve peers, so that the measured graph is connected and each agent probes
 * at most 2 x PEER_RING peers. A list goes out only when it changed for that
 * session.
 */
static void send_peer_lists(struct jobs *j)
{
	size_t nn = 0, m = 0;
	struct node **v = registry_sorted(j->env.reg, &nn);
	for (size_t i = 0; i < nn; i++)
		if (v[i]->state == NODE_READY && v[i]->advertise[0] && j->env.connected(j->env.arg, v[i]))
			v[m++] = v[i];
	for (size_t i = 0; i < m; i++) {
		Seeswarm__V1__BlobSource src[MSG_MAX_PEERS], *srcp[MSG_MAX_PEERS];
		Seeswarm__V1__PeerList pl = SEESWARM__V1__PEER_LIST__INIT;
		uint64_t h = 0;
		size_t k = 0;
		size_t idx[MSG_MAX_PEERS];
		for (size_t d = 1; d <= PEER_RING && d < m && k < MSG_MAX_PEERS; d++) {
			for (int side = 0; side < 2 && k < MSG_MAX_PEERS; side++) {
				size_t o = side ? (i + m - d) % m : (i + d) % m;
				bool dup = o == i;
				for (size_t q = 0; q < k && !dup; q++)
					dup = idx[q] == o;
				if (dup)
					continue;
				idx[k] = o;
				seeswarm__v1__blob_source__init(&src[k]);
				src[k].node_id = v[o]->id;
				src[k].addr = v[o]->advertise;
				srcp[k] = &src[k];
				h = hash_fnv1a(v[o]->id, strlen(v[o]->id), hash_fnv1a(v[o]->advertise,
											strlen(v[o]->advertise), h));
				k++;
			}
		}
		h |= 1; /* 0 means "nothing sent" */
		if (h == v[i]->peers_sent)
			continue;
		pl.peers = srcp;
		pl.n_peers = k;
		if (j->env.send(j->env.arg, v[i], MSG_PEER_LIST, &pl.base) == 0)
			v[i]->peers_sent = h;
	}
	free(v);
}

void jobs_set_replicas(struct jobs *j, unsigned want)
{
	replicas_set_want(j->repl, want);
}

json_t *jobs_blob_replicas(struct jobs *j, const uint8_t digest[SHA256_LEN])
{
	return replicas_json(j->repl, digest);
}

void jobs_metrics(struct jobs *j, struct buf *out)
{
	const struct replicas_stats *rs = replicas_stats(j->repl);
	buf_printf(out,
		   "# HELP seeswarm_blobs_tracked Blobs with known holders or kept critical.\n"
		   "# TYPE seeswarm_blobs_tracked gauge\nseeswarm_blobs_tracked %" PRIu64 "\n"
		   "# TYPE seeswarm_blobs_critical gauge\nseeswarm_blobs_critical %" PRIu64 "\n"
		   "# HELP seeswarm_blobs_under_replicated Critical blobs below the replica count.\n"
		   "# TYPE seeswarm_blobs_under_replicated gauge\nseeswarm_blobs_under_replicated %" PRIu64 "\n"
		   "# TYPE seeswarm_replications_requested_total counter\nseeswarm_replications_requested_total %" PRIu64 "\n"
		   "# TYPE seeswarm_replications_stored_total counter\nseeswarm_replications_stored_total %" PRIu64 "\n"
		   "# TYPE seeswarm_replications_failed_total counter\nseeswarm_replications_failed_total %" PRIu64 "\n"
		   "# TYPE seeswarm_replica_holders_lost_total counter\nseeswarm_replica_holders_lost_total %" PRIu64 "\n"
		   "# HELP seeswarm_blob_copies_deleted_total Agent copies deleted because no job needs them.\n"
		   "# TYPE seeswarm_blob_copies_deleted_total counter\nseeswarm_blob_copies_deleted_total %" PRIu64 "\n",
		   rs->blobs, rs->critical, rs->under, rs->requested, rs->stored, rs->failed, rs->holders_lost,
		   rs->deleted);
	size_t by[T_STATE_COUNT] = {0};
	size_t running_jobs = 0;
	for (struct job *jb = j->all; jb; jb = jb->next) {
		running_jobs += jb->st == J_RUNNING;
		for (int i = 0; i < T_STATE_COUNT; i++)
			by[i] += jb->counts[i];
	}
	buf_printf(out, "# HELP seeswarm_tasks Task instances by state.\n# TYPE seeswarm_tasks gauge\n");
	for (int i = 0; i < T_STATE_COUNT; i++)
		buf_printf(out, "seeswarm_tasks{state=\"%s\"} %zu\n", tstate_names[i], by[i]);
	buf_printf(out, "# TYPE seeswarm_jobs_running gauge\nseeswarm_jobs_running %zu\n", running_jobs);
	buf_printf(out,
		   "# HELP seeswarm_periodic_jobs Periodic jobs that launch (not stopped).\n"
		   "# TYPE seeswarm_periodic_jobs gauge\nseeswarm_periodic_jobs %zu\n"
		   "# HELP seeswarm_periodic_launches_total Launches of periodic jobs, by outcome.\n"
		   "# TYPE seeswarm_periodic_launches_total counter\n"
		   "seeswarm_periodic_launches_total{outcome=\"launched\"} %" PRIu64 "\n"
		   "seeswarm_periodic_launches_total{outcome=\"skipped\"} %" PRIu64 "\n"
		   "seeswarm_periodic_launches_total{outcome=\"refused\"} %" PRIu64 "\n",
		   j->n_periodic, j->periodic_launched, j->periodic_skipped, j->periodic_refused);
	buf_printf(out,
		   "# HELP seeswarm_dispatches_total Jobs launched by dispatching parameterized jobs.\n"
		   "# TYPE seeswarm_dispatches_total counter\nseeswarm_dispatches_total %" PRIu64 "\n",
		   j->dispatches);
	buf_printf(out, "# HELP seeswarm_tenant_cpu_running_millicores CPU a tenant's tasks hold, and its cap.\n"
			"# TYPE seeswarm_tenant_cpu_running_millicores gauge\n"
			"# TYPE seeswarm_tenant_cpu_cap_millicores gauge\n");
	struct sched_queue_tenant qt;
	for (size_t i = 0; sched_queue_tenant_at(j->queue, i, &qt); i++) {
		buf_printf(out, "seeswarm_tenant_cpu_running_millicores{tenant=\"%s\"} %" PRIu64 "\n", qt.name,
			   qt.running);
		if (qt.cap)
			buf_printf(out, "seeswarm_tenant_cpu_cap_millicores{tenant=\"%s\"} %" PRIu64 "\n",
				   qt.name, qt.cap);
	}
	buf_printf(out, "# HELP seeswarm_tenant_cost_total What a tenant's attempts cost (node price x share x time).\n"
			"# TYPE seeswarm_tenant_cost_total counter\n"
			"# HELP seeswarm_tenant_task_seconds_total How long a tenant's attempts ran.\n"
			"# TYPE seeswarm_tenant_task_seconds_total counter\n"
			"# HELP seeswarm_tenant_cpu_seconds_total CPU time a tenant's attempts used.\n"
			"# TYPE seeswarm_tenant_cpu_seconds_total counter\n");
	const char *tn;
	json_t *tu;
	json_object_foreach(j->tenant_usage, tn, tu)
	{
		buf_printf(out, "seeswarm_tenant_cost_total{tenant=\"%s\"} %.9g\n", tn,
			   json_number_value(json_object_get(tu, "cost")));
		buf_printf(out, "seeswarm_tenant_task_seconds_total{tenant=\"%s\"} %.3f\n", tn,
			   (double)json_integer_value(json_object_get(tu, "run_ms")) / 1000.0);
		buf_printf(out, "seeswarm_tenant_cpu_seconds_total{tenant=\"%s\"} %.3f\n", tn,
			   (double)json_integer_value(json_object_get(tu, "cpu_ms")) / 1000.0);
	}
	buf_printf(out, "# HELP seeswarm_tenant_cost_max What a tenant may spend (--tenant-max-cost).\n"
			"# TYPE seeswarm_tenant_cost_max gauge\n");
	for (size_t i = 0; i < j->n_cost_caps; i++)
		if (j->cost_caps[i].tenant[0])
			buf_printf(out, "seeswarm_tenant_cost_max{tenant=\"%s\"} %.9g\n", j->cost_caps[i].tenant,
				   j->cost_caps[i].amount);
	buf_printf(out, "# HELP seeswarm_tenant_budget_spent What counts against a tenant's budget: "
			"its attempts' cost in the budget's period (day, month or total), running ones so far.\n"
			"# TYPE seeswarm_tenant_budget_spent gauge\n");
	for (size_t i = 0; i < j->n_cost_caps; i++)
		if (j->cost_caps[i].tenant[0])
			buf_printf(out, "seeswarm_tenant_budget_spent{tenant=\"%s\",period=\"%s\"} %.9g\n",
				   j->cost_caps[i].tenant, period_names[j->cost_caps[i].period],
				   tenant_spent(j, j->cost_caps[i].tenant, j->cost_caps[i].period));
	struct {
		const char *name;
		uint64_t v;
	} c[] = {
		{"jobs_submitted_total", j->submitted}, {"jobs_succeeded_total", j->succeeded},
		{"jobs_failed_total", j->failed},	 {"jobs_canceled_total", j->canceled},
		{"jobs_forgotten_total", j->gc_removed},
		{"tasks_dispatched_total", j->dispatched}, {"task_results_total", j->results},
		{"task_results_stale_total", j->stale}, {"tasks_lost_total", j->lost_total},
		{"task_retries_total", j->retries_total}, {"tasks_preempted_total", j->preempted},
		{"scheduler_passes_total", j->passes},
		{"blob_chunks_served_total", j->blob_served}, {"blobs_fetched_total", j->blob_fetched},
		{"blob_gets_refused_total", j->blob_refused},
		{"lineage_reruns_total", j->lineage_reruns},
		{"manager_blobs_deleted_total", j->blobs_deleted},
		{"manager_blob_bytes_deleted_total", j->blob_bytes_deleted},
	};
	for (size_t i = 0; i < ARRAY_LEN(c); i++)
		buf_printf(out, "# TYPE seeswarm_%s counter\nseeswarm_%s %llu\n", c[i].name, c[i].name,
			   (unsigned long long)c[i].v);
	double p50, p99;
	latency(j, &p50, &p99);
	buf_printf(out, "# HELP seeswarm_task_start_latency_us Ready-to-start latency of recent tasks.\n"
			"# TYPE seeswarm_task_start_latency_us summary\n"
			"seeswarm_task_start_latency_us{quantile=\"0.5\"} %.0f\n"
			"seeswarm_task_start_latency_us{quantile=\"0.99\"} %.0f\n",
		   p50, p99);
}

char *jobs_rerun_spec(struct jobs *j, const char *id, const char *tenant)
{
	const struct job *jb = job_find(j, id);
	if (!jb || (tenant && strcmp(jb->spec->tenant, tenant) != 0))
		return NULL;
	/* The stored text parsed once already; it names the tenant so that an admin's rerun keeps it. */
	json_t *spec = json_loadb(jb->spec_text, jb->spec_len, JSON_REJECT_DUPLICATES, NULL);
	char *text = NULL;
	if (json_is_object(spec)) {
		json_object_set_new(spec, "tenant", json_string(jb->spec->tenant));
		text = json_dumps(spec, JSON_COMPACT);
	}
	json_decref(spec);
	return text;
}

/* The entry for tenant in by (an object keyed by tenant name), created empty. */
static json_t *tenant_entry(json_t *by, const char *tenant)
{
	json_t *e = json_object_get(by, tenant);
	if (!e) {
		e = json_object();
		json_object_set_new(by, tenant, e);
	}
	return e;
}

void jobs_tenants(struct jobs *j, json_t *by)
{
	struct sched_queue_tenant qt;
	for (size_t i = 0; sched_queue_tenant_at(j->queue, i, &qt); i++) {
		json_t *e = tenant_entry(by, qt.name);
		json_object_set_new(e, "weight", json_real(qt.weight));
		json_object_set_new(e, "cpu_running_m", json_integer((json_int_t)qt.running));
		json_object_set_new(e, "cpu_cap_m", json_integer((json_int_t)qt.cap));
		json_object_set_new(e, "tasks_queued", json_integer((json_int_t)qt.queued));
	}
	for (const struct job *jb = j->all; jb; jb = jb->next) {
		if (jb->st != J_RUNNING && !is_template(jb))
			continue;
		json_t *e = tenant_entry(by, jb->spec->tenant);
		json_object_set_new(e, "jobs_unfinished",
				    json_integer(json_integer_value(json_object_get(e, "jobs_unfinished")) + 1));
	}
	const char *name;
	json_t *e, *tu;
	json_object_foreach(j->tenant_usage, name, tu)
	{
		struct usage u = usage_of(tu);
		json_object_set_new(tenant_entry(by, name), "usage", usage_json(&u));
	}
	for (size_t i = 0; i < j->n_cost_caps; i++)
		if (j->cost_caps[i].tenant[0])
			tenant_entry(by, j->cost_caps[i].tenant);
	/* Tenants the queue has not met yet are still under the cap for every tenant (*=CPU). */
	json_object_foreach(by, name, e)
	{
		if (!json_object_get(e, "cpu_cap_m"))
			json_object_set_new(e, "cpu_cap_m", json_integer((json_int_t)sched_queue_cap(j->queue, name)));
		enum jobs_budget_period per;
		double budget = tenant_max_cost(j, name, &per);
		if (budget > 0) {
			json_object_set_new(e, "max_cost", json_real(budget));
			json_object_set_new(e, "budget_period", json_string(period_names[per]));
			json_object_set_new(e, "spent", json_real(tenant_spent(j, name, per)));
			if (per != JOBS_BUDGET_TOTAL)
				json_object_set_new(e, "budget_resets_ms",
						    json_integer(period_end_ms(per, time_wall_ms())));
		}
	}
}

json_t *jobs_health(struct jobs *j)
{
	size_t running = 0;
	for (struct job *jb = j->all; jb; jb = jb->next)
		running += jb->st == J_RUNNING;
	return json_pack("{s:I,s:I,s:I,s:I}", "jobs", (json_int_t)j->n_jobs, "jobs_running",
			 (json_int_t)running, "periodic_jobs", (json_int_t)j->n_periodic, "tasks_queued",
			 (json_int_t)sched_queue_len(j->queue));
}
