/* test_audit.c - the manager's audit trail (src/manager/audit.h) over a real SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/audit.h"
#include "manager/store.h"
#include "fixture.h"

struct fx {
	struct fx_store st;
	struct audit *a;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	log_init("test", LOG_ERROR);
	fx_store_open(&f->st, "audit");
	assert_int_equal(audit_open(&f->a, f->st.store), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	audit_close(f->a);
	fx_store_close(&f->st);
	free(f);
	return 0;
}

/* Commits, closes and opens everything again, as after a restart. */
static void reopen(struct fx *f)
{
	assert_int_equal(store_flush(f->st.store), 0);
	audit_close(f->a);
	fx_store_reopen(&f->st);
	assert_int_equal(audit_open(&f->a, f->st.store), 0);
}

static const char *field(json_t *page, size_t i, const char *name)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(page, "entries"), i), name));
}

static json_int_t num(json_t *page, size_t i, const char *name)
{
	return json_integer_value(json_object_get(json_array_get(json_object_get(page, "entries"), i), name));
}

static void test_entries_page_in_order_and_survive_a_restart(void **state)
{
	struct fx *f = *state;
	int64_t t0 = time_wall_ms();
	audit_add(f->a, "admin", "POST", "/v1/jobs", 201, "j-0123456789ab");
	audit_add(f->a, "tenant:blue", "DELETE", "/v1/jobs/j-0123456789ab", 403, NULL);
	audit_add(f->a, "manager", "node evicted", "agent-1", 0, "re-attestation failed\n\x1b[31m");
	assert_int_equal(audit_count(f->a), 3);
	assert_int_equal(audit_last_seq(f->a), 3);
	for (int round = 0; round < 2; round++) {
		json_t *p = audit_json(f->a, 0, 2);
		assert_int_equal(json_array_size(json_object_get(p, "entries")), 2);
		assert_int_equal(num(p, 0, "seq"), 1);
		assert_string_equal(field(p, 0, "actor"), "admin");
		assert_string_equal(field(p, 0, "action"), "POST");
		assert_string_equal(field(p, 0, "target"), "/v1/jobs");
		assert_int_equal(num(p, 0, "status"), 201);
		assert_string_equal(field(p, 0, "detail"), "j-0123456789ab");
		assert_true(num(p, 0, "ms") >= t0);
		assert_string_equal(field(p, 1, "detail"), "");
		assert_int_equal(json_integer_value(json_object_get(p, "next")), 2);
		assert_int_equal(json_integer_value(json_object_get(p, "last_seq")), 3);
		json_decref(p);
		p = audit_json(f->a, 2, 100);
		assert_int_equal(json_array_size(json_object_get(p, "entries")), 1);
		/* Control characters never reach a reader. */
		assert_string_equal(field(p, 0, "detail"), "re-attestation failed??[31m");
		assert_int_equal(num(p, 0, "status"), 0);
		assert_null(json_object_get(p, "next"));
		json_decref(p);
		p = audit_json(f->a, 3, 100);
		assert_int_equal(json_array_size(json_object_get(p, "entries")), 0);
		json_decref(p);
		reopen(f); /* the same after a restart */
	}
	/* Numbering goes on after a restart. */
	audit_add(f->a, "admin", "PUT", "/v1/blobs/00", 201, NULL);
	assert_int_equal(audit_last_seq(f->a), 4);
}

static void test_the_newest_entries_are_kept(void **state)
{
	struct fx *f = *state;
	char target[32];
	for (unsigned i = 1; i <= AUDIT_MAX + 5; i++) {
		snprintf(target, sizeof target, "/v1/jobs/%u", i);
		audit_add(f->a, "admin", "DELETE", target, 200, NULL);
	}
	assert_int_equal(audit_count(f->a), AUDIT_MAX);
	json_t *p = audit_json(f->a, 0, 1);
	assert_int_equal(num(p, 0, "seq"), 6);
	assert_string_equal(field(p, 0, "target"), "/v1/jobs/6");
	json_decref(p);
	p = audit_json(f->a, AUDIT_MAX + 3, AUDIT_PAGE_MAX + 50); /* the limit is capped */
	assert_int_equal(json_array_size(json_object_get(p, "entries")), 2);
	json_decref(p);
	/* The store keeps the same window. */
	reopen(f);
	assert_int_equal(audit_count(f->a), AUDIT_MAX);
	assert_int_equal(audit_last_seq(f->a), AUDIT_MAX + 5);
	p = audit_json(f->a, 0, 1);
	assert_int_equal(num(p, 0, "seq"), 6);
	json_decref(p);
}

static void test_corrupt_records_are_skipped(void **state)
{
	struct fx *f = *state;
	audit_add(f->a, "admin", "POST", "/v1/jobs", 201, NULL);
	static const char *const bad[][2] = {
		{"zz", "{\"actor\":\"a\",\"action\":\"b\",\"status\":1}"},
		{"0000000000000000", "{\"actor\":\"a\",\"action\":\"b\",\"status\":1}"},
		{"0000000000000002", "not json"},
		{"0000000000000003", "{\"actor\":7,\"action\":\"b\",\"status\":1}"},
		{"0000000000000004", "{\"actor\":\"a\",\"action\":\"b\",\"status\":1000}"},
		{"0000000000000005", "{\"actor\":\"a\",\"action\":\"b\"}"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		store_put(f->st.store, "audit", bad[i][0], bad[i][1], strlen(bad[i][1]));
	const char *good = "{\"actor\":\"a\",\"action\":\"b\",\"status\":2}";
	store_put(f->st.store, "audit", "0000000000000006", good, strlen(good));
	reopen(f);
	assert_int_equal(audit_count(f->a), 2);
	assert_int_equal(audit_last_seq(f->a), 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_entries_page_in_order_and_survive_a_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_newest_entries_are_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_records_are_skipped, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
