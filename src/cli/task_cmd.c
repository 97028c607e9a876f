/*
 * task_cmd.c - `seeswarm task run-local` runs one task through the agent's
 * executor on this machine and prints the result and a signed receipt;
 * `seeswarm task digest` prints a bundle's digest and canonical listing.
 *
 * Exit status of run-local: 0 when the task exited 0 and its outputs were
 * accepted, 1 when the task failed (any other outcome, reported as the
 * task's failure), 2 on a usage error, 3 when the executor refused or could
 * not run the task (not root, policy, bad input files).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent/exec/exec.h"
#include "attest/ca.h"
#include "cli/cli.h"
#include "core/core.h"

/* Entry point; the lead adds this prototype to cli/cli.h with the command table entry. */
int cli_task_main(int argc, char **argv);

static const char usage_text[] =
	"usage: seeswarm task run-local --bundle DIR|TAR [options] -- ARGV...\n"
	"       seeswarm task digest DIR|TAR [--listing]\n"
	"\n"
	"run-local runs one task in the agent's sandbox (needs root) and prints the\n"
	"result as key=value lines, then writes the signed receipt.\n"
	"\n"
	"  --bundle DIR|TAR    the task's code, mounted read-only at /bundle (cwd); a tar\n"
	"                      (plain or gzip) is unpacked first, refusing anything but\n"
	"                      relative files, directories and symlinks\n"
	"  --manifest FILE     task spec JSON (argv, env, inputs, outputs, resources)\n"
	"  --input NAME=FILE   an input file, visible read-only as /in/NAME (repeatable)\n"
	"  --output PATH       a declared output under /out (repeatable; default: all files)\n"
	"  --env KEY=VALUE     an environment variable (repeatable)\n"
	"  --mem SIZE          memory limit (default 256M)\n"
	"  --cpu MILLICORES    CPU quota (default 1000; 0 = none)\n"
	"  --pids N            pids limit (default 64)\n"
	"  --disk SIZE         size of /tmp (default 64M)\n"
	"  --out-cap SIZE      size of /out and of all outputs (default 64M)\n"
	"  --timeout DURATION  wall-clock limit, e.g. 500ms, 5s (default 60s)\n"
	"  --net               allow network egress (default: none)\n"
	"  --out DIR           copy the outputs into DIR (must exist)\n"
	"  --receipt FILE      write the receipt to FILE (default: stdout)\n"
	"  --key FILE --cert FILE  signing key and certificate; generated (self-signed)\n"
	"                      when the files do not exist\n"
	"  --node-id ID        node id in the receipt (default: the certificate CN, or\n"
	"                      \"local\")\n"
	"  --allow DIGEST      bundle digest allow-list entry (repeatable)\n"
	"  --shared-netns      reuse one empty network namespace (faster)\n"
	"  --state-dir DIR     executor state (default /run/seeswarm-exec)\n"
	"\n"
	"Without --key/--cert an ephemeral key and self-signed certificate are written\n"
	"to a new directory under /tmp; verify with\n"
	"  seeswarm receipt verify RECEIPT --ca THAT_DIR/node.pem\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-')
		return SS_EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/*
 * A bundle given as a tar file is unpacked into a new directory below a
 * fresh temporary one (*tmp, which the caller removes with dir_remove_tree
 * when tmp[0] is set); a directory is used as it is. Returns the directory
 * to use (dirbuf or path), or NULL after printing why.
 */
