/* fuzz_client_http.c - the client library's HTTP response parser (input from the network). */
#include <stdint.h>
#include <stdlib.h>

#include "client/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int status;
	char *body = NULL;
	size_t body_len;
	if (client_http_parse((const char *)data, size, &status, &body, &body_len) == 0)
		free(body);
	return 0;
}
