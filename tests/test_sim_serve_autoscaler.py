"""Serve's autoscaler in the simulator: the metrics window, scaling up and down under load with
its delays and the metrics lag, cold start from zero, and conservation while scaling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.policies.serve import ServeAutoscaling
from tuner.sim.deployment import DeploymentSpec
from tuner.sim.serve_autoscaler import window_mean
from tuner.sim.single import simulate_deployment

CONCURRENT = DeploymentSpec(name="d", max_ongoing_requests=50, max_concurrent_batches=50)


def constant(seconds):
    return lambda size, rng: seconds


def steady(rate, start, stop):
    return np.arange(start, stop, 1 / rate)


def running_at(timeline, t):
    return [n for ts, n in timeline if ts <= t][-1]


def test_window_mean_is_time_weighted_with_the_last_value_held():
    assert window_mean([], 5.0) == 0.0
    assert window_mean([(0.0, 2.0), (1.0, 4.0)], 3.0) == pytest.approx((2 * 1 + 4 * 2) / 3)
    assert window_mean([(1.0, 7.0)], 1.0) == pytest.approx(7.0)   # no time since: Ray's 1 ms tail


def test_scales_up_to_load_over_target_after_the_metrics_lag():
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=8, target_ongoing_requests=1, upscale_delay_s=0,
                           downscale_delay_s=600, metrics_interval_s=1, look_back_period_s=2)
    # 6 req/s x 0.45 s in flight = 2.7 requests on average -> ceil(2.7 / 1) = 3 replicas
    run = simulate_deployment(CONCURRENT, constant(0.45), steady(6, 0, 40), autoscaling=cfg, start_s=1.0, until=40)
    assert running_at(run.timeline, 0.5) == 1
    assert running_at(run.timeline, 39) == 3
    first_up = next(ts for ts, n in run.timeline if n > 1)
    assert 1.0 <= first_up <= 5.0          # a push (1 s), then the replica's 1 s start
    assert max(n for _, n in run.timeline) <= 4
    assert (run.status == 200).all()


def test_scales_down_only_after_its_delay_and_the_drain():
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=8, target_ongoing_requests=1, upscale_delay_s=0,
                           downscale_delay_s=10, metrics_interval_s=1, look_back_period_s=2)
    run = simulate_deployment(CONCURRENT, constant(0.45), steady(6, 0, 20), autoscaling=cfg, start_s=1.0, until=60)
    assert running_at(run.timeline, 19) == 3
    down = next(ts for ts, n in run.timeline if ts > 20 and n < 3)
    assert 20 + 10 <= down <= 20 + 10 + 2 + 1   # the delay from the first low reading, push lag at most
    assert run.timeline[-1][1] == 1


def test_cold_start_from_zero_replicas():
    cfg = ServeAutoscaling(min_replicas=0, initial_replicas=0, max_replicas=2, upscale_delay_s=30,
                           metrics_interval_s=10, look_back_period_s=30)
    run = simulate_deployment(CONCURRENT, constant(0.1), np.array([1.0]), autoscaling=cfg, start_s=2.0, until=20)
    # queued -> immediate push -> next 0.1 s tick sets target 1 (no delay) -> 2 s start -> 0.1 s service
    assert run.status[0] == 200
    assert 2.1 <= run.end[0] - 1.0 <= 2.1 + 0.1 + 1e-9
    assert running_at(run.timeline, 0.5) == 0


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(1, 30), service=st.floats(0.01, 0.5), target=st.sampled_from([1.0, 2.0, 4.0]),
       start=st.floats(0, 3), down=st.sampled_from([0.0, 2.0, 10.0]), seed=st.integers(0, 50))
def test_every_request_is_served_once_while_replicas_come_and_go(rate, service, target, start, down, seed):
    cfg = ServeAutoscaling(min_replicas=1, max_replicas=6, target_ongoing_requests=target, upscale_delay_s=0,
                           downscale_delay_s=down, metrics_interval_s=1, look_back_period_s=3)
    spec = DeploymentSpec(name="d", max_ongoing_requests=4, max_concurrent_batches=2)
    rng = np.random.default_rng(seed)
    times = np.sort(np.concatenate([rng.uniform(0, 10, int(rate * 10)), rng.uniform(20, 25, int(rate * 5))]))
    run = simulate_deployment(spec, lambda size, r: r.exponential(service), times, autoscaling=cfg, start_s=start,
                              seed=seed, until=40)
    assert (run.status == 200).all() and (run.end >= run.arrival).all()
    assert all(1 <= n <= 6 for _, n in run.timeline[1:])
