/*
 * test_tls.c - TLS 1.3 sessions over memory BIOs, and the server's record
 * offload, against plain OpenSSL clients.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "attest/ca.h"
#include "core/core.h"
#include "net/tls.h"
#include "fixture.h"

struct fixture {
	char dir[64];
	struct tls_ctx *sctx, *cctx;
	X509 *scert, *ccert;
	EVP_PKEY *skey, *ckey;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	fx_tmpdir(f->dir, sizeof f->dir, "tls");
	bool created;
	assert_int_equal(ca_init_dir(f->dir, &created), 0);
	struct ca *ca;
	assert_int_equal(ca_load(&ca, f->dir), 0);
	const char *dns[] = {TLS_MANAGER_NAME, NULL};
	struct ca_issue_opts so = {.common_name = TLS_MANAGER_NAME, .dns_sans = dns,
				   .lifetime_s = 3600, .usage = CA_USAGE_SERVER};
	struct ca_issue_opts co = {.common_name = "agent-7", .lifetime_s = 3600, .usage = CA_USAGE_CLIENT};
	assert_int_equal(crypto_gen_key(&f->skey), 0);
	assert_int_equal(crypto_gen_key(&f->ckey), 0);
	assert_int_equal(ca_issue(ca, f->skey, &so, &f->scert), 0);
	assert_int_equal(ca_issue(ca, f->ckey, &co, &f->ccert), 0);
	ca_free(ca);
	char *cap = xasprintf("%s/ca.pem", f->dir);
	assert_int_equal(tls_ctx_new(&f->sctx, true, cap, f->scert, f->skey), 0);
	assert_int_equal(tls_ctx_new(&f->cctx, false, cap, f->ccert, f->ckey), 0);
	free(cap);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	tls_ctx_free(f->sctx);
	tls_ctx_free(f->cctx);
	X509_free(f->scert);
	X509_free(f->ccert);
	EVP_PKEY_free(f->skey);
	EVP_PKEY_free(f->ckey);
	fx_rmtree(f->dir);
	free(f);
	return 0;
}

/* Moves ciphertext a -> b, and lets b process it (plaintext appended to pb). */
static int move(struct tls *a, struct tls *b, struct buf *pb)
{
	struct buf x;
	buf_init(&x);
	tls_take_out(a, &x);
	if (x.len)
		tls_feed(b, x.data, x.len);
	buf_free(&x);
	return tls_read(b, pb);
}

static void handshake(struct tls *c, struct tls *s)
{
	struct buf pc, ps;
	buf_init(&pc);
	buf_init(&ps);
	assert_int_equal(tls_start(c), 0);
	for (int i = 0; i < 6 && !(tls_handshake_done(c) && tls_handshake_done(s)); i++) {
		assert_int_equal(move(c, s, &ps), 0);
		assert_int_equal(move(s, c, &pc), 0);
	}
	assert_true(tls_handshake_done(c));
	assert_true(tls_handshake_done(s));
	buf_free(&pc);
	buf_free(&ps);
}

static void exchange(struct tls *c, struct tls *s, size_t size, int rounds)
{
	uint8_t *msg = xmalloc(size);
	for (int r = 0; r < rounds; r++) {
		rand_bytes(msg, size);
		struct buf got;
		buf_init(&got);
		assert_int_equal(tls_write(c, msg, size), 0);
		assert_int_equal(move(c, s, &got), 0);
		assert_int_equal(got.len, size);
		assert_memory_equal(got.data, msg, size);
		got.len = 0;
		assert_int_equal(tls_write(s, msg, size), 0);
		assert_int_equal(move(s, c, &got), 0);
		assert_int_equal(got.len, size);
		assert_memory_equal(got.data, msg, size);
		buf_free(&got);
	}
	free(msg);
}

static void run_session(struct fixture *f, bool offload)
{
	tls_ctx_set_offload(f->sctx, offload);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	handshake(c, s);
	assert_int_equal(tls_offloaded(s), offload);
	assert_string_equal(tls_peer_cn(s), "agent-7");
	size_t n;
	assert_non_null(tls_peer_spki(s, &n));
	assert_true(n > 50);
	exchange(c, s, 1, 300);        /* many small records: sequence numbers advance */
	exchange(c, s, 100000, 3);     /* split across several records */
	exchange(c, s, 16384, 2);      /* exactly one full record */
	/* The server closes; the client sees close_notify. */
	struct buf p;
	buf_init(&p);
	tls_shutdown(s);
	assert_int_equal(move(s, c, &p), SS_ECLOSED);
	buf_free(&p);
	tls_free(c);
	tls_free(s);
}

