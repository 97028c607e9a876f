/* test_sched.c - the placement engine: feasibility, ranking, the limit step, explain, the queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/sched/sched.h"

#define NOW 1700000000000LL
#define GIB (1024ULL * 1024 * 1024)
#define MIB (1024ULL * 1024)

static const char *const std_keys[] = {"zone", "region"};
static const char *const std_vals[] = {"a", "eu"};
static const char *const std_feat[] = {"avx512", "aesni"};

/* A healthy, attested sev-snp node with 4 cores, 8 GiB, 100 GiB. */
static struct sched_node_info node_info(const char *id)
{
	struct sched_node_info i = {
		.id = id,
		.tee = "sev-snp",
		.hardware = true,
		.schedulable = true,
		.attest_ok = true,
		.attest_expires_ms = NOW + 3600 * 1000,
		.pool = "",
		.label_keys = std_keys,
		.label_values = std_vals,
		.n_labels = 2,
		.features = std_feat,
		.n_features = 2,
		.cpu_millicores = 4000,
		.memory_bytes = 8 * GIB,
		.disk_bytes = 100 * GIB,
		.price_per_hour = 1.0,
		.load = 0,
	};
	return i;
}

static struct sched_req task_req(void)
{
	struct sched_req r = {
		.tenant = "t",
		.cpu_millicores = 1000,
		.memory_bytes = 1 * GIB,
		.disk_bytes = 1 * GIB,
		.est_runtime_ms = 60000,
		.now_ms = NOW,
	};
	return r;
}

static struct sched *new_sched(uint64_t seed)
{
	struct sched_opts o = {.seed = seed};
	return sched_new(&o);
}

static struct sched_node *add(struct sched *s, const char *id)
{
	struct sched_node_info i = node_info(id);
	return sched_node_update(s, &i);
}

static const char *place_id(struct sched *s, const struct sched_req *r)
{
	struct sched_node *n = NULL;
	char why[256];
	int rc = sched_place(s, r, &n, why, sizeof why);
	if (rc != 0)
		fail_msg("sched_place failed: %s", why);
	return sched_node_id(n);
}

/* Finds the explain entry of a node. */
static json_t *explain_node(json_t *e, const char *id)
{
	size_t i;
	json_t *n;
	json_array_foreach(json_object_get(e, "nodes"), i, n)
	{
		if (!strcmp(json_string_value(json_object_get(n, "node")), id))
			return n;
	}
	fail_msg("node %s not in explain", id);
	return NULL;
}

static void expect_reason(json_t *e, const char *id, const char *reason)
{
	json_t *n = explain_node(e, id);
	assert_true(json_is_false(json_object_get(n, "feasible")));
	assert_string_equal(json_string_value(json_object_get(n, "reason")), reason);
}

