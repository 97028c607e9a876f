"""Appraisal policy: pools, allowed TEEs, SIGHUP reload, re-attestation and eviction."""
import json
import os
import signal
import time

import pytest

from conftest import SLOW, wait_for


def write_policy(swarm, pools):
    path = os.path.join(swarm.tmp, "policy.json")
    with open(path, "w") as f:
        json.dump({"pools": pools}, f)
    return path


def test_policy_without_sim_rejects_sim_agents(swarm):
    path = write_policy(swarm, {"default": {"allowed_tee": ["tpm", "sev-snp"]}})
    swarm.extra = ["--policy", path]
    swarm.start_manager()
    a = swarm.start_agent("agent-p1")
    wait_for(lambda: "rejected" in a.text(), 10 * SLOW, what="rejection")
    assert "allows none of the types this agent offers" in a.text()
    assert swarm.state("agent-p1") is None or swarm.state("agent-p1") == "rejected"


def test_unknown_pool_is_rejected(swarm):
    path = write_policy(swarm, {"default": {"allowed_tee": ["sim"]}})
    swarm.extra = ["--policy", path]
    swarm.start_manager()
    a = swarm.start_agent("agent-p2", labels=["pool=edge"])
    wait_for(lambda: 'no pool "edge"' in a.text(), 10 * SLOW, what="rejection")


def test_invalid_policy_stops_the_manager_with_a_clear_error(swarm):
    path = write_policy(swarm, {"default": {"allowed_tee": ["sim"], "reattest_intervall": "5s"}})
    swarm.extra = ["--policy", path]
    m = swarm.start_manager(wait=False)
    assert m.p.wait(timeout=10 * SLOW) != 0
    assert 'unknown key "reattest_intervall"' in m.text()


def test_reattestation_and_eviction_after_policy_reload(swarm):
    interval = 2
    path = write_policy(swarm, {"default": {"allowed_tee": ["sim"],
                                            "reattest_interval": f"{interval}s"}})
    swarm.extra = ["--policy", path]
    swarm.start_manager()
    swarm.start_agent("agent-r")
    swarm.wait_ready(["agent-r"], 10 * SLOW)
    first = swarm.nodes()["agent-r"]["attestation"]
    assert first["pool"] == "default" and len(first["policy_id"]) == 16
    assert len(first["claims_digest"]) == 64 and first["expires"] > first["at"]
    # Periodic re-attestation with a fresh nonce refreshes the result.
    wait_for(lambda: swarm.nodes()["agent-r"]["attestation"]["at"] != first["at"],
             interval + 3, what="a re-attestation")
    assert swarm.state("agent-r") == "ready"
    # On demand.
    before = swarm.nodes()["agent-r"]["attestation"]["at"]
    r = swarm.cli("node", "attest", "agent-r")
    assert "re-attestation started" in r.stdout
    wait_for(lambda: swarm.nodes()["agent-r"]["attestation"]["at"] != before, 5,
             what="on-demand re-attestation")
    # A broken policy on SIGHUP is refused; the node stays ready.
    with open(path, "w") as f:
        f.write("{not json")
    swarm.manager.p.send_signal(signal.SIGHUP)
    wait_for(lambda: "policy not reloaded" in swarm.manager.text(), 5, what="reload refusal")
    time.sleep(interval + 0.5)
    assert swarm.state("agent-r") == "ready"
    # A policy that no longer allows sim evicts the node at its next re-attestation.
    write_policy(swarm, {"default": {"allowed_tee": ["tpm"], "reattest_interval": f"{interval}s"}})
    t0 = time.monotonic()
    swarm.manager.p.send_signal(signal.SIGHUP)
    swarm.wait_state("agent-r", "evicted", interval + 2)
    assert time.monotonic() - t0 < interval + 2
    n = swarm.nodes(all_=True)["agent-r"]
    assert "no longer allows sim" in n["reason"]
    show = swarm.cli("node", "show", "agent-r").stdout
    assert "evicted" in show and "Policy id" in show
    # It stays out: its next attempt is refused under the new policy.
    time.sleep(6)
    assert swarm.state("agent-r") == "evicted"
    r = swarm.cli("node", "attest", "agent-r", check=False)
    assert r.returncode == 1 and "not connected" in r.stderr
