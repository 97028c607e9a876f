/* fuzz_core.c - the small text parsers in src/core. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	uint64_t v;
	int64_t t;
	char host[256];
	uint16_t port;
	uint8_t out[32];
	(void)parse_size(s, &v);
	(void)parse_duration_ms(s, &v);
	(void)addr_split(s, host, sizeof host, &port);
	(void)time_parse_rfc3339(s, &t);
	(void)hex_decode(s, out, size / 2 < sizeof out ? size / 2 : sizeof out);
	(void)ident_valid(s);
	(void)label_value_valid(s);
	free(s);
	return 0;
}
