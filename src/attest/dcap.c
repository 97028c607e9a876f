/*
 * dcap.c - Intel DCAP ECDSA quote verification shared by the "tdx" and "sgx"
 * verifiers (docs/attestation-dcap.md).
 *
 * Verification order: policy syntax; quote syntax; the quote signature by
 * the attestation key; the PCK chain (embedded root byte-identical to the
 * pinned Intel SGX Root CA, CRLs); the QE report signature by the PCK key;
 * the QE report-data binding of the attestation key; the caller's report
 * data binding; the TCB Signing chain and the signatures, dates and FMSPC /
 * PCE-ID of TCB Info and QE Identity; the TCB status; the policy.
 *
 * All OpenSSL use goes through EVP/X509 APIs. Chain and collateral-signature
 * results are cached (keyed by SHA-256 of the bytes that decide them, valid
 * for the intersection of the certificate and CRL validity periods).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/dcap.h"
#include "core/core.h"

#define PEM_CHAIN_MAX (16 * 1024)
#define CHAIN_MAX_CERTS 4
#define CACHE_SLOTS 32
#define MAX_TCB_LEVELS 128

static const uint8_t intel_qe_vendor_id[16] = { 0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
						0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07 };
/* DER content of OID 1.2.840.113741.1.13.1 (the SGX extension). */
static const uint8_t sgx_oid[9] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01 };

/* ---- small helpers ------------------------------------------------------ */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static void hex_lower(const uint8_t *p, size_t n, char *out)
{
	hex_encode(p, n, out);
	for (size_t i = 0; i < 2 * n; i++)
		if (out[i] >= 'A' && out[i] <= 'F')
			out[i] = (char)(out[i] - 'A' + 'a');
}

/* Decodes exactly n bytes from a hex string of 2n characters (either case). */
static int hex_exact(const char *s, uint8_t *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return SS_EPARSE;
	return hex_decode(s, out, n) == 0 ? 0 : SS_EPARSE;
}

/* ---- quote parsing ------------------------------------------------------ */

struct reader {
	const uint8_t *p;
	size_t n, off;
};

/* Returns the next len bytes or NULL when fewer remain. */
static const uint8_t *take(struct reader *r, size_t len)
{
	if (len > r->n - r->off)
		return NULL;
	const uint8_t *q = r->p + r->off;
	r->off += len;
	return q;
}

static void sgx_report_decode(const uint8_t *b, struct dcap_sgx_report *r)
{
	memcpy(r->cpusvn, b, 16);
	r->miscselect = le32(b + 16);
	memcpy(r->attributes, b + 48, 16);
	memcpy(r->mrenclave, b + 64, 32);
	memcpy(r->mrsigner, b + 128, 32);
	r->isv_prod_id = le16(b + 256);
	r->isv_svn = le16(b + 258);
	memcpy(r->report_data, b + 320, 64);
}

static void td_report_decode(const uint8_t *b, bool td15, struct dcap_td_report *t)
{
	memcpy(t->tee_tcb_svn, b, 16);
	memcpy(t->mrseam, b + 16, 48);
	memcpy(t->mrsignerseam, b + 64, 48);
	memcpy(t->seam_attributes, b + 112, 8);
	memcpy(t->td_attributes, b + 120, 8);
	memcpy(t->xfam, b + 128, 8);
	memcpy(t->mrtd, b + 136, 48);
	memcpy(t->mrconfigid, b + 184, 48);
	memcpy(t->mrowner, b + 232, 48);
	memcpy(t->mrownerconfig, b + 280, 48);
	for (int i = 0; i < 4; i++)
		memcpy(t->rtmr[i], b + 328 + 48 * i, 48);
	memcpy(t->report_data, b + 520, 64);
	t->is_td15 = td15;
	if (td15) {
		memcpy(t->tee_tcb_svn2, b + 584, 16);
		memcpy(t->mr_servicetd, b + 600, 48);
	}
}

/*
 * Parses the QE report, its signature, the QE auth data and the type-5
 * certification data from r, which must be consumed exactly.
 */
static int parse_qe_part(struct reader *r, const char *where, struct dcap_quote *q, char *reason,
			 size_t rlen)
{
	q->qe_report = take(r, DCAP_SGX_REPORT_LEN);
	q->qe_report_sig = take(r, 64);
	const uint8_t *al = take(r, 2);
	if (!q->qe_report || !q->qe_report_sig || !al)
		return why_set(reason, rlen, SS_EPARSE,
			       "%s is too short for the QE report, its signature and the QE auth data length",
			       where);
	sgx_report_decode(q->qe_report, &q->qe);
	q->qe_auth_len = le16(al);
	q->qe_auth = take(r, q->qe_auth_len);
	if (!q->qe_auth)
		return why_set(reason, rlen, SS_EPARSE,
			       "QE auth data length %zu exceeds the %s", q->qe_auth_len,
			       where);
	const uint8_t *ct = take(r, 2), *cs = take(r, 4);
	if (!ct || !cs)
		return why_set(reason, rlen, SS_EPARSE,
			       "%s ends before the PCK certification data header", where);
	if (le16(ct) != 5)
		return why_set(reason, rlen, SS_EPARSE,
			       "certification data type %u is not supported (only 5, a PEM PCK chain, is)",
			       le16(ct));
	uint32_t size = le32(cs);
	const uint8_t *pem = take(r, size);
	if (!pem)
		return why_set(reason, rlen, SS_EPARSE,
			       "PCK certification data size %u exceeds the %s", size, where);
	if (r->off != r->n)
		return why_set(reason, rlen, SS_EPARSE,
			       "%zu unexpected bytes follow the PCK certification data in the %s",
			       r->n - r->off, where);
	while (size > 0 && pem[size - 1] == '\0')
		size--;
	if (size == 0 || size > PEM_CHAIN_MAX)
		return why_set(reason, rlen, SS_EPARSE,
			       "PCK certificate chain is %u bytes (1..%d allowed)", size,
			       PEM_CHAIN_MAX);
	if (memchr(pem, '\0', size))
		return why_set(reason, rlen, SS_EPARSE,
			       "PCK certificate chain contains a NUL byte");
	q->pck_pem = (const char *)pem;
	q->pck_pem_len = size;
	return 0;
}

int dcap_quote_parse(const uint8_t *p, size_t n, struct dcap_quote *q, char *reason,
		     size_t rlen)
{
	memset(q, 0, sizeof *q);
	if (!p || n < DCAP_HEADER_LEN)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote is %zu bytes, shorter than the 48-byte header", n);
	if (n > DCAP_QUOTE_MAX)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote is %zu bytes (at most %d accepted)", n, DCAP_QUOTE_MAX);
	q->version = le16(p);
	q->att_key_type = le16(p + 2);
	q->tee_type = le32(p + 4);
	memcpy(q->qe_vendor_id, p + 12, 16);
	memcpy(q->user_data, p + 28, 20);
	size_t off = DCAP_HEADER_LEN, body_len = 0;
	if (q->version != 3 && q->version != 4 && q->version != 5)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote version %u is not supported (3, 4 and 5 are)",
			       q->version);
	if (q->att_key_type != 2)
		return why_set(reason, rlen, SS_EPARSE,
			       "attestation key type %u is not 2 (ECDSA P-256)",
			       q->att_key_type);
	if (q->tee_type != DCAP_TEE_SGX && q->tee_type != DCAP_TEE_TDX)
		return why_set(reason, rlen, SS_EPARSE,
			       "TEE type 0x%x is neither SGX (0) nor TDX (0x81)",
			       q->tee_type);
	q->is_tdx = q->tee_type == DCAP_TEE_TDX;
	if (q->version == 3 && q->is_tdx)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote v3 carries TEE type TDX; TDX quotes are v4 or v5");
	if (!ct_equal(q->qe_vendor_id, intel_qe_vendor_id, 16))
		return why_set(reason, rlen, SS_EPARSE,
			       "QE vendor ID is not Intel's (939a7233f79c4ca9940a0db3957f0607)");
	if (q->version == 3) {
		q->hdr_qe_svn = le16(p + 8);
		q->hdr_pce_svn = le16(p + 10);
	}
	if (q->version == 5) {
		if (n < DCAP_HEADER_LEN + 6)
			return why_set(reason, rlen, SS_EPARSE,
				       "quote v5 is %zu bytes, too short for the body descriptor", n);
		q->body_type = le16(p + 48);
		uint32_t size = le32(p + 50);
		off = DCAP_HEADER_LEN + 6;
		size_t want = q->body_type == 1   ? DCAP_SGX_REPORT_LEN
			      : q->body_type == 2 ? DCAP_TD10_BODY_LEN
			      : q->body_type == 3 ? DCAP_TD15_BODY_LEN
						  : 0;
		if (!want)
			return why_set(reason, rlen, SS_EPARSE,
				       "quote v5 body type %u is not supported (1, 2 or 3)",
				       q->body_type);
		if ((q->body_type == 1) == q->is_tdx)
			return why_set(reason, rlen, SS_EPARSE,
				       "quote v5 body type %u does not match TEE type 0x%x",
				       q->body_type, q->tee_type);
		if (size != want)
			return why_set(reason, rlen, SS_EPARSE,
				       "quote v5 body type %u has size %u, expected %zu",
				       q->body_type, size, want);
		body_len = want;
	} else {
		q->body_type = q->is_tdx ? 2 : 1;
		body_len = q->is_tdx ? DCAP_TD10_BODY_LEN : DCAP_SGX_REPORT_LEN;
	}
	if (n - off < body_len + 4)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote is truncated: %zu bytes, the body and signature data length need %zu",
			       n, off + body_len + 4);
	if (q->is_tdx)
		td_report_decode(p + off, q->body_type == 3, &q->td);
	else
		sgx_report_decode(p + off, &q->enclave);
	q->signed_len = off + body_len;
	uint32_t sig_len = le32(p + q->signed_len);
	size_t sd = q->signed_len + 4;
	if (sig_len > n - sd)
		return why_set(reason, rlen, SS_EPARSE,
			       "signature data length %u exceeds the %zu bytes left in the quote (truncated quote?)",
			       sig_len, n - sd);
	q->trailing = n - sd - sig_len;
	struct reader r = { p + sd, sig_len, 0 };
	q->signature = take(&r, 64);
	q->att_key = take(&r, 64);
	if (!q->signature || !q->att_key)
		return why_set(reason, rlen, SS_EPARSE,
			       "signature data (%u bytes) is too short for the signature and attestation key",
			       sig_len);
	if (q->version == 3)
		return parse_qe_part(&r, "signature data", q, reason, rlen);
	const uint8_t *ct = take(&r, 2), *cs = take(&r, 4);
	if (!ct || !cs)
		return why_set(reason, rlen, SS_EPARSE,
			       "signature data ends before the certification data header");
	if (le16(ct) != 6)
		return why_set(reason, rlen, SS_EPARSE,
			       "quote v%u certification data type %u is not 6 (QE report certification data)",
			       q->version, le16(ct));
	uint32_t csize = le32(cs);
	const uint8_t *cd = take(&r, csize);
	if (!cd)
		return why_set(reason, rlen, SS_EPARSE,
			       "QE report certification data size %u exceeds the signature data length %u",
			       csize, sig_len);
	if (r.off != r.n)
		return why_set(reason, rlen, SS_EPARSE,
			       "%zu unexpected bytes follow the certification data in the signature data",
			       r.n - r.off);
	struct reader inner = { cd, csize, 0 };
	return parse_qe_part(&inner, "QE report certification data", q, reason, rlen);
}

