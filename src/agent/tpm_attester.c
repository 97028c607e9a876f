/*
 * tpm_attester.c - the agent's TPM 2.0 attester on tss2 ESAPI.
 *
 * libtss2-esys, libtss2-mu and libtss2-tctildr are loaded with dlopen() the
 * first time an attester is opened, so the binary (and every test that links
 * libinternal.a) runs on machines without tss2; there tpm_attester_open()
 * fails with SS_ENOSYS. The prototypes come from the tss2 headers, so every
 * call is type-checked.
 *
 * Keys: the RSA EK from TCG template L-1 (loaded from the persistent handle
 * 0x81010001 when provisioned, else created), and an AK that is a primary
 * restricted RSASSA/SHA-256 signing key in the endorsement hierarchy (fixed
 * template, so the same AK comes back after a restart). A handle is not
 * thread-safe: one thread at a time.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include "attest/tpm.h"
#include "core/core.h"

#define TSS_FNS(X)                                                          \
	X(esys, Esys_Initialize)                                            \
	X(esys, Esys_Finalize)                                              \
	X(esys, Esys_Free)                                                  \
	X(esys, Esys_TR_FromTPMPublic)                                      \
	X(esys, Esys_TR_Close)                                              \
	X(esys, Esys_ReadPublic)                                            \
	X(esys, Esys_CreatePrimary)                                         \
	X(esys, Esys_FlushContext)                                          \
	X(esys, Esys_StartAuthSession)                                      \
	X(esys, Esys_PolicySecret)                                          \
	X(esys, Esys_ActivateCredential)                                    \
	X(esys, Esys_Quote)                                                 \
	X(esys, Esys_PCR_Read)                                              \
	X(esys, Esys_PCR_Extend)                                            \
	X(esys, Esys_PCR_Reset)                                             \
	X(esys, Esys_NV_ReadPublic)                                         \
	X(esys, Esys_NV_Read)                                               \
	X(ldr, Tss2_TctiLdr_Initialize)                                     \
	X(ldr, Tss2_TctiLdr_Finalize)                                       \
	X(mu, Tss2_MU_TPMT_SIGNATURE_Marshal)                               \
	X(mu, Tss2_MU_TPM2B_PUBLIC_Marshal)

static struct {
	void *esys, *ldr, *mu;
#define TSS_FIELD(lib, fn) __typeof__(fn) *(fn);
	TSS_FNS(TSS_FIELD)
#undef TSS_FIELD
	char err[160];
	int rc;
} tss;
static pthread_once_t tss_once = PTHREAD_ONCE_INIT;

static void tss_load(void)
{
	tss.esys = dlopen("libtss2-esys.so.0", RTLD_NOW | RTLD_LOCAL);
	tss.ldr = dlopen("libtss2-tctildr.so.0", RTLD_NOW | RTLD_LOCAL);
	tss.mu = dlopen("libtss2-mu.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!tss.esys || !tss.ldr || !tss.mu) {
		snprintf(tss.err, sizeof tss.err,
			 "tss2 libraries not found (install libtss2-esys-3.0.2-0 libtss2-tctildr0)");
		tss.rc = SS_ENOSYS;
		return;
	}
#define TSS_LOAD(lib, fn)                                                       \
	if (!(tss.fn = (__typeof__(fn) *)dlsym(tss.lib, #fn))) {                \
		snprintf(tss.err, sizeof tss.err, "tss2 symbol %s missing", #fn); \
		tss.rc = SS_ENOSYS;                                             \
		return;                                                         \
	}
	TSS_FNS(TSS_LOAD)
#undef TSS_LOAD
	tss.rc = 0;
}

struct tpm_attester {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *ctx;
	ESYS_TR ek, ak;
	bool ek_transient;
	uint8_t ek_pub[sizeof(TPM2B_PUBLIC)], ak_pub[sizeof(TPM2B_PUBLIC)];
	size_t ek_pub_len, ak_pub_len;
	uint8_t *ek_cert;
	size_t ek_cert_len;
};

/* TCG EK Credential Profile 2.0, template L-1 (RSA 2048, AES-128-CFB). */
static void ek_template(TPM2B_PUBLIC *t)
{
	static const uint8_t policy[32] = {
		0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
		0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
		0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};
	memset(t, 0, sizeof *t);
	TPMT_PUBLIC *p = &t->publicArea;
	p->type = TPM2_ALG_RSA;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
			      TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
			      TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	p->authPolicy.size = sizeof policy;
	memcpy(p->authPolicy.buffer, policy, sizeof policy);
	p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
	p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
	p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
	p->parameters.rsaDetail.keyBits = 2048;
	p->parameters.rsaDetail.exponent = 0;
	p->unique.rsa.size = 256;
}

