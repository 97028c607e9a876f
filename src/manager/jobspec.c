/*
 * jobspec.c - job specifications: parse, validate and expand (jobspec.h;
 * the format is documented in docs/jobs.md).
 *
 * jobspec_parse() keeps the JSON tree until it returns, so the early passes
 * borrow its strings and only the final struct jobspec owns copies:
 *   1. the spec's tasks ("groups") are named and indexed by name;
 *   2. each group is read in full (types, names, values, bounds), with
 *      `after`, `from` and `map.task` resolved to group indices;
 *   3. `from` references are checked against the producer's outputs, which
 *      completes the group dependency matrix;
 *   4. the groups are ordered topologically (Kahn's algorithm, ties broken
 *      by spec order); what is left over contains a cycle, reported by name;
 *   5. instance counts and every per-instance and per-job bound are worked
 *      out before anything is expanded, so hostile input cannot make the
 *      parser allocate much;
 *   6. the groups are expanded in that order, the instances of one group
 *      consecutive, so every dependency of an instance has a lower index.
 * Every error message begins with the JSON path of the offending value.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/exec/exec.h"
#include "manager/jobspec.h"

/* Bounds on the whole expanded job, beyond those in jobspec.h. */
#define MAX_JOB_INPUTS (1u << 18)   /* inputs of all instances together */
#define MAX_JOB_DEPS (1u << 20)     /* dependency edges of all instances together */
#define MAX_JOB_TEXT (32u << 20)    /* bytes of argv and env of all instances together */

/* Bounds on single fields. */
#define MAX_AFTER JOBSPEC_MAX_GROUPS
#define MAX_TEE 8
#define MAX_CODE 256
#define MAX_LABELS 64               /* jobs.c hands at most 64 labels to the scheduler */
#define MAX_FEATURES 64
#define MAX_AS 32
#define MAX_FILE_PATH 4096
#define MAX_ITEM (EXEC_MAX_ARG_LEN - (sizeof "SS_MAP_ITEM=" - 1))
#define MIN_MEMORY (4ull << 20)
#define MIN_DISK 4096ull
#define MAX_BYTES (1ull << 40) /* what the agent's executor accepts */
#define MAX_CPU_M (1024u * 1000u)
#define MAX_PIDS 65536
#define MAX_TIMEOUT_MS (7ull * 24 * 3600 * 1000)
#define MAX_BACKOFF_MS (10ull * 60 * 1000)
#define MAX_RETRIES 100
#define MAX_PRIORITY 1000

/* Defaults. */
#define DEF_CPU_M 1000u
#define DEF_MEMORY (256ull << 20)
#define DEF_DISK (64ull << 20)
#define DEF_OUTPUT (64ull << 20)
#define DEF_PIDS 64u
#define DEF_TIMEOUT_MS 60000u
#define DEF_RETRIES 2u
#define DEF_BACKOFF_MS 1000u

#define PATH_LEN 192 /* a JSON path in an error message */

enum in_kind { IN_BLOB = 0, IN_BLOBS, IN_FILE, IN_FROM };
enum map_kind { MAP_NONE = 0, MAP_LIST, MAP_INPUT, MAP_TASK };
/* How one group depends on another; a larger mode wins. */
enum dep_mode { DEP_NONE = 0, DEP_SAME, DEP_ALL };

struct blobref {
	uint8_t digest[SHA256_LEN];
	uint64_t size;
};

/* One input as written. Strings are borrowed from the JSON tree. */
struct gin {
	const char *name;
	enum in_kind kind;
	struct blobref blob;        /* IN_BLOB */
	struct blobref *blobs;      /* IN_BLOBS (owned) */
	uint32_t n_blobs;
	const char *file;           /* IN_FILE */
	uint32_t shards;            /* IN_FILE: 0 = one input, else a list of this many shards */
	uint32_t from;              /* IN_FROM: the producing group */
	uint32_t out_idx;           /* IN_FROM: the index of the output among the producer's */
	const char *output;         /* IN_FROM: the output path as written */
};

struct kv {
	const char *key;
	const char *value;
};

/* A task as written in the spec, with everything its instances share. */
struct group {
	const char *name;
	const char **argv;
	size_t argc;
	struct kv *env;             /* sorted by key */
	size_t envc;
	struct gin *in;
	size_t n_in;
	const char **out;
	size_t n_out;
	struct jobspec_resources res;
	uint32_t retries;
	uint64_t backoff_ms;
	int32_t priority;
	int replicate;              /* -1: unset (outputs critical when final), 0 or 1 */
	bool has_bundle;
	uint8_t bundle_blob[SHA256_LEN], bundle_digest[SHA256_LEN];
	enum map_kind map;
	char **items;               /* MAP_LIST (owned) */
	size_t n_items;
	uint32_t map_input;         /* MAP_INPUT: index into in */
	uint32_t map_task;          /* MAP_TASK: the producing group */
	const char *as;             /* the item placeholder's name, default "item" */
	uint32_t count;             /* instances */
	uint32_t first;             /* index of the first instance */
	uint32_t *deps;             /* groups depended on, in instance order (owned) */
	size_t n_deps;
	size_t inst_inputs;         /* inputs of each instance */
	size_t inst_deps;           /* dependencies of each instance */
};

struct named {
	const char *name;
	uint32_t idx;
};

struct parser {
	unsigned flags;
	char *why;
	size_t whylen;
	struct group *g;            /* in spec order */
	size_t ng;
	struct named *names;        /* sorted by name */
	uint8_t *dep;               /* ng x ng: dep[a * ng + b] is how group a depends on b */
	uint32_t *order;            /* groups in topological order */
	size_t text;                /* argv and env bytes expanded so far */
};

/* Writes the message for an error and evaluates to rc (a macro, so that rc stays visibly nonzero). */
#define fail(p, rc, ...) why_set((p)->why, (p)->whylen, (rc), __VA_ARGS__)

/* A value quoted in an error message: at most 100 bytes, anything but printable ASCII as '?'. */
struct shown {
	char s[112];
};

static struct shown show(const char *v)
{
	struct shown r;
	size_t i = 0;
	for (; i < 100 && v[i]; i++) {
		unsigned char c = (unsigned char)v[i];
		r.s[i] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
	}
	if (v[i])
		memcpy(r.s + i, "...", 4);
	else
		r.s[i] = '\0';
	return r;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}


static unsigned digits(uint32_t n)
{
	unsigned d = 1;
	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

/* ---- typed field access --------------------------------------------------------- */

/* Refuses any key of object o that is not in known (NULL-terminated). */
static int check_fields(struct parser *p, json_t *o, const char *path, const char *const known[])
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		size_t i = 0;
		while (known[i] && strcmp(known[i], k) != 0)
			i++;
		if (known[i])
			continue;
		char list[512];
		size_t used = 0;
		list[0] = '\0';
		for (i = 0; known[i] && used < sizeof list; i++)
			used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
						 known[i]);
		return fail(p, SS_EPARSE, "%s%s%s: unknown field (known: %s)", path, *path ? "." : "",
			    show(k).s, list);
	}
	return 0;
}

static int get_str(struct parser *p, json_t *v, const char *path, const char **out)
{
	if (!json_is_string(v))
		return fail(p, SS_EPARSE, "%s: expected a string", path);
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v))
		return fail(p, SS_EINVAL, "%s: contains a NUL byte", path);
	return 0;
}

/* Reads an integer in [lo, hi]: below lo is SS_EINVAL, above hi SS_ELIMIT. */
static int get_int(struct parser *p, json_t *v, const char *path, json_int_t lo, json_int_t hi,
		   json_int_t *out)
{
	if (!json_is_integer(v))
		return fail(p, SS_EPARSE, "%s: expected an integer", path);
	json_int_t x = json_integer_value(v);
	if (x < lo)
		return fail(p, SS_EINVAL, "%s: %" JSON_INTEGER_FORMAT " is below the minimum of %" JSON_INTEGER_FORMAT,
			    path, x, lo);
	if (x > hi)
		return fail(p, SS_ELIMIT, "%s: %" JSON_INTEGER_FORMAT " is over the maximum of %" JSON_INTEGER_FORMAT,
			    path, x, hi);
	*out = x;
	return 0;
}

/* Reads one of names (n of them) and stores its index. */
static int get_enum(struct parser *p, json_t *v, const char *path, const char *const names[],
		    size_t n, unsigned *out)
{
	const char *s;
	int rc = get_str(p, v, path, &s);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(s, names[i])) {
			*out = (unsigned)i;
			return 0;
		}
	}
	char list[256];
	size_t used = 0;
	list[0] = '\0';
	for (size_t i = 0; i < n && used < sizeof list; i++)
		used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
	return fail(p, SS_EINVAL, "%s: \"%s\" is not one of %s", path, show(s).s, list);
}

static int get_digest(struct parser *p, json_t *v, const char *path, uint8_t out[SHA256_LEN])
{
	const char *s;
	int rc = get_str(p, v, path, &s);
	if (rc)
		return rc;
	if (hex_decode(s, out, SHA256_LEN) != 0)
		return fail(p, SS_EINVAL, "%s: \"%s\" is not a SHA-256 digest (64 hex digits)", path,
			    show(s).s);
	return 0;
}

/* A size: bytes as an integer, or a string with an optional K/M/G/T suffix (binary). */
static int get_size(struct parser *p, json_t *v, const char *path, uint64_t min, uint64_t *out)
{
	uint64_t x;
	char a[32], b[32];
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return fail(p, SS_EINVAL, "%s: a size cannot be negative", path);
		x = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (parse_size(json_string_value(v), &x) != 0)
			return fail(p, SS_EINVAL, "%s: \"%s\" is not a size (use 512M, 2G, ...)", path,
				    show(json_string_value(v)).s);
	} else {
		return fail(p, SS_EPARSE, "%s: expected a size (bytes as a number, or a string such as \"256M\")",
			    path);
	}
	if (x < min) {
		format_size(x, a);
		format_size(min, b);
		return fail(p, SS_EINVAL, "%s: %s is below the minimum of %s", path, a, b);
	}
	if (x > MAX_BYTES) {
		format_size(x, a);
		format_size(MAX_BYTES, b);
		return fail(p, SS_ELIMIT, "%s: %s is over the maximum of %s", path, a, b);
	}
	*out = x;
	return 0;
}

