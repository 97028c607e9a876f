/* test_msg.c - unit tests for message decoding and validation (src/net/msg.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include <cmocka.h>

#include "core/core.h"
#include "net/msg.h"

/* A valid Hello built from storage owned by this struct. */
struct hello_fx {
	Seeswarm__V1__Hello h;
	Seeswarm__V1__Capabilities caps;
	Seeswarm__V1__Label label_store[40];
	Seeswarm__V1__Label *labels[40];
	char *features[80];
	char *evtypes[12];
	char names[80][16];
};

static void hello_init(struct hello_fx *f)
{
	static const Seeswarm__V1__Hello h0 = SEESWARM__V1__HELLO__INIT;
	static const Seeswarm__V1__Capabilities c0 = SEESWARM__V1__CAPABILITIES__INIT;
	static const Seeswarm__V1__Label l0 = SEESWARM__V1__LABEL__INIT;
	memset(f, 0, sizeof *f);
	f->h = h0;
	f->caps = c0;
	for (size_t i = 0; i < ARRAY_LEN(f->label_store); i++) {
		f->label_store[i] = l0;
		f->labels[i] = &f->label_store[i];
		snprintf(f->names[i], sizeof f->names[i], "k%zu", i);
		f->label_store[i].key = f->names[i];
		f->label_store[i].value = "v";
	}
	for (size_t i = 0; i < ARRAY_LEN(f->features); i++)
		f->features[i] = "aes";
	f->label_store[0].key = "zone";
	f->label_store[0].value = "eu-west-1a";
	f->label_store[1].key = "tier";
	f->label_store[1].value = "gold";
	f->features[0] = "aes";
	f->features[1] = "avx2";
	f->evtypes[0] = "sim";
	f->evtypes[1] = "tpm";

	f->caps.cpu_cores = 8;
	f->caps.memory_bytes = 16ull << 30;
	f->caps.disk_bytes = 100ull << 30;
	f->caps.features = f->features;
	f->caps.n_features = 2;
	f->caps.tee_type = "sim";
	f->caps.hostname = "host-1";

	f->h.protocol_version = PROTOCOL_VERSION;
	f->h.agent_id = "agent-1";
	f->h.agent_version = "0.1.0";
	f->h.capabilities = &f->caps;
	f->h.labels = f->labels;
	f->h.n_labels = 2;
	f->h.price_per_hour = 0.25;
	f->h.evidence_types = f->evtypes;
	f->h.n_evidence_types = 2;
	f->h.advertise_addr = "10.0.0.5:7001";
}

/* Packs m, decodes it as type, and returns the decoder's code and reason. */
static int round_trip(const ProtobufCMessage *m, uint16_t type, ProtobufCMessage **out,
		      const char **why)
{
	size_t len = 0;
	uint8_t *p = msg_pack(m, &len);
	int rc = msg_decode(type, p, len, out, why);
	free(p);
	if (rc)
		assert_null(*out);
	return rc;
}

/* Asserts that the hello in f is rejected with a reason containing needle. */
static void expect_hello_reject(struct hello_fx *f, const char *needle)
{
	ProtobufCMessage *out = NULL;
	const char *why = NULL;
	int rc = round_trip(&f->h.base, MSG_HELLO, &out, &why);
	if (rc != SS_EPROTO || !why || !strstr(why, needle))
		fail_msg("expected rejection '%s', got rc=%d why='%s'", needle, rc,
			 why ? why : "(null)");
	msg_free(out);
}

