"""Node-count step timelines [[t, n], ...] (seconds from the burst): their value at a time, the
figures compared (peak, time to it, scale-down after release), and the MAE between two on the
0.5 s grid the real cluster is polled on. Pure."""

from __future__ import annotations

import bisect

GRID_S = 0.5  # the real run's poll period, and the grid timelines are compared on


def steps(timeline) -> list[list[float]]:
    """A cluster timeline as [[t, n], ...], times to the ms, one point per instant (its last value)."""
    out: list[list[float]] = []
    for t, n in timeline:
        t = round(t, 3)
        if out and out[-1][0] == t:
            out[-1][1] = n
            if len(out) > 1 and out[-2][1] == n:
                out.pop()
        elif not out or out[-1][1] != n:
            out.append([t, n])
    return out


def step_value(series: list[list[float]], t: float) -> int:
    """The value of a step timeline [[t, n], ...] at t (the last point at or before t)."""
    i = bisect.bisect_right([p[0] for p in series], t + 1e-9) - 1
    return int(series[max(i, 0)][1]) if series else 0


def figures(series: list[list[float]], release_at: float) -> dict:
    """Peak count, when it is first reached, and the scale-down after release."""
    after0 = [p for p in series if p[0] >= 0]
    peak = max((p[1] for p in after0), default=0)
    t_peak = next((p[0] for p in after0 if p[1] == peak), None)
    t_first_up = next((p[0] for p in after0 if p[1] > 0), None)
    after = [p for p in series if p[0] >= release_at]
    before_release = step_value(series, release_at - 1e-6)
    t_first_down = next((p[0] for p in after if p[1] < before_release), None)
    t_zero = next((p[0] for p in after if p[1] == 0), None)
    up = [p for p in series if 0 <= p[0] < release_at]
    return {"peak": peak, "time_to_first_node_s": t_first_up, "time_to_peak_s": t_peak,
            "first_scale_down_after_release_s": None if t_first_down is None else round(t_first_down - release_at, 3),
            "scale_down_to_zero_after_release_s": None if t_zero is None else round(t_zero - release_at, 3),
            "count_before_burst": step_value(series, -1e-6),
            "monotone_up_before_release": all(b[1] >= a[1] for a, b in zip(up, up[1:])),
            "final": series[-1][1] if series else 0}


def mae(real: list[list[float]], sim: list[list[float]], t_end: float) -> tuple[float, list[list[float]]]:
    """Mean |real - sim| node count over t = 0, 0.5, ..., t_end (both step timelines sampled)."""
    grid = [round(k * GRID_S, 3) for k in range(int(t_end / GRID_S + 1e-9) + 1)]
    rows = [[t, step_value(real, t), step_value(sim, t)] for t in grid]
    return sum(abs(r - s) for _, r, s in rows) / len(rows), rows
