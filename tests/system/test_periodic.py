"""Periodic jobs end to end: a spec with "periodic" registers a schedule that
launches copies of the job; launches on request; overlap prohibited; stopping;
and a manager killed with -9 that neither loses nor doubles a launch."""
import json
import os
import re
import time

import pytest

from conftest import SLOW, wait_for
from test_job_cli import start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the task sandbox needs root (CI runs as root)")


def spec_file(swarm, name, periodic, command=("sh", "-c", "date +%s%N > /out/t")):
    spec = {"name": name, "periodic": periodic,
            "tasks": [{"name": "tick", "command": list(command), "outputs": ["t"],
                       "resources": {"cpu": 0.1, "memory": "32M"}}]}
    path = os.path.join(swarm.tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def launches_of(swarm, pid):
    """Every retained job that pid launched, oldest first."""
    jobs = swarm.get_json("/v1/jobs?limit=10000")["jobs"]
    return sorted((j for j in jobs if j.get("parent") == pid), key=lambda j: j["created_ms"])


def test_a_periodic_job_launches_on_its_schedule_until_stopped(swarm):
    start(swarm, 1)
    path = spec_file(swarm, "tick", {"every": "2s"})
    r = swarm.cli("job", "run", path, "--wait")
    m = re.search(r"periodic job (j-[0-9a-f]+) registered: every 2s, 1 task per launch\nnext launch: "
                  r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r.stdout)
    assert m, r.stdout
    assert "does not end, so --wait does not wait" in r.stderr, r.stderr
    pid = m.group(1)
    p = swarm.get_json(f"/v1/jobs/{pid}")
    assert p["state"] == "periodic" and p["periodic"]["every_ms"] == 2000, p
    first = p["periodic"]["next_launch_ms"]
    assert first == p["created_ms"] + 2000, p
    # Its tasks are templates: none is listed, none can be explained, none runs by itself.
    assert swarm.get_json(f"/v1/jobs/{pid}/tasks")["tasks"] == []
    st, body, _ = swarm.request("GET", f"/v1/jobs/{pid}/explain")
    assert st == 409 and "is periodic" in body.decode(), body

    wait_for(lambda: swarm.get_json(f"/v1/jobs/{pid}")["periodic"]["launched"] >= 3, 30 * SLOW,
             what="three launches")
    p = swarm.get_json(f"/v1/jobs/{pid}")
    # Each launch is for a time on the schedule: every 2 s from the registration, newest first.
    ats = [launch["at_ms"] for launch in p["periodic"]["launches"]]
    assert ats[-1] == first and all(a - b == 2000 for a, b in zip(ats, ats[1:])), p
    wait_for(lambda: all(j["state"] == "succeeded" for j in launches_of(swarm, pid)[:3]), 30 * SLOW,
             what="the launches succeeded")
    kids = launches_of(swarm, pid)
    assert len(kids) >= 3 and all(k["name"] == "tick" and "periodic" not in k for k in kids), kids
    # Each launch is a job of its own, with its own result.
    outs = {k["results"][0]["digest"] for k in (swarm.get_json(f"/v1/jobs/{k['id']}") for k in kids[:3])}
    assert len(outs) == 3, outs

    ls = swarm.cli("job", "list", "--state", "periodic")
    assert re.search(pid + r"\s+tick\s+default\s+periodic\s+1/launch", ls.stdout), ls.stdout
    stat = swarm.cli("job", "status", pid)
    assert "schedule: every 2s, 1 task per launch" in stat.stdout, stat.stdout
    assert re.search(r"launched \d+, skipped 0 \(the last launch still ran\), refused 0", stat.stdout), stat.stdout
    assert re.search(kids[0]["id"] + r"\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+succeeded", stat.stdout), stat.stdout
    w = swarm.cli("job", "wait", pid, check=False)
    assert w.returncode == 1 and "is periodic and does not end" in w.stderr, w.stderr
    kid = swarm.cli("job", "status", kids[0]["id"])
    assert f"launched by periodic job {pid}" in kid.stdout, kid.stdout

    # A launch on request runs now and leaves the schedule alone.
    before = swarm.get_json(f"/v1/jobs/{pid}")["periodic"]
    r = swarm.cli("job", "launch", pid, "--wait")
    m = re.search(r"job (j-[0-9a-f]+) launched: 1 task \(from periodic job " + pid + r"\)", r.stdout)
    assert m and "succeeded" in r.stdout, r.stdout
    after = swarm.get_json(f"/v1/jobs/{pid}")["periodic"]
    forced = [launch for launch in after["launches"] if launch["id"] == m.group(1)]
    assert forced and forced[0]["forced"], after
    assert (after["next_launch_ms"] - before["next_launch_ms"]) % 2000 == 0, (before, after)

    # Stopping: no more launches; the launches so far stay.
    r = swarm.cli("job", "cancel", pid)
    p = swarm.get_json(f"/v1/jobs/{pid}")
    assert p["state"] == "canceled" and "no more launches" in p["reason"], p
    assert "next_launch_ms" not in p["periodic"], p
    n = p["periodic"]["launched"]
    time.sleep(4.5)
    assert swarm.get_json(f"/v1/jobs/{pid}")["periodic"]["launched"] == n
    assert len(launches_of(swarm, pid)) == n
    st, body, _ = swarm.request("POST", f"/v1/jobs/{pid}/launch")
    assert st == 409 and "was stopped" in body.decode(), body
    # An ordinary job cannot be launched; an unknown one is 404.
    st, body, _ = swarm.request("POST", f"/v1/jobs/{kids[0]['id']}/launch")
    assert st == 409 and "is not periodic" in body.decode(), body
    st, body, _ = swarm.request("POST", "/v1/jobs/j-000000000000/launch")
    assert st == 404, body
    metrics = swarm.request("GET", "/metrics")[1].decode()
    assert re.search(r'seeswarm_periodic_launches_total\{outcome="launched"\} ' + str(n), metrics), metrics
    assert "seeswarm_periodic_jobs 0" in metrics, metrics


def test_a_bad_schedule_is_refused_with_the_field_named(swarm):
    start(swarm, 1)
    for periodic, msg in [({"cron": "0 24 * * *"}, "periodic.cron: field 2 (hour): 24 is out of range 0-23"),
                          ({"cron": "0 0 31 2 *"}, "never matches"),
                          ({"every": "500ms"}, "periodic.every: 500ms is below the minimum of 1s"),
                          ({"cron": "@daily", "every": "1h"}, "not both"),
                          ({"cron": "@daily", "time_zone": "Europe/Paris"}, "UTC only"),
                          ({"cron": "@daily", "jitter": 5}, "periodic.jitter: unknown field")]:
        r = swarm.cli("job", "run", spec_file(swarm, "bad", periodic), check=False)
        assert r.returncode != 0 and msg in r.stderr, (periodic, r.stderr)
    # The plan of a periodic job says when it would launch (the example in examples/).
    path = os.path.join(ROOT, "examples", "nightly.json")
    p = json.loads(swarm.cli("job", "plan", path, "--json").stdout)
    nxt = p["periodic"]["next_launches_ms"]
    assert p["periodic"]["cron"] == "30 2 * * *" and len(nxt) == 3, p
    assert all(b - a == 86400000 for a, b in zip(nxt, nxt[1:])), p
    assert nxt[0] % 86400000 == (2 * 3600 + 30 * 60) * 1000 and nxt[0] > time.time() * 1000, p
    r = swarm.cli("job", "plan", path)
    assert re.search(r'periodic: cron "30 2 \* \* \*" \(UTC\), no overlap; a launch now would go as below\n'
                     r"next launches: \d{4}-\d\d-\d\d 02:30:00 UTC", r.stdout), r.stdout
    assert swarm.get_json("/v1/jobs")["jobs"] == []


def test_prohibit_overlap_skips_launches_while_the_last_one_runs(swarm):
    start(swarm, 1)
    path = spec_file(swarm, "slow", {"every": "1s", "prohibit_overlap": True},
                     command=("sh", "-c", "sleep 2.5; date +%s%N > /out/t"))
    pid = json.loads(swarm.cli("job", "run", path, "--json").stdout)["id"]
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{pid}")["periodic"]["skipped"] >= 3
             and len(launches_of(swarm, pid)) >= 2, 40 * SLOW, what="launches and skips")
    swarm.cli("job", "cancel", pid)
    p = swarm.get_json(f"/v1/jobs/{pid}")["periodic"]
    assert "still runs (prohibit_overlap)" in p["last_skip"]["reason"], p
    # No launch started before the one before it had ended.
    kids = launches_of(swarm, pid)
    wait_for(lambda: all(swarm.get_json(f"/v1/jobs/{k['id']}")["state"] != "running" for k in kids),
             30 * SLOW, what="the launches ended")
    kids = [swarm.get_json(f"/v1/jobs/{k['id']}") for k in kids]
    for a, b in zip(kids, kids[1:]):
        assert b["created_ms"] >= a["finished_ms"], (a, b)


