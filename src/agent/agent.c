/* agent.c - the agent daemon: join, attest, heartbeat, reconnect. */
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "agent/agent.h"
#include "agent/peer.h"
#include "agent/runner.h"
#include "agent/sysinfo.h"
#include "attest/attest.h"
#include "attest/ca.h"
#include "attest/tpm.h"
#include "core/core.h"
#include "data/grant.h"
#include "net/conn.h"
#include "net/msg.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 5000
#define PEER_PROBE_MS 5000 /* how often round-trip times to peers are measured */
#define AGENT_LINGER_MS 1000 /* how long a stopping agent waits for the manager to close after its goodbye */

enum agent_state { A_IDLE, A_CONNECTING, A_HELLO, A_EVIDENCE, A_ADMITTED };

struct agent {
	const char *join;
	const char *data_dir;
	const char *advertise;
	const char *peer_listen;         /* --peer-listen; NULL = the address facing the manager */
	char peer_addr[80];              /* the bound peer endpoint ("" until listening) */
	char *ca_path;
	EVP_PKEY *grant_key;             /* the manager's blob-grant key, from its certificate in Admitted */
	struct peer *peer;               /* blob transfers with other agents; NULL while stopping */
	const char *labels_k[MSG_MAX_LABELS];
	const char *labels_v[MSG_MAX_LABELS];
	size_t n_labels;
	double price;
	bool insecure_sim;
	bool replay_evidence;            /* --insecure-test-replay-evidence (tests only) */
	uint8_t *first_ev;               /* the first evidence produced, kept for the replay */
	size_t first_ev_len;
	const char *attester_name;   /* --attester; NULL = sim with the insecure flag, else tpm */
	const char *tcti;
	const char *pcrs;
	const struct attester *attester; /* generic attesters (sim) */
	struct tpm_attester *tpm;        /* the tpm attester */
	struct tpm_pcr_selection pcr_sel;
	X509 *node_cert;                 /* the swarm's node certificate for our key, or NULL */
	char node_serial[41];
	bool using_node_cert;            /* the current connection presents node_cert */
	uint64_t revoked_seen;
	uint8_t *identity;               /* tpm identity container sent in Hello */
	size_t identity_len;
	char evtype[16];

	uv_loop_t loop;
	uv_timer_t hb_timer, retry_timer;
	uv_signal_t sig_term, sig_int;
	struct tls_ctx *tls;
	X509 *cert;
	EVP_PKEY *key;
	uint8_t *spki;
	size_t spki_len;
	char id[64];
	struct sockaddr_storage addr;

	struct conn *conn;
	enum agent_state st;
	uint32_t hb_ms;
	uint64_t hb_seq;
	uint64_t last_ack;
	uint32_t backoff_ms;
	uint32_t retry_hint_ms;
	bool stopping;
	char state[16];
	struct sysinfo_caps caps;
	struct sysinfo_load_state ls;
	uint64_t admissions;
	struct runner *runner;           /* runs tasks; NULL only while starting or stopping */
	uint32_t max_tasks;              /* --max-tasks; 0 = 8 x cores (at most 126) */
	int warm_sandboxes;              /* --warm-sandboxes; -1 = the default (2) */
	uint64_t store_max;              /* --store-max; UINT64_MAX = the default (a quarter of the disk) */
	uint8_t attest_digest[32];       /* from the node certificate, for receipts */
	bool has_attest_digest;
};

static void schedule_reconnect(struct agent *a);

static char *node_cert_path(const struct agent *a)
{
	return xasprintf("%s/node.pem", a->data_dir);
}

static void drop_node_cert(struct agent *a, const char *why)
{
	if (!a->node_cert)
		return;
	log_warn("dropping node certificate %s: %s", a->node_serial, why);
	X509_free(a->node_cert);
	a->node_cert = NULL;
	a->node_serial[0] = '\0';
	if (a->peer)
		peer_set_identity(a->peer, NULL, NULL);
	char *p = node_cert_path(a);
	unlink(p);
	free(p);
}

/* Accepts a node certificate only for our own id and our own key. Takes ownership of cert. */
static void adopt_node_cert(struct agent *a, X509 *cert, bool save)
{
	char cn[64] = "";
	if (crypto_cert_cn(cert, cn, sizeof cn) != 0 || strcmp(cn, a->id) != 0 ||
	    EVP_PKEY_eq(X509_get0_pubkey(cert), a->key) != 1) {
		log_warn("ignoring a node certificate that is not for %s and this key", a->id);
		X509_free(cert);
		return;
	}
	if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0) {
		X509_free(cert);
		return;
	}
	X509_free(a->node_cert);
	a->node_cert = cert;
	cert_serial_hex(cert, a->node_serial, sizeof a->node_serial);
	if (save) {
		char *p = node_cert_path(a);
		if (pem_write_cert(p, cert, 0644) != 0)
			log_warn("cannot save %s", p);
		free(p);
		log_info("node certificate %s received (attested key, valid 1h; renewed at each re-attestation)",
			 a->node_serial);
	}
}

