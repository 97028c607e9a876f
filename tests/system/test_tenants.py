"""Tenant tokens: each reaches only its tenant's jobs, tasks and blobs.

A real manager and agent; tokens are made with the CLI (the admin token) and
used over the API and by the CLI through a client config file that
`token create --out` writes.
"""
import hashlib
import json
import os
import re
import time

import pytest

from conftest import SLOW, wait_for
from test_jobs import start, wait_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")


def make_token(swarm, tenant, out=None):
    args = ["token", "create", "--tenant", tenant, "--json"] + (["--out", out] if out else [])
    t = json.loads(swarm.cli(*args).stdout)
    assert t["tenant"] == tenant and t["token"].startswith("sst_") and len(t["id"]) == 16, t
    return t


def call(swarm, tok, method, path, body=None, headers=None):
    status, raw, _ = swarm.request(method, path, body=body, token=tok, headers=headers)
    return status, (json.loads(raw) if raw and raw[:1] in (b"{", b"[") else raw)


def upload(swarm, tok, data):
    digest = hashlib.sha256(data).hexdigest()
    st, body = call(swarm, tok, "PUT", f"/v1/blobs/{digest}", body=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201, (st, body)
    return digest


def copy_job(digest, **extra):
    return dict({"name": "copy", "tasks": [
        {"name": "c", "command": ["sh", "-c", "tr a-z A-Z < /in/x > /out/y"],
         "inputs": [{"name": "x", "blob": digest}], "outputs": ["y"],
         "resources": {"cpu": 0.25, "memory": "32M"}}]}, **extra)


def test_a_tenant_token_reaches_only_its_own_jobs_and_blobs(swarm):
    start(swarm, 1)
    alice, bob = make_token(swarm, "alice")["token"], make_token(swarm, "bob")["token"]

    # Uploads: the uploader sees its blob; another tenant does not, nor can it name it in a job.
    secret = b"alice's private text\n" * 10
    d = upload(swarm, alice, secret)
    assert call(swarm, alice, "HEAD", f"/v1/blobs/{d}")[0] == 200
    assert call(swarm, bob, "HEAD", f"/v1/blobs/{d}")[0] == 404
    assert call(swarm, bob, "GET", f"/v1/blobs/{d}")[0] == 404
    assert call(swarm, "default", "HEAD", f"/v1/blobs/{d}")[0] == 200  # the admin
    st, body = call(swarm, bob, "POST", "/v1/jobs", copy_job(d))
    assert st == 400 and "has not been uploaded" in body["error"]["message"], (st, body)

    # A job names its tenant, or takes the token's; another tenant's name is refused.
    st, body = call(swarm, alice, "POST", "/v1/jobs", copy_job(d, tenant="bob"))
    assert st == 403 and 'tenant "alice"' in body["error"]["message"], (st, body)
    st, job = call(swarm, alice, "POST", "/v1/jobs", copy_job(d))
    assert st == 201 and job["tenant"] == "alice", (st, job)
    jid = job["id"]
    j = wait_job(swarm, jid, 60)
    assert j["tenant"] == "alice"

    # Bob sees none of it: every route answers as if the job did not exist.
    st, mine = call(swarm, bob, "GET", "/v1/jobs")
    assert st == 200 and mine["jobs"] == [], mine
    for method, path in [("GET", f"/v1/jobs/{jid}"), ("GET", f"/v1/jobs/{jid}/tasks"),
                         ("GET", f"/v1/jobs/{jid}/explain"), ("GET", f"/v1/tasks/{jid}.0/logs"),
                         ("GET", f"/v1/tasks/{jid}.0/output"), ("DELETE", f"/v1/jobs/{jid}")]:
        st, body = call(swarm, bob, method, path)
        assert st == 404, (method, path, st, body)
    st, ts = call(swarm, alice, "GET", f"/v1/jobs/{jid}/tasks")
    out = ts["tasks"][0]["outputs"][0]["digest"]
    st, raw = call(swarm, alice, "GET", f"/v1/blobs/{out}")
    assert st == 200 and raw == secret.upper(), (st, raw[:100])
    assert call(swarm, bob, "GET", f"/v1/blobs/{out}")[0] == 404
    assert call(swarm, alice, "GET", f"/v1/tasks/{jid}.0/logs")[0] == 200
    assert call(swarm, alice, "GET", f"/v1/tasks/{jid}.0/output")[0] == 200

    # Alice lists her own job only; the admin lists every job.
    bobs = call(swarm, bob, "POST", "/v1/jobs", {"name": "b", "tasks": [
        {"name": "t", "command": ["true"], "resources": {"cpu": 0.25, "memory": "32M"}}]})[1]["id"]
    assert [x["id"] for x in call(swarm, alice, "GET", "/v1/jobs")[1]["jobs"]] == [jid]
    assert {x["id"] for x in swarm.get_json("/v1/jobs")["jobs"]} == {jid, bobs}

    # The cluster's routes need the admin token.
    for method, path in [("GET", "/v1/nodes"), ("GET", "/v1/nodes/agent-0"), ("GET", "/metrics"),
                         ("POST", "/v1/nodes/agent-0/drain"), ("GET", "/v1/tokens"),
                         ("GET", f"/v1/blobs/{d}/replicas")]:
        st, body = call(swarm, alice, method, path)
        assert st == 403 and "admin token" in body["error"]["message"], (method, path, st, body)
    st, body = call(swarm, alice, "POST", "/v1/tokens", {"tenant": "alice"})
    assert st == 403, (st, body)
    assert call(swarm, "sst_" + "0" * 64, "GET", "/v1/jobs")[0] == 401


def test_the_cli_runs_a_job_with_a_tenant_config(swarm):
    """`token create --out` writes a client config; `job run --wait --out` with it
    uploads the input, runs the job as the tenant and fetches its results."""
    start(swarm, 1)
    cfg = os.path.join(swarm.tmp, "carol.json")
    make_token(swarm, "carol", out=cfg)
    assert oct(os.stat(cfg).st_mode & 0o777) == "0o600"
    env = dict(swarm.env, SEESWARM_CONFIG=cfg)
    with open(os.path.join(swarm.tmp, "in.txt"), "w") as f:
        f.write("one two three\n")
    spec = os.path.join(swarm.tmp, "job.json")
    with open(spec, "w") as f:
        json.dump({"name": "wc", "tasks": [
            {"name": "wc", "command": ["sh", "-c", "wc -w < /in/t > /out/n"],
             "inputs": [{"name": "t", "file": "in.txt"}], "outputs": ["n"]}]}, f)
    out = os.path.join(swarm.tmp, "res")
    swarm.cli("job", "run", spec, "--wait", "--out", out, env=env)
    with open(os.path.join(out, "wc", "n")) as f:
        assert f.read().strip() == "3"
    r = swarm.cli("job", "list", "--json", env=env)
    jobs = json.loads(r.stdout)["jobs"]
    assert len(jobs) == 1 and jobs[0]["tenant"] == "carol", jobs
    r = swarm.cli("node", "list", env=env, check=False)
    assert r.returncode == 1 and "admin token" in r.stderr, r.stderr
    r = swarm.cli("token", "list")
    assert "carol" in r.stdout and "sst_" not in r.stdout, r.stdout


def test_tokens_and_uploads_survive_a_manager_crash_and_revocation_is_at_once(swarm):
    start(swarm, 1)
    t = make_token(swarm, "dave")
    d = upload(swarm, t["token"], b"dave's bytes\n")
    st, job = call(swarm, t["token"], "POST", "/v1/jobs", copy_job(d))
    assert st == 201, (st, job)
    swarm.manager.kill9()
    swarm.start_manager()
    # The token, the upload and the job's tenant were durable when acknowledged.
    assert call(swarm, t["token"], "HEAD", f"/v1/blobs/{d}")[0] == 200
    st, mine = call(swarm, t["token"], "GET", "/v1/jobs")
    assert st == 200 and [x["id"] for x in mine["jobs"]] == [job["id"]], mine
    assert mine["jobs"][0]["tenant"] == "dave"
    wait_for(lambda: call(swarm, t["token"], "GET", f"/v1/jobs/{job['id']}")[1]["state"] == "succeeded",
             60 * SLOW, what="dave's job to finish after the restart")
    out = call(swarm, t["token"], "GET", f"/v1/jobs/{job['id']}/tasks")[1]["tasks"][0]["outputs"][0]["digest"]
    # What the job uses stays visible to its tenant across a restart, and can feed its next job.
    swarm.manager.kill9()
    swarm.start_manager()
    st, raw = call(swarm, t["token"], "GET", f"/v1/blobs/{out}")
    assert st == 200 and raw == b"DAVE'S BYTES\n", (st, raw)
    st, again = call(swarm, t["token"], "POST", "/v1/jobs", copy_job(out))
    assert st == 201, (st, again)
    other = make_token(swarm, "erin")["token"]
    assert call(swarm, other, "GET", f"/v1/blobs/{out}")[0] == 404
    st, body = call(swarm, other, "POST", "/v1/jobs", copy_job(out))
    assert st == 400 and "has not been uploaded" in body["error"]["message"], (st, body)
    r = swarm.cli("token", "revoke", t["id"])
    assert "revoked" in r.stdout
    assert call(swarm, t["token"], "GET", "/v1/jobs")[0] == 401
    swarm.manager.kill9()
    swarm.start_manager()
    assert call(swarm, t["token"], "GET", "/v1/jobs")[0] == 401
    assert [x["tenant"] for x in swarm.get_json("/v1/tokens")["tokens"]] == ["erin"]
    r = swarm.cli("token", "revoke", t["id"], check=False)
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


@pytest.mark.manager_args("--tenant-max-jobs", "2")
def test_a_tenant_token_has_a_quota_of_unfinished_jobs(swarm):
    start(swarm, 1)
    tok = make_token(swarm, "frank")["token"]
    slow = {"name": "slow", "tasks": [{"name": "s", "command": ["sleep", "60"],
                                      "resources": {"cpu": 0.25, "memory": "32M"}}]}
    ids = [call(swarm, tok, "POST", "/v1/jobs", slow)[1]["id"] for _ in range(2)]
    st, body = call(swarm, tok, "POST", "/v1/jobs", slow)
    assert st == 429 and "frank has 2 unfinished jobs" in body["error"]["message"], (st, body)
    # A plan is not refused: it says the submission would be, and still places.
    st, plan = call(swarm, tok, "POST", "/v1/jobs/plan", slow)
    assert st == 200 and plan["tenant"] == "frank" and plan["placed_now"] == 1, (st, plan)
    assert len(plan["warnings"]) == 1 and "frank has 2 unfinished jobs" in plan["warnings"][0], plan
    # Other tenants, and the admin, are not held back by frank's quota.
    other = make_token(swarm, "grace")["token"]
    assert call(swarm, other, "POST", "/v1/jobs", slow)[0] == 201
    st, admin = call(swarm, "default", "POST", "/v1/jobs", dict(slow, tenant="frank"))
    assert st == 201, (st, admin)
    # The quota counts every unfinished job of the tenant, the admin's too;
    # a finished (here canceled) job frees its place.
    assert call(swarm, tok, "DELETE", f"/v1/jobs/{ids[0]}")[0] == 200
    assert call(swarm, tok, "POST", "/v1/jobs", slow)[0] == 429
    assert call(swarm, "default", "DELETE", f"/v1/jobs/{admin['id']}")[0] == 200
    st, body = call(swarm, tok, "POST", "/v1/jobs", slow)
    assert st == 201, (st, body)


def test_a_token_with_a_ttl_stops_working_at_its_expiry_even_across_a_restart(swarm):
    swarm.start_manager()
    r = swarm.cli("token", "create", "--tenant", "temp", "--ttl", "3s")
    assert "it stops working at" in r.stdout, r.stdout
    tok = [w for w in r.stdout.split() if w.startswith("sst_")][0]
    keep = make_token(swarm, "kept")["token"]
    listed = swarm.cli("token", "list").stdout
    assert "EXPIRES" in listed and "never" in listed, listed
    assert call(swarm, tok, "GET", "/v1/jobs")[0] == 200
    exp = [t for t in swarm.get_json("/v1/tokens")["tokens"] if t["tenant"] == "temp"][0]["expires_ms"]
    swarm.manager.kill9()
    swarm.start_manager()
    # Still good until its expiry (when the restart was quicker than 3 s), refused after it.
    if time.time() * 1000 < exp - 500:
        assert call(swarm, tok, "GET", "/v1/jobs")[0] == 200
    wait_for(lambda: time.time() * 1000 > exp + 100, 10, what="the expiry")
    assert call(swarm, tok, "GET", "/v1/jobs")[0] == 401
    assert call(swarm, keep, "GET", "/v1/jobs")[0] == 200
    for bad in ("0s", "500ms", "3651d", "soon"):
        r = swarm.cli("token", "create", "--tenant", "x", "--ttl", bad, check=False)
        assert r.returncode == 2 and "--ttl" in r.stderr, (bad, r.stderr)
    st, body = call(swarm, "default", "POST", "/v1/tokens", {"tenant": "x", "ttl_seconds": 0})
    assert st == 400 and "ttl_seconds" in body["error"]["message"], (st, body)


@pytest.mark.manager_args("--tenant-max-upload-bytes", "1000")
def test_a_tenant_token_has_a_quota_of_upload_bytes(swarm):
    swarm.start_manager()
    tok = make_token(swarm, "heidi")["token"]
    upload(swarm, tok, b"a" * 600)
    upload(swarm, tok, b"a" * 600)  # the same blob again costs nothing
    big = b"b" * 401
    st, body = call(swarm, tok, "PUT", f"/v1/blobs/{hashlib.sha256(big).hexdigest()}", body=big,
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 429 and "heidi has uploaded 600 bytes and this blob has 401" in body["error"]["message"], \
        (st, body)
    # Refused from its Content-Length, before the bytes are sent: the CLI asks
    # first (Expect: 100-continue) and shows the quota, not a broken connection.
    cfg = os.path.join(swarm.tmp, "heidi.json")
    swarm.cli("token", "create", "--tenant", "heidi", "--out", cfg)
    huge = b"c" * (64 << 20)
    with open(os.path.join(swarm.tmp, "huge.bin"), "wb") as f:
        f.write(huge)
    spec = os.path.join(swarm.tmp, "huge.json")
    with open(spec, "w") as f:
        json.dump({"name": "h", "tasks": [{"name": "a", "command": ["true"],
                                          "inputs": [{"name": "x", "file": "huge.bin"}]}]}, f)
    r = swarm.cli("job", "run", spec, check=False, env=dict(swarm.env, SEESWARM_CONFIG=cfg))
    assert r.returncode == 1 and "heidi has uploaded 600 bytes and this blob has 67108864" in r.stderr, \
        (r.stdout, r.stderr)
    assert call(swarm, tok, "HEAD", f"/v1/blobs/{hashlib.sha256(huge).hexdigest()}")[0] == 404
    upload(swarm, make_token(swarm, "ivan")["token"], big)  # another tenant has its own quota
    upload(swarm, "default", huge)  # the admin has none
    upload(swarm, tok, b"d" * 400)  # what is left of heidi's quota still fits


def timed_sleepers(tenant, n, seconds, cpu):
    """n tasks of one tenant; each writes when its process started and ended (ns)."""
    return {"name": f"timed-{tenant}", "tenant": tenant, "tasks": [
        {"name": "s", "command": ["sh", "-c", f"date +%s%N > /out/t; sleep {seconds}; date +%s%N >> /out/t"],
         "outputs": ["t"], "map": {"over": [str(i) for i in range(n)]},
         "resources": {"cpu": cpu, "memory": "32M"}, "retries": 0}]}


def most_at_once(swarm, jid):
    """The largest number of the job's task processes that ran at the same moment."""
    edges = []
    for t in swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"]:
        status, raw, _ = swarm.request("GET", f"/v1/blobs/{t['outputs'][0]['digest']}")
        assert status == 200, status
        a, b = (int(x) for x in raw.split())
        edges += [(a, 1), (b, -1)]
    now = most = 0
    for _, d in sorted(edges):  # an end sorts before a start at the same instant
        now += d
        most = max(most, now)
    return most


@pytest.mark.manager_args("--tenant-max-cpu", "capped=1", "--tenant-max-cpu", "*=1.5")
def test_a_tenant_cpu_cap_holds_across_a_manager_crash(swarm):
    start(swarm, 2)  # 2 agents of 2 cores: room for 8 tasks of 0.5 at once
    # A task larger than its tenant may ever run is refused at once, with the reason.
    st, body = call(swarm, "default", "POST", "/v1/jobs", timed_sleepers("capped", 1, 0, 2))
    assert st == 400 and "capped may run at once (1000m, --tenant-max-cpu)" in body["error"]["message"], body
    st, capped = call(swarm, "default", "POST", "/v1/jobs", timed_sleepers("capped", 4, 4, 0.5))
    assert st == 201, capped
    st, other = call(swarm, "default", "POST", "/v1/jobs", timed_sleepers("other", 6, 1.5, 0.5))
    assert st == 201, other

    def held():
        ts = swarm.get_json(f"/v1/jobs/{capped['id']}/tasks")["tasks"]
        running = [t for t in ts if t["state"] in ("placed", "running")]
        waiting = [t for t in ts if t["state"] == "pending" and t["reason"].startswith("held:")]
        return (running, waiting) if running and waiting else None
    running, waiting = wait_for(held, 20 * SLOW, what="capped tasks running while others are held")
    assert len(running) <= 2, running
    assert "held: tenant capped runs 1000m of the 1000m it may run at once" in waiting[0]["reason"], waiting[0]
    ex = swarm.cli("job", "explain", capped["id"]).stdout
    assert "held: tenant capped runs 1000m" in ex, ex
    st, raw, _ = swarm.request("GET", "/metrics")
    text = raw.decode()
    assert 'seeswarm_tenant_cpu_cap_millicores{tenant="capped"} 1000' in text, text[-2000:]
    assert 'seeswarm_tenant_cpu_cap_millicores{tenant="other"} 1500' in text, text[-2000:]
    # The restarted manager counts the tasks it finds running against the cap
    # (they run 4 s, longer than the agents take to reconnect).
    swarm.manager.kill9()
    swarm.start_manager()
    wait_job(swarm, capped["id"], 90)
    wait_job(swarm, other["id"], 90)
    # The cap is reached and never passed, for the named tenant and for the rest.
    assert most_at_once(swarm, capped["id"]) == 2
    assert most_at_once(swarm, other["id"]) == 3


def test_a_read_only_token_reads_its_tenant_and_changes_nothing(swarm):
    start(swarm, 1)
    alice = make_token(swarm, "alice")["token"]
    d = upload(swarm, alice, b"alice's input\n")
    st, job = call(swarm, alice, "POST", "/v1/jobs", copy_job(d))
    assert st == 201, job
    wait_job(swarm, job["id"], 60)
    ro = json.loads(swarm.cli("token", "create", "--tenant", "alice", "--read-only", "--json").stdout)
    assert ro["read_only"] is True and ro["tenant"] == "alice", ro
    tok = ro["token"]
    # It reads what a token of its tenant reads ...
    st, mine = call(swarm, tok, "GET", "/v1/jobs")
    assert st == 200 and [j["id"] for j in mine["jobs"]] == [job["id"]], mine
    st, ts = call(swarm, tok, "GET", f"/v1/jobs/{job['id']}/tasks")
    assert st == 200, ts
    out = ts["tasks"][0]["outputs"][0]["digest"]
    assert call(swarm, tok, "GET", f"/v1/blobs/{out}") == (200, b"ALICE'S INPUT\n")
    assert call(swarm, tok, "HEAD", f"/v1/blobs/{d}")[0] == 200
    assert call(swarm, tok, "GET", f"/v1/tasks/{ts['tasks'][0]['id']}/logs")[0] == 200
    # ... and nothing else: no submission, cancel or upload, and still no other tenant.
    for method, path, body in (("POST", "/v1/jobs", copy_job(d)),
                               ("DELETE", f"/v1/jobs/{job['id']}", None),
                               ("POST", "/v1/jobs/plan", copy_job(d)),
                               ("PUT", f"/v1/blobs/{hashlib.sha256(b'x').hexdigest()}", b"x")):
        st, body = call(swarm, tok, method, path, body=body,
                        headers={"Content-Type": "application/octet-stream"} if method == "PUT" else None)
        assert st == 403 and "is read-only: it may GET and HEAD" in body["error"]["message"], (method, st, body)
    assert call(swarm, tok, "GET", "/v1/nodes")[0] == 403
    st, body = call(swarm, tok, "GET", "/v1/jobs?tenant=bob")
    assert st == 403, body
    listed = swarm.cli("token", "list").stdout
    assert "read-only" in listed and "read-write" in listed, listed
    # The CLI with a read-only config: job list works, job run is refused with the reason.
    cfg = os.path.join(swarm.tmp, "ro.json")
    swarm.cli("token", "create", "--tenant", "alice", "--read-only", "--out", cfg)
    env = dict(swarm.env, SEESWARM_CONFIG=cfg)
    for k in ("SEESWARM_TOKEN", "SEESWARM_ADDR", "SEESWARM_CA"):
        env.pop(k, None)
    assert job["id"] in swarm.cli("job", "list", env=env).stdout
    r = swarm.cli("job", "cancel", job["id"], env=env, check=False)
    assert r.returncode == 1 and "read-only" in r.stderr, r.stderr


@pytest.mark.manager_args("--tenant-weight", "blue=3", "--tenant-max-cpu", "blue=2",
                          "--tenant-max-cpu", "*=1", "--tenant-max-jobs", "5")
def test_tenant_list_shows_each_tenants_use_against_its_quotas(swarm):
    start(swarm, 1)
    blue = make_token(swarm, "blue")["token"]
    swarm.cli("token", "create", "--tenant", "blue", "--read-only")
    make_token(swarm, "green")
    d = upload(swarm, blue, b"x" * 1000)
    spec = copy_job(d)
    spec["tasks"][0]["command"] = ["sh", "-c", "sleep 30"]
    spec["tasks"][0]["outputs"] = []
    spec["tasks"][0]["resources"]["cpu"] = 0.5
    st, job = call(swarm, blue, "POST", "/v1/jobs", spec)
    assert st == 201, job
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{job['id']}/tasks")["tasks"][0]["state"] == "running",
             20 * SLOW, what="blue's task to run")
    everyone = swarm.get_json("/v1/tenants")
    rows = {t["tenant"]: t for t in everyone["tenants"]}
    assert sorted(rows) == ["blue", "green"], rows
    assert rows["blue"] == {"tenant": "blue", "weight": 3.0, "cpu_running_m": 500, "cpu_cap_m": 2000,
                            "tasks_queued": 0, "jobs_unfinished": 1, "tokens": 2, "tokens_read_only": 1,
                            "uploads": 1, "upload_bytes": 1000}, rows["blue"]
    # A tenant the scheduler has not met is under the cap for every tenant.
    assert rows["green"]["cpu_cap_m"] == 1000 and rows["green"]["tokens"] == 1, rows["green"]
    assert everyone["limits"] == {"jobs_unfinished": 5, "upload_bytes": 64 << 30}, everyone["limits"]
    # A tenant token sees its own row only.
    st, mine = call(swarm, blue, "GET", "/v1/tenants")
    assert st == 200 and [t["tenant"] for t in mine["tenants"]] == ["blue"], mine
    out = swarm.cli("tenant", "list").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("blue"))
    assert line.split()[:5] == ["blue", "0.5/2", "3", "0", "1/5"], out
    assert "1 (1000)" in line, out
    swarm.request("DELETE", f"/v1/jobs/{job['id']}")