/* A restricted RSASSA/SHA-256 signing key (the AK). */
static void ak_template(TPM2B_PUBLIC *t)
{
	memset(t, 0, sizeof *t);
	TPMT_PUBLIC *p = &t->publicArea;
	p->type = TPM2_ALG_RSA;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
			      TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
			      TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
	p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
	p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
	p->parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
	p->parameters.rsaDetail.keyBits = 2048;
	p->parameters.rsaDetail.exponent = 0;
}

static int marshal_pub(const TPM2B_PUBLIC *pub, uint8_t *out, size_t cap, size_t *len)
{
	size_t off = 0;
	if (tss.Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out, cap, &off) != TSS2_RC_SUCCESS)
		return SS_EIO;
	*len = off;
	return 0;
}

static int create_primary(struct tpm_attester *h, ESYS_TR hierarchy, const TPM2B_PUBLIC *tmpl,
			  ESYS_TR *obj, uint8_t *pub, size_t cap, size_t *pub_len)
{
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_DATA outside = {.size = 0};
	TPML_PCR_SELECTION pcrs = {.count = 0};
	TPM2B_PUBLIC *out = NULL;
	memset(&sens, 0, sizeof sens);
	TSS2_RC r = tss.Esys_CreatePrimary(h->ctx, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					   ESYS_TR_NONE, &sens, tmpl, &outside, &pcrs, obj, &out,
					   NULL, NULL, NULL);
	if (r != TSS2_RC_SUCCESS) {
		log_error("tpm: CreatePrimary failed: 0x%x", r);
		return SS_EIO;
	}
	int rc = marshal_pub(out, pub, cap, pub_len);
	tss.Esys_Free(out);
	return rc;
}

/* Loads the persistent EK when it has the L-1 template's public area. */
static bool ek_load_persistent(struct tpm_attester *h)
{
	ESYS_TR obj = ESYS_TR_NONE;
	TPM2B_PUBLIC *pub = NULL, tmpl;
	bool ok = false;
	if (tss.Esys_TR_FromTPMPublic(h->ctx, TPM_EK_PERSISTENT_RSA, ESYS_TR_NONE, ESYS_TR_NONE,
				      ESYS_TR_NONE, &obj) != TSS2_RC_SUCCESS)
		return false;
	if (tss.Esys_ReadPublic(h->ctx, obj, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
				NULL) != TSS2_RC_SUCCESS)
		goto out;
	ek_template(&tmpl);
	if (pub->publicArea.type != TPM2_ALG_RSA ||
	    pub->publicArea.objectAttributes != tmpl.publicArea.objectAttributes ||
	    pub->publicArea.nameAlg != TPM2_ALG_SHA256)
		goto out;
	if (marshal_pub(pub, h->ek_pub, sizeof h->ek_pub, &h->ek_pub_len))
		goto out;
	h->ek = obj;
	h->ek_transient = false;
	ok = true;
out:
	tss.Esys_Free(pub);
	if (!ok)
		tss.Esys_TR_Close(h->ctx, &obj);
	return ok;
}

