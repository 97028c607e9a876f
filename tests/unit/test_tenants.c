/* test_tenants.c - tenant tokens and uploads (src/manager/tenants.h) over a real SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/store.h"
#include "manager/tenants.h"
#include "fixture.h"

struct fx {
	struct fx_store st;
	struct tenants *t;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	log_init("test", LOG_WARN);
	fx_store_open(&f->st, "tenants");
	assert_int_equal(tenants_new(&f->t, f->st.store), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	tenants_free(f->t);
	fx_store_close(&f->st);
	free(f);
	return 0;
}

/* Closes everything and opens the store and the table again, as after a restart. */
static void reopen(struct fx *f)
{
	tenants_free(f->t);
	fx_store_reopen(&f->st);
	assert_int_equal(tenants_new(&f->t, f->st.store), 0);
}

/* Creates a token; returns the JSON answer and copies the secret and id out. */
static void create(struct fx *f, const char *tenant, char secret[69], char id[17])
{
	char why[256];
	json_t *o = NULL;
	assert_int_equal(tenants_token_create(f->t, tenant, 0, false, &o, why, sizeof why), 0);
	const char *tok = json_string_value(json_object_get(o, "token"));
	assert_non_null(tok);
	assert_int_equal(strlen(tok), 68);
	assert_memory_equal(tok, "sst_", 4);
	assert_string_equal(json_string_value(json_object_get(o, "tenant")), tenant);
	snprintf(secret, 69, "%s", tok);
	snprintf(id, 17, "%s", json_string_value(json_object_get(o, "id")));
	json_decref(o);
}

static const char *lookup(const struct fx *f, const char *secret)
{
	uint8_t h[SHA256_LEN];
	sha256(secret, strlen(secret), h);
	return tenants_token_lookup(f->t, h, time_wall_ms(), NULL);
}

static void test_tokens_name_their_tenant_survive_a_restart_and_revoke(void **state)
{
	struct fx *f = *state;
	char a[69], b[69], ida[17], idb[17];
	create(f, "alice", a, ida);
	create(f, "bob", b, idb);
	assert_string_not_equal(a, b);
	assert_string_equal(lookup(f, a), "alice");
	assert_string_equal(lookup(f, b), "bob");
	/* A token one character off names nobody. */
	char c[69];
	memcpy(c, a, sizeof c);
	c[67] = c[67] == '0' ? '1' : '0';
	assert_null(lookup(f, c));
	/* Creation flushed: no further flush is needed for the tokens to survive. */
	reopen(f);
	assert_string_equal(lookup(f, a), "alice");
	assert_int_equal(tenants_token_count(f->t), 2);
	/* The list holds ids and tenants, never a secret or its hash. */
	json_t *l = tenants_tokens_json(f->t);
	char *text = json_dumps(l, JSON_COMPACT);
	assert_null(strstr(text, a + 4));
	assert_non_null(strstr(text, ida));
	free(text);
	json_decref(l);
	assert_int_equal(tenants_token_revoke(f->t, ida), 0);
	assert_null(lookup(f, a));
	assert_int_equal(tenants_token_revoke(f->t, ida), SS_ENOTFOUND);
	assert_int_equal(tenants_token_revoke(f->t, "not-an-id"), SS_ENOTFOUND);
	reopen(f);
	assert_null(lookup(f, a));
	assert_string_equal(lookup(f, b), "bob");
}

static void test_bad_tenant_names_are_refused(void **state)
{
	struct fx *f = *state;
	char why[256];
	json_t *o = NULL;
	const char *bad[] = {"", "-x", "a b", "a/b", "x\n",
			     "0123456789012345678901234567890123456789012345678901234567890123"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(tenants_token_create(f->t, bad[i], 0, false, &o, why, sizeof why), SS_EINVAL);
		assert_null(o);
		assert_non_null(strstr(why, "tenant"));
	}
	assert_int_equal(tenants_token_count(f->t), 0);
}

static void test_uploads_are_per_tenant_durable_and_expire(void **state)
{
	struct fx *f = *state;
	uint8_t d1[SHA256_LEN], d2[SHA256_LEN];
	sha256("one", 3, d1);
	sha256("two", 3, d2);
	assert_int_equal(tenants_upload_add(f->t, "alice", d1, 1, NULL, 0), 0);
	assert_int_equal(tenants_upload_add(f->t, "alice", d1, 1, NULL, 0), 0); /* a refresh, not a second record */
	assert_int_equal(tenants_upload_add(f->t, "bob", d2, 1, NULL, 0), 0);
	assert_int_equal(tenants_upload_count(f->t), 2);
	assert_true(tenants_upload_has(f->t, "alice", d1));
	assert_false(tenants_upload_has(f->t, "bob", d1));
	assert_false(tenants_upload_has(f->t, "alice", d2));
	assert_int_equal(store_flush(f->st.store), 0);
	reopen(f);
	assert_true(tenants_upload_has(f->t, "alice", d1));
	assert_true(tenants_upload_has(f->t, "bob", d2));
	/* Nothing is older than a minute ago; everything is older than a minute from now. */
	assert_int_equal(tenants_expire(f->t, time_wall_ms() - 60000), 0);
	assert_int_equal(tenants_expire(f->t, time_wall_ms() + 60000), 2);
	assert_false(tenants_upload_has(f->t, "alice", d1));
	assert_int_equal(store_flush(f->st.store), 0);
	reopen(f);
	assert_int_equal(tenants_upload_count(f->t), 0);
}

