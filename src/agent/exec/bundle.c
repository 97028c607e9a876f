/*
 * bundle.c - the task package: spec handling, the task manifest parser, the
 * canonical bundle listing and its digest, and file digests.
 *
 * The canonical listing of a bundle directory is text:
 *   line 1: "seeswarm-bundle-v1 <root mode, 4 octal digits>\n"
 *   then one line per entry below the root, sorted by relative path (bytes,
 *   strcmp order), each path using '/' separators:
 *     directory: "d <mode> <path>\n"
 *     file:      "f <mode> <size> <sha256 hex> <path>\n"
 *     symlink:   "l <path>\t<target>\n"   (the link itself; never followed)
 * <mode> is st_mode & 07777 as four octal digits. Names may not contain
 * bytes below 0x20 or 0x7f, so a line is unambiguous. Device files, fifos
 * and sockets are refused. The bundle digest is the SHA-256 of the listing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "agent/exec/exec.h"

#define LISTING_MAGIC "seeswarm-bundle-v1"

/* ---- spec -------------------------------------------------------------- */

void exec_resources_default(struct exec_resources *r)
{
	r->cpu_millicores = 1000;
	r->memory_bytes = 256ULL << 20;
	r->disk_bytes = 64ULL << 20;
	r->output_bytes = 64ULL << 20;
	r->pids = 64;
	r->timeout_ms = 60000;
}

void exec_spec_init(struct exec_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->task_id = xstrdup("local");
	spec->job_id = xstrdup("local");
	spec->attempt = 1;
	spec->argv = xcalloc(1, sizeof(char *));
	spec->env = xcalloc(1, sizeof(char *));
	exec_resources_default(&spec->res);
}

static void strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void exec_spec_free(struct exec_spec *spec)
{
	if (!spec)
		return;
	free(spec->task_id);
	free(spec->job_id);
	strv_free(spec->argv, spec->argc);
	strv_free(spec->env, spec->envc);
	for (size_t i = 0; i < spec->n_inputs; i++) {
		free(spec->inputs[i].name);
		free(spec->inputs[i].path);
	}
	free(spec->inputs);
	strv_free(spec->outputs, spec->n_outputs);
	free(spec->cwd);
	memset(spec, 0, sizeof(*spec));
}

/* Appends s to a NULL-terminated vector of n entries. */
static int strv_push(char ***v, size_t *n, size_t max, const char *s)
{
	if (*n >= max)
		return SS_ELIMIT;
	if (strlen(s) > EXEC_MAX_ARG_LEN)
		return SS_ETOOBIG;
	*v = xrealloc(*v, (*n + 2) * sizeof(char *));
	(*v)[(*n)++] = xstrdup(s);
	(*v)[*n] = NULL;
	return 0;
}

int exec_spec_add_arg(struct exec_spec *spec, const char *arg)
{
	return strv_push(&spec->argv, &spec->argc, EXEC_MAX_ARGS, arg);
}

int exec_spec_add_env(struct exec_spec *spec, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv)
		return SS_EINVAL;
	return strv_push(&spec->env, &spec->envc, EXEC_MAX_ENV, kv);
}

bool exec_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EXEC_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool exec_relpath_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EXEC_PATH_MAX)
		return false;
	char comp[EXEC_NAME_MAX + 1];
	const char *p = s;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || len > EXEC_NAME_MAX)
			return false;
		memcpy(comp, p, len);
		comp[len] = '\0';
		if (!exec_name_valid(comp))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

int exec_spec_add_input(struct exec_spec *spec, const char *name, const char *path)
{
	if (!exec_name_valid(name))
		return SS_EINVAL;
	if (spec->n_inputs >= EXEC_MAX_INPUTS)
		return SS_ELIMIT;
	for (size_t i = 0; i < spec->n_inputs; i++)
		if (!strcmp(spec->inputs[i].name, name))
			return SS_EEXIST;
	spec->inputs = xrealloc(spec->inputs, (spec->n_inputs + 1) * sizeof(*spec->inputs));
	struct exec_input *in = &spec->inputs[spec->n_inputs++];
	memset(in, 0, sizeof(*in));
	in->name = xstrdup(name);
	in->path = path ? xstrdup(path) : NULL;
	return 0;
}

