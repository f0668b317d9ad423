#!/usr/bin/env bash
# The main job on the embedded defaults: install, start the stack, send a burst of real
# traffic to every route, print latency percentiles and replica counts from Prometheus,
# stop the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
trap '.venv/bin/tuner stack down' EXIT
.venv/bin/tuner stack up
.venv/bin/tuner demo --duration "${DURATION:-30}" --rate "${RATE:-6}"
