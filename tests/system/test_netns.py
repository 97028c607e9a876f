"""Cutting the link between an agent and the manager, with network namespaces.

The agent runs in a network namespace of its own, joined to the host by a
veth pair; the manager listens on the host end. Taking the link down leaves
the agent running, with no RST or FIN reaching either side: only missed
heartbeats tell the manager. Its tasks must move to the other agent; when
the link comes back, the agent's results for the old attempts are stale and
ignored, and each task's result is committed exactly once.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, SLOW, Proc, wait_for
from test_jobs import get_blob, sleepers, submit, tasks, wait_job

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and the sandbox need root"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2 (ip)"),
]


def ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip"] + list(args)
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@pytest.fixture
def link():
    """A namespace and a veth pair (host 10.213.x.1 <-> namespace 10.213.x.2), removed afterwards."""
    tag = os.getpid() % 60000
    ns, host_if, ns_if = f"ssnet{tag}", f"ssh{tag}", f"ssa{tag}"
    sub = f"10.213.{tag % 250}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{sub}.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("addr", "add", f"{sub}.2/30", "dev", ns_if, ns=ns)
        ip("link", "set", ns_if, "up", ns=ns)
        ip("link", "set", "lo", "up", ns=ns)
        yield {"ns": ns, "host_if": host_if, "ns_if": ns_if, "host_addr": f"{sub}.1"}
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def metric(swarm, name):
    status, raw, _ = swarm.request("GET", "/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\d+)$", raw.decode(), re.M)
    return int(m.group(1)) if m else 0


def start_both_sides(swarm, link):
    """The manager on the host end of the link; agent-in behind the link, agent-out on the host."""
    swarm.listen = f"{link['host_addr']}:{swarm.port}"
    swarm.start_manager()
    adir = swarm.issue("agent-in")
    args = ["ip", "netns", "exec", link["ns"], BIN, "agent", "--join", swarm.listen,
            "--data-dir", adir, "--insecure-sim-attestation"]
    p = Proc(args, os.path.join(swarm.tmp, "agent-in.log"), swarm.env)
    swarm.agents["agent-in"] = p
    swarm.all_procs.append(p)
    swarm.start_agent("agent-out")
    swarm.wait_ready(["agent-in", "agent-out"], 20 * SLOW)


def test_cut_link_moves_tasks_and_stale_results_are_ignored(swarm, link):
    start_both_sides(swarm, link)

    j = submit(swarm, sleepers(4, 4, name="cut", cpu=0.25, spread=True))
    jid = j["id"]

    def running_inside():
        ts = tasks(swarm, jid).values()
        inside = [t["name"] for t in ts if t["state"] == "running" and t["node"] == "agent-in"]
        return inside if inside else None
    inside = wait_for(running_inside, 20 * SLOW, what="tasks running behind the link")

    ip("link", "set", link["ns_if"], "down", ns=link["ns"])
    swarm.wait_state("agent-in", "down", 10 * SLOW)
    # The tasks that ran behind the link start again on agent-out (attempt 2).
    wait_for(lambda: all(tasks(swarm, jid)[n]["node"] == "agent-out" and tasks(swarm, jid)[n]["attempt"] >= 2
                         for n in inside), 20 * SLOW, what="the cut-off tasks to move")
    # agent-in finished its attempts meanwhile and keeps their results.
    ip("link", "set", link["ns_if"], "up", ns=link["ns"])
    j = wait_job(swarm, jid, 60)
    swarm.wait_state("agent-in", "ready", 60 * SLOW)
    wait_for(lambda: metric(swarm, "seeswarm_task_results_stale_total") >= 1, 20 * SLOW,
             what="agent-in's stale results to arrive and be ignored")
    ts = tasks(swarm, jid)
    for name, t in ts.items():
        done = [h for h in t["history"] if h["outcome"] == "succeeded"]
        assert len(done) == 1, (name, t["history"])
        idx = name[name.index("[") + 1:-1]
        assert get_blob(swarm, t["outputs"][0]["digest"]).decode().strip() == idx
    for n in inside:
        assert ts[n]["node"] == "agent-out" and any(h["outcome"] == "lost" for h in ts[n]["history"]), ts[n]


def test_agents_measure_round_trip_times_to_each_other_across_the_link(swarm, link):
    """Each agent pings the peers the manager names over its peer endpoint;
    the manager shows the times and gives them to the scheduler."""
    start_both_sides(swarm, link)
    inside = swarm.get_json("/v1/nodes/agent-in")
    outside = swarm.get_json("/v1/nodes/agent-out")
    # Each advertises the address it reaches the manager from: the two ends of the veth.
    assert inside["advertise"].startswith(link["host_addr"][:-1] + "2:"), inside
    assert outside["advertise"].startswith(link["host_addr"] + ":"), outside

    def measured():
        a = swarm.get_json("/v1/nodes/agent-in").get("peer_rtt_ms", {})
        b = swarm.get_json("/v1/nodes/agent-out").get("peer_rtt_ms", {})
        return (a, b) if "agent-out" in a and "agent-in" in b else None
    a, b = wait_for(measured, 30 * SLOW, what="round-trip times in both directions")
    for rtt in (a["agent-out"], b["agent-in"]):
        assert 0 < rtt < 250, (a, b)
