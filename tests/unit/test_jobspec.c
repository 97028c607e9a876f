/* test_jobspec.c - job specs: fields, defaults, map expansion, dependencies, errors and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "manager/jobspec.h"

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "3333333333333333333333333333333333333333333333333333333333333333"

/* Specs are written with single quotes; this turns them into JSON. */
static char *q(const char *s)
{
	char *j = xstrdup(s);
	for (char *c = j; *c; c++)
		if (*c == '\'')
			*c = '"';
	return j;
}

static int parse(const char *spec, unsigned flags, struct jobspec **js, char *why, size_t whylen)
{
	char *j = q(spec);
	int rc = jobspec_parse(j, strlen(j), flags, js, why, whylen);
	free(j);
	return rc;
}

static struct jobspec *parse_ok(const char *spec, unsigned flags)
{
	char why[1024];
	struct jobspec *js = NULL;
	int rc = parse(spec, flags, &js, why, sizeof why);
	if (rc)
		print_error("unexpected error %d: %s\n", rc, why);
	assert_int_equal(rc, 0);
	assert_non_null(js);
	return js;
}

/* Expects the spec to fail with rc and, when want is set, exactly that message. */
static void parse_err(const char *spec, unsigned flags, int want_rc, const char *want)
{
	char why[1024];
	struct jobspec *js = (struct jobspec *)1;
	int rc = parse(spec, flags, &js, why, sizeof why);
	if (rc != want_rc)
		print_error("rc %d, want %d: %s\n", rc, want_rc, why);
	assert_int_equal(rc, want_rc);
	assert_null(js);
	if (want)
		assert_string_equal(why, want);
}

/* Expects the spec to fail with rc and a message starting with prefix. */
static void parse_err_prefix(const char *spec, unsigned flags, int want_rc, const char *prefix)
{
	char why[1024];
	struct jobspec *js = NULL;
	int rc = parse(spec, flags, &js, why, sizeof why);
	if (rc != want_rc || strncmp(why, prefix, strlen(prefix)) != 0)
		print_error("rc %d (want %d): \"%s\", want a message starting \"%s\"\n", rc, want_rc, why,
			    prefix);
	assert_int_equal(rc, want_rc);
	assert_true(strncmp(why, prefix, strlen(prefix)) == 0);
}

static const char *env_get(const struct jobspec_task *t, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < t->envc; i++)
		if (!strncmp(t->env[i], key, kl) && t->env[i][kl] == '=')
			return t->env[i] + kl + 1;
	return NULL;
}

static const struct jobspec_task *task(const struct jobspec *js, const char *name)
{
	int32_t i = jobspec_find(js, name);
	if (i < 0)
		print_error("no task %s\n", name);
	assert_true(i >= 0);
	return &js->tasks[i];
}

/* ---- fields and defaults ----------------------------------------------------------- */

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['/bin/true']}]}", 0);
	assert_string_equal(js->name, "j");
	assert_string_equal(js->tenant, "default");
	assert_true(js->fail_fast);
	assert_int_equal(js->policy.n_tee, 0);
	assert_false(js->policy.hardware);
	assert_int_equal(js->policy.n_code, 0);
	assert_int_equal(js->policy.optimize, JOBSPEC_OPT_BALANCED);
	assert_int_equal(js->policy.placement, JOBSPEC_BINPACK);
	assert_int_equal(js->n_groups, 1);
	assert_int_equal(js->n_tasks, 1);
	const struct jobspec_task *t = &js->tasks[0];
	assert_string_equal(t->name, "a");
	assert_int_equal(t->group, 0);
	assert_int_equal(t->map_index, -1);
	assert_int_equal(t->argc, 1);
	assert_string_equal(t->argv[0], "/bin/true");
	assert_null(t->argv[1]);
	assert_int_equal(t->envc, 0);
	assert_non_null(t->env);
	assert_null(t->env[0]);
	assert_int_equal(t->n_inputs, 0);
	assert_int_equal(t->n_outputs, 0);
	assert_int_equal(t->res.cpu_millicores, 1000);
	assert_int_equal(t->res.memory_bytes, 256ull << 20);
	assert_int_equal(t->res.disk_bytes, 64ull << 20);
	assert_int_equal(t->res.output_bytes, 64ull << 20);
	assert_int_equal(t->res.pids, 64);
	assert_int_equal(t->res.timeout_ms, 60000);
	assert_int_equal(t->res.kill_grace_ms, 0);
	assert_int_equal(t->retries, 2);
	assert_int_equal(t->backoff_ms, 1000);
	assert_int_equal(t->priority, 0);
	assert_int_equal(t->n_deps, 0);
	assert_true(t->final);
	assert_string_equal(jobspec_optimize_name(JOBSPEC_OPT_LATENCY), "latency");
	jobspec_free(js);
}

static void test_every_field(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'full.job','tenant':'team-a','on_failure':'continue',"
		" 'policy':{'tee':['sev-snp','tdx'],'attestation':'hardware','code':['" D1 "','" D2 "'],"
		"  'labels':{'zone':'b','region':'eu'},'features':['avx2'],'optimize':'cost','placement':'spread'},"
		" 'tasks':[{'name':'prep','command':['/bin/sh','-c','echo'],'env':{'B':'2','A_1':'x=y'},"
		"  'inputs':[{'name':'data','blob':'" D3 "','size':123}],"
		"  'outputs':['result.txt','sub/dir/x'],"
		"  'resources':{'cpu':'250m','memory':'1G','disk':'128M','output':65536,'pids':10},"
		"  'timeout':'90s','retries':{'count':5,'backoff':'3s'},'priority':-7},"
		" {'name':'post','command':['x'],'after':['prep'],'timeout':2,'retries':0,'priority':1000,'kill_grace':'15s',"
		"  'resources':{'cpu':2}}]}",
		0);
	assert_string_equal(js->name, "full.job");
	assert_string_equal(js->tenant, "team-a");
	assert_false(js->fail_fast);
	assert_int_equal(js->policy.n_tee, 2);
	assert_string_equal(js->policy.tee[0], "sev-snp");
	assert_string_equal(js->policy.tee[1], "tdx");
	assert_true(js->policy.hardware);
	assert_int_equal(js->policy.n_code, 2);
	assert_int_equal(js->policy.code[0][0], 0x11);
	assert_int_equal(js->policy.code[1][31], 0x22);
	assert_int_equal(js->policy.n_labels, 2);
	assert_string_equal(js->policy.labels[0].key, "region"); /* sorted by key */
	assert_string_equal(js->policy.labels[0].value, "eu");
	assert_string_equal(js->policy.labels[1].key, "zone");
	assert_int_equal(js->policy.n_features, 1);
	assert_string_equal(js->policy.features[0], "avx2");
	assert_int_equal(js->policy.optimize, JOBSPEC_OPT_COST);
	assert_int_equal(js->policy.placement, JOBSPEC_SPREAD);
	assert_int_equal(js->n_tasks, 2);

	const struct jobspec_task *t = task(js, "prep");
	assert_int_equal(t->argc, 3);
	assert_int_equal(t->envc, 2);
	assert_string_equal(t->env[0], "A_1=x=y"); /* sorted by key */
	assert_string_equal(t->env[1], "B=2");
	assert_null(t->env[2]);
	assert_int_equal(t->n_inputs, 1);
	assert_string_equal(t->inputs[0].name, "data");
	assert_int_equal(t->inputs[0].kind, JOBSPEC_IN_BLOB);
	assert_int_equal(t->inputs[0].digest[0], 0x33);
	assert_int_equal(t->inputs[0].size, 123);
	assert_int_equal(t->n_outputs, 2);
	assert_string_equal(t->outputs[1], "sub/dir/x");
	assert_int_equal(t->res.cpu_millicores, 250);
	assert_int_equal(t->res.memory_bytes, 1ull << 30);
	assert_int_equal(t->res.disk_bytes, 128ull << 20);
	assert_int_equal(t->res.output_bytes, 65536);
	assert_int_equal(t->res.pids, 10);
	assert_int_equal(t->res.timeout_ms, 90000);
	assert_int_equal(t->retries, 5);
	assert_int_equal(t->backoff_ms, 3000);
	assert_int_equal(t->priority, -7);
	assert_false(t->final);

	t = task(js, "post");
	assert_int_equal(t->res.timeout_ms, 2000);
	assert_int_equal(t->res.kill_grace_ms, 15000);
	assert_int_equal(t->res.cpu_millicores, 2000);
	assert_int_equal(t->retries, 0);
	assert_int_equal(t->priority, 1000);
	assert_int_equal(t->n_deps, 1);
	assert_int_equal(t->deps[0], jobspec_find(js, "prep"));
	assert_true(t->final);
	jobspec_free(js);
}

