"""Traffic shapes: pure functions of time, `rate(t)` in requests per second over `[0, duration)`.

The same shape objects drive the Locust scenarios (through `loadgen.arrivals`) and the
simulator. Shapes are pydantic models: bad parameters raise `ShapeError` naming the field
and the allowed range, and a shape serialises to JSON (with `kind`) for results and configs.

Composition: `a + b` (rates add), `a.then(b)` (one after the other), `a * k` (rate scaled).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Rate = Annotated[float, Field(ge=0, le=1e6)]
Seconds = Annotated[float, Field(gt=0, le=366 * 86400)]

# Midpoint integration cells: exact for the piecewise-linear shapes (breakpoints are cell
# edges), error O(cell^2) for the smooth ones.
_MAX_CELL_S = 0.01


class ShapeError(ValueError):
    """A shape's parameters are out of range; the message names the field."""


def _one_line(err: ValidationError, kind: str) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    got = first.get("input")
    got = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{kind}.{field}: {msg}{got}" if field else f"{kind}: {msg}"


class Shape(BaseModel):
    """Base of all shapes: `rate(t)`, `duration`, integrals, composition."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ShapeError(_one_line(e, type(self).__name__)) from None

    @property
    def duration(self) -> float:
        raise NotImplementedError

    def _rate(self, t: np.ndarray) -> np.ndarray:
        """Rate for `t` inside `[0, duration)` (vectorised)."""
        raise NotImplementedError

    def breakpoints(self) -> list[float]:
        """Times where the rate jumps or changes slope (cell edges for exact integration)."""
        return []

    def rate(self, t):
        """Requests per second at time `t` (scalar or array); 0 outside `[0, duration)`."""
        arr = np.asarray(t, dtype=float)
        inside = (arr >= 0) & (arr < self.duration)
        out = np.zeros_like(arr)
        if inside.any():
            out[inside] = self._rate(arr[inside])
        return out if out.ndim else float(out)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(edges, cumulative expected arrivals at each edge): Lambda(t) on a fine grid."""
        cuts = sorted({0.0, self.duration, *(b for b in self.breakpoints() if 0 < b < self.duration)})
        pieces = [np.linspace(a, b, max(2, math.ceil((b - a) / _MAX_CELL_S) + 1)) for a, b in zip(cuts, cuts[1:])]
        edges = np.unique(np.concatenate(pieces))
        mids = (edges[:-1] + edges[1:]) / 2
        counts = self.rate(mids) * np.diff(edges)
        return edges, np.concatenate([[0.0], np.cumsum(counts)])

    def expected(self, t0: float = 0.0, t1: float | None = None) -> float:
        """Expected number of arrivals in `[t0, t1)` (the integral of the rate)."""
        edges, cum = self.grid()
        t1 = self.duration if t1 is None else t1
        return float(np.interp(t1, edges, cum) - np.interp(t0, edges, cum))

    def peak(self) -> float:
        """Highest rate over the duration (sampled on the integration grid)."""
        edges, _ = self.grid()
        return float(np.max(self.rate((edges[:-1] + edges[1:]) / 2)))

    def __add__(self, other: "Shape") -> "Sum":
        return Sum(parts=[self, other])

    def __mul__(self, factor: float) -> "Scaled":
        return Scaled(shape=self, factor=factor)

    __rmul__ = __mul__

    def then(self, other: "Shape") -> "Concat":
        """This shape, then `other` starting when this one ends."""
        return Concat(parts=[self, other])


class Steady(Shape):
    """A constant rate."""

    kind: Literal["steady"] = "steady"
    rps: Rate
    seconds: Seconds

    @property
    def duration(self) -> float:
        return self.seconds

    def _rate(self, t):
        return np.full_like(t, self.rps)


class Ramp(Shape):
    """Linear from `start_rps` to `end_rps` over `seconds`."""

    kind: Literal["ramp"] = "ramp"
    start_rps: Rate
    end_rps: Rate
    seconds: Seconds

    @property
    def duration(self) -> float:
        return self.seconds

    def _rate(self, t):
        return self.start_rps + (self.end_rps - self.start_rps) * t / self.seconds


