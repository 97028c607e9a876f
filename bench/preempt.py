#!/usr/bin/python3
"""What preemption costs a high-priority task: a manager with --preemption all
and 2 agents (bench/jobs_e2e.py's swarm), both full of low-priority
`sleep` tasks; then, one at a time, a job of one high-priority `true` task
that fits only by preempting one of them. Measures submit-to-start (the
task's start on its agent against the job's creation) and submit-to-end,
then the same task on the idle swarm, in the same run. Between rounds the
preempted task runs again, so every round finds the swarm full.
Prints key=value lines. Needs root (the agents' sandboxes).

usage: bench/preempt.py [--build DIR] [--rounds N]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_e2e  # noqa: E402

CPU = (os.cpu_count() or 2) / 2  # two of these fill one agent (each offers the host's cores)


def wait(cond, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def all_running(a, jid, n):
    ts = a.call("GET", f"/v1/jobs/{jid}/tasks")["tasks"]
    return sum(1 for t in ts if t["state"] == "running") == n


def one(a, priority):
    """Runs one high-priority task to its end; returns (submit-to-start, submit-to-end) in ms."""
    spec = {"name": "high", "tasks": [{"name": "h", "command": ["true"], "priority": priority,
                                       "resources": {"cpu": CPU, "memory": "16M"}}]}
    jid = a.call("POST", "/v1/jobs", spec)["id"]
    wait(lambda: a.call("GET", f"/v1/jobs/{jid}")["state"] != "running", 60, "the high-priority job")
    job = a.call("GET", f"/v1/jobs/{jid}")
    assert job["state"] == "succeeded", job
    t = a.call("GET", f"/v1/jobs/{jid}/tasks")["tasks"][0]
    return t["start_ms"] - job["created_ms"], job["finished_ms"] - job["created_ms"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    with jobs_e2e.swarm(args.build, "ss-bench-preempt-", ["--preemption", "all"]) as (a, _):
        low = a.call("POST", "/v1/jobs", {"name": "low", "tasks": [
            {"name": f"l{i}", "command": ["sleep", "3600"], "priority": 0,
             "resources": {"cpu": CPU, "memory": "16M"}} for i in range(4)]})["id"]
        wait(lambda: all_running(a, low, 4), 30, "the low-priority tasks to fill both agents")
        full = []
        for _ in range(args.rounds):
            full.append(one(a, 100))
            wait(lambda: all_running(a, low, 4), 30, "the preempted task to run again")
        a.call("DELETE", f"/v1/jobs/{low}")
        wait(lambda: all(t["state"] == "canceled" for t in a.call("GET", f"/v1/jobs/{low}/tasks")["tasks"]),
             30, "the low job's end")
        time.sleep(1)
        idle = [one(a, 100) for _ in range(args.rounds)]
        for name, xs in (("preempting", full), ("idle", idle)):
            st = [x[0] for x in xs]
            en = [x[1] for x in xs]
            print(f"{name}_start_ms_median={statistics.median(st):.0f}")
            print(f"{name}_start_ms_p90={pct(st, 0.9):.0f}")
            print(f"{name}_end_ms_median={statistics.median(en):.0f}")
        ts = a.call("GET", f"/v1/jobs/{low}/tasks")["tasks"]
        print(f"preempted_attempts={sum(1 for t in ts for h in t['history'] if h['outcome'] == 'preempted')}")
        print(f"rounds={args.rounds}")


if __name__ == "__main__":
    main()
