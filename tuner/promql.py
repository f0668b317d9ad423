"""Every PromQL expression the project uses, each a named function.

Windows are Prometheus durations ("60s"). Serve's latency histograms are in ms; vLLM's in s.
"""

from __future__ import annotations

# Serve's own health probes are HTTP requests too; they are not user traffic.
_USER_ROUTES = 'route!~"/-/.*"'


def replicas_by_deployment() -> str:
    """Healthy replicas per (application, deployment), as the Serve controller reports them."""
    return "sum by (application, deployment) (ray_serve_deployment_replica_healthy)"


def http_latency_quantile_ms(q: float, window: str) -> str:
    """The q-quantile of end-to-end latency at the proxy per (application, route), over `window`."""
    return (
        f"histogram_quantile({q}, sum by (le, application, route) "
        f"(increase(ray_serve_http_request_latency_ms_bucket{{{_USER_ROUTES}}}[{window}])))"
    )


def http_requests(window: str) -> str:
    """Requests per (application, route, status_code) that the proxy answered in `window`."""
    return (
        f"sum by (application, route, status_code) "
        f"(increase(ray_serve_num_http_requests_total{{{_USER_ROUTES}}}[{window}]))"
    )


def deployment_latency_quantile_ms(q: float, window: str) -> str:
    """The q-quantile of processing latency inside each deployment's replicas, over `window`."""
    return (
        f"histogram_quantile({q}, sum by (le, application, deployment) "
        f"(increase(ray_serve_deployment_processing_latency_ms_bucket[{window}])))"
    )


def llm_ttft_quantile_s(q: float, window: str) -> str:
    """The q-quantile of the LLM backend's time to first token (s), over `window`."""
    return f"histogram_quantile({q}, sum by (le) (increase(vllm:time_to_first_token_seconds_bucket[{window}])))"


def llm_requests_running() -> str:
    """Sequences the LLM backend is running now."""
    return "sum(vllm:num_requests_running)"


def llm_requests_waiting() -> str:
    """Requests waiting in the LLM backend's queue now."""
    return "sum(vllm:num_requests_waiting)"
