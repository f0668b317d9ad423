"""The --fault grammar and a fault's measured effect (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.errors import UsageError
from tuner.faults import effect, parse_fault


def test_specs_parse_with_their_defaults():
    f = parse_fault("llm-outage@30s+20s", 120)
    assert (f.kind, f.start_s, f.duration_s, f.end_s, f.options) == ("llm-outage", 30, 20, 50, {})
    f = parse_fault("llm-errors@1m+0.5m:status=503,rate=0.5", 120)
    assert (f.start_s, f.duration_s, f.options) == (60, 30, {"status": 503.0, "rate": 0.5})
    assert parse_fault("llm-slow@5+10", 60).options == {"factor": 3.0}
    f = parse_fault("kill-replica@20s:deployment=Reranker", 60)
    assert f.duration_s is None and f.options == {"deployment": "Reranker"}
    assert parse_fault("prometheus-restart@10s", 60).duration_s is None  # its duration is optional
    assert parse_fault("prometheus-restart@10s+8s", 60).duration_s == 8


@pytest.mark.parametrize("spec, message", [
    ("llm-outage", "expected KIND@START"),
    ("flood@1s+2s", "unknown kind 'flood'"),
    ("llm-outage@30s", "needs a duration"),
    ("kill-controller@5s+3s", "is instantaneous"),
    ("llm-hang@200s+5s", "after the 120 s load window"),
    ("kill-replica@5s", "needs deployment="),
    ("llm-errors@5s+5s:status=700", "status must be 400-599"),
    ("llm-errors@5s+5s:colour=red", "option 'colour=red' is not one of status=, rate="),
    ("llm-slow@5s+5s:factor=fast", "factor='fast' is not a number"),
    ("llm-hang@5x+5s", "expected KIND@START"),
    ("kill-replica@5s:deployment=", "option deployment= has no value"),
])
def test_bad_specs_are_usage_errors_naming_the_problem(spec, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_fault(spec, 120)


def test_the_effect_splits_requests_around_the_fault_and_times_the_recovery():
    t = np.arange(0, 60, 0.5)
    end = t + 0.75  # sent at 19.5, answered at 20.25: in flight when the fault began
    failed = (t >= 19.5) & (t < 31)  # and one more failure bin after the fault ends at 30
    degraded = (t >= 20) & (t < 25)
    latency = np.where(t < 19.5, 100.0, 300.0)
    e = effect(t, end, failed, degraded, latency, 20, 30, 60)
    assert e["before"] == {"requests": 39, "failed": 0, "degraded": 0, "p99_ms": 100.0}
    assert e["during"]["requests"] == 21 and e["during"]["failed"] == 21 and e["during"]["degraded"] == 10
    assert e["after"]["failed"] == 2 and e["recovery_s"] == 5.0
    never = effect(t, end, t >= 19.5, np.zeros_like(t, bool), latency, 20, 30, 60)
    assert never["recovery_s"] is None and never["during"]["p99_ms"] is None
    assert e["latency_recovery_s"] is None  # 300 ms to the end: never back under the 100 ms of before


def test_latency_recovery_times_a_slow_spell_that_fails_nothing():
    t = np.arange(0, 60, 0.5)
    latency = np.where((t >= 20) & (t < 40), 1000.0, 100.0)  # a replica replaced: requests wait, none fail
    e = effect(t, t + latency / 1000, np.zeros_like(t, bool), np.zeros_like(t, bool), latency, 20, 20, 60)
    assert e["recovery_s"] == 0.0 and e["latency_recovery_s"] == 20.0
    assert e["during"]["p99_ms"] == 1000.0


@given(st.one_of(st.text(max_size=60),
                 st.builds(lambda k, a, b, o: f"{k}@{a}{b}{o}", st.sampled_from(["llm-outage", "llm-errors", "kill-replica",
                                                                                 "llm-slow", "nope"]),
                           st.text("0123456789.sm", max_size=5), st.text("+0123456789.sm", max_size=5),
                           st.text(":=,abcdefghijklmnopqrstuvwxyz0123456789.", max_size=20))))
@settings(max_examples=400, deadline=None)
def test_any_spec_is_a_fault_or_one_usage_error(spec):
    try:
        f = parse_fault(spec, 120)
    except UsageError as e:
        assert "\n" not in str(e) and str(e).startswith("--fault")
    else:
        assert 0 <= f.start_s < 120 and (f.duration_s is None or f.duration_s > 0)
