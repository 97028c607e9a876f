/*
 * test_runner.c - unit tests for the agent's task runner (src/agent/runner.c).
 *
 * A real libuv loop drives a real runner with a real sandbox; a fake
 * connection captures what the runner sends, packs and decodes every message
 * (the real wire path) and lets the test answer BlobGets. The sandbox needs
 * root: without it every test is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/exec/exec.h"
#include "agent/runner.h"
#include "attest/ca.h"
#include "core/core.h"
#include "fixture.h"

#define MAX_SENT 512
#define BIG_SIZE (300u * 1024u + 17u)

struct sent {
	uint16_t type;
	ProtobufCMessage *m;
	bool answered; /* BlobGets the test has answered */
};

struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	char dir[64];
	struct runner *r;
	struct runner_opts opts;
	struct runner_io io;
	EVP_PKEY *key;
	X509 *cert;
	char *cert_pem;
	uint8_t attest[SHA256_LEN];
	struct sent sent[MAX_SENT];
	size_t n_sent;
	bool closed;
	/* The blob the fake manager serves, or NULL. */
	const uint8_t *blob;
	size_t blob_len;
	uint8_t blob_digest[SHA256_LEN];
	size_t n_blob_gets;
	bool close_done;
};

static int fake_send(void *arg, uint16_t type, const ProtobufCMessage *m)
{
	struct fx *f = arg;
	if (f->closed)
		return SS_ECLOSED;
	size_t len = 0;
	uint8_t *p = msg_pack(m, &len);
	ProtobufCMessage *d = NULL;
	const char *why = NULL;
	int rc = msg_decode(type, p, len, &d, &why);
	free(p);
	if (rc)
		fail_msg("the runner sent a %s that does not decode: %s", msg_type_name(type), why);
	assert_true(f->n_sent < MAX_SENT);
	f->sent[f->n_sent++] = (struct sent){.type = type, .m = d};
	return 0;
}

static size_t fake_queued(void *arg)
{
	(void)arg;
	return 0;
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

static void on_closed(void *arg)
{
	struct fx *f = arg;
	f->close_done = true;
}

static void start_runner(struct fx *f)
{
	assert_int_equal(runner_new(&f->r, &f->loop, &f->opts, &f->io), 0);
	runner_set_identity(f->r, f->key, f->cert, f->attest);
	runner_on_admitted(f->r);
}

/* Closes the runner and runs the loop until its callback came. */
static void stop_runner(struct fx *f)
{
	if (!f->r)
		return;
	f->close_done = false;
	runner_close(f->r, on_closed, f);
	f->r = NULL;
	uint64_t deadline = time_mono_ms() + 10000;
	while (!f->close_done && time_mono_ms() < deadline)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_true(f->close_done);
}

static int setup_with(void **state, uint32_t max_tasks)
{
	if (geteuid() != 0) {
		*state = NULL;
		return 0;
	}
	struct fx *f = xcalloc(1, sizeof(*f));
	fx_tmpdir(f->dir, sizeof(f->dir), "runner");
	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->tick);
	assert_int_equal(exec_ephemeral_identity("node-1", &f->key, &f->cert), 0);
	f->cert_pem = pem_cert_string(f->cert);
	memset(f->attest, 0x5a, sizeof(f->attest));
	f->opts = (struct runner_opts){.state_dir = f->dir, .node_id = "node-1",
				       .cpu_millicores = 8000, .memory_bytes = 8ull << 30,
				       .max_tasks = max_tasks};
	f->io = (struct runner_io){.arg = f, .send = fake_send, .queued = fake_queued};
	start_runner(f);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 4);
}

