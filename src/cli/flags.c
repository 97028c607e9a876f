/* flags.c - connection flags shared by the CLI commands that talk to the API. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"

/*
 * Matches argv[*i] against --name or --name=VALUE. On a match sets *val (the
 * next argument when no "=" is present, consuming it) and returns 1; returns
 * 0 when the argument is another one and -1 when the value is missing.
 */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "error: %s needs a value\n", name);
		return -1;
	}
	(*i)++;
	*val = argv[*i];
	return 1;
}

/*
 * Contract in cli.h. f is zeroed first, and a field is set only when its
 * flag is present. argv[0] is kept. Scanning stops at "--", which stays in
 * place with everything after it. Returns -1, after printing the reason to
 * stderr, when a flag lacks its value.
 */
int cli_take_conn_flags(int argc, char **argv, struct cli_conn_flags *f)
{
	static const struct {
		const char *name;
		size_t off;
	} flags[] = {
		{"--addr", offsetof(struct cli_conn_flags, addr)},
		{"--token", offsetof(struct cli_conn_flags, token)},
		{"--ca", offsetof(struct cli_conn_flags, ca)},
	};
	int out = argc > 0 ? 1 : 0;
	int i = out;

	memset(f, 0, sizeof *f);
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		int hit = 0;
		for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !hit; k++) {
			const char *val = NULL;
			hit = cli_opt_value(argc, argv, &i, flags[k].name, &val);
			if (hit < 0)
				return -1;
			if (hit)
				*(const char **)((char *)f + flags[k].off) = val;
		}
		if (!hit)
			argv[out++] = argv[i];
	}
	for (; i < argc; i++)
		argv[out++] = argv[i];
	if (out < argc)
		argv[out] = NULL;
	return out;
}

char *cli_clean(const char *s)
{
	char *out = xstrdup(s ? s : "");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

void cli_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
