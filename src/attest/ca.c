/*
 * ca.c - the swarm certificate authority and X.509 helpers.
 *
 * Every OpenSSL failure is logged with the first entry of OpenSSL's error
 * queue and reported as SS_ECRYPTO; the queue is cleared afterwards so that a
 * later, unrelated call does not report a stale error.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "attest/ca.h"
#include "core/core.h"

/* Bound on a PEM file we read: keys and certificates are far smaller. */
#define PEM_MAX_FILE (256u * 1024u)
/* Bound on the number of SAN entries of one certificate. */
#define CA_MAX_SANS 64
/* Lifetime of a new CA certificate: ten years. */
#define CA_LIFETIME_S ((int64_t)3652 * 86400)
/* Clock skew allowance applied when not_before is 0. */
#define CA_BACKDATE_S 60

struct ca {
	EVP_PKEY *key;
	X509 *cert;
};

/* Logs what failed with OpenSSL's reason, clears the queue, returns SS_ECRYPTO. */
static int ossl_fail(const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "no OpenSSL error";
	if (e)
		ERR_error_string_n(e, reason, sizeof reason);
	log_error("%s: %s", what, reason);
	ERR_clear_error();
	return SS_ECRYPTO;
}

int crypto_gen_key(EVP_PKEY **out)
{
	*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!*out)
		return ossl_fail("EC P-256 key generation");
	return 0;
}

/* ---- certificate construction ----------------------------------------- */

/* True when s is a plausible DNS SAN: 1..253 printable ASCII characters, no spaces. */
static bool dns_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* Sets a positive, nonzero 128-bit random serial number. */
static int set_random_serial(X509 *cert)
{
	int rc = 0;
	uint8_t raw[16];
	BIGNUM *bn = NULL;
	do {
		rand_bytes(raw, sizeof raw);
		raw[0] &= 0x7f;
	} while (raw[0] == 0 && raw[1] == 0);
	bn = BN_bin2bn(raw, sizeof raw, NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
		rc = ossl_fail("certificate serial");
		goto out;
	}
out:
	BN_free(bn);
	return rc;
}

/* Adds one extension given in OpenSSL's configuration syntax (fixed strings only). */
static int add_conf_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	int rc = 0;
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
	if (!ext || !X509_add_ext(cert, ext, -1)) {
		rc = ossl_fail(OBJ_nid2sn(nid));
		goto out;
	}
out:
	X509_EXTENSION_free(ext);
	return rc;
}

/*
 * Adds a subjectAltName extension built from the DNS and IP lists. Names are
 * encoded directly, never through the configuration syntax, so a name with a
 * comma or colon cannot inject other entries. Returns SS_EINVAL for an empty
 * DNS name, an IP literal that does not parse, or too many entries.
 */
static int add_sans(X509 *cert, const char *const *dns, const char *const *ips, const char *uri)
{
	int rc = 0;
	size_t count = 0;
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	if (!gens) {
		rc = ossl_fail("subjectAltName");
		goto out;
	}
	for (size_t i = 0; dns && dns[i]; i++, count++) {
		if (!dns_name_ok(dns[i]) || count >= CA_MAX_SANS) {
			log_error("certificate: invalid DNS name in subjectAltName");
			rc = SS_EINVAL;
			goto out;
		}
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();
		if (!g || !s || !ASN1_STRING_set(s, dns[i], -1)) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			rc = ossl_fail("subjectAltName DNS");
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			rc = ossl_fail("subjectAltName DNS");
			goto out;
		}
	}
	for (size_t i = 0; ips && ips[i]; i++, count++) {
		if (count >= CA_MAX_SANS) {
			rc = SS_EINVAL;
			goto out;
		}
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(ips[i]);
		if (!ip) {
			ERR_clear_error();
			log_error("certificate: '%s' is not an IP address", ips[i]);
			rc = SS_EINVAL;
			goto out;
		}
		GENERAL_NAME *g = GENERAL_NAME_new();
		if (!g) {
			ASN1_OCTET_STRING_free(ip);
			rc = ossl_fail("subjectAltName IP");
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			rc = ossl_fail("subjectAltName IP");
			goto out;
		}
	}
	if (uri) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *u = ASN1_IA5STRING_new();
		if (!g || !u || !ASN1_STRING_set(u, uri, -1)) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(u);
			rc = ossl_fail("subjectAltName URI");
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_URI, u);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			rc = ossl_fail("subjectAltName URI");
			goto out;
		}
		count++;
	}
	if (count > 0 && !X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0,
					    X509V3_ADD_DEFAULT)) {
		rc = ossl_fail("subjectAltName");
		goto out;
	}
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* Sets the validity window [nb, nb + lifetime). */
static int set_validity(X509 *cert, int64_t nb, int64_t lifetime)
{
	/* Keep both ends inside what time_t and X.509 GeneralizedTime hold. */
	const int64_t max_time = (int64_t)253402300799; /* 9999-12-31T23:59:59Z */
	if (nb < 0 || lifetime <= 0 || nb > max_time || lifetime > max_time - nb)
		return SS_EINVAL;
	if (!ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)nb) ||
	    !ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)(nb + lifetime)))
		return ossl_fail("certificate validity");
	return 0;
}

