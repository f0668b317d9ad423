"""Planning a deploy without Ray: starting replicas, the pinned config, and the replica view of
Serve's status document."""

from __future__ import annotations

import copy

import pytest
from ray.serve.schema import ServeDeploySchema

from target_app.paths import DEFAULT_SERVE_CONFIG
from tuner import deploy


def config(*deployments: dict, app: str = "app") -> dict:
    return {"applications": [{"name": app, "route_prefix": "/x", "import_path": "m:app",
                              "deployments": list(deployments)}]}


CFG = {
    "applications": [
        {"name": "rag", "route_prefix": "/rag", "import_path": "m:rag", "deployments": [
            {"name": "Fixed", "num_replicas": 3},
            {"name": "Default"},  # Serve's default: one replica
            {"name": "Auto", "autoscaling_config": {"min_replicas": 1, "initial_replicas": 2, "max_replicas": 5,
                                                    "target_ongoing_requests": 4}},
            {"name": "AutoNoInitial", "autoscaling_config": {"min_replicas": 2, "max_replicas": 6}},
            {"name": "ScaleToZero", "autoscaling_config": {"min_replicas": 0, "max_replicas": 4}},
        ]},
        {"name": "lora", "route_prefix": "/v1", "import_path": "m:lora", "deployments": [
            {"name": "AutoString", "num_replicas": "auto"},
            {"name": "AutoStringWithConfig", "num_replicas": "auto",
             "autoscaling_config": {"min_replicas": 3, "max_replicas": 8}},
        ]},
    ],
}


def test_start_replicas():
    assert deploy.start_replicas(CFG) == {
        "rag/Fixed": 3,
        "rag/Default": 1,
        "rag/Auto": 2,            # initial_replicas
        "rag/AutoNoInitial": 2,   # else min_replicas
        "rag/ScaleToZero": 0,
        "lora/AutoString": 1,     # "auto" without a config: Serve's default min_replicas
        "lora/AutoStringWithConfig": 3,
    }


def test_start_replicas_of_an_empty_config():
    assert deploy.start_replicas({}) == {}
    assert deploy.start_replicas({"applications": [{"name": "a"}]}) == {}


def deployments(cfg: dict) -> dict[str, dict]:
    return {f"{a['name']}/{d['name']}": d for a in cfg["applications"] for d in a["deployments"]}


def test_pinned_holds_autoscaled_deployments_at_their_start():
    before = copy.deepcopy(CFG)
    out = deployments(deploy.pinned(CFG))
    assert CFG == before  # the input is not mutated
    for key, start in (("rag/Auto", 2), ("rag/AutoNoInitial", 2), ("lora/AutoStringWithConfig", 3)):
        auto = out[key]["autoscaling_config"]
        assert (auto["min_replicas"], auto["initial_replicas"], auto["max_replicas"]) == (start, start, start), key
    # the other autoscaling settings stay, so the policy is unchanged
    assert out["rag/Auto"]["autoscaling_config"]["target_ongoing_requests"] == 4
    assert out["lora/AutoStringWithConfig"]["num_replicas"] == "auto"
    # scale-to-zero: held at zero, with a maximum Serve accepts
    zero = out["rag/ScaleToZero"]["autoscaling_config"]
    assert (zero["min_replicas"], zero["initial_replicas"], zero["max_replicas"]) == (0, 0, 1)


def test_pinned_fixes_a_bare_auto_at_its_start():
    out = deployments(deploy.pinned(CFG))["lora/AutoString"]
    assert out == {"name": "AutoString", "num_replicas": 1}
    ServeDeploySchema.model_validate(deploy.pinned(CFG))


def test_pinned_leaves_fixed_deployments_alone():
    out = deployments(deploy.pinned(CFG))
    src = deployments(CFG)
    assert out["rag/Fixed"] == src["rag/Fixed"] == {"name": "Fixed", "num_replicas": 3}
    assert out["rag/Default"] == src["rag/Default"]
    assert "autoscaling_config" not in out["rag/Fixed"]


def test_pinned_does_not_share_nested_dicts_with_its_input():
    out = deploy.pinned(CFG)
    deployments(out)["rag/Auto"]["autoscaling_config"]["upscale_delay_s"] = 1
    assert "upscale_delay_s" not in deployments(CFG)["rag/Auto"]["autoscaling_config"]


def test_pinned_is_idempotent_and_keeps_start_replicas():
    once = deploy.pinned(CFG)
    assert deploy.pinned(once) == once
    assert deploy.start_replicas(once) == deploy.start_replicas(CFG)


def test_pinned_shipped_config_still_validates():
    cfg = deploy.load_serve_config(DEFAULT_SERVE_CONFIG)
    out = deploy.pinned(cfg)
    ServeDeploySchema.model_validate(out)
    start = deploy.start_replicas(cfg)
    autoscaled = 0
    for key, dep in deployments(out).items():
        if "autoscaling_config" in dep:
            autoscaled += 1
            auto = dep["autoscaling_config"]
            assert auto["min_replicas"] == auto["initial_replicas"] == start[key]
            assert auto["max_replicas"] == max(start[key], 1)
        else:
            assert dep == deployments(cfg)[key]
    assert autoscaled >= 1
    assert deploy.start_replicas(out) == start


# ---- running_replicas ----

STATUS = {
    "applications": {
        "rag": {"status": "RUNNING", "deployments": {
            "RAGService": {"status": "HEALTHY", "target_num_replicas": 2, "replicas": [
                {"replica_id": "r-b", "state": "RUNNING"},
                {"replica_id": "r-a", "state": "RUNNING"},
            ]},
            "Reranker": {"status": "UPSCALING", "target_num_replicas": 3, "replicas": [
                {"replica_id": "x1", "state": "RUNNING"},
                {"replica_id": "x2", "state": "STARTING"},
                {"replica_id": "x3", "state": "PENDING_ALLOCATION"},
                {"replica_id": "x0", "state": "STOPPING"},
            ]},
        }},
        "lora": {"status": "DEPLOYING", "deployments": {
            "MultiLoRAModel": {"status": "UPDATING", "target_num_replicas": 1, "replicas": []},
            "Fresh": {"status": "UPDATING"},
        }},
        "empty": {"status": "RUNNING"},
    },
}


def test_running_replicas():
    assert deploy.running_replicas(STATUS) == {
        "rag/RAGService": {"status": "HEALTHY", "target": 2, "running": ["r-a", "r-b"]},
        "rag/Reranker": {"status": "UPSCALING", "target": 3, "running": ["x1"]},
        "lora/MultiLoRAModel": {"status": "UPDATING", "target": 1, "running": []},
        "lora/Fresh": {"status": "UPDATING", "target": None, "running": []},
    }


@pytest.mark.parametrize("doc", [{}, {"applications": None}, {"applications": {}}])
def test_running_replicas_without_applications(doc):
    assert deploy.running_replicas(doc) == {}


def test_app_statuses():
    assert deploy.app_statuses(STATUS) == {"rag": "RUNNING", "lora": "DEPLOYING", "empty": "RUNNING"}


def test_start_replicas_with_null_num_replicas():
    assert deploy.start_replicas(config({"name": "D", "num_replicas": None})) == {"app/D": 1}


def test_start_replicas_of_an_unnamed_application():
    cfg = {"applications": [{"route_prefix": "/", "import_path": "m:a", "deployments": [{"name": "D"}]}]}
    ServeDeploySchema.model_validate(cfg)
    assert deploy.start_replicas(cfg) == {"default/D": 1}