/* ---- DER walking and the PCK SGX extension ------------------------------ */

struct der {
	const uint8_t *p;
	size_t n;
};

/* Reads the next TLV from d into (tag, val). Minimal lengths only. */
static int der_next(struct der *d, uint8_t *tag, struct der *val)
{
	if (d->n < 2)
		return SS_EPARSE;
	size_t hdr, len;
	uint8_t l = d->p[1];
	if (l < 0x80) {
		hdr = 2;
		len = l;
	} else {
		size_t nb = l & 0x7f;
		if (nb == 0 || nb > 3 || d->n < 2 + nb || d->p[2] == 0)
			return SS_EPARSE;
		len = 0;
		for (size_t i = 0; i < nb; i++)
			len = len << 8 | d->p[2 + i];
		if (len < 0x80)
			return SS_EPARSE;
		hdr = 2 + nb;
	}
	if (len > d->n - hdr)
		return SS_EPARSE;
	*tag = d->p[0];
	val->p = d->p + hdr;
	val->n = len;
	d->p += hdr + len;
	d->n -= hdr + len;
	return 0;
}

/* Parses a non-negative minimal DER INTEGER content of at most 3 bytes. */
static int der_uint(const struct der *v, uint32_t max, uint32_t *out)
{
	if (v->n < 1 || v->n > 3 || (v->p[0] & 0x80) ||
	    (v->n > 1 && v->p[0] == 0 && !(v->p[1] & 0x80)))
		return SS_EPARSE;
	uint32_t x = 0;
	for (size_t i = 0; i < v->n; i++)
		x = x << 8 | v->p[i];
	if (x > max)
		return SS_EPARSE;
	*out = x;
	return 0;
}

/*
 * Reads one SEQUENCE { OID, value } from d whose OID is the SGX OID followed
 * by depth arcs (each < 128); returns the last arc in *arc and the value.
 */
static int sgx_entry(struct der *d, size_t depth, int *arc, uint8_t *vtag, struct der *val)
{
	uint8_t tag;
	struct der seq, oid;
	if (der_next(d, &tag, &seq) < 0 || tag != 0x30 || der_next(&seq, &tag, &oid) < 0 ||
	    tag != 0x06 || oid.n != sizeof sgx_oid + depth ||
	    memcmp(oid.p, sgx_oid, sizeof sgx_oid) != 0)
		return SS_EPARSE;
	for (size_t i = 0; i < depth; i++)
		if (oid.p[sizeof sgx_oid + i] & 0x80)
			return SS_EPARSE;
	*arc = oid.p[oid.n - 1];
	if (der_next(&seq, vtag, val) < 0 || seq.n != 0)
		return SS_EPARSE;
	return 0;
}

static int pck_tcb_parse(struct der v, struct dcap_pck_ext *ext, const char **what)
{
	uint32_t seen = 0;
	while (v.n > 0) {
		int arc = 0;
		uint8_t tag;
		struct der val;
		*what = "TCB entry";
		if (sgx_entry(&v, 2, &arc, &tag, &val) < 0)
			return SS_EPARSE;
		uint32_t x = 0;
		if (arc < 1 || arc > 18)
			continue; /* unknown TCB arcs are ignored */
		if (seen & (1u << arc)) {
			*what = "duplicate TCB entry";
			return SS_EPARSE;
		}
		seen |= 1u << arc;
		if (arc <= 16) {
			*what = "TCB component SVN";
			if (tag != 0x02 || der_uint(&val, 255, &x) < 0)
				return SS_EPARSE;
			ext->tcb_comp[arc - 1] = (uint8_t)x;
		} else if (arc == 17) {
			*what = "PCESVN";
			if (tag != 0x02 || der_uint(&val, 65535, &x) < 0)
				return SS_EPARSE;
			ext->pcesvn = (uint16_t)x;
		} else {
			*what = "CPUSVN";
			if (tag != 0x04 || val.n != 16)
				return SS_EPARSE;
			memcpy(ext->cpusvn, val.p, 16);
		}
	}
	if (seen != 0x7fffeu) {
		*what = "TCB (a component, PCESVN or CPUSVN is missing)";
		return SS_EPARSE;
	}
	return 0;
}

static int pck_ext_from_x509(X509 *x, struct dcap_pck_ext *ext, char *reason, size_t rlen)
{
	memset(ext, 0, sizeof *ext);
	ext->sgx_type = -1;
	int rc = SS_EPARSE;
	const char *what = "extension";
	ASN1_OBJECT *obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
	if (!obj)
		fatal("OBJ_txt2obj failed");
	int idx = X509_get_ext_by_OBJ(x, obj, -1);
	if (idx < 0 || X509_get_ext_by_OBJ(x, obj, idx) >= 0) {
		why_write(reason, rlen,
			  "PCK certificate has %s SGX extension (1.2.840.113741.1.13.1)",
			  idx < 0 ? "no" : "more than one");
		goto out;
	}
	const ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(x, idx));
	struct der top = { ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os) }, body;
	uint8_t tag;
	if (der_next(&top, &tag, &body) < 0 || tag != 0x30 || top.n != 0)
		goto bad;
	unsigned seen = 0;
	while (body.n > 0) {
		int arc = 0;
		struct der val;
		what = "entry";
		if (sgx_entry(&body, 1, &arc, &tag, &val) < 0)
			goto bad;
		if (arc < 1 || arc > 7)
			continue;
		if (seen & (1u << arc)) {
			what = "duplicate entry";
			goto bad;
		}
		seen |= 1u << arc;
		switch (arc) {
		case 1:
			what = "PPID";
			if (tag != 0x04 || val.n != 16)
				goto bad;
			memcpy(ext->ppid, val.p, 16);
			ext->has_ppid = true;
			break;
		case 2:
			if (tag != 0x30 || pck_tcb_parse(val, ext, &what) < 0)
				goto bad;
			break;
		case 3:
			what = "PCE-ID";
			if (tag != 0x04 || val.n != 2)
				goto bad;
			memcpy(ext->pceid, val.p, 2);
			break;
		case 4:
			what = "FMSPC";
			if (tag != 0x04 || val.n != 6)
				goto bad;
			memcpy(ext->fmspc, val.p, 6);
			break;
		case 5: {
			uint32_t t = 0;
			what = "SGX type";
			if (tag != 0x0a || der_uint(&val, 2, &t) < 0)
				goto bad;
			ext->sgx_type = (int)t;
			break;
		}
		default:
			break; /* PlatformInstanceID and configuration are not used */
		}
	}
	if ((seen & 0x1c) != 0x1c) {
		what = "TCB, PCE-ID or FMSPC (missing)";
		goto bad;
	}
	rc = 0;
	goto out;
bad:
	why_write(reason, rlen, "PCK certificate SGX extension: malformed %s", what);
out:
	ASN1_OBJECT_free(obj);
	return rc;
}

int dcap_pck_ext_parse(const uint8_t *der, size_t len, struct dcap_pck_ext *ext, char *reason,
		       size_t rlen)
{
	memset(ext, 0, sizeof *ext);
	if (!der || len == 0 || len > PEM_CHAIN_MAX)
		return why_set(reason, rlen, SS_EPARSE, "PCK certificate is empty or too large");
	const unsigned char *q = der;
	X509 *x = d2i_X509(NULL, &q, (long)len);
	if (!x || q != der + len) {
		X509_free(x);
		return why_set(reason, rlen, SS_EPARSE, "PCK certificate is not valid DER");
	}
	int rc = pck_ext_from_x509(x, ext, reason, rlen);
	X509_free(x);
	return rc;
}

/* ---- ECDSA P-256 -------------------------------------------------------- */

/* Returns a P-256 public key from raw x||y (64 bytes), or NULL when invalid. */
static EVP_PKEY *p256_key_from_raw(const uint8_t xy[64])
{
	uint8_t pt[65];
	pt[0] = 0x04;
	memcpy(pt + 1, xy, 64);
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!bld || !ctx ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt) != 1 ||
	    !(params = OSSL_PARAM_BLD_to_param(bld)))
		fatal("OSSL_PARAM_BLD failed");
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	/* fromdata does not check that the point is on the curve; do it here. */
	if (pkey) {
		EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (!chk || EVP_PKEY_public_check(chk) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(chk);
	}
	ERR_clear_error();
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

static bool is_p256(EVP_PKEY *pkey)
{
	char group[32] = "";
	return pkey && EVP_PKEY_is_a(pkey, "EC") &&
	       EVP_PKEY_get_group_name(pkey, group, sizeof group, NULL) == 1 &&
	       (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"));
}

/* Verifies the raw big-endian r||s signature over msg with SHA-256. */
static bool ecdsa_verify_raw(EVP_PKEY *pkey, const void *msg, size_t len, const uint8_t sig[64])
{
	bool ok = false;
	unsigned char *der = NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!es || !r || !s || !md)
		fatal("out of memory");
	if (ECDSA_SIG_set0(es, r, s) != 1)
		fatal("ECDSA_SIG_set0 failed");
	int dl = i2d_ECDSA_SIG(es, &der);
	if (dl > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestVerify(md, der, (size_t)dl, msg, len) == 1)
		ok = true;
	ERR_clear_error();
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return ok;
}

/* ---- certificates, roots and CRLs --------------------------------------- */

/*
 * Parses up to CHAIN_MAX_CERTS PEM certificates from text into a new stack.
 * Anything but whitespace outside the PEM blocks is an error.
 */
static int pem_chain_parse(const char *text, size_t len, const char *what, STACK_OF(X509) **out,
			   char *reason, size_t rlen)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	int rc = 0;
	*out = sk_X509_new_null();
	if (!*out)
		fatal("out of memory");
	if (len == 0 || len > PEM_CHAIN_MAX) {
		why_write(reason, rlen,
			  "%s is %zu bytes (1..%d allowed)", what, len, PEM_CHAIN_MAX);
		rc = SS_EPARSE;
		goto out;
	}
	size_t pos = 0;
	for (;;) {
		while (pos < len && strchr(" \t\r\n", text[pos]) && text[pos] != '\0')
			pos++;
		if (pos == len)
			break;
		const char *e = NULL;
		if (len - pos < sizeof begin - 1 || memcmp(text + pos, begin, sizeof begin - 1) != 0 ||
		    !(e = memmem(text + pos, len - pos, end, sizeof end - 1))) {
			why_write(reason, rlen, "%s has data outside its PEM certificates", what);
			rc = SS_EPARSE;
			goto out;
		}
		size_t stop = (size_t)(e - text) + sizeof end - 1;
		if (sk_X509_num(*out) >= CHAIN_MAX_CERTS) {
			why_write(reason, rlen, "%s has more than %d certificates", what,
				  CHAIN_MAX_CERTS);
			rc = SS_EPARSE;
			goto out;
		}
		BIO *bio = BIO_new_mem_buf(text + pos, (int)(stop - pos));
		if (!bio)
			fatal("BIO_new_mem_buf failed");
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (!x) {
			why_write(reason, rlen,
				  "%s: certificate %d is not a valid PEM certificate",
				  what, sk_X509_num(*out) + 1);
			rc = SS_EPARSE;
			goto out;
		}
		if (!sk_X509_push(*out, x))
			fatal("out of memory");
		pos = stop;
	}
	if (sk_X509_num(*out) == 0) {
		why_write(reason, rlen, "%s contains no certificate", what);
		rc = SS_EPARSE;
	}
out:
	ERR_clear_error();
	return rc;
}

