"""The search space: parsing (valid and invalid files), constraints held by every sampled
configuration, and values applied to a Serve config that Ray's schema accepts."""

from __future__ import annotations

import optuna
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from loadgen.mix import NUM_ADAPTERS
from target_app.user_config import check_deployment
from tuner.errors import UsageError
from tuner.optimize.space import apply, load_space, repair, suggest

CONFIG = yaml.safe_load(open("target_app/serve_config.yaml"))


def space_file(tmp_path, text: str):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


def by_name(cfg: dict) -> dict:
    return {d["name"]: d for a in cfg["applications"] for d in a["deployments"]}


def test_the_shipped_space_loads_and_names_every_parameter():
    space = load_space(None, CONFIG)
    names = space.names()
    assert "serve.QueryRewriter.max_batch_size" in names and "cluster.ray-autoscaler.upscaling_mode" in names
    assert space.param("serve.Reranker.target_ongoing_requests").scale == "log"
    # the adapter cache reaches every adapter the app serves: holding them all is what lets one
    # LoRA replica take the burst
    assert space.param("serve.MultiLoRAModel.max_models_per_replica").high == NUM_ADAPTERS


@pytest.mark.parametrize("text, expected", [
    ("serve: {Nope: {max_replicas: {type: int, low: 1, high: 2}}}", "serve.Nope: no such deployment"),
    ("serve: {Reranker: {max_replica: {type: int, low: 1, high: 2}}}", "serve.Reranker.max_replica: unknown parameter"),
    ("serve: {Reranker: {max_replicas: {type: int, low: 3, high: 2}}}", "low (3) must be <= high (2)"),
    ("serve: {Reranker: {upscale_delay_s: {type: float, low: 0, high: 2, scale: log}}}", "a log scale needs low > 0"),
    ("serve: {Reranker: {max_replicas: {type: float, low: 1, high: 2}}}", "must be an int parameter"),
    ("serve: {Reranker: {max_replicas: {type: int, low: 1}}}", "needs `low` and `high`"),
    ("serve: {Reranker: {max_replicas: {type: int, low: 1, high: 2, step: 1}}}", "Extra inputs are not permitted"),
    ("cluster: {k8s: {x: {type: int, low: 1, high: 2}}}", "cluster.k8s: unknown layer"),
    ("cluster: {hpa: {speed: {type: int, low: 1, high: 2}}}", "cluster.hpa.speed: unknown parameter"),
    ("serve: {Reranker: {max_replicas: {type: categorical}}}", "non-empty `choices`"),
    ("serve: [1, 2]", "Input should be a valid dictionary"),
    ("{}", "no parameters to search"),
    ("serve: {Reranker: {max_replicas: [", "not YAML"),
    ("serve: {VectorSearch: {devices: {type: float, low: 0.25, high: 1}}}",
     "serve.VectorSearch.devices: the deployment does not run in compute mode 'emulated'"),
])
def test_a_bad_space_file_is_a_usage_error_naming_the_field(tmp_path, text, expected):
    with pytest.raises(UsageError, match="--space") as e:
        load_space(space_file(tmp_path, text), CONFIG)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_every_sampled_configuration_holds_the_constraints_and_validates_with_ray():
    space = load_space(None, CONFIG)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(200):
        trial = study.ask()
        values = repair(suggest(trial, space), space, CONFIG)
        cfg = apply(CONFIG, values)
        ServeDeploySchema.model_validate(cfg)
        for name, d in by_name(cfg).items():
            check_deployment(name, d)  # the app takes every sampled user_config (a share of a card too)
            a = d.get("autoscaling_config")
            if a:
                assert a["min_replicas"] <= a.get("initial_replicas", a["min_replicas"]) <= a["max_replicas"]
                assert d.get("max_ongoing_requests", 5) >= a.get("target_ongoing_requests", 2)
        study.tell(trial, 0.0)


