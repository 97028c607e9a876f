/*
 * cron.c - five-field cron expressions in UTC (cron.h).
 *
 * cron_next() walks forward from the minute after its argument, skipping a
 * whole month, day or hour whenever that unit cannot match, so each step
 * either lands on a match or moves to the start of a later unit. A year
 * takes at most a few hundred steps; the walk gives up after MAX_STEPS.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "manager/cron.h"

#define MAX_STEPS 100000
#define SEARCH_YEARS 50 /* a 29th of February on a given weekday recurs within 40 years */

struct field {
	const char *name;
	int lo, hi;
	const char *const *names; /* names for lo.., or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
					  "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day of month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day of week", 0, 7, day_names},
};

static const struct {
	const char *name, *expr;
} macros[] = {
	{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/*
 * Reads one value of field f at *s (a number or, where the field has names,
 * a three-letter name) and advances *s. Returns 0, or SS_EINVAL with a message.
 */
static int read_value(const struct field *f, int idx, const char **s, int *out, char *why, size_t whylen)
{
	const char *p = *s;
	if (isdigit((unsigned char)*p)) {
		long v = 0;
		while (isdigit((unsigned char)*p) && v <= 9999)
			v = v * 10 + (*p++ - '0');
		if (v < f->lo || v > f->hi) {
			snprintf(why, whylen, "field %d (%s): %s%ld is out of range %d-%d", idx + 1, f->name,
				 v > 9999 ? "more than " : "", v > 9999 ? 9999 : v, f->lo, f->hi);
			return SS_EINVAL;
		}
		*out = (int)v;
		*s = p;
		return 0;
	}
	for (int i = 0; f->names && f->names[i]; i++)
		if (!strncasecmp(p, f->names[i], 3)) {
			*out = f->lo + i;
			*s = p + 3;
			return 0;
		}
	snprintf(why, whylen, "field %d (%s): expected a number%s at \"%.12s\"", idx + 1, f->name,
		 f->names ? " or a name" : "", p);
	return SS_EINVAL;
}

/*
 * Parses field idx, the text [s, end), into a bit set. Returns 0 with *bits
 * and *any (the field starts with "*"), or SS_EINVAL with a message.
 */
static int parse_field(int idx, const char *s, const char *end, uint64_t *bits, bool *any, char *why,
		       size_t whylen)
{
	const struct field *f = &fields[idx];
	*bits = 0;
	*any = *s == '*';
	while (s < end) {
		int lo, hi, step = 1;
		bool single = false; /* one value, no range: "a/n" runs from a to the field's end */
		int rc;
		if (*s == '*') {
			lo = f->lo;
			hi = f->hi;
			s++;
		} else {
			if ((rc = read_value(f, idx, &s, &lo, why, whylen)))
				return rc;
			hi = lo;
			single = *s != '-';
			if (*s == '-') {
				s++;
				if ((rc = read_value(f, idx, &s, &hi, why, whylen)))
					return rc;
				if (hi < lo) {
					snprintf(why, whylen, "field %d (%s): the range %d-%d runs backwards", idx + 1,
						 f->name, lo, hi);
					return SS_EINVAL;
				}
			}
		}
		if (*s == '/') {
			long v = 0;
			s++;
			if (!isdigit((unsigned char)*s))
				v = -1;
			while (isdigit((unsigned char)*s) && v <= 9999)
				v = v * 10 + (*s++ - '0');
			if (v < 1 || v > f->hi) {
				snprintf(why, whylen, "field %d (%s): a step must be a number from 1 to %d", idx + 1,
					 f->name, f->hi);
				return SS_EINVAL;
			}
			step = (int)v;
			if (single)
				hi = f->hi;
		}
		for (int v = lo; v <= hi; v += step)
			*bits |= 1ull << v;
		if (s < end && *s != ',') {
			snprintf(why, whylen, "field %d (%s): unexpected \"%c\"", idx + 1, f->name, *s);
			return SS_EINVAL;
		}
		if (s < end && ++s == end) {
			snprintf(why, whylen, "field %d (%s): a list cannot end with \",\"", idx + 1, f->name);
			return SS_EINVAL;
		}
	}
	return 0;
}

int cron_parse(const char *expr, struct cron *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof *out);
	size_t len = strnlen(expr, CRON_MAX_LEN + 1);
	if (len > CRON_MAX_LEN) {
		snprintf(why, whylen, "longer than %d bytes", CRON_MAX_LEN);
		return SS_ELIMIT;
	}
	const char *s = expr;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '@') {
		size_t n = strcspn(s, " \t");
		for (size_t i = 0; i < ARRAY_LEN(macros); i++)
			if (strlen(macros[i].name) == n && !strncasecmp(s, macros[i].name, n) &&
			    s[n + strspn(s + n, " \t")] == '\0')
				return cron_parse(macros[i].expr, out, why, whylen);
		snprintf(why, whylen,
			 "\"%.*s\" is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
			 (int)(n > 16 ? 16 : n), s);
		return SS_EINVAL;
	}
	uint64_t bits[5];
	bool any[5];
	int n = 0;
	while (*s) {
		const char *end = s + strcspn(s, " \t");
		if (n == 5) {
			snprintf(why, whylen,
				 "more than 5 fields (minute hour day-of-month month day-of-week); there is no "
				 "seconds field: use \"every\" for intervals below a minute");
			return SS_EINVAL;
		}
		int rc = parse_field(n, s, end, &bits[n], &any[n], why, whylen);
		if (rc)
			return rc;
		n++;
		s = end + strspn(end, " \t");
	}
	if (n < 5) {
		snprintf(why, whylen,
			 "%d field%s where 5 are needed: minute hour day-of-month month day-of-week "
			 "(e.g. \"30 2 * * *\")",
			 n, n == 1 ? "" : "s");
		return SS_EINVAL;
	}
	out->minutes = bits[0];
	out->hours = (uint32_t)bits[1];
	out->days = (uint32_t)bits[2];
	out->months = (uint16_t)bits[3];
	/* Weekday 7 is Sunday. */
	out->weekdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f);
	out->days_any = any[2];
	out->weekdays_any = any[4];
	/* Any instant will do to prove the schedule can match at all: 50 years cover every calendar. */
	int64_t next;
	if (cron_next(out, 0, &next) != 0) {
		snprintf(why, whylen, "\"%s\" never matches: no month it names has the day it names", expr);
		return SS_EINVAL;
	}
	return 0;
}

