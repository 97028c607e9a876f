/*
 * jobspec.h - job specifications: parse, validate and expand a job's DAG.
 *
 * A job spec is JSON (docs/jobs.md). jobspec_parse() checks every field and
 * bound, expands `map` fan-outs into task instances, resolves dependencies
 * (explicit `after` plus data references to other tasks' outputs), rejects
 * cycles naming their members, and returns one immutable struct jobspec
 * whose tasks are in topological order (every dependency of task i has an
 * index below i). The manager stores the submitted text and re-parses it on
 * restart, so parsing is deterministic: the same text always yields the same
 * tasks in the same order.
 *
 * Errors carry a JSON path and an actionable message, e.g.
 *   tasks[2].resources.memory: "12Q" is not a size (use 512M, 2G, ...)
 *   cycle: a -> b -> c -> a
 *
 * Local files (`"file": PATH` inputs) are the CLI's business: the CLI
 * uploads them as blobs and rewrites the input to `"blob"` form before it
 * submits. jobspec_parse() refuses a "file" input unless
 * JOBSPEC_ALLOW_FILES is passed (the CLI's pre-check).
 *
 * Nothing here touches the network or the disk. All functions may be
 * called from any thread; a struct jobspec belongs to its caller.
 */
#ifndef SS_JOBSPEC_H
#define SS_JOBSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"
#include "manager/cron.h"

/* Bounds on a spec. */
#define JOBSPEC_MAX_JSON (1024u * 1024u)  /* bytes of spec text */
#define JOBSPEC_MAX_GROUPS 256            /* tasks as written in the spec */
#define JOBSPEC_MAX_TASKS 10000           /* task instances after map expansion */
#define JOBSPEC_MAX_MAP 4096              /* instances of one mapped task */
#define JOBSPEC_MAX_INPUTS 4096           /* inputs of one instance, after expansion */
#define JOBSPEC_MAX_DEPS 4096             /* dependencies of one instance */
#define JOBSPEC_NAME_MAX 63               /* job, tenant and task names */
#define JOBSPEC_MAX_JOB_TIMEOUT_MS (30ull * 24 * 3600 * 1000) /* a job's "timeout" */
#define JOBSPEC_MAX_COST 1e12             /* a job's "max_cost" */
#define JOBSPEC_MIN_EVERY_MS 1000ull      /* a periodic job's "every" */
#define JOBSPEC_MAX_EVERY_MS (366ull * 24 * 3600 * 1000)

/* Flags for jobspec_parse(). */
#define JOBSPEC_ALLOW_FILES 0x1u          /* accept "file" inputs (CLI pre-check) */

enum jobspec_optimize { JOBSPEC_OPT_BALANCED = 0, JOBSPEC_OPT_COST, JOBSPEC_OPT_LATENCY };
enum jobspec_placement { JOBSPEC_BINPACK = 0, JOBSPEC_SPREAD };

struct jobspec_label {
	char *key;
	char *value;
};

struct jobspec_policy {
	char **tee;                  /* allowed TEE types ("sim","tpm","sev-snp","tdx","sgx"); none = any */
	size_t n_tee;
	bool hardware;               /* "attestation": "hardware" (never a sim or insecure node) vs "any" */
	uint8_t (*code)[SHA256_LEN]; /* allowed code (bundle) digests; none = any */
	size_t n_code;
	struct jobspec_label *labels;/* node labels that must all match ("region" is a label) */
	size_t n_labels;
	char **features;             /* hardware features every node must have */
	size_t n_features;
	enum jobspec_optimize optimize;
	enum jobspec_placement placement;
};

#define JOBSPEC_MAX_KILL_GRACE_MS 600000u /* 10 minutes; the agent protocol's bound too */

struct jobspec_resources {
	uint32_t cpu_millicores;     /* default 1000 */
	uint64_t memory_bytes;       /* default 256 MiB */
	uint64_t disk_bytes;         /* /tmp size, default 64 MiB */
	uint64_t output_bytes;       /* /out size, default 64 MiB */
	uint32_t pids;               /* default 64 */
	uint64_t timeout_ms;         /* default 60 s */
	uint32_t kill_grace_ms;      /* "kill_grace": SIGTERM this long before SIGKILL on a cancel; default 0 */
};

enum jobspec_input_kind {
	JOBSPEC_IN_BLOB = 0,         /* a blob already in the swarm, by digest */
	JOBSPEC_IN_OUTPUT,           /* an output of an earlier task instance */
	JOBSPEC_IN_FILE,             /* a local file (only with JOBSPEC_ALLOW_FILES) */
};

struct jobspec_input {
	char *name;                  /* file name under /in (exec_name_valid) */
	enum jobspec_input_kind kind;
	uint8_t digest[SHA256_LEN];  /* BLOB */
	uint64_t size;               /* BLOB: declared size in bytes (0 if unknown) */
	uint32_t task;               /* OUTPUT: index of the producing instance (< this index) */
	char *output;                /* OUTPUT: the producer's declared output path */
	char *path;                  /* FILE: local path as written */
};

