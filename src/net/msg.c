/* msg.c - strict decoding and validation of protocol messages. */
#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "net/msg.h"

static const ProtobufCMessageDescriptor *const descs[MSG_TYPE_MAX + 1] = {
	[MSG_HELLO] = &seeswarm__v1__hello__descriptor,
	[MSG_CHALLENGE] = &seeswarm__v1__challenge__descriptor,
	[MSG_EVIDENCE] = &seeswarm__v1__evidence__descriptor,
	[MSG_ADMITTED] = &seeswarm__v1__admitted__descriptor,
	[MSG_REJECTED] = &seeswarm__v1__rejected__descriptor,
	[MSG_HEARTBEAT] = &seeswarm__v1__heartbeat__descriptor,
	[MSG_HEARTBEAT_ACK] = &seeswarm__v1__heartbeat_ack__descriptor,
	[MSG_GOODBYE] = &seeswarm__v1__goodbye__descriptor,
	[MSG_STATE_CHANGE] = &seeswarm__v1__state_change__descriptor,
	[MSG_ERROR] = &seeswarm__v1__error__descriptor,
	[MSG_CREDENTIAL_CHALLENGE] = &seeswarm__v1__credential_challenge__descriptor,
	[MSG_CREDENTIAL_RESPONSE] = &seeswarm__v1__credential_response__descriptor,
	[MSG_NODE_CERTIFICATE] = &seeswarm__v1__node_certificate__descriptor,
	[MSG_REVOCATION] = &seeswarm__v1__revocation__descriptor,
	[MSG_TASK_DISPATCH] = &seeswarm__v1__task_dispatch__descriptor,
	[MSG_TASK_STARTED] = &seeswarm__v1__task_started__descriptor,
	[MSG_TASK_RESULT] = &seeswarm__v1__task_result__descriptor,
	[MSG_TASK_ACK] = &seeswarm__v1__task_ack__descriptor,
	[MSG_TASK_CANCEL] = &seeswarm__v1__task_cancel__descriptor,
	[MSG_BLOB_GET] = &seeswarm__v1__blob_get__descriptor,
	[MSG_BLOB_DATA] = &seeswarm__v1__blob_data__descriptor,
	[MSG_BLOB_REPLICATE] = &seeswarm__v1__blob_replicate__descriptor,
	[MSG_BLOB_STORED] = &seeswarm__v1__blob_stored__descriptor,
	[MSG_PEER_LIST] = &seeswarm__v1__peer_list__descriptor,
	[MSG_BLOB_DELETE] = &seeswarm__v1__blob_delete__descriptor,
	[MSG_BLOB_INVENTORY] = &seeswarm__v1__blob_inventory__descriptor,
	[MSG_BLOB_INVENTORY_ACK] = &seeswarm__v1__blob_inventory_ack__descriptor,
	[MSG_TASK_LOG_GET] = &seeswarm__v1__task_log_get__descriptor,
	[MSG_TASK_LOG] = &seeswarm__v1__task_log__descriptor,
};

static const char *const names[MSG_TYPE_MAX + 1] = {
	[MSG_HELLO] = "hello",
	[MSG_CHALLENGE] = "challenge",
	[MSG_EVIDENCE] = "evidence",
	[MSG_ADMITTED] = "admitted",
	[MSG_REJECTED] = "rejected",
	[MSG_HEARTBEAT] = "heartbeat",
	[MSG_HEARTBEAT_ACK] = "heartbeat_ack",
	[MSG_GOODBYE] = "goodbye",
	[MSG_STATE_CHANGE] = "state_change",
	[MSG_ERROR] = "error",
	[MSG_CREDENTIAL_CHALLENGE] = "credential_challenge",
	[MSG_CREDENTIAL_RESPONSE] = "credential_response",
	[MSG_NODE_CERTIFICATE] = "node_certificate",
	[MSG_REVOCATION] = "revocation",
	[MSG_TASK_DISPATCH] = "task_dispatch",
	[MSG_TASK_STARTED] = "task_started",
	[MSG_TASK_RESULT] = "task_result",
	[MSG_TASK_ACK] = "task_ack",
	[MSG_TASK_CANCEL] = "task_cancel",
	[MSG_BLOB_GET] = "blob_get",
	[MSG_BLOB_DATA] = "blob_data",
	[MSG_BLOB_REPLICATE] = "blob_replicate",
	[MSG_BLOB_STORED] = "blob_stored",
	[MSG_PEER_LIST] = "peer_list",
	[MSG_BLOB_DELETE] = "blob_delete",
	[MSG_BLOB_INVENTORY] = "blob_inventory",
	[MSG_BLOB_INVENTORY_ACK] = "blob_inventory_ack",
	[MSG_TASK_LOG_GET] = "task_log_get",
	[MSG_TASK_LOG] = "task_log",
};

