#!/usr/bin/python3
"""What periodic jobs cost the manager: a manager and 2 agents
(bench/jobs_e2e.py's swarm); the manager's CPU over an idle spell with no
periodic job and with 1,000 (the limit) that do not fire in it ("@yearly"),
how long one registration takes, and how late launches come against the
times they are for (one job "every 1s", 20 launches). Prints key=value lines.
Needs root (the agents' sandboxes).

usage: bench/periodic.py [--build DIR] [--idle SECONDS]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_e2e  # noqa: E402


def cpu_ms(pid):
    """User + system CPU of a process so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid, seconds):
    """The process's CPU per second over an idle spell, in ms/s."""
    a = cpu_ms(pid)
    time.sleep(seconds)
    return (cpu_ms(pid) - a) / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--idle", type=float, default=10.0)
    args = ap.parse_args()
    with jobs_e2e.swarm(args.build, "ss-bench-periodic-") as (a, procs):
        manager = procs[0].pid
        res = {"cpu": "10m", "memory": "4M"}
        task = [{"name": "t", "command": ["true"], "resources": res}]
        time.sleep(2)
        print(f"manager_idle_cpu_ms_per_s_none={idle_cpu(manager, args.idle):.2f}")
        ids, t0 = [], time.perf_counter()
        for i in range(1000):
            ids.append(a.call("POST", "/v1/jobs", {"name": f"p{i}", "periodic": {"cron": "@yearly"},
                                                    "tasks": task})["id"])
        print(f"register_ms_per_job={(time.perf_counter() - t0) * 1000 / len(ids):.2f}")
        print(f"manager_idle_cpu_ms_per_s_1000_periodic={idle_cpu(manager, args.idle):.2f}")
        for pid in ids:
            a.call("DELETE", f"/v1/jobs/{pid}")
        beat = a.call("POST", "/v1/jobs", {"name": "beat", "periodic": {"every": "1s"}, "tasks": task})["id"]
        deadline = time.monotonic() + 60
        while a.call("GET", f"/v1/jobs/{beat}")["periodic"]["launched"] < 20 and time.monotonic() < deadline:
            time.sleep(0.5)
        p = a.call("GET", f"/v1/jobs/{beat}")
        a.call("DELETE", f"/v1/jobs/{beat}")
        lags = []
        for launch in p["periodic"]["launches"]:
            kid = a.call("GET", f"/v1/jobs/{launch['id']}")
            lags.append(kid["created_ms"] - launch["at_ms"])
        lags.sort()
        print(f"launches={len(lags)}")
        print(f"launch_lag_ms_median={statistics.median(lags):.0f}")
        print(f"launch_lag_ms_max={lags[-1]:.0f}")


if __name__ == "__main__":
    main()
