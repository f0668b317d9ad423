"""What `tuner export` exports: a Serve config and the cluster layer under it, read from a
config file or from a finished study (`tuner optimize --out DIR`), validated before anything
is written."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tuner.errors import UsageError, first_problem, read_yaml
from tuner.policies.hpa import HPASpec
from tuner.sim.cluster import ClusterSpec
from tuner.target import Target, parse_target

# The local stack's one fixed node has no Kubernetes counterpart: a cluster is sized by a layer.
EXPORT_LAYERS = ("ray-autoscaler", "hpa")


class Tuned(BaseModel):
    """A configuration to export. `tuned_cluster` says the layer's settings came from a search
    (exported as they are) rather than from the shipped defaults (worker bounds then follow
    from the deployments' replica bounds)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    serve_config: dict
    cluster: ClusterSpec
    llm_hpa: HPASpec
    target: Target | None
    tuned_cluster: bool
    source: str


def _layer_settings(layer: str, cluster_file: Path | None) -> tuple[ClusterSpec, HPASpec]:
    from tuner.simulate import load_cluster

    spec, llm = load_cluster(layer, cluster_file, llm_hpa=True)
    return spec, llm.spec


def _check_layer(layer: str) -> None:
    if layer not in EXPORT_LAYERS:
        raise UsageError(f"--cluster: {layer!r} is not one of {', '.join(EXPORT_LAYERS)} "
                         "(the local stack's fixed node has no Kubernetes counterpart)")


def from_config(path: Path, layer: str | None, cluster_file: Path | None, target: str | None) -> Tuned:
    """A Serve config file (checked with Ray's ServeDeploySchema) on a cluster layer's shipped
    settings (default: the Ray autoscaler, KubeRay's supported way to size a RayCluster)."""
    from tuner.deploy import load_serve_config

    layer = layer or "ray-autoscaler"
    _check_layer(layer)
    serve_config = load_serve_config(path)
    cluster, llm = _layer_settings(layer, cluster_file)
    return Tuned(serve_config=serve_config, cluster=cluster, llm_hpa=llm,
                 target=parse_target(target) if target else None, tuned_cluster=False, source=str(path))


def from_study(folder: Path, layer: str | None, cluster_file: Path | None, target: str | None) -> Tuned:
    """A finished study's best configuration, its tuned cluster layer (best_cluster.yaml) and
    its target; a study that searched no layer gets `layer`'s shipped settings."""
    from tuner.deploy import load_serve_config

    if not folder.is_dir():
        raise UsageError(f"--study: {folder} is not a folder")
    summary_path = folder / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--study: {folder} holds no summary.json (not a `tuner optimize --out` folder)") from None
    except ValueError as e:
        raise UsageError(f"--study: {summary_path} is not JSON: {e}") from None
    best = folder / "best_serve_config.yaml"
    if not summary.get("best") or not best.is_file():
        raise UsageError(f"--study: {folder} has no best configuration (no trial met the target {summary.get('target')!r})")
    serve_config = load_serve_config(best)
    searched = None
    cluster_path = folder / "best_cluster.yaml"
    if cluster_path.is_file():
        data = read_yaml(cluster_path, "--study")
        if not isinstance(data, dict) or len(data) != 1 or not isinstance(next(iter(data.values())) or {}, dict):
            raise UsageError(f"--study: {cluster_path} must hold one layer's settings")
        searched = next(iter(data))
        if layer and layer != searched:
            raise UsageError(f"--cluster {layer}: the study searched the {searched} layer; export it as that, "
                             "or export its best_serve_config.yaml with --config")
        _check_layer(searched)
        try:
            cluster = ClusterSpec.model_validate({"layer": searched, **(data[searched] or {})})
        except ValidationError as e:
            raise UsageError(f"--study: {cluster_path}: {searched}.{first_problem(e)}") from None
        _, llm = _layer_settings(searched, cluster_file)
    else:
        _check_layer(layer or "ray-autoscaler")
        cluster, llm = _layer_settings(layer or "ray-autoscaler", cluster_file)
    text = target or summary.get("target")
    return Tuned(serve_config=serve_config, cluster=cluster, llm_hpa=llm, target=parse_target(text) if text else None,
                 tuned_cluster=searched is not None, source=str(folder))
