"""Reading Prometheus: instant queries as plain (labels, value) rows."""

from __future__ import annotations

import math

from prometheus_api_client import PrometheusConnect

from tuner.errors import StackError


class Prometheus:
    """A Prometheus server at `url`."""

    def __init__(self, url: str):
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True)

    def vector(self, expr: str) -> list[tuple[dict, float]]:
        """Evaluate `expr` now; rows with a NaN value (empty histograms) are dropped."""
        try:
            result = self._client.custom_query(expr)
        except Exception as e:  # the client raises its own and requests' errors
            raise StackError(f"Prometheus query failed at {self.url}: {e}") from e
        rows = [(r["metric"], float(r["value"][1])) for r in result]
        return [(m, v) for m, v in rows if not math.isnan(v)]

    def scalar(self, expr: str) -> float | None:
        """The single value of `expr`, or None when it has no data."""
        rows = self.vector(expr)
        return rows[0][1] if rows else None
