/*
 * loadgen.c - opens N mutual-TLS agent connections to a manager, attests each
 * with sim evidence and heartbeats at a fixed interval, all on one libuv loop.
 *
 * usage: loadgen --manager-dir DIR --join HOST:PORT -n N [--rate R/s]
 *                [--hb-ms 1000] [--hold S]
 *
 * It issues one certificate per virtual agent from the manager's CA (one
 * shared key), ramps connections at R per second, and prints admission rate,
 * latency percentiles and heartbeat acknowledgements as key=value lines.
 *
 * Virtual agents answer every challenge, including re-attestations while
 * admitted. During the hold, each heartbeat's round trip (send to ack) is
 * recorded, split into "burst" samples (within 1 s of a re-attestation
 * challenge reaching any agent) and "calm" ones, to show whether
 * re-attestation disturbs heartbeat handling.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "attest/attest.h"
#include "attest/ca.h"
#include "core/core.h"
#include "net/conn.h"
#include "net/msg.h"

struct vagent {
	struct lg *lg;
	struct conn *conn;
	X509 *cert;
	char id[32];
	uint64_t t_connect, t_admitted;
	uint64_t next_hb;
	uint64_t seq;
	uint64_t hb_sent_ns;      /* when heartbeat seq was sent */
	bool admitted;
};

struct lg {
	uv_loop_t *loop;
	struct tls_ctx *tls;
	EVP_PKEY *key;
	uint8_t *spki;
	size_t spki_len;
	struct sockaddr_storage addr;
	struct vagent *va;
	size_t n, started, admitted, closed, rejected;
	uint64_t acks, hbs_sent;
	uint32_t rate, hb_ms;
	uint64_t t0, t_all_admitted, hold_ms, t_hold_start;
	uv_timer_t ramp, tick;
	bool done;
	uint64_t reattests;        /* challenges received while admitted */
	uint64_t last_reattest_ms; /* uv_now of the latest one */
	uint64_t *rtt_burst, *rtt_calm;
	size_t n_burst, n_calm, cap_burst, cap_calm;
	int mpid;                  /* manager pid to sample, 0 = none */
	uint64_t cpu_ticks0;       /* manager utime+stime at the start of the hold */
	uint64_t hold_t0_ns;
};

/* Reads utime+stime (clock ticks) of pid from /proc. */
static uint64_t proc_cpu_ticks(int pid)
{
	char path[64], *text = NULL;
	uint64_t ticks = 0;
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (file_read(path, 4096, &text, NULL) != 0)
		return 0;
	char *p = strrchr(text, ')');
	unsigned long ut = 0, st = 0;
	/* Fields after the command: state(3) ... utime(14) stime(15). */
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
		ticks = ut + st;
	free(text);
	return ticks;
}

/* Reads a "VmRSS:"-style field in kB from /proc/pid/status. */
static uint64_t proc_status_kb(int pid, const char *field)
{
	char path[64], *text = NULL;
	uint64_t kb = 0;
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	if (file_read(path, 65536, &text, NULL) != 0)
		return 0;
	char *p = strstr(text, field);
	if (p)
		kb = strtoull(p + strlen(field), NULL, 10);
	free(text);
	return kb;
}

static void va_on_open(struct conn *c)
{
	struct vagent *v = conn_data(c);
	Seeswarm__V1__Hello h = SEESWARM__V1__HELLO__INIT;
	Seeswarm__V1__Capabilities caps = SEESWARM__V1__CAPABILITIES__INIT;
	char *ev[] = {"sim"};
	caps.cpu_cores = 2;
	caps.memory_bytes = 1ull << 30;
	caps.tee_type = "sim";
	h.protocol_version = PROTOCOL_VERSION;
	h.agent_id = v->id;
	h.agent_version = "loadgen";
	h.capabilities = &caps;
	h.evidence_types = ev;
	h.n_evidence_types = 1;
	conn_send(c, MSG_HELLO, &h.base);
}

