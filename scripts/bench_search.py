"""Search efficiency of `tuner optimize` (BENCHMARKS.md, "Search efficiency"; its goal):
on a space small enough to simulate exhaustively, how many trials each sampler needs to find a
configuration that meets the target at a cost within 5 % of the grid's optimum.

Every grid point is simulated once. The simulator is deterministic for a seed, so that table IS
the objective: the samplers then run the real `run_study` (baselines first, constraints, repair)
against a backend that answers each configuration from the table, so they see exactly the
Evaluation the simulator would give, and 5 seeds x several samplers x hundreds of trials are cheap.

    nice -n 19 .venv/bin/python scripts/bench_search.py [--reuse [GRID_JSON]] [--trials 200] [--seeds 5] \
        [--samplers tpe,random,gp,tpe-startup10]

Writes under --out (runs/bench-search): grid.json (the simulated table, read back by --reuse),
grid.csv (one row per grid point), search.json (every curve, trials to reach per sampler and
seed, the optimum, the share of the grid within 5 %) and curves.png; prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable
from unittest import mock

# Run as `python scripts/bench_search.py`: the repository is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from tuner import deploy, simulate  # noqa: E402
from tuner.paths import REPO, SERVE_CONFIG  # noqa: E402
from tuner.optimize.evaluate import Evaluation, SimBackend  # noqa: E402
from tuner.optimize.space import Space, apply, load_space, repair  # noqa: E402
from tuner.plan import make_plan, split_scenario  # noqa: E402
from tuner.optimize import study as study_module  # noqa: E402
from tuner.optimize.attrs import TrialAttrs  # noqa: E402
from tuner.optimize.search import SearchSettings, named_baselines  # noqa: E402
from tuner.optimize.study import baselines, completed, run_study  # noqa: E402
from tuner.optimize.warm_start import prior_trials  # noqa: E402
from tuner.result import TrialResult  # noqa: E402
from tuner.target import parse_target  # noqa: E402

TOLERANCE = 0.05  # the goal: within 5 % of the grid's optimum cost
# Sampler settings run_study does not offer, measured here beside its own (`--samplers`).
VARIANTS = {
    "tpe-startup10": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "tpe-startup3": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=3),
    "tpe-ei100": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5,
                                                         n_ei_candidates=100),
    "tpe-group": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5),
    # the good share: a quarter (as a warm-started TPE ships), and Optuna's tenth (as a cold one)
    "tpe-gamma25": lambda seed: study_module.make_sampler("tpe", seed, warm=True),
    "tpe-gamma10": lambda seed: study_module.make_sampler("tpe", seed),
    # less weight on the uniform prior: the good trials' choices dominate sooner
    "tpe-prior05": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5,
                                                           prior_weight=0.5),
}
SHIPPED_SAMPLER = study_module.make_sampler
# A sampler named "<sampler>-warm" starts each study from a simulated study of the same space
# (`tuner optimize --warm-start`): `SOURCE_TRIALS` trials of the shipped TPE, as a hybrid's
# simulated round runs them, on a grid simulated as the main job simulates (45 s after 10 s) and on
# other arrivals (seed 1), so its optimum need not be the objective's. Only the warm study's own
# trials are counted.
WARM = "-warm"
SOURCE = {"duration_s": 45.0, "warmup_s": 10.0, "seed": 1}
SOURCE_TRIALS = SearchSettings().trials


def make_sampler(name: str, seed: int, warm: bool = False) -> optuna.samplers.BaseSampler:
    """run_study's samplers (warm or cold as run_study asks), and the variants above (as they are)."""
    return VARIANTS[name](seed) if name in VARIANTS else SHIPPED_SAMPLER(name, seed, warm=warm)


def cli_named_baselines(space: Space, serve_config: dict) -> dict[str, dict]:
    """The named baselines `tuner optimize` adds on its defaults (the seed article's settings, the
    static sweep to its default count), so every study starts as the command's does."""
    import typer

    from tuner.cli import app

    command = typer.main.get_command(app).commands["optimize"]
    sweep = next(p.default for p in command.params if p.name == "static_sweep")
    return named_baselines(serve_config, deploy.load_serve_config(SERVE_CONFIG), {}, space, sweep)