static void test_feasibility_reasons(void **state)
{
	(void)state;
	struct sched *s = new_sched(1);
	struct sched_node_info i;

	i = node_info("n00-unsched");
	i.schedulable = false;
	sched_node_update(s, &i);
	i = node_info("n01-sim");
	i.tee = "sim";
	i.hardware = false;
	sched_node_update(s, &i);
	i = node_info("n02-soft-tdx");
	i.tee = "tdx";
	i.hardware = false;
	sched_node_update(s, &i);
	i = node_info("n03-notok");
	i.attest_ok = false;
	sched_node_update(s, &i);
	i = node_info("n04-warning");
	i.attest_warning = true;
	sched_node_update(s, &i);
	i = node_info("n05-expired");
	i.attest_expires_ms = NOW - 1;
	sched_node_update(s, &i);
	i = node_info("n06-pool");
	i.pool = "gold";
	sched_node_update(s, &i);
	static const char *const zb[] = {"b", "eu"};
	i = node_info("n07-zone-b");
	i.label_values = zb;
	sched_node_update(s, &i);
	i = node_info("n08-nofeat");
	i.n_features = 1; /* avx512 only */
	sched_node_update(s, &i);
	i = node_info("n09-small-cpu");
	i.cpu_millicores = 500;
	sched_node_update(s, &i);
	i = node_info("n10-small-mem");
	i.memory_bytes = 512 * MIB;
	sched_node_update(s, &i);
	i = node_info("n11-small-disk");
	i.disk_bytes = 100 * MIB;
	sched_node_update(s, &i);
	struct sched_node *full = add(s, "n12-full");
	sched_reserve(s, full, 3500, 0, 0);
	struct sched_node *fullmem = add(s, "n13-fullmem");
	sched_reserve(s, fullmem, 0, 7 * GIB + 1, 0);
	add(s, "n14-ok");
	i = node_info("n15-ok-silver");
	i.pool = "silver";
	sched_node_update(s, &i);

	static const char *const tees[] = {"sev-snp", "tdx"};
	static const char *const pools[] = {"", "silver"};
	static const char *const rk[] = {"zone"};
	static const char *const rv[] = {"a"};
	static const char *const rf[] = {"aesni"};
	struct sched_req r = task_req();
	r.tee = tees;
	r.n_tee = 2;
	r.hardware = true;
	r.affirming_only = true;
	r.pools = pools;
	r.n_pools = 2;
	r.label_keys = rk;
	r.label_values = rv;
	r.n_labels = 1;
	r.features = rf;
	r.n_features = 1;

	json_t *e = sched_explain(s, &r);
	expect_reason(e, "n00-unsched", "not schedulable");
	expect_reason(e, "n01-sim", "tee sim not allowed");
	expect_reason(e, "n02-soft-tdx", "not hardware-attested");
	expect_reason(e, "n03-notok", "attestation not affirming");
	expect_reason(e, "n04-warning", "attestation not affirming");
	expect_reason(e, "n05-expired", "attestation expired");
	expect_reason(e, "n06-pool", "pool gold not allowed");
	expect_reason(e, "n07-zone-b", "label zone=a missing");
	expect_reason(e, "n08-nofeat", "feature aesni missing");
	expect_reason(e, "n09-small-cpu", "insufficient cpu");
	expect_reason(e, "n10-small-mem", "insufficient memory");
	expect_reason(e, "n11-small-disk", "insufficient disk");
	expect_reason(e, "n12-full", "insufficient cpu");
	expect_reason(e, "n13-fullmem", "insufficient memory");
	assert_int_equal(json_integer_value(json_object_get(e, "feasible")), 2);
	assert_int_equal(json_integer_value(json_object_get(e, "total")), 16);
	json_decref(e);

	/* A warning appraisal is acceptable unless affirming_only. */
	r.affirming_only = false;
	e = sched_explain(s, &r);
	assert_true(json_is_true(json_object_get(explain_node(e, "n04-warning"), "feasible")));
	json_decref(e);

	/* The code allow-list applies to every node, after the pool check. */
	uint8_t code[SHA256_LEN], other[1][SHA256_LEN];
	memset(code, 0xaa, sizeof code);
	memset(other[0], 0xbb, sizeof other[0]);
	r.code_digest = code;
	r.code_allow = (const uint8_t(*)[SHA256_LEN])other;
	r.n_code_allow = 1;
	e = sched_explain(s, &r);
	expect_reason(e, "n14-ok", "code not allowed");
	expect_reason(e, "n06-pool", "pool gold not allowed");
	expect_reason(e, "n00-unsched", "not schedulable");
	assert_int_equal(json_integer_value(json_object_get(e, "feasible")), 0);
	assert_true(json_is_null(json_object_get(e, "chosen")));
	json_decref(e);
	memcpy(other[0], code, SHA256_LEN);
	r.affirming_only = true;
	assert_string_equal(place_id(s, &r), "n14-ok");

	sched_free(s);
}

static void test_why_summary(void **state)
{
	(void)state;
	struct sched *s = new_sched(1);
	struct sched_req r = task_req();
	struct sched_node *out = (struct sched_node *)1;
	char why[256];
	assert_int_equal(sched_place(s, &r, &out, why, sizeof why), SS_ENOTFOUND);
	assert_null(out);
	assert_string_equal(why, "no nodes");

	static const char *const zb[] = {"b", "eu"};
	char id[32];
	for (int k = 0; k < 8; k++) {
		snprintf(id, sizeof id, "sim%d", k);
		struct sched_node_info i = node_info(id);
		i.tee = "sim";
		i.hardware = false;
		if (k % 2)
			i.label_values = zb; /* a second class with the same reason */
		sched_node_update(s, &i);
	}
	for (int k = 0; k < 4; k++) {
		snprintf(id, sizeof id, "snp%d", k);
		struct sched_node_info i = node_info(id);
		i.memory_bytes = 512 * MIB;
		sched_node_update(s, &i);
	}
	static const char *const tees[] = {"sev-snp"};
	r.tee = tees;
	r.n_tee = 1;
	assert_int_equal(sched_place(s, &r, &out, why, sizeof why), SS_ENOTFOUND);
	assert_string_equal(why, "0 of 12 nodes feasible: 8 tee sim not allowed, 4 insufficient memory");

	/* A short buffer is truncated, not overrun. */
	char small[16];
	assert_int_equal(sched_place(s, &r, &out, small, sizeof small), SS_ENOTFOUND);
	assert_string_equal(small, "0 of 12 nodes f");
	sched_free(s);
}

static void test_binpack_vs_spread(void **state)
{
	(void)state;
	struct sched *s = new_sched(7);
	struct sched_node *a = add(s, "a");
	add(s, "b");
	sched_reserve(s, a, 2000, 4 * GIB, 0);
	struct sched_req r = task_req();
	assert_string_equal(place_id(s, &r), "a");
	r.spread = true;
	assert_string_equal(place_id(s, &r), "b");
	sched_free(s);
}