static int va_on_frame(struct conn *c, uint16_t type, const uint8_t *p, uint32_t len)
{
	struct vagent *v = conn_data(c);
	struct lg *lg = v->lg;
	ProtobufCMessage *m;
	const char *why;
	int rc = msg_decode(type, p, len, &m, &why);
	if (rc)
		return rc;
	if (type == MSG_CHALLENGE) {
		Seeswarm__V1__Challenge *ch = (void *)m;
		if (v->admitted) {
			lg->reattests++;
			lg->last_reattest_ms = uv_now(lg->loop);
		}
		uint8_t rd[32], *evd;
		size_t evl;
		attest_binding(ch->nonce.data, ch->nonce.len, lg->spki, lg->spki_len, rd);
		attest_sim_attester.evidence(rd, &evd, &evl);
		Seeswarm__V1__Evidence e = SEESWARM__V1__EVIDENCE__INIT;
		e.evidence_type = "sim";
		e.evidence.data = evd;
		e.evidence.len = evl;
		conn_send(c, MSG_EVIDENCE, &e.base);
		free(evd);
	} else if (type == MSG_ADMITTED) {
		v->admitted = true;
		v->t_admitted = uv_hrtime();
		/* Spread heartbeats evenly over the interval. */
		v->next_hb = uv_now(lg->loop) + rand_below(lg->hb_ms);
		lg->admitted++;
		if (lg->admitted == lg->n) {
			lg->t_all_admitted = uv_hrtime();
			lg->t_hold_start = uv_now(lg->loop);
			lg->hold_t0_ns = uv_hrtime();
			if (lg->mpid)
				lg->cpu_ticks0 = proc_cpu_ticks(lg->mpid);
		}
	} else if (type == MSG_HEARTBEAT_ACK) {
		lg->acks++;
		Seeswarm__V1__HeartbeatAck *ack = (void *)m;
		if (lg->t_hold_start && ack->seq == v->seq && v->hb_sent_ns) {
			uint64_t rtt = uv_hrtime() - v->hb_sent_ns;
			bool burst = lg->last_reattest_ms && uv_now(lg->loop) - lg->last_reattest_ms < 1000;
			uint64_t **arr = burst ? &lg->rtt_burst : &lg->rtt_calm;
			size_t *n = burst ? &lg->n_burst : &lg->n_calm;
			size_t *cap = burst ? &lg->cap_burst : &lg->cap_calm;
			if (*n == *cap) {
				*cap = *cap ? 2 * *cap : 4096;
				*arr = xrealloc(*arr, *cap * sizeof **arr);
			}
			(*arr)[(*n)++] = rtt;
			v->hb_sent_ns = 0;
		}
	} else if (type == MSG_REJECTED) {
		lg->rejected++;
	}
	msg_free(m);
	return 0;
}

static void va_on_close(struct conn *c, int reason, const char *why)
{
	struct vagent *v = conn_data(c);
	v->lg->closed++;
	if (reason && !v->lg->done)
		fprintf(stderr, "loadgen: %s closed: %s (%s)\n", v->id, why, ss_strerror(reason));
	v->conn = NULL;
	v->admitted = false;
}

static const struct conn_cbs va_cbs = {va_on_open, va_on_frame, va_on_close};

static void start_one(struct lg *lg)
{
	struct vagent *v = &lg->va[lg->started++];
	v->t_connect = uv_hrtime();
	conn_connect(lg->loop, (struct sockaddr *)&lg->addr, lg->tls, "seeswarm-manager", v->cert,
		     lg->key, &va_cbs, NULL, v, &v->conn);
}

static void on_ramp(uv_timer_t *t)
{
	struct lg *lg = t->data;
	/* 10 ms ticks: rate/100 connections per tick. */
	size_t batch = lg->rate / 100 ? lg->rate / 100 : 1;
	for (size_t i = 0; i < batch && lg->started < lg->n; i++)
		start_one(lg);
	if (lg->started == lg->n)
		uv_timer_stop(t);
}

