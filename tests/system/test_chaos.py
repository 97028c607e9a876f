"""Chaos: kill -9 the manager and the agents at random while jobs run.

One seeded run injects a mix of failures for SEESWARM_CHAOS_SECONDS (20 s by
default) while a three-stage DAG runs and small jobs keep arriving:
- kill -9 of the manager, restarted after up to 1.5 s;
- kill -9 of one agent, or of every agent at once, restarted with its data;
- the permanent loss of an agent (its data directory is never used again),
  replaced by a new agent with a new identity.

A periodic job launches a small DAG every second throughout. The manager
runs with --preemption all, and the small jobs (priority 20) and the periodic
one (10) outrank the big one (0), so they preempt its tasks when the swarm is
full: preemptions race the kills too.

Afterwards every submission the manager acknowledged must finish with the
right answer, and each of its tasks must have exactly one committed success
in its history. Every launch the periodic job counts must be a job, and
every job it launched must be counted, each for a different launch time. SEESWARM_CHAOS_SEED picks another sequence; the seed and the
events are in the failure message.
"""
import json
import os
import random
import time

import pytest

from conftest import SLOW
from test_jobs import get_blob, start, tasks, wait_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")


def dag(n, name, priority=0):
    """sq[i] = i*i, inc[i] = sq[i] + 1, total = sum of inc: n*2 + 1 tasks.
    Each sq output is padded past the 64 KiB the manager keeps inline, so it
    stays only on the agent that made it: inc fetches it from that peer, and
    losing that agent first makes sq run again (lineage).
    No task may be retried: a lost attempt is not a failure."""
    res = {"cpu": 0.25, "memory": "32M"}
    spec = {"name": name, "tasks": [
        {"name": "sq", "command": ["sh", "-c", "sleep 0.3; { echo $((SS_MAP_INDEX*SS_MAP_INDEX)); "
                                   "head -c 80000 /dev/zero; } > /out/v"],
         "map": {"over": [str(i) for i in range(n)]}, "outputs": ["v"], "retries": 0, "resources": res},
        {"name": "inc", "command": ["sh", "-c", "sleep 0.2; echo $(( $(head -n 1 /in/v) + 1 )) > /out/w"],
         "map": {"task": "sq"}, "outputs": ["w"], "retries": 0, "resources": res},
        {"name": "total", "command": ["sh", "-c", "cat /in/ws.* | awk '{s+=$1} END {print s}' > /out/t"],
         "inputs": [{"name": "ws", "from": "inc.w"}], "outputs": ["t"], "retries": 0, "resources": res}]}
    for t in spec["tasks"]:
        t["priority"] = priority
    return spec


def try_submit(swarm, spec):
    """Returns the job id if the manager acknowledged the submission, else None
    (the manager may be dead or starting: such a submission was never accepted)."""
    try:
        status, raw, _ = swarm.request("POST", "/v1/jobs", body=spec)
    except OSError:
        return None
    return json.loads(raw)["id"] if status == 201 else None


@pytest.mark.manager_args("--preemption", "all")
def test_random_kills_of_the_manager_and_agents_lose_nothing(swarm):
    seed = int(os.environ.get("SEESWARM_CHAOS_SEED", "4"))
    seconds = float(os.environ.get("SEESWARM_CHAOS_SECONDS", "20"))
    rnd = random.Random(seed)
    ids = start(swarm, 3)
    acked = [(try_submit(swarm, dag(40, "big")), 40)]
    assert acked[0][0], "the first submission was refused"
    periodic = try_submit(swarm, dict(dag(2, "beat", 10), periodic={"every": "1s"}))
    assert periodic, "the periodic job was refused"
    events, next_id = [], 3
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rnd.uniform(0.5, 2.5))
        n = rnd.randint(1, 8)
        jid = try_submit(swarm, dag(n, f"small-{len(events)}", 20))
        if jid:
            acked.append((jid, n))
        act = rnd.choice(["manager", "agent", "agent", "both", "all", "lose"])
        restart = []
        if act in ("manager", "both"):
            swarm.manager.kill9()
            events.append("kill manager")
        if act in ("agent", "both"):
            a = rnd.choice(ids)
            swarm.agents[a].kill9()
            restart.append(a)
            events.append(f"kill {a}")
        if act == "all":
            for a in ids:
                swarm.agents[a].kill9()
                restart.append(a)
            events.append("kill every agent")
        if act == "lose":
            a = rnd.choice(ids)
            swarm.agents[a].kill9()
            ids.remove(a)
            new = f"agent-{next_id}"
            next_id += 1
            ids.append(new)
            restart.append(new)
            events.append(f"lose {a}, add {new}")
        time.sleep(rnd.uniform(0, 1.5))
        if act in ("manager", "both"):
            swarm.start_manager()
        for a in restart:
            swarm.start_agent(a)

    story = f"seed {seed}, {len(events)} events: {', '.join(events)}"
    assert len(events) >= seconds / 3, story
    swarm.wait_ready(ids, 60 * SLOW)
    status, raw, _ = swarm.request("DELETE", f"/v1/jobs/{periodic}")
    assert status == 200, (story, raw)
    per = json.loads(raw)["periodic"]
    launched = [j["id"] for j in swarm.get_json("/v1/jobs?limit=10000")["jobs"] if j.get("parent") == periodic]
    assert len(launched) == per["launched"] and per["launched"] >= seconds / 4, (story, len(launched), per)
    ats = [launch["at_ms"] for launch in per["launches"]]
    assert len(ats) == len(set(ats)), (story, per)
    acked += [(jid, 2) for jid in launched]
    preempted = 0
    for jid, n in acked:
        wait_job(swarm, jid, 180)
        ts = tasks(swarm, jid)
        assert len(ts) == 2 * n + 1, (story, jid, sorted(ts))
        for name, t in ts.items():
            # One committed success per task, plus one for each lineage re-run
            # (which makes an output again after every copy of it was lost), and
            # never two for the same attempt.
            done = [h["attempt"] for h in t["history"] if h["outcome"] == "succeeded"]
            reruns = sum(1 for h in t["history"] if h["outcome"] == "lineage")
            assert t["state"] == "succeeded", (story, jid, name, t)
            assert len(done) == 1 + reruns and len(set(done)) == len(done), (story, jid, name, t["history"])
            preempted += sum(1 for h in t["history"] if h["outcome"] == "preempted")
        total = get_blob(swarm, ts["total"]["outputs"][0]["digest"]).decode().strip()
        assert total == str(sum(i * i + 1 for i in range(n))), (story, jid, total)
    print(f"{story}; preempted attempts: {preempted}")
