/*
 * fuzz_jobspec.c - job spec parsing, with and without local "file" inputs. A
 * spec that parses must be self-consistent (topological order, sorted unique
 * dependencies, findable names, final flags) and parse the same way twice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manager/jobspec.h"

static void check(const struct jobspec *js)
{
	bool *has_dependant = calloc(js->n_tasks ? js->n_tasks : 1, sizeof *has_dependant);
	if (!has_dependant)
		abort();
	for (size_t i = 0; i < js->n_tasks; i++) {
		const struct jobspec_task *t = &js->tasks[i];
		if (jobspec_find(js, t->name) != (int32_t)i || t->argc < 1 || t->argv[t->argc] ||
		    t->env[t->envc] || t->group >= js->n_groups)
			abort();
		for (size_t k = 0; k < t->n_deps; k++) {
			if (t->deps[k] >= i || (k && t->deps[k - 1] >= t->deps[k]))
				abort();
			has_dependant[t->deps[k]] = true;
		}
		for (size_t k = 0; k < t->n_inputs; k++)
			if (t->inputs[k].kind == JOBSPEC_IN_OUTPUT &&
			    (t->inputs[k].task >= i || !t->inputs[k].output))
				abort();
	}
	for (size_t i = 0; i < js->n_tasks; i++)
		if (js->tasks[i].final == has_dependant[i])
			abort();
	free(has_dependant);
	for (size_t g = 0; g < js->n_groups; g++)
		if (js->groups[g].count == 0 || js->groups[g].first + js->groups[g].count > js->n_tasks)
			abort();
	char why[256];
	struct jobspec_limits lim = {.cpu_millicores = 2000, .memory_bytes = 1ull << 30, .disk_bytes = 1ull << 30};
	(void)jobspec_check_fits(js, &lim, why, sizeof why);
	(void)jobspec_find(js, "a[0]");
	(void)jobspec_find(js, "a[01]");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (unsigned flags = 0; flags <= JOBSPEC_ALLOW_FILES; flags++) {
		struct jobspec *js = NULL, *again = NULL;
		char why[512];
		int rc = jobspec_parse((const char *)data, size, flags, &js, why, sizeof why);
		if (rc != 0) {
			if (js || !why[0])
				abort(); /* a failure leaves nothing behind and says why */
			continue;
		}
		check(js);
		if (jobspec_parse((const char *)data, size, flags, &again, why, sizeof why) != 0 ||
		    again->n_tasks != js->n_tasks)
			abort();
		jobspec_free(again);
		jobspec_free(js);
	}
	return 0;
}
