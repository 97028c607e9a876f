"""Priorities and preemption end to end: with --preemption, a task that fits
nowhere stops attempts of tasks at least 10 priority points below it; the
preempted task is pending again at once, keeps its retries and runs again;
a gap under 10 points preempts nothing, and neither does a manager without
--preemption or, under --preemption tenant, another tenant's task."""
import json
import os
import re
import time

import pytest

from conftest import SLOW, wait_for
from test_job_cli import start
from test_tenants import make_token

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")

# Each agent offers the host's cores; a task of this many CPUs takes half of a 2-core agent.
CPU = (os.cpu_count() or 2) / 2


def submit(swarm, name, priority, command, n=1, token="default", retries=2, **extra):
    spec = {"name": name, "tasks": [
        dict({"name": f"{name}{i}", "command": ["sh", "-c", command], "outputs": ["o"], "priority": priority,
              "retries": retries, "resources": {"cpu": CPU, "memory": "32M"}}, **extra) for i in range(n)]}
    st, body, _ = swarm.request("POST", "/v1/jobs", spec, token=token)
    assert st in (200, 201), (st, body)
    return json.loads(body)["id"]


def tasks(swarm, jid):
    return swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"]


def running(swarm, jid, n):
    ts = tasks(swarm, jid)
    return len(ts) == n and all(t["state"] == "running" for t in ts)


def preempted(swarm, jid):
    return [h for t in tasks(swarm, jid) for h in t["history"] if h["outcome"] == "preempted"]


def metric(swarm, name):
    _, raw, _ = swarm.request("GET", "/metrics")
    m = re.search(rf"^{name} (\d+)$", raw.decode(), re.M)
    return int(m.group(1)) if m else None


@pytest.mark.manager_args("--preemption", "all")
def test_a_task_preempts_lower_priority_attempts_which_run_again(swarm):
    start(swarm, 1)
    low = submit(swarm, "low", 0, "sleep 6; echo low > /out/o", n=2)
    wait_for(lambda: running(swarm, low, 2), 20 * SLOW, what="both low tasks running")

    # A plan counts the preemptions without making them: 10 points above preempt one attempt each,
    # and a third task finds nothing left to preempt; 9 points above preempt nothing.
    def spec(priority, n):
        return {"name": "p", "tasks": [{"name": f"p{i}", "command": ["true"], "priority": priority,
                                        "resources": {"cpu": CPU, "memory": "32M"}} for i in range(n)]}
    st, raw, _ = swarm.request("POST", "/v1/jobs/plan", spec(10, 3))
    plan = json.loads(raw)
    assert st == 200 and plan["preempts"] == 2 and plan["placed_now"] == 2, plan
    assert plan["not_placed_now"] == 1 and plan["groups"][2]["reason"].endswith("insufficient cpu"), plan
    st, raw, _ = swarm.request("POST", "/v1/jobs/plan", spec(9, 1))
    plan = json.loads(raw)
    assert st == 200 and "preempts" not in plan and plan["placed_now"] == 0, plan
    with open(os.path.join(swarm.tmp, "p.json"), "w") as f:
        json.dump(spec(10, 1), f)
    r = swarm.cli("job", "plan", os.path.join(swarm.tmp, "p.json"))
    assert "preemption: 1 running attempt of lower priority would be stopped" in r.stdout, r.stdout
    assert re.search(r"by preempting 1 running attempt\n", r.stdout), r.stdout
    assert preempted(swarm, low) == [] and running(swarm, low, 2)

    # 9 points above: not enough to preempt; it waits for room like any task.
    mid = submit(swarm, "mid", 9, "echo mid > /out/o")
    time.sleep(1.5)
    t = tasks(swarm, mid)[0]
    assert t["state"] == "pending" and "insufficient cpu" in t["reason"], t
    assert preempted(swarm, low) == [] and running(swarm, low, 2)
    swarm.cli("job", "cancel", mid)

    # 10 points above: one low attempt (the newest) makes room at once.
    high = submit(swarm, "high", 10, "echo high > /out/o")
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{high}")["state"] == "succeeded", 20 * SLOW,
             what="the high-priority job")
    h = tasks(swarm, high)[0]
    # The agent took it on its first attempt: it waited for the preempted attempt to end instead of refusing it.
    assert h["attempt"] == 1 and [x["outcome"] for x in h["history"]] == ["succeeded"], h
    p = preempted(swarm, low)
    assert len(p) == 1 and re.fullmatch(rf"preempted by {re.escape(h['id'])} \(high0, priority 10\)",
                                        p[0]["reason"]), p
    lows = tasks(swarm, low)
    # The high task ran before the low ones could have ended by themselves.
    assert h["end_ms"] < min(x["start_ms"] for x in lows if x["attempt"] == 1) + 6000, (h, lows)
    assert metric(swarm, "seeswarm_tasks_preempted_total") == 1

    # The preempted task runs again, with no retry or lost attempt counted, and the job succeeds.
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{low}")["state"] == "succeeded", 40 * SLOW,
             what="the low-priority job")
    again = [x for x in tasks(swarm, low) if x["attempt"] == 2]
    assert len(again) == 1 and again[0]["failures"] == 0 and again[0]["lost"] == 0, again
    assert [x["outcome"] for x in again[0]["history"]] == ["preempted", "succeeded"], again
    # job status --attempts shows each ended attempt with its outcome and why.
    r = swarm.cli("job", "status", low, "--attempts")
    assert re.search(r"\n  attempt 1\s+agent-0\s+preempted\s+\S+\s+preempted by " + re.escape(h["id"]),
                     r.stdout), r.stdout
    assert re.search(r"\n  attempt 2\s+agent-0\s+succeeded\s+\d", r.stdout), r.stdout


