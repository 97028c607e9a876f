/*
 * exec.h - the agent's sandboxed task executor.
 *
 * A task is a bundle directory (its code, identified by the SHA-256 of a
 * canonical listing, see exec_bundle_digest), an argv and env, named input
 * files, declared outputs and resource limits. exec_run() runs one task in a
 * fresh sandbox (user, pid, mount, ipc, uts and network namespaces, a
 * read-only root, size-capped tmpfs /tmp and /out, read-only /in, no
 * capabilities, no_new_privs, seccomp, Landlock, a per-task cgroup, rlimits
 * and a wall-clock timeout), collects its outputs with bounds and reports
 * what happened in a struct exec_result. exec_receipt_build() turns a result
 * into a signed JSON receipt that exec_receipt_verify() checks offline.
 *
 * Everything here returns 0 or a negative SS_E* code unless stated
 * otherwise. exec_run() may be called from several threads at once on the
 * same sandbox; every other object belongs to one thread at a time.
 */
#ifndef SS_EXEC_H
#define SS_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/core.h"

/* Bounds on everything a task package or its spec may contain. */
#define EXEC_MAX_ARGS 256
#define EXEC_MAX_ENV 256
#define EXEC_MAX_ARG_LEN 4096
/* Each input is an open memfd during exec_run(): RLIMIT_NOFILE must allow them (runner_new raises it). */
#define EXEC_MAX_INPUTS 4096
#define EXEC_MAX_OUTPUTS 256
#define EXEC_NAME_MAX 128            /* input/output name, bytes */
#define EXEC_MAX_INPUT_BYTES (1ULL << 30)
#define EXEC_BUNDLE_MAX_FILES 4096
#define EXEC_BUNDLE_MAX_DEPTH 16
#define EXEC_BUNDLE_MAX_BYTES (1ULL << 30)
#define EXEC_PATH_MAX 1024           /* relative path inside a bundle or /out */
#define EXEC_SPEC_MAX_JSON (256 * 1024)
#define EXEC_RECEIPT_MAX (1024 * 1024)
#define EXEC_CAPTURE_DEFAULT (1024 * 1024) /* stdout/stderr bytes kept, each */

/* ---- task package ------------------------------------------------------ */

struct exec_resources {
	uint32_t cpu_millicores; /* CPU quota; 0 = no quota */
	uint64_t memory_bytes;   /* memory cgroup limit (tmpfs pages count too) */
	uint64_t disk_bytes;     /* size of the /tmp tmpfs */
	uint64_t output_bytes;   /* size of the /out tmpfs and of all outputs copied out */
	uint32_t pids;           /* pids cgroup limit */
	uint64_t timeout_ms;     /* wall clock, from clone to exit */
	uint32_t kill_grace_ms;  /* on cancel: SIGTERM, then SIGKILL this long after; 0 = SIGKILL at once */
};

/* Defaults used by exec_spec_init(): 1 CPU, 256 MiB, 64 MiB /tmp, 64 MiB /out, 64 pids, 60 s. */
void exec_resources_default(struct exec_resources *r);

struct exec_input {
	char *name;           /* file name under /in: 1..EXEC_NAME_MAX of [A-Za-z0-9._-], not "." or ".." */
	char *path;           /* host file the agent reads (NULL until bound) */
	bool has_expect;      /* when set, the input's SHA-256 must equal expect */
	uint8_t expect[SHA256_LEN];
};

struct exec_spec {
	char *task_id;          /* ident_valid() */
	char *job_id;           /* ident_valid() */
	uint32_t attempt;
	bool has_bundle_digest; /* when set, the bundle must hash to this */
	uint8_t bundle_digest[SHA256_LEN];
	char **argv;            /* NULL-terminated; argc >= 1 */
	size_t argc;
	char **env;             /* NULL-terminated "KEY=VALUE" strings */
	size_t envc;
	struct exec_input *inputs;
	size_t n_inputs;
	char **outputs;         /* declared output paths relative to /out; none = collect every file */
	size_t n_outputs;
	/*
	 * The task keeps nothing (n_outputs must be 0): /out is the template's
	 * empty read-only directory, and nothing is collected or reported.
	 */
	bool no_out;
	struct exec_resources res;
	bool network;           /* false: a network namespace with no usable interface */
	char *cwd;              /* working directory inside the sandbox; default /bundle */
	struct exec_cancel *cancel; /* borrowed, may be NULL; exec_spec_free leaves it alone */
	struct exec_live *live;     /* borrowed, may be NULL: receives the output as it comes */
};

