"""Arrival times: shape + arrival process + seed -> the times requests are due (pure).

Every process is a renewal process of unit mean in "expected-arrivals" time, mapped back
through the inverse of the shape's cumulative rate Lambda(t) (time rescaling). So the
count over any interval follows the shape's integral, and the process only decides how
regular the gaps are:
- `deterministic`: evenly spaced (rate 10/s gives one every 100 ms, like k6's executors);
- `poisson`: exponential gaps;
- `gamma`: gamma gaps with shape `burstiness` (vLLM's `--burstiness`): 1 is Poisson,
  below 1 burstier, above 1 more even;
- `replay`: the exact times of a `Trace` shape (thinned or copied for `rate_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadgen.shapes import Shape, ShapeError, Trace, _one_line


class ArrivalProcess(BaseModel):
    """How arrivals are spaced within a shape; seeded and reproducible."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["deterministic", "poisson", "gamma", "replay"] = "poisson"
    burstiness: Annotated[float, Field(gt=0, le=1000)] = 1.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ShapeError(_one_line(e, "ArrivalProcess")) from None


@dataclass(frozen=True)
class Arrivals:
    """Due times in seconds from the start, and for a replayed trace the trace row of each."""

    times: np.ndarray
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return self.times.size

    def partition(self, index: int, count: int) -> np.ndarray:
        """Indices of the arrivals that generator `index` of `count` sends (round robin)."""
        return np.arange(index, self.times.size, count)


def _unit_gaps(rng: np.random.Generator, process: ArrivalProcess, n: int) -> np.ndarray:
    if process.kind == "deterministic":
        return np.ones(n)
    if process.kind == "poisson":
        return rng.exponential(1.0, n)
    return rng.gamma(process.burstiness, 1.0 / process.burstiness, n)


def _unit_points(rng: np.random.Generator, process: ArrivalProcess, total: float) -> np.ndarray:
    """Points of a unit-rate renewal process on [0, total)."""
    if process.kind == "deterministic":
        return np.arange(0.0, total, 1.0)
    chunks, last = [], 0.0
    while last < total:
        n = int((total - last) * 1.1) + 64
        pts = last + np.cumsum(_unit_gaps(rng, process, n))
        chunks.append(pts)
        last = pts[-1]
    pts = np.concatenate(chunks) if chunks else np.empty(0)
    return pts[pts < total]


def _invert(shape: Shape, points: np.ndarray) -> np.ndarray:
    """Lambda^{-1}(points): the times at which the cumulative rate reaches each point."""
    edges, cum = shape.grid()
    cell = np.clip(np.searchsorted(cum, points, side="right") - 1, 0, edges.size - 2)
    span = cum[cell + 1] - cum[cell]
    frac = np.divide(points - cum[cell], span, out=np.zeros_like(points), where=span > 0)
    return edges[cell] + frac * (edges[cell + 1] - edges[cell])


def _replay(trace: Trace, rng: np.random.Generator) -> Arrivals:
    times = trace.compressed()
    rows = np.arange(times.size)
    whole, frac = divmod(trace.rate_scale, 1.0)
    copies = np.full(times.size, int(whole)) + (rng.random(times.size) < frac)
    rows = np.repeat(rows, copies)
    out = times[rows]
    # Copies past the first land at a random point before the next original arrival, so a
    # scaled-up trace keeps the trace's local rate instead of stacking identical instants.
    first = np.concatenate([[True], rows[1:] != rows[:-1]])
    gaps = np.diff(times, append=trace.duration)[rows]
    out = np.where(first, out, out + rng.random(out.size) * gaps)
    order = np.argsort(out, kind="stable")
    return Arrivals(out[order], rows[order])


def arrivals(shape: Shape, process: ArrivalProcess | None = None) -> Arrivals:
    """All arrival times of `shape` under `process` (default Poisson, seed 0), sorted."""
    process = process or ArrivalProcess()
    rng = np.random.default_rng(process.seed)
    if process.kind == "replay":
        if not isinstance(shape, Trace):
            raise ShapeError(f"ArrivalProcess.kind: 'replay' needs a trace shape, got {shape.kind!r}")
        return _replay(shape, rng)
    _, cum = shape.grid()
    times = _invert(shape, _unit_points(rng, process, float(cum[-1])))
    return Arrivals(np.minimum(times, np.nextafter(shape.duration, 0)))
