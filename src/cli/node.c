/*
 * node.c - `seeswarm node list|show|drain`: cluster membership as the
 * manager's API reports it. Every string that came from the API is printed
 * with control characters replaced, so a hostile label cannot drive the
 * terminal.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "client/config.h"
#include "core/core.h"

#define LABEL_WIDTH 17
#define WATCH_MS 30000u /* how long one request of node list --watch waits for a change */

static const char usage_text[] =
	"usage: seeswarm node <command> [options]\n"
	"\n"
	"Commands:\n"
	"  list [--all] [--json]       list nodes (--all includes nodes that left or were\n"
	"                              rejected)\n"
	"  list --watch [--all]        print the table again whenever a node changes (its\n"
	"                              state, attestation, drain or labels), until interrupted\n"
	"  show ID [--json]            show one node in detail\n"
	"  drain ID [--reason TEXT]    stop placing work on a node\n"
	"  attest ID                   re-attest a node now (fresh nonce)\n"
	"\n"
	"Connection options (default: SEESWARM_ADDR, SEESWARM_TOKEN, SEESWARM_CA, then\n"
	"the config file the manager writes, ~/.config/seeswarm/config.json):\n"
	"  --addr HOST:PORT            manager API address\n"
	"  --token TOKEN               API bearer token\n"
	"  --ca FILE                   swarm CA certificate (PEM)\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

#define clean cli_clean

static void human_bytes(uint64_t v, char *out, size_t outlen)
{
	static const char units[] = "KMGTPE";
	if (v < 1024) {
		snprintf(out, outlen, "%" PRIu64 "B", v);
		return;
	}
	double d = (double)v / 1024.0;
	size_t u = 0;
	while (d >= 1024.0 && u + 1 < sizeof units - 1) {
		d /= 1024.0;
		u++;
	}
	snprintf(out, outlen, "%.1f%c", d, units[u]);
}

static void human_age(uint64_t ms, char *out, size_t outlen)
{
	if (ms < 60000)
		snprintf(out, outlen, "%.1fs ago", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, outlen, "%" PRIu64 "m ago", ms / 60000);
	else if (ms < 86400000)
		snprintf(out, outlen, "%" PRIu64 "h ago", ms / 3600000);
	else
		snprintf(out, outlen, "%" PRIu64 "d ago", ms / 86400000);
}

/* Reads a non-negative number field; returns false when absent or not a number. */
static bool get_u64(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return true;
	}
	if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1.8e19) {
		*out = (uint64_t)json_real_value(v);
		return true;
	}
	return false;
}

static const char *get_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Formats labels as "k=v<sep>k=v" sorted by key; "-" when there are none. */
static char *labels_string(json_t *labels, const char *sep)
{
	size_t n = json_is_object(labels) ? json_object_size(labels) : 0;
	if (n == 0)
		return xstrdup("-");
	const char **keys = xcalloc(n, sizeof *keys);
	size_t i = 0;
	const char *k;
	json_t *v;
	json_object_foreach(labels, k, v) keys[i++] = k;
	qsort(keys, n, sizeof *keys, cmp_str);
	struct buf b;
	buf_init(&b);
	for (i = 0; i < n; i++) {
		json_t *val = json_object_get(labels, keys[i]);
		char *ck = clean(keys[i]);
		if (json_is_string(val)) {
			char *cv = clean(json_string_value(val));
			buf_printf(&b, "%s%s=%s", i ? sep : "", ck, cv);
			free(cv);
		} else {
			buf_printf(&b, "%s%s", i ? sep : "", ck);
		}
		free(ck);
	}
	free(keys);
	buf_append(&b, "", 1);
	return (char *)b.data;
}

/* Formats any JSON value for display; the caller frees the result. */
static char *value_string(json_t *v)
{
	char tmp[64];
	if (json_is_string(v))
		return clean(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return xstrdup(tmp);
	}
	if (json_is_real(v)) {
		snprintf(tmp, sizeof tmp, "%g", json_real_value(v));
		return xstrdup(tmp);
	}
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "yes" : "no");
	if (!v || json_is_null(v))
		return xstrdup("-");
	if (json_is_array(v)) {
		bool scalars = true;
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) if (json_is_object(e) || json_is_array(e)) scalars = false;
		if (scalars) {
			if (json_array_size(v) == 0)
				return xstrdup("-");
			struct buf b;
			buf_init(&b);
			json_array_foreach(v, i, e)
			{
				char *s = value_string(e);
				buf_printf(&b, "%s%s", i ? ", " : "", s);
				free(s);
			}
			buf_append(&b, "", 1);
			return (char *)b.data;
		}
	}
	char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	char *out = clean(d);
	free(d);
	return out;
}

