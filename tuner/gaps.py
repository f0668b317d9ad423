"""Holes in what Prometheus recorded of a trial, and whether they break its verdict. Pure.

A trial's verdict rests on the client's records (which Prometheus does not touch) and on its
cost, which integrates each deployment's replica count over the window from Prometheus. While
Prometheus is down (restarted, or Ray's metrics endpoint not answering), a range query holds
the last value it had, so a hole is invisible in the series: it shows only as missing scrapes
of the Ray job. A hole is noted, and the trial stands when the replica count of every
deployment is the same at both of its edges (the count is taken as constant through it). It
breaks the trial (unmeasured) when a deployment scaled while Prometheus was blind, or when
the hole touches the start or the end of the window, where there is no edge to compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gap:
    """No successful scrape in (start, end): unix seconds of the last one before and the first after."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def max_spacing_s(interval_s: float) -> float:
    """The spacing of successful scrapes past which they count as a gap: one or two missed
    scrapes are noise (a slow scrape, a busy machine), not a hole."""
    return max(3 * interval_s, interval_s + 2.0)


def find_gaps(scrapes: list[float] | np.ndarray, start: float, end: float, interval_s: float) -> list[Gap]:
    """Gaps in the successful scrape times `scrapes` over [start, end]; the span before the first
    scrape and after the last count as gaps too."""
    t = np.sort(np.asarray(scrapes, dtype=float))
    t = t[(t >= start - interval_s) & (t <= end + interval_s)]
    edges = np.concatenate([[start - interval_s], t, [end + interval_s]]) if t.size else np.array([start, end])
    limit = max_spacing_s(interval_s)
    return [Gap(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:]) if b - a > limit]


def _value_at(timeline: list[tuple[float, float]], t: float, before: bool) -> float | None:
    """The timeline's last value at or before `t`, or its first at or after."""
    points = [v for ts, v in timeline if (ts <= t if before else ts >= t)]
    if not points:
        return None
    return points[-1] if before else points[0]


def gap_problems(gaps: list[Gap], start: float, end: float, interval_s: float,
                 replicas: dict[str, list[tuple[float, float]]]) -> tuple[list[str], list[str]]:
    """(problems that make the trial unmeasured, notes) for the gaps within the window [start, end]."""
    problems, notes = [], []
    for g in gaps:
        if g.end <= start or g.start >= end:
            continue
        where = f"Prometheus recorded nothing from Ray for {g.seconds:.0f} s ({g.start - start:+.0f} s to {g.end - start:+.0f} s of the window)"
        if g.start <= start + interval_s or g.end >= end - interval_s:
            problems.append(f"{where}: the window's edge is missing, so its replicas and cost are unknown")
            continue
        moved = sorted(k for k, tl in replicas.items()
                       if _value_at(tl, g.start, before=True) != _value_at(tl, g.end, before=False))
        if moved:
            problems.append(f"{where}: {', '.join(moved)} scaled meanwhile, so the cost is unknown")
        else:
            notes.append(f"{where}; every deployment had the same replicas on both sides, taken as constant")
    return problems, notes
