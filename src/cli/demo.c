/*
 * demo.c - `seeswarm demo`: a local swarm of one manager and three agents
 * with INSECURE simulated attestation, started as background processes.
 * `seeswarm demo --stop` stops exactly the processes the demo started (their
 * pids are recorded, and checked against /proc before any signal is sent).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "attest/ca.h"
#include "cli/cli.h"
#include "client/config.h"
#include "core/core.h"

#define DEMO_AGENTS 3

static char *demo_dir(const char *flag)
{
	if (flag)
		return xstrdup(flag);
	const char *env = getenv("SEESWARM_DEMO_DIR");
	if (env && *env)
		return xstrdup(env);
	const char *home = getenv("HOME");
	if (home && *home)
		return xasprintf("%s/.local/state/seeswarm/demo", home);
	return xasprintf("/tmp/seeswarm-demo-%u", (unsigned)getuid());
}

/* True when pid is alive and its command line mentions the demo dir. */
static bool is_ours(pid_t pid, const char *dir)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	char *text = NULL;
	size_t len = 0;
	if (file_read(path, 1 << 16, &text, &len) != 0)
		return false;
	bool ours = false;
	for (size_t i = 0; i < len; i++)
		if (text[i] == '\0')
			text[i] = ' ';
	ours = strstr(text, "seeswarm") || strstr(text, dir);
	ours = ours && strstr(text, dir);
	free(text);
	return ours;
}

static int stop_demo(const char *dir, bool quiet)
{
	char *pids_path = xasprintf("%s/pids", dir);
	char *text = NULL;
	int stopped = 0;
	if (file_read(pids_path, 4096, &text, NULL) != 0) {
		if (!quiet)
			printf("no demo is running (no %s)\n", pids_path);
		free(pids_path);
		return 0;
	}
	pid_t pids[16];
	size_t n = 0;
	for (char *tok = strtok(text, " \n"); tok && n < 16; tok = strtok(NULL, " \n")) {
		long p = strtol(tok, NULL, 10);
		if (p > 1)
			pids[n++] = (pid_t)p;
	}
	/* Agents first (they say goodbye), the manager (first pid) last. */
	for (size_t i = n; i-- > 0;) {
		if (!is_ours(pids[i], dir))
			continue;
		kill(pids[i], SIGTERM);
		for (int t = 0; t < 50 && is_ours(pids[i], dir); t++) {
			waitpid(pids[i], NULL, WNOHANG);
			cli_sleep_ms(100);
		}
		if (is_ours(pids[i], dir))
			kill(pids[i], SIGKILL);
		stopped++;
	}
	unlink(pids_path);
	if (!quiet)
		printf("demo stopped (%d processes)\n", stopped);
	free(text);
	free(pids_path);
	return 0;
}

/* Starts argv as a detached background process with output to log. Returns its pid or -1. */
static pid_t spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		return pid;
	setsid();
	int devnull = open("/dev/null", O_RDONLY);
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (devnull >= 0)
		dup2(devnull, 0);
	if (log >= 0) {
		dup2(log, 1);
		dup2(log, 2);
	}
	execv("/proc/self/exe", argv);
	_exit(127);
}

/* Counts ready nodes through the API; -1 when the API does not answer. */
static int count_ready(const char *cfg_path)
{
	setenv("SEESWARM_CONFIG", cfg_path, 1);
	ss_client *c = NULL;
	ss_client_opts o = {.timeout_ms = 2000};
	char *json = NULL;
	int ready = -1;
	if (ss_client_open(&c, &o) != 0)
		goto out;
	if (ss_nodes_list(c, 0, &json) != 0)
		goto out;
	json_t *j = json_loads(json, 0, NULL);
	json_t *nodes = json_object_get(j, "nodes");
	ready = 0;
	for (size_t i = 0; i < json_array_size(nodes); i++)
		if (!strcmp(json_string_value(json_object_get(json_array_get(nodes, i), "state")) ?: "", "ready"))
			ready++;
	json_decref(j);
out:
	ss_free(json);
	ss_client_close(c);
	return ready;
}