/* A duration: seconds as a number, or a string such as "500ms", "30s", "5m", "1h". */
static int get_duration(struct parser *p, json_t *v, const char *path, uint64_t min, uint64_t max,
			uint64_t *out)
{
	uint64_t ms;
	char a[32], b[32];
	if (json_is_integer(v)) {
		json_int_t s = json_integer_value(v);
		if (s < 0)
			return fail(p, SS_EINVAL, "%s: a duration cannot be negative", path);
		ms = (uint64_t)s > max / 1000 + 1 ? max + 1 : (uint64_t)s * 1000;
	} else if (json_is_real(v)) {
		double s = json_real_value(v);
		if (!(s >= 0))
			return fail(p, SS_EINVAL, "%s: a duration cannot be negative", path);
		ms = s * 1000 > (double)max ? max + 1 : (uint64_t)llround(s * 1000);
	} else if (json_is_string(v)) {
		if (parse_duration_ms(json_string_value(v), &ms) != 0)
			return fail(p, SS_EINVAL, "%s: \"%s\" is not a duration (use 500ms, 30s, 5m, 1h or 2d)",
				    path, show(json_string_value(v)).s);
	} else {
		return fail(p, SS_EPARSE, "%s: expected a duration (seconds as a number, or a string such as \"30s\")",
			    path);
	}
	if (ms < min) {
		format_duration_ms(ms, a);
		format_duration_ms(min, b);
		return fail(p, SS_EINVAL, "%s: %s is below the minimum of %s", path, a, b);
	}
	if (ms > max) {
		format_duration_ms(max, b);
		return fail(p, SS_ELIMIT, "%s: over the maximum of %s", path, b);
	}
	*out = ms;
	return 0;
}

int jobspec_parse_cpu(const char *s, uint64_t *out)
{
	uint64_t whole = 0, frac = 0;
	size_t nd = 0, nf = 0;
	const char *c = s;
	for (; is_digit(*c); c++) {
		if (++nd > 9)
			return SS_EPARSE;
		whole = whole * 10 + (uint64_t)(*c - '0');
	}
	if (nd == 0)
		return SS_EPARSE;
	if (c[0] == 'm' && c[1] == '\0') {
		*out = whole;
		return 0;
	}
	if (*c == '.') {
		for (c++; is_digit(*c); c++) {
			if (++nf > 3)
				return SS_EPARSE;
			frac = frac * 10 + (uint64_t)(*c - '0');
		}
		if (nf == 0)
			return SS_EPARSE;
	}
	if (*c)
		return SS_EPARSE;
	for (; nf < 3; nf++)
		frac *= 10;
	*out = whole * 1000 + frac;
	return 0;
}

/* CPU: cores as a number (0.5, 2), or a string of cores ("0.5") or millicores ("500m"). */
static int get_cpu(struct parser *p, json_t *v, const char *path, uint32_t *out)
{
	uint64_t m;
	if (json_is_integer(v)) {
		json_int_t c = json_integer_value(v);
		if (c < 0)
			return fail(p, SS_EINVAL, "%s: a CPU amount cannot be negative", path);
		m = c > 1025 ? MAX_CPU_M + 1ull : (uint64_t)c * 1000;
	} else if (json_is_real(v)) {
		double c = json_real_value(v);
		if (!(c >= 0))
			return fail(p, SS_EINVAL, "%s: a CPU amount cannot be negative", path);
		m = c > 1025 ? MAX_CPU_M + 1ull : (uint64_t)llround(c * 1000);
	} else if (json_is_string(v)) {
		if (jobspec_parse_cpu(json_string_value(v), &m) != 0)
			return fail(p, SS_EINVAL, "%s: \"%s\" is not a CPU amount (use 0.5, 2 or 500m)", path,
				    show(json_string_value(v)).s);
	} else {
		return fail(p, SS_EPARSE, "%s: expected a CPU amount (cores as a number, or a string such as \"500m\")",
			    path);
	}
	if (m < 1)
		return fail(p, SS_EINVAL, "%s: must be at least 1m (a thousandth of a core)", path);
	if (m > MAX_CPU_M)
		return fail(p, SS_ELIMIT, "%s: over the maximum of %u cores", path, MAX_CPU_M / 1000);
	*out = (uint32_t)m;
	return 0;
}

/* Task names: 1..63 of [A-Za-z0-9_-], starting with a letter or digit (no '.', see "from"). */
static bool task_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > JOBSPEC_NAME_MAX || !is_alnum(s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* Job and tenant names use ident_valid(); task names task_name_valid(). */
static int check_name(struct parser *p, const char *s, const char *path, bool task)
{
	if (strlen(s) > JOBSPEC_NAME_MAX)
		return fail(p, SS_ELIMIT, "%s: \"%s\" is longer than %d bytes", path, show(s).s,
			    JOBSPEC_NAME_MAX);
	if (task ? !task_name_valid(s) : !ident_valid(s))
		return fail(p, SS_EINVAL,
			    "%s: \"%s\" is not a valid name (1 to %d of %s, starting with a letter or digit)",
			    path, show(s).s, JOBSPEC_NAME_MAX, task ? "A-Z a-z 0-9 _ -" : "A-Z a-z 0-9 . _ -");
	return 0;
}

/* Environment variable names: [A-Za-z_][A-Za-z0-9_]*. */
static bool env_key_valid(const char *s)
{
	if (!s[0] || is_digit(s[0]))
		return false;
	for (; *s; s++)
		if (!is_alnum(*s) && *s != '_')
			return false;
	return true;
}

static int cmp_named(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_label(const void *a, const void *b)
{
	return strcmp(((const struct jobspec_label *)a)->key, ((const struct jobspec_label *)b)->key);
}

/* Returns the group named name, or -1. */
static int32_t find_group(const struct parser *p, const char *name)
{
	size_t lo = 0, hi = p->ng;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->names[mid].name, name);
		if (c == 0)
			return (int32_t)p->names[mid].idx;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void dep_add(struct parser *p, uint32_t a, uint32_t b, enum dep_mode m)
{
	uint8_t *d = &p->dep[(size_t)a * p->ng + b];
	if (*d < m)
		*d = (uint8_t)m;
}

/* ---- policy ---------------------------------------------------------------------- */

static const char *const known_tees[] = {"sev-snp", "tdx", "sgx", "tpm", "sim"};
static const char *const optimize_names[] = {"balanced", "cost", "latency"};
static const char *const placement_names[] = {"binpack", "spread"};

static int parse_policy(struct parser *p, json_t *o, struct jobspec_policy *pol)
{
	static const char *const fields[] = {"tee", "attestation", "code", "labels",
					     "features", "optimize", "placement", NULL};
	char path[PATH_LEN];
	json_t *v;
	size_t i;
	unsigned e = 0;
	int rc;
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "policy: expected an object");
	if ((rc = check_fields(p, o, "policy", fields)))
		return rc;
	if ((v = json_object_get(o, "tee"))) {
		if (!json_is_array(v))
			return fail(p, SS_EPARSE, "policy.tee: expected an array of strings");
		if (json_array_size(v) > MAX_TEE)
			return fail(p, SS_ELIMIT, "policy.tee: over the limit of %d entries", MAX_TEE);
		pol->tee = xcalloc(json_array_size(v) + 1, sizeof *pol->tee);
		for (i = 0; i < json_array_size(v); i++) {
			snprintf(path, sizeof path, "policy.tee[%zu]", i);
			if ((rc = get_enum(p, json_array_get(v, i), path, known_tees, ARRAY_LEN(known_tees), &e)))
				return rc;
			for (size_t k = 0; k < pol->n_tee; k++)
				if (!strcmp(pol->tee[k], known_tees[e]))
					return fail(p, SS_EINVAL, "%s: \"%s\" is listed twice", path,
						    known_tees[e]);
			pol->tee[pol->n_tee++] = xstrdup(known_tees[e]);
		}
	}
	if ((v = json_object_get(o, "attestation"))) {
		static const char *const names[] = {"any", "hardware"};
		if ((rc = get_enum(p, v, "policy.attestation", names, ARRAY_LEN(names), &e)))
			return rc;
		pol->hardware = e == 1;
	}
	if ((v = json_object_get(o, "code"))) {
		if (!json_is_array(v))
			return fail(p, SS_EPARSE, "policy.code: expected an array of SHA-256 digests");
		if (json_array_size(v) > MAX_CODE)
			return fail(p, SS_ELIMIT, "policy.code: over the limit of %d digests", MAX_CODE);
		if (json_array_size(v))
			pol->code = xcalloc(json_array_size(v), SHA256_LEN);
		for (i = 0; i < json_array_size(v); i++) {
			snprintf(path, sizeof path, "policy.code[%zu]", i);
			if ((rc = get_digest(p, json_array_get(v, i), path, pol->code[i])))
				return rc;
			pol->n_code++;
		}
	}
	if ((v = json_object_get(o, "labels"))) {
		const char *k, *s;
		json_t *lv;
		if (!json_is_object(v))
			return fail(p, SS_EPARSE, "policy.labels: expected an object of strings");
		if (json_object_size(v) > MAX_LABELS)
			return fail(p, SS_ELIMIT, "policy.labels: over the limit of %d labels", MAX_LABELS);
		if (json_object_size(v))
			pol->labels = xcalloc(json_object_size(v), sizeof *pol->labels);
		json_object_foreach(v, k, lv) {
			if (!ident_valid(k))
				return fail(p, SS_EINVAL,
					    "policy.labels: \"%s\" is not a valid label name (1 to 63 of A-Z a-z 0-9 . _ -)",
					    show(k).s);
			snprintf(path, sizeof path, "policy.labels.%s", k);
			if ((rc = get_str(p, lv, path, &s)))
				return rc;
			if (!label_value_valid(s))
				return fail(p, SS_EINVAL,
					    "%s: \"%s\" is not a valid label value (0 to 127 printable bytes, no spaces or quotes)",
					    path, show(s).s);
			pol->labels[pol->n_labels].key = xstrdup(k);
			pol->labels[pol->n_labels].value = xstrdup(s);
			pol->n_labels++;
		}
		if (pol->n_labels)
			qsort(pol->labels, pol->n_labels, sizeof *pol->labels, cmp_label);
	}
	if ((v = json_object_get(o, "features"))) {
		const char *s;
		if (!json_is_array(v))
			return fail(p, SS_EPARSE, "policy.features: expected an array of strings");
		if (json_array_size(v) > MAX_FEATURES)
			return fail(p, SS_ELIMIT, "policy.features: over the limit of %d features",
				    MAX_FEATURES);
		pol->features = xcalloc(json_array_size(v) + 1, sizeof *pol->features);
		for (i = 0; i < json_array_size(v); i++) {
			snprintf(path, sizeof path, "policy.features[%zu]", i);
			if ((rc = get_str(p, json_array_get(v, i), path, &s)))
				return rc;
			if (!ident_valid(s))
				return fail(p, SS_EINVAL,
					    "%s: \"%s\" is not a valid feature name (1 to 63 of A-Z a-z 0-9 . _ -)",
					    path, show(s).s);
			pol->features[pol->n_features++] = xstrdup(s);
		}
	}
	if ((v = json_object_get(o, "optimize"))) {
		if ((rc = get_enum(p, v, "policy.optimize", optimize_names, ARRAY_LEN(optimize_names), &e)))
			return rc;
		pol->optimize = (enum jobspec_optimize)e;
	}
	if ((v = json_object_get(o, "placement"))) {
		if ((rc = get_enum(p, v, "policy.placement", placement_names, ARRAY_LEN(placement_names),
				   &e)))
			return rc;
		pol->placement = (enum jobspec_placement)e;
	}
	return 0;
}

/* ---- pass 1: names ------------------------------------------------------------------ */

static int index_groups(struct parser *p, json_t *tasks)
{
	int rc;
	if (!tasks)
		return fail(p, SS_EPARSE, "tasks: required (an array of tasks)");
	if (!json_is_array(tasks))
		return fail(p, SS_EPARSE, "tasks: expected an array of tasks");
	size_t n = json_array_size(tasks);
	if (n == 0)
		return fail(p, SS_EINVAL, "tasks: a job needs at least one task");
	if (n > JOBSPEC_MAX_GROUPS)
		return fail(p, SS_ELIMIT, "tasks: %zu tasks, over the limit of %d (use map to fan out)", n,
			    JOBSPEC_MAX_GROUPS);
	p->ng = n;
	p->g = xcalloc(n, sizeof *p->g);
	p->names = xcalloc(n, sizeof *p->names);
	p->dep = xcalloc(n * n, 1);
	p->order = xcalloc(n, sizeof *p->order);
	for (size_t i = 0; i < n; i++) {
		json_t *t = json_array_get(tasks, i);
		char path[PATH_LEN];
		const char *s;
		if (!json_is_object(t))
			return fail(p, SS_EPARSE, "tasks[%zu]: expected an object", i);
		snprintf(path, sizeof path, "tasks[%zu].name", i);
		json_t *v = json_object_get(t, "name");
		if (!v)
			return fail(p, SS_EPARSE, "%s: required", path);
		if ((rc = get_str(p, v, path, &s)) || (rc = check_name(p, s, path, true)))
			return rc;
		p->g[i].name = s;
		p->names[i].name = s;
		p->names[i].idx = (uint32_t)i;
	}
	qsort(p->names, n, sizeof *p->names, cmp_named);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(p->names[i].name, p->names[i - 1].name))
			return fail(p, SS_EINVAL, "tasks[%u].name: \"%s\" is already the name of tasks[%u]",
				    p->names[i].idx, p->names[i].name, p->names[i - 1].idx);
	return 0;
}

