#!/usr/bin/env bash
# Installs what the project needs, idempotently: a venv with CPU torch 2.13.0 and the
# project, and Debian's Prometheus, wrk (scripts/bench_loadgen.py) and chromium (the report
# tests' headless browser) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/wrk ] || [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # chromium: the headless browser the report tests open each report in.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus wrk chromium >/dev/null
fi

PY=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# A plain torch requirement would pull a multi-GB CUDA build; 2.13.0 resolves to the CPU wheel.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test]"
