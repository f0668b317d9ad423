"""The simulated backend: one trial in the simulator, written as the real backend writes it.

plan (tuner.plan) -> the exact arrivals Locust would send (`python -m loadgen.check --plan`, in
its own process) -> tuner.sim.run -> client records -> the same summaries, verdicts and cost as
`tuner run` -> result.json (backend "sim"), records.parquet, the config. The simulator adds to
the plan only its own settings (`SimSetup`): the calibration and the cluster layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from loadgen.summary import summarize
from tuner.abort import simulated_abort
from tuner.cost import Resources, deployment_resources, step_integral, trial_cost, with_node_prices
from tuner.errors import UsageError, first_problem, read_yaml
from tuner.paths import CLUSTERS
from tuner.plan import TrialPlan, client_verdicts, result_header, write_config
from tuner.result import (AbortInfo, DeploymentResult, TrialResult, SimInfo, Window, route_from_summary, verdict_status,
                          write_result)
from tuner.sim.calibration import Calibration
from tuner.sim.cluster import ClusterSpec
from tuner.sim.llm import HPAOnLLM
from tuner.sim.run import Outcome, simulate

LAYERS = ("fixed", "ray-autoscaler", "hpa")
GIB = 2**30


@dataclass(frozen=True)
class SimSetup:
    """What the simulator needs beyond the trial's plan: its calibration and the cluster layer."""

    calibration: Calibration
    cluster: ClusterSpec
    llm_hpa: HPAOnLLM | None = None


def load_cluster(layer: str, path: Path | None = None, llm_hpa: bool = False) -> tuple[ClusterSpec, HPAOnLLM | None]:
    """A cluster layer from the shipped file, or from `path` where it names that layer."""
    if layer not in LAYERS:
        raise UsageError(f"--cluster: {layer!r} is not one of {', '.join(LAYERS)}")
    data = read_yaml(CLUSTERS, "the shipped cluster layers")
    if path is not None:
        given = read_yaml(path, "--cluster-file") or {}
        if not isinstance(given, dict):
            raise UsageError(f"--cluster-file {path}: must map layer names to settings")
        data |= given
    where = path or CLUSTERS
    settings = data.get(layer) or {}
    if not isinstance(settings, dict):
        raise UsageError(f"{where}: {layer}: must be a mapping of the layer's settings (got {type(settings).__name__})")
    try:
        spec = ClusterSpec.model_validate({"layer": layer, **settings})
        hpa = HPAOnLLM.model_validate(data["llm_hpa"]) if llm_hpa else None
    except KeyError:
        raise UsageError(f"--llm-hpa: {where} has no llm_hpa settings") from None
    except ValidationError as e:
        raise UsageError(f"{where}: {layer}.{first_problem(e)}") from None
    return spec, hpa


def sim_setup(calibration: str | Path, cluster: str = "fixed", cluster_file: Path | None = None,
              llm_hpa: bool = False) -> SimSetup:
    """The simulator's settings from the options given (UsageError naming the bad one)."""
    from tuner.calibration_file import load_calibration

    layer, llm = load_cluster(cluster, cluster_file, llm_hpa)
    return SimSetup(calibration=load_calibration(calibration), cluster=layer, llm_hpa=llm)


def _deployments(out: Outcome, duration_s: float) -> dict[str, DeploymentResult]:
    res = {}
    for key, tl in out.replicas.items():
        inside = [v for t, v in tl if t < duration_s]
        res[key] = DeploymentResult(replicas_min=min(inside), replicas_max=max(inside),
                                    replicas_mean=step_integral(tl, 0.0, duration_s) / duration_s,
                                    replica_starts=out.replica_starts.get(key, 0))
    return res


