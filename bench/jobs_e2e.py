#!/usr/bin/python3
"""End-to-end job throughput and latency, with the comparisons issue 5 asks for.

One run, on this machine, in this order:
  1. seeswarm: a manager and 2 agents (real sandboxes, real mTLS, SQLite
     group commit); one job of N no-op tasks (`true`, no outputs); throughput
     from submission to the last result committed, and submit-to-start
     latency per task (task start_ms - job created_ms).
  2. raw parallel fork/exec of /bin/true with 2 workers (a C loop:
     build/bench/bench_forkexec).
  3. GNU parallel -j2 running N `true`.
  4. Dask distributed (Debian's python3-distributed), LocalCluster with 2
     worker processes bound to 127.0.0.1: N no-op Python tasks, then 200
     subprocess tasks (`true`); latency = task start - submit.
Prints key=value lines; ratios at the end. Needs root (the sandbox).

usage: bench/jobs_e2e.py [--tasks N] [--build DIR] [--agent-arg ARG]...
"""
import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request


AGENT_ARGS = []


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


class Api:
    def __init__(self, addr, token, ca):
        self.addr, self.token = addr, token
        self.ctx = ssl.create_default_context(cafile=ca)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://{self.addr}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, context=self.ctx, timeout=120) as r:
            return json.loads(r.read())


def start_swarm(binary, tmp, procs, env, manager_args=()):
    """Starts a manager (with manager_args) and 2 agents; returns the API handle once both are ready."""
    port = 17400 + os.getpid() % 1000 * 2
    listen, api = f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"
    mdir = os.path.join(tmp, "manager")
    log = open(os.path.join(tmp, "manager.log"), "w")
    procs.append(subprocess.Popen([binary, "manager", "--data-dir", mdir, "--listen", listen,
                                   "--api", api, "--insecure-sim-attestation"] + list(manager_args),
                                  stdout=log, stderr=subprocess.STDOUT, env=env))
    for _ in range(200):
        if os.path.exists(env["SEESWARM_CONFIG"]):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    conf = json.load(open(env["SEESWARM_CONFIG"]))
    a = Api(api, conf["token"], conf["ca_file"])
    for i in range(2):
        adir = os.path.join(tmp, f"agent-{i}")
        subprocess.run([binary, "ca", "issue-agent", "--data-dir", mdir, "--out", adir,
                        "--id", f"agent-{i}"], check=True, capture_output=True, env=env)
        alog = open(os.path.join(tmp, f"agent-{i}.log"), "w")
        procs.append(subprocess.Popen([binary, "agent", "--join", listen, "--data-dir", adir,
                                       "--insecure-sim-attestation"] + AGENT_ARGS,
                                      stdout=alog, stderr=subprocess.STDOUT, env=env))
    for _ in range(400):
        nodes = a.call("GET", "/v1/nodes")["nodes"]
        if sum(1 for x in nodes if x["state"] == "ready") == 2:
            break
        time.sleep(0.05)
    return a


@contextlib.contextmanager
def swarm(build, prefix, manager_args=()):
    """A manager (with manager_args) and 2 agents of build/seeswarm in a new temporary directory,
    stopped and removed on exit. Yields (api, procs); procs[0] is the manager."""
    binary = os.path.abspath(os.path.join(build, "seeswarm"))
    tmp = tempfile.mkdtemp(prefix=prefix)
    procs = []
    env = dict(os.environ, SEESWARM_CONFIG=os.path.join(tmp, "client.json"))
    try:
        yield start_swarm(binary, tmp, procs, env, manager_args), procs
    finally:
        stop_swarm(procs, tmp)


