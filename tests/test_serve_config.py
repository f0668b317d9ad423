"""The shipped Serve config: valid for Ray, complete for the app, and typed per deployment."""

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from target_app.paths import DEFAULT_SERVE_CONFIG
from target_app.topology import APPLICATIONS
from target_app.user_config import (
    USER_CONFIGS,
    GeneratorConfig,
    LoRAConfig,
    RerankConfig,
    RewriterConfig,
    SearchConfig,
    check_deployment,
)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())


def test_validates_with_rays_own_schema(raw):
    ServeDeploySchema.model_validate(raw)


def test_every_application_and_deployment_is_configured(raw):
    apps = {a["name"]: a for a in raw["applications"]}
    assert set(apps) == set(APPLICATIONS)
    for name, spec in APPLICATIONS.items():
        assert apps[name]["route_prefix"] == spec.route_prefix
        assert sorted(d["name"] for d in apps[name]["deployments"]) == sorted(spec.deployments)
        for d in apps[name]["deployments"]:
            assert ("num_replicas" in d) != ("autoscaling_config" in d), d["name"]
            assert "max_ongoing_requests" in d and "ray_actor_options" in d


def test_each_user_config_matches_its_deployments_model(raw):
    for app in raw["applications"]:
        for d in app["deployments"]:
            if "user_config" in d:
                USER_CONFIGS[d["name"]].model_validate(d["user_config"])
                check_deployment(d["name"], d)


def test_every_model_stage_ships_emulated(raw):
    """The shipped config runs every model stage on emulated accelerators (README: why)."""
    deps = {d["name"]: d for a in raw["applications"] for d in a["deployments"]}
    for name in ("QueryRewriter", "Reranker", "LegalClassifier", "MedicalClassifier", "FinanceClassifier",
                 "MultiLoRAModel"):
        assert deps[name]["user_config"]["compute"]["mode"] == "emulated", name


def test_proxy_binds_loopback(raw):
    assert raw["http_options"]["host"] == "127.0.0.1"


@pytest.mark.parametrize("model,bad", [
    (RewriterConfig, {"batch": {"max_batch_size": 0}}),
    (RewriterConfig, {"batch": {"batch_wait_timeout_s": -1}}),
    (RerankConfig, {"top_n": 0}),
    (LoRAConfig, {"max_models_per_replica": 0}),
    (GeneratorConfig, {"timeout_s": 0}),
    (SearchConfig, {"colection": "docs"}),
])
def test_out_of_range_user_config_is_refused(model, bad):
    with pytest.raises(ValueError):
        model.model_validate(bad)
