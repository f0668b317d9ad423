"""The target language and its verdicts (pure).

A target is k6-style clauses joined by commas, all of which must hold:

    p99<500ms, p95[/rag]<=800ms, ttft_p99<1s, itl_p99<50ms, error_rate<1%, throughput>=20rps

- `pQ` (latency), `ttft_pQ` (time to first token), `itl_pQ` (inter-token latency): the
  Q-th percentile, 0 < Q < 100, in `ms` or `s`; upper bounds (`<`, `<=`).
- `error_rate`: in `%`, an upper bound. From the client's side, a request that failed, was
  never answered before the run ended, or was dropped at the generator's in-flight cap is an
  error: the user did not get an answer.
- `throughput`: successful answers per second over the load window, in `rps`; a lower bound.
- `[/route]` after the metric narrows a clause to one route.

Each clause is judged on the client records (`client_value`); trials also report the server's
view from Prometheus next to it. Malformed targets raise `TargetError` (a usage error).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from loadgen.records import itl_values
from loadgen.summary import ok_mask
from tuner.errors import UsageError

Metric = Literal["latency", "ttft", "itl", "error_rate", "throughput"]
_LATENCY_UNITS = {"ms": 1.0, "s": 1000.0}
_UNITS: dict[str, dict[str, float]] = {
    "latency": _LATENCY_UNITS, "ttft": _LATENCY_UNITS, "itl": _LATENCY_UNITS,
    "error_rate": {"%": 0.01}, "throughput": {"rps": 1.0},
}
_UPPER = ("<", "<=")
_LOWER = (">", ">=")
_METRIC_RE = re.compile(r"(?P<prefix>ttft_|itl_)?p(?P<q>[0-9]+(?:\.[0-9]+)?)|(?P<named>error_rate|throughput)")
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


class TargetError(UsageError):
    """A malformed --target; the message names the clause, the column and what was expected."""


class Clause(BaseModel):
    """One judged condition; `threshold` in base units: ms, a fraction, or requests/s."""

    model_config = ConfigDict(frozen=True)

    text: str
    metric: Metric
    quantile: float | None = None
    route: str | None = None
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    unit: str

    @property
    def name(self) -> str:
        """The clause's measured quantity, e.g. `p99[/rag]`."""
        base = {"latency": "p", "ttft": "ttft_p", "itl": "itl_p"}.get(self.metric)
        head = f"{base}{self.quantile:g}" if base else self.metric
        return head + (f"[{self.route}]" if self.route else "")

    def holds(self, value: float | None) -> bool:
        """Whether a measured value (base units) meets the clause; no value never does."""
        if value is None or not np.isfinite(value):
            return False
        return {"<": value < self.threshold, "<=": value <= self.threshold,
                ">": value > self.threshold, ">=": value >= self.threshold}[self.op]

    @property
    def upper(self) -> bool:
        """Whether the clause bounds its figure from above (latency, error rate)."""
        return self.op in _UPPER

    def margin(self, value: float | None) -> float | None:
        """Relative slack: positive when met, e.g. 0.2 = 20 % below an upper bound."""
        if value is None or not np.isfinite(value):
            return None
        scale = abs(self.threshold) or 1.0
        return (self.threshold - value) / scale if self.upper else (value - self.threshold) / scale

    def display(self, value: float | None) -> str:
        """A value in the clause's own unit, e.g. `432ms`, `0.4%`."""
        if value is None or not np.isfinite(value):
            return "-"
        return f"{value / _UNITS[self.metric][self.unit]:.4g}{self.unit}"


class Target(BaseModel):
    """All clauses of one --target."""

    model_config = ConfigDict(frozen=True)

    text: str
    clauses: tuple[Clause, ...]

    def latency_bounds_ms(self) -> list[float]:
        """Thresholds of the latency-like clauses, in ms."""
        return [c.threshold for c in self.clauses if c.metric in ("latency", "ttft", "itl")]


def parse_target(text: str) -> Target:
    """Parse a --target string; raises TargetError naming what is wrong and where."""
    if not text or not text.strip():
        raise TargetError("--target is empty; e.g. 'p99<500ms' or 'p95[/rag]<800ms,error_rate<1%'")
    clauses, start = [], 0
    for n, part in enumerate(text.split(","), 1):
        clauses.append(_parse_clause(text, part, start, n))
        start += len(part) + 1
    return Target(text=text, clauses=tuple(clauses))


