"""The search-efficiency benchmark's core (scripts/bench_search.py) on a tiny grid: the table
answers as the simulator does, curves only fall, the optimum is the cheapest feasible point,
and trials to reach are counted right."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tuner.optimize.space import Space, apply, repair

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_search", REPO / "scripts" / "bench_search.py")
bs = sys.modules["bench_search"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

CONFIG = yaml.safe_load((REPO / "target_app" / "serve_config.yaml").read_text())
TINY = Space.model_validate({"serve": {
    "VectorSearch": {"num_replicas": {"type": "categorical", "choices": [1, 2]}},
    "MultiLoRAModel": {"min_replicas": {"type": "categorical", "choices": [1, 2]},
                       "max_models_per_replica": {"type": "categorical", "choices": [2, 16]}}}})
BENCH = bs.Bench(target="p99<800ms,p99[/v1/completions]<400ms", duration_s=30, warmup_s=5)


@pytest.fixture(scope="module")
def tiny():
    """The tiny grid simulated, its table rebuilt as Evaluations, and the simulator backend."""
    backend = bs.sim_backend(BENCH, CONFIG)
    points = bs.grid_points(TINY)
    table = bs.evaluations(bs.simulate_grid(backend, TINY, CONFIG, points), CONFIG)
    return backend, points, table


def test_the_table_answers_what_the_simulator_answers(tiny):
    backend, points, table = tiny
    assert len(points) == 8
    values = repair(points[-1], TINY, CONFIG)
    direct = backend.evaluate(apply(CONFIG, values), values)
    tabled = bs.TableBackend(table).evaluate(apply(CONFIG, values), values, "trial-0000")
    assert (tabled.cost, tabled.violations, tabled.feasible) == (direct.cost, direct.violations, direct.feasible)


def test_the_optimum_is_the_cheapest_feasible_grid_point_and_curves_only_fall(tiny):
    _, points, table = tiny
    summary, grid = bs.grid_summary(points, TINY, CONFIG, table)
    feasible = [ev.cost for ev in table.values() if ev.feasible]
    assert summary["optimum_cost_per_hour"] == (min(feasible) if feasible else None)
    assert summary["points"] == len(grid) == 8
    searches = bs.run_searches(bs.TableBackend(table), TINY, CONFIG, ["tpe", "random"], [0, 1], trials=6)
    for runs in searches.values():
        for run in runs.values():
            curve = run["curve"]
            assert len(curve) == 6
            seen = [c for c in curve if c is not None]
            assert curve[len(curve) - len(seen):] == seen  # once feasible, always a best
            assert all(b <= a for a, b in zip(seen, seen[1:]))


def test_trials_to_reach_counts_to_the_first_best_within_five_percent():
    assert bs.trials_to_reach([None, 0.50, 0.40, 0.30], 0.30) == 4
    assert bs.trials_to_reach([None, 0.33, 0.315, 0.30], 0.30) == 3  # 5 % above is within
    assert bs.trials_to_reach([0.40, 0.40], 0.30) is None
    assert bs.trials_to_reach([None, None], 0.30) is None
    assert bs.median_reach([3, None, 5]) == 5 and math.isinf(bs.median_reach([None, None, 4]))
    verdict = bs.goal({"tpe": [10, 12, 14], "random": [20, 30, 40]})
    assert not verdict["met"] and verdict["ratio"] == pytest.approx(0.4)  # more than a quarter
    assert bs.goal({"tpe": [5, 7, 9], "random": [20, 30, 40]})["met"]
    assert not bs.goal({"tpe": [5, None, 7], "random": [20, 30, 40]})["met"]


def test_the_curve_of_a_hand_made_study_keeps_the_best_feasible_cost():
    study = optuna.create_study()
    dist = {"x": optuna.distributions.CategoricalDistribution([1])}
    for value, feasible in [(0.5, False), (0.6, True), (0.4, False), (0.55, True), (0.7, True), (0.3, True)]:
        study.add_trial(optuna.trial.create_trial(params={"x": 1}, distributions=dist, value=value,
                                                  user_attrs={"feasible": feasible}))
    curve = bs.best_curve(study)
    assert curve == [None, 0.6, 0.6, 0.55, 0.55, 0.3]
    assert bs.trials_to_reach(curve, 0.3) == 6 and bs.trials_to_reach(curve, 0.53) == 4
