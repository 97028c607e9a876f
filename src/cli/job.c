/*
 * job.c - `seeswarm job run|plan|wait|list|status|explain|logs|results|cancel|rerun|launch|dispatch`.
 *
 * `job run` uploads the spec's local "file" inputs as blobs (split at line
 * boundaries when "shards" is given), rewrites them to blob form, submits
 * the job and, with --wait, follows it to the end. Everything printed that
 * came from the API goes through cli_clean().
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>

#include "agent/exec/exec.h"
#include "cli/cli.h"
#include "client/config.h"
#include "core/core.h"
#include "manager/jobspec.h"

#define POLL_MS 200
#define WATCH_MS 30000u /* how long one request of job wait may wait for a change */
#define MAX_FILE_BYTES (1ull << 30) /* the manager's upload cap */

static const char usage_text[] =
	"usage: seeswarm job <command> [options]\n"
	"\n"
	"Commands:\n"
	"  run SPEC.json [--wait] [--out DIR] [--cat] [--timeout DUR] [--json]\n"
	"                          upload the spec's local files, submit the job; with\n"
	"                          --wait follow it to the end (exit 0 on success), --out\n"
	"                          fetch the results, --cat print small text results\n"
	"  plan SPEC.json [--json] what run would do now, without submitting: the same\n"
	"                          checks, where each task would start and what it\n"
	"                          costs (local files are hashed, not uploaded)\n"
	"  wait JOB [--out DIR] [--cat] [--timeout DUR] [--json]\n"
	"                          follow a job already submitted to its end, as run --wait\n"
	"  list [--state S] [--tenant T] [--limit N] [--all] [--json]\n"
	"                          jobs, newest first: the newest 100, or N, or --all of\n"
	"                          them (fetched N at a time); S is running, succeeded,\n"
	"                          failed, canceled, periodic or parameterized\n"
	"  status JOB [--attempts] [--json]\n"
	"                          a job and its tasks: state, attempt, node, reason;\n"
	"                          --attempts adds every ended attempt of each task: its\n"
	"                          node, outcome (failed, lost, refused, preempted...),\n"
	"                          how long it ran and why it ended\n"
	"  explain JOB [TASK] [--json]\n"
	"                          for each node, why it was filtered out or how it scored\n"
	"  logs TASK_ID [--json]   a task's attempts: status, stdout/stderr tails, receipt\n"
	"  logs TASK_ID --follow   print the task's output as it comes, to its end (-f)\n"
	"                          (or JOB TASK: the task by its name, e.g. j-3fa9... count[2])\n"
	"  results JOB --out DIR   fetch the final outputs and their signed receipts\n"
	"  cancel JOB              cancel a running job, or stop a periodic or\n"
	"                          parameterized one launching\n"
	"  rerun JOB [--wait] [--out DIR] [--cat] [--timeout DUR] [--json]\n"
	"                          submit a job's spec again as a new job (e.g. after a\n"
	"                          failure), and follow it as run does\n"
	"  launch JOB [--wait] [--out DIR] [--cat] [--timeout DUR] [--json]\n"
	"                          launch a periodic job now, off its schedule, and\n"
	"                          follow the launch as run does\n"
	"  dispatch JOB [--meta KEY=VALUE]... [--payload FILE] [--wait] [--out DIR] [--cat]\n"
	"           [--timeout DUR] [--json]\n"
	"                          run a parameterized job once with this metadata (its\n"
	"                          tasks see SS_META_KEY) and payload (/in/payload)\n"
	"\n"
	"Connection options: --addr HOST:PORT, --token TOKEN, --ca FILE (default:\n"
	"SEESWARM_ADDR, SEESWARM_TOKEN, SEESWARM_CA, then ~/.config/seeswarm/config.json).\n"
	"The spec format is in docs/jobs.md.\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

static void print_err(ss_client *c, int rc, const char *what)
{
	const char *d = c ? ss_client_last_error(c) : "";
	char *cd = cli_clean(d);
	fprintf(stderr, "error: %s: %s%s%s%s\n", what, ss_strerror(rc), *cd ? " (" : "", cd,
		*cd ? ")" : "");
	free(cd);
}

/*
 * Reports a failed convenience call: the API's error message when there is
 * one, otherwise the transport failure. Returns 1.
 */
static int report(ss_client *c, int rc, char *json, const char *what)
{
	json_t *o = json ? json_loads(json, 0, NULL) : NULL;
	json_t *e = json_object_get(o, "error");
	const char *msg = json_is_string(e) ? json_string_value(e)
					    : json_string_value(json_object_get(e, "message"));
	if (msg) {
		char *m = cli_clean(msg);
		fprintf(stderr, "error: %s: %s\n", what, m);
		free(m);
	} else {
		print_err(c, rc, what);
	}
	json_decref(o);
	ss_free(json);
	return 1;
}

/* Calls fn and parses its answer; returns the object or NULL after reporting. */
static json_t *fetch_json(ss_client *c, int rc, char *json, const char *what)
{
	if (rc) {
		report(c, rc, json, what);
		return NULL;
	}
	json_error_t jerr;
	json_t *o = json_loads(json, 0, &jerr);
	ss_free(json);
	if (!o)
		fprintf(stderr, "error: %s: the manager sent bad JSON (%s)\n", what, jerr.text);
	return o;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2));
	if (s)
		puts(s);
	free(s);
}

/* ---- run: local files become blobs ---------------------------------------- */

/* Splits len bytes into n shards at line boundaries; offs gets n+1 offsets. */
static void shard_offsets(const char *data, size_t len, size_t n, size_t *offs)
{
	offs[0] = 0;
	for (size_t i = 1; i < n; i++) {
		size_t at = len * i / n;
		if (at < offs[i - 1])
			at = offs[i - 1];
		while (at < len && at > 0 && data[at - 1] != '\n')
			at++;
		offs[i] = at;
	}
	offs[n] = len;
}

/*
 * Uploads data as a blob and sets hex to its digest; with dry (job plan: a
 * JSON array) it only computes the digest and appends it to dry. Returns 0
 * or an SS_E* code.
 */
static int blob_put_or_hash(ss_client *c, json_t *dry, const void *data, size_t len, char hex[65])
{
	if (!dry)
		return ss_blob_put(c, data, len, hex);
	uint8_t d[SHA256_LEN];
	sha256(data, len, d);
	hex_encode(d, SHA256_LEN, hex);
	json_array_append_new(dry, json_string(hex));
	return 0;
}

/*
 * Uploads one "file" input (with dry: hashes it, see blob_put_or_hash) and
 * rewrites it in place to blob form. Returns 0 or 1.
 */
static int upload_input(ss_client *c, json_t *dry, const char *base, json_t *in, const char *where)
{
	const char *file = json_string_value(json_object_get(in, "file"));
	json_t *jsh = json_object_get(in, "shards");
	char *path = file[0] == '/' ? xstrdup(file) : xasprintf("%s/%s", base, file);
	char *data = NULL;
	size_t len = 0;
	int ret = 1;
	int rc = file_read(path, MAX_FILE_BYTES, &data, &len);
	if (rc) {
		fprintf(stderr, "error: %s.file: %s: %s\n", where, path, ss_strerror(rc));
		goto out;
	}
	if (!jsh) {
		char hex[65];
		if ((rc = blob_put_or_hash(c, dry, data, len, hex)) != 0) {
			print_err(c, rc, path);
			goto out;
		}
		json_object_del(in, "file");
		json_object_set_new(in, "blob", json_string(hex));
		json_object_set_new(in, "size", json_integer((json_int_t)len));
		ret = 0;
		goto out;
	}
	json_int_t n = json_integer_value(jsh);
	if (!json_is_integer(jsh) || n < 1 || n > JOBSPEC_MAX_MAP) {
		fprintf(stderr, "error: %s.shards: expected an integer from 1 to %d\n", where,
			JOBSPEC_MAX_MAP);
		goto out;
	}
	size_t *offs = xcalloc((size_t)n + 1, sizeof *offs);
	shard_offsets(data, len, (size_t)n, offs);
	json_t *blobs = json_array();
	for (json_int_t i = 0; i < n; i++) {
		char hex[65];
		size_t sl = offs[i + 1] - offs[i];
		if ((rc = blob_put_or_hash(c, dry, data + offs[i], sl, hex)) != 0) {
			print_err(c, rc, path);
			json_decref(blobs);
			free(offs);
			goto out;
		}
		json_array_append_new(blobs, json_pack("{s:s,s:I}", "digest", hex, "size", (json_int_t)sl));
	}
	free(offs);
	json_object_del(in, "file");
	json_object_del(in, "shards");
	json_object_set_new(in, "blobs", blobs);
	ret = 0;
out:
	free(data);
	free(path);
	return ret;
}

