/* fuzz_registry_json.c - node records read back from the store (node_from_json). */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "manager/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	if (!j)
		return 0;
	struct registry *r = registry_new();
	struct node *n = registry_upsert(r, "fuzz");
	if (node_from_json(n, j) == 0) {
		json_t *back = node_to_json(n, true, 0, 0);
		json_decref(back);
	}
	registry_free(r);
	json_decref(j);
	return 0;
}