/* Receipts are signed with the node key under the newest certificate we hold. */
static void refresh_identity(struct agent *a)
{
	if (!a->runner)
		return;
	a->has_attest_digest = a->node_cert && cert_attestation_digest(a->node_cert, a->attest_digest) == 0;
	/* Peers accept only node certificates, so the endpoint presents ours or nothing. */
	if (a->peer && peer_set_identity(a->peer, a->has_attest_digest ? a->node_cert : NULL,
					 a->key) != 0)
		log_warn("peer endpoint: cannot use the node certificate");
	runner_set_identity(a->runner, a->key, a->node_cert ? a->node_cert : a->cert,
			    a->has_attest_digest ? a->attest_digest : NULL);
}

static void take_node_cert_der(struct agent *a, const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)len);
	if (!cert || p != der + len) {
		X509_free(cert);
		log_warn("ignoring a malformed node certificate");
		return;
	}
	adopt_node_cert(a, cert, true);
	refresh_identity(a);
}

/*
 * Adopts the manager's blob-grant key from its certificate, which must
 * verify against our ca.pem. Without it, peers' BlobGets are refused.
 */
static void take_grant_cert_der(struct agent *a, const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *cert = len ? d2i_X509(NULL, &p, (long)len) : NULL;
	X509 *ca = NULL;
	EVP_PKEY *key = NULL;
	if (!cert || p != der + len || pem_read_cert(a->ca_path, &ca) != 0 ||
	    grant_cert_check(cert, ca) != 0) {
		log_warn("the manager sent no valid blob-grant certificate: peers' blob requests are refused");
		goto out;
	}
	key = X509_get_pubkey(cert); /* up-referenced */
	if (a->grant_key && key && EVP_PKEY_eq(a->grant_key, key) == 1)
		goto out;
	if (a->runner)
		runner_set_grant_key(a->runner, key);
	EVP_PKEY_free(a->grant_key);
	a->grant_key = key;
	key = NULL;
out:
	EVP_PKEY_free(key);
	X509_free(ca);
	X509_free(cert);
}

static void send_hello(struct agent *a)
{
	Seeswarm__V1__Hello h = SEESWARM__V1__HELLO__INIT;
	Seeswarm__V1__Capabilities c = SEESWARM__V1__CAPABILITIES__INIT;
	Seeswarm__V1__Label lab[MSG_MAX_LABELS];
	Seeswarm__V1__Label *labp[MSG_MAX_LABELS];
	char *evtypes[1] = {a->evtype};
	h.protocol_version = PROTOCOL_VERSION;
	h.agent_id = a->id;
	h.agent_version = SS_VERSION;
	c.cpu_cores = a->caps.cpu_cores;
	c.max_tasks = a->max_tasks;
	c.memory_bytes = a->caps.memory_bytes;
	c.disk_bytes = a->caps.disk_bytes;
	c.features = a->caps.features;
	c.n_features = a->caps.n_features;
	c.tee_type = a->evtype;
	c.hostname = a->caps.hostname;
	h.capabilities = &c;
	for (size_t i = 0; i < a->n_labels; i++) {
		seeswarm__v1__label__init(&lab[i]);
		lab[i].key = (char *)a->labels_k[i];
		lab[i].value = (char *)a->labels_v[i];
		labp[i] = &lab[i];
	}
	h.labels = labp;
	h.n_labels = a->n_labels;
	h.price_per_hour = a->price;
	h.evidence_types = evtypes;
	h.n_evidence_types = 1;
	h.advertise_addr = (char *)(a->advertise ? a->advertise : a->peer_addr);
	h.attester_identity.data = a->identity;
	h.attester_identity.len = a->identity_len;
	size_t n_refs = 0;
	Seeswarm__V1__TaskRef **refs = a->runner ? runner_task_refs(a->runner, &n_refs) : NULL;
	h.tasks = refs;
	h.n_tasks = n_refs;
	a->st = A_HELLO;
	conn_send(a->conn, MSG_HELLO, &h.base);
	runner_free_refs(refs, n_refs);
}

/*
 * Starts the peer endpoint once: on --peer-listen, else on the local address
 * of the connection to the manager (the interface other agents can reach
 * too), with a free port.
 */
static void start_peer_listener(struct agent *a, struct conn *c)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (!a->peer || a->peer_addr[0] || (a->peer_listen && !strcmp(a->peer_listen, "off")))
		return;
	if (a->peer_listen) {
		char host[64];
		uint16_t port;
		if (addr_split(a->peer_listen, host, sizeof host, &port) != 0 ||
		    (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
		     uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)) {
			log_error("--peer-listen %s is not a numeric IP:PORT; peers cannot reach this agent",
				  a->peer_listen);
			a->peer_listen = "off";
			return;
		}
	} else if (conn_local_addr(c, &ss) != 0) {
		return;
	} else if (ss.ss_family == AF_INET) {
		((struct sockaddr_in *)&ss)->sin_port = 0;
	} else {
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	}
	if (peer_listen(a->peer, (const struct sockaddr *)&ss, a->peer_addr, sizeof a->peer_addr) != 0) {
		a->peer_addr[0] = '\0';
		a->peer_listen = "off";
		return;
	}
	log_info("serving blobs to peer agents on %s (node certificates only)", a->peer_addr);
}

static void on_open(struct conn *c)
{
	struct agent *a = conn_data(c);
	start_peer_listener(a, c);
	conn_set_deadline(c, 15000);
	send_hello(a);
}