def stop_swarm(procs, tmp):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def recovery_run(binary, rounds=3):
    """Seconds from kill -9 of an agent to all of its tasks running on the other agent."""
    out = []
    for _ in range(rounds):
        tmp = tempfile.mkdtemp(prefix="ss-bench-rec-")
        procs = []
        env = dict(os.environ, SEESWARM_CONFIG=os.path.join(tmp, "client.json"))
        try:
            a = start_swarm(binary, tmp, procs, env)
            spec = {"name": "sleepers", "policy": {"placement": "spread"}, "tasks": [
                {"name": "s", "command": ["sleep", "60"], "map": {"over": [str(i) for i in range(4)]},
                 "resources": {"cpu": "250m", "memory": "16M"}, "retries": 0}]}
            job = a.call("POST", "/v1/jobs", spec)
            victim = None
            for _ in range(400):
                ts = a.call("GET", f"/v1/jobs/{job['id']}/tasks")["tasks"]
                on0 = [t["id"] for t in ts if t["state"] == "running" and t["node"] == "agent-0"]
                if on0 and all(t["state"] == "running" for t in ts):
                    victim = on0
                    break
                time.sleep(0.05)
            if not victim:
                continue
            procs[1].kill()  # agent-0, SIGKILL
            t0 = time.time()
            while time.time() - t0 < 30:
                ts = {t["id"]: t for t in a.call("GET", f"/v1/jobs/{job['id']}/tasks")["tasks"]}
                if all(ts[i]["state"] == "running" and ts[i]["node"] == "agent-1" for i in victim):
                    out.append(time.time() - t0)
                    break
                time.sleep(0.01)
        finally:
            stop_swarm(procs, tmp)
    return out