/* Packs directory dir into a pax tar at tar: permissions, files, directories, symlinks as links. */
static int pack_dir(const char *dir, const char *tar, const char *where)
{
	struct archive *disk = archive_read_disk_new(), *w = archive_write_new();
	struct archive_entry *e = NULL;
	char *block = xmalloc(65536);
	size_t dlen = strlen(dir);
	int ret = 1, r;
	if (!disk || !w)
		fatal("libarchive: out of memory");
	archive_read_disk_set_symlink_physical(disk);
	if (archive_write_set_format_pax_restricted(w) != ARCHIVE_OK ||
	    archive_write_open_filename(w, tar) != ARCHIVE_OK ||
	    archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
		fprintf(stderr, "error: %s: cannot pack %s: %s\n", where, dir,
			archive_error_string(disk) ? archive_error_string(disk) : archive_error_string(w));
		goto out;
	}
	while ((r = archive_read_next_header2(disk, e = archive_entry_new())) == ARCHIVE_OK) {
		const char *src = archive_entry_sourcepath(e);
		const char *rel = src && !strncmp(src, dir, dlen) ? src + dlen : "";
		while (*rel == '/')
			rel++;
		archive_read_disk_descend(disk);
		archive_entry_set_pathname(e, *rel ? rel : ".");
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_uname(e, NULL);
		archive_entry_set_gname(e, NULL);
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			fprintf(stderr, "error: %s: %s: %s\n", where, src, archive_error_string(w));
			goto out;
		}
		if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
			int fd = src ? open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
			size_t got = 0;
			while (fd >= 0 && fd_read(fd, block, 65536, &got) == 0 && got > 0)
				if (archive_write_data(w, block, got) < 0)
					break;
			if (fd >= 0)
				close(fd);
		}
		archive_entry_free(e);
		e = NULL;
	}
	if (r != ARCHIVE_EOF) {
		fprintf(stderr, "error: %s: cannot read %s: %s\n", where, dir, archive_error_string(disk));
		goto out;
	}
	ret = archive_write_close(w) == ARCHIVE_OK ? 0 : 1;
out:
	archive_entry_free(e);
	archive_read_free(disk);
	archive_write_free(w);
	free(block);
	return ret;
}

/*
 * Packs (a directory) and uploads a task's "bundle": {"file": PATH} (with
 * dry: only hashes the tar), and rewrites it to {"blob", "digest"}. The code
 * digest is taken from the tar unpacked here exactly as an agent unpacks it.
 * Returns 0 or 1.
 */
static int upload_bundle(ss_client *c, json_t *dry, const char *base, json_t *bundle, const char *where)
{
	const char *file = json_string_value(json_object_get(bundle, "file"));
	char *path = file[0] == '/' ? xstrdup(file) : xasprintf("%s/%s", base, file);
	char tmp[64] = "/tmp/ss-cli-bundle-XXXXXX", why[300] = "", hex[65], code[65];
	char *tar = NULL, *tree = NULL;
	uint8_t d[SHA256_LEN];
	uint64_t size = 0;
	struct stat st;
	int ret = 1, rc;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "error: %s.file: %s: %s\n", where, path, strerror(errno));
		goto out;
	}
	if (!mkdtemp(tmp)) {
		tmp[0] = '\0';
		goto out;
	}
	tar = S_ISDIR(st.st_mode) ? xasprintf("%s/bundle.tar", tmp) : xstrdup(path);
	tree = xasprintf("%s/tree", tmp);
	if (S_ISDIR(st.st_mode) && pack_dir(path, tar, where))
		goto out;
	if ((rc = exec_bundle_unpack_tar(tar, tree, why, sizeof why)) != 0 ||
	    (rc = exec_bundle_digest(tree, d, NULL)) != 0) {
		fprintf(stderr, "error: %s.file: %s: %s\n", where, path, why[0] ? why : ss_strerror(rc));
		goto out;
	}
	if (dry) {
		char *data = NULL;
		size_t len = 0;
		if ((rc = file_read(tar, MAX_FILE_BYTES, &data, &len)) != 0) {
			fprintf(stderr, "error: %s.file: %s: %s\n", where, path, ss_strerror(rc));
			goto out;
		}
		blob_put_or_hash(c, dry, data, len, hex); /* only hashes: cannot fail */
		free(data);
	} else if ((rc = ss_blob_put_file(c, tar, hex, &size)) != 0) {
		print_err(c, rc, path);
		goto out;
	}
	hex_encode(d, SHA256_LEN, code);
	json_object_del(bundle, "file");
	json_object_set_new(bundle, "blob", json_string(hex));
	json_object_set_new(bundle, "digest", json_string(code));
	ret = 0;
out:
	if (tmp[0])
		dir_remove_tree(tmp);
	free(tar);
	free(tree);
	free(path);
	return ret;
}

/*
 * Rewrites every "file" input and bundle of the spec, uploading them (with
 * dry, only hashing them: see blob_put_or_hash); base is the spec file's
 * directory.
 */
static int upload_files(ss_client *c, json_t *dry, json_t *spec, const char *base, size_t *uploaded)
{
	size_t i, k;
	json_t *t, *in;
	json_array_foreach(json_object_get(spec, "tasks"), i, t)
	{
		json_t *b = json_object_get(t, "bundle");
		if (json_is_string(json_object_get(b, "file"))) {
			char where[64];
			snprintf(where, sizeof where, "tasks[%zu].bundle", i);
			if (upload_bundle(c, dry, base, b, where))
				return 1;
			(*uploaded)++;
		}
		json_array_foreach(json_object_get(t, "inputs"), k, in)
		{
			if (!json_is_string(json_object_get(in, "file")))
				continue;
			char where[64];
			snprintf(where, sizeof where, "tasks[%zu].inputs[%zu]", i, k);
			if (upload_input(c, dry, base, in, where))
				return 1;
			(*uploaded)++;
		}
	}
	return 0;
}

/* ---- run: following a job ------------------------------------------------- */

static void progress_line(json_t *job, bool tty, char *last, size_t lastlen)
{
	json_t *counts = json_object_get(job, "counts");
	long long total = num(job, "tasks_total");
	long long ok = num(counts, "succeeded"), failed = num(counts, "failed");
	long long running = num(counts, "running") + num(counts, "collecting") + num(counts, "placed");
	long long canceled = num(counts, "canceled"), retrying = num(counts, "retrying");
	long long pending = num(counts, "pending");
	char line[200];
	snprintf(line, sizeof line,
		 "%lld/%lld succeeded, %lld running, %lld pending, %lld retrying, %lld failed, %lld canceled",
		 ok, total, running, pending, retrying, failed, canceled);
	if (tty) {
		int width = 30;
		int filled = total > 0 ? (int)((ok + failed + canceled) * width / total) : width;
		char bar[64];
		for (int i = 0; i < width; i++)
			bar[i] = i < filled ? '#' : '.';
		bar[width] = '\0';
		fprintf(stderr, "\r[%s] %s\033[K", bar, line);
		fflush(stderr);
	} else if (strcmp(line, last) != 0) {
		fprintf(stderr, "%s\n", line);
	}
	snprintf(last, lastlen, "%s", line);
}

/*
 * For loops that poll the manager: after a failed call (rc), returns true when
 * the caller should give up, having printed why. A manager restart is
 * survivable, so connection failures are retried for a while (150 polls in a
 * row); an unknown job or task, or a refused token, is an answer, not an
 * outage. *failures counts the failures in a row (the caller zeroes it after
 * a success). With bar set, a progress bar is on stderr's line, and ends
 * before the message.
 */
static bool poll_gives_up(ss_client *c, int rc, unsigned *failures, const char *what, bool bar)
{
	if (rc == SS_ENOTFOUND || rc == SS_EAUTH || ++*failures > 150) {
		if (bar)
			fputc('\n', stderr);
		print_err(c, rc, what);
		return true;
	}
	return false;
}

