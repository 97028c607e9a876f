"""A running swarm: admission, heartbeats, failure detection, restarts, drain, CLI."""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import BIN, SLOW, wait_for


def test_three_agents_become_ready_with_capabilities(swarm):
    swarm.start_manager()
    for i, zone in enumerate("abc"):
        swarm.start_agent(f"agent-{i + 1}", labels=["region=eu-west", f"zone={zone}"],
                          extra=["--price-per-hour", "0.25"])
    swarm.wait_ready(["agent-1", "agent-2", "agent-3"], 10 * SLOW)
    nodes = swarm.nodes()
    assert sorted(nodes) == ["agent-1", "agent-2", "agent-3"]
    n = nodes["agent-2"]
    assert n["labels"] == {"region": "eu-west", "zone": "b"}
    assert n["price_per_hour"] == pytest.approx(0.25)
    assert n["tee"] == "sim"
    assert n["attestation"]["status"] == "affirming"
    assert n["attestation"]["insecure"] is True
    assert n["capabilities"]["cpu_cores"] == os.cpu_count()
    assert n["capabilities"]["memory_bytes"] > 0
    assert isinstance(n["capabilities"]["features"], list)
    assert n["connected"] is True
    # Heartbeats carry load and keep last_heartbeat fresh.
    wait_for(lambda: swarm.nodes()["agent-2"]["last_heartbeat_age_ms"] is not None, 5)
    assert swarm.nodes()["agent-2"]["last_heartbeat_age_ms"] < 2000
    # The CLI table and JSON agree with the API.
    out = swarm.cli("node", "list").stdout
    assert "agent-1" in out and "ready" in out and "zone=a" in out
    js = json.loads(swarm.cli("node", "list", "--json").stdout)
    assert len(js["nodes"]) == 3
    show = swarm.cli("node", "show", "agent-3").stdout
    assert "agent-3" in show and "zone" in show


def test_agent_kill9_goes_down_and_returns_with_same_id(swarm):
    swarm.start_manager()
    a = swarm.start_agent("agent-k")
    swarm.wait_ready(["agent-k"], 10 * SLOW)
    t0 = time.monotonic()
    a.kill9()
    swarm.wait_state("agent-k", "down", 3.0)
    assert time.monotonic() - t0 < 3.0
    swarm.start_agent("agent-k")
    swarm.wait_ready(["agent-k"], 5 * SLOW)
    assert list(swarm.nodes()) == ["agent-k"]


def test_agent_killed_before_saving_its_node_certificate_returns(swarm):
    """The manager has issued the node certificate; the agent dies before
    node.pem is on disk. It comes back with its join certificate and the same
    key, attests again and is admitted, well inside the old certificate's
    hour."""
    swarm.start_manager()
    a = swarm.start_agent("agent-n")
    swarm.wait_ready(["agent-n"], 10 * SLOW)
    pem = os.path.join(swarm.tmp, "agent-n", "node.pem")
    wait_for(lambda: os.path.exists(pem), 10 * SLOW, what="node.pem")
    old = swarm.nodes()["agent-n"]["node_certificate"]["serial"]
    a.kill9()
    os.unlink(pem)
    swarm.wait_state("agent-n", "down", 3.0)
    a2 = swarm.start_agent("agent-n")
    swarm.wait_ready(["agent-n"], 5 * SLOW)
    wait_for(lambda: os.path.exists(pem), 5 * SLOW, what="a new node.pem")
    assert swarm.nodes()["agent-n"]["node_certificate"]["serial"] != old
    assert "holds node certificate" not in a2.text()


def test_manager_kill9_keeps_registry_and_agents_return(swarm):
    swarm.start_manager()
    ids = ["m-1", "m-2", "m-3"]
    for i in ids:
        swarm.start_agent(i, labels=["zone=z"])
    swarm.wait_ready(ids, 10 * SLOW)
    swarm.manager.kill9()
    swarm.start_manager(wait=False)
    t0 = time.monotonic()
    wait_for(swarm.health_ok, 10 * SLOW, what="manager restart")
    # The registry is back from the store before any agent reconnects.
    nodes = swarm.nodes(all_=True)
    assert sorted(nodes) == ids
    assert all(n["labels"] == {"zone": "z"} for n in nodes.values())
    swarm.wait_ready(ids, 5.0 * SLOW)
    assert time.monotonic() - t0 < 5.0 * SLOW


def test_sigterm_agent_says_goodbye_and_is_left(swarm):
    swarm.start_manager()
    a = swarm.start_agent("agent-bye")
    swarm.wait_ready(["agent-bye"], 10 * SLOW)
    assert a.term() == 0
    swarm.wait_state("agent-bye", "left", 3)
    assert "agent-bye" not in swarm.nodes()          # hidden by default
    assert "agent-bye" in swarm.nodes(all_=True)     # shown with all
    out = swarm.cli("node", "list", "--all").stdout
    assert "agent-bye" in out and "left" in out


def test_drain_is_durable_and_reaches_the_agent(swarm):
    swarm.start_manager()
    a = swarm.start_agent("agent-d")
    swarm.wait_ready(["agent-d"], 10 * SLOW)
    r = swarm.cli("node", "drain", "agent-d", "--reason", "maintenance")
    assert "draining" in r.stdout
    assert swarm.state("agent-d") == "draining"
    assert "maintenance" in swarm.nodes()["agent-d"]["reason"]
    wait_for(lambda: "draining" in a.text(), 5, what="agent to hear about the drain")
    # Survives a crash of the manager; the node stays draining after it reconnects.
    swarm.manager.kill9()
    swarm.start_manager()
    wait_for(lambda: swarm.nodes().get("agent-d", {}).get("connected"), 5 * SLOW,
             what="agent reconnect")
    assert swarm.state("agent-d") == "draining"
    r = swarm.cli("node", "drain", "nope", check=False)
    assert r.returncode == 1 and "not found" in r.stderr.lower()