def seeswarm_run(binary, n):
    tmp = tempfile.mkdtemp(prefix="ss-bench-jobs-")
    procs = []
    env = dict(os.environ, SEESWARM_CONFIG=os.path.join(tmp, "client.json"))
    try:
        a = start_swarm(binary, tmp, procs, env)
        per = 2500
        groups = [{"name": f"g{g}", "command": ["true"],
                   "map": {"over": [str(i) for i in range(min(per, n - g * per))]},
                   "resources": {"cpu": "100m", "memory": "16M", "disk": "1M",
                                 "output": "1M", "pids": 8}, "retries": 0}
                  for g in range((n + per - 1) // per)]
        spec = {"name": "noop", "tasks": groups}
        t0 = time.time()
        job = a.call("POST", "/v1/jobs", spec)
        while True:
            j = a.call("GET", f"/v1/jobs/{job['id']}")
            if j["state"] != "running":
                break
            time.sleep(0.1)
        t1 = time.time()
        tasks = a.call("GET", f"/v1/jobs/{job['id']}/tasks")["tasks"]
        ok = sum(1 for t in tasks if t["state"] == "succeeded")
        created = j["created_ms"]
        lat = [(t["start_ms"] - created) / 1000 for t in tasks if t.get("start_ms")]
        last_end = max(t.get("end_ms", 0) for t in tasks) / 1000
        wall = max(last_end - created / 1000, 1e-9)
        # Idle latency: one single-task job at a time, so nothing waits in a backlog.
        idle = []
        for i in range(100):
            one = {"name": f"one{i}", "tasks": [{"name": "t", "command": ["true"], "retries": 0,
                                                  "resources": {"cpu": "100m", "memory": "16M"}}]}
            jo = a.call("POST", "/v1/jobs", one)
            for _ in range(2000):
                jj = a.call("GET", f"/v1/jobs/{jo['id']}")
                if jj["state"] != "running":
                    break
                time.sleep(0.002)
            [t] = a.call("GET", f"/v1/jobs/{jo['id']}/tasks")["tasks"]
            if t.get("start_ms"):
                idle.append((t["start_ms"] - jj["created_ms"]) / 1000)
        return {"state": j["state"], "ok": ok, "wall_s": wall, "poll_wall_s": t1 - t0,
                "throughput": ok / wall, "lat_p50_ms": pct(lat, 0.5) * 1000,
                "lat_p99_ms": pct(lat, 0.99) * 1000,
                "idle_lat_p50_ms": pct(idle, 0.5) * 1000, "idle_lat_p99_ms": pct(idle, 0.99) * 1000}
    finally:
        stop_swarm(procs, tmp)


def forkexec_run(build, n):
    out = subprocess.run([os.path.join(build, "bench", "bench_forkexec"), str(n), "2"],
                         capture_output=True, text=True, check=True).stdout
    kv = dict(l.split("=", 1) for l in out.split())
    return float(kv["forkexec_per_second"])


def gnu_parallel_run(n):
    if not shutil.which("parallel"):
        return None
    t0 = time.time()
    subprocess.run(["parallel", "-j2", "true", ":::"] + [str(i) for i in range(n)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return n / (time.time() - t0)


def dask_noop(i, t_submit):
    import time as _t
    return _t.time() - t_submit


def dask_proc(i, t_submit):
    import subprocess as _s
    import time as _t
    start = _t.time() - t_submit
    _s.run(["true"], check=True)
    return start


def dask_run(n):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        res = {}
        for name, fn, count in (("noop", dask_noop, n), ("subprocess", dask_proc, 200)):
            t0 = time.time()
            futs = c.map(fn, range(count), t_submit=t0, pure=False)
            lat = c.gather(futs)
            wall = time.time() - t0
            res[name] = {"throughput": count / wall, "lat_p50_ms": pct(lat, 0.5) * 1000,
                         "lat_p99_ms": pct(lat, 0.99) * 1000}
        # Idle latency: one task at a time.
        idle = []
        for i in range(100):
            t0 = time.time()
            idle.append(c.submit(dask_noop, i, t_submit=t0, pure=False).result())
        res["idle"] = {"lat_p50_ms": pct(idle, 0.5) * 1000, "lat_p99_ms": pct(idle, 0.99) * 1000}
        return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--build", default="build")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="an extra agent argument, repeatable (e.g. --agent-arg=--warm-sandboxes=0)")
    args = ap.parse_args()
    AGENT_ARGS.extend(args.agent_arg)
    if os.geteuid() != 0:
        print("jobs_e2e_skipped=needs root")
        return 0
    binary = os.path.abspath(os.path.join(args.build, "seeswarm"))
    n = args.tasks
    s = seeswarm_run(binary, n)
    for k, v in s.items():
        print(f"seeswarm_{k}={v:.3f}" if isinstance(v, float) else f"seeswarm_{k}={v}")
    fe = forkexec_run(args.build, n)
    print(f"forkexec_per_second={fe:.1f}")
    gp = gnu_parallel_run(n)
    print(f"gnu_parallel_per_second={gp:.1f}" if gp else "gnu_parallel=not installed (apt-get install parallel)")
    d = dask_run(n)
    if d:
        for kind, r in d.items():
            for k, v in r.items():
                print(f"dask_{kind}_{k}={v:.3f}")
    else:
        print("dask=not installed (apt-get install python3-distributed)")
    print(f"ratio_seeswarm_vs_forkexec={s['throughput'] / fe:.3f}")
    if gp:
        print(f"ratio_seeswarm_vs_gnu_parallel={s['throughput'] / gp:.3f}")
    if d:
        print(f"ratio_seeswarm_vs_dask_noop_throughput={s['throughput'] / d['noop']['throughput']:.3f}")
        print(f"ratio_dask_vs_seeswarm_median_latency={d['noop']['lat_p50_ms'] / max(s['lat_p50_ms'], 1e-9):.3f}")
        print(f"ratio_dask_vs_seeswarm_idle_median_latency="
              f"{d['idle']['lat_p50_ms'] / max(s['idle_lat_p50_ms'], 1e-9):.3f}")
    rec = recovery_run(binary)
    if rec:
        print("recovery_seconds=" + ",".join(f"{x:.2f}" for x in rec))
        print(f"recovery_median_seconds={sorted(rec)[len(rec) // 2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
