"""A typed view of what the search keeps on each Optuna trial (its user attributes).

The attributes are stored under their field names, so a study written before this view (or by
another version) reads the same. A field a trial never had reads as its default: None, or an
empty list for the list fields. Writing stores only the fields given, so a partial write (the
baselines' labels on an enqueued trial, the verification fields after an evaluation's) leaves
the others as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
from pydantic import BaseModel, ConfigDict, Field

# A study trial: one configuration evaluated (a load trial on each scenario), as Optuna records
# it. "Trial" alone means a load trial (tuner.plan.TrialPlan, one result.json).
StudyTrial = optuna.trial.FrozenTrial

class TrialAttrs(BaseModel):
    """One trial's attributes: the evaluation's (every backend), the baselines' labels, and, on
    a real trial of the hybrid search, its verification."""

    # A write naming a field the view lacks is a bug; a stored key it lacks is only ignored (`of`).
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The evaluation (`study.record`)
    values: dict[str, Any] | None = None  # every searched parameter as evaluated (repaired)
    violations: list[float] = Field(default_factory=list)  # each clause's worst shortfall (<= 0 holds)
    feasible: bool | None = None  # every clause held in every scenario
    p99_ms: float | None = None  # the worst scenario's client p99
    statuses: list[str] = Field(default_factory=list)  # each scenario's trial status
    clause_values: list[dict[str, float | None]] = Field(default_factory=list)  # per scenario, by clause text
    noise: float | None = None  # largest CV of a clause's value over repeats
    runs: dict[str, str] = Field(default_factory=dict)  # a real evaluation's trial folder per scenario stem
    # The baselines this trial is (labels sharing one configuration); empty for a sampled trial
    baselines: list[str] = Field(default_factory=list)
    # A hybrid round's copy of an earlier round's trial: "sim-k:number" of the original
    copied_from: str | None = None
    # A warm start's trial, evaluated by an earlier search: "folder:study:number" of the original
    prior: str | None = None
    # A real verification (hybrid search)
    label: str | None = None
    round: int | None = None
    sim_trial: str | None = None  # "sim-k:number" of the simulated trial verified
    sim_cost: float | None = None
    sim_p99_ms: float | None = None
    sim_clause_values: list[dict[str, float | None]] = Field(default_factory=list)
    margin: float | None = None  # smallest relative margin over the clauses
    noise_used: float | None = None  # the noise the margin had to exceed
    real_runs: int | None = None  # load trials the verification ran, over its scenarios
    passed: bool | None = None  # met with the margin above the noise

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial) -> TrialAttrs:
        """The view of a trial's stored attributes."""
        return cls.model_validate({k: v for k, v in trial.user_attrs.items() if k in cls.model_fields})

    def runs_under(self, folder: Path) -> dict[str, str]:
        """The trial folders relative to `folder` (the search's), as summary.json records them so
        the folder can be moved whole."""
        return {stem: Path(os.path.relpath(run, folder.resolve())).as_posix() for stem, run in self.runs.items()}

    def as_user_attrs(self) -> dict[str, Any]:
        """The fields given (or read), under their storage keys: for `enqueue_trial` and `create_trial`."""
        return self.model_dump(exclude_unset=True)

    def store(self, trial: optuna.Trial) -> None:
        """Set the fields given on a running trial."""
        for key, value in self.as_user_attrs().items():
            trial.set_user_attr(key, value)