def test_without_preemption_a_higher_priority_task_waits(swarm):
    start(swarm, 1)
    low = submit(swarm, "low", -100, "sleep 4; echo low > /out/o", n=2)
    wait_for(lambda: running(swarm, low, 2), 20 * SLOW, what="both low tasks running")
    high = submit(swarm, "high", 1000, "echo high > /out/o")
    time.sleep(1.5)
    t = tasks(swarm, high)[0]
    assert t["state"] == "pending" and "insufficient cpu" in t["reason"], t
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{high}")["state"] == "succeeded", 30 * SLOW,
             what="the high-priority job, once room was free")
    assert preempted(swarm, low) == [] and metric(swarm, "seeswarm_tasks_preempted_total") == 0
    assert swarm.get_json(f"/v1/jobs/{low}")["state"] == "succeeded"


@pytest.mark.manager_args("--preemption", "tenant")
def test_under_tenant_preemption_only_the_tenants_own_tasks_are_preempted(swarm):
    start(swarm, 1)
    toks = {name: make_token(swarm, name)["token"] for name in ("alpha", "beta")}
    # beta's task has the lower priority, so it would be the first to go if tenants did not matter.
    other = submit(swarm, "beta-low", -50, "sleep 5; echo b > /out/o", token=toks["beta"])
    own = submit(swarm, "alpha-low", 0, "sleep 5; echo a > /out/o", token=toks["alpha"])
    wait_for(lambda: running(swarm, other, 1) and running(swarm, own, 1), 20 * SLOW,
             what="both tenants' tasks running")
    high = submit(swarm, "alpha-high", 500, "echo high > /out/o", token=toks["alpha"])
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{high}")["state"] == "succeeded", 20 * SLOW,
             what="alpha's high-priority job")
    assert len(preempted(swarm, own)) == 1 and preempted(swarm, other) == []
    # beta's attempt ran on undisturbed.
    b = tasks(swarm, other)[0]
    assert b["attempt"] == 1, b




@pytest.mark.manager_args("--preemption", "all")
def test_a_preempted_task_gets_its_kill_grace(swarm):
    """kill_grace reaches the sandbox: a preempted task that catches SIGTERM ends at once; one that
    does not holds its room until the grace runs out, and the preempting task waits for it."""
    start(swarm, 1)

    lows = []

    def preempt_once(command):
        low = submit(swarm, "low", 0, command, n=2, kill_grace="3s")
        lows.append(low)
        wait_for(lambda: running(swarm, low, 2), 20 * SLOW, what="both low tasks running")
        time.sleep(0.3)  # past the shell's trap
        high = submit(swarm, "high", 50, "echo high > /out/o")
        wait_for(lambda: swarm.get_json(f"/v1/jobs/{high}")["state"] == "succeeded", 20 * SLOW,
                 what="the high-priority job")
        job = swarm.get_json(f"/v1/jobs/{high}")
        started = tasks(swarm, high)[0]["start_ms"] - job["created_ms"]
        swarm.cli("job", "cancel", low)
        wait_for(lambda: all(t["state"] == "canceled" for t in tasks(swarm, low)), 20 * SLOW,
                 what="the low job canceled")
        return started

    # Catches SIGTERM and ends: the preempting task starts without waiting out the grace. What it
    # printed meanwhile is in the preempted attempt's log.
    assert preempt_once("trap 'echo checkpoint; exit 0' TERM; while :; do sleep 0.05; done") < 2000
    t = [t for t in tasks(swarm, lows[0]) if any(h["outcome"] == "preempted" for h in t["history"])][0]

    def logged():
        logs = swarm.get_json(f"/v1/tasks/{t['id']}/logs")["attempts"]
        return [a for a in logs if a["attempt"] == 1 and "checkpoint" in a["stdout"]]
    wait_for(logged, 10 * SLOW, what="the preempted attempt's log")
    assert logged()[0]["status"] == "signaled" and logged()[0]["message"].startswith("cancelled: preempted by")
    # Does not catch it (a namespace's init ignores it): SIGKILL after 3 s, and only then the start.
    assert preempt_once("sleep 60") >= 2900