/*
 * Follows the job until it finishes or timeout_ms passes (0 = no limit), and
 * returns the last job JSON. Each request waits in the manager until the job
 * changes (ss_job_watch), so progress shows as it happens without polling.
 */
static json_t *wait_job(ss_client *c, const char *id, uint64_t timeout_ms)
{
	bool tty = isatty(STDERR_FILENO);
	char last[200] = "";
	uint64_t start = time_mono_ms(), index = 0;
	unsigned failures = 0;
	for (;;) {
		char *js = NULL;
		uint64_t asked = time_mono_ms(), wait = WATCH_MS, elapsed = asked - start;
		if (timeout_ms && (elapsed >= timeout_ms ? 0 : timeout_ms - elapsed) < wait)
			wait = elapsed >= timeout_ms ? 0 : timeout_ms - elapsed;
		int rc = ss_job_watch(c, id, index, (unsigned)wait, &js);
		if (rc) {
			ss_free(js);
			if (poll_gives_up(c, rc, &failures, "following the job", tty))
				return NULL;
			cli_sleep_ms(POLL_MS);
			continue;
		}
		failures = 0;
		json_t *job = json_loads(js, 0, NULL);
		ss_free(js);
		if (!job)
			return NULL;
		progress_line(job, tty, last, sizeof last);
		if (strcmp(str(job, "state"), "running") != 0) {
			if (tty)
				fputc('\n', stderr);
			return job;
		}
		if (timeout_ms && time_mono_ms() - start > timeout_ms) {
			if (tty)
				fputc('\n', stderr);
			fprintf(stderr, "error: the job is still running after the --timeout\n");
			json_decref(job);
			return NULL;
		}
		uint64_t seen = (uint64_t)json_integer_value(json_object_get(job, "index"));
		json_decref(job);
		/* An answer without a change before its wait (a busy manager answers at once) is paced. */
		if (seen == index && time_mono_ms() - asked < wait)
			cli_sleep_ms(POLL_MS);
		index = seen;
	}
}

/* Prints what a job's attempts used and cost (its "usage"), when any attempt started. */
static void print_usage(json_t *job)
{
	json_t *u = json_object_get(job, "usage");
	long long n = num(u, "attempts");
	if (n <= 0 && !(json_number_value(json_object_get(u, "cost_running")) > 0))
		return;
	char run[32], cpu[32], cost[32];
	format_seconds(json_number_value(json_object_get(u, "run_seconds")), run);
	format_seconds(json_number_value(json_object_get(u, "cpu_seconds")), cpu);
	format_amount(json_number_value(json_object_get(u, "cost")), cost);
	printf("usage: %lld attempt%s, %s of task time, %s of CPU, cost %s", n, n == 1 ? "" : "s", run, cpu, cost);
	if (json_number_value(json_object_get(u, "cost_running")) > 0) {
		format_amount(json_number_value(json_object_get(u, "cost_running")), cost);
		printf(" (+%s running)", cost);
	}
	if (json_number_value(json_object_get(job, "max_cost")) > 0) {
		format_amount(json_number_value(json_object_get(job, "max_cost")), cost);
		printf(" (max_cost %s)", cost);
	}
	printf("\n");
}

/* Prints where each task ran (one line per task, up to 64, then a summary by node). */
static void print_placement(ss_client *c, const char *id)
{
	char *js = NULL;
	int crc = ss_job_tasks(c, id, &js);
	json_t *o = fetch_json(c, crc, js, "tasks");
	json_t *tasks = json_object_get(o, "tasks");
	size_t i, n = json_array_size(tasks);
	json_t *t;
	json_t *by_node = json_object();
	json_array_foreach(tasks, i, t)
	{
		const char *node = str(t, "node");
		json_int_t k = json_integer_value(json_object_get(by_node, node));
		json_object_set_new(by_node, node, json_integer(k + 1));
		if (n > 64)
			continue;
		char *nm = cli_clean(str(t, "name")), *nd = cli_clean(*node ? node : "-");
		char *st = cli_clean(str(t, "state"));
		printf("  %-20s %-10s attempt %-3lld on %s\n", nm, st, num(t, "attempt"), nd);
		free(nm);
		free(nd);
		free(st);
	}
	if (n > 64) {
		const char *k;
		json_t *v;
		json_object_foreach(by_node, k, v)
		{
			char *nd = cli_clean(*k ? k : "(none)");
			printf("  %lld tasks on %s\n", (long long)json_integer_value(v), nd);
			free(nd);
		}
	}
	json_decref(by_node);
	json_decref(o);
}

/* A result name from the API becomes a path below dir only if it is tame. */
static bool safe_rel(const char *s)
{
	if (!*s || s[0] == '/' || strlen(s) > 255)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
			return false;
	for (const char *p = s; p; p = strchr(p, '/')) {
		if (*p == '/')
			p++;
		if (!strncmp(p, "..", 2) && (p[2] == '/' || p[2] == '\0'))
			return false;
	}
	return true;
}

static int mkdir_for(const char *path)
{
	char *d = xstrdup(path);
	char *slash = strrchr(d, '/');
	int rc = 0;
	if (slash) {
		*slash = '\0';
		rc = dir_ensure(d, 0755);
	}
	free(d);
	return rc;
}

/* Writes the receipt of the committed attempt of task id to path. */
static int save_receipt(ss_client *c, const char *task_id, const char *path)
{
	char *js = NULL;
	int crc = ss_task_logs(c, task_id, &js);
	json_t *o = fetch_json(c, crc, js, "task logs");
	if (!o)
		return 1;
	long long attempt = num(o, "attempt");
	const char *rcpt = NULL;
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(o, "attempts"), i, a) if (num(a, "attempt") == attempt &&
								     json_is_true(json_object_get(a, "ok")))
		rcpt = str(a, "receipt");
	int ret = 0;
	if (rcpt && *rcpt && file_write_atomic(path, rcpt, strlen(rcpt), 0644) != 0) {
		fprintf(stderr, "error: cannot write %s\n", path);
		ret = 1;
	}
	json_decref(o);
	return ret;
}

/* Prints a small text result; longer or binary ones are summarised. */
static void cat_result(const char *tn, const char *name, const char *path)
{
	char *data = NULL;
	size_t len = 0;
	char *ctn = cli_clean(tn), *cn = cli_clean(name);
	if (file_read(path, 4096, &data, &len) == 0 && memchr(data, '\0', len) == NULL) {
		while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
			data[--len] = '\0';
		char *cd = cli_clean(data);
		printf("%s/%s: %s\n", ctn, cn, cd);
		free(cd);
	} else {
		printf("%s/%s: (binary or larger than 4 KiB; use --out DIR)\n", ctn, cn);
	}
	free(data);
	free(ctn);
	free(cn);
}

/*
 * Downloads the job's results into dir, with one receipt per final task
 * (DIR/TASK.receipt.json); cat prints small text results (fetched into a
 * private temporary directory when there is no dir). Returns 0 or 1.
 */
static int fetch_results(ss_client *c, json_t *job, const char *dir, bool cat)
{
	json_t *results = json_object_get(job, "results");
	char *tmpdir = NULL;
	const char *prev = "";
	size_t i;
	json_t *r;
	int ret = 0;
	if (dir && dir_ensure(dir, 0755) != 0) {
		fprintf(stderr, "error: cannot create %s\n", dir);
		return 1;
	}
	if (!dir) {
		tmpdir = xstrdup("/tmp/seeswarm-results-XXXXXX");
		if (!mkdtemp(tmpdir)) {
			fprintf(stderr, "error: cannot create a temporary directory\n");
			free(tmpdir);
			return 1;
		}
	}
	json_array_foreach(results, i, r)
	{
		const char *tn = str(r, "task_name"), *name = str(r, "name"), *digest = str(r, "digest");
		if (!safe_rel(tn) || strchr(tn, '/') || !safe_rel(name)) {
			fprintf(stderr, "error: refusing a result named %s/%s\n", tn, name);
			ret = 1;
			continue;
		}
		char *path = dir ? xasprintf("%s/%s/%s", dir, tn, name) : xasprintf("%s/r%zu", tmpdir, i);
		int rc = mkdir_for(path);
		if (rc == 0)
			rc = ss_blob_get_file(c, digest, path);
		if (rc) {
			print_err(c, rc, path);
			ret = 1;
		} else {
			if (cat)
				cat_result(tn, name, path);
			if (dir)
				printf("%s (%lld bytes)\n", path, num(r, "size"));
			else
				(void)unlink(path);
		}
		if (dir && strcmp(prev, tn) != 0) {
			char *rp = xasprintf("%s/%s.receipt.json", dir, tn);
			ret |= save_receipt(c, str(r, "task"), rp);
			free(rp);
			prev = tn;
		}
		free(path);
	}
	if (tmpdir)
		(void)rmdir(tmpdir);
	free(tmpdir);
	return ret;
}