static void send_heartbeat(struct agent *a)
{
	struct sysinfo_load l;
	memset(&l, 0, sizeof l);
	sysinfo_load(&a->ls, &l);
	Seeswarm__V1__Heartbeat hb = SEESWARM__V1__HEARTBEAT__INIT;
	Seeswarm__V1__Load load = SEESWARM__V1__LOAD__INIT;
	load.cpu_permille = l.cpu_permille;
	load.memory_used_bytes = l.memory_used_bytes;
	load.load1_centi = l.load1_centi;
	load.running_tasks = a->runner ? runner_running(a->runner) : 0;
	hb.seq = ++a->hb_seq;
	hb.load = &load;
	/* Round-trip times to peers: measured every few seconds, reported when new. */
	struct peer_rtt pr[MSG_MAX_PEERS];
	Seeswarm__V1__PeerRtt rt[MSG_MAX_PEERS], *rtp[MSG_MAX_PEERS];
	if (a->peer && a->hb_ms && hb.seq % (PEER_PROBE_MS / a->hb_ms + 1) == 0)
		peer_probe_tick(a->peer);
	size_t n = a->peer ? peer_take_rtts(a->peer, pr, MSG_MAX_PEERS) : 0;
	for (size_t i = 0; i < n; i++) {
		seeswarm__v1__peer_rtt__init(&rt[i]);
		rt[i].node_id = (char *)pr[i].node;
		rt[i].rtt_us = pr[i].rtt_us;
		rtp[i] = &rt[i];
	}
	hb.rtts = rtp;
	hb.n_rtts = n;
	conn_send(a->conn, MSG_HEARTBEAT, &hb.base);
}

static void on_hb_timer(uv_timer_t *t)
{
	struct agent *a = t->data;
	if (!a->conn || a->st != A_ADMITTED)
		return;
	uint64_t silence = uv_now(&a->loop) - a->last_ack;
	/* Acks come every HEARTBEAT_ACK_EVERY heartbeats; allow three more intervals. */
	uint64_t limit = (uint64_t)(HEARTBEAT_ACK_EVERY + 3) * a->hb_ms;
	if (limit < 3000)
		limit = 3000;
	if (silence > limit) {
		log_warn("manager silent for %llu ms; reconnecting", (unsigned long long)silence);
		conn_close(a->conn, SS_ETIMEDOUT, "manager stopped answering heartbeats");
		return;
	}
	send_heartbeat(a);
}

static int on_challenge(struct agent *a, Seeswarm__V1__Challenge *ch)
{
	int rc = 0;
	uint8_t *ev = NULL;
	size_t ev_len = 0;
	if (strcmp(ch->evidence_type, a->evtype) != 0) {
		log_error("manager asks for %s evidence; this agent produces %s", ch->evidence_type,
			  a->evtype);
		rc = SS_EATTEST;
		goto out;
	}
	uint8_t rd[ATTEST_REPORT_DATA_LEN];
	attest_binding(ch->nonce.data, ch->nonce.len, a->spki, a->spki_len, rd);
	if (a->replay_evidence && a->first_ev) {
		/* Fault injection: an attacker replaying an old quote (its nonce is stale). */
		ev = xmalloc(a->first_ev_len);
		memcpy(ev, a->first_ev, a->first_ev_len);
		ev_len = a->first_ev_len;
		log_warn("INSECURE test mode: replaying the first evidence instead of attesting");
	} else if (a->tpm) {
		rc = tpm_attester_quote(a->tpm, rd, &a->pcr_sel, &ev, &ev_len);
	} else {
		rc = a->attester->evidence(rd, &ev, &ev_len);
	}
	if (rc) {
		log_error("attester %s failed: %s", a->evtype, ss_strerror(rc));
		goto out;
	}
	if (a->replay_evidence && !a->first_ev) {
		a->first_ev = xmalloc(ev_len);
		memcpy(a->first_ev, ev, ev_len);
		a->first_ev_len = ev_len;
	}
	Seeswarm__V1__Evidence e = SEESWARM__V1__EVIDENCE__INIT;
	e.evidence_type = a->evtype;
	e.evidence.data = ev;
	e.evidence.len = ev_len;
	/* A challenge while admitted is a re-attestation: the node stays admitted. */
	if (a->st != A_ADMITTED)
		a->st = A_EVIDENCE;
	else
		log_info("re-attesting (%s evidence)", a->evtype);
	conn_send(a->conn, MSG_EVIDENCE, &e.base);
out:
	free(ev);
	return rc;
}

