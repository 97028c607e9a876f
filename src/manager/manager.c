/* manager.c - the manager daemon: listener, admission, heartbeats, failure detection. */
#include <getopt.h>
#include <malloc.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <uv.h>

#include "attest/attest.h"
#include "attest/ca.h"
#include "attest/policy.h"
#include "attest/tpm.h"
#include "client/config.h"
#include "core/core.h"
#include "manager/api.h"
#include "manager/audit.h"
#include "manager/manager.h"
#include "manager/registry.h"
#include "manager/store.h"
#include "net/conn.h"
#include "data/blobstore.h"
#include "data/grant.h"
#include "manager/jobs.h"
#include "manager/jobspec.h"
#include "manager/replicas.h"
#include "manager/tenants.h"
#include "net/frame.h"
#include "net/msg.h"

#define HELLO_TIMEOUT_MS 10000
#define EVIDENCE_TIMEOUT_MS 15000
#define DETECTOR_PERIOD_MS 100
#define UPLOAD_EXPIRY_TICKS 600u                     /* detector ticks: a minute */
#define LAG_PERIOD_MS 10
#define LAG_SAMPLES 6000 /* one minute of loop-lag samples */
#define POOL_NICE 10 /* nice level of the thread pool workers (verification, signing) */

#define MAX_TENANT_WEIGHTS 64

struct manager_config {
	const char *data_dir;
	const char *listen;
	const char *api;
	const char *client_config; /* NULL: default path; "" : none */
	const char *policy_path;   /* NULL: built-in default policy */
	uint32_t node_cert_s;      /* node certificate lifetime */
	const char *collateral_dir;
	bool insecure_sim;
	uint32_t heartbeat_ms;
	uint32_t suspect_misses;
	uint32_t down_ms;
	uint32_t grace_ms;                             /* --reconnect-grace */
	uint32_t max_conns;
	const char *tenant_names[MAX_TENANT_WEIGHTS]; /* --tenant-weight NAME=W */
	double tenant_weights[MAX_TENANT_WEIGHTS];
	size_t n_tenants;
	const char *cap_names[MAX_TENANT_WEIGHTS]; /* --tenant-max-cpu NAME=CPU; NULL for "*" */
	uint64_t caps[MAX_TENANT_WEIGHTS];         /* millicores */
	size_t n_caps;
	const char *budget_names[MAX_TENANT_WEIGHTS]; /* --tenant-max-cost NAME=AMOUNT[/PERIOD]; NULL for "*" */
	double budgets[MAX_TENANT_WEIGHTS];
	enum jobs_budget_period budget_periods[MAX_TENANT_WEIGHTS];
	size_t n_budgets;
	uint64_t job_retention_ms;                     /* 0: the default (24 h) */
	unsigned replicas;                             /* --replicas + 1; 0: the default */
	uint32_t tenant_max_jobs;                      /* 0: the default */
	enum jobs_preemption preemption;
	uint64_t tenant_upload_bytes;                  /* 0: the default; UINT64_MAX: no quota */
};

enum sess_state { SESS_HELLO, SESS_CREDENTIAL, SESS_EVIDENCE, SESS_COMMIT, SESS_ADMITTED };

struct session {
	struct manager *m;
	struct conn *conn;          /* NULL once the conn has closed */
	enum sess_state st;
	char cn[64];                /* subject CN of the peer certificate */
	uint8_t nonce[MSG_NONCE_LEN];
	char evtype[16];
	Seeswarm__V1__Hello *hello; /* kept from hello until admission */
	struct node *node;          /* set at admission */
	struct session *next_commit;
	bool in_commit_list;
	char told_state[16];        /* the node state the agent last heard */
	struct policy *policy;      /* the policy this session is appraised under (a reference) */
	const struct policy_pool *pool;
	bool verifying;             /* a verification runs on the thread pool */
	bool signing;               /* a renewed node certificate is being signed on the thread pool */
	bool reattesting;           /* a re-attestation challenge is outstanding */
	uint64_t reattest_sent;     /* monotonic ms the challenge went out */
	uint64_t next_reattest;     /* monotonic ms */
	struct tpm_ak_challenge *cred; /* tpm: credential activation in progress */
	uint8_t *node_cert;         /* DER, waiting to go out with Admitted */
	size_t node_cert_len;
	Seeswarm__V1__Hello *admitted_hello; /* the Hello of an admission waiting for its commit */
};

struct revoked {
	char serial[41];
	int64_t expires_ms;
};

struct metrics {
	uint64_t admitted, rejected, heartbeats, protocol_errors, goodbyes;
	uint64_t commits, commit_failures, commit_us_total, commit_us_max;
	uint64_t went_down, went_suspect;
	uint64_t tls_offloaded, tls_openssl;
	uint64_t verifications, reattestations, evictions, policy_reloads;
	uint64_t node_certs_issued, revocations;
};

struct manager {
	struct manager_config cfg;
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t detector;
	unsigned detector_ticks;
	struct tenants *tenants;     /* tenant tokens and uploads */
	struct audit *audit;         /* the audit trail */
	uv_timer_t lag_timer;        /* measures how late the loop runs timers */
	uint64_t lag_expect_ns;
	uint32_t lag_us[LAG_SAMPLES]; /* ring of the last minute's samples */
	size_t lag_n, lag_i;
	uv_prepare_t committer;
	uv_signal_t sig_term, sig_int;
	struct tls_ctx *tls;
	struct ca *ca;
	EVP_PKEY *grant_key;         /* signs blob fetch grants (data/grant.h) */
	uint8_t *grant_cert_der;     /* its certificate, sent in every Admitted */
	size_t grant_cert_len;
	struct registry *reg;
	struct store *store;
	struct api *api;
	struct session *commit_head, **commit_tail;
	struct policy *policy;
	struct revoked *revoked;    /* revoked node-certificate serials, until they expire */
	size_t n_revoked, cap_revoked;
	uv_signal_t sig_hup;
	uv_timer_t reattester;
	struct metrics mx;
	struct jobs *jobs;
	struct blobstore *blobs;
	size_t sessions;
	int64_t started_ms;
	bool stopping;
	int exit_code;
	uint64_t nodes_index;     /* grows with every stored node change; starts at the wall clock in us */
};

/* ---- persistence ------------------------------------------------------ */

static void save_node(struct manager *m, struct node *n)
{
	json_t *j = node_to_json(n, true, 0, 0);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		fatal("json_dumps failed");
	store_put(m->store, "nodes", n->id, s, strlen(s));
	free(s);
	n->dirty = false;
	m->nodes_index++;
}

static void set_state(struct manager *m, struct node *n, enum node_state st, const char *reason)
{
	if (n->state != st)
		log_info("node %s: %s -> %s%s%s", n->id, node_state_name(n->state), node_state_name(st),
			 reason && *reason ? ": " : "", reason ? reason : "");
	if (st == NODE_DOWN && n->state != NODE_DOWN)
		m->mx.went_down++;
	if (st == NODE_SUSPECT && n->state != NODE_SUSPECT)
		m->mx.went_suspect++;
	if (n->state != st)
		n->state_since_ms = time_wall_ms();
	/* Membership changes go to the audit trail; suspect and back are only heartbeats. */
	bool audited = n->state != st && st != NODE_SUSPECT &&
		       !(st == NODE_READY && n->state == NODE_SUSPECT);
	if (audited && m->audit) {
		static const char *const what[NODE_STATE_COUNT] = {
			[NODE_JOINING] = "node joining", [NODE_READY] = "node admitted",
			[NODE_SUSPECT] = "node suspect", [NODE_DOWN] = "node down",
			[NODE_EVICTED] = "node evicted", [NODE_LEFT] = "node left",
			[NODE_REJECTED] = "node rejected"};
		audit_add(m->audit, "manager", what[st], n->id, 0, reason);
	}
	n->state = st;
	if (reason)
		snprintf(n->reason, sizeof n->reason, "%s", reason);
	save_node(m, n);
	if (m->jobs)
		jobs_node_changed(m->jobs, n);
}

static void session_free(struct session *s)
{
	if (s->hello)
		msg_free(&s->hello->base);
	if (s->admitted_hello)
		msg_free(&s->admitted_hello->base);
	policy_unref(s->policy);
	if (s->cred) {
		OPENSSL_cleanse(s->cred, sizeof *s->cred);
		free(s->cred);
	}
	free(s->node_cert);
	free(s);
}

/* Sessions stay allocated while queued for a commit or while a verification runs. */
static bool session_busy(const struct session *s)
{
	return s->in_commit_list || s->verifying || s->signing;
}

/*
 * Group commit: runs once per loop turn, before the loop blocks. Every queued
 * write becomes durable in one transaction; only then are the admissions that
 * depend on it acknowledged.
 */
/* Sends the unexpired revoked node-certificate serials to a newly admitted agent. */
static void send_revoked_list(struct manager *m, struct conn *c);

static void on_prepare(uv_prepare_t *h)
{
	struct manager *m = h->data;
	if (store_pending(m->store) == 0 && !m->commit_head) {
		if (m->jobs)
			jobs_after_commit(m->jobs);
		api_notify(m->api);
		return;
	}
	if (store_pending(m->store) > 0) {
		uint64_t t0 = uv_hrtime();
		int rc = store_flush(m->store);
		uint64_t us = (uv_hrtime() - t0) / 1000;
		if (rc) {
			m->mx.commit_failures++;
			log_error("store: commit failed (%s); will retry", ss_strerror(rc));
			return;
		}
		m->mx.commits++;
		m->mx.commit_us_total += us;
		if (us > m->mx.commit_us_max)
			m->mx.commit_us_max = us;
	}
	/* Acknowledgements to agents wait for the commit that made their outcome durable. */
	if (m->jobs)
		jobs_after_commit(m->jobs);
	/* Clients waiting for a job's change see it once it is durable. */
	api_notify(m->api);
	struct session *s = m->commit_head;
	m->commit_head = NULL;
	m->commit_tail = &m->commit_head;
	while (s) {
		struct session *next = s->next_commit;
		s->in_commit_list = false;
		s->next_commit = NULL;
		if (!s->conn) {
			/* Gone before its admission committed: nothing to tell it. */
			if (s->admitted_hello) {
				msg_free(&s->admitted_hello->base);
				s->admitted_hello = NULL;
			}
			if (!session_busy(s))
				session_free(s);
			s = next;
			continue;
		} else {
			Seeswarm__V1__Admitted a = SEESWARM__V1__ADMITTED__INIT;
			a.node_id = s->node->id;
			a.heartbeat_interval_ms = m->cfg.heartbeat_ms;
			a.state = (char *)node_display_state(s->node);
			a.attestation_status = s->node->attest_status;
			snprintf(s->told_state, sizeof s->told_state, "%s", a.state);
			a.node_cert.data = s->node_cert;
			a.node_cert.len = s->node_cert_len;
			a.grant_cert.data = m->grant_cert_der;
			a.grant_cert.len = m->grant_cert_len;
			s->st = SESS_ADMITTED;
			conn_send(s->conn, MSG_ADMITTED, &a.base);
			free(s->node_cert);
			s->node_cert = NULL;
			s->node_cert_len = 0;
			uint8_t dg[32];
			log_info("node %s admitted from %s (tee=%s, attestation=%s%s; connected with its %s certificate; node certificate %s issued)",
				 s->node->id, conn_peer(s->conn), s->node->tee, s->node->attest_status,
				 s->node->attest_insecure ? ", INSECURE sim" : "",
				 tls_peer_node_digest(conn_tls(s->conn), dg) ? "node" : "join",
				 s->node->node_cert_serial);
			/* An admitted agent exchanges task traffic: a higher frame budget. */
			conn_set_rate(s->conn, 20000, 40000);
			send_revoked_list(m, s->conn);
			if (m->jobs && s->admitted_hello)
				jobs_node_admitted(m->jobs, s->node, s->admitted_hello->tasks,
						   s->admitted_hello->n_tasks);
		}
		if (s->admitted_hello) {
			msg_free(&s->admitted_hello->base);
			s->admitted_hello = NULL;
		}
		s = next;
	}
}

/* ---- protocol --------------------------------------------------------- */

static void reject(struct session *s, const char *reason, uint32_t retry_ms)
{
	struct manager *m = s->m;
	Seeswarm__V1__Rejected r = SEESWARM__V1__REJECTED__INIT;
	r.reason = (char *)reason;
	r.retry_after_ms = retry_ms;
	m->mx.rejected++;
	log_warn("agent %s from %s rejected: %s", s->hello ? s->hello->agent_id : "?",
		 conn_peer(s->conn), reason);
	conn_send(s->conn, MSG_REJECTED, &r.base);
	conn_close(s->conn, SS_EATTEST, reason);
}

/*
 * Writes the hex SHA-256 of the session peer's TLS public key (its
 * SubjectPublicKeyInfo) into out (65 bytes), or "" when there is none.
 */
static void peer_key_hex(const struct session *s, char out[65])
{
	size_t len = 0;
	const uint8_t *spki = tls_peer_spki(conn_tls(s->conn), &len);
	out[0] = '\0';
	if (!spki || len == 0)
		return;
	uint8_t d[SHA256_LEN];
	sha256(spki, len, d);
	hex_encode(d, sizeof d, out);
}

/*
 * True when the session's peer proved, in its TLS handshake, the key that the
 * node's current node certificate names. Such a peer holds that certificate's
 * key, so its join certificate is let through to attest again: this covers an
 * agent that died after the certificate was issued and before it saved it.
 */
static bool holds_cert_key(const struct session *s, const struct node *n)
{
	char key[65];
	if (!n->node_cert_key[0])
		return false;
	peer_key_hex(s, key);
	return key[0] && !strcmp(key, n->node_cert_key);
}

