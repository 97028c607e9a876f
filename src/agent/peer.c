/*
 * peer.c - the agent's peer endpoint (the contract is in peer.h).
 *
 * Each link is a conn (src/net/conn.h) whose data pointer is its struct
 * peer_link. Links live on one list; p->handles counts the links and the
 * listener, so that peer_close can free p once libuv has closed them all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/peer.h"
#include "core/core.h"
#include "net/conn.h"
#include "net/frame.h"
#include "net/tls.h"

#define PEER_HANDSHAKE_MS 10000
#define PEER_SERIAL_LEN 64

struct peer_link {
	struct peer_link *next;
	struct peer *p;
	struct conn *c;
	bool out;               /* this agent opened it */
	bool open;              /* handshake done and the peer's certificate passed */
	char node[64];          /* expected (outgoing) or verified (incoming) node id */
	char addr[64];
	char serial[PEER_SERIAL_LEN];
	struct buf pending;     /* frames sent before an outgoing link was open */
	size_t outstanding;
};

/* A peer whose round-trip time the manager wants. */
struct probe {
	char node[MSG_MAX_ID + 1];
	char addr[MSG_MAX_ADDR + 1];
	uint64_t seq;        /* of the ping in flight, 0 if none */
	uint64_t sent_ns;
	uint32_t rtt_us;     /* smoothed; 0 = no measurement yet */
	bool fresh;          /* measured since the last peer_take_rtts */
};

struct peer {
	uv_loop_t *loop;
	struct peer_cbs cbs;
	char *ca_file;
	struct tls_ctx *client; /* per-link identity */
	struct tls_ctx *server; /* NULL without an identity */
	X509 *cert;
	EVP_PKEY *key;
	uv_tcp_t listener;
	bool listening;
	struct peer_link *links;
	size_t n_in, n_out;
	char (*revoked)[PEER_SERIAL_LEN]; /* ring of PEER_MAX_REVOKED */
	size_t n_revoked, revoked_head;
	struct peer_stats st;
	struct probe probes[MSG_MAX_PEERS];
	size_t n_probes;
	uint64_t next_seq;
	bool closing;
	size_t handles;
};

static const struct conn_limits peer_limits = {
	.max_frame = FRAME_MAX_DEFAULT,
	.frames_per_sec = 2000,
	.frame_burst = 4000,
	.max_write_queue = 8u << 20,
};

static void peer_free(struct peer *p)
{
	tls_ctx_free(p->client);
	tls_ctx_free(p->server);
	X509_free(p->cert);
	EVP_PKEY_free(p->key);
	free(p->revoked);
	free(p->ca_file);
	free(p);
}

static void handle_gone(struct peer *p)
{
	if (--p->handles == 0 && p->closing)
		peer_free(p);
}

/* Checks the verified peer certificate against the rules in peer.h; NULL when it passes. */
static const char *check_peer(struct peer_link *l)
{
	struct tls *t = conn_tls(l->c);
	uint8_t digest[32];
	const char *cn = tls_peer_cn(t);
	if (!tls_peer_node_digest(t, digest))
		return "the peer did not present a node certificate";
	snprintf(l->serial, sizeof l->serial, "%s", tls_peer_serial(t));
	if (peer_is_revoked(l->p, l->serial))
		return "the peer's node certificate is revoked";
	if (!ident_valid(cn))
		return "the peer's node certificate has no valid node id";
	if (l->out && strcmp(cn, l->node) != 0)
		return "the peer's node certificate names another node";
	if (!l->out)
		snprintf(l->node, sizeof l->node, "%s", cn);
	return NULL;
}

static void on_open(struct conn *c)
{
	struct peer_link *l = conn_data(c);
	struct peer *p = l->p;
	const char *why = check_peer(l);
	if (why) {
		p->st.refused++;
		log_warn("peer %s (%s): %s; closing", conn_peer(c), l->out ? l->node : "incoming", why);
		conn_send_error(c, SS_EAUTH, why);
		conn_close(c, SS_EAUTH, why);
		return;
	}
	l->open = true;
	if (l->out) {
		p->st.links_out++;
		log_debug("peer link to %s (%s) open", l->node, l->addr);
		if (l->pending.len && conn_send_bytes(c, l->pending.data, l->pending.len) != 0)
			return;
		buf_free(&l->pending);
		peer_link_outstanding(l, l->outstanding);
	} else {
		p->st.links_in++;
		log_debug("peer link from %s (%s) open", l->node, conn_peer(c));
		conn_set_deadline(c, PEER_IDLE_MS);
	}
}

