#!/usr/bin/env bash
# Admission latency of a TPM agent (swtpm): from the agent starting to connect
# ("joining" in its log) to "admitted", over RUNS restarts of the agent. This
# covers TCP + mutual TLS 1.3, MakeCredential/ActivateCredential, the quote,
# verification on the manager's thread pool and the SQLite commit.
# Prints admission_ms_median and admission_ms_p90.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
BIN=$PWD/build/seeswarm
[ -x "$BIN" ] || make -s build/seeswarm
dir=$(mktemp -d /tmp/ss-tpmbench-XXXXXX)
port=$(( 30000 + RANDOM % 10000 )); tport=$((port + 2))
export TSS2_LOG=all+none SEESWARM_CONFIG=$dir/client.json
bash scripts/swtpm-test-ca.sh setup "$dir/tpm" >/dev/null
bash scripts/swtpm-test-ca.sh run "$dir/tpm" "$tport" >"$dir/swtpm.log" 2>&1 &
spid=$!
cat >"$dir/policy.json" <<JSON
{"pools": {"default": {"allowed_tee": ["tpm"], "reattest_interval": "1h"}}}
JSON
"$BIN" manager --data-dir "$dir/m" --listen 127.0.0.1:$port --api 127.0.0.1:$((port + 1)) \
    --policy "$dir/policy.json" --collateral "$dir/tpm/collateral" >"$dir/manager.log" 2>&1 &
mpid=$!
cleanup() { kill "$mpid" "$spid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening for agents" "$dir/manager.log" && break; sleep 0.1; done
"$BIN" ca issue-agent --data-dir "$dir/m" --out "$dir/a" --id bench-tpm >/dev/null
for i in $(seq "$RUNS"); do
  : >"$dir/agent.log"
  "$BIN" agent --join 127.0.0.1:$port --data-dir "$dir/a" --attester tpm \
      --tcti "swtpm:host=127.0.0.1,port=$tport" >"$dir/agent.log" 2>&1 &
  apid=$!
  for _ in $(seq 200); do grep -q "admitted as" "$dir/agent.log" && break; sleep 0.02; done
  kill -TERM "$apid"; wait "$apid" || true
  cat "$dir/agent.log" >>"$dir/all-agents.log"
done
/usr/bin/python3 - "$dir/all-agents.log" <<'PY'
import sys, datetime, statistics
def ts(line):
    return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
lat, start = [], None
for line in open(sys.argv[1]):
    if " joining " in line:
        start = ts(line)
    elif "admitted as" in line and start:
        lat.append((ts(line) - start).total_seconds() * 1000)
        start = None
lat.sort()
print(f"tpm_admissions={len(lat)} admission_ms_median={statistics.median(lat):.1f} "
      f"admission_ms_p90={lat[int(len(lat) * 0.9) - 1]:.1f} admission_ms_min={lat[0]:.1f}")
PY