static int on_frame(struct conn *c, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct agent *a = conn_data(c);
	ProtobufCMessage *m;
	const char *why;
	int rc = msg_decode(type, payload, len, &m, &why);
	if (rc) {
		log_error("bad message from the manager: %s", why);
		return rc;
	}
	switch (type) {
	case MSG_CHALLENGE:
		if (a->st != A_HELLO && a->st != A_ADMITTED) {
			rc = SS_EPROTO;
			break;
		}
		rc = on_challenge(a, (Seeswarm__V1__Challenge *)m);
		break;
	case MSG_CREDENTIAL_CHALLENGE: {
		Seeswarm__V1__CredentialChallenge *cc = (Seeswarm__V1__CredentialChallenge *)m;
		uint8_t secret[64];
		size_t slen = 0;
		if (!a->tpm || a->st != A_HELLO) {
			rc = SS_EPROTO;
			break;
		}
		rc = tpm_attester_activate(a->tpm, cc->id_object.data, cc->id_object.len,
					   cc->enc_secret.data, cc->enc_secret.len, secret, sizeof secret,
					   &slen);
		if (rc) {
			log_error("TPM credential activation failed: %s", ss_strerror(rc));
			break;
		}
		Seeswarm__V1__CredentialResponse cr = SEESWARM__V1__CREDENTIAL_RESPONSE__INIT;
		cr.secret.data = secret;
		cr.secret.len = slen;
		conn_send(c, MSG_CREDENTIAL_RESPONSE, &cr.base);
		OPENSSL_cleanse(secret, sizeof secret);
		break;
	}
	case MSG_ADMITTED: {
		Seeswarm__V1__Admitted *ad = (Seeswarm__V1__Admitted *)m;
		if (a->st != A_EVIDENCE) {
			rc = SS_EPROTO;
			break;
		}
		a->st = A_ADMITTED;
		a->hb_ms = ad->heartbeat_interval_ms;
		a->backoff_ms = BACKOFF_MIN_MS;
		a->last_ack = uv_now(&a->loop);
		a->admissions++;
		snprintf(a->state, sizeof a->state, "%s", ad->state ? ad->state : "ready");
		if (ad->node_cert.len)
			take_node_cert_der(a, ad->node_cert.data, ad->node_cert.len);
		take_grant_cert_der(a, ad->grant_cert.data, ad->grant_cert.len);
		conn_set_deadline(c, 0);
		/* A cut link fails within about three intervals, without waiting for acks. */
		conn_set_user_timeout(c, 3 * a->hb_ms < 2000 ? 2000 : 3 * a->hb_ms);
		log_info("admitted as %s (state %s, attestation %s); heartbeat every %u ms", ad->node_id,
			 a->state, ad->attestation_status, a->hb_ms);
		send_heartbeat(a);
		uv_timer_start(&a->hb_timer, on_hb_timer, a->hb_ms, a->hb_ms);
		if (a->runner) {
			refresh_identity(a);
			runner_on_admitted(a->runner);
		}
		break;
	}
	case MSG_TASK_DISPATCH:
	case MSG_TASK_ACK:
	case MSG_TASK_CANCEL:
	case MSG_TASK_LOG_GET:
	case MSG_BLOB_GET:
	case MSG_BLOB_DATA:
	case MSG_BLOB_REPLICATE:
	case MSG_BLOB_DELETE:
	case MSG_BLOB_INVENTORY_ACK:
		if (a->st != A_ADMITTED || !a->runner) {
			rc = SS_EPROTO;
			break;
		}
		rc = runner_on_message(a->runner, type, m);
		m = NULL; /* the runner owns it */
		break;
	case MSG_NODE_CERTIFICATE: {
		Seeswarm__V1__NodeCertificate *nc = (Seeswarm__V1__NodeCertificate *)m;
		take_node_cert_der(a, nc->cert.data, nc->cert.len);
		break;
	}
	case MSG_PEER_LIST: {
		Seeswarm__V1__PeerList *pl = (Seeswarm__V1__PeerList *)m;
		if (a->peer)
			peer_set_probes(a->peer, pl->peers, pl->n_peers);
		break;
	}
	case MSG_REVOCATION: {
		Seeswarm__V1__Revocation *rv = (Seeswarm__V1__Revocation *)m;
		for (size_t i = 0; i < rv->n_serials; i++) {
			log_info("revocation received: node certificate %s", rv->serials[i]);
			if (a->peer)
				peer_revoke(a->peer, rv->serials[i]);
			if (a->node_cert && !strcmp(rv->serials[i], a->node_serial))
				drop_node_cert(a, "revoked by the manager");
		}
		a->revoked_seen += rv->n_serials;
		break;
	}
	case MSG_REJECTED: {
		Seeswarm__V1__Rejected *r = (Seeswarm__V1__Rejected *)m;
		log_error("manager rejected this agent: %s", r->reason);
		/* The next attempt falls back to the join certificate. */
		if (a->using_node_cert)
			drop_node_cert(a, "the manager refused the connection");
		a->retry_hint_ms = r->retry_after_ms;
		conn_close(c, SS_EATTEST, "rejected");
		break;
	}
	case MSG_HEARTBEAT_ACK: {
		Seeswarm__V1__HeartbeatAck *ack = (Seeswarm__V1__HeartbeatAck *)m;
		a->last_ack = uv_now(&a->loop);
		if (ack->state && strcmp(ack->state, a->state) != 0) {
			log_info("manager reports this node as %s", ack->state);
			snprintf(a->state, sizeof a->state, "%s", ack->state);
		}
		break;
	}
	case MSG_STATE_CHANGE: {
		Seeswarm__V1__StateChange *sc = (Seeswarm__V1__StateChange *)m;
		log_info("state changed to %s: %s", sc->state, sc->reason ? sc->reason : "");
		snprintf(a->state, sizeof a->state, "%s", sc->state);
		break;
	}
	case MSG_ERROR: {
		Seeswarm__V1__Error *e = (Seeswarm__V1__Error *)m;
		log_error("manager reported an error: %s", e->message ? e->message : "");
		conn_close(c, SS_EPROTO, "manager reported an error");
		break;
	}
	default:
		rc = SS_EPROTO;
	}
	msg_free(m);
	return rc;
}

