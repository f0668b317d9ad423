"""A Grafana dashboard for the deployed app, every query from tuner.promql: latency
percentiles against the target, replicas per deployment, ongoing and queued requests, the LLM
backend's running and waiting requests, and what the replicas cost per hour."""

from __future__ import annotations

import json

from tuner import promql
from tuner.cost import Prices, deployment_resources, hourly
from tuner.export.inputs import Tuned
from tuner.export.settings import ExportSettings

# Panels look over this window: a few scrapes, so one missed scrape leaves no hole.
WINDOW = "1m"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], *, x: int, y: int,
           threshold: float | None = None) -> dict:
    defaults: dict = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 0}}
    if threshold is not None:
        # The target as a red line across the panel.
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": threshold}]}
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {"id": pid, "type": "timeseries", "title": title, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)]}


def latency_bound_ms(tuned: Tuned) -> float | None:
    """The tightest all-routes latency clause of the target, in ms (the panel's red line)."""
    if tuned.target is None:
        return None
    bounds = [c.threshold for c in tuned.target.clauses if c.metric == "latency" and c.route is None]
    return min(bounds) if bounds else None


def replica_prices(tuned: Tuned, prices: Prices) -> dict[tuple[str, str], float]:
    """Each deployment's price per replica-hour (its ray_actor_options at the price table)."""
    return {tuple(key.split("/", 1)): hourly(r, prices) for key, r in deployment_resources(tuned.serve_config).items()}


def dashboard(tuned: Tuned, settings: ExportSettings, prices: Prices) -> dict:
    """The dashboard model (Grafana's JSON, schemaVersion 39)."""
    w = WINDOW
    latency = [(promql.http_latency_quantile_ms(q, w, per_route=False), f"p{q * 100:g} all routes")
               for q in (0.5, 0.95, 0.99)] + [(promql.http_latency_quantile_ms(0.99, w), "p99 {{route}}")]
    panels = [
        _panel(1, "Latency percentiles against the target", "ms", latency, x=0, y=0, threshold=latency_bound_ms(tuned)),
        _panel(2, "Requests and errors per second", "reqps",
               [(promql.http_request_rate(w), "{{route}}"), (promql.http_error_rate(w), "errors {{route}}")], x=12, y=0),
        _panel(3, "Replicas per deployment", "short",
               [(promql.replicas_by_deployment(), "{{deployment}}"),
                (promql.target_replicas_by_deployment(), "{{deployment}} target")], x=0, y=8),
        _panel(4, "Ongoing and queued requests", "short",
               [(promql.ongoing_requests_by_deployment(), "ongoing {{deployment}}"),
                (promql.queued_requests_by_deployment(), "queued {{deployment}}")], x=12, y=8),
        _panel(5, "LLM backend: running and waiting", "short",
               [(promql.llm_requests_running(), "running"), (promql.llm_requests_waiting(), "waiting")], x=0, y=16),
        _panel(6, f"Replica cost ({prices.currency} per hour)", "currencyUSD" if prices.currency == "USD" else "short",
               [(promql.replica_cost_per_hour(replica_prices(tuned, prices)), "cost per hour")], x=12, y=16),
    ]
    return {"uid": f"{settings.name}-serve"[:40], "title": f"{settings.name}: Ray Serve against its target",
            "tags": ["ray-serve", "rayserve-tuner"], "timezone": "browser", "schemaVersion": 39, "version": 1,
            "editable": True, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                     "query": "prometheus", "current": {}, "hide": 0}]},
            "annotations": {"list": []}, "panels": panels,
            "description": f"Exported by rayserve-tuner from {tuned.source}"
                           + (f"; target {tuned.target.text}" if tuned.target else "")}


def dashboard_json(board: dict) -> str:
    """The dashboard as Grafana imports it (stable key order and indentation)."""
    return json.dumps(board, indent=2) + "\n"


def configmap(board: dict, settings: ExportSettings) -> dict:
    """A ConfigMap Grafana's dashboard sidecar (kube-prometheus-stack) loads the dashboard from."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{settings.name}-dashboard", "namespace": settings.namespace,
                         "labels": {"grafana_dashboard": "1", "app.kubernetes.io/name": settings.name,
                                    "app.kubernetes.io/managed-by": "rayserve-tuner"}},
            "data": {f"{settings.name}.json": dashboard_json(board)}}