static void test_values(void **state)
{
	(void)state;
	static const struct {
		const char *res;
		uint32_t cpu;
		uint64_t mem;
	} cases[] = {
		{"'cpu':0.5", 500, 256ull << 20},      {"'cpu':'0.25'", 250, 256ull << 20},
		{"'cpu':'3'", 3000, 256ull << 20},     {"'cpu':'1500m'", 1500, 256ull << 20},
		{"'cpu':1024", 1024000, 256ull << 20}, {"'memory':'512M'", 1000, 512ull << 20},
		{"'memory':'2GiB'", 1000, 2ull << 30}, {"'memory':8388608", 1000, 8ull << 20},
		{"'memory':'1T'", 1000, 1ull << 40},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *s = xasprintf("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{%s}}]}",
				    cases[i].res);
		struct jobspec *js = parse_ok(s, 0);
		assert_int_equal(js->tasks[0].res.cpu_millicores, cases[i].cpu);
		assert_int_equal(js->tasks[0].res.memory_bytes, cases[i].mem);
		jobspec_free(js);
		free(s);
	}
	static const struct {
		const char *timeout;
		uint64_t ms;
	} durations[] = {{"'500ms'", 500}, {"'2m'", 120000}, {"'1h'", 3600000}, {"30", 30000},
			 {"1.5", 1500},    {"'45'", 45000}, {"'168h'", 7ull * 24 * 3600 * 1000}};
	for (size_t i = 0; i < ARRAY_LEN(durations); i++) {
		char *s = xasprintf("{'name':'j','tasks':[{'name':'a','command':['x'],'timeout':%s}]}",
				    durations[i].timeout);
		struct jobspec *js = parse_ok(s, 0);
		assert_int_equal(js->tasks[0].res.timeout_ms, durations[i].ms);
		jobspec_free(js);
		free(s);
	}
}

/* ---- map ---------------------------------------------------------------------------- */

static void test_map_over_list(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':[{'name':'m','command':['/bin/echo','{item}','#{index}','{items}','{x}'],"
		" 'env':{'WORD':'w-{item}-{index}','PLAIN':'{'},'map':{'over':['alpha','beta',7]}}]}",
		0);
	assert_int_equal(js->n_groups, 1);
	assert_int_equal(js->groups[0].count, 3);
	assert_int_equal(js->groups[0].first, 0);
	assert_string_equal(js->groups[0].name, "m");
	assert_int_equal(js->n_tasks, 3);
	const struct jobspec_task *t = &js->tasks[1];
	assert_string_equal(t->name, "m[1]");
	assert_int_equal(t->map_index, 1);
	assert_string_equal(t->argv[1], "beta");
	assert_string_equal(t->argv[2], "#1");
	assert_string_equal(t->argv[3], "{items}");
	assert_string_equal(t->argv[4], "{x}");
	assert_int_equal(t->envc, 4);
	assert_string_equal(env_get(t, "WORD"), "w-beta-1");
	assert_string_equal(env_get(t, "PLAIN"), "{");
	assert_string_equal(env_get(t, "SS_MAP_INDEX"), "1");
	assert_string_equal(env_get(t, "SS_MAP_ITEM"), "beta");
	assert_string_equal(js->tasks[2].argv[1], "7");
	assert_true(js->tasks[0].final && js->tasks[1].final && js->tasks[2].final);
	jobspec_free(js);

	/* "as" renames the placeholder; {item} is then left alone. */
	js = parse_ok("{'name':'j','tasks':[{'name':'m','command':['{w}','{item}'],"
		      "'map':{'over':['a','b'],'as':'w'}}]}",
		      0);
	assert_string_equal(js->tasks[1].argv[0], "b");
	assert_string_equal(js->tasks[1].argv[1], "{item}");
	assert_string_equal(env_get(&js->tasks[1], "SS_MAP_ITEM"), "b");
	jobspec_free(js);

	/* An unmapped task keeps its braces. */
	js = parse_ok("{'name':'j','tasks':[{'name':'u','command':['{item}','{index}']}]}", 0);
	assert_string_equal(js->tasks[0].argv[0], "{item}");
	assert_int_equal(js->tasks[0].envc, 0);
	jobspec_free(js);
}

static void test_map_over_input(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':[{'name':'c','command':['wc','/in/parts'],"
		" 'inputs':[{'name':'cfg','blob':'" D1 "'},"
		"  {'name':'parts','blobs':[{'digest':'" D2 "','size':5},{'digest':'" D3 "'}]},"
		"  {'name':'extra','blobs':[{'digest':'" D1 "'},{'digest':'" D2 "'}]}],"
		" 'map':{'input':'parts'}}]}",
		0);
	assert_int_equal(js->n_tasks, 2);
	const struct jobspec_task *t = task(js, "c[1]");
	assert_int_equal(t->n_inputs, 4);
	assert_string_equal(t->inputs[0].name, "cfg");
	assert_string_equal(t->inputs[1].name, "parts");
	assert_int_equal(t->inputs[1].digest[0], 0x33);
	assert_string_equal(t->inputs[2].name, "extra.0");
	assert_string_equal(t->inputs[3].name, "extra.1");
	assert_string_equal(env_get(t, "SS_MAP_ITEM"), D3);
	t = task(js, "c[0]");
	assert_int_equal(t->inputs[1].digest[0], 0x22);
	assert_int_equal(t->inputs[1].size, 5);
	jobspec_free(js);

	parse_err("{'name':'j','tasks':[{'name':'c','command':['x'],'inputs':[{'name':'a','blob':'" D1 "'}],"
		  "'map':{'input':'a'}}]}",
		  0, SS_EINVAL, "tasks[0].map.input: input \"a\" is not a list (give it \"blobs\")");
	parse_err("{'name':'j','tasks':[{'name':'c','command':['x'],'map':{'input':'zz'}}]}", 0, SS_EINVAL,
		  "tasks[0].map.input: the task has no input named \"zz\"");
}

static void test_map_over_task(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':["
		" {'name':'post','command':['p','{item}'],'map':{'task':'split'},'outputs':['r']},"
		" {'name':'split','command':['s'],'map':{'over':['x','y','z']},'outputs':['out/a.txt','b']}]}",
		0);
	assert_int_equal(js->n_tasks, 6);
	/* split comes first although written second */
	assert_int_equal(js->groups[1].first, 0);
	assert_int_equal(js->groups[0].first, 3);
	const struct jobspec_task *t = task(js, "post[2]");
	assert_int_equal(t->n_deps, 1);
	assert_int_equal(t->deps[0], jobspec_find(js, "split[2]"));
	assert_string_equal(t->argv[1], "2");
	assert_string_equal(env_get(t, "SS_MAP_ITEM"), "2");
	assert_int_equal(t->n_inputs, 2);
	assert_string_equal(t->inputs[0].name, "a.txt");
	assert_int_equal(t->inputs[0].kind, JOBSPEC_IN_OUTPUT);
	assert_int_equal(t->inputs[0].task, jobspec_find(js, "split[2]"));
	assert_string_equal(t->inputs[0].output, "out/a.txt");
	assert_string_equal(t->inputs[1].name, "b");
	for (size_t i = 0; i < 3; i++)
		assert_false(js->tasks[i].final);
	for (size_t i = 3; i < 6; i++)
		assert_true(js->tasks[i].final);
	jobspec_free(js);

	/* Over a single task: one instance. */
	js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['a'],'outputs':['o']},"
		      "{'name':'b','command':['b'],'map':{'task':'a'}}]}",
		      0);
	assert_int_equal(js->n_tasks, 2);
	assert_string_equal(js->tasks[1].name, "b[0]");
	assert_string_equal(js->tasks[1].inputs[0].name, "o");
	jobspec_free(js);

	/* The added inputs may not collide with declared ones. */
	parse_err_prefix("{'name':'j','tasks':[{'name':'a','command':['a'],'outputs':['o']},"
			 "{'name':'b','command':['b'],'map':{'task':'a'},'inputs':[{'name':'o','blob':'" D1 "'}]}]}",
			 0, SS_EINVAL, "tasks[1].inputs: two inputs are named \"o\"");
}

