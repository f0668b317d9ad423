"""Prometheus Operator objects: the scrape targets (k8s/templates/monitoring.yaml) and a
PrometheusRule whose alerts are the target's clauses, in the same PromQL the trials read
(tuner.promql), plus two alerts on the autoscalers' reach."""

from __future__ import annotations

import re

from tuner import promql
from tuner.export.inputs import Tuned
from tuner.export.settings import ExportSettings
from tuner.export.templates import render
from tuner.target import Clause

# Alerts look over this window and must hold this long: a quantile of a few scrapes is noise.
ALERT_WINDOW = "5m"
ALERT_FOR = "5m"
_VIOLATES = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def clause_expr(c: Clause, window: str = ALERT_WINDOW) -> str:
    """PromQL whose value is the clause's measured quantity, in the clause's base unit."""
    if c.metric == "latency":
        return promql.http_latency_quantile_ms(c.quantile / 100, window, c.route, per_route=False)
    if c.metric == "ttft":
        return f"1000 * {promql.llm_ttft_quantile_s(c.quantile / 100, window)}"
    if c.metric == "itl":
        return f"1000 * {promql.llm_itl_quantile_s(c.quantile / 100, window)}"
    if c.metric == "error_rate":
        return promql.http_error_ratio(window, c.route)
    return promql.http_ok_rate(window, c.route)


def _alert_name(c: Clause) -> str:
    words = [c.metric.title().replace("_", ""), f"P{c.quantile:g}".replace(".", "_") if c.quantile else ""]
    if c.route:
        words.append("".join(w.title() for w in re.split(r"[^A-Za-z0-9]+", c.route) if w))
    return "TargetMissed" + "".join(words)


def clause_alert(c: Clause, target_text: str) -> dict:
    """An alert that fires while clause `c` has not held over the alert window."""
    return {"alert": _alert_name(c),
            "expr": f"{clause_expr(c)} {_VIOLATES[c.op]} {c.threshold:g}",
            "for": ALERT_FOR,
            "labels": {"severity": "critical", "clause": c.text.strip()},
            "annotations": {"summary": f"{c.name} misses the tuned target {c.text.strip()}",
                            "description": f"{c.name} has been {{{{ $value }}}} (base unit: ms, fraction or rps) for "
                                           f"{ALERT_FOR}; the configuration was tuned for '{target_text}'."}}


def reach_alerts(tuned: Tuned) -> list[dict]:
    """Alerts for the autoscalers running out of room: Serve asks for replicas the cluster does
    not start, and the LLM backend's queue exceeds what its HPA's maximum can absorb."""
    wanted, healthy = promql.target_replicas_by_deployment(), promql.replicas_by_deployment()
    rules = [{"alert": "ServeReplicasNotStarting",
              "expr": f"{wanted} > {healthy}",
              "for": "10m",
              "labels": {"severity": "warning"},
              "annotations": {"summary": "{{ $labels.application }}/{{ $labels.deployment }} has fewer healthy replicas "
                                         "than Serve's autoscaler asks for",
                              "description": "Replicas have been pending for 10m: the worker groups are at their "
                                             "maximum or pods cannot be scheduled."}}]
    waiting = next((m for m in tuned.llm_hpa.metrics if m.name == "vllm:num_requests_waiting"), None)
    if waiting is not None:
        limit = waiting.target / 1000 * tuned.llm_hpa.max_replicas
        rules.append({"alert": "LLMBackendBeyondHPA",
                      "expr": f"{promql.llm_requests_waiting()} > {limit:g}",
                      "for": "10m",
                      "labels": {"severity": "warning"},
                      "annotations": {"summary": "The LLM backend's queue is beyond what its HPA's maxReplicas absorbs",
                                      "description": f"More than {limit:g} requests waiting for 10m "
                                                     f"({tuned.llm_hpa.max_replicas} pods x {waiting.target / 1000:g})."}})
    return rules


def prometheus_rule(tuned: Tuned, settings: ExportSettings) -> dict:
    """The PrometheusRule: the target's alerts (when there is a target) and the reach alerts."""
    groups = []
    if tuned.target is not None:
        groups.append({"name": "rayserve-tuner.target",
                       "rules": [clause_alert(c, tuned.target.text) for c in tuned.target.clauses]})
    groups.append({"name": "rayserve-tuner.autoscaling", "rules": reach_alerts(tuned)})
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": f"{settings.name}-target", "namespace": settings.namespace,
                         "labels": {"app.kubernetes.io/name": settings.name,
                                    "app.kubernetes.io/managed-by": "rayserve-tuner"}},
            "spec": {"groups": groups}}


def monitoring(tuned: Tuned, settings: ExportSettings) -> list[dict]:
    """PodMonitor for the Ray pods, ServiceMonitor for the LLM backend, and the PrometheusRule."""
    monitors = render("monitoring.yaml", name=settings.name, namespace=settings.namespace,
                      llm_deployment=settings.llm_deployment)
    return [*monitors, prometheus_rule(tuned, settings)]