static void on_tick(uv_timer_t *t)
{
	struct lg *lg = t->data;
	uint64_t now = uv_now(lg->loop);
	for (size_t i = 0; i < lg->started; i++) {
		struct vagent *v = &lg->va[i];
		if (!v->admitted || !v->conn || now < v->next_hb)
			continue;
		Seeswarm__V1__Heartbeat hb = SEESWARM__V1__HEARTBEAT__INIT;
		Seeswarm__V1__Load load = SEESWARM__V1__LOAD__INIT;
		load.cpu_permille = 10;
		hb.seq = ++v->seq;
		hb.load = &load;
		v->hb_sent_ns = uv_hrtime();
		conn_send(v->conn, MSG_HEARTBEAT, &hb.base);
		lg->hbs_sent++;
		v->next_hb += lg->hb_ms;
	}
	if (lg->t_hold_start && now - lg->t_hold_start >= lg->hold_ms)
		uv_stop(lg->loop);
	if (!lg->t_hold_start && now > 120000 + lg->t0 / 1000000) {
		fprintf(stderr, "loadgen: gave up waiting for admissions\n");
		uv_stop(lg->loop);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}


int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"manager-dir", required_argument, NULL, 'd'}, {"join", required_argument, NULL, 'j'},
		{"count", required_argument, NULL, 'n'},       {"rate", required_argument, NULL, 'r'},
		{"hb-ms", required_argument, NULL, 'b'},       {"hold", required_argument, NULL, 'H'},
		{"manager-pid", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *mdir = NULL, *join = "127.0.0.1:7400";
	struct lg lg;
	memset(&lg, 0, sizeof lg);
	lg.n = 1000;
	lg.rate = 2000;
	lg.hb_ms = 1000;
	lg.hold_ms = 10000;
	int c;
	while ((c = getopt_long(argc, argv, "d:j:n:r:b:H:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': mdir = optarg; break;
		case 'j': join = optarg; break;
		case 'n': lg.n = strtoul(optarg, NULL, 10); break;
		case 'r': lg.rate = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': lg.hb_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'H': lg.hold_ms = strtoull(optarg, NULL, 10) * 1000; break;
		case 'p': lg.mpid = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!mdir || lg.n == 0 || lg.hb_ms == 0) {
		fprintf(stderr, "usage: loadgen --manager-dir DIR [--join HOST:PORT] [-n N] [--rate R] [--hb-ms MS] [--hold S]\n");
		return 2;
	}
	log_init("loadgen", LOG_WARN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct ca *ca;
	if (ca_load(&ca, mdir) != 0) {
		fprintf(stderr, "loadgen: cannot load the CA from %s\n", mdir);
		return 1;
	}
	char *ca_path = xasprintf("%s/ca.pem", mdir);
	crypto_gen_key(&lg.key);
	crypto_spki_der(lg.key, &lg.spki, &lg.spki_len);
	lg.va = xcalloc(lg.n, sizeof *lg.va);
	uint64_t ti = uv_hrtime();
	for (size_t i = 0; i < lg.n; i++) {
		struct vagent *v = &lg.va[i];
		v->lg = &lg;
		snprintf(v->id, sizeof v->id, "lg-%06zu", i);
		struct ca_issue_opts o = {.common_name = v->id, .lifetime_s = 86400, .usage = CA_USAGE_CLIENT};
		if (ca_issue(ca, lg.key, &o, &v->cert) != 0) {
			fprintf(stderr, "loadgen: cannot issue certificates\n");
			return 1;
		}
	}
	fprintf(stderr, "loadgen: issued %zu certificates in %.2f s\n", lg.n,
		(double)(uv_hrtime() - ti) / 1e9);
	if (tls_ctx_new(&lg.tls, false, ca_path, NULL, NULL) != 0)
		return 1;
	char host[256];
	uint16_t port;
	if (addr_split(join, host, sizeof host, &port) != 0 ||
	    uv_ip4_addr(host, port, (struct sockaddr_in *)&lg.addr) != 0) {
		fprintf(stderr, "loadgen: --join must be IPv4:PORT\n");
		return 2;
	}
	lg.loop = uv_default_loop();
	uv_timer_init(lg.loop, &lg.ramp);
	uv_timer_init(lg.loop, &lg.tick);
	lg.ramp.data = lg.tick.data = &lg;
	lg.t0 = uv_hrtime();
	uv_timer_start(&lg.ramp, on_ramp, 0, 10);
	uv_timer_start(&lg.tick, on_tick, 10, 10);
	uv_run(lg.loop, UV_RUN_DEFAULT);
	lg.done = true;
	double mgr_cpu = -1;
	uint64_t rss_kb = 0, hwm_kb = 0;
	if (lg.mpid && lg.hold_t0_ns) {
		double secs = (double)(uv_hrtime() - lg.hold_t0_ns) / 1e9;
		uint64_t ticks = proc_cpu_ticks(lg.mpid) - lg.cpu_ticks0;
		mgr_cpu = 100.0 * ((double)ticks / (double)sysconf(_SC_CLK_TCK)) / secs;
		rss_kb = proc_status_kb(lg.mpid, "VmRSS:");
		hwm_kb = proc_status_kb(lg.mpid, "VmHWM:");
	}

	uint64_t *lat = xcalloc(lg.n, sizeof *lat);
	size_t k = 0;
	for (size_t i = 0; i < lg.n; i++)
		if (lg.va[i].t_admitted)
			lat[k++] = lg.va[i].t_admitted - lg.va[i].t_connect;
	qsort(lat, k, sizeof *lat, cmp_u64);
	double span = lg.t_all_admitted ? (double)(lg.t_all_admitted - lg.t0) / 1e9 : 0;
	printf("agents=%zu admitted=%zu rejected=%zu\n", lg.n, lg.admitted, lg.rejected);
	printf("admission_seconds=%.3f admission_rate=%.0f\n", span, span > 0 ? lg.n / span : 0);
	if (k)
		printf("admit_latency_ms_p50=%.2f admit_latency_ms_p99=%.2f\n", lat[k / 2] / 1e6,
		       lat[k * 99 / 100] / 1e6);
	printf("heartbeats_sent=%llu heartbeat_acks=%llu\n", (unsigned long long)lg.hbs_sent,
	       (unsigned long long)lg.acks);
	printf("reattestations_during_run=%llu\n", (unsigned long long)lg.reattests);
	if (lg.n_calm) {
		qsort(lg.rtt_calm, lg.n_calm, sizeof *lg.rtt_calm, cmp_u64);
		printf("hb_rtt_calm_samples=%zu hb_rtt_calm_ms_p50=%.2f hb_rtt_calm_ms_p99=%.2f\n", lg.n_calm,
		       lg.rtt_calm[lg.n_calm / 2] / 1e6, lg.rtt_calm[lg.n_calm * 99 / 100] / 1e6);
	}
	if (lg.n_burst) {
		qsort(lg.rtt_burst, lg.n_burst, sizeof *lg.rtt_burst, cmp_u64);
		printf("hb_rtt_burst_samples=%zu hb_rtt_burst_ms_p50=%.2f hb_rtt_burst_ms_p99=%.2f\n",
		       lg.n_burst, lg.rtt_burst[lg.n_burst / 2] / 1e6,
		       lg.rtt_burst[lg.n_burst * 99 / 100] / 1e6);
	}
	if (mgr_cpu >= 0)
		printf("manager_cpu_pct_of_one_core=%.1f manager_rss_mb=%.1f manager_peak_rss_mb=%.1f hold_seconds=%.1f\n",
		       mgr_cpu, rss_kb / 1024.0, hwm_kb / 1024.0, lg.hold_ms / 1000.0);
	fflush(stdout);
	for (size_t i = 0; i < lg.n; i++)
		if (lg.va[i].conn)
			conn_close(lg.va[i].conn, 0, "loadgen done");
	uv_close((uv_handle_t *)&lg.ramp, NULL);
	uv_close((uv_handle_t *)&lg.tick, NULL);
	uv_run(lg.loop, UV_RUN_DEFAULT);
	for (size_t i = 0; i < lg.n; i++)
		X509_free(lg.va[i].cert);
	free(lat);
	free(lg.rtt_burst);
	free(lg.rtt_calm);
	free(lg.va);
	free(lg.spki);
	free(ca_path);
	EVP_PKEY_free(lg.key);
	tls_ctx_free(lg.tls);
	ca_free(ca);
	return lg.admitted == lg.n ? 0 : 1;
}
