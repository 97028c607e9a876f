/* test_frame.c - unit tests for the streaming frame decoder (src/net/frame.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "net/frame.h"

#define MAX_SEEN 16

/* What the callback saw, and what it should return for the k-th frame. */
struct seen {
	size_t count;
	uint16_t types[MAX_SEEN];
	uint32_t lens[MAX_SEEN];
	uint8_t payloads[MAX_SEEN][64];
	size_t stop_at;  /* 1-based frame index at which to return stop_rc; 0 never */
	int stop_rc;
};

static int on_frame(void *arg, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct seen *s = arg;
	assert_true(s->count < MAX_SEEN);
	assert_true(len <= sizeof s->payloads[0]);
	s->types[s->count] = type;
	s->lens[s->count] = len;
	if (len)
		memcpy(s->payloads[s->count], payload, len);
	s->count++;
	if (s->stop_at && s->count == s->stop_at)
		return s->stop_rc;
	return 0;
}

/* Appends one frame with the given type and payload to b. */
static void put_frame(struct buf *b, uint16_t type, const void *payload, uint32_t len)
{
	uint8_t hdr[FRAME_HDR_LEN];
	frame_header(hdr, type, len);
	buf_append(b, hdr, sizeof hdr);
	buf_append(b, payload, len);
}

static void test_header_layout(void **state)
{
	(void)state;
	uint8_t h[FRAME_HDR_LEN];
	frame_header(h, 0x0102, 0x0a0b0c0d);
	const uint8_t want[FRAME_HDR_LEN] = {0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0x02, 0, 0};
	assert_memory_equal(h, want, sizeof want);
}

static void test_several_frames_one_feed(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct buf b;
	struct seen s = {0};
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	buf_init(&b);
	put_frame(&b, 1, "hello", 5);
	put_frame(&b, 6, "", 0);
	put_frame(&b, 3, "evidence!", 9);
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len, on_frame, &s), 0);
	assert_int_equal(s.count, 3);
	assert_int_equal(s.types[0], 1);
	assert_int_equal(s.lens[0], 5);
	assert_memory_equal(s.payloads[0], "hello", 5);
	assert_int_equal(s.types[1], 6);
	assert_int_equal(s.lens[1], 0);
	assert_int_equal(s.types[2], 3);
	assert_int_equal(s.lens[2], 9);
	assert_memory_equal(s.payloads[2], "evidence!", 9);
	assert_int_equal(frame_decoder_pending(&d), 0);
	buf_free(&b);
	frame_decoder_free(&d);
}

static void test_split_byte_by_byte(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct buf b;
	struct seen s = {0};
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	buf_init(&b);
	put_frame(&b, 2, "abcdefgh", 8);
	put_frame(&b, 7, "xy", 2);
	size_t first_end = FRAME_HDR_LEN + 8;
	for (size_t i = 0; i < b.len; i++) {
		assert_int_equal(frame_decoder_feed(&d, b.data + i, 1, on_frame, &s), 0);
		if (i + 1 < first_end) {
			assert_int_equal(s.count, 0);
			assert_int_equal(frame_decoder_pending(&d), i + 1);
		} else if (i + 1 == first_end) {
			assert_int_equal(s.count, 1);
			assert_int_equal(frame_decoder_pending(&d), 0);
		}
	}
	assert_int_equal(s.count, 2);
	assert_memory_equal(s.payloads[0], "abcdefgh", 8);
	assert_int_equal(s.types[1], 7);
	assert_memory_equal(s.payloads[1], "xy", 2);
	assert_int_equal(frame_decoder_pending(&d), 0);
	buf_free(&b);
	frame_decoder_free(&d);
}

static void test_oversize_sticky(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct seen s = {0};
	uint8_t h[FRAME_HDR_LEN];
	frame_decoder_init(&d, 16);

	/* Exactly the bound is accepted. */
	struct buf b;
	buf_init(&b);
	put_frame(&b, 1, "0123456789abcdef", 16);
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len, on_frame, &s), 0);
	assert_int_equal(s.count, 1);

	/* One more byte is refused from the header alone, before any payload. */
	frame_header(h, 1, 17);
	assert_int_equal(frame_decoder_feed(&d, h, sizeof h, on_frame, &s), SS_ETOOBIG);
	assert_int_equal(s.count, 1);
	/* Sticky: even a valid frame is refused afterwards. */
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len, on_frame, &s), SS_ETOOBIG);
	assert_int_equal(s.count, 1);
	buf_free(&b);
	frame_decoder_free(&d);

	/* A huge length arriving in pieces is caught once the header is complete. */
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	frame_header(h, 1, 0xffffffffu);
	assert_int_equal(frame_decoder_feed(&d, h, 5, on_frame, &s), 0);
	assert_int_equal(frame_decoder_feed(&d, h + 5, 3, on_frame, &s), SS_ETOOBIG);
	assert_int_equal(frame_decoder_feed(&d, h, 1, on_frame, &s), SS_ETOOBIG);
	frame_decoder_free(&d);
}