/* ---- pass 2: one group ----------------------------------------------------------- */

static int parse_command(struct parser *p, struct group *g, json_t *v, const char *base)
{
	char path[PATH_LEN];
	int rc;
	snprintf(path, sizeof path, "%s.command", base);
	if (!v)
		return fail(p, SS_EPARSE, "%s: required (e.g. [\"/bin/sh\", \"-c\", \"echo hi > /out/x\"])",
			    path);
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s: expected an array of strings", path);
	size_t n = json_array_size(v);
	if (n == 0)
		return fail(p, SS_EINVAL, "%s: must not be empty", path);
	if (n > EXEC_MAX_ARGS)
		return fail(p, SS_ELIMIT, "%s: %zu arguments, over the limit of %d", path, n, EXEC_MAX_ARGS);
	g->argv = xcalloc(n, sizeof *g->argv);
	g->argc = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s.command[%zu]", base, i);
		if ((rc = get_str(p, json_array_get(v, i), path, &g->argv[i])))
			return rc;
		if (strlen(g->argv[i]) > EXEC_MAX_ARG_LEN)
			return fail(p, SS_ELIMIT, "%s: %zu bytes, over the limit of %d", path,
				    strlen(g->argv[i]), EXEC_MAX_ARG_LEN);
	}
	if (!g->argv[0][0])
		return fail(p, SS_EINVAL, "%s.command[0]: the program must not be empty", base);
	return 0;
}

static int parse_env(struct parser *p, struct group *g, json_t *v, const char *base)
{
	char path[PATH_LEN];
	const char *k;
	json_t *ev;
	int rc;
	snprintf(path, sizeof path, "%s.env", base);
	if (!json_is_object(v))
		return fail(p, SS_EPARSE, "%s: expected an object of strings", path);
	size_t n = json_object_size(v);
	if (n > EXEC_MAX_ENV)
		return fail(p, SS_ELIMIT, "%s: %zu variables, over the limit of %d", path, n, EXEC_MAX_ENV);
	if (n)
		g->env = xcalloc(n, sizeof *g->env);
	json_object_foreach(v, k, ev) {
		if (!env_key_valid(k))
			return fail(p, SS_EINVAL, "%s: \"%s\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
				    path, show(k).s);
		if (!strcmp(k, "SS_MAP_INDEX") || !strcmp(k, "SS_MAP_ITEM"))
			return fail(p, SS_EINVAL, "%s.%s: reserved (set for map instances)", path, k);
		snprintf(path, sizeof path, "%s.env.%s", base, k);
		if ((rc = get_str(p, ev, path, &g->env[g->envc].value)))
			return rc;
		if (strlen(k) + 1 + strlen(g->env[g->envc].value) > EXEC_MAX_ARG_LEN)
			return fail(p, SS_ELIMIT, "%s: KEY=VALUE is over the limit of %d bytes", path,
				    EXEC_MAX_ARG_LEN);
		g->env[g->envc++].key = k;
		snprintf(path, sizeof path, "%s.env", base);
	}
	if (g->envc)
		qsort(g->env, g->envc, sizeof *g->env, cmp_kv);
	return 0;
}

static int parse_blobs(struct parser *p, struct gin *in, json_t *v, const char *base)
{
	static const char *const fields[] = {"digest", "size", NULL};
	char path[PATH_LEN];
	json_int_t x;
	int rc;
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s.blobs: expected an array of {\"digest\", \"size\"} objects",
			    base);
	size_t n = json_array_size(v);
	if (n == 0)
		return fail(p, SS_EINVAL, "%s.blobs: must not be empty", base);
	if (n > JOBSPEC_MAX_MAP)
		return fail(p, SS_ELIMIT, "%s.blobs: %zu blobs, over the limit of %d", base, n,
			    JOBSPEC_MAX_MAP);
	in->blobs = xcalloc(n, sizeof *in->blobs);
	in->n_blobs = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_array_get(v, i);
		snprintf(path, sizeof path, "%s.blobs[%zu]", base, i);
		if (!json_is_object(b))
			return fail(p, SS_EPARSE, "%s: expected an object", path);
		if ((rc = check_fields(p, b, path, fields)))
			return rc;
		json_t *d = json_object_get(b, "digest");
		snprintf(path, sizeof path, "%s.blobs[%zu].digest", base, i);
		if (!d)
			return fail(p, SS_EPARSE, "%s: required", path);
		if ((rc = get_digest(p, d, path, in->blobs[i].digest)))
			return rc;
		if ((d = json_object_get(b, "size"))) {
			snprintf(path, sizeof path, "%s.blobs[%zu].size", base, i);
			if ((rc = get_int(p, d, path, 0, LLONG_MAX, &x)))
				return rc;
			in->blobs[i].size = (uint64_t)x;
		}
	}
	return 0;
}

static int parse_input(struct parser *p, struct gin *in, json_t *o, const char *base)
{
	static const char *const fields[] = {"name", "blob", "size", "blobs", "file", "shards", "from", NULL};
	static const char *const sources[] = {"blob", "blobs", "file", "from"};
	char path[PATH_LEN];
	const char *found[2] = {NULL, NULL};
	size_t nfound = 0;
	json_int_t x;
	json_t *v;
	int rc;
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "%s: expected an object", base);
	if ((rc = check_fields(p, o, base, fields)))
		return rc;
	snprintf(path, sizeof path, "%s.name", base);
	if (!(v = json_object_get(o, "name")))
		return fail(p, SS_EPARSE, "%s: required (the file name under /in)", path);
	if ((rc = get_str(p, v, path, &in->name)))
		return rc;
	if (strlen(in->name) > EXEC_NAME_MAX)
		return fail(p, SS_ELIMIT, "%s: \"%s\" is longer than %d bytes", path, show(in->name).s,
			    EXEC_NAME_MAX);
	if (!exec_name_valid(in->name))
		return fail(p, SS_EINVAL, "%s: \"%s\" is not a valid input name (A-Z a-z 0-9 . _ -, not . or ..)",
			    path, show(in->name).s);
	for (size_t i = 0; i < ARRAY_LEN(sources); i++) {
		if (!json_object_get(o, sources[i]))
			continue;
		if (nfound < 2)
			found[nfound] = sources[i];
		nfound++;
	}
	if (nfound == 0)
		return fail(p, SS_EPARSE, "%s: needs one of blob, blobs, file or from", base);
	if (nfound > 1)
		return fail(p, SS_EPARSE, "%s: %s and %s exclude each other", base, found[0], found[1]);
	if (json_object_get(o, "size") && strcmp(found[0], "blob") != 0)
		return fail(p, SS_EPARSE, "%s.size: only allowed with blob", base);
	if (json_object_get(o, "shards") && strcmp(found[0], "file") != 0)
		return fail(p, SS_EPARSE, "%s.shards: only allowed with file", base);
	if ((v = json_object_get(o, "blob"))) {
		in->kind = IN_BLOB;
		snprintf(path, sizeof path, "%s.blob", base);
		if ((rc = get_digest(p, v, path, in->blob.digest)))
			return rc;
		if ((v = json_object_get(o, "size"))) {
			snprintf(path, sizeof path, "%s.size", base);
			if ((rc = get_int(p, v, path, 0, LLONG_MAX, &x)))
				return rc;
			in->blob.size = (uint64_t)x;
		}
	} else if ((v = json_object_get(o, "blobs"))) {
		in->kind = IN_BLOBS;
		if ((rc = parse_blobs(p, in, v, base)))
			return rc;
	} else if ((v = json_object_get(o, "file"))) {
		in->kind = IN_FILE;
		snprintf(path, sizeof path, "%s.file", base);
		if (!(p->flags & JOBSPEC_ALLOW_FILES))
			return fail(p, SS_EINVAL,
				    "%s: local files are uploaded by the CLI (seeswarm job run); submit \"blob\" or \"blobs\" digests instead",
				    path);
		if ((rc = get_str(p, v, path, &in->file)))
			return rc;
		if (!in->file[0])
			return fail(p, SS_EINVAL, "%s: must not be empty", path);
		if (strlen(in->file) > MAX_FILE_PATH)
			return fail(p, SS_ELIMIT, "%s: over the limit of %d bytes", path, MAX_FILE_PATH);
		if ((v = json_object_get(o, "shards"))) {
			snprintf(path, sizeof path, "%s.shards", base);
			if ((rc = get_int(p, v, path, 1, JOBSPEC_MAX_MAP, &x)))
				return rc;
			in->shards = (uint32_t)x;
		}
	} else {
		const char *s;
		v = json_object_get(o, "from");
		in->kind = IN_FROM;
		snprintf(path, sizeof path, "%s.from", base);
		if ((rc = get_str(p, v, path, &s)))
			return rc;
		const char *dot = strchr(s, '.');
		if (!dot || dot == s || !dot[1])
			return fail(p, SS_EINVAL, "%s: \"%s\" is not TASK.OUTPUT (e.g. \"count.result.txt\")",
				    path, show(s).s);
		char task[JOBSPEC_NAME_MAX + 1];
		size_t tl = (size_t)(dot - s);
		int32_t gi = -1;
		if (tl <= JOBSPEC_NAME_MAX) {
			memcpy(task, s, tl);
			task[tl] = '\0';
			gi = find_group(p, task);
		}
		if (gi < 0)
			return fail(p, SS_EINVAL, "%s: no task named \"%.*s\"", path,
				    (int)(tl < 64 ? tl : 64), show(s).s);
		in->from = (uint32_t)gi;
		in->output = dot + 1;
	}
	return 0;
}

