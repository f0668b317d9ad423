"""Reading Prometheus: instant queries as (labels, value) rows, range queries as a frame."""

from __future__ import annotations

import json
import math

import pandas as pd
from prometheus_api_client import PrometheusConnect

from tuner.errors import StackError


class Prometheus:
    """A Prometheus server at `url`."""

    def __init__(self, url: str):
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True)

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as e:  # the client raises its own and requests' errors
            raise StackError(f"Prometheus query failed at {self.url}: {e}") from e

    def vector(self, expr: str, at: float | None = None) -> list[tuple[dict, float]]:
        """Evaluate `expr` now (or at unix time `at`); rows with a NaN value (empty histograms) are dropped."""
        params = {"time": f"{at:.3f}"} if at is not None else None
        result = self._call(self._client.custom_query, expr, params=params)
        rows = [(r["metric"], float(r["value"][1])) for r in result]
        return [(m, v) for m, v in rows if not math.isnan(v)]

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The single value of `expr`, or None when it has no data."""
        rows = self.vector(expr, at)
        return rows[0][1] if rows else None

    def matrix(self, expr: str, start: float, end: float, step_s: float) -> pd.DataFrame:
        """`expr` over [start, end] every `step_s`: columns labels (JSON), t (unix s), value; NaNs dropped."""
        result = self._call(self._client.custom_query_range, expr, start_time=_dt(start), end_time=_dt(end),
                            step=f"{step_s:g}s")
        rows = [(json.dumps(r["metric"], sort_keys=True), float(t), float(v))
                for r in result for t, v in r["values"]]
        df = pd.DataFrame(rows, columns=["labels", "t", "value"])
        return df[~df["value"].isna()].reset_index(drop=True)

    def raw_samples(self, selector: str, start: float, at: float) -> list[tuple[float, float]]:
        """Every stored sample of the series `selector` picks over [start, at], as (unix s, value)."""
        w = f"{max(1, math.ceil(at - start))}s"
        result = self._call(self._client.custom_query, f"{selector}[{w}]", params={"time": f"{at:.3f}"})
        return sorted((float(t), float(v)) for r in result for t, v in r.get("values", []))

    def build_version(self) -> str | None:
        """The server's version, if it says."""
        import httpx

        try:
            return httpx.get(f"{self.url}/api/v1/status/buildinfo", timeout=5).json()["data"]["version"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def ready(self) -> bool:
        """Whether the server answers its readiness probe."""
        import httpx

        try:
            return httpx.get(f"{self.url}/-/ready", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False


def _dt(t: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc)