/* ---- commands ------------------------------------------------------------- */

#define MAX_META_ARGS 64 /* --meta options of one dispatch */

struct run_opts {
	bool wait, cat, as_json;
	bool attempts;        /* job status --attempts */
	json_t *meta;         /* job dispatch: --meta KEY=VALUE */
	const char *payload;  /* job dispatch: --payload FILE */
	const char *out;
	uint64_t timeout_ms;
	ss_jobs_filter list;  /* job list: filters and page size */
	bool list_all;        /* job list --all: every page */
};

#define LIST_DEFAULT 100u /* jobs job list shows without --limit or --all */

/*
 * Follows job `id` to its end, prints how it ended (or its JSON) and where its
 * tasks ran, and fetches its results as o asks. Returns the exit status: 0
 * when the job succeeded and its results were fetched, else 1.
 */
static int follow(ss_client *c, const char *id, const struct run_opts *o)
{
	char *jid = xstrdup(id);
	json_t *job = wait_job(c, jid, o->timeout_ms);
	int ret = 1;
	if (!job)
		goto out;
	bool periodic = !strcmp(str(job, "state"), "periodic");
	if (periodic || !strcmp(str(job, "state"), "parameterized")) {
		fprintf(stderr,
			"error: job %s is %s and does not end; wait for one of its launches instead "
			"(job status %s lists them, job %s %s --wait starts one now)\n",
			jid, str(job, "state"), jid, periodic ? "launch" : "dispatch", jid);
		goto out;
	}
	if (o->as_json) {
		print_json(job);
	} else {
		char *reason = cli_clean(str(job, "reason"));
		printf("job %s %s%s%s\n", jid, str(job, "state"), *reason ? ": " : "", reason);
		free(reason);
		print_placement(c, jid);
		print_usage(job);
	}
	ret = strcmp(str(job, "state"), "succeeded") == 0 ? 0 : 1;
	if (ret == 0 && (o->out || o->cat))
		ret = fetch_results(c, job, o->out, o->cat);
out:
	json_decref(job);
	free(jid);
	return ret;
}

/*
 * Reads, checks and rewrites the spec at spec_path for the manager: every
 * local file uploaded (with dry, only hashed: see blob_put_or_hash). Returns
 * 0 with *body = the JSON text to send (the caller frees it) and *files = the
 * number of local files, or 1 after printing the error.
 */
static int spec_body(ss_client *c, const char *spec_path, json_t *dry, char **body, size_t *files)
{
	char *text = NULL, *why = xmalloc(1024);
	size_t len = 0;
	struct jobspec *parsed = NULL;
	json_t *spec = NULL;
	int ret = 1;
	*body = NULL;
	*files = 0;
	int rc = file_read(spec_path, JOBSPEC_MAX_JSON, &text, &len);
	if (rc) {
		fprintf(stderr, "error: %s: %s\n", spec_path, ss_strerror(rc));
		goto out;
	}
	/* Check the spec here first: errors come back before anything is uploaded. */
	if (jobspec_parse(text, len, JOBSPEC_ALLOW_FILES, &parsed, why, 1024) != 0) {
		fprintf(stderr, "error: %s: %s\n", spec_path, why);
		goto out;
	}
	json_error_t jerr;
	spec = json_loadb(text, len, 0, &jerr);
	if (!spec)
		goto out;
	char *tmp = xstrdup(spec_path);
	char *base = xstrdup(dirname(tmp));
	free(tmp);
	rc = upload_files(c, dry, spec, base, files);
	free(base);
	if (rc)
		goto out;
	*body = json_dumps(spec, JSON_COMPACT);
	ret = *body ? 0 : 1;
out:
	jobspec_free(parsed);
	json_decref(spec);
	free(text);
	free(why);
	return ret;
}

/* A periodic job's schedule for people: "cron \"0 3 * * *\" (UTC), no overlap" or "every 10s". */
static void schedule_text(json_t *per, char *out, size_t outlen)
{
	char every[32];
	char *cron = cli_clean(str(per, "cron"));
	format_duration_ms((uint64_t)num(per, "every_ms"), every);
	snprintf(out, outlen, "%s%s%s%s%s", *cron ? "cron \"" : "every ", *cron ? cron : every,
		 *cron ? "\" (UTC)" : "", json_is_true(json_object_get(per, "prohibit_overlap")) ? ", " : "",
		 json_is_true(json_object_get(per, "prohibit_overlap")) ? "no overlap" : "");
	free(cron);
}

/* A parameterized job's keys and payload, as lines for people. */
static void print_param(json_t *par)
{
	const char *const lists[] = {"meta_required", "meta_optional"};
	for (size_t k = 0; k < 2; k++) {
		json_t *a = json_object_get(par, lists[k]), *v;
		size_t i;
		if (!json_array_size(a))
			continue;
		printf("%s:", k == 0 ? "metadata required" : "metadata optional");
		json_array_foreach(a, i, v)
		{
			char *key = cli_clean(json_string_value(v));
			printf("%s %s", i ? "," : "", key);
			free(key);
		}
		printf("\n");
	}
	printf("payload: %s\n", str(par, "payload"));
}

static int cmd_run(ss_client *c, const char *spec_path, const struct run_opts *o)
{
	char *body = NULL, *js = NULL;
	size_t uploaded = 0;
	json_t *job = NULL;
	int ret = 1;
	if (spec_body(c, spec_path, NULL, &body, &uploaded))
		goto out;
	int rc = ss_job_submit(c, body, &js);
	job = fetch_json(c, rc, js, "submit");
	if (!job)
		goto out;
	const char *id = str(job, "id");
	json_t *per = json_object_get(job, "periodic"), *par = json_object_get(job, "parameterized");
	if (o->as_json && (!o->wait || per || par)) {
		print_json(job);
	} else if (par) {
		printf("parameterized job %s registered: %lld task%s per dispatch%s\n", id, num(job, "tasks_total"),
		       num(job, "tasks_total") == 1 ? "" : "s", uploaded ? " (local files uploaded as blobs)" : "");
		print_param(par);
		printf("run it with: seeswarm job dispatch %s%s\n", id,
		       json_array_size(json_object_get(par, "meta_required")) ? " --meta KEY=VALUE ..." : "");
	} else if (per) {
		char sched[200], at[32];
		schedule_text(per, sched, sizeof sched);
		format_utc_ms(num(per, "next_launch_ms"), at);
		printf("periodic job %s registered: %s, %lld task%s per launch%s\nnext launch: %s\n", id, sched,
		       num(job, "tasks_total"), num(job, "tasks_total") == 1 ? "" : "s",
		       uploaded ? " (local files uploaded as blobs)" : "", at);
	} else {
		printf("job %s submitted: %lld tasks%s\n", id, num(job, "tasks_total"),
		       uploaded ? " (local files uploaded as blobs)" : "");
	}
	fflush(stdout);
	if (o->wait && (per || par)) {
		/* A template never ends: there is nothing to wait for but its launches. */
		fprintf(stderr,
			"note: a %s job does not end, so --wait does not wait for it; follow one launch "
			"with: seeswarm job %s %s --wait\n",
			per ? "periodic" : "parameterized", per ? "launch" : "dispatch", id);
		ret = 0;
		goto out;
	}
	ret = o->wait ? follow(c, id, o) : 0;
out:
	json_decref(job);
	free(body);
	return ret;
}

/* True when the warning names one of the digests in the array hashed. */
static bool names_hashed(const char *warning, json_t *hashed)
{
	size_t i;
	json_t *h;
	json_array_foreach(hashed, i, h)
	{
		if (strstr(warning, json_string_value(h)))
			return true;
	}
	return false;
}