static void test_locality(void **state)
{
	(void)state;
	struct sched *s = new_sched(3);
	add(s, "a");
	add(s, "b");
	struct sched_node *c = add(s, "c");
	struct sched_node *holders[] = {c};
	struct sched_input in = {.size = 100 * MIB, .holders = holders, .n_holders = 1};
	struct sched_req r = task_req();
	r.inputs = &in;
	r.n_inputs = 1;
	assert_string_equal(place_id(s, &r), "c");
	json_t *e = sched_explain(s, &r);
	assert_string_equal(json_string_value(json_object_get(e, "chosen")), "c");
	json_t *sc = json_object_get(explain_node(e, "c"), "scores");
	assert_true(json_real_value(json_object_get(sc, "locality")) == 1.0);
	sc = json_object_get(explain_node(e, "a"), "scores");
	assert_true(json_real_value(json_object_get(sc, "locality")) == 0.0);
	json_decref(e);
	sched_free(s);
}

static void test_network(void **state)
{
	(void)state;
	struct sched *s = new_sched(3);
	/* The holder cannot run the task (wrong zone) but serves its input. */
	static const char *const zb[] = {"b", "eu"};
	struct sched_node_info i = node_info("holder");
	i.label_values = zb;
	struct sched_node *h = sched_node_update(s, &i);
	struct sched_node *near = add(s, "z-near");
	struct sched_node *far = add(s, "a-far");
	sched_set_rtt(s, h, near, 1.0);
	sched_set_rtt(s, far, h, 80.0);
	struct sched_node *holders[] = {h};
	struct sched_input in = {.size = 1 * MIB, .holders = holders, .n_holders = 1};
	static const char *const rk[] = {"zone"};
	static const char *const rv[] = {"a"};
	struct sched_req r = task_req();
	r.label_keys = rk;
	r.label_values = rv;
	r.n_labels = 1;
	r.inputs = &in;
	r.n_inputs = 1;
	assert_string_equal(place_id(s, &r), "z-near");
	/* The RTT is symmetric and updates in place. */
	sched_set_rtt(s, near, h, 200.0);
	assert_string_equal(place_id(s, &r), "a-far");
	/* Without measurements both get the default RTT: the tie goes to the lower id. */
	sched_node_remove(s, h);
	i = node_info("holder2");
	i.label_values = zb;
	h = sched_node_update(s, &i);
	holders[0] = h;
	assert_string_equal(place_id(s, &r), "a-far");
	sched_free(s);
}

static void test_cost(void **state)
{
	(void)state;
	struct sched *s = new_sched(5);
	struct sched_node_info i = node_info("a-dear");
	i.price_per_hour = 3.0;
	struct sched_node *dear = sched_node_update(s, &i);
	i = node_info("b-cheap");
	i.price_per_hour = 1.0;
	sched_node_update(s, &i);
	sched_reserve(s, dear, 2000, 4 * GIB, 0);
	struct sched_req r = task_req();
	/* Balanced: bin-packing onto the busier node wins. */
	assert_string_equal(place_id(s, &r), "a-dear");
	r.optimize = SCHED_OPT_COST;
	assert_string_equal(place_id(s, &r), "b-cheap");
	sched_free(s);
}

static void test_avoid(void **state)
{
	(void)state;
	struct sched *s = new_sched(5);
	struct sched_node *a = add(s, "a");
	struct sched_node *b = add(s, "b");
	struct sched_req r = task_req();
	assert_string_equal(place_id(s, &r), "a");
	r.avoid = a;
	assert_string_equal(place_id(s, &r), "b");
	r.avoid = b;
	assert_string_equal(place_id(s, &r), "a");
	/* The avoided node is still used when it is the only one. */
	struct sched_node_info i = node_info("a");
	i.schedulable = false;
	sched_node_update(s, &i);
	assert_string_equal(place_id(s, &r), "b");
	sched_free(s);
}

static void test_attestation_expiry(void **state)
{
	(void)state;
	struct sched *s = new_sched(5);
	struct sched_node_info i = node_info("a");
	i.attest_expires_ms = NOW + 1000;
	sched_node_update(s, &i);
	struct sched_req r = task_req();
	r.now_ms = NOW + 999;
	assert_string_equal(place_id(s, &r), "a");
	r.now_ms = NOW + 1000;
	struct sched_node *out;
	char why[128];
	assert_int_equal(sched_place(s, &r, &out, why, sizeof why), SS_ENOTFOUND);
	assert_string_equal(why, "0 of 1 nodes feasible: 1 attestation expired");
	/* Re-attestation refreshes it. */
	i.attest_expires_ms = NOW + 5000;
	sched_node_update(s, &i);
	assert_string_equal(place_id(s, &r), "a");
	sched_free(s);
}

