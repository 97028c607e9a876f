/*
 * snp.c - AMD SEV-SNP: the "sev-snp" verifier and the /dev/sev-guest attester.
 *
 * Verification order (docs/attestation-snp.md): policy syntax; report
 * syntax; certificate chain VCEK -> ASK -> ARK or VLEK -> ASVK -> ARK to a
 * pinned ARK at the verification time (cached); the certificate's KDS
 * extensions against REPORTED_TCB and CHIP_ID; the report signature; the
 * report_data binding; the appraisal policy.
 *
 * All OpenSSL use goes through EVP/X509 APIs. Everything read from the
 * report, the certificates or the collateral cache is untrusted and bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <gmp.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/snp.h"
#include "core/core.h"

/* ---- constants ---------------------------------------------------------- */

struct product_info {
	enum snp_product product;
	const char *name;     /* as in the KDS product name and the ASK CN */
	const char *dir;      /* collateral subdirectory */
	const char *ark_cn;   /* subject CN of the ARK */
	const char *ark_sha256; /* pinned SHA-256 of the ARK's DER */
};

/*
 * The pinned AMD root keys. The fingerprints agree across go-sev-guest,
 * virtee/sev and trustee (see the vectors' README).
 */
static const struct product_info products[] = {
	{ SNP_PRODUCT_MILAN, "Milan", "milan", "ARK-Milan",
	  "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd" },
	{ SNP_PRODUCT_GENOA, "Genoa", "genoa", "ARK-Genoa",
	  "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1" },
	{ SNP_PRODUCT_TURIN, "Turin", "turin", "ARK-Turin",
	  "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a" },
};

#define AMD_OID_ARC "1.3.6.1.4.1.3704.1."
#define COLLATERAL_MAX (64 * 1024)
#define CHAIN_CACHE_SLOTS 32
/* SNP firmware status INVALID_PARAM in MSG_REPORT_RSP. */
#define SNP_FW_INVALID_PARAM 0x16u

_Static_assert(sizeof(struct snp_report_req) == 96, "snp_report_req layout");
_Static_assert(sizeof(struct snp_guest_request_ioctl) == 32, "snp_guest_request_ioctl layout");

#define SNP_GET_REPORT _IOWR('S', 0x0, struct snp_guest_request_ioctl)

/* ---- small helpers ------------------------------------------------------ */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static const struct product_info *product_find(enum snp_product p)
{
	for (size_t i = 0; i < ARRAY_LEN(products); i++)
		if (products[i].product == p)
			return &products[i];
	return NULL;
}

static const char *product_name(enum snp_product p)
{
	const struct product_info *pi = product_find(p);
	return pi ? pi->name : "unknown";
}

/* Parses exactly n bytes of DER into a certificate; NULL when malformed. */
static X509 *der_to_x509(const uint8_t *p, size_t n)
{
	if (!p || n == 0 || n > SNP_CERT_MAX)
		return NULL;
	const unsigned char *q = p;
	X509 *x = d2i_X509(NULL, &q, (long)n);
	if (x && q != p + n) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

/*
 * Loads the single PEM certificate at path. Returns 0, SS_ENOTFOUND when
 * the file is missing, or SS_EPARSE / SS_EIO with reason set.
 */
static int load_pem_file(const char *path, X509 **out, char *reason, size_t rlen)
{
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	int rc = file_read(path, COLLATERAL_MAX, &data, &len);
	if (rc == SS_ENOTFOUND)
		goto out;
	if (rc < 0) {
		why_write(reason, rlen, "cannot read collateral %s: %s", path, ss_strerror(rc));
		goto out;
	}
	bio = BIO_new_mem_buf(data, (int)len);
	if (!bio)
		fatal("BIO_new_mem_buf failed");
	*out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!*out) {
		why_write(reason, rlen, "collateral %s is not a PEM certificate", path);
		rc = SS_EPARSE;
	}
out:
	BIO_free(bio);
	free(data);
	return rc;
}

static int load_der_file(const char *path, X509 **out, char *reason, size_t rlen)
{
	char *data = NULL;
	size_t len = 0;
	int rc = file_read(path, SNP_CERT_MAX, &data, &len);
	if (rc == SS_ENOTFOUND)
		goto out;
	if (rc < 0) {
		why_write(reason, rlen, "cannot read collateral %s: %s", path, ss_strerror(rc));
		goto out;
	}
	*out = der_to_x509((const uint8_t *)data, len);
	if (!*out) {
		why_write(reason, rlen, "collateral %s is not a DER certificate", path);
		rc = SS_EPARSE;
	}
out:
	free(data);
	return rc;
}

/* ---- report ------------------------------------------------------------- */

int snp_report_parse(const uint8_t *p, size_t n, struct snp_report *r, char *reason,
		     size_t reason_len)
{
	memset(r, 0, sizeof *r);
	if (!p || n != SNP_REPORT_LEN)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SEV-SNP report is %zu bytes, expected exactly %d", n,
			       SNP_REPORT_LEN);
	r->version = le32(p + 0x00);
	if (r->version != 2 && r->version != 3)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SEV-SNP report version %u is not supported (2 and 3 are)", r->version);
	r->guest_svn = le32(p + 0x04);
	r->policy = le64(p + 0x08);
	memcpy(r->family_id, p + 0x10, 16);
	memcpy(r->image_id, p + 0x20, 16);
	r->vmpl = le32(p + 0x30);
	r->signature_algo = le32(p + 0x34);
	if (r->signature_algo != 1)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SEV-SNP signature_algo %u is not 1 (ECDSA P-384 with SHA-384)",
			       r->signature_algo);
	r->current_tcb = le64(p + 0x38);
	r->platform_info = le64(p + 0x40);
	r->flags = le32(p + 0x48);
	uint32_t key = (r->flags >> 2) & 7;
	if (key > 1)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SEV-SNP report signing key selector %u is neither VCEK (0) nor VLEK (1)",
			       key);
	r->signing_key = key == 0 ? SNP_KEY_VCEK : SNP_KEY_VLEK;
	memcpy(r->report_data, p + 0x50, 64);
	memcpy(r->measurement, p + 0x90, 48);
	memcpy(r->host_data, p + 0xc0, 32);
	memcpy(r->id_key_digest, p + 0xe0, 48);
	memcpy(r->author_key_digest, p + 0x110, 48);
	memcpy(r->report_id, p + 0x140, 32);
	memcpy(r->report_id_ma, p + 0x160, 32);
	r->reported_tcb = le64(p + 0x180);
	if (r->version >= 3) {
		r->has_cpuid = true;
		r->cpuid_fam_id = p[0x188];
		r->cpuid_mod_id = p[0x189];
		r->cpuid_step = p[0x18a];
	}
	memcpy(r->chip_id, p + 0x1a0, 64);
	r->committed_tcb = le64(p + 0x1e0);
	r->current_build = p[0x1e8];
	r->current_minor = p[0x1e9];
	r->current_major = p[0x1ea];
	r->committed_build = p[0x1ec];
	r->committed_minor = p[0x1ed];
	r->committed_major = p[0x1ee];
	r->launch_tcb = le64(p + 0x1f0);
	/* R and S are 72-byte little-endian fields; only the low 48 bytes may be non-zero. */
	const uint8_t *sr = p + SNP_SIGNED_LEN, *ss = sr + 72;
	if (!all_zero(sr + 48, 24) || !all_zero(ss + 48, 24))
		return why_set(reason, reason_len, SS_EPARSE,
			       "SEV-SNP signature R or S has non-zero bytes above the P-384 field size");
	for (int i = 0; i < 48; i++) {
		r->sig_r[i] = sr[47 - i];
		r->sig_s[i] = ss[47 - i];
	}
	return 0;
}

