/*
 * agent.h - the agent daemon: `seeswarm agent`. Runs inside each SEE,
 * connects to the manager over mutual TLS, attests, heartbeats with its
 * load, and reconnects forever with exponential backoff and jitter.
 */
#ifndef SS_AGENT_H
#define SS_AGENT_H

/* Parses the agent's flags and runs it until SIGTERM/SIGINT. Returns an exit status. */
int agent_main(int argc, char **argv);

#endif
