/* test_core.c - unit tests for the shared internals (src/core/core.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <dirent.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "fixture.h"

/* ---- hex -------------------------------------------------------------- */

static void test_hex(void **state)
{
	(void)state;
	const uint8_t in[] = {0x00, 0x01, 0xab, 0x7f, 0xff};
	char out[2 * sizeof in + 1];
	hex_encode(in, sizeof in, out);
	assert_string_equal(out, "0001ab7fff");
	hex_encode(in, 0, out);
	assert_string_equal(out, "");

	uint8_t back[sizeof in];
	assert_int_equal(hex_decode("0001ab7fff", back, sizeof back), 0);
	assert_memory_equal(back, in, sizeof in);
	assert_int_equal(hex_decode("0001AB7FFF", back, sizeof back), 0);
	assert_memory_equal(back, in, sizeof in);
	assert_int_equal(hex_decode("", back, 0), 0);

	assert_int_equal(hex_decode("0001ab7ff", back, sizeof back), SS_EPARSE);   /* odd */
	assert_int_equal(hex_decode("0001ab7fff00", back, sizeof back), SS_EPARSE); /* long */
	assert_int_equal(hex_decode("0001ab7f", back, sizeof back), SS_EPARSE);     /* short */
	assert_int_equal(hex_decode("0001ab7fzz", back, sizeof back), SS_EPARSE);
	assert_int_equal(hex_decode("0x01ab7fff", back, sizeof back), SS_EPARSE);
	assert_int_equal(hex_decode(" 001ab7fff", back, sizeof back), SS_EPARSE);
	assert_int_equal(hex_decode("0001ab7fg0", back, sizeof back), SS_EPARSE);
}

/* ---- time ------------------------------------------------------------- */

static void test_time_format(void **state)
{
	(void)state;
	char s[32];
	time_rfc3339(0, s);
	assert_string_equal(s, "1970-01-01T00:00:00.000Z");
	time_rfc3339(1748736000123LL, s);
	assert_string_equal(s, "2025-06-01T00:00:00.123Z");
	time_rfc3339(951782400999LL, s); /* leap day 2000 */
	assert_string_equal(s, "2000-02-29T00:00:00.999Z");
}

static void test_time_round_trip(void **state)
{
	(void)state;
	const int64_t samples[] = {0, 1, 59, 86399, 951782400, 1748736000, 4102444800LL};
	for (size_t i = 0; i < ARRAY_LEN(samples); i++) {
		char s[32];
		int64_t back = -1;
		time_rfc3339(samples[i] * 1000 + 456, s);
		assert_int_equal(time_parse_rfc3339(s, &back), 0);
		assert_int_equal(back, samples[i]);
	}
	int64_t now_ms = time_wall_ms(), back = 0;
	char s[32];
	time_rfc3339(now_ms, s);
	assert_int_equal(time_parse_rfc3339(s, &back), 0);
	assert_int_equal(back, now_ms / 1000);

	assert_int_equal(time_parse_rfc3339("2025-06-01T12:34:56Z", &back), 0);
	assert_int_equal(back, 1748781296);
	assert_int_equal(time_parse_rfc3339("2025-06-01T12:34:56.5Z", &back), 0);
	assert_int_equal(back, 1748781296);
	assert_true(time_mono_ms() > 0);
}

static void test_time_rejects(void **state)
{
	(void)state;
	const char *bad[] = {
		"",
		"garbage",
		"2025-06-01",
		"2025-06-01T00:00:00",
		"2025-06-01 00:00:00Z",
		"2025-06-01T00:00:00+01:00",
		"2025-06-01T00:00:00z",
		"2025-06-01T00:00:00.Z",
		"2025-06-01T00:00:00.12",
		"2025-06-01T00:00:00ZZ",
		"2025-06-01T00:00:00Z ",
		"2025-13-01T00:00:00Z",
		"2025-00-01T00:00:00Z",
		"2025-06-00T00:00:00Z",
		"2025-06-32T00:00:00Z",
		"2025-06-01T24:00:00Z",
		"2025-06-01T00:60:00Z",
		"2025-06-01T00:00:61Z",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t v = 12345;
		int rc = time_parse_rfc3339(bad[i], &v);
		if (rc != SS_EPARSE)
			fail_msg("'%s' was accepted (rc=%d, v=%lld)", bad[i], rc, (long long)v);
		assert_int_equal(v, 12345);
	}
}