/* The i-th digest of a fill. */
static void nth(uint32_t i, uint8_t d[SHA256_LEN])
{
	sha256(&i, sizeof i, d);
}

static void test_uploads_are_bounded_per_tenant_and_in_all(void **state)
{
	struct fx *f = *state;
	uint8_t d[SHA256_LEN];
	const char *who[] = {"t0", "t1", "t2", "t3"};
	assert_int_equal(ARRAY_LEN(who) * TENANTS_MAX_UPLOADS_EACH, TENANTS_MAX_UPLOADS);
	for (uint32_t i = 0; i < TENANTS_MAX_UPLOADS_EACH; i++) {
		nth(i, d);
		assert_int_equal(tenants_upload_add(f->t, "t0", d, 1, NULL, 0), 0);
	}
	/* One tenant's quota leaves the others theirs. */
	nth(TENANTS_MAX_UPLOADS, d);
	assert_int_equal(tenants_upload_add(f->t, "t0", d, 1, NULL, 0), SS_EQUOTA);
	assert_false(tenants_upload_has(f->t, "t0", d));
	nth(0, d);
	assert_int_equal(tenants_upload_add(f->t, "t0", d, 1, NULL, 0), 0); /* a refresh is not a new record */
	for (size_t k = 1; k < ARRAY_LEN(who); k++) {
		for (uint32_t i = 0; i < TENANTS_MAX_UPLOADS_EACH; i++) {
			nth((uint32_t)k * TENANTS_MAX_UPLOADS_EACH + i, d);
			assert_int_equal(tenants_upload_add(f->t, who[k], d, 1, NULL, 0), 0);
		}
	}
	/* The manager's bound holds for a tenant under its quota too. */
	nth(TENANTS_MAX_UPLOADS + 1, d);
	assert_int_equal(tenants_upload_add(f->t, "t4", d, 1, NULL, 0), SS_ELIMIT);
	/* Every entry is still found through the index. */
	for (uint32_t i = 0; i < TENANTS_MAX_UPLOADS; i += 997) {
		nth(i, d);
		assert_true(tenants_upload_has(f->t, who[i / TENANTS_MAX_UPLOADS_EACH], d));
	}
	/* After expiry the counts start again. */
	assert_int_equal(tenants_expire(f->t, time_wall_ms() + 60000), TENANTS_MAX_UPLOADS);
	nth(TENANTS_MAX_UPLOADS, d);
	assert_int_equal(tenants_upload_add(f->t, "t0", d, 1, NULL, 0), 0);
	assert_int_equal(tenants_upload_count(f->t), 1);
}