int exec_spec_add_output(struct exec_spec *spec, const char *path)
{
	if (!exec_relpath_valid(path))
		return SS_EINVAL;
	for (size_t i = 0; i < spec->n_outputs; i++)
		if (!strcmp(spec->outputs[i], path))
			return SS_EEXIST;
	return strv_push(&spec->outputs, &spec->n_outputs, EXEC_MAX_OUTPUTS, path);
}

int exec_spec_validate(const struct exec_spec *spec, char *why, size_t whylen)
{
	if (!spec->task_id || !ident_valid(spec->task_id))
		return why_set(why, whylen, SS_EINVAL, "invalid task id");
	if (!spec->job_id || !ident_valid(spec->job_id))
		return why_set(why, whylen, SS_EINVAL, "invalid job id");
	if (spec->argc < 1 || !spec->argv[0][0])
		return why_set(why, whylen, SS_EINVAL, "argv is empty");
	for (size_t i = 0; i < spec->envc; i++)
		if (!strchr(spec->env[i], '=') || spec->env[i][0] == '=')
			return why_set(why, whylen, SS_EINVAL, "env entry %zu is not KEY=VALUE", i);
	for (size_t i = 0; i < spec->n_inputs; i++)
		if (!spec->inputs[i].path)
			return why_set(why, whylen, SS_EINVAL, "input '%s' has no file",
				       spec->inputs[i].name);
	if (spec->no_out && spec->n_outputs)
		return why_set(why, whylen, SS_EINVAL, "a task without /out cannot declare outputs");
	const struct exec_resources *r = &spec->res;
	if (r->memory_bytes < (4ULL << 20) || r->memory_bytes > (1ULL << 40))
		return why_set(why, whylen, SS_EINVAL, "memory must be 4M..1T");
	if (r->pids < 1 || r->pids > 65536)
		return why_set(why, whylen, SS_EINVAL, "pids must be 1..65536");
	if (r->timeout_ms < 1 || r->timeout_ms > 7 * 24 * 3600 * 1000ULL)
		return why_set(why, whylen, SS_EINVAL, "timeout must be 1ms..7d");
	if (r->disk_bytes < 4096 || r->disk_bytes > (1ULL << 40) || r->output_bytes < 4096 ||
	    r->output_bytes > (1ULL << 40))
		return why_set(why, whylen, SS_EINVAL, "disk and output caps must be 4k..1T");
	if (r->cpu_millicores > 1024 * 1000)
		return why_set(why, whylen, SS_EINVAL, "cpu_millicores too large");
	if (spec->cwd && (spec->cwd[0] != '/' || strlen(spec->cwd) > EXEC_PATH_MAX ||
			  strstr(spec->cwd, "..")))
		return why_set(why, whylen, SS_EINVAL, "cwd must be an absolute path without '..'");
	return 0;
}

/* ---- manifest (spec JSON) ---------------------------------------------- */

static int json_size(json_t *v, uint64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return SS_EINVAL;
		*out = (uint64_t)i;
		return 0;
	}
	if (json_is_string(v))
		return parse_size(json_string_value(v), out);
	return SS_EINVAL;
}

static int json_duration(json_t *v, uint64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return SS_EINVAL;
		*out = (uint64_t)i;
		return 0;
	}
	if (json_is_string(v))
		return parse_duration_ms(json_string_value(v), out);
	return SS_EINVAL;
}

