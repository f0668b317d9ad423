"""The cost model: step integrals, per-replica resources from a Serve config, hand-computed
trial costs (replicas and nodes) and the price table with its overrides."""

from __future__ import annotations

import pytest
import yaml

from tuner.cost import GIB, Prices, Resources, deployment_resources, step_integral, trial_cost
from tuner.errors import UsageError
from tuner.paths import PRICES
from tuner.prices_file import load_prices


# ---- step_integral ----

@pytest.mark.parametrize("samples,t0,t1,expected", [
    ([(0.0, 2.0)], 0.0, 10.0, 20.0),                       # one sample at t0 covers the window
    ([(5.0, 2.0)], 0.0, 10.0, 20.0),                       # the first value also covers the time before it
    ([(-50.0, 3.0)], 0.0, 10.0, 30.0),                     # one sample long before t0
    ([(50.0, 3.0)], 0.0, 10.0, 30.0),                      # one sample after t1: still the only value
    ([(0.0, 1.0), (4.0, 3.0)], 0.0, 10.0, 4.0 + 18.0),     # changes mid-window
    ([(0.0, 1.0), (4.0, 3.0), (7.5, 0.0)], 0.0, 10.0, 4.0 + 10.5),
    ([(-10.0, 5.0), (-2.0, 1.0), (3.0, 2.0), (12.0, 100.0)], 0.0, 10.0, 3.0 + 14.0),  # before t0, after t1
    ([(3.0, 2.0), (-2.0, 1.0), (12.0, 100.0), (-10.0, 5.0)], 0.0, 10.0, 17.0),       # order does not matter
    ([(100.0, 1.0), (104.0, 2.0)], 102.0, 106.0, 2.0 + 4.0),
    ([(0.0, 0.5)], 0.0, 3600.0, 1800.0),
])
def test_step_integral(samples, t0, t1, expected):
    assert step_integral(samples, t0, t1) == pytest.approx(expected)


@pytest.mark.parametrize("samples,t0,t1", [
    ([], 0.0, 10.0),
    ((), 0.0, 10.0),
    ([(0.0, 2.0)], 5.0, 5.0),
    ([(0.0, 2.0)], 10.0, 0.0),
])
def test_step_integral_is_zero_without_samples_or_window(samples, t0, t1):
    assert step_integral(samples, t0, t1) == 0.0


# ---- deployment_resources ----

SERVE_CONFIG = {
    "applications": [
        {"name": "rag", "deployments": [
            {"name": "Plain"},                                          # Serve's default: 1 CPU
            {"name": "Small", "ray_actor_options": {"num_cpus": 0.25}},
            {"name": "Gpu", "ray_actor_options": {"num_cpus": 2, "num_gpus": 1, "memory": 4 * GIB}},
            {"name": "NoCpu", "ray_actor_options": {"num_cpus": 0, "num_gpus": 0.5}},
            {"name": "Empty", "ray_actor_options": {}},
        ]},
        {"name": "lora", "deployments": [
            {"name": "Model", "ray_actor_options": {"memory": 512 * 2**20}},
        ]},
        {"name": "nothing"},
    ],
}


def test_deployment_resources():
    got = deployment_resources(SERVE_CONFIG)
    assert got == {
        "rag/Plain": Resources(cpus=1.0, gpus=0.0, memory_gib=0.0),
        "rag/Small": Resources(cpus=0.25),
        "rag/Gpu": Resources(cpus=2.0, gpus=1.0, memory_gib=4.0),
        "rag/NoCpu": Resources(cpus=0.0, gpus=0.5),
        "rag/Empty": Resources(cpus=1.0),
        "lora/Model": Resources(cpus=1.0, memory_gib=0.5),
    }


def test_deployment_resources_of_an_empty_config():
    assert deployment_resources({}) == {}
    assert deployment_resources({"applications": None}) == {}


# ---- trial_cost ----

def prices(**kw) -> Prices:
    return Prices(**({"cpu_hour": 0.0, "gpu_hour": 0.0, "memory_gib_hour": 0.0} | kw))


