/*
 * tpm.h - TPM 2.0 quote verification, software MakeCredential, and the
 * tss2-based attester that runs inside the agent.
 *
 * Evidence ("tpm") is a small strict container (see docs/attestation-tpm.md):
 *
 *   "SSTPM001" then records, each u8 type || u16 big-endian length || value,
 *   in ascending type order, with no trailing bytes:
 *     0x01 TPMS_ATTEST            (1..1024 bytes, at most once)
 *     0x02 TPMT_SIGNATURE         (1..1024 bytes, at most once)
 *     0x03 PCR value              (u16 hashAlg || u8 index || digest; up to 96)
 *     0x04 AK TPM2B_PUBLIC        (at most once)
 *     0x05 EK TPM2B_PUBLIC        (at most once)
 *     0x06 EK certificate, DER    (at most once, <= 8192 bytes)
 *
 * A container without records 0x01..0x03 is an "identity" (EK public, EK
 * certificate and AK public) used for credential activation.
 *
 * The AK is trusted through credential activation: tpm_ak_challenge_new()
 * checks the EK certificate against collateral_dir/tpm/ek-ca/ *.pem and makes
 * a credential for the AK's name under the EK public key;
 * tpm_ak_challenge_finish() compares the secret the agent's TPM recovered and
 * records the (AK name, EK public) pair in a process-wide, thread-safe trust
 * cache that the "tpm" verifier consults.
 */
#ifndef SS_ATTEST_TPM_H
#define SS_ATTEST_TPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"

#define TPM_EVIDENCE_MAGIC "SSTPM001"
#define TPM_EVIDENCE_MAX (64 * 1024)
#define TPM_NUM_PCRS 24
#define TPM_MAX_BANKS 4
#define TPM_MAX_PCR_VALUES (TPM_NUM_PCRS * TPM_MAX_BANKS)
#define TPM_MAX_DIGEST 64
#define TPM_MAX_NAME (2 + TPM_MAX_DIGEST)
#define TPM_CRED_SECRET_LEN 32
/* How long a completed credential activation keeps an AK trusted. */
#define TPM_AK_TRUST_TTL_S (7 * 24 * 3600)

/* TPM_ALG_ID values used here (TPM 2.0 Part 2, table 9). */
#define TPM_ALG_SHA1 0x0004
#define TPM_ALG_SHA256 0x000b
#define TPM_ALG_SHA384 0x000c
#define TPM_ALG_SHA512 0x000d

/* Evidence record types. */
enum tpm_rec {
	TPM_REC_ATTEST = 1,
	TPM_REC_SIGNATURE = 2,
	TPM_REC_PCR = 3,
	TPM_REC_AK_PUBLIC = 4,
	TPM_REC_EK_PUBLIC = 5,
	TPM_REC_EK_CERT = 6,
};

/* One PCR value: bank (hash algorithm), index and digest (len = bank size). */
struct tpm_pcr_value {
	uint16_t alg;
	uint8_t index;
	uint8_t len;
	uint8_t digest[TPM_MAX_DIGEST];
};

/* A PCR selection: up to TPM_MAX_BANKS banks, each a 24-bit PCR mask. */
struct tpm_pcr_selection {
	size_t n;
	struct {
		uint16_t alg;
		uint32_t mask; /* bit i selects PCR i */
	} bank[TPM_MAX_BANKS];
};

/* A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE. */
struct tpm_quote {
	uint8_t signer[TPM_MAX_NAME];
	size_t signer_len;
	uint8_t extra[TPM_MAX_DIGEST];
	size_t extra_len;
	uint64_t clock;
	uint32_t reset_count;
	uint32_t restart_count;
	uint8_t safe;
	uint64_t firmware_version;
	struct tpm_pcr_selection sel;
	uint8_t pcr_digest[TPM_MAX_DIGEST];
	size_t pcr_digest_len;
	/* Filled by tpm_verify_quote: the signature scheme and hash used. */
	uint16_t sig_alg;
	uint16_t sig_hash;
};

/* MakeCredential output, both marshalled with their u16 size prefix. */
struct tpm_cred_blob {
	uint8_t id_object[2 + 2 + TPM_MAX_DIGEST + 2 + 2 + TPM_MAX_DIGEST];
	size_t id_object_len;  /* TPM2B_ID_OBJECT */
	uint8_t enc_secret[2 + 512];
	size_t enc_secret_len; /* TPM2B_ENCRYPTED_SECRET */
};