void snp_tcb_decode(enum snp_product product, uint64_t tcb, struct snp_tcb *out)
{
	memset(out, 0, sizeof *out);
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(tcb >> (8 * i));
	if (product == SNP_PRODUCT_TURIN) {
		out->has_fmc = true;
		out->fmc = b[0];
		out->bootloader = b[1];
		out->tee = b[2];
		out->snp = b[3];
	} else {
		out->bootloader = b[0];
		out->tee = b[1];
		out->snp = b[6];
	}
	out->microcode = b[7];
}

/* ---- certificate extensions --------------------------------------------- */

/*
 * Finds the extension AMD_OID_ARC + suffix. Returns 1 with its value bytes,
 * 0 when absent, or SS_EPARSE when it occurs more than once.
 */
static int ext_find(X509 *x, const char *suffix, const uint8_t **val, size_t *len, char *reason,
		    size_t rlen)
{
	char oid[64];
	snprintf(oid, sizeof oid, AMD_OID_ARC "%s", suffix);
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	if (!obj)
		fatal("OBJ_txt2obj(%s) failed", oid);
	int rc = 0;
	int idx = X509_get_ext_by_OBJ(x, obj, -1);
	if (idx < 0)
		goto out;
	if (X509_get_ext_by_OBJ(x, obj, idx) >= 0) {
		why_write(reason, rlen, "certificate has extension %s more than once", oid);
		rc = SS_EPARSE;
		goto out;
	}
	const ASN1_OCTET_STRING *d = X509_EXTENSION_get_data(X509_get_ext(x, idx));
	*val = ASN1_STRING_get0_data(d);
	*len = (size_t)ASN1_STRING_length(d);
	rc = 1;
out:
	ASN1_OBJECT_free(obj);
	return rc;
}

/* Parses a minimal DER INTEGER 0..255 that fills exactly n bytes. */
static int parse_spl(const uint8_t *v, size_t n, uint8_t *out)
{
	if (n < 3 || n > 4 || v[0] != 0x02 || v[1] != n - 2)
		return SS_EPARSE;
	if (n == 3) {
		if (v[2] & 0x80)
			return SS_EPARSE; /* negative */
		*out = v[2];
		return 0;
	}
	if (v[2] != 0x00 || !(v[3] & 0x80))
		return SS_EPARSE; /* non-minimal */
	*out = v[3];
	return 0;
}

/* Parses a DER IA5String of printable ASCII filling exactly n bytes into out. */
static int parse_ia5(const uint8_t *v, size_t n, char *out, size_t cap)
{
	size_t hdr, len;
	if (n < 2 || v[0] != 0x16)
		return SS_EPARSE;
	if (v[1] < 0x80) {
		hdr = 2;
		len = v[1];
	} else if (v[1] == 0x81 && n >= 3 && v[2] >= 0x80) {
		hdr = 3;
		len = v[2];
	} else {
		return SS_EPARSE;
	}
	if (hdr + len != n || len + 1 > cap)
		return SS_EPARSE;
	for (size_t i = 0; i < len; i++) {
		if (v[hdr + i] < 0x20 || v[hdr + i] > 0x7e)
			return SS_EPARSE;
		out[i] = (char)v[hdr + i];
	}
	out[len] = '\0';
	return 0;
}

/* Reads the product name (.2) and the key kind from the subject CN. */
static int ext_product(X509 *x, struct snp_cert_ext *ext, char *reason, size_t rlen)
{
	const uint8_t *v = NULL;
	size_t n = 0;
	char cn[64];
	cert_subject_cn(x, cn, sizeof cn);
	if (!strcmp(cn, "SEV-VLEK")) {
		ext->is_vlek = true;
	} else if (strcmp(cn, "SEV-VCEK") != 0) {
		return why_set(reason, rlen, SS_EPARSE,
			       "certificate '%s' is neither a VCEK nor a VLEK", cn);
	}
	int rc = ext_find(x, "2", &v, &n, reason, rlen);
	if (rc < 0)
		return rc;
	if (rc == 0 || parse_ia5(v, n, ext->product_name, sizeof ext->product_name) < 0)
		return why_set(reason, rlen, SS_EPARSE,
			       "%s has no valid product name extension (%s2)", cn,
			       AMD_OID_ARC);
	size_t plen = strcspn(ext->product_name, "-");
	ext->product = SNP_PRODUCT_UNKNOWN;
	for (size_t i = 0; i < ARRAY_LEN(products); i++)
		if (strlen(products[i].name) == plen &&
		    !strncmp(products[i].name, ext->product_name, plen))
			ext->product = products[i].product;
	if (ext->product == SNP_PRODUCT_UNKNOWN)
		return why_set(reason, rlen, SS_EPARSE, "%s is for unsupported product '%s'", cn,
			       ext->product_name);
	return 0;
}

