/* frame.c - streaming frame decoder. */
#include <string.h>

#include "net/frame.h"

void frame_decoder_init(struct frame_decoder *d, uint32_t max_payload)
{
	buf_init(&d->in);
	d->max_payload = max_payload;
	d->error = 0;
}

void frame_decoder_free(struct frame_decoder *d)
{
	buf_free(&d->in);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Parses frames from p[0..n). Returns bytes consumed through *used. */
static int parse(struct frame_decoder *d, const uint8_t *p, size_t n, size_t *used,
		 frame_cb cb, void *arg)
{
	size_t off = 0;
	int rc = 0;
	while (n - off >= FRAME_HDR_LEN) {
		uint32_t len = get_be32(p + off);
		uint16_t type = get_be16(p + off + 4);
		uint16_t reserved = get_be16(p + off + 6);
		if (len > d->max_payload) {
			rc = SS_ETOOBIG;
			break;
		}
		if (reserved != 0) {
			rc = SS_EPROTO;
			break;
		}
		if (n - off - FRAME_HDR_LEN < len)
			break;
		rc = cb(arg, type, p + off + FRAME_HDR_LEN, len);
		off += FRAME_HDR_LEN + len;
		if (rc)
			break;
	}
	*used = off;
	return rc;
}

int frame_decoder_feed(struct frame_decoder *d, const uint8_t *data, size_t len,
		       frame_cb cb, void *arg)
{
	size_t used = 0;
	int rc;
	if (d->error)
		return d->error;
	if (d->in.len == 0) {
		/* Fast path: parse straight from the caller's bytes. */
		rc = parse(d, data, len, &used, cb, arg);
		if (!rc && used < len)
			buf_append(&d->in, data + used, len - used);
	} else {
		buf_append(&d->in, data, len);
		rc = parse(d, d->in.data, d->in.len, &used, cb, arg);
		buf_consume(&d->in, used);
	}
	/* After a stop the rest of the input is discarded; idle decoders hold no memory. */
	if (rc)
		d->in.len = 0;
	if (d->in.len == 0)
		buf_free(&d->in);
	if (rc == SS_ETOOBIG || rc == SS_EPROTO)
		d->error = rc;
	return rc;
}

size_t frame_decoder_pending(const struct frame_decoder *d)
{
	return d->in.len;
}

void frame_header(uint8_t out[FRAME_HDR_LEN], uint16_t type, uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	out[4] = (uint8_t)(type >> 8);
	out[5] = (uint8_t)type;
	out[6] = 0;
	out[7] = 0;
}
