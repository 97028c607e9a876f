/*
 * attest_cmd.c - `seeswarm attest`: offline evidence verification and
 * collateral import (docs/attestation.md).
 *
 *   seeswarm attest verify --type T --evidence FILE [--certs FILE]...
 *       [--collateral DIR] [--policy FILE] [--nonce HEX] [--at RFC3339] [--json]
 *   seeswarm attest import --collateral DIR [--dcap-collateral FILE.json]...
 *       [--intel-root FILE] [--amd-certs FILE...] [--tpm-ek-ca FILE...]
 *
 * verify runs the registered verifier of type T once, with the verification
 * time pinned by --at, and prints the claims and the appraisal. Exit status:
 * 0 when the evidence verifies and the appraisal is affirming or warning,
 * 1 when it is contraindicated or verification fails, 2 on a usage or input
 * error (unreadable file, bad policy, bad nonce or time).
 *
 * import fills the offline collateral cache with the layouts the format
 * owners define: intel/ through dcap.h, amd/ (ARK/ASK/ASVK PEMs by subject,
 * VCEKs by chip id and TCB) and tpm/ek-ca/ here. Directories are created
 * with mode 0700 and files written atomically with mode 0644.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/attest.h"
#include "attest/dcap.h"
#include "attest/snp.h"
#include "cli/cli.h"
#include "core/core.h"

/* Entry point; the lead adds this prototype to cli/cli.h with the command table entry. */
int cli_attest_main(int argc, char **argv);

/* Bounds on everything read from files given on the command line. */
#define EVIDENCE_MAX (1024 * 1024)
#define CERT_FILE_MAX (1024 * 1024)
#define POLICY_MAX (1024 * 1024)
#define MAX_CERTS 32
#define MAX_FILES 64
#define NONCE_MAX 64
#define TPM_EK_CA_MAX_FILES 64

/* Every evidence type name the CLI knows; attest_verifier_find says which are built in. */
static const char *const known_types[] = {"tpm", "sev-snp", "tdx", "sgx", "sim"};

static const char usage_text[] =
	"usage: seeswarm attest verify --type TYPE --evidence FILE [--certs FILE]...\n"
	"                              [--collateral DIR] [--policy FILE] [--nonce HEX]\n"
	"                              [--at RFC3339] [--json]\n"
	"       seeswarm attest import --collateral DIR [--dcap-collateral FILE.json]...\n"
	"                              [--intel-root FILE] [--amd-certs FILE...]\n"
	"                              [--tpm-ek-ca FILE...]\n"
	"\n"
	"verify: checks evidence offline and appraises it against a policy.\n"
	"  --type        tpm | sev-snp | tdx | sgx | sim\n"
	"  --evidence    raw evidence bytes (at most 1 MiB)\n"
	"  --certs       PEM (any number of certificates) or DER; repeatable; passed in order\n"
	"  --collateral  offline collateral cache directory (see docs/attestation.md)\n"
	"  --policy      JSON policy; uses policy[TYPE] when that key exists, else the object\n"
	"  --nonce       expected report-data prefix, 1..64 bytes in hex (the rest must be zero)\n"
	"  --at          verification time, e.g. 2025-06-01T00:00:00Z (default: now)\n"
	"  --json        print one JSON object instead of text\n"
	"exit status: 0 verified and affirming or warning; 1 contraindicated or not verified;\n"
	"             2 usage or input error\n"
	"\n"
	"import: fills the collateral cache (dirs 0700, files 0644).\n"
	"  --dcap-collateral  Intel PCS \"QuoteCollateralV3\" JSON -> intel/\n"
	"  --intel-root       the Intel SGX Root CA (must be the pinned one) -> intel/root_ca.pem\n"
	"  --amd-certs        ARK/ASK/ASVK (-> amd/<product>/) and Milan/Genoa VCEKs\n"
	"                     (-> amd/vcek/<chip_id>-<reported_tcb>.der)\n"
	"  --tpm-ek-ca        TPM manufacturer EK CA certificates -> tpm/ek-ca/\n";

static int usage(FILE *f, int status)
{
	fputs(usage_text, f);
	return status;
}

