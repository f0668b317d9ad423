"""The cluster manifests: the RayService with its worker groups, the hpa layer's worker
Deployment, the LLM backend, and the NetworkPolicy around the Ray head."""

from __future__ import annotations

import copy

import yaml

from tuner.export.inputs import Tuned
from tuner.export.settings import GIB, ExportSettings
from tuner.export.sizing import GroupPlan
from tuner.export.templates import quantity_cpu, quantity_gib, render

# The KubeRay operator's and Prometheus' namespaces, as their Helm charts install them.
OPERATOR_NAMESPACE = "kuberay-operator"
MONITORING_NAMESPACE = "monitoring"


def serve_port(serve_config: dict) -> int:
    return int((serve_config.get("http_options") or {}).get("port", 8000))


def cluster_serve_config(serve_config: dict) -> dict:
    """The Serve config as the RayService runs it: the applications exactly as tuned; the proxy
    listens on the pod's address on every node, so the Serve Service and the readiness probe
    reach it (the local stack binds 127.0.0.1 on the head only)."""
    cfg = copy.deepcopy(serve_config)
    cfg["proxy_location"] = "EveryNode"
    cfg["http_options"] = {**(cfg.get("http_options") or {}), "host": "0.0.0.0"}
    return cfg


def _env(settings: ExportSettings) -> list[dict]:
    return [{"name": "TARGET_APP_LLM_URL", "value": settings.llm_endpoint},
            {"name": "TARGET_APP_MILVUS_URI", "value": settings.milvus_endpoint}]


def _group_spec(plan: GroupPlan, settings: ExportSettings, port: int) -> dict:
    (spec,) = render("worker-group.yaml", group=plan.name, min_workers=plan.min_workers, max_workers=plan.max_workers,
                     name=settings.name, image=settings.image, serve_port=port, cpus=quantity_cpu(plan.shape.cpus),
                     memory=quantity_gib(plan.shape.memory_gib))
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    container["env"] = _env(settings)
    if plan.gpu:
        gpus = str(plan.shape.gpus)
        container["resources"]["requests"]["nvidia.com/gpu"] = gpus
        container["resources"]["limits"]["nvidia.com/gpu"] = gpus
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if plan.idle_timeout_s is not None:
        spec["idleTimeoutSeconds"] = int(plan.idle_timeout_s)
    return spec


def rayservice(tuned: Tuned, settings: ExportSettings, groups: list[GroupPlan], ray_version: str) -> dict:
    """The RayService: serveConfigV2 from the tuned config; the Ray autoscaler's options when it
    sizes the cluster, otherwise the groups held at their lower bound (the hpa layer's CPU
    workers are a Deployment of their own, see `hpa_workers`)."""
    port = serve_port(tuned.serve_config)
    (doc,) = render("rayservice.yaml", name=settings.name, namespace=settings.namespace, image=settings.image,
                    ray_version=ray_version, redis_address=settings.redis, redis_secret=settings.redis_secret,
                    serve_port=port, head_cpu=quantity_cpu(settings.head.cpus), head_memory=quantity_gib(settings.head.memory_gib))
    spec = doc["spec"]
    spec["serveConfigV2"] = yaml.safe_dump(cluster_serve_config(tuned.serve_config), sort_keys=False)
    rc = spec["rayClusterConfig"]
    rc["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = _env(settings)
    ra = tuned.cluster.ray_autoscaler if tuned.cluster.layer == "ray-autoscaler" else None
    if ra is not None:
        rc["enableInTreeAutoscaling"] = True
        rc["autoscalerOptions"] = {"upscalingMode": ra.upscaling_mode, "idleTimeoutSeconds": int(ra.idle_timeout_s)}
        workers = groups
    else:
        workers = [g for g in groups if g.gpu]
    rc["workerGroupSpecs"] = [_group_spec(g, settings, port) for g in workers]
    return doc


def hpa_workers(plan: GroupPlan, settings: ExportSettings, port: int) -> dict:
    """The hpa layer's CPU workers: a Deployment of Ray worker pods the HPA scales."""
    (doc,) = render("hpa-workers.yaml", name=settings.name, namespace=settings.namespace, group=plan.name,
                    image=settings.image, serve_port=port, cpus=quantity_cpu(plan.shape.cpus),
                    memory=quantity_gib(plan.shape.memory_gib), memory_bytes=int(plan.shape.memory_gib * GIB))
    doc["spec"]["template"]["spec"]["containers"][0]["env"] = _env(settings)
    return doc


def served_model(serve_config: dict, default: str) -> str:
    """The model name the app's LLMGenerator asks the backend for."""
    for app in serve_config.get("applications") or []:
        for dep in app.get("deployments") or []:
            if dep["name"] == "LLMGenerator":
                return str((dep.get("user_config") or {}).get("model") or default)
    return default


def llm_backend(tuned: Tuned, settings: ExportSettings) -> list[dict]:
    """vLLM's Deployment and Service, serving the model under the name the app asks for."""
    docs = render("llm-backend.yaml", llm_deployment=settings.llm_deployment, namespace=settings.namespace,
                  llm_image=settings.llm_image)
    docs[0]["spec"]["template"]["spec"]["containers"][0]["args"] = [
        "--model", settings.llm_model, "--served-model-name", served_model(tuned.serve_config, settings.llm_model),
        "--port", "8000"]
    return docs


def network_policy(tuned: Tuned, settings: ExportSettings) -> dict:
    """The NetworkPolicy that keeps the head's dashboard, GCS and client ports in the cluster."""
    (doc,) = render("networkpolicy.yaml", name=settings.name, namespace=settings.namespace,
                    operator_namespace=OPERATOR_NAMESPACE, monitoring_namespace=MONITORING_NAMESPACE,
                    serve_port=serve_port(tuned.serve_config))
    return doc
