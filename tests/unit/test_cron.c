/* test_cron.c - cron expressions: fields, names, steps, macros, the day rule, next times and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/cron.h"

/* ms since the epoch of a UTC time "YYYY-MM-DD HH:MM". */
static int64_t at(const char *s)
{
	struct tm tm = {0};
	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
				&tm.tm_min),
			 5);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000;
}

/* The next match of expr after the UTC time after, as "YYYY-MM-DD HH:MM (Dow)". */
static const char *next_of(const char *expr, const char *after)
{
	static char out[64];
	struct cron c;
	char why[256];
	int rc = cron_parse(expr, &c, why, sizeof why);
	if (rc)
		fail_msg("%s: %s", expr, why);
	int64_t n;
	assert_int_equal(cron_next(&c, at(after), &n), 0);
	time_t t = (time_t)(n / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, sizeof out, "%Y-%m-%d %H:%M (%a)", &tm);
	return out;
}

static void bad(const char *expr, int want, const char *msg)
{
	struct cron c;
	char why[256] = "";
	assert_int_equal(cron_parse(expr, &c, why, sizeof why), want);
	if (!strstr(why, msg))
		fail_msg("%s: \"%s\" lacks \"%s\"", expr, why, msg);
}

static void test_fields(void **state)
{
	(void)state;
	struct cron c;
	char why[256];
	assert_int_equal(cron_parse("*/15 9-17 * jan,jul mon-fri", &c, why, sizeof why), 0);
	assert_true(c.minutes == (1ull << 0 | 1ull << 15 | 1ull << 30 | 1ull << 45));
	assert_int_equal(c.hours, 0x3fe00); /* 9..17 */
	assert_int_equal(c.months, 1 << 1 | 1 << 7);
	assert_int_equal(c.weekdays, 0x3e); /* Mon..Fri */
	assert_true(c.days_any);
	assert_false(c.weekdays_any);
	/* "a/n" runs from a to the end; 7 is Sunday; names ignore case; tabs separate. */
	assert_int_equal(cron_parse("5/20\t0\t1-31/10 *\tSAT,7", &c, why, sizeof why), 0);
	assert_true(c.minutes == (1ull << 5 | 1ull << 25 | 1ull << 45));
	assert_int_equal(c.days, 1u << 1 | 1u << 11 | 1u << 21 | 1u << 31);
	assert_int_equal(c.weekdays, 1 << 6 | 1 << 0);
	assert_int_equal(cron_parse("@weekly", &c, why, sizeof why), 0);
	assert_int_equal(c.weekdays, 1);
	assert_int_equal(c.minutes, 1);
}

static void test_next(void **state)
{
	(void)state;
	/* Strictly after: the minute itself does not count. */
	assert_string_equal(next_of("* * * * *", "2026-12-02 07:30"), "2026-12-02 07:31 (Wed)");
	assert_string_equal(next_of("30 7 * * *", "2026-12-02 07:30"), "2026-12-03 07:30 (Thu)");
	assert_string_equal(next_of("30 7 * * *", "2026-12-02 07:29"), "2026-12-02 07:30 (Wed)");
	/* Over the end of an hour, a day, a month and a year. */
	assert_string_equal(next_of("0,10 * * * *", "2026-12-31 23:55"), "2027-01-01 00:00 (Fri)");
	assert_string_equal(next_of("*/20 8 * * *", "2026-12-02 08:45"), "2026-12-03 08:00 (Thu)");
	assert_string_equal(next_of("@monthly", "2026-01-31 12:00"), "2026-02-01 00:00 (Sun)");
	assert_string_equal(next_of("@yearly", "2026-06-01 00:00"), "2027-01-01 00:00 (Fri)");
	/* Weekdays only, from a Friday evening. */
	assert_string_equal(next_of("0 9 * * mon-fri", "2026-12-04 18:00"), "2026-12-07 09:00 (Mon)");
	/* Both day fields restricted: either matches (the 13th, or any Friday). */
	assert_string_equal(next_of("0 0 13 * fri", "2026-12-01 00:00"), "2026-12-04 00:00 (Fri)");
	assert_string_equal(next_of("0 0 13 * fri", "2026-12-11 00:00"), "2026-12-13 00:00 (Sun)");
	/* One of them starts with "*": both must (a Sunday the 13th; a Friday the 1st, 14th or 27th). */
	assert_string_equal(next_of("0 0 13 * */7", "2026-12-01 00:00"), "2026-12-13 00:00 (Sun)");
	assert_string_equal(next_of("0 0 */13 * 5", "2026-12-01 00:00"), "2027-01-01 00:00 (Fri)");
	assert_string_equal(next_of("0 0 */13 * 5", "2027-01-02 00:00"), "2027-05-14 00:00 (Fri)");
	/* The 31st skips the months without one; a leap day waits for its year. */
	assert_string_equal(next_of("0 12 31 * *", "2026-04-01 00:00"), "2026-05-31 12:00 (Sun)");
	assert_string_equal(next_of("0 0 29 feb *", "2026-03-01 00:00"), "2028-02-29 00:00 (Tue)");
	/* 2100 is not a leap year: the 29th of February after 2096 is in 2104. */
	assert_string_equal(next_of("0 0 29 2 *", "2096-03-01 00:00"), "2104-02-29 00:00 (Fri)");
	/* A Sunday the 29th of February: 40 years apart over 2100. */
	assert_string_equal(next_of("0 0 29 2 */7", "2088-03-01 00:00"), "2128-02-29 00:00 (Sun)");
	/* Seconds within the minute do not matter. */
	struct cron c;
	char why[64];
	assert_int_equal(cron_parse("* * * * *", &c, why, sizeof why), 0);
	int64_t n;
	assert_int_equal(cron_next(&c, at("2026-12-02 07:30") + 59999, &n), 0);
	assert_int_equal(n, at("2026-12-02 07:31"));
	assert_int_equal(cron_next(&c, -1, &n), SS_EINVAL);
}

