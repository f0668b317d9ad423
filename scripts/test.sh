#!/usr/bin/env bash
# The test suite, end-to-end tests included (they start and stop their own Ray, Serve,
# Prometheus, Milvus Lite and LLM emulator on loopback). With arguments, one pytest run with
# them, e.g. `bash scripts/test.sh -m "not e2e"` for the fast tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTEST=(.venv/bin/pytest -q -p no:cacheprovider)
# The report tests' browser screenshots (every page kind at two widths) are kept here for CI.
export TUNER_TEST_ARTEFACTS="${TUNER_TEST_ARTEFACTS:-$PWD/runs/test-artefacts}"
mkdir -p "$TUNER_TEST_ARTEFACTS"
if [ "$#" -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi
# Built once here: two test processes building the models at the same moment would race.
.venv/bin/python -m target_app.models.build >/dev/null
# The fast tests are independent and CPU-bound: two processes. The end-to-end tests run
# alone afterwards: they time real servers, and a second process would steal their CPU.
rc=0
"${PYTEST[@]}" -m "not e2e" -n 2 --durations=10 || rc=$?
"${PYTEST[@]}" -m e2e --durations=25 || rc=$?
exit "$rc"