static void on_close(struct conn *c, int reason, const char *why)
{
	struct agent *a = conn_data(c);
	if (a->conn == c)
		a->conn = NULL;
	uv_timer_stop(&a->hb_timer);
	bool was_admitted = a->st == A_ADMITTED;
	a->st = A_IDLE;
	if (a->runner)
		runner_on_disconnected(a->runner);
	if (a->stopping)
		return;
	if (was_admitted)
		log_warn("lost the manager connection: %s", why);
	else
		log_debug("connection attempt ended: %s (%s)", why, ss_strerror(reason));
	schedule_reconnect(a);
}

static const struct conn_cbs agent_cbs = {
	.on_open = on_open,
	.on_frame = on_frame,
	.on_close = on_close,
};

static int resolve(struct agent *a)
{
	char host[256];
	uint16_t port;
	if (addr_split(a->join, host, sizeof host, &port) != 0)
		return SS_ECONFIG;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&a->addr) == 0 ||
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&a->addr) == 0)
		return 0;
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", port);
	if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
		return SS_ECONN;
	memcpy(&a->addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void do_connect(struct agent *a)
{
	if (a->stopping || a->conn)
		return;
	if (resolve(a) != 0) {
		log_warn("cannot resolve %s; retrying", a->join);
		schedule_reconnect(a);
		return;
	}
	a->st = A_CONNECTING;
	if (a->node_cert && X509_cmp_time(X509_get0_notAfter(a->node_cert), NULL) <= 0)
		drop_node_cert(a, "expired");
	a->using_node_cert = a->node_cert != NULL;
	conn_connect(&a->loop, (const struct sockaddr *)&a->addr, a->tls, TLS_MANAGER_NAME,
		     a->node_cert, a->node_cert ? a->key : NULL, &agent_cbs, NULL, a, &a->conn);
	conn_set_deadline(a->conn, CONNECT_TIMEOUT_MS);
}

static void on_retry(uv_timer_t *t)
{
	do_connect(t->data);
}

/* Exponential backoff with equal jitter: half fixed, half random. */
static void schedule_reconnect(struct agent *a)
{
	uint32_t base = a->backoff_ms;
	uint32_t delay = base / 2 + rand_below(base / 2 + 1);
	if (a->retry_hint_ms > delay)
		delay = a->retry_hint_ms;
	a->retry_hint_ms = 0;
	a->backoff_ms = base * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : base * 2;
	uv_timer_start(&a->retry_timer, on_retry, delay, 0);
}

static int runner_send(void *arg, uint16_t type, const ProtobufCMessage *msg)
{
	struct agent *a = arg;
	if (!a->conn || a->st != A_ADMITTED || conn_closing(a->conn))
		return SS_ECLOSED;
	return conn_send(a->conn, type, msg);
}

static size_t runner_queued(void *arg)
{
	struct agent *a = arg;
	return a->conn ? conn_write_queued(a->conn) : 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;
	if (a->stopping)
		return;
	a->stopping = true;
	log_info("signal %d: leaving the swarm", signum);
	/*
	 * Also while the admission is on its way: the manager may have admitted
	 * this agent already, and without a goodbye it would wait out the grace
	 * period and mark it down instead of left.
	 */
	if (a->conn && (a->st == A_ADMITTED || a->st == A_EVIDENCE)) {
		Seeswarm__V1__Goodbye g = SEESWARM__V1__GOODBYE__INIT;
		g.reason = signum == SIGTERM ? "agent stopped (SIGTERM)" : "agent stopped (SIGINT)";
		conn_send(a->conn, MSG_GOODBYE, &g.base);
	}
	/* Drained before it closes, so the goodbye is not lost to a reset (conn_finish). */
	if (a->conn)
		conn_finish(a->conn, AGENT_LINGER_MS, "agent stopping");
	uv_timer_stop(&a->hb_timer);
	uv_timer_stop(&a->retry_timer);
	/* Running attempts are killed; unacknowledged results stay on disk for the next start. */
	if (a->runner) {
		runner_set_peer(a->runner, NULL);
		runner_close(a->runner, NULL, NULL);
		a->runner = NULL;
	}
	peer_close(a->peer);
	a->peer = NULL;
	uv_close((uv_handle_t *)&a->sig_term, NULL);
	uv_close((uv_handle_t *)&a->sig_int, NULL);
	uv_close((uv_handle_t *)&a->hb_timer, NULL);
	uv_close((uv_handle_t *)&a->retry_timer, NULL);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seeswarm agent --join HOST:PORT --data-dir DIR [--label k=v ...]\n"
		"                      [--price-per-hour X] [--advertise IP:PORT]\n"
		"                      [--attester tpm|sev-snp|tdx|sim] [--tcti TCTI] [--pcrs SEL]\n"
		"                      [--insecure-sim-attestation] [--max-tasks N] [--warm-sandboxes N]\n"
		"                      [--peer-listen IP:PORT|off] [--store-max SIZE]\n"
		"\n"
		"  --join HOST:PORT            the manager's agent listener\n"
		"  --data-dir DIR              holds agent.key, agent.pem, ca.pem and node-id\n"
		"                              (create them with: seeswarm ca issue-agent)\n"
		"  --label k=v                 a scheduling label, repeatable (e.g. zone=a)\n"
		"  --price-per-hour X          what an hour of this instance costs\n"
		"  --attester tpm|sev-snp|tdx|sim  evidence to produce (default: sim with the insecure\n"
		"                              flag, else tpm)\n"
		"  --tcti TCTI                 TPM access, e.g. swtpm:host=127.0.0.1,port=2321\n"
		"                              (default device:/dev/tpmrm0)\n"
		"  --pcrs SEL                  PCRs to quote (default sha256:0-7,23)\n"
		"  --max-tasks N               concurrent task attempts (default 8 x cores, at most 126)\n"
		"  --warm-sandboxes N          sandboxes kept prepared ahead of demand, 0..8 (default 2)\n"
		"  --store-max SIZE            blob store size above which the blobs this agent keeps\n"
		"                              only as a cache (inputs it fetched, blobs no job needs\n"
		"                              here) are evicted, least recently used first; 0 = no cap\n"
		"                              (default: a quarter of the data directory's filesystem)\n"
		"  --peer-listen IP:PORT|off   where other agents fetch blobs from this one over mTLS\n"
		"                              with node certificates (default: the local address of\n"
		"                              the connection to the manager, a free port); the\n"
		"                              address sent to the manager is --advertise or this one\n"
		"  --insecure-sim-attestation  produce simulated evidence; development only\n"
		"  --insecure-test-replay-evidence  fault injection for tests: answer every later\n"
		"                              challenge with the first evidence (a replay attack)\n");
}