static int ext_parse_x509(X509 *x, struct snp_cert_ext *ext, char *reason, size_t rlen)
{
	static const struct {
		const char *suffix, *what;
		size_t off;
	} spls[] = {
		{ "3.1", "blSPL", offsetof(struct snp_tcb, bootloader) },
		{ "3.2", "teeSPL", offsetof(struct snp_tcb, tee) },
		{ "3.3", "snpSPL", offsetof(struct snp_tcb, snp) },
		{ "3.8", "ucodeSPL", offsetof(struct snp_tcb, microcode) },
		{ "3.9", "fmcSPL", offsetof(struct snp_tcb, fmc) },
	};
	memset(ext, 0, sizeof *ext);
	int rc = ext_product(x, ext, reason, rlen);
	if (rc < 0)
		return rc;
	const char *kind = ext->is_vlek ? "VLEK" : "VCEK";
	bool turin = ext->product == SNP_PRODUCT_TURIN;
	for (size_t i = 0; i < ARRAY_LEN(spls); i++) {
		const uint8_t *v = NULL;
		size_t n = 0;
		bool is_fmc = !strcmp(spls[i].suffix, "3.9");
		rc = ext_find(x, spls[i].suffix, &v, &n, reason, rlen);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			if (is_fmc && !turin)
				continue;
			return why_set(reason, rlen, SS_EPARSE,
				       "%s lacks the %s extension (%s%s)", kind,
				       spls[i].what, AMD_OID_ARC, spls[i].suffix);
		}
		if (is_fmc && !turin)
			continue; /* the Milan/Genoa TCB has no FMC field */
		if (parse_spl(v, n, (uint8_t *)&ext->tcb + spls[i].off) < 0)
			return why_set(reason, rlen, SS_EPARSE,
				       "%s %s extension is not a DER INTEGER 0..255",
				       kind, spls[i].what);
		if (is_fmc)
			ext->tcb.has_fmc = true;
	}
	const uint8_t *v = NULL;
	size_t n = 0;
	rc = ext_find(x, "4", &v, &n, reason, rlen);
	if (rc < 0)
		return rc;
	size_t want = turin ? 8 : 64;
	if (rc == 1) {
		if (ext->is_vlek)
			return why_set(reason, rlen, SS_EPARSE, "VLEK carries a hwID extension");
		if (n != want)
			return why_set(reason, rlen, SS_EPARSE,
				       "VCEK hwID extension is %zu bytes; %s requires a raw %zu-byte value",
				       n, product_name(ext->product), want);
		memcpy(ext->hwid, v, n);
		ext->hwid_len = n;
	} else if (!ext->is_vlek) {
		return why_set(reason, rlen, SS_EPARSE,
			       "VCEK lacks the hwID extension (%s4)", AMD_OID_ARC);
	}
	rc = ext_find(x, "5", &v, &n, reason, rlen);
	if (rc < 0)
		return rc;
	if (rc == 1 && parse_ia5(v, n, ext->csp_id, sizeof ext->csp_id) < 0)
		return why_set(reason, rlen, SS_EPARSE,
			       "%s CSP id extension (%s5) is not a short IA5String", kind,
			       AMD_OID_ARC);
	return 0;
}

int snp_cert_ext_parse(const uint8_t *der, size_t len, struct snp_cert_ext *ext, char *reason,
		       size_t reason_len)
{
	memset(ext, 0, sizeof *ext);
	X509 *x = der_to_x509(der, len);
	if (!x)
		return why_set(reason, reason_len, SS_EPARSE,
			       "certificate is not valid DER (or over %d bytes)",
			       SNP_CERT_MAX);
	int rc = ext_parse_x509(x, ext, reason, reason_len);
	X509_free(x);
	return rc;
}

int snp_cert_matches_report(const struct snp_cert_ext *ext, const struct snp_report *r,
			    char *reason, size_t reason_len)
{
	const char *kind = ext->is_vlek ? "VLEK" : "VCEK";
	struct snp_tcb t;
	snp_tcb_decode(ext->product, r->reported_tcb, &t);
	static const struct {
		const char *spl, *field;
		size_t off;
	} f[] = {
		{ "blSPL", "bootloader", offsetof(struct snp_tcb, bootloader) },
		{ "teeSPL", "tee", offsetof(struct snp_tcb, tee) },
		{ "snpSPL", "snp", offsetof(struct snp_tcb, snp) },
		{ "ucodeSPL", "microcode", offsetof(struct snp_tcb, microcode) },
		{ "fmcSPL", "fmc", offsetof(struct snp_tcb, fmc) },
	};
	for (size_t i = 0; i < ARRAY_LEN(f); i++) {
		if (!strcmp(f[i].field, "fmc") && !t.has_fmc)
			continue;
		uint8_t want = *((const uint8_t *)&ext->tcb + f[i].off);
		uint8_t got = *((const uint8_t *)&t + f[i].off);
		if (want != got)
			return why_set(reason, reason_len, SS_EAUTH,
				       "%s %s %u does not match REPORTED_TCB %s %u (reported_tcb 0x%016llx)",
				       kind, f[i].spl, want, f[i].field, got,
				       (unsigned long long)r->reported_tcb);
	}
	if (r->has_cpuid) {
		bool fam_ok = ext->product == SNP_PRODUCT_TURIN ? r->cpuid_fam_id == 0x1a
								: r->cpuid_fam_id == 0x19;
		if (!fam_ok)
			return why_set(reason, reason_len, SS_EAUTH,
				       "report CPUID family 0x%02x does not match the %s product %s", r->cpuid_fam_id,
				       kind, product_name(ext->product));
	}
	if (!ext->is_vlek) {
		if (ext->hwid_len == 0 || ext->hwid_len > SNP_CHIP_ID_LEN ||
		    !ct_equal(ext->hwid, r->chip_id, ext->hwid_len)) {
			return why_set(reason, reason_len, SS_EAUTH,
				       "VCEK hwID does not match the report's CHIP_ID");
		}
	}
	return 0;
}

/* ---- certificate chain -------------------------------------------------- */

struct chain_result {
	EVP_PKEY *pkey;
	struct snp_cert_ext ext;
	int64_t valid_from, valid_until;
};

/* Returns the pinned product whose ARK has this certificate's fingerprint. */
static const struct product_info *pinned_ark(X509 *x, char hex[65])
{
	uint8_t md[32];
	unsigned int mdlen = sizeof md;
	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		fatal("X509_digest failed");
	hex_encode(md, 32, hex);
	for (size_t i = 0; i < ARRAY_LEN(products); i++)
		if (!strcmp(products[i].ark_sha256, hex))
			return &products[i];
	return NULL;
}

static bool self_issued(X509 *x)
{
	return X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
}


/*
 * Verifies leaf up to the pinned ARK of its product with the CA certificates
 * in cas plus collateral_dir/amd/<product>/. On success fills res (res->pkey
 * is a new reference). Does not take ownership of leaf or cas.
 */