static void test_hello_round_trip(void **state)
{
	(void)state;
	struct hello_fx f;
	hello_init(&f);
	ProtobufCMessage *m = NULL;
	const char *why = "unset";
	assert_int_equal(round_trip(&f.h.base, MSG_HELLO, &m, &why), 0);
	assert_null(why);
	assert_non_null(m);
	assert_int_equal(msg_type_of(m), MSG_HELLO);
	assert_string_equal(msg_type_name(MSG_HELLO), "hello");
	const Seeswarm__V1__Hello *h = (const Seeswarm__V1__Hello *)m;
	assert_int_equal(h->protocol_version, PROTOCOL_VERSION);
	assert_string_equal(h->agent_id, "agent-1");
	assert_string_equal(h->agent_version, "0.1.0");
	assert_string_equal(h->advertise_addr, "10.0.0.5:7001");
	assert_true(h->price_per_hour == 0.25);
	assert_int_equal(h->n_labels, 2);
	assert_string_equal(h->labels[0]->key, "zone");
	assert_string_equal(h->labels[0]->value, "eu-west-1a");
	assert_string_equal(h->labels[1]->key, "tier");
	assert_int_equal(h->n_evidence_types, 2);
	assert_string_equal(h->evidence_types[1], "tpm");
	assert_non_null(h->capabilities);
	assert_int_equal(h->capabilities->cpu_cores, 8);
	assert_int_equal(h->capabilities->memory_bytes, 16ull << 30);
	assert_int_equal(h->capabilities->disk_bytes, 100ull << 30);
	assert_int_equal(h->capabilities->n_features, 2);
	assert_string_equal(h->capabilities->features[1], "avx2");
	assert_string_equal(h->capabilities->tee_type, "sim");
	assert_string_equal(h->capabilities->hostname, "host-1");
	msg_free(m);
	msg_free(NULL);
}

static void test_hello_rejects_agent_id(void **state)
{
	(void)state;
	struct hello_fx f;
	char longid[80];

	hello_init(&f);
	f.h.agent_id = "";
	expect_hello_reject(&f, "missing agent_id");
	f.h.agent_id = "bad id";
	expect_hello_reject(&f, "agent_id is not a valid identifier");
	f.h.agent_id = "-leading-dash";
	expect_hello_reject(&f, "agent_id");
	memset(longid, 'a', 64);
	longid[64] = '\0';
	f.h.agent_id = longid;
	expect_hello_reject(&f, "agent_id");
	longid[63] = '\0'; /* 63 characters is the limit and is accepted */
	ProtobufCMessage *m = NULL;
	const char *why;
	assert_int_equal(round_trip(&f.h.base, MSG_HELLO, &m, &why), 0);
	msg_free(m);
}

static void test_hello_rejects_labels(void **state)
{
	(void)state;
	struct hello_fx f;
	ProtobufCMessage *m = NULL;
	const char *why;

	hello_init(&f);
	f.h.n_labels = MSG_MAX_LABELS;
	assert_int_equal(round_trip(&f.h.base, MSG_HELLO, &m, &why), 0);
	msg_free(m);
	f.h.n_labels = MSG_MAX_LABELS + 1;
	expect_hello_reject(&f, "too many labels");

	hello_init(&f);
	f.h.n_labels = 3;
	f.label_store[2].key = "zone";
	expect_hello_reject(&f, "duplicate label key");

	hello_init(&f);
	f.label_store[1].key = "bad key";
	expect_hello_reject(&f, "invalid label key");
	f.label_store[1].key = "";
	expect_hello_reject(&f, "invalid label key");

	hello_init(&f);
	f.label_store[1].value = "has space";
	expect_hello_reject(&f, "invalid label value");
}

static void test_hello_rejects_price(void **state)
{
	(void)state;
	struct hello_fx f;
	hello_init(&f);
	f.h.price_per_hour = NAN;
	expect_hello_reject(&f, "price_per_hour");
	f.h.price_per_hour = INFINITY;
	expect_hello_reject(&f, "price_per_hour");
	f.h.price_per_hour = -0.01;
	expect_hello_reject(&f, "price_per_hour");
	f.h.price_per_hour = 2e6;
	expect_hello_reject(&f, "price_per_hour");
}

