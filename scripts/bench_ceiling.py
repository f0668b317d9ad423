"""This host's ceiling for the Serve machinery: CPU per request of each route, by process.

With the stack running (`tuner stack up`), measures each stack process's CPU (from its
/proc times, by psutil) while the stack idles, then while one route at a time takes a steady
open-loop rate from the project's own generator, then the three routes together. A request's
CPU is the phase's CPU above idle over the requests answered. The ceiling of a route is the
rate at which the whole host, the generator included, stays at or under `--budget` cores
(default 1.0: half of this 2-core machine). Prints Markdown and writes ceiling.json.

    .venv/bin/python scripts/bench_ceiling.py [--rates rag=3,predict=3,lora=3] [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil

from stack_runs import running_stack
from tuner.paths import REPO
from tuner.processes import group_of

ROUTES = {"rag": "/rag", "predict": "/predict", "lora": "/v1/completions"}


def processes(roots: list[int]) -> dict[int, psutil.Process]:
    """The stack's processes and all their descendants, by pid."""
    out = {}
    for pid in roots:
        try:
            p = psutil.Process(pid)
        except psutil.Error:
            continue
        for q in [p, *p.children(recursive=True)]:
            out[q.pid] = q
    return out


def cpu_seconds(procs: dict[int, psutil.Process]) -> dict[int, tuple[str, float]]:
    out = {}
    for pid, p in procs.items():
        try:
            t = p.cpu_times()
            out[pid] = (group_of(p), t.user + t.system)
        except psutil.Error:
            pass
    return out


def phase(roots: list[int], seconds: float, load: list[str] | None) -> tuple[dict[str, float], dict | None]:
    """Cores used per group over one phase, and the generator's summary if it ran load."""
    before = cpu_seconds(processes(roots))
    gen = subprocess.Popen(load, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if load else None
    t0, gen_cpu = time.monotonic(), 0.0
    if gen is None:
        time.sleep(seconds)
    while gen is not None and gen.poll() is None:
        # The generator is sampled while it lives (an ended process has no times to read):
        # its CPU counts toward the host's.
        try:
            t = psutil.Process(gen.pid).cpu_times()
            gen_cpu = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(0.5)
    after = cpu_seconds(processes(roots))
    if gen is not None:
        after[gen.pid] = ("load generator", gen_cpu)
    span = time.monotonic() - t0
    cores: dict[str, float] = defaultdict(float)
    for pid, (group, secs) in after.items():
        cores[group] += (secs - before.get(pid, (group, 0.0))[1]) / span
    summary = None
    if load:
        out = Path(load[load.index("--out") + 1])
        summary = json.loads(max(out.glob("*/summary.json")).read_text())  # the generator's run folder
    return dict(cores), summary


def locust(route_weights: str, rate: float, seconds: float, out: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "locust"), "-f", "scenarios/steady.py", "--headless",
            "--host", "http://127.0.0.1:8000", "--rate", f"{rate:g}", "--mix", route_weights,
            "-t", f"{seconds:g}s", "--duration", f"{seconds:g}", "--drain", "5", "--out", str(out),
            "--max-lag-ms", "1000"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", type=Path, default=REPO / ".tuner/stack")
    ap.add_argument("--rates", default="rag=3,predict=3,lora=3", help="the rate of each route's own phase, req/s")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--budget", type=float, default=1.0, help="cores the whole host may use at the ceiling")
    ap.add_argument("--out", type=Path, default=REPO / "runs/ceiling")
    a = ap.parse_args()
    rates = {k: float(v) for k, v in (kv.split("=") for kv in a.rates.split(","))}
    stack = running_stack(a.state_dir)
    roots = [r.pid for r in stack.records()]
    a.out.mkdir(parents=True, exist_ok=True)

    idle, _ = phase(roots, a.idle, None)
    phases = {"idle": (idle, None)}
    for route, rate in rates.items():
        phases[route] = phase(roots, a.seconds, locust(f"{route}=1", rate, a.seconds, a.out / route))
    mixed_rate = sum(rates.values())
    mix = ",".join(f"{k}={v:g}" for k, v in rates.items())
    phases["mixed"] = phase(roots, a.seconds, locust(mix, mixed_rate, a.seconds, a.out / "mixed"))

    idle_total = sum(idle.values())
    result = {"idle_cores": idle_total, "budget_cores": a.budget, "phases": {}, "routes": {}}
    for name, (cores, summary) in phases.items():
        total = sum(cores.values())
        entry = {"cores": cores, "total_cores": total}
        if summary:
            o = summary["overall"]
            entry |= {"ok": o["ok"], "rps": o["throughput_rps"], "p50_ms": o.get("latency_ms_p50"),
                      "p99_ms": o.get("latency_ms_p99"), "errors": o["errors"]}
            entry["cpu_ms_per_request"] = (total - idle_total) / o["throughput_rps"] * 1000 if o["throughput_rps"] else None
            entry["by_group_ms_per_request"] = {g: (c - idle.get(g, 0.0)) / o["throughput_rps"] * 1000
                                                for g, c in cores.items() if o["throughput_rps"]}
        result["phases"][name] = entry
    for route in rates:
        per = result["phases"][route]["cpu_ms_per_request"]
        result["routes"][route] = {"cpu_ms_per_request": per,
                                   "ceiling_rps": (a.budget - idle_total) / per * 1000 if per else None}
    mean = sum(r["cpu_ms_per_request"] for r in result["routes"].values()) / len(rates)
    result["mix_ceiling_rps"] = (a.budget - idle_total) / mean * 1000
    (a.out / "ceiling.json").write_text(json.dumps(result, indent=2))

    groups = sorted({g for c, _ in phases.values() for g in c}, key=lambda g: -sum(p[0].get(g, 0) for p in phases.values()))
    names = list(phases)
    print("| process | " + " | ".join(f"{n}, cores" for n in names) + " | " +
          " | ".join(f"ms CPU per {r} request" for r in rates) + " |")
    print("|---" * (1 + len(names) + len(rates)) + "|")
    for g in groups:
        per = [result["phases"][r]["by_group_ms_per_request"].get(g, 0.0) for r in rates]
        print(f"| {g} | " + " | ".join(f"{phases[n][0].get(g, 0.0):.3f}" for n in names) + " | " +
              " | ".join(f"{x:.1f}" for x in per) + " |")
    print("| **total** | " + " | ".join(f"**{result['phases'][n]['total_cores']:.2f}**" for n in names) + " | " +
          " | ".join(f"**{result['routes'][r]['cpu_ms_per_request']:.1f}**" for r in rates) + " |")
    print()
    print("| phase | rate req/s answered | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for n in names[1:]:
        p = result["phases"][n]
        print(f"| {n} | {p['rps']:.2f} | {p['p50_ms']:.0f} | {p['p99_ms']:.0f} | {p['errors']} |")
    print()
    print(f"idle: {idle_total:.2f} cores; ceiling at {a.budget:g} cores: " +
          ", ".join(f"{r} {v['ceiling_rps']:.1f} req/s alone" for r, v in result["routes"].items()) +
          f"; the three in equal parts {result['mix_ceiling_rps']:.1f} req/s")


if __name__ == "__main__":
    main()