static void test_hardware_only(void **state)
{
	(void)state;
	struct sched *s = new_sched(11);
	static const char *const tees[] = {"sim", "tpm", "sev-snp", "tdx"};
	char id[32];
	for (int k = 0; k < 400; k++) {
		snprintf(id, sizeof id, "n%03d", k);
		struct sched_node_info i = node_info(id);
		i.tee = tees[k % 4];
		i.hardware = k % 4 != 0;
		i.cpu_millicores = k % 3 ? 8000 : 16000;
		i.price_per_hour = k % 4 == 2 ? 4.0 : 0.5; /* sev-snp is the dearest */
		sched_node_update(s, &i);
	}
	static const char *const snp[] = {"sev-snp"};
	struct sched_node *placed[64] = {0};
	uint32_t cpu[64] = {0};
	for (int k = 0; k < 1000; k++) {
		struct sched_req r = task_req();
		r.cpu_millicores = 500 + (uint32_t)(k % 4) * 500;
		r.optimize = k % 3;
		r.spread = k % 5 == 0;
		bool want_snp = k % 2 == 0;
		if (want_snp) {
			r.tee = snp;
			r.n_tee = 1;
		}
		r.hardware = true;
		struct sched_node *n;
		char why[256];
		int rc = sched_place(s, &r, &n, why, sizeof why);
		if (rc)
			fail_msg("placement %d: %s", k, why);
		const char *tee = tees[atoi(sched_node_id(n) + 1) % 4];
		assert_string_not_equal(tee, "sim");
		if (want_snp)
			assert_string_equal(tee, "sev-snp");
		/* Keep a window of 64 running tasks. */
		int slot = k % 64;
		if (placed[slot])
			sched_release(s, placed[slot], cpu[slot], 1 * GIB, 1 * GIB);
		sched_reserve(s, n, r.cpu_millicores, 1 * GIB, 1 * GIB);
		placed[slot] = n;
		cpu[slot] = r.cpu_millicores;
	}
	sched_free(s);
}

/* sched_fit tells "fits", "only free resources stand in the way" and "ruled out" apart. */
static void test_fit_separates_resources_from_other_checks(void **state)
{
	(void)state;
	struct sched *s = new_sched(5);
	struct sched_node *a = add(s, "a");
	struct sched_node_info i = node_info("slots");
	i.max_tasks = 1;
	struct sched_node *sl = sched_node_update(s, &i);
	i = node_info("sim");
	i.tee = "sim";
	struct sched_node *sim = sched_node_update(s, &i);
	static const char *const tees[] = {"sev-snp"};
	struct sched_req r = task_req();
	r.tee = tees;
	r.n_tee = 1;
	r.cpu_millicores = 3000;
	assert_int_equal(sched_fit(s, &r, a), 0);
	sched_reserve(s, a, 2000, GIB, 0);
	assert_int_equal(sched_fit(s, &r, a), SS_ELIMIT); /* 2 of 4 cores free: releasing some would do */
	sched_release(s, a, 2000, GIB, 0);
	assert_int_equal(sched_fit(s, &r, a), 0);
	r.memory_bytes = 7 * GIB;
	sched_reserve(s, a, 0, 2 * GIB, 0);
	assert_int_equal(sched_fit(s, &r, a), SS_ELIMIT);
	r.memory_bytes = GIB;
	/* Task slots count as resources too. */
	assert_int_equal(sched_fit(s, &r, sl), 0);
	sched_reserve(s, sl, 100, 0, 0);
	assert_int_equal(sched_fit(s, &r, sl), SS_ELIMIT);
	/* The wrong TEE, more than the node has in all, or a node that is not schedulable: nothing to free helps. */
	assert_int_equal(sched_fit(s, &r, sim), SS_ENOTFOUND);
	r.cpu_millicores = 5000;
	assert_int_equal(sched_fit(s, &r, a), SS_ENOTFOUND);
	r.cpu_millicores = 1000;
	i = node_info("a");
	i.schedulable = false;
	sched_node_update(s, &i);
	assert_int_equal(sched_fit(s, &r, a), SS_ENOTFOUND);
	sched_free(s);
}

