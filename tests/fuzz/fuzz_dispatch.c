/*
 * fuzz_dispatch.c - hostile dispatches of a parameterized job, as
 * POST /v1/jobs/{id}/dispatch carries them. Input: the request body. The
 * job takes one required and one optional key and an optional payload; an
 * accepted dispatch must name the required key and only known keys.
 */
#include <stdlib.h>
#include <string.h>

#include "manager/jobspec.h"

static struct jobspec *js;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[512];
	if (!js) {
		static const char spec[] = "{\"name\":\"p\",\"parameterized\":{\"meta_required\":[\"who\"],"
					   "\"meta_optional\":[\"mood\"]},\"tasks\":[{\"name\":\"a\",\"command\":[\"x\"]}]}";
		if (jobspec_parse(spec, sizeof spec - 1, 0, &js, why, sizeof why) != 0)
			abort();
	}
	json_t *meta = NULL;
	bool has_payload;
	uint8_t payload[SHA256_LEN];
	int rc = jobspec_dispatch_parse(js, (const char *)data, size, &meta, &has_payload, payload, why,
					sizeof why);
	if (rc) {
		if (meta || !why[0])
			abort(); /* a refusal keeps nothing and says why */
		return 0;
	}
	const char *k;
	json_t *v;
	if (!json_is_string(json_object_get(meta, "who")) || json_object_size(meta) > 2)
		abort();
	json_object_foreach(meta, k, v)
	{
		if ((strcmp(k, "who") != 0 && strcmp(k, "mood") != 0) || !json_is_string(v) ||
		    json_string_length(v) > JOBSPEC_META_VALUE_MAX)
			abort();
	}
	json_decref(meta);
	return 0;
}