/* ---- small helpers -------------------------------------------------------- */

/* A list of DER certificates (xmalloc'd copies). */
struct certlist {
	uint8_t *der[MAX_CERTS];
	size_t len[MAX_CERTS];
	size_t n;
};

static void certlist_free(struct certlist *cl)
{
	for (size_t i = 0; i < cl->n; i++)
		free(cl->der[i]);
	cl->n = 0;
}

static int certlist_add(struct certlist *cl, X509 *x, char *err, size_t errlen)
{
	unsigned char *d = NULL;
	int dl;
	if (cl->n >= MAX_CERTS) {
		snprintf(err, errlen, "more than %d certificates", MAX_CERTS);
		return SS_ELIMIT;
	}
	dl = i2d_X509(x, &d);
	if (dl <= 0) {
		snprintf(err, errlen, "cannot re-encode a certificate");
		return SS_EPARSE;
	}
	cl->der[cl->n] = xmalloc((size_t)dl);
	memcpy(cl->der[cl->n], d, (size_t)dl);
	cl->len[cl->n] = (size_t)dl;
	cl->n++;
	OPENSSL_free(d);
	return 0;
}

/*
 * Appends every certificate of the file at path to cl: PEM (any number of
 * CERTIFICATE blocks; other blocks are skipped) or DER (one or more
 * concatenated certificates). A file without a certificate is an error.
 * Returns 0 or a negative SS_E* code with err set.
 */
static int certs_load(const char *path, struct certlist *cl, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0, before = cl->n;
	BIO *bio = NULL;
	X509 *x = NULL;
	int rc = file_read(path, CERT_FILE_MAX, &data, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read certificate file %s: %s", path, ss_strerror(rc));
		goto out;
	}
	if (memmem(data, len, "-----BEGIN", 10)) {
		bio = BIO_new_mem_buf(data, (int)len);
		if (!bio)
			fatal("BIO_new_mem_buf failed");
		while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			rc = certlist_add(cl, x, err, errlen);
			X509_free(x);
			x = NULL;
			if (rc < 0)
				goto out;
		}
		/* The loop ends at the end of the input (no more start lines) or at a bad block. */
		unsigned long e = ERR_peek_last_error();
		if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
			snprintf(err, errlen, "certificate file %s: a PEM certificate does not parse",
				 path);
			rc = SS_EPARSE;
			goto out;
		}
	} else {
		const unsigned char *p = (const unsigned char *)data, *end = p + len;
		while (p < end) {
			x = d2i_X509(NULL, &p, (long)(end - p));
			if (!x) {
				snprintf(err, errlen,
					 "certificate file %s is neither PEM nor DER certificates", path);
				rc = SS_EPARSE;
				goto out;
			}
			rc = certlist_add(cl, x, err, errlen);
			X509_free(x);
			x = NULL;
			if (rc < 0)
				goto out;
		}
	}
	if (cl->n == before) {
		snprintf(err, errlen, "certificate file %s holds no certificate", path);
		rc = SS_EPARSE;
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	X509_free(x);
	BIO_free(bio);
	free(data);
	return rc;
}

/* Recognises "--name VALUE" and "--name=VALUE"; advances *i past the value. */
static bool take_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return false;
	if (argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return true;
	}
	if (argv[*i][n] != '\0')
		return false;
	if (*i + 1 >= argc) {
		*val = NULL;
		return true;
	}
	*val = argv[++*i];
	return true;
}

static void list_types(FILE *f)
{
	bool first = true;
	for (size_t i = 0; i < ARRAY_LEN(known_types); i++) {
		if (!attest_verifier_find(known_types[i]))
			continue;
		fprintf(f, "%s%s", first ? "" : ", ", known_types[i]);
		first = false;
	}
	if (first)
		fputs("(none)", f);
}

