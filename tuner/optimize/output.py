"""What a search leaves in its output folder: the best Serve config (validated with Ray's
schema) and its cluster-layer settings, every trial as CSV, and a summary with the baselines,
what the best saves against each, the Pareto front and, for a hybrid search, the real
verification."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import yaml

from tuner.atomic import write_text
from tuner.optimize.attrs import StudyTrial, TrialAttrs
from tuner.optimize.space import apply, apply_cluster
from tuner.optimize.study import completed, cost_of



def trials_frame(studies: list[tuple[str, optuna.Study]]) -> pd.DataFrame:
    """One row per evaluated trial of every study (enqueued ones not yet run, the copies a
    hybrid round carries over and a warm start's prior trials are not this search's
    evaluations and are left out): study, backend, number, state, baselines, cost per hour,
    feasible, p99, the scenarios' verdicts, every constraint value, for real trials the
    verification, and every parameter as evaluated (repaired)."""
    rows = []
    for backend, study in studies:
        for t in study.trials:
            a = TrialAttrs.of(t)
            if a.copied_from is not None or a.prior is not None or t.state == optuna.trial.TrialState.WAITING:
                continue
            row = {"study": study.study_name, "backend": backend, "number": t.number, "state": t.state.name,
                   "baselines": "; ".join(a.baselines), "cost_per_hour": t.values[0] if t.values else None,
                   "feasible": a.feasible, "p99_ms": a.p99_ms, "statuses": ",".join(a.statuses),
                   "violations": json.dumps([round(v, 4) for v in a.violations])}
            if backend == "real":
                row |= {"label": a.label, "passed": a.passed, "margin": a.margin, "noise_used": a.noise_used,
                        "sim_trial": a.sim_trial, "sim_cost": a.sim_cost, "sim_p99_ms": a.sim_p99_ms}
            row |= dict(a.values or t.params)
            rows.append(row)
    return pd.DataFrame(rows)


def _brief(backend: str, t: StudyTrial, folder: Path) -> dict:
    """A trial as summary.json lists it; a real one's trial folders relative to the search's
    `folder`, so the folder can be moved whole."""
    a = TrialAttrs.of(t)
    out = {"backend": backend, "trial": t.number, "cost_per_hour": cost_of(t), "feasible": a.feasible, "p99_ms": a.p99_ms}
    if backend == "real":
        out |= {"label": a.label, "margin": a.margin, "noise_used": a.noise_used, "sim_cost": a.sim_cost,
                "sim_p99_ms": a.sim_p99_ms, "runs": a.runs_under(folder)}
    return out


def baseline_trials(studies: list[tuple[str, optuna.Study]]) -> dict[str, tuple[str, StudyTrial]]:
    """Each baseline label's trial: its real run where there is one, else its simulated one."""
    found: dict[str, tuple[str, StudyTrial]] = {}
    for backend, study in studies:
        for t in completed(study):
            a = TrialAttrs.of(t)
            for label in a.baselines:
                if a.copied_from is None and (label not in found or backend == "real"):
                    found[label] = (backend, t)
    return found


def write_outputs(out: Path, serve_config: dict, info: dict, studies: list[tuple[str, optuna.Study]],
                  best: tuple[str, StudyTrial] | None, *, cluster=None, pareto: list[StudyTrial] | None = None,
                  extra: dict | None = None) -> dict:
    """best_serve_config.yaml (when a configuration met the target), with a cluster layer
    also best_cluster.yaml (the layer's settings, for export), trials.csv and summary.json,
    each written atomically."""
    from ray.serve.schema import ServeDeploySchema

    write_text(out / "trials.csv", trials_frame(studies).to_csv(index=False))
    base = baseline_trials(studies)
    summary = {**info, "trials": {b: sum(TrialAttrs.of(t).copied_from is None for t in completed(s)) for b, s in studies},
               "baselines": {label: _brief(b, t, out) for label, (b, t) in base.items()}, "best": None, **(extra or {})}
    if pareto is not None:
        summary["pareto"] = [{"trial": t.number, "cost_per_hour": cost_of(t), "p99_ms": a.p99_ms, "values": a.values}
                             for t, a in ((t, TrialAttrs.of(t)) for t in pareto)]
    if best is not None:
        backend, t = best
        values = TrialAttrs.of(t).values
        cfg = apply(serve_config, values)
        ServeDeploySchema.model_validate(cfg)
        write_text(out / "best_serve_config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        if cluster is not None and cluster.layer != "fixed":
            tuned = apply_cluster(cluster, values)
            write_text(out / "best_cluster.yaml", yaml.safe_dump({tuned.layer: tuned.model_dump(mode="json", exclude={"layer"})},
                                                             sort_keys=False))
        # A baseline that missed the target is no alternative to the best: no saving against it.
        summary["best"] = {**_brief(backend, t, out), "values": values, "serve_config": "best_serve_config.yaml",
                           "savings": {label: {"saving": (1 - cost_of(t) / cost_of(bt)) if cost_of(bt) else None,
                                               "basis": b} for label, (b, bt) in base.items()
                                       if TrialAttrs.of(bt).feasible}}
    write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary
