"""`result.json`: the one schema every trial writes, real or simulated (pure, versioned).

Times are unix seconds; timelines are [seconds since the load window's start, value] pairs.
Latencies are ms. Client numbers come from every request's own record (exact percentiles);
server numbers from Prometheus histograms (interpolated within a bucket).
`python -m tuner.result` prints the JSON Schema.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tuner.atomic import write_text
from tuner.cost import Cost
from tuner.target import Clause

SCHEMA_VERSION = 1
Status = Literal["met", "missed", "unmeasured"]
EXIT_CODES: dict[str, int] = {"met": 0, "missed": 1, "unmeasured": 3}


class Percentiles(BaseModel):
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(None, alias="p99.9")
    max: float | None = None
    mean: float | None = None

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class RouteResult(BaseModel):
    """One route (or all of them) from the client's records, with the server's view beside it."""

    arrivals: int = Field(description="requests due in the load window")
    sent: int
    ok: int = Field(description="answered with 2xx/3xx")
    errors: int = Field(description="answered with a failure or a transport error")
    rejected: int = Field(0, description="of errors: refused with 503 (Serve's backpressure: max_queued_requests)")
    timeouts: int = Field(0, description="of errors: no answer within the client's or the server's timeout")
    degraded: int = Field(0, description="of ok: answered, but marked degraded by the app")
    dropped: int = Field(description="not sent: the generator's in-flight cap was reached")
    unfinished: int = Field(description="sent but not answered before the run ended")
    offered_rps: float | None
    throughput_rps: float | None = Field(description="ok answers per second of the load window")
    error_rate: float | None = Field(description="(errors + unfinished + dropped) / arrivals")
    latency_ms: Percentiles = Field(description="from the scheduled send (what the user sees)")
    service_ms: Percentiles = Field(description="from the actual send")
    ttft_ms: Percentiles
    itl_ms: Percentiles
    top_errors: dict[str, int] = Field(default_factory=dict)
    server_latency_ms: Percentiles | None = Field(None, description="Serve proxy histogram")
    server_requests: float | None = None
    server_error_rate: float | None = None


class DeploymentResult(BaseModel):
    """One deployment inside the app, from Prometheus."""

    replicas_min: float | None = None
    replicas_max: float | None = None
    replicas_mean: float | None = None
    replica_starts: int | None = None
    ongoing_mean: float | None = None
    ongoing_max: float | None = None
    queued_max: float | None = None
    processing_ms: Percentiles | None = None


class ClauseVerdict(BaseModel):
    clause: Clause
    client: float | None = Field(description="measured on the client records, base units")
    server: float | None = Field(description="the server's histograms over the same window (LLM backend for ttft/itl)")
    passed: bool
    margin: float | None = Field(description="relative slack on the client value; positive when met")


class TargetResult(BaseModel):
    text: str
    clauses: list[ClauseVerdict]


class GeneratorHealth(BaseModel):
    saturated: bool
    reasons: list[str] = Field(default_factory=list)
    lag_ms_p99: float | None = None
    cpu_pct: float | None = None
    lost_records: int = Field(0, description="arrivals the generators were given that have no record")
    limits: dict[str, float] = Field(default_factory=dict)


class ConfigInfo(BaseModel):
    path: str | None
    hash: str = Field(description="sha256 of the canonical JSON of the Serve config")
    serve_config: dict


class ScenarioInfo(BaseModel):
    name: str
    path: str | None = None
    options: list[str] = Field(default_factory=list, description="arguments passed to the scenario")
    duration_s: float
    warmup_s: float = 0.0
    seed: int = 0
    prime: bool = Field(False, description="each multiplexed model id of the trial requested once before the warm-up "
                                           "(tuner.prime); multiplexed replicas start empty either way")
    expected_arrivals: float | None = None
    peak_rps: float | None = None


class Window(BaseModel):
    start: float = Field(description="unix time of the load window's start (the shape's t=0)")
    end: float = Field(description="start + duration")
    drained: float | None = Field(None, description="when the last request finished")
    collected_at: float | None = Field(None, description="the instant the server figures were evaluated at")


class DeployInfo(BaseModel):
    """What deploying the config did before the load (real trials)."""

    replaced: list[str] = Field(description="deployments whose replicas were all replaced (new actors needed)")
    started: int = Field(description="replicas started to reach the starting counts")
    stopped: int = Field(description="replicas stopped to reach the starting counts")
    replicas: dict[str, int] = Field(description="replicas per deployment when the trial began")


class Spread(BaseModel):
    values: list[float | None]
    median: float | None
    cv: float | None = Field(description="coefficient of variation (sample std / mean)")


class RepeatInfo(BaseModel):
    count: int
    runs: list[str] = Field(description="each repeat's folder, relative to this file")
    chosen: str = Field(description="the repeat whose timelines and tables this file shows (median client p99)")
    spread: dict[str, Spread]


class SimInfo(BaseModel):
    """How a simulated trial was made."""

    calibration: str
    calibration_source: str = ""
    cluster: str = Field(description="fixed, ray-autoscaler or hpa")
    llm_hpa: bool = False
    events: int
    wall_s: float
    speedup: float = Field(description="simulated seconds (warm-up, load, drain) per wall second")


class FaultResult(BaseModel):
    """A fault the trial injected (tuner/faults.py) and what it did to the requests."""

    spec: str
    kind: str
    start_s: float = Field(description="planned, seconds into the load window")
    duration_s: float | None = None
    options: dict[str, str | float] = Field(default_factory=dict)
    injected_s: float | None = Field(None, description="when it was injected, seconds into the load window")
    done: str | None = Field(None, description="what was done")
    error: str | None = Field(None, description="why it could not be injected")
    effect: dict | None = Field(None, description="requests, failures, degraded answers and p99 before, during and "
                                                  "after it; recovery_s from its end until no more failures")


class GapResult(BaseModel):
    """A span in which Prometheus recorded nothing from Ray (tuner/gaps.py)."""

    start_s: float = Field(description="the last scrape before it, seconds into the load window")
    end_s: float = Field(description="the first scrape after it, seconds into the load window")


class AbortInfo(BaseModel):
    """`--abort-on-fail`: the clause that could no longer hold, whatever the rest of the run did."""

    clause: str
    at_s: float = Field(description="when, seconds into the load window")


class TrialResult(BaseModel):
    """A trial: one configuration, one scenario, one verdict."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["trial"] = "trial"
    backend: Literal["real", "sim"]
    status: Status
    partial: bool = Field(False, description="the trial was cut short; what it recorded is kept")
    reasons: list[str] = Field(default_factory=list, description="why unmeasured, or notes")
    config: ConfigInfo
    scenario: ScenarioInfo
    target: TargetResult
    window: Window | None = None
    overall: RouteResult | None = None
    routes: dict[str, RouteResult] = Field(default_factory=dict)
    deployments: dict[str, DeploymentResult] = Field(default_factory=dict)
    cost: Cost | None = None
    replicas: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)
    nodes: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict, description="cluster layer: worker pods per group, and LLM engines, over time")
    generator: GeneratorHealth | None = None
    deploy: DeployInfo | None = None
    timings_s: dict[str, float] = Field(default_factory=dict, description="phases: check, deploy, warmup, load, collect")
    versions: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="relative to this file")
    repeat: RepeatInfo | None = None
    simulation: SimInfo | None = None
    faults: list[FaultResult] = Field(default_factory=list)
    gaps: list[GapResult] = Field(default_factory=list, description="holes in Prometheus's record of the trial")
    aborted: AbortInfo | None = Field(None, description="--abort-on-fail fired: real trials stopped the load then "
                                                        "(the window ends there); simulated ones run whole and say "
                                                        "when it would have stopped (the verdict is the same)")

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def route_from_summary(g: dict) -> RouteResult:
    """A route's client figures from a loadgen summary group (loadgen.summary)."""
    def pct(prefix: str) -> Percentiles:
        return Percentiles(**{k: g.get(f"{prefix}_{k.replace('_', '.') if k == 'p99_9' else k}")
                              for k in ("p50", "p90", "p95", "p99", "p99_9", "max", "mean")})

    failed = g["errors"] + g["unfinished"] + g["dropped"]
    return RouteResult(
        arrivals=g["arrivals"], sent=g["sent"], ok=g["ok"], errors=g["errors"], dropped=g["dropped"],
        rejected=g.get("rejected", 0), timeouts=g.get("timeouts", 0), degraded=g.get("degraded", 0),
        unfinished=g["unfinished"], offered_rps=g["offered_rps"], throughput_rps=g["throughput_rps"],
        error_rate=failed / g["arrivals"] if g["arrivals"] else None, latency_ms=pct("latency_ms"),
        service_ms=pct("service_ms"), ttft_ms=pct("ttft_ms"), itl_ms=pct("itl_ms"), top_errors=g["top_errors"])