static void test_explain_shape(void **state)
{
	(void)state;
	struct sched *s = new_sched(5);
	struct sched_node *b = add(s, "b");
	add(s, "c");
	add(s, "a");
	struct sched_node_info i = node_info("d");
	i.schedulable = false;
	sched_node_update(s, &i);
	i = node_info("0-sim");
	i.tee = "sim";
	sched_node_update(s, &i);
	sched_reserve(s, b, 2000, 2 * GIB, 0);
	static const char *const tees[] = {"sev-snp"};
	struct sched_req r = task_req();
	r.tee = tees;
	r.n_tee = 1;
	json_t *e = sched_explain(s, &r);
	assert_int_equal(json_integer_value(json_object_get(e, "feasible")), 3);
	assert_int_equal(json_integer_value(json_object_get(e, "total")), 5);
	assert_string_equal(json_string_value(json_object_get(e, "chosen")), "b");
	/* The plain count agrees, and follows reservations and the request. */
	assert_int_equal(sched_feasible_count(s, &r), 3);
	r.cpu_millicores = 3000; /* b has 2 of its 4 cores reserved */
	assert_int_equal(sched_feasible_count(s, &r), 2);
	r.cpu_millicores = 5000;
	assert_int_equal(sched_feasible_count(s, &r), 0);
	r.cpu_millicores = task_req().cpu_millicores;
	r.n_tee = 0; /* the sim node is allowed too */
	assert_int_equal(sched_feasible_count(s, &r), 4);
	r.n_tee = 1;
	json_t *nodes = json_object_get(e, "nodes");
	assert_int_equal(json_array_size(nodes), 5);
	/* Feasible first by descending score (b, then a and c tied by id), then the rest by id. */
	static const char *const order[] = {"b", "a", "c", "0-sim", "d"};
	for (size_t k = 0; k < 5; k++) {
		json_t *n = json_array_get(nodes, k);
		assert_string_equal(json_string_value(json_object_get(n, "node")), order[k]);
		bool feasible = k < 3;
		assert_int_equal(json_is_true(json_object_get(n, "feasible")), feasible);
		if (feasible) {
			assert_true(json_is_real(json_object_get(n, "score")));
			assert_null(json_object_get(n, "reason"));
			json_t *sc = json_object_get(n, "scores");
			assert_int_equal(json_object_size(sc), 5);
			const char *keys[] = {"binpack", "locality", "network", "cost", "load"};
			for (size_t j = 0; j < 5; j++) {
				double v = json_real_value(json_object_get(sc, keys[j]));
				assert_true(json_is_real(json_object_get(sc, keys[j])));
				assert_true(v >= 0 && v <= 1);
			}
		} else {
			assert_true(json_is_string(json_object_get(n, "reason")));
			assert_null(json_object_get(n, "score"));
		}
	}
	assert_true(json_real_value(json_object_get(json_array_get(nodes, 0), "score")) >
		    json_real_value(json_object_get(json_array_get(nodes, 1), "score")));
	json_decref(e);
	/* Explaining does not disturb the decisions: the placement agrees. */
	assert_string_equal(place_id(s, &r), "b");
	sched_free(s);
}

static void test_rare_feasible(void **state)
{
	(void)state;
	struct sched *s = new_sched(99);
	char id[32];
	static const char *const rk[] = {"zone", "region", "rare"};
	static const char *const rv[] = {"a", "eu", "yes"};
	for (int k = 0; k < 10000; k++) {
		snprintf(id, sizeof id, "n%05d", k);
		struct sched_node_info i = node_info(id);
		if (k == 7777) {
			i.label_keys = rk;
			i.label_values = rv;
			i.n_labels = 3;
		}
		sched_node_update(s, &i);
	}
	assert_int_equal(sched_node_count(s), 10000);
	static const char *const qk[] = {"rare"};
	static const char *const qv[] = {"yes"};
	struct sched_req r = task_req();
	r.label_keys = qk;
	r.label_values = qv;
	r.n_labels = 1;
	assert_string_equal(place_id(s, &r), "n07777");

	/* One free node in a class of 10,000 full ones: the probes miss, the scan finds it. */
	for (int k = 0; k < 10000; k++) {
		snprintf(id, sizeof id, "n%05d", k);
		if (k != 4242)
			sched_reserve(s, sched_node_find(s, id), 4000, 0, 0);
	}
	r = task_req();
	for (int k = 0; k < 10; k++)
		assert_string_equal(place_id(s, &r), "n04242");
	struct sched_node *out;
	char why[256];
	r.cpu_millicores = 5000;
	assert_int_equal(sched_place(s, &r, &out, why, sizeof why), SS_ENOTFOUND);
	assert_string_equal(why, "0 of 10000 nodes feasible: 10000 insufficient cpu");
	sched_free(s);
}