static void test_fan_in_naming(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':["
		" {'name':'count','command':['c'],'map':{'over':['a','b','c','d']},'outputs':['n']},"
		" {'name':'wide','command':['w'],'map':{'over':[0,1,2,3,4,5,6,7,8,9,10,11]},'outputs':['n']},"
		" {'name':'one','command':['o'],'outputs':['sub/v']},"
		" {'name':'total','command':['t'],'inputs':[{'name':'counts','from':'count.n'},"
		"  {'name':'w','from':'wide.n'},{'name':'v','from':'one.sub/v'}]}]}",
		0);
	const struct jobspec_task *t = task(js, "total");
	assert_int_equal(t->n_inputs, 4 + 12 + 1);
	assert_string_equal(t->inputs[0].name, "counts.0");
	assert_string_equal(t->inputs[3].name, "counts.3");
	assert_int_equal(t->inputs[3].task, jobspec_find(js, "count[3]"));
	assert_string_equal(t->inputs[3].output, "n");
	assert_string_equal(t->inputs[4].name, "w.00");
	assert_string_equal(t->inputs[15].name, "w.11");
	assert_string_equal(t->inputs[16].name, "v");
	assert_string_equal(t->inputs[16].output, "sub/v");
	assert_int_equal(t->n_deps, 17);
	assert_true(t->final);
	jobspec_free(js);

	/* A blobs list without map becomes NAME.INDEX inputs. */
	js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['a'],'inputs':[{'name':'p','blobs':["
		      "{'digest':'" D1 "'},{'digest':'" D2 "'}]}]}]}",
		      0);
	assert_int_equal(js->tasks[0].n_inputs, 2);
	assert_string_equal(js->tasks[0].inputs[1].name, "p.1");
	assert_int_equal(js->tasks[0].inputs[1].digest[0], 0x22);
	jobspec_free(js);
}

static void test_fan_in_4096(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"big\",\"tasks\":[{\"name\":\"red\",\"command\":[\"r\"],"
		       "\"inputs\":[{\"name\":\"p\",\"from\":\"map.o\"}]},"
		       "{\"name\":\"map\",\"command\":[\"m\"],\"outputs\":[\"o\"],\"map\":{\"over\":[");
	for (int i = 0; i < JOBSPEC_MAX_MAP; i++)
		buf_printf(&b, "%s%d", i ? "," : "", i);
	buf_printf(&b, "]}}]}");
	struct jobspec *js = NULL;
	char why[512];
	assert_int_equal(jobspec_parse((char *)b.data, b.len, 0, &js, why, sizeof why), 0);
	assert_int_equal(js->n_tasks, JOBSPEC_MAX_MAP + 1);
	const struct jobspec_task *t = &js->tasks[JOBSPEC_MAX_MAP];
	assert_string_equal(t->name, "red");
	assert_int_equal(t->n_deps, JOBSPEC_MAX_DEPS);
	assert_int_equal(t->n_inputs, JOBSPEC_MAX_MAP);
	assert_string_equal(t->inputs[0].name, "p.0000");
	assert_string_equal(t->inputs[4095].name, "p.4095");
	jobspec_free(js);
	buf_free(&b);
}

static void test_input_forms(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','from':'b.o','size':3}]}]}",
		  0, SS_EPARSE, "tasks[0].inputs[0].size: only allowed with blob");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blobs':[]}]}]}", 0,
		  SS_EINVAL, "tasks[0].inputs[0].blobs: must not be empty");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blobs':[{'size':1}]}]}]}",
		  0, SS_EPARSE, "tasks[0].inputs[0].blobs[0].digest: required");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blobs':[{'digest':'" D1 "','x':1}]}]}]}",
		  0, SS_EPARSE, "tasks[0].inputs[0].blobs[0].x: unknown field (known: digest, size)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blob':'" D1 "','size':-1}]}]}",
		  0, SS_EINVAL, "tasks[0].inputs[0].size: -1 is below the minimum of 0");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'..','blob':'" D1 "'}]}]}",
		  0, SS_EINVAL, "tasks[0].inputs[0].name: \"..\" is not a valid input name (A-Z a-z 0-9 . _ -, not . or ..)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'blob':'" D1 "'}]}]}", 0,
		  SS_EPARSE, "tasks[0].inputs[0].name: required (the file name under /in)");
	/* An upper-case digest is accepted and decoded. */
	struct jobspec *js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i',"
				      "'blob':'ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB'}]}]}",
				      0);
	assert_int_equal(js->tasks[0].inputs[0].digest[0], 0xab);
	assert_int_equal(js->tasks[0].inputs[0].size, 0);
	jobspec_free(js);
}

static void test_map_errors(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{}}]}", 0, SS_EPARSE,
		  "tasks[0].map: needs one of over, input or task");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{'over':['a'],'as':'index'}}]}", 0,
		  SS_EINVAL,
		  "tasks[0].map.as: \"index\" is not a placeholder name (1 to 32 of [A-Za-z_][A-Za-z0-9_]*, not \"index\")");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{'over':[true]}}]}", 0, SS_EPARSE,
		  "tasks[0].map.over[0]: expected a string or an integer");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{'over':['a'],'by':1}}]}", 0,
		  SS_EPARSE, "tasks[0].map.by: unknown field (known: over, input, task, as)");
	/* A mapped task leaves room for SS_MAP_INDEX and SS_MAP_ITEM. */
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"j\",\"tasks\":[{\"name\":\"a\",\"command\":[\"x\"],\"env\":{");
	for (int i = 0; i < 255; i++)
		buf_printf(&b, "%s\"V%d\":\"v\"", i ? "," : "", i);
	buf_printf(&b, "},\"map\":{\"over\":[1]}}]}");
	struct jobspec *js = NULL;
	char why[512];
	assert_int_equal(jobspec_parse((char *)b.data, b.len, 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks[0].env: a mapped task may have at most 254 variables (SS_MAP_INDEX and SS_MAP_ITEM are added)");
	buf_free(&b);
}

/* ---- dependencies ------------------------------------------------------------------------ */

static void test_topological_order(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':["
		" {'name':'d','command':['d'],'after':['b','c']},"
		" {'name':'c','command':['c'],'after':['a']},"
		" {'name':'b','command':['b'],'after':['a'],'map':{'over':['1','2']}},"
		" {'name':'a','command':['a']},"
		" {'name':'e','command':['e']}]}",
		0);
	/* Kahn's algorithm taking the ready task written first: a, then c (before b), ... */
	static const char *const want[] = {"a", "c", "b[0]", "b[1]", "d", "e"};
	assert_int_equal(js->n_tasks, ARRAY_LEN(want));
	for (size_t i = 0; i < js->n_tasks; i++) {
		assert_string_equal(js->tasks[i].name, want[i]);
		for (size_t k = 0; k < js->tasks[i].n_deps; k++)
			assert_true(js->tasks[i].deps[k] < i);
	}
	assert_int_equal(js->groups[0].first, 4); /* d */
	assert_int_equal(js->groups[2].first, 2); /* b */
	assert_int_equal(js->groups[2].count, 2);
	const struct jobspec_task *d = task(js, "d");
	assert_int_equal(d->n_deps, 3);
	assert_int_equal(d->deps[0], 1);
	assert_int_equal(d->deps[1], 2);
	assert_int_equal(d->deps[2], 3);
	jobspec_free(js);
}