static void test_reserved_nonzero(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct seen s = {0};
	struct buf b;
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	buf_init(&b);
	put_frame(&b, 1, "ok", 2);
	size_t bad_at = b.len;
	put_frame(&b, 1, "no", 2);
	b.data[bad_at + 7] = 1; /* low byte of the reserved field */
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len, on_frame, &s), SS_EPROTO);
	/* The frame before the bad one was delivered, the bad one was not. */
	assert_int_equal(s.count, 1);
	assert_memory_equal(s.payloads[0], "ok", 2);
	assert_int_equal(frame_decoder_feed(&d, b.data, bad_at, on_frame, &s), SS_EPROTO);
	assert_int_equal(s.count, 1);
	buf_free(&b);
	frame_decoder_free(&d);
}

static void test_pending_truncated(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct seen s = {0};
	struct buf b;
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	buf_init(&b);
	put_frame(&b, 4, "complete", 8);
	size_t first = b.len;
	put_frame(&b, 5, "truncated-payload", 17);
	/* Feed everything but the last 4 bytes: one frame out, the rest pending. */
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len - 4, on_frame, &s), 0);
	assert_int_equal(s.count, 1);
	assert_int_equal(frame_decoder_pending(&d), b.len - 4 - first);
	/* Completing it delivers the second frame. */
	assert_int_equal(frame_decoder_feed(&d, b.data + b.len - 4, 4, on_frame, &s), 0);
	assert_int_equal(s.count, 2);
	assert_int_equal(s.lens[1], 17);
	assert_memory_equal(s.payloads[1], "truncated-payload", 17);
	assert_int_equal(frame_decoder_pending(&d), 0);

	/* A lone partial header is pending too. */
	assert_int_equal(frame_decoder_feed(&d, b.data, 3, on_frame, &s), 0);
	assert_int_equal(frame_decoder_pending(&d), 3);
	buf_free(&b);
	frame_decoder_free(&d);
}

static void test_callback_stops(void **state)
{
	(void)state;
	struct frame_decoder d;
	struct seen s = {.stop_at = 2, .stop_rc = 42};
	struct buf b;
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	buf_init(&b);
	put_frame(&b, 1, "a", 1);
	put_frame(&b, 1, "b", 1);
	put_frame(&b, 1, "c", 1);
	assert_int_equal(frame_decoder_feed(&d, b.data, b.len, on_frame, &s), 42);
	assert_int_equal(s.count, 2);
	assert_memory_equal(s.payloads[1], "b", 1);
	/* The third frame was not delivered, and the callback's code is not sticky. */
	s.stop_at = 0;
	assert_int_equal(frame_decoder_feed(&d, b.data, 3, on_frame, &s), 0);
	assert_int_equal(s.count, 2);

	/* The same holds when the stop happens while bytes are buffered. */
	struct frame_decoder d2;
	struct seen s2 = {.stop_at = 1, .stop_rc = -7};
	frame_decoder_init(&d2, FRAME_MAX_DEFAULT);
	assert_int_equal(frame_decoder_feed(&d2, b.data, 2, on_frame, &s2), 0);
	assert_int_equal(frame_decoder_feed(&d2, b.data + 2, b.len - 2, on_frame, &s2), -7);
	assert_int_equal(s2.count, 1);
	assert_memory_equal(s2.payloads[0], "a", 1);
	frame_decoder_free(&d2);
	buf_free(&b);
	frame_decoder_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_several_frames_one_feed),
		cmocka_unit_test(test_split_byte_by_byte),
		cmocka_unit_test(test_oversize_sticky),
		cmocka_unit_test(test_reserved_nonzero),
		cmocka_unit_test(test_pending_truncated),
		cmocka_unit_test(test_callback_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
