"""The simulator backend's evaluation: verdicts on every scenario, cost, constraint values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuner.optimize.evaluate import SimBackend
from tuner.optimize.space import apply
from tuner.plan import make_plan
from tuner.simulate import sim_setup

CONFIG = yaml.safe_load(open("target_app/serve_config.yaml"))
STEADY = (Path("scenarios/steady.py"), ("--rate", "3"))
BURST = (Path("scenarios/burst.py"), ("--rate", "2", "--burst-rps", "6"))


def backend(target: str, scenarios) -> SimBackend:
    plan = make_plan(config=None, serve_config=CONFIG, scenario=scenarios[0][0], target=target, duration_s=40,
                     out=Path("/nonexistent"), warmup_s=5, check=False)
    return SimBackend(plan, sim_setup("local"), scenarios)


@pytest.fixture(scope="module")
def both():
    return backend("p99<5s,error_rate<5%", [STEADY, BURST])


def test_a_configuration_is_judged_on_every_scenario(both):
    ev = both.evaluate(CONFIG)
    assert [r.scenario.name for r in ev.results] == ["steady", "burst"]
    assert ev.feasible and all(v <= 0 for v in ev.violations) and len(ev.violations) == 2
    assert ev.cost == max(r.cost.cost_per_hour for r in ev.results) > 0 and ev.p99_ms() > 0


def test_more_replicas_cost_more_and_an_impossible_target_is_a_positive_violation(both):
    bigger = apply(CONFIG, {"serve.MultiLoRAModel.min_replicas": 4, "serve.MultiLoRAModel.initial_replicas": 4})
    assert both.evaluate(bigger).cost > both.evaluate(CONFIG).cost
    strict = backend("p99<1ms", [STEADY])
    ev = strict.evaluate(CONFIG)
    assert not ev.feasible and ev.violations[0] > 0
    assert strict.evaluate(CONFIG).violations == ev.violations  # the same plan and seed: the same trial


def test_a_repeated_trial_reports_the_median_p99_it_was_judged_on():
    """Two repeats at 533 and 417 ms: the verdict and the tables both use their median (475),
    not the p99 of the repeat whose tables the result shows (the lower median, 417)."""
    from tests.test_result import trial
    from tuner.cost import Resources, trial_cost
    from tuner.optimize.evaluate import Evaluation
    from tuner.prices_file import load_prices
    from tuner.result import combine_repeats

    cost = trial_cost({"a/d": [(0.0, 1.0)]}, {"a/d": Resources(cpus=1)}, load_prices(None), 0.0, 60.0)
    runs = [trial(p99, p99, 0.0).model_copy(update={"cost": cost}) for p99 in (533.0, 417.0)]
    combined = combine_repeats(runs, ["repeat-1", "repeat-2"])
    assert combined.overall.latency_ms.p99 == 417.0  # the tables' run
    ev = Evaluation(serve_config={}, results=[combined])
    assert ev.p99_ms() == pytest.approx(475.0) == ev.attrs()["p99_ms"]
    assert Evaluation(serve_config={}, results=[runs[0]]).p99_ms() == 533.0  # one run: its own
