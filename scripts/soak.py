"""Soak benchmark (BENCHMARKS.md, "Soak"): the diurnal scenario for a long trial on the running
stack with a replica killed every few minutes; are records lost, and does any process grow?

    .venv/bin/tuner stack up
    .venv/bin/python scripts/soak.py --minutes 30 --kill-every 300 --out runs/soak

While `tuner run` drives the load, every process of the stack (its recorded processes and all
their descendants: Ray's daemons, the Serve replicas) and of the trial (the tuner and Locust)
is sampled every --sample-every seconds. Memory is judged per process that lived through at
least half the run after the first five minutes (start-up and first allocations): the
least-squares slope of its RSS. Records: every arrival the generator was given has a row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
from scipy.stats import linregress

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack_runs import running_stack, tuner_run  # noqa: E402
from tuner.paths import REPO  # noqa: E402
from tuner.processes import descendants  # noqa: E402
from tuner.stack import Stack  # noqa: E402

VICTIMS = ("VectorSearch", "Reranker", "QueryRewriter", "LLMGenerator", "LegalClassifier")
SETTLE_S = 300  # left out of the slopes: start-up, first allocations, caches filling


def _name(p: psutil.Process) -> str:
    cmd = p.cmdline()
    if cmd and cmd[0].startswith("ray::"):  # Ray retitles a worker with the method it runs: keep the actor
        return cmd[0].split(" ")[0].split(".")[0]
    parts = [c for c in cmd if not c.startswith("-")]
    for c in parts[1:4]:
        if "." in c or "/" in c:
            return f"{Path(parts[0]).name} {c.rsplit('/', 1)[-1]}"
    return Path(parts[0]).name if parts else p.name()


def sample(stack: Stack, trial: psutil.Process, every: float, stop: threading.Event, rows: list) -> None:
    """Append (t, pid, name, rss MB) of every process of the stack and the trial until `stop`."""
    t0 = time.time()
    while not stop.wait(every):
        procs = [r.process() for r in [*stack.records(), *descendants(stack.records())]]
        try:
            procs += [trial, *trial.children(recursive=True)]
        except psutil.Error:
            pass
        for p in {p.pid: p for p in procs if p is not None}.values():
            try:
                rows.append((time.time() - t0, p.pid, _name(p), p.memory_info().rss / 2**20))
            except psutil.Error:
                continue


def slopes(samples: pd.DataFrame, minutes: float) -> pd.DataFrame:
    """Per process alive for at least half the settled run, from five minutes after its own
    start (a replica that replaced a killed one loads its model first): first and last RSS,
    the slope over that span and over its last ten minutes."""
    out = []
    for pid, g in samples.groupby("pid"):
        settled = g[g["t"] >= max(SETTLE_S, g["t"].min() + SETTLE_S)]
        if len(settled) < 5 or settled["t"].max() - settled["t"].min() < (minutes * 60 - SETTLE_S) / 2:
            continue
        fit = linregress(settled["t"] / 3600, settled["rss_mb"])
        last = settled[settled["t"] >= settled["t"].max() - 600]
        out.append({"name": g["name"].iloc[0], "pid": pid, "rss_first_mb": settled["rss_mb"].iloc[0],
                    "rss_last_mb": settled["rss_mb"].iloc[-1], "slope_mb_per_h": fit.slope,
                    "slope_last_10min_mb_per_h": linregress(last["t"] / 3600, last["rss_mb"]).slope})
    return pd.DataFrame(out).sort_values("slope_mb_per_h", ascending=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--kill-every", type=float, default=300, help="seconds between replica kills")
    ap.add_argument("--sample-every", type=float, default=15)
    ap.add_argument("--rate", type=float, default=1.0, help="diurnal night rate, requests/s")
    ap.add_argument("--rate-peak", type=float, default=4.0, help="diurnal peak rate, requests/s")
    ap.add_argument("--state-dir", type=Path, default=Path(".tuner"))
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "soak")
    args = ap.parse_args()
    stack = running_stack(args.state_dir)
    seconds = args.minutes * 60
    kills = [f"kill-replica@{t:g}s:deployment={VICTIMS[i % len(VICTIMS)]}"
             for i, t in enumerate(range(int(args.kill_every), int(seconds), int(args.kill_every)))]
    cmd = tuner_run(stack, args.out / "trial", ["--scenario", "diurnal", "--rate", f"{args.rate:g}",
                                                "--rate-peak", f"{args.rate_peak:g}"], seconds, kills)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list = []
    stop = threading.Event()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=open(args.out / "tuner.log", "w"), stderr=subprocess.STDOUT)
    sampler = threading.Thread(target=sample, args=(stack, psutil.Process(proc.pid), args.sample_every, stop, rows))
    sampler.start()
    rc = proc.wait()
    stop.set()
    sampler.join()
    samples = pd.DataFrame(rows, columns=["t", "pid", "name", "rss_mb"])
    samples.to_csv(args.out / "memory.csv", index=False)
    result = json.loads((args.out / "trial" / "result.json").read_text())
    records = pd.read_parquet(args.out / "trial" / "records.parquet", columns=["scheduled"])
    gh = result["generator"]
    faults = result["faults"]

    print(f"## Soak (scripts/soak.py --minutes {args.minutes:g} --kill-every {args.kill_every:g})\n")
    print(f"tuner run exit {rc}, status {result['status']}; {len(records)} records, "
          f"{result['overall']['arrivals']} arrivals in result.json, lost records {gh.get('lost_records')}; "
          f"errors {result['overall']['errors']}, degraded {result['overall'].get('degraded')}, "
          f"p99 {result['overall']['latency_ms']['p99']:.0f} ms\n")
    print("| fault | injected s | what | failed during/after | recovery s |")
    print("|---|---|---|---|---|")
    for f in faults:
        e = f.get("effect") or {}
        print(f"| {f['spec']} | {f['injected_s'] or 0:.1f} | {f.get('done') or f.get('error')} | "
              f"{(e.get('during') or {}).get('failed', '-')}/{(e.get('after') or {}).get('failed', '-')} | "
              f"{e.get('recovery_s', '-')} |")
    table = slopes(samples, args.minutes)
    table.to_csv(args.out / "slopes.csv", index=False)
    print("\n| process | pid | RSS first MB | RSS last MB | slope MB/h | slope over the last 10 min MB/h |")
    print("|---|---|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.name} | {r.pid} | {r.rss_first_mb:.0f} | {r.rss_last_mb:.0f} | {r.slope_mb_per_h:+.1f} | "
              f"{r.slope_last_10min_mb_per_h:+.1f} |")


if __name__ == "__main__":
    main()
