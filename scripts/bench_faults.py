"""Fault table (BENCHMARKS.md, "Faults"): one short trial per fault on the running stack, and
what the app did and what the harness recorded.

    .venv/bin/tuner stack up
    .venv/bin/python scripts/bench_faults.py --duration 40 --at 10 --out runs/bench-faults

Each fault starts `--at` seconds into a steady load (all three routes) and lasts 10 s where it
has a duration. The last row kills the stack's LLM server mid-trial (a harness fault: the
stack dying); the stack is then down, so that row runs last.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack_runs import running_stack, tuner_run  # noqa: E402
from tuner.paths import REPO  # noqa: E402
from tuner.stack import Stack  # noqa: E402

FAULTS = ["llm-outage@{at}s+10s", "llm-errors@{at}s+10s", "llm-hang@{at}s+10s", "llm-slow@{at}s+10s:factor=5",
          "kill-replica@{at}s:deployment=Reranker", "kill-replica@{at}s:deployment=RAGService",
          "kill-controller@{at}s", "prometheus-restart@{at}s+5s"]


def run(args, stack: Stack, name: str, faults: list[str], kill_llm_at: float | None = None) -> tuple[int, dict, int]:
    """One trial; (exit code, result.json, rows in records.parquet)."""
    out = args.out / name
    cmd = tuner_run(stack, out, ["--scenario", "steady", "--rate", f"{args.rate:g}", "--no-report"], args.duration, faults)
    killer = None
    if kill_llm_at is not None:
        llm = next(r for r in stack.records() if r.name == "llm")

        def kill():
            while not list((out / "load").glob("*/epoch")):
                time.sleep(0.1)
            time.sleep(kill_llm_at)
            os.kill(llm.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
    rc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).returncode
    result = json.loads((out / "result.json").read_text())
    rows = len(pd.read_parquet(out / "records.parquet", columns=["scheduled"])) if (out / "records.parquet").exists() else 0
    return rc, result, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=40)
    ap.add_argument("--at", type=float, default=10, help="seconds into the load window")
    ap.add_argument("--rate", type=float, default=3)
    ap.add_argument("--state-dir", type=Path, default=Path(".tuner"))
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-faults")
    args = ap.parse_args()
    stack = running_stack(args.state_dir)
    print(f"## Faults (scripts/bench_faults.py --duration {args.duration:g} --at {args.at:g} --rate {args.rate:g})\n")
    print("| fault | failed before / during / after | degraded during | p99 ms before / during / after | "
          "recovery s: failures / latency | exit, status | records (of arrivals), lost | noted |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [(f.format(at=f"{args.at:g}"), [f.format(at=f"{args.at:g}")], None) for f in FAULTS]
    rows.append((f"stack dies: LLM server SIGKILL at {args.at:g}s", [], args.at))
    for i, (label, faults, kill_at) in enumerate(rows):
        rc, r, n = run(args, stack, f"{i:02d}", faults, kill_at)
        e = (r["faults"][0].get("effect") or {}) if r.get("faults") else {}

        def part(key: str, field: str) -> str:
            v = (e.get(key) or {}).get(field)
            return "-" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v)

        arrivals = (r.get("overall") or {}).get("arrivals")
        lost = (r.get("generator") or {}).get("lost_records", "-")
        noted = "; ".join(x for x in r["reasons"] if not x.startswith("deploy"))[:160] or "-"
        print(f"| {label} | {part('before', 'failed')} / {part('during', 'failed')} / {part('after', 'failed')} | "
              f"{part('during', 'degraded')} | {part('before', 'p99_ms')} / {part('during', 'p99_ms')} / "
              f"{part('after', 'p99_ms')} | {e.get('recovery_s', '-') if e else '-'} / "
              f"{e.get('latency_recovery_s', '-') if e else '-'} | {rc}, {r['status']}"
              f"{' (partial)' if r.get('partial') else ''} | {n} ({arrivals}), {lost} | {noted} |", flush=True)


if __name__ == "__main__":
    main()
