/* test_sysinfo.c - unit tests for machine info (src/agent/sysinfo.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/sysinfo.h"
#include "core/core.h"

static void free_list(char **f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(f[i]);
	free(f);
}

static void test_parse_filters_sorts_dedups(void **state)
{
	(void)state;
	const char *text = "processor\t: 0\n"
			   "vendor_id\t: GenuineIntel\n"
			   "flags\t\t: fpu vme sse4_2 aes  avx2 sha_ni aes\tbogus_flag avx"
			   " rdrand sev_snp hypervisor avx512f avx2 tdx_guest\n"
			   "vmx flags\t: sgx smep\n"
			   "bugs\t\t: spectre_v1\n"
			   "processor\t: 1\n"
			   "flags\t\t: smap sgx\n";
	char **f = NULL;
	size_t n = 99;
	assert_int_equal(sysinfo_parse_cpuinfo(text, &f, &n), 0);
	const char *want[] = {"aes",    "avx",     "avx2",       "avx512f",   "hypervisor",
			      "rdrand", "sev_snp", "sha_ni",     "sse4_2",    "tdx_guest"};
	assert_int_equal(n, ARRAY_LEN(want));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(f[i], want[i]);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(f[i - 1], f[i]) < 0);
	free_list(f, n);
}

static void test_parse_every_allowed_flag_sorted(void **state)
{
	(void)state;
	const char *text = "flags : vpclmulqdq vaes tdx_guest sse4_2 sse4_1 smep smap sha_ni "
			   "sgx_lc sgx sev_snp sev_es sev rdseed rdrand pclmulqdq hypervisor "
			   "bmi2 avx512vl avx512f avx512bw avx2 avx aes adx fpu\n";
	char **f = NULL;
	size_t n = 0;
	assert_int_equal(sysinfo_parse_cpuinfo(text, &f, &n), 0);
	assert_int_equal(n, 25);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(f[i - 1], f[i]) < 0);
	free_list(f, n);
}

static void test_parse_no_flags(void **state)
{
	(void)state;
	char **f = (char **)1;
	size_t n = 5;
	assert_int_equal(sysinfo_parse_cpuinfo("", &f, &n), 0);
	assert_int_equal(n, 0);
	assert_null(f);

	n = 5;
	assert_int_equal(sysinfo_parse_cpuinfo("processor : 0\nmodel name : x\n", &f, &n), 0);
	assert_int_equal(n, 0);
	assert_null(f);

	/* An empty flags line, and one with only unknown flags. */
	assert_int_equal(sysinfo_parse_cpuinfo("flags\t:\n", &f, &n), 0);
	assert_int_equal(n, 0);
	assert_null(f);
	assert_int_equal(sysinfo_parse_cpuinfo("flags : fpu vme de pse\n", &f, &n), 0);
	assert_int_equal(n, 0);
	assert_null(f);

	/* "flagsx" and "vmx flags" are other keys; no trailing newline is fine. */
	assert_int_equal(sysinfo_parse_cpuinfo("flagsx : aes\nvmx flags : aes\nflags : avx", &f,
					       &n),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(f[0], "avx");
	free_list(f, n);

	assert_int_equal(sysinfo_parse_cpuinfo(NULL, &f, &n), SS_EINVAL);
}

static void test_parse_overlong_line_ignored(void **state)
{
	(void)state;
	size_t big = 70 * 1024;
	char *text = xmalloc(big + 64);
	size_t off = (size_t)sprintf(text, "flags : aes ");
	memset(text + off, 'x', big - off);
	off = big;
	off += (size_t)sprintf(text + off, "\nflags : avx2\n");
	char **f = NULL;
	size_t n = 0;
	assert_int_equal(sysinfo_parse_cpuinfo(text, &f, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(f[0], "avx2");
	free_list(f, n);
	free(text);
}

static void test_caps(void **state)
{
	(void)state;
	struct sysinfo_caps c;
	assert_int_equal(sysinfo_caps("/tmp", &c), 0);
	assert_true(c.cpu_cores >= 1);
	assert_true(c.memory_bytes > 0);
	assert_true(c.disk_bytes > 0);
	assert_true(strlen(c.hostname) < sizeof c.hostname);
	assert_true(c.n_features <= 64);
	for (size_t i = 1; i < c.n_features; i++)
		assert_true(strcmp(c.features[i - 1], c.features[i]) < 0);
	sysinfo_caps_free(&c);
	assert_null(c.features);
	assert_int_equal(c.n_features, 0);

	/* A data dir that does not exist gives zero disk, not an error. */
	assert_int_equal(sysinfo_caps("/nonexistent/seeswarm-test", &c), 0);
	assert_int_equal(c.disk_bytes, 0);
	sysinfo_caps_free(&c);
}

static void test_load(void **state)
{
	(void)state;
	struct sysinfo_load_state st = {0, 0};
	struct sysinfo_load l;
	assert_int_equal(sysinfo_load(&st, &l), 0);
	assert_true(l.cpu_permille <= 1000);
	assert_true(st.prev_total > 0);
	uint64_t t1 = st.prev_total;
	/* Burn a little CPU so the second sample has a nonzero window. */
	volatile uint64_t x = 0;
	for (uint64_t i = 0; i < 20000000; i++)
		x += i;
	assert_true(x > 0);
	assert_int_equal(sysinfo_load(&st, &l), 0);
	assert_true(l.cpu_permille <= 1000);
	assert_true(st.prev_total >= t1);
	assert_true(l.memory_used_bytes > 0);
}

int main(void)
{
	log_init("test", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_filters_sorts_dedups),
		cmocka_unit_test(test_parse_every_allowed_flag_sorted),
		cmocka_unit_test(test_parse_no_flags),
		cmocka_unit_test(test_parse_overlong_line_ignored),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
