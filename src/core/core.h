/*
 * core.h - shared internals: logging, allocation, hex, time, randomness and
 * hashing. Allocation failures abort (running out of memory is fatal); every
 * other function reports errors with a negative SS_E* code.
 */
#ifndef SS_CORE_H
#define SS_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "seeswarm.h"

/*
 * Node certificates carry the SHA-256 digest of the node's attestation result
 * in their subjectAltName, as the URI SS_ATTESTATION_URI_PREFIX + 64 hex
 * digits, beside DNS:<node id>. A private extension would need an OID: with no
 * registered enterprise number, the only unregistered arc is the UUID arc
 * 2.25, whose 128-bit values Go's crypto/x509 and Python's cryptography refuse
 * (they reject the whole certificate), so the standard SAN carries it instead.
 */
#define SS_ATTESTATION_URI_PREFIX "urn:seeswarm:attestation-result:sha256:"

typedef struct x509_st X509; /* as OpenSSL declares it */

/*
 * Reads a node certificate's attestation-result digest from its
 * subjectAltName URI. Returns 0, SS_ENOTFOUND or SS_EPARSE.
 */
int cert_attestation_digest(X509 *cert, uint8_t out[32]);
/* The certificate serial as lowercase hex (out: at least 41 bytes). */
int cert_serial_hex(X509 *cert, char *out, size_t outlen);

typedef struct asn1_string_st ASN1_TIME;  /* as OpenSSL declares them */
typedef struct X509_name_st X509_NAME;
/* Formats unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (or "@N" if out of range). */
void cert_fmt_time(int64_t t, char out[32]);
/* Converts an ASN1_TIME to unix seconds. Returns 0 or SS_EPARSE. */
int cert_time_unix(const ASN1_TIME *t, int64_t *out);
/* Copies the CN of name (printable ASCII only; others as '?') into out; "?" when absent. */
void cert_name_cn(const X509_NAME *name, char *out, size_t len);
/* The same for a certificate's subject; x may be NULL. */
void cert_subject_cn(X509 *x, char *out, size_t len);
/*
 * Narrows [*from, *until] to x's validity window. An unreadable window
 * empties the range (INT64_MAX, INT64_MIN), so that nothing that depends on
 * x is cached as valid.
 */
void cert_window(X509 *x, int64_t *from, int64_t *until);
typedef struct x509_store_ctx_st X509_STORE_CTX;  /* as OpenSSL declares it */
/*
 * Writes into reason (rlen bytes; NULL or 0 writes nothing) why
 * X509_verify_cert() failed on ctx at verification time now (unix
 * seconds): which certificate expired or is not yet valid, whose signature
 * does not verify, or which issuer is missing. chain names the chain in the
 * message ("PCK certificate chain"); no_issuer ends the missing-issuer
 * sentence with where the issuer was looked for.
 */
void cert_explain_verify(X509_STORE_CTX *ctx, int64_t now, const char *chain,
			 const char *no_issuer, char *reason, size_t rlen);

/*
 * A small cache of verification results, keyed by a 32-byte digest of their
 * inputs, each valid for verification times in [from, until]: a lookup
 * outside an entry's window misses, so expiry is exact. An entry holds an
 * optional public key (the cache's own reference) and a payload of the size
 * given at creation, copied in and out. When every slot is taken, the
 * oldest entry is replaced. Thread-safe.
 */
typedef struct evp_pkey_st EVP_PKEY; /* as OpenSSL declares it */
struct cert_cache;
struct cert_cache *cert_cache_new(size_t slots, size_t payload_size);
/*
 * On a hit copies the payload into payload, sets *pkey to a new reference
 * (NULL if the entry has none) and *from and *until, and returns true.
 */
bool cert_cache_get(struct cert_cache *c, const uint8_t key[32], int64_t now, void *payload,
		    EVP_PKEY **pkey, int64_t *from, int64_t *until);
/* Stores (or replaces) the entry for key; pkey may be NULL and is not consumed. */
void cert_cache_put(struct cert_cache *c, const uint8_t key[32], const void *payload,
		    EVP_PKEY *pkey, int64_t from, int64_t until);
/* Empties the cache. */
void cert_cache_reset(struct cert_cache *c);
/* Frees the cache and its key references; c may be NULL. */
void cert_cache_free(struct cert_cache *c);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SHA256_LEN 32

