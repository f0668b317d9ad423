"""A load level's figures from its client records: goodput, token rates, TTFT and TPOT (pure).

**Goodput** is what vLLM's `bench serve --goodput` reports (vllm-project/vllm,
vllm/benchmarks/serve.py, `calculate_metrics`): requests per second that succeeded *and* met
every service-level objective, each judged on the request itself. Throughput alone hides an
overload that still answers: past the knee a server keeps answering at its capacity while
more and more answers come too late to be of use; goodput falls there.

Each latency-like clause of the target becomes a per-request bound: `p99<500ms` (or any
percentile) counts a request good when its own latency is within 500 ms; `ttft_pQ` bounds its
time to first token; `itl_pQ` bounds its TPOT, as vLLM's per-request `tpot` objective does (a
request has many inter-token gaps and one TPOT). A bound narrowed to a route applies to that
route's requests only, and one whose value a request lacks (no TTFT on a route that does not
stream) does not apply to it. Throughput and error-rate clauses judge a whole run, not one
request, and the "succeeded" half already counts the errors. An answer the app marked
`degraded` (/rag without its LLM's answer) succeeded in HTTP terms but is not what was asked
for, so it is not good.

**TPOT** (time per output token, vLLM's definition): (latency - TTFT) / (output tokens - 1)
per streamed request with more than one token: the decode speed a user reads at, where ITL
pools every gap of every request.

Rates are per second of the load window (`window_s`), as the target's `throughput` clause
counts them; latencies come from the scheduled send, as every client figure here does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from loadgen.summary import failure_kind, ok_mask
from tuner.target import Clause, Target

_BELOW = {"<": np.less, "<=": np.less_equal}


class LoadFigures(BaseModel):
    """One load level as a user of the service saw it; None where nothing was measured."""

    arrivals: int | None = None
    ok: int | None = None
    good: int | None = None
    offered_rps: float | None = None
    throughput_rps: float | None = None
    goodput_rps: float | None = None
    error_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    output_tokens_per_s: float | None = None


def _floats(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=float, na_value=np.nan)


def tpot_ms(records: pd.DataFrame) -> np.ndarray:
    """Each record's TPOT in ms; NaN where it has none (not streamed, one token or fewer)."""
    tokens = _floats(records["output_tokens"])
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = (_floats(records["latency_ms"]) - _floats(records["ttft_ms"])) / (tokens - 1)
    return np.where(tokens > 1, tpot, np.nan)


def request_bounds(target: Target) -> list[Clause]:
    """The target's clauses that bound each request's latency, TTFT or TPOT."""
    return [c for c in target.clauses if c.metric in ("latency", "ttft", "itl")]


def meets_bounds(records: pd.DataFrame, target: Target) -> np.ndarray:
    """Whether each record is within every per-request bound that applies to it."""
    values = {"latency": _floats(records["latency_ms"]), "ttft": _floats(records["ttft_ms"]),
              "itl": tpot_ms(records)}
    routes = records["route"].astype(object).to_numpy()
    within = np.ones(len(records), dtype=bool)
    for clause in request_bounds(target):
        value = values[clause.metric]
        applies = np.isfinite(value) & (routes == clause.route if clause.route else True)
        with np.errstate(invalid="ignore"):
            within &= ~applies | _BELOW[clause.op](value, clause.threshold)
    return within


def good_mask(records: pd.DataFrame, target: Target) -> np.ndarray:
    """Records answered well (not failed, not degraded) within every bound of the target."""
    return (failure_kind(records) == "ok").to_numpy() & meets_bounds(records, target)


def _pct(values: np.ndarray, q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else None


def load_figures(records: pd.DataFrame, target: Target, window_s: float) -> LoadFigures:
    """The figures of one load level's records (loadgen.records.load frame) over `window_s`.

    Latency percentiles take every sent request, as the target's `pN` clauses do (one cut off
    unanswered enters at its lower bound); TTFT, TPOT and tokens take the successful ones, as
    vLLM reports them."""
    if records.empty or window_s <= 0:
        return LoadFigures(arrivals=len(records))
    ok = ok_mask(records).to_numpy()
    sent = ~records["dropped"].to_numpy(dtype=bool)
    latency, ttft, tpot = _floats(records["latency_ms"]), _floats(records["ttft_ms"]), tpot_ms(records)
    tokens = _floats(records["output_tokens"])[ok]
    n, n_ok, n_good = len(records), int(ok.sum()), int(good_mask(records, target).sum())
    return LoadFigures(
        arrivals=n, ok=n_ok, good=n_good, offered_rps=n / window_s, throughput_rps=n_ok / window_s,
        goodput_rps=n_good / window_s, error_rate=(n - n_ok) / n,
        latency_p50_ms=_pct(latency[sent], 50), latency_p99_ms=_pct(latency[sent], 99),
        ttft_p50_ms=_pct(ttft[ok], 50), ttft_p99_ms=_pct(ttft[ok], 99),
        tpot_p50_ms=_pct(tpot[ok], 50), tpot_p99_ms=_pct(tpot[ok], 99),
        output_tokens_per_s=float(np.nansum(tokens)) / window_s if np.isfinite(tokens).any() else None)