static int parse_args(struct agent *a, int argc, char **argv)
{
	enum { O_INSECURE = 256, O_PRICE, O_ADV, O_ATTESTER, O_TCTI, O_PCRS, O_MAXT, O_PEER, O_REPLAY, O_WARM,
	       O_STORE_MAX };
	static const struct option opts[] = {
		{"join", required_argument, NULL, 'j'},
		{"data-dir", required_argument, NULL, 'd'},
		{"label", required_argument, NULL, 'l'},
		{"price-per-hour", required_argument, NULL, O_PRICE},
		{"advertise", required_argument, NULL, O_ADV},
		{"insecure-sim-attestation", no_argument, NULL, O_INSECURE},
		{"attester", required_argument, NULL, O_ATTESTER},
		{"tcti", required_argument, NULL, O_TCTI},
		{"pcrs", required_argument, NULL, O_PCRS},
		{"max-tasks", required_argument, NULL, O_MAXT},
		{"warm-sandboxes", required_argument, NULL, O_WARM},
		{"store-max", required_argument, NULL, O_STORE_MAX},
		{"peer-listen", required_argument, NULL, O_PEER},
		{"insecure-test-replay-evidence", no_argument, NULL, O_REPLAY},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "j:d:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			a->join = optarg;
			break;
		case 'd':
			a->data_dir = optarg;
			break;
		case 'l': {
			char *eq = strchr(optarg, '=');
			if (!eq) {
				fprintf(stderr, "agent: --label wants k=v, got '%s'\n", optarg);
				return 2;
			}
			*eq = '\0';
			if (!ident_valid(optarg) || !label_value_valid(eq + 1)) {
				fprintf(stderr, "agent: invalid label '%s=%s'\n", optarg, eq + 1);
				return 2;
			}
			for (size_t i = 0; i < a->n_labels; i++)
				if (!strcmp(a->labels_k[i], optarg)) {
					fprintf(stderr, "agent: label '%s' given twice\n", optarg);
					return 2;
				}
			if (a->n_labels >= MSG_MAX_LABELS) {
				fprintf(stderr, "agent: at most %d labels\n", MSG_MAX_LABELS);
				return 2;
			}
			a->labels_k[a->n_labels] = optarg;
			a->labels_v[a->n_labels] = eq + 1;
			a->n_labels++;
			break;
		}
		case O_PRICE: {
			char *end;
			a->price = strtod(optarg, &end);
			if (*end || !(a->price >= 0 && a->price <= 1e6)) {
				fprintf(stderr, "agent: --price-per-hour must be a number 0..1e6\n");
				return 2;
			}
			break;
		}
		case O_ADV:
			a->advertise = optarg;
			break;
		case O_PEER:
			a->peer_listen = optarg;
			break;
		case O_REPLAY:
			a->replay_evidence = true;
			break;
		case O_INSECURE:
			a->insecure_sim = true;
			break;
		case O_ATTESTER:
			if (strcmp(optarg, "tpm") != 0 && strcmp(optarg, "sim") != 0 &&
			    strcmp(optarg, "sev-snp") != 0 && strcmp(optarg, "tdx") != 0) {
				fprintf(stderr, "agent: --attester must be tpm, sev-snp, tdx or sim\n");
				return 2;
			}
			a->attester_name = optarg;
			break;
		case O_TCTI:
			a->tcti = optarg;
			break;
		case O_PCRS:
			a->pcrs = optarg;
			break;
		case O_MAXT: {
			uint64_t v;
			if (parse_size(optarg, &v) || v < 1 || v > 1024) {
				fprintf(stderr, "agent: --max-tasks must be 1..1024\n");
				return 2;
			}
			a->max_tasks = (uint32_t)v;
			break;
		}
		case O_WARM: {
			uint64_t v;
			if (parse_size(optarg, &v) || v > 8) {
				fprintf(stderr, "agent: --warm-sandboxes must be 0..8\n");
				return 2;
			}
			a->warm_sandboxes = (int)v;
			break;
		}
		case O_STORE_MAX:
			if (parse_size(optarg, &a->store_max) || a->store_max == UINT64_MAX) {
				fprintf(stderr, "agent: --store-max wants a size such as 10G, or 0 for no cap\n");
				return 2;
			}
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
		fprintf(stderr, "agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->join || !a->data_dir) {
		fprintf(stderr, "agent: --join and --data-dir are required\n");
		usage(stderr);
		return 2;
	}
	char host[256];
	uint16_t port;
	if (addr_split(a->join, host, sizeof host, &port) != 0) {
		fprintf(stderr, "agent: --join '%s' is not HOST:PORT\n", a->join);
		return 2;
	}
	return 0;
}

static int load_identity(struct agent *a)
{
	int rc;
	char *kp = xasprintf("%s/agent.key", a->data_dir);
	char *cp = xasprintf("%s/agent.pem", a->data_dir);
	char *ca = xasprintf("%s/ca.pem", a->data_dir);
	rc = pem_read_key(kp, &a->key);
	if (rc == 0)
		rc = pem_read_cert(cp, &a->cert);
	if (rc) {
		log_error("no agent credentials in %s (agent.key, agent.pem, ca.pem). Issue them on the "
			  "manager host with: seeswarm ca issue-agent --data-dir MANAGER_DIR --out %s",
			  a->data_dir, a->data_dir);
		goto out;
	}
	rc = crypto_cert_cn(a->cert, a->id, sizeof a->id);
	if (rc || !ident_valid(a->id)) {
		log_error("agent.pem has no valid CN to use as the node id");
		rc = SS_ECONFIG;
		goto out;
	}
	rc = crypto_spki_der(a->key, &a->spki, &a->spki_len);
	if (rc)
		goto out;
	rc = tls_ctx_new(&a->tls, false, ca, a->cert, a->key);
	a->ca_path = xstrdup(ca);
	if (rc == 0) {
		/* A node certificate from an earlier run, if still valid. */
		char *np = node_cert_path(a);
		X509 *nc = NULL;
		if (access(np, F_OK) == 0 && pem_read_cert(np, &nc) == 0)
			adopt_node_cert(a, nc, false);
		free(np);
	}
out:
	free(kp);
	free(cp);
	free(ca);
	return rc;
}

/*
 * The configuration the agent measures at start, one "key=value" per line in
 * a fixed order (docs/attestation-tpm.md): a verifier can recompute PCR 23
 * from the agent binary and these lines.
 */
static char *measured_config(const struct agent *a)
{
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "seeswarm-agent-config-v1\njoin=%s\nlabels=", a->join);
	for (size_t i = 0; i < a->n_labels; i++)
		buf_printf(&b, "%s%s=%s", i ? "," : "", a->labels_k[i], a->labels_v[i]);
	buf_printf(&b, "\nprice_per_hour=%.6f\npcrs=%s\n", a->price, a->pcrs ? a->pcrs : TPM_DEFAULT_PCRS);
	buf_append(&b, "", 1);
	return (char *)b.data;
}