/* ---- requests ------------------------------------------------------------ */

static int open_client(const struct cli_conn_flags *cf, ss_client **c)
{
	ss_client_opts o = {.addr = cf->addr, .token = cf->token, .ca_file = cf->ca};
	int rc = ss_client_open(c, &o);
	if (rc) {
		const char *d = client_last_error(NULL);
		fprintf(stderr, "error: %s\n", *d ? d : ss_strerror(rc));
		return 1;
	}
	return 0;
}

/*
 * Sends one request and parses the JSON answer into *out. Returns 0, or 1
 * after printing the API's error message or the transport failure.
 */
static int api_call(ss_client *c, const char *method, const char *path, const char *body,
		    json_t **out)
{
	int status = 0, ret = 1;
	char *resp = NULL;
	size_t len = 0;
	json_t *root = NULL;
	json_error_t jerr;

	*out = NULL;
	int rc = ss_client_request(c, method, path, body, body ? strlen(body) : 0, &status, &resp,
				   &len);
	if (rc) {
		const char *d = client_last_error(c);
		fprintf(stderr, "error: cannot reach the manager at %s: %s%s%s%s\n",
			ss_client_addr(c), ss_strerror(rc), *d ? " (" : "", d, *d ? ")" : "");
		goto out;
	}
	root = json_loadb(resp, len, 0, &jerr);
	if (status < 200 || status > 299) {
		const char *msg = json_string_value(
			json_object_get(json_object_get(root, "error"), "message"));
		char *m = msg ? clean(msg) : NULL;
		if (m) {
			fprintf(stderr, "error: %s\n", m);
		} else {
			char *snippet = clean(len > 200 ? "" : resp);
			fprintf(stderr, "error: HTTP %d from the manager%s%s\n", status,
				*snippet ? ": " : "", snippet);
			free(snippet);
		}
		free(m);
		goto out;
	}
	if (!root) {
		fprintf(stderr, "error: the manager sent invalid JSON: %s\n", jerr.text);
		goto out;
	}
	*out = root;
	root = NULL;
	ret = 0;
out:
	json_decref(root);
	free(resp);
	return ret;
}

static int print_json(json_t *root)
{
	char *s = json_dumps(root, JSON_INDENT(2));
	if (!s) {
		fprintf(stderr, "error: cannot format JSON\n");
		return 1;
	}
	puts(s);
	free(s);
	return 0;
}

/* ---- node list ----------------------------------------------------------- */

enum { COL_ID, COL_STATE, COL_TEE, COL_ATTEST, COL_ADDR, COL_CPU, COL_MEM, COL_LOAD,
       COL_LABELS, COL_SEEN, NCOLS };

static const char *const col_names[NCOLS] = {"ID",   "STATE", "TEE",  "ATTEST", "ADDRESS",
					     "CPU",  "MEM",   "LOAD", "LABELS", "LAST-SEEN"};

static const char *const known_states[] = {"joining", "ready",   "suspect", "down",
					   "draining", "evicted", "left",    "rejected"};

