"""Every PromQL expression the project uses, each a named function.

Trials, reports and the Grafana dashboard all take their queries from here. Windows are
Prometheus durations ("60s"); a quantile over a window is `histogram_quantile` over the
buckets' increase in that window, so it is interpolated inside one bucket (Serve's latency
buckets below). Serve's latency histograms are in ms; vLLM's in s.
"""

from __future__ import annotations

# Ray Serve 2.60's DEFAULT_LATENCY_BUCKET_MS (RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS overrides it).
SERVE_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 60000,
                            120000, 300000, 600000)

# Serve's own health probes are HTTP requests too; they are not user traffic.
_USER_ROUTES = 'route!~"/-/.*"'
_DEPLOYMENT = "application, deployment"


def _routes(route: str | None) -> str:
    return _USER_ROUTES + (f',route="{route}"' if route else "")


def _ok(route: str | None) -> str:
    return _routes(route) + ',status_code=~"[23].."'


def _per_deployment(series: str) -> str:
    return f"sum by ({_DEPLOYMENT}) ({series})"


def _failed(route: str | None) -> str:
    return _routes(route) + ',status_code!~"[23].."'


# ---- the proxy: what users of the HTTP routes get

def http_latency_quantile_ms(q: float, window: str, route: str | None = None, per_route: bool = True) -> str:
    """The q-quantile of end-to-end latency at the Serve proxy over `window`, per (application,
    route), or over all user routes with `per_route=False`; `route` keeps one route."""
    by = "le, application, route" if per_route else "le"
    return (f"histogram_quantile({q}, sum by ({by}) "
            f"(increase(ray_serve_http_request_latency_ms_bucket{{{_routes(route)}}}[{window}])))")


def http_requests(window: str) -> str:
    """Requests per (application, route, status_code) that the proxy answered in `window`."""
    return (f"sum by (application, route, status_code) "
            f"(increase(ray_serve_num_http_requests_total{{{_USER_ROUTES}}}[{window}]))")


def http_request_rate(window: str) -> str:
    """Requests per second answered at the proxy per (application, route), averaged over `window`."""
    return f"sum by (application, route) (rate(ray_serve_num_http_requests_total{{{_USER_ROUTES}}}[{window}]))"


def http_error_rate(window: str) -> str:
    """Failed answers (status not 2xx/3xx) per second per (application, route), over `window`."""
    return f"sum by (application, route) (rate(ray_serve_num_http_requests_total{{{_failed(None)}}}[{window}]))"


def http_ok_requests(window: str, route: str | None = None) -> str:
    """Successful answers (2xx/3xx) in `window`, over all user routes or one."""
    return f"sum(increase(ray_serve_num_http_requests_total{{{_ok(route)}}}[{window}]))"


def http_ok_rate(window: str, route: str | None = None) -> str:
    """Successful answers (2xx/3xx) per second over `window`, all user routes or one."""
    return f"sum(rate(ray_serve_num_http_requests_total{{{_ok(route)}}}[{window}]))"


def http_error_ratio(window: str, route: str | None = None) -> str:
    """Fraction of answers in `window` that failed (status not 2xx/3xx), all user routes or one."""
    total = f"sum(increase(ray_serve_num_http_requests_total{{{_routes(route)}}}[{window}]))"
    failed = f"sum(increase(ray_serve_num_http_requests_total{{{_failed(route)}}}[{window}]))"
    return f"({failed} or vector(0)) / {total}"


# ---- deployments: inside the app

def deployment_latency_quantile_ms(q: float, window: str) -> str:
    """The q-quantile of processing latency inside each deployment's replicas over `window`
    (Serve excludes the router's queue wait from it)."""
    return (f"histogram_quantile({q}, sum by (le, {_DEPLOYMENT}) "
            f"(increase(ray_serve_deployment_processing_latency_ms_bucket[{window}])))")


def _mean_per_deployment(histogram: str, window: str) -> str:
    return (f"{_per_deployment(f'increase({histogram}_sum[{window}])')} / "
            f"{_per_deployment(f'increase({histogram}_count[{window}])')}")