/*
 * The output of a running task as it comes, for clients that follow it.
 * exec_run appends what the task writes to stdout (stream 0) and stderr
 * (stream 1) from its capture loop; other threads read it. It keeps the last
 * EXEC_LIVE_KEEP bytes of each stream and counts every byte, so offsets are
 * positions in the whole stream, as the task wrote it (the capture cap of
 * exec_result does not apply). Thread-safe.
 */
#define EXEC_LIVE_KEEP (256u * 1024u)

struct exec_live;

struct exec_live *exec_live_new(void);
void exec_live_free(struct exec_live *l);
/* Appends len bytes to stream (0 or 1). */
void exec_live_append(struct exec_live *l, int stream, const void *data, size_t len);
/*
 * Copies at most max bytes of stream from offset from into dst. Returns the
 * number copied and sets *at to the offset of the first: later than from when
 * those bytes are no longer kept, and the stream's length when from is past
 * it. *total is the stream's length.
 */
size_t exec_live_read(struct exec_live *l, int stream, uint64_t from, void *dst, size_t max,
		      uint64_t *at, uint64_t *total);

/* Fills spec with defaults: no argv, task/job "local", attempt 1, default resources. */
void exec_spec_init(struct exec_spec *spec);
void exec_spec_free(struct exec_spec *spec);
/* Appends to the argv/env/input/output lists (the strings are copied). */
int exec_spec_add_arg(struct exec_spec *spec, const char *arg);
int exec_spec_add_env(struct exec_spec *spec, const char *kv);
int exec_spec_add_input(struct exec_spec *spec, const char *name, const char *path);
int exec_spec_add_output(struct exec_spec *spec, const char *path);
/* Checks every bound of the spec; returns SS_EINVAL with a reason in why. */
int exec_spec_validate(const struct exec_spec *spec, char *why, size_t whylen);
/* True when s is a valid input name (see struct exec_input). */
bool exec_name_valid(const char *s);
/* True when s is a clean relative path: components are exec_name_valid(). */
bool exec_relpath_valid(const char *s);

/*
 * Parses a task spec (the task manifest) from JSON:
 *   {"task_id":"t1","job_id":"j1","attempt":1,"bundle_digest":"<64 hex>",
 *    "argv":["prog","arg"],"env":{"K":"V"},"inputs":{"name":"<64 hex>"|null},
 *    "outputs":["result.txt"],"network":false,"cwd":"/bundle",
 *    "resources":{"cpu_millicores":1000,"memory":"64M","disk":"64M",
 *                 "output":"16M","pids":64,"timeout":"5s"}}
 * Unknown keys are an error. Input paths are left NULL for the caller to
 * bind. On success *spec owns everything; on failure it is left empty.
 */
int exec_spec_parse(const char *json, size_t len, struct exec_spec *spec, char *why,
		    size_t whylen);

/*
 * Computes the bundle digest of dir: SHA-256 over the canonical listing
 * (see docs/executor.md). The listing itself is appended to canon when canon
 * is not NULL. Refuses device files, fifos and sockets (SS_EPOLICY), names
 * with control bytes or '/', and trees beyond EXEC_BUNDLE_MAX_* (SS_ELIMIT).
 */
int exec_bundle_digest(const char *dir, uint8_t out[SHA256_LEN], struct buf *canon);

/*
 * Parses a canonical listing back into its entries and checks that it is
 * canonical (sorted, unique, bounded). Returns the entry count in *count.
 * Used to check listings received from a manager, and by the fuzzer.
 */
int exec_bundle_listing_check(const char *text, size_t len, size_t *count);

/*
 * Unpacks a tar bundle (ustar, pax or GNU tar, plain or gzip) into dest,
 * which must not exist yet; see bundle_tar.c for what is allowed (relative
 * paths without . or .., only files, directories and symbolic links, no
 * writing through links, permission bits only, EXEC_BUNDLE_MAX_* bounds).
 * Returns 0; SS_EPARSE (not a tar, damaged), SS_EPOLICY (a forbidden entry),
 * SS_ELIMIT or SS_EIO, with why naming the entry. On failure dest is gone.
 * The bundle's digest is then exec_bundle_digest(dest).
 */
