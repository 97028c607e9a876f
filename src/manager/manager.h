/*
 * manager.h - the manager daemon: `seeswarm manager`.
 *
 * One libuv loop thread owns all state (registry, sessions, store). It
 * listens for agents (mutual TLS 1.3, framed protobuf), runs the admission
 * handshake, tracks heartbeats, detects failures and serves the HTTPS API.
 */
#ifndef SS_MANAGER_H
#define SS_MANAGER_H

/* Parses the manager's flags and runs it until SIGTERM/SIGINT. Returns an exit status. */
int manager_main(int argc, char **argv);

#endif