static int parse_inputs(struct parser *p, struct group *g, json_t *v, const char *base)
{
	char path[64];
	int rc;
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s.inputs: expected an array of objects", base);
	size_t n = json_array_size(v);
	if (n > JOBSPEC_MAX_INPUTS)
		return fail(p, SS_ELIMIT, "%s.inputs: %zu inputs, over the limit of %d", base, n,
			    JOBSPEC_MAX_INPUTS);
	if (n)
		g->in = xcalloc(n, sizeof *g->in);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s.inputs[%zu]", base, i);
		g->n_in++;
		if ((rc = parse_input(p, &g->in[i], json_array_get(v, i), path)))
			return rc;
	}
	return 0;
}

static int parse_outputs(struct parser *p, struct group *g, json_t *v, const char *base)
{
	char path[PATH_LEN];
	const char **sorted = NULL;
	int rc = 0;
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s.outputs: expected an array of paths", base);
	size_t n = json_array_size(v);
	if (n > EXEC_MAX_OUTPUTS)
		return fail(p, SS_ELIMIT, "%s.outputs: %zu outputs, over the limit of %d", base, n,
			    EXEC_MAX_OUTPUTS);
	if (n == 0)
		return 0;
	g->out = xcalloc(n, sizeof *g->out);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s.outputs[%zu]", base, i);
		if ((rc = get_str(p, json_array_get(v, i), path, &g->out[i])))
			return rc;
		g->n_out++;
		if (!exec_relpath_valid(g->out[i]))
			return fail(p, SS_EINVAL,
				    "%s: \"%s\" is not a valid output path (names of A-Z a-z 0-9 . _ - joined by /, below /out)",
				    path, show(g->out[i]).s);
	}
	sorted = xmalloc(n * sizeof *sorted);
	memcpy(sorted, g->out, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, cmp_str);
	for (size_t i = 1; i < n; i++) {
		if (!strcmp(sorted[i], sorted[i - 1])) {
			rc = fail(p, SS_EINVAL, "%s.outputs: \"%s\" is listed twice", base, show(sorted[i]).s);
			goto out;
		}
	}
out:
	free(sorted);
	return rc;
}

static int parse_resources(struct parser *p, struct group *g, json_t *o, const char *base)
{
	static const char *const fields[] = {"cpu", "memory", "disk", "output", "pids", NULL};
	char path[PATH_LEN];
	json_int_t x;
	json_t *v;
	int rc;
	snprintf(path, sizeof path, "%s.resources", base);
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "%s: expected an object", path);
	if ((rc = check_fields(p, o, path, fields)))
		return rc;
	if ((v = json_object_get(o, "cpu"))) {
		snprintf(path, sizeof path, "%s.resources.cpu", base);
		if ((rc = get_cpu(p, v, path, &g->res.cpu_millicores)))
			return rc;
	}
	if ((v = json_object_get(o, "memory"))) {
		snprintf(path, sizeof path, "%s.resources.memory", base);
		if ((rc = get_size(p, v, path, MIN_MEMORY, &g->res.memory_bytes)))
			return rc;
	}
	if ((v = json_object_get(o, "disk"))) {
		snprintf(path, sizeof path, "%s.resources.disk", base);
		if ((rc = get_size(p, v, path, MIN_DISK, &g->res.disk_bytes)))
			return rc;
	}
	if ((v = json_object_get(o, "output"))) {
		snprintf(path, sizeof path, "%s.resources.output", base);
		if ((rc = get_size(p, v, path, MIN_DISK, &g->res.output_bytes)))
			return rc;
	}
	if ((v = json_object_get(o, "pids"))) {
		snprintf(path, sizeof path, "%s.resources.pids", base);
		if ((rc = get_int(p, v, path, 1, MAX_PIDS, &x)))
			return rc;
		g->res.pids = (uint32_t)x;
	}
	return 0;
}

static int parse_retries(struct parser *p, struct group *g, json_t *v, const char *base)
{
	static const char *const fields[] = {"count", "backoff", NULL};
	char path[PATH_LEN];
	json_int_t x;
	json_t *c;
	int rc;
	snprintf(path, sizeof path, "%s.retries", base);
	if (json_is_integer(v)) {
		if ((rc = get_int(p, v, path, 0, MAX_RETRIES, &x)))
			return rc;
		g->retries = (uint32_t)x;
		return 0;
	}
	if (!json_is_object(v))
		return fail(p, SS_EPARSE, "%s: expected an integer or an object", path);
	if ((rc = check_fields(p, v, path, fields)))
		return rc;
	if ((c = json_object_get(v, "count"))) {
		snprintf(path, sizeof path, "%s.retries.count", base);
		if ((rc = get_int(p, c, path, 0, MAX_RETRIES, &x)))
			return rc;
		g->retries = (uint32_t)x;
	}
	if ((c = json_object_get(v, "backoff"))) {
		snprintf(path, sizeof path, "%s.retries.backoff", base);
		if ((rc = get_duration(p, c, path, 0, MAX_BACKOFF_MS, &g->backoff_ms)))
			return rc;
	}
	return 0;
}

static int parse_after(struct parser *p, uint32_t gi, json_t *v, const char *base)
{
	char path[PATH_LEN];
	const char *s;
	int rc;
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s.after: expected an array of task names", base);
	if (json_array_size(v) > MAX_AFTER)
		return fail(p, SS_ELIMIT, "%s.after: over the limit of %d entries", base, MAX_AFTER);
	for (size_t i = 0; i < json_array_size(v); i++) {
		snprintf(path, sizeof path, "%s.after[%zu]", base, i);
		if ((rc = get_str(p, json_array_get(v, i), path, &s)))
			return rc;
		int32_t h = find_group(p, s);
		if (h < 0)
			return fail(p, SS_EINVAL, "%s: no task named \"%s\"", path, show(s).s);
		dep_add(p, gi, (uint32_t)h, DEP_ALL);
	}
	return 0;
}

static int parse_map(struct parser *p, uint32_t gi, json_t *o, const char *base)
{
	static const char *const fields[] = {"over", "input", "task", "as", NULL};
	static const char *const kinds[] = {"over", "input", "task"};
	struct group *g = &p->g[gi];
	char path[PATH_LEN];
	const char *found[2] = {NULL, NULL};
	size_t nfound = 0;
	const char *s;
	json_t *v;
	int rc;
	snprintf(path, sizeof path, "%s.map", base);
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "%s: expected an object", path);
	if ((rc = check_fields(p, o, path, fields)))
		return rc;
	for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
		if (!json_object_get(o, kinds[i]))
			continue;
		if (nfound < 2)
			found[nfound] = kinds[i];
		nfound++;
	}
	if (nfound == 0)
		return fail(p, SS_EPARSE, "%s: needs one of over, input or task", path);
	if (nfound > 1)
		return fail(p, SS_EPARSE, "%s: %s and %s exclude each other", path, found[0], found[1]);
	if ((v = json_object_get(o, "as"))) {
		snprintf(path, sizeof path, "%s.map.as", base);
		if ((rc = get_str(p, v, path, &s)))
			return rc;
		if (strlen(s) > MAX_AS || !env_key_valid(s) || !strcmp(s, "index"))
			return fail(p, SS_EINVAL,
				    "%s: \"%s\" is not a placeholder name (1 to %d of [A-Za-z_][A-Za-z0-9_]*, not \"index\")",
				    path, show(s).s, MAX_AS);
		g->as = s;
	}
	if ((v = json_object_get(o, "over"))) {
		g->map = MAP_LIST;
		snprintf(path, sizeof path, "%s.map.over", base);
		if (!json_is_array(v))
			return fail(p, SS_EPARSE, "%s: expected an array of strings or integers", path);
		size_t n = json_array_size(v);
		if (n == 0)
			return fail(p, SS_EINVAL, "%s: must not be empty", path);
		if (n > JOBSPEC_MAX_MAP)
			return fail(p, SS_ELIMIT, "%s: %zu items, over the limit of %d", path, n,
				    JOBSPEC_MAX_MAP);
		g->items = xcalloc(n, sizeof *g->items);
		for (size_t i = 0; i < n; i++) {
			json_t *it = json_array_get(v, i);
			snprintf(path, sizeof path, "%s.map.over[%zu]", base, i);
			if (json_is_integer(it)) {
				g->items[i] = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(it));
			} else if (json_is_string(it)) {
				if ((rc = get_str(p, it, path, &s)))
					return rc;
				if (strlen(s) > MAX_ITEM)
					return fail(p, SS_ELIMIT, "%s: %zu bytes, over the limit of %zu", path,
						    strlen(s), (size_t)MAX_ITEM);
				g->items[i] = xstrdup(s);
			} else {
				return fail(p, SS_EPARSE, "%s: expected a string or an integer", path);
			}
			g->n_items++;
		}
	} else if ((v = json_object_get(o, "input"))) {
		g->map = MAP_INPUT;
		snprintf(path, sizeof path, "%s.map.input", base);
		if ((rc = get_str(p, v, path, &s)))
			return rc;
		size_t k = 0;
		while (k < g->n_in && strcmp(g->in[k].name, s) != 0)
			k++;
		if (k == g->n_in)
			return fail(p, SS_EINVAL, "%s: the task has no input named \"%s\"", path, show(s).s);
		if (g->in[k].kind != IN_BLOBS && !(g->in[k].kind == IN_FILE && g->in[k].shards))
			return fail(p, SS_EINVAL, "%s: input \"%s\" is not a list (give it \"blobs\"%s)", path,
				    show(s).s,
				    (p->flags & JOBSPEC_ALLOW_FILES) ? ", or a \"file\" with \"shards\"" : "");
		g->map_input = (uint32_t)k;
	} else {
		v = json_object_get(o, "task");
		g->map = MAP_TASK;
		snprintf(path, sizeof path, "%s.map.task", base);
		if ((rc = get_str(p, v, path, &s)))
			return rc;
		int32_t h = find_group(p, s);
		if (h < 0)
			return fail(p, SS_EINVAL, "%s: no task named \"%s\"", path, show(s).s);
		g->map_task = (uint32_t)h;
		dep_add(p, gi, (uint32_t)h, DEP_SAME);
	}
	return 0;
}

/*
 * "bundle": {"blob": TAR_DIGEST, "digest": CODE_DIGEST}, or {"file": PATH}
 * (a directory or tar the CLI packs and uploads; JOBSPEC_ALLOW_FILES only).
 */
