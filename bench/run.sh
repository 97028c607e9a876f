#!/usr/bin/env bash
# Runs the manager load benchmark: N mutual-TLS agents with sim attestation
# heartbeating at 1/s, for N = 1000 and 10000 (override with NS="..."). The
# manager's CPU and RSS are sampled by the load generator from /proc over the
# steady-state hold window after every agent is admitted.
# Output: key=value lines per N, appended to build/bench/manager-load.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/seeswarm
LG=build/bench/loadgen
NS=${NS:-"1000 10000"}
HOLD=${HOLD:-20}
[ -x "$BIN" ] && [ -x "$LG" ] || make -s all
out=build/bench/manager-load.txt
mkdir -p build/bench
ulimit -n "$(ulimit -Hn)"
for n in $NS; do
  dir=$(mktemp -d /tmp/ss-bench-XXXXXX)
  port=$(( 20000 + RANDOM % 20000 ))
  "$BIN" manager --data-dir "$dir/m" --listen 127.0.0.1:$port --api 127.0.0.1:$((port + 1)) \
      --insecure-sim-attestation --no-client-config --heartbeat-interval 1s --down-after 5s \
      --max-agents 30000 >"$dir/manager.log" 2>&1 &
  mpid=$!
  for _ in $(seq 100); do grep -q "listening for agents" "$dir/manager.log" && break; sleep 0.1; done
  echo "== N=$n (manager pid $mpid)"
  SEESWARM_LOG=error "$LG" --manager-dir "$dir/m" --join 127.0.0.1:$port -n "$n" --rate 2000 \
      --hb-ms 1000 --hold "$HOLD" --manager-pid "$mpid" | tee -a "$out"
  kill -TERM "$mpid"; wait "$mpid" || true
  rm -rf "$dir"
done