/* DER of x (the encoding it was parsed from); caller frees with OPENSSL_free. */
static int cert_der(X509 *x, unsigned char **der)
{
	*der = NULL;
	int n = i2d_X509(x, der);
	if (n <= 0)
		fatal("i2d_X509 failed");
	return n;
}

static bool cert_is_pinned_root(X509 *x)
{
	uint8_t md[32];
	unsigned int mdlen = sizeof md;
	char hex[65];
	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		fatal("X509_digest failed");
	hex_lower(md, 32, hex);
	return !strcmp(hex, DCAP_ROOT_CA_SHA256);
}

/*
 * Loads the trust anchor from collateral (PEM or DER); *anchor stays NULL
 * when none is given (the pin alone then decides). SS_EAUTH when it is not
 * the pinned Intel SGX Root CA.
 */
static int anchor_load(const struct dcap_blob *b, X509 **anchor, char *reason, size_t rlen)
{
	*anchor = NULL;
	if (!b->data || b->len == 0)
		return 0;
	if (b->len > PEM_CHAIN_MAX)
		return why_set(reason, rlen, SS_EPARSE, "trust anchor file is too large");
	BIO *bio = BIO_new_mem_buf(b->data, (int)b->len);
	if (!bio)
		fatal("BIO_new_mem_buf failed");
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!x) {
		const unsigned char *q = b->data;
		x = d2i_X509(NULL, &q, (long)b->len);
	}
	ERR_clear_error();
	if (!x)
		return why_set(reason, rlen, SS_EPARSE,
			       "trust anchor is neither a PEM nor a DER certificate");
	if (!cert_is_pinned_root(x)) {
		char cn[64];
		cert_subject_cn(x, cn, sizeof cn);
		why_write(reason, rlen,
			  "trust anchor '%s' is not the pinned Intel SGX Root CA (sha256 %s)", cn,
			  DCAP_ROOT_CA_SHA256);
		X509_free(x);
		return SS_EAUTH;
	}
	*anchor = x;
	return 0;
}

/*
 * Checks that the embedded root certificate is byte for byte the trust
 * anchor (or, without one, hashes to the pin).
 */
static int embedded_root_check(X509 *root, X509 *anchor, const char *what, char *reason,
			       size_t rlen)
{
	bool same;
	if (anchor) {
		unsigned char *a = NULL, *b = NULL;
		int na = cert_der(anchor, &a), nb = cert_der(root, &b);
		same = na == nb && !memcmp(a, b, (size_t)na);
		OPENSSL_free(a);
		OPENSSL_free(b);
	} else {
		same = cert_is_pinned_root(root);
	}
	if (!same) {
		char cn[64];
		cert_subject_cn(root, cn, sizeof cn);
		return why_set(reason, rlen, SS_EAUTH,
			       "root certificate '%s' embedded in the %s is not byte for byte the Intel SGX Root CA trust anchor",
			       cn, what);
	}
	return 0;
}

/*
 * Verifies leaf with the untrusted intermediates up to root (already
 * checked against the anchor) at now.
 */
static int chain_verify(X509 *leaf, STACK_OF(X509) *untrusted, X509 *root, int64_t now,
			const char *what, char *reason, size_t rlen)
{
	int rc = 0;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	if (!store || !ctx || X509_STORE_add_cert(store, root) != 1 ||
	    X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
		fatal("X509 store setup failed");
	X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_time(vp, (time_t)now);
	X509_VERIFY_PARAM_set_depth(vp, 3);
	if (X509_verify_cert(ctx) != 1) {
		cert_explain_verify(ctx, now, what, "chains to the Intel SGX Root CA", reason, rlen);
		rc = SS_EAUTH;
	}
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

/*
 * Checks a DER CRL: issued (name and signature) by issuer, current at now.
 * Narrows [*from, *until] to its validity. Sets *revoked when serial_of is
 * listed (serial_of may be NULL).
 */
static int crl_check(const struct dcap_blob *b, const char *what, X509 *issuer, X509 *serial_of,
		     int64_t now, bool *revoked, int64_t *from, int64_t *until, char *reason,
		     size_t rlen)
{
	int rc = 0;
	char cn[64], icn[64], t1[32], t2[32];
	const unsigned char *q = b->data;
	X509_CRL *crl = NULL;
	EVP_PKEY *ik = NULL;
	if (b->len == 0 || b->len > DCAP_COLLATERAL_MAX ||
	    !(crl = d2i_X509_CRL(NULL, &q, (long)b->len)) || q != b->data + b->len) {
		why_write(reason, rlen, "%s is not a DER CRL", what);
		rc = SS_EPARSE;
		goto out;
	}
	cert_subject_cn(issuer, cn, sizeof cn);
	cert_name_cn(X509_CRL_get_issuer(crl), icn, sizeof icn);
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0) {
		why_write(reason, rlen, "%s is issued by '%s', not by '%s'", what, icn, cn);
		rc = SS_EAUTH;
		goto out;
	}
	ik = X509_get_pubkey(issuer);
	if (!ik || X509_CRL_verify(crl, ik) != 1) {
		why_write(reason, rlen, "%s signature does not verify with the key of '%s'", what,
			  cn);
		rc = SS_ECRYPTO;
		goto out;
	}
	int64_t lu = 0, nu = 0;
	if (cert_time_unix(X509_CRL_get0_lastUpdate(crl), &lu) < 0 ||
	    !X509_CRL_get0_nextUpdate(crl) ||
	    cert_time_unix(X509_CRL_get0_nextUpdate(crl), &nu) < 0) {
		why_write(reason, rlen, "%s has no valid thisUpdate/nextUpdate", what);
		rc = SS_EPARSE;
		goto out;
	}
	cert_fmt_time(now, t2);
	if (now < lu) {
		cert_fmt_time(lu, t1);
		why_write(reason, rlen, "%s is not valid before %s (verification time %s)", what,
			  t1, t2);
		rc = SS_ETIMEDOUT;
		goto out;
	}
	if (now > nu) {
		cert_fmt_time(nu, t1);
		why_write(reason, rlen,
			  "%s expired at %s (verification time %s): refresh the collateral",
			  what, t1, t2);
		rc = SS_ETIMEDOUT;
		goto out;
	}
	if (lu > *from)
		*from = lu;
	if (nu < *until)
		*until = nu;
	if (serial_of) {
		X509_REVOKED *rv = NULL;
		if (X509_CRL_get0_by_serial(crl, &rv, X509_get0_serialNumber(serial_of)) == 1)
			*revoked = true;
	}
out:
	ERR_clear_error();
	EVP_PKEY_free(ik);
	X509_CRL_free(crl);
	return rc;
}

/* ---- result cache ------------------------------------------------------- */

/*
 * Facts that depend only on hashed input bytes and hold for a time window:
 * a verified PCK chain (with its key, SGX extension and revocation result)
 * or a verified collateral signature (pkey NULL). Entries are used only
 * when the verification time lies inside the window, so expiry is exact.
 */
struct cached {
	int64_t from, until;
	EVP_PKEY *pkey;
	struct dcap_pck_ext ext;
	bool revoked;
	bool root_crl, pck_crl;
	char ca_cn[64];
};

static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static struct cert_cache *cache;

static void cache_init(void)
{
	cache = cert_cache_new(CACHE_SLOTS, sizeof(struct cached));
}

/* On a hit copies the entry into v (v->pkey is a new reference). */
static bool cache_get(const uint8_t key[32], int64_t now, struct cached *v)
{
	pthread_once(&cache_once, cache_init);
	EVP_PKEY *pkey = NULL;
	int64_t from = 0, until = 0;
	/* The payload's own pkey, from and until are stale copies; the cache's replace them. */
	if (!cert_cache_get(cache, key, now, v, &pkey, &from, &until))
		return false;
	v->pkey = pkey;
	v->from = from;
	v->until = until;
	return true;
}

static void cache_put(const uint8_t key[32], const struct cached *v)
{
	pthread_once(&cache_once, cache_init);
	cert_cache_put(cache, key, v, v->pkey, v->from, v->until);
}

void dcap_cache_reset(void)
{
	pthread_once(&cache_once, cache_init);
	cert_cache_reset(cache);
}

/* SHA-256 over a domain label and length-prefixed parts. */
static void cache_key(const char *domain, const void *const *parts, const size_t *lens, size_t n,
		      uint8_t key[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 32;
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, domain, strlen(domain) + 1) != 1)
		fatal("SHA-256 failed");
	for (size_t i = 0; i < n; i++) {
		uint64_t l = lens[i];
		if (EVP_DigestUpdate(md, &l, sizeof l) != 1 ||
		    (l && EVP_DigestUpdate(md, parts[i], lens[i]) != 1))
			fatal("SHA-256 failed");
	}
	if (EVP_DigestFinal_ex(md, key, &len) != 1)
		fatal("SHA-256 failed");
	EVP_MD_CTX_free(md);
}

/* ---- the PCK chain ------------------------------------------------------ */

/*
 * Verifies the quote's PCK chain (PCK -> Platform/Processor CA -> root, the
 * root byte-identical to the trust anchor) at now with the CRLs present in
 * c, and fills res (res->pkey is a new reference to the PCK key).
 */
