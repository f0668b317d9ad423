"""Arrival processes: seeding, partitioning, gap regularity (gamma burstiness), arrivals that
follow the shape over each interval, and exact trace replay (speedup, rate_scale, window)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadgen.arrivals import ArrivalProcess, arrivals
from loadgen.shapes import Burst, Concat, Ramp, ShapeError, Steady, Step, Trace

KINDS = ["deterministic", "poisson", "gamma"]
STEADY = Steady(rps=20, seconds=30)
TRACE_TIMES = np.sort(np.random.default_rng(7).uniform(0, 1000, 2000))


def times_of(shape, kind="poisson", seed=0, burstiness=1.0) -> np.ndarray:
    return arrivals(shape, ArrivalProcess(kind=kind, seed=seed, burstiness=burstiness)).times


def within_sd(count: float, expected: float, sd: float, k: float = 4) -> bool:
    return abs(count - expected) <= k * sd + 1e-9


@pytest.mark.parametrize("make,fragments", [
    (lambda: ArrivalProcess(kind="x"), ["ArrivalProcess.kind", "'deterministic', 'poisson', 'gamma' or 'replay'"]),
    (lambda: ArrivalProcess(kind="gamma", burstiness=0), ["burstiness", "greater than 0"]),
    (lambda: ArrivalProcess(kind="gamma", burstiness=-2), ["burstiness", "greater than 0"]),
    (lambda: ArrivalProcess(seed=-1), ["seed", "greater than or equal to 0"]),
    (lambda: arrivals(STEADY, ArrivalProcess(kind="replay")), ["replay", "trace", "'steady'"]),
])
def test_invalid_process_raises_shape_error(make, fragments):
    with pytest.raises(ShapeError) as info:
        make()
    assert all(f in str(info.value) for f in fragments), str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_times_sorted_inside_duration(kind):
    t = times_of(Ramp(start_rps=0, end_rps=40, seconds=10), kind)
    assert t.size > 100 and np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 10


@pytest.mark.parametrize("kind", ["poisson", "gamma"])
def test_same_seed_same_times_other_seed_differs(kind):
    first = times_of(STEADY, kind, seed=11, burstiness=0.5)
    assert np.array_equal(first, times_of(STEADY, kind, seed=11, burstiness=0.5))
    assert not np.array_equal(first[:50], times_of(STEADY, kind, seed=12, burstiness=0.5)[:50])


def test_default_process_is_poisson_seed_0_and_deterministic_ignores_seed():
    assert np.array_equal(arrivals(STEADY).times, times_of(STEADY, "poisson", seed=0))
    assert np.array_equal(times_of(STEADY, "deterministic", seed=1), times_of(STEADY, "deterministic", seed=2))


def test_deterministic_is_evenly_spaced_from_zero():
    t = times_of(Steady(rps=10, seconds=5), "deterministic")
    assert t.size == 50 and t[0] == 0
    assert np.diff(t) == pytest.approx(np.full(49, 0.1))


@pytest.mark.parametrize("count", [1, 3, 7])
def test_partition_covers_every_arrival_once(count):
    a = arrivals(STEADY)
    parts = [a.partition(i, count) for i in range(count)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(a)))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


def test_no_arrivals_where_the_rate_is_zero():
    assert len(arrivals(Steady(rps=0, seconds=10))) == 0
    t = times_of(Concat(parts=[Steady(rps=0, seconds=5), Steady(rps=10, seconds=5)]))
    assert t.size > 0 and t.min() >= 5


@pytest.mark.parametrize("kind,burstiness,cv", [
    ("deterministic", 1.0, 0.0),
    ("poisson", 1.0, 1.0),
    ("gamma", 1.0, 1.0),
    ("gamma", 0.25, 2.0),
    ("gamma", 4.0, 0.5),
])
def test_gap_coefficient_of_variation(kind, burstiness, cv):
    gaps = np.diff(times_of(Steady(rps=100, seconds=200), kind, seed=5, burstiness=burstiness))
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1, abs=1e-6)


# (shape, interval edges): the count in each interval follows that interval's integral
LOCAL = {
    "step": (Step(rates_rps=[5, 20, 10], step_seconds=20), [0, 20, 40, 60]),
    "ramp": (Ramp(start_rps=0, end_rps=30, seconds=40), [0, 10, 20, 30, 40]),
    "burst": (Burst(base_rps=2, height_rps=30, width_s=2, period_s=10, seconds=30), [0, 2, 10, 12, 20, 22, 30]),
}


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.parametrize("kind,burstiness", [("deterministic", 1.0), ("poisson", 1.0), ("gamma", 0.5)])
def test_arrivals_follow_the_shape_locally(name, kind, burstiness):
    shape, edges = LOCAL[name]
    counts, _ = np.histogram(times_of(shape, kind, seed=3, burstiness=burstiness), bins=edges)
    for (a, b), n in zip(zip(edges, edges[1:]), counts):
        expected = shape.expected(a, b)
        sd = 0.25 if kind == "deterministic" else math.sqrt(expected / burstiness)  # deterministic: within 1
        assert within_sd(n, expected, sd), f"[{a}, {b}): {n} arrivals, expected {expected:.1f}"


def test_burst_has_more_arrivals_inside_bursts():
    shape, _ = LOCAL["burst"]
    t = times_of(shape, seed=9)
    inside = (t % 10) < 2
    assert inside.sum() / 6 > 5 * (~inside).sum() / 24  # per second: 32 rps inside vs 2 outside


def replay(seed=0, **trace) -> tuple[Trace, np.ndarray, np.ndarray]:
    shape = Trace(times_s=TRACE_TIMES, **trace)
    a = arrivals(shape, ArrivalProcess(kind="replay", seed=seed))
    return shape, a.times, a.rows


def test_replay_speedup_gives_the_exact_compressed_times():
    _, t, rows = replay(speedup=10)
    assert t == pytest.approx(TRACE_TIMES / 10, rel=1e-12)
    assert np.array_equal(rows, np.arange(TRACE_TIMES.size))


def test_replay_rate_scale_below_one_keeps_an_ordered_subset():
    _, t, rows = replay(rate_scale=0.5, seed=1)
    assert within_sd(rows.size, 1000, math.sqrt(2000 * 0.25))
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(t, TRACE_TIMES[rows])


def test_replay_rate_scale_above_one_adds_copies_between_arrivals():
    shape, t, rows = replay(rate_scale=2.5, seed=2)
    assert within_sd(rows.size, 5000, math.sqrt(2000 * 0.25))
    assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < shape.duration
    copies = np.bincount(rows, minlength=TRACE_TIMES.size)
    assert set(copies) == {2, 3}
    # every copy lies between its own trace arrival and the next one
    following = np.append(TRACE_TIMES[1:], shape.duration)
    assert np.all(t >= TRACE_TIMES[rows]) and np.all(t < following[rows])
    assert np.isin(TRACE_TIMES, t).all()  # the originals are kept as they are


def test_replay_window_cuts_the_trace():
    shape, t, rows = replay(window_s=100, speedup=2)
    kept = TRACE_TIMES[TRACE_TIMES / 2 < 100]
    assert shape.duration == 100 and t == pytest.approx(kept / 2) and rows.size == kept.size


def test_replay_is_reproducible_per_seed():
    assert np.array_equal(replay(rate_scale=1.7, seed=4)[1], replay(rate_scale=1.7, seed=4)[1])
    assert not np.array_equal(replay(rate_scale=1.7, seed=4)[2], replay(rate_scale=1.7, seed=5)[2])
