"""The simulated backend: one trial in the simulator, written as the real backend writes it.

scenario -> the exact arrivals Locust would send (`python -m loadgen.check --plan`, in its own
process) -> tuner.sim.run -> client records -> the same summaries, verdicts and cost as
`tuner run` -> result.json (backend "sim"), records.parquet, the config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError

from loadgen.summary import summarize
from tuner.cost import Prices, Resources, deployment_resources, step_integral, trial_cost, with_node_prices
from tuner.errors import UsageError, first_problem, read_yaml
from tuner.result import (ClauseVerdict, ConfigInfo, DeploymentResult, ScenarioInfo, SimInfo, TargetResult, TrialResult,
                          Window, route_from_summary, verdict_status, write_result)
from tuner.sim.calibration import Calibration
from tuner.sim.cluster import ClusterSpec
from tuner.sim.llm import HPAOnLLM
from tuner.sim.run import Outcome, simulate
from tuner.target import Target, client_value
from tuner.trial import config_hash

CLUSTERS = Path(__file__).resolve().parent / "data" / "cluster.yaml"
LAYERS = ("fixed", "ray-autoscaler", "hpa")
GIB = 2**30


@dataclass(frozen=True)
class SimSpec:
    """Everything one simulated trial needs, validated at the edge."""

    serve_config: dict
    config_path: Path | None
    scenario: Path
    scenario_args: tuple[str, ...]
    target: Target
    duration_s: float
    out: Path
    prices: Prices
    calibration: Calibration
    cluster: ClusterSpec
    llm_hpa: HPAOnLLM | None = None
    warmup_s: float = 20.0
    seed: int = 0
    scenario_info: dict = field(default_factory=dict)


def load_cluster(layer: str, path: Path | None = None, llm_hpa: bool = False) -> tuple[ClusterSpec, HPAOnLLM | None]:
    """A cluster layer from the shipped file, or from `path` where it names that layer."""
    if layer not in LAYERS:
        raise UsageError(f"--cluster: {layer!r} is not one of {', '.join(LAYERS)}")
    data = yaml.safe_load(CLUSTERS.read_text())
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


def scenario_plan(path: Path, seconds: float, args: list[str], seed: int) -> tuple[dict, pd.DataFrame]:
    """The scenario's arrivals, exactly as its generators would send them (UsageError if refused)."""
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.parquet"
        r = subprocess.run([sys.executable, "-m", "loadgen.check", "--plan", str(plan), str(path), "-t", f"{seconds:g}s",
                            "--seed", str(seed), *args], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
            raise UsageError((lines[-1][7:] if lines else r.stderr.strip()[-300:]) + f" (scenario {path.name})")
        return json.loads(r.stdout.strip().splitlines()[-1]), pd.read_parquet(plan)


def _deployments(out: Outcome, duration_s: float) -> dict[str, DeploymentResult]:
    res = {}
    for key, tl in out.replicas.items():
        inside = [v for t, v in tl if t < duration_s]
        res[key] = DeploymentResult(replicas_min=min(inside), replicas_max=max(inside),
                                    replicas_mean=step_integral(tl, 0.0, duration_s) / duration_s,
                                    replica_starts=out.replica_starts.get(key, 0))
    return res


def run_sim(spec: SimSpec, info: dict, plan: pd.DataFrame) -> TrialResult:
    """Simulate the trial and write its result.json and records under spec.out."""
    out_dir = spec.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve_config.yaml").write_text(yaml.safe_dump(spec.serve_config, sort_keys=False))
    result, records = sim_trial(spec, info, plan)
    records.drop(columns=["latency_ms", "service_ms", "lag_ms"]).to_parquet(out_dir / "records.parquet", index=False)
    write_result(out_dir / "result.json", result)
    return result


def sim_trial(spec: SimSpec, info: dict, plan: pd.DataFrame) -> tuple[TrialResult, pd.DataFrame]:
    """One simulated trial in memory: its result (as result.json holds it) and client records."""
    try:
        outcome = simulate(spec.serve_config, plan, spec.calibration, spec.cluster, duration_s=spec.duration_s,
                           warmup_s=spec.warmup_s, seed=spec.seed, request_timeout_s=info.get("request_timeout_s", 60.0),
                           drain_s=info.get("drain_s", 10.0), max_in_flight=info.get("max_in_flight", 1000),
                           llm_hpa=spec.llm_hpa)
    except ValueError as e:
        raise UsageError(f"cannot simulate {spec.config_path or 'the config'}: {e}") from None
    records = outcome.records
    summary = summarize(records)
    end = max(spec.duration_s, float(records["end"].max()) if records["end"].notna().any() else 0.0)
    clauses = [ClauseVerdict(clause=c, client=(v := client_value(c, records, spec.duration_s)), server=None,
                             passed=c.holds(v), margin=c.margin(v)) for c in spec.target.clauses]
    nodes = dict(outcome.nodes)
    if spec.llm_hpa is not None or spec.calibration.llm.engines > 1:
        nodes["llm-engines"] = outcome.llm_engines
    groups = {g.name: Resources(cpus=g.resources.get("CPU", 0.0), gpus=g.resources.get("GPU", 0.0),
                                memory_gib=g.resources.get("memory", 0.0) / GIB) for g in spec.cluster.all_groups()}
    priced_nodes = {k: v for k, v in outcome.nodes.items() if k in groups}
    prices = with_node_prices(spec.prices, groups) if priced_nodes else spec.prices
    simulated = spec.warmup_s + end
    result = TrialResult(
        backend="sim", status=verdict_status(clauses),
        config=ConfigInfo(path=str(spec.config_path) if spec.config_path else None,
                          hash=config_hash(spec.serve_config), serve_config=spec.serve_config),
        scenario=ScenarioInfo(name=spec.scenario.stem, path=str(spec.scenario), options=list(spec.scenario_args),
                              duration_s=spec.duration_s, warmup_s=spec.warmup_s, seed=spec.seed,
                              expected_arrivals=info.get("expected_arrivals"), peak_rps=info.get("peak_rps")),
        target=TargetResult(text=spec.target.text, clauses=clauses),
        window=Window(start=0.0, end=spec.duration_s, drained=end),
        overall=route_from_summary(summary["overall"]),
        routes={r: route_from_summary(g) for r, g in summary["routes"].items()},
        deployments=_deployments(outcome, spec.duration_s),
        cost=trial_cost(outcome.replicas, deployment_resources(spec.serve_config), prices, 0.0, spec.duration_s,
                        nodes=priced_nodes or None),
        replicas={k: [(round(t, 3), v) for t, v in tl] for k, tl in outcome.replicas.items()},
        nodes={k: [(round(t, 3), v) for t, v in tl] for k, tl in nodes.items()},
        files={"serve_config": "serve_config.yaml", "records": "records.parquet"},
        simulation=SimInfo(calibration=spec.calibration.name, calibration_source=spec.calibration.source,
                           cluster=spec.cluster.layer, llm_hpa=spec.llm_hpa is not None, events=outcome.events,
                           wall_s=round(outcome.wall_s, 3), speedup=round(simulated / max(outcome.wall_s, 1e-9), 1)),
        timings_s={"simulate": round(outcome.wall_s, 3)})
    return result, records
