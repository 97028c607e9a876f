/*
 * ca_cmd.c - `seeswarm ca issue-agent`: issues agent join credentials from
 * the swarm CA in a manager's data directory. It works offline on the files,
 * so it needs read access to the CA key and never talks to the API.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest/ca.h"
#include "cli/cli.h"
#include "core/core.h"

#define DEFAULT_DAYS 365
#define MAX_DAYS 36500

static const char usage_text[] =
	"usage: seeswarm ca issue-agent --data-dir MANAGER_DIR --out AGENT_DIR\n"
	"                               [--id ID] [--days N]\n"
	"\n"
	"Issues an agent's join credentials (agent.key, agent.pem, ca.pem, node-id)\n"
	"into AGENT_DIR, signed by the swarm CA stored in MANAGER_DIR.\n"
	"\n"
	"  --data-dir DIR   the manager's data directory (holds ca.key and ca.pem)\n"
	"  --out DIR        where to write the credentials (created with mode 0700)\n"
	"  --id ID          the agent's node ID (default: agent-<8 random hex>)\n"
	"  --days N         certificate lifetime in days (default 365, at most 36500)\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

static int parse_days(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > MAX_DAYS)
		return SS_EINVAL;
	*out = v;
	return 0;
}

static int issue_agent(int argc, char **argv)
{
	const char *data_dir = NULL, *out_dir = NULL, *id = NULL, *days_s = NULL;
	char gen_id[32];
	long days = DEFAULT_DAYS;
	struct ca *ca = NULL;
	int ret = 2;

	for (int i = 1; i < argc; i++) {
		int r;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout, 0);
		if ((r = cli_opt_value(argc, argv, &i, "--data-dir", &data_dir)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--out", &out_dir)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--id", &id)) != 0 ||
		    (r = cli_opt_value(argc, argv, &i, "--days", &days_s)) != 0) {
			if (r < 0)
				return usage(stderr, 2);
			continue;
		}
		fprintf(stderr, "error: unexpected argument \"%s\"\n", argv[i]);
		return usage(stderr, 2);
	}
	if (!data_dir || !*data_dir || !out_dir || !*out_dir) {
		fprintf(stderr, "error: --data-dir and --out are required\n");
		return usage(stderr, 2);
	}
	if (days_s && parse_days(days_s, &days) != 0) {
		fprintf(stderr, "error: --days wants a whole number from 1 to %d\n", MAX_DAYS);
		return 2;
	}
	if (!id) {
		uint8_t r[4];
		char hex[9];
		rand_bytes(r, sizeof r);
		hex_encode(r, sizeof r, hex);
		snprintf(gen_id, sizeof gen_id, "agent-%s", hex);
		id = gen_id;
	}
	if (!ident_valid(id)) {
		fprintf(stderr, "error: invalid agent ID (want 1-63 of [A-Za-z0-9._-], "
				"starting with a letter or digit)\n");
		return 2;
	}

	ret = 1;
	int rc = ca_load(&ca, data_dir);
	if (rc) {
		fprintf(stderr, "error: cannot load the swarm CA from %s: %s\n", data_dir,
			ss_strerror(rc));
		goto out;
	}
	rc = ca_issue_agent_dir(ca, id, out_dir, (int64_t)days * 86400);
	if (rc) {
		fprintf(stderr, "error: cannot issue agent credentials into %s: %s\n", out_dir,
			ss_strerror(rc));
		goto out;
	}
	char *abs = realpath(out_dir, NULL);
	printf("agent id:  %s\ndirectory: %s\n", id, abs ? abs : out_dir);
	free(abs);
	ret = 0;
out:
	ca_free(ca);
	return ret;
}

int cli_ca_main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, 2);
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return usage(stdout, 0);
	if (!strcmp(sub, "issue-agent"))
		return issue_agent(argc - 1, argv + 1);
	fprintf(stderr, "error: unknown ca command \"%s\"\n", sub);
	return usage(stderr, 2);
}