static void test_hello_rejects_capabilities(void **state)
{
	(void)state;
	struct hello_fx f;

	hello_init(&f);
	f.h.capabilities = NULL;
	expect_hello_reject(&f, "missing capabilities");

	hello_init(&f);
	f.caps.cpu_cores = 0;
	expect_hello_reject(&f, "cpu_cores");
	f.caps.cpu_cores = 4097;
	expect_hello_reject(&f, "cpu_cores");

	hello_init(&f);
	f.features[1] = "bad feature";
	expect_hello_reject(&f, "invalid feature name");
	f.features[1] = "";
	expect_hello_reject(&f, "invalid feature name");

	hello_init(&f);
	f.caps.n_features = MSG_MAX_FEATURES + 1;
	expect_hello_reject(&f, "too many features");

	hello_init(&f);
	f.caps.hostname = "0123456789012345678901234567890123456789012345678901234567890123";
	expect_hello_reject(&f, "hostname");
	hello_init(&f);
	f.caps.tee_type = "a-very-long-tee-type";
	expect_hello_reject(&f, "tee_type");
}

static void test_hello_rejects_strings(void **state)
{
	(void)state;
	struct hello_fx f;

	hello_init(&f);
	f.h.agent_version = "0123456789abcdef0123456789abcdef"; /* 32 > 31 */
	expect_hello_reject(&f, "agent_version");
	f.h.agent_version = "1.0\n";
	expect_hello_reject(&f, "agent_version");

	hello_init(&f);
	f.h.n_evidence_types = MSG_MAX_EVIDENCE_TYPES + 1;
	for (size_t i = 0; i < f.h.n_evidence_types; i++)
		f.evtypes[i] = "sim";
	expect_hello_reject(&f, "too many evidence types");

	hello_init(&f);
	f.evtypes[1] = "";
	expect_hello_reject(&f, "invalid evidence type");
}

static void test_evidence(void **state)
{
	(void)state;
	Seeswarm__V1__Evidence e = SEESWARM__V1__EVIDENCE__INIT;
	ProtobufCMessage *m = NULL;
	const char *why;
	uint8_t *blob = xcalloc(1, MSG_MAX_EVIDENCE + 1);
	uint8_t *certblob = xcalloc(1, MSG_MAX_CERT + 1);
	ProtobufCBinaryData certs[MSG_MAX_CERTS + 1];
	for (size_t i = 0; i < ARRAY_LEN(certs); i++) {
		certs[i].data = certblob;
		certs[i].len = 100;
	}

	e.evidence_type = "sim";
	e.evidence.data = blob;
	e.evidence.len = MSG_MAX_EVIDENCE;
	e.certs = certs;
	e.n_certs = 2;
	blob[0] = 0xab;
	assert_int_equal(round_trip(&e.base, MSG_EVIDENCE, &m, &why), 0);
	const Seeswarm__V1__Evidence *d = (const Seeswarm__V1__Evidence *)m;
	assert_string_equal(d->evidence_type, "sim");
	assert_int_equal(d->evidence.len, MSG_MAX_EVIDENCE);
	assert_int_equal(d->evidence.data[0], 0xab);
	assert_int_equal(d->n_certs, 2);
	assert_int_equal(d->certs[1].len, 100);
	msg_free(m);

	e.evidence.len = MSG_MAX_EVIDENCE + 1;
	assert_int_equal(round_trip(&e.base, MSG_EVIDENCE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "evidence too large"));
	e.evidence.len = 10;

	e.n_certs = MSG_MAX_CERTS + 1;
	assert_int_equal(round_trip(&e.base, MSG_EVIDENCE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "too many certificates"));
	e.n_certs = 1;
	certs[0].len = MSG_MAX_CERT + 1;
	assert_int_equal(round_trip(&e.base, MSG_EVIDENCE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "certificate too large"));
	certs[0].len = 10;

	e.evidence_type = "";
	assert_int_equal(round_trip(&e.base, MSG_EVIDENCE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "evidence_type"));
	free(blob);
	free(certblob);
}