def test_launches_survive_a_manager_killed_with_9_neither_lost_nor_doubled(swarm):
    start(swarm, 1)
    path = spec_file(swarm, "beat", {"every": "1s"})
    pid = json.loads(swarm.cli("job", "run", path, "--json").stdout)["id"]
    wait_for(lambda: len(launches_of(swarm, pid)) >= 3, 30 * SLOW, what="three launches")
    kill_ms = time.time() * 1000
    swarm.manager.kill9()
    time.sleep(3)  # three launch times pass with no manager
    swarm.start_manager()
    wait_for(lambda: swarm.get_json(f"/v1/jobs/{pid}")["periodic"]["launched"] >= 6, 30 * SLOW,
             what="launches after the restart")
    swarm.cli("job", "cancel", pid)
    p = swarm.get_json(f"/v1/jobs/{pid}")["periodic"]
    kids = launches_of(swarm, pid)
    # Every launch the periodic job counts is a job, and every job it launched is counted: the
    # launch and the periodic job's record were committed together.
    assert len(kids) == p["launched"], (len(kids), p)
    ats = sorted(launch["at_ms"] for launch in p["launches"])
    assert len(p["launches"]) == p["launched"] and len(ats) == len(set(ats)), p
    # One launch a second, except across the crash: the launch times missed while the manager was
    # down launched once (the first of them), not once each, and the schedule went on from there.
    gaps = [b - a for a, b in zip(ats, ats[1:])]
    assert all(g % 1000 == 0 for g in gaps), p
    assert len([g for g in gaps if g > 1000]) == 1, (gaps, kill_ms, p)
    assert max(gaps) >= 2000 and ats[0] < kill_ms < ats[-1], (gaps, kill_ms, p)
    wait_for(lambda: all(swarm.get_json(f"/v1/jobs/{k['id']}")["state"] == "succeeded" for k in kids),
             30 * SLOW, what="every launch succeeded")


