"""The event loop: a heap of (time, sequence, callback, argument).

A tight heapq loop rather than a framework: the simulator's speed goal is hundreds of
thousands of events per second in one process. Events at the same time run in the order they
were scheduled, so a run is a pure function of its inputs and seed.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable


class Engine:
    """Simulated time (`now`, seconds) and the events still to run."""

    __slots__ = ("now", "_heap", "_seq", "events")

    def __init__(self, start: float = 0.0):
        self.now = start
        self._heap: list = []
        self._seq = 0
        self.events = 0

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run `fn(arg)` at time `t` (not before now)."""
        now = self.now
        heapq.heappush(self._heap, (t if t > now else now, self._seq, fn, arg))
        self._seq += 1

    def after(self, delay: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run `fn(arg)` `delay` seconds from now (delay >= 0)."""
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn, arg))
        self._seq += 1

    def run(self, until: float = math.inf) -> int:
        """Process events up to `until`; returns how many ran."""
        heap, pop, n = self._heap, heapq.heappop, 0
        while heap and heap[0][0] <= until:
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(arg)
            n += 1
        if until != math.inf:
            self.now = max(self.now, until)
        self.events += n
        return n
