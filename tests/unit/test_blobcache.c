/* test_blobcache.c - the evictable set of an agent's blobs: recency, pins, the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "data/blobcache.h"

/* Digest n: n in the first bytes, then a fixed pattern. */
static void dg(unsigned n, uint8_t out[SHA256_LEN])
{
	memset(out, 0xa5, SHA256_LEN);
	memcpy(out, &n, sizeof n);
}

/* The store as the callbacks see it: which blobs exist, which are pinned, what was evicted. */
struct fake {
	bool present[4096];
	bool pin[4096];
	unsigned order[4096];
	size_t n_evicted;
	int fail_rc;
};

static unsigned which(const uint8_t d[SHA256_LEN])
{
	unsigned n;
	uint8_t x[SHA256_LEN];
	memcpy(&n, d, sizeof n);
	assert_true(n < 4096);
	dg(n, x);
	assert_memory_equal(x, d, SHA256_LEN);
	return n;
}

static bool fake_pinned(void *arg, const uint8_t d[SHA256_LEN])
{
	const struct fake *f = arg;
	return f->pin[which(d)];
}

static int fake_evict(void *arg, const uint8_t d[SHA256_LEN])
{
	struct fake *f = arg;
	unsigned n = which(d);
	assert_true(f->present[n]);
	f->present[n] = false;
	f->order[f->n_evicted++] = n;
	return f->fail_rc;
}

static void test_add_touch_remove(void **state)
{
	(void)state;
	struct blobcache *c = blobcache_new(0);
	uint8_t a[SHA256_LEN], b[SHA256_LEN];
	dg(1, a);
	dg(2, b);
	assert_false(blobcache_contains(c, a));
	assert_false(blobcache_touch(c, a));
	assert_false(blobcache_remove(c, a));
	assert_true(blobcache_add(c, a, 100));
	assert_true(blobcache_add(c, b, 50));
	assert_int_equal(blobcache_count(c), 2);
	assert_int_equal(blobcache_bytes(c), 150);
	/* Adding again updates the size, not the count. */
	assert_true(blobcache_add(c, a, 70));
	assert_int_equal(blobcache_count(c), 2);
	assert_int_equal(blobcache_bytes(c), 120);
	assert_true(blobcache_touch(c, b));
	assert_true(blobcache_remove(c, a));
	assert_false(blobcache_contains(c, a));
	assert_true(blobcache_contains(c, b));
	assert_int_equal(blobcache_bytes(c), 50);
	/* Without a cap nothing is evicted, however much the store holds. */
	struct fake f = {0};
	assert_int_equal(blobcache_trim(c, UINT64_MAX, fake_pinned, fake_evict, &f), 0);
	assert_int_equal(f.n_evicted, 0);
	blobcache_free(c);
	blobcache_free(NULL);
}

static void test_trim_evicts_least_recent_and_skips_pins(void **state)
{
	(void)state;
	struct blobcache *c = blobcache_new(1000);
	struct fake f = {0};
	uint8_t d[SHA256_LEN];
	for (unsigned n = 0; n < 10; n++) {
		dg(n, d);
		assert_true(blobcache_add(c, d, 100));
		f.present[n] = true;
	}
	/* Recency: 3 is used again, so 0, 1, 2, 4, ... are older. 1 is pinned. */
	dg(3, d);
	assert_true(blobcache_touch(c, d));
	dg(0, d);
	assert_true(blobcache_add(c, d, 100)); /* re-adding counts as a use */
	f.pin[1] = true;
	/* Found in the store without a known use: the first to go, once it is unpinned. */
	dg(10, d);
	assert_true(blobcache_add_oldest(c, d, 200));
	f.present[10] = true;
	f.pin[10] = true;
	assert_true(blobcache_add_oldest(c, d, 100)); /* present: unchanged */
	assert_int_equal(blobcache_count(c), 11);
	assert_int_equal(blobcache_trim(c, 1000, fake_pinned, fake_evict, &f), 0);
	f.pin[10] = false;
	assert_int_equal(blobcache_trim(c, 1001, fake_pinned, fake_evict, &f), 200);
	assert_int_equal(f.n_evicted, 1);
	assert_int_equal(f.order[0], 10);
	f.n_evicted = 0;
	/* At or below the cap: nothing. */
	assert_int_equal(blobcache_trim(c, 1000, fake_pinned, fake_evict, &f), 0);
	/* 1,500 bytes in the store with a 1,000-byte cap: down to 900 = 6 blobs of 100. */
	assert_int_equal(blobcache_trim(c, 1500, fake_pinned, fake_evict, &f), 600);
	assert_int_equal(f.n_evicted, 6);
	const unsigned want[] = {2, 4, 5, 6, 7, 8};
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(f.order[i], want[i]);
	assert_int_equal(blobcache_count(c), 4); /* 9, 3, 0 and the pinned 1 */
	assert_int_equal(blobcache_bytes(c), 400);
	dg(1, d);
	assert_true(blobcache_contains(c, d));
	/* Only pinned blobs left that could go: the rest stays over the cap. */
	f.pin[9] = f.pin[3] = f.pin[0] = true;
	assert_int_equal(blobcache_trim(c, 5000, fake_pinned, fake_evict, &f), 0);
	assert_int_equal(blobcache_count(c), 4);
	/* An eviction that fails still leaves the set, and counts nothing. */
	f.pin[9] = false;
	f.fail_rc = SS_EIO;
	assert_int_equal(blobcache_trim(c, 5000, fake_pinned, fake_evict, &f), 0);
	dg(9, d);
	assert_false(blobcache_contains(c, d));
	blobcache_free(c);
}

static void test_many_entries(void **state)
{
	(void)state;
	struct blobcache *c = blobcache_new(4000);
	struct fake f = {0};
	uint8_t d[SHA256_LEN];
	for (unsigned n = 0; n < 4000; n++) {
		dg(n, d);
		assert_true(blobcache_add(c, d, 1));
		f.present[n] = true;
	}
	/* Every other one removed (held again); the rest still found after rehashing. */
	for (unsigned n = 0; n < 4000; n += 2) {
		dg(n, d);
		assert_true(blobcache_remove(c, d));
	}
	assert_int_equal(blobcache_count(c), 2000);
	for (unsigned n = 0; n < 4000; n++) {
		dg(n, d);
		assert_int_equal(blobcache_contains(c, d), n % 2 == 1);
	}
	/* Freed entries are reused. */
	for (unsigned n = 0; n < 4000; n += 2) {
		dg(n, d);
		assert_true(blobcache_add(c, d, 1));
	}
	assert_int_equal(blobcache_count(c), 4000);
	assert_int_equal(blobcache_bytes(c), 4000);
	/* 5,000 used, cap 4,000: evicts 1,400 (down to 3,600), oldest first: the odd ones. */
	assert_int_equal(blobcache_trim(c, 5000, fake_pinned, fake_evict, &f), 1400);
	for (size_t i = 0; i < f.n_evicted; i++)
		assert_int_equal(f.order[i], 2 * i + 1);
	assert_int_equal(blobcache_count(c), 2600);
	blobcache_free(c);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_touch_remove),
		cmocka_unit_test(test_trim_evicts_least_recent_and_skips_pins),
		cmocka_unit_test(test_many_entries),
	};
	return cmocka_run_group_tests_name("blobcache", tests, NULL, NULL);
}