/* ---- logging ---------------------------------------------------------- */

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the minimum level printed and an optional prefix (e.g. "manager"). */
void log_init(const char *prefix, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Writes one line to stderr with a UTC timestamp. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                     \
	do {                                                                \
		if (log_get_level() >= LOG_DEBUG)                           \
			log_msg(LOG_DEBUG, __VA_ARGS__);                    \
	} while (0)

/* Prints the message and aborts. For broken invariants only. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- allocation (abort on failure) ------------------------------------ */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes a formatted explanation into why (whylen bytes; nothing when why is NULL or whylen 0). */
void why_write(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/*
 * why_write, evaluating to rc, so that one statement returns an error code
 * with its reason: return why_set(why, len, SS_EPARSE, "..."). A macro, so
 * that static analysis sees the code returned.
 */
#define why_set(why, whylen, rc, ...) (why_write((why), (whylen), __VA_ARGS__), (rc))

/* ---- growable byte buffer --------------------------------------------- */

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends sep (unless b is empty) and then the formatted text: a list of items. */
void buf_join(struct buf *b, const char *sep, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);

/* ---- hex ------------------------------------------------------------- */

/* Writes 2*n hex chars plus NUL into out (size >= 2*n+1). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly out_len bytes from a hex string of 2*out_len chars. */
int hex_decode(const char *in, uint8_t *out, size_t out_len);

/* ---- time ------------------------------------------------------------ */

/* Monotonic milliseconds. */
uint64_t time_mono_ms(void);
/* Wall-clock milliseconds since the Unix epoch. */
int64_t time_wall_ms(void);
/*
 * The UTC calendar month ("2026-12", by_month) or day ("2026-12-02") that
 * holds the wall-clock time ms (>= 0), into out.
 */
void time_utc_period(int64_t ms, bool by_month, char out[16]);
/* When that month or day ends (the first of the next month, or the next midnight, UTC), in ms. */
int64_t time_utc_period_end_ms(int64_t ms, bool by_month);
/* Formats unix milliseconds as RFC 3339 UTC ("2025-06-01T00:00:00.000Z"). */
void time_rfc3339(int64_t wall_ms, char out[32]);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z" to unix seconds. */
int time_parse_rfc3339(const char *s, int64_t *unix_s);

/* ---- crypto helpers -------------------------------------------------- */

/* Fills buf with cryptographically secure random bytes (aborts on failure). */
void rand_bytes(void *buf, size_t n);
/* Uniform in [0, bound) from the CSPRNG; bound > 0. */
uint32_t rand_below(uint32_t bound);
void sha256(const void *data, size_t n, uint8_t out[SHA256_LEN]);
/*
 * FNV-1a over n bytes, continuing from seed (0 starts a fresh hash). For
 * hash tables and stable rankings, never for security.
 */
uint64_t hash_fnv1a(const void *data, size_t n, uint64_t seed);
/* hash_fnv1a of a NUL-terminated string. */
uint64_t hash_str(const char *s);
/* Constant-time comparison; returns true when equal. */
bool ct_equal(const void *a, const void *b, size_t n);

/* ---- files ----------------------------------------------------------- */

/*
 * Reads a whole file of at most max bytes into a NUL-terminated buffer the
 * caller frees. Returns SS_ETOOBIG if the file is larger.
 */
int file_read(const char *path, size_t max, char **out, size_t *out_len);
/*
 * Writes data to path atomically (temp file, fsync, rename, fsync dir) with
 * the given mode.
 */
int file_write_atomic(const char *path, const void *data, size_t n, unsigned mode);
/* Writes all n bytes to fd, retrying on EINTR. Returns 0 or SS_EIO. */
int fd_write_all(int fd, const void *data, size_t n);
/*
 * Reads up to n bytes from fd, retrying on EINTR. Returns 0 and the count
 * in *got (0 at end of file), or SS_EIO.
 */
int fd_read(int fd, void *buf, size_t n, size_t *got);
/* Creates dir (and parents) with the given mode if missing; checks it is a dir. */
int dir_ensure(const char *path, unsigned mode);
/*
 * Removes path and everything below it without following symbolic links,
 * at most 64 levels deep. A missing path is success. Returns 0, or SS_EIO
 * when something could not be removed (errno tells why).
 */
int dir_remove_tree(const char *path);

/* ---- small parsing helpers ------------------------------------------- */

/* Splits "HOST:PORT" (or "[v6]:PORT"); host is copied into host[hostlen]. */
int addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port);
/* Formats a byte count as "16G", "1536M", "100" or, when inexact, "15.6G" (parse_size reads it back, to the rounding). */
void format_size(uint64_t v, char out[32]);
/* Formats a span of time for people: "850ms", "12.3s", "41.5m", "3.2h" or "2.1d". */
void format_seconds(double s, char out[32]);
/* Formats an amount of money with two decimals, or three significant digits below 1: "12.50", "0.0421", "0.000000442". */
void format_amount(double v, char out[32]);
/* Parses a size such as "64M", "2G", "512k", "100" into bytes. */
int parse_size(const char *s, uint64_t *out);
/* Parses a duration such as "500ms", "2s", "1m", "1h", "7d" into milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);
/* Formats milliseconds as parse_duration_ms reads them: "7d", "2h", "5m", "30s" or "1500ms". */
void format_duration_ms(uint64_t ms, char out[32]);

/*
 * A crash point for crash tests: when the environment variable
 * SEESWARM_FAILPOINT equals name, logs it and kills the process with
 * SIGKILL, as kill -9 would, at a precise step (say, after a message went
 * out and before the commit that records why). Otherwise it returns at once;
 * the variable is read on the first call. docs/testing.md lists the points.
 */
void failpoint(const char *name);
/* Formats a wall-clock time (ms since the epoch) as "2026-12-02 07:31:00 UTC". */
void format_utc_ms(int64_t ms, char out[32]);
/* Validates an identifier: 1..63 chars of [A-Za-z0-9._-], starting alnum. */
bool ident_valid(const char *s);
/* Validates a label key (ident) or value (0..127 printable, no spaces). */
bool label_value_valid(const char *s);

#endif
