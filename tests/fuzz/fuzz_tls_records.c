/*
 * fuzz_tls_records.c - the offloaded TLS 1.3 record parser. Mode 0 feeds raw
 * bytes; mode 1 turns the input into validly sealed records (fuzzer-chosen
 * inner types, lengths and padding), split at fuzzer-chosen points, so the
 * decryption, padding and content-type logic is reached.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/core.h"
#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct tls *srv = tls_fuzz_offloaded(false);
	struct buf wire, plain;
	buf_init(&wire);
	buf_init(&plain);
	if (data[0] & 1) {
		struct tls *peer = tls_fuzz_offloaded(true);
		size_t off = 1;
		while (off + 3 <= size) {
			uint8_t ct = data[off];
			size_t len = data[off + 1] % 64;
			size_t pad = data[off + 2] % 8;
			off += 3;
			if (len > size - off)
				len = size - off;
			tls_fuzz_seal(peer, ct, data + off, len, pad);
			off += len;
		}
		tls_take_out(peer, &wire);
		tls_free(peer);
	} else {
		buf_append(&wire, data + 1, size - 1);
	}
	/* Feed in two parts to exercise partial records. */
	size_t cut = wire.len ? data[1] % (wire.len + 1) : 0;
	tls_feed(srv, wire.data, cut);
	int rc = tls_read(srv, &plain);
	if (rc == 0) {
		tls_feed(srv, wire.data + cut, wire.len - cut);
		(void)tls_read(srv, &plain);
	}
	buf_free(&wire);
	buf_free(&plain);
	tls_free(srv);
	return 0;
}