/* Fills the cells of one table row (each newly allocated). Sets *insecure. */
static void node_row(json_t *n, char *cells[NCOLS], bool *insecure)
{
	char tmp[64];
	uint64_t v;
	json_t *att = json_object_get(n, "attestation");
	json_t *caps = json_object_get(n, "capabilities");
	json_t *load = json_object_get(n, "load");

	cells[COL_ID] = clean(get_str(n, "id") ? get_str(n, "id") : "?");
	cells[COL_STATE] = clean(get_str(n, "state") ? get_str(n, "state") : "-");
	cells[COL_TEE] = clean(get_str(n, "tee") ? get_str(n, "tee") : "-");
	const char *st = get_str(att, "status");
	char *cs = clean(st ? st : "-");
	if (st && json_is_true(json_object_get(att, "insecure"))) {
		cells[COL_ATTEST] = xasprintf("%s*", cs);
		*insecure = true;
		free(cs);
	} else {
		cells[COL_ATTEST] = cs;
	}
	cells[COL_ADDR] = clean(get_str(n, "address") ? get_str(n, "address") : "-");
	if (get_u64(caps, "cpu_cores", &v))
		snprintf(tmp, sizeof tmp, "%" PRIu64, v);
	else
		snprintf(tmp, sizeof tmp, "-");
	cells[COL_CPU] = xstrdup(tmp);
	if (get_u64(caps, "memory_bytes", &v))
		human_bytes(v, tmp, sizeof tmp);
	else
		snprintf(tmp, sizeof tmp, "-");
	cells[COL_MEM] = xstrdup(tmp);
	if (get_u64(load, "cpu_permille", &v))
		snprintf(tmp, sizeof tmp, "%" PRIu64 ".%" PRIu64 "%%", v / 10, v % 10);
	else
		snprintf(tmp, sizeof tmp, "-");
	cells[COL_LOAD] = xstrdup(tmp);
	cells[COL_LABELS] = labels_string(json_object_get(n, "labels"), ",");
	if (get_u64(n, "last_heartbeat_age_ms", &v))
		human_age(v, tmp, sizeof tmp);
	else
		snprintf(tmp, sizeof tmp, "-");
	cells[COL_SEEN] = xstrdup(tmp);
}

static void print_footer(json_t *nodes)
{
	size_t total = json_array_size(nodes);
	size_t i, shown = 0;
	json_t *n;
	printf("%zu node%s", total, total == 1 ? "" : "s");
	/* Known states in lifecycle order, then any others in first-seen order. */
	for (size_t k = 0; k < ARRAY_LEN(known_states); k++) {
		size_t cnt = 0;
		json_array_foreach(nodes, i, n)
		{
			const char *s = get_str(n, "state");
			if (s && strcmp(s, known_states[k]) == 0)
				cnt++;
		}
		if (cnt) {
			printf("%s%zu %s", shown++ ? ", " : ": ", cnt, known_states[k]);
		}
	}
	json_array_foreach(nodes, i, n)
	{
		const char *s = get_str(n, "state");
		bool known = false, seen = false;
		for (size_t k = 0; s && k < ARRAY_LEN(known_states); k++)
			known |= strcmp(s, known_states[k]) == 0;
		for (size_t j = 0; s && j < i; j++)
			seen |= get_str(json_array_get(nodes, j), "state") &&
				strcmp(get_str(json_array_get(nodes, j), "state"), s) == 0;
		if (!s || known || seen)
			continue;
		size_t cnt = 0;
		for (size_t j = i; j < total; j++) {
			const char *t = get_str(json_array_get(nodes, j), "state");
			if (t && strcmp(t, s) == 0)
				cnt++;
		}
		char *cs = clean(s);
		printf("%s%zu %s", shown++ ? ", " : ": ", cnt, cs);
		free(cs);
	}
	printf("\n");
}

static void print_table(json_t *nodes)
{
	size_t rows = json_array_size(nodes);
	char **cells = xcalloc(rows * NCOLS + 1, sizeof *cells);
	size_t width[NCOLS];
	bool insecure = false;
	size_t i;
	json_t *n;

	for (size_t k = 0; k < NCOLS; k++)
		width[k] = strlen(col_names[k]);
	json_array_foreach(nodes, i, n)
	{
		node_row(n, cells + i * NCOLS, &insecure);
		for (size_t k = 0; k < NCOLS; k++) {
			size_t w = strlen(cells[i * NCOLS + k]);
			if (w > width[k])
				width[k] = w;
		}
	}
	for (size_t k = 0; k + 1 < NCOLS; k++)
		printf("%-*s  ", (int)width[k], col_names[k]);
	printf("%s\n", col_names[NCOLS - 1]);
	for (i = 0; i < rows; i++) {
		for (size_t k = 0; k + 1 < NCOLS; k++)
			printf("%-*s  ", (int)width[k], cells[i * NCOLS + k]);
		printf("%s\n", cells[i * NCOLS + NCOLS - 1]);
	}
	print_footer(nodes);
	if (insecure)
		printf("* insecure attestation (development only)\n");
	for (i = 0; i < rows * NCOLS; i++)
		free(cells[i]);
	free(cells);
}