/* The pool an agent asks for with its label pool=NAME; "default" otherwise. */
static const char *hello_pool(const Seeswarm__V1__Hello *h)
{
	for (size_t i = 0; i < h->n_labels; i++)
		if (!strcmp(h->labels[i]->key, "pool"))
			return h->labels[i]->value;
	return "default";
}

static const char *pick_evidence_type(struct manager *m, const struct policy_pool *pool,
				      const Seeswarm__V1__Hello *h)
{
	for (size_t i = 0; i < h->n_evidence_types; i++) {
		const struct attest_verifier *v = attest_verifier_find(h->evidence_types[i]);
		if (!v || !policy_pool_allows(pool, v->name))
			continue;
		if (!v->hardware && !m->cfg.insecure_sim)
			continue;
		return v->name;
	}
	return NULL;
}

static void send_challenge(struct session *s);
/*
 * When the next re-attestation is due: the pool's interval minus up to 10 %
 * at random, so that nodes admitted together drift apart instead of all
 * re-attesting in the same second forever (and never later than the policy
 * says).
 */
static uint64_t next_reattest_at(const struct manager *m, uint64_t interval_ms)
{
	uint64_t jitter = interval_ms / 10;
	return uv_now(m->loop) + interval_ms - (jitter ? rand_below((uint32_t)(jitter > UINT32_MAX ? UINT32_MAX : jitter)) : 0);
}

static void result_digest(struct node *n);

/* Signing a renewed node certificate on the thread pool (re-attestation). */
struct cjob {
	uv_work_t req;
	struct session *s;
	struct ca *ca;                 /* the swarm CA; only read while signing */
	uint8_t *spki;                 /* the node's TLS key (DER), decoded on the worker */
	size_t spki_len;
	EVP_PKEY *pub;
	char id[64];
	uint8_t digest[32];            /* the attestation result the certificate carries */
	uint32_t lifetime_s;
	uint8_t *der;
	size_t len;
	char serial[sizeof(((struct node *)0)->node_cert_serial)];
};

/*
 * Thread pool: verification and signing run below the loop's priority, so
 * that on a busy machine the loop thread (heartbeats, dispatch, the API)
 * gets the CPU first and a burst of re-attestations does not delay it.
 * Each worker lowers itself once.
 */
static void pool_thread_background(void)
{
	static _Thread_local bool lowered;
	if (lowered)
		return;
	lowered = true;
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), POOL_NICE) != 0)
		log_debug("cannot lower a worker thread's priority: %s", strerror(errno));
}

static void sign_work(uv_work_t *req)
{
	pool_thread_background();
	struct cjob *c = req->data;
	/* OpenSSL 3's key decoder costs ~300 us: kept off the loop too. */
	const unsigned char *p = c->spki;
	c->pub = d2i_PUBKEY(NULL, &p, (long)c->spki_len);
	if (!c->pub)
		return;
	const char *dns[] = {c->id, NULL};
	struct ca_issue_opts o = {
		.common_name = c->id,
		.dns_sans = dns,
		.lifetime_s = c->lifetime_s,
		.usage = CA_USAGE_CLIENT | CA_USAGE_SERVER,
		.attestation_digest = c->digest,
	};
	X509 *cert = NULL;
	unsigned char *der = NULL;
	int dl;
	if (ca_issue(c->ca, c->pub, &o, &cert) == 0 && (dl = i2d_X509(cert, &der)) > 0) {
		c->der = xmalloc((size_t)dl);
		memcpy(c->der, der, (size_t)dl);
		c->len = (size_t)dl;
		cert_serial_hex(cert, c->serial, sizeof c->serial);
	}
	OPENSSL_free(der);
	X509_free(cert);
}

static void sign_done(uv_work_t *req, int status)
{
	struct cjob *c = req->data;
	struct session *s = c->s;
	struct manager *m = s->m;
	s->signing = false;
	if (s->conn && s->node && s->st == SESS_ADMITTED) {
		struct node *n = s->node;
		if (status == 0 && c->der) {
			Seeswarm__V1__NodeCertificate nc = SEESWARM__V1__NODE_CERTIFICATE__INIT;
			nc.cert.data = c->der;
			nc.cert.len = c->len;
			conn_send(s->conn, MSG_NODE_CERTIFICATE, &nc.base);
			snprintf(n->node_cert_serial, sizeof n->node_cert_serial, "%s", c->serial);
			peer_key_hex(s, n->node_cert_key);
			n->node_cert_expires_ms = time_wall_ms() + (int64_t)c->lifetime_s * 1000;
			m->mx.node_certs_issued++;
		} else {
			log_error("node %s: cannot issue a node certificate", n->id);
		}
		save_node(m, n);
	}
	free(c->der);
	free(c->spki);
	EVP_PKEY_free(c->pub);
	free(c);
	if (!s->conn && !session_busy(s))
		session_free(s);
}

/*
 * Renews a re-attested node's certificate off the loop: 1,000 nodes
 * re-attesting within a second would otherwise hold the loop for the
 * signatures. Falls back to signing here when the key cannot be read.
 */
static void renew_node_cert(struct manager *m, struct session *s, struct node *n)
{
	size_t spki_len = 0;
	const uint8_t *spki = tls_peer_spki(conn_tls(s->conn), &spki_len);
	struct cjob *c = xcalloc(1, sizeof *c);
	c->req.data = c;
	c->s = s;
	c->ca = m->ca;
	c->spki = spki && spki_len ? xmalloc(spki_len) : NULL;
	if (c->spki)
		memcpy(c->spki, spki, spki_len);
	c->spki_len = spki_len;
	c->lifetime_s = m->cfg.node_cert_s;
	snprintf(c->id, sizeof c->id, "%s", n->id);
	result_digest(n);
	if (!c->spki || hex_decode(n->result_digest, c->digest, 32) != 0 ||
	    uv_queue_work(m->loop, &c->req, sign_work, sign_done) != 0) {
		log_error("node %s: cannot issue a node certificate", n->id);
		free(c->spki);
		free(c);
		save_node(m, n);
		return;
	}
	s->signing = true;
}

static bool is_revoked(const struct manager *m, const char *serial);

/*
 * Sends every revoked node certificate that has not expired yet, so that a
 * newly admitted agent refuses them on its peer endpoint too.
 */
static void send_revoked_list(struct manager *m, struct conn *c)
{
	int64_t now = time_wall_ms();
	char *v[MSG_MAX_REVOKED];
	size_t n = 0;
	for (size_t i = 0; i <= m->n_revoked; i++) {
		if (n == MSG_MAX_REVOKED || (i == m->n_revoked && n > 0)) {
			Seeswarm__V1__Revocation r = SEESWARM__V1__REVOCATION__INIT;
			r.serials = v;
			r.n_serials = n;
			conn_send(c, MSG_REVOCATION, &r.base);
			n = 0;
		}
		if (i < m->n_revoked && m->revoked[i].expires_ms > now)
			v[n++] = m->revoked[i].serial;
	}
}
static int start_credential(struct session *s, const Seeswarm__V1__Hello *h);
static void apply_hello(struct node *n, const Seeswarm__V1__Hello *h, const char *peer);

static int on_hello(struct session *s, Seeswarm__V1__Hello *h)
{
	struct manager *m = s->m;
	if (h->protocol_version != PROTOCOL_VERSION) {
		char why[128];
		snprintf(why, sizeof why, "unsupported protocol version %u (this manager speaks %d)",
			 h->protocol_version, PROTOCOL_VERSION);
		conn_send_error(s->conn, SS_EVERSION, why);
		conn_close(s->conn, SS_EVERSION, why);
		msg_free(&h->base);
		return 0;
	}
	s->hello = h;
	if (strcmp(h->agent_id, s->cn) != 0) {
		char why[200];
		snprintf(why, sizeof why, "agent id '%s' does not match its certificate (CN '%s')",
			 h->agent_id, s->cn);
		reject(s, why, 0);
		return 0;
	}
	const char *serial = tls_peer_serial(conn_tls(s->conn));
	if (is_revoked(m, serial)) {
		char why[120];
		snprintf(why, sizeof why, "certificate %s is revoked", serial);
		reject(s, why, 1000);
		return 0;
	}
	uint8_t peer_digest[32];
	bool node_cert = tls_peer_node_digest(conn_tls(s->conn), peer_digest);
	const struct node *known = registry_get(m->reg, h->agent_id);
	if (!node_cert && known && known->node_cert_serial[0] && known->state != NODE_EVICTED &&
	    known->node_cert_expires_ms > time_wall_ms() && !holds_cert_key(s, known)) {
		char why[200];
		snprintf(why, sizeof why, "node %s holds node certificate %s; connect with it, not with the join certificate",
			 h->agent_id, known->node_cert_serial);
		reject(s, why, 5000);
		return 0;
	}
	const char *pool_name = hello_pool(h);
	s->policy = policy_ref(m->policy);
	s->pool = policy_pool(s->policy, pool_name);
	if (!s->pool) {
		char why[160];
		snprintf(why, sizeof why, "the policy has no pool \"%s\"", pool_name);
		reject(s, why, 30000);
		return 0;
	}
	const char *ev = pick_evidence_type(m, s->pool, h);
	if (!ev) {
		char why[300];
		bool offers_sim = false;
		for (size_t i = 0; i < h->n_evidence_types; i++)
			offers_sim |= !strcmp(h->evidence_types[i], "sim");
		if (offers_sim && !m->cfg.insecure_sim)
			snprintf(why, sizeof why, "no acceptable evidence type: sim attestation is refused unless the manager runs with --insecure-sim-attestation");
		else
			snprintf(why, sizeof why, "no acceptable evidence type: pool \"%s\" allows none of the types this agent offers", s->pool->name);
		reject(s, why, 30000);
		return 0;
	}
	snprintf(s->evtype, sizeof s->evtype, "%s", ev);
	if (!strcmp(ev, "tpm"))
		return start_credential(s, h);
	send_challenge(s);
	return 0;
}

/* Sends the nonce challenge that the evidence must be bound to. */
static void send_challenge(struct session *s)
{
	rand_bytes(s->nonce, sizeof s->nonce);
	Seeswarm__V1__Challenge c = SEESWARM__V1__CHALLENGE__INIT;
	c.nonce.data = s->nonce;
	c.nonce.len = sizeof s->nonce;
	c.evidence_type = s->evtype;
	s->st = SESS_EVIDENCE;
	conn_set_deadline(s->conn, EVIDENCE_TIMEOUT_MS);
	conn_send(s->conn, MSG_CHALLENGE, &c.base);
}

/*
 * tpm: before any quote is trusted, the AK must be shown to live in the TPM
 * that holds the EK: MakeCredential here, ActivateCredential in the agent.
 */
static int start_credential(struct session *s, const Seeswarm__V1__Hello *h)
{
	struct manager *m = s->m;
	char reason[300];
	if (h->attester_identity.len == 0) {
		reject(s, "tpm: the agent sent no TPM identity (AK, EK, EK certificate)", 0);
		return 0;
	}
	const json_t *fp = policy_pool_format(s->pool, "tpm");
	const json_t *req = fp ? json_object_get(fp, "require_ek_cert") : NULL;
	bool require_ek_cert = req ? json_is_true(req) : true;
	s->cred = xcalloc(1, sizeof *s->cred);
	int rc = tpm_ak_challenge_new(h->attester_identity.data, h->attester_identity.len,
				      m->cfg.collateral_dir, time_wall_ms() / 1000, require_ek_cert,
				      s->cred, reason, sizeof reason);
	if (rc) {
		char why[360];
		snprintf(why, sizeof why, "tpm: %s", reason);
		struct node *n = registry_upsert(m->reg, h->agent_id);
		if (n->state == NODE_JOINING || n->state == NODE_REJECTED || n->state == NODE_LEFT ||
		    n->state == NODE_DOWN) {
			apply_hello(n, h, conn_peer(s->conn));
			snprintf(n->tee, sizeof n->tee, "tpm");
			set_state(m, n, NODE_REJECTED, why);
		}
		reject(s, why, 30000);
		return 0;
	}
	Seeswarm__V1__CredentialChallenge cc = SEESWARM__V1__CREDENTIAL_CHALLENGE__INIT;
	cc.id_object.data = s->cred->blob.id_object;
	cc.id_object.len = s->cred->blob.id_object_len;
	cc.enc_secret.data = s->cred->blob.enc_secret;
	cc.enc_secret.len = s->cred->blob.enc_secret_len;
	s->st = SESS_CREDENTIAL;
	conn_set_deadline(s->conn, EVIDENCE_TIMEOUT_MS);
	conn_send(s->conn, MSG_CREDENTIAL_CHALLENGE, &cc.base);
	return 0;
}

static int on_credential_response(struct session *s, Seeswarm__V1__CredentialResponse *r)
{
	char reason[300];
	int rc = tpm_ak_challenge_finish(s->cred, r->secret.data, r->secret.len, time_wall_ms() / 1000,
					 reason, sizeof reason);
	msg_free(&r->base);
	OPENSSL_cleanse(s->cred, sizeof *s->cred);
	free(s->cred);
	s->cred = NULL;
	if (rc) {
		char why[360];
		snprintf(why, sizeof why, "tpm credential activation failed: %s", reason);
		reject(s, why, 30000);
		return 0;
	}
	send_challenge(s);
	return 0;
}