static int pck_chain(const struct dcap_quote *q, const struct dcap_collateral *c, X509 *anchor,
		     int64_t now, struct cached *res, char *reason, size_t rlen)
{
	int rc = 0;
	uint8_t key[32];
	STACK_OF(X509) *certs = NULL, *untrusted = NULL;
	const void *parts[3] = { q->pck_pem, c->root_ca_crl.data, c->pck_crl.data };
	size_t lens[3] = { q->pck_pem_len, c->root_ca_crl.len, c->pck_crl.len };
	memset(res, 0, sizeof *res);
	cache_key("seeswarm-dcap-pck-v1", parts, lens, 3, key);
	if (cache_get(key, now, res))
		return 0;
	rc = pem_chain_parse(q->pck_pem, q->pck_pem_len, "PCK certificate chain", &certs, reason,
			     rlen);
	if (rc < 0)
		goto out;
	if (sk_X509_num(certs) != 3) {
		why_write(reason, rlen,
			  "PCK certificate chain has %d certificates, expected 3 (PCK, intermediate CA, root CA)",
			  sk_X509_num(certs));
		rc = SS_EAUTH;
		goto out;
	}
	X509 *leaf = sk_X509_value(certs, 0), *inter = sk_X509_value(certs, 1);
	X509 *root = sk_X509_value(certs, 2);
	rc = embedded_root_check(root, anchor, "quote's PCK chain", reason, rlen);
	if (rc < 0)
		goto out;
	untrusted = sk_X509_new_null();
	if (!untrusted || !sk_X509_push(untrusted, inter))
		fatal("out of memory");
	rc = chain_verify(leaf, untrusted, anchor ? anchor : root, now, "PCK certificate chain",
			  reason, rlen);
	if (rc < 0)
		goto out;
	char cn[64];
	cert_subject_cn(leaf, cn, sizeof cn);
	cert_subject_cn(inter, res->ca_cn, sizeof res->ca_cn);
	if (strcmp(cn, "Intel SGX PCK Certificate") != 0 ||
	    (strcmp(res->ca_cn, "Intel SGX PCK Platform CA") != 0 &&
	     strcmp(res->ca_cn, "Intel SGX PCK Processor CA") != 0)) {
		why_write(reason, rlen,
			  "PCK chain is '%s' issued by '%s', not an Intel SGX PCK Certificate from the Platform or Processor CA",
			  cn, res->ca_cn);
		rc = SS_EAUTH;
		goto out;
	}
	res->from = INT64_MIN;
	res->until = INT64_MAX;
	for (int i = 0; i < 3; i++)
		cert_window(sk_X509_value(certs, i), &res->from, &res->until);
	if (c->root_ca_crl.len) {
		rc = crl_check(&c->root_ca_crl, "Root CA CRL", anchor ? anchor : root, inter, now,
			       &res->revoked, &res->from, &res->until, reason, rlen);
		if (rc < 0)
			goto out;
		res->root_crl = true;
	}
	if (c->pck_crl.len) {
		rc = crl_check(&c->pck_crl, "PCK CRL", inter, leaf, now, &res->revoked, &res->from,
			       &res->until, reason, rlen);
		if (rc < 0)
			goto out;
		res->pck_crl = true;
	}
	rc = pck_ext_from_x509(leaf, &res->ext, reason, rlen);
	if (rc < 0)
		goto out;
	res->pkey = X509_get_pubkey(leaf);
	if (!is_p256(res->pkey)) {
		why_write(reason, rlen, "PCK certificate key is not an EC P-256 key");
		rc = SS_EAUTH;
		goto out;
	}
	cache_put(key, res);
out:
	if (rc < 0) {
		EVP_PKEY_free(res->pkey);
		res->pkey = NULL;
	}
	ERR_clear_error();
	sk_X509_free(untrusted);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

/* ---- signed JSON collateral --------------------------------------------- */

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* Returns the index just after the JSON string starting at s[i] == '"', or 0. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

/* Returns the index just after the JSON value starting at s[i], or 0. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
	if (i >= n)
		return 0;
	if (s[i] == '"')
		return skip_string(s, n, i);
	if (s[i] == '{' || s[i] == '[') {
		int depth = 0;
		while (i < n) {
			char ch = s[i];
			if (ch == '"') {
				i = skip_string(s, n, i);
				if (!i)
					return 0;
				continue;
			}
			if (ch == '{' || ch == '[') {
				if (++depth > 64)
					return 0;
			} else if (ch == '}' || ch == ']') {
				if (--depth == 0)
					return i + 1;
			}
			i++;
		}
		return 0;
	}
	size_t start = i;
	while (i < n && !strchr(",}] \t\r\n", s[i]))
		i++;
	return i > start ? i : 0;
}

/*
 * Locates the raw bytes of the object value of top-level member key in doc
 * (exactly as they appear, for the signature). The document itself is
 * checked by jansson separately; this scanner only has to find the span.
 */
static int raw_member(const char *doc, size_t n, const char *key, const char **body,
		      size_t *body_len)
{
	size_t klen = strlen(key), i = skip_ws(doc, n, 0);
	if (i >= n || doc[i] != '{')
		return SS_EPARSE;
	i++;
	for (;;) {
		i = skip_ws(doc, n, i);
		if (i >= n || doc[i] != '"')
			return SS_EPARSE;
		size_t ks = i + 1, ke = skip_string(doc, n, i);
		if (!ke)
			return SS_EPARSE;
		i = skip_ws(doc, n, ke);
		if (i >= n || doc[i] != ':')
			return SS_EPARSE;
		i = skip_ws(doc, n, i + 1);
		size_t ve = skip_value(doc, n, i);
		if (!ve)
			return SS_EPARSE;
		if (ke - 1 - ks == klen && !memcmp(doc + ks, key, klen)) {
			if (doc[i] != '{')
				return SS_EPARSE;
			*body = doc + i;
			*body_len = ve - i;
			return 0;
		}
		i = skip_ws(doc, n, ve);
		if (i >= n || doc[i] != ',')
			return SS_EPARSE;
		i++;
	}
}

static int json_date(const json_t *o, const char *key, int64_t *out)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && strlen(s) < 40 && time_parse_rfc3339(s, out) == 0 ? 0 : SS_EPARSE;
}

/*
 * Verifies signed collateral {"<member>":{...},"signature":"<hex r||s>"}:
 * the TCB Signing chain to the trust anchor (root CRL applied), the
 * signature over the raw member bytes, and issueDate <= now <= nextUpdate.
 * On success *body is the parsed member object (new reference).
 */
static int signed_json_verify(const struct dcap_blob *b, const char *member, const char *what,
			      const struct dcap_collateral *c, X509 *anchor, int64_t now,
			      json_t **body, char *reason, size_t rlen)
{
	int rc = 0;
	json_t *doc = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *pk = NULL;
	const char *raw = NULL;
	size_t raw_len = 0;
	uint8_t sig[64], key[32];
	json_error_t jerr;
	*body = NULL;
	if (b->len > DCAP_COLLATERAL_MAX) {
		why_write(reason, rlen, "%s is larger than %d bytes", what, DCAP_COLLATERAL_MAX);
		rc = SS_EPARSE;
		goto out;
	}
	doc = json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
	const char *sig_hex = json_string_value(json_object_get(doc, "signature"));
	if (!json_is_object(doc) || json_object_size(doc) != 2 ||
	    !json_is_object(json_object_get(doc, member)) || !sig_hex ||
	    raw_member((const char *)b->data, b->len, member, &raw, &raw_len) < 0) {
		why_write(reason, rlen,
			  "%s is not a JSON object with exactly \"%s\" and \"signature\"",
			  what, member);
		rc = SS_EPARSE;
		goto out;
	}
	if (hex_exact(sig_hex, sig, 64) < 0) {
		why_write(reason, rlen, "%s signature is not 128 hex digits (raw r||s)", what);
		rc = SS_EPARSE;
		goto out;
	}
	*body = json_loadb(raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(*body)) {
		why_write(reason, rlen, "%s \"%s\" is not a JSON object", what, member);
		rc = SS_EPARSE;
		goto out;
	}
	const void *parts[4] = { raw, sig, c->tcb_signing_chain.data, c->root_ca_crl.data };
	size_t lens[4] = { raw_len, 64, c->tcb_signing_chain.len, c->root_ca_crl.len };
	struct cached hit;
	cache_key("seeswarm-dcap-json-v1", parts, lens, 4, key);
	if (!cache_get(key, now, &hit)) {
		if (!c->tcb_signing_chain.len) {
			why_write(reason, rlen,
				  "%s is present but the TCB Signing certificate chain is not",
				  what);
			rc = SS_EAUTH;
			goto out;
		}
		rc = pem_chain_parse((const char *)c->tcb_signing_chain.data,
				     c->tcb_signing_chain.len, "TCB Signing chain", &chain, reason,
				     rlen);
		if (rc < 0)
			goto out;
		X509 *leaf = sk_X509_value(chain, 0);
		X509 *root = sk_X509_num(chain) > 1 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : NULL;
		if (sk_X509_num(chain) > 2) {
			why_write(reason, rlen,
				  "TCB Signing chain has %d certificates (at most 2)",
				  sk_X509_num(chain));
			rc = SS_EAUTH;
			goto out;
		}
		if (root) {
			rc = embedded_root_check(root, anchor, "TCB Signing chain", reason, rlen);
			if (rc < 0)
				goto out;
		} else if (!anchor) {
			why_write(reason, rlen,
				  "TCB Signing chain lacks the root and no trust anchor is configured");
			rc = SS_EAUTH;
			goto out;
		}
		X509 *trust = anchor ? anchor : root;
		rc = chain_verify(leaf, NULL, trust, now, "TCB Signing chain", reason, rlen);
		if (rc < 0)
			goto out;
		char cn[64];
		cert_subject_cn(leaf, cn, sizeof cn);
		if (strcmp(cn, "Intel SGX TCB Signing") != 0) {
			why_write(reason, rlen,
				  "%s signer is '%s', not 'Intel SGX TCB Signing'", what,
				  cn);
			rc = SS_EAUTH;
			goto out;
		}
		memset(&hit, 0, sizeof hit);
		hit.from = INT64_MIN;
		hit.until = INT64_MAX;
		cert_window(leaf, &hit.from, &hit.until);
		cert_window(trust, &hit.from, &hit.until);
		if (c->root_ca_crl.len) {
			rc = crl_check(&c->root_ca_crl, "Root CA CRL", trust, leaf, now, &hit.revoked,
				       &hit.from, &hit.until, reason, rlen);
			if (rc < 0)
				goto out;
			if (hit.revoked) {
				why_write(reason, rlen,
					  "TCB Signing certificate is revoked by the Root CA CRL");
				rc = SS_EAUTH;
				goto out;
			}
		}
		pk = X509_get_pubkey(leaf);
		if (!is_p256(pk) || !ecdsa_verify_raw(pk, raw, raw_len, sig)) {
			why_write(reason, rlen,
				  "%s signature by 'Intel SGX TCB Signing' does not verify over the \"%s\" bytes",
				  what, member);
			rc = SS_ECRYPTO;
			goto out;
		}
		cache_put(key, &hit);
	}
	int64_t issue = 0, next = 0;
	char t1[32], t2[32];
	if (json_date(*body, "issueDate", &issue) < 0 || json_date(*body, "nextUpdate", &next) < 0) {
		why_write(reason, rlen, "%s lacks a valid issueDate or nextUpdate", what);
		rc = SS_EPARSE;
		goto out;
	}
	cert_fmt_time(now, t2);
	if (now < issue) {
		cert_fmt_time(issue, t1);
		why_write(reason, rlen,
			  "%s is not valid before its issueDate %s (verification time %s)",
			  what, t1, t2);
		rc = SS_ETIMEDOUT;
		goto out;
	}
	if (now > next) {
		cert_fmt_time(next, t1);
		why_write(reason, rlen,
			  "%s expired at its nextUpdate %s (verification time %s): refresh the collateral",
			  what, t1, t2);
		rc = SS_ETIMEDOUT;
		goto out;
	}
out:
	if (rc < 0) {
		json_decref(*body);
		*body = NULL;
	}
	ERR_clear_error();
	EVP_PKEY_free(pk);
	sk_X509_pop_free(chain, X509_free);
	json_decref(doc);
	return rc;
}

/* ---- TCB status --------------------------------------------------------- */

enum tcb_status {
	TS_UP_TO_DATE,
	TS_SW_HARDENING,
	TS_CONFIG,
	TS_CONFIG_SW_HARDENING,
	TS_OUT_OF_DATE,
	TS_OUT_OF_DATE_CONFIG,
	TS_REVOKED,
	TS_NOT_SUPPORTED, /* no TCB level matches (Intel: "TCB not supported") */
	TS_UNKNOWN,       /* no TCB Info collateral */
	TS_COUNT,
};

