"""KubeRay resources checked offline against the CRDs copied into k8s/schemas/."""

from __future__ import annotations

import copy

import yaml

from target_app.paths import DEFAULT_SERVE_CONFIG
from tuner.export.crd import problems

RAYSERVICE = {
    "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "rag"},
    "spec": {
        "serveConfigV2": yaml.safe_dump(yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())),
        "rayClusterConfig": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {"dashboard-host": "127.0.0.1"},
                              "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0",
                                                                     "resources": {"limits": {"cpu": "2"}}}]}}},
            "workerGroupSpecs": [{"groupName": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 4,
                                  "rayStartParams": {},
                                  "template": {"spec": {"containers": [{"name": "ray-worker",
                                                                        "image": "rayproject/ray:2.60.0"}]}}}],
        },
    },
}


def test_a_well_formed_rayservice_passes():
    assert problems(RAYSERVICE) == []


def test_violations_name_the_field():
    bad = copy.deepcopy(RAYSERVICE)
    bad["spec"]["serveConfigV2"] = {"applications": []}  # must be the Serve config as a string
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    del bad["spec"]["rayClusterConfig"]["headGroupSpec"]
    found = problems(bad)
    assert any(p.startswith("spec.serveConfigV2:") for p in found)
    assert any(p.startswith("spec.rayClusterConfig.workerGroupSpecs.0.replicas:") for p in found)
    assert any("headGroupSpec" in p for p in found)


def test_only_kinds_with_a_crd_here_are_checked():
    assert "not a custom resource this checks" in problems({"apiVersion": "v1", "kind": "Service"})[0]