def die_at(swarm, point, action):
    """Runs action with the manager armed to kill itself at failpoint point; waits for its death."""
    swarm.manager.term()
    swarm.env["SEESWARM_FAILPOINT"] = point
    swarm.start_manager()
    del swarm.env["SEESWARM_FAILPOINT"]
    wait_for(lambda: all(n.get("connected") for n in swarm.nodes().values()), 10 * SLOW,
             what="the agents back with the armed manager")
    time.sleep(0.5)  # and past their first heartbeat
    try:
        action()
    except (OSError, AssertionError):
        pass  # the manager died before it answered: nothing was acknowledged
    wait_for(lambda: not swarm.manager.alive(), 10 * SLOW, what=f"the manager to die at failpoint {point}")
    assert f"failpoint {point}: killing this process" in swarm.manager.text()


@pytest.mark.manager_args("--preemption", "all")
def test_cancels_the_manager_sent_but_did_not_commit_cost_no_retry(swarm):
    """A manager killed after it sent cancels and before the commit that records them: the restarted
    manager still holds those attempts as running, and their agent reports them cancelled. That is not
    the tasks' fault; tasks without a retry left must run again, not fail."""
    ids = start(swarm, 1)
    agent = swarm.agents[ids[0]]

    # A job cancel the user never got an answer for: the job goes on.
    job = submit(swarm, "job", 0, "sleep 3; echo j > /out/o", retries=0)
    wait_for(lambda: running(swarm, job, 1), 20 * SLOW, what="the task running")
    die_at(swarm, "cancel", lambda: swarm.request("DELETE", f"/v1/jobs/{job}"))
    wait_for(lambda: "job canceled" in agent.text(), 10 * SLOW, what="the agent to get the cancel")
    swarm.start_manager()
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{job}")["state"] != "running", 40 * SLOW, what="the job's end")
    t = tasks(swarm, job)[0]
    assert swarm.get_json(f"/v1/jobs/{job}")["state"] == "succeeded", t
    assert [h["outcome"] for h in t["history"]] == ["cancelled", "succeeded"] and t["failures"] == 0, t
    assert t["history"][0]["reason"].startswith("signaled: cancelled: job canceled"), t

    # A preemption: the preempting task runs and the preempted one runs again; neither fails.
    low = submit(swarm, "low", 0, "sleep 3; echo low > /out/o", n=2, retries=0)
    wait_for(lambda: running(swarm, low, 2), 20 * SLOW, what="both low tasks running")
    die_at(swarm, "preempt", lambda: submit(swarm, "high", 50, "echo high > /out/o"))
    wait_for(lambda: "preempted by" in agent.text(), 10 * SLOW, what="the agent to get the cancel")
    swarm.start_manager()
    jobs = [j for j in swarm.get_json("/v1/jobs")["jobs"] if j["name"] in ("low", "high")]
    assert len(jobs) == 2, jobs  # the high job was acknowledged before the preemption
    for j in jobs:
        wait_for(lambda: swarm.get_json(f"/v1/jobs/{j['id']}")["state"] != "running", 40 * SLOW,
                 what=f"job {j['name']} to end")
        assert swarm.get_json(f"/v1/jobs/{j['id']}")["state"] == "succeeded", tasks(swarm, j["id"])
    assert all(t["failures"] == 0 for t in tasks(swarm, low)), tasks(swarm, low)
