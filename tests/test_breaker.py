"""The LLM circuit breaker's state machine (pure, on a fake clock)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from target_app.breaker import BreakerConfig, CircuitBreaker


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def breaker(failures=3, cool_down_s=10.0):
    clock = Clock()
    return CircuitBreaker(BreakerConfig(failures=failures, cool_down_s=cool_down_s), clock), clock


def fail(b, n=1):
    for _ in range(n):
        assert b.allow()
        b.record(False)


def test_consecutive_failures_open_it_and_a_success_in_between_resets_the_count():
    b, _ = breaker()
    fail(b, 2)
    assert b.allow()
    b.record(True)
    fail(b, 2)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open" and not b.allow()


def test_after_the_cool_down_one_trial_call_goes_through_and_its_success_closes_it():
    b, clock = breaker()
    fail(b, 3)
    clock.t = 9.9
    assert not b.allow()
    clock.t = 10.0
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # one trial at a time
    b.record(True)
    assert b.state == "closed" and b.allow()


def test_a_failed_trial_opens_it_for_another_cool_down():
    b, clock = breaker()
    fail(b, 3)
    clock.t = 12.0
    assert b.allow()
    b.record(False)
    assert b.state == "open"
    clock.t = 21.9
    assert not b.allow()
    clock.t = 22.0
    assert b.allow()


def test_late_failures_of_calls_sent_before_it_opened_do_not_lengthen_the_cool_down():
    b, clock = breaker(failures=2)
    assert b.allow() and b.allow() and b.allow()  # three calls in flight
    b.record(False)
    b.record(False)  # opens at 0
    clock.t = 5.0
    b.record(False)  # the third, late
    clock.t = 10.0
    assert b.state == "half-open"


@pytest.mark.parametrize("bad", [{"failures": 0}, {"cool_down_s": 0}, {"colour": 1}])
def test_bad_settings_name_the_field(bad):
    with pytest.raises(ValidationError, match=next(iter(bad))):
        BreakerConfig(**bad)