struct jobspec_task {
	char *name;                  /* unique: "count" or, for map instances, "count[3]" */
	uint32_t group;              /* index of the spec task it came from */
	int32_t map_index;           /* -1 when not mapped */
	char **argv;                 /* NULL-terminated, argc >= 1; {item}/{index} substituted */
	size_t argc;
	char **env;                  /* NULL-terminated "KEY=VALUE"; SS_MAP_INDEX/SS_MAP_ITEM added for maps */
	size_t envc;
	struct jobspec_input *inputs;
	size_t n_inputs;
	char **outputs;              /* declared output paths below /out (exec_relpath_valid), >= 0 */
	size_t n_outputs;
	struct jobspec_resources res;
	uint32_t retries;            /* extra attempts after the first; default 2, max 100 */
	uint64_t backoff_ms;         /* delay before the first retry, doubled each time (cap 10 min); default 1 s */
	int32_t priority;            /* higher runs first; -1000..1000, default 0 */
	uint32_t *deps;              /* indices of instances this one waits for (sorted, unique) */
	size_t n_deps;
	bool final;                  /* no other instance depends on it: its outputs are job results */
	bool replicate;              /* its outputs are critical blobs ("replicate"; default: final) */
	bool has_bundle;             /* runs code from a bundle; else the agent's empty bundle */
	uint8_t bundle_blob[SHA256_LEN];   /* the bundle's tar, an uploaded blob */
	uint8_t bundle_digest[SHA256_LEN]; /* its code identity: the digest of the unpacked tree */
};

struct jobspec_group {
	char *name;                  /* the task's name as written */
	uint32_t first;              /* index of its first instance */
	uint32_t count;              /* number of instances (1 unless mapped) */
};

/*
 * "periodic": the job is a schedule that launches a copy of itself (the
 * spec without "periodic") at each time it names: a cron expression in UTC,
 * or a fixed interval from the job's registration.
 */
struct jobspec_periodic {
	bool set;                           /* the spec has "periodic" */
	char cron_text[CRON_MAX_LEN + 1];   /* "cron" as written; "" with "every" */
	struct cron cron;
	uint64_t every_ms;                  /* "every"; 0 with "cron" */
	bool prohibit_overlap;              /* skip a launch while the last one still runs */
};

/*
 * "parameterized": the job is a template that runs once per dispatch
 * (jobs_dispatch), each with the metadata and payload the dispatch gives.
 */
#define JOBSPEC_MAX_META 64            /* metadata keys a parameterized job names */
#define JOBSPEC_META_VALUE_MAX 1024    /* bytes of one metadata value */
#define JOBSPEC_MAX_DISPATCH (64u << 10) /* bytes of a dispatch request */
enum jobspec_payload { JOBSPEC_PAYLOAD_OPTIONAL = 0, JOBSPEC_PAYLOAD_REQUIRED, JOBSPEC_PAYLOAD_FORBIDDEN };
struct jobspec_param {
	bool set;                    /* the spec has "parameterized" */
	char **meta_required;        /* keys a dispatch must give (environment-variable syntax) */
	size_t n_required;
	char **meta_optional;        /* keys a dispatch may give */
	size_t n_optional;
	enum jobspec_payload payload;
};

struct jobspec {
	char *name;
	char *tenant;                /* default "default" */
	bool tenant_given;           /* the spec named its tenant */
	struct jobspec_policy policy;
	bool fail_fast;              /* "on_failure": "fail_fast" (default) or "continue" */
	uint64_t timeout_ms;         /* "timeout": the job fails this long after its submission; 0 = none */
	double max_cost;             /* "max_cost": the job fails when its attempts cost more; 0 = none */
	struct jobspec_periodic periodic;
	struct jobspec_param param;
	struct jobspec_group *groups;
	size_t n_groups;
	struct jobspec_task *tasks;  /* topological order */
	size_t n_tasks;
};

/*
 * Parses and validates a spec. On success returns 0 and *out owns a new
 * jobspec (free with jobspec_free). On failure returns SS_EPARSE (not JSON,
 * or JSON of the wrong shape), SS_EINVAL (a bad value, a missing
 * dependency, a cycle) or SS_ELIMIT (a bound), and writes one precise
 * message, starting with the JSON path, to why.
 */
int jobspec_parse(const char *json, size_t len, unsigned flags, struct jobspec **out, char *why,
		  size_t whylen);
void jobspec_free(struct jobspec *js);

/*
 * Parses and checks a dispatch of the parameterized job js: body is the
 * JSON {"meta": {"KEY": "value", ...}, "payload": "<sha256 hex>"} (both
 * optional; at most JOBSPEC_MAX_DISPATCH bytes). Every required key must be
 * given, every key given must be one js names, values are strings of at
 * most JOBSPEC_META_VALUE_MAX bytes without NUL, and the payload must agree
 * with js->param.payload. Returns 0 with *meta = a new object of the keys
 * given (never NULL) and *has_payload/payload set, or SS_EPARSE/SS_EINVAL/
 * SS_ELIMIT with a precise message.
 */
int jobspec_dispatch_parse(const struct jobspec *js, const char *body, size_t len, json_t **meta,
			   bool *has_payload, uint8_t payload[SHA256_LEN], char *why, size_t whylen);

/* The largest node the swarm has (or could have), for jobspec_check_fits(). */
struct jobspec_limits {
	uint32_t cpu_millicores;
	uint64_t memory_bytes;
	uint64_t disk_bytes;
};

/*
 * Checks that every task's resource request fits within lim (a request no
 * node could ever satisfy). A zero field of lim is unknown and not checked.
 * Returns 0 or SS_EINVAL with a message such as
 * "tasks[1] (count[0]).resources.memory: 64G exceeds the largest node (16G)".
 */
int jobspec_check_fits(const struct jobspec *js, const struct jobspec_limits *lim, char *why,
		       size_t whylen);

/*
 * Parses a CPU amount: "500m" (millicores) or "2", "0.25" (cores, at most
 * three decimals) into millicores. Returns 0 or SS_EPARSE.
 */
int jobspec_parse_cpu(const char *s, uint64_t *out);

/* Returns the instance index of a task by its unique name, or -1. */
int32_t jobspec_find(const struct jobspec *js, const char *name);

const char *jobspec_optimize_name(enum jobspec_optimize o);

#endif