static bool day_matches(const struct cron *c, const struct tm *tm)
{
	bool dom = c->days >> tm->tm_mday & 1;
	bool dow = c->weekdays >> tm->tm_wday & 1;
	if (c->days_any || c->weekdays_any)
		return dom && dow;
	return dom || dow;
}

/* The first value >= from set in bits below limit, or -1. */
static int first_set(uint64_t bits, int from, int limit)
{
	for (int v = from; v < limit; v++)
		if (bits >> v & 1)
			return v;
	return -1;
}

int cron_next(const struct cron *c, int64_t after_ms, int64_t *next_ms)
{
	/* 1970 .. about the year 9000, where struct tm and time_t agree everywhere. */
	if (after_ms < 0 || after_ms > 221845392000000)
		return SS_EINVAL;
	time_t t = (time_t)(after_ms / 60000 + 1) * 60;
	struct tm tm;
	gmtime_r(&t, &tm);
	int stop_year = tm.tm_year + SEARCH_YEARS;
	for (int step = 0; step < MAX_STEPS && tm.tm_year < stop_year; step++) {
		if (!(c->months >> (tm.tm_mon + 1) & 1)) {
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = tm.tm_min = 0;
		} else if (!day_matches(c, &tm)) {
			tm.tm_mday++;
			tm.tm_hour = tm.tm_min = 0;
		} else {
			int h = first_set(c->hours, tm.tm_hour, 24);
			if (h < 0) {
				tm.tm_mday++;
				tm.tm_hour = tm.tm_min = 0;
			} else {
				int m = first_set(c->minutes, h == tm.tm_hour ? tm.tm_min : 0, 60);
				if (m >= 0) {
					tm.tm_hour = h;
					tm.tm_min = m;
					tm.tm_sec = 0;
					*next_ms = (int64_t)timegm(&tm) * 1000;
					return 0;
				}
				tm.tm_hour = h + 1;
				tm.tm_min = 0;
			}
		}
		/* Normalise (the day or month may have run over) and recompute the weekday. */
		tm.tm_sec = 0;
		tm.tm_isdst = 0;
		t = timegm(&tm);
		gmtime_r(&t, &tm);
	}
	return SS_ENOTFOUND;
}