static void test_unknown_type_and_garbage(void **state)
{
	(void)state;
	ProtobufCMessage *m = (ProtobufCMessage *)&m;
	const char *why = NULL;
	const uint8_t ok[] = {0};
	assert_int_equal(msg_decode(0, ok, 0, &m, &why), SS_ETYPE);
	assert_null(m);
	assert_non_null(why);
	assert_int_equal(msg_decode(MSG_TYPE_MAX + 1, ok, 0, &m, &why), SS_ETYPE);
	assert_int_equal(msg_decode(0xffff, ok, 0, &m, &why), SS_ETYPE);
	assert_null(msg_type_name(0));
	assert_null(msg_type_name(MSG_TYPE_MAX + 1));

	/* A length-delimited field (agent_id) claiming more bytes than follow. */
	const uint8_t trunc[] = {0x12, 0x05, 'a'};
	assert_int_equal(msg_decode(MSG_HELLO, trunc, sizeof trunc, &m, &why), SS_EPROTO);
	assert_null(m);
	assert_non_null(strstr(why, "does not decode"));
	/* An invalid wire type. */
	const uint8_t badwire[] = {0x0f, 0x01};
	assert_int_equal(msg_decode(MSG_HEARTBEAT, badwire, sizeof badwire, &m, &why),
			 SS_EPROTO);
	const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(msg_decode(MSG_CHALLENGE, junk, sizeof junk, &m, &why), SS_EPROTO);
	assert_null(m);

	/* An empty payload decodes, but an empty hello lacks its agent_id. */
	assert_int_equal(msg_decode(MSG_HELLO, ok, 0, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "missing agent_id"));
}

static void test_challenge_nonce(void **state)
{
	(void)state;
	Seeswarm__V1__Challenge c = SEESWARM__V1__CHALLENGE__INIT;
	uint8_t nonce[MSG_NONCE_LEN + 1];
	ProtobufCMessage *m = NULL;
	const char *why;
	rand_bytes(nonce, sizeof nonce);
	c.evidence_type = "tpm";
	c.nonce.data = nonce;

	c.nonce.len = MSG_NONCE_LEN;
	assert_int_equal(round_trip(&c.base, MSG_CHALLENGE, &m, &why), 0);
	const Seeswarm__V1__Challenge *d = (const Seeswarm__V1__Challenge *)m;
	assert_int_equal(d->nonce.len, MSG_NONCE_LEN);
	assert_memory_equal(d->nonce.data, nonce, MSG_NONCE_LEN);
	assert_string_equal(d->evidence_type, "tpm");
	assert_int_equal(msg_type_of(m), MSG_CHALLENGE);
	msg_free(m);

	c.nonce.len = MSG_NONCE_LEN - 1;
	assert_int_equal(round_trip(&c.base, MSG_CHALLENGE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "nonce"));
	c.nonce.len = MSG_NONCE_LEN + 1;
	assert_int_equal(round_trip(&c.base, MSG_CHALLENGE, &m, &why), SS_EPROTO);
	c.nonce.len = 0;
	assert_int_equal(round_trip(&c.base, MSG_CHALLENGE, &m, &why), SS_EPROTO);

	c.nonce.len = MSG_NONCE_LEN;
	c.evidence_type = "";
	assert_int_equal(round_trip(&c.base, MSG_CHALLENGE, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "evidence_type"));
}

static void test_heartbeat_bounds(void **state)
{
	(void)state;
	Seeswarm__V1__Heartbeat h = SEESWARM__V1__HEARTBEAT__INIT;
	Seeswarm__V1__Load l = SEESWARM__V1__LOAD__INIT;
	ProtobufCMessage *m = NULL;
	const char *why;
	h.seq = 7;
	h.load = &l;
	l.cpu_permille = 1000;
	assert_int_equal(round_trip(&h.base, MSG_HEARTBEAT, &m, &why), 0);
	assert_int_equal(((Seeswarm__V1__Heartbeat *)m)->seq, 7);
	msg_free(m);
	l.cpu_permille = 1001;
	assert_int_equal(round_trip(&h.base, MSG_HEARTBEAT, &m, &why), SS_EPROTO);
	assert_non_null(strstr(why, "cpu_permille"));
}

