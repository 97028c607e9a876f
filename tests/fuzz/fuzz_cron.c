/*
 * fuzz_cron.c - hostile cron expressions, as a periodic job's spec carries
 * them. Input: the expression (truncated to 200 bytes so the length bound is
 * exercised too). An accepted expression must give a next time after any
 * instant, later than that instant, and matching again from there on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manager/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char expr[201];
	size_t n = size < 200 ? size : 200;
	memcpy(expr, data, n);
	expr[n] = '\0';
	struct cron c;
	char why[256];
	if (cron_parse(expr, &c, why, sizeof why) != 0) {
		if (!why[0])
			abort(); /* every refusal says why */
		return 0;
	}
	/* From 2026-12-02, and from a time derived from the input. */
	int64_t from[2] = {1795766400000, 0};
	for (size_t i = 0; i < n; i++)
		from[1] = (from[1] * 131 + data[i]) % 4102444800000; /* before 2100 */
	for (int k = 0; k < 2; k++) {
		int64_t a, b;
		if (cron_next(&c, from[k], &a) != 0 || a <= from[k] || a % 60000 != 0)
			abort();
		if (cron_next(&c, a, &b) != 0 || b <= a)
			abort();
	}
	return 0;
}
