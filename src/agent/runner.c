/*
 * runner.c - the agent's task runner (the contract is in runner.h).
 *
 * The life of one attempt, all on the agent's loop thread unless marked
 * "worker":
 *
 *   TaskDispatch  -> duplicates are dropped (an attempt that runs or waits
 *                    for inputs) or answered with the stored result (an
 *                    attempt already finished); an older attempt of the same
 *                    task is cancelled; a dispatch older than a held attempt
 *                    is stale and dropped. Then the dispatch becomes an
 *                    exec_spec (names, digests and bounds checked; inline
 *                    inputs must hash to their digest, else "input_error"),
 *                    and its resources are reserved with exec_capacity_admit
 *                    ("refused" when they do not fit or the sandbox is
 *                    unavailable, which the manager re-queues without
 *                    counting a failure). A dispatch that does not fit while
 *                    attempts the manager cancelled still run (it preempted
 *                    them to make room) is parked, up to RUNNER_PARK_MAX,
 *                    and offered again each time a run ends; it is refused
 *                    once no cancelled attempt runs and it still does not
 *                    fit. A parked dispatch counts as held (runner_task_refs)
 *                    and a cancel of it ends it as "signaled".
 *   inputs        -> an input that is neither inline nor in the blob store is
 *                    fetched from the manager: one fetch per digest however
 *                    many attempts wait for it, BlobGet requests of 256 KiB
 *                    with at most RUNNER_WINDOW outstanding per blob and
 *                    RUNNER_INFLIGHT_MAX bytes outstanding overall, streamed
 *                    into a blob_writer that checks digest and size on
 *                    commit. A BlobData error or a failed commit fails every
 *                    waiting attempt with "input_error". A disconnect aborts
 *                    the fetches; the next runner_on_admitted restarts them.
 *   run           -> TaskStarted is sent, then uv_queue_work. Worker: write
 *                    inline inputs and export stored ones into
 *                    work/<task>.<attempt>/in, exec_run (cancellable through
 *                    an exec_cancel token), import every output into the blob
 *                    store, sign the receipt with the identity copied at
 *                    start (up-referenced, so set_identity may change it
 *                    meanwhile), build and pack the TaskResult and remove
 *                    the work directory. Loop: release the capacity, hold
 *                    the packed result in memory and send it when connected.
 *                    stored_persist writes a held result to
 *                    results/<task>.<attempt>.res (result_file_write: a
 *                    checksummed file, renamed into place but not fsynced)
 *                    when no TaskAck came within RUNNER_PERSIST_AFTER_MS,
 *                    when the connection drops, when held results exceed
 *                    RUNNER_MEM_RESULTS bytes, and on runner_close.
 *   TaskAck       -> the result (and its file, if any) is forgotten.
 *   reconnect     -> runner_on_admitted sends every stored result again
 *                    (paced by the connection's write queue).
 *
 * Every attempt produces exactly one stored result, early failures
 * ("refused", "input_error", cancelled while fetching) included, except
 * attempts killed by runner_close: they leave nothing, and the manager sees
 * in the next Hello that the agent no longer holds them. So does a kill -9
 * of the agent for results it held only in memory: those attempts run again
 * (execution is at least once; the manager commits each result once).
 *
 * BlobGet from the manager is served from the blob store (at most
 * MSG_MAX_BLOB_CHUNK bytes per answer); a blob the agent does not hold is
 * answered with error = SS_ENOTFOUND negated.
 *
 * A chunk (BlobData) must answer its request exactly: same digest and
 * offset, the requested length, and total = the declared input size;
 * anything else fails the input. Answers may arrive out of order within a
 * blob's window.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/exec/exec.h"
#include "agent/peer.h"
#include "agent/runner.h"
#include "core/core.h"
#include "data/blobcache.h"
#include "data/blobstore.h"
#include "data/grant.h"
#include "net/frame.h"

#define RUNNER_CHUNK (256u * 1024u)           /* bytes asked for per BlobGet */
#define RUNNER_WINDOW 4                       /* outstanding BlobGets per blob */
#define RUNNER_INFLIGHT_MAX (16u << 20)       /* requested, unwritten bytes, all blobs */
#define RUNNER_ACTIVE_MAX 16                  /* blobs being written at once */
#define RUNNER_INLINE_BUDGET (256u * 1024u)   /* inline output bytes per result */
#define RUNNER_RESULT_MAX (FRAME_MAX_DEFAULT - 4096) /* packed result, to fit a frame */
#define RUNNER_RESULT_FILE_MAX (2u << 20)
#define RUNNER_PERSIST_AFTER_MS 1000u     /* an unacknowledged result goes to disk after this */
#define RUNNER_MEM_RESULTS (32u << 20)    /* ... or when held results exceed these bytes */
#define RUNNER_RESEND_QUEUE (8u << 20)        /* pause resends above this write queue */
#define RUNNER_RESEND_RETRY_MS 20
#define RUNNER_CLOSE_POLL_MS 10
#define RUNNER_WHY 400                        /* result messages stay below msg.c's 511 */
#define RUNNER_PARK_MAX 64                    /* dispatches waiting for cancelled attempts to end */

/* An unacknowledged result on disk: results/<task_id>.<attempt>.res. */
struct stored {
	struct stored *next;
	char *task_id;
	uint32_t attempt;
	bool unsent;       /* not yet sent on the current connection */
	uint8_t *data;     /* the packed result while it is held in memory; NULL once on disk */
	size_t len;
	uint64_t since_ms; /* when it was made (monotonic) */
	uint8_t (*outs)[SHA256_LEN]; /* the result's output digests: held, not cache, until the ack */
	size_t n_outs;
};

/* An attempt waiting for one of its inputs, or (a == NULL) a replica the manager asked for. */
struct waiter {
	struct attempt *a;
	size_t idx; /* input index in a->spec, or BUNDLE_IDX for the code bundle */
};

#define BUNDLE_IDX SIZE_MAX

struct slot {
	uint64_t id;
	uint64_t off;
	uint32_t len;
	Seeswarm__V1__BlobData *got; /* arrived ahead of an earlier chunk */
};

/* An agent that holds a blob, as the manager said (TaskInput.sources). */
struct source {
	char node[MSG_MAX_ID + 1];
	char addr[MSG_MAX_ADDR + 1];
};

/*
 * One blob being fetched, for every attempt that needs it: from the peers
 * that hold it, in the order given, then from the manager.
 */
struct fetch {
	struct fetch *next;
	uint8_t digest[SHA256_LEN];
	uint64_t size;
	struct source src[MSG_MAX_SOURCES];
	size_t n_src, src_i;   /* src_i: the source in use or next to try */
	struct peer_link *link; /* the peer being asked; NULL = the manager */
	struct blob_writer *w; /* NULL until started (and after a disconnect) */
	uint64_t next_off;     /* next offset to request */
	uint64_t done_off;     /* bytes written to w */
	struct slot slot[RUNNER_WINDOW];
	size_t n_slot;
	struct waiter *waiters;
	size_t n_waiters;
	uint8_t grant[MSG_MAX_GRANT]; /* the manager's grant to read it, sent with each BlobGet */
	size_t grant_len;
};

enum att_state { AT_FETCHING, AT_RUNNING };

struct attempt {
	struct attempt *next;
	struct runner *r;
	enum att_state st;
	char *task_id;
	uint32_t attempt;
	Seeswarm__V1__TaskDispatch *d; /* owned; inline input data lives here */
	struct exec_spec spec;
	size_t pending;                /* inputs still being fetched */
	char *dir, *out_dir;           /* work/<task>.<attempt>, .../out */
	int64_t started_ms;
	struct exec_cancel *cancel;
	struct exec_live *live;        /* from start_run: the output as it comes */
	bool followed;                 /* the manager asked for the output (TaskLogGet) */
	uint64_t log_sent[2];          /* stdout, stderr: offsets sent to the manager so far */
	char cancel_reason[MSG_MAX_STR + 1];
	atomic_bool cancelled;         /* stored (release) after cancel_reason is written */
	atomic_bool discard;           /* runner_close: leave no result */
	EVP_PKEY *key;                 /* up-referenced at start for the worker */
	X509 *cert;
	bool has_attest;
	uint8_t attest[SHA256_LEN];
	uv_work_t work;
	/* Written by the worker, read by the after-work callback. */
	ProtobufCMessage *result;
	uint8_t *packed; /* result, packed (owned until deliver) */
	size_t packed_len;
};