/* Expects m (as type) to be rejected with a reason containing needle. */
static void expect_reject(const ProtobufCMessage *m, uint16_t type, const char *needle)
{
	ProtobufCMessage *out = NULL;
	const char *why = NULL;
	int rc = round_trip(m, type, &out, &why);
	if (rc != SS_EPROTO || !why || !strstr(why, needle))
		fail_msg("expected rejection '%s', got rc=%d why='%s'", needle, rc, why ? why : "(null)");
}

static void test_task_dispatch_bounds(void **state)
{
	(void)state;
	Seeswarm__V1__TaskDispatch d = SEESWARM__V1__TASK_DISPATCH__INIT;
	Seeswarm__V1__TaskResources r = SEESWARM__V1__TASK_RESOURCES__INIT;
	Seeswarm__V1__TaskInput in = SEESWARM__V1__TASK_INPUT__INIT;
	Seeswarm__V1__TaskInput *inp[1] = {&in};
	char *argv[2] = {"sh", "-c"};
	char *env[1] = {"A=1"};
	char *outs[1] = {"o"};
	uint8_t dg[32] = {1};
	uint8_t data[3] = {'a', 'b', 'c'};
	ProtobufCMessage *m = NULL;
	const char *why;
	d.job_id = "j-1";
	d.task_id = "j-1.4";
	d.attempt = 2;
	d.argv = argv;
	d.n_argv = 2;
	d.env = env;
	d.n_env = 1;
	d.outputs = outs;
	d.n_outputs = 1;
	r.timeout_ms = 1000;
	d.resources = &r;
	in.name = "x";
	in.digest.data = dg;
	in.digest.len = 32;
	in.size = 3;
	in.data.data = data;
	in.data.len = 3;
	d.inputs = inp;
	d.n_inputs = 1;
	assert_int_equal(round_trip(&d.base, MSG_TASK_DISPATCH, &m, &why), 0);
	assert_string_equal(((Seeswarm__V1__TaskDispatch *)m)->task_id, "j-1.4");
	msg_free(m);
	/* A script in argv has newlines and tabs: accepted, as the job spec accepts it. */
	argv[1] = "-c\n\techo a\necho b";
	assert_int_equal(round_trip(&d.base, MSG_TASK_DISPATCH, &m, &why), 0);
	msg_free(m);
	argv[1] = "-c";
	/* A bundle needs its code digest; a bundle digest needs a bundle. */
	Seeswarm__V1__TaskInput bun = SEESWARM__V1__TASK_INPUT__INIT;
	bun.name = "bundle";
	bun.digest.data = dg;
	bun.digest.len = 32;
	bun.size = 100;
	d.bundle = &bun;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "invalid bundle");
	d.bundle_digest.data = dg;
	d.bundle_digest.len = 32;
	assert_int_equal(round_trip(&d.base, MSG_TASK_DISPATCH, &m, &why), 0);
	msg_free(m);
	d.bundle = NULL;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "bundle_digest without a bundle");
	d.bundle_digest.len = 0;
	d.bundle_digest.data = NULL;
	d.task_id = "j-2.4";
	expect_reject(&d.base, MSG_TASK_DISPATCH, "does not belong");
	d.task_id = "j-1.x";
	expect_reject(&d.base, MSG_TASK_DISPATCH, "invalid task_id");
	d.task_id = "j-1.4";
	d.attempt = 0;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "invalid task_id or attempt");
	d.attempt = 1;
	in.size = 4;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "inline input size");
	in.size = 3;
	in.digest.len = 31;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "32 bytes");
	in.digest.len = 32;
	env[0] = "NOEQUALS";
	expect_reject(&d.base, MSG_TASK_DISPATCH, "without '='");
	env[0] = "A=1";
	outs[0] = "";
	expect_reject(&d.base, MSG_TASK_DISPATCH, "empty output path");
	outs[0] = "o";
	d.n_argv = 0;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "argv");
	d.n_argv = 2;
	r.timeout_ms = 0;
	expect_reject(&d.base, MSG_TASK_DISPATCH, "resources");
}