static int parse_resources(json_t *o, struct exec_resources *r, char *why, size_t whylen)
{
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return why_set(why, whylen, SS_EPARSE, "resources must be an object");
	json_object_foreach(o, k, v) {
		uint64_t x = 0;
		int rc;
		if (!strcmp(k, "cpu_millicores") || !strcmp(k, "pids")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > UINT32_MAX)
				return why_set(why, whylen, SS_EPARSE, "resources.%s must be a uint32", k);
			if (!strcmp(k, "pids"))
				r->pids = (uint32_t)json_integer_value(v);
			else
				r->cpu_millicores = (uint32_t)json_integer_value(v);
			continue;
		}
		if (!strcmp(k, "timeout"))
			rc = json_duration(v, &x);
		else
			rc = json_size(v, &x);
		if (rc)
			return why_set(why, whylen, SS_EPARSE, "resources.%s is not a valid value", k);
		if (!strcmp(k, "memory"))
			r->memory_bytes = x;
		else if (!strcmp(k, "disk"))
			r->disk_bytes = x;
		else if (!strcmp(k, "output"))
			r->output_bytes = x;
		else if (!strcmp(k, "timeout"))
			r->timeout_ms = x;
		else
			return why_set(why, whylen, SS_EPARSE, "unknown key resources.%s", k);
	}
	return 0;
}

static int parse_digest_hex(json_t *v, uint8_t out[SHA256_LEN])
{
	const char *s = json_string_value(v);
	if (!s || strlen(s) != 2 * SHA256_LEN)
		return SS_EPARSE;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return SS_EPARSE;
	return hex_decode(s, out, SHA256_LEN) ? SS_EPARSE : 0;
}

static int spec_from_json(json_t *root, struct exec_spec *spec, char *why, size_t whylen)
{
	const char *k;
	json_t *v;
	if (!json_is_object(root))
		return why_set(why, whylen, SS_EPARSE, "the manifest must be a JSON object");
	json_object_foreach(root, k, v) {
		if (!strcmp(k, "task_id") || !strcmp(k, "job_id")) {
			const char *s = json_string_value(v);
			if (!s || !ident_valid(s))
				return why_set(why, whylen, SS_EPARSE, "%s must be an identifier", k);
			char **dst = !strcmp(k, "task_id") ? &spec->task_id : &spec->job_id;
			free(*dst);
			*dst = xstrdup(s);
		} else if (!strcmp(k, "attempt")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > UINT32_MAX)
				return why_set(why, whylen, SS_EPARSE, "attempt must be a uint32");
			spec->attempt = (uint32_t)json_integer_value(v);
		} else if (!strcmp(k, "bundle_digest")) {
			if (parse_digest_hex(v, spec->bundle_digest))
				return why_set(why, whylen, SS_EPARSE, "bundle_digest must be 64 lowercase hex");
			spec->has_bundle_digest = true;
		} else if (!strcmp(k, "argv")) {
			size_t i;
			json_t *a;
			if (!json_is_array(v) || json_array_size(v) < 1 ||
			    json_array_size(v) > EXEC_MAX_ARGS)
				return why_set(why, whylen, SS_EPARSE, "argv must be 1..%d strings",
					       EXEC_MAX_ARGS);
			json_array_foreach(v, i, a) {
				if (!json_is_string(a) || exec_spec_add_arg(spec, json_string_value(a)))
					return why_set(why, whylen, SS_EPARSE, "argv[%zu] is invalid", i);
			}
		} else if (!strcmp(k, "env")) {
			const char *ek;
			json_t *ev;
			if (!json_is_object(v))
				return why_set(why, whylen, SS_EPARSE, "env must be an object");
			json_object_foreach(v, ek, ev) {
				const char *s = json_string_value(ev);
				if (!s || !ek[0] || strchr(ek, '=') || strlen(ek) > 256 ||
				    strlen(s) > EXEC_MAX_ARG_LEN)
					return why_set(why, whylen, SS_EPARSE, "env entry is invalid");
				char *kv = xasprintf("%s=%s", ek, s);
				int rc = exec_spec_add_env(spec, kv);
				free(kv);
				if (rc)
					return why_set(why, whylen, SS_EPARSE, "too many env entries");
			}
		} else if (!strcmp(k, "inputs")) {
			const char *ik;
			json_t *iv;
			if (!json_is_object(v))
				return why_set(why, whylen, SS_EPARSE, "inputs must be an object");
			json_object_foreach(v, ik, iv) {
				if (exec_spec_add_input(spec, ik, NULL))
					return why_set(why, whylen, SS_EPARSE, "input name '%.64s' is invalid", ik);
				struct exec_input *in = &spec->inputs[spec->n_inputs - 1];
				if (json_is_null(iv))
					continue;
				if (parse_digest_hex(iv, in->expect))
					return why_set(why, whylen, SS_EPARSE, "input digest must be 64 lowercase hex");
				in->has_expect = true;
			}
		} else if (!strcmp(k, "outputs")) {
			size_t i;
			json_t *a;
			if (!json_is_array(v) || json_array_size(v) > EXEC_MAX_OUTPUTS)
				return why_set(why, whylen, SS_EPARSE, "outputs must be at most %d paths",
					       EXEC_MAX_OUTPUTS);
			json_array_foreach(v, i, a) {
				if (!json_is_string(a) || exec_spec_add_output(spec, json_string_value(a)))
					return why_set(why, whylen, SS_EPARSE, "outputs[%zu] is invalid", i);
			}
		} else if (!strcmp(k, "network")) {
			if (!json_is_boolean(v))
				return why_set(why, whylen, SS_EPARSE, "network must be a boolean");
			spec->network = json_is_true(v);
		} else if (!strcmp(k, "cwd")) {
			const char *s = json_string_value(v);
			if (!s || s[0] != '/' || strlen(s) > EXEC_PATH_MAX || strstr(s, ".."))
				return why_set(why, whylen, SS_EPARSE, "cwd must be an absolute path");
			free(spec->cwd);
			spec->cwd = xstrdup(s);
		} else if (!strcmp(k, "resources")) {
			int rc = parse_resources(v, &spec->res, why, whylen);
			if (rc)
				return rc;
		} else {
			return why_set(why, whylen, SS_EPARSE, "unknown key '%.64s'", k);
		}
	}
	if (spec->argc < 1)
		return why_set(why, whylen, SS_EPARSE, "argv is missing");
	return 0;
}