/* ---- claims printing ------------------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_scalar(const json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

static void print_scalar(FILE *f, const json_t *v)
{
	if (json_is_string(v))
		fputs(json_string_value(v), f);
	else if (json_is_integer(v))
		fprintf(f, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		fprintf(f, "%g", json_real_value(v));
	else if (json_is_true(v))
		fputs("true", f);
	else if (json_is_false(v))
		fputs("false", f);
	else
		fputs("null", f);
}

static void print_value(FILE *f, const char *key, const json_t *v, int indent);

/* Prints an object's members in sorted key order, each at indent. */
static void print_object(FILE *f, const json_t *obj, int indent)
{
	size_t n = json_object_size(obj), i = 0;
	const char **keys = xcalloc(n ? n : 1, sizeof *keys);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)obj, k, v)
	{
		if (i < n)
			keys[i++] = k;
	}
	qsort(keys, i, sizeof *keys, key_cmp);
	for (size_t j = 0; j < i; j++)
		print_value(f, keys[j], json_object_get(obj, keys[j]), indent);
	free(keys);
}

/*
 * Prints "key: value"; nested objects follow on indented lines; arrays of
 * scalars are joined with ", "; arrays of objects list each element as "-".
 */
static void print_value(FILE *f, const char *key, const json_t *v, int indent)
{
	if (json_is_object(v)) {
		fprintf(f, "%*s%s:\n", indent, "", key);
		print_object(f, v, indent + 2);
		return;
	}
	if (json_is_array(v)) {
		bool flat = true;
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			if (!is_scalar(e))
				flat = false;
		}
		if (flat) {
			fprintf(f, "%*s%s: ", indent, "", key);
			json_array_foreach(v, i, e)
			{
				if (i)
					fputs(", ", f);
				print_scalar(f, e);
			}
			fputc('\n', f);
			return;
		}
		fprintf(f, "%*s%s:\n", indent, "", key);
		json_array_foreach(v, i, e)
		{
			print_value(f, "-", e, indent + 2);
		}
		return;
	}
	fprintf(f, "%*s%s: ", indent, "", key);
	print_scalar(f, v);
	fputc('\n', f);
}

/* ---- verify ---------------------------------------------------------------- */

/*
 * Loads the policy file and picks this format's object: policy[type] when
 * the document has that key, else the whole document. *doc owns the result.
 */
static int policy_load(const char *path, const char *type, json_t **doc, const json_t **pol,
		       char *err, size_t errlen)
{
	json_error_t jerr;
	char *text = NULL;
	size_t len = 0;
	int rc = file_read(path, POLICY_MAX, &text, &len);
	*doc = NULL;
	*pol = NULL;
	if (rc < 0) {
		snprintf(err, errlen, "cannot read policy %s: %s", path, ss_strerror(rc));
		goto out;
	}
	*doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!*doc) {
		snprintf(err, errlen, "policy %s: line %d: %s", path, jerr.line, jerr.text);
		rc = SS_ECONFIG;
		goto out;
	}
	if (!json_is_object(*doc)) {
		snprintf(err, errlen, "policy %s is not a JSON object", path);
		rc = SS_ECONFIG;
		goto out;
	}
	const json_t *sub = json_object_get(*doc, type);
	if (sub && !json_is_object(sub)) {
		snprintf(err, errlen, "policy %s: \"%s\" is not an object", path, type);
		rc = SS_ECONFIG;
		goto out;
	}
	*pol = sub ? sub : *doc;
	rc = 0;
out:
	if (rc < 0) {
		json_decref(*doc);
		*doc = NULL;
	}
	free(text);
	return rc;
}

static int parse_nonce(const char *hex, uint8_t *out, size_t *len)
{
	size_t n = strlen(hex);
	if (n < 2 || n > 2 * NONCE_MAX || n % 2)
		return SS_EINVAL;
	if (hex_decode(hex, out, n / 2) != 0)
		return SS_EINVAL;
	*len = n / 2;
	return 0;
}