/*
 * Builds and signs a certificate for pubkey with subject CN cn. issuer is
 * the CA certificate, or NULL for a self-signed CA certificate (is_ca must
 * then be true and signkey must be the key behind pubkey).
 */
static int build_cert(X509 *issuer, EVP_PKEY *signkey, EVP_PKEY *pubkey, const char *cn,
		      int64_t not_before, int64_t lifetime, bool is_ca, unsigned usage,
		      const char *const *dns, const char *const *ips, const uint8_t *digest,
		      X509 **out)
{
	int rc = 0;
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;

	*out = NULL;
	if (!cert || !name) {
		rc = ossl_fail("certificate allocation");
		goto out;
	}
	if (!X509_set_version(cert, X509_VERSION_3)) {
		rc = ossl_fail("certificate version");
		goto out;
	}
	if ((rc = set_random_serial(cert)) != 0)
		goto out;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					-1, -1, 0)) {
		ERR_clear_error();
		log_error("certificate: invalid common name (1..64 characters)");
		rc = SS_EINVAL;
		goto out;
	}
	if (!X509_set_subject_name(cert, name) ||
	    !X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) ||
	    !X509_set_pubkey(cert, pubkey)) {
		rc = ossl_fail("certificate names");
		goto out;
	}
	if ((rc = set_validity(cert, not_before, lifetime)) != 0)
		goto out;

	/* A self-signed certificate is its own issuer for the key identifiers. */
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	if (is_ca) {
		if ((rc = add_conf_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE")) ||
		    (rc = add_conf_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")))
			goto out;
	} else {
		if ((rc = add_conf_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE")) ||
		    (rc = add_conf_ext(cert, &ctx, NID_key_usage, "critical,digitalSignature")))
			goto out;
	}
	const char *eku = NULL;
	if ((usage & CA_USAGE_SERVER) && (usage & CA_USAGE_CLIENT))
		eku = "serverAuth,clientAuth";
	else if (usage & CA_USAGE_SERVER)
		eku = "serverAuth";
	else if (usage & CA_USAGE_CLIENT)
		eku = "clientAuth";
	if (eku && (rc = add_conf_ext(cert, &ctx, NID_ext_key_usage, eku)))
		goto out;
	char uri[128] = "";
	if (digest) {
		char hex[65];
		hex_encode(digest, 32, hex);
		snprintf(uri, sizeof uri, "%s%s", SS_ATTESTATION_URI_PREFIX, hex);
	}
	if ((rc = add_sans(cert, dns, ips, digest ? uri : NULL)) != 0)
		goto out;
	if ((rc = add_conf_ext(cert, &ctx, NID_subject_key_identifier, "hash")) ||
	    (rc = add_conf_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always")))
		goto out;

	if (X509_sign(cert, signkey, EVP_sha256()) <= 0) {
		rc = ossl_fail("certificate signature");
		goto out;
	}
	*out = cert;
	cert = NULL;
out:
	X509_NAME_free(name);
	X509_free(cert);
	return rc;
}

/* ---- the CA ----------------------------------------------------------- */

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Creates a self-signed CA certificate for key. */
static int ca_self_sign(EVP_PKEY *key, X509 **out)
{
	uint8_t id[4];
	char hex[sizeof id * 2 + 1];
	rand_bytes(id, sizeof id);
	hex_encode(id, sizeof id, hex);
	char *cn = xasprintf("seeswarm swarm CA %s", hex);
	int rc = build_cert(NULL, key, key, cn, (int64_t)time(NULL) - CA_BACKDATE_S,
			    CA_LIFETIME_S, true, 0, NULL, NULL, NULL, out);
	free(cn);
	return rc;
}

int ca_init_dir(const char *dir, bool *created)
{
	int rc = 0;
	char *key_path = xasprintf("%s/ca.key", dir);
	char *cert_path = xasprintf("%s/ca.pem", dir);
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	bool have_key = file_exists(key_path), have_cert = file_exists(cert_path);

	if (created)
		*created = false;
	if (have_key && have_cert)
		goto out;
	if (have_cert) {
		/* Never replace a trust anchor others may already hold. */
		log_error("%s exists but %s is missing; refusing to make a new CA", cert_path,
			  key_path);
		rc = SS_ESTATE;
		goto out;
	}
	if (have_key) {
		/* A crash between the two writes leaves only the key: reuse it. */
		log_warn("%s has no certificate; issuing one for the existing key", key_path);
		if ((rc = pem_read_key(key_path, &key)) != 0)
			goto out;
	} else {
		if ((rc = crypto_gen_key(&key)) != 0)
			goto out;
	}
	if ((rc = ca_self_sign(key, &cert)) != 0)
		goto out;
	if (!have_key && (rc = pem_write_key(key_path, key)) != 0)
		goto out;
	if ((rc = pem_write_cert(cert_path, cert, 0644)) != 0)
		goto out;
	if (created)
		*created = true;
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	free(key_path);
	free(cert_path);
	return rc;
}

int ca_load(struct ca **out, const char *dir)
{
	int rc = 0;
	char *key_path = xasprintf("%s/ca.key", dir);
	char *cert_path = xasprintf("%s/ca.pem", dir);
	struct ca *ca = xcalloc(1, sizeof *ca);

	*out = NULL;
	if ((rc = pem_read_key(key_path, &ca->key)) != 0 ||
	    (rc = pem_read_cert(cert_path, &ca->cert)) != 0)
		goto out;
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ERR_clear_error();
		log_error("%s does not match %s", key_path, cert_path);
		rc = SS_ECRYPTO;
		goto out;
	}
	if (X509_check_ca(ca->cert) == 0) {
		log_error("%s is not a CA certificate", cert_path);
		rc = SS_ECRYPTO;
		goto out;
	}
	*out = ca;
	ca = NULL;
out:
	ca_free(ca);
	free(key_path);
	free(cert_path);
	return rc;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	free(ca);
}

X509 *ca_cert(const struct ca *ca)
{
	return ca->cert;
}

int ca_issue(struct ca *ca, EVP_PKEY *pubkey, const struct ca_issue_opts *opts, X509 **out)
{
	*out = NULL;
	if (!ca || !pubkey || !opts || !opts->common_name || opts->lifetime_s <= 0)
		return SS_EINVAL;
	int64_t nb = opts->not_before ? opts->not_before : (int64_t)time(NULL) - CA_BACKDATE_S;
	return build_cert(ca->cert, ca->key, pubkey, opts->common_name, nb, opts->lifetime_s,
			  false, opts->usage, opts->dns_sans, opts->ip_sans, opts->attestation_digest, out);
}

/* ---- PEM I/O ---------------------------------------------------------- */

/*
 * Passphrase callback that refuses: encrypted keys are not supported, and
 * OpenSSL's default would prompt on the terminal and block a daemon.
 */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Copies a memory BIO's contents into a new NUL-terminated string. */
static char *bio_to_string(BIO *bio)
{
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);
	if (n < 0 || (n > 0 && !data))
		return NULL;
	return xstrndup(n ? data : "", (size_t)n);
}

char *pem_cert_string(X509 *cert)
{
	char *s = NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_X509(bio, cert)) {
		ossl_fail("PEM encoding of certificate");
		goto out;
	}
	s = bio_to_string(bio);
out:
	BIO_free(bio);
	return s;
}

char *pem_key_string(EVP_PKEY *key)
{
	char *s = NULL;
	/* The secure-memory BIO clears the key material when it is freed. */
	BIO *bio = BIO_new(BIO_s_secmem());
	if (!bio || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		ossl_fail("PEM encoding of private key");
		goto out;
	}
	s = bio_to_string(bio);
out:
	BIO_free(bio);
	return s;
}

int pem_write_key(const char *path, EVP_PKEY *key)
{
	char *s = pem_key_string(key);
	if (!s)
		return SS_ECRYPTO;
	size_t n = strlen(s);
	int rc = file_write_atomic(path, s, n, 0600);
	OPENSSL_cleanse(s, n);
	free(s);
	if (rc)
		log_error("cannot write %s: %s", path, ss_strerror(rc));
	return rc;
}

int pem_write_cert(const char *path, X509 *cert, unsigned mode)
{
	char *s = pem_cert_string(cert);
	if (!s)
		return SS_ECRYPTO;
	int rc = file_write_atomic(path, s, strlen(s), mode);
	free(s);
	if (rc)
		log_error("cannot write %s: %s", path, ss_strerror(rc));
	return rc;
}

int pem_read_key(const char *path, EVP_PKEY **out)
{
	int rc = 0;
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;

	*out = NULL;
	if ((rc = file_read(path, PEM_MAX_FILE, &data, &len)) != 0) {
		log_error("cannot read %s: %s", path, ss_strerror(rc));
		goto out;
	}
	bio = BIO_new_mem_buf(data, (int)len);
	if (!bio || !(*out = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
		rc = ossl_fail(path);
		goto out;
	}
out:
	BIO_free(bio);
	if (data) {
		OPENSSL_cleanse(data, len);
		free(data);
	}
	return rc;
}

int pem_read_cert(const char *path, X509 **out)
{
	int rc = 0;
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;

	*out = NULL;
	if ((rc = file_read(path, PEM_MAX_FILE, &data, &len)) != 0) {
		log_error("cannot read %s: %s", path, ss_strerror(rc));
		goto out;
	}
	bio = BIO_new_mem_buf(data, (int)len);
	if (!bio || !(*out = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
		rc = ossl_fail(path);
		goto out;
	}
out:
	BIO_free(bio);
	free(data);
	return rc;
}

/* ---- digests and names ------------------------------------------------ */

int crypto_spki_der(EVP_PKEY *key, uint8_t **der, size_t *len)
{
	*der = NULL;
	*len = 0;
	int n = i2d_PUBKEY(key, NULL);
	if (n <= 0)
		return ossl_fail("SubjectPublicKeyInfo encoding");
	uint8_t *buf = xmalloc((size_t)n);
	unsigned char *p = buf;
	if (i2d_PUBKEY(key, &p) != n) {
		free(buf);
		return ossl_fail("SubjectPublicKeyInfo encoding");
	}
	*der = buf;
	*len = (size_t)n;
	return 0;
}

int crypto_cert_fingerprint(X509 *cert, uint8_t out[32])
{
	unsigned int n = 0;
	if (!X509_digest(cert, EVP_sha256(), out, &n) || n != SHA256_LEN)
		return ossl_fail("certificate fingerprint");
	return 0;
}

int crypto_cert_cn(X509 *cert, char *out, size_t outlen)
{
	int rc = 0;
	unsigned char *utf8 = NULL;
	const X509_NAME *name = X509_get_subject_name(cert);
	int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;

	if (outlen > 0)
		out[0] = '\0';
	if (idx < 0) {
		rc = SS_ENOTFOUND;
		goto out;
	}
	const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	int n = s ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
	if (n < 0) {
		rc = ossl_fail("certificate common name");
		goto out;
	}
	/* A CN with an embedded NUL could pass for a different, shorter name. */
	if (memchr(utf8, '\0', (size_t)n)) {
		rc = SS_EPARSE;
		goto out;
	}
	if ((size_t)n >= outlen) {
		rc = SS_ETOOBIG;
		goto out;
	}
	memcpy(out, utf8, (size_t)n);
	out[n] = '\0';
out:
	OPENSSL_free(utf8);
	return rc;
}

/* ---- agent credentials ------------------------------------------------ */

int ca_issue_agent_dir(struct ca *ca, const char *agent_id, const char *out_dir,
		       int64_t lifetime_s)
{
	int rc = 0;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *key_path = NULL, *cert_path = NULL, *ca_path = NULL, *id_path = NULL;
	char *id_text = NULL;

	if (!agent_id || !ident_valid(agent_id) || lifetime_s <= 0) {
		rc = SS_EINVAL;
		goto out;
	}
	if ((rc = dir_ensure(out_dir, 0700)) != 0) {
		log_error("cannot create %s: %s", out_dir, ss_strerror(rc));
		goto out;
	}
	if ((rc = crypto_gen_key(&key)) != 0)
		goto out;
	const char *const dns[] = {agent_id, NULL};
	const struct ca_issue_opts opts = {
		.common_name = agent_id,
		.dns_sans = dns,
		.lifetime_s = lifetime_s,
		.usage = CA_USAGE_CLIENT,
	};
	if ((rc = ca_issue(ca, key, &opts, &cert)) != 0)
		goto out;
	key_path = xasprintf("%s/agent.key", out_dir);
	cert_path = xasprintf("%s/agent.pem", out_dir);
	ca_path = xasprintf("%s/ca.pem", out_dir);
	id_path = xasprintf("%s/node-id", out_dir);
	id_text = xasprintf("%s\n", agent_id);
	if ((rc = pem_write_key(key_path, key)) != 0 ||
	    (rc = pem_write_cert(cert_path, cert, 0644)) != 0 ||
	    (rc = pem_write_cert(ca_path, ca->cert, 0644)) != 0)
		goto out;
	if ((rc = file_write_atomic(id_path, id_text, strlen(id_text), 0644)) != 0) {
		log_error("cannot write %s: %s", id_path, ss_strerror(rc));
		goto out;
	}
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	free(key_path);
	free(cert_path);
	free(ca_path);
	free(id_path);
	free(id_text);
	return rc;
}