static void apply_hello(struct node *n, const Seeswarm__V1__Hello *h, const char *peer)
{
	snprintf(n->addr, sizeof n->addr, "%s", peer);
	snprintf(n->advertise, sizeof n->advertise, "%s", h->advertise_addr ? h->advertise_addr : "");
	snprintf(n->version, sizeof n->version, "%s", h->agent_version ? h->agent_version : "");
	const Seeswarm__V1__Capabilities *c = h->capabilities;
	snprintf(n->hostname, sizeof n->hostname, "%s", c->hostname ? c->hostname : "");
	n->cpu_cores = c->cpu_cores;
	n->max_tasks = c->max_tasks;
	n->memory_bytes = c->memory_bytes;
	n->disk_bytes = c->disk_bytes;
	node_set_features(n, (const char *const *)c->features, c->n_features);
	const char *keys[MSG_MAX_LABELS], *vals[MSG_MAX_LABELS];
	for (size_t i = 0; i < h->n_labels; i++) {
		keys[i] = h->labels[i]->key;
		vals[i] = h->labels[i]->value;
	}
	node_set_labels(n, keys, vals, h->n_labels);
	n->price_per_hour = h->price_per_hour;
}

static void detach_session(struct session *s)
{
	if (s->node && s->node->session == s)
		s->node->session = NULL;
	s->node = NULL;
}

/* One verification on libuv's thread pool. The worker touches only this struct. */
struct vjob {
	uv_work_t req;
	struct session *s;
	const struct attest_verifier *v;
	Seeswarm__V1__Evidence *e;     /* owned; its bytes are the evidence */
	const uint8_t *certs[MSG_MAX_CERTS];
	size_t lens[MSG_MAX_CERTS];
	uint8_t expected[ATTEST_REPORT_DATA_LEN];
	json_t *format_policy;         /* a reference, read-only */
	char *collateral_dir;
	int64_t now_unix;
	int rc;
	struct attest_output out;
	uint64_t t0;
	uint8_t *spki;                 /* first admission: the TLS key to certify (DER) ... */
	size_t spki_len;
	EVP_PKEY *pub;                 /* ... decoded on the worker (OpenSSL 3's decoder is slow) */
};

static void verify_work(uv_work_t *req)
{
	pool_thread_background();
	struct vjob *j = req->data;
	struct attest_input in = {
		.evidence = j->e->evidence.data,
		.evidence_len = j->e->evidence.len,
		.certs = j->certs,
		.cert_lens = j->lens,
		.n_certs = j->e->n_certs,
		.expected_report_data = j->expected,
		.expected_len = sizeof j->expected,
		.now_unix = j->now_unix,
		.collateral_dir = j->collateral_dir,
		.policy = j->format_policy,
	};
	memset(&j->out, 0, sizeof j->out);
	j->rc = j->v->verify(&in, &j->out);
	if (j->rc == 0 && j->spki) {
		const unsigned char *p = j->spki;
		j->pub = d2i_PUBKEY(NULL, &p, (long)j->spki_len);
	}
}

/* Records the appraisal result (EAR-like) on the node. */
static void record_result(struct session *s, struct node *n, const struct vjob *j,
			  enum attest_status st)
{
	snprintf(n->tee, sizeof n->tee, "%s", j->out.tee[0] ? j->out.tee : j->v->name);
	snprintf(n->attest_status, sizeof n->attest_status, "%s", attest_status_name(st));
	snprintf(n->attest_type, sizeof n->attest_type, "%s", j->v->name);
	snprintf(n->attest_reason, sizeof n->attest_reason, "%s", j->out.reason);
	snprintf(n->policy_id, sizeof n->policy_id, "%s", s->pool ? s->pool->id : "");
	snprintf(n->pool, sizeof n->pool, "%s", s->pool ? s->pool->name : "");
	n->attest_insecure = !j->v->hardware;
	n->attest_ms = time_wall_ms();
	n->attest_expires_ms = n->attest_ms + (int64_t)(s->pool ? s->pool->ttl_ms : 0);
	n->claims_digest[0] = '\0';
	if (j->out.claims) {
		char *canon = json_dumps(j->out.claims, JSON_COMPACT | JSON_SORT_KEYS);
		if (canon) {
			uint8_t d[32];
			sha256(canon, strlen(canon), d);
			hex_encode(d, 32, n->claims_digest);
			free(canon);
		}
	}
}

/* The digest of the appraisal result that the node certificate carries. */
static void result_digest(struct node *n)
{
	char at[32] = "", ex[32] = "";
	if (n->attest_ms)
		time_rfc3339(n->attest_ms, at);
	if (n->attest_expires_ms)
		time_rfc3339(n->attest_expires_ms, ex);
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "node", n->id, "status",
			      n->attest_status, "tee", n->tee, "type", n->attest_type, "claims_digest",
			      n->claims_digest, "policy_id", n->policy_id, "issued", at, "expires", ex);
	char *canon = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	uint8_t d[32];
	sha256(canon, strlen(canon), d);
	hex_encode(d, 32, n->result_digest);
	free(canon);
	json_decref(j);
}

/*
 * Issues a node certificate for the session's attested TLS key: CN and DNS
 * SAN = node id, the attestation-result digest as an extension. decoded,
 * when not NULL, is that key already decoded (borrowed). Returns the DER
 * (caller frees) or NULL.
 */
static uint8_t *issue_node_cert(struct manager *m, struct session *s, struct node *n,
			       EVP_PKEY *decoded, size_t *len)
{
	uint8_t *out = NULL;
	size_t spki_len = 0;
	const uint8_t *spki = tls_peer_spki(conn_tls(s->conn), &spki_len);
	const unsigned char *p = spki;
	EVP_PKEY *pub = decoded ? decoded : spki ? d2i_PUBKEY(NULL, &p, (long)spki_len) : NULL;
	X509 *cert = NULL;
	uint8_t digest[32];
	result_digest(n);
	if (!pub || hex_decode(n->result_digest, digest, 32) != 0)
		goto out;
	const char *dns[] = {n->id, NULL};
	struct ca_issue_opts o = {
		.common_name = n->id,
		.dns_sans = dns,
		.lifetime_s = m->cfg.node_cert_s,
		.usage = CA_USAGE_CLIENT | CA_USAGE_SERVER,
		.attestation_digest = digest,
	};
	if (ca_issue(m->ca, pub, &o, &cert) != 0)
		goto out;
	unsigned char *der = NULL;
	int dl = i2d_X509(cert, &der);
	if (dl <= 0)
		goto out;
	out = xmalloc((size_t)dl);
	memcpy(out, der, (size_t)dl);
	*len = (size_t)dl;
	OPENSSL_free(der);
	cert_serial_hex(cert, n->node_cert_serial, sizeof n->node_cert_serial);
	peer_key_hex(s, n->node_cert_key);
	n->node_cert_expires_ms = time_wall_ms() + (int64_t)m->cfg.node_cert_s * 1000;
	m->mx.node_certs_issued++;
out:
	if (!out)
		log_error("node %s: cannot issue a node certificate", n->id);
	X509_free(cert);
	if (pub != decoded)
		EVP_PKEY_free(pub);
	return out;
}

static bool is_revoked(const struct manager *m, const char *serial)
{
	for (size_t i = 0; i < m->n_revoked; i++)
		if (!strcmp(m->revoked[i].serial, serial))
			return true;
	return false;
}

struct push_ctx {
	struct manager *m;
	const char *serial;
};

static void push_revocation(void *arg, struct node *n)
{
	struct push_ctx *pc = arg;
	struct session *s = n->session;
	if (!s || !s->conn || s->st != SESS_ADMITTED)
		return;
	Seeswarm__V1__Revocation r = SEESWARM__V1__REVOCATION__INIT;
	char *serials[1] = {(char *)pc->serial};
	r.serials = serials;
	r.n_serials = 1;
	conn_send(s->conn, MSG_REVOCATION, &r.base);
}

/* Revokes a node certificate: durable first, then pushed to every connected agent. */
static void revoke_cert(struct manager *m, const char *serial, int64_t expires_ms)
{
	if (!serial[0] || is_revoked(m, serial))
		return;
	if (m->n_revoked == m->cap_revoked) {
		m->cap_revoked = m->cap_revoked ? 2 * m->cap_revoked : 64;
		m->revoked = xrealloc(m->revoked, m->cap_revoked * sizeof *m->revoked);
	}
	struct revoked *r = &m->revoked[m->n_revoked++];
	snprintf(r->serial, sizeof r->serial, "%s", serial);
	r->expires_ms = expires_ms;
	char v[32];
	snprintf(v, sizeof v, "%lld", (long long)expires_ms);
	store_put(m->store, "revoked", serial, v, strlen(v));
	m->mx.revocations++;
	log_info("node certificate %s revoked; pushing to every agent", serial);
	struct push_ctx pc = {m, serial};
	registry_each(m->reg, push_revocation, &pc);
}

static void evict(struct manager *m, struct session *s, const char *why)
{
	struct node *n = s->node;
	m->mx.evictions++;
	log_warn("node %s evicted: %s", n ? n->id : "?", why);
	if (n) {
		revoke_cert(m, n->node_cert_serial, n->node_cert_expires_ms);
		n->node_cert_serial[0] = '\0';
		n->node_cert_expires_ms = 0;
		set_state(m, n, NODE_EVICTED, why);
		detach_session(s);
	}
	if (s->conn) {
		Seeswarm__V1__Rejected r = SEESWARM__V1__REJECTED__INIT;
		r.reason = (char *)why;
		r.retry_after_ms = 5000;
		conn_send(s->conn, MSG_REJECTED, &r.base);
		conn_close(s->conn, SS_EATTEST, why);
	}
}

static void admit(struct session *s, struct vjob *j, enum attest_status st)
{
	struct manager *m = s->m;
	const Seeswarm__V1__Hello *h = s->hello;
	struct node *n = registry_upsert(m->reg, h->agent_id);
	/* A newer connection for the same node replaces an older one. */
	if (n->session && n->session != s) {
		struct session *old = n->session;
		detach_session(old);
		if (old->conn)
			conn_close(old->conn, 0, "replaced by a newer connection of the same node");
	}
	apply_hello(n, h, conn_peer(s->conn));
	record_result(s, n, j, st);
	free(s->node_cert);
	s->node_cert = issue_node_cert(m, s, n, j->pub, &s->node_cert_len);
	if (!n->joined_ms)
		n->joined_ms = n->attest_ms;
	n->last_hb_ms = time_wall_ms();
	n->last_hb_mono = uv_now(m->loop);
	n->lost_mono = 0;
	n->session = s;
	s->node = n;
	/* Its task references are reconciled once the admission is committed. */
	s->admitted_hello = s->hello;
	s->hello = NULL;
	m->mx.admitted++;
	set_state(m, n, NODE_READY, n->draining ? n->reason : "");
	conn_set_deadline(s->conn, 0);
	s->next_reattest = next_reattest_at(m, s->pool->reattest_ms);
	s->st = SESS_COMMIT;
	s->in_commit_list = true;
	*m->commit_tail = s;
	m->commit_tail = &s->next_commit;
}

static void verify_done(uv_work_t *req, int status)
{
	struct vjob *j = req->data;
	struct session *s = j->s;
	struct manager *m = s->m;
	s->verifying = false;
	m->mx.verifications++;
	enum attest_status st = j->rc ? ATTEST_CONTRAINDICATED : j->out.status;
	bool acceptable = status == 0 && j->rc == 0 &&
			  (st == ATTEST_AFFIRMING || (st == ATTEST_WARNING && s->pool->allow_warning));
	char why[640];
	snprintf(why, sizeof why, "attestation %s: %s", j->rc ? "failed" : attest_status_name(st),
		 j->out.reason[0] ? j->out.reason : ss_strerror(j->rc));
	log_debug("verified %s evidence in %.2f ms", j->v->name, (double)(uv_hrtime() - j->t0) / 1e6);
	if (!s->conn) {
		/* The connection went away while verifying. */
	} else if (s->st == SESS_ADMITTED && s->node) {
		/* Re-attestation of an admitted node. */
		s->reattesting = false;
		if (acceptable) {
			record_result(s, s->node, j, st);
			if (s->signing)
				save_node(m, s->node); /* the previous renewal is still being signed */
			else
				renew_node_cert(m, s, s->node);
			if (m->jobs)
				jobs_node_changed(m->jobs, s->node);
			s->next_reattest = next_reattest_at(m, s->pool->reattest_ms);
			log_debug("node %s re-attested (%s)", s->node->id, attest_status_name(st));
		} else {
			record_result(s, s->node, j, st);
			evict(m, s, why);
		}
	} else if (acceptable) {
		admit(s, j, st);
	} else {
		struct node *n = registry_upsert(m->reg, s->hello->agent_id);
		if (n->state == NODE_JOINING || n->state == NODE_REJECTED || n->state == NODE_LEFT ||
		    n->state == NODE_DOWN) {
			apply_hello(n, s->hello, conn_peer(s->conn));
			record_result(s, n, j, st);
			set_state(m, n, NODE_REJECTED, why);
		} else if (n->state == NODE_EVICTED) {
			/* It stays evicted until fresh evidence is affirming. */
			record_result(s, n, j, st);
			set_state(m, n, NODE_EVICTED, why);
		}
		reject(s, why, 5000);
	}
	attest_output_free(&j->out);
	EVP_PKEY_free(j->pub);
	free(j->spki);
	json_decref(j->format_policy);
	msg_free(&j->e->base);
	free(j->collateral_dir);
	free(j);
	if (!s->conn && !session_busy(s))
		session_free(s);
}