const char *msg_type_name(uint16_t type)
{
	return type >= 1 && type <= MSG_TYPE_MAX ? names[type] : NULL;
}

uint16_t msg_type_of(const ProtobufCMessage *m)
{
	for (unsigned t = 1; t <= MSG_TYPE_MAX; t++)
		if (descs[t] == m->descriptor)
			return (uint16_t)t;
	return 0;
}

static bool str_ok(const char *s, size_t max);

/* A numeric "ip4:port" or "[ip6]:port" of at most MSG_MAX_ADDR bytes, port > 0. */
static bool endpoint_ok(const char *s)
{
	char host[MSG_MAX_ADDR + 1];
	uint16_t port;
	uint8_t a[16];
	if (!s || !str_ok(s, MSG_MAX_ADDR) || addr_split(s, host, sizeof host, &port) != 0 || port == 0)
		return false;
	return inet_pton(AF_INET, host, a) == 1 || (s[0] == '[' && inet_pton(AF_INET6, host, a) == 1);
}

static bool str_ok(const char *s, size_t max)
{
	if (!s)
		return true;
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool task_ref_ok(const char *task_id, uint32_t attempt);

static const char *check_hello(const Seeswarm__V1__Hello *h)
{
	if (!h->agent_id || !*h->agent_id)
		return "hello: missing agent_id";
	if (!ident_valid(h->agent_id))
		return "hello: agent_id is not a valid identifier";
	if (!str_ok(h->agent_version, 31))
		return "hello: agent_version too long or not printable";
	if (h->advertise_addr && *h->advertise_addr && !endpoint_ok(h->advertise_addr))
		return "hello: advertise_addr must be a numeric IP:PORT";
	if (h->n_labels > MSG_MAX_LABELS)
		return "hello: too many labels";
	for (size_t i = 0; i < h->n_labels; i++) {
		const Seeswarm__V1__Label *l = h->labels[i];
		if (!l->key || !ident_valid(l->key))
			return "hello: invalid label key";
		if (!l->value || !label_value_valid(l->value))
			return "hello: invalid label value";
		for (size_t j = 0; j < i; j++)
			if (!strcmp(h->labels[j]->key, l->key))
				return "hello: duplicate label key";
	}
	if (!isfinite(h->price_per_hour) || h->price_per_hour < 0 || h->price_per_hour > 1e6)
		return "hello: price_per_hour out of range";
	if (h->attester_identity.len > MSG_MAX_IDENTITY)
		return "hello: attester identity too large";
	if (h->n_evidence_types > MSG_MAX_EVIDENCE_TYPES)
		return "hello: too many evidence types";
	for (size_t i = 0; i < h->n_evidence_types; i++)
		if (!str_ok(h->evidence_types[i], 15) || !*h->evidence_types[i])
			return "hello: invalid evidence type";
	if (h->n_tasks > MSG_MAX_TASKS_HELD)
		return "hello: too many task references";
	for (size_t i = 0; i < h->n_tasks; i++)
		if (!task_ref_ok(h->tasks[i]->task_id, h->tasks[i]->attempt))
			return "hello: invalid task reference";
	const Seeswarm__V1__Capabilities *c = h->capabilities;
	if (!c)
		return "hello: missing capabilities";
	if (c->cpu_cores == 0 || c->cpu_cores > 4096)
		return "hello: cpu_cores out of range";
	if (c->n_features > MSG_MAX_FEATURES)
		return "hello: too many features";
	for (size_t i = 0; i < c->n_features; i++)
		if (!c->features[i] || !ident_valid(c->features[i]))
			return "hello: invalid feature name";
	if (!str_ok(c->tee_type, 15))
		return "hello: invalid tee_type";
	if (!str_ok(c->hostname, 63))
		return "hello: hostname too long or not printable";
	return NULL;
}

static const char *check_evidence(const Seeswarm__V1__Evidence *e)
{
	if (!e->evidence_type || !*e->evidence_type || !str_ok(e->evidence_type, 15))
		return "evidence: invalid evidence_type";
	if (e->evidence.len > MSG_MAX_EVIDENCE)
		return "evidence: evidence too large";
	if (e->n_certs > MSG_MAX_CERTS)
		return "evidence: too many certificates";
	for (size_t i = 0; i < e->n_certs; i++)
		if (e->certs[i].len > MSG_MAX_CERT)
			return "evidence: certificate too large";
	return NULL;
}

/* protobuf-c keeps fields numbered 0 as unknown fields; no valid encoder emits them. */
static bool bad_unknown(const ProtobufCMessage *m)
{
	if (!m)
		return false;
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return true;
	return false;
}

/*
 * Walks every nested message (the descriptors say which fields hold one) and
 * refuses field number 0 anywhere. Nesting depth is bounded by the schema.
 */
static bool any_bad_unknown(const ProtobufCMessage *m)
{
	if (!m)
		return false;
	if (bad_unknown(m))
		return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)m;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t k = 0; k < n; k++)
				if (any_bad_unknown(v[k]))
					return true;
		} else {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
			if (any_bad_unknown(sub))
				return true;
		}
	}
	return false;
}