/* Reads the RSA EK certificate from NV; absence is not an error. */
static void ek_cert_read(struct tpm_attester *h)
{
	ESYS_TR nv = ESYS_TR_NONE;
	TPM2B_NV_PUBLIC *pub = NULL;
	struct buf b;
	buf_init(&b);
	if (tss.Esys_TR_FromTPMPublic(h->ctx, TPM_EK_CERT_NV_RSA, ESYS_TR_NONE, ESYS_TR_NONE,
				      ESYS_TR_NONE, &nv) != TSS2_RC_SUCCESS)
		return;
	if (tss.Esys_NV_ReadPublic(h->ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
				   NULL) != TSS2_RC_SUCCESS)
		goto out;
	uint16_t size = pub->nvPublic.dataSize;
	if (size == 0 || size > 8192)
		goto out;
	while (b.len < size) {
		TPM2B_MAX_NV_BUFFER *data = NULL;
		uint16_t chunk = (uint16_t)(size - b.len > 512 ? 512 : size - b.len);
		TSS2_RC r = tss.Esys_NV_Read(h->ctx, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					     ESYS_TR_NONE, chunk, (uint16_t)b.len, &data);
		if (r != TSS2_RC_SUCCESS)
			r = tss.Esys_NV_Read(h->ctx, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
					     ESYS_TR_NONE, ESYS_TR_NONE, chunk, (uint16_t)b.len,
					     &data);
		if (r != TSS2_RC_SUCCESS || !data || data->size == 0) {
			tss.Esys_Free(data);
			log_warn("tpm: reading the EK certificate from NV failed: 0x%x", r);
			goto out;
		}
		buf_append(&b, data->buffer, data->size);
		tss.Esys_Free(data);
	}
	/* The NV area may be padded: keep exactly the DER certificate. */
	if (b.len >= 4 && b.data[0] == 0x30 && b.data[1] == 0x82) {
		size_t der = 4 + ((size_t)b.data[2] << 8 | b.data[3]);
		if (der <= b.len)
			b.len = der;
	}
	h->ek_cert = b.data;
	h->ek_cert_len = b.len;
	b.data = NULL;
out:
	buf_free(&b);
	tss.Esys_Free(pub);
	tss.Esys_TR_Close(h->ctx, &nv);
}

int tpm_attester_open(const char *tcti, struct tpm_attester **out)
{
	struct tpm_attester *h = NULL;
	TPM2B_PUBLIC tmpl;
	int rc;
	*out = NULL;
	if (!tcti)
		tcti = TPM_DEFAULT_TCTI;
	pthread_once(&tss_once, tss_load);
	if (tss.rc) {
		log_error("tpm: %s", tss.err);
		return tss.rc;
	}
	h = xcalloc(1, sizeof *h);
	h->ek = h->ak = ESYS_TR_NONE;
	if (tss.Tss2_TctiLdr_Initialize(tcti, &h->tcti) != TSS2_RC_SUCCESS) {
		log_error("tpm: no TPM reachable through TCTI '%s'", tcti);
		rc = SS_ENOSYS;
		goto out;
	}
	if (tss.Esys_Initialize(&h->ctx, h->tcti, NULL) != TSS2_RC_SUCCESS) {
		log_error("tpm: ESAPI initialisation over '%s' failed", tcti);
		rc = SS_ENOSYS;
		goto out;
	}
	if (!ek_load_persistent(h)) {
		ek_template(&tmpl);
		rc = create_primary(h, ESYS_TR_RH_ENDORSEMENT, &tmpl, &h->ek, h->ek_pub,
				    sizeof h->ek_pub, &h->ek_pub_len);
		if (rc)
			goto out;
		h->ek_transient = true;
	}
	ak_template(&tmpl);
	rc = create_primary(h, ESYS_TR_RH_ENDORSEMENT, &tmpl, &h->ak, h->ak_pub, sizeof h->ak_pub,
			    &h->ak_pub_len);
	if (rc)
		goto out;
	ek_cert_read(h);
	*out = h;
	h = NULL;
	rc = 0;
out:
	tpm_attester_close(h);
	return rc;
}

void tpm_attester_close(struct tpm_attester *h)
{
	if (!h)
		return;
	if (h->ctx) {
		if (h->ak != ESYS_TR_NONE)
			tss.Esys_FlushContext(h->ctx, h->ak);
		if (h->ek != ESYS_TR_NONE) {
			if (h->ek_transient)
				tss.Esys_FlushContext(h->ctx, h->ek);
			else
				tss.Esys_TR_Close(h->ctx, &h->ek);
		}
		tss.Esys_Finalize(&h->ctx);
	}
	if (h->tcti)
		tss.Tss2_TctiLdr_Finalize(&h->tcti);
	free(h->ek_cert);
	free(h);
}