static int setup_one(void **state)
{
	return setup_with(state, 1);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (!f)
		return 0;
	stop_runner(f);
	uv_close((uv_handle_t *)&f->tick, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (size_t i = 0; i < f->n_sent; i++)
		msg_free(f->sent[i].m);
	EVP_PKEY_free(f->key);
	X509_free(f->cert);
	free(f->cert_pem);
	fx_rmtree(f->dir);
	free(f);
	return 0;
}

#define NEED_ROOT(f)                                                                      \
	do {                                                                              \
		if (!(f)) {                                                               \
			print_message("skipping: the sandbox needs root (run as root)\n"); \
			skip();                                                           \
		}                                                                         \
	} while (0)

/* ---- building and delivering manager messages ---------------------------- */

/* Packs m and decodes it, so the runner receives what it would from the wire. */
static ProtobufCMessage *wire(uint16_t type, const ProtobufCMessage *m)
{
	size_t len = 0;
	uint8_t *p = msg_pack(m, &len);
	ProtobufCMessage *d = NULL;
	const char *why = NULL;
	int rc = msg_decode(type, p, len, &d, &why);
	free(p);
	if (rc)
		fail_msg("test message %s does not decode: %s", msg_type_name(type), why);
	return d;
}

static void deliver(struct fx *f, uint16_t type, const ProtobufCMessage *m)
{
	assert_int_equal(runner_on_message(f->r, type, wire(type, m)), 0);
}

struct input {
	const char *name;
	const void *data;
	size_t len;
	bool send_inline;
	bool bad_digest;
};

static void dispatch(struct fx *f, const char *task_id, uint32_t attempt, const char *script,
		     const struct input *ins, size_t n_ins, const char *output)
{
	Seeswarm__V1__TaskDispatch d = SEESWARM__V1__TASK_DISPATCH__INIT;
	Seeswarm__V1__TaskResources res = SEESWARM__V1__TASK_RESOURCES__INIT;
	Seeswarm__V1__TaskInput in[4], *inp[4];
	uint8_t dg[4][SHA256_LEN];
	char *argv[] = {"sh", "-c", (char *)script};
	char *outs[] = {(char *)output};
	char job[64];

	snprintf(job, sizeof(job), "%s", task_id);
	*strrchr(job, '.') = '\0';
	d.job_id = job;
	d.task_id = (char *)task_id;
	d.attempt = attempt;
	d.name = "test";
	d.argv = argv;
	d.n_argv = 3;
	assert_true(n_ins <= 4);
	for (size_t i = 0; i < n_ins; i++) {
		seeswarm__v1__task_input__init(&in[i]);
		sha256(ins[i].data, ins[i].len, dg[i]);
		if (ins[i].bad_digest)
			dg[i][0] ^= 1;
		in[i].name = (char *)ins[i].name;
		in[i].digest.data = dg[i];
		in[i].digest.len = SHA256_LEN;
		in[i].size = ins[i].len;
		if (ins[i].send_inline) {
			in[i].data.data = (uint8_t *)ins[i].data;
			in[i].data.len = ins[i].len;
		}
		inp[i] = &in[i];
	}
	d.inputs = inp;
	d.n_inputs = n_ins;
	if (output) {
		d.outputs = outs;
		d.n_outputs = 1;
	}
	res.cpu_millicores = 500;
	res.memory_bytes = 64u << 20;
	res.pids = 32;
	res.timeout_ms = 60000;
	d.resources = &res;
	deliver(f, MSG_TASK_DISPATCH, &d.base);
}

static void ack(struct fx *f, const char *task_id, uint32_t attempt)
{
	Seeswarm__V1__TaskAck a = SEESWARM__V1__TASK_ACK__INIT;
	a.task_id = (char *)task_id;
	a.attempt = attempt;
	deliver(f, MSG_TASK_ACK, &a.base);
}

static void blob_get(struct fx *f, uint64_t id, const uint8_t digest[SHA256_LEN], uint64_t off,
		     uint32_t len)
{
	Seeswarm__V1__BlobGet g = SEESWARM__V1__BLOB_GET__INIT;
	g.request_id = id;
	g.digest.data = (uint8_t *)digest;
	g.digest.len = SHA256_LEN;
	g.offset = off;
	g.length = len;
	deliver(f, MSG_BLOB_GET, &g.base);
}

/* Answers every unanswered BlobGet, newest first (so chunks arrive out of order). */
static void answer_blob_gets(struct fx *f)
{
	for (size_t k = f->n_sent; k-- > 0;) {
		struct sent *s = &f->sent[k];
		if (s->type != MSG_BLOB_GET || s->answered)
			continue;
		s->answered = true;
		f->n_blob_gets++;
		const Seeswarm__V1__BlobGet *g = (const void *)s->m;
		Seeswarm__V1__BlobData bd = SEESWARM__V1__BLOB_DATA__INIT;
		bd.request_id = g->request_id;
		bd.digest = g->digest;
		bd.offset = g->offset;
		if (!f->blob || memcmp(g->digest.data, f->blob_digest, SHA256_LEN)) {
			bd.error = 13;
			bd.message = "no such blob";
			bd.total = g->offset;
		} else {
			assert_true(g->offset < f->blob_len);
			uint64_t n = f->blob_len - g->offset;
			if (n > g->length)
				n = g->length;
			bd.total = f->blob_len;
			bd.data.data = (uint8_t *)f->blob + g->offset;
			bd.data.len = n;
		}
		deliver(f, MSG_BLOB_DATA, &bd.base);
	}
}

/* ---- waiting for what the runner sends ----------------------------------- */

static size_t count(const struct fx *f, uint16_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n_sent; i++)
		n += f->sent[i].type == type;
	return n;
}

