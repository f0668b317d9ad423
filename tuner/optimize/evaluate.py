"""Evaluating one configuration: its trials on every scenario, its cost, and how far each
target clause is from holding (the constraints Optuna sees). Two backends give the same
`Evaluation`: the simulator (`SimBackend`) and the real stack (`RealBackend`, `tuner run`'s
trials); the hybrid search (hybrid.py) uses both. Both take one `TrialPlan` as the base of
every trial they run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from tuner.optimize.space import apply_cluster
from tuner.plan import TrialPlan, scenario_arrivals
from tuner.progress import Reporter, Silent
from tuner.result import TrialResult
from tuner.simulate import SimSetup, sim_trial
from tuner.target import Clause


def clause_values(results: list[TrialResult]) -> list[dict[str, float | None]]:
    """Per scenario, each clause's measured client value (base units), keyed by clause text."""
    return [{cv.clause.text: cv.client for cv in r.target.clauses} for r in results]


def judge(values: list[dict[str, float | None]], clauses: dict[str, Clause], measured: list[bool],
          factors: dict[str, float] | None = None) -> tuple[list[str], list[float], bool]:
    """Each clause's worst shortfall over the scenarios (<= 0 when it holds everywhere) and
    whether every clause holds in every scenario, all measured. `values` are per scenario, by
    clause text; `factors` scale a clause's value first: the hybrid search's correction of the
    simulator's error (1 = none)."""
    factors = factors or {}
    worst: dict[str, float] = {}
    feasible = all(measured)
    for per_scenario in values:
        for text, value in per_scenario.items():
            clause = clauses[text]
            value = None if value is None else value * factors.get(text, 1.0)
            margin = clause.margin(value)
            worst[text] = max(worst.get(text, -1e9), 1.0 if margin is None else -margin)
            feasible = feasible and clause.holds(value)
    return list(worst), list(worst.values()), feasible


def _client_p99(r: TrialResult) -> float | None:
    if r.repeat and "client p99" in r.repeat.spread:
        return r.repeat.spread["client p99"].median
    return r.overall.latency_ms.p99 if r.overall else None


@dataclass
class Evaluation:
    """A configuration's trials (one per scenario) and what the study needs from them."""

    serve_config: dict
    results: list[TrialResult]
    factors: dict[str, float] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # a real evaluation's trial folder per scenario
    cost: float = field(init=False)
    violations: list[float] = field(init=False)
    clauses: list[str] = field(init=False)
    feasible: bool = field(init=False)

    def __post_init__(self):
        # What is paid is the most expensive scenario's rate: the deployment must carry all of them.
        self.cost = max(r.cost.cost_per_hour for r in self.results)
        clauses = {cv.clause.text: cv.clause for r in self.results for cv in r.target.clauses}
        self.clauses, self.violations, self.feasible = judge(clause_values(self.results), clauses,
                                                             [r.status != "unmeasured" for r in self.results],
                                                             self.factors)

    def p99_ms(self) -> float | None:
        """The worst scenario's client p99 (for the Pareto view and the tables): over repeats,
        their median, the figure the target is judged on (the tables' own run is one repeat)."""
        vals = [_client_p99(r) for r in self.results]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    def noise(self) -> float | None:
        """The largest coefficient of variation of a clause's value over repeats (None without
        repeats): how far apart runs of the very same trial land."""
        cvs = [s.cv for r in self.results if r.repeat for k, s in r.repeat.spread.items()
               if k.startswith("target ") and not k.endswith("(server)") and s.cv is not None]
        return max(cvs) if cvs else None

    def run_count(self) -> int:
        """Load trials behind the evaluation: each scenario's repeats (one when not repeated)."""
        return sum(r.repeat.count if r.repeat else 1 for r in self.results)

    def attrs(self) -> dict:
        """What a study keeps of the evaluation (JSON-able user attributes)."""
        return {"violations": self.violations, "feasible": self.feasible, "p99_ms": self.p99_ms(),
                "statuses": [r.status for r in self.results], "clause_values": clause_values(self.results),
                "noise": self.noise()} | ({"runs": self.runs} if self.runs else {})


class SimBackend:
    """Evaluates configurations in the simulator; each scenario's arrivals are planned once."""

    name = "sim"

    def __init__(self, base: TrialPlan, setup: SimSetup, scenarios: list[tuple[Path, tuple[str, ...]]]):
        self.base, self.setup = base, setup
        self.plans: list[tuple[TrialPlan, dict, pd.DataFrame]] = []
        for path, args in scenarios:
            plan = replace(base, scenario=path, scenario_args=tuple(args))
            info, arrivals = scenario_arrivals(plan)
            self.plans.append((replace(plan, scenario_info=info), info, arrivals))

    def evaluate(self, serve_config: dict, values: dict | None = None, label: str = "") -> Evaluation:
        """Simulate `serve_config` on every scenario (on the cluster with the values' cluster-layer
        parameters set)."""
        setup = replace(self.setup, cluster=apply_cluster(self.setup.cluster, values or {}))
        results = [sim_trial(replace(plan, serve_config=serve_config, config_path=None), setup, info, arrivals)[0]
                   for plan, info, arrivals in self.plans]
        return Evaluation(serve_config, results)


class RealBackend:
    """Evaluates configurations on the system under test: a `tuner run` trial per scenario
    (with `repeat` runs each), written under `out/<label>/<scenario>/`. A trial that could not
    be measured raises StackError (the CLI's exit 3)."""

    name = "real"

    def __init__(self, system, base: TrialPlan, scenarios: list[tuple[Path, tuple[str, ...], dict]], out: Path,
                 repeat: int = 1, report: Reporter = Silent()):
        self.system, self.base, self.scenarios, self.out = system, base, scenarios, out
        self.repeat, self.report = repeat, report

    def evaluate(self, serve_config: dict, values: dict | None = None, label: str = "",
                 repeat: int | None = None, settled=None) -> Evaluation:
        """Deploy `serve_config` and run each scenario on it (`repeat` runs each, by default
        the backend's; `settled`, as `run_repeated` takes it, may end a scenario's repeats early)."""
        from tuner.trial import run_repeated

        folder = self.out / (label or "evaluation")
        results, runs = [], {}
        for path, args, info in self.scenarios:
            plan = replace(self.base, serve_config=serve_config, config_path=None, scenario=path,
                           scenario_args=tuple(args), scenario_info=info, out=folder / path.stem)
            runs[path.stem] = str(plan.out.resolve())
            results.append(run_repeated(self.system, plan, repeat or self.repeat, self.report, settled))
        return Evaluation(serve_config, results, runs=runs)
