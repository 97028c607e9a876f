#!/usr/bin/env bash
# Spawn-to-exit latency and throughput of sandboxed /bin/true (issue 4).
# Runs build/bench/bench_spawn twice: with a fresh network namespace per task
# and with the shared pre-created empty one. Needs root; prints key=value
# lines prefixed by the mode.
# usage: bench/spawn.sh [BUILD_DIR] [RUNS] [SECONDS]
set -u
build=${1:-build}
runs=${2:-1000}
secs=${3:-5}
bin="$build/bench/bench_spawn"
if [ ! -x "$bin" ]; then
	echo "spawn: $bin is missing (make $bin)" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "spawn_skipped=needs root"
	exit 0
fi
status=0
for mode in fresh shared; do
	extra=()
	[ "$mode" = shared ] && extra=(--shared-netns)
	"$bin" -n "$runs" -w 2 -t "$secs" "${extra[@]}" | sed "s/^/spawn_${mode}_/" || status=1
done
exit $status
