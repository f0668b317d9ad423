#!/usr/bin/env bash
# The main job on the embedded defaults: install, start the stack, and run a hybrid
# `tuner optimize` on the burst scenario at p99<500ms: search Serve's settings in the simulator,
# run the starting config (the seed article's settings) and Ray's defaults, then the best
# candidates, on the real stack (correcting the simulator by what the real runs show; a static
# sweep of 1, 2, 3 replicas only for counts cheaper than what passed), print the tuned settings and their
# cost against the baselines, then stop the stack. Every model stage runs on an emulated accelerator
# (README, "Emulated accelerators"), so a replica adds capacity on this small host.
# Exit 0 when a configuration met the target on the real stack, 1 when none did, 2 usage
# error, 3 when the stack could not be measured. TARGET, SCENARIO, DURATION, WARMUP and
# TIME_BUDGET (seconds of searching) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
trap '.venv/bin/tuner stack down' EXIT
.venv/bin/tuner stack up
out="runs/main-$(date -u +%Y%m%dT%H%M%SZ)"
.venv/bin/tuner optimize --config target_app/serve_config.yaml --scenario "${SCENARIO:-burst}" \
  --target "${TARGET:-p99<500ms}" --duration "${DURATION:-45}" --warmup "${WARMUP:-10}" \
  --time-budget "${TIME_BUDGET:-900}" --out "$out"
