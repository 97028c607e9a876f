/*
 * snp.h - AMD SEV-SNP attestation: the "sev-snp" verifier and the guest-side
 * attester that asks /dev/sev-guest for a report.
 *
 * Evidence ("sev-snp") is exactly one 1184-byte ATTESTATION_REPORT
 * (version 2 or 3), signed with ECDSA P-384/SHA-384 by the chip's VCEK or a
 * cloud provider's VLEK. The signing certificate comes with the evidence
 * (attest_input.certs, DER) or from the collateral cache; the chain is
 * VCEK -> ASK -> ARK or VLEK -> ASVK -> ARK, every ARK pinned by its SHA-256
 * fingerprint. See docs/attestation-snp.md for the checks, policy keys and
 * the collateral layout (collateral_dir/amd/).
 */
#ifndef SS_ATTEST_SNP_H
#define SS_ATTEST_SNP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"

#define SNP_REPORT_LEN 1184
#define SNP_SIGNED_LEN 0x2a0
#define SNP_REPORT_DATA_LEN 64
#define SNP_MEASUREMENT_LEN 48
#define SNP_CHIP_ID_LEN 64
/* Largest DER certificate accepted from the input or the collateral cache. */
#define SNP_CERT_MAX (16 * 1024)
/* Most certificates accepted in attest_input.certs. */
#define SNP_MAX_CERTS 8

/* Guest policy bits (ABI spec, table "Guest Policy Structure"). */
#define SNP_POLICY_SMT (1ull << 16)
#define SNP_POLICY_RESERVED1 (1ull << 17)
#define SNP_POLICY_MIGRATE_MA (1ull << 18)
#define SNP_POLICY_DEBUG (1ull << 19)
#define SNP_POLICY_SINGLE_SOCKET (1ull << 20)

enum snp_signing_key { SNP_KEY_VCEK = 0, SNP_KEY_VLEK = 1 };

enum snp_product { SNP_PRODUCT_UNKNOWN = 0, SNP_PRODUCT_MILAN, SNP_PRODUCT_GENOA, SNP_PRODUCT_TURIN };

/* A parsed ATTESTATION_REPORT. Signature R and S are big-endian here. */
struct snp_report {
	uint32_t version;
	uint32_t guest_svn;
	uint64_t policy;
	uint8_t family_id[16];
	uint8_t image_id[16];
	uint32_t vmpl;
	uint32_t signature_algo;
	uint64_t current_tcb;
	uint64_t platform_info;
	uint32_t flags;
	enum snp_signing_key signing_key; /* flags bits 2..4 */
	uint8_t report_data[SNP_REPORT_DATA_LEN];
	uint8_t measurement[SNP_MEASUREMENT_LEN];
	uint8_t host_data[32];
	uint8_t id_key_digest[48];
	uint8_t author_key_digest[48];
	uint8_t report_id[32];
	uint8_t report_id_ma[32];
	uint64_t reported_tcb;
	bool has_cpuid; /* version >= 3 */
	uint8_t cpuid_fam_id, cpuid_mod_id, cpuid_step;
	uint8_t chip_id[SNP_CHIP_ID_LEN];
	uint64_t committed_tcb;
	uint8_t current_build, current_minor, current_major;
	uint8_t committed_build, committed_minor, committed_major;
	uint64_t launch_tcb;
	uint8_t sig_r[48];
	uint8_t sig_s[48];
};

/* A TCB_VERSION split into its security patch levels. */
struct snp_tcb {
	bool has_fmc; /* Turin only */
	uint8_t fmc, bootloader, tee, snp, microcode;
};

/*
 * What the AMD KDS extensions (OID arc 1.3.6.1.4.1.3704.1) of a VCEK/VLEK
 * say. Values are bounded: product name <= 31 chars, CSP id <= 127 chars.
 */
struct snp_cert_ext {
	char product_name[32];     /* .2, e.g. "Milan-B0" */
	enum snp_product product;  /* from the product name */
	struct snp_tcb tcb;        /* .3.1 bl, .3.2 tee, .3.3 snp, .3.8 ucode, .3.9 fmc */
	uint8_t hwid[SNP_CHIP_ID_LEN]; /* .4: 64 bytes (Milan/Genoa) or 8 (Turin) */
	size_t hwid_len;           /* 0 when absent (VLEK) */
	char csp_id[128];          /* .5 (VLEK only); "" when absent */
	bool is_vlek;              /* subject CN "SEV-VLEK" */
};