/* Many classes (a unique label per node): static verdicts come from the cache. */
static void test_many_classes(void **state)
{
	(void)state;
	struct sched *s = new_sched(8);
	static const char *const tees[] = {"sim", "tpm", "sev-snp", "tdx"};
	char id[32];
	for (int k = 0; k < 2000; k++) {
		snprintf(id, sizeof id, "n%04d", k);
		const char *lk[] = {"zone", "host"};
		const char *lv[] = {k % 2 ? "a" : "b", id};
		struct sched_node_info i = node_info(id);
		i.label_keys = lk;
		i.label_values = lv;
		i.tee = tees[k % 4];
		i.hardware = k % 4 != 0;
		i.cpu_millicores = k % 10 == 3 ? 64000 : 4000;
		sched_node_update(s, &i);
	}
	static const char *const tdx[] = {"tdx"};
	static const char *const zk[] = {"zone"};
	static const char *const za[] = {"a"};
	struct sched_req r = task_req();
	r.tee = tdx;
	r.n_tee = 1;
	r.label_keys = zk;
	r.label_values = za;
	r.n_labels = 1;
	for (int k = 0; k < 300; k++) {
		struct sched_node *n;
		char why[256];
		assert_int_equal(sched_place(s, &r, &n, why, sizeof why), 0);
		int idx = atoi(sched_node_id(n) + 1);
		assert_int_equal(idx % 4, 3);
		sched_reserve(s, n, r.cpu_millicores, 0, 0);
	}
	/* Capacity is checked per class after the cached verdict: only 64-core nodes fit. */
	r.cpu_millicores = 32000;
	for (int k = 0; k < 50; k++) {
		const char *got = place_id(s, &r);
		assert_int_equal(atoi(got + 1) % 20, 3);
	}
	/* The only feasible node: a host label; removing it (and its class) invalidates the cache. */
	static const char *const hk[] = {"host"};
	static const char *const hv[] = {"n1999"};
	r = task_req();
	r.label_keys = hk;
	r.label_values = hv;
	r.n_labels = 1;
	assert_string_equal(place_id(s, &r), "n1999");
	sched_node_remove(s, sched_node_find(s, "n1999"));
	struct sched_node *n;
	char why[256];
	assert_int_equal(sched_place(s, &r, &n, why, sizeof why), SS_ENOTFOUND);
	assert_string_equal(why, "0 of 1999 nodes feasible: 1999 label host=n1999 missing");
	const char *lk[] = {"host"};
	const char *lv[] = {"n1999"};
	struct sched_node_info i = node_info("again");
	i.label_keys = lk;
	i.label_values = lv;
	i.n_labels = 1;
	sched_node_update(s, &i);
	assert_string_equal(place_id(s, &r), "again");
	sched_free(s);
}

/* Builds a 300-node table and runs 500 placements with reservations; returns the ids chosen. */
static void run_sequence(uint64_t seed, char ids[500][16])
{
	struct sched *s = new_sched(seed);
	char id[32];
	for (int k = 0; k < 300; k++) {
		snprintf(id, sizeof id, "n%03d", k);
		struct sched_node_info i = node_info(id);
		i.cpu_millicores = 16000;
		i.price_per_hour = 1.0 + (k % 3);
		sched_node_update(s, &i);
	}
	for (int k = 0; k < 500; k++) {
		struct sched_req r = task_req();
		r.spread = true;
		struct sched_node *n = NULL;
		char why[128];
		assert_int_equal(sched_place(s, &r, &n, why, sizeof why), 0);
		sched_reserve(s, n, r.cpu_millicores, r.memory_bytes, 0);
		snprintf(ids[k], 16, "%s", sched_node_id(n));
	}
	sched_free(s);
}

static void test_determinism(void **state)
{
	(void)state;
	static char a[500][16], b[500][16], c[500][16];
	run_sequence(42, a);
	run_sequence(42, b);
	run_sequence(43, c);
	for (int k = 0; k < 500; k++)
		assert_string_equal(a[k], b[k]);
	assert_true(memcmp(a, c, sizeof a) != 0);
}

static void test_node_update_remove(void **state)
{
	(void)state;
	struct sched *s = new_sched(1);
	struct sched_node *a = add(s, "a");
	struct sched_node *b = add(s, "b");
	assert_ptr_equal(sched_node_find(s, "a"), a);
	assert_null(sched_node_find(s, "zz"));
	sched_reserve(s, a, 3500, 0, 0);
	/* An update keeps the record and its reservations, even across classes. */
	struct sched_node_info i = node_info("a");
	i.tee = "tdx";
	assert_ptr_equal(sched_node_update(s, &i), a);
	assert_int_equal(sched_node_count(s), 2);
	struct sched_req r = task_req();
	assert_string_equal(place_id(s, &r), "b");
	sched_release(s, a, 3500, 0, 0);
	sched_release(s, a, 3500, 0, 0); /* releasing more than reserved clamps at zero */
	sched_reserve(s, b, 1000, 0, 0);
	assert_string_equal(place_id(s, &r), "b");
	sched_set_rtt(s, a, b, 5);
	sched_node_remove(s, b);
	assert_int_equal(sched_node_count(s), 1);
	assert_null(sched_node_find(s, "b"));
	assert_string_equal(place_id(s, &r), "a");
	sched_node_remove(s, a);
	assert_int_equal(sched_node_count(s), 0);
	sched_free(s);
}

/* ---- the queue ------------------------------------------------------------------- */

