/* fuzz_frame.c - the frame decoder fed in fuzzer-chosen chunks; each frame goes to msg_decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/frame.h"
#include "net/msg.h"

static int on_frame(void *arg, uint16_t type, const uint8_t *payload, uint32_t len)
{
	(void)arg;
	ProtobufCMessage *m;
	const char *why;
	if (msg_decode(type, payload, len, &m, &why) == 0)
		msg_free(m);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* The first byte picks the chunk size, so split frames are exercised. */
	size_t chunk = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	struct frame_decoder d;
	frame_decoder_init(&d, 4096);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (frame_decoder_feed(&d, data + off, n, on_frame, NULL) != 0)
			break;
	}
	frame_decoder_free(&d);
	return 0;
}