def test_a_parameterized_job_runs_once_per_dispatch_with_its_metadata_and_payload(swarm):
    start(swarm, 1)
    spec = {"name": "greet", "parameterized": {"meta_required": ["who"], "meta_optional": ["mood"]},
            "tasks": [{"name": "say", "outputs": ["msg"], "resources": {"cpu": 0.1, "memory": "32M"},
                       "env": {"SS_META_mood": "calm"},
                       "command": ["sh", "-c", 'p="no payload"; [ -e /in/payload ] && p=$(cat /in/payload); '
                                   'echo "$SS_META_who is $SS_META_mood: $p" > /out/msg']}]}
    path = os.path.join(swarm.tmp, "greet.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    r = swarm.cli("job", "run", path)
    m = re.search(r"parameterized job (j-[0-9a-f]+) registered: 1 task per dispatch\n"
                  r"metadata required: who\nmetadata optional: mood\npayload: optional\n"
                  r"run it with: seeswarm job dispatch \1 --meta KEY=VALUE", r.stdout)
    assert m, r.stdout
    pid = m.group(1)
    assert swarm.get_json(f"/v1/jobs/{pid}")["state"] == "parameterized"

    # Metadata only: the task's own default shows where the dispatch gives none.
    r = swarm.cli("job", "dispatch", pid, "--meta", "who=Ada", "--wait", "--cat")
    assert re.search(r"job j-[0-9a-f]+ dispatched: 1 task \(from parameterized job " + pid, r.stdout), r.stdout
    assert "Ada is calm: no payload" in r.stdout, r.stdout
    # Metadata over the task's own variable, and a payload uploaded from a file.
    payload = os.path.join(swarm.tmp, "payload.txt")
    with open(payload, "w") as f:
        f.write("a letter\n")
    r = swarm.cli("job", "dispatch", pid, "--meta", "who=Grace", "--meta", "mood=busy", "--payload", payload,
                  "--wait", "--cat")
    assert "Grace is busy: a letter" in r.stdout, r.stdout
    kid = re.search(r"job (j-[0-9a-f]+) dispatched", r.stdout).group(1)
    k = swarm.get_json(f"/v1/jobs/{kid}")
    assert k["parent"] == pid and k["state"] == "succeeded", k

    # What a dispatch may not do, each refused with the reason and nothing launched.
    for body, status, msg in [({}, 400, "meta.who: required by the job, and missing"),
                              ({"meta": {"who": "x", "age": "3"}}, 400, "meta.age: the job takes no such key"),
                              ({"meta": {"who": 5}}, 400, "meta.who: expected a string"),
                              ({"meta": {"who": "x" * 2000}}, 400, "meta.who: longer than 1024 bytes"),
                              ({"meta": {"who": "x"}, "payload": "ab" * 32}, 400, "has not been uploaded"),
                              ({"meta": {"who": "x"}, "payload": "zz"}, 400, "is not a SHA-256 digest"),
                              ({"meta": {"who": "x"}, "extra": 1}, 400, "extra: unknown field")]:
        st, raw, _ = swarm.request("POST", f"/v1/jobs/{pid}/dispatch", body)
        assert st == status and msg in raw.decode(), (body, st, raw)
    st, raw, _ = swarm.request("POST", f"/v1/jobs/{pid}/dispatch", "{not json")
    assert st == 400 and "dispatch: not JSON" in raw.decode(), raw
    st, raw, _ = swarm.request("POST", f"/v1/jobs/{pid}/dispatch", {"meta": {"who": "x" * 70000}})
    assert st == 413, raw  # over the 64 KiB a dispatch may take, refused before it is read
    p = swarm.get_json(f"/v1/jobs/{pid}")["parameterized"]
    assert p["launched"] == 2 and [x["state"] for x in p["launches"]] == ["succeeded", "succeeded"], p
    stat = swarm.cli("job", "status", pid)
    assert "parameterized, 1 task per dispatch" in stat.stdout and "dispatched 2" in stat.stdout, stat.stdout
    # A parameterized job is not launched on a schedule or on request, and a periodic one is not dispatched.
    st, raw, _ = swarm.request("POST", f"/v1/jobs/{pid}/launch")
    assert st == 409 and "job dispatch runs a parameterized job" in raw.decode(), raw
    st, raw, _ = swarm.request("POST", f"/v1/jobs/{kid}/dispatch", {})
    assert st == 409 and "is not parameterized" in raw.decode(), raw
    # Stopped: no more dispatches, and the dispatched jobs stay.
    swarm.cli("job", "cancel", pid)
    st, raw, _ = swarm.request("POST", f"/v1/jobs/{pid}/dispatch", {"meta": {"who": "x"}})
    assert st == 409 and "was stopped" in raw.decode(), raw
    assert len(launches_of(swarm, pid)) == 2
    # A spec that is both, or whose task names an input "payload", is refused.
    for extra, msg in [({"periodic": {"every": 60}}, "periodic or parameterized, not both"),
                       ({"tasks": [{"name": "t", "command": ["true"],
                                    "inputs": [{"name": "payload", "blob": "ab" * 32}]}]},
                        "the name \\\"payload\\\" is the dispatch payload's")]:
        bad = dict(spec, **extra)
        st, raw, _ = swarm.request("POST", "/v1/jobs", bad)
        assert st == 400 and msg in raw.decode(), (extra, raw)