class Step(Shape):
    """A staircase: each rate in `rates_rps` held for `step_seconds`."""

    kind: Literal["step"] = "step"
    rates_rps: Annotated[list[Rate], Field(min_length=1, max_length=10_000)]
    step_seconds: Seconds

    @property
    def duration(self) -> float:
        return len(self.rates_rps) * self.step_seconds

    def breakpoints(self):
        return [i * self.step_seconds for i in range(1, len(self.rates_rps))]

    def _rate(self, t):
        idx = np.minimum((t // self.step_seconds).astype(int), len(self.rates_rps) - 1)
        return np.asarray(self.rates_rps, dtype=float)[idx]


class Burst(Shape):
    """`base_rps`, plus `height_rps` for `width_s` at the start of every `period_s`, from `first_s` on."""

    kind: Literal["burst"] = "burst"
    base_rps: Rate
    height_rps: Rate
    width_s: Seconds
    period_s: Seconds
    first_s: Annotated[float, Field(ge=0)] = 0.0
    seconds: Seconds

    @model_validator(mode="after")
    def _width_fits(self):
        if self.width_s > self.period_s:
            raise ValueError(f"width_s must be <= period_s ({self.period_s:g}), got {self.width_s:g}")
        return self

    @property
    def duration(self) -> float:
        return self.seconds

    def breakpoints(self):
        out, start = [], self.first_s
        while start < self.seconds:
            out += [start, start + self.width_s]
            start += self.period_s
        return out

    def _rate(self, t):
        phase = (t - self.first_s) % self.period_s
        on = (t >= self.first_s) & (phase < self.width_s)
        return self.base_rps + self.height_rps * on


class Spike(Shape):
    """`base_rps`, jumping to `peak_rps` at `at_s` for `width_s`, then back."""

    kind: Literal["spike"] = "spike"
    base_rps: Rate
    peak_rps: Rate
    at_s: Annotated[float, Field(ge=0)]
    width_s: Seconds
    seconds: Seconds

    @model_validator(mode="after")
    def _inside(self):
        if self.at_s + self.width_s > self.seconds:
            raise ValueError(f"at_s + width_s must be <= seconds ({self.seconds:g}), got {self.at_s + self.width_s:g}")
        return self

    @property
    def duration(self) -> float:
        return self.seconds

    def breakpoints(self):
        return [self.at_s, self.at_s + self.width_s]

    def _rate(self, t):
        on = (t >= self.at_s) & (t < self.at_s + self.width_s)
        return np.where(on, self.peak_rps, self.base_rps)


class Diurnal(Shape):
    """A day compressed into `seconds`: between `min_rps` and `max_rps`.

    Without `profile`, a sinusoid peaking at `peak_at` (fraction of the day). With a 24-point
    `profile` (relative load per hour, any scale), hourly points interpolated linearly and
    mapped so the profile's lowest hour is `min_rps` and its highest `max_rps`.
    """

    kind: Literal["diurnal"] = "diurnal"
    min_rps: Rate
    max_rps: Rate
    seconds: Seconds
    peak_at: Annotated[float, Field(ge=0, le=1)] = 0.5
    profile: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=24, max_length=24)] | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_rps > self.max_rps:
            raise ValueError(f"min_rps must be <= max_rps ({self.max_rps:g}), got {self.min_rps:g}")
        if self.profile is not None and max(self.profile) == min(self.profile):
            raise ValueError("profile must not be flat (use steady)")
        return self

    @property
    def duration(self) -> float:
        return self.seconds

    def _rate(self, t):
        day = t / self.seconds
        if self.profile is None:
            level = (1 + np.cos(2 * np.pi * (day - self.peak_at))) / 2
        else:
            p = np.asarray(self.profile + self.profile[:1], dtype=float)
            level = (np.interp(day * 24, np.arange(25), p) - p.min()) / (p.max() - p.min())
        return self.min_rps + (self.max_rps - self.min_rps) * level