static const char *bundle_dir(const char *path, char tmp[64], char *dirbuf, size_t len)
{
	struct stat st;
	char why[300];
	tmp[0] = '\0';
	if (stat(path, &st) != 0) {
		fprintf(stderr, "error: bundle %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
		return path;
	snprintf(tmp, 64, "/tmp/ss-bundle-XXXXXX");
	if (!mkdtemp(tmp)) {
		fprintf(stderr, "error: cannot create a temporary directory: %s\n", strerror(errno));
		tmp[0] = '\0';
		return NULL;
	}
	snprintf(dirbuf, len, "%s/bundle", tmp);
	int rc = exec_bundle_unpack_tar(path, dirbuf, why, sizeof why);
	if (rc) {
		fprintf(stderr, "error: bundle %s: %s (%s)\n", path, why, ss_strerror(rc));
		return NULL;
	}
	return dirbuf;
}

static int digest_main(int argc, char **argv)
{
	uint8_t d[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	struct buf canon;
	bool listing = false;
	const char *dir = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listing"))
			listing = true;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout, 0);
		else if (argv[i][0] == '-' || dir)
			return usage(stderr, 2);
		else
			dir = argv[i];
	}
	if (!dir)
		return usage(stderr, 2);
	char tmp[64], unpacked[96];
	int ret = 1;
	buf_init(&canon);
	const char *use = bundle_dir(dir, tmp, unpacked, sizeof unpacked);
	int rc = use ? exec_bundle_digest(use, d, &canon) : SS_EINVAL;
	if (use && rc) {
		fprintf(stderr, "error: bundle %s: %s\n", dir, ss_strerror(rc));
	} else if (use) {
		hex_encode(d, SHA256_LEN, hex);
		if (listing)
			fwrite(canon.data, 1, canon.len, stdout);
		printf("%s\n", hex);
		ret = 0;
	}
	buf_free(&canon);
	if (tmp[0])
		dir_remove_tree(tmp);
	return ret;
}

/* Loads --key/--cert, creating a self-signed pair there when both are missing. */
static int load_identity(const char *keyf, const char *certf, const char *node_id,
			 EVP_PKEY **key, X509 **cert, char **made_dir)
{
	struct stat st;
	char *kp = NULL, *cp = NULL;
	int rc = 0;

	*made_dir = NULL;
	if (keyf && certf && stat(keyf, &st) == 0 && stat(certf, &st) == 0) {
		if ((rc = pem_read_key(keyf, key)) || (rc = pem_read_cert(certf, cert)))
			fprintf(stderr, "error: cannot load %s / %s: %s\n", keyf, certf,
				ss_strerror(rc));
		return rc;
	}
	if ((keyf && !certf) || (!keyf && certf)) {
		fprintf(stderr, "error: --key and --cert go together\n");
		return SS_EINVAL;
	}
	if ((rc = exec_ephemeral_identity(node_id, key, cert))) {
		fprintf(stderr, "error: cannot create an ephemeral identity: %s\n", ss_strerror(rc));
		return rc;
	}
	if (!keyf) {
		char tmpl[] = "/tmp/seeswarm-receipt-XXXXXX";
		if (!mkdtemp(tmpl)) {
			fprintf(stderr, "error: mkdtemp: %s\n", strerror(errno));
			return SS_EIO;
		}
		*made_dir = xstrdup(tmpl);
		kp = xasprintf("%s/node.key", tmpl);
		cp = xasprintf("%s/node.pem", tmpl);
		keyf = kp;
		certf = cp;
	}
	if ((rc = pem_write_key(keyf, *key)) || (rc = pem_write_cert(certf, *cert, 0644)))
		fprintf(stderr, "error: cannot write %s / %s: %s\n", keyf, certf, ss_strerror(rc));
	free(kp);
	free(cp);
	return rc;
}

static void print_result(FILE *f, const struct exec_sandbox *sb, const struct exec_result *r)
{
	char hex[2 * SHA256_LEN + 1];
	fprintf(f, "status=%s\n", exec_status_name(r->status));
	if (r->status == EXEC_SIGNALED || r->status == EXEC_TIMEOUT || r->status == EXEC_OOM)
		fprintf(f, "signal=%d\n", r->code);
	else
		fprintf(f, "exit_code=%d\n", r->code);
	fprintf(f, "message=%s\n", r->msg);
	hex_encode(r->code_digest, SHA256_LEN, hex);
	fprintf(f, "code_digest=%s\n", hex);
	for (size_t i = 0; i < r->n_inputs; i++) {
		hex_encode(r->inputs[i].sha256, SHA256_LEN, hex);
		fprintf(f, "input.%s=%s %" PRIu64 "\n", r->inputs[i].name, hex, r->inputs[i].size);
	}
	for (size_t i = 0; i < r->n_outputs; i++) {
		hex_encode(r->outputs[i].sha256, SHA256_LEN, hex);
		fprintf(f, "output.%s=%s %" PRIu64 "\n", r->outputs[i].name, hex, r->outputs[i].size);
	}
	fprintf(f, "cpu_ns=%" PRIu64 "\npeak_memory_bytes=%" PRIu64 "\nwall_ms=%" PRIu64
		   "\noom_kills=%" PRIu64 "\npids_limit_hit=%d\n",
		r->usage.cpu_ns, r->usage.peak_mem_bytes, r->usage.wall_ms, r->usage.oom_kills,
		r->usage.pids_limit_hit ? 1 : 0);
	fprintf(f, "sandbox=%s\n", exec_sandbox_describe(sb));
	fprintf(f, "stdout_bytes=%zu%s\nstderr_bytes=%zu%s\n", r->out.len,
		r->out_truncated ? " (truncated)" : "", r->err_out.len,
		r->err_truncated ? " (truncated)" : "");
	if (r->out.len) {
		fputs("--- task stdout ---\n", f);
		fwrite(r->out.data, 1, r->out.len, f);
		if (r->out.data[r->out.len - 1] != '\n')
			fputc('\n', f);
	}
	if (r->err_out.len) {
		fputs("--- task stderr ---\n", f);
		fwrite(r->err_out.data, 1, r->err_out.len, f);
		if (r->err_out.data[r->err_out.len - 1] != '\n')
			fputc('\n', f);
	}
	if (r->out.len || r->err_out.len)
		fputs("--- end ---\n", f);
}

static int run_local(int argc, char **argv)
{
	struct exec_spec spec;
	struct exec_sandbox_opts so = {0};
	struct exec_sandbox *sb = NULL;
	struct exec_result res;
	const char *bundle = NULL, *manifest = NULL, *out_dir = NULL, *receipt_path = NULL;
	char bundle_tmp[64] = "", bundle_buf[96];
	const char *keyf = NULL, *certf = NULL, *node_id = NULL;
	uint8_t (*allow)[SHA256_LEN] = NULL;
	size_t n_allow = 0;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *made_dir = NULL, *receipt = NULL, *mjson = NULL;
	size_t rlen = 0, mlen = 0;
	char why[256], cn[128];
	bool have_res = false, argv_given = false;
	int ret = 2, rc;

	exec_spec_init(&spec);
	memset(&res, 0, sizeof(res));
	/*
	 * Options are read twice: --manifest first, so that flags override it.
	 * argv[1..argc-1] are never NULL, so a matched --manifest always has a
	 * value; whether one was given is tracked apart from the pointer.
	 */
	bool have_manifest = false;
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *v = NULL;
		if (cli_opt_value(argc, argv, &i, "--manifest", &v) == 1) {
			manifest = v;
			have_manifest = true;
		}
	}
	if (have_manifest) {
		if (file_read(manifest, EXEC_SPEC_MAX_JSON, &mjson, &mlen)) {
			fprintf(stderr, "error: cannot read %s\n", manifest);
			goto out;
		}
		exec_spec_free(&spec);
		if (exec_spec_parse(mjson, mlen, &spec, why, sizeof(why))) {
			fprintf(stderr, "error: %s: %s\n", manifest, why);
			goto out;
		}
	}
	int i;
	for (i = 1; i < argc; i++) {
		const char *v = NULL;
		int r;
		uint64_t x;
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			ret = usage(stdout, 0);
			goto out;
		}
		if (!strcmp(argv[i], "--net")) {
			spec.network = true;
			continue;
		}
		if (!strcmp(argv[i], "--shared-netns")) {
			so.shared_netns = true;
			continue;
		}
#define OPT(name) ((r = cli_opt_value(argc, argv, &i, name, &v)) != 0)
		if (OPT("--manifest")) {
		} else if (OPT("--bundle")) {
			bundle = v;
		} else if (OPT("--input")) {
			char *eq = v ? strchr(v, '=') : NULL;
			if (r > 0 && eq) {
				char *name = xstrndup(v, (size_t)(eq - v));
				struct exec_input *in = NULL;
				for (size_t k = 0; k < spec.n_inputs; k++)
					if (!strcmp(spec.inputs[k].name, name))
						in = &spec.inputs[k];
				if (in && !in->path)
					in->path = xstrdup(eq + 1); /* binds a manifest input */
				else if (exec_spec_add_input(&spec, name, eq + 1))
					r = -1;
				free(name);
			} else {
				r = -1;
			}
		} else if (OPT("--output")) {
			if (r > 0 && exec_spec_add_output(&spec, v))
				r = -1;
		} else if (OPT("--env")) {
			if (r > 0 && exec_spec_add_env(&spec, v))
				r = -1;
		} else if (OPT("--mem")) {
			if (r > 0 && !parse_size(v, &x))
				spec.res.memory_bytes = x;
			else
				r = -1;
		} else if (OPT("--disk")) {
			if (r > 0 && !parse_size(v, &x))
				spec.res.disk_bytes = x;
			else
				r = -1;
		} else if (OPT("--out-cap")) {
			if (r > 0 && !parse_size(v, &x))
				spec.res.output_bytes = x;
			else
				r = -1;
		} else if (OPT("--timeout")) {
			if (r > 0 && !parse_duration_ms(v, &x))
				spec.res.timeout_ms = x;
			else
				r = -1;
		} else if (OPT("--pids")) {
			if (r < 0 || parse_u32(v, &spec.res.pids))
				r = -1;
		} else if (OPT("--cpu")) {
			if (r < 0 || parse_u32(v, &spec.res.cpu_millicores))
				r = -1;
		} else if (OPT("--out")) {
			out_dir = v;
		} else if (OPT("--receipt")) {
			receipt_path = v;
		} else if (OPT("--key")) {
			keyf = v;
		} else if (OPT("--cert")) {
			certf = v;
		} else if (OPT("--node-id")) {
			node_id = v;
		} else if (OPT("--state-dir")) {
			so.state_dir = v;
		} else if (OPT("--allow")) {
			allow = xrealloc(allow, (n_allow + 1) * SHA256_LEN);
			if (r < 0 || strlen(v) != 2 * SHA256_LEN || hex_decode(v, allow[n_allow], SHA256_LEN))
				r = -1;
			n_allow++;
		} else {
			fprintf(stderr, "error: unknown option '%s'\n", argv[i]);
			goto out;
		}
#undef OPT
		if (r < 0) {
			fprintf(stderr, "error: invalid value for %s\n", argv[i - (v ? 1 : 0)]);
			goto out;
		}
	}
	if (i < argc) {
		/* Command-line argv replaces the manifest's. */
		for (size_t k = 0; k < spec.argc; k++)
			free(spec.argv[k]);
		spec.argc = 0;
		spec.argv[0] = NULL;
		argv_given = true;
		for (; i < argc; i++)
			if (exec_spec_add_arg(&spec, argv[i])) {
				fprintf(stderr, "error: too many or too long arguments\n");
				goto out;
			}
	}
	if (!bundle || (!argv_given && spec.argc == 0)) {
		fprintf(stderr, "error: --bundle and a command (after --) are required\n");
		usage(stderr, 2);
		goto out;
	}
	if (node_id && !ident_valid(node_id)) {
		fprintf(stderr, "error: --node-id must be an identifier\n");
		goto out;
	}
	if (exec_spec_validate(&spec, why, sizeof(why))) {
		fprintf(stderr, "error: %s\n", why);
		goto out;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "error: seeswarm task run-local needs root: the sandbox creates "
				"namespaces, mounts and cgroups. Run it with sudo.\n");
		ret = 3;
		goto out;
	}

	ret = 3;
	if (load_identity(keyf, certf, node_id ? node_id : "local", &key, &cert, &made_dir))
		goto out;
	if (!node_id && !crypto_cert_cn(cert, cn, sizeof(cn)) && ident_valid(cn))
		node_id = cn;
	if (!node_id)
		node_id = "local";

	so.allow = (const uint8_t(*)[SHA256_LEN])allow;
	so.n_allow = n_allow;
	if ((rc = exec_sandbox_new(&sb, &so))) {
		fprintf(stderr, "error: cannot prepare the sandbox: %s\n", ss_strerror(rc));
		goto out;
	}
	const char *bdir = bundle_dir(bundle, bundle_tmp, bundle_buf, sizeof bundle_buf);
	if (!bdir)
		goto out;
	rc = exec_run(sb, &spec, bdir, out_dir, &res);
	have_res = true;
	if (rc) {
		fprintf(stderr, "error: task refused: %s (%s)\n", res.msg, ss_strerror(rc));
		goto out;
	}
	struct exec_receipt_info info = {.node_id = node_id, .attest_digest = NULL};
	if ((rc = exec_receipt_build(&spec, &res, &info, key, cert, &receipt, &rlen))) {
		fprintf(stderr, "error: cannot sign the receipt: %s\n", ss_strerror(rc));
		goto out;
	}
	FILE *rf = receipt_path ? stdout : stderr;
	print_result(rf, sb, &res);
	if (made_dir)
		fprintf(rf, "ephemeral_cert=%s/node.pem\n", made_dir);
	if (receipt_path) {
		if ((rc = file_write_atomic(receipt_path, receipt, rlen, 0644))) {
			fprintf(stderr, "error: cannot write %s: %s\n", receipt_path, ss_strerror(rc));
			goto out;
		}
		fprintf(rf, "receipt=%s\n", receipt_path);
	} else {
		fwrite(receipt, 1, rlen, stdout);
	}
	ret = exec_result_ok(&res) ? 0 : 1;
out:
	if (bundle_tmp[0])
		dir_remove_tree(bundle_tmp);
	if (have_res)
		exec_result_free(&res);
	exec_sandbox_free(sb);
	exec_spec_free(&spec);
	EVP_PKEY_free(key);
	X509_free(cert);
	free(allow);
	free(made_dir);
	free(receipt);
	free(mjson);
	return ret;
}

int cli_task_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help"))
		return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
	if (!strcmp(argv[1], "run-local"))
		return run_local(argc - 1, argv + 1);
	if (!strcmp(argv[1], "digest"))
		return digest_main(argc - 1, argv + 1);
	fprintf(stderr, "seeswarm task: unknown subcommand '%s'\n", argv[1]);
	return usage(stderr, 2);
}