static void test_cycle(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'after':['c']},"
		  "{'name':'b','command':['x'],'after':['a']},{'name':'c','command':['x'],'after':['b']},"
		  "{'name':'z','command':['x']}]}",
		  0, SS_EINVAL, "cycle: a -> b -> c -> a");
	/* A task blocked behind a cycle is not part of it. */
	parse_err("{'name':'j','tasks':[{'name':'w','command':['x'],'after':['q']},"
		  "{'name':'q','command':['x'],'inputs':[{'name':'i','from':'r.o'}],'outputs':['o']},"
		  "{'name':'r','command':['x'],'after':['q'],'outputs':['o']}]}",
		  0, SS_EINVAL, "cycle: q -> r -> q");
	parse_err("{'name':'j','tasks':[{'name':'s','command':['x'],'after':['s']}]}", 0, SS_EINVAL,
		  "cycle: s -> s");
	parse_err("{'name':'j','tasks':[{'name':'s','command':['x'],'map':{'task':'s'}}]}", 0, SS_EINVAL,
		  "cycle: s -> s");
}

static void test_missing_dependency(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x']},{'name':'b','command':['x'],"
		  "'after':['a','x']}]}",
		  0, SS_EINVAL, "tasks[1].after[1]: no task named \"x\"");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x']},{'name':'b','command':['x'],"
		  "'inputs':[{'name':'i','from':'nope.out'}]}]}",
		  0, SS_EINVAL, "tasks[1].inputs[0].from: no task named \"nope\"");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x']},{'name':'count','command':['x'],"
		  "'outputs':['out.txt','b']},{'name':'c','command':['x'],'inputs':[{'name':'i','from':'count.foo'}]}]}",
		  0, SS_EINVAL, "tasks[2].inputs[0].from: task \"count\" has no output \"foo\" (declared: out.txt, b)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x']},{'name':'c','command':['x'],"
		  "'inputs':[{'name':'i','from':'a.foo'}]}]}",
		  0, SS_EINVAL, "tasks[1].inputs[0].from: task \"a\" has no output \"foo\" (declared: none)");
	parse_err("{'name':'j','tasks':[{'name':'c','command':['x'],'inputs':[{'name':'i','from':'count'}]}]}",
		  0, SS_EINVAL, "tasks[0].inputs[0].from: \"count\" is not TASK.OUTPUT (e.g. \"count.result.txt\")");
	parse_err("{'name':'j','tasks':[{'name':'c','command':['x'],'map':{'task':'q'}}]}", 0, SS_EINVAL,
		  "tasks[0].map.task: no task named \"q\"");
}

static void test_deps_sorted_unique(void **state)
{
	(void)state;
	/* The same producers named by after, from and map.task: each instance once, sorted. */
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':["
		" {'name':'c','command':['x'],'after':['b','b'],'map':{'task':'a'},"
		"  'inputs':[{'name':'i','from':'b.o'},{'name':'k','from':'b.o'}]},"
		" {'name':'b','command':['x'],'outputs':['o'],'map':{'over':['1','2']}},"
		" {'name':'a','command':['x'],'outputs':['o'],'after':['b'],'map':{'over':['1','2','3']}},"
		" {'name':'d','command':['x'],'after':['a'],'map':{'task':'a'}}]}",
		0);
	/* order: b[0] b[1] a[0..2] c[0..2] d[0..2] */
	assert_string_equal(js->tasks[0].name, "b[0]");
	assert_string_equal(js->tasks[2].name, "a[0]");
	const struct jobspec_task *c1 = task(js, "c[1]");
	assert_int_equal(c1->n_deps, 3);
	assert_int_equal(c1->deps[0], 0);
	assert_int_equal(c1->deps[1], 1);
	assert_int_equal(c1->deps[2], 3); /* a[1] only */
	/* after + map over the same task: all instances win */
	const struct jobspec_task *d0 = task(js, "d[0]");
	assert_int_equal(d0->n_deps, 3);
	for (size_t i = 0; i < js->n_tasks; i++)
		for (size_t k = 1; k < js->tasks[i].n_deps; k++)
			assert_true(js->tasks[i].deps[k - 1] < js->tasks[i].deps[k]);
	jobspec_free(js);
}

static void test_final_flags(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':[{'name':'a','command':['x'],'outputs':['o']},"
		"{'name':'b','command':['x'],'inputs':[{'name':'i','from':'a.o'}],'outputs':['o']},"
		"{'name':'c','command':['x'],'after':['a']},{'name':'lone','command':['x']}]}",
		0);
	assert_false(task(js, "a")->final);
	assert_true(task(js, "b")->final);
	assert_true(task(js, "c")->final);
	assert_true(task(js, "lone")->final);
	/* By default exactly the final tasks' outputs are replicated. */
	assert_false(task(js, "a")->replicate);
	assert_true(task(js, "b")->replicate);
	jobspec_free(js);
	/* "replicate" overrides it both ways. */
	js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['x'],'outputs':['o'],'replicate':true},"
		      "{'name':'b','command':['x'],'inputs':[{'name':'i','from':'a.o'}],'outputs':['o'],"
		      "'replicate':false}]}",
		      0);
	assert_false(task(js, "a")->final);
	assert_true(task(js, "a")->replicate);
	assert_true(task(js, "b")->final);
	assert_false(task(js, "b")->replicate);
	jobspec_free(js);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_unknown_field(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resource':{}}]}", 0, SS_EPARSE,
		  "tasks[0].resource: unknown field (known: name, command, env, inputs, outputs, resources, "
		  "timeout, retries, priority, after, map, bundle, replicate, kill_grace)");
	parse_err("{'name':'j','colour':1,'tasks':[]}", 0, SS_EPARSE,
		  "colour: unknown field (known: name, tenant, on_failure, timeout, max_cost, policy, periodic, parameterized, tasks)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'timeout':'5s'}}]}", 0,
		  SS_EPARSE, "tasks[0].resources.timeout: unknown field (known: cpu, memory, disk, output, pids)");
	parse_err("{'name':'j','policy':{'region':'eu'},'tasks':[]}", 0, SS_EPARSE,
		  "policy.region: unknown field (known: tee, attestation, code, labels, features, optimize, placement)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blob':'" D1 "','sha':1}]}]}",
		  0, SS_EPARSE,
		  "tasks[0].inputs[0].sha: unknown field (known: name, blob, size, blobs, file, shards, from)");
}

static void test_wrong_type(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'retries':'2'}]}", 0, SS_EPARSE,
		  "tasks[0].retries: expected an integer or an object");
	parse_err("{'name':'j','tasks':[{'name':'a','command':'ls'}]}", 0, SS_EPARSE,
		  "tasks[0].command: expected an array of strings");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x',1]}]}", 0, SS_EPARSE,
		  "tasks[0].command[1]: expected a string");
	parse_err("{'name':7,'tasks':[]}", 0, SS_EPARSE, "name: expected a string");
	parse_err("{'name':'j','tasks':{}}", 0, SS_EPARSE, "tasks: expected an array of tasks");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'priority':1.5}]}", 0, SS_EPARSE,
		  "tasks[0].priority: expected an integer");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'env':{'K':1}}]}", 0, SS_EPARSE,
		  "tasks[0].env.K: expected a string");
	parse_err("[1,2]", 0, SS_EPARSE, "spec: expected a JSON object");
	parse_err("{'name':'j','tasks':[{'name':'a'}]}", 0, SS_EPARSE,
		  "tasks[0].command: required (e.g. [\"/bin/sh\", \"-c\", \"echo hi > /out/x\"])");
	parse_err("{'tasks':[]}", 0, SS_EPARSE, "name: required (the job's name)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'replicate':1}]}", 0, SS_EPARSE,
		  "tasks[0].replicate: expected true or false");
}