static int parse_bundle(struct parser *p, struct group *g, json_t *v, const char *base)
{
	static const char *const fields[] = {"blob", "digest", "file", NULL};
	char path[PATH_LEN];
	const char *s;
	json_t *x;
	int rc;
	snprintf(path, sizeof path, "%s.bundle", base);
	if (!json_is_object(v))
		return fail(p, SS_EPARSE,
			    "%s: expected {\"blob\": TAR_SHA256, \"digest\": CODE_DIGEST} or {\"file\": PATH}",
			    path);
	if ((rc = check_fields(p, v, path, fields)))
		return rc;
	if ((x = json_object_get(v, "file"))) {
		snprintf(path, sizeof path, "%s.bundle.file", base);
		if (!(p->flags & JOBSPEC_ALLOW_FILES))
			return fail(p, SS_EINVAL,
				    "%s: local bundles are packed and uploaded by the CLI (seeswarm job run); submit \"blob\" and \"digest\" instead",
				    path);
		if (json_object_get(v, "blob") || json_object_get(v, "digest"))
			return fail(p, SS_EINVAL, "%s: give either \"file\" or \"blob\" and \"digest\"", path);
		if ((rc = get_str(p, x, path, &s)))
			return rc;
		if (!s[0] || strlen(s) > MAX_FILE_PATH)
			return fail(p, SS_EINVAL, "%s: must be a path of 1 to %d bytes", path, MAX_FILE_PATH);
		return 0;
	}
	static const char *const need[] = {"blob", "digest"};
	uint8_t *dst[] = {g->bundle_blob, g->bundle_digest};
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s.bundle.%s", base, need[i]);
		if (!(x = json_object_get(v, need[i])))
			return fail(p, SS_EPARSE, "%s: required", path);
		if ((rc = get_digest(p, x, path, dst[i])))
			return rc;
	}
	g->has_bundle = true;
	return 0;
}

static int parse_group(struct parser *p, uint32_t gi, json_t *t)
{
	static const char *const fields[] = {"name",      "command", "env",     "inputs",
					     "outputs",   "resources", "timeout", "retries",
					     "priority",  "after",   "map",     "bundle",
					     "replicate", "kill_grace", NULL};
	struct group *g = &p->g[gi];
	char base[32], path[PATH_LEN];
	json_int_t x;
	json_t *v;
	int rc;
	snprintf(base, sizeof base, "tasks[%u]", gi);
	g->res.cpu_millicores = DEF_CPU_M;
	g->res.memory_bytes = DEF_MEMORY;
	g->res.disk_bytes = DEF_DISK;
	g->res.output_bytes = DEF_OUTPUT;
	g->res.pids = DEF_PIDS;
	g->res.timeout_ms = DEF_TIMEOUT_MS;
	g->retries = DEF_RETRIES;
	g->backoff_ms = DEF_BACKOFF_MS;
	g->as = "item";
	if ((rc = check_fields(p, t, base, fields)))
		return rc;
	if ((rc = parse_command(p, g, json_object_get(t, "command"), base)))
		return rc;
	if ((v = json_object_get(t, "env")) && (rc = parse_env(p, g, v, base)))
		return rc;
	if ((v = json_object_get(t, "inputs")) && (rc = parse_inputs(p, g, v, base)))
		return rc;
	if ((v = json_object_get(t, "outputs")) && (rc = parse_outputs(p, g, v, base)))
		return rc;
	if ((v = json_object_get(t, "resources")) && (rc = parse_resources(p, g, v, base)))
		return rc;
	if ((v = json_object_get(t, "timeout"))) {
		snprintf(path, sizeof path, "%s.timeout", base);
		if ((rc = get_duration(p, v, path, 1, MAX_TIMEOUT_MS, &g->res.timeout_ms)))
			return rc;
	}
	if ((v = json_object_get(t, "kill_grace"))) {
		uint64_t ms;
		snprintf(path, sizeof path, "%s.kill_grace", base);
		if ((rc = get_duration(p, v, path, 0, JOBSPEC_MAX_KILL_GRACE_MS, &ms)))
			return rc;
		g->res.kill_grace_ms = (uint32_t)ms;
	}
	if ((v = json_object_get(t, "retries")) && (rc = parse_retries(p, g, v, base)))
		return rc;
	if ((v = json_object_get(t, "priority"))) {
		snprintf(path, sizeof path, "%s.priority", base);
		if ((rc = get_int(p, v, path, -MAX_PRIORITY, MAX_PRIORITY, &x)))
			return rc;
		g->priority = (int32_t)x;
	}
	if ((v = json_object_get(t, "after")) && (rc = parse_after(p, gi, v, base)))
		return rc;
	if ((v = json_object_get(t, "map")) && (rc = parse_map(p, gi, v, base)))
		return rc;
	if ((v = json_object_get(t, "bundle")) && (rc = parse_bundle(p, g, v, base)))
		return rc;
	g->replicate = -1;
	if ((v = json_object_get(t, "replicate"))) {
		if (!json_is_boolean(v))
			return fail(p, SS_EPARSE, "%s.replicate: expected true or false", base);
		g->replicate = json_is_true(v);
	}
	if (g->map != MAP_NONE && g->envc + 2 > EXEC_MAX_ENV)
		return fail(p, SS_ELIMIT,
			    "%s.env: a mapped task may have at most %d variables (SS_MAP_INDEX and SS_MAP_ITEM are added)",
			    base, EXEC_MAX_ENV - 2);
	return 0;
}

/* ---- pass 3: data references ------------------------------------------------------ */

static int resolve_from(struct parser *p)
{
	for (uint32_t gi = 0; gi < p->ng; gi++) {
		struct group *g = &p->g[gi];
		for (size_t k = 0; k < g->n_in; k++) {
			struct gin *in = &g->in[k];
			if (in->kind != IN_FROM)
				continue;
			const struct group *pg = &p->g[in->from];
			size_t o = 0;
			while (o < pg->n_out && strcmp(pg->out[o], in->output) != 0)
				o++;
			if (o == pg->n_out) {
				char list[256];
				size_t used = 0;
				list[0] = '\0';
				for (size_t i = 0; i < pg->n_out && used < sizeof list; i++)
					used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
								 i ? ", " : "", pg->out[i]);
				return fail(p, SS_EINVAL,
					    "tasks[%u].inputs[%zu].from: task \"%s\" has no output \"%s\" (declared: %s)",
					    gi, k, pg->name, show(in->output).s, pg->n_out ? list : "none");
			}
			in->out_idx = (uint32_t)o;
			dep_add(p, gi, in->from, DEP_ALL);
		}
	}
	return 0;
}

/* ---- pass 4: order ----------------------------------------------------------------- */

/*
 * Reports a cycle among the groups not done. Each of them waits for another
 * group not done (that is why it is left over), so following those edges
 * from any of them must come back to a group already on the walk.
 */
static int report_cycle(struct parser *p, const bool *done)
{
	size_t n = p->ng, len = 0;
	uint32_t *walk = xcalloc(n, sizeof *walk);
	int32_t *pos = xmalloc(n * sizeof *pos);
	struct buf b;
	uint32_t cur = 0;
	for (size_t i = 0; i < n; i++)
		pos[i] = -1;
	while (done[cur])
		cur++;
	while (pos[cur] < 0) {
		pos[cur] = (int32_t)len;
		walk[len++] = cur;
		uint32_t next = 0;
		while (next < n && (done[next] || !p->dep[(size_t)cur * n + next]))
			next++;
		if (next == n)
			fatal("jobspec: group %u is left over without a dependency", cur);
		cur = next;
	}
	/* walk[pos[cur]..len) is the cycle, each member waiting for the next one.
	 * It is printed the other way round (a -> b: b runs after a), starting
	 * at the member written first in the spec. */
	size_t start = (size_t)pos[cur], m = len - start, lo = 0;
	for (size_t i = 1; i < m; i++)
		if (walk[start + m - 1 - i] < walk[start + m - 1 - lo])
			lo = i;
	buf_init(&b);
	buf_printf(&b, "cycle: ");
	for (size_t i = 0; i <= m; i++)
		buf_printf(&b, "%s%s", i ? " -> " : "", p->g[walk[start + m - 1 - (lo + i) % m]].name);
	buf_append(&b, "", 1);
	int rc = fail(p, SS_EINVAL, "%s", (const char *)b.data);
	buf_free(&b);
	free(walk);
	free(pos);
	return rc;
}

/* Kahn's algorithm over the groups, always taking the ready group written first. */
static int order_groups(struct parser *p)
{
	size_t n = p->ng, k = 0;
	uint32_t *indeg = xcalloc(n, sizeof *indeg);
	bool *done = xcalloc(n, sizeof *done);
	int rc = 0;
	for (size_t a = 0; a < n; a++)
		for (size_t b = 0; b < n; b++)
			if (p->dep[a * n + b])
				indeg[a]++;
	while (k < n) {
		size_t pick = 0;
		while (pick < n && (done[pick] || indeg[pick]))
			pick++;
		if (pick == n)
			break;
		done[pick] = true;
		p->order[k++] = (uint32_t)pick;
		for (size_t a = 0; a < n; a++)
			if (p->dep[a * n + pick])
				indeg[a]--;
	}
	if (k < n)
		rc = report_cycle(p, done);
	free(indeg);
	free(done);
	return rc;
}

/* ---- pass 5: sizes and bounds ------------------------------------------------------- */

static size_t inputs_of(const struct parser *p, const struct group *g)
{
	size_t n = 0;
	for (size_t k = 0; k < g->n_in; k++) {
		const struct gin *in = &g->in[k];
		bool on_map = g->map == MAP_INPUT && g->map_input == k;
		const struct group *pg = &p->g[in->from];
		switch (in->kind) {
		case IN_BLOB:
			n++;
			break;
		case IN_BLOBS:
			n += on_map ? 1 : in->n_blobs;
			break;
		case IN_FILE:
			n += on_map || !in->shards ? 1 : in->shards;
			break;
		case IN_FROM:
			n += pg->map == MAP_NONE ? 1 : pg->count;
			break;
		}
	}
	if (g->map == MAP_TASK)
		n += p->g[g->map_task].n_out;
	return n;
}

