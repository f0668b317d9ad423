"""Prometheus metrics of the emulator, named and bucketed like vLLM's (V1 engine)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "EngineMetrics"]

# Bucket boundaries copied from vllm/v1/metrics/loggers.py so dashboards and
# histogram_quantile() behave the same against the emulator and a real vLLM.
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
_TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
_REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)


class EngineMetrics:
    """vLLM-compatible metrics in a private registry (several apps can share a process)."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]

        def metric(kind, name: str, doc: str, **kw):
            return kind(name, doc, labels, registry=self.registry, **kw).labels(model_name)

        self._running = metric(Gauge, "vllm:num_requests_running", "Number of requests in model execution batches.")
        self._waiting = metric(Gauge, "vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self._ttft = metric(Histogram, "vllm:time_to_first_token_seconds",
                            "Histogram of time to first token in seconds.", buckets=_TTFT_BUCKETS)
        self._itl = metric(Histogram, "vllm:inter_token_latency_seconds",
                           "Histogram of inter-token latency in seconds.", buckets=_TOKEN_LATENCY_BUCKETS)
        self._tpot = metric(Histogram, "vllm:time_per_output_token_seconds",
                            "Histogram of time per output token in seconds, (e2e - ttft) / (n - 1) per request.",
                            buckets=_TOKEN_LATENCY_BUCKETS)
        self._e2e = metric(Histogram, "vllm:e2e_request_latency_seconds",
                           "Histogram of e2e request latency in seconds.", buckets=_REQUEST_LATENCY_BUCKETS)
        self._queue = metric(Histogram, "vllm:request_queue_time_seconds",
                             "Histogram of time spent in WAITING phase for request.", buckets=_REQUEST_LATENCY_BUCKETS)
        self._prompt_tokens = metric(Counter, "vllm:prompt_tokens", "Number of prefill tokens processed.")
        self._generation_tokens = metric(Counter, "vllm:generation_tokens", "Number of generation tokens processed.")
        self._success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            ["model_name", "finished_reason"], registry=self.registry,
        )
        self._model_name = model_name

    def track_queues(self, running: Callable[[], int], waiting: Callable[[], int]) -> None:
        """Read the running/waiting gauges from the engine at scrape time."""
        self._running.set_function(running)
        self._waiting.set_function(waiting)

    def observe_prefill(self, num_tokens: int) -> None:
        """Count prompt tokens processed by an engine step."""
        self._prompt_tokens.inc(num_tokens)

    def observe_queue_time(self, seconds: float) -> None:
        """Record how long a request waited before the scheduler admitted it."""
        self._queue.observe(seconds)

    def observe_first_token(self, ttft_s: float) -> None:
        """Record a request's time to first token."""
        self._ttft.observe(ttft_s)
        self._generation_tokens.inc()

    def observe_token(self, itl_s: float) -> None:
        """Record a non-first output token and the gap since the previous one."""
        self._itl.observe(itl_s)
        self._generation_tokens.inc()

    def observe_finished(
        self, finished_reason: str, e2e_s: float, ttft_s: float | None, num_tokens: int
    ) -> None:
        """Record a request leaving the engine (``"length"`` or ``"abort"``)."""
        self._success.labels(self._model_name, finished_reason).inc()
        self._e2e.observe(e2e_s)
        if ttft_s is not None and num_tokens > 1:
            self._tpot.observe((e2e_s - ttft_s) / (num_tokens - 1))

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)