int exec_bundle_unpack_tar(const char *tar_path, const char *dest, char *why, size_t whylen);
/* The same from memory (tests, the fuzzer). */
int exec_bundle_unpack_tar_mem(const void *data, size_t len, const char *dest, char *why,
			       size_t whylen);

/*
 * SHA-256 of an open file from its current offset to EOF, at most max bytes
 * (SS_ETOOBIG beyond), into out, and its length into *size (size may be
 * NULL). When copy_to is not -1, every byte read is also written there, so
 * that what was hashed is what was copied. Returns 0, SS_ETOOBIG, SS_EIO or
 * SS_ECRYPTO.
 */
int exec_digest_fd(int fd, int copy_to, uint64_t max, uint8_t out[SHA256_LEN], uint64_t *size);

/* ---- results ----------------------------------------------------------- */

enum exec_status {
	EXEC_EXITED = 0,     /* code = exit status */
	EXEC_SIGNALED,       /* code = signal number */
	EXEC_OOM,            /* killed by the memory cgroup's OOM killer */
	EXEC_TIMEOUT,        /* killed at the wall-clock timeout */
	EXEC_EXEC_ERROR,     /* execve failed; err = errno */
	EXEC_SETUP_ERROR,    /* the sandbox could not be built; err = errno, msg says where */
	EXEC_OUTPUT_ERROR,   /* the task ran but its outputs were refused (msg says why) */
	EXEC_PIDS_LIMIT,     /* exited 0, but a fork failed at the pids limit on the way */
};

const char *exec_status_name(enum exec_status s);

struct exec_usage {
	uint64_t cpu_ns;         /* from cpuacct (v1) / cpu.stat (v2), else rusage */
	uint64_t peak_mem_bytes; /* memory.max_usage_in_bytes (v1) / memory.peak (v2), else maxrss */
	uint64_t wall_ms;
	uint64_t oom_kills;      /* OOM kills inside the task's cgroup */
	bool pids_limit_hit;     /* a fork failed at the pids limit */
};

struct exec_file_digest {
	char *name;
	uint64_t size;
	uint8_t sha256[SHA256_LEN];
};

struct exec_result {
	enum exec_status status;
	int code;
	int err;
	char msg[256];
	struct exec_usage usage;
	int64_t start_ms, end_ms; /* wall clock, Unix ms */
	uint8_t code_digest[SHA256_LEN];
	struct exec_file_digest *inputs;
	size_t n_inputs;
	struct exec_file_digest *outputs;
	size_t n_outputs;
	struct buf out, err_out;  /* captured stdout/stderr (not NUL-terminated) */
	bool out_truncated, err_truncated;
};

/* True when the task itself succeeded: exited 0 and its outputs were accepted. */
bool exec_result_ok(const struct exec_result *r);
void exec_result_free(struct exec_result *r);

/* ---- resource manager -------------------------------------------------- */

struct exec_capacity;

/* Capacity of an agent: total CPU millicores, memory bytes, pids and concurrent tasks. */
struct exec_capacity *exec_capacity_new(uint32_t cpu_millicores, uint64_t memory_bytes,
					uint32_t pids, uint32_t max_tasks);
void exec_capacity_free(struct exec_capacity *c);
/*
 * Reserves r if it fits what is left; otherwise returns SS_ELIMIT and names
 * the resource that does not fit in why. Thread-safe.
 */
int exec_capacity_admit(struct exec_capacity *c, const struct exec_resources *r, char *why,
			size_t whylen);
/* Returns a reservation made by exec_capacity_admit(). Thread-safe. */
void exec_capacity_release(struct exec_capacity *c, const struct exec_resources *r);
/* Writes "cpu=USED/TOTALm mem=USED/TOTAL pids=USED/TOTAL tasks=USED/TOTAL". */
void exec_capacity_report(struct exec_capacity *c, char *out, size_t outlen);

/* ---- cgroups ----------------------------------------------------------- */

enum exec_cg_mode { EXEC_CG_NONE = 0, EXEC_CG_V1, EXEC_CG_V2 };

