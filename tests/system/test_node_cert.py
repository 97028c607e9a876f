"""Node certificates: issued after admission for the attested key, renewed at
each re-attestation, required on later connections, revoked on eviction and the
revocation pushed to every agent."""
import json
import os
import shutil
import signal

from cryptography import x509

from conftest import (SLOW, frame, hello_payload, read_frame, read_until_closed, tls_connect,
                      wait_for)

PREFIX = "urn:seeswarm:attestation-result:sha256:"


def load(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def write_policy(swarm, pools):
    path = os.path.join(swarm.tmp, "policy.json")
    with open(path, "w") as f:
        json.dump({"pools": pools}, f)
    return path


def test_node_certificate_lifecycle(swarm):
    policy = write_policy(swarm, {
        "a": {"allowed_tee": ["sim"], "reattest_interval": "2s"},
        "b": {"allowed_tee": ["sim"], "reattest_interval": "2s"}})
    swarm.extra = ["--policy", policy]
    swarm.start_manager()
    ta = swarm.start_agent("na", labels=["pool=a"])
    tb = swarm.start_agent("nb", labels=["pool=b"])
    swarm.wait_ready(["na", "nb"], 10 * SLOW)
    pem = os.path.join(swarm.tmp, "na", "node.pem")
    wait_for(lambda: os.path.exists(pem), 5, what="node.pem")
    cert = load(pem)
    # SAN = node id, plus the digest of the attestation result.
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["na"]
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert len(uris) == 1 and uris[0].startswith(PREFIX)
    node = swarm.nodes()["na"]
    assert uris[0][len(PREFIX):] == node["attestation"]["result_digest"]
    assert int(node["node_certificate"]["serial"], 16) == cert.serial_number
    lifetime = cert.not_valid_after - cert.not_valid_before
    assert 3590 <= lifetime.total_seconds() <= 3700
    # Renewed at each re-attestation.
    first = cert.serial_number
    wait_for(lambda: load(pem).serial_number != first, 5 * SLOW, what="renewal")
    assert int(swarm.nodes()["na"]["node_certificate"]["serial"], 16) == load(pem).serial_number
    # A restarted agent connects with its node certificate.
    assert ta.term() == 0
    ta2 = swarm.start_agent("na", labels=["pool=a"])
    wait_for(lambda: "node na admitted" in swarm.manager.text()
             and "connected with its node certificate" in swarm.manager.text(), 10 * SLOW,
             what="admission with the node certificate")
    swarm.wait_ready(["na"], 10 * SLOW)
    # While nb's node certificate is valid, a join certificate for nb with
    # another key does not get in ...
    other = os.path.join(swarm.tmp, "nb-other")
    swarm.cli("ca", "issue-agent", "--data-dir", swarm.mdir, "--out", other, "--id", "nb")
    s = tls_connect(swarm, other)
    s.sendall(frame(1, hello_payload("nb")))
    frames = read_until_closed(s)
    s.close()
    assert frames and b"connect with it, not with the join certificate" in frames[0][1]
    # ... while nb's own join certificate, whose key the node certificate
    # names, is challenged to attest again (an agent that lost its node.pem).
    s = tls_connect(swarm, os.path.join(swarm.tmp, "nb"))
    s.sendall(frame(1, hello_payload("nb", labels=[("pool", "b")])))
    first = read_frame(s)
    s.close()
    assert first is not None and first[0] == 2, first      # MSG_CHALLENGE
    # Evicting na revokes its certificate; the revocation reaches nb.
    revoked = swarm.nodes()["na"]["node_certificate"]["serial"]
    saved = os.path.join(swarm.tmp, "na-node-saved.pem")
    shutil.copy(pem, saved)
    write_policy(swarm, {
        "a": {"allowed_tee": ["tpm"], "reattest_interval": "2s"},
        "b": {"allowed_tee": ["sim"], "reattest_interval": "2s"}})
    swarm.manager.p.send_signal(signal.SIGHUP)
    swarm.wait_state("na", "evicted", 5 * SLOW)
    wait_for(lambda: f"revocation received: node certificate {revoked}" in tb.text(), 5,
             what="revocation push")
    assert swarm.nodes(all_=True)["na"]["node_certificate"]["serial"] == ""
    # The evicted agent drops its node certificate and retries with its join
    # certificate, which the new policy refuses: it stays evicted.
    wait_for(lambda: "dropping node certificate" in ta2.text(), 10 * SLOW, what="drop")
    # Presenting the revoked certificate is refused.
    s = tls_connect(swarm, os.path.join(swarm.tmp, "na"), cert=saved)
    s.sendall(frame(1, hello_payload("na")))
    frames = read_until_closed(s)
    s.close()
    assert frames and f"certificate {revoked} is revoked".encode() in frames[0][1]
    assert swarm.state("na") == "evicted"
    assert swarm.state("nb") == "ready"
