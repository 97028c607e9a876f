/* fuzz_sysinfo.c - the /proc/cpuinfo flags parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sysinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	char **f = NULL;
	size_t n = 0;
	if (sysinfo_parse_cpuinfo(s, &f, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			free(f[i]);
		free(f);
	}
	free(s);
	return 0;
}