static int size_groups(struct parser *p, size_t *n_tasks)
{
	size_t total = 0;
	uint64_t inputs = 0, deps = 0;
	for (size_t k = 0; k < p->ng; k++) {
		struct group *g = &p->g[p->order[k]];
		switch (g->map) {
		case MAP_NONE:
			g->count = 1;
			break;
		case MAP_LIST:
			g->count = (uint32_t)g->n_items;
			break;
		case MAP_INPUT:
			g->count = g->in[g->map_input].kind == IN_BLOBS ? g->in[g->map_input].n_blobs
									 : g->in[g->map_input].shards;
			break;
		case MAP_TASK:
			g->count = p->g[g->map_task].count;
			break;
		}
		g->first = (uint32_t)total;
		total += g->count;
	}
	if (total > JOBSPEC_MAX_TASKS)
		return fail(p, SS_ELIMIT, "tasks: the job expands to %zu task instances, over the limit of %d",
			    total, JOBSPEC_MAX_TASKS);
	for (size_t k = 0; k < p->ng; k++) {
		uint32_t gi = p->order[k];
		struct group *g = &p->g[gi];
		g->inst_inputs = inputs_of(p, g);
		if (g->inst_inputs > JOBSPEC_MAX_INPUTS)
			return fail(p, SS_ELIMIT, "tasks[%u].inputs: each instance would have %zu inputs, over the limit of %d",
				    gi, g->inst_inputs, JOBSPEC_MAX_INPUTS);
		/* Groups before this one in the order are exactly those with lower instance indices. */
		for (size_t j = 0; j < k; j++) {
			uint32_t h = p->order[j];
			uint8_t m = p->dep[(size_t)gi * p->ng + h];
			if (!m)
				continue;
			if (!g->deps)
				g->deps = xcalloc(k, sizeof *g->deps);
			g->deps[g->n_deps++] = h;
			g->inst_deps += m == DEP_ALL ? p->g[h].count : 1;
		}
		if (g->inst_deps > JOBSPEC_MAX_DEPS)
			return fail(p, SS_ELIMIT,
				    "tasks[%u]: each instance would wait for %zu task instances, over the limit of %d",
				    gi, g->inst_deps, JOBSPEC_MAX_DEPS);
		inputs += (uint64_t)g->count * g->inst_inputs;
		deps += (uint64_t)g->count * g->inst_deps;
		if (inputs > MAX_JOB_INPUTS)
			return fail(p, SS_ELIMIT, "tasks[%u]: the job would have over %u inputs in all", gi,
				    MAX_JOB_INPUTS);
		if (deps > MAX_JOB_DEPS)
			return fail(p, SS_ELIMIT, "tasks[%u]: the job would have over %u dependencies in all", gi,
				    MAX_JOB_DEPS);
	}
	*n_tasks = total;
	return 0;
}

/* ---- pass 6: expansion -------------------------------------------------------------- */

/*
 * Copies s with every "{AS}" replaced by item and every "{index}" by index.
 * Returns NULL when the result would be longer than max bytes.
 */
static char *subst(const char *s, const char *as, const char *item, const char *index, size_t max)
{
	struct buf b;
	size_t aslen = strlen(as);
	buf_init(&b);
	for (;;) {
		const char *br = strchr(s, '{');
		size_t plain = br ? (size_t)(br - s) : strlen(s);
		buf_append(&b, s, plain);
		if (!br)
			break;
		if (!strncmp(br + 1, "index}", 6)) {
			buf_append(&b, index, strlen(index));
			s = br + 7;
		} else if (!strncmp(br + 1, as, aslen) && br[1 + aslen] == '}') {
			buf_append(&b, item, strlen(item));
			s = br + 2 + aslen;
		} else {
			buf_append(&b, "{", 1);
			s = br + 1;
		}
		if (b.len > max)
			break;
	}
	if (b.len > max) {
		buf_free(&b);
		return NULL;
	}
	buf_append(&b, "", 1);
	return (char *)b.data;
}

static void set_input(struct jobspec_input *in, char *name, enum jobspec_input_kind kind)
{
	in->name = name;
	in->kind = kind;
}

static char *indexed(const char *name, uint32_t i, uint32_t count)
{
	return xasprintf("%s.%0*u", name, (int)digits(count), i);
}

static void build_inputs(struct parser *p, struct jobspec *js, const struct group *g, uint32_t i,
			 struct jobspec_task *t)
{
	size_t m = 0;
	for (size_t k = 0; k < g->n_in; k++) {
		const struct gin *gin = &g->in[k];
		bool on_map = g->map == MAP_INPUT && g->map_input == k;
		switch (gin->kind) {
		case IN_BLOB:
			set_input(&t->inputs[m], xstrdup(gin->name), JOBSPEC_IN_BLOB);
			memcpy(t->inputs[m].digest, gin->blob.digest, SHA256_LEN);
			t->inputs[m++].size = gin->blob.size;
			break;
		case IN_BLOBS:
			if (on_map) {
				set_input(&t->inputs[m], xstrdup(gin->name), JOBSPEC_IN_BLOB);
				memcpy(t->inputs[m].digest, gin->blobs[i].digest, SHA256_LEN);
				t->inputs[m++].size = gin->blobs[i].size;
				break;
			}
			for (uint32_t b = 0; b < gin->n_blobs; b++) {
				set_input(&t->inputs[m], indexed(gin->name, b, gin->n_blobs), JOBSPEC_IN_BLOB);
				memcpy(t->inputs[m].digest, gin->blobs[b].digest, SHA256_LEN);
				t->inputs[m++].size = gin->blobs[b].size;
			}
			break;
		case IN_FILE:
			if (on_map || !gin->shards) {
				set_input(&t->inputs[m], xstrdup(gin->name), JOBSPEC_IN_FILE);
				t->inputs[m++].path = xstrdup(gin->file);
				break;
			}
			for (uint32_t s = 0; s < gin->shards; s++) {
				set_input(&t->inputs[m], indexed(gin->name, s, gin->shards), JOBSPEC_IN_FILE);
				t->inputs[m++].path = xstrdup(gin->file);
			}
			break;
		case IN_FROM: {
			const struct group *pg = &p->g[gin->from];
			for (uint32_t q = 0; q < pg->count; q++) {
				const struct jobspec_task *prod = &js->tasks[pg->first + q];
				set_input(&t->inputs[m], pg->map == MAP_NONE ? xstrdup(gin->name)
									     : indexed(gin->name, q, pg->count),
					  JOBSPEC_IN_OUTPUT);
				t->inputs[m].task = pg->first + q;
				t->inputs[m++].output = prod->outputs[gin->out_idx];
			}
			break;
		}
		}
	}
	if (g->map == MAP_TASK) {
		const struct group *pg = &p->g[g->map_task];
		const struct jobspec_task *prod = &js->tasks[pg->first + i];
		for (size_t o = 0; o < prod->n_outputs; o++) {
			const char *slash = strrchr(prod->outputs[o], '/');
			set_input(&t->inputs[m], xstrdup(slash ? slash + 1 : prod->outputs[o]), JOBSPEC_IN_OUTPUT);
			t->inputs[m].task = pg->first + i;
			t->inputs[m++].output = prod->outputs[o];
		}
	}
	if (m != t->n_inputs)
		fatal("jobspec: built %zu inputs, sized %zu", m, t->n_inputs);
}

static int cmp_input_name(const void *a, const void *b)
{
	return strcmp((*(const struct jobspec_input *const *)a)->name,
		      (*(const struct jobspec_input *const *)b)->name);
}

/* Every instance of a group has the same input names: checks those of one. */
static int check_input_names(struct parser *p, uint32_t gi, const struct jobspec_task *t)
{
	const struct jobspec_input **v;
	int rc = 0;
	if (t->n_inputs == 0)
		return 0;
	for (size_t k = 0; k < t->n_inputs; k++)
		if (!exec_name_valid(t->inputs[k].name))
			return fail(p, SS_ELIMIT, "tasks[%u].inputs: the input name \"%s\" is longer than %d bytes",
				    gi, show(t->inputs[k].name).s, EXEC_NAME_MAX);
	v = xmalloc(t->n_inputs * sizeof *v);
	for (size_t k = 0; k < t->n_inputs; k++)
		v[k] = &t->inputs[k];
	qsort(v, t->n_inputs, sizeof *v, cmp_input_name);
	for (size_t k = 1; k < t->n_inputs; k++) {
		if (!strcmp(v[k]->name, v[k - 1]->name)) {
			rc = fail(p, SS_EINVAL, "tasks[%u].inputs: two inputs are named \"%s\"%s", gi,
				  show(v[k]->name).s,
				  p->g[gi].map == MAP_TASK
					  ? " (a map over a task adds one input per output of that task, named after the output's file name)"
					  : "");
			goto out;
		}
	}
out:
	free(v);
	return rc;
}

static int build_instance(struct parser *p, struct jobspec *js, uint32_t gi, uint32_t i)
{
	const struct group *g = &p->g[gi];
	struct jobspec_task *t = &js->tasks[g->first + i];
	bool mapped = g->map != MAP_NONE;
	char index[16], hex[2 * SHA256_LEN + 1];
	const char *item = "";
	size_t text = 0;
	t->group = gi;
	t->map_index = mapped ? (int32_t)i : -1;
	t->name = mapped ? xasprintf("%s[%u]", g->name, i) : xstrdup(g->name);
	snprintf(index, sizeof index, "%u", i);
	if (g->map == MAP_LIST) {
		item = g->items[i];
	} else if (g->map == MAP_INPUT) {
		const struct gin *in = &g->in[g->map_input];
		if (in->kind == IN_BLOBS) {
			hex_encode(in->blobs[i].digest, SHA256_LEN, hex);
			item = hex;
		} else {
			item = index;
		}
	} else if (g->map == MAP_TASK) {
		item = index;
	}

	t->argc = g->argc;
	t->argv = xcalloc(g->argc + 1, sizeof *t->argv);
	for (size_t k = 0; k < g->argc; k++) {
		t->argv[k] = mapped ? subst(g->argv[k], g->as, item, index, EXEC_MAX_ARG_LEN) : xstrdup(g->argv[k]);
		if (!t->argv[k])
			return fail(p, SS_ELIMIT,
				    "tasks[%u].command[%zu]: over %d bytes once {%s} and {index} are substituted for instance %u",
				    gi, k, EXEC_MAX_ARG_LEN, g->as, i);
		text += strlen(t->argv[k]);
	}
	t->envc = g->envc + (mapped ? 2 : 0);
	t->env = xcalloc(t->envc + 1, sizeof *t->env);
	for (size_t k = 0; k < g->envc; k++) {
		size_t kl = strlen(g->env[k].key) + 1;
		char *val = mapped ? subst(g->env[k].value, g->as, item, index, EXEC_MAX_ARG_LEN - kl)
				   : xstrdup(g->env[k].value);
		if (!val)
			return fail(p, SS_ELIMIT,
				    "tasks[%u].env.%s: over %d bytes once {%s} and {index} are substituted for instance %u",
				    gi, g->env[k].key, EXEC_MAX_ARG_LEN, g->as, i);
		t->env[k] = xasprintf("%s=%s", g->env[k].key, val);
		free(val);
		text += strlen(t->env[k]);
	}
	if (mapped) {
		t->env[g->envc] = xasprintf("SS_MAP_INDEX=%s", index);
		t->env[g->envc + 1] = xasprintf("SS_MAP_ITEM=%s", item);
		text += strlen(t->env[g->envc]) + strlen(t->env[g->envc + 1]);
	}
	p->text += text;
	if (p->text > MAX_JOB_TEXT)
		return fail(p, SS_ELIMIT, "tasks[%u]: the expanded job's commands and environment exceed %u MiB",
			    gi, MAX_JOB_TEXT >> 20);

	if (g->inst_inputs) {
		t->inputs = xcalloc(g->inst_inputs, sizeof *t->inputs);
		t->n_inputs = g->inst_inputs;
		build_inputs(p, js, g, i, t);
	}
	if (g->n_out) {
		t->outputs = xcalloc(g->n_out + 1, sizeof *t->outputs);
		t->n_outputs = g->n_out;
		for (size_t k = 0; k < g->n_out; k++)
			t->outputs[k] = xstrdup(g->out[k]);
	}
	t->res = g->res;
	t->retries = g->retries;
	t->backoff_ms = g->backoff_ms;
	t->priority = g->priority;
	t->has_bundle = g->has_bundle;
	memcpy(t->bundle_blob, g->bundle_blob, SHA256_LEN);
	memcpy(t->bundle_digest, g->bundle_digest, SHA256_LEN);
	if (g->inst_deps) {
		size_t m = 0;
		t->deps = xcalloc(g->inst_deps, sizeof *t->deps);
		t->n_deps = g->inst_deps;
		/* g->deps is in instance order and groups' instance ranges do not overlap,
		 * so appending range after range leaves deps sorted and unique. */
		for (size_t k = 0; k < g->n_deps; k++) {
			const struct group *h = &p->g[g->deps[k]];
			if (p->dep[(size_t)gi * p->ng + g->deps[k]] == DEP_ALL) {
				for (uint32_t q = 0; q < h->count; q++)
					t->deps[m++] = h->first + q;
			} else {
				t->deps[m++] = h->first + i;
			}
		}
	}
	t->final = true;
	return 0;
}

