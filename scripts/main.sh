#!/usr/bin/env bash
# The main job on the embedded defaults: install, start the stack, drive the burst scenario
# (open-loop Locust) over every route, print exact percentiles and what Prometheus saw,
# stop the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
trap '.venv/bin/tuner stack down' EXIT
.venv/bin/tuner stack up
.venv/bin/tuner demo --scenario "${SCENARIO:-burst}" --duration "${DURATION:-60}"