static void test_queue_fairness(void **state)
{
	(void)state;
	struct sched_queue *q = sched_queue_new();
	sched_queue_set_weight(q, "light", 1.0);
	sched_queue_set_weight(q, "heavy", 3.0);
	static int items[2][1000];
	for (int k = 0; k < 1000; k++) {
		sched_queue_push(q, "light", 0, 1000, &items[0][k]);
		sched_queue_push(q, "heavy", 0, 1000, &items[1][k]);
	}
	assert_int_equal(sched_queue_len(q), 2000);
	int light = 0, heavy = 0;
	for (int k = 0; k < 400; k++) {
		const char *t;
		int *it = sched_queue_pop(q, &t);
		assert_non_null(it);
		if (!strcmp(t, "light")) {
			assert_true(it >= items[0] && it < items[0] + 1000);
			light++;
		} else {
			assert_string_equal(t, "heavy");
			heavy++;
		}
	}
	assert_in_range(light, 98, 102);
	assert_in_range(heavy, 298, 302);
	/* Finishing work frees share: after light's tasks are done it is furthest below. */
	for (int k = 0; k < light; k++)
		sched_queue_done(q, "light", 1000);
	const char *t;
	sched_queue_pop(q, &t);
	assert_string_equal(t, "light");
	sched_queue_free(q);
}

static void test_queue_priority_fifo(void **state)
{
	(void)state;
	struct sched_queue *q = sched_queue_new();
	int it[6];
	sched_queue_push(q, "t", 1, 100, &it[0]);
	sched_queue_push(q, "t", 5, 100, &it[1]);
	sched_queue_push(q, "t", 3, 100, &it[2]);
	sched_queue_push(q, "t", 5, 100, &it[3]);
	sched_queue_push(q, "t", -2, 100, &it[4]);
	sched_queue_push(q, "t", 3, 100, &it[5]);
	int *want[] = {&it[1], &it[3], &it[2], &it[5], &it[0], &it[4]};
	for (size_t k = 0; k < ARRAY_LEN(want); k++) {
		const char *t = NULL;
		assert_ptr_equal(sched_queue_pop(q, &t), want[k]);
		assert_string_equal(t, "t");
	}
	const char *t = "x";
	assert_null(sched_queue_pop(q, &t));
	assert_null(t);
	assert_int_equal(sched_queue_len(q), 0);
	sched_queue_free(q);
}

static void test_queue_unpop(void **state)
{
	(void)state;
	struct sched_queue *q = sched_queue_new();
	int a1, a2, b1;
	sched_queue_push(q, "a", 0, 1000, &a1);
	sched_queue_push(q, "b", 0, 1000, &b1);
	sched_queue_push(q, "a", 0, 1000, &a2);
	const char *t;
	assert_ptr_equal(sched_queue_pop(q, &t), &a1);
	assert_int_equal(sched_queue_len(q), 2);
	/* Put back: a's running CPU is restored, and a1 is at the front again. */
	sched_queue_unpop(q, "a", 0, 1000, &a1);
	assert_int_equal(sched_queue_len(q), 3);
	assert_ptr_equal(sched_queue_pop(q, &t), &a1);
	assert_ptr_equal(sched_queue_pop(q, &t), &b1);
	assert_ptr_equal(sched_queue_pop(q, &t), &a2);
	/* Unpopping several in reverse restores their order. */
	sched_queue_unpop(q, "a", 0, 1000, &a2);
	sched_queue_unpop(q, "a", 0, 1000, &a1);
	assert_ptr_equal(sched_queue_pop(q, &t), &a1);
	assert_ptr_equal(sched_queue_pop(q, &t), &a2);
	sched_queue_free(q);
}