static const char *const ts_names[TS_COUNT] = {
	"UpToDate",  "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
	"OutOfDate", "OutOfDateConfigurationNeeded", "Revoked", "NotSupported", "Unknown",
};

/* Parses a status name; only the first `limit` entries are accepted. */
static int ts_parse(const char *s, int limit)
{
	for (int i = 0; s && i < limit; i++)
		if (!strcmp(s, ts_names[i]))
			return i;
	return -1;
}

/*
 * Combines the platform status with the QE's or the TDX module's status as
 * Intel's QVL does: an OutOfDate component makes an UpToDate or
 * SWHardeningNeeded platform OutOfDate and a ConfigurationNeeded or
 * ConfigurationAndSWHardeningNeeded one OutOfDateConfigurationNeeded; a
 * Revoked component makes it Revoked; anything else keeps the platform's.
 */
static int ts_combine(int platform, int other)
{
	if (platform == TS_NOT_SUPPORTED || other == TS_NOT_SUPPORTED)
		return TS_NOT_SUPPORTED;
	if (other == TS_REVOKED)
		return TS_REVOKED;
	if (other == TS_OUT_OF_DATE || other == TS_OUT_OF_DATE_CONFIG) {
		if (platform == TS_UP_TO_DATE || platform == TS_SW_HARDENING)
			return TS_OUT_OF_DATE;
		if (platform == TS_CONFIG || platform == TS_CONFIG_SW_HARDENING)
			return TS_OUT_OF_DATE_CONFIG;
	}
	return platform;
}

struct tcb_eval {
	int status;          /* combined */
	int platform;        /* TCB Info level (and TDX module) */
	int qe;              /* QE Identity level, or TS_UNKNOWN */
	int module;          /* TDX module identity, or TS_UNKNOWN */
	char tcb_date[32];
	json_t *advisories;  /* array of strings (owned) */
};

static void add_advisories(json_t *dst, const json_t *level)
{
	const json_t *ids = json_object_get(level, "advisoryIDs"), *v;
	size_t i, j;
	json_array_foreach(ids, i, v) {
		const char *s = json_string_value(v);
		bool dup = false;
		const json_t *w;
		if (!s || strlen(s) > 64 || json_array_size(dst) >= DCAP_MAX_ADVISORIES)
			continue;
		json_array_foreach(dst, j, w) dup = dup || !strcmp(json_string_value(w), s);
		if (!dup)
			json_array_append_new(dst, json_string(s));
	}
}

/* Reads 16 {"svn": 0..255} objects. */
static int svn_array(const json_t *a, uint8_t out[16])
{
	if (!json_is_array(a) || json_array_size(a) != 16)
		return SS_EPARSE;
	for (size_t i = 0; i < 16; i++) {
		const json_t *s = json_object_get(json_array_get(a, i), "svn");
		if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) > 255)
			return SS_EPARSE;
		out[i] = (uint8_t)json_integer_value(s);
	}
	return 0;
}

static bool json_uint(const json_t *v, json_int_t max, json_int_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return false;
	*out = json_integer_value(v);
	return true;
}

/* Reads a hex string member of exactly n bytes. */
static int json_hex(const json_t *o, const char *key, uint8_t *out, size_t n)
{
	return hex_exact(json_string_value(json_object_get(o, key)), out, n);
}

/* Finds the first level of an isvsvn-indexed tcbLevels array that svn meets. */
static int isvsvn_level(const json_t *levels, unsigned svn, const json_t **match, int *status)
{
	const json_t *l;
	size_t i;
	*match = NULL;
	if (!json_is_array(levels) || json_array_size(levels) == 0 ||
	    json_array_size(levels) > MAX_TCB_LEVELS)
		return SS_EPARSE;
	json_array_foreach(levels, i, l) {
		json_int_t isvsvn = 0;
		int st = ts_parse(json_string_value(json_object_get(l, "tcbStatus")), TS_REVOKED + 1);
		if (!json_uint(json_object_get(json_object_get(l, "tcb"), "isvsvn"), 65535, &isvsvn) ||
		    st < 0)
			return SS_EPARSE;
		if (!*match && svn >= isvsvn) {
			*match = l;
			*status = st;
		}
	}
	return 0;
}

/* The TDX module identity check (TCB Info v3 "tdxModuleIdentities"). */
static int tdx_module_eval(const json_t *ti, const struct dcap_td_report *td, struct tcb_eval *ev,
			   char *reason, size_t rlen)
{
	uint8_t mrsigner[48], attr[8], mask[8];
	const json_t *ids = json_object_get(ti, "tdxModuleIdentities");
	const json_t *ident = NULL, *m;
	char want[16];
	size_t i;
	ev->module = TS_UNKNOWN;
	if (td->tee_tcb_svn[1] == 0 || !ids) {
		ident = json_object_get(ti, "tdxModule");
		snprintf(want, sizeof want, "tdxModule");
	} else {
		snprintf(want, sizeof want, "TDX_%02X", td->tee_tcb_svn[1]);
		if (!json_is_array(ids) || json_array_size(ids) > MAX_TCB_LEVELS)
			return why_set(reason, rlen, SS_EPARSE,
				       "TCB Info tdxModuleIdentities is not a bounded array");
		json_array_foreach(ids, i, m) {
			const char *id = json_string_value(json_object_get(m, "id"));
			if (id && !strcasecmp(id, want))
				ident = m;
		}
		if (!ident)
			return why_set(reason, rlen, SS_EAUTH,
				       "TDX module %s (tee_tcb_svn[1]) is not in the TCB Info's tdxModuleIdentities",
				       want);
	}
	if (!ident)
		return 0; /* TCB Info without a module identity */
	if (json_hex(ident, "mrsigner", mrsigner, 48) < 0 || json_hex(ident, "attributes", attr, 8) < 0 ||
	    json_hex(ident, "attributesMask", mask, 8) < 0) {
		return why_set(reason, rlen, SS_EPARSE,
			       "TCB Info TDX module identity %s is malformed", want);
	}
	if (memcmp(mrsigner, td->mrsignerseam, 48) != 0)
		return why_set(reason, rlen, SS_EAUTH,
			       "mrsignerseam does not match the TCB Info TDX module identity %s",
			       want);
	for (int k = 0; k < 8; k++)
		if ((td->seam_attributes[k] & mask[k]) != (attr[k] & mask[k]))
			return why_set(reason, rlen, SS_EAUTH,
				       "masked seam_attributes do not match the TDX module identity %s",
				       want);
	const json_t *levels = json_object_get(ident, "tcbLevels");
	if (!levels)
		return 0; /* the TDX 1.0 "tdxModule" has no levels */
	const json_t *lvl = NULL;
	int st = TS_NOT_SUPPORTED;
	if (isvsvn_level(levels, td->tee_tcb_svn[0], &lvl, &st) < 0)
		return why_set(reason, rlen, SS_EPARSE,
			       "TCB Info TDX module %s tcbLevels are malformed", want);
	ev->module = lvl ? st : TS_NOT_SUPPORTED;
	if (lvl)
		add_advisories(ev->advisories, lvl);
	return 0;
}

/*
 * Evaluates TCB Info against the PCK extension (and the TD report): FMSPC
 * and PCE-ID must match; the first level whose SGX components and PCESVN
 * (and, for TDX, tdxtcbcomponents vs tee_tcb_svn) the platform meets gives
 * the status; then the TDX module identity.
 */
static int tcb_info_eval(const json_t *ti, const struct dcap_quote *q, const struct dcap_pck_ext *ext,
			 struct tcb_eval *ev, char *reason, size_t rlen)
{
	const char *id = json_string_value(json_object_get(ti, "id"));
	json_int_t version = 0;
	uint8_t fmspc[6], pceid[2];
	char h1[16], h2[16];
	json_uint(json_object_get(ti, "version"), 100, &version);
	if (q->is_tdx ? (!id || strcmp(id, "TDX") != 0 || version != 3)
		      : (id ? strcmp(id, "SGX") != 0 || version != 3 : version != 2)) {
		return why_set(reason, rlen, SS_EAUTH,
			       "TCB Info id '%s' version %lld is not %s", id ? id : "(none)",
			       (long long)version, q->is_tdx ? "TDX v3" : "SGX v2 or v3");
	}
	if (json_hex(ti, "fmspc", fmspc, 6) < 0 || json_hex(ti, "pceId", pceid, 2) < 0)
		return why_set(reason, rlen, SS_EPARSE, "TCB Info lacks a valid fmspc or pceId");
	if (memcmp(fmspc, ext->fmspc, 6) != 0) {
		hex_lower(fmspc, 6, h1);
		hex_lower(ext->fmspc, 6, h2);
		return why_set(reason, rlen, SS_EAUTH,
			       "TCB Info is for FMSPC %s but the PCK certificate has FMSPC %s",
			       h1, h2);
	}
	if (memcmp(pceid, ext->pceid, 2) != 0) {
		hex_lower(pceid, 2, h1);
		hex_lower(ext->pceid, 2, h2);
		return why_set(reason, rlen, SS_EAUTH,
			       "TCB Info is for PCE-ID %s but the PCK certificate has PCE-ID %s",
			       h1, h2);
	}
	const json_t *levels = json_object_get(ti, "tcbLevels"), *l;
	size_t i;
	if (!json_is_array(levels) || json_array_size(levels) == 0 ||
	    json_array_size(levels) > MAX_TCB_LEVELS) {
		return why_set(reason, rlen, SS_EPARSE,
			       "TCB Info tcbLevels is not a non-empty array of at most %d",
			       MAX_TCB_LEVELS);
	}
	const json_t *match = NULL;
	ev->platform = TS_NOT_SUPPORTED;
	size_t tdx_start = q->is_tdx && q->td.tee_tcb_svn[1] > 0 ? 2 : 0;
	json_array_foreach(levels, i, l) {
		const json_t *tcb = json_object_get(l, "tcb");
		uint8_t sgx[16] = { 0 }, tdx[16] = { 0 };
		json_int_t pcesvn = 0;
		bool ok = json_is_object(tcb);
		if (ok && version >= 3) {
			ok = svn_array(json_object_get(tcb, "sgxtcbcomponents"), sgx) == 0;
			if (ok && q->is_tdx)
				ok = svn_array(json_object_get(tcb, "tdxtcbcomponents"), tdx) == 0;
		} else if (ok) {
			for (int k = 0; k < 16 && ok; k++) {
				char key[24];
				json_int_t v = 0;
				snprintf(key, sizeof key, "sgxtcbcomp%02dsvn", k + 1);
				ok = json_uint(json_object_get(tcb, key), 255, &v);
				sgx[k] = (uint8_t)v;
			}
		}
		int st = ts_parse(json_string_value(json_object_get(l, "tcbStatus")), TS_REVOKED + 1);
		if (!ok || st < 0 || !json_uint(json_object_get(tcb, "pcesvn"), 65535, &pcesvn))
			return why_set(reason, rlen, SS_EPARSE,
				       "TCB Info tcbLevels[%zu] is malformed", i);
		if (match)
			continue;
		bool meets = ext->pcesvn >= pcesvn;
		for (int k = 0; k < 16 && meets; k++)
			meets = ext->tcb_comp[k] >= sgx[k];
		for (size_t k = tdx_start; q->is_tdx && k < 16 && meets; k++)
			meets = q->td.tee_tcb_svn[k] >= tdx[k];
		if (meets) {
			match = l;
			ev->platform = st;
		}
	}
	if (match) {
		const char *d = json_string_value(json_object_get(match, "tcbDate"));
		snprintf(ev->tcb_date, sizeof ev->tcb_date, "%s", d && strlen(d) < 32 ? d : "");
		add_advisories(ev->advisories, match);
	}
	ev->module = TS_UNKNOWN;
	if (q->is_tdx) {
		int rc = tdx_module_eval(ti, &q->td, ev, reason, rlen);
		if (rc < 0)
			return rc;
		if (ev->module != TS_UNKNOWN)
			ev->platform = ts_combine(ev->platform, ev->module);
	}
	return 0;
}