static int on_evidence(struct session *s, Seeswarm__V1__Evidence *e)
{
	struct manager *m = s->m;
	if (strcmp(e->evidence_type, s->evtype) != 0) {
		msg_free(&e->base);
		reject(s, "evidence type differs from the one challenged", 0);
		return 0;
	}
	if (s->verifying) {
		msg_free(&e->base);
		reject(s, "evidence sent twice", 0);
		return 0;
	}
	size_t spki_len = 0;
	const uint8_t *spki = tls_peer_spki(conn_tls(s->conn), &spki_len);
	if (!spki || spki_len == 0) {
		msg_free(&e->base);
		reject(s, "cannot read the TLS peer key", 0);
		return 0;
	}
	struct vjob *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->s = s;
	j->e = e;
	j->v = attest_verifier_find(s->evtype);
	attest_binding(s->nonce, sizeof s->nonce, spki, spki_len, j->expected);
	if (s->st != SESS_ADMITTED) {
		j->spki = xmalloc(spki_len);
		memcpy(j->spki, spki, spki_len);
		j->spki_len = spki_len;
	}
	/* A fresh nonce for every attestation: this one is spent. */
	rand_bytes(s->nonce, sizeof s->nonce);
	for (size_t i = 0; i < e->n_certs; i++) {
		j->certs[i] = e->certs[i].data;
		j->lens[i] = e->certs[i].len;
	}
	const json_t *fp = policy_pool_format(s->pool, s->evtype);
	j->format_policy = fp ? json_incref((json_t *)fp) : NULL;
	j->collateral_dir = m->cfg.collateral_dir ? xstrdup(m->cfg.collateral_dir) : NULL;
	j->now_unix = time_wall_ms() / 1000;
	j->t0 = uv_hrtime();
	s->verifying = true;
	int r = uv_queue_work(m->loop, &j->req, verify_work, verify_done);
	if (r != 0)
		fatal("uv_queue_work: %s", uv_strerror(r));
	return 0;
}

/* A round-trip time n measured to peer: shown on the node, used by the scheduler. */
static void record_rtt(struct manager *m, struct node *n, const char *peer, uint32_t rtt_us)
{
	if (!strcmp(peer, n->id) || !registry_get(m->reg, peer))
		return;
	size_t i;
	for (i = 0; i < n->n_rtt; i++)
		if (!strcmp(n->rtt[i].peer, peer))
			break;
	if (i == n->n_rtt) {
		if (n->n_rtt == ARRAY_LEN(n->rtt))
			i = rand_below(ARRAY_LEN(n->rtt)); /* replace one at random */
		else
			n->n_rtt++;
		snprintf(n->rtt[i].peer, sizeof n->rtt[i].peer, "%s", peer);
	}
	n->rtt[i].rtt_us = rtt_us;
	if (m->jobs)
		jobs_set_rtt(m->jobs, n->id, peer, rtt_us / 1000.0);
}

static int on_heartbeat(struct session *s, Seeswarm__V1__Heartbeat *hb)
{
	struct manager *m = s->m;
	struct node *n = s->node;
	if (n) {
		n->last_hb_ms = time_wall_ms();
		n->last_hb_mono = uv_now(m->loop);
		n->heartbeats++;
		n->dirty = true;
		if (hb->load) {
			n->cpu_permille = hb->load->cpu_permille;
			n->mem_used = hb->load->memory_used_bytes;
			n->load1_centi = hb->load->load1_centi;
			n->running_tasks = hb->load->running_tasks;
		}
		for (size_t i = 0; i < hb->n_rtts; i++)
			record_rtt(m, n, hb->rtts[i]->node_id, hb->rtts[i]->rtt_us);
		if (n->state == NODE_SUSPECT || n->state == NODE_DOWN)
			set_state(m, n, NODE_READY, n->draining ? n->reason : "heartbeats resumed");
		m->mx.heartbeats++;
		const char *shown = node_display_state(n);
		if (hb->seq % HEARTBEAT_ACK_EVERY == 1 || strcmp(shown, s->told_state) != 0) {
			Seeswarm__V1__HeartbeatAck a = SEESWARM__V1__HEARTBEAT_ACK__INIT;
			a.seq = hb->seq;
			a.state = (char *)shown;
			snprintf(s->told_state, sizeof s->told_state, "%s", shown);
			conn_send(s->conn, MSG_HEARTBEAT_ACK, &a.base);
		}
	}
	msg_free(&hb->base);
	return 0;
}

static int on_frame(struct conn *c, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct session *s = conn_data(c);
	ProtobufCMessage *msg;
	const char *why;
	int rc = msg_decode(type, payload, len, &msg, &why);
	if (rc) {
		char text[160];
		snprintf(text, sizeof text, "%s (type %u, %u bytes)", why, type, len);
		s->m->mx.protocol_errors++;
		conn_send_error(c, rc, text);
		conn_close(c, rc, text);
		return 0;
	}
	bool ok;
	switch (s->st) {
	case SESS_HELLO:
		ok = type == MSG_HELLO;
		break;
	case SESS_CREDENTIAL:
		ok = type == MSG_CREDENTIAL_RESPONSE;
		break;
	case SESS_EVIDENCE:
		/* An agent stopping before it hears of its admission says goodbye too. */
		ok = type == MSG_EVIDENCE || type == MSG_GOODBYE;
		break;
	case SESS_COMMIT:
		ok = type == MSG_HEARTBEAT || type == MSG_GOODBYE;
		break;
	case SESS_ADMITTED:
		ok = type == MSG_HEARTBEAT || type == MSG_GOODBYE ||
		     (type == MSG_EVIDENCE && s->reattesting && !s->verifying) ||
		     (s->node && (type == MSG_TASK_STARTED || type == MSG_TASK_RESULT ||
				  type == MSG_BLOB_GET || type == MSG_BLOB_DATA ||
				  type == MSG_BLOB_STORED || type == MSG_BLOB_INVENTORY ||
				  type == MSG_TASK_LOG));
		break;
	default:
		ok = false;
	}
	if (!ok) {
		char text[96];
		snprintf(text, sizeof text, "unexpected %s message in this state", msg_type_name(type));
		s->m->mx.protocol_errors++;
		msg_free(msg);
		conn_send_error(c, SS_EPROTO, text);
		conn_close(c, SS_EPROTO, text);
		return 0;
	}
	switch (type) {
	case MSG_HELLO:
		return on_hello(s, (Seeswarm__V1__Hello *)msg);
	case MSG_EVIDENCE:
		return on_evidence(s, (Seeswarm__V1__Evidence *)msg);
	case MSG_CREDENTIAL_RESPONSE:
		return on_credential_response(s, (Seeswarm__V1__CredentialResponse *)msg);
	case MSG_HEARTBEAT:
		return on_heartbeat(s, (Seeswarm__V1__Heartbeat *)msg);
	case MSG_TASK_STARTED:
	case MSG_TASK_RESULT:
	case MSG_BLOB_GET:
	case MSG_BLOB_DATA:
	case MSG_BLOB_STORED:
	case MSG_BLOB_INVENTORY:
	case MSG_TASK_LOG: {
		int jr = jobs_on_message(s->m->jobs, s->node, type, msg);
		if (jr) {
			s->m->mx.protocol_errors++;
			conn_send_error(c, jr, "task protocol violation");
			conn_close(c, jr, "task protocol violation");
		}
		return 0;
	}
	case MSG_GOODBYE: {
		Seeswarm__V1__Goodbye *g = (Seeswarm__V1__Goodbye *)msg;
		if (s->node) {
			char left[300];
			snprintf(left, sizeof left, "agent left: %s", g->reason && *g->reason ? g->reason : "goodbye");
			s->m->mx.goodbyes++;
			set_state(s->m, s->node, NODE_LEFT, left);
			detach_session(s);
		}
		msg_free(msg);
		conn_close(c, 0, "agent said goodbye");
		return 0;
	}
	default:
		msg_free(msg);
		return SS_EPROTO;
	}
}

static void on_open(struct conn *c)
{
	struct session *s = conn_data(c);
	if (tls_offloaded(conn_tls(c)))
		s->m->mx.tls_offloaded++;
	else
		s->m->mx.tls_openssl++;
	snprintf(s->cn, sizeof s->cn, "%s", tls_peer_cn(conn_tls(c)));
	if (!ident_valid(s->cn)) {
		conn_close(c, SS_EAUTH, "peer certificate has no valid CN");
		return;
	}
	conn_set_deadline(c, HELLO_TIMEOUT_MS);
}

static void on_close(struct conn *c, int reason, const char *why)
{
	struct session *s = conn_data(c);
	struct manager *m = s->m;
	m->sessions--;
	if (reason && reason != SS_ETIMEDOUT)
		log_warn("connection from %s closed: %s (%s)", conn_peer(c), why, ss_strerror(reason));
	else
		log_debug("connection from %s closed: %s", conn_peer(c), why);
	struct node *n = s->node;
	if (n && n->session == s) {
		detach_session(s);
		/*
		 * A lost connection is a strong hint: suspect now, and down unless
		 * it is back within the reconnect grace (detect_one).
		 */
		if ((n->state == NODE_READY || n->state == NODE_SUSPECT) && !m->stopping)
			n->lost_mono = uv_now(m->loop);
		if (n->state == NODE_READY && !m->stopping)
			set_state(m, n, NODE_SUSPECT, "connection lost");
	}
	s->conn = NULL;
	if (!session_busy(s))
		session_free(s);
}

static const struct conn_cbs server_cbs = {
	.on_open = on_open,
	.on_frame = on_frame,
	.on_close = on_close,
};

static void on_connection(uv_stream_t *server, int status)
{
	struct manager *m = server->data;
	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	struct session *s = xcalloc(1, sizeof *s);
	s->m = m;
	s->st = SESS_HELLO;
	struct conn_limits lim = {
		.max_frame = FRAME_MAX_DEFAULT,
		.frames_per_sec = 200,
		.frame_burst = 400,
		.max_write_queue = 4u << 20,
	};
	struct conn *c;
	if (conn_accept(server, m->tls, &server_cbs, &lim, s, &c) != 0)
		return; /* on_close frees s */
	s->conn = c;
	m->sessions++;
	if (m->sessions > m->cfg.max_conns) {
		conn_close(c, SS_ELIMIT, "too many connections");
		return;
	}
	conn_set_deadline(c, HELLO_TIMEOUT_MS);
}

/* ---- re-attestation --------------------------------------------------- */

#define REATTEST_TIMEOUT_MS 10000

/* Sends a fresh challenge on an admitted session. */
static void reattest(struct manager *m, struct session *s)
{
	if (!s->conn || s->st != SESS_ADMITTED || s->reattesting || s->verifying)
		return;
	/* The current policy applies from now on (it may have been reloaded). */
	const char *pool_name = s->node && s->node->pool[0] ? s->node->pool : "default";
	struct policy *p = policy_ref(m->policy);
	policy_unref(s->policy);
	s->policy = p;
	s->pool = policy_pool(p, pool_name);
	if (!s->pool) {
		char why[160];
		snprintf(why, sizeof why, "re-attestation: the policy no longer has pool \"%s\"", pool_name);
		evict(m, s, why);
		return;
	}
	if (!policy_pool_allows(s->pool, s->evtype)) {
		char why[160];
		snprintf(why, sizeof why, "re-attestation: pool \"%s\" no longer allows %s evidence",
			 s->pool->name, s->evtype);
		evict(m, s, why);
		return;
	}
	rand_bytes(s->nonce, sizeof s->nonce);
	Seeswarm__V1__Challenge c = SEESWARM__V1__CHALLENGE__INIT;
	c.nonce.data = s->nonce;
	c.nonce.len = sizeof s->nonce;
	c.evidence_type = s->evtype;
	s->reattesting = true;
	s->reattest_sent = uv_now(m->loop);
	m->mx.reattestations++;
	conn_send(s->conn, MSG_CHALLENGE, &c.base);
}

static void reattest_one(void *arg, struct node *n)
{
	struct manager *m = arg;
	struct session *s = n->session;
	if (!s || s->st != SESS_ADMITTED)
		return;
	uint64_t now = uv_now(m->loop);
	if (s->reattesting && !s->verifying && now > s->reattest_sent + REATTEST_TIMEOUT_MS) {
		evict(m, s, "re-attestation timed out");
		return;
	}
	if (n->attest_expires_ms && time_wall_ms() > n->attest_expires_ms && !s->reattesting &&
	    !s->verifying) {
		evict(m, s, "attestation result expired");
		return;
	}
	if (now >= s->next_reattest)
		reattest(m, s);
}

static void on_reattester(uv_timer_t *t)
{
	struct manager *m = t->data;
	registry_each(m->reg, reattest_one, m);
}

static void on_sighup(uv_signal_t *h, int signum)
{
	struct manager *m = h->data;
	(void)signum;
	if (!m->cfg.policy_path) {
		log_info("SIGHUP: no --policy file; keeping the built-in policy");
		return;
	}
	struct policy *p = NULL;
	char why[300];
	if (policy_load(m->cfg.policy_path, m->cfg.insecure_sim, &p, why, sizeof why) != 0) {
		log_error("SIGHUP: policy not reloaded, keeping the current one: %s", why);
		return;
	}
	policy_unref(m->policy);
	m->policy = p;
	m->mx.policy_reloads++;
	log_info("SIGHUP: policy reloaded (%s); it applies at each node's next re-attestation",
		 policy_source(p));
}

/* ---- failure detection ------------------------------------------------ */