static int start_tpm(struct agent *a)
{
	int rc = tpm_pcr_selection_parse(a->pcrs ? a->pcrs : TPM_DEFAULT_PCRS, &a->pcr_sel);
	if (rc) {
		log_error("--pcrs: cannot parse '%s'", a->pcrs);
		return rc;
	}
	rc = tpm_attester_open(a->tcti, &a->tpm);
	if (rc)
		return rc;
	char *cfg = measured_config(a);
	rc = tpm_attester_measure_start(a->tpm, cfg, strlen(cfg));
	free(cfg);
	if (rc) {
		log_error("cannot measure the agent into PCR %d: %s", TPM_AGENT_PCR, ss_strerror(rc));
		return rc;
	}
	rc = tpm_attester_identity(a->tpm, &a->identity, &a->identity_len);
	if (rc)
		log_error("cannot read the TPM identity: %s", ss_strerror(rc));
	return rc;
}

/* The peer endpoint's callbacks go to the runner while it runs. */
static void peer_get_cb(void *arg, struct peer_link *l, const Seeswarm__V1__BlobGet *g)
{
	struct agent *a = arg;
	if (a->runner)
		runner_peer_get(a->runner, l, g);
}

static void peer_data_cb(void *arg, struct peer_link *l, Seeswarm__V1__BlobData *d)
{
	struct agent *a = arg;
	if (a->runner)
		runner_peer_data(a->runner, l, d);
	else
		msg_free(&d->base);
}

static void peer_lost_cb(void *arg, struct peer_link *l, const char *why)
{
	struct agent *a = arg;
	if (a->runner)
		runner_peer_lost(a->runner, l, why);
}

