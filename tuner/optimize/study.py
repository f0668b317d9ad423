"""The search: an Optuna study that minimises cost subject to every target clause.

Each trial samples the space, repairs the constraints between parameters, applies the values
to the Serve config and asks the backend to evaluate it; the cost (per hour, the worst
scenario's) is the objective (with `pareto`, also the worst p99) and each clause's shortfall a
constraint (`Trial.set_constraint`, which TPE and GP read, so infeasible trials guide the
sampler too). Baselines are evaluated first. The study lives in Optuna storage (SQLite in the
output folder by default, or any RDB URL, which also lets several workers share it); a trial
whose process died is found by its stale heartbeat and run again, so `resume` loses no
completed trial and counts none twice.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Callable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import SQLAlchemyError

from tuner.cost import Prices, deployment_resources, hourly
from tuner.errors import UsageError
from tuner.names import app_name, deployment_key
from tuner.optimize.attrs import TrialAttrs
from tuner.optimize.space import Space, _current, apply, repair, suggest
# The "Ray defaults" baseline; a default outside a parameter's range is clipped into it.
from tuner.serve_defaults import EFFECTIVE as SERVE_DEFAULTS

SAMPLERS = ("auto", "tpe", "gp", "random")
# A p99 for the Pareto objective when a trial answered nothing (Optuna takes no infinities).
NO_P99_MS = 1e9


STATIC = "static"  # the label of a static-replica baseline: "static 2 replicas"
REPLICA_PARAMS = ("num_replicas", "min_replicas", "max_replicas", "initial_replicas")


def static_baselines(space: Space, serve_config: dict, counts: range) -> dict[str, dict]:
    """What an engineer sweeps by hand: every deployment whose replicas the space searches fixed at
    k replicas, for each k in `counts`, everything else as in the starting config."""
    owners = sorted({key.split(".", 2)[1] for key in space.names()
                     if key.startswith("serve.") and key.rsplit(".", 1)[1] in REPLICA_PARAMS})
    return {f"{STATIC} {k} replica{'s' if k > 1 else ''}": apply(serve_config, {f"serve.{d}.num_replicas": k for d in owners})
            for k in counts}


# What sets a replica's price or the fewest replicas a deployment runs: at the low end of its
# range a parameter makes a configuration no dearer.
COST_PARAMS = ("min_replicas", "num_replicas", "devices", "num_cpus")


def cost_floor(space: Space, serve_config: dict, prices: Prices) -> float:
    """The least per hour any configuration of the space can cost: every parameter that prices a
    replica or bounds the replicas from below at its range's low end, and each deployment at its
    fewest replicas. A lower bound only: nothing says that configuration meets a target, but a
    search that reaches it within noise has found the optimum."""
    lows = {key: space.param(key).low for key in space.names()
            if key.startswith("serve.") and key.rsplit(".", 1)[1] in COST_PARAMS and space.param(key).low is not None}
    cfg = apply(serve_config, repair(lows, space, serve_config))
    resources = deployment_resources(cfg)
    total = 0.0
    for app in cfg.get("applications") or []:
        for d in app.get("deployments") or []:
            auto = d.get("autoscaling_config")
            fewest = auto.get("min_replicas", SERVE_DEFAULTS["min_replicas"]) if auto else d.get("num_replicas", 1)
            total += fewest * hourly(resources[deployment_key(app_name(app), d["name"])], prices)
    return total


def _clip(value, p):
    if p.type == "categorical":
        return value if value in p.choices else p.choices[0]
    v = min(max(value, p.low), p.high)
    return int(round(v)) if p.type == "int" else float(v)


def baselines(space: Space, serve_config: dict, named: dict[str, dict] | None = None) -> dict[str, dict]:
    """Values of every searched parameter for each baseline: the starting config, Ray's
    defaults, and each named Serve config (e.g. the seed article's settings); a cluster-layer
    parameter takes its range's low end or first choice."""
    configs = {"starting config": serve_config, "Ray defaults": None, **(named or {})}
    out: dict[str, dict] = {}
    for label, cfg in configs.items():
        current = _current(cfg) if cfg is not None else {}
        values = {}
        for key in space.names():
            layer, owner, name = key.split(".", 2)
            p = space.param(key)
            if layer != "serve":
                values[key] = _clip(p.choices[0] if p.choices else p.low, p)
            else:
                values[key] = _clip(current.get(owner, {}).get(name, SERVE_DEFAULTS[name]), p)
        out[label] = repair(values, space, serve_config)
    return out


def _quarter(n: int) -> int:
    """TPE's "good" trials when it starts from prior trials: the best quarter (at most 25)."""
    return min(math.ceil(0.25 * n), 25)


def resolve_sampler(name: str, warm: bool) -> str:
    """The sampler `auto` stands for: GP for a search from nothing, TPE when the study starts from
    an earlier search's trials. Measured (BENCHMARKS.md, "Search efficiency"): from nothing, on
    the shipped space and burst (scripts/bench_sampler.py), GP reached the space's floor within
    40 trials on 5 seeds of 5 (median trial 21) and TPE on none, even in 300 (its good trials,
    all at the cheapest cost found, never pull the multiplex cache up, which is what lets a
    replica go); on the benchmark grid GP needed 0.39 of random search's trials against TPE's
    0.58; warm-started, TPE with a quarter as good needed 0.21 against GP's 0.34."""
    if name == "auto":
        return "tpe" if warm else "gp"
    return name


def make_sampler(name: str, seed: int, warm: bool = False) -> optuna.samplers.BaseSampler:
    """TPE (multivariate) and GP both read the trials' constraints; random is the baseline
    the search-efficiency benchmark compares against; `auto` picks by `warm` (resolve_sampler).
    TPE models after 5 trials rather than Optuna's 10: with the baselines first, 10 random ones would spend a third of a 40-trial
    budget, and the benchmark reached the grid's optimum in fewer trials this way (BENCHMARKS.md).
    A `warm` TPE (the study starts from an earlier search's trials) models the best quarter of
    the trials as good rather than Optuna's tenth: the earlier search's cheapest feasible points
    need not be feasible here, and a tenth of its 40 trials is those few alone; a quarter reached
    the benchmark's optimum in 0.6x the trials on held-out seeds, where cold a quarter is worse."""
    name = resolve_sampler(name, warm)
    if name == "tpe":
        with warnings.catch_warnings():  # `gamma` is deprecated from Optuna 4.9 (pyproject.toml keeps it below 6)
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5,
                                              **({"gamma": _quarter} if warm else {}))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler: {name!r} is not one of {', '.join(SAMPLERS)}")