static void detect_one(void *arg, struct node *n)
{
	struct manager *m = arg;
	if (n->state != NODE_READY && n->state != NODE_SUSPECT)
		return;
	uint64_t now = uv_now(m->loop);
	uint64_t age = now > n->last_hb_mono ? now - n->last_hb_mono : 0;
	uint64_t suspect_after = (uint64_t)m->cfg.heartbeat_ms * m->cfg.suspect_misses + m->cfg.heartbeat_ms / 2;
	/*
	 * A node whose agent closed its connection (its process died, or it is
	 * reconnecting) is down once the grace has passed without a new
	 * admission: an agent's tasks die with it, so waiting out the full
	 * heartbeat timeout would only delay their recovery.
	 */
	bool gone = n->lost_mono && !n->session && now - n->lost_mono > m->cfg.grace_ms;
	if (age > m->cfg.down_ms || gone) {
		char why[96];
		if (age > m->cfg.down_ms)
			snprintf(why, sizeof why, "no heartbeat for %llu ms", (unsigned long long)age);
		else
			snprintf(why, sizeof why, "connection lost and not back within %u ms",
				 m->cfg.grace_ms);
		struct session *s = n->session;
		set_state(m, n, NODE_DOWN, why);
		if (s) {
			detach_session(s);
			if (s->conn)
				conn_close(s->conn, SS_ETIMEDOUT, why);
		}
	} else if (n->state == NODE_READY && age > suspect_after) {
		set_state(m, n, NODE_SUSPECT, "missed heartbeats");
	}
}

static void on_detector(uv_timer_t *t)
{
	struct manager *m = t->data;
	registry_each(m->reg, detect_one, m);
	/* Once a minute: a tenant's uploads stay nameable for the job retention time. */
	if (++m->detector_ticks >= UPLOAD_EXPIRY_TICKS) {
		m->detector_ticks = 0;
		size_t n = tenants_expire(m->tenants, time_wall_ms() - jobs_retention(m->jobs));
		if (n)
			log_info("tenants: %zu upload%s no job used expired", n, n == 1 ? "" : "s");
		tenants_tokens_expire(m->tenants, time_wall_ms());
	}
}

static void save_dirty(void *arg, struct node *n)
{
	if (n->dirty)
		save_node(arg, n);
}

/* ---- API backend ------------------------------------------------------ */

static json_t *be_nodes_list(void *arg, bool all)
{
	struct manager *m = arg;
	size_t n;
	struct node **v = registry_sorted(m->reg, &n);
	json_t *arr = json_array();
	uint64_t mono = uv_now(m->loop);
	int64_t wall = time_wall_ms();
	for (size_t i = 0; i < n; i++) {
		if (!all && (v[i]->state == NODE_REJECTED || v[i]->state == NODE_LEFT))
			continue;
		json_array_append_new(arr, node_to_json(v[i], false, mono, wall));
	}
	free(v);
	json_t *j = json_object();
	json_object_set_new(j, "nodes", arr);
	json_object_set_new(j, "index", json_integer((json_int_t)m->nodes_index));
	return j;
}

static uint64_t be_nodes_index(void *arg)
{
	return ((struct manager *)arg)->nodes_index;
}

static json_t *be_node_get(void *arg, const char *id)
{
	struct manager *m = arg;
	struct node *n = registry_get(m->reg, id);
	return n ? node_to_json(n, false, uv_now(m->loop), time_wall_ms()) : NULL;
}

static int be_node_drain(void *arg, const char *id, json_t *body, json_t **out, const char **why)
{
	struct manager *m = arg;
	struct node *n = registry_get(m->reg, id);
	if (!n)
		return SS_ENOTFOUND;
	if (n->state == NODE_REJECTED || n->state == NODE_EVICTED) {
		*why = "node is not admitted; nothing to drain";
		return SS_ESTATE;
	}
	const char *reason = body ? json_string_value(json_object_get(body, "reason")) : NULL;
	char text[256];
	snprintf(text, sizeof text, "drained by operator%s%s", reason ? ": " : "", reason ? reason : "");
	n->draining = true;
	set_state(m, n, n->state, text);
	/* The answer waits for the commit: acknowledged means durable. */
	int rc = store_flush(m->store);
	if (rc) {
		*why = "could not persist the drain";
		return SS_ESTORE;
	}
	struct session *s = n->session;
	if (s && s->conn && s->st == SESS_ADMITTED) {
		Seeswarm__V1__StateChange sc = SEESWARM__V1__STATE_CHANGE__INIT;
		sc.state = "draining";
		sc.reason = text;
		snprintf(s->told_state, sizeof s->told_state, "draining");
		conn_send(s->conn, MSG_STATE_CHANGE, &sc.base);
	}
	*out = node_to_json(n, false, uv_now(m->loop), time_wall_ms());
	return 0;
}

static int be_node_attest(void *arg, const char *id, json_t **out, const char **why)
{
	struct manager *m = arg;
	struct node *n = registry_get(m->reg, id);
	if (!n)
		return SS_ENOTFOUND;
	struct session *s = n->session;
	if (!s || !s->conn || s->st != SESS_ADMITTED) {
		*why = "the node is not connected and admitted";
		return SS_ESTATE;
	}
	if (!s->reattesting && !s->verifying)
		reattest(m, s);
	*out = node_to_json(n, false, uv_now(m->loop), time_wall_ms());
	return 0;
}

struct count_ctx {
	size_t by_state[NODE_STATE_COUNT];
	size_t draining, connected;
};

static void count_one(void *arg, struct node *n)
{
	struct count_ctx *c = arg;
	c->by_state[n->state]++;
	c->draining += n->draining;
	c->connected += n->session != NULL;
}

/* Appends one unlabelled metric in Prometheus text format. */
static void metric(struct buf *out, const char *name, const char *type, unsigned long long v)
{
	buf_printf(out, "# TYPE %s %s\n%s %llu\n", name, type, name, v);
}

/*
 * Loop lag: a timer due every LAG_PERIOD_MS records how late it fires. Work
 * that blocks the loop (a long callback, an fsync) shows up here, and with
 * it the delay every heartbeat, dispatch and API request waiting meanwhile
 * suffers.
 */
