"""TPM 2.0 attestation end to end: a manager and agents, each agent with its own
swtpm whose EK certificate comes from a test CA made with swtpm_localca."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN, SLOW, free_port, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "swtpm-test-ca.sh")

pytestmark = pytest.mark.skipif(
    not (shutil.which("swtpm") and shutil.which("swtpm_setup") and shutil.which("swtpm_localca")),
    reason="swtpm, swtpm_setup and swtpm_localca are needed (Debian: swtpm swtpm-tools)")


def expected_pcr23(join, labels, price=0.0, pcrs="sha256:0-7,23"):
    """Replays the agent's measured start: reset, extend H(binary), extend H(config)."""
    with open(os.path.realpath(BIN), "rb") as f:
        h_exe = hashlib.sha256(f.read()).digest()
    config = (f"seeswarm-agent-config-v1\njoin={join}\nlabels={','.join(labels)}\n"
              f"price_per_hour={price:.6f}\npcrs={pcrs}\n")
    pcr = bytes(32)
    for d in (h_exe, hashlib.sha256(config.encode()).digest()):
        pcr = hashlib.sha256(pcr + d).digest()
    return pcr.hex()


class Tpms:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def make(self, name):
        d = os.path.join(self.tmp, "tpm-" + name)
        r = subprocess.run(["bash", SCRIPT, "setup", d], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        port = free_port()
        log = open(os.path.join(d, "swtpm.log"), "ab")
        p = subprocess.Popen(["bash", SCRIPT, "run", d, str(port)], stdout=log, stderr=log)
        self.procs.append(p)
        wait_for(lambda: self._up(port), 10, what="swtpm")
        return d, f"swtpm:host=127.0.0.1,port={port}"

    @staticmethod
    def _up(port):
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture
def tpms(swarm):
    t = Tpms(swarm.tmp)
    yield t
    # Agents first (the swarm fixture stops them after this), then the TPMs.
    for a in swarm.agents.values():
        if a.alive():
            a.term()
    t.stop()


def write_policy(path, pin, interval="2s"):
    with open(path, "w") as f:
        json.dump({"pools": {"default": {
            "allowed_tee": ["tpm"], "reattest_interval": interval,
            "tpm": {"pcrs": {"sha256": {"23": [pin]}}}}}}, f)


def test_tpm_admission_rejections_and_policy_eviction(swarm, tpms):
    env_tss = {"TSS2_LOG": "all+none"}
    swarm.env.update(env_tss)
    coll = os.path.join(swarm.tmp, "collateral")
    os.makedirs(os.path.join(coll, "tpm", "ek-ca"))
    agents = {}
    for name in ("t1", "t2", "t3", "t-measure", "t-untrusted", "t-replay"):
        d, tcti = tpms.make(name)
        agents[name] = tcti
        if name != "t-untrusted":
            for f in os.listdir(os.path.join(d, "collateral", "tpm", "ek-ca")):
                shutil.copy(os.path.join(d, "collateral", "tpm", "ek-ca", f),
                            os.path.join(coll, "tpm", "ek-ca", f"{name}-{f}"))
    pin = expected_pcr23(swarm.listen, ["zone=a"])
    policy = os.path.join(swarm.tmp, "policy.json")
    write_policy(policy, pin)
    swarm.extra = ["--policy", policy, "--collateral", coll]
    swarm.start_manager()
    for name in ("t1", "t2", "t3"):
        swarm.start_agent(name, labels=["zone=a"], extra=["--attester", "tpm", "--tcti", agents[name]])
    swarm.wait_ready(["t1", "t2", "t3"], 20 * SLOW)
    n = swarm.nodes()["t1"]
    assert n["tee"] == "tpm" and n["attestation"]["status"] == "affirming"
    assert n["attestation"]["insecure"] is False
    # A different configuration measures to a different PCR 23: rejected.
    bad = swarm.start_agent("t-measure", labels=["zone=b"],
                            extra=["--attester", "tpm", "--tcti", agents["t-measure"]])
    swarm.wait_state("t-measure", "rejected", 15 * SLOW)
    assert "23" in swarm.nodes(all_=True)["t-measure"]["reason"]
    # An EK certificate from a CA the manager does not trust: rejected.
    swarm.start_agent("t-untrusted", labels=["zone=a"],
                      extra=["--attester", "tpm", "--tcti", agents["t-untrusted"]])
    swarm.wait_state("t-untrusted", "rejected", 15 * SLOW)
    assert "EK" in swarm.nodes(all_=True)["t-untrusted"]["reason"]
    del bad
    # Re-attestation keeps the good ones ready.
    first = swarm.nodes()["t2"]["attestation"]["at"]
    wait_for(lambda: swarm.nodes()["t2"]["attestation"]["at"] != first, 5 * SLOW,
             what="a TPM re-attestation")
    assert swarm.state("t2") == "ready"
    # A replayed quote: t-replay is admitted with a fresh quote, then answers the
    # next challenge with that same quote (old nonce): evicted, certificate revoked.
    swarm.start_agent("t-replay", labels=["zone=a"],
                      extra=["--attester", "tpm", "--tcti", agents["t-replay"],
                             "--insecure-test-replay-evidence"])
    swarm.wait_ready(["t-replay"], 20 * SLOW)
    swarm.wait_state("t-replay", "evicted", (2 + 3) * SLOW)
    reason = swarm.nodes(all_=True)["t-replay"]["reason"]
    assert "extraData" in reason and "binding" in reason, reason
    assert "replaying the first evidence" in swarm.agents["t-replay"].text()
    swarm.agents["t-replay"].term()
    # A policy change that makes them non-compliant evicts them at the next re-attestation.
    write_policy(policy, "00" * 32)
    t0 = time.monotonic()
    swarm.manager.p.send_signal(signal.SIGHUP)
    for name in ("t1", "t2", "t3"):
        swarm.wait_state(name, "evicted", 2 + 2 * SLOW - (time.monotonic() - t0) + 0.5)
    assert time.monotonic() - t0 < (2 + 2) * SLOW