/* Prints the result; claims may be NULL (verification failed). */
static void report(const char *type, int vrc, const struct attest_output *out, bool as_json)
{
	char digest_hex[65] = "";
	if (out->claims) {
		/* The same canonical form the manager digests (compact, sorted keys). */
		char *canon = json_dumps(out->claims, JSON_COMPACT | JSON_SORT_KEYS);
		uint8_t d[32];
		if (canon) {
			sha256(canon, strlen(canon), d);
			hex_encode(d, 32, digest_hex);
			free(canon);
		} else {
			fatal("json_dumps failed");
		}
	}
	if (as_json) {
		json_t *j = json_object();
		json_object_set_new(j, "type", json_string(type));
		json_object_set_new(j, "verified", json_boolean(vrc == 0));
		json_object_set_new(j, "status",
				    json_string(vrc == 0 ? attest_status_name(out->status) : "failed"));
		json_object_set_new(j, "reasons", json_string(out->reason));
		if (vrc != 0)
			json_object_set_new(j, "error", json_string(ss_strerror(vrc)));
		json_object_set(j, "claims", out->claims ? out->claims : json_null());
		json_object_set_new(j, "claims_digest",
				    out->claims ? json_string(digest_hex) : json_null());
		json_object_set_new(j, "hardware", json_boolean(out->hardware));
		char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (s) {
			printf("%s\n", s);
			free(s);
		} else {
			fatal("json_dumps failed");
		}
		json_decref(j);
		return;
	}
	printf("type: %s\n", type);
	if (vrc != 0) {
		printf("verification failed: %s (%s)\n", out->reason[0] ? out->reason : "no reason given",
		       ss_strerror(vrc));
		return;
	}
	if (out->claims) {
		printf("claims:\n");
		print_object(stdout, out->claims, 2);
		printf("claims_digest: %s\n", digest_hex);
	}
	printf("appraisal: %s\n", attest_status_name(out->status));
	if (out->reason[0])
		printf("reasons: %s\n", out->reason);
}

static int verify_main(int argc, char **argv)
{
	const char *type = NULL, *evidence_path = NULL, *collateral = NULL, *policy_path = NULL;
	const char *nonce_hex = NULL, *at = NULL, *val = NULL;
	const char *cert_paths[MAX_FILES];
	size_t n_cert_paths = 0, ev_len = 0, nonce_len = 0;
	bool as_json = false;
	char *ev = NULL, err[512] = "";
	uint8_t nonce[NONCE_MAX];
	struct certlist cl = {.n = 0};
	json_t *pdoc = NULL;
	const json_t *pol = NULL;
	struct attest_output out;
	int ret = 2, rc;

	memset(&out, 0, sizeof out);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout, 0);
		if (!strcmp(argv[i], "--json")) {
			as_json = true;
			continue;
		}
		const char **slot = NULL, *opt = argv[i];
		if (take_opt(argc, argv, &i, "--type", &val))
			slot = &type;
		else if (take_opt(argc, argv, &i, "--evidence", &val))
			slot = &evidence_path;
		else if (take_opt(argc, argv, &i, "--collateral", &val))
			slot = &collateral;
		else if (take_opt(argc, argv, &i, "--policy", &val))
			slot = &policy_path;
		else if (take_opt(argc, argv, &i, "--nonce", &val))
			slot = &nonce_hex;
		else if (take_opt(argc, argv, &i, "--at", &val))
			slot = &at;
		else if (take_opt(argc, argv, &i, "--certs", &val)) {
			if (!val || n_cert_paths >= MAX_FILES) {
				fprintf(stderr, "attest verify: --certs needs a file (at most %d)\n",
					MAX_FILES);
				return 2;
			}
			cert_paths[n_cert_paths++] = val;
			continue;
		} else {
			fprintf(stderr, "attest verify: unknown argument '%s'\n", argv[i]);
			return usage(stderr, 2);
		}
		if (!val) {
			fprintf(stderr, "attest verify: %s needs a value\n", opt);
			return 2;
		}
		if (*slot) {
			fprintf(stderr, "attest verify: %s given twice\n", opt);
			return 2;
		}
		*slot = val;
	}
	if (!type || !evidence_path) {
		fprintf(stderr, "attest verify: --type and --evidence are required\n");
		return usage(stderr, 2);
	}
	const struct attest_verifier *v = attest_verifier_find(type);
	if (!v) {
		fprintf(stderr, "attest verify: unknown or not built-in evidence type '%s'; available: ",
			type);
		list_types(stderr);
		fputc('\n', stderr);
		return 2;
	}

	struct attest_input in;
	memset(&in, 0, sizeof in);
	rc = file_read(evidence_path, EVIDENCE_MAX, &ev, &ev_len);
	if (rc < 0) {
		fprintf(stderr, "attest verify: cannot read evidence %s: %s%s\n", evidence_path,
			ss_strerror(rc), rc == SS_ETOOBIG ? " (limit 1 MiB)" : "");
		goto out;
	}
	for (size_t i = 0; i < n_cert_paths; i++) {
		rc = certs_load(cert_paths[i], &cl, err, sizeof err);
		if (rc < 0) {
			fprintf(stderr, "attest verify: %s\n", err);
			goto out;
		}
	}
	if (nonce_hex && parse_nonce(nonce_hex, nonce, &nonce_len) < 0) {
		fprintf(stderr, "attest verify: --nonce must be 1..%d bytes of hex (got '%s')\n",
			NONCE_MAX, nonce_hex);
		goto out;
	}
	if (at) {
		if (time_parse_rfc3339(at, &in.now_unix) < 0) {
			fprintf(stderr,
				"attest verify: --at '%s' is not RFC 3339 (YYYY-MM-DDTHH:MM:SSZ)\n", at);
			goto out;
		}
	} else {
		in.now_unix = time_wall_ms() / 1000;
	}
	if (policy_path && policy_load(policy_path, type, &pdoc, &pol, err, sizeof err) < 0) {
		fprintf(stderr, "attest verify: %s\n", err);
		goto out;
	}

	in.evidence = (const uint8_t *)ev;
	in.evidence_len = ev_len;
	in.certs = (const uint8_t *const *)cl.der;
	in.cert_lens = cl.len;
	in.n_certs = cl.n;
	in.expected_report_data = nonce_hex ? nonce : NULL;
	in.expected_len = nonce_hex ? nonce_len : 0;
	in.collateral_dir = collateral;
	in.policy = pol;

	rc = v->verify(&in, &out);
	if (rc == SS_ECONFIG) {
		/*
		 * The policy object is wrong (unknown key, bad value) or a trust
		 * anchor directory is missing: a usage error, not a verdict.
		 */
		fprintf(stderr, "attest verify: policy or configuration error: %s\n", out.reason);
		ret = 2;
		goto out;
	}
	if (rc > 0)
		rc = SS_EINVAL; /* defensive: the contract says 0 or negative */
	report(type, rc, &out, as_json);
	if (rc == 0 && (out.status == ATTEST_AFFIRMING || out.status == ATTEST_WARNING))
		ret = 0;
	else
		ret = 1;