static int chain_verify_x509(X509 *leaf, STACK_OF(X509) *cas, const char *collateral_dir,
			     int64_t now, struct chain_result *res, char *reason, size_t rlen)
{
	int rc = 0;
	struct snp_cert_ext pre;
	X509 *anchor = NULL, *coll_ark = NULL, *coll_int = NULL;
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	char *path = NULL;
	const char *other_root = NULL;
	char hex[65], cn[64];
	if (!untrusted)
		fatal("out of memory");
	memset(res, 0, sizeof *res);
	memset(&pre, 0, sizeof pre);
	/* Only the product name is read before the chain verifies: it picks the roots. */
	rc = ext_product(leaf, &pre, reason, rlen);
	if (rc < 0)
		goto out;
	const char *kind = pre.is_vlek ? "VLEK" : "VCEK";
	const struct product_info *pi = product_find(pre.product);
	for (int i = 0; i < sk_X509_num(cas); i++) {
		X509 *x = sk_X509_value(cas, i);
		if (!self_issued(x)) {
			if (!sk_X509_push(untrusted, x))
				fatal("out of memory");
			continue;
		}
		const struct product_info *p = pinned_ark(x, hex);
		if (!p) {
			cert_subject_cn(x, cn, sizeof cn);
			why_write(reason, rlen,
				  "root certificate '%s' (sha256 %s) is not a pinned AMD ARK", cn,
				  hex);
			rc = SS_EAUTH;
			goto out;
		}
		if (p == pi)
			anchor = x;
		else
			other_root = p->ark_cn;
	}
	if (collateral_dir) {
		free(path);
		path = xasprintf("%s/amd/%s/ark.pem", collateral_dir, pi->dir);
		rc = load_pem_file(path, &coll_ark, reason, rlen);
		if (rc < 0 && rc != SS_ENOTFOUND)
			goto out;
		if (coll_ark && pinned_ark(coll_ark, hex) != pi) {
			why_write(reason, rlen,
				  "collateral %s (sha256 %s) is not the pinned %s", path, hex,
				  pi->ark_cn);
			rc = SS_EAUTH;
			goto out;
		}
		if (!anchor)
			anchor = coll_ark;
		free(path);
		path = xasprintf("%s/amd/%s/%s", collateral_dir, pi->dir,
				 pre.is_vlek ? "asvk.pem" : "ask.pem");
		rc = load_pem_file(path, &coll_int, reason, rlen);
		if (rc < 0 && rc != SS_ENOTFOUND)
			goto out;
		if (coll_int && !sk_X509_push(untrusted, coll_int))
			fatal("out of memory");
	}
	if (!anchor) {
		if (other_root)
			why_write(reason, rlen,
				  "wrong chain: the %s is for product %s but the supplied root is %s, and %s is neither in the input nor in collateral amd/%s/ark.pem",
				  kind, pi->name, other_root, pi->ark_cn, pi->dir);
		else
			why_write(reason, rlen,
				  "no %s: supply it with the evidence or as collateral amd/%s/ark.pem",
				  pi->ark_cn, pi->dir);
		rc = SS_EAUTH;
		goto out;
	}
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (!store || !ctx || X509_STORE_add_cert(store, anchor) != 1 ||
	    X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
		fatal("X509 store setup failed");
	X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_time(vp, (time_t)now);
	/* No X509_V_FLAG_X509_STRICT: KDS VCEKs have no authority key identifier. */
	X509_VERIFY_PARAM_set_depth(vp, 2);
	if (X509_verify_cert(ctx) != 1) {
		char name[16];
		snprintf(name, sizeof name, "%s chain", kind);
		cert_explain_verify(ctx, now, name, "is in the input or the collateral cache", reason,
				    rlen);
		rc = SS_EAUTH;
		goto out;
	}
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
	if (!chain || sk_X509_num(chain) != 3) {
		why_write(reason, rlen, "%s chain has %d certificates, expected 3", kind,
			  chain ? sk_X509_num(chain) : 0);
		rc = SS_EAUTH;
		goto out;
	}
	char want[32];
	snprintf(want, sizeof want, "SEV-%s%s", pre.is_vlek ? "VLEK-" : "", pi->name);
	cert_subject_cn(sk_X509_value(chain, 1), cn, sizeof cn);
	if (strcmp(cn, want) != 0) {
		why_write(reason, rlen, "%s is issued by '%s', expected '%s'", kind, cn, want);
		rc = SS_EAUTH;
		goto out;
	}
	res->valid_from = INT64_MIN;
	res->valid_until = INT64_MAX;
	for (int i = 0; i < 3; i++)
		cert_window(sk_X509_value(chain, i), &res->valid_from, &res->valid_until);
	rc = ext_parse_x509(leaf, &res->ext, reason, rlen);
	if (rc < 0)
		goto out;
	res->pkey = X509_get_pubkey(leaf);
	char group[32] = "";
	if (!res->pkey || !EVP_PKEY_is_a(res->pkey, "EC") ||
	    EVP_PKEY_get_group_name(res->pkey, group, sizeof group, NULL) != 1 ||
	    strcmp(group, "secp384r1") != 0) {
		why_write(reason, rlen, "%s key is not an EC P-384 key", kind);
		rc = SS_EAUTH;
		goto out;
	}
out:
	if (rc < 0 && res->pkey) {
		EVP_PKEY_free(res->pkey);
		res->pkey = NULL;
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_free(untrusted);
	X509_free(coll_ark);
	X509_free(coll_int);
	free(path);
	return rc;
}

/* Parses the DER CA certificates into a new stack (caller pops and frees). */
static int parse_cas(const uint8_t *const *cas, const size_t *lens, size_t n,
		     STACK_OF(X509) **out, char *reason, size_t rlen)
{
	*out = sk_X509_new_null();
	if (!*out)
		fatal("out of memory");
	for (size_t i = 0; i < n; i++) {
		X509 *x = der_to_x509(cas[i], lens[i]);
		if (!x)
			return why_set(reason, rlen, SS_EPARSE,
				       "certificate %zu is not valid DER", i);
		if (!sk_X509_push(*out, x))
			fatal("out of memory");
	}
	return 0;
}

int snp_cert_chain_verify(const uint8_t *leaf_der, size_t leaf_len, const uint8_t *const *cas,
			  const size_t *ca_lens, size_t n_cas, const char *collateral_dir,
			  int64_t now_unix, struct snp_cert_ext *ext, char *reason,
			  size_t reason_len)
{
	int rc = 0;
	STACK_OF(X509) *stack = NULL;
	struct chain_result res;
	memset(&res, 0, sizeof res);
	X509 *leaf = der_to_x509(leaf_der, leaf_len);
	if (!leaf) {
		why_write(reason, reason_len, "VCEK/VLEK is not valid DER");
		rc = SS_EPARSE;
		goto out;
	}
	if (n_cas > SNP_MAX_CERTS) {
		why_write(reason, reason_len, "more than %d CA certificates", SNP_MAX_CERTS);
		rc = SS_EPARSE;
		goto out;
	}
	rc = parse_cas(cas, ca_lens, n_cas, &stack, reason, reason_len);
	if (rc < 0)
		goto out;
	rc = chain_verify_x509(leaf, stack, collateral_dir, now_unix, &res, reason, reason_len);
	if (rc == 0 && ext)
		*ext = res.ext;
out:
	EVP_PKEY_free(res.pkey);
	sk_X509_pop_free(stack, X509_free);
	X509_free(leaf);
	return rc;
}

/* ---- chain cache -------------------------------------------------------- */

/*
 * Chain results keyed by SHA-256 of everything that selects the certificates
 * (signing key kind, CHIP_ID, REPORTED_TCB, the input certificates and the
 * collateral path). An entry holds the leaf's public key, its parsed
 * extensions and the intersection of the chain's validity periods; it is used
 * only when the verification time lies inside that window, so expiry is exact.
 * What is cached (this leaf chains to a pinned ARK) does not depend on which
 * file a certificate was read from.
 */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static struct cert_cache *cache;

static void cache_init(void)
{
	cache = cert_cache_new(CHAIN_CACHE_SLOTS, sizeof(struct snp_cert_ext));
}

/* On a hit fills res (res->pkey is a new reference). */
static bool cache_get(const uint8_t key[32], int64_t now, struct chain_result *res)
{
	pthread_once(&cache_once, cache_init);
	return cert_cache_get(cache, key, now, &res->ext, &res->pkey, &res->valid_from,
			      &res->valid_until);
}

static void cache_put(const uint8_t key[32], const struct chain_result *res)
{
	pthread_once(&cache_once, cache_init);
	cert_cache_put(cache, key, &res->ext, res->pkey, res->valid_from, res->valid_until);
}

void snp_cache_reset(void)
{
	pthread_once(&cache_once, cache_init);
	cert_cache_reset(cache);
}

static void cache_key(const struct snp_report *r, const struct attest_input *in, uint8_t key[32])
{
	struct buf b;
	uint8_t n4[4];
	buf_init(&b);
	buf_append(&b, "seeswarm-snp-chain-v1", 21);
	uint8_t kind = (uint8_t)r->signing_key;
	buf_append(&b, &kind, 1);
	buf_append(&b, r->chip_id, sizeof r->chip_id);
	for (int i = 0; i < 8; i++) {
		uint8_t t = (uint8_t)(r->reported_tcb >> (8 * i));
		buf_append(&b, &t, 1);
	}
	put_le32(n4, (uint32_t)in->n_certs);
	buf_append(&b, n4, 4);
	for (size_t i = 0; i < in->n_certs; i++) {
		put_le32(n4, (uint32_t)in->cert_lens[i]);
		buf_append(&b, n4, 4);
		buf_append(&b, in->certs[i], in->cert_lens[i]);
	}
	if (in->collateral_dir)
		buf_append(&b, in->collateral_dir, strlen(in->collateral_dir));
	buf_append(&b, "", 1);
	sha256(b.data, b.len, key);
	buf_free(&b);
}

/*
 * Finds the signing certificate (the first input certificate that is not a
 * CA, else collateral amd/vcek/<chip_id>-<reported_tcb>.der for a VCEK) and
 * verifies its chain.
 */
static int chain_from_input(const struct snp_report *r, const struct attest_input *in,
			    struct chain_result *res, char *reason, size_t rlen)
{
	int rc = 0;
	X509 *leaf = NULL;
	char *path = NULL;
	STACK_OF(X509) *cas = sk_X509_new_null();
	if (!cas)
		fatal("out of memory");
	const char *kind = r->signing_key == SNP_KEY_VLEK ? "VLEK" : "VCEK";
	for (size_t i = 0; i < in->n_certs; i++) {
		X509 *x = der_to_x509(in->certs[i], in->cert_lens[i]);
		if (!x) {
			why_write(reason, rlen, "certificate %zu is not valid DER", i);
			rc = SS_EPARSE;
			goto out;
		}
		if (X509_check_ca(x) != 0) {
			if (!sk_X509_push(cas, x))
				fatal("out of memory");
		} else if (!leaf) {
			leaf = x;
		} else {
			X509_free(x); /* only the first end-entity certificate counts */
		}
	}
	if (!leaf && in->collateral_dir && r->signing_key == SNP_KEY_VCEK) {
		char chip[2 * SNP_CHIP_ID_LEN + 1];
		hex_encode(r->chip_id, SNP_CHIP_ID_LEN, chip);
		path = xasprintf("%s/amd/vcek/%s-%016llx.der", in->collateral_dir, chip,
				 (unsigned long long)r->reported_tcb);
		rc = load_der_file(path, &leaf, reason, rlen);
		if (rc < 0 && rc != SS_ENOTFOUND)
			goto out;
	}
	if (!leaf) {
		why_write(reason, rlen, "no %s certificate: none in the input%s", kind,
			  r->signing_key == SNP_KEY_VCEK
			  ? " and none in collateral amd/vcek/<chip_id>-<reported_tcb>.der"
			  : "");
		rc = SS_EAUTH;
		goto out;
	}
	rc = chain_verify_x509(leaf, cas, in->collateral_dir, in->now_unix, res, reason, rlen);
out:
	sk_X509_pop_free(cas, X509_free);
	X509_free(leaf);
	free(path);
	return rc;
}

/* ---- signature ---------------------------------------------------------- */

/*
 * ECDSA P-384 over SHA-384 with nettle: about 40 % faster than OpenSSL 3.0's
 * generic prime-curve code (bench/RESULTS.md), and this one verification is
 * nearly all the cost of a cached-chain report. The key comes from the
 * verified certificate (OpenSSL parsed and chained it); nettle checks that
 * the point lies on the curve and that 0 < r, s < n. Returns 1 when the
 * signature verifies, 0 when it does not, -1 when the key is unusable.
 */
static int p384_verify(EVP_PKEY *pkey, const uint8_t digest[48], const uint8_t r_be[48],
		       const uint8_t s_be[48])
{
	BIGNUM *bx = NULL, *by = NULL;
	uint8_t xb[48], yb[48];
	int ok = -1;
	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1 ||
	    BN_bn2binpad(bx, xb, sizeof xb) != (int)sizeof xb ||
	    BN_bn2binpad(by, yb, sizeof yb) != (int)sizeof yb) {
		BN_free(bx);
		BN_free(by);
		return -1;
	}
	BN_free(bx);
	BN_free(by);
	mpz_t x, y;
	struct ecc_point pub;
	struct dsa_signature sig;
	mpz_init(x);
	mpz_init(y);
	mpz_import(x, sizeof xb, 1, 1, 1, 0, xb);
	mpz_import(y, sizeof yb, 1, 1, 1, 0, yb);
	ecc_point_init(&pub, nettle_get_secp_384r1());
	dsa_signature_init(&sig);
	mpz_import(sig.r, 48, 1, 1, 1, 0, r_be);
	mpz_import(sig.s, 48, 1, 1, 1, 0, s_be);
	if (ecc_point_set(&pub, x, y))
		ok = ecdsa_verify(&pub, 48, digest, &sig) ? 1 : 0;
	dsa_signature_clear(&sig);
	ecc_point_clear(&pub);
	mpz_clear(x);
	mpz_clear(y);
	return ok;
}

static int report_sig_verify(EVP_PKEY *pkey, const uint8_t *report, const struct snp_report *r,
			     const char *kind, char *reason, size_t rlen)
{
	unsigned char h[SHA384_DIGEST_LENGTH];
	unsigned int hlen = 0;
	if (EVP_Digest(report, SNP_SIGNED_LEN, h, &hlen, EVP_sha384(), NULL) != 1 || hlen != sizeof h)
		fatal("SHA-384 failed");
	int ok = p384_verify(pkey, h, r->sig_r, r->sig_s);
	if (ok == 1)
		return 0;
	return why_set(reason, rlen, SS_ECRYPTO, ok == 0 ? "%s signature over the report does not verify"
		       : "%s public key is not a usable P-384 point", kind);
}

/* ---- policy ------------------------------------------------------------- */

static int policy_hex(const json_t *v, size_t n, uint8_t *out)
{
	return json_is_string(v) && hex_decode(json_string_value(v), out, n) == 0 ? 0 : SS_ECONFIG;
}

static bool policy_uint(const json_t *v, json_int_t max)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max;
}

