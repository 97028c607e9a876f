/*
 * cli.h - entry points of the CLI command groups. Each takes the arguments
 * after its group name (argv[0] is the group name) and returns the process
 * exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef SS_CLI_H
#define SS_CLI_H

int cli_node_main(int argc, char **argv);
int cli_ca_main(int argc, char **argv);
int cli_demo_main(int argc, char **argv);
int cli_attest_main(int argc, char **argv);
int cli_task_main(int argc, char **argv);
int cli_receipt_main(int argc, char **argv);
int cli_job_main(int argc, char **argv);
int cli_token_main(int argc, char **argv);
int cli_tenant_main(int argc, char **argv);
int cli_audit_main(int argc, char **argv);

/*
 * Returns a copy (caller frees) of s with control characters replaced by
 * '?', so that strings from the API cannot drive the terminal. NULL gives "".
 */
char *cli_clean(const char *s);

/* Sleeps ms milliseconds, resuming after signals. */
void cli_sleep_ms(unsigned ms);

/*
 * Shared client-flag parsing: consumes --addr, --token and --ca (with or
 * without "=") from argv and returns the remaining count; the strings point
 * into argv. Unknown flags are left in place.
 */
struct cli_conn_flags {
	const char *addr;
	const char *token;
	const char *ca;
};
int cli_take_conn_flags(int argc, char **argv, struct cli_conn_flags *f);

/*
 * Matches "--name VALUE" or "--name=VALUE" at argv[*i]. Returns 1 and sets
 * *val (advancing *i past a separate value), 0 when argv[*i] is another
 * argument, or -1 after printing an error when the value is missing.
 */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **val);

#endif
