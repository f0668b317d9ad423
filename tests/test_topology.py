"""target_app/topology.py is the one statement of the app's shape: the Serve graph target_app
builds, the shipped Serve config, the user_config models and the tuner's simulator and profiler
all agree with it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import yaml
from ray.serve.deployment import Application

import target_app.app
from target_app import topology
from target_app.paths import DEFAULT_SERVE_CONFIG
from target_app.user_config import USER_CONFIGS


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())


def bound(app: Application):
    """The deployment an application's graph enters, and the applications bound into it."""
    dep = app._bound_deployment
    return dep, [a for a in (*dep.init_args, *dep.init_kwargs.values()) if isinstance(a, Application)]


def deployment_classes() -> dict[str, type]:
    """Every deployment of the built graphs, by name, with the class it runs."""
    out = {}
    for name in topology.APPLICATIONS:
        ingress, children = bound(getattr(target_app.app, f"{name}_app"))
        for dep in (ingress, *(c._bound_deployment for c in children)):
            out[dep.name] = dep.func_or_class
    return out


def has_method_with(cls: type, attr: str) -> bool:
    return any(hasattr(v, attr) for v in vars(cls).values())


def test_topology_imports_no_ray_serve_or_torch():
    code = ("import sys, target_app.topology; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch', 'fastapi', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_built_graphs_are_the_topology():
    for name, spec in topology.APPLICATIONS.items():
        ingress, children = bound(getattr(target_app.app, f"{name}_app"))
        assert ingress.name == spec.ingress
        assert tuple(c._bound_deployment.name for c in children) == topology.callees(spec.ingress)


def test_each_classifier_serves_its_domain():
    _, children = bound(target_app.app.router_app)
    served = {c._bound_deployment.init_args[0]: c._bound_deployment.name for c in children}
    assert served == topology.BY_DOMAIN["DomainRouter"]


def test_batched_and_multiplexed_are_the_codes():
    classes = deployment_classes()
    assert set(classes) == set(topology.DEPLOYMENTS)
    assert {n for n, c in classes.items() if has_method_with(c, "set_max_batch_size")} == topology.BATCHED
    assert {n for n, c in classes.items() if has_method_with(c, "_serve_multiplexed_function")} == topology.MULTIPLEXED


def test_each_path_is_a_post_route_of_its_ingress():
    classes = deployment_classes()
    for spec in topology.APPLICATIONS.values():
        assert spec.path.startswith(spec.route_prefix)
        api = sys.modules[classes[spec.ingress].__module__].api
        suffix = spec.path.removeprefix(spec.route_prefix) or "/"
        assert "post" in api.openapi()["paths"].get(suffix, {}), spec.path


def test_rag_stage_names_are_the_ones_rag_service_reports():
    source = inspect.getsource(deployment_classes()["RAGService"])
    for stage in topology.RAG_STAGES.values():
        assert f'stages["{stage}"]' in source, stage


def test_the_shipped_serve_config_has_the_topologys_applications(raw):
    apps = {a["name"]: a for a in raw["applications"]}
    assert set(apps) == set(topology.APPLICATIONS)
    for name, spec in topology.APPLICATIONS.items():
        app = apps[name]
        assert app["route_prefix"] == spec.route_prefix
        assert app["import_path"] == f"target_app.app:{name}_app"
        assert sorted(d["name"] for d in app["deployments"]) == sorted(spec.deployments)


def test_user_config_models_are_keyed_by_topology_deployments():
    assert set(USER_CONFIGS) <= set(topology.DEPLOYMENTS)


def test_the_tuner_reads_the_topology():
    from tuner import profile
    from tuner.sim import app as sim_app
    from tuner.sim.calibration import GPU_STAGES

    for module in (sim_app, profile):
        for name in ("BATCHED", "BY_DOMAIN", "LLM_CALLER", "MULTIPLEXED", "ROUTES"):
            assert getattr(module, name) is getattr(topology, name), (module.__name__, name)
    assert sim_app.CHAIN is topology.CHAIN
    assert profile.RAG_STAGES is topology.RAG_STAGES
    assert target_app.app.CLASSIFIERS is topology.CLASSIFIERS
    assert set(GPU_STAGES) <= set(topology.DEPLOYMENTS)
