"""`tuner validate`: the same trial for real and in the simulator, side by side.

The real trial runs first (with --repeat N its medians and their spread); the simulator then
runs the same config, scenario, options, seed, warm-up and duration. Errors are relative to
the real value: p50 and p99 per route and overall, throughput, and for each deployment the
mean absolute error of its running replicas over the load window (both timelines sampled
every second). The goals: p99 within 15 %, p50 within 10 %, replica MAE <= 0.5.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from tuner.atomic import write_text
from tuner.result import TrialResult
from tuner.plan import TrialPlan, scenario_arrivals
from tuner.simulate import SimSetup, run_sim

GOALS = {"p50": 0.10, "p99": 0.15, "replica_mae": 0.5}


def sample(timeline: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """A step timeline's value at each time (its first value before it starts)."""
    if not timeline:
        return np.full(times.shape, np.nan)
    ts = np.array([t for t, _ in timeline], dtype=float)
    vs = np.array([v for _, v in timeline], dtype=float)
    idx = np.searchsorted(ts, times, side="right") - 1
    return vs[np.clip(idx, 0, None)]


def replica_mae(real: TrialResult, sim: TrialResult, duration_s: float, step_s: float = 1.0) -> dict[str, float]:
    """Mean |sim - real| running replicas per deployment over the load window."""
    times = np.arange(0.0, duration_s, step_s)
    out = {}
    for key, tl in sim.replicas.items():
        if key in real.replicas:
            out[key] = float(np.nanmean(np.abs(sample(tl, times) - sample(real.replicas[key], times))))
    return out


def _rel(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or real is None or real == 0 else (sim - real) / real


def compare(real: TrialResult, sim: TrialResult) -> dict:
    """Side-by-side figures and relative errors, and whether each goal is met."""
    rows = []
    for route in ["all", *sorted(set(real.routes) & set(sim.routes))]:
        r = real.overall if route == "all" else real.routes[route]
        s = sim.overall if route == "all" else sim.routes[route]
        for name, rv, sv in (("p50", r.latency_ms.p50, s.latency_ms.p50), ("p99", r.latency_ms.p99, s.latency_ms.p99),
                             ("throughput", r.throughput_rps, s.throughput_rps), ("error_rate", r.error_rate, s.error_rate)):
            err = _rel(sv, rv)
            goal = GOALS.get(name)
            rows.append({"route": route, "metric": name, "real": rv, "sim": sv, "error": err,
                         "goal": goal, "met": None if goal is None or err is None else abs(err) <= goal})
    mae = replica_mae(real, sim, real.scenario.duration_s)
    reps = [{"deployment": k, "mae": v, "goal": GOALS["replica_mae"], "met": v <= GOALS["replica_mae"],
             "real_mean": (real.deployments.get(k).replicas_mean if real.deployments.get(k) else None),
             "sim_mean": (sim.deployments.get(k).replicas_mean if sim.deployments.get(k) else None)}
            for k, v in sorted(mae.items())]
    spread = {k: v.cv for k, v in (real.repeat.spread.items() if real.repeat else [])}
    verdicts = [r["met"] for r in rows if r["met"] is not None] + [r["met"] for r in reps]
    return {"latency": rows, "replicas": reps, "real_spread_cv": spread, "all_met": all(verdicts),
            "sim_speedup": sim.simulation.speedup if sim.simulation else None}


def plot(real: TrialResult, sim: TrialResult, out: Path) -> None:
    """Replica timelines (real against simulated) of every deployment that scaled in either."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in sim.replicas if len({v for _, v in sim.replicas[k]} | {v for _, v in real.replicas.get(k, [])}) > 1]
    keys = keys or list(sim.replicas)[:3]
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.2 * len(keys)), sharex=True, squeeze=False)
    end = real.scenario.duration_s
    for ax, key in zip(axes[:, 0], keys):
        for res, label, style in ((real, "real", "-"), (sim, "sim", "--")):
            tl = res.replicas.get(key) or []
            if tl:
                xs = [t for t, _ in tl] + [end]
                ax.step(xs, [v for _, v in tl] + [tl[-1][1]], style, where="post", label=label)
        ax.set_ylabel("replicas")
        ax.set_title(key, fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("seconds into the load window")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def run_validation(system, plan: TrialPlan, setup: SimSetup, repeat: int, report,
                   real: TrialResult | None = None) -> tuple[TrialResult, TrialResult, dict]:
    """Run the plan for real and in the simulator under `plan.out` (real/, sim/; with `real`
    given, only the simulated one) and write validation.json and the plot."""
    from tuner.trial import run_repeated

    out = plan.out
    if real is None:
        real = run_repeated(system, replace(plan, out=out / "real"), repeat, report)
    report.phase("simulate", None)
    sim_plan = replace(plan, out=out / "sim")
    info, arrivals = scenario_arrivals(sim_plan)
    sim = run_sim(sim_plan, setup, info, arrivals)
    cmp = compare(real, sim)
    write_text(out / "validation.json", json.dumps(cmp, indent=1))
    plot(real, sim, out / "replicas.png")
    return real, sim, cmp


def real_from(folder: Path) -> TrialResult:
    """A finished real trial to validate against again (its result.json, or its folder)."""
    from tuner.errors import UsageError
    from tuner.result import load_result

    path = folder / "result.json" if folder.is_dir() else folder
    if not path.is_file():
        raise UsageError(f"--real: {path} does not exist")
    try:
        res = load_result(path)
    except ValueError as e:
        raise UsageError(f"--real: {path} is not a result.json: {str(e).splitlines()[0]}") from None
    if res.backend != "real" or res.status == "unmeasured":
        raise UsageError(f"--real: {path} is not a measured real trial (backend {res.backend}, status {res.status})")
    return res