/* "agent-0 x2, agent-1" from {"agent-0": 2, "agent-1": 1}, into out. */
static void nodes_text(json_t *nodes, char *out, size_t outlen)
{
	const char *k;
	json_t *v;
	size_t n = 0;
	out[0] = '\0';
	json_object_foreach(nodes, k, v)
	{
		long long x = (long long)json_integer_value(v);
		int w = x > 1 ? snprintf(out + n, outlen - n, "%s%s x%lld", n ? ", " : "", k, x)
			      : snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", k);
		if (w < 0 || (size_t)w >= outlen - n) {
			snprintf(out + (outlen > 4 ? outlen - 4 : 0), outlen > 4 ? 4 : outlen, "...");
			return;
		}
		n += (size_t)w;
	}
}

/* Prints a plan (jobs_plan's JSON, warnings already filtered) as text; files: local files hashed. */
static void print_plan(json_t *plan, size_t files)
{
	json_t *kept = json_object_get(plan, "warnings"), *w;
	size_t i;
	char cost[32];
	format_amount(json_number_value(json_object_get(plan, "cost_per_hour")), cost);
	printf("job %s (tenant %s): %lld task%s\n", str(plan, "name"), str(plan, "tenant"),
	       num(plan, "tasks"), num(plan, "tasks") == 1 ? "" : "s");
	json_t *per = json_object_get(plan, "periodic");
	if (per) {
		char sched[200], at[32];
		schedule_text(per, sched, sizeof sched);
		printf("periodic: %s; a launch now would go as below\nnext launches:", sched);
		json_t *l;
		json_array_foreach(json_object_get(per, "next_launches_ms"), i, l)
		{
			format_utc_ms(json_integer_value(l), at);
			printf("%s %s", i ? "," : "", at);
		}
		printf("\n");
	}
	printf("now: %lld would start, %lld would wait for capacity, %lld wait for other tasks; "
	       "%lld task%s of other jobs queued\n",
	       num(plan, "placed_now"), num(plan, "not_placed_now"), num(plan, "after_dependencies"),
	       num(plan, "queued_ahead"), num(plan, "queued_ahead") == 1 ? "" : "s");
	if (num(plan, "preempts"))
		printf("preemption: %lld running attempt%s of lower priority would be stopped to make room\n",
		       num(plan, "preempts"), num(plan, "preempts") == 1 ? "" : "s");
	printf("cost while the tasks that would start run: %s per hour\n\n", cost);
	printf("%-20s %9s %9s  %s\n", "TASK", "INSTANCES", "START NOW", "WHERE");
	json_t *g;
	json_array_foreach(json_object_get(plan, "groups"), i, g)
	{
		char where[512];
		const char *reason = str(g, "reason");
		if (json_object_get(g, "placed")) {
			nodes_text(json_object_get(g, "nodes"), where, sizeof where);
			printf("%-20s %9lld %9lld  %s\n", str(g, "name"), num(g, "instances"), num(g, "placed"),
			       where[0] ? where : "-");
			if (num(g, "preempts"))
				printf("%-20s %9s %9s  by preempting %lld running attempt%s\n", "", "", "",
				       num(g, "preempts"), num(g, "preempts") == 1 ? "" : "s");
			if (num(g, "not_placed"))
				printf("%-20s %9s %9s  %lld wait: %s\n", "", "", "", num(g, "not_placed"),
				       reason ? reason : "");
			continue;
		}
		char after[256] = "";
		size_t k, n = 0;
		json_t *a;
		json_array_foreach(json_object_get(g, "after"), k, a)
		{
			int wr = snprintf(after + n, sizeof after - n, "%s%s", n ? ", " : "", json_string_value(a));
			if (wr < 0 || (size_t)wr >= sizeof after - n)
				break;
			n += (size_t)wr;
		}
		const char *on = str(g, "would_start_on");
		if (on)
			printf("%-20s %9lld %9s  after %s: %s now (feasible on %lld of %lld nodes)\n",
			       str(g, "name"), num(g, "instances"), "-", after, on, num(g, "feasible_nodes"),
			       num(g, "total_nodes"));
		else
			printf("%-20s %9lld %9s  after %s: no node now: %s\n", str(g, "name"),
			       num(g, "instances"), "-", after, reason ? reason : "");
	}
	json_array_foreach(kept, i, w)
	{
		printf("%swarning: %s\n", i ? "" : "\n", json_string_value(w));
	}
	if (files)
		printf("\n%zu local file%s hashed, not uploaded: job run uploads %s.\n", files,
		       files == 1 ? "" : "s", files == 1 ? "it" : "them");
}

/*
 * job plan: what submitting the spec would do now. Local files are hashed,
 * not uploaded; the manager's warnings about them (not uploaded yet) are
 * dropped, since job run uploads them.
 */
static int cmd_plan(ss_client *c, const char *spec_path, bool as_json)
{
	char *body = NULL, *js = NULL;
	size_t files = 0;
	json_t *hashed = json_array(), *plan = NULL;
	int ret = 1;
	if (spec_body(c, spec_path, hashed, &body, &files))
		goto out;
	int rc = ss_job_plan(c, body, &js);
	plan = fetch_json(c, rc, js, "plan");
	if (!plan)
		goto out;
	json_t *warnings = json_object_get(plan, "warnings"), *kept = json_array(), *w;
	size_t i;
	json_array_foreach(warnings, i, w)
	{
		if (!names_hashed(json_string_value(w), hashed))
			json_array_append(kept, w);
	}
	json_object_set_new(plan, "warnings", kept);
	ret = 0;
	if (as_json)
		print_json(plan);
	else
		print_plan(plan, files);
out:
	json_decref(plan);
	json_decref(hashed);
	free(body);
	return ret;
}

/*
 * Reports a job the manager just started from another (a rerun, a launch, a
 * dispatch): its JSON, or "job ID VERB: N tasks (ORIGIN ID)", then follows
 * it with --wait. Takes ownership of job (NULL: the call failed and was
 * reported). Returns the exit status.
 */
static int started(ss_client *c, json_t *job, const char *verb, const char *origin, const char *from,
		   const struct run_opts *o)
{
	if (!job)
		return 1;
	char *id = cli_clean(str(job, "id")), *f = cli_clean(from);
	if (o->as_json && !o->wait)
		print_json(job);
	else
		printf("job %s %s: %lld task%s (%s %s)\n", id, verb, num(job, "tasks_total"),
		       num(job, "tasks_total") == 1 ? "" : "s", origin, f);
	fflush(stdout);
	int ret = o->wait ? follow(c, id, o) : 0;
	free(id);
	free(f);
	json_decref(job);
	return ret;
}

static int cmd_rerun(ss_client *c, const char *old_id, const struct run_opts *o)
{
	char *js = NULL;
	int rc = ss_job_rerun(c, old_id, &js);
	return started(c, fetch_json(c, rc, js, "rerun"), "submitted", "a rerun of", old_id, o);
}

static int cmd_launch(ss_client *c, const char *parent_id, const struct run_opts *o)
{
	char *js = NULL;
	int rc = ss_job_launch(c, parent_id, &js);
	return started(c, fetch_json(c, rc, js, "launch"), "launched", "from periodic job", parent_id, o);
}

static int cmd_dispatch(ss_client *c, const char *parent_id, const struct run_opts *o)
{
	char *js = NULL, *body = NULL;
	json_t *d = json_object();
	int ret = 1;
	if (json_object_size(o->meta))
		json_object_set(d, "meta", o->meta);
	if (o->payload) {
		char hex[65];
		uint64_t size = 0;
		int rc = ss_blob_put_file(c, o->payload, hex, &size);
		if (rc) {
			print_err(c, rc, o->payload);
			goto out;
		}
		json_object_set_new(d, "payload", json_string(hex));
	}
	body = json_dumps(d, JSON_COMPACT);
	int rc = ss_job_dispatch(c, parent_id, body, &js);
	ret = started(c, fetch_json(c, rc, js, "dispatch"), "dispatched", "from parameterized job", parent_id, o);
out:
	free(body);
	json_decref(d);
	return ret;
}