int exec_spec_parse(const char *json, size_t len, struct exec_spec *spec, char *why,
		    size_t whylen)
{
	json_error_t jerr;
	json_t *root = NULL;
	int rc;

	exec_spec_init(spec);
	if (len > EXEC_SPEC_MAX_JSON) {
		rc = why_set(why, whylen, SS_ETOOBIG, "manifest larger than %d bytes",
			     EXEC_SPEC_MAX_JSON);
		goto out;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		rc = why_set(why, whylen, SS_EPARSE, "manifest: %s (line %d)", jerr.text, jerr.line);
		goto out;
	}
	rc = spec_from_json(root, spec, why, whylen);
out:
	json_decref(root);
	if (rc) {
		exec_spec_free(spec);
		exec_spec_init(spec);
	}
	return rc;
}

/* ---- digests ----------------------------------------------------------- */

int exec_digest_fd(int fd, int copy_to, uint64_t max, uint8_t out[SHA256_LEN], uint64_t *size)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t chunk[65536];
	uint64_t total = 0;
	unsigned int outlen = SHA256_LEN;
	int rc = 0;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = SS_ECRYPTO;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = SS_EIO;
			goto out;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > max) {
			rc = SS_ETOOBIG;
			goto out;
		}
		if (EVP_DigestUpdate(ctx, chunk, (size_t)n) != 1) {
			rc = SS_ECRYPTO;
			goto out;
		}
		if (copy_to >= 0 && write(copy_to, chunk, (size_t)n) != n) {
			rc = SS_EIO;
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(ctx, out, &outlen) != 1)
		rc = SS_ECRYPTO;
	if (size)
		*size = total;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* ---- canonical bundle listing ----------------------------------------- */

struct entry {
	char *path; /* relative; used as the sort key */
	char *line; /* full listing line, '\n' included */
};

struct walk {
	struct entry *v;
	size_t n, cap;
	uint64_t bytes;
};

static bool name_bytes_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void walk_add(struct walk *w, char *path, char *line)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
	}
	w->v[w->n].path = path;
	w->v[w->n].line = line;
	w->n++;
}

