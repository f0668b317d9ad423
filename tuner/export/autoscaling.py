"""HorizontalPodAutoscalers (autoscaling/v2) from the tuner's HPASpec and back, and the
prometheus-adapter rule that serves the LLM backend's queue as a custom metric.

The simulator's HPASpec carries the controller's own tolerance flag; a manifest carries a
tolerance per direction (`behavior.scaleUp/scaleDown.tolerance`, HPAConfigurableTolerance:
beta and on by default from Kubernetes 1.35). A tolerance other than the default is exported
there, with the behavior's other fields at Kubernetes' defaults where none were tuned."""

from __future__ import annotations

import re

from tuner.errors import UsageError
from tuner.export.settings import ExportSettings
from tuner.export.templates import render
from tuner.policies.hpa import HPABehavior, HPAPolicy, HPAScalingRules, HPASpec, MetricTarget

DEFAULT_TOLERANCE = 0.1


def exposed_name(series: str) -> str:
    """The name prometheus-adapter serves a Prometheus series under in the custom metrics API
    (no `:` there): `vllm:num_requests_waiting` -> `vllm_num_requests_waiting`."""
    return series.replace(":", "_")


def _milli(m: int) -> str:
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"


def _from_quantity(q) -> int:
    s = str(q)
    if s.endswith("m"):
        return int(s[:-1])
    return round(float(s) * 1000)


def effective(spec: HPASpec) -> HPASpec:
    """The spec a manifest can carry: a tuned tolerance needs a behavior to live in."""
    if spec.tolerance != DEFAULT_TOLERANCE and spec.behavior is None:
        return spec.model_copy(update={"behavior": HPABehavior()})
    return spec


def _metric(m: MetricTarget) -> dict:
    if m.target_type == "Utilization":
        target = {"type": "Utilization", "averageUtilization": m.target}
    elif m.target_type == "AverageValue":
        target = {"type": "AverageValue", "averageValue": _milli(m.target)}
    else:
        target = {"type": "Value", "value": _milli(m.target)}
    if m.source == "Resource":
        return {"type": "Resource", "resource": {"name": m.name, "target": target}}
    if m.source == "Pods":
        return {"type": "Pods", "pods": {"metric": {"name": exposed_name(m.name)}, "target": target}}
    if m.source == "External":
        return {"type": "External", "external": {"metric": {"name": exposed_name(m.name)}, "target": target}}
    raise UsageError(f"an HPA metric of source Object ({m.name}) names no object to describe; export supports "
                     "Resource, Pods and External metrics")


def _rules(r: HPAScalingRules, tolerance: float) -> dict:
    out: dict = {}
    if r.stabilization_window_s is not None:
        out["stabilizationWindowSeconds"] = r.stabilization_window_s
    out["selectPolicy"] = r.select_policy
    out["policies"] = [{"type": p.type, "value": p.value, "periodSeconds": p.period_s} for p in r.policies]
    if tolerance != DEFAULT_TOLERANCE:
        out["tolerance"] = f"{tolerance:g}"
    return out


def hpa(spec: HPASpec, target: str, settings: ExportSettings) -> dict:
    """An HPA on Deployment `target` with `spec`'s bounds, metrics and behavior."""
    spec = effective(spec)
    (doc,) = render("hpa.yaml", target=target, name=settings.name, namespace=settings.namespace)
    body = doc["spec"]
    body["minReplicas"], body["maxReplicas"] = spec.min_replicas, spec.max_replicas
    body["metrics"] = [_metric(m) for m in spec.metrics]
    if spec.behavior is not None:
        body["behavior"] = {"scaleUp": _rules(spec.behavior.scale_up, spec.tolerance),
                            "scaleDown": _rules(spec.behavior.scale_down, spec.tolerance)}
    return doc


def _read_metric(m: dict, series: dict[str, str]) -> MetricTarget:
    source = m["type"]
    body = m[source[0].lower() + source[1:]]
    name = body["name"] if source == "Resource" else body["metric"]["name"]
    t = body["target"]
    value = (t["averageUtilization"] if t["type"] == "Utilization"
             else _from_quantity(t["averageValue"] if t["type"] == "AverageValue" else t["value"]))
    return MetricTarget(source=source, name=series.get(name, name), target_type=t["type"], target=value)


def _read_rules(r: dict) -> HPAScalingRules:
    return HPAScalingRules(stabilization_window_s=r.get("stabilizationWindowSeconds"), select_policy=r.get("selectPolicy"),
                           policies=tuple(HPAPolicy(type=p["type"], value=p["value"], period_s=p["periodSeconds"])
                                          for p in r["policies"]) if r.get("policies") else None)


def read_hpa(doc: dict, series: dict[str, str] | None = None) -> HPASpec:
    """The HPASpec an HPA manifest carries (the inverse of `hpa`); `series` maps custom metric
    names back to their Prometheus series."""
    body = doc["spec"]
    behavior, tolerance = body.get("behavior"), DEFAULT_TOLERANCE
    if behavior is not None:
        tolerance = float(behavior.get("scaleUp", {}).get("tolerance", DEFAULT_TOLERANCE))
        behavior = HPABehavior(scale_up=_read_rules(behavior.get("scaleUp", {})),
                               scale_down=_read_rules(behavior.get("scaleDown", {})))
    return HPASpec(min_replicas=body.get("minReplicas", 1), max_replicas=body["maxReplicas"],
                   metrics=tuple(_read_metric(m, series or {}) for m in body.get("metrics", [])),
                   behavior=behavior, tolerance=tolerance)


def same_settings(a: HPASpec, b: HPASpec) -> bool:
    """Whether two specs give an HPA the same manifest settings (the controller's flags aside)."""
    fields = ("min_replicas", "max_replicas", "metrics", "behavior", "tolerance")
    return all(getattr(effective(a), f) == getattr(effective(b), f) for f in fields)


def adapter_rules(spec: HPASpec) -> list[dict]:
    """prometheus-adapter `rules.custom` entries serving each Pods/External metric of `spec`
    from its Prometheus series, per pod and namespace."""
    rules = []
    for m in spec.metrics:
        if m.source == "Resource":
            continue
        prefix, _, rest = m.name.partition(":")
        match = f"^{re.escape(prefix)}:(.*)$" if rest else f"^({re.escape(m.name)})$"
        rules.append({
            "seriesQuery": f'{m.name}{{namespace!="",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": match, "as": f"{prefix}_${{1}}" if rest else "${1}"},
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        })
    return rules


def adapter_values(spec: HPASpec) -> dict:
    """Helm values for the prometheus-community/prometheus-adapter chart with those rules."""
    return {"rules": {"default": False, "custom": adapter_rules(spec)}}


def adapter_series(values: dict) -> dict[str, str]:
    """Custom metric name -> Prometheus series, as the adapter rules in `values` map them."""
    out = {}
    for rule in values["rules"]["custom"]:
        series = rule["seriesQuery"].split("{", 1)[0]
        exposed = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
        out[exposed] = series
    return out