static void on_lag(uv_timer_t *t)
{
	struct manager *m = t->data;
	uint64_t now = uv_hrtime();
	uint64_t late = now > m->lag_expect_ns ? (now - m->lag_expect_ns) / 1000 : 0;
	m->lag_us[m->lag_i] = late > UINT32_MAX ? UINT32_MAX : (uint32_t)late;
	m->lag_i = (m->lag_i + 1) % LAG_SAMPLES;
	if (m->lag_n < LAG_SAMPLES)
		m->lag_n++;
	m->lag_expect_ns = now + LAG_PERIOD_MS * 1000000ull;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void lag_metrics(const struct manager *m, struct buf *out)
{
	if (!m->lag_n)
		return;
	uint32_t *v = xmalloc(m->lag_n * sizeof *v);
	memcpy(v, m->lag_us, m->lag_n * sizeof *v);
	qsort(v, m->lag_n, sizeof *v, cmp_u32);
	size_t i50 = m->lag_n / 2, i99 = m->lag_n * 99 / 100;
	buf_printf(out,
		   "# HELP seeswarm_loop_lag_ms How late the manager's loop ran a 10 ms timer, last minute.\n"
		   "# TYPE seeswarm_loop_lag_ms summary\n"
		   "seeswarm_loop_lag_ms{quantile=\"0.5\"} %.3f\n"
		   "seeswarm_loop_lag_ms{quantile=\"0.99\"} %.3f\n"
		   "seeswarm_loop_lag_ms{quantile=\"1\"} %.3f\n",
		   v[i50] / 1000.0, v[i99] / 1000.0, v[m->lag_n - 1] / 1000.0);
	free(v);
}

static void be_metrics(void *arg, struct buf *out)
{
	struct manager *m = arg;
	lag_metrics(m, out);
	struct count_ctx cc;
	memset(&cc, 0, sizeof cc);
	registry_each(m->reg, count_one, &cc);
	buf_printf(out, "# HELP seeswarm_nodes Nodes by state.\n# TYPE seeswarm_nodes gauge\n");
	for (int i = 0; i < NODE_STATE_COUNT; i++)
		buf_printf(out, "seeswarm_nodes{state=\"%s\"} %zu\n", node_state_name((enum node_state)i),
			   cc.by_state[i]);
	metric(out, "seeswarm_nodes_draining", "gauge", (unsigned long long)(cc.draining));
	metric(out, "seeswarm_nodes_connected", "gauge", (unsigned long long)(cc.connected));
	const struct conn_stats *cs = conn_stats();
	metric(out, "seeswarm_agent_connections", "gauge", (unsigned long long)(m->sessions));
	metric(out, "seeswarm_tenant_tokens", "gauge", (unsigned long long)tenants_token_count(m->tenants));
	metric(out, "seeswarm_tenant_uploads", "gauge", (unsigned long long)tenants_upload_count(m->tenants));
	metric(out, "seeswarm_agent_accepted_total", "counter", (unsigned long long)(cs->accepted));
	metric(out, "seeswarm_agent_closed_error_total", "counter", (unsigned long long)(cs->closed_error));
	metric(out, "seeswarm_frames_in_total", "counter", (unsigned long long)(cs->frames_in));
	metric(out, "seeswarm_frames_out_total", "counter", (unsigned long long)(cs->frames_out));
	metric(out, "seeswarm_admissions_total", "counter", (unsigned long long)(m->mx.admitted));
	metric(out, "seeswarm_rejections_total", "counter", (unsigned long long)(m->mx.rejected));
	metric(out, "seeswarm_heartbeats_total", "counter", (unsigned long long)(m->mx.heartbeats));
	metric(out, "seeswarm_protocol_errors_total", "counter", (unsigned long long)(m->mx.protocol_errors));
	metric(out, "seeswarm_store_commits_total", "counter", (unsigned long long)(m->mx.commits));
	metric(out, "seeswarm_store_commit_failures_total", "counter", (unsigned long long)(m->mx.commit_failures));
	buf_printf(out, "# TYPE seeswarm_store_commit_seconds_max gauge\nseeswarm_store_commit_seconds_max %.6f\n",
		   (double)m->mx.commit_us_max / 1e6);
	buf_printf(out, "# TYPE seeswarm_store_commit_seconds_sum counter\nseeswarm_store_commit_seconds_sum %.6f\n",
		   (double)m->mx.commit_us_total / 1e6);
	metric(out, "seeswarm_nodes_down_total", "counter", (unsigned long long)(m->mx.went_down));
	metric(out, "seeswarm_verifications_total", "counter", (unsigned long long)(m->mx.verifications));
	metric(out, "seeswarm_reattestations_total", "counter", (unsigned long long)(m->mx.reattestations));
	metric(out, "seeswarm_evictions_total", "counter", (unsigned long long)(m->mx.evictions));
	metric(out, "seeswarm_policy_reloads_total", "counter", (unsigned long long)(m->mx.policy_reloads));
	metric(out, "seeswarm_node_certificates_issued_total", "counter", (unsigned long long)(m->mx.node_certs_issued));
	metric(out, "seeswarm_revocations_total", "counter", (unsigned long long)(m->mx.revocations));
	buf_printf(out, "# HELP seeswarm_tls_sessions_total Established agent sessions by record layer.\n"
			"# TYPE seeswarm_tls_sessions_total counter\n"
			"seeswarm_tls_sessions_total{record_layer=\"offloaded\"} %llu\n"
			"seeswarm_tls_sessions_total{record_layer=\"openssl\"} %llu\n",
		   (unsigned long long)m->mx.tls_offloaded, (unsigned long long)m->mx.tls_openssl);
	struct mallinfo2 mi = mallinfo2();
	metric(out, "seeswarm_heap_inuse_bytes", "gauge", (unsigned long long)mi.uordblks + mi.hblkhd);
	metric(out, "seeswarm_heap_free_bytes", "gauge", (unsigned long long)(mi.fordblks));
	buf_printf(out, "# TYPE seeswarm_uptime_seconds gauge\nseeswarm_uptime_seconds %.3f\n",
		   (double)(time_wall_ms() - m->started_ms) / 1000.0);
	if (m->jobs)
		jobs_metrics(m->jobs, out);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *be_tenants(void *arg, const char *tenant)
{
	struct manager *m = arg;
	if (!m->jobs || !m->tenants)
		return NULL;
	json_t *by = json_object();
	tenants_usage(m->tenants, by);
	if (tenant && !json_object_get(by, tenant))
		json_object_set_new(by, tenant, json_object()); /* a tenant with nothing yet */
	jobs_tenants(m->jobs, by);
	/* Rows in name order, each with every field (zero when nobody set it). */
	size_t n = json_object_size(by), k = 0;
	const char **names = xcalloc(n ? n : 1, sizeof *names);
	const char *key;
	json_t *val;
	json_object_foreach(by, key, val) names[k++] = key;
	qsort(names, n, sizeof *names, cmp_str);
	json_t *rows = json_array();
	for (size_t i = 0; i < n; i++) {
		if (tenant && strcmp(names[i], tenant) != 0)
			continue;
		json_t *e = json_pack("{s:s,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "tenant", names[i], "weight",
				      1.0, "cpu_running_m", (json_int_t)0, "cpu_cap_m", (json_int_t)0,
				      "tasks_queued", (json_int_t)0, "jobs_unfinished", (json_int_t)0, "tokens",
				      (json_int_t)0, "tokens_read_only", (json_int_t)0, "uploads", (json_int_t)0,
				      "upload_bytes", (json_int_t)0);
		json_object_update(e, json_object_get(by, names[i]));
		json_array_append_new(rows, e);
	}
	free(names);
	json_decref(by);
	return json_pack("{s:o,s:{s:I,s:I}}", "tenants", rows, "limits", "jobs_unfinished",
			 (json_int_t)jobs_tenant_max_jobs(m->jobs), "upload_bytes",
			 (json_int_t)tenants_upload_bytes_max(m->tenants));
}

static json_t *be_health(void *arg)
{
	struct manager *m = arg;
	struct count_ctx cc;
	memset(&cc, 0, sizeof cc);
	registry_each(m->reg, count_one, &cc);
	json_t *h = json_pack("{s:s, s:I, s:I, s:b}", "version", SS_VERSION, "nodes_ready",
			      (json_int_t)cc.by_state[NODE_READY], "nodes_total",
			      (json_int_t)registry_count(m->reg), "insecure_sim_attestation",
			      m->cfg.insecure_sim);
	if (m->jobs) {
		json_t *jh = jobs_health(m->jobs);
		json_object_update(h, jh);
		json_decref(jh);
	}
	return h;
}

/* ---- the job engine's view of sessions, and the job API ---------------- */

static struct session *admitted_session(const struct node *n)
{
	struct session *s = n->session;
	return s && s->conn && s->st == SESS_ADMITTED && !conn_closing(s->conn) ? s : NULL;
}

static int je_send(void *arg, struct node *n, uint16_t type, const ProtobufCMessage *msg)
{
	(void)arg;
	struct session *s = admitted_session(n);
	return s ? conn_send(s->conn, type, msg) : SS_ECLOSED;
}

/* Tasks go only over an admitted connection whose node certificate is valid. */
static bool je_connected(void *arg, const struct node *n)
{
	(void)arg;
	return admitted_session(n) && n->node_cert_serial[0] && n->node_cert_expires_ms > time_wall_ms();
}

/*
 * Makes what rc acknowledges durable before the answer goes: flushes the
 * store whatever rc is (a refusal may have changed records too) and, when
 * rc is 0 but the commit fails, drops *out, says what could not be persisted
 * (what) in why and returns SS_ESTORE. Otherwise returns rc.
 */
static int ack_durable(struct manager *m, int rc, json_t **out, const char *what, char *why,
		       size_t whylen)
{
	int frc = store_flush(m->store);
	if (rc == 0 && frc) {
		snprintf(why, whylen, "could not persist the %s", what);
		json_decref(*out);
		*out = NULL;
		rc = SS_ESTORE;
	}
	return rc;
}

static int be_job_submit(void *arg, const char *body, size_t len, const char *tenant, json_t **out,
			 char *why, size_t whylen)
{
	struct manager *m = arg;
	/* Acknowledged means durable: the answer waits for the commit. */
	return ack_durable(m, jobs_submit(m->jobs, body, len, tenant, out, why, whylen), out, "job", why,
			   whylen);
}

static int be_job_plan(void *arg, const char *body, size_t len, const char *tenant, json_t **out,
		       char *why, size_t whylen)
{
	return jobs_plan(((struct manager *)arg)->jobs, body, len, tenant, out, why, whylen);
}

static int be_job_rerun(void *arg, const char *id, const char *tenant, json_t **out, char *why,
			size_t whylen)
{
	struct manager *m = arg;
	char *spec = jobs_rerun_spec(m->jobs, id, tenant);
	if (!spec) {
		snprintf(why, whylen, "job %s not found", id);
		return SS_ENOTFOUND;
	}
	/* A rerun is a submission of the same spec by the same tenant, with the same checks. */
	int rc = be_job_submit(arg, spec, strlen(spec), tenant, out, why, whylen);
	free(spec);
	if (rc == 0) {
		json_object_set_new(*out, "rerun_of", json_string(id));
		log_info("job %s is a rerun of %s", json_string_value(json_object_get(*out, "id")), id);
	}
	return rc;
}

static int be_job_launch(void *arg, const char *id, json_t **out, char *why, size_t whylen)
{
	struct manager *m = arg;
	/* The launch is acknowledged once it is durable, like a submission; so is a refusal's record. */
	return ack_durable(m, jobs_launch(m->jobs, id, out, why, whylen), out, "launch", why, whylen);
}

static int be_job_dispatch(void *arg, const char *id, const char *body, size_t len, const char *tenant,
			   json_t **out, char *why, size_t whylen)
{
	struct manager *m = arg;
	/* Acknowledged means durable, as for a submission. */
	return ack_durable(m, jobs_dispatch(m->jobs, id, body, len, tenant, out, why, whylen), out,
			   "dispatch", why, whylen);
}

static json_t *be_jobs_list(void *arg, const struct jobs_query *q)
{
	return jobs_list(((struct manager *)arg)->jobs, q);
}

static const char *be_job_tenant(void *arg, const char *id)
{
	return jobs_job_tenant(((struct manager *)arg)->jobs, id);
}

static const char *be_task_tenant(void *arg, const char *task_id)
{
	return jobs_task_tenant(((struct manager *)arg)->jobs, task_id);
}

static bool be_blob_visible(void *arg, const uint8_t digest[SHA256_LEN], const char *tenant)
{
	return jobs_blob_visible(((struct manager *)arg)->jobs, digest, tenant);
}

static uint64_t be_job_index(void *arg, const char *id)
{
	return jobs_job_index(((struct manager *)arg)->jobs, id);
}

static uint64_t be_jobs_index_now(void *arg)
{
	return jobs_index_now(((struct manager *)arg)->jobs);
}

static json_t *be_job_get(void *arg, const char *id)
{
	return jobs_get(((struct manager *)arg)->jobs, id);
}

static int be_job_cancel(void *arg, const char *id, json_t **out, const char **why)
{
	struct manager *m = arg;
	int rc = jobs_cancel(m->jobs, id, out, why);
	if (rc == 0 && store_flush(m->store) != 0) {
		*why = "could not persist the cancellation";
		json_decref(*out);
		*out = NULL;
		return SS_ESTORE;
	}
	return rc;
}

static json_t *be_job_tasks(void *arg, const char *id)
{
	return jobs_tasks(((struct manager *)arg)->jobs, id);
}

static int be_job_explain(void *arg, const char *id, const char *task, json_t **out, char *why,
			  size_t whylen)
{
	return jobs_explain(((struct manager *)arg)->jobs, id, task, out, why, whylen);
}

static int be_task_output(void *arg, const char *task_id, const uint64_t from[2], json_t **out)
{
	return jobs_task_output(((struct manager *)arg)->jobs, task_id, from, out);
}

static json_t *be_task_logs(void *arg, const char *task_id)
{
	return jobs_task_logs(((struct manager *)arg)->jobs, task_id);
}

static json_t *be_blob_replicas(void *arg, const uint8_t digest[SHA256_LEN])
{
	return jobs_blob_replicas(((struct manager *)arg)->jobs, digest);
}

static void be_blob_added(void *arg, const uint8_t digest[SHA256_LEN], uint64_t size)
{
	struct manager *m = arg;
	jobs_blob_added(m->jobs, digest, size);
	/* A tenant's upload record is durable before the upload is acknowledged. */
	if (store_pending(m->store) && store_flush(m->store) != 0)
		log_error("store: could not persist an upload record");
}

/* ---- start-up --------------------------------------------------------- */

static int load_node_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct manager *m = arg;
	json_error_t err;
	json_t *j = json_loadb(value, len, 0, &err);
	if (!j || !ident_valid(key)) {
		log_error("store: node record %s is corrupt: %s", key, j ? "bad id" : err.text);
		json_decref(j);
		return 0;
	}
	struct node *n = registry_upsert(m->reg, key);
	if (node_from_json(n, j) != 0)
		log_error("store: node record %s has no valid state", key);
	json_decref(j);
	/* Give every node one detection period to reconnect after a restart. */
	n->last_hb_mono = uv_now(m->loop);
	return 0;
}

static int load_revoked_cb(void *arg, const char *key, const char *value, size_t len)
{
	struct manager *m = arg;
	(void)len;
	int64_t exp = strtoll(value, NULL, 10);
	if (exp < time_wall_ms() || strlen(key) > 40) {
		store_del(m->store, "revoked", key);
		return 0;
	}
	if (m->n_revoked == m->cap_revoked) {
		m->cap_revoked = m->cap_revoked ? 2 * m->cap_revoked : 64;
		m->revoked = xrealloc(m->revoked, m->cap_revoked * sizeof *m->revoked);
	}
	snprintf(m->revoked[m->n_revoked].serial, sizeof m->revoked[0].serial, "%s", key);
	m->revoked[m->n_revoked].expires_ms = exp;
	m->n_revoked++;
	return 0;
}

static void add_unique(const char **list, size_t *n, size_t cap, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(list[i], s))
			return;
	if (*n < cap)
		list[(*n)++] = s;
}

/* Issues a fresh manager certificate for every local address and the bind hosts. */
/*
 * Loads the blob-grant key and its certificate from the data directory
 * (grant.key 0600, grant.pem), or makes them: a new P-256 key and a
 * certificate from the swarm CA with the common name GRANT_CN, valid ten
 * years. A certificate the CA does not verify is replaced.
 */
static int load_grant_identity(struct manager *m)
{
	char *kpath = xasprintf("%s/grant.key", m->cfg.data_dir);
	char *cpath = xasprintf("%s/grant.pem", m->cfg.data_dir);
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	unsigned char *der = NULL;
	int rc = 0;
	bool have = access(kpath, F_OK) == 0 && access(cpath, F_OK) == 0;
	if (!have || pem_read_key(kpath, &key) != 0 || pem_read_cert(cpath, &cert) != 0 ||
	    grant_cert_check(cert, ca_cert(m->ca)) != 0 || X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		EVP_PKEY_free(key);
		X509_free(cert);
		key = NULL;
		cert = NULL;
		struct ca_issue_opts o = {.common_name = GRANT_CN, .lifetime_s = 10ll * 365 * 86400};
		if ((rc = crypto_gen_key(&key)) || (rc = ca_issue(m->ca, key, &o, &cert)) ||
		    (rc = pem_write_key(kpath, key)) || (rc = pem_write_cert(cpath, cert, 0644)))
			goto out;
		log_info("created the blob-grant key %s", kpath);
	}
	int len = i2d_X509(cert, &der);
	if (len <= 0) {
		rc = SS_ECRYPTO;
		goto out;
	}
	m->grant_cert_der = xmalloc((size_t)len);
	memcpy(m->grant_cert_der, der, (size_t)len);
	m->grant_cert_len = (size_t)len;
	m->grant_key = key;
	key = NULL;
out:
	OPENSSL_free(der);
	EVP_PKEY_free(key);
	X509_free(cert);
	free(kpath);
	free(cpath);
	return rc;
}

static int make_server_identity(struct manager *m, X509 **cert, EVP_PKEY **key)
{
	int rc;
	char host1[256] = "", host2[256] = "";
	uint16_t port;
	const char *dns[8], *ips[64];
	size_t nd = 0, ni = 0;
	char hostname[256] = "";
	char (*ipbuf)[INET6_ADDRSTRLEN] = xcalloc(64, sizeof *ipbuf);
	struct ifaddrs *ifa = NULL;

	add_unique(dns, &nd, 8, TLS_MANAGER_NAME);
	add_unique(dns, &nd, 8, "localhost");
	if (gethostname(hostname, sizeof hostname - 1) == 0 && ident_valid(hostname))
		add_unique(dns, &nd, 8, hostname);
	add_unique(ips, &ni, 64, "127.0.0.1");
	add_unique(ips, &ni, 64, "::1");
	if (getifaddrs(&ifa) == 0) {
		size_t k = 0;
		for (struct ifaddrs *p = ifa; p && k < 60; p = p->ifa_next) {
			if (!p->ifa_addr)
				continue;
			int fam = p->ifa_addr->sa_family;
			if (fam != AF_INET && fam != AF_INET6)
				continue;
			if (getnameinfo(p->ifa_addr, fam == AF_INET ? sizeof(struct sockaddr_in)
								  : sizeof(struct sockaddr_in6),
					ipbuf[k], INET6_ADDRSTRLEN, NULL, 0, NI_NUMERICHOST) != 0)
				continue;
			if (strchr(ipbuf[k], '%'))
				continue; /* link-local with a scope */
			add_unique(ips, &ni, 64, ipbuf[k]);
			k++;
		}
	}
	struct in6_addr tmp;
	if (addr_split(m->cfg.listen, host1, sizeof host1, &port) == 0 &&
	    (inet_pton(AF_INET, host1, &tmp) == 1 || inet_pton(AF_INET6, host1, &tmp) == 1))
		add_unique(ips, &ni, 64, host1);
	else if (host1[0] && ident_valid(host1))
		add_unique(dns, &nd, 8, host1);
	if (addr_split(m->cfg.api, host2, sizeof host2, &port) == 0 &&
	    (inet_pton(AF_INET, host2, &tmp) == 1 || inet_pton(AF_INET6, host2, &tmp) == 1))
		add_unique(ips, &ni, 64, host2);
	else if (host2[0] && ident_valid(host2))
		add_unique(dns, &nd, 8, host2);
	/* 0.0.0.0 and :: are not addresses a client connects to. */
	size_t w = 0;
	for (size_t i = 0; i < ni; i++)
		if (strcmp(ips[i], "0.0.0.0") != 0 && strcmp(ips[i], "::") != 0)
			ips[w++] = ips[i];
	ni = w;
	dns[nd] = NULL;
	ips[ni] = NULL;
	rc = crypto_gen_key(key);
	if (rc)
		goto out;
	struct ca_issue_opts o = {
		.common_name = TLS_MANAGER_NAME,
		.dns_sans = dns,
		.ip_sans = ips,
		.lifetime_s = 90 * 86400,
		.usage = CA_USAGE_SERVER,
	};
	rc = ca_issue(m->ca, *key, &o, cert);
out:
	if (ifa)
		freeifaddrs(ifa);
	free(ipbuf);
	return rc;
}