int agent_main(int argc, char **argv)
{
	struct agent *a = xcalloc(1, sizeof *a);
	int rc = 1;
	bool loop_ready = false;
	a->warm_sandboxes = -1;
	a->store_max = UINT64_MAX;
	int prc = parse_args(a, argc, argv);
	if (prc) {
		rc = prc == 1 ? 0 : 2;
		goto out;
	}
	log_init("agent", LOG_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (load_identity(a) != 0)
		goto out;
	if (!a->attester_name)
		a->attester_name = a->insecure_sim ? "sim" : "tpm";
	snprintf(a->evtype, sizeof a->evtype, "%s", a->attester_name);
	if (!strcmp(a->attester_name, "sim")) {
		if (!a->insecure_sim) {
			log_error("sim evidence needs --insecure-sim-attestation (development only)");
			goto out;
		}
		a->attester = &attest_sim_attester;
	} else if (!strcmp(a->attester_name, "sev-snp") || !strcmp(a->attester_name, "tdx")) {
		/* Ask for one report now, so that a machine without the device fails at start. */
		uint8_t probe[ATTEST_REPORT_DATA_LEN] = {0};
		uint8_t *ev = NULL;
		size_t ev_len = 0;
		a->attester = attest_attester_find(a->attester_name);
		if (a->attester->evidence(probe, &ev, &ev_len) != 0) {
			log_error("the %s attester cannot produce evidence on this machine (see above)",
				  a->attester_name);
			goto out;
		}
		free(ev);
	} else if (strcmp(a->attester_name, "tpm") != 0) {
		log_error("unknown attester \"%s\" (tpm, sev-snp, tdx or sim)", a->attester_name);
		goto out;
	} else if (start_tpm(a) != 0) {
		log_error("no usable TPM (%s); for development without hardware run with "
			  "--insecure-sim-attestation (never in production)",
			  a->tcti ? a->tcti : TPM_DEFAULT_TCTI);
		goto out;
	}
	sysinfo_caps(a->data_dir, &a->caps);
	if (a->store_max == UINT64_MAX)
		a->store_max = a->caps.disk_bytes / 4;
	a->backoff_ms = BACKOFF_MIN_MS;
	/* Sandboxed runs use libuv's thread pool: size it before its first use. */
	/*
	 * Task slots: a running attempt holds a worker thread while it waits for
	 * its sandbox, so tasks that mostly wait (I/O, sleep) need many; the
	 * resource manager still admits by CPU, memory and pids.
	 */
	if (!a->max_tasks)
		a->max_tasks = 8 * (a->caps.cpu_cores ? a->caps.cpu_cores : 1);
	if (a->max_tasks > 126)
		a->max_tasks = 126;
	uint32_t workers = a->max_tasks;
	char wbuf[16];
	snprintf(wbuf, sizeof wbuf, "%u", workers + 2 < 4 ? 4 : workers + 2);
	setenv("UV_THREADPOOL_SIZE", wbuf, 0);
	uv_loop_init(&a->loop);
	loop_ready = true;
	struct runner_opts ro = {
		.state_dir = a->data_dir,
		.node_id = a->id,
		.cpu_millicores = a->caps.cpu_cores * 1000u,
		.memory_bytes = a->caps.memory_bytes,
		.max_tasks = a->max_tasks,
		.warm_sandboxes = a->warm_sandboxes < 0 ? 2u : (unsigned)a->warm_sandboxes,
		.store_max_bytes = a->store_max,
	};
	struct runner_io rio = {.arg = a, .send = runner_send, .queued = runner_queued};
	if (runner_new(&a->runner, &a->loop, &ro, &rio) != 0) {
		log_error("cannot start the task runner in %s", a->data_dir);
		goto out;
	}
	struct peer_cbs pcb = {.arg = a, .on_get = peer_get_cb, .on_data = peer_data_cb,
			       .on_lost = peer_lost_cb};
	if (peer_new(&a->peer, &a->loop, a->ca_path, &pcb) != 0) {
		log_error("cannot start the peer endpoint");
		goto out;
	}
	runner_set_peer(a->runner, a->peer);
	refresh_identity(a);
	uv_timer_init(&a->loop, &a->hb_timer);
	uv_timer_init(&a->loop, &a->retry_timer);
	a->hb_timer.data = a->retry_timer.data = a;
	uv_signal_init(&a->loop, &a->sig_term);
	uv_signal_init(&a->loop, &a->sig_int);
	a->sig_term.data = a->sig_int.data = a;
	uv_signal_start(&a->sig_term, on_signal, SIGTERM);
	uv_signal_start(&a->sig_int, on_signal, SIGINT);
	log_info("agent %s joining %s (%u cores, %s attestation%s; blob store cap %" PRIu64 " MB%s)",
		 a->id, a->join, a->caps.cpu_cores, a->evtype,
		 !strcmp(a->evtype, "sim") ? ", INSECURE" : "", a->store_max >> 20,
		 a->store_max ? "" : ", none");
	do_connect(a);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	if (loop_ready) {
		uv_walk(&a->loop, close_walk, NULL);
		uv_run(&a->loop, UV_RUN_DEFAULT);
		uv_loop_close(&a->loop);
	}
	sysinfo_caps_free(&a->caps);
	tpm_attester_close(a->tpm);
	X509_free(a->node_cert);
	free(a->identity);
	free(a->first_ev);
	tls_ctx_free(a->tls);
	free(a->ca_path);
	EVP_PKEY_free(a->grant_key);
	X509_free(a->cert);
	EVP_PKEY_free(a->key);
	free(a->spki);
	free(a);
	return rc;
}
