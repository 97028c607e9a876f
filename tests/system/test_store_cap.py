"""An agent's blob store: a size cap that evicts cached blobs (inputs fetched
for its own tasks, blobs no job needs from it), and an inventory after each
admission that makes a returning agent a holder again and lets it drop the
copies released while it was away."""
import hashlib
import os

import pytest

from conftest import SLOW, wait_for
from test_jobs import get_blob, put_blob, start, submit, tasks, wait_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")

KB = 1024


def blob_path(swarm, agent_id, digest):
    return os.path.join(swarm.tmp, agent_id, "blobs", digest[:2], digest)


def has_blob(swarm, agent_id, digest):
    return os.path.exists(blob_path(swarm, agent_id, digest))


def hash_job(name, digests):
    """One task per input blob: each writes the SHA-256 of its input."""
    return {"name": name, "tasks": [
        {"name": f"h{i}", "command": ["sh", "-c", "sha256sum /in/x | cut -c1-64 > /out/h"],
         "inputs": [{"name": "x", "blob": d}], "outputs": ["h"],
         "resources": {"cpu": 0.1, "memory": "32M"}}
        for i, d in enumerate(digests)]}


def check_hashes(swarm, jid, digests):
    ts = tasks(swarm, jid)
    for i, d in enumerate(digests):
        got = get_blob(swarm, ts[f"h{i}"]["outputs"][0]["digest"]).decode().strip()
        assert got == d, (i, got, d)


def copy_job(swarm, name):
    """Uploads 200 KiB and runs a task that copies it to an output; returns
    (job id, output digest)."""
    src = put_blob(swarm, os.urandom(200 * KB))["digest"]
    spec = {"name": name, "tasks": [
        {"name": "copy", "command": ["sh", "-c", "cp /in/x /out/y"],
         "inputs": [{"name": "x", "blob": src}], "outputs": ["y"],
         "resources": {"output": "1M"}}]}
    jid = submit(swarm, spec)["id"]
    wait_job(swarm, jid, 60)
    return jid, tasks(swarm, jid)["copy"]["outputs"][0]["digest"]


def replica_nodes(swarm, digest):
    return [x["node"] for x in swarm.get_json(f"/v1/blobs/{digest}/replicas")["replicas"]]


@pytest.mark.manager_args("--replicas", "0")
def test_fetched_inputs_are_evicted_above_the_cap(swarm):
    # Without repair no replica is held for the swarm: every input the agent
    # fetches is cache, and six of 300 KiB do not fit under a 1 MiB cap.
    (aid,) = start(swarm, 1, extra=["--store-max", "1M"])
    blobs = [put_blob(swarm, os.urandom(300 * KB))["digest"] for _ in range(6)]
    j = wait_job(swarm, submit(swarm, hash_job("cap", blobs))["id"], 60)
    check_hashes(swarm, j["id"], blobs)
    log = swarm.agents[aid]
    wait_for(lambda: "evicted" in log.text(), 10 * SLOW, what="an eviction")
    kept = [d for d in blobs if has_blob(swarm, aid, d)]
    # Down to 90 % of the cap: at most three inputs of 300 KiB stay.
    assert len(kept) <= 3, log.text()[-4000:]
    on_disk = sum(os.path.getsize(blob_path(swarm, aid, d)) for d in kept)
    assert on_disk <= 1024 * KB, on_disk
    # The task outputs are held for the swarm: never evicted.
    ts = tasks(swarm, j["id"])
    for i in range(6):
        assert has_blob(swarm, aid, ts[f"h{i}"]["outputs"][0]["digest"]), i
    # An evicted input is fetched again when a task needs it.
    gone = [d for d in blobs if d not in kept]
    assert gone
    before = log.text().count(f"blob {gone[0][:16]} ")
    j2 = wait_job(swarm, submit(swarm, hash_job("again", gone[:1]))["id"], 60)
    check_hashes(swarm, j2["id"], gone[:1])
    assert log.text().count(f"blob {gone[0][:16]} ") > before


@pytest.mark.manager_args("--replicas", "0")
def test_a_returning_agent_holds_its_blobs_again(swarm):
    (aid,) = start(swarm, 1)
    _, out = copy_job(swarm, "keep")
    assert replica_nodes(swarm, out) == [aid]
    swarm.agents[aid].kill9()
    swarm.wait_state(aid, "down", 10 * SLOW)
    # Declared down, it no longer counts as a holder ...
    assert replica_nodes(swarm, out) == []
    swarm.start_agent(aid)
    swarm.wait_ready([aid], 10 * SLOW)
    # ... and back, its inventory makes it one again.
    wait_for(lambda: replica_nodes(swarm, out) == [aid] or None, 10 * SLOW,
             what="the returning agent recorded as the output's holder")
    assert "blob inventory sent" in swarm.agents[aid].text()
    assert "holds 1 tracked blob again" in swarm.manager.text()
    assert hashlib.sha256(get_blob(swarm, out)).hexdigest() == out


@pytest.mark.manager_args("--replicas", "0", "--job-retention", "2s")
def test_copies_released_while_the_agent_was_away_are_dropped(swarm):
    (aid,) = start(swarm, 1)
    jid, out = copy_job(swarm, "orphan")
    swarm.agents[aid].kill9()
    swarm.wait_state(aid, "down", 10 * SLOW)
    # The job is forgotten while the agent is away: nobody tells it to delete.
    wait_for(lambda: swarm.request("GET", f"/v1/jobs/{jid}")[0] == 404, 20 * SLOW,
             what="the job to be forgotten")
    assert has_blob(swarm, aid, out)
    # Back with a cap it is over, it learns the output is untracked and evicts it.
    swarm.start_agent(aid, extra=["--store-max", "100K"])
    swarm.wait_ready([aid], 10 * SLOW)
    wait_for(lambda: not has_blob(swarm, aid, out), 10 * SLOW,
             what="the untracked output to be evicted")
    assert "evicted" in swarm.agents[aid].text()


@pytest.mark.manager_args("--replicas", "0")
def test_a_blob_the_agent_lost_is_no_longer_counted(swarm):
    (aid,) = start(swarm, 1)
    src = put_blob(swarm, os.urandom(200 * KB))["digest"]
    spec = {"name": "lost", "tasks": [
        {"name": "copy", "command": ["sh", "-c", "cat /in/x > /out/y; cat /in/x > /out/z; echo >> /out/z"],
         "inputs": [{"name": "x", "blob": src}], "outputs": ["y", "z"],
         "resources": {"output": "1M"}}]}
    j = wait_job(swarm, submit(swarm, spec)["id"], 60)
    y, z = (o["digest"] for o in tasks(swarm, j["id"])["copy"]["outputs"])
    assert replica_nodes(swarm, y) == [aid] and replica_nodes(swarm, z) == [aid]
    # The agent restarts, and one output's file is gone (a disk replaced, a
    # file removed): its inventory no longer lists it.
    swarm.agents[aid].kill9()
    os.unlink(blob_path(swarm, aid, y))
    swarm.start_agent(aid)
    swarm.wait_ready([aid], 10 * SLOW)
    wait_for(lambda: replica_nodes(swarm, y) == [] or None, 10 * SLOW,
             what="the lost copy dropped from the records")
    assert replica_nodes(swarm, z) == [aid]
    assert "no longer has 1 blob" in swarm.manager.text()
