"""Simulator fidelity (BENCHMARKS.md, "Simulator fidelity"): `tuner validate` on the shipped
config, each case's real trial repeated (`--repeat`, errors against the real medians per route), on the
running stack; one row per case with the overall p50/p99 errors, throughput error and the
worst replica-trajectory MAE, then one row per case and route.

The cases: steady light load, steady at 80 % of the shipped config's capacity and at 125 %
(past saturation), and the ramp, burst, diurnal and trace-replay scenarios at their defaults.
`--capacity` is the shipped config's measured capacity in requests/s of the default mix:
`scripts/bench_scaling.py --as-shipped --mix rag=1,predict=1,lora=1 --bound-ms 2000`.
The calibration (`tuner profile`) sees closed-loop phases only, no trace.

    .venv/bin/tuner stack up && .venv/bin/python scripts/bench_fidelity.py --capacity 16 [--duration 75] [--out runs/fidelity]
    .venv/bin/python scripts/bench_fidelity.py --reuse runs/fidelity [--calibration FILE]   # simulate again only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def cases(capacity: float) -> list[tuple[str, str, list[str]]]:
    """(name, scenario, options) of every case."""
    return [("steady-light", "steady", ["--rate", "2"]),
            ("steady-80pct", "steady", ["--rate", f"{0.8 * capacity:.3g}"]),
            ("ramp", "ramp", []),
            ("burst", "burst", []),
            ("diurnal", "diurnal", []),
            ("trace", "trace_replay", []),
            ("steady-125pct", "steady", ["--rate", f"{1.25 * capacity:.3g}"])]


def validate(a: argparse.Namespace, name: str, scenario: str, opts: list[str], out: Path) -> dict | str:
    """One case through `tuner validate`: its validation.json, or why it failed."""
    common = ["--calibration", a.calibration, "--out", str(out), "--force"]
    if a.reuse:
        cmd = ["validate", "--real", str(a.reuse / name / "real"), *common]
    else:
        cmd = ["validate", "--scenario", scenario, "--duration", f"{a.duration:g}", "--warmup", f"{a.warmup:g}",
               "--repeat", str(a.repeat), *common, *opts]
    r = subprocess.run([sys.executable, "-m", "tuner.cli", *cmd], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        return (r.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads((out / "validation.json").read_text())


def route_medians(real: Path) -> dict[tuple[str, str], float | None]:
    """(route, p50|p99) -> the median over the real repeats (real/*/result.json; the trial itself
    without repeats), 'all' for the overall figures."""
    paths = sorted(real.glob("*/result.json")) or [real / "result.json"]
    values: dict[tuple[str, str], list[float]] = {}
    for path in paths:
        res = json.loads(path.read_text())
        for route, table in [("all", res["overall"]), *res["routes"].items()]:
            for q in ("p50", "p99"):
                v = (table or {}).get("latency_ms", {}).get(q)
                if v is not None:
                    values.setdefault((route, q), []).append(v)
    return {k: statistics.median(v) for k, v in values.items()}


def with_medians(cmp: dict, real: Path) -> dict:
    """validation.json's latency rows, their real side the repeats' median per route."""
    med = route_medians(real)
    for x in cmp["latency"]:
        if (x["route"], x["metric"]) in med and x["sim"] is not None:
            x["real"] = med[(x["route"], x["metric"])]
            x["error"] = (x["sim"] - x["real"]) / x["real"] if x["real"] else None
    return cmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=float, default=None, help="the shipped config's capacity, requests/s")
    ap.add_argument("--duration", type=float, default=75.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/fidelity"))
    ap.add_argument("--calibration", default="local")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--reuse", type=Path, default=None, help="compare with the real trials of an earlier run of this")
    a = ap.parse_args()
    meta = a.reuse / "cases.json" if a.reuse else None
    capacity = json.loads(meta.read_text())["capacity"] if meta and meta.is_file() else a.capacity
    if capacity is None:
        sys.exit("--capacity is required (the shipped config's capacity, requests/s)")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cases.json").write_text(json.dumps({"capacity": capacity}))
    only = set(filter(None, a.only.split(",")))
    done = {}
    print("| case | options | p50 real / sim ms | p50 error | p99 real / sim ms | p99 error | throughput error "
          "| worst replica MAE (deployment) | real p99 CV |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, scenario, opts in cases(capacity):
        if only and name not in only:
            continue
        cmp = validate(a, name, scenario, opts, a.out / name)
        if isinstance(cmp, str):
            print(f"| {name} | {' '.join(opts)} | failed: {cmp} |||||||", flush=True)
            continue
        done[name] = cmp = with_medians(cmp, (a.reuse or a.out) / name / "real")
        row = {(x["route"], x["metric"]): x for x in cmp["latency"]}
        p50, p99, thr = row[("all", "p50")], row[("all", "p99")], row[("all", "throughput")]
        worst = max(cmp["replicas"], key=lambda x: x["mae"])
        cv = cmp["real_spread_cv"].get("client p99")
        print(f"| {name} | {' '.join(opts)} | {p50['real']:.0f} / {p50['sim']:.0f} | {p50['error']:+.0%} "
              f"| {p99['real']:.0f} / {p99['sim']:.0f} | {p99['error']:+.0%} | {thr['error']:+.1%} "
              f"| {worst['mae']:.2f} ({worst['deployment']}) | {'-' if cv is None else f'{cv:.0%}'} |", flush=True)
    routes = sorted({x["route"] for c in done.values() for x in c["latency"]} - {"all"})
    print("\nPer route, p50 real / sim ms (error), p99 error:\n")
    print("| case | " + " | ".join(routes) + " |")
    print("|---|" + "---|" * len(routes))
    for name, cmp in done.items():
        row = {(x["route"], x["metric"]): x for x in cmp["latency"]}
        cells = []
        for r in routes:
            p50, p99 = row.get((r, "p50")), row.get((r, "p99"))
            cells.append("-" if not p50 or p50["error"] is None else
                         f"{p50['real']:.0f} / {p50['sim']:.0f} ({p50['error']:+.0%}), p99 {p99['error']:+.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    (a.out / "fidelity.json").write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