/*
 * Parses a report strictly: exactly SNP_REPORT_LEN bytes, version 2 or 3,
 * signature_algo 1, signing key VCEK or VLEK. Returns 0 or SS_EPARSE with
 * reason set.
 */
int snp_report_parse(const uint8_t *p, size_t n, struct snp_report *r, char *reason,
		     size_t reason_len);

/* Splits a TCB_VERSION according to the product's layout. */
void snp_tcb_decode(enum snp_product product, uint64_t tcb, struct snp_tcb *out);

/*
 * Checks the certificate's SPL extensions against REPORTED_TCB and its hwID
 * against CHIP_ID (VCEK: required; VLEK: must be absent, chip_id unchecked).
 * Returns 0 or SS_EAUTH with reason naming the first mismatching field.
 */
int snp_cert_matches_report(const struct snp_cert_ext *ext, const struct snp_report *r,
			    char *reason, size_t reason_len);

/*
 * Parses the AMD extensions of a DER VCEK/VLEK (untrusted; no chain check).
 * Returns 0, or SS_EPARSE with reason set.
 */
int snp_cert_ext_parse(const uint8_t *der, size_t len, struct snp_cert_ext *ext, char *reason,
		       size_t reason_len);

/*
 * Verifies a DER VCEK/VLEK up to the pinned ARK of its product at now_unix,
 * with the CA certificates cas (DER; ASK/ASVK/ARK in any order) and
 * collateral_dir/amd/<product>/{ark,ask,asvk}.pem, then parses its
 * extensions into ext. Does not use the cache. Returns 0, SS_EPARSE or
 * SS_EAUTH with reason set.
 */
int snp_cert_chain_verify(const uint8_t *leaf, size_t leaf_len, const uint8_t *const *cas,
			  const size_t *ca_lens, size_t n_cas, const char *collateral_dir,
			  int64_t now_unix, struct snp_cert_ext *ext, char *reason,
			  size_t reason_len);

/*
 * Verifies one report (not necessarily in->evidence: the TPM/Azure verifier
 * passes the report embedded in an HCL report) with the certificates,
 * collateral, time, expected report data and policy of in. Same contract as
 * attest_verifier.verify: 0 with out->status and claims, or a negative SS_E*
 * code with out->reason. out is reset first; free it with attest_output_free.
 * Thread-safe.
 */
int snp_verify_report(const uint8_t *report, size_t len, const struct attest_input *in,
		      struct attest_output *out);

/* Drops every cached chain result (tests, benchmarks). */
void snp_cache_reset(void);

extern const struct attest_verifier attest_snp_verifier;

/* ---- attester (inside an SEV-SNP guest) ------------------------------- */

#define SNP_GUEST_DEVICE "/dev/sev-guest"
#define SNP_RESP_LEN 4000
/* Offset of the report in the SNP_GET_REPORT response (MSG_REPORT_RSP). */
#define SNP_RESP_REPORT_OFFSET 32

/* Linux uapi <linux/sev-guest.h> layout, defined here to avoid the header. */
struct snp_report_req {
	uint8_t user_data[64];
	uint32_t vmpl;
	uint8_t rsvd[28];
};

struct snp_report_resp {
	uint8_t data[SNP_RESP_LEN];
};

struct snp_guest_request_ioctl {
	uint8_t msg_version;
	uint64_t req_data;
	uint64_t resp_data;
	union {
		uint64_t exitinfo2;
		struct {
			uint32_t fw_error;
			uint32_t vmm_error;
		};
	};
};

/*
 * Fills req for SNP_GET_REPORT: user_data = report_data (32 bytes) followed
 * by 32 zero bytes, the given VMPL, reserved bytes zero.
 */
void snp_attester_build_request(const uint8_t report_data[ATTEST_REPORT_DATA_LEN], uint32_t vmpl,
				struct snp_report_req *req);

/*
 * Extracts the report from a MSG_REPORT_RSP buffer (status u32, report_size
 * u32, 24 reserved bytes, report). Requires status 0 and report_size ==
 * SNP_REPORT_LEN within len. Returns 0, SS_EIO for a firmware error status
 * (*fw_status set), or SS_EPARSE; reason is set on error.
 */
int snp_attester_parse_response(const uint8_t *resp, size_t len, uint8_t report[SNP_REPORT_LEN],
				uint32_t *fw_status, char *reason, size_t reason_len);

extern const struct attester attest_snp_attester;

#endif