def deployment_mean_processing_ms(window: str) -> str:
    """Mean processing time of a request inside each deployment's replicas over `window` (Ray
    exports histogram sums from bucket midpoints: a coarse mean)."""
    return _mean_per_deployment("ray_serve_deployment_processing_latency_ms", window)


def deployment_processed(window: str) -> str:
    """Requests each deployment's replicas finished within `window`."""
    return _per_deployment(f"increase(ray_serve_deployment_processing_latency_ms_count[{window}])")


def batch_mean_execution_ms(window: str) -> str:
    """Mean time one @serve.batch call took in each deployment over `window`."""
    return _mean_per_deployment("ray_serve_batch_execution_time_ms", window)


def batches_run(window: str) -> str:
    """@serve.batch calls each deployment ran within `window` (requests / this = mean batch size,
    exactly; Ray exports histogram sums from bucket midpoints, so sum/count is not)."""
    return _per_deployment(f"increase(ray_serve_batch_execution_time_ms_count[{window}])")


def replica_startup_mean_ms() -> str:
    """Mean time from a replica's creation to ready, per deployment, since the controller started."""
    return (f"{_per_deployment('ray_serve_replica_startup_latency_ms_sum')} / "
            f"{_per_deployment('ray_serve_replica_startup_latency_ms_count')}")


def multiplexed_load_mean_ms(window: str) -> str:
    """Mean time a replica took to load a multiplexed model on a miss, over `window`."""
    return _mean_per_deployment("ray_serve_multiplexed_model_load_latency_ms", window)


def multiplexed_loads(window: str) -> str:
    """Multiplexed model loads (cache misses) per deployment within `window`."""
    return _per_deployment(f"increase(ray_serve_multiplexed_model_load_latency_ms_count[{window}])")


def replicas_by_deployment() -> str:
    """Healthy replicas per (application, deployment), as the Serve controller reports them."""
    return _per_deployment("ray_serve_deployment_replica_healthy")


def target_replicas_by_deployment() -> str:
    """The replica count Serve's autoscaler is steering each deployment to."""
    return _per_deployment("ray_serve_autoscaling_target_replicas")


def replica_starts(window: str, lookback: str = "10s") -> str:
    """Replicas of each deployment that appeared within `window` (each replica exports its own
    start counter, so a new series is a new replica); a series seen in the `lookback` before the
    window (at least two scrapes, so a missed one does not make an old replica new) is not."""
    series = "ray_serve_deployment_replica_starts_total"
    return (f"count by ({_DEPLOYMENT}) (last_over_time({series}[{window}]) "
            f"unless last_over_time({series}[{lookback}] offset {window}))")


def ongoing_requests_by_deployment() -> str:
    """Requests executing inside each deployment's replicas now (the replicas' own count)."""
    return _per_deployment("ray_serve_replica_processing_queries")


def queued_requests_by_deployment() -> str:
    """Requests waiting in the callers' routers for a replica of each deployment now."""
    return _per_deployment("ray_serve_deployment_queued_queries")


def replica_cost_per_hour(replica_prices: dict[tuple[str, str], float]) -> str:
    """What the running replicas cost per hour: each (application, deployment)'s healthy
    replicas times its price per replica-hour (tuner.cost's resources x price table)."""
    terms = [f"{price:g} * (sum(ray_serve_deployment_replica_healthy{{application=\"{app}\",deployment=\"{dep}\"}}) "
             f"or vector(0))" for (app, dep), price in sorted(replica_prices.items()) if price > 0]
    return " + ".join(terms) or "vector(0)"


# ---- the LLM backend (vLLM's metric names; the emulator exports the same)

def llm_ttft_quantile_s(q: float, window: str) -> str:
    """The q-quantile of the LLM backend's time to first token (s), over `window`."""
    return f"histogram_quantile({q}, sum by (le) (increase(vllm:time_to_first_token_seconds_bucket[{window}])))"


def llm_itl_quantile_s(q: float, window: str) -> str:
    """The q-quantile of the LLM backend's inter-token latency (s), over `window`."""
    return f"histogram_quantile({q}, sum by (le) (increase(vllm:inter_token_latency_seconds_bucket[{window}])))"