def _parse_clause(full: str, part: str, offset: int, n: int) -> Clause:
    pos = len(part) - len(part.lstrip())

    def fail(msg: str, at: int) -> TargetError:
        return TargetError(f"--target {full!r}: clause {n} {part.strip()!r}: {msg} at column {offset + at + 1}")

    if not part.strip():
        raise fail("empty clause (two commas, or a comma at an end)", pos)
    m = _METRIC_RE.match(part, pos)
    if not m:
        raise fail("expected a metric: pN, ttft_pN, itl_pN, error_rate or throughput", pos)
    if m.group("named"):
        metric, quantile = m.group("named"), None
    else:
        metric = {"ttft_": "ttft", "itl_": "itl", None: "latency"}[m.group("prefix")]
        quantile = float(m.group("q"))
        if not 0 < quantile < 100:
            raise fail(f"percentile must be between 0 and 100 (got {m.group('q')})", m.start("q"))
    pos = m.end()
    route = None
    if part.startswith("[", pos):
        close = part.find("]", pos)
        if close < 0:
            raise fail("'[' without ']'", pos)
        route = part[pos + 1:close].strip()
        if not route.startswith("/") or any(ch.isspace() or ch in '"\\{}' for ch in route):
            raise fail(f"route must be a path such as /rag (got {route!r})", pos + 1)
        pos = close + 1
    pos = _skip_space(part, pos)
    op = next((o for o in ("<=", ">=", "<", ">") if part.startswith(o, pos)), None)
    if op is None:
        got = part[pos:pos + 2] or "end of clause"
        raise fail(f"expected one of < <= > >= after {part[m.start():pos].strip()!r} (got {got!r})", pos)
    allowed = _UPPER if metric not in ("throughput",) else _LOWER
    if op not in allowed:
        kind = "a lower bound (> or >=)" if metric == "throughput" else "an upper bound (< or <=)"
        raise fail(f"{metric if metric in ('error_rate', 'throughput') else 'latency'} must be {kind}", pos)
    pos = _skip_space(part, pos + len(op))
    num = _NUMBER_RE.match(part, pos)
    if not num:
        raise fail(f"expected a number after {op!r}", pos)
    value = float(num.group())
    if not np.isfinite(value):  # hundreds of digits overflow a float
        raise fail(f"bound is too large (a number of {len(num.group())} characters)", num.start())
    pos = _skip_space(part, num.end())
    rest = part[pos:].rstrip()
    units = _UNITS[metric]
    if not rest:
        raise fail(f"missing unit after {num.group()} (use {' or '.join(units)})", pos)
    if rest not in units:
        unit = max((u for u in units if rest.startswith(u)), key=len, default=None)
        tail = rest[len(unit):].strip() if unit else ""
        if tail and any(ch in tail for ch in "<>"):  # 'p99<500ms; error_rate<1%': a unit, then another clause
            raise fail(f"unexpected {tail!r} after {num.group()}{unit}: join clauses with "
                       f"commas, e.g. 'p99<500ms,error_rate<1%'", pos + len(unit))
        raise fail(f"unknown unit {rest!r} for {metric} (use {' or '.join(units)})", pos)
    threshold = value * units[rest]
    if metric == "error_rate" and value > 100:
        raise fail(f"error_rate cannot exceed 100% (got {num.group()}%)", num.start())
    if metric != "error_rate" and value == 0:
        raise fail(f"{metric} bound must be above 0", num.start())
    return Clause(text=part.strip(), metric=metric, quantile=quantile, route=route, op=op,
                  threshold=threshold, unit=rest)


def _skip_space(s: str, pos: int) -> int:
    while pos < len(s) and s[pos].isspace():
        pos += 1
    return pos


def client_value(clause: Clause, records: pd.DataFrame, window_s: float) -> float | None:
    """The clause's quantity measured on client records (loadgen.records.with_derived frame):
    latencies in ms, error_rate a fraction, throughput per second of `window_s`."""
    df = records if clause.route is None else records[records["route"] == clause.route]
    if df.empty:
        return None
    sent = df[~df["dropped"]]
    if clause.metric == "latency":
        return _percentile(sent["latency_ms"], clause.quantile)
    if clause.metric == "ttft":
        return _percentile(sent["ttft_ms"], clause.quantile)
    if clause.metric == "itl":
        return _percentile(itl_values(sent["itl_ms"]), clause.quantile)
    ok = int(ok_mask(df).sum())
    if clause.metric == "error_rate":
        return (len(df) - ok) / len(df)
    return ok / window_s if window_s > 0 else None


def without_lag(records: pd.DataFrame) -> pd.DataFrame:
    """The records as an on-time generator would have measured them: latency and TTFT less the
    generator's own schedule lag (the server's share is unchanged)."""
    out = records.copy()
    lag = out["lag_ms"].fillna(0.0)
    out["latency_ms"] = out["latency_ms"] - lag
    out["ttft_ms"] = out["ttft_ms"] - lag
    return out


def _percentile(values, q: float) -> float | None:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(np.percentile(arr, q)) if arr.size else None
