/*
 * token_cmd.c - `seeswarm token create|list|revoke`: tenant API tokens
 * (docs/security.md, "Tenants"), which need the admin token; and
 * `seeswarm tenant list`, each tenant's use against its quotas (a tenant
 * token sees its own); and `seeswarm audit`, the manager's audit trail
 * (admin token). Strings from the API are printed with control characters
 * replaced.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "client/config.h"
#include "core/core.h"

#define TOKEN_ID_HEX 16u /* hex digits of a token id (TENANTS_TOKEN_ID_LEN) */

static const char usage_text[] =
	"usage: seeswarm token <command> [options]\n"
	"\n"
	"Tenant tokens reach only their tenant's jobs, and the blobs they uploaded\n"
	"or their jobs use. Managing them needs the admin token.\n"
	"\n"
	"Commands:\n"
	"  create --tenant NAME [--ttl DUR] [--read-only] [--out FILE] [--json]\n"
	"                              make a token for a tenant and print it (once);\n"
	"                              --ttl makes it stop working after DUR (30m, 8h,\n"
	"                              90d; at most 10 years); --read-only lets it list\n"
	"                              and read but not submit, cancel or upload; --out\n"
	"                              also writes a client config file (0600) for\n"
	"                              SEESWARM_CONFIG=FILE\n"
	"  list [--json]               list tokens (ids and tenants, never the tokens)\n"
	"  revoke ID                   revoke a token now\n"
	"\n"
	"Connection options (default: SEESWARM_ADDR, SEESWARM_TOKEN, SEESWARM_CA, then\n"
	"the config file the manager writes, ~/.config/seeswarm/config.json):\n"
	"  --addr HOST:PORT            manager API address\n"
	"  --token TOKEN               API bearer token (the admin token)\n"
	"  --ca FILE                   swarm CA certificate (PEM)\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