def llm_mean_e2e_s(window: str) -> str:
    """Mean end-to-end time of a request in the LLM backend (s), over `window`."""
    return (f"sum(increase(vllm:e2e_request_latency_seconds_sum[{window}])) / "
            f"sum(increase(vllm:e2e_request_latency_seconds_count[{window}]))")


def llm_mean_prompt_tokens(window: str) -> str:
    """Mean prompt length of the LLM backend's requests over `window`."""
    return (f"sum(increase(vllm:prompt_tokens_total[{window}])) / "
            f"sum(increase(vllm:e2e_request_latency_seconds_count[{window}]))")


def llm_requests_running() -> str:
    """Sequences the LLM backend is running now."""
    return "sum(vllm:num_requests_running)"


def llm_requests_waiting() -> str:
    """Requests waiting in the LLM backend's queue now."""
    return "sum(vllm:num_requests_waiting)"


# ---- nodes

def nodes_by_type() -> str:
    """Ray nodes alive now per node type (head, worker)."""
    return "count by (RayNodeType) (ray_node_cpu_count)"


def node_cpu_utilization_pct() -> str:
    """CPU use of each Ray node in percent of its cores."""
    return "avg by (ip) (ray_node_cpu_utilization)"


def node_memory_used_bytes() -> str:
    """Memory in use on each Ray node."""
    return "sum by (ip) (ray_node_mem_used)"


def scrape_up(job: str) -> str:
    """1 for each successful scrape of `job`, 0 for a failed one (Prometheus's own series; a
    selector, so its raw samples can be read to find holes)."""
    return f'up{{job="{job}"}}'


def trial_series(rate_window: str = "10s") -> dict[str, str]:
    """The range queries a trial records for its whole window, by name; rates and quantiles
    over `rate_window` (several scrapes, so a missed scrape does not leave a hole)."""
    return {
        "replicas": replicas_by_deployment(),
        "target_replicas": target_replicas_by_deployment(),
        "ongoing_requests": ongoing_requests_by_deployment(),
        "queued_requests": queued_requests_by_deployment(),
        "request_rate": http_request_rate(rate_window),
        "error_rate": http_error_rate(rate_window),
        "latency_p50_ms": http_latency_quantile_ms(0.5, rate_window),
        "latency_p99_ms": http_latency_quantile_ms(0.99, rate_window),
        "deployment_latency_p99_ms": deployment_latency_quantile_ms(0.99, rate_window),
        "llm_running": llm_requests_running(),
        "llm_waiting": llm_requests_waiting(),
        "llm_ttft_p99_s": llm_ttft_quantile_s(0.99, rate_window),
        "llm_itl_p99_s": llm_itl_quantile_s(0.99, rate_window),
        "nodes": nodes_by_type(),
        "node_cpu_pct": node_cpu_utilization_pct(),
        "node_memory_bytes": node_memory_used_bytes(),
    }


# What to watch while a trial runs: offered load and its answer, the tail, and the autoscaler.
LIVE_PANELS = ("request_rate", "error_rate", "latency_p99_ms", "replicas", "queued_requests")


def graph_url(prometheus_url: str, queries: list[str], range_s: int = 600, step_s: float | None = None) -> str:
    """Prometheus's own graph page (its `/graph` UI, which takes panels as `g<i>.expr` URL
    parameters) with one panel per query over the last `range_s` seconds: a live view of a
    running trial without Grafana."""
    from urllib.parse import urlencode

    params = {}
    for i, q in enumerate(queries):
        params |= {f"g{i}.expr": q, f"g{i}.tab": "0", f"g{i}.range_input": f"{range_s}s"}
        if step_s:
            params[f"g{i}.step_input"] = f"{step_s:g}"
    return f"{prometheus_url.rstrip('/')}/graph?{urlencode(params)}"


def live_view_url(prometheus_url: str, rate_window: str, range_s: int = 600) -> str:
    """The graph page of a trial's key series (`LIVE_PANELS` of `trial_series`)."""
    series = trial_series(rate_window)
    return graph_url(prometheus_url, [series[name] for name in LIVE_PANELS], range_s)