static void test_bad_values(void **state)
{
	(void)state;
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'memory':'12Q'}}]}", 0,
		  SS_EINVAL, "tasks[0].resources.memory: \"12Q\" is not a size (use 512M, 2G, ...)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'memory':'1M'}}]}", 0,
		  SS_EINVAL, "tasks[0].resources.memory: 1M is below the minimum of 4M");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'disk':'2T'}}]}", 0,
		  SS_ELIMIT, "tasks[0].resources.disk: 2T is over the maximum of 1T");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'timeout':'5 min'}]}", 0, SS_EINVAL,
		  "tasks[0].timeout: \"5 min\" is not a duration (use 500ms, 30s, 5m, 1h or 2d)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'timeout':'8d'}]}", 0, SS_ELIMIT,
		  "tasks[0].timeout: over the maximum of 7d");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'timeout':'169h'}]}", 0, SS_ELIMIT,
		  "tasks[0].timeout: over the maximum of 7d");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'timeout':0}]}", 0, SS_EINVAL,
		  "tasks[0].timeout: 0ms is below the minimum of 1ms");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'kill_grace':'11m'}]}", 0, SS_ELIMIT,
		  "tasks[0].kill_grace: over the maximum of 10m");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'kill_grace':-1}]}", 0, SS_EINVAL,
		  "tasks[0].kill_grace: a duration cannot be negative");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'cpu':'lots'}}]}", 0,
		  SS_EINVAL, "tasks[0].resources.cpu: \"lots\" is not a CPU amount (use 0.5, 2 or 500m)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'cpu':'0.0001'}}]}", 0,
		  SS_EINVAL, NULL);
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'cpu':0}}]}", 0,
		  SS_EINVAL, "tasks[0].resources.cpu: must be at least 1m (a thousandth of a core)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'resources':{'cpu':1025}}]}", 0,
		  SS_ELIMIT, "tasks[0].resources.cpu: over the maximum of 1024 cores");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'retries':101}]}", 0, SS_ELIMIT,
		  "tasks[0].retries: 101 is over the maximum of 100");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'retries':{'backoff':'11m'}}]}", 0,
		  SS_ELIMIT, "tasks[0].retries.backoff: over the maximum of 10m");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'priority':-1001}]}", 0, SS_EINVAL,
		  "tasks[0].priority: -1001 is below the minimum of -1000");
	parse_err("{'name':'j','on_failure':'stop','tasks':[]}", 0, SS_EINVAL,
		  "on_failure: \"stop\" is not one of fail_fast, continue");
	parse_err("{'name':'j','policy':{'tee':['sev']},'tasks':[]}", 0, SS_EINVAL,
		  "policy.tee[0]: \"sev\" is not one of sev-snp, tdx, sgx, tpm, sim");
	parse_err("{'name':'j','policy':{'code':['abc']},'tasks':[]}", 0, SS_EINVAL,
		  "policy.code[0]: \"abc\" is not a SHA-256 digest (64 hex digits)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'env':{'1X':'v'}}]}", 0, SS_EINVAL,
		  "tasks[0].env: \"1X\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'env':{'SS_MAP_ITEM':'v'}}]}", 0,
		  SS_EINVAL, "tasks[0].env.SS_MAP_ITEM: reserved (set for map instances)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'outputs':['../etc']}]}", 0, SS_EINVAL,
		  NULL);
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'outputs':['o','o']}]}", 0, SS_EINVAL,
		  "tasks[0].outputs: \"o\" is listed twice");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blob':'" D1 "',"
		  "'from':'b.o'}]}]}",
		  0, SS_EPARSE, "tasks[0].inputs[0]: blob and from exclude each other");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i'}]}]}", 0,
		  SS_EPARSE, "tasks[0].inputs[0]: needs one of blob, blobs, file or from");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'i','blob':'" D1 "'},"
		  "{'name':'i','blob':'" D2 "'}]}]}",
		  0, SS_EINVAL, "tasks[0].inputs: two inputs are named \"i\"");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x']},{'name':'a','command':['y']}]}", 0,
		  SS_EINVAL, "tasks[1].name: \"a\" is already the name of tasks[0]");
	parse_err("{'name':'j','tasks':[{'name':'a.b','command':['x']}]}", 0, SS_EINVAL,
		  "tasks[0].name: \"a.b\" is not a valid name (1 to 63 of A-Z a-z 0-9 _ -, starting with a letter or digit)");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['']}]}", 0, SS_EINVAL,
		  "tasks[0].command[0]: the program must not be empty");
	parse_err("{'name':'j','tasks':[]}", 0, SS_EINVAL, "tasks: a job needs at least one task");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{'over':[]}}]}", 0, SS_EINVAL,
		  "tasks[0].map.over: must not be empty");
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'map':{'over':['a'],'task':'a'}}]}", 0,
		  SS_EPARSE, "tasks[0].map: over and task exclude each other");
}

/* A job's own limits: a timeout from its submission and a most it may cost. */
static void test_job_limits(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['true']}]}", 0);
	assert_int_equal(js->timeout_ms, 0);
	assert_true(js->max_cost == 0);
	jobspec_free(js);
	js = parse_ok("{'name':'j','timeout':'90m','max_cost':2.5,'tasks':[{'name':'a','command':['true']}]}", 0);
	assert_int_equal(js->timeout_ms, 90ull * 60 * 1000);
	assert_true(js->max_cost == 2.5);
	jobspec_free(js);
	js = parse_ok("{'name':'j','timeout':3600,'max_cost':7,'tasks':[{'name':'a','command':['true']}]}", 0);
	assert_int_equal(js->timeout_ms, 3600000);
	assert_true(js->max_cost == 7);
	jobspec_free(js);
	parse_err("{'name':'j','timeout':'500ms','tasks':[{'name':'a','command':['true']}]}", 0, SS_EINVAL,
		  "timeout: 500ms is below the minimum of 1s");
	parse_err_prefix("{'name':'j','timeout':'31d','tasks':[{'name':'a','command':['true']}]}", 0, SS_ELIMIT,
			 "timeout: over the maximum of ");
	parse_err_prefix("{'name':'j','timeout':'soon','tasks':[{'name':'a','command':['true']}]}", 0, SS_EINVAL,
			 "timeout: \"soon\" is not a duration");
	parse_err("{'name':'j','max_cost':0,'tasks':[{'name':'a','command':['true']}]}", 0, SS_EINVAL,
		  "max_cost: must be more than 0");
	parse_err("{'name':'j','max_cost':-1.5,'tasks':[{'name':'a','command':['true']}]}", 0, SS_EINVAL,
		  "max_cost: must be more than 0");
	parse_err("{'name':'j','max_cost':2e12,'tasks':[{'name':'a','command':['true']}]}", 0, SS_ELIMIT,
		  "max_cost: over the maximum of 1e+12");
	parse_err_prefix("{'name':'j','max_cost':'3','tasks':[{'name':'a','command':['true']}]}", 0, SS_EPARSE,
			 "max_cost: expected a number");
}

static void test_json_errors(void **state)
{
	(void)state;
	parse_err_prefix("{'name':'j',", 0, SS_EPARSE, "spec: not valid JSON (line 1");
	parse_err_prefix("{'name':'j','name':'k','tasks':[]}", 0, SS_EPARSE, "spec: not valid JSON");
	parse_err_prefix("{'name':'j','tasks':[{'name':'a','command':['x\\u0000y']}]}", 0, SS_EPARSE,
			 "spec: not valid JSON");
	char *big = xmalloc(JOBSPEC_MAX_JSON + 2);
	memset(big, ' ', JOBSPEC_MAX_JSON + 1);
	big[JOBSPEC_MAX_JSON + 1] = '\0';
	struct jobspec *js = NULL;
	char why[256];
	assert_int_equal(jobspec_parse(big, JOBSPEC_MAX_JSON + 1, 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "spec: 1048577 bytes, over the limit of 1048576");
	assert_null(js);
	free(big);
	/* A NULL why with no room is allowed. */
	assert_int_equal(jobspec_parse("{}", 2, 0, &js, NULL, 0), SS_EPARSE);
}

/* ---- bounds ------------------------------------------------------------------------------ */

static char *mapped_groups(size_t groups, size_t per)
{
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"many\",\"tasks\":[");
	for (size_t g = 0; g < groups; g++) {
		buf_printf(&b, "%s{\"name\":\"g%zu\",\"command\":[\"/bin/echo\",\"{item}\"],\"outputs\":[\"o\"],"
			       "\"env\":{\"N\":\"{index}\"}",
			   g ? "," : "", g);
		if (g)
			buf_printf(&b, ",\"map\":{\"task\":\"g%zu\"}", g - 1);
		else {
			buf_printf(&b, ",\"map\":{\"over\":[");
			for (size_t i = 0; i < per; i++)
				buf_printf(&b, "%s\"item-%zu\"", i ? "," : "", i);
			buf_printf(&b, "]}");
		}
		buf_printf(&b, "}");
	}
	buf_printf(&b, "]}");
	buf_append(&b, "", 1);
	return (char *)b.data;
}

