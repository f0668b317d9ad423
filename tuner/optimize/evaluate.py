"""Evaluating one configuration: its trials on every scenario, its cost, and how far each
target clause is from holding (the constraints Optuna sees). The simulator backend lives here;
the real and hybrid backends give the same `Evaluation`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from tuner.optimize.space import apply_cluster
from tuner.result import TrialResult
from tuner.simulate import SimSpec, scenario_plan, sim_trial


@dataclass
class Evaluation:
    """A configuration's trials (one per scenario) and what the study needs from them."""

    serve_config: dict
    results: list[TrialResult]
    cost: float = field(init=False)
    violations: list[float] = field(init=False)
    clauses: list[str] = field(init=False)
    feasible: bool = field(init=False)

    def __post_init__(self):
        # What is paid is the most expensive scenario's rate: the deployment must carry all of them.
        self.cost = max(r.cost.cost_per_hour for r in self.results)
        # One constraint per clause: the worst scenario's shortfall (<= 0 when the clause holds).
        per_clause: dict[str, float] = {}
        for r in self.results:
            for cv in r.target.clauses:
                v = 1.0 if cv.margin is None else -cv.margin
                per_clause[cv.clause.text] = max(per_clause.get(cv.clause.text, -1e9), v)
        self.clauses, self.violations = list(per_clause), list(per_clause.values())
        self.feasible = all(r.status == "met" for r in self.results)

    def p99_ms(self) -> float | None:
        """The worst scenario's client p99 (for the Pareto view)."""
        vals = [r.overall.latency_ms.p99 for r in self.results if r.overall and r.overall.latency_ms.p99 is not None]
        return max(vals) if vals else None


class SimBackend:
    """Evaluates configurations in the simulator; each scenario's arrivals are planned once."""

    name = "sim"

    def __init__(self, base: SimSpec, scenarios: list[tuple[Path, tuple[str, ...]]]):
        self.base = base
        self.plans: list[tuple[SimSpec, dict, pd.DataFrame]] = []
        for path, args in scenarios:
            info, plan = scenario_plan(path, base.duration_s, list(args), base.seed)
            self.plans.append((replace(base, scenario=path, scenario_args=tuple(args), scenario_info=info), info, plan))

    def evaluate(self, serve_config: dict, values: dict | None = None) -> Evaluation:
        """Simulate `serve_config` on every scenario (on the cluster with the values' cluster-layer
        parameters set)."""
        cluster = apply_cluster(self.base.cluster, values or {})
        results = [sim_trial(replace(spec, serve_config=serve_config, config_path=None, cluster=cluster), info, plan)[0]
                   for spec, info, plan in self.plans]
        return Evaluation(serve_config, results)
