/*
 * dcap.h - Intel DCAP ECDSA quotes: SGX quote v3 and TDX quote v4/v5.
 *
 * dcap.c parses quotes, verifies the quote and QE report signatures, the QE
 * report-data binding, the PCK certificate chain to the pinned Intel SGX
 * Root CA, the CRLs, the signed TCB Info and QE Identity collateral, and
 * evaluates the TCB status the way Intel's QVL does. tdx.c and sgx.c are the
 * thin "tdx" and "sgx" verifiers on top (docs/attestation-dcap.md).
 *
 * Everything read from a quote or from collateral is untrusted and bounded.
 * All functions are thread-safe; the verification caches are guarded by a
 * mutex.
 */
#ifndef SS_ATTEST_DCAP_H
#define SS_ATTEST_DCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"

#define DCAP_HEADER_LEN 48
#define DCAP_SGX_REPORT_LEN 384
#define DCAP_TD10_BODY_LEN 584
#define DCAP_TD15_BODY_LEN 648
#define DCAP_TEE_SGX 0x00000000u
#define DCAP_TEE_TDX 0x00000081u
/* Upper bound on a quote accepted for parsing (real ones are ~5 KiB). */
#define DCAP_QUOTE_MAX (64 * 1024)
/* Upper bound on one collateral item (TCB Info is the largest, ~20 KiB). */
#define DCAP_COLLATERAL_MAX (256 * 1024)
#define DCAP_MAX_ADVISORIES 32

/* SHA-256 of the DER of the Intel SGX Root CA, the only accepted trust anchor. */
#define DCAP_ROOT_CA_SHA256 "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

/* An SGX REPORT body (the ISV enclave report in SGX quotes, or the QE report). */
struct dcap_sgx_report {
	uint8_t cpusvn[16];
	uint32_t miscselect;
	uint8_t attributes[16];
	uint8_t mrenclave[32];
	uint8_t mrsigner[32];
	uint16_t isv_prod_id;
	uint16_t isv_svn;
	uint8_t report_data[64];
};

/* A TD report body (TDX 1.0, plus the two TDX 1.5 fields when is_td15). */
struct dcap_td_report {
	uint8_t tee_tcb_svn[16];
	uint8_t mrseam[48];
	uint8_t mrsignerseam[48];
	uint8_t seam_attributes[8];
	uint8_t td_attributes[8];
	uint8_t xfam[8];
	uint8_t mrtd[48];
	uint8_t mrconfigid[48];
	uint8_t mrowner[48];
	uint8_t mrownerconfig[48];
	uint8_t rtmr[4][48];
	uint8_t report_data[64];
	bool is_td15;
	uint8_t tee_tcb_svn2[16];
	uint8_t mr_servicetd[48];
};

/*
 * A parsed quote. The pointers point into the caller's quote buffer, which
 * must outlive this struct. signed_len is the length of the region
 * [0, signed_len) the attestation key signs; trailing is the number of bytes
 * after the signature data (tolerated, never read).
 */
struct dcap_quote {
	uint16_t version;
	uint16_t att_key_type;
	uint32_t tee_type;
	uint16_t hdr_qe_svn, hdr_pce_svn; /* SGX header only */
	uint8_t qe_vendor_id[16];
	uint8_t user_data[20];
	uint16_t body_type;               /* v5: 1 SGX, 2 TD 1.0, 3 TD 1.5; else implied */
	bool is_tdx;
	struct dcap_sgx_report enclave;   /* SGX quotes */
	struct dcap_td_report td;         /* TDX quotes */
	size_t signed_len;
	const uint8_t *signature;         /* 64 bytes r||s big-endian */
	const uint8_t *att_key;           /* 64 bytes x||y */
	const uint8_t *qe_report;         /* 384 bytes */
	struct dcap_sgx_report qe;
	const uint8_t *qe_report_sig;     /* 64 bytes */
	const uint8_t *qe_auth;
	size_t qe_auth_len;
	const char *pck_pem;              /* certification data type 5, without trailing NULs */
	size_t pck_pem_len;
	size_t trailing;
};

/* The SGX extension (OID 1.2.840.113741.1.13.1) of a PCK certificate. */
struct dcap_pck_ext {
	uint8_t ppid[16];
	bool has_ppid;
	uint8_t tcb_comp[16];
	uint16_t pcesvn;
	uint8_t cpusvn[16];
	uint8_t pceid[2];
	uint8_t fmspc[6];
	int sgx_type;                     /* 0 standard, 1 scalable, 2 scalable with integrity; -1 absent */
};