/* job status of a periodic or parameterized job: its schedule or keys, its counts and its launches. */
static void print_periodic(json_t *job)
{
	json_t *per = json_object_get(job, "periodic");
	char sched[200], at[32];
	if (per) {
		schedule_text(per, sched, sizeof sched);
		printf("schedule: %s, %lld task%s per launch\n", sched, num(job, "tasks_total"),
		       num(job, "tasks_total") == 1 ? "" : "s");
		if (json_object_get(per, "next_launch_ms")) {
			format_utc_ms(num(per, "next_launch_ms"), at);
			printf("next launch: %s\n", at);
		}
		printf("launched %lld, skipped %lld (the last launch still ran), refused %lld\n",
		       num(per, "launched"), num(per, "skipped"), num(per, "refused"));
	} else {
		per = json_object_get(job, "parameterized");
		printf("parameterized, %lld task%s per dispatch\n", num(job, "tasks_total"),
		       num(job, "tasks_total") == 1 ? "" : "s");
		print_param(per);
		printf("dispatched %lld\n", num(per, "launched"));
	}
	json_t *skip = json_object_get(per, "last_skip");
	if (skip) {
		char *why = cli_clean(str(skip, "reason"));
		format_utc_ms(num(skip, "at_ms"), at);
		printf("last skipped or refused: %s: %s\n", at, why);
		free(why);
	}
	json_t *launches = json_object_get(per, "launches"), *l;
	if (json_array_size(launches) == 0)
		return;
	printf("%-22s %-24s %s\n", "LAUNCH", "FOR", "STATE");
	size_t i;
	json_array_foreach(launches, i, l)
	{
		char *lid = cli_clean(str(l, "id")), *st = cli_clean(str(l, "state"));
		format_utc_ms(num(l, "at_ms"), at);
		printf("%-22s %-24s %s%s\n", lid, at, st,
		       json_is_true(json_object_get(l, "forced")) ? " (launched on request)" : "");
		free(lid);
		free(st);
	}
}

/*
 * Fetches the jobs o->list asks for, newest first: one page, or with
 * o->list_all every page (following "next"). Returns {"jobs", "total"[,
 * "next"]} as one object, or NULL after reporting the error.
 */
static json_t *list_jobs(ss_client *c, const struct run_opts *o)
{
	ss_jobs_filter f = o->list;
	if (!f.limit) /* with --all, --limit is the size of each page fetched */
		f.limit = o->list_all ? 10000 : LIST_DEFAULT;
	json_t *jobs = json_array(), *total = NULL, *next = NULL;
	char *cursor = NULL;
	bool ok = true;
	/* Each page moves the cursor past at least one job, so the loop ends; bound it anyway. */
	for (int page = 0; page < 1000; page++) {
		f.before = cursor;
		char *js = NULL;
		int crc = ss_jobs_find(c, &f, &js);
		json_t *p = fetch_json(c, crc, js, "jobs");
		if (!p) {
			ok = false;
			break;
		}
		json_array_extend(jobs, json_object_get(p, "jobs"));
		json_decref(total);
		json_decref(next);
		total = json_incref(json_object_get(p, "total"));
		next = json_incref(json_object_get(p, "next"));
		json_decref(p);
		free(cursor);
		cursor = json_is_string(next) && o->list_all ? xstrdup(json_string_value(next)) : NULL;
		if (!cursor)
			break;
	}
	free(cursor);
	json_t *out = NULL;
	if (ok) {
		out = json_pack("{s:O,s:O}", "jobs", jobs, "total", total ? total : json_null());
		if (next && !o->list_all)
			json_object_set(out, "next", next);
	}
	json_decref(jobs);
	json_decref(total);
	json_decref(next);
	return out;
}

static int cmd_list(ss_client *c, const struct run_opts *ro)
{
	json_t *o = list_jobs(c, ro);
	if (!o)
		return 1;
	if (ro->as_json) {
		print_json(o);
	} else {
		size_t i;
		json_t *jb;
		printf("%-16s %-20s %-10s %-10s %-11s %-10s %s\n", "ID", "NAME", "TENANT", "STATE", "TASKS",
		       "TASK-TIME", "COST");
		json_array_foreach(json_object_get(o, "jobs"), i, jb)
		{
			char *id = cli_clean(str(jb, "id")), *nm = cli_clean(str(jb, "name"));
			char *tn = cli_clean(str(jb, "tenant")), *st = cli_clean(str(jb, "state"));
			char tasks[48], spent[32], cost[32];
			json_t *u = json_object_get(jb, "usage");
			if (json_object_get(jb, "periodic") || json_object_get(jb, "parameterized")) /* its tasks run in its launches */
				snprintf(tasks, sizeof tasks, "%lld/launch", num(jb, "tasks_total"));
			else
				snprintf(tasks, sizeof tasks, "%lld/%lld", num(json_object_get(jb, "counts"), "succeeded"),
					 num(jb, "tasks_total"));
			format_seconds(json_number_value(json_object_get(u, "run_seconds")), spent);
			format_amount(json_number_value(json_object_get(u, "cost")), cost);
			printf("%-16s %-20s %-10s %-10s %-11s %-10s %s\n", id, nm, tn, st, tasks, spent, cost);
			free(id);
			free(nm);
			free(tn);
			free(st);
		}
		size_t shown = json_array_size(json_object_get(o, "jobs"));
		if (json_object_get(o, "next"))
			printf("(the newest %zu of %lld; --limit N or --all for more)\n", shown, num(o, "total"));
	}
	json_decref(o);
	return 0;
}

/* Prints t's ended attempts (its "history"), one line each, indented under the task's row. */
static void print_attempts(json_t *t)
{
	size_t i;
	json_t *h;
	json_array_foreach(json_object_get(t, "history"), i, h)
	{
		char ran[32] = "-";
		if (num(h, "run_ms") > 0)
			format_duration_ms((uint64_t)num(h, "run_ms"), ran);
		char *nd = cli_clean(str(h, "node")), *oc = cli_clean(str(h, "outcome"));
		char *why = cli_clean(str(h, "reason"));
		printf("  attempt %-5lld %-20s %-12s %-8s %s\n", num(h, "attempt"), *nd ? nd : "-", oc, ran, why);
		free(nd);
		free(oc);
		free(why);
	}
}

static int cmd_status(ss_client *c, const char *id, bool as_json, bool attempts)
{
	char *js = NULL;
	int crc = ss_job_get(c, id, &js);
	json_t *job = fetch_json(c, crc, js, "job");
	if (!job)
		return 1;
	crc = ss_job_tasks(c, id, &js);
	json_t *tasks = fetch_json(c, crc, js, "tasks");
	if (!tasks) {
		json_decref(job);
		return 1;
	}
	if (as_json) {
		json_object_set(job, "tasks", json_object_get(tasks, "tasks"));
		print_json(job);
	} else {
		char *nm = cli_clean(str(job, "name")), *rs = cli_clean(str(job, "reason"));
		char *parent = cli_clean(str(job, "parent"));
		printf("job %s (%s): %s%s%s\n", id, nm, str(job, "state"), *rs ? ": " : "", rs);
		if (*parent)
			printf("launched by periodic job %s\n", parent);
		free(nm);
		free(rs);
		free(parent);
		if (json_object_get(job, "periodic") || json_object_get(job, "parameterized")) {
			print_periodic(job);
			json_decref(job);
			json_decref(tasks);
			return 0;
		}
		print_usage(job);
		printf("%-22s %-22s %-10s %-7s %-20s %s\n", "TASK", "NAME", "STATE", "ATTEMPT", "NODE",
		       "REASON");
		size_t i;
		json_t *t;
		json_array_foreach(json_object_get(tasks, "tasks"), i, t)
		{
			char *tid = cli_clean(str(t, "id")), *tn = cli_clean(str(t, "name"));
			char *st = cli_clean(str(t, "state")), *nd = cli_clean(str(t, "node"));
			char *why = cli_clean(str(t, "reason"));
			printf("%-22s %-22s %-10s %-7lld %-20s %s\n", tid, tn, st, num(t, "attempt"),
			       *nd ? nd : "-", why);
			if (attempts)
				print_attempts(t);
			free(tid);
			free(tn);
			free(st);
			free(nd);
			free(why);
		}
	}
	json_decref(job);
	json_decref(tasks);
	return 0;
}