@dataclass(frozen=True)
class Bench:
    """What is simulated: the config, space, target, scenario and the simulator's settings."""

    config: str = str(SERVE_CONFIG.relative_to(REPO))
    space: str = "scripts/data/bench_search_space.yaml"
    target: str = "p99<400ms"
    scenario: str = "burst"
    duration_s: float = 90.0
    warmup_s: float = 15.0
    seed: int = 0
    calibration: str = "local"
    cluster: str = "fixed"


def load_bench(bench: Bench) -> tuple[dict, Space]:
    """The starting Serve config and the benchmark's space (checked against it)."""
    serve_config = deploy.load_serve_config(REPO / bench.config)
    return serve_config, load_space(REPO / bench.space, serve_config)


def sim_backend(bench: Bench, serve_config: dict) -> SimBackend:
    """The simulator backend, built as `tuner optimize` builds it."""
    path, args = split_scenario(bench.scenario)
    plan = make_plan(config=None, serve_config=serve_config, scenario=path, target=bench.target,
                     duration_s=bench.duration_s, out=Path("/nonexistent"), warmup_s=bench.warmup_s, seed=bench.seed,
                     check=False)
    return SimBackend(plan, simulate.sim_setup(bench.calibration, bench.cluster), [(path, args)])


def grid_points(space: Space) -> list[dict]:
    """Every combination of the space's choices, as the sampler would suggest them (unrepaired)."""
    keys = space.names()
    ranged = [k for k in keys if space.param(k).type != "categorical"]
    if ranged:
        raise ValueError(f"the grid needs categorical parameters; {ranged[0]} is a range")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space.param(k).choices for k in keys))]


def value_key(values: dict) -> str:
    """A configuration's identity: its repaired values, numbers compared as numbers."""
    return json.dumps({k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                       for k, v in values.items()}, sort_keys=True)


def simulate_grid(backend: SimBackend, space: Space, serve_config: dict, points: list[dict]) -> dict[str, dict]:
    """Each distinct repaired configuration of the grid simulated once: key -> values and the
    scenarios' TrialResults (as result.json holds them)."""
    table = {}
    for raw in points:
        values = repair(raw, space, serve_config)
        key = value_key(values)
        if key not in table:
            ev = backend.evaluate(apply(serve_config, values), values)
            table[key] = {"values": values, "results": [r.model_dump(mode="json") for r in ev.results]}
    return table


def evaluations(table: dict[str, dict], serve_config: dict) -> dict[str, Evaluation]:
    """The table's entries as the Evaluations the simulator gave (rebuilt from its results)."""
    return {k: Evaluation(apply(serve_config, e["values"]), [TrialResult.model_validate(r) for r in e["results"]])
            for k, e in table.items()}


class TableBackend:
    """A backend that answers from the simulated grid: the study sees the simulator's Evaluation."""

    name = "table"

    def __init__(self, table: dict[str, Evaluation]):
        self.table = table

    def evaluate(self, serve_config: dict, values: dict | None = None, label: str = "") -> Evaluation:
        return self.table[value_key(values or {})]


