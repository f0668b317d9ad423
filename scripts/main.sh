#!/usr/bin/env bash
# The main job on the embedded defaults: install, start the stack, run one trial (deploy
# target_app/serve_config.yaml, drive the burst scenario open loop over every route, read
# Prometheus, judge 'p99<500ms'), print the verdict and tables, stop the stack.
# Exit 0 whether the target was met or missed (the verdict is the result); non-zero when the
# trial could not run or be measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
trap '.venv/bin/tuner stack down' EXIT
.venv/bin/tuner stack up
out="runs/main-$(date -u +%Y%m%dT%H%M%SZ)"
rc=0
.venv/bin/tuner run --config target_app/serve_config.yaml --scenario "scenarios/${SCENARIO:-burst}.py" \
  --target "${TARGET:-p99<500ms}" --duration "${DURATION:-120}" --out "$out" || rc=$?
[ "$rc" -le 1 ] || exit "$rc"
echo "verdict: $([ "$rc" -eq 0 ] && echo met || echo missed); result: $out/result.json"