def test_apply_puts_each_parameter_where_serve_reads_it_and_leaves_the_input_alone():
    before = yaml.safe_dump(CONFIG)
    cfg = apply(CONFIG, {"serve.QueryRewriter.max_batch_size": 8, "serve.QueryRewriter.target_ongoing_requests": 3.0,
                         "serve.VectorSearch.min_replicas": 2, "serve.Reranker.num_replicas": 2,
                         "serve.MultiLoRAModel.max_models_per_replica": 6, "serve.LLMGenerator.num_cpus": 0.5,
                         "serve.LegalClassifier.devices": 0.25,
                         "serve.RAGService.max_queued_requests": 100, "cluster.ray-autoscaler.max_workers": 4})
    d = by_name(cfg)
    assert d["QueryRewriter"]["user_config"]["batch"]["max_batch_size"] == 8
    assert d["QueryRewriter"]["user_config"]["batch"]["batch_wait_timeout_s"] == 0.005  # the rest kept
    assert d["QueryRewriter"]["autoscaling_config"]["target_ongoing_requests"] == 3.0
    assert d["VectorSearch"]["autoscaling_config"]["min_replicas"] == 2 and "num_replicas" not in d["VectorSearch"]
    assert d["Reranker"]["num_replicas"] == 2 and "autoscaling_config" not in d["Reranker"]
    assert d["MultiLoRAModel"]["user_config"]["max_models_per_replica"] == 6
    assert d["LegalClassifier"]["user_config"]["compute"] == {"mode": "emulated", "accelerator": "l4",
                                                              "stage": "bert-base-cls-seq128", "devices": 0.25}
    assert d["LLMGenerator"]["ray_actor_options"]["num_cpus"] == 0.5
    assert d["RAGService"]["max_queued_requests"] == 100
    assert yaml.safe_dump(CONFIG) == before


def test_repair_uses_the_configs_own_bound_when_the_space_does_not_search_it():
    space = load_space(None, CONFIG)
    # VectorSearch has 1 fixed replica: made autoscaled with a minimum of 2, its bounds follow
    out = repair({"serve.VectorSearch.min_replicas": 2}, space.model_copy(update={"serve": {**space.serve,
                 "VectorSearch": {"min_replicas": space.param("serve.MultiLoRAModel.min_replicas")}}}), CONFIG)
    assert out == {"serve.VectorSearch.min_replicas": 2, "serve.VectorSearch.max_replicas": 2,
                   "serve.VectorSearch.initial_replicas": 2}
    ServeDeploySchema.model_validate(apply(CONFIG, out))
    # the shipped config has QueryRewriter max_ongoing_requests 32: a larger target is capped to it
    # only when the space does not search max_ongoing; here it does, so max_ongoing is raised
    out = repair({"serve.QueryRewriter.target_ongoing_requests": 20.5, "serve.QueryRewriter.max_ongoing_requests": 4},
                 space, CONFIG)
    assert out["serve.QueryRewriter.max_ongoing_requests"] == 21
    out = repair({"serve.MultiLoRAModel.min_replicas": 3, "serve.MultiLoRAModel.max_replicas": 1,
                  "serve.MultiLoRAModel.initial_replicas": 6}, space, CONFIG)
    assert (out["serve.MultiLoRAModel.min_replicas"], out["serve.MultiLoRAModel.max_replicas"],
            out["serve.MultiLoRAModel.initial_replicas"]) == (3, 3, 3)
    out = repair({"serve.Reranker.target_ongoing_requests": 40.0}, space, CONFIG)  # max_ongoing 16 in the config
    assert out["serve.Reranker.target_ongoing_requests"] == 16.0


def test_cluster_values_set_their_own_layer_only():
    from tuner.optimize.space import apply_cluster
    from tuner.simulate import load_cluster

    ra, _ = load_cluster("ray-autoscaler")
    tuned = apply_cluster(ra, {"cluster.ray-autoscaler.max_workers": 3, "cluster.ray-autoscaler.idle_timeout_s": 20.0,
                               "cluster.ray-autoscaler.upscaling_mode": "Conservative", "cluster.hpa.target": 50,
                               "serve.Reranker.max_replicas": 2})
    assert tuned.ray_autoscaler.idle_timeout_s == 20.0 and tuned.ray_autoscaler.upscaling_mode == "Conservative"
    assert [g.max_workers for g in tuned.ray_autoscaler.groups] == [3] and ra.ray_autoscaler.groups[0].max_workers == 10
    hpa, _ = load_cluster("hpa")
    t = apply_cluster(hpa, {"cluster.hpa.min_replicas": 5, "cluster.hpa.max_replicas": 3, "cluster.hpa.target": 40,
                            "cluster.hpa.scale_down_stabilization_s": 120, "cluster.hpa.scale_up_percent": 50})
    spec = t.hpa.spec
    assert (spec.min_replicas, spec.max_replicas, spec.metrics[0].target) == (5, 5, 40)
    assert spec.behavior.scale_down.stabilization_window_s == 120
    assert spec.behavior.scale_up.policies[0].value == 50 and spec.behavior.scale_up.select_policy == "Max"
    assert apply_cluster(load_cluster("fixed")[0], {"cluster.hpa.target": 40}) == load_cluster("fixed")[0]
