#!/usr/bin/env bash
# Submit-to-result time of `seeswarm job run --wait` for a one-task job
# (`true`), as a user sees it: the CLI submits, follows the job and prints
# where it ran. Runs against the local demo swarm (started if needed with
# `seeswarm demo`). Given a second CLI binary (an older build, say), runs
# both in alternating blocks of RUNS against the same swarm, so the two are
# compared within one run. Prints key=value lines: ms per run, per block.
# usage: bench/job_wait.sh [CLI] [OTHER_CLI] [RUNS] [BLOCKS]
set -u
cli=${1:-build/seeswarm}
other=${2:-}
runs=${3:-20}
blocks=${4:-3}
if [ ! -x "$cli" ]; then
	echo "job_wait: $cli is missing (make)" >&2
	exit 1
fi
if ! "$cli" node list >/dev/null 2>&1; then
	"$cli" demo >/dev/null 2>&1 || { echo "job_wait: cannot start the demo swarm" >&2; exit 1; }
fi
spec=$(mktemp /tmp/ss-jobwait-XXXXXX.json)
trap 'rm -f "$spec"' EXIT
cat > "$spec" <<'EOF'
{"name": "one", "tasks": [{"name": "t", "command": ["true"], "resources": {"cpu": 0.1, "memory": "16M"}}]}
EOF
block() {
	local bin=$1 label=$2 start end
	start=$(date +%s%N)
	for _ in $(seq "$runs"); do
		"$bin" job run "$spec" --wait >/dev/null 2>&1 || { echo "job_wait: a run failed ($bin)" >&2; exit 1; }
	done
	end=$(date +%s%N)
	echo "job_wait_${label}_ms_per_run=$(( (end - start) / runs / 1000000 ))"
}
for b in $(seq "$blocks"); do
	block "$cli" "this_block$b"
	[ -n "$other" ] && block "$other" "other_block$b"
done
exit 0