/* Chooses where the CLI config goes: the user's default unless it belongs to another swarm. */
static char *pick_config_path(const char *dir)
{
	char *dflt = client_config_default_path();
	if (!dflt)
		return xasprintf("%s/client.json", dir);
	char *text = NULL;
	if (file_read(dflt, 65536, &text, NULL) != 0)
		return dflt; /* none yet: the demo may create it */
	json_t *j = json_loads(text, 0, NULL);
	const char *ca = json_string_value(json_object_get(j, "ca_file"));
	bool ours = ca && !strncmp(ca, dir, strlen(dir));
	json_decref(j);
	free(text);
	if (ours)
		return dflt;
	free(dflt);
	return xasprintf("%s/client.json", dir);
}

/*
 * Runs the example job (word count over a text file, mapped over shards and
 * reduced) through the CLI, printing its result and where each task ran.
 * Tasks run in the sandbox, which needs root; without root the demo says so
 * and skips the job. Returns 0 or 1.
 */
static int run_example(const char *cfg)
{
	static const char example[] = "examples/wordcount.json";
	if (access(example, R_OK) != 0) {
		printf("\n(no %s here: run make demo from the source tree to see a job)\n", example);
		return 0;
	}
	if (geteuid() != 0) {
		printf("\n(skipping the example job: the task sandbox needs root)\n");
		return 0;
	}
	printf("\n==> running %s: count words in 4 shards, then add the counts\n", example);
	fflush(stdout);
	setenv("SEESWARM_CONFIG", cfg, 1);
	char *jargv[] = {"job", "run", (char *)example, "--wait", "--cat", "--timeout", "120s", NULL};
	int rc = cli_job_main(7, jargv);
	if (rc == 0)
		printf("==> the example job succeeded; its words file: examples/data/words.txt "
		       "(check: wc -w examples/data/words.txt)\n");
	else
		fprintf(stderr, "demo: the example job failed; see the logs in the demo directory\n");
	return rc ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: seeswarm demo [--dir DIR] [--port PORT] [--stop]\n"
		   "  Starts a manager (agent port PORT, API port PORT+1; default 7400) and three\n"
		   "  agents with INSECURE simulated attestation, in DIR (default\n"
		   "  ~/.local/state/seeswarm/demo). --stop stops them.\n");
}