out:
	attest_output_free(&out);
	json_decref(pdoc);
	certlist_free(&cl);
	free(ev);
	return ret;
}

/* ---- import ---------------------------------------------------------------- */

static int ensure_dir(const char *path)
{
	int rc = dir_ensure(path, 0700);
	if (rc < 0)
		fprintf(stderr, "attest import: cannot create directory %s: %s\n", path,
			ss_strerror(rc));
	return rc;
}

/* Creates base/sub (and base) with mode 0700. */
static int ensure_sub(const char *base, const char *sub)
{
	int rc = ensure_dir(base);
	if (rc == 0) {
		char *p = xasprintf("%s/%s", base, sub);
		rc = ensure_dir(p);
		free(p);
	}
	return rc;
}

static int write_file(const char *path, const void *data, size_t n)
{
	int rc = file_write_atomic(path, data, n, 0644);
	if (rc < 0)
		fprintf(stderr, "attest import: cannot write %s: %s\n", path, ss_strerror(rc));
	else
		printf("wrote %s\n", path);
	return rc;
}

/* Writes one DER certificate as PEM to path. */
static int write_pem(const char *path, const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	BIO *bio = BIO_new(BIO_s_mem());
	char *mem = NULL;
	int rc;
	if (!x || !bio || PEM_write_bio_X509(bio, x) != 1)
		fatal("cannot PEM-encode a parsed certificate");
	long n = BIO_get_mem_data(bio, &mem);
	rc = write_file(path, mem, (size_t)n);
	BIO_free(bio);
	X509_free(x);
	return rc;
}