/* Checks the syntax of the policy object; SS_ECONFIG with reason on error. */
static int policy_validate(const json_t *pol, char *reason, size_t rlen)
{
	const char *k;
	const json_t *v;
	uint8_t tmp[48];
	if (!pol)
		return 0;
	if (!json_is_object(pol))
		return why_set(reason, rlen, SS_ECONFIG, "sev-snp policy must be a JSON object");
	json_object_foreach((json_t *)pol, k, v) {
		bool ok = true;
		if (!strcmp(k, "measurements")) {
			size_t i;
			const json_t *m;
			ok = json_is_array(v) && json_array_size(v) <= 1024;
			json_array_foreach(v, i, m) ok = ok && policy_hex(m, 48, tmp) == 0;
		} else if (!strcmp(k, "min_tcb")) {
			const char *tk;
			const json_t *tv;
			ok = json_is_object(v);
			json_object_foreach((json_t *)v, tk, tv) {
				if (strcmp(tk, "bootloader") != 0 && strcmp(tk, "tee") != 0 &&
				    strcmp(tk, "snp") != 0 && strcmp(tk, "microcode") != 0 &&
				    strcmp(tk, "fmc") != 0) {
					return why_set(reason, rlen, SS_ECONFIG,
						       "unknown sev-snp min_tcb key '%s'", tk);
				}
				ok = ok && policy_uint(tv, 255);
			}
		} else if (!strcmp(k, "allow_debug")) {
			ok = json_is_boolean(v);
		} else if (!strcmp(k, "vmpl") || !strcmp(k, "max_vmpl")) {
			ok = policy_uint(v, 3);
		} else if (!strcmp(k, "host_data")) {
			ok = policy_hex(v, 32, tmp) == 0;
		} else if (!strcmp(k, "id_key_digest")) {
			ok = policy_hex(v, 48, tmp) == 0;
		} else if (!strcmp(k, "allowed_signing_keys")) {
			size_t i;
			const json_t *m;
			ok = json_is_array(v) && json_array_size(v) > 0;
			json_array_foreach(v, i, m) ok = ok && json_is_string(m) &&
				(!strcmp(json_string_value(m), "vcek") ||
				 !strcmp(json_string_value(m), "vlek"));
		} else if (!strcmp(k, "min_guest_svn")) {
			ok = policy_uint(v, UINT32_MAX);
		} else {
			return why_set(reason, rlen, SS_ECONFIG,
				       "unknown sev-snp policy key '%s'", k);
		}
		if (!ok)
			return why_set(reason, rlen, SS_ECONFIG,
				       "sev-snp policy key '%s' has an invalid value", k);
	}
	return 0;
}

