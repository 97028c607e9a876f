"""Fixtures for seeswarm system tests: real manager and agent processes on loopback.

Every process a test starts is recorded and ended by PID at teardown. In the
sanitizer run (SEESWARM_ASAN=1) the manager must exit cleanly on SIGTERM and
no log may contain a sanitizer report.
"""
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

BIN = os.environ.get("SEESWARM_BIN") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "seeswarm"))
ASAN = os.environ.get("SEESWARM_ASAN") == "1"
SLOW = 2.0 if ASAN else 1.0


def free_port():
    """Returns a port that is free now, with its successor also free. It is
    drawn below the kernel's ephemeral range (32768 and up here), so that no
    outgoing connection or port-0 listener (an agent's peer port) takes it
    while a killed manager is being restarted on it."""
    lo, hi = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first = int(f.read().split()[0])
        if first > 12000:
            hi = min(hi, first - 2)
            lo = min(lo, hi - 8000)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = random.randint(lo, hi)
        socks = []
        try:
            for p in (port, port + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair")


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Proc:
    def __init__(self, args, log_path, env):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)

    def term(self, timeout=15):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(timeout=10)
            raise AssertionError(f"{self.args[1]} did not stop on SIGTERM")

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Swarm:
    """One manager (restartable) plus agents, all in a temporary directory."""

    def __init__(self, tmp, extra_manager_args=()):
        self.tmp = tmp
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.api_addr = f"127.0.0.1:{self.port + 1}"
        self.mdir = os.path.join(tmp, "manager")
        self.cfg = os.path.join(tmp, "client.json")
        self.env = dict(os.environ)
        self.env["SEESWARM_CONFIG"] = self.cfg
        self.env.pop("SEESWARM_ADDR", None)
        self.env.pop("SEESWARM_TOKEN", None)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.extra = list(extra_manager_args)
        self.manager = None
        self.agents = {}
        self.all_procs = []
        self.token = None

    # ---- processes -------------------------------------------------------
    def start_manager(self, wait=True, sim=True):
        args = [BIN, "manager", "--data-dir", self.mdir, "--listen", self.listen,
                "--api", self.api_addr] + (["--insecure-sim-attestation"] if sim else []) + self.extra
        self.manager = Proc(args, os.path.join(self.tmp, "manager.log"), self.env)
        self.all_procs.append(self.manager)
        if wait:
            wait_for(self.health_ok, 15 * SLOW, what="manager API")
            with open(self.cfg) as f:
                conf = json.load(f)
            self.token = conf["token"]
            self.ca = conf["ca_file"]
        return self.manager

    def issue(self, agent_id):
        adir = os.path.join(self.tmp, agent_id)
        if not os.path.exists(os.path.join(adir, "agent.pem")):
            self.cli("ca", "issue-agent", "--data-dir", self.mdir, "--out", adir, "--id", agent_id)
        return adir

    def start_agent(self, agent_id, labels=(), extra=()):
        adir = self.issue(agent_id)
        args = [BIN, "agent", "--join", self.listen, "--data-dir", adir,
                "--insecure-sim-attestation"]
        for lab in labels:
            args += ["--label", lab]
        args += list(extra)
        p = Proc(args, os.path.join(self.tmp, f"{agent_id}.log"), self.env)
        self.agents[agent_id] = p
        self.all_procs.append(p)
        return p

    def cli(self, *args, check=True, env=None):
        r = subprocess.run([BIN] + list(args), capture_output=True, text=True,
                           env=env or self.env, timeout=60 * SLOW)
        if check and r.returncode != 0:
            raise AssertionError(f"seeswarm {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    # ---- API -------------------------------------------------------------
    def ssl_ctx(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.mdir, "ca.pem"))
        return ctx

    def request(self, method, path, body=None, token="default", headers=None):
        url = f"https://{self.api_addr}{path}"
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=self.ssl_ctx(), timeout=10 * SLOW) as r:
                raw = r.read()
                return r.status, raw, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get_json(self, path):
        status, raw, _ = self.request("GET", path)
        assert status == 200, (status, raw)
        return json.loads(raw)

    def health_ok(self):
        try:
            status, _, _ = self.request("GET", "/v1/health", token=None)
            return status == 200
        except (OSError, ssl.SSLError, urllib.error.URLError):
            return False

    def nodes(self, all_=False):
        return {n["id"]: n for n in self.get_json("/v1/nodes" + ("?all=1" if all_ else ""))["nodes"]}

    def state(self, node_id):
        try:
            n = self.nodes(all_=True).get(node_id)
        except (OSError, AssertionError):
            return None
        return n["state"] if n else None

    def wait_state(self, node_id, state, timeout):
        return wait_for(lambda: self.state(node_id) == state, timeout,
                        what=f"{node_id} to be {state}")

    def wait_ready(self, ids, timeout):
        def ok():
            try:
                ns = self.nodes()
            except (OSError, AssertionError):
                return False
            return all(ns.get(i, {}).get("state") == "ready" for i in ids)
        return wait_for(ok, timeout, what=f"{ids} ready")

    # ---- teardown ----------------------------------------------------------
    def stop(self):
        errors = []
        for p in self.all_procs:
            if p is self.manager:
                continue
            if p.alive():
                try:
                    p.term()
                except AssertionError as e:
                    errors.append(str(e))
        if self.manager and self.manager.alive():
            try:
                rc = self.manager.term()
                if ASAN and rc != 0:
                    errors.append(f"manager exited with {rc} under sanitizers")
            except AssertionError as e:
                errors.append(str(e))
        for p in self.all_procs:
            t = p.text()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in t:
                    errors.append(f"{marker} in {p.log_path}:\n{t[-4000:]}")
        return errors