struct runner {
	uv_loop_t *loop;
	struct runner_io io;
	char *node_id;
	char *results_dir, *work_dir, *bundle_dir, *bundles_dir;
	atomic_uint_fast64_t bundle_seq; /* names for temporary unpack directories */
	struct blobstore *bs;
	struct exec_sandbox *sb;       /* NULL: every task is refused with sb_why */
	char sb_why[200];
	struct exec_capacity *cap;
	EVP_PKEY *key;                 /* borrowed (runner_set_identity) */
	X509 *cert;
	bool has_attest;
	uint8_t attest[SHA256_LEN];
	struct attempt *attempts;
	/*
	 * Dispatches that did not fit while cancelled attempts still held their
	 * capacity (the manager preempted them for these), oldest first, owned.
	 */
	Seeswarm__V1__TaskDispatch *parked[RUNNER_PARK_MAX];
	size_t n_parked;
	struct stored *stored;
	size_t stored_mem;  /* bytes of packed results held in memory */
	struct blobcache *cache;       /* blobs this agent may evict (fetched for its tasks, untracked) */
	EVP_PKEY *grant_key;           /* the manager's grant key (borrowed); NULL: peers are refused */
	struct grant_cache grants;     /* grants of peers' BlobGets that verified */
	uint64_t evicted_blobs;        /* counted for the log line of each trim */
	uint8_t (*doomed)[SHA256_LEN]; /* released while in use: deleted once unused */
	size_t n_doomed;
	struct fetch *fetches;
	struct peer *peer;             /* borrowed; NULL: every fetch goes to the manager */
	uint64_t next_req;
	uint64_t inflight;
	uint32_t n_active;
	uint32_t n_work;               /* uv_queue_work requests not yet back */
	bool connected;
	bool closing;
	uv_timer_t timer;              /* resend pacing; close polling */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void fetch_pump(struct runner *r);
static void cache_trim(struct runner *r);
static void on_timer(uv_timer_t *t);
static void attempt_abort(struct attempt *a, const char *status, int32_t code, const char *why);
static void unpark(struct runner *r);

/* ---- small helpers ------------------------------------------------------ */

static char *result_path(const struct runner *r, const char *task_id, uint32_t attempt)
{
	return xasprintf("%s/%s.%" PRIu32 ".res", r->results_dir, task_id, attempt);
}

/* Removes name below dfd, recursively, without following symlinks. */
static void rm_tree(const char *path)
{
	if (dir_remove_tree(path) != 0)
		log_warn("runner: cannot remove %s completely: %s", path, strerror(errno));
}

/*
 * Result files: result_magic, the SHA-256 of the payload, then the packed
 * TaskResult. They are renamed into place but not fsynced. A result file
 * only spares the task a re-run: after kill -9 of the agent the page cache
 * still holds it; after a crash of the whole host it may be torn or empty,
 * the checksum says so, the file is set aside, and the manager, which
 * never got that result (or got it and will not ask again), re-runs the
 * attempt because the agent no longer reports holding it. Execution is at
 * least once either way; fsync here cost a disk flush per task.
 */
static const uint8_t result_magic[4] = {'S', 'S', 'R', '1'};
#define RESULT_HDR (sizeof(result_magic) + SHA256_LEN)

/* Writes a result file (temporary, then rename). Thread-safe. Returns 0 or SS_EIO. */
static int result_file_write(const char *path, const uint8_t *data, size_t len)
{
	uint8_t hdr[RESULT_HDR];
	char *tmp = xasprintf("%s.tmp", path);
	int rc = 0;
	memcpy(hdr, result_magic, sizeof(result_magic));
	sha256(data, len, hdr + sizeof(result_magic));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = SS_EIO;
		goto out;
	}
	rc = fd_write_all(fd, hdr, sizeof(hdr));
	if (!rc)
		rc = fd_write_all(fd, data, len);
	if (close(fd) != 0 && !rc)
		rc = SS_EIO;
	if (!rc && rename(tmp, path) != 0)
		rc = SS_EIO;
	if (rc)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

/*
 * Finds the packed TaskResult in a result file's bytes: after a header whose
 * checksum matches, or the whole file for one written before the header
 * existed (a packed TaskResult never starts with result_magic's first byte,
 * a group start). Returns 0, or SS_EINTEGRITY with why set.
 */
static int result_file_payload(const char *data, size_t len, const uint8_t **payload,
			       size_t *plen, const char **why)
{
	if (len < sizeof(result_magic) || memcmp(data, result_magic, sizeof(result_magic)) != 0) {
		*payload = (const uint8_t *)data;
		*plen = len;
		return 0;
	}
	uint8_t d[SHA256_LEN];
	if (len < RESULT_HDR) {
		*why = "it is truncated";
		return SS_EINTEGRITY;
	}
	sha256((const uint8_t *)data + RESULT_HDR, len - RESULT_HDR, d);
	if (!ct_equal(d, (const uint8_t *)data + sizeof(result_magic), SHA256_LEN)) {
		*why = "its checksum does not match (torn by a crash?)";
		return SS_EINTEGRITY;
	}
	*payload = (const uint8_t *)data + RESULT_HDR;
	*plen = len - RESULT_HDR;
	return 0;
}

/* Writes data to a new file (O_EXCL, 0600). Thread-safe. */
static int write_new_file(const char *path, const void *data, size_t len)
{
	int rc = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return SS_EIO;
	rc = fd_write_all(fd, data, len);
	close(fd);
	return rc;
}

static int send_msg(struct runner *r, uint16_t type, const ProtobufCMessage *m)
{
	if (!r->connected || r->closing)
		return SS_ECLOSED;
	int rc = r->io.send(r->io.arg, type, m);
	if (rc == SS_ECLOSED)
		r->connected = false;
	else if (rc)
		log_warn("runner: cannot send %s: %s", msg_type_name(type), ss_strerror(rc));
	return rc;
}

/* ---- stored results ----------------------------------------------------- */

static struct stored *stored_find(struct runner *r, const char *task_id, uint32_t attempt)
{
	for (struct stored *s = r->stored; s; s = s->next)
		if (s->attempt == attempt && !strcmp(s->task_id, task_id))
			return s;
	return NULL;
}

/* Holds a result for (task_id, attempt), once; tr gives its output digests. */
static struct stored *stored_add(struct runner *r, const char *task_id, uint32_t attempt,
				 const Seeswarm__V1__TaskResult *tr)
{
	struct stored *s = stored_find(r, task_id, attempt);
	if (s)
		return s;
	s = xcalloc(1, sizeof(*s));
	s->task_id = xstrdup(task_id);
	s->attempt = attempt;
	s->unsent = true;
	if (tr->n_outputs) {
		s->outs = xcalloc(tr->n_outputs, SHA256_LEN);
		for (size_t i = 0; i < tr->n_outputs; i++)
			if (tr->outputs[i]->digest.len == SHA256_LEN)
				memcpy(s->outs[s->n_outs++], tr->outputs[i]->digest.data, SHA256_LEN);
	}
	s->next = r->stored;
	r->stored = s;
	return s;
}

static void stored_remove(struct runner *r, struct stored *s)
{
	for (struct stored **pp = &r->stored; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	r->stored_mem -= s->data ? s->len : 0;
	free(s->data);
	free(s->outs);
	free(s->task_id);
	free(s);
}

/*
 * Writes the results held in memory to their files: every one when all is
 * set (the connection is gone, or the runner closes), else those older than
 * RUNNER_PERSIST_AFTER_MS, or all when they hold more than RUNNER_MEM_RESULTS
 * bytes. A result acknowledged within that time never touches the disk. A
 * failed write keeps it in memory and is tried again next time. Loop thread.
 */
static void stored_persist(struct runner *r, bool all)
{
	uint64_t now = time_mono_ms();
	bool full = r->stored_mem > RUNNER_MEM_RESULTS;
	for (struct stored *s = r->stored; s; s = s->next) {
		if (!s->data || (!all && !full && now - s->since_ms < RUNNER_PERSIST_AFTER_MS))
			continue;
		char *path = result_path(r, s->task_id, s->attempt);
		int rc = result_file_write(path, s->data, s->len);
		if (rc) {
			log_error("runner: cannot store %s: %s; the result stays in memory only", path,
				  ss_strerror(rc));
		} else {
			r->stored_mem -= s->len;
			free(s->data);
			s->data = NULL;
		}
		free(path);
	}
}

/* Sends a held result, from memory or from its file. */
static int stored_send(struct runner *r, struct stored *s)
{
	char *path = result_path(r, s->task_id, s->attempt), *data = NULL;
	ProtobufCMessage *m = NULL;
	const char *why = NULL;
	size_t len = 0;
	const uint8_t *payload = s->data;
	size_t plen = s->len;
	int rc = 0;
	if (!s->data && (rc = file_read(path, RUNNER_RESULT_FILE_MAX, &data, &len))) {
		log_warn("runner: cannot read %s: %s", path, ss_strerror(rc));
		goto out;
	}
	if ((!s->data && (rc = result_file_payload(data, len, &payload, &plen, &why))) ||
	    (rc = msg_decode(MSG_TASK_RESULT, payload, plen, &m, &why))) {
		log_warn("runner: %s does not decode: %s", path, why);
		goto out;
	}
	rc = send_msg(r, MSG_TASK_RESULT, m);
	if (!rc)
		s->unsent = false;
out:
	msg_free(m);
	free(data);
	free(path);
	return rc;
}

/* Sends the stored results not yet sent on this connection, pacing on the write queue. */
static void resend_pump(struct runner *r)
{
	for (struct stored *s = r->stored; s; s = s->next) {
		if (!s->unsent)
			continue;
		if (!r->connected || r->closing)
			return;
		if (r->io.queued && r->io.queued(r->io.arg) > RUNNER_RESEND_QUEUE) {
			uv_timer_start(&r->timer, on_timer, RUNNER_RESEND_RETRY_MS, 0);
			return;
		}
		int rc = stored_send(r, s);
		if (rc == SS_ECLOSED)
			return;
		s->unsent = false; /* an unreadable file is not retried on this connection */
	}
}

/*
 * Packs tr and decodes it back (which checks it against the protocol's
 * bounds). Thread-safe. Returns the decoded message and sets *packed (the
 * caller's) to its bytes, or returns NULL when it does not decode.
 */
static ProtobufCMessage *result_pack(const Seeswarm__V1__TaskResult *tr, uint8_t **packed,
				     size_t *packed_len)
{
	size_t len = 0;
	uint8_t *data = msg_pack(&tr->base, &len);
	ProtobufCMessage *m = NULL;
	const char *why = NULL;

	*packed = NULL;
	*packed_len = 0;
	if (msg_decode(MSG_TASK_RESULT, data, len, &m, &why) != 0) {
		log_error("runner: the result of %s attempt %" PRIu32 " breaks the protocol: %s",
			  tr->task_id, tr->attempt, why);
		free(data);
		return NULL;
	}
	*packed = data;
	*packed_len = len;
	return m;
}

/*
 * Holds a finished result (in memory; stored_persist writes it out if no
 * acknowledgement comes soon) and sends it when connected. Takes m and
 * packed.
 */
static void deliver(struct runner *r, const char *task_id, uint32_t attempt, ProtobufCMessage *m,
		    uint8_t *packed, size_t packed_len)
{
	struct stored *s = stored_add(r, task_id, attempt, (const Seeswarm__V1__TaskResult *)m);
	if (!s->data) {
		s->data = packed;
		s->len = packed_len;
		s->since_ms = time_mono_ms();
		r->stored_mem += packed_len;
		packed = NULL;
	}
	free(packed);
	int rc = send_msg(r, MSG_TASK_RESULT, m);
	if (!rc)
		s->unsent = false;
	msg_free(m);
	stored_persist(r, !r->connected);
}

/* A result decided on the loop thread, before anything ran. */
static void finish_now(struct runner *r, const char *task_id, uint32_t attempt, const char *status,
		       int32_t code, const char *why)
{
	Seeswarm__V1__TaskResult tr = SEESWARM__V1__TASK_RESULT__INIT;
	char *tid = xstrdup(task_id);

	tr.task_id = tid;
	tr.attempt = attempt;
	tr.ok = false;
	tr.status = (char *)status;
	tr.code = code;
	tr.message = (char *)why;
	tr.start_ms = tr.end_ms = time_wall_ms();
	log_info("runner: %s attempt %" PRIu32 ": %s: %s", task_id, attempt, status, why);
	uint8_t *packed = NULL;
	size_t packed_len = 0;
	ProtobufCMessage *m = result_pack(&tr, &packed, &packed_len);
	if (m)
		deliver(r, tid, attempt, m, packed, packed_len);
	free(tid);
}

/* ---- attempts ----------------------------------------------------------- */

static struct attempt *attempt_find(struct runner *r, const char *task_id, uint32_t attempt)
{
	for (struct attempt *a = r->attempts; a; a = a->next)
		if (a->attempt == attempt && !strcmp(a->task_id, task_id))
			return a;
	return NULL;
}

static void attempt_unlink(struct runner *r, struct attempt *a)
{
	for (struct attempt **pp = &r->attempts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			return;
		}
	}
}

static void attempt_free(struct attempt *a)
{
	if (!a)
		return;
	exec_spec_free(&a->spec);
	exec_cancel_free(a->cancel);
	exec_live_free(a->live);
	msg_free(a->d ? &a->d->base : NULL);
	msg_free(a->result);
	free(a->packed);
	EVP_PKEY_free(a->key);
	X509_free(a->cert);
	free(a->task_id);
	free(a->dir);
	free(a->out_dir);
	free(a);
}

static bool input_inline(const Seeswarm__V1__TaskInput *in)
{
	return in->data.len > 0 || in->size == 0;
}

/*
 * Turns a dispatch into an exec_spec whose inputs live in in_dir. Returns
 * NULL, or the result status to report with the reason in why.
 */
static const char *build_spec(const Seeswarm__V1__TaskDispatch *d, const char *in_dir,
			      struct exec_spec *spec, char *why, size_t whylen)
{
	int rc;