static void test_upload_bytes_are_bounded_per_tenant_durable_and_freed_by_expiry(void **state)
{
	struct fx *f = *state;
	char why[300];
	uint8_t d[SHA256_LEN];
	tenants_set_upload_bytes_max(f->t, 1000);
	nth(1, d);
	assert_int_equal(tenants_upload_add(f->t, "alice", d, 600, why, sizeof why), 0);
	/* Checked before the bytes arrive: 400 more fit, 401 do not. */
	nth(2, d);
	assert_int_equal(tenants_upload_room(f->t, "alice", d, 400, why, sizeof why), 0);
	assert_int_equal(tenants_upload_room(f->t, "alice", d, 401, why, sizeof why), SS_EQUOTA);
	assert_non_null(strstr(why, "tenant alice has uploaded 600 bytes and this blob has 401"));
	assert_int_equal(tenants_upload_add(f->t, "alice", d, 401, why, sizeof why), SS_EQUOTA);
	assert_false(tenants_upload_has(f->t, "alice", d));
	/* A blob over the whole quota, and a size that would overflow the sum. */
	assert_int_equal(tenants_upload_room(f->t, "bob", d, 1001, why, sizeof why), SS_EQUOTA);
	assert_int_equal(tenants_upload_room(f->t, "alice", d, UINT64_MAX, why, sizeof why), SS_EQUOTA);
	/* Another tenant has its own quota; a refresh of a known blob costs nothing. */
	assert_int_equal(tenants_upload_add(f->t, "bob", d, 1000, why, sizeof why), 0);
	nth(1, d);
	assert_int_equal(tenants_upload_room(f->t, "alice", d, 600, why, sizeof why), 0);
	assert_int_equal(tenants_upload_add(f->t, "alice", d, 600, why, sizeof why), 0);
	assert_int_equal(tenants_upload_bytes(f->t, "alice"), 600);
	/* Sizes are durable; a record from before sizes were kept counts 0 bytes. */
	store_put(f->st.store, "uploads", "carol/0000000000000000000000000000000000000000000000000000000000000000",
		  "5", 1);
	assert_int_equal(store_flush(f->st.store), 0);
	reopen(f);
	tenants_set_upload_bytes_max(f->t, 1000);
	assert_int_equal(tenants_upload_bytes(f->t, "alice"), 600);
	assert_int_equal(tenants_upload_bytes(f->t, "bob"), 1000);
	assert_int_equal(tenants_upload_bytes(f->t, "carol"), 0);
	assert_int_equal(tenants_upload_count(f->t), 3);
	nth(2, d);
	assert_int_equal(tenants_upload_room(f->t, "alice", d, 401, why, sizeof why), SS_EQUOTA);
	/* Expiry frees the bytes; no quota at all lets anything in. */
	assert_int_equal(tenants_expire(f->t, time_wall_ms() + 60000), 3);
	assert_int_equal(tenants_upload_bytes(f->t, "alice"), 0);
	assert_int_equal(tenants_upload_add(f->t, "alice", d, 1000, why, sizeof why), 0);
	tenants_set_upload_bytes_max(f->t, 0);
	nth(3, d);
	assert_int_equal(tenants_upload_add(f->t, "alice", d, 1ull << 40, why, sizeof why), 0);
}

static void test_tokens_expire_at_their_time_and_across_a_restart(void **state)
{
	struct fx *f = *state;
	char why[256], a[69], ida[17];
	json_t *o = NULL;
	uint8_t h[SHA256_LEN];
	assert_int_equal(tenants_token_create(f->t, "bob", TENANTS_MAX_TTL_S + 1, false, &o, why, sizeof why),
			 SS_EINVAL);
	assert_null(o);
	assert_non_null(strstr(why, "at most"));
	create(f, "alice", a, ida); /* never expires */
	int64_t before = time_wall_ms();
	assert_int_equal(tenants_token_create(f->t, "bob", 60, false, &o, why, sizeof why), 0);
	const char *tok = json_string_value(json_object_get(o, "token"));
	sha256(tok, strlen(tok), h);
	int64_t exp = json_integer_value(json_object_get(o, "expires_ms"));
	assert_true(exp >= before + 60000 && exp <= time_wall_ms() + 60000);
	/* The list shows the expiry of the token that has one, and none for the other. */
	json_t *l = tenants_tokens_json(f->t);
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(l, "tokens"), i, e) {
		bool is_bob = !strcmp(json_string_value(json_object_get(e, "tenant")), "bob");
		assert_int_equal(json_integer_value(json_object_get(e, "expires_ms")), is_bob ? exp : 0);
		assert_int_equal(json_object_get(e, "expires_ms") != NULL, is_bob);
	}
	assert_int_equal(json_array_size(json_object_get(l, "tokens")), 2);
	json_decref(l);
	/* It works until its expiry, to the millisecond, and not at or after it. */
	assert_string_equal(tenants_token_lookup(f->t, h, exp - 1, NULL), "bob");
	assert_null(tenants_token_lookup(f->t, h, exp, NULL));
	assert_null(tenants_token_lookup(f->t, h, exp + 3600000, NULL));
	/* The expiry is durable. */
	reopen(f);
	assert_string_equal(tenants_token_lookup(f->t, h, exp - 1, NULL), "bob");
	assert_null(tenants_token_lookup(f->t, h, exp, NULL));
	/* Clean-up deletes only expired tokens, and for good. */
	assert_int_equal(tenants_tokens_expire(f->t, exp - 1), 0);
	assert_int_equal(tenants_tokens_expire(f->t, exp), 1);
	assert_int_equal(tenants_token_count(f->t), 1);
	reopen(f);
	assert_int_equal(tenants_token_count(f->t), 1);
	assert_null(tenants_token_lookup(f->t, h, exp - 1, NULL));
	sha256(a, strlen(a), h);
	assert_string_equal(tenants_token_lookup(f->t, h, INT64_MAX, NULL), "alice");
	json_decref(o);
}