static void cert_cn(const uint8_t *der, size_t len, char *cn, size_t cn_len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	cn[0] = '\0';
	if (x && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					   (int)cn_len) < 0)
		cn[0] = '\0';
	X509_free(x);
	ERR_clear_error();
}

static int dcap_import_file(const char *dir, const char *path)
{
	char *text = NULL, reason[256] = "";
	size_t len = 0;
	int rc = file_read(path, 4 * DCAP_COLLATERAL_MAX, &text, &len);
	if (rc < 0) {
		fprintf(stderr, "attest import: cannot read %s: %s\n", path, ss_strerror(rc));
		goto out;
	}
	/* Create the Intel directories ourselves so they get mode 0700. */
	char *intel = xasprintf("%s/intel", dir);
	rc = ensure_sub(dir, "intel");
	if (rc == 0)
		rc = ensure_sub(intel, "tcb_info");
	if (rc == 0)
		rc = ensure_sub(intel, "tcb_info_tdx");
	free(intel);
	if (rc < 0)
		goto out;
	rc = dcap_collateral_import(dir, text, len, reason, sizeof reason);
	if (rc < 0)
		fprintf(stderr, "attest import: %s: %s\n", path, reason);
	else
		printf("imported DCAP collateral %s into %s/intel/\n", path, dir);
out:
	free(text);
	return rc;
}

static int intel_root_import(const char *dir, const char *path)
{
	char *data = NULL, reason[256] = "";
	size_t len = 0;
	int rc = file_read(path, CERT_FILE_MAX, &data, &len);
	if (rc < 0) {
		fprintf(stderr, "attest import: cannot read %s: %s\n", path, ss_strerror(rc));
		goto out;
	}
	rc = ensure_sub(dir, "intel");
	if (rc < 0)
		goto out;
	rc = dcap_collateral_import_root(dir, (const uint8_t *)data, len, reason, sizeof reason);
	if (rc < 0)
		fprintf(stderr, "attest import: %s: %s\n", path, reason);
	else
		printf("wrote %s/intel/root_ca.pem\n", dir);
out:
	free(data);
	return rc;
}

/* Maps "Milan"/"Genoa"/"Turin" (any case) to the collateral directory name. */
static const char *amd_product_dir(const char *name)
{
	static const char *const products[] = {"milan", "genoa", "turin"};
	for (size_t i = 0; i < ARRAY_LEN(products); i++)
		if (!strcasecmp(name, products[i]))
			return products[i];
	return NULL;
}

/* The REPORTED_TCB value a VCEK certifies (Milan/Genoa layout). */
static uint64_t amd_tcb_value(const struct snp_tcb *t)
{
	return (uint64_t)t->bootloader | (uint64_t)t->tee << 8 | (uint64_t)t->snp << 48 |
	       (uint64_t)t->microcode << 56;
}

/*
 * Works out where one AMD certificate goes: ARK-<P> -> amd/<p>/ark.pem,
 * SEV-VLEK-<P> -> asvk.pem, SEV-<P> -> ask.pem, SEV-VCEK (Milan/Genoa) ->
 * amd/vcek/<chip_id>-<reported_tcb>.der. *pem tells the encoding. Returns
 * the relative path (caller frees) or NULL with err set.
 */
