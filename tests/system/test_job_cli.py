"""The `seeswarm job` CLI end to end: local files uploaded as sharded blobs,
--wait progress and exit status, results with receipts that verify offline,
list/status/explain/logs/cancel, and the example job `make demo` runs."""
import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from conftest import BIN, SLOW, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(swarm, n=2):
    swarm.start_manager()
    ids = [f"agent-{i}" for i in range(n)]
    for a in ids:
        swarm.start_agent(a)
    swarm.wait_ready(ids, 20 * SLOW)
    return ids


def write_spec(tmp, text):
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "text.txt"), "w") as f:
        f.write(text)
    spec = {"name": "cli-wc", "tasks": [
        {"name": "count", "command": ["sh", "-c", "wc -w < /in/part | tr -d ' ' > /out/n"],
         "inputs": [{"name": "part", "file": "data/text.txt", "shards": 3}],
         "outputs": ["n"], "map": {"input": "part"}, "resources": {"cpu": 0.5, "memory": "64M"}},
        {"name": "total", "command": ["sh", "-c", "s=0; for f in /in/ns.*; do s=$((s+$(cat $f))); done; "
                                      "echo $s > /out/total"],
         "inputs": [{"name": "ns", "from": "count.n"}], "outputs": ["total"]}]}
    path = os.path.join(tmp, "job.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def test_run_wait_out_fetches_results_and_receipts_that_verify(swarm):
    ids = start(swarm)
    text = "".join(f"line {i} has some words in it\n" for i in range(300))
    spec = write_spec(swarm.tmp, text)
    out = os.path.join(swarm.tmp, "results")
    r = swarm.cli("job", "run", spec, "--wait", "--out", out)
    assert re.search(r"job j-[0-9a-f]+ submitted: 4 tasks", r.stdout), r.stdout
    assert "succeeded" in r.stdout
    # Where each task ran is shown.
    for name in ("count[0]", "count[1]", "count[2]", "total"):
        assert re.search(re.escape(name) + r"\s+succeeded\s+attempt 1\s+on agent-[01]", r.stdout), r.stdout
    # Plain progress lines when stderr is not a terminal.
    assert re.search(r"4/4 succeeded", r.stderr), r.stderr
    with open(os.path.join(out, "total", "total")) as f:
        assert f.read().strip() == str(len(text.split()))
    receipt = os.path.join(out, "total.receipt.json")
    v = swarm.cli("receipt", "verify", receipt, "--ca", os.path.join(swarm.mdir, "ca.pem"))
    assert v.returncode == 0
    # A changed byte in the receipt fails verification.
    with open(receipt) as f:
        doc = f.read()
    bad = os.path.join(swarm.tmp, "bad.json")
    with open(bad, "w") as f:
        f.write(doc.replace('"exit_code":0', '"exit_code":1', 1) if '"exit_code":0' in doc
                else doc.replace("0", "1", 1))
    assert swarm.cli("receipt", "verify", bad, "--ca", os.path.join(swarm.mdir, "ca.pem"),
                     check=False).returncode != 0

    jid = re.search(r"(j-[0-9a-f]+)", r.stdout).group(1)
    ls = swarm.cli("job", "list")
    # Its row: the tasks that succeeded, their task time and cost (these agents have no price).
    assert re.search(jid + r"\s+cli-wc\s+default\s+succeeded\s+4/4\s+\d+(ms|\.\ds)\s+0\.00$", ls.stdout,
                     re.M), ls.stdout
    assert "TASK-TIME" in ls.stdout and "COST" in ls.stdout, ls.stdout
    st = swarm.cli("job", "status", jid)
    assert "count[2]" in st.stdout and "succeeded" in st.stdout
    tasks = json.loads(swarm.cli("job", "status", jid, "--json").stdout)["tasks"]
    total_id = [t["id"] for t in tasks if t["name"] == "total"][0]
    lg = swarm.cli("job", "logs", total_id)
    assert re.search(r"attempt 1 on agent-[01]: exited \(code 0\)", lg.stdout), lg.stdout
    # The same by the task's name, and a name the job does not have.
    assert swarm.cli("job", "logs", jid, "total").stdout == lg.stdout
    r = swarm.cli("job", "logs", jid, "count[9]", check=False)
    assert r.returncode == 1 and f"job {jid} has no task named count[9]" in r.stderr, r.stderr
    # results again into another directory, without --wait.
    out2 = os.path.join(swarm.tmp, "again")
    swarm.cli("job", "results", jid, "--out", out2)
    with open(os.path.join(out2, "total", "total")) as f:
        assert f.read().strip() == str(len(text.split()))


def test_bad_specs_fail_before_upload_and_cancel_works(swarm):
    start(swarm, 1)
    bad = os.path.join(swarm.tmp, "bad.json")
    with open(bad, "w") as f:
        json.dump({"name": "b", "tasks": [{"name": "a", "command": ["true"], "retries": "x"}]}, f)
    r = swarm.cli("job", "run", bad, check=False)
    assert r.returncode == 1 and "tasks[0].retries" in r.stderr, r.stderr
    missing = os.path.join(swarm.tmp, "missing.json")
    with open(missing, "w") as f:
        json.dump({"name": "m", "tasks": [{"name": "a", "command": ["true"],
                                           "inputs": [{"name": "x", "file": "nope.txt"}]}]}, f)
    r = swarm.cli("job", "run", missing, check=False)
    assert r.returncode == 1 and "nope.txt" in r.stderr, r.stderr
    slow = os.path.join(swarm.tmp, "slow.json")
    with open(slow, "w") as f:
        json.dump({"name": "slow", "tasks": [{"name": "s", "command": ["sleep", "30"]}]}, f)
    r = swarm.cli("job", "run", slow)
    jid = re.search(r"(j-[0-9a-f]+)", r.stdout).group(1)
    ex = swarm.cli("job", "explain", jid, "s")
    assert "nodes feasible" in ex.stdout, ex.stdout
    c = swarm.cli("job", "cancel", jid)
    assert "canceled" in c.stdout
    r = swarm.cli("job", "cancel", jid, check=False)
    assert r.returncode == 1 and "finished" in r.stderr
    r = swarm.cli("job", "status", "j-000000000000", check=False)
    assert r.returncode == 1


def test_example_wordcount_gives_the_wc_answer(swarm):
    start(swarm, 3)
    example = os.path.join(ROOT, "examples", "wordcount.json")
    words = os.path.join(ROOT, "examples", "data", "words.txt")
    with open(words) as f:
        want = len(f.read().split())
    r = swarm.cli("job", "run", example, "--wait", "--cat")
    m = re.search(r"total/total: (\d+)", r.stdout)
    assert m and int(m.group(1)) == want, r.stdout


def test_tasks_run_code_from_a_bundle_the_cli_packs_and_uploads(swarm):
    """A task's "bundle": {"file": DIR} is packed as a tar and uploaded by the CLI;
    agents fetch it, unpack it once into their cache and run from /bundle. Its
    digest is the task's code identity: in the receipt and in policy.code."""
    start(swarm)
    app = os.path.join(swarm.tmp, "app")
    os.makedirs(os.path.join(app, "lib"))
    with open(os.path.join(app, "count.sh"), "w") as f:
        f.write("#!/bin/sh\n. /bundle/lib/words.sh\ncount_words /in/text > /out/n\n")
    os.chmod(os.path.join(app, "count.sh"), 0o755)
    with open(os.path.join(app, "lib", "words.sh"), "w") as f:
        f.write("count_words() { wc -w < \"$1\" | tr -d ' '; }\n")
    os.chmod(app, 0o755)
    os.chmod(os.path.join(app, "lib"), 0o755)
    digest = swarm.cli("task", "digest", app).stdout.strip()
    with open(os.path.join(swarm.tmp, "text.txt"), "w") as f:
        f.write("one two three four five\n" * 40)

    def spec(code):
        s = {"name": "bundled", "policy": {"code": [code]}, "tasks": [
            {"name": "count", "bundle": {"file": "app"}, "command": ["count.sh"],
             "map": {"over": ["a", "b", "c"]},
             "inputs": [{"name": "text", "file": "text.txt"}], "outputs": ["n"]}]}
        path = os.path.join(swarm.tmp, "bundled.json")
        with open(path, "w") as f:
            json.dump(s, f)
        return path
    # job plan packs and hashes the bundle as run does (its code digest passes
    # policy.code) without uploading it: the manager has no blob yet.
    r = swarm.cli("job", "plan", spec(digest))
    assert re.search(r"^count\s+3\s+3\s+agent-", r.stdout, re.M), r.stdout
    assert "2 local files hashed" in r.stdout and "warning" not in r.stdout, r.stdout
    r = swarm.cli("job", "plan", spec("ab" * 32), check=False)
    assert r.returncode == 1 and digest in r.stderr and "policy.code" in r.stderr, r.stderr
    out = os.path.join(swarm.tmp, "bundle-results")
    r = swarm.cli("job", "run", spec(digest), "--wait", "--out", out)
    assert "succeeded" in r.stdout, r.stdout
    for i in range(3):
        with open(os.path.join(out, f"count[{i}]", "n")) as f:
            assert f.read().strip() == "200"
        with open(os.path.join(out, f"count[{i}].receipt.json")) as f:
            assert json.load(f)["receipt"]["code_digest"] == digest
    # A policy that does not allow this bundle refuses the job at submission.
    r = swarm.cli("job", "run", spec("ab" * 32), check=False)
    assert r.returncode != 0 and digest in r.stderr and "policy.code" in r.stderr, r.stderr


def test_wait_follows_a_submitted_job_through_a_manager_restart(swarm):
    """`job wait` attaches to a job submitted without --wait, rides out a
    kill -9 of the manager, and ends as run --wait does: 0 and the result on
    success, 1 on failure; an unknown job is an error at once."""
    start(swarm, 1)
    spec = os.path.join(swarm.tmp, "w.json")
    with open(spec, "w") as f:
        json.dump({"name": "w", "tasks": [
            {"name": "s", "command": ["sh", "-c", "sleep 3; echo waited > /out/r"], "outputs": ["r"]}]}, f)
    r = swarm.cli("job", "run", spec)
    jid = re.search(r"(j-[0-9a-f]+)", r.stdout).group(1)
    w = subprocess.Popen([BIN, "job", "wait", jid, "--cat"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=swarm.env)
    try:
        time.sleep(0.5)
        swarm.manager.kill9()
        time.sleep(1)
        swarm.start_manager()
        out, err = w.communicate(timeout=60 * SLOW)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert w.returncode == 0, (out, err)
    assert f"job {jid} succeeded" in out and "waited" in out, out

    with open(spec, "w") as f:
        json.dump({"name": "f", "tasks": [{"name": "s", "command": ["false"], "retries": 0}]}, f)
    jid = re.search(r"(j-[0-9a-f]+)", swarm.cli("job", "run", spec).stdout).group(1)
    r = swarm.cli("job", "wait", jid, "--timeout", "60s", check=False)
    assert r.returncode == 1 and f"job {jid} failed" in r.stdout, (r.stdout, r.stderr)

    t0 = time.monotonic()
    r = swarm.cli("job", "wait", "j-000000000000", check=False)
    assert r.returncode == 1 and "not found" in r.stderr, (r.stdout, r.stderr)
    assert time.monotonic() - t0 < 10 * SLOW, "an unknown job was retried as if the manager were down"


def follow(swarm, task_id, first_line, meanwhile=lambda: None):
    """Runs `job logs TASK --follow`; checks that its first line of stdout is
    first_line, calls meanwhile(), and waits for its end. Returns (seconds to
    the first line, the exit status, the rest of stdout, stderr)."""
    p = subprocess.Popen([BIN, "job", "logs", task_id, "--follow"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=swarm.env)
    try:
        t0 = time.monotonic()
        assert p.stdout.readline() == first_line
        took = time.monotonic() - t0
        meanwhile()
        out, err = p.communicate(timeout=60 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return took, p.returncode, out, err


def test_logs_follow_prints_output_as_it_comes_and_across_attempts(swarm):
    """`job logs --follow` shows each line while the task still runs, keeps
    stdout and stderr apart, follows the task to a new attempt on another agent
    after its first agent dies, and exits with the task's outcome."""
    ids = start(swarm, 2)
    spec = os.path.join(swarm.tmp, "talk.json")
    with open(spec, "w") as f:
        json.dump({"name": "talk", "tasks": [{"name": "t", "command": ["sh", "-c",
                   "for i in 1 2 3 4 5 6; do echo line $i; echo err $i >&2; sleep 0.5; done; echo done"]}]}, f)
    jid = re.search(r"(j-[0-9a-f]+)", swarm.cli("job", "run", spec).stdout).group(1)
    first, rc, out, err = follow(swarm, f"{jid}.0", "line 1\n")
    # The task runs for 3 s; its first line arrives while it runs.
    assert first < 2.5 * SLOW, f"the first line came after {first:.1f} s"
    assert rc == 0, (out, err)
    assert "line 1\n" + out == "".join(f"line {i}\n" for i in range(1, 7)) + "done\n", out
    assert "".join(f"err {i}\n" for i in range(1, 7)) in err and "--- task succeeded ---" in err, err

    # A follow that starts after the output has gone from the agent prints the
    # tails kept with the result.
    for a in ids:
        swarm.agents[a].kill9()
    swarm.manager.kill9()
    swarm.start_manager()
    for a in ids:
        swarm.start_agent(a)
    swarm.wait_ready(ids, 20 * SLOW)
    r = swarm.cli("job", "logs", jid, "t", "-f")
    assert "line 6\ndone\n" in r.stdout and "err 6" in r.stderr and "kept with the result" in r.stderr, \
        (r.stdout, r.stderr)

    # The agent running it dies: the follow goes on with the next attempt.
    with open(spec, "w") as f:
        json.dump({"name": "moves", "tasks": [{"name": "t", "command": ["sh", "-c",
                   "echo start; sleep 4; echo end"]}]}, f)
    jid = re.search(r"(j-[0-9a-f]+)", swarm.cli("job", "run", spec).stdout).group(1)
    node = []

    def kill_its_agent():
        node.append(swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"][0]["node"])
        swarm.agents[node[0]].kill9()
    _, rc, out, err = follow(swarm, f"{jid}.0", "start\n", kill_its_agent)
    other = [a for a in ids if a != node[0]][0]
    assert rc == 0, (out, err)
    assert f"--- attempt 2 on {other} ---" in err, err
    assert out == "start\nend\n", out

    r = swarm.cli("job", "logs", "j-000000000000.0", "--follow", check=False)
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def test_jobs_are_listed_newest_first_in_pages_with_filters(swarm):
    from test_tenants import make_token
    start(swarm, 1)

    def submit(i, tenant=None, fail=False):
        spec = {"name": f"list-{i}", "tasks": [
            {"name": "t", "command": ["sh", "-c", "exit 1" if fail else "true"], "retries": 0}]}
        if tenant:
            spec["tenant"] = tenant
        status, raw, _ = swarm.request("POST", "/v1/jobs", body=spec)
        assert status == 201, raw
        time.sleep(0.01)  # distinct creation times make "newest first" one order
        return json.loads(raw)["id"]
    ids = [submit(0), submit(1), submit(2, fail=True), submit(3), submit(4, tenant="blue")]
    wait_for(lambda: all(j["state"] != "running" for j in swarm.get_json("/v1/jobs")["jobs"]),
             30 * SLOW, what="the jobs to finish")

    def listed(query):
        page = swarm.get_json(f"/v1/jobs?{query}")
        return [j["id"] for j in page["jobs"]], page.get("next"), page["total"]
    got, nxt, total = listed("limit=2")
    assert (got, total) == ([ids[4], ids[3]], 5) and nxt, (got, nxt, total)
    # A job submitted meanwhile is newer than the cursor: the next pages go on where this one ended.
    submit(5)
    got, nxt, total = listed(f"limit=2&before={nxt}")
    assert (got, total) == ([ids[2], ids[1]], 6) and nxt, (got, nxt, total)
    got, nxt, _ = listed(f"limit=2&before={nxt}")
    assert (got, nxt) == ([ids[0]], None)
    assert listed("state=failed")[0] == [ids[2]]
    assert listed("tenant=blue&state=succeeded")[0] == [ids[4]]
    for query, says in (("limit=0", '"limit" must be a number from 1 to 10000'),
                        ("state=done", '"state" must be running, succeeded, failed, canceled or periodic'),
                        ("before=j-123", '"before" must be the "next" value of an earlier page'),
                        ("tenant=a%20b", '"tenant" is not a tenant name')):
        status, raw, _ = swarm.request("GET", f"/v1/jobs?{query}")
        assert status == 400 and says in json.loads(raw)["error"]["message"], (query, status, raw)
    # A tenant token lists its own jobs, and may not ask for another tenant's.
    blue = make_token(swarm, "blue")["token"]
    status, raw, _ = swarm.request("GET", "/v1/jobs", token=blue)
    assert status == 200 and [j["id"] for j in json.loads(raw)["jobs"]] == [ids[4]], raw
    status, raw, _ = swarm.request("GET", "/v1/jobs?tenant=default", token=blue)
    assert status == 403, raw
    # The CLI: a page with a note of what is left, every page, and a filter.
    r = swarm.cli("job", "list", "--limit", "2")
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("j-")]
    assert len(rows) == 2 and "(the newest 2 of 6; --limit N or --all for more)" in r.stdout, r.stdout
    r = swarm.cli("job", "list", "--all", "--limit", "2", "--json")  # three pages of two
    assert [j["id"] for j in json.loads(r.stdout)["jobs"]][1:] == ids[::-1], r.stdout
    r = swarm.cli("job", "list", "--state", "failed")
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("j-")]
    assert len(rows) == 1 and rows[0].startswith(ids[2]) and "failed" in rows[0], r.stdout
    r = swarm.cli("job", "list", "--state", "done", check=False)
    assert r.returncode == 2 and "--state" in r.stderr, r.stderr


def test_plan_shows_where_tasks_would_start_and_keeps_nothing(swarm):
    swarm.start_manager()
    swarm.start_agent("agent-0", extra=["--price-per-hour", "0.4"])
    swarm.start_agent("agent-1", extra=["--price-per-hour", "0.2"])
    swarm.wait_ready(["agent-0", "agent-1"], 20 * SLOW)
    cores = os.cpu_count()
    spec = write_spec(swarm.tmp, "one two three\n" * 50)
    with open(spec) as f:
        s = json.load(f)
    # Each "big" instance needs a whole node: at most one per node starts now.
    s["tasks"].append({"name": "big", "command": ["true"], "map": {"over": [str(i) for i in range(6)]},
                       "resources": {"cpu": cores, "memory": "16M"}})
    with open(spec, "w") as f:
        json.dump(s, f)

    r = swarm.cli("job", "plan", spec)
    assert re.search(r"cli-wc \(tenant default\): 10 tasks", r.stdout), r.stdout
    assert re.search(r"^count\s+3\s+3\s+agent-", r.stdout, re.M), r.stdout
    assert re.search(r"^total\s+1\s+-\s+after count: agent-[01] now \(feasible on 2 of 2 nodes\)",
                     r.stdout, re.M), r.stdout
    assert "insufficient cpu" in r.stdout, r.stdout
    assert "1 local file hashed, not uploaded" in r.stdout, r.stdout
    assert "warning" not in r.stdout, r.stdout

    p = json.loads(swarm.cli("job", "plan", spec, "--json").stdout)
    groups = {g["name"]: g for g in p["groups"]}
    assert groups["count"]["placed"] == 3 and sum(groups["count"]["nodes"].values()) == 3, p
    big = groups["big"]
    assert big["placed"] + big["not_placed"] == 6 and big["placed"] <= 2, p
    assert set(big["nodes"]) <= {"agent-0", "agent-1"} and sum(big["nodes"].values()) == big["placed"], p
    assert p["placed_now"] == 3 + big["placed"] and p["after_dependencies"] == 1, p
    assert p["warnings"] == [], p
    # Price: a task pays the node's price times its share of the cores.
    rate = {"agent-0": 0.4, "agent-1": 0.2}
    want = sum(n * rate[a] * 0.5 / cores for a, n in groups["count"]["nodes"].items()) + \
        sum(n * rate[a] for a, n in big["nodes"].items())
    assert abs(p["cost_per_hour"] - want) < 1e-9, (p["cost_per_hour"], want)
    # Its reservations were released: a second plan places as many.
    p2 = json.loads(swarm.cli("job", "plan", spec, "--json").stdout)
    assert p2["placed_now"] == p["placed_now"], (p, p2)
    # Nothing was submitted or uploaded.
    assert swarm.get_json("/v1/jobs")["jobs"] == []
    shard0 = "/v1/blobs/" + hashlib.sha256(b"one two three\n" * 17).hexdigest()
    st, _, _ = swarm.request("HEAD", shard0)
    assert st == 404

    # A policy no node meets: nothing would start, and the plan says why.
    s["policy"] = {"tee": ["sev-snp"]}
    snp = os.path.join(swarm.tmp, "snp.json")
    with open(snp, "w") as f:
        json.dump(s, f)
    p = json.loads(swarm.cli("job", "plan", snp, "--json").stdout)
    assert p["placed_now"] == 0 and "tee" in {g["name"]: g for g in p["groups"]}["count"]["reason"], p

    # The API: a digest nobody uploaded is a warning, not a refusal; only POST is allowed.
    one = {"name": "one", "tasks": [{"name": "t", "command": ["true"], "resources": {"cpu": 0.1},
                                     "inputs": [{"name": "x", "blob": "ab" * 32}]}]}
    st, body, _ = swarm.request("POST", "/v1/jobs/plan", one)
    assert st == 200, body
    p = json.loads(body)
    assert len(p["warnings"]) == 1 and "has not been uploaded" in p["warnings"][0], p
    # The plan's node is where the job then starts (the cheaper node, all else equal).
    del one["tasks"][0]["inputs"]
    st, body, _ = swarm.request("POST", "/v1/jobs/plan", one)
    where = list(json.loads(body)["groups"][0]["nodes"])
    assert where == ["agent-1"], body
    st, body, _ = swarm.request("POST", "/v1/jobs", one)
    jid = json.loads(body)["id"]
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"][0].get("node"), 20 * SLOW,
             what="the task placed")
    assert swarm.get_json(f"/v1/jobs/{jid}/tasks")["tasks"][0]["node"] == "agent-1"
    st, body, _ = swarm.request("GET", "/v1/jobs/plan")
    assert st == 405, body
    # A spec the manager would refuse is refused the same way.
    bad = os.path.join(swarm.tmp, "cycle.json")
    with open(bad, "w") as f:
        json.dump({"name": "c", "tasks": [{"name": "a", "command": ["true"], "after": ["b"]},
                                          {"name": "b", "command": ["true"], "after": ["a"]}]}, f)
    r = swarm.cli("job", "plan", bad, check=False)
    assert r.returncode == 1 and "cycle" in r.stderr, r.stderr
    st, body, _ = swarm.request("POST", "/v1/jobs/plan", {"name": "x", "tasks": [{"name": "t"}]})
    assert st == 400, body
    # job run uploads what the plan only hashed (the same digest).
    swarm.cli("job", "run", spec)
    st, _, _ = swarm.request("HEAD", shard0)
    assert st == 200