static int cmd_list(ss_client *c, bool all, bool as_json)
{
	json_t *root = NULL;
	int ret = api_call(c, "GET", all ? "/v1/nodes?all=1" : "/v1/nodes", NULL, &root);
	if (ret)
		goto out;
	if (as_json) {
		ret = print_json(root);
		goto out;
	}
	json_t *nodes = json_is_array(root) ? root : json_object_get(root, "nodes");
	if (!json_is_array(nodes)) {
		fprintf(stderr, "error: the manager's answer has no \"nodes\" list\n");
		ret = 1;
		goto out;
	}
	print_table(nodes);
out:
	json_decref(root);
	return ret;
}

/*
 * node list --watch: prints the table, then again after every change the
 * manager reports (each request waits there for the next change), until
 * interrupted. Returns 1 when the manager cannot be reached for about 30 s
 * or refuses the token.
 */
static int cmd_watch(ss_client *c, bool all)
{
	bool tty = isatty(STDOUT_FILENO);
	uint64_t index = 0;
	unsigned failures = 0;
	for (;;) {
		char *js = NULL;
		uint64_t asked = time_mono_ms();
		int rc = ss_nodes_watch(c, all, index, WATCH_MS, &js);
		json_t *root = rc ? NULL : json_loads(js, 0, NULL);
		ss_free(js);
		json_t *nodes = json_object_get(root, "nodes");
		if (!json_is_array(nodes)) {
			const char *d = ss_client_last_error(c);
			fprintf(stderr, "error: %s\n", rc && *d ? d : rc ? ss_strerror(rc) : "bad answer from the manager");
			json_decref(root);
			if (rc == SS_EAUTH || ++failures > 150)
				return 1;
			cli_sleep_ms(200);
			continue;
		}
		failures = 0;
		uint64_t seen = (uint64_t)json_integer_value(json_object_get(root, "index"));
		if (seen != index) {
			char when[32];
			time_rfc3339(time_wall_ms(), when);
			if (tty)
				printf("\033[H\033[2J");
			printf("%s (index %" PRIu64 ")\n", when, seen);
			print_table(nodes);
			fflush(stdout);
		} else if (time_mono_ms() - asked < WATCH_MS) {
			cli_sleep_ms(200); /* an early answer without a change: the manager is busy */
		}
		index = seen;
		json_decref(root);
	}
}

/* ---- node show ----------------------------------------------------------- */

enum fmt { F_PLAIN, F_BYTES, F_PERMILLE, F_SKIP };

struct field {
	const char *key;
	const char *label;
	enum fmt fmt;
};

static void print_kv(int indent, const char *label, const char *value)
{
	char l[96];
	snprintf(l, sizeof l, "%s:", label);
	printf("%*s%-*s %s\n", indent, "", LABEL_WIDTH - indent, l, value);
}

static char *format_field(json_t *v, enum fmt fmt)
{
	char tmp[64];
	if (fmt == F_BYTES && json_is_integer(v) && json_integer_value(v) >= 0) {
		uint64_t b = (uint64_t)json_integer_value(v);
		human_bytes(b, tmp, sizeof tmp);
		if (b < 1024)
			return xstrdup(tmp);
		return xasprintf("%s (%" PRIu64 " bytes)", tmp, b);
	}
	if (fmt == F_PERMILLE && json_is_integer(v) && json_integer_value(v) >= 0) {
		uint64_t p = (uint64_t)json_integer_value(v);
		snprintf(tmp, sizeof tmp, "%" PRIu64 ".%" PRIu64 "%%", p / 10, p % 10);
		return xstrdup(tmp);
	}
	return value_string(v);
}

static bool is_known(const struct field *known, size_t nknown, const char *key)
{
	for (size_t i = 0; i < nknown; i++)
		if (strcmp(known[i].key, key) == 0)
			return true;
	return false;
}

/* Prints the known fields of obj in order, then every other field under its key. */
static void print_fields(json_t *obj, const struct field *known, size_t nknown, int indent)
{
	for (size_t i = 0; i < nknown; i++) {
		json_t *v = json_object_get(obj, known[i].key);
		if (!v || known[i].fmt == F_SKIP)
			continue;
		char *s = format_field(v, known[i].fmt);
		print_kv(indent, known[i].label, s);
		free(s);
	}
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		if (is_known(known, nknown, k))
			continue;
		char *ck = clean(k);
		char *s = value_string(v);
		print_kv(indent, ck, s);
		free(s);
		free(ck);
	}
}

