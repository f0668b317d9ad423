"""What a real trial needs from the system under test, named once (`SystemUnderTest`).

The real backend (`tuner.trial`), the fault injector and the search's real evaluations use
only this. The local stack (`tuner.stack.Stack`) is its first implementation; a cluster
reached by its URLs is meant to be a second one, not a fork of the trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MetricsPipeline:
    """How a sample travels from a replica to Prometheus: Serve hands its metrics to Ray every
    export interval, Ray exports them every report interval, Prometheus scrapes them."""

    scrape_interval_s: float
    serve_export_ms: int
    ray_report_ms: int

    def flush_s(self) -> float:
        """How long after an instant every sample of it is in Prometheus (two scrapes: one may
        start just before the sample is exported)."""
        return (self.serve_export_ms + self.ray_report_ms) / 1000 + 2 * self.scrape_interval_s

    def rate_window(self) -> str:
        """The range of a `rate()` that always holds enough scrapes of a series exported every
        report interval."""
        return f"{max(5, int(4 * self.scrape_interval_s + self.ray_report_ms / 1000))}s"


class SystemUnderTest(Protocol):
    """The Serve application's system, as a trial reaches it."""

    @property
    def dashboard_url(self) -> str:
        """Ray's dashboard: Serve's REST API (deploy, status)."""
        ...

    @property
    def prometheus_url(self) -> str: ...

    @property
    def metrics(self) -> MetricsPipeline: ...

    def dashboard_headers(self) -> dict[str, str]:
        """What authenticates a request to the dashboard."""
        ...

    def serve_url(self, serve_config: dict | None = None) -> str:
        """Where Serve's proxy answers for `serve_config` (default: the deployed one)."""
        ...

    def deployed_config(self) -> dict:
        """The Serve config the system was started with (its proxy's address among it)."""
        ...

    def unavailable(self) -> str | None:
        """Why the system cannot take a trial now (one line), or None."""
        ...

    def died(self) -> str | None:
        """What of the system stopped since it was started (one line), or None."""
        ...

    def inject(self, fault) -> str:
        """Perform one `tuner.faults.Fault` now; a line saying what was done."""
        ...
