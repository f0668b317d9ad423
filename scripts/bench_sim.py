"""Simulator speed (BENCHMARKS.md, "Simulator speed"): events per second of the event loop,
one autoscaled deployment, and the whole app with /rag traffic (the five-hop RAG graph and
the LLM backend), at several rates and durations, on one core.

    taskset -c 0 .venv/bin/python scripts/bench_sim.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from loadgen.arrivals import ArrivalProcess, arrivals  # noqa: E402
from loadgen.shapes import Burst  # noqa: E402
from tuner.calibration_file import accelerator_tables, load_calibration  # noqa: E402
from tuner.paths import SERVE_CONFIG  # noqa: E402
from tuner.sim.cluster import ClusterSpec  # noqa: E402
from tuner.sim.run import simulate  # noqa: E402
from tuner.policies.serve import ServeAutoscaling  # noqa: E402
from tuner.sim.deployment import DeploymentSpec  # noqa: E402
from tuner.sim.engine import Engine  # noqa: E402
from tuner.sim.single import simulate_deployment  # noqa: E402


def bare_loop(n: int) -> float:
    """Events per second of the engine alone (a callback that does nothing)."""
    engine = Engine()
    for i in range(n):
        engine.at(i * 1e-3, _noop)
    t0 = time.perf_counter()
    engine.run()
    return n / (time.perf_counter() - t0)


def _noop(_):
    pass


def one_deployment(rate: float, seconds: float) -> tuple[int, int, float]:
    """A burst at `rate` base (x3 peaks) through one batched, autoscaled deployment."""
    shape = Burst(base_rps=rate, height_rps=2 * rate, width_s=10, period_s=60, first_s=20, seconds=seconds)
    times = arrivals(shape, ArrivalProcess(seed=1)).times
    spec = DeploymentSpec(name="d", max_ongoing_requests=16, max_batch_size=8, batch_wait_timeout_s=0.005)
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=64, target_ongoing_requests=4, upscale_delay_s=10,
                           downscale_delay_s=60, metrics_interval_s=10, look_back_period_s=30)
    t0 = time.perf_counter()
    run = simulate_deployment(spec, lambda size, rng: 0.01 + 0.002 * size, times, autoscaling=cfg, start_s=5,
                              until=seconds)
    return len(times), run.events, time.perf_counter() - t0


def rag_config() -> dict:
    """The shipped config with every RAG deployment autoscaled far enough to carry the load."""
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    for app in cfg["applications"]:
        for d in app["deployments"]:
            if app["name"] == "rag":
                d.pop("num_replicas", None)
                d["autoscaling_config"] = {**d.get("autoscaling_config", {}), "min_replicas": 1, "initial_replicas": 2,
                                           "max_replicas": 64, "target_ongoing_requests": 4, "upscale_delay_s": 10,
                                           "downscale_delay_s": 60, "look_back_period_s": 30, "metrics_interval_s": 10}
    return cfg


def rag_graph(rate: float, seconds: float) -> tuple[int, int, float, float]:
    """A burst (base `rate`, x2 for 10 s every 60 s) of /rag requests through the whole app on a
    cluster with room for every replica (the gpu-h100 calibration, no shared host, four LLM
    engines: one H100-class engine prefills about 25,000 tokens/s, 120 RAG requests/s)."""
    shape = Burst(base_rps=rate, height_rps=rate, width_s=10, period_s=60, first_s=20, seconds=seconds)
    times = arrivals(shape, ArrivalProcess(seed=1)).times
    plan = pd.DataFrame({"t": times, "path": "/rag", "stream": True, "adapter": None, "domain": None,
                         "prompt_tokens": None, "max_tokens": None})
    gpu = load_calibration("gpu-h100")
    cal = gpu.model_copy(update={"host_cpus": None, "llm": gpu.llm.model_copy(update={"engines": 4})})
    config = rag_config()
    tables = accelerator_tables(config)
    t0 = time.perf_counter()
    out = simulate(config, plan, cal, ClusterSpec(head={"CPU": 10_000}), tables=tables, duration_s=seconds, warmup_s=0)
    wall = time.perf_counter() - t0
    ok = out.records["status"].eq(200).mean()
    return len(times), out.events, wall, float(ok)


def main() -> None:
    print(f"bare event loop: {bare_loop(1_000_000):,.0f} events/s")
    print("| base req/s | seconds | requests | events | wall s | events/s | x real time |")
    print("|---|---|---|---|---|---|---|")
    for rate, seconds in [(50, 600), (200, 600), (200, 1200), (800, 600)]:
        n, events, wall = one_deployment(rate, seconds)
        print(f"| {rate} | {seconds} | {n:,} | {events:,} | {wall:.2f} | {events / wall:,.0f} | {seconds / wall:,.0f} |")
    print("\nthe app, /rag only (RAG graph + LLM backend):")
    print("| base req/s | seconds | requests | events | wall s | events/s | x real time | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, seconds in [(50, 600), (100, 600), (200, 600), (200, 1200)]:
        n, events, wall, ok = rag_graph(rate, seconds)
        print(f"| {rate} | {seconds} | {n:,} | {events:,} | {wall:.2f} | {events / wall:,.0f} | {seconds / wall:,.0f} "
              f"| {ok:.1%} |", flush=True)


if __name__ == "__main__":
    main()
