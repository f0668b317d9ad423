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
