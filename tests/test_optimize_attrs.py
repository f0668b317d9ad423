"""The typed view of a trial's user attributes: what it writes is what it reads, through the
study storage too; a missing attribute reads as the `.get` reads before it did; a study.db
written under the literal keys reads right; the hybrid summary built from it."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pydantic
import pytest

from tuner.optimize.attrs import TrialAttrs
from tuner.optimize.hybrid import HybridOutcome, hybrid_summary

optuna.logging.set_verbosity(optuna.logging.WARNING)

FULL = TrialAttrs(values={"serve.M.num_replicas": 2, "serve.M.target_ongoing_requests": 1.5},
                  violations=[-0.25, 0.1], feasible=False, p99_ms=812.5, statuses=["passed", "unmeasured"],
                  clause_values=[{"p99<500ms": 0.41, "errors<1%": None}], noise=0.04, baselines=["starting config"],
                  copied_from="sim-0:3", prior="runs/old:sim-0:5", label="real-001", round=1, sim_trial="sim-1:7", sim_cost=0.42,
                  sim_p99_ms=640.0, sim_clause_values=[{"p99<500ms": 0.33}], margin=-0.1, noise_used=0.15,
                  passed=False, real_runs=1, runs={"burst": "/runs/opt/real/real-001/burst"})


def one_trial(storage, attrs: TrialAttrs) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    attrs.store(trial)
    return study.tell(trial, 1.0)


@pytest.mark.parametrize("storage", [None, "sqlite"])
def test_round_trip(storage, tmp_path):
    """Every field comes back as written, in memory and through SQLite's JSON."""
    url = f"sqlite:///{tmp_path}/s.db" if storage else None
    frozen = one_trial(url, FULL)
    if url:
        frozen = optuna.load_study(study_name=None, storage=url).trials[0]
    assert TrialAttrs.of(frozen) == FULL
    assert set(frozen.user_attrs) == set(TrialAttrs.model_fields)


def test_missing_keys_read_as_before():
    """A trial without attributes (an enqueued baseline's, a study from an older version) reads
    as the string reads did: None, or an empty list where they defaulted to one."""
    t = optuna.trial.create_trial(value=1.0)
    a = TrialAttrs.of(t)
    before = {"values": t.user_attrs.get("values"), "violations": t.user_attrs.get("violations", []),
              "feasible": t.user_attrs.get("feasible"), "p99_ms": t.user_attrs.get("p99_ms"),
              "statuses": t.user_attrs.get("statuses", []), "clause_values": t.user_attrs.get("clause_values", []),
              "noise": t.user_attrs.get("noise"), "baselines": t.user_attrs.get("baselines", []),
              "copied_from": t.user_attrs.get("copied_from"), "prior": t.user_attrs.get("prior"),
              "label": t.user_attrs.get("label"),
              "round": t.user_attrs.get("round"), "sim_trial": t.user_attrs.get("sim_trial"),
              "sim_cost": t.user_attrs.get("sim_cost"), "sim_p99_ms": t.user_attrs.get("sim_p99_ms"),
              "sim_clause_values": t.user_attrs.get("sim_clause_values", []), "margin": t.user_attrs.get("margin"),
              "noise_used": t.user_attrs.get("noise_used"), "passed": t.user_attrs.get("passed"),
              "real_runs": t.user_attrs.get("real_runs"), "runs": t.user_attrs.get("runs", {})}
    assert a.model_dump() == before
    assert a.as_user_attrs() == {}


def test_study_db_with_literal_keys(tmp_path):
    """A study.db whose trials were given their attributes by name reads right, a key the view
    does not know is ignored, and the view writes under those very names."""
    url = f"sqlite:///{tmp_path}/old.db"
    study = optuna.create_study(study_name="real", storage=url)
    trial = study.ask()
    for key, value in {"values": {"serve.M.num_replicas": 3}, "violations": [-0.2], "feasible": True,
                       "p99_ms": 400.0, "statuses": ["passed"], "clause_values": [{"p99<500ms": 0.4}], "noise": None,
                       "label": "real-000", "round": 0, "sim_trial": "sim-0:4", "sim_cost": 0.3, "sim_p99_ms": 350.0,
                       "sim_clause_values": [{"p99<500ms": 0.35}], "baselines": [], "margin": 0.2,
                       "noise_used": 0.15, "passed": True, "some_later_key": 1}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.5)
    stored = optuna.load_study(study_name="real", storage=url).trials[0]
    a = TrialAttrs.of(stored)
    assert (a.values, a.feasible, a.p99_ms, a.passed, a.round, a.label) == ({"serve.M.num_replicas": 3}, True, 400.0,
                                                                             True, 0, "real-000")
    assert (a.clause_values, a.sim_clause_values, a.baselines, a.noise, a.copied_from) == (
        [{"p99<500ms": 0.4}], [{"p99<500ms": 0.35}], [], None, None)
    assert one_trial(None, a).user_attrs == {k: v for k, v in stored.user_attrs.items() if k != "some_later_key"}


