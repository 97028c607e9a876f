/* fuzz_frame.c - the frame decoder fed in fuzzer-chosen chunks; each frame goes to msg_decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/frame.h"
#include "net/msg.h"

#define N_SIZES 4

static int on_frame(void *arg, uint16_t type, const uint8_t *payload, uint32_t len)
{
	size_t *frames = arg;
	ProtobufCMessage *m;
	const char *why;
	if (len > 4096)
		abort(); /* the decoder must enforce its max_payload bound */
	if (msg_decode(type, payload, len, &m, &why) == 0)
		msg_free(m);
	(*frames)++;
	return 0;
}

/*
 * The first N_SIZES bytes give a cycle of chunk sizes (1..64 bytes each), so
 * headers and payloads split at every offset are exercised; the rest is the
 * byte stream.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < N_SIZES)
		return 0;
	size_t sizes[N_SIZES];
	for (size_t i = 0; i < N_SIZES; i++)
		sizes[i] = (size_t)data[i] % 64 + 1;
	data += N_SIZES;
	size -= N_SIZES;
	struct frame_decoder d;
	size_t frames = 0;
	frame_decoder_init(&d, 4096);
	size_t off = 0;
	for (size_t i = 0; off < size; i++) {
		size_t chunk = sizes[i % N_SIZES];
		size_t n = size - off < chunk ? size - off : chunk;
		if (frame_decoder_feed(&d, data + off, n, on_frame, &frames) != 0)
			break;
		off += n;
	}
	/* Every frame needs at least a header, so the count is bounded by the input. */
	if (frames > size / FRAME_HDR_LEN)
		abort();
	frame_decoder_free(&d);
	return 0;
}
