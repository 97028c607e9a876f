/*
 * live.c - the output of a running task as it comes (see exec.h,
 * exec_live). Each stream keeps a window of its last EXEC_LIVE_KEEP bytes:
 * when an append would pass twice that, the older half is dropped, so the
 * copying stays amortised O(1) per byte.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "agent/exec/exec.h"

struct stream {
	struct buf b;  /* the bytes kept */
	uint64_t base; /* the stream offset of b.data[0] */
};

struct exec_live {
	pthread_mutex_t mu;
	struct stream s[2];
};

struct exec_live *exec_live_new(void)
{
	struct exec_live *l = xcalloc(1, sizeof *l);
	pthread_mutex_init(&l->mu, NULL);
	buf_init(&l->s[0].b);
	buf_init(&l->s[1].b);
	return l;
}

void exec_live_free(struct exec_live *l)
{
	if (!l)
		return;
	buf_free(&l->s[0].b);
	buf_free(&l->s[1].b);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

void exec_live_append(struct exec_live *l, int stream, const void *data, size_t len)
{
	if (!l || len == 0 || (stream != 0 && stream != 1))
		return;
	pthread_mutex_lock(&l->mu);
	struct stream *s = &l->s[stream];
	const uint8_t *p = data;
	if (len > EXEC_LIVE_KEEP) {
		/* Only the end of a long write is kept. */
		s->base += s->b.len + (len - EXEC_LIVE_KEEP);
		s->b.len = 0;
		p += len - EXEC_LIVE_KEEP;
		len = EXEC_LIVE_KEEP;
	} else if (s->b.len + len > 2 * EXEC_LIVE_KEEP) {
		size_t drop = s->b.len + len - EXEC_LIVE_KEEP;
		memmove(s->b.data, s->b.data + drop, s->b.len - drop);
		s->b.len -= drop;
		s->base += drop;
	}
	buf_append(&s->b, p, len);
	pthread_mutex_unlock(&l->mu);
}

size_t exec_live_read(struct exec_live *l, int stream, uint64_t from, void *dst, size_t max,
		      uint64_t *at, uint64_t *total)
{
	size_t n = 0;
	*at = from;
	*total = 0;
	if (!l || (stream != 0 && stream != 1))
		return 0;
	pthread_mutex_lock(&l->mu);
	const struct stream *s = &l->s[stream];
	uint64_t end = s->base + s->b.len;
	*total = end;
	uint64_t start = from < s->base ? s->base : from > end ? end : from;
	*at = start;
	n = end - start < max ? (size_t)(end - start) : max;
	if (n)
		memcpy(dst, s->b.data + (start - s->base), n);
	pthread_mutex_unlock(&l->mu);
	return n;
}