static void test_blob_delete_bounds(void **state)
{
	(void)state;
	static uint8_t dg[MSG_MAX_DELETE + 1][32];
	static ProtobufCBinaryData ds[MSG_MAX_DELETE + 1];
	for (size_t i = 0; i <= MSG_MAX_DELETE; i++)
		ds[i] = (ProtobufCBinaryData){.data = dg[i], .len = 32};
	Seeswarm__V1__BlobDelete d = SEESWARM__V1__BLOB_DELETE__INIT;
	ProtobufCMessage *m = NULL;
	const char *why;
	d.digests = ds;
	d.n_digests = MSG_MAX_DELETE;
	assert_int_equal(round_trip(&d.base, MSG_BLOB_DELETE, &m, &why), 0);
	assert_int_equal(((Seeswarm__V1__BlobDelete *)m)->n_digests, MSG_MAX_DELETE);
	msg_free(m);
	d.n_digests = MSG_MAX_DELETE + 1;
	expect_reject(&d.base, MSG_BLOB_DELETE, "too many");
	d.n_digests = 2;
	ds[1].len = 31;
	expect_reject(&d.base, MSG_BLOB_DELETE, "32 bytes");
	ds[1].len = 32;
}

static void test_task_log_bounds(void **state)
{
	(void)state;
	static uint8_t data[MSG_MAX_LOG + 1];
	Seeswarm__V1__TaskLog tl = SEESWARM__V1__TASK_LOG__INIT;
	Seeswarm__V1__TaskLogGet g = SEESWARM__V1__TASK_LOG_GET__INIT;
	ProtobufCMessage *m = NULL;
	const char *why;
	tl.task_id = "j-0123456789ab.7";
	tl.attempt = 2;
	tl.stdout_from = 1000;
	tl.stdout = (ProtobufCBinaryData){MSG_MAX_LOG, data};
	tl.stderr = (ProtobufCBinaryData){MSG_MAX_LOG, data};
	tl.running = tl.known = true;
	assert_int_equal(round_trip(&tl.base, MSG_TASK_LOG, &m, &why), 0);
	assert_int_equal(((Seeswarm__V1__TaskLog *)m)->stdout_from, 1000);
	assert_int_equal(((Seeswarm__V1__TaskLog *)m)->stderr.len, MSG_MAX_LOG);
	msg_free(m);
	tl.stderr.len = MSG_MAX_LOG + 1;
	expect_reject(&tl.base, MSG_TASK_LOG, "too much output");
	tl.stderr.len = 1;
	tl.stdout_from = MSG_MAX_LOG_OFFSET + 1;
	expect_reject(&tl.base, MSG_TASK_LOG, "offset out of range");
	tl.stdout_from = 0;
	tl.attempt = 0;
	expect_reject(&tl.base, MSG_TASK_LOG, "invalid task_id or attempt");
	tl.attempt = 1;
	tl.task_id = "j-0123456789ab.7/../x";
	expect_reject(&tl.base, MSG_TASK_LOG, "invalid task_id or attempt");

	g.task_id = "j-0123456789ab.7";
	g.attempt = 1;
	g.stderr_from = MSG_MAX_LOG_OFFSET;
	assert_int_equal(round_trip(&g.base, MSG_TASK_LOG_GET, &m, &why), 0);
	msg_free(m);
	g.stderr_from = MSG_MAX_LOG_OFFSET + 1;
	expect_reject(&g.base, MSG_TASK_LOG_GET, "offset out of range");
	g.stderr_from = 0;
	g.task_id = "";
	expect_reject(&g.base, MSG_TASK_LOG_GET, "invalid task_id or attempt");
}

