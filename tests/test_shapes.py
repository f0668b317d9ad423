"""Traffic shapes: rate(t), duration, expected() against the analytic integral, the number of
arrivals each arrival process draws from them, composition, and parameter validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from loadgen.arrivals import ArrivalProcess, arrivals
from loadgen.shapes import (AnyShape, Burst, Concat, Diurnal, Ramp, Scaled, ShapeError, Spike, Steady, Step, Sum,
                            Trace)

# Hour 12 of this profile is three times the rest: a triangle peak from hour 11 to hour 13.
PEAK_AT_NOON = [1.0] * 24
PEAK_AT_NOON[12] = 3.0
TRACE_TIMES = [0.5, 1.5, 1.7, 3.2]

# id -> (shape, {t: rate(t)}, duration, analytic integral over [0, duration))
CASES = {
    "steady": (Steady(rps=5, seconds=10), {-0.1: 0, 0: 5, 9.99: 5, 10: 0}, 10, 5 * 10),
    "ramp": (Ramp(start_rps=2, end_rps=10, seconds=20), {0: 2, 10: 6, 15: 8, 20: 0}, 20, (2 + 10) / 2 * 20),
    "step": (Step(rates_rps=[1, 4, 2], step_seconds=5), {0: 1, 4.99: 1, 5: 4, 12: 2, 15: 0}, 15, (1 + 4 + 2) * 5),
    # bursts start at 13, 23, 33 (none at 3, before first_s): three, each 9 rps above the base for 2 s
    "burst": (Burst(base_rps=1, height_rps=9, width_s=2, period_s=10, first_s=13, seconds=40),
              {0: 1, 3: 1, 12.99: 1, 13: 10, 14.99: 10, 15: 1, 23.5: 10, 34: 10, 39.9: 1, 40: 0},
              40, 1 * 40 + 9 * 2 * 3),
    "spike": (Spike(base_rps=2, peak_rps=20, at_s=10, width_s=5, seconds=30),
              {9.99: 2, 10: 20, 14.99: 20, 15: 2, 30: 0}, 30, 2 * 30 + (20 - 2) * 5),
    # cos integrates to zero over a whole day: the mean is halfway between min and max
    "diurnal": (Diurnal(min_rps=1, max_rps=9, seconds=100, peak_at=0.25),
                {0: 5, 25: 9, 50: 5, 75: 1, 100: 0}, 100, (1 + 9) / 2 * 100),
    # 10 s an hour; min 2 rps all day plus a triangle 8 rps high and 20 s wide around noon
    "diurnal_profile": (Diurnal(min_rps=2, max_rps=10, seconds=240, profile=PEAK_AT_NOON),
                        {0: 2, 60: 2, 110: 2, 115: 6, 120: 10, 125: 6, 130: 2, 240: 0}, 240, 2 * 240 + 8 * 20 / 2),
    # one arrival in [0, 1), two in [1, 2), none in [2, 3), one in [3, 3.2]: twice that with rate_scale 2
    "trace": (Trace(times_s=TRACE_TIMES, rate_scale=2), {0.5: 2, 1.9: 4, 2.5: 0, 4: 0}, 3.2 + 1e-6, 2 * 4),
    "sum": (Steady(rps=3, seconds=10) + Ramp(start_rps=0, end_rps=10, seconds=5),
            {0: 3, 2.5: 8, 7: 3, 10: 0}, 10, 3 * 10 + 10 / 2 * 5),
    "concat": (Steady(rps=3, seconds=10).then(Ramp(start_rps=0, end_rps=10, seconds=5)),
               {5: 3, 10: 0, 12.5: 5, 15: 0}, 15, 3 * 10 + 10 / 2 * 5),
    "scaled": (Step(rates_rps=[1, 4, 2], step_seconds=5) * 2, {0: 2, 5: 8, 14: 4, 15: 0}, 15, 2 * 35),
    "rmul": (2 * Steady(rps=3, seconds=10), {0: 6, 10: 0}, 10, 60),
}
SHAPES = {name: case[0] for name, case in CASES.items()}


@pytest.mark.parametrize("name", CASES)
def test_rate_duration_and_integral(name):
    shape, points, duration, integral = CASES[name]
    assert shape.duration == pytest.approx(duration)
    for t, rate in points.items():
        assert shape.rate(t) == pytest.approx(rate), f"rate({t})"
    assert shape.rate(list(points)) == pytest.approx(list(points.values()))  # vectorised
    # the profile's kinks are not grid edges: midpoint integration is then close, not exact
    assert shape.expected() == pytest.approx(integral, rel=1e-4 if name == "diurnal_profile" else 1e-9)


def test_composition_types_and_partial_integrals():
    a, b = Steady(rps=3, seconds=10), Ramp(start_rps=0, end_rps=10, seconds=5)
    assert isinstance(a + b, Sum) and isinstance(a.then(b), Concat) and isinstance(a * 2, Scaled)
    step = SHAPES["step"]
    assert step.expected(5, 10) == pytest.approx(4 * 5)
    assert step.expected(2.5, 7.5) == pytest.approx(1 * 2.5 + 4 * 2.5)
    assert SHAPES["spike"].peak() == 20


# Rate jumps at 1/16 s past the 10 ms integration grid: expected() is exact only if the shape
# reports them as breakpoints.
OFF_GRID = 1 / 16
JUMPS = {
    "step": (Step(rates_rps=[1, 4, 2], step_seconds=5 + OFF_GRID), 7 * (5 + OFF_GRID)),
    "burst": (Burst(base_rps=1, height_rps=9, width_s=2 + OFF_GRID, period_s=10, first_s=OFF_GRID, seconds=30),
              30 + 9 * (2 + OFF_GRID) * 3),
    "spike": (Spike(base_rps=2, peak_rps=20, at_s=10 + OFF_GRID, width_s=5 + OFF_GRID / 2, seconds=30),
              2 * 30 + 18 * (5 + OFF_GRID / 2)),
    "sum": (Steady(rps=3, seconds=10 + OFF_GRID) + Steady(rps=1, seconds=20), 3 * (10 + OFF_GRID) + 20),
    "concat": (Steady(rps=3, seconds=10 + OFF_GRID).then(Steady(rps=7, seconds=5)), 3 * (10 + OFF_GRID) + 35),
    "scaled": (Step(rates_rps=[1, 4], step_seconds=5 + OFF_GRID) * 2, 2 * 5 * (5 + OFF_GRID)),
}


@pytest.mark.parametrize("name", JUMPS)
def test_expected_is_exact_for_jumps_off_the_grid(name):
    shape, integral = JUMPS[name]
    assert shape.expected() == pytest.approx(integral, rel=1e-12)


def test_shape_json_round_trip():
    shape = (SHAPES["sum"].then(SHAPES["spike"])) * 2
    again = TypeAdapter(AnyShape).validate_json(shape.model_dump_json())
    assert again == shape and again.expected() == pytest.approx(shape.expected())
    assert '"kind":"scaled"' in shape.model_dump_json()


@pytest.mark.parametrize("window_s", [None, 90.0, 45.5])
def test_trace_partial_last_bin_keeps_every_arrival(window_s):
    """Bins of 60 s over 100 s: the last bin is partly outside the duration."""
    trace = Trace(times_s=np.linspace(0, 100, 1000), bin_s=60, window_s=window_s)
    kept = trace.compressed().size
    assert kept == (1000 if window_s is None else np.sum(np.linspace(0, 100, 1000) < window_s))
    assert trace.expected() == pytest.approx(kept)


def test_trace_speedup_and_window():
    trace = Trace(times_s=[0, 40, 80, 120], speedup=4, window_s=25)
    assert trace.duration == 25
    assert trace.compressed() == pytest.approx([0, 10, 20])


def sd_of_count(kind: str, expected: float, burstiness: float) -> float:
    """Standard deviation of a renewal process's count: Poisson sqrt(mean), gamma sqrt(mean / shape)."""
    return math.sqrt(expected / burstiness) if kind == "gamma" else math.sqrt(expected)


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("kind,burstiness,seeds", [("deterministic", 1.0, [0]),
                                                   ("poisson", 1.0, [0, 1, 2]),
                                                   ("gamma", 0.5, [3, 4, 5])])