static char *amd_target(const uint8_t *der, size_t len, bool *pem, char *err, size_t errlen)
{
	char cn[128];
	const char *prod = NULL;
	cert_cn(der, len, cn, sizeof cn);
	*pem = true;
	if (!strncmp(cn, "ARK-", 4) && (prod = amd_product_dir(cn + 4)))
		return xasprintf("amd/%s/ark.pem", prod);
	if (!strncmp(cn, "SEV-VLEK-", 9) && (prod = amd_product_dir(cn + 9)))
		return xasprintf("amd/%s/asvk.pem", prod);
	if (!strncmp(cn, "SEV-", 4) && (prod = amd_product_dir(cn + 4)))
		return xasprintf("amd/%s/ask.pem", prod);
	if (!strcmp(cn, "SEV-VCEK")) {
		struct snp_cert_ext ext;
		char reason[256] = "", chip[2 * SNP_CHIP_ID_LEN + 1];
		if (snp_cert_ext_parse(der, len, &ext, reason, sizeof reason) < 0) {
			snprintf(err, errlen, "VCEK extensions do not parse: %s", reason);
			return NULL;
		}
		if (ext.product == SNP_PRODUCT_TURIN || ext.hwid_len != SNP_CHIP_ID_LEN) {
			snprintf(err, errlen,
				 "a %s VCEK has a %zu-byte hwID, which does not give the 64-byte "
				 "CHIP_ID of the cache file name; pass it with --certs instead",
				 ext.product_name, ext.hwid_len);
			return NULL;
		}
		hex_encode(ext.hwid, SNP_CHIP_ID_LEN, chip);
		*pem = false;
		return xasprintf("amd/vcek/%s-%016llx.der", chip,
				 (unsigned long long)amd_tcb_value(&ext.tcb));
	}
	if (!strcmp(cn, "SEV-VLEK")) {
		snprintf(err, errlen, "a VLEK is not cached; it must come with the evidence (--certs)");
		return NULL;
	}
	snprintf(err, errlen, "certificate '%s' is not an AMD ARK, ASK, ASVK or VCEK",
		 cn[0] ? cn : "(no CN)");
	return NULL;
}

/* Imports every certificate of the files; refuses all if any is unknown. */
static int amd_import(const char *dir, const char *const *paths, size_t n)
{
	struct certlist cl = {.n = 0};
	char *targets[MAX_CERTS] = {NULL};
	bool pem[MAX_CERTS] = {false};
	char err[512] = "";
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t before = cl.n;
		rc = certs_load(paths[i], &cl, err, sizeof err);
		if (rc < 0) {
			fprintf(stderr, "attest import: %s\n", err);
			goto out;
		}
		for (size_t j = before; j < cl.n; j++) {
			targets[j] = amd_target(cl.der[j], cl.len[j], &pem[j], err, sizeof err);
			if (!targets[j]) {
				fprintf(stderr, "attest import: %s: %s; nothing imported\n", paths[i],
					err);
				rc = SS_EINVAL;
				goto out;
			}
		}
	}
	for (size_t j = 0; j < cl.n; j++) {
		char *path = xasprintf("%s/%s", dir, targets[j]);
		char *parent = xstrdup(targets[j]);
		*strrchr(parent, '/') = '\0';
		rc = ensure_sub(dir, "amd");
		if (rc == 0) {
			char *full = xasprintf("%s/%s", dir, parent);
			rc = ensure_dir(full);
			free(full);
		}
		if (rc == 0)
			rc = pem[j] ? write_pem(path, cl.der[j], cl.len[j])
				    : write_file(path, cl.der[j], cl.len[j]);
		free(parent);
		free(path);
		if (rc < 0)
			goto out;
	}
out:
	for (size_t j = 0; j < MAX_CERTS; j++)
		free(targets[j]);
	certlist_free(&cl);
	return rc;
}

/*
 * Imports TPM EK CA certificates, one PEM file per certificate named by the
 * first 16 hex digits of its SHA-256, so importing twice is idempotent. Only
 * CA certificates are accepted.
 */
static int tpm_import(const char *dir, const char *const *paths, size_t n)
{
	struct certlist cl = {.n = 0};
	char err[512] = "";
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		size_t before = cl.n;
		rc = certs_load(paths[i], &cl, err, sizeof err);
		if (rc < 0) {
			fprintf(stderr, "attest import: %s\n", err);
			goto out;
		}
		for (size_t j = before; j < cl.n; j++) {
			const unsigned char *p = cl.der[j];
			X509 *x = d2i_X509(NULL, &p, (long)cl.len[j]);
			int ca = x ? X509_check_ca(x) : 0;
			X509_free(x);
			if (ca == 0) {
				char cn[128];
				cert_cn(cl.der[j], cl.len[j], cn, sizeof cn);
				fprintf(stderr,
					"attest import: %s: certificate '%s' is not a CA certificate; "
					"nothing imported\n",
					paths[i], cn[0] ? cn : "(no CN)");
				rc = SS_EINVAL;
				goto out;
			}
		}
	}
	char *ekdir = xasprintf("%s/tpm/ek-ca", dir);
	rc = ensure_sub(dir, "tpm");
	if (rc == 0)
		rc = ensure_dir(ekdir);
	for (size_t j = 0; j < cl.n && rc == 0; j++) {
		uint8_t d[32];
		char hex[65];
		sha256(cl.der[j], cl.len[j], d);
		hex_encode(d, 32, hex);
		hex[16] = '\0';
		char *path = xasprintf("%s/%s.pem", ekdir, hex);
		rc = write_pem(path, cl.der[j], cl.len[j]);
		free(path);
	}
	free(ekdir);
