/*
 * frame.h - length-prefixed frames on a byte stream.
 *
 * Wire form: u32 big-endian payload length, u16 big-endian message type,
 * u16 reserved (must be 0), then the payload. The decoder is a streaming
 * parser: feed it bytes as they arrive and it reports whole frames. It never
 * trusts a length it has not bounded.
 */
#ifndef SS_FRAME_H
#define SS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define FRAME_HDR_LEN 8
/* Default bound on one frame's payload. */
#define FRAME_MAX_DEFAULT (1u << 20)

struct frame_decoder {
	struct buf in;      /* bytes not yet consumed */
	uint32_t max_payload;
	int error;          /* sticky: once set, feed returns it */
};

/* Called for each whole frame. A nonzero return stops decoding and is returned by feed. */
typedef int (*frame_cb)(void *arg, uint16_t type, const uint8_t *payload, uint32_t len);

void frame_decoder_init(struct frame_decoder *d, uint32_t max_payload);
void frame_decoder_free(struct frame_decoder *d);
/*
 * Appends data and calls cb for every complete frame, in order. When cb
 * returns nonzero, decoding stops and the bytes after that frame are
 * discarded. Returns 0,
 * the first nonzero value cb returned, SS_ETOOBIG for a header announcing
 * more than max_payload, or SS_EPROTO for a nonzero reserved field. After an
 * error the decoder refuses further input.
 */
int frame_decoder_feed(struct frame_decoder *d, const uint8_t *data, size_t len,
		       frame_cb cb, void *arg);
/* Bytes buffered that do not yet form a whole frame (a truncated frame at EOF). */
size_t frame_decoder_pending(const struct frame_decoder *d);

/* Writes the 8-byte header for a payload of len bytes. */
void frame_header(uint8_t out[FRAME_HDR_LEN], uint16_t type, uint32_t len);

#endif
