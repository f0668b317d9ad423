"""Simulator fidelity (BENCHMARKS.md, "Simulator fidelity"): `tuner validate` on the shipped
config for steady, ramp and burst traffic at several rates, up to past saturation, on the
running stack; one table row per case with the p50/p99 errors, throughput error and the worst
replica-trajectory MAE.

    .venv/bin/tuner stack up && .venv/bin/python scripts/bench_fidelity.py [--duration 90] [--out runs/fidelity]
    .venv/bin/python scripts/bench_fidelity.py --reuse runs/fidelity [--calibration FILE]   # simulate again only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = [
    ("steady", ["--rate", "4"]),
    ("steady", ["--rate", "10"]),
    ("ramp", ["--rate", "2", "--rate-end", "16"]),
    ("burst", ["--rate", "4", "--burst-rps", "12"]),
    ("steady", ["--rate", "18"]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--out", type=Path, default=Path("runs/fidelity"))
    ap.add_argument("--calibration", default="local")
    ap.add_argument("--reuse", type=Path, default=None, help="compare with the real trials of an earlier run of this")
    a = ap.parse_args()
    print("| scenario | options | p50 real / sim ms | p50 error | p99 real / sim ms | p99 error | throughput error "
          "| worst replica MAE (deployment) | goals met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario, opts in CASES:
        name = f"{scenario}{''.join(opts).replace('--', '-')}"
        out = a.out / name
        cmd = [sys.executable, "-m", "tuner.cli", "validate", "--scenario", scenario, "--duration", f"{a.duration:g}",
               "--calibration", a.calibration, "--out", str(out), "--force", *opts]
        if a.reuse:
            cmd = [sys.executable, "-m", "tuner.cli", "validate", "--real", str(a.reuse / name / "real"),
                   "--calibration", a.calibration, "--out", str(out), "--force"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode not in (0, 1):
            print(f"| {scenario} | {' '.join(opts)} | failed: {r.stderr.strip().splitlines()[-1:]} |||||||")
            continue
        cmp = json.loads((out / "validation.json").read_text())
        row = {(x["route"], x["metric"]): x for x in cmp["latency"]}
        p50, p99, thr = row[("all", "p50")], row[("all", "p99")], row[("all", "throughput")]
        worst = max(cmp["replicas"], key=lambda x: x["mae"])
        print(f"| {scenario} | {' '.join(opts)} | {p50['real']:.0f} / {p50['sim']:.0f} | {p50['error']:+.0%} "
              f"| {p99['real']:.0f} / {p99['sim']:.0f} | {p99['error']:+.0%} | {thr['error']:+.1%} "
              f"| {worst['mae']:.2f} ({worst['deployment']}) | {'all' if cmp['all_met'] else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