/* Appraises a verified report against a validated policy; failures go to fails. */
static void policy_eval(const json_t *pol, const struct snp_report *r,
			const struct snp_cert_ext *ext, struct buf *fails)
{
	uint8_t want[48];
	char hex[97];
	const json_t *v;
	if (!pol)
		return;
	if ((v = json_object_get(pol, "measurements"))) {
		bool found = false;
		size_t i;
		const json_t *m;
		json_array_foreach(v, i, m) {
			if (policy_hex(m, 48, want) == 0 && !memcmp(want, r->measurement, 48))
				found = true;
		}
		if (!found) {
			hex_encode(r->measurement, 48, hex);
			buf_join(fails, "; ", "measurement %s is not in the allow-list", hex);
		}
	}
	if ((v = json_object_get(pol, "min_tcb"))) {
		struct snp_tcb t;
		snp_tcb_decode(ext->product, r->reported_tcb, &t);
		static const struct {
			const char *name;
			size_t off;
		} f[] = {
			{ "bootloader", offsetof(struct snp_tcb, bootloader) },
			{ "tee", offsetof(struct snp_tcb, tee) },
			{ "snp", offsetof(struct snp_tcb, snp) },
			{ "microcode", offsetof(struct snp_tcb, microcode) },
			{ "fmc", offsetof(struct snp_tcb, fmc) },
		};
		for (size_t i = 0; i < ARRAY_LEN(f); i++) {
			const json_t *m = json_object_get(v, f[i].name);
			if (!m)
				continue;
			if (!strcmp(f[i].name, "fmc") && !t.has_fmc) {
				buf_join(fails, "; ", "min_tcb.fmc is set but the %s TCB has no FMC field",
					 product_name(ext->product));
				continue;
			}
			unsigned got = *((const uint8_t *)&t + f[i].off);
			if ((json_int_t)got < json_integer_value(m))
				buf_join(fails, "; ", "reported TCB %s %u is below the minimum %lld",
					 f[i].name, got, (long long)json_integer_value(m));
		}
	}
	v = json_object_get(pol, "allow_debug");
	if (!(v && json_is_true(v)) && (r->policy & SNP_POLICY_DEBUG))
		buf_join(fails, "; ",
			 "the guest policy 0x%llx allows debugging but allow_debug is false",
			 (unsigned long long)r->policy);
	if ((v = json_object_get(pol, "vmpl")) && r->vmpl != (uint32_t)json_integer_value(v))
		buf_join(fails, "; ", "vmpl %u is not the required %lld", r->vmpl,
			 (long long)json_integer_value(v));
	if ((v = json_object_get(pol, "max_vmpl")) && r->vmpl > (uint32_t)json_integer_value(v))
		buf_join(fails, "; ", "vmpl %u is above max_vmpl %lld", r->vmpl,
			 (long long)json_integer_value(v));
	if ((v = json_object_get(pol, "host_data")) &&
	    (policy_hex(v, 32, want) < 0 || memcmp(want, r->host_data, 32) != 0))
		buf_join(fails, "; ", "host_data does not match the policy");
	if ((v = json_object_get(pol, "id_key_digest")) &&
	    (policy_hex(v, 48, want) < 0 || memcmp(want, r->id_key_digest, 48) != 0))
		buf_join(fails, "; ", "id_key_digest does not match the policy");
	if ((v = json_object_get(pol, "allowed_signing_keys"))) {
		const char *key = r->signing_key == SNP_KEY_VLEK ? "vlek" : "vcek";
		bool found = false;
		size_t i;
		const json_t *m;
		json_array_foreach(v, i, m) found = found || !strcmp(json_string_value(m), key);
		if (!found)
			buf_join(fails, "; ", "signing key %s is not in allowed_signing_keys", key);
	}
	if ((v = json_object_get(pol, "min_guest_svn")) &&
	    (json_int_t)r->guest_svn < json_integer_value(v))
		buf_join(fails, "; ", "guest_svn %u is below min_guest_svn %lld", r->guest_svn,
			 (long long)json_integer_value(v));
}