/*
 * In-memory collateral. Every item is optional except that a missing
 * root_ca falls back to the pinned fingerprint (the embedded root of the
 * quote must then hash to DCAP_ROOT_CA_SHA256). data buffers are owned by
 * the struct and released by dcap_collateral_free (xmalloc'd, or NULL).
 *   root_ca            PEM (or DER) Intel SGX Root CA; must match the pin
 *   root_ca_crl        DER CRL issued by the root
 *   pck_crl            DER CRL issued by the PCK intermediate of the quote
 *   tcb_info           PCS JSON {"tcbInfo":{...},"signature":"<hex r||s>"}
 *   qe_identity        PCS JSON {"enclaveIdentity":{...},"signature":"..."}
 *   tcb_signing_chain  PEM: Intel SGX TCB Signing certificate (+ root)
 */
struct dcap_blob {
	uint8_t *data;
	size_t len;
};

struct dcap_collateral {
	struct dcap_blob root_ca;
	struct dcap_blob root_ca_crl;
	struct dcap_blob pck_crl;
	struct dcap_blob tcb_info;
	struct dcap_blob qe_identity;
	struct dcap_blob tcb_signing_chain;
};

void dcap_collateral_free(struct dcap_collateral *c);

/*
 * Parses a quote (either kind) into q. Returns 0 or SS_EPARSE with reason.
 * Never reads outside [quote, quote + len).
 */
int dcap_quote_parse(const uint8_t *quote, size_t len, struct dcap_quote *q, char *reason,
		     size_t reason_len);

/* Parses the SGX extension of a DER PCK certificate. SS_EPARSE with reason. */
int dcap_pck_ext_parse(const uint8_t *der, size_t len, struct dcap_pck_ext *ext, char *reason,
		       size_t reason_len);

/*
 * Loads the collateral for this quote from collateral_dir/intel/ (layout in
 * docs/attestation-dcap.md). The quote is parsed (untrusted) only to pick
 * the FMSPC, TDX or SGX, and the PCK CRL kind. Missing files leave their
 * blob empty. Returns 0, or SS_EPARSE/SS_EIO with reason.
 */
int dcap_collateral_load(const char *collateral_dir, const uint8_t *quote, size_t len,
			 struct dcap_collateral *c, char *reason, size_t reason_len);

/*
 * Copies a DCAP "QuoteCollateralV3" JSON document (keys tcb_info_issuer_chain,
 * tcb_info, tcb_info_signature, qe_identity_issuer_chain, qe_identity,
 * qe_identity_signature, pck_crl_issuer_chain, root_ca_crl, pck_crl) into
 * collateral_dir/intel/ in the PCS file formats. The signed JSON bodies are
 * written byte for byte. Nothing is trusted here: verification checks
 * everything later. Returns 0 or SS_EPARSE/SS_EIO with reason.
 */
int dcap_collateral_import(const char *collateral_dir, const char *json_text, size_t len,
			   char *reason, size_t reason_len);

/*
 * Writes root_pem (it must be the pinned Intel SGX Root CA) to
 * collateral_dir/intel/root_ca.pem. SS_EAUTH when it is not the pinned root.
 */
int dcap_collateral_import_root(const char *collateral_dir, const uint8_t *root_pem, size_t len,
				char *reason, size_t reason_len);

/*
 * Verifies a quote with explicit collateral. want_tdx selects the expected
 * kind ("tdx" or "sgx"). Implements the attest_verifier contract: a negative
 * SS_E* code with out->reason on a verification failure, else 0 with
 * out->status set by the policy (in->policy may be NULL for the defaults).
 * in->collateral_dir is ignored.
 */
int dcap_verify(const struct attest_input *in, const struct dcap_collateral *coll, bool want_tdx,
		struct attest_output *out);

/* The verifier entry points: collateral from in->collateral_dir/intel/. */
int dcap_verify_dir(const struct attest_input *in, bool want_tdx, struct attest_output *out);

/* Drops every cached chain and collateral-signature result (tests, benchmarks). */
void dcap_cache_reset(void);

extern const struct attest_verifier attest_tdx_verifier;
extern const struct attest_verifier attest_sgx_verifier;

#endif
