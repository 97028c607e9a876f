"""Jobs end to end: real manager and agents, real sandboxes, real processes.

Every test submits through the HTTPS API (the CLI has its own tests in
test_job_cli.py), waits on observable state, and checks results byte for
byte. The sandbox needs root; without it these tests skip.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import SLOW, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")

TEXT = ("the quick brown fox jumps over the lazy dog\n"
        "a swarm of secure enclaves counts words\n"
        "\n"
        "attested nodes only  please\n") * 50


def put_blob(swarm, data):
    digest = hashlib.sha256(data).hexdigest()
    status, raw, _ = swarm.request("PUT", f"/v1/blobs/{digest}", body=data,
                                   headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (status, raw)
    return {"digest": digest, "size": len(data)}


def get_blob(swarm, digest):
    status, raw, _ = swarm.request("GET", f"/v1/blobs/{digest}")
    assert status == 200, (status, raw)
    assert hashlib.sha256(raw).hexdigest() == digest
    return raw


def submit(swarm, spec, expect=201):
    status, raw, _ = swarm.request("POST", "/v1/jobs", body=spec)
    assert status == expect, (status, raw)
    return json.loads(raw)


def job(swarm, jid):
    return swarm.get_json(f"/v1/jobs/{jid}")


def tasks(swarm, jid):
    return {t["name"]: t for t in swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"]}


def wait_job(swarm, jid, timeout, state="succeeded"):
    def done():
        j = job(swarm, jid)
        return j if j["state"] != "running" else None
    j = wait_for(done, timeout * SLOW, interval=0.1, what=f"job {jid} to finish")
    if j["state"] != state:
        # The job's reason and the tasks that did not succeed first: they say why.
        ts = tasks(swarm, jid)
        bad = {k: v for k, v in ts.items() if v.get("state") != "succeeded"}
        raise AssertionError(f"job {jid} ended {j['state']}, expected {state}: {j.get('reason')}\n"
                             f"not succeeded: {json.dumps(bad, indent=1)[:6000]}\n"
                             f"all: {json.dumps(ts, indent=1)[:3000]}")
    return j


def start(swarm, n=2, labels=None, extra=()):
    swarm.start_manager()
    ids = [f"agent-{i}" for i in range(n)]
    for i, a in enumerate(ids):
        swarm.start_agent(a, labels=(labels[i] if labels else ()), extra=extra)
    swarm.wait_ready(ids, 20 * SLOW)
    return ids


def wordcount_spec(shards):
    return {
        "name": "wordcount",
        "tasks": [
            {"name": "count",
             "command": ["sh", "-c", "wc -w < /in/text | tr -d ' ' > /out/count"],
             "inputs": [{"name": "text", "blobs": shards}],
             "outputs": ["count"],
             "map": {"input": "text"},
             "resources": {"cpu": 0.5, "memory": "64M"}},
            {"name": "sum",
             "command": ["sh", "-c", "cat /in/counts.* | awk '{s+=$1} END {print s}' > /out/total"],
             "inputs": [{"name": "counts", "from": "count.count"}],
             "outputs": ["total"],
             "resources": {"cpu": 0.5, "memory": "64M"}},
        ],
    }


def test_wordcount_dag_gives_the_right_answer(swarm):
    ids = start(swarm, 2)
    lines = TEXT.splitlines(keepends=True)
    shards = [put_blob(swarm, "".join(lines[i::4]).encode()) for i in range(4)]
    j = submit(swarm, wordcount_spec(shards))
    assert j["tasks_total"] == 5
    j = wait_job(swarm, j["id"], 60)
    [res] = j["results"]
    assert res["task_name"] == "sum" and res["name"] == "total"
    assert get_blob(swarm, res["digest"]).decode().strip() == str(len(TEXT.split()))
    ts = tasks(swarm, j["id"])
    assert set(ts) == {"count[0]", "count[1]", "count[2]", "count[3]", "sum"}
    for t in ts.values():
        assert t["state"] == "succeeded" and t["node"] in ids, t
    # Logs and a receipt for every task.
    logs = swarm.get_json(f"/v1/tasks/{ts['sum']['id']}/logs")
    [att] = logs["attempts"]
    assert att["ok"] and att["status"] == "exited" and att["code"] == 0
    receipt = json.loads(att["receipt"])
    assert receipt["receipt"]["node_id"] == ts["sum"]["node"]


def test_cyclic_and_infeasible_specs_are_refused_with_precise_messages(swarm):
    start(swarm, 1)
    cyc = {"name": "cyc", "tasks": [
        {"name": "a", "command": ["true"], "outputs": ["o"], "after": ["c"]},
        {"name": "b", "command": ["true"], "outputs": ["o"], "after": ["a"]},
        {"name": "c", "command": ["true"], "outputs": ["o"], "after": ["b"]}]}
    status, raw, _ = swarm.request("POST", "/v1/jobs", body=cyc)
    assert status == 400
    msg = json.loads(raw)["error"]["message"]
    assert re.search(r"cycle: a -> c -> b -> a|cycle: a -> b -> c -> a", msg) or "cycle" in msg, msg
    for name in ("a", "b", "c"):
        assert name in msg
    big = {"name": "big", "tasks": [
        {"name": "huge", "command": ["true"], "outputs": ["o"], "resources": {"memory": "1T"}}]}
    status, raw, _ = swarm.request("POST", "/v1/jobs", body=big)
    assert status == 400
    msg = json.loads(raw)["error"]["message"]
    assert "memory" in msg and "largest node" in msg, msg
    missing = {"name": "m", "tasks": [
        {"name": "a", "command": ["true"], "outputs": ["o"], "after": ["nope"]}]}
    status, raw, _ = swarm.request("POST", "/v1/jobs", body=missing)
    assert status == 400 and "nope" in json.loads(raw)["error"]["message"]
    unknown_blob = {"name": "u", "tasks": [
        {"name": "a", "command": ["true"], "outputs": ["o"],
         "inputs": [{"name": "x", "blob": "ab" * 32}]}]}
    status, raw, _ = swarm.request("POST", "/v1/jobs", body=unknown_blob)
    assert status == 400 and "not been uploaded" in json.loads(raw)["error"]["message"]


def test_task_needing_a_tee_no_node_has_stays_pending_with_an_explanation(swarm):
    start(swarm, 2)
    spec = {"name": "snp-only", "policy": {"tee": ["sev-snp"], "attestation": "hardware"},
            "tasks": [{"name": "secret", "command": ["true"], "outputs": ["o"]}]}
    j = submit(swarm, spec)
    time.sleep(1.0 * SLOW)
    t = tasks(swarm, j["id"])["secret"]
    assert t["state"] == "pending" and t["attempt"] == 0 and t["node"] == "", t
    assert "feasible" in t["reason"], t
    ex = swarm.get_json(f"/v1/jobs/{j['id']}/explain?task=secret")
    [e] = ex["tasks"]
    nodes = e["placement"]["nodes"]
    assert e["placement"]["chosen"] is None and len(nodes) == 2
    for n in nodes:
        assert n["feasible"] is False and ("sim" in n["reason"] or "hardware" in n["reason"]), n
    status, raw, _ = swarm.request("DELETE", f"/v1/jobs/{j['id']}")
    assert status == 200 and json.loads(raw)["state"] == "canceled"


def test_failures_retry_then_fail_their_dependants(swarm):
    start(swarm, 1)
    spec = {"name": "flaky", "on_failure": "continue", "tasks": [
        {"name": "bad", "command": ["sh", "-c", "echo oops >&2; exit 3"], "outputs": ["o"],
         "retries": {"count": 1, "backoff": "100ms"}},
        {"name": "after-bad", "command": ["true"], "outputs": ["o"], "after": ["bad"]},
        {"name": "good", "command": ["sh", "-c", "echo fine > /out/o"], "outputs": ["o"]}]}
    j = submit(swarm, spec)
    j = wait_job(swarm, j["id"], 60, state="failed")
    ts = tasks(swarm, j["id"])
    assert ts["bad"]["state"] == "failed" and ts["bad"]["attempt"] == 2
    assert ts["bad"]["status"] == "exited" and ts["bad"]["code"] == 3
    assert [h["outcome"] for h in ts["bad"]["history"]] == ["exited", "exited"]
    assert ts["after-bad"]["state"] == "failed" and "dependency bad failed" in ts["after-bad"]["reason"]
    assert ts["good"]["state"] == "succeeded"
    logs = swarm.get_json(f"/v1/tasks/{ts['bad']['id']}/logs")
    assert len(logs["attempts"]) == 2 and "oops" in logs["attempts"][0]["stderr"]


def test_blob_upload_with_the_wrong_digest_is_refused(swarm):
    start(swarm, 1)
    status, raw, _ = swarm.request("PUT", "/v1/blobs/" + "00" * 32, body=b"not that")
    assert status == 400 and "hash" in json.loads(raw)["error"]["message"]
    status, _, _ = swarm.request("GET", "/v1/blobs/" + "00" * 32)
    assert status == 404
    status, _, _ = swarm.request("PUT", "/v1/blobs/xyz", body=b"x")
    assert status == 404


def sleepers(n, seconds, name="sleepers", cpu=1, spread=False):
    return {"name": name, "policy": {"placement": "spread" if spread else "binpack"}, "tasks": [
        {"name": "s", "command": ["sh", "-c", f"sleep {seconds}; echo $SS_MAP_INDEX > /out/o"],
         "outputs": ["o"], "map": {"over": [str(i) for i in range(n)]},
         "resources": {"cpu": cpu, "memory": "32M"}, "retries": 0}]}


def test_kill9_of_an_agent_running_tasks_job_still_completes(swarm):
    ids = start(swarm, 2)
    j = submit(swarm, sleepers(6, 2))
    jid = j["id"]

    def running_on_0():
        return [t for t in tasks(swarm, jid).values()
                if t["state"] in ("placed", "running") and t["node"] == ids[0]]
    wait_for(running_on_0, 20 * SLOW, what="a task running on agent-0")
    swarm.agents[ids[0]].kill9()
    j = wait_job(swarm, jid, 90)
    ts = tasks(swarm, jid)
    moved = [t for t in ts.values() if any(h["outcome"] == "lost" for h in t["history"])]
    assert moved, "no task was lost with agent-0"
    for t in moved:
        assert t["node"] == ids[1] and t["attempt"] >= 2, t
    for name, t in ts.items():
        idx = name[name.index("[") + 1:-1]
        assert get_blob(swarm, t["outputs"][0]["digest"]).decode().strip() == idx


def manager_port(swarm):
    return swarm.listen.rsplit(":", 1)[1]


@pytest.mark.manager_args("--down-after", "30s")
def test_a_dead_agent_is_down_after_the_reconnect_grace_not_the_heartbeat_timeout(swarm):
    """kill -9 closes the agent's connection; the manager declares its node down
    once the reconnect grace (1 s) passes, long before --down-after (30 s here),
    and its task runs elsewhere."""
    ids = start(swarm, 2)
    jid = submit(swarm, {"name": "one", "tasks": [
        {"name": "s", "command": ["sleep", "60"], "resources": {"cpu": 0.25, "memory": "32M"}}]})["id"]
    t = wait_for(lambda: (lambda x: x if x["state"] == "running" else None)(tasks(swarm, jid)["s"]),
                 20 * SLOW, what="the task running")
    t0 = time.monotonic()
    swarm.agents[t["node"]].kill9()
    swarm.wait_state(t["node"], "down", 20 * SLOW)
    took = time.monotonic() - t0
    assert took < 10, f"down after {took:.1f} s: the heartbeat timeout, not the grace"
    assert "connection lost and not back within 1000 ms" in swarm.nodes()[t["node"]]["reason"]
    other = [a for a in ids if a != t["node"]][0]
    wait_for(lambda: (lambda x: x if x["state"] == "running" and x["node"] == other else None)(
        tasks(swarm, jid)["s"]), 20 * SLOW, what="the task running on the other agent")


@pytest.mark.manager_args("--down-after", "30s", "--reconnect-grace", "5s")
def test_an_agent_back_within_the_grace_keeps_its_tasks(swarm):
    """A reset connection (ss -K) with a live agent: it reconnects at once, and
    its running task stays where it is, in the same attempt."""
    if subprocess.run(["which", "ss"], capture_output=True).returncode != 0:
        pytest.skip("ss (iproute2) is missing")
    start(swarm, 1)
    jid = submit(swarm, {"name": "one", "tasks": [
        {"name": "s", "command": ["sleep", "60"], "resources": {"cpu": 0.25, "memory": "32M"}}]})["id"]
    wait_for(lambda: tasks(swarm, jid)["s"]["state"] == "running", 20 * SLOW, what="the task running")
    before = swarm.agents["agent-0"].text()
    r = subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", manager_port(swarm)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: swarm.agents["agent-0"].text().count("admitted as") > before.count("admitted as"),
             10 * SLOW, what="agent-0 to be admitted again")
    swarm.wait_state("agent-0", "ready", 10 * SLOW)
    t = tasks(swarm, jid)["s"]
    assert t["state"] == "running" and t["attempt"] == 1, t
    assert "connection lost" in open(os.path.join(swarm.tmp, "manager.log")).read()


def test_kill9_of_the_manager_mid_job_resumes_and_commits_once(swarm):
    ids = start(swarm, 2)
    j = submit(swarm, sleepers(8, 1))
    jid = j["id"]
    wait_for(lambda: job(swarm, jid)["counts"].get("succeeded", 0) >= 1, 30 * SLOW,
             what="a first task to finish")
    swarm.manager.kill9()
    swarm.start_manager()
    swarm.wait_ready(ids, 20 * SLOW)
    j = wait_job(swarm, jid, 90)
    ts = tasks(swarm, jid)
    assert len(ts) == 8
    for name, t in ts.items():
        done = [h for h in t["history"] if h["outcome"] == "succeeded"]
        assert len(done) == 1, (name, t["history"])
        idx = name[name.index("[") + 1:-1]
        assert get_blob(swarm, t["outputs"][0]["digest"]).decode().strip() == idx


def test_torn_result_file_is_set_aside_and_the_task_runs_again(swarm):
    """Result files are not fsynced: a checksum catches one torn by a host crash."""
    ids = start(swarm, 1)
    a = swarm.agents[ids[0]]
    j = submit(swarm, sleepers(1, 2, name="torn", cpu=0.25))
    jid = j["id"]
    wait_for(lambda: all(t["state"] == "running" for t in tasks(swarm, jid).values()),
             20 * SLOW, what="the task to run")
    swarm.manager.kill9()
    rdir = os.path.join(swarm.tmp, ids[0], "results")
    files = wait_for(lambda: [f for f in os.listdir(rdir) if f.endswith(".res")], 20 * SLOW,
                     what="the agent to store the result it cannot send")
    a.kill9()
    path = os.path.join(rdir, files[0])
    with open(path, "rb") as f:
        data = bytearray(f.read())
    assert data[:4] == b"SSR1", data[:8]
    data[-1] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    swarm.start_manager()
    swarm.start_agent(ids[0])
    swarm.wait_ready(ids, 20 * SLOW)
    wait_job(swarm, jid, 60)
    [t] = tasks(swarm, jid).values()
    assert t["attempt"] >= 2, t["history"]
    assert "checksum does not match" in swarm.agents[ids[0]].text()
    assert os.path.exists(path + ".bad")
    assert get_blob(swarm, t["outputs"][0]["digest"]).decode().strip() == "0"


def test_drained_node_gets_no_new_tasks_and_its_running_tasks_move(swarm):
    ids = start(swarm, 2)
    j = submit(swarm, sleepers(4, 3, cpu=0.5, spread=True))
    jid = j["id"]
    wait_for(lambda: any(t["state"] == "running" and t["node"] == ids[0]
                         for t in tasks(swarm, jid).values()), 20 * SLOW,
             what="a task running on agent-0")
    status, _, _ = swarm.request("POST", f"/v1/nodes/{ids[0]}/drain", body={"reason": "test"})
    assert status == 200
    wait_job(swarm, jid, 90)
    for t in tasks(swarm, jid).values():
        assert t["node"] == ids[1], t
    j2 = wait_job(swarm, submit(swarm, sleepers(3, 0, name="after-drain"))["id"], 60)
    for t in tasks(swarm, j2["id"]).values():
        assert t["node"] == ids[1], t


def test_large_outputs_and_inputs_travel_in_chunks(swarm):
    start(swarm, 2)
    big = os.urandom(700 * 1024)
    blob = put_blob(swarm, big)
    spec = {"name": "big", "tasks": [
        {"name": "copy", "command": ["sh", "-c", "cat /in/b /in/b > /out/twice"],
         "inputs": [{"name": "b", "blob": blob["digest"], "size": blob["size"]}],
         "outputs": ["twice"], "resources": {"output": "8M"}},
        {"name": "hash", "command": ["sh", "-c", "sha256sum /in/t | cut -c1-64 > /out/h; cp /in/t /out/t2"],
         "inputs": [{"name": "t", "from": "copy.twice"}], "outputs": ["h", "t2"],
         "resources": {"output": "8M"}}]}
    j = wait_job(swarm, submit(swarm, spec)["id"], 60)
    ts = tasks(swarm, j["id"])
    # copy.twice is intermediate: it stays on the agents. hash's outputs are final: collected.
    assert ts["copy"]["outputs"][0]["digest"] == hashlib.sha256(big + big).hexdigest()
    outs = {o["name"]: o["digest"] for o in ts["hash"]["outputs"]}
    assert get_blob(swarm, outs["t2"]) == big + big
    h = get_blob(swarm, outs["h"]).decode().strip()
    assert h == hashlib.sha256(big + big).hexdigest()


@pytest.mark.manager_args("--tenant-weight", "heavy=3")
def test_tenants_share_the_swarm_by_weight(swarm):
    start(swarm, 1, extra=("--max-tasks", "4"))

    def spec(tenant):
        s = sleepers(24, 0.3, name=tenant, cpu=0.25)
        s["tenant"] = tenant
        return s
    # light is queued first and takes every slot; from then on each freed slot
    # goes to the tenant furthest below its weighted share, so heavy (weight 3)
    # catches up to about three of every four running tasks.
    jl = submit(swarm, spec("light"))
    jh = submit(swarm, spec("heavy"))
    wait_job(swarm, jl["id"], 90)
    wait_job(swarm, jh["id"], 90)
    starts = sorted([(t["start_ms"], "light") for t in tasks(swarm, jl["id"]).values()] +
                    [(t["start_ms"], "heavy") for t in tasks(swarm, jh["id"]).values()])
    first = [who for _, who in starts[:20]]
    print("first 20 starts:", first)
    assert first.count("heavy") >= 11, first
    assert first.count("light") >= 4, first


def test_evicted_node_gets_no_tasks_and_its_running_tasks_move(swarm):
    import signal as _signal
    from test_policy import write_policy
    interval = 2
    pools = {"default": {"allowed_tee": ["sim"]},
             "edge": {"allowed_tee": ["sim"], "reattest_interval": f"{interval}s"}}
    path = write_policy(swarm, pools)
    swarm.extra = ["--policy", path]
    swarm.start_manager()
    swarm.start_agent("agent-edge", labels=["pool=edge"])
    swarm.start_agent("agent-core")
    swarm.wait_ready(["agent-edge", "agent-core"], 20 * SLOW)
    jid = submit(swarm, sleepers(4, 4, name="evict", cpu=0.25, spread=True))["id"]

    def on_edge():
        ts = tasks(swarm, jid).values()
        names = [t["name"] for t in ts if t["state"] == "running" and t["node"] == "agent-edge"]
        return names or None
    moved = wait_for(on_edge, 20 * SLOW, what="tasks running on agent-edge")
    # The edge pool stops allowing sim: the node fails its next re-attestation.
    pools["edge"]["allowed_tee"] = ["tpm"]
    write_policy(swarm, pools)
    swarm.manager.p.send_signal(_signal.SIGHUP)
    swarm.wait_state("agent-edge", "evicted", (interval + 2) * SLOW)
    j = wait_job(swarm, jid, 60)
    ts = tasks(swarm, j["id"])
    for n in moved:
        t = ts[n]
        assert t["node"] == "agent-core" and t["attempt"] >= 2, t
        assert any(h["outcome"] == "lost" for h in t["history"]), t
    after = wait_job(swarm, submit(swarm, sleepers(6, 0, name="after-evict", cpu=0.25, spread=True))["id"], 60)
    for t in tasks(swarm, after["id"]).values():
        assert t["node"] == "agent-core", t


def task_cgroups(pid):
    """The task cgroup directories agent pid created, in every hierarchy it uses."""
    found = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            base = "/sys/fs/cgroup" + ("/" + ctrls.split(",")[0] if ctrls else "")
            if ctrls and not os.path.isdir(base):
                base = "/sys/fs/cgroup/" + ctrls
            parent = base + (path if path != "/" else "")
            if not os.path.isdir(parent):
                continue
            found += [os.path.join(parent, d) for d in os.listdir(parent)
                      if d.startswith(f"seeswarm-task-{pid}-")]
    return found


def cgroup_pids(dirs):
    """The pids in any of the cgroup directories (those that still exist)."""
    pids = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids |= {int(x) for x in f.read().split()}
        except FileNotFoundError:
            pass
    return pids


def test_tasks_die_with_their_agent_and_a_restart_sweeps_the_rest(swarm):
    ids = start(swarm, 1)
    a = swarm.agents[ids[0]]
    j = submit(swarm, sleepers(1, 60, name="orphan", cpu=0.25))
    wait_for(lambda: all(t["state"] == "running" for t in tasks(swarm, j["id"]).values()), 20 * SLOW,
             what="the task to run")
    cgs = wait_for(lambda: task_cgroups(a.pid), 5 * SLOW, what="the task's cgroups")
    assert cgroup_pids(cgs), cgs
    a.kill9()
    # The sandboxed task dies with its agent (its parent-death signal); its cgroups stay behind.
    wait_for(lambda: not cgroup_pids(cgs), 5 * SLOW, what="the task to die with its agent")
    assert all(os.path.isdir(d) for d in cgs), cgs
    # A process left in one (what a task could be if the agent died while starting it) is
    # killed by the next agent, which removes the stale cgroups.
    stray = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(cgs[0], "cgroup.procs"), "w") as f:
            f.write(str(stray.pid))
        swarm.start_agent(ids[0])
        wait_for(lambda: not any(os.path.isdir(d) for d in cgs), 20 * SLOW,
                 what="the stale cgroups to be swept")
        assert stray.wait(timeout=5 * SLOW) == -signal.SIGKILL
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    assert "stale task cgroups" in swarm.agents[ids[0]].text()
    swarm.request("DELETE", f"/v1/jobs/{j['id']}")


@pytest.mark.manager_args("--job-retention", "1s")
def test_finished_jobs_are_forgotten_after_the_retention(swarm):
    ids = start(swarm, 1)
    j = wait_job(swarm, submit(swarm, sleepers(2, 0, name="brief"))["id"], 60)
    running = submit(swarm, sleepers(1, 30, name="long"))
    t = tasks(swarm, j["id"])
    tid = next(iter(t.values()))["id"]

    def gone():
        status, _, _ = swarm.request("GET", f"/v1/jobs/{j['id']}")
        return status == 404
    wait_for(gone, 10 * SLOW, what="the finished job to be forgotten")
    status, _, _ = swarm.request("GET", f"/v1/tasks/{tid}/logs")
    assert status == 404
    # The running job stays; after a crash the forgotten one does not come back.
    swarm.manager.kill9()
    swarm.start_manager()
    swarm.wait_ready(ids, 20 * SLOW)
    listed = [x["id"] for x in swarm.get_json("/v1/jobs")["jobs"]]
    assert listed == [running["id"]], listed
    swarm.request("DELETE", f"/v1/jobs/{running['id']}")


def test_a_get_with_the_jobs_index_waits_for_its_next_change(swarm):
    start(swarm, 1)
    jid = submit(swarm, sleepers(1, 2, name="watched"))["id"]
    seen = [job(swarm, jid)]
    # Each answer comes when the job changed (a stored change: placed,
    # running, collecting, succeeded), never in between: a handful of
    # requests follow the whole job, where polling every 50 ms would take 40.
    t0 = time.monotonic()
    while seen[-1]["state"] == "running":
        assert len(seen) < 12 and time.monotonic() - t0 < 30 * SLOW, seen
        st, raw, _ = swarm.request("GET", f"/v1/jobs/{jid}?index={seen[-1]['index']}&wait=9s")
        assert st == 200, raw
        seen.append(json.loads(raw))
        assert seen[-1]["index"] > seen[-2]["index"], seen
    assert seen[-1]["state"] == "succeeded" and 2 <= time.monotonic() - t0 < 9 * SLOW, seen
    # A job that does not change is answered when the wait ends, as it was.
    t0 = time.monotonic()
    last = json.loads(swarm.request("GET", f"/v1/jobs/{jid}?index={seen[-1]['index']}&wait=1s")[1])
    assert 0.9 <= time.monotonic() - t0 < 5 * SLOW and last["index"] == seen[-1]["index"], last
    for q, msg in (("index=x", "\"index\" must be the \"index\" of an answer"), ("index=1&wait=6m", "\"wait\" must be a duration"),
                   ("wait=1s", "\"wait\" goes only with")):
        st, raw, _ = swarm.request("GET", f"/v1/jobs/{jid}?{q}")
        assert st == 400 and msg in json.loads(raw)["error"]["message"], (q, raw)
    # An unknown job is not found at once (its index would be 0), nor is
    # another tenant's job, waiting or not.
    t0 = time.monotonic()
    assert swarm.request("GET", "/v1/jobs/j-000000000000?index=0&wait=5s")[0] == 404
    assert time.monotonic() - t0 < 2 * SLOW
    tok = json.loads(swarm.request("POST", "/v1/tokens", body={"tenant": "other"})[1])["token"]
    st, _, _ = swarm.request("GET", f"/v1/jobs/{jid}?index={last['index']}&wait=5s", token=tok)
    assert st == 404
    # The CLI follows a job the same way (job wait), and the manager stops
    # at once with a request still waiting.
    out = swarm.cli("job", "wait", jid).stdout
    assert f"job {jid} succeeded" in out, out
    ended = []

    def wait_long():
        try:
            ended.append(swarm.request("GET", f"/v1/jobs/{jid}?index={last['index']}&wait=60s")[0])
        except OSError as e:  # the manager closed the connection
            ended.append(e)
    waiter = threading.Thread(target=wait_long)
    waiter.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert swarm.manager.term() == 0
    assert time.monotonic() - t0 < 5 * SLOW
    waiter.join(timeout=10 * SLOW)
    assert ended and ended[0] != 200, ended


def test_a_job_fails_at_its_timeout_or_its_max_cost_even_across_a_crash(swarm):
    swarm.start_manager()
    swarm.start_agent("agent-0", extra=["--price-per-hour", "3600"])
    swarm.wait_ready(["agent-0"], 20 * SLOW)
    per_s = 0.5 / swarm.nodes()["agent-0"]["capabilities"]["cpu_cores"]  # a 0.5-core task, a second
    # The limits are checked with the spec.
    for extra, msg in (({"timeout": "0s"}, "timeout: 0ms is below the minimum of 1s"),
                       ({"timeout": "31d"}, "timeout: over the maximum of 30d"),
                       ({"max_cost": 0}, "max_cost: must be more than 0"),
                       ({"max_cost": "1"}, "max_cost: expected a number")):
        bad = submit(swarm, dict(sleepers(1, 1), **extra), expect=400)
        assert bad["error"]["message"].startswith(msg), (extra, bad)
    slow = submit(swarm, dict(sleepers(1, 60, name="slow", cpu=0.5), timeout="4s"))
    dear = submit(swarm, dict(sleepers(1, 60, name="dear", cpu=0.5), max_cost=2 * per_s))
    # Both limits hold across a crash of the manager: the deadline counts from
    # the submission, and the cost from the attempt's start on the agent.
    wait_for(lambda: all(t["state"] == "running" for j in (slow, dear) for t in tasks(swarm, j["id"]).values()),
             20 * SLOW, what="both tasks running")
    swarm.manager.kill9()
    swarm.start_manager()
    j = wait_job(swarm, slow["id"], 30, state="failed")
    assert j["reason"] == "timeout: the job ran past its timeout of 4.0s", j
    assert 4000 <= j["finished_ms"] - j["created_ms"] <= 4000 + 3000 * SLOW, j
    t = tasks(swarm, slow["id"])["s[0]"]
    assert t["state"] == "canceled" and t["reason"] == j["reason"], t
    assert t["history"][-1]["outcome"] == "canceled" and t["history"][-1]["run_ms"] >= 3000, t
    j = wait_job(swarm, dear["id"], 30, state="failed")
    m = re.fullmatch(r"max_cost: its attempts cost ([0-9.]+), more than its max_cost of ([0-9.]+)", j["reason"])
    assert m and float(m[2]) == pytest.approx(2 * per_s) and float(m[1]) > float(m[2]), j
    assert 2 * per_s < j["usage"]["cost"] <= (2 + 3 * SLOW) * per_s, (j, per_s)
    # The agent stopped both sandboxes.
    wait_for(lambda: swarm.nodes()["agent-0"]["load"]["running_tasks"] == 0, 10 * SLOW,
             what="the agent to report no running task")
    # A job within its limits is not touched by them.
    ok = submit(swarm, dict(sleepers(1, 0, name="ok"), timeout="1m", max_cost=100))
    wait_job(swarm, ok["id"], 30)


@pytest.mark.manager_args("--job-retention", "2s")
def test_the_managers_blobs_go_when_nothing_retained_uses_them(swarm):
    ids = start(swarm, 1)

    def present(d):
        return swarm.request("HEAD", f"/v1/blobs/{d}")[0] == 200
    unused = put_blob(swarm, b"nobody names this blob\n")["digest"]
    kept = put_blob(swarm, b"the input of a long job\n")["digest"]
    brief = put_blob(swarm, b"the input of a brief job\n")["digest"]

    def copy(name, digest, secs):
        return {"name": name, "tasks": [
            {"name": "c", "command": ["sh", "-c", f"cat /in/x > /out/y; echo copied >> /out/y; sleep {secs}"],
             "inputs": [{"name": "x", "blob": digest}], "outputs": ["y"],
             "resources": {"cpu": 0.25, "memory": "32M"}}]}
    long = submit(swarm, copy("long", kept, 60))
    j = wait_job(swarm, submit(swarm, copy("brief", brief, 0))["id"], 60)
    out = tasks(swarm, j["id"])["c"]["outputs"][0]["digest"]
    assert present(out)
    # One retention after their last upload or use: an unused upload, and the
    # forgotten job's input and output.
    wait_for(lambda: not any(present(d) for d in (unused, brief, out)), 20 * SLOW,
             what="the blobs nothing uses to leave the manager's store")
    assert swarm.request("GET", f"/v1/jobs/{j['id']}")[0] == 404
    m = swarm.request("GET", "/metrics")[1].decode()
    n = [ln for ln in m.splitlines() if ln.startswith("seeswarm_manager_blobs_deleted_total ")]
    assert n and int(n[0].split()[1]) >= 3, n
    # The running job's input, uploaded as long ago, stays for as long as the job.
    time.sleep(3 * SLOW)
    assert present(kept)
    # Also after a crash: the restarted manager rebuilds what its jobs use before it sweeps.
    swarm.manager.kill9()
    swarm.start_manager()
    swarm.wait_ready(ids, 20 * SLOW)
    time.sleep(3 * SLOW)
    assert present(kept)
    # Uploading an unused blob again starts its time anew.
    put_blob(swarm, b"nobody names this blob\n")
    assert present(unused)
    swarm.request("DELETE", f"/v1/jobs/{long['id']}")
    wait_for(lambda: not present(kept) and not present(unused), 20 * SLOW,
             what="the cancelled job's input and the re-upload to go")
    assert "no retained job uses" in swarm.manager.text()


def test_concurrent_tasks_cannot_reach_each_other(swarm):
    """Tasks without network share one empty network namespace on the agent
    (where Landlock allows it): two tasks running at once must still not reach
    each other over an abstract unix socket, TCP or UDP on loopback."""
    start(swarm, 1)
    listen = ("import socket,time\n"
              "r=[]\n"
              "a=socket.socket(socket.AF_UNIX); a.bind('\\0ss-peer-test'); a.listen()\n"
              "for fam,kind in ((socket.AF_INET,socket.SOCK_STREAM),(socket.AF_INET,socket.SOCK_DGRAM)):\n"
              "  s=socket.socket(fam,kind)\n"
              "  try:\n"
              "    s.bind(('127.0.0.1',47123)); r.append('bound')\n"
              "    if kind==socket.SOCK_STREAM: s.listen()\n"
              "  except OSError as e: r.append('nobind')\n"
              "open('/out/r','w').write(' '.join(r)); time.sleep(4)\n")
    probe = ("import socket,time\n"
             "time.sleep(1.5); r=[]\n"
             "u=socket.socket(socket.AF_UNIX)\n"
             "try: u.connect('\\0ss-peer-test'); r.append('UNIX-CONNECTED')\n"
             "except OSError: r.append('unix-refused')\n"
             "t=socket.socket(); t.settimeout(2)\n"
             "try: t.connect(('127.0.0.1',47123)); r.append('TCP-CONNECTED')\n"
             "except OSError: r.append('tcp-refused')\n"
             "d=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "try: d.sendto(b'x',('127.0.0.1',47123)); r.append('udp-sent')\n"
             "except OSError: r.append('udp-refused')\n"
             "open('/out/r','w').write(' '.join(r))\n")
    spec = {"name": "isolation", "tasks": [
        {"name": "listen", "command": ["/usr/bin/python3", "-c", listen], "outputs": ["r"],
         "resources": {"cpu": 0.1, "memory": "64M"}, "retries": 0},
        {"name": "probe", "command": ["/usr/bin/python3", "-c", probe], "outputs": ["r"],
         "resources": {"cpu": 0.1, "memory": "64M"}, "retries": 0}]}
    j = wait_job(swarm, submit(swarm, spec)["id"], 60)
    ts = tasks(swarm, j["id"])
    # They overlapped on the one agent.
    assert ts["probe"]["start_ms"] < ts["listen"]["end_ms"], (ts["probe"], ts["listen"])
    probe_r = get_blob(swarm, ts["probe"]["outputs"][0]["digest"]).decode()
    listen_r = get_blob(swarm, ts["listen"]["outputs"][0]["digest"]).decode()
    assert "CONNECTED" not in probe_r, probe_r
    assert "unix-refused" in probe_r and "tcp-refused" in probe_r, probe_r
    assert "udp-refused" in probe_r, probe_r  # loopback is down in the shared namespace
    assert listen_r.split()[0] == "nobind", listen_r  # Landlock: no TCP bind without network
    # The commands above are multi-line scripts: argv may hold any bytes.