static void test_bounds(void **state)
{
	(void)state;
	char why[512];
	struct jobspec *js = NULL;
	char *s = mapped_groups(3, 4000);
	assert_int_equal(jobspec_parse(s, strlen(s), 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks: the job expands to 12000 task instances, over the limit of 10000");
	free(s);

	s = mapped_groups(1, JOBSPEC_MAX_MAP + 1);
	assert_int_equal(jobspec_parse(s, strlen(s), 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks[0].map.over: 4097 items, over the limit of 4096");
	free(s);

	struct buf b;
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"j\",\"tasks\":[");
	for (int i = 0; i <= JOBSPEC_MAX_GROUPS; i++)
		buf_printf(&b, "%s{\"name\":\"t%d\",\"command\":[\"x\"]}", i ? "," : "", i);
	buf_printf(&b, "]}");
	assert_int_equal(jobspec_parse((char *)b.data, b.len, 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks: 257 tasks, over the limit of 256 (use map to fan out)");
	buf_free(&b);

	/* Names: 63 bytes are fine, 64 are not. */
	char n63[64], n64[65];
	memset(n63, 'a', 63);
	n63[63] = '\0';
	memset(n64, 'b', 64);
	n64[64] = '\0';
	s = xasprintf("{'name':'%s','tenant':'%s','tasks':[{'name':'%s','command':['x']}]}", n63, n63, n63);
	js = parse_ok(s, 0);
	jobspec_free(js);
	free(s);
	s = xasprintf("{'name':'%s','tasks':[{'name':'a','command':['x']}]}", n64);
	parse_err_prefix(s, 0, SS_ELIMIT, "name: \"bbbb");
	free(s);
	s = xasprintf("{'name':'j','tasks':[{'name':'%s','command':['x']}]}", n64);
	parse_err_prefix(s, 0, SS_ELIMIT, "tasks[0].name: ");
	free(s);

	/* Arguments: 4096 bytes each, 256 of them. */
	char *arg = xmalloc(4098);
	memset(arg, 'x', 4097);
	arg[4097] = '\0';
	s = xasprintf("{'name':'j','tasks':[{'name':'a','command':['%s']}]}", arg);
	parse_err(s, 0, SS_ELIMIT, "tasks[0].command[0]: 4097 bytes, over the limit of 4096");
	free(s);
	arg[4096] = '\0';
	s = xasprintf("{'name':'j','tasks':[{'name':'a','command':['%s']}]}", arg);
	jobspec_free(parse_ok(s, 0));
	free(s);
	/* Substitution may not push an argument over the limit. */
	arg[4090] = '\0';
	s = xasprintf("{'name':'j','tasks':[{'name':'a','command':['%s{item}'],'map':{'over':['1234567']}}]}",
		      arg);
	parse_err_prefix(s, 0, SS_ELIMIT, "tasks[0].command[0]: over 4096 bytes once {item}");
	free(s);
	free(arg);
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"j\",\"tasks\":[{\"name\":\"a\",\"command\":[");
	for (int i = 0; i <= 256; i++)
		buf_printf(&b, "%s\"a\"", i ? "," : "");
	buf_printf(&b, "]}]}");
	assert_int_equal(jobspec_parse((char *)b.data, b.len, 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks[0].command: 257 arguments, over the limit of 256");
	buf_free(&b);

	/* Two 4096-wide fan-ins are over the dependency bound of one instance. */
	buf_init(&b);
	buf_printf(&b, "{\"name\":\"j\",\"tasks\":[{\"name\":\"r\",\"command\":[\"x\"],\"after\":[\"m\",\"n\"]},"
		       "{\"name\":\"m\",\"command\":[\"x\"],\"map\":{\"over\":[");
	for (int i = 0; i < 4096; i++)
		buf_printf(&b, "%s%d", i ? "," : "", i);
	buf_printf(&b, "]}},{\"name\":\"n\",\"command\":[\"x\"],\"map\":{\"task\":\"m\"}}]}");
	assert_int_equal(jobspec_parse((char *)b.data, b.len, 0, &js, why, sizeof why), SS_ELIMIT);
	assert_string_equal(why, "tasks[0]: each instance would wait for 8192 task instances, over the limit of 4096");
	buf_free(&b);
}

static void test_file_inputs(void **state)
{
	(void)state;
	static const char spec[] = "{'name':'wc','tasks':[{'name':'count','command':['wc','/in/text'],"
				   "'inputs':[{'name':'text','file':'data/words.txt','shards':4},"
				   "{'name':'whole','file':'/etc/hostname'}],"
				   "'map':{'input':'text'},'outputs':['count']},"
				   "{'name':'total','command':['t'],'inputs':[{'name':'counts','from':'count.count'}]}]}";
	parse_err(spec, 0, SS_EINVAL,
		  "tasks[0].inputs[0].file: local files are uploaded by the CLI (seeswarm job run); "
		  "submit \"blob\" or \"blobs\" digests instead");
	struct jobspec *js = parse_ok(spec, JOBSPEC_ALLOW_FILES);
	assert_int_equal(js->n_tasks, 5);
	const struct jobspec_task *t = task(js, "count[3]");
	assert_int_equal(t->n_inputs, 2);
	assert_string_equal(t->inputs[0].name, "text");
	assert_int_equal(t->inputs[0].kind, JOBSPEC_IN_FILE);
	assert_string_equal(t->inputs[0].path, "data/words.txt");
	assert_string_equal(t->inputs[1].name, "whole");
	assert_string_equal(env_get(t, "SS_MAP_ITEM"), "3");
	t = task(js, "total");
	assert_int_equal(t->n_inputs, 4);
	assert_string_equal(t->inputs[3].name, "counts.3");
	jobspec_free(js);

	/* Sharded but not mapped: NAME.INDEX inputs. */
	js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'f','file':'x','shards':2}]}]}",
		      JOBSPEC_ALLOW_FILES);
	assert_int_equal(js->tasks[0].n_inputs, 2);
	assert_string_equal(js->tasks[0].inputs[1].name, "f.1");
	jobspec_free(js);
	parse_err("{'name':'j','tasks':[{'name':'a','command':['x'],'inputs':[{'name':'f','blob':'" D1 "','shards':2}]}]}",
		  JOBSPEC_ALLOW_FILES, SS_EPARSE, "tasks[0].inputs[0].shards: only allowed with file");
}

/* ---- queries ---------------------------------------------------------------------------- */

static void test_check_fits(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok(
		"{'name':'j','tasks':[{'name':'small','command':['x']},"
		"{'name':'count','command':['x'],'resources':{'memory':'64G','cpu':'1500m','disk':'1G'},"
		"'map':{'over':['a','b']}}]}",
		0);
	char why[256];
	struct jobspec_limits lim = {.cpu_millicores = 2000, .memory_bytes = 16ull << 30, .disk_bytes = 100ull << 30};
	assert_int_equal(jobspec_check_fits(js, &lim, why, sizeof why), SS_EINVAL);
	assert_string_equal(why, "tasks[1] (count[0]).resources.memory: 64G exceeds the largest node (16G)");
	lim.memory_bytes = 64ull << 30;
	assert_int_equal(jobspec_check_fits(js, &lim, why, sizeof why), 0);
	lim.cpu_millicores = 1000;
	assert_int_equal(jobspec_check_fits(js, &lim, why, sizeof why), SS_EINVAL);
	assert_string_equal(why, "tasks[1] (count[0]).resources.cpu: 1500m exceeds the largest node (1000m)");
	lim.cpu_millicores = 4000;
	lim.disk_bytes = 1000000000;
	assert_int_equal(jobspec_check_fits(js, &lim, why, sizeof why), SS_EINVAL);
	assert_string_equal(why, "tasks[1] (count[0]).resources.disk: 1G exceeds the largest node (953.7M)");
	/* Zero limits are unknown and not checked. */
	struct jobspec_limits none = {0};
	assert_int_equal(jobspec_check_fits(js, &none, why, sizeof why), 0);
	jobspec_free(js);
}

