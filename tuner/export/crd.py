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

SCHEMAS = Path(__file__).resolve().parents[2] / "k8s" / "schemas"
KUBERAY = {"RayService": SCHEMAS / "kuberay" / "ray.io_rayservices.yaml",
           "RayCluster": SCHEMAS / "kuberay" / "ray.io_rayclusters.yaml"}


@lru_cache(maxsize=None)
def crd_schema(path: Path, version: str) -> dict:
    """The openAPIV3Schema of one served version of the CRD in `path`."""
    crd = yaml.safe_load(path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{path.name} has no version {version!r}")


def problems(doc: dict) -> list[str]:
    """Every schema violation of a KubeRay resource, as `path: message` lines (empty when valid)."""
    kind, api = doc.get("kind"), doc.get("apiVersion", "")
    if kind not in KUBERAY or not api.startswith("ray.io/"):
        return [f"kind {kind!r} ({api!r}) is not a KubeRay resource this checks ({', '.join(KUBERAY)})"]
    schema = crd_schema(KUBERAY[kind], api.split("/", 1)[1])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]
