"""The one timing loop the benchmark scripts share."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def timed(fn: Callable[[int], object], reps: int, warmups: int = 0) -> tuple[float, float]:
    """(median, p90) milliseconds of `fn(i)` for i in range(reps), after `warmups` untimed calls."""
    for i in range(warmups):
        fn(i)
    xs = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        xs.append((time.perf_counter() - t0) * 1000)
    xs.sort()
    return statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]
