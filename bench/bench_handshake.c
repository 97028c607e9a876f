/*
 * bench_handshake.c - CPU cost of one mutual TLS 1.3 handshake (client and
 * server in one process, over memory), with the server's record offload off
 * and on. usage: bench_handshake CA_DIR [N]
 * CA_DIR holds ca.key/ca.pem (created if missing).
 */
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "attest/ca.h"
#include "core/core.h"
#include "net/tls.h"

static void pump(struct tls *a, struct tls *b)
{
	struct buf x, p;
	buf_init(&x);
	buf_init(&p);
	for (int i = 0; i < 6; i++) {
		x.len = 0;
		tls_take_out(a, &x);
		if (x.len)
			tls_feed(b, x.data, x.len);
		p.len = 0;
		tls_read(b, &p);
		x.len = 0;
		tls_take_out(b, &x);
		if (x.len)
			tls_feed(a, x.data, x.len);
		p.len = 0;
		tls_read(a, &p);
	}
	buf_free(&x);
	buf_free(&p);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_handshake CA_DIR [N]\n");
		return 2;
	}
	const char *dir = argv[1];
	int n = argc > 2 ? atoi(argv[2]) : 500;
	bool created;
	struct ca *ca;
	if (dir_ensure(dir, 0700) || ca_init_dir(dir, &created) || ca_load(&ca, dir))
		return 1;
	char *cap = xasprintf("%s/ca.pem", dir);
	EVP_PKEY *sk, *ck;
	X509 *sc, *cc;
	const char *dns[] = {TLS_MANAGER_NAME, NULL};
	struct ca_issue_opts so = {.common_name = TLS_MANAGER_NAME, .dns_sans = dns,
				   .lifetime_s = 3600, .usage = CA_USAGE_SERVER};
	struct ca_issue_opts co = {.common_name = "bench", .lifetime_s = 3600, .usage = CA_USAGE_CLIENT};
	crypto_gen_key(&sk);
	crypto_gen_key(&ck);
	ca_issue(ca, sk, &so, &sc);
	ca_issue(ca, ck, &co, &cc);
	for (int off = 0; off < 2; off++) {
		struct tls_ctx *s, *c;
		tls_ctx_new(&s, true, cap, sc, sk);
		tls_ctx_new(&c, false, cap, cc, ck);
		tls_ctx_set_offload(s, off);
		uint64_t t0 = uv_hrtime();
		int ok = 0;
		for (int i = 0; i < n; i++) {
			struct tls *a = tls_new(c, TLS_MANAGER_NAME), *b = tls_new(s, NULL);
			tls_start(a);
			pump(a, b);
			ok += tls_handshake_done(b) && tls_offloaded(b) == off;
			tls_free(a);
			tls_free(b);
		}
		printf("offload=%d handshakes=%d ok=%d us_per_handshake_pair=%.1f\n", off, n, ok,
		       (double)(uv_hrtime() - t0) / 1e3 / n);
		tls_ctx_free(s);
		tls_ctx_free(c);
	}
	X509_free(sc);
	X509_free(cc);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ck);
	ca_free(ca);
	free(cap);
	return 0;
}
