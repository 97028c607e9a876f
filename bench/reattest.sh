#!/usr/bin/env bash
# Heartbeat handling while 1,000 agents re-attest at once (issue 3).
#
# Runs the manager twice with 1,000 virtual sim agents (bench/loadgen)
# heartbeating every second for HOLD seconds: once with a policy that
# re-attests every 5 s (every agent, in bursts, since they were admitted
# within about a second), once with re-attestation every hour (none during
# the run). Prints the heartbeat round-trip percentiles of each run; during
# bursts they are split from the calm samples.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/seeswarm
LG=build/bench/loadgen
N=${N:-1000}
HOLD=${HOLD:-20}
[ -x "$BIN" ] && [ -x "$LG" ] || make -s all
ulimit -n "$(ulimit -Hn)"
for interval in 5s 1h; do
  dir=$(mktemp -d /tmp/ss-bench-reattest-XXXXXX)
  printf '{"pools": {"default": {"allowed_tee": ["sim"], "reattest_interval": "%s"}}}\n' "$interval" \
    > "$dir/policy.json"
  port=$(( 20000 + RANDOM % 20000 ))
  "$BIN" manager --data-dir "$dir/m" --listen 127.0.0.1:$port --api 127.0.0.1:$((port + 1)) \
      --insecure-sim-attestation --client-config "$dir/client.json" --heartbeat-interval 1s --down-after 5s \
      --policy "$dir/policy.json" >"$dir/manager.log" 2>&1 &
  mpid=$!
  for _ in $(seq 100); do grep -q "listening for agents" "$dir/manager.log" && break; sleep 0.1; done
  echo "== reattest_interval=$interval N=$N hold=${HOLD}s (manager pid $mpid)"
  SEESWARM_LOG=error "$LG" --manager-dir "$dir/m" --join 127.0.0.1:$port -n "$N" --rate 2000 \
      --hb-ms 1000 --hold "$HOLD" --manager-pid "$mpid"
  # The manager's own view: how late its loop ran timers (heartbeats wait as long).
  /usr/bin/python3 - "$dir/client.json" <<'PY'
import json, ssl, sys, urllib.request
c = json.load(open(sys.argv[1]))
ctx = ssl.create_default_context(cafile=c["ca_file"])
ctx.check_hostname = False
req = urllib.request.Request(f"https://{c['addr']}/metrics", headers={"Authorization": f"Bearer {c['token']}"})
for line in urllib.request.urlopen(req, context=ctx, timeout=10).read().decode().splitlines():
    if line.startswith("seeswarm_loop_lag_ms{"):
        print(f"manager_loop_lag_ms_q{line.split(chr(34))[1]}={line.split()[-1]}")
PY
  kill -TERM "$mpid"; wait "$mpid" || true
  rm -rf "$dir"
done