@pytest.fixture
def swarm(request):
    tmp = tempfile.mkdtemp(prefix="ss-test-")
    marker = request.node.get_closest_marker("manager_args")
    s = Swarm(tmp, marker.args if marker else ())
    yield s
    errors = s.stop()
    if errors:
        pytest.fail("\n".join(errors + [f"(the processes' files are in {tmp})"]), pytrace=False)
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        # The logs of a failed test stay for whoever reads the failure (the CI prints this line).
        print(f"\n(the processes' files are in {tmp}; manager log tail:)\n{s.manager.text()[-3000:] if s.manager else ''}")
    elif not os.environ.get("SEESWARM_KEEP_TMP"):
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so the swarm fixture knows whether the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_configure(config):
    config.addinivalue_line("markers", "manager_args(*args): extra manager flags")


# ---- raw agent-protocol client for hostile-input tests ---------------------

HDR = struct.Struct(">IHH")


def frame(msg_type, payload, reserved=0, length=None):
    return HDR.pack(len(payload) if length is None else length, msg_type, reserved) + payload


def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, wire, value):
    key = pb_varint((num << 3) | wire)
    if wire == 0:
        return key + pb_varint(value)
    if wire == 2:
        return key + pb_varint(len(value)) + value
    raise ValueError(wire)


def hello_payload(agent_id, version=1, labels=()):
    """A Hello; labels are (key, value) pairs."""
    caps = pb_field(1, 0, 2)  # cpu_cores = 2
    labs = b"".join(pb_field(5, 2, pb_field(1, 2, k.encode()) + pb_field(2, 2, v.encode()))
                    for k, v in labels)
    return (pb_field(1, 0, version) + pb_field(2, 2, agent_id.encode()) +
            pb_field(3, 2, b"test") + pb_field(4, 2, caps) + labs + pb_field(7, 2, b"sim"))


def tls_connect(swarm, agent_dir, timeout=10, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(agent_dir, "ca.pem"))
    ctx.load_cert_chain(cert or os.path.join(agent_dir, "agent.pem"),
                        os.path.join(agent_dir, "agent.key"))
    raw = socket.create_connection(("127.0.0.1", swarm.port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="seeswarm-manager")


def read_frame(sock):
    hdr = b""
    while len(hdr) < 8:
        chunk = sock.recv(8 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    length, typ, _ = HDR.unpack(hdr)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return typ, body


def read_until_closed(sock, limit=20):
    """Reads frames until the peer closes; returns the list of (type, payload)."""
    frames = []
    try:
        for _ in range(limit):
            f = read_frame(sock)
            if f is None:
                break
            frames.append(f)
    except (ssl.SSLError, ConnectionError, socket.timeout):
        pass
    return frames
