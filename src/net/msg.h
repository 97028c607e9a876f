/*
 * msg.h - the protocol's message types and their strict decoders.
 *
 * Each decoder unpacks one protobuf payload and then validates it: string
 * lengths, repeated-field counts and value ranges are bounded here, so code
 * that handles a decoded message may rely on those bounds. A decoded message
 * is freed with msg_free().
 */
#ifndef SS_MSG_H
#define SS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/seeswarm.pb-c.h"

#define PROTOCOL_VERSION 1

enum msg_type {
	MSG_HELLO = 1,
	MSG_CHALLENGE = 2,
	MSG_EVIDENCE = 3,
	MSG_ADMITTED = 4,
	MSG_REJECTED = 5,
	MSG_HEARTBEAT = 6,
	MSG_HEARTBEAT_ACK = 7,
	MSG_GOODBYE = 8,
	MSG_STATE_CHANGE = 9,
	MSG_ERROR = 10,
	MSG_CREDENTIAL_CHALLENGE = 11,
	MSG_CREDENTIAL_RESPONSE = 12,
	MSG_NODE_CERTIFICATE = 13,
	MSG_REVOCATION = 14,
	MSG_TASK_DISPATCH = 15,
	MSG_TASK_STARTED = 16,
	MSG_TASK_RESULT = 17,
	MSG_TASK_ACK = 18,
	MSG_TASK_CANCEL = 19,
	MSG_BLOB_GET = 20,
	MSG_BLOB_DATA = 21,
	MSG_BLOB_REPLICATE = 22,
	MSG_BLOB_STORED = 23,
	MSG_PEER_LIST = 24,
	MSG_BLOB_DELETE = 25,
	MSG_BLOB_INVENTORY = 26,
	MSG_BLOB_INVENTORY_ACK = 27,
	MSG_TASK_LOG_GET = 28,
	MSG_TASK_LOG = 29,
	MSG_TYPE_MAX = 29,
};

/*
 * The manager acknowledges every HEARTBEAT_ACK_EVERY-th heartbeat (and any
 * heartbeat when the node's state differs from what the agent last heard).
 * Cut links are detected by TCP_USER_TIMEOUT; the acks prove that the
 * manager's loop is alive.
 */
#define HEARTBEAT_ACK_EVERY 8

/*
 * A TaskResult of an attempt the agent stopped because the manager cancelled
 * it (or a newer attempt superseded it) has status "signaled" and a message
 * that begins with this; nothing a task does produces one.
 */
#define MSG_CANCELLED_PREFIX "cancelled: "

/* Bounds enforced by the decoders. */
#define MSG_MAX_ID 63
#define MSG_MAX_KILL_GRACE_MS 600000u /* a task's grace between SIGTERM and SIGKILL (JOBSPEC_MAX_KILL_GRACE_MS) */
#define MSG_MAX_STR 255
#define MSG_MAX_LABELS 32
#define MSG_MAX_FEATURES 64
#define MSG_MAX_EVIDENCE_TYPES 8
#define MSG_MAX_EVIDENCE (64u * 1024u)
#define MSG_MAX_CERTS 8
#define MSG_MAX_CERT (8u * 1024u)
#define MSG_NONCE_LEN 32
#define MSG_MAX_IDENTITY (16u * 1024u)
#define MSG_MAX_CRED_BLOB 1024u
#define MSG_MAX_REVOKED 1024
#define MSG_MAX_TASK_ID 127          /* "<job id>.<index>" */
#define MSG_MAX_ARGS 256
#define MSG_MAX_ENV 256
#define MSG_MAX_ARG 4096             /* bytes of one argv or env string */
#define MSG_MAX_TASK_INPUTS 4096
#define MSG_MAX_TASK_OUTPUTS 256
#define MSG_MAX_PATH 1024            /* input names and output paths */
#define MSG_MAX_INLINE (64u * 1024u) /* blob bytes carried inline in a task message */
#define MSG_MAX_TAIL (64u * 1024u)   /* stdout/stderr tail in a result */
#define MSG_MAX_LOG (64u * 1024u)    /* bytes of one stream in a TaskLog */
#define MSG_MAX_LOG_OFFSET (1ull << 50) /* a stream offset in TaskLogGet and TaskLog */
#define MSG_MAX_RECEIPT (256u * 1024u)
#define MSG_MAX_BLOB_CHUNK (512u * 1024u)
#define MSG_MAX_TASKS_HELD 65536     /* task refs in a hello */
#define MSG_MAX_SOURCES 4            /* agents named as holders of one blob */
#define MSG_MAX_ADDR 63              /* a peer endpoint, "ip:port" */
#define MSG_MAX_PEERS 16             /* peers in a PeerList, RTTs in a Heartbeat */
#define MSG_MAX_DELETE 256           /* digests in a BlobDelete */
#define MSG_MAX_INVENTORY 1024       /* digests in a BlobInventory (and in its ack) */
#define MSG_MAX_GRANT 80             /* bytes of a blob fetch grant (data/grant.h) */
#define MSG_MAX_RTT_US 60000000u     /* one minute */
#define MSG_MAX_BLOB_SIZE (1ull << 32) /* bytes in one blob (the blob store's bound) */

/* Returns the message name ("hello", ...) or NULL for an unknown type. */
const char *msg_type_name(uint16_t type);

/*
 * Decodes and validates a payload of the given type. On success returns 0
 * and *out holds a ProtobufCMessage of that type owned by the caller (free
 * with msg_free). Returns SS_ETYPE for an unknown type and SS_EPROTO for a
 * payload that does not decode or breaks a bound; *why then names the
 * problem (a static string).
 */
int msg_decode(uint16_t type, const uint8_t *payload, size_t len,
	       ProtobufCMessage **out, const char **why);
void msg_free(ProtobufCMessage *m);

/* Packs a message into a newly allocated buffer (caller frees). */
uint8_t *msg_pack(const ProtobufCMessage *m, size_t *len);

/* Maps a message descriptor back to its type number (0 if unknown). */
uint16_t msg_type_of(const ProtobufCMessage *m);

#endif
