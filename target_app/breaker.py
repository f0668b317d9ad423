"""A circuit breaker for the LLM backend (pure, clock injected).

Closed: calls go through; `failures` consecutive failures open it. Open: calls are refused at
once (the caller degrades instead of waiting on a dead backend) until `cool_down_s` has
passed. Half-open: one trial call goes through; its success closes the breaker, its failure
opens it for another cool-down. The seed's production checklist asks for this around the LLM.
"""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

State = Literal["closed", "open", "half-open"]


class BreakerConfig(BaseModel):
    """`user_config.breaker` of LLMGenerator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(5, ge=1, le=1000, description="consecutive failures that open the breaker")
    cool_down_s: float = Field(10.0, gt=0, le=3600, description="how long it stays open before a trial call")


class BreakerOpen(Exception):
    """Refused without calling: the breaker is open."""


class CircuitBreaker:
    """The breaker's state machine; `clock` returns seconds (monotonic)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]):
        self.config, self._clock = config, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.config.cool_down_s else "open"

    def allow(self) -> bool:
        """Whether a call may go out now (half-open lets exactly one trial call through)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record(self, success: bool) -> None:
        """The outcome of a call that `allow` let through. A success closes the breaker; a
        failed trial call opens it again; a call that fails after the breaker opened (it left
        before) does not lengthen the cool-down."""
        trial, self._trial_in_flight = self._trial_in_flight, False
        if success:
            self._failures, self._opened_at = 0, None
        elif self._opened_at is None:
            self._failures += 1
            if self._failures >= self.config.failures:
                self._opened_at = self._clock()
        elif trial:
            self._opened_at = self._clock()