/* Matches the QE report against QE Identity and maps its isvsvn to a status. */
static int qe_identity_eval(const json_t *ei, const struct dcap_quote *q, struct tcb_eval *ev,
			    char *reason, size_t rlen)
{
	const char *id = json_string_value(json_object_get(ei, "id"));
	const char *want = q->is_tdx ? "TD_QE" : "QE";
	json_int_t version = 0, prodid = 0;
	uint8_t mrsigner[32], misc[4], miscmask[4], attr[16], amask[16];
	if (!id || strcmp(id, want) != 0 || !json_uint(json_object_get(ei, "version"), 100, &version) ||
	    version != 2) {
		return why_set(reason, rlen, SS_EAUTH,
			       "QE Identity id '%s' version %lld is not %s v2",
			       id ? id : "(none)", (long long)version, want);
	}
	if (json_hex(ei, "mrsigner", mrsigner, 32) < 0 || json_hex(ei, "miscselect", misc, 4) < 0 ||
	    json_hex(ei, "miscselectMask", miscmask, 4) < 0 || json_hex(ei, "attributes", attr, 16) < 0 ||
	    json_hex(ei, "attributesMask", amask, 16) < 0 ||
	    !json_uint(json_object_get(ei, "isvprodid"), 65535, &prodid)) {
		return why_set(reason, rlen, SS_EPARSE,
			       "QE Identity lacks a valid mrsigner, miscselect, attributes or isvprodid");
	}
	if (memcmp(mrsigner, q->qe.mrsigner, 32) != 0)
		return why_set(reason, rlen, SS_EAUTH,
			       "QE report MRSIGNER does not match the QE Identity");
	if (prodid != q->qe.isv_prod_id)
		return why_set(reason, rlen, SS_EAUTH,
			       "QE report isvprodid %u does not match the QE Identity (%lld)",
			       q->qe.isv_prod_id, (long long)prodid);
	/* miscselect is written as a big-endian hex number. */
	uint32_t m = (uint32_t)misc[0] << 24 | (uint32_t)misc[1] << 16 | (uint32_t)misc[2] << 8 | misc[3];
	uint32_t mm = (uint32_t)miscmask[0] << 24 | (uint32_t)miscmask[1] << 16 |
		      (uint32_t)miscmask[2] << 8 | miscmask[3];
	if ((q->qe.miscselect & mm) != (m & mm))
		return why_set(reason, rlen, SS_EAUTH,
			       "QE report masked miscselect does not match the QE Identity");
	for (int k = 0; k < 16; k++)
		if ((q->qe.attributes[k] & amask[k]) != (attr[k] & amask[k]))
			return why_set(reason, rlen, SS_EAUTH,
				       "QE report masked attributes do not match the QE Identity");
	const json_t *lvl = NULL;
	int st = TS_OUT_OF_DATE;
	if (isvsvn_level(json_object_get(ei, "tcbLevels"), q->qe.isv_svn, &lvl, &st) < 0)
		return why_set(reason, rlen, SS_EPARSE, "QE Identity tcbLevels are malformed");
	/* Below every level: Intel reports the QE as out of date. */
	ev->qe = lvl ? st : TS_OUT_OF_DATE;
	if (lvl)
		add_advisories(ev->advisories, lvl);
	return 0;
}

/* ---- policy ------------------------------------------------------------- */

static const char *const tdx_hex_keys[] = { "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
					    "mrconfigid", "mrseam" };
static const char *const sgx_hex_keys[] = { "mrenclave", "mrsigner" };

/* A hex allow-list: one string or a non-empty array of strings of n bytes. */
static bool hex_list_valid(const json_t *v, size_t n)
{
	uint8_t tmp[64];
	if (json_is_string(v))
		return hex_exact(json_string_value(v), tmp, n) == 0;
	if (!json_is_array(v) || json_array_size(v) == 0)
		return false;
	size_t i;
	const json_t *m;
	json_array_foreach(v, i, m) if (hex_exact(json_string_value(m), tmp, n) < 0) return false;
	return true;
}

static bool hex_list_has(const json_t *v, const uint8_t *val, size_t n)
{
	uint8_t tmp[64];
	if (json_is_string(v))
		return hex_exact(json_string_value(v), tmp, n) == 0 && !memcmp(tmp, val, n);
	size_t i;
	const json_t *m;
	json_array_foreach(v, i, m) if (hex_exact(json_string_value(m), tmp, n) == 0 &&
					!memcmp(tmp, val, n)) return true;
	return false;
}

static bool status_list_valid(const json_t *v)
{
	if (!json_is_array(v))
		return false;
	size_t i;
	const json_t *m;
	json_array_foreach(v, i, m) {
		int st = ts_parse(json_string_value(m), TS_COUNT);
		if (st < 0 || st == TS_REVOKED || st == TS_NOT_SUPPORTED)
			return false;
	}
	return true;
}

static bool status_listed(const json_t *v, int st)
{
	size_t i;
	const json_t *m;
	json_array_foreach(v, i, m) if (ts_parse(json_string_value(m), TS_COUNT) == st) return true;
	return false;
}

static int policy_validate(const json_t *pol, bool tdx, char *reason, size_t rlen)
{
	const char *tee = tdx ? "tdx" : "sgx";
	if (!pol)
		return 0;
	if (!json_is_object(pol))
		return why_set(reason, rlen, SS_ECONFIG, "%s policy must be a JSON object", tee);
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)pol, k, v) {
		bool known = true, ok = false;
		json_int_t x;
		if (!strcmp(k, "allowed_tcb_statuses") || !strcmp(k, "warn_tcb_statuses")) {
			ok = status_list_valid(v);
		} else if (!strcmp(k, "allow_debug")) {
			ok = json_is_boolean(v);
		} else if (!tdx && (!strcmp(k, "isv_prod_id") || !strcmp(k, "min_isv_svn"))) {
			ok = json_uint(v, 65535, &x);
		} else {
			known = false;
			const char *const *keys = tdx ? tdx_hex_keys : sgx_hex_keys;
			size_t nk = tdx ? ARRAY_LEN(tdx_hex_keys) : ARRAY_LEN(sgx_hex_keys);
			for (size_t i = 0; i < nk; i++)
				if (!strcmp(k, keys[i])) {
					known = true;
					ok = hex_list_valid(v, tdx ? 48 : 32);
				}
		}
		if (!known)
			return why_set(reason, rlen, SS_ECONFIG,
				       "unknown %s policy key '%s'", tee, k);
		if (!ok)
			return why_set(reason, rlen, SS_ECONFIG,
				       "%s policy key '%s' has an invalid value", tee, k);
	}
	return 0;
}

static void policy_eval(const json_t *pol, const struct dcap_quote *q, const struct tcb_eval *ev,
			struct buf *fails, struct buf *warns)
{
	const json_t *allowed = pol ? json_object_get(pol, "allowed_tcb_statuses") : NULL;
	const json_t *warn = pol ? json_object_get(pol, "warn_tcb_statuses") : NULL;
	const char *name = ts_names[ev->status];
	if (ev->status == TS_REVOKED) {
		buf_join(fails, "; ", "TCB status Revoked");
	} else if (ev->status == TS_NOT_SUPPORTED) {
		buf_join(fails, "; ", "TCB status NotSupported: no TCB level of the TCB Info matches the platform");
	} else if (allowed ? status_listed(allowed, ev->status) : ev->status == TS_UP_TO_DATE) {
		/* allowed */
	} else if (warn && status_listed(warn, ev->status)) {
		buf_join(warns, "; ", "TCB status %s", name);
	} else {
		buf_join(fails, "; ", "TCB status %s is not in allowed_tcb_statuses", name);
	}
	bool debug = q->is_tdx ? (q->td.td_attributes[0] & 1) : (q->enclave.attributes[0] & 2);
	const json_t *ad = pol ? json_object_get(pol, "allow_debug") : NULL;
	if (debug && !json_is_true(ad))
		buf_join(fails, "; ", "the %s is in debug mode but allow_debug is false",
			 q->is_tdx ? "TD" : "enclave");
	if (!pol)
		return;
	if (q->is_tdx) {
		const uint8_t *vals[] = { q->td.mrtd, q->td.rtmr[0], q->td.rtmr[1], q->td.rtmr[2],
					  q->td.rtmr[3], q->td.mrconfigid, q->td.mrseam };
		for (size_t i = 0; i < ARRAY_LEN(tdx_hex_keys); i++) {
			const json_t *v = json_object_get(pol, tdx_hex_keys[i]);
			if (v && !hex_list_has(v, vals[i], 48))
				buf_join(fails, "; ", "%s is not in the policy's allow-list", tdx_hex_keys[i]);
		}
		return;
	}
	const uint8_t *vals[] = { q->enclave.mrenclave, q->enclave.mrsigner };
	for (size_t i = 0; i < ARRAY_LEN(sgx_hex_keys); i++) {
		const json_t *v = json_object_get(pol, sgx_hex_keys[i]);
		if (v && !hex_list_has(v, vals[i], 32))
			buf_join(fails, "; ", "%s is not in the policy's allow-list", sgx_hex_keys[i]);
	}
	const json_t *v = json_object_get(pol, "isv_prod_id");
	if (v && json_integer_value(v) != q->enclave.isv_prod_id)
		buf_join(fails, "; ", "isv_prod_id %u is not the policy's %lld", q->enclave.isv_prod_id,
			 (long long)json_integer_value(v));
	v = json_object_get(pol, "min_isv_svn");
	if (v && q->enclave.isv_svn < json_integer_value(v))
		buf_join(fails, "; ", "isv_svn %u is below the policy's min_isv_svn %lld", q->enclave.isv_svn,
			 (long long)json_integer_value(v));
}

/* ---- claims ------------------------------------------------------------- */

static void set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];
	hex_lower(p, n, hex);
	json_object_set_new(o, key, json_string(hex));
}