static void test_read_only_tokens_say_so_across_a_restart(void **state)
{
	struct fx *f = *state;
	char why[256], a[69], ida[17];
	json_t *o = NULL;
	uint8_t h[SHA256_LEN], ha[SHA256_LEN];
	create(f, "alice", a, ida);
	sha256(a, strlen(a), ha);
	assert_int_equal(tenants_token_create(f->t, "alice", 0, true, &o, why, sizeof why), 0);
	assert_true(json_is_true(json_object_get(o, "read_only")));
	const char *tok = json_string_value(json_object_get(o, "token"));
	sha256(tok, strlen(tok), h);
	for (int round = 0; round < 2; round++) {
		bool ro = false;
		assert_string_equal(tenants_token_lookup(f->t, h, time_wall_ms(), &ro), "alice");
		assert_true(ro);
		assert_string_equal(tenants_token_lookup(f->t, ha, time_wall_ms(), &ro), "alice");
		assert_false(ro);
		reopen(f); /* the role is durable */
	}
	/* An unknown token is not read-only either: it is nothing. */
	bool ro = true;
	uint8_t zero[SHA256_LEN] = {0};
	assert_null(tenants_token_lookup(f->t, zero, time_wall_ms(), &ro));
	assert_false(ro);
	/* A record from before roles existed reads and writes. */
	char hex[2 * SHA256_LEN + 1];
	hex_encode(zero, SHA256_LEN, hex);
	char *rec = xasprintf("{\"tenant\":\"old\",\"sha256\":\"%s\",\"created_ms\":1,\"expires_ms\":0}", hex);
	store_put(f->st.store, "tokens", "00000000000000aa", rec, strlen(rec));
	assert_int_equal(store_flush(f->st.store), 0);
	free(rec);
	reopen(f);
	ro = true;
	assert_string_equal(tenants_token_lookup(f->t, zero, time_wall_ms(), &ro), "old");
	assert_false(ro);
	json_decref(o);
}

static void test_usage_counts_tokens_and_uploads_per_tenant(void **state)
{
	struct fx *f = *state;
	char why[256], a[69], ida[17];
	json_t *o = NULL;
	uint8_t d1[SHA256_LEN] = {1}, d2[SHA256_LEN] = {2};
	create(f, "alice", a, ida);
	assert_int_equal(tenants_token_create(f->t, "alice", 0, true, &o, why, sizeof why), 0);
	json_decref(o);
	create(f, "bob", a, ida);
	assert_int_equal(tenants_upload_add(f->t, "alice", d1, 100, NULL, 0), 0);
	assert_int_equal(tenants_upload_add(f->t, "alice", d2, 50, NULL, 0), 0);
	assert_int_equal(tenants_upload_add(f->t, "carol", d1, 100, NULL, 0), 0);
	json_t *by = json_pack("{s:{s:i}}", "alice", "other", 7); /* what others added stays */
	tenants_usage(f->t, by);
	json_t *want = json_pack("{s:{s:i,s:i,s:i,s:i,s:i},s:{s:i,s:i},s:{s:i,s:i}}", "alice", "other", 7,
				 "tokens", 2, "tokens_read_only", 1, "uploads", 2, "upload_bytes", 150, "bob",
				 "tokens", 1, "tokens_read_only", 0, "carol", "uploads", 1, "upload_bytes", 100);
	if (!json_equal(by, want)) {
		char *got = json_dumps(by, JSON_SORT_KEYS);
		fail_msg("usage: %s", got);
		free(got);
	}
	json_decref(by);
	json_decref(want);
}

static void test_corrupt_records_are_skipped(void **state)
{
	struct fx *f = *state;
	char a[69], ida[17];
	create(f, "alice", a, ida);
	store_put(f->st.store, "tokens", "0123456789abcdef", "{\"tenant\":\"x y\",\"sha256\":\"00\"}", 30);
	store_put(f->st.store, "tokens", "short", "{}", 2);
	store_put(f->st.store, "uploads", "alice/zz", "1", 1);
	store_put(f->st.store, "uploads", "noslash", "1", 1);
	store_put(f->st.store, "uploads", "-bad/00", "1", 1);
	assert_int_equal(store_flush(f->st.store), 0);
	reopen(f);
	assert_int_equal(tenants_token_count(f->t), 1);
	assert_string_equal(lookup(f, a), "alice");
	assert_int_equal(tenants_upload_count(f->t), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tokens_name_their_tenant_survive_a_restart_and_revoke,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_tenant_names_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uploads_are_per_tenant_durable_and_expire, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uploads_are_bounded_per_tenant_and_in_all, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_upload_bytes_are_bounded_per_tenant_durable_and_freed_by_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens_expire_at_their_time_and_across_a_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_only_tokens_say_so_across_a_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_counts_tokens_and_uploads_per_tenant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_records_are_skipped, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