static int walk_dir(struct walk *w, int dfd, const char *prefix, int depth)
{
	DIR *d = NULL;
	struct dirent *de;
	int rc = 0;

	if (depth > EXEC_BUNDLE_MAX_DEPTH)
		return SS_ELIMIT;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return SS_EIO;
	}
	while ((errno = 0, de = readdir(d))) {
		const char *nm = de->d_name;
		struct stat st;
		char *path = NULL;

		if (!strcmp(nm, ".") || !strcmp(nm, ".."))
			continue;
		if (!name_bytes_ok(nm)) {
			rc = SS_EPOLICY;
			goto out;
		}
		if (w->n >= EXEC_BUNDLE_MAX_FILES) {
			rc = SS_ELIMIT;
			goto out;
		}
		path = prefix[0] ? xasprintf("%s/%s", prefix, nm) : xstrdup(nm);
		if (strlen(path) > EXEC_PATH_MAX) {
			free(path);
			rc = SS_ELIMIT;
			goto out;
		}
		if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			free(path);
			rc = SS_EIO;
			goto out;
		}
		unsigned mode = (unsigned)st.st_mode & 07777;
		if (S_ISDIR(st.st_mode)) {
			walk_add(w, path, xasprintf("d %04o %s\n", mode, path));
			int sub = openat(dirfd(d), nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = SS_EIO;
				goto out;
			}
			rc = walk_dir(w, sub, path, depth + 1);
			if (rc)
				goto out;
		} else if (S_ISREG(st.st_mode)) {
			uint8_t sha[SHA256_LEN];
			char hex[2 * SHA256_LEN + 1];
			uint64_t size = 0;
			int fd = openat(dirfd(d), nm, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
			if (fd < 0) {
				free(path);
				rc = SS_EIO;
				goto out;
			}
			rc = exec_digest_fd(fd, -1, EXEC_BUNDLE_MAX_BYTES - w->bytes, sha, &size);
			close(fd);
			if (rc) {
				free(path);
				rc = rc == SS_ETOOBIG ? SS_ELIMIT : rc;
				goto out;
			}
			w->bytes += size;
			hex_encode(sha, SHA256_LEN, hex);
			walk_add(w, path, xasprintf("f %04o %" PRIu64 " %s %s\n", mode, size, hex, path));
		} else if (S_ISLNK(st.st_mode)) {
			char target[EXEC_PATH_MAX + 1];
			ssize_t n = readlinkat(dirfd(d), nm, target, sizeof(target));
			if (n < 0 || (size_t)n >= sizeof(target)) {
				free(path);
				rc = n < 0 ? SS_EIO : SS_ELIMIT;
				goto out;
			}
			target[n] = '\0';
			if (!name_bytes_ok(target) || n == 0) {
				free(path);
				rc = SS_EPOLICY;
				goto out;
			}
			walk_add(w, path, xasprintf("l %s\t%s\n", path, target));
		} else {
			/* Device files, fifos and sockets have no place in code. */
			free(path);
			rc = SS_EPOLICY;
			goto out;
		}
	}
	if (errno)
		rc = SS_EIO;
out:
	closedir(d);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

int exec_bundle_digest(const char *dir, uint8_t out[SHA256_LEN], struct buf *canon)
{
	struct walk w = {0};
	struct stat st;
	EVP_MD_CTX *ctx = NULL;
	unsigned int outlen = SHA256_LEN;
	char head[64];
	int rc;

	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return SS_EIO;
	}
	rc = walk_dir(&w, fd, "", 0); /* walk_dir owns fd */
	if (rc)
		goto out;
	if (w.n > 1)
		qsort(w.v, w.n, sizeof(*w.v), entry_cmp);
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		rc = SS_ECRYPTO;
		goto out;
	}
	snprintf(head, sizeof(head), LISTING_MAGIC " %04o\n", (unsigned)st.st_mode & 07777);
	EVP_DigestUpdate(ctx, head, strlen(head));
	if (canon)
		buf_append(canon, head, strlen(head));
	for (size_t i = 0; i < w.n; i++) {
		EVP_DigestUpdate(ctx, w.v[i].line, strlen(w.v[i].line));
		if (canon)
			buf_append(canon, w.v[i].line, strlen(w.v[i].line));
	}
	if (EVP_DigestFinal_ex(ctx, out, &outlen) != 1)
		rc = SS_ECRYPTO;