def test_a_job_reruns_as_a_new_job_of_its_tenant(swarm):
    start(swarm, 1)
    alice, bob = make_token(swarm, "alice")["token"], make_token(swarm, "bob")["token"]
    d = upload(swarm, alice, b"rerun me\n")
    st, job = call(swarm, alice, "POST", "/v1/jobs", copy_job(d))
    assert st == 201, job
    wait_job(swarm, job["id"], 60)
    # The admin reruns it: a new job of the same tenant, naming the old one.
    st, again = call(swarm, "default", "POST", f"/v1/jobs/{job['id']}/rerun")
    assert st == 201 and again["id"] != job["id"] and again["rerun_of"] == job["id"], again
    wait_job(swarm, again["id"], 60)
    st, mine = call(swarm, alice, "GET", "/v1/jobs")
    assert [j["id"] for j in mine["jobs"]] == [again["id"], job["id"]], mine
    out = call(swarm, alice, "GET", f"/v1/jobs/{again['id']}/tasks")[1]["tasks"][0]["outputs"][0]["digest"]
    assert call(swarm, alice, "GET", f"/v1/blobs/{out}") == (200, b"RERUN ME\n")
    # Another tenant cannot, a read-only token may not, and an unknown job is 404.
    assert call(swarm, bob, "POST", f"/v1/jobs/{job['id']}/rerun")[0] == 404
    ro = json.loads(swarm.cli("token", "create", "--tenant", "alice", "--read-only", "--json").stdout)["token"]
    assert call(swarm, ro, "POST", f"/v1/jobs/{job['id']}/rerun")[0] == 403
    assert call(swarm, alice, "GET", f"/v1/jobs/{job['id']}/rerun")[0] == 405
    assert call(swarm, "default", "POST", "/v1/jobs/j-000000000000/rerun")[0] == 404
    # The CLI, with the tenant's own config: rerun and follow to the result.
    cfg = os.path.join(swarm.tmp, "alice.json")
    swarm.cli("token", "create", "--tenant", "alice", "--out", cfg)
    env = dict(swarm.env, SEESWARM_CONFIG=cfg)
    for k in ("SEESWARM_TOKEN", "SEESWARM_ADDR", "SEESWARM_CA"):
        env.pop(k, None)
    r = swarm.cli("job", "rerun", job["id"], "--wait", "--cat", env=env)
    assert f"(a rerun of {job['id']})" in r.stdout and "RERUN ME" in r.stdout, r.stdout


