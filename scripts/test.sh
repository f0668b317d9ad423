#!/usr/bin/env bash
# The test suite, end-to-end tests included (they start and stop their own Ray, Serve,
# Prometheus, Milvus Lite and LLM emulator on loopback). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not e2e"` for the fast tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"
