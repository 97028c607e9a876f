#!/usr/bin/env bash
# Runs every unit-test binary BUILD_DIR/tests/test_* in turn.
#
# Usage: bash tests/run_unit.sh BUILD_DIR
#
# Prints each test binary's name before its (cmocka) output, then one summary
# line "N passed, N failed" counting binaries. Exits 1 when any binary failed
# or none was found, 2 on a usage error.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$1
dir="$build/tests"

passed=0
failed=0
failed_names=()
found=0

for t in "$dir"/test_*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	found=1
	name=$(basename "$t")
	echo "== $name"
	if "$t"; then
		passed=$((passed + 1))
	else
		rc=$?
		echo "== $name FAILED (exit status $rc)"
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
done

if [ "$found" -eq 0 ]; then
	echo "no unit-test binaries in $dir" >&2
	echo "0 passed, 0 failed"
	exit 1
fi

if [ "$failed" -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