def test_the_audit_trail_records_every_change_and_membership(swarm):
    (aid,) = start(swarm, 1)
    t = make_token(swarm, "blue")
    ro = json.loads(swarm.cli("token", "create", "--tenant", "blue", "--read-only", "--json").stdout)
    st, job = call(swarm, t["token"], "POST", "/v1/jobs", copy_job(upload(swarm, t["token"], b"a\n")))
    assert st == 201, job
    assert call(swarm, ro["token"], "DELETE", f"/v1/jobs/{job['id']}")[0] == 403
    assert call(swarm, "sst_" + "0" * 64, "POST", "/v1/jobs", copy_job("0" * 64))[0] == 401
    call(swarm, "default", "GET", "/v1/jobs")  # reads are not recorded
    wait_job(swarm, job["id"], 60)

    def entries(after=0):
        return swarm.get_json(f"/v1/audit?after={after}&limit=1000")["entries"]
    got = [(e["actor"], e["action"], e["target"], e["status"], e["detail"]) for e in entries()]
    digest = hashlib.sha256(b"a\n").hexdigest()
    want = [("manager", "node admitted", aid, 0),
            ("admin", "POST", "/v1/tokens", 201), ("admin", "POST", "/v1/tokens", 201),
            ("tenant:blue", "PUT", f"/v1/blobs/{digest}", 201),
            ("tenant:blue", "POST", "/v1/jobs", 201),
            ("tenant:blue", "DELETE", f"/v1/jobs/{job['id']}", 403)]
    assert [g[:4] for g in got] == want, got
    assert got[1][4] == t["id"] and got[2][4] == ro["id"] and got[4][4] == job["id"], got
    # Kept across kill -9 of the manager; numbering goes on; a node that leaves is recorded.
    swarm.manager.kill9()
    swarm.start_manager()
    # The agent says goodbye only once it knows it is admitted again: "connected"
    # on the manager's side comes a commit earlier (CI's ASan run caught that).
    wait_for(lambda: swarm.agents[aid].text().count("admitted as ") >= 2, 20 * SLOW,
             what="the agent admitted again")
    swarm.agents[aid].term()
    wait_for(lambda: any(e["action"] == "node left" for e in entries()), 20 * SLOW,
             what="the node's leaving in the audit trail")
    after = entries()
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1)), after
    assert [(e["actor"], e["action"]) for e in after[:len(want)]] == [w[:2] for w in want]
    # Only the admin reads it; the CLI shows the newest entries.
    assert call(swarm, t["token"], "GET", "/v1/audit")[0] == 403
    assert call(swarm, "default", "GET", "/v1/audit?limit=0")[0] == 400
    out = swarm.cli("audit", "--limit", "2").stdout
    assert "node left" in out and "SEQ" in out and len(out.strip().splitlines()) == 3, out
    page = json.loads(swarm.cli("audit", "--after", "1", "--limit", "2", "--json").stdout)
    assert [e["seq"] for e in page["entries"]] == [2, 3] and page["next"] == 3, page