static bool digest_ok(ProtobufCBinaryData d)
{
	return d.len == 32;
}

static bool task_ref_ok(const char *task_id, uint32_t attempt)
{
	if (!task_id || !*task_id || !str_ok(task_id, MSG_MAX_TASK_ID))
		return false;
	/* "<job id>.<index>": an identifier, a dot, decimal digits. */
	const char *dot = strrchr(task_id, '.');
	if (!dot || dot == task_id || !dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1) ||
	    strlen(dot + 1) > 6)
		return false;
	char job[64];
	size_t jl = (size_t)(dot - task_id);
	if (jl >= sizeof job)
		return false;
	memcpy(job, task_id, jl);
	job[jl] = '\0';
	return ident_valid(job) && attempt >= 1 && attempt <= 100000;
}

/*
 * argv and env strings: any bytes (a shell script has newlines and tabs),
 * bounded in count and length. The job spec accepts the same, so a job the
 * manager accepted never breaks the agent's decoder.
 */
static bool args_ok(char *const *v, size_t n, size_t max_n, size_t max_len)
{
	if (n > max_n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i] || strnlen(v[i], max_len + 1) > max_len)
			return false;
	return true;
}

static bool strs_ok(char *const *v, size_t n, size_t max_n, size_t max_len)
{
	if (n > max_n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i] || !str_ok(v[i], max_len))
			return false;
	return true;
}

/* Peer endpoints: a node id and an endpoint each. */
static bool sources_ok(Seeswarm__V1__BlobSource *const *v, size_t n, size_t max)
{
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i]->node_id || !ident_valid(v[i]->node_id) || !endpoint_ok(v[i]->addr))
			return false;
	return true;
}

