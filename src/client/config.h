/*
 * config.h - internal helpers of the client library that the manager and the
 * CLI share: the per-user client config file, a detailed description of the
 * last client failure, and the HTTP response parser (exported for tests and
 * fuzzing).
 *
 * The config file is JSON: {"addr":"HOST:PORT","token":"...","ca_file":"/abs/ca.pem"}.
 */
#ifndef SS_CLIENT_CONFIG_H
#define SS_CLIENT_CONFIG_H

#include <stddef.h>

#include "seeswarm.h"

/* Upper bound on the size of the config file. */
#define CLIENT_CONFIG_MAX (64u * 1024u)
/* Upper bounds on an HTTP response: header block and decoded body. */
#define CLIENT_MAX_HEADER (16u * 1024u)
#define CLIENT_MAX_BODY (64u * 1024u * 1024u)

/*
 * Writes the config file at path atomically with mode 0600, creating missing
 * parent directories with mode 0700. addr is required; token and ca_file may
 * be NULL, in which case the field is omitted. Returns 0, SS_EINVAL or SS_EIO.
 */
int client_config_write(const char *path, const char *addr, const char *token,
			const char *ca_file);

/*
 * Returns the path where clients look for the config file: $SEESWARM_CONFIG
 * when set, else $XDG_CONFIG_HOME/seeswarm/config.json (absolute XDG only),
 * else $HOME/.config/seeswarm/config.json. The caller frees the string.
 * Returns NULL when none of these variables is set.
 */
char *client_config_default_path(void);

/* The CA file c verifies the manager with (owned by c), or NULL. */
const char *client_ca_file(const ss_client *c);

/*
 * Returns a human-readable description of the last failure of c (for example
 * the certificate verification error or the errno of connect), or "" when
 * none was recorded. The string is owned by c and valid until its next call.
 */
const char *client_last_error(const ss_client *c);

/*
 * Parses a complete HTTP/1.x response held in raw[0..len). Skips interim 1xx
 * responses, then decodes the body by Content-Length, chunked transfer
 * coding, or as everything up to the end of raw. On success sets *status and
 * *body (NUL-terminated, caller frees) and *body_len. Returns SS_EPROTO for a
 * malformed response, SS_ETRUNC when raw ends early and SS_ETOOBIG when the
 * header block exceeds CLIENT_MAX_HEADER or the body CLIENT_MAX_BODY.
 */
int client_http_parse(const char *raw, size_t len, int *status, char **body, size_t *body_len);

#endif