def grid_summary(points: list[dict], space: Space, serve_config: dict, table: dict[str, Evaluation],
                 tol: float = TOLERANCE, named: dict[str, dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """The grid's optimum (cheapest feasible cost) and the shares of grid points that are
    feasible and within `tol` of it; shares over the raw points, the draws random search makes."""
    rows = []
    for raw in points:
        ev = table[value_key(repair(raw, space, serve_config))]
        rows.append({**raw, "cost_per_hour": ev.cost, "feasible": ev.feasible, "p99_ms": ev.p99_ms(),
                     "violations": json.dumps([round(v, 4) for v in ev.violations])})
    grid = pd.DataFrame(rows)
    feasible = grid[grid["feasible"]]
    optimum = float(feasible["cost_per_hour"].min()) if len(feasible) else None
    near = feasible[feasible["cost_per_hour"] <= reach_bound(optimum, tol)] if optimum is not None else feasible
    base = {label: {"cost_per_hour": (ev := table[value_key(v)]).cost, "feasible": ev.feasible, "p99_ms": ev.p99_ms()}
            for label, v in baselines(space, serve_config, named).items()}
    summary = {"points": len(grid), "distinct_configs": len(table), "feasible_share": len(feasible) / len(grid),
               "optimum_cost_per_hour": optimum, "within_share": len(near) / len(grid), "within_points": len(near),
               "tolerance": tol, "cost_range": [float(grid["cost_per_hour"].min()), float(grid["cost_per_hour"].max())],
               "optimal_points": near[space.names()].to_dict(orient="records"), "baselines": base}
    return summary, grid


def reach_bound(optimum: float, tol: float = TOLERANCE) -> float:
    """The highest cost that counts as within `tol` of the optimum (float noise forgiven)."""
    return optimum * (1 + tol) + 1e-12


def best_curve(study: optuna.Study) -> list[float | None]:
    """The best feasible cost after each completed trial of the study's own (None before the
    first feasible one; a warm start's prior trials are not counted)."""
    curve, best = [], None
    for t in sorted(completed(study), key=lambda t: t.number):
        if TrialAttrs.of(t).feasible and (best is None or t.value < best):
            best = t.value
        curve.append(best)
    return curve


def trials_to_reach(curve: list[float | None], optimum: float, tol: float = TOLERANCE) -> int | None:
    """How many trials (baselines included) until the best feasible cost is within `tol` of the
    optimum; None if the curve never gets there."""
    bound = reach_bound(optimum, tol)
    return next((i + 1 for i, c in enumerate(curve) if c is not None and c <= bound), None)


def source_prior(source, space: Space, serve_config: dict, named: dict[str, dict], target: str, seed: int) -> list:
    """A warm start's prior trials: the shipped TPE's study of `SOURCE_TRIALS` on the source
    backend, made prior trials against `target` as `tuner optimize --warm-start` makes them."""
    study = run_study(source, space, serve_config, trials=SOURCE_TRIALS, storage=optuna.storages.InMemoryStorage(),
                      name=f"source-{seed}", seed=seed, named_baselines=named)
    clauses = {c.text: c for c in parse_target(target).clauses}
    return prior_trials([("source", t) for t in completed(study)], "source", space, clauses, pareto=False)


def run_searches(backend, space: Space, serve_config: dict, samplers: list[str], seeds: list[int],
                 trials: int, named: dict[str, dict] | None = None,
                 prior: Callable[[int], list] | None = None) -> dict[str, dict[int, dict]]:
    """`run_study` per sampler and seed, each in memory: its curve and seconds (a warm one's
    seconds without its source study's)."""
    out: dict[str, dict[int, dict]] = {}
    with mock.patch.object(study_module, "make_sampler", make_sampler):
        for sampler in samplers:
            warm = sampler.endswith(WARM)
            for seed in seeds:
                start = prior(seed) if warm else None
                t0 = time.perf_counter()
                study = run_study(backend, space, serve_config, trials=trials,
                                  storage=optuna.storages.InMemoryStorage(), name=f"{sampler}-{seed}", seed=seed,
                                  sampler=sampler.removesuffix(WARM), named_baselines=named, prior=start)
                out.setdefault(sampler, {})[seed] = {"curve": best_curve(study), "seconds": time.perf_counter() - t0}
    return out


def median_reach(reach: list[int | None]) -> float:
    """The median of trials to reach, a miss counted as never (inf)."""
    return float(np.median([np.inf if r is None else r for r in reach]))


def goal(reach: dict[str, list[int | None]], model: str = "tpe", baseline: str = "random") -> dict:
    """Issue 10's goal: `model` reaches within 5 % on every seed, in at most a quarter of the
    median trials random search needs (issue 05's was half)."""
    m, b = median_reach(reach[model]), median_reach(reach[baseline])
    every = all(r is not None for r in reach[model])
    return {"sampler": model, "baseline": baseline, "median": m, "baseline_median": b,
            "ratio": m / b if np.isfinite(b) else None, "every_seed_reached": every, "met": every and m <= b / 4}


def plot_curves(searches: dict[str, dict[int, dict]], optimum: float, trials: int, path: Path) -> None:
    """Best feasible cost against trials: each seed thin, the median thick, the optimum and the
    5 % bound dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    x = np.arange(1, trials + 1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for (sampler, runs), colour in zip(searches.items(), colours):
        curves = np.array([[np.inf if c is None else c for c in r["curve"]] for r in runs.values()])
        for c in curves:
            ax.step(x, np.where(np.isfinite(c), c, np.nan), where="post", color=colour, alpha=0.25, lw=0.8)
        median = np.median(curves, axis=0)
        ax.step(x, np.where(np.isfinite(median), median, np.nan), where="post", color=colour, lw=2.2,
                label=f"{sampler} (median of {len(runs)} seeds)")
    ax.axhline(optimum, color="black", ls="--", lw=1, label=f"grid optimum {optimum:.4f}/h")
    ax.axhline(reach_bound(optimum), color="grey", ls=":", lw=1, label="optimum + 5 %")
    ax.set_xlabel("trials (the first two are the baselines)")
    ax.set_ylabel("best feasible cost, USD per hour")
    ax.set_xscale("log")
    ax.legend()
    ax.set_title("tuner optimize: best cost found against trials (simulated grid)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(reach: dict[str, list[int | None]], seeds: list[int], trials: int, seconds: dict[str, float]) -> str:
    """Trials to reach within 5 % per seed and sampler, medians, and seconds per study."""
    names = list(reach)

    def cell(r):
        return f"not within {trials}" if r is None else str(r)

    def med(m):
        return f"> {trials}" if not np.isfinite(m) else f"{m:g}"

    lines = ["| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {s} | " + " | ".join(cell(reach[n][i]) for n in names) + " |" for i, s in enumerate(seeds)]
    lines.append("| **median** | " + " | ".join(f"**{med(median_reach(reach[n]))}**" for n in names) + " |")
    lines.append("| seconds per study | " + " | ".join(f"{seconds[n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def grid_table(bench: Bench, serve_config: dict, space: Space, points: list[dict], reuse: Path | None,
               out: Path) -> dict[str, dict]:
    """The grid simulated for `bench` (or read from `reuse`), written to `out`."""
    raw = load_table(reuse, bench) if reuse else simulate_grid(sim_backend(bench, serve_config), space, serve_config, points)
    out.write_text(json.dumps({"bench": asdict(bench), "table": raw}))
    return raw


def source_standing(points: list[dict], space: Space, serve_config: dict, source: dict[str, Evaluation],
                    table: dict[str, Evaluation], named: dict[str, dict]) -> dict:
    """How far the warm start's source is from the objective: the source's cheapest feasible
    configurations, and whether the objective puts each within 5 % of its own optimum."""
    src, obj = (grid_summary(points, space, serve_config, t, named=named)[0] for t in (source, table))
    keys = {value_key(repair(v, space, serve_config)) for v in points}
    best = [k for k in keys if source[k].feasible and source[k].cost <= reach_bound(src["optimum_cost_per_hour"], 0.0)]
    bound = reach_bound(obj["optimum_cost_per_hour"])
    return {"source_optimum": src["optimum_cost_per_hour"], "source_feasible_share": src["feasible_share"],
            "points": len(best), "objective_cost": sorted({round(table[k].cost, 4) for k in best}),
            "within": sum(table[k].feasible and table[k].cost <= bound for k in best)}


def load_table(path: Path, bench: Bench) -> dict[str, dict]:
    """The simulated grid of an earlier run (SystemExit when it was simulated with other settings)."""
    data = json.loads(path.read_text())
    if data["bench"] != asdict(bench):
        raise SystemExit(f"--reuse: {path} was simulated with other settings ({data['bench']}); run without --reuse")
    return data["table"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-search")
    ap.add_argument("--reuse", nargs="?", const=True, default=None, metavar="GRID_JSON",
                    help="read the simulated grid from --out/grid.json (or the file given)")
    ap.add_argument("--trials", type=int, default=200, help="completed trials per study, the two baselines included")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+SEEDS-1 (held-out seeds for a choice made on others)")
    ap.add_argument("--samplers", default="tpe,random",
                    help=f"comma-separated: {', '.join(study_module.SAMPLERS + tuple(VARIANTS))}, "
                         f"each also warm-started as NAME{WARM}")
    ap.add_argument("--target", default=Bench.target)
    ap.add_argument("--scenario", default=Bench.scenario)
    ap.add_argument("--duration", type=float, default=Bench.duration_s)
    ap.add_argument("--warmup", type=float, default=Bench.warmup_s)
    ap.add_argument("--space", default=Bench.space)
    a = ap.parse_args()
    bench = Bench(space=a.space, target=a.target, scenario=a.scenario, duration_s=a.duration, warmup_s=a.warmup)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    a.out.mkdir(parents=True, exist_ok=True)

    serve_config, space = load_bench(bench)
    named = cli_named_baselines(space, serve_config)
    points = grid_points(space)
    t0 = time.perf_counter()
    grid_json = a.out / "grid.json" if a.reuse in (None, True) else Path(a.reuse)
    raw = grid_table(bench, serve_config, space, points, grid_json if a.reuse else None, a.out / "grid.json")
    grid_s = time.perf_counter() - t0
    table = evaluations(raw, serve_config)
    summary, grid = grid_summary(points, space, serve_config, table, named=named)
    grid.to_csv(a.out / "grid.csv", index=False)
    if summary["optimum_cost_per_hour"] is None:
        raise SystemExit("no grid point meets the target: choose a looser one")
    optimum = summary["optimum_cost_per_hour"]
    print(f"grid: {summary['points']} points ({summary['distinct_configs']} distinct configs) "
          f"{'read' if a.reuse else 'simulated'} in {grid_s:.1f} s; feasible {summary['feasible_share']:.1%}, "
          f"optimum {optimum:.4f}/h, within 5 %: {summary['within_points']} points ({summary['within_share']:.2%})",
          flush=True)

    samplers, seeds = a.samplers.split(","), list(range(a.first_seed, a.first_seed + a.seeds))
    prior = None
    if any(x.endswith(WARM) for x in samplers):
        source_bench = replace(bench, **SOURCE)
        source_json = grid_json.with_name("grid-source.json")
        source = evaluations(grid_table(source_bench, serve_config, space, points,
                                        source_json if a.reuse and source_json.exists() else None,
                                        a.out / "grid-source.json"), serve_config)
        summary["source"] = source_standing(points, space, serve_config, source, table, named)
        print(f"warm start's source: {source_bench}; its optimum {summary['source']['source_optimum']:.4f}/h "
              f"({summary['source']['points']} points) costs {summary['source']['objective_cost']} on the objective, "
              f"of them within 5 % of the objective's optimum: {summary['source']['within']}", flush=True)
        prior = lambda seed: source_prior(TableBackend(source), space, serve_config, named, bench.target, seed)  # noqa: E731
    searches = run_searches(TableBackend(table), space, serve_config, samplers, seeds, a.trials, named, prior)
    reach = {s: [trials_to_reach(searches[s][seed]["curve"], optimum) for seed in seeds] for s in samplers}
    seconds = {s: float(np.mean([r["seconds"] for r in searches[s].values()])) for s in samplers}
    verdicts = {s: goal(reach, s) for s in samplers if s != "random"} if "random" in samplers else {}
    plot_curves(searches, optimum, a.trials, a.out / "curves.png")
    result = {"bench": asdict(bench), "trials": a.trials, "seeds": seeds, "grid": summary, "grid_seconds": grid_s,
              "trials_to_reach": reach, "seconds_per_study": seconds, "goal": verdicts,
              "curves": {s: {str(seed): r["curve"] for seed, r in runs.items()} for s, runs in searches.items()}}
    for label, b in summary["baselines"].items():
        print(f"baseline {label}: {b['cost_per_hour']:.4f}/h, p99 {b['p99_ms']:.0f} ms, "
              f"target {'met' if b['feasible'] else 'missed'}")
    (a.out / "search.json").write_text(json.dumps(result, indent=1, default=str))
    print(markdown(reach, seeds, a.trials, seconds))
    for s, v in verdicts.items():
        print(f"{s}: median {v['median']:g} against random's {v['baseline_median']:g} trials "
              f"(ratio {v['ratio'] if v['ratio'] is None else round(v['ratio'], 2)}), every seed reached: "
              f"{v['every_seed_reached']}; goal {'met' if v['met'] else 'missed'}")
    print(f"written: {a.out}/search.json, curves.png, grid.csv, grid.json")


if __name__ == "__main__":
    main()