def test_cpu_cost_hand_computed():
    # 2 replicas x 0.5 CPU for an hour at 0.04 per CPU-hour
    c = trial_cost({"a/d": [(0.0, 2.0)]}, {"a/d": Resources(cpus=0.5)}, prices(cpu_hour=0.04), 0.0, 3600.0)
    d = c.deployments["a/d"]
    assert d.replica_seconds == pytest.approx(7200.0) and d.cpu_seconds == pytest.approx(3600.0)
    assert d.gpu_seconds == 0.0 and d.memory_gib_seconds == 0.0
    assert d.cost == pytest.approx(0.04)
    assert c.replica_cost == pytest.approx(0.04) and c.cost == pytest.approx(0.04)
    assert c.cost_per_hour == pytest.approx(0.04)
    assert c.window_s == 3600.0 and c.replica_seconds == pytest.approx(7200.0)
    assert c.node_cost is None and c.node_seconds == {}


def test_gpu_and_memory_terms():
    # one replica (1 CPU, 1 GPU, 4 GiB) for half an hour
    res = {"a/g": Resources(cpus=1.0, gpus=1.0, memory_gib=4.0)}
    p = prices(cpu_hour=0.04, gpu_hour=3.0, memory_gib_hour=0.005, currency="EUR")
    c = trial_cost({"a/g": [(0.0, 1.0)]}, res, p, 0.0, 1800.0)
    d = c.deployments["a/g"]
    assert (d.cpu_seconds, d.gpu_seconds, d.memory_gib_seconds) == pytest.approx((1800.0, 1800.0, 7200.0))
    expected = (1800 * 0.04 + 1800 * 3.0 + 7200 * 0.005) / 3600  # 1.53
    assert d.cost == pytest.approx(expected) and c.cost == pytest.approx(1.53)
    assert c.cost_per_hour == pytest.approx(3.06)
    assert c.currency == "EUR"


def test_replicas_changing_in_the_window_and_several_deployments():
    replicas = {"a/x": [(0.0, 1.0), (600.0, 3.0)], "a/y": [(-100.0, 2.0)]}
    res = {"a/x": Resources(cpus=1.0), "a/y": Resources(cpus=0.25)}
    c = trial_cost(replicas, res, prices(cpu_hour=0.36), 0.0, 1200.0)
    assert c.deployments["a/x"].replica_seconds == pytest.approx(600 + 1800)
    assert c.deployments["a/y"].cpu_seconds == pytest.approx(2 * 0.25 * 1200)
    assert c.deployments["a/x"].cost == pytest.approx(2400 * 0.36 / 3600)
    assert c.replica_cost == pytest.approx((2400 + 600) * 0.36 / 3600)
    assert c.replica_seconds == pytest.approx(2400 + 2400)


def test_missing_resources_or_timeline():
    # no resources: Serve's default replica (1 CPU); no timeline: no replica-seconds
    c = trial_cost({"a/unknown": [(0.0, 1.0)]}, {"a/idle": Resources(cpus=4.0)}, prices(cpu_hour=1.0), 0.0, 3600.0)
    assert sorted(c.deployments) == ["a/idle", "a/unknown"]
    assert c.deployments["a/unknown"].cost == pytest.approx(1.0)
    assert c.deployments["a/idle"].replica_seconds == 0.0 and c.deployments["a/idle"].cost == 0.0


def test_priced_nodes_are_what_is_paid():
    p = prices(cpu_hour=0.04, node_hour={"cpu-worker": 0.5, "gpu-worker": 4.0})
    nodes = {"cpu-worker": [(0.0, 2.0)], "gpu-worker": [(0.0, 0.0), (1800.0, 1.0)]}
    c = trial_cost({"a/d": [(0.0, 2.0)]}, {"a/d": Resources(cpus=0.5)}, p, 0.0, 3600.0, nodes=nodes)
    assert c.node_seconds == pytest.approx({"cpu-worker": 7200.0, "gpu-worker": 1800.0})
    assert c.node_cost == pytest.approx(2 * 0.5 + 0.5 * 4.0)
    assert c.cost == pytest.approx(3.0) and c.cost_per_hour == pytest.approx(3.0)
    assert c.replica_cost == pytest.approx(0.04)  # still reported, for comparison


