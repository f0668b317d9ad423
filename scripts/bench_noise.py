"""Noise of one trial: the same burst trial repeated, the spread of its percentiles.

With the stack running (`tuner stack up`), runs `tuner run --repeat N` on the burst scenario for
each config given, and prints the coefficient of variation (stdev / mean over the repeats) of
the overall p50 and p99 and of each route's, with the values. Writes noise.json.

    .venv/bin/python scripts/bench_noise.py --repeats 5 --duration 60 --warmup 15 \
        target_app/serve_config.yaml [more configs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.paths import REPO  # noqa: E402
from tuner.result import load_result  # noqa: E402


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 and statistics.mean(values) else 0.0


def measure(config: Path, out: Path, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "tuner.cli", "run", "--config", str(config), "--scenario", "burst",
           "--target", a.target, "--duration", f"{a.duration:g}", "--warmup", f"{a.warmup:g}",
           "--repeat", str(a.repeats), "--out", str(out), "--force", "--no-report"]
    rc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL).returncode
    if rc not in (0, 1):
        sys.exit(f"tuner run failed with exit {rc}; see {out}")
    combined = load_result(out / "result.json")
    runs = [json.loads((out / name / "result.json").read_text()) for name in combined.repeat.runs]
    rows = {"all": [r["overall"]["latency_ms"] for r in runs]}
    for route in runs[0]["routes"]:
        rows[route] = [r["routes"][route]["latency_ms"] for r in runs]
    return {"config": str(config), "status": combined.status, "requests": [r["overall"]["sent"] for r in runs],
            "figures": {route: {q: {"values": [round(x[q], 1) for x in lat], "median": statistics.median(x[q] for x in lat),
                                    "cv": cv([x[q] for x in lat])} for q in ("p50", "p99")}
                        for route, lat in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--target", default="p99<500ms")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-noise")
    a = ap.parse_args()
    results = [measure(c, a.out / f"{i}-{c.stem}", a) for i, c in enumerate(a.configs)]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "noise.json").write_text(json.dumps(results, indent=2))
    for res in results:
        print(f"\n{res['config']} ({a.repeats} x {a.duration:g} s burst, {statistics.median(res['requests']):.0f} "
              f"requests each; target {res['status']})\n")
        print("| route | p50 median ms | p50 CV | p99 median ms | p99 CV | p99 values |\n|---|---|---|---|---|---|")
        for route, f in res["figures"].items():
            print(f"| {route} | {f['p50']['median']:.0f} | {f['p50']['cv']:.1%} | {f['p99']['median']:.0f} | "
                  f"{f['p99']['cv']:.1%} | {', '.join(f'{v:.0f}' for v in f['p99']['values'])} |")


if __name__ == "__main__":
    main()