static int expand(struct parser *p, struct jobspec *js, size_t n_tasks)
{
	int rc;
	js->groups = xcalloc(p->ng, sizeof *js->groups);
	js->n_groups = p->ng;
	for (size_t gi = 0; gi < p->ng; gi++) {
		js->groups[gi].name = xstrdup(p->g[gi].name);
		js->groups[gi].first = p->g[gi].first;
		js->groups[gi].count = p->g[gi].count;
	}
	js->tasks = xcalloc(n_tasks, sizeof *js->tasks);
	js->n_tasks = n_tasks;
	for (size_t k = 0; k < p->ng; k++) {
		uint32_t gi = p->order[k];
		for (uint32_t i = 0; i < p->g[gi].count; i++) {
			if ((rc = build_instance(p, js, gi, i)))
				return rc;
			if (i == 0 && (rc = check_input_names(p, gi, &js->tasks[p->g[gi].first])))
				return rc;
		}
	}
	for (size_t i = 0; i < n_tasks; i++)
		for (size_t k = 0; k < js->tasks[i].n_deps; k++)
			js->tasks[js->tasks[i].deps[k]].final = false;
	for (size_t i = 0; i < n_tasks; i++) {
		const struct group *g = &p->g[js->tasks[i].group];
		js->tasks[i].replicate = g->replicate < 0 ? js->tasks[i].final : g->replicate > 0;
	}
	return 0;
}

/* ---- the spec ---------------------------------------------------------------------- */

static int parse_periodic(struct parser *p, json_t *o, struct jobspec_periodic *per)
{
	static const char *const fields[] = {"cron", "every", "prohibit_overlap", "time_zone", NULL};
	json_t *v;
	const char *s;
	int rc;
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "periodic: expected an object such as {\"cron\": \"0 3 * * *\"}");
	if ((rc = check_fields(p, o, "periodic", fields)))
		return rc;
	json_t *cron = json_object_get(o, "cron"), *every = json_object_get(o, "every");
	if (!cron == !every)
		return fail(p, SS_EINVAL, "periodic: give either \"cron\" (a schedule in UTC) or \"every\" (an interval), %s",
			    cron ? "not both" : "one of them is required");
	if (cron) {
		char why[256];
		if ((rc = get_str(p, cron, "periodic.cron", &s)))
			return rc;
		if ((rc = cron_parse(s, &per->cron, why, sizeof why)))
			return fail(p, rc, "periodic.cron: %s", why);
		snprintf(per->cron_text, sizeof per->cron_text, "%s", s);
	} else if ((rc = get_duration(p, every, "periodic.every", JOBSPEC_MIN_EVERY_MS, JOBSPEC_MAX_EVERY_MS,
				      &per->every_ms))) {
		return rc;
	}
	if ((v = json_object_get(o, "prohibit_overlap"))) {
		if (!json_is_boolean(v))
			return fail(p, SS_EPARSE, "periodic.prohibit_overlap: expected true or false");
		per->prohibit_overlap = json_is_true(v);
	}
	if ((v = json_object_get(o, "time_zone"))) {
		if ((rc = get_str(p, v, "periodic.time_zone", &s)))
			return rc;
		if (strcmp(s, "UTC") != 0 && strcmp(s, "Etc/UTC") != 0)
			return fail(p, SS_EINVAL,
				    "periodic.time_zone: \"%s\": schedules are in UTC only; write the cron "
				    "expression in UTC (or leave time_zone out)",
				    show(s).s);
	}
	per->set = true;
	return 0;
}

/* Reads one "meta_required" or "meta_optional" list of keys into *out (owned copies). */
static int parse_meta_keys(struct parser *p, json_t *v, const char *path, char ***out, size_t *n)
{
	if (!json_is_array(v))
		return fail(p, SS_EPARSE, "%s: expected an array of key names", path);
	if (json_array_size(v) > JOBSPEC_MAX_META)
		return fail(p, SS_ELIMIT, "%s: more than %d keys", path, JOBSPEC_MAX_META);
	*out = xcalloc(json_array_size(v) + 1, sizeof **out);
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) {
		const char *k;
		char at[PATH_LEN];
		snprintf(at, sizeof at, "%s[%zu]", path, i);
		int rc = get_str(p, e, at, &k);
		if (rc)
			return rc;
		if (!env_key_valid(k) || strlen(k) > JOBSPEC_NAME_MAX)
			return fail(p, SS_EINVAL,
				    "%s: \"%s\" is not a key name (1 to %d of A-Z a-z 0-9 _, not starting with a "
				    "digit: it becomes the variable SS_META_<key>)",
				    at, show(k).s, JOBSPEC_NAME_MAX);
		(*out)[(*n)++] = xstrdup(k);
	}
	return 0;
}

static int parse_param(struct parser *p, json_t *o, struct jobspec_param *par)
{
	static const char *const fields[] = {"meta_required", "meta_optional", "payload", NULL};
	static const char *const payloads[] = {"optional", "required", "forbidden"};
	json_t *v;
	int rc;
	if (!json_is_object(o))
		return fail(p, SS_EPARSE, "parameterized: expected an object such as {\"meta_required\": [\"day\"]}");
	if ((rc = check_fields(p, o, "parameterized", fields)))
		return rc;
	if ((v = json_object_get(o, "meta_required")) &&
	    (rc = parse_meta_keys(p, v, "parameterized.meta_required", &par->meta_required, &par->n_required)))
		return rc;
	if ((v = json_object_get(o, "meta_optional")) &&
	    (rc = parse_meta_keys(p, v, "parameterized.meta_optional", &par->meta_optional, &par->n_optional)))
		return rc;
	if (par->n_required + par->n_optional > JOBSPEC_MAX_META)
		return fail(p, SS_ELIMIT, "parameterized: more than %d keys in all", JOBSPEC_MAX_META);
	for (size_t i = 0; i < par->n_required + par->n_optional; i++)
		for (size_t k = i + 1; k < par->n_required + par->n_optional; k++) {
			const char *a = i < par->n_required ? par->meta_required[i]
							    : par->meta_optional[i - par->n_required];
			const char *b = k < par->n_required ? par->meta_required[k]
							    : par->meta_optional[k - par->n_required];
			if (!strcmp(a, b))
				return fail(p, SS_EINVAL, "parameterized: the key \"%s\" is named twice", a);
		}
	unsigned e = 0;
	if ((v = json_object_get(o, "payload")) &&
	    (rc = get_enum(p, v, "parameterized.payload", payloads, ARRAY_LEN(payloads), &e)))
		return rc;
	par->payload = (enum jobspec_payload)e;
	par->set = true;
	return 0;
}

/* A dispatch's payload is the input "payload" of every task: no task may have its own. */
static int check_payload_name(struct parser *p, json_t *tasks)
{
	size_t i, k;
	json_t *t, *in;
	json_array_foreach(tasks, i, t) {
		json_array_foreach(json_object_get(t, "inputs"), k, in) {
			const char *name = json_string_value(json_object_get(in, "name"));
			if (name && !strcmp(name, "payload"))
				return fail(p, SS_EINVAL,
					    "tasks[%zu].inputs[%zu]: the name \"payload\" is the dispatch payload's in a "
					    "parameterized job; rename this input (or set \"payload\": \"forbidden\")",
					    i, k);
		}
	}
	return 0;
}

static int parse_root(struct parser *p, json_t *root, struct jobspec *js)
{
	static const char *const fields[] = {"name",     "tenant",        "on_failure", "timeout", "max_cost",
					     "policy",   "periodic",      "parameterized", "tasks", NULL};
	static const char *const failure_names[] = {"fail_fast", "continue"};
	json_t *v, *tasks;
	const char *s;
	size_t n_tasks = 0;
	unsigned e = 0;
	int rc;
	if (!json_is_object(root))
		return fail(p, SS_EPARSE, "spec: expected a JSON object");
	if ((rc = check_fields(p, root, "", fields)))
		return rc;
	if (!(v = json_object_get(root, "name")))
		return fail(p, SS_EPARSE, "name: required (the job's name)");
	if ((rc = get_str(p, v, "name", &s)) || (rc = check_name(p, s, "name", false)))
		return rc;
	js->name = xstrdup(s);
	s = "default";
	if ((v = json_object_get(root, "tenant")) &&
	    ((rc = get_str(p, v, "tenant", &s)) || (rc = check_name(p, s, "tenant", false))))
		return rc;
	js->tenant = xstrdup(s);
	js->tenant_given = v != NULL;
	js->fail_fast = true;
	if ((v = json_object_get(root, "on_failure"))) {
		if ((rc = get_enum(p, v, "on_failure", failure_names, ARRAY_LEN(failure_names), &e)))
			return rc;
		js->fail_fast = e == 0;
	}
	if ((v = json_object_get(root, "timeout")) &&
	    (rc = get_duration(p, v, "timeout", 1000, JOBSPEC_MAX_JOB_TIMEOUT_MS, &js->timeout_ms)))
		return rc;
	if ((v = json_object_get(root, "max_cost"))) {
		if (!json_is_number(v))
			return fail(p, SS_EPARSE, "max_cost: expected a number (in the unit of the nodes' prices)");
		js->max_cost = json_number_value(v);
		if (!(js->max_cost > 0))
			return fail(p, SS_EINVAL, "max_cost: must be more than 0");
		if (js->max_cost > JOBSPEC_MAX_COST)
			return fail(p, SS_ELIMIT, "max_cost: over the maximum of %g", JOBSPEC_MAX_COST);
	}
	if ((v = json_object_get(root, "policy")) && (rc = parse_policy(p, v, &js->policy)))
		return rc;
	if ((v = json_object_get(root, "periodic")) && (rc = parse_periodic(p, v, &js->periodic)))
		return rc;
	if ((v = json_object_get(root, "parameterized")) && (rc = parse_param(p, v, &js->param)))
		return rc;
	if (js->periodic.set && js->param.set)
		return fail(p, SS_EINVAL,
			    "parameterized: a job is periodic or parameterized, not both (a periodic job could not "
			    "give the metadata a dispatch gives)");
	tasks = json_object_get(root, "tasks");
	if ((rc = index_groups(p, tasks)))
		return rc;
	for (uint32_t gi = 0; gi < p->ng; gi++)
		if ((rc = parse_group(p, gi, json_array_get(tasks, gi))))
			return rc;
	if (js->param.set && js->param.payload != JOBSPEC_PAYLOAD_FORBIDDEN &&
	    (rc = check_payload_name(p, tasks)))
		return rc;
	if ((rc = resolve_from(p)) || (rc = order_groups(p)) || (rc = size_groups(p, &n_tasks)))
		return rc;
	return expand(p, js, n_tasks);
}