static void test_blob_inventory_bounds(void **state)
{
	(void)state;
	static uint8_t dg[MSG_MAX_INVENTORY + 1][32];
	static ProtobufCBinaryData ds[MSG_MAX_INVENTORY + 1];
	static uint64_t sizes[MSG_MAX_INVENTORY + 1];
	for (size_t i = 0; i <= MSG_MAX_INVENTORY; i++) {
		ds[i] = (ProtobufCBinaryData){.data = dg[i], .len = 32};
		sizes[i] = i;
	}
	Seeswarm__V1__BlobInventory inv = SEESWARM__V1__BLOB_INVENTORY__INIT;
	ProtobufCMessage *m = NULL;
	const char *why;
	inv.digests = ds;
	inv.sizes = sizes;
	inv.n_digests = inv.n_sizes = MSG_MAX_INVENTORY;
	assert_int_equal(round_trip(&inv.base, MSG_BLOB_INVENTORY, &m, &why), 0);
	assert_int_equal(((Seeswarm__V1__BlobInventory *)m)->n_digests, MSG_MAX_INVENTORY);
	msg_free(m);
	inv.n_digests = inv.n_sizes = MSG_MAX_INVENTORY + 1;
	expect_reject(&inv.base, MSG_BLOB_INVENTORY, "too many");
	inv.n_digests = inv.n_sizes = 2;
	inv.n_sizes = 1;
	expect_reject(&inv.base, MSG_BLOB_INVENTORY, "one size per digest");
	inv.n_sizes = 2;
	ds[1].len = 31;
	expect_reject(&inv.base, MSG_BLOB_INVENTORY, "32 bytes");
	ds[1].len = 32;
	sizes[1] = MSG_MAX_BLOB_SIZE + 1;
	expect_reject(&inv.base, MSG_BLOB_INVENTORY, "sizes in range");
	sizes[1] = 1;

	Seeswarm__V1__BlobInventoryAck ack = SEESWARM__V1__BLOB_INVENTORY_ACK__INIT;
	ack.held = ds;
	ack.n_held = MSG_MAX_INVENTORY / 2;
	ack.untracked = ds;
	ack.n_untracked = MSG_MAX_INVENTORY / 2;
	assert_int_equal(round_trip(&ack.base, MSG_BLOB_INVENTORY_ACK, &m, &why), 0);
	msg_free(m);
	ack.n_untracked++;
	expect_reject(&ack.base, MSG_BLOB_INVENTORY_ACK, "too many");
	ack.n_held = 1;
	ack.n_untracked = 2;
	ds[1].len = 33;
	expect_reject(&ack.base, MSG_BLOB_INVENTORY_ACK, "32 bytes");
	ds[1].len = 32;
}