int tpm_attester_ek_public(struct tpm_attester *h, const uint8_t **p, size_t *len)
{
	*p = h->ek_pub;
	*len = h->ek_pub_len;
	return 0;
}

int tpm_attester_ak_public(struct tpm_attester *h, const uint8_t **p, size_t *len)
{
	*p = h->ak_pub;
	*len = h->ak_pub_len;
	return 0;
}

int tpm_attester_ek_cert(struct tpm_attester *h, const uint8_t **p, size_t *len)
{
	*p = h->ek_cert;
	*len = h->ek_cert_len;
	return h->ek_cert ? 0 : SS_ENOTFOUND;
}

int tpm_attester_identity(struct tpm_attester *h, uint8_t **out, size_t *len)
{
	tpm__evidence_build(NULL, 0, NULL, 0, NULL, 0, h->ak_pub, h->ak_pub_len, h->ek_pub,
			    h->ek_pub_len, h->ek_cert, h->ek_cert_len, out, len);
	return 0;
}

int tpm_attester_activate(struct tpm_attester *h, const uint8_t *id_object, size_t id_len,
			  const uint8_t *enc_secret, size_t enc_len, uint8_t *secret,
			  size_t secret_cap, size_t *secret_len)
{
	TPM2B_ID_OBJECT cred;
	TPM2B_ENCRYPTED_SECRET enc;
	TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
	TPM2B_DIGEST *out = NULL;
	ESYS_TR sess = ESYS_TR_NONE;
	TSS2_RC r;
	int rc = SS_EINVAL;
	if (id_len < 2 || id_len - 2 > sizeof cred.credential || enc_len < 2 ||
	    enc_len - 2 > sizeof enc.secret ||
	    ((size_t)id_object[0] << 8 | id_object[1]) != id_len - 2 ||
	    ((size_t)enc_secret[0] << 8 | enc_secret[1]) != enc_len - 2)
		return SS_EINVAL;
	cred.size = (uint16_t)(id_len - 2);
	memcpy(cred.credential, id_object + 2, cred.size);
	enc.size = (uint16_t)(enc_len - 2);
	memcpy(enc.secret, enc_secret + 2, enc.size);
	r = tss.Esys_StartAuthSession(h->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				      ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym,
				      TPM2_ALG_SHA256, &sess);
	if (r != TSS2_RC_SUCCESS) {
		log_error("tpm: StartAuthSession failed: 0x%x", r);
		rc = SS_EIO;
		goto out;
	}
	r = tss.Esys_PolicySecret(h->ctx, ESYS_TR_RH_ENDORSEMENT, sess, ESYS_TR_PASSWORD,
				  ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
	if (r != TSS2_RC_SUCCESS) {
		log_error("tpm: PolicySecret(endorsement) failed: 0x%x", r);
		rc = SS_EIO;
		goto out;
	}
	r = tss.Esys_ActivateCredential(h->ctx, h->ak, h->ek, ESYS_TR_PASSWORD, sess,
					ESYS_TR_NONE, &cred, &enc, &out);
	if (r != TSS2_RC_SUCCESS) {
		log_warn("tpm: ActivateCredential failed: 0x%x", r);
		rc = SS_EAUTH;
		goto out;
	}
	if (out->size > secret_cap) {
		rc = SS_ETOOBIG;
		goto out;
	}
	memcpy(secret, out->buffer, out->size);
	*secret_len = out->size;
	rc = 0;
out:
	if (sess != ESYS_TR_NONE)
		tss.Esys_FlushContext(h->ctx, sess);
	if (out)
		OPENSSL_cleanse(out->buffer, out->size);
	tss.Esys_Free(out);
	return rc;
}

static void sel_to_tpml(const struct tpm_pcr_selection *sel, TPML_PCR_SELECTION *t)
{
	memset(t, 0, sizeof *t);
	t->count = (UINT32)sel->n;
	for (size_t i = 0; i < sel->n; i++) {
		t->pcrSelections[i].hash = sel->bank[i].alg;
		t->pcrSelections[i].sizeofSelect = 3;
		for (int k = 0; k < 3; k++)
			t->pcrSelections[i].pcrSelect[k] = (uint8_t)(sel->bank[i].mask >> (8 * k));
	}
}

/* Reads every PCR in sel (PCR_Read returns at most 8 per call). */
static int pcrs_read(struct tpm_attester *h, const struct tpm_pcr_selection *sel,
		     struct tpm_pcr_value *v, size_t *n)
{
	struct tpm_pcr_selection left = *sel;
	*n = 0;
	for (int rounds = 0; rounds < 16; rounds++) {
		TPML_PCR_SELECTION req, *got = NULL;
		TPML_DIGEST *vals = NULL;
		size_t k = 0;
		bool any = false;
		for (size_t b = 0; b < left.n; b++)
			any |= left.bank[b].mask != 0;
		if (!any)
			return 0;
		sel_to_tpml(&left, &req);
		if (tss.Esys_PCR_Read(h->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &req, NULL,
				      &got, &vals) != TSS2_RC_SUCCESS)
			return SS_EIO;
		for (UINT32 s = 0; s < got->count; s++) {
			const TPMS_PCR_SELECTION *ps = &got->pcrSelections[s];
			for (unsigned idx = 0; idx < 8u * ps->sizeofSelect && idx < TPM_NUM_PCRS;
			     idx++) {
				if (!(ps->pcrSelect[idx / 8] & (1u << (idx % 8))))
					continue;
				if (k >= vals->count || *n >= TPM_MAX_PCR_VALUES ||
				    vals->digests[k].size != tpm_alg_digest_len(ps->hash)) {
					tss.Esys_Free(got);
					tss.Esys_Free(vals);
					return SS_EIO;
				}
				v[*n].alg = ps->hash;
				v[*n].index = (uint8_t)idx;
				v[*n].len = (uint8_t)vals->digests[k].size;
				memcpy(v[*n].digest, vals->digests[k].buffer, v[*n].len);
				(*n)++;
				k++;
				for (size_t b = 0; b < left.n; b++)
					if (left.bank[b].alg == ps->hash)
						left.bank[b].mask &= ~(1u << idx);
			}
		}
		tss.Esys_Free(got);
		tss.Esys_Free(vals);
		if (k == 0)
			return SS_EIO; /* the TPM returned nothing: bank not allocated */
	}
	return SS_EIO;
}

/* Sorts the PCR values into selection order (bank order, ascending index). */
static void pcrs_sort(const struct tpm_pcr_selection *sel, struct tpm_pcr_value *v, size_t n)
{
	struct tpm_pcr_value *tmp = xcalloc(n ? n : 1, sizeof *tmp);
	size_t k = 0;
	for (size_t b = 0; b < sel->n; b++)
		for (unsigned idx = 0; idx < TPM_NUM_PCRS; idx++)
			for (size_t i = 0; i < n; i++)
				if (v[i].alg == sel->bank[b].alg && v[i].index == idx)
					tmp[k++] = v[i];
	memcpy(v, tmp, k * sizeof *tmp);
	free(tmp);
}

int tpm_attester_quote(struct tpm_attester *h, const uint8_t binding32[ATTEST_REPORT_DATA_LEN],
		       const struct tpm_pcr_selection *sel, uint8_t **evidence, size_t *len)
{
	struct tpm_pcr_selection def;
	struct tpm_pcr_value *vals = xcalloc(TPM_MAX_PCR_VALUES, sizeof *vals);
	TPM2B_DATA qd = {.size = ATTEST_REPORT_DATA_LEN};
	TPMT_SIG_SCHEME scheme;
	TPML_PCR_SELECTION tsel;
	uint8_t sigbuf[sizeof(TPMT_SIGNATURE)];
	int rc = SS_EIO;
	*evidence = NULL;
	*len = 0;
	if (!sel) {
		if (tpm_pcr_selection_parse(TPM_DEFAULT_PCRS, &def))
			fatal("bad default PCR selection");
		sel = &def;
	}
	memset(&scheme, 0, sizeof scheme);
	scheme.scheme = TPM2_ALG_NULL;
	memcpy(qd.buffer, binding32, ATTEST_REPORT_DATA_LEN);
	sel_to_tpml(sel, &tsel);
	/* A PCR may change between the quote and the read: retry a few times. */
	for (int attempt = 0; attempt < 3; attempt++) {
		TPM2B_ATTEST *quoted = NULL;
		TPMT_SIGNATURE *sig = NULL;
		struct tpm_quote q;
		size_t n = 0, off = 0;
		uint8_t d[TPM_MAX_DIGEST];
		TSS2_RC r = tss.Esys_Quote(h->ctx, h->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					   ESYS_TR_NONE, &qd, &scheme, &tsel, &quoted, &sig);
		if (r != TSS2_RC_SUCCESS) {
			log_error("tpm: Quote failed: 0x%x", r);
			rc = SS_EIO;
			break;
		}
		rc = tpm_attest_parse(quoted->attestationData, quoted->size, &q, NULL, 0);
		if (!rc)
			rc = pcrs_read(h, sel, vals, &n);
		if (!rc && tss.Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sigbuf, sizeof sigbuf, &off))
			rc = SS_EIO;
		if (!rc) {
			pcrs_sort(sel, vals, n);
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			unsigned int dl = 0;
			if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
				fatal("EVP digest init failed");
			for (size_t i = 0; i < n; i++)
				EVP_DigestUpdate(md, vals[i].digest, vals[i].len);
			EVP_DigestFinal_ex(md, d, &dl);
			EVP_MD_CTX_free(md);
			if (q.pcr_digest_len == dl && !memcmp(d, q.pcr_digest, dl)) {
				tpm__evidence_build(quoted->attestationData, quoted->size, sigbuf,
						    off, vals, n, h->ak_pub, h->ak_pub_len,
						    h->ek_pub, h->ek_pub_len, h->ek_cert,
						    h->ek_cert_len, evidence, len);
			} else {
				rc = SS_ESTATE;
			}
		}
		tss.Esys_Free(quoted);
		tss.Esys_Free(sig);
		if (rc != SS_ESTATE)
			break;
	}
	free(vals);
	return rc;
}

