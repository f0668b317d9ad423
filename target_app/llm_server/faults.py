"""Fault injection: the ``POST /admin/fault`` body and the active fault's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from target_app.llm_server.engine import Engine

FaultMode = Literal["none", "error", "hang", "refuse", "slow"]


class FaultSpec(BaseModel):
    """Body of ``POST /admin/fault``."""

    model_config = ConfigDict(extra="forbid")
    mode: FaultMode
    duration_s: float | None = Field(None, gt=0, le=86_400)
    status_code: int = Field(500, ge=400, le=599)
    error_rate: float = Field(1.0, ge=0, le=1)
    slow_factor: float = Field(2.0, ge=1, le=1_000)

    @model_validator(mode="after")
    def _refuse_needs_duration(self) -> FaultSpec:
        # Nothing can reach the admin API while the port is closed, so the port
        # must reopen by itself.
        if self.mode == "refuse" and self.duration_s is None:
            raise ValueError("duration_s is required for mode 'refuse'")
        return self


class FaultInjector:
    """Holds the active fault and applies it to the engine and the listener.

    ``error`` fails a deterministic ``error_rate`` fraction of requests (every
    1/error_rate-th one, so runs are reproducible); ``hang`` pauses the engine so
    accepted requests get no tokens; ``slow`` stretches engine steps;
    ``refuse`` closes the listening port via the ``refuse`` callback.
    """

    def __init__(self, engine: Engine, refuse: Callable[[float], None] | None) -> None:
        self._engine = engine
        self._refuse = refuse
        self.spec = FaultSpec(mode="none")
        self._expiry: asyncio.TimerHandle | None = None
        self._error_credit = 0.0

    @property
    def can_refuse(self) -> bool:
        """Whether this app runs under a listener that can close its port."""
        return self._refuse is not None

    def apply(self, spec: FaultSpec) -> None:
        """Replace the current fault with ``spec`` (``mode="none"`` clears it)."""
        if spec.mode == "refuse" and self._refuse is None:
            raise RuntimeError("refuse needs the emulator's own listener (ApiListener)")
        self._reset()
        self.spec = spec
        if spec.mode == "hang":
            self._engine.pause()
        elif spec.mode == "slow":
            self._engine.slow_factor = spec.slow_factor
        elif spec.mode == "refuse":
            assert self._refuse is not None and spec.duration_s is not None
            self._refuse(spec.duration_s)
        if spec.duration_s is not None and spec.mode != "none":
            self._expiry = asyncio.get_running_loop().call_later(spec.duration_s, self.clear)

    def clear(self) -> None:
        """Remove any fault."""
        self.apply(FaultSpec(mode="none"))

    def should_fail(self) -> bool:
        """Decide whether the next request gets the injected error."""
        if self.spec.mode != "error":
            return False
        self._error_credit += self.spec.error_rate
        # The epsilon keeps float sums such as 10 * 0.1 from missing a failure.
        if self._error_credit >= 1 - 1e-9:
            self._error_credit -= 1
            return True
        return False

    def describe(self) -> dict[str, Any]:
        """The active fault plus seconds until it clears itself (``None``: never)."""
        remaining = None
        if self._expiry is not None:
            remaining = max(0.0, self._expiry.when() - asyncio.get_running_loop().time())
        return {**self.spec.model_dump(), "expires_in_s": remaining}

    def _reset(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._engine.resume()
        self._engine.slow_factor = 1.0
        self._error_credit = 0.0