static int cmd_explain(ss_client *c, const char *id, const char *task, bool as_json)
{
	char *js = NULL;
	int crc = ss_job_explain(c, id, task, &js);
	json_t *o = fetch_json(c, crc, js, "explain");
	if (!o)
		return 1;
	if (as_json) {
		print_json(o);
		json_decref(o);
		return 0;
	}
	size_t i, k;
	json_t *t, *n;
	if (json_array_size(json_object_get(o, "tasks")) == 0)
		printf("job %s: no task is waiting for placement\n", id);
	json_array_foreach(json_object_get(o, "tasks"), i, t)
	{
		json_t *p = json_object_get(t, "placement");
		char *tn = cli_clean(str(t, "name")), *st = cli_clean(str(t, "state"));
		printf("%s %s (%s): %lld of %lld nodes feasible", str(t, "id"), tn, st,
		       num(p, "feasible"), num(p, "total"));
		if (json_is_string(json_object_get(p, "chosen"))) {
			char *ch = cli_clean(str(p, "chosen"));
			printf(", best %s", ch);
			free(ch);
		}
		if (num(t, "waiting_for"))
			printf(", waiting for %lld dependencies", num(t, "waiting_for"));
		printf("\n");
		char *tr = cli_clean(str(t, "reason"));
		if (*tr) /* e.g. the last refusal, or its tenant's CPU cap holding it back */
			printf("  %s\n", tr);
		free(tr);
		free(tn);
		free(st);
		json_array_foreach(json_object_get(p, "nodes"), k, n)
		{
			char *nd = cli_clean(str(n, "node"));
			if (json_is_true(json_object_get(n, "feasible"))) {
				json_t *sc = json_object_get(n, "scores");
				printf("  %-20s score %.3f  (binpack %.2f, locality %.2f, network %.2f, cost %.2f, load %.2f)\n",
				       nd, json_number_value(json_object_get(n, "score")),
				       json_number_value(json_object_get(sc, "binpack")),
				       json_number_value(json_object_get(sc, "locality")),
				       json_number_value(json_object_get(sc, "network")),
				       json_number_value(json_object_get(sc, "cost")),
				       json_number_value(json_object_get(sc, "load")));
			} else {
				char *why = cli_clean(str(n, "reason"));
				printf("  %-20s filtered: %s\n", nd, why);
				free(why);
			}
			free(nd);
		}
	}
	json_decref(o);
	return 0;
}

static void print_tail(const char *label, const char *text)
{
	if (!*text)
		return;
	printf("  --- %s ---\n", label);
	/* Keep newlines and tabs, replace other control characters. */
	for (const char *p = text; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		putchar(ch == '\n' || ch == '\t' || (ch >= 0x20 && ch != 0x7f) ? ch : '?');
	}
	if (text[strlen(text) - 1] != '\n')
		putchar('\n');
}

static int cmd_logs(ss_client *c, const char *task_id, bool as_json)
{
	char *js = NULL;
	int crc = ss_task_logs(c, task_id, &js);
	json_t *o = fetch_json(c, crc, js, "logs");
	if (!o)
		return 1;
	if (as_json) {
		print_json(o);
		json_decref(o);
		return 0;
	}
	char *tn = cli_clean(str(o, "name")), *st = cli_clean(str(o, "state"));
	printf("task %s (%s): %s, attempt %lld\n", task_id, tn, st, num(o, "attempt"));
	free(tn);
	free(st);
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(o, "attempts"), i, a)
	{
		char *nd = cli_clean(str(a, "node")), *sts = cli_clean(str(a, "status"));
		char *msg = cli_clean(str(a, "message"));
		printf("attempt %lld on %s: %s (code %lld)%s%s\n", num(a, "attempt"), nd, sts,
		       num(a, "code"), *msg ? ": " : "", msg);
		free(nd);
		free(sts);
		free(msg);
		print_tail("stdout", str(a, "stdout"));
		print_tail("stderr", str(a, "stderr"));
	}
	json_decref(o);
	return 0;
}

/*
 * The id of job's task named name ("count[2]"; a plain task's name), into
 * out. Returns 0, or 1 after printing why (no such job or task).
 */
static int task_by_name(ss_client *c, const char *job, const char *name, char out[96])
{
	char *js = NULL;
	int crc = ss_job_tasks(c, job, &js);
	json_t *o = fetch_json(c, crc, js, "tasks"), *t;
	size_t i;
	int ret = 1;
	if (!o)
		return 1;
	json_array_foreach(json_object_get(o, "tasks"), i, t)
	{
		if (str(t, "name") && !strcmp(str(t, "name"), name) && str(t, "id")) {
			snprintf(out, 96, "%s", str(t, "id"));
			ret = 0;
			break;
		}
	}
	if (ret) {
		char *clean = cli_clean(name);
		fprintf(stderr, "error: job %s has no task named %s (job status lists them)\n", job, clean);
		free(clean);
	}
	json_decref(o);
	return ret;
}

/*
 * When a follow began after the agent let go of the attempt's output (it ended
 * long ago, or the agent restarted), prints the tails kept with its result.
 */
static void print_kept_tails(ss_client *c, const char *task_id, long long attempt)
{
	char *js = NULL;
	if (ss_task_logs(c, task_id, &js) != 0) {
		ss_free(js);
		return;
	}
	json_t *o = json_loads(js, 0, NULL);
	ss_free(js);
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(o, "attempts"), i, a) {
		if (num(a, "attempt") != attempt)
			continue;
		fputs(str(a, "stdout"), stdout);
		fputs(str(a, "stderr"), stderr);
		fprintf(stderr, "(the output kept with the result: at most the last 64 KiB of each stream)\n");
		break;
	}
	json_decref(o);
}

/* True for the task states after which no attempt will start. */
static bool task_final(const char *state)
{
	return !strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "canceled");
}

/*
 * Prints a task's output as it comes, stdout to stdout and stderr to stderr,
 * following new attempts, until the task is finished and its last attempt has
 * no more output. Returns 0 when the task succeeded, else 1.
 */
static int cmd_follow(ss_client *c, const char *task_id)
{
	uint64_t from[2] = {0, 0};
	long long attempt = -1;
	unsigned failures = 0;
	int ret = 1;
	for (;;) {
		char *js = NULL;
		int rc = ss_task_output(c, task_id, from[0], from[1], &js);
		if (rc) {
			ss_free(js);
			if (poll_gives_up(c, rc, &failures, "following the task", false))
				return 1;
			cli_sleep_ms(POLL_MS);
			continue;
		}
		failures = 0;
		json_t *o = json_loads(js, 0, NULL);
		ss_free(js);
		if (!o)
			return 1;
		long long att = num(o, "attempt");
		const char *state = str(o, "state");
		if (att != attempt) {
			/* A new attempt: its output starts again at offset 0. */
			if (att > 0) {
				char *nd = cli_clean(str(o, "node"));
				fprintf(stderr, "--- attempt %lld on %s ---\n", att, nd);
				free(nd);
			}
			bool fresh = attempt == -1 || (from[0] == 0 && from[1] == 0);
			attempt = att;
			from[0] = from[1] = 0;
			if (!fresh) {
				json_decref(o);
				continue;
			}
		}
		static const char *const names[2] = {"stdout", "stderr"};
		for (int s = 0; s < 2; s++) {
			json_t *st = json_object_get(o, names[s]);
			uint64_t at = (uint64_t)num(st, "from"), next = (uint64_t)num(st, "next");
			FILE *f = s ? stderr : stdout;
			if (at > from[s])
				fprintf(stderr, "[... %llu bytes of %s not kept ...]\n",
					(unsigned long long)(at - from[s]), names[s]);
			fputs(str(st, "data"), f);
			fflush(f);
			if (next >= from[s])
				from[s] = next;
		}
		bool ended = json_is_true(json_object_get(o, "ended"));
		if (ended && task_final(state)) {
			if (from[0] == 0 && from[1] == 0 && att > 0)
				print_kept_tails(c, task_id, att);
			char *sc = cli_clean(state);
			fprintf(stderr, "--- task %s ---\n", sc);
			free(sc);
			ret = strcmp(state, "succeeded") == 0 ? 0 : 1;
			json_decref(o);
			break;
		}
		json_decref(o);
		cli_sleep_ms(ended ? POLL_MS : POLL_MS / 2);
	}
	return ret;
}

static int cmd_results(ss_client *c, const char *id, const char *out)
{
	char *js = NULL;
	int crc = ss_job_get(c, id, &js);
	json_t *job = fetch_json(c, crc, js, "job");
	if (!job)
		return 1;
	int ret = 1;
	if (strcmp(str(job, "state"), "succeeded") != 0 && json_array_size(json_object_get(job, "results")) == 0)
		fprintf(stderr, "error: job %s is %s and has no results yet\n", id, str(job, "state"));
	else
		ret = fetch_results(c, job, out, false);
	json_decref(job);
	return ret;
}