/* Input of the raw quote check (no EK/AK credentials). */
struct tpm_quote_input {
	const uint8_t *attest;     /* TPMS_ATTEST */
	size_t attest_len;
	const uint8_t *sig;        /* TPMT_SIGNATURE, or a raw RSASSA-PKCS1-v1_5/SHA-256 signature */
	size_t sig_len;
	const uint8_t *ak_pub;     /* SubjectPublicKeyInfo, DER or PEM */
	size_t ak_pub_len;
	const struct tpm_pcr_value *pcrs; /* values of every selected PCR */
	size_t n_pcrs;
	const uint8_t *nonce;      /* expected extraData prefix (rest zero); NULL = unchecked */
	size_t nonce_len;
};

/*
 * Parses a TPMS_ATTEST quote strictly (magic, type, exact length, bounds).
 * Returns 0 or SS_EPARSE with reason set.
 */
int tpm_attest_parse(const uint8_t *p, size_t n, struct tpm_quote *q, char *reason,
		     size_t reason_len);

/*
 * Verifies a quote against a bare AK public key: the signature (TPMT_SIGNATURE
 * with RSASSA/RSAPSS/ECDSA and SHA-256/384, or a raw PKCS#1 v1.5 SHA-256
 * signature), extraData against nonce, and pcrDigest against the presented
 * PCR values in selection order. Fills *q (may be NULL). Returns 0, or
 * SS_EPARSE / SS_ECRYPTO / SS_EATTEST with reason naming the failure.
 */
int tpm_verify_quote(const struct tpm_quote_input *in, struct tpm_quote *q, char *reason,
		     size_t reason_len);

/*
 * Computes the TPM name (nameAlg || H(TPMT_PUBLIC)) of a marshalled
 * TPM2B_PUBLIC into name[TPM_MAX_NAME]. Returns 0 or SS_EPARSE.
 */
int tpm_public_name(const uint8_t *tpm2b_public, size_t len, uint8_t *name, size_t *name_len);

/*
 * MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 TPM2_MakeCredential):
 * protects secret for the object called ak_name under the EK given as a
 * marshalled TPM2B_PUBLIC (RSA: OAEP seed with label "IDENTITY"; ECC: ECDH
 * seed through KDFe). Returns 0, SS_EPARSE for an unusable EK public, or
 * SS_ECRYPTO.
 */
int tpm_make_credential(const uint8_t *ek_pub_tpm2b, size_t ek_pub_len, const uint8_t *ak_name,
			size_t ak_name_len, const uint8_t secret[TPM_CRED_SECRET_LEN],
			struct tpm_cred_blob *out);

/* The verifier's half of one credential activation. */
struct tpm_ak_challenge {
	uint8_t secret[TPM_CRED_SECRET_LEN];
	uint8_t key[32]; /* SHA-256(AK name || EK TPM2B_PUBLIC): the trust-cache key */
	struct tpm_cred_blob blob; /* send blob.id_object and blob.enc_secret to the agent */
};

/*
 * Starts credential activation for the identity in evidence (a "tpm"
 * container with AK public, EK public and EK certificate; a quote may be
 * present and is ignored). Checks that the AK is a restricted fixedTPM
 * signing key; unless require_ek_cert is false, that the EK certificate
 * chains at now_unix to collateral_dir/tpm/ek-ca/ *.pem and certifies the
 * presented EK public key. Then makes a credential with a fresh random
 * secret. Returns 0 or a negative SS_E* code with reason set.
 */
int tpm_ak_challenge_new(const uint8_t *evidence, size_t len, const char *collateral_dir,
			 int64_t now_unix, bool require_ek_cert, struct tpm_ak_challenge *ch,
			 char *reason, size_t reason_len);

/*
 * Finishes credential activation: compares (constant time) the secret the
 * agent returned with ch->secret and, on a match, trusts the AK for
 * TPM_AK_TRUST_TTL_S from now_unix. Returns 0 or SS_EAUTH.
 */
int tpm_ak_challenge_finish(const struct tpm_ak_challenge *ch, const uint8_t *secret,
			    size_t secret_len, int64_t now_unix, char *reason, size_t reason_len);

/* Forgets every trusted AK and cached chain result (tests). */
void tpm_trust_reset(void);

/*
 * Parses "sha256:0-7,23" (banks separated by '+', e.g. "sha256:0-7+sha384:0")
 * into sel. Returns 0 or SS_EINVAL.
 */
int tpm_pcr_selection_parse(const char *s, struct tpm_pcr_selection *sel);

