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
# The end-to-end tests time real servers but mostly wait on them (deploys, warm-ups, the
# Prometheus flush), so the fast tests (independent, CPU-bound, two processes) run beside them
# at the lowest priority (nice 19): they take only the CPU the end-to-end tests leave idle.
# Their output follows the end-to-end tests' own.
rc=0
fast_log="$(mktemp)"
fast=""
# Stopped with the script (by the PID started here) if the end-to-end run is interrupted.
trap '[ -n "$fast" ] && kill "$fast" 2>/dev/null; rm -f "$fast_log"' EXIT
nice -n 19 "${PYTEST[@]}" -m "not e2e" -n 2 --durations=10 >"$fast_log" 2>&1 &
fast=$!
"${PYTEST[@]}" -m e2e --durations=25 || rc=$?
wait "$fast" || rc=$?
fast=""
echo "--- the fast tests (run beside the end-to-end tests) ---"
cat "$fast_log"
exit "$rc"