static void test_task_result_and_blob_bounds(void **state)
{
	(void)state;
	Seeswarm__V1__TaskResult r = SEESWARM__V1__TASK_RESULT__INIT;
	Seeswarm__V1__TaskOutput o = SEESWARM__V1__TASK_OUTPUT__INIT;
	Seeswarm__V1__TaskOutput *op[1] = {&o};
	uint8_t dg[32] = {2};
	ProtobufCMessage *m = NULL;
	const char *why;
	r.task_id = "j-1.0";
	r.attempt = 1;
	r.ok = true;
	r.status = "exited";
	o.name = "out";
	o.digest.data = dg;
	o.digest.len = 32;
	o.size = 100000;
	r.outputs = op;
	r.n_outputs = 1;
	assert_int_equal(round_trip(&r.base, MSG_TASK_RESULT, &m, &why), 0);
	msg_free(m);
	r.status = "";
	expect_reject(&r.base, MSG_TASK_RESULT, "status");
	r.status = "exited";
	static uint8_t big[MSG_MAX_TAIL + 1];
	r.stderr_tail.data = big;
	r.stderr_tail.len = sizeof big;
	expect_reject(&r.base, MSG_TASK_RESULT, "tail");
	r.stderr_tail.len = 0;

	Seeswarm__V1__BlobGet g = SEESWARM__V1__BLOB_GET__INIT;
	g.digest.data = dg;
	g.digest.len = 32;
	g.length = MSG_MAX_BLOB_CHUNK;
	assert_int_equal(round_trip(&g.base, MSG_BLOB_GET, &m, &why), 0);
	msg_free(m);
	g.length = MSG_MAX_BLOB_CHUNK + 1;
	expect_reject(&g.base, MSG_BLOB_GET, "length");
	g.length = 1;
	static uint8_t grant[MSG_MAX_GRANT + 1];
	g.grant.data = grant;
	g.grant.len = MSG_MAX_GRANT;
	assert_int_equal(round_trip(&g.base, MSG_BLOB_GET, &m, &why), 0);
	msg_free(m);
	g.grant.len = MSG_MAX_GRANT + 1;
	expect_reject(&g.base, MSG_BLOB_GET, "grant too long");
	g.grant.len = 0;

	Seeswarm__V1__BlobData b = SEESWARM__V1__BLOB_DATA__INIT;
	uint8_t chunk[10] = {0};
	b.digest.data = dg;
	b.digest.len = 32;
	b.offset = 5;
	b.total = 12;
	b.data.data = chunk;
	b.data.len = 7;
	assert_int_equal(round_trip(&b.base, MSG_BLOB_DATA, &m, &why), 0);
	msg_free(m);
	b.data.len = 8; /* past the end of the blob */
	expect_reject(&b.base, MSG_BLOB_DATA, "chunk out of range");
}

static void test_nested_field_zero_refused(void **state)
{
	(void)state;
	/* TaskDispatch{job_id:"j", task_id:"j.0", attempt:1, argv:["x"], outputs:["o"],
	 * resources:{timeout_ms:1, field 0 varint}} */
	static const uint8_t p[] = {0x0a, 0x01, 'j', 0x12, 0x03, 'j', '.', '0', 0x18, 0x01,
				    0x2a, 0x01, 'x', 0x42, 0x01, 'o', 0x4a, 0x04, 0x30, 0x01, 0x00, 0x00};
	ProtobufCMessage *m = NULL;
	const char *why = NULL;
	int rc = msg_decode(MSG_TASK_DISPATCH, p, sizeof p, &m, &why);
	assert_int_equal(rc, SS_EPROTO);
	assert_null(m);
	assert_non_null(why);
	if (!strstr(why, "field number 0") && !strstr(why, "does not decode"))
		fail_msg("unexpected reason: %s", why);
	/* The same bytes without the stray field decode. */
	rc = msg_decode(MSG_TASK_DISPATCH, p, sizeof p - 2, &m, &why);
	if (rc != SS_EPROTO || !strstr(why, "resources")) /* length 4 now overruns: a decode error */
		assert_true(rc != 0);
	msg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_rejects_agent_id),
		cmocka_unit_test(test_hello_rejects_labels),
		cmocka_unit_test(test_hello_rejects_price),
		cmocka_unit_test(test_hello_rejects_capabilities),
		cmocka_unit_test(test_hello_rejects_strings),
		cmocka_unit_test(test_evidence),
		cmocka_unit_test(test_unknown_type_and_garbage),
		cmocka_unit_test(test_challenge_nonce),
		cmocka_unit_test(test_heartbeat_bounds),
		cmocka_unit_test(test_task_dispatch_bounds),
		cmocka_unit_test(test_task_result_and_blob_bounds),
		cmocka_unit_test(test_blob_delete_bounds),
		cmocka_unit_test(test_blob_inventory_bounds),
		cmocka_unit_test(test_task_log_bounds),
		cmocka_unit_test(test_nested_field_zero_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