static const struct field att_fields[] = {
	{"status", "Status", F_PLAIN}, {"type", "Type", F_PLAIN},
	{"insecure", "Insecure", F_PLAIN}, {"at", "At", F_PLAIN},
	{"expires", "Expires", F_PLAIN}, {"pool", "Pool", F_PLAIN},
	{"policy_id", "Policy id", F_PLAIN}, {"claims_digest", "Claims digest", F_PLAIN},
	{"reason", "Reason", F_PLAIN},
};

static const struct field cap_fields[] = {
	{"cpu_cores", "CPU cores", F_PLAIN}, {"memory_bytes", "Memory", F_BYTES},
	{"disk_bytes", "Disk", F_BYTES},     {"features", "Features", F_PLAIN},
};

static const struct field load_fields[] = {
	{"cpu_permille", "CPU", F_PERMILLE},
	{"memory_used_bytes", "Memory used", F_BYTES},
	{"load1", "Load1", F_PLAIN},
	{"running_tasks", "Running tasks", F_PLAIN},
};

static const struct field node_fields[] = {
	{"id", "ID", F_PLAIN},
	{"state", "State", F_PLAIN},
	{"reason", "Reason", F_PLAIN},
	{"address", "Address", F_PLAIN},
	{"hostname", "Hostname", F_PLAIN},
	{"version", "Version", F_PLAIN},
	{"tee", "TEE", F_PLAIN},
	{"connected", "Connected", F_PLAIN},
	{"price_per_hour", "Price per hour", F_PLAIN},
	{"joined", "Joined", F_PLAIN},
	/* Printed by print_node itself. */
	{"last_heartbeat", "", F_SKIP},
	{"last_heartbeat_age_ms", "", F_SKIP},
	{"labels", "", F_SKIP},
	{"attestation", "", F_SKIP},
	{"capabilities", "", F_SKIP},
	{"load", "", F_SKIP},
};

static void print_section(json_t *node, const char *key, const char *title,
			  const struct field *known, size_t nknown)
{
	json_t *v = json_object_get(node, key);
	if (!v)
		return;
	if (!json_is_object(v)) {
		char *s = value_string(v);
		print_kv(0, title, s);
		free(s);
		return;
	}
	printf("%s:\n", title);
	print_fields(v, known, nknown, 2);
}

static void print_node(json_t *node)
{
	print_fields(node, node_fields, ARRAY_LEN(node_fields), 0);
	const char *hb = get_str(node, "last_heartbeat");
	uint64_t age;
	char agebuf[48];
	bool has_age = get_u64(node, "last_heartbeat_age_ms", &age);
	if (has_age)
		human_age(age, agebuf, sizeof agebuf);
	if (hb || has_age) {
		char *chb = clean(hb ? hb : "");
		char *line = xasprintf("%s%s%s%s", chb, hb && has_age ? " (" : "",
				       has_age ? agebuf : "", hb && has_age ? ")" : "");
		print_kv(0, "Last heartbeat", line);
		free(line);
		free(chb);
	}
	if (json_object_get(node, "labels")) {
		char *l = labels_string(json_object_get(node, "labels"), ", ");
		print_kv(0, "Labels", l);
		free(l);
	}
	print_section(node, "attestation", "Attestation", att_fields, ARRAY_LEN(att_fields));
	print_section(node, "capabilities", "Capabilities", cap_fields, ARRAY_LEN(cap_fields));
	print_section(node, "load", "Load", load_fields, ARRAY_LEN(load_fields));
}

static int cmd_show(ss_client *c, const char *id, bool as_json)
{
	json_t *root = NULL;
	char *path = xasprintf("/v1/nodes/%s", id);
	int ret = api_call(c, "GET", path, NULL, &root);
	if (ret)
		goto out;
	if (as_json)
		ret = print_json(root);
	else if (json_is_object(root))
		print_node(root);
	else {
		fprintf(stderr, "error: the manager's answer is not a node object\n");
		ret = 1;
	}
out:
	json_decref(root);
	free(path);
	return ret;
}

/* ---- node drain ---------------------------------------------------------- */