int tpm_attester_extend(struct tpm_attester *h, unsigned pcr, const uint8_t digest[32])
{
	TPML_DIGEST_VALUES v;
	if (pcr >= TPM_NUM_PCRS)
		return SS_EINVAL;
	memset(&v, 0, sizeof v);
	v.count = 1;
	v.digests[0].hashAlg = TPM2_ALG_SHA256;
	memcpy(v.digests[0].digest.sha256, digest, 32);
	TSS2_RC r = tss.Esys_PCR_Extend(h->ctx, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					ESYS_TR_NONE, &v);
	if (r != TSS2_RC_SUCCESS) {
		log_error("tpm: PCR_Extend(%u) failed: 0x%x", pcr, r);
		return SS_EIO;
	}
	return 0;
}

static int hash_file(const char *path, uint8_t out[32])
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t chunk[65536];
	size_t k;
	unsigned int dl = 0;
	int rc = 0;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		fatal("EVP digest init failed");
	if (!f) {
		rc = SS_EIO;
		goto out;
	}
	while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
		EVP_DigestUpdate(md, chunk, k);
	if (ferror(f))
		rc = SS_EIO;
	EVP_DigestFinal_ex(md, out, &dl);
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(md);
	return rc;
}

int tpm_attester_measure_start(struct tpm_attester *h, const char *config, size_t config_len)
{
	uint8_t exe[32], cfg[32];
	int rc = hash_file("/proc/self/exe", exe);
	if (rc)
		return rc;
	sha256(config ? config : "", config ? config_len : 0, cfg);
	TSS2_RC r = tss.Esys_PCR_Reset(h->ctx, ESYS_TR_PCR0 + TPM_AGENT_PCR, ESYS_TR_PASSWORD,
				       ESYS_TR_NONE, ESYS_TR_NONE);
	if (r != TSS2_RC_SUCCESS) {
		log_error("tpm: PCR_Reset(%d) failed: 0x%x", TPM_AGENT_PCR, r);
		return SS_EIO;
	}
	rc = tpm_attester_extend(h, TPM_AGENT_PCR, exe);
	if (!rc)
		rc = tpm_attester_extend(h, TPM_AGENT_PCR, cfg);
	return rc;
}