static json_t *claims_build(const struct dcap_quote *q, const struct cached *pck,
			    const struct tcb_eval *ev)
{
	json_t *c = json_object();
	json_object_set_new(c, "tee", json_string(q->is_tdx ? "tdx" : "sgx"));
	json_object_set_new(c, "quote_version", json_integer(q->version));
	json_object_set_new(c, "tcb_status", json_string(ts_names[ev->status]));
	json_object_set_new(c, "advisory_ids", json_deep_copy(ev->advisories));
	if (ev->platform != TS_UNKNOWN)
		json_object_set_new(c, "platform_tcb_status", json_string(ts_names[ev->platform]));
	if (ev->qe != TS_UNKNOWN)
		json_object_set_new(c, "qe_tcb_status", json_string(ts_names[ev->qe]));
	if (ev->module != TS_UNKNOWN)
		json_object_set_new(c, "tdx_module_tcb_status", json_string(ts_names[ev->module]));
	if (ev->tcb_date[0])
		json_object_set_new(c, "tcb_date", json_string(ev->tcb_date));
	set_hex(c, "fmspc", pck->ext.fmspc, 6);
	set_hex(c, "pce_id", pck->ext.pceid, 2);
	json_object_set_new(c, "pce_svn", json_integer(pck->ext.pcesvn));
	set_hex(c, "cpu_svn", pck->ext.cpusvn, 16);
	json_object_set_new(c, "qe_svn", json_integer(q->qe.isv_svn));
	json_object_set_new(c, "pck_issuer", json_string(pck->ca_cn));
	if (q->is_tdx) {
		const struct dcap_td_report *t = &q->td;
		json_object_set_new(c, "debug", json_boolean(t->td_attributes[0] & 1));
		set_hex(c, "mrtd", t->mrtd, 48);
		for (int i = 0; i < 4; i++) {
			char key[8];
			snprintf(key, sizeof key, "rtmr%d", i);
			set_hex(c, key, t->rtmr[i], 48);
		}
		set_hex(c, "mrseam", t->mrseam, 48);
		set_hex(c, "mrsignerseam", t->mrsignerseam, 48);
		set_hex(c, "seam_attributes", t->seam_attributes, 8);
		set_hex(c, "td_attributes", t->td_attributes, 8);
		set_hex(c, "xfam", t->xfam, 8);
		set_hex(c, "mrconfigid", t->mrconfigid, 48);
		set_hex(c, "mrowner", t->mrowner, 48);
		set_hex(c, "mrownerconfig", t->mrownerconfig, 48);
		set_hex(c, "tee_tcb_svn", t->tee_tcb_svn, 16);
		if (t->is_td15) {
			set_hex(c, "tee_tcb_svn2", t->tee_tcb_svn2, 16);
			set_hex(c, "mr_servicetd", t->mr_servicetd, 48);
		}
		set_hex(c, "report_data", t->report_data, 64);
	} else {
		const struct dcap_sgx_report *r = &q->enclave;
		json_object_set_new(c, "debug", json_boolean(r->attributes[0] & 2));
		set_hex(c, "mrenclave", r->mrenclave, 32);
		set_hex(c, "mrsigner", r->mrsigner, 32);
		json_object_set_new(c, "isv_prod_id", json_integer(r->isv_prod_id));
		json_object_set_new(c, "isv_svn", json_integer(r->isv_svn));
		set_hex(c, "attributes", r->attributes, 16);
		json_object_set_new(c, "miscselect", json_integer(r->miscselect));
		set_hex(c, "cpusvn", r->cpusvn, 16);
		set_hex(c, "report_data", r->report_data, 64);
	}
	return c;
}

/* ---- verification ------------------------------------------------------- */

int dcap_verify(const struct attest_input *in, const struct dcap_collateral *coll, bool want_tdx,
		struct attest_output *out)
{
	int rc = 0;
	memset(out, 0, sizeof *out);
	char *reason = out->reason;
	size_t rlen = sizeof out->reason;
	struct dcap_quote q;
	struct cached pck;
	struct tcb_eval ev;
	struct buf fails, warns;
	X509 *anchor = NULL;
	EVP_PKEY *ak = NULL;
	json_t *ti = NULL, *ei = NULL;
	static const struct dcap_collateral none;
	memset(&pck, 0, sizeof pck);
	memset(&ev, 0, sizeof ev);
	buf_init(&fails);
	buf_init(&warns);
	ev.advisories = json_array();
	snprintf(out->tee, sizeof out->tee, "%s", want_tdx ? "tdx" : "sgx");
	out->hardware = true;
	if (!coll)
		coll = &none;
	rc = policy_validate(in->policy, want_tdx, reason, rlen);
	if (rc < 0)
		goto out;
	rc = dcap_quote_parse(in->evidence, in->evidence_len, &q, reason, rlen);
	if (rc < 0)
		goto out;
	if (q.is_tdx != want_tdx) {
		why_write(reason, rlen,
			  "evidence is an %s quote, not %s", q.is_tdx ? "TDX" : "SGX",
			  want_tdx ? "TDX" : "SGX");
		rc = SS_EPARSE;
		goto out;
	}
	ak = p256_key_from_raw(q.att_key);
	if (!ak) {
		why_write(reason, rlen, "attestation key is not a valid P-256 point");
		rc = SS_EPARSE;
		goto out;
	}
	if (!ecdsa_verify_raw(ak, in->evidence, q.signed_len, q.signature)) {
		why_write(reason, rlen,
			  "quote signature by the attestation key does not verify over the header and %s",
			  q.is_tdx ? "TD report body" : "enclave report body");
		rc = SS_ECRYPTO;
		goto out;
	}
	rc = anchor_load(&coll->root_ca, &anchor, reason, rlen);
	if (rc < 0)
		goto out;
	rc = pck_chain(&q, coll, anchor, in->now_unix, &pck, reason, rlen);
	if (rc < 0)
		goto out;
	if (!ecdsa_verify_raw(pck.pkey, q.qe_report, DCAP_SGX_REPORT_LEN, q.qe_report_sig)) {
		why_write(reason, rlen,
			  "QE report signature by the PCK certificate key does not verify");
		rc = SS_ECRYPTO;
		goto out;
	}
	uint8_t digest[32];
	struct buf hb;
	buf_init(&hb);
	buf_append(&hb, q.att_key, 64);
	buf_append(&hb, q.qe_auth, q.qe_auth_len);
	sha256(hb.data, hb.len, digest);
	buf_free(&hb);
	if (!ct_equal(digest, q.qe.report_data, 32) || !all_zero(q.qe.report_data + 32, 32)) {
		why_write(reason, rlen,
			  "QE report data is not SHA-256(attestation key || QE auth data) followed by zeros: the attestation key is not bound to the QE");
		rc = SS_EAUTH;
		goto out;
	}
	if (in->expected_report_data) {
		const uint8_t *rd = q.is_tdx ? q.td.report_data : q.enclave.report_data;
		if (in->expected_len == 0 || in->expected_len > 64) {
			why_write(reason, rlen,
				  "expected report data must be 1..64 bytes, not %zu",
				  in->expected_len);
			rc = SS_EINVAL;
			goto out;
		}
		if (!ct_equal(rd, in->expected_report_data, in->expected_len) ||
		    !all_zero(rd + in->expected_len, 64 - in->expected_len)) {
			why_write(reason, rlen,
				  "report_data does not match the expected binding (nonce)");
			rc = SS_EATTEST;
			goto out;
		}
	}
	ev.platform = ev.qe = ev.module = TS_UNKNOWN;
	if (coll->tcb_info.len) {
		rc = signed_json_verify(&coll->tcb_info, "tcbInfo", "TCB Info", coll, anchor,
					in->now_unix, &ti, reason, rlen);
		if (rc < 0)
			goto out;
		rc = tcb_info_eval(ti, &q, &pck.ext, &ev, reason, rlen);
		if (rc < 0)
			goto out;
	} else {
		char fm[16];
		hex_lower(pck.ext.fmspc, 6, fm);
		buf_join(&warns, "; ", "no TCB Info collateral for FMSPC %s: TCB status not evaluated", fm);
	}
	if (coll->qe_identity.len) {
		rc = signed_json_verify(&coll->qe_identity, "enclaveIdentity", "QE Identity", coll,
					anchor, in->now_unix, &ei, reason, rlen);
		if (rc < 0)
			goto out;
		rc = qe_identity_eval(ei, &q, &ev, reason, rlen);
		if (rc < 0)
			goto out;
	} else if (coll->tcb_info.len) {
		buf_join(&warns, "; ", "no QE Identity collateral: the QE TCB was not evaluated");
	}
	ev.status = ev.platform;
	if (ev.status != TS_UNKNOWN && ev.qe != TS_UNKNOWN)
		ev.status = ts_combine(ev.status, ev.qe);
	if (pck.revoked)
		ev.status = TS_REVOKED;
	if (!pck.root_crl)
		buf_join(&warns, "; ", "no Root CA CRL: the PCK CA's revocation was not checked");
	if (!pck.pck_crl)
		buf_join(&warns, "; ", "no PCK CRL: the PCK certificate's revocation was not checked");
	policy_eval(in->policy, &q, &ev, &fails, &warns);
	out->claims = claims_build(&q, &pck, &ev);
	if (fails.len) {
		out->status = ATTEST_CONTRAINDICATED;
		buf_append(&fails, "", 1);
		why_write(reason, rlen, "%s", (const char *)fails.data);
	} else if (warns.len) {
		out->status = ATTEST_WARNING;
		buf_append(&warns, "", 1);
		why_write(reason, rlen, "%s", (const char *)warns.data);
	} else {
		out->status = ATTEST_AFFIRMING;
		reason[0] = '\0';
	}
out:
	if (rc < 0) {
		out->status = ATTEST_NONE;
		json_decref(out->claims);
		out->claims = NULL;
	}
	json_decref(ti);
	json_decref(ei);
	json_decref(ev.advisories);
	buf_free(&fails);
	buf_free(&warns);
	EVP_PKEY_free(pck.pkey);
	EVP_PKEY_free(ak);
	X509_free(anchor);
	return rc;
}

/* ---- collateral files --------------------------------------------------- */

void dcap_collateral_free(struct dcap_collateral *c)
{
	if (!c)
		return;
	free(c->root_ca.data);
	free(c->root_ca_crl.data);
	free(c->pck_crl.data);
	free(c->tcb_info.data);
	free(c->qe_identity.data);
	free(c->tcb_signing_chain.data);
	memset(c, 0, sizeof *c);
}

/* Reads dir/intel/name into b; a missing file leaves b empty. */
static int load_item(const char *dir, const char *name, struct dcap_blob *b, char *reason,
		     size_t rlen)
{
	char *path = xasprintf("%s/intel/%s", dir, name), *data = NULL;
	size_t len = 0;
	int rc = file_read(path, DCAP_COLLATERAL_MAX, &data, &len);
	if (rc == SS_ENOTFOUND) {
		rc = 0;
	} else if (rc < 0) {
		why_write(reason, rlen, "cannot read collateral %s: %s", path, ss_strerror(rc));
	} else {
		b->data = (uint8_t *)data;
		b->len = len;
	}
	free(path);
	return rc;
}