def sleepers(tenant, name, items, command, retries=0):
    return {"name": name, "tenant": tenant, "tasks": [
        {"name": "s", "command": ["sh", "-c", command], "map": {"over": items},
         "resources": {"cpu": 1, "memory": "32M"}, "retries": {"count": retries, "backoff": "100ms"}}]}


def attempts_of(swarm, jid):
    return [h for t in swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"] for h in t["history"]]


@pytest.mark.manager_args("--job-retention", "6s")
def test_every_attempt_is_charged_to_its_job_and_tenant_across_crashes(swarm):
    swarm.start_manager()
    price = {"agent-0": 3.6, "agent-1": 7.2}
    for a, p in price.items():
        swarm.start_agent(a, extra=["--price-per-hour", str(p)])
    swarm.wait_ready(list(price), 20 * SLOW)
    cores = {i: n["capabilities"]["cpu_cores"] for i, n in swarm.nodes().items()}

    def rate(node):  # a 1-core task pays for its share of the node
        return price[node] / cores[node]

    st, ok = call(swarm, "default", "POST", "/v1/jobs", sleepers("acct", "ok", ["0", "1"], "sleep 1"))
    assert st == 201, ok
    st, bad = call(swarm, "default", "POST", "/v1/jobs",
                   sleepers("acct", "bad", ["0"], "sleep 0.5; exit 3", retries=1))
    assert st == 201, bad
    st, lost = call(swarm, "default", "POST", "/v1/jobs", sleepers("acct", "lost", ["0.2", "8"], "sleep {item}"))
    assert st == 201, lost
    jobs = {}

    def snapshot(j, state="succeeded"):  # read before the retention forgets it
        usage = wait_job(swarm, j["id"], 60, state=state)["usage"]
        jobs[j["id"]] = (usage, attempts_of(swarm, j["id"]))
    snapshot(ok)
    snapshot(bad, state="failed")

    # The manager dies while the long task of "lost" runs and after its short
    # one ended; then the agent running the long one dies. That attempt is
    # charged at its node's rate (which the restarted manager read back from
    # the store) until the loss, and the job's usage still counts the short one.
    def running():
        short, long_ = swarm.get_json(f"/v1/jobs/{lost['id']}/tasks")["tasks"]
        return long_ if long_["state"] == "running" and short["state"] == "succeeded" else None
    victim = wait_for(running, 20 * SLOW, what="the long task to run")["node"]
    swarm.manager.kill9()
    swarm.start_manager()
    wait_for(lambda: all(n["connected"] for n in swarm.nodes().values()), 20 * SLOW, what="the agents back")
    time.sleep(0.5)
    long_ = running()
    assert long_, swarm.get_json(f"/v1/jobs/{lost['id']}/tasks")
    # While it runs, its job says what it has cost so far (from its start on the agent).
    so_far = swarm.get_json(f"/v1/jobs/{lost['id']}")["usage"]["cost_running"]
    ran_ms = time.time() * 1000 - long_["start_ms"]
    assert rate(victim) * max(0, ran_ms - 1500) / 3.6e6 <= so_far <= rate(victim) * (ran_ms + 1000) / 3.6e6
    assert so_far > 0, (so_far, ran_ms, long_)
    assert "running)" in swarm.cli("job", "status", lost["id"]).stdout
    swarm.agents[victim].kill9()
    snapshot(lost)
    out = swarm.cli("job", "status", lost["id"]).stdout
    assert "usage: 3 attempts, " in out and " of task time, " in out, out

    for usage, hist in jobs.values():
        for h in hist:  # every attempt costs its node's rate for as long as it ran
            assert h["cost"] == pytest.approx(rate(h["node"]) * h["run_ms"] / 3.6e6), h
        assert usage["attempts"] == len(hist), (usage, hist)
        assert usage["run_seconds"] == pytest.approx(sum(h["run_ms"] for h in hist) / 1000), usage
        assert usage["cost"] == pytest.approx(sum(h["cost"] for h in hist)), usage
    okh = jobs[ok["id"]][1]
    assert [h["outcome"] for h in okh] == ["succeeded"] * 2 and all(h["run_ms"] >= 1000 for h in okh), okh
    badh = jobs[bad["id"]][1]
    assert [h["outcome"] for h in badh] == ["exited"] * 2, badh
    assert all(h["run_ms"] >= 500 for h in badh), badh
    losth = jobs[lost["id"]][1]
    assert [h["outcome"] for h in losth] == ["succeeded", "lost", "succeeded"], losth
    assert losth[1]["node"] == victim and losth[1]["run_ms"] >= 1000 and losth[1]["cost"] > 0, losth
    assert losth[0]["run_ms"] >= 200 and losth[2]["run_ms"] >= 8000, losth

    total = {k: sum(u[k] for u, _ in jobs.values()) for k in ("attempts", "run_seconds", "cost")}
    tenant = [t for t in swarm.get_json("/v1/tenants")["tenants"] if t["tenant"] == "acct"][0]
    assert tenant["usage"]["attempts"] == total["attempts"] == 7, (tenant, total)
    assert tenant["usage"]["cost"] == pytest.approx(total["cost"]), (tenant, total)
    assert tenant["usage"]["run_seconds"] == pytest.approx(total["run_seconds"]), (tenant, total)

    # The totals outlive a manager crash and the jobs themselves.
    swarm.manager.kill9()
    swarm.start_manager()
    wait_for(lambda: not swarm.get_json("/v1/jobs")["jobs"], 30 * SLOW, interval=0.5,
             what="the jobs to be forgotten")
    after = [t for t in swarm.get_json("/v1/tenants")["tenants"] if t["tenant"] == "acct"][0]
    assert after["usage"] == tenant["usage"], (after, tenant)
    st, raw, _ = swarm.request("GET", "/metrics")
    text = raw.decode()
    line = [x for x in text.splitlines() if x.startswith('seeswarm_tenant_cost_total{tenant="acct"} ')]
    assert line and float(line[0].split()[1]) == pytest.approx(total["cost"]), text[-3000:]
    out = swarm.cli("tenant", "list").stdout
    assert "TASK-TIME" in out and "COST" in out, out


@pytest.mark.manager_args("--tenant-max-cost", "thrifty=0.2")
def test_a_tenant_that_spent_its_budget_gets_no_new_jobs_even_after_a_crash(swarm):
    swarm.start_manager()
    swarm.start_agent("agent-0", extra=["--price-per-hour", "3600"])
    swarm.wait_ready(["agent-0"], 20 * SLOW)
    per_s = 0.5 / swarm.nodes()["agent-0"]["capabilities"]["cpu_cores"]  # a 0.5-core task, a second
    thrifty = make_token(swarm, "thrifty")["token"]
    other = make_token(swarm, "other")["token"]

    def job(seconds):
        return {"name": "spend", "tasks": [{"name": "s", "command": ["sleep", str(seconds)],
                                             "resources": {"cpu": 0.5, "memory": "32M"}, "retries": 0}]}
    st, first = call(swarm, thrifty, "POST", "/v1/jobs", job(1.5))
    assert st == 201, first
    wait_job(swarm, first["id"], 60)
    spent = swarm.get_json(f"/v1/jobs/{first['id']}")["usage"]["cost"]
    assert spent >= 1.5 * per_s > 0.2, (spent, per_s)
    for restart in (False, True):
        if restart:  # the spending is durable, so the refusal outlives a crash
            swarm.manager.kill9()
            swarm.start_manager()
        st, body = call(swarm, thrifty, "POST", "/v1/jobs", job(0))
        assert st == 429, body
        assert "tenant thrifty has spent 0." in body["error"]["message"], body
        assert "of the 0.200 it may spend (--tenant-max-cost)" in body["error"]["message"], body
    # Another tenant has no budget, and the admin is not held to a tenant's quotas.
    st, body = call(swarm, other, "POST", "/v1/jobs", job(0))
    assert st == 201, body
    st, body = call(swarm, "default", "POST", "/v1/jobs", dict(job(0), tenant="thrifty"))
    assert st == 201, body
    rows = {t["tenant"]: t for t in swarm.get_json("/v1/tenants")["tenants"]}
    assert rows["thrifty"]["max_cost"] == pytest.approx(0.2) and rows["thrifty"]["spent"] >= spent, rows
    assert "max_cost" not in rows["other"], rows
    out = swarm.cli("tenant", "list").stdout
    assert re.search(r"^thrifty .* 0\.\d+/0\.200 ", out, re.M), out
    st, raw, _ = swarm.request("GET", "/metrics")
    assert 'seeswarm_tenant_cost_max{tenant="thrifty"} 0.2' in raw.decode(), raw.decode()[-2000:]


@pytest.mark.manager_args("--tenant-max-cost", "daily=0.2/day", "--tenant-max-cost", "lifetime=0.2")
def test_a_daily_budget_starts_again_the_next_day_and_a_total_one_does_not(swarm):
    """A budget per UTC day counts the attempts that ended that day; once the
    day is over (here: the store says the spending was yesterday's, as it
    will after midnight) the tenant may submit again. A budget in all never
    starts again."""
    import sqlite3
    swarm.start_manager()
    swarm.start_agent("agent-0", extra=["--price-per-hour", "3600"])
    swarm.wait_ready(["agent-0"], 20 * SLOW)
    toks = {t: make_token(swarm, t)["token"] for t in ("daily", "lifetime")}

    def job(seconds):
        return {"name": "spend", "tasks": [{"name": "s", "command": ["sleep", str(seconds)],
                                             "resources": {"cpu": 0.5, "memory": "32M"}, "retries": 0}]}
    refusals = {}
    for t, tok in toks.items():
        st, j = call(swarm, tok, "POST", "/v1/jobs", job(1.5))
        assert st == 201, j
        wait_job(swarm, j["id"], 60)
        st, body = call(swarm, tok, "POST", "/v1/jobs", job(0))
        assert st == 429, body
        refusals[t] = body["error"]["message"]
    now = time.time()
    midnight = (int(now) // 86400 + 1) * 86400
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(midnight))
    assert "of the 0.200 it may spend today (--tenant-max-cost)" in refusals["daily"], refusals
    assert f"or the next period (from {tomorrow} 00:00 UTC)" in refusals["daily"], refusals
    assert "it may spend (--tenant-max-cost)" in refusals["lifetime"], refusals
    assert "next period" not in refusals["lifetime"], refusals
    rows = {t["tenant"]: t for t in swarm.get_json("/v1/tenants")["tenants"]}
    assert rows["daily"]["budget_period"] == "day" and rows["daily"]["spent"] > 0.2, rows
    assert rows["daily"]["budget_resets_ms"] == midnight * 1000, rows
    assert rows["lifetime"]["budget_period"] == "total" and "budget_resets_ms" not in rows["lifetime"], rows
    out = swarm.cli("tenant", "list").stdout
    assert re.search(r"^daily .* 0\.\d+/0\.200/day ", out, re.M), out
    assert re.search(r"^lifetime .* 0\.\d+/0\.200 ", out, re.M), out
    st, raw, _ = swarm.request("GET", "/metrics")
    assert re.search(r'^seeswarm_tenant_budget_spent\{tenant="daily",period="day"\} 0\.[2-9]', raw.decode(),
                     re.M), raw.decode()[-2000:]

    # The next day: what was spent is recorded as yesterday's.
    swarm.manager.kill9()
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(now - 86400))
    db = sqlite3.connect(os.path.join(swarm.mdir, "state.db"))
    for t in toks:
        (raw,) = db.execute("SELECT value FROM kv WHERE ns = 'usage' AND key = ?", (t,)).fetchone()
        rec = json.loads(raw)
        assert rec["day"] == time.strftime("%Y-%m-%d", time.gmtime(now)) and rec["day_cost"] > 0.2, rec
        rec["day"] = yesterday
        db.execute("UPDATE kv SET value = ? WHERE ns = 'usage' AND key = ?", (json.dumps(rec).encode(), t))
    db.commit()
    db.close()
    swarm.start_manager()
    st, body = call(swarm, toks["daily"], "POST", "/v1/jobs", job(0))
    assert st == 201, body
    st, body = call(swarm, toks["lifetime"], "POST", "/v1/jobs", job(0))
    assert st == 429, body
    rows = {t["tenant"]: t for t in swarm.get_json("/v1/tenants")["tenants"]}
    assert rows["daily"]["spent"] < 0.2 and rows["daily"]["usage"]["cost"] > 0.2, rows