/* ---- claims ------------------------------------------------------------- */

static void set_hex(json_t *o, const char *k, const uint8_t *p, size_t n)
{
	char hex[2 * SNP_CHIP_ID_LEN + 1];
	if (n > SNP_CHIP_ID_LEN)
		fatal("set_hex: %zu bytes", n);
	hex_encode(p, n, hex);
	json_object_set_new(o, k, json_string(hex));
}

static void set_u64hex(json_t *o, const char *k, uint64_t v)
{
	char s[24];
	snprintf(s, sizeof s, "0x%016llx", (unsigned long long)v);
	json_object_set_new(o, k, json_string(s));
}

static json_t *tcb_json(enum snp_product p, uint64_t raw)
{
	struct snp_tcb t;
	snp_tcb_decode(p, raw, &t);
	json_t *o = json_pack("{s:i, s:i, s:i, s:i}", "bootloader", (int)t.bootloader, "tee",
			      (int)t.tee, "snp", (int)t.snp, "microcode", (int)t.microcode);
	if (!o)
		fatal("json_pack failed");
	if (t.has_fmc)
		json_object_set_new(o, "fmc", json_integer(t.fmc));
	set_u64hex(o, "raw", raw);
	return o;
}

static json_t *claims_build(const struct snp_report *r, const struct snp_cert_ext *ext)
{
	json_t *c = json_object();
	if (!c)
		fatal("json_object failed");
	const struct product_info *pi = product_find(ext->product);
	json_object_set_new(c, "tee", json_string("sev-snp"));
	json_object_set_new(c, "version", json_integer(r->version));
	json_object_set_new(c, "guest_svn", json_integer(r->guest_svn));
	set_u64hex(c, "policy", r->policy);
	json_object_set_new(
		c, "policy_flags",
		json_pack("{s:i, s:i, s:b, s:b, s:b, s:b}", "abi_minor", (int)(r->policy & 0xff),
			  "abi_major", (int)((r->policy >> 8) & 0xff), "smt",
			  (r->policy & SNP_POLICY_SMT) != 0, "migrate_ma",
			  (r->policy & SNP_POLICY_MIGRATE_MA) != 0, "debug",
			  (r->policy & SNP_POLICY_DEBUG) != 0, "single_socket",
			  (r->policy & SNP_POLICY_SINGLE_SOCKET) != 0));
	set_hex(c, "family_id", r->family_id, 16);
	set_hex(c, "image_id", r->image_id, 16);
	json_object_set_new(c, "vmpl", json_integer(r->vmpl));
	json_object_set_new(c, "signature_algo", json_integer(r->signature_algo));
	json_object_set_new(c, "current_tcb", tcb_json(ext->product, r->current_tcb));
	set_u64hex(c, "platform_info", r->platform_info);
	json_object_set_new(c, "flags", json_integer(r->flags));
	json_object_set_new(c, "author_key_en", json_boolean(r->flags & 1));
	json_object_set_new(c, "mask_chip_id", json_boolean(r->flags & 2));
	set_hex(c, "report_data", r->report_data, 64);
	set_hex(c, "measurement", r->measurement, 48);
	set_hex(c, "host_data", r->host_data, 32);
	set_hex(c, "id_key_digest", r->id_key_digest, 48);
	set_hex(c, "author_key_digest", r->author_key_digest, 48);
	set_hex(c, "report_id", r->report_id, 32);
	set_hex(c, "report_id_ma", r->report_id_ma, 32);
	json_object_set_new(c, "reported_tcb", tcb_json(ext->product, r->reported_tcb));
	if (r->has_cpuid)
		json_object_set_new(c, "cpuid",
				    json_pack("{s:i, s:i, s:i}", "family", (int)r->cpuid_fam_id,
					      "model", (int)r->cpuid_mod_id, "stepping",
					      (int)r->cpuid_step));
	set_hex(c, "chip_id", r->chip_id, 64);
	json_object_set_new(c, "committed_tcb", tcb_json(ext->product, r->committed_tcb));
	json_object_set_new(c, "launch_tcb", tcb_json(ext->product, r->launch_tcb));
	json_object_set_new(c, "current_firmware",
			    json_pack("{s:i, s:i, s:i}", "major", (int)r->current_major, "minor",
				      (int)r->current_minor, "build", (int)r->current_build));
	json_object_set_new(c, "committed_firmware",
			    json_pack("{s:i, s:i, s:i}", "major", (int)r->committed_major, "minor",
				      (int)r->committed_minor, "build", (int)r->committed_build));
	json_object_set_new(c, "signing_key",
			    json_string(r->signing_key == SNP_KEY_VLEK ? "vlek" : "vcek"));
	json_object_set_new(c, "product", json_string(pi ? pi->dir : "unknown"));
	json_object_set_new(c, "product_name", json_string(ext->product_name));
	if (ext->csp_id[0])
		json_object_set_new(c, "csp_id", json_string(ext->csp_id));
	return c;
}

/* ---- verifier ----------------------------------------------------------- */

static int check_binding(const struct snp_report *r, const struct attest_input *in, char *reason,
			 size_t rlen)
{
	if (!in->expected_report_data)
		return 0;
	if (in->expected_len == 0 || in->expected_len > SNP_REPORT_DATA_LEN)
		return why_set(reason, rlen, SS_EATTEST,
			       "expected report data must be 1..64 bytes, got %zu",
			       in->expected_len);
	bool ok = ct_equal(r->report_data, in->expected_report_data, in->expected_len);
	ok &= all_zero(r->report_data + in->expected_len, SNP_REPORT_DATA_LEN - in->expected_len);
	if (!ok)
		return why_set(reason, rlen, SS_EATTEST,
			       "report_data does not match the expected binding (stale nonce or a different TLS key)");
	return 0;
}