out:
	for (size_t i = 0; i < w.n; i++) {
		free(w.v[i].path);
		free(w.v[i].line);
	}
	free(w.v);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* Checks a relative bundle path: no empty, "." or ".." components, no control bytes. */
static bool listing_path_ok(const char *p, size_t n)
{
	if (n == 0 || n > EXEC_PATH_MAX || p[0] == '/' || p[n - 1] == '/')
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && ((unsigned char)p[i] < 0x20 || p[i] == 0x7f))
			return false;
		if (i == n || p[i] == '/') {
			size_t len = i - start;
			if (len == 0 || (len == 1 && p[start] == '.') ||
			    (len == 2 && p[start] == '.' && p[start + 1] == '.'))
				return false;
			start = i + 1;
		}
	}
	return true;
}

static bool is_octal_mode(const char *p)
{
	for (int i = 0; i < 4; i++)
		if (p[i] < '0' || p[i] > '7')
			return false;
	return p[0] <= '7';
}

static bool is_lower_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* Compares two byte strings the way strcmp would compare their NUL-terminated copies. */
static int path_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	size_t n = an < bn ? an : bn;
	int c = memcmp(a, b, n);
	if (c)
		return c;
	return an < bn ? -1 : an > bn;
}

int exec_bundle_listing_check(const char *text, size_t len, size_t *count)
{
	const char *end = text + len;
	const char *p = text;
	const char *prev = NULL;
	size_t prev_len = 0, n = 0;

	const char *nl = memchr(p, '\n', len);
	size_t mlen = strlen(LISTING_MAGIC);
	if (!nl || (size_t)(nl - p) != mlen + 5 || memcmp(p, LISTING_MAGIC " ", mlen + 1) != 0 ||
	    !is_octal_mode(p + mlen + 1))
		return SS_EPARSE;
	p = nl + 1;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return SS_ETRUNC;
		size_t ll = (size_t)(nl - p);
		const char *path;
		size_t plen;
		if (++n > EXEC_BUNDLE_MAX_FILES)
			return SS_ELIMIT;
		if (ll > 2 && p[0] == 'd' && p[1] == ' ') {
			if (ll < 8 || !is_octal_mode(p + 2) || p[6] != ' ')
				return SS_EPARSE;
			path = p + 7;
			plen = ll - 7;
		} else if (ll > 2 && p[0] == 'f' && p[1] == ' ') {
			if (ll < 8 || !is_octal_mode(p + 2) || p[6] != ' ')
				return SS_EPARSE;
			const char *q = p + 7;
			const char *sp = memchr(q, ' ', (size_t)(nl - q));
			if (!sp || sp == q || sp - q > 20 || (q[0] == '0' && sp - q > 1))
				return SS_EPARSE;
			for (const char *d = q; d < sp; d++)
				if (*d < '0' || *d > '9')
					return SS_EPARSE;
			q = sp + 1;
			if (nl - q < 2 * SHA256_LEN + 2 || !is_lower_hex(q, 2 * SHA256_LEN) ||
			    q[2 * SHA256_LEN] != ' ')
				return SS_EPARSE;
			path = q + 2 * SHA256_LEN + 1;
			plen = (size_t)(nl - path);
		} else if (ll > 2 && p[0] == 'l' && p[1] == ' ') {
			path = p + 2;
			const char *tab = memchr(path, '\t', (size_t)(nl - path));
			if (!tab)
				return SS_EPARSE;
			plen = (size_t)(tab - path);
			size_t tlen = (size_t)(nl - tab - 1);
			if (tlen == 0 || tlen > EXEC_PATH_MAX)
				return SS_EPARSE;
			for (const char *t = tab + 1; t < nl; t++)
				if ((unsigned char)*t < 0x20 || *t == 0x7f)
					return SS_EPARSE;
		} else {
			return SS_EPARSE;
		}
		if (!listing_path_ok(path, plen))
			return SS_EPARSE;
		if (prev && path_cmp(prev, prev_len, path, plen) >= 0)
			return SS_EPARSE; /* not sorted, or a duplicate */
		prev = path;
		prev_len = plen;
		p = nl + 1;
	}
	if (count)
		*count = n;
	return 0;
}