/* Prints the failure of a call: the API's message when it sent one. Returns 1. */
static int fail(ss_client *c, int rc, char *json)
{
	json_t *j = json ? json_loads(json, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	char *m = cli_clean(msg ? msg : *ss_client_last_error(c) ? ss_client_last_error(c) : ss_strerror(rc));
	fprintf(stderr, "error: %s\n", m);
	free(m);
	json_decref(j);
	ss_free(json);
	return 1;
}

/*
 * Takes a listing call's outcome (rc, and its answer json, which it frees):
 * reports a failure, or prints the answer as it came when as_json. Returns
 * the parsed answer for the caller to print as a table and decref, or NULL
 * with *ret set to the exit status when nothing is left to print.
 */
static json_t *listing(ss_client *c, int rc, char *json, bool as_json, int *ret)
{
	*ret = 0;
	if (rc) {
		*ret = fail(c, rc, json);
		return NULL;
	}
	json_t *j = NULL;
	if (as_json)
		puts(json);
	else if (!(j = json_loads(json, 0, NULL)))
		j = json_object(); /* not JSON: an empty table */
	ss_free(json);
	return j;
}

/* Opens a client with the connection flags; on failure says why and returns NULL. */
static ss_client *open_client(const struct cli_conn_flags *cf)
{
	ss_client *c = NULL;
	ss_client_opts o = {.addr = cf->addr, .token = cf->token, .ca_file = cf->ca};
	int rc = ss_client_open(&c, &o);
	if (rc) {
		const char *d = client_last_error(NULL);
		fprintf(stderr, "error: %s\n", *d ? d : ss_strerror(rc));
		return NULL;
	}
	return c;
}

/* Reports an argument `cmd` does not take, with the usage text; returns 2. */
static int bad_arg(const char *arg, const char *cmd, const char *usage_text_of)
{
	char *ca = cli_clean(arg);
	fprintf(stderr, "error: unexpected argument \"%s\" for %s\n", ca, cmd);
	free(ca);
	fputs(usage_text_of, stderr);
	return 2;
}

/* Formats a wall-clock time in milliseconds as UTC, or "-" for 0 or an impossible time. */
static void utc(json_int_t ms, char when[32])
{
	snprintf(when, 32, "-");
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	if (ms > 0 && gmtime_r(&secs, &tm))
		strftime(when, 32, "%Y-%m-%d %H:%M:%SZ", &tm);
}

static int cmd_create(ss_client *c, const ss_token_opts *o, const char *out, bool as_json)
{
	char *json = NULL;
	const char *tenant = o->tenant;
	int rc = ss_token_make(c, o, &json);
	if (rc)
		return fail(c, rc, json);
	json_t *j = json_loads(json, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	const char *id = json_string_value(json_object_get(j, "id"));
	int ret = 1;
	if (!tok || !id || strncmp(tok, "sst_", 4) != 0 || strspn(tok + 4, "0123456789abcdef") != 64 ||
	    tok[68]) {
		fprintf(stderr, "error: the manager's answer holds no valid token\n");
		goto out;
	}
	if (out) {
		const char *ca = client_ca_file(c);
		char *abs_ca = ca ? realpath(ca, NULL) : NULL;
		rc = client_config_write(out, ss_client_addr(c), tok, abs_ca ? abs_ca : ca);
		free(abs_ca);
		if (rc) {
			fprintf(stderr, "error: cannot write %s: %s\n", out, ss_strerror(rc));
			goto out;
		}
	}
	if (as_json) {
		puts(json);
	} else {
		char *cid = cli_clean(id);
		printf("%stoken %s for tenant %s (shown once; the manager keeps only its hash):\n  %s\n",
		       o->read_only ? "read-only " : "", cid, tenant, tok);
		json_int_t exp = json_integer_value(json_object_get(j, "expires_ms"));
		if (exp > 0) {
			char when[32];
			utc(exp, when);
			printf("it stops working at %s\n", when);
		}
		if (out)
			printf("client config written to %s (use SEESWARM_CONFIG=%s)\n", out, out);
		free(cid);
	}
	ret = 0;
out:
	json_decref(j);
	ss_free(json);
	return ret;
}

static int cmd_list(ss_client *c, bool as_json)
{
	char *json = NULL;
	int ret, rc = ss_tokens_list(c, &json);
	json_t *j = listing(c, rc, json, as_json, &ret);
	if (!j)
		return ret;
	json_t *arr = json_object_get(j, "tokens");
	size_t i;
	json_t *t;
	printf("%-17s %-24s %-10s %-21s %s\n", "ID", "TENANT", "ACCESS", "CREATED", "EXPIRES");
	json_array_foreach(arr, i, t) {
		char *id = cli_clean(json_string_value(json_object_get(t, "id")));
		char *tenant = cli_clean(json_string_value(json_object_get(t, "tenant")));
		char when[32], until[32];
		utc(json_integer_value(json_object_get(t, "created_ms")), when);
		utc(json_integer_value(json_object_get(t, "expires_ms")), until);
		printf("%-17s %-24s %-10s %-21s %s\n", id, tenant,
		       json_is_true(json_object_get(t, "read_only")) ? "read-only" : "read-write", when,
		       json_object_get(t, "expires_ms") ? until : "never");
		free(id);
		free(tenant);
	}
	if (json_array_size(arr) == 0)
		printf("(no tenant tokens)\n");
	json_decref(j);
	return 0;
}

static int cmd_revoke(ss_client *c, const char *id)
{
	char *json = NULL;
	int rc = ss_token_revoke(c, id, &json);
	if (rc)
		return fail(c, rc, json);
	char *cid = cli_clean(id);
	printf("token %s revoked\n", cid);
	free(cid);
	ss_free(json);
	return 0;
}

int cli_token_main(int argc, char **argv)
{
	struct cli_conn_flags cf;
	bool as_json = false, read_only = false;
	const char *tenant = NULL, *out = NULL, *id = NULL, *ttl = NULL;
	uint64_t ttl_ms = 0;
	ss_client *c = NULL;

	argc = cli_take_conn_flags(argc, argv, &cf);
	if (argc < 2)
		return usage(stderr, 2);
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return usage(stdout, 0);
	bool is_create = !strcmp(sub, "create"), is_list = !strcmp(sub, "list") || !strcmp(sub, "ls");
	bool is_revoke = !strcmp(sub, "revoke");
	if (!is_create && !is_list && !is_revoke) {
		char *cs = cli_clean(sub);
		fprintf(stderr, "error: unknown token command \"%s\"\n", cs);
		free(cs);
		return usage(stderr, 2);
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int r = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout, 0);
		if (!is_revoke && !strcmp(a, "--json")) {
			as_json = true;
		} else if (is_create && !strcmp(a, "--read-only")) {
			read_only = true;
		} else if (is_create && ((r = cli_opt_value(argc, argv, &i, "--tenant", &tenant)) != 0 ||
					 (r = cli_opt_value(argc, argv, &i, "--out", &out)) != 0 ||
					 (r = cli_opt_value(argc, argv, &i, "--ttl", &ttl)) != 0)) {
			if (r < 0)
				return usage(stderr, 2);
		} else if (is_revoke && !id && a[0] != '-') {
			id = a;
		} else {
			char *ca = cli_clean(a);
			fprintf(stderr, "error: unexpected argument \"%s\" for token %s\n", ca, sub);
			free(ca);
			return usage(stderr, 2);
		}
	}
	if (is_create && (!tenant || !ident_valid(tenant))) {
		fprintf(stderr, "error: token create needs --tenant NAME (1 to 63 of A-Z a-z 0-9 . _ -, "
				"starting with a letter or digit)\n");
		return 2;
	}
	if (ttl && (parse_duration_ms(ttl, &ttl_ms) != 0 || ttl_ms < 1000 ||
		    ttl_ms / 1000 > 315360000ull)) {
		fprintf(stderr, "error: --ttl: expected a duration from 1s to 10 years, such as 8h or 90d\n");
		return 2;
	}
	if (is_revoke && (!id || strlen(id) != TOKEN_ID_HEX || strspn(id, "0123456789abcdef") != TOKEN_ID_HEX)) {
		fprintf(stderr, "error: token revoke needs a token id (16 hex digits, see token list)\n");
		return 2;
	}
	if (!(c = open_client(&cf)))
		return 1;
	ss_token_opts to = {.tenant = tenant, .ttl_seconds = ttl_ms / 1000, .read_only = read_only};
	int ret = is_create ? cmd_create(c, &to, out, as_json) : is_list ? cmd_list(c, as_json)
									 : cmd_revoke(c, id);
	ss_client_close(c);
	return ret;
}

static const char tenant_usage_text[] =
	"usage: seeswarm tenant list [--json]\n"
	"\n"
	"Each tenant's use of the swarm against its quotas: CPU its tasks hold and\n"
	"its cap (--tenant-max-cpu), its weight, queued tasks, unfinished jobs (of\n"
	"--tenant-max-jobs), tokens, and the bytes its uploads hold (of\n"
	"--tenant-max-upload-bytes). A tenant token sees its own tenant only.\n"
	"Connection options as for seeswarm token.\n";

/* Formats a millicore count as cores ("2", "0.5"), or "-" for a cap of 0. */
static void cores(json_int_t m, bool dash_for_zero, char out[24])
{
	if (m == 0 && dash_for_zero)
		snprintf(out, 24, "-");
	else if (m % 1000 == 0)
		snprintf(out, 24, "%lld", (long long)(m / 1000));
	else
		snprintf(out, 24, "%.3g", (double)m / 1000.0);
}

static int tenant_list(ss_client *c, bool as_json)
{
	char *json = NULL;
	int ret, rc = ss_tenants_list(c, &json);
	json_t *j = listing(c, rc, json, as_json, &ret);
	if (!j)
		return ret;
	json_t *lim = json_object_get(j, "limits");
	printf("%-20s %-13s %-6s %-7s %-13s %-7s %-10s %-18s %s\n", "TENANT", "CPU/CAP", "WEIGHT", "QUEUED", "JOBS",
	       "TOKENS", "TASK-TIME", "COST", "UPLOADS");
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(j, "tenants"), i, t) {
		char *name = cli_clean(json_string_value(json_object_get(t, "tenant")));
		char run[24], cap[24], cpu[64], jobs[40], up[64], size[32], spent[32], cost[72];
		json_t *u = json_object_get(t, "usage");
		format_seconds(json_number_value(json_object_get(u, "run_seconds")), spent);
		format_amount(json_number_value(json_object_get(u, "cost")), cost);
		if (json_number_value(json_object_get(t, "max_cost")) > 0) {
			/* Against a budget: what it spent (running attempts too) of what it may. */
			char spent_now[32], max[32];
			format_amount(json_number_value(json_object_get(t, "spent")), spent_now);
			format_amount(json_number_value(json_object_get(t, "max_cost")), max);
			const char *per = json_string_value(json_object_get(t, "budget_period"));
			/* A budget per day or month says so: 0.120/0.500/month. */
			snprintf(cost, sizeof cost, "%s/%s%s%s", spent_now, max,
				 per && strcmp(per, "total") != 0 ? "/" : "",
				 per && strcmp(per, "total") != 0 ? per : "");
		}
		cores(json_integer_value(json_object_get(t, "cpu_running_m")), false, run);
		cores(json_integer_value(json_object_get(t, "cpu_cap_m")), true, cap);
		snprintf(cpu, sizeof cpu, "%s/%s", run, cap);
		snprintf(jobs, sizeof jobs, "%lld/%lld", (long long)json_integer_value(json_object_get(t, "jobs_unfinished")),
			 (long long)json_integer_value(json_object_get(lim, "jobs_unfinished")));
		format_size((uint64_t)json_integer_value(json_object_get(t, "upload_bytes")), size);
		snprintf(up, sizeof up, "%lld (%s)", (long long)json_integer_value(json_object_get(t, "uploads")), size);
		printf("%-20s %-13s %-6g %-7lld %-13s %-7lld %-10s %-18s %s\n", name, cpu,
		       json_number_value(json_object_get(t, "weight")),
		       (long long)json_integer_value(json_object_get(t, "tasks_queued")), jobs,
		       (long long)json_integer_value(json_object_get(t, "tokens")), spent,
		       cost, up);
		free(name);
	}
	if (json_array_size(json_object_get(j, "tenants")) == 0)
		printf("(no tenants yet)\n");
	json_decref(j);
	return 0;
}

