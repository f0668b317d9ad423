"""Which sampler finds the cheapest feasible configuration of the shipped search space, as the
main job's search asks it (BENCHMARKS.md, "Search efficiency", "On the shipped space"): per
sampler and seed, one simulated `tuner optimize` of `--trials` trials (a hybrid round's size by
default, baselines included) on the main job's scenario, target and lengths; then, per sampler,
the cheapest feasible cost each seed reached and the trial that first reached it.

    .venv/bin/python scripts/bench_sampler.py --samplers gp,tpe,random --seeds 8 [--trials 40] [--out runs/bench-sampler]

scripts/bench_search.py measures trials to the optimum on a small grid it can enumerate; this
measures the shipped space itself (29 parameters, too many to enumerate), where the optimum is
not known: the space's cost floor (`tuner.optimize.study.cost_floor`: every deployment at its
fewest replicas, each on the least of a card it may own) is its lower bound, so a sampler that
reaches it (within 5 %) has found the optimum. A folder already holding a study is read, not run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tuner.deploy import load_serve_config  # noqa: E402
from tuner.optimize.space import load_space  # noqa: E402
from tuner.optimize.study import cost_floor  # noqa: E402
from tuner.paths import SERVE_CONFIG  # noqa: E402
from tuner.prices_file import load_prices  # noqa: E402


def study_args(a: argparse.Namespace, sampler: str, seed: int, out: Path) -> list[str]:
    """`tuner optimize` of one simulated study, on the main job's scenario, target and lengths."""
    return ["optimize", "--backend", "sim", "--scenario", a.scenario, "--target", a.target, "--duration",
            f"{a.duration:g}", "--warmup", f"{a.warmup:g}", "--trials", str(a.trials), "--sampler", sampler,
            "--seed", str(seed), "--out", str(out), "--no-report"]


def shipped_floor() -> float:
    """The shipped space's cost floor on the shipped config at the default prices."""
    config = load_serve_config(SERVE_CONFIG)
    return cost_floor(load_space(None, config), config, load_prices())


def run(a: argparse.Namespace, sampler: str, seed: int) -> dict:
    """One study's cheapest feasible cost, the trial that first reached it, and its seconds."""
    out = a.out / f"{sampler}-{seed}"
    if not (out / "trials.csv").exists():
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "tuner.cli", *study_args(a, sampler, seed, out)],
                           capture_output=True, text=True, cwd=REPO)
        if r.returncode not in (0, 1):  # 1: no feasible configuration, still a result
            raise SystemExit(f"{sampler} seed {seed}: exited {r.returncode}: {r.stderr.strip()[-500:]}")
        (out / "wall_s").write_text(f"{time.monotonic() - t0:.1f}")
    trials = pd.read_csv(out / "trials.csv")
    ok = trials[trials["feasible"].astype(bool)]
    best = float(ok["cost_per_hour"].min()) if len(ok) else None
    first = int(ok[ok["cost_per_hour"] <= best + 1e-9]["number"].min()) if len(ok) else None
    wall = out / "wall_s"
    return {"best": best, "first": first, "wall_s": float(wall.read_text()) if wall.exists() else None}


def _cost(r: dict) -> str:
    return "-" if r["best"] is None else f"{r['best']:.2f}"


def table(results: dict[str, list[dict]], floor: float) -> str:
    rows = [f"| sampler | cheapest feasible cost/h per seed | seeds at the floor ({floor:.2f}/h) | its trial (median) "
            "| seconds a study (median) |", "|---|---|---|---|---|"]
    for sampler, rs in results.items():
        at_floor = [r for r in rs if r["best"] is not None and r["best"] <= floor * 1.05]
        firsts = [r["first"] for r in at_floor]
        rows.append(f"| {sampler} | {', '.join(map(_cost, rs))} | "
                    f"{len(at_floor)} of {len(rs)} | {statistics.median(firsts) if firsts else '-'} | "
                    f"{statistics.median(r['wall_s'] for r in rs if r['wall_s']):.0f} |")
    return "\n".join(rows)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samplers", default="gp,tpe,random")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=40, help="as a hybrid round (tuner optimize --trials)")
    ap.add_argument("--scenario", default="burst")
    ap.add_argument("--target", default="p99<500ms")
    ap.add_argument("--duration", type=float, default=45.0, help="as the main job")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-sampler"))
    return ap


def main() -> None:
    a = parser().parse_args()
    results = {s: [run(a, s, seed) for seed in range(a.first_seed, a.first_seed + a.seeds)] for s in a.samplers.split(",")}
    floor = shipped_floor()
    (a.out / "results.json").write_text(json.dumps({"floor": floor, "studies": results}, indent=1))
    print(table(results, floor))


if __name__ == "__main__":
    main()