def _note_abort(result: TrialResult, plan: TrialPlan, records: pd.DataFrame, arrivals: pd.DataFrame) -> None:
    """When `--abort-on-fail` would have stopped the load: the same rule the generator applies,
    after the fact (a simulated run is cheap to finish, and a clause it fires on is missed either way)."""
    paths = arrivals.loc[arrivals["t"] < plan.duration_s, "path"]
    fired = simulated_abort(plan.target, records, paths, plan.duration_s, plan.abort_grace_s)
    if fired is not None:
        result.aborted = AbortInfo(clause=fired.clause, at_s=round(fired.at_s, 3))
        result.reasons.append(f"--abort-on-fail would have stopped the load at {result.aborted.at_s:g} s: "
                              f"{fired.clause} could no longer hold, whatever the rest of the run did "
                              f"(the simulated run is not cut)")


def run_sim(plan: TrialPlan, setup: SimSetup, info: dict, arrivals: pd.DataFrame) -> TrialResult:
    """Simulate the trial and write its result.json and records under plan.out."""
    write_config(plan)
    result, records = sim_trial(plan, setup, info, arrivals)
    records.drop(columns=["latency_ms", "service_ms", "lag_ms"]).to_parquet(plan.out / "records.parquet", index=False)
    write_result(plan.out / "result.json", result)
    return result


def sim_trial(plan: TrialPlan, setup: SimSetup, info: dict, arrivals: pd.DataFrame) -> tuple[TrialResult, pd.DataFrame]:
    """One simulated trial in memory: its result (as result.json holds it) and client records."""
    from tuner.calibration_file import accelerator_tables

    try:
        outcome = simulate(plan.serve_config, arrivals, setup.calibration, setup.cluster, duration_s=plan.duration_s,
                           tables=accelerator_tables(plan.serve_config), warmup_s=plan.warmup_s, seed=plan.seed,
                           request_timeout_s=info.get("request_timeout_s", 60.0), drain_s=info.get("drain_s", 10.0),
                           max_in_flight=info.get("max_in_flight", 1000), llm_hpa=setup.llm_hpa,
                           prime=plan.prime_rows(arrivals))
    except ValueError as e:
        raise UsageError(f"cannot simulate {plan.config_path or 'the config'}: {e}") from None
    records = outcome.records
    summary = summarize(records)
    end = max(plan.duration_s, float(records["end"].max()) if records["end"].notna().any() else 0.0)
    nodes = dict(outcome.nodes)
    if setup.llm_hpa is not None or setup.calibration.llm.engines > 1:
        nodes["llm-engines"] = outcome.llm_engines
    groups = {g.name: Resources(cpus=g.resources.get("CPU", 0.0), gpus=g.resources.get("GPU", 0.0),
                                memory_gib=g.resources.get("memory", 0.0) / GIB) for g in setup.cluster.all_groups()}
    priced_nodes = {k: v for k, v in outcome.nodes.items() if k in groups}
    prices = with_node_prices(plan.prices, groups) if priced_nodes else plan.prices
    simulated = plan.warmup_s + end
    result = result_header(plan, "sim", info)
    result.target.clauses = client_verdicts(plan.target, records, plan.duration_s)
    result.status = verdict_status(result.target.clauses)
    if plan.abort_on_fail:
        _note_abort(result, plan, records, arrivals)
    result.window = Window(start=0.0, end=plan.duration_s, drained=end)
    result.overall = route_from_summary(summary["overall"])
    result.routes = {r: route_from_summary(g) for r, g in summary["routes"].items()}
    result.deployments = _deployments(outcome, plan.duration_s)
    result.cost = trial_cost(outcome.replicas, deployment_resources(plan.serve_config), prices, 0.0, plan.duration_s,
                             nodes=priced_nodes or None)
    result.replicas = {k: [(round(t, 3), v) for t, v in tl] for k, tl in outcome.replicas.items()}
    result.nodes = {k: [(round(t, 3), v) for t, v in tl] for k, tl in nodes.items()}
    result.files["records"] = "records.parquet"
    result.simulation = SimInfo(calibration=setup.calibration.name, calibration_source=setup.calibration.source,
                                cluster=setup.cluster.layer, llm_hpa=setup.llm_hpa is not None, events=outcome.events,
                                wall_s=round(outcome.wall_s, 3), speedup=round(simulated / max(outcome.wall_s, 1e-9), 1))
    result.timings_s = {"simulate": round(outcome.wall_s, 3)}
    return result, records
