"""Hostile input on the agent port and the API. After each attack the manager
keeps serving: the legitimate agent stays ready and a new agent can join."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (SLOW, frame, hello_payload, read_frame, read_until_closed, tls_connect,
                      wait_for)

MSG_HELLO, MSG_ERROR, MSG_CHALLENGE = 1, 10, 2


@pytest.fixture
def live(swarm):
    swarm.start_manager()
    swarm.start_agent("good")
    swarm.wait_ready(["good"], 10 * SLOW)
    yield swarm
    # The manager still serves: the good agent is ready, the API answers, a new agent joins.
    assert swarm.manager.alive(), "manager died"
    assert swarm.state("good") == "ready"
    swarm.start_agent("fresh")
    swarm.wait_ready(["good", "fresh"], 10 * SLOW)


def log_has(swarm, text, timeout=5):
    wait_for(lambda: text in swarm.manager.text(), timeout, what=f"log line {text!r}")


def test_random_bytes(live):
    s = socket.create_connection(("127.0.0.1", live.port))
    s.sendall(os.urandom(4096))
    s.settimeout(5)
    try:
        assert s.recv(65536) is not None
    except (ConnectionError, socket.timeout):
        pass
    s.close()
    log_has(live, "TLS")


def test_plain_tcp_client_that_says_nothing_is_timed_out_or_closed(live):
    s = socket.create_connection(("127.0.0.1", live.port))
    s.close()
    log_has(live, "peer closed during the TLS handshake")


def test_http_request(live):
    s = socket.create_connection(("127.0.0.1", live.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    try:
        s.recv(100)
    except (ConnectionError, socket.timeout):
        pass
    s.close()
    log_has(live, "closed: ")


def test_tls_client_with_certificate_from_another_ca(live, tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=good"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(live.mdir, "ca.pem"))
    ctx.load_cert_chain(str(crt), str(key))
    raw = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="seeswarm-manager")
    # In TLS 1.3 the rejection arrives on the client's first read.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        s.sendall(frame(MSG_HELLO, hello_payload("good")))
        if not s.recv(100):
            raise ConnectionError("closed")
    s.close()
    log_has(live, "peer certificate rejected")


def test_frame_over_maximum_size(live):
    s = tls_connect(live, live.issue("evil-big"))
    s.sendall(frame(MSG_HELLO, b"", length=(1 << 20) + 1))
    read_until_closed(s)
    s.close()
    log_has(live, "frame larger than the maximum size")


def test_truncated_frame(live):
    s = tls_connect(live, live.issue("evil-trunc"))
    s.sendall(frame(MSG_HELLO, b"\x08\x01", length=100))
    s.close()
    log_has(live, "connection ended inside a frame")


def test_unknown_message_type(live):
    s = tls_connect(live, live.issue("evil-type"))
    s.sendall(frame(999, b"\x08\x01"))
    frames = read_until_closed(s)
    s.close()
    assert frames and frames[0][0] == MSG_ERROR and b"unknown message type" in frames[0][1]
    log_has(live, "unknown message type")


def test_hello_with_wrong_protocol_version(live):
    s = tls_connect(live, live.issue("evil-ver"))
    s.sendall(frame(MSG_HELLO, hello_payload("evil-ver", version=7)))
    frames = read_until_closed(s)
    s.close()
    assert frames and frames[0][0] == MSG_ERROR
    assert b"unsupported protocol version 7" in frames[0][1]
    log_has(live, "unsupported protocol version 7")


def test_hello_with_someone_elses_id_is_rejected(live):
    s = tls_connect(live, live.issue("evil-id"))
    s.sendall(frame(MSG_HELLO, hello_payload("good")))
    frames = read_until_closed(s)
    s.close()
    assert frames and b"does not match its certificate" in frames[0][1]
    assert live.state("good") == "ready"


def test_bad_reserved_field_and_garbage_payload(live):
    s = tls_connect(live, live.issue("evil-res"))
    s.sendall(frame(MSG_HELLO, b"\x08\x01", reserved=5))
    read_until_closed(s)
    s.close()
    log_has(live, "bad frame header")
    s = tls_connect(live, live.issue("evil-pb"))
    s.sendall(frame(MSG_HELLO, b"\xff\xff\xff\xff\xff\xff"))
    frames = read_until_closed(s)
    s.close()
    assert frames and frames[0][0] == MSG_ERROR and b"does not decode" in frames[0][1]


def test_evidence_before_hello_is_a_protocol_error(live):
    s = tls_connect(live, live.issue("evil-order"))
    s.sendall(frame(3, b"\x0a\x03sim"))
    frames = read_until_closed(s)
    s.close()
    assert frames and b"unexpected evidence message" in frames[0][1]


def test_wrong_evidence_binding_is_rejected(live):
    s = tls_connect(live, live.issue("evil-bind"))
    s.sendall(frame(MSG_HELLO, hello_payload("evil-bind")))
    f = read_frame(s)
    assert f and f[0] == MSG_CHALLENGE
    ev = b"SSSIM001" + b"\x00" * 32     # report data not bound to nonce and key
    payload = b"\x0a\x03sim" + b"\x12" + bytes([len(ev)]) + ev
    s.sendall(frame(3, payload))
    frames = read_until_closed(s)
    s.close()
    assert frames and frames[0][0] == 5 and b"report data does not match" in frames[0][1]
    assert live.state("evil-bind") == "rejected"
    out = live.cli("node", "list", "--all").stdout
    assert "evil-bind" in out and "rejected" in out


def test_thousand_connections_opened_and_dropped(live):
    socks = []
    for i in range(1000):
        socks.append(socket.create_connection(("127.0.0.1", live.port), timeout=10))
        if len(socks) >= 100:
            for s in socks:
                s.close()
            socks = []
    for s in socks:
        s.close()
    time.sleep(0.5)
    status, raw, _ = live.request("GET", "/metrics")
    assert status == 200
    accepted = [l for l in raw.decode().splitlines() if l.startswith("seeswarm_agent_accepted_total")]
    assert int(accepted[0].split()[1]) >= 1000


# ---- API ---------------------------------------------------------------

def test_api_errors(live):
    s = live
    assert s.request("GET", "/v1/health", token=None)[0] == 200
    for tok in (None, "wrong-token", "sst_" + "0" * 64):
        st, raw, hdrs = s.request("GET", "/v1/nodes", token=tok)
        assert st == 401 and b'"error"' in raw, (tok, st, raw)
    assert s.request("GET", "/metrics", token=None)[0] == 401
    st, raw, _ = s.request("GET", "/v1/nope")
    assert st == 404 and b'"error"' in raw
    st, raw, _ = s.request("DELETE", "/v1/nodes")
    assert st == 405
    st, raw, _ = s.request("GET", "/v1/nodes/does-not-exist")
    assert st == 404
    st, raw, _ = s.request("POST", "/v1/nodes/good/drain", body=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert st == 400 and b"error" in raw
    st, raw, _ = s.request("POST", "/v1/nodes/good/drain", body={"reason": 5})
    assert st == 400
    st, raw, _ = s.request("POST", "/v1/nodes/good/drain", body={"bogus": "x"})
    assert st == 400
    st, raw, _ = s.request("POST", "/v1/nodes/good/drain", body=b"x" * (200 * 1024))
    assert st == 413
    st, raw, hdr = s.request("GET", "/metrics")
    assert st == 200 and b"seeswarm_nodes{state=\"ready\"}" in raw
    assert s.state("good") == "ready"   # none of the bad drains took effect