static const char *check_dispatch(const Seeswarm__V1__TaskDispatch *d)
{
	if (!d->job_id || !ident_valid(d->job_id))
		return "task_dispatch: invalid job_id";
	if (!task_ref_ok(d->task_id, d->attempt))
		return "task_dispatch: invalid task_id or attempt";
	if (strncmp(d->task_id, d->job_id, strlen(d->job_id)) != 0 ||
	    d->task_id[strlen(d->job_id)] != '.')
		return "task_dispatch: task_id does not belong to job_id";
	if (!str_ok(d->name, 127))
		return "task_dispatch: invalid name";
	if (d->n_argv == 0 || !args_ok(d->argv, d->n_argv, MSG_MAX_ARGS, MSG_MAX_ARG))
		return "task_dispatch: argv empty or too long";
	if (!args_ok(d->env, d->n_env, MSG_MAX_ENV, MSG_MAX_ARG))
		return "task_dispatch: env too long";
	for (size_t i = 0; i < d->n_env; i++)
		if (!strchr(d->env[i], '='))
			return "task_dispatch: env entry without '='";
	if (d->n_inputs > MSG_MAX_TASK_INPUTS)
		return "task_dispatch: too many inputs";
	for (size_t i = 0; i < d->n_inputs; i++) {
		const Seeswarm__V1__TaskInput *in = d->inputs[i];
		if (!in->name || !*in->name || !str_ok(in->name, MSG_MAX_PATH))
			return "task_dispatch: invalid input name";
		if (!digest_ok(in->digest))
			return "task_dispatch: input digest must be 32 bytes";
		if (in->data.len > MSG_MAX_INLINE || (in->data.len && in->data.len != in->size))
			return "task_dispatch: inline input size mismatch or too large";
		if (in->size > MSG_MAX_BLOB_SIZE)
			return "task_dispatch: input too large";
		if (!sources_ok(in->sources, in->n_sources, MSG_MAX_SOURCES))
			return "task_dispatch: too many or invalid input sources";
		if (in->grant.len > MSG_MAX_GRANT)
			return "task_dispatch: input grant too long";
	}
	if (!strs_ok(d->outputs, d->n_outputs, MSG_MAX_TASK_OUTPUTS, MSG_MAX_PATH))
		return "task_dispatch: too many or invalid outputs";
	for (size_t i = 0; i < d->n_outputs; i++)
		if (!*d->outputs[i])
			return "task_dispatch: empty output path";
	if (!d->resources)
		return "task_dispatch: missing resources";
	if (d->bundle) {
		if (!digest_ok(d->bundle->digest) || !digest_ok(d->bundle_digest) ||
		    d->bundle->data.len || d->bundle->size == 0 || d->bundle->size > (1ull << 30) ||
		    !sources_ok(d->bundle->sources, d->bundle->n_sources, MSG_MAX_SOURCES) ||
		    d->bundle->grant.len > MSG_MAX_GRANT)
			return "task_dispatch: invalid bundle";
	} else if (d->bundle_digest.len) {
		return "task_dispatch: bundle_digest without a bundle";
	}
	const Seeswarm__V1__TaskResources *r = d->resources;
	if (r->cpu_millicores > 1024000 || r->pids > 1000000 || r->timeout_ms == 0 ||
	    r->timeout_ms > 7ull * 24 * 3600 * 1000 || r->kill_grace_ms > MSG_MAX_KILL_GRACE_MS)
		return "task_dispatch: resources out of range";
	return NULL;
}

static const char *check_result(const Seeswarm__V1__TaskResult *r)
{
	if (!task_ref_ok(r->task_id, r->attempt))
		return "task_result: invalid task_id or attempt";
	if (!r->status || !*r->status || !str_ok(r->status, 31))
		return "task_result: invalid status";
	if (!str_ok(r->message, 511))
		return "task_result: message too long";
	if (r->n_outputs > MSG_MAX_TASK_OUTPUTS)
		return "task_result: too many outputs";
	for (size_t i = 0; i < r->n_outputs; i++) {
		const Seeswarm__V1__TaskOutput *o = r->outputs[i];
		if (!o->name || !*o->name || !str_ok(o->name, MSG_MAX_PATH))
			return "task_result: invalid output name";
		if (!digest_ok(o->digest))
			return "task_result: output digest must be 32 bytes";
		if (o->data.len > MSG_MAX_INLINE || (o->data.len && o->data.len != o->size))
			return "task_result: inline output size mismatch or too large";
	}
	if (r->stdout_tail.len > MSG_MAX_TAIL || r->stderr_tail.len > MSG_MAX_TAIL)
		return "task_result: output tail too large";
	if (r->receipt.len > MSG_MAX_RECEIPT)
		return "task_result: receipt too large";
	return NULL;
}