int cli_tenant_main(int argc, char **argv)
{
	struct cli_conn_flags cf;
	bool as_json = false;
	ss_client *c = NULL;
	argc = cli_take_conn_flags(argc, argv, &cf);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(tenant_usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "list") != 0) {
		char *ca = cli_clean(argv[1]);
		fprintf(stderr, "error: unknown tenant command \"%s\"\n", ca);
		free(ca);
		fputs(tenant_usage_text, stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			as_json = true;
		} else {
			return bad_arg(argv[i], "tenant list", tenant_usage_text);
		}
	}
	if (!(c = open_client(&cf)))
		return 1;
	int ret = tenant_list(c, as_json);
	ss_client_close(c);
	return ret;
}

static const char audit_usage_text[] =
	"usage: seeswarm audit [--limit N] [--after SEQ] [--json]\n"
	"\n"
	"The manager's audit trail (admin token): every authenticated request that\n"
	"could change something, with who made it and how it ended, and every node\n"
	"admitted, rejected, evicted, down or gone. Without --after, the newest N\n"
	"(default 20, at most 1000); with --after SEQ, the N after entry SEQ.\n"
	"Connection options as for seeswarm token.\n";

static void audit_print(json_t *page)
{
	size_t i;
	json_t *e;
	printf("%-7s %-20s %-16s %-15s %-40s %-6s %s\n", "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "STATUS",
	       "DETAIL");
	json_array_foreach(json_object_get(page, "entries"), i, e) {
		char when[32], st[8];
		utc(json_integer_value(json_object_get(e, "ms")), when);
		json_int_t status = json_integer_value(json_object_get(e, "status"));
		snprintf(st, sizeof st, "%lld", (long long)status);
		char *actor = cli_clean(json_string_value(json_object_get(e, "actor")));
		char *action = cli_clean(json_string_value(json_object_get(e, "action")));
		char *target = cli_clean(json_string_value(json_object_get(e, "target")));
		char *detail = cli_clean(json_string_value(json_object_get(e, "detail")));
		printf("%-7lld %-20s %-16s %-15s %-40s %-6s %s\n",
		       (long long)json_integer_value(json_object_get(e, "seq")), when, actor, action, target,
		       status ? st : "-", detail);
		free(actor);
		free(action);
		free(target);
		free(detail);
	}
	if (json_array_size(json_object_get(page, "entries")) == 0)
		printf("(no entries)\n");
}