/* The index of the k-th message of type about task_id (NULL: any), or -1. */
static long find(const struct fx *f, uint16_t type, const char *task_id, size_t k)
{
	for (size_t i = 0; i < f->n_sent; i++) {
		if (f->sent[i].type != type)
			continue;
		const char *t = NULL;
		if (type == MSG_TASK_RESULT)
			t = ((const Seeswarm__V1__TaskResult *)f->sent[i].m)->task_id;
		else if (type == MSG_TASK_STARTED)
			t = ((const Seeswarm__V1__TaskStarted *)f->sent[i].m)->task_id;
		if (task_id && t && strcmp(t, task_id))
			continue;
		if (k-- == 0)
			return (long)i;
	}
	return -1;
}

/* Runs the loop (answering BlobGets) until the (k+1)-th message of type about task_id arrives. */
static long wait_for(struct fx *f, uint16_t type, const char *task_id, size_t k, uint64_t ms)
{
	uint64_t deadline = time_mono_ms() + ms;
	long i;
	uv_timer_start(&f->tick, on_tick, 10, 10);
	while ((i = find(f, type, task_id, k)) < 0 && time_mono_ms() < deadline) {
		uv_run(&f->loop, UV_RUN_ONCE);
		answer_blob_gets(f);
	}
	uv_timer_stop(&f->tick);
	if (i < 0)
		fail_msg("no %s for %s within %" PRIu64 " ms", msg_type_name(type),
			 task_id ? task_id : "any task", ms);
	return i;
}

static const Seeswarm__V1__TaskResult *result_of(struct fx *f, const char *task_id)
{
	long i = wait_for(f, MSG_TASK_RESULT, task_id, 0, 10000);
	return (const void *)f->sent[i].m;
}

