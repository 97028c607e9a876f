#!/usr/bin/env bash
# Runs each libFuzzer harness for a short time on a scratch copy of its seed
# corpus (the repository is never modified).
# usage: tests/run_fuzz.sh BUILD_DIR SECONDS BIN...
# Prints one line per harness and a closing "N passed, N failed" line.
set -u
build=$1; secs=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
pass=0; fail=0
work=$(mktemp -d /tmp/ss-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
for bin in "$@"; do
  name=$(basename "$bin")
  corpus="$work/$name"
  mkdir -p "$corpus"
  if [ -d "$here/fuzz/corpus/$name" ]; then cp -r "$here/fuzz/corpus/$name/." "$corpus/"; fi
  log="$work/$name.log"
  if "$bin" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$work/" "$corpus" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    echo "$name: ${runs:-?} runs, ok"
    pass=$((pass + 1))
  else
    echo "$name: FAILED"
    tail -40 "$log"
    mkdir -p "$build/fuzz-crashes"
    cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$build/fuzz-crashes/" 2>/dev/null || true
    fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