static void test_openssl_record_layer(void **state)
{
	run_session(*state, false);
}

static void test_offloaded_record_layer_interoperates(void **state)
{
	run_session(*state, true);
}

static void test_client_data_right_after_finished(void **state)
{
	/* The client's first records arrive in the same read as its Finished. */
	struct fixture *f = *state;
	tls_ctx_set_offload(f->sctx, true);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	struct buf pc, ps, x;
	buf_init(&pc);
	buf_init(&ps);
	buf_init(&x);
	assert_int_equal(tls_start(c), 0);
	assert_int_equal(move(c, s, &ps), 0);  /* ClientHello */
	assert_int_equal(move(s, c, &pc), 0);  /* server flight; client finishes */
	assert_true(tls_handshake_done(c));
	assert_int_equal(tls_write(c, "hello", 5), 0);
	assert_int_equal(move(c, s, &ps), 0);  /* Finished + app data together */
	assert_true(tls_offloaded(s));
	assert_int_equal(ps.len, 5);
	assert_memory_equal(ps.data, "hello", 5);
	buf_free(&pc);
	buf_free(&ps);
	buf_free(&x);
	tls_free(c);
	tls_free(s);
}

static void test_tampered_record_is_rejected(void **state)
{
	struct fixture *f = *state;
	tls_ctx_set_offload(f->sctx, true);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	handshake(c, s);
	struct buf x, p;
	buf_init(&x);
	buf_init(&p);
	assert_int_equal(tls_write(c, "secret", 6), 0);
	tls_take_out(c, &x);
	x.data[x.len - 3] ^= 1;
	tls_feed(s, x.data, x.len);
	assert_int_equal(tls_read(s, &p), SS_ETLS);
	assert_non_null(strstr(tls_error(s), "bad_record_mac"));
	assert_int_equal(p.len, 0);
	buf_free(&x);
	buf_free(&p);
	tls_free(c);
	tls_free(s);
}

static void test_replayed_record_is_rejected(void **state)
{
	struct fixture *f = *state;
	tls_ctx_set_offload(f->sctx, true);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	handshake(c, s);
	struct buf x, p;
	buf_init(&x);
	buf_init(&p);
	assert_int_equal(tls_write(c, "once", 4), 0);
	tls_take_out(c, &x);
	tls_feed(s, x.data, x.len);
	assert_int_equal(tls_read(s, &p), 0);
	assert_int_equal(p.len, 4);
	tls_feed(s, x.data, x.len); /* same record again: wrong sequence number */
	assert_int_equal(tls_read(s, &p), SS_ETLS);
	buf_free(&x);
	buf_free(&p);
	tls_free(c);
	tls_free(s);
}

static void test_bad_header_and_length(void **state)
{
	struct fixture *f = *state;
	tls_ctx_set_offload(f->sctx, true);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	handshake(c, s);
	struct buf p;
	buf_init(&p);
	const uint8_t huge[5] = {23, 3, 3, 0xff, 0xff};
	tls_feed(s, huge, sizeof huge);
	assert_int_equal(tls_read(s, &p), SS_ETLS);
	assert_non_null(strstr(tls_error(s), "length"));
	tls_free(s);
	s = tls_new(f->sctx, NULL);
	tls_free(c);
	c = tls_new(f->cctx, TLS_MANAGER_NAME);
	handshake(c, s);
	const uint8_t plain[5] = {22, 3, 3, 0, 4};
	tls_feed(s, plain, sizeof plain);
	assert_int_equal(tls_read(s, &p), SS_ETLS);
	buf_free(&p);
	tls_free(c);
	tls_free(s);
}

static void test_client_close_notify_reaches_offloaded_server(void **state)
{
	struct fixture *f = *state;
	tls_ctx_set_offload(f->sctx, true);
	struct tls *c = tls_new(f->cctx, TLS_MANAGER_NAME);
	struct tls *s = tls_new(f->sctx, NULL);
	handshake(c, s);
	struct buf p;
	buf_init(&p);
	tls_shutdown(c);
	assert_int_equal(move(c, s, &p), SS_ECLOSED);
	buf_free(&p);
	tls_free(c);
	tls_free(s);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_openssl_record_layer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offloaded_record_layer_interoperates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_data_right_after_finished, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_record_is_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replayed_record_is_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_header_and_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_close_notify_reaches_offloaded_server, setup, teardown),
	};
	return cmocka_run_group_tests_name("tls", tests, NULL, NULL);
}