static int cmd_drain(ss_client *c, const char *id, const char *reason)
{
	json_t *root = NULL, *req = NULL;
	char *body = NULL;
	char *path = xasprintf("/v1/nodes/%s/drain", id);
	int ret = 1;

	if (reason) {
		req = json_pack("{s:s}", "reason", reason);
		body = req ? json_dumps(req, JSON_COMPACT) : NULL;
		if (!body) {
			fprintf(stderr, "error: the reason must be valid UTF-8\n");
			goto out;
		}
	}
	ret = api_call(c, "POST", path, body, &root);
	if (ret)
		goto out;
	const char *st = get_str(root, "state");
	char *cs = clean(st ? st : "draining");
	printf("node %s: %s\n", id, cs);
	free(cs);
out:
	json_decref(root);
	json_decref(req);
	free(body);
	free(path);
	return ret;
}

/* ---- node attest --------------------------------------------------------- */

static int cmd_attest(ss_client *c, const char *id)
{
	json_t *root = NULL;
	char *path = xasprintf("/v1/nodes/%s/attest", id);
	int ret = api_call(c, "POST", path, NULL, &root);
	if (!ret)
		printf("node %s: re-attestation started (see: seeswarm node show %s)\n", id, id);
	json_decref(root);
	free(path);
	return ret;
}

/* ---- entry point --------------------------------------------------------- */

int cli_node_main(int argc, char **argv)
{
	struct cli_conn_flags cf;
	bool all = false, as_json = false, dashdash = false, watch = false;
	const char *reason = NULL, *id = NULL;
	ss_client *c = NULL;
	int ret = 2;

	argc = cli_take_conn_flags(argc, argv, &cf);
	if (argc < 0)
		return usage(stderr, 2);
	if (argc < 2)
		return usage(stderr, 2);
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return usage(stdout, 0);
	bool is_list = !strcmp(sub, "list") || !strcmp(sub, "ls");
	bool is_show = !strcmp(sub, "show") || !strcmp(sub, "status");
	bool is_drain = !strcmp(sub, "drain");
	bool is_attest = !strcmp(sub, "attest");
	if (!is_list && !is_show && !is_drain && !is_attest) {
		fprintf(stderr, "error: unknown node command \"%s\"\n", sub);
		return usage(stderr, 2);
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int r;
		if (!dashdash && !strcmp(a, "--")) {
			dashdash = true;
		} else if (!dashdash && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
			return usage(stdout, 0);
		} else if (!dashdash && is_list && !strcmp(a, "--all")) {
			all = true;
		} else if (!dashdash && is_list && !strcmp(a, "--watch")) {
			watch = true;
		} else if (!dashdash && (is_list || is_show) && !strcmp(a, "--json")) {
			as_json = true;
		} else if (!dashdash && is_drain &&
			   (r = cli_opt_value(argc, argv, &i, "--reason", &reason)) != 0) {
			if (r < 0)
				return usage(stderr, 2);
		} else if (!dashdash && a[0] == '-' && a[1]) {
			fprintf(stderr, "error: unknown option %s for node %s\n", a, sub);
			return usage(stderr, 2);
		} else if (!is_list && !id) {
			id = a;
		} else {
			fprintf(stderr, "error: unexpected argument \"%s\"\n", a);
			return usage(stderr, 2);
		}
	}
	if (!is_list && !id) {
		fprintf(stderr, "error: node %s needs a node ID\n", sub);
		return usage(stderr, 2);
	}
	if (id && !ident_valid(id)) {
		char *cid = clean(id);
		fprintf(stderr, "error: invalid node ID \"%s\"\n", cid);
		free(cid);
		return 2;
	}
	if (open_client(&cf, &c)) {
		ret = 1;
		goto out;
	}
	if (is_list && watch && as_json) {
		fprintf(stderr, "error: node list --watch prints tables; use the API for JSON\n");
		ret = 2;
	} else if (is_list && watch) {
		ret = cmd_watch(c, all);
	} else if (is_list)
		ret = cmd_list(c, all, as_json);
	else if (is_show)
		ret = cmd_show(c, id, as_json);
	else if (is_attest)
		ret = cmd_attest(c, id);
	else
		ret = cmd_drain(c, id, reason);
out:
	ss_client_close(c);
	return ret;
}
