"""The search: an Optuna study that minimises cost subject to every target clause.

Each trial samples the space, repairs the constraints between parameters, applies the values
to the Serve config and asks the backend to evaluate it; the cost (per hour, the worst
scenario's) is the objective and each clause's shortfall a constraint (`Trial.set_constraint`,
which Optuna's TPE uses, so infeasible trials guide the sampler too). Baselines are evaluated
first: the starting config, and Ray Serve's defaults for the searched fields. The study lives
in Optuna storage (SQLite in the output folder by default), so `resume` continues it with every
completed trial kept.
"""

from __future__ import annotations

from typing import Callable

import optuna

from tuner.optimize.space import Space, _current, apply, repair, suggest

# Ray Serve 2.60's defaults for the fields the space may search (AutoscalingConfig,
# DeploymentConfig, @serve.batch); a default outside a parameter's range is clipped into it.
SERVE_DEFAULTS = {"min_replicas": 1, "max_replicas": 1, "initial_replicas": 1, "target_ongoing_requests": 2.0,
                  "upscale_delay_s": 30.0, "downscale_delay_s": 600.0, "downscale_to_zero_delay_s": 600.0,
                  "upscaling_factor": 1.0, "downscaling_factor": 1.0, "look_back_period_s": 30.0,
                  "max_ongoing_requests": 5, "max_queued_requests": -1, "num_replicas": 1, "max_batch_size": 10,
                  "batch_wait_timeout_s": 0.01, "max_models_per_replica": 3, "num_cpus": 1.0}


def _clip(value, p):
    if p.type == "categorical":
        return value if value in p.choices else p.choices[0]
    v = min(max(value, p.low), p.high)
    return int(round(v)) if p.type == "int" else float(v)


def baselines(space: Space, serve_config: dict) -> dict[str, dict]:
    """The starting config's and Ray's default values for every searched parameter."""
    current = _current(serve_config)
    out = {"starting config": {}, "Ray defaults": {}}
    for key in space.names():
        layer, owner, name = key.split(".", 2)
        p = space.param(key)
        if layer != "serve":
            out["starting config"][key] = out["Ray defaults"][key] = _clip(p.choices[0] if p.choices else p.low, p)
            continue
        out["starting config"][key] = _clip(current.get(owner, {}).get(name, SERVE_DEFAULTS[name]), p)
        out["Ray defaults"][key] = _clip(SERVE_DEFAULTS[name], p)
    return out


SAMPLERS = ("tpe", "gp", "random")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate) and GP both read the trials' constraints; random is the baseline
    the search-efficiency benchmark compares against."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler: {name!r} is not one of {', '.join(SAMPLERS)}")


def run_study(backend, space: Space, serve_config: dict, *, trials: int, storage: str, name: str, seed: int = 0,
              sampler: str = "tpe", time_budget_s: float | None = None, patience: int | None = None, resume: bool = False,
              on_trial: Callable[[optuna.trial.FrozenTrial, optuna.trial.FrozenTrial | None], None] = lambda t, b: None,
              ) -> optuna.Study:
    """Run (or continue) the study until `trials` completed trials, the time budget, or
    `patience` trials without a better feasible cost."""
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=make_sampler(sampler, seed),
                                load_if_exists=resume)
    if not study.trials:
        for label, values in baselines(space, serve_config).items():
            study.enqueue_trial(values, user_attrs={"baseline": label})
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    left = max(0, trials - len(done))
    since = {"best": best_trial(study), "stale": 0}

    def objective(trial: optuna.Trial) -> float:
        values = repair(suggest(trial, space), space, serve_config)
        ev = backend.evaluate(apply(serve_config, values), values)
        trial.set_user_attr("values", values)
        trial.set_user_attr("violations", ev.violations)
        for clause, v in zip(ev.clauses, ev.violations):
            trial.set_constraint(clause, v)
        trial.set_user_attr("feasible", ev.feasible)
        trial.set_user_attr("p99_ms", ev.p99_ms())
        trial.set_user_attr("statuses", [r.status for r in ev.results])
        return ev.cost

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = best_trial(study)
        improved = best is not None and (since["best"] is None or best.number != since["best"].number)
        since["best"], since["stale"] = best, 0 if improved else since["stale"] + 1
        on_trial(trial, best)
        if patience and since["stale"] >= patience:
            study.stop()

    if left:
        study.optimize(objective, n_trials=left, timeout=time_budget_s, callbacks=[callback], catch=())
    return study


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The cheapest completed trial that met the target everywhere."""
    ok = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible")]
    return min(ok, key=lambda t: (t.value, t.number)) if ok else None