def test_arrival_count_matches_expected(name, kind, burstiness, seeds):
    shape = SHAPES[name]
    expected = shape.expected()
    for seed in seeds:
        n = len(arrivals(shape, ArrivalProcess(kind=kind, burstiness=burstiness, seed=seed)))
        tolerance = 1 if kind == "deterministic" else 4 * sd_of_count(kind, expected, burstiness)
        assert abs(n - expected) <= tolerance, f"seed {seed}: {n} arrivals, expected {expected:.1f}"


INVALID = {
    "negative rps": (lambda: Steady(rps=-1, seconds=10), ["Steady.rps", "greater than or equal to 0"]),
    "zero seconds": (lambda: Steady(rps=1, seconds=0), ["seconds", "greater than 0"]),
    "rate too high": (lambda: Ramp(start_rps=2e6, end_rps=1, seconds=1),
                      ["start_rps", "less than or equal to 1000000"]),
    "unknown field": (lambda: Steady(rps=1, seconds=1, rate=2), ["rate", "not permitted"]),
    "no steps": (lambda: Step(rates_rps=[], step_seconds=1), ["rates_rps", "at least 1"]),
    "burst wider than period": (lambda: Burst(base_rps=1, height_rps=1, width_s=5, period_s=2, seconds=10),
                                ["width_s", "<= period_s (2)"]),
    "spike past the end": (lambda: Spike(base_rps=1, peak_rps=5, at_s=8, width_s=5, seconds=10),
                           ["at_s + width_s", "<= seconds (10)"]),
    "diurnal min > max": (lambda: Diurnal(min_rps=5, max_rps=1, seconds=10), ["min_rps", "<= max_rps (1)"]),
    "diurnal peak_at": (lambda: Diurnal(min_rps=1, max_rps=2, seconds=10, peak_at=2),
                        ["peak_at", "less than or equal to 1"]),
    "profile of 23 hours": (lambda: Diurnal(min_rps=1, max_rps=5, seconds=10, profile=[1] * 23),
                            ["profile", "at least 24"]),
    "profile of 25 hours": (lambda: Diurnal(min_rps=1, max_rps=5, seconds=10, profile=list(range(25))),
                            ["profile", "at most 24"]),
    "flat profile": (lambda: Diurnal(min_rps=1, max_rps=5, seconds=10, profile=[2] * 24), ["profile", "flat"]),
    "empty trace": (lambda: Trace(times_s=[]), ["times_s", "at least one"]),
    "negative trace time": (lambda: Trace(times_s=[-1, 2]), ["times_s", ">= 0"]),
    "zero speedup": (lambda: Trace(times_s=[1], speedup=0), ["speedup", "greater than 0"]),
    "negative factor": (lambda: Steady(rps=1, seconds=1) * -1, ["factor", "greater than or equal to 0"]),
    "empty sum": (lambda: Sum(parts=[]), ["parts", "at least 1"]),
}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_parameters_name_the_field_and_range(name):
    make, fragments = INVALID[name]
    with pytest.raises(ShapeError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
