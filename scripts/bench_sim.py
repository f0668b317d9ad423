"""Simulator core speed (BENCHMARKS.md, "Simulator core"): events per second of the event loop
and one autoscaled deployment, at several rates and durations, on one core.

    .venv/bin/python scripts/bench_sim.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen.arrivals import ArrivalProcess, arrivals  # noqa: E402
from loadgen.shapes import Burst  # noqa: E402
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


def main() -> None:
    print(f"bare event loop: {bare_loop(1_000_000):,.0f} events/s")
    print("| base req/s | seconds | requests | events | wall s | events/s | x real time |")
    print("|---|---|---|---|---|---|---|")
    for rate, seconds in [(50, 600), (200, 600), (200, 1200), (800, 600)]:
        n, events, wall = one_deployment(rate, seconds)
        print(f"| {rate} | {seconds} | {n:,} | {events:,} | {wall:.2f} | {events / wall:,.0f} | {seconds / wall:,.0f} |")


if __name__ == "__main__":
    main()
