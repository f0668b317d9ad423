"""Trial benchmarks (BENCHMARKS.md, "Trials"): repeatability and overhead of `tuner run`.

    .venv/bin/tuner stack up
    .venv/bin/python scripts/bench_trial.py --repeats 5 --duration 60 --warmup 20 --out runs/bench-trial

1. Repeatability: the shipped config and the burst scenario run `--repeats` times in one
   `tuner run --repeat`: coefficient of variation of client p50/p99, server p99 and cost.
2. Overhead: seconds outside the load window per trial, for in-place updates (the repeats)
   and for a fresh deploy (a config whose ray_actor_options differ, so every replica of the
   changed deployments restarts).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Run as a file (`python scripts/...`): this checkout's packages first, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.paths import REPO, SERVE_CONFIG  # noqa: E402
from tuner.result import load_result  # noqa: E402

TARGET = "p99<500ms"


def tuner_run(config: Path, out: Path, args: argparse.Namespace, repeat: int) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "tuner.cli", "run", "--config", str(config), "--scenario", "scenarios/burst.py",
           "--target", TARGET, "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--repeat", str(repeat), "--out", str(out), "--force"]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL).returncode
    return rc, time.perf_counter() - t0


def overhead(result) -> float:
    t = result.timings_s
    return sum(v for k, v in t.items() if k != "load") + max(0.0, t["load"] - result.scenario.duration_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--config", type=Path, default=SERVE_CONFIG)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-trial")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rc, wall = tuner_run(args.config, args.out / "repeat", args, args.repeats)
    if rc not in (0, 1):
        sys.exit(f"tuner run failed with exit {rc}; see {args.out / 'repeat'}")
    combined = load_result(args.out / "repeat" / "result.json")
    runs = [load_result(args.out / "repeat" / name / "result.json") for name in combined.repeat.runs]
    report = {"repeats": args.repeats, "duration_s": args.duration, "warmup_s": args.warmup, "target": TARGET,
              "status": combined.status, "wall_s": round(wall, 1), "spread": {}}
    for name in ("client p50", "client p99", "server p99", "cost"):
        s = combined.repeat.spread[name]
        report["spread"][name] = {"median": s.median, "cv": s.cv, "values": s.values}
    report["in_place"] = {"deploy_s": [r.timings_s["deploy"] for r in runs],
                          "collect_s": [r.timings_s["collect"] for r in runs],
                          "overhead_s": [round(overhead(r), 1) for r in runs],
                          "started": [r.deploy.started for r in runs], "replaced": [r.deploy.replaced for r in runs]}

    # A fresh deploy: different ray_actor_options restart the replicas of those deployments.
    cfg = yaml.safe_load(args.config.read_text())
    fresh = copy.deepcopy(cfg)
    for app in fresh["applications"]:
        for dep in app["deployments"]:
            opts = dep.setdefault("ray_actor_options", {})
            opts["num_cpus"] = round(float(opts.get("num_cpus", 1)) * 0.96, 3)
    fresh_path = args.out / "fresh_config.yaml"
    fresh_path.write_text(yaml.safe_dump(fresh, sort_keys=False))
    for label, path in (("fresh", fresh_path), ("back", args.config)):
        rc, _ = tuner_run(path, args.out / label, args, 1)
        r = load_result(args.out / label / "result.json")
        report[label] = {"deploy_s": r.timings_s["deploy"], "overhead_s": round(overhead(r), 1),
                         "replaced": len(r.deploy.replaced), "started": r.deploy.started, "status": r.status}

    (args.out / "bench_trial.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    sp = report["spread"]
    print("\n| figure | median | CV |\n|---|---|---|")
    for name, s in sp.items():
        print(f"| {name} | {s['median']:.4g} | {s['cv']:.1%} |")
    ip = report["in_place"]
    print(f"\nin-place overhead s: median {statistics.median(ip['overhead_s']):.1f} "
          f"(deploy {statistics.median(ip['deploy_s']):.1f}, collect {statistics.median(ip['collect_s']):.1f}, "
          f"warm-up {args.warmup:g}); fresh deploy: deploy {report['fresh']['deploy_s']:.1f} s, "
          f"overhead {report['fresh']['overhead_s']:.1f} s")


if __name__ == "__main__":
    main()
