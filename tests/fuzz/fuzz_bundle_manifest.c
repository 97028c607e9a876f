/*
 * fuzz_bundle_manifest.c - the task manifest (spec JSON) parser and the
 * canonical bundle listing checker. An input whose first byte is 'L' goes to
 * the listing checker, anything else to the manifest parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/exec/exec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'L') {
		size_t n = 0;
		exec_bundle_listing_check((const char *)data + 1, size - 1, &n);
		return 0;
	}
	struct exec_spec spec;
	char why[256];
	if (exec_spec_parse((const char *)data, size, &spec, why, sizeof(why)) == 0) {
		/* A parsed spec must be internally consistent. */
		if (!spec.argv || spec.argc < 1 || spec.argv[spec.argc] != NULL)
			abort();
		for (size_t i = 0; i < spec.n_outputs; i++)
			if (!exec_relpath_valid(spec.outputs[i]))
				abort();
		for (size_t i = 0; i < spec.n_inputs; i++)
			if (!exec_name_valid(spec.inputs[i].name))
				abort();
		exec_spec_validate(&spec, why, sizeof(why));
	}
	exec_spec_free(&spec);
	return 0;
}