def open_storage(url: str) -> RDBStorage:
    """RDB storage with heartbeats: a trial left RUNNING by a killed process goes stale after
    the grace period, is marked failed and enqueued again with its parameters. A URL that
    cannot be opened is a UsageError naming --storage."""
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and the way it documents
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=10, grace_period=30,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    except (SQLAlchemyError, ImportError, ValueError) as e:  # a malformed URL, a missing driver, an unreachable DB
        raise UsageError(f"--storage {url!r}: cannot open it: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


def open_study(storage: str | RDBStorage, name: str, *, seed: int = 0, sampler: str = "tpe", pareto: bool = False,
               resume: bool = True) -> optuna.Study:
    """Create (or, with `resume`, load) a study: minimise cost, and with `pareto` also p99."""
    return optuna.create_study(study_name=name, storage=open_storage(storage) if isinstance(storage, str) else storage,
                               directions=["minimize", "minimize"] if pareto else ["minimize"],
                               sampler=make_sampler(sampler, seed), load_if_exists=resume)


def record(trial: optuna.Trial, values: dict, ev, guard: float = 0.0) -> tuple[float, ...] | float:
    """Store an evaluation on its trial (values, verdict attributes, one constraint per
    clause: its shortfall plus `guard`, the relative margin the sampler is to treat as the
    least feasible one) and return the objective(s)."""
    TrialAttrs(values=values, **ev.attrs()).store(trial)
    for clause, v in zip(ev.clauses, ev.violations):
        trial.set_constraint(clause, v + guard)
    if len(trial.study.directions) == 2:
        return ev.cost, ev.p99_ms() or NO_P99_MS
    return ev.cost


def enqueue_baselines(study: optuna.Study, values_by_label: dict[str, dict]) -> None:
    """Enqueue each distinct baseline once (labels with identical values share a trial); on
    resume, only those not yet completed or waiting."""
    seen = {}
    for label, values in values_by_label.items():
        seen.setdefault(tuple(sorted(values.items(), key=lambda kv: kv[0])), []).append(label)
    have = {tuple(TrialAttrs.of(t).baselines) for t in study.trials
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.WAITING,
                           optuna.trial.TrialState.RUNNING)}
    for key, labels in seen.items():
        if tuple(labels) not in have:
            study.enqueue_trial(dict(key), user_attrs=TrialAttrs(baselines=labels).as_user_attrs())


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's completed trials that this search evaluated (a warm start's prior trials
    only inform the sampler: tuner.optimize.warm_start)."""
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and TrialAttrs.of(t).prior is None]


def run_study(backend, space: Space, serve_config: dict, *, trials: int, storage: str | RDBStorage, name: str,
              seed: int = 0, sampler: str = "tpe", pareto: bool = False, named_baselines: dict[str, dict] | None = None,
              factors: dict[str, float] | None = None, guard: float = 0.0, time_budget_s: float | None = None,
              patience: int | None = None, resume: bool = False,
              prior: list[optuna.trial.FrozenTrial] | None = None,
              on_trial: Callable[[optuna.trial.FrozenTrial, optuna.trial.FrozenTrial | None], None] = lambda t, b: None,
              ) -> optuna.Study:
    """Run (or continue) the study until `trials` completed trials, the time budget, or
    `patience` trials without a better feasible cost. `factors` correct the backend's
    measured clause values (the hybrid search's simulator correction), `guard` tightens the
    constraints the sampler reads (`record`); a new study starts
    from the `prior` trials of an earlier search (tuner.optimize.warm_start)."""
    study = open_study(storage, name, seed=seed, sampler=sampler, pareto=pareto, resume=resume)
    if not study.trials:
        study.add_trials(prior or [])
        enqueue_baselines(study, baselines(space, serve_config, named_baselines))
    if any(TrialAttrs.of(t).prior for t in study.trials):
        study.sampler = make_sampler(sampler, seed, warm=True)
    left = max(0, trials - len(completed(study)))
    since = {"best": best_trial(study), "stale": 0}

    def objective(trial: optuna.Trial):
        values = repair(suggest(trial, space), space, serve_config)
        ev = backend.evaluate(apply(serve_config, values), values, f"trial-{trial.number:04d}")
        return record(trial, values, replace(ev, factors=factors) if factors else ev, guard)

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


def cost_of(trial: optuna.trial.FrozenTrial) -> float:
    """A completed trial's cost per hour (its first objective)."""
    return trial.values[0]


def rank(trial: optuna.trial.FrozenTrial) -> tuple:
    """Cheapest first; at equal cost (many settings idle at the same replica floor) the lower
    p99, which meets the target with more room."""
    return round(cost_of(trial), 9), TrialAttrs.of(trial).p99_ms or NO_P99_MS, trial.number


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The cheapest completed trial that met the target everywhere."""
    ok = [t for t in completed(study) if TrialAttrs.of(t).feasible]
    return min(ok, key=rank) if ok else None


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible trials no other feasible trial beats on both cost and p99, cheapest first."""
    ok = [(t, a.p99_ms) for t in completed(study) if (a := TrialAttrs.of(t)).feasible and a.p99_ms is not None]
    front = [t for t, p in ok if not any(cost_of(o) <= cost_of(t) and q <= p and (cost_of(o), q) != (cost_of(t), p)
                                         for o, q in ok)]
    return sorted(front, key=lambda t: (cost_of(t), t.number))