def test_partial_write_keeps_the_rest():
    """An enqueued baseline's labels survive the evaluation's write; only the fields given are set."""
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs=TrialAttrs(baselines=["Ray defaults"]).as_user_attrs())
    trial = study.ask()
    TrialAttrs(values={}, feasible=True, p99_ms=None).store(trial)
    frozen = study.tell(trial, 1.0)
    assert frozen.user_attrs == {"baselines": ["Ray defaults"], "values": {}, "feasible": True, "p99_ms": None}


def test_unknown_field_is_refused_on_write():
    with pytest.raises(pydantic.ValidationError):
        TrialAttrs(p99=1.0)


def test_hybrid_summary_as_built_before(tmp_path):
    """The hybrid summary is the dict the CLI built by hand from the attributes, with each
    candidate's trial folders now recorded relative to the search's folder."""
    real = optuna.create_study(study_name="real")
    for attrs in (TrialAttrs(baselines=["starting config"], feasible=True, passed=True, p99_ms=300.0),
                  FULL.model_copy(update={"baselines": [], "prior": None}),
                  TrialAttrs(label="real-002", round=1, feasible=True, passed=True, p99_ms=450.0, sim_cost=0.2,
                             margin=0.1, noise_used=0.05, baselines=[],
                             runs={"burst": str(tmp_path / "real" / "real-002" / "burst")})):
        real.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs.as_user_attrs()))
    real.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    outcome = HybridOutcome(rounds=[optuna.create_study()] * 2, real=real, best=real.trials[2],
                            reason="a candidate passed on the real stack", factors={"p99<500ms": 1.3})
    done = [t for t in real.trials if t.state == optuna.trial.TrialState.COMPLETE]
    candidates = [t for t in done if not t.user_attrs.get("baselines")]
    before = {"reason": outcome.reason, "rounds": len(outcome.rounds),
              "real_candidates": len(candidates),
              "real_runs": None,  # not every run recorded its count (a summary written before they did)
              "sim_winners_failed": sum(not t.user_attrs.get("passed") for t in candidates),
              "correction": outcome.factors, "noise_floor": 0.15, "real_repeat": 2,
              "verified": [{"trial": t.number, "label": t.user_attrs.get("label"),
                            "round": t.user_attrs.get("round"), "cost_per_hour": t.values[0],
                            "sim_cost_per_hour": t.user_attrs.get("sim_cost"),
                            "p99_ms": t.user_attrs.get("p99_ms"),
                            "sim_p99_ms": t.user_attrs.get("sim_p99_ms"),
                            "met": t.user_attrs.get("feasible"), "margin": t.user_attrs.get("margin"),
                            "noise": t.user_attrs.get("noise_used"),
                            "passed": t.user_attrs.get("passed"), "real_runs": t.user_attrs.get("real_runs"),
                            "runs": {k: os.path.relpath(v, tmp_path) for k, v in t.user_attrs.get("runs", {}).items()}}
                           for t in candidates]}
    summary = hybrid_summary(outcome, noise_floor=0.15, real_repeat=2, folder=tmp_path)
    assert summary["verified"][1]["runs"] == {"burst": "real/real-002/burst"}
    assert summary == before and summary["real_candidates"] == 2 and summary["sim_winners_failed"] == 1


def test_hybrid_summary_counts_the_real_runs_each_verification_took():
    real = optuna.create_study(study_name="real")
    for attrs in (TrialAttrs(baselines=["starting config"], real_runs=1),
                  TrialAttrs(label="real-001", passed=False, real_runs=1),
                  TrialAttrs(label="real-002", passed=True, real_runs=2)):
        real.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs.as_user_attrs()))
    outcome = HybridOutcome(rounds=[], real=real, best=real.trials[2], reason="", factors={})
    summary = hybrid_summary(outcome, noise_floor=0.15, real_repeat=2, folder=Path("."))
    assert summary["real_runs"] == 4 and [v["real_runs"] for v in summary["verified"]] == [1, 2]