static void on_pong(struct peer *p, struct peer_link *l, uint64_t seq)
{
	if (l->outstanding == 0)
		conn_set_deadline(l->c, PEER_IDLE_MS);
	for (size_t i = 0; i < p->n_probes; i++) {
		struct probe *pr = &p->probes[i];
		if (pr->seq != seq || seq == 0 || strcmp(pr->node, l->node) != 0)
			continue;
		uint64_t us = (uv_hrtime() - pr->sent_ns) / 1000;
		if (us == 0)
			us = 1;
		if (us > MSG_MAX_RTT_US)
			us = MSG_MAX_RTT_US;
		pr->rtt_us = pr->rtt_us ? (uint32_t)((3ull * pr->rtt_us + us) / 4) : (uint32_t)us;
		if (pr->rtt_us == 0)
			pr->rtt_us = 1;
		pr->fresh = true;
		pr->seq = 0;
		return;
	}
}

static int on_frame(struct conn *c, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct peer_link *l = conn_data(c);
	struct peer *p = l->p;
	ProtobufCMessage *m = NULL;
	const char *why = NULL;
	if (!l->open || p->closing)
		return SS_EPROTO;
	int rc = msg_decode(type, payload, len, &m, &why);
	if (rc) {
		log_warn("peer %s: bad message: %s", l->node, why);
		conn_send_error(c, rc, why);
		return rc;
	}
	if (!l->out && type == MSG_BLOB_GET) {
		conn_set_deadline(c, PEER_IDLE_MS);
		const Seeswarm__V1__BlobGet *g = (const Seeswarm__V1__BlobGet *)m;
		p->st.gets_served++;
		p->st.bytes_served += g->length;
		p->cbs.on_get(p->cbs.arg, l, g);
		msg_free(m);
		return 0;
	}
	if (l->out && type == MSG_BLOB_DATA) {
		p->cbs.on_data(p->cbs.arg, l, (Seeswarm__V1__BlobData *)m);
		return 0;
	}
	if (!l->out && type == MSG_HEARTBEAT) {
		/* A ping: answered at once, so the peer measures the round trip. */
		Seeswarm__V1__HeartbeatAck a = SEESWARM__V1__HEARTBEAT_ACK__INIT;
		a.seq = ((const Seeswarm__V1__Heartbeat *)m)->seq;
		a.state = "";
		msg_free(m);
		conn_set_deadline(c, PEER_IDLE_MS);
		return conn_send(c, MSG_HEARTBEAT_ACK, &a.base) == 0 ? 0 : SS_ECLOSED;
	}
	if (l->out && type == MSG_HEARTBEAT_ACK) {
		on_pong(p, l, ((const Seeswarm__V1__HeartbeatAck *)m)->seq);
		msg_free(m);
		return 0;
	}
	if (type == MSG_ERROR) {
		const Seeswarm__V1__Error *e = (const Seeswarm__V1__Error *)m;
		log_warn("peer %s: error: %.200s", l->node, e->message ? e->message : "");
		msg_free(m);
		return SS_ECLOSED;
	}
	log_warn("peer %s: unexpected %s message on a peer link", l->node, msg_type_name(type));
	msg_free(m);
	conn_send_error(c, SS_EPROTO, "unexpected message on a peer link");
	return SS_EPROTO;
}