static int cmd_cancel(ss_client *c, const char *id)
{
	char *js = NULL;
	int crc = ss_job_cancel(c, id, &js);
	json_t *o = fetch_json(c, crc, js, "cancel");
	if (!o)
		return 1;
	printf("job %s %s\n", id, str(o, "state"));
	json_decref(o);
	return 0;
}

/* cli_job_main() without its cleanup: ro (zeroed by the caller) collects the options. */
static int job_main(int argc, char **argv, struct run_opts *ro)
{
	struct cli_conn_flags cf;
	const char *pos[2] = {NULL, NULL};
	size_t npos = 0;
	ss_client *c = NULL;
	int ret = 2;

	argc = cli_take_conn_flags(argc, argv, &cf);
	if (argc < 2)
		return usage(stderr, 2);
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return usage(stdout, 0);
	static const char *const subs[] = {"run",    "plan",   "wait",   "list",    "status",  "explain",
					   "logs",   "results", "cancel", "rerun", "launch", "dispatch"};
	bool known = false;
	for (size_t i = 0; i < ARRAY_LEN(subs); i++)
		known |= !strcmp(sub, subs[i]);
	if (!known) {
		fprintf(stderr, "error: unknown job command \"%s\"\n", sub);
		return usage(stderr, 2);
	}
	/* rerun and launch take run's options; they differ only in where the spec comes from. */
	bool is_rerun = !strcmp(sub, "rerun"), is_launch = !strcmp(sub, "launch");
	bool is_dispatch = !strcmp(sub, "dispatch");
	bool is_run = !strcmp(sub, "run") || is_rerun || is_launch || is_dispatch, is_wait = !strcmp(sub, "wait"), follow_logs = false;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		int r;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			return usage(stdout, 0);
		} else if (!strcmp(a, "--json")) {
			ro->as_json = true;
		} else if (!strcmp(sub, "status") && !strcmp(a, "--attempts")) {
			ro->attempts = true;
		} else if (!strcmp(sub, "logs") && (!strcmp(a, "--follow") || !strcmp(a, "-f"))) {
			follow_logs = true;
		} else if (is_run && !strcmp(a, "--wait")) {
			ro->wait = true;
		} else if ((is_run || is_wait) && !strcmp(a, "--cat")) {
			ro->cat = ro->wait = true;
		} else if ((is_run || is_wait || !strcmp(sub, "results")) &&
			   (r = cli_opt_value(argc, argv, &i, "--out", &v)) != 0) {
			if (r < 0)
				return usage(stderr, 2);
			ro->out = v;
			ro->wait = true;
		} else if ((is_run || is_wait) && (r = cli_opt_value(argc, argv, &i, "--timeout", &v)) != 0) {
			if (r < 0 || parse_duration_ms(v, &ro->timeout_ms) != 0) {
				fprintf(stderr, "error: --timeout: expected a duration such as 30s or 5m\n");
				return 2;
			}
		} else if (is_dispatch && (r = cli_opt_value(argc, argv, &i, "--meta", &v)) != 0) {
			const char *eq = r > 0 ? strchr(v, '=') : NULL;
			if (!eq || eq == v || (size_t)(eq - v) > 63 || json_object_size(ro->meta) >= MAX_META_ARGS) {
				fprintf(stderr, "error: --meta: expected KEY=VALUE (at most %d)\n", MAX_META_ARGS);
				return 2;
			}
			char key[64];
			snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
			if (!ro->meta)
				ro->meta = json_object();
			json_object_set_new(ro->meta, key, json_string(eq + 1));
		} else if (is_dispatch && (r = cli_opt_value(argc, argv, &i, "--payload", &v)) != 0) {
			if (r < 0)
				return usage(stderr, 2);
			ro->payload = v;
		} else if (!strcmp(sub, "list") && !strcmp(a, "--all")) {
			ro->list_all = true;
		} else if (!strcmp(sub, "list") && (r = cli_opt_value(argc, argv, &i, "--state", &v)) != 0) {
			if (r < 0 || (strcmp(v, "running") != 0 && strcmp(v, "succeeded") != 0 &&
				      strcmp(v, "failed") != 0 && strcmp(v, "canceled") != 0 &&
				      strcmp(v, "periodic") != 0 && strcmp(v, "parameterized") != 0)) {
				fprintf(stderr, "error: --state: expected running, succeeded, failed, canceled, "
						"periodic or parameterized\n");
				return 2;
			}
			ro->list.state = v;
		} else if (!strcmp(sub, "list") && (r = cli_opt_value(argc, argv, &i, "--tenant", &v)) != 0) {
			if (r < 0 || !ident_valid(v)) {
				fprintf(stderr, "error: --tenant: expected a tenant name\n");
				return 2;
			}
			ro->list.tenant = v;
		} else if (!strcmp(sub, "list") && (r = cli_opt_value(argc, argv, &i, "--limit", &v)) != 0) {
			uint64_t n = 0;
			if (r < 0 || strspn(v, "0123456789") != strlen(v) || parse_size(v, &n) != 0 || n < 1 ||
			    n > 10000) {
				fprintf(stderr, "error: --limit: expected a number from 1 to 10000\n");
				return 2;
			}
			ro->list.limit = (unsigned)n;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "error: unknown option %s for job %s\n", a, sub);
			return usage(stderr, 2);
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			fprintf(stderr, "error: unexpected argument \"%s\"\n", a);
			return usage(stderr, 2);
		}
	}
	size_t need = !strcmp(sub, "list") ? 0 : 1;
	size_t allow = !strcmp(sub, "explain") || !strcmp(sub, "logs") ? 2 : need;
	if (npos < need || npos > allow) {
		fprintf(stderr, "error: job %s takes %s\n", sub,
			need == 0 ? "no arguments" : is_rerun || is_launch || is_dispatch ? "a job id" : is_run || !strcmp(sub, "plan") ? "a spec file" : !strcmp(sub, "logs") ? "a task id" : "a job id");
		return usage(stderr, 2);
	}
	if (follow_logs && ro->as_json) {
		fprintf(stderr, "error: job logs --follow prints text; GET /v1/tasks/ID/output gives JSON\n");
		return 2;
	}
	if (!strcmp(sub, "results") && !ro->out) {
		fprintf(stderr, "error: job results needs --out DIR\n");
		return 2;
	}
	ss_client_opts o = {.addr = cf.addr, .token = cf.token, .ca_file = cf.ca};
	int rc = ss_client_open(&c, &o);
	if (rc) {
		print_err(NULL, rc, "cannot set up the client");
		return 1;
	}
	if (is_rerun)
		ret = cmd_rerun(c, pos[0], ro);
	else if (is_launch)
		ret = cmd_launch(c, pos[0], ro);
	else if (is_dispatch)
		ret = cmd_dispatch(c, pos[0], ro);
	else if (is_run)
		ret = cmd_run(c, pos[0], ro);
	else if (is_wait)
		ret = follow(c, pos[0], ro);
	else if (!strcmp(sub, "plan"))
		ret = cmd_plan(c, pos[0], ro->as_json);
	else if (!strcmp(sub, "list"))
		ret = cmd_list(c, ro);
	else if (!strcmp(sub, "status"))
		ret = cmd_status(c, pos[0], ro->as_json, ro->attempts);
	else if (!strcmp(sub, "explain"))
		ret = cmd_explain(c, pos[0], pos[1], ro->as_json);
	else if (!strcmp(sub, "logs")) {
		/* logs JOB TASK names the task; logs TASK_ID is its id. */
		char id[96];
		if (pos[1] && task_by_name(c, pos[0], pos[1], id))
			ret = 1;
		else if (follow_logs)
			ret = cmd_follow(c, pos[1] ? id : pos[0]);
		else
			ret = cmd_logs(c, pos[1] ? id : pos[0], ro->as_json);
	}
	else if (!strcmp(sub, "results"))
		ret = cmd_results(c, pos[0], ro->out);
	else
		ret = cmd_cancel(c, pos[0]);
	ss_client_close(c);
	return ret;
}

int cli_job_main(int argc, char **argv)
{
	struct run_opts ro = {0};
	int ret = job_main(argc, argv, &ro);
	json_decref(ro.meta);
	return ret;
}