def test_templates_launch_as_their_tenant_and_only_its_tokens_reach_them(swarm):
    start(swarm, 1)
    alice, bob = make_token(swarm, "alice")["token"], make_token(swarm, "bob")["token"]
    d = upload(swarm, alice, b"dispatch me\n")
    spec = dict(copy_job(d), parameterized={"meta_optional": ["x"]})
    st, tpl = call(swarm, alice, "POST", "/v1/jobs", spec)
    assert st == 201 and tpl["state"] == "parameterized" and tpl["tenant"] == "alice", tpl
    # Another tenant's token does not find it, and its own blob is no payload for alice's job.
    assert call(swarm, bob, "POST", f"/v1/jobs/{tpl['id']}/dispatch", {})[0] == 404
    mine = upload(swarm, bob, b"bob's\n")
    st, body = call(swarm, alice, "POST", f"/v1/jobs/{tpl['id']}/dispatch", {"payload": mine})
    assert st == 400 and "has not been uploaded" in body["error"]["message"], body
    # The admin may (and its launch is alice's, which from then on lets alice read that blob).
    st, body = call(swarm, "default", "POST", f"/v1/jobs/{tpl['id']}/dispatch", {"payload": mine})
    assert st == 201 and body["tenant"] == "alice", body
    st, kid = call(swarm, alice, "POST", f"/v1/jobs/{tpl['id']}/dispatch", {"meta": {"x": "1"}})
    assert st == 201 and kid["tenant"] == "alice" and kid["parent"] == tpl["id"], kid
    wait_job(swarm, kid["id"], 60)
    # A periodic job a tenant registers launches as that tenant and counts toward its quota.
    st, per = call(swarm, alice, "POST", "/v1/jobs", dict(copy_job(d), periodic={"every": "1s"}))
    assert st == 201 and per["state"] == "periodic", per
    wait_for(lambda: call(swarm, alice, "GET", f"/v1/jobs/{per['id']}")[1]["periodic"]["launched"] >= 1,
             20 * SLOW, what="a launch")
    st, jobs = call(swarm, alice, "GET", "/v1/jobs?limit=100")
    assert all(j["tenant"] == "alice" for j in jobs["jobs"]), jobs
    assert any(j.get("parent") == per["id"] for j in jobs["jobs"]), jobs
    assert call(swarm, bob, "DELETE", f"/v1/jobs/{per['id']}")[0] == 404
    assert call(swarm, alice, "DELETE", f"/v1/jobs/{per['id']}")[0] == 200