/* ---- parsing helpers ---------------------------------------------------- */

/* Sizes, spans and amounts read back as people expect, at every unit boundary. */
static void test_formatters(void **state)
{
	(void)state;
	char out[32];
	static const struct {
		uint64_t v;
		const char *want;
	} sizes[] = {{0, "0"}, {1023, "1023"}, {1024, "1K"}, {1536 << 20, "1536M"}, {16ull << 30, "16G"},
		     {(1ull << 30) + 1, "1.0G"}, {15ull * (1ull << 30) + (600ull << 20) + 1, "15.6G"}};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		format_size(sizes[i].v, out);
		assert_string_equal(out, sizes[i].want);
	}
	static const struct {
		double v;
		const char *want;
	} secs[] = {{0, "0ms"}, {0.8504, "850ms"}, {1, "1.0s"}, {12.34, "12.3s"}, {59.9, "59.9s"},
		    {60, "1.0m"}, {2490, "41.5m"}, {3600, "1.0h"}, {11520, "3.2h"}, {86400, "1.0d"},
		    {-5, "0ms"}, {NAN, "0ms"}};
	for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
		format_seconds(secs[i].v, out);
		assert_string_equal(out, secs[i].want);
	}
	static const struct {
		double v;
		const char *want;
	} money[] = {{0, "0.00"}, {12.5, "12.50"}, {1, "1.00"}, {0.0421, "0.0421"}, {0.5, "0.500"},
		     {4.41667e-7, "0.000000442"}, {1e-20, "0.00000000000000"}, {-3, "0.00"},
		     {NAN, "0.00"}, {123456.789, "123456.79"}};
	for (size_t i = 0; i < sizeof money / sizeof money[0]; i++) {
		format_amount(money[i].v, out);
		assert_string_equal(out, money[i].want);
	}
}

static void test_utc_periods(void **state)
{
	(void)state;
	char out[16];
	static const struct {
		int64_t ms;
		const char *day, *month;
		int64_t day_end, month_end;
	} cases[] = {
		/* 2026-12-31T23:59:59.999Z: both end at the new year. */
		{1798761599999, "2026-12-31", "2026-12", 1798761600000, 1798761600000},
		/* 2027-01-01T00:00:00.000Z starts both. */
		{1798761600000, "2027-01-01", "2027-01", 1798848000000, 1801440000000},
		/* 2028-02-28T12:00:00Z: a leap February ends on the 29th. */
		{1835352000000, "2028-02-28", "2028-02", 1835395200000, 1835481600000},
		{0, "1970-01-01", "1970-01", 86400000, 2678400000},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		time_utc_period(cases[i].ms, false, out);
		assert_string_equal(out, cases[i].day);
		time_utc_period(cases[i].ms, true, out);
		assert_string_equal(out, cases[i].month);
		assert_int_equal(time_utc_period_end_ms(cases[i].ms, false), cases[i].day_end);
		assert_int_equal(time_utc_period_end_ms(cases[i].ms, true), cases[i].month_end);
	}
}