def test_an_unpriced_node_type_falls_back_to_replicas():
    p = prices(cpu_hour=0.04, node_hour={"cpu-worker": 0.5})
    nodes = {"cpu-worker": [(0.0, 2.0)], "mystery": [(0.0, 1.0)]}
    c = trial_cost({"a/d": [(0.0, 2.0)]}, {"a/d": Resources(cpus=0.5)}, p, 0.0, 3600.0, nodes=nodes)
    assert c.node_cost is None
    assert c.cost == pytest.approx(c.replica_cost) and c.cost == pytest.approx(0.04)
    assert c.node_seconds == pytest.approx({"cpu-worker": 7200.0, "mystery": 3600.0})


def test_cost_per_hour_scales_to_an_hour():
    c = trial_cost({"a/d": [(0.0, 1.0)]}, {"a/d": Resources(cpus=1.0)}, prices(cpu_hour=0.06), 100.0, 400.0)
    assert c.window_s == 300.0
    assert c.cost == pytest.approx(0.06 * 300 / 3600)
    assert c.cost_per_hour == pytest.approx(0.06)


def test_an_empty_window_costs_nothing():
    c = trial_cost({"a/d": [(0.0, 1.0)]}, {"a/d": Resources()}, prices(cpu_hour=1.0), 10.0, 10.0)
    assert c.window_s == 0.0 and c.cost == 0.0 and c.cost_per_hour == 0.0


# ---- load_prices ----

def test_default_prices_load():
    p = load_prices()
    raw = yaml.safe_load(PRICES.read_text())
    assert isinstance(p, Prices)
    assert (p.currency, p.cpu_hour, p.gpu_hour, p.memory_gib_hour, p.node_hour) == (
        raw["currency"], raw["cpu_hour"], raw["gpu_hour"], raw["memory_gib_hour"], raw["node_hour"])
    assert p.cpu_hour > 0 and p.gpu_hour > p.cpu_hour


def test_an_override_changes_only_its_keys(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("cpu_hour: 0.1\nnode_hour: {big: 2.5}\n")
    default, p = load_prices(), load_prices(f)
    assert p.cpu_hour == 0.1 and p.node_hour == {"big": 2.5}
    assert (p.currency, p.gpu_hour, p.memory_gib_hour) == (default.currency, default.gpu_hour, default.memory_gib_hour)


@pytest.mark.parametrize("text,names", [
    ("gpu_hour: -1\n", "gpu_hour"),
    ("cpu_hour: -0.01\n", "cpu_hour"),
    ("memory_gib_hour: -3\n", "memory_gib_hour"),
    ("cpu_hour: cheap\n", "cpu_hour"),
    ("cpu_hours: 1\n", "cpu_hours"),  # a typo: unknown keys are refused
])
def test_bad_override_is_a_usage_error_naming_the_field(tmp_path, text, names):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(UsageError) as info:
        load_prices(f)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert msg.startswith(f"--prices {f}: {names}") and "\n" not in msg


@pytest.mark.parametrize("text,what", [
    ("- 1\n- 2\n", "must be a mapping of prices"),
    ("just a string\n", "must be a mapping of prices"),
    ("cpu_hour: [\n", "not YAML at line 2: expected the node content, but found '<stream end>'"),
])
def test_override_file_must_be_a_yaml_mapping(tmp_path, text, what):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(UsageError) as info:
        load_prices(f)
    assert str(info.value) == f"--prices {f}: {what}"


def test_missing_override_file(tmp_path):
    with pytest.raises(UsageError) as info:
        load_prices(tmp_path / "nope.yaml")
    assert str(info.value) == f"--prices {tmp_path / 'nope.yaml'}: does not exist" and info.value.exit_code == 2


def test_negative_node_price_is_a_usage_error(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("node_hour: {cpu-worker: -5}\n")
    with pytest.raises(UsageError, match="node_hour"):
        load_prices(f)


def test_deployment_resources_of_an_unnamed_application():
    cfg = {"applications": [{"route_prefix": "/", "import_path": "m:a", "deployments": [{"name": "D"}]}]}
    assert deployment_resources(cfg) == {"default/D": Resources()}