struct exec_cgroup;

/*
 * Detects which cgroup hierarchy has usable memory and pids controllers for
 * this process: v2 when the unified hierarchy delegates them, else v1 when
 * the memory and pids hierarchies are mounted, else NONE.
 */
enum exec_cg_mode exec_cgroup_detect(void);
/* Creates a cgroup named name (ident_valid) below this process's cgroups. */
int exec_cgroup_create(struct exec_cgroup **out, enum exec_cg_mode mode, const char *name);
/* Sets memory (and memory+swap), pids and CPU quota limits. */
int exec_cgroup_set_limits(struct exec_cgroup *cg, const struct exec_resources *r);
/* Snapshots the counters so exec_cgroup_usage() reports this run only. */
int exec_cgroup_begin(struct exec_cgroup *cg);
/*
 * Fills at most max fds with the cgroup's cgroup.procs files (O_WRONLY,
 * O_CLOEXEC; one per distinct hierarchy) and returns the count, or SS_EIO.
 * A child that writes "0" to each joins the cgroup. The descriptors stay
 * cg's: the caller must not close them, and they are valid until
 * exec_cgroup_destroy().
 */
int exec_cgroup_join_fds(struct exec_cgroup *cg, int *fds, size_t max);
/* Reports CPU time, peak memory, OOM kills and pids-limit hits since begin. */
int exec_cgroup_usage(struct exec_cgroup *cg, struct exec_usage *u);
/*
 * Removes the task cgroups of agents that died without cleaning up (kill -9):
 * every "seeswarm-task-PID-N" beside this process's own whose PID no longer
 * exists. Their processes (orphaned tasks) are killed first. Returns how
 * many cgroup directories it removed. Cgroups of live agents are left alone.
 */
int exec_cgroup_sweep(enum exec_cg_mode mode);
/* SIGKILLs every process in the cgroup (cgroup.kill on v2). */
int exec_cgroup_kill(struct exec_cgroup *cg);
/* True when no process is left in the cgroup. */
bool exec_cgroup_empty(struct exec_cgroup *cg);
/* Removes the cgroup (it must be empty) and frees cg. NULL is a no-op. */
void exec_cgroup_destroy(struct exec_cgroup *cg);

/* ---- seccomp and Landlock ---------------------------------------------- */

/*
 * Builds the task's seccomp filter as classic BPF. *prog_out is an xmalloc'd
 * struct sock_fprog (filter included) that the child loads with
 * seccomp(SECCOMP_SET_MODE_FILTER); free it with exec_seccomp_free().
 */
int exec_seccomp_build(void **prog_out);
void exec_seccomp_free(void *prog);
/* Loads a filter built by exec_seccomp_build(); async-signal-safe. Returns 0 or -errno. */
int exec_seccomp_load(const void *prog);

/* The kernel's Landlock ABI version, or 0 when Landlock is unavailable. */
int exec_landlock_abi(void);
/*
 * Restricts the calling process: read and execute everywhere below "/",
 * read-write below each of rw_dirs, write to /dev/null; no TCP bind or
 * connect unless network; no abstract unix sockets or signals outside the
 * sandbox (ABI >= 6). Needs no_new_privs. Async-signal-safe (no allocation).
 * Returns 0 or -errno.
 */
int exec_landlock_apply(int abi, const char *const *rw_dirs, bool network);

/* ---- the sandbox ------------------------------------------------------- */

struct exec_sandbox;

struct exec_sandbox_opts {
	const char *state_dir;    /* holds the empty root mount point; default /run/seeswarm-exec */
	uid_t uid;                /* host uid and gid the task runs as (mapped to 0 inside); */
	gid_t gid;                /*   0 picks EXEC_SANDBOX_UID */
	bool shared_netns;        /* reuse one pre-created empty netns (needs Landlock ABI >= 6) */
	bool no_landlock;         /* for measurements only */
	size_t capture_bytes;     /* stdout/stderr cap each; 0 = EXEC_CAPTURE_DEFAULT */
	const uint8_t (*allow)[SHA256_LEN]; /* bundle digest allow-list; NULL = any */
	size_t n_allow;
	unsigned warm;            /* sandboxes prepared ahead of demand (0 = none, at most 8) */
};

