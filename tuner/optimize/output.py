"""What a study leaves in its output folder: the best Serve config (validated with Ray's
schema), every trial as CSV, and a summary with the baselines and what the best saves."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import yaml

from tuner.optimize.space import apply, apply_cluster
from tuner.optimize.study import best_trial


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, baseline label, cost per hour, feasible, p99, the
    scenarios' verdicts, every constraint value, and every parameter as evaluated (repaired)."""
    rows = []
    for t in study.trials:
        a = t.user_attrs
        row = {"number": t.number, "state": t.state.name, "baseline": a.get("baseline", ""),
               "cost_per_hour": t.value, "feasible": a.get("feasible"), "p99_ms": a.get("p99_ms"),
               "statuses": ",".join(a.get("statuses", [])),
               "violations": json.dumps([round(v, 4) for v in a.get("violations", [])])}
        row |= {k: v for k, v in (a.get("values") or t.params).items()}
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(study: optuna.Study, serve_config: dict, out: Path, info: dict, cluster=None) -> dict:
    """best_serve_config.yaml (when a trial met the target), with a cluster layer also
    best_cluster.yaml (the layer's settings, for export), trials.csv and summary.json."""
    from ray.serve.schema import ServeDeploySchema

    out.mkdir(parents=True, exist_ok=True)
    trials_frame(study).to_csv(out / "trials.csv", index=False)
    best = best_trial(study)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    base = {t.user_attrs["baseline"]: t for t in done if t.user_attrs.get("baseline")}
    summary = {**info, "trials": len(done),
               "baselines": {k: {"trial": t.number, "cost_per_hour": t.value, "feasible": t.user_attrs.get("feasible"),
                                 "p99_ms": t.user_attrs.get("p99_ms")} for k, t in base.items()},
               "best": None}
    if best is not None:
        cfg = apply(serve_config, best.user_attrs["values"])
        ServeDeploySchema.model_validate(cfg)
        (out / "best_serve_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        if cluster is not None and cluster.layer != "fixed":
            tuned = apply_cluster(cluster, best.user_attrs["values"])
            (out / "best_cluster.yaml").write_text(yaml.safe_dump({tuned.layer: tuned.model_dump(mode="json",
                                                                   exclude={"layer"})}, sort_keys=False))
        summary["best"] = {"trial": best.number, "cost_per_hour": best.value, "p99_ms": best.user_attrs.get("p99_ms"),
                           "values": best.user_attrs["values"], "serve_config": "best_serve_config.yaml",
                           "savings": {k: (1 - best.value / t.value) if t.value else None for k, t in base.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