/* Creates the admin token on first start. Returns the token (caller frees) or NULL if it existed. */
static int ensure_token(struct manager *m, uint8_t hash[32], char **token_out)
{
	int rc = 0;
	char *path = xasprintf("%s/api-token.sha256", m->cfg.data_dir);
	char *text = NULL;
	*token_out = NULL;
	rc = file_read(path, 256, &text, NULL);
	if (rc == 0) {
		text[strcspn(text, "\r\n")] = '\0';
		rc = hex_decode(text, hash, 32);
		if (rc)
			log_error("%s is corrupt", path);
		goto out;
	}
	if (rc != SS_ENOTFOUND)
		goto out;
	uint8_t raw[32];
	char hex[65];
	rand_bytes(raw, sizeof raw);
	hex_encode(raw, sizeof raw, hex);
	char *token = xasprintf("sst_%s", hex);
	sha256(token, strlen(token), hash);
	char hhex[65];
	hex_encode(hash, 32, hhex);
	char *line = xasprintf("%s\n", hhex);
	rc = file_write_atomic(path, line, strlen(line), 0600);
	free(line);
	if (rc) {
		free(token);
		goto out;
	}
	*token_out = token;
out:
	free(text);
	free(path);
	return rc;
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct manager *m = h->data;
	log_info("received signal %d; shutting down", signum);
	m->stopping = true;
	uv_stop(m->loop);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seeswarm manager --data-dir DIR [--listen HOST:PORT] [--api HOST:PORT]\n"
		"                        [--insecure-sim-attestation] [--heartbeat-interval 500ms]\n"
		"                        [--suspect-after-misses 2] [--down-after 2s] [--reconnect-grace 1s]\n"
		"                        [--client-config PATH | --no-client-config] [--max-agents N]\n"
		"                        [--policy FILE] [--collateral DIR] [--tenant-weight NAME=W]...\n"
		"                        [--job-retention 24h] [--tenant-max-jobs 1000]\n"
		"                        [--tenant-max-upload-bytes 64G] [--tenant-max-cpu NAME=CPU]...\n"
		"                        [--preemption off|tenant|all]\n"
		"\n"
		"  --data-dir DIR              state: swarm CA, certificates, token hash, SQLite store\n"
		"  --listen HOST:PORT          agent listener, mutual TLS 1.3 (default 127.0.0.1:7400)\n"
		"  --api HOST:PORT             HTTPS/JSON API (default 127.0.0.1:7401)\n"
		"  --insecure-sim-attestation  accept simulated (non-hardware) evidence; development only\n"
		"  --heartbeat-interval D      interval agents are told to use (default 500ms)\n"
		"  --suspect-after-misses N    missed heartbeats before a node is suspect (default 2)\n"
		"  --down-after D              silence before a node is down (default 2s)\n"
		"  --reconnect-grace D         a node whose connection closed is down when it is not\n"
		"                              back within D (default 1s)\n"
		"  --policy FILE               appraisal policy (JSON, reloaded on SIGHUP; docs/policy.md)\n"
		"  --collateral DIR            offline cache of vendor roots, CRLs, TCB info, EK CAs\n"
		"  --node-cert-lifetime D      lifetime of node certificates (default 1h)\n"
		"  --tenant-weight NAME=W      a tenant's weight in fair sharing (default 1; repeatable)\n"
		"  --job-retention D           keep finished jobs this long (default 24h; at most\n"
		"                              10,000 finished jobs are kept)\n"
		"  --tenant-max-jobs N         unfinished jobs one tenant token may have (default\n"
		"                              1000; docs/security.md, Tenants)\n"
		"  --tenant-max-upload-bytes S bytes of blobs one tenant token's uploads may hold\n"
		"                              until they expire (default 64G; 0 = no quota)\n"
		"  --tenant-max-cpu NAME=CPU   CPU a tenant's tasks may hold at once (4, 0.5 or 500m;\n"
		"                              *=CPU for every tenant not named; repeatable;\n"
		"                              default: no cap)\n"
		"  --tenant-max-cost NAME=X[/day|/month]\n"
		"                              what a tenant token's jobs may spend, in the unit of\n"
		"                              --price-per-hour, before its submissions are refused:\n"
		"                              in all, or per UTC calendar day or month (*=X for\n"
		"                              every tenant not named; repeatable)\n"
		"  --preemption MODE           whether a task that fits nowhere may stop attempts of\n"
		"                              tasks 10 or more priority points below it: off (the\n"
		"                              default), tenant (its own tenant's only) or all\n"
		"  --replicas N                copies agents keep of each job's inputs and final\n"
		"                              outputs, in distinct zones where possible (default 2;\n"
		"                              0 = only the producer's and the manager's)\n"
		"  --client-config PATH        where to write the CLI config on first start\n"
		"                              (default $SEESWARM_CONFIG or ~/.config/seeswarm/config.json)\n");
}


/*
 * Splits a per-tenant flag's argument NAME=VALUE in place at the '=' (the
 * name stays in argv, which outlives the manager) and returns VALUE, with
 * *name set to NAME, or to NULL for "*" (every tenant not named) when star
 * is allowed. Returns NULL when there is no '=' or NAME is no tenant name,
 * after saying so when it is the name.
 */
