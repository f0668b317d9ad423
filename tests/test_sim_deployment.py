"""The simulator's deployment model against closed-form queueing results and Serve's batching
rules; conservation and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.arrivals import ArrivalProcess, arrivals
from loadgen.shapes import Steady
from tuner.sim.deployment import DeploymentSpec
from tuner.sim.single import simulate_deployment
from tuner.sim.engine import Engine


def exponential(mu: float):
    return lambda size, rng: rng.exponential(1 / mu)


def constant(seconds: float):
    return lambda size, rng: seconds


def poisson_times(rate: float, seconds: float, seed: int = 1) -> np.ndarray:
    return arrivals(Steady(rps=rate, seconds=seconds), ArrivalProcess(kind="poisson", seed=seed)).times


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean time in queue of M/M/c (Erlang C)."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def mean_latency(out) -> float:
    ok = out.status == 200
    return float(np.mean(out.end[ok] - out.arrival[ok]))


def test_engine_runs_events_in_time_then_schedule_order():
    seen, e = [], Engine()
    e.at(2.0, seen.append, "c")
    e.at(1.0, seen.append, "a")
    e.at(1.0, seen.append, "b")
    assert e.run() == 3 and seen == ["a", "b", "c"] and e.now == 2.0
    e.at(5.0, seen.append, "late")
    assert e.run(until=4.0) == 0 and e.now == 4.0 and e.run() == 1


def test_mm1_mean_latency():
    lam, mu = 5.0, 10.0
    spec = DeploymentSpec(name="d", max_ongoing_requests=1)
    out = simulate_deployment(spec, exponential(mu), poisson_times(lam, 8000), seed=3)
    assert mean_latency(out) == pytest.approx(1 / (mu - lam), rel=0.04)


@pytest.mark.parametrize("c, lam", [(2, 14.0), (4, 30.0)])
def test_mmc_mean_latency_matches_erlang_c(c, lam):
    mu = 10.0
    spec = DeploymentSpec(name="d", max_ongoing_requests=1)
    out = simulate_deployment(spec, exponential(mu), poisson_times(lam, 6000), replicas=c, seed=4)
    assert mean_latency(out) == pytest.approx(erlang_c_wait(lam, mu, c) + 1 / mu, rel=0.05)


def test_a_lone_request_waits_the_batch_timeout():
    spec = DeploymentSpec(name="d", max_ongoing_requests=8, max_batch_size=4, batch_wait_timeout_s=0.05)
    out = simulate_deployment(spec, constant(0.01), np.array([1.0]))
    assert out.end[0] - out.arrival[0] == pytest.approx(0.06)


def test_a_full_batch_goes_at_once_and_runs_at_its_size_cost():
    spec = DeploymentSpec(name="d", max_ongoing_requests=8, max_batch_size=4, batch_wait_timeout_s=0.05)
    sizes = []

    def service(size, rng):
        sizes.append(size)
        return 0.01 * size

    out = simulate_deployment(spec, service, np.array([1.0, 1.0, 1.0, 1.0, 1.0]))
    assert sizes == [4, 1]
    lat = out.end - out.arrival
    assert lat[:4] == pytest.approx([0.04] * 4)
    # the fifth opened the next batch at once, waited 0.05 for company, then the slot was free
    assert lat[4] == pytest.approx(0.05 + 0.01)


def test_next_batch_waits_for_a_free_slot():
    spec = DeploymentSpec(name="d", max_ongoing_requests=8, max_batch_size=2, batch_wait_timeout_s=0.0)
    out = simulate_deployment(spec, constant(0.1), np.array([0.0, 0.0, 0.0, 0.0]))
    assert (out.end - out.arrival) == pytest.approx([0.1, 0.1, 0.2, 0.2])


def test_max_ongoing_holds_requests_at_the_caller_and_max_queued_refuses():
    spec = DeploymentSpec(name="d", max_ongoing_requests=1, max_queued_requests=2)
    out = simulate_deployment(spec, constant(0.1), np.zeros(5))
    assert list(out.status) == [200, 200, 200, 503, 503]
    assert list(out.end[:3]) == pytest.approx([0.1, 0.2, 0.3]) and list(out.end[3:]) == [0.0, 0.0]


def test_concurrent_code_serves_requests_side_by_side():
    spec = DeploymentSpec(name="d", max_ongoing_requests=4, max_concurrent_batches=4)
    out = simulate_deployment(spec, constant(0.2), np.zeros(6))
    assert sorted(out.end) == pytest.approx([0.2] * 4 + [0.4] * 2)


def test_invalid_max_queued_names_the_field():
    with pytest.raises(ValueError, match="max_queued_requests must be -1"):
        DeploymentSpec(name="d", max_queued_requests=0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), replicas=st.integers(1, 4), ongoing=st.integers(1, 6), queued=st.sampled_from([-1, 1, 5]),
       batch=st.integers(1, 5), wait=st.sampled_from([0.0, 0.01]), conc=st.integers(1, 3), seed=st.integers(0, 99))
def test_every_arrival_ends_once_and_a_seed_repeats_exactly(n, replicas, ongoing, queued, batch, wait, conc, seed):
    spec = DeploymentSpec(name="d", max_ongoing_requests=ongoing, max_queued_requests=queued, max_batch_size=batch,
                          batch_wait_timeout_s=wait, max_concurrent_batches=conc)
    times = np.sort(np.random.default_rng(seed).uniform(0, 5, n))
    out = simulate_deployment(spec, exponential(20.0), times, replicas=replicas, seed=seed)
    assert len(out.status) == n and (out.status != 0).all()
    assert set(out.status) <= {200, 503} and (out.end >= out.arrival).all()
    again = simulate_deployment(spec, exponential(20.0), times, replicas=replicas, seed=seed)
    assert np.array_equal(out.end, again.end) and np.array_equal(out.status, again.status)