static bool result_file_exists(const struct fx *f, const char *task_id, uint32_t attempt)
{
	char path[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/results/%s.%u.res", f->dir, task_id, attempt);
	return stat(path, &st) == 0;
}

static const struct input hello_in = {"a", "hello\n", 6, true, false};

/* ---- tests --------------------------------------------------------------- */

/*
 * (1) An inline input, an output, a verifiable receipt; the result is held
 * (in memory while an ack may still come soon, on disk once the connection
 * drops) until the ack.
 */
static void test_inline_task(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job1.0", 1, "wc -c < /in/a > /out/n", &hello_in, 1, "n");
	const Seeswarm__V1__TaskResult *r = result_of(f, "job1.0");
	long started = find(f, MSG_TASK_STARTED, "job1.0", 0);
	assert_true(started >= 0);
	assert_true(started < find(f, MSG_TASK_RESULT, "job1.0", 0));
	assert_true(((const Seeswarm__V1__TaskStarted *)f->sent[started].m)->start_ms > 0);

	if (!r->ok)
		fail_msg("task failed: %s %d: %s", r->status, r->code, r->message);
	assert_string_equal(r->status, "exited");
	assert_int_equal(r->code, 0);
	assert_int_equal(r->attempt, 1);
	assert_int_equal(r->n_outputs, 1);
	assert_string_equal(r->outputs[0]->name, "n");
	assert_int_equal(r->outputs[0]->size, 2);
	assert_int_equal(r->outputs[0]->data.len, 2);
	assert_memory_equal(r->outputs[0]->data.data, "6\n", 2);
	uint8_t dg[SHA256_LEN];
	sha256("6\n", 2, dg);
	assert_memory_equal(r->outputs[0]->digest.data, dg, SHA256_LEN);
	assert_true(r->end_ms >= r->start_ms);

	char why[256] = "";
	char *body = NULL;
	assert_true(r->receipt.len > 0);
	int rc = exec_receipt_verify((const char *)r->receipt.data, r->receipt.len, f->cert_pem,
				     strlen(f->cert_pem), why, sizeof(why), &body);
	if (rc)
		fail_msg("receipt rejected: %s", why);
	assert_non_null(strstr(body, "\"task_id\":\"job1.0\""));
	assert_non_null(strstr(body, "5a5a5a5a")); /* the attestation digest */
	free(body);

	assert_false(result_file_exists(f, "job1.0", 1));
	size_t n = 0;
	Seeswarm__V1__TaskRef **refs = runner_task_refs(f->r, &n);
	assert_int_equal(n, 1);
	assert_string_equal(refs[0]->task_id, "job1.0");
	runner_free_refs(refs, n);
	assert_int_equal(runner_running(f->r), 0);
	f->closed = true;
	runner_on_disconnected(f->r);
	assert_true(result_file_exists(f, "job1.0", 1));
	f->closed = false;

	ack(f, "job1.0", 1);
	assert_false(result_file_exists(f, "job1.0", 1));
	refs = runner_task_refs(f->r, &n);
	assert_int_equal(n, 0);
	runner_free_refs(refs, n);
	ack(f, "job1.0", 1); /* unknown now: ignored */
}

/* (2) Inputs fetched with BlobGet, in chunks, once for two tasks. */
static void test_fetched_input(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	uint8_t *big = xmalloc(BIG_SIZE);
	rand_bytes(big, BIG_SIZE);
	f->blob = big;
	f->blob_len = BIG_SIZE;
	sha256(big, BIG_SIZE, f->blob_digest);
	struct input in = {"big", big, BIG_SIZE, false, false};

	dispatch(f, "job2.0", 1, "wc -c < /in/big > /out/n", &in, 1, "n");
	dispatch(f, "job2.1", 1, "wc -c < /in/big > /out/n", &in, 1, "n");
	/* Both wait for the same blob: one fetch, a window of at most four chunks. */
	assert_int_equal(runner_running(f->r), 2);
	size_t gets = count(f, MSG_BLOB_GET);
	assert_true(gets >= 2 && gets <= 4);
	for (size_t i = 0; i < f->n_sent; i++) {
		if (f->sent[i].type != MSG_BLOB_GET)
			continue;
		const Seeswarm__V1__BlobGet *g = (const void *)f->sent[i].m;
		assert_true(g->length <= 256 * 1024);
		assert_memory_equal(g->digest.data, f->blob_digest, SHA256_LEN);
	}
	char expect[32];
	snprintf(expect, sizeof(expect), "%u\n", BIG_SIZE);
	for (int t = 0; t < 2; t++) {
		const Seeswarm__V1__TaskResult *r = result_of(f, t ? "job2.1" : "job2.0");
		if (!r->ok)
			fail_msg("task failed: %s %d: %s", r->status, r->code, r->message);
		assert_int_equal(r->outputs[0]->data.len, strlen(expect));
		assert_memory_equal(r->outputs[0]->data.data, expect, strlen(expect));
	}
	/* Every chunk was asked for once: ceil(size / 256 KiB) requests in all. */
	assert_int_equal(count(f, MSG_BLOB_GET), (BIG_SIZE + 256 * 1024 - 1) / (256 * 1024));

	/* Now it is in the agent's store: a third task needs no fetch. */
	size_t before = count(f, MSG_BLOB_GET);
	dispatch(f, "job2.2", 1, "wc -c < /in/big > /out/n", &in, 1, "n");
	assert_true(result_of(f, "job2.2")->ok);
	assert_int_equal(count(f, MSG_BLOB_GET), before);
	f->blob = NULL;
	free(big);
}

/* (2c) A disconnect abandons a fetch; stale answers are ignored; admission restarts it. */
static void test_fetch_reconnect(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	uint8_t *big = xmalloc(BIG_SIZE);
	rand_bytes(big, BIG_SIZE);
	f->blob = big;
	f->blob_len = BIG_SIZE;
	sha256(big, BIG_SIZE, f->blob_digest);
	struct input in = {"big", big, BIG_SIZE, false, false};

	dispatch(f, "job10.0", 1, "wc -c < /in/big > /out/n", &in, 1, "n");
	size_t first = count(f, MSG_BLOB_GET);
	assert_true(first >= 2);
	f->closed = true;
	runner_on_disconnected(f->r);
	answer_blob_gets(f); /* answers to the old connection's requests: stale */
	assert_int_equal(count(f, MSG_TASK_STARTED), 0);
	assert_int_equal(runner_running(f->r), 1);
	f->closed = false;
	runner_on_admitted(f->r);
	assert_true(count(f, MSG_BLOB_GET) >= 2 * first);
	const Seeswarm__V1__TaskResult *r = result_of(f, "job10.0");
	if (!r->ok)
		fail_msg("task failed: %s %d: %s", r->status, r->code, r->message);
	f->blob = NULL;
	free(big);
}

/* (2b) The manager cannot provide a blob: input_error. */
static void test_fetch_error(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	static const char data[] = "not held by the manager";
	struct input in = {"x", data, sizeof(data) - 1, false, false};
	dispatch(f, "job9.0", 1, "cat /in/x", &in, 1, NULL);
	const Seeswarm__V1__TaskResult *r = result_of(f, "job9.0");
	assert_false(r->ok);
	assert_string_equal(r->status, "input_error");
	assert_non_null(strstr(r->message, "'x'"));
	assert_int_equal(find(f, MSG_TASK_STARTED, "job9.0", 0), -1);
	assert_int_equal(runner_running(f->r), 0);
}

/* (3) An inline input that does not match its digest. */
static void test_bad_inline_digest(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	struct input in = hello_in;
	in.bad_digest = true;
	dispatch(f, "job3.0", 1, "cat /in/a", &in, 1, NULL);
	const Seeswarm__V1__TaskResult *r = result_of(f, "job3.0");
	assert_false(r->ok);
	assert_string_equal(r->status, "input_error");
	assert_non_null(strstr(r->message, "digest"));
	assert_int_equal(find(f, MSG_TASK_STARTED, "job3.0", 0), -1);
	/* Not acknowledged: held in memory for a second, then written out by the next result. */
	assert_false(result_file_exists(f, "job3.0", 1));
	usleep(1100 * 1000);
	dispatch(f, "job3.1", 1, "cat /in/a", &in, 1, NULL);
	(void)result_of(f, "job3.1");
	assert_true(result_file_exists(f, "job3.0", 1));
	assert_false(result_file_exists(f, "job3.1", 1));
}

/* (4) A failing command. */
static void test_exit_code(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job4.0", 1, "echo out; echo oops >&2; exit 3", NULL, 0, NULL);
	const Seeswarm__V1__TaskResult *r = result_of(f, "job4.0");
	assert_false(r->ok);
	assert_string_equal(r->status, "exited");
	assert_int_equal(r->code, 3);
	assert_int_equal(r->stdout_tail.len, 4);
	assert_memory_equal(r->stdout_tail.data, "out\n", 4);
	assert_int_equal(r->stderr_tail.len, 5);
	assert_memory_equal(r->stderr_tail.data, "oops\n", 5);
}

/* (5) An unacknowledged result survives a restart and is sent again, byte for byte. */
static void test_restart(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job5.0", 2, "wc -c < /in/a > /out/n", &hello_in, 1, "n");
	long i = wait_for(f, MSG_TASK_RESULT, "job5.0", 0, 10000);
	size_t len1 = 0, len2 = 0;
	uint8_t *p1 = msg_pack(f->sent[i].m, &len1);

	stop_runner(f);
	/* A corrupt result file and a stale work directory from "before". */
	char path[256];
	snprintf(path, sizeof(path), "%s/results/junk.1.res", f->dir);
	assert_int_equal(file_write_atomic(path, "garbage", 7, 0600), 0);
	snprintf(path, sizeof(path), "%s/work/stale.1", f->dir);
	assert_int_equal(dir_ensure(path, 0700), 0);

	f->closed = true; /* not connected yet */
	assert_int_equal(runner_new(&f->r, &f->loop, &f->opts, &f->io), 0);
	runner_set_identity(f->r, f->key, f->cert, f->attest);
	struct stat st;
	assert_int_not_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/results/junk.1.res.bad", f->dir);
	assert_int_equal(stat(path, &st), 0);

	size_t n = 0;
	Seeswarm__V1__TaskRef **refs = runner_task_refs(f->r, &n);
	assert_int_equal(n, 1);
	assert_string_equal(refs[0]->task_id, "job5.0");
	assert_int_equal(refs[0]->attempt, 2);
	runner_free_refs(refs, n);

	f->closed = false;
	size_t before = count(f, MSG_TASK_RESULT);
	runner_on_admitted(f->r);
	assert_int_equal(count(f, MSG_TASK_RESULT), before + 1);
	i = find(f, MSG_TASK_RESULT, "job5.0", 1);
	assert_true(i >= 0);
	uint8_t *p2 = msg_pack(f->sent[i].m, &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(p1, p2, len1);
	free(p1);
	free(p2);

	/* A duplicate dispatch of the finished attempt gets the stored result again. */
	dispatch(f, "job5.0", 2, "wc -c < /in/a > /out/n", &hello_in, 1, "n");
	assert_true(find(f, MSG_TASK_RESULT, "job5.0", 2) >= 0);
	assert_int_equal(runner_running(f->r), 0);
	ack(f, "job5.0", 2);
	assert_false(result_file_exists(f, "job5.0", 2));
}

/* (6) BlobGet for an output the agent holds, and for one it does not. */
static void test_serve_blob(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job6.0", 1, "wc -c < /in/a > /out/n", &hello_in, 1, "n");
	const Seeswarm__V1__TaskResult *r = result_of(f, "job6.0");
	assert_true(r->ok);
	uint8_t dg[SHA256_LEN];
	memcpy(dg, r->outputs[0]->digest.data, SHA256_LEN);

	blob_get(f, 77, dg, 0, 512 * 1024);
	long i = find(f, MSG_BLOB_DATA, NULL, 0);
	assert_true(i >= 0);
	const Seeswarm__V1__BlobData *bd = (const void *)f->sent[i].m;
	assert_int_equal(bd->request_id, 77);
	assert_int_equal(bd->error, 0);
	assert_int_equal(bd->total, 2);
	assert_int_equal(bd->offset, 0);
	assert_int_equal(bd->data.len, 2);
	assert_memory_equal(bd->data.data, "6\n", 2);

	blob_get(f, 78, dg, 1, 1);
	bd = (const void *)f->sent[find(f, MSG_BLOB_DATA, NULL, 1)].m;
	assert_int_equal(bd->request_id, 78);
	assert_int_equal(bd->data.len, 1);
	assert_memory_equal(bd->data.data, "\n", 1);

	dg[0] ^= 0xff;
	blob_get(f, 79, dg, 0, 1024);
	bd = (const void *)f->sent[find(f, MSG_BLOB_DATA, NULL, 2)].m;
	assert_int_equal(bd->request_id, 79);
	assert_int_equal(bd->error, 13);
	assert_int_equal(bd->data.len, 0);
	assert_non_null(bd->message);
}

/* (7) Cancelling a long task returns promptly, and the runner keeps working. */
static void test_cancel(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job7.0", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job7.0", 0, 5000);
	/* Let it really start in the sandbox. */
	uint64_t t = time_mono_ms() + 150;
	uv_timer_start(&f->tick, on_tick, 10, 10);
	while (time_mono_ms() < t)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_timer_stop(&f->tick);

	Seeswarm__V1__TaskCancel c = SEESWARM__V1__TASK_CANCEL__INIT;
	c.task_id = "job7.0";
	c.attempt = 1;
	c.reason = "job cancelled";
	uint64_t t0 = time_mono_ms();
	deliver(f, MSG_TASK_CANCEL, &c.base);
	long i = wait_for(f, MSG_TASK_RESULT, "job7.0", 0, 5000);
	assert_true(time_mono_ms() - t0 < 5000);
	const Seeswarm__V1__TaskResult *r = (const void *)f->sent[i].m;
	assert_false(r->ok);
	assert_string_equal(r->status, "signaled");
	assert_non_null(strstr(r->message, "cancelled"));
	assert_non_null(strstr(r->message, "job cancelled"));
	assert_int_equal(runner_running(f->r), 0);

	dispatch(f, "job7.1", 1, "wc -c < /in/a > /out/n", &hello_in, 1, "n");
	assert_true(result_of(f, "job7.1")->ok);

	/* A newer attempt of a running task cancels the older one. */
	dispatch(f, "job7.2", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job7.2", 0, 5000);
	dispatch(f, "job7.2", 2, "true", NULL, 0, NULL);
	for (size_t k = 0; k < 2; k++)
		wait_for(f, MSG_TASK_RESULT, "job7.2", k, 5000);
	assert_int_equal(runner_running(f->r), 0);
}

/* (8) With one task slot, a second concurrent dispatch is refused. */
static void test_refused(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job8.0", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job8.0", 0, 5000);
	dispatch(f, "job8.1", 1, "true", NULL, 0, NULL);
	const Seeswarm__V1__TaskResult *r = result_of(f, "job8.1");
	assert_false(r->ok);
	assert_string_equal(r->status, "refused");
	assert_non_null(strstr(r->message, "slot"));
	assert_int_equal(runner_running(f->r), 1);
	/* Duplicate dispatch of the running attempt: ignored. */
	size_t before = f->n_sent;
	dispatch(f, "job8.0", 1, "sleep 30", NULL, 0, NULL);
	assert_int_equal(f->n_sent, before);
	/* Closing kills it promptly (teardown waits for it). */
	uint64_t t0 = time_mono_ms();
	stop_runner(f);
	assert_true(time_mono_ms() - t0 < 5000);
	assert_false(result_file_exists(f, "job8.0", 1));
}

static void cancel(struct fx *f, const char *task_id, uint32_t attempt, const char *reason)
{
	Seeswarm__V1__TaskCancel c = SEESWARM__V1__TASK_CANCEL__INIT;
	c.task_id = (char *)task_id;
	c.attempt = attempt;
	c.reason = (char *)reason;
	deliver(f, MSG_TASK_CANCEL, &c.base);
}

static bool holds(struct runner *r, const char *task_id, uint32_t attempt)
{
	size_t n = 0;
	bool found = false;
	Seeswarm__V1__TaskRef **refs = runner_task_refs(r, &n);
	for (size_t i = 0; i < n; i++)
		found |= refs[i]->attempt == attempt && !strcmp(refs[i]->task_id, task_id);
	runner_free_refs(refs, n);
	return found;
}

/*
 * (9) With its one slot held by an attempt being cancelled (the manager
 * preempted it), a dispatch waits for that attempt to end instead of being
 * refused; it counts as held meanwhile, and a cancel ends it unrun.
 */
static void test_parked_behind_a_cancel(void **state)
{
	struct fx *f = *state;
	NEED_ROOT(f);
	dispatch(f, "job9.0", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job9.0", 0, 5000);
	cancel(f, "job9.0", 1, "preempted");
	dispatch(f, "job9.1", 1, "echo hi > /out/o", NULL, 0, "o");
	assert_true(holds(f->r, "job9.1", 1));
	const Seeswarm__V1__TaskResult *r = result_of(f, "job9.1");
	assert_true(r->ok);
	r = result_of(f, "job9.0");
	assert_string_equal(r->status, "signaled");
	assert_non_null(strstr(r->message, "preempted"));

	dispatch(f, "job9.2", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job9.2", 0, 5000);
	cancel(f, "job9.2", 1, "preempted");
	dispatch(f, "job9.3", 1, "true", NULL, 0, NULL);
	/* The same dispatch again is a duplicate, not a second waiter. */
	dispatch(f, "job9.3", 1, "true", NULL, 0, NULL);
	cancel(f, "job9.3", 1, "job cancelled");
	r = result_of(f, "job9.3");
	assert_false(r->ok);
	assert_string_equal(r->status, "signaled");
	assert_non_null(strstr(r->message, "job cancelled"));
	wait_for(f, MSG_TASK_RESULT, "job9.2", 0, 5000);
	assert_int_equal(find(f, MSG_TASK_STARTED, "job9.3", 0), -1);

	/* Without a cancelled attempt to wait for, a dispatch that does not fit is refused as before. */
	dispatch(f, "job9.4", 1, "sleep 30", NULL, 0, NULL);
	wait_for(f, MSG_TASK_STARTED, "job9.4", 0, 5000);
	dispatch(f, "job9.5", 1, "true", NULL, 0, NULL);
	assert_string_equal(result_of(f, "job9.5")->status, "refused");
}

int main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inline_task, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetched_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_inline_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_code, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup_one, teardown),
		cmocka_unit_test_setup_teardown(test_parked_behind_a_cancel, setup_one, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
