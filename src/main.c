/* main.c - the seeswarm binary: one entry point, a table of subcommands. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "cli/cli.h"
#include "core/core.h"
#include "manager/manager.h"

struct command {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
};

static int version_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("seeswarm %s\n", SS_VERSION);
	return 0;
}

static int help_main(int argc, char **argv);

static const struct command commands[] = {
	{"manager", manager_main, "run the manager daemon"},
	{"agent", agent_main, "run the agent daemon inside an SEE"},
	{"node", cli_node_main, "list, show and drain nodes"},
	{"job", cli_job_main, "run jobs (DAGs of tasks): plan, run, wait, list, status, explain, logs, results, cancel, rerun, launch"},
	{"token", cli_token_main, "tenant API tokens: create, list, revoke (admin token)"},
	{"tenant", cli_tenant_main, "tenants' use of the swarm against their quotas: list"},
	{"audit", cli_audit_main, "the manager's audit trail: who changed what (admin token)"},
	{"ca", cli_ca_main, "swarm CA tasks (issue agent credentials)"},
	{"attest", cli_attest_main, "verify attestation evidence offline; import collateral"},
	{"task", cli_task_main, "run a task in the sandbox locally (run-local); bundle digests"},
	{"receipt", cli_receipt_main, "verify a task receipt offline (receipt verify R --ca CA.pem)"},
	{"demo", cli_demo_main, "start a local swarm (manager + 3 agents); --stop stops it"},
	{"version", version_main, "print the version"},
	{"help", help_main, "show this help"},
};

static int help_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("seeswarm %s - orchestrate a swarm of attested secure execution environments\n\n"
	       "usage: seeswarm <command> [args]\n\ncommands:\n",
	       SS_VERSION);
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].help);
	printf("\nRun 'seeswarm <command> --help' for a command's options.\n"
	       "The CLI reads the API address and token from --addr/--token/--ca, from\n"
	       "SEESWARM_ADDR/SEESWARM_TOKEN/SEESWARM_CA, or from the config file the\n"
	       "manager writes on first start (~/.config/seeswarm/config.json).\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		help_main(0, NULL);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return help_main(0, NULL);
	if (!strcmp(argv[1], "--version"))
		return version_main(0, NULL);
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "seeswarm: unknown command '%s' (try 'seeswarm help')\n", argv[1]);
	return 2;
}