static const char *tenant_arg(char *arg, const char *flag, bool star, const char **name)
{
	char *eq = strchr(arg, '=');
	*name = NULL;
	if (!eq)
		return NULL;
	*eq = '\0';
	if (star && !strcmp(arg, "*"))
		return eq + 1;
	if (!ident_valid(arg)) {
		fprintf(stderr, "manager: %s: \"%s\" is not a tenant name\n", flag, arg);
		return NULL;
	}
	*name = arg;
	return eq + 1;
}
static int parse_args(int argc, char **argv, struct manager_config *cfg)
{
	enum { O_INSECURE = 256, O_HB, O_MISSES, O_DOWN, O_GRACE, O_CC, O_NOCC, O_MAX, O_POLICY, O_COLL, O_NCERT,
	       O_TENANT, O_RETENTION, O_REPLICAS, O_TENANT_MAX_JOBS, O_PREEMPTION,
	       O_TENANT_MAX_UPLOAD, O_TENANT_MAX_CPU, O_TENANT_MAX_COST };
	static const struct option opts[] = {
		{"data-dir", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"api", required_argument, NULL, 'a'},
		{"insecure-sim-attestation", no_argument, NULL, O_INSECURE},
		{"heartbeat-interval", required_argument, NULL, O_HB},
		{"suspect-after-misses", required_argument, NULL, O_MISSES},
		{"down-after", required_argument, NULL, O_DOWN},
		{"reconnect-grace", required_argument, NULL, O_GRACE},
		{"client-config", required_argument, NULL, O_CC},
		{"no-client-config", no_argument, NULL, O_NOCC},
		{"max-agents", required_argument, NULL, O_MAX},
		{"policy", required_argument, NULL, O_POLICY},
		{"collateral", required_argument, NULL, O_COLL},
		{"node-cert-lifetime", required_argument, NULL, O_NCERT},
		{"tenant-weight", required_argument, NULL, O_TENANT},
		{"job-retention", required_argument, NULL, O_RETENTION},
		{"tenant-max-jobs", required_argument, NULL, O_TENANT_MAX_JOBS},
		{"preemption", required_argument, NULL, O_PREEMPTION},
		{"tenant-max-upload-bytes", required_argument, NULL, O_TENANT_MAX_UPLOAD},
		{"tenant-max-cpu", required_argument, NULL, O_TENANT_MAX_CPU},
		{"tenant-max-cost", required_argument, NULL, O_TENANT_MAX_COST},
		{"replicas", required_argument, NULL, O_REPLICAS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:l:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			cfg->data_dir = optarg;
			break;
		case 'l':
			cfg->listen = optarg;
			break;
		case 'a':
			cfg->api = optarg;
			break;
		case O_INSECURE:
			cfg->insecure_sim = true;
			break;
		case O_HB:
			if (parse_duration_ms(optarg, &v) || v < 50 || v > 600000) {
				fprintf(stderr, "manager: --heartbeat-interval must be 50ms..10m\n");
				return 2;
			}
			cfg->heartbeat_ms = (uint32_t)v;
			break;
		case O_MISSES:
			if (parse_size(optarg, &v) || v < 1 || v > 100) {
				fprintf(stderr, "manager: --suspect-after-misses must be 1..100\n");
				return 2;
			}
			cfg->suspect_misses = (uint32_t)v;
			break;
		case O_DOWN:
			if (parse_duration_ms(optarg, &v) || v < 100 || v > 3600000) {
				fprintf(stderr, "manager: --down-after must be 100ms..1h\n");
				return 2;
			}
			cfg->down_ms = (uint32_t)v;
			break;
		case O_GRACE:
			if (parse_duration_ms(optarg, &v) || v < 100 || v > 3600000) {
				fprintf(stderr, "manager: --reconnect-grace must be 100ms..1h\n");
				return 2;
			}
			cfg->grace_ms = (uint32_t)v;
			break;
		case O_CC:
			cfg->client_config = optarg;
			break;
		case O_NOCC:
			cfg->client_config = "";
			break;
		case O_POLICY:
			cfg->policy_path = optarg;
			break;
		case O_COLL:
			cfg->collateral_dir = optarg;
			break;
		case O_NCERT:
			if (parse_duration_ms(optarg, &v) || v < 60000 || v > 7ull * 86400000) {
				fprintf(stderr, "manager: --node-cert-lifetime must be 1m..7d\n");
				return 2;
			}
			cfg->node_cert_s = (uint32_t)(v / 1000);
			break;
		case O_REPLICAS:
			if (parse_size(optarg, &v) || v > REPLICAS_MAX) {
				fprintf(stderr, "manager: --replicas must be 0..%d\n", REPLICAS_MAX);
				return 2;
			}
			cfg->replicas = (unsigned)v + 1; /* 0 means "not given" */
			break;
		case O_TENANT_MAX_JOBS:
			if (parse_size(optarg, &v) || v < 1 || v > 100000) {
				fprintf(stderr, "manager: --tenant-max-jobs must be 1..100000\n");
				return 2;
			}
			cfg->tenant_max_jobs = (uint32_t)v;
			break;
		case O_PREEMPTION:
			if (!strcmp(optarg, "off"))
				cfg->preemption = JOBS_PREEMPT_OFF;
			else if (!strcmp(optarg, "tenant"))
				cfg->preemption = JOBS_PREEMPT_TENANT;
			else if (!strcmp(optarg, "all"))
				cfg->preemption = JOBS_PREEMPT_ALL;
			else {
				fprintf(stderr, "manager: --preemption must be off, tenant or all\n");
				return 2;
			}
			break;
		case O_TENANT_MAX_UPLOAD:
			if (parse_size(optarg, &v)) {
				fprintf(stderr, "manager: --tenant-max-upload-bytes: expected a size such as 64G, or 0\n");
				return 2;
			}
			cfg->tenant_upload_bytes = v ? v : UINT64_MAX;
			break;
		case O_RETENTION:
			if (parse_duration_ms(optarg, &v) || v < 1000 || v > 365ull * 86400000) {
				fprintf(stderr, "manager: --job-retention must be 1s..365d\n");
				return 2;
			}
			cfg->job_retention_ms = v;
			break;
		case O_TENANT_MAX_COST: {
			const char *name, *val = tenant_arg(optarg, "--tenant-max-cost", true, &name);
			char *end = NULL;
			double x = val ? strtod(val, &end) : 0;
			enum jobs_budget_period per = JOBS_BUDGET_TOTAL;
			if (end && !strcmp(end, "/day"))
				per = JOBS_BUDGET_DAY;
			else if (end && !strcmp(end, "/month"))
				per = JOBS_BUDGET_MONTH;
			else if (end && *end)
				end = NULL;
			if (!val || !end || end == val || !(x > 0 && x <= JOBSPEC_MAX_COST) ||
			    cfg->n_budgets == MAX_TENANT_WEIGHTS) {
				fprintf(stderr, "manager: --tenant-max-cost takes NAME=X or *=X with 0 < X <= 1e12, "
						"optionally /day or /month (at most %d)\n", MAX_TENANT_WEIGHTS);
				return 2;
			}
			cfg->budget_names[cfg->n_budgets] = name;
			cfg->budget_periods[cfg->n_budgets] = per;
			cfg->budgets[cfg->n_budgets++] = x;
			break;
		}
		case O_TENANT_MAX_CPU: {
			const char *name, *val = tenant_arg(optarg, "--tenant-max-cpu", true, &name);
			uint64_t mc = 0;
			if (!val || jobspec_parse_cpu(val, &mc) != 0 || mc < 1 || cfg->n_caps == MAX_TENANT_WEIGHTS) {
				fprintf(stderr, "manager: --tenant-max-cpu takes NAME=CPU or *=CPU, CPU as 4, "
						"0.5 or 500m (at most %d)\n", MAX_TENANT_WEIGHTS);
				return 2;
			}
			cfg->cap_names[cfg->n_caps] = name;
			cfg->caps[cfg->n_caps++] = mc;
			break;
		}
		case O_TENANT: {
			const char *name, *val = tenant_arg(optarg, "--tenant-weight", false, &name);
			char *end = NULL;
			double w = val ? strtod(val, &end) : 0;
			if (!val || end == val || *end || !(w > 0 && w <= 1000) || cfg->n_tenants == MAX_TENANT_WEIGHTS) {
				fprintf(stderr, "manager: --tenant-weight takes NAME=W with 0 < W <= 1000 "
						"(at most %d tenants)\n", MAX_TENANT_WEIGHTS);
				return 2;
			}
			cfg->tenant_names[cfg->n_tenants] = name;
			cfg->tenant_weights[cfg->n_tenants++] = w;
			break;
		}
		case O_MAX:
			if (parse_size(optarg, &v) || v < 1 || v > 1000000) {
				fprintf(stderr, "manager: --max-agents must be 1..1000000\n");
				return 2;
			}
			cfg->max_conns = (uint32_t)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "manager: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!cfg->data_dir) {
		fprintf(stderr, "manager: --data-dir is required\n");
		usage(stderr);
		return 2;
	}
	return 0;
}

static int bind_listener(struct manager *m)
{
	char host[256];
	uint16_t port;
	struct sockaddr_storage ss;
	if (addr_split(m->cfg.listen, host, sizeof host, &port) != 0) {
		log_error("--listen '%s' is not HOST:PORT", m->cfg.listen);
		return SS_ECONFIG;
	}
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		log_error("--listen host '%s' must be an IP address", host);
		return SS_ECONFIG;
	}
	uv_tcp_init(m->loop, &m->listener);
	m->listener.data = m;
	int r = uv_tcp_bind(&m->listener, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&m->listener, 4096, on_connection);
	if (r != 0) {
		log_error("cannot listen on %s: %s", m->cfg.listen, uv_strerror(r));
		return SS_EIO;
	}
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void close_session_cb(void *arg, struct node *n)
{
	(void)arg;
	struct session *s = n->session;
	if (s && s->conn)
		conn_close(s->conn, 0, "manager shutting down");
}

int manager_main(int argc, char **argv)
{
	struct manager *m = xcalloc(1, sizeof *m);
	struct manager_config *cfg = &m->cfg;
	int rc = 1;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char *token = NULL, *ca_path = NULL, *db_path = NULL, *cert_pem = NULL, *key_pem = NULL;
	bool loop_ready = false;

	cfg->listen = "127.0.0.1:7400";
	cfg->api = "127.0.0.1:7401";
	cfg->heartbeat_ms = 500;
	cfg->suspect_misses = 2;
	cfg->down_ms = 2000;
	cfg->grace_ms = 1000;
	cfg->max_conns = 50000;
	cfg->node_cert_s = 3600;
	int prc = parse_args(argc, argv, cfg);
	if (prc) {
		rc = prc == 1 ? 0 : 2;
		goto out;
	}
	log_init("manager", LOG_INFO);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	m->commit_tail = &m->commit_head;
	m->started_ms = time_wall_ms();
	/* Node indexes after a restart are larger than those before it (unless the clock went back). */
	m->nodes_index = (uint64_t)m->started_ms * 1000u;
	if (cfg->policy_path) {
		char why[300];
		if (policy_load(cfg->policy_path, cfg->insecure_sim, &m->policy, why, sizeof why) != 0) {
			log_error("%s", why);
			goto out;
		}
	} else {
		m->policy = policy_default(cfg->insecure_sim);
	}
	log_info("policy: %s", policy_source(m->policy));
	if (cfg->down_ms <= cfg->heartbeat_ms) {
		log_error("--down-after must be longer than the heartbeat interval");
		goto out;
	}
	if (dir_ensure(cfg->data_dir, 0700) != 0 || chmod(cfg->data_dir, 0700) != 0) {
		log_error("cannot create data dir %s", cfg->data_dir);
		goto out;
	}
	bool created = false;
	if (ca_init_dir(cfg->data_dir, &created) != 0 || ca_load(&m->ca, cfg->data_dir) != 0) {
		log_error("cannot create or load the swarm CA in %s", cfg->data_dir);
		goto out;
	}
	if (created)
		log_info("created the swarm CA in %s", cfg->data_dir);
	if (load_grant_identity(m) != 0) {
		log_error("cannot create or load the blob-grant key in %s", cfg->data_dir);
		goto out;
	}
	ca_path = xasprintf("%s/ca.pem", cfg->data_dir);
	if (make_server_identity(m, &cert, &key) != 0) {
		log_error("cannot issue the manager certificate");
		goto out;
	}
	char *mpath = xasprintf("%s/manager.pem", cfg->data_dir);
	pem_write_cert(mpath, cert, 0644);
	free(mpath);
	if (tls_ctx_new(&m->tls, true, ca_path, cert, key) != 0)
		goto out;
	tls_ctx_set_offload(m->tls, true);
	uint8_t token_hash[32];
	if (ensure_token(m, token_hash, &token) != 0) {
		log_error("cannot create or read the API token");
		goto out;
	}
	db_path = xasprintf("%s/state.db", cfg->data_dir);
	if (store_open(&m->store, db_path) != 0) {
		log_error("cannot open the store %s", db_path);
		goto out;
	}
	m->reg = registry_new();
	m->loop = xmalloc(sizeof *m->loop);
	uv_loop_init(m->loop);
	loop_ready = true;
	if (store_scan(m->store, "nodes", load_node_cb, m) != 0) {
		log_error("cannot read nodes from the store");
		goto out;
	}
	if (registry_count(m->reg))
		log_info("recovered %zu nodes from the store", registry_count(m->reg));
	if (store_scan(m->store, "revoked", load_revoked_cb, m) != 0) {
		log_error("cannot read revocations from the store");
		goto out;
	}
	char *bdir = xasprintf("%s/blobs", cfg->data_dir);
	char *bkey = xasprintf("%s/blob.key", cfg->data_dir);
	uint8_t blob_key[BLOBSTORE_KEY_LEN];
	int brc = blobstore_key_load(bkey, blob_key);
	if (brc == 0)
		brc = blobstore_open(&m->blobs, bdir, blob_key, 0);
	OPENSSL_cleanse(blob_key, sizeof blob_key);
	if (brc)
		log_error("cannot open the blob store %s: %s", bdir, ss_strerror(brc));
	free(bdir);
	free(bkey);
	if (brc)
		goto out;
	if (tenants_new(&m->tenants, m->store) != 0) {
		log_error("cannot read tenant tokens from the store");
		goto out;
	}
	if (audit_open(&m->audit, m->store) != 0) {
		log_error("cannot read the audit trail from the store");
		goto out;
	}
	if (m->cfg.tenant_upload_bytes)
		tenants_set_upload_bytes_max(m->tenants, m->cfg.tenant_upload_bytes == UINT64_MAX
								 ? 0
								 : m->cfg.tenant_upload_bytes);
	struct jobs_env je = {
		.tenants = m->tenants,
		.arg = m,
		.loop = m->loop,
		.store = m->store,
		.blobs = m->blobs,
		.reg = m->reg,
		.send = je_send,
		.connected = je_connected,
		.grant_key = m->grant_key,
	};
	uint64_t seed;
	rand_bytes(&seed, sizeof seed);
	if (jobs_new(&m->jobs, &je, seed) != 0)
		goto out;
	if (m->cfg.job_retention_ms)
		jobs_set_retention(m->jobs, (int64_t)m->cfg.job_retention_ms);
	if (m->cfg.tenant_max_jobs)
		jobs_set_tenant_max_jobs(m->jobs, m->cfg.tenant_max_jobs);
	jobs_set_preemption(m->jobs, m->cfg.preemption);
	if (m->cfg.replicas)
		jobs_set_replicas(m->jobs, m->cfg.replicas - 1);
	for (size_t i = 0; i < m->cfg.n_tenants; i++)
		jobs_set_tenant_weight(m->jobs, m->cfg.tenant_names[i], m->cfg.tenant_weights[i]);
	for (size_t i = 0; i < m->cfg.n_caps; i++)
		jobs_set_tenant_max_cpu(m->jobs, m->cfg.cap_names[i], m->cfg.caps[i]);
	for (size_t i = 0; i < m->cfg.n_budgets; i++)
		jobs_set_tenant_max_cost(m->jobs, m->cfg.budget_names[i], m->cfg.budgets[i],
					 m->cfg.budget_periods[i]);
	if (bind_listener(m) != 0)
		goto out;
	cert_pem = pem_cert_string(cert);
	key_pem = pem_key_string(key);
	struct api_opts ao = {
		.listen = cfg->api,
		.cert_pem = cert_pem,
		.key_pem = key_pem,
		.backend = {
			.arg = m,
			.nodes_list = be_nodes_list,
			.nodes_index = be_nodes_index,
			.node_get = be_node_get,
			.node_drain = be_node_drain,
			.node_attest = be_node_attest,
			.metrics = be_metrics,
			.health = be_health,
			.tenants_list = be_tenants,
			.job_submit = be_job_submit,
			.job_plan = be_job_plan,
			.jobs_list = be_jobs_list,
			.job_get = be_job_get,
			.job_index = be_job_index,
			.jobs_index_now = be_jobs_index_now,
			.job_cancel = be_job_cancel,
			.job_rerun = be_job_rerun,
			.job_launch = be_job_launch,
			.job_dispatch = be_job_dispatch,
			.job_tasks = be_job_tasks,
			.job_explain = be_job_explain,
			.task_logs = be_task_logs,
			.task_output = be_task_output,
			.blob_added = be_blob_added,
			.blob_replicas = be_blob_replicas,
			.job_tenant = be_job_tenant,
			.task_tenant = be_task_tenant,
			.blob_visible = be_blob_visible,
		},
		.blobs = m->blobs,
		.tenants = m->tenants,
		.audit = m->audit,
	};
	memcpy(ao.token_hash, token_hash, 32);
	if (api_start(&m->api, m->loop, &ao) != 0) {
		log_error("cannot start the API on %s", cfg->api);
		goto out;
	}
	if (token) {
		const char *ccpath = cfg->client_config ? cfg->client_config : getenv("SEESWARM_CONFIG");
		char *dflt = NULL;
		if (!ccpath || !*ccpath)
			ccpath = cfg->client_config ? NULL : (dflt = client_config_default_path());
		char host[256];
		uint16_t port;
		char addr[300];
		addr_split(cfg->api, host, sizeof host, &port);
		/* A wildcard bind is reached locally through loopback. */
		const char *reach = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
				    : strcmp(host, "::") == 0	  ? "::1"
								  : host;
		snprintf(addr, sizeof addr, strchr(reach, ':') ? "[%s]:%u" : "%s:%u", reach,
			 (unsigned)api_port(m->api));
		char *abs_ca = realpath(ca_path, NULL);
		printf("seeswarm manager: first start, new swarm in %s\n", cfg->data_dir);
		printf("API token (shown once; the manager keeps only its hash):\n  %s\n", token);
		if (ccpath && client_config_write(ccpath, addr, token, abs_ca ? abs_ca : ca_path) == 0)
			printf("CLI config written to %s (mode 0600)\n", ccpath);
		fflush(stdout);
		free(abs_ca);
		free(dflt);
	}
	uv_timer_init(m->loop, &m->detector);
	m->detector.data = m;
	uv_timer_start(&m->detector, on_detector, DETECTOR_PERIOD_MS, DETECTOR_PERIOD_MS);
	uv_timer_init(m->loop, &m->lag_timer);
	m->lag_timer.data = m;
	m->lag_expect_ns = uv_hrtime() + LAG_PERIOD_MS * 1000000ull;
	uv_timer_start(&m->lag_timer, on_lag, LAG_PERIOD_MS, LAG_PERIOD_MS);
	uv_prepare_init(m->loop, &m->committer);
	m->committer.data = m;
	uv_prepare_start(&m->committer, on_prepare);
	uv_signal_init(m->loop, &m->sig_term);
	m->sig_term.data = m;
	uv_signal_start(&m->sig_term, on_signal, SIGTERM);
	uv_signal_init(m->loop, &m->sig_int);
	m->sig_int.data = m;
	uv_signal_start(&m->sig_int, on_signal, SIGINT);
	uv_signal_init(m->loop, &m->sig_hup);
	m->sig_hup.data = m;
	uv_signal_start(&m->sig_hup, on_sighup, SIGHUP);
	uv_timer_init(m->loop, &m->reattester);
	m->reattester.data = m;
	uv_timer_start(&m->reattester, on_reattester, 250, 250);
	log_info("listening for agents on %s (mutual TLS 1.3), API on https://%s%s", cfg->listen,
		 cfg->api, cfg->insecure_sim ? "; INSECURE simulated attestation allowed" : "");
	uv_run(m->loop, UV_RUN_DEFAULT);

	/* Shutdown: persist heartbeat data, close sessions, flush, close handles. */
	m->stopping = true;
	registry_each(m->reg, save_dirty, m);
	registry_each(m->reg, close_session_cb, NULL);
	on_prepare(&m->committer);
	api_stop(m->api, NULL, NULL);
	m->api = NULL;
	uv_walk(m->loop, close_walk, NULL);
	uv_run(m->loop, UV_RUN_DEFAULT);
	on_prepare(&m->committer);
	rc = 0;
out:
	if (loop_ready) {
		if (m->api) {
			api_stop(m->api, NULL, NULL);
			m->api = NULL;
		}
		uv_walk(m->loop, close_walk, NULL);
		uv_run(m->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(m->loop) != 0)
			log_warn("loop closed with handles still open");
		free(m->loop);
	}
	jobs_free(m->jobs);
	tenants_free(m->tenants);
	audit_close(m->audit);
	blobstore_close(m->blobs);
	store_close(m->store);
	registry_free(m->reg);
	policy_unref(m->policy);
	free(m->revoked);
	tls_ctx_free(m->tls);
	ca_free(m->ca);
	EVP_PKEY_free(m->grant_key);
	free(m->grant_cert_der);
	X509_free(cert);
	EVP_PKEY_free(key);
	free(token);
	free(ca_path);
	free(db_path);
	free(cert_pem);
	free(key_pem);
	free(m);
	return rc;
}