	exec_spec_init(spec);
	free(spec->task_id);
	free(spec->job_id);
	spec->task_id = xstrdup(d->task_id);
	spec->job_id = xstrdup(d->job_id);
	spec->attempt = d->attempt;
	for (size_t i = 0; i < d->n_argv; i++) {
		if ((rc = exec_spec_add_arg(spec, d->argv[i]))) {
			snprintf(why, whylen, "argv[%zu] refused: %s", i, ss_strerror(rc));
			return "setup_error";
		}
	}
	for (size_t i = 0; i < d->n_env; i++) {
		if ((rc = exec_spec_add_env(spec, d->env[i]))) {
			snprintf(why, whylen, "env[%zu] refused: %s", i, ss_strerror(rc));
			return "setup_error";
		}
	}
	for (size_t i = 0; i < d->n_inputs; i++) {
		const Seeswarm__V1__TaskInput *in = d->inputs[i];
		if (!exec_name_valid(in->name)) {
			snprintf(why, whylen, "input name '%.128s' is not allowed", in->name);
			return "input_error";
		}
		if (in->digest.len != SHA256_LEN) {
			snprintf(why, whylen, "input '%s' has no SHA-256 digest", in->name);
			return "input_error";
		}
		if (in->size > EXEC_MAX_INPUT_BYTES) {
			snprintf(why, whylen, "input '%s' is larger than %llu bytes", in->name,
				 (unsigned long long)EXEC_MAX_INPUT_BYTES);
			return "input_error";
		}
		if (input_inline(in)) {
			uint8_t dg[SHA256_LEN];
			sha256(in->data.data, in->data.len, dg);
			if (!ct_equal(dg, in->digest.data, SHA256_LEN)) {
				snprintf(why, whylen, "inline input '%s' does not match its digest",
					 in->name);
				return "input_error";
			}
		}
		char *path = xasprintf("%s/%s", in_dir, in->name);
		rc = exec_spec_add_input(spec, in->name, path);
		free(path);
		if (rc) {
			snprintf(why, whylen, "input '%s' refused: %s", in->name,
				 rc == SS_EEXIST ? "duplicate name" : ss_strerror(rc));
			return "input_error";
		}
		spec->inputs[i].has_expect = true;
		memcpy(spec->inputs[i].expect, in->digest.data, SHA256_LEN);
	}
	for (size_t i = 0; i < d->n_outputs; i++) {
		if (!exec_relpath_valid(d->outputs[i])) {
			snprintf(why, whylen, "output path '%.128s' is not allowed", d->outputs[i]);
			return "setup_error";
		}
		if ((rc = exec_spec_add_output(spec, d->outputs[i]))) {
			snprintf(why, whylen, "output '%.128s' refused: %s", d->outputs[i],
				 ss_strerror(rc));
			return "setup_error";
		}
	}
	/* A job keeps only declared outputs, so a task with none gets no writable /out. */
	spec->no_out = d->n_outputs == 0;
	/* Zero means "the default" for every resource. */
	const Seeswarm__V1__TaskResources *tr = d->resources;
	struct exec_resources *res = &spec->res;
	if (tr) {
		if (tr->cpu_millicores)
			res->cpu_millicores = tr->cpu_millicores;
		if (tr->memory_bytes)
			res->memory_bytes = tr->memory_bytes;
		if (tr->disk_bytes)
			res->disk_bytes = tr->disk_bytes;
		if (tr->output_bytes)
			res->output_bytes = tr->output_bytes;
		if (tr->pids)
			res->pids = tr->pids;
		if (tr->timeout_ms)
			res->timeout_ms = tr->timeout_ms;
		res->kill_grace_ms = tr->kill_grace_ms;
	}
	char vwhy[160];
	if (exec_spec_validate(spec, vwhy, sizeof(vwhy))) {
		snprintf(why, whylen, "invalid task: %s", vwhy);
		return "setup_error";
	}
	return NULL;
}

/* ---- fetches ------------------------------------------------------------ */

static void fetch_free(struct runner *r, struct fetch *f)
{
	if (f->w) {
		blob_writer_abort(f->w);
		r->n_active--;
	}
	for (size_t i = 0; i < f->n_slot; i++) {
		r->inflight -= f->slot[i].len;
		msg_free(f->slot[i].got ? &f->slot[i].got->base : NULL);
	}
	free(f->waiters);
	free(f);
}

/* Tells the peer endpoint how many requests are outstanding on l. */
static void link_update(struct runner *r, struct peer_link *l)
{
	size_t n = 0;
	if (!r->peer)
		return;
	for (struct fetch *f = r->fetches; f; f = f->next)
		if (f->link == l)
			n += f->n_slot;
	peer_link_outstanding(l, n);
}

/* Forgets the requests in flight and the partial blob; the fetch starts over. */
static void fetch_reset(struct runner *r, struct fetch *f)
{
	if (f->w) {
		blob_writer_abort(f->w);
		f->w = NULL;
		r->n_active--;
	}
	for (size_t i = 0; i < f->n_slot; i++) {
		r->inflight -= f->slot[i].len;
		msg_free(f->slot[i].got ? &f->slot[i].got->base : NULL);
	}
	f->n_slot = 0;
	f->next_off = f->done_off = 0;
	if (f->link)
		link_update(r, f->link);
}

/*
 * Adds a waiter (attempt a's input idx, or a replica when a is NULL) to the
 * fetch of a blob, starting the fetch if there is none. A replica is waited
 * for once however often the manager asks.
 */
static void fetch_add_waiter(struct runner *r, struct attempt *a, size_t idx, const uint8_t *digest,
			     uint64_t size, Seeswarm__V1__BlobSource *const *sources, size_t n_sources,
			     const ProtobufCBinaryData *grant)
{
	struct fetch *f;
	for (f = r->fetches; f; f = f->next)
		if (!memcmp(f->digest, digest, SHA256_LEN))
			break;
	if (!f) {
		f = xcalloc(1, sizeof(*f));
		memcpy(f->digest, digest, SHA256_LEN);
		f->size = size;
		for (size_t i = 0; i < n_sources && f->n_src < MSG_MAX_SOURCES; i++) {
			if (!strcmp(sources[i]->node_id, r->node_id))
				continue;
			snprintf(f->src[f->n_src].node, sizeof f->src[0].node, "%s", sources[i]->node_id);
			snprintf(f->src[f->n_src].addr, sizeof f->src[0].addr, "%s", sources[i]->addr);
			f->n_src++;
		}
		/* Appended, so blobs are fetched in the order they were asked for. */
		struct fetch **pp = &r->fetches;
		while (*pp)
			pp = &(*pp)->next;
		*pp = f;
	}
	/* Any grant the manager gave for this blob and this node will do; the latest is kept. */
	if (grant->len && grant->len <= sizeof f->grant) {
		memcpy(f->grant, grant->data, grant->len);
		f->grant_len = grant->len;
	}
	for (size_t i = 0; !a && i < f->n_waiters; i++)
		if (!f->waiters[i].a)
			return;
	f->waiters = xrealloc(f->waiters, (f->n_waiters + 1) * sizeof(*f->waiters));
	f->waiters[f->n_waiters++] = (struct waiter){.a = a, .idx = idx};
}

/* Tells the manager whether a replica it asked for is now in the blob store. */
static void send_stored(struct runner *r, const uint8_t *digest, uint64_t size, int err,
			const char *why)
{
	Seeswarm__V1__BlobStored m = SEESWARM__V1__BLOB_STORED__INIT;
	m.digest.data = (uint8_t *)digest;
	m.digest.len = SHA256_LEN;
	m.size = size;
	m.error = err ? (uint32_t)-err : 0;
	m.message = (char *)(why ? why : "");
	send_msg(r, MSG_BLOB_STORED, &m.base);
}

/* Removes a from every fetch; a fetch nobody waits for any more is dropped. */
static void fetches_drop_attempt(struct runner *r, struct attempt *a)
{
	for (struct fetch **pp = &r->fetches; *pp;) {
		struct fetch *f = *pp;
		size_t k = 0;
		for (size_t i = 0; i < f->n_waiters; i++)
			if (f->waiters[i].a != a)
				f->waiters[k++] = f->waiters[i];
		f->n_waiters = k;
		if (k == 0) {
			*pp = f->next;
			fetch_free(r, f);
		} else {
			pp = &f->next;
		}
	}
}

static void start_run(struct attempt *a);

/*
 * Ends a fetch: with fail_why NULL the blob is in the store and its waiters
 * move on; otherwise every waiting attempt fails with "input_error".
 */
static void fetch_done(struct runner *r, struct fetch *f, const char *fail_why)
{
	for (struct fetch **pp = &r->fetches; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	struct waiter *w = f->waiters;
	size_t n = f->n_waiters;
	uint8_t digest[SHA256_LEN];
	uint64_t size = f->size;
	memcpy(digest, f->digest, SHA256_LEN);
	f->waiters = NULL;
	f->n_waiters = 0;
	if (!fail_why) {
		char hex[2 * SHA256_LEN + 1];
		hex_encode(f->digest, SHA256_LEN, hex);
		if (f->link && f->done_off) {
			log_info("runner: blob %.16s (%" PRIu64 " bytes) fetched from peer %s", hex, f->size,
				 f->src[f->src_i].node);
		} else if (f->done_off) {
			log_info("runner: blob %.16s (%" PRIu64 " bytes) fetched from the manager", hex,
				 f->size);
		}
	}
	struct peer_link *link = f->link;
	fetch_free(r, f);
	if (link)
		link_update(r, link);

	if (!fail_why) {
		/* A replica the manager asked for is held; a blob fetched for tasks only is cache. */
		bool replica = false;
		for (size_t i = 0; i < n; i++)
			replica |= !w[i].a;
		if (replica)
			blobcache_remove(r->cache, digest);
		else
			blobcache_add(r->cache, digest, size);
		for (size_t i = 0; i < n; i++) {
			if (!w[i].a)
				send_stored(r, digest, size, 0, NULL);
			else if (--w[i].a->pending == 0)
				start_run(w[i].a);
		}
		free(w);
		cache_trim(r);
		return;
	}
	/* Each attempt fails once, though it may wait for the blob under two names. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (!w[i].a) {
			send_stored(r, digest, size, SS_EIO, fail_why);
			continue;
		}
		bool seen = false;
		for (size_t j = 0; j < k && !seen; j++)
			seen = w[j].a == w[i].a;
		if (!seen)
			w[k++] = w[i];
	}
	for (size_t i = 0; i < k; i++) {
		char why[RUNNER_WHY];
		snprintf(why, sizeof(why), "%s%s%s: %s", w[i].idx == BUNDLE_IDX ? "the bundle" : "input '",
			 w[i].idx == BUNDLE_IDX ? "" : w[i].a->spec.inputs[w[i].idx].name,
			 w[i].idx == BUNDLE_IDX ? "" : "'", fail_why);
		attempt_abort(w[i].a, "input_error", 0, why);
	}
	free(w);
}

/*
 * A peer failed to provide f (error, wrong chunk, bad digest, link lost):
 * the partial blob is dropped and the fetch moves on to the next source,
 * the manager last. The caller pumps afterwards.
 */
static void fetch_next_source(struct runner *r, struct fetch *f, const char *why)
{
	char hex[2 * SHA256_LEN + 1];
	hex_encode(f->digest, SHA256_LEN, hex);
	log_info("runner: blob %.16s: peer %s failed (%s); trying the next source", hex,
		 f->src[f->src_i].node, why);
	struct peer_link *l = f->link;
	fetch_reset(r, f);
	f->link = NULL;
	f->src_i++;
	if (l)
		link_update(r, l);
}

/*
 * Picks where f's next requests go: its peer link, a new link to its next
 * source, or the manager. Returns false when none is usable now.
 */
static bool fetch_source(struct runner *r, struct fetch *f)
{
	if (f->link)
		return true;
	if (f->next_off > 0) /* started from the manager: finish there */
		return r->connected;
	while (f->src_i < f->n_src) {
		if (!r->peer || !peer_has_identity(r->peer)) {
			f->src_i = f->n_src; /* no node certificate: peers would refuse us */
			break;
		}
		const struct source *s = &f->src[f->src_i];
		int rc = peer_link_get(r->peer, s->node, s->addr, &f->link);
		if (rc == 0)
			return true;
		log_info("runner: cannot reach peer %s at %s: %s", s->node, s->addr, ss_strerror(rc));
		f->link = NULL;
		f->src_i++;
	}
	return r->connected;
}

/* Starts fetches and sends BlobGets while the window and the byte budget allow. */
static void fetch_pump(struct runner *r)
{
again:
	if (r->closing)
		return;
	for (struct fetch *f = r->fetches; f; f = f->next) {
		if (!f->w) {
			if (r->n_active >= RUNNER_ACTIVE_MAX)
				continue;
			/* Another fetch or a task's output may have brought it meanwhile. */
			if (blobstore_has(r->bs, f->digest, NULL)) {
				fetch_done(r, f, NULL);
				goto again;
			}
			if (!fetch_source(r, f))
				continue;
			int rc = blobstore_write_begin(r->bs, f->digest, f->size, &f->w);
			if (rc) {
				char why[128];
				snprintf(why, sizeof(why), "cannot store it: %s", ss_strerror(rc));
				f->w = NULL;
				fetch_done(r, f, why);
				goto again;
			}
			r->n_active++;
		} else if (!fetch_source(r, f)) {
			continue;
		}
		while (f->n_slot < RUNNER_WINDOW && f->next_off < f->size) {
			uint64_t left = f->size - f->next_off;
			uint32_t len = left < RUNNER_CHUNK ? (uint32_t)left : RUNNER_CHUNK;
			if (r->inflight > 0 && r->inflight + len > RUNNER_INFLIGHT_MAX) {
				if (f->link)
					link_update(r, f->link);
				return;
			}
			Seeswarm__V1__BlobGet g = SEESWARM__V1__BLOB_GET__INIT;
			g.request_id = ++r->next_req;
			g.digest.data = f->digest;
			g.digest.len = SHA256_LEN;
			g.offset = f->next_off;
			g.length = len;
			g.grant.data = f->grant;
			g.grant.len = f->grant_len;
			if (f->link) {
				if (peer_send(f->link, MSG_BLOB_GET, &g.base) != 0) {
					fetch_next_source(r, f, "the link is closing");
					goto again;
				}
			} else if (send_msg(r, MSG_BLOB_GET, &g.base)) {
				return;
			}
			f->slot[f->n_slot++] = (struct slot){.id = g.request_id, .off = f->next_off,
							     .len = len};
			f->next_off += len;
			r->inflight += len;
		}
		if (f->link)
			link_update(r, f->link);
	}
}

/*
 * One chunk from the manager (from = NULL) or from a peer link. A chunk
 * counts only when it answers a request sent to that same source.
 */
static void on_blob_data(struct runner *r, struct peer_link *from, Seeswarm__V1__BlobData *bd)
{
	struct fetch *f = NULL;
	struct slot *s = NULL;
	char why[RUNNER_WHY];
	int rc;

	for (f = r->fetches; f; f = f->next) {
		if (f->link != from)
			continue;
		for (size_t i = 0; i < f->n_slot && !s; i++)
			if (f->slot[i].id == bd->request_id && !f->slot[i].got)
				s = &f->slot[i];
		if (s)
			break;
	}
	if (!s) {
		log_debug("runner: blob_data for unknown request %" PRIu64 " ignored", bd->request_id);
		msg_free(&bd->base);
		return;
	}
	const char *who = from ? "the peer" : "the manager";
	if (bd->error) {
		snprintf(why, sizeof(why), "%s cannot provide it: %s (%.200s)", who,
			 ss_strerror(-(int)bd->error), bd->message ? bd->message : "");
		msg_free(&bd->base);
		goto failed;
	}
	if (bd->digest.len != SHA256_LEN || memcmp(bd->digest.data, f->digest, SHA256_LEN) != 0 ||
	    bd->offset != s->off || bd->data.len != s->len || bd->total != f->size) {
		log_warn("runner: blob_data %" PRIu64 " from %s does not answer its request",
			 bd->request_id, from ? peer_link_node(from) : "the manager");
		msg_free(&bd->base);
		snprintf(why, sizeof(why), "%s sent a chunk that does not match the request", who);
		goto failed;
	}
	s->got = bd;
	/* Write every chunk that is now contiguous. */
	for (;;) {
		size_t j;
		for (j = 0; j < f->n_slot; j++)
			if (f->slot[j].got && f->slot[j].off == f->done_off)
				break;
		if (j == f->n_slot)
			break;
		struct slot sl = f->slot[j];
		memmove(&f->slot[j], &f->slot[j + 1], (f->n_slot - j - 1) * sizeof(*f->slot));
		f->n_slot--;
		r->inflight -= sl.len;
		f->done_off += sl.len;
		rc = blob_writer_write(f->w, sl.got->data.data, sl.got->data.len);
		msg_free(&sl.got->base);
		if (rc) {
			snprintf(why, sizeof(why), "cannot store it: %s", ss_strerror(rc));
			fetch_done(r, f, why);
			fetch_pump(r);
			return;
		}
	}
	if (f->done_off == f->size) {
		struct blob_writer *w = f->w;
		f->w = NULL;
		r->n_active--;
		rc = blob_writer_commit(w, NULL);
		if (rc) {
			snprintf(why, sizeof(why), "the blob %s sent was refused: %s", who,
				 ss_strerror(rc));
			goto failed;
		}
		fetch_done(r, f, NULL);
	} else if (from) {
		link_update(r, from);
	}
	fetch_pump(r);
	return;
failed:
	/* A peer's failure costs only that source; the manager's fails the input. */
	if (from)
		fetch_next_source(r, f, why);
	else
		fetch_done(r, f, why);
	fetch_pump(r);
}

/* ---- running ------------------------------------------------------------ */

static void doomed_sweep(struct runner *r);

/* Fails an attempt that has not started running; releases what it holds. */
static void attempt_abort(struct attempt *a, const char *status, int32_t code, const char *why)
{
	struct runner *r = a->r;
	fetches_drop_attempt(r, a);
	exec_capacity_release(r->cap, &a->spec.res);
	attempt_unlink(r, a);
	rm_tree(a->dir);
	if (!atomic_load(&a->discard))
		finish_now(r, a->task_id, a->attempt, status, code, why);
	attempt_free(a);
	if (r->n_doomed)
		doomed_sweep(r);
	cache_trim(r);
}

/* Worker: puts every input file in place. */
static int stage_inputs(struct attempt *a, char *why, size_t whylen)
{
	const Seeswarm__V1__TaskDispatch *d = a->d;
	int rc = 0;
	for (size_t i = 0; i < d->n_inputs; i++) {
		const Seeswarm__V1__TaskInput *in = d->inputs[i];
		const char *path = a->spec.inputs[i].path;
		if (input_inline(in))
			rc = write_new_file(path, in->data.data, in->data.len);
		else
			rc = blobstore_export(a->r->bs, in->digest.data, path);
		if (rc) {
			snprintf(why, whylen, "input '%s' cannot be put in place: %s", in->name,
				 ss_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* The last MSG_MAX_TAIL bytes of b. */
static ProtobufCBinaryData tail_of(const struct buf *b)
{
	ProtobufCBinaryData t = {0, NULL};
	size_t n = b->len > MSG_MAX_TAIL ? MSG_MAX_TAIL : b->len;
	if (n) {
		t.len = n;
		t.data = b->data + (b->len - n);
	}
	return t;
}

/*
 * Worker: imports the outputs into the blob store and describes them in
 * outs (initialised by the caller; inline data for small ones, allocated).
 * *n_done counts the outputs described. Returns NULL, or a reason when an
 * output could not be kept.
 */
static const char *take_outputs(struct attempt *a, const struct exec_result *res,
				Seeswarm__V1__TaskOutput *outs, size_t *n_done, char *why,
				size_t whylen)
{
	uint64_t inline_total = 0;
	*n_done = 0;
	for (size_t i = 0; i < res->n_outputs; i++) {
		const struct exec_file_digest *o = &res->outputs[i];
		Seeswarm__V1__TaskOutput *t = &outs[i];
		char *path = xasprintf("%s/%s", a->out_dir, o->name);
		uint8_t dg[SHA256_LEN];
		uint64_t size = 0;
		int rc = blobstore_import(a->r->bs, path, dg, &size);
		if (!rc && (size != o->size || !ct_equal(dg, o->sha256, SHA256_LEN)))
			rc = SS_EINTEGRITY;
		if (!rc && size <= MSG_MAX_INLINE && inline_total + size <= RUNNER_INLINE_BUDGET &&
		    size > 0) {
			char *data = NULL;
			size_t len = 0;
			rc = file_read(path, MSG_MAX_INLINE, &data, &len);
			if (!rc && len == size) {
				t->data.data = (uint8_t *)data;
				t->data.len = len;
				inline_total += len;
			} else {
				free(data);
				rc = rc ? rc : SS_EINTEGRITY;
			}
		}
		free(path);
		if (rc) {
			snprintf(why, whylen, "output '%.128s' could not be stored: %s", o->name,
				 ss_strerror(rc));
			return why;
		}
		t->name = o->name;
		t->digest.data = (uint8_t *)o->sha256;
		t->digest.len = SHA256_LEN;
		t->size = size;
		*n_done = i + 1;
	}
	return NULL;
}

/* bundles/<hex code digest>: the unpacked bundle, shared by every attempt that runs it. */
static char *bundle_path(const struct runner *r, const uint8_t *code_digest)
{
	char hex[2 * SHA256_LEN + 1];
	hex_encode(code_digest, SHA256_LEN, hex);
	return xasprintf("%s/%s", r->bundles_dir, hex);
}

static bool bundle_cached(const struct runner *r, const uint8_t *code_digest)
{
	char *p = bundle_path(r, code_digest);
	struct stat st;
	bool ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return ok;
}

/*
 * Worker: returns the directory of d's bundle (caller frees), unpacking its
 * tar from the blob store into the cache first when needed; NULL with why
 * set when the tar is unusable or does not unpack to the promised digest.
 * Concurrent attempts may unpack the same bundle: each into its own
 * temporary directory, and the first rename wins.
 */
static char *bundle_prepare(struct runner *r, const Seeswarm__V1__TaskDispatch *d, char *why,
			    size_t whylen)
{
	char *dir = bundle_path(r, d->bundle_digest.data);
	char *tar = NULL, *tmp = NULL, *result = NULL;
	struct stat st;
	uint8_t got[SHA256_LEN];
	int rc;
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		goto done;
	uint64_t n = atomic_fetch_add(&r->bundle_seq, 1);
	tar = xasprintf("%s/tmp.%d.%" PRIu64 ".tar", r->bundles_dir, (int)getpid(), n);
	tmp = xasprintf("%s/tmp.%d.%" PRIu64, r->bundles_dir, (int)getpid(), n);
	if ((rc = blobstore_export(r->bs, d->bundle->digest.data, tar)) != 0) {
		snprintf(why, whylen, "the bundle's tar is not in the blob store: %s", ss_strerror(rc));
		goto out;
	}
	char uwhy[300];
	if (exec_bundle_unpack_tar(tar, tmp, uwhy, sizeof uwhy) != 0) {
		snprintf(why, whylen, "the bundle does not unpack: %s", uwhy);
		goto out;
	}
	if (exec_bundle_digest(tmp, got, NULL) != 0 || memcmp(got, d->bundle_digest.data, SHA256_LEN) != 0) {
		snprintf(why, whylen, "the unpacked bundle does not have the digest the job names");
		goto out;
	}
	/* A rename that fails because another attempt's won leaves tmp, removed below. */
	if (rename(tmp, dir) != 0 && !(stat(dir, &st) == 0 && S_ISDIR(st.st_mode))) {
		snprintf(why, whylen, "cannot cache the bundle: %s", strerror(errno));
		goto out;
	}
done:
	result = dir;
	dir = NULL;
out:
	if (tmp)
		dir_remove_tree(tmp);
	if (tar)
		unlink(tar);
	free(tar);
	free(tmp);
	free(dir);
	return result;
}

static void run_work(uv_work_t *w)
{
	struct attempt *a = w->data;
	struct runner *r = a->r;
	Seeswarm__V1__TaskResult tr = SEESWARM__V1__TASK_RESULT__INIT;
	Seeswarm__V1__TaskOutput *outs = NULL, **outp = NULL;
	struct exec_result res;
	char why[RUNNER_WHY] = "", *receipt = NULL;
	size_t receipt_len = 0, n_outs = 0;
	bool ran = false;
	int rc;

	memset(&res, 0, sizeof(res));
	tr.task_id = a->task_id;
	tr.attempt = a->attempt;
	tr.start_ms = a->started_ms;
	char *bundle = NULL;
	if (stage_inputs(a, why, sizeof(why)) != 0) {
		tr.status = "input_error";
	} else if (a->d->bundle && !(bundle = bundle_prepare(r, a->d, why, sizeof why))) {
		tr.status = "setup_error";
	} else {
		rc = exec_run(r->sb, &a->spec, bundle ? bundle : r->bundle_dir,
			      a->spec.n_outputs ? a->out_dir : NULL, &res);
		ran = rc == 0;
		if (rc) {
			/* A policy refusal: the code is not allowed, or an input does not match. */
			tr.status = rc == SS_EPOLICY && !bundle ? "input_error" : "setup_error";
			snprintf(why, sizeof(why), "%s", res.msg[0] ? res.msg : ss_strerror(rc));
		}
	}
	free(bundle);
	if (atomic_load(&a->discard))
		goto out;
	if (ran) {
		tr.ok = exec_result_ok(&res);
		tr.status = (char *)exec_status_name(res.status);
		tr.code = res.code;
		snprintf(why, sizeof(why), "%s", res.msg);
		if (atomic_load_explicit(&a->cancelled, memory_order_acquire))
			snprintf(why, sizeof(why), MSG_CANCELLED_PREFIX "%s", a->cancel_reason);
		tr.cpu_ns = res.usage.cpu_ns;
		tr.peak_memory_bytes = res.usage.peak_mem_bytes;
		if (res.start_ms)
			tr.start_ms = res.start_ms;
		tr.end_ms = res.end_ms;
		tr.stdout_tail = tail_of(&res.out);
		tr.stderr_tail = tail_of(&res.err_out);
		n_outs = res.n_outputs;
		outs = xcalloc(n_outs ? n_outs : 1, sizeof(*outs));
		outp = xcalloc(n_outs ? n_outs : 1, sizeof(*outp));
		for (size_t i = 0; i < n_outs; i++) {
			seeswarm__v1__task_output__init(&outs[i]);
			outp[i] = &outs[i];
		}
		size_t n_done = 0;
		if (take_outputs(a, &res, outs, &n_done, why, sizeof(why))) {
			tr.ok = false;
			tr.status = "output_error";
		}
		tr.n_outputs = n_done;
		tr.outputs = outp;
		if (a->key && a->cert) {
			struct exec_receipt_info info = {
				.node_id = r->node_id, .attest_digest = a->has_attest ? a->attest : NULL};
			rc = exec_receipt_build(&a->spec, &res, &info, a->key, a->cert, &receipt,
						&receipt_len);
			if (rc)
				log_error("runner: cannot sign the receipt of %s attempt %" PRIu32 ": %s",
					  a->task_id, a->attempt, ss_strerror(rc));
			else if (receipt_len > MSG_MAX_RECEIPT)
				log_warn("runner: the receipt of %s attempt %" PRIu32
					 " is %zu bytes, beyond the protocol's bound; left out",
					 a->task_id, a->attempt, receipt_len);
			else
				tr.receipt = (ProtobufCBinaryData){receipt_len, (uint8_t *)receipt};
		} else {
			log_warn("runner: no identity yet; %s attempt %" PRIu32 " has no receipt",
				 a->task_id, a->attempt);
		}
	} else {
		tr.ok = false;
		tr.end_ms = time_wall_ms();
	}
	tr.message = why;

	/* A result must fit one frame: inline data goes first, then the tails, then the receipt. */
	if (protobuf_c_message_get_packed_size(&tr.base) > RUNNER_RESULT_MAX) {
		log_warn("runner: the result of %s attempt %" PRIu32 " is trimmed to fit a frame",
			 a->task_id, a->attempt);
		for (size_t i = 0; i < n_outs; i++)
			outs[i].data.len = 0;
		if (protobuf_c_message_get_packed_size(&tr.base) > RUNNER_RESULT_MAX)
			tr.stdout_tail.len = tr.stderr_tail.len = 0;
		if (protobuf_c_message_get_packed_size(&tr.base) > RUNNER_RESULT_MAX)
			tr.receipt.len = 0;
	}

	a->result = result_pack(&tr, &a->packed, &a->packed_len);
	if (!a->result) {
		/* A bug of ours; the manager still needs an answer. */
		Seeswarm__V1__TaskResult fb = SEESWARM__V1__TASK_RESULT__INIT;
		fb.task_id = a->task_id;
		fb.attempt = a->attempt;
		fb.status = "setup_error";
		fb.message = "the agent could not encode the task's result";
		fb.start_ms = tr.start_ms;
		fb.end_ms = time_wall_ms();
		a->result = result_pack(&fb, &a->packed, &a->packed_len);
	}
out:
	for (size_t i = 0; i < n_outs; i++)
		free(outs[i].data.data);
	free(outs);
	free(outp);
	free(receipt);
	exec_result_free(&res);
	rm_tree(a->dir);
}

/*
 * Sends the manager a TaskLog with the output of a (NULL: an attempt this
 * agent does not have) from offsets from[2], and records what it sent.
 * Returns true when a holds more output after what was sent.
 */
static bool log_send(struct runner *r, struct attempt *a, const char *task_id, uint32_t attempt,
		     const uint64_t from[2], bool running)
{
	Seeswarm__V1__TaskLog tl = SEESWARM__V1__TASK_LOG__INIT;
	uint8_t *data[2] = {NULL, NULL};
	uint64_t at[2] = {from[0], from[1]}, total[2] = {from[0], from[1]};
	size_t n[2] = {0, 0};
	tl.task_id = (char *)task_id;
	tl.attempt = attempt;
	tl.known = a != NULL;
	tl.running = running;
	for (int s = 0; a && a->live && s < 2; s++) {
		data[s] = xmalloc(MSG_MAX_LOG);
		n[s] = exec_live_read(a->live, s, from[s], data[s], MSG_MAX_LOG, &at[s], &total[s]);
		a->log_sent[s] = at[s] + n[s];
	}
	tl.stdout_from = at[0];
	tl.stdout = (ProtobufCBinaryData){n[0], data[0]};
	tl.stderr_from = at[1];
	tl.stderr = (ProtobufCBinaryData){n[1], data[1]};
	send_msg(r, MSG_TASK_LOG, &tl.base);
	free(data[0]);
	free(data[1]);
	return at[0] + n[0] < total[0] || at[1] + n[1] < total[1];
}

static void on_log_get(struct runner *r, const Seeswarm__V1__TaskLogGet *g)
{
	struct attempt *a = attempt_find(r, g->task_id, g->attempt);
	const uint64_t from[2] = {g->stdout_from, g->stderr_from};
	if (a)
		a->followed = true;
	log_send(r, a, g->task_id, g->attempt, from, true);
}

static void run_done(uv_work_t *w, int status)
{
	struct attempt *a = w->data;
	struct runner *r = a->r;
	(void)status;

	r->n_work--;
	exec_capacity_release(r->cap, &a->spec.res);
	attempt_unlink(r, a);
	if (a->followed) {
		/*
		 * Someone follows it: the rest of its output goes before its result
		 * (at most EXEC_LIVE_KEEP per stream, so a few messages), and the last
		 * message says that it ended.
		 */
		for (int i = 0; i < 2 * (int)(EXEC_LIVE_KEEP / MSG_MAX_LOG) + 1; i++) {
			uint64_t from[2] = {a->log_sent[0], a->log_sent[1]};
			if (!log_send(r, a, a->task_id, a->attempt, from, false))
				break;
		}
	}
	if (a->result) {
		const Seeswarm__V1__TaskResult *tr = (const void *)a->result;
		log_info("runner: %s attempt %" PRIu32 " finished: %s (%s)", a->task_id, a->attempt,
			 tr->status, tr->message ? tr->message : "");
		/* Outputs are held for the swarm, even one whose content was cached here. */
		for (size_t i = 0; i < tr->n_outputs; i++)
			if (tr->outputs[i]->digest.len == SHA256_LEN)
				blobcache_remove(r->cache, tr->outputs[i]->digest.data);
		deliver(r, a->task_id, a->attempt, a->result, a->packed, a->packed_len);
		a->result = NULL;
		a->packed = NULL;
	}
	attempt_free(a);
	unpark(r);
	if (r->n_doomed)
		doomed_sweep(r);
	cache_trim(r);
}

static void start_run(struct attempt *a)
{
	struct runner *r = a->r;
	Seeswarm__V1__TaskStarted ts = SEESWARM__V1__TASK_STARTED__INIT;

	a->st = AT_RUNNING;
	if (r->key && r->cert) {
		EVP_PKEY_up_ref(r->key);
		X509_up_ref(r->cert);
		a->key = r->key;
		a->cert = r->cert;
		a->has_attest = r->has_attest;
		memcpy(a->attest, r->attest, SHA256_LEN);
	}
	a->started_ms = time_wall_ms();
	a->live = exec_live_new();
	a->spec.live = a->live;
	ts.task_id = a->task_id;
	ts.attempt = a->attempt;
	ts.start_ms = a->started_ms;
	send_msg(r, MSG_TASK_STARTED, &ts.base);
	a->work.data = a;
	int rc = uv_queue_work(r->loop, &a->work, run_work, run_done);
	if (rc) {
		char why[128];
		snprintf(why, sizeof(why), "cannot queue the task: %s", uv_strerror(rc));
		attempt_abort(a, "setup_error", 0, why);
		return;
	}
	r->n_work++;
}

/* Stops an attempt; its result (a failure) is reported as usual. */
static void cancel_attempt(struct attempt *a, const char *reason)
{
	if (a->st == AT_FETCHING) {
		char why[RUNNER_WHY];
		snprintf(why, sizeof(why), MSG_CANCELLED_PREFIX "%s", reason);
		attempt_abort(a, "signaled", SIGKILL, why);
		return;
	}
	if (atomic_load(&a->cancelled))
		return;
	snprintf(a->cancel_reason, sizeof(a->cancel_reason), "%s", reason);
	atomic_store_explicit(&a->cancelled, true, memory_order_release);
	exec_cancel_trigger(a->cancel);
}

/* ---- messages ----------------------------------------------------------- */

/* True when an attempt that was cancelled still runs, so its capacity comes back soon. */
static bool cancelled_running(const struct runner *r)
{
	for (const struct attempt *a = r->attempts; a; a = a->next)
		if (a->st != AT_FETCHING && atomic_load(&a->cancelled))
			return true;
	return false;
}

/* The index of the parked dispatch of task_id's attempt, or -1. */
static ptrdiff_t parked_find(const struct runner *r, const char *task_id, uint32_t attempt)
{
	for (size_t i = 0; i < r->n_parked; i++)
		if (r->parked[i]->attempt == attempt && !strcmp(r->parked[i]->task_id, task_id))
			return (ptrdiff_t)i;
	return -1;
}

/* Takes the i-th parked dispatch off the list and returns it (the caller owns it). */
static Seeswarm__V1__TaskDispatch *parked_take(struct runner *r, size_t i)
{
	Seeswarm__V1__TaskDispatch *d = r->parked[i];
	memmove(&r->parked[i], &r->parked[i + 1], (r->n_parked - i - 1) * sizeof r->parked[0]);
	r->n_parked--;
	return d;
}

/*
 * Ends the i-th parked dispatch without running it, as an attempt cancelled
 * while fetching ends ("signaled", why after MSG_CANCELLED_PREFIX).
 */
static void parked_cancel(struct runner *r, size_t i, const char *why)
{
	Seeswarm__V1__TaskDispatch *d = parked_take(r, i);
	char msg[RUNNER_WHY];
	snprintf(msg, sizeof(msg), MSG_CANCELLED_PREFIX "%s", why);
	finish_now(r, d->task_id, d->attempt, "signaled", SIGKILL, msg);
	msg_free(&d->base);
}

static void on_dispatch(struct runner *r, Seeswarm__V1__TaskDispatch *d);

/*
 * Capacity came back: offers every parked dispatch again, oldest first. One
 * that still does not fit parks again while cancelled attempts run, and is
 * refused once none do. Loop thread; not while closing.
 */
static void unpark(struct runner *r)
{
	size_t n = r->n_parked;
	if (n == 0 || r->closing)
		return;
	Seeswarm__V1__TaskDispatch *list[RUNNER_PARK_MAX];
	memcpy(list, r->parked, n * sizeof list[0]);
	r->n_parked = 0;
	for (size_t i = 0; i < n; i++)
		on_dispatch(r, list[i]);
}

static void on_dispatch(struct runner *r, Seeswarm__V1__TaskDispatch *d)
{
	struct attempt *a = NULL;
	struct exec_spec spec;
	char why[RUNNER_WHY], cwhy[200];
	const char *status;
	char *dir = NULL, *in_dir = NULL;
	struct stored *s;

	if (attempt_find(r, d->task_id, d->attempt) || parked_find(r, d->task_id, d->attempt) >= 0) {
		log_debug("runner: duplicate dispatch of %s attempt %" PRIu32 " ignored", d->task_id,
			  d->attempt);
		goto drop;
	}
	if ((s = stored_find(r, d->task_id, d->attempt))) {
		log_info("runner: %s attempt %" PRIu32 " already finished; sending its result again",
			 d->task_id, d->attempt);
		stored_send(r, s);
		goto drop;
	}
	/* Attempts are epochs: a dispatch older than one held is stale; older ones are cancelled. */
	uint32_t newest = 0;
	for (struct attempt *o = r->attempts; o; o = o->next)
		if (!strcmp(o->task_id, d->task_id) && o->attempt > newest)
			newest = o->attempt;
	for (struct stored *o = r->stored; o; o = o->next)
		if (!strcmp(o->task_id, d->task_id) && o->attempt > newest)
			newest = o->attempt;
	for (size_t i = 0; i < r->n_parked; i++)
		if (!strcmp(r->parked[i]->task_id, d->task_id) && r->parked[i]->attempt > newest)
			newest = r->parked[i]->attempt;
	if (newest > d->attempt) {
		log_info("runner: stale dispatch of %s attempt %" PRIu32 " (attempt %" PRIu32
			 " held) ignored", d->task_id, d->attempt, newest);
		goto drop;
	}
	for (struct attempt *o = r->attempts, *next; o; o = next) {
		next = o->next;
		if (strcmp(o->task_id, d->task_id) != 0)
			continue;
		snprintf(cwhy, sizeof(cwhy), "superseded by attempt %" PRIu32, d->attempt);
		cancel_attempt(o, cwhy);
	}
	for (size_t i = r->n_parked; i-- > 0;) {
		if (strcmp(r->parked[i]->task_id, d->task_id) != 0)
			continue;
		snprintf(cwhy, sizeof(cwhy), "superseded by attempt %" PRIu32, d->attempt);
		parked_cancel(r, i, cwhy);
	}
	if (!r->sb) {
		finish_now(r, d->task_id, d->attempt, "refused", 0, r->sb_why);
		goto drop;
	}
	dir = xasprintf("%s/%s.%" PRIu32, r->work_dir, d->task_id, d->attempt);
	in_dir = xasprintf("%s/in", dir);
	if ((status = build_spec(d, in_dir, &spec, why, sizeof(why)))) {
		exec_spec_free(&spec);
		finish_now(r, d->task_id, d->attempt, status, 0, why);
		goto drop;
	}
	if (exec_capacity_admit(r->cap, &spec.res, cwhy, sizeof(cwhy))) {
		exec_spec_free(&spec);
		if (r->n_parked < RUNNER_PARK_MAX && cancelled_running(r)) {
			/* The manager cancelled attempts here to make room for it: it waits for them. */
			log_info("runner: %s attempt %" PRIu32 " waits for cancelled attempts to end (%s)",
				 d->task_id, d->attempt, cwhy);
			r->parked[r->n_parked++] = d;
			goto out;
		}
		snprintf(why, sizeof(why), "not enough capacity: %s", cwhy);
		finish_now(r, d->task_id, d->attempt, "refused", 0, why);
		goto drop;
	}

	a = xcalloc(1, sizeof(*a));
	a->r = r;
	a->st = AT_FETCHING;
	a->task_id = xstrdup(d->task_id);
	a->attempt = d->attempt;
	a->d = d;
	a->spec = spec;
	if (d->bundle) {
		/* exec_run checks the cached tree against it before every run. */
		a->spec.has_bundle_digest = true;
		memcpy(a->spec.bundle_digest, d->bundle_digest.data, SHA256_LEN);
	}
	a->dir = dir;
	a->out_dir = xasprintf("%s/out", dir);
	dir = NULL;
	atomic_init(&a->cancelled, false);
	atomic_init(&a->discard, false);
	a->next = r->attempts;
	r->attempts = a;
	int rc = exec_cancel_new(&a->cancel);
	if (!rc) {
		a->spec.cancel = a->cancel;
		rm_tree(a->dir);
		/* Only what the task uses: a task with neither inputs nor outputs touches no disk here. */
		if ((d->n_inputs && dir_ensure(in_dir, 0700)) ||
		    (d->n_outputs && dir_ensure(a->out_dir, 0700)))
			rc = SS_EIO;
	}
	if (rc) {
		snprintf(why, sizeof(why), "cannot prepare the work directory %s: %s", a->dir,
			 ss_strerror(rc));
		attempt_abort(a, "setup_error", 0, why);
		goto out;
	}
	log_info("runner: %s attempt %" PRIu32 " (%s) accepted", a->task_id, a->attempt,
		 d->name ? d->name : "");
	for (size_t i = 0; i < d->n_inputs; i++) {
		const Seeswarm__V1__TaskInput *in = d->inputs[i];
		if (input_inline(in))
			continue;
		if (blobstore_has(r->bs, in->digest.data, NULL)) {
			blobcache_touch(r->cache, in->digest.data);
			continue;
		}
		fetch_add_waiter(r, a, i, in->digest.data, in->size, in->sources, in->n_sources,
				 &in->grant);
		a->pending++;
	}
	/* The code bundle's tar, unless it is unpacked in the cache already or held. */
	if (d->bundle && !bundle_cached(r, d->bundle_digest.data) &&
	    !blobstore_has(r->bs, d->bundle->digest.data, NULL)) {
		fetch_add_waiter(r, a, BUNDLE_IDX, d->bundle->digest.data, d->bundle->size,
				 d->bundle->sources, d->bundle->n_sources, &d->bundle->grant);
		a->pending++;
	}
	if (a->pending == 0)
		start_run(a);
	else
		fetch_pump(r);
	goto out;
drop:
	msg_free(&d->base);
out:
	free(dir);
	free(in_dir);
}

/* True when an attempt here, or a fetch in progress, still needs the blob. */
static bool blob_in_use(const struct runner *r, const uint8_t digest[SHA256_LEN])
{
	for (const struct fetch *f = r->fetches; f; f = f->next)
		if (!memcmp(f->digest, digest, SHA256_LEN))
			return true;
	for (const struct attempt *a = r->attempts; a; a = a->next) {
		const Seeswarm__V1__TaskDispatch *d = a->d;
		if (!d)
			continue;
		for (size_t i = 0; i < d->n_inputs; i++)
			if (!memcmp(d->inputs[i]->digest.data, digest, SHA256_LEN))
				return true;
		if (d->bundle && d->bundle->digest.len == SHA256_LEN &&
		    !memcmp(d->bundle->digest.data, digest, SHA256_LEN))
			return true;
	}
	return false;
}

#define RUNNER_DOOMED_MAX 4096

/* Deletes the released blobs that nothing here uses any more. Loop thread. */
static void doomed_sweep(struct runner *r)
{
	size_t keep = 0;
	for (size_t i = 0; i < r->n_doomed; i++) {
		if (blob_in_use(r, r->doomed[i])) {
			memmove(r->doomed[keep++], r->doomed[i], SHA256_LEN);
			continue;
		}
		blobcache_remove(r->cache, r->doomed[i]);
		if (blobstore_delete(r->bs, r->doomed[i]) == 0)
			log_debug("runner: released blob deleted now that nothing here uses it");
	}
	r->n_doomed = keep;
}

/*
 * The manager no longer needs these copies. A blob an attempt or a fetch
 * here still uses (another job with the same content) is deleted when that
 * use ends; beyond RUNNER_DOOMED_MAX such blobs, the rest are kept.
 */
static void on_blob_delete(struct runner *r, const Seeswarm__V1__BlobDelete *m)
{
	size_t kept = 0, deleted = 0;
	for (size_t i = 0; i < m->n_digests; i++) {
		const uint8_t *dg = m->digests[i].data;
		if (blob_in_use(r, dg)) {
			kept++;
			if (!r->doomed)
				r->doomed = xcalloc(RUNNER_DOOMED_MAX, SHA256_LEN);
			if (r->n_doomed < RUNNER_DOOMED_MAX)
				memcpy(r->doomed[r->n_doomed++], dg, SHA256_LEN);
			continue;
		}
		blobcache_remove(r->cache, dg);
		if (blobstore_delete(r->bs, dg) == 0)
			deleted++;
	}
	log_info("runner: the manager released %zu blob%s: %zu deleted, %zu when no longer in use",
		 m->n_digests, m->n_digests == 1 ? "" : "s", deleted, kept);
}

/* ---- the cache: blobs this agent may evict ------------------------------- */

static bool cache_pinned(void *arg, const uint8_t digest[SHA256_LEN])
{
	return blob_in_use(arg, digest);
}

static int cache_evict(void *arg, const uint8_t digest[SHA256_LEN])
{
	struct runner *r = arg;
	int rc = blobstore_delete(r->bs, digest);
	if (!rc)
		r->evicted_blobs++;
	return rc;
}

/* Evicts cached blobs, least recently used first, while the store is over its cap. */
static void cache_trim(struct runner *r)
{
	uint64_t used = blobstore_used(r->bs);
	if (!blobcache_cap(r->cache) || used <= blobcache_cap(r->cache))
		return;
	uint64_t before = r->evicted_blobs;
	uint64_t freed = blobcache_trim(r->cache, used, cache_pinned, cache_evict, r);
	if (r->evicted_blobs == before)
		return; /* everything evictable is in use; later calls try again */
	log_info("runner: blob store over its cap (%" PRIu64 " of %" PRIu64 " bytes): evicted %" PRIu64
		 " cached blob%s, %" PRIu64 " bytes",
		 used, blobcache_cap(r->cache), r->evicted_blobs - before,
		 r->evicted_blobs - before == 1 ? "" : "s", freed);
}

/* True when a result not yet acknowledged names the blob as an output. */
static bool held_by_result(const struct runner *r, const uint8_t digest[SHA256_LEN])
{
	for (const struct stored *s = r->stored; s; s = s->next)
		for (size_t i = 0; i < s->n_outs; i++)
			if (!memcmp(s->outs[i], digest, SHA256_LEN))
				return true;
	return false;
}

struct inventory {
	struct runner *r;
	ProtobufCBinaryData d[MSG_MAX_INVENTORY];
	uint8_t digests[MSG_MAX_INVENTORY][SHA256_LEN];
	uint64_t sizes[MSG_MAX_INVENTORY];
	size_t n, sent, batches;
	int rc;
};

/* Sends the batch held in inv; last marks the end of the inventory (sent even when empty). */
static void inventory_flush(struct inventory *inv, bool last)
{
	if ((!inv->n && !last) || inv->rc)
		return;
	Seeswarm__V1__BlobInventory m = SEESWARM__V1__BLOB_INVENTORY__INIT;
	m.batch = (uint32_t)inv->batches;
	m.last = last;
	for (size_t i = 0; i < inv->n; i++)
		inv->d[i] = (ProtobufCBinaryData){.data = inv->digests[i], .len = SHA256_LEN};
	m.digests = inv->d;
	m.n_digests = inv->n;
	m.sizes = inv->sizes;
	m.n_sizes = inv->n;
	inv->rc = inv->r->io.send(inv->r->io.arg, MSG_BLOB_INVENTORY, &m.base);
	inv->sent += inv->n;
	inv->batches++;
	inv->n = 0;
}

static int inventory_add(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	struct inventory *inv = arg;
	memcpy(inv->digests[inv->n], digest, SHA256_LEN);
	inv->sizes[inv->n++] = size;
	if (inv->n == MSG_MAX_INVENTORY)
		inventory_flush(inv, false);
	return inv->rc;
}

/*
 * Tells the manager, after each admission, every blob in the store, in
 * batches of MSG_MAX_INVENTORY. The manager records this node again as a
 * holder of what it tracks (a node that was declared down lost its holder
 * records) and answers which blobs are untracked, which become cache.
 */
static void inventory_send(struct runner *r)
{
	struct inventory *inv = xcalloc(1, sizeof *inv);
	inv->r = r;
	int rc = blobstore_list(r->bs, inventory_add, inv);
	/* A listing that stopped early is not complete: no last batch, so nothing is dropped. */
	if (!rc)
		inventory_flush(inv, true);
	if (rc || inv->rc)
		log_warn("runner: blob inventory stopped after %zu blobs: %s", inv->sent,
			 ss_strerror(rc ? rc : inv->rc));
	else if (inv->sent)
		log_info("runner: blob inventory sent: %zu blob%s in %zu message%s", inv->sent,
			 inv->sent == 1 ? "" : "s", inv->batches, inv->batches == 1 ? "" : "s");
	free(inv);
}

/*
 * The manager's answer to one inventory batch. Held blobs leave the cache;
 * untracked ones join it as the least recently used, except the outputs of
 * a result the manager has not acknowledged yet (it records them when it
 * commits the result).
 */
static void on_inventory_ack(struct runner *r, const Seeswarm__V1__BlobInventoryAck *m)
{
	for (size_t i = 0; i < m->n_held; i++)
		blobcache_remove(r->cache, m->held[i].data);
	size_t added = 0;
	for (size_t i = 0; i < m->n_untracked; i++) {
		const uint8_t *dg = m->untracked[i].data;
		uint64_t size = 0;
		if (!blobstore_has(r->bs, dg, &size) || held_by_result(r, dg))
			continue;
		added += blobcache_add_oldest(r->cache, dg, size);
	}
	log_debug("runner: inventory answer: %zu held, %zu untracked (%zu now cache)", m->n_held,
		  m->n_untracked, added);
	cache_trim(r);
}

static void on_ack(struct runner *r, const Seeswarm__V1__TaskAck *ack)
{
	struct stored *s = stored_find(r, ack->task_id, ack->attempt);
	if (!s) {
		log_debug("runner: ack for %s attempt %" PRIu32 " that is not held", ack->task_id,
			  ack->attempt);
		return;
	}
	if (!s->data) {
		char *path = result_path(r, s->task_id, s->attempt);
		if (unlink(path) != 0 && errno != ENOENT)
			log_warn("runner: cannot remove %s: %s", path, strerror(errno));
		free(path);
	}
	stored_remove(r, s);
}

static void on_cancel(struct runner *r, const Seeswarm__V1__TaskCancel *c)
{
	struct attempt *a = attempt_find(r, c->task_id, c->attempt);
	ptrdiff_t pi = a ? -1 : parked_find(r, c->task_id, c->attempt);
	if (pi >= 0) {
		parked_cancel(r, (size_t)pi, c->reason && *c->reason ? c->reason : "cancelled by the manager");
		return;
	}
	if (!a) {
		log_debug("runner: cancel for %s attempt %" PRIu32 " that does not run", c->task_id,
			  c->attempt);
		return;
	}
	log_info("runner: cancelling %s attempt %" PRIu32 ": %s", c->task_id, c->attempt,
		 c->reason && *c->reason ? c->reason : "no reason given");
	cancel_attempt(a, c->reason && *c->reason ? c->reason : "cancelled by the manager");
}

/* Serves one BlobGet from the manager (link = NULL) or from a peer link. */
static void on_blob_get(struct runner *r, struct peer_link *link, const Seeswarm__V1__BlobGet *g)
{
	Seeswarm__V1__BlobData bd = SEESWARM__V1__BLOB_DATA__INIT;
	struct blob_reader *rd = NULL;
	uint8_t *buf = NULL;
	uint64_t size = 0;
	size_t got = 0;
	int rc;

	bd.request_id = g->request_id;
	bd.digest = g->digest;
	bd.offset = g->offset;
	bd.total = g->offset; /* for errors: keeps offset <= total */
	if (g->digest.len != SHA256_LEN) {
		rc = SS_EINVAL;
		bd.message = "digest must be 32 bytes";
		goto out;
	}
	/* A peer reads only what the manager sent it to fetch. */
	if (link && (rc = grant_check(&r->grants, r->grant_key, g->digest.data, peer_link_node(link),
				      g->grant.data, g->grant.len))) {
		bd.message = "no valid grant for this blob";
		log_warn("runner: peer %s asked for a blob without a valid grant", peer_link_node(link));
		goto out;
	}
	if ((rc = blobstore_read_open(r->bs, g->digest.data, &rd, &size))) {
		bd.message = rc == SS_ENOTFOUND ? "blob not held by this agent" : "cannot read the blob";
		goto out;
	}
	if (g->offset > size) {
		rc = SS_EINVAL;
		bd.message = "offset beyond the end of the blob";
		goto out;
	}
	uint64_t want = size - g->offset;
	if (want > g->length)
		want = g->length;
	if (want > MSG_MAX_BLOB_CHUNK)
		want = MSG_MAX_BLOB_CHUNK;
	buf = xmalloc(want ? (size_t)want : 1);
	if (want && (rc = blob_reader_seek(rd, g->offset))) {
		bd.message = "cannot read the blob";
		goto out;
	}
	while (got < want) {
		size_t n = 0;
		if ((rc = blob_reader_read(rd, buf + got, (size_t)want - got, &n))) {
			bd.message = "the stored blob is corrupt";
			goto out;
		}
		if (n == 0)
			break;
		got += n;
	}
	if (got != want) {
		rc = SS_ETRUNC;
		bd.message = "the stored blob is shorter than recorded";
		goto out;
	}
	bd.total = size;
	bd.data.data = buf;
	bd.data.len = got;
out:
	if (rc) {
		if (rc == SS_ENOTFOUND)
			log_info("runner: blob_get %" PRIu64 ": %s", g->request_id, bd.message);
		else
			log_warn("runner: blob_get %" PRIu64 ": %s", g->request_id, bd.message);
		bd.error = (uint32_t)-rc;
		bd.data.len = 0;
		bd.data.data = NULL;
	}
	if (link)
		peer_send(link, MSG_BLOB_DATA, &bd.base);
	else
		send_msg(r, MSG_BLOB_DATA, &bd.base);
	blob_reader_close(rd);
	free(buf);
}

int runner_on_message(struct runner *r, uint16_t type, ProtobufCMessage *msg)
{
	int rc = 0;
	if (!msg)
		return SS_EINVAL;
	if (msg_type_of(msg) != type) {
		rc = SS_EPROTO;
		goto out;
	}
	if (r->closing)
		goto out;
	switch (type) {
	case MSG_TASK_DISPATCH:
		on_dispatch(r, (Seeswarm__V1__TaskDispatch *)msg);
		return 0;
	case MSG_BLOB_DATA:
		on_blob_data(r, NULL, (Seeswarm__V1__BlobData *)msg);
		return 0;
	case MSG_TASK_ACK:
		on_ack(r, (const Seeswarm__V1__TaskAck *)msg);
		break;
	case MSG_TASK_CANCEL:
		on_cancel(r, (const Seeswarm__V1__TaskCancel *)msg);
		break;
	case MSG_TASK_LOG_GET:
		on_log_get(r, (const Seeswarm__V1__TaskLogGet *)msg);
		break;
	case MSG_BLOB_GET:
		on_blob_get(r, NULL, (const Seeswarm__V1__BlobGet *)msg);
		break;
	case MSG_BLOB_REPLICATE: {
		const Seeswarm__V1__BlobReplicate *b = (const Seeswarm__V1__BlobReplicate *)msg;
		if (blobstore_has(r->bs, b->digest.data, NULL)) {
			blobcache_remove(r->cache, b->digest.data); /* held from now on */
			send_stored(r, b->digest.data, b->size, 0, NULL);
			break;
		}
		fetch_add_waiter(r, NULL, 0, b->digest.data, b->size, b->sources, b->n_sources,
				 &b->grant);
		fetch_pump(r);
		break;
	}
	case MSG_BLOB_DELETE:
		on_blob_delete(r, (const Seeswarm__V1__BlobDelete *)msg);
		break;
	case MSG_BLOB_INVENTORY_ACK:
		on_inventory_ack(r, (const Seeswarm__V1__BlobInventoryAck *)msg);
		break;
	default:
		rc = SS_EPROTO;
		break;
	}
out:
	msg_free(msg);
	return rc;
}

/* ---- connection --------------------------------------------------------- */

void runner_on_admitted(struct runner *r)
{
	if (r->closing)
		return;
	r->connected = true;
	for (struct stored *s = r->stored; s; s = s->next)
		s->unsent = true;
	for (struct fetch *f = r->fetches; f; f = f->next)
		fetch_reset(r, f);
	resend_pump(r);
	inventory_send(r);
	fetch_pump(r);
}

void runner_on_disconnected(struct runner *r)
{
	r->connected = false;
	stored_persist(r, true);
	for (struct fetch *f = r->fetches; f; f = f->next)
		fetch_reset(r, f);
}

void runner_set_peer(struct runner *r, struct peer *p)
{
	r->peer = p;
}

void runner_peer_get(struct runner *r, struct peer_link *l, const Seeswarm__V1__BlobGet *g)
{
	if (!r->closing)
		on_blob_get(r, l, g);
}

void runner_peer_data(struct runner *r, struct peer_link *l, Seeswarm__V1__BlobData *d)
{
	if (r->closing) {
		msg_free(&d->base);
		return;
	}
	on_blob_data(r, l, d);
}

void runner_peer_lost(struct runner *r, struct peer_link *l, const char *why)
{
	bool any = false;
	for (struct fetch *f = r->fetches; f; f = f->next) {
		if (f->link == l) {
			fetch_next_source(r, f, why);
			any = true;
		}
	}
	if (any && !r->closing)
		fetch_pump(r);
}

void runner_set_grant_key(struct runner *r, EVP_PKEY *key)
{
	if (r->grant_key != key)
		memset(&r->grants, 0, sizeof r->grants);
	r->grant_key = key;
}

void runner_set_identity(struct runner *r, EVP_PKEY *key, X509 *cert, const uint8_t *attest_digest)
{
	r->key = key;
	r->cert = cert;
	r->has_attest = attest_digest != NULL;
	if (attest_digest)
		memcpy(r->attest, attest_digest, SHA256_LEN);
}

Seeswarm__V1__TaskRef **runner_task_refs(struct runner *r, size_t *n)
{
	size_t count = r->n_parked;
	for (struct attempt *a = r->attempts; a; a = a->next)
		count++;
	for (struct stored *s = r->stored; s; s = s->next)
		count++;
	*n = count;
	if (!count)
		return NULL;
	/* One block: the pointer array, then the messages (pointer-aligned). */
	Seeswarm__V1__TaskRef **refs =
		xcalloc(1, count * (sizeof(Seeswarm__V1__TaskRef *) + sizeof(Seeswarm__V1__TaskRef)));
	Seeswarm__V1__TaskRef *msgs = (Seeswarm__V1__TaskRef *)(void *)(refs + count);
	size_t i = 0;
	for (struct attempt *a = r->attempts; a; a = a->next, i++) {
		seeswarm__v1__task_ref__init(&msgs[i]);
		msgs[i].task_id = a->task_id;
		msgs[i].attempt = a->attempt;
		refs[i] = &msgs[i];
	}
	for (struct stored *s = r->stored; s; s = s->next, i++) {
		seeswarm__v1__task_ref__init(&msgs[i]);
		msgs[i].task_id = s->task_id;
		msgs[i].attempt = s->attempt;
		refs[i] = &msgs[i];
	}
	for (size_t k = 0; k < r->n_parked; k++, i++) {
		seeswarm__v1__task_ref__init(&msgs[i]);
		msgs[i].task_id = r->parked[k]->task_id;
		msgs[i].attempt = r->parked[k]->attempt;
		refs[i] = &msgs[i];
	}
	return refs;
}

void runner_free_refs(Seeswarm__V1__TaskRef **refs, size_t n)
{
	(void)n;
	free(refs);
}

uint32_t runner_running(const struct runner *r)
{
	uint32_t n = 0;
	for (const struct attempt *a = r->attempts; a; a = a->next)
		n++;
	return n;
}

/* ---- start and stop ----------------------------------------------------- */

/* Loads results/ *.res; corrupt files are moved aside to *.bad, temporaries removed. */
static void load_results(struct runner *r)
{
	DIR *d = opendir(r->results_dir);
	if (!d) {
		log_warn("runner: cannot list %s: %s", r->results_dir, strerror(errno));
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		size_t nl = strlen(name);
		if (name[0] == '.' || (nl > 4 && !strcmp(name + nl - 4, ".bad")))
			continue;
		char *path = xasprintf("%s/%s", r->results_dir, name);
		if (nl <= 4 || strcmp(name + nl - 4, ".res") != 0) {
			unlink(path); /* a temporary left by an interrupted write */
			free(path);
			continue;
		}
		char *data = NULL, *expect = NULL;
		size_t len = 0;
		ProtobufCMessage *m = NULL;
		const char *why = "unreadable";
		const uint8_t *payload = NULL;
		size_t plen = 0;
		if (!file_read(path, RUNNER_RESULT_FILE_MAX, &data, &len) &&
		    !result_file_payload(data, len, &payload, &plen, &why) &&
		    !msg_decode(MSG_TASK_RESULT, payload, plen, &m, &why)) {
			const Seeswarm__V1__TaskResult *tr = (const void *)m;
			expect = xasprintf("%s.%" PRIu32 ".res", tr->task_id, tr->attempt);
			if (!strcmp(expect, name))
				stored_add(r, tr->task_id, tr->attempt, tr);
			else
				why = "its name does not match its content";
		}
		if (!expect || strcmp(expect, name) != 0) {
			char *bad = xasprintf("%s.bad", path);
			log_warn("runner: result file %s is corrupt (%s); moved to %s", path, why, bad);
			if (rename(path, bad) != 0)
				log_warn("runner: cannot rename %s: %s", path, strerror(errno));
			free(bad);
		}
		msg_free(m);
		free(expect);
		free(data);
		free(path);
	}
	closedir(d);
}

static void clean_work(struct runner *r)
{
	DIR *d = opendir(r->work_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *path = xasprintf("%s/%s", r->work_dir, de->d_name);
		log_info("runner: removing %s left by a previous run", path);
		rm_tree(path);
		free(path);
	}
	closedir(d);
}

/* Every input of a running task is an open memfd: allow as many files as the hard limit. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("runner: cannot raise the open-file limit: %s", strerror(errno));
	}
}

static void runner_free(struct runner *r)
{
	while (r->n_parked > 0)
		msg_free(&r->parked[--r->n_parked]->base);
	free(r->doomed);
	while (r->stored)
		stored_remove(r, r->stored);
	while (r->fetches) {
		struct fetch *f = r->fetches;
		r->fetches = f->next;
		fetch_free(r, f);
	}
	blobstore_close(r->bs);
	blobcache_free(r->cache);
	exec_sandbox_free(r->sb);
	exec_capacity_free(r->cap);
	free(r->node_id);
	free(r->results_dir);
	free(r->work_dir);
	free(r->bundle_dir);
	free(r->bundles_dir);
	free(r);
}

int runner_new(struct runner **out, uv_loop_t *loop, const struct runner_opts *opts,
	       const struct runner_io *io)
{
	struct runner *r = xcalloc(1, sizeof(*r));
	uint8_t key[BLOBSTORE_KEY_LEN];
	char *p = NULL;
	int rc;

	*out = NULL;
	r->loop = loop;
	r->io = *io;
	r->node_id = xstrdup(opts->node_id ? opts->node_id : "local");
	r->results_dir = xasprintf("%s/results", opts->state_dir);
	r->work_dir = xasprintf("%s/work", opts->state_dir);
	r->bundle_dir = xasprintf("%s/bundle", opts->state_dir);
	r->bundles_dir = xasprintf("%s/bundles", opts->state_dir);
	if ((rc = dir_ensure(opts->state_dir, 0700)) || (rc = dir_ensure(r->results_dir, 0700)) ||
	    (rc = dir_ensure(r->work_dir, 0700)) || (rc = dir_ensure(r->bundle_dir, 0755)) ||
	    (rc = dir_ensure(r->bundles_dir, 0711))) {
		log_error("runner: cannot prepare %s: %s", opts->state_dir, ss_strerror(rc));
		goto out;
	}
	p = xasprintf("%s/blob.key", opts->state_dir);
	if ((rc = blobstore_key_load(p, key))) {
		log_error("runner: cannot load the blob key %s: %s", p, ss_strerror(rc));
		goto out;
	}
	free(p);
	p = xasprintf("%s/blobs", opts->state_dir);
	rc = blobstore_open(&r->bs, p, key, opts->blob_quota_bytes);
	r->cache = blobcache_new(opts->store_max_bytes);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc) {
		log_error("runner: cannot open the blob store %s: %s", p, ss_strerror(rc));
		goto out;
	}
	load_results(r);
	clean_work(r);

	/*
	 * Tasks without network share one empty network namespace (loopback
	 * down) instead of creating one each, where Landlock (ABI >= 6) keeps
	 * their abstract unix sockets and signals apart and (ABI >= 4) forbids
	 * TCP bind/connect: as isolated as a fresh namespace, and creating and
	 * tearing one down was about 13 % of an agent's CPU per task. Older
	 * kernels get a fresh namespace per task.
	 */
	struct exec_sandbox_opts so = {.shared_netns = true, .warm = opts->warm_sandboxes};
	rc = exec_sandbox_new(&r->sb, &so);
	if (rc) {
		snprintf(r->sb_why, sizeof(r->sb_why), "the sandbox is unavailable on this agent: %s",
			 rc == SS_EPERM ? "the agent does not run as root" : ss_strerror(rc));
		log_warn("runner: %s; every task will be refused", r->sb_why);
		r->sb = NULL;
		rc = 0;
	} else {
		log_info("runner: sandbox %s", exec_sandbox_describe(r->sb));
	}
	raise_nofile();
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	uint32_t max_tasks = opts->max_tasks ? opts->max_tasks : 2 * (uint32_t)cores;
	uint32_t cpu = opts->cpu_millicores ? opts->cpu_millicores : 1000 * (uint32_t)cores;
	uint64_t mem = opts->memory_bytes;
	if (!mem)
		mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t pids = 4096ull * max_tasks;
	r->cap = exec_capacity_new(cpu, mem, pids > UINT32_MAX ? UINT32_MAX : (uint32_t)pids,
				   max_tasks);
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	size_t held = 0;
	for (struct stored *s = r->stored; s; s = s->next)
		held++;
	log_info("runner: ready in %s (%zu unacknowledged results)", opts->state_dir, held);
out:
	free(p);
	if (rc)
		runner_free(r);
	else
		*out = r;
	return rc;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct runner *r = h->data;
	void (*cb)(void *) = r->close_cb;
	void *arg = r->close_arg;
	runner_free(r);
	if (cb)
		cb(arg);
}

static void on_timer(uv_timer_t *t)
{
	struct runner *r = t->data;
	if (!r->closing) {
		resend_pump(r);
		return;
	}
	if (r->n_work)
		return;
	uv_timer_stop(t);
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, on_timer_closed);
}

void runner_close(struct runner *r, void (*cb)(void *arg), void *arg)
{
	r->closing = true;
	r->connected = false;
	stored_persist(r, true);
	r->close_cb = cb;
	r->close_arg = arg;
	for (struct attempt *a = r->attempts, *next; a; a = next) {
		next = a->next;
		atomic_store(&a->discard, true);
		if (a->st == AT_FETCHING)
			attempt_abort(a, "signaled", SIGKILL, "the agent stopped");
		else
			exec_cancel_trigger(a->cancel);
	}
	uv_timer_start(&r->timer, on_timer, 0, RUNNER_CLOSE_POLL_MS);
}