int dcap_collateral_load(const char *dir, const uint8_t *quote, size_t len,
			 struct dcap_collateral *c, char *reason, size_t rlen)
{
	int rc = 0;
	struct dcap_quote q;
	struct dcap_pck_ext ext;
	STACK_OF(X509) *certs = NULL;
	char fm[16], cn[64], name[64];
	memset(c, 0, sizeof *c);
	if (!dir)
		return 0;
	rc = dcap_quote_parse(quote, len, &q, reason, rlen);
	if (rc < 0)
		goto out;
	/* Untrusted here: these values only pick files; verification checks everything. */
	rc = pem_chain_parse(q.pck_pem, q.pck_pem_len, "PCK certificate chain", &certs, reason, rlen);
	if (rc < 0)
		goto out;
	if (sk_X509_num(certs) < 2) {
		why_write(reason, rlen, "PCK certificate chain has no intermediate CA");
		rc = SS_EPARSE;
		goto out;
	}
	rc = pck_ext_from_x509(sk_X509_value(certs, 0), &ext, reason, rlen);
	if (rc < 0)
		goto out;
	cert_subject_cn(sk_X509_value(certs, 1), cn, sizeof cn);
	hex_lower(ext.fmspc, 6, fm);
	if ((rc = load_item(dir, "root_ca.pem", &c->root_ca, reason, rlen)) < 0 ||
	    (rc = load_item(dir, "root_ca_crl.der", &c->root_ca_crl, reason, rlen)) < 0 ||
	    (rc = load_item(dir, strstr(cn, "Processor") ? "pck_crl_processor.der" : "pck_crl_platform.der",
			    &c->pck_crl, reason, rlen)) < 0 ||
	    (rc = load_item(dir, "tcb_signing_chain.pem", &c->tcb_signing_chain, reason, rlen)) < 0 ||
	    (rc = load_item(dir, q.is_tdx ? "qe_identity_td.json" : "qe_identity.json", &c->qe_identity,
			    reason, rlen)) < 0)
		goto out;
	snprintf(name, sizeof name, "%s/%s.json", q.is_tdx ? "tcb_info_tdx" : "tcb_info", fm);
	rc = load_item(dir, name, &c->tcb_info, reason, rlen);
out:
	if (rc < 0)
		dcap_collateral_free(c);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

int dcap_verify_dir(const struct attest_input *in, bool want_tdx, struct attest_output *out)
{
	struct dcap_collateral c;
	char why[256] = "";
	int rc = dcap_collateral_load(in->collateral_dir, in->evidence, in->evidence_len, &c, why,
				      sizeof why);
	if (rc < 0) {
		memset(out, 0, sizeof *out);
		snprintf(out->tee, sizeof out->tee, "%s", want_tdx ? "tdx" : "sgx");
		out->hardware = true;
		/* A malformed quote gets dcap_verify's own precise reason. */
		if (rc == SS_EPARSE)
			return dcap_verify(in, NULL, want_tdx, out);
		why_write(out->reason, sizeof out->reason, "%s", why);
		return rc;
	}
	rc = dcap_verify(in, &c, want_tdx, out);
	dcap_collateral_free(&c);
	return rc;
}

static int write_item(const char *dir, const char *name, const void *data, size_t len,
		      char *reason, size_t rlen)
{
	char *path = xasprintf("%s/intel/%s", dir, name);
	char *sub = xstrdup(path);
	*strrchr(sub, '/') = '\0';
	int rc = dir_ensure(sub, 0755);
	if (rc == 0)
		rc = file_write_atomic(path, data, len, 0644);
	if (rc < 0)
		why_write(reason, rlen, "cannot write %s: %s", path, ss_strerror(rc));
	free(sub);
	free(path);
	return rc;
}

/* Decodes a hex (or PEM) CRL string into DER; caller frees *der. */
static int crl_decode(const char *s, uint8_t **der, size_t *len)
{
	*der = NULL;
	*len = 0;
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 2 * DCAP_COLLATERAL_MAX)
		return SS_EPARSE;
	if (!strncmp(s, "-----BEGIN X509 CRL-----", 24)) {
		BIO *bio = BIO_new_mem_buf(s, (int)n);
		X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
		unsigned char *d = NULL;
		int dl = crl ? i2d_X509_CRL(crl, &d) : -1;
		BIO_free(bio);
		X509_CRL_free(crl);
		ERR_clear_error();
		if (dl <= 0)
			return SS_EPARSE;
		*der = xmalloc((size_t)dl);
		memcpy(*der, d, (size_t)dl);
		*len = (size_t)dl;
		OPENSSL_free(d);
		return 0;
	}
	if (n % 2)
		return SS_EPARSE;
	*der = xmalloc(n / 2);
	if (hex_decode(s, *der, n / 2) != 0) {
		free(*der);
		*der = NULL;
		return SS_EPARSE;
	}
	*len = n / 2;
	return 0;
}

/* Writes {"<member>":<body>,"signature":"<sig>"} byte for byte. */
static int write_signed(const char *dir, const char *name, const char *member, const char *body,
			const char *sig, char *reason, size_t rlen)
{
	char *doc = xasprintf("{\"%s\":%s,\"signature\":\"%s\"}", member, body, sig);
	int rc = write_item(dir, name, doc, strlen(doc), reason, rlen);
	free(doc);
	return rc;
}

int dcap_collateral_import_root(const char *dir, const uint8_t *pem, size_t len, char *reason,
				size_t rlen)
{
	X509 *x = NULL;
	struct dcap_blob b = { (uint8_t *)pem, len };
	int rc = anchor_load(&b, &x, reason, rlen);
	if (rc == 0 && !x) {
		why_write(reason, rlen, "no root certificate given");
		rc = SS_EPARSE;
	}
	if (rc == 0) {
		BIO *bio = BIO_new(BIO_s_mem());
		char *p = NULL;
		if (!bio || PEM_write_bio_X509(bio, x) != 1)
			fatal("PEM_write_bio_X509 failed");
		long n = BIO_get_mem_data(bio, &p);
		rc = write_item(dir, "root_ca.pem", p, (size_t)n, reason, rlen);
		BIO_free(bio);
	}
	X509_free(x);
	return rc;
}

int dcap_collateral_import(const char *dir, const char *text, size_t len, char *reason,
			   size_t rlen)
{
	int rc = 0;
	json_error_t jerr;
	json_t *doc = NULL, *ti = NULL, *ei = NULL;
	uint8_t *der = NULL, sig[64];
	size_t der_len = 0;
	X509_CRL *crl = NULL;
	STACK_OF(X509) *chain = NULL;
	if (len <= 4 * DCAP_COLLATERAL_MAX)
		doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		why_write(reason, rlen, "collateral is not a JSON object");
		rc = SS_EPARSE;
		goto out;
	}
	static const char *const keys[] = { "tcb_info_issuer_chain", "tcb_info", "tcb_info_signature",
					    "qe_identity", "qe_identity_signature", "root_ca_crl",
					    "pck_crl" };
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (!json_is_string(json_object_get(doc, keys[i]))) {
			why_write(reason, rlen, "collateral lacks the string \"%s\"", keys[i]);
			rc = SS_EPARSE;
			goto out;
		}
#define S(k) json_string_value(json_object_get(doc, k))
	const char *tcb = S("tcb_info"), *qe = S("qe_identity");
	if (hex_exact(S("tcb_info_signature"), sig, 64) < 0 ||
	    hex_exact(S("qe_identity_signature"), sig, 64) < 0) {
		why_write(reason, rlen, "collateral signatures must be 128 hex digits");
		rc = SS_EPARSE;
		goto out;
	}
	ti = json_loads(tcb, JSON_REJECT_DUPLICATES, &jerr);
	ei = json_loads(qe, JSON_REJECT_DUPLICATES, &jerr);
	const char *tid = json_string_value(json_object_get(ti, "id"));
	const char *eid = json_string_value(json_object_get(ei, "id"));
	uint8_t fmspc[6];
	char fm[16], name[64];
	if (!json_is_object(ti) || !json_is_object(ei) || !eid ||
	    json_hex(ti, "fmspc", fmspc, 6) < 0 || (strcmp(eid, "QE") != 0 && strcmp(eid, "TD_QE") != 0)) {
		why_write(reason, rlen, "collateral tcb_info or qe_identity is malformed");
		rc = SS_EPARSE;
		goto out;
	}
	hex_lower(fmspc, 6, fm);
	bool tdx = tid && !strcmp(tid, "TDX");
	snprintf(name, sizeof name, "%s/%s.json", tdx ? "tcb_info_tdx" : "tcb_info", fm);
	rc = write_signed(dir, name, "tcbInfo", tcb, S("tcb_info_signature"), reason, rlen);
	if (rc < 0)
		goto out;
	rc = write_signed(dir, strcmp(eid, "TD_QE") ? "qe_identity.json" : "qe_identity_td.json",
			  "enclaveIdentity", qe, S("qe_identity_signature"), reason, rlen);
	if (rc < 0)
		goto out;
	const char *tchain = S("tcb_info_issuer_chain");
	rc = write_item(dir, "tcb_signing_chain.pem", tchain, strlen(tchain), reason, rlen);
	if (rc < 0)
		goto out;
	if (crl_decode(S("root_ca_crl"), &der, &der_len) < 0) {
		why_write(reason, rlen, "collateral root_ca_crl is not a hex or PEM CRL");
		rc = SS_EPARSE;
		goto out;
	}
	rc = write_item(dir, "root_ca_crl.der", der, der_len, reason, rlen);
	if (rc < 0)
		goto out;
	free(der);
	der = NULL;
	const unsigned char *q = NULL;
	if (crl_decode(S("pck_crl"), &der, &der_len) == 0)
		q = der;
	if (!q || !(crl = d2i_X509_CRL(NULL, &q, (long)der_len))) {
		why_write(reason, rlen, "collateral pck_crl is not a hex or PEM CRL");
		rc = SS_EPARSE;
		goto out;
	}
	char cn[64];
	cert_name_cn(X509_CRL_get_issuer(crl), cn, sizeof cn);
	bool processor = strstr(cn, "Processor") != NULL;
	if (!processor && !strstr(cn, "Platform")) {
		why_write(reason, rlen,
			  "collateral pck_crl is issued by '%s', not a PCK Platform or Processor CA",
			  cn);
		rc = SS_EPARSE;
		goto out;
	}
	rc = write_item(dir, processor ? "pck_crl_processor.der" : "pck_crl_platform.der", der,
			der_len, reason, rlen);
	if (rc < 0)
		goto out;
	/* The pinned root from the issuer chain becomes root_ca.pem when none is there yet. */
	const char *pchain = S("pck_crl_issuer_chain");
	char *root_path = xasprintf("%s/intel/root_ca.pem", dir);
	bool have_root = access(root_path, F_OK) == 0;
	free(root_path);
	if (pchain) {
		rc = write_item(dir, processor ? "pck_crl_issuer_chain_processor.pem"
					       : "pck_crl_issuer_chain_platform.pem",
				pchain, strlen(pchain), reason, rlen);
		if (rc < 0)
			goto out;
		if (!have_root &&
		    pem_chain_parse(pchain, strlen(pchain), "issuer chain", &chain, reason, rlen) == 0) {
			X509 *root = sk_X509_value(chain, sk_X509_num(chain) - 1);
			if (cert_is_pinned_root(root)) {
				unsigned char *d = NULL;
				int dl = cert_der(root, &d);
				rc = dcap_collateral_import_root(dir, d, (size_t)dl, reason, rlen);
				OPENSSL_free(d);
				if (rc < 0)
					goto out;
			}
		}
	}
#undef S
	rc = 0;
out:
	ERR_clear_error();
	sk_X509_pop_free(chain, X509_free);
	X509_CRL_free(crl);
	free(der);
	json_decref(ti);
	json_decref(ei);
	json_decref(doc);
	return rc;
}
