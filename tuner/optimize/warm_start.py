"""Warm-starting a search from an earlier one (`tuner optimize --warm-start FOLDER`).

A search starts cold: TPE draws its first trials at random and GP its first ten, and a
cheapest-feasible configuration is a conjunction of choices (BENCHMARKS.md, "Search
efficiency": 2.8 % of the benchmark's grid) that random draws rarely hit. An earlier search
of the same app (a simulated study before a real one, yesterday's search before today's, a
search at another target) already knows where the cheap feasible region lies. Optuna's
samplers read every completed trial of their study, so the earlier trials are added to the
new study before its first trial (Optuna's documented way: `Study.add_trials`) and the
samplers model them from the start.

What is taken: every completed trial an earlier search evaluated, in every study of its
storage (a hybrid's simulated rounds and its real runs), not the copies a hybrid round carries
over nor that search's own prior trials. Where one configuration was evaluated more than once,
a real run wins over a simulated one, then the later. Each is judged again against this
search's target from the clause values it stored (a clause the earlier target measured under
the same name, e.g. `p99`); one without a value for every clause, or whose parameters do not
fit this space, is left out.

The added trials are marked `prior`: they count towards no budget, are never the answer and
are not in trials.csv, because another backend, scenario or day measured them.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from tuner.errors import UsageError
from tuner.optimize.attrs import StudyTrial, TrialAttrs
from tuner.optimize.evaluate import judge
from tuner.optimize.space import Space, distributions
from tuner.optimize.study import NO_P99_MS, completed
from tuner.target import Clause, parse_target

OPTION = "--warm-start"


def source_storage(folder: Path) -> str:
    """The storage URL of the search that wrote `folder`: its summary's, else its study.db."""
    summary, db = folder / "summary.json", folder / "study.db"
    if summary.is_file():
        try:
            url = json.loads(summary.read_text()).get("storage")
        except (json.JSONDecodeError, AttributeError):
            raise UsageError(f"{OPTION} {folder}: its summary.json is not a search's summary") from None
        if url:
            return url
    if db.is_file():
        return f"sqlite:///{db.resolve()}"
    raise UsageError(f"{OPTION} {folder}: no earlier search there (neither summary.json nor study.db)")


def _source_trials(url: str, folder: Path) -> list[tuple[str, StudyTrial]]:
    """Each study's evaluated trials, as (study name, trial), real studies last so they win."""
    try:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
        names = optuna.study.get_all_study_names(storage)
    except Exception as e:  # an unreadable file or an unreachable database, whatever the driver raises
        raise UsageError(f"{OPTION} {folder}: cannot read its study: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    out = []
    for name in sorted(names, key=lambda n: (n == "real", n)):
        for t in completed(optuna.load_study(study_name=name, storage=storage)):
            if TrialAttrs.of(t).copied_from is None:
                out.append((name, t))
    return out


def _clause_values(stored: list[dict[str, float | None]], clauses: dict[str, Clause]) -> list[dict] | None:
    """The stored per-scenario values renamed to this target's clauses by what they measure;
    None when a clause has no value."""
    out = []
    for per_scenario in stored:
        by_name = {parse_target(text).clauses[0].name: v for text, v in per_scenario.items()}
        if any(c.name not in by_name for c in clauses.values()):
            return None
        out.append({text: by_name[c.name] for text, c in clauses.items()})
    return out or None


def prior_trials(trials: list[tuple[str, StudyTrial]], origin: str, space: Space, clauses: dict[str, Clause],
                 pareto: bool) -> list[StudyTrial]:
    """Evaluated trials, as (study name, trial) in the order later wins, made this study's
    prior trials: one per configuration that fits the space and was measured on every clause."""
    dists = distributions(space)
    latest: dict[tuple, StudyTrial] = {}
    for name, t in trials:
        a = TrialAttrs.of(t)
        values = _clause_values(a.clause_values, clauses)
        if values is None or not set(dists) <= set(t.params):
            continue
        texts, violations, feasible = judge(values, clauses, [s != "unmeasured" for s in a.statuses])
        cost = t.values[0]
        objective = [cost, a.p99_ms if a.p99_ms is not None else NO_P99_MS] if pareto else [cost]
        attrs = a.model_copy(update={"violations": violations, "feasible": feasible, "clause_values": values,
                                     "baselines": [], "runs": {}, "prior": f"{origin}:{name}:{t.number}"})
        try:  # Optuna checks each value against this space's distribution
            trial = optuna.trial.create_trial(
                params={k: t.params[k] for k in dists}, distributions=dists, values=objective,
                user_attrs=attrs.as_user_attrs(),
                system_attrs={f"constraints:{c}": v for c, v in zip(texts, violations)})
        except ValueError:  # a value outside this space's range or choices
            continue
        latest[tuple(sorted((k, t.params[k]) for k in dists))] = trial
    return list(latest.values())


def load_prior(folder: Path, space: Space, clauses: dict[str, Clause], pareto: bool) -> list[StudyTrial]:
    """The earlier search's trials as this study's prior trials (UsageError when none fits)."""
    trials = _source_trials(source_storage(folder), folder)
    prior = prior_trials(trials, str(folder), space, clauses, pareto)
    if not prior:
        raise UsageError(f"{OPTION} {folder}: none of its {len(trials)} trials fits this space and target "
                         "(a searched parameter missing or out of range, or a clause it never measured)")
    return prior