def verdict_status(clauses: list[ClauseVerdict]) -> Status:
    """met when every clause passed, else missed."""
    return "met" if all(c.passed for c in clauses) else "missed"


def spread(values: list[float | None]) -> Spread:
    """Median and coefficient of variation of the measured values (None entries skipped)."""
    xs = [v for v in values if v is not None]
    med = statistics.median(xs) if xs else None
    cv = None
    if len(xs) >= 2 and statistics.fmean(xs):
        cv = statistics.stdev(xs) / abs(statistics.fmean(xs))
    return Spread(values=values, median=med, cv=cv)


def combine_repeats(results: list[TrialResult], names: list[str]) -> TrialResult:
    """One result from repeats of a trial: each clause judged on the median of its values (missed
    outright if a repeat was aborted early); the tables and timelines of the repeat with the
    median client p99; the spread of each figure."""
    measured = [r for r in results if r.status != "unmeasured" and r.overall is not None]
    ranked = sorted(measured, key=lambda r: r.overall.latency_ms.p99 if r.overall.latency_ms.p99 is not None else float("inf"))
    chosen = ranked[(len(ranked) - 1) // 2] if ranked else results[-1]
    name = names[results.index(chosen)]
    out = chosen.model_copy(deep=True)
    figures: dict[str, list[float | None]] = {}
    for i, cv in enumerate(out.target.clauses):
        client = [r.target.clauses[i].client if i < len(r.target.clauses) else None for r in results]
        server = [r.target.clauses[i].server if i < len(r.target.clauses) else None for r in results]
        figures[f"target {cv.clause.name}"] = client
        figures[f"target {cv.clause.name} (server)"] = server
        cv.client, cv.server = spread(client).median, spread(server).median
        cv.passed, cv.margin = cv.clause.holds(cv.client), cv.clause.margin(cv.client)
    for q in ("p50", "p90", "p95", "p99", "p99_9"):
        label = q.replace("_", ".")
        figures[f"client {label}"] = [getattr(r.overall.latency_ms, q) if r.overall else None for r in results]
        figures[f"server {label}"] = [getattr(r.overall.server_latency_ms, q)
                                      if r.overall and r.overall.server_latency_ms else None for r in results]
    figures["throughput rps"] = [r.overall.throughput_rps if r.overall else None for r in results]
    figures["cost"] = [r.cost.cost if r.cost else None for r in results]
    failed = [n for n, r in zip(names, results) if r.status == "unmeasured"]
    # A repeat stopped early missed for certain (its clause could no longer hold): so do the repeats.
    out.aborted = next((r.aborted for r in results if r.aborted), None)
    out.status = ("unmeasured" if failed or not measured else "missed" if out.aborted
                  else verdict_status(out.target.clauses))
    out.partial = any(r.partial for r in results)
    out.reasons = [f"{n}: {'; '.join(r.reasons[-1:])}" for n, r in zip(names, results) if r.status == "unmeasured"]
    out.files = {k: f"{name}/{v}" for k, v in chosen.files.items()}
    out.repeat = RepeatInfo(count=len(results), runs=names, chosen=name,
                            spread={k: spread(v) for k, v in figures.items()})
    return out


def write_result(path: Path, result: TrialResult) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    write_text(path, result.model_dump_json(indent=2))


def load_result(path: Path) -> TrialResult:
    """Read a result.json."""
    return TrialResult.model_validate_json(Path(path).read_text())


if __name__ == "__main__":
    print(json.dumps(TrialResult.model_json_schema(), indent=2))