int cli_audit_main(int argc, char **argv)
{
	struct cli_conn_flags cf;
	bool as_json = false, have_after = false;
	uint64_t after = 0, limit = 20;
	ss_client *c = NULL;
	argc = cli_take_conn_flags(argc, argv, &cf);
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		int r;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(audit_usage_text, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json")) {
			as_json = true;
		} else if ((r = cli_opt_value(argc, argv, &i, "--limit", &v)) != 0) {
			if (r < 0 || strspn(v, "0123456789") != strlen(v) || parse_size(v, &limit) != 0 ||
			    limit < 1 || limit > 1000) {
				fprintf(stderr, "error: --limit: expected a number from 1 to 1000\n");
				return 2;
			}
		} else if ((r = cli_opt_value(argc, argv, &i, "--after", &v)) != 0) {
			char *end = NULL;
			if (r < 0 || !*v || strspn(v, "0123456789") != strlen(v) ||
			    (after = strtoull(v, &end, 10), *end)) {
				fprintf(stderr, "error: --after: expected a sequence number\n");
				return 2;
			}
			have_after = true;
		} else {
			return bad_arg(argv[i], "audit", audit_usage_text);
		}
	}
	if (!(c = open_client(&cf)))
		return 1;
	char *json = NULL;
	int ret, rc;
	if (!have_after) {
		/* The newest `limit`: ask where the trail ends, then read up to it. */
		rc = ss_audit_list(c, INT64_MAX, 1, &json);
		json_t *p = listing(c, rc, json, false, &ret);
		if (!p)
			goto out;
		json_int_t last = json_integer_value(json_object_get(p, "last_seq"));
		json_decref(p);
		json = NULL;
		after = last > (json_int_t)limit ? (uint64_t)last - limit : 0;
	}
	rc = ss_audit_list(c, after, (unsigned)limit, &json);
	json_t *p = listing(c, rc, json, as_json, &ret);
	if (p)
		audit_print(p);
	json_decref(p);
out:
	ss_client_close(c);
	return ret;
}