/* The same question answered minute by minute. */
static bool matches(const struct cron *c, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	bool dom = c->days >> tm.tm_mday & 1, dow = c->weekdays >> tm.tm_wday & 1;
	bool day = c->days_any || c->weekdays_any ? dom && dow : dom || dow;
	return (c->months >> (tm.tm_mon + 1) & 1) && day && (c->hours >> tm.tm_hour & 1) &&
	       (c->minutes >> tm.tm_min & 1);
}

/* Random expressions against a minute-by-minute search over 40 days. */
static void test_against_brute_force(void **state)
{
	(void)state;
	uint64_t r = 0x9e3779b97f4a7c15ull;
	int found = 0;
	for (int i = 0; i < 120; i++) {
		char expr[128];
		const char *const mins[] = {"*", "*/7", "0,30", "59", "13-17"};
		const char *const hours[] = {"*", "3", "*/5", "22-23", "0,12"};
		const char *const doms[] = {"*", "31", "1-7", "*/10", "15,29"};
		const char *const mons[] = {"*", "feb", "*/2", "jan-mar", "11,12"};
		const char *const dows[] = {"*", "sun", "1-5", "*/3", "6,0"};
		uint64_t v[6];
		for (int k = 0; k < 6; k++) {
			r ^= r << 13, r ^= r >> 7, r ^= r << 17;
			v[k] = r;
		}
		snprintf(expr, sizeof expr, "%s %s %s %s %s", mins[v[0] % 5], hours[v[1] % 5], doms[v[2] % 5],
			 mons[v[3] % 5], dows[v[4] % 5]);
		struct cron c;
		char why[256];
		if (cron_parse(expr, &c, why, sizeof why) != 0) {
			/* Only a day February never has may be refused ("31 feb"). */
			if (!strstr(why, "never matches") || !strstr(expr, " feb "))
				fail_msg("%s: %s", expr, why);
			continue;
		}
		/* From a random moment between 2024 and 2030, seconds included. */
		int64_t from = at("2024-01-01 00:00") + (int64_t)(v[5] % (6ull * 365 * 86400 * 1000));
		int64_t next, want = -1;
		assert_int_equal(cron_next(&c, from, &next), 0);
		for (int64_t m = (from / 60000 + 1) * 60000; m < from + 40ll * 86400 * 1000; m += 60000)
			if (matches(&c, m)) {
				want = m;
				break;
			}
		if (want >= 0) {
			found++;
			if (next != want)
				fail_msg("%s after %lld: %lld, not %lld", expr, (long long)from, (long long)next,
					 (long long)want);
		} else {
			assert_true(next >= from + 40ll * 86400 * 1000);
			assert_true(matches(&c, next));
		}
	}
	/* Most draws match within 40 days, so the comparison is not vacuous. */
	assert_true(found > 60);
}

static void test_errors(void **state)
{
	(void)state;
	bad("", SS_EINVAL, "0 fields where 5 are needed");
	bad("* * * *", SS_EINVAL, "4 fields where 5");
	bad("0 * * * * *", SS_EINVAL, "there is no seconds field");
	bad("60 * * * *", SS_EINVAL, "field 1 (minute): 60 is out of range 0-59");
	bad("0 24 * * *", SS_EINVAL, "field 2 (hour): 24 is out of range 0-23");
	bad("0 0 0 * *", SS_EINVAL, "field 3 (day of month): 0 is out of range 1-31");
	bad("0 0 * 13 *", SS_EINVAL, "field 4 (month): 13 is out of range 1-12");
	bad("0 0 * * 8", SS_EINVAL, "field 5 (day of week): 8 is out of range 0-7");
	bad("99999999999 * * * *", SS_EINVAL, "more than 9999 is out of range");
	bad("0 0 * foo *", SS_EINVAL, "field 4 (month): expected a number or a name");
	bad("0 0 * * monday", SS_EINVAL, "unexpected \"d\"");
	bad("5-1 * * * *", SS_EINVAL, "the range 5-1 runs backwards");
	bad("*/0 * * * *", SS_EINVAL, "a step must be a number from 1 to 59");
	bad("*/ * * * *", SS_EINVAL, "a step must be");
	bad("1, * * * *", SS_EINVAL, "cannot end with \",\"");
	bad(",1 * * * *", SS_EINVAL, "expected a number at");
	bad("-1 * * * *", SS_EINVAL, "expected a number");
	bad("@often", SS_EINVAL, "is not one of @yearly");
	bad("@daily 0", SS_EINVAL, "is not one of");
	bad("0 0 31 2 *", SS_EINVAL, "never matches");
	bad("0 0 30 feb *", SS_EINVAL, "never matches");
	char longer[CRON_MAX_LEN + 8];
	memset(longer, ' ', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	bad(longer, SS_ELIMIT, "longer than 128 bytes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_against_brute_force),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