static void parser_free(struct parser *p)
{
	for (size_t i = 0; p->g && i < p->ng; i++) {
		struct group *g = &p->g[i];
		free(g->argv);
		free(g->env);
		for (size_t k = 0; k < g->n_in; k++)
			free(g->in[k].blobs);
		free(g->in);
		free(g->out);
		for (size_t k = 0; k < g->n_items; k++)
			free(g->items[k]);
		free(g->items);
		free(g->deps);
	}
	free(p->g);
	free(p->names);
	free(p->dep);
	free(p->order);
}

int jobspec_parse(const char *json, size_t len, unsigned flags, struct jobspec **out, char *why,
		  size_t whylen)
{
	struct parser p = {.flags = flags, .why = why, .whylen = whylen};
	struct jobspec *js = NULL;
	json_t *root = NULL;
	json_error_t err;
	int rc;
	*out = NULL;
	if (whylen)
		why[0] = '\0';
	if (len > JOBSPEC_MAX_JSON) {
		rc = fail(&p, SS_ELIMIT, "spec: %zu bytes, over the limit of %u", len, JOBSPEC_MAX_JSON);
		goto out;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		/* jansson quotes the text near the error: keep the quotes, mask the rest. */
		for (char *c = err.text; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
				*c = '?';
		rc = fail(&p, SS_EPARSE, "spec: not valid JSON (line %d, column %d: %s)", err.line, err.column,
			  err.text);
		goto out;
	}
	js = xcalloc(1, sizeof *js);
	rc = parse_root(&p, root, js);
out:
	if (rc)
		jobspec_free(js);
	else
		*out = js;
	parser_free(&p);
	json_decref(root);
	return rc;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void jobspec_free(struct jobspec *js)
{
	if (!js)
		return;
	free(js->name);
	free(js->tenant);
	strv_free(js->policy.tee, js->policy.n_tee);
	free(js->policy.code);
	for (size_t i = 0; i < js->policy.n_labels; i++) {
		free(js->policy.labels[i].key);
		free(js->policy.labels[i].value);
	}
	free(js->policy.labels);
	strv_free(js->policy.features, js->policy.n_features);
	strv_free(js->param.meta_required, js->param.n_required);
	strv_free(js->param.meta_optional, js->param.n_optional);
	for (size_t i = 0; js->groups && i < js->n_groups; i++)
		free(js->groups[i].name);
	free(js->groups);
	for (size_t i = 0; js->tasks && i < js->n_tasks; i++) {
		struct jobspec_task *t = &js->tasks[i];
		free(t->name);
		strv_free(t->argv, t->argc);
		strv_free(t->env, t->envc);
		/* An OUTPUT input's output string belongs to its producer's outputs. */
		for (size_t k = 0; t->inputs && k < t->n_inputs; k++) {
			free(t->inputs[k].name);
			free(t->inputs[k].path);
		}
		free(t->inputs);
		strv_free(t->outputs, t->n_outputs);
		free(t->deps);
	}
	free(js->tasks);
	free(js);
}

/* ---- queries ------------------------------------------------------------------------ */

int jobspec_check_fits(const struct jobspec *js, const struct jobspec_limits *lim, char *why,
		       size_t whylen)
{
	char a[32], b[32];
	for (size_t gi = 0; gi < js->n_groups; gi++) {
		/* Every instance of a group asks for the same resources. */
		const struct jobspec_task *t = &js->tasks[js->groups[gi].first];
		const struct jobspec_resources *r = &t->res;
		if (lim->cpu_millicores && r->cpu_millicores > lim->cpu_millicores) {
			snprintf(why, whylen, "tasks[%zu] (%s).resources.cpu: %um exceeds the largest node (%um)",
				 gi, t->name, r->cpu_millicores, lim->cpu_millicores);
			return SS_EINVAL;
		}
		if (lim->memory_bytes && r->memory_bytes > lim->memory_bytes) {
			format_size(r->memory_bytes, a);
			format_size(lim->memory_bytes, b);
			snprintf(why, whylen, "tasks[%zu] (%s).resources.memory: %s exceeds the largest node (%s)",
				 gi, t->name, a, b);
			return SS_EINVAL;
		}
		if (lim->disk_bytes && r->disk_bytes > lim->disk_bytes) {
			format_size(r->disk_bytes, a);
			format_size(lim->disk_bytes, b);
			snprintf(why, whylen, "tasks[%zu] (%s).resources.disk: %s exceeds the largest node (%s)",
				 gi, t->name, a, b);
			return SS_EINVAL;
		}
	}
	return 0;
}

int32_t jobspec_find(const struct jobspec *js, const char *name)
{
	const char *br = strchr(name, '[');
	size_t blen = br ? (size_t)(br - name) : strlen(name);
	uint32_t idx = 0;
	if (br) {
		const char *d = br + 1;
		size_t nd = 0;
		for (; is_digit(*d); d++) {
			if (++nd > 9)
				return -1;
			idx = idx * 10 + (uint32_t)(*d - '0');
		}
		/* Only the canonical form: digits without leading zeros, then "]" at the end. */
		if (nd == 0 || (nd > 1 && br[1] == '0') || d[0] != ']' || d[1] != '\0')
			return -1;
	}
	for (size_t gi = 0; gi < js->n_groups; gi++) {
		const struct jobspec_group *g = &js->groups[gi];
		if (strncmp(g->name, name, blen) != 0 || g->name[blen] != '\0')
			continue;
		bool mapped = js->tasks[g->first].map_index >= 0;
		if (!br)
			return mapped ? -1 : (int32_t)g->first;
		return mapped && idx < g->count ? (int32_t)(g->first + idx) : -1;
	}
	return -1;
}

const char *jobspec_optimize_name(enum jobspec_optimize o)
{
	switch (o) {
	case JOBSPEC_OPT_BALANCED:
		return "balanced";
	case JOBSPEC_OPT_COST:
		return "cost";
	case JOBSPEC_OPT_LATENCY:
		return "latency";
	}
	return "unknown";
}

/* ---- dispatches of a parameterized job ------------------------------------------------ */

static bool meta_named(const struct jobspec_param *par, const char *k, bool *required)
{
	for (size_t i = 0; i < par->n_required; i++)
		if (!strcmp(par->meta_required[i], k))
			return *required = true;
	*required = false;
	for (size_t i = 0; i < par->n_optional; i++)
		if (!strcmp(par->meta_optional[i], k))
			return true;
	return false;
}

int jobspec_dispatch_parse(const struct jobspec *js, const char *body, size_t len, json_t **meta,
			   bool *has_payload, uint8_t payload[SHA256_LEN], char *why, size_t whylen)
{
	static const char *const fields[] = {"meta", "payload", NULL};
	struct parser p = {.why = why, .whylen = whylen};
	const struct jobspec_param *par = &js->param;
	json_t *root = NULL, *m, *v;
	const char *k;
	int rc = 0;
	*meta = json_object();
	*has_payload = false;
	if (len > JOBSPEC_MAX_DISPATCH) {
		rc = fail(&p, SS_ELIMIT, "dispatch: over the limit of %u bytes", JOBSPEC_MAX_DISPATCH);
		goto out;
	}
	if (len > 0) {
		json_error_t err;
		root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
		if (!root) {
			rc = fail(&p, SS_EPARSE, "dispatch: not JSON (line %d: %s)", err.line, err.text);
			goto out;
		}
		if (!json_is_object(root)) {
			rc = fail(&p, SS_EPARSE, "dispatch: expected an object such as {\"meta\": {\"day\": \"monday\"}}");
			goto out;
		}
		if ((rc = check_fields(&p, root, "", fields)))
			goto out;
	}
	if ((m = json_object_get(root, "meta")) && !json_is_object(m)) {
		rc = fail(&p, SS_EPARSE, "meta: expected an object of strings");
		goto out;
	}
	json_object_foreach(m, k, v) {
		bool required;
		if (!meta_named(par, k, &required)) {
			rc = fail(&p, SS_EINVAL, "meta.%s: the job takes no such key (%zu required, %zu optional: job status "
				  "shows them)", show(k).s, par->n_required, par->n_optional);
			goto out;
		}
		char at[PATH_LEN];
		const char *s;
		snprintf(at, sizeof at, "meta.%s", k);
		if ((rc = get_str(&p, v, at, &s)))
			goto out;
		if (strlen(s) > JOBSPEC_META_VALUE_MAX) {
			rc = fail(&p, SS_ELIMIT, "%s: longer than %d bytes", at, JOBSPEC_META_VALUE_MAX);
			goto out;
		}
		json_object_set(*meta, k, v);
	}
	for (size_t i = 0; i < par->n_required; i++)
		if (!json_object_get(*meta, par->meta_required[i])) {
			rc = fail(&p, SS_EINVAL, "meta.%s: required by the job, and missing", par->meta_required[i]);
			goto out;
		}
	if ((v = json_object_get(root, "payload"))) {
		if ((rc = get_digest(&p, v, "payload", payload)))
			goto out;
		*has_payload = true;
	}
	if (*has_payload && par->payload == JOBSPEC_PAYLOAD_FORBIDDEN)
		rc = fail(&p, SS_EINVAL, "payload: the job takes none (\"payload\": \"forbidden\")");
	else if (!*has_payload && par->payload == JOBSPEC_PAYLOAD_REQUIRED)
		rc = fail(&p, SS_EINVAL, "payload: required by the job, and missing (the digest of an uploaded blob)");
out:
	json_decref(root);
	if (rc) {
		json_decref(*meta);
		*meta = NULL;
	}
	return rc;
}