static void on_close(struct conn *c, int reason, const char *why)
{
	struct peer_link *l = conn_data(c);
	struct peer *p = l->p;
	for (struct peer_link **pp = &p->links; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	if (l->out)
		p->n_out--;
	else
		p->n_in--;
	if (!p->closing) {
		if (reason && l->out)
			log_info("peer link to %s (%s) closed: %s", l->node, l->addr,
				 why && *why ? why : ss_strerror(reason));
		p->cbs.on_lost(p->cbs.arg, l, why && *why ? why : ss_strerror(reason ? reason : SS_ECLOSED));
	}
	buf_free(&l->pending);
	free(l);
	handle_gone(p);
}

static const struct conn_cbs link_cbs = {
	.on_open = on_open,
	.on_frame = on_frame,
	.on_close = on_close,
};

static void free_raw(uv_handle_t *h)
{
	free(h);
}

/* Accepts and drops one pending connection. */
static void refuse_pending(uv_stream_t *server)
{
	uv_tcp_t *t = xcalloc(1, sizeof *t);
	uv_tcp_init(server->loop, t);
	if (uv_accept(server, (uv_stream_t *)t) != 0)
		log_debug("peer: accept failed");
	uv_close((uv_handle_t *)t, free_raw);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct peer *p = server->data;
	if (status < 0) {
		log_warn("peer accept: %s", uv_strerror(status));
		return;
	}
	if (p->closing || !p->server || p->n_in >= PEER_MAX_IN) {
		if (!p->closing)
			log_warn("peer: refusing a connection (%s)",
				 p->server ? "too many peer links" : "no node certificate yet");
		refuse_pending(server);
		return;
	}
	struct peer_link *l = xcalloc(1, sizeof *l);
	l->p = p;
	buf_init(&l->pending);
	l->next = p->links;
	p->links = l;
	p->n_in++;
	p->handles++;
	if (conn_accept(server, p->server, &link_cbs, &peer_limits, l, &l->c) == 0)
		conn_set_deadline(l->c, PEER_HANDSHAKE_MS);
	/* On failure conn_accept has closed the conn; on_close frees l. */
}

int peer_new(struct peer **out, uv_loop_t *loop, const char *ca_file, const struct peer_cbs *cbs)
{
	struct peer *p = xcalloc(1, sizeof *p);
	p->loop = loop;
	p->cbs = *cbs;
	p->ca_file = xstrdup(ca_file);
	int rc = tls_ctx_new(&p->client, false, ca_file, NULL, NULL);
	if (rc) {
		peer_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int peer_listen(struct peer *p, const struct sockaddr *addr, char *bound, size_t bound_len)
{
	if (p->listening)
		return SS_EINVAL;
	uv_tcp_init(p->loop, &p->listener);
	p->listener.data = p;
	p->listening = true;
	p->handles++;
	int r = uv_tcp_bind(&p->listener, addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
	if (r < 0) {
		log_error("peer: cannot listen: %s", uv_strerror(r));
		return SS_ECONN;
	}
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char host[64] = "?";
	int port = 0;
	if (uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((const struct sockaddr_in *)&ss, host, sizeof host);
			port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
			snprintf(bound, bound_len, "%s:%d", host, port);
		} else {
			uv_ip6_name((const struct sockaddr_in6 *)&ss, host, sizeof host);
			port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
			snprintf(bound, bound_len, "[%s]:%d", host, port);
		}
	}
	return 0;
}

int peer_set_identity(struct peer *p, X509 *node_cert, EVP_PKEY *key)
{
	struct tls_ctx *srv = NULL;
	if (node_cert && key) {
		int rc = tls_ctx_new(&srv, true, p->ca_file, node_cert, key);
		if (rc)
			return rc;
		X509_up_ref(node_cert);
		EVP_PKEY_up_ref(key);
	}
	tls_ctx_free(p->server);
	X509_free(p->cert);
	EVP_PKEY_free(p->key);
	p->server = srv;
	p->cert = srv ? node_cert : NULL;
	p->key = srv ? key : NULL;
	return 0;
}

bool peer_has_identity(const struct peer *p)
{
	return p->server != NULL;
}

bool peer_is_revoked(const struct peer *p, const char *serial)
{
	if (!serial || !*serial)
		return false;
	for (size_t i = 0; i < p->n_revoked; i++)
		if (!strcmp(p->revoked[i], serial))
			return true;
	return false;
}

void peer_revoke(struct peer *p, const char *serial)
{
	if (!serial || !*serial || strlen(serial) >= PEER_SERIAL_LEN || peer_is_revoked(p, serial))
		return;
	if (!p->revoked)
		p->revoked = xcalloc(PEER_MAX_REVOKED, sizeof *p->revoked);
	/* A full ring forgets the oldest serial: by then its certificate has long expired. */
	snprintf(p->revoked[p->revoked_head], PEER_SERIAL_LEN, "%s", serial);
	p->revoked_head = (p->revoked_head + 1) % PEER_MAX_REVOKED;
	if (p->n_revoked < PEER_MAX_REVOKED)
		p->n_revoked++;
	for (struct peer_link *l = p->links; l; l = l->next) {
		if (l->open && !strcmp(l->serial, serial)) {
			log_warn("peer %s: its node certificate %s was revoked; closing the link", l->node,
				 serial);
			conn_close(l->c, SS_EAUTH, "the peer's node certificate was revoked");
		}
	}
}

int peer_link_get(struct peer *p, const char *node_id, const char *addr, struct peer_link **out)
{
	if (p->closing || !p->server)
		return SS_ECLOSED;
	if (!ident_valid(node_id) || strlen(addr) >= sizeof((struct peer_link *)0)->addr)
		return SS_EINVAL;
	for (struct peer_link *l = p->links; l; l = l->next) {
		if (l->out && !conn_closing(l->c) && !strcmp(l->node, node_id) && !strcmp(l->addr, addr)) {
			*out = l;
			return 0;
		}
	}
	if (p->n_out >= PEER_MAX_OUT)
		return SS_ELIMIT;
	char host[64];
	uint16_t port;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (addr_split(addr, host, sizeof host, &port) != 0 ||
	    (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	     uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0))
		return SS_EINVAL;
	struct peer_link *l = xcalloc(1, sizeof *l);
	l->p = p;
	l->out = true;
	snprintf(l->node, sizeof l->node, "%s", node_id);
	snprintf(l->addr, sizeof l->addr, "%s", addr);
	buf_init(&l->pending);
	l->next = p->links;
	p->links = l;
	p->n_out++;
	p->handles++;
	conn_connect(p->loop, (const struct sockaddr *)&ss, p->client, node_id, p->cert, p->key,
		     &link_cbs, &peer_limits, l, &l->c);
	conn_set_deadline(l->c, PEER_HANDSHAKE_MS);
	*out = l;
	return 0;
}

int peer_send(struct peer_link *l, uint16_t type, const ProtobufCMessage *m)
{
	if (conn_closing(l->c))
		return SS_ECLOSED;
	if (l->open)
		return conn_send(l->c, type, m);
	/* Not open yet: frame it now and send it after the handshake. */
	size_t n = protobuf_c_message_get_packed_size(m);
	if (n > FRAME_MAX_DEFAULT)
		return SS_EINVAL;
	uint8_t hdr[FRAME_HDR_LEN];
	frame_header(hdr, type, (uint32_t)n);
	buf_append(&l->pending, hdr, sizeof hdr);
	buf_reserve(&l->pending, n);
	protobuf_c_message_pack(m, l->pending.data + l->pending.len);
	l->pending.len += n;
	return 0;
}

void peer_link_outstanding(struct peer_link *l, size_t n)
{
	l->outstanding = n;
	if (!l->open || conn_closing(l->c))
		return;
	conn_set_deadline(l->c, n ? PEER_ANSWER_MS : PEER_IDLE_MS);
}

void peer_set_probes(struct peer *p, Seeswarm__V1__BlobSource *const *peers, size_t n)
{
	struct probe old[MSG_MAX_PEERS];
	size_t n_old = p->n_probes;
	memcpy(old, p->probes, sizeof old);
	p->n_probes = 0;
	for (size_t i = 0; i < n && p->n_probes < MSG_MAX_PEERS; i++) {
		struct probe *pr = &p->probes[p->n_probes];
		memset(pr, 0, sizeof *pr);
		snprintf(pr->node, sizeof pr->node, "%s", peers[i]->node_id);
		snprintf(pr->addr, sizeof pr->addr, "%s", peers[i]->addr);
		for (size_t k = 0; k < n_old; k++)
			if (!strcmp(old[k].node, pr->node) && !strcmp(old[k].addr, pr->addr))
				*pr = old[k];
		p->n_probes++;
	}
}

void peer_probe_tick(struct peer *p)
{
	for (size_t i = 0; i < p->n_probes && p->server && !p->closing; i++) {
		struct probe *pr = &p->probes[i];
		struct peer_link *l = NULL;
		if (peer_link_get(p, pr->node, pr->addr, &l) != 0 || !l->open)
			continue; /* connecting: the next tick measures */
		Seeswarm__V1__Heartbeat hb = SEESWARM__V1__HEARTBEAT__INIT;
		hb.seq = ++p->next_seq;
		pr->seq = hb.seq;
		pr->sent_ns = uv_hrtime();
		if (conn_send(l->c, MSG_HEARTBEAT, &hb.base) != 0)
			pr->seq = 0;
		else if (l->outstanding == 0)
			conn_set_deadline(l->c, PEER_ANSWER_MS);
	}
}

size_t peer_take_rtts(struct peer *p, struct peer_rtt *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_probes && n < max; i++) {
		if (!p->probes[i].fresh)
			continue;
		p->probes[i].fresh = false;
		out[n++] = (struct peer_rtt){.node = p->probes[i].node, .rtt_us = p->probes[i].rtt_us};
	}
	return n;
}

const char *peer_link_node(const struct peer_link *l)
{
	return l->open ? l->node : "";
}

const struct peer_stats *peer_stats(const struct peer *p)
{
	return &p->st;
}

static void on_listener_closed(uv_handle_t *h)
{
	handle_gone(h->data);
}

void peer_close(struct peer *p)
{
	if (!p)
		return;
	p->closing = true;
	if (p->handles == 0) {
		peer_free(p);
		return;
	}
	if (p->listening)
		uv_close((uv_handle_t *)&p->listener, on_listener_closed);
	for (struct peer_link *l = p->links; l; l = l->next)
		conn_close(l->c, 0, "agent stopping");
}
