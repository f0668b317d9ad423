"""What Prometheus saw of a trial window: the server's value for each target clause, per-route
and per-deployment figures, and every trial series over the window (queries from promql)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from tuner import promql
from tuner.names import deployment_key
from tuner.prometheus import Prometheus
from tuner.prometheus_config import RAY_JOB
from tuner.result import DeploymentResult, Percentiles
from tuner.target import Clause, Target

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


@dataclass
class ServerView:
    clause_values: dict[str, float | None]
    routes: dict[str, dict] = field(default_factory=dict)
    overall: dict = field(default_factory=dict)
    deployments: dict[str, DeploymentResult] = field(default_factory=dict)
    replicas: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    series: pd.DataFrame = field(default_factory=pd.DataFrame)
    scrapes: list[float] = field(default_factory=list)  # unix times of every successful scrape of Ray


def window(start: float, at: float) -> str:
    """A Prometheus range covering [start, at] in whole seconds."""
    return f"{max(1, math.ceil(at - start))}s"


def clause_value(prom: Prometheus, clause: Clause, start: float, at: float, duration_s: float) -> float | None:
    """The server's measure of one clause over [start, at], in the clause's base units."""
    w = window(start, at)
    q = (clause.quantile or 0) / 100
    if clause.metric == "latency":
        return prom.scalar(promql.http_latency_quantile_ms(q, w, clause.route, per_route=False), at)
    if clause.metric in ("ttft", "itl"):
        fn = promql.llm_ttft_quantile_s if clause.metric == "ttft" else promql.llm_itl_quantile_s
        v = prom.scalar(fn(q, w), at)
        return None if v is None else v * 1000
    if clause.metric == "error_rate":
        return prom.scalar(promql.http_error_ratio(w, clause.route), at)
    ok = prom.scalar(promql.http_ok_requests(w, clause.route), at)
    return None if ok is None else ok / duration_s


def _by(rows, *labels) -> dict:
    return {tuple(m.get(x) for x in labels) if len(labels) > 1 else m.get(labels[0]): v for m, v in rows}


def collect(prom: Prometheus, target: Target, start: float, end: float, at: float,
            step_s: float, rate_window: str, series_from: float) -> ServerView:
    """Query everything a trial reports: `start`-`end` is the load window, `at` is when every
    request had finished and been scraped; series cover [series_from, at]."""
    duration = end - start
    view = ServerView({c.text: clause_value(prom, c, start, at, duration) for c in target.clauses})
    w = window(start, at)

    for name, q in QUANTILES.items():
        for route, v in _by(prom.vector(promql.http_latency_quantile_ms(q, w), at), "route").items():
            view.routes.setdefault(route, {"latency": {}})["latency"][name] = v
        view.overall.setdefault("latency", {})[name] = prom.scalar(
            promql.http_latency_quantile_ms(q, w, per_route=False), at)
    for (route, status), n in _by(prom.vector(promql.http_requests(w), at), "route", "status_code").items():
        r = view.routes.setdefault(route, {"latency": {}})
        r["requests"] = r.get("requests", 0.0) + n
        r["failed"] = r.get("failed", 0.0) + (0.0 if status[:1] in "23" else n)
    totals = [r for r in view.routes.values() if "requests" in r]
    view.overall["requests"] = sum(r["requests"] for r in totals)
    view.overall["failed"] = sum(r["failed"] for r in totals)

    frames = []
    for name, expr in promql.trial_series(rate_window).items():
        df = prom.matrix(expr, series_from, at, step_s)
        df.insert(0, "query", name)
        frames.append(df)
    view.series = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    view.replicas = _timelines(view.series, "replicas")
    view.scrapes = [t for t, up in prom.raw_samples(promql.scrape_up(RAY_JOB), series_from, at) if up == 1]
    view.deployments = _deployments(prom, view.series, start, end, at, rate_window)
    return view


def _timelines(series: pd.DataFrame, query: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for labels, g in series[series["query"] == query].groupby("labels"):
        m = json.loads(labels)
        out[deployment_key(m.get("application", ""), m.get("deployment", ""))] = list(zip(g["t"], g["value"]))
    return out


def _deployments(prom: Prometheus, series: pd.DataFrame, start: float, end: float, at: float,
                 rate_window: str) -> dict[str, DeploymentResult]:
    w = window(start, at)
    inside = series[(series["t"] >= start) & (series["t"] <= end)]

    def stats(query: str) -> dict[str, pd.Series]:
        out = {}
        for labels, g in inside[inside["query"] == query].groupby("labels"):
            m = json.loads(labels)
            out[deployment_key(m.get("application", ""), m.get("deployment", ""))] = g["value"]
        return out

    replicas, ongoing, queued = stats("replicas"), stats("ongoing_requests"), stats("queued_requests")
    starts = {deployment_key(*k): int(v) for k, v in _by(prom.vector(promql.replica_starts(w, rate_window), at),
                                                           "application", "deployment").items()}
    processing: dict[str, dict] = {}
    for name, q in QUANTILES.items():
        for k, v in _by(prom.vector(promql.deployment_latency_quantile_ms(q, w), at), "application", "deployment").items():
            processing.setdefault(deployment_key(*k), {})[name] = v
    out = {}
    for key in sorted(set(replicas) | set(processing)):
        r, o, qd = replicas.get(key), ongoing.get(key), queued.get(key)
        out[key] = DeploymentResult(
            replicas_min=_f(r, "min"), replicas_max=_f(r, "max"), replicas_mean=_f(r, "mean"),
            replica_starts=starts.get(key, 0), ongoing_mean=_f(o, "mean"), ongoing_max=_f(o, "max"),
            queued_max=_f(qd, "max"), processing_ms=Percentiles(**processing[key]) if key in processing else None)
    return out


def _f(s: pd.Series | None, how: str) -> float | None:
    return None if s is None or s.empty else float(getattr(s, how)())