static const char *check(uint16_t type, const ProtobufCMessage *m)
{
	switch (type) {
	case MSG_HELLO:
		return check_hello((const Seeswarm__V1__Hello *)m);
	case MSG_CHALLENGE: {
		const Seeswarm__V1__Challenge *c = (const void *)m;
		if (c->nonce.len != MSG_NONCE_LEN)
			return "challenge: nonce must be 32 bytes";
		if (!c->evidence_type || !*c->evidence_type || !str_ok(c->evidence_type, 15))
			return "challenge: invalid evidence_type";
		return NULL;
	}
	case MSG_EVIDENCE:
		return check_evidence((const void *)m);
	case MSG_ADMITTED: {
		const Seeswarm__V1__Admitted *a = (const void *)m;
		if (!a->node_id || !ident_valid(a->node_id))
			return "admitted: invalid node_id";
		if (a->heartbeat_interval_ms < 50 || a->heartbeat_interval_ms > 600000)
			return "admitted: heartbeat interval out of range";
		if (!str_ok(a->state, 15) || !str_ok(a->attestation_status, 31))
			return "admitted: invalid state";
		if (a->node_cert.len > MSG_MAX_CERT || a->grant_cert.len > MSG_MAX_CERT)
			return "admitted: certificate too large";
		return NULL;
	}
	case MSG_REJECTED: {
		const Seeswarm__V1__Rejected *r = (const void *)m;
		if (!str_ok(r->reason, 511))
			return "rejected: reason too long";
		return NULL;
	}
	case MSG_HEARTBEAT: {
		const Seeswarm__V1__Heartbeat *h = (const void *)m;
		if (h->load && h->load->cpu_permille > 1000)
			return "heartbeat: cpu_permille out of range";
		if (h->n_rtts > MSG_MAX_PEERS)
			return "heartbeat: too many rtts";
		for (size_t i = 0; i < h->n_rtts; i++)
			if (!h->rtts[i]->node_id || !ident_valid(h->rtts[i]->node_id) ||
			    h->rtts[i]->rtt_us == 0 || h->rtts[i]->rtt_us > MSG_MAX_RTT_US)
				return "heartbeat: invalid rtt";
		return NULL;
	}
	case MSG_HEARTBEAT_ACK: {
		const Seeswarm__V1__HeartbeatAck *a = (const void *)m;
		return str_ok(a->state, 15) ? NULL : "heartbeat_ack: invalid state";
	}
	case MSG_GOODBYE: {
		const Seeswarm__V1__Goodbye *g = (const void *)m;
		return str_ok(g->reason, MSG_MAX_STR) ? NULL : "goodbye: reason too long";
	}
	case MSG_STATE_CHANGE: {
		const Seeswarm__V1__StateChange *s = (const void *)m;
		if (!s->state || !str_ok(s->state, 15) || !str_ok(s->reason, MSG_MAX_STR))
			return "state_change: invalid state";
		return NULL;
	}
	case MSG_ERROR: {
		const Seeswarm__V1__Error *e = (const void *)m;
		return str_ok(e->message, 511) ? NULL : "error: message too long";
	}
	case MSG_CREDENTIAL_CHALLENGE: {
		const Seeswarm__V1__CredentialChallenge *c = (const void *)m;
		if (c->id_object.len == 0 || c->id_object.len > MSG_MAX_CRED_BLOB ||
		    c->enc_secret.len == 0 || c->enc_secret.len > MSG_MAX_CRED_BLOB)
			return "credential_challenge: blob sizes out of range";
		return NULL;
	}
	case MSG_NODE_CERTIFICATE: {
		const Seeswarm__V1__NodeCertificate *c = (const void *)m;
		if (c->cert.len == 0 || c->cert.len > MSG_MAX_CERT)
			return "node_certificate: size out of range";
		return NULL;
	}
	case MSG_REVOCATION: {
		const Seeswarm__V1__Revocation *r = (const void *)m;
		if (r->n_serials > MSG_MAX_REVOKED)
			return "revocation: too many serials";
		for (size_t i = 0; i < r->n_serials; i++) {
			size_t n = strnlen(r->serials[i], 41);
			if (n == 0 || n > 40 || strspn(r->serials[i], "0123456789abcdef") != n)
				return "revocation: invalid serial";
		}
		return NULL;
	}
	case MSG_TASK_DISPATCH:
		return check_dispatch((const void *)m);
	case MSG_TASK_RESULT:
		return check_result((const void *)m);
	case MSG_TASK_STARTED: {
		const Seeswarm__V1__TaskStarted *t = (const void *)m;
		return task_ref_ok(t->task_id, t->attempt) ? NULL : "task_started: invalid task_id or attempt";
	}
	case MSG_TASK_ACK: {
		const Seeswarm__V1__TaskAck *t = (const void *)m;
		return task_ref_ok(t->task_id, t->attempt) ? NULL : "task_ack: invalid task_id or attempt";
	}
	case MSG_TASK_CANCEL: {
		const Seeswarm__V1__TaskCancel *t = (const void *)m;
		if (!task_ref_ok(t->task_id, t->attempt))
			return "task_cancel: invalid task_id or attempt";
		return str_ok(t->reason, MSG_MAX_STR) ? NULL : "task_cancel: reason too long";
	}
	case MSG_TASK_LOG_GET: {
		const Seeswarm__V1__TaskLogGet *t = (const void *)m;
		if (!task_ref_ok(t->task_id, t->attempt))
			return "task_log_get: invalid task_id or attempt";
		if (t->stdout_from > MSG_MAX_LOG_OFFSET || t->stderr_from > MSG_MAX_LOG_OFFSET)
			return "task_log_get: offset out of range";
		return NULL;
	}
	case MSG_TASK_LOG: {
		const Seeswarm__V1__TaskLog *t = (const void *)m;
		if (!task_ref_ok(t->task_id, t->attempt))
			return "task_log: invalid task_id or attempt";
		if (t->stdout.len > MSG_MAX_LOG || t->stderr.len > MSG_MAX_LOG)
			return "task_log: too much output in one message";
		if (t->stdout_from > MSG_MAX_LOG_OFFSET || t->stderr_from > MSG_MAX_LOG_OFFSET)
			return "task_log: offset out of range";
		return NULL;
	}
	case MSG_BLOB_GET: {
		const Seeswarm__V1__BlobGet *g = (const void *)m;
		if (!digest_ok(g->digest))
			return "blob_get: digest must be 32 bytes";
		if (g->length == 0 || g->length > MSG_MAX_BLOB_CHUNK)
			return "blob_get: length out of range";
		if (g->offset > (1ull << 42))
			return "blob_get: offset out of range";
		if (g->grant.len > MSG_MAX_GRANT)
			return "blob_get: grant too long";
		return NULL;
	}
	case MSG_BLOB_DATA: {
		const Seeswarm__V1__BlobData *b = (const void *)m;
		if (!digest_ok(b->digest))
			return "blob_data: digest must be 32 bytes";
		if (b->data.len > MSG_MAX_BLOB_CHUNK || b->offset > b->total ||
		    b->data.len > b->total - b->offset)
			return "blob_data: chunk out of range";
		if (b->error > 1000 || !str_ok(b->message, MSG_MAX_STR))
			return "blob_data: invalid error";
		return NULL;
	}
	case MSG_BLOB_REPLICATE: {
		const Seeswarm__V1__BlobReplicate *b = (const void *)m;
		if (!digest_ok(b->digest))
			return "blob_replicate: digest must be 32 bytes";
		if (b->size > MSG_MAX_BLOB_SIZE)
			return "blob_replicate: size out of range";
		if (!sources_ok(b->sources, b->n_sources, MSG_MAX_SOURCES))
			return "blob_replicate: too many or invalid sources";
		if (b->grant.len > MSG_MAX_GRANT)
			return "blob_replicate: grant too long";
		return NULL;
	}
	case MSG_BLOB_DELETE: {
		const Seeswarm__V1__BlobDelete *bd = (const void *)m;
		if (bd->n_digests > MSG_MAX_DELETE)
			return "blob_delete: too many digests";
		for (size_t i = 0; i < bd->n_digests; i++)
			if (!digest_ok(bd->digests[i]))
				return "blob_delete: digests must be 32 bytes";
		return NULL;
	}
	case MSG_BLOB_INVENTORY: {
		const Seeswarm__V1__BlobInventory *bi = (const void *)m;
		if (bi->n_digests > MSG_MAX_INVENTORY || bi->n_sizes != bi->n_digests)
			return "blob_inventory: too many digests, or not one size per digest";
		for (size_t i = 0; i < bi->n_digests; i++)
			if (!digest_ok(bi->digests[i]) || bi->sizes[i] > MSG_MAX_BLOB_SIZE)
				return "blob_inventory: digests must be 32 bytes and sizes in range";
		return NULL;
	}
	case MSG_BLOB_INVENTORY_ACK: {
		const Seeswarm__V1__BlobInventoryAck *ba = (const void *)m;
		if (ba->n_held > MSG_MAX_INVENTORY || ba->n_untracked > MSG_MAX_INVENTORY - ba->n_held)
			return "blob_inventory_ack: too many digests";
		for (size_t i = 0; i < ba->n_held; i++)
			if (!digest_ok(ba->held[i]))
				return "blob_inventory_ack: digests must be 32 bytes";
		for (size_t i = 0; i < ba->n_untracked; i++)
			if (!digest_ok(ba->untracked[i]))
				return "blob_inventory_ack: digests must be 32 bytes";
		return NULL;
	}
	case MSG_PEER_LIST: {
		const Seeswarm__V1__PeerList *pl = (const void *)m;
		return sources_ok(pl->peers, pl->n_peers, MSG_MAX_PEERS) ? NULL
									: "peer_list: too many or invalid peers";
	}
	case MSG_BLOB_STORED: {
		const Seeswarm__V1__BlobStored *b = (const void *)m;
		if (!digest_ok(b->digest))
			return "blob_stored: digest must be 32 bytes";
		if (b->size > MSG_MAX_BLOB_SIZE || b->error > 1000 || !str_ok(b->message, MSG_MAX_STR))
			return "blob_stored: field out of range";
		return NULL;
	}
	case MSG_CREDENTIAL_RESPONSE: {
		const Seeswarm__V1__CredentialResponse *c = (const void *)m;
		if (c->secret.len == 0 || c->secret.len > 64)
			return "credential_response: secret size out of range";
		return NULL;
	}
	default:
		return "unknown message type";
	}
}

int msg_decode(uint16_t type, const uint8_t *payload, size_t len,
	       ProtobufCMessage **out, const char **why)
{
	int rc = 0;
	ProtobufCMessage *m = NULL;
	*out = NULL;
	*why = NULL;
	if (type < 1 || type > MSG_TYPE_MAX) {
		*why = "unknown message type";
		rc = SS_ETYPE;
		goto out;
	}
	m = protobuf_c_message_unpack(descs[type], NULL, len, payload);
	if (!m) {
		*why = "payload does not decode";
		rc = SS_EPROTO;
		goto out;
	}
	*why = check(type, m);
	if (!*why && any_bad_unknown(m))
		*why = "field number 0 is not valid";
	if (*why) {
		rc = SS_EPROTO;
		goto out;
	}
	*out = m;
	m = NULL;
out:
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

void msg_free(ProtobufCMessage *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

uint8_t *msg_pack(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *p = xmalloc(n ? n : 1);
	*len = protobuf_c_message_pack(m, p);
	return p;
}
