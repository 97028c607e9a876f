/* fuzz_msg.c - every message decoder; a decoded message must re-pack and decode again. */
#include <stdint.h>
#include <stdlib.h>

#include "net/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint16_t type = data[0] % (MSG_TYPE_MAX + 3); /* includes 0 and unknown types */
	ProtobufCMessage *m;
	const char *why;
	if (msg_decode(type, data + 1, size - 1, &m, &why) != 0)
		return 0;
	size_t len;
	uint8_t *packed = msg_pack(m, &len);
	ProtobufCMessage *again;
	if (msg_decode(type, packed, len, &again, &why) != 0)
		abort(); /* a valid message must survive a round trip */
	msg_free(again);
	free(packed);
	msg_free(m);
	return 0;
}
