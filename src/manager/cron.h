/*
 * cron.h - cron schedules for periodic jobs: parse a five-field cron
 * expression and find the next minute it matches, in UTC.
 *
 * The format is the classic one (minute hour day-of-month month
 * day-of-week), as in crontab(5) and Nomad's periodic jobs:
 *   - each field is "*", a number, a range "a-b", any of those with a step
 *     "/n", or a comma-separated list of them;
 *   - months may be named jan..dec and weekdays sun..sat (any case); weekday
 *     7 is Sunday, like 0;
 *   - "@yearly" (or "@annually"), "@monthly", "@weekly", "@daily" (or
 *     "@midnight") and "@hourly" stand for their usual expressions;
 *   - when both day fields are restricted (neither starts with "*"), a day
 *     matches when either does, as in Vixie cron; otherwise both must.
 * Times are UTC; there is no seconds field (periodic jobs use "every" for
 * intervals below a minute). docs/jobs.md documents the format.
 *
 * The parser is pure: no allocation, bounded input (CRON_MAX_LEN bytes).
 * Safe from any thread.
 */
#ifndef SS_CRON_H
#define SS_CRON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRON_MAX_LEN 128 /* bytes of an expression, without the terminating NUL */

/* A parsed expression: one bit per allowed value of each field. */
struct cron {
	uint64_t minutes;  /* bits 0..59 */
	uint32_t hours;    /* bits 0..23 */
	uint32_t days;     /* bits 1..31 */
	uint16_t months;   /* bits 1..12 */
	uint8_t weekdays;  /* bits 0..6, 0 = Sunday */
	bool days_any;     /* the day-of-month field starts with "*" */
	bool weekdays_any; /* the day-of-week field starts with "*" */
};

/*
 * Parses expr (a NUL-terminated string). Returns 0 and fills *out, or
 * SS_EINVAL (a bad field, or a schedule that never matches, such as
 * "0 0 31 2 *") or SS_ELIMIT (longer than CRON_MAX_LEN), with a message in
 * why that names the field, e.g. "field 2 (hour): 24 is out of range 0-23".
 */
int cron_parse(const char *expr, struct cron *out, char *why, size_t whylen);

/*
 * The first whole minute strictly after after_ms (ms since the epoch, UTC)
 * that c matches, in ms since the epoch. Returns 0 and sets *next_ms, or
 * SS_ENOTFOUND when nothing matches within the next 50 years (which no
 * expression cron_parse accepted does), or SS_EINVAL for a time outside
 * the years 1970..9000.
 */
int cron_next(const struct cron *c, int64_t after_ms, int64_t *next_ms);

#endif