static void test_find(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'j','tasks':[{'name':'m','command':['x'],"
				      "'map':{'over':[0,1,2,3,4,5,6,7,8,9,10]}},{'name':'s','command':['x']}]}",
				      0);
	assert_int_equal(jobspec_find(js, "s"), 11);
	assert_int_equal(jobspec_find(js, "m[0]"), 0);
	assert_int_equal(jobspec_find(js, "m[10]"), 10);
	assert_int_equal(jobspec_find(js, "m[11]"), -1);
	assert_int_equal(jobspec_find(js, "m[01]"), -1);
	assert_int_equal(jobspec_find(js, "m[]"), -1);
	assert_int_equal(jobspec_find(js, "m[1]x"), -1);
	assert_int_equal(jobspec_find(js, "m"), -1);
	assert_int_equal(jobspec_find(js, "s[0]"), -1);
	assert_int_equal(jobspec_find(js, "nope"), -1);
	assert_int_equal(jobspec_find(js, ""), -1);
	for (size_t i = 0; i < js->n_tasks; i++)
		assert_int_equal(jobspec_find(js, js->tasks[i].name), (int32_t)i);
	jobspec_free(js);
}

/* ---- determinism and speed ---------------------------------------------------------------- */

static void assert_same(const struct jobspec *a, const struct jobspec *b)
{
	assert_int_equal(a->n_tasks, b->n_tasks);
	assert_int_equal(a->n_groups, b->n_groups);
	for (size_t g = 0; g < a->n_groups; g++) {
		assert_string_equal(a->groups[g].name, b->groups[g].name);
		assert_int_equal(a->groups[g].first, b->groups[g].first);
		assert_int_equal(a->groups[g].count, b->groups[g].count);
	}
	for (size_t i = 0; i < a->n_tasks; i++) {
		const struct jobspec_task *x = &a->tasks[i], *y = &b->tasks[i];
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->argc, y->argc);
		for (size_t k = 0; k < x->argc; k++)
			assert_string_equal(x->argv[k], y->argv[k]);
		assert_int_equal(x->envc, y->envc);
		for (size_t k = 0; k < x->envc; k++)
			assert_string_equal(x->env[k], y->env[k]);
		assert_int_equal(x->n_inputs, y->n_inputs);
		for (size_t k = 0; k < x->n_inputs; k++) {
			assert_string_equal(x->inputs[k].name, y->inputs[k].name);
			assert_int_equal(x->inputs[k].kind, y->inputs[k].kind);
			assert_int_equal(x->inputs[k].task, y->inputs[k].task);
			assert_memory_equal(x->inputs[k].digest, y->inputs[k].digest, SHA256_LEN);
		}
		assert_int_equal(x->n_deps, y->n_deps);
		if (x->n_deps)
			assert_memory_equal(x->deps, y->deps, x->n_deps * sizeof *x->deps);
		assert_int_equal(x->final, y->final);
		assert_memory_equal(&x->res, &y->res, sizeof x->res);
	}
}

static void test_determinism(void **state)
{
	(void)state;
	static const char spec[] =
		"{'name':'j','tasks':[{'name':'z','command':['x','{item}'],'env':{'Q':'1','A':'{index}'},"
		"'map':{'over':['a','b','c']},'outputs':['o']},{'name':'y','command':['x'],'map':{'task':'z'}},"
		"{'name':'r','command':['x'],'inputs':[{'name':'all','from':'z.o'}],'after':['y']}]}";
	struct jobspec *a = parse_ok(spec, 0), *b = parse_ok(spec, 0);
	assert_same(a, b);
	jobspec_free(a);
	jobspec_free(b);
	char *s = mapped_groups(4, 2500);
	struct jobspec *x = NULL, *y = NULL;
	char why[256];
	assert_int_equal(jobspec_parse(s, strlen(s), 0, &x, why, sizeof why), 0);
	assert_int_equal(jobspec_parse(s, strlen(s), 0, &y, why, sizeof why), 0);
	assert_same(x, y);
	jobspec_free(x);
	jobspec_free(y);
	free(s);
}

static void test_speed_10000(void **state)
{
	(void)state;
	char *s = mapped_groups(4, 2500);
	struct jobspec *js = NULL;
	char why[256];
	uint64_t best = UINT64_MAX;
	for (int r = 0; r < 5; r++) {
		uint64_t t0 = time_mono_ms();
		assert_int_equal(jobspec_parse(s, strlen(s), 0, &js, why, sizeof why), 0);
		uint64_t dt = time_mono_ms() - t0;
		if (dt < best)
			best = dt;
		assert_int_equal(js->n_tasks, 10000);
		const struct jobspec_task *t = task(js, "g3[2499]");
		assert_int_equal(t->n_deps, 1);
		assert_int_equal(t->deps[0], jobspec_find(js, "g2[2499]"));
		assert_string_equal(t->argv[1], "2499");
		assert_string_equal(env_get(t, "N"), "2499");
		assert_string_equal(js->tasks[2499].argv[1], "item-2499");
		jobspec_free(js);
	}
	fprintf(stderr, "jobspec_parse: 10000 instances (%zu bytes) in %llu ms (best of 5)\n", strlen(s),
		(unsigned long long)best);
	/* Well under 100 ms in an optimised build; the bound leaves room for sanitizers. */
	assert_true(best < 1000);
	free(s);
}