static void test_parse_size(void **state)
{
	(void)state;
	struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{"0", 0},
		{"100", 100},
		{"5B", 5},
		{"512k", 512ull << 10},
		{"512K", 512ull << 10},
		{"10KiB", 10ull << 10},
		{"64M", 64ull << 20},
		{"3MB", 3ull << 20},
		{"2G", 2ull << 30},
		{"1T", 1ull << 40},
		{"16777215T", 16777215ull << 40},
		{"18446744073709551615", UINT64_MAX},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		uint64_t v = 0;
		assert_int_equal(parse_size(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	const char *bad[] = {"",      "k",       "-1",  "+1",   " 1",   "1 ",
			     "12x",   "1.5G",    "1GG", "0x10", "16777216T",
			     "18446744073709551616", "99999999999999999999999"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		uint64_t v = 7;
		if (parse_size(bad[i], &v) != SS_EPARSE)
			fail_msg("parse_size accepted '%s' as %llu", bad[i], (unsigned long long)v);
		assert_int_equal(v, 7);
	}
}

static void test_parse_duration(void **state)
{
	(void)state;
	struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{"0ms", 0}, {"500ms", 500}, {"2s", 2000}, {"3", 3000}, {"1m", 60000},
		{"2h", 7200000}, {"90d", 7776000000ull},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		uint64_t v = 0;
		assert_int_equal(parse_duration_ms(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	const char *bad[] = {"",     "ms",   "s",    "-1s",  "1D", "1.5s", "1 s",
			     "1S",   "1sec", "10mss", "18446744073709551615s",
			     "99999999999999999999999ms"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		uint64_t v = 7;
		if (parse_duration_ms(bad[i], &v) != SS_EPARSE)
			fail_msg("parse_duration_ms accepted '%s' as %llu", bad[i],
				 (unsigned long long)v);
		assert_int_equal(v, 7);
	}
}

static void test_addr_split(void **state)
{
	(void)state;
	char host[64];
	uint16_t port = 0;

	assert_int_equal(addr_split("127.0.0.1:7000", host, sizeof host, &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 7000);
	assert_int_equal(addr_split("manager.example:0", host, sizeof host, &port), 0);
	assert_string_equal(host, "manager.example");
	assert_int_equal(port, 0);
	assert_int_equal(addr_split("[::1]:443", host, sizeof host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 443);
	assert_int_equal(addr_split("[fe80::1:2]:65535", host, sizeof host, &port), 0);
	assert_string_equal(host, "fe80::1:2");
	assert_int_equal(port, 65535);

	const char *bad[] = {"nohost",   ":80",      "[::1]80", "[::1",   "[]:80",
			     "h:",       "h:65536",  "h:-1",    "h:80x",
			     "",         "[::1]:",   "h:99999999999999999999"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		strcpy(host, "untouched");
		port = 9;
		if (addr_split(bad[i], host, sizeof host, &port) != SS_EPARSE)
			fail_msg("addr_split accepted '%s'", bad[i]);
		assert_string_equal(host, "untouched");
		assert_int_equal(port, 9);
	}
	/* A host that does not fit the buffer is refused, not truncated. */
	char small[4];
	assert_int_equal(addr_split("abcd:1", small, sizeof small, &port), SS_EPARSE);
	assert_int_equal(addr_split("abc:1", small, sizeof small, &port), 0);
	assert_string_equal(small, "abc");
}

static void test_ident_valid(void **state)
{
	(void)state;
	char s63[64], s64[65];
	memset(s63, 'a', 63);
	s63[63] = '\0';
	memset(s64, 'a', 64);
	s64[64] = '\0';

	assert_true(ident_valid("a"));
	assert_true(ident_valid("0"));
	assert_true(ident_valid("node-1.eu_west"));
	assert_true(ident_valid(s63));
	assert_false(ident_valid(s64));
	assert_false(ident_valid(""));
	assert_false(ident_valid("-a"));
	assert_false(ident_valid(".a"));
	assert_false(ident_valid("_a"));
	assert_false(ident_valid("a b"));
	assert_false(ident_valid("a/b"));
	assert_false(ident_valid("a:b"));
	assert_false(ident_valid("caf\xc3\xa9"));
	assert_false(ident_valid("a\n"));
}

static void test_label_value_valid(void **state)
{
	(void)state;
	char s127[128], s128[129];
	memset(s127, 'v', 127);
	s127[127] = '\0';
	memset(s128, 'v', 128);
	s128[128] = '\0';

	assert_true(label_value_valid(""));
	assert_true(label_value_valid("eu-west-1a"));
	assert_true(label_value_valid("a=b,c:d/e"));
	assert_true(label_value_valid(s127));
	assert_false(label_value_valid(s128));
	assert_false(label_value_valid("has space"));
	assert_false(label_value_valid("tab\there"));
	assert_false(label_value_valid("quote\"d"));
	assert_false(label_value_valid("back\\slash"));
	assert_false(label_value_valid("del\x7f"));
	assert_false(label_value_valid("nl\n"));
	assert_false(label_value_valid("caf\xc3\xa9"));
}

/* ---- buffers ------------------------------------------------------------ */

static void test_buf(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);

	buf_append(&b, NULL, 0);
	assert_int_equal(b.len, 0);
	buf_append(&b, "hello", 5);
	buf_printf(&b, " %s %d", "world", 42);
	assert_int_equal(b.len, 14);
	assert_memory_equal(b.data, "hello world 42", 14);
	/* buf_printf leaves a NUL after the text. */
	assert_int_equal(b.data[b.len], '\0');

	buf_consume(&b, 6);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "world 42", 8);
	buf_consume(&b, 100);
	assert_int_equal(b.len, 0);

	buf_reserve(&b, 10000);
	assert_true(b.cap >= 10000);
	size_t cap = b.cap;
	buf_reserve(&b, 10);
	assert_int_equal(b.cap, cap);

	uint8_t chunk[1000];
	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (uint8_t)i;
	for (int i = 0; i < 50; i++)
		buf_append(&b, chunk, sizeof chunk);
	assert_int_equal(b.len, 50000);
	assert_true(b.cap >= b.len);
	assert_memory_equal(b.data + 49000, chunk, sizeof chunk);
	buf_consume(&b, 49000);
	assert_int_equal(b.len, 1000);
	assert_memory_equal(b.data, chunk, sizeof chunk);

	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	buf_free(&b);
}

/* ---- files -------------------------------------------------------------- */

static size_t count_entries(const char *dir)
{
	size_t n = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_files(void **state)
{
	(void)state;
	char dir[64];
	fx_tmpdir(dir, sizeof dir, "test-core");
	char *path = xasprintf("%s/data.txt", dir);
	struct stat st;

	assert_int_equal(file_write_atomic(path, "0123456789", 10, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 10);
	assert_int_equal(count_entries(dir), 1); /* no temp file left behind */

	char *data = NULL;
	size_t len = 0;
	assert_int_equal(file_read(path, 10, &data, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal(data, "0123456789");
	free(data);
	data = NULL;
	assert_int_equal(file_read(path, 9, &data, &len), SS_ETOOBIG);
	assert_null(data);
	assert_int_equal(file_read(path, 0, &data, NULL), SS_ETOOBIG);

	/* Overwrite: new content and new mode replace the old. */
	assert_int_equal(file_write_atomic(path, "xy", 2, 0644), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(file_read(path, 100, &data, &len), 0);
	assert_int_equal(len, 2);
	assert_string_equal(data, "xy");
	free(data);

	/* Empty file. */
	assert_int_equal(file_write_atomic(path, "", 0, 0600), 0);
	assert_int_equal(file_read(path, 0, &data, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(data);

	char *missing = xasprintf("%s/missing", dir);
	data = NULL;
	assert_int_equal(file_read(missing, 100, &data, &len), SS_ENOTFOUND);
	assert_null(data);
	char *nodir = xasprintf("%s/no/such/dir/f", dir);
	assert_int_equal(file_write_atomic(nodir, "x", 1, 0600), SS_EIO);

	/* dir_ensure makes parents and refuses a path that is a file. */
	char *nested = xasprintf("%s/a/b/c", dir);
	assert_int_equal(dir_ensure(nested, 0700), 0);
	assert_int_equal(stat(nested, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(dir_ensure(nested, 0700), 0);
	assert_int_equal(dir_ensure(path, 0700), SS_EIO);

	free(nested);
	free(nodir);
	free(missing);
	free(path);
	fx_rmtree(dir);
}

/* ---- crypto helpers ---------------------------------------------------- */

static void test_ct_equal_and_hash(void **state)
{
	(void)state;
	uint8_t a[32], b[32];
	memset(a, 0x5a, sizeof a);
	memcpy(b, a, sizeof b);
	assert_true(ct_equal(a, b, sizeof a));
	b[31] ^= 1;
	assert_false(ct_equal(a, b, sizeof a));
	assert_true(ct_equal(a, b, 31));
	b[0] ^= 0x80;
	assert_false(ct_equal(a, b, 31));
	assert_true(ct_equal(a, b, 0));

	uint8_t h[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	sha256("abc", 3, h);
	hex_encode(h, sizeof h, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	for (int i = 0; i < 1000; i++)
		assert_true(rand_below(7) < 7);
	assert_int_equal(rand_below(1), 0);
	uint8_t r1[16] = {0}, r2[16] = {0};
	rand_bytes(r1, sizeof r1);
	rand_bytes(r2, sizeof r2);
	assert_false(ct_equal(r1, r2, sizeof r1));
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(ss_strerror(0), "success");
	assert_string_equal(ss_strerror(SS_ETOOBIG), "message too large");
	assert_string_equal(ss_strerror(SS_EPARSE), "parse error");
	assert_string_equal(ss_strerror(-9999), "unknown error");
	char *s = xasprintf("%s-%d", "x", 5);
	assert_string_equal(s, "x-5");
	free(s);
	s = xstrndup("abcdef", 3);
	assert_string_equal(s, "abc");
	free(s);
}

static void test_strict_parsers(void **state)
{
	(void)state;
	char h[64];
	uint16_t p;
	int64_t t;
	assert_int_equal(addr_split("h: 80", h, sizeof h, &p), SS_EPARSE);
	assert_int_equal(addr_split("h:+80", h, sizeof h, &p), SS_EPARSE);
	assert_int_equal(addr_split("h:123456", h, sizeof h, &p), SS_EPARSE);
	assert_int_equal(addr_split("h:65536", h, sizeof h, &p), SS_EPARSE);
	assert_int_equal(time_parse_rfc3339("2025-6-1T1:2:3Z", &t), SS_EPARSE);
	assert_int_equal(time_parse_rfc3339(" 2025-06-01T00:00:00Z", &t), SS_EPARSE);
	assert_int_equal(time_parse_rfc3339("2025-02-31T00:00:00Z", &t), SS_EPARSE);
	assert_int_equal(time_parse_rfc3339("2025-02-29T00:00:00Z", &t), SS_EPARSE);
	assert_int_equal(time_parse_rfc3339("2024-02-29T00:00:00Z", &t), 0);
	assert_int_equal(time_parse_rfc3339("2025-06-01T00:00:00.5Z", &t), 0);
	assert_int_equal(t, 1748736000);
}

/* The verification cache: exact windows, replacement of the oldest, its own key references. */
static void test_cert_cache(void **state)
{
	(void)state;
	struct cert_cache *c = cert_cache_new(2, sizeof(int));
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(k);
	uint8_t a[32] = {1}, b[32] = {2}, d[32] = {3};
	int v = 7, got = 0;
	EVP_PKEY *pk = NULL;
	int64_t from = 0, until = 0;
	cert_cache_put(c, a, &v, k, 100, 200);
	EVP_PKEY_free(k); /* the cache keeps its own reference */
	assert_false(cert_cache_get(c, a, 99, &got, &pk, &from, &until));
	assert_false(cert_cache_get(c, a, 201, &got, &pk, &from, &until));
	assert_true(cert_cache_get(c, a, 200, &got, &pk, &from, &until));
	assert_int_equal(got, 7);
	assert_int_equal(from, 100);
	assert_int_equal(until, 200);
	assert_non_null(pk);
	EVP_PKEY_free(pk); /* a new reference per hit */
	/* Replacing an entry keeps one slot; a third key evicts the oldest. */
	v = 8;
	cert_cache_put(c, a, &v, NULL, 0, 1000);
	assert_true(cert_cache_get(c, a, 500, &got, &pk, &from, &until));
	assert_int_equal(got, 8);
	assert_null(pk);
	cert_cache_put(c, b, &v, NULL, 0, 1000);
	cert_cache_put(c, d, &v, NULL, 0, 1000);
	assert_false(cert_cache_get(c, a, 500, &got, &pk, &from, &until));
	assert_true(cert_cache_get(c, b, 500, &got, &pk, &from, &until));
	assert_true(cert_cache_get(c, d, 500, &got, &pk, &from, &until));
	cert_cache_reset(c);
	assert_false(cert_cache_get(c, d, 500, &got, &pk, &from, &until));
	cert_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_strict_parsers),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_time_round_trip),
		cmocka_unit_test(test_time_rejects),
		cmocka_unit_test(test_formatters),
		cmocka_unit_test(test_utc_periods),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_addr_split),
		cmocka_unit_test(test_ident_valid),
		cmocka_unit_test(test_label_value_valid),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_ct_equal_and_hash),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_cert_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