static void test_queue_tenant_cap(void **state)
{
	(void)state;
	struct sched_queue *q = sched_queue_new();
	int a[4], b[2], c1;
	sched_queue_set_cap(q, "a", 2000);
	sched_queue_set_cap(q, NULL, 1500); /* every other tenant */
	for (int k = 0; k < 4; k++)
		sched_queue_push(q, "a", 0, 1000, &a[k]);
	assert_int_equal(sched_queue_cap(q, "a"), 2000);
	assert_int_equal(sched_queue_cap(q, "b"), 1500);
	assert_int_equal(sched_queue_cap(q, "nobody"), 1500);
	const char *t;
	/* Alone, a takes two slots and no more. */
	assert_ptr_equal(sched_queue_pop(q, &t), &a[0]);
	assert_ptr_equal(sched_queue_pop(q, &t), &a[1]);
	assert_true(sched_queue_held(q, "a"));
	assert_null(sched_queue_pop(q, &t));
	/* Then b gets one (its second item would pass 1500m). */
	sched_queue_push(q, "b", 0, 1000, &b[0]);
	sched_queue_push(q, "b", 0, 1000, &b[1]);
	assert_false(sched_queue_held(q, "b"));
	assert_ptr_equal(sched_queue_pop(q, &t), &b[0]);
	assert_true(sched_queue_held(q, "b"));
	assert_null(sched_queue_pop(q, &t));
	assert_null(t);
	assert_int_equal(sched_queue_len(q), 3);
	assert_int_equal(sched_queue_running(q, "a"), 2000);
	/* One of a's tasks ends: exactly one more of a's items may start. */
	sched_queue_done(q, "a", 1000);
	assert_false(sched_queue_held(q, "a"));
	assert_ptr_equal(sched_queue_pop(q, &t), &a[2]);
	assert_null(sched_queue_pop(q, &t));
	/* A task found running after a restart counts as a pop does. */
	sched_queue_done(q, "b", 1000);
	sched_queue_charge(q, "b", 1000);
	assert_null(sched_queue_pop(q, &t));
	assert_true(sched_queue_held(q, "b"));
	/* A tenant first seen after the default was set gets it too. */
	sched_queue_push(q, "c", 5, 1000, &c1);
	sched_queue_charge(q, "c", 1000);
	assert_null(sched_queue_pop(q, &t));
	/* Removing the caps lets the rest go, in fair-share order again. */
	sched_queue_set_cap(q, "a", 0);
	sched_queue_set_cap(q, NULL, 0);
	assert_ptr_equal(sched_queue_pop(q, &t), &b[1]); /* b and c tie below a; b's is older */
	assert_ptr_equal(sched_queue_pop(q, &t), &c1);
	assert_ptr_equal(sched_queue_pop(q, &t), &a[3]);
	/* A small item behind a head that does not fit waits: order within a tenant holds. */
	int big, small;
	sched_queue_set_cap(q, "d", 2000);
	sched_queue_charge(q, "d", 500);
	sched_queue_push(q, "d", 0, 2000, &big);
	sched_queue_push(q, "d", 0, 500, &small);
	assert_null(sched_queue_pop(q, &t));
	sched_queue_done(q, "d", 500);
	assert_ptr_equal(sched_queue_pop(q, &t), &big);
	sched_queue_done(q, "d", 2000);
	assert_ptr_equal(sched_queue_pop(q, &t), &small);
	/* Every tenant is listed with its running CPU and cap. */
	struct sched_queue_tenant qt;
	size_t n = 0;
	while (sched_queue_tenant_at(q, n, &qt))
		n++;
	assert_int_equal(n, 4);
	assert_true(sched_queue_tenant_at(q, 0, &qt));
	assert_string_equal(qt.name, "a");
	assert_int_equal(qt.running, 3000);
	assert_int_equal(qt.cap, 0);
	assert_int_equal(qt.queued, 0);
	assert_true(qt.weight == 1.0);
	sched_queue_free(q);
}

static void test_queue_remove_len(void **state)
{
	(void)state;
	struct sched_queue *q = sched_queue_new();
	enum { N = 100000 };
	int *items = calloc(N, sizeof *items);
	char tenant[16];
	for (int k = 0; k < N; k++) {
		snprintf(tenant, sizeof tenant, "t%d", k % 7);
		sched_queue_push(q, tenant, k % 5, 10, &items[k]);
	}
	assert_int_equal(sched_queue_len(q), N);
	/* Cancel all but every 1000th, in a scattered order. */
	size_t removed = 0;
	for (int k = 0; k < N; k++) {
		int j = (int)(((long)k * 7919) % N);
		if (j % 1000 == 0)
			continue;
		assert_true(sched_queue_remove(q, &items[j]));
		removed++;
	}
	assert_int_equal(sched_queue_len(q), N - removed);
	assert_false(sched_queue_remove(q, &items[1]));
	int x;
	assert_false(sched_queue_remove(q, &x));
	size_t popped = 0;
	const char *t;
	int *it;
	while ((it = sched_queue_pop(q, &t)) != NULL) {
		assert_int_equal((it - items) % 1000, 0);
		popped++;
	}
	assert_int_equal(popped, N / 1000);
	assert_int_equal(sched_queue_len(q), 0);
	/* Pushing again after the tenant emptied works. */
	sched_queue_push(q, "t1", 0, 10, &items[5]);
	assert_int_equal(sched_queue_len(q), 1);
	free(items);
	sched_queue_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feasibility_reasons),
		cmocka_unit_test(test_why_summary),
		cmocka_unit_test(test_binpack_vs_spread),
		cmocka_unit_test(test_locality),
		cmocka_unit_test(test_network),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_avoid),
		cmocka_unit_test(test_attestation_expiry),
		cmocka_unit_test(test_hardware_only),
		cmocka_unit_test(test_explain_shape),
		cmocka_unit_test(test_fit_separates_resources_from_other_checks),
		cmocka_unit_test(test_rare_feasible),
		cmocka_unit_test(test_many_classes),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_node_update_remove),
		cmocka_unit_test(test_queue_fairness),
		cmocka_unit_test(test_queue_priority_fifo),
		cmocka_unit_test(test_queue_unpop),
		cmocka_unit_test(test_queue_tenant_cap),
		cmocka_unit_test(test_queue_remove_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
