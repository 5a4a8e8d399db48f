#!/usr/bin/env bash
# Run nbval over every notebook while CPU-bound programs compete for the cores, as on a busy
# laptop or a shared Binder machine: every assertion a lesson makes must still hold.
#
#   bash scripts/test_under_load.sh          # or: make test-load; HOGS=4 for more load
#
# The hogs are plain busy loops, one per core by default, stopped when the tests end.
set -euo pipefail
cd "$(dirname "$0")/.."
HOGS="${HOGS:-$(nproc)}"
PYTHON="${PYTHON:-.venv/bin/python}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$HOGS"); do
    "$PYTHON" -c 'while True: pass' &
    pids+=($!)
done
echo "running nbval beside $HOGS busy loops"
"$PYTHON" -m pytest notebooks "$@"
