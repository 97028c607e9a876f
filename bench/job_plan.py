#!/usr/bin/python3
"""How long `POST /v1/jobs/plan` holds the manager's loop, against a submission
of the same spec: a manager and 2 agents (bench/jobs_e2e.py's swarm), a spec
of 10,000 ready tasks in 4 mapped groups, and one of 256 groups in a chain
(each waiting for the one before). Prints key=value lines (milliseconds,
median of 5 plans, then one submission). Needs root (the agents' sandboxes).

usage: bench/job_plan.py [--build DIR]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_e2e  # noqa: E402


def timed(a, method, path, body):
    t = time.perf_counter()
    out = a.call(method, path, body)
    return (time.perf_counter() - t) * 1000, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    with jobs_e2e.swarm(args.build, "ss-bench-plan-") as (a, _):
        res = {"cpu": "10m", "memory": "4M"}
        wide = {"name": "wide", "tasks": [
            {"name": f"g{g}", "command": ["true"], "resources": res,
             "map": {"over": [str(i) for i in range(2500)]}} for g in range(4)]}
        chain = {"name": "chain", "tasks": [{"name": "g0", "command": ["true"], "resources": res}] + [
            {"name": f"g{g}", "command": ["true"], "after": [f"g{g - 1}"], "resources": res}
            for g in range(1, 256)]}
        for name, spec in (("ready_10000", wide), ("chain_256", chain)):
            ms = sorted(timed(a, "POST", "/v1/jobs/plan", spec)[0] for _ in range(5))
            print(f"plan_{name}_median_ms={ms[2]:.1f}")
            print(f"plan_{name}_min_ms={ms[0]:.1f}")
        ms, job = timed(a, "POST", "/v1/jobs", wide)
        print(f"submit_ready_10000_ms={ms:.1f}")
        a.call("DELETE", f"/v1/jobs/{job['id']}")


if __name__ == "__main__":
    main()