int snp_verify_report(const uint8_t *report, size_t len, const struct attest_input *in,
		      struct attest_output *out)
{
	int rc = 0;
	struct snp_report r;
	struct chain_result res;
	uint8_t key[32];
	struct buf fails;
	buf_init(&fails);
	memset(&res, 0, sizeof res);
	memset(out, 0, sizeof *out);
	snprintf(out->tee, sizeof out->tee, "sev-snp");
	out->hardware = true;
	char *reason = out->reason;
	size_t rlen = sizeof out->reason;

	rc = policy_validate(in->policy, reason, rlen);
	if (rc < 0)
		goto out;
	rc = snp_report_parse(report, len, &r, reason, rlen);
	if (rc < 0)
		goto out;
	if (in->n_certs > SNP_MAX_CERTS || (in->n_certs && (!in->certs || !in->cert_lens))) {
		why_write(reason, rlen, "at most %d certificates may come with the evidence",
			  SNP_MAX_CERTS);
		rc = SS_EPARSE;
		goto out;
	}
	for (size_t i = 0; i < in->n_certs; i++) {
		if (!in->certs[i] || in->cert_lens[i] == 0 || in->cert_lens[i] > SNP_CERT_MAX) {
			why_write(reason, rlen, "certificate %zu is empty or over %d bytes", i,
				  SNP_CERT_MAX);
			rc = SS_EPARSE;
			goto out;
		}
	}
	cache_key(&r, in, key);
	if (!cache_get(key, in->now_unix, &res)) {
		rc = chain_from_input(&r, in, &res, reason, rlen);
		if (rc < 0)
			goto out;
		cache_put(key, &res);
	}
	const char *kind = res.ext.is_vlek ? "VLEK" : "VCEK";
	if ((r.signing_key == SNP_KEY_VLEK) != res.ext.is_vlek) {
		why_write(reason, rlen,
			  "the report is signed with the %s but the certificate is a %s",
			  r.signing_key == SNP_KEY_VLEK ? "VLEK" : "VCEK", kind);
		rc = SS_EAUTH;
		goto out;
	}
	rc = snp_cert_matches_report(&res.ext, &r, reason, rlen);
	if (rc < 0)
		goto out;
	rc = report_sig_verify(res.pkey, report, &r, kind, reason, rlen);
	if (rc < 0)
		goto out;
	rc = check_binding(&r, in, reason, rlen);
	if (rc < 0)
		goto out;
	out->claims = claims_build(&r, &res.ext);
	policy_eval(in->policy, &r, &res.ext, &fails);
	if (fails.len) {
		out->status = ATTEST_CONTRAINDICATED;
		snprintf(reason, rlen, "%.*s", (int)fails.len, (const char *)fails.data);
	} else {
		out->status = ATTEST_AFFIRMING;
	}
out:
	if (rc < 0) {
		out->status = ATTEST_NONE;
		json_decref(out->claims);
		out->claims = NULL;
	}
	EVP_PKEY_free(res.pkey);
	buf_free(&fails);
	return rc;
}

static int snp_verify(const struct attest_input *in, struct attest_output *out)
{
	return snp_verify_report(in->evidence, in->evidence_len, in, out);
}

const struct attest_verifier attest_snp_verifier = {
	.name = "sev-snp",
	.hardware = true,
	.verify = snp_verify,
};

/* ---- attester ----------------------------------------------------------- */

void snp_attester_build_request(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint32_t vmpl,
				struct snp_report_req *req)
{
	memset(req, 0, sizeof *req);
	memcpy(req->user_data, report_data, ATTEST_REPORT_DATA_LEN);
	req->vmpl = vmpl;
}

int snp_attester_parse_response(const uint8_t *resp, size_t len, uint8_t report[SNP_REPORT_LEN],
				uint32_t *fw_status, char *reason, size_t reason_len)
{
	*fw_status = 0;
	if (!resp || len < SNP_RESP_REPORT_OFFSET)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SNP_GET_REPORT response is %zu bytes", len);
	uint32_t status = le32(resp), size = le32(resp + 4);
	if (status != 0) {
		*fw_status = status;
		return why_set(reason, reason_len, SS_EIO,
			       "SNP firmware returned status 0x%x", status);
	}
	if (size != SNP_REPORT_LEN || len - SNP_RESP_REPORT_OFFSET < SNP_REPORT_LEN)
		return why_set(reason, reason_len, SS_EPARSE,
			       "SNP_GET_REPORT report_size %u (response %zu bytes), expected %d", size,
			       len, SNP_REPORT_LEN);
	memcpy(report, resp + SNP_RESP_REPORT_OFFSET, SNP_REPORT_LEN);
	return 0;
}

static int snp_evidence(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint8_t **evidence,
			size_t *len)
{
	int rc = 0;
	uint8_t *report = NULL;
	struct snp_report_resp *resp = xcalloc(1, sizeof *resp);
	struct snp_report_req req;
	char reason[160];
	int fd = open(SNP_GUEST_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENODEV || errno == ENXIO) {
			log_error("no /dev/sev-guest: this machine is not an SEV-SNP guest");
			rc = SS_ENOSYS;
		} else {
			log_error("cannot open %s: %s", SNP_GUEST_DEVICE, strerror(errno));
			rc = (errno == EACCES || errno == EPERM) ? SS_EPERM : SS_EIO;
		}
		goto out;
	}
	report = xmalloc(SNP_REPORT_LEN);
	/* A guest below an SVSM runs at VMPL 1..3 and cannot ask for a lower VMPL. */
	for (uint32_t vmpl = 0; vmpl <= 3; vmpl++) {
		uint32_t fw = 0;
		struct snp_guest_request_ioctl io;
		snp_attester_build_request(report_data, vmpl, &req);
		memset(resp, 0, sizeof *resp);
		memset(&io, 0, sizeof io);
		io.msg_version = 1;
		io.req_data = (uint64_t)(uintptr_t)&req;
		io.resp_data = (uint64_t)(uintptr_t)resp;
		if (ioctl(fd, SNP_GET_REPORT, &io) < 0) {
			log_error("SNP_GET_REPORT failed: %s (fw_error 0x%x, vmm_error 0x%x)",
				  strerror(errno), io.fw_error, io.vmm_error);
			rc = SS_EIO;
			goto out;
		}
		rc = snp_attester_parse_response(resp->data, sizeof resp->data, report, &fw, reason,
						 sizeof reason);
		if (rc == SS_EIO && fw == SNP_FW_INVALID_PARAM && vmpl < 3)
			continue;
		if (rc < 0)
			log_error("%s", reason);
		break;
	}
	if (rc < 0)
		goto out;
	*evidence = report;
	*len = SNP_REPORT_LEN;
	report = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(report);
	free(resp);
	return rc;
}

const struct attester attest_snp_attester = {
	.name = "sev-snp",
	.evidence = snp_evidence,
};