#define EXEC_SANDBOX_UID 990000

/*
 * Prepares a sandbox factory: builds the seccomp filter, probes Landlock and
 * cgroups, builds the template mount namespace every task copies, and (with
 * shared_netns) creates the empty network namespace. Needs root. Returns
 * SS_EPERM without it, SS_EIO when the template cannot be built.
 */
int exec_sandbox_new(struct exec_sandbox **out, const struct exec_sandbox_opts *opts);
void exec_sandbox_free(struct exec_sandbox *sb);
/* How many tasks ran in a sandbox prepared ahead of demand (opts.warm). Thread-safe. */
uint64_t exec_sandbox_warm_hits(const struct exec_sandbox *sb);
/* A one-line description of the layers in use (for logs and the CLI). */
const char *exec_sandbox_describe(const struct exec_sandbox *sb);

/*
 * Runs spec in a fresh sandbox with bundle_dir mounted read-only at /bundle.
 * Copies accepted outputs into out_dir when it is not NULL (it must exist and
 * be empty of the output names). Returns 0 when the task was run or refused
 * on its own account (see res->status), SS_EPOLICY when the bundle is not
 * on the allow-list or does not match spec->bundle_digest, SS_EINVAL for a
 * bad spec, or another negative code when the agent itself failed. res is
 * always initialised and must be released with exec_result_free().
 */
int exec_run(struct exec_sandbox *sb, const struct exec_spec *spec, const char *bundle_dir,
	     const char *out_dir, struct exec_result *res);

/* ---- cancellation ---------------------------------------------------- */

/*
 * A cancellation token lets another thread stop an exec_run() in progress:
 * set spec->cancel to it before the run. Once triggered, exec_run() kills
 * the task (its pid namespace and its cgroup) at once, or does not start it
 * when the trigger came first, skips output collection, and reports
 * status EXEC_SIGNALED, code SIGKILL and msg "cancelled". A token stays
 * triggered; use a new one per run.
 */
struct exec_cancel;

int exec_cancel_new(struct exec_cancel **out);
/* Triggers the token. Thread-safe and idempotent; never blocks. */
void exec_cancel_trigger(struct exec_cancel *c);
/* True once exec_cancel_trigger() was called. Thread-safe. */
bool exec_cancel_triggered(struct exec_cancel *c);
/* Frees the token; no exec_run() may still be using it. NULL is a no-op. */
void exec_cancel_free(struct exec_cancel *c);

/* ---- receipts ---------------------------------------------------------- */

struct exec_receipt_info {
	const char *node_id;
	const uint8_t *attest_digest; /* SHA-256 of the attestation result, or NULL */
};

/*
 * Builds the signed receipt for a finished task: canonical JSON (sorted
 * keys, compact) of {"alg","cert","receipt","sig"}, where sig is the ECDSA
 * P-256/SHA-256 signature (DER, low-s, lowercase hex) over the canonical JSON
 * of the "receipt" object, and cert the signer's certificate PEM. *out is
 * NUL-terminated and ends with '\n'; the caller frees it.
 */
int exec_receipt_build(const struct exec_spec *spec, const struct exec_result *res,
		       const struct exec_receipt_info *info, EVP_PKEY *key, X509 *cert,
		       char **out, size_t *out_len);

/*
 * Verifies a receipt offline: the file must be exactly the canonical
 * serialisation (plus one optional final '\n'), the certificate must chain
 * to a certificate in ca_pem (PEM, one or more), carry digitalSignature if it
 * has a keyUsage, and have CN equal to the receipt's node_id, and the
 * signature must verify and be low-s. Returns 0 when valid, else SS_EAUTH,
 * SS_EPARSE or SS_ECRYPTO with the reason in why. When body_out is not NULL
 * it receives the canonical receipt body (caller frees).
 */
int exec_receipt_verify(const char *data, size_t len, const char *ca_pem, size_t ca_len,
			char *why, size_t whylen, char **body_out);

/*
 * Creates an ephemeral EC P-256 key and a self-signed certificate with
 * CN = node_id (valid one day, digitalSignature) for run-local receipts.
 */
int exec_ephemeral_identity(const char *node_id, EVP_PKEY **key, X509 **cert);

#endif