int cli_demo_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"port", required_argument, NULL, 'p'},
		{"stop", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir_flag = NULL;
	bool stop = false;
	unsigned port = 7400;
	int c, rc = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:p:sh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir_flag = optarg;
			break;
		case 'p':
			port = (unsigned)strtoul(optarg, NULL, 10);
			if (port < 1 || port > 65534) {
				fprintf(stderr, "demo: --port must be 1..65534\n");
				return 2;
			}
			break;
		case 's':
			stop = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	char *dir = demo_dir(dir_flag);
	char *abs = NULL, *mdir = NULL, *cfg = NULL, *pids_path = NULL;
	struct ca *ca = NULL;
	struct buf pids;
	buf_init(&pids);
	if (stop) {
		rc = stop_demo(dir, false);
		goto out;
	}
	stop_demo(dir, true);
	/* Each demo run is a fresh swarm. */
	char *rm = xasprintf("rm -rf '%s'", dir);
	if (strchr(dir, '\'') || system(rm) != 0) {
		fprintf(stderr, "demo: cannot clear %s\n", dir);
		free(rm);
		goto out;
	}
	free(rm);
	if (dir_ensure(dir, 0700) != 0) {
		fprintf(stderr, "demo: cannot create %s\n", dir);
		goto out;
	}
	abs = realpath(dir, NULL);
	if (!abs)
		goto out;
	mdir = xasprintf("%s/manager", abs);
	cfg = pick_config_path(abs);
	pids_path = xasprintf("%s/pids", abs);
	char listen[32], api[32];
	snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
	snprintf(api, sizeof api, "127.0.0.1:%u", port + 1);

	printf("==> starting a local seeswarm in %s\n", abs);
	printf("    WARNING: simulated attestation (--insecure-sim-attestation) proves nothing;\n"
	       "    it exists for development. Real swarms attest with TPM, SEV-SNP, TDX or SGX.\n");
	char *mlog = xasprintf("%s/manager.log", abs);
	char *margv[] = {"seeswarm", "manager", "--data-dir", mdir, "--listen", listen, "--api", api,
			 "--insecure-sim-attestation", "--client-config", cfg, NULL};
	pid_t mpid = spawn(margv, mlog);
	free(mlog);
	if (mpid < 0) {
		fprintf(stderr, "demo: cannot start the manager\n");
		goto out;
	}
	buf_printf(&pids, "%d\n", (int)mpid);
	file_write_atomic(pids_path, pids.data, pids.len, 0600);
	int up = -1;
	for (int t = 0; t < 100 && up < 0; t++) {
		cli_sleep_ms(100);
		if (waitpid(mpid, NULL, WNOHANG) == mpid) {
			fprintf(stderr, "demo: the manager exited; see %s/manager.log (is port %u free?)\n", abs, port);
			goto out;
		}
		up = count_ready(cfg);
	}
	if (up < 0) {
		fprintf(stderr, "demo: the manager's API did not come up; see %s/manager.log\n", abs);
		goto out;
	}
	printf("==> manager up: agents on %s, API on https://%s\n", listen, api);
	if (ca_load(&ca, mdir) != 0) {
		fprintf(stderr, "demo: cannot load the swarm CA\n");
		goto out;
	}
	static const char *const zones[DEMO_AGENTS] = {"a", "b", "c"};
	static const char *const prices[DEMO_AGENTS] = {"0.10", "0.12", "0.08"};
	for (int i = 0; i < DEMO_AGENTS; i++) {
		char id[32];
		snprintf(id, sizeof id, "agent-%d", i + 1);
		char *adir = xasprintf("%s/%s", abs, id);
		char *alog = xasprintf("%s/%s.log", abs, id);
		char zone[16];
		snprintf(zone, sizeof zone, "zone=%s", zones[i]);
		if (ca_issue_agent_dir(ca, id, adir, 7 * 86400) != 0) {
			fprintf(stderr, "demo: cannot issue credentials for %s\n", id);
			free(adir);
			free(alog);
			goto out;
		}
		char *aargv[] = {"seeswarm", "agent", "--join", listen, "--data-dir", adir,
				 "--label", "region=local", "--label", zone,
				 "--price-per-hour", (char *)prices[i], "--insecure-sim-attestation", NULL};
		pid_t apid = spawn(aargv, alog);
		free(adir);
		free(alog);
		if (apid < 0) {
			fprintf(stderr, "demo: cannot start %s\n", id);
			goto out;
		}
		buf_printf(&pids, "%d\n", (int)apid);
		file_write_atomic(pids_path, pids.data, pids.len, 0600);
	}
	int ready = 0;
	for (int t = 0; t < 150 && ready < DEMO_AGENTS; t++) {
		cli_sleep_ms(100);
		ready = count_ready(cfg);
	}
	if (ready < DEMO_AGENTS) {
		fprintf(stderr, "demo: only %d of %d agents became ready; see the logs in %s\n", ready,
			DEMO_AGENTS, abs);
		goto out;
	}
	printf("==> %d agents attested (sim, insecure) and ready\n\n", ready);
	fflush(stdout);
	char *nargv[] = {"node", "list", NULL};
	cli_node_main(2, nargv);
	rc = run_example(cfg);
	if (rc)
		goto out;
	printf("\nTry next:\n");
	char *dflt = client_config_default_path();
	if (!dflt || strcmp(dflt, cfg) != 0)
		printf("  export SEESWARM_CONFIG=%s\n", cfg);
	free(dflt);
	printf("  build/seeswarm job run examples/wordcount.json --wait --cat   # the example job again\n"
	       "  build/seeswarm job list             # jobs; then: job status ID, job explain ID\n"
	       "  build/seeswarm node list            # the node table (--json for JSON)\n"
	       "  build/seeswarm node show agent-1    # one node in detail\n"
	       "  build/seeswarm node drain agent-2   # stop placing work on a node\n"
	       "  kill -9 $(sed -n 2p %s)   # kill agent-1, watch it go suspect, then down\n"
	       "  tail -f %s/manager.log\n"
	       "  build/seeswarm demo --stop          # stop the demo swarm\n",
	       pids_path, abs);
	rc = 0;
out:
	if (rc && !stop && pids.len)
		fprintf(stderr, "demo: stop what started with: seeswarm demo --stop\n");
	ca_free(ca);
	buf_free(&pids);
	free(dir);
	free(abs);
	free(mdir);
	free(cfg);
	free(pids_path);
	return rc;
}