out:
	certlist_free(&cl);
	return rc;
}

static int import_main(int argc, char **argv)
{
	const char *dir = NULL, *val = NULL, *intel_root = NULL;
	const char *dcap[MAX_FILES], *amd[MAX_FILES], *tpm[MAX_FILES];
	size_t n_dcap = 0, n_amd = 0, n_tpm = 0;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout, 0);
		const char **list = NULL;
		size_t *count = NULL;
		if (take_opt(argc, argv, &i, "--collateral", &val)) {
			if (!val || dir) {
				fprintf(stderr, "attest import: --collateral needs one directory\n");
				return 2;
			}
			dir = val;
			continue;
		}
		if (take_opt(argc, argv, &i, "--intel-root", &val)) {
			if (!val || intel_root) {
				fprintf(stderr, "attest import: --intel-root needs one file\n");
				return 2;
			}
			intel_root = val;
			continue;
		}
		if (take_opt(argc, argv, &i, "--dcap-collateral", &val)) {
			list = dcap;
			count = &n_dcap;
		} else if (take_opt(argc, argv, &i, "--amd-certs", &val)) {
			list = amd;
			count = &n_amd;
		} else if (take_opt(argc, argv, &i, "--tpm-ek-ca", &val)) {
			list = tpm;
			count = &n_tpm;
		} else {
			fprintf(stderr, "attest import: unknown argument '%s'\n", argv[i]);
			return usage(stderr, 2);
		}
		if (!val) {
			fprintf(stderr, "attest import: %s needs a file\n", argv[i]);
			return 2;
		}
		/* The option takes its value and every following non-option argument. */
		for (;;) {
			if (*count >= MAX_FILES) {
				fprintf(stderr, "attest import: at most %d files per kind\n", MAX_FILES);
				return 2;
			}
			list[(*count)++] = val;
			if (i + 1 < argc && argv[i + 1][0] != '-')
				val = argv[++i];
			else
				break;
		}
	}
	if (!dir) {
		fprintf(stderr, "attest import: --collateral DIR is required\n");
		return usage(stderr, 2);
	}
	if (!n_dcap && !n_amd && !n_tpm && !intel_root) {
		fprintf(stderr, "attest import: nothing to import (give --dcap-collateral, "
				"--intel-root, --amd-certs or --tpm-ek-ca)\n");
		return usage(stderr, 2);
	}
	if (n_tpm > TPM_EK_CA_MAX_FILES) {
		fprintf(stderr, "attest import: at most %d EK CA files\n", TPM_EK_CA_MAX_FILES);
		return 2;
	}
	rc = ensure_dir(dir);
	if (rc == 0 && intel_root)
		rc = intel_root_import(dir, intel_root);
	for (size_t i = 0; i < n_dcap && rc == 0; i++)
		rc = dcap_import_file(dir, dcap[i]);
	if (rc == 0 && n_amd)
		rc = amd_import(dir, amd, n_amd);
	if (rc == 0 && n_tpm)
		rc = tpm_import(dir, tpm, n_tpm);
	return rc == 0 ? 0 : 1;
}

int cli_attest_main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, 2);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return usage(stdout, 0);
	if (!strcmp(argv[1], "verify"))
		return verify_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "import"))
		return import_main(argc - 1, argv + 1);
	fprintf(stderr, "attest: unknown subcommand '%s'\n", argv[1]);
	return usage(stderr, 2);
}
