/* log.c - line-oriented logging to stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

static enum log_level g_level = LOG_INFO;
static char g_prefix[32] = "seeswarm";
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *prefix, enum log_level level)
{
	if (prefix)
		snprintf(g_prefix, sizeof g_prefix, "%s", prefix);
	g_level = level;
	const char *env = getenv("SEESWARM_LOG");
	if (env) {
		if (!strcmp(env, "debug"))
			g_level = LOG_DEBUG;
		else if (!strcmp(env, "info"))
			g_level = LOG_INFO;
		else if (!strcmp(env, "warn"))
			g_level = LOG_WARN;
		else if (!strcmp(env, "error"))
			g_level = LOG_ERROR;
	}
}

void log_set_level(enum log_level level)
{
	g_level = level;
}

enum log_level log_get_level(void)
{
	return g_level;
}

__attribute__((format(printf, 2, 0))) static void vlog(enum log_level level, const char *fmt, va_list ap)
{
	static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
	char ts[32];
	char line[2048];

	time_rfc3339(time_wall_ms(), ts);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	if (n < 0)
		return;
	/* Replace control characters so remote input cannot forge log lines. */
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			*p = '?';
	pthread_mutex_lock(&g_lock);
	fprintf(stderr, "%s %-5s %s: %s\n", ts, names[level], g_prefix, line);
	pthread_mutex_unlock(&g_lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > g_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

_Noreturn void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, fmt, ap);
	va_end(ap);
	abort();
}
