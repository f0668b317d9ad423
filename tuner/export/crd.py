"""Offline validation of custom resources against their CustomResourceDefinition's schema
(no cluster needed): the CRD's `openAPIV3Schema` for the resource's version, checked with
jsonschema. Kubernetes' structural schemas are JSON Schema plus `x-kubernetes-*` extensions,
which a JSON Schema validator ignores; `x-kubernetes-int-or-string` fields carry no `type`
there, so they accept either, as the API server does."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from tuner.paths import K8S_SCHEMAS

# (API group, kind) -> its CRD, copied in with licence and source (see each folder's SOURCE.md).
CRDS = {("ray.io", "RayService"): K8S_SCHEMAS / "kuberay" / "ray.io_rayservices.yaml",
        ("ray.io", "RayCluster"): K8S_SCHEMAS / "kuberay" / "ray.io_rayclusters.yaml",
        ("monitoring.coreos.com", "PodMonitor"): K8S_SCHEMAS / "prometheus-operator" / "monitoring.coreos.com_podmonitors.yaml",
        ("monitoring.coreos.com", "ServiceMonitor"):
            K8S_SCHEMAS / "prometheus-operator" / "monitoring.coreos.com_servicemonitors.yaml",
        ("monitoring.coreos.com", "PrometheusRule"):
            K8S_SCHEMAS / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"}


@lru_cache(maxsize=None)
def crd_schema(path: Path, version: str) -> dict:
    """The openAPIV3Schema of one served version of the CRD in `path`."""
    crd = yaml.safe_load(path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{path.name} has no version {version!r}")


def is_custom(doc: dict) -> bool:
    """Whether `doc` is a custom resource whose CRD is here."""
    return (str(doc.get("apiVersion", "")).split("/", 1)[0], doc.get("kind")) in CRDS


def problems(doc: dict) -> list[str]:
    """Every schema violation of a custom resource, as `path: message` lines (empty when valid)."""
    kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
    group, _, version = api.partition("/")
    if (group, kind) not in CRDS:
        known = ", ".join(f"{k} ({g})" for g, k in CRDS)
        return [f"kind {kind!r} ({api!r}) is not a custom resource this checks ({known})"]
    try:
        schema = crd_schema(CRDS[(group, kind)], version)
    except KeyError as e:
        return [str(e.args[0])]
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]