class Trace(Shape):
    """The arrivals of a trace: `times_s` (seconds from its start), `speedup`x faster, `rate_scale`x the rate.

    As a rate, the trace is binned into `bin_s` (after compression); the exact arrival times
    are what `loadgen.arrivals` replays. `window_s` cuts the compressed trace to its first seconds.
    """

    kind: Literal["trace"] = "trace"
    times_s: np.ndarray
    speedup: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    rate_scale: Annotated[float, Field(gt=0, le=1000)] = 1.0
    bin_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    window_s: Seconds | None = None

    @field_validator("times_s", mode="before")
    @classmethod
    def _times(cls, v):
        arr = np.sort(np.asarray(v, dtype=float))
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError("times_s must hold at least one arrival time")
        if not np.isfinite(arr).all() or arr[0] < 0:
            raise ValueError("times_s must be finite and >= 0")
        return arr

    def compressed(self) -> np.ndarray:
        """Arrival times after compression and windowing (before rate scaling)."""
        t = self.times_s / self.speedup
        return t[t < self.duration]

    @property
    def duration(self) -> float:
        span = self.times_s[-1] / self.speedup
        full = max(span + self.bin_s * 1e-6, self.bin_s * 1e-3)
        return min(full, self.window_s) if self.window_s else full

    def breakpoints(self):
        return list(np.arange(self.bin_s, self.duration, self.bin_s))

    @cached_property
    def _bin_rates(self) -> np.ndarray:
        nbins = max(1, math.ceil(self.duration / self.bin_s))
        counts, _ = np.histogram(self.compressed(), bins=nbins, range=(0, nbins * self.bin_s))
        # The last bin ends at the duration: its arrivals spread over the part of it inside.
        widths = np.full(nbins, self.bin_s)
        widths[-1] = self.duration - (nbins - 1) * self.bin_s
        return np.divide(counts * self.rate_scale, widths, out=np.zeros(nbins), where=widths > 0)

    def _rate(self, t):
        rates = self._bin_rates
        return rates[np.minimum((t // self.bin_s).astype(int), rates.size - 1)]

    def model_dump(self, **kw):
        out = super().model_dump(**kw)
        out["times_s"] = f"<{self.times_s.size} arrivals>"
        return out


class Sum(Shape):
    """Rates added; lasts as long as the longest part."""

    kind: Literal["sum"] = "sum"
    parts: Annotated[list["AnyShape"], Field(min_length=1)]

    @property
    def duration(self) -> float:
        return max(p.duration for p in self.parts)

    def breakpoints(self):
        return [b for p in self.parts for b in p.breakpoints()] + [p.duration for p in self.parts]

    def _rate(self, t):
        return sum(p.rate(t) for p in self.parts)


class Concat(Shape):
    """Parts one after the other."""

    kind: Literal["concat"] = "concat"
    parts: Annotated[list["AnyShape"], Field(min_length=1)]

    def _starts(self) -> list[float]:
        return list(np.cumsum([0.0] + [p.duration for p in self.parts]))

    @property
    def duration(self) -> float:
        return self._starts()[-1]

    def breakpoints(self):
        starts = self._starts()
        return starts[1:-1] + [s + b for s, p in zip(starts, self.parts) for b in p.breakpoints()]

    def _rate(self, t):
        out = np.zeros_like(t)
        for start, part in zip(self._starts(), self.parts):
            out += part.rate(t - start)
        return out


class Scaled(Shape):
    """A shape with its rate multiplied by `factor`."""

    kind: Literal["scaled"] = "scaled"
    shape: "AnyShape"
    factor: Annotated[float, Field(ge=0, le=1e6)]

    @property
    def duration(self) -> float:
        return self.shape.duration

    def breakpoints(self):
        return self.shape.breakpoints()

    def _rate(self, t):
        return self.factor * self.shape.rate(t)


AnyShape = Annotated[
    Union[Steady, Ramp, Step, Burst, Spike, Diurnal, Trace, Sum, Concat, Scaled], Field(discriminator="kind")
]
for _cls in (Sum, Concat, Scaled):
    _cls.model_rebuild()