/* Returns the digest size of a TPM hash algorithm, or 0 if unsupported. */
size_t tpm_alg_digest_len(uint16_t alg);

/*
 * Computes the value of a PCR (bank alg) that starts at zero and is extended
 * with each of the n digests in order. out holds tpm_alg_digest_len(alg).
 */
int tpm_pcr_replay(uint16_t alg, const uint8_t *const *digests, size_t n, uint8_t *out);

/*
 * Internal (ss__-style, shared with the attester and tests): builds a "tpm"
 * container from its parts; a zero length omits a record. *out is malloc'd.
 * Record lengths must already respect the container limits.
 */
void tpm__evidence_build(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
			 size_t sig_len, const struct tpm_pcr_value *pcrs, size_t n_pcrs,
			 const uint8_t *ak, size_t ak_len, const uint8_t *ek, size_t ek_len,
			 const uint8_t *cert, size_t cert_len, uint8_t **out, size_t *out_len);

/* The "tpm" verifier (declared in attest/attest.h): attest_tpm_verifier. */

/* ---- attester (agent side, tss2 ESAPI loaded at run time) ------------- */

#define TPM_DEFAULT_TCTI "device:/dev/tpmrm0"
#define TPM_DEFAULT_PCRS "sha256:0-7,23"
/* The agent measures itself into this PCR (resettable at locality 0). */
#define TPM_AGENT_PCR 23
#define TPM_EK_CERT_NV_RSA 0x01c00002u
#define TPM_EK_PERSISTENT_RSA 0x81010001u

struct tpm_attester;

/*
 * Opens the TPM through tcti (NULL = TPM_DEFAULT_TCTI), loads the persistent
 * RSA EK at 0x81010001 or creates it from the default TCG template L-1,
 * creates an RSASSA/SHA-256 restricted signing AK under it, and reads the RSA
 * EK certificate from NV 0x01c00002 when present. Returns 0, SS_ENOSYS when
 * tss2 or the TPM is unavailable, or SS_EIO.
 */
int tpm_attester_open(const char *tcti, struct tpm_attester **out);
void tpm_attester_close(struct tpm_attester *h);

/* Marshalled TPM2B_PUBLIC of the EK / AK, and the EK certificate (DER, may
 * be absent: returns SS_ENOTFOUND). Pointers stay valid until close. */
int tpm_attester_ek_public(struct tpm_attester *h, const uint8_t **p, size_t *len);
int tpm_attester_ak_public(struct tpm_attester *h, const uint8_t **p, size_t *len);
int tpm_attester_ek_cert(struct tpm_attester *h, const uint8_t **p, size_t *len);

/* The identity container (AK public, EK public, EK certificate); caller frees. */
int tpm_attester_identity(struct tpm_attester *h, uint8_t **out, size_t *len);

/*
 * Runs TPM2_ActivateCredential on the AK with the EK (policy session with
 * PolicySecret(TPM_RH_ENDORSEMENT)); id_object and enc_secret are the
 * marshalled TPM2B blobs from tpm_make_credential. Writes the recovered
 * secret (up to secret_cap bytes) and its length. Returns 0 or SS_EAUTH /
 * SS_EIO / SS_EINVAL.
 */
int tpm_attester_activate(struct tpm_attester *h, const uint8_t *id_object, size_t id_len,
			  const uint8_t *enc_secret, size_t enc_len, uint8_t *secret,
			  size_t secret_cap, size_t *secret_len);

/*
 * Quotes the PCRs in sel (NULL = TPM_DEFAULT_PCRS) with qualifying data
 * binding32 and returns a complete "tpm" evidence container (quote,
 * signature, PCR values, AK/EK public, EK certificate); caller frees.
 */
int tpm_attester_quote(struct tpm_attester *h, const uint8_t binding32[ATTEST_REPORT_DATA_LEN],
		       const struct tpm_pcr_selection *sel, uint8_t **evidence, size_t *len);

/* Extends SHA-256 bank PCR pcr with digest (32 bytes). */
int tpm_attester_extend(struct tpm_attester *h, unsigned pcr, const uint8_t digest[32]);

/*
 * Measured start: resets PCR TPM_AGENT_PCR and extends it with SHA-256 of
 * /proc/self/exe and then SHA-256 of config (may be NULL = empty). The
 * expected value is tpm_pcr_replay(sha256, {H(exe), H(config)}).
 */
int tpm_attester_measure_start(struct tpm_attester *h, const char *config, size_t config_len);

#endif