@pytest.mark.manager_args("--heartbeat-interval", "200ms", "--down-after", "1s")
def test_tunable_failure_detection(swarm):
    swarm.start_manager()
    a = swarm.start_agent("agent-t")
    swarm.wait_ready(["agent-t"], 10 * SLOW)
    a.p.send_signal(19)  # SIGSTOP: the connection stays open but goes silent
    try:
        swarm.wait_state("agent-t", "suspect", 1.0 * SLOW)
        swarm.wait_state("agent-t", "down", 2.0 * SLOW)
    finally:
        a.p.send_signal(18)  # SIGCONT
    swarm.wait_ready(["agent-t"], 5 * SLOW)


def test_first_start_creates_private_state(swarm):
    swarm.start_manager()
    st = os.stat(swarm.mdir)
    assert st.st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(swarm.mdir, "ca.key")).st_mode & 0o777 == 0o600
    assert os.stat(swarm.cfg).st_mode & 0o777 == 0o600
    # The token is printed once and stored only as a hash.
    log = swarm.manager.text()
    assert swarm.token in log
    for name in os.listdir(swarm.mdir):
        path = os.path.join(swarm.mdir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert swarm.token.encode() not in f.read(), name
    swarm.manager.term()
    swarm.start_manager(wait=False)
    wait_for(swarm.health_ok, 10 * SLOW)
    assert swarm.token not in swarm.manager.text().split("first start")[-1] or \
        swarm.manager.text().count(swarm.token) == 1


def test_agent_without_sim_flag_or_credentials_fails_clearly(swarm, tmp_path):
    swarm.start_manager()
    r = swarm.cli("agent", "--join", swarm.listen, "--data-dir", str(tmp_path),
                  "--insecure-sim-attestation", check=False)
    assert r.returncode != 0 and "ca issue-agent" in r.stderr
    adir = swarm.issue("agent-hw")
    r = swarm.cli("agent", "--join", swarm.listen, "--data-dir", adir, check=False)
    assert r.returncode != 0 and "insecure-sim-attestation" in r.stderr


def test_manager_without_sim_flag_rejects_sim_agents(swarm):
    swarm.start_manager(sim=False)
    a = swarm.start_agent("agent-sim")
    wait_for(lambda: "rejected" in a.text(), 10 * SLOW, what="rejection")
    assert "insecure-sim-attestation" in a.text()
    assert swarm.state("agent-sim") in (None, "rejected")


def test_cli_flags_and_env_override_the_config_file(swarm, tmp_path):
    swarm.start_manager()
    swarm.start_agent("agent-cli")
    swarm.wait_ready(["agent-cli"], 10 * SLOW)
    env = dict(swarm.env)
    env["SEESWARM_CONFIG"] = str(tmp_path / "missing.json")
    ca = os.path.join(swarm.mdir, "ca.pem")
    # Nothing configured: a clear error naming what is missing.
    r = swarm.cli("node", "list", check=False, env=env)
    assert r.returncode == 1 and "addr" in r.stderr.lower()
    # Flags alone.
    r = swarm.cli("node", "list", "--addr", swarm.api_addr, "--token", swarm.token, "--ca", ca,
                  env=env)
    assert "agent-cli" in r.stdout
    # Environment alone.
    env2 = dict(env, SEESWARM_ADDR=swarm.api_addr, SEESWARM_TOKEN=swarm.token, SEESWARM_CA=ca)
    assert "agent-cli" in swarm.cli("node", "list", env=env2).stdout
    # A flag beats the environment: a wrong token flag fails with 401.
    r = swarm.cli("node", "list", "--token", "sst_wrong", check=False, env=env2)
    assert r.returncode == 1 and ("401" in r.stderr or "token" in r.stderr.lower())


def test_node_list_waits_for_a_change_and_watch_prints_each_one(swarm):
    swarm.start_manager()
    for a in ("agent-w1", "agent-w2"):
        swarm.start_agent(a)
    swarm.wait_ready(["agent-w1", "agent-w2"], 20 * SLOW)
    ix = swarm.get_json("/v1/nodes")["index"]
    # Nothing changes: the answer comes when the wait ends, with the same index.
    t0 = time.monotonic()
    same = swarm.get_json(f"/v1/nodes?index={ix}&wait=1s")
    assert 0.9 <= time.monotonic() - t0 < 5 * SLOW and same["index"] == ix, same
    # A drain half a second in: the waiting request is answered with it.
    threading.Timer(0.5, lambda: swarm.cli("node", "drain", "agent-w1")).start()
    t0 = time.monotonic()
    changed = swarm.get_json(f"/v1/nodes?index={ix}&wait=20s")
    assert time.monotonic() - t0 < 5 * SLOW and changed["index"] > ix, changed
    assert {n["id"]: n for n in changed["nodes"]}["agent-w1"]["draining"] is True, changed
    # The CLI prints the table, then again on the next change (a node leaving).
    w = subprocess.Popen([BIN, "node", "list", "--watch"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=swarm.env)
    try:
        time.sleep(1 * SLOW)
        swarm.agents["agent-w2"].term()
        wait_for(lambda: swarm.state("agent-w2") == "left", 10 * SLOW, what="agent-w2 to leave")
        time.sleep(0.5 * SLOW)
    finally:
        w.terminate()
        out, err = w.communicate(timeout=10)
    tables = out.split("(index ")
    assert len(tables) >= 3, (out, err)  # a header before each table
    assert "agent-w2" in tables[1] and "agent-w2" not in tables[-1], out