static void test_bundle(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'b','tasks':[{'name':'a','command':['run.sh'],"
				      "'map':{'over':['x','y']},'bundle':{'blob':'" D1 "','digest':'" D2 "'}},"
				      "{'name':'c','command':['true']}]}",
				      0);
	uint8_t d1[SHA256_LEN], d2[SHA256_LEN];
	assert_int_equal(hex_decode(D1, d1, SHA256_LEN), 0);
	assert_int_equal(hex_decode(D2, d2, SHA256_LEN), 0);
	for (int i = 0; i < 2; i++) {
		const struct jobspec_task *t = task(js, i ? "a[1]" : "a[0]");
		assert_true(t->has_bundle);
		assert_memory_equal(t->bundle_blob, d1, SHA256_LEN);
		assert_memory_equal(t->bundle_digest, d2, SHA256_LEN);
	}
	assert_false(task(js, "c")->has_bundle);
	jobspec_free(js);
	parse_err("{'name':'b','tasks':[{'name':'a','command':['x'],'bundle':'app.tar'}]}", 0, SS_EPARSE,
		  "tasks[0].bundle: expected {\"blob\": TAR_SHA256, \"digest\": CODE_DIGEST} or {\"file\": PATH}");
	parse_err("{'name':'b','tasks':[{'name':'a','command':['x'],'bundle':{'blob':'" D1 "'}}]}", 0,
		  SS_EPARSE, "tasks[0].bundle.digest: required");
	parse_err_prefix("{'name':'b','tasks':[{'name':'a','command':['x'],'bundle':{'file':'app'}}]}", 0,
			 SS_EINVAL, "tasks[0].bundle.file: local bundles are packed and uploaded by the CLI");
	parse_err_prefix("{'name':'b','tasks':[{'name':'a','command':['x'],'bundle':{'blob':'" D1 "','digest':'" D2 "','x':1}}]}",
			 0, SS_EPARSE, "tasks[0].bundle");
	js = parse_ok("{'name':'b','tasks':[{'name':'a','command':['x'],'bundle':{'file':'app'}}]}",
		      JOBSPEC_ALLOW_FILES);
	assert_false(js->tasks[0].has_bundle); /* the CLI rewrites it before submitting */
	jobspec_free(js);
}

static void test_periodic(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'j','periodic':{'cron':'@daily','prohibit_overlap':true,"
				      "'time_zone':'UTC'},'tasks':[{'name':'a','command':['x']}]}",
				      0);
	assert_true(js->periodic.set);
	assert_string_equal(js->periodic.cron_text, "@daily");
	assert_int_equal(js->periodic.cron.hours, 1);
	assert_int_equal(js->periodic.every_ms, 0);
	assert_true(js->periodic.prohibit_overlap);
	jobspec_free(js);
	js = parse_ok("{'name':'j','periodic':{'every':'90s'},'tasks':[{'name':'a','command':['x']}]}", 0);
	assert_true(js->periodic.set);
	assert_int_equal(js->periodic.every_ms, 90000);
	assert_false(js->periodic.prohibit_overlap);
	jobspec_free(js);
	js = parse_ok("{'name':'j','tasks':[{'name':'a','command':['x']}]}", 0);
	assert_false(js->periodic.set);
	jobspec_free(js);
#define T ",'tasks':[{'name':'a','command':['x']}]}"
	parse_err_prefix("{'name':'j','periodic':'@daily'" T, 0, SS_EPARSE, "periodic: expected an object");
	parse_err("{'name':'j','periodic':{}" T, 0, SS_EINVAL,
		  "periodic: give either \"cron\" (a schedule in UTC) or \"every\" (an interval), one of them is "
		  "required");
	parse_err("{'name':'j','periodic':{'cron':'@daily','every':60}" T, 0, SS_EINVAL,
		  "periodic: give either \"cron\" (a schedule in UTC) or \"every\" (an interval), not both");
	parse_err("{'name':'j','periodic':{'cron':5}" T, 0, SS_EPARSE, "periodic.cron: expected a string");
	parse_err_prefix("{'name':'j','periodic':{'cron':'* * *'}" T, 0, SS_EINVAL,
			 "periodic.cron: 3 fields where 5 are needed");
	parse_err("{'name':'j','periodic':{'cron':'0 0 30 2 *'}" T, 0, SS_EINVAL,
		  "periodic.cron: \"0 0 30 2 *\" never matches: no month it names has the day it names");
	parse_err("{'name':'j','periodic':{'every':0.5}" T, 0, SS_EINVAL,
		  "periodic.every: 500ms is below the minimum of 1s");
	parse_err("{'name':'j','periodic':{'every':'400d'}" T, 0, SS_ELIMIT, "periodic.every: over the maximum of 366d");
	parse_err("{'name':'j','periodic':{'every':60,'prohibit_overlap':1}" T, 0, SS_EPARSE,
		  "periodic.prohibit_overlap: expected true or false");
	parse_err("{'name':'j','periodic':{'every':60,'time_zone':'CET'}" T, 0, SS_EINVAL,
		  "periodic.time_zone: \"CET\": schedules are in UTC only; write the cron expression in UTC (or "
		  "leave time_zone out)");
	parse_err_prefix("{'name':'j','periodic':{'every':60,'start':1}" T, 0, SS_EPARSE,
			 "periodic.start: unknown field");
#undef T
}

static void dispatch_err(const struct jobspec *js, const char *body, int want_rc, const char *want)
{
	char why[512] = "";
	json_t *meta = (json_t *)1;
	bool has = true;
	uint8_t d[SHA256_LEN];
	char *b = q(body);
	int rc = jobspec_dispatch_parse(js, b, strlen(b), &meta, &has, d, why, sizeof why);
	free(b);
	if (rc != want_rc || !strstr(why, want))
		fail_msg("%s: rc %d, \"%s\"; want %d, \"%s\"", body, rc, why, want_rc, want);
	assert_null(meta);
}

static void test_parameterized(void **state)
{
	(void)state;
	struct jobspec *js = parse_ok("{'name':'j','parameterized':{'meta_required':['who'],'meta_optional':['mood'],"
				      "'payload':'required'},'tasks':[{'name':'a','command':['x']}]}",
				      0);
	assert_true(js->param.set);
	assert_int_equal(js->param.n_required, 1);
	assert_string_equal(js->param.meta_optional[0], "mood");
	assert_int_equal(js->param.payload, JOBSPEC_PAYLOAD_REQUIRED);
	char why[512];
	json_t *meta = NULL;
	bool has = false;
	uint8_t d[SHA256_LEN];
	char *b = q("{'meta':{'who':'Ada'},'payload':'" D1 "'}");
	assert_int_equal(jobspec_dispatch_parse(js, b, strlen(b), &meta, &has, d, why, sizeof why), 0);
	free(b);
	assert_true(has);
	assert_int_equal(d[0], 0x11);
	assert_string_equal(json_string_value(json_object_get(meta, "who")), "Ada");
	assert_int_equal(json_object_size(meta), 1);
	json_decref(meta);
	dispatch_err(js, "{'payload':'" D1 "'}", SS_EINVAL, "meta.who: required by the job, and missing");
	dispatch_err(js, "{'meta':{'who':'a'}}", SS_EINVAL, "payload: required by the job");
	dispatch_err(js, "{'meta':{'who':'a','x':'b'},'payload':'" D1 "'}", SS_EINVAL, "meta.x: the job takes no such key");
	dispatch_err(js, "{'meta':{'who':1}}", SS_EPARSE, "meta.who: expected a string");
	dispatch_err(js, "{'meta':[]}", SS_EPARSE, "meta: expected an object");
	dispatch_err(js, "[]", SS_EPARSE, "dispatch: expected an object");
	dispatch_err(js, "{'meta':{'who':'a','who':'b'}}", SS_EPARSE, "dispatch: not JSON");
	dispatch_err(js, "{'meta':{'who':'a'},'payload':'zz'}", SS_EINVAL, "is not a SHA-256 digest");
	dispatch_err(js, "{'more':1}", SS_EPARSE, "more: unknown field");
	jobspec_free(js);
	/* No body: no metadata and no payload, which a job without required keys takes. */
	js = parse_ok("{'name':'j','parameterized':{'payload':'forbidden'},'tasks':[{'name':'a','command':['x'],"
		      "'inputs':[{'name':'payload','blob':'" D1 "'}]}]}",
		      0);
	assert_int_equal(jobspec_dispatch_parse(js, "", 0, &meta, &has, d, why, sizeof why), 0);
	assert_false(has);
	assert_int_equal(json_object_size(meta), 0);
	json_decref(meta);
	dispatch_err(js, "{'payload':'" D1 "'}", SS_EINVAL, "payload: the job takes none");
	jobspec_free(js);
#define T ",'tasks':[{'name':'a','command':['x']}]}"
	parse_err_prefix("{'name':'j','parameterized':{'meta_required':['1x']}" T, 0, SS_EINVAL,
			 "parameterized.meta_required[0]: \"1x\" is not a key name");
	parse_err("{'name':'j','parameterized':{'meta_required':['a'],'meta_optional':['a']}" T, 0, SS_EINVAL,
		  "parameterized: the key \"a\" is named twice");
	parse_err_prefix("{'name':'j','parameterized':{'payload':'maybe'}" T, 0, SS_EINVAL,
			 "parameterized.payload: \"maybe\" is not one of");
	parse_err_prefix("{'name':'j','periodic':{'every':60},'parameterized':{}" T, 0, SS_EINVAL,
			 "parameterized: a job is periodic or parameterized, not both");
#undef T
	parse_err_prefix("{'name':'j','parameterized':{},'tasks':[{'name':'a','command':['x'],"
			 "'inputs':[{'name':'payload','blob':'" D1 "'}]}]}",
			 0, SS_EINVAL, "tasks[0].inputs[0]: the name \"payload\" is the dispatch payload's");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_every_field),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_map_over_list),
		cmocka_unit_test(test_map_over_input),
		cmocka_unit_test(test_map_over_task),
		cmocka_unit_test(test_fan_in_naming),
		cmocka_unit_test(test_fan_in_4096),
		cmocka_unit_test(test_input_forms),
		cmocka_unit_test(test_map_errors),
		cmocka_unit_test(test_topological_order),
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_missing_dependency),
		cmocka_unit_test(test_deps_sorted_unique),
		cmocka_unit_test(test_final_flags),
		cmocka_unit_test(test_unknown_field),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_job_limits),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_bundle),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_file_inputs),
		cmocka_unit_test(test_check_fits),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_periodic),
		cmocka_unit_test(test_parameterized),
		cmocka_unit_test(test_speed_10000),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
