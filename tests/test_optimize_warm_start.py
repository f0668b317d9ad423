"""A warm start (`tuner optimize --warm-start`): an earlier search's trials join a new study,
judged against the new target, and inform the sampler only: no budget, no answer, no row."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from tests.test_optimize_study import CONFIG, KEY, OPT, SPACE, backend
from tuner.errors import UsageError
from tuner.optimize.attrs import TrialAttrs
from tuner.optimize.output import trials_frame
from tuner.optimize.space import Space
from tuner.optimize import study as study_module
from tuner.optimize.study import best_trial, completed, run_study
from tuner.optimize.warm_start import load_prior
from tuner.target import parse_target


def clauses(text: str) -> dict:
    return {c.text: c for c in parse_target(text).clauses}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An earlier search at a loose target: every replica count evaluated once or more."""
    folder = tmp_path_factory.mktemp("earlier")
    study = run_study(backend("p99<60s"), SPACE, CONFIG, trials=8, storage=f"sqlite:///{folder}/study.db", name="tuner",
                      seed=3, sampler="random")
    p99 = {}
    for t in completed(study):
        p99[TrialAttrs.of(t).values[KEY]] = TrialAttrs.of(t).p99_ms
    return folder, p99


def test_prior_trials_are_judged_again_against_the_new_target_one_per_configuration(source):
    folder, p99 = source
    bound = sorted(p99.values())[len(p99) // 2]  # some replica counts meet it, some do not
    prior = load_prior(folder, SPACE, clauses(f"p99<{bound:.3f}ms"), pareto=False)
    assert sorted(t.params[KEY] for t in prior) == sorted(p99)  # each configuration once
    for t in prior:
        a = TrialAttrs.of(t)
        assert a.prior.startswith(f"{folder}:tuner:")
        assert a.feasible == (p99[t.params[KEY]] < bound)
        assert list(a.clause_values[0]) == [f"p99<{bound:.3f}ms"]
        assert t.system_attrs == {f"constraints:p99<{bound:.3f}ms": a.violations[0]}
        assert not a.baselines


def test_prior_trials_inform_the_sampler_but_count_for_no_budget_answer_or_row(source, tmp_path):
    folder, p99 = source
    prior = load_prior(folder, SPACE, clauses("p99<60s"), pareto=False)
    study = run_study(backend("p99<60s"), SPACE, CONFIG, trials=3, storage=f"sqlite:///{tmp_path}/s.db", name="t",
                      seed=1, prior=prior)
    own = completed(study)
    assert len(own) == 3 and all(TrialAttrs.of(t).prior is None for t in own)
    # the sampler's view: every prior trial is a completed trial of the study, constraints and all
    seen = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if TrialAttrs.of(t).prior]
    assert len(seen) == len(prior) and all(t.system_attrs for t in seen)
    assert TrialAttrs.of(best_trial(study)).prior is None
    assert len(trials_frame([("sim", study)])) == 3
    # TPE models the best quarter as good once it starts from prior trials, a tenth otherwise
    assert study.sampler._gamma is study_module._quarter
    cold = run_study(backend("p99<60s"), SPACE, CONFIG, trials=1, storage=f"sqlite:///{tmp_path}/c.db", name="c")
    assert cold.sampler._gamma is not study_module._quarter
    # `auto` is GP from nothing and the warm TPE from prior trials
    auto = dict(trials=1, sampler="auto", seed=1)
    assert isinstance(run_study(backend("p99<60s"), SPACE, CONFIG, storage=f"sqlite:///{tmp_path}/a.db", name="a",
                                **auto).sampler, optuna.samplers.GPSampler)
    warm = run_study(backend("p99<60s"), SPACE, CONFIG, storage=f"sqlite:///{tmp_path}/w.db", name="w", prior=prior, **auto)
    assert isinstance(warm.sampler, optuna.samplers.TPESampler) and warm.sampler._gamma is study_module._quarter


def test_a_source_that_does_not_fit_the_space_or_the_target_is_a_usage_error(source, tmp_path):
    folder, _ = source
    other = Space.model_validate({"serve": {"MultiLoRAModel": {"num_replicas": {"type": "int", "low": 5, "high": 8}}}})
    with pytest.raises(UsageError, match="none of its .* trials fits this space and target"):
        load_prior(folder, other, clauses("p99<60s"), pareto=False)
    with pytest.raises(UsageError, match="none of its"):  # a clause the earlier search never measured
        load_prior(folder, SPACE, clauses("p99<60s,error_rate<1%"), pareto=False)
    with pytest.raises(UsageError, match="no earlier search there"):
        load_prior(tmp_path, SPACE, clauses("p99<60s"), pareto=False)
    (tmp_path / "summary.json").write_text("[1, 2")
    with pytest.raises(UsageError, match="not a search's summary"):
        load_prior(tmp_path, SPACE, clauses("p99<60s"), pareto=False)
    (tmp_path / "summary.json").unlink()
    (tmp_path / "study.db").write_text("not a database")
    with pytest.raises(UsageError, match="cannot read its study"):
        load_prior(tmp_path, SPACE, clauses("p99<60s"), pareto=False)


def test_optimize_warm_started_from_an_earlier_search_runs_its_own_budget(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    r = subprocess.run([*OPT, "--target", "p99<2s", "--out", str(first), "--trials", "4", "--no-report"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    r = subprocess.run([*OPT, "--target", "p99<1s", "--out", str(second), "--trials", "3", "--no-report",
                        "--warm-start", str(first)], capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    summary = json.loads((second / "summary.json").read_text())
    assert summary["trials"] == {"sim": 3} and summary["prior_trials"] >= 1
    # the default sampler, auto: GP from nothing, TPE once warm-started
    assert json.loads((first / "summary.json").read_text())["sampler"] == "gp" and summary["sampler"] == "tpe"
    assert f"warm start: the sampler began from {summary['prior_trials']} trial(s)" in r.stdout
    assert len(pd.read_csv(second / "trials.csv")) == 3
    study = optuna.load_study(study_name="tuner", storage=f"sqlite:///{second}/study.db")
    assert sum(TrialAttrs.of(t).prior is not None for t in study.trials) >= 1


def test_a_missing_warm_start_folder_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tuner.cli", "optimize", "--backend", "sim", "--target", "p99<1s",
                        "--out", str(tmp_path / "o"), "--warm-start", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--warm-start" in lines[0] and "no earlier search" in lines[0], r.stderr
